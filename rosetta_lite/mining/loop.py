"""One pass over generated images: record every model's units, accumulate co-moments.

    result = mine(zoo.load("lite-gan"), [zoo.load("lite-clip")], images=2000, out="runs/lite")
    result = mine(gan, encoders, images=2000, similarity="mi")   # mutual information instead

Latents -> generator (its layers recorded) -> images -> every encoder (each with its
own preprocessing, its layers recorded) -> every pair of layer groups of a model pair
meeting at the smaller of their map sides, as if both were resized to the pair's grid
-> one matrix multiply per pair of groups and batch into :class:`~rosetta_lite.stats.moments.CoMoments`
(Pearson) or :class:`~rosetta_lite.stats.binary.BinaryMoments` (mutual information of
binarised maps). Each image goes through the generator and through each encoder exactly
once. Runs checkpoint their accumulators and resume; runs over disjoint latent ranges
merge; under ``torchrun`` the processes split the latents and reduce their accumulators
(:mod:`rosetta_lite.mining.processes`).

Pearson tables too large for the GPU stay in host memory (``tables="host"``, chosen
automatically on CUDA when they would take more than :data:`AUTO_HOST_FRACTION` of the
free GPU memory): the products are still computed on the GPU, in column chunks, and
added into the float64 host tables (:class:`~rosetta_lite.stats.moments.CoMoments`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rosetta_lite.capture import maps_to_rows, record_encoder, record_generator
from rosetta_lite.device import check_precision, native_bf16, precision_context, resolve_device
from rosetta_lite.files import run_lock, writable_dir
from rosetta_lite.mining import processes as distributed
from rosetta_lite.mining.plan import choose_tables, meetings, plan, size_groups, table_bytes
from rosetta_lite.mining.ranges import add_range, count, missing_ranges
from rosetta_lite.mining.settings import (
    ACCUMULATORS,
    CHECKPOINT,
    DEFAULT_CALIBRATION_IMAGES,
    DEFAULT_QUANTILE,
    MiningResult,
    MiningSettings,
    accumulator_class,
    check_pairing,
    check_similarity,
    check_tables,
    settings_difference,
)
from rosetta_lite.progress import progress_bar
from rosetta_lite.stats.binary import top_quantile_thresholds
from rosetta_lite.stats.moments import DEFAULT_CHUNK_BYTES, Centred, CoMoments, centre, check_chunk_bytes
from rosetta_lite.stats.resample import Resampler
from rosetta_lite.zoo.member import Member

LATENT_BLOCK = 1024  # latents come in seeded blocks, so any range is the same whoever draws it
#: under ``pairing="shuffled"`` the encoders see latent i of the stream ``seed + SHUFFLED_STREAM``
#: beside the generator's maps of latent i of ``seed``: images drawn independently of the generator's
SHUFFLED_STREAM = 1
log = logging.getLogger(__name__)


def latents(generator: Member, seed: int, start: int, count: int) -> torch.Tensor:
    """Latents ``start .. start+count-1`` of the stream ``seed``, (count, z_dim).

        z = latents(gan, seed=0, start=1000, count=64)
    """
    first, last = start // LATENT_BLOCK, (start + count - 1) // LATENT_BLOCK
    blocks = [generator.sample_latents(LATENT_BLOCK, seed=seed * 1_000_003 + b) for b in range(first, last + 1)]
    offset = start - first * LATENT_BLOCK
    return torch.cat(blocks)[offset:offset + count]


@dataclass
class MiningOptions:
    """How to mine, beside the models and the output folder; checked as a whole by :meth:`check`.

        mine(gan, encoders, 2000, options=MiningOptions(batch_size=64, device="cuda", precision="bf16"))
    """

    batch_size: int = 32
    seed: int = 0  # latent stream
    start: int = 0  # first latent of the stream (shards mine disjoint ranges)
    grid: int | None = None  # common map side of every table (None: the largest map of each pair)
    checkpoint_every: int = 10  # batches between checkpoints in ``out``
    resume: bool = True
    progress: bool = True
    device: str = "cpu"
    control_seed: int | None = None  # recorded: the seed of the control zoo mined in the same pass
    similarity: str = "pearson"
    quantile: float = DEFAULT_QUANTILE  # mi: binarisation quantile
    calibration_images: int = DEFAULT_CALIBRATION_IMAGES  # mi: thresholds from latents 0..n-1
    precision: str = "fp32"
    tables: str = "auto"
    chunk_bytes: int = DEFAULT_CHUNK_BYTES
    pairing: str = "same"  # "shuffled": the image-shuffle null (see SHUFFLED_STREAM)

    def check(self, images: int) -> None:
        """Refuse settings that cannot mine ``images`` images, saying what is allowed."""
        check_similarity(self.similarity)
        check_pairing(self.pairing)
        check_precision(self.precision)
        check_tables(self.tables, self.similarity)
        check_chunk_bytes(self.chunk_bytes)
        for name, value, low in (("images", images, 1), ("batch_size", self.batch_size, 1),
                                 ("checkpoint_every", self.checkpoint_every, 1), ("seed", self.seed, 0),
                                 ("start", self.start, 0)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if self.grid is not None and (not isinstance(self.grid, int) or not 1 <= self.grid <= 1024):
            raise ValueError(f"grid must be None (the largest map) or an integer from 1 to 1024, got {self.grid!r}")
        if images < self.batch_size:
            raise ValueError(f"images ({images}) must be at least one batch ({self.batch_size}); lower --batch-size")
        if self.similarity == "mi" and not 0.0 < self.quantile < 1.0:
            raise ValueError(f"quantile must be in (0, 1), got {self.quantile}")
        if self.similarity == "mi" and self.calibration_images < 1:
            raise ValueError(f"calibration_images must be at least 1, got {self.calibration_images}")
        device = resolve_device(self.device)
        if self.precision == "bf16" and not native_bf16(device):
            warnings.warn(f"bf16 on this {device.type.upper()} is emulated: slower than fp32, with bf16's rounding in "
                          "every map; fp32 is the reference (--precision fp32)", UserWarning, stacklevel=3)


def mine(generator: Member, encoders: list[Member], images: int, *, out: str | Path | None = None,
         options: MiningOptions | None = None, **changes: Any) -> MiningResult:
    """Mine the generator against every encoder (and itself) in one pass.

        result = mine(gan, encoders, images=2000, out="runs/lite")
        result = mine(gan, encoders, 2000, options=MiningOptions(similarity="mi"), batch_size=16)

    ``options`` (:class:`MiningOptions`, default: its defaults) with ``changes`` applied
    say how. ``similarity="pearson"``: every table equals the Pearson correlation of the
    maps bilinearly resized to its grid, computed without resizing the smaller maps
    (:mod:`rosetta_lite.stats.resample`). ``similarity="mi"``: the mutual information of
    the maps on the grid binarised at their ``quantile``, with thresholds frozen from
    ``calibration_images`` latents (the first ones of the stream ``seed``, whatever
    ``start`` is, so that shards and processes binarise alike). With ``out``,
    accumulators are checkpointed every ``checkpoint_every`` batches and a restarted run
    with the same settings resumes from the last checkpoint. ``precision`` (one of
    :data:`~rosetta_lite.device.PRECISIONS`) lets the models run in lower precision on a
    GPU. ``tables`` (see :func:`~rosetta_lite.mining.plan.choose_tables`) keeps the
    Pearson tables on the device or in host memory; ``chunk_bytes`` bounds one column
    chunk of a table (float64) multiplied and added at once, in either place. The
    placement changes only float64 rounding, and the returned tables are on the CPU in
    both. ``pairing="shuffled"`` mines the image-shuffle null: the encoders see the
    images of another latent stream (:data:`SHUFFLED_STREAM`) beside the generator's maps. Under ``torchrun`` (WORLD_SIZE > 1) every process mines a contiguous share of
    the batches and all return the reduced result; only rank 0 writes
    ``out/accumulators``. Host tables are reduced one column chunk at a time, each moved
    to the device for the all-reduce (NCCL reduces GPU tensors only), so the device
    never holds a whole table.
    """
    began = time.perf_counter()
    opts = dataclasses.replace(options or MiningOptions(), **changes)
    opts.check(images)
    _check_models(generator, encoders)
    rank, world, device = distributed.setup(opts.device)
    whole = (opts.start, images)
    start = opts.start
    if world > 1:
        start, images = distributed.share(start, images, opts.batch_size, rank, world)
    out = writable_dir(out) if out is not None else None
    holder = run_lock(out) if out is not None and distributed.lead_process() else contextlib.nullcontext()
    with holder:  # one writer per run folder
        for member in [generator, *encoders]:
            member.model.to(device)
        checkpoint = CHECKPOINT if world == 1 else f"checkpoint-rank{rank}-of-{world}.safetensors"
        run = _Pass(generator, encoders, opts, device, out, checkpoint, rank, world)
        result, placement, sides = _start(run, start, images)
        models_s = _mine_batches(run, result, sides)
        if world > 1:
            _reduce(result, placement, device, whole, world)
        result.to("cpu")  # dictionaries, best buddies and saving index CPU tables with these
        if out is not None:
            if rank == 0:
                result.save(out / ACCUMULATORS)
            distributed.barrier()
            (out / checkpoint).unlink(missing_ok=True)
        result.seconds = {"models": models_s, "statistics": time.perf_counter() - began - models_s}
        return result


@dataclass
class _Pass:
    """One mining pass: its models, how it mines, and this process's place in it."""

    generator: Member
    encoders: list[Member]
    opts: MiningOptions
    device: torch.device
    out: Path | None  # the run folder, None: nothing is written
    checkpoint: str  # this process's checkpoint file in ``out``
    rank: int
    world: int


