"""The three nulls: shuffled pairing in mining, the null report, its operating point and its CLI."""

import json

import pytest
import torch

from rosetta_lite import zoo
from rosetta_lite.capture import maps_to_rows, record_encoder, record_generator
from rosetta_lite.cli import main
from rosetta_lite.dictionary.rosetta import Cluster, build_dictionary
from rosetta_lite.evaluation.concepts import dictionary_members, label_clusters
from rosetta_lite.evaluation.nulls import (
    NullOptions,
    format_nulls,
    mine_nulls,
    null_dictionaries,
    null_report,
    operating_point,
)
from rosetta_lite.evaluation.stability import StabilityOptions, format_stability, match_clusters, stability_report
from rosetta_lite.mining.loop import SHUFFLED_STREAM, MiningOptions, latents, mine
from rosetta_lite.mining.settings import MiningResult
from rosetta_lite.viz import null_figure

SMALL = NullOptions(images=32, ks=(1, 3), label_images=16, mining={"batch_size": 16, "progress": False})


@pytest.fixture(scope="module")
def members():
    gan = zoo.load("lite-gan", pretrained=False, seed=0)
    return gan, zoo.load("lite-resnet-sup", pretrained=False, seed=1)


@pytest.fixture(scope="module")
def small_report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("nulls")
    return folder, null_report(folder, SMALL)


def _pearson(g_maps, gan, d_maps, encoder, grid):
    a = maps_to_rows(g_maps, gan.layers, grid).double()
    b = maps_to_rows(d_maps, encoder.layers, grid).double()
    a, b = a - a.mean(0), b - b.mean(0)
    return (a.T @ b) / (a.norm(dim=0)[:, None] * b.norm(dim=0)[None, :])


def test_shuffled_pairing_correlates_the_generator_with_other_images(members):
    gan, encoder = members
    shuffled = mine(gan, [encoder], images=32, batch_size=16, progress=False, pairing="shuffled", seed=2)
    with torch.no_grad():
        _, g_maps = record_generator(gan, latents(gan, 2, 0, 32))
        others = gan.generate(latents(gan, 2 + SHUFFLED_STREAM, 0, 32))
        d_maps = record_encoder(encoder, others)
    expected = _pearson(g_maps, gan, d_maps, encoder, shuffled.settings.grid[encoder.name])
    live = torch.isfinite(expected)
    assert (shuffled.similarity(encoder.name)[live] - expected[live]).abs().max() < 1e-5
    same = mine(gan, [encoder], images=32, batch_size=16, progress=False, seed=2)
    assert not torch.allclose(same.similarity(encoder.name), shuffled.similarity(encoder.name))
    assert torch.allclose(same.self_pair.similarity(), shuffled.self_pair.similarity())  # the generator is untouched


def test_pairing_is_recorded_and_a_shuffled_run_never_resumes_a_same_one(members, tmp_path):
    gan, encoder = members
    same = mine(gan, [encoder], images=16, batch_size=16, progress=False, out=tmp_path)
    assert same.settings.pairing == "same"
    with pytest.raises(ValueError, match="pairing"):
        mine(gan, [encoder], images=16, batch_size=16, progress=False, out=tmp_path, pairing="shuffled")
    assert build_dictionary(same, 1).settings["pairing"] == "same"


@pytest.mark.parametrize("pairing", ["random", "", None])
def test_unknown_pairing_is_refused_with_the_allowed_ones(pairing):
    with pytest.raises(ValueError, match=r"pairing must be one of \['same', 'shuffled'\]"):
        MiningOptions(pairing=pairing).check(32)


def test_report_counts_each_dictionary_as_built_and_labelled_one_by_one(small_report):
    folder, report = small_report
    assert [row["k"] for row in report["rows"]] == [1, 3]
    assert (folder / "shuffled" / "accumulators.safetensors").exists()
    result, shuffled = mine_nulls(folder, SMALL)  # resumes: nothing mined again
    assert shuffled.settings.pairing == "shuffled" and result.images_counted == 32
    dictionaries = null_dictionaries(result, shuffled, 3)
    row = report["rows"][1]
    for null, dictionary in dictionaries.items():
        labels = label_clusters(dictionary, dictionary_members(dictionary), n_images=16)
        assert row[null]["n_rosetta"] == dictionary.rosetta_count()
        assert row[null]["n_clusters"] == len(dictionary.clusters)
        assert row[null]["n_labeled"] == sum(entry["labeled"] for entry in labels)
    assert report["operating_k"] in (1, 3)
    assert "K = 1" in format_nulls(report) or "K = 3" in format_nulls(report)
    assert len(null_figure(report).axes) == 3


