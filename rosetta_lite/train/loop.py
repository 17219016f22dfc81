"""Pieces every lite-zoo recipe shares: seeding, augmentation, atomic checkpoints, one loop.

    recipe = Recipe(member="lite-resnet-sup", modules={"net": net}, optimizer=opt,
                    step_fn=step, export=lambda: net, batch_size=128, lr=2e-3)
    result = run_recipe(recipe, "runs/zoo", steps=400, seed=1000)

A recipe is a set of modules, an optimizer and a ``step_fn(batch, step, gen) -> dict``
returning the loss (and any floats to log). ``run_recipe`` draws a fresh world batch
for every step (sample ``i`` of step ``s`` is world sample ``s * batch_size + i`` of the
training seed), sets the learning rate (linear warm-up, cosine decay), steps the
optimizer, writes a checkpoint every ``checkpoint_every`` steps (write to a temporary
file, then ``os.replace``: an interrupted save never leaves a broken checkpoint) and
resumes from it when called again. Augmentation randomness comes from a generator
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
from typing import Callable, Optional

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


# ----------------------------------------------------------------------------- files


# ------------------------------------------------------------------------ augmentation


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
    optionally floats to log. after_step(step) runs after the optimizer step (EMA
    teachers). export() returns the module saved as the member's weights.
    extra_state() / load_extra_state(d) carry anything else (e.g. DINO's centre).
    """

    member: str
    modules: dict[str, nn.Module]
    optimizer: torch.optim.Optimizer
    step_fn: Callable
    export: Callable[[], nn.Module]
    batch_size: int = 128
    lr: float = 1e-3
    warmup: int = 20
    grad_clip: Optional[float] = 3.0
    after_step: Optional[Callable[[int], None]] = None
    extra_state: Optional[Callable[[], dict]] = None
    load_extra_state: Optional[Callable[[dict], None]] = None
    world_size: int = 32
    #: ``ShapesWorld`` settings of the training scenes beyond the size (``world_settings("textured")``)
    world: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    #: "fp32", or "bf16": step_fn runs under bfloat16 autocast with channels-last modules where
    #: the device computes bf16 natively (2.2x faster per ResNet step on 2 AVX-512 BF16 cores);
    #: elsewhere fp32. Losses that need fp32 leave autocast themselves (see ``nt_xent``).
    precision: str = "fp32"


def run_recipe(recipe: Recipe, out_dir: str | os.PathLike, steps: int, seed: int = MIN_TRAIN_SEED,
               progress: bool = True, checkpoint_every: int = 100, resume: bool = True,
               stop_after: Optional[int] = None, device: str | torch.device = "cpu") -> dict:
    """Train ``recipe`` for ``steps`` steps (resuming from its checkpoint); save the member.

    ``device`` ("cpu", "cuda") holds the modules and each step's images and labels; the
    random streams stay on the CPU, so a step draws the same scenes and views anywhere.

    ``stop_after`` ends this call after that many steps (a checkpoint is written), so a
    long run can be split across calls; the schedule still spans ``steps``. Returns a
    summary dict: member, steps, seconds (all calls together), final loss, file paths,
    and ``done`` (False when stopped early; no weights file is written then).
    """
    check_train_seed(seed)
    device = resolve_device(device)
    precision = training_precision(recipe.precision, device)
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be at least 1, got {checkpoint_every}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_file = checkpoint_path(out_dir, recipe.member)
    world = ShapesWorld(size=recipe.world_size, **recipe.world)
    recipe.config = {**recipe.config, "world": world_name(recipe.world)}
    memory_format = torch.channels_last if precision == "bf16" else torch.contiguous_format
    for module in recipe.modules.values():
        module.to(device, memory_format=memory_format)  # in place: the optimizer keeps the same parameters

    start, seconds, log = _resumed(recipe, ckpt_file, steps, seed) if resume else (0, 0.0, [])
    resumed_from = start

    def save(step: int) -> None:
        save_checkpoint({
            "member": recipe.member, "step": step, "steps": steps, "seed": seed,
            "batch_size": recipe.batch_size, "seconds": seconds, "log": log,
            "modules": {n: m.state_dict() for n, m in recipe.modules.items()},
            "optimizer": recipe.optimizer.state_dict(),
            "extra": recipe.extra_state() if recipe.extra_state is not None else {},
            "config": recipe.config,
        }, ckpt_file)

    end = steps if stop_after is None else min(steps, start + stop_after)
    params = [p for g in recipe.optimizer.param_groups for p in g["params"]]
    for m in recipe.modules.values():
        m.train()
    bar = None
    if progress and end > start:
        from tqdm.auto import tqdm
        bar = tqdm(total=steps, initial=start, desc=recipe.member, leave=True)
    for step in range(start, end):
        t0 = time.perf_counter()
        entry = _recipe_step(recipe, world, step, steps, seed, device, precision, params)
        seconds += time.perf_counter() - t0
        log.append(entry)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{entry['loss']:.4f}")
        if (step + 1) % checkpoint_every == 0 or step + 1 == end:
            save(step + 1)
    if bar is not None:
        bar.close()

    done = end >= steps
    result = {
        "member": recipe.member, "steps": steps, "step": end, "seed": seed,
        "batch_size": recipe.batch_size, "resumed_from": resumed_from,
        "steps_run": end - resumed_from, "seconds": round(seconds, 2),
        "final_loss": float(np.mean([e["loss"] for e in log[-20:]])) if log else float("nan"),
        "checkpoint": str(ckpt_file), "done": done, "config": {**recipe.config, "precision": precision},
    }
    if done:
        _save_member(recipe, result, out_dir, steps, seed, log)
    for m in recipe.modules.values():
        m.eval().cpu().to(memory_format=torch.contiguous_format)
    return result


