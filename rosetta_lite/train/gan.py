"""Train the lite GAN on the Shapes World (CPU-friendly, seeded, resumable).

    from rosetta_lite.train.gan import train_gan
    figures = train_gan("runs/gan", steps=6000, seed=0)
    # -> runs/gan/lite-gan.safetensors (EMA generator weights) and a figures dict

Recipe: hinge loss, spectrally normalised discriminator, Adam with betas (0, 0.9) and
learning rates 2e-4 (generator) and 4e-4 (discriminator), one discriminator step per
generator step, batch 64, a second, vision-aided discriminator (Kumari et al. 2022: small
heads on ``lite-clip``'s frozen image tower, weight 0.1, from step 500), an exponential
moving average of the generator weights (the saved model; its batch-norm statistics are
recomputed at the end), steps in bfloat16 autocast where the device has native bf16, and
fresh world images every step (training streams use seeds
>= 1000, disjoint from evaluation seeds < 100). Step ``t`` draws world images
``t*B .. t*B+B-1`` of the stream ``1000 + seed`` and its latents from a generator seeded
by ``(seed, t)``, so a run resumed from a checkpoint continues exactly as an
uninterrupted one. An optional lazy R1 penalty (``r1_gamma``) is available.
"""

from __future__ import annotations

import copy
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from rosetta_lite.device import precision_context, resolve_device
from rosetta_lite.train.checkpoints import load_checkpoint, load_weights, save_checkpoint, trained_or_shipped
from rosetta_lite.train.loop import training_precision
from rosetta_lite.world import ShapesWorld
from rosetta_lite.zoo import lite_arch
from rosetta_lite.zoo.gan_arch import (
    FeatureDiscriminator,
    LiteDiscriminator,
    LiteGenerator,
    load_generator,
    save_generator,
)
from rosetta_lite.zoo.weights import sha256

__all__ = ["GANConfig", "train_gan", "save_generator", "load_generator", "WEIGHTS_NAME"]

WEIGHTS_NAME = "lite-gan.safetensors"
CHECKPOINT_NAME = "checkpoint.pt"
TRAIN_SEED_OFFSET = 1000  # world streams used for training: 1000 + seed


@dataclass
class GANConfig:
    """Hyper-parameters of the recipe (defaults are the tuned CPU recipe)."""

    batch: int = 64
    z_dim: int = 64
    w_dim: int = 128
    g_channels: tuple[int, ...] = (256, 128, 64, 32)
    d_channels: tuple[int, ...] = (32, 64, 128, 256)
    mapping_layers: int = 1
    convs_per_block: int = 1  # 2: a 3 x 3 convolution after each upsampling (screened, not shipped)
    object_layers: int = 0  # >0: a layered head of this many one-coloured objects (screened, not shipped)
    g_lr: float = 2e-4
    d_lr: float = 4e-4
    betas: tuple[float, float] = (0.0, 0.9)
    loss: str = "hinge"  # "hinge" or "logistic" (non-saturating)
    r1_gamma: float = 0.0  # R1 penalty weight on real images (0: off; SN regularises D)
    r1_every: int = 8
    ema_kimg: float = 10.0  # half-life of the EMA in thousands of images
    ema_rampup: float = 0.05  # EMA half-life is at most this fraction of images seen
    bn_stat_batches: int = 32  # batches used to recompute the EMA generator's batch-norm statistics
    world: dict = field(default_factory=dict)  # extra ShapesWorld settings
    # vision-aided discriminator: heads on this member's frozen image tower ("" = off)
    feature_member: str = "lite-clip"
    feature_weight: float = 0.1  # weight 1, or from step 0, collapsed to one image
    feature_layers: tuple[str, ...] = ("layer2", "layer3", "layer4")  # maps read by heads (the embedding always is)
    feature_start: int = 500  # step from which the vision-aided loss counts
    # "bf16": steps under bfloat16 autocast with channels-last modules where the device has
    # native bf16 (else fp32); weights, optimizers, losses and the EMA stay fp32. 1.9x faster
    # per step on 2 AVX-512 BF16 cores, same figures at equal steps
    precision: str = "bf16"

    def __post_init__(self) -> None:
        if self.loss not in ("logistic", "hinge"):
            raise ValueError(f"loss must be 'logistic' or 'hinge', got {self.loss!r}")
        if self.feature_member not in ("", "lite-clip"):
            raise ValueError(f"feature_member must be '' (off) or 'lite-clip', got {self.feature_member!r}")
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {self.precision!r}")
        if self.batch < 2:
            raise ValueError(f"batch must be at least 2, got {self.batch}")


