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
from rosetta_lite.device import resolve_device
from rosetta_lite.dictionary.rosetta import RosettaDictionary
from rosetta_lite.evaluation.metrics import check_eval_images, mean_ci, paired_difference, psnr, rounded, ssim
from rosetta_lite.world import EVAL_SEED, ShapesWorld


def evaluate_inversion(dictionary: RosettaDictionary, images: int = 50, *, seed: int = EVAL_SEED,
                       perceptual: str = "lite-resnet-sup", encoders: list[str] | None = None, device: str = "cpu",
                       options: InversionOptions | None = None, **changes: Any) -> dict:
    """The paper's Table 1 in the lite world: one row per objective on held-out Shapes World images.

        report = evaluate_inversion(RosettaDictionary.load("runs/lite"), images=50)
        report = evaluate_inversion(d, images=8, options=InversionOptions(steps=20, restarts=1), beta=2.0)

    Rows: perceptual only; plus each encoder's Rosetta matches alone; plus all matches.
    Every row uses the same targets (world stream ``seed``), latents, steps and restarts.
    PSNR, SSIM and the offline perceptual distance per row (mean, 95% CI) and the paired
    difference from perceptual-only; LPIPS is null unless its backbone weights are on disk.
    Every model runs on ``device``. Each row inverts with ``options``
    (:class:`~rosetta_lite.applications.invert.InversionOptions`, default: 100 steps, 2
    restarts, otherwise its defaults) with ``changes`` applied.
    """
    # shorter than invert's defaults: the table inverts every target once per objective
    opts = dataclasses.replace(options or InversionOptions(steps=100, restarts=2), **changes)
    check_eval_images(images, "eval inversion")
    device = resolve_device(device)
    gan = zoo.load(dictionary.generator).to(device)
    dictionary.check_generator(gan)
    judge = zoo.load(perceptual).to(device)
    names = list(encoders or dictionary.encoders)
    members = {name: zoo.load(name).to(device) for name in names}
    size = gan.generate(gan.sample_latents(1, 0)).shape[-1]
    targets = ShapesWorld(size=size).batch(images, seed=seed).images.to(device)
    lp = lpips_model()
    objectives = [("perceptual only", [])] + [(f"+ {n} matches", [n]) for n in names]
    if len(names) > 1:
        objectives.append(("+ all matches", names))
    rows, per_image = [], {}
    for label, chosen in objectives:
        result = invert(gan, targets, dictionary, encoders=[members[n] for n in chosen], perceptual=judge,
                        options=opts)
        scores = {"psnr": psnr(result.images, targets), "ssim": ssim(result.images, targets),
                  "perceptual": perceptual_distance(judge, result.images, targets)}
        if lp is not None:
            with torch.no_grad():
                scores["lpips"] = lp(result.images * 2 - 1, targets * 2 - 1).flatten()
        per_image[label] = scores
        row = {"objective": label, "encoders": chosen}
        for key in ("psnr", "ssim", "perceptual", "lpips"):
            row[key] = rounded(mean_ci(scores[key])) if key in scores else None
        if label != "perceptual only":
            base = per_image["perceptual only"]
            row["minus_perceptual_only"] = {key: rounded(paired_difference(scores[key], base[key]))
                                            for key in scores}
        if result.stopped_at is not None:
            row["stopped_at_step"] = result.stopped_at
        rows.append(row)
    return {"eval": "inversion", "generator": gan.name, "images": images, "world_seed": seed, "steps": opts.steps,
            "restarts": opts.restarts, "lr": opts.lr, "alpha": opts.alpha, "beta": opts.beta,
            "perceptual_weight": opts.perceptual_weight,
            "perceptual_distance": f"{perceptual} {'+'.join(PERCEPTUAL_LAYERS)} channel-normalised feature distance",
            "lpips": None if lp is None else "alex",
            "lpips_note": None if lp is not None else "LPIPS backbone weights not on disk: LPIPS not computed",
            "act_term": "mean cosine of mining-standardised maps over Rosetta (G, D) best-buddy pairs",
            "rows": rows}
