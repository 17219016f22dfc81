"""Rosetta-guided inversion: find the latent whose generation matches a target image.

    result = invert(gan, target_bchw, dictionary, encoders=[dino, clip], perceptual=resnet_sup)
    result.images   # (B, 3, H, W) best generations, result.z their latents

The objective of the paper's Rosetta-guided inversion, minimised per target over z:

    L = L_rec(G(z), I) + alpha * L_reg(z) - beta * L_act(z, I)

* ``L_rec`` = pixel MSE + ``perceptual_weight`` x perceptual distance. The perceptual
  distance is offline: channel-normalised feature distance of one lite encoder
  (default ``lite-resnet-sup`` layer2 and layer3), in the style of LPIPS without its
  learned heads. LPIPS itself is used only when its backbone weights are on disk
  (:func:`lpips_model` returns None otherwise; a random-backbone LPIPS is never used).
* ``L_reg`` = (||z||^2 / dim - 1)^2: keeps z on the shell where a normal latent lives.
* ``L_act`` = mean over the Rosetta pairs (G unit j, buddy D unit k) of the chosen
  encoders of the cosine, over positions of the mining grid, of the two maps each
  standardised with its mining mean and standard deviation: G's unit j on G(z) and D's
  unit k on the target. It is 1 when the standardised maps agree up to a positive
  scale, 0 when unrelated, -1 when opposite; higher is a better match.

Targets of another size are resized (bilinear, antialiased) to the generator's output
size, grey (1 channel) targets are repeated to RGB, RGBA targets lose alpha, and values
outside [0, 1] are clamped; each of these conversions emits a ``UserWarning``.

Targets are optimised ``batch_size`` at a time (each with its restarts: batch_size x
restarts latents) by :func:`~rosetta_lite.applications.optimise.optimise_latents`, which
bounds the memory; the targets never interact, so the result is that of one batch. Per
target the restart with the lowest objective is kept. A non-finite loss stops its batch,
warns with the step, and keeps the best results seen before it.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from rosetta_lite.applications.optimise import (
    Optimised,
    check_run_settings,
    joined,
    optimise_latents,
    place,
    row_batches,
)
from rosetta_lite.capture import record_encoder, record_generator
from rosetta_lite.device import precision_context
from rosetta_lite.dictionary.rosetta import MismatchError, RosettaDictionary
from rosetta_lite.progress import progress_bar
from rosetta_lite.zoo.member import Member

PERCEPTUAL_LAYERS = ("layer2", "layer3")


#: inputs that cannot be inverted: a target that is no image, another generator's dictionary, no Rosetta
#: units. It is the dictionary's own error, so that ``d.check_generator`` (called by invert, edit and the
#: evaluations) raises the one class callers of inversion and editing catch
InversionError = MismatchError


@dataclass(frozen=True)
class InversionOptions:
    """The objective's weights and the optimisation's settings, shared by :class:`Objective`,
    :func:`invert` and :func:`~rosetta_lite.evaluation.inversion.evaluate_inversion`.

        invert(gan, targets, d, encoders=[clip], options=InversionOptions(beta=2.0, steps=300))
    """

    alpha: float = 0.05  # weight of L_reg
    beta: float = 0.5  # weight of L_act
    pixel_weight: float = 1.0  # pixel MSE in L_rec
    perceptual_weight: float = 0.1  # perceptual distance in L_rec
    steps: int = 150
    restarts: int = 3  # latents per target, the best kept
    lr: float = 0.1
    seed: int = 0  # of the restarts' random latents
    progress: bool = True
    batch_size: int = 64  # targets optimised together (x restarts latents): bounds the memory, not the result
    warm_start: bool = True  # a generator with a reader starts each target's first restart from its guess
    device: str | None = None  # None: where the generator is; else every model is moved there
    precision: str = "fp32"  # the models' forward passes: fp32, tf32, bf16 or fp16 (autocast)

    def __post_init__(self) -> None:
        if self.steps < 0 or self.restarts < 1:
            raise ValueError(f"steps must be >= 0 and restarts >= 1, got steps={self.steps}, restarts={self.restarts}")
        check_run_settings(self.batch_size, self.device, self.precision)


@dataclass
class InversionResult:
    """Best latents and generations per target, with the loss history of the run."""

    z: torch.Tensor  # (B, z_dim)
    images: torch.Tensor  # (B, 3, H, W) in [0, 1]
    loss: torch.Tensor  # (B,) objective of the kept latent
    history: list[float] = field(default_factory=list)  # mean objective per step
    stopped_at: int | None = None  # step of a non-finite loss, if one stopped the run
    restarts: int = 1


def prepare_target(target: torch.Tensor, size: int) -> torch.Tensor:
    """A target as (B, 3, size, size) in [0, 1], converted with a warning when needed.

        prepare_target(torch.rand(1, 1, 64, 64), 32)   # warns twice: grey -> RGB, 64 -> 32 px
    """
    x = torch.as_tensor(target).detach().float()
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4:
        raise InversionError(f"a target is (B, C, H, W) or (C, H, W); got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise InversionError("no targets to invert: the batch holds 0 images")
    channels = x.shape[1]
    if channels == 1:
        warnings.warn("grey target (1 channel) repeated to RGB", UserWarning, stacklevel=2)
        x = x.repeat(1, 3, 1, 1)
    elif channels == 4:
        warnings.warn("RGBA target: alpha channel dropped", UserWarning, stacklevel=2)
        x = x[:, :3]
    elif channels != 3:
        raise InversionError(f"a target has 1, 3 or 4 channels; got {channels}")
    if x.shape[-2:] != (size, size):
        warnings.warn(f"target of {tuple(x.shape[-2:])} px resized to the generator's {size} x {size}",
                      UserWarning, stacklevel=2)
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    if x.min() < 0 or x.max() > 1:
        warnings.warn("target values outside [0, 1] clamped (images are expected in [0, 1])",
                      UserWarning, stacklevel=2)
        x = x.clamp(0, 1)
    return x


def lpips_model():
    """LPIPS (AlexNet) when its backbone weights are already on disk, else None (never a random backbone).

        model = lpips_model(); dist = model(a * 2 - 1, b * 2 - 1) if model else None
    """
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    if not list(hub.glob("alexnet-owt-*.pth")):
        return None
    try:
        import lpips

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return lpips.LPIPS(net="alex", verbose=False).eval()
    except Exception:  # noqa: BLE001 - anything that fails to build means: not available
        return None


def perceptual_features(encoder: Member, images: torch.Tensor,
                        layers: tuple[str, ...] = PERCEPTUAL_LAYERS) -> list[torch.Tensor]:
    """Channel-normalised features of ``encoder`` on images in [0, 1] (differentiable).

        feats = perceptual_features(zoo.load("lite-resnet-sup"), images)
    """
    maps = record_encoder(encoder, images, list(layers), grad=True)
    return [maps[layer] / (maps[layer].pow(2).sum(1, keepdim=True).sqrt() + 1e-8) for layer in layers]


def perceptual_distance(encoder: Member, a: torch.Tensor, b: torch.Tensor,
                        layers: tuple[str, ...] = PERCEPTUAL_LAYERS) -> torch.Tensor:
    """Per-image perceptual distance (B,): mean squared difference of normalised features, summed over layers.

        perceptual_distance(zoo.load("lite-resnet-sup"), G(z), targets)
    """
    with torch.no_grad():
        fb = perceptual_features(encoder, b, layers)
        fa = perceptual_features(encoder, a, layers)
    return sum(((x - y) ** 2).sum(1).mean((1, 2)) for x, y in zip(fa, fb))


def check_dictionary(generator: Member, dictionary: RosettaDictionary) -> None:
    """Deprecated: ``dictionary.check_generator(generator)``; the old name stays for code that imports it.

        check_dictionary(zoo.load("lite-gan"), d)   # == d.check_generator(zoo.load("lite-gan"))
    """
    warnings.warn("check_dictionary(g, d) is d.check_generator(g)", DeprecationWarning, stacklevel=2)
    dictionary.check_generator(generator)


def standardise(maps: dict[str, torch.Tensor], dictionary: RosettaDictionary, model: str,
                units: list[int], grid: int) -> torch.Tensor:
    """Deprecated: ``dictionary.standardise(model, units, maps, grid)``; the old name stays for code that imports it.

        standardise(record_generator(gan, z)[1], d, "lite-gan", [423, 305], grid=32)
    """
    warnings.warn("standardise(maps, d, model, units, grid) is d.standardise(model, units, maps, grid)",
                  DeprecationWarning, stacklevel=2)
    return dictionary.standardise(model, units, maps, grid)


def activation_match(g_std: torch.Tensor, d_std: torch.Tensor) -> torch.Tensor:
    """L_act per image (B,): mean over pairs of the cosine over positions of standardised maps.

        activation_match(g, g)   # 1 for every image: maps that match score highest
    """
    g, d = g_std.flatten(2), d_std.flatten(2)
    cos = (g * d).sum(-1) / (g.norm(dim=-1) * d.norm(dim=-1) + 1e-8)
    return cos.mean(1)


class Objective:
    """The inversion objective for a batch of targets; ``terms(z)`` gives each term per latent.

        objective = Objective(gan, targets, d, encoders=[clip], perceptual=resnet_sup, beta=0.5)
        objective.terms(z)["total"]   # (len(z),) for z of B * restarts latents, target-major

    ``encoders`` are zoo members whose Rosetta pairs enter ``L_act`` (empty: no
    activation term, the perceptual-only baseline). The weights and ``restarts`` come
    from ``options`` (:class:`InversionOptions`) with ``changes`` applied; without
    ``options``, one latent per target.
    """

    def __init__(self, generator: Member, targets: torch.Tensor, dictionary: RosettaDictionary | None,
                 encoders: list[Member] = (), perceptual: Member | None = None, *,
                 options: InversionOptions | None = None, **changes: Any) -> None:
        # an objective on its own scores one latent per target; invert passes its restarts
        opts = dataclasses.replace(options or InversionOptions(restarts=1), **changes)
        restarts = opts.restarts
        self.generator, self.encoders, self.perceptual = generator, list(encoders), perceptual
        self.alpha, self.beta = opts.alpha, opts.beta
        self.pixel_weight, self.perceptual_weight, self.restarts = opts.pixel_weight, opts.perceptual_weight, restarts
        with torch.no_grad():
            size = generator.generate(generator.sample_latents(1, 0)).shape[-1]
        self.targets = prepare_target(targets, size).to(generator.device)
        self.repeated = self.targets.repeat_interleave(restarts, 0)
        self.pairs: dict[str, list[tuple[int, int]]] = {}
        self.target_maps: dict[str, torch.Tensor] = {}
        if self.encoders:
            if dictionary is None:
                raise InversionError("an activation term needs a dictionary")
            dictionary.check_generator(generator)
            self.grid = dictionary.settings["grid"].get(generator.name, size)
            for encoder in self.encoders:
                if encoder.name not in dictionary.buddies:
                    raise InversionError(f"{encoder.name!r} is not an encoder of this dictionary; it has "
                                         f"{dictionary.encoders}")
                pairs = dictionary.rosetta_pairs(encoder.name)
                if not pairs:
                    raise InversionError(f"the dictionary has no Rosetta units paired with {encoder.name!r}: "
                                         "L_act would be empty; mine with more images or a larger k")
                self.pairs[encoder.name] = pairs
                with torch.no_grad():
                    maps = record_encoder(encoder, self.targets)
                    d_std = dictionary.standardise(encoder.name, [d for _, d in pairs], maps, self.grid)
                self.target_maps[encoder.name] = d_std.repeat_interleave(restarts, 0)
            self.g_units = sorted({g for pairs in self.pairs.values() for g, _ in pairs})
        self.dictionary = dictionary
        if perceptual is not None:
            with torch.no_grad():
                self.target_features = [f.repeat_interleave(restarts, 0)
                                        for f in perceptual_features(perceptual, self.targets)]

    def terms(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each term per latent: pixel, perceptual, rec, reg, act and total = rec + alpha reg - beta act."""
        images, maps = record_generator(self.generator, z, grad=True)
        pixel = ((images - self.repeated) ** 2).flatten(1).mean(1)
        zero = torch.zeros_like(pixel)
        if self.perceptual is not None:
            feats = perceptual_features(self.perceptual, images)
            percept = sum(((a - b) ** 2).sum(1).mean((1, 2)) for a, b in zip(feats, self.target_features))
        else:
            percept = zero
        reg = (z.pow(2).mean(1) - 1) ** 2
        if self.pairs:
            g_std = self.dictionary.standardise(self.generator.name, self.g_units, maps, self.grid)
            index = {g: i for i, g in enumerate(self.g_units)}
            acts = [activation_match(g_std[:, [index[g] for g, _ in pairs]], self.target_maps[name])
                    for name, pairs in self.pairs.items()]
            act = torch.stack(acts).mean(0)
        else:
            act = zero
        rec = self.pixel_weight * pixel + self.perceptual_weight * percept
        total = rec + self.alpha * reg - self.beta * act
        return {"images": images, "pixel": pixel, "perceptual": percept, "rec": rec, "reg": reg,
                "act": act, "total": total}


