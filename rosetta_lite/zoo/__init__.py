"""Stage 2, the zoo: one API for every member, lite or full scale, generator or encoder.

    member = zoo.load("lite-resnet-sup"); maps = member.encode(images)  # images in [0, 1]

``load(name)`` gives a :class:`Member`: the model in eval mode, its default layers to
mine, its own preprocessing, and whether it is a generator or an encoder. Generators
also sample latents and generate images. ``load(name, pretrained=False, seed=s)`` builds
the same architecture with seeded untrained weights: the control zoo of chance level.
"""

from __future__ import annotations

from rosetta_lite.zoo.member import Member, ZooError
from rosetta_lite.zoo.registry import describe, load, names

__all__ = ["Member", "ZooError", "describe", "load", "names"]
