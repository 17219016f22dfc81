import json
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import torch

from rosetta_lite import zoo
from rosetta_lite.capture import maps_to_rows, record_encoder, record_generator
from rosetta_lite.cli import main
from rosetta_lite.dictionary.rosetta import DictionaryError, RosettaDictionary, above_chance, build_dictionary
from rosetta_lite.dictionary.runs import save_dictionaries
from rosetta_lite.mining.loop import latents, mine
from rosetta_lite.mining.settings import ACCUMULATORS, CHECKPOINT, MiningResult


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
    got = reference_run.similarity(encoders[1].name)
    live = torch.isfinite(expected)
    assert (got[live] - expected[live]).abs().max() < 1e-5
    assert not torch.isnan(got).any()


def test_resume_after_interruption_gives_the_identical_result(members, reference_run, tmp_path, monkeypatch):
    import rosetta_lite.mining.loop as mining

    gan, encoders = members
    real, calls = mining.record_generator, []

    def killed_in_batch_three(*args):
        calls.append(1)
        if len(calls) == 3:  # batches 1, 2, then dies in batch 3 (planning probes through mining.plan)
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(mining, "record_generator", killed_in_batch_three)
    with pytest.raises(KeyboardInterrupt):
        mine(gan, encoders, images=48, batch_size=16, progress=False, out=tmp_path, checkpoint_every=1)
    assert MiningResult.load(tmp_path / CHECKPOINT).counted == [[0, 32]]
    monkeypatch.setattr(mining, "record_generator", real)
    resumed = mine(gan, encoders, images=48, batch_size=16, progress=False, out=tmp_path, checkpoint_every=1)
    for name in reference_run.pairs:
        assert torch.equal(resumed.similarity(name), reference_run.similarity(name))
    assert not (tmp_path / CHECKPOINT).exists()
    with pytest.raises(ValueError, match=r"holds another run \(images: 48 vs 64: there vs here\)"):
        mine(gan, encoders, images=64, batch_size=16, progress=False, out=tmp_path)


def test_shards_merge_into_the_single_run(members, reference_run):
    gan, encoders = members
    first = mine(gan, encoders, images=32, batch_size=16, progress=False)
    second = mine(gan, encoders, images=16, batch_size=16, start=32, progress=False)
    merged = first.merge(second)
    for name in reference_run.pairs:
        assert (merged.similarity(name) - reference_run.similarity(name)).abs().max() < 1e-9
    with pytest.raises(ValueError, match="overlap"):
        merged.merge(mine(gan, encoders, images=16, batch_size=16, start=16, progress=False))


def _same_tables(a, b):
    return all((a.similarity(n) - b.similarity(n)).abs().max() < 1e-9 for n in b.pairs)


def test_mining_into_a_merged_folder_counts_nothing_twice(members, reference_run, tmp_path):
    gan, encoders = members
    first = mine(gan, encoders, images=16, batch_size=16, progress=False)
    second = mine(gan, encoders, images=32, batch_size=16, start=16, progress=False)
    first.merge(second).save(tmp_path / ACCUMULATORS)
    resumed = mine(gan, encoders, images=48, batch_size=16, progress=False, out=tmp_path)
    name = encoders[0].name
    assert resumed.counted == [[0, 48]] and resumed.pairs[name].count == reference_run.pairs[name].count
    assert _same_tables(resumed, reference_run)


def test_a_merge_with_a_gap_reports_the_true_count_and_accepts_the_filling(members, reference_run, tmp_path):
    gan, encoders = members
    shard = {start: mine(gan, encoders, images=16, batch_size=16, start=start, progress=False) for start in (0, 16, 32)}
    gapped = shard[0].merge(shard[32])
    assert gapped.counted == [[0, 16], [32, 48]] and gapped.images_counted == 32
    gapped.save(tmp_path / ACCUMULATORS)
    with pytest.warns(UserWarning, match=r"counted 32 of the latents \[0, 48\); missing \[\[16, 32\]\]"):
        summary = save_dictionaries(MiningResult.load(tmp_path / ACCUMULATORS), tmp_path / "dict", k=1)
    assert summary["images"] == 32
    saved = RosettaDictionary.load(tmp_path / "dict").settings
    assert saved["images"] == 48 and saved["images_counted"] == 32  # the span, and what eval trust mines
    filled = MiningResult.load(tmp_path / ACCUMULATORS).merge(shard[16])
    assert filled.counted == [[0, 48]] and _same_tables(filled, reference_run)
    continued = mine(gan, encoders, images=48, batch_size=16, progress=False, out=tmp_path)  # mines the gap only
    assert continued.counted == [[0, 48]] and _same_tables(continued, reference_run)