def _check_models(generator: Member, encoders: list[Member]) -> None:
    if not generator.is_generator:
        raise ValueError(f"{generator.name} is not a generator; the pivot of mining must be one")
    if not encoders:
        raise ValueError("need at least one encoder to mine against")
    names = [e.name for e in encoders]
    if len(set(names)) != len(names) or generator.name in names:
        raise ValueError(f"model names must be distinct, got {generator.name} and {names}")


def _start(run: _Pass, start: int, images: int) -> tuple[MiningResult, str, dict[str, list[int | None]]]:
    """The run's result so far (resumed from ``out`` when it holds this run, else empty), where its tables
    live, and the map sides of every model's layers."""
    generator, encoders, opts, device = run.generator, run.encoders, run.opts, run.device
    mi = opts.similarity == "mi"
    with precision_context(opts.precision, device):
        layers, units, sides, grids = plan(generator, encoders, opts.grid, device)
    settings = MiningSettings(generator.name, [e.name for e in encoders], layers, units, grids, opts.seed, start,
                              images, opts.batch_size, opts.control_seed, str(device), similarity=opts.similarity,
                              quantile=opts.quantile if mi else None,
                              calibration_images=opts.calibration_images if mi else None, precision=opts.precision,
                              weights={m.name: m.digest() for m in (generator, *encoders)}, pairing=opts.pairing)
    result = None
    if run.out is not None and opts.resume:
        result = _resume(run.out, settings, run.checkpoint, finished=run.world == 1)
    if result is None:
        n_g = sum(units[generator.name])
        kind = accumulator_class(opts.similarity)
        result = MiningResult(settings, {e: kind(n_g, sum(units[e])) for e in settings.encoders}, kind(n_g, n_g))
    placement = choose_tables(opts.tables, device, table_bytes(units, generator.name), opts.similarity)
    result.settings.extra["tables"] = placement
    if not mi:
        for accumulator in [*result.pairs.values(), result.self_pair]:
            accumulator.host_tables, accumulator.chunk_bytes = placement == "host", opts.chunk_bytes
    result.to(device)
    if mi and not result.thresholds:
        with precision_context(opts.precision, device):
            result.thresholds = calibrate(generator, encoders, layers, grids, opts, device)
        result.thresholds = distributed.broadcast_tensors(result.thresholds)
    return result, placement, sides


