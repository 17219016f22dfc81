"""One pass over generated images: record every model's units, accumulate co-moments.

    result = mine(zoo.load("lite-gan"), [zoo.load("lite-clip")], images=2000, out="runs/mine")

Latents -> generator (its layers recorded) -> images -> every encoder (each with its
own preprocessing, its layers recorded) -> all maps of a model pair brought to one grid
-> one matrix multiply per pair and batch into :class:`~rosetta_lite.stats.CoMoments`.
Each image goes through the generator and through each encoder exactly once. Runs
checkpoint their accumulators and resume; runs over disjoint latent ranges merge.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from rosetta_lite.capture import Trace
from rosetta_lite.files import atomic_path, writable_dir
from rosetta_lite.resample import Resampler
from rosetta_lite.stats import CoMoments, Centred, centre
from rosetta_lite.zoo.member import Member

LATENT_BLOCK = 1024  # latents come in seeded blocks, so any range is the same whoever draws it
CHECKPOINT = "checkpoint.safetensors"
ACCUMULATORS = "accumulators.safetensors"


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

    def fingerprint(self, with_range: bool = True) -> str:
        keep = asdict(self)
        keep.pop("device")
        keep.pop("batch_size")
        keep.pop("extra")
        if not with_range:
            keep.pop("start"), keep.pop("images")
        return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class MiningResult:
    """Accumulators of a run: ``pairs[name]`` is the (generator, name) table; ``self_pair`` (G, G)."""

    settings: MiningSettings
    pairs: dict[str, CoMoments]
    self_pair: CoMoments
    batches_done: int = 0

    def correlation(self, encoder: str) -> torch.Tensor:
        """Pearson table (generator units, encoder units), float64."""
        return self.pairs[encoder].correlation()

    def merge(self, other: "MiningResult") -> "MiningResult":
        """Fold in a run over a disjoint latent range with otherwise equal settings."""
        if other.settings.fingerprint(False) != self.settings.fingerprint(False):
            raise ValueError("cannot merge runs with different models, layers, grids or seeds")
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
        """Write accumulators and settings to one safetensors file, atomically."""
        tensors = self.self_pair.state_dict("self/")
        for name, acc in self.pairs.items():
            tensors.update(acc.state_dict(f"pair/{name}/"))
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
        except Exception as error:  # noqa: BLE001 - any failure to parse means the file is unusable
            raise ValueError(f"{path} is not a readable mining accumulator file ({error})") from None
        pairs = {name: CoMoments.from_state_dict(tensors, f"pair/{name}/") for name in settings.encoders}
        return cls(settings, pairs, CoMoments.from_state_dict(tensors, "self/"),
                   int(meta["batches_done"]))


def latents(generator: Member, seed: int, start: int, count: int) -> torch.Tensor:
    """Latents ``start .. start+count-1`` of the stream ``seed``, (count, z_dim).

        z = latents(gan, seed=0, start=1000, count=64)
    """
    first, last = start // LATENT_BLOCK, (start + count - 1) // LATENT_BLOCK
    blocks = [generator.sample_latents(LATENT_BLOCK, seed=seed * 1_000_003 + b) for b in range(first, last + 1)]
    offset = start - first * LATENT_BLOCK
    return torch.cat(blocks)[offset:offset + count]


def maps_to_rows(maps: dict[str, torch.Tensor], layers: list[str], grid: int) -> torch.Tensor:
    """Concatenate the layers' maps on a grid x grid raster as rows: (B * grid * grid, units).

        rows = maps_to_rows(trace.outputs, ["layer1", "layer2"], grid=32)
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


