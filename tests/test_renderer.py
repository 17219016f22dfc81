"""The lite renderer: its latent is the world's scene description, its decoder learns from the world's masks."""

import pytest
import torch

from rosetta_lite.capture import Trace
from rosetta_lite.train.renderer import renderer_loss
from rosetta_lite.world import SHAPES, ShapesWorld, WorldConfig
from rosetta_lite.zoo.renderer_arch import RENDERER_LAYERS, Z_DIM, SceneRenderer, describe, scene_codes


def test_latents_describe_the_worlds_distribution():
    codes = describe(torch.randn(6000, Z_DIM, generator=torch.Generator().manual_seed(0)))
    cfg = WorldConfig()
    assert codes["horizon"].min() >= 0.35 and codes["horizon"].max() <= 0.75
    assert codes["radius"].min() >= cfg.min_radius and codes["radius"].max() <= cfg.max_radius
    assert (codes["cx"] >= 0.5 * codes["radius"]).all() and (codes["cx"] <= 1 - 0.5 * codes["radius"]).all()
    for name in ("sky", "ground", "shape", "colour"):
        code = codes[name].detach()  # one-hot up to rounding (the softmax is added and taken away)
        assert torch.allclose(code, code.round(), atol=1e-6) and (code.round().sum(-1) == 1).all()
    # argmax of iid normals is uniform, like the world's picks: every shape near 1/6
    frequency = codes["shape"].flatten(0, 1).mean(0)
    assert frequency.shape == (len(SHAPES),) and (frequency - 1 / 6).abs().max() < 0.02
    # one to three objects, equally often: slot 0 always, slot 1 two times in three, slot 2 one in three
    present = codes["present"].mean(0)
    assert present[0] == 1 and abs(present[1] - 2 / 3) < 0.02 and abs(present[2] - 1 / 3) < 0.02


def test_codes_pass_gradients_straight_through():
    z = torch.randn(4, Z_DIM, requires_grad=True)
    codes = describe(z)
    (codes["shape"][..., 1].sum() + codes["cx"].sum()).backward()
    shape_logits = z.grad[:, 12:18]
    assert shape_logits.abs().sum() > 0 and z.grad[:, 12 + 14].abs().min() > 0


def test_world_scene_codes_match_what_the_world_drew():
    batch = ShapesWorld(32).batch(16, seed=3)
    codes = scene_codes(batch.scene)
    assert (codes["present"].sum(1) == batch.scene["count"]).all()
    # every visible object pixel lies inside its slot's whole shape; absent slots are empty
    assert (batch.object_masks <= batch.slot_masks).all()
    assert (batch.slot_masks.flatten(2).any(2) == codes["present"].bool()).all()
    with pytest.raises(ValueError, match=r"latents are \(B, 63\)"):
        describe(torch.randn(2, 10))


def test_renderer_draws_maps_at_four_resolutions():
    renderer = SceneRenderer().eval()
    with torch.no_grad(), Trace(renderer, list(RENDERER_LAYERS)) as trace:
        images = renderer(torch.randn(3, Z_DIM))
    assert images.shape == (3, 3, 32, 32) and 0 <= images.min() and images.max() <= 1
    assert [trace[name].shape[-1] for name in RENDERER_LAYERS] == [4, 8, 16, 32]


def test_renderer_loss_teaches_the_slots_masks():
    torch.manual_seed(0)
    renderer = SceneRenderer()
    batch = ShapesWorld(32).batch(8, seed=1000)
    optimiser = torch.optim.Adam(renderer.parameters(), lr=3e-3)
    first = renderer_loss(renderer, batch)
    for _ in range(30):
        out = renderer_loss(renderer, batch)
        optimiser.zero_grad()
        out["loss"].backward()
        optimiser.step()
    assert out["mask"] < 0.7 * first["mask"] and out["pixel"] < first["pixel"]


