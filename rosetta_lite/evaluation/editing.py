"""Edit fidelity: shift and zoom against the pixel transform; concept removal inside vs outside its region.

    report = evaluate_editing(RosettaDictionary.load("runs/lite"), images=16)
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn.functional as F

from rosetta_lite.applications.edit import (
    GEOMETRY_MIN_SCALE,
    Edit,
    EditOptions,
    EditResult,
    NoUnitsToEdit,
    edit,
    remove,
    shift,
    shift_maps,
    zoom,
    zoom_maps,
)
from rosetta_lite.applications.optimise import row_batches
from rosetta_lite.capture import record_generator
from rosetta_lite.device import resolve_device
from rosetta_lite.dictionary.rosetta import Cluster, RosettaDictionary
from rosetta_lite.dictionary.runs import mined_generator
from rosetta_lite.evaluation.metrics import check_eval_images, mean_ci, paired_difference, rounded
from rosetta_lite.progress import progress_bar
from rosetta_lite.zoo.member import Member

Amount = float | tuple[float, float]  # a zoom's scale, a shift's (dx, dy)


def masked_psnr(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR over the pixels where ``mask`` (B, 1, H, W) is true.

        masked_psnr(result.after, *pixel_transform(result.before, "shift", (0.25, 0.0)))
    """
    weight = mask.float().expand_as(a)
    mse = (((a - b) ** 2) * weight).flatten(1).sum(1) / weight.flatten(1).sum(1).clamp_min(1)
    return 10 * torch.log10(1 / mse.clamp_min(1e-10))


def pixel_transform(images: torch.Tensor, kind: str, amount: Amount) -> tuple[torch.Tensor, torch.Tensor]:
    """The same geometric transform applied to pixels: (transformed images, mask of covered pixels).

        pixel_transform(images, "shift", (0.25, 0.0))
    """
    ones = torch.ones_like(images[:, :1])
    if kind == "shift":
        return shift_maps(images, *amount, 0.0), shift_maps(ones, *amount, 0.0) > 0.5
    if kind == "zoom":
        return zoom_maps(images, amount, 0.0), zoom_maps(ones, amount, 0.0) > 0.99
    raise ValueError(f"kind is 'shift' or 'zoom', got {kind!r}")