def invert(generator: Member, targets: torch.Tensor, dictionary: RosettaDictionary | None = None, *,
           encoders: list[Member] = (), perceptual: Member | None = None, options: InversionOptions | None = None,
           z0: torch.Tensor | None = None, **changes: Any) -> InversionResult:
    """Invert targets into the generator's latent space; the best of ``restarts`` is kept per target.

        result = invert(gan, targets, d, encoders=[zoo.load("lite-clip")], perceptual=zoo.load("lite-resnet-sup"))
        result = invert(gan, targets, d, encoders=[clip], options=InversionOptions(steps=300), beta=2.0)

    ``options`` (:class:`InversionOptions`, default: its defaults) with ``changes`` applied
    say how. Adam with a cosine learning-rate schedule from ``lr`` to 0 over ``steps``. With no
    ``encoders`` the activation term is off (the perceptual-only baseline). The restarts
    start from ``z0`` (B x restarts latents, target-major; default: latents of the stream
    ``seed``), except that for a generator with a reader (``Member.read``) and ``warm_start``
    the first restart of each target starts from the reader's guess. The latents optimised
    are ``generator.search_latents(z0)``: z, or for StyleGAN2 W+ (``result.z`` is then W+).
    Every model runs on ``device`` (moved there; None: the generator's) in ``precision``;
    targets and latents follow them.
    """
    opts = dataclasses.replace(options or InversionOptions(), **changes)
    restarts = opts.restarts
    device = place(opts.device, [generator, *encoders, perceptual])
    for member in [generator, *encoders] + ([perceptual] if perceptual else []):
        member.model.requires_grad_(False)
    with torch.no_grad():
        size = generator.generate(generator.sample_latents(1, 0)).shape[-1]
    prepared = prepare_target(targets, size)
    n = prepared.shape[0]
    if z0 is None:
        z0 = generator.sample_latents(n * restarts, seed=opts.seed)
    elif z0.shape[0] != n * restarts:
        raise InversionError(f"z0 holds one latent per target and restart ({n} x {restarts} = {n * restarts}), "
                             f"got {z0.shape[0]}")
    z0 = generator.search_latents(z0)  # the generator's own search space: z, or StyleGAN2's W+
    batches = row_batches(n, opts.batch_size)
    runs = []
    with precision_context(opts.precision, device):
        for rows in progress_bar(batches, enabled=opts.progress and len(batches) > 1, desc="inversion batches"):
            runs.append(_invert_batch(generator, prepared[rows], dictionary, encoders, perceptual, opts,
                                      z0[rows.start * restarts:rows.stop * restarts].to(device)))
    run = joined(runs)
    return InversionResult(run.z, run.kept, run.loss, run.history, run.stopped_at, restarts)


