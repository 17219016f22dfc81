"""The lite zoo's recipes: train a member, measure its quality gates, install its weights.

    report = train_member("lite-resnet-sup", "runs/zoo", install=True)

``python -m rosetta_lite train NAME`` and ``train --all`` call this. Training draws world
seeds >= 1000; every quality figure is measured on world seed 7, never trained on.
Encoders are trained before the generators: their gates are judged in ``lite-resnet-sup``'s features.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from rosetta_lite.train import quality as ev
from rosetta_lite.train.checkpoints import load_weights, trained_or_shipped
from rosetta_lite.train.gan_quality import generator_quality
from rosetta_lite.train.mae import load_mae
from rosetta_lite.zoo import lite_arch
from rosetta_lite.zoo.lite import GENERATORS
from rosetta_lite.zoo.weights import install

#: the quality gates of the lite zoo issue, by member: figure name -> lowest passing value
GATES: dict[str, dict[str, float]] = {
    "lite-resnet-sup": {"accuracy": 0.95},
    "lite-resnet-dino": {"probe": 0.85},
    "lite-vit-dino": {"probe": 0.85},
    "lite-vit-mae": {},  # PSNR on masked patches is reported against the mean-colour baseline
    "lite-clip": {"zero_shot": 0.80, "retrieval_top5_text_to_image": 0.50},
    "lite-renderer": {"precision_ratio": 0.85, "recall_ratio": 0.70, "class_frequency_gap_max": -0.10},
    "lite-gan": {"precision_ratio": 0.85, "recall_ratio": 0.70, "class_frequency_gap_max": -0.10},
}
ORDER = ("lite-resnet-sup", "lite-resnet-dino", "lite-vit-dino", "lite-vit-mae", "lite-clip", "lite-renderer",
         "lite-gan")


@dataclass(frozen=True)
class RecipeSpec:
    """How to train one member: the module function, its default steps and options."""

    module: str
    function: str
    steps: int
    seed: int = 1000
    options: dict = field(default_factory=dict)

    def train(self, out_dir: Path, steps: int, seed: int, progress: bool, device: str = "cpu") -> dict:
        import importlib

        train = getattr(importlib.import_module(self.module), self.function)
        return train(out_dir, steps=steps, seed=seed, progress=progress, device=device, **self.options)


RECIPES: dict[str, RecipeSpec] = {
    "lite-resnet-sup": RecipeSpec("rosetta_lite.train.supervised", "train_lite_resnet_sup", 2000),
    "lite-resnet-dino": RecipeSpec("rosetta_lite.train.selfsup", "train_lite_resnet_dino", 3500,
                                   options={"batch_size": 128, "precision": "bf16"}),
    "lite-vit-dino": RecipeSpec("rosetta_lite.train.selfsup", "train_lite_vit_dino", 400),
    "lite-vit-mae": RecipeSpec("rosetta_lite.train.mae", "train_lite_vit_mae", 600),
    "lite-clip": RecipeSpec("rosetta_lite.train.clip", "train_lite_clip", 2000),
    "lite-renderer": RecipeSpec("rosetta_lite.train.renderer", "train_lite_renderer", 8000),
    "lite-gan": RecipeSpec("rosetta_lite.train.gan", "train_gan", 2000, seed=0),
}


def measure_quality(name: str, out_dir: Path) -> dict:
    """The member's quality figures, measured on held-out world images (seed 7).

        measure_quality("lite-clip", Path("runs/zoo"))
    """
    weights = Path(out_dir) / f"{name}.safetensors"
    if name in GENERATORS:
        return generator_quality(name, weights, trained_or_shipped(out_dir, "lite-resnet-sup"))
    net = load_weights(lite_arch.build_member(name), weights).eval()
    # the label is the largest of up to three objects' shape; on one-object scenes the probe
    # reads shape knowledge alone, without the comparison of sizes
    figures = {"probe": ev.linear_probe_accuracy(net, name),
               "probe_one_object": ev.linear_probe_accuracy(net, name, max_objects=1)}
    if name == "lite-resnet-sup":
        figures["accuracy"] = ev.classification_accuracy(net)
    if name == "lite-clip":
        tokenizer = lite_arch.clip_tokenizer()
        figures["zero_shot"] = ev.zero_shot_accuracy(net, tokenizer)
        retrieval = ev.retrieval_top_k(net, tokenizer)
        figures["retrieval_top5_text_to_image"] = retrieval["text_to_image"]
        figures["retrieval_top5_image_to_text"] = retrieval["image_to_text"]
    if name == "lite-vit-mae":
        figures.update({f"mae_{k}": v for k, v in ev.mae_psnr(load_mae(out_dir)).items()})
    return {k: round(float(v), 4) for k, v in figures.items()}


def gate_results(name: str, quality: dict) -> dict[str, bool]:
    """Which of the member's gates its figures pass."""
    return {figure: quality.get(figure, float("-inf")) >= lowest for figure, lowest in GATES[name].items()}


def train_member(name: str, out_dir: str | Path = "runs/zoo", steps: int | None = None, seed: int | None = None,
                 progress: bool = True, install_weights: bool = False, device: str = "cpu") -> dict:
    """Train one member (resuming a checkpoint in ``out_dir``), measure it, optionally install it.

        train_member("lite-vit-mae", "runs/zoo", install_weights=True)
    """
    if name not in RECIPES:
        raise ValueError(f"no recipe for {name!r}; recipes: {list(RECIPES)}")
    recipe = RECIPES[name]
    if steps is not None and (not isinstance(steps, int) or steps < 1):
        raise ValueError(f"steps must be a whole number >= 1 (or None for the recipe's {recipe.steps}), got {steps!r}")
    steps = recipe.steps if steps is None else steps
    out_dir = Path(out_dir)
    start = time.perf_counter()
    figures = recipe.train(out_dir, steps, recipe.seed if seed is None else seed, progress, device)
    quality = measure_quality(name, out_dir)
    report = {"member": name, "recipe": f"python -m rosetta_lite train {name}", "steps": steps,
              "seed": recipe.seed if seed is None else seed,
              "train_seconds": round(figures.get("seconds", time.perf_counter() - start), 1),
              "quality": quality, "gates": gate_results(name, quality),
              "config": figures.get("config", {})}
    if install_weights:
        install(name, out_dir / f"{name}.safetensors", {k: v for k, v in report.items() if k != "member"})
    return report
