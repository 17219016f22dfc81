"""The one command line: ``python -m rosetta_lite COMMAND``.

    python -m rosetta_lite world --out runs/world.png
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def _world(args: argparse.Namespace) -> int:
    from rosetta_lite.files import atomic_path
    from rosetta_lite.viz import world_figure
    from rosetta_lite.world import ShapesWorld

    batch = ShapesWorld(size=args.size).batch(args.n, seed=args.seed)
    fig = world_figure(batch)
    with atomic_path(args.out) as tmp:
        fig.savefig(tmp, format="png", dpi=args.dpi)
    print(f"wrote {args.n} Shapes World samples ({args.size} px, seed {args.seed}) with masks to {args.out}")
    return 0


def _bench_world(args: argparse.Namespace) -> int:
    import hashlib

    import torch

    from rosetta_lite.world import ShapesWorld

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
    from rosetta_lite import zoo

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
    import timm
    import torch

    from rosetta_lite.capture import list_layers

    model = timm.create_model(args.model, pretrained=False).eval()
    size = args.input_size
    for info in list_layers(model, torch.zeros(1, 3, size, size)):
        print(f"{info.name:40s} {info.module:20s} {info.shape}")
    return 0


def _book(args: argparse.Namespace) -> int:
    import shutil
    import subprocess
    from pathlib import Path

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
    from rosetta_lite.notebooks import refresh

    for path in args.paths:
        refresh(path)
        print(f"refreshed {path}: executed, outputs kept only for checked cells")
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


def _mine(args: argparse.Namespace) -> int:
    from rosetta_lite import distributed
    from rosetta_lite.runs import mine_zoo

    try:  # under torchrun every process mines its share; rank 0 writes and prints
        summary = mine_zoo(args.zoo, args.images, args.out, k=args.k, mode=args.mode, control=not args.no_control,
                           generator=args.generator, encoders=args.encoders, batch_size=args.batch_size,
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
    from pathlib import Path

    from rosetta_lite.mine import ACCUMULATORS, MiningResult
    from rosetta_lite.runs import save_dictionaries

    results = []
    for folder in args.folders:
        path = Path(folder) / ACCUMULATORS
        if not path.exists():
            raise FileNotFoundError(f"{folder} holds no finished mining run ({ACCUMULATORS} is missing)")
        results.append(MiningResult.load(path))
    merged = results[0]
    for other in results[1:]:
        merged.merge(other)
    from rosetta_lite.files import writable_dir

    merged.save(writable_dir(args.out) / ACCUMULATORS)
    _print_summary(save_dictionaries(merged, args.out, k=args.k, mode=args.mode))
    return 0


def _eval_concepts(args: argparse.Namespace) -> int:
    from rosetta_lite.concepts import concept_report, format_report
    from rosetta_lite.runs import load_dictionaries

    trained, control = load_dictionaries(args.folder)
    report = concept_report(trained, control, pretrained=False if args.untrained else None, n_images=args.images,
                            seed=args.seed, min_iou=args.min_iou)
    print(json.dumps(report) if args.json else format_report(report))
    return 0


def _eval_trust(args: argparse.Namespace) -> int:
    from rosetta_lite.trust import trust_report

    report = trust_report(args.folder, images=args.images, interpretability_images=args.interpretability_images,
                          min_ratio=args.min_ratio, mi_images=args.mi_images, quantile=args.quantile)
    print(json.dumps(report) if args.json else json.dumps(report, indent=1))
    return 0


def _train(args: argparse.Namespace) -> int:
    from rosetta_lite.train.recipes import ORDER, train_member

    if args.all == bool(args.name):
        raise ValueError(f"name one member or pass --all; members: {list(ORDER)}")
    names = list(ORDER) if args.all else [args.name]
    start = time.perf_counter()
    reports = []
    for name in names:
        report = train_member(name, args.out, steps=args.steps, seed=args.seed, progress=not args.json,
                              install_weights=args.install, device=args.device)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m rosetta_lite", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    world = commands.add_parser("world", help="render Shapes World samples with their masks to a PNG")
    world.add_argument("--out", default="runs/world.png")
    world.add_argument("--n", type=int, default=8, help="samples (default 8)")
    world.add_argument("--size", type=int, default=32, help="pixels, 16 or more (default 32)")
    world.add_argument("--seed", type=int, default=0)
    world.add_argument("--dpi", type=int, default=100)
    world.set_defaults(run=_world)

    bench = commands.add_parser("bench", help="benchmarks that print JSON")
    bench_kinds = bench.add_subparsers(dest="bench", required=True)
    bench_world = bench_kinds.add_parser("world", help="Shapes World throughput and determinism")
    bench_world.add_argument("--images", type=int, default=5000)
    bench_world.add_argument("--size", type=int, default=32)
    bench_world.add_argument("--seed", type=int, default=0)
    bench_world.add_argument("--threads", type=int, default=2)
    bench_world.add_argument("--json", action="store_true", help="one line of JSON")
    bench_world.set_defaults(run=_bench_world)

    bench_mining = bench_kinds.add_parser("mining", help="mining speed, exactness and memory vs baselines")
    bench_mining.add_argument("--zoo", default="lite", choices=["lite", "full", "lite-untrained", "full-untrained"])
    bench_mining.add_argument("--images", type=int, default=256)
    bench_mining.add_argument("--batch-size", type=int, default=32)
    bench_mining.add_argument("--exact-images", type=int, default=64, help="images for the float64 check")
    bench_mining.add_argument("--rss-images", type=int, default=64, help="memory at this count and 10x it")
    bench_mining.add_argument("--threads", type=int, default=2)
    bench_mining.add_argument("--device", default="cpu", help="cpu or cuda (timings synchronised)")
    bench_mining.add_argument("--precision", default="fp32", choices=["fp32", "tf32", "bf16", "fp16"],
                              help="fp32 exact; tf32 matmuls; bf16/fp16 models under autocast")
    bench_mining.add_argument("--repeats", type=int, default=3, help="timings repeated, fastest kept (default 3)")
    bench_mining.add_argument("--tables", default="auto", choices=["auto", "device", "host"],
                              help="where the float64 tables live: device, host (GPU products added into CPU "
                                   "memory in chunks), or auto (default: host on CUDA when they exceed half the "
                                   "free GPU memory)")
    bench_mining.add_argument("--generator", default=None, help="override the zoo's generator")
    bench_mining.add_argument("--encoders", nargs="+", default=None, help="only these encoders")
    bench_mining.add_argument("--grid", type=int, default=None, help="common map side (default: the largest map)")
    bench_mining.add_argument("--json", action="store_true", help="one line of JSON")
    bench_mining.set_defaults(run=lambda args: __import__("rosetta_lite.bench_mining", fromlist=["main"]).main(args))

    bench_training = bench_kinds.add_parser("training", help="seconds per training step, fp32 vs bf16")
    bench_training.add_argument("--members", nargs="+",
                                default=["lite-resnet-sup", "lite-resnet-dino", "lite-clip", "lite-gan"],
                                help="members to time (default: lite-resnet-sup lite-resnet-dino lite-clip lite-gan)")
    bench_training.add_argument("--steps", type=int, default=10, help="timed steps per run (default 10)")
    bench_training.add_argument("--repeats", type=int, default=2, help="runs per precision, fastest kept")
    bench_training.add_argument("--threads", type=int, default=2)
    bench_training.add_argument("--device", default="cpu", help="cpu or cuda")
    bench_training.add_argument("--json", action="store_true", help="one line of JSON")
    bench_training.set_defaults(run=lambda args: __import__("rosetta_lite.bench_training",
                                                            fromlist=["main"]).main(args))

    bench_zoo = bench_kinds.add_parser("zoo", help="time to load every lite member, checksums verified")
    bench_zoo.set_defaults(run=_bench_zoo)

    layers = commands.add_parser("layers", help="list a timm model's capturable layers and map shapes")
    layers.add_argument("model", help="a timm model name, e.g. resnet50 (built with untrained weights)")
    layers.add_argument("--input-size", type=int, default=224)
    layers.set_defaults(run=_layers)

    mine = commands.add_parser("mine", help="mine a zoo: correlations, best buddies, the Rosetta dictionary")
    mine.add_argument("--zoo", default="lite", choices=["lite", "full", "lite-untrained", "full-untrained"],
                      help="which zoo; *-untrained: the same architectures with seeded untrained weights")
    mine.add_argument("--images", type=int, default=2000)
    mine.add_argument("--out", default="runs/mine", help="folder for the dictionary and checkpoints")
    mine.add_argument("--k", type=int, default=3, help="best buddies: mutual K nearest neighbours")
    mine.add_argument("--mode", default="mutual", choices=["mutual", "asymmetric"])
    mine.add_argument("--batch-size", type=int, default=32)
    mine.add_argument("--seed", type=int, default=0, help="latent stream")
    mine.add_argument("--start", type=int, default=0, help="first latent (shards cover disjoint ranges)")
    mine.add_argument("--grid", type=int, default=None, help="common map side (default: the largest map)")
    mine.add_argument("--generator", default=None)
    mine.add_argument("--encoders", nargs="+", default=None)
    mine.add_argument("--no-control", action="store_true", help="skip the untrained control zoo")
    mine.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (under torchrun: cuda:LOCAL_RANK)")
    mine.add_argument("--similarity", default="pearson", choices=["pearson", "mi"],
                      help="pearson correlation, or mutual information of maps binarised at --quantile")
    mine.add_argument("--quantile", type=float, default=0.9, help="mi: binarisation quantile (default 0.9)")
    mine.add_argument("--calibration-images", type=int, default=64,
                      help="mi: thresholds from the first N latents of the stream (default 64)")
    mine.add_argument("--precision", default="fp32", choices=["fp32", "tf32", "bf16", "fp16"],
                      help="fp32 exact (default); tf32 matmuls; bf16/fp16 models under autocast")
    mine.add_argument("--tables", default="auto", choices=["auto", "device", "host"],
                      help="where the float64 tables live: device, host (GPU products added into CPU memory in "
                           "chunks), or auto (default: host on CUDA when they exceed half the free GPU memory)")
    mine.add_argument("--json", action="store_true", help="print the summary as JSON")
    mine.set_defaults(run=_mine)

    merge = commands.add_parser("merge", help="merge mining runs over disjoint latent ranges")
    merge.add_argument("folders", nargs="+", help="output folders of mine runs")
    merge.add_argument("--out", required=True)
    merge.add_argument("--k", type=int, default=3)
    merge.add_argument("--mode", default="mutual", choices=["mutual", "asymmetric"])
    merge.set_defaults(run=_merge)

    train = commands.add_parser("train", help="train lite zoo members from their recipes, measure their gates")
    train.add_argument("name", nargs="?", help="a lite member, e.g. lite-resnet-sup")
    train.add_argument("--all", action="store_true", help="every member, encoders first, then the GAN")
    train.add_argument("--out", default="runs/zoo", help="checkpoints and weights (resumes from here)")
    train.add_argument("--steps", type=int, default=None, help="override the recipe's steps")
    train.add_argument("--seed", type=int, default=None, help="override the recipe's seed")
    train.add_argument("--install", action="store_true", help="copy the weights into the package's manifest")
    train.add_argument("--device", default="cpu", help="where to train: cpu (the reference) or cuda")
    train.add_argument("--json", action="store_true")
    train.set_defaults(run=_train)

    book = commands.add_parser("book", help="build the book (executes every chapter), warnings as errors")
    book.add_argument("--all", action="store_true", help="rebuild every page, not only changed ones")
    book.set_defaults(run=_book)

    notebooks = commands.add_parser("notebooks", help="maintain the chapters")
    notebook_actions = notebooks.add_subparsers(dest="action", required=True)
    refresh = notebook_actions.add_parser("refresh", help="execute, keep only the outputs nbval checks")
    refresh.add_argument("paths", nargs="+")
    refresh.set_defaults(run=_notebooks)
    evaluate = commands.add_parser("eval", help="evaluate a mining run against the Shapes World's ground truth")
    eval_kinds = evaluate.add_subparsers(dest="eval", required=True)
    concepts = eval_kinds.add_parser("concepts", help="label each Rosetta cluster with a concept (IoU with masks)")
    concepts.add_argument("--run", dest="folder", default="runs/mine", help="output folder of a mine run")
    concepts.add_argument("--images", type=int, default=300, help="Shapes World images (default 300)")
    concepts.add_argument("--seed", type=int, default=7, help="world stream (default 7, the evaluation stream)")
    concepts.add_argument("--min-iou", type=float, default=0.2, help="label when mean IoU above chance >= this")
    concepts.add_argument("--untrained", action="store_true", help="the run mined --zoo lite-untrained")
    concepts.add_argument("--json", action="store_true", help="print the report as JSON")
    concepts.set_defaults(run=_eval_concepts)
    trust = eval_kinds.add_parser("trust", help="trust scores of the Rosetta neurons: consistency, interpretability")
    trust.add_argument("--run", dest="folder", default="runs/mine", help="output folder of a mine run")
    trust.add_argument("--images", type=int, default=None, help="images split in halves (default: the run's)")
    trust.add_argument("--interpretability-images", type=int, default=64, help="latents for ablations (default 64)")
    trust.add_argument("--min-ratio", type=float, default=1.5, help="inside/outside ratio to pass (default 1.5)")
    trust.add_argument("--mi-images", type=int, default=0, help="also mine mutual information on this many images")
    trust.add_argument("--quantile", type=float, default=0.9, help="binarisation quantile of the MI (default 0.9)")
    trust.add_argument("--json", action="store_true", help="print the report as one JSON line")
    trust.set_defaults(run=_eval_trust)
    for kind, help_text, images, steps in (("inversion", "Table 1: inversion with and without Rosetta matches", 50, 100),
                                           ("editing", "edit fidelity: shift, zoom, concept removal", 16, 100)):
        app = eval_kinds.add_parser(kind, help=help_text)
        app.add_argument("--run", dest="folder", default="runs/lite", help="folder of a mine run (its dictionary)")
        app.add_argument("--images", type=int, default=images, help=f"images (default {images})")
        app.add_argument("--steps", type=int, default=steps, help=f"optimisation steps (default {steps})")
        app.add_argument("--restarts", type=int, default=2, help="random starts per target, inversion (default 2)")
        app.add_argument("--beta", type=float, default=0.5, help="weight of the Rosetta matches (default 0.5)")
        app.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
        app.add_argument("--json", action="store_true", help="print the report as one JSON line")
        app.set_defaults(run=lambda a: __import__(f"rosetta_lite.{'invert' if a.eval == 'inversion' else 'edit'}",
                                                  fromlist=["_"]).__dict__[f"cli_eval_{a.eval}"](a))
    chapters = commands.add_parser("chapters", help="run every chapter with papermill, parameters from a YAML file")
    chapters.add_argument("--params", default=None, help="YAML file: common: and chapters: sections (default: none)")
    chapters.add_argument("--out", default="runs/chapters", help="folder for the executed notebooks")
    chapters.add_argument("--only", nargs="+", default=None, help="chapters to run (stem or number, e.g. 01)")
    chapters.add_argument("--set", nargs="+", default=None, metavar="NAME=VALUE", help="extra common parameters")
    chapters.add_argument("--kernel", default=None, help="Jupyter kernel name (default: the notebook's)")
    chapters.set_defaults(run=lambda args: __import__("rosetta_lite.batch", fromlist=["main"]).main(args))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m rosetta_lite`` and ``rosetta-lite``.

        main(["world", "--out", "runs/world.png"])
    """
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, PermissionError, FileNotFoundError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
