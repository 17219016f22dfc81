"""Smoke tests of the lite-zoo encoder recipes and gate measurements (CPU, seconds)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from rosetta_lite.device import native_bf16
from rosetta_lite.train import augment, checkpoints
from rosetta_lite.zoo import lite_arch

torch.set_num_threads(1)


def _tiny(member, tmp_path, **kw):
    from rosetta_lite.train.recipes import train

    return train(member, tmp_path, progress=False, batch_size=8, **kw)


#: the encoders' recipes, and the options that differ from them
RECIPES = {
    "lite-resnet-sup": {},
    "lite-resnet-dino": {},  # SimCLR, in bf16 where the CPU has it
    "lite-resnet-dino/dino": {"method": "dino"},
    "lite-vit-dino": {},
    "lite-vit-mae": {},
    "lite-clip": {},
}


@pytest.mark.parametrize("name", list(RECIPES))
def test_recipe_runs_resumes_and_saves(name, tmp_path):
    member = name.split("/")[0]
    first = _tiny(member, tmp_path, steps=3, checkpoint_every=1, stop_after=2, **RECIPES[name])
    assert not first["done"] and first["step"] == 2
    assert (tmp_path / f"{member}.ckpt.pt").exists()
    assert not (tmp_path / f"{member}.safetensors").exists()
    second = _tiny(member, tmp_path, steps=3, checkpoint_every=1, **RECIPES[name])
    assert second["resumed_from"] == 2 and second["steps_run"] == 1 and second["done"]
    wfile = tmp_path / f"{member}.safetensors"
    assert wfile.exists() and wfile.stat().st_size < 10 * 2**20
    assert (tmp_path / f"{member}.json").exists()
    # the saved weights load into the zoo's untrained architecture
    net = checkpoints.load_weights(lite_arch.build_member(member), wfile)
    assert not list(tmp_path.glob("*.tmp"))
    with torch.no_grad():
        x = lite_arch.normalize(torch.rand(2, 3, 32, 32), member)
        out = net.encode_image(x) if member == "lite-clip" else net(x)
    assert torch.isfinite(out).all()


def test_resume_matches_uninterrupted_run(tmp_path):
    from rosetta_lite.train.recipes import train

    a, b = tmp_path / "a", tmp_path / "b"
    train("lite-resnet-sup", a, steps=3, progress=False, batch_size=8, checkpoint_every=10)
    train("lite-resnet-sup", b, steps=3, progress=False, batch_size=8, checkpoint_every=1, stop_after=1)
    train("lite-resnet-sup", b, steps=3, progress=False, batch_size=8, checkpoint_every=1)
    from safetensors.torch import load_file

    wa = load_file(str(a / "lite-resnet-sup.safetensors"))
    wb = load_file(str(b / "lite-resnet-sup.safetensors"))
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-5, atol=1e-6)


def test_checkpoint_mismatch_and_seed_checks(tmp_path):
    from rosetta_lite.train.recipes import train

    with pytest.raises(ValueError, match="seeds must be"):
        train("lite-resnet-sup", tmp_path, steps=2, seed=7, progress=False, batch_size=8)
    train("lite-resnet-sup", tmp_path, steps=2, progress=False, batch_size=8, stop_after=1)
    with pytest.raises(ValueError, match="resume=False"):
        train("lite-resnet-sup", tmp_path, steps=5, progress=False, batch_size=8)
    with pytest.raises(ValueError, match=r"lite-resnet-sup's recipe has no option \['batchsize'\]"):
        train("lite-resnet-sup", tmp_path, steps=2, progress=False, batchsize=8)


def test_atomic_save_leaves_old_file_on_failure(tmp_path):
    path = tmp_path / "c.pt"
    checkpoints.save_checkpoint({"x": 1}, path)

    class Boom:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(Exception):
        checkpoints.save_checkpoint({"x": Boom()}, path)
    assert checkpoints.load_checkpoint(path) == {"x": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_weights_are_ordinary_files_and_a_full_disk_is_one_clear_error(tmp_path, monkeypatch):
    import os

    import safetensors.torch

    path = tmp_path / "w.safetensors"
    checkpoints.save_weights(torch.nn.Linear(2, 2), path)
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # 0644 under the usual umask, like the JSON beside it
    before = path.read_bytes()

    def full(*args, **kwargs):
        raise safetensors.SafetensorError("Error while serializing: IoError(No space left on device (os error 28))")

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    with pytest.raises(RuntimeError, match="no space left on the device; the previous w.safetensors .* is kept"):
        checkpoints.save_weights(torch.nn.Linear(2, 2), path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]


def test_bf16_precision_where_native_and_bad_precision_named(tmp_path):
    from safetensors import safe_open

    from rosetta_lite.train.recipes import train

    with pytest.raises(ValueError, match="precision must be 'fp32' or 'bf16', got 'fp16'"):
        train("lite-resnet-sup", tmp_path / "bad", steps=1, progress=False, batch_size=8, precision="fp16")
    assert not (tmp_path / "bad" / "lite-resnet-sup.ckpt.pt").exists()
    result = train("lite-resnet-sup", tmp_path, steps=2, progress=False, batch_size=8, precision="bf16")
    native = native_bf16(torch.device("cpu"))
    assert result["config"]["precision"] == ("bf16" if native else "fp32")
    with safe_open(result["weights"], "pt") as f:
        assert f.metadata()["precision"] == result["config"]["precision"]
        conv = f.get_tensor("conv1.weight")
    assert conv.dtype == torch.float32 and conv.is_contiguous()  # weights stay fp32, plain layout


def test_nt_xent_stays_fp32_under_autocast():
    from rosetta_lite.train.selfsup import nt_xent

    gen = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(32, 16, generator=gen), torch.randn(32, 16, generator=gen)
    expected = nt_xent(z1, z2, 0.1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = nt_xent(z1, z2, 0.1)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected)


def test_augment_keeps_shape_range_and_is_seeded():
    x = torch.rand(4, 3, 32, 32)
    a = augment.augment(x, torch.Generator().manual_seed(0), colour=0.8, grey=0.2)
    b = augment.augment(x, torch.Generator().manual_seed(0), colour=0.8, grey=0.2)
    assert a.shape == x.shape and a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, b)
    same = augment.augment(x, torch.Generator().manual_seed(0), scale=(1.0, 1.0), flip=False)
    torch.testing.assert_close(same, x, atol=1e-5, rtol=0)


def test_augment_posterize_keeps_four_levels_and_the_random_stream():
    x = torch.rand(4, 3, 32, 32)
    plain = augment.augment(x, torch.Generator().manual_seed(0), colour=0.8, grey=0.2)
    two_bits = augment.augment(x, torch.Generator().manual_seed(0), colour=0.8, grey=0.2, posterize=2)
    levels = two_bits * 3
    torch.testing.assert_close(levels, levels.round(), atol=1e-5, rtol=0)  # 0, 1/3, 2/3, 1 only
    # the same views, only rounded: posterize draws nothing from the generator
    assert (two_bits - plain).abs().max() <= 1 / 6 + 1e-6
    for bad in (9, -1, 2.5):
        with pytest.raises(ValueError, match="1 to 8 bits"):
            augment.augment(x, torch.Generator().manual_seed(0), posterize=bad)


def test_largest_shape_swaps_name_every_other_shape():
    from rosetta_lite.train.clip import largest_shape_swaps
    from rosetta_lite.world import SHAPES, ShapesWorld

    batch = ShapesWorld(32).batch(6, seed=3)
    swaps = largest_shape_swaps(batch)
    assert len(swaps) == len(SHAPES) - 1 and all(len(column) == 6 for column in swaps)
    for i, (caption, objects) in enumerate(zip(batch.captions, batch.objects)):
        largest = max(objects, key=lambda o: o["pixels"])
        phrase = f"a {largest['size']} {largest['colour']} "
        named = {column[i].split(phrase, 1)[1].split()[0].rstrip(",") for column in swaps}
        assert named == set(SHAPES) - {largest["shape"]}, caption
        assert all(column[i] != caption for column in swaps)


def test_main_object_captions_name_only_the_largest_object():
    from rosetta_lite.train.clip import main_object_captions
    from rosetta_lite.world import ShapesWorld

    batch = ShapesWorld(32).batch(64, seed=3)
    cut = main_object_captions(batch, torch.Generator().manual_seed(0), share=0.5)
    changed = 0
    for before, after, objects, kept in zip(batch.captions, cut.captions, batch.objects, cut.objects):
        scene = before[before.rindex(" on "):]
        assert after.endswith(scene)
        if after != before:
            changed += 1
            largest = max(objects, key=lambda o: o["pixels"])
            assert kept == [largest] and after == f"a {largest['size']} {largest['colour']} {largest['shape']}{scene}"
        else:
            assert kept == objects
    assert 0 < changed < 64
    assert main_object_captions(batch, torch.Generator(), share=0.0).captions == batch.captions
    assert torch.equal(cut.images, batch.images) and torch.equal(cut.labels, batch.labels)


def test_architectures_layers_and_sizes():
    for member in lite_arch.MEMBERS:
        net = lite_arch.build_member(member)
        names = dict(net.named_modules())
        for layer in lite_arch.DEFAULT_LAYERS[member]:
            assert layer in names, (member, layer)
        size = sum(t.numel() * t.element_size() for t in net.state_dict().values())
        assert size < 10 * 2**20, (member, size)
    shapes = {}
    net = lite_arch.build_lite_resnet()
    [getattr(net, f"layer{i}").register_forward_hook(
        lambda m, i, o, k=i: shapes.__setitem__(k, o.shape[-1])) for i in range(1, 5)]
    net(torch.rand(1, 3, 32, 32))
    assert shapes == {1: 32, 2: 16, 3: 8, 4: 4}
    clip = lite_arch.build_lite_clip()
    assert clip.encode_image(torch.rand(2, 3, 32, 32)).shape == (2, lite_arch.CLIP_EMBED_DIM)
    tokens = lite_arch.clip_tokenizer()(["a small red circle on green ground under a grey sky"])
    assert tokens.shape == (1, lite_arch.CLIP_CONTEXT_LENGTH)


# ------------------------------------------------------------------- gate functions

def test_gate_functions_on_tiny_inputs():
    from rosetta_lite.train import quality as ev
    from rosetta_lite.train.mae import MaskedAutoencoder

    torch.manual_seed(0)
    sup = lite_arch.build_lite_resnet(6)
    acc = ev.classification_accuracy(sup, n=20, batch_size=10)
    assert 0.0 <= acc <= 1.0
    probe = ev.linear_probe_accuracy(lite_arch.build_lite_vit(), "lite-vit-dino", n_train=40,
                                     n_test=20, batch_size=20)
    assert 0.0 <= probe <= 1.0
    clip = lite_arch.build_lite_clip()
    tok = lite_arch.clip_tokenizer()
    zs = ev.zero_shot_accuracy(clip, tok, n=20, batch_size=10)
    assert 0.0 <= zs <= 1.0
    ret = ev.retrieval_top_k(clip, tok, n=20, group=10, k=5)
    assert set(ret) == {"text_to_image", "image_to_text"}
    assert all(0.0 <= v <= 1.0 for v in ret.values())
    psnr = ev.mae_psnr(MaskedAutoencoder(lite_arch.build_lite_vit()), n=8, batch_size=4)
    assert set(psnr) == {"psnr_masked", "psnr_mean_colour", "psnr_global_mean"}
    assert all(v > 0 for v in psnr.values())


def test_linear_probe_separable_and_random():
    from rosetta_lite.train.quality import fit_linear_probe

    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (300,), generator=g)
    x = torch.randn(300, 5, generator=g)
    x[:, 0] += 5 * y
    assert fit_linear_probe(x[:200], y[:200], x[200:], y[200:]) > 0.95
    noise = torch.randn(300, 5, generator=g)
    assert fit_linear_probe(noise[:200], y[:200], noise[200:], y[200:]) < 0.7


def test_probe_labels_split_a_textured_class_into_shape_and_fill():
    from rosetta_lite.train import quality as ev
    from rosetta_lite.world import FILLS, SHAPES, ShapesWorld, world_settings

    names = ShapesWorld(**world_settings("textured")).class_names
    shape, fill = ev.class_parts(names, "shape"), ev.class_parts(names, "fill")
    assert [f"{list(FILLS)[f]} {SHAPES[s]}" for s, f in zip(shape.tolist(), fill.tolist())] == list(names)
    plain = ShapesWorld().class_names
    assert torch.equal(ev.class_parts(plain, "shape"), ev.class_parts(plain, "class"))  # plain: class = shape
    assert set(ev.class_parts(plain, "fill").tolist()) == {list(FILLS).index("plain")}
    with pytest.raises(ValueError, match=r"label must be one of \['class', 'shape', 'fill'\]"):
        ev.class_parts(names, "colour")
    torch.manual_seed(0)
    net = lite_arch.build_lite_resnet(num_classes=0)
    figures = ev.shape_probes(net, "lite-resnet-dino", init_seed=3, n_train=60, n_test=30, **world_settings("textured"))
    assert {"fill_probe_one_object", "fill_probe_untrained_one_object"} <= set(figures)
    assert "fill_probe_one_object" not in ev.shape_probes(net, "lite-resnet-dino", init_seed=3, n_train=60, n_test=30)


def test_linear_probe_by_scene_splits_the_gate_probe():
    from rosetta_lite.train import quality as ev

    torch.manual_seed(0)
    net = lite_arch.build_lite_resnet(num_classes=0)
    table = ev.linear_probe_by_scene(net, "lite-resnet-dino", n_train=60, n_test=60, batch_size=30)
    probe = ev.linear_probe_accuracy(net, "lite-resnet-dino", n_train=60, n_test=60, batch_size=30)
    assert table.loc["all", "accuracy"] == pytest.approx(probe)  # the same probe, fitted once
    counts = table.loc[["1 object", "2 objects", "3 objects"]]
    assert counts["scenes"].sum() == table.loc["all", "scenes"] == 60
    weighted = (counts["scenes"] * counts["accuracy"].fillna(0)).sum() / 60
    assert weighted == pytest.approx(probe)
    ratios = table.loc[[name for name in table.index if name.startswith("second / largest")]]
    assert len(ratios) == len(ev.SIZE_RATIO_BINS) - 1
    assert ratios["scenes"].sum() == counts.loc[["2 objects", "3 objects"], "scenes"].sum()


def test_vit_stems_and_pools_keep_the_token_grid_and_the_parameters():
    x = torch.rand(2, 3, 32, 32)
    patch, conv = lite_arch.build_lite_vit(), lite_arch.build_lite_vit(stem="conv")
    assert patch.forward_features(x).shape == conv.forward_features(x).shape == (2, 65, lite_arch.VIT_DIM)
    assert {k for k in conv.state_dict() if not k.startswith("patch_embed")} == \
        {k for k in patch.state_dict() if not k.startswith("patch_embed")}
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in conv.patch_embed.modules())
    avg = lite_arch.build_lite_vit(pool="avg")
    avg.load_state_dict(patch.state_dict())  # the same parameters, another readout
    with torch.no_grad():
        tokens = patch.eval().forward_features(x)
        torch.testing.assert_close(avg.eval()(x), tokens[:, 1:].mean(1))
        torch.testing.assert_close(patch(x), tokens[:, 0])
    assert isinstance(lite_arch.build_member("lite-vit-dino").patch_embed.proj, torch.nn.Sequential)
    with pytest.raises(ValueError, match="stem must be one of"):
        lite_arch.build_lite_vit(stem="convolutional")
    with pytest.raises(ValueError, match="pool must be 'token'"):
        lite_arch.build_lite_vit(pool="mean")


def test_rearranged_pairs_share_the_objects_and_nothing_else(tmp_path):
    from rosetta_lite.train.selfsup import VIT_DINO, Views
    from rosetta_lite.world import ShapesWorld

    world = ShapesWorld()
    a, b = world.batch(16, seed=1000, start=32), world.rearranged(16, 1000, 32, layout_seed=5)
    for key in ("shape", "colour", "count"):
        assert torch.equal(a.scene[key], b.scene[key])
    for key in ("cx", "horizon", "sky"):
        assert not torch.equal(a.scene[key], b.scene[key])
    assert torch.equal(world.rearranged(16, 1000, 32, layout_seed=5).images, b.images)  # seeded
    with pytest.raises(ValueError, match="non-negative seeds"):
        world.rearranged(4, 1000, 0, layout_seed=-1)
    with pytest.raises(ValueError, match="pairs must be one of"):
        Views(pairs="shuffled")
    done = _tiny("lite-vit-dino", tmp_path, steps=2, views=Views(posterize=2, pairs="rearranged"))
    assert VIT_DINO.views.pairs == "crops"  # the member's recipe
    assert done["done"] and done["config"]["pairs"] == "rearranged"


def test_mae_norm_pix_targets_each_patch_standardised():
    from rosetta_lite.train.mae import MaskedAutoencoder

    torch.manual_seed(0)
    plain = MaskedAutoencoder(lite_arch.build_member("lite-vit-mae"))
    normed = MaskedAutoencoder(lite_arch.build_member("lite-vit-mae"), norm_pix=True)
    normed.load_state_dict(plain.state_dict())
    x = torch.rand(4, 3, 32, 32)
    losses = [m.loss(x, torch.Generator().manual_seed(1)) for m in (plain, normed)]
    assert all(torch.isfinite(v) for v in losses) and losses[0] != losses[1]


@pytest.mark.parametrize("stem", ["patch", "conv"])
def test_mae_encoder_never_sees_the_hidden_patches(stem):
    from rosetta_lite.train.mae import build_mae

    torch.manual_seed(0)
    mae = build_mae(stem=stem).eval()
    ids_keep, mask, _ = mae.random_masking(2, torch.Generator().manual_seed(0))
    x = torch.rand(2, 3, 32, 32)
    hidden = mask.bool().view(2, 1, 8, 8).repeat_interleave(4, 2).repeat_interleave(4, 3)
    other = torch.where(hidden, torch.rand(2, 3, 32, 32), x)  # the same visible pixels
    with torch.no_grad():
        torch.testing.assert_close(mae.encode_visible(x, ids_keep), mae.encode_visible(other, ids_keep))
        if stem == "patch":  # the patch projection's windows are the patches: blanking is a no-op
            enc = mae.encoder
            tokens = torch.gather(enc.patch_embed(x), 1, ids_keep[..., None].expand(-1, -1, enc.embed_dim))
            blanked = torch.gather(enc.patch_embed(mae.blank_hidden(x, ids_keep)), 1,
                                   ids_keep[..., None].expand(-1, -1, enc.embed_dim))
            torch.testing.assert_close(tokens, blanked)


def test_mae_recipe_options_train_and_reload(tmp_path):
    from rosetta_lite.train.mae import build_mae, load_mae

    done = _tiny("lite-vit-mae", tmp_path, steps=2, stem="conv", decoder_depth=3, decoder_dim=32)
    assert done["config"]["stem"] == "conv" and done["config"]["decoder"] == "dim 32, 3 blocks"
    mae = load_mae(tmp_path)  # the checkpoint's config rebuilds the same autoencoder
    assert len(mae.decoder_blocks) == 3 and mae.decoder_embed.out_features == 32
    with pytest.raises(ValueError, match="stem must be one of"):
        build_mae(stem="hybrid")
    with pytest.raises(ValueError, match="4 heads divide"):
        build_mae(decoder_dim=30)


def test_a_gate_passes_on_any_of_its_figures():
    from rosetta_lite.train.recipes import GATES, gate_results

    assert set(GATES["lite-resnet-dino"]["shapes"]) == {"probe", "probe_one_object"}
    one_object = {"probe": 0.80, "probe_one_object": 0.98, "probe_gain": 0.7}
    assert gate_results("lite-resnet-dino", one_object) == {"shapes": True, "training": True}
    assert gate_results("lite-resnet-dino", {"probe": 0.86}) == {"shapes": True, "training": False}
    assert gate_results("lite-resnet-dino", {"probe": 0.84, "probe_one_object": 0.96}) == \
        {"shapes": False, "training": False}
    assert all("training" in GATES[name] for name in lite_arch.MEMBERS)


def test_mae_masking_and_patchify():
    from rosetta_lite.train.mae import MaskedAutoencoder

    mae = MaskedAutoencoder(lite_arch.build_lite_vit())
    ids_keep, mask, restore = mae.random_masking(3, torch.Generator().manual_seed(0))
    assert ids_keep.shape == (3, 16) and mask.sum(1).tolist() == [48.0] * 3
    x = torch.rand(2, 3, 32, 32)
    patches = mae.patchify(x)
    assert patches.shape == (2, 64, 48)
    torch.testing.assert_close(patches[0, 1].view(4, 4, 3).permute(2, 0, 1), x[0, :, 0:4, 4:8])
    # visible patches come back exactly from reconstruct_images
    out = mae.reconstruct_images(x, torch.Generator().manual_seed(1))
    assert out.shape == x.shape


@pytest.mark.parametrize("device", ["gpu", "mps", "cuda"])
def test_training_device_is_checked_before_any_work(device, tmp_path):
    from rosetta_lite.train.recipes import train

    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    match = "sees no CUDA GPU" if device == "cuda" else "device must be 'cpu', 'cuda' or 'cuda:N'"
    with pytest.raises(ValueError, match=match):
        train("lite-resnet-sup", tmp_path, steps=2, progress=False, batch_size=8, device=device)
    with pytest.raises(ValueError, match=match):
        train("lite-gan", tmp_path, steps=2, progress=False, device=device)
    assert not list(tmp_path.glob("*.ckpt.pt"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_recipes_train_on_cuda_and_save_cpu_weights(tmp_path):
    from rosetta_lite.train.recipes import train
    from rosetta_lite.zoo.gan_arch import load_generator

    for member in ("lite-clip", "lite-vit-mae", "lite-resnet-dino"):
        result = _tiny(member, tmp_path, steps=2, device="cuda")
        assert result["done"] and torch.isfinite(torch.tensor(result["final_loss"]))
    # the vision-aided discriminator (on lite-clip's frozen tower) counts from step 1
    train("lite-gan", tmp_path / "gan", steps=2, progress=False, device="cuda", feature_start=1)
    g = load_generator(tmp_path / "gan" / "lite-gan.safetensors")
    assert next(g.parameters()).device.type == "cpu"


def test_shipped_self_supervised_resnet_knows_shapes_better_than_it_compares_sizes(tmp_path):
    """measure_quality reports the probe on one-object scenes beside the three-object probe."""
    import shutil

    from rosetta_lite.train.recipes import measure_quality
    from rosetta_lite.zoo.weights import WEIGHTS_DIR

    shutil.copy(WEIGHTS_DIR / "lite-resnet-dino.safetensors", tmp_path)
    figures = measure_quality("lite-resnet-dino", tmp_path)
    assert set(figures) == {"probe", "probe_one_object", "probe_untrained_one_object", "probe_gain"}
    assert figures["probe_one_object"] > figures["probe"] + 0.1
    assert figures["probe_gain"] == pytest.approx(figures["probe_one_object"] - figures["probe_untrained_one_object"],
                                                  abs=1e-3)


def test_training_benchmark_times_both_precisions_and_names_bad_members():
    from rosetta_lite.bench.training import bench_training, seconds_per_step

    with pytest.raises(ValueError, match="member must be one of"):
        seconds_per_step("lite-nope", "fp32")
    with pytest.raises(ValueError, match="steps and warmup must be at least 1"):
        seconds_per_step("lite-resnet-sup", "fp32", steps=0)
    (row,) = bench_training(["lite-vit-mae"], steps=1, repeats=1)
    assert row["batch_size"] == 128 and row["fp32_seconds_per_step"] > 0 and row["bf16_seconds_per_step"] > 0
    assert row["speed_up"] == pytest.approx(row["fp32_seconds_per_step"] / row["bf16_seconds_per_step"], rel=0.02)
    assert row["bf16_ran_as"] == ("bf16" if native_bf16(torch.device("cpu")) else "fp32")
    gan = seconds_per_step("lite-gan", "bf16", steps=1, warmup=1)  # the GAN steps its own two optimizers
    assert gan["batch_size"] == 64 and gan["seconds"] > 0 and gan["precision"] == row["bf16_ran_as"]


def test_clip_tokenizer_gives_open_clips_tokens():
    from open_clip.tokenizer import SimpleTokenizer

    from rosetta_lite.train.clip import largest_shape_swaps
    from rosetta_lite.world import ShapesWorld

    batch = ShapesWorld(32).batch(32, seed=1000)
    captions = list(batch.captions) + [c for column in largest_shape_swaps(batch) for c in column]
    # text the word cache must leave to open_clip: capitals, punctuation, doubled spaces,
    # accents, hyphens, an empty caption, and one longer than the context (truncated)
    captions += ["A  Red, circle!", "", "café au lait", "x-ray 12 cats", " a red circle", "a large red circle " * 10]
    reference = SimpleTokenizer(context_length=lite_arch.CLIP_CONTEXT_LENGTH)
    tokenizer = lite_arch.clip_tokenizer()
    assert torch.equal(tokenizer(captions), reference(captions))
    assert torch.equal(tokenizer(captions), reference(captions))  # again, from the cache
    assert torch.equal(tokenizer("a red circle"), reference("a red circle"))
    assert 0 < len(tokenizer.word_tokens) < 60  # the world's captions use a few dozen words


class _Planted:
    """Unpickling this would create a file: the code a crafted checkpoint could run."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_crafted_checkpoint_is_refused_unread(tmp_path):
    from rosetta_lite.train.recipes import train

    planted = tmp_path / "planted"
    recipe_checkpoint = checkpoints.checkpoint_path(tmp_path, "lite-resnet-sup")
    torch.save({"step": 1, "payload": _Planted(planted)}, recipe_checkpoint)
    with pytest.raises(ValueError, match="objects other than tensors and plain values, refused unread"):
        checkpoints.load_checkpoint(recipe_checkpoint)
    torch.save({"step": 1, "payload": _Planted(planted)}, checkpoints.checkpoint_path(tmp_path, "lite-gan"))
    with pytest.raises(ValueError, match="refused unread"):
        train("lite-gan", tmp_path, steps=1, batch=2, feature_member="", progress=False)
    assert not planted.exists()
    checkpoints.save_checkpoint({"step": 3, "log": [{"loss": 0.5}], "config": {"sizes": (1, 2)},
                                 "state": {"w": torch.ones(2)}}, recipe_checkpoint)
    assert checkpoints.load_checkpoint(recipe_checkpoint)["step"] == 3  # tensors and plain values load


