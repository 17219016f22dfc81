import pytest
import torch

from rosetta_lite.stats import CoMoments, centre


def reference(a, b):
    a, b = a.double(), b.double()
    a, b = a - a.mean(0), b - b.mean(0)
    return (a.T @ b) / (a.norm(dim=0)[:, None] * b.norm(dim=0)[None, :])


def correlated(n=4000, seed=0, offset=50.0):
    """Units with known correlations: b_j = rho_j a_0 + sqrt(1 - rho_j^2) noise, far from zero mean."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, 3, generator=g)
    rho = torch.tensor([0.9, 0.5, -0.3, 0.0])
    b = rho * a[:, :1] + (1 - rho.square()).sqrt() * torch.randn(n, 4, generator=g)
    return a + offset, 3 * b - offset, rho


def test_streaming_equals_float64_pearson_over_all_rows():
    a, b, rho = correlated()
    acc = CoMoments(3, 4)
    for part_a, part_b in zip(a.split(333), b.split(333)):
        acc.update(part_a, part_b)
    corr = acc.correlation()
    assert acc.count == 4000
    assert (corr - reference(a, b)).abs().max() < 1e-5  # the benchmark's target, on float32 data
    assert (corr[0] - rho.double()).abs().max() < 0.05  # the known correlations, up to sampling


def test_not_an_average_of_batch_scores():
    # two batches whose means differ: per-batch correlations are ~0, the pooled one is high
    x = torch.cat([torch.randn(500, 1), torch.randn(500, 1) + 10])
    y = torch.cat([torch.randn(500, 1), torch.randn(500, 1) + 10])
    acc = CoMoments(1, 1)
    acc.update(x[:500], y[:500])
    acc.update(x[500:], y[500:])
    assert acc.correlation()[0, 0] > 0.9
    assert abs(float(acc.correlation()[0, 0]) - float(reference(x, y)[0, 0])) < 1e-6


def test_shard_merge_is_exact_and_order_free():
    a, b, _ = correlated(seed=2)
    whole, first, second = CoMoments(3, 4), CoMoments(3, 4), CoMoments(3, 4)
    whole.update(a[:1000], b[:1000])
    whole.update(a[1000:], b[1000:])
    first.update(a[:1000], b[:1000])
    second.update(a[1000:], b[1000:])
    merged = CoMoments(3, 4).merge(second).merge(first)
    assert merged.count == whole.count
    assert (merged.correlation() - whole.correlation()).abs().max() < 1e-12


def test_dead_units_give_zeros_not_nans():
    a = torch.randn(100, 3)
    a[:, 1] = 7.0  # constant: dead
    acc = CoMoments(3, 3, same=True)
    acc.update(a)
    corr = acc.correlation()
    assert not torch.isnan(corr).any()
    assert acc.dead_a().tolist() == [False, True, False] and (corr[1] == 0).all()


def test_self_table_has_unit_diagonal():
    acc = CoMoments(5, 5, same=True)
    acc.update(torch.randn(200, 5))
    assert torch.allclose(acc.correlation().diagonal(), torch.ones(5, dtype=torch.float64))


def test_save_and_restore_roundtrip():
    a, b, _ = correlated(seed=3)
    acc = CoMoments(3, 4)
    acc.update(a, b)
    again = CoMoments.from_state_dict(acc.state_dict("x/"), "x/")
    assert torch.equal(again.correlation(), acc.correlation()) and again.count == acc.count


def test_bad_shapes_and_too_few_samples():
    acc = CoMoments(3, 4)
    with pytest.raises(ValueError, match=r"at least 2 samples"):
        acc.correlation()
    with pytest.raises(ValueError, match=r"expected rows \(N, 3\) and \(N, 4\)"):
        acc.update(torch.randn(10, 3), torch.randn(10, 5))
    with pytest.raises(ValueError, match="cannot merge"):
        acc.merge(CoMoments(2, 4))


def test_centre_is_exact_for_offset_data():
    rows = torch.randn(1000, 4, dtype=torch.float64) + 1000
    c = centre(rows.float().clone())
    assert torch.allclose(c.mean, rows.float().double().mean(0), atol=1e-9)
