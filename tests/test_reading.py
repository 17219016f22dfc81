"""The chapters' readings of their results: every case in words, "no better than chance" included."""

import pytest
import torch

from rosetta_lite.book.reading import (
    read_best_correlations,
    read_concepts,
    read_editing,
    read_generators,
    read_inversion,
    read_local_edits,
    read_nulls,
    read_outside,
    read_psnr_pair,
    read_rosetta_neurons,
    read_stability,
    read_strict,
    read_warm_start,
)


def test_rosetta_neurons_read_against_the_control_and_chance():
    none = read_rosetta_neurons({"trained": 13, "control": 14, "trained_above_chance": 0})
    assert "no more than the untrained control's 14" in none and "None of them is above chance" in none
    some = read_rosetta_neurons({"trained": 20, "control": 14, "trained_above_chance": 1})
    assert "6 more than the untrained control's 14" in some and "1 Rosetta neuron of the trained zoo" in some


def test_concepts_read_as_learned_only_beyond_the_control():
    base = {"trained": {"n_clusters": 9, "per_concept": {"ground": 4, "sky": 3, "object": 2}},
            "control": {"n_clusters": 9, "per_concept": {"ground": 3, "sky": 3, "colour:red": 1}}}
    assert "Only object is a concept" in read_concepts(base)
    base["control"]["per_concept"]["object"] = 2
    assert "no better than chance" in read_concepts(base)
    base["trained"]["per_concept"] = {"sky": 5, "colour:red": 3}
    assert "no better than chance" in read_concepts(base)


def test_the_strict_dictionary_says_when_it_is_empty():
    assert "is empty" in read_strict({"rosetta_neurons": 0, "clusters": 0})
    assert "3 Rosetta neurons in 2 clusters remain" in read_strict({"rosetta_neurons": 3, "clusters": 2})


def test_without_a_control_every_reading_says_the_counts_cannot_be_told_from_chance():
    neurons = read_rosetta_neurons({"trained": 31, "control": None, "trained_above_chance": None})
    assert neurons.startswith("The trained zoo has 31 Rosetta neurons. No control was mined")
    assert "the count cannot be told from chance" in neurons
    report = {"trained": {"n_clusters": 9, "per_concept": {"ground": 4, "object": 2}}, "control": None}
    concepts = read_concepts(report)
    assert "Trained: 9 clusters (ground 4, object 2)" in concepts and "can be called learned" in concepts
    assert "Only object" not in concepts  # nothing to be learned beyond
    assert "no chance level to keep the dictionary above" in read_strict(None)
    text = read_best_correlations(_Tables({"a": 0.40, "b": 0.10}))
    assert "a 0.40; b 0.10. No control was mined" in text and "cannot be told from chance" in text


def _null_row(k, learned, above=0):
    return {"k": k, **{null: {"n_rosetta": 10 + i, "n_clusters": 5 + i, "n_learned": n, "n_learned_above": above}
                       for i, (null, n) in enumerate(zip(("trained", "control", "shuffled"), learned))}}


def test_nulls_read_the_learned_clusters_against_control_and_shuffle():
    report = {"settings": {"quantile": 0.99}, "reason": "K = 4 keeps the most", "rows": [
        _null_row(3, (2, 0, 0)), _null_row(4, (1, 1, 0), above=0), _null_row(5, (4, 1, 0), above=2)]}
    three = read_nulls(report, 3)
    assert "trained 2, control 0, shuffled 0." in three and "None of the learned clusters" in three
    assert "counts alone do not separate them" in three  # trained 10 Rosetta neurons, control 11
    assert "Operating point: K = 4 keeps the most." in three
    assert "no better than chance" in read_nulls(report, 4)
    assert "2 learned clusters correlate above the shuffle's 0.99 quantile" in read_nulls(report, 5)
    with pytest.raises(ValueError, match="no row for K = 2"):
        read_nulls(report, 2)


