"""The book's measured results: the commands that make them, their JSON, and the tables shown.

    python -m rosetta_lite results                 # runs every command, writes book/results/*.json
    inversion_table(load_result("inversion"))      # the page's Table 1, from that JSON

The results page types no figure: it reads the JSON that the commands wrote. Each file
holds the command line, when it ran, how long it took, the checksums of the zoo's weights
it measured (``stale_members`` names the members retrained since), and the command's own
report.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path

from rosetta_lite.bench import mining as bench_mining
from rosetta_lite.dictionary.rosetta import RosettaDictionary
from rosetta_lite.dictionary.runs import load_dictionaries, mine_zoo
from rosetta_lite.evaluation.census import CensusOptions, census
from rosetta_lite.evaluation.concepts import concept_report, learned_concept
from rosetta_lite.evaluation.editing import evaluate_editing
from rosetta_lite.evaluation.generators import GENERATOR_PAIR_RUN, PairOptions, generator_pair_report
from rosetta_lite.evaluation.inversion import OUTSIDE_BUDGET, evaluate_inversion, evaluate_outside
from rosetta_lite.evaluation.nulls import NULLS, NullOptions, null_report
from rosetta_lite.evaluation.stability import StabilityOptions, stability_report
from rosetta_lite.files import DEFAULT_RUN, atomic_path, project_path
from rosetta_lite.zoo.weights import read_manifest

RESULTS = Path(__file__).resolve().parents[2] / "book" / "results"
RUN = DEFAULT_RUN  # the run the chapters use: mining it again with their settings resumes at once


def _steps(run: Path, progress: bool) -> dict[str, tuple[str, Callable[[], dict]]]:
    return {
        "mining": ("python -m rosetta_lite bench mining --zoo lite", lambda: bench_mining.run("lite")),
        "census": ("python -m rosetta_lite eval census", lambda: census(CensusOptions())),
        "mine": (f"python -m rosetta_lite mine --zoo lite --images 2000 --out {RUN}",
                 lambda: mine_zoo("lite", 2000, run, k=3, progress=progress)),
        "concepts": (f"python -m rosetta_lite eval concepts --run {RUN}",
                     lambda: concept_report(*load_dictionaries(run))),
        "nulls": (f"python -m rosetta_lite eval nulls --run {RUN}",
                  lambda: null_report(run, NullOptions(mining={"progress": progress}))),
        "stability": (f"python -m rosetta_lite eval stability --run {RUN}",
                      lambda: stability_report(run, StabilityOptions(mining={"progress": progress}))),
        "generators": ("python -m rosetta_lite eval generators",
                       lambda: generator_pair_report(project_path(GENERATOR_PAIR_RUN),
                                                     PairOptions(mining={"progress": progress}))),
        "inversion": (f"python -m rosetta_lite eval inversion --run {RUN}",
                      lambda: evaluate_inversion(RosettaDictionary.load(run), images=50, progress=progress)),
        "outside": (f"python -m rosetta_lite eval outside --run {RUN}",
                    lambda: evaluate_outside(RosettaDictionary.load(run), 32,
                                             options=dataclasses.replace(OUTSIDE_BUDGET, progress=progress))),
        "editing": (f"python -m rosetta_lite eval editing --run {RUN}",
                    lambda: evaluate_editing(RosettaDictionary.load(run), progress=progress)),
    }


STEPS = ("mining", "census", "mine", "concepts", "nulls", "stability", "generators", "inversion", "outside", "editing")


def make_results(out: str | Path = RESULTS, only: list[str] | None = None, progress: bool = True,
                 log: Callable[[str], None] = print) -> dict[str, Path]:
    """Run the results' commands in order (mining first: the evaluations read its run); one JSON file each.

        make_results(only=["concepts"])   # re-measure one table, from the run already mined
    """
    unknown = sorted(set(only or ()) - set(STEPS))
    if unknown:
        raise ValueError(f"unknown result(s) {unknown}; the results are {list(STEPS)}")
    out = Path(out)
    steps = _steps(project_path(RUN), progress)
    written = {}
    for name in only or STEPS:
        command, measure = steps[name]
        log(f"{name}: {command}")
        start = time.perf_counter()
        report = measure()
        payload = {"command": command, "made": time.strftime("%Y-%m-%d"),
                   "seconds": round(time.perf_counter() - start, 1), "weights": shipped_checksums(),
                   "report": report}
        with atomic_path(out / f"{name}.json") as tmp:
            Path(tmp).write_text(json.dumps(payload, indent=1) + "\n")
        written[name] = out / f"{name}.json"
        log(f"{name}: {payload['seconds']} s -> {written[name]}")
    return written


def shipped_checksums() -> dict[str, str]:
    """The SHA-256 of every shipped lite member's weights, as the manifest records them.

        shipped_checksums()["lite-renderer"]
    """
    return {name: entry["sha256"] for name, entry in read_manifest()["members"].items()}


def stale_members(result: dict) -> list[str]:
    """The members whose shipped weights differ from the ones ``result`` was measured with.

        stale_members(load_result("concepts"))   # [] while the results are current
    """
    recorded, shipped = result.get("weights", {}), shipped_checksums()
    return sorted(name for name in set(recorded) | set(shipped) if recorded.get(name) != shipped.get(name))


def load_result(name: str, folder: str | Path = RESULTS) -> dict:
    """The saved result ``name`` (command, made, seconds, report), or a clear error saying how to make it.

        load_result("concepts")["report"]["trained"]["n_clusters"]
    """
    path = Path(folder) / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(f"no result {path}; make it with: python -m rosetta_lite results --only {name}")
    return json.loads(path.read_text())


def _ci(summary: dict, digits: int = 2) -> str:
    low, high = summary["ci95"]
    return f"{summary['mean']:+.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def made_by(result: dict) -> str:
    """The line a page prints under a result's heading: which command made it, when, in how long.

        display(Markdown(made_by(load_result("census"))))
    """
    return f"Made by `{result['command']}` on {result['made']}, in {result['seconds']:.0f} s."


def mining_table(result: dict):
    """Speed, exactness and memory of one-pass mining, with the targets, from ``bench mining``'s report."""
    import pandas as pd

    r = result["report"]
    rss = r["peak_rss_mb"]
    by_round = r.get("ratios_by_round", {})

    def ratio(key: str, name: str) -> str:
        if name not in by_round:
            return r[key]
        spread = by_round[name]
        trust = "" if spread["trusted"] else "; rounds disagree, not to be trusted"
        return f"{spread['median']} (rounds {', '.join(map(str, spread['rounds']))}{trust})"

    rows = [("torch threads", r["threads"], ""),
            ("one-pass mining, images/s", r["images_per_s"], ""),
            ("forward passes alone, images/s", r["forward_only_images_per_s"], ""),
            ("cross-product matrix multiplies alone, s", r["matmul_only_s"], ""),
            ("mining outside the models' passes / matrix multiplies alone", ratio("overhead_vs_limit", "overhead"),
             f"at most {r['overhead_target']}"),
            ("rows prepared alone, without products / matrix multiplies alone",
             ratio("preparation_vs_matmul", "preparation") if "preparation_vs_matmul" in r else "not measured",
             f"under {r['overhead_target'] - 1:.1f} for the overhead's target"),
            ("official two-pass algorithm, images/s", r["two_pass_images_per_s"], ""),
            ("speed-up over the two-pass algorithm", ratio("speedup_vs_two_pass", "speedup"),
             f"at least {r['speedup_target']}"),
            ("largest difference from a float64 Pearson of all maps", f"{r['max_abs_err_vs_float64']:.1e}",
             f"at most {r['error_target']:.0e}"),
            ("best-buddy Jaccard, official approximation vs exact", r["two_pass_best_buddy_jaccard"], ""),
            (f"peak memory at {' and '.join(rss)} images, MB", " and ".join(f"{v:,.0f}" for v in rss.values()),
             "flat")]
    return pd.DataFrame(rows, columns=["figure", "measured", "target"]).set_index("figure")


