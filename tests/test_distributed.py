"""Mining in several processes (torchrun, gloo on the CPU) gives the dictionary of one process."""

import os
import subprocess
import sys

import pytest
import torch

from rosetta_lite.cli import main
from rosetta_lite.dictionary.rosetta import RosettaDictionary
from rosetta_lite.mining import processes as distributed
from rosetta_lite.mining.settings import ACCUMULATORS, MiningResult


def test_shares_are_contiguous_whole_batches_covering_the_run():
    assert [distributed.share(0, 64, 16, r, 2) for r in range(2)] == [(0, 32), (32, 32)]
    shares = [distributed.share(100, 70, 16, r, 3) for r in range(3)]  # 5 batches, the last one partial
    assert shares == [(100, 16), (116, 32), (148, 22)]
    assert sum(n for _, n in shares) == 70 and all(s % 16 == 100 % 16 for s, _ in shares)
    with pytest.raises(ValueError, match="fewer than the 4 processes"):
        distributed.share(0, 48, 16, 0, 4)
    with pytest.raises(ValueError, match="rank 2 is not in a world of 2"):
        distributed.share(0, 64, 16, 2, 2)


def test_one_process_needs_no_process_group(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert distributed.setup("cpu") == (0, 1, torch.device("cpu")) and not distributed.active()
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="WORLD_SIZE must be an integer, got 'two'"):
        distributed.setup("cpu")


def _torchrun(args: list[str], processes: int = 2) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
               "-m", "rosetta_lite", "mine", *args]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]


def _same_dictionary(one: RosettaDictionary, two: RosettaDictionary) -> None:
    assert one.encoders == two.encoders
    for encoder in one.encoders:
        assert [row[:2] for row in one.buddies[encoder]] == [row[:2] for row in two.buddies[encoder]]
        assert max(abs(a[2] - b[2]) for a, b in zip(one.buddies[encoder], two.buddies[encoder])) < 1e-6
    assert [(c.generator_units, c.members) for c in one.clusters] == [(c.generator_units, c.members)
                                                                      for c in two.clusters]
    assert one.tensors.keys() == two.tensors.keys()
    for key, value in one.tensors.items():
        assert torch.allclose(value, two.tensors[key], atol=1e-6, rtol=1e-6), key


@pytest.mark.parametrize("options", [
    ["--zoo", "lite", "--images", "64", "--batch-size", "16"],
    ["--zoo", "lite-untrained", "--encoders", "lite-resnet-sup", "lite-clip", "--images", "32", "--batch-size", "8",
     "--similarity", "mi", "--calibration-images", "8"],
], ids=["pearson", "mi"])
def test_two_processes_write_the_dictionary_of_one(tmp_path, options, capsys):
    common = [*options, "--no-control", "--json"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each torchrun process: float32 maps can differ in the last bit across thread counts
    try:
        assert main(["mine", *common, "--out", str(tmp_path / "one")]) == 0
    finally:
        torch.set_num_threads(threads)
    capsys.readouterr()
    _torchrun([*common, "--out", str(tmp_path / "two")])
    _same_dictionary(RosettaDictionary.load(tmp_path / "one"), RosettaDictionary.load(tmp_path / "two"))
    merged = MiningResult.load(tmp_path / "two" / ACCUMULATORS)
    single = MiningResult.load(tmp_path / "one" / ACCUMULATORS)
    assert merged.settings.extra["processes"] == 2 and merged.settings.fingerprint() == single.settings.fingerprint()
    assert merged.counted == single.counted == [[0, single.settings.images]]
    if "mi" in options:  # integer counts: exactly equal
        for name in single.pairs:
            assert torch.equal(merged.pairs[name].both, single.pairs[name].both)
    assert not list((tmp_path / "two").glob("checkpoint*"))
