"""Where a chapter's work depends on the scale or on whether a control was mined: one call for any settings.

    report = chance_counts(run.trained, run.control)   # chance_report, or the trained counts alone
    z, shown = latents_to_edit(run, n=4, steps=60)     # lite: generated latents; full: inverted photographs
    shown = first_clusters(run.trained, 12)            # the clusters a figure draws, learned concepts first

A chapter cell stays one call whatever its parameters: a run mined with ``control=False``
(the full scale on a free Colab) has no control dictionary, and the full scale edits
photographs where the lite world edits the generator's own samples. A full-scale
dictionary can hold more clusters than a chapter can draw or edit one by one in its time.
"""

from __future__ import annotations

import dataclasses

import torch

from rosetta_lite.applications.invert import invert
from rosetta_lite.dictionary.rosetta import RosettaDictionary, chance_report
from rosetta_lite.dictionary.runs import Run
from rosetta_lite.evaluation.concepts import cluster_order
from rosetta_lite.evaluation.inversion import photographs

EDIT_SEED = 11  # the latent stream of the generated images chapter 06 edits in the lite world


def chance_counts(trained: RosettaDictionary, control: RosettaDictionary | None = None,
                  quantile: float = 0.99) -> dict:
    """:func:`~rosetta_lite.dictionary.rosetta.chance_report`, or without a control its layout with the trained counts.

        report = chance_counts(run.trained, run.control)   # run.control is None after control=False

    Without a control nothing measures chance: the control's columns (its best buddies, the
    chance level, the pairs above it) are None, and so are the control's and the
    above-chance Rosetta neurons.
    """
    if control is not None:
        return chance_report(trained, control, quantile)
    report: dict = {encoder: {"best_buddies": len(trained.buddies[encoder]), "control_best_buddies": None,
                              "chance_level": None, "above_chance": None} for encoder in trained.encoders}
    report["rosetta_neurons"] = {"trained": trained.rosetta_count(), "control": None, "trained_above_chance": None}
    return report


def first_clusters(dictionary: RosettaDictionary | None, most: int | None = None,
                   control: RosettaDictionary | None = None) -> RosettaDictionary | None:
    """The dictionary cut to its first ``most`` clusters in the order the figures draw them (learned concepts first).

        shown = first_clusters(run.trained, 12)   # most=None (or no dictionary): returned as it is

    The order is :func:`~rosetta_lite.evaluation.concepts.cluster_order`'s, beside
    ``control``; label the clusters first (``label_clusters``) for the learned ones to lead.
    The copy shares everything else with the dictionary.
    """
    if dictionary is None or most is None:
        return dictionary
    if not isinstance(most, int) or isinstance(most, bool) or most < 1:
        raise ValueError(f"most must be a whole number of clusters from 1, or None for all, got {most!r}")
    order = cluster_order(dictionary, control)[:most]
    return dataclasses.replace(dictionary, clusters=[dictionary.clusters[index] for index, _ in order])


def chance_table(report: dict):
    """The encoders' rows of :func:`chance_counts` as a table, counts as whole numbers (empty without a control).

        chance_table(chance_counts(run.trained, run.control))   # a pandas DataFrame, one row per encoder
    """
    import pandas as pd

    rows = {encoder: row for encoder, row in report.items() if encoder != "rosetta_neurons"}
    table = pd.DataFrame(rows).T
    counts = ["best_buddies", "control_best_buddies", "above_chance"]
    return table.astype({c: "Int64" for c in counts} | {"chance_level": "Float64"})[counts[:2] + ["chance_level",
                                                                                                   counts[2]]]


def concept_table(report: dict):
    """Labelled clusters per concept of a ``concept_report``: a "trained" column and, if mined, an "untrained" one.

        concept_table(concept_report(run.trained, run.control))   # a pandas DataFrame of counts
    """
    import pandas as pd

    columns = {"trained": report["trained"]["per_concept"]}
    if report.get("control") is not None:
        columns["untrained"] = report["control"]["per_concept"]
    return pd.DataFrame(columns).fillna(0).astype(int)


def latents_to_edit(run: Run, n: int, steps: int, restarts: int = 1) -> tuple[torch.Tensor, dict]:
    """The latents chapter 06 edits, and the images to show for them: (z (n, z_dim) on the CPU, rows).

        z, rows = latents_to_edit(run, n=4, steps=60)   # rows: {} in the lite world

    In the lite world: ``n`` generated latents (stream :data:`EDIT_SEED`) and no rows. At
    the full scale the paper edits real images through inversion: the first ``n``
    photographs of :func:`~rosetta_lite.evaluation.inversion.photographs` are inverted with
    the matches of every encoder (``steps`` steps, the best of ``restarts`` starts each, the
    first encoder as the perceptual judge, as chapter 05 does at full scale) and their
    latents returned, with rows "photograph" and "inverted" to show.
    """
    generator = run.generator
    if generator.scale != "full":
        return generator.sample_latents(n, seed=EDIT_SEED), {}
    with torch.no_grad():
        side = generator.generate(generator.sample_latents(1, seed=0)).shape[-1]
    photos = photographs(slice(0, n), side)
    result = invert(generator, photos, run.trained, encoders=run.encoders, perceptual=run.encoders[0], steps=steps,
                    restarts=restarts, progress=False)
    return result.z.detach().cpu(), {"photograph": photos, "inverted": result.images.detach().cpu()}
