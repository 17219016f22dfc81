"""Tests of the lite GAN: architecture, a short training run, and the quality metrics."""

import json
import math

import numpy as np
import pytest
import torch

from rosetta_lite.train.gan import GANConfig
from rosetta_lite.train.gan_quality import frechet_distance, knn_precision_recall, knn_radii
from rosetta_lite.train.recipes import train
from rosetta_lite.zoo.gan_arch import (
    GENERATOR_LAYERS,
    FeatureDiscriminator,
    LiteDiscriminator,
    LiteGenerator,
    load_generator,
)


@pytest.mark.parametrize("convs, object_layers", [(1, 0), (2, 0), (1, 3)])
def test_generator_shapes_layers_and_range(convs, object_layers):
    torch.manual_seed(0)
    g = LiteGenerator(convs_per_block=convs, object_layers=object_layers)
    maps = {}
    hooks = [getattr(g, n).register_forward_hook(lambda m, i, o, n=n: maps.__setitem__(n, o))
             for n in GENERATOR_LAYERS]
    with torch.no_grad():
        x = g(torch.randn(3, g.z_dim))
    for h in hooks:
        h.remove()
    assert x.shape == (3, 3, 32, 32)
    assert float(x.min()) >= 0 and float(x.max()) <= 1
    for name, size, c in zip(GENERATOR_LAYERS, (4, 8, 16, 32), g.channels):
        assert maps[name].shape == (3, c, size, size)


def test_generator_is_deterministic_and_differentiable_in_z():
    torch.manual_seed(0)
    g = LiteGenerator().eval()
    z = torch.randn(2, g.z_dim, requires_grad=True)
    x = g(z)
    assert torch.equal(x, g(z))
    x.mean().backward()
    assert z.grad is not None and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


def test_two_convolutions_per_block_survive_saving_and_a_third_is_refused(tmp_path):
    from rosetta_lite.zoo.gan_arch import save_generator

    torch.manual_seed(0)
    g = LiteGenerator(channels=(16, 16, 8, 8), convs_per_block=2).eval()
    loaded = load_generator(save_generator(g, tmp_path / "g.safetensors"))
    z = torch.randn(2, g.z_dim)
    assert loaded.config["convs_per_block"] == 2 and torch.equal(loaded(z), g(z))
    assert "convs_per_block" not in LiteGenerator().config  # one-conv weight files keep their old config
    with pytest.raises(ValueError, match="convs per block must be 1 or 2, got 3"):
        LiteGenerator(convs_per_block=3)


def test_layered_head_paints_each_object_in_one_colour_and_survives_saving(tmp_path):
    from rosetta_lite.zoo.gan_arch import LayeredHead, save_generator

    torch.manual_seed(0)
    head = LayeredHead(8, layers=1)
    with torch.no_grad():  # an opaque layer over the left half: that half is one colour
        head.conv.weight.zero_(); head.conv.bias.zero_()
        head.conv.weight[3, 8, 1, 1] = -200.0  # alpha logit from the x coordinate channel
        head.conv.weight[:3, :8].normal_()  # background and the layer's colour map vary
        head.conv.weight[4:7, :8].normal_()  # from pixel to pixel
    x = head(torch.randn(2, 8, 32, 32))
    assert x[:, :, :, :15].std((2, 3)).max() < 1e-4  # under the opaque layer: one colour
    background = x[:, :, :, 17:]  # beside the layer: the background, which varies only from row to row
    assert background.std(3).max() < 1e-5 and background.std(2).min() > 1e-2

    g = LiteGenerator(channels=(16, 16, 8, 8), object_layers=2).eval()
    loaded = load_generator(save_generator(g, tmp_path / "g.safetensors"))
    z = torch.randn(2, g.z_dim)
    assert loaded.config["object_layers"] == 2 and torch.equal(loaded(z), g(z))
    assert "object_layers" not in LiteGenerator().config
    with pytest.raises(ValueError, match="object_layers must be from 0"):
        LiteGenerator(object_layers=9)


def test_discriminator_output():
    d = LiteDiscriminator()
    assert d(torch.rand(4, 3, 32, 32)).shape == (4,)