def test_random_shards_kills_and_merge_orders_give_the_single_run(members, tmp_path, monkeypatch):
    """Property: any split of [0, 48) into shards, any kills and resumes, any merge order: one run's tables."""
    import random

    import rosetta_lite.mining.loop as mining

    gan, encoders = members
    single = mine(gan, encoders, images=48, batch_size=8, progress=False)  # float32 maps depend on the batch size
    real = mining.record_generator
    rng = random.Random(0)
    for trial in range(3):
        cuts = sorted(rng.sample([8, 16, 24, 32, 40], rng.randint(1, 3)))
        bounds = [0, *cuts, 48]
        shards = []
        for index, (a, b) in enumerate(zip(bounds, bounds[1:])):
            folder = tmp_path / f"t{trial}-s{index}"
            calls = []

            def dies_once(*args, calls=calls, at=rng.randint(2, 4)):
                calls.append(1)
                if len(calls) == at:
                    raise KeyboardInterrupt
                return real(*args)

            monkeypatch.setattr(mining, "record_generator", dies_once)
            try:
                mine(gan, encoders, images=b - a, start=a, batch_size=8, progress=False, out=folder,
                     checkpoint_every=1)
            except KeyboardInterrupt:
                pass
            monkeypatch.setattr(mining, "record_generator", real)
            shards.append(mine(gan, encoders, images=b - a, start=a, batch_size=8, progress=False, out=folder))
        rng.shuffle(shards)
        merged = shards[0]
        for other in shards[1:]:
            merged = merged.merge(other)
        assert merged.counted == [[0, 48]] and _same_tables(merged, single), (trial, bounds)


def test_dictionary_roundtrip_and_refusals(reference_run, tmp_path):
    d = build_dictionary(reference_run, k=2)
    assert d.rosetta_count() == sum(len(c.generator_units) for c in d.clusters)
    scores = [c.score for c in d.clusters]
    assert scores == sorted(scores, reverse=True)
    for cluster in d.clusters:
        assert set(cluster.members) == set(d.encoders)
    d.save(tmp_path)
    again = RosettaDictionary.load(tmp_path)
    assert again.summary() == d.summary() and torch.equal(again.similarity(d.encoders[0]), d.similarity(d.encoders[0]))
    data = json.loads((tmp_path / "dictionary.json").read_text())
    for broken, message in ((dict(data, buddies=None) | {"extra": 1}, r"the file does not match schema version "
                             r"\d+ \(unknown \['extra'\]\)"),
                            ({k: v for k, v in data.items() if k != "dead"}, r"missing \['dead'\]"),
                            (dict(data, clusters=[{"id": 0}]), r"cluster 0 does not match .*missing \['generator_units'")):
        (tmp_path / "dictionary.json").write_text(json.dumps(broken))
        with pytest.raises(DictionaryError, match=message):
            RosettaDictionary.load(tmp_path)
    data["schema_version"] = 99
    (tmp_path / "dictionary.json").write_text(json.dumps(data))
    with pytest.raises(DictionaryError, match="schema version 99"):
        RosettaDictionary.load(tmp_path)
    (tmp_path / "dictionary.json").write_text("{not json")
    with pytest.raises(DictionaryError, match="corrupt"):
        RosettaDictionary.load(tmp_path)
    with pytest.raises(DictionaryError, match="no dictionary"):
        RosettaDictionary.load(tmp_path / "nowhere")


def _pairs(d: RosettaDictionary) -> dict[str, list[tuple[int, int]]]:
    return {e: [(g, u) for g, u, _ in rows] for e, rows in d.buddies.items()}


def test_with_buddies_of_every_pair_gives_back_the_dictionary(reference_run):
    d = build_dictionary(reference_run, k=2, cluster_k=3)
    assert len(d.clusters) > 1  # else the comparison below says little
    same = d.with_buddies(_pairs(d), why="all kept")
    assert [asdict(c) for c in same.clusters] == [asdict(c) for c in d.clusters]
    assert same.buddies == d.buddies and same.settings == d.settings | {"why": "all kept"}
    # above the chance level of a control with no best buddies (-1): every pair passes
    no_pairs = replace(d, buddies={e: [] for e in d.encoders})
    assert [asdict(c) for c in above_chance(d, no_pairs).clusters] == [asdict(c) for c in d.clusters]


