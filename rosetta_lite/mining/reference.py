"""The float64 reference of mining: Pearson of float32 activations held at once, on a bounded sample.

    report = check_exactness(gan, encoders, ExactnessOptions(images=8, units=64, grid=56))
    report.errors["fp32"], report.describe()   # 3e-07, "checked 64 of 11904 units of biggan-deep-256 ..."
    float64_error(gan, encoders, images=64, batch_size=32, grid=8)   # {"fp32": 3e-07}

The reference holds every row of the checked images, but only of a sample of units (spread
evenly over each model's layers), resized to the run's own grids: its memory is
``8 * images * grid^2 * units`` bytes per model whatever the zoo, so the check runs at
every scale. The mined tables it is compared with come from a mining run of the same
images on the same plan.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from rosetta_lite.capture import maps_to_rows, record_encoder, record_generator
from rosetta_lite.device import check_precision, precision_context, resolve_device
from rosetta_lite.mining.loop import latents, mine
from rosetta_lite.mining.plan import plan
from rosetta_lite.mining.settings import check_tables
from rosetta_lite.zoo.member import Member


def latent_batches(gan: Member, images: int, batch_size: int, seed: int = 0,
                   device: str | torch.device = "cpu") -> Iterator[torch.Tensor]:
    """The latents ``[0, images)`` of stream ``seed`` in batches of ``batch_size`` (the last may be short).

        for z in latent_batches(gan, 64, 32): images = gan.generate(z)
    """
    for first in range(0, images, batch_size):
        yield latents(gan, seed, first, min(batch_size, images - first)).to(device)


#: units of each model the reference holds by default: the whole of a lite model, a sample of a full-scale one
DEFAULT_CHECK_UNITS = 256


@dataclass(frozen=True)
class ExactnessOptions:
    """What :func:`check_exactness` checks: images, units per model, the run's grid and placement, precisions.

        check_exactness(gan, encoders, ExactnessOptions(images=8, units=64, grid=56, device="cuda"))
    """

    images: int = 16  # the first latents of stream 0, mined and held
    batch_size: int = 16
    units: int = DEFAULT_CHECK_UNITS  # per model at most, spread evenly over its units (all when it has fewer)
    grid: int | None = None  # the run's grid (None: each pair's largest map, as mining)
    device: str = "cpu"
    precisions: tuple[str, ...] = ("fp32",)  # each mined once and compared with the one float32 reference
    tables: str = "auto"

    def check(self) -> None:
        """Refuse settings the check cannot run, saying what is allowed."""
        for name, value in (("images", self.images), ("batch_size", self.batch_size), ("units", self.units)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if isinstance(self.precisions, str) or not self.precisions:
            raise ValueError(f"precisions must be a non-empty tuple of precisions, e.g. ('fp32',), "
                             f"got {self.precisions!r}")
        for precision in self.precisions:
            check_precision(precision)
        check_tables(self.tables)
        resolve_device(self.device)


@dataclass(frozen=True)
class Exactness:
    """What :func:`check_exactness` compared and the largest difference found, per precision."""

    errors: dict[str, float]  # precision -> largest |mined - float64| over the checked pairs
    images: int
    units: dict[str, int]  # model -> units checked
    of_units: dict[str, int]  # model -> units it has
    grids: dict[str, int]  # encoder -> the grid of its table with the generator
    reference_bytes: int  # float64 rows the reference held

    def describe(self) -> str:
        """One sentence: what was checked and the largest difference, e.g. for a chapter to print."""
        models = ", ".join(f"{self.units[m]} of {self.of_units[m]} units of {m}" for m in self.units)
        grids = sorted(set(self.grids.values()))
        found = ", ".join(f"{p} {e:.1e}" for p, e in self.errors.items())
        return (f"checked {models} on {self.images} images at grid {'/'.join(map(str, grids))} "
                f"({self.reference_bytes / 2**20:.1f} MB of float64 rows): largest difference from float64 "
                f"Pearson {found}")


def spread_units(total: int, most: int) -> torch.Tensor:
    """``most`` unit indices spread evenly over ``range(total)`` (every one when ``total <= most``).

        spread_units(10, 4)   # tensor([0, 3, 6, 9])
    """
    if total <= most:
        return torch.arange(total)
    return torch.linspace(0, total - 1, most).round().long().unique()


def sampled_rows(maps: dict[str, torch.Tensor], layers: list[str], widths: list[int], chosen: torch.Tensor,
                 grid: int) -> torch.Tensor:
    """The rows of the ``chosen`` flat units only, on ``grid``: channels are picked before resizing.

        rows = sampled_rows(maps, gan.layers, units[gan.name], spread_units(11904, 64), grid=56)
    """
    picked, first = {}, 0
    for layer, width in zip(layers, widths):
        inside = chosen[(chosen >= first) & (chosen < first + width)] - first
        if len(inside):
            picked[layer] = maps[layer][:, inside.to(maps[layer].device)]
        first += width
    return maps_to_rows(picked, list(picked), grid)


def check_exactness(gan: Member, encoders: list[Member], options: ExactnessOptions | None = None,
                    **changes: Any) -> Exactness:
    """The mined tables against a float64 Pearson of float32 activations held at once, on a sample of units.

        report = check_exactness(gan, encoders, images=8, units=64, grid=56); print(report.describe())

    ``options`` (:class:`ExactnessOptions`) with ``changes`` applied say what. The reference
    is always the float32 models' maps, so a lower precision's error includes what its
    activations lose, not only its arithmetic. Dead units (no variance) are left out.
    """
    o = dataclasses.replace(options or ExactnessOptions(), **changes)
    o.check()
    if not encoders:
        raise ValueError("check_exactness needs at least one encoder to compare the generator with")
    layers, units, _, grids = plan(gan, encoders, o.grid, o.device)
    chosen = {name: spread_units(sum(widths), o.units) for name, widths in units.items()}
    rows_g: dict[int, list[torch.Tensor]] = {grid: [] for grid in {grids[e.name] for e in encoders}}
    rows_d: dict[str, list[torch.Tensor]] = {e.name: [] for e in encoders}
    with torch.no_grad(), precision_context("fp32", o.device):
        for z in latent_batches(gan, o.images, o.batch_size, device=o.device):
            generated, g_maps = record_generator(gan, z)
            for grid, held in rows_g.items():
                held.append(sampled_rows(g_maps, layers[gan.name], units[gan.name], chosen[gan.name], grid).double())
            del g_maps
            for e in encoders:
                maps = record_encoder(e, generated)
                rows_d[e.name].append(sampled_rows(maps, layers[e.name], units[e.name], chosen[e.name],
                                                   grids[e.name]).double())
    centred = {grid: _centred(torch.cat(held)) for grid, held in rows_g.items()}
    held_bytes = sum(a.numel() * 8 for a in centred.values())
    expected = {}
    for e in encoders:
        b = _centred(torch.cat(rows_d.pop(e.name)))
        held_bytes += b.numel() * 8
        a = centred[grids[e.name]]
        expected[e.name] = ((a.T @ b) / (a.norm(dim=0)[:, None] * b.norm(dim=0)[None, :])).cpu()
    del centred
    errors = {}
    g_index = chosen[gan.name]
    for precision in o.precisions:
        result = mine(gan, encoders, o.images, batch_size=o.batch_size, progress=False, device=o.device,
                      precision=precision, grid=o.grid, tables=o.tables)
        worst = 0.0
        for name, table in expected.items():
            acc = result.pairs[name]
            mined = result.similarity(name)[g_index][:, chosen[name]]
            live = torch.isfinite(table) & ~acc.dead_a().cpu()[g_index][:, None] & ~acc.dead_b().cpu()[chosen[name]]
            if live.any():  # a mined NaN where the reference has a number is an error, not a gap
                worst = max(worst, float((mined[live] - table[live]).abs().nan_to_num(torch.inf).max()))
        errors[precision] = worst
        del result
    return Exactness(errors, o.images, {m: len(c) for m, c in chosen.items()},
                     {m: sum(w) for m, w in units.items()}, {e.name: grids[e.name] for e in encoders}, held_bytes)


def _centred(rows: torch.Tensor) -> torch.Tensor:
    return rows - rows.mean(0)


def float64_error(gan: Member, encoders: list[Member], images: int, batch_size: int, device: str = "cpu",
                  precisions: tuple[str, ...] = ("fp32",), grid: int | None = None,
                  tables: str = "auto") -> dict[str, float]:
    """Per precision, the largest |mined - float64 Pearson| over up to :data:`DEFAULT_CHECK_UNITS` units a model.

        float64_error(gan, encoders, 64, 32)   # {"fp32": 3e-07}

    :func:`check_exactness` with its default sample of units; it says what it checked.
    """
    return check_exactness(gan, encoders, ExactnessOptions(images, batch_size, DEFAULT_CHECK_UNITS, grid, device,
                                                           tuple(precisions), tables)).errors
