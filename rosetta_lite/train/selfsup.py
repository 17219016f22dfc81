"""lite-resnet-dino and lite-vit-dino: self-supervised encoders, no labels used.

    from rosetta_lite.train.recipes import train
    train("lite-resnet-dino", "runs/zoo", steps=600)                  # SimCLR, the recipe
    train("lite-vit-dino", "runs/zoo", steps=400, method="dino")      # DINO

Two methods over the same views (``Views``): two augmented views of each scene (random
resized crops, flips, strong colour changes, no rotation, optionally posterized) go
through the encoder and a head.
- ``simclr_recipe``: the NT-Xent contrastive loss (Chen et al. 2020) between the two views.
  Both members train with it.
- ``dino_recipe``: self-distillation without labels (Caron et al. 2021): a student matches
  the sharpened, centred softmax of an EMA teacher on the other view.
Only the encoder is the member (the head is dropped); the member name stays
``lite-*-dino`` whichever method trained it, and the method is recorded in
``<member>.json`` and in the safetensors metadata. Why SimCLR, the views and the
hyperparameters, with their measurements: the book's appendix (``book/zoo_training.md``).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from rosetta_lite.train.augment import augment
from rosetta_lite.train.loop import Recipe, RecipeOptions, seed_everything
from rosetta_lite.world import ShapesWorld
from rosetta_lite.zoo.lite_arch import build_lite_resnet, build_lite_vit, normalize

METHODS = ("dino", "simclr")
PAIRS = ("crops", "rearranged")
#: the layout stream of "rearranged" pairs is the training seed plus this (>= 1000, never 7)
LAYOUT_SEED_OFFSET = 500_000


class DINOHead(nn.Module):
    """MLP -> L2-normalised bottleneck -> weight-normalised prototypes (DINO's head)."""

    def __init__(self, dim: int, hidden: int = 256, bottleneck: int = 64, out: int = 512) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, hidden),
                                 nn.GELU(), nn.Linear(hidden, bottleneck))
        self.last = nn.utils.parametrizations.weight_norm(nn.Linear(bottleneck, out, bias=False))
        self.last.parametrizations.weight.original0.data.fill_(1.0)
        self.last.parametrizations.weight.original0.requires_grad = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last(F.normalize(self.mlp(x), dim=-1))


