"""The plan of a mining run: layers, units, map sides and common grids; where the tables live.

    layers, units, sides, grids = plan(gan, encoders)
    placement = choose_tables("auto", "cuda", table_bytes(units, gan.name))
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import torch

from rosetta_lite.capture import record_encoder, record_generator
from rosetta_lite.mining import processes as distributed
from rosetta_lite.mining.settings import AUTO_HOST_FRACTION, check_tables
from rosetta_lite.stats.moments import DEFAULT_CHUNK_BYTES
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
    the grid first) form the grid group; each group meets each of the other model's at the
    smaller of their sides (:func:`meetings`).
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


def meetings(g_groups: list[tuple], groups: list[tuple]) -> list[tuple[tuple, tuple, int, str]]:
    """Every product of one table: (model group, generator group, the side they meet at, which is carried).

        for group, g_group, meet, carried in meetings(g_sizes, model_sizes): ...

    Both are :func:`size_groups` lists at the table's grid. A pair meets at the smaller of
    its two sides: the rows of the larger side ("generator" or "model") are carried down
    to it (:meth:`~rosetta_lite.stats.resample.Resampler.carry`), which gives the
    cross-products of both resized to the grid on the fewest rows. At equal sides below
    the grid one of the two still goes through the resizing's Gram matrix: the narrower.
    The pairs of one model group come together.
    """
    out = []
    for group in groups:
        for g_group in g_groups:
            side, g_side = group[0], g_group[0]
            generator = g_side > side or (g_side == side and width(g_group[2]) <= width(group[2]))
            out.append((group, g_group, min(side, g_side), "generator" if generator else "model"))
    return out


def width(columns: "slice | torch.Tensor") -> int:
    """How many columns a group's ``columns`` (a contiguous slice or an index tensor) hold."""
    return columns.stop - columns.start if isinstance(columns, slice) else len(columns)


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a Pearson mining run needs, by part, and where they are: see :func:`estimate_memory`.

        estimate = estimate_memory(gan, encoders, MemoryRequest(grid=56, batch_size=16)); estimate.device
    """

    models: int  # every member's parameters and buffers
    tables: int  # the float64 co-moment tables
    batch: int  # one batch: generated images and every model's recorded maps
    rows: int  # one batch's maps as rows on the tables' grids (the generator's kept for the whole batch)
    products: int  # one column chunk of a table's product, float32 and float64
    tables_on: str  # "device" or "host"

    @property
    def device(self) -> int:
        """Bytes on the mining device (the models, a batch, its rows, a product; the tables unless on the host)."""
        return self.models + self.batch + self.rows + self.products + (self.tables if self.tables_on == "device"
                                                                        else 0)

    @property
    def host(self) -> int:
        """Bytes of host memory the tables add (the process itself, Python and torch, not counted)."""
        return self.tables if self.tables_on == "host" else 0


@dataclass(frozen=True)
class MemoryRequest:
    """What :func:`estimate_memory` sizes: the run's grid, batch, table placement and product chunk."""

    grid: int | None = None  # the common grid (None: each pair's largest map)
    batch_size: int = 32
    tables: str = "device"  # "device" or "host"
    chunk_bytes: int = DEFAULT_CHUNK_BYTES


def _map_shapes(generator: Member, encoders: list[Member], device: torch.device) -> tuple[dict, int]:
    with torch.no_grad():
        z = generator.sample_latents(1, seed=0).to(device)
        images, maps = record_generator(generator, z)
        shapes = {generator.name: {layer: tuple(maps[layer].shape[1:]) for layer in generator.layers}}
        for encoder in encoders:
            encoded = record_encoder(encoder, images.clamp(0, 1))
            shapes[encoder.name] = {layer: tuple(encoded[layer].shape[1:]) for layer in encoder.layers}
    return shapes, images[0].numel()


