"""Mutual information as a similarity of the one mining pass: exact, resumable, mergeable."""

import json
import math

import pytest
import torch

from rosetta_lite import zoo
from rosetta_lite.capture import maps_to_rows, record_encoder, record_generator
from rosetta_lite.cli import main
from rosetta_lite.dictionary.match import best_buddies
from rosetta_lite.dictionary.rosetta import RosettaDictionary, build_dictionary
from rosetta_lite.mining.loop import latents, mine
from rosetta_lite.mining.settings import CHECKPOINT, MiningResult
from rosetta_lite.stats.binary import (
    BinaryMoments,
    JointCounts,
    mutual_information_from_tables,
    top_quantile_thresholds,
)
from rosetta_lite.stats.moments import centre

OPTIONS = dict(batch_size=16, progress=False, similarity="mi", quantile=0.8, calibration_images=24)


def direct_mi(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """MI (nats) of every pair of 0/1 columns from the four joint frequencies, all rows at once, float64."""
    a, b = a.double(), b.double()
    n = a.shape[0]
    table = torch.zeros(a.shape[1], b.shape[1], dtype=torch.float64)
    for x in (0, 1):
        for y in (0, 1):
            fa, fb = (a if x else 1 - a), (b if y else 1 - b)
            joint = (fa.T @ fb) / n
            pa, pb = fa.mean(0)[:, None], fb.mean(0)[None, :]
            table += torch.where(joint > 0, joint * torch.log(joint / (pa * pb)), torch.zeros_like(joint))
    return table


@pytest.fixture(scope="module")
def members():
    gan = zoo.load("lite-gan", pretrained=False, seed=0)
    return gan, [zoo.load("lite-resnet-sup", pretrained=False, seed=1)]


@pytest.fixture(scope="module")
def reference(members, tmp_path_factory):
    gan, encoders = members
    return mine(gan, encoders, images=48, out=tmp_path_factory.mktemp("mi"), **OPTIONS)


def test_streamed_counts_equal_all_rows_at_once_on_random_data():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(600, 5, generator=g)
    b = torch.cat([a[:, :2] + 0.5 * torch.randn(600, 2, generator=g), torch.randn(600, 3, generator=g)], 1) + 4
    t_a, t_b = top_quantile_thresholds(a, 0.7), top_quantile_thresholds(b, 0.7)
    acc = BinaryMoments(5, 5)
    for part_a, part_b in zip(a.split(128), b.split(128)):
        acc.update_rows(part_a > t_a, part_b > t_b, centre(part_a), centre(part_b))
    assert acc.count == 600 and acc.moments_count == 600
    assert torch.allclose(acc.similarity(), direct_mi(a > t_a, b > t_b), atol=1e-12)
    assert torch.allclose(acc.mean_b, b.double().mean(0), atol=1e-9)
    assert torch.allclose(acc.variance_a(), a.double().var(0, unbiased=False), rtol=1e-5)
    assert acc.similarity()[0, 0] > acc.similarity()[0, 3]  # the shared unit carries information
    again = BinaryMoments.from_state_dict(acc.state_dict("x/"), "x/")
    assert torch.equal(again.similarity(), acc.similarity()) and torch.equal(again.m2_a, acc.m2_a)


def test_mined_mi_equals_a_direct_computation_on_all_maps(members, reference):
    gan, encoders = members
    encoder = encoders[0]
    grid = reference.settings.grid[encoder.name]

    def rows_of(first, count):  # the run's batches, so the maps are the same floats
        with torch.no_grad():
            images, g_maps = record_generator(gan, latents(gan, 0, first, count))
            d_maps = record_encoder(encoder, images)
        return maps_to_rows(g_maps, gan.layers, grid), maps_to_rows(d_maps, encoder.layers, grid)

    batches = [rows_of(first, 16) for first in (0, 16, 32)]
    g_rows, d_rows = torch.cat([g for g, _ in batches]), torch.cat([d for _, d in batches])
    # thresholds: per unit, the quantile over the calibration images (latents 0..23) on the same grid
    calibration = [rows_of(0, 16), rows_of(16, 8)]
    t_g = top_quantile_thresholds(torch.cat([g for g, _ in calibration]), 0.8)
    t_d = top_quantile_thresholds(torch.cat([d for _, d in calibration]), 0.8)
    assert torch.equal(reference.thresholds[f"{gan.name}@{grid}"], t_g)
    assert torch.equal(reference.thresholds[f"{encoder.name}@{grid}"], t_d)
    expected = JointCounts(g_rows.shape[1], d_rows.shape[1])
    expected.update(g_rows > t_g, d_rows > t_d)
    acc = reference.pairs[encoder.name]
    assert torch.equal(acc.both, expected.both) and acc.count == expected.count == 48 * grid * grid
    live = ~(acc.constant_a()[:, None] | acc.constant_b()[None, :])
    some = slice(0, 480, 7)  # a sample of generator units keeps the float64 reference quick
    assert torch.allclose(reference.similarity(encoder.name)[some][live[some]],
                          direct_mi(g_rows[:, some] > t_g[some], d_rows > t_d)[live[some]], atol=1e-9)
    assert torch.allclose(acc.mean_b, d_rows.double().mean(0), atol=1e-5)


def test_mi_resume_after_interruption_is_identical(members, reference, tmp_path, monkeypatch):
    import rosetta_lite.mining.loop as mining

    gan, encoders = members
    real, calls = mining.record_generator, []

    def killed_late(*args):
        calls.append(1)
        if len(calls) == 4:  # two calibration batches, batch 1, then dies in batch 2
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(mining, "record_generator", killed_late)
    with pytest.raises(KeyboardInterrupt):
        mine(gan, encoders, images=48, out=tmp_path, checkpoint_every=1, **OPTIONS)
    saved = MiningResult.load(tmp_path / CHECKPOINT)
    assert saved.counted == [[0, 16]] and saved.thresholds.keys() == reference.thresholds.keys()
    monkeypatch.setattr(mining, "record_generator", real)
    resumed = mine(gan, encoders, images=48, out=tmp_path, checkpoint_every=1, **OPTIONS)
    for name in reference.pairs:
        assert torch.equal(resumed.similarity(name), reference.similarity(name))
    assert torch.equal(resumed.self_pair.both, reference.self_pair.both)
    with pytest.raises(ValueError, match=r"holds another run \(quantile: "):
        mine(gan, encoders, images=48, out=tmp_path, **(OPTIONS | {"quantile": 0.9}))


def test_mi_shards_merge_exactly_and_mismatches_are_refused(members, reference):
    gan, encoders = members
    first = mine(gan, encoders, images=32, **OPTIONS)
    second = mine(gan, encoders, images=16, start=32, **OPTIONS)
    # thresholds come from the calibration latents, not from the shard's range: shards agree
    for key, value in first.thresholds.items():
        assert torch.equal(value, second.thresholds[key])
    merged = first.merge(second)
    for name in reference.pairs:
        assert torch.equal(merged.pairs[name].both, reference.pairs[name].both)
        assert torch.equal(merged.similarity(name), reference.similarity(name))
        assert torch.allclose(merged.pairs[name].m2_b, reference.pairs[name].m2_b, rtol=1e-9)
    other = mine(gan, encoders, images=16, start=48, **OPTIONS)
    other.thresholds[next(iter(other.thresholds))] += 1.0
    with pytest.raises(ValueError, match="thresholds differ"):
        merged.merge(other)
    pearson = mine(gan, encoders, images=16, start=64, batch_size=16, progress=False)
    with pytest.raises(ValueError, match="cannot merge runs mined with different settings"):
        merged.merge(pearson)


def test_dictionary_of_an_mi_run_ranks_by_mi(reference, tmp_path):
    d = build_dictionary(reference, k=2)
    encoder = d.encoders[0]
    mi = reference.similarity(encoder)
    assert torch.allclose(d.similarity(encoder).double(), mi, atol=1e-6)
    acc = reference.pairs[encoder]
    expected = best_buddies(mi, 2, dead_a=acc.dead_a(), dead_b=acc.dead_b())
    assert [(a, b) for a, b, _ in d.buddies[encoder]] == expected
    assert d.settings["similarity"] == "mi" and d.settings["quantile"] == 0.8
    d.save(tmp_path)
    assert RosettaDictionary.load(tmp_path).settings["similarity"] == "mi"


def test_bad_similarity_and_mi_options_are_refused(members, capsys):
    gan, encoders = members
    with pytest.raises(ValueError, match=r"similarity must be one of \['pearson', 'mi'\], got 'cosine'"):
        mine(gan, encoders, images=16, batch_size=16, progress=False, similarity="cosine")
    with pytest.raises(ValueError, match=r"quantile must be in \(0, 1\)"):
        mine(gan, encoders, images=16, **(OPTIONS | {"quantile": 1.5}))
    with pytest.raises(ValueError, match="calibration_images must be at least 1"):
        mine(gan, encoders, images=16, **(OPTIONS | {"calibration_images": 0}))
    with pytest.raises(SystemExit):
        main(["mine", "--similarity", "cosine"])
    assert "invalid choice: 'cosine' (choose from pearson, mi)" in capsys.readouterr().err.replace("'pearson'", "pearson").replace("'mi'", "mi")


def test_cli_mines_mi_and_merges_shards(tmp_path, capsys):
    common = ["--zoo", "lite-untrained", "--encoders", "lite-resnet-sup", "--batch-size", "8", "--no-control",
              "--similarity", "mi", "--calibration-images", "8", "--json"]
    assert main(["mine", *common, "--images", "16", "--out", str(tmp_path / "a")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["similarity"] == "mi" and summary["trained"]["units"]["lite-resnet-sup"] == 240
    assert main(["mine", *common, "--images", "8", "--start", "16", "--out", str(tmp_path / "b")]) == 0
    capsys.readouterr()
    assert main(["merge", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "ab")]) == 0
    assert "mined 24 images" in capsys.readouterr().out
    assert RosettaDictionary.load(tmp_path / "ab").settings["similarity"] == "mi"
    assert main(["merge", str(tmp_path / "a"), str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")]) == 2
    assert "holds no finished mining run" in capsys.readouterr().err


def test_mi_from_tables_is_in_bits_with_base_two():
    assert math.isclose(mutual_information_from_tables(torch.tensor([[50.0, 0.0], [0.0, 50.0]]), base=2).item(), 1.0)
