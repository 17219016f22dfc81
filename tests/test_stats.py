import pytest
import torch

from rosetta_lite.stats.moments import Centred, CoMoments, centre


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


def _blocks_of(a, b):
    """One batch as mining gives it: the b units in two interleaved blocks (index columns) meeting one a."""
    first, second = torch.tensor([0, 2, 3]), torch.tensor([1])
    c = centre(a)
    return [(c, centre(b[:, first]), first), (c, centre(b[:, second]), second)]


def test_host_tables_in_chunks_equal_device_tables(monkeypatch):
    from rosetta_lite.stats import moments as stats

    monkeypatch.setattr(stats, "MIN_CHUNK_COLUMNS", 1)  # these 4 units are cut into single columns
    a, b, rho = correlated(seed=4)
    one_column = 8 * 3  # n_a x 1 column x 8 B: every product is cut into single columns
    device = CoMoments(3, 4, chunk_bytes=one_column)
    host = CoMoments(3, 4, host_tables=True, chunk_bytes=one_column)
    whole = CoMoments(3, 4)  # default bound: one product per block
    for part_a, part_b in zip(a.split(700), b.split(700)):
        for acc in (device, host, whole):
            acc.update_blocks(_blocks_of(part_a, part_b))
    assert host.columns_per_chunk() == 1 and host.cross.device.type == "cpu"
    # the same float32 chunks either way: only float64 rounding differs
    assert (host.correlation() - device.correlation()).abs().max() <= 1e-9
    assert (host.correlation() - whole.correlation()).abs().max() < 1e-6  # other chunks: float32 rounding
    assert (host.correlation() - reference(a, b)).abs().max() < 1e-5
    assert (host.correlation()[0] - rho.double()).abs().max() < 0.05
    assert host.count == device.count and torch.allclose(host.m2_b, device.m2_b, rtol=1e-12)


def test_blocks_that_fill_rows_and_columns_of_the_table_equal_one_update():
    """Blocks of a's units (a slice, an index) by b's (an index, a slice), a's statistics whole in each."""
    a, b, _ = correlated(seed=6)
    rows_1, rows_2 = slice(0, 1), torch.tensor([1, 2])
    cols_1, cols_2 = torch.tensor([0, 2, 3]), slice(1, 2)
    for host_tables in (False, True):
        blocked, whole = CoMoments(3, 4, host_tables=host_tables), CoMoments(3, 4)
        for part_a, part_b in zip(a.split(700), b.split(700)):
            c = centre(part_a)
            blocks = []
            for rows in (rows_1, rows_2):
                a_rows = Centred(c.count, c.rows[:, rows].contiguous(), c.mean, c.m2, c.residual)
                blocks += [(a_rows, centre(part_b[:, cols]), cols, rows) for cols in (cols_1, cols_2)]
            blocked.update_blocks(blocks)
            whole.update(part_a, part_b)
        assert (blocked.correlation() - whole.correlation()).abs().max() < 1e-6
        assert (blocked.correlation() - reference(a, b)).abs().max() < 1e-5


def test_host_tables_take_the_host_path_and_stay_on_the_host(monkeypatch):
    a, b, _ = correlated(seed=5)
    calls = []
    real = CoMoments._add_chunks_to_host
    monkeypatch.setattr(CoMoments, "_add_chunks_to_host", lambda self, *args: calls.append(1) or real(self, *args))
    host, device = CoMoments(3, 4, host_tables=True), CoMoments(3, 4)
    host.update(a, b)
    device.update(a, b)
    assert calls == [1]  # the device accumulator never takes it
    assert host.to("meta").cross.device.type == "cpu" and host.mean_a.device.type == "meta"
    assert device.to("meta").cross.device.type == "meta"


def test_merge_and_roundtrip_of_host_tables():
    a, b, _ = correlated(seed=6)
    whole = CoMoments(3, 4)
    whole.update(a, b)
    first, second = CoMoments(3, 4, host_tables=True, chunk_bytes=8), CoMoments(3, 4)
    first.update(a[:1500], b[:1500])
    second.update(a[1500:], b[1500:])
    merged = first.merge(second)
    assert (merged.correlation() - whole.correlation()).abs().max() < 1e-6
    again = CoMoments.from_state_dict(merged.state_dict("h/"), "h/")
    assert torch.equal(again.correlation(), merged.correlation())


def test_bad_chunk_bytes():
    for bad in (0, -8, 1.5, True):
        with pytest.raises(ValueError, match="chunk_bytes must be a positive number of bytes"):
            CoMoments(3, 4, chunk_bytes=bad)
    assert CoMoments(3, 4, chunk_bytes=1).columns_per_chunk() == 64  # never narrower: float32 accuracy
    assert CoMoments(1000, 5000, chunk_bytes=8 * 1000 * 128).columns_per_chunk() == 128


_REDUCE_SCRIPT = """
import sys, torch, torch.distributed as dist
from rosetta_lite.mining.loop import reduce_host_table
from rosetta_lite.stats import moments as stats
from rosetta_lite.stats.moments import CoMoments
rank, port, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
g = torch.Generator().manual_seed(7)
a, b = torch.randn(3000, 5, generator=g) + 30, torch.randn(3000, 9, generator=g) - 4
b[:, :3] += a[:, :3]
stats.MIN_CHUNK_COLUMNS = 1  # 2 columns a chunk: 5 chunks
acc = CoMoments(5, 9, host_tables=True, chunk_bytes=8 * 5 * 2)
mine = slice(0, 1000) if rank == 0 else slice(1000, 3000)  # unequal shares, unequal means
acc.update(a[mine], b[mine])
reduce_host_table(acc, "cpu")
if rank == 0:
    whole = CoMoments(5, 9, chunk_bytes=acc.chunk_bytes)  # one process, same batches and chunks
    whole.update(a[:1000], b[:1000])
    whole.update(a[1000:], b[1000:])
    error = (acc.correlation() - whole.correlation()).abs().max().item()
    means = max((acc.mean_b - whole.mean_b).abs().max().item(), (acc.m2_a / whole.m2_a - 1).abs().max().item())
    open(out, "w").write(f"{acc.count} {error} {means}")
dist.destroy_process_group()
"""


def test_host_tables_reduce_chunk_by_chunk_across_processes(tmp_path):
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = tmp_path / "reduced.txt"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    env.pop("WORLD_SIZE", None)
    workers = [subprocess.Popen([sys.executable, "-c", _REDUCE_SCRIPT, str(rank), str(port), str(out)], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for rank in (0, 1)]
    for worker in workers:
        _, err = worker.communicate(timeout=240)
        assert worker.returncode == 0, err[-3000:]
    count, error, means = out.read_text().split()
    assert int(count) == 3000 and float(error) <= 1e-9 and float(means) <= 1e-9
