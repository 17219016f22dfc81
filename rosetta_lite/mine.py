"""One pass over generated images: record every model's units, accumulate co-moments.

    result = mine(zoo.load("lite-gan"), [zoo.load("lite-clip")], images=2000, out="runs/mine")
    result = mine(gan, encoders, images=2000, similarity="mi")   # mutual information instead

Latents -> generator (its layers recorded) -> images -> every encoder (each with its
own preprocessing, its layers recorded) -> all maps of a model pair brought to one grid
-> one matrix multiply per pair and batch into :class:`~rosetta_lite.stats.CoMoments`
(Pearson) or :class:`~rosetta_lite.mutual_info.BinaryMoments` (mutual information of
binarised maps). Each image goes through the generator and through each encoder exactly
once. Runs checkpoint their accumulators and resume; runs over disjoint latent ranges
merge; under ``torchrun`` the processes split the latents and reduce their accumulators
(:mod:`rosetta_lite.distributed`).

Pearson tables too large for the GPU stay in host memory (``tables="host"``, chosen
automatically on CUDA when they would take more than :data:`AUTO_HOST_FRACTION` of the
free GPU memory): the products are still computed on the GPU, in column chunks, and
added into the float64 host tables (:class:`~rosetta_lite.stats.CoMoments`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from rosetta_lite import distributed
from rosetta_lite.capture import Trace
from rosetta_lite.files import atomic_path, writable_dir
from rosetta_lite.mutual_info import BinaryMoments, top_quantile_thresholds
from rosetta_lite.resample import Resampler, _apply_both_axes
from rosetta_lite.stats import DEFAULT_CHUNK_BYTES, CoMoments, Centred, centre, check_chunk_bytes, scratch
from rosetta_lite.zoo.member import Member

LATENT_BLOCK = 1024  # latents come in seeded blocks, so any range is the same whoever draws it
CHECKPOINT = "checkpoint.safetensors"
ACCUMULATORS = "accumulators.safetensors"
SIMILARITIES = ("pearson", "mi")
#: fp32: exact statistics (the default); tf32: TF32 matmuls allowed (GPU); bf16 / fp16: the
#: models run under autocast in that dtype, statistics still in float32 / float64
PRECISIONS = ("fp32", "tf32", "bf16", "fp16")
#: where the float64 tables live: "device" (with the rows), "host" (CPU memory, products from
#: the device in chunks), or "auto": the host on CUDA when the tables would not fit comfortably
TABLES = ("auto", "device", "host")
#: "auto" keeps the tables on the host when they would take more than this fraction of the free
#: GPU memory: the rest is needed for the models, their recorded maps and the rows of a batch
AUTO_HOST_FRACTION = 0.5
DEFAULT_QUANTILE = 0.9
DEFAULT_CALIBRATION_IMAGES = 64
#: settings added after the first saved runs, with the value that means "as before": left
#: out of the fingerprint at that value, so older checkpoints still resume and merge
_LATER_SETTINGS = {"similarity": "pearson", "quantile": None, "calibration_images": None, "precision": "fp32"}
log = logging.getLogger(__name__)


@dataclass
class MiningSettings:
    """What a mining run did; two runs merge only when all but the latent range agree."""

    generator: str
    encoders: list[str]
    layers: dict[str, list[str]]
    units: dict[str, list[int]]  # channels per layer, in layer order
    grid: dict[str, int]  # common grid side per encoder (pair with the generator)
    seed: int
    start: int
    images: int
    batch_size: int
    control_seed: int | None = None
    device: str = "cpu"
    extra: dict = field(default_factory=dict)
    similarity: str = "pearson"
    quantile: float | None = None  # mi: binarisation quantile
    calibration_images: int | None = None  # mi: thresholds from latents 0..n-1 of the stream
    precision: str = "fp32"

    def fingerprint(self, with_range: bool = True) -> str:
        keep = asdict(self)
        keep.pop("device")
        keep.pop("batch_size")
        keep.pop("extra")
        for key, default in _LATER_SETTINGS.items():
            if keep[key] == default:
                keep.pop(key)
        if not with_range:
            keep.pop("start"), keep.pop("images")
        return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]


Accumulator = CoMoments | BinaryMoments


@dataclass
class MiningResult:
    """Accumulators of a run: ``pairs[name]`` is the (generator, name) table; ``self_pair`` (G, G).

    ``thresholds`` (similarity "mi"): per ``"model@grid"``, the frozen binarisation threshold
    of every unit on that grid.
    """

    settings: MiningSettings
    pairs: dict[str, Accumulator]
    self_pair: Accumulator
    batches_done: int = 0
    thresholds: dict[str, torch.Tensor] = field(default_factory=dict)

    def correlation(self, encoder: str) -> torch.Tensor:
        """The (generator units, encoder units) table of the run's similarity, float64: Pearson or MI."""
        return self.pairs[encoder].correlation()

    def table(self, encoder: str) -> torch.Tensor:
        """The similarity table (Pearson correlation or MI in nats) of the generator and ``encoder``."""
        return self.pairs[encoder].similarity()

    def to(self, device: torch.device | str) -> "MiningResult":
        """Move every accumulator and threshold to ``device`` (in place; host tables stay on the host); returns self."""
        for acc in [*self.pairs.values(), self.self_pair]:
            acc.to(device)
        self.thresholds = {key: value.to(device) for key, value in self.thresholds.items()}
        return self

    def merge(self, other: "MiningResult") -> "MiningResult":
        """Fold in a run over a disjoint latent range with otherwise equal settings."""
        if other.settings.fingerprint(False) != self.settings.fingerprint(False):
            raise ValueError("cannot merge runs with different models, layers, grids, seeds, similarity or "
                             "precision")
        if self.thresholds.keys() != other.thresholds.keys() or not all(
                torch.equal(value.cpu(), other.thresholds[key].cpu()) for key, value in self.thresholds.items()):
            raise ValueError("cannot merge runs whose binarisation thresholds differ (mined on other hardware or "
                             "with other calibration images); mine the shards with the same settings and device")
        a, b = self.settings, other.settings
        if a.start < b.start + b.images and b.start < a.start + a.images:
            raise ValueError(f"latent ranges overlap: [{a.start}, {a.start + a.images}) and "
                             f"[{b.start}, {b.start + b.images}); merged runs must cover disjoint images")
        for name, acc in self.pairs.items():
            acc.merge(other.pairs[name])
        self.self_pair.merge(other.self_pair)
        low = min(a.start, b.start)
        self.settings.images = max(a.start + a.images, b.start + b.images) - low
        self.settings.start = low
        self.settings.extra.setdefault("merged_ranges", []).append([b.start, b.start + b.images])
        return self

    def save(self, path: str | Path, batches_done: int | None = None) -> None:
        """Write accumulators, thresholds and settings to one safetensors file, atomically."""
        tensors = self.self_pair.state_dict("self/")
        for name, acc in self.pairs.items():
            tensors.update(acc.state_dict(f"pair/{name}/"))
        for key, value in self.thresholds.items():
            tensors[f"threshold/{key}"] = value.contiguous().cpu()
        meta = {"settings": json.dumps(asdict(self.settings)),
                "batches_done": str(self.batches_done if batches_done is None else batches_done)}
        with atomic_path(path) as tmp:
            save_file(tensors, tmp, metadata=meta)

    @classmethod
    def load(cls, path: str | Path) -> "MiningResult":
        """Read a file written by ``save``."""
        from safetensors import safe_open

        try:
            with safe_open(str(path), "pt") as handle:
                meta = handle.metadata()
            tensors = load_file(str(path))
            settings = MiningSettings(**json.loads(meta["settings"]))
            kind = _accumulator_class(settings.similarity)
            pairs = {name: kind.from_state_dict(tensors, f"pair/{name}/") for name in settings.encoders}
            self_pair = kind.from_state_dict(tensors, "self/")
        except Exception as error:  # noqa: BLE001 - any failure to parse means the file is unusable
            raise ValueError(f"{path} is not a readable mining accumulator file ({error})") from None
        thresholds = {key.removeprefix("threshold/"): value for key, value in tensors.items()
                      if key.startswith("threshold/")}
        return cls(settings, pairs, self_pair, int(meta["batches_done"]), thresholds)


