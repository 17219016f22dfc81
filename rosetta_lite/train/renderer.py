"""lite-renderer: a decoder trained by reconstruction to draw a world scene from its description.

    from rosetta_lite.train.renderer import train_lite_renderer
    result = train_lite_renderer("runs/zoo", steps=8000, seed=1000)

Every step renders a fresh world batch from its own scene descriptions and is told the
truth twice: the image (L1, object pixels weighted ``object_weight`` times, so that the
objects' few pixels are not drowned by the sky and ground) and each present slot's whole
shape (binary cross-entropy of the slot's mask logits against the world's slot mask).
The second term is what teaches shapes: in a pixel loss alone a disc and a square differ
in a few corner pixels, and decoders trained that way draw every object as a disc.

The renderer's reader (images -> descriptions, for inversion to start from) learns on the
same batches, by cross-entropy of every code and L1 of every uniform draw, its slots
matched to the world's in the cheapest order; its parameters are disjoint from the
drawing ones, so the two losses are two problems sharing one loop.

How it was chosen: trained without the mask term, decoders of this kind drew every object
as a disc at the right place and size (a trial outside the project, 7,500 steps); with it,
the shapes are told apart by step 1,200 (PSNR 27.8 dB on 16 held-out scenes). Without a
reader, inversion from random latents recovered a renderer's own samples at 18.1 dB on
average (8 samples, a renderer-only run at step 1,000, 150 steps, 3 restarts): the
background always, the objects' places, shapes and colours rarely.

The shipped member (seed 1000, 8,000 steps of 32 scenes, 2,428 s on 2 CPU threads) passes
its gates with room: precision and recall ratios 0.99 and 0.98, class-frequency gap 0.007.
"""

from __future__ import annotations

from itertools import permutations

import torch
import torch.nn.functional as F

from rosetta_lite.train.loop import Recipe, run_recipe, seed_everything
from rosetta_lite.world import ShapesWorld
from rosetta_lite.zoo.renderer_arch import SLOTS, SceneReader, SceneRenderer, latent_layout, reader_targets, scene_codes

_PERMUTATIONS = torch.tensor(list(permutations(range(SLOTS))))  # (SLOTS!, SLOTS): predicted slot of each true one

MEMBER = "lite-renderer"


def renderer_loss(renderer: SceneRenderer, batch, object_weight: float = 5.0,
                  mask_weight: float = 1.0) -> dict[str, torch.Tensor]:
    """The loss of one world batch: weighted L1 of the image plus the slots' mask cross-entropy.

        renderer_loss(SceneRenderer(), ShapesWorld().batch(8))["loss"]
    """
    codes = {k: v.to(batch.images.device) for k, v in scene_codes(batch.scene, renderer.fills).items()}
    images, logits = renderer.render(codes)
    weight = 1 + (object_weight - 1) * batch.masks["object"].to(images.device)[:, None].float()
    pixel = ((images - batch.images).abs() * weight).mean() / weight.mean()
    present = codes["present"][..., None, None].expand_as(logits)
    target = batch.slot_masks.to(images.device).float()
    mask = (F.binary_cross_entropy_with_logits(logits, target, reduction="none") * present).sum() / present.sum()
    mse = ((images.detach() - batch.images) ** 2).mean()
    return {"loss": pixel + mask_weight * mask, "pixel": pixel.detach(), "mask": mask.detach(),
            "psnr": -10 * torch.log10(mse.clamp_min(1e-10))}


