"""Rosetta-guided editing: edit the generator's unit maps, then find the latent that makes them.

    result = edit(gan, z, shift(0.25, 0), d)            # move the scene a quarter to the right
    result = edit(gan, z, remove(d.clusters[0].generator_units), d)

An edit is a function ``(layer, maps, resting) -> edited maps`` applied to the maps
(B, C, H, W) that the chosen units have on G(z) (``units="rosetta"``: the dictionary's
Rosetta units, the paper's choice; ``"all"``: every unit of every layer; or a list of
flat unit indices). ``resting`` (C,) is each channel's mining mean: the value a unit
takes where its concept is absent, used to fill uncovered areas and to remove concepts.
Then z is re-optimised (Adam, cosine schedule) so that G's maps of the chosen units
match the edited maps (squared error in units of the mining standard deviation), plus
``keep_near`` x ||z - z_start||^2 / dim, which keeps z near the start where the edit
does not ask otherwise.

The map transforms (``shift_maps``, ``zoom_maps``, ``paste_maps``, ``fill_region``) are
plain tensor functions, usable and tested on hand-made maps.
"""

from __future__ import annotations

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


def shift_maps(maps: torch.Tensor, dx: float, dy: float, resting: torch.Tensor | float = 0.0) -> torch.Tensor:
    """Maps moved by (dx, dy) fractions of their side (right and down positive); uncovered cells get ``resting``.

        shift_maps(maps, 0.25, 0.0)   # a quarter of the width to the right
    """
    h, w = maps.shape[-2:]
    sx, sy = round(dx * w), round(dy * h)
    out = _fill(resting, maps).expand_as(maps).clone()
    src_x, dst_x = (slice(0, w - sx), slice(sx, w)) if sx >= 0 else (slice(-sx, w), slice(0, w + sx))
    src_y, dst_y = (slice(0, h - sy), slice(sy, h)) if sy >= 0 else (slice(-sy, h), slice(0, h + sy))
    if abs(sx) < w and abs(sy) < h:
        out[..., dst_y, dst_x] = maps[..., src_y, src_x]
    return out