def test_generator_pairs_are_read_against_the_nulls_and_the_papers_finding():
    report = {"settings": {"quantile": 0.99, "generator": "lite-gan", "redrawer": "lite-renderer",
                           "images_counted": 2000}, "reason": "K = 3 keeps the most",
              "rows": [_null_row(1, (1, 1, 0)), _null_row(3, (3, 0, 1), above=1), _null_row(5, (3, 1, 0))]}
    three = read_generators(report, 3)
    assert three.startswith("lite-gan's units were matched with those of lite-renderer, which read each of the 2000")
    assert "At K = 3 the trained lite-renderer has 10 Rosetta neurons" in three
    assert "it does not fail here" in three
    assert "not a failure and not a success" in read_generators(report, 5)
    assert "As the paper reports for two GANs, the matching fails here" in read_generators(report, 1)
    with pytest.raises(ValueError, match="no row for K = 2"):
        read_generators(report, 2)


def test_stability_reads_learned_clusters_that_come_back():
    part = {"clusters": [9, 8], "matched": 7, "same_concept": 5, "learned": 2, "learned_stable": 1,
            "learned_fraction": 0.5}
    report = {"settings": {"images": 2000}, "trained": part, "control": dict(part, learned=0)}
    text = read_stability(report)
    assert "7 of the trained zoo's 9 clusters" in text and "1 comes back with its concept (50%)" in text
    assert "2 come back with their concept (100%)" in read_stability(
        dict(report, trained=dict(part, learned_stable=2, learned_fraction=1.0)))
    report["trained"] = dict(part, learned=0)
    assert "no learned concept" in read_stability(report)


class _Tables:
    """What read_best_correlations reads of a dictionary: its encoders and their tables."""

    def __init__(self, best: dict[str, float]):
        self.encoders, self.best = list(best), best

    def similarity(self, encoder):
        table = torch.full((5, 7), -0.5)
        table[:, 3] = self.best[encoder]  # every generator unit's best correlation
        return table


def test_best_correlations_are_read_as_raised_lowered_or_left():
    trained = _Tables({"a": 0.40, "b": 0.10, "c": 0.30})
    control = _Tables({"a@untrained": 0.20, "b@untrained": 0.30, "c@untrained": 0.31})
    text = read_best_correlations(trained, control)
    assert "a 0.40 against 0.20; b 0.10 against 0.30; c 0.30 against 0.31" in text
    assert "training raised it for a; lowered it for b; left it within 0.02 for c." in text


def _gain(mean, low, high):
    return {"minus_perceptual_only": {"psnr": {"mean": mean, "ci95": [low, high], "n": 50}}}


def test_inversion_reads_the_paired_gain_and_its_interval():
    report = {"rows": [{"objective": "perceptual only"}, {"objective": "+ clip matches", **_gain(0.4, 0.1, 0.7)},
                       {"objective": "+ all matches", **_gain(-1.65, -3.38, 0.07)}]}
    text = read_inversion(report)
    assert "On 50 targets, + all matches changes PSNR by -1.65 dB (95% CI -3.38 to +0.07)" in text
    assert "is not shown either way: the interval holds 0" in text
    assert "The best single row, + clip matches, gives +0.40 dB" in text
    report["rows"][2] = {"objective": "+ all matches", **_gain(1.0, 0.2, 1.8)}
    assert "adding the matches helps." in read_inversion(report)
    report["rows"][2] = {"objective": "+ all matches", **_gain(-1.0, -1.8, -0.2)}
    assert "adding the matches hurts." in read_inversion(report)
    with pytest.raises(ValueError, match="no row paired"):
        read_inversion({"rows": [{"objective": "perceptual only"}]})


def test_psnr_pairs_and_warm_starts_are_read_from_their_numbers():
    assert "the same within 0.1 dB" in read_psnr_pair(20.0, 20.05, "4 scenes")
    assert "1.5 dB lower with the matches" in read_psnr_pair(20.0, 18.5, "4 scenes")
    text = read_warm_start({"perceptual only": (14.0, 25.0), "+ all matches": (16.0, 24.5)})
    assert "The guess adds +9.8 dB on average" in text
    assert "+2.0 dB from a cold start, -0.5 dB from the guess" in text and "not the paper's situation" in text
    same = read_warm_start({"perceptual only": (20.0, 20.0), "+ all matches": (20.2, 20.5)})
    assert "does not shrink" in same


def _edit(edit, units, mean, low, high, setting="default"):
    return {"edit": edit, "units": units, "setting": setting, "difference": {"mean": mean, "ci95": [low, high]}}


