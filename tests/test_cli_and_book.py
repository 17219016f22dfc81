
from rosetta_lite.cli import main


def test_world_command_writes_a_png(tmp_path):
    out = tmp_path / "world.png"
    assert main(["world", "--out", str(out), "--n", "3"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_world_command_rejects_bad_size_and_unwritable_folder(tmp_path, capsys):
    assert main(["world", "--size", "8", "--out", str(tmp_path / "w.png")]) == 2
    assert "size must be an integer from 16" in capsys.readouterr().err
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert main(["world", "--out", str(blocker / "w.png")]) == 2
    assert "cannot create output folder" in capsys.readouterr().err


def test_bench_world_prints_json(capsys):
    import json

    assert main(["bench", "world", "--images", "300", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["images"] == 300 and report["same_bytes_on_rerun"] and report["images_per_s"] > 0


def test_book_builds_with_warnings_as_errors(html):
    chapter = (html / "notebooks" / "01_world_and_capture.html").read_text()
    assert chapter.count("<img") >= 3 and "Traceback" not in chapter
