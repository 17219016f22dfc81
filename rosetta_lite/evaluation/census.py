"""A unit census: how many single units of each member stand for each concept, trained vs untrained.

    report = census(CensusOptions(images=300)); print(format_census(report))

A Rosetta neuron is a generator unit with a best buddy in every encoder, so a concept can
reach the dictionary only if every member holds it in single units. The census scores
every unit of every member against every ground-truth mask, by the rule of ``eval
concepts`` (:func:`rosetta_lite.evaluation.concepts.map_ious`: IoU above chance, best over
the top fractions), and labels a unit with its best concept when that score reaches
``min_iou``. Encoders are scored on held-out Shapes World scenes; the generator on its own
samples, with the masks of the scene each latent describes (a generator whose model has a
``scene(z)`` method, as the lite renderer). Each member is counted beside its untrained
copy (the mining control's copy: ``control_members`` at ``control_seed``), the chance level
of every count. A linear probe says that a representation knows a concept; the census
says whether single units do, which is what mining needs.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from rosetta_lite import zoo
from rosetta_lite.capture import record_generator
from rosetta_lite.evaluation.concepts import MIN_IOU, ConceptIoU, learned_concept, map_ious, stack_masks, unit_ious
from rosetta_lite.world import EVAL_SEED, ShapesWorld, world_name, world_settings
from rosetta_lite.zoo.member import Member
from rosetta_lite.zoo.registry import control_members, names

#: concepts every network holds by chance (large regions and flat colours): not what training teaches


@dataclass(frozen=True)
class CensusOptions:
    """What a census counts on.

        CensusOptions(images=300, min_iou=0.2)

    ``images``: held-out scenes (and generator samples) scored; ``seed``: their stream;
    ``min_iou``: the IoU above chance a unit needs to be labelled; ``control_seed``: the
    untrained copies' seed, as the mining control's; ``size``: the scenes' side in pixels;
    ``world``: the named world the encoders see (``rosetta_lite.world.WORLDS``);
    ``weights``: a folder of candidate weights (``<member>.safetensors``, as ``train`` writes)
    used instead of the shipped ones for the members it holds.
    """

    images: int = 300
    seed: int = EVAL_SEED
    min_iou: float = MIN_IOU
    control_seed: int = 1
    size: int = 32
    world: str = "plain"
    weights: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.images, int) or not 16 <= self.images <= 5000:
            raise ValueError(f"images must be an integer from 16 to 5000, got {self.images!r}")
        if not 0 < self.min_iou < 1:
            raise ValueError(f"min_iou is an IoU above chance in (0, 1), got {self.min_iou!r}")
        world_settings(self.world)  # a clear error for an unknown name
        if self.weights is not None and not Path(self.weights).is_dir():
            raise ValueError(f"weights must be a folder of <member>.safetensors files, got {self.weights!r}")

    def load(self, name: str) -> Member:
        """A member with the candidate weights of ``weights`` where that folder has them, else the shipped ones."""
        candidate = Path(self.weights) / f"{name}.safetensors" if self.weights else None
        return zoo.load(name, weights=str(candidate) if candidate and candidate.is_file() else None)


def unit_labels(result: ConceptIoU, min_iou: float = MIN_IOU) -> list[str | None]:
    """Each unit's best concept when its IoU above chance reaches ``min_iou``, else None.

        unit_labels(unit_ious(member))   # ['sky', None, 'shape:circle', ...]
    """
    if result.score.numel() == 0:
        return []
    best, index = result.score.max(1)
    return [result.concepts[i] if b >= min_iou else None for b, i in zip(best.tolist(), index.tolist())]


def count_labels(labels: list[str | None]) -> dict[str, int]:
    """Units per concept, most first; unlabelled units left out."""
    return dict(Counter(label for label in labels if label is not None).most_common())


def generator_ious(generator: Member, images: int = 300, seed: int = EVAL_SEED,
                   batch_size: int = 64) -> ConceptIoU:
    """Score every unit of a generator that describes its scenes against its samples' ground truth.

        generator_ious(zoo.load("lite-renderer"), images=300).score   # (units, concepts)

    The generator's model must have ``scene(z)`` (the scene each latent describes, as
    ``ShapesWorld.render_scene`` takes it); its samples of latent seed ``seed`` are scored
    against the masks of those scenes, rendered by the world.
    """
    describe = getattr(generator.model, "scene", None)
    if not callable(describe):
        raise ValueError(f"{generator.name} does not describe its samples as scenes (its model has no scene(z)), "
                         "so they have no ground truth; a census of its units needs one (e.g. lite-renderer)")
    world = ShapesWorld(**getattr(generator.model, "world", {}))  # a textured renderer describes fills
    z = generator.sample_latents(images, seed=seed)
    parts: dict[str, list[torch.Tensor]] = {}
    with torch.no_grad():
        for first in range(0, images, batch_size):
            for layer, maps in record_generator(generator, z[first:first + batch_size])[1].items():
                parts.setdefault(layer, []).append(maps.float().cpu())
    truth = world.render_scene(describe(z.cpu()))
    names = list(truth.masks)
    return map_ious([torch.cat(p) for p in parts.values()], stack_masks(truth.masks, names), concepts=names)


def member_ious(member: Member, options: CensusOptions = CensusOptions()) -> ConceptIoU:
    """Every unit of one member scored against every concept (an encoder on held-out scenes,
    a generator on its own samples).

        unit_labels(member_ious(zoo.load("lite-resnet-sup")))
    """
    if member.is_generator:
        return generator_ious(member, options.images, options.seed)
    batch = ShapesWorld(size=options.size, **world_settings(options.world)).batch(options.images, seed=options.seed)
    return unit_ious(member, images=batch.images, masks=batch.masks)


def member_census(member: Member, options: CensusOptions = CensusOptions()) -> dict[str, int]:
    """Units per concept of one member (an encoder, or a generator that describes its scenes).

        member_census(zoo.load("lite-resnet-sup"))   # {'object': 57, 'shape:circle': 44, ...}
    """
    return count_labels(unit_labels(member_ious(member, options), options.min_iou))


def census(options: CensusOptions = CensusOptions(), generator: str | None = None,
           encoders: list[str] | None = None) -> dict:
    """The census of a lite zoo: units per concept of every member and its untrained copy, as JSON.

        report = census(CensusOptions(images=300)); report["members"]["lite-clip"]["trained"]

    Defaults: the lite zoo's generator and every lite encoder. A generator that does not
    describe its samples (``lite-gan``) is left out with a note. ``shared`` lists the
    concepts other than sky, ground and colours with their fewest units over the trained
    members, and the largest untrained-over-trained ratio: the figures the census gate reads.
    """
    gan = options.load(generator or names("lite", "generator")[0])
    trained = [options.load(name) for name in encoders or names("lite", "encoder")]
    controls = control_members(trained, options.control_seed)
    members: dict[str, dict] = {}
    skipped = {}
    pairs = [(gan, _untrained_generator(gan, options.control_seed))] + list(zip(trained, controls))
    for member, copy in pairs:
        try:
            result = member_ious(member, options)
        except ValueError as error:
            skipped[member.name] = str(error)
            continue
        members[member.name] = {"kind": member.kind, "units": int(result.score.shape[0]),
                                "trained": count_labels(unit_labels(result, options.min_iou)),
                                "untrained": member_census(copy, options)}
    return {"settings": asdict(options), "members": members, "skipped": skipped, "shared": shared_concepts(members)}


def _untrained_generator(generator: Member, seed: int) -> Member:
    """The generator's untrained copy; a textured renderer's copy takes the fills in its latent too."""
    world = world_name(getattr(generator.model, "world", {}))
    return zoo.load(generator.name, pretrained=False, seed=seed, **({"world": world} if world != "plain" else {}))


def shared_concepts(members: dict[str, dict]) -> list[dict]:
    """Per learned concept: the fewest units any trained member holds, and the most of any untrained copy
    relative to its trained member; most shared first.

        shared_concepts(census()["members"])[0]   # {'concept': 'object', 'fewest': 14, 'worst_ratio': 1.2, ...}
    """
    concepts = sorted({c for m in members.values() for c in m["trained"] if learned_concept(c)})
    rows = []
    for concept in concepts:
        trained = {name: m["trained"].get(concept, 0) for name, m in members.items()}
        untrained = {name: m["untrained"].get(concept, 0) for name, m in members.items()}
        ratios = [untrained[n] / trained[n] if trained[n] else float("inf") for n in members]
        rows.append({"concept": concept, "fewest": min(trained.values()), "worst_ratio": round(max(ratios), 3),
                     "trained": trained, "untrained": untrained})
    return sorted(rows, key=lambda row: (-row["fewest"], row["worst_ratio"]))


def census_gate(report: dict, concepts: int = 3, units: int = 5, ratio: float = 1 / 3) -> tuple[bool, list[str]]:
    """The census gate: at least ``concepts`` learned concepts in which every trained member holds at least
    ``units`` units and every untrained copy at most ``ratio`` as many; (passed, those concepts).

        passed, concepts = census_gate(census())
    """
    met = [row["concept"] for row in report["shared"] if row["fewest"] >= units and row["worst_ratio"] <= ratio]
    return len(met) >= concepts, met


def format_census(report: dict) -> str:
    """The census as a table: one line per member, trained beside untrained, concepts most common first."""
    def counts(c: dict) -> str:
        return ", ".join(f"{k.removeprefix('shape:')} {v}" for k, v in c.items()) or "none"

    lines = [f"unit census on {report['settings']['images']} scenes (IoU above chance >= "
             f"{report['settings']['min_iou']}); units per concept"]
    for name, m in report["members"].items():
        lines += [f"{name} ({m['units']} units)", f"  trained:   {counts(m['trained'])}",
                  f"  untrained: {counts(m['untrained'])}"]
    for name, why in report["skipped"].items():
        lines.append(f"{name}: left out ({why})")
    passed, met = census_gate(report)
    lines.append(f"learned concepts shared by every member (>= 5 units each, untrained <= 1/3): "
                 f"{', '.join(met) or 'none'} -> census gate {'met' if passed else 'not met'}")
    return "\n".join(lines)
