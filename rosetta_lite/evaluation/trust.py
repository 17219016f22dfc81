"""Trust scores of Rosetta neurons, usable as filters on a dictionary.

    consistency = input_consistency(gan, encoders, d, images=2000)
    ratios = generative_interpretability(gan, d, n_images=64)
    strict = filter_dictionary(d, consistency=consistency, interpretability=ratios, min_ratio=1.5)

*Input consistency*: a best-buddy pair is consistent when it is a best buddy (same K and
mode as the dictionary) in both halves of the images, each half mined independently; a
Rosetta neuron is consistent when, for every encoder, at least one of its pairs is.
*Generative interpretability*: ablating a generator unit (its map set to its mining mean)
should change the generated image mostly where the unit's map is high; the score is the
ratio of the mean absolute image change inside the unit's top-fraction region to the mean
change outside it (1 = no localisation; by convention 1 also for a unit whose ablation
changes nothing).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rosetta_lite import zoo
from rosetta_lite.capture import record_generator
from rosetta_lite.dictionary.match import best_buddies
from rosetta_lite.dictionary.rosetta import RosettaDictionary
from rosetta_lite.dictionary.runs import load_dictionaries
from rosetta_lite.evaluation.concepts import dictionary_members
from rosetta_lite.evaluation.mutual_info import buddy_overlap
from rosetta_lite.files import DEFAULT_RUN
from rosetta_lite.mining.loop import latents, mine
from rosetta_lite.mining.settings import MiningResult
from rosetta_lite.zoo.member import Member
from rosetta_lite.zoo.registry import split_zoo

EPS = 1e-8


def _halves_buddies(result: MiningResult, encoders: list[str], settings: dict) -> dict[str, set[tuple[int, int]]]:
    out = {}
    for e in encoders:
        acc = result.pairs[e]
        pairs = best_buddies(acc.similarity(), settings["k"], mode=settings["mode"],
                             k_other=settings.get("k_other", 5), dead_a=acc.dead_a(), dead_b=acc.dead_b())
        out[e] = set(pairs)
    return out


def input_consistency(generator: Member, encoders: list[Member], dictionary: RosettaDictionary,
                      images: int | None = None, batch_size: int = 32, seed: int | None = None, *,
                      halves: tuple[MiningResult, MiningResult] | None = None, progress: bool = False) -> dict:
    """Whether each Rosetta neuron's best-buddy pairs are best buddies in both halves of the images.

        c = input_consistency(gan, encoders, d, images=2000)   # c["neurons"][423] -> True / False

    Mines latents ``[0, n/2)`` and ``[n/2, n)`` of the dictionary's seed independently
    (``n`` defaults to the dictionary's image count; ``halves`` reuses two mined results),
    takes best buddies with the dictionary's K and mode in each, and returns
    ``{"pairs": {encoder: [[g, d, bool], ...]}, "neurons": {g: bool}, "images": n}``
    for the dictionary's Rosetta neurons. Encoders must be named as in the dictionary.
    """
    names = [e.name for e in encoders]
    missing = [e for e in dictionary.encoders if e not in names]
    if missing:
        raise ValueError(f"the dictionary's encoders {missing} were not given; given: {names}")
    chosen = [e for e in encoders if e.name in dictionary.encoders]
    n = images or dictionary.settings.get("images_counted", dictionary.settings["images"])
    seed = dictionary.settings["seed"] if seed is None else seed
    first = dictionary.settings.get("start", 0)
    if halves is None:
        if n // 2 < batch_size:
            raise ValueError(f"each half ({n // 2} images) must hold at least one batch ({batch_size})")
        halves = (mine(generator, chosen, n // 2, start=first, seed=seed, batch_size=batch_size, progress=progress),
                  mine(generator, chosen, n - n // 2, start=first + n // 2, seed=seed, batch_size=batch_size,
                       progress=progress))
    found = [_halves_buddies(h, dictionary.encoders, dictionary.settings) for h in halves]
    pairs = {e: [[g, d, (g, d) in found[0][e] and (g, d) in found[1][e]] for g, d in rows]
             for e, rows in dictionary.rosetta_pairs().items()}
    neurons = {}
    for cluster in dictionary.clusters:
        for g in cluster.generator_units:
            neurons[g] = all(any(ok for gg, _, ok in pairs[e] if gg == g) for e in dictionary.encoders)
    return {"pairs": pairs, "neurons": neurons, "images": n}


class _Ablate:
    """Forward hook that sets one channel of a layer's output to a constant while active."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.channel: int | None = None
        self.value = 0.0
        self.handle = module.register_forward_hook(self)

    def __call__(self, module, args, output):
        if self.channel is None:
            return None
        output = output.clone()
        output[:, self.channel] = self.value
        return output


def generative_interpretability(generator: Member, dictionary: RosettaDictionary, n_images: int = 64,
                                seed: int = 0, *, units: list[int] | None = None, fraction: float = 0.2,
                                batch_size: int = 32, start: int = 0) -> dict[int, dict]:
    """Per generator unit: how much ablating it changes the image inside its high-map region vs outside.

        scores = generative_interpretability(gan, d, n_images=64)   # {423: {"ratio": 3.1, ...}, ...}

    For each unit (default: the dictionary's Rosetta neurons) and image, the unit's channel
    is replaced by its mining mean; the absolute change of the image (mean over colour
    channels) is compared between the pixels where the unit's map, upsampled to the image
    (bilinear), is in its top ``fraction`` (threshold fixed from the first batch) and the
    rest. Returns ``{unit: {"ratio", "inside", "outside", "layer", "channel"}}``.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    name = dictionary.generator
    units = dictionary.rosetta_units() if units is None else list(units)
    mean, _ = dictionary.unit_stats(name)
    located = {u: dictionary.unit(name, u) for u in units}
    modules = dict(generator.model.named_modules())
    hooks = {layer: _Ablate(modules[layer]) for layer in dict.fromkeys(layer for layer, _ in located.values())}
    sums = {u: torch.zeros(4, dtype=torch.float64) for u in units}  # inside sum, inside n, outside sum, outside n
    thresholds: dict[int, float] = {}
    try:
        with torch.no_grad():
            for first in range(start, start + n_images, batch_size):
                count = min(batch_size, start + n_images - first)
                z = latents(generator, seed, first, count)
                base, maps = record_generator(generator, z)
                size = base.shape[-2:]
                for u in units:
                    layer, channel = located[u]
                    unit_map = F.interpolate(maps[layer][:, channel:channel + 1].float(), size=size,
                                             mode="bilinear", align_corners=False)[:, 0]
                    if u not in thresholds:
                        thresholds[u] = float(unit_map.flatten().kthvalue(
                            max(1, int(round((1 - fraction) * unit_map.numel())))).values)
                    hook = hooks[layer]
                    hook.channel, hook.value = channel, float(mean[u])
                    try:
                        ablated = generator.generate(z).clamp(0, 1)
                    finally:
                        hook.channel = None
                    change = (ablated - base).abs().mean(1).double()
                    inside = unit_map > thresholds[u]
                    sums[u] += torch.stack([change[inside].sum(), inside.sum().double(),
                                            change[~inside].sum(), (~inside).sum().double()])
    finally:
        for hook in hooks.values():
            hook.handle.remove()
    scores = {}
    for u in units:
        in_sum, in_n, out_sum, out_n = sums[u].tolist()
        inside = in_sum / in_n if in_n else 0.0
        outside = out_sum / out_n if out_n else 0.0
        layer, channel = located[u]
        scores[u] = {"ratio": (inside + EPS) / (outside + EPS), "inside": inside, "outside": outside,
                     "layer": layer, "channel": channel}
    return scores


def filter_dictionary(dictionary: RosettaDictionary, *, consistency: dict | None = None,
                      interpretability: dict[int, dict] | None = None, min_ratio: float = 1.0) -> RosettaDictionary:
    """The dictionary rebuilt from the best-buddy pairs that pass the given trust scores.

        strict = filter_dictionary(d, consistency=c, interpretability=s, min_ratio=1.5)

    With ``consistency``, only pairs consistent in both halves are kept; with
    ``interpretability``, only pairs whose generator unit has ``ratio >= min_ratio`` (units
    without a score are dropped). Rosetta neurons and clusters are then recomputed by
    :meth:`RosettaDictionary.with_buddies`, as :func:`rosetta_lite.dictionary.rosetta.above_chance` does.
    """
    consistent = None if consistency is None else {
        e: {(int(g), int(d)) for g, d, ok in rows if ok} for e, rows in consistency["pairs"].items()}

    def trusted(encoder: str, g: int, d: int) -> bool:
        g, d = int(g), int(d)
        return ((consistent is None or (g, d) in consistent.get(encoder, set()))
                and (interpretability is None or (g in interpretability and interpretability[g]["ratio"] >= min_ratio)))

    pairs = {e: [(g, d) for g, d, _ in rows if trusted(e, g, d)] for e, rows in dictionary.buddies.items()}
    trust = {"consistency": consistency is not None,
             "interpretability_min_ratio": min_ratio if interpretability is not None else None}
    return dictionary.with_buddies(pairs, trust=trust)


def trust_summary(dictionary: RosettaDictionary, consistency: dict | None = None,
                  interpretability: dict[int, dict] | None = None, min_ratio: float = 1.0) -> dict:
    """Counts of Rosetta neurons passing each score, and both, for a quick look.

        trust_summary(d, c, s, min_ratio=1.5)   # {"rosetta_neurons": 9, "consistent": 6, ...}
    """
    units = dictionary.rosetta_units()
    out: dict = {"rosetta_neurons": len(units), "clusters": len(dictionary.clusters)}
    if consistency is not None:
        out["consistent"] = sum(bool(consistency["neurons"].get(u)) for u in units)
        out["consistent_units"] = sorted(u for u in units if consistency["neurons"].get(u))
        out["consistency_images"] = consistency["images"]
        out["consistent_pairs"] = {e: [sum(ok for *_, ok in rows), len(rows)]
                                   for e, rows in consistency["pairs"].items()}
    if interpretability is not None:
        out["interpretable"] = sum(interpretability[u]["ratio"] >= min_ratio for u in units if u in interpretability)
        out["interpretable_units"] = sorted(u for u in units if u in interpretability
                                            and interpretability[u]["ratio"] >= min_ratio)
        out["min_ratio"] = min_ratio
        out["ratios"] = {str(u): round(interpretability[u]["ratio"], 3) for u in units if u in interpretability}
    strict = filter_dictionary(dictionary, consistency=consistency, interpretability=interpretability,
                               min_ratio=min_ratio)
    out["rosetta_neurons_passing_all"] = strict.rosetta_count()
    out["clusters_passing_all"] = len(strict.clusters)
    return out


def trust_report(folder: str = DEFAULT_RUN, *, images: int | None = None, interpretability_images: int = 64,
                 min_ratio: float = 1.5, batch_size: int = 32, mi_images: int = 0, quantile: float = 0.9,
                 seed: int = 0) -> dict:
    """Trust scores of a saved run's dictionary, as ``eval trust`` prints them.

        trust_report("runs/lite", images=1000, mi_images=256)

    Rebuilds the run's members (the generator and the dictionary's encoders), scores input
    consistency on ``images`` (default: the run's count) and generative interpretability on
    ``interpretability_images`` latents of stream ``seed``; with ``mi_images``, also mines
    MI tables on that many images and reports the overlap of their best buddies with the
    Pearson ones.
    """
    import time

    dictionary, _ = load_dictionaries(folder)
    members = dictionary_members(dictionary)
    pretrained = split_zoo(str(dictionary.settings.get("extra", {}).get("zoo", "lite")))[1]
    gan = zoo.load(dictionary.generator, pretrained=pretrained)
    encoders = [members[e] for e in dictionary.encoders]
    times = {}
    t = time.perf_counter()
    consistency = input_consistency(gan, encoders, dictionary, images, batch_size)
    times["consistency_s"] = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    scores = generative_interpretability(gan, dictionary, interpretability_images, seed, batch_size=batch_size)
    times["interpretability_s"] = round(time.perf_counter() - t, 2)
    report = {"run": str(folder), **trust_summary(dictionary, consistency, scores, min_ratio),
              "interpretability_images": interpretability_images}
    if mi_images:
        t = time.perf_counter()
        # thresholds from the first batch, as this report has always calibrated them
        mi = mine(gan, encoders, mi_images, batch_size=batch_size, seed=dictionary.settings["seed"],
                  quantile=quantile, similarity="mi", calibration_images=batch_size, progress=False)
        tables = {name: mi.similarity(name) for name in mi.pairs}
        times["mutual_information_s"] = round(time.perf_counter() - t, 2)
        report["mutual_information"] = {"images": mi_images, "quantile": quantile,
                                        "overlap_with_pearson": buddy_overlap(dictionary, tables)}
    report["times"] = times
    return report
