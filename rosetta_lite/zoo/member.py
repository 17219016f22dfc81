"""What a zoo member is: a model with its layers, preprocessing and role.

    member = Member("net", "encoder", "lite", model, ["layer1"], Preprocess(32)); member.encode(x)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from rosetta_lite.zoo.preprocess import Preprocess


class ZooError(RuntimeError):
    """A member that cannot be loaded: unknown name, missing or corrupt weights, no hub."""


def member_options(name: str, options: Any, changes: dict[str, Any]) -> Any:
    """A member's options dataclass with ``changes`` applied and checked; an unknown name is refused.

        options = member_options("biggan-deep-128", GanOptions(), {"truncation": 0.5})

    ``options`` has a ``check()`` that raises on values out of range.
    """
    accepted = [f.name for f in dataclasses.fields(options)]
    unknown = sorted(set(changes) - set(accepted))
    if unknown:
        raise ZooError(f"{name} has no option {unknown}: it accepts {accepted}")
    options = dataclasses.replace(options, **changes)
    options.check()
    return options


@dataclass
class Member:
    """A loaded model of the zoo.

        m = zoo.load("lite-gan"); z = m.sample_latents(8, seed=0); images = m.generate(z)

    ``encode(images)`` runs an encoder on images in [0, 1] (its own preprocessing first);
    record its ``layers`` with :class:`rosetta_lite.capture.Trace` around the call.
    Generators: ``sample_latents(n, seed)`` and ``generate(z)`` (images in [0, 1],
    differentiable in z); their ``layers`` are recorded around ``generate``. A generator
    with a ``reader`` (images -> latents) can guess a latent from an image; inversion
    starts one restart from that guess. Inversion optimises ``search_latents(z)`` (z itself
    but for StyleGAN2, whose W+ it is).
    """

    name: str
    kind: str  # "generator" or "encoder"
    scale: str  # "lite" or "full"
    model: nn.Module
    layers: list[str]
    preprocess: Preprocess | None = None
    trained_for: str = ""
    pretrained: bool = True
    quality: dict = field(default_factory=dict)
    forward: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = field(default=None, repr=False)
    z_dim: int | None = None
    reader: Callable[[torch.Tensor], torch.Tensor] | None = field(default=None, repr=False)

    @property
    def is_generator(self) -> bool:
        return self.kind == "generator"

    @property
    def device(self) -> torch.device:
        """Where the model's parameters are (the CPU for a model without any)."""
        return next(iter(self.model.parameters()), torch.empty(0)).device

    def to(self, device: str | torch.device) -> "Member":
        """Move the model to ``device`` (in place); returns self.

            gan = zoo.load("lite-gan").to("cuda")
        """
        self.model.to(device)
        return self

    def encode(self, images_bchw: torch.Tensor) -> torch.Tensor:
        """Run the encoder on images in [0, 1], shaped (B, 3, H, W)."""
        if self.is_generator:
            raise ZooError(f"{self.name} is a generator: call generate(z), not encode(images)")
        x = self.preprocess(images_bchw)
        return self.forward(self.model, x) if self.forward else self.model(x)

    def sample_latents(self, n: int, seed: int = 0) -> torch.Tensor:
        """``n`` latents from a seeded normal distribution (or the model's own ``sample_latents``), (n, z_dim)."""
        if not self.is_generator:
            raise ZooError(f"{self.name} is an encoder: it has no latents")
        generator = torch.Generator().manual_seed(seed)
        own = getattr(self.model, "sample_latents", None)  # a model with a latent distribution of its own
        z = own(n, generator) if callable(own) else torch.randn(n, self.z_dim, generator=generator)
        return z.to(self.device)  # drawn on the CPU: the same latents on any device

    def search_latents(self, z: torch.Tensor) -> torch.Tensor:
        """The latents inversion optimises, from sampled ``z``: ``z`` itself, unless the generator has a richer space.

            start = gan.search_latents(gan.sample_latents(4, seed=0))   # StyleGAN2: W+ rows; others: z

        ``generate`` takes what this returns as well as ``z``.
        """
        if not self.is_generator:
            raise ZooError(f"{self.name} is an encoder: it has no latents")
        return z

    def read(self, images_bchw: torch.Tensor) -> torch.Tensor | None:
        """Latents guessed from images in [0, 1] (B, z_dim), or None for a generator without a reader."""
        if not self.is_generator:
            raise ZooError(f"{self.name} is an encoder: it has no latents")
        return None if self.reader is None else self.reader(images_bchw)

    def digest(self) -> str:
        """The identity of the member's weights: 16 hex digits of a SHA-256 over every parameter and buffer.

            zoo.load("lite-clip").digest() != zoo.load("lite-clip", pretrained=False).digest()

        A trained member and its untrained copy share a name; a mining run records this, so
        that a folder of one zoo is never resumed with the other's models.
        """
        import hashlib

        hasher = hashlib.sha256()
        for key, value in sorted(self.model.state_dict().items()):
            hasher.update(key.encode())
            hasher.update(value.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
        return hasher.hexdigest()[:16]

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1], (B, 3, H, W), from latents (B, z_dim); differentiable in z."""
        if not self.is_generator:
            raise ZooError(f"{self.name} is an encoder: call encode(images), not generate(z)")
        return self.forward(self.model, z) if self.forward else self.model(z)


@dataclass(frozen=True)
class Spec:
    """How to build a member: ``build(pretrained, seed, weights, **options)`` returns a :class:`Member`.

        Spec("g", "generator", "full", "...", build, options=("truncation",))

    ``options`` names the member-specific keyword settings ``build`` accepts (none for most);
    ``default`` says whether the zoo's default set (no members named) includes it.
    """

    name: str
    kind: str
    scale: str
    trained_for: str
    build: Callable[..., Member]
    options: tuple[str, ...] = ()
    default: bool = True