def _accumulator_class(similarity: str) -> type:
    return BinaryMoments if similarity == "mi" else CoMoments


def check_similarity(similarity: str) -> str:
    """``similarity`` if it is one of :data:`SIMILARITIES`, else a ValueError listing them.

        check_similarity("mi")
    """
    if similarity not in SIMILARITIES:
        raise ValueError(f"similarity must be one of {list(SIMILARITIES)}, got {similarity!r}")
    return similarity


def check_tables(tables: str, similarity: str = "pearson") -> str:
    """``tables`` if it is one of :data:`TABLES` and fits ``similarity``, else a ValueError saying why.

        check_tables("host")
    """
    if tables not in TABLES:
        raise ValueError(f"tables must be one of {list(TABLES)}, got {tables!r}")
    if tables == "host" and similarity != "pearson":
        raise ValueError(f"tables='host' is for Pearson tables only; mine similarity {similarity!r} with "
                         "tables='device' (or 'auto')")
    return tables


def table_bytes(units: dict[str, list[int]], generator: str) -> int:
    """Bytes of every float64 table of a run: the generator against each model, itself included.

        table_bytes({"gan": [11904], "dino-vitb16": [3072] * 12}, "gan")   # 4_644_274_176: 3.5 GB + 1.1 GB
    """
    n_g = sum(units[generator])
    return 8 * n_g * sum(sum(widths) for widths in units.values())


