"""Rosetta-guided editing: edit the generator's unit maps, then find the latent that makes them.

    result = edit(gan, z, shift(0.25, 0), d)            # move the scene a quarter to the right
    result = edit(gan, z, remove(), d, units=d.clusters[0].generator_units)   # switch a concept off

An :class:`Edit` transforms the maps (B, C, H, W) that the chosen units have on G(z) (``units="rosetta"``: the dictionary's
Rosetta units, the paper's choice; ``"all"``: every unit of every layer; or a list of
flat unit indices). ``resting`` (C,) is each channel's mining mean, the level a unit is
brought down to when its concept is removed (and, with ``fill="rest"``, the value of
uncovered cells).
Then z is re-optimised (:func:`~rosetta_lite.applications.optimise.optimise_latents`) so that G's maps of the chosen units
match the edited maps (squared error in units of the mining standard deviation), plus
``keep_near`` x ||z - z_start||^2 / dim, which keeps z near the start where the edit
does not ask otherwise, plus, for local edits (remove, add, paste, scale_unit),
``preserve`` x the same squared error of every other unit against its starting map, so
that the rest of the image stays. Geometric edits (shift, zoom) edit the maps at least
half the output's side (``GEOMETRY_MIN_SCALE``) and fill uncovered cells from the border.

The map transforms (``shift_maps``, ``zoom_maps``, ``paste_maps``, ``fill_region``) are
plain tensor functions, usable and tested on hand-made maps.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from rosetta_lite.applications.optimise import (
    Optimised,
    check_run_settings,
    joined,
    optimise_latents,
    place,
    row_batches,
)
from rosetta_lite.capture import record_generator
from rosetta_lite.device import precision_context
from rosetta_lite.dictionary.rosetta import RosettaDictionary
from rosetta_lite.progress import progress_bar
from rosetta_lite.zoo.member import Member

Box = tuple[float, float, float, float]  # (top, left, bottom, right) as fractions of the side


def _fill(resting: torch.Tensor | float, maps: torch.Tensor) -> torch.Tensor:
    rest = torch.as_tensor(resting, dtype=maps.dtype, device=maps.device)
    return rest.view(1, -1, 1, 1) if rest.dim() == 1 else rest.view(1, 1, 1, 1)


FILLS = ("rest", "edge")


def _warp(maps: torch.Tensor, theta: list[list[float]], resting: torch.Tensor | float,
          fill: str = "rest") -> torch.Tensor:
    """``maps`` resampled (bilinear) through the affine map ``theta`` of normalised coordinates
    (output -> input); cells that fall outside the input take ``resting`` (``fill="rest"``)
    or repeat the nearest border cell (``fill="edge"``)."""
    if fill not in FILLS:
        raise ValueError(f"fill is one of {FILLS}, got {fill!r}")
    b = maps.shape[0]
    matrix = torch.tensor(theta, dtype=maps.dtype, device=maps.device).expand(b, 2, 3)
    grid = F.affine_grid(matrix, list(maps.shape), align_corners=False)
    if fill == "edge":
        return F.grid_sample(maps, grid, mode="bilinear", padding_mode="border", align_corners=False)
    sampled = F.grid_sample(maps, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    inside = F.grid_sample(torch.ones_like(maps[:, :1]), grid, mode="bilinear", padding_mode="zeros",
                           align_corners=False)
    return sampled + (1 - inside) * _fill(resting, maps).to(maps.device)


def shift_maps(maps: torch.Tensor, dx: float, dy: float, resting: torch.Tensor | float = 0.0,
               fill: str = "rest") -> torch.Tensor:
    """Maps moved by (dx, dy) fractions of their side (right and down positive); uncovered cells
    get ``resting`` (``fill="rest"``) or repeat the border (``fill="edge"``).

        shift_maps(maps, 0.25, 0.0)   # a quarter of the width to the right

    The shift is a fraction of the side, not a whole number of cells, so the 4 x 4 and
    the 32 x 32 maps of one generator move by the same distance in the image (a shift of
    0.1 is 0.4 cell at 4 x 4: bilinear). Shifts by whole cells are exact copies.
    """
    h, w = maps.shape[-2:]
    if fill == "rest" and float(dx * w).is_integer() and float(dy * h).is_integer():
        # whole cells: an exact copy (no resampling blur), uncovered cells at rest
        sx, sy = int(dx * w), int(dy * h)
        out = _fill(resting, maps).to(maps.device).expand_as(maps).clone()
        src_x, dst_x = (slice(0, w - sx), slice(sx, w)) if sx >= 0 else (slice(-sx, w), slice(0, w + sx))
        src_y, dst_y = (slice(0, h - sy), slice(sy, h)) if sy >= 0 else (slice(-sy, h), slice(0, h + sy))
        if abs(sx) < w and abs(sy) < h:
            out[..., dst_y, dst_x] = maps[..., src_y, src_x]
        return out
    # normalised coordinates span 2 per side; the output at x samples the input at x - shift
    return _warp(maps, [[1, 0, -2 * dx], [0, 1, -2 * dy]], resting, fill)


def zoom_maps(maps: torch.Tensor, factor: float, resting: torch.Tensor | float = 0.0,
              fill: str = "rest") -> torch.Tensor:
    """Maps zoomed about their centre (``factor`` > 1 in, < 1 out; bilinear); uncovered cells
    get ``resting`` (``fill="rest"``) or repeat the border (``fill="edge"``).

        zoom_maps(maps, 2.0)   # the central half fills the map
    """
    if factor <= 0:
        raise ValueError(f"zoom factor must be positive, got {factor}")
    return _warp(maps, [[1 / factor, 0, 0], [0, 1 / factor, 0]], resting, fill)


def box_mask(h: int, w: int, box: Box, device: torch.device | str | None = None) -> torch.Tensor:
    """Boolean (h, w) mask of a box given as (top, left, bottom, right) fractions, on ``device`` (None: the CPU).

        box_mask(8, 8, (0, 0, 0.5, 0.5))   # the top-left quarter
    """
    top, left, bottom, right = box
    ys = (torch.arange(h, device=device) + 0.5) / h
    xs = (torch.arange(w, device=device) + 0.5) / w
    return ((ys >= top) & (ys < bottom))[:, None] & ((xs >= left) & (xs < right))[None, :]


def paste_maps(dst: torch.Tensor, src: torch.Tensor, box: Box, to: tuple[float, float] | None = None) -> torch.Tensor:
    """``dst`` with the box of ``src`` pasted in (at the same place, or with its top-left moved to ``to``).

        paste_maps(maps_a, maps_b, (0.5, 0, 1, 0.5))   # bottom-left quarter of b into a
    """
    h, w = dst.shape[-2:]
    if src.shape[-2:] != (h, w):
        src = F.interpolate(src, size=(h, w), mode="bilinear", align_corners=False)
    if to is not None:
        src = shift_maps(src, to[1] - box[1], to[0] - box[0], 0.0)
        box = (to[0], to[1], to[0] + box[2] - box[0], to[1] + box[3] - box[1])
    mask = box_mask(h, w, box, dst.device)
    return torch.where(mask, src, dst)


def fill_region(maps: torch.Tensor, value: torch.Tensor | float, box: Box | None = None) -> torch.Tensor:
    """``maps`` with ``value`` (scalar or per channel) inside ``box`` (everywhere when None).

        fill_region(maps, resting)                       # remove: every cell at rest
        fill_region(maps, resting + 3 * std, (0, 0, .5, .5))   # add a concept top-left
    """
    h, w = maps.shape[-2:]
    mask = box_mask(h, w, box, maps.device) if box is not None else torch.ones(h, w, dtype=torch.bool,
                                                                                device=maps.device)
    return torch.where(mask, _fill(value, maps).expand_as(maps), maps)


# ---- edits: functions of (layer, maps of the edited channels, their resting values) ----

# Geometric edits change the maps of the layers at least half the output's side (16 and
# 32 px in the lite GAN) by default: `eval editing` measured that moving or zooming the
# 4 x 4 and 8 x 8 maps as well (one cell = 8 or 4 px, a coarse resample the generator
# cannot follow) makes the result worse, not better. ``edit(..., min_scale=0)`` edits all.
GEOMETRY_MIN_SCALE = 0.5


class NoUnitsToEdit(ValueError):
    """Every unit an edit chose lies in a layer whose maps are coarser than its ``min_scale`` allows."""


@dataclass(frozen=True)
class Edit:
    """An edit of unit maps: how it changes the edited maps, and how ``edit`` treats the other units.

        Edit(lambda layer, maps, resting, std, channels: maps * 0 + resting.view(1, -1, 1, 1), local=True)

    ``transform(layer, maps, resting, std, channels)`` gets the edited channels' maps
    (B, C, H, W), their resting values and mining standard deviations (C,) and the
    channel indices, and returns the target maps. ``local`` edits keep the other units'
    maps by default; ``min_scale`` leaves out layers whose maps are smaller than that
    fraction of the image's side. An edit that holds data per image (``paste``'s source
    maps) gives ``restrict``: rows -> the same edit for those images, so that ``edit``
    can work in batches.
    """

    transform: Callable[..., torch.Tensor]
    local: bool = False
    min_scale: float = 0.0
    restrict: Callable[[slice], "Edit"] | None = None

    def rows(self, rows: slice) -> "Edit":
        """The edit for the images ``rows`` of a batch.  ``paste(maps, box).rows(slice(0, 8))``"""
        return self if self.restrict is None else self.restrict(rows)

    def __call__(self, layer: str, maps: torch.Tensor, resting: torch.Tensor, std: torch.Tensor | None = None,
                 channels: list[int] | None = None) -> torch.Tensor:
        return self.transform(layer, maps, resting, std, channels)


def shift(dx: float, dy: float, fill: str = "edge") -> Edit:
    """Edit: move every edited map by (dx, dy) fractions of the side.  ``edit(gan, z, shift(0.25, 0), d)``

    The uncovered side repeats the border cells by default (``fill="rest"``: the resting
    value); ``eval editing`` measured the border fill closer to the shifted pixels.
    """
    return Edit(lambda layer, maps, resting, std, channels: shift_maps(maps, dx, dy, resting, fill),
                min_scale=GEOMETRY_MIN_SCALE)


def zoom(factor: float, fill: str = "edge") -> Edit:
    """Edit: zoom every edited map about the centre.  ``edit(gan, z, zoom(1.5), d)``

    Zooming out uncovers a border; by default it repeats the nearest cells (the sky goes
    on above, the ground below), which the generator can make, rather than the resting
    value, which it cannot (measured by ``eval editing``).
    """
    return Edit(lambda layer, maps, resting, std, channels: zoom_maps(maps, factor, resting, fill),
                min_scale=GEOMETRY_MIN_SCALE)


def remove(everywhere: bool = False) -> Edit:
    """Edit: switch a concept off, its units' maps brought down to rest (mining mean) where they exceed it.

        edit(gan, z, remove(), d, units=d.clusters[0].generator_units)

    Only cells above rest, where the concept is, are lowered: a unit sits below its mean
    wherever its concept is absent, and raising those cells to the mean would paint a
    weak copy of the concept everywhere else. ``everywhere=True`` sets every cell to
    rest (the literal reading of "set to the resting value").
    """
    if everywhere:
        return Edit(lambda layer, maps, resting, std, channels: fill_region(maps, resting), local=True)
    return Edit(lambda layer, maps, resting, std, channels: torch.minimum(maps, _fill(resting, maps).to(maps.device)),
                local=True)


def add(box: Box, strength: float = 3.0) -> Edit:
    """Edit: raise the edited maps inside ``box`` to rest + ``strength`` x their mining standard deviation.

        edit(gan, z, add((0.5, 0, 1, 0.5)), d, units=d.clusters[0].generator_units)
    """
    def transform(layer, maps, resting, std, channels):
        spread = std if std is not None else torch.ones_like(resting)
        return fill_region(maps, resting + strength * spread, box)
    return Edit(transform, local=True)


def scale_unit(factor: float, box: Box | None = None) -> Edit:
    """Edit: multiply the deviation from rest by ``factor`` (inside ``box``); for a single-unit edit.

        edit(gan, z, scale_unit(3.0), d, units=[423])
    """
    def transform(layer, maps, resting, std, channels):
        rest = _fill(resting, maps)
        scaled = rest + factor * (maps - rest)
        if box is None:
            return scaled
        mask = box_mask(*maps.shape[-2:], box, maps.device)
        return torch.where(mask, scaled, maps)
    return Edit(transform, local=True)


def paste(source_maps: dict[str, torch.Tensor], box: Box, to: tuple[float, float] | None = None) -> Edit:
    """Edit: paste a box of another generation's maps (``record_maps(gan, z_other)``).

        edit(gan, z_a, paste(record_maps(gan, z_b), (0, 0, 0.5, 0.5)), d, units="all")

    ``source_maps`` are the full maps of the source; the edited channels are picked by
    ``edit`` (the source maps are indexed with the same channels).
    """
    def transform(layer, maps, resting, std, channels):
        src = source_maps[layer] if channels is None else source_maps[layer][:, channels]
        return paste_maps(maps, src.expand_as(maps) if src.shape[0] == 1 else src.to(maps.device), box, to)

    def restrict(rows: slice) -> Edit:
        return paste({layer: m if m.shape[0] == 1 else m[rows] for layer, m in source_maps.items()}, box, to)
    return Edit(transform, local=True, restrict=restrict)


def record_maps(generator: Member, z: torch.Tensor) -> dict[str, torch.Tensor]:
    """The generator's maps on z, detached: {layer: (B, C, H, W)}.  ``record_maps(gan, z)``"""
    with torch.no_grad():
        return dict(record_generator(generator, z)[1])


