"""The lite zoo's recipes: train a member, measure its quality gates, install its weights.

    report = train_member("lite-resnet-sup", "runs/zoo", install_weights=True)
    summary = train("lite-clip", "runs/zoo", steps=10, batch_size=32)   # the recipe alone, no figures

``python -m rosetta_lite train NAME`` and ``train --all`` call this. Training draws world
seeds >= 1000; every quality figure is measured on world seed 7, never trained on.
Encoders are trained before the generators: their gates are judged in ``lite-resnet-sup``'s features.
"""

from __future__ import annotations

import dataclasses
import importlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors.torch import load_file

from rosetta_lite.device import resolve_device
from rosetta_lite.files import run_lock
from rosetta_lite.train import quality as ev
from rosetta_lite.train.checkpoints import load_weights, trained_or_shipped
from rosetta_lite.train.gan_quality import generator_quality
from rosetta_lite.train.loop import Recipe, RunOptions, run_recipe
from rosetta_lite.train.mae import load_mae
from rosetta_lite.world import world_settings
from rosetta_lite.zoo import lite_arch
from rosetta_lite.zoo.lite import GENERATORS
from rosetta_lite.zoo.weights import install

#: the quality gates, by member: gate -> {figure: lowest passing value}; a gate passes when
#: any one of its figures reaches its lowest value. Encoders' probes are linear probes of the
#: largest object's shape; "probe_gain" is the one-object probe's rise over the member's
#: untrained initialisation (``quality.shape_probes``).
GAIN = {"probe_gain": 0.30}
GATES: dict[str, dict[str, dict[str, float]]] = {
    "lite-resnet-sup": {"accuracy": {"accuracy": 0.95}, "training": GAIN},
    # all scenes, or one-object scenes: ranking three objects by size is not what
    # self-supervision asks, knowing shapes is
    "lite-resnet-dino": {"shapes": {"probe": 0.85, "probe_one_object": 0.97}, "training": GAIN},
    "lite-vit-dino": {"shapes": {"probe_one_object": 0.85}, "training": GAIN},
    # read from the mean patch token (MAE's loss never trains the class token)
    "lite-vit-mae": {"shapes": {"probe_one_object": 0.60}, "reconstruction": {"mae_psnr_gain": 0.5},
                     "training": GAIN},
    "lite-clip": {"zero_shot": {"zero_shot": 0.80}, "retrieval": {"retrieval_top5_text_to_image": 0.50},
                  "training": GAIN},
    "lite-renderer": {"precision_ratio": {"precision_ratio": 0.85}, "recall_ratio": {"recall_ratio": 0.70},
                      "class_frequency_gap_max": {"class_frequency_gap_max": -0.10}},
}
GATES["lite-gan"] = GATES["lite-renderer"]
ORDER = ("lite-resnet-sup", "lite-resnet-dino", "lite-vit-dino", "lite-vit-mae", "lite-clip", "lite-renderer",
         "lite-gan")


@dataclass(frozen=True)
class RecipeSpec:
    """Where one member's recipe is built, its default options, steps, seed and checkpoint interval.

    ``function(options, seed)`` in ``module`` builds the ``Recipe`` (``function(options, seed,
    out_dir)`` when ``reads_out_dir``: the recipe reads another member's weights trained in the
    run's folder); ``options`` names the module's default options, a dataclass.
    """

    module: str
    function: str
    steps: int
    seed: int = 1000
    checkpoint_every: int = 100
    options: str = "OPTIONS"
    reads_out_dir: bool = False

    def default_options(self) -> Any:
        """The member's options dataclass as its recipe trains it.

            RECIPES["lite-vit-mae"].default_options().batch_size   # 128
        """
        return getattr(importlib.import_module(self.module), self.options)

    def recipe(self, options: Any, seed: int, out_dir: Path) -> Recipe:
        """The member's recipe with ``options``, seeded by ``seed``.

            recipe = RECIPES["lite-clip"].recipe(RECIPES["lite-clip"].default_options(), 1000, Path("runs/zoo"))
        """
        build = getattr(importlib.import_module(self.module), self.function)
        return build(options, seed, out_dir) if self.reads_out_dir else build(options, seed)


