"""How many Rosetta neurons and concepts chance gives: the trained zoo against three nulls, K = 1 to 5.

    report = null_report("runs/lite", NullOptions(images=2000))
    print(format_nulls(report))

A count of Rosetta neurons means something only beside what the same procedure finds
where there is nothing to find. Three nulls:

- **control**: the encoders untrained (seeded copies, mined in the same pass on the same
  images, as every run does): what architecture and input statistics give;
- **shuffled**: the trained encoders, each generator image's maps paired with the
  encoders' maps of another, independent image (``pairing="shuffled"``): what
  correlation without shared content gives (the layout every scene shares, sky above
  ground, survives it; objects do not);
- **K**: best buddies kept among the top 1 to 5 of each side; a larger K admits more
  pairs, learned or not.

Every dictionary's clusters are labelled by the rule of :mod:`~rosetta_lite.evaluation.concepts`
from one scoring of the units involved. A cluster is *learned* when its concept is one
training must teach (not sky, ground or a colour: :func:`~rosetta_lite.evaluation.concepts.learned_concept`);
it is *above the shuffle* when its mean correlation in every encoder exceeds the
``quantile`` of the shuffled run's best-buddy correlations of that encoder.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rosetta_lite.dictionary.rosetta import RosettaDictionary, build_dictionary, chance_levels
from rosetta_lite.dictionary.runs import check_k
from rosetta_lite.evaluation.concepts import MIN_IOU, dictionaries_unit_tables, label_with_tables, learned_concept
from rosetta_lite.files import DEFAULT_RUN
from rosetta_lite.mining.loop import mine
from rosetta_lite.mining.settings import MiningResult
from rosetta_lite.world import EVAL_SEED
from rosetta_lite.zoo.member import Member
from rosetta_lite.zoo.registry import CONTROL_SUFFIX, control_members, zoo_members

NULLS = ("trained", "control", "shuffled")
SHUFFLED = "shuffled"  # the shuffled run's folder inside the run's


@dataclass
class NullOptions:
    """What :func:`null_report` mines and how it labels; checked by :meth:`check`.

        NullOptions(images=2000, ks=(1, 2, 3, 4, 5))
    """

    images: int = 2000
    ks: tuple[int, ...] = (1, 2, 3, 4, 5)
    label_images: int = 300  # held-out scenes the units are scored on
    seed: int = EVAL_SEED  # their world stream
    min_iou: float = MIN_IOU
    quantile: float = 0.99  # of the shuffled best buddies' correlations
    zoo: str = "lite"
    control_seed: int = 1
    mining: dict = field(default_factory=dict)  # more of mine()'s options: batch_size, device, progress

    def check(self) -> None:
        """Refuse settings the report cannot use, saying what is allowed."""
        if not self.ks or any(not isinstance(k, int) or isinstance(k, bool) or k < 1 for k in self.ks):
            raise ValueError(f"ks must be whole numbers >= 1, e.g. (1, 2, 3, 4, 5); got {self.ks!r}")
        if not 0.0 < self.quantile < 1.0:
            raise ValueError(f"quantile must be in (0, 1), got {self.quantile!r}")
        for name in ("images", "label_images"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")


def mine_run(folder: str | Path, zoo: str = "lite", images: int = 2000, *, control_seed: int | None = 1,
             **mining: Any) -> MiningResult:
    """Mine a zoo (with its control copies unless ``control_seed`` is None) into ``folder``, or resume it there.

        result = mine_run("runs/lite/second", "lite", 2000, start=2000)

    ``mining`` goes to :func:`~rosetta_lite.mining.loop.mine` (``start``, ``pairing``,
    ``batch_size``, ...). Unlike :func:`~rosetta_lite.dictionary.runs.mine_zoo` it saves
    no dictionary, so a run the chapters mined keeps its own.
    """
    gan, trained = zoo_members(zoo)
    controls = control_members(trained, control_seed) if control_seed is not None else []
    result = mine(gan, trained + controls, images, out=folder, control_seed=control_seed, **mining)
    result.settings.extra["zoo"] = zoo  # what dictionary_members reads to rebuild the members
    return result


def mine_nulls(folder: str | Path = DEFAULT_RUN, options: NullOptions | None = None) -> tuple[MiningResult,
                                                                                                MiningResult]:
    """The run (trained zoo and control, in ``folder``) and its shuffled null (in ``folder/shuffled``).

        result, shuffled = mine_nulls("runs/lite", NullOptions(images=2000))

    Both resume from their accumulators, so a run the chapters already mined costs
    nothing; the run's dictionaries are left as they are.
    """
    options = options or NullOptions()
    options.check()
    result = mine_run(folder, options.zoo, options.images, control_seed=options.control_seed, **options.mining)
    shuffled = mine_run(Path(folder) / SHUFFLED, options.zoo, options.images, control_seed=None,
                        pairing="shuffled", **options.mining)
    return result, shuffled


def null_dictionaries(result: MiningResult, shuffled: MiningResult | None, k: int) -> dict[str, RosettaDictionary]:
    """The trained, control and (given its run) shuffled dictionaries of one K.

        null_dictionaries(*mine_nulls("runs/lite"), k=3)["shuffled"].rosetta_count()
    """
    check_k(k, result.settings.units)
    names = result.settings.encoders
    trained = [n for n in names if not n.endswith(CONTROL_SUFFIX)]
    controls = [n for n in names if n.endswith(CONTROL_SUFFIX)]
    if not controls:
        raise ValueError(f"the run mined no control copies (encoders {names}); mine it with its control")
    dictionaries = {"trained": build_dictionary(result, k, encoders=trained),
                    "control": build_dictionary(result, k, encoders=controls)}
    if shuffled is not None:
        dictionaries["shuffled"] = build_dictionary(shuffled, k)
    return dictionaries


def null_report(folder: str | Path = DEFAULT_RUN, options: NullOptions | None = None) -> dict:
    """Trained vs control vs shuffled at every K: Rosetta neurons, clusters, labelled and learned clusters.

        report = null_report("runs/lite", NullOptions(images=2000))

    Returns the settings, ``rows`` (one per K: for each null its counts, see
    :func:`dictionary_counts`, and the shuffle's chance levels) and ``operating_k`` with
    its ``reason``: the K whose learned clusters most exceed the control's.
    """
    options = options or NullOptions()
    result, shuffled = mine_nulls(folder, options)
    return null_summary(folder, options, result, null_rows(result, shuffled, options))


def null_summary(folder: str | Path, options: NullOptions, result: MiningResult, rows: list[dict]) -> dict:
    """A null report: the options and run behind it, its rows and the operating point read from them.

        report = null_summary("runs/lite", options, result, null_rows(result, shuffled, options))
    """
    settings = {key: value for key, value in asdict(options).items() if key != "mining"}
    return {"settings": settings | {"images_counted": result.images_counted, "folder": str(folder)},
            "rows": rows, **operating_point(rows)}


def null_rows(result: MiningResult, shuffled: MiningResult, options: NullOptions,
              members: dict[str, Member] | None = None) -> list[dict]:
    """One row per K of ``options.ks``: each null's :func:`dictionary_counts` and the shuffle's chance levels.

        rows = null_rows(*mine_nulls("runs/lite"), NullOptions())

    The clusters' units are scored once for every K and null; ``members`` (by mined name)
    are used as they are, the others rebuilt from the run (see
    :func:`~rosetta_lite.evaluation.concepts.dictionaries_unit_tables`).
    """
    per_k = {k: null_dictionaries(result, shuffled, k) for k in options.ks}
    tables = dictionaries_unit_tables([d for ds in per_k.values() for d in ds.values()], options.label_images,
                                      options.seed, members=members)
    rows = []
    for k, dictionaries in per_k.items():
        levels = chance_levels(dictionaries["trained"], dictionaries["shuffled"], options.quantile)
        row = {"k": k, "shuffle_levels": {e: round(v, 4) for e, v in levels.items()}}
        for null, dictionary in dictionaries.items():
            labels = label_with_tables(dictionary, tables, options.min_iou)
            row[null] = dictionary_counts(dictionary, labels, levels)
        rows.append(row)
    return rows


def dictionary_counts(dictionary: RosettaDictionary, labels: list[dict], levels: dict[str, float]) -> dict:
    """A labelled dictionary in numbers: Rosetta neurons, clusters, labelled, learned, above the levels.

        dictionary_counts(d, label_clusters(d, members), chance_levels(d, shuffled_d))

    ``levels`` (per encoder) decide ``learned_above``: learned clusters whose mean
    correlation in every encoder exceeds its level.
    """
    by_id = {c.id: c for c in dictionary.clusters}
    learned = [e for e in labels if e["labeled"] and learned_concept(e["concept"])]

    def above(entry: dict) -> bool:
        pair_corr = by_id[entry["cluster"]].pair_corr
        return all(pair_corr[e] > levels[e.removesuffix(CONTROL_SUFFIX)] for e in pair_corr)

    return {"n_rosetta": dictionary.rosetta_count(), "n_clusters": len(dictionary.clusters),
            "n_labeled": sum(e["labeled"] for e in labels), "n_learned": len(learned),
            "n_learned_above": sum(above(e) for e in learned),
            "per_concept": dict(Counter(e["concept"] for e in labels if e["labeled"]).most_common())}


def operating_point(rows: list[dict]) -> dict:
    """The K whose learned clusters most exceed the control's (ties: more learned, then the smaller K).

        operating_point(null_report("runs/lite")["rows"])   # {"operating_k": 3, "reason": "..."}
    """
    def margin(row: dict) -> tuple[int, int, int]:
        return row["trained"]["n_learned"] - row["control"]["n_learned"], row["trained"]["n_learned"], -row["k"]

    best = max(rows, key=margin)
    t, c, s = (best[n]["n_learned"] for n in NULLS)
    if margin(best)[0] <= 0:
        reason = (f"at no K does the trained zoo hold more learned clusters than its control (K = {best['k']}: "
                  f"{t} against {c}; shuffled {s}): the dictionary is no better than chance here")
    else:
        reason = (f"K = {best['k']} keeps the most learned clusters beyond the control's: {t} against {c} "
                  f"(shuffled {s})")
    return {"operating_k": best["k"], "reason": reason}


def format_nulls(report: dict) -> str:
    """A text table of a :func:`null_report`: one line per K and null.

        print(format_nulls(null_report("runs/lite")))
    """
    s = report["settings"]
    lines = [f"Rosetta neurons against three nulls: {s['images_counted']} images mined, clusters labelled on "
             f"{s['label_images']} scenes (IoU above chance >= {s['min_iou']}); learned = not sky, ground or a "
             f"colour; above = every encoder above the shuffle's {s['quantile']:g} quantile",
             f"  {'K':>2s} {'null':9s} {'rosetta':>8s} {'clusters':>9s} {'labelled':>9s} {'learned':>8s} "
             f"{'above':>6s}  concepts"]
    for row in report["rows"]:
        for null in NULLS:
            c = row[null]
            concepts = ", ".join(f"{name} {n}" for name, n in c["per_concept"].items())
            lines.append(f"  {row['k']:2d} {null:9s} {c['n_rosetta']:8d} {c['n_clusters']:9d} {c['n_labeled']:9d} "
                         f"{c['n_learned']:8d} {c['n_learned_above']:6d}  {concepts}")
    lines.append(f"operating point: {report['reason']}")
    return "\n".join(lines)
