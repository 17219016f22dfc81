"""lite-resnet-dino and lite-vit-dino: self-supervised encoders, no labels used.

    from rosetta_lite.train.selfsup import train_lite_resnet_dino, train_lite_vit_dino
    train_lite_resnet_dino("runs/zoo", steps=600, seed=1000)                  # SimCLR
    train_lite_vit_dino("runs/zoo", steps=400, seed=1000, method="dino")      # DINO

Two methods share one recipe shape: two augmented views of each scene (random resized
crops, flips, strong colour changes, no rotation) go through the encoder and a head.
- ``dino``: self-distillation without labels (Caron et al. 2021): a student matches the
  sharpened, centred softmax of an EMA teacher on the other view.
- ``simclr``: the NT-Xent contrastive loss (Chen et al. 2020) between the two views.
  The default: with 3,000 steps of 128 scenes (on a GPU) the lite ResNet's linear-probe
  shape accuracy was 0.69 with SimCLR against 0.38 with DINO, and the lite ViT's 0.35
  against 0.27; narrower crops (area 0.5-1 or 0.7-1 instead of 0.3-1) did not help.
``lite-resnet-dino``'s recipe trains in bf16 (``Recipe.precision``): 3,500 steps in the
time 1,500 fp32 steps took. Its views are posterized to 2 bits per channel: colour, jittered
before the rounding, becomes a less reliable cue for matching two views of a scene, and
the shapes' outlines, drawn in flat colours, survive. Only the encoder is the member
(the head is dropped); the member name stays ``lite-*-dino`` whichever method trained it,
and the method is recorded in ``<member>.json`` and in the safetensors metadata.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from rosetta_lite.train.augment import augment
from rosetta_lite.train.loop import Recipe, run_recipe, seed_everything
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


def make_recipe(member: str, encoder: nn.Module, dim: int, method: str = "dino", seed: int = 1000,
                batch_size: int = 128, lr: float = 2e-3, weight_decay: float = 0.05,
                steps: int = 400, momentum: float = 0.99, teacher_temp: float = 0.04,
                student_temp: float = 0.1, temperature: float = 0.2,
                crop_scale: tuple[float, float] = (0.3, 1.0), precision: str = "fp32",
                posterize: int = 0, pairs: str = "crops", world: dict | None = None) -> Recipe:
    """A self-supervised recipe for any encoder that maps normalised images to (B, dim).

    ``pairs``: "crops" makes both views from one render of each scene; "rearranged" makes
    the second from ``ShapesWorld.rearranged`` (the same objects in a new layout and
    background), so that matching the views needs the objects, not where they lie.
    ``world``: ``ShapesWorld`` settings of the training scenes (default the plain world).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if pairs not in PAIRS:
        raise ValueError(f"pairs must be one of {PAIRS}, got {pairs!r}")
    settings = dict(world or {})
    world = ShapesWorld(size=32, **settings)

    def views(batch, gen, step_index):
        kw = dict(scale=tuple(crop_scale), colour=0.8, grey=0.2, posterize=posterize)
        second = batch.images
        if pairs == "rearranged":
            # the loop's batch of this step is samples step * batch_size onwards of ``seed``
            second = world.rearranged(len(batch), seed, step_index * batch_size, seed + LAYOUT_SEED_OFFSET)
            second = second.images.to(batch.images.device)
        a = augment(batch.images, gen, **kw)
        b = augment(second, gen, **kw)
        return normalize(torch.cat([a, b]), member)

    config = {"method": method, "batch_size": batch_size, "lr": lr,
              "pairs": pairs,
              "augment": f"crop {crop_scale[0]}-{crop_scale[1]}, flip, colour 0.8, grey 0.2"
                         + (f", posterize {posterize} bits" if posterize else "")}
    if method == "simclr":
        head = ProjectionHead(dim)
        params = list(encoder.parameters()) + list(head.parameters())
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)

        def step(batch, step_index, gen):
            z = head(encoder(views(batch, gen, step_index)))
            n = len(batch)
            return {"loss": nt_xent(z[:n], z[n:], temperature)}

        config["temperature"] = temperature
        return Recipe(member=member, modules={"encoder": encoder, "head": head}, optimizer=opt,
                      step_fn=step, export=lambda: encoder, batch_size=batch_size, lr=lr,
                      warmup=20, config=config, precision=precision, world=settings)

    head = DINOHead(dim)
    student = nn.Sequential(encoder, head)
    teacher = copy.deepcopy(student)
    for p in teacher.parameters():
        p.requires_grad_(False)
    centre = torch.zeros(1, head.last.out_features)
    opt = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=lr,
                            weight_decay=weight_decay)

    def step(batch, step_index, gen):
        x = views(batch, gen, step_index)
        n = len(batch)
        if centre.device != x.device:
            centre.data = centre.data.to(x.device)
        # the heads' outputs in fp32 under any autocast: the teacher's temperature of 0.04 would
        # magnify bf16's rounding 25 times
        s = student(x).float() / student_temp
        with torch.no_grad():
            teacher.train()  # BatchNorm uses batch statistics, as in the student
            t_logits = teacher(x).float()
            t = F.softmax((t_logits - centre) / teacher_temp, dim=-1)
            centre.mul_(0.9).add_(0.1 * t_logits.mean(0, keepdim=True))
        ls = F.log_softmax(s, dim=-1)
        loss = -0.5 * ((t[:n] * ls[n:]).sum(-1).mean() + (t[n:] * ls[:n]).sum(-1).mean())
        entropy = -(t * t.clamp_min(1e-12).log()).sum(-1).mean()
        return {"loss": loss, "teacher_entropy": entropy}

    def ema(step_index):
        m = 1 - (1 - momentum) * (math.cos(math.pi * step_index / steps) + 1) / 2
        with torch.no_grad():
            for ps, pt in zip(student.parameters(), teacher.parameters()):
                pt.mul_(m).add_(ps.detach(), alpha=1 - m)
            for bs, bt in zip(student.buffers(), teacher.buffers()):
                bt.copy_(bs)

    config.update(momentum=momentum, teacher_temp=teacher_temp, student_temp=student_temp,
                  prototypes=head.last.out_features)
    # the teacher's encoder is the member, as in DINO
    return Recipe(member=member, modules={"student": student, "teacher": teacher}, optimizer=opt,
                  step_fn=step, export=lambda: teacher[0], batch_size=batch_size, lr=lr, warmup=20,
                  after_step=ema, extra_state=lambda: {"centre": centre.clone()},
                  load_extra_state=lambda d: centre.copy_(d["centre"]) if "centre" in d else None,
                  config=config, precision=precision, world=settings)


