"""The Rosetta dictionary: clusters of shared units, saved as JSON plus safetensors.

    d = build_dictionary(result, k=3); d.save("runs/lite"); d = RosettaDictionary.load("runs/lite")

``dictionary.json`` holds the schema version, mining and matching settings, every
model's layers and units, dead units, best buddies and the ranked clusters;
``dictionary.safetensors`` holds the correlation tables and each unit's mean and
standard deviation on the mining grid (inversion normalises maps with them).
A loaded dictionary reads that file lazily (:class:`LazyTensors`): a table only when asked for.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file

from rosetta_lite.capture import record_generator
from rosetta_lite.dictionary.match import best_buddies, cluster_units, rosetta_units
from rosetta_lite.files import atomic_path, writable_dir
from rosetta_lite.mining.settings import MiningResult
from rosetta_lite.zoo.member import Member
from rosetta_lite.zoo.registry import CONTROL_SUFFIX

SCHEMA_VERSION = 1
JSON_NAME, TENSORS_NAME = "dictionary.json", "dictionary.safetensors"


class DictionaryError(ValueError):
    """A dictionary file that is missing, corrupt or of another schema version."""


class MismatchError(ValueError):
    """Models or inputs a dictionary cannot be used with: another generator or version of it, an encoder it lacks.

    Inversion raises it (as ``InversionError``) for every input it cannot use.
    """


@dataclass
class Cluster:
    """One concept: generator units and, per encoder, their best-buddy units (flat indices)."""

    id: int
    generator_units: list[int]
    members: dict[str, list[int]]
    score: float  # mean correlation of the cluster's (generator, encoder) best-buddy pairs
    pair_corr: dict[str, float] = field(default_factory=dict)  # per encoder, mean over its pairs
    concept: str | None = None
    iou: float | None = None


class LazyTensors(Mapping[str, torch.Tensor]):
    """The tensors of a safetensors file, each read from disk only when it is asked for.

        t = LazyTensors("runs/lite/dictionary.safetensors"); t.shapes["corr_self"]; t.rows("corr/lite-clip", [3, 7])

    Opening reads the file's header alone (names and shapes). Each read opens the file
    anew and returns a tensor of its own, so nothing keeps the file open or mapped, and
    mining again can replace it (Windows refuses to replace a file that is open or
    mapped). A read after the file was replaced or removed raises :class:`DictionaryError`
    rather than mixing two runs: open the run again.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path).absolute()  # a chapter may change its working folder
        self._stamp = _stamp(self.path)  # before the header: a file replaced meanwhile fails at its first read
        with safe_open(str(self.path), "pt") as handle:
            self._shapes = {key: torch.Size(handle.get_slice(key).get_shape()) for key in handle.keys()}
        # Only per-unit vectors (means, deviations) are kept once read: they are small and inversion reads
        # them at every step. Tables are what reading lazily saves memory on, so they are read at each access.
        self._cache: dict[str, torch.Tensor] = {}

    @property
    def shapes(self) -> dict[str, torch.Size]:
        """Every tensor's shape, from the header: ``{"corr_self": torch.Size([320, 320]), ...}``."""
        return dict(self._shapes)

    def __getitem__(self, key: str) -> torch.Tensor:
        if key not in self._shapes:
            raise KeyError(key)
        if key in self._cache:
            self._check()
            return self._cache[key]
        tensor = self._read(lambda handle: handle.get_tensor(key))
        if len(self._shapes[key]) == 1:
            self._cache[key] = tensor
        return tensor

    def rows(self, key: str, rows: int | slice | Sequence[int]) -> torch.Tensor:
        """Rows of one tensor, read without the rest of it (as ``self[key][rows]``).

            t.rows("corr/lite-clip", [3, 7])   # (2, encoder units): generator units 3 and 7
        """
        if key not in self._shapes:
            raise KeyError(key)
        index = rows if isinstance(rows, (int, slice)) else list(rows)
        return self._read(lambda handle: handle.get_slice(key)[index])

    def __contains__(self, key: object) -> bool:  # Mapping's would read the tensor
        return key in self._shapes

    def __iter__(self) -> Iterator[str]:
        return iter(self._shapes)

    def __len__(self) -> int:
        return len(self._shapes)

    def __eq__(self, other: object) -> bool:  # Mapping's would read every table of both
        if not isinstance(other, LazyTensors):
            return NotImplemented
        return (self.path, self._stamp) == (other.path, other._stamp)

    __hash__ = None

    def __repr__(self) -> str:
        return f"LazyTensors({str(self.path)!r}: {len(self)} tensors, read when asked for)"

    def rewritten(self, path: str | os.PathLike) -> None:
        """Go on reading the file at ``path`` if it is this one's, saved anew with this mapping's tensors."""
        if Path(path).exists() and os.path.samefile(path, self.path):
            self._stamp = _stamp(self.path)

    def _read(self, take: Callable) -> torch.Tensor:
        try:
            with safe_open(str(self.path), "pt") as handle:
                # a copy: safetensors' tensor maps the file, which would stay mapped while the caller holds it
                tensor = take(handle).clone()
        finally:
            self._check()  # after the read too: a file replaced while it was being opened was read wrongly
        return tensor

    def _check(self) -> None:
        if _stamp(self.path) != self._stamp:
            raise DictionaryError(f"{self.path} changed since it was loaded (mined again, replaced or removed); "
                                  "open the run again (RosettaDictionary.load or open_run)")