class ProjectionHead(nn.Module):
    """SimCLR's projection: Linear-BN-ReLU-Linear."""

    def __init__(self, dim: int, hidden: int = 256, out: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                                 nn.Linear(hidden, out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """SimCLR's normalised-temperature cross-entropy over 2B views (in fp32 under any autocast)."""
    # bf16 keeps 3 significant digits: at temperature 0.1 the logits' rounding error would be
    # as large as the gaps between the hardest negatives
    with torch.autocast(z1.device.type, enabled=False):
        z = F.normalize(torch.cat([z1, z2]).float(), dim=-1)
        sim = z @ z.T / temperature
        n = z1.shape[0]
        sim.fill_diagonal_(float("-inf"))
        target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
        return F.cross_entropy(sim, target)


@dataclass(frozen=True)
class Views:
    """How the two views of a scene are made.

        Views(crop_scale=(0.5, 1.0), posterize=2, pairs="rearranged")

    ``posterize``: bits per channel the views keep (0: all); at 2, colour, jittered before the
    rounding, becomes a less reliable cue for matching two views, and the shapes' outlines,
    drawn in flat colours, survive. ``pairs``: "crops" makes both
    views from one render of each scene; "rearranged" makes the second from
    ``ShapesWorld.rearranged`` (the same objects in a new layout and background), so that
    matching the views needs the objects, not where they lie.
    """

    crop_scale: tuple[float, float] = (0.3, 1.0)
    colour: float = 0.8
    grey: float = 0.2
    posterize: int = 0
    pairs: str = "crops"

    def __post_init__(self) -> None:
        if self.pairs not in PAIRS:
            raise ValueError(f"pairs must be one of {PAIRS}, got {self.pairs!r}")

    def describe(self) -> str:
        """The augmentation in words, as recorded in the recipe's config.

            Views(posterize=2).describe()   # "crop 0.3-1.0, flip, colour 0.8, grey 0.2, posterize 2 bits"
        """
        return (f"crop {self.crop_scale[0]}-{self.crop_scale[1]}, flip, colour {self.colour}, grey {self.grey}"
                + (f", posterize {self.posterize} bits" if self.posterize else ""))


@dataclass(frozen=True)
class SelfSupOptions(RecipeOptions):
    """A self-supervised recipe's options: its method, views and both methods' hyperparameters.

        SelfSupOptions(method="dino", views=Views(posterize=2), batch_size=64)

    ``temperature`` is SimCLR's; ``momentum``, ``teacher_temp`` and ``student_temp`` are DINO's.
    """

    method: str = "simclr"
    views: Views = Views()
    weight_decay: float = 0.05
    temperature: float = 0.1
    momentum: float = 0.99
    teacher_temp: float = 0.04
    student_temp: float = 0.1

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")


#: the members' recipes (``train("lite-resnet-dino")``); their measurements: book/zoo_training.md
RESNET_DINO = SelfSupOptions(batch_size=128, lr=4e-3, precision="bf16", views=Views(posterize=2))
VIT_DINO = SelfSupOptions(batch_size=64, lr=1e-3, views=Views(posterize=2))


def make_views(member: str, options: SelfSupOptions, seed: int) -> Callable:
    """``views(batch, gen, step) -> (2B, 3, H, W)``: both normalised views of every scene of a step's batch.

        views = make_views("lite-vit-dino", VIT_DINO, seed=1000); x = views(batch, gen, 0)
    """
    spec = options.views
    world = ShapesWorld(size=32, **options.world)
    kw = dict(scale=tuple(spec.crop_scale), colour=spec.colour, grey=spec.grey, posterize=spec.posterize)

    def views(batch, gen: torch.Generator, step: int) -> torch.Tensor:
        second = batch.images
        if spec.pairs == "rearranged":
            # the loop's batch of this step is samples step * batch_size onwards of ``seed``
            second = world.rearranged(len(batch), seed, step * options.batch_size, seed + LAYOUT_SEED_OFFSET)
            second = second.images.to(batch.images.device)
        a = augment(batch.images, gen, **kw)
        b = augment(second, gen, **kw)
        return normalize(torch.cat([a, b]), member)

    return views


def _config(options: SelfSupOptions) -> dict:
    return {"method": options.method, "batch_size": options.batch_size, "lr": options.lr,
            "pairs": options.views.pairs, "augment": options.views.describe()}


def simclr_recipe(member: str, encoder: nn.Module, dim: int, options: SelfSupOptions, seed: int) -> Recipe:
    """SimCLR for any encoder that maps normalised images to (B, dim): NT-Xent between the two views.

        recipe = simclr_recipe("lite-vit-dino", encoder, encoder.num_features, VIT_DINO, seed=1000)
    """
    views = make_views(member, options, seed)
    head = ProjectionHead(dim)
    params = list(encoder.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=options.lr, weight_decay=options.weight_decay)

    def step(batch, step_index, gen):
        z = head(encoder(views(batch, gen, step_index)))
        n = len(batch)
        return {"loss": nt_xent(z[:n], z[n:], options.temperature)}

    return Recipe(member=member, modules={"encoder": encoder, "head": head}, optimizer=opt,
                  step_fn=step, export=lambda: encoder, batch_size=options.batch_size, lr=options.lr,
                  warmup=20, config={**_config(options), "temperature": options.temperature},
                  precision=options.precision, world=dict(options.world))


def dino_recipe(member: str, encoder: nn.Module, dim: int, options: SelfSupOptions, seed: int) -> Recipe:
    """DINO for any encoder that maps normalised images to (B, dim): a student matches an EMA teacher.

        recipe = dino_recipe("lite-vit-dino", encoder, encoder.num_features, VIT_DINO, seed=1000)

    The teacher's encoder is the member, as in DINO.
    """
    views = make_views(member, options, seed)
    head = DINOHead(dim)
    student = nn.Sequential(encoder, head)
    teacher = copy.deepcopy(student)
    for p in teacher.parameters():
        p.requires_grad_(False)
    centre = torch.zeros(1, head.last.out_features)
    opt = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=options.lr,
                            weight_decay=options.weight_decay)

    def step(batch, step_index, gen):
        x = views(batch, gen, step_index)
        n = len(batch)
        if centre.device != x.device:
            centre.data = centre.data.to(x.device)
        # the heads' outputs in fp32 under any autocast: the teacher's temperature of 0.04 would
        # magnify bf16's rounding 25 times
        s = student(x).float() / options.student_temp
        with torch.no_grad():
            teacher.train()  # BatchNorm uses batch statistics, as in the student
            t_logits = teacher(x).float()
            t = F.softmax((t_logits - centre) / options.teacher_temp, dim=-1)
            centre.mul_(0.9).add_(0.1 * t_logits.mean(0, keepdim=True))
        ls = F.log_softmax(s, dim=-1)
        loss = -0.5 * ((t[:n] * ls[n:]).sum(-1).mean() + (t[n:] * ls[:n]).sum(-1).mean())
        entropy = -(t * t.clamp_min(1e-12).log()).sum(-1).mean()
        return {"loss": loss, "teacher_entropy": entropy}

    def ema(step_index, steps):
        m = 1 - (1 - options.momentum) * (math.cos(math.pi * step_index / steps) + 1) / 2
        with torch.no_grad():
            for ps, pt in zip(student.parameters(), teacher.parameters()):
                pt.mul_(m).add_(ps.detach(), alpha=1 - m)
            for bs, bt in zip(student.buffers(), teacher.buffers()):
                bt.copy_(bs)

    config = {**_config(options), "momentum": options.momentum, "teacher_temp": options.teacher_temp,
              "student_temp": options.student_temp, "prototypes": head.last.out_features}
    return Recipe(member=member, modules={"student": student, "teacher": teacher}, optimizer=opt,
                  step_fn=step, export=lambda: teacher[0], batch_size=options.batch_size, lr=options.lr, warmup=20,
                  after_step=ema, extra_state=lambda: {"centre": centre.clone()},
                  load_extra_state=lambda d: centre.copy_(d["centre"]) if "centre" in d else None,
                  config=config, precision=options.precision, world=dict(options.world))


def make_recipe(member: str, encoder: nn.Module, dim: int, options: SelfSupOptions = VIT_DINO,
                seed: int = 1000) -> Recipe:
    """The self-supervised recipe of ``options.method`` for any encoder that maps normalised images to (B, dim).

        recipe = make_recipe("lite-vit-dino", build_lite_vit(stem="patch"), VIT_DIM, VIT_DINO)
        run_recipe(recipe, "runs/patch", steps=500, seed=1000)
    """
    recipe = simclr_recipe if options.method == "simclr" else dino_recipe
    return recipe(member, encoder, dim, options, seed)


def lite_resnet_dino(options: SelfSupOptions, seed: int) -> Recipe:
    """``lite-resnet-dino``'s recipe: the head-less lite ResNet (``train("lite-resnet-dino")`` runs it).

        recipe = lite_resnet_dino(RESNET_DINO, seed=1000)
    """
    seed_everything(seed)
    encoder = build_lite_resnet(num_classes=0)
    return make_recipe("lite-resnet-dino", encoder, encoder.num_features, options, seed)


def lite_vit_dino(options: SelfSupOptions, seed: int) -> Recipe:
    """``lite-vit-dino``'s recipe: the lite ViT with a convolutional stem, class-token output.

        recipe = lite_vit_dino(VIT_DINO, seed=1000)   # train("lite-vit-dino") runs it
    """
    seed_everything(seed)
    encoder = build_lite_vit(stem="conv")
    return make_recipe("lite-vit-dino", encoder, encoder.num_features, options, seed)
