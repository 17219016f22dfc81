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
import torch.nn.functional as F
from torch import nn

from rosetta_lite.files import atomic_path

EVAL_SEED = 7  # world seed of every gate measurement
MIN_TRAIN_SEED = 1000  # training streams use seeds >= this, disjoint from evaluation


def check_train_seed(seed: int) -> None:
    """Refuse world seeds that could overlap the evaluation stream."""
    if not isinstance(seed, int) or seed < MIN_TRAIN_SEED:
        raise ValueError(f"training seeds must be integers >= {MIN_TRAIN_SEED} (the evaluation "
                         f"stream is seed {EVAL_SEED}), got {seed!r}")


def resolve_device(device: str | torch.device) -> torch.device:
    """``torch.device(device)``, refusing a CUDA device on a machine without one."""
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}") from None
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {str(device)!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} asked for, but torch sees no CUDA GPU here; use 'cpu'")
    return device


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (model initialisation is then reproducible)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def step_generator(seed: int, step: int) -> torch.Generator:
    """The random stream of one training step: depends only on (seed, step)."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


# ----------------------------------------------------------------------------- files

def _atomic_write(path: Path, write: Callable[[str], None]) -> None:
    with atomic_path(path) as tmp:  # the project's one atomic write
        write(tmp)


def save_checkpoint(state: dict, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename over ``path``."""
    _atomic_write(Path(path), lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: str | os.PathLike) -> Optional[dict]:
    """The checkpoint at ``path``, or None when there is none."""
    path = Path(path)
    if not path.exists():
        return None
    return torch.load(path, map_location="cpu", weights_only=False)


def save_weights(module: nn.Module, path: str | os.PathLike, metadata: Optional[dict] = None) -> int:
    """Save a module's state dict as safetensors (atomically); returns the file size in bytes.

    Shared tensors are stored once per name (contiguous copies), so the file loads
    with ``safetensors.torch.load_file`` + ``module.load_state_dict``.
    """
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}
    meta = {k: str(v) for k, v in (metadata or {}).items()}
    path = Path(path)
    _atomic_write(path, lambda tmp: save_file(state, tmp, metadata=meta))
    return path.stat().st_size


def load_weights(module: nn.Module, path: str | os.PathLike, strict: bool = True) -> nn.Module:
    """Load a safetensors state dict into ``module`` (built by ``rosetta_lite.zoo.lite_arch``)."""
    from safetensors.torch import load_file

    module.load_state_dict(load_file(str(path)), strict=strict)
    return module


# ------------------------------------------------------------------------ augmentation

