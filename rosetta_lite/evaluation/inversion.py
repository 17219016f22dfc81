"""The paper's Table 1 in the lite world: inversion with and without the Rosetta matches.

    report = evaluate_inversion(RosettaDictionary.load("runs/lite"), images=50)
    report = evaluate_inversion(d, images=32, targets="sketch", warm_start=False, per_encoder=False)

The paper inverts ImageNet photographs, which its generator cannot draw exactly; the lite
renderer draws its own world almost exactly and its reader starts next to the answer. The
target kinds (:data:`TARGET_KINDS`) and ``warm_start=False`` put the table in the paper's
situation: targets outside the generator's range, optimisation from a random latent.
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
    prepare_target,
)
from rosetta_lite.applications.optimise import row_batches
from rosetta_lite.device import resolve_device
from rosetta_lite.dictionary.rosetta import RosettaDictionary
from rosetta_lite.dictionary.runs import mined_generator, mined_members
from rosetta_lite.evaluation.metrics import check_eval_images, mean_ci, paired_difference, psnr, rounded, ssim
from rosetta_lite.progress import progress_bar
from rosetta_lite.world import EVAL_SEED, ShapesWorld, WorldBatch, world_settings
from rosetta_lite.zoo.member import Member, ZooError

#: what ``evaluate_inversion`` inverts: target kind -> what it is
TARGET_KINDS = {
    "scenes": "held-out Shapes World scenes of the plain world",
    "textured": "held-out scenes of the textured world (striped, checked, dotted objects)",
    "sketch": "outlines of held-out plain scenes: object and horizon edges, black on white, from the world's masks",
    "gan": "images drawn by lite-gan (held-out latents), inverted by another generator",
    "photo": "photographs bundled with scikit-image (astronaut, cat, coffee, ...), square crops resized down",
}
#: scikit-image's bundled colour photographs (no download): the ``photo`` targets cycle through them
PHOTOGRAPHS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina")
#: the generator that draws the ``gan`` targets
TARGET_GAN = "lite-gan"


def check_targets(kind: str, generator: str) -> None:
    """Refuse an unknown target kind, or lite-gan's images as targets of lite-gan itself (before models load).

        check_targets("sketch", "lite-renderer")
    """
    if kind not in TARGET_KINDS:
        raise ValueError(f"targets must be one of {list(TARGET_KINDS)}, got {kind!r}")
    if kind == "gan" and generator == TARGET_GAN:
        raise ValueError(f"targets 'gan' are images drawn by {TARGET_GAN}, which this dictionary's generator is: "
                         "they would be inside its range; use scenes, textured or sketch")


def sketch(batch: WorldBatch) -> torch.Tensor:
    """Outline drawings of world scenes, (B, 3, S, S) in [0, 1]: 1 px black edges of objects and horizon on white.

        sketch(ShapesWorld().batch(8, seed=7))

    A pixel is an edge when its right or lower neighbour shows another region (sky,
    ground or another object), read from the batch's ground-truth masks.
    """
    regions = batch.masks["ground"].long()  # sky 0, ground 1, object slot j: 2 + j
    for slot in range(batch.object_masks.shape[1]):
        regions = torch.where(batch.object_masks[:, slot], torch.full_like(regions, 2 + slot), regions)
    edge = torch.zeros_like(regions, dtype=torch.bool)
    edge[:, :, :-1] |= regions[:, :, 1:] != regions[:, :, :-1]
    edge[:, :-1, :] |= regions[:, 1:, :] != regions[:, :-1, :]
    return (~edge).float().unsqueeze(1).expand(-1, 3, -1, -1).contiguous()


def photographs(rows: slice, size: int, seed: int = EVAL_SEED) -> torch.Tensor:
    """Photographs ``rows`` (B, 3, size, size) in [0, 1], from :data:`PHOTOGRAPHS`, the same image i in any batch.

        targets = photographs(slice(0, 4), size=256)

    Image i is photograph ``i % 7``: the first seven are their centre squares, later ones
    squares of 60-100% of the short side at a place drawn from (``seed``, i).
    """
    from skimage import data

    images = []
    for i in range(rows.start, rows.stop):
        photo = torch.from_numpy(getattr(data, PHOTOGRAPHS[i % len(PHOTOGRAPHS)])()[..., :3].copy())
        h, w = photo.shape[:2]
        side, top, left = min(h, w), (h - min(h, w)) // 2, (w - min(h, w)) // 2
        if i >= len(PHOTOGRAPHS):
            draw = torch.rand(3, generator=torch.Generator().manual_seed(seed * 1_000_003 + i))
            side = int(min(h, w) * (0.6 + 0.4 * float(draw[0])))
            top, left = int((h - side) * float(draw[1])), int((w - side) * float(draw[2]))
        crop = photo[top:top + side, left:left + side].permute(2, 0, 1).float().div(255)
        images.append(torch.nn.functional.interpolate(crop[None], size=(size, size), mode="bilinear",
                                                      antialias=True, align_corners=False)[0])
    return torch.stack(images).clamp(0, 1)


class InversionTargets:
    """The targets of one kind for ``images`` images, made a batch at a time.

        targets = InversionTargets("sketch", size=32, seed=EVAL_SEED, images=50); targets.batch(slice(0, 8))

    ``seed`` is the world stream of the scenes (``scenes``, ``textured``, ``sketch``), of
    lite-gan's latents (``gan``) or of the photographs' crops (``photo``); image i is the same
    whatever the batches.
    """

    def __init__(self, kind: str, size: int, seed: int, images: int) -> None:
        check_targets(kind, "")
        self.kind, self.seed = kind, seed
        self.world = ShapesWorld(size=size, **(world_settings("textured") if kind == "textured" else {}))
        self.gan: Member | None = None
        if kind == "gan":
            self.gan = zoo.load(TARGET_GAN)
            self.latents = self.gan.sample_latents(images, seed=seed)

    def batch(self, rows: slice) -> torch.Tensor:
        """Targets ``rows`` (B, 3, S, S) in [0, 1], where the targets' generator is (the CPU for scenes)."""
        if self.gan is not None:
            with torch.no_grad():
                return self.gan.generate(self.latents[rows]).clamp(0, 1)
        if self.kind == "photo":
            return photographs(rows, self.world.config.size, self.seed)
        scenes = self.world.batch(rows.stop - rows.start, seed=self.seed, start=rows.start)
        return sketch(scenes) if self.kind == "sketch" else scenes.images


