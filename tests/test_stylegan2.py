"""StyleGAN2 members offline: the architecture in rosinality's layout (untrained, mostly at a tiny
size), strict and safe loading of checkpoint files written here in the published layout, seeded
latents and truncation, the official layers as the capture helper lists them, one mining batch
with two encoders, one inversion and one edit step in W+; and DINO ViT-B/8's 28 x 28 token grid.
"""

import argparse
import dataclasses
import os
import time

import pytest
import torch

from rosetta_lite import zoo
from rosetta_lite.applications.edit import edit, shift
from rosetta_lite.applications.invert import invert
from rosetta_lite.capture import Trace, list_layers, record_encoder, record_generator
from rosetta_lite.dictionary.rosetta import build_dictionary
from rosetta_lite.mining.loop import mine
from rosetta_lite.zoo import stylegan2
from rosetta_lite.zoo.registry import default_names
from rosetta_lite.zoo.stylegan2 import StyleGAN2Config

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # asking a hub offline would retry for ~46 s

#: 32 px, 16 channels everywhere, a 2-layer mapping of 32-d styles: rosinality's keys at a size a test can run
TINY = StyleGAN2Config(size=32, style_dim=32, n_mlp=2, max_channels=16)
TINY_UNITS = 6 * 16 + 3 * 3  # two style convolutions at 8, 16 and 32 px, and a to-RGB at each


def expected_keys(config: StyleGAN2Config) -> list[str]:
    """The state dict keys of rosinality's ``Generator`` for ``config``, in order, from its layout's rules."""
    def styled(prefix: str, upsample: bool) -> list[str]:
        blur = [f"{prefix}.conv.blur.kernel"] if upsample else []
        return [f"{prefix}.conv.weight", *blur, f"{prefix}.conv.modulation.weight", f"{prefix}.conv.modulation.bias",
                f"{prefix}.noise.weight", f"{prefix}.activate.bias"]

    def to_rgb(prefix: str, upsample: bool) -> list[str]:
        kernel = [f"{prefix}.upsample.kernel"] if upsample else []
        return [f"{prefix}.bias", *kernel, f"{prefix}.conv.weight", f"{prefix}.conv.modulation.weight",
                f"{prefix}.conv.modulation.bias"]

    stages = config.size.bit_length() - 3  # resolutions after 4 x 4
    keys = [f"style.{i}.{part}" for i in range(1, config.n_mlp + 1) for part in ("weight", "bias")]
    keys += ["input.input", *styled("conv1", False), *to_rgb("to_rgb1", False)]
    keys += [key for i in range(2 * stages) for key in styled(f"convs.{i}", i % 2 == 0)]
    keys += [key for i in range(stages) for key in to_rgb(f"to_rgbs.{i}", True)]
    return keys + [f"noises.noise_{i}" for i in range(2 * stages + 1)]


@pytest.fixture(scope="module")
def tiny() -> stylegan2.StyleGenerator:
    return stylegan2.build("stylegan2-cat", pretrained=False, seed=0, config=TINY)


@pytest.fixture(scope="module")
def mined(tiny):
    encoders = [zoo.load(name, pretrained=False, seed=i) for i, name in enumerate(["lite-resnet-sup", "lite-vit-dino"])]
    return encoders, mine(tiny, encoders, images=4, batch_size=4, progress=False)


def test_the_full_zoo_has_the_stylegan2_members_and_keeps_its_defaults():
    members = ["stylegan2-cat", "stylegan2-horse", "stylegan2-church", "stylegan2-car", "stylegan2-ffhq"]
    assert set(members) <= set(zoo.names("full", "generator"))
    assert zoo.names("full", "generator")[0] == "biggan-deep-256"  # still what zoo="full" picks
    assert "dino-vitb8" in zoo.names("full", "encoder") and "dino-vitb8" not in default_names("full", "encoder")
    assert default_names("full", "encoder") == ["resnet50", "dino-resnet50", "dino-vitb16", "mae-vitb16", "clip-rn50"]
    sizes = {name: stylegan2.CHECKPOINTS[name].config.size for name in members}
    assert sizes == {"stylegan2-cat": 256, "stylegan2-horse": 256, "stylegan2-church": 256, "stylegan2-car": 512,
                     "stylegan2-ffhq": 1024}


