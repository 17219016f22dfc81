"""Mining in several processes: ``torchrun --nproc_per_node=N -m rosetta_lite mine ...``.

    rank, world, device = setup("cuda")          # init_process_group from the torchrun environment
    start, images = share(0, 2000, 32, rank, world)
    reduce_result(result)                          # every rank now holds the whole run's accumulators

Each process mines a contiguous share of the run's batches (so every batch is the same
batch as in one process), then the accumulators are summed with ``all_reduce``: joint
counts directly, co-moments after shifting each process's centred sums to the global
means (Chan's pairwise formula, generalised to N parts), which is exact up to float64
rounding. gloo on the CPU, NCCL on GPUs. With WORLD_SIZE unset or 1 nothing here does
anything, and no process group is created.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from rosetta_lite.mining.settings import MiningResult
from rosetta_lite.stats.binary import BinaryMoments
from rosetta_lite.stats.reduce import reduce_binary_moments, reduce_comoments


def world_size_from_env() -> int:
    """WORLD_SIZE as torchrun sets it (1 when unset).

        world_size_from_env()   # 1 in a plain python process
    """
    value = os.environ.get("WORLD_SIZE", "1")
    try:
        world = int(value)
    except ValueError:
        raise ValueError(f"WORLD_SIZE must be an integer, got {value!r}") from None
    if world < 1:
        raise ValueError(f"WORLD_SIZE must be at least 1, got {world}")
    return world


def lead_process() -> bool:
    """Whether this is the process that owns the output folder: rank 0 under torchrun, or the only one."""
    return int(os.environ.get("RANK", "0")) == 0


def active() -> bool:
    """Whether this process is one of several in an initialised process group.

        if active(): print(dist.get_rank())
    """
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def setup(device: str | torch.device = "cpu") -> tuple[int, int, torch.device]:
    """(rank, world size, this process's device); initialises the process group from the environment.

        rank, world, device = setup("cuda")   # under torchrun: NCCL, one GPU per local rank

    Only when WORLD_SIZE > 1 (or a group already exists); the backend is NCCL for CUDA
    devices and gloo otherwise. A bare ``"cuda"`` becomes ``cuda:LOCAL_RANK``.
    """
    device = torch.device(device)
    if not dist.is_available() or (world_size_from_env() == 1 and not dist.is_initialized()):
        return 0, 1, device
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size(), device


def teardown() -> None:
    """Destroy the process group if one was created (end of a torchrun command).

        teardown()
    """
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def share(start: int, images: int, batch_size: int, rank: int, world: int) -> tuple[int, int]:
    """The (start, images) of ``rank``'s contiguous share of a run, in whole batches.

        share(0, 64, 16, rank=1, world=2)   # (32, 32)

    Batch boundaries are those of a one-process run, so each batch's statistics are the
    same numbers wherever they are computed.
    """
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} is not in a world of {world} processes")
    batches = (images + batch_size - 1) // batch_size
    if batches < world:
        raise ValueError(f"{images} images make {batches} batch(es) of {batch_size}, fewer than the {world} "
                         "processes; mine more images, lower --batch-size or start fewer processes")
    first, last = rank * batches // world, (rank + 1) * batches // world
    begin = start + first * batch_size
    end = min(start + last * batch_size, start + images)
    return begin, end - begin


def barrier() -> None:
    """Wait for every process (nothing to wait for in one process)."""
    if active():
        dist.barrier()


def broadcast_tensors(tensors: dict[str, torch.Tensor], source: int = 0) -> dict[str, torch.Tensor]:
    """Every process gets ``source``'s tensors (same keys and shapes everywhere): one frozen copy.

        thresholds = broadcast_tensors(thresholds)
    """
    if not active():
        return tensors
    for key in sorted(tensors):
        value = tensors[key].contiguous()
        dist.broadcast(value, src=source)
        tensors[key] = value
    return tensors


def reduce_result(result: MiningResult) -> None:
    """All-reduce every accumulator of a :class:`~rosetta_lite.mining.settings.MiningResult`, in place.

        reduce_result(result)   # after each process mined its share
    """
    if not active():
        return

    for name in sorted(result.pairs):
        acc = result.pairs[name]
        (reduce_binary_moments if isinstance(acc, BinaryMoments) else reduce_comoments)(acc)
    acc = result.self_pair
    (reduce_binary_moments if isinstance(acc, BinaryMoments) else reduce_comoments)(acc)
