"""The tutorial API: the names the chapters import from ``rosetta_lite``, ``open_run``, the CLI's
shared run folder, and the one latent-optimisation loop."""

import ast
from pathlib import Path

import pytest
import torch

import rosetta_lite
from rosetta_lite import open_run
from rosetta_lite.applications.edit import GEOMETRY_MIN_SCALE, add, paste, remove, scale_unit, shift, zoom
from rosetta_lite.applications.optimise import optimise_latents
from rosetta_lite.cli import build_parser
from rosetta_lite.dictionary.runs import load_dictionaries
from rosetta_lite.files import DEFAULT_RUN


@pytest.mark.parametrize("name", rosetta_lite.__all__)
def test_every_tutorial_name_resolves(name):
    assert getattr(rosetta_lite, name) is not None and name in dir(rosetta_lite)


def type_checking_imports(source: str) -> tuple[dict[str, str], dict[str, str]]:
    """(_EXPORTS, {name: module} of the ``if TYPE_CHECKING:`` block) of the package's __init__ source."""
    tree = ast.parse(source)
    exports = next(ast.literal_eval(node.value) for node in tree.body
                   if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "_EXPORTS")
    imported = {}
    for node in tree.body:
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for statement in node.body:
                assert isinstance(statement, ast.ImportFrom), ast.unparse(statement)
                for alias in statement.names:
                    assert alias.asname == alias.name, f"{alias.name}: import it 'as' itself, a re-export"
                    imported[alias.name] = statement.module
    return exports, imported


def test_the_type_checking_block_names_every_export_from_its_module():
    exports, imported = type_checking_imports(Path(rosetta_lite.__file__).read_text())
    assert imported == exports


def test_the_type_checking_check_sees_a_missing_or_misplaced_name():
    source = ('_EXPORTS = {"mine": "rosetta_lite.mining.loop", "zoo": "rosetta_lite"}\n'
              "if TYPE_CHECKING:\n"
              "    from rosetta_lite.mining.settings import mine as mine\n")
    exports, imported = type_checking_imports(source)
    assert imported == {"mine": "rosetta_lite.mining.settings"} and imported != exports


def test_an_unknown_name_lists_the_api():
    with pytest.raises(AttributeError, match="the tutorial API is"):
        rosetta_lite.mine_everything  # noqa: B018


def test_open_run_loads_a_mined_run_with_its_models(lite_run):
    run = open_run(lite_run)
    trained, control = load_dictionaries(lite_run)
    assert run.summary is None  # nothing was mined: the dictionary was there
    assert run.trained.summary() == trained.summary() and run.control.summary() == control.summary()
    assert run.generator.name == trained.generator and [e.name for e in run.encoders] == trained.encoders
    assert set(run.members) == set(trained.encoders) and run.folder == lite_run


def test_open_run_mines_a_folder_without_a_dictionary(tmp_path):
    run = open_run(tmp_path / "new", "lite-untrained", images=16, k=1, batch_size=8, encoders=["lite-resnet-sup"],
                   progress=False)
    assert run.summary["images"] == 16 and run.trained.encoders == ["lite-resnet-sup"]
    assert (tmp_path / "new" / "dictionary.json").exists() and not run.generator.pretrained


def test_a_runs_members_are_rebuilt_with_the_weights_that_were_mined():
    from types import SimpleNamespace

    from rosetta_lite.dictionary.runs import mined_members
    from rosetta_lite.evaluation.concepts import dictionary_members
    from rosetta_lite.zoo.registry import control_members, load, zoo_members

    names = ["lite-resnet-sup", "lite-resnet-dino"]
    settings = {"mined_encoders": names + [f"{n}@untrained" for n in names], "control_seed": 5,
                "extra": {"zoo": "lite-untrained"}}
    trained = SimpleNamespace(encoders=names, settings=settings)
    control = SimpleNamespace(encoders=[f"{n}@untrained" for n in names], settings=settings)
    _, mined = zoo_members("lite-untrained", None, names)  # what mine_zoo mined: seeds by place
    mined += control_members(mined, 5)

    def same(a, b):
        return all(torch.equal(a.model.state_dict()[k], v) for k, v in b.model.state_dict().items())

    for dictionary in (trained, control):
        rebuilt, through_evaluation = mined_members(dictionary), dictionary_members(dictionary)
        assert list(rebuilt) == dictionary.encoders == list(through_evaluation)
        for member in (m for m in mined if m.name in dictionary.encoders):
            assert same(rebuilt[member.name], member) and same(through_evaluation[member.name], member)
    assert not same(load("lite-resnet-dino", pretrained=False), mined[1])  # seed 0: not what was mined


def test_mine_and_eval_share_one_run_folder_and_unused_options_are_refused(capsys):
    parser = build_parser()
    assert parser.parse_args(["mine"]).out == DEFAULT_RUN
    for kind in ("concepts", "trust", "inversion", "editing"):
        assert parser.parse_args(["eval", kind]).folder == DEFAULT_RUN
    assert parser.parse_args(["eval", "inversion", "--restarts", "3"]).restarts == 3
    with pytest.raises(SystemExit):  # editing has no restarts nor beta: refused, not ignored
        parser.parse_args(["eval", "editing", "--restarts", "3"])
    assert "unrecognized arguments: --restarts 3" in capsys.readouterr().err


def test_edits_say_how_edit_treats_them():
    assert shift(0.25, 0).min_scale == zoom(1.5).min_scale == GEOMETRY_MIN_SCALE
    assert not shift(0.25, 0).local and not zoom(1.5).local
    box = (0.0, 0.0, 0.5, 0.5)
    assert all(e.local and e.min_scale == 0 for e in (remove(), add(box), scale_unit(2.0), paste({}, box)))


def test_optimise_latents_keeps_each_rows_best_and_stops_at_a_non_finite_loss():
    target = torch.tensor([[1.0, -2.0], [3.0, 0.5]])
    run = optimise_latents(torch.zeros(2, 2), lambda z: (((z - target) ** 2).sum(1), z * 2), steps=300, lr=0.1,
                           label="test", progress=False)
    assert torch.allclose(run.z, target, atol=1e-2) and torch.allclose(run.kept, 2 * run.z)
    assert len(run.history) == 301 and run.history[-1] < run.history[0] and run.stopped_at is None
    calls = []

    def breaks(z):
        calls.append(1)
        loss = ((z - target) ** 2).sum(1)
        return (loss * float("nan") if len(calls) > 3 else loss), None

    with pytest.warns(RuntimeWarning, match="non-finite test loss at step 3"):
        stopped = optimise_latents(torch.zeros(2, 2), breaks, steps=10, lr=0.1, label="test", progress=False)
    assert stopped.stopped_at == 3 and len(stopped.history) == 3 and torch.isfinite(stopped.loss).all()
    with pytest.raises(ValueError, match="steps must be >= 0 and lr > 0"):
        optimise_latents(torch.zeros(1, 2), breaks, steps=-1, lr=0.1, label="test")
