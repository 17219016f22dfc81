"""The full-scale zoo offline: every member builds with untrained weights of the real shapes,
records its default layers, and runs one small mining batch; weights fail fast offline.

Real-size models on a CPU are slow (BigGAN-deep-256 takes seconds per image), so each GAN
is built once per module and mining uses one of its fine layers (few units), while the
encoders are mined on all their default layers; a separate test records every default
layer of each GAN.
"""

import dataclasses
import os
import time

import pytest
import torch

from rosetta_lite import zoo
from rosetta_lite.capture import Trace
from rosetta_lite.mining.loop import mine
from rosetta_lite.zoo import biggan

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # asking a hub offline would retry for ~46 s

ENCODERS = ["resnet50", "dino-resnet50", "dino-vitb16", "mae-vitb16", "clip-rn50"]
# name: (resolution, residual blocks, channels per block in units of 128)
GANS = {
    "biggan-deep-256": (256, 12, [16, 16, 16, 8, 8, 8, 8, 4, 4, 2, 2, 1]),
    "biggan-deep-128": (128, 10, [16, 16, 16, 8, 8, 4, 4, 2, 2, 1]),
}


@pytest.fixture(scope="module")
def gans() -> dict[str, biggan.ConditionalGenerator]:
    return {name: zoo.load(name, pretrained=False, seed=0) for name in GANS}


def test_the_full_zoo_has_the_papers_members_and_a_gan_by_default():
    assert set(ENCODERS) <= set(zoo.names("full", "encoder"))
    # runs.zoo_members picks the first full generator for zoo="full": the paper's 256 px one
    # (the StyleGAN2 members follow them: tests/test_stylegan2.py)
    assert zoo.names("full", "generator")[:2] == ["biggan-deep-256", "biggan-deep-128"]


def test_configs_are_the_packages_tf_hub_conversions():
    from pytorch_pretrained_biggan.convert_tf_to_pytorch import BigGAN128, BigGAN256

    for name, reference in (("biggan-deep-128", BigGAN128), ("biggan-deep-256", BigGAN256)):
        ours = biggan.CONFIGS[name]
        assert [tuple(b) for b in ours["layers"]] == [tuple(b) for b in reference.layers]
        assert {k: v for k, v in ours.items() if k != "layers"} == \
               {k: v for k, v in reference.to_dict().items() if k != "layers"}


@pytest.mark.parametrize("name", list(GANS))
def test_gan_builds_at_real_size_and_records_every_block(gans, name):
    side, blocks, widths = GANS[name]
    gan = gans[name]
    assert gan.is_generator and gan.scale == "full" and not gan.pretrained and not gan.model.training
    assert gan.z_dim == 128 + 1000 and len(gan.layers) == blocks
    assert all(layer.startswith("generator.layers.") for layer in gan.layers)
    # the official code's set: 4 convolutions per block, 4 in the attention, the RGB one
    assert len(biggan.conv_layers(gan.model)) == 4 * blocks + 4 + 1
    z = gan.sample_latents(1, seed=3)
    with torch.no_grad(), Trace(gan.model, gan.layers) as trace:
        images = gan.generate(z)
    assert images.shape == (1, 3, side, side) and images.min() >= 0 and images.max() <= 1
    shapes = [tuple(trace[layer].shape[1:]) for layer in gan.layers]
    assert [c for c, _, _ in shapes] == [128 * w for w in widths]
    assert shapes[0][1:] == (4, 4) and shapes[-1][1:] == (side, side)
    # untrained but settled: activations neither vanish nor blow up through the residual stack
    stds = [trace[layer].std().item() for layer in gan.layers]
    assert all(0.01 < s < 10 for s in stds), stds
    assert images.std() > 0.01


