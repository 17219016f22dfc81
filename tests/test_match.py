import pytest
import torch

from rosetta_lite.dictionary.match import best_buddies, cluster_units, connected_components, rosetta_units

# rows: generator units 0-2; columns: encoder units 0-3
TABLE = torch.tensor([[0.9, 0.1, 0.2, 0.0],
                      [0.8, 0.3, 0.1, 0.0],
                      [0.0, 0.2, 0.1, 0.7]])


def test_mutual_top1():
    assert best_buddies(TABLE, k=1) == [(0, 0), (2, 3)]


def test_mutual_top2_adds_pairs_in_each_others_lists():
    assert {(0, 0), (1, 0), (2, 3)} <= set(best_buddies(TABLE, k=2))
    pairs = best_buddies(TABLE, k=2)
    for g, d in pairs:
        assert g in TABLE[:, d].topk(2).indices.tolist() and d in TABLE[g].topk(2).indices.tolist()


def test_asymmetric_official_variant():
    # unit 1's top-1 is encoder unit 0; unit 1 is in column 0's top-2 but not top-1
    assert (1, 0) in best_buddies(TABLE, mode="asymmetric", k_other=2)
    assert (1, 0) not in best_buddies(TABLE, mode="asymmetric", k_other=1)


def test_dead_units_never_pair_and_self_is_excluded():
    assert (0, 0) not in best_buddies(TABLE, k=1, dead_b=torch.tensor([True, False, False, False]))
    gg = torch.eye(3) + torch.tensor([[0, .5, 0], [.5, 0, 0], [0, 0, 0]])
    assert best_buddies(gg, k=1, exclude_self=True)[0] in [(0, 1), (1, 0)]


def test_bad_arguments():
    with pytest.raises(ValueError, match="mode must be"):
        best_buddies(TABLE, mode="nearest")
    with pytest.raises(ValueError, match="at least 1"):
        best_buddies(TABLE, k=0)


def test_rosetta_units_need_a_buddy_in_every_encoder():
    rosetta = rosetta_units({"clip": [(0, 5), (1, 2)], "dino": [(0, 7), (2, 1), (0, 8)]})
    assert rosetta == {0: {"clip": [5], "dino": [7, 8]}}
    assert rosetta_units({}) == {}


def test_connected_components_and_clusters():
    assert connected_components([1, 2, 3, 4], [(1, 3), (3, 4), (9, 1)]) == [[1, 3, 4], [2]]
    gg = torch.tensor([[1., .9, .1, .0], [.9, 1., .1, .0], [.1, .1, 1., .8], [.0, .0, .8, 1.]])
    rosetta = {0: {}, 1: {}, 2: {}}
    assert cluster_units(rosetta, gg, k=1) == [[0, 1], [2]]
