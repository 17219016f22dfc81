"""Does a dictionary come back on other images? Two disjoint image sets, their clusters matched.

    report = stability_report("runs/lite", StabilityOptions(images=2000, k=3))
    print(format_stability(report))

The run in the folder mined latents ``[0, images)``; a second run mines ``[images,
2 images)`` of the same stream in ``folder/second``, trained zoo and control alike.
Clusters are matched one to one by their generator units: every pair of clusters
scored by the Jaccard overlap of their generator-unit sets, pairs taken greedily from
the largest overlap down (each cluster used once, overlap above zero). A cluster is
*stable* when its match carries the same concept label (both labelled from one scoring
of the units, by the rule of :mod:`~rosetta_lite.evaluation.concepts`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from rosetta_lite.dictionary.rosetta import Cluster, RosettaDictionary
from rosetta_lite.evaluation.concepts import MIN_IOU, dictionaries_unit_tables, label_with_tables, learned_concept
from rosetta_lite.evaluation.nulls import mine_run, null_dictionaries
from rosetta_lite.files import DEFAULT_RUN
from rosetta_lite.world import EVAL_SEED

SECOND = "second"  # the second image set's run, inside the run's folder


@dataclass
class StabilityOptions:
    """What :func:`stability_report` mines and compares; checked by :meth:`check`.

        StabilityOptions(images=2000, k=3)
    """

    images: int = 2000  # each set
    k: int = 3
    label_images: int = 300
    seed: int = EVAL_SEED
    min_iou: float = MIN_IOU
    zoo: str = "lite"
    control_seed: int = 1
    mining: dict = field(default_factory=dict)  # more of mine()'s options: batch_size, device, progress

    def check(self) -> None:
        """Refuse settings the report cannot use, saying what is allowed."""
        for name in ("images", "k", "label_images"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")


def match_clusters(a: list[Cluster], b: list[Cluster]) -> list[tuple[int, int, float]]:
    """One-to-one matches (index in a, index in b, Jaccard overlap of generator units), greedy by overlap.

        match_clusters(first.clusters, second.clusters)   # [(0, 2, 0.67), (1, 0, 0.5)]
    """
    scored = []
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            union = len(set(x.generator_units) | set(y.generator_units))
            overlap = len(set(x.generator_units) & set(y.generator_units)) / union if union else 0.0
            if overlap > 0:
                scored.append((overlap, -i, -j))
    taken_a, taken_b, matches = set(), set(), []
    for overlap, i, j in sorted(scored, reverse=True):
        if -i not in taken_a and -j not in taken_b:
            taken_a.add(-i), taken_b.add(-j)
            matches.append((-i, -j, round(overlap, 4)))
    return sorted(matches)


def stability_report(folder: str | Path = DEFAULT_RUN, options: StabilityOptions | None = None) -> dict:
    """Clusters of two disjoint image sets, trained zoo and control: how many come back with their concept.

        report = stability_report("runs/lite", StabilityOptions(images=2000))

    Returns the settings and, for "trained" and "control": clusters in each set, matched
    pairs, matched with the same concept, the learned clusters of the first set and how
    many of them are stable (``learned_stable``, ``learned_fraction``), and the pairs.
    """
    options = options or StabilityOptions()
    options.check()
    folder = Path(folder)
    first = _dictionaries(folder, options, 0)
    second = _dictionaries(folder / SECOND, options, options.images)
    tables = dictionaries_unit_tables([*first.values(), *second.values()], options.label_images, options.seed)
    report = {"settings": {k: v for k, v in asdict(options).items() if k != "mining"} | {"folder": str(folder)}}
    for null in ("trained", "control"):
        labels = [label_with_tables(d[null], tables, options.min_iou) for d in (first, second)]
        report[null] = _compare(first[null], second[null], *labels)
    return report


def _dictionaries(folder: Path, options: StabilityOptions, start: int) -> dict[str, RosettaDictionary]:
    """The trained and control dictionaries of latents [start, start + images)."""
    result = mine_run(folder, options.zoo, options.images, control_seed=options.control_seed, start=start,
                      **options.mining)
    return null_dictionaries(result, None, options.k)


def _compare(a: RosettaDictionary, b: RosettaDictionary, labels_a: list[dict], labels_b: list[dict]) -> dict:
    pairs = match_clusters(a.clusters, b.clusters)
    concept_a = [e["concept"] if e["labeled"] else None for e in labels_a]
    concept_b = [e["concept"] if e["labeled"] else None for e in labels_b]
    same = [(i, j) for i, j, _ in pairs if concept_a[i] is not None and concept_a[i] == concept_b[j]]
    learned = [i for i, c in enumerate(concept_a) if c is not None and learned_concept(c)]
    stable = [i for i, _ in same if i in learned]
    return {"clusters": [len(a.clusters), len(b.clusters)], "matched": len(pairs), "same_concept": len(same),
            "learned": len(learned), "learned_stable": len(stable),
            "learned_fraction": round(len(stable) / len(learned), 4) if learned else None,
            "pairs": [{"first": i, "second": j, "overlap": o, "concepts": [concept_a[i], concept_b[j]]}
                      for i, j, o in pairs]}


def format_stability(report: dict) -> str:
    """A text table of a :func:`stability_report`.

        print(format_stability(stability_report("runs/lite")))
    """
    s = report["settings"]
    lines = [f"clusters of two disjoint sets of {s['images']} images at K = {s['k']}, matched one to one by their "
             "generator units (greedy Jaccard)"]
    for null in ("trained", "control"):
        r = report[null]
        share = "n/a" if r["learned_fraction"] is None else f"{r['learned_fraction']:.0%}"
        lines.append(f"  {null:8s} clusters {r['clusters'][0]} and {r['clusters'][1]}, matched {r['matched']}, "
                     f"same concept {r['same_concept']}; learned clusters {r['learned']}, back with their concept "
                     f"{r['learned_stable']} ({share})")
    return "\n".join(lines)