def test_feature_discriminator_reads_a_frozen_tower_through_trainable_heads():
    from rosetta_lite.zoo.lite_arch import build_lite_clip

    visual = build_lite_clip().visual
    before = {k: v.clone() for k, v in visual.state_dict().items()}
    fd = FeatureDiscriminator(visual, "lite-clip").train()
    assert not visual.training and not any(p.requires_grad for p in visual.parameters())
    images = torch.rand(3, 3, 32, 32, requires_grad=True)
    logits = fd(images)
    # one logit per position of the 16, 8 and 4 px maps, and one for the pooled embedding
    assert [tuple(x.shape) for x in logits] == [(3, 256), (3, 64), (3, 16), (3, 1)]
    sum(x.sum() for x in logits).backward()
    assert images.grad is not None and images.grad.abs().sum() > 0  # the generator learns through it
    assert all(p.grad is not None for p in fd.heads.parameters() if p.requires_grad)
    for k, v in visual.state_dict().items():  # batch-norm statistics included
        assert torch.equal(v, before[k]), k


#: a GAN small enough for a test to train a few steps of
TINY = dict(batch=8, g_channels=(16, 16, 8, 8), d_channels=(8, 8, 16, 16))


def test_gan_config_rejects_an_unknown_feature_member():
    with pytest.raises(ValueError, match="feature_member must be '' \\(off\\) or 'lite-clip', got 'lite-vit-mae'"):
        GANConfig(feature_member="lite-vit-mae")


def test_gan_trains_in_bf16_where_native_and_names_a_bad_precision(tmp_path):
    from rosetta_lite.device import native_bf16

    with pytest.raises(ValueError, match="precision must be 'fp32' or 'bf16', got 'fp16'"):
        GANConfig(precision="fp16")
    figs = train("lite-gan", tmp_path, steps=2, seed=1, progress=False, **TINY, feature_start=1, precision="bf16")
    expected = "bf16" if native_bf16(torch.device("cpu")) else "fp32"
    assert figs["config"]["precision"] == expected
    assert math.isfinite(figs["final_loss"])
    from safetensors import safe_open

    with safe_open(figs["weights"], framework="pt") as f:  # the precision that ran is recorded
        assert json.loads(f.metadata()["precision"]) == expected
    g = load_generator(figs["weights"])
    assert torch.isfinite(g(torch.randn(2, g.z_dim))).all()


def test_short_training_run_saves_and_resumes(tmp_path):
    torch.manual_seed(0)
    # the vision-aided discriminator counts from step 1 and R1 every second step, so resuming is checked with both
    cfg = dict(TINY, r1_every=2, r1_gamma=0.1, feature_start=1)
    figs = train("lite-gan", tmp_path, steps=3, seed=1, progress=False, checkpoint_every=2, **cfg)
    assert figs["steps"] == 3 and math.isfinite(figs["final_loss"])
    weights = tmp_path / "lite-gan.safetensors"
    assert weights.exists() and figs["weights_bytes"] < 10 * 2**20
    assert (tmp_path / "lite-gan.ckpt.pt").exists()
    g = load_generator(weights)
    assert g(torch.randn(2, g.z_dim)).shape == (2, 3, 32, 32)
    from safetensors import safe_open

    from rosetta_lite.zoo.weights import entry
    with safe_open(str(weights), framework="pt") as f:  # which CLIP the discriminator read is recorded
        assert json.loads(f.metadata()["feature_weights_sha256"]) == entry("lite-clip")["sha256"]
    # a finished run is not trained again
    again = train("lite-gan", tmp_path, steps=3, seed=1, progress=False, **cfg)
    assert again["resumed_from"] == 3 and again["steps_run"] == 0
    # an interrupted run (checkpoint at step 2) resumed to 3 equals an uninterrupted one
    other = tmp_path / "b"
    train("lite-gan", other, steps=3, seed=1, progress=False, stop_after=2, **cfg)
    train("lite-gan", other, steps=3, seed=1, progress=False, **cfg)
    a, b = load_generator(weights), load_generator(other / "lite-gan.safetensors")
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb), ka
    with pytest.raises(ValueError, match="another configuration of lite-gan's recipe"):
        train("lite-gan", other, steps=3, seed=1, progress=False, **{**cfg, "g_lr": 1e-3})