def test_reader_loss_matches_slots_in_any_order():
    from rosetta_lite.train.renderer import reader_loss
    from rosetta_lite.zoo.renderer_arch import SceneReader

    torch.manual_seed(0)
    reader = SceneReader().eval()
    batch = ShapesWorld(32).batch(16, seed=5)
    two = batch.scene["count"] >= 2
    swapped = dict(batch.scene)
    for key in ("shape", "colour", "cx", "cy", "radius"):
        value = batch.scene[key].clone()
        value[two] = value[two][:, [1, 0, 2]]
        swapped[key] = value
    with torch.no_grad():
        a = reader_loss(reader, batch)["loss"]
        b = reader_loss(reader, type(batch)(**{**batch.__dict__, "scene": swapped}))["loss"]
        swapped["count"] = torch.ones_like(batch.scene["count"])  # fewer objects: a different loss
        c = reader_loss(reader, type(batch)(**{**batch.__dict__, "scene": swapped}))["loss"]
    assert torch.allclose(a, b) and not torch.allclose(a, c)


def test_reader_latents_keep_the_readers_choices():
    from rosetta_lite.zoo.renderer_arch import SceneReader, latent_layout, reader_latents

    out = SceneReader()(ShapesWorld(32).batch(4, seed=1).images)
    codes, layout = describe(reader_latents(out)), latent_layout()
    assert (codes["shape"][:, 1].argmax(-1) == out[:, layout["shape"][1]].argmax(-1)).all()
    assert torch.allclose(codes["horizon"], 0.35 + 0.4 * torch.sigmoid(out[:, 0]).clamp(1e-3, 1 - 1e-3), atol=1e-5)


def test_renderer_recipe_resumes_to_the_same_weights(tmp_path):
    from rosetta_lite.train.recipes import train

    options = dict(steps=4, seed=1000, progress=False, batch_size=4, checkpoint_every=1)
    train("lite-renderer", tmp_path / "split", stop_after=2, **options)
    split = train("lite-renderer", tmp_path / "split", **options)
    whole = train("lite-renderer", tmp_path / "whole", **options)
    from safetensors.torch import load_file

    a, b = load_file(split["weights"]), load_file(whole["weights"])
    assert split["resumed_from"] == 2 and a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_sampled_latents_keep_their_scenes_away_from_a_flip():
    renderer = SceneRenderer().eval()
    z = renderer.sample_latents(64, torch.Generator().manual_seed(3))
    plain = torch.randn(64, Z_DIM, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.equal(renderer(z), renderer(plain))  # the same scenes: every argmax kept, exactly one-hot
    codes = z[:, 1:12]
    assert set(codes.unique().tolist()) == {-1.0, 1.0} and torch.equal(z[:, 0], plain[:, 0])
    step = z + 0.1 * torch.randn(z.shape, generator=torch.Generator().manual_seed(4))  # an optimiser's small move
    assert all(torch.equal(describe(step)[k], describe(z)[k]) for k in ("sky", "ground", "present", "shape", "colour"))


def test_a_textured_renderer_takes_each_objects_fill_in_its_latent(tmp_path):
    from safetensors.torch import save_file

    from rosetta_lite.train.renderer import reader_loss
    from rosetta_lite.world import FILLS, world_settings
    from rosetta_lite.zoo.lite import generator_model
    from rosetta_lite.zoo.renderer_arch import SLOTS, describe_scene, latent_fills, latent_layout

    renderer = SceneRenderer(fills=len(FILLS)).eval()
    assert renderer.z_dim == Z_DIM + SLOTS * len(FILLS) and renderer.world == world_settings("textured")
    z = renderer.sample_latents(64, torch.Generator().manual_seed(0))
    fill = latent_layout(len(FILLS))["fill"][1]
    assert sorted(z[:, fill].unique().tolist()) == [-1.0, 1.0]  # snapped, as every code
    scene = describe_scene(z)
    assert torch.equal(scene["fill"][:, 1], z[:, fill].argmax(-1)) and set(scene["fill"].flatten().tolist()) == {
        0, 1, 2, 3, 4}
    truth = ShapesWorld(**renderer.world).render_scene(scene)
    assert "fill:checks" in truth.masks and renderer(z).shape == (64, 3, 32, 32)
    batch = ShapesWorld(**renderer.world).batch(4, seed=1000)
    assert renderer_loss(renderer, batch)["loss"].isfinite()
    assert reader_loss(renderer.reader, batch, fills=len(FILLS))["loss"].isfinite()
    save_file(renderer.state_dict(), str(tmp_path / "r.safetensors"))
    assert generator_model("lite-renderer", tmp_path / "r.safetensors").fills == len(FILLS)
    with pytest.raises(ValueError, match="with fills, got width 70"):
        latent_fills(70)
    with pytest.raises(ValueError, match="fills is 1"):
        SceneRenderer(fills=3)