def unit_channels(dictionary: RosettaDictionary, generator: str, units: str | Sequence[int]) -> dict[str, list[int]]:
    """Flat unit indices (or "rosetta") grouped as {layer: [channels]}.

        unit_channels(d, "lite-gan", "rosetta")   # {"b16": [49], "b4": [...], ...}
    """
    if isinstance(units, str):
        if units != "rosetta":
            raise ValueError(f"units is 'rosetta', 'all' or a list of flat indices, got {units!r}")
        units = dictionary.rosetta_units()
    if not len(units):
        raise ValueError("no units to edit: the dictionary has no Rosetta units, or the list is empty")
    out: dict[str, list[int]] = {}
    for unit in units:
        layer, channel = dictionary.unit(generator, int(unit))
        out.setdefault(layer, []).append(channel)
    return out


@dataclass(frozen=True)
class EditOptions:
    """How :func:`edit` weighs its targets and optimises the latents.

        edit(gan, z, remove(), d, units=[423], options=EditOptions(steps=200, preserve=0.0))

    ``preserve`` None: 1 for local edits, 0 for the others; ``min_scale`` None: the
    edit's own (see :func:`edit`).
    """

    steps: int = 100
    lr: float = 0.05
    keep_near: float = 0.01  # weight of ||z - z_start||^2 / dim
    preserve: float | None = None  # weight of the other units' maps kept
    min_scale: float | None = None  # layers with smaller maps (fraction of the side) are left out
    progress: bool = True
    batch_size: int = 64  # latents optimised together: bounds the memory, not the result
    device: str | None = None  # None: where the generator is; else the generator is moved there
    precision: str = "fp32"  # the generator's forward passes: fp32, tf32, bf16 or fp16 (autocast)

    def __post_init__(self) -> None:
        check_run_settings(self.batch_size, self.device, self.precision)


