"""rosetta_lite: mine the units that a model zoo shares (Rosetta Neurons, ICCV 2023).

    from rosetta_lite import ShapesWorld, Trace, zoo, open_run, best_buddies, invert, edit, shift

The names below are the tutorial's API: what the chapters call, one import away. Each
lives in its stage's module (``rosetta_lite.mining.loop.mine``, ...); they are looked
up on first use, so ``import rosetta_lite`` stays cheap and the stages keep importing
one way.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    # world and capture
    "ShapesWorld": "rosetta_lite.world", "EVAL_SEED": "rosetta_lite.world",
    "Trace": "rosetta_lite.capture", "list_layers": "rosetta_lite.capture",
    "record_generator": "rosetta_lite.capture", "record_encoder": "rosetta_lite.capture",
    # the zoo
    "zoo": "rosetta_lite", "Preprocess": "rosetta_lite.zoo.preprocess", "zoo_members": "rosetta_lite.zoo.registry",
    # mining
    "mine": "rosetta_lite.mining.loop", "MiningResult": "rosetta_lite.mining.settings",
    "float64_error": "rosetta_lite.mining.reference",
    # the dictionary
    "best_buddies": "rosetta_lite.dictionary.match", "rosetta_units": "rosetta_lite.dictionary.match",
    "cluster_units": "rosetta_lite.dictionary.match",
    "build_dictionary": "rosetta_lite.dictionary.rosetta", "RosettaDictionary": "rosetta_lite.dictionary.rosetta",
    "chance_report": "rosetta_lite.dictionary.rosetta", "above_chance": "rosetta_lite.dictionary.rosetta",
    "unit_maps": "rosetta_lite.dictionary.units",
    "open_run": "rosetta_lite.dictionary.runs", "mine_zoo": "rosetta_lite.dictionary.runs",
    # applications
    "invert": "rosetta_lite.applications.invert",
    "edit": "rosetta_lite.applications.edit", "Edit": "rosetta_lite.applications.edit", "shift": "rosetta_lite.applications.edit",
    "zoom": "rosetta_lite.applications.edit", "remove": "rosetta_lite.applications.edit",
    "add": "rosetta_lite.applications.edit", "paste": "rosetta_lite.applications.edit",
    "scale_unit": "rosetta_lite.applications.edit", "record_maps": "rosetta_lite.applications.edit",
    # evaluation
    "psnr": "rosetta_lite.evaluation.metrics",
    "label_clusters": "rosetta_lite.evaluation.concepts", "concept_report": "rosetta_lite.evaluation.concepts",
    "evaluate_inversion": "rosetta_lite.evaluation.inversion", "evaluate_editing": "rosetta_lite.evaluation.editing",
    "pixel_transform": "rosetta_lite.evaluation.editing", "masked_psnr": "rosetta_lite.evaluation.editing",
    "transform_fidelity": "rosetta_lite.evaluation.editing",
    "measure_removal": "rosetta_lite.evaluation.editing",
    "linear_probe_by_scene": "rosetta_lite.train.quality",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'rosetta_lite' has no attribute {name!r}; the tutorial API is {__all__}")
    value = importlib.import_module(f"rosetta_lite.{name}") if module == "rosetta_lite" else \
        getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
