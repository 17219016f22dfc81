"""The float64 reference of mining: Pearson of all float32 activations held at once.

    float64_error(gan, encoders, images=64, batch_size=32, grid=8)   # {"fp32": 3e-07}

Holds every row of every image in memory: for checking exactness on small runs only.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from rosetta_lite.capture import maps_to_rows, record_encoder, record_generator
from rosetta_lite.device import precision_context
from rosetta_lite.mining.loop import latents, mine
from rosetta_lite.mining.plan import plan
from rosetta_lite.zoo.member import Member


def latent_batches(gan: Member, images: int, batch_size: int, seed: int = 0,
                   device: str | torch.device = "cpu") -> Iterator[torch.Tensor]:
    """The latents ``[0, images)`` of stream ``seed`` in batches of ``batch_size`` (the last may be short).

        for z in latent_batches(gan, 64, 32): images = gan.generate(z)
    """
    for first in range(0, images, batch_size):
        yield latents(gan, seed, first, min(batch_size, images - first)).to(device)


def float64_error(gan: Member, encoders: list[Member], images: int, batch_size: int, device: str = "cpu",
                  precisions: tuple[str, ...] = ("fp32",), grid: int | None = None,
                  tables: str = "auto") -> dict[str, float]:
    """Per precision, the largest |mined - float64 Pearson of all float32 activations held at once|.

        float64_error(gan, encoders, 64, 32)   # {"fp32": 3e-07}

    The reference is always the float32 models' maps, so a lower precision's error
    includes what its activations lose, not only its arithmetic.
    """
    rows_g, rows_d = [], {e.name: [] for e in encoders}
    _, _, _, grids = plan(gan, encoders, grid, device)
    with torch.no_grad(), precision_context("fp32", device):
        for z in latent_batches(gan, images, batch_size, device=device):
            generated, g_maps = record_generator(gan, z)
            rows_g.append(maps_to_rows(g_maps, gan.layers, grids[encoders[0].name]).double())
            for encoder in encoders:
                rows_d[encoder.name].append(maps_to_rows(record_encoder(encoder, generated), encoder.layers,
                                                         grids[encoder.name]).double())
    a = torch.cat(rows_g)
    a = a - a.mean(0)
    expected = {}
    for encoder in encoders:
        b = torch.cat(rows_d.pop(encoder.name))
        b = b - b.mean(0)
        expected[encoder.name] = ((a.T @ b) / (a.norm(dim=0)[:, None] * b.norm(dim=0)[None, :])).cpu()
    del a, rows_g
    errors = {}
    for precision in precisions:
        result = mine(gan, encoders, images, batch_size=batch_size, progress=False, device=device, precision=precision,
                      grid=grid, tables=tables)
        worst = 0.0
        for name, table in expected.items():
            live = torch.isfinite(table)
            worst = max(worst, float((result.similarity(name)[live] - table[live]).abs().max()))
        errors[precision] = worst
    return errors