def _invert_batch(generator: Member, targets: torch.Tensor, dictionary: RosettaDictionary | None,
                  encoders: list[Member], perceptual: Member | None, opts: InversionOptions,
                  z: torch.Tensor) -> Optimised:
    """One batch of targets inverted; per target its best restart (z, loss, image)."""
    restarts = opts.restarts
    objective = Objective(generator, targets, dictionary, encoders, perceptual, options=opts)
    n = objective.targets.shape[0]
    z = z.clone()
    if opts.warm_start:
        # the reader's guess is one pass, made in float32: a reader's last steps (normal quantiles) have no bf16 kernel
        with torch.no_grad(), torch.autocast(z.device.type, enabled=False):
            guess = generator.read(objective.targets)
        if guess is not None:  # a generator that reads its scenes: the first restart of each target starts there
            z[::restarts] = guess.to(z)

    def loss(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        terms = objective.terms(z)
        return terms["total"], terms["images"]

    run = optimise_latents(z, loss, steps=opts.steps, lr=opts.lr, label="inversion", progress=opts.progress)
    pick = run.loss.view(n, restarts).argmin(1) + torch.arange(n, device=run.loss.device) * restarts
    return Optimised(run.z[pick], run.loss[pick], run.kept[pick].float(), run.history, run.stopped_at)
