"""The chapters' readings of their results: every case in words, "no better than chance" included."""

from rosetta_lite.book.reading import read_concepts, read_rosetta_neurons, read_strict


def test_rosetta_neurons_read_against_the_control_and_chance():
    none = read_rosetta_neurons({"trained": 13, "control": 14, "trained_above_chance": 0})
    assert "no more than the untrained control's 14" in none and "None of them is above chance" in none
    some = read_rosetta_neurons({"trained": 20, "control": 14, "trained_above_chance": 1})
    assert "6 more than the untrained control's 14" in some and "1 Rosetta neuron of the trained zoo" in some


def test_concepts_read_as_learned_only_beyond_the_control():
    base = {"trained": {"n_clusters": 9, "per_concept": {"ground": 4, "sky": 3, "object": 2}},
            "control": {"n_clusters": 9, "per_concept": {"ground": 3, "sky": 3, "colour:red": 1}}}
    assert "Only object is a concept" in read_concepts(base)
    base["control"]["per_concept"]["object"] = 2
    assert "no better than chance" in read_concepts(base)
    base["trained"]["per_concept"] = {"sky": 5, "colour:red": 3}
    assert "no better than chance" in read_concepts(base)


def test_the_strict_dictionary_says_when_it_is_empty():
    assert "is empty" in read_strict({"rosetta_neurons": 0, "clusters": 0})
    assert "3 Rosetta neurons in 2 clusters remain" in read_strict({"rosetta_neurons": 3, "clusters": 2})