def test_a_recipe_trains_on_a_named_world_and_resumes_only_on_it(tmp_path):
    from safetensors import safe_open

    from rosetta_lite.train.recipes import train
    from rosetta_lite.world import world_settings

    textured = world_settings("textured")
    result = train("lite-resnet-sup", tmp_path, steps=2, seed=1000, progress=False, world=textured)
    assert result["config"]["world"] == "textured" and result["config"]["arch"].endswith("num_classes=30)")
    with safe_open(result["weights"], "pt") as f:
        assert f.metadata()["world"] == "textured" and f.get_tensor("fc.weight").shape[0] == 30
    assert train("lite-resnet-dino", tmp_path, steps=1, seed=1000, progress=False,
                                  world=textured)["config"]["world"] == "textured"
    train("lite-resnet-sup", tmp_path / "half", steps=4, seed=1000, progress=False, world=textured, stop_after=2)
    with pytest.raises(ValueError, match="trained on the 'textured' world; asked for the 'plain'"):
        train("lite-resnet-sup", tmp_path / "half", steps=4, seed=1000, progress=False)


def test_train_takes_the_run_lock_of_its_folder(tmp_path, capsys, lock_holder):
    from rosetta_lite.cli import main
    from rosetta_lite.train.recipes import train_member

    with pytest.raises(RuntimeError, match=f"being written by process {lock_holder.pid}"):
        train_member("lite-resnet-sup", tmp_path, steps=1, progress=False)
    assert not list(tmp_path.glob("*.ckpt.pt"))
    with pytest.raises(SystemExit):
        main(["train", "lite-resnet-sup", "--out", "", "--steps", "1"])
    assert "argument --out: is empty" in capsys.readouterr().err