def test_dropping_an_encoders_pairs_drops_the_units_that_needed_them(reference_run):
    d = build_dictionary(reference_run, k=2)
    encoder, unit = d.encoders[0], d.rosetta_units()[0]
    pairs = _pairs(d)
    pairs[encoder] = [(g, u) for g, u in pairs[encoder] if g != unit]
    fewer = d.with_buddies(pairs)
    assert fewer.rosetta_units() == [u for u in d.rosetta_units() if u != unit]
    assert fewer.buddies[d.encoders[1]] == d.buddies[d.encoders[1]]
    assert all(row[0] != unit for row in fewer.buddies[encoder])
    assert d.with_buddies(pairs | {encoder: []}).clusters == []  # no pair with it: no unit is shared by all
    # the control's own level (quantile 0: its weakest pair) drops just the pairs at or below it
    strict = above_chance(d, d, quantile=0.0)
    for e, rows in d.buddies.items():
        weakest = min(row[2] for row in rows)
        assert strict.buddies[e] == [row for row in rows if row[2] > weakest]
        assert strict.settings["above_chance"]["levels"][e] == pytest.approx(weakest)
    with pytest.raises(ValueError, match=r"encoders \['lite-nowhere'\] are not in this dictionary"):
        d.with_buddies({"lite-nowhere": []})


def test_a_dictionary_loads_only_with_its_own_tensors(reference_run, tmp_path):
    d = build_dictionary(reference_run, k=2)
    d.save(tmp_path / "a")
    build_dictionary(reference_run, k=2, encoders=d.encoders[:1]).save(tmp_path / "b")  # other tables
    tensors = tmp_path / "a" / "dictionary.safetensors"
    original = tensors.read_bytes()
    damaged = bytearray(original)
    middle = len(damaged) // 2
    damaged[middle:middle + 64] = bytes(64)  # zeros inside the tables: still a readable file
    tensors.write_bytes(bytes(damaged))
    with pytest.raises(DictionaryError, match="not the tensors file dictionary.json was saved with"):
        RosettaDictionary.load(tmp_path / "a")
    tensors.write_bytes((tmp_path / "b" / "dictionary.safetensors").read_bytes())  # another run's
    with pytest.raises(DictionaryError, match="checksum"):
        RosettaDictionary.load(tmp_path / "a")
    tensors.write_bytes(original)
    data = json.loads((tmp_path / "a" / "dictionary.json").read_text())
    (tmp_path / "a" / "dictionary.json").write_text(json.dumps({k: v for k, v in data.items() if k != "tensors"}))
    assert RosettaDictionary.load(tmp_path / "a").summary() == d.summary()  # saved before checksums: loads
    data["clusters"][0]["generator_units"] = "17"
    (tmp_path / "a" / "dictionary.json").write_text(json.dumps(data))
    with pytest.raises(DictionaryError, match="cluster 0 must list whole-number units"):
        RosettaDictionary.load(tmp_path / "a")


def test_a_dictionary_section_of_the_wrong_kind_is_named(reference_run, tmp_path):
    build_dictionary(reference_run, k=2).save(tmp_path)
    data = json.loads((tmp_path / "dictionary.json").read_text())
    for key, value, said in (("clusters", 5, "'clusters' must be a JSON array, got int"),
                             ("models", 3, "'models' must be a JSON object, got int"),
                             ("buddies", [1], "'buddies' must be a JSON object, got list"),
                             ("dead", "x", "'dead' must be a JSON object, got str"),
                             ("settings", "x", "'settings' must be a JSON object, got str")):
        (tmp_path / "dictionary.json").write_text(json.dumps(dict(data, **{key: value})))
        with pytest.raises(DictionaryError, match=f"dictionary.json: {said}; mine it again"):
            RosettaDictionary.load(tmp_path)


