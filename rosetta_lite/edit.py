"""Rosetta-guided editing: edit the generator's unit maps, then find the latent that makes them.

    result = edit(gan, z, shift(0.25, 0), d)            # move the scene a quarter to the right
    result = edit(gan, z, remove(), d, units=d.clusters[0].generator_units)   # switch a concept off

An edit is a function ``(layer, maps, resting) -> edited maps`` applied to the maps
(B, C, H, W) that the chosen units have on G(z) (``units="rosetta"``: the dictionary's
Rosetta units, the paper's choice; ``"all"``: every unit of every layer; or a list of
flat unit indices). ``resting`` (C,) is each channel's mining mean, the level a unit is
brought down to when its concept is removed (and, with ``fill="rest"``, the value of
uncovered cells).
Then z is re-optimised (Adam, cosine schedule) so that G's maps of the chosen units
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

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from rosetta_lite.dictionary import RosettaDictionary
from rosetta_lite.invert import check_dictionary, generator_maps
from rosetta_lite.zoo.member import Member

Box = tuple[float, float, float, float]  # (top, left, bottom, right) as fractions of the side
EditFn = Callable[[str, torch.Tensor, torch.Tensor], torch.Tensor]


def _fill(resting: torch.Tensor | float, maps: torch.Tensor) -> torch.Tensor:
    rest = torch.as_tensor(resting, dtype=maps.dtype)
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


def box_mask(h: int, w: int, box: Box) -> torch.Tensor:
    """Boolean (h, w) mask of a box given as (top, left, bottom, right) fractions.

        box_mask(8, 8, (0, 0, 0.5, 0.5))   # the top-left quarter
    """
    top, left, bottom, right = box
    ys = (torch.arange(h) + 0.5) / h
    xs = (torch.arange(w) + 0.5) / w
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
    mask = box_mask(h, w, box).to(dst.device)
    return torch.where(mask, src, dst)


def fill_region(maps: torch.Tensor, value: torch.Tensor | float, box: Box | None = None) -> torch.Tensor:
    """``maps`` with ``value`` (scalar or per channel) inside ``box`` (everywhere when None).

        fill_region(maps, resting)                       # remove: every cell at rest
        fill_region(maps, resting + 3 * std, (0, 0, .5, .5))   # add a concept top-left
    """
    h, w = maps.shape[-2:]
    mask = box_mask(h, w, box).to(maps.device) if box is not None else torch.ones(h, w, dtype=torch.bool)
    return torch.where(mask, _fill(value, maps).expand_as(maps), maps)


# ---- edits: functions of (layer, maps of the edited channels, their resting values) ----

# Geometric edits change the maps of the layers at least half the output's side (16 and
# 32 px in the lite GAN) by default: `eval editing` measured that moving or zooming the
# 4 x 4 and 8 x 8 maps as well (one cell = 8 or 4 px, a coarse resample the generator
# cannot follow) makes the result worse, not better. ``edit(..., min_scale=0)`` edits all.
GEOMETRY_MIN_SCALE = 0.5


def _geometric(fn):
    fn.min_scale = GEOMETRY_MIN_SCALE
    return fn


def shift(dx: float, dy: float, fill: str = "edge") -> EditFn:
    """Edit: move every edited map by (dx, dy) fractions of the side.  ``edit(gan, z, shift(0.25, 0), d)``

    The uncovered side repeats the border cells by default (``fill="rest"``: the resting
    value); ``eval editing`` measured the border fill closer to the shifted pixels.
    """
    return _geometric(lambda layer, maps, resting: shift_maps(maps, dx, dy, resting, fill))


def zoom(factor: float, fill: str = "edge") -> EditFn:
    """Edit: zoom every edited map about the centre.  ``edit(gan, z, zoom(1.5), d)``

    Zooming out uncovers a border; by default it repeats the nearest cells (the sky goes
    on above, the ground below), which the generator can make, rather than the resting
    value, which it cannot (measured by ``eval editing``).
    """
    return _geometric(lambda layer, maps, resting: zoom_maps(maps, factor, resting, fill))


def remove(everywhere: bool = False) -> EditFn:
    """Edit: switch a concept off, its units' maps brought down to rest (mining mean) where they exceed it.

        edit(gan, z, remove(), d, units=d.clusters[0].generator_units)

    Only cells above rest, where the concept is, are lowered: a unit sits below its mean
    wherever its concept is absent, and raising those cells to the mean would paint a
    weak copy of the concept everywhere else. ``everywhere=True`` sets every cell to
    rest (the literal reading of "set to the resting value").
    """
    if everywhere:
        return _local(lambda layer, maps, resting: fill_region(maps, resting))
    return _local(lambda layer, maps, resting: torch.minimum(maps, _fill(resting, maps).to(maps.device)))


def _local(fn):
    """Mark an edit as local: by default ``edit`` then keeps the other units' maps as they were."""
    fn.local = True
    return fn