def test_gan_latents_are_seeded_truncated_and_class_conditional(gans):
    gan = gans["biggan-deep-128"]
    z = gan.sample_latents(64, seed=5)
    assert torch.equal(z, gan.sample_latents(64, seed=5)) and not torch.equal(z, gan.sample_latents(64, seed=6))
    noise, classes = gan.split_latents(z)
    assert noise.abs().max() <= 2.0 * gan.truncation
    assert torch.equal(classes.sum(1), torch.ones(64)) and len(set(classes.argmax(1).tolist())) > 30
    goldfish = gan.sample_latents(8, seed=5, classes=["Goldfish", 207])
    assert set(gan.split_latents(goldfish)[1].argmax(1).tolist()) <= {1, 207}
    assert biggan.class_names()[207] == "Golden Retriever" and biggan.class_index("goldfish") == 1
    fixed = gan.latents_for(torch.zeros(2, 128), [3, "goldfish"])
    assert fixed[:, 128:].argmax(1).tolist() == [3, 1]


def test_gan_options_come_through_load(gans):
    gan = gans["biggan-deep-128"]
    narrow = dataclasses.replace(gan, truncation=0.25, classes=(207,))
    z = narrow.sample_latents(16, seed=0)
    assert narrow.split_latents(z)[0].abs().max() <= 0.5
    assert set(narrow.split_latents(z)[1].argmax(1).tolist()) == {207}
    with pytest.raises(zoo.ZooError, match=r"has no option \['truncaton'\].*truncation"):
        zoo.load("biggan-deep-128", pretrained=False, truncaton=0.5)
    with pytest.raises(zoo.ZooError, match="takes none"):
        zoo.load("resnet50", pretrained=False, classes=[1])


def test_gan_settings_are_checked_with_clear_errors(gans):
    gan = gans["biggan-deep-128"]
    with pytest.raises(ValueError, match=r"no ImageNet class named 'goldfsh'.*Did you mean.*goldfish"):
        gan.sample_latents(2, classes=["goldfsh"])
    with pytest.raises(ValueError, match="0..999"):
        gan.sample_latents(2, classes=[1000])
    with pytest.raises(ValueError, match=r"truncation must be in \(0, 1\]"):
        dataclasses.replace(gan, truncation=1.5).sample_latents(2)
    with pytest.raises(ValueError, match=r"latents \(B, 1128\) = 128 noise values"):
        gan.generate(torch.zeros(2, 128))


def test_gan_is_differentiable_in_noise_and_class(gans):
    gan = gans["biggan-deep-128"]
    z = gan.sample_latents(2, seed=1).requires_grad_(True)
    # stop after the second block: the gradient path through the first blocks is what inversion needs
    with Trace(gan.model, [gan.layers[1]], detach=False, stop=True) as trace:
        gan.generate(z)
    trace[gan.layers[1]].square().sum().backward()
    noise_grad, class_grad = gan.split_latents(z.grad)
    assert noise_grad.abs().sum() > 0 and class_grad.abs().sum() > 0


@pytest.mark.parametrize("name,encoders", [
    ("biggan-deep-256", ["resnet50", "dino-resnet50", "clip-rn50"]),
    ("biggan-deep-128", ["dino-vitb16", "mae-vitb16"]),
])
def test_one_mining_batch_runs_through_every_full_member(gans, name, encoders):
    # one fine block of the GAN (256 units) keeps the tables small; the encoders keep every default layer
    gan = dataclasses.replace(gans[name], layers=[gans[name].layers[-2]])
    members = [zoo.load(e, pretrained=False, seed=i) for i, e in enumerate(encoders)]
    for member in members:
        assert member.scale == "full" and not member.pretrained
    result = mine(gan, members, images=2, batch_size=2, progress=False)
    assert result.counted == [[0, 2]]
    for member in members:
        assert result.settings.layers[member.name] == member.layers
        table = result.similarity(member.name)
        units = sum(result.settings.units[member.name])
        assert table.shape == (256, units) and torch.isfinite(table).any()
    expected_units = {"resnet50": 3840, "dino-resnet50": 3840, "clip-rn50": 3840,
                      "dino-vitb16": 12 * 3072, "mae-vitb16": 12 * 3072}
    assert {m.name: sum(result.settings.units[m.name]) for m in members} == {e: expected_units[e] for e in encoders}