def test_the_state_dict_is_rosinalitys_layout_key_for_key(tiny):
    state = tiny.model.state_dict()
    assert list(state) == expected_keys(TINY)
    assert state["convs.0.conv.weight"].shape == (1, 16, 16, 3, 3) and state["to_rgbs.2.bias"].shape == (1, 3, 1, 1)
    assert state["noises.noise_6"].shape == (1, 1, 32, 32) and state["style.2.weight"].shape == (32, 32)
    # W's statistics are derived from the weights, never part of a checkpoint
    assert "w_mean" not in state and tiny.model.w_std.shape == (32,)


def test_the_real_cat_generator_has_the_papers_shapes_and_official_layers():
    gan = zoo.load("stylegan2-cat", pretrained=False)
    assert gan.is_generator and gan.scale == "full" and not gan.pretrained and gan.z_dim == 512
    assert list(gan.model.state_dict()) == expected_keys(StyleGAN2Config(256))
    assert sum(p.numel() for p in gan.model.parameters()) == 30_034_338  # config-f at 256 px
    assert gan.layers == [f"convs.{i}.activate" for i in range(12)] + [f"to_rgbs.{i}.conv" for i in range(6)]
    with torch.no_grad(), Trace(gan.model, gan.layers) as trace:
        images = gan.generate(gan.sample_latents(1, seed=0))
    assert images.shape == (1, 3, 256, 256) and images.std() > 0.01
    shapes = [tuple(trace[layer].shape[1:]) for layer in gan.layers]
    sides = [8, 8, 16, 16, 32, 32, 64, 64, 128, 128, 256, 256]
    assert shapes[:12] == [(c, s, s) for c, s in zip([512] * 8 + [256] * 2 + [128] * 2, sides)]
    assert shapes[12:] == [(3, s, s) for s in sides[::2]] and sum(c for c, _, _ in shapes) == 4882


def test_the_capture_helper_lists_the_mined_layers(tiny):
    z = tiny.sample_latents(1, seed=0)
    listed = {info.name: info.shape for info in list_layers(tiny.model, z)}
    _, maps = record_generator(tiny, z)
    assert all(listed[layer] == tuple(maps[layer].shape[1:]) for layer in tiny.layers)
    assert "conv1.activate" in listed and "conv1.activate" not in tiny.layers  # the official filter leaves it out
    assert sum(maps[layer].shape[1] for layer in tiny.layers) == TINY_UNITS
    everything = stylegan2.build("stylegan2-cat", pretrained=False, config=TINY, layers="all")
    assert everything.layers == ["conv1.activate", "to_rgb1.conv", *tiny.layers]


def test_latents_are_seeded_and_generation_is_deterministic(tiny):
    z = tiny.sample_latents(64, seed=5)
    assert z.shape == (64, 32) and torch.equal(z, tiny.sample_latents(64, seed=5))
    assert not torch.equal(z, tiny.sample_latents(64, seed=6)) and z.abs().max() > 2  # a plain normal
    with torch.no_grad():
        assert torch.equal(tiny.generate(z[:2]), tiny.generate(z[:2]))  # fixed noise maps
    official = dataclasses.replace(tiny, **{k: v for k, v in stylegan2.OFFICIAL.items() if k != "layers"})
    bounded = official.sample_latents(256, seed=0)
    assert 0.9 < bounded.abs().max() <= 1.0 and official.truncation == 1.0


def test_truncation_pulls_w_towards_its_mean_and_is_checked(tiny):
    z = tiny.sample_latents(8, seed=1)
    spread = {psi: (dataclasses.replace(tiny, truncation=psi).w_plus(z) - tiny.model.w_mean).norm().item()
              for psi in (1.0, 0.5)}
    assert spread[0.5] == pytest.approx(0.5 * spread[1.0], rel=1e-4)
    assert tiny.truncation == stylegan2.DEFAULT_TRUNCATION == 0.7
    with pytest.raises(ValueError, match=r"truncation must be in \(0, 1\]"):
        dataclasses.replace(tiny, truncation=1.5).generate(z)
    with pytest.raises(ValueError, match=r"latents are z \(B, 32\) or W\+ rows \(B, 8 x 32 = 256\), got \(2, 31\)"):
        tiny.generate(torch.zeros(2, 31))