def add(box: Box, strength: float = 3.0) -> EditFn:
    """Edit: raise the edited maps inside ``box`` to rest + ``strength`` x their mining standard deviation.

        edit(gan, z, add((0.5, 0, 1, 0.5)), d, units=d.clusters[0].generator_units)
    """
    def fn(layer, maps, resting, std=None):
        spread = std if std is not None else torch.ones_like(resting)
        return fill_region(maps, resting + strength * spread, box)
    fn.needs_std = True
    return _local(fn)


def scale_unit(factor: float, box: Box | None = None) -> EditFn:
    """Edit: multiply the deviation from rest by ``factor`` (inside ``box``); for a single-unit edit.

        edit(gan, z, scale_unit(3.0), d, units=[423])
    """
    def fn(layer, maps, resting):
        rest = _fill(resting, maps)
        scaled = rest + factor * (maps - rest)
        if box is None:
            return scaled
        mask = box_mask(*maps.shape[-2:], box).to(maps.device)
        return torch.where(mask, scaled, maps)
    return _local(fn)


def paste(source_maps: dict[str, torch.Tensor], box: Box, to: tuple[float, float] | None = None) -> EditFn:
    """Edit: paste a box of another generation's maps (``record_maps(gan, z_other)``).

        edit(gan, z_a, paste(record_maps(gan, z_b), (0, 0, 0.5, 0.5)), d, units="all")

    ``source_maps`` are the full maps of the source; the edited channels are picked by
    ``edit`` (the source maps are indexed with the same channels).
    """
    def fn(layer, maps, resting, channels=None):
        src = source_maps[layer] if channels is None else source_maps[layer][:, channels]
        return paste_maps(maps, src.expand_as(maps) if src.shape[0] == 1 else src, box, to)
    fn.needs_channels = True
    return _local(fn)


def record_maps(generator: Member, z: torch.Tensor) -> dict[str, torch.Tensor]:
    """The generator's maps on z, detached: {layer: (B, C, H, W)}.  ``record_maps(gan, z)``"""
    with torch.no_grad():
        return {k: v.detach() for k, v in generator_maps(generator, z)[1].items()}


def unit_channels(dictionary: RosettaDictionary, generator: str, units) -> dict[str, list[int]]:
    """Flat unit indices (or "rosetta") grouped as {layer: [channels]}.

        unit_channels(d, "lite-gan", "rosetta")   # {"b16": [49], "b4": [...], ...}
    """
    if isinstance(units, str):
        if units != "rosetta":
            raise ValueError(f"units is 'rosetta', 'all' or a list of flat indices, got {units!r}")
        units = sorted({u for c in dictionary.clusters for u in c.generator_units})
    if not len(units):
        raise ValueError("no units to edit: the dictionary has no Rosetta units, or the list is empty")
    out: dict[str, list[int]] = {}
    for unit in units:
        layer, channel = dictionary.unit(generator, int(unit))
        out.setdefault(layer, []).append(channel)
    return out


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


