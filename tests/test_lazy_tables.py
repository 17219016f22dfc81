"""A loaded dictionary reads its tables from the file only when asked for (issue 26, item 4)."""

import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import safetensors.torch
import torch
from safetensors import safe_open
from safetensors.torch import load_file

import rosetta_lite.dictionary.rosetta as rosetta
from rosetta_lite.dictionary.rosetta import (
    TENSORS_NAME,
    DictionaryError,
    LazyTensors,
    RosettaDictionary,
    above_chance,
    build_dictionary,
)
from rosetta_lite.mining.settings import MiningResult, MiningSettings
from rosetta_lite.stats.moments import CoMoments

CHANGED = "changed since it was loaded .*open the run again"


def _result(seed: int = 0, samples: int = 400) -> MiningResult:
    """A small run without models: units that mix a few shared factors, one encoder unit dead."""
    gen = torch.Generator().manual_seed(seed)
    factors = torch.randn(samples, 6, generator=gen)

    def rows(units: int) -> torch.Tensor:
        return factors @ torch.randn(6, units, generator=gen) + 0.5 * torch.randn(samples, units, generator=gen)

    g, a, b = rows(40), rows(24), rows(32)
    b[:, 3] = 1.0  # a dead unit: its column of the table is NaN
    self_pair = CoMoments(40, 40, same=True)
    self_pair.update(g)
    pairs = {"enc-a": CoMoments(40, 24), "enc-b": CoMoments(40, 32)}
    pairs["enc-a"].update(g, a)
    pairs["enc-b"].update(g, b)
    settings = MiningSettings("gen", ["enc-a", "enc-b"], {"gen": ["l1", "l2"], "enc-a": ["x"], "enc-b": ["y", "z"]},
                              {"gen": [16, 24], "enc-a": [24], "enc-b": [12, 20]}, {"enc-a": 8, "enc-b": 8},
                              seed=seed, start=0, images=samples, batch_size=100)
    return MiningResult(settings, pairs, self_pair, counted=[[0, samples]])


@pytest.fixture(scope="module")
def built() -> RosettaDictionary:
    d = build_dictionary(_result(), k=2, cluster_k=3)
    assert len(d.clusters) > 1 and d.dead["enc-b"] == [3]  # else the comparisons below say little
    return d


@pytest.fixture
def saved(built, tmp_path) -> Path:
    built.save(tmp_path)
    return tmp_path


@pytest.fixture
def reads(monkeypatch) -> list[tuple[str, str]]:
    """What the dictionary module reads from safetensors files: ("tensor", key) or ("slice", key)."""
    log: list[tuple[str, str]] = []

    class Slice:
        def __init__(self, inner, key: str) -> None:
            self.inner, self.key = inner, key

        def get_shape(self):
            return self.inner.get_shape()

        def __getitem__(self, index):
            log.append(("slice", self.key))
            return self.inner[index]

    class Handle:
        def __init__(self, *args, **kwargs) -> None:
            self.inner = safe_open(*args, **kwargs)

        def __enter__(self):
            self.open = self.inner.__enter__()
            return self

        def __exit__(self, *exc):
            return self.inner.__exit__(*exc)

        def keys(self):
            return self.open.keys()

        def get_tensor(self, key: str):
            log.append(("tensor", key))
            return self.open.get_tensor(key)

        def get_slice(self, key: str):
            return Slice(self.open.get_slice(key), key)

    monkeypatch.setattr(rosetta, "safe_open", Handle)
    return log


def _pairs(d: RosettaDictionary) -> dict[str, list[tuple[int, int]]]:
    return {e: [(g, u) for g, u, _ in rows] for e, rows in d.buddies.items()}


def _same(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)  # exact, NaN of dead units included


