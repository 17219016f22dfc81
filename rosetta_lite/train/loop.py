"""Pieces every lite-zoo recipe shares: seeding, augmentation, atomic checkpoints, one loop.

    recipe = Recipe(member="lite-resnet-sup", modules={"net": net}, optimizer=opt,
                    step_fn=step, export=lambda: net, batch_size=128, lr=2e-3)
    result = run_recipe(recipe, "runs/zoo", steps=400, seed=1000, progress=False)

A recipe is a set of modules, an optimizer and a ``step_fn(batch, step, gen) -> dict``
returning the loss (and any floats to log). ``run_recipe`` draws a fresh world batch
for every step (sample ``i`` of step ``s`` is world sample ``s * batch_size + i`` of the
training seed), sets the learning rate (linear warm-up, cosine decay), steps the
optimizer, writes a checkpoint every ``checkpoint_every`` steps (write to a temporary
file, then ``os.replace``: an interrupted save never leaves a broken checkpoint) and
resumes from it when called again. A recipe whose step has several players (a GAN's
generator and discriminator) gives a dict of optimizers instead: its ``step_fn`` steps
them itself, and the loop keeps everything else (batches, checkpoints, resuming, timing). Augmentation randomness comes from a generator
seeded by (seed, step), so a resumed run takes the same steps as an uninterrupted one.
At the end the member's weights go to ``<out_dir>/<member>.safetensors`` and a summary
to ``<out_dir>/<member>.json``.

A recipe with ``precision="bf16"`` runs its steps under bfloat16 autocast, with its modules
in channels-last memory, where the device computes bf16 natively (CPUs with AVX-512 BF16
or AMX, recent GPUs); the weights and the optimizer stay in fp32. Elsewhere it runs in
fp32, and the precision it used is recorded in the summary and the weights' metadata.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch import nn

from rosetta_lite.device import native_bf16, precision_context, resolve_device
from rosetta_lite.files import atomic_path
from rosetta_lite.train.checkpoints import (
    checkpoint_path,
    load_checkpoint,
    save_checkpoint,
    save_weights,
    weights_path,
)
from rosetta_lite.world import EVAL_SEED, MIN_TRAIN_SEED, ShapesWorld, world_name


def check_train_seed(seed: int) -> None:
    """Refuse world seeds that could overlap the evaluation stream."""
    if not isinstance(seed, int) or seed < MIN_TRAIN_SEED:
        raise ValueError(f"training seeds must be integers >= {MIN_TRAIN_SEED} (the evaluation "
                         f"stream is seed {EVAL_SEED}), got {seed!r}")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (model initialisation is then reproducible)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def step_generator(seed: int, step: int) -> torch.Generator:
    """The random stream of one training step: depends only on (seed, step)."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def training_precision(precision: str, device: torch.device) -> str:
    """The precision a recipe asking for ``precision`` trains in on ``device``.

        training_precision("bf16", torch.device("cpu"))   # "bf16" on AVX-512 BF16 cores, else "fp32"

    bf16 only where the device computes it natively; a value other than "fp32" or "bf16"
    is a ValueError.
    """
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"a recipe's precision must be 'fp32' or 'bf16', got {precision!r}")
    return precision if precision == "fp32" or native_bf16(device) else "fp32"