@dataclass(frozen=True)
class MemberShapes:
    """What one probe image tells of a run's members: map shapes, the plan, the models' and image's size."""

    generator: str
    shapes: dict  # member -> layer -> (channels, height, width)
    image_numel: int
    layers: dict
    units: dict
    sides: dict
    grids: dict  # the default grid of each table (each pair's largest map)
    models: int  # bytes of every member's parameters and buffers

    def grids_for(self, grid: int | None) -> dict:
        """Each table's grid when the run asks for ``grid`` (None: the defaults)."""
        return dict(self.grids) if grid is None else dict.fromkeys(self.grids, grid)

    def smaller_grids(self, least: int) -> list[int]:
        """Every square map side of the members below the largest default grid, from ``least`` up, largest first."""
        top = max(self.grids.values())
        found = {side for per_member in self.sides.values() for side in per_member if side is not None}
        return sorted((side for side in found if least <= side < top), reverse=True)


def probe_members(generator: Member, encoders: list[Member]) -> MemberShapes:
    """Record one generated image through every member: what :func:`estimate_memory` sizes a run from.

        shapes = probe_members(gan, encoders); shapes.grids   # each table's default grid
    """
    device = generator.device
    shapes, image_numel = _map_shapes(generator, encoders, device)
    layers, units, sides, grids = plan(generator, encoders, None, device)
    models = sum(t.numel() * t.element_size() for m in [generator, *encoders]
                 for t in [*m.model.parameters(), *m.model.buffers()])
    return MemberShapes(generator.name, shapes, image_numel, layers, units, sides, grids, models)


def estimate_memory(generator: Member, encoders: list[Member], request: MemoryRequest | None = None) -> MemoryEstimate:
    """Bytes a Pearson mining run of these members needs, from one probe image's maps, before any mining.

        estimate_memory(gan, encoders, MemoryRequest(grid=56, batch_size=16)).device / 2**30   # GiB on the GPU

    Counts the models, the float64 tables, one batch's images and recorded maps, its rows
    (every model's at its own sides and carried down to where its groups meet the
    generator's, the generator's groups carried down kept for the batch; the rows of all
    models at once, as the CPU keeps their buffers between batches), and one product
    chunk. The Python process itself (about 0.5 GB with torch) is not counted.
    """
    request = request or MemoryRequest()
    check_tables(request.tables)
    return size_run(probe_members(generator, encoders), request)


def size_run(probe: MemberShapes, request: MemoryRequest) -> MemoryEstimate:
    """:func:`estimate_memory` from a probe already taken: one probe sizes a run at many grids or batches.

        size_run(probe_members(gan, encoders), MemoryRequest(grid=28)).device
    """
    check_tables(request.tables)
    layers, units, sides, grids = probe.layers, probe.units, probe.sides, probe.grids_for(request.grid)
    generator = probe.generator
    n_g = sum(units[generator])
    b = request.batch_size
    maps = sum(c * h * w for per_layer in probe.shapes.values() for c, h, w in per_layer.values())
    # recorded maps are copies: the forward pass holds its own activations beside them
    batch = 4 * b * (2 * maps + probe.image_numel)
    rows, carried, largest = 0, set(), 0
    for name in [e for e in probe.shapes if e != generator] + [generator]:
        grid = grids[name]
        groups = size_groups(layers[name], units[name], sides[name], grid)
        native = sum(4 * b * side * side * width(columns) for side, _, columns in groups)
        own = native
        for (side, _, columns), (g_side, _, g_columns), meet, which in meetings(
                size_groups(layers[generator], units[generator], sides[generator], grid), groups):
            if which == "model":  # the model's rows carried to the generator group's side, for this table
                own += 4 * b * meet * meet * width(columns)
            else:  # the generator group carried to the model's side, kept for the batch
                carried.add((grid, g_side, meet, width(g_columns)))
        largest = max(largest, own)
        # the generator's own table meets its rows centred below, not a copy; only its carried rows are new
        rows += own if name != generator else own - native
    for grid in set(grids.values()):  # the generator's layers centred at their own sides, per grid
        own = [grid if side is None or side > grid else side for side in sides[generator]]
        rows += 4 * b * sum(s * s * c for s, c in zip(own, units[generator]))
    rows += sum(4 * b * meet * meet * w for _, _, meet, w in carried)
    rows += 2 * largest  # resizing, then squaring while centring, one model's rows: two temporaries of their size
    widest = max(sum(units[name]) for name in units)
    products = int(1.5 * min(request.chunk_bytes, 8 * n_g * widest))
    return MemoryEstimate(probe.models, table_bytes(units, generator), batch, rows, products, request.tables)