def test_train_all_on_the_textured_world_trains_every_member_a_few_steps(tmp_path, capsys, monkeypatch):
    """The one command a lent GPU runs (with --device cuda), here 3 steps a member on the CPU; the
    gates' measurement (minutes of probes) is recorded, not run."""
    import json

    from safetensors import safe_open

    from rosetta_lite.cli import main
    from rosetta_lite.train import recipes

    measured = []
    monkeypatch.setattr(recipes, "measure_quality",
                        lambda name, out_dir, seed, world: measured.append((name, world)) or {"probe": 0.5})
    assert main(["train", "--all", "--world", "textured", "--steps", "3", "--out", str(tmp_path), "--json"]) == 0
    reports = {r["member"]: r for r in json.loads(capsys.readouterr().out.splitlines()[-1])["members"]}
    assert list(reports) == [m for m in recipes.ORDER if m != "lite-gan"]
    assert measured == [(name, "textured") for name in reports]
    for name, report in reports.items():
        assert report["config"]["world"] == "textured" and report["quality"] == {"probe": 0.5}
        with safe_open(str(tmp_path / f"{name}.safetensors"), "pt") as f:
            assert f.metadata()["world"] == "textured"
    assert main(["train", "lite-gan", "--world", "textured", "--out", str(tmp_path)]) == 2
    assert "lite-gan trains on the plain world only" in capsys.readouterr().err
    assert main(["train", "lite-clip", "--world", "textured", "--install", "--out", str(tmp_path)]) == 2
    assert "cannot be installed yet" in capsys.readouterr().err


