"""rosetta_lite: mine the units that a model zoo shares (Rosetta Neurons, ICCV 2023).

    from rosetta_lite import ShapesWorld, Trace, zoo, open_run, best_buddies, invert, edit, shift

The names below are the tutorial's API: what the chapters call, one import away. Each
lives in its stage's module (``rosetta_lite.mining.loop.mine``, ...); they are looked
up on first use, so ``import rosetta_lite`` stays cheap and the stages keep importing
one way.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

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

if TYPE_CHECKING:  # what __getattr__ resolves, for editors and type checkers ("X as X": a re-export)
    from rosetta_lite import zoo as zoo
    from rosetta_lite.applications.edit import Edit as Edit
    from rosetta_lite.applications.edit import add as add
    from rosetta_lite.applications.edit import edit as edit
    from rosetta_lite.applications.edit import paste as paste
    from rosetta_lite.applications.edit import record_maps as record_maps
    from rosetta_lite.applications.edit import remove as remove
    from rosetta_lite.applications.edit import scale_unit as scale_unit
    from rosetta_lite.applications.edit import shift as shift
    from rosetta_lite.applications.edit import zoom as zoom
    from rosetta_lite.applications.invert import invert as invert
    from rosetta_lite.capture import Trace as Trace
    from rosetta_lite.capture import list_layers as list_layers
    from rosetta_lite.capture import record_encoder as record_encoder
    from rosetta_lite.capture import record_generator as record_generator
    from rosetta_lite.dictionary.match import best_buddies as best_buddies
    from rosetta_lite.dictionary.match import cluster_units as cluster_units
    from rosetta_lite.dictionary.match import rosetta_units as rosetta_units
    from rosetta_lite.dictionary.rosetta import RosettaDictionary as RosettaDictionary
    from rosetta_lite.dictionary.rosetta import above_chance as above_chance
    from rosetta_lite.dictionary.rosetta import build_dictionary as build_dictionary
    from rosetta_lite.dictionary.rosetta import chance_report as chance_report
    from rosetta_lite.dictionary.runs import mine_zoo as mine_zoo
    from rosetta_lite.dictionary.runs import open_run as open_run
    from rosetta_lite.dictionary.units import unit_maps as unit_maps
    from rosetta_lite.evaluation.concepts import concept_report as concept_report
    from rosetta_lite.evaluation.concepts import label_clusters as label_clusters
    from rosetta_lite.evaluation.editing import evaluate_editing as evaluate_editing
    from rosetta_lite.evaluation.editing import masked_psnr as masked_psnr
    from rosetta_lite.evaluation.editing import measure_removal as measure_removal
    from rosetta_lite.evaluation.editing import pixel_transform as pixel_transform
    from rosetta_lite.evaluation.editing import transform_fidelity as transform_fidelity
    from rosetta_lite.evaluation.inversion import evaluate_inversion as evaluate_inversion
    from rosetta_lite.evaluation.metrics import psnr as psnr
    from rosetta_lite.mining.loop import mine as mine
    from rosetta_lite.mining.reference import float64_error as float64_error
    from rosetta_lite.mining.settings import MiningResult as MiningResult
    from rosetta_lite.train.quality import linear_probe_by_scene as linear_probe_by_scene
    from rosetta_lite.world import EVAL_SEED as EVAL_SEED
    from rosetta_lite.world import ShapesWorld as ShapesWorld
    from rosetta_lite.zoo.preprocess import Preprocess as Preprocess
    from rosetta_lite.zoo.registry import zoo_members as zoo_members


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