def census_table(result: dict):
    """Units per concept of every member beside its untrained copy, from ``eval census``'s report.

        census_table(load_result("census"))

    "learned concepts" counts the units labelled with a concept other than sky, ground and
    colours (which untrained networks hold too); the two concept columns list every label.
    """
    import pandas as pd

    def listed(counts: dict) -> str:
        return ", ".join(f"{k.removeprefix('shape:')} {v}" for k, v in counts.items()) or "none"

    def learned(counts: dict) -> int:
        return sum(v for k, v in counts.items() if learned_concept(k))

    rows = [(name, m["units"], learned(m["trained"]), learned(m["untrained"]), listed(m["trained"]),
             listed(m["untrained"])) for name, m in result["report"]["members"].items()]
    columns = ["member", "units", "learned concepts, trained", "learned concepts, untrained", "trained: units per concept",
               "untrained copy: units per concept"]
    return pd.DataFrame(rows, columns=columns).set_index("member")


def concepts_table(result: dict):
    """Rosetta neurons, clusters and labelled concepts of the trained zoo and its control."""
    import pandas as pd

    r = result["report"]
    rows = []
    for label, key in (("trained", "trained"), ("untrained control", "control")):
        part = r.get(key)
        if part:
            per = ", ".join(f"{c} {n}" for c, n in sorted(part["per_concept"].items(), key=lambda x: -x[1]))
            rows.append((label, part["n_rosetta"], part["n_clusters"], part["n_clusters_labeled"], per or "none"))
    return pd.DataFrame(rows, columns=["zoo", "Rosetta neurons", "clusters", "labelled", "labelled clusters per concept"]
                        ).set_index("zoo")


