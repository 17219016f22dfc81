"""What a mining run did and what it holds: settings, accumulators, their file format.

    result = MiningResult.load("runs/lite/accumulators.safetensors")
    result.similarity("lite-clip")   # (generator units, encoder units), Pearson or MI
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from rosetta_lite.files import atomic_path
from rosetta_lite.mining.ranges import Ranges, count, union
from rosetta_lite.stats.binary import BinaryMoments
from rosetta_lite.stats.moments import CoMoments

CHECKPOINT = "checkpoint.safetensors"


ACCUMULATORS = "accumulators.safetensors"


SIMILARITIES = ("pearson", "mi")


#: what the encoders see beside each generator image: "same" (the image itself: the method) or
#: "shuffled" (another latent's image: a null, the correlation that needs no shared content)
PAIRINGS = ("same", "shuffled")


#: where the float64 tables live: "device" (with the rows), "host" (CPU memory, products from
#: the device in chunks), or "auto": the host on CUDA when the tables would not fit comfortably
TABLES = ("auto", "device", "host")


#: "auto" keeps the tables on the host when they would take more than this fraction of the free
#: GPU memory: the rest is needed for the models, their recorded maps and the rows of a batch
AUTO_HOST_FRACTION = 0.5


DEFAULT_QUANTILE = 0.9


DEFAULT_CALIBRATION_IMAGES = 64


#: settings added after the first saved runs, with the value that means "as before": left
#: out of the fingerprint at that value, so older checkpoints still resume and merge
_LATER_SETTINGS = {"similarity": "pearson", "quantile": None, "calibration_images": None, "precision": "fp32",
                   "weights": None, "pairing": "same"}


@dataclass
class MiningSettings:
    """What a mining run did; two runs merge only when all but the latent range agree."""

    generator: str
    encoders: list[str]
    layers: dict[str, list[str]]
    units: dict[str, list[int]]  # channels per layer, in layer order
    grid: dict[str, int]  # common grid side per encoder (pair with the generator)
    seed: int
    start: int
    images: int
    batch_size: int
    control_seed: int | None = None
    device: str = "cpu"
    extra: dict = field(default_factory=dict)
    similarity: str = "pearson"
    quantile: float | None = None  # mi: binarisation quantile
    calibration_images: int | None = None  # mi: thresholds from latents 0..n-1 of the stream
    precision: str = "fp32"
    #: each model's weights digest (``Member.digest``): trained and untrained copies share names
    weights: dict[str, str] | None = None
    pairing: str = "same"  # one of PAIRINGS

    def fingerprint(self, with_range: bool = True) -> str:
        keep = asdict(self)
        keep.pop("device")
        keep.pop("batch_size")
        keep.pop("extra")
        for key, default in _LATER_SETTINGS.items():
            if keep[key] == default:
                keep.pop(key)
        if not with_range:
            keep.pop("start"), keep.pop("images")
        return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]


Accumulator = CoMoments | BinaryMoments


@dataclass
class MiningResult:
    """Accumulators of a run: ``pairs[name]`` is the (generator, name) table; ``self_pair`` (G, G).

    ``counted``: the latent ranges [a, b) the accumulators hold (a run continues only the
    parts of ``[start, start + images)`` still missing). ``thresholds`` (similarity "mi"):
    per ``"model@grid"``, the frozen binarisation threshold of every unit on that grid.
    ``seconds``: where the call that returned it spent its time (see the field).
    """

    settings: MiningSettings
    pairs: dict[str, Accumulator]
    self_pair: Accumulator
    counted: Ranges = field(default_factory=list)
    thresholds: dict[str, torch.Tensor] = field(default_factory=dict)
    #: wall seconds of the call that returned this result, not saved: "models" (generating and recording
    #: maps, batch by batch) and "statistics" (the rest of the call: planning, rows, products, saving)
    seconds: dict[str, float] = field(default_factory=dict, compare=False)

    @property
    def images_counted(self) -> int:
        """How many latents the accumulators hold."""
        return count(self.counted)

    def similarity(self, encoder: str) -> torch.Tensor:
        """The (generator units, encoder units) table of the run's similarity, float64: Pearson or MI in nats."""
        return self.pairs[encoder].similarity()

    def to(self, device: torch.device | str) -> "MiningResult":
        """Move every accumulator and threshold to ``device`` (in place; host tables stay on the host); returns self."""
        for acc in [*self.pairs.values(), self.self_pair]:
            acc.to(device)
        self.thresholds = {key: value.to(device) for key, value in self.thresholds.items()}
        return self

    def merge(self, other: "MiningResult") -> "MiningResult":
        """Fold in a run over a disjoint latent range with otherwise equal settings."""
        if other.settings.fingerprint(False) != self.settings.fingerprint(False):
            shown = settings_difference(self.settings, other.settings, with_range=False)
            raise ValueError(f"cannot merge runs mined with different settings ({shown[:300]}); mine the shards "
                             "with the same models, layers, grids, seed, similarity and precision")
        if self.thresholds.keys() != other.thresholds.keys() or not all(
                torch.equal(value.cpu(), other.thresholds[key].cpu()) for key, value in self.thresholds.items()):
            raise ValueError("cannot merge runs whose binarisation thresholds differ (mined on other hardware or "
                             "with other calibration images); mine the shards with the same settings and device")
        a, b = self.settings, other.settings
        try:
            counted = union(self.counted, other.counted)
        except ValueError:
            raise ValueError(f"latent ranges overlap: {self.counted} and {other.counted}; merged runs must cover "
                             "disjoint images") from None
        for name, acc in self.pairs.items():
            acc.merge(other.pairs[name])
        self.self_pair.merge(other.self_pair)
        low = min(a.start, b.start)
        self.settings.images = max(a.start + a.images, b.start + b.images) - low
        self.settings.start = low
        self.settings.extra.setdefault("merged_ranges", []).append([b.start, b.start + b.images])
        self.counted = counted
        return self

    def save(self, path: str | Path) -> None:
        """Write accumulators, thresholds, settings and counted ranges to one safetensors file, atomically."""
        tensors = self.self_pair.state_dict("self/")
        for name, acc in self.pairs.items():
            tensors.update(acc.state_dict(f"pair/{name}/"))
        for key, value in self.thresholds.items():
            tensors[f"threshold/{key}"] = value.contiguous().cpu()
        meta = {"settings": json.dumps(asdict(self.settings)), "counted": json.dumps(self.counted)}
        with atomic_path(path) as tmp:
            save_file(tensors, tmp, metadata=meta)

    @classmethod
    def load(cls, path: str | Path) -> "MiningResult":
        """Read a file written by ``save``."""
        from safetensors import safe_open

        try:
            with safe_open(str(path), "pt") as handle:
                meta = handle.metadata()
            tensors = load_file(str(path))
            settings = MiningSettings(**json.loads(meta["settings"]))
            kind = accumulator_class(settings.similarity)
            pairs = {name: kind.from_state_dict(tensors, f"pair/{name}/") for name in settings.encoders}
            self_pair = kind.from_state_dict(tensors, "self/")
        except Exception as error:  # noqa: BLE001 - any failure to parse means the file is unusable
            what = f"it lacks {error}" if isinstance(error, KeyError) else str(error)  # a KeyError says only the key
            raise ValueError(f"{path} is not a readable mining accumulator file ({what}); delete it and mine that "
                             "run again") from None
        thresholds = {key.removeprefix("threshold/"): value for key, value in tensors.items()
                      if key.startswith("threshold/")}
        return cls(settings, pairs, self_pair, _counted(meta, settings), thresholds)