def test_a_damaged_accumulator_file_is_named_with_what_it_lacks(reference_run, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    path = tmp_path / ACCUMULATORS
    reference_run.save(path)
    with safe_open(str(path), "pt") as handle:
        meta = handle.metadata()
    tensors = load_file(str(path))
    key = next(k for k in sorted(tensors) if k.startswith("pair/"))
    del tensors[key]
    save_file(tensors, str(path), metadata=meta)
    with pytest.raises(ValueError, match=rf"{path} is not a readable mining accumulator file \(it lacks '{key}'\); "
                                         "delete it and mine that run again"):
        MiningResult.load(path)
    path.write_bytes(b"half a file")
    with pytest.raises(ValueError, match="not a readable mining accumulator file .*; delete it and mine that run again"):
        MiningResult.load(path)


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


def test_merge_into_one_of_its_inputs_is_refused_before_anything_is_read(tmp_path, capsys):
    shard = tmp_path / "a"
    for out in (str(shard), f"{shard}/", str(tmp_path / "b" / ".." / "a")):
        assert main(["merge", str(shard), str(tmp_path / "b"), "--out", out]) == 2
        assert f"--out {out} is one of the folders being merged ({shard}); merge into a new folder" in \
            capsys.readouterr().err
    assert not shard.exists()  # nothing written


def test_precision_context_sets_autocast_and_restores_tf32():
    from rosetta_lite.device import precision_context

    before = torch.backends.cuda.matmul.allow_tf32
    with precision_context("bf16", "cpu"):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
        assert torch.backends.cuda.matmul.allow_tf32
        assert (torch.randn(4, 4) @ torch.randn(4, 4)).dtype == torch.bfloat16
    with precision_context("fp32", "cpu"):
        assert not torch.is_autocast_enabled("cpu") and not torch.backends.cuda.matmul.allow_tf32
    assert torch.backends.cuda.matmul.allow_tf32 == before
    with pytest.raises(ValueError, match=r"precision must be one of \['fp32', 'tf32', 'bf16', 'fp16'\], got 'fp8'"):
        with precision_context("fp8", "cpu"):
            pass


def test_half_precision_activations_keep_float64_statistics(members, reference_run):
    gan, encoders = members
    half = mine(gan, encoders, images=48, batch_size=16, progress=False, precision="bf16")
    for name in reference_run.pairs:
        got, exact = half.similarity(name), reference_run.similarity(name)
        assert got.dtype == torch.float64 and half.pairs[name].cross.dtype == torch.float64
        assert torch.isfinite(got).all() and 0 < (got - exact).abs().max() < 0.5  # bf16 maps: close, not exact
    with pytest.raises(ValueError, match="cannot merge runs mined with different settings"):
        half.merge(mine(gan, encoders, images=16, batch_size=16, start=48, progress=False))
    with pytest.raises(ValueError, match="precision must be one of"):
        mine(gan, encoders, images=16, batch_size=16, progress=False, precision="half")


def test_fingerprint_of_a_default_run_is_pinned(reference_run):
    # runs saved before similarity, quantile and precision existed were fingerprinted without them: a default
    # run must keep this digest, or every older checkpoint stops resuming and merging
    import dataclasses

    unrecorded = dataclasses.replace(reference_run.settings, weights=None)  # as saved before weights were recorded
    assert unrecorded.fingerprint() == "3950f7e5b60a55fa"
    assert unrecorded.fingerprint(with_range=False) == "39bff7f575ded532"
    # a run now records its models' weights: one with them differs from one without (refused, named)
    assert reference_run.settings.weights and reference_run.settings.fingerprint() != unrecorded.fingerprint()


def test_bench_mining_reports_errors_per_precision_and_stands_in_a_generator(monkeypatch):
    from rosetta_lite.bench import mining as bench_mining

    real = bench_mining.zoo_registry.names
    monkeypatch.setattr(bench_mining.zoo_registry, "names",
                        lambda scale=None, kind=None: [] if (scale, kind) == ("full", "generator") else real(scale, kind))
    gan, encoders, stand_in = bench_mining.bench_members("full-untrained", encoders=["resnet50"])
    assert stand_in == gan.name == real(None, "generator")[0] and not gan.pretrained
    monkeypatch.setattr(bench_mining, "peak_memory_mb", lambda *args: {"rss": 1.0})  # its own process; not here
    report = bench_mining.run("lite-untrained", images=16, batch_size=16, exact_images=16, rss_images=16, repeats=2,
                              precision="bf16", encoders=["lite-resnet-sup"])
    assert report["precision"] == "bf16" and report["device"] == "cpu" and "peak_gpu_memory_mb" not in report
    assert report["tables"] == "auto" and report["tables_placed_on"] == "device" and 0 < report["tables_gb"] < 0.1
    errors = report["max_abs_err_vs_float64_by_precision"]
    assert set(errors) == {"fp32", "bf16"} and errors["fp32"] < 1e-5 < errors["bf16"]
    assert len(report["all_times_s"]["mining"]) == 2 and report["mining_s"] == min(report["all_times_s"]["mining"])
    rounds = report["ratios_by_round"]["overhead"]["rounds"]
    assert len(rounds) == 2 and report["overhead_vs_limit"] == pytest.approx(sum(rounds) / 2, abs=2e-3)
    preparation = report["ratios_by_round"]["preparation"]
    assert len(preparation["rounds"]) == 2 and report["preparation_vs_matmul"] == preparation["median"] > 0
    assert len(report["all_times_s"]["preparation"]) == 2


def test_ratios_are_taken_within_rounds_and_distrusted_when_rounds_disagree():
    from rosetta_lite.bench.mining import round_ratios

    steady = round_ratios({"mining": [3.0, 6.0, 3.3], "statistics": [1.0, 2.0, 1.1], "matmul": [0.5, 1.0, 0.55],
                           "two_pass": [12.0, 24.0, 13.2]})  # round 2 twice as slow in every part
    assert steady["overhead"] == {"rounds": [2.0, 2.0, 2.0], "median": 2.0, "spread": 0.0, "trusted": True}
    assert steady["speedup"]["median"] == 4.0 and steady["speedup"]["trusted"]
    shaky = round_ratios({"mining": [3.0, 3.0, 3.0], "statistics": [1.0, 2.0, 1.0], "matmul": [0.5, 0.5, 0.5],
                          "two_pass": [12.0, 12.0, 12.0]})  # mining's own work hit by a slow spell
    assert shaky["overhead"]["rounds"] == [2.0, 4.0, 2.0] and not shaky["overhead"]["trusted"]
    assert not round_ratios({k: [1.0] for k in ("mining", "statistics", "matmul", "two_pass")})["speedup"]["trusted"]
    prepared = round_ratios({"mining": [3.0, 3.0], "statistics": [1.0, 1.0], "matmul": [0.5, 0.4],
                             "preparation": [0.3, 0.3], "two_pass": [12.0, 12.0]})
    assert prepared["preparation"]["rounds"] == [0.6, 0.75] and prepared["preparation"]["median"] == 0.675
    assert "preparation" not in steady


def test_a_mining_run_says_where_its_time_went(members):
    gan, encoders = members
    result = mine(gan, encoders, 8, batch_size=4, progress=False)
    seconds = result.seconds
    assert set(seconds) == {"models", "statistics"} and seconds["models"] > 0 and seconds["statistics"] > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_cuda_asked_for_without_a_gpu_is_a_clear_error(members):
    from rosetta_lite.bench import mining as bench_mining

    gan, encoders = members
    with pytest.raises(ValueError, match="torch sees no CUDA GPU"):
        mine(gan, encoders, images=16, batch_size=16, progress=False, device="cuda")
    with pytest.raises(ValueError, match="no CUDA GPU"):
        bench_mining.run("lite-untrained", device="cuda")


def test_host_tables_give_the_device_tables(members, reference_run, tmp_path):
    gan, encoders = members
    small = 1  # the narrowest chunks (64 columns): every table, the self table too, goes in several
    device = mine(gan, encoders, images=48, batch_size=16, progress=False, tables="device", chunk_bytes=small)
    host = mine(gan, encoders, images=48, batch_size=16, progress=False, tables="host", chunk_bytes=small,
                out=tmp_path, checkpoint_every=1)
    assert host.settings.extra["tables"] == "host" and device.settings.extra["tables"] == "device"
    assert host.self_pair.host_tables and host.self_pair.columns_per_chunk() < host.self_pair.n_b
    assert host.settings.fingerprint() == reference_run.settings.fingerprint()  # placement is not a setting
    for name in [*reference_run.pairs]:
        assert (host.similarity(name) - device.similarity(name)).abs().max() <= 1e-9
        assert (host.similarity(name) - reference_run.similarity(name)).abs().max() < 1e-5  # float32 rounding
    saved = MiningResult.load(tmp_path / ACCUMULATORS)
    for name in reference_run.pairs:
        assert torch.equal(saved.similarity(name), host.similarity(name))
    # shards mined with host tables merge into the single run (one chunk a product: the same float32 products)
    first = mine(gan, encoders, images=32, batch_size=16, progress=False, tables="host")
    second = mine(gan, encoders, images=16, batch_size=16, start=32, progress=False, tables="device")
    merged = first.merge(second)
    for name in reference_run.pairs:
        assert (merged.similarity(name) - reference_run.similarity(name)).abs().max() <= 1e-9


def test_tables_option_is_checked_and_auto_picks_the_host_when_the_gpu_is_short(members, monkeypatch, caplog):
    import logging

    import rosetta_lite.mining.plan as mining

    gan, encoders = members
    with pytest.raises(ValueError, match=r"tables must be one of \['auto', 'device', 'host'\], got 'gpu'"):
        mine(gan, encoders, images=16, batch_size=16, progress=False, tables="gpu")
    with pytest.raises(ValueError, match="tables='host' is for Pearson tables only"):
        mine(gan, encoders, images=16, batch_size=16, progress=False, tables="host", similarity="mi")
    with pytest.raises(ValueError, match="chunk_bytes must be a positive number of bytes, got 0"):
        mine(gan, encoders, images=16, batch_size=16, progress=False, chunk_bytes=0)
    assert mining.table_bytes({"gan": [11904], "vit": [3072] * 12}, "gan") == 8 * 11904 * (11904 + 36864)
    assert mining.choose_tables("auto", "cpu", 10**15) == "device"  # on the CPU both are host memory
    assert mining.choose_tables("host", "cpu", 1) == "host"
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (10 * 2**30, 80 * 2**30))
    assert mining.choose_tables("auto", "cuda", 4 * 2**30) == "device"  # 4 GiB of 10 free: fits
    with caplog.at_level(logging.INFO, logger="rosetta_lite.mining.plan"):
        assert mining.choose_tables("auto", "cuda", 6 * 2**30) == "host"  # over half the free memory
    assert "keeping them in host memory" in caplog.text and "6.44 GB" in caplog.text
    assert mining.choose_tables("auto", "cuda", 6 * 2**30, "mi") == "device"
    assert mining.choose_tables("device", "cuda", 6 * 2**30) == "device"  # asked for: kept