def _stamp(path: Path) -> tuple[int, int, int] | None:
    """Size, modification time and file number: an atomic save (a new file renamed over it) changes them."""
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return None
    return status.st_size, status.st_mtime_ns, status.st_ino


@dataclass
class RosettaDictionary:
    """Clusters of Rosetta neurons with what is needed to use them later.

        d = RosettaDictionary.load("runs/lite"); d.clusters[0]; d.unit_name("lite-gan", 17)
    """

    settings: dict
    models: dict[str, dict]  # name -> {"layers": [...], "units": [channels per layer]}
    clusters: list[Cluster]
    buddies: dict[str, list[list]]  # encoder -> [[g_unit, d_unit, corr], ...]
    dead: dict[str, list[int]]
    #: a built dictionary's tables, or a loaded one's :class:`LazyTensors` (read from the file when asked for)
    tensors: Mapping[str, torch.Tensor] = field(repr=False, default_factory=dict)

    @property
    def generator(self) -> str:
        return self.settings["generator"]

    @property
    def encoders(self) -> list[str]:
        return list(self.settings["encoders"])

    def similarity(self, encoder: str) -> torch.Tensor:
        """(generator units, encoder units) table of the run's similarity (Pearson, or MI in nats), float32."""
        return self.tensors[f"corr/{encoder}"]

    def best_match(self, encoder: str) -> torch.return_types.max:
        """Each generator unit's highest similarity to any unit of ``encoder``, and that unit.

            values, units = d.best_match("lite-clip")   # both (generator units,)

        Pairs with a dead unit (NaN in the table) count as -1, below any similarity.
        """
        return self.similarity(encoder).nan_to_num(-1).max(1)

    def rosetta_units(self) -> list[int]:
        """The generator's Rosetta neurons (flat unit indices), sorted: every cluster's units together.

            d.rosetta_units()   # [17, 40, 112, ...]
        """
        return sorted({u for c in self.clusters for u in c.generator_units})

    def rosetta_pairs(self, encoder: str | None = None) -> dict[str, list[tuple[int, int]]] | list[tuple[int, int]]:
        """(generator unit, encoder unit) best buddies of the Rosetta neurons: per encoder, or for one.

            d.rosetta_pairs("lite-clip")   # [(423, 148), ...]
            d.rosetta_pairs()              # {"lite-clip": [...], "lite-resnet-sup": [...], ...}
        """
        if encoder is not None and encoder not in self.buddies:
            raise ValueError(f"{encoder!r} is not an encoder of this dictionary; it has {self.encoders}")
        units = set(self.rosetta_units())
        pairs = {e: [(int(g), int(d)) for g, d, _ in rows if int(g) in units] for e, rows in self.buddies.items()}
        return pairs if encoder is None else pairs[encoder]

    def dead_mask(self, model: str) -> torch.Tensor:
        """Boolean (units,) mask of the model's dead units (constant maps: they never pair).

            best_buddies(d.similarity("lite-clip"), 3, dead_a=d.dead_mask(d.generator), dead_b=d.dead_mask("lite-clip"))
        """
        mask = torch.zeros(sum(self.models[model]["units"]), dtype=torch.bool)
        mask[self.dead[model]] = True
        return mask

    def unit_stats(self, model: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-unit mean and standard deviation on the mining grid, for normalising maps."""
        return self.tensors[f"mean/{model}"], self.tensors[f"std/{model}"]

    def mining_grid(self, model: str) -> int:
        """Side of the raster the model's maps were mined on (the largest of the run for a model it lacks).

            d.mining_grid("lite-gan")   # 32
        """
        return self.settings["grid"].get(model) or max(self.settings["grid"].values())

    def standardise(self, model: str, units: list[int], maps: dict[str, torch.Tensor],
                    grid: int | None = None) -> torch.Tensor:
        """Maps of flat ``units`` on the mining grid as z-scores of the mining statistics: (B, len(units), grid, grid).

            d.standardise("lite-gan", [423, 305], record_generator(gan, z)[1])

        ``maps`` are a model's recorded maps by layer (differentiable ones stay so);
        ``grid`` defaults to the model's mining grid, where the statistics were taken.
        """
        grid = grid or self.mining_grid(model)
        mean, std = self.unit_stats(model)
        out = []
        for unit in units:
            layer, channel = self.unit(model, unit)
            m = maps[layer][:, channel:channel + 1].float()
            if m.shape[-2:] != (grid, grid):
                m = F.interpolate(m, size=(grid, grid), mode="bilinear", align_corners=False)
            out.append((m - mean[unit].to(m.device)) / std[unit].to(m.device).clamp_min(1e-12))
        return torch.cat(out, 1)

    def check_generator(self, generator: Member) -> None:
        """Refuse a generator this dictionary was not mined with, or another version of it (:class:`MismatchError`).

            d.check_generator(zoo.load(d.generator))   # passes; any other generator raises
        """
        if self.generator != generator.name:
            raise MismatchError(f"this dictionary was mined with generator {self.generator!r}, not "
                                f"{generator.name!r}: load the dictionary of a run that mined {generator.name}")
        expected = sum(self.models[generator.name]["units"])
        with torch.no_grad():
            _, maps = record_generator(generator, generator.sample_latents(1, 0))
        units = sum(maps[layer].shape[1] for layer in generator.layers)
        if units != expected:
            raise MismatchError(f"{generator.name} has {units} units but the dictionary's has {expected}: "
                                "it was mined with another version of the generator")

    def unit(self, model: str, index: int) -> tuple[str, int]:
        """(layer, channel) of a flat unit index."""
        spec = self.models[model]
        for layer, count in zip(spec["layers"], spec["units"]):
            if index < count:
                return layer, index
            index -= count
        raise IndexError(f"{model} has {sum(spec['units'])} units; no unit {index}")

    def unit_name(self, model: str, index: int) -> str:
        layer, channel = self.unit(model, index)
        return f"{model}:{layer}:{channel}"

    def summary(self) -> dict:
        """Counts for a quick look: units per model, best buddies per encoder, Rosetta neurons, clusters."""
        return {"units": {m: sum(v["units"]) for m, v in self.models.items()},
                "dead_units": {m: len(v) for m, v in self.dead.items()},
                "best_buddies": {e: len(v) for e, v in self.buddies.items()},
                "rosetta_neurons": self.rosetta_count(), "clusters": len(self.clusters)}

    def buddy_counts(self, ks: tuple[int, ...] = (1, 2, 3, 5), mode: str = "mutual") -> dict[str, dict[int, int]]:
        """Best buddies per encoder for several K, from the saved tables.

            d.buddy_counts((1, 3))   # {"lite-clip": {1: 12, 3: 40}, ...}
        """
        g_dead = self.dead_mask(self.generator)
        counts = {}
        for encoder in self.encoders:
            table, d_dead = self.similarity(encoder), self.dead_mask(encoder)
            counts[encoder] = {k: len(best_buddies(table, k, mode=mode, dead_a=g_dead, dead_b=d_dead)) for k in ks}
        return counts

    def rosetta_count(self) -> int:
        return sum(len(c.generator_units) for c in self.clusters)

    def with_buddies(self, pairs: Mapping[str, Iterable[tuple[int, int]]], **notes: object) -> RosettaDictionary:
        """A new dictionary of only the given best-buddy pairs, its Rosetta neurons and clusters derived anew.

            strict = d.with_buddies({e: [(g, u) for g, u, c in rows if c > 0.5] for e, rows in d.buddies.items()})

        Pairs are (generator unit, encoder unit); an encoder left out keeps none (so no unit
        is a Rosetta neuron), pairs not among the dictionary's best buddies are ignored, and
        clusters use the dictionary's own ``cluster_k`` and mode, as :func:`build_dictionary`
        does. ``notes`` are added to the copy's settings, to record why pairs were dropped.
        """
        unknown = sorted(set(pairs) - set(self.buddies))
        if unknown:
            raise ValueError(f"encoders {unknown} are not in this dictionary; it has {self.encoders}")
        kept = {e: {(int(g), int(u)) for g, u in pairs.get(e, ())} for e in self.buddies}
        buddies = {e: [row for row in rows if (int(row[0]), int(row[1])) in kept[e]] for e, rows in self.buddies.items()}
        pair_lists = {e: [(int(g), int(u)) for g, u, _ in rows] for e, rows in buddies.items()}
        clusters = _clusters(pair_lists, self.tensors, self.dead_mask(self.generator), self.settings["cluster_k"],
                             self.settings["mode"]) if rosetta_units(pair_lists) else []
        return dataclasses.replace(self, settings=dict(self.settings) | notes, clusters=clusters, buddies=buddies)

    def save(self, folder: str | Path) -> Path:
        """Write dictionary.json and dictionary.safetensors into ``folder`` (atomically).

        A loaded dictionary's tables are read from its file here, all of them (safetensors
        writes a file from tensors in memory).
        """
        folder = writable_dir(folder)
        data = self._record()
        tensors = {k: v.contiguous() for k, v in self.tensors.items()}  # once: a lazy mapping reads at each access
        with atomic_path(folder / TENSORS_NAME) as tmp:
            save_file(tensors, tmp, metadata={"schema_version": str(SCHEMA_VERSION)})
            # the JSON names the one tensors file that belongs to it
            data["tensors"] = {"sha256": _sha256(tmp), "shapes": {k: list(v.shape) for k, v in tensors.items()}}
        if isinstance(self.tensors, LazyTensors):
            self.tensors.rewritten(folder / TENSORS_NAME)
        with atomic_path(folder / JSON_NAME) as tmp:
            Path(tmp).write_text(json.dumps(data, indent=1))
        return folder / JSON_NAME

    def _record(self) -> dict:
        return {"schema_version": SCHEMA_VERSION, "settings": self.settings, "models": self.models,
                "dead": self.dead, "buddies": self.buddies, "clusters": [asdict(c) for c in self.clusters]}

    def saved_in(self, folder: str | Path) -> bool:
        """Whether ``folder`` already holds this dictionary: its JSON the same, its tables of the same names and shapes.

            if not dictionary.saved_in("runs/lite"): dictionary.save("runs/lite")

        A finished run mined again (``open_run(..., mine_always=True)``) rebuilds the same
        dictionary from the same accumulators; left unwritten, its file stays the one that
        other readers (a second chapter's lazy tables) have open.
        """
        path = Path(folder) / JSON_NAME
        try:
            saved = json.loads(path.read_text())
        except (OSError, ValueError):
            return False
        lazy = isinstance(self.tensors, LazyTensors)  # its shapes from the header: no table read
        shapes = self.tensors.shapes if lazy else {k: v.shape for k, v in self.tensors.items()}
        shapes = {k: list(v) for k, v in shapes.items()}
        ours = json.loads(json.dumps(self._record()))  # as the file spells it: tuples become lists
        return (saved.get("tensors", {}).get("shapes") == shapes and (Path(folder) / TENSORS_NAME).is_file()
                and {k: v for k, v in saved.items() if k != "tensors"} == ours)

    @classmethod
    def load(cls, folder: str | Path) -> "RosettaDictionary":
        """Read a dictionary saved by ``save``; other schema versions and corrupt files are refused.

        Its ``tensors`` are a :class:`LazyTensors`: loading reads the JSON, the tensors file's
        header and (streamed, for its checksum) its bytes, but keeps no table in memory.
        """
        folder = Path(folder)
        path = folder / JSON_NAME if folder.is_dir() else folder
        tensors_path = path.with_name(TENSORS_NAME)
        if not path.exists():
            raise DictionaryError(f"no dictionary at {path}; mine one with: python -m rosetta_lite mine --out {folder}")
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise DictionaryError(f"{path} is corrupt (not valid JSON: {error}); mine it again") from None
        version = data.get("schema_version") if isinstance(data, dict) else None
        if version != SCHEMA_VERSION:
            raise DictionaryError(f"{path} has schema version {version!r}; this rosetta_lite reads version "
                                  f"{SCHEMA_VERSION}: mine it again with this version")
        try:
            tensors = LazyTensors(tensors_path)
        except Exception as error:  # noqa: BLE001 - any failure to parse means the file is unusable
            raise DictionaryError(f"{tensors_path} is missing or corrupt ({error}); mine it again") from None
        _check_fields(path, "the file", data, {"schema_version", "settings", "models", "clusters", "buddies", "dead",
                                               "tensors"}, optional={"tensors"})  # older files lack "tensors"
        _check_sections(path, data)
        _check_tensors(path, tensors_path, data.get("tensors"), tensors.shapes)
        fields = {f.name for f in dataclasses.fields(Cluster)}
        optional = {f.name for f in dataclasses.fields(Cluster)
                    if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING}
        for index, cluster in enumerate(data["clusters"]):
            _check_fields(path, f"cluster {index}", cluster, fields, optional)
            _check_cluster(path, index, cluster)
        clusters = [Cluster(**c) for c in data["clusters"]]
        return cls(data["settings"], data["models"], clusters, data["buddies"], data["dead"], tensors)


def _sha256(path: str | Path) -> str:
    import hashlib

    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _check_tensors(path: Path, tensors_path: Path, recorded: dict | None, shapes: Mapping[str, torch.Size]) -> None:
    """Refuse a tensors file other than the one the JSON was saved with (its checksum and shapes)."""
    if recorded is None:
        return
    if not isinstance(recorded, dict) or _sha256(tensors_path) != recorded.get("sha256"):
        raise DictionaryError(f"{tensors_path} is not the tensors file {path.name} was saved with (its checksum "
                              "differs: overwritten, damaged or another run's); mine it again")
    if {k: list(v) for k, v in shapes.items()} != recorded.get("shapes"):
        raise DictionaryError(f"{tensors_path}: its tables' shapes differ from those {path.name} records; mine it again")


def _check_sections(path: Path, data: dict) -> None:
    """Refuse a file whose sections are not of their JSON kinds (a hand-edited or damaged file)."""
    kinds = {"settings": dict, "models": dict, "clusters": list, "buddies": dict, "dead": dict}
    json_name = {dict: "object", list: "array"}
    wrong = [f"{key!r} must be a JSON {json_name[kind]}, got {type(data[key]).__name__}"
             for key, kind in kinds.items() if not isinstance(data[key], kind)]
    if wrong:
        raise DictionaryError(f"{path}: {'; '.join(wrong)}; mine it again")


def _check_cluster(path: Path, index: int, cluster: dict) -> None:
    """Refuse a cluster whose units are not lists of whole numbers (a hand-edited or damaged file)."""
    def units(value) -> bool:
        return isinstance(value, list) and all(isinstance(u, int) and not isinstance(u, bool) for u in value)

    members = cluster.get("members")
    if not units(cluster.get("generator_units")) or not isinstance(members, dict) or not all(
            isinstance(k, str) and units(v) for k, v in members.items()):
        raise DictionaryError(f"{path}: cluster {index} must list whole-number units (generator_units, and members "
                              "by model); mine it again")


def _check_fields(path: Path, what: str, data, expected: set[str], optional: set[str] = frozenset()) -> None:
    """Refuse a part of a dictionary file whose fields differ from the schema's, naming them."""
    if not isinstance(data, dict):
        raise DictionaryError(f"{path}: {what} must be a JSON object with {sorted(expected)}; mine it again")
    missing, extra = sorted(expected - optional - set(data)), sorted(set(data) - expected)
    if missing or extra:
        said = ", ".join(part for part in (f"missing {missing}" if missing else "",
                                           f"unknown {extra}" if extra else "") if part)
        raise DictionaryError(f"{path}: {what} does not match schema version {SCHEMA_VERSION} ({said}); "
                              "mine it again")


def build_dictionary(result: MiningResult, k: int = 1, *, mode: str = "mutual", k_other: int = 5,
                     cluster_k: int | None = None, encoders: list[str] | None = None) -> RosettaDictionary:
    """Best buddies of the generator with every encoder, Rosetta neurons and their clusters.

        d = build_dictionary(mine(gan, encoders, images=2000), k=3)

    ``encoders`` picks which mined encoders form the dictionary (default: all), e.g. the
    trained zoo or its untrained control.
    """
    s = result.settings
    g = s.generator
    chosen = list(encoders or s.encoders)
    unknown = [e for e in chosen if e not in result.pairs]
    if unknown:
        raise ValueError(f"encoders {unknown} were not mined; mined: {s.encoders}")
    g_dead = result.self_pair.dead_a()
    tensors, buddies, dead = {}, {}, {g: g_dead.nonzero().flatten().tolist()}
    g_mean, g_var = result.self_pair.mean_a, result.self_pair.variance_a()
    tensors[f"mean/{g}"], tensors[f"std/{g}"] = g_mean.float(), g_var.sqrt().float()
    tensors["corr_self"] = result.self_pair.similarity().float()
    pair_lists = {}
    for encoder in chosen:
        acc = result.pairs[encoder]
        corr = acc.similarity()
        d_dead = acc.dead_b()
        dead[encoder] = d_dead.nonzero().flatten().tolist()
        pairs = best_buddies(corr, k, mode=mode, k_other=k_other, dead_a=acc.dead_a(), dead_b=d_dead)
        pair_lists[encoder] = pairs
        buddies[encoder] = [[a, b, round(float(corr[a, b]), 6)] for a, b in pairs]
        tensors[f"corr/{encoder}"] = corr.float()
        tensors[f"mean/{encoder}"], tensors[f"std/{encoder}"] = acc.mean_b.float(), acc.variance_b().sqrt().float()
    # "images" is the latent span; a gapped merge counted fewer, and what reads the run needs the count
    settings = asdict(s) | {"encoders": chosen, "mined_encoders": s.encoders, "k": k, "mode": mode,
                            "k_other": k_other, "cluster_k": cluster_k or k, "images_counted": result.images_counted}
    models = {name: {"layers": s.layers[name], "units": s.units[name]} for name in [g, *chosen]}
    clusters = _clusters(pair_lists, tensors, g_dead, cluster_k or k, mode)
    return RosettaDictionary(settings, models, clusters, buddies, dead, tensors)


def _clusters(pair_lists: dict[str, list[tuple[int, int]]], tensors: Mapping[str, torch.Tensor],
              g_dead: torch.Tensor, cluster_k: int, mode: str) -> list[Cluster]:
    """Rosetta neurons of the given best buddies, clustered by BB(G, G), ranked by mean correlation."""
    rosetta = rosetta_units(pair_lists)
    groups = cluster_units(rosetta, tensors["corr_self"], cluster_k, dead_g=g_dead, mode=mode)
    row = {u: i for i, u in enumerate(rosetta)}
    # each encoder's table once, and of a loaded dictionary only the Rosetta neurons' rows
    rows = {e: _rows(tensors, f"corr/{e}", list(rosetta)) for e in pair_lists} if rosetta else {}
    clusters = []
    for units in groups:
        members = {e: sorted({d for u in units for d in rosetta[u][e]}) for e in pair_lists}
        per_encoder = {e: [float(rows[e][row[u], d]) for u in units for d in rosetta[u][e]] for e in pair_lists}
        pair_corr = {e: round(sum(v) / len(v), 6) for e, v in per_encoder.items()}
        every = [c for v in per_encoder.values() for c in v]
        clusters.append(Cluster(0, units, members, round(sum(every) / len(every), 6), pair_corr))
    clusters.sort(key=lambda c: -c.score)
    for rank, cluster in enumerate(clusters):
        cluster.id = rank
    return clusters


def _rows(tensors: Mapping[str, torch.Tensor], key: str, rows: list[int]) -> torch.Tensor:
    return tensors.rows(key, rows) if isinstance(tensors, LazyTensors) else tensors[key][rows]


def _control_twin(control: RosettaDictionary, encoder: str) -> str | None:
    return next((c for c in control.encoders if c.removesuffix(CONTROL_SUFFIX) == encoder), None)


def chance_levels(trained: RosettaDictionary, control: RosettaDictionary, quantile: float = 0.99) -> dict[str, float]:
    """Per encoder, the ``quantile`` of the control's best-buddy correlations with the generator.

        levels = chance_levels(trained, control)   # {"lite-clip": 0.41, ...}

    A best buddy is a maximum over many candidate units, so its chance level is the
    distribution of best-buddy correlations of the same architectures, untrained.
    """
    levels = {}
    for encoder in trained.encoders:
        twin = _control_twin(control, encoder)
        if twin is None:
            raise ValueError(f"the control dictionary has no untrained copy of {encoder}; it has {control.encoders}")
        corr = torch.tensor([row[2] for row in control.buddies[twin]], dtype=torch.float64)
        levels[encoder] = float(corr.quantile(quantile)) if len(corr) else -1.0
    return levels


def above_chance(trained: RosettaDictionary, control: RosettaDictionary, quantile: float = 0.99) -> RosettaDictionary:
    """The dictionary rebuilt from the best buddies whose correlation exceeds the control's level.

        strict = above_chance(trained, control)
    """
    levels = chance_levels(trained, control, quantile)
    pairs = {e: [(g, d) for g, d, corr in rows if corr > levels[e]] for e, rows in trained.buddies.items()}
    return trained.with_buddies(pairs, above_chance={"quantile": quantile, "levels": levels})


def chance_report(trained: RosettaDictionary, control: RosettaDictionary, quantile: float = 0.99) -> dict:
    """Per encoder: best buddies in the trained and the control zoo, the chance level, how many exceed it.

        chance_report(*load_dictionaries("runs/lite"))
    """
    levels = chance_levels(trained, control, quantile)
    report = {}
    for encoder in trained.encoders:
        twin = _control_twin(control, encoder)
        rows = trained.buddies[encoder]
        report[encoder] = {"best_buddies": len(rows), "control_best_buddies": len(control.buddies[twin]),
                           "chance_level": round(levels[encoder], 4),
                           "above_chance": sum(row[2] > levels[encoder] for row in rows)}
    strict = above_chance(trained, control, quantile)
    report["rosetta_neurons"] = {"trained": trained.rosetta_count(), "control": control.rosetta_count(),
                                 "trained_above_chance": strict.rosetta_count()}
    return report