def _table_models(dictionary: RosettaDictionary, perceptual: str, names: list[str],
                  device: str) -> tuple[Member, Member, dict[str, Member]]:
    """The run's generator, the perceptual judge and the named encoders, on ``device``.

    An untrained zoo's weights are rebuilt offline, with the generator's options; a judge
    whose pretrained weights are out of reach (offline) is the run's own member, as mined.
    """
    gan = mined_generator(dictionary).to(device)
    dictionary.check_generator(gan)
    mined = mined_members(dictionary)
    try:
        judge = zoo.load(perceptual).to(device)
    except ZooError:
        if perceptual not in mined:
            raise
        judge = mined[perceptual].to(device)
    return gan, judge, {name: (mined.get(name) or zoo.load(name)).to(device) for name in names}


def _scores(images: torch.Tensor, wanted: torch.Tensor, judge: Member, lp) -> dict[str, torch.Tensor]:
    """Per image, PSNR, SSIM, the perceptual distance and (when its weights are on disk) LPIPS, on the CPU."""
    scores = {"psnr": psnr(images, wanted), "ssim": ssim(images, wanted),
              "perceptual": perceptual_distance(judge, images, wanted)}
    if lp is not None:
        with torch.no_grad():
            scores["lpips"] = lp.to(images.device)(images * 2 - 1, wanted * 2 - 1).flatten()
    return {key: value.detach().cpu() for key, value in scores.items()}


def _table_rows(objectives: list[tuple[str, list[str]]], per_batch: dict[str, list[dict]],
                stopped: dict[str, list[int]]) -> list[dict]:
    """Table 1's rows: each objective's mean and 95% CI per score, and its paired difference from perceptual only."""
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
    return rows