def nulls_table(result: dict):
    """Per K, the trained zoo beside its control and the image-shuffle null, from ``eval nulls``'s report.

        nulls_table(load_result("nulls"))   # or load_result("generators"): the same table for two generators

    "learned" counts the labelled clusters whose concept is not sky, ground or a colour;
    "above shuffle" those of them whose correlation passes the shuffle's level in every encoder.
    """
    import pandas as pd

    rows = []
    for row in result["report"]["rows"]:
        for null in NULLS:
            c = row[null]
            per = ", ".join(f"{k.removeprefix('colour:')} {n}" for k, n in c["per_concept"].items()) or "none"
            rows.append((row["k"], null, c["n_rosetta"], c["n_clusters"], c["n_labeled"], c["n_learned"],
                         c["n_learned_above"], per))
    columns = ["K", "zoo", "Rosetta neurons", "clusters", "labelled", "learned", "above shuffle", "concepts"]
    return pd.DataFrame(rows, columns=columns).set_index(["K", "zoo"])


def stability_table(result: dict):
    """Clusters of two disjoint image sets matched one to one, from ``eval stability``'s report."""
    import pandas as pd

    r = result["report"]
    rows = [(null, *r[null]["clusters"], r[null]["matched"], r[null]["same_concept"], r[null]["learned"],
             r[null]["learned_stable"]) for null in ("trained", "control")]
    columns = ["zoo", "clusters, set 1", "clusters, set 2", "matched", "same concept", "learned (set 1)",
               "learned, back with their concept"]
    return pd.DataFrame(rows, columns=columns).set_index("zoo")


def inversion_table(result: dict):
    """The paper's Table 1 in the lite world: PSNR and SSIM per objective, and the paired gain over perceptual only."""
    import pandas as pd

    rows = []
    for row in result["report"]["rows"]:
        gain = row.get("minus_perceptual_only", {})
        rows.append((row["objective"], round(row["psnr"]["mean"], 2), round(row["ssim"]["mean"], 3),
                     _ci(gain["psnr"]) if gain else "", _ci(gain["ssim"], 3) if gain else ""))
    return pd.DataFrame(rows, columns=["objective", "PSNR", "SSIM", "PSNR gain [95% CI]", "SSIM gain [95% CI]"]
                        ).set_index("objective")


def outside_table(result: dict):
    """Table 1 per kind of target and start, from ``eval outside``: both objectives and the paired gains.

        outside_table(load_result("outside"))
    """
    import pandas as pd

    rows = []
    for row in result["report"]["rows"]:
        plain, matched = row["report"]["rows"][0], row["report"]["rows"][-1]
        gain = matched["minus_perceptual_only"]
        rows.append((row["targets"], "reader's guess" if row["warm_start"] else "random latent",
                     round(plain["psnr"]["mean"], 2), round(matched["psnr"]["mean"], 2), _ci(gain["psnr"]),
                     _ci(gain["perceptual"], 3)))
    columns = ["targets", "start", "PSNR, perceptual only", "PSNR, + all matches", "PSNR gain [95% CI]",
               "perceptual distance change [95% CI]"]
    return pd.DataFrame(rows, columns=columns).set_index(["targets", "start"])