@torch.no_grad()
def standing_bn_stats(g: LiteGenerator, batches: int, batch: int, seed: int) -> None:
    """Recompute ``g``'s batch-norm running statistics as exact averages over ``batches``
    fresh latent batches (the EMA weights never saw their own statistics); leaves g in eval."""
    bns = [m for m in g.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    old = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    g.train()
    gen = torch.Generator().manual_seed(seed)
    for _ in range(batches):
        g(torch.randn(batch, g.z_dim, generator=gen))
    for m, mom in zip(bns, old):
        m.momentum = mom
    g.eval()


def _latents(cfg: GANConfig, seed: int, step: int, salt: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(((seed * 1_000_003 + step) * 4 + salt) % (2**63))
    return torch.randn(cfg.batch, cfg.z_dim, generator=gen)


def feature_discriminator(cfg: GANConfig, out_dir: Path) -> tuple[FeatureDiscriminator, Path]:
    """The vision-aided discriminator on ``cfg.feature_member``'s frozen image tower, and
    the weights file it was read from (``trained_or_shipped``)."""
    path = trained_or_shipped(out_dir, cfg.feature_member)
    model = load_weights(lite_arch.build_member(cfg.feature_member), path)
    return FeatureDiscriminator(model.visual, cfg.feature_member, layers=tuple(cfg.feature_layers)), path


def _d_loss(cfg: GANConfig, real_logits, fake_logits) -> torch.Tensor:
    real_logits, fake_logits = real_logits.float(), fake_logits.float()
    if cfg.loss == "hinge":
        return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def _g_loss(cfg: GANConfig, fake_logits) -> torch.Tensor:
    fake_logits = fake_logits.float()
    if cfg.loss == "hinge":
        return -fake_logits.mean()
    return F.softplus(-fake_logits).mean()


def train_gan(out_dir: str | os.PathLike, steps: int = 6000, seed: int = 0, progress: bool = True,
              checkpoint_every: int = 500, resume: bool = True, config: GANConfig | None = None,
              log_every: int = 100, device: str = "cpu") -> dict:
    """Train the lite GAN; returns a dict of figures (losses, timings, paths).

        figures = train_gan("runs/gan", steps=6000, seed=0)

    Writes ``out_dir/checkpoint.pt`` every ``checkpoint_every`` steps (atomically) and
    resumes from it when ``resume`` is true; writes the EMA generator to
    ``out_dir/lite-gan.safetensors`` at the end. Uses the threads torch is set to use, or
    ``device="cuda"``; latents and scenes are drawn on the CPU either way.
    """
    from tqdm.auto import tqdm

    cfg = config or GANConfig()
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    device = resolve_device(device)
    precision = training_precision(cfg.precision, device)
    memory_format = torch.channels_last if precision == "bf16" else torch.contiguous_format
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / CHECKPOINT_NAME
    world = ShapesWorld(size=32, **cfg.world)

    g, d, feature_d, feature_path, g_ema, opt_g, opt_d = _gan_models(cfg, seed, out, device, memory_format)
    start, elapsed, history = 0, 0.0, []
    state = load_checkpoint(ckpt_path) if resume else None
    if state is not None:
        if json.dumps(state["config"]) != json.dumps(asdict(cfg)) or state["seed"] != seed:
            raise ValueError(f"{ckpt_path} was written by another config or seed; "
                             "delete it or pass resume=False")
        g.load_state_dict(state["g"]); d.load_state_dict(state["d"]); g_ema.load_state_dict(state["g_ema"])
        opt_g.load_state_dict(state["opt_g"]); opt_d.load_state_dict(state["opt_d"])
        start, elapsed, history = state["step"], state["elapsed"], state["history"]

    def checkpoint(step: int) -> None:
        save_checkpoint({"g": g.state_dict(), "d": d.state_dict(), "g_ema": g_ema.state_dict(),
                      "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(), "step": step,
                      "elapsed": elapsed, "history": history, "config": asdict(cfg), "seed": seed},
                     ckpt_path)

    pixel_d = d["pixels"] if feature_d is not None else d
    trainable_d = [p for p in d.parameters() if p.requires_grad]
    g.train(); d.train()
    bar = tqdm(range(start, steps), initial=start, total=steps, disable=not progress,
               desc="lite-gan", unit="step")
    run = {"d": 0.0, "g": 0.0, "r1": 0.0, "real": 0.0, "fake": 0.0, "n": 0}
    t0 = t_session = time.perf_counter()
    for step in bar:
        real = world.batch(cfg.batch, seed=TRAIN_SEED_OFFSET + seed, start=step * cfg.batch).images.to(device)
        figures = _gan_step(cfg, seed, step, real, g, d, pixel_d, feature_d, trainable_d, opt_g, opt_d, precision,
                            device)
        _update_ema(g_ema, g, (step + 1) * cfg.batch, cfg)
        for key, value in figures.items():
            run[key] += value
        run["n"] += 1
        done = step + 1
        if done % log_every == 0 or done == steps:
            n = max(run.pop("n"), 1)
            row = {"step": done, **{k: v / n for k, v in run.items()}}
            history.append(row)
            bar.set_postfix(d=f"{row['d']:.3f}", g=f"{row['g']:.3f}", r1=f"{row['r1']:.3f}")
            run = {k: 0.0 for k in row if k != "step"} | {"n": 0}
        if done % checkpoint_every == 0 or done == steps:
            elapsed += time.perf_counter() - t0
            t0 = time.perf_counter()
            checkpoint(done)
    bar.close()
    elapsed += time.perf_counter() - t0
    session = time.perf_counter() - t_session

    weights = _save_ema(g_ema, cfg, steps, seed, precision, feature_path, out)
    return {
        "steps": steps,
        "seed": seed,
        "precision": precision,
        "seconds": round(elapsed, 1),
        "seconds_per_step": round(session / (steps - start), 4) if start < steps else None,
        "resumed_from": start,
        "generator_params": sum(p.numel() for p in g.parameters()),
        "discriminator_params": sum(p.numel() for p in d.parameters()),
        "weights": str(weights),
        "weights_bytes": weights.stat().st_size,
        "final": history[-1] if history else None,
        "history": history,
        "config": {**asdict(cfg), "precision": precision},  # the precision that ran
        "feature_weights": str(feature_path) if feature_path is not None else None,
    }


def _gan_models(cfg: GANConfig, seed: int, out: Path, device: torch.device, memory_format: torch.memory_format):
    """The seeded generator, discriminator(s), EMA copy and optimizers of a run; and the feature weights file."""
    torch.manual_seed(seed)
    g = _make_generator(cfg)
    d = LiteDiscriminator(channels=tuple(cfg.d_channels))
    feature_d, feature_path = feature_discriminator(cfg, out) if cfg.feature_member else (None, None)
    if feature_d is not None:
        d = torch.nn.ModuleDict({"pixels": d, "features": feature_d})
    g, d = g.to(device, memory_format=memory_format), d.to(device, memory_format=memory_format)
    g_ema = copy.deepcopy(g).eval().requires_grad_(False)
    # lazy-regularisation correction of D's Adam (StyleGAN-2); it is applied whether or not
    # R1 is on, so the default recipe's D runs at lr 4e-4 * 8/9 with beta2 = 0.9 ** (8/9)
    r1_ratio = cfg.r1_every / (cfg.r1_every + 1)
    opt_g = torch.optim.Adam(g.parameters(), lr=cfg.g_lr, betas=tuple(cfg.betas))
    opt_d = torch.optim.Adam([p for p in d.parameters() if p.requires_grad], lr=cfg.d_lr * r1_ratio,
                             betas=tuple(b ** r1_ratio for b in cfg.betas))
    return g, d, feature_d, feature_path, g_ema, opt_g, opt_d


def _save_ema(g_ema: nn.Module, cfg: GANConfig, steps: int, seed: int, precision: str, feature_path: Path | None,
              out: Path) -> Path:
    """The EMA generator with standing batch-norm statistics, written as the member's weights."""
    g_ema = g_ema.cpu()  # statistics and weights file made on the CPU, as on any machine
    standing_bn_stats(g_ema, cfg.bn_stat_batches, cfg.batch, seed=seed + 12345)
    extra = {"steps": steps, "seed": seed, "recipe": asdict(cfg), "precision": precision}
    if feature_path is not None:
        extra["feature_weights_sha256"] = sha256(Path(feature_path))
    return save_generator(g_ema, out / WEIGHTS_NAME, extra=extra)


def _gan_step(cfg: GANConfig, seed: int, step: int, real: torch.Tensor, g: nn.Module, d: nn.Module,
              pixel_d: nn.Module, feature_d: nn.Module | None, trainable_d: list, opt_g, opt_d, precision: str,
              device: torch.device) -> dict[str, float]:
    """One discriminator step (with lazy R1 on real images), then one generator step; the step's figures."""
    do_r1 = cfg.r1_gamma > 0 and step % cfg.r1_every == 0
    real.requires_grad_(do_r1)
    aided = feature_d is not None and step >= cfg.feature_start
    with precision_context(precision, device):
        with torch.no_grad():
            fake = g(_latents(cfg, seed, step, 0).to(device))
        real_logits, fake_logits = pixel_d(real), pixel_d(fake)
        feature_logits = list(zip(feature_d(real.detach()), feature_d(fake))) if aided else []
    loss_d = _d_loss(cfg, real_logits, fake_logits)
    if aided:
        loss_d = loss_d + cfg.feature_weight * sum(_d_loss(cfg, r, f) for r, f in feature_logits)
    r1 = torch.zeros((), device=device)
    if do_r1:
        (grad,) = torch.autograd.grad(real_logits.sum(), real, create_graph=True)
        r1 = grad.pow(2).sum((1, 2, 3)).mean()
        loss_d = loss_d + r1 * (cfg.r1_gamma / 2) * cfg.r1_every
    opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    opt_d.step()

    d.requires_grad_(False)
    with precision_context(precision, device):
        fake = g(_latents(cfg, seed, step, 1).to(device))
        fake_logits_g = pixel_d(fake)
        feature_logits_g = feature_d(fake) if aided else []
    loss_g = _g_loss(cfg, fake_logits_g)
    if aided:
        loss_g = loss_g + cfg.feature_weight * sum(_g_loss(cfg, f) for f in feature_logits_g)
    opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    opt_g.step()
    for p in trainable_d:
        p.requires_grad_(True)
    return {"d": loss_d.item(), "g": loss_g.item(), "r1": r1.item(), "real": real_logits.mean().item(),
            "fake": fake_logits.mean().item()}


@torch.no_grad()
def _update_ema(g_ema: nn.Module, g: nn.Module, seen: int, cfg: GANConfig) -> None:
    """Exponential moving average of the generator's weights, its half-life ramped up with images seen."""
    half_life = min(cfg.ema_kimg * 1000, seen * cfg.ema_rampup)
    beta = 0.5 ** (cfg.batch / max(half_life, 1e-8))
    for pe, p in zip(g_ema.parameters(), g.parameters()):
        pe.lerp_(p, 1 - beta)
    for be, b in zip(g_ema.buffers(), g.buffers()):
        be.copy_(b)


def _make_generator(cfg: GANConfig) -> LiteGenerator:
    return LiteGenerator(z_dim=cfg.z_dim, w_dim=cfg.w_dim, channels=tuple(cfg.g_channels),
                         mapping_layers=cfg.mapping_layers, convs_per_block=cfg.convs_per_block,
                         object_layers=cfg.object_layers)