RECIPES: dict[str, RecipeSpec] = {
    "lite-resnet-sup": RecipeSpec("rosetta_lite.train.supervised", "make_recipe", 2000, checkpoint_every=50),
    "lite-resnet-dino": RecipeSpec("rosetta_lite.train.selfsup", "lite_resnet_dino", 3500, checkpoint_every=50,
                                   options="RESNET_DINO"),
    "lite-vit-dino": RecipeSpec("rosetta_lite.train.selfsup", "lite_vit_dino", 5000, checkpoint_every=250,
                                options="VIT_DINO"),
    "lite-vit-mae": RecipeSpec("rosetta_lite.train.mae", "make_recipe", 600),
    "lite-clip": RecipeSpec("rosetta_lite.train.clip", "make_recipe", 2000, checkpoint_every=50),
    "lite-renderer": RecipeSpec("rosetta_lite.train.renderer", "make_recipe", 8000, checkpoint_every=200),
    "lite-gan": RecipeSpec("rosetta_lite.train.gan", "make_recipe", 2000, seed=0, checkpoint_every=500,
                           reads_out_dir=True),
}


def train(name: str, out_dir: str | Path = "runs/zoo", steps: int | None = None, seed: int | None = None,
          **changes: Any) -> dict:
    """Train one member's recipe (resuming a checkpoint in ``out_dir``); ``run_recipe``'s summary.

        train("lite-vit-mae", "runs/mae", steps=6000, stem="conv", decoder_dim=128, device="cuda")

    ``changes``: fields of ``RunOptions`` (progress, checkpoint_every, resume, stop_after,
    device) and of the member's options dataclass (``RECIPES[name].default_options()``,
    e.g. batch_size, lr, precision, world). No quality figures: ``train_member`` adds them.
    """
    if name not in RECIPES:
        raise ValueError(f"no recipe for {name!r}; recipes: {list(RECIPES)}")
    spec = RECIPES[name]
    run_fields = {f.name for f in dataclasses.fields(RunOptions)}
    run = RunOptions(**{"checkpoint_every": spec.checkpoint_every,
                        **{k: v for k, v in changes.items() if k in run_fields}})
    resolve_device(run.device)  # a wrong device is refused before the recipe is built
    defaults = spec.default_options()
    unknown = set(changes) - run_fields - {f.name for f in dataclasses.fields(defaults)}
    if unknown:
        raise ValueError(f"{name}'s recipe has no option {sorted(unknown)}; its options: "
                         f"{sorted(run_fields | {f.name for f in dataclasses.fields(defaults)})}")
    options = dataclasses.replace(defaults, **{k: v for k, v in changes.items() if k not in run_fields})
    seed = spec.seed if seed is None else seed
    recipe = spec.recipe(options, seed, Path(out_dir))
    return run_recipe(recipe, out_dir, spec.steps if steps is None else steps, seed, run)


def measure_quality(name: str, out_dir: Path, seed: int | None = None, world: str = "plain") -> dict:
    """The member's quality figures, measured on held-out world images (seed 7) of its own world.

        measure_quality("lite-clip", Path("runs/zoo"))
        measure_quality("lite-clip", Path("runs/textured"), world="textured")

    ``seed``: the seed the member trained with (default the recipe's), whose untrained
    initialisation ``probe_gain`` compares with. In the textured world the label is fill
    and shape (30 classes), and the renderer is judged by the textured classifier of
    ``out_dir``.
    """
    weights = Path(out_dir) / f"{name}.safetensors"
    settings = world_settings(world)
    if name in GENERATORS:
        classifier = (Path(out_dir) / "lite-resnet-sup.safetensors" if world != "plain"
                      else trained_or_shipped(out_dir, "lite-resnet-sup"))
        return generator_quality(name, weights, classifier)
    state = load_file(str(weights))
    net = load_weights(lite_arch.build_member(name, state), weights).eval()
    # the label is the largest of up to three objects' shape; on one-object scenes the probe
    # reads shape knowledge alone, without the comparison of sizes
    figures = ev.shape_probes(net, name, init_seed=RECIPES[name].seed if seed is None else seed, **settings)
    if name == "lite-resnet-sup":
        figures["accuracy"] = ev.classification_accuracy(net, **settings)
    if name == "lite-clip":
        tokenizer = lite_arch.clip_tokenizer()
        figures["zero_shot"] = ev.zero_shot_accuracy(net, tokenizer, **settings)
        retrieval = ev.retrieval_top_k(net, tokenizer, **settings)
        figures["retrieval_top5_text_to_image"] = retrieval["text_to_image"]
        figures["retrieval_top5_image_to_text"] = retrieval["image_to_text"]
    if name == "lite-vit-mae":
        figures.update({f"mae_{k}": v for k, v in ev.mae_psnr(load_mae(out_dir), **settings).items()})
        figures["mae_psnr_gain"] = figures["mae_psnr_masked"] - figures["mae_psnr_mean_colour"]
    return {k: round(float(v), 4) for k, v in figures.items()}


