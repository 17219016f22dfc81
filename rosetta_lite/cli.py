"""The one command line: ``python -m rosetta_lite COMMAND``.

    python -m rosetta_lite world --out runs/world.png
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import timm
import torch

from rosetta_lite import zoo
from rosetta_lite.bench import gpu as gpu_check
from rosetta_lite.bench import mining as bench_mining
from rosetta_lite.bench import training as bench_training
from rosetta_lite.book import batch, results
from rosetta_lite.book.notebooks import refresh, repository_url, stamp_repository, write_student_versions
from rosetta_lite.capture import list_layers
from rosetta_lite.device import PRECISIONS
from rosetta_lite.dictionary.rosetta import RosettaDictionary
from rosetta_lite.dictionary.runs import ZooOptions, load_dictionaries, mine_zoo, save_dictionaries
from rosetta_lite.evaluation.census import CensusOptions, census, format_census
from rosetta_lite.evaluation.concepts import concept_report, format_report
from rosetta_lite.evaluation.editing import evaluate_editing
from rosetta_lite.evaluation.generators import (
    GENERATOR_PAIR_RUN,
    PairOptions,
    format_generator_pair,
    generator_pair_report,
)
from rosetta_lite.evaluation.inversion import OUTSIDE_BUDGET, TARGET_KINDS, evaluate_inversion, evaluate_outside
from rosetta_lite.evaluation.metrics import MAX_EVAL_IMAGES
from rosetta_lite.evaluation.nulls import NullOptions, format_nulls, null_report
from rosetta_lite.evaluation.stability import StabilityOptions, format_stability, stability_report
from rosetta_lite.evaluation.trust import trust_report
from rosetta_lite.files import DEFAULT_RUN, atomic_path, project_path, run_lock, writable_dir
from rosetta_lite.mining import processes as distributed
from rosetta_lite.mining.plan import MemoryRequest, fit_grid
from rosetta_lite.mining.settings import (
    ACCUMULATORS,
    DEFAULT_CALIBRATION_IMAGES,
    DEFAULT_QUANTILE,
    SIMILARITIES,
    TABLES,
    MiningResult,
)
from rosetta_lite.train.recipes import ORDER, train_member
from rosetta_lite.viz import census_figure, null_figure, world_figure
from rosetta_lite.world import EVAL_SEED, WORLDS, ShapesWorld
from rosetta_lite.zoo.registry import ZOOS, control_members, parse_weights, use_weights, zoo_members


def _int_in(low: int, high: int | None = None):
    """An argparse type: an integer from ``low`` to ``high`` (inclusive; no upper bound if None)."""
    def parse(text: str) -> int:
        allowed = f"an integer from {low} to {high}" if high is not None else f"an integer >= {low}"
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {value}")
        return value
    return parse


def _path(text: str) -> str:
    """An argparse type: a file or folder name that is not empty (an empty one would mean the current folder)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("is empty; give a path, e.g. runs/lite")
    return text


def _float_in(low: float, high: float | None = None, open_ends: bool = False):
    """An argparse type: a number from ``low`` to ``high`` (exclusive of both with ``open_ends``)."""
    def parse(text: str) -> float:
        ends = ("(", ")") if open_ends else ("[", "]")
        allowed = (f"a number in {ends[0]}{low}, {high}{ends[1]}" if high is not None
                   else f"a number {'>' if open_ends else '>='} {low}")
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {text!r}") from None
        outside = (value <= low or (high is not None and value >= high)) if open_ends else \
            (value < low or (high is not None and value > high))
        if outside or value != value:
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {text}")
        return value
    return parse


POSITIVE, NATURAL = _int_in(1), _int_in(0)
SEED = _int_in(0, 2**31 - 1)  # torch and numpy seed every stream from it; larger ones overflow their seeds


def _world(args: argparse.Namespace) -> int:
    batch = ShapesWorld(size=args.size).batch(args.n, seed=args.seed)
    fig = world_figure(batch)
    with atomic_path(args.out) as tmp:
        fig.savefig(tmp, format="png", dpi=args.dpi)
    print(f"wrote {args.n} Shapes World samples ({args.size} px, seed {args.seed}) with masks to {args.out}")
    return 0