def augment(images: torch.Tensor, gen: torch.Generator, *, scale: tuple[float, float] = (0.4, 1.0),
            flip: bool = True, colour: float = 0.0, grey: float = 0.0, posterize: int = 0) -> torch.Tensor:
    """Random resized crops (area fraction in ``scale``), horizontal flips and colour changes.

    Images are (B, 3, H, W) in [0, 1]; the result has the same size and range. Crops are
    taken by one batched ``grid_sample`` (bilinear, border padding). ``colour`` in [0, 1]
    sets the strength of colour changes: random channel permutation (with probability
    ``colour``), brightness and contrast jitter of +-0.4 ``colour``. ``grey`` is the
    probability of turning an image grey. ``posterize`` > 0 then rounds every channel to
    ``2 ** posterize`` even levels (2: 0, 1/3, 2/3, 1); it draws nothing from ``gen``.
    Never rotates: a square turned 45 degrees is a diamond.
    """
    if isinstance(posterize, bool) or not isinstance(posterize, int) or not 0 <= posterize <= 8:
        raise ValueError(f"posterize keeps 1 to 8 bits per channel (0: off), got {posterize!r}")
    b = images.shape[0]
    rand = lambda *shape: torch.rand(*shape, generator=gen)  # noqa: E731
    area = scale[0] + (scale[1] - scale[0]) * rand(b)
    side = area.sqrt()  # crop side as a fraction of the image
    tx = (1 - side) * (2 * rand(b) - 1)  # crop centre, in [-1, 1] coordinates
    ty = (1 - side) * (2 * rand(b) - 1)
    sx = side * torch.where(rand(b) < 0.5, -1.0, 1.0) if flip else side
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = sx, tx
    theta[:, 1, 1], theta[:, 1, 2] = side, ty
    # random draws stay on the CPU generator (same stream on any device); only results move
    device = images.device
    grid = F.affine_grid(theta.to(device), list(images.shape), align_corners=False)
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if colour > 0:
        perms = torch.stack([torch.randperm(3, generator=gen) for _ in range(b)])
        keep = rand(b) >= colour
        perms[keep] = torch.arange(3)
        out = torch.gather(out, 1, perms.to(device)[:, :, None, None].expand_as(out))
        bright = 1 + 0.4 * colour * (2 * rand(b, 1, 1, 1).to(device) - 1)
        contrast = 1 + 0.4 * colour * (2 * rand(b, 1, 1, 1).to(device) - 1)
        mean = out.mean(dim=(1, 2, 3), keepdim=True)
        out = ((out - mean) * contrast + mean) * bright
    if grey > 0:
        g = (0.299 * out[:, 0] + 0.587 * out[:, 1] + 0.114 * out[:, 2]).unsqueeze(1).expand_as(out)
        out = torch.where((rand(b) < grey).to(device)[:, None, None, None], g, out)
    out = out.clamp(0, 1)
    if posterize:
        levels = 2 ** posterize - 1
        out = torch.floor(out * levels + 0.5) / levels
    return out


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 natively (emulated bf16 is slower than fp32)."""
    if device.type == "cuda":
        try:
            return torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:  # torch < 2.4 has no such argument and counts only native bf16
            return torch.cuda.is_bf16_supported()
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


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
    config: dict = field(default_factory=dict)
    #: "fp32", or "bf16": step_fn runs under bfloat16 autocast with channels-last modules where
    #: the device computes bf16 natively (2.2x faster per ResNet step on 2 AVX-512 BF16 cores);
    #: elsewhere fp32. Losses that need fp32 leave autocast themselves (see ``nt_xent``).
    precision: str = "fp32"


def checkpoint_path(out_dir: str | os.PathLike, member: str) -> Path:
    return Path(out_dir) / f"{member}.ckpt.pt"


def weights_path(out_dir: str | os.PathLike, member: str) -> Path:
    return Path(out_dir) / f"{member}.safetensors"


def trained_or_shipped(out_dir: str | os.PathLike, member: str) -> Path:
    """The weights of a member another recipe depends on: those a run trained in ``out_dir``
    (``train --all`` trains it first), else the shipped ones, checksum verified.

        trained_or_shipped("runs/zoo", "lite-resnet-sup")   # the GAN's judge
    """
    path = weights_path(out_dir, member)
    if path.exists():
        return path
    from rosetta_lite.zoo.weights import verified_file

    return verified_file(member)


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
    from rosetta_lite.mine import precision_context
    from rosetta_lite.world import ShapesWorld

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
    world = ShapesWorld(size=recipe.world_size)
    memory_format = torch.channels_last if precision == "bf16" else torch.contiguous_format
    for module in recipe.modules.values():
        module.to(device, memory_format=memory_format)  # in place: the optimizer keeps the same parameters

    start, seconds, log = 0, 0.0, []
    ckpt = load_checkpoint(ckpt_file) if resume else None
    if ckpt is not None:
        if ckpt["steps"] != steps or ckpt["seed"] != seed or ckpt["batch_size"] != recipe.batch_size:
            raise ValueError(
                f"checkpoint {ckpt_file} was made with steps={ckpt['steps']}, seed={ckpt['seed']}, "
                f"batch_size={ckpt['batch_size']}; asked for steps={steps}, seed={seed}, "
                f"batch_size={recipe.batch_size}. Pass resume=False or use another out_dir.")
        for name, module in recipe.modules.items():
            module.load_state_dict(ckpt["modules"][name])
        recipe.optimizer.load_state_dict(ckpt["optimizer"])
        if recipe.load_extra_state is not None:
            recipe.load_extra_state(ckpt.get("extra", {}))
        start, seconds, log = ckpt["step"], ckpt["seconds"], ckpt["log"]
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
        seconds += time.perf_counter() - t0
        entry = {"step": step, "lr": lr}
        entry.update({k: float(v.detach()) if torch.is_tensor(v) else float(v) for k, v in out.items()})
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
        member = recipe.export()
        wfile = weights_path(out_dir, recipe.member)
        result["weights"] = str(wfile)
        result["weights_bytes"] = save_weights(member, wfile, metadata={
            **result["config"], "member": recipe.member, "steps": steps, "seed": seed})
        summary = dict(result)
        summary["loss_curve"] = [round(e["loss"], 5) for e in log[:: max(1, len(log) // 50)]]
        _atomic_write(out_dir / f"{recipe.member}.json",
                      lambda tmp: Path(tmp).write_text(json.dumps(summary, indent=1)))
    for m in recipe.modules.values():
        m.eval().cpu().to(memory_format=torch.contiguous_format)
    return result
