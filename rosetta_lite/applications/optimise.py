"""The one latent-optimisation loop of inversion and editing.

    result = optimise_latents(z, lambda z: (((gan.generate(z) - target) ** 2).flatten(1).mean(1), None),
                              steps=100, lr=0.05, label="inversion")

Adam on the latents with a cosine learning-rate schedule from ``lr`` to 0 over ``steps``;
each latent keeps the best value it reached; a non-finite loss stops the run with a
warning, keeping what was found before it.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from rosetta_lite.progress import progress_bar

#: z -> (loss per latent (N,), a tensor (N, ...) to keep at each latent's best step, or None)
LossFn = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor | None]]


@dataclass
class Optimised:
    """Best latent of each row, its loss, what the loss kept there, and the run's history."""

    z: torch.Tensor  # (N, z_dim)
    loss: torch.Tensor  # (N,)
    kept: torch.Tensor | None  # e.g. the generated images at each latent's best step
    history: list[float] = field(default_factory=list)  # mean loss per step
    stopped_at: int | None = None  # step of a non-finite loss, if one stopped the run


def optimise_latents(z0: torch.Tensor, loss_fn: LossFn, *, steps: int, lr: float, label: str,
                     progress: bool = True) -> Optimised:
    """Minimise ``loss_fn`` over latents from ``z0``; every row is one problem, its best latent kept.

        result = optimise_latents(z, objective, steps=150, lr=0.1, label="inversion")

    Step ``steps`` is evaluated but not taken, so the best of ``steps + 1`` evaluations is
    kept. The loss of each row is summed for the gradient: rows do not interact.
    """
    if steps < 0 or lr <= 0:
        raise ValueError(f"steps must be >= 0 and lr > 0, got steps={steps}, lr={lr}")
    z = z0.detach().clone().requires_grad_(True)
    optimiser = torch.optim.Adam([z], lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=max(steps, 1))
    best_loss = torch.full((z.shape[0],), math.inf, device=z.device)
    best_z, kept = z.detach().clone(), None
    history, stopped = [], None
    for step in progress_bar(range(steps + 1), enabled=progress, desc=label, leave=False):
        loss, extra = loss_fn(z)
        if not torch.isfinite(loss).all():
            stopped = step
            warnings.warn(f"non-finite {label} loss at step {step}: stopped; keeping the best latents found "
                          "before it", RuntimeWarning, stacklevel=3)
            break
        with torch.no_grad():
            better = loss.detach() < best_loss
            best_loss = torch.where(better, loss.detach(), best_loss)
            best_z[better] = z.detach()[better]
            if extra is not None:
                kept = torch.zeros_like(extra) if kept is None else kept
                kept[better] = extra.detach()[better]
        history.append(float(loss.detach().mean()))
        if step == steps:
            break
        optimiser.zero_grad()
        loss.sum().backward()
        optimiser.step()
        schedule.step()
    return Optimised(best_z, best_loss, kept, history, stopped)