def edit(generator: Member, z: torch.Tensor, edit_fn: EditFn, dictionary: RosettaDictionary, *,
         units="rosetta", steps: int = 100, lr: float = 0.05, keep_near: float = 0.01,
         preserve: float | None = None, min_scale: float | None = None, progress: bool = True) -> EditResult:
    """Edit the chosen units' maps of G(z) and re-optimise z to match them.

        result = edit(gan, gan.sample_latents(4, 0), shift(0.25, 0), d, units="all")
        result.before, result.after   # images (B, 3, H, W)

    ``preserve`` weighs a second target: every unit that is not edited keeps its map of
    G(z). Without it only the edited units are constrained and z is free to change the
    rest of the image; local edits (remove, add, paste, scale_unit) want it, a shift or
    zoom of the Rosetta units alone would be fought by it. None: 1 for local edits, 0
    for the others.

    ``min_scale`` leaves out the chosen units of layers whose maps are smaller than that
    fraction of the output's side (they are neither edited nor kept). None: the edit's
    own choice (0.5 for shift and zoom, see ``GEOMETRY_MIN_SCALE``; 0 for the others).
    """
    check_dictionary(generator, dictionary)
    name = generator.name
    if preserve is None:
        preserve = 1.0 if getattr(edit_fn, "local", False) else 0.0
    if min_scale is None:
        min_scale = getattr(edit_fn, "min_scale", 0.0)
    if preserve < 0 or keep_near < 0:
        raise ValueError(f"preserve and keep_near are non-negative weights, got {preserve} and {keep_near}")
    mean, std = dictionary.unit_stats(name)
    offsets, first = {}, 0
    for layer, count in zip(dictionary.models[name]["layers"], dictionary.models[name]["units"]):
        offsets[layer] = (first, count)
        first += count
    if isinstance(units, str) and units == "all":
        channels = {layer: list(range(count)) for layer, (_, count) in offsets.items()}
    else:
        channels = unit_channels(dictionary, name, units)
    kept = {}
    if preserve > 0:
        for layer, (_, count) in offsets.items():
            others = sorted(set(range(count)) - set(channels.get(layer, [])))
            if others:
                kept[layer] = others
    z_start = z.detach().clone()
    with torch.no_grad():
        before, maps = generator_maps(generator, z_start, list(offsets))
    if min_scale > 0:
        small = [layer for layer in channels if maps[layer].shape[-1] < min_scale * before.shape[-1]]
        channels = {layer: chans for layer, chans in channels.items() if layer not in small}
        kept = {layer: chans for layer, chans in kept.items() if layer not in small}
        if not channels:
            raise ValueError(f"no units to edit: every chosen unit is in a layer ({', '.join(small)}) whose maps "
                             f"are smaller than min_scale={min_scale} of the output; lower min_scale")
    targets, scales, kept_targets, kept_scales = {}, {}, {}, {}
    for layer, chans in channels.items():
        flat = [offsets[layer][0] + c for c in chans]
        resting = mean[flat].to(maps[layer].dtype)
        edited = maps[layer][:, chans].detach()
        extra = {}
        if getattr(edit_fn, "needs_channels", False):
            extra["channels"] = chans
        if getattr(edit_fn, "needs_std", False):
            extra["std"] = std[flat].to(maps[layer].dtype)
        targets[layer] = edit_fn(layer, edited, resting, **extra)
        scales[layer] = std[flat].clamp_min(1e-6).view(1, -1, 1, 1)
    for layer, chans in kept.items():
        kept_targets[layer] = maps[layer][:, chans].detach()
        kept_scales[layer] = std[[offsets[layer][0] + c for c in chans]].clamp_min(1e-6).view(1, -1, 1, 1)
    z_opt = z_start.clone().requires_grad_(True)
    optimiser = torch.optim.Adam([z_opt], lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=max(steps, 1))
    generator.model.requires_grad_(False)
    traced = [layer for layer in offsets if layer in channels or layer in kept]
    history, stopped = [], None
    best_loss, best_z = math.inf, z_start.clone()
    for step in tqdm(range(steps + 1), desc="editing", disable=not progress, leave=False):
        _, now = generator_maps(generator, z_opt, traced)
        # squared error in units of each unit's mining standard deviation, each layer weighted alike
        match = sum((((now[layer][:, chans] - targets[layer]) / scales[layer]) ** 2).mean()
                    for layer, chans in channels.items()) / len(channels)
        loss = match + keep_near * ((z_opt - z_start) ** 2).mean()
        if kept:
            loss = loss + preserve * sum((((now[layer][:, chans] - kept_targets[layer]) / kept_scales[layer]) ** 2)
                                         .mean() for layer, chans in kept.items()) / len(kept)
        if not torch.isfinite(loss):
            stopped = step
            warnings.warn(f"non-finite edit loss at step {step}: stopped; keeping the best latent found before it",
                          RuntimeWarning, stacklevel=2)
            break
        history.append(float(loss.detach()))
        if history[-1] < best_loss:  # the loss of z_opt as it is now, before this step moves it
            best_loss, best_z = history[-1], z_opt.detach().clone()
        if step == steps:
            break
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
    with torch.no_grad():
        after = generator.generate(best_z)
    return EditResult(z_start, best_z, before.clamp(0, 1), after.clamp(0, 1), targets, channels, history, stopped)