@dataclass
class EditResult:
    """Latents and images before and after an edit, and the target maps the edit asked for."""

    z_start: torch.Tensor
    z: torch.Tensor
    before: torch.Tensor
    after: torch.Tensor
    targets: dict[str, torch.Tensor]  # layer -> edited maps of the edited channels
    channels: dict[str, list[int]]
    history: list[float]
    stopped_at: int | None = None  # step of a non-finite loss, if one stopped the run


def edit(generator: Member, z: torch.Tensor, edit_fn: Edit, dictionary: RosettaDictionary, *,
         units: str | Sequence[int] = "rosetta", options: EditOptions | None = None, **changes: Any) -> EditResult:
    """Edit the chosen units' maps of G(z) and re-optimise z to match them.

        result = edit(gan, gan.sample_latents(4, 0), shift(0.25, 0), d, units="all")
        result.before, result.after   # images (B, 3, H, W)

    ``options`` (:class:`EditOptions`, default: its defaults) with ``changes`` applied
    say how (``steps``, ``lr``, ``keep_near``, ``preserve``, ``min_scale``, ``progress``,
    ``batch_size``, ``device``, ``precision``).
    ``preserve`` weighs a second target: every unit that is not edited keeps its map of
    G(z). Without it only the edited units are constrained and z is free to change the
    rest of the image; local edits (remove, add, paste, scale_unit) want it, a shift or
    zoom of the Rosetta units alone would be fought by it. None: 1 for local edits, 0
    for the others.

    ``min_scale`` leaves out the chosen units of layers whose maps are smaller than that
    fraction of the output's side (they are neither edited nor kept). None: the edit's
    own choice (0.5 for shift and zoom, see ``GEOMETRY_MIN_SCALE``; 0 for the others).

    The latents are edited ``batch_size`` at a time (they never interact: the result is
    that of one batch); the generator runs on ``device`` (moved there; None: where it is)
    in ``precision``, and z follows it.
    """
    opts = dataclasses.replace(options or EditOptions(), **changes)
    dictionary.check_generator(generator)
    preserve = opts.preserve if opts.preserve is not None else 1.0 if edit_fn.local else 0.0
    if preserve < 0 or opts.keep_near < 0:
        raise ValueError(f"preserve and keep_near are non-negative weights, got {preserve} and {opts.keep_near}")
    if z.dim() != 2 or z.shape[0] == 0:
        raise ValueError(f"z is a batch of latents (B >= 1, z_dim); got shape {tuple(z.shape)}")
    device = place(opts.device, [generator])
    generator.model.requires_grad_(False)
    batches = row_batches(z.shape[0], opts.batch_size)
    parts = []
    with precision_context(opts.precision, device):
        for rows in progress_bar(batches, enabled=opts.progress and len(batches) > 1, desc="edit batches"):
            parts.append(_edit_batch(generator, z[rows].to(device), edit_fn.rows(rows), dictionary, units, opts,
                                     preserve))
    run = joined([Optimised(part.z, part.z.new_zeros(part.z.shape[0]), None, part.history, part.stopped_at)
                  for part in parts])
    targets = {layer: torch.cat([part.targets[layer] for part in parts]) for layer in parts[0].targets}
    return EditResult(torch.cat([part.z_start for part in parts]), run.z, torch.cat([part.before for part in parts]),
                      torch.cat([part.after for part in parts]), targets, parts[0].channels, run.history,
                      run.stopped_at)