def evaluate_inversion(dictionary: RosettaDictionary, images: int = 50, *, seed: int = EVAL_SEED,
                       perceptual: str = "lite-resnet-sup", encoders: list[str] | None = None, targets: str = "scenes",
                       per_encoder: bool = True, options: InversionOptions | None = None, **changes: Any) -> dict:
    """The paper's Table 1 in the lite world: one row per objective on held-out targets.

        report = evaluate_inversion(RosettaDictionary.load("runs/lite"), images=50)
        report = evaluate_inversion(d, images=8, options=InversionOptions(steps=20, restarts=1), beta=2.0)

    Rows: perceptual only; plus each encoder's Rosetta matches alone (unless not
    ``per_encoder``); plus all matches. ``targets`` is a kind of :data:`TARGET_KINDS`.
    Every row uses the same targets (stream ``seed``), latents, steps and restarts;
    ``warm_start=False`` (an option) starts every restart from a random latent, not from the
    reader's guess.
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
    check_targets(targets, dictionary.generator)
    opts = dataclasses.replace(opts, device=str(resolve_device(opts.device or "cpu")))
    names = list(encoders or dictionary.encoders)
    gan, judge, members = _table_models(dictionary, perceptual, names, opts.device)
    size = gan.generate(gan.sample_latents(1, 0)).shape[-1]
    source = InversionTargets(targets, size, seed, images)
    z0 = gan.sample_latents(images * opts.restarts, seed=opts.seed)  # as one inversion of every target draws them
    lp = lpips_model()
    objectives = [("perceptual only", [])] + [(f"+ {n} matches", [n]) for n in names if per_encoder] + \
        ([("+ all matches", names)] if len(names) > 1 else [])
    per_batch = {label: [] for label, _ in objectives}
    stopped: dict[str, list[int]] = {label: [] for label, _ in objectives}
    batches = row_batches(images, opts.batch_size)
    bar = progress_bar(total=images * len(objectives), enabled=opts.progress, desc="Table 1", unit="inversion")
    for rows in batches:
        wanted = prepare_target(source.batch(rows), size).to(opts.device)
        for label, chosen in objectives:
            result = invert(gan, wanted, dictionary, encoders=[members[n] for n in chosen], perceptual=judge,
                            options=opts, z0=z0[rows.start * opts.restarts:rows.stop * opts.restarts])
            per_batch[label].append(_scores(result.images, wanted, judge, lp))
            if result.stopped_at is not None:
                stopped[label].append(result.stopped_at)
            bar.update(rows.stop - rows.start)
    bar.close()
    rows = _table_rows(objectives, per_batch, stopped)
    return {"eval": "inversion", "generator": gan.name, "device": opts.device, "precision": opts.precision,
            "images": images, "targets": targets, "targets_are": TARGET_KINDS[targets], "target_seed": seed,
            "warm_start": opts.warm_start, "steps": opts.steps, "restarts": opts.restarts, "lr": opts.lr,
            "alpha": opts.alpha, "beta": opts.beta, "perceptual_weight": opts.perceptual_weight,
            "perceptual_distance": f"{perceptual} {'+'.join(PERCEPTUAL_LAYERS)} channel-normalised feature distance",
            "lpips": None if lp is None else "alex",
            "lpips_note": None if lp is not None else "LPIPS backbone weights not on disk: LPIPS not computed",
            "act_term": "mean cosine of mining-standardised maps over Rosetta (G, D) best-buddy pairs",
            "rows": rows}


#: Table 1 outside the generator's range: target kinds and starts, and the optimisation's budget
OUTSIDE_KINDS = ("scenes", "textured", "sketch", "gan", "photo")
OUTSIDE_BUDGET = InversionOptions(steps=25, restarts=1, progress=False)


def evaluate_outside(dictionary: RosettaDictionary, images: int = 32, kinds: tuple[str, ...] = OUTSIDE_KINDS,
                     options: InversionOptions = OUTSIDE_BUDGET) -> dict:
    """Table 1 per kind of target, from the reader's guess and from random latents: perceptual only vs all matches.

        report = evaluate_outside(RosettaDictionary.load("runs/lite"), images=32)

    The paper inverts photographs that its generator cannot draw, from no guess; the lite
    chapters invert world scenes from the renderer's reader. Each row here is one
    :func:`evaluate_inversion` with ``per_encoder=False`` (two objectives, paired on the same
    targets) on the kinds of :data:`TARGET_KINDS` (``gan`` is skipped when the dictionary's
    generator draws those images itself).
    """
    rows = []
    for kind in kinds:
        if kind == "gan" and dictionary.generator == TARGET_GAN:
            continue
        for warm in (True, False):
            report = evaluate_inversion(dictionary, images, targets=kind, per_encoder=False,
                                        options=dataclasses.replace(options, warm_start=warm))
            rows.append({"targets": kind, "warm_start": warm, "report": report})
    return {"images": images, "steps": options.steps, "restarts": options.restarts, "rows": rows}
