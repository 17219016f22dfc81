import json

import pytest
import torch

from rosetta_lite import zoo
from rosetta_lite.cli import main
from rosetta_lite.dictionary import DictionaryError, RosettaDictionary, build_dictionary
from rosetta_lite.mine import ACCUMULATORS, CHECKPOINT, MiningResult, latents, maps_to_rows, mine, \
    record_encoder, record_generator


@pytest.fixture(scope="module")
def members():
    gan = zoo.load("lite-gan", pretrained=False, seed=0)
    encoders = [zoo.load("lite-resnet-sup", pretrained=False, seed=1), zoo.load("lite-vit-dino", pretrained=False, seed=2)]
    return gan, encoders


@pytest.fixture(scope="module")
def reference_run(members, tmp_path_factory):
    gan, encoders = members
    return mine(gan, encoders, images=48, batch_size=16, progress=False, out=tmp_path_factory.mktemp("ref"))


def test_latent_ranges_do_not_depend_on_how_they_are_split(members):
    gan = members[0]
    whole = latents(gan, 3, 1000, 100)
    assert torch.equal(whole[40:], latents(gan, 3, 1040, 60))


def test_correlations_equal_float64_pearson_of_all_maps(members, reference_run):
    gan, encoders = members
    z = latents(gan, 0, 0, 48)
    with torch.no_grad():
        images, g_maps = record_generator(gan, z)
        d_maps = record_encoder(encoders[1], images)
    grid = reference_run.settings.grid[encoders[1].name]
    a = maps_to_rows(g_maps, gan.layers, grid).double()
    b = maps_to_rows(d_maps, encoders[1].layers, grid).double()
    a, b = a - a.mean(0), b - b.mean(0)
    expected = (a.T @ b) / (a.norm(dim=0)[:, None] * b.norm(dim=0)[None, :])
    got = reference_run.correlation(encoders[1].name)
    live = torch.isfinite(expected)
    assert (got[live] - expected[live]).abs().max() < 1e-5
    assert not torch.isnan(got).any()


def test_resume_after_interruption_gives_the_identical_result(members, reference_run, tmp_path, monkeypatch):
    import rosetta_lite.mine as mining

    gan, encoders = members
    real, calls = mining.record_generator, []

    def killed_in_batch_three(*args):
        calls.append(1)
        if len(calls) == 4:  # one probe call while planning, then batches 1, 2, 3
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(mining, "record_generator", killed_in_batch_three)
    with pytest.raises(KeyboardInterrupt):
        mine(gan, encoders, images=48, batch_size=16, progress=False, out=tmp_path, checkpoint_every=1)
    assert MiningResult.load(tmp_path / CHECKPOINT).batches_done == 2
    monkeypatch.setattr(mining, "record_generator", real)
    resumed = mine(gan, encoders, images=48, batch_size=16, progress=False, out=tmp_path, checkpoint_every=1)
    for name in reference_run.pairs:
        assert torch.equal(resumed.correlation(name), reference_run.correlation(name))
    assert not (tmp_path / CHECKPOINT).exists()
    with pytest.raises(ValueError, match="other settings"):
        mine(gan, encoders, images=64, batch_size=16, progress=False, out=tmp_path)


def test_shards_merge_into_the_single_run(members, reference_run):
    gan, encoders = members
    first = mine(gan, encoders, images=32, batch_size=16, progress=False)
    second = mine(gan, encoders, images=16, batch_size=16, start=32, progress=False)
    merged = first.merge(second)
    for name in reference_run.pairs:
        assert (merged.correlation(name) - reference_run.correlation(name)).abs().max() < 1e-9
    with pytest.raises(ValueError, match="overlap"):
        merged.merge(mine(gan, encoders, images=16, batch_size=16, start=16, progress=False))


def test_dictionary_roundtrip_and_refusals(reference_run, tmp_path):
    d = build_dictionary(reference_run, k=2)
    assert d.rosetta_count() == sum(len(c.generator_units) for c in d.clusters)
    scores = [c.score for c in d.clusters]
    assert scores == sorted(scores, reverse=True)
    for cluster in d.clusters:
        assert set(cluster.members) == set(d.encoders)
    d.save(tmp_path)
    again = RosettaDictionary.load(tmp_path)
    assert again.summary() == d.summary() and torch.equal(again.correlation(d.encoders[0]), d.correlation(d.encoders[0]))
    data = json.loads((tmp_path / "dictionary.json").read_text())
    data["schema_version"] = 99
    (tmp_path / "dictionary.json").write_text(json.dumps(data))
    with pytest.raises(DictionaryError, match="schema version 99"):
        RosettaDictionary.load(tmp_path)
    (tmp_path / "dictionary.json").write_text("{not json")
    with pytest.raises(DictionaryError, match="corrupt"):
        RosettaDictionary.load(tmp_path)
    with pytest.raises(DictionaryError, match="no dictionary"):
        RosettaDictionary.load(tmp_path / "nowhere")


def test_bad_mining_inputs(members, tmp_path):
    gan, encoders = members
    with pytest.raises(ValueError, match=r"images \(8\) must be at least one batch \(16\)"):
        mine(gan, encoders, images=8, batch_size=16, progress=False)
    with pytest.raises(ValueError, match="not a generator"):
        mine(encoders[0], encoders[1:], images=16, batch_size=16, progress=False)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(PermissionError, match="cannot create output folder"):
        mine(gan, encoders, images=16, batch_size=16, progress=False, out=blocker / "sub")


def test_cli_mine_and_merge(tmp_path, capsys):
    common = ["--zoo", "lite-untrained", "--encoders", "lite-resnet-sup", "--batch-size", "8", "--json"]
    assert main(["mine", *common, "--images", "16", "--out", str(tmp_path / "a")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["trained"]["units"]["lite-resnet-sup"] == 240 and "control" in summary
    assert main(["mine", *common, "--images", "8", "--start", "16", "--out", str(tmp_path / "b")]) == 0
    capsys.readouterr()
    assert main(["merge", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "ab")]) == 0
    assert "mined 24 images" in capsys.readouterr().out
    assert main(["mine", "--zoo", "lite-untrained", "--encoders", "lite-nothing", "--out", str(tmp_path / "c")]) == 2
    assert "unknown zoo member 'lite-nothing'" in capsys.readouterr().err