def transform_fidelity(result: EditResult, kind: str, amount: Amount) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image PSNR of the edited and of the unedited image against the transformed original.

        edited, unedited = transform_fidelity(edit(gan, z, shift(0.25, 0), d), "shift", (0.25, 0.0))

    Both over the pixels the transform covers (``pixel_transform``); ``result`` is ``edit``'s.
    """
    reference, covered = pixel_transform(result.before, kind, amount)
    return masked_psnr(result.after, reference, covered), masked_psnr(result.before, reference, covered)


def _removal_variant(gan: Member, z: torch.Tensor, dictionary: RosettaDictionary, variant: tuple,
                     thresholds: tuple[float, float], options: EditOptions, bar) -> dict:
    """One removal setting (label, edit function, preserve) on every cluster, with its means over clusters."""
    label, fn, preserve = variant
    region_z, change_threshold = thresholds
    clusters = []
    for cluster in dictionary.clusters:
        clusters.append(measure_removal(gan, z, dictionary, cluster, fn, preserve, region_z, change_threshold,
                                        options=options))
        bar.update(z.shape[0])

    def average(key):
        values = [c[key] for c in clusters if c[key] is not None]
        return round(sum(values) / len(values), 4) if values else None

    return {"variant": label, "mean_region_area_share": average("region_area_share"),
            "mean_share_of_changed_pixels_inside_region": average("share_of_changed_pixels_inside_region"),
            "mean_unit_z_inside_region_before": average("unit_z_inside_region_before"),
            "mean_unit_z_inside_region_after": average("unit_z_inside_region_after"),
            "clusters": clusters}


def evaluate_editing(dictionary: RosettaDictionary, images: int = 16, *, seed: int = 11,
                     change_threshold: float = 0.1, region_z: float = 1.0, baselines: bool = True,
                     options: EditOptions | None = None, **changes: Any) -> dict:
    """Edit fidelity: shift and zoom against the pixel transform; concept removal inside vs outside its region.

        report = evaluate_editing(RosettaDictionary.load("runs/lite"))
        report = evaluate_editing(d, images=4, options=EditOptions(steps=30, progress=False))

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
    rest with no other unit kept (``remove(everywhere=True), preserve=0``). Every edit runs
    with ``options`` (:class:`~rosetta_lite.applications.edit.EditOptions`) with ``changes``
    applied, except ``preserve`` and ``min_scale``, which each row sets as above; the
    generator runs on its ``device`` (None: the CPU) in its ``precision``. The latents are
    edited and scored ``batch_size`` at a time, so memory does not grow with ``images``;
    the report is the one of a single batch.
    """
    opts = dataclasses.replace(options or EditOptions(), **changes)
    check_eval_images(images, "eval editing")
    opts = dataclasses.replace(opts, device=str(resolve_device(opts.device or "cpu")))
    gan = mined_generator(dictionary).to(opts.device)  # the run's generator: its weights and options
    dictionary.check_generator(gan)
    z = gan.sample_latents(images, seed=seed)
    variants = [("default: remove() above rest, other units preserved", remove(), None)]
    if baselines:
        variants.append(("baseline: remove(everywhere=True), preserve=0", remove(everywhere=True), 0.0))
    settings = _geometry_settings(baselines)
    bar = progress_bar(total=images * (len(GEOMETRY) * len(settings) + len(variants) * len(dictionary.clusters)),
                       enabled=opts.progress, desc="eval editing", unit="edit")
    quiet = dataclasses.replace(opts, progress=False)  # the table's bar counts the edits
    rows = _geometry_rows(gan, z, dictionary, settings, quiet, bar)
    removal = {"region": f"G unit maps thresholded: mean standardised map of the cluster's units > {region_z}",
               "changed_pixel": f"max channel change > {change_threshold}",
               "variants": [_removal_variant(gan, z, dictionary, variant, (region_z, change_threshold), quiet, bar)
                            for variant in variants]}
    bar.close()
    return {"eval": "editing", "generator": gan.name, "device": opts.device, "precision": opts.precision,
            "images": images, "latent_seed": seed, "steps": opts.steps,
            "lr": opts.lr, "keep_near": opts.keep_near, "geometry_min_scale": GEOMETRY_MIN_SCALE, "geometry": rows,
            "removal": removal}


#: the geometric edits of the table: (label, kind, amount)
GEOMETRY = (("shift right 1/4", "shift", (0.25, 0.0)), ("shift up 1/4", "shift", (0.0, -0.25)),
            ("zoom in 1.5x", "zoom", 1.5), ("zoom out 0.75x", "zoom", 0.75))


def _geometry_settings(baselines: bool) -> list[tuple]:
    """(units, setting name, fill, min_scale) of each geometric row: the defaults, then the plain baseline."""
    settings = [("rosetta", "default", None, None), ("all", "default", None, None)]
    if baselines:
        settings.append(("all", "baseline: every layer, fill rest", "rest", 0.0))
    return settings


def _batched_edits(gan: Member, z: torch.Tensor, fn: Edit, dictionary: RosettaDictionary,
                   options: EditOptions, **changes: Any):
    """``edit`` on each batch of ``options.batch_size`` latents in turn: (rows, result) per batch."""
    for rows in row_batches(z.shape[0], options.batch_size):
        yield rows, edit(gan, z[rows], fn.rows(rows), dictionary, options=options, **changes)


def _geometry_rows(gan: Member, z: torch.Tensor, dictionary: RosettaDictionary, settings: list[tuple],
                   options: EditOptions, bar) -> list[dict]:
    """Shift and zoom, of the Rosetta units and of all units: PSNR against the transformed pixels."""
    rows = []
    for label, kind, amount in GEOMETRY:
        for units, setting, fill, min_scale in settings:
            fill = fill or "edge"  # the default fill of shift and zoom
            fn = shift(*amount, fill=fill) if kind == "shift" else zoom(amount, fill=fill)
            edited, unedited, layers = [], [], []
            try:
                for batch, result in _batched_edits(gan, z, fn, dictionary, options, units=units,
                                                    min_scale=min_scale):
                    scores = transform_fidelity(result, kind, amount)
                    edited.append(scores[0].cpu())
                    unedited.append(scores[1].cpu())
                    layers = sorted(result.channels)
                    bar.update(batch.stop - batch.start)
            except NoUnitsToEdit:  # e.g. every Rosetta unit in a coarse layer: no row (the readers say so)
                bar.update(z.shape[0])
                continue
            edited, unedited = torch.cat(edited), torch.cat(unedited)
            rows.append({"edit": label, "units": units, "setting": setting, "layers": layers,
                         "fill": fill, "psnr_edited_vs_transformed": rounded(mean_ci(edited)),
                         "psnr_unedited_vs_transformed": rounded(mean_ci(unedited)),
                         "difference": rounded(paired_difference(edited, unedited))})
    return rows


def measure_removal(gan: Member, z: torch.Tensor, dictionary: RosettaDictionary, cluster: Cluster,
                    fn: Edit | None = None, preserve: float | None = None, region_z: float = 1.0,
                    change_threshold: float = 0.1, **edit_options: Any) -> dict:
    """One cluster removed (``fn``, default ``remove()``): where the pixels changed against its region.

        measure_removal(gan, z, d, d.clusters[0], preserve=0, steps=20)

    The region and a changed pixel are as in ``evaluate_editing``; ``edit_options`` go to
    ``edit`` (``options``, or steps, lr, keep_near, progress, batch_size, ...). The latents
    are edited ``batch_size`` at a time and the counts summed. Returns the region's share of
    the image, the changed share inside and outside it, the share of the changed pixels that
    lie inside, and the units' mean z-score in the region before and after the edit.
    """
    grid = dictionary.settings["grid"].get(gan.name, 32)
    fn = fn if fn is not None else remove()
    opts = dataclasses.replace(edit_options.pop("options", None) or EditOptions(), **edit_options)
    sums = dict.fromkeys(("region", "pixels", "changed", "changed_inside", "on_grid", "before", "after"), 0.0)
    inside_shares, outside_shares = [], []
    for rows, result in _batched_edits(gan, z, fn, dictionary, opts, units=cluster.generator_units,
                                       preserve=preserve):
        with torch.no_grad():
            score, after_score = (dictionary.standardise(gan.name, cluster.generator_units,
                                                         record_generator(gan, latent)[1], grid).mean(1, keepdim=True)
                                  for latent in (result.z_start, result.z))
        size = result.before.shape[-1]
        region = (F.interpolate(score, size=(size, size), mode="bilinear", align_corners=False) > region_z)[:, 0]
        on_grid = score[:, 0] > region_z  # the region on the mining grid, where the scores live
        changed = (result.after - result.before).abs().amax(1) > change_threshold
        inside = (changed & region).flatten(1).sum(1).float() / region.flatten(1).sum(1).clamp_min(1)
        outside = (changed & ~region).flatten(1).sum(1).float() / (~region).flatten(1).sum(1).clamp_min(1)
        inside_shares.append(inside[region.flatten(1).any(1)].cpu())
        outside_shares.append(outside.cpu())
        # did the concept go? its units' mean z-score inside the region, before and after the edit
        for key, value in (("region", region.sum()), ("pixels", region.numel()), ("changed", changed.sum()),
                           ("changed_inside", (changed & region).sum()), ("on_grid", on_grid.sum()),
                           ("before", score[:, 0][on_grid].sum()), ("after", after_score[:, 0][on_grid].sum())):
            sums[key] += float(value)
    inside, outside = torch.cat(inside_shares), torch.cat(outside_shares)
    level = {key: round(sums[key] / sums["on_grid"], 3) if sums["on_grid"] else None for key in ("before", "after")}
    return {"cluster": cluster.id, "units": cluster.generator_units,
            "region_area_share": round(sums["region"] / sums["pixels"], 4),
            "changed_share_inside_region": round(float(inside.mean()), 4) if len(inside) else None,
            "changed_share_outside_region": round(float(outside.mean()), 4),
            "share_of_changed_pixels_inside_region": round(sums["changed_inside"] / max(sums["changed"], 1), 4),
            "unit_z_inside_region_before": level["before"],
            "unit_z_inside_region_after": level["after"]}
