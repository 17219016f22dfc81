import pytest

from rosetta_lite.cli import main
from rosetta_lite.evaluation.metrics import MAX_EVAL_IMAGES


def test_world_command_writes_a_png(tmp_path):
    out = tmp_path / "world.png"
    assert main(["world", "--out", str(out), "--n", "3"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_world_command_rejects_bad_size_and_unwritable_folder(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["world", "--size", "8", "--out", str(tmp_path / "w.png")])
    assert stop.value.code == 2 and "--size: must be an integer from 16 to 1024, got 8" in capsys.readouterr().err
    assert main(["world", "--out", str(tmp_path)]) == 2
    assert "is a folder; give the path of a file" in capsys.readouterr().err
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert main(["world", "--out", str(blocker / "w.png")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


BAD_ARGUMENTS = [
    (["mine", "--batch-size", "0"], "--batch-size: must be an integer >= 1, got 0"),
    (["mine", "--images", "-5"], "--images: must be an integer >= 1, got -5"),
    (["mine", "--k", "0"], "--k: must be an integer >= 1, got 0"),
    (["mine", "--grid", "-3"], "--grid: must be an integer from 1 to 1024, got -3"),
    (["mine", "--grid", "100000"], "--grid: must be an integer from 1 to 1024, got 100000"),
    (["mine", "--quantile", "1.5"], "--quantile: must be a number in (0, 1), got 1.5"),
    (["mine", "--start", "-1"], "--start: must be an integer from 0 to 2147483647, got -1"),
    (["bench", "mining", "--batch-size", "0"], "--batch-size: must be an integer >= 1, got 0"),
    (["train", "lite-gan", "--steps", "0"], "--steps: must be an integer >= 1, got 0"),
    (["eval", "trust", "--images", "0"], "--images: must be an integer >= 2, got 0"),
    (["eval", "editing", "--images", "0"], f"--images: must be an integer from 1 to {MAX_EVAL_IMAGES}, got 0"),
    (["eval", "inversion", "--restarts", "0"], "--restarts: must be an integer >= 1, got 0"),
    (["eval", "concepts", "--min-iou", "2"], "--min-iou: must be a number in [0, 1], got 2"),
    (["layers", "resnet18", "--input-size", "0"], "--input-size: must be an integer from 8 to 4096, got 0"),
    (["world", "--n", "two"], "--n: must be an integer >= 1, got 'two'"),
    (["world", "--dpi", "100000"], "--dpi: must be an integer from 20 to 600, got 100000"),
]


@pytest.mark.parametrize("argv, message", BAD_ARGUMENTS)
def test_bad_arguments_are_refused_before_any_work(argv, message, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2 and message in capsys.readouterr().err


def test_k_outside_the_models_units_is_refused_before_mining(tmp_path):
    from rosetta_lite.dictionary.runs import check_k, mine_zoo

    with pytest.raises(ValueError, match=r"k must be an integer from 1 to 64 \(the smallest model's units\), got 65"):
        check_k(65, {"g": [32, 32], "d": [100]})
    with pytest.warns(UserWarning, match="k=51"):
        check_k(51, {"g": [64], "d": [100]})
    with pytest.raises(ValueError, match="k must be an integer from 1 to"):
        mine_zoo("lite-untrained", images=8, out=tmp_path, k=100_000, batch_size=8, progress=False)
    assert not list(tmp_path.iterdir())  # refused before anything was written


def test_train_steps_zero_is_refused_not_the_default():
    from rosetta_lite.train.recipes import train_member

    with pytest.raises(ValueError, match="steps must be a whole number >= 1"):
        train_member("lite-resnet-sup", "unused", steps=0)


def test_bench_world_prints_json(capsys):
    import json

    assert main(["bench", "world", "--images", "300", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["images"] == 300 and report["same_bytes_on_rerun"] and report["images_per_s"] > 0


def test_book_builds_with_warnings_as_errors(html):
    chapter = (html / "notebooks" / "01_world_and_capture.html").read_text()
    assert chapter.count("<img") >= 3 and "Traceback" not in chapter


def test_ctrl_c_prints_one_line_that_says_a_rerun_resumes(tmp_path, capsys, monkeypatch):
    import rosetta_lite.cli as cli

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "mine_zoo", interrupted)
    assert main(["mine", "--images", "32", "--out", str(tmp_path)]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"interrupted: what was checkpointed in {tmp_path} is kept; run the same command again to resume"]


def test_the_command_line_prints_a_notice_as_one_line(tmp_path, monkeypatch):
    import warnings

    monkeypatch.setattr(warnings, "formatwarning", warnings.formatwarning)  # restored after the test
    assert main(["world", "--out", str(tmp_path / "w.png"), "--n", "2"]) == 0
    assert warnings.formatwarning(UserWarning("taking over"), UserWarning, "files.py", 7) == "warning: taking over\n"


def test_a_huge_seed_and_a_symlink_loop_are_named(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["world", "--seed", str(2**64)])
    assert "must be an integer from 0 to 2147483647" in capsys.readouterr().err
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    assert main(["world", "--out", str(loop / "w.png")]) == 2
    assert "symbolic link to nowhere" in capsys.readouterr().err


def test_a_file_given_for_an_output_folder_is_named(tmp_path, capsys):
    import torch

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    threads = str(torch.get_num_threads())  # train sets the process's threads
    assert main(["train", "lite-resnet-sup", "--steps", "1", "--threads", threads, "--out", str(blocker)]) == 2
    assert f"'{blocker}' is a file, not a folder; give a folder's path" in capsys.readouterr().err
    assert main(["notebooks", "student", "--out", str(blocker)]) == 2
    assert f"--out {blocker} is a file; give a folder for the student notebooks" in capsys.readouterr().err
    assert blocker.read_text() == "not a folder"


def test_out_of_memory_is_one_line_that_says_what_to_lower(tmp_path, capsys, monkeypatch):
    import rosetta_lite.cli as cli

    def too_big(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(cli, "mine_zoo", too_big)
    assert main(["mine", "--images", "32", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: out of memory; run it with fewer images or a smaller --batch-size"]


def test_figures_leave_plotly_js_to_the_page_only_in_the_book(monkeypatch):
    import plotly.graph_objects as go
    import plotly.io as pio

    from rosetta_lite.viz import PLOTLY_FROM_PAGE, setup_notebook

    figure = go.Figure(go.Heatmap(z=[[0, 1], [1, 0]]))
    monkeypatch.delenv(PLOTLY_FROM_PAGE, raising=False)
    setup_notebook()
    assert pio.renderers.default == "notebook_offline"  # embeds plotly.js once per kernel: no network
    monkeypatch.setenv(PLOTLY_FROM_PAGE, "1")
    setup_notebook()
    on_a_page = pio.renderers[pio.renderers.default].to_mimebundle(figure.to_dict())["text/html"]
    assert "plotly.js v" not in on_a_page and "Plotly.newPlot" in on_a_page and len(on_a_page) < 20_000
    assert "<script src=" not in on_a_page  # neither plotly.js nor MathJax from a CDN