def reader_loss(reader: SceneReader, batch, place_weight: float = 10.0, fills: int = 1) -> dict[str, torch.Tensor]:
    """The reader's loss on one world batch: cross-entropy of every code, L1 of every uniform draw.

        reader_loss(SceneReader(), ShapesWorld().batch(8))["loss"]

    Objects that do not overlap can be drawn in any order, so the slots are matched to the
    world's in the order (of the present ones) that costs least. ``fills`` > 1: the slots'
    fills are read too (a textured world's renderer).
    """
    out = reader(batch.images)
    truth = {k: v.to(out.device) for k, v in reader_targets(batch.scene).items()}
    layout = latent_layout(fills)
    scene = F.l1_loss(torch.sigmoid(out[:, layout["horizon"]][:, 0]), truth["horizon"]) * place_weight
    for name in ("sky", "ground", "count"):
        scene = scene + F.cross_entropy(out[:, layout[name]], truth[name])
    cost = sum(_pair_cross_entropy(torch.stack([out[:, p] for p in layout[name]], 1), truth[name])
               for name in ("shape", "colour") + (("fill",) if fills > 1 else ()))
    place = torch.sigmoid(torch.stack([out[:, p] for p in layout["place"]], 1))  # (B, SLOTS, 3)
    cost = cost + place_weight * (place[:, :, None] - truth["place"][:, None]).abs().sum(-1)  # (B, pred, true)
    count = truth["count"] + 1
    present = torch.arange(SLOTS, device=out.device)[None] < count[:, None]  # (B, SLOTS) true slots
    perms = _PERMUTATIONS.to(out.device)
    picked = cost[:, perms, torch.arange(SLOTS, device=out.device)]  # (B, perms, true)
    valid = ((perms[None] < count[:, None, None]) | ~present[:, None]).all(-1)  # present slots map to present
    total = (picked * present[:, None]).sum(-1).masked_fill(~valid, float("inf")).min(1).values / count
    return {"loss": scene + total.mean(), "reader_scene": scene.detach(), "reader_slots": total.mean().detach()}


def _pair_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(B, pred, true) cross-entropy of each predicted slot's logits (B, SLOTS, C) against each true label (B, SLOTS)."""
    logp = logits.log_softmax(-1)  # (B, pred, C)
    index = labels[:, None, :].expand(-1, logits.shape[1], -1)  # (B, pred, true)
    return -logp.gather(-1, index)


def make_recipe(seed: int = 1000, batch_size: int = 32, lr: float = 2e-3, precision: str = "fp32",
                world: dict | None = None) -> Recipe:
    seed_everything(seed)
    world = dict(world or {})
    renderer = SceneRenderer(fills=len(ShapesWorld(**world).config.fills))
    reading = list(renderer.reader.parameters())  # a list: a resumed optimiser needs the same order
    drawing = [p for name, p in renderer.named_parameters() if not name.startswith("reader.")]
    opt = torch.optim.Adam([{"params": drawing}, {"params": reading, "lr_scale": 0.5}], lr=lr)

    def step(batch, step_index, gen):
        drawn, read = renderer_loss(renderer, batch), reader_loss(renderer.reader, batch, fills=renderer.fills)
        return {**drawn, **read, "loss": drawn["loss"] + read["loss"]}  # disjoint parameters: two problems

    return Recipe(member=MEMBER, modules={"renderer": renderer}, optimizer=opt, step_fn=step,
                  export=lambda: renderer, batch_size=batch_size, lr=lr, warmup=50, grad_clip=None, precision=precision,
                  world=world, config={"arch": f"SceneRenderer(fills={renderer.fills})",
                          "loss": "L1 (object pixels x5) + slot-mask BCE; reader: code CE + 10 x L1 of draws"})


def train_lite_renderer(out_dir, steps: int = 8000, seed: int = 1000, progress: bool = True,
                        checkpoint_every: int = 200, resume: bool = True, batch_size: int = 32,
                        stop_after: int | None = None, device: str = "cpu", precision: str = "fp32",
                        world: dict | None = None) -> dict:
    """Train ``lite-renderer``; writes ``<out_dir>/lite-renderer.safetensors``.

    ``world``: the scenes it learns to draw (default the plain world; the textured world's
    renderer takes each object's fill in its latent too).
    """
    recipe = make_recipe(seed=seed, batch_size=batch_size, precision=precision, world=world)
    return run_recipe(recipe, out_dir, steps=steps, seed=seed, progress=progress,
                      checkpoint_every=checkpoint_every, resume=resume, stop_after=stop_after,
                      device=device)