def editing_table(result: dict):
    """PSNR gain of each shift and zoom over the unedited generation, per set of edited units."""
    import pandas as pd

    columns = {("rosetta", "default"): "Rosetta units", ("all", "default"): "all units",
               ("all", "baseline: every layer, fill rest"): "all units, every layer, rest fill"}
    table: dict[str, dict[str, str]] = {}
    for row in result["report"]["geometry"]:
        table.setdefault(row["edit"], {})[columns[(row["units"], row["setting"])]] = _ci(row["difference"])
    return pd.DataFrame.from_dict(table, orient="index")[[c for c in columns.values()
                                                          if any(c in v for v in table.values())]]


def removal_table(result: dict):
    """Concept removal per variant: the region's share of the image, the changed pixels inside it, the units' level."""
    import pandas as pd

    rows = [(v["variant"], v["mean_region_area_share"], v["mean_share_of_changed_pixels_inside_region"],
             v["mean_unit_z_inside_region_before"], v["mean_unit_z_inside_region_after"])
            for v in result["report"]["removal"]["variants"]]
    return pd.DataFrame(rows, columns=["variant", "region's share of the image", "changed pixels inside the region",
                                       "units' z-score inside, before", "after"]).set_index("variant")


#: the paper's Table 1 (StyleGAN-XL inverting ImageNet images): PSNR, SSIM, LPIPS per objective
PAPER_TABLE1 = {"perceptual only": (13.99, 0.340, 0.48), "+ DINO matches": (15.06, 0.360, 0.45),
                "+ CLIP matches": (15.20, 0.362, 0.44), "+ all matches": (15.42, 0.365, 0.46)}


def _table1_rows(inversion: dict) -> list[tuple]:
    """The side-by-side table's Table 1 rows: all matches, and the best single encoder, against perceptual only."""
    rows = {r["objective"]: r for r in inversion["report"]["rows"]}
    paper_gain = PAPER_TABLE1["+ all matches"][0] - PAPER_TABLE1["perceptual only"][0]
    all_gain = rows["+ all matches"]["minus_perceptual_only"]["psnr"]
    best = max((r for name, r in rows.items() if name.startswith("+ lite")),
               key=lambda r: r["minus_perceptual_only"]["psnr"]["mean"])
    return [("Table 1: inversion, all matches vs perceptual only",
             f"PSNR gain {paper_gain:+.2f} dB (one run)", f"PSNR gain {_ci(all_gain)} dB ({all_gain['n']} scenes)",
             all_gain["ci95"][0] > 0),
            ("Table 1: the best single encoder's matches",
             f"+ CLIP matches: {PAPER_TABLE1['+ CLIP matches'][0] - PAPER_TABLE1['perceptual only'][0]:+.2f} dB",
             f"{best['objective']}: {_ci(best['minus_perceptual_only']['psnr'])} dB",
             best["minus_perceptual_only"]["psnr"]["ci95"][0] > 0)]


def _editing_rows(editing: dict) -> list[tuple]:
    """The side-by-side table's editing rows: shift and zoom of the Rosetta units, and removing a concept."""
    geometry = [r for r in editing["report"]["geometry"] if r["units"] == "rosetta" and r["setting"] == "default"]
    removal = editing["report"]["removal"]["variants"][0]
    inside, area = removal["mean_share_of_changed_pixels_inside_region"], removal["mean_region_area_share"]
    return [("Editing figure: shift and zoom of the Rosetta units",
             "the generator follows the edited maps (shown, not measured)",
             "; ".join(f"{r['edit']} {_ci(r['difference'])} dB" for r in geometry),
             bool(geometry) and all(r["difference"]["ci95"][0] > 0 for r in geometry)),
            ("Editing figure: removing a concept",
             "the concept goes, the rest of the image stays (shown, not measured)",
             f"changed pixels inside the region {inside:.0%}, the region {area:.0%} of the image",
             inside > area)]


