"""The book's results page: every table is read from a command's JSON, none typed."""

import re
from pathlib import Path

import pytest

from rosetta_lite.book import results

PAGE = Path(results.__file__).resolve().parents[2] / "book" / "results.md"
TABLES = {"mining": results.mining_table, "concepts": results.concepts_table, "census": results.census_table,
          "inversion": results.inversion_table, "editing": results.editing_table, "nulls": results.nulls_table,
          "stability": results.stability_table}


@pytest.mark.parametrize("name", sorted(TABLES))
def test_every_table_is_built_from_its_saved_result(name):
    saved = results.load_result(name)
    assert saved["command"].startswith("python -m rosetta_lite ") and saved["seconds"] > 0
    table = TABLES[name](saved)
    assert len(table) >= 2 and not table.isna().all().any()


def test_the_inversion_table_reads_the_report_it_is_given():
    saved = results.load_result("inversion")
    saved["report"]["rows"][0]["psnr"]["mean"] = 99.0
    assert results.inversion_table(saved)["PSNR"].iloc[0] == 99.0


def test_the_paper_table_decides_agreement_from_the_figures():
    import copy

    saved = {name: results.load_result(name) for name in ("concepts", "inversion", "editing")}
    table = results.paper_table(*saved.values())
    assert len(table) == 7 and table["agrees"].map(type).eq(bool).all()
    better = copy.deepcopy(saved["inversion"])
    for row in better["report"]["rows"][1:]:
        row["minus_perceptual_only"]["psnr"].update(mean=1.5, ci95=[0.5, 2.5])
    flipped = results.paper_table(saved["concepts"], better, saved["editing"])
    assert flipped.loc["Table 1: inversion, all matches vs perceptual only", "agrees"]
    assert "+1.50 [0.50, 2.50]" in flipped.loc["Table 1: inversion, all matches vs perceptual only", "lite (measured)"]
    assert "+1.43" in flipped.loc["Table 1: inversion, all matches vs perceptual only", "paper"]  # 15.42 - 13.99
    fig1 = "Fig. 1: units shared by every model of the zoo"
    fewer = copy.deepcopy(saved["concepts"])
    fewer["report"]["trained"]["n_rosetta"] = fewer["report"]["control"]["n_rosetta"]  # as many as chance gives
    assert not results.paper_table(fewer, saved["inversion"], saved["editing"]).loc[fig1, "agrees"]
    fewer["report"]["trained"]["n_rosetta"] += 1
    assert results.paper_table(fewer, saved["inversion"], saved["editing"]).loc[fig1, "agrees"]


def test_the_paper_table_reads_the_generator_pair_against_the_papers_stated_failure():
    saved = {name: results.load_result(name) for name in ("concepts", "inversion", "editing")}
    row = {"k": 3, "trained": {"n_learned": 4, "n_learned_above": 0}, "control": {"n_learned": 0},
           "shuffled": {"n_learned": 0}}
    pair = {"report": {"settings": {"generator": "lite-gan", "redrawer": "lite-renderer"}, "rows": [row]}}
    gan = "Limitation: matching fails between two GANs"
    table = results.paper_table(*saved.values(), generators=pair)
    assert table.loc[gan, "agrees"] and "learned clusters 4, control 0, shuffled 0" in table.loc[gan, "lite (measured)"]
    row["trained"]["n_learned_above"] = 1  # shared learned concepts above both nulls: the matching works
    assert not results.paper_table(*saved.values(), generators=pair).loc[gan, "agrees"]
    with pytest.raises(ValueError, match="no row for K = 5"):
        results.paper_table(*saved.values(), k=5, generators=pair)


def test_the_paper_table_also_reads_the_nulls():
    import copy

    saved = {name: results.load_result(name) for name in ("concepts", "inversion", "editing", "nulls")}
    fig2 = "Fig. 2: a dictionary of concepts"
    concepts = copy.deepcopy(saved["concepts"])
    concepts["report"]["trained"]["per_concept"]["shape:ring"] = 3  # learned beyond the control
    assert results.paper_table(concepts, saved["inversion"], saved["editing"]).loc[fig2, "agrees"]
    nulls = copy.deepcopy(saved["nulls"])
    row = next(r for r in nulls["report"]["rows"] if r["k"] == 3)
    row["trained"].update(n_learned=2, n_learned_above=0)
    row["shuffled"]["n_learned"] = 0
    table = results.paper_table(concepts, saved["inversion"], saved["editing"], nulls)
    assert not table.loc[fig2, "agrees"] and "above the shuffle's level in every encoder: 0" in table.loc[fig2, "lite (measured)"]
    row["trained"]["n_learned_above"] = 1
    assert results.paper_table(concepts, saved["inversion"], saved["editing"], nulls).loc[fig2, "agrees"]
    row["shuffled"]["n_learned"] = 2  # chance pairing finds as many
    assert not results.paper_table(concepts, saved["inversion"], saved["editing"], nulls).loc[fig2, "agrees"]
    fig1 = "Fig. 1: units shared by every model of the zoo"
    concepts["report"]["trained"]["n_rosetta"] = concepts["report"]["control"]["n_rosetta"] + 1
    row["shuffled"]["n_rosetta"] = concepts["report"]["trained"]["n_rosetta"]
    assert not results.paper_table(concepts, saved["inversion"], saved["editing"], nulls).loc[fig1, "agrees"]
    with pytest.raises(ValueError, match="no row for K = 9"):
        results.paper_table(concepts, saved["inversion"], saved["editing"], nulls, k=9)


def test_the_page_types_no_figures():
    prose, in_code = [], False
    for line in PAGE.read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code:
            prose.append(line)
    text = "\n".join(prose).replace("95% confidence", "confidence")  # the method's level, not a result
    typed = re.findall(r"\b\d+\.\d+\b|\b\d+ ?(?:dB|%)", text)
    assert not typed, f"figures typed into the results page: {typed}"


def test_results_refuse_unknown_names_and_say_how_to_make_a_missing_one(tmp_path):
    with pytest.raises(ValueError, match=r"unknown result\(s\) \['tabel'\]"):
        results.make_results(tmp_path, only=["tabel"])
    with pytest.raises(FileNotFoundError, match="python -m rosetta_lite results --only editing"):
        results.load_result("editing", tmp_path)


@pytest.mark.parametrize("name", results.STEPS)
def test_saved_results_were_measured_with_the_shipped_weights(name):
    saved = results.load_result(name)
    assert not results.stale_members(saved), (
        f"book/results/{name}.json was measured with other weights of {results.stale_members(saved)}; "
        f"remake it: python -m rosetta_lite results --only {name}")


def test_a_result_of_other_weights_is_stale():
    saved = {"weights": results.shipped_checksums()}
    assert results.stale_members(saved) == []
    saved["weights"]["lite-clip"] = "0" * 64
    del saved["weights"]["lite-gan"]
    assert results.stale_members(saved) == ["lite-clip", "lite-gan"]


def test_the_outside_table_has_a_row_per_kind_and_start_from_the_saved_report():
    saved = results.load_result("outside")
    table = results.outside_table(saved)
    assert len(table) == len(saved["report"]["rows"]) and table.index.names == ["targets", "start"]
    first = saved["report"]["rows"][0]
    gain = first["report"]["rows"][-1]["minus_perceptual_only"]["psnr"]
    start = "reader's guess" if first["warm_start"] else "random latent"
    low, high = gain["ci95"]
    assert table.loc[(first["targets"], start), "PSNR gain [95% CI]"] == f"{gain['mean']:+.2f} [{low:.2f}, {high:.2f}]"