def cosine_lr(step: int, steps: int, base: float, warmup: int) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to 2% of ``base``."""
    if step < warmup:
        return base * (step + 1) / warmup
    t = (step - warmup) / max(1, steps - warmup)
    return base * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


# ------------------------------------------------------------------------------ loop

@dataclass
class Recipe:
    """Everything ``run_recipe`` needs to train one member.

    modules: every module whose state the checkpoint keeps (e.g. student, teacher, head).
    step_fn(batch, step, gen) -> dict with a scalar tensor "loss" (backpropagated) and
    optionally floats to log. With a dict of optimizers, step_fn steps them itself (no
    learning-rate schedule, no clipping) and its "loss" is only logged. after_step(step,
    steps) runs after the optimizer step (EMA teachers). export() returns the module saved
    as the member's weights, by save(module, path, metadata) where the member needs more
    than ``save_weights`` (the GAN's generator). extra_state() / load_extra_state(d) carry
    anything else (e.g. DINO's centre).
    """

    member: str
    modules: dict[str, nn.Module]
    optimizer: torch.optim.Optimizer | dict[str, torch.optim.Optimizer]
    step_fn: Callable
    export: Callable[[], nn.Module]
    batch_size: int = 128
    lr: float = 1e-3
    warmup: int = 20
    grad_clip: Optional[float] = 3.0
    after_step: Optional[Callable[[int, int], None]] = None
    extra_state: Optional[Callable[[], dict]] = None
    load_extra_state: Optional[Callable[[dict], None]] = None
    world_size: int = 32
    #: ``ShapesWorld`` settings of the training scenes beyond the size (``world_settings("textured")``)
    world: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    #: "fp32", or "bf16": step_fn runs under bfloat16 autocast with channels-last modules where
    #: the device computes bf16 natively (for speed: ``bench training``); elsewhere fp32. Losses
    #: that need fp32 leave autocast themselves (see ``nt_xent``).
    precision: str = "fp32"
    save: Optional[Callable[[nn.Module, Path, dict], None]] = None
    #: the world stream is seed + this: the GAN numbers its seeds from 0, its scenes from 1000
    world_seed_offset: int = 0


@dataclass(frozen=True)
class RecipeOptions:
    """What every member's recipe lets one change; a member's own options add to these.

        RecipeOptions(batch_size=32, precision="bf16", world=world_settings("textured"))

    ``world``: ``ShapesWorld`` settings of the training scenes (default the plain world).
    """

    batch_size: int = 128
    lr: float = 2e-3
    precision: str = "fp32"
    world: dict = field(default_factory=dict)


@dataclass(frozen=True)
class RunOptions:
    """How ``run_recipe`` runs a recipe, besides its steps and seed.

        RunOptions(progress=False, checkpoint_every=50, device="cuda")

    ``device`` ("cpu", "cuda") holds the modules and each step's images and labels; the
    random streams stay on the CPU, so a step draws the same scenes and views anywhere.
    ``stop_after`` ends a call after that many steps (a checkpoint is written), so a long
    run can be split across calls; the schedule still spans ``steps``.
    """

    progress: bool = True
    checkpoint_every: int = 100
    resume: bool = True
    stop_after: Optional[int] = None
    device: str | torch.device = "cpu"


def run_recipe(recipe: Recipe, out_dir: str | os.PathLike, steps: int, seed: int = MIN_TRAIN_SEED,
               options: RunOptions = RunOptions(), **changes: Any) -> dict:
    """Train ``recipe`` for ``steps`` steps (resuming from its checkpoint); save the member.

        run_recipe(recipe, "runs/zoo", steps=400, seed=1000, device="cuda", stop_after=100)

    ``changes``: fields of ``RunOptions`` (progress, checkpoint_every, resume, stop_after,
    device). Returns a summary dict: member, steps, seconds (all calls together), final
    loss, file paths, and ``done`` (False when stopped early; no weights file is written then).
    """
    options = dataclasses.replace(options, **changes)
    check_train_seed(seed + recipe.world_seed_offset)
    device = resolve_device(options.device)
    precision = training_precision(recipe.precision, device)
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if options.checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be at least 1, got {options.checkpoint_every}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_file = checkpoint_path(out_dir, recipe.member)
    recipe.config = {**recipe.config, "world": world_name(recipe.world)}
    memory_format = torch.channels_last if precision == "bf16" else torch.contiguous_format
    for module in recipe.modules.values():
        module.to(device, memory_format=memory_format)  # in place: the optimizer keeps the same parameters

    start, seconds, log = _resumed(recipe, ckpt_file, steps, seed) if options.resume else (0, 0.0, [])
    end = steps if options.stop_after is None else min(steps, start + options.stop_after)

    def save(step: int, spent: float) -> None:
        save_checkpoint({
            "member": recipe.member, "step": step, "steps": steps, "seed": seed,
            "batch_size": recipe.batch_size, "seconds": seconds + spent, "log": log,
            "modules": {n: m.state_dict() for n, m in recipe.modules.items()},
            "optimizer": _optimizer_state(recipe.optimizer),
            "extra": recipe.extra_state() if recipe.extra_state is not None else {},
            "config": recipe.config,
        }, ckpt_file)

    seconds += _Run(recipe, steps, seed, device, precision).train(start, end, log, options, save)
    done = end >= steps
    result = {
        "member": recipe.member, "steps": steps, "step": end, "seed": seed,
        "batch_size": recipe.batch_size, "resumed_from": start,
        "steps_run": end - start, "seconds": round(seconds, 2),
        "final_loss": float(np.mean([e["loss"] for e in log[-20:]])) if log else float("nan"),
        "checkpoint": str(ckpt_file), "done": done, "config": {**recipe.config, "precision": precision},
    }
    if done:
        _save_member(recipe, result, out_dir, steps, seed, log)
    for m in recipe.modules.values():
        m.eval().cpu().to(memory_format=torch.contiguous_format)
    return result


def _optimizer_state(optimizer: torch.optim.Optimizer | dict[str, torch.optim.Optimizer]) -> dict:
    if isinstance(optimizer, dict):
        return {name: o.state_dict() for name, o in optimizer.items()}
    return optimizer.state_dict()


def _load_optimizer_state(optimizer: torch.optim.Optimizer | dict[str, torch.optim.Optimizer], state: dict) -> None:
    if isinstance(optimizer, dict):
        for name, o in optimizer.items():
            o.load_state_dict(state[name])
    else:
        optimizer.load_state_dict(state)


def _same_config(saved: dict, asked: dict) -> bool:
    """Whether every setting both configurations name agrees (a setting added since is no change)."""
    saved, asked = json.loads(json.dumps(saved)), json.loads(json.dumps(asked))  # tuples read as lists
    return all(saved[key] == asked[key] for key in saved.keys() & asked.keys())


#: what every training checkpoint holds (the recipe's modules' states under "modules")
CHECKPOINT_KEYS = frozenset({"steps", "seed", "batch_size", "modules", "optimizer", "step", "seconds", "log"})


def _resumed(recipe: Recipe, ckpt_file: Path, steps: int, seed: int) -> tuple[int, float, list]:
    """Step, seconds and log of the recipe's checkpoint, its modules and optimizer restored; (0, 0, []) if none."""
    ckpt = load_checkpoint(ckpt_file)
    if ckpt is None:
        return 0, 0.0, []
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("modules", {}), dict):
        ckpt = {}  # not a checkpoint's layout at all: every key is missing
    missing = sorted(CHECKPOINT_KEYS - set(ckpt)) or sorted(set(recipe.modules) - set(ckpt["modules"]))
    if missing:
        raise ValueError(f"checkpoint {ckpt_file} is not a whole training checkpoint (it lacks {missing}); delete it "
                         "to train from the start, or use another out_dir")
    if ckpt["steps"] != steps or ckpt["seed"] != seed or ckpt["batch_size"] != recipe.batch_size:
        raise ValueError(
            f"checkpoint {ckpt_file} was made with steps={ckpt['steps']}, seed={ckpt['seed']}, "
            f"batch_size={ckpt['batch_size']}; asked for steps={steps}, seed={seed}, "
            f"batch_size={recipe.batch_size}. Pass resume=False or use another out_dir.")
    trained_on = ckpt.get("config", {}).get("world", "plain")
    if trained_on != recipe.config["world"]:
        raise ValueError(f"checkpoint {ckpt_file} trained on the {trained_on!r} world; asked for the "
                         f"{recipe.config['world']!r} world. Use another out_dir.")
    if not _same_config(ckpt.get("config", {}), recipe.config):
        raise ValueError(f"checkpoint {ckpt_file} was written by another configuration of {recipe.member}'s "
                         "recipe. Pass resume=False or use another out_dir.")
    for name, module in recipe.modules.items():
        module.load_state_dict(ckpt["modules"][name])
    _load_optimizer_state(recipe.optimizer, ckpt["optimizer"])
    if recipe.load_extra_state is not None:
        recipe.load_extra_state(ckpt.get("extra", {}))
    return ckpt["step"], ckpt["seconds"], ckpt["log"]


@dataclass
class _Run:
    """The steps of one call of ``run_recipe``: the recipe, its schedule and where it runs."""

    recipe: Recipe
    steps: int
    seed: int
    device: torch.device
    precision: str

    def __post_init__(self) -> None:
        self.world = ShapesWorld(size=self.recipe.world_size, **self.recipe.world)
        owned = isinstance(self.recipe.optimizer, dict)
        self.params = [] if owned else [p for g in self.recipe.optimizer.param_groups for p in g["params"]]

    def train(self, start: int, end: int, log: list, options: RunOptions,
              checkpoint: Callable[[int, float], None]) -> float:
        """Steps ``start`` to ``end``, each appended to ``log``, checkpointed as ``options`` asks; their seconds."""
        for m in self.recipe.modules.values():
            m.train()
        bar = None
        if options.progress and end > start:
            from tqdm.auto import tqdm
            bar = tqdm(total=self.steps, initial=start, desc=self.recipe.member, leave=True)
        spent = 0.0
        for step in range(start, end):
            t0 = time.perf_counter()
            entry = self.step(step)
            spent += time.perf_counter() - t0
            log.append(entry)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{entry['loss']:.4f}")
            if (step + 1) % options.checkpoint_every == 0 or step + 1 == end:
                checkpoint(step + 1, spent)
        if bar is not None:
            bar.close()
        return spent

    def step(self, step: int) -> dict:
        """One step of the recipe on its world batch of ``step``; the step's log entry."""
        recipe, owned = self.recipe, isinstance(self.recipe.optimizer, dict)
        entry = {"step": step}
        if not owned:
            entry["lr"] = cosine_lr(step, self.steps, recipe.lr, recipe.warmup)
            for group in recipe.optimizer.param_groups:
                group["lr"] = entry["lr"] * group.get("lr_scale", 1.0)
        world_seed = self.seed + recipe.world_seed_offset
        batch = self.world.batch(recipe.batch_size, seed=world_seed, start=step * recipe.batch_size)
        batch = dataclasses.replace(batch, images=batch.images.to(self.device), labels=batch.labels.to(self.device))
        with precision_context(self.precision, self.device):
            out = recipe.step_fn(batch, step, step_generator(self.seed, step))
        loss = torch.as_tensor(out["loss"])
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{recipe.member}: loss is {loss.item()} at step {step}")
        if not owned:
            recipe.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if recipe.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(self.params, recipe.grad_clip)
            recipe.optimizer.step()
        if recipe.after_step is not None:
            recipe.after_step(step, self.steps)
        entry.update({k: float(v.detach()) if torch.is_tensor(v) else float(v) for k, v in out.items()})
        return entry


def _save_member(recipe: Recipe, result: dict, out_dir: Path, steps: int, seed: int, log: list) -> None:
    """The finished member's weights and its summary (with a thinned loss curve) beside them; adds to ``result``."""
    wfile = weights_path(out_dir, recipe.member)
    metadata = {**result["config"], "member": recipe.member, "steps": steps, "seed": seed}
    if recipe.save is None:
        save_weights(recipe.export(), wfile, metadata=metadata)
    else:
        recipe.save(recipe.export(), wfile, metadata)
    result["weights"] = str(wfile)
    result["weights_bytes"] = wfile.stat().st_size
    summary = dict(result)
    summary["loss_curve"] = [round(e["loss"], 5) for e in log[:: max(1, len(log) // 50)]]
    with atomic_path(out_dir / f"{recipe.member}.json") as tmp:
        Path(tmp).write_text(json.dumps(summary, indent=1))
