"""The plan of a mining run: layers, units, map sides and common grids; where the tables live.

    layers, units, sides, grids = plan(gan, encoders)
    placement = choose_tables("auto", "cuda", table_bytes(units, gan.name))
"""

from __future__ import annotations

import logging

import torch

from rosetta_lite.capture import record_encoder, record_generator
from rosetta_lite.mining import processes as distributed
from rosetta_lite.mining.settings import AUTO_HOST_FRACTION, check_tables
from rosetta_lite.zoo.member import Member

log = logging.getLogger(__name__)


def table_bytes(units: dict[str, list[int]], generator: str) -> int:
    """Bytes of every float64 table of a run: the generator against each model, itself included.

        table_bytes({"gan": [11904], "dino-vitb16": [3072] * 12}, "gan")   # 4_644_274_176: 3.5 GB + 1.1 GB
    """
    n_g = sum(units[generator])
    return 8 * n_g * sum(sum(widths) for widths in units.values())


def choose_tables(tables: str, device: str | torch.device, nbytes: int, similarity: str = "pearson") -> str:
    """Resolve ``tables`` ("auto", "device" or "host") to where this run's tables live: "device" or "host".

        choose_tables("auto", "cuda", table_bytes(units, gan.name))   # "host" if over half the free memory

    "auto" is "device" on the CPU (there, both are host memory) and for mutual
    information (its count tables are kept with the rows); on CUDA it is "host" when
    ``nbytes`` exceed :data:`AUTO_HOST_FRACTION` of the free GPU memory, and says so
    in a log line. Under torchrun every process takes the host if any one would, so
    that all reduce their tables alike.
    """
    check_tables(tables, similarity)
    if tables != "auto":
        return tables
    device = torch.device(device)
    if device.type != "cuda" or similarity != "pearson":
        return "device"
    free, _ = torch.cuda.mem_get_info(device)
    host = nbytes > AUTO_HOST_FRACTION * free
    if distributed.active():
        vote = torch.tensor([float(host)], device=device)
        distributed.dist.all_reduce(vote, op=distributed.dist.ReduceOp.MAX)
        host = bool(vote.item())
    if host:
        log.warning("tables: %.2f GB of float64 tables exceed %.0f%% of the %.2f GB free on %s; keeping them in "
                    "host memory (products on the GPU, added in chunks); pass tables='device' to keep them on the "
                    "GPU", nbytes / 1e9, 100 * AUTO_HOST_FRACTION, free / 1e9, device)
    else:
        log.info("tables: %.2f GB of float64 tables on %s (%.2f GB free)", nbytes / 1e9, device, free / 1e9)
    return "host" if host else "device"


def _map_sides(member: Member, probe: torch.Tensor) -> dict[str, tuple[int, int, int]]:
    if member.is_generator:
        _, maps = record_generator(member, probe)
    else:
        maps = record_encoder(member, probe)
    return {layer: tuple(maps[layer].shape[1:]) for layer in member.layers}


def plan(generator: Member, encoders: list[Member], grid: int | None = None,
         device: str | torch.device | None = None) -> tuple[dict, dict, dict, dict]:
    """Layers, units per layer, map sides per layer, and the common grid of every table.

        layers, units, sides, grids = plan(gan, encoders)

    The grid of a (generator, encoder) table is the largest map of the pair (or ``grid``);
    the generator's own table (clustering needs it) uses the generator's largest map.
    The probe runs on ``device`` (default: where the generator's parameters are).
    """
    if device is None:
        device = next(iter(generator.model.parameters()), torch.empty(0)).device
    with torch.no_grad():
        z = generator.sample_latents(2, seed=0).to(device)
        g_shapes = _map_sides(generator, z)
        images = generator.generate(z).clamp(0, 1)
        shapes = {encoder.name: _map_sides(encoder, images) for encoder in encoders}
    shapes[generator.name] = g_shapes
    layers = {name: list(s) for name, s in shapes.items()}
    units = {name: [s[layer][0] for layer in s] for name, s in shapes.items()}
    sides = {name: [s[layer][1] if s[layer][1] == s[layer][2] else None for layer in s]
             for name, s in shapes.items()}
    g_side = max(max(s[1:]) for s in g_shapes.values())
    grids = {e.name: grid or max(g_side, max(max(s[1:]) for s in shapes[e.name].values())) for e in encoders}
    grids[generator.name] = grid or g_side
    return layers, units, sides, grids


def size_groups(layers: list[str], units: list[int], sides: list[int | None], grid: int) -> list[tuple]:
    """Layers of one model grouped by map side: [(side, layers, column slice or index), ...].

    Maps of the grid's side, non-square maps and maps larger than the grid (all resized to
    the grid first) form the grid group; every smaller side meets the generator's rows
    carried to that side.
    """
    offsets = [0]
    for count in units:
        offsets.append(offsets[-1] + count)
    groups: dict[int, tuple[list[str], list[int]]] = {}
    for layer, side, first, last in zip(layers, sides, offsets[:-1], offsets[1:]):
        key = grid if side is None or side > grid else side
        names, columns = groups.setdefault(key, ([], []))
        names.append(layer)
        columns.extend(range(first, last))
    result = []
    for side, (names, columns) in groups.items():
        contiguous = columns == list(range(columns[0], columns[-1] + 1))
        result.append((side, names, slice(columns[0], columns[-1] + 1) if contiguous else torch.tensor(columns)))
    return result
