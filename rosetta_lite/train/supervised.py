"""lite-resnet-sup: the lite ResNet trained to name the shape of the largest object.

    from rosetta_lite.train.supervised import train_lite_resnet_sup
    result = train_lite_resnet_sup("runs/zoo", steps=1000, seed=1000)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rosetta_lite.train.augment import augment
from rosetta_lite.train.loop import Recipe, run_recipe, seed_everything
from rosetta_lite.world import ShapesWorld
from rosetta_lite.zoo.lite_arch import build_lite_resnet, normalize

MEMBER = "lite-resnet-sup"


def make_recipe(seed: int = 1000, batch_size: int = 128, lr: float = 2e-3, precision: str = "fp32",
                world: dict | None = None) -> Recipe:
    seed_everything(seed)
    world = dict(world or {})
    classes = len(ShapesWorld(**world).class_names)  # a textured world's class is fill and shape
    net = build_lite_resnet(num_classes=classes)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.05)

    def step(batch, step_index, gen):
        # flips only: every step draws fresh scenes, and crops could change the label
        x = augment(batch.images, gen, scale=(1.0, 1.0))
        logits = net(normalize(x, MEMBER))
        loss = F.cross_entropy(logits, batch.labels, label_smoothing=0.05)
        acc = (logits.argmax(1) == batch.labels).float().mean()
        return {"loss": loss, "acc": acc.detach()}

    return Recipe(member=MEMBER, modules={"net": net}, optimizer=opt, step_fn=step,
                  export=lambda: net, batch_size=batch_size, lr=lr, warmup=20, precision=precision, world=world,
                  config={"arch": f"build_lite_resnet(num_classes={classes})", "loss": "cross-entropy"})


def train_lite_resnet_sup(out_dir, steps: int = 1000, seed: int = 1000, progress: bool = True,
                          checkpoint_every: int = 50, resume: bool = True, batch_size: int = 128,
                          stop_after: int | None = None, device: str = "cpu", precision: str = "fp32",
                          world: dict | None = None) -> dict:
    """Train ``lite-resnet-sup``; writes ``<out_dir>/lite-resnet-sup.safetensors``.

    ``world``: ``ShapesWorld`` settings of the training scenes (default the plain world).
    """
    recipe = make_recipe(seed=seed, batch_size=batch_size, precision=precision, world=world)
    return run_recipe(recipe, out_dir, steps=steps, seed=seed, progress=progress,
                      checkpoint_every=checkpoint_every, resume=resume, stop_after=stop_after,
                      device=device)
