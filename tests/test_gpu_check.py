"""``check gpu``: refused in one line without CUDA; its every part run on the CPU at a tiny size with the lite zoo."""

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from rosetta_lite.bench import gpu
from rosetta_lite.bench.gpu import GpuCheckOptions, run_check
from rosetta_lite.cli import main

TINY = dict(device="cpu", zoo="lite-untrained", generator="lite-gan", encoders=["lite-resnet-sup", "lite-clip"],
            images=8, batch_size=4, grid=8, exact_images=4, exact_units=16, steps=1)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is here")
def test_without_cuda_the_command_says_so_in_one_line(capsys):
    assert main(["check", "gpu", "--json"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "check gpu needs a CUDA device" in err and "sees none on this machine" in err


def test_every_part_runs_and_passes_on_the_cpu_at_a_tiny_size():
    report = run_check(**TINY)
    assert report["failures"] == [] and report["passed"], report
    assert [(run["tables"], run["precision"]) for run in report["mining"]] == list(gpu.MINING_RUNS)
    for run in report["mining"]:
        assert run["tables_placed_on"] == run["tables"] and run["images_per_s"] > 0 and run["seconds"] > 0
        assert run["estimated_device_mb"] > 0 and run["peak_gpu_mb"] is None  # no GPU: nothing to measure
    errors = report["exactness"]["max_abs_err_vs_float64"]
    assert set(errors) == set(gpu.EXACT_PRECISIONS) and errors["fp32"] < 1e-5
    assert "16 of" in report["exactness"]["checked"] and "on 4 images at grid 8" in report["exactness"]["checked"]
    assert report["inversion"]["loss_finite"] and report["inversion"]["target_steps_per_s"] > 0
    assert report["editing"]["images_finite"] and report["editing"]["latent_steps_per_s"] > 0
    processes = report["torchrun"]
    assert processes["processes"] == 2 and processes["backend"] == "gloo"
    assert processes["max_abs_diff_vs_one_process"] < 1e-5 and processes["images_per_s"] > 0
    assert report["units"]["lite-gan"] > 0 and report["tables_mb"] > 0 and report["warm_up"]["images"] == 4
    json.dumps(report)  # the command prints it


def test_a_part_that_fails_or_an_inexact_table_fails_the_check_and_the_rest_still_runs(monkeypatch):
    def broken_edit(*args, **kwargs):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    class Inexact:
        errors = {"fp32": 2e-3, "tf32": 2e-3, "bf16": 2e-2}

        def describe(self):
            return "checked nothing"

    monkeypatch.setattr(gpu, "edit", broken_edit)
    monkeypatch.setattr(gpu, "check_exactness", lambda *args, **kwargs: Inexact())
    report = run_check(**TINY, processes=0)
    assert not report["passed"] and "torchrun" not in report
    assert report["editing"]["error"].startswith("RuntimeError: CUDA error: an illegal memory access")
    assert any(f.startswith("editing: RuntimeError") for f in report["failures"])
    assert any("fp32 tables differ from float64 Pearson by 2.00e-03" in f for f in report["failures"])
    assert report["inversion"]["loss_finite"] and len(report["mining"]) == len(gpu.MINING_RUNS)


def test_the_command_line_passes_every_option(monkeypatch, capsys):
    seen = {}

    def fake(options):
        seen["options"] = options
        return {"passed": False}

    monkeypatch.setattr(gpu, "run_check", fake)
    argv = ["check", "gpu", "--device", "cpu", "--zoo", "lite-untrained", "--generator", "lite-gan", "--encoders",
            "lite-clip", "--images", "12", "--batch-size", "3", "--grid", "6", "--exact-images", "5",
            "--exact-units", "7", "--targets", "3", "--steps", "4", "--application-precision", "tf32",
            "--processes", "0", "--json"]
    assert main(argv) == 1  # a check that did not pass exits 1
    assert seen["options"] == GpuCheckOptions("cpu", "lite-untrained", "lite-gan", ["lite-clip"], 12, 3, 6, 5, 7, 3,
                                              4, "tf32", 0)
    assert json.loads(capsys.readouterr().out) == {"passed": False}


@pytest.mark.parametrize("changes,message", [
    ({"images": 0}, "images must be an integer >= 1, got 0"),
    ({"steps": 1.5}, "steps must be an integer >= 1, got 1.5"),
    ({"images": 4, "batch_size": 4}, r"images \(4\) must make at least one batch of 4 for each of the 2 processes"),
    ({"zoo": "huge"}, "zoo must be one of"),
    ({"application_precision": "fp8"}, "precision must be one of"),
    ({"device": "tpu"}, "device must be 'cpu', 'cuda' or 'cuda:N'"),
])
def test_bad_settings_are_refused_with_what_is_allowed(changes, message):
    with pytest.raises(ValueError, match=message):
        GpuCheckOptions(**{**TINY, **changes}).check()