def zoom_maps(maps: torch.Tensor, factor: float, resting: torch.Tensor | float = 0.0) -> torch.Tensor:
    """Maps zoomed about their centre (``factor`` > 1 in, < 1 out; bilinear); uncovered cells get ``resting``.

        zoom_maps(maps, 2.0)   # the central half fills the map
    """
    if factor <= 0:
        raise ValueError(f"zoom factor must be positive, got {factor}")
    b = maps.shape[0]
    theta = torch.tensor([[1 / factor, 0, 0], [0, 1 / factor, 0]], dtype=maps.dtype).expand(b, 2, 3)
    grid = F.affine_grid(theta, list(maps.shape), align_corners=False)
    sampled = F.grid_sample(maps, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    inside = F.grid_sample(torch.ones_like(maps[:, :1]), grid, mode="bilinear", padding_mode="zeros",
                           align_corners=False)
    return sampled + (1 - inside) * _fill(resting, maps)


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

def shift(dx: float, dy: float) -> EditFn:
    """Edit: move every edited map by (dx, dy) fractions of the side.  ``edit(gan, z, shift(0.25, 0), d)``"""
    return lambda layer, maps, resting: shift_maps(maps, dx, dy, resting)


def zoom(factor: float) -> EditFn:
    """Edit: zoom every edited map about the centre.  ``edit(gan, z, zoom(1.5), d)``"""
    return lambda layer, maps, resting: zoom_maps(maps, factor, resting)


def remove() -> EditFn:
    """Edit: set the edited maps to rest (mining mean).  ``edit(gan, z, remove(), d, units=cluster_units)``"""
    return lambda layer, maps, resting: fill_region(maps, resting)


def add(box: Box, strength: float = 3.0) -> EditFn:
    """Edit: raise the edited maps inside ``box`` to rest + ``strength`` x their mining standard deviation.

        edit(gan, z, add((0.5, 0, 1, 0.5)), d, units=d.clusters[0].generator_units)
    """
    def fn(layer, maps, resting, std=None):
        spread = std if std is not None else torch.ones_like(resting)
        return fill_region(maps, resting + strength * spread, box)
    fn.needs_std = True
    return fn


def scale_unit(factor: float, box: Box | None = None) -> EditFn:
    """Edit: multiply the deviation from rest by ``factor`` (inside ``box``); for a single-unit edit.

        edit(gan, z, scale_unit(3.0), d, units=[423])
    """
    def fn(layer, maps, resting):
        rest = _fill(resting, maps)
        scaled = rest + factor * (maps - rest)
        if box is None:
            return scaled
        mask = box_mask(*maps.shape[-2:], box)
        return torch.where(mask, scaled, maps)
    return fn


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
    return fn


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


def edit(generator: Member, z: torch.Tensor, edit_fn: EditFn, dictionary: RosettaDictionary, *,
         units="rosetta", steps: int = 100, lr: float = 0.05, keep_near: float = 0.01,
         progress: bool = True) -> EditResult:
    """Edit the chosen units' maps of G(z) and re-optimise z to match them.

        result = edit(gan, gan.sample_latents(4, 0), shift(0.25, 0), d, units="all")
        result.before, result.after   # images (B, 3, H, W)
    """
    check_dictionary(generator, dictionary)
    name = generator.name
    mean, std = dictionary.unit_stats(name)
    offsets, first = {}, 0
    for layer, count in zip(dictionary.models[name]["layers"], dictionary.models[name]["units"]):
        offsets[layer] = (first, count)
        first += count
    if isinstance(units, str) and units == "all":
        channels = {layer: list(range(count)) for layer, (_, count) in offsets.items()}
    else:
        channels = unit_channels(dictionary, name, units)
    z_start = z.detach().clone()
    with torch.no_grad():
        before, maps = generator_maps(generator, z_start)
    targets, scales = {}, {}
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
    z_opt = z_start.clone().requires_grad_(True)
    optimiser = torch.optim.Adam([z_opt], lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=max(steps, 1))
    generator.model.requires_grad_(False)
    history = []
    for _ in tqdm(range(steps), desc="editing", disable=not progress, leave=False):
        _, now = generator_maps(generator, z_opt, list(channels))
        match = sum((((now[layer][:, chans] - targets[layer]) / scales[layer]) ** 2).mean()
                    for layer, chans in channels.items()) / len(channels)
        loss = match + keep_near * ((z_opt - z_start) ** 2).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        history.append(float(loss.detach()))
    with torch.no_grad():
        after = generator.generate(z_opt.detach())
    return EditResult(z_start, z_opt.detach(), before.clamp(0, 1), after.clamp(0, 1), targets, channels, history)


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
                     region_z: float = 1.0, progress: bool = True) -> dict:
    """Edit fidelity: shift and zoom against the pixel transform; concept removal inside vs outside its region.

        report = evaluate_editing(RosettaDictionary.load("runs/lite"))

    Shift and zoom: PSNR (over the pixels the transform covers) between the transformed
    original and the edited generation, against that of the unedited generation; for
    edits of the Rosetta units and of all units. Removal (each cluster): a pixel has
    changed when some channel moves by more than ``change_threshold``; the concept's
    region is where the mean of its G units' maps on the original, standardised with
    the mining statistics, exceeds ``region_z`` (G unit maps thresholded; the lite GAN
    samples have no ground-truth masks).
    """
    from rosetta_lite import zoo
    from rosetta_lite.invert import standardise
    from rosetta_lite.metrics import mean_ci, paired_difference, rounded

    gan = zoo.load(dictionary.generator)
    check_dictionary(gan, dictionary)
    z = gan.sample_latents(images, seed=seed)
    geometry = [("shift right 1/4", "shift", (0.25, 0.0)), ("shift up 1/4", "shift", (0.0, -0.25)),
                ("zoom in 1.5x", "zoom", 1.5), ("zoom out 0.75x", "zoom", 0.75)]
    rows = []
    for label, kind, amount in geometry:
        fn = shift(*amount) if kind == "shift" else zoom(amount)
        for units in ("rosetta", "all"):
            result = edit(gan, z, fn, dictionary, units=units, steps=steps, lr=lr, keep_near=keep_near,
                          progress=progress)
            reference, covered = pixel_transform(result.before, kind, amount)
            edited = _masked_psnr(result.after, reference, covered)
            unedited = _masked_psnr(result.before, reference, covered)
            rows.append({"edit": label, "units": units, "psnr_edited_vs_transformed": rounded(mean_ci(edited)),
                         "psnr_unedited_vs_transformed": rounded(mean_ci(unedited)),
                         "difference": rounded(paired_difference(edited, unedited))})
    removal = []
    grid = dictionary.settings["grid"].get(gan.name, 32)
    for cluster in dictionary.clusters:
        result = edit(gan, z, remove(), dictionary, units=cluster.generator_units, steps=steps, lr=lr,
                      keep_near=keep_near, progress=progress)
        with torch.no_grad():
            _, maps = generator_maps(gan, z)
            score = standardise(maps, dictionary, gan.name, cluster.generator_units, grid).mean(1, keepdim=True)
        size = result.before.shape[-1]
        region = (F.interpolate(score, size=(size, size), mode="bilinear", align_corners=False) > region_z)[:, 0]
        changed = (result.after - result.before).abs().amax(1) > change_threshold
        inside = (changed & region).flatten(1).sum(1).float() / region.flatten(1).sum(1).clamp_min(1)
        outside = (changed & ~region).flatten(1).sum(1).float() / (~region).flatten(1).sum(1).clamp_min(1)
        has_region = region.flatten(1).any(1)
        removal.append({"cluster": cluster.id, "units": cluster.generator_units,
                        "region_area_share": round(float(region.float().mean()), 4),
                        "changed_share_inside_region": round(float(inside[has_region].mean()), 4)
                        if has_region.any() else None,
                        "changed_share_outside_region": round(float(outside.mean()), 4),
                        "share_of_changed_pixels_inside_region": round(
                            float((changed & region).sum() / changed.sum().clamp_min(1)), 4)})
    return {"eval": "editing", "generator": gan.name, "images": images, "latent_seed": seed, "steps": steps,
            "lr": lr, "keep_near": keep_near, "geometry": rows,
            "removal": {"region": f"G unit maps thresholded: mean standardised map of the cluster's units > {region_z}",
                        "changed_pixel": f"max channel change > {change_threshold}", "clusters": removal}}


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