def _masked_psnr(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR over the pixels where ``mask`` (B, 1, H, W) is true."""
    weight = mask.float().expand_as(a)
    mse = (((a - b) ** 2) * weight).flatten(1).sum(1) / weight.flatten(1).sum(1).clamp_min(1)
    return 10 * torch.log10(1 / mse.clamp_min(1e-10))


def pixel_transform(images: torch.Tensor, kind: str, amount) -> tuple[torch.Tensor, torch.Tensor]:
    """The same geometric transform applied to pixels: (transformed images, mask of covered pixels).

        pixel_transform(images, "shift", (0.25, 0.0))
    """
    ones = torch.ones_like(images[:, :1])
    if kind == "shift":
        return shift_maps(images, *amount, 0.0), shift_maps(ones, *amount, 0.0) > 0.5
    if kind == "zoom":
        return zoom_maps(images, amount, 0.0), zoom_maps(ones, amount, 0.0) > 0.99
    raise ValueError(f"kind is 'shift' or 'zoom', got {kind!r}")


def evaluate_editing(dictionary: RosettaDictionary, images: int = 16, *, steps: int = 100, lr: float = 0.05,
                     keep_near: float = 0.01, seed: int = 11, change_threshold: float = 0.1,
                     region_z: float = 1.0, baselines: bool = True, progress: bool = True) -> dict:
    """Edit fidelity: shift and zoom against the pixel transform; concept removal inside vs outside its region.

        report = evaluate_editing(RosettaDictionary.load("runs/lite"))

    Shift and zoom: PSNR (over the pixels the transform covers) between the transformed
    original and the edited generation, against that of the unedited generation; for
    edits of the Rosetta units and of all units. Removal (each cluster): a pixel has
    changed when some channel moves by more than ``change_threshold``; the concept's
    region is where the mean of its G units' maps on the original, standardised with
    the mining statistics, exceeds ``region_z`` (G unit maps thresholded; the lite GAN
    samples have no ground-truth masks). A removal is localised when the share of the
    changed pixels inside the region exceeds the region's share of the image; it removed
    the concept when its units' mean z-score inside the region drops towards 0 (rest).

    ``baselines`` adds the plain settings the defaults are measured against: every layer
    edited with uncovered cells at rest (geometry), and removal that sets every cell to
    rest with no other unit kept (``remove(everywhere=True), preserve=0``).
    """
    from rosetta_lite import zoo
    from rosetta_lite.invert import standardise
    from rosetta_lite.metrics import mean_ci, paired_difference, rounded

    gan = zoo.load(dictionary.generator)
    check_dictionary(gan, dictionary)
    z = gan.sample_latents(images, seed=seed)
    common = dict(steps=steps, lr=lr, keep_near=keep_near, progress=progress)
    geometry = [("shift right 1/4", "shift", (0.25, 0.0)), ("shift up 1/4", "shift", (0.0, -0.25)),
                ("zoom in 1.5x", "zoom", 1.5), ("zoom out 0.75x", "zoom", 0.75)]
    # (units, setting name, fill, min_scale): the defaults, then the plain baseline
    settings = [("rosetta", "default", None, None), ("all", "default", None, None)]
    if baselines:
        settings.append(("all", "baseline: every layer, fill rest", "rest", 0.0))
    rows = []
    for label, kind, amount in geometry:
        for units, setting, fill, min_scale in settings:
            fill = fill or "edge"  # the default fill of shift and zoom
            fn = shift(*amount, fill=fill) if kind == "shift" else zoom(amount, fill=fill)
            result = edit(gan, z, fn, dictionary, units=units, min_scale=min_scale, **common)
            reference, covered = pixel_transform(result.before, kind, amount)
            edited = _masked_psnr(result.after, reference, covered)
            unedited = _masked_psnr(result.before, reference, covered)
            rows.append({"edit": label, "units": units, "setting": setting, "layers": sorted(result.channels),
                         "fill": fill, "psnr_edited_vs_transformed": rounded(mean_ci(edited)),
                         "psnr_unedited_vs_transformed": rounded(mean_ci(unedited)),
                         "difference": rounded(paired_difference(edited, unedited))})
    grid = dictionary.settings["grid"].get(gan.name, 32)
    variants = [("default: remove() above rest, other units preserved", remove(), None)]
    if baselines:
        variants.append(("baseline: remove(everywhere=True), preserve=0", remove(everywhere=True), 0.0))
    removal = {"region": f"G unit maps thresholded: mean standardised map of the cluster's units > {region_z}",
               "changed_pixel": f"max channel change > {change_threshold}", "variants": []}
    for variant, fn, preserve in variants:
        clusters = []
        for cluster in dictionary.clusters:
            result = edit(gan, z, fn, dictionary, units=cluster.generator_units, preserve=preserve, **common)
            with torch.no_grad():
                score, after_score = (standardise(generator_maps(gan, latent)[1], dictionary, gan.name,
                                                  cluster.generator_units, grid).mean(1, keepdim=True)
                                      for latent in (z, result.z))
            size = result.before.shape[-1]
            region = (F.interpolate(score, size=(size, size), mode="bilinear", align_corners=False) > region_z)[:, 0]
            on_grid = score[:, 0] > region_z  # the region on the mining grid, where the scores live
            # did the concept go? its units' mean z-score inside the region, before and after the edit
            level_before = float(score[:, 0][on_grid].mean()) if on_grid.any() else None
            level_after = float(after_score[:, 0][on_grid].mean()) if on_grid.any() else None
            changed = (result.after - result.before).abs().amax(1) > change_threshold
            inside = (changed & region).flatten(1).sum(1).float() / region.flatten(1).sum(1).clamp_min(1)
            outside = (changed & ~region).flatten(1).sum(1).float() / (~region).flatten(1).sum(1).clamp_min(1)
            has_region = region.flatten(1).any(1)
            clusters.append({"cluster": cluster.id, "units": cluster.generator_units,
                             "region_area_share": round(float(region.float().mean()), 4),
                             "changed_share_inside_region": round(float(inside[has_region].mean()), 4)
                             if has_region.any() else None,
                             "changed_share_outside_region": round(float(outside.mean()), 4),
                             "share_of_changed_pixels_inside_region": round(
                                 float((changed & region).sum() / changed.sum().clamp_min(1)), 4),
                             "unit_z_inside_region_before": None if level_before is None else round(level_before, 3),
                             "unit_z_inside_region_after": None if level_after is None else round(level_after, 3)})

        def average(key):
            values = [c[key] for c in clusters if c[key] is not None]
            return round(sum(values) / len(values), 4) if values else None

        removal["variants"].append({"variant": variant, "mean_region_area_share": average("region_area_share"),
                                    "mean_share_of_changed_pixels_inside_region":
                                        average("share_of_changed_pixels_inside_region"),
                                    "mean_unit_z_inside_region_before": average("unit_z_inside_region_before"),
                                    "mean_unit_z_inside_region_after": average("unit_z_inside_region_after"),
                                    "clusters": clusters})
    return {"eval": "editing", "generator": gan.name, "images": images, "latent_seed": seed, "steps": steps,
            "lr": lr, "keep_near": keep_near, "geometry_min_scale": GEOMETRY_MIN_SCALE, "geometry": rows,
            "removal": removal}


def image_rows(rows: dict[str, torch.Tensor], n: int | None = None, cmap_maps: str = "magma"):
    """A figure with one row per entry: images (B, 3, H, W) in [0, 1] or maps (B, 1, H, W) as heat maps.

        image_rows({"before": result.before, "after": result.after, "edited map": result.targets["b16"][:, :1]})
    """
    import matplotlib.pyplot as plt

    n = n or min(len(v) for v in rows.values())
    fig, axes = plt.subplots(len(rows), n, figsize=(1.6 * n, 1.7 * len(rows)), squeeze=False)
    for r, (label, values) in enumerate(rows.items()):
        for c in range(n):
            ax = axes[r, c]
            v = values[c].detach().float().cpu()
            if v.shape[0] == 3:
                ax.imshow(v.clamp(0, 1).permute(1, 2, 0).numpy())
            else:
                ax.imshow(v[0].numpy(), cmap=cmap_maps)
            ax.set_xticks([]), ax.set_yticks([])
        axes[r, 0].set_ylabel(label, fontsize=8)
    fig.tight_layout()
    return fig


def cli_eval_editing(args) -> int:
    """``python -m rosetta_lite eval editing --json``: print :func:`evaluate_editing` as JSON."""
    import json

    torch.set_num_threads(args.threads)
    report = evaluate_editing(RosettaDictionary.load(args.folder), images=args.images, steps=args.steps,
                              progress=not args.json)
    print(json.dumps(report) if args.json else json.dumps(report, indent=1))
    return 0
