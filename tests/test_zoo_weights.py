"""The shipped lite zoo: files, checksums, and the quality gates re-measured on held-out images."""

import functools

import pytest
import torch

from rosetta_lite import zoo
from rosetta_lite.train.gan_quality import generator_quality
from rosetta_lite.train.recipes import GATES, gate_results
from rosetta_lite.zoo import lite_arch
from rosetta_lite.zoo.weights import WEIGHTS_DIR, read_manifest, sha256

MANIFEST = read_manifest()["members"]
SHIPPED = sorted(MANIFEST)

# Gates the shipped weights do not meet yet (their issues stay open). Strict: a member that
# starts passing makes its test fail until it is taken off this list.
NOT_MET = {("lite-vit-mae", "shapes"), ("lite-vit-mae", "training"),
           ("lite-gan", "precision_ratio"), ("lite-gan", "recall_ratio"),
           ("lite-gan", "class_frequency_gap_max")}


def test_every_lite_member_is_shipped_within_the_size_budget():
    assert set(SHIPPED) >= set(zoo.names("lite", "encoder"))
    sizes = {name: (WEIGHTS_DIR / entry["file"]).stat().st_size for name, entry in MANIFEST.items()}
    assert max(sizes.values()) <= 10 * 2**20 and sum(sizes.values()) <= 40 * 2**20
    for name, entry in MANIFEST.items():
        assert sha256(WEIGHTS_DIR / entry["file"]) == entry["sha256"]
        assert entry["recipe"] == f"python -m rosetta_lite train {name}" and entry["seed"] >= 0 and entry["quality"]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_members_load_offline(name):
    member = zoo.load(name)
    assert member.pretrained and member.quality == MANIFEST[name]["quality"]
    x = torch.rand(2, 3, 32, 32)
    out = member.generate(member.sample_latents(2)) if member.is_generator else member.encode(x)
    assert torch.isfinite(out).all()


def _measured(name: str) -> dict:
    """The figures of the member's gates, measured on the shipped weights (fewer scenes than the install)."""
    from rosetta_lite.train import quality as ev

    if name in ("lite-gan", "lite-renderer"):  # 500 samples (the install measures 2,000): the same gates, within CI's time
        return generator_quality(name, WEIGHTS_DIR / MANIFEST[name]["file"],
                                 WEIGHTS_DIR / MANIFEST["lite-resnet-sup"]["file"], n=500)
    model = zoo.load(name).model
    figures = ev.shape_probes(model, name, init_seed=MANIFEST[name]["seed"], n_train=2000, n_test=1000)
    if name == "lite-resnet-sup":
        figures["accuracy"] = ev.classification_accuracy(model, n=1000)
    if name == "lite-clip":
        tokenizer = lite_arch.clip_tokenizer()
        figures["zero_shot"] = ev.zero_shot_accuracy(model, tokenizer, n=1000)
        figures["retrieval_top5_text_to_image"] = ev.retrieval_top_k(model, tokenizer, n=500)["text_to_image"]
    if name == "lite-vit-mae":  # the decoder is not shipped: its reconstruction is the install's figure
        figures["mae_psnr_gain"] = MANIFEST[name]["quality"]["mae_psnr_masked"] - MANIFEST[name]["quality"]["mae_psnr_mean_colour"]
    return figures


@functools.cache
def measured(name: str) -> dict:
    return _measured(name)


GATE_CASES = [pytest.param(name, gate, marks=pytest.mark.xfail(strict=True, reason="gate not met yet"))
              if (name, gate) in NOT_MET else (name, gate)
              for name in SHIPPED for gate in GATES[name]]


@pytest.mark.parametrize("name, gate", GATE_CASES)
def test_quality_gate(name, gate):
    assert gate_results(name, measured(name))[gate], (GATES[name][gate], measured(name))


def test_zoo_table_shows_every_member_and_how_it_was_timed():
    from rosetta_lite.viz import zoo_table

    table = zoo_table("lite")
    assert set(table.index) == set(SHIPPED)
    for name, entry in MANIFEST.items():
        shown = str(table.loc[name, "train s"])
        assert shown.startswith(str(entry["train_seconds"]))
        assert ("train_note" in entry) == ("(" in shown), shown
