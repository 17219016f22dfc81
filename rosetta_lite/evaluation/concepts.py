"""Concept labels for Rosetta clusters, from the Shapes World's ground truth.

    report = concept_report(*load_dictionaries("runs/lite"), pretrained=True)

GAN samples have no ground truth; Shapes World images do. Network dissection, lite:
every encoder unit of a cluster is run on held-out world images (seed 7, the
evaluation stream that no training run draws from), its map is upsampled to the image
size (bilinear), binarised at a threshold fixed over all images, and compared with
every ground-truth mask (sky, ground, object, contour, each shape, each colour) by
intersection over union, pooled over all images. A cluster gets the concept that its
members agree on best: the highest mean score, averaged first over each encoder's
units and then over the encoders, so that every model of the zoo weighs the same.

Thresholds. Network dissection keeps one top quantile per unit (0.5% of the pixels),
which caps the IoU of large regions: a unit that is exactly the sky (about 45% of the
pixels) would score 0.01 against it. Here each unit is cut at every top fraction of
:data:`TOP_FRACTIONS` (0.5% to 60% of all its pixels, consecutive fractions at most
1.4 apart from 1.5% up; quantiles from a seeded subsample of pixels) and each (unit,
concept) pair keeps its best over them, so a unit that is a concept reaches an IoU near 1 whatever
the concept's size (measured: 0.83 to 0.99 for masks plus noise, sky 0.94, ground 0.94).

Chance. Large regions also give high IoU by chance: a random unit cut at its top 50%
has an IoU of about 0.3 with the sky. So units are ranked by the IoU above chance,
``(IoU - c) / (1 - c)`` with ``c = f a / (f + a - f a)`` the IoU of a unit active on a
fraction f of the pixels, independent of a concept of area a: 1 for a perfect match,
about 0 for chance, for every concept size. The best fraction is chosen by this score,
clusters are labeled by it (``min_iou``) and the plain IoU is reported beside it.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from rosetta_lite.capture import Trace
from rosetta_lite.dictionary.rosetta import Cluster, RosettaDictionary
from rosetta_lite.dictionary.runs import mined_members
from rosetta_lite.world import EVAL_SEED, ShapesWorld
from rosetta_lite.zoo.member import Member

TOP_FRACTIONS: tuple[float, ...] = (0.005, 0.01, 0.015, 0.02, 0.03, 0.04, 0.055, 0.075, 0.1, 0.13, 0.17,
                                    0.22, 0.3, 0.4, 0.5, 0.6)
MIN_IOU = 0.2  # a cluster whose best mean IoU above chance is below this gets no concept
THRESHOLD_SAMPLES = 16384  # pixels per unit that the quantiles are taken from
CHUNK_ELEMENTS = 1 << 24  # upsampled values held at once (64 MiB of float32)

MapSource = Callable[[], Iterator[list[torch.Tensor]]]  # yields [(pixels, units of a part)], a few images at a time


BACKGROUND_CONCEPTS = ("sky", "ground")


def learned_concept(concept: str) -> bool:
    """Whether a concept is one training must teach: not sky, ground or a colour (which chance gives).

        learned_concept("shape:circle")   # True; learned_concept("sky") is False
    """
    return concept not in BACKGROUND_CONCEPTS and not concept.startswith("colour:")


def cluster_order(trained: RosettaDictionary, control: RosettaDictionary | None = None,
                  other: str = "control") -> list[tuple[int, str]]:
    """The clusters of a labelled dictionary, learned concepts first, each with what it is beside the control.

        cluster_order(run.trained, run.control)   # [(3, "learned, not in the control"), (0, "sky, control too")]

    Labels are the clusters' ``concept`` (set by :func:`label_clusters`). Order: learned
    concepts the control lacks, learned ones it has too, other labels it lacks, other
    labels it has, unlabelled; within each, the dictionary's order (best correlation first).
    ``other`` names the compared dictionary in the words (the control's own order: "trained").
    """
    theirs = {c.concept for c in control.clusters if c.concept} if control is not None else set()
    ranked = []
    for index, cluster in enumerate(trained.clusters):
        concept = cluster.concept
        if concept is None:
            ranked.append((4, index, "unlabelled"))
            continue
        learned = learned_concept(concept)
        shared = concept in theirs
        kind = "learned" if learned else "background"
        where = "" if control is None else (f", {other} too" if shared else f", not in the {other}")
        ranked.append(((0 if learned else 2) + shared, index, kind + where))
    return [(index, what) for _, index, what in sorted(ranked)]


def concept_names(world: ShapesWorld | None = None) -> list[str]:
    """The concepts scored, in column order: the world's mask names.

        concept_names()  # ['sky', 'ground', 'object', 'contour', 'shape:circle', ...]
    """
    return (world or ShapesWorld()).mask_names


def stack_masks(masks: dict[str, torch.Tensor], names: list[str] | None = None) -> torch.Tensor:
    """Masks by name, (N, H, W) bool each, as one (N, concepts, H, W) bool tensor.

        stack_masks(ShapesWorld().batch(8, seed=7).masks)
    """
    names = list(masks) if names is None else names
    missing = [n for n in names if n not in masks]
    if missing:
        raise ValueError(f"no mask for concept(s) {missing}; masks hold {list(masks)}")
    return torch.stack([masks[n].bool() for n in names], 1)


@dataclass
class ConceptIoU:
    """How well units match concepts; every tensor is (units, concepts).

    ``score``: IoU above chance, the best over the top fractions; ``iou``: the plain IoU
    at that fraction; ``fraction``: the top fraction of pixels the unit was cut at.
    """

    score: torch.Tensor
    iou: torch.Tensor
    fraction: torch.Tensor
    concepts: list[str]


def map_ious(maps: torch.Tensor | Sequence[torch.Tensor], masks: torch.Tensor,
             fractions: Iterable[float] = TOP_FRACTIONS, concepts: list[str] | None = None,
             samples: int = THRESHOLD_SAMPLES) -> ConceptIoU:
    """Score every unit's maps against every concept mask: IoU above chance, best over the top fractions.

        result = map_ious(maps_nuhw, stack_masks(batch.masks), concepts=concept_names())

    ``maps``: (N, units, h, w) maps of the images in the order of ``masks`` (N, concepts,
    H, W) bool, or a list of such tensors (say one per layer, each its own h, w) whose
    units are taken in turn; they are upsampled here (bilinear) to the masks' size, a
    few images at a time, in two passes (thresholds, then counts). Per unit, the
    thresholds leave the top ``fractions`` of all its pixels (quantiles over ``samples``
    seeded pixel positions: fixed over the whole set, as in network dissection, not per
    image). Intersections
    and unions are pooled over all images. A unit active on a fraction f of the pixels,
    independent of a concept of area a, has the chance IoU c = f a / (f + a - f a);
    ``score = (IoU - c) / (1 - c)`` is 1 for a perfect match and about 0 for chance,
    whatever the concept's size.
    """
    fractions = tuple(sorted({float(f) for f in fractions}, reverse=True))  # thresholds ascending
    if not 0 < len(fractions) <= 64 or fractions[-1] <= 0 or fractions[0] >= 1:
        raise ValueError(f"give 1 to 64 top fractions in (0, 1), got {list(fractions)}")
    if masks.dim() != 4:
        raise ValueError(f"masks must be (N, concepts, H, W), got shape {tuple(masks.shape)}")
    n, n_concepts, height, width = masks.shape
    concepts = list(concepts) if concepts is not None else [f"concept {i}" for i in range(n_concepts)]
    if len(concepts) != n_concepts:
        raise ValueError(f"{len(concepts)} concept names for {n_concepts} masks")
    maps = _chunks([maps] if isinstance(maps, torch.Tensor) else list(maps), n, (height, width))
    n_pixels = n * height * width
    thr = _thresholds(maps, n_pixels, fractions, samples)  # (T, units), ascending along T
    every, inside = _bin_counts(maps, masks, thr)
    # pixels above threshold t: bins t+1 .. steps; suffix sums over the bins
    active = every.flip(0).cumsum(0).flip(0)[1:]  # (T, units)
    inter = inside.flip(1).cumsum(1).flip(1)[:, 1:]  # (C, T, units)
    area = masks.flatten(2).sum((0, 2)).double()[:, None, None]  # (C, 1, 1)
    union = active[None] + area - inter
    iou = torch.where(union > 0, inter / union.clamp_min(1), torch.zeros_like(inter))
    f, a = active[None] / n_pixels, area / n_pixels
    chance = f * a / (f + a - f * a).clamp_min(1e-12)
    score = torch.where(chance < 1, (iou - chance) / (1 - chance).clamp_min(1e-12), torch.zeros_like(iou))
    best, at = score.max(1)  # over the fractions: (C, units)
    chosen_iou = iou.gather(1, at[:, None]).squeeze(1)
    return ConceptIoU(best.T.float().contiguous(), chosen_iou.T.float().contiguous(),
                      torch.tensor(fractions)[at].T.contiguous(), concepts)


def _bin_counts(maps: MapSource, masks: torch.Tensor, thr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Histograms of each unit's threshold bins: over all pixels (T+1, units) and over each concept's
    pixels (concepts, T+1, units); a pixel's bin is how many of the unit's thresholds it exceeds.

    Pixels are grouped by the set of concepts they belong to (their row of ``masks``; a world has
    a few dozen such sets), so one histogram over (set, bin, unit) gives every concept's counts.
    """
    n, n_concepts, height, width = masks.shape
    steps, units = thr.shape
    rows_of_masks = masks.permute(0, 2, 3, 1).reshape(-1, n_concepts)
    sets, key = torch.unique(rows_of_masks, dim=0, return_inverse=True)  # (S, C), (pixels,)
    per_set = torch.zeros(sets.shape[0] * (steps + 1) * units, dtype=torch.float64)
    bounds = thr.T.contiguous()  # (units, T), ascending per unit
    first = 0
    for parts in maps():
        pixels = parts[0].shape[0]
        lo = 0
        for rows in parts:  # (P, units of this part)
            hi = lo + rows.shape[1]
            bins = torch.searchsorted(bounds[lo:hi], rows.T.contiguous())  # thresholds strictly below
            index = key[first:first + pixels][None, :].mul(steps + 1).add(bins).mul_(units)
            index.add_(torch.arange(lo, hi)[:, None])
            per_set += torch.bincount(index.flatten(), minlength=per_set.numel()).double()
            lo = hi
        first += pixels
    if first != n * height * width:
        raise ValueError(f"the maps cover {first // (height * width)} images, the masks {n}")
    per_set = per_set.view(sets.shape[0], steps + 1, units)
    inside = torch.einsum("sc,stu->ctu", sets.double(), per_set)
    return per_set.sum(0), inside


def _thresholds(maps: MapSource, n_pixels: int, fractions: tuple[float, ...], samples: int,
                seed: int = 0) -> torch.Tensor:
    """Per unit, the values above which lie the top ``fractions`` of all pixels: (fractions, units).

    ``maps()`` yields lists of (pixels, units) rows at image size, all images in order,
    ``n_pixels`` pixels in all; the quantiles are taken from a seeded subsample of
    ``samples`` pixel positions, the same for every unit.
    """
    count = min(samples, n_pixels)
    picks = torch.randperm(n_pixels, generator=torch.Generator().manual_seed(seed))[:count].sort().values
    taken, offset = [], 0
    for parts in maps():  # per part, (pixels of this batch, units of the part)
        pixels = parts[0].shape[0]
        lo, hi = torch.searchsorted(picks, torch.tensor([offset, offset + pixels])).tolist()
        chosen = picks[lo:hi] - offset
        taken.append(torch.cat([rows.index_select(0, chosen) for rows in parts], 1))
        offset += pixels
    if offset != n_pixels:
        raise ValueError(f"the maps cover {offset} pixels, expected {n_pixels}")
    values = torch.cat(taken).T.contiguous().sort(1).values  # (units, count)
    index = ((1 - torch.tensor(fractions, dtype=torch.float64)) * (count - 1)).round().long()
    return values[:, index.clamp(0, count - 1)].T.contiguous()


def layer_maps(member: Member, images: torch.Tensor, units: list[int] | None = None, *,
              batch_size: int = 64) -> tuple[dict[str, torch.Tensor], list[tuple[str, int]]]:
    """Native-resolution maps of an encoder's units (flat indices over its layers, default all).

        per_layer, order = layer_maps(member, batch.images, units=[3, 700])

    ``per_layer`` maps a layer to its chosen channels' maps (N, chosen, h, w); ``order``
    gives, for each requested unit in turn, its (layer, position among the chosen).
    """
    channels = _layer_channels(member, images[:1])
    wanted = list(range(sum(channels.values()))) if units is None else [int(u) for u in units]
    where, starts, first = [], {}, 0
    for layer, count in channels.items():
        starts[layer] = first
        first += count
    total = first
    bad = [u for u in wanted if not 0 <= u < total]
    if bad:
        raise IndexError(f"{member.name} has {total} units; no unit(s) {bad[:5]}")
    chosen: dict[str, list[int]] = {layer: [] for layer in channels}
    for u in wanted:
        layer = next(name for name in reversed(list(starts)) if u >= starts[name])
        where.append((layer, len(chosen[layer])))
        chosen[layer].append(u - starts[layer])
    keep = {layer: torch.tensor(c, dtype=torch.long) for layer, c in chosen.items() if c}
    parts: dict[str, list[torch.Tensor]] = {layer: [] for layer in keep}
    with torch.no_grad():
        for first in range(0, images.shape[0], batch_size):
            with Trace(member.model, list(keep), stop=True) as trace:
                member.encode(images[first:first + batch_size])
            for layer, index in keep.items():
                parts[layer].append(trace.outputs[layer].float()[:, index])
    return {layer: torch.cat(p) for layer, p in parts.items()}, where


@dataclass
class UnitIoUOptions:
    """How :func:`unit_ious` draws its scenes (when given none) and scores the units.

        unit_ious(member, options=UnitIoUOptions(n_images=100, size=64))
    """

    n_images: int = 300  # Shapes World scenes drawn when no images are given
    seed: int = EVAL_SEED  # their stream
    size: int = 32  # their side in pixels
    fractions: Iterable[float] = TOP_FRACTIONS  # top fractions each unit is cut at (see map_ious)
    batch_size: int = 64  # images through the encoder at once


def unit_ious(member: Member, units: list[int] | None = None, images: torch.Tensor | None = None,
              masks: dict[str, torch.Tensor] | None = None, *, options: UnitIoUOptions | None = None,
              **changes: Any) -> ConceptIoU:
    """Score an encoder's units (flat indices over its layers, default all) against every concept.

        result = unit_ious(zoo.load("lite-vit-dino", pretrained=False), units=[5, 900]); result.score

    ``options`` (:class:`UnitIoUOptions`, default: its defaults) with ``changes`` applied
    say how. Without ``images``: ``n_images`` Shapes World scenes of stream ``seed``
    (``size`` pixels) and their masks. Returns a :class:`ConceptIoU`, (units, concepts)
    tensors in the order of ``units`` and of the masks; see :func:`map_ious` for the thresholds.
    """
    o = dataclasses.replace(options or UnitIoUOptions(), **changes)
    if images is None:
        batch = ShapesWorld(size=o.size).batch(o.n_images, seed=o.seed)
        images, masks = batch.images, batch.masks
    if masks is None:
        raise ValueError("give the masks of the images: a dict name -> (N, H, W) bool")
    names = list(masks)
    stacked = stack_masks(masks, names)
    if images.shape[0] != stacked.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {stacked.shape[0]} masks")
    per_layer, where = layer_maps(member, images, units, batch_size=o.batch_size)
    if not where:
        empty = torch.zeros(0, len(names))
        return ConceptIoU(empty, empty.clone(), empty.clone(), names)
    layers = list(per_layer)
    first = {layer: sum(per_layer[k].shape[1] for k in layers[:i]) for i, layer in enumerate(layers)}
    order = torch.tensor([first[layer] + pos for layer, pos in where])  # requested unit -> row of the result
    result = map_ious([per_layer[layer] for layer in layers], stacked, o.fractions, names)
    return ConceptIoU(result.score[order], result.iou[order], result.fraction[order], names)


def label_clusters(dictionary: RosettaDictionary, members: dict[str, Member], n_images: int = 300,
                   seed: int = EVAL_SEED, min_iou: float = MIN_IOU,
                   fractions: Iterable[float] = TOP_FRACTIONS) -> list[dict]:
    """Give every cluster the concept its encoder units agree on best; fills ``cluster.concept`` and ``.iou``.

        labels = label_clusters(d, {name: zoo.load(name) for name in d.encoders})

    Each member unit is scored on ``n_images`` Shapes World scenes of stream ``seed``
    (:func:`unit_ious`). Per cluster and concept, the scores (IoU above chance) are
    averaged over each encoder's member units, then over the encoders; the concept with
    the best mean score wins, and counts as a label when that score is at least
    ``min_iou``. ``cluster.concept`` gets the concept (None when below ``min_iou``) and
    ``cluster.iou`` the mean plain IoU of the winning concept. Returns one dict per
    cluster: cluster, concept, best_concept, score, iou, labeled, per_encoder (each
    encoder's units, its mean score and IoU on the winning concept, its own best concept).
    """
    missing = [e for e in dictionary.encoders if e not in members]
    if missing:
        raise ValueError(f"no member given for encoder(s) {missing}")
    wanted = {e: cluster_units_of(dictionary, e) for e in dictionary.encoders}
    tables = unit_tables({e: members[e] for e in dictionary.encoders}, wanted, n_images, seed, fractions)
    return label_with_tables(dictionary, tables, min_iou)


def cluster_units_of(dictionary: RosettaDictionary, encoder: str) -> list[int]:
    """The units of ``encoder`` that some cluster holds, sorted.

        cluster_units_of(d, "lite-clip")   # [12, 40, 41]
    """
    return sorted({u for c in dictionary.clusters for u in c.members.get(encoder, [])})


UnitTables = dict[str, dict[int, tuple[torch.Tensor, torch.Tensor]]]


def unit_tables(members: dict[str, Member], wanted: dict[str, list[int]], n_images: int = 300,
                seed: int = EVAL_SEED, fractions: Iterable[float] = TOP_FRACTIONS) -> UnitTables:
    """Per member and wanted unit: its (IoU above chance, IoU) against every concept of :func:`concept_names`.

        tables = unit_tables({"lite-clip": clip}, {"lite-clip": [12, 40]})

    Scored once on ``n_images`` Shapes World scenes of stream ``seed``, so that several
    dictionaries (other K, a null) can be labelled from one scoring
    (:func:`label_with_tables`).
    """
    batch = ShapesWorld().batch(n_images, seed=seed)
    masks = {name: batch.masks[name] for name in concept_names()}
    tables: UnitTables = {}
    for name, units in wanted.items():
        result = unit_ious(members[name], list(units), batch.images, masks, fractions=fractions)
        tables[name] = {u: (result.score[i], result.iou[i]) for i, u in enumerate(units)}
    return tables


def dictionaries_unit_tables(dictionaries: Iterable[RosettaDictionary], n_images: int = 300,
                             seed: int = EVAL_SEED, members: dict[str, Member] | None = None) -> UnitTables:
    """:func:`unit_tables` of every unit that a cluster of any of ``dictionaries`` holds, each scored once.

        tables = dictionaries_unit_tables([trained, control])   # then label_with_tables(trained, tables)

    The encoders are rebuilt from each dictionary's run (:func:`dictionary_members`),
    except those given in ``members`` by their mined names (models the registry cannot
    rebuild by name, such as a generator seen through its reader).
    """
    wanted: dict[str, set[int]] = {}
    members = dict(members or {})
    for dictionary in dictionaries:
        for encoder in dictionary.encoders:
            wanted.setdefault(encoder, set()).update(cluster_units_of(dictionary, encoder))
        if any(encoder not in members for encoder in dictionary.encoders):
            members |= {name: m for name, m in dictionary_members(dictionary).items() if name not in members}
    return unit_tables(members, {e: sorted(units) for e, units in wanted.items()}, n_images, seed)


def label_with_tables(dictionary: RosettaDictionary, tables: UnitTables, min_iou: float = MIN_IOU) -> list[dict]:
    """:func:`label_clusters` from unit scores already computed by :func:`unit_tables`.

        labels = label_with_tables(d, unit_tables(members, {e: cluster_units_of(d, e) for e in d.encoders}))
    """
    missing = [(e, u) for e in dictionary.encoders for u in cluster_units_of(dictionary, e)
               if u not in tables.get(e, {})]
    if missing:
        raise ValueError(f"no scores for encoder units {missing[:5]} (of {len(missing)}): score them in unit_tables")
    own = {e: tables[e] for e in dictionary.encoders}
    return [_label(cluster, own, concept_names(), min_iou) for cluster in dictionary.clusters]


def dictionary_members(dictionary: RosettaDictionary, pretrained: bool | None = None) -> dict[str, Member]:
    """The encoders a dictionary was mined with, as members: trained ones, or the run's control copies.

        members = dictionary_members(RosettaDictionary.load("runs/lite/control"))

    Rebuilt by :func:`rosetta_lite.dictionary.runs.mined_members`, with exactly the weights
    that were mined: control encoders (named ``<encoder>@untrained``) from the run's
    ``control_seed``, untrained zoos' encoders from the seeds mining gave them.
    """
    return mined_members(dictionary, pretrained)


def concept_report(trained: RosettaDictionary, control: RosettaDictionary | None = None, *,
                   pretrained: bool | None = None, n_images: int = 300, seed: int = EVAL_SEED,
                   min_iou: float = MIN_IOU, fractions: Iterable[float] = TOP_FRACTIONS) -> dict:
    """Label the clusters of a run's dictionaries (trained zoo and its control) and count them.

        report = concept_report(*load_dictionaries("runs/lite"))

    ``pretrained`` defaults to what the run recorded (``--zoo lite-untrained`` runs are untrained).
    Returns images, seed, min_iou, fractions, concepts and, for "trained" and "control"
    (None without a control): n_rosetta, n_clusters, n_clusters_labeled (mean IoU above
    chance >= ``min_iou``), per_concept (labeled clusters per concept) and clusters (one
    entry per cluster, see :func:`label_clusters`).
    """
    fractions = tuple(fractions)
    report = {"images": n_images, "seed": seed, "min_iou": min_iou, "fractions": list(fractions),
              "concepts": concept_names()}
    for key, dictionary in (("trained", trained), ("control", control)):
        if dictionary is None:
            report[key] = None
            continue
        members = dictionary_members(dictionary, pretrained)
        labels = label_clusters(dictionary, members, n_images, seed, min_iou, fractions)
        per_concept = Counter(entry["concept"] for entry in labels if entry["labeled"])
        report[key] = {"encoders": dictionary.encoders, "n_rosetta": dictionary.rosetta_count(),
                       "n_clusters": len(dictionary.clusters),
                       "n_clusters_labeled": sum(entry["labeled"] for entry in labels),
                       "per_concept": dict(per_concept.most_common()), "clusters": labels}
    return report


def format_report(report: dict) -> str:
    """A short text table of a :func:`concept_report`.

        print(format_report(concept_report(*load_dictionaries("runs/lite"))))
    """
    lines = [f"concepts of Rosetta clusters: {report['images']} Shapes World images (seed {report['seed']}), "
             f"labeled when the mean IoU above chance >= {report['min_iou']}"]
    parts = [(k, report[k]) for k in ("trained", "control") if report.get(k)]
    for key, part in parts:
        lines.append(f"  {key:8s} Rosetta neurons {part['n_rosetta']}, clusters {part['n_clusters']}, "
                     f"labeled {part['n_clusters_labeled']}")
    concepts = sorted({c for _, part in parts for c in part["per_concept"]},
                      key=lambda c: -sum(p["per_concept"].get(c, 0) for _, p in parts))
    if concepts:
        lines.append(f"  {'concept':16s}" + "".join(f"{k:>9s}" for k, _ in parts))
        for concept in concepts:
            lines.append(f"  {concept:16s}" + "".join(f"{p['per_concept'].get(concept, 0):9d}" for _, p in parts))
    for key, part in parts:
        lines.append(f"  {key} clusters (id: concept, mean IoU above chance, mean IoU):")
        for entry in part["clusters"]:
            name = entry["concept"] or f"- (best {entry['best_concept']})"
            lines.append(f"    {entry['cluster']:4d}: {name:30s} {entry['score']:6.3f} {entry['iou']:6.3f}")
    return "\n".join(lines)


def _label(cluster: Cluster, tables: dict[str, dict[int, tuple[torch.Tensor, torch.Tensor]]],
           names: list[str], min_iou: float) -> dict:
    means = {}  # encoder -> (mean score, mean iou) over its member units, each (concepts,)
    for encoder, table in tables.items():
        units = cluster.members.get(encoder, [])
        if units:
            means[encoder] = tuple(torch.stack([table[u][k] for u in units]).mean(0) for k in (0, 1))
    if not means:
        cluster.concept, cluster.iou = None, None
        return {"cluster": cluster.id, "concept": None, "best_concept": None, "score": 0.0, "iou": 0.0,
                "labeled": False, "per_encoder": {}}
    score = torch.stack([m[0] for m in means.values()]).mean(0)
    iou = torch.stack([m[1] for m in means.values()]).mean(0)
    best = int(score.argmax())
    labeled = bool(score[best] >= min_iou)
    cluster.concept, cluster.iou = (names[best] if labeled else None), round(float(iou[best]), 4)
    per_encoder = {}
    for encoder, (own_score, own_iou) in means.items():
        own = int(own_score.argmax())
        per_encoder[encoder] = {"units": list(cluster.members[encoder]), "score": round(float(own_score[best]), 4),
                                "iou": round(float(own_iou[best]), 4), "best_concept": names[own],
                                "best_score": round(float(own_score[own]), 4)}
    return {"cluster": cluster.id, "concept": cluster.concept, "best_concept": names[best],
            "score": round(float(score[best]), 4), "iou": cluster.iou, "labeled": labeled,
            "per_encoder": per_encoder}


def _layer_channels(member: Member, probe: torch.Tensor) -> dict[str, int]:
    with torch.no_grad(), Trace(member.model, member.layers, stop=True) as trace:
        member.encode(probe)
    return {layer: trace.outputs[layer].shape[1] for layer in member.layers}


def _chunks(maps: list[torch.Tensor], n: int, size: tuple[int, int]) -> MapSource:
    """A re-iterable source of rows: a few images at a time, upsampled, one (pixels, units) tensor per map tensor."""
    for m in maps:
        if m.dim() != 4 or m.shape[0] != n:
            raise ValueError(f"maps must be (N, units, h, w) with N = {n} images (one per mask), "
                             f"got shape {tuple(m.shape)}")
    units = sum(m.shape[1] for m in maps)
    if units == 0:
        raise ValueError("no units to score")
    step = max(1, CHUNK_ELEMENTS // (units * size[0] * size[1]))

    def source() -> Iterator[torch.Tensor]:
        for first in range(0, n, step):
            yield [_upsample(m[first:first + step], size).reshape(-1, m.shape[1]) for m in maps]

    return source


def _upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, U, h, w) -> (B, H, W, U), bilinear; channels-last makes both the resize and the rows fast."""
    maps = maps.float().contiguous(memory_format=torch.channels_last)
    if tuple(maps.shape[-2:]) != tuple(size):
        maps = F.interpolate(maps, size=size, mode="bilinear", align_corners=False)
    return maps.permute(0, 2, 3, 1)