def choose_tables(tables: str, device: str | torch.device, nbytes: int, similarity: str = "pearson") -> str:
    """Resolve ``tables`` ("auto", "device" or "host") to where this run's tables live: "device" or "host".

        choose_tables("auto", "cuda", table_bytes(units, gan.name))   # "host" if over half the free memory

    "auto" is "device" on the CPU (there, both are host memory) and for mutual
    information (its count tables are kept with the rows); on CUDA it is "host" when
    ``nbytes`` exceed :data:`AUTO_HOST_FRACTION` of the free GPU memory, and says so
    in a log line. Under torchrun every process takes the host if any one would, so
    that all reduce their tables alike.
    """
    check_tables(tables, similarity)
    if tables != "auto":
        return tables
    device = torch.device(device)
    if device.type != "cuda" or similarity != "pearson":
        return "device"
    free, _ = torch.cuda.mem_get_info(device)
    host = nbytes > AUTO_HOST_FRACTION * free
    if distributed.active():
        vote = torch.tensor([float(host)], device=device)
        distributed.dist.all_reduce(vote, op=distributed.dist.ReduceOp.MAX)
        host = bool(vote.item())
    if host:
        log.warning("tables: %.2f GB of float64 tables exceed %.0f%% of the %.2f GB free on %s; keeping them in "
                    "host memory (products on the GPU, added in chunks); pass tables='device' to keep them on the "
                    "GPU", nbytes / 1e9, 100 * AUTO_HOST_FRACTION, free / 1e9, device)
    else:
        log.info("tables: %.2f GB of float64 tables on %s (%.2f GB free)", nbytes / 1e9, device, free / 1e9)
    return "host" if host else "device"