@pytest.mark.parametrize("name", list(GANS))
def test_pretrained_gan_fails_fast_offline_and_says_what_to_do(monkeypatch, name):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    expected = rf"{name}: pretrained weights are a download.*Colab.*weights=.*pretrained=False"
    with pytest.raises(zoo.ZooError, match=expected):
        zoo.load(name)
    assert time.perf_counter() - start < 2


def test_gan_loads_a_local_weights_file_and_refuses_another_resolutions(gans, tmp_path):
    reference = gans["biggan-deep-128"]
    path = tmp_path / "biggan-deep-128-pytorch_model.bin"
    torch.save(reference.model.state_dict(), path)  # the released files' format: a pickled state dict
    loaded = zoo.load("biggan-deep-128", weights=str(path))
    assert loaded.pretrained
    for key, value in reference.model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value), key
    with pytest.raises(zoo.ZooError, match=r"do not fit biggan-deep-256.*size mismatch"):
        zoo.load("biggan-deep-256", weights=str(path))
    with pytest.raises(zoo.ZooError, match="does not exist"):
        zoo.load("biggan-deep-128", weights=str(tmp_path / "nothing"))


def test_timm_weights_files_load_every_tensor_or_are_refused(tmp_path):
    import argparse

    import timm

    reference = timm.create_model("resnet50", pretrained=False, num_classes=0)
    state = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in reference.state_dict().items()}
    # a DINO-style checkpoint: the teacher's weights under "backbone.", its head, and its training arguments
    dino = tmp_path / "dino.pth"
    torch.save({"teacher": {"backbone." + k: v for k, v in state.items()} | {"head.mlp.0.weight": torch.zeros(2, 2)},
                "args": argparse.Namespace(arch="resnet50", lr=0.1)}, dino)
    member = zoo.load("dino-resnet50", weights=str(dino))
    assert member.pretrained and torch.equal(member.model.state_dict()["conv1.weight"], state["conv1.weight"])
    prefixed = tmp_path / "prefixed.pth"
    torch.save({"encoder." + k: v for k, v in state.items()}, prefixed)
    with pytest.raises(zoo.ZooError, match=r"do not fit ResNet: \d+ of its \d+ tensors are missing"):
        zoo.load("resnet50", weights=str(prefixed))

    from fractions import Fraction  # any class but a Namespace is refused unread

    crafted = tmp_path / "crafted.pth"
    torch.save({"state_dict": state, "x": Fraction(1, 3)}, crafted)
    with pytest.raises(zoo.ZooError, match="holds objects other than tensors"):
        zoo.load("resnet50", weights=str(crafted))


def test_full_encoders_normalise_like_their_training_and_resnet50_is_torchvisions():
    from rosetta_lite.zoo.full import TIMM_MEMBERS
    from rosetta_lite.zoo.preprocess import IMAGENET_MEAN, IMAGENET_STD

    assert TIMM_MEMBERS["resnet50"][1] == "tv_in1k"
    member = zoo.load("dino-resnet50", pretrained=False)
    assert member.preprocess.mean == IMAGENET_MEAN and member.preprocess.std == IMAGENET_STD


