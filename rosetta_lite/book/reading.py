"""The chapters' results read in words, against the control: sentences made from the figures.

    display(Markdown(read_rosetta_neurons(chance_report(trained, control)["rosetta_neurons"])))

A chapter prints a count and then says what it means; the saying is generated here from
the same numbers, so that a rerun with other figures (another zoo, another K, the full
scale) is read as truly as the default run, "no better than chance" included.
"""

from __future__ import annotations

from rosetta_lite.dictionary.rosetta import RosettaDictionary
from rosetta_lite.evaluation.concepts import learned_concept


def _names(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


SHIFT_NIL = 0.02  # a shift of the median best correlation smaller than this is read as none


def read_best_correlations(trained: RosettaDictionary, control: RosettaDictionary) -> str:
    """One paragraph on each generator unit's best correlation per encoder: trained against untrained.

        read_best_correlations(*load_dictionaries("runs/lite"))

    Compares the medians over generator units (what the histograms of
    :func:`~rosetta_lite.viz.best_correlation_figure` show) and says where training raised
    them, lowered them, or left them within ``SHIFT_NIL``.
    """
    shifts = {}
    for encoder in trained.encoders:
        twin = next(e for e in control.encoders if e.startswith(encoder))
        medians = [float(d.similarity(e).nan_to_num(-1.0).amax(1).median()) for d, e in ((trained, encoder),
                                                                                        (control, twin))]
        shifts[encoder] = medians
    figures = "; ".join(f"{e} {t:.2f} against {c:.2f}" for e, (t, c) in shifts.items())
    groups = {"raised": [], "lowered": [], "left": []}
    for encoder, (t, c) in shifts.items():
        groups["raised" if t - c >= SHIFT_NIL else "lowered" if c - t >= SHIFT_NIL else "left"].append(encoder)
    said = [f"{verb} for {_names(groups[key])}" for key, verb in (
        ("raised", "training raised it"), ("lowered", "lowered it"), ("left", f"left it within {SHIFT_NIL}"))
        if groups[key]]
    return (f"Median best correlation of a generator unit, trained encoder against its untrained copy: {figures}. "
            f"So {'; '.join(said)}. A higher best correlation is not yet a shared concept: an "
            "untrained network's units follow colours and regions too, and chapter 04 asks which concepts the "
            "pairs hold.")


def read_rosetta_neurons(counts: dict) -> str:
    """One paragraph on Rosetta neurons: trained against the untrained control, and above chance.

        read_rosetta_neurons({"trained": 13, "control": 14, "trained_above_chance": 0})
    """
    trained, control, strict = counts["trained"], counts["control"], counts["trained_above_chance"]
    if trained > control:
        compare = f"{trained - control} more than the untrained control's {control}"
    else:
        compare = (f"no more than the untrained control's {control}: an untrained zoo pairs as many units, "
                   "so the count alone shows nothing that training taught")
    if strict == 0:
        verdict = ("None of them is above chance: every best-buddy correlation of a Rosetta neuron stays below "
                   "the control's 99th percentile, so each one is a pairing an untrained zoo also makes.")
    else:
        verdict = (f"{_plural(strict, 'Rosetta neuron')} of the trained zoo keep a best buddy above the "
                   "control's 99th percentile in every encoder: those are what training added.")
    return f"The trained zoo has {_plural(trained, 'Rosetta neuron')}, {compare}. {verdict}"


def _concepts(per_concept: dict) -> str:
    return ", ".join(f"{name} {n}" for name, n in sorted(per_concept.items(), key=lambda kv: -kv[1])) or "none"


def read_concepts(report: dict) -> str:
    """One paragraph on the labelled clusters of the trained dictionary against the control's.

        read_concepts(concept_report(trained, control))

    Sky, ground and colours are held by untrained networks too; a concept counts as learned
    only where the trained dictionary has clusters of it and the control has fewer.
    """
    trained, control = report["trained"]["per_concept"], (report.get("control") or {}).get("per_concept", {})
    learned = {c: n for c, n in trained.items() if learned_concept(c) and n > control.get(c, 0)}
    opening = (f"Trained: {_plural(report['trained']['n_clusters'], 'cluster')} ({_concepts(trained)}); "
               f"untrained control: {_concepts(control)}.")
    if not learned:
        return (f"{opening} Every concept of the trained dictionary is one the control also has, or one that "
                "untrained networks hold anyway (sky, ground, colours): this dictionary is no better than chance.")
    names = ", ".join(sorted(learned))
    return (f"{opening} Only {names} {'is a concept' if len(learned) == 1 else 'are concepts'} the trained "
            "dictionary has beyond the control's; everything else an untrained zoo finds as well.")


def read_strict(summary: dict) -> str:
    """One sentence on the dictionary kept above the control's chance level.

        read_strict(above_chance(trained, control).summary())
    """
    neurons, clusters = summary["rosetta_neurons"], summary["clusters"]
    if neurons == 0:
        return ("Kept above the control's 99th percentile in every encoder, the dictionary is empty: no Rosetta "
                "neuron of this zoo is stronger than what untrained encoders give.")
    return (f"Kept above the control's 99th percentile in every encoder, {_plural(neurons, 'Rosetta neuron')} "
            f"in {_plural(clusters, 'cluster')} remain: the part of the dictionary that chance does not explain.")


def read_nulls(report: dict, k: int = 3, subject: str = "the trained zoo") -> str:
    """One paragraph on the trained zoo against its three nulls at the chapters' ``k``, and the operating point.

        read_nulls(null_report("runs/lite"), k=3)

    ``subject`` names what was mined against the nulls (another wording for a generator pair).
    """
    rows = {row["k"]: row for row in report["rows"]}
    if k not in rows:
        raise ValueError(f"the report has no row for K = {k}; it has K = {sorted(rows)}")
    row = rows[k]
    t, c, s = (row[n]["n_learned"] for n in ("trained", "control", "shuffled"))
    counts = ("counts alone do not separate them" if row["trained"]["n_rosetta"] <= row["control"]["n_rosetta"]
              else "more than the control, but a count says nothing of what the neurons hold")
    opening = (f"At K = {k} {subject} has {_plural(row['trained']['n_rosetta'], 'Rosetta neuron')} in "
               f"{_plural(row['trained']['n_clusters'], 'cluster')}, the untrained control "
               f"{row['control']['n_rosetta']} in {row['control']['n_clusters']}, the image-shuffle null "
               f"{row['shuffled']['n_rosetta']} in {row['shuffled']['n_clusters']}: {counts}.")
    if t <= c:
        learned = (f"Clusters of learned concepts (not sky, ground or a colour): trained {t}, control {c}, shuffled "
                   f"{s}: no better than chance.")
    else:
        learned = (f"Clusters of learned concepts (not sky, ground or a colour) separate them: trained {t}, control "
                   f"{c}, shuffled {s}.")
    above = row["trained"]["n_learned_above"]
    if above == 0:
        strict = ("None of the learned clusters correlates above the shuffle's "
                  f"{report['settings']['quantile']:g} quantile in every encoder: pairing a generator image with "
                  "another image's encoder maps gives correlations as high, so a correlation that strong needs "
                  "no shared content: the layout every scene shares gives it.")
    else:
        strict = (f"{_plural(above, 'learned cluster')} correlate above the shuffle's "
                  f"{report['settings']['quantile']:g} quantile in every encoder: content, not layout.")
    return f"{opening} {learned} {strict} Operating point: {report['reason']}."


def read_generators(report: dict, k: int = 3) -> str:
    """One paragraph on two generators matched (``eval generators``), against the nulls and the paper's finding.

        read_generators(generator_pair_report("runs/generators"), k=3)
    """
    s = report["settings"]
    row = next((r for r in report["rows"] if r["k"] == k), None)
    if row is None:
        raise ValueError(f"the report has no row for K = {k}; it has K = {[r['k'] for r in report['rows']]}")
    opening = (f"{s['generator']}'s units were matched with those of {s['redrawer']}, which read each of the "
               f"{s['images_counted']} {s['generator']} images into a latent and redrew it.")
    t, c, above = row["trained"]["n_learned"], row["control"]["n_learned"], row["trained"]["n_learned_above"]
    if t > c and above > 0:
        verdict = ("The paper reports that its matching fails between two GANs; with a reader that gives the second "
                   "generator the first one's image, it does not fail here: shared learned concepts, above both "
                   "nulls.")
    elif t > c:
        verdict = ("The paper reports that its matching fails between two GANs; here it finds more learned "
                   "concepts than the untrained redrawer, but none correlates above the shuffle: a weak result, "
                   "not a failure and not a success.")
    else:
        verdict = ("As the paper reports for two GANs, the matching fails here: the trained redrawer shares no "
                   "more learned concepts with the generator than its untrained copy.")
    nulls = read_nulls(report, k, subject=f"the trained {s['redrawer']}")
    return f"{opening} {nulls} {verdict}"


def read_stability(report: dict) -> str:
    """One paragraph on how many clusters come back on a second, disjoint image set, trained against control.

        read_stability(stability_report("runs/lite"))
    """
    t, c = report["trained"], report["control"]
    opening = (f"On two disjoint sets of {report['settings']['images']} images, {t['matched']} of the trained "
               f"zoo's {t['clusters'][0]} clusters find a match on the other set ({t['same_concept']} with the same "
               f"concept); the control's: {c['matched']} of {c['clusters'][0]} ({c['same_concept']}).")
    if not t["learned"]:
        return f"{opening} The trained dictionary has no learned concept whose stability could be asked."
    return (f"{opening} Of the trained zoo's {_plural(t['learned'], 'learned cluster')}, {t['learned_stable']} "
            f"{'comes back with its' if t['learned_stable'] == 1 else 'come back with their'} concept "
            f"({t['learned_fraction']:.0%}).")
