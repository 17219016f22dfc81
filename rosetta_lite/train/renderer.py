"""lite-renderer: a decoder trained by reconstruction to draw a world scene from its description.

    from rosetta_lite.train.recipes import train
    result = train("lite-renderer", "runs/zoo", steps=8000, seed=1000)

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

Its measurements (gates, a second seed): the book's appendix (``book/zoo_training.md``).
"""

from __future__ import annotations

from itertools import permutations

import torch
import torch.nn.functional as F

from rosetta_lite.train.loop import Recipe, RecipeOptions, seed_everything
from rosetta_lite.world import ShapesWorld, WorldBatch
from rosetta_lite.zoo.renderer_arch import SLOTS, SceneReader, SceneRenderer, latent_layout, reader_targets, scene_codes

_PERMUTATIONS = torch.tensor(list(permutations(range(SLOTS))))  # (SLOTS!, SLOTS): predicted slot of each true one

MEMBER = "lite-renderer"
OPTIONS = RecipeOptions(batch_size=32, lr=2e-3)


def renderer_loss(renderer: SceneRenderer, batch: WorldBatch, object_weight: float = 5.0,
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


def reader_loss(reader: SceneReader, batch: WorldBatch, place_weight: float = 10.0,
                fills: int = 1) -> dict[str, torch.Tensor]:
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


def make_recipe(options: RecipeOptions = OPTIONS, seed: int = 1000) -> Recipe:
    """``lite-renderer``'s recipe: the renderer and its reader, trained together on every world batch.

        recipe = make_recipe(RecipeOptions(batch_size=32, world=world_settings("textured")), seed=1000)
    """
    seed_everything(seed)
    world = dict(options.world)
    renderer = SceneRenderer(fills=len(ShapesWorld(**world).config.fills))
    reading = list(renderer.reader.parameters())  # a list: a resumed optimiser needs the same order
    drawing = [p for name, p in renderer.named_parameters() if not name.startswith("reader.")]
    opt = torch.optim.Adam([{"params": drawing}, {"params": reading, "lr_scale": 0.5}], lr=options.lr)

    def step(batch, step_index, gen):
        drawn, read = renderer_loss(renderer, batch), reader_loss(renderer.reader, batch, fills=renderer.fills)
        return {**drawn, **read, "loss": drawn["loss"] + read["loss"]}  # disjoint parameters: two problems

    return Recipe(member=MEMBER, modules={"renderer": renderer}, optimizer=opt, step_fn=step,
                  export=lambda: renderer, batch_size=options.batch_size, lr=options.lr, warmup=50, grad_clip=None,
                  precision=options.precision, world=world, config={"arch": f"SceneRenderer(fills={renderer.fills})",
                          "loss": "L1 (object pixels x5) + slot-mask BCE; reader: code CE + 10 x L1 of draws"})