@pytest.mark.parametrize("options, message", [
    ({"layers": "blocks"}, r"layers must be one of \['official', 'all'\]"),
    ({"noise_bound": 0}, r"noise_bound must be None .* or a number in \(0, 10\]"),
    ({"truncation": 0}, r"truncation must be in \(0, 1\]"),
])
def test_bad_options_are_refused_before_the_model_is_built(options, message):
    start = time.perf_counter()
    with pytest.raises(ValueError, match=message):
        zoo.load("stylegan2-ffhq", pretrained=False, **options)
    assert time.perf_counter() - start < 1.0  # building the 1024 px generator alone takes seconds
    with pytest.raises(zoo.ZooError, match=r"has no option \['classes'\]"):
        zoo.load("stylegan2-cat", pretrained=False, classes=["goldfish"])


def test_search_latents_are_w_plus_rows_that_generate_the_same_images(tiny):
    z = tiny.sample_latents(3, seed=2)
    w = tiny.search_latents(z)
    assert w.shape == (3, 8 * 32) and torch.equal(tiny.search_latents(w), w)
    assert torch.allclose(tiny.w_plus(w), tiny.w_plus(z), atol=1e-5)
    with torch.no_grad():
        assert torch.allclose(tiny.generate(w), tiny.generate(z), atol=1e-5)
    lite = zoo.load("lite-gan", pretrained=False)
    assert torch.equal(lite.search_latents(lite.sample_latents(2)), lite.sample_latents(2))  # others: z itself


def test_a_checkpoint_in_the_published_layout_loads_every_tensor(tiny, tmp_path):
    from safetensors.torch import save_file

    state = {k: torch.randn_like(v) if k.startswith("style.") else v for k, v in tiny.model.state_dict().items()}
    path = tmp_path / "stylegan2-cat-config-f.pt"  # rosinality's conversion: g_ema and the tracked mean w
    torch.save({"g_ema": state, "latent_avg": torch.zeros(32), "args": argparse.Namespace(size=32)}, path)
    loaded = stylegan2.build("stylegan2-cat", weights=str(path), config=TINY)
    assert loaded.pretrained
    assert all(torch.equal(loaded.model.state_dict()[k], v) for k, v in state.items())
    assert not torch.equal(loaded.model.w_mean, tiny.model.w_mean)  # W's statistics follow the loaded mapping
    flat = tmp_path / "g_ema.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(flat))
    again = stylegan2.build("stylegan2-cat", weights=str(flat), config=TINY)
    assert torch.equal(again.model.style[1].weight, state["style.1.weight"])


def test_missing_unexpected_and_misshapen_tensors_are_named(tiny, tmp_path):
    state = tiny.model.state_dict()

    def load(changed: dict, name: str = "file.pt", config: StyleGAN2Config = TINY):
        torch.save({"g_ema": changed}, tmp_path / name)
        return stylegan2.build("stylegan2-cat", weights=str(tmp_path / name), config=config)

    with pytest.raises(zoo.ZooError, match=r"1 tensors missing \['convs.1.noise.weight'\], 0 unexpected"):
        load({k: v for k, v in state.items() if k != "convs.1.noise.weight"})
    with pytest.raises(zoo.ZooError, match=r"0 tensors missing \[\], 1 unexpected \['extra.weight'\]"):
        load(state | {"extra.weight": torch.zeros(1)})
    with pytest.raises(zoo.ZooError, match=r"'style.1.weight' is \(32, 31\) in the file and \(32, 32\) in the model"):
        load(state | {"style.1.weight": torch.zeros(32, 31)})
    with pytest.raises(zoo.ZooError, match=r"do not fit stylegan2-cat \(16 px\).*the file is a 32 px generator"):
        load(state, config=dataclasses.replace(TINY, size=16))
    with pytest.raises(zoo.ZooError, match=r"tensor 'input.input' holds \d+ NaN"):
        load(state | {"input.input": torch.full_like(state["input.input"], float("nan"))})