def settings_difference(a: MiningSettings, b: MiningSettings, with_range: bool = True) -> str:
    """What two runs' settings disagree on, for a message: ``"seed: 0 vs 1; weights of lite-clip: 3f.. vs 9a.."``."""
    mine, theirs = asdict(a), asdict(b)
    skip = {"device", "batch_size", "extra", "weights"} | (set() if with_range else {"start", "images"})
    shown = [f"{k}: {mine[k]!r} vs {theirs[k]!r}" for k in mine if k not in skip and mine[k] != theirs[k]]
    ours, others = a.weights or {}, b.weights or {}
    shown += [f"weights of {name}: {ours.get(name, 'unrecorded')} vs {others.get(name, 'unrecorded')}"
              for name in sorted(set(ours) | set(others)) if ours.get(name) != others.get(name)]
    return "; ".join(shown)


def _counted(meta: dict, settings: MiningSettings) -> Ranges:
    """The counted ranges of a saved run; files from before ranges were kept give a batch count instead."""
    if "counted" in meta:
        return [list(r) for r in json.loads(meta["counted"])]
    done = min(int(meta.get("batches_done", 0)) * settings.batch_size, settings.images)
    return [[settings.start, settings.start + done]] if done else []


def accumulator_class(similarity: str) -> type:
    """The accumulator that mines ``similarity``: ``accumulator_class("mi")`` is :class:`BinaryMoments`."""
    return BinaryMoments if similarity == "mi" else CoMoments


def check_similarity(similarity: str) -> str:
    """``similarity`` if it is one of :data:`SIMILARITIES`, else a ValueError listing them.

        check_similarity("mi")
    """
    if similarity not in SIMILARITIES:
        raise ValueError(f"similarity must be one of {list(SIMILARITIES)}, got {similarity!r}")
    return similarity


def check_pairing(pairing: str) -> str:
    """``pairing`` if it is one of :data:`PAIRINGS`, else a ValueError listing them.

        check_pairing("shuffled")
    """
    if pairing not in PAIRINGS:
        raise ValueError(f"pairing must be one of {list(PAIRINGS)}, got {pairing!r}")
    return pairing


def check_tables(tables: str, similarity: str = "pearson") -> str:
    """``tables`` if it is one of :data:`TABLES` and fits ``similarity``, else a ValueError saying why.

        check_tables("host")
    """
    if tables not in TABLES:
        raise ValueError(f"tables must be one of {list(TABLES)}, got {tables!r}")
    if tables == "host" and similarity != "pearson":
        raise ValueError(f"tables='host' is for Pearson tables only; mine similarity {similarity!r} with "
                         "tables='device' (or 'auto')")
    return tables