def fit_memory(estimate: MemoryEstimate, device: str | torch.device, gpu_bytes: int | None = None,
               host_bytes: int | None = None) -> str:
    """Where the tables of a run with this estimate live within the budgets ("device" or "host"), or a ValueError.

        fit_memory(estimate_memory(gan, encoders, MemoryRequest(grid=56)), "cuda", 16 * 2**30, 12 * 2**30)

    On CUDA the tables stay on the GPU when everything fits there, else go to the host
    when they fit there; on the CPU everything is host memory. A budget of None is not
    checked. The error names the figures and what to change: the grid or the batch for the
    per-batch part, fewer encoders or no control for the tables.
    """
    gib = 2**30
    cuda = torch.device(device).type == "cuda"
    on_device = dataclasses.replace(estimate, tables_on="device")
    if not cuda:
        if host_bytes is None or on_device.device <= host_bytes:
            return "device"
        need, budget, where = on_device.device, host_bytes, "host"
    else:
        if gpu_bytes is None or on_device.device <= gpu_bytes:
            return "device"
        on_host = dataclasses.replace(estimate, tables_on="host")
        if on_host.device <= gpu_bytes and (host_bytes is None or on_host.host <= host_bytes):
            return "host"
        need, budget, where = (on_host.device, gpu_bytes, "GPU") if on_host.device > gpu_bytes else \
            (on_host.host, host_bytes, "host")
    per_batch = estimate.batch + estimate.rows
    levers = sorted([(per_batch, "a smaller grid or batch_size (one batch's maps and rows"),
                     (estimate.tables, "fewer encoders or no control (the float64 tables")], reverse=True)
    hint = " or ".join(f"{text}: {size / gib:.2f} GB)" for size, text in levers)
    raise ValueError(f"the mining run needs about {need / gib:.2f} GB of {where} memory (models "
                     f"{estimate.models / gib:.2f}, tables {estimate.tables / gib:.2f}, one batch "
                     f"{per_batch / gib:.2f}, products {estimate.products / gib:.2f} GB) but the budget is "
                     f"{budget / gib:.2f} GB; to fit, choose {hint}")


#: the smallest common grid a budget chooses on its own: ResNet50's last map is 7 x 7
LEAST_AUTO_GRID = 7


def fit_grid(generator: Member, encoders: list[Member], request: MemoryRequest, device: str | torch.device,
             gpu_bytes: int | None = None, host_bytes: int | None = None) -> tuple[int | None, str]:
    """The grid and the tables' place of a run within the budgets: the request's grid, or the largest that fits.

        grid, tables = fit_grid(gan, encoders, MemoryRequest(batch_size=8), "cuda", 16 * 2**30, 12 * 2**30)

    A request with a grid only has its tables placed (:func:`fit_memory`, whose error
    stands). Without one (None: each pair's largest map) the default is kept if it fits, or
    else the largest smaller map side of any member, down to :data:`LEAST_AUTO_GRID`, that
    fits, with a log line that says so; when none fits, the error gives the figures at the
    smallest grid tried and what else to change.
    """
    probe = probe_members(generator, encoders)
    tried = [request.grid] + ([] if request.grid is not None else probe.smaller_grids(LEAST_AUTO_GRID))
    for grid in tried:
        try:
            placement = fit_memory(size_run(probe, dataclasses.replace(request, grid=grid)), device, gpu_bytes,
                                   host_bytes)
        except ValueError as error:
            refusal = error
            continue
        if grid != request.grid:
            log.warning("grid: the largest maps' grid does not fit the memory budget; mining on a common grid of "
                        "%d (pass --grid to choose another)", grid)
        return grid, placement
    if len(tried) == 1:
        raise refusal
    raise ValueError(f"no common grid from the largest maps' down to {tried[-1]} fits; at grid {tried[-1]}, "
                     f"{refusal}") from None