def test_a_checkpoint_holding_code_or_no_generator_is_refused_unread(tiny, tmp_path):
    marker = tmp_path / "ran"

    class Payload:  # what unpickling it would do: run code
        def __reduce__(self):
            return (open, (str(marker), "w"))

    crafted = tmp_path / "crafted.pt"
    torch.save({"g_ema": tiny.model.state_dict(), "x": Payload()}, crafted)
    with pytest.raises(zoo.ZooError, match="holds objects other than tensors"):
        stylegan2.build("stylegan2-cat", weights=str(crafted), config=TINY)
    assert not marker.exists()
    other = tmp_path / "other.pt"
    torch.save({"generator": tiny.model.state_dict(), "step": 3}, other)
    with pytest.raises(zoo.ZooError, match=r"not a StyleGAN2 checkpoint in rosinality's layout.*'generator', 'step'"):
        stylegan2.build("stylegan2-cat", weights=str(other), config=TINY)


def test_pretrained_weights_fail_fast_offline_or_load_from_the_download_cache(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(zoo.ZooError, match=r"stylegan2-cat: pretrained weights are a download \(https://.*"
                                           r"stylegan2-cat-config-f.pt\).*weights=.*pretrained=False"):
        zoo.load("stylegan2-cat")
    assert time.perf_counter() - start < 2
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    (tmp_path / "checkpoints").mkdir()
    torch.save({"g_ema": tiny.model.state_dict()}, tmp_path / "checkpoints" / "stylegan2-cat-config-f.pt")
    cached = stylegan2.build("stylegan2-cat", config=TINY)
    assert cached.pretrained and torch.equal(cached.model.input.input, tiny.model.input.input)


def test_one_mining_batch_with_two_encoders(tiny, mined):
    encoders, result = mined
    assert result.counted == [[0, 4]] and result.settings.layers["stylegan2-cat"] == tiny.layers
    for encoder in encoders:
        table = result.similarity(encoder.name)
        assert table.shape == (TINY_UNITS, sum(result.settings.units[encoder.name]))
        assert torch.isfinite(table).any()


def test_one_inversion_and_one_edit_step_move_w_plus(tiny, mined):
    target = tiny.generate(tiny.sample_latents(1, seed=9)).detach().clamp(0, 1)
    start = tiny.search_latents(tiny.sample_latents(1, seed=0))
    result = invert(tiny, target, None, steps=1, restarts=1, progress=False, seed=0)
    assert result.z.shape == (1, 8 * 32) and len(result.history) == 2 and torch.isfinite(result.loss).all()
    assert result.history[1] < result.history[0] and not torch.equal(result.z, start)
    dictionary = build_dictionary(mined[1], k=1)
    edited = edit(tiny, result.z, shift(0.25, 0), dictionary, units="all", steps=1, progress=False)
    assert edited.z.shape == (1, 8 * 32) and not torch.equal(edited.z, edited.z_start)


def test_the_lsun_cat_parameter_file_selects_the_generator_with_declared_parameters():
    from pathlib import Path

    from rosetta_lite.book.batch import chapter_jobs, chapter_notebooks, load_params

    params = load_params(Path(__file__).resolve().parents[1] / "params" / "stylegan2-cat.yaml")
    jobs = {notebook.stem: values for notebook, values in chapter_jobs(params, chapter_notebooks())}  # raises if not
    mining = jobs["02_correlation"]
    assert mining["zoo"] == "full" and mining["generator_name"] == "stylegan2-cat" and mining["grid"] == 56
    stylegan2.StyleOptions(truncation=mining["truncation"], layers=mining["gan_layers"]).check()
    assert all(jobs[stem]["generator_name"] == "stylegan2-cat" for stem in jobs if stem[:2] in ("03", "04", "05", "06"))


def test_dino_vitb8_is_a_full_encoder_with_a_28_by_28_token_grid():
    member = zoo.load("dino-vitb8", pretrained=False)
    assert member.kind == "encoder" and member.scale == "full" and len(member.layers) == 12
    maps = record_encoder(member, torch.rand(1, 3, 64, 64), [member.layers[0], member.layers[-1]])
    assert {tuple(m.shape) for m in maps.values()} == {(1, 3072, 28, 28)}
    with pytest.raises(zoo.ZooError, match=r"vit_base_patch8_224.dino is not in the Hugging Face cache"):
        zoo.load("dino-vitb8")