def _row(k, trained, control, shuffled=0):
    return {"k": k, **{null: {"n_learned": n} for null, n in
                       (("trained", trained), ("control", control), ("shuffled", shuffled))}}


def test_operating_point_takes_the_widest_margin_over_the_control_and_says_when_there_is_none():
    chosen = operating_point([_row(1, 2, 0), _row(2, 5, 1), _row(3, 6, 2), _row(4, 7, 5)])
    assert chosen["operating_k"] == 3  # margins 2, 4, 4, 2: of the tied K = 2 and 3, K = 3 has more learned
    assert "6 against 2" in chosen["reason"]
    assert operating_point([_row(1, 3, 0), _row(2, 3, 0)])["operating_k"] == 1  # full tie: the smaller K
    none = operating_point([_row(1, 1, 1), _row(3, 2, 4)])
    assert none["operating_k"] == 1 and "no better than chance" in none["reason"]


@pytest.mark.parametrize("change, message", [
    ({"ks": ()}, "ks must be"), ({"ks": (0, 3)}, "ks must be"), ({"quantile": 1.0}, "quantile must be"),
    ({"images": 0}, "images must be"), ({"label_images": 2.5}, "label_images must be")])
def test_bad_null_options_are_refused(change, message):
    with pytest.raises(ValueError, match=message):
        NullOptions(**change).check()


def test_cli_prints_the_report_and_refuses_bad_arguments(small_report, tmp_path, capsys):
    folder, report = small_report
    args = ["eval", "nulls", "--run", str(folder), "--images", "32", "--k", "1", "3", "--label-images", "16",
            "--batch-size", "16", "--json", "--figure", str(tmp_path / "nulls.png")]
    assert main(args) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["rows"] == report["rows"] and (tmp_path / "nulls.png").stat().st_size > 1000
    assert main(["eval", "nulls", "--run", str(folder), "--figure", str(tmp_path)]) != 0
    assert "is a folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["eval", "nulls", "--k", "0"])


def _cluster(units):
    return Cluster(0, units, {}, 0.5, {})


def test_clusters_are_matched_one_to_one_from_the_largest_overlap_down():
    a = [_cluster([1, 2, 3]), _cluster([4, 5]), _cluster([9])]
    b = [_cluster([4, 5, 6]), _cluster([1, 2]), _cluster([2, 3, 4])]
    # a0-b1 2/3, a0-b2 2/4, a1-b0 2/3, a1-b2 1/4; a2 overlaps nothing
    assert match_clusters(a, b) == [(0, 1, 0.6667), (1, 0, 0.6667)]
    assert match_clusters(a, []) == [] and match_clusters([_cluster([1])], [_cluster([1])]) == [(0, 0, 1.0)]


def test_stability_report_matches_the_two_sets_and_counts_concepts(small_report, capsys):
    folder, _ = small_report
    options = StabilityOptions(images=32, k=3, label_images=16, mining={"batch_size": 16, "progress": False})
    report = stability_report(folder, options)
    second = MiningResult.load(folder / "second" / "accumulators.safetensors")
    assert second.counted == [[32, 64]]  # the next 32 latents: disjoint from the run's
    for null in ("trained", "control"):
        r = report[null]
        assert r["matched"] == len(r["pairs"]) <= min(r["clusters"])
        assert r["same_concept"] == sum(p["concepts"][0] is not None and p["concepts"][0] == p["concepts"][1]
                                        for p in r["pairs"])
        assert r["learned_stable"] <= r["learned"]
    assert "back with their concept" in format_stability(report)
    assert main(["eval", "stability", "--run", str(folder), "--images", "32", "--label-images", "16",
                 "--batch-size", "16", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["trained"] == report["trained"]
    with pytest.raises(ValueError, match="k must be"):
        StabilityOptions(k=0).check()
