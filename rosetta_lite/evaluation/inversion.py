"""The paper's Table 1 in the lite world: inversion with and without the Rosetta matches.

    report = evaluate_inversion(RosettaDictionary.load("runs/lite"), images=50)
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from rosetta_lite import zoo
from rosetta_lite.applications.invert import (
    PERCEPTUAL_LAYERS,
    InversionOptions,
    invert,
    lpips_model,
    perceptual_distance,
)
from rosetta_lite.applications.optimise import row_batches
from rosetta_lite.device import resolve_device
from rosetta_lite.dictionary.rosetta import RosettaDictionary
from rosetta_lite.evaluation.metrics import check_eval_images, mean_ci, paired_difference, psnr, rounded, ssim
from rosetta_lite.progress import progress_bar
from rosetta_lite.world import EVAL_SEED, ShapesWorld


def evaluate_inversion(dictionary: RosettaDictionary, images: int = 50, *, seed: int = EVAL_SEED,
                       perceptual: str = "lite-resnet-sup", encoders: list[str] | None = None,
                       options: InversionOptions | None = None, **changes: Any) -> dict:
    """The paper's Table 1 in the lite world: one row per objective on held-out Shapes World images.

        report = evaluate_inversion(RosettaDictionary.load("runs/lite"), images=50)
        report = evaluate_inversion(d, images=8, options=InversionOptions(steps=20, restarts=1), beta=2.0)

    Rows: perceptual only; plus each encoder's Rosetta matches alone; plus all matches.
    Every row uses the same targets (world stream ``seed``), latents, steps and restarts.
    PSNR, SSIM and the offline perceptual distance per row (mean, 95% CI) and the paired
    difference from perceptual-only; LPIPS is null unless its backbone weights are on disk.
    Each row inverts with ``options``
    (:class:`~rosetta_lite.applications.invert.InversionOptions`, default: 100 steps, 2
    restarts, otherwise its defaults) with ``changes`` applied; every model runs on its
    ``device`` (None: the CPU) in its ``precision``. The targets are made, inverted and
    scored ``batch_size`` at a time, so memory does not grow with ``images``; the report
    is the one of a single batch.
    """
    # shorter than invert's defaults: the table inverts every target once per objective
    opts = dataclasses.replace(options or InversionOptions(steps=100, restarts=2), **changes)
    check_eval_images(images, "eval inversion")
    opts = dataclasses.replace(opts, device=str(resolve_device(opts.device or "cpu")))
    gan = zoo.load(dictionary.generator).to(opts.device)
    dictionary.check_generator(gan)
    judge = zoo.load(perceptual).to(opts.device)
    names = list(encoders or dictionary.encoders)
    members = {name: zoo.load(name).to(opts.device) for name in names}
    size = gan.generate(gan.sample_latents(1, 0)).shape[-1]
    world = ShapesWorld(size=size)
    z0 = gan.sample_latents(images * opts.restarts, seed=opts.seed)  # as one inversion of every target draws them
    lp = lpips_model()
    objectives = [("perceptual only", [])] + [(f"+ {n} matches", [n]) for n in names]
    if len(names) > 1:
        objectives.append(("+ all matches", names))
    per_batch = {label: [] for label, _ in objectives}
    stopped: dict[str, list[int]] = {label: [] for label, _ in objectives}
    batches = row_batches(images, opts.batch_size)
    bar = progress_bar(total=images * len(objectives), enabled=opts.progress, desc="Table 1", unit="inversion")
    for rows in batches:
        targets = world.batch(rows.stop - rows.start, seed=seed, start=rows.start).images.to(opts.device)
        for label, chosen in objectives:
            result = invert(gan, targets, dictionary, encoders=[members[n] for n in chosen], perceptual=judge,
                            options=opts, z0=z0[rows.start * opts.restarts:rows.stop * opts.restarts])
            scores = {"psnr": psnr(result.images, targets), "ssim": ssim(result.images, targets),
                      "perceptual": perceptual_distance(judge, result.images, targets)}
            if lp is not None:
                with torch.no_grad():
                    scores["lpips"] = lp.to(opts.device)(result.images * 2 - 1, targets * 2 - 1).flatten()
            per_batch[label].append({key: value.detach().cpu() for key, value in scores.items()})
            if result.stopped_at is not None:
                stopped[label].append(result.stopped_at)
            bar.update(rows.stop - rows.start)
    bar.close()
    per_image = {label: {key: torch.cat([part[key] for part in parts]) for key in parts[0]}
                 for label, parts in per_batch.items()}
    rows = []
    for label, chosen in objectives:
        scores = per_image[label]
        row = {"objective": label, "encoders": chosen}
        for key in ("psnr", "ssim", "perceptual", "lpips"):
            row[key] = rounded(mean_ci(scores[key])) if key in scores else None
        if label != "perceptual only":
            base = per_image["perceptual only"]
            row["minus_perceptual_only"] = {key: rounded(paired_difference(scores[key], base[key]))
                                            for key in scores}
        if stopped[label]:
            row["stopped_at_step"] = min(stopped[label])
        rows.append(row)
    return {"eval": "inversion", "generator": gan.name, "device": opts.device, "precision": opts.precision, "images": images, "world_seed": seed, "steps": opts.steps,
            "restarts": opts.restarts, "lr": opts.lr, "alpha": opts.alpha, "beta": opts.beta,
            "perceptual_weight": opts.perceptual_weight,
            "perceptual_distance": f"{perceptual} {'+'.join(PERCEPTUAL_LAYERS)} channel-normalised feature distance",
            "lpips": None if lp is None else "alex",
            "lpips_note": None if lp is not None else "LPIPS backbone weights not on disk: LPIPS not computed",
            "act_term": "mean cosine of mining-standardised maps over Rosetta (G, D) best-buddy pairs",
            "rows": rows}
