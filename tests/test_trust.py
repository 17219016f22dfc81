"""Trust scores (input consistency, generative interpretability) and the mutual-information similarity."""

import math
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
from torch import nn

from rosetta_lite import zoo
from rosetta_lite.capture import maps_to_rows, record_encoder, record_generator
from rosetta_lite.dictionary.match import best_buddies
from rosetta_lite.dictionary.rosetta import Cluster, RosettaDictionary, build_dictionary
from rosetta_lite.evaluation.mutual_info import buddy_overlap
from rosetta_lite.evaluation.trust import (
    filter_dictionary,
    generative_interpretability,
    input_consistency,
    trust_summary,
)
from rosetta_lite.mining.loop import latents, mine, plan
from rosetta_lite.stats.binary import JointCounts, entropy_bits, mutual_information_from_tables, top_quantile_thresholds
from rosetta_lite.zoo.member import Member


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Small tensors: one thread is faster than several on a shared machine; restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _direct_mi(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """MI in nats of every column pair, counted cell by cell."""
    n = a.shape[0]
    out = torch.zeros(a.shape[1], b.shape[1], dtype=torch.float64)
    for i in range(a.shape[1]):
        for j in range(b.shape[1]):
            total = 0.0
            for x in (0, 1):
                for y in (0, 1):
                    pxy = float(((a[:, i] == x) & (b[:, j] == y)).sum()) / n
                    px, py = float((a[:, i] == x).sum()) / n, float((b[:, j] == y).sum()) / n
                    if pxy > 0:
                        total += pxy * math.log(pxy / (px * py))
            out[i, j] = total
    return out


def test_joint_counts_streamed_equal_direct_mi():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(600, 5, generator=g) > 0.7
    b = torch.cat([a[:, :2], torch.rand(600, 3, generator=g) > 0.5], 1)  # two columns copy a
    b[:50, 0] = ~b[:50, 0]  # partly noisy copy
    acc = JointCounts(5, 5)
    for start in range(0, 600, 128):  # streamed in uneven batches
        acc.update(a[start:start + 128], b[start:start + 128])
    assert acc.count == 600
    assert torch.allclose(acc.mutual_information(), _direct_mi(a, b), atol=1e-12)
    assert torch.allclose(acc.mutual_information(base=2), _direct_mi(a, b) / math.log(2), atol=1e-12)
    assert acc.tables().sum((-2, -1)).eq(600).all()


def test_identical_units_give_entropy_and_independent_give_zero():
    g = torch.Generator().manual_seed(1)
    n = 20000
    a = torch.rand(n, 1, generator=g) > 0.9
    independent = torch.rand(n, 1, generator=g) > 0.9
    acc = JointCounts(1, 2)
    acc.update(a, torch.cat([a, independent], 1))
    mi = acc.mutual_information(base=2)[0]
    assert mi[0].item() == pytest.approx(entropy_bits(a.double().mean().item()), abs=1e-9)
    assert mi[1].item() < 1e-3
    assert mutual_information_from_tables(torch.tensor([[50.0, 0.0], [0.0, 50.0]]), base=2).item() == \
        pytest.approx(1.0)
    constant = JointCounts(1, 1)
    constant.update(torch.zeros(10, 1, dtype=torch.bool), torch.ones(10, 1, dtype=torch.bool))
    assert constant.mutual_information().item() == 0.0 and constant.constant_a().all()


def test_thresholds_keep_the_top_fraction():
    rows = torch.randn(1000, 3)
    t = top_quantile_thresholds(rows, 0.9)
    assert ((rows > t).float().mean(0) - 0.1).abs().max() < 0.01
    with pytest.raises(ValueError, match="quantile"):
        top_quantile_thresholds(rows, 1.0)


@pytest.fixture(scope="module")
def tiny():
    gan = zoo.load("lite-gan", pretrained=False, seed=0)
    encoder = zoo.load("lite-resnet-sup", pretrained=False, seed=1)
    return gan, encoder


def test_mined_mutual_information_matches_hand_computation(tiny):
    gan, encoder = tiny
    counts = mine(gan, [encoder], images=16, batch_size=16, seed=3, similarity="mi", quantile=0.9,
                  calibration_images=16, progress=False).pairs
    layers, _, _, grids = plan(gan, [encoder])
    with torch.no_grad():
        generated, g_maps = record_generator(gan, latents(gan, 3, 0, 16))
        g_rows = maps_to_rows(g_maps, layers[gan.name], grids[encoder.name])
        d_rows = maps_to_rows(record_encoder(encoder, generated), layers[encoder.name], grids[encoder.name])
    expected = JointCounts(g_rows.shape[1], d_rows.shape[1])
    expected.update(g_rows > top_quantile_thresholds(g_rows, 0.9), d_rows > top_quantile_thresholds(d_rows, 0.9))
    acc = counts[encoder.name]
    assert torch.equal(acc.both, expected.both) and acc.count == expected.count
    mi = acc.mutual_information()
    assert mi.shape == (sum(_units(gan, layers)), d_rows.shape[1])
    assert best_buddies(mi, k=3)  # MI tables feed best buddies directly


def _units(gan, layers):
    with torch.no_grad():
        _, maps = record_generator(gan, gan.sample_latents(1))
    return [maps[layer].shape[1] for layer in layers[gan.name]]


def test_input_consistency_on_a_tiny_run(tiny):
    gan, encoder = tiny
    result = mine(gan, [encoder], images=32, batch_size=8, seed=0, progress=False)
    d = build_dictionary(result, k=3)
    assert d.rosetta_count() > 0
    # halves identical to the whole run: every pair is consistent
    same = input_consistency(gan, [encoder], d, halves=(result, result))
    assert all(same["neurons"].values()) and set(same["neurons"]) == {u for c in d.clusters for u in c.generator_units}
    assert filter_dictionary(d, consistency=same).rosetta_count() == d.rosetta_count()
    real = input_consistency(gan, [encoder], d, images=32, batch_size=8)
    assert set(real["neurons"]) == set(same["neurons"]) and real["images"] == 32
    for g, dd, ok in real["pairs"][encoder.name]:
        assert isinstance(ok, bool)
    kept = filter_dictionary(d, consistency=real)
    assert kept.rosetta_count() <= d.rosetta_count()
    assert kept.rosetta_count() == sum(real["neurons"].values())  # single encoder: neuron ok iff a pair ok
    summary = trust_summary(d, real)
    assert summary["consistent"] == sum(real["neurons"].values())
    units = {u for c in d.clusters for u in c.generator_units}
    good = {u: {"ratio": 2.0} for u in units}
    assert filter_dictionary(d, interpretability=good, min_ratio=1.5).rosetta_count() == d.rosetta_count()
    assert filter_dictionary(d, interpretability=good, min_ratio=3.0).rosetta_count() == 0
    # the dictionary's own Pearson tables, taken as a similarity, give back its best buddies
    overlap = buddy_overlap(d, {encoder.name: d.similarity(encoder.name)})[encoder.name]
    assert overlap["jaccard"] == 1.0 and overlap["rosetta_kept"] == overlap["rosetta_pairs"]
    with pytest.raises(ValueError, match="were not given"):
        input_consistency(gan, [], d, images=32)


class _Toy(nn.Module):
    """Unit 0 paints the left half of the image; unit 1 has a map but no effect on the image."""

    def __init__(self) -> None:
        super().__init__()
        self.feat = nn.Identity()

    def forward(self, z):
        left = torch.zeros(1, 1, 8, 8)
        left[..., :4] = 1.0
        ramp = torch.linspace(0, 1, 8).view(1, 1, 1, 8).expand(1, 1, 8, 8)
        unit0 = nn.functional.softplus(z[:, :1, None, None]) * left
        unit1 = z[:, 1:2, None, None].exp() * ramp
        feat = self.feat(torch.cat([unit0, unit1], 1))
        image = torch.sigmoid(nn.functional.interpolate(feat[:, :1], size=16) - 1.0)
        return image.expand(-1, 3, -1, -1)


def test_generative_interpretability_on_a_hand_made_generator():
    gen = Member("toy", "generator", "lite", _Toy(), ["feat"], z_dim=4)
    with torch.no_grad():
        _, maps = record_generator(gen, latents(gen, 0, 0, 256))
    means = maps["feat"].mean((0, 2, 3))
    d = RosettaDictionary({"generator": "toy", "encoders": []}, {"toy": {"layers": ["feat"], "units": [2]}},
                          [Cluster(0, [0, 1], {}, 1.0)], {}, {"toy": []},
                          {"mean/toy": means, "std/toy": torch.ones(2)})
    scores = generative_interpretability(gen, d, n_images=64, seed=0, batch_size=32)
    assert scores[0]["ratio"] > 2.0 and scores[0]["outside"] < scores[0]["inside"]
    assert scores[1]["ratio"] == pytest.approx(1.0) and scores[1]["inside"] == 0.0
    assert (scores[0]["layer"], scores[0]["channel"]) == ("feat", 0)
    # the hook is gone afterwards
    assert not gen.model.feat._forward_hooks


def test_cli_parses_eval_trust():
    from rosetta_lite.cli import build_parser

    args = build_parser().parse_args(["eval", "trust", "--run", "runs/lite", "--json", "--mi-images", "64"])
    assert args.folder == "runs/lite" and args.json and args.mi_images == 64 and args.min_ratio == 1.5


def test_consistency_of_a_gapped_merge_mines_the_latents_it_counted(monkeypatch):
    """A merge of [0, 96) and [192, 288) spans 288 latents but counted 192: the halves split 192."""
    import rosetta_lite.evaluation.trust as trust

    asked = []

    def records(generator, encoders, images, **kwargs):
        asked.append(images)
        raise InterruptedError  # the count is what this test is about; no mining

    monkeypatch.setattr(trust, "mine", records)
    settings = {"generator": "toy", "encoders": [], "images": 288, "images_counted": 192, "seed": 0, "start": 0}
    d = RosettaDictionary(settings, {"toy": {"layers": ["feat"], "units": [2]}}, [], {}, {"toy": []}, {})
    with pytest.raises(InterruptedError):
        input_consistency(None, [], d, batch_size=32)
    assert asked == [96]
