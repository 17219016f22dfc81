"""Figures: Shapes World samples with their ground truth, and activation heat maps.

    fig = world_figure(ShapesWorld().batch(6, seed=0)); fig.savefig("world.png")
"""

from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
import numpy as np
import torch

from rosetta_lite.world import WorldBatch


def _label_map(batch: WorldBatch, index: int) -> np.ndarray:
    """0 sky, 1 ground, 2 + slot for each visible object."""
    label = batch.masks["ground"][index].numpy().astype(np.int64)
    for slot, mask in enumerate(batch.object_masks[index].numpy()):
        label[mask] = 2 + slot
    return label


def world_figure(batch: WorldBatch, n: int | None = None) -> plt.Figure:
    """Columns of samples; rows: image, region labels, contours, one shape mask; caption below.

        world_figure(ShapesWorld(size=64).batch(4, seed=1))
    """
    n = min(n or len(batch), len(batch))
    rows = ("image", "regions", "contour", "class shape")
    fig, axes = plt.subplots(len(rows), n, figsize=(1.9 * n, 1.9 * len(rows) + 0.9), squeeze=False)
    for col in range(n):
        shape = batch.class_names[int(batch.labels[col])]
        panels = (
            batch.images[col].permute(1, 2, 0).numpy(),
            _label_map(batch, col),
            batch.masks["contour"][col].numpy(),
            batch.masks[f"shape:{shape}"][col].numpy(),
        )
        for row, (panel, title) in enumerate(zip(panels, rows)):
            ax = axes[row, col]
            ax.imshow(panel, cmap="tab10" if row == 1 else "gray", vmin=0, vmax=9 if row == 1 else 1,
                      interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(title)
        axes[0, col].set_title(f"class: {shape}", fontsize=9)
        axes[-1, col].set_xlabel("\n".join(textwrap.wrap(batch.captions[col], 24)), fontsize=7)
    fig.tight_layout()
    return fig


def heatmap_figure(images_bchw: torch.Tensor, maps: dict[str, torch.Tensor], units: int = 4,
                   size: int | None = None) -> plt.Figure:
    """Each image beside the maps of the first ``units`` channels of each recorded layer.

        with Trace(net, ["layer1"]) as t: net(x)
        heatmap_figure(images, t.outputs)
    """
    size = size or images_bchw.shape[-1]
    n = images_bchw.shape[0]
    cols = 1 + units * len(maps)
    fig, axes = plt.subplots(n, cols, figsize=(1.3 * cols, 1.3 * n + 0.4), squeeze=False)
    for row in range(n):
        axes[row, 0].imshow(images_bchw[row].permute(1, 2, 0).clamp(0, 1).numpy())
        col = 1
        for name, maps_bchw in maps.items():
            up = torch.nn.functional.interpolate(maps_bchw[row:row + 1, :units].float(), size=size,
                                                 mode="bilinear", align_corners=False)[0]
            for unit in range(min(units, up.shape[0])):
                axes[row, col].imshow(up[unit].numpy(), cmap="magma")
                if row == 0:
                    axes[row, col].set_title(f"{name}\nunit {unit}", fontsize=7)
                col += 1
    for ax in axes.flat:
        ax.set_xticks([]), ax.set_yticks([])
    fig.tight_layout()
    return fig