def test_weights_downloaded_before_load_offline(gans, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    (tmp_path / "checkpoints").mkdir()
    reference = gans["biggan-deep-128"]
    torch.save(reference.model.state_dict(), tmp_path / "checkpoints" / "biggan-deep-128-pytorch_model.bin")
    loaded = zoo.load("biggan-deep-128")
    assert loaded.pretrained
    assert all(torch.equal(a, b) for a, b in zip(loaded.model.state_dict().values(),
                                                   reference.model.state_dict().values()))
    resnet = zoo.load("resnet50", pretrained=False, seed=3)
    torch.save(resnet.model.state_dict(), tmp_path / "checkpoints" / "dino_resnet50_pretrain.pth")
    dino = zoo.load("dino-resnet50")
    assert torch.equal(dino.model.conv1.weight, resnet.model.conv1.weight)


def test_a_weights_file_with_a_few_gaps_loads_and_names_them(tmp_path):
    reference = zoo.load("resnet50", pretrained=False, seed=4).model.state_dict()
    few = tmp_path / "few.pth"
    torch.save({k: v for k, v in reference.items() if k != "fc.weight" and k != "layer4.2.bn3.bias"}
               | {"fc.weight": torch.zeros(3, 3), "extra.thing": torch.zeros(1)}, few)
    with pytest.warns(UserWarning, match=r"initial values for \['layer4.2.bn3.bias'\]; unknown keys ignored: "
                                         r"\['extra.thing'\]"):
        zoo.load("resnet50", weights=str(few))


def test_a_timm_model_in_the_hugging_face_cache_loads_offline(tmp_path, monkeypatch):
    import huggingface_hub.constants
    from safetensors.torch import save_file

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    reference = zoo.load("resnet50", pretrained=False, seed=6).model
    repo = tmp_path / "models--timm--resnet50.tv_in1k"
    snapshot = repo / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    state = {k: v.contiguous() for k, v in reference.state_dict().items()} | {"fc.weight": torch.zeros(1000, 2048),
                                                                             "fc.bias": torch.zeros(1000)}
    save_file(state, str(snapshot / "model.safetensors"))
    loaded = zoo.load("resnet50")
    assert loaded.pretrained and torch.equal(loaded.model.conv1.weight, reference.conv1.weight)
    with pytest.raises(zoo.ZooError, match=r"HF_HUB_OFFLINE is set, and vit_base_patch16_224.dino is not in the"):
        zoo.load("dino-vitb16")


def test_the_official_gan_settings_are_options_with_their_values():
    """One class per run, noise truncated to [-1, 1], truncation 1 and every convolution: the official code's."""
    assert biggan.OFFICIAL == {"truncation": 1.0, "noise_bound": 1.0, "layers": "conv"}
    gan = zoo.load("biggan-deep-128", pretrained=False, classes=["goldfish"], **biggan.OFFICIAL)
    assert gan.layers == biggan.conv_layers(gan.model) and len(gan.layers) > len(biggan.block_layers(gan.model))
    noise, classes = gan.split_latents(gan.sample_latents(256, seed=0))
    assert 0.9 < noise.abs().max() <= 1.0 and set(classes.argmax(1).tolist()) == {1}
    plain = biggan.truncated_noise(256, 1.0, torch.Generator().manual_seed(0))
    assert 1.0 < plain.abs().max() <= 2.0  # the package's default bound is BigGAN's 2


@pytest.mark.parametrize("options, message", [
    ({"layers": "convs"}, r"layers must be one of \['blocks', 'conv'\]"),
    ({"noise_bound": 0}, r"noise_bound must be a number in \(0, 10\]"),
    ({"classes": "goldfish"}, r"classes must be a list of ImageNet classes, e.g. \['goldfish'\]"),
    ({"classes": ["goldfsh"]}, "no ImageNet class named 'goldfsh'"),
    ({"truncation": 0}, r"truncation must be in \(0, 1\]"),
])
def test_bad_gan_options_are_refused_before_the_model_is_built(options, message):
    start = time.perf_counter()
    with pytest.raises(ValueError, match=message):
        zoo.load("biggan-deep-256", pretrained=False, **options)
    assert time.perf_counter() - start < 1.0  # building BigGAN-deep-256 alone takes seconds


@pytest.mark.parametrize("name", ["dino-vitb16", "mae-vitb16"])
def test_vits_normalise_with_imagenet_statistics_untrained_and_from_a_file(name, tmp_path):
    from rosetta_lite.zoo.preprocess import IMAGENET_MEAN, IMAGENET_STD

    untrained = zoo.load(name, pretrained=False)
    path = tmp_path / "vit.pth"
    torch.save(untrained.model.state_dict(), path)
    for member in (untrained, zoo.load(name, weights=str(path))):
        assert (member.preprocess.mean, member.preprocess.std) == (IMAGENET_MEAN, IMAGENET_STD)
