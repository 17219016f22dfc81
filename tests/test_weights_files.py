"""Local weights files for pretrained members: `--weights NAME=PATH`, a parameter file's `weights:`,
the environment variable they set, and the messages for a bad entry or an unsafe checkpoint."""

import argparse
import os
from pathlib import Path

import pytest
import torch

from rosetta_lite import zoo
from rosetta_lite.book.batch import load_params, run_chapters
from rosetta_lite.cli import main
from rosetta_lite.zoo.registry import WEIGHTS_VARIABLE, parse_weights, use_weights, weights_files

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture
def clean_variable(monkeypatch):
    monkeypatch.setenv(WEIGHTS_VARIABLE, "")  # restored after the test, whatever the test sets


@pytest.fixture(scope="module")
def resnet_file(tmp_path_factory) -> tuple[Path, dict]:
    state = zoo.load("resnet50", pretrained=False, seed=7).model.state_dict()
    path = tmp_path_factory.mktemp("weights") / "r50.pth"
    torch.save(state, path)
    return path, state


def test_a_named_file_replaces_the_hub_for_pretrained_loads_only(clean_variable, resnet_file, tmp_path, monkeypatch):
    path, state = resnet_file
    monkeypatch.chdir(path.parent)
    use_weights({"resnet50": path.name})  # relative: kept absolute for kernels in other folders
    assert weights_files() == {"resnet50": str(path)}
    member = zoo.load("resnet50")  # offline: no hub, the file instead
    assert member.pretrained and torch.equal(member.model.conv1.weight, state["conv1.weight"])
    untrained = zoo.load("resnet50", pretrained=False, seed=7)
    assert not untrained.pretrained  # controls and untrained zoos never read the file
    with pytest.raises(zoo.ZooError, match="HF_HUB_OFFLINE is set"):
        zoo.load("dino-vitb16")  # a member the variable does not name still needs its hub


@pytest.mark.parametrize("entry, message", [
    ("resnet50", "weights are given as NAME=PATH"),
    ("=r50.pth", "weights are given as NAME=PATH"),
    ("resnet5=r50.pth", "unknown zoo member 'resnet5'"),
])
def test_a_bad_weights_entry_is_refused_with_the_form(clean_variable, tmp_path, capsys, entry, message):
    with pytest.raises(zoo.ZooError, match=message):
        parse_weights([entry])
    assert main(["mine", "--zoo", "full", "--out", str(tmp_path / "run"), "--weights", entry]) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "run").exists()


def test_chapters_kernels_get_the_weights_of_the_file_and_the_command_line(clean_variable, resnet_file, tmp_path,
                                                                          monkeypatch):
    import papermill

    path, _ = resnet_file
    params = tmp_path / "p.yaml"
    params.write_text(f"common:\n  zoo: full\nweights:\n  dino-resnet50: {path}\n")
    assert load_params(params)["weights"] == {"dino-resnet50": str(path)}
    seen = []
    monkeypatch.setattr(papermill, "execute_notebook", lambda *a, **k: seen.append(os.environ[WEIGHTS_VARIABLE]))
    assert main(["chapters", "--params", str(params), "--out", str(tmp_path / "out"), "--only", "02",
                 "--weights", f"resnet50={path}"]) == 0
    assert len(seen) == 1 and parse_weights(seen[0].split(os.pathsep)) == {"resnet50": str(path),
                                                                           "dino-resnet50": str(path)}
    params.write_text("weights:\n  resnet-50: r50.pth\n")
    with pytest.raises(ValueError, match=r"p.yaml', weights: unknown zoo member 'resnet-50'"):
        run_chapters(params, tmp_path / "out2", only=["02"], log=lambda _: None)
    params.write_text("weights: [r50.pth]\n")
    with pytest.raises(ValueError, match="'weights' must map zoo members to weights files"):
        load_params(params)


def test_a_dino_checkpoint_with_its_arguments_loads_and_an_unsafe_one_says_how_to_extract(resnet_file, tmp_path):
    from fractions import Fraction

    _, state = resnet_file
    dino = tmp_path / "dino_full.pth"
    torch.save({"teacher": {"module.backbone." + k: v for k, v in state.items()}, "student": {}, "epoch": 100,
                "args": argparse.Namespace(arch="resnet50", out_dim=60000)}, dino)
    member = zoo.load("dino-resnet50", weights=str(dino))
    assert torch.equal(member.model.layer4[2].conv3.weight, state["layer4.2.conv3.weight"])
    unsafe = tmp_path / "unsafe.pth"
    torch.save({"teacher": state, "args": Fraction(1, 3)}, unsafe)
    with pytest.raises(zoo.ZooError, match=r"not unpickled .* torch.save\(state.get\('teacher', state\)"):
        zoo.load("dino-resnet50", weights=str(unsafe))