def test_loading_reads_no_table(saved, reads, monkeypatch):
    def whole_file(*args, **kwargs):
        raise AssertionError("load read the whole tensors file")

    monkeypatch.setattr(safetensors.torch, "load_file", whole_file)
    monkeypatch.setattr(rosetta, "load_file", whole_file, raising=False)
    d = RosettaDictionary.load(saved)
    assert reads == []
    assert isinstance(d.tensors, LazyTensors)
    assert d.tensors.shapes == {k: v.shape for k, v in load_file(str(saved / TENSORS_NAME)).items()}
    assert [c.generator_units for c in d.clusters] and d.summary()["clusters"] == len(d.clusters)
    assert reads == []  # the clusters and counts are the JSON's


def test_a_table_read_equals_the_file_and_rows_are_read_alone(saved, reads):
    d = RosettaDictionary.load(saved)
    whole = load_file(str(saved / TENSORS_NAME))
    assert sorted(d.tensors) == sorted(whole) and len(d.tensors) == len(whole)
    for key, value in whole.items():
        got = d.tensors[key]
        assert got.dtype == value.dtype and got.shape == value.shape
        _same(got, value)
    reads.clear()
    table = whole["corr/enc-b"]
    for rows in ([7, 0, 7, 39], slice(5, 12), 3):
        _same(d.tensors.rows("corr/enc-b", rows), table[rows])
    assert reads == [("slice", "corr/enc-b")] * 3  # never the whole table
    assert "corr/enc-b" in d.tensors and "corr/nowhere" not in d.tensors and d.tensors.get("corr/nowhere") is None
    with pytest.raises(KeyError):
        d.tensors.rows("corr/nowhere", [0])


def test_only_per_unit_vectors_are_kept_once_read(saved, reads):
    d = RosettaDictionary.load(saved)
    for _ in range(3):
        d.unit_stats("gen")
        d.similarity("enc-a")
    assert reads.count(("tensor", "mean/gen")) == 1 and reads.count(("tensor", "std/gen")) == 1
    assert reads.count(("tensor", "corr/enc-a")) == 3  # tables are not held by the dictionary


def test_a_loaded_dictionary_behaves_as_the_built_one(built, saved, reads):
    lazy = RosettaDictionary.load(saved)
    assert [asdict(c) for c in lazy.clusters] == [asdict(c) for c in built.clusters]
    assert lazy.summary() == built.summary() and lazy.buddy_counts() == built.buddy_counts()
    for encoder in built.encoders:
        _same(lazy.similarity(encoder), built.similarity(encoder))
        assert torch.equal(lazy.best_match(encoder).indices, built.best_match(encoder).indices)
    for model in built.models:
        for got, expected in zip(lazy.unit_stats(model), built.unit_stats(model)):
            _same(got, expected)
    maps = {"l1": torch.randn(2, 16, 5, 5), "l2": torch.randn(2, 24, 8, 8)}
    _same(lazy.standardise("gen", [1, 20, 33], maps), built.standardise("gen", [1, 20, 33], maps))
    reads.clear()
    strict, expected = above_chance(lazy, lazy, quantile=0.3), above_chance(built, built, quantile=0.3)
    assert strict.clusters and [asdict(c) for c in strict.clusters] == [asdict(c) for c in expected.clusters]
    assert {key for kind, key in reads if kind == "tensor"} == {"corr_self"}  # the encoders' tables: rows only


def test_saving_a_loaded_dictionary_gives_the_same_files(saved, tmp_path):
    lazy = RosettaDictionary.load(saved)
    lazy.save(tmp_path / "copy")
    assert (tmp_path / "copy" / TENSORS_NAME).read_bytes() == (saved / TENSORS_NAME).read_bytes()
    assert json.loads((tmp_path / "copy" / "dictionary.json").read_text()) == json.loads(
        (saved / "dictionary.json").read_text())  # equal, if not in the same order (the file's, not the mining's)
    before = (saved / TENSORS_NAME).stat().st_ino
    lazy.save(saved)  # into its own folder: the file is replaced by one with the same tables
    assert (saved / TENSORS_NAME).stat().st_ino != before
    _same(lazy.similarity("enc-a"), RosettaDictionary.load(saved).similarity("enc-a"))


