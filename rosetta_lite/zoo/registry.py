"""Look-up of zoo members by name.

    names()                 # every member, lite first
    load("lite-clip")       # a Member
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any

from rosetta_lite.zoo import full, lite
from rosetta_lite.zoo.member import Member, Spec, ZooError

_SPECS: dict[str, Spec] = {spec.name: spec for spec in lite.SPECS + full.SPECS}


def names(scale: str | None = None, kind: str | None = None) -> list[str]:
    """Member names, optionally only one scale ("lite", "full") or kind ("generator", "encoder").

        names("lite", "encoder")
    """
    return [s.name for s in _SPECS.values() if scale in (None, s.scale) and kind in (None, s.kind)]


def default_names(scale: str, kind: str) -> list[str]:
    """The members of a zoo's default set: those a run mines when it names none.

        default_names("full", "encoder")   # the paper's five; dino-vitb8 only when named
    """
    return [s.name for s in _SPECS.values() if s.scale == scale and s.kind == kind and s.default]


def _spec(name: str) -> Spec:
    if name not in _SPECS:
        close = difflib.get_close_matches(name, list(_SPECS), n=3, cutoff=0.4)
        hint = f" Did you mean {close}?" if close else ""
        raise ZooError(f"unknown zoo member {name!r}.{hint} Known: {names()}")
    return _SPECS[name]


def load(name: str, pretrained: bool = True, seed: int = 0, weights: str | None = None, **options: Any) -> Member:
    """Build a member in eval mode; ``pretrained=False`` gives seeded untrained weights.

        gan = load("lite-gan"); control = load("lite-vit-dino", pretrained=False, seed=1)
        biggan = load("biggan-deep-256", classes=["goldfish"], truncation=0.5)

    ``options`` are member-specific settings (the BigGAN members take ``truncation`` and ``classes``,
    the StyleGAN2 ones ``truncation``, ``noise_bound`` and ``layers``).
    A pretrained member without ``weights`` reads the local file that :data:`WEIGHTS_VARIABLE`
    names for it (see :func:`use_weights`), else its hub weights.
    """
    spec = _spec(name)
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        accepted = f"it accepts {list(spec.options)}" if spec.options else "it takes none"
        raise ZooError(f"{name} has no option {unknown}: {accepted}")
    if weights is None and pretrained:
        weights = weights_files().get(name)
    return spec.build(pretrained=pretrained, seed=seed, weights=weights, **options)


#: the environment variable that names local weights files for pretrained members, e.g.
#: ``resnet50=/content/r50.pth:dino-vitb16=/content/dino.pth`` (entries split by ``os.pathsep``);
#: kept in the environment so that chapter kernels started by papermill see it too
WEIGHTS_VARIABLE = "ROSETTA_LITE_WEIGHTS"


def parse_weights(entries: list[str]) -> dict[str, str]:
    """``NAME=PATH`` entries as {member: path}, names checked: what ``--weights`` and the variable hold.

        parse_weights(["resnet50=/content/r50.pth"])   # {"resnet50": "/content/r50.pth"}
    """
    files = {}
    for entry in entries:
        name, sep, path = entry.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise ZooError(f"weights are given as NAME=PATH (a zoo member and its weights file), got {entry!r}")
        _spec(name.strip())
        files[name.strip()] = path.strip()
    return files


def weights_files() -> dict[str, str]:
    """Local weights files the environment names for pretrained members: {member: path}.

        os.environ[WEIGHTS_VARIABLE] = "resnet50=/content/r50.pth"; weights_files()   # {"resnet50": ...}

    ``load(name)`` with ``pretrained=True`` and no ``weights=`` reads the file named here
    instead of the hub; untrained members (controls included) never do.
    """
    text = os.environ.get(WEIGHTS_VARIABLE, "")
    return parse_weights([entry for entry in text.split(os.pathsep) if entry.strip()])


def use_weights(files: dict[str, str]) -> None:
    """Add local weights files for pretrained members to the environment (this process and the kernels it starts).

        use_weights({"resnet50": "/content/r50.pth"})   # zoo.load("resnet50") reads that file
    """
    given = parse_weights([f"{name}={path}" for name, path in files.items()])
    # absolute: the chapters' kernels run in the notebooks' folder, not where the path was typed
    merged = weights_files() | {name: str(Path(path).expanduser().absolute()) for name, path in given.items()}
    os.environ[WEIGHTS_VARIABLE] = os.pathsep.join(f"{name}={path}" for name, path in merged.items())


def describe(scale: str | None = None) -> list[dict]:
    """One row per member: name, kind, scale, what it was trained for.

        pandas.DataFrame(describe("lite"))
    """
    return [{"name": s.name, "kind": s.kind, "scale": s.scale, "trained for": s.trained_for}
            for s in _SPECS.values() if scale in (None, s.scale)]


ZOOS = ("lite", "full", "lite-untrained", "full-untrained")


def split_zoo(zoo: str) -> tuple[str, bool]:
    """A zoo's name as (scale, pretrained): ``split_zoo("lite-untrained")`` is ``("lite", False)``.

    The one place that reads the "-untrained" suffix; runs record their zoo by this name.
    """
    return zoo.removesuffix("-untrained"), not zoo.endswith("-untrained")


def zoo_members(scale: str, generator: str | None = None, encoders: list[str] | None = None,
                generator_options: dict[str, Any] | None = None) -> tuple[Member, list[Member]]:
    """The generator and encoders of a zoo ("lite", "full", or either with "-untrained"), or the ones named.

        gan, encoders = zoo_members("lite-untrained")
        gan, encoders = zoo_members("full", generator_options={"classes": ["goldfish"], "layers": "conv"})

    ``generator_options`` go to ``load`` for the generator (a BigGAN's ``classes``,
    ``truncation``, ``noise_bound``, ``layers``; a StyleGAN2's the same but ``classes``); an
    option set to None keeps the member's default. Without ``encoders``, the zoo's default set.
    """
    if scale not in ZOOS:
        raise ValueError(f"zoo must be one of {list(ZOOS)}, got {scale!r}")
    scale, pretrained = split_zoo(scale)
    generator = generator or next(iter(names(scale, "generator")), None)
    if generator is None:
        raise ValueError(f"the {scale} zoo has no generator yet; name one with --generator")
    encoders = encoders or default_names(scale, "encoder")
    # untrained members get distinct seeds, so that two copies of one architecture differ
    return (load(generator, pretrained=pretrained, **chosen_options(generator_options)),
            [load(name, pretrained=pretrained, seed=index) for index, name in enumerate(encoders)])


def chosen_options(options: dict[str, Any] | None) -> dict[str, Any]:
    """The member options that are set: None values (a chapter's "the member's default") left out.

        chosen_options({"classes": None, "truncation": 0.5})   # {"truncation": 0.5}
    """
    if options is not None and not isinstance(options, dict):
        raise ValueError(f"generator options are a dict of option names and values, e.g. {{'truncation': 0.5}}, "
                         f"got {options!r}")
    return {name: value for name, value in (options or {}).items() if value is not None}


def control_members(encoders: list[Member], seed: int) -> list[Member]:
    """Untrained, seeded copies of the encoders: the chance level of every count."""
    controls = []
    for offset, encoder in enumerate(encoders):
        member = load(encoder.name, pretrained=False, seed=seed + offset)
        member.name = encoder.name + CONTROL_SUFFIX
        controls.append(member)
    return controls


CONTROL_SUFFIX = "@untrained"  # names of the control zoo's encoders: "<encoder>@untrained"
