"""Inversion and editing on the models' device: no tensor made on a fixed device; CUDA when a GPU is there."""

import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
from torch.overrides import TorchFunctionMode

from rosetta_lite import zoo
from rosetta_lite.applications.edit import add, edit, paste, record_maps, remove, scale_unit, shift, zoom
from rosetta_lite.applications.invert import invert
from rosetta_lite.dictionary.runs import load_dictionaries
from rosetta_lite.evaluation.editing import evaluate_editing
from rosetta_lite.evaluation.inversion import evaluate_inversion
from rosetta_lite.world import ShapesWorld

torch.set_num_threads(1)

#: torch functions that make a tensor from nothing: without ``device=`` it lands on the default device
FACTORIES = {torch.zeros, torch.ones, torch.full, torch.empty, torch.tensor, torch.as_tensor, torch.arange,
             torch.linspace, torch.rand, torch.randn, torch.randint, torch.eye}
#: the modules that must make every tensor where the models are
CHECKED = ("rosetta_lite.applications", "rosetta_lite.evaluation.inversion", "rosetta_lite.evaluation.editing")


class FixedDeviceTensors(TorchFunctionMode):
    """Records each tensor that a checked module makes without naming a device (so: on a fixed one)."""

    def __init__(self):
        super().__init__()
        self.found = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        copies_a_tensor = func is torch.as_tensor and isinstance(args[0], torch.Tensor)
        if func in FACTORIES and kwargs.get("device") is None and not copies_a_tensor:
            frame = sys._getframe(1)
            while frame is not None and frame.f_globals.get("__name__", "").startswith("torch"):
                frame = frame.f_back
            module = frame.f_globals.get("__name__", "") if frame is not None else ""
            if module.startswith(CHECKED):
                self.found.append(f"{module}:{frame.f_lineno} torch.{func.__name__}")
        return func(*args, **kwargs)


@pytest.fixture(scope="module")
def dictionary(lite_run):
    return load_dictionaries(lite_run)[0]


def test_the_check_sees_a_tensor_made_on_the_default_device():
    source = "import torch\ndef make(maps):\n    return torch.ones(2) + torch.zeros(2, device=maps.device)\n"
    scope = {"__name__": "rosetta_lite.applications.example"}
    exec(compile(source, "example.py", "exec"), scope)
    with FixedDeviceTensors() as check:
        scope["make"](torch.zeros(1))
    assert check.found == ["rosetta_lite.applications.example:3 torch.ones"]  # zeros named its device


def test_inversion_and_editing_make_every_tensor_where_the_models_are(dictionary):
    renderer = zoo.load(dictionary.generator)
    clip, judge = zoo.load("lite-clip"), zoo.load("lite-resnet-sup")
    targets = ShapesWorld().batch(3, seed=2).images
    z = renderer.sample_latents(3, seed=1)
    units = dictionary.clusters[0].generator_units
    source = record_maps(renderer, renderer.sample_latents(3, seed=2))
    with FixedDeviceTensors() as check:
        inverted = invert(renderer, targets, dictionary, encoders=[clip], perceptual=judge, steps=1, restarts=2,
                          batch_size=2, progress=False)
        edits = [edit(renderer, z, fn, dictionary, units=chosen, steps=1, batch_size=2, progress=False)
                 for fn, chosen in ((shift(0.1, 0.1), "all"), (zoom(0.75, fill="rest"), "all"), (remove(), units),
                                    (remove(everywhere=True), units), (add((0, 0, 0.5, 0.5)), units),
                                    (scale_unit(2.0, (0, 0, 1, 0.5)), units), (paste(source, (0, 0, 0.5, 0.5)), "all"))]
        evaluate_inversion(dictionary, images=2, encoders=["lite-clip"], steps=1, restarts=1, progress=False)
        evaluate_editing(dictionary, images=1, steps=1, baselines=False, progress=False)
    assert check.found == [], "tensors made on a fixed device:\n" + "\n".join(check.found)
    where = renderer.device
    assert inverted.z.device == where and inverted.images.device == where
    assert all(r.after.device == where and r.z.device == where for r in edits)


def test_a_named_device_moves_the_models_and_the_results_follow(dictionary):
    renderer = zoo.load(dictionary.generator)
    result = invert(renderer, torch.rand(1, 3, 32, 32), steps=1, restarts=1, device="cpu", precision="bf16",
                    progress=False)
    assert result.images.dtype == torch.float32 and result.z.device == renderer.device
    edited = edit(renderer, renderer.sample_latents(1), shift(0.25, 0), dictionary, units="all", steps=1,
                  device="cpu", precision="bf16", progress=False)
    assert edited.after.dtype == torch.float32 and torch.isfinite(edited.after).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_inversion_and_editing_run_on_cuda(dictionary, precision):
    renderer, clip = zoo.load(dictionary.generator), zoo.load("lite-clip")
    targets = ShapesWorld().batch(2, seed=2).images  # on the CPU: they follow the models
    result = invert(renderer, targets, dictionary, encoders=[clip], perceptual=zoo.load("lite-resnet-sup"),
                    steps=2, restarts=2, device="cuda", precision=precision, progress=False)
    assert result.images.is_cuda and result.z.is_cuda and clip.device.type == "cuda"
    units = dictionary.clusters[0].generator_units
    edited = edit(renderer, renderer.sample_latents(2), remove(), dictionary, units=units, steps=2, device="cuda",
                  precision=precision, progress=False)
    assert edited.after.is_cuda and torch.isfinite(edited.after).all()
    report = evaluate_inversion(dictionary, images=2, encoders=["lite-clip"], steps=1, restarts=1, device="cuda",
                                precision=precision, progress=False)
    assert report["device"].startswith("cuda") and report["rows"][0]["psnr"]["n"] == 2
    report = evaluate_editing(dictionary, images=1, steps=1, baselines=False, device="cuda", precision=precision,
                              progress=False)
    assert report["precision"] == precision


def test_cli_refuses_an_unknown_precision(capsys):
    from rosetta_lite.cli import main

    for kind in ("inversion", "editing"):
        with pytest.raises(SystemExit):
            main(["eval", kind, "--precision", "fp8"])
        assert "--precision: invalid choice: 'fp8'" in capsys.readouterr().err