def test_editing_reads_the_rosetta_rows_and_where_a_removal_changes_pixels():
    cluster = {"changed_share_inside_region": 0.3, "changed_share_outside_region": 0.1}
    still = {"changed_share_inside_region": 0.0, "changed_share_outside_region": 0.0}
    report = {"geometry": [_edit("shift", "rosetta", 2.0, 0.5, 3.5), _edit("shift", "all", 9.0, 8.0, 10.0),
                           _edit("shift", "all", 9.0, 8.0, 10.0, setting="baseline"),
                           _edit("zoom", "all", 0.2, -0.4, 0.8)],
              "removal": {"variants": [{"variant": "default", "mean_region_area_share": 0.16,
                                        "mean_share_of_changed_pixels_inside_region": 0.58,
                                        "mean_unit_z_inside_region_before": 1.88,
                                        "mean_unit_z_inside_region_after": 0.75,
                                        "clusters": [cluster, still, still]}]}}
    text = read_editing(report)
    assert "shift (rosetta units) +2.00 dB (95% CI +0.50 to +3.50); zoom (all units) +0.20 dB" in text
    assert "The interval excludes 0 for 1 of the 2 edits" in text
    assert "covers 16% of the image on average and 58% of the changed pixels" in text and "is local" in text
    assert "2 of 3 clusters change no pixel at all." in text
    report["removal"]["variants"][0]["mean_share_of_changed_pixels_inside_region"] = 0.1
    assert "the removal is not local" in read_editing(report)
    # no region on the maps' grid (an untrained generator's units below the threshold): no z-score to read
    report["removal"]["variants"][0] |= {"mean_unit_z_inside_region_before": None,
                                         "mean_unit_z_inside_region_after": None}
    assert "their z-score inside it is not measured" in read_editing(report)


def test_local_edits_say_when_they_change_no_pixel():
    assert read_local_edits({"removed": 0.25, "added": 0.1}, 2) == (
        "Share of pixels changed (some channel by more than 0.1) by cluster 2's edits: removed 25%, added 10%.")
    assert "Removed changed no pixel: at these settings" in read_local_edits({"removed": 0.0, "added": 0.1}, 0)


def _outside_row(kind, warm, psnr, perceptual):
    gain = {"psnr": {"mean": sum(psnr) / 2, "ci95": psnr}, "perceptual": {"mean": 0.0, "ci95": perceptual}}
    return {"targets": kind, "warm_start": warm, "report": {"rows": [{}, {"minus_perceptual_only": gain}]}}


def test_outside_reads_where_the_matches_raise_psnr():
    report = {"images": 32, "rows": [_outside_row("scenes", True, [-1.0, 1.0], [-0.1, 0.1]),
                                     _outside_row("photo", False, [-1.0, 1.0], [-0.3, -0.1]),
                                     _outside_row("sketch", False, [-2.0, -0.5], [-0.1, 0.1])]}
    text = read_outside(report)
    assert text.startswith("3 settings, 32 targets each. + all matches raises PSNR with a 95% interval above 0 for "
                           "none of them; lowers it for sketch from a random latent.")
    assert "perceptual distance down (interval below 0) for photo from a random latent" in text
    assert "is not reproduced for any kind of target" in text
    report["rows"][0] = _outside_row("scenes", True, [0.2, 1.0], [-0.1, 0.1])
    assert "above 0 for scenes from the reader's guess; lowers" in read_outside(report)


def test_the_mining_benchmark_is_read_against_its_targets():
    from rosetta_lite.book.reading import read_mining

    def report(overhead, spread):
        return {"ratios_by_round": {"overhead": {"median": overhead, "trusted": spread <= 0.2},
                                    "speedup": {"median": 4.26, "trusted": True}},
                "overhead_target": 1.5, "speedup_target": 3, "images_per_s": 111.2, "threads": 2}

    above = read_mining(report(1.87, 0.06))
    assert "1.87 times" in above and "above the target of 1.5" in above and "memory traffic" in above
    assert "meeting the target of 3" in above and "111 images" in above and "rerun" not in above
    within = read_mining(report(1.2, 0.5))
    assert "within the target" in within and "memory traffic" not in within and "rounds of the overhead" in within
    bounded = report(1.87, 0.06)
    bounded["ratios_by_round"]["preparation"] = {"median": 0.62, "trusted": True}
    assert "below about 1.62: the target is out of reach" in read_mining(bounded)
    bounded["ratios_by_round"]["preparation"]["median"] = 0.3
    assert "below about 1.30: that leaves room under the target" in read_mining(bounded)