def test_cli_refuses_unknown_tables(capsys):
    with pytest.raises(SystemExit):
        main(["mine", "--tables", "gpu"])
    assert "invalid choice: 'gpu'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bench", "mining", "--tables", "gpu"])
    assert "invalid choice: 'gpu'" in capsys.readouterr().err


def test_one_writer_per_run_folder(members, tmp_path, lock_holder):
    import os
    import socket

    from rosetta_lite.files import LOCK_NAME, TMP_SUFFIX

    gan, encoders = members
    lock, host, holder = tmp_path / LOCK_NAME, socket.gethostname(), lock_holder
    with pytest.raises(RuntimeError, match=rf"being written by process {holder.pid} on {host}"):
        mine(gan, encoders, images=16, batch_size=16, progress=False, out=tmp_path)
    holder.kill()
    holder.wait()
    assert lock.exists()  # killed: its record stays, its flock went with it
    mine_tmp = tmp_path / f".accumulators.safetensors.abc{TMP_SUFFIX}"  # atomic_path's folder, killed mid-save
    mine_tmp.mkdir()
    (mine_tmp / ".tmpAb12Cd").write_bytes(b"safetensors' own scratch file")
    old_tmp = tmp_path / f".dictionary.json.xyz{TMP_SUFFIX}"  # the file form of earlier versions
    old_tmp.write_bytes(b"left by a killed write")
    users = tmp_path / ".notes.tmp"
    users.write_text("the user's own file")
    with pytest.warns(UserWarning, match=rf"taking over the lock of process {holder.pid}, which is gone"):
        mine(gan, encoders, images=16, batch_size=16, progress=False, out=tmp_path)
    assert not lock.exists() and not mine_tmp.exists() and not old_tmp.exists()
    assert users.read_text() == "the user's own file"
    assert os.listdir(tmp_path)  # the run's files