def _mine_batches(run: _Pass, result: MiningResult, sides: dict) -> float:
    """The pass itself: every remaining batch generated, encoded and added into the accumulators.

    Returns the seconds spent generating and recording maps (the models' share of the pass).
    """
    generator, encoders, opts, device = run.generator, run.encoders, run.opts, run.device
    s = result.settings
    groups = {name: size_groups(s.layers[name], s.units[name], sides[name], s.grid[name]) for name in s.layers}
    resamplers = {side: Resampler(side, device) for side in set(s.grid.values())}
    todo = missing_ranges(result.counted, s.start, s.start + s.images)
    bar = progress_bar(total=s.images, enabled=opts.progress and run.rank == 0, desc="mining", unit="img",
                       initial=s.images - count(todo))
    models_s = 0.0
    with torch.no_grad():
        for done, (first, stop) in enumerate(_batches(todo, s.batch_size), 1):
            began = time.perf_counter()
            z = latents(generator, s.seed, first, stop - first).to(device)
            with precision_context(opts.precision, device):
                generated, g_maps = record_generator(generator, z)
                if s.pairing == "shuffled":
                    generated = generator.generate(latents(generator, s.seed + SHUFFLED_STREAM, first,
                                                           stop - first).to(device))
                encoded = [record_encoder(e, generated) for e in encoders]
            if device.type == "cuda":
                torch.cuda.synchronize(device)  # the check of the maps below waits for them anyway
            models_s += time.perf_counter() - began
            tables = [(e.name, maps, result.pairs[e.name]) for e, maps in zip(encoders, encoded)]
            tables.append((generator.name, g_maps, result.self_pair))
            _check_finite_maps(tables, first, stop)
            if s.similarity == "mi":
                _count_binary(tables, g_maps, generator, s.layers, s.grid, result.thresholds)
            else:
                _update_pearson(tables, g_maps, generator, sides, s.grid, groups, resamplers)
            # this batch's maps (and, inside the helper, its rows) are let go before the next batch
            # is generated: at full scale they are GBs, and two batches alive at once double the peak
            del generated, g_maps, encoded, tables
            result.counted = add_range(result.counted, first, stop)
            bar.update(stop - first)
            if run.out is not None and done % opts.checkpoint_every == 0:
                result.save(run.out / run.checkpoint)
    bar.close()
    return models_s