def test_precision_recall_on_hand_made_sets():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(400, 2))
    same = rng.normal(size=(400, 2))
    p, r = knn_precision_recall(real, same, k=3)
    assert p > 0.9 and r > 0.9
    # collapsed fakes: all near the centre -> precise but no recall
    p, r = knn_precision_recall(real, 0.05 * rng.normal(size=(400, 2)), k=3)
    assert p > 0.95 and r < 0.2
    # fakes far away -> neither
    p, r = knn_precision_recall(real, same + 20, k=3)
    assert p == 0 and r == 0
    # half of the fakes off the manifold -> precision about one half
    half = np.concatenate([same[:200], same[200:] + 20])
    p, _ = knn_precision_recall(real, half, k=3)
    assert 0.4 < p < 0.55


def test_knn_radii_exact():
    pts = torch.tensor([[0.0], [1.0], [3.0], [7.0]])
    assert torch.allclose(knn_radii(pts, k=1), torch.tensor([1.0, 1.0, 2.0, 4.0], dtype=torch.float64))
    with pytest.raises(ValueError):
        knn_radii(pts, k=4)


def test_frechet_distance():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5000, 3))
    assert frechet_distance(a, a) < 1e-6
    # shift of the mean by (2, 0, 0): FD ~ 4; scaling by 2: tr(C1 + C2 - 2 sqrt(C1 C2)) = 3 (1 + 4 - 4) = 3
    assert abs(frechet_distance(a, a + np.array([2.0, 0, 0])) - 4) < 1e-6
    assert abs(frechet_distance(a, 2 * rng.normal(size=(5000, 3))) - 3) < 0.3


def test_gan_recipe_runs_alone_judged_and_guided_by_shipped_members(tmp_path):
    """`train lite-gan --out EMPTY` needs lite-clip (its second discriminator) and
    lite-resnet-sup (its judge): without them in the folder it uses the shipped ones."""
    import shutil

    from rosetta_lite.train.checkpoints import trained_or_shipped
    from rosetta_lite.train.recipes import train_member
    from rosetta_lite.zoo.weights import WEIGHTS_DIR

    assert trained_or_shipped(tmp_path, "lite-clip") == WEIGHTS_DIR / "lite-clip.safetensors"
    report = train_member("lite-gan", tmp_path / "gan", steps=1, progress=False)
    assert {"precision_ratio", "recall_ratio", "frechet", "frechet_world"} <= set(report["quality"])
    assert not any(report["gates"].values())  # one step draws nothing like the world
    shutil.copy(WEIGHTS_DIR / "lite-clip.safetensors", tmp_path)
    assert trained_or_shipped(tmp_path, "lite-clip") == tmp_path / "lite-clip.safetensors"


def test_gate_figures_pass_world_images_and_fail_world_images_halved_in_resolution():
    """image_set_quality scores any image set; the gates fail real scenes that lost detail."""
    import torch.nn.functional as F

    from rosetta_lite.train.gan_quality import image_set_quality
    from rosetta_lite.train.recipes import GATES, gate_results
    from rosetta_lite.world import ShapesWorld
    from rosetta_lite.zoo.weights import WEIGHTS_DIR

    judge = WEIGHTS_DIR / "lite-resnet-sup.safetensors"
    world = ShapesWorld(32).batch(500, seed=20).images
    assert all(gate_results("lite-gan", image_set_quality(world, judge)).values())
    halved = F.interpolate(F.interpolate(world, 16, mode="bilinear", antialias=True), 32, mode="bilinear")
    figures = image_set_quality(halved, judge)
    assert figures["recall_ratio"] < GATES["lite-gan"]["recall_ratio"]["recall_ratio"]
    with pytest.raises(ValueError, match=r"\(N >= 4, 3, 32, 32\)"):
        image_set_quality(world[:, :, :16, :16], judge)
