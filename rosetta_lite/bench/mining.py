"""The mining benchmark: one run, one JSON object, every ratio measured in that run.

    python -m rosetta_lite bench mining --json
    python -m rosetta_lite bench mining --zoo full-untrained --device cuda --precision bf16 --json
    python -m rosetta_lite bench mining --zoo full-untrained --device cuda --tables host --json

Measures full one-pass mining against (a) the models' forward passes alone, (b) the
cross-product matrix multiplies alone on data of the same shapes, (c) mining's work on
the rows alone (built, centred and carried to the products' sides, without products),
and (d) a re-implementation of the official code's algorithm: a statistics pass, then a
correlation pass that resizes every layer pair separately and averages per-batch
scores. All are timed in ``repeats`` rounds; the overhead (mining's time outside the
models' passes, which the mining run times itself, over the multiplies alone), the
preparation (c over b: the overhead cannot fall below one plus it while mining
prepares its rows this way) and the speed-up are computed within a round and
reported as the rounds' median with its spread, marked untrusted when the spread
exceeds :data:`TRUSTED_SPREAD` (the machine's load changed between rounds); the
speeds shown are each part's fastest time. Also the error against a float64 Pearson
of all float32 activations held at once (per precision on a GPU), how far the official approximation's best buddies
are from the exact ones, and peak memory at two image counts 10x apart (each in a fresh
process; GPU memory on CUDA). ``tables`` places the float64 tables of every mining run
(:func:`rosetta_lite.mining.plan.choose_tables`); the report gives where they went and their size.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from rosetta_lite import zoo as zoo_registry
from rosetta_lite.capture import record_encoder, record_generator
from rosetta_lite.device import PRECISIONS, check_precision, precision_context, resolve_device
from rosetta_lite.dictionary.match import best_buddies
from rosetta_lite.mining.loop import mine, pearson_blocks
from rosetta_lite.mining.plan import meetings, plan, size_groups, table_bytes, width
from rosetta_lite.mining.reference import float64_error, latent_batches
from rosetta_lite.mining.settings import MiningResult, check_tables
from rosetta_lite.stats.resample import Resampler
from rosetta_lite.zoo.member import Member
from rosetta_lite.zoo.registry import ZOOS, split_zoo, zoo_members


def _sync(device: str | torch.device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device: str | torch.device = "cpu") -> tuple[float, object]:
    _sync(device)
    start = time.perf_counter()
    out = fn()
    _sync(device)
    return time.perf_counter() - start, out


def bench_members(zoo: str, generator: str | None = None,
                  encoders: list[str] | None = None) -> tuple[Member, list[Member], str | None]:
    """The zoo's generator and encoders, and the name of a stand-in generator if the zoo has none.

        gan, encoders, stand_in = bench_members("full-untrained")

    A zoo without a generator of its own (the full-scale one before its GAN is
    registered) is benchmarked with the first registered generator, untrained when the
    zoo is; the JSON says so.
    """
    if zoo not in ZOOS:
        raise ValueError(f"zoo must be one of {list(ZOOS)}, got {zoo!r}")
    scale = split_zoo(zoo)[0]
    stand_in = None
    if generator is None and not zoo_registry.names(scale, "generator"):
        stand_in = generator = zoo_registry.names(None, "generator")[0]
    gan, members = zoo_members(zoo, generator, encoders)
    return gan, members, stand_in


def forward_only(gan: Member, encoders: list[Member], images: int, batch_size: int, device: str = "cpu",
                 precision: str = "fp32") -> float:
    """Seconds to generate and run every encoder, with the same capture, but no statistics.

        forward_only(gan, encoders, 256, 32)
    """
    def run():
        with torch.no_grad(), precision_context(precision, device):
            for z in latent_batches(gan, images, batch_size, device=device):
                generated, _ = record_generator(gan, z)
                for encoder in encoders:
                    record_encoder(encoder, generated)
    return _timed(run, device)[0]


def matmul_only(gan: Member, encoders: list[Member], images: int, batch_size: int, device: str = "cpu",
                precision: str = "fp32", grid: int | None = None) -> float:
    """Seconds for mining's cross-product multiplies alone, on random rows of the same shapes.

        matmul_only(gan, encoders, 256, 32)
    """
    layers, units, sides, grids = plan(gan, encoders, grid, device)
    total = 0.0
    with precision_context(precision, device):
        for first in range(0, images, batch_size):
            count = min(batch_size, images - first)
            for name in [e.name for e in encoders] + [gan.name]:
                g_groups = size_groups(layers[gan.name], units[gan.name], sides[gan.name], grids[name])
                groups = size_groups(layers[name], units[name], sides[name], grids[name])
                for (_, _, columns), (_, _, g_columns), meet, _ in meetings(g_groups, groups):
                    a = torch.randn(count * meet * meet, width(g_columns), device=device)
                    b = torch.randn(count * meet * meet, width(columns), device=device)
                    total += _timed(lambda: a.T @ b, device)[0]
    return total


def preparation_only(gan: Member, encoders: list[Member], images: int, batch_size: int, device: str = "cpu",
                     precision: str = "fp32", grid: int | None = None) -> float:
    """Seconds for mining's work on the rows alone, with no products and no tables.

        preparation_only(gan, encoders, 256, 32)

    Every model's rows built and centred as on its grid, the generator's carried to every
    side its products meet: :func:`~rosetta_lite.mining.loop.pearson_blocks`, as the mining
    run calls it, each batch's blocks made and let go. The models run outside the timing.
    Mining does this and the multiplies (:func:`matmul_only`), so the two together bound
    its time outside the models from below.
    """
    layers, units, sides, grids = plan(gan, encoders, grid, device)
    groups = {name: size_groups(layers[name], units[name], sides[name], grids[name]) for name in layers}
    resamplers = {side: Resampler(side, device) for side in set(grids.values())}
    total = 0.0
    for z in latent_batches(gan, images, batch_size, device=device):
        with torch.no_grad(), precision_context(precision, device):
            generated, g_maps = record_generator(gan, z)
            tables = [(e.name, record_encoder(e, generated), None) for e in encoders] + [(gan.name, g_maps, None)]

        def prepare():
            with torch.no_grad():
                for _ in pearson_blocks(tables, g_maps, gan, sides, grids, groups, resamplers):
                    pass
        total += _timed(prepare, device)[0]
    return total


def two_pass(gan: Member, encoders: list[Member], images: int, batch_size: int,
             device: str = "cpu") -> dict[str, torch.Tensor]:
    """The official algorithm: per-unit statistics pass, then a per-layer-pair correlation pass.

        approx = two_pass(gan, encoders, 256, 32)   # {"lite-clip": (n_g, n_d) table}

    Pass 2 resizes both maps of every (generator layer, encoder layer) pair to the larger
    of the two, standardises them with the pass-1 statistics and averages the per-batch
    mean products over batches. Returns the approximate tables (generator units x units).
    """
    def layer_stats(maps_by_layer, sums):
        for layer, maps in maps_by_layer.items():
            flat = maps.transpose(0, 1).reshape(maps.shape[1], -1).double()
            s = sums.setdefault(layer, [0, 0.0, 0.0])
            s[0] += flat.shape[1]
            s[1] = s[1] + flat.sum(1)
            s[2] = s[2] + flat.square().sum(1)

    g_sums, d_sums = {}, {e.name: {} for e in encoders}
    with torch.no_grad():
        for z in latent_batches(gan, images, batch_size, device=device):  # pass 1: statistics
            generated, g_maps = record_generator(gan, z)
            layer_stats(g_maps, g_sums)
            for encoder in encoders:
                layer_stats(record_encoder(encoder, generated), d_sums[encoder.name])

    def standardise(maps, s):
        mean = s[1] / s[0]
        std = (s[2] / s[0] - mean.square()).clamp_min(1e-12).sqrt()
        return (maps - mean.float()[None, :, None, None]) / std.float()[None, :, None, None]

    tables, batches = {}, 0
    with torch.no_grad():
        for z in latent_batches(gan, images, batch_size, device=device):  # pass 2: correlations, per layer pair
            generated, g_maps = record_generator(gan, z)
            batches += 1
            for encoder in encoders:
                d_maps = record_encoder(encoder, generated)
                blocks = []
                for g_layer in gan.layers:
                    row = []
                    for d_layer in encoder.layers:
                        a = standardise(g_maps[g_layer], g_sums[g_layer])
                        b = standardise(d_maps[d_layer], d_sums[encoder.name][d_layer])
                        side = max(a.shape[-1], b.shape[-1])
                        a = F.interpolate(a, size=(side, side), mode="bilinear", align_corners=False)
                        b = F.interpolate(b, size=(side, side), mode="bilinear", align_corners=False)
                        a = a.permute(0, 2, 3, 1).reshape(-1, a.shape[1])
                        b = b.permute(0, 2, 3, 1).reshape(-1, b.shape[1])
                        row.append((a.T @ b) / a.shape[0])
                    blocks.append(torch.cat(row, 1))
                table = torch.cat(blocks, 0).double()
                tables[encoder.name] = tables.get(encoder.name, 0) + table
    return {name: (table / batches).cpu() for name, table in tables.items()}


#: a ratio whose rounds spread more than this fraction of their median is reported as not to be trusted
TRUSTED_SPREAD = 0.2


def round_ratios(times: dict[str, list[float]]) -> dict[str, dict]:
    """Per round, the overhead, the preparation and the speed-up over the two-pass algorithm; their median,
    spread and trust.

        round_ratios({"mining": [2.8], "statistics": [1.0], "matmul": [0.6], "two_pass": [11.0]})

    The overhead is mining's time outside the models' passes (``statistics``, timed by the
    mining run itself: :attr:`MiningResult.seconds`) over the multiplies alone; the
    preparation (when ``times`` holds it), the work on the rows alone
    (:func:`preparation_only`) over the multiplies alone; the speed-up, the two-pass
    algorithm's time over mining's. Each ratio divides times of one
    round, so a slow spell of a shared machine, which hits the round's measurements alike,
    cancels; the median of the rounds is reported, and the spread ((max - min) / median)
    says whether the machine stayed steady enough to trust it.
    """
    rounds = range(len(times["mining"]))
    values = {"overhead": [times["statistics"][i] / times["matmul"][i] for i in rounds],
              "speedup": [times["two_pass"][i] / times["mining"][i] for i in rounds]}
    if "preparation" in times:
        values["preparation"] = [times["preparation"][i] / times["matmul"][i] for i in rounds]
    out = {}
    for name, v in values.items():
        median = statistics.median(v)
        spread = (max(v) - min(v)) / abs(median) if median else float("inf")
        out[name] = {"rounds": [round(x, 3) for x in v], "median": round(median, 3), "spread": round(spread, 3),
                     "trusted": len(v) > 1 and spread <= TRUSTED_SPREAD}
    return out


def jaccard(a: set, b: set) -> float:
    return len(a & b) / max(len(a | b), 1)


@dataclass
class BenchOptions:
    """How to benchmark, beside the zoo and the image count; checked as a whole by :meth:`check`.

        run("full-untrained", 64, options=BenchOptions(device="cuda", precision="bf16", tables="host"))
    """

    batch_size: int = 32
    exact_images: int = 64  # images of the float64 check
    rss_images: int = 64  # peak memory at this count and 10x it
    device: str = "cpu"
    precision: str = "fp32"
    repeats: int = 3  # rounds; each ratio is taken within one
    generator: str | None = None  # None: the zoo's (or a stand-in, see bench_members)
    encoders: list[str] | None = None  # None: all the zoo's
    grid: int | None = None
    tables: str = "auto"

    def check(self) -> None:
        """Refuse settings the benchmark cannot run, saying what is allowed."""
        check_precision(self.precision)
        check_tables(self.tables)
        if self.repeats < 1:
            raise ValueError(f"repeats must be at least 1, got {self.repeats}")
        for name in ("exact_images", "rss_images"):  # each is mined in batches: at least one of them
            if getattr(self, name) < self.batch_size:
                raise ValueError(f"{name} ({getattr(self, name)}) must be at least one batch ({self.batch_size}); "
                                 "lower --batch-size or raise it")
        resolve_device(self.device)


def peak_memory_mb(zoo: str, images: int, options: BenchOptions | None = None) -> dict[str, float]:
    """Peak memory of a mining run in a fresh process: resident (VmHWM; getrusage keeps the parent's peak) and GPU.

        peak_memory_mb("lite", 64, BenchOptions(batch_size=32))   # {"rss": 1113.0}
    """
    o = options or BenchOptions()
    code = ("import json, torch; torch.set_num_threads(2)\n"
            "from rosetta_lite.bench.mining import bench_members\nfrom rosetta_lite.mining.loop import mine\n"
            f"gan, enc, _ = bench_members({zoo!r}, {o.generator!r}, {o.encoders!r})\n"
            f"mine(gan, enc, {images}, batch_size={o.batch_size}, progress=False, device={o.device!r}, "
            f"precision={o.precision!r}, grid={o.grid!r}, tables={o.tables!r})\n"
            "peak = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
            "out = {'rss': int(peak.split()[1]) / 1024}\n"
            "if torch.cuda.is_available() and torch.cuda.is_initialized():\n"
            "    out['gpu'] = torch.cuda.max_memory_allocated() / 2**20\n"
            "print(json.dumps(out))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the memory probe failed: {done.stderr.strip()[-2000:]}")
    return {key: round(value, 1) for key, value in json.loads(done.stdout.strip().splitlines()[-1]).items()}


def run(zoo: str = "lite", images: int = 256, *, options: BenchOptions | None = None, **changes: Any) -> dict:
    """Every figure of the benchmark, measured in this one run.

        report = run("lite-untrained", images=64)
        report = run("full-untrained", images=64, device="cuda", precision="bf16", tables="host")

    ``options`` (:class:`BenchOptions`, default: its defaults) with ``changes`` applied say how.
    """
    o = dataclasses.replace(options or BenchOptions(), **changes)
    o.check()
    gan, members, stand_in = bench_members(zoo, o.generator, o.encoders)
    torch.manual_seed(0)
    mine(gan, members, o.batch_size, batch_size=o.batch_size, progress=False, device=o.device,
         precision=o.precision, grid=o.grid, tables=o.tables)  # warm-up
    cuda = torch.device(o.device).type == "cuda"
    times, peak_gpu, result, approx = _rounds(gan, members, images, o)
    mining_s, forward_s, matmul_s, two_pass_s = (min(times[k]) for k in ("mining", "forward", "matmul", "two_pass"))
    ratios = round_ratios(times)
    overlaps = [_buddy_overlap(result, approx, encoder.name) for encoder in members]
    settings = result.settings
    del result, approx  # full scale: GBs of tables this process need not hold beside the probes' own
    checked = tuple(PRECISIONS) if cuda else tuple(dict.fromkeys(("fp32", o.precision)))
    errors = float64_error(gan, members, o.exact_images, o.batch_size, o.device, checked, o.grid, o.tables)
    probe = dataclasses.replace(o, generator=o.generator or stand_in)
    memory = {str(n): peak_memory_mb(zoo, n, probe) for n in (o.rss_images, 10 * o.rss_images)}
    report = {
        "benchmark": "mining", "zoo": zoo, "images": images, "batch_size": o.batch_size, "grid": settings.grid,
        "device": str(o.device), "precision": o.precision, "repeats": o.repeats,
        "tables": o.tables, "tables_placed_on": settings.extra["tables"],
        "tables_gb": round(table_bytes(settings.units, gan.name) / 1e9, 3),
        "threads": torch.get_num_threads(), "models": [gan.name] + [e.name for e in members],
        "generator_stand_in": stand_in,
        "units": {name: sum(u) for name, u in settings.units.items()},
        "images_per_s": round(images / mining_s, 2),
        "forward_only_images_per_s": round(images / forward_s, 2),
        "matmul_only_s": round(matmul_s, 3),
        "mining_s": round(mining_s, 3), "forward_only_s": round(forward_s, 3),
        "all_times_s": {k: [round(t, 3) for t in v] for k, v in times.items()},
        "overhead_vs_limit": ratios["overhead"]["median"], "overhead_target": 1.5,
        "preparation_vs_matmul": ratios["preparation"]["median"],
        "two_pass_images_per_s": round(images / two_pass_s, 2),
        "speedup_vs_two_pass": ratios["speedup"]["median"], "speedup_target": 3,
        "ratios_by_round": ratios, "ratios_trusted": all(r["trusted"] for r in ratios.values()),
        "max_abs_err_vs_float64": errors[o.precision],
        "max_abs_err_vs_float64_by_precision": errors,
        "float64_check_images": o.exact_images, "error_target": 1e-5,
        "two_pass_best_buddy_jaccard": round(sum(overlaps) / len(overlaps), 3),
        "peak_rss_mb": {n: m["rss"] for n, m in memory.items()},
        "peak_rss_mb_this_process": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    if cuda:
        report["peak_gpu_memory_mb"] = round(peak_gpu, 1)
        report["peak_gpu_memory_mb_fresh_process"] = {n: m.get("gpu") for n, m in memory.items()}
        report["tf32_matmuls"] = o.precision != "fp32"
        report["gpu"] = torch.cuda.get_device_name(o.device)
    return report


def _buddy_overlap(result: MiningResult, approx: dict[str, torch.Tensor], encoder: str) -> float:
    """Jaccard of the exact best buddies (dead units left out) and the two-pass algorithm's."""
    acc = result.pairs[encoder]
    exact = set(best_buddies(result.similarity(encoder), 1, dead_a=acc.dead_a().cpu(), dead_b=acc.dead_b().cpu()))
    return jaccard(exact, set(best_buddies(approx[encoder], 1)))


def _rounds(gan: Member, members: list[Member], images: int,
            o: BenchOptions) -> tuple[dict[str, list[float]], float, MiningResult, dict[str, torch.Tensor]]:
    """Each part's seconds per round, the peak GPU memory of mining, and the last round's two results."""
    cuda = torch.device(o.device).type == "cuda"
    times = {"mining": [], "statistics": [], "forward": [], "matmul": [], "preparation": [], "two_pass": []}
    peak_gpu = 0.0
    for _ in range(o.repeats):  # rounds: each ratio is taken within one round, where the machine's load was alike
        if cuda:
            torch.cuda.reset_peak_memory_stats(o.device)
        seconds, result = _timed(lambda: mine(gan, members, images, batch_size=o.batch_size, progress=False,
                                              device=o.device, precision=o.precision, grid=o.grid,
                                              tables=o.tables), o.device)
        if cuda:
            peak_gpu = max(peak_gpu, torch.cuda.max_memory_allocated(o.device) / 2 ** 20)
        times["mining"].append(seconds)
        times["statistics"].append(result.seconds["statistics"])
        times["forward"].append(forward_only(gan, members, images, o.batch_size, o.device, o.precision))
        times["matmul"].append(matmul_only(gan, members, images, o.batch_size, o.device, o.precision, o.grid))
        times["preparation"].append(preparation_only(gan, members, images, o.batch_size, o.device, o.precision,
                                                     o.grid))
        two_pass_s, approx = _timed(lambda: two_pass(gan, members, images, o.batch_size, o.device), o.device)
        times["two_pass"].append(two_pass_s)
    return times, peak_gpu, result, approx


def main(args: argparse.Namespace) -> int:
    """The ``bench mining`` action of the command line."""
    torch.set_num_threads(args.threads)
    options = BenchOptions(**{f.name: getattr(args, f.name) for f in dataclasses.fields(BenchOptions)})
    report = run(args.zoo, args.images, options=options)
    print(json.dumps(report, indent=None if args.json else 2))
    return 0