def test_atomic_writes_keep_every_scratch_file_in_their_own_folder(tmp_path):
    from safetensors.torch import save_file

    from rosetta_lite.files import TMP_SUFFIX, atomic_path

    target = tmp_path / "t.safetensors"
    with atomic_path(target) as tmp:
        assert Path(tmp).name == target.name and Path(tmp).parent.name.endswith(TMP_SUFFIX)
        save_file({"a": torch.zeros(3)}, tmp)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.safetensors"]
    assert oct(target.stat().st_mode & 0o777) != oct(0o600)  # an ordinary file, not safetensors' private one
    with pytest.raises(RuntimeError, match="boom"), atomic_path(target) as tmp:
        Path(tmp).write_text("half")
        (Path(tmp).parent / ".tmpXYZ123").write_text("a writer's scratch")
        raise RuntimeError("boom")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.safetensors"]


def _race(folder, barrier, results):
    import os
    import time

    from rosetta_lite.files import run_lock

    barrier.wait()
    try:
        with run_lock(folder):
            try:  # a second holder at the same time would find this file
                os.close(os.open(os.path.join(folder, "inside"), os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                results.put("both at once")
                return
            time.sleep(0.02)
            os.unlink(os.path.join(folder, "inside"))
            results.put("held")
    except RuntimeError:
        results.put("refused")


def test_two_processes_never_hold_one_lock():
    """Two processes enter run_lock at the same instant, 200 times: never both inside at once."""
    import multiprocessing
    import tempfile

    context = multiprocessing.get_context("fork")
    outcomes = []
    for _ in range(200):
        with tempfile.TemporaryDirectory() as folder:
            barrier, results = context.Barrier(2), context.Queue()
            workers = [context.Process(target=_race, args=(folder, barrier, results)) for _ in range(2)]
            for w in workers:
                w.start()
            for w in workers:
                w.join()
            outcomes.append(tuple(sorted(results.get(timeout=10) for _ in workers)))
    assert set(outcomes) <= {("held", "refused"), ("held", "held")}, set(outcomes)
    assert outcomes.count(("held", "refused")) >= 100  # they did meet: most trials, one was refused


def test_a_process_holding_a_folder_takes_it_again_and_keeps_it(tmp_path):
    """mine_zoo holds the folder and mine takes it again inside: never "another writer" to itself."""
    import fcntl
    import os

    from rosetta_lite.files import LOCK_NAME, run_lock

    lock = tmp_path / LOCK_NAME
    with run_lock(tmp_path):
        with run_lock(f"{tmp_path}/."):  # another spelling of the same folder
            pass
        assert lock.exists()  # the inner release left the outer hold in place
        other = os.open(lock, os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(other)
    assert not lock.exists()


def test_the_lock_names_the_folder_as_it_was_written(tmp_path, lock_holder, monkeypatch):
    import re

    from rosetta_lite.files import run_lock

    monkeypatch.chdir(tmp_path.parent)
    with pytest.raises(RuntimeError, match=rf"^{re.escape(tmp_path.name)} is being written by process "
                                           rf"{lock_holder.pid} "):
        with run_lock(tmp_path.name):
            pass


def test_an_empty_output_folder_name_is_refused():
    from rosetta_lite.files import run_lock

    with pytest.raises(ValueError, match="output folder's name is empty"):
        with run_lock(""):
            pass


def test_a_refused_merge_names_the_setting_that_differs(members):
    gan, encoders = members
    a = mine(gan, encoders, images=16, batch_size=16, progress=False)
    b = mine(gan, encoders, images=16, batch_size=16, start=16, seed=1, progress=False)
    with pytest.raises(ValueError, match=r"different settings \(seed: 0 vs 1\)"):
        a.merge(b)


def test_trained_and_control_built_differently_are_refused(reference_run, tmp_path):
    from rosetta_lite.dictionary.runs import load_dictionaries

    build_dictionary(reference_run, k=2).save(tmp_path)
    build_dictionary(reference_run, k=3).save(tmp_path / "control")
    with pytest.raises(ValueError, match=r"not built alike \(k 2 vs 3\): a run stopped between the two saves"):
        load_dictionaries(tmp_path)


def test_a_broken_manifest_is_named(tmp_path):
    from rosetta_lite.zoo.member import ZooError
    from rosetta_lite.zoo.weights import read_manifest

    broken = tmp_path / "manifest.json"
    broken.write_text("{not json")
    with pytest.raises(ZooError, match=rf"the weights manifest {broken} cannot be read"):
        read_manifest(broken)


def test_a_folder_of_one_zoo_refuses_the_other_zoo(tmp_path):
    """Trained and untrained members share names; their weights tell the runs apart."""
    from rosetta_lite.dictionary.runs import mine_zoo

    common = dict(images=16, out=tmp_path, encoders=["lite-resnet-sup"], batch_size=16, progress=False)
    mine_zoo("lite", **common)
    with pytest.raises(ValueError, match=r"holds another run \(weights of lite-renderer: \w+ vs \w+"):
        mine_zoo("lite-untrained", **common)
    mine_zoo("lite", **common)  # the same zoo resumes


def test_mine_zoo_sends_each_keyword_to_its_options_and_refuses_an_unknown_one(tmp_path):
    from rosetta_lite.dictionary.runs import ZooOptions, mine_zoo
    from rosetta_lite.mining.loop import MiningOptions

    common = dict(images=8, out=tmp_path / "run")
    with pytest.raises(ValueError, match="k must be an integer"):  # k reached ZooOptions, batch_size MiningOptions
        mine_zoo("lite-untrained", k=100_000, batch_size=8, encoders=["lite-resnet-sup"], **common)
    with pytest.raises(ValueError, match="k must be an integer"):
        mine_zoo("lite-untrained", zoo_options=ZooOptions(k=100_000, encoders=["lite-resnet-sup"]),
                 options=MiningOptions(batch_size=8), **common)
    with pytest.raises(ValueError, match=r"images \(8\) must be at least one batch \(32\)"):
        mine_zoo("lite-untrained", k=1, **common)  # refused before any model loads
    with pytest.raises(TypeError, match="colour"):
        mine_zoo("lite-untrained", colour="red", **common)
    assert not (tmp_path / "run").exists()  # no refused run leaves a folder


def test_a_control_from_another_run_is_refused(reference_run, tmp_path):
    import dataclasses

    from rosetta_lite.dictionary.runs import load_dictionaries

    build_dictionary(reference_run, k=2).save(tmp_path)
    other = dataclasses.replace(reference_run.settings, weights={reference_run.settings.generator: "0" * 16})
    build_dictionary(dataclasses.replace(reference_run, settings=other), k=2).save(tmp_path / "control")
    with pytest.raises(ValueError, match=r"not built alike \(weights .*or the control is another run's"):
        load_dictionaries(tmp_path)


def test_a_batch_with_non_finite_maps_stops_mining_with_the_model_and_layer_named(tmp_path):
    gan = zoo.load("lite-gan", pretrained=False, seed=0)
    encoder = zoo.load("lite-resnet-sup", pretrained=False, seed=1)
    layer = encoder.layers[1]
    poisoned = dict(encoder.model.named_modules())[layer]
    handle = poisoned.register_forward_hook(lambda module, args, out: out * float("nan"))
    try:
        with pytest.raises(RuntimeError, match=rf"lite-resnet-sup, layer {layer}: non-finite activations on "
                                               r"latents 0 to 15"):
            mine(gan, [encoder], images=32, batch_size=16, progress=False, out=tmp_path)
    finally:
        handle.remove()


def test_one_infinite_value_stops_mining_and_huge_finite_maps_do_not(tmp_path):
    gan = zoo.load("lite-gan", pretrained=False, seed=0)
    encoder = zoo.load("lite-resnet-sup", pretrained=False, seed=1)
    layer = encoder.layers[0]
    module = dict(encoder.model.named_modules())[layer]

    def one_infinity(_module, _args, out):
        out = out.clone()
        out.view(-1)[7] = float("inf")
        return out

    handle = module.register_forward_hook(one_infinity)
    try:
        with pytest.raises(RuntimeError, match=rf"lite-resnet-sup, layer {layer}: non-finite activations"):
            mine(gan, [encoder], images=16, batch_size=16, progress=False, out=tmp_path / "inf")
    finally:
        handle.remove()
    # finite maps whose float32 sum overflows: the quick test fails, the exact one lets them through
    handle = module.register_forward_hook(lambda _module, _args, out: out.abs() * 1e36 + 1e36)
    try:
        mine(gan, [encoder], images=16, batch_size=16, progress=False)
    finally:
        handle.remove()


def test_a_run_killed_between_its_two_saves_is_named_as_one_run(reference_run, tmp_path):
    from rosetta_lite.dictionary.runs import load_dictionaries

    build_dictionary(reference_run, k=2).save(tmp_path)
    (tmp_path / "control").mkdir()  # the second save never happened
    with pytest.raises(DictionaryError, match=rf"stopped between its two saves: mine it again with --out {tmp_path} "):
        load_dictionaries(tmp_path)


def test_a_failed_write_names_the_target_not_its_temporary_file(tmp_path):
    from rosetta_lite.files import atomic_path

    target = tmp_path / "table.json"
    with pytest.raises(RuntimeError, match=rf"could not write {target}: broken {target};"):
        with atomic_path(target) as tmp:
            raise ValueError(f"broken {tmp}")


def test_bf16_mining_where_it_is_emulated_says_so(monkeypatch):
    from rosetta_lite.mining import loop
    from rosetta_lite.mining.loop import MiningOptions

    monkeypatch.setattr(loop, "native_bf16", lambda device: False)
    with pytest.warns(UserWarning, match="bf16 on this CPU is emulated"):
        MiningOptions(precision="bf16").check(64)
    monkeypatch.setattr(loop, "native_bf16", lambda device: True)
    MiningOptions(precision="bf16").check(64)  # native: no notice


def test_a_refused_mine_loads_no_model_and_leaves_no_folder(tmp_path, monkeypatch, capsys):
    import rosetta_lite.dictionary.runs as runs
    from rosetta_lite.cli import main

    def no_models(*args, **kwargs):
        raise AssertionError("the models were loaded before the settings were checked")

    monkeypatch.setattr(runs, "zoo_members", no_models)
    out = tmp_path / "new-run"
    assert main(["mine", "--images", "16", "--out", str(out)]) != 0  # one batch is 32 images
    assert "images (16) must be at least one batch (32)" in capsys.readouterr().err
    assert not out.exists()


def test_a_full_disk_while_taking_the_lock_is_one_clear_error_and_leaves_no_lock(tmp_path, monkeypatch, capsys):
    import errno
    import os

    import rosetta_lite.files as files
    from rosetta_lite.cli import main

    def full(*args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files.os, "pwrite", full)
    with pytest.raises(RuntimeError, match=r"could not take the lock of .*: No space left on device; free some space"):
        with files.run_lock(tmp_path):
            pass
    assert not (tmp_path / files.LOCK_NAME).exists()
    assert main(["mine", "--zoo", "lite-untrained", "--encoders", "lite-resnet-sup", "--images", "16",
                 "--batch-size", "16", "--out", str(tmp_path / "run")]) != 0
    err = capsys.readouterr().err
    assert "No space left on device; free some space and run again" in err and "Traceback" not in err


@pytest.mark.parametrize("change", [{"rss_images": 16}, {"exact_images": 16}])
def test_bench_counts_below_one_batch_are_refused_before_any_work(change):
    from rosetta_lite.bench.mining import BenchOptions

    with pytest.raises(ValueError, match=f"{next(iter(change))} \\(16\\) must be at least one batch \\(32\\)"):
        BenchOptions(**change).check()
    BenchOptions(batch_size=16, **change).check()