def _resumed(recipe: Recipe, ckpt_file: Path, steps: int, seed: int) -> tuple[int, float, list]:
    """Step, seconds and log of the recipe's checkpoint, its modules and optimizer restored; (0, 0, []) if none."""
    ckpt = load_checkpoint(ckpt_file)
    if ckpt is None:
        return 0, 0.0, []
    if ckpt["steps"] != steps or ckpt["seed"] != seed or ckpt["batch_size"] != recipe.batch_size:
        raise ValueError(
            f"checkpoint {ckpt_file} was made with steps={ckpt['steps']}, seed={ckpt['seed']}, "
            f"batch_size={ckpt['batch_size']}; asked for steps={steps}, seed={seed}, "
            f"batch_size={recipe.batch_size}. Pass resume=False or use another out_dir.")
    trained_on = ckpt.get("config", {}).get("world", "plain")
    if trained_on != recipe.config["world"]:
        raise ValueError(f"checkpoint {ckpt_file} trained on the {trained_on!r} world; asked for the "
                         f"{recipe.config['world']!r} world. Use another out_dir.")
    for name, module in recipe.modules.items():
        module.load_state_dict(ckpt["modules"][name])
    recipe.optimizer.load_state_dict(ckpt["optimizer"])
    if recipe.load_extra_state is not None:
        recipe.load_extra_state(ckpt.get("extra", {}))
    return ckpt["step"], ckpt["seconds"], ckpt["log"]


def _recipe_step(recipe: Recipe, world: ShapesWorld, step: int, steps: int, seed: int, device: torch.device,
                 precision: str, params: list) -> dict:
    """One optimizer step of the recipe on its world batch of ``step``; the step's log entry."""
    lr = cosine_lr(step, steps, recipe.lr, recipe.warmup)
    for group in recipe.optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
    batch = world.batch(recipe.batch_size, seed=seed, start=step * recipe.batch_size)
    batch = dataclasses.replace(batch, images=batch.images.to(device), labels=batch.labels.to(device))
    with precision_context(precision, device):
        out = recipe.step_fn(batch, step, step_generator(seed, step))
    loss = out["loss"]
    if not torch.isfinite(loss):
        raise FloatingPointError(f"{recipe.member}: loss is {loss.item()} at step {step}")
    recipe.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if recipe.grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(params, recipe.grad_clip)
    recipe.optimizer.step()
    if recipe.after_step is not None:
        recipe.after_step(step)
    entry = {"step": step, "lr": lr}
    entry.update({k: float(v.detach()) if torch.is_tensor(v) else float(v) for k, v in out.items()})
    return entry


def _save_member(recipe: Recipe, result: dict, out_dir: Path, steps: int, seed: int, log: list) -> None:
    """The finished member's weights and its summary (with a thinned loss curve) beside them; adds to ``result``."""
    member = recipe.export()
    wfile = weights_path(out_dir, recipe.member)
    result["weights"] = str(wfile)
    result["weights_bytes"] = save_weights(member, wfile, metadata={
        **result["config"], "member": recipe.member, "steps": steps, "seed": seed})
    summary = dict(result)
    summary["loss_curve"] = [round(e["loss"], 5) for e in log[:: max(1, len(log) // 50)]]
    with atomic_path(out_dir / f"{recipe.member}.json") as tmp:
        Path(tmp).write_text(json.dumps(summary, indent=1))