def gate_results(name: str, quality: dict) -> dict[str, bool]:
    """Which of the member's gates its figures pass (a gate: any of its figures at its lowest value).

        gate_results("lite-resnet-dino", {"probe": 0.82, "probe_one_object": 0.98, "probe_gain": 0.7})
    """
    return {gate: any(quality.get(figure, float("-inf")) >= lowest for figure, lowest in figures.items())
            for gate, figures in GATES[name].items()}


def train_member(name: str, out_dir: str | Path = "runs/zoo", steps: int | None = None, seed: int | None = None,
                 progress: bool = True, install_weights: bool = False, device: str = "cpu",
                 world: str = "plain") -> dict:
    """Train one member (resuming a checkpoint in ``out_dir``), measure it, optionally install it.

        train_member("lite-vit-mae", "runs/zoo", install_weights=True)
        train_member("lite-clip", "runs/textured", world="textured")   # captions that name fills

    ``world`` names the training scenes (``rosetta_lite.world.WORLDS``). Its quality gates are
    measured on the same world; a member of another world is not installed yet (the shipped
    zoo is one world's; its census: ``eval census --world textured --weights <out_dir>``).
    """
    if name not in RECIPES:
        raise ValueError(f"no recipe for {name!r}; recipes: {list(RECIPES)}")
    settings = world_settings(world)
    if world != "plain" and name == "lite-gan":
        raise ValueError("lite-gan trains on the plain world only; the textured world's generator is lite-renderer")
    if world != "plain" and install_weights:
        raise ValueError(f"the shipped zoo is the plain world's; a {world!r} member cannot be installed yet "
                         "(count it with eval census --weights)")
    recipe = RECIPES[name]
    if steps is not None and (not isinstance(steps, int) or steps < 1):
        raise ValueError(f"steps must be a whole number >= 1 (or None for the recipe's {recipe.steps}), got {steps!r}")
    steps = recipe.steps if steps is None else steps
    out_dir = Path(out_dir)
    start = time.perf_counter()
    with run_lock(out_dir):  # one trainer per folder: two would overwrite each other's checkpoints
        figures = train(name, out_dir, steps, recipe.seed if seed is None else seed, progress=progress,
                        device=device, world=settings)
    quality = measure_quality(name, out_dir, recipe.seed if seed is None else seed, world)
    report = {"member": name, "recipe": f"python -m rosetta_lite train {name}", "steps": steps,
              "seed": recipe.seed if seed is None else seed,
              "train_seconds": round(figures.get("seconds", time.perf_counter() - start), 1),
              "quality": quality, "gates": gate_results(name, quality) if quality else {},
              "config": figures.get("config", {})}
    if install_weights:
        install(name, out_dir / f"{name}.safetensors", {k: v for k, v in report.items() if k != "member"})
    return report


def remeasure_shipped(name: str) -> dict:
    """Measure a shipped member's weights again (new gates, new figures) and record them in the manifest.

        remeasure_shipped("lite-resnet-dino")   # the weights file and its checksum stay as they are

    Figures that need more than the shipped file (the MAE's decoder for its PSNR) keep
    their recorded values.
    """
    from rosetta_lite.zoo.weights import WEIGHTS_DIR, read_manifest, verified_file

    entry = dict(read_manifest()["members"][name])
    verified_file(name)
    if name == "lite-vit-mae":
        net = load_weights(lite_arch.build_member(name), WEIGHTS_DIR / entry["file"]).eval()
        quality = {k: v for k, v in entry["quality"].items() if k.startswith("mae_psnr")}
        quality.update(ev.shape_probes(net, name, init_seed=entry["seed"]))
        quality["mae_psnr_gain"] = quality["mae_psnr_masked"] - quality["mae_psnr_mean_colour"]
        quality = {k: round(float(v), 4) for k, v in quality.items()}
    else:
        quality = measure_quality(name, WEIGHTS_DIR, entry["seed"])
    entry.update(quality=quality, gates=gate_results(name, quality))
    record = {k: v for k, v in entry.items() if k not in ("file", "sha256", "bytes")}
    install(name, WEIGHTS_DIR / entry["file"], record)
    return entry
