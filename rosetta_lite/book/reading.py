"""The chapters' results read in words, against the control: sentences made from the figures.

    display(Markdown(read_rosetta_neurons(chance_report(trained, control)["rosetta_neurons"])))

A chapter prints a count and then says what it means; the saying is generated here from
the same numbers, so that a rerun with other figures (another zoo, another K, the full
scale) is read as truly as the default run, "no better than chance" included.
"""

from __future__ import annotations

from rosetta_lite.evaluation.concepts import learned_concept


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


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
