"""The lite GAN's recipe on the Shapes World (CPU-friendly, seeded, resumable through ``run_recipe``).

    from rosetta_lite.train.recipes import train
    summary = train("lite-gan", "runs/gan", steps=2000)
    # -> runs/gan/lite-gan.safetensors (EMA generator weights) and runs/gan/lite-gan.json

Recipe: hinge loss, spectrally normalised discriminator, Adam with betas (0, 0.9) and
learning rates 2e-4 (generator) and 4e-4 (discriminator), one discriminator step per
generator step, batch 64, a second, vision-aided discriminator (Kumari et al. 2022: small
heads on ``lite-clip``'s frozen image tower, weight 0.1, from step 500), an exponential
moving average of the generator weights (the saved model; its batch-norm statistics are
recomputed at the end), steps in bfloat16 autocast where the device has native bf16, and
fresh world images every step. Seeds count from 0: step ``t`` draws world images
``t*B .. t*B+B-1`` of the stream ``1000 + seed`` (training streams use seeds >= 1000,
disjoint from evaluation seeds < 100) and its latents from a generator seeded by
``(seed, t)``, so a run resumed from a checkpoint continues exactly as an uninterrupted
one. An optional lazy R1 penalty (``r1_gamma``) is available. The variants tried: the
book's appendix (``book/zoo_training.md``).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from rosetta_lite.train.checkpoints import load_weights, trained_or_shipped
from rosetta_lite.train.loop import Recipe
from rosetta_lite.zoo import lite_arch
from rosetta_lite.zoo.gan_arch import (
    FeatureDiscriminator,
    LiteDiscriminator,
    LiteGenerator,
    load_generator,
    save_generator,
)
from rosetta_lite.zoo.weights import sha256

__all__ = ["GANConfig", "make_recipe", "save_generator", "load_generator", "WEIGHTS_NAME"]

MEMBER = "lite-gan"
WEIGHTS_NAME = "lite-gan.safetensors"
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
    # native bf16 (else fp32), for speed; weights, optimizers, losses and the EMA stay fp32
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


OPTIONS = GANConfig()


def make_recipe(options: GANConfig, seed: int, out_dir: str | Path) -> Recipe:
    """The lite GAN's recipe (its generator, discriminators and EMA generator, seeded by ``seed``).

        run_recipe(make_recipe(GANConfig(), 0, "runs/gan"), "runs/gan", steps=2000, seed=0)

    Its step steps both players' optimizers itself; the member is the EMA generator, saved
    by ``save_generator`` with standing batch-norm statistics. ``out_dir``: where a
    ``lite-clip`` trained for the vision-aided discriminator is looked for before the shipped one.
    """
    gan = _GAN(options, seed, Path(out_dir))
    modules = {"g": gan.g, "d": gan.d, "g_ema": gan.g_ema}
    return Recipe(member=MEMBER, modules=modules, optimizer={"g": gan.opt_g, "d": gan.opt_d}, step_fn=gan.step,
                  export=lambda: gan.g_ema, batch_size=options.batch, after_step=gan.ema, world=dict(options.world),
                  config=asdict(options), precision=options.precision, save=gan.save,
                  world_seed_offset=TRAIN_SEED_OFFSET)


class _GAN:
    """The players of one run: seeded generator, discriminator(s), EMA copy and optimizers."""

    def __init__(self, cfg: GANConfig, seed: int, out_dir: Path) -> None:
        self.cfg, self.seed = cfg, seed
        torch.manual_seed(seed)
        self.g = _make_generator(cfg)
        d = LiteDiscriminator(channels=tuple(cfg.d_channels))
        self.feature_d, self.feature_path = feature_discriminator(cfg, out_dir) if cfg.feature_member else (None, None)
        self.pixel_d = d
        self.d = torch.nn.ModuleDict({"pixels": d, "features": self.feature_d}) if self.feature_d is not None else d
        self.g_ema = copy.deepcopy(self.g).eval().requires_grad_(False)
        self.trainable_d = [p for p in self.d.parameters() if p.requires_grad]
        # lazy-regularisation correction of D's Adam (StyleGAN-2); it is applied whether or not
        # R1 is on, so the default recipe's D runs at lr 4e-4 * 8/9 with beta2 = 0.9 ** (8/9)
        r1_ratio = cfg.r1_every / (cfg.r1_every + 1)
        self.opt_g = torch.optim.Adam(self.g.parameters(), lr=cfg.g_lr, betas=tuple(cfg.betas))
        self.opt_d = torch.optim.Adam(self.trainable_d, lr=cfg.d_lr * r1_ratio,
                                      betas=tuple(b ** r1_ratio for b in cfg.betas))

    def step(self, batch, step: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        """One discriminator step (with lazy R1 on real images), then one generator step; the step's figures.

        The loop runs it under the recipe's autocast: the losses, gradients and optimizer
        steps leave it, so that only the players' forward passes run in bf16.
        """
        cfg, g, pixel_d, feature_d = self.cfg, self.g, self.pixel_d, self.feature_d
        real, device = batch.images, batch.images.device
        do_r1 = cfg.r1_gamma > 0 and step % cfg.r1_every == 0
        real.requires_grad_(do_r1)
        aided = feature_d is not None and step >= cfg.feature_start
        with torch.no_grad():
            fake = g(_latents(cfg, self.seed, step, 0).to(device))
        real_logits, fake_logits = pixel_d(real), pixel_d(fake)
        feature_logits = list(zip(feature_d(real.detach()), feature_d(fake))) if aided else []
        with torch.autocast(device.type, enabled=False):
            loss_d = _d_loss(cfg, real_logits, fake_logits)
            if aided:
                loss_d = loss_d + cfg.feature_weight * sum(_d_loss(cfg, r, f) for r, f in feature_logits)
            r1 = torch.zeros((), device=device)
            if do_r1:
                (grad,) = torch.autograd.grad(real_logits.sum(), real, create_graph=True)
                r1 = grad.pow(2).sum((1, 2, 3)).mean()
                loss_d = loss_d + r1 * (cfg.r1_gamma / 2) * cfg.r1_every
            self.opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            self.opt_d.step()

        self.d.requires_grad_(False)
        fake = g(_latents(cfg, self.seed, step, 1).to(device))
        fake_logits_g = pixel_d(fake)
        feature_logits_g = feature_d(fake) if aided else []
        with torch.autocast(device.type, enabled=False):
            loss_g = _g_loss(cfg, fake_logits_g)
            if aided:
                loss_g = loss_g + cfg.feature_weight * sum(_g_loss(cfg, f) for f in feature_logits_g)
            self.opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            self.opt_g.step()
            for p in self.trainable_d:
                p.requires_grad_(True)
            # "loss" is what the loop logs and watches: non-finite when either player's is
            return {"loss": loss_d.item() + loss_g.item(), "d": loss_d.item(), "g": loss_g.item(),
                    "r1": r1.item(), "real": real_logits.mean().item(), "fake": fake_logits.mean().item()}

    def ema(self, step: int, steps: int) -> None:
        """The EMA generator follows the generator, its half-life ramped up with the images seen."""
        _update_ema(self.g_ema, self.g, (step + 1) * self.cfg.batch, self.cfg)

    def save(self, g_ema: nn.Module, path: Path, metadata: dict) -> None:
        """The EMA generator with standing batch-norm statistics, written as the member's weights."""
        g_ema = g_ema.cpu()  # statistics and weights file made on the CPU, as on any machine
        standing_bn_stats(g_ema, self.cfg.bn_stat_batches, self.cfg.batch, seed=self.seed + 12345)
        extra = {"steps": metadata["steps"], "seed": self.seed, "recipe": asdict(self.cfg),
                 "precision": metadata["precision"]}
        if self.feature_path is not None:
            extra["feature_weights_sha256"] = sha256(Path(self.feature_path))
        save_generator(g_ema, path, extra=extra)


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