def _batches(ranges: list[list[int]], batch_size: int):
    """(first, stop) of every batch that covers ``ranges``, each range cut from its start."""
    for start, stop in ranges:
        for first in range(start, stop, batch_size):
            yield first, min(first + batch_size, stop)


def _reduce(result: MiningResult, placement: str, device: torch.device, whole: tuple[int, int],
            world: int) -> None:
    """Under torchrun: every process's accumulators summed into every process's result."""
    if placement == "host":
        for accumulator in [*(result.pairs[name] for name in sorted(result.pairs)), result.self_pair]:
            reduce_host_table(accumulator, device)
    else:
        distributed.reduce_result(result)
    result.settings.start, result.settings.images = whole
    result.counted = [[whole[0], whole[0] + whole[1]]]  # the whole run is done
    result.settings.extra["processes"] = world


def reduce_host_table(acc: CoMoments, device: str | torch.device) -> None:
    """All-reduce co-moments whose table is in host memory, one column chunk at a time, in place.

        reduce_host_table(result.pairs["dino-vitb16"], "cuda:0")   # under torchrun, on every process

    Each chunk of ``acc.chunk_bytes`` goes to ``device`` with its columns' statistics,
    is reduced there by :func:`rosetta_lite.stats.reduce.reduce_comoments` (NCCL reduces
    GPU tensors only; under gloo the device is the CPU and nothing moves) and comes
    back. The generator's statistics are reduced again with every chunk: a few
    kilobytes, the same numbers each time, kept from the first. Every process cuts the
    same chunks, so their collective calls pair up.
    """
    step = acc.columns_per_chunk()
    vectors = acc.device
    means_b, m2s_b, first = [], [], None
    for first_column in range(0, acc.n_b, step):
        last = min(first_column + step, acc.n_b)
        part = CoMoments(acc.n_a, last - first_column, False, acc.count, acc.mean_a.to(device),
                         acc.mean_b[first_column:last].to(device), acc.m2_a.to(device),
                         acc.m2_b[first_column:last].to(device), acc.cross[:, first_column:last].to(device),
                         chunk_bytes=acc.chunk_bytes)
        distributed.reduce_comoments(part)  # replaces part's tensors; acc's own are only read
        acc.cross[:, first_column:last] = part.cross.to(acc.cross.device)
        means_b.append(part.mean_b.to(vectors))
        m2s_b.append(part.m2_b.to(vectors))
        if first is None:
            first = part
    acc.mean_a, acc.m2_a = first.mean_a.to(vectors), first.m2_a.to(vectors)
    acc.mean_b, acc.m2_b, acc.count = torch.cat(means_b), torch.cat(m2s_b), first.count