def train_lite_resnet_dino(out_dir, steps: int = 600, seed: int = 1000, progress: bool = True,
                           checkpoint_every: int = 50, resume: bool = True, method: str = "simclr",
                           batch_size: int = 64, stop_after: int | None = None, device: str = "cpu",
                           temperature: float = 0.1, precision: str = "bf16", posterize: int = 2,
                           world: dict | None = None) -> dict:
    """Train ``lite-resnet-dino`` (head-less lite ResNet); writes ``lite-resnet-dino.safetensors``.

    SimCLR's temperature is 0.1: at 600 steps of 128 scenes the linear probe read 0.50,
    against 0.45 at 0.2 and 0.44 at 0.05. Its learning rate is 4e-3: 0.59 at 600 steps,
    against 0.50 at 2e-3 (weight decay 1e-4 instead of 0.05: 0.50). It trains in bf16
    where the CPU has it: 2.2 times as many steps in the same time (``bench training``),
    and steps are what help this member (probe 0.698 at 1,500 fp32 steps, 0.78 to 0.79 at
    3,500 bf16 steps, 0.81 at 6,000). ``posterize=2`` rounds every view to four levels
    per channel: probe 0.69 at 600 steps (off: 0.57; 3 bits 0.65, 4 bits 0.61, 1 bit
    0.62) and 0.82 to 0.83 at 3,500 (0.83 at 6,000).
    """
    seed_everything(seed)
    encoder = build_lite_resnet(num_classes=0)
    recipe = make_recipe("lite-resnet-dino", encoder, encoder.num_features, method=method, seed=seed,
                         batch_size=batch_size, lr=4e-3, steps=steps, temperature=temperature,
                         precision=precision, posterize=posterize, world=world)
    return run_recipe(recipe, out_dir, steps=steps, seed=seed, progress=progress,
                      checkpoint_every=checkpoint_every, resume=resume, stop_after=stop_after,
                      device=device)


def train_lite_vit_dino(out_dir, steps: int = 5000, seed: int = 1000, progress: bool = True,
                        checkpoint_every: int = 250, resume: bool = True, method: str = "simclr",
                        batch_size: int = 64, stop_after: int | None = None, device: str = "cpu",
                        precision: str = "fp32", temperature: float = 0.1, posterize: int = 2,
                        pairs: str = "crops", world: dict | None = None) -> dict:
    """Train ``lite-vit-dino`` (lite ViT with a convolutional stem, class-token output).

        train_lite_vit_dino("runs/zoo", steps=5000, seed=1000)   # writes lite-vit-dino.safetensors

    SimCLR at temperature 0.1 on views posterized to 2 bits, as the ResNet's recipe. The
    convolutional stem (``build_lite_vit(stem="conv")``) is what lets this ViT learn shapes
    at all at this size: with the 4 px patch projection of ViT-B/16 the probe stayed at the
    untrained ViT's 0.24 after 400 SimCLR steps, and supervised training reached 0.47 at
    1,000 steps against 0.83 with the stem. The recipe needs steps: the one-object probe
    read 0.45 at 1,200, 0.73 at 3,000 and 0.8695 at 5,000 (all scenes 0.6765; 58 minutes
    on two threads, about 0.65 s a step of 64 scenes); a second seed (1001) read 0.896
    (all scenes 0.670).
    """
    seed_everything(seed)
    encoder = build_lite_vit(stem="conv")
    recipe = make_recipe("lite-vit-dino", encoder, encoder.num_features, method=method, seed=seed,
                         batch_size=batch_size, lr=1e-3, steps=steps, precision=precision,
                         temperature=temperature, posterize=posterize, pairs=pairs, world=world)
    return run_recipe(recipe, out_dir, steps=steps, seed=seed, progress=progress,
                      checkpoint_every=checkpoint_every, resume=resume, stop_after=stop_after,
                      device=device)
