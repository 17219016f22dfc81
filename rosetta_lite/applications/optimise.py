"""The one latent-optimisation loop of inversion and editing.

    result = optimise_latents(z, lambda z: (((gan.generate(z) - target) ** 2).flatten(1).mean(1), None),
                              steps=100, lr=0.05, label="inversion")

Adam on the latents with a cosine learning-rate schedule from ``lr`` to 0 over ``steps``;
each latent keeps the best value it reached; a non-finite loss stops the run with a
warning, keeping what was found before it. Rows never interact (Adam is element-wise, the
loss is summed), so a large problem is optimised in batches of rows (:func:`row_batches`)
and the runs joined (:func:`joined`) with the result of one batch.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from rosetta_lite.device import check_precision, resolve_device
from rosetta_lite.progress import progress_bar
from rosetta_lite.zoo.member import Member

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


def row_batches(rows: int, batch_size: int) -> list[slice]:
    """Consecutive slices of at most ``batch_size`` rows covering ``rows``.

        row_batches(5, 2)   # [slice(0, 2), slice(2, 4), slice(4, 5)]
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    return [slice(start, min(start + batch_size, rows)) for start in range(0, rows, batch_size)]


def joined(runs: list[Optimised]) -> Optimised:
    """The runs of consecutive row batches as one run: rows concatenated, the history a row-weighted mean.

        run = joined([optimise_latents(z[rows], loss_of(rows), ...) for rows in row_batches(len(z), 64)])

    A step's mean covers the batches that reached it; ``stopped_at`` is the earliest stop
    (a non-finite loss stops only its own batch).
    """
    if not runs:
        raise ValueError("no runs to join")
    weights = [run.loss.shape[0] for run in runs]
    history = []
    for step in range(max(len(run.history) for run in runs)):
        present = [(run.history[step], w) for run, w in zip(runs, weights) if step < len(run.history)]
        history.append(sum(h * w for h, w in present) / sum(w for _, w in present))
    stops = [run.stopped_at for run in runs if run.stopped_at is not None]
    kept = None if any(run.kept is None for run in runs) else torch.cat([run.kept for run in runs])
    return Optimised(torch.cat([run.z for run in runs]), torch.cat([run.loss for run in runs]), kept, history,
                     min(stops) if stops else None)


def check_run_settings(batch_size: int, device: str | None, precision: str) -> None:
    """Refuse a batch size under 1, an unknown device name or precision (before any work).

        check_run_settings(64, None, "fp32")
    """
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size is a whole number of at least 1, got {batch_size!r}")
    check_precision(precision)
    if device is not None:
        resolve_device(device)


def place(device: str | None, members: list[Member | None]) -> torch.device:
    """Where inversion or editing runs: the first member's device (None), or ``device`` with every member moved there.

        device = place("cuda", [gan, clip, judge])   # gan, clip and judge now on the GPU
    """
    present = [member for member in members if member is not None]
    if device is None:
        return present[0].device
    where = resolve_device(device)
    for member in present:
        member.to(where)
    return where