def calibrate(generator: Member, encoders: list[Member], layers: dict, grids: dict, options: MiningOptions,
              device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Binarisation thresholds ``{"model@grid": (units,)}`` from the first latents of the stream.

        thresholds = calibrate(gan, encoders, *plan(gan, encoders)[::3], MiningOptions(calibration_images=64))

    Per unit, the ``options.quantile`` of its values over latents ``0 .. calibration_images - 1``
    of the stream ``options.seed`` (drawn ``batch_size`` at a time), on the grid of every
    table it enters (the generator's on each encoder's grid and its own). The maps are held
    at their native size and brought to the grid one layer at a time, so the memory is one
    layer's rows.
    """
    seed, quantile, images, batch_size = options.seed, options.quantile, options.calibration_images, options.batch_size
    held: dict[str, list[dict[str, torch.Tensor]]] = {generator.name: []}
    held.update({e.name: [] for e in encoders})
    with torch.no_grad():
        for first in range(0, images, batch_size):
            z = latents(generator, seed, first, min(batch_size, images - first)).to(device)
            generated, g_maps = record_generator(generator, z)
            held[generator.name].append(g_maps)
            for encoder in encoders:
                held[encoder.name].append(record_encoder(encoder, generated))
    keys = {(generator.name, grid) for grid in grids.values()} | {(e.name, grids[e.name]) for e in encoders}
    thresholds = {}
    for name, grid in sorted(keys):
        per_layer = [top_quantile_thresholds(torch.cat([maps_to_rows(part, [layer], grid) for part in held[name]]),
                                             quantile) for layer in layers[name]]
        thresholds[f"{name}@{grid}"] = torch.cat(per_layer)
    return thresholds


def _update_pearson(tables: list, g_maps: dict, generator: Member, sides: dict, grids: dict, groups: dict,
                    resamplers: dict[int, Resampler]) -> None:
    """One batch of the Pearson pass: every table's blocks of rows, on their sides, into its co-moments.

    A function of its own so that the batch's rows (the generator's carried to every
    side are cached for the batch) are freed when it returns.
    """
    for accumulator, blocks in pearson_blocks(tables, g_maps, generator, sides, grids, groups, resamplers):
        accumulator.update_blocks(blocks)


def pearson_blocks(tables: list, g_maps: dict, generator: Member, sides: dict, grids: dict, groups: dict,
                   resamplers: dict[int, Resampler]) -> Iterator[tuple[Any, list]]:
    """Every table's blocks of centred rows for one batch, one table at a time: (accumulator, blocks).

        for accumulator, blocks in pearson_blocks(tables, g_maps, gan, sides, grids, groups, resamplers): ...

    ``tables`` holds (model name, maps, accumulator) with the generator's own table last.
    Every group of the model's layers of one side meets every group of the generator's at
    the smaller of their sides (:func:`~rosetta_lite.mining.plan.meetings`): a block is
    (the generator group's rows there, the model group's rows there, both centred as on
    the table's grid, the table's columns and rows they fill), as
    :meth:`~rosetta_lite.stats.moments.CoMoments.update_blocks` takes them. A table's
    blocks live until the next table's are made (their rows are reused buffers). The
    generator's rows are centred once for every table, its own included. ``bench
    mining`` times this alone: the work on the rows that mining does besides the
    products.
    """
    g_rows = _GeneratorRows(g_maps, generator, sides[generator.name], resamplers)
    for name, maps, accumulator in tables:
        resampler = resamplers[grids[name]]
        grid, blocks, rows = resampler.grid, [], None
        for (side, group, columns), (g_side, _, g_columns), meet, carried in meetings(g_rows.groups(grid),
                                                                                     groups[name]):
            if rows is None or rows[0] != side:  # the pairs of one model group come together
                rows = side, (g_rows.group(grid, side) if name == generator.name else
                              resampler.centre(maps_to_rows(maps, group, side, f"rows/{name}/{side}"), side))
            if carried == "generator":
                a, b = g_rows.on(grid, g_side, meet), rows[1]
            else:
                a, b = g_rows.on(grid, g_side), resampler.carry(rows[1], side, meet, f"rows/{name}/{side}/{meet}")
            blocks.append((a, b, columns, g_columns))
        yield accumulator, blocks


def _count_binary(tables: list, g_maps: dict, generator: Member, layers: dict, grids: dict,
                  thresholds: dict[str, torch.Tensor]) -> None:
    """One batch of the MI pass: every model's rows on its pair's grid, binarised, counted."""
    g_name = generator.name
    g_cache: dict[int, tuple[torch.Tensor, Centred]] = {}
    for name, maps, accumulator in tables:
        grid = grids[name]
        if grid not in g_cache:
            rows = maps_to_rows(g_maps, layers[g_name], grid)
            binary = (rows > thresholds[f"{g_name}@{grid}"]).float()  # before centring overwrites the rows
            g_cache[grid] = binary, centre(rows, in_place=True)
        g_binary, g_centred = g_cache[grid]
        if name == g_name:
            accumulator.update_rows(g_binary, g_binary, g_centred, g_centred)
            continue
        rows = maps_to_rows(maps, layers[name], grid)
        binary = (rows > thresholds[f"{name}@{grid}"]).float()
        accumulator.update_rows(g_binary, binary, g_centred, centre(rows, in_place=True))


class _GeneratorRows:
    """The generator's rows of one batch, per group of layers of one side, carried down to every smaller side.

    Each group is centred once per grid at its own size, with the statistics of its maps
    resized to the grid (:meth:`Resampler.centre`). A group meets a model's rows of a
    smaller side carried down by ``(A (x) A)`` with ``A = P_side^T P_group`` (bilinear
    resize to the grid, then its adjoint down to ``side``), a small matrix on the group's
    own raster; carried rows are kept for the batch, since every table meets them.
    """

    def __init__(self, maps: dict[str, torch.Tensor], generator: Member, sides: list[int | None],
                 resamplers: dict[int, Resampler]) -> None:
        self.maps, self.generator, self.sides, self.resamplers = maps, generator, sides, resamplers
        self.native: dict[int, tuple[list[tuple], dict[int, Centred], Centred]] = {}
        self.cache: dict[tuple[int, int, int], Centred] = {}

    def _centred(self, grid: int) -> tuple[list[tuple], dict[int, Centred], Centred]:
        """The groups on ``grid``, each group's centred rows by its side, and the statistics of every unit."""
        if grid not in self.native:
            resampler = self.resamplers[grid]
            units = [self.maps[layer].shape[1] for layer in self.generator.layers]
            groups = size_groups(self.generator.layers, units, self.sides, grid)
            parts = {}
            stats = [torch.empty(sum(units), dtype=torch.float64, device=resampler.device) for _ in range(3)]
            for own, group, columns in groups:
                parts[own] = resampler.centre(maps_to_rows(self.maps, group, own, f"generator/{grid}/{own}"), own)
                for whole, part in zip(stats, (parts[own].mean, parts[own].m2, parts[own].residual)):
                    whole[columns] = part
            self.native[grid] = groups, parts, Centred(parts[groups[0][0]].count, None, *stats)
        return self.native[grid]

    def groups(self, grid: int) -> list[tuple]:
        """The generator's :func:`size_groups` on ``grid``."""
        return self._centred(grid)[0]

    def group(self, grid: int, own: int) -> Centred:
        """The centred rows of the group of side ``own``, with its own statistics."""
        return self._centred(grid)[1][own]

    def on(self, grid: int, own: int, side: int | None = None) -> Centred:
        """The group of side ``own`` as a block's ``a``: with the statistics of every generator unit.

        With ``side``, carried there (:meth:`Resampler.carry`; through the resizing's Gram
        matrix when ``side`` is ``own``), once per batch.
        """
        rows = self.group(grid, own).rows
        if side is not None:
            if (grid, own, side) not in self.cache:
                self.cache[grid, own, side] = self.resamplers[grid].carry(self.group(grid, own), own, side,
                                                                          f"generator/{grid}/{own}/{side}")
            rows = self.cache[grid, own, side].rows
        stats = self._centred(grid)[2]
        return Centred(stats.count, rows, stats.mean, stats.m2, stats.residual)