def test_textured_members_are_judged_on_their_own_world(tmp_path):
    from rosetta_lite.train import quality as ev
    from rosetta_lite.train.gan_quality import image_set_quality
    from rosetta_lite.train.recipes import train
    from rosetta_lite.world import ShapesWorld, world_settings
    from rosetta_lite.zoo.weights import verified_file

    textured = world_settings("textured")
    assert ev.shape_prompts("checks circle")[0] == "a small red checked circle"
    train("lite-resnet-sup", tmp_path, steps=1, seed=1000, progress=False, world=textured)
    images = ShapesWorld(**textured).batch(16, seed=9).images
    figures = image_set_quality(images, tmp_path / "lite-resnet-sup.safetensors", **textured)
    assert len(figures["class_frequency_world"]) == 30
    with pytest.raises(ValueError, match="classifies 6 classes, this world has 30"):
        image_set_quality(images, verified_file("lite-resnet-sup"), **textured)


@pytest.mark.parametrize("saved", [{"step": 3, "seed": 0}, torch.ones(2), {"modules": "x"}])
def test_a_checkpoint_missing_its_keys_is_named_not_a_traceback(tmp_path, saved, capsys):
    from rosetta_lite.cli import main

    torch.save(saved, checkpoints.checkpoint_path(tmp_path, "lite-resnet-sup"))
    assert main(["train", "lite-resnet-sup", "--steps", "2", "--out", str(tmp_path)]) != 0
    err = capsys.readouterr().err
    assert "is not a whole training checkpoint (it lacks [" in err and "delete it to train from the start" in err
    assert "Traceback" not in err