def _edit_batch(generator: Member, z: torch.Tensor, edit_fn: Edit, dictionary: RosettaDictionary,
                units: str | Sequence[int], opts: EditOptions, preserve: float) -> EditResult:
    """One batch of latents edited (see :func:`edit`)."""
    name = generator.name
    keep_near = opts.keep_near
    min_scale = opts.min_scale if opts.min_scale is not None else edit_fn.min_scale
    mean, std = (t.to(z.device) for t in dictionary.unit_stats(name))
    offsets = _layer_offsets(dictionary, name)
    channels, kept = _edited_and_kept(dictionary, name, units, offsets, preserve > 0)
    z_start = z.detach().clone()
    with torch.no_grad():
        before, maps = record_generator(generator, z_start, list(offsets))
    if min_scale > 0:
        channels, kept = _without_coarse_layers(channels, kept, maps, before.shape[-1], min_scale)
    targets, scales = _edited_targets(edit_fn, maps, channels, offsets, mean, std)
    kept_targets = {layer: maps[layer][:, chans].detach() for layer, chans in kept.items()}
    kept_scales = {layer: std[[offsets[layer][0] + c for c in chans]].clamp_min(1e-6).view(1, -1, 1, 1)
                   for layer, chans in kept.items()}
    traced = [layer for layer in offsets if layer in channels or layer in kept]

    def per_image(maps: dict[str, torch.Tensor], wanted: dict[str, list[int]], goal: dict, scale: dict):
        # squared error in units of each unit's mining standard deviation, each layer weighted alike
        return sum((((maps[layer][:, chans].float() - goal[layer]) / scale[layer]) ** 2).flatten(1).mean(1)
                   for layer, chans in wanted.items()) / len(wanted)

    def loss(z: torch.Tensor) -> tuple[torch.Tensor, None]:
        _, now = record_generator(generator, z, traced, grad=True)
        total = per_image(now, channels, targets, scales) + keep_near * ((z - z_start) ** 2).flatten(1).mean(1)
        if kept:
            total = total + preserve * per_image(now, kept, kept_targets, kept_scales)
        return total, None

    run = optimise_latents(z_start, loss, steps=opts.steps, lr=opts.lr, label="edit", progress=opts.progress)
    with torch.no_grad():
        after = generator.generate(run.z)
    return EditResult(z_start, run.z, before.float(), after.float().clamp(0, 1), targets, channels, run.history,
                      run.stopped_at)


