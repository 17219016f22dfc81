"""lite-resnet-sup: the lite ResNet trained to name the shape of the largest object.

    from rosetta_lite.train.recipes import train
    result = train("lite-resnet-sup", "runs/zoo", steps=1000, seed=1000)

The recipe's measurements: the book's appendix (``book/zoo_training.md``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rosetta_lite.train.augment import augment
from rosetta_lite.train.loop import Recipe, RecipeOptions, seed_everything
from rosetta_lite.world import ShapesWorld
from rosetta_lite.zoo.lite_arch import build_lite_resnet, normalize

MEMBER = "lite-resnet-sup"
OPTIONS = RecipeOptions(batch_size=128, lr=2e-3)


def make_recipe(options: RecipeOptions = OPTIONS, seed: int = 1000) -> Recipe:
    """``lite-resnet-sup``'s recipe: cross-entropy on the largest object's shape (fill and shape when textured).

        recipe = make_recipe(RecipeOptions(batch_size=64), seed=1000)
    """
    seed_everything(seed)
    world = dict(options.world)
    classes = len(ShapesWorld(**world).class_names)  # a textured world's class is fill and shape
    net = build_lite_resnet(num_classes=classes)
    opt = torch.optim.AdamW(net.parameters(), lr=options.lr, weight_decay=0.05)

    def step(batch, step_index, gen):
        # flips only: every step draws fresh scenes, and crops could change the label
        x = augment(batch.images, gen, scale=(1.0, 1.0))
        logits = net(normalize(x, MEMBER))
        loss = F.cross_entropy(logits, batch.labels, label_smoothing=0.05)
        acc = (logits.argmax(1) == batch.labels).float().mean()
        return {"loss": loss, "acc": acc.detach()}

    return Recipe(member=MEMBER, modules={"net": net}, optimizer=opt, step_fn=step,
                  export=lambda: net, batch_size=options.batch_size, lr=options.lr, warmup=20,
                  precision=options.precision, world=world,
                  config={"arch": f"build_lite_resnet(num_classes={classes})", "loss": "cross-entropy"})