def _check_finite_maps(tables: list, first: int, stop: int) -> None:
    """Stop at a batch whose maps hold NaN or infinity, naming the model and layer: one such map
    would turn every table it enters into NaN, silently."""
    for name, maps, _ in tables:
        for layer, value in maps.items():
            # a sum is one pass without a mask (~40x faster than isfinite().all() on the CPU); NaN or infinity
            # anywhere makes it non-finite, and the exact test settles a sum that only overflowed
            if not (torch.isfinite(value.sum(dtype=torch.float32)) or torch.isfinite(value).all()):
                raise RuntimeError(f"{name}, layer {layer}: non-finite activations on latents {first} to "
                                         f"{stop - 1}; the accumulators up to that batch are kept. Check the "
                                         "model's weights, or mine in fp32 (--precision fp32)")


def _resume(out: Path, settings: MiningSettings, checkpoint: str = CHECKPOINT,
            finished: bool = True) -> MiningResult | None:
    for name in (checkpoint, ACCUMULATORS) if finished else (checkpoint,):
        path = out / name
        if path.exists():
            saved = MiningResult.load(path)
            if saved.settings.fingerprint() != settings.fingerprint():
                shown = settings_difference(saved.settings, settings)
                raise ValueError(f"{path} holds another run ({shown[:400]}: there vs here); use another --out "
                                 "folder, or delete it to start over")
            if saved.settings.batch_size != settings.batch_size:
                raise ValueError(f"{path} was mined with --batch-size {saved.settings.batch_size}; "
                                 "resume with the same batch size")
            return saved
    return None
