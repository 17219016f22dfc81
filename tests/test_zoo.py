import time

import pytest
import torch

from rosetta_lite import zoo
from rosetta_lite.capture import Trace
from rosetta_lite.zoo import weights


def test_names_cover_the_papers_zoo_at_both_scales():
    lite = zoo.names("lite")
    assert len(lite) == 7 and zoo.names("lite", "generator") == ["lite-renderer", "lite-gan"]
    assert {"resnet50", "dino-resnet50", "dino-vitb16", "mae-vitb16", "clip-rn50"} <= set(zoo.names("full"))
    assert {row["name"] for row in zoo.describe()} == set(zoo.names())


def test_unknown_member_suggests_names():
    with pytest.raises(zoo.ZooError, match=r"unknown zoo member 'lite-vit-dno'.*Did you mean.*lite-vit-dino"):
        zoo.load("lite-vit-dno")


@pytest.mark.parametrize("name", zoo.names("lite", "encoder"))
def test_untrained_lite_encoders_give_maps_of_every_default_layer(name):
    member = zoo.load(name, pretrained=False, seed=3)
    assert member.kind == "encoder" and not member.model.training and not member.pretrained
    images = torch.rand(2, 3, 32, 32)
    with Trace(member.model, member.layers) as trace:
        member.encode(images)
    sizes = [trace[layer].shape[-1] for layer in member.layers]
    assert all(trace[layer].shape[0] == 2 and trace[layer].dim() == 4 for layer in member.layers)
    assert max(sizes) >= 8


def test_control_zoo_is_seeded():
    a, b = zoo.load("lite-resnet-dino", pretrained=False, seed=1), zoo.load("lite-resnet-dino", pretrained=False, seed=1)
    c = zoo.load("lite-resnet-dino", pretrained=False, seed=2)
    x = torch.rand(1, 3, 32, 32)
    assert torch.equal(a.encode(x), b.encode(x)) and not torch.equal(a.encode(x), c.encode(x))


def test_generator_samples_and_is_differentiable():
    gan = zoo.load("lite-gan", pretrained=False)
    z = gan.sample_latents(4, seed=7)
    assert torch.equal(z, gan.sample_latents(4, seed=7)) and z.shape == (4, gan.z_dim)
    z.requires_grad_(True)
    with Trace(gan.model, gan.layers, detach=False) as trace:
        images = gan.generate(z)
    assert images.shape == (4, 3, 32, 32) and images.min() >= 0 and images.max() <= 1
    assert [trace[l].shape[-1] for l in gan.layers] == [4, 8, 16, 32]
    trace[gan.layers[1]].sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    with pytest.raises(zoo.ZooError, match="generator"):
        gan.encode(images)


def test_pretrained_full_member_fails_fast_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(zoo.ZooError, match=r"download.*Colab.*weights="):
        zoo.load("dino-vitb16")
    with pytest.raises(zoo.ZooError, match="clip-rn50"):
        zoo.load("clip-rn50")
    assert time.perf_counter() - start < 10


def test_full_member_loads_a_local_weights_file(tmp_path):
    from safetensors.torch import save_file

    reference = zoo.load("resnet50", pretrained=False, seed=5)
    path = tmp_path / "r50.safetensors"
    save_file({k: v.contiguous() for k, v in reference.model.state_dict().items()}, str(path))
    loaded = zoo.load("resnet50", weights=str(path))
    assert loaded.pretrained and torch.equal(loaded.model.conv1.weight, reference.model.conv1.weight)
    with pytest.raises(zoo.ZooError, match="does not exist"):
        zoo.load("resnet50", weights=str(tmp_path / "nothing.pth"))


def test_missing_and_corrupt_weights_name_the_file_and_the_retrain_command(tmp_path):
    source = tmp_path / "src.safetensors"
    from safetensors.torch import save_file

    save_file({"w": torch.ones(3)}, str(source))
    folder = tmp_path / "weights"
    with pytest.raises(zoo.ZooError, match=r"no weights for 'lite-x'.*train lite-x"):
        weights.verified_state_dict("lite-x", folder)
    target = weights.install("lite-x", source, {"seed": 1}, folder)
    assert torch.equal(weights.verified_state_dict("lite-x", folder)["w"], torch.ones(3))
    target.write_bytes(target.read_bytes()[:-1] + b"!")
    with pytest.raises(zoo.ZooError, match=r"lite-x.safetensors.*corrupt.*train lite-x"):
        weights.verified_state_dict("lite-x", folder)
    target.unlink()
    with pytest.raises(zoo.ZooError, match=r"lite-x.safetensors.*missing.*train lite-x"):
        weights.verified_state_dict("lite-x", folder)


def test_member_options_are_refused_where_a_member_has_none():
    with pytest.raises(zoo.ZooError, match=r"lite-gan has no option \['classes'\]: it takes none"):
        zoo.load("lite-gan", pretrained=False, classes=[1])


def test_weights_with_a_nan_are_refused_with_the_tensor_named(tmp_path):
    from safetensors.torch import load_file, save_file

    from rosetta_lite.zoo.weights import verified_file

    state = load_file(str(verified_file("lite-resnet-dino")))
    key = sorted(state)[3]
    state[key].view(-1)[0] = float("nan")
    save_file(state, str(tmp_path / "lite-resnet-dino.safetensors"))
    with pytest.raises(zoo.ZooError, match=rf"tensor '{key}' holds 1 NaN or infinite value"):
        zoo.load("lite-resnet-dino", weights=str(tmp_path / "lite-resnet-dino.safetensors"))


def test_a_zoo_name_says_its_scale_and_whether_it_is_trained():
    from rosetta_lite.zoo.registry import ZOOS, split_zoo

    assert split_zoo("lite-untrained") == ("lite", False) and split_zoo("full") == ("full", True)
    assert {split_zoo(z) for z in ZOOS} == {("lite", True), ("lite", False), ("full", True), ("full", False)}