def test_a_file_replaced_or_removed_after_loading_is_refused(built, saved):
    d = RosettaDictionary.load(saved)
    d.unit_stats("gen")  # kept once read: refused all the same below
    build_dictionary(_result(seed=1), k=2).save(saved)  # mined again into the folder: tables of the same shapes
    for read in (lambda: d.similarity("enc-a"), lambda: d.unit_stats("gen"),
                 lambda: d.tensors.rows("corr_self", [0]), lambda: d.with_buddies(_pairs(d))):
        with pytest.raises(DictionaryError, match=CHANGED):
            read()
    _same(RosettaDictionary.load(saved).similarity("enc-a"), build_dictionary(_result(seed=1), k=2).similarity("enc-a"))
    again = RosettaDictionary.load(saved)
    (saved / TENSORS_NAME).unlink()
    with pytest.raises(DictionaryError, match=CHANGED):
        again.similarity("enc-a")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_reading_keeps_the_file_neither_open_nor_mapped(saved):
    d = RosettaDictionary.load(saved)
    held = [d.similarity("enc-b"), d.tensors.rows("corr_self", [1, 2]), *d.unit_stats("gen")]
    path = str((saved / TENSORS_NAME).resolve())
    mapped = Path(f"/proc/{os.getpid()}/maps").read_text()
    opened = [os.readlink(entry) for entry in Path(f"/proc/{os.getpid()}/fd").iterdir() if entry.is_symlink()]
    assert path not in mapped and path not in opened  # Windows could not replace it otherwise
    assert all(t.numel() for t in held)


def test_a_damaged_tensors_file_is_refused_at_load_as_before(saved):
    tensors = saved / TENSORS_NAME
    original = tensors.read_bytes()
    for broken in (original[:-8], b"garbage" * 10):  # cut short; no header
        tensors.write_bytes(broken)
        with pytest.raises(DictionaryError, match=f"{TENSORS_NAME} is missing or corrupt .*; mine it again"):
            RosettaDictionary.load(saved)
    tensors.unlink()
    with pytest.raises(DictionaryError, match="is missing or corrupt"):
        RosettaDictionary.load(saved)
    tensors.write_bytes(original)
    data = json.loads((saved / "dictionary.json").read_text())
    data["tensors"]["shapes"]["corr_self"] = [40, 41]
    (saved / "dictionary.json").write_text(json.dumps(data))
    with pytest.raises(DictionaryError, match="shapes differ"):
        RosettaDictionary.load(saved)


def test_a_finished_run_mined_again_leaves_its_files_to_their_readers(tmp_path):
    from rosetta_lite.dictionary.runs import mine_zoo

    settings = dict(k=1, batch_size=16, grid=8, encoders=["lite-clip"], progress=False)
    mine_zoo("lite-untrained", 16, tmp_path, **settings)
    reader = RosettaDictionary.load(tmp_path)  # e.g. chapter 05's, while chapter 04 opens the run again
    files = [tmp_path / TENSORS_NAME, tmp_path / "dictionary.json", tmp_path / "control" / TENSORS_NAME]
    stamps = [(f.stat().st_ino, f.stat().st_mtime_ns) for f in files]
    mine_zoo("lite-untrained", 16, tmp_path, **settings)  # finished: the same dictionaries, not written again
    assert [(f.stat().st_ino, f.stat().st_mtime_ns) for f in files] == stamps
    assert reader.saved_in(tmp_path) and reader.similarity("lite-clip").shape[1] > 0
    mine_zoo("lite-untrained", 16, tmp_path, **{**settings, "k": 2})  # another K: another dictionary, written
    assert not reader.saved_in(tmp_path) and RosettaDictionary.load(tmp_path).settings["k"] == 2
    with pytest.raises(DictionaryError, match=CHANGED):
        reader.similarity("lite-clip")
