"""The mining benchmark: one run, one JSON object, every ratio measured in that run.

    python -m rosetta_lite bench mining --json

Measures full one-pass mining against (a) the models' forward passes alone, (b) the
cross-product matrix multiplies alone on data of the same shapes, and (c) a
re-implementation of the official code's algorithm: a statistics pass, then a
correlation pass that resizes every layer pair separately and averages per-batch
scores. Also the error against a float64 Pearson of all activations held at once, how
far the official approximation's best buddies are from the exact ones, and peak memory
at two image counts 10x apart (each in a fresh process).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from rosetta_lite.match import best_buddies
from rosetta_lite.mine import latents, maps_to_rows, mine, plan, record_encoder, record_generator, size_groups
from rosetta_lite.runs import zoo_members
from rosetta_lite.zoo.member import Member


def _timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def _batches(gan: Member, images: int, batch_size: int, seed: int = 0):
    for first in range(0, images, batch_size):
        yield latents(gan, seed, first, min(batch_size, images - first))


def forward_only(gan: Member, encoders: list[Member], images: int, batch_size: int) -> float:
    """Seconds to generate and run every encoder, with the same capture, but no statistics."""
    def run():
        with torch.no_grad():
            for z in _batches(gan, images, batch_size):
                generated, _ = record_generator(gan, z)
                for encoder in encoders:
                    record_encoder(encoder, generated)
    return _timed(run)[0]


def matmul_only(gan: Member, encoders: list[Member], images: int, batch_size: int) -> float:
    """Seconds for mining's cross-product multiplies alone, on random rows of the same shapes."""
    layers, units, sides, grids = plan(gan, encoders)
    n_g = sum(units[gan.name])
    total = 0.0
    for first in range(0, images, batch_size):
        count = min(batch_size, images - first)
        for name in [e.name for e in encoders] + [gan.name]:
            for side, _, columns in size_groups(layers[name], units[name], sides[name], grids[name]):
                width = len(range(sum(units[name]))[columns])
                a, b = torch.randn(count * side * side, n_g), torch.randn(count * side * side, width)
                total += _timed(lambda: a.T @ b)[0]
    return total


def two_pass(gan: Member, encoders: list[Member], images: int, batch_size: int) -> dict[str, torch.Tensor]:
    """The official algorithm: per-unit statistics pass, then a per-layer-pair correlation pass.

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
        for z in _batches(gan, images, batch_size):  # pass 1: statistics
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
        for z in _batches(gan, images, batch_size):  # pass 2: correlations, per layer pair
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
    return {name: table / batches for name, table in tables.items()}


def float64_error(gan: Member, encoders: list[Member], images: int, batch_size: int) -> float:
    """Largest |streaming - float64 Pearson of all activations held at once| over all tables."""
    result = mine(gan, encoders, images, batch_size=batch_size, progress=False)
    rows_g, rows_d = [], {e.name: [] for e in encoders}
    with torch.no_grad():
        for z in _batches(gan, images, batch_size):
            generated, g_maps = record_generator(gan, z)
            side = result.settings.grid[encoders[0].name]
            rows_g.append(maps_to_rows(g_maps, gan.layers, side).double())
            for encoder in encoders:
                rows_d[encoder.name].append(maps_to_rows(record_encoder(encoder, generated), encoder.layers,
                                                         result.settings.grid[encoder.name]).double())
    a = torch.cat(rows_g)
    a = a - a.mean(0)
    worst = 0.0
    for encoder in encoders:
        b = torch.cat(rows_d[encoder.name])
        b = b - b.mean(0)
        expected = (a.T @ b) / (a.norm(dim=0)[:, None] * b.norm(dim=0)[None, :])
        got = result.correlation(encoder.name)
        live = torch.isfinite(expected)
        worst = max(worst, float((got[live] - expected[live]).abs().max()))
    return worst


def jaccard(a: set, b: set) -> float:
    return len(a & b) / max(len(a | b), 1)


def peak_rss_mb(zoo: str, images: int, batch_size: int) -> float:
    """Peak resident memory of a mining run in a fresh process (VmHWM: getrusage keeps the parent's peak)."""
    code = ("import torch; torch.set_num_threads(2)\n"
            "from rosetta_lite.runs import zoo_members\nfrom rosetta_lite.mine import mine\n"
            f"gan, enc = zoo_members({zoo!r})\nmine(gan, enc, {images}, batch_size={batch_size}, progress=False)\n"
            "peak = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
            "print(int(peak.split()[1]) / 1024)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return round(float(done.stdout.strip().splitlines()[-1]), 1)


def run(zoo: str = "lite", images: int = 256, batch_size: int = 32, exact_images: int = 64,
        rss_images: int = 64) -> dict:
    """Every figure of the benchmark, measured in this one run.

        report = run("lite-untrained", images=64)
    """
    gan, encoders = zoo_members(zoo)
    torch.manual_seed(0)
    mine(gan, encoders, batch_size, batch_size=batch_size, progress=False)  # warm-up
    mining_s, result = _timed(lambda: mine(gan, encoders, images, batch_size=batch_size, progress=False))
    forward_s = forward_only(gan, encoders, images, batch_size)
    matmul_s = matmul_only(gan, encoders, images, batch_size)
    two_pass_s, approx = _timed(lambda: two_pass(gan, encoders, images, batch_size))
    overlaps = []
    for encoder in encoders:
        exact = set(best_buddies(result.correlation(encoder.name), 1, dead_a=result.pairs[encoder.name].dead_a(),
                                 dead_b=result.pairs[encoder.name].dead_b()))
        official = set(best_buddies(approx[encoder.name], 1))
        overlaps.append(jaccard(exact, official))
    return {
        "benchmark": "mining", "zoo": zoo, "images": images, "batch_size": batch_size,
        "threads": torch.get_num_threads(), "models": [gan.name] + [e.name for e in encoders],
        "units": {name: sum(u) for name, u in result.settings.units.items()},
        "images_per_s": round(images / mining_s, 2),
        "forward_only_images_per_s": round(images / forward_s, 2),
        "matmul_only_s": round(matmul_s, 3),
        "mining_s": round(mining_s, 3), "forward_only_s": round(forward_s, 3),
        "overhead_vs_limit": round((mining_s - forward_s) / matmul_s, 3), "overhead_target": 1.5,
        "two_pass_images_per_s": round(images / two_pass_s, 2),
        "speedup_vs_two_pass": round(two_pass_s / mining_s, 2), "speedup_target": 3,
        "max_abs_err_vs_float64": float64_error(gan, encoders, exact_images, batch_size),
        "float64_check_images": exact_images, "error_target": 1e-5,
        "two_pass_best_buddy_jaccard": round(sum(overlaps) / len(overlaps), 3),
        "peak_rss_mb": {str(rss_images): peak_rss_mb(zoo, rss_images, batch_size),
                        str(10 * rss_images): peak_rss_mb(zoo, 10 * rss_images, batch_size)},
        "peak_rss_mb_this_process": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main(args) -> int:
    torch.set_num_threads(args.threads)
    report = run(args.zoo, args.images, args.batch_size, args.exact_images, args.rss_images)
    print(json.dumps(report, indent=None if args.json else 2))
    return 0