def check_precision(precision: str) -> str:
    """``precision`` if it is one of :data:`PRECISIONS`, else a ValueError listing them.

        check_precision("bf16")
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
    return precision


@contextlib.contextmanager
def precision_context(precision: str, device: str | torch.device):
    """Run the models in ``precision``: TF32 switches, and autocast for bf16 / fp16.

        with precision_context("bf16", "cuda"): images = gan.generate(z)

    Statistics are computed outside autocast (rows are converted to float32 first), so
    only the activations carry the lower precision.
    """
    check_precision(precision)
    device_type = torch.device(device).type
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = precision != "fp32"
    try:
        if precision in ("bf16", "fp16"):
            dtype = torch.bfloat16 if precision == "bf16" else torch.float16
            with torch.autocast(device_type, dtype=dtype):
                yield
        else:
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


def latents(generator: Member, seed: int, start: int, count: int) -> torch.Tensor:
    """Latents ``start .. start+count-1`` of the stream ``seed``, (count, z_dim).

        z = latents(gan, seed=0, start=1000, count=64)
    """
    first, last = start // LATENT_BLOCK, (start + count - 1) // LATENT_BLOCK
    blocks = [generator.sample_latents(LATENT_BLOCK, seed=seed * 1_000_003 + b) for b in range(first, last + 1)]
    offset = start - first * LATENT_BLOCK
    return torch.cat(blocks)[offset:offset + count]


def maps_to_rows(maps: dict[str, torch.Tensor], layers: list[str], grid: int,
                 buffer: str | None = None) -> torch.Tensor:
    """Concatenate the layers' maps on a grid x grid raster as rows: (B * grid * grid, units).

        rows = maps_to_rows(trace.outputs, ["layer1", "layer2"], grid=32)

    ``buffer`` names a reused buffer (:func:`rosetta_lite.stats.scratch`) to write the rows
    into instead of a fresh tensor: the mining loop's rows live one batch.
    """
    parts = []
    for layer in layers:
        maps_bchw = maps[layer].float()
        if maps_bchw.shape[-2:] != (grid, grid):
            # channels-last: after resizing, each position's units lie side by side, as rows need
            maps_bchw = F.interpolate(maps_bchw.contiguous(memory_format=torch.channels_last), size=(grid, grid),
                                      mode="bilinear", align_corners=False)
        parts.append(maps_bchw.permute(0, 2, 3, 1))  # (B, H, W, C) views; ViT tokens are already laid out so
    # one copy into fresh rows (callers centre them in place, so never a view of the recorded maps)
    if buffer is not None:
        shape = (*parts[0].shape[:3], sum(part.shape[3] for part in parts))
        rows_bhwu = torch.cat(parts, 3, out=scratch(buffer, shape, parts[0]))
    else:
        rows_bhwu = torch.cat(parts, 3) if len(parts) > 1 else parts[0].clone(memory_format=torch.contiguous_format)
    return rows_bhwu.reshape(-1, rows_bhwu.shape[-1])


def record_generator(generator: Member, z: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Generate images and record the generator's layers: (images, maps by layer)."""
    with Trace(generator.model, generator.layers) as trace:
        images = generator.generate(z)
    return images.clamp(0, 1), trace.outputs