def plan(generator: Member, encoders: list[Member], grid: int | None = None) -> tuple[dict, dict, dict, dict]:
    """Layers, units per layer, map sides per layer, and the common grid of every table.

    The grid of a (generator, encoder) table is the largest map of the pair (or ``grid``);
    the generator's own table (clustering needs it) uses the generator's largest map.
    """
    with torch.no_grad():
        z = generator.sample_latents(2, seed=0)
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

    Maps of the grid's side, and non-square maps (resized to the grid first), form the
    grid group; every other side meets the generator's rows carried to that side.
    """
    offsets = [0]
    for count in units:
        offsets.append(offsets[-1] + count)
    groups: dict[int, tuple[list[str], list[int]]] = {}
    for layer, side, first, last in zip(layers, sides, offsets[:-1], offsets[1:]):
        key = grid if side is None else side
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
         device: str = "cpu", control_seed: int | None = None) -> MiningResult:
    """Mine co-moments of the generator against every encoder (and itself) in one pass.

        result = mine(gan, encoders, images=2000, out="runs/mine")

    Every table equals the Pearson correlation of the maps bilinearly resized to its
    grid, computed without resizing the smaller maps (:mod:`rosetta_lite.resample`).
    With ``out``, accumulators are checkpointed every ``checkpoint_every`` batches and a
    restarted run with the same settings resumes from the last checkpoint.
    """
    if not generator.is_generator:
        raise ValueError(f"{generator.name} is not a generator; the pivot of mining must be one")
    if not encoders:
        raise ValueError("need at least one encoder to mine against")
    if images < batch_size:
        raise ValueError(f"images ({images}) must be at least one batch ({batch_size}); lower --batch-size")
    names = [e.name for e in encoders]
    if len(set(names)) != len(names) or generator.name in names:
        raise ValueError(f"model names must be distinct, got {generator.name} and {names}")
    out = writable_dir(out) if out is not None else None
    for member in [generator, *encoders]:
        member.model.to(device)
    layers, units, sides, grids = plan(generator, encoders, grid)
    settings = MiningSettings(generator.name, names, layers, units, grids, seed, start, images, batch_size,
                              control_seed, device)
    result = _resume(out, settings) if (out is not None and resume) else None
    if result is None:
        n_g = sum(units[generator.name])
        result = MiningResult(settings, {e: CoMoments(n_g, sum(units[e])) for e in names},
                              CoMoments(n_g, n_g))
    groups = {name: size_groups(layers[name], units[name], sides[name], grids[name]) for name in layers}
    resamplers = {side: Resampler(side, device) for side in set(grids.values())}
    batches = (images + batch_size - 1) // batch_size
    bar = tqdm(total=images, desc="mining", unit="img", disable=not progress,
               initial=min(result.batches_done * batch_size, images))
    with torch.no_grad():
        for batch in range(result.batches_done, batches):
            first = start + batch * batch_size
            count = min(batch_size, start + images - first)
            z = latents(generator, seed, first, count).to(device)
            generated, g_maps = record_generator(generator, z)
            g_rows = _GeneratorRows(g_maps, generator.layers, resamplers)
            tables = [(e.name, record_encoder(e, generated), result.pairs[e.name]) for e in encoders]
            tables.append((generator.name, g_maps, result.self_pair))
            for name, maps, accumulator in tables:
                resampler = resamplers[grids[name]]
                blocks = []
                for side, group, columns in groups[name]:
                    rows = resampler.centre(maps_to_rows(maps, group, side), side)
                    blocks.append((g_rows.on(resampler.grid, side), rows, columns))
                accumulator.update_blocks(blocks)
            result.batches_done = batch + 1
            bar.update(count)
            if out is not None and (result.batches_done % checkpoint_every == 0):
                result.save(out / CHECKPOINT)
    bar.close()
    if out is not None:
        result.save(out / ACCUMULATORS)
        (out / CHECKPOINT).unlink(missing_ok=True)
    return result


class _GeneratorRows:
    """The generator's rows of one batch: centred once per grid, carried once per map side."""

    def __init__(self, maps: dict[str, torch.Tensor], layers: list[str], resamplers: dict[int, Resampler]) -> None:
        self.maps, self.layers, self.resamplers = maps, layers, resamplers
        self.cache: dict[tuple[int, int], Centred] = {}

    def on(self, grid: int, side: int) -> Centred:
        if (grid, grid) not in self.cache:
            self.cache[grid, grid] = centre(maps_to_rows(self.maps, self.layers, grid), in_place=True)
        if (grid, side) not in self.cache:
            self.cache[grid, side] = self.resamplers[grid].adjoint(self.cache[grid, grid], side)
        return self.cache[grid, side]


def _resume(out: Path, settings: MiningSettings) -> MiningResult | None:
    for name in (CHECKPOINT, ACCUMULATORS):
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