def paper_table(concepts: dict, inversion: dict, editing: dict, nulls: dict | None = None, k: int = 3,
                generators: dict | None = None):
    """The paper's results beside the lite book's measured counterparts, and whether they agree.

        paper_table(load_result("concepts"), load_result("inversion"), load_result("editing"), load_result("nulls"))

    One row per result of the paper (Fig. 1, Fig. 2, Table 1, the editing figure, the
    spurious correlations it warns of). "agrees" is decided from the figures against the
    untrained control, never from a count above zero: more Rosetta neurons than the control;
    a learned concept (not sky, ground or a colour) with more clusters than the control's; a gain whose 95% interval is
    above 0; a removal whose changed pixels fall inside the concept's region more than
    its area predicts; a control with Rosetta neurons of its own (spurious ones). With
    ``nulls`` (``eval nulls``'s result, read at ``k``) Fig. 1 and Fig. 2 must also beat
    the image-shuffle null, and Fig. 2 needs a learned cluster whose correlation passes the
    shuffle's level in every encoder: a concept whose matches chance pairing equals is no
    shared unit. With ``generators`` (``eval generators``'s result) a row reads the paper's
    stated failure between two GANs: it agrees unless the pair shares learned clusters
    beyond its control that pass the shuffle's level.
    """
    import pandas as pd

    trained, control = concepts["report"]["trained"], concepts["report"].get("control") or {}
    learned = sorted(c for c, n in trained["per_concept"].items()
                     if learned_concept(c) and n > control.get("per_concept", {}).get(c, 0))
    fig1, fig2 = _against_nulls(trained, control, learned, nulls, k)
    table = [
        ("Fig. 1: units shared by every model of the zoo",
         "concepts shared by a GAN and five discriminative models", *fig1),
        ("Fig. 2: a dictionary of concepts",
         "clusters of object parts, contours, colours and layout", *fig2),
        *_table1_rows(inversion),
        *_editing_rows(editing),
        ("Limitation: spurious correlations",
         "stated, not measured",
         f"the untrained control, where every match is chance, has {control.get('n_rosetta', 0)} Rosetta neurons",
         bool(control.get("n_rosetta"))),
    ]
    if generators is not None:
        table.append(_generator_row(generators, k))
    return pd.DataFrame(table, columns=["result", "paper", "lite (measured)", "agrees"]).set_index("result")


def _generator_row(generators: dict, k: int) -> tuple[str, str, str, bool]:
    """The paper's stated GAN-to-GAN failure against ``eval generators``' pair at ``k``."""
    report = generators["report"]
    row = next((r for r in report["rows"] if r["k"] == k), None)
    if row is None:
        raise ValueError(f"the generators result has no row for K = {k}")
    t, c, s = (row[n]["n_learned"] for n in NULLS)
    above = row["trained"]["n_learned_above"]
    pair = f"{report['settings']['generator']} vs {report['settings']['redrawer']} (redrawing through its reader)"
    return ("Limitation: matching fails between two GANs", "stated, not measured",
            f"{pair}: learned clusters {t}, control {c}, shuffled {s}; above the shuffle's level: {above}",
            not (t > max(c, s) and above > 0))


def _against_nulls(trained: dict, control: dict, learned: list[str], nulls: dict | None,
                   k: int) -> tuple[tuple[str, bool], tuple[str, bool]]:
    """Fig. 1's and Fig. 2's measured text and verdict, against the control and (given) the shuffle null."""
    fig1_text = (f"{trained['n_rosetta']} Rosetta neurons in {trained['n_clusters']} clusters "
                 f"(untrained control: {control.get('n_rosetta', 0)} in {control.get('n_clusters', 0)}")
    fig1 = trained["n_rosetta"] > control.get("n_rosetta", 0)
    fig2_text = ("labelled: " + ", ".join(f"{c} {n}" for c, n in trained["per_concept"].items())
                 + f"; learned beyond the control: {', '.join(learned) or 'none'}")
    fig2 = bool(learned)
    if nulls is None:
        return (fig1_text + ")", fig1), (fig2_text, fig2)
    row = next((r for r in nulls["report"]["rows"] if r["k"] == k), None)
    if row is None:
        raise ValueError(f"the nulls result has no row for K = {k}")
    shuffled, above = row["shuffled"], row["trained"]["n_learned_above"]
    fig1_text += f"; image-shuffle null: {shuffled['n_rosetta']} in {shuffled['n_clusters']})"
    fig2_text += (f"; learned clusters: trained {row['trained']['n_learned']}, control {row['control']['n_learned']}, "
                  f"shuffled {shuffled['n_learned']}; above the shuffle's level in every encoder: {above}")
    fig1 = fig1 and trained["n_rosetta"] > shuffled["n_rosetta"]
    fig2 = fig2 and row["trained"]["n_learned"] > shuffled["n_learned"] and above > 0
    return (fig1_text, fig1), (fig2_text, fig2)


def main(args: argparse.Namespace) -> int:
    """The ``results`` action of the command line."""
    make_results(args.out, only=args.only, progress=not args.quiet)
    return 0