def _bench_world(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    world = ShapesWorld(size=args.size)
    world.batch(64, seed=0)  # warm-up
    start = time.perf_counter()
    batch = world.batch(args.images, seed=args.seed)
    seconds = time.perf_counter() - start
    digest = hashlib.sha256(batch.images_uint8.numpy().tobytes()).hexdigest()
    report = {"benchmark": "world", "size": args.size, "images": args.images,
              "seconds": round(seconds, 3), "images_per_s": round(args.images / seconds, 1),
              "target_images_per_s": 2000, "sha256_of_bytes": digest,
              "same_bytes_on_rerun": digest == hashlib.sha256(
                  world.batch(args.images, seed=args.seed).images_uint8.numpy().tobytes()).hexdigest()}
    print(json.dumps(report, indent=None if args.json else 2))
    return 0


def _bench_zoo(args: argparse.Namespace) -> int:
    seconds = {}
    start = time.perf_counter()
    for name in zoo.names("lite"):
        begin = time.perf_counter()
        zoo.load(name)  # verifies the file's SHA-256 against the manifest
        seconds[name] = round(time.perf_counter() - begin, 3)
    total = round(time.perf_counter() - start, 3)
    print(json.dumps({"benchmark": "zoo", "load_seconds": seconds, "total_seconds": total,
                      "target_total_seconds": 5, "checksums_verified": True}))
    return 0


def _layers(args: argparse.Namespace) -> int:
    model = timm.create_model(args.model, pretrained=False).eval()
    size = args.input_size
    for info in list_layers(model, torch.zeros(1, 3, size, size)):
        print(f"{info.name:40s} {info.module:20s} {info.shape}")
    return 0


def _book(args: argparse.Namespace) -> int:
    root = Path(__file__).resolve().parent.parent
    script = Path(sys.executable).parent / "jupyter-book"
    script = str(script) if script.exists() else shutil.which("jupyter-book")
    if script is None:
        raise FileNotFoundError("jupyter-book is not installed: pip install -r requirements.txt")
    command = [script, "build", str(root), "--warningiserror", "--keep-going"]
    if args.all:
        command.append("--all")
    start = time.perf_counter()
    done = subprocess.run(command, cwd=root)
    times = root / "_build" / "chapter_times.json"
    if done.returncode == 0 and times.exists():
        for page, seconds in json.loads(times.read_text()).items():
            print(f"  {page}: executed in {seconds:.0f} s")
    print(f"book build took {time.perf_counter() - start:.0f} s; open {root / '_build/html/index.html'}")
    return done.returncode


def _notebooks(args: argparse.Namespace) -> int:
    for path in args.paths:
        refresh(path)
        print(f"refreshed {path}: executed, outputs kept only for checked cells")
    return 0


def _student(args: argparse.Namespace) -> int:
    paths = args.paths or sorted(project_path("notebooks").glob("*.ipynb"))
    for path in write_student_versions(paths, args.out):
        print(f"wrote {path} (no solutions)")
    return 0


def _repository(args: argparse.Namespace) -> int:
    url = repository_url()
    paths = args.paths or sorted(project_path("notebooks").glob("*.ipynb"))
    changed = stamp_repository(paths, url)
    print(f"{len(changed)} of {len(paths)} chapter(s) changed; every Colab install cell now installs from {url}")
    return 0


def _print_summary(summary: dict) -> None:
    print(f"mined {summary['images']} images -> {summary['out']}")
    for label in ("trained", "control"):
        if label not in summary:
            continue
        part = summary[label]
        units = ", ".join(f"{m} {n}" for m, n in part["units"].items())
        buddies = ", ".join(f"{m} {n}" for m, n in part["best_buddies"].items())
        print(f"  {label:8s} units: {units}")
        print(f"  {'':8s} best buddies with the generator: {buddies}")
        print(f"  {'':8s} Rosetta neurons: {part['rosetta_neurons']}, clusters: {part['clusters']}")


def _fit_memory(args: argparse.Namespace) -> tuple[int | None, str]:
    """The grid and tables' place for ``mine`` within --gpu-memory / --host-memory, or a ValueError naming the figures.

    Without --grid the largest grid that fits is chosen (:func:`~rosetta_lite.mining.plan.fit_grid`).
    """
    if args.gpu_memory is None and args.host_memory is None:
        return args.grid, args.tables
    gan, encoders = zoo_members(args.zoo, args.generator, args.encoders)
    members = encoders + ([] if args.no_control else control_members(encoders, ZooOptions().control_seed))
    request = MemoryRequest(grid=args.grid, batch_size=args.batch_size)
    for member in [gan, *members]:
        member.to(args.device)
    grid, placement = fit_grid(gan, members, request, args.device,
                               *(None if gb is None else int(gb * 2**30) for gb in (args.gpu_memory, args.host_memory)))
    if grid != args.grid:
        print(f"mine: the largest maps do not fit the memory budget: mining on a common grid of {grid} "
              "(--grid chooses another)", file=sys.stderr)
    return grid, placement if args.tables == "auto" else args.tables


def _mine(args: argparse.Namespace) -> int:
    use_weights(parse_weights(args.weights or []))
    args.grid, args.tables = _fit_memory(args)
    try:  # under torchrun every process mines its share; rank 0 writes and prints
        zoo_options = ZooOptions(k=args.k, mode=args.mode, control=not args.no_control, generator=args.generator,
                                 encoders=args.encoders)
        summary = mine_zoo(args.zoo, args.images, args.out, zoo_options=zoo_options, batch_size=args.batch_size,
                           seed=args.seed, start=args.start, grid=args.grid, device=args.device,
                           progress=not args.json, similarity=args.similarity, quantile=args.quantile,
                           calibration_images=args.calibration_images, precision=args.precision,
                           tables=args.tables)
    finally:
        distributed.teardown()
    if summary is None:
        return 0
    if args.json:
        print(json.dumps(summary))
    else:
        _print_summary(summary)
    return 0


def _merge(args: argparse.Namespace) -> int:
    for folder in args.folders:  # the merged run would overwrite that input, and a kill mid-save would mix the two
        if Path(folder).resolve() == Path(args.out).resolve():
            raise ValueError(f"--out {args.out} is one of the folders being merged ({folder}); merge into a new "
                             "folder, e.g. --out runs/merged")
    results = []
    for folder in args.folders:
        path = Path(folder) / ACCUMULATORS
        if not path.exists():
            raise FileNotFoundError(f"{folder} holds no finished mining run ({ACCUMULATORS} is missing)")
        results.append(MiningResult.load(path))
    merged = results[0]
    for other in results[1:]:
        merged.merge(other)
    with run_lock(args.out):
        merged.save(writable_dir(args.out) / ACCUMULATORS)
        _print_summary(save_dictionaries(merged, args.out, k=args.k, mode=args.mode))
    return 0


def _eval_concepts(args: argparse.Namespace) -> int:
    trained, control = load_dictionaries(args.folder)
    report = concept_report(trained, control, pretrained=False if args.untrained else None, n_images=args.images,
                            seed=args.seed, min_iou=args.min_iou)
    print(json.dumps(report) if args.json else format_report(report))
    return 0


def _eval_census(args: argparse.Namespace) -> int:
    options = CensusOptions(images=args.images, seed=args.seed, min_iou=args.min_iou, world=args.world,
                            weights=args.weights)
    _check_figure(args.figure)  # before the minutes of scoring
    report = census(options, generator=args.generator, encoders=args.encoders)
    _save_figure(args.figure, census_figure, report)
    print(json.dumps(report) if args.json else format_census(report))
    return 0


def _eval_nulls(args: argparse.Namespace) -> int:
    _check_figure(args.figure)
    report = null_report(args.folder, _null_options(args, NullOptions))
    _save_figure(args.figure, null_figure, report)
    print(json.dumps(report) if args.json else format_nulls(report))
    return 0


def _eval_generators(args: argparse.Namespace) -> int:
    _check_figure(args.figure)
    options = _null_options(args, PairOptions, generator=args.generator, redrawer=args.redrawer)
    report = generator_pair_report(args.folder, options)
    _save_figure(args.figure, null_figure, report)
    print(json.dumps(report) if args.json else format_generator_pair(report))
    return 0


def _null_options(args: argparse.Namespace, kind: type[NullOptions], **more: str) -> NullOptions:
    return kind(images=args.images, ks=tuple(args.k), label_images=args.label_images, seed=args.seed,
                min_iou=args.min_iou, quantile=args.quantile,
                mining={"batch_size": args.batch_size, "progress": not args.json}, **more)


def _eval_stability(args: argparse.Namespace) -> int:
    options = StabilityOptions(images=args.images, k=args.k, label_images=args.label_images, seed=args.seed,
                               min_iou=args.min_iou, mining={"batch_size": args.batch_size, "progress": not args.json})
    report = stability_report(args.folder, options)
    print(json.dumps(report) if args.json else format_stability(report))
    return 0


def _check_figure(path: str | None) -> None:
    """Refuse a --figure path that cannot be written, before any work."""
    if path:
        if Path(path).is_dir():
            raise ValueError(f"--figure {path!r} is a folder; give a PNG file's path")
        writable_dir(Path(path).parent)


def _save_figure(path: str | None, draw, report: dict) -> None:
    if path:
        with atomic_path(path) as tmp:
            draw(report).savefig(tmp, format="png", dpi=110, bbox_inches="tight")


def _eval_trust(args: argparse.Namespace) -> int:
    report = trust_report(args.folder, images=args.images, interpretability_images=args.interpretability_images,
                          min_ratio=args.min_ratio, mi_images=args.mi_images, quantile=args.quantile)
    print(json.dumps(report) if args.json else json.dumps(report, indent=1))
    return 0


def _train(args: argparse.Namespace) -> int:
    if args.all == bool(args.name):
        raise ValueError(f"name one member or pass --all; members: {list(ORDER)}")
    names = list(ORDER) if args.all else [args.name]
    if args.all and args.world != "plain":
        names.remove("lite-gan")  # it knows the plain world only
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    reports = []
    for name in names:
        report = train_member(name, args.out, steps=args.steps, seed=args.seed, progress=not args.json,
                              install_weights=args.install, device=args.device, world=args.world)
        reports.append(report)
        if not args.json:
            gates = ", ".join(f"{k} {'pass' if v else 'FAIL'}" for k, v in report["gates"].items()) or "none"
            print(f"{name}: {report['train_seconds']:.0f} s, quality {report['quality']}, gates: {gates}")
    total = round(time.perf_counter() - start, 1)
    if args.json:
        print(json.dumps({"members": reports, "seconds": total}))
    else:
        print(f"trained {len(names)} member(s) in {total:.0f} s" + (" and installed them" if args.install else ""))
    return 0


def _eval_inversion(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    report = evaluate_inversion(RosettaDictionary.load(args.folder), images=args.images, steps=args.steps,
                                restarts=args.restarts, beta=args.beta, progress=not args.json, device=args.device,
                                batch_size=args.batch_size, precision=args.precision, targets=args.targets,
                                warm_start=not args.no_warm_start, per_encoder=not args.all_matches_only)
    print(json.dumps(report) if args.json else json.dumps(report, indent=1))
    return 0


def _eval_outside(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    options = dataclasses.replace(OUTSIDE_BUDGET, steps=args.steps, restarts=args.restarts, device=args.device,
                                  batch_size=args.batch_size, precision=args.precision)
    report = evaluate_outside(RosettaDictionary.load(args.folder), args.images, options=options)
    print(json.dumps(report) if args.json else json.dumps(report, indent=1))
    return 0


def _eval_editing(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    report = evaluate_editing(RosettaDictionary.load(args.folder), images=args.images, steps=args.steps,
                              progress=not args.json, device=args.device, batch_size=args.batch_size,
                              precision=args.precision)
    print(json.dumps(report) if args.json else json.dumps(report, indent=1))
    return 0


#: the members `bench training` times by default: one of each recipe kind
BENCH_MEMBERS = ("lite-resnet-sup", "lite-resnet-dino", "lite-clip", "lite-gan")


def _add_world(commands) -> None:
    world = commands.add_parser("world", help="render Shapes World samples with their masks to a PNG")
    world.add_argument("--out", type=_path, default="runs/world.png")
    world.add_argument("--n", type=POSITIVE, default=8, help="samples (default 8)")
    world.add_argument("--size", type=_int_in(16, 1024), default=32, help="pixels, 16 or more (default 32)")
    world.add_argument("--seed", type=SEED, default=0)
    world.add_argument("--dpi", type=_int_in(20, 600), default=100, help="resolution of the PNG (20 to 600)")
    world.set_defaults(run=_world)


def _add_bench(commands) -> None:
    bench_kinds = commands.add_parser("bench", help="benchmarks that print JSON").add_subparsers(
        dest="bench", required=True)
    world = bench_kinds.add_parser("world", help="Shapes World throughput and determinism")
    world.add_argument("--images", type=POSITIVE, default=5000)
    world.add_argument("--size", type=_int_in(16, 1024), default=32)
    world.add_argument("--seed", type=SEED, default=0)
    world.add_argument("--threads", type=POSITIVE, default=2)
    world.add_argument("--json", action="store_true", help="one line of JSON")
    world.set_defaults(run=_bench_world)

    mining = bench_kinds.add_parser("mining", help="mining speed, exactness and memory vs baselines")
    mining.add_argument("--zoo", default="lite", choices=ZOOS)
    mining.add_argument("--images", type=POSITIVE, default=256)
    mining.add_argument("--batch-size", type=POSITIVE, default=32)
    mining.add_argument("--exact-images", type=POSITIVE, default=64, help="images for the float64 check")
    mining.add_argument("--rss-images", type=POSITIVE, default=64, help="memory at this count and 10x it")
    mining.add_argument("--threads", type=POSITIVE, default=2)
    mining.add_argument("--device", default="cpu", help="cpu or cuda (timings synchronised)")
    _add_precision_and_tables(mining)
    mining.add_argument("--repeats", type=POSITIVE, default=3, help="timings repeated, fastest kept (default 3)")
    mining.add_argument("--generator", default=None, help="override the zoo's generator")
    mining.add_argument("--encoders", nargs="+", default=None, help="only these encoders")
    mining.add_argument("--grid", type=_int_in(1, 1024), default=None, help="common map side (default: the largest map)")
    mining.add_argument("--json", action="store_true", help="one line of JSON")
    mining.set_defaults(run=bench_mining.main)

    training = bench_kinds.add_parser("training", help="seconds per training step, fp32 vs bf16")
    training.add_argument("--members", nargs="+", default=list(BENCH_MEMBERS),
                          help=f"members to time (default: {' '.join(BENCH_MEMBERS)})")
    training.add_argument("--steps", type=POSITIVE, default=10, help="timed steps per run (default 10)")
    training.add_argument("--repeats", type=POSITIVE, default=2, help="runs per precision, fastest kept")
    training.add_argument("--threads", type=POSITIVE, default=2)
    training.add_argument("--device", default="cpu", help="cpu or cuda")
    training.add_argument("--json", action="store_true", help="one line of JSON")
    training.set_defaults(run=bench_training.main)

    bench_kinds.add_parser("zoo", help="time to load every lite member, checksums verified").set_defaults(
        run=_bench_zoo)


def _add_check(commands) -> None:
    kinds = commands.add_parser("check", help="checks of a machine, as JSON").add_subparsers(dest="check",
                                                                                          required=True)
    gpu = kinds.add_parser("gpu", help="the full-scale path on a CUDA GPU, untrained weights: mining (device and host "
                                       "tables, tf32 and bf16), float64 error, inversion, editing, torchrun")
    defaults = gpu_check.GpuCheckOptions()
    gpu.add_argument("--device", default=defaults.device,
                     help="cuda or cuda:N (default cuda); cpu runs the same logic, for testing the check itself")
    gpu.add_argument("--zoo", default=defaults.zoo, choices=ZOOS, help=f"default {defaults.zoo}: nothing to download")
    gpu.add_argument("--generator", default=None, help="default: the zoo's (biggan-deep-256 at full scale)")
    gpu.add_argument("--encoders", nargs="+", default=None, help="default: every encoder of the zoo")
    gpu.add_argument("--images", type=POSITIVE, default=defaults.images,
                     help=f"images each mining run mines (default {defaults.images})")
    gpu.add_argument("--batch-size", type=POSITIVE, default=defaults.batch_size)
    gpu.add_argument("--grid", type=_int_in(1, 1024), default=defaults.grid,
                     help=f"common map side (default {defaults.grid}, the full-scale chapters')")
    gpu.add_argument("--exact-images", type=POSITIVE, default=defaults.exact_images,
                     help="images of the float64 check")
    gpu.add_argument("--exact-units", type=POSITIVE, default=defaults.exact_units,
                     help="units of each model the float64 check holds")
    gpu.add_argument("--targets", type=POSITIVE, default=defaults.targets, help="images inverted and latents edited")
    gpu.add_argument("--steps", type=POSITIVE, default=defaults.steps, help="steps of the inversion and of the edit")
    gpu.add_argument("--application-precision", default=defaults.application_precision, choices=PRECISIONS,
                     help="the inversion's and the edit's forward passes")
    gpu.add_argument("--processes", type=NATURAL, default=defaults.processes,
                     help="processes of the torchrun run on the one device (default 2; 0: none)")
    gpu.add_argument("--json", action="store_true", help="one line of JSON")
    gpu.set_defaults(run=gpu_check.main)


def _add_precision_and_tables(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS,
                        help="fp32 exact (default); tf32 matmuls; bf16/fp16 models under autocast")
    parser.add_argument("--tables", default="auto", choices=TABLES,
                        help="where the float64 tables live: device, host (GPU products added into CPU memory in "
                             "chunks), or auto (default: host on CUDA when they exceed half the free GPU memory)")


def _add_mine(commands) -> None:
    layers = commands.add_parser("layers", help="list a timm model's capturable layers and map shapes")
    layers.add_argument("model", help="a timm model name, e.g. resnet50 (built with untrained weights)")
    layers.add_argument("--input-size", type=_int_in(8, 4096), default=224)
    layers.set_defaults(run=_layers)

    mine = commands.add_parser("mine", help="mine a zoo: correlations, best buddies, the Rosetta dictionary")
    mine.add_argument("--zoo", default="lite", choices=ZOOS,
                      help="which zoo; *-untrained: the same architectures with seeded untrained weights")
    mine.add_argument("--images", type=POSITIVE, default=2000)
    mine.add_argument("--out", type=_path, default=DEFAULT_RUN, help=f"folder for the dictionary and checkpoints "
                                                         f"(default {DEFAULT_RUN}, where eval and the chapters look)")
    _add_matching(mine)
    mine.add_argument("--batch-size", type=POSITIVE, default=32)
    mine.add_argument("--seed", type=SEED, default=0, help="latent stream")
    mine.add_argument("--start", type=SEED, default=0, help="first latent (shards cover disjoint ranges)")
    mine.add_argument("--grid", type=_int_in(1, 1024), default=None, help="common map side (default: the largest map)")
    mine.add_argument("--generator", default=None)
    mine.add_argument("--encoders", nargs="+", default=None)
    mine.add_argument("--no-control", action="store_true", help="skip the untrained control zoo")
    mine.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (under torchrun: cuda:LOCAL_RANK)")
    mine.add_argument("--similarity", default="pearson", choices=SIMILARITIES,
                      help="pearson correlation, or mutual information of maps binarised at --quantile")
    mine.add_argument("--quantile", type=_float_in(0, 1, open_ends=True), default=DEFAULT_QUANTILE,
                      help=f"mi: binarisation quantile (default {DEFAULT_QUANTILE})")
    mine.add_argument("--calibration-images", type=POSITIVE, default=DEFAULT_CALIBRATION_IMAGES,
                      help=f"mi: thresholds from the first N latents of the stream (default {DEFAULT_CALIBRATION_IMAGES})")
    _add_precision_and_tables(mine)
    mine.add_argument("--json", action="store_true", help="print the summary as JSON")
    _add_weights(mine)
    for kind in ("gpu", "host"):
        mine.add_argument(f"--{kind}-memory", type=_float_in(0, open_ends=True), default=None, metavar="GB",
                          help=f"{kind} memory budget: the run's estimate is checked against it before mining "
                               "(the tables go to the host when only that fits), or refused with what would fit")
    mine.set_defaults(run=_mine)

    merge = commands.add_parser("merge", help="merge mining runs over disjoint latent ranges")
    merge.add_argument("folders", nargs="+", help="output folders of mine runs")
    merge.add_argument("--out", type=_path, required=True)
    _add_matching(merge)
    merge.set_defaults(run=_merge)


def _add_weights(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", nargs="+", default=None, metavar="NAME=PATH",
                        help="local weights files of pretrained members instead of the hub, e.g. resnet50=r50.pth")


def _add_matching(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--k", type=POSITIVE, default=3, help="best buddies: mutual K nearest neighbours (default 3)")
    parser.add_argument("--mode", default="mutual", choices=["mutual", "asymmetric"])


def _add_train(commands) -> None:
    train = commands.add_parser("train", help="train lite zoo members from their recipes, measure their gates")
    train.add_argument("name", nargs="?", help="a lite member, e.g. lite-resnet-sup")
    train.add_argument("--all", action="store_true", help="every member, encoders first, then the generators")
    train.add_argument("--out", type=_path, default="runs/zoo", help="checkpoints and weights (resumes from here)")
    train.add_argument("--steps", type=POSITIVE, default=None, help="override the recipe's steps")
    train.add_argument("--seed", type=SEED, default=None, help="override the recipe's seed")
    train.add_argument("--install", action="store_true", help="copy the weights into the package's manifest")
    train.add_argument("--device", default="cpu", help="where to train: cpu (the reference) or cuda")
    train.add_argument("--world", default="plain", choices=list(WORLDS),
                       help="the training scenes (default plain; textured: objects with fills, lite-gan left out)")
    train.add_argument("--threads", type=POSITIVE, default=2,
                       help="torch CPU threads (default 2; 1 for each of two runs side by side)")
    train.add_argument("--json", action="store_true")
    train.set_defaults(run=_train)


def _add_book(commands) -> None:
    book = commands.add_parser("book", help="build the book (executes every chapter), warnings as errors")
    book.add_argument("--all", action="store_true", help="rebuild every page, not only changed ones")
    book.set_defaults(run=_book)

    actions = commands.add_parser("notebooks", help="maintain the chapters").add_subparsers(
        dest="action", required=True)
    refresh = actions.add_parser("refresh", help="execute, keep only the outputs nbval checks")
    refresh.add_argument("paths", nargs="+")
    refresh.set_defaults(run=_notebooks)
    student = actions.add_parser("student", help="write the chapters without their solutions (student versions)")
    student.add_argument("paths", nargs="*", help="chapters (default: every chapter in notebooks/)")
    student.add_argument("--out", type=_path, default="runs/student", help="folder for the student notebooks")
    student.set_defaults(run=_student)
    repository = actions.add_parser("repository", help="write _config.yml's repository URL into the Colab "
                                                         "install cells")
    repository.add_argument("paths", nargs="*", help="chapters (default: every chapter in notebooks/)")
    repository.set_defaults(run=_repository)

    chapters = commands.add_parser("chapters", help="run every chapter with papermill, parameters from a YAML file")
    chapters.add_argument("--params", default=None, help="YAML file: common: and chapters: sections (default: none)")
    chapters.add_argument("--out", type=_path, default="runs/chapters", help="folder for the executed notebooks")
    chapters.add_argument("--only", nargs="+", default=None, help="chapters to run (stem or number, e.g. 01)")
    chapters.add_argument("--set", nargs="+", default=None, metavar="NAME=VALUE", help="extra common parameters")
    chapters.add_argument("--kernel", default=None, help="Jupyter kernel name (default: the notebook's)")
    _add_weights(chapters)
    chapters.set_defaults(run=batch.main)

    made = commands.add_parser("results", help="run the commands whose JSON the book's results page shows")
    made.add_argument("--out", type=_path, default=str(results.RESULTS), help="folder of the JSON files (default: book/results)")
    made.add_argument("--only", nargs="+", default=None, choices=results.STEPS, help="only these results")
    made.add_argument("--quiet", action="store_true", help="no progress bars")
    made.set_defaults(run=results.main)


def _add_null_options(command) -> None:
    """The options of commands that count Rosetta neurons against the nulls (eval nulls, eval generators)."""
    command.add_argument("--images", type=_int_in(16), default=2000,
                         help="images mined (default 2000; resumes the run in --run and its shuffled null)")
    command.add_argument("--k", type=_int_in(1, 50), nargs="+", default=[1, 2, 3, 4, 5],
                         help="best-buddy K values (default 1 2 3 4 5)")
    _add_labelling(command)
    command.add_argument("--quantile", type=_float_in(0, 1, open_ends=True), default=0.99,
                         help="of the shuffled best buddies' correlations, the level a cluster must pass "
                              "(default 0.99)")
    command.add_argument("--figure", default=None, help="also write the null figure to this PNG")
    command.add_argument("--json", action="store_true", help="print the report as one JSON line")


def _add_labelling(command) -> None:
    """The options of commands that mine, then label clusters on held-out scenes (eval nulls, eval stability)."""
    command.add_argument("--label-images", type=_int_in(16, 5000), default=300,
                         help="held-out scenes the clusters are labelled on (default 300)")
    command.add_argument("--seed", type=SEED, default=EVAL_SEED, help=f"their world stream (default {EVAL_SEED})")
    command.add_argument("--min-iou", type=_float_in(0, 1, open_ends=True), default=0.2,
                         help="label a cluster when its mean IoU above chance >= this (default 0.2)")
    command.add_argument("--batch-size", type=POSITIVE, default=32, help="images a mining batch (default 32)")


def _add_eval(commands) -> None:
    kinds = commands.add_parser("eval", help="evaluate a mining run against the Shapes World's ground truth") \
        .add_subparsers(dest="eval", required=True)
    _add_eval_labels(kinds)
    _add_eval_chance(kinds)
    _add_eval_applications(kinds)


def _add_eval_labels(kinds) -> None:
    """eval concepts and eval census: clusters and units labelled with the world's concepts."""
    concepts = kinds.add_parser("concepts", help="label each Rosetta cluster with a concept (IoU with masks)")
    _add_run_folder(concepts)
    concepts.add_argument("--images", type=POSITIVE, default=300, help="Shapes World images (default 300)")
    concepts.add_argument("--seed", type=SEED, default=EVAL_SEED,
                          help=f"world stream (default {EVAL_SEED}, the evaluation stream)")
    concepts.add_argument("--min-iou", type=_float_in(0, 1), default=0.2, help="label when mean IoU above chance >= this")
    concepts.add_argument("--untrained", action="store_true", help="the run mined --zoo lite-untrained")
    concepts.add_argument("--json", action="store_true", help="print the report as JSON")
    concepts.set_defaults(run=_eval_concepts)

    counted = kinds.add_parser("census", help="units per concept of every lite member, trained vs untrained")
    counted.add_argument("--images", type=_int_in(16, 5000), default=300, help="held-out scenes (default 300)")
    counted.add_argument("--seed", type=SEED, default=EVAL_SEED,
                         help=f"world stream and latent seed (default {EVAL_SEED}, the evaluation stream)")
    counted.add_argument("--min-iou", type=_float_in(0, 1, open_ends=True), default=0.2,
                         help="label a unit when its IoU above chance >= this (default 0.2)")
    counted.add_argument("--generator", default=None, help="the generator (default: the lite zoo's)")
    counted.add_argument("--encoders", nargs="+", default=None, help="encoders (default: every lite encoder)")
    counted.add_argument("--world", default="plain", choices=list(WORLDS), help="the world the encoders see")
    counted.add_argument("--weights", default=None,
                         help="folder of candidate weights (<member>.safetensors, as train writes) to count instead "
                              "of the shipped ones")
    counted.add_argument("--figure", default=None, help="also write the census figure to this PNG")
    counted.add_argument("--json", action="store_true", help="print the census as one JSON line")
    counted.set_defaults(run=_eval_census)


def _add_eval_chance(kinds) -> None:
    """eval nulls, generators, stability and trust: the dictionary against chance."""
    nulls = kinds.add_parser("nulls", help="Rosetta neurons and concepts: trained vs untrained, shuffled, K = 1-5")
    _add_run_folder(nulls)
    _add_null_options(nulls)
    nulls.set_defaults(run=_eval_nulls)

    pair = kinds.add_parser("generators", help="one generator's units against another's (redrawing its images "
                                               "through its reader), against the same nulls")
    pair.add_argument("--run", dest="folder", default=GENERATOR_PAIR_RUN,
                      help=f"folder of the pair's runs (default {GENERATOR_PAIR_RUN})")
    pair.add_argument("--generator", default="lite-gan", help="the generator whose images are mined (default lite-gan)")
    pair.add_argument("--redrawer", default="lite-renderer",
                      help="the generator that reads and redraws them (default lite-renderer; it needs a reader)")
    _add_null_options(pair)
    pair.set_defaults(run=_eval_generators)

    stable = kinds.add_parser("stability", help="clusters of two disjoint image sets matched: do they come back?")
    _add_run_folder(stable)
    stable.add_argument("--images", type=_int_in(16), default=2000,
                        help="images a set (default 2000: the run's latents, then as many more in <run>/second)")
    stable.add_argument("--k", type=_int_in(1, 50), default=3, help="best-buddy K (default 3)")
    _add_labelling(stable)
    stable.add_argument("--json", action="store_true", help="print the report as one JSON line")
    stable.set_defaults(run=_eval_stability)

    trust = kinds.add_parser("trust", help="trust scores of the Rosetta neurons: consistency, interpretability")
    _add_run_folder(trust)
    trust.add_argument("--images", type=_int_in(2), default=None, help="images split in halves (default: the run's)")
    trust.add_argument("--interpretability-images", type=POSITIVE, default=64, help="latents for ablations (default 64)")
    trust.add_argument("--min-ratio", type=_float_in(0, open_ends=True), default=1.5, help="inside/outside ratio to pass (default 1.5)")
    trust.add_argument("--mi-images", type=NATURAL, default=0, help="also mine mutual information on this many images")
    trust.add_argument("--quantile", type=_float_in(0, 1, open_ends=True), default=0.9, help="binarisation quantile of the MI (default 0.9)")
    trust.add_argument("--json", action="store_true", help="print the report as one JSON line")
    trust.set_defaults(run=_eval_trust)


def _add_eval_applications(kinds) -> None:
    """eval inversion, outside and editing: the applications measured."""
    inversion = kinds.add_parser("inversion", help="Table 1: inversion with and without Rosetta matches")
    _add_application(inversion, images=50, steps=100)
    inversion.add_argument("--restarts", type=POSITIVE, default=2, help="random starts per target (default 2)")
    inversion.add_argument("--beta", type=_float_in(0), default=0.5, help="weight of the Rosetta matches (default 0.5)")
    inversion.add_argument("--targets", default="scenes", choices=list(TARGET_KINDS),
                           help="what to invert: " + "; ".join(f"{k}: {v}" for k, v in TARGET_KINDS.items()))
    inversion.add_argument("--no-warm-start", action="store_true",
                           help="every restart from a random latent (default: the generator's reader guesses one)")
    inversion.add_argument("--all-matches-only", action="store_true",
                           help="only the rows perceptual only and + all matches (not one per encoder)")
    inversion.set_defaults(run=_eval_inversion)
    outside = kinds.add_parser("outside", help="Table 1 per kind of target (scenes, textured, sketch, gan, photo), "
                                               "from the reader's guess and from random latents")
    _add_application(outside, images=32, steps=OUTSIDE_BUDGET.steps)
    outside.add_argument("--restarts", type=POSITIVE, default=OUTSIDE_BUDGET.restarts,
                         help=f"random starts per target (default {OUTSIDE_BUDGET.restarts})")
    outside.set_defaults(run=_eval_outside)
    editing = kinds.add_parser("editing", help="edit fidelity: shift, zoom, concept removal")
    _add_application(editing, images=16, steps=100)
    editing.set_defaults(run=_eval_editing)


def _add_run_folder(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", dest="folder", default=DEFAULT_RUN,
                        help=f"folder of a mine run (default {DEFAULT_RUN}, where mine writes)")


def _add_application(parser: argparse.ArgumentParser, images: int, steps: int) -> None:
    _add_run_folder(parser)
    parser.add_argument("--images", type=_int_in(1, MAX_EVAL_IMAGES), default=images,
                        help=f"images (default {images}, at most {MAX_EVAL_IMAGES})")
    parser.add_argument("--batch-size", type=_int_in(1, 4096), default=64,
                        help="images optimised together (default 64); bounds the memory, not the result")
    parser.add_argument("--steps", type=POSITIVE, default=steps, help=f"optimisation steps (default {steps})")
    parser.add_argument("--threads", type=POSITIVE, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (every model runs there)")
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS,
                        help="the models' forward passes: fp32 (default), tf32, bf16 or fp16 (autocast)")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON line")


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    """A notice on the command line reads as one line ("warning: ..."), not a source line of the library."""
    return f"warning: {message}\n"


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command, one helper per command group.

        args = build_parser().parse_args(["mine", "--images", "200"])
    """
    parser = argparse.ArgumentParser(prog="python -m rosetta_lite", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for add in (_add_world, _add_bench, _add_check, _add_mine, _add_train, _add_book, _add_eval):
        add(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m rosetta_lite`` and ``rosetta-lite``.

        main(["world", "--out", "runs/world.png"])
    """
    args = build_parser().parse_args(argv)
    warnings.formatwarning = _one_line_warning
    try:
        return args.run(args)
    except KeyboardInterrupt:
        folder = getattr(args, "out", None)
        kept = f"what was checkpointed in {folder} is kept" if folder else "nothing half-written was kept"
        print(f"interrupted: {kept}; run the same command again to resume", file=sys.stderr)
        return 130
    except (ValueError, RuntimeError, OSError) as error:  # OSError: missing files, a file for a folder, ...
        print(f"error: {error}", file=sys.stderr)
        return 2
    except MemoryError:
        print("error: out of memory; run it with fewer images or a smaller --batch-size", file=sys.stderr)
        return 2
