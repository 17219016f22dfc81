"""BigGAN-deep: the full-scale zoo's ImageNet generator, class-conditional.

    gan = zoo.load("biggan-deep-256", pretrained=False)      # real shapes, untrained weights
    z = gan.sample_latents(4, seed=0, classes=["goldfish"])  # (4, 128 + 1000): noise | class vector
    images = gan.generate(z)                                  # (4, 3, 256, 256) in [0, 1]

The model definition is ``pytorch-pretrained-biggan`` (the PyTorch port of DeepMind's
TF-Hub BigGAN-deep generators, the same code and weights the paper's authors used).
A latent is one row: 128 noise values (truncated normal, scaled by ``truncation``)
followed by a 1000-way class vector (one-hot when sampled; any soft mix is allowed),
so that mining, inversion and editing handle it as any other ``(B, z_dim)`` latent.
The truncation also picks BigGAN's standing batch-norm statistics, so it is a
setting of the member (``gan.truncation = 0.4``), used both when sampling and when
generating. Mined layers are the outputs of the generator's residual blocks
(``layers="blocks"``) or every convolution (``layers="conv"``, the official code's choice).

The paper's official runs used biggan-deep-256, one ImageNet class per run
(``classes=[c]``, its ``--classidx``), noise drawn from a normal truncated to [-1, 1]
(``truncnorm.rvs(-1, 1)``) and truncation 1, and recorded every convolution: that is
``zoo.load("biggan-deep-256", classes=[c], **OFFICIAL)``. The defaults here are the
package's convention (truncated to [-2, 2], times ``truncation``, default 1.0), classes
drawn at random unless given, and the 12 residual blocks' outputs (far fewer units).
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rosetta_lite.zoo.hub import cached_download, hub_unavailable_reason, offline_error, read_state_dict
from rosetta_lite.zoo.member import Member, ZooError, member_options
from rosetta_lite.zoo.weights import check_finite

NOISE_DIM = 128
NUM_CLASSES = 1000
TRUNCATION_BOUND = 2.0  # BigGAN's noise is a normal truncated to [-2, 2] before scaling
#: which generator layers are mined: the residual blocks' outputs, or every convolution
LAYER_SETS = ("blocks", "conv")
#: the official code's settings (with one ImageNet class per run, ``classes=[c]``)
OFFICIAL = {"truncation": 1.0, "noise_bound": 1.0, "layers": "conv"}
WEIGHTS_URL = "https://s3.amazonaws.com/models.huggingface.co/biggan/{name}-pytorch_model.bin"

# (up-sample?, input width, output width) in units of channel_width = 128, per residual block,
# as in pytorch-pretrained-biggan's TF-Hub conversion (checked against it in the tests)
_BLOCKS_128 = [(False, 16, 16), (True, 16, 16), (False, 16, 16), (True, 16, 8), (False, 8, 8),
               (True, 8, 4), (False, 4, 4), (True, 4, 2), (False, 2, 2), (True, 2, 1)]
_BLOCKS_256 = [(False, 16, 16), (True, 16, 16), (False, 16, 16), (True, 16, 8), (False, 8, 8),
               (True, 8, 8), (False, 8, 8), (True, 8, 4), (False, 4, 4), (True, 4, 2), (False, 2, 2),
               (True, 2, 1)]
CONFIGS: dict[str, dict] = {
    "biggan-deep-256": dict(output_dim=256, z_dim=NOISE_DIM, class_embed_dim=128, channel_width=128,
                            num_classes=NUM_CLASSES, layers=_BLOCKS_256, attention_layer_position=8,
                            eps=1e-4, n_stats=51),
    "biggan-deep-128": dict(output_dim=128, z_dim=NOISE_DIM, class_embed_dim=128, channel_width=128,
                            num_classes=NUM_CLASSES, layers=_BLOCKS_128, attention_layer_position=8,
                            eps=1e-4, n_stats=51),
}
TRAINED_FOR = {
    "biggan-deep-256": "generating ImageNet images at 256 px, class-conditional (adversarial; BigGAN-deep)",
    "biggan-deep-128": "generating ImageNet images at 128 px, class-conditional (adversarial; BigGAN-deep)",
}
#: power iterations that bring untrained spectral-norm estimates near each weight's top singular value
_UNTRAINED_POWER_ITERATIONS = 5


def class_names() -> tuple[str, ...]:
    """The 1000 ImageNet class names, by index (open_clip's list of readable names).

        class_names()[207]   # 'Golden Retriever'
    """
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    return tuple(IMAGENET_CLASSNAMES)


def class_index(name_or_index: int | str) -> int:
    """The ImageNet index of a class given by index or by name (case-insensitive).

        class_index("goldfish")  # 1
    """
    if isinstance(name_or_index, bool) or not isinstance(name_or_index, (int, str)):
        raise ValueError(f"a class is an ImageNet index or name, got {name_or_index!r}")
    if isinstance(name_or_index, int):
        if not 0 <= name_or_index < NUM_CLASSES:
            raise ValueError(f"ImageNet class indices are 0..{NUM_CLASSES - 1}, got {name_or_index}")
        return name_or_index
    names = [n.lower() for n in class_names()]
    key = name_or_index.strip().lower()
    if key in names:
        return names.index(key)
    close = difflib.get_close_matches(key, names, n=3, cutoff=0.6)
    hint = f" Did you mean {close}?" if close else ""
    raise ValueError(f"no ImageNet class named {name_or_index!r}.{hint} "
                     f"See rosetta_lite.zoo.biggan.class_names()")


def truncated_noise(n: int, truncation: float, generator: torch.Generator, dim: int = NOISE_DIM,
                    bound: float = TRUNCATION_BOUND) -> torch.Tensor:
    """BigGAN's noise: a normal truncated to [-bound, bound], times ``truncation``; (n, dim), seeded.

        z = truncated_noise(4, 0.5, torch.Generator().manual_seed(0))
    """
    noise = torch.randn(n, dim, generator=generator)
    # redraw the out-of-range values (rejection sampling): exact, and deterministic given the generator
    outside = noise.abs() > bound
    while outside.any():
        noise[outside] = torch.randn(int(outside.sum()), generator=generator)
        outside = noise.abs() > bound
    return noise * truncation


@dataclass
class ConditionalGenerator(Member):
    """A class-conditional generator member: latents are noise and a class vector side by side.

        gan = zoo.load("biggan-deep-128", pretrained=False); gan.classes = (1,)
        images = gan.generate(gan.sample_latents(2, seed=0))   # two goldfish, in [0, 1]

    ``classes``: the classes to sample from (indices or names; None for all 1000).
    ``truncation`` in (0, 1]: scales the truncated noise and picks the standing statistics.
    ``noise_bound``: the noise is a normal truncated to [-noise_bound, noise_bound].
    """

    noise_dim: int = NOISE_DIM
    num_classes: int = NUM_CLASSES
    truncation: float = 1.0
    classes: tuple[int | str, ...] | None = None
    noise_bound: float = TRUNCATION_BOUND

    def sample_latents(self, n: int, seed: int = 0, classes: Sequence[int | str] | None = None) -> torch.Tensor:
        """``n`` seeded latents (n, noise_dim + num_classes): truncated noise and one-hot classes.

            z = gan.sample_latents(8, seed=0, classes=[207, "goldfish"])

        Each latent's class is drawn uniformly from ``classes`` (default: the member's
        ``classes``, else all classes), with the same seed as the noise.
        """
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        truncation = self._checked_truncation()
        pool = classes if classes is not None else self.classes
        indices = (torch.arange(self.num_classes) if pool is None
                   else torch.tensor([class_index(c) for c in pool], dtype=torch.long))
        if indices.numel() == 0:
            raise ValueError("classes is empty; give at least one ImageNet class, or None for all")
        generator = torch.Generator().manual_seed(seed)
        noise = truncated_noise(n, truncation, generator, self.noise_dim, self.noise_bound)
        chosen = indices[torch.randint(len(indices), (n,), generator=generator)]
        return self.latents_for(noise, chosen)

    def latents_for(self, noise: torch.Tensor, classes: torch.Tensor | Sequence[int | str]) -> torch.Tensor:
        """Latents from given noise (n, noise_dim) and one class per row (indices or names).

            z = gan.latents_for(torch.zeros(2, 128), [207, 1])
        """
        if not torch.is_tensor(classes):
            classes = torch.tensor([class_index(c) for c in classes], dtype=torch.long)
        if noise.dim() != 2 or noise.shape[1] != self.noise_dim or len(classes) != noise.shape[0]:
            raise ValueError(f"need noise (n, {self.noise_dim}) and n classes, got noise {tuple(noise.shape)} "
                             f"and {len(classes)} classes")
        one_hot = nn.functional.one_hot(classes.long(), self.num_classes).to(noise.dtype)
        return torch.cat([noise, one_hot], 1)

    def split_latents(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(noise, class vector) of latents (B, noise_dim + num_classes).

            noise, class_vector = gan.split_latents(z)
        """
        if z.dim() != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"{self.name} takes latents (B, {self.z_dim}) = {self.noise_dim} noise values and "
                             f"a {self.num_classes}-way class vector (see sample_latents), got {tuple(z.shape)}")
        return z[:, :self.noise_dim], z[:, self.noise_dim:]

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1], (B, 3, R, R), from latents (B, z_dim); differentiable in z."""
        noise, class_vector = self.split_latents(z)
        # the model ends with tanh: [-1, 1] -> [0, 1], the zoo's image convention
        return (self.model(noise, class_vector, self._checked_truncation()) + 1) / 2

    def _checked_truncation(self) -> float:
        truncation = float(self.truncation)
        if not 0 < truncation <= 1:
            raise ValueError(f"truncation must be in (0, 1] (BigGAN's standing statistics cover that range), "
                             f"got {self.truncation}")
        return truncation


def block_layers(model: nn.Module) -> list[str]:
    """Names of the generator's residual blocks, coarse to fine: the default layers to mine.

        block_layers(gan.model)   # ['generator.layers.0', ..., 'generator.layers.12']

    The self-attention module between blocks is left out: its output is its input plus
    a learned fraction of attention, so its units would near-duplicate the block before.
    """
    from pytorch_pretrained_biggan.model import GenBlock

    return [f"generator.layers.{i}" for i, layer in enumerate(model.generator.layers) if isinstance(layer, GenBlock)]


def conv_layers(model: nn.Module) -> list[str]:
    """Every convolution of the generator, as the paper's official code mines for BigGAN.

        gan.layers = conv_layers(gan.model)   # 4 per block, attention's, and the RGB one
    """
    return [name for name, module in model.named_modules() if "conv" in name and isinstance(module, nn.Conv2d)]


def _spectral_norm_hooks(model: nn.Module):
    from torch.nn.utils.spectral_norm import SpectralNorm

    for module in model.modules():
        for hook in module._forward_pre_hooks.values():
            if isinstance(hook, SpectralNorm):
                yield module, hook


def _settle_untrained(model: nn.Module) -> None:
    """Make freshly initialised weights usable: a random generator of the real shapes whose
    activations stay in range, as a control needs.

    The package leaves the last batch norm's affine weights uninitialised (``torch.Tensor(n)``),
    and spectral norm starts from random singular-vector estimates whose ``u^T W v`` is near
    zero, which blows activations up to inf within three blocks. A few power iterations give
    every weight its proper scale (1 / top singular value), as training would have.
    """
    with torch.no_grad():
        model.generator.bn.weight.fill_(1.0)
        model.generator.bn.bias.zero_()
        for module, hook in _spectral_norm_hooks(model):
            for _ in range(_UNTRAINED_POWER_ITERATIONS):
                hook.compute_weight(module, do_power_iteration=True)


def _weights_file(weights: str) -> Path:
    path = Path(weights)
    if path.is_dir():
        # the layout of BigGAN.from_pretrained's folders: pytorch_model.bin beside config.json
        path = path / "pytorch_model.bin"
    if not path.exists():
        raise ZooError(f"weights file {str(path)!r} does not exist")
    return path


def _pretrained_state(name: str, weights: str | None) -> tuple[dict[str, torch.Tensor], str]:
    """The released weights of ``name`` (from ``weights`` or the download) and where they came from."""
    if weights is not None:
        return read_state_dict(str(_weights_file(weights))), weights
    url = WEIGHTS_URL.format(name=name)
    cached = cached_download(url, f"{name}-pytorch_model.bin")
    if cached is not None:  # downloaded before: no network needed
        return read_state_dict(str(cached)), str(cached)
    reason = hub_unavailable_reason("s3.amazonaws.com")
    if reason:
        raise offline_error(name, reason, url)
    try:
        return torch.hub.load_state_dict_from_url(url, map_location="cpu", file_name=f"{name}-pytorch_model.bin",
                                                  weights_only=True), url
    except Exception as error:  # any network or storage failure: say what to do instead
        raise ZooError(f"{name}: downloading {url} failed ({error}). Download it by hand and pass "
                       f"zoo.load({name!r}, weights='path/to/{name}-pytorch_model.bin')") from error


def _load_state(name: str, model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    check_finite(state, source)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as error:  # shapes differ: another resolution's file, or another model's
        raise ZooError(f"weights {source!r} do not fit {name}: {_first_mismatch(error)}") from error
    # the released files hold every parameter and buffer; a handful missing is worth a warning,
    # anything unexpected or more missing means a file of something else
    if unexpected or len(missing) > 0.01 * len(model.state_dict()):
        raise ZooError(f"weights {source!r} do not fit {name}: {len(missing)} keys missing (e.g. {missing[:2]}), "
                       f"{len(unexpected)} unexpected (e.g. {unexpected[:2]})")
    if missing:
        warnings.warn(f"{name}: weights {source!r} lack {missing}; those keep their initial values")


def _first_mismatch(error: RuntimeError) -> str:
    lines = [line.strip() for line in str(error).splitlines() if "size mismatch" in line]
    return lines[0] if lines else str(error)


@dataclass(frozen=True)
class GanOptions:
    """The settings of a BigGAN member (``zoo.load``'s options): how it samples and which layers are mined.

        build("biggan-deep-256", pretrained=False, options=GanOptions(classes=("goldfish",), **OFFICIAL))
    """

    truncation: float = 1.0  # in (0, 1]; scales the noise and picks the standing statistics
    classes: Sequence[int | str] | None = None  # None: a random class per latent; the official code: one
    noise_bound: float = TRUNCATION_BOUND  # the noise's truncation to [-bound, bound]; the official code: 1
    layers: str = "blocks"  # one of LAYER_SETS; the official code: "conv"

    def check(self) -> None:
        """Raise a ValueError naming the setting that is out of range and what is allowed."""
        if isinstance(self.truncation, bool) or not isinstance(self.truncation, (int, float)) \
                or not 0 < self.truncation <= 1:
            raise ValueError(f"truncation must be in (0, 1] (BigGAN's standing statistics cover that range), "
                             f"got {self.truncation!r}")
        if self.layers not in LAYER_SETS:
            raise ValueError(f"layers must be one of {list(LAYER_SETS)} (residual block outputs or every "
                             f"convolution), got {self.layers!r}")
        if isinstance(self.noise_bound, bool) or not isinstance(self.noise_bound, (int, float)) \
                or not 0 < self.noise_bound <= 10:
            raise ValueError(f"noise_bound must be a number in (0, 10] (BigGAN: 2; the official code: 1), "
                             f"got {self.noise_bound!r}")
        if isinstance(self.classes, (str, int)):
            raise ValueError(f"classes must be a list of ImageNet classes, e.g. [{self.classes!r}], "
                             f"got {self.classes!r}")


#: the option names ``zoo.load`` accepts for a BigGAN member
GAN_OPTIONS = tuple(f.name for f in fields(GanOptions))


def build(name: str, pretrained: bool = True, seed: int = 0, weights: str | None = None,
          options: GanOptions | None = None, **changes: Any) -> ConditionalGenerator:
    """Build a BigGAN-deep member in eval mode; ``pretrained=False`` gives seeded untrained weights.

        gan = build("biggan-deep-128", pretrained=False, seed=1, truncation=0.5, classes=["goldfish"])

    ``changes`` named like a field of :class:`GanOptions` apply to ``options``.
    """
    if name not in CONFIGS:
        raise ZooError(f"unknown BigGAN member {name!r}; known: {list(CONFIGS)}")
    options = member_options(name, options or GanOptions(), changes)
    # fail before seconds of building on a misspelt class
    classes = None if options.classes is None else tuple(class_index(c) for c in options.classes)
    from pytorch_pretrained_biggan import BigGAN, BigGANConfig

    # fetch (or fail to fetch) the weights before spending seconds on building the model
    state, source = _pretrained_state(name, weights) if pretrained or weights is not None else (None, "")
    config = BigGANConfig(**{k: (list(v) if isinstance(v, list) else v) for k, v in CONFIGS[name].items()})
    torch.manual_seed(seed)
    model = BigGAN(config)
    if state is not None:
        _load_state(name, model, state, source)
    else:
        _settle_untrained(model)
    model.eval()
    layers = conv_layers(model) if options.layers == "conv" else block_layers(model)
    member = ConditionalGenerator(
        name, "generator", "full", model, layers, trained_for=TRAINED_FOR[name],
        pretrained=pretrained or weights is not None, z_dim=NOISE_DIM + NUM_CLASSES,
        truncation=float(options.truncation), classes=classes, noise_bound=float(options.noise_bound))
    return member


def resolution(name: str) -> int:
    """Side in pixels of the images a BigGAN member generates.

        resolution("biggan-deep-256")  # 256
    """
    return CONFIGS[name]["output_dim"]

