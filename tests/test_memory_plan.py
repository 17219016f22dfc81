"""The memory plan of a mining run: its estimate against the measured peak, and the budget's decisions."""

import json
import os
import subprocess
import sys

import pytest

from rosetta_lite.mining.plan import MemoryEstimate, MemoryRequest, estimate_memory, fit_memory
from rosetta_lite.zoo.registry import zoo_members

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# one fresh process per size: VmHWM is the process's peak; the growth from just before mining is
# what the estimate counts (the models are loaded by then and counted apart)
MEASURE = """
import json, sys, torch
from rosetta_lite.mining.loop import mine
from rosetta_lite.mining.plan import MemoryRequest, estimate_memory
from rosetta_lite.zoo.registry import zoo_members
torch.set_num_threads(1)
batch, grid = int(sys.argv[1]), int(sys.argv[2]) or None
gan, encoders = zoo_members("lite-untrained")
estimate = estimate_memory(gan, encoders, MemoryRequest(grid=grid, batch_size=batch))
def status(key):
    return int([line for line in open("/proc/self/status") if line.startswith(key)][0].split()[1]) * 1024
before = status("VmRSS")
mine(gan, encoders, 2 * batch, batch_size=batch, grid=grid, progress=False)
print(json.dumps({"measured": status("VmHWM") - before, "estimate": estimate.device - estimate.models}))
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="peak memory is read from /proc")
@pytest.mark.parametrize("batch, grid", [(16, 0), (64, 0), (128, 16)])
def test_the_estimate_is_within_a_quarter_of_the_measured_peak(batch, grid):
    done = subprocess.run([sys.executable, "-c", MEASURE, str(batch), str(grid)], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert abs(figures["estimate"] - figures["measured"]) <= 0.25 * figures["measured"], figures


def test_the_estimate_grows_with_the_batch_and_counts_the_tables_exactly():
    gan, encoders = zoo_members("lite-untrained")
    small, large = (estimate_memory(gan, encoders, MemoryRequest(batch_size=b)) for b in (8, 16))
    assert large.batch == 2 * small.batch and large.rows == 2 * small.rows and large.tables == small.tables
    assert small.tables > 0 and small.models > 0 and small.host == 0
    assert estimate_memory(gan, encoders, MemoryRequest(batch_size=8, tables="host")).host == small.tables
    with pytest.raises(ValueError, match="tables must be one of"):
        estimate_memory(gan, encoders, MemoryRequest(tables="gpu"))


GIB = 2**30


def test_the_budget_picks_where_the_tables_live_or_says_what_would_fit():
    big_tables = MemoryEstimate(models=GIB, tables=17 * GIB, batch=GIB, rows=GIB, products=GIB // 2,
                                tables_on="device")
    assert fit_memory(big_tables, "cuda", 40 * GIB, 64 * GIB) == "device"  # 20.5 GB on a 40 GB GPU
    assert fit_memory(big_tables, "cuda", 16 * GIB, 32 * GIB) == "host"  # a 16 GB GPU: tables to the host
    with pytest.raises(ValueError, match=r"needs about 17.00 GB of host memory .* budget is 12.00 GB; to fit, "
                                         r"choose fewer encoders or no control \(the float64 tables: 17.00 GB\)"):
        fit_memory(big_tables, "cuda", 16 * GIB, 12 * GIB)  # a T4 Colab's host memory
    big_batch = MemoryEstimate(models=GIB, tables=GIB, batch=10 * GIB, rows=10 * GIB, products=0, tables_on="device")
    with pytest.raises(ValueError, match=r"about 21.00 GB of GPU memory.*choose a smaller grid or batch_size"):
        fit_memory(big_batch, "cuda", 16 * GIB, 64 * GIB)
    with pytest.raises(ValueError, match=r"about 22.00 GB of host memory"):
        fit_memory(big_batch, "cpu", None, 8 * GIB)
    assert fit_memory(big_batch, "cpu") == "device"  # no budget: nothing checked


def test_mine_refuses_a_run_over_its_memory_budget_before_mining(tmp_path, capsys):
    from rosetta_lite.cli import main

    argv = ["mine", "--zoo", "lite-untrained", "--images", "8", "--out", str(tmp_path / "run"), "--json"]
    assert main(argv + ["--host-memory", "0.01"]) == 2
    assert "of host memory" in capsys.readouterr().err and not (tmp_path / "run").exists()
    assert main(argv + ["--host-memory", "8", "--no-control", "--batch-size", "8"]) == 0
    assert (tmp_path / "run" / "dictionary.json").exists()


def test_without_a_grid_the_budget_chooses_the_largest_grid_that_fits():
    from rosetta_lite.mining.plan import LEAST_AUTO_GRID, fit_grid, probe_members, size_run

    gan, encoders = zoo_members("lite-untrained")
    probe = probe_members(gan, encoders)
    assert probe.smaller_grids(LEAST_AUTO_GRID) == [16, 8]  # the lite members' map sides below 32
    at = {grid: size_run(probe, MemoryRequest(grid=grid, batch_size=16)).device for grid in (None, 16, 8)}
    assert at[None] > at[16] > at[8]
    assert at[None] == estimate_memory(gan, encoders, MemoryRequest(batch_size=16)).device  # one probe, same sizes
    between = (at[None] + at[16]) // 2
    assert fit_grid(gan, encoders, MemoryRequest(batch_size=16), "cpu", None, between) == (16, "device")
    assert fit_grid(gan, encoders, MemoryRequest(batch_size=16), "cpu", None, at[None]) == (None, "device")
    with pytest.raises(ValueError, match="about .* GB of host memory"):  # a grid asked for is kept, or refused
        fit_grid(gan, encoders, MemoryRequest(grid=32, batch_size=16), "cpu", None, between)
    with pytest.raises(ValueError, match=r"no common grid from the largest maps' down to 8 fits; at grid 8, the "
                                         r"mining run needs about"):
        fit_grid(gan, encoders, MemoryRequest(batch_size=16), "cpu", None, at[8] - 1)


def test_mine_says_which_grid_its_budget_chose(tmp_path, capsys):
    from rosetta_lite.cli import main
    from rosetta_lite.mining.plan import probe_members, size_run

    gan, encoders = zoo_members("lite-untrained")
    probe = probe_members(gan, encoders)
    at = {grid: size_run(probe, MemoryRequest(grid=grid, batch_size=8)).device for grid in (None, 16)}
    budget = (at[None] + at[16]) / 2 / GIB
    out = tmp_path / "run"
    argv = ["mine", "--zoo", "lite-untrained", "--images", "8", "--batch-size", "8", "--no-control", "--out", str(out),
            "--json", "--host-memory", f"{budget:.6f}"]
    assert main(argv) == 0
    assert "mining on a common grid of 16" in capsys.readouterr().err
    assert set(json.loads((out / "dictionary.json").read_text())["settings"]["grid"].values()) == {16}
