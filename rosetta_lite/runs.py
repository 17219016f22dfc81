"""A whole mining run, as the CLI and the chapters start it: zoo in, dictionaries out.

    summary = mine_zoo("lite", images=2000, out="runs/mine", control=True)

Loads the zoo's generator and encoders (and, with ``control``, untrained seeded copies of
the encoders, mined in the same pass on the same images), mines, and saves the
dictionary of the trained zoo in ``out`` and that of the control zoo in ``out/control``.
"""

from __future__ import annotations

from pathlib import Path

from rosetta_lite import zoo
from rosetta_lite.dictionary import CONTROL_SUFFIX, RosettaDictionary, build_dictionary
from rosetta_lite.files import writable_dir
from rosetta_lite.mine import MiningResult, mine

ZOOS = ("lite", "full", "lite-untrained", "full-untrained")


def zoo_members(scale: str, generator: str | None = None,
                encoders: list[str] | None = None) -> tuple[zoo.Member, list[zoo.Member]]:
    """The generator and encoders of a zoo ("lite", "full", or either with "-untrained"), or the ones named.

        gan, encoders = zoo_members("lite-untrained")
    """
    if scale not in ZOOS:
        raise ValueError(f"zoo must be one of {list(ZOOS)}, got {scale!r}")
    pretrained = not scale.endswith("-untrained")
    scale = scale.removesuffix("-untrained")
    generator = generator or next(iter(zoo.names(scale, "generator")), None)
    if generator is None:
        raise ValueError(f"the {scale} zoo has no generator yet; name one with --generator")
    encoders = encoders or zoo.names(scale, "encoder")
    # untrained members get distinct seeds, so that two copies of one architecture differ
    return (zoo.load(generator, pretrained=pretrained),
            [zoo.load(name, pretrained=pretrained, seed=index) for index, name in enumerate(encoders)])


def control_members(encoders: list[zoo.Member], seed: int) -> list[zoo.Member]:
    """Untrained, seeded copies of the encoders: the chance level of every count."""
    controls = []
    for offset, encoder in enumerate(encoders):
        member = zoo.load(encoder.name, pretrained=False, seed=seed + offset)
        member.name = encoder.name + CONTROL_SUFFIX
        controls.append(member)
    return controls


def mine_zoo(scale: str = "lite", images: int = 2000, out: str | Path = "runs/mine", *, k: int = 3,
             mode: str = "mutual", control: bool = True, control_seed: int = 1, generator: str | None = None,
             encoders: list[str] | None = None, **mine_options) -> dict | None:
    """Mine a zoo, save its dictionary (and the control's), return their summaries.

        mine_zoo("lite", images=200, out="runs/quick")
        mine_zoo("lite", images=200, out="runs/mi", similarity="mi")   # best buddies by mutual information

    ``mine_options`` go to :func:`rosetta_lite.mine.mine` (``similarity``, ``device``,
    ``precision``, ...). Under torchrun only rank 0 saves and returns the summary; the
    other processes return None.
    """
    from rosetta_lite import distributed

    out = writable_dir(out)
    gan, trained = zoo_members(scale, generator, encoders)
    controls = control_members(trained, control_seed) if control else []
    result = mine(gan, trained + controls, images, out=out,
                  control_seed=control_seed if control else None, **mine_options)
    result.settings.extra["zoo"] = scale
    if distributed.active() and distributed.dist.get_rank() != 0:
        return None
    return save_dictionaries(result, out, k=k, mode=mode)


def save_dictionaries(result: MiningResult, out: str | Path, k: int = 3, mode: str = "mutual") -> dict:
    """Build and save the trained zoo's dictionary and, if mined, the control's."""
    out = Path(out)
    names = result.settings.encoders
    trained = [n for n in names if not n.endswith(CONTROL_SUFFIX)]
    controls = [n for n in names if n.endswith(CONTROL_SUFFIX)]
    dictionary = build_dictionary(result, k, mode=mode, encoders=trained)
    dictionary.save(out)
    summary = {"images": result.settings.images, "out": str(out), "similarity": result.settings.similarity,
               "trained": dictionary.summary()}
    if controls:
        control = build_dictionary(result, k, mode=mode, encoders=controls)
        control.save(out / "control")
        summary["control"] = control.summary()
    return summary


def load_dictionaries(folder: str | Path) -> tuple[RosettaDictionary, RosettaDictionary | None]:
    """The trained zoo's dictionary and the control's (None if the run had no control)."""
    folder = Path(folder)
    control = folder / "control"
    return RosettaDictionary.load(folder), (RosettaDictionary.load(control) if control.exists() else None)