def _edited_targets(edit_fn: Edit, maps: dict[str, torch.Tensor], channels: dict[str, list[int]],
                    offsets: dict[str, tuple[int, int]], mean: torch.Tensor,
                    std: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Per layer, the maps the edit asks of the edited channels and their mining standard deviations."""
    targets, scales = {}, {}
    for layer, chans in channels.items():
        flat = [offsets[layer][0] + c for c in chans]
        resting = mean[flat].to(maps[layer].dtype)
        edited = maps[layer][:, chans].detach()
        targets[layer] = edit_fn(layer, edited, resting, std=std[flat].to(maps[layer].dtype), channels=chans)
        scales[layer] = std[flat].clamp_min(1e-6).view(1, -1, 1, 1)
    return targets, scales


def _layer_offsets(dictionary: RosettaDictionary, name: str) -> dict[str, tuple[int, int]]:
    """{layer: (first flat index, channels)} of a model in the dictionary."""
    offsets, first = {}, 0
    for layer, count in zip(dictionary.models[name]["layers"], dictionary.models[name]["units"]):
        offsets[layer] = (first, count)
        first += count
    return offsets


def _edited_and_kept(dictionary: RosettaDictionary, name: str, units, offsets: dict[str, tuple[int, int]],
                     keep_others: bool) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    """The channels to edit, per layer, and (with ``keep_others``) every other channel, to be kept."""
    if isinstance(units, str) and units == "all":
        channels = {layer: list(range(count)) for layer, (_, count) in offsets.items()}
    else:
        channels = unit_channels(dictionary, name, units)
    kept = {}
    if keep_others:
        for layer, (_, count) in offsets.items():
            others = sorted(set(range(count)) - set(channels.get(layer, [])))
            if others:
                kept[layer] = others
    return channels, kept


def _without_coarse_layers(channels: dict, kept: dict, maps: dict[str, torch.Tensor], side: int,
                           min_scale: float) -> tuple[dict, dict]:
    """Leave out the layers whose maps are smaller than ``min_scale`` of the image's ``side``."""
    small = [layer for layer in channels if maps[layer].shape[-1] < min_scale * side]
    channels = {layer: chans for layer, chans in channels.items() if layer not in small}
    kept = {layer: chans for layer, chans in kept.items() if layer not in small}
    if not channels:
        raise NoUnitsToEdit(f"no units to edit: every chosen unit is in a layer ({', '.join(small)}) whose maps "
                         f"are smaller than min_scale={min_scale} of the output; lower min_scale")
    return channels, kept
