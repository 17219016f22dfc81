"""The book's measured results: the commands that make them, their JSON, and the tables shown.

    python -m rosetta_lite results                 # runs every command, writes book/results/*.json
    inversion_table(load_result("inversion"))      # the page's Table 1, from that JSON

The results page types no figure: it reads the JSON that the commands wrote. Each file
holds the command line, when it ran, how long it took, and the command's own report.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from rosetta_lite.bench import mining as bench_mining
from rosetta_lite.dictionary.rosetta import RosettaDictionary
from rosetta_lite.dictionary.runs import load_dictionaries, mine_zoo
from rosetta_lite.evaluation.concepts import concept_report
from rosetta_lite.evaluation.editing import evaluate_editing
from rosetta_lite.evaluation.inversion import evaluate_inversion
from rosetta_lite.files import DEFAULT_RUN, atomic_path, project_path

RESULTS = Path(__file__).resolve().parents[2] / "book" / "results"
RUN = DEFAULT_RUN  # the run the chapters use: mining it again with their settings resumes at once


def _steps(run: Path, progress: bool) -> dict[str, tuple[str, Callable[[], dict]]]:
    return {
        "mining": ("python -m rosetta_lite bench mining --zoo lite", lambda: bench_mining.run("lite")),
        "mine": (f"python -m rosetta_lite mine --zoo lite --images 2000 --out {RUN}",
                 lambda: mine_zoo("lite", 2000, run, k=3, progress=progress)),
        "concepts": (f"python -m rosetta_lite eval concepts --run {RUN}",
                     lambda: concept_report(*load_dictionaries(run))),
        "inversion": (f"python -m rosetta_lite eval inversion --run {RUN}",
                      lambda: evaluate_inversion(RosettaDictionary.load(run), images=50, progress=progress)),
        "editing": (f"python -m rosetta_lite eval editing --run {RUN}",
                    lambda: evaluate_editing(RosettaDictionary.load(run), progress=progress)),
    }


STEPS = ("mining", "mine", "concepts", "inversion", "editing")


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
                   "seconds": round(time.perf_counter() - start, 1), "report": report}
        with atomic_path(out / f"{name}.json") as tmp:
            Path(tmp).write_text(json.dumps(payload, indent=1) + "\n")
        written[name] = out / f"{name}.json"
        log(f"{name}: {payload['seconds']} s -> {written[name]}")
    return written


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


def mining_table(result: dict):
    """Speed, exactness and memory of one-pass mining, with the targets, from ``bench mining``'s report."""
    import pandas as pd

    r = result["report"]
    rss = r["peak_rss_mb"]
    rows = [("torch threads", r["threads"], ""),
            ("one-pass mining, images/s", r["images_per_s"], ""),
            ("forward passes alone, images/s", r["forward_only_images_per_s"], ""),
            ("cross-product matrix multiplies alone, s", r["matmul_only_s"], ""),
            ("(mining - forward) / matrix multiplies alone", r["overhead_vs_limit"], f"at most {r['overhead_target']}"),
            ("official two-pass algorithm, images/s", r["two_pass_images_per_s"], ""),
            ("speed-up over the two-pass algorithm", r["speedup_vs_two_pass"], f"at least {r['speedup_target']}"),
            ("largest difference from a float64 Pearson of all maps", f"{r['max_abs_err_vs_float64']:.1e}",
             f"at most {r['error_target']:.0e}"),
            ("best-buddy Jaccard, official approximation vs exact", r["two_pass_best_buddy_jaccard"], ""),
            (f"peak memory at {' and '.join(rss)} images, MB", " and ".join(f"{v:,.0f}" for v in rss.values()),
             "flat")]
    return pd.DataFrame(rows, columns=["figure", "measured", "target"]).set_index("figure")


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


def main(args) -> int:
    """The ``results`` action of the command line."""
    make_results(args.out, only=args.only, progress=not args.quiet)
    return 0