def record_encoder(encoder: Member, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """Run an encoder on images in [0, 1], stopping after its last mined layer."""
    with Trace(encoder.model, encoder.layers, stop=True) as trace:
        encoder.encode(images)
    return trace.outputs


def _map_sides(member: Member, probe: torch.Tensor) -> dict[str, tuple[int, int, int]]:
    if member.is_generator:
        _, maps = record_generator(member, probe)
    else:
        maps = record_encoder(member, probe)
    return {layer: tuple(maps[layer].shape[1:]) for layer in member.layers}


def plan(generator: Member, encoders: list[Member], grid: int | None = None,
         device: str | torch.device | None = None) -> tuple[dict, dict, dict, dict]:
    """Layers, units per layer, map sides per layer, and the common grid of every table.

        layers, units, sides, grids = plan(gan, encoders)

    The grid of a (generator, encoder) table is the largest map of the pair (or ``grid``);
    the generator's own table (clustering needs it) uses the generator's largest map.
    The probe runs on ``device`` (default: where the generator's parameters are).
    """
    if device is None:
        device = next(iter(generator.model.parameters()), torch.empty(0)).device
    with torch.no_grad():
        z = generator.sample_latents(2, seed=0).to(device)
        g_shapes = _map_sides(generator, z)
        images = generator.generate(z).clamp(0, 1)
        shapes = {encoder.name: _map_sides(encoder, images) for encoder in encoders}
    shapes[generator.name] = g_shapes
    layers = {name: list(s) for name, s in shapes.items()}
    units = {name: [s[layer][0] for layer in s] for name, s in shapes.items()}
    sides = {name: [s[layer][1] if s[layer][1] == s[layer][2] else None for layer in s]
             for name, s in shapes.items()}
    g_side = max(max(s[1:]) for s in g_shapes.values())
    grids = {e.name: grid or max(g_side, max(max(s[1:]) for s in shapes[e.name].values())) for e in encoders}
    grids[generator.name] = grid or g_side
    return layers, units, sides, grids


def size_groups(layers: list[str], units: list[int], sides: list[int | None], grid: int) -> list[tuple]:
    """Layers of one model grouped by map side: [(side, layers, column slice or index), ...].

    Maps of the grid's side, non-square maps and maps larger than the grid (all resized to
    the grid first) form the grid group; every smaller side meets the generator's rows
    carried to that side.
    """
    offsets = [0]
    for count in units:
        offsets.append(offsets[-1] + count)
    groups: dict[int, tuple[list[str], list[int]]] = {}
    for layer, side, first, last in zip(layers, sides, offsets[:-1], offsets[1:]):
        key = grid if side is None or side > grid else side
        names, columns = groups.setdefault(key, ([], []))
        names.append(layer)
        columns.extend(range(first, last))
    result = []
    for side, (names, columns) in groups.items():
        contiguous = columns == list(range(columns[0], columns[-1] + 1))
        result.append((side, names, slice(columns[0], columns[-1] + 1) if contiguous else torch.tensor(columns)))
    return result


def mine(generator: Member, encoders: list[Member], images: int, *, out: str | Path | None = None,
         batch_size: int = 32, seed: int = 0, start: int = 0, grid: int | None = None,
         checkpoint_every: int = 10, resume: bool = True, progress: bool = True,
         device: str = "cpu", control_seed: int | None = None, similarity: str = "pearson",
         quantile: float = DEFAULT_QUANTILE, calibration_images: int = DEFAULT_CALIBRATION_IMAGES,
         precision: str = "fp32", tables: str = "auto", chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> MiningResult:
    """Mine the generator against every encoder (and itself) in one pass.

        result = mine(gan, encoders, images=2000, out="runs/mine")

    ``similarity="pearson"``: every table equals the Pearson correlation of the maps
    bilinearly resized to its grid, computed without resizing the smaller maps
    (:mod:`rosetta_lite.resample`). ``similarity="mi"``: the mutual information of the maps
    on the grid binarised at their ``quantile``, with thresholds frozen from
    ``calibration_images`` latents (the first ones of the stream ``seed``, whatever
    ``start`` is, so that shards and processes binarise alike). With ``out``,
    accumulators are checkpointed every ``checkpoint_every`` batches and a restarted run
    with the same settings resumes from the last checkpoint. ``precision`` (one of
    :data:`PRECISIONS`) lets the models run in lower precision on a GPU. ``tables``
    (one of :data:`TABLES`, see :func:`choose_tables`) keeps the Pearson tables on the
    device or in host memory; ``chunk_bytes`` bounds one column chunk of a table
    (float64) multiplied and added at once, in either place. The placement changes
    only float64 rounding (the float32 products are the same chunks either way), and
    the returned tables are on the CPU in both. Under ``torchrun`` (WORLD_SIZE > 1)
    every process mines a contiguous share of the batches and all return the reduced
    result; only rank 0 writes ``out/accumulators``. Host tables are reduced one
    column chunk at a time, each moved to the device for the all-reduce (NCCL reduces
    GPU tensors only), so the device never holds a whole table.
    """
    check_similarity(similarity)
    check_precision(precision)
    check_tables(tables, similarity)
    check_chunk_bytes(chunk_bytes)
    if not generator.is_generator:
        raise ValueError(f"{generator.name} is not a generator; the pivot of mining must be one")
    if not encoders:
        raise ValueError("need at least one encoder to mine against")
    if images < batch_size:
        raise ValueError(f"images ({images}) must be at least one batch ({batch_size}); lower --batch-size")
    names = [e.name for e in encoders]
    if len(set(names)) != len(names) or generator.name in names:
        raise ValueError(f"model names must be distinct, got {generator.name} and {names}")
    mi = similarity == "mi"
    if mi and not 0.0 < quantile < 1.0:
        raise ValueError(f"quantile must be in (0, 1), got {quantile}")
    if mi and calibration_images < 1:
        raise ValueError(f"calibration_images must be at least 1, got {calibration_images}")
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {str(device)!r} asked for, but torch sees no CUDA GPU here; use --device cpu")
    rank, world, device = distributed.setup(device)
    whole = (start, images)
    if world > 1:
        start, images = distributed.share(start, images, batch_size, rank, world)
    out = writable_dir(out) if out is not None else None
    for member in [generator, *encoders]:
        member.model.to(device)
    with precision_context(precision, device):
        layers, units, sides, grids = plan(generator, encoders, grid, device)
    settings = MiningSettings(generator.name, names, layers, units, grids, seed, start, images, batch_size,
                              control_seed, str(device), similarity=similarity,
                              quantile=quantile if mi else None, calibration_images=calibration_images if mi else None,
                              precision=precision)
    checkpoint = CHECKPOINT if world == 1 else f"checkpoint-rank{rank}-of-{world}.safetensors"
    result = _resume(out, settings, checkpoint) if (out is not None and resume and world == 1) else None
    if result is None and out is not None and resume and world > 1:
        result = _resume(out, settings, checkpoint, finished=False)
    if result is None:
        n_g = sum(units[generator.name])
        kind = _accumulator_class(similarity)
        result = MiningResult(settings, {e: kind(n_g, sum(units[e])) for e in names}, kind(n_g, n_g))
    placement = choose_tables(tables, device, table_bytes(units, generator.name), similarity)
    result.settings.extra["tables"] = placement
    if not mi:
        for accumulator in [*result.pairs.values(), result.self_pair]:
            accumulator.host_tables, accumulator.chunk_bytes = placement == "host", chunk_bytes
    result.to(device)
    if mi and not result.thresholds:
        with precision_context(precision, device):
            result.thresholds = calibrate(generator, encoders, layers, grids, seed, quantile, calibration_images,
                                          batch_size, device)
        result.thresholds = distributed.broadcast_tensors(result.thresholds)
    groups = {name: size_groups(layers[name], units[name], sides[name], grids[name]) for name in layers}
    resamplers = {side: Resampler(side, device) for side in set(grids.values())}
    batches = (images + batch_size - 1) // batch_size
    bar = tqdm(total=images, desc="mining", unit="img", disable=not progress or rank != 0,
               initial=min(result.batches_done * batch_size, images))
    with torch.no_grad():
        for batch in range(result.batches_done, batches):
            first = start + batch * batch_size
            count = min(batch_size, start + images - first)
            z = latents(generator, seed, first, count).to(device)
            with precision_context(precision, device):
                generated, g_maps = record_generator(generator, z)
                encoded = [record_encoder(e, generated) for e in encoders]
            tables = [(e.name, maps, result.pairs[e.name]) for e, maps in zip(encoders, encoded)]
            tables.append((generator.name, g_maps, result.self_pair))
            if mi:
                _count_binary(tables, g_maps, generator, layers, grids, result.thresholds)
            else:
                _update_pearson(tables, g_maps, generator, sides, grids, groups, resamplers)
            # this batch's maps (and, inside the helper, its rows) are let go before the next batch
            # is generated: at full scale they are GBs, and two batches alive at once double the peak
            del generated, g_maps, encoded, tables
            result.batches_done = batch + 1
            bar.update(count)
            if out is not None and (result.batches_done % checkpoint_every == 0):
                result.save(out / checkpoint)
    bar.close()
    if world > 1:
        if placement == "host":
            for accumulator in [*(result.pairs[name] for name in sorted(result.pairs)), result.self_pair]:
                reduce_host_table(accumulator, device)
        else:
            distributed.reduce_result(result)
        result.settings.start, result.settings.images = whole
        result.batches_done = (whole[1] + batch_size - 1) // batch_size  # the whole run is done
        result.settings.extra["processes"] = world
    result.to("cpu")  # dictionaries, best buddies and saving index CPU tables with these
    if out is not None:
        if rank == 0:
            result.save(out / ACCUMULATORS)
        distributed.barrier()
        (out / checkpoint).unlink(missing_ok=True)
    return result


def reduce_host_table(acc: CoMoments, device: str | torch.device) -> None:
    """All-reduce co-moments whose table is in host memory, one column chunk at a time, in place.

        reduce_host_table(result.pairs["dino-vitb16"], "cuda:0")   # under torchrun, on every process

    Each chunk of ``acc.chunk_bytes`` goes to ``device`` with its columns' statistics,
    is reduced there by :func:`rosetta_lite.distributed.reduce_comoments` (NCCL reduces
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


def calibrate(generator: Member, encoders: list[Member], layers: dict, grids: dict, seed: int, quantile: float,
              images: int, batch_size: int, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Binarisation thresholds ``{"model@grid": (units,)}`` from the first ``images`` latents of the stream.

        thresholds = calibrate(gan, encoders, *plan(gan, encoders)[::3], seed=0, quantile=0.9, images=64,
                               batch_size=32)

    Per unit, the ``quantile`` of its values on the grid of every table it enters (the
    generator's on each encoder's grid and its own). The maps are held at their native
    size and brought to the grid one layer at a time, so the memory is one layer's rows.
    """
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

        _update_pearson(tables, g_maps, gan, sides, grids, groups, resamplers)

    A function of its own so that the batch's rows (the generator's carried to every
    side are cached for the batch) are freed when it returns.
    """
    g_rows = _GeneratorRows(g_maps, generator.layers, sides[generator.name], resamplers)
    for name, maps, accumulator in tables:
        resampler = resamplers[grids[name]]
        blocks = []
        for side, group, columns in groups[name]:
            rows = resampler.centre(maps_to_rows(maps, group, side, f"rows/{name}/{side}"), side)
            blocks.append((g_rows.on(resampler.grid, side), rows, columns))
        accumulator.update_blocks(blocks)


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
    """The generator's rows of one batch on each map side, built from its native maps.

    Each layer is centred once at its own size, with the statistics of its map resized to
    the grid (:meth:`Resampler.centre`). The rows that meet an encoder's ``side`` x ``side``
    maps are ``(A (x) A) g`` per layer with ``A = P_side^T P_layer`` (bilinear resize of the
    layer to the grid, then the adjoint down to ``side``): a small matrix on the layer's
    own raster, so coarse layers are never blown up to the grid and shrunk back.
    """

    def __init__(self, maps: dict[str, torch.Tensor], layers: list[str], sides: list[int | None],
                 resamplers: dict[int, Resampler]) -> None:
        self.maps, self.layers, self.sides, self.resamplers = maps, layers, sides, resamplers
        self.native: dict[int, tuple[list[tuple[int, Centred]], Centred]] = {}
        self.cache: dict[tuple[int, int], Centred] = {}

    def _centred(self, grid: int) -> tuple[list[tuple[int, Centred]], Centred]:
        if grid not in self.native:
            resampler = self.resamplers[grid]
            parts = []
            for layer, side in zip(self.layers, self.sides):
                own = grid if side is None or side > grid else side  # larger or non-square: resized first
                rows = maps_to_rows(self.maps, [layer], own, f"generator/{layer}/{own}")
                parts.append((own, resampler.centre(rows, own)))
            stats = [c for _, c in parts]
            self.native[grid] = parts, Centred(stats[0].count, None, torch.cat([c.mean for c in stats]),
                                               torch.cat([c.m2 for c in stats]),
                                               torch.cat([c.residual for c in stats]))
        return self.native[grid]

    def on(self, grid: int, side: int) -> Centred:
        """Centred generator rows on a ``side`` x ``side`` raster, with the statistics of its maps on ``grid``."""
        if (grid, side) not in self.cache:
            parts, stats = self._centred(grid)
            resampler = self.resamplers[grid]
            images = parts[0][1].rows.shape[0] // (parts[0][0] ** 2)
            units = stats.mean.shape[0]
            like = parts[0][1].rows
            out = scratch(f"generator/{grid}/{side}", (images, side, side, units), like)
            offset = 0
            for own, centred in parts:
                width = centred.rows.shape[1]
                maps_bhwu = centred.rows.view(images, own, own, width)
                transfer = resampler.transfer(own, side)
                out[..., offset:offset + width] = maps_bhwu if transfer is None else \
                    _apply_both_axes(transfer, maps_bhwu, "transfer")  # consumed at once: one buffer serves all
                offset += width
            self.cache[grid, side] = Centred(stats.count, out.view(-1, units), stats.mean, stats.m2, stats.residual)
        return self.cache[grid, side]


def _resume(out: Path, settings: MiningSettings, checkpoint: str = CHECKPOINT,
            finished: bool = True) -> MiningResult | None:
    for name in (checkpoint, ACCUMULATORS) if finished else (checkpoint,):
        path = out / name
        if path.exists():
            saved = MiningResult.load(path)
            if saved.settings.fingerprint() != settings.fingerprint():
                raise ValueError(f"{path} holds a run with other settings; use another --out folder, "
                                 "or delete it to start over")
            if saved.settings.batch_size != settings.batch_size:
                raise ValueError(f"{path} was mined with --batch-size {saved.settings.batch_size}; "
                                 "resume with the same batch size")
            return saved
    return None
