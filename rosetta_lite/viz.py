"""Figures: Shapes World samples with their ground truth, and activation heat maps.

    fig = world_figure(ShapesWorld().batch(6, seed=0)); fig.savefig("world.png")
"""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
import torch

from rosetta_lite import zoo
from rosetta_lite.dictionary.units import strongest_latents, unit_maps
from rosetta_lite.evaluation.concepts import cluster_order
from rosetta_lite.world import EVAL_SEED, ShapesWorld, WorldBatch
from rosetta_lite.zoo.weights import read_manifest

if TYPE_CHECKING:
    from rosetta_lite.dictionary.rosetta import Cluster, RosettaDictionary
    from rosetta_lite.zoo.member import Member


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
    rows = ("image", "regions\n(sky, ground,\none per object)", "contours", "mask of the\nclass's shape")
    fig, axes = plt.subplots(len(rows), n, figsize=(2.1 * n, 2.1 * len(rows) + 1.3), squeeze=False)
    for col in range(n):
        shape = batch.class_names[int(batch.labels[col])]
        panels = (
            batch.images[col].permute(1, 2, 0).numpy(),
            _label_map(batch, col),
            batch.masks["contour"][col].numpy(),
            batch.masks[f"shape:{shape.split()[-1]}"][col].numpy(),  # "dots ring" names the shape last
        )
        for row, (panel, title) in enumerate(zip(panels, rows)):
            ax = axes[row, col]
            ax.imshow(panel, cmap="tab10" if row == 1 else "gray", vmin=0, vmax=9 if row == 1 else 1,
                      interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(title, fontsize=10)
        axes[0, col].set_title(f"class: {shape}", fontsize=11)
        axes[-1, col].set_xlabel("\n".join(textwrap.wrap(batch.captions[col], 26)), fontsize=9)
    fig.tight_layout()
    return fig


def heatmap_figure(images_bchw: torch.Tensor, maps: dict[str, torch.Tensor], units: int = 4,
                   size: int | None = None) -> plt.Figure:
    """Each image beside the maps of the first ``units`` channels of each recorded layer.

        with Trace(net, ["layer1"]) as t: net(x)
        heatmap_figure(images, t.outputs)
    """
    # a generator whose weights require grad (BigGAN) hands over images that carry it
    images_bchw = images_bchw.detach().float().cpu()
    maps = {name: m.detach().cpu() for name, m in maps.items()}
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


#: set by the book's build: figures leave plotly.js out, since every page loads it once from ``_static``
PLOTLY_FROM_PAGE = "ROSETTA_PLOTLY_FROM_PAGE"


def setup_notebook() -> None:
    """Make plotly figures render offline (no CDN): in a notebook with plotly.js embedded once per
    kernel, in the built book with plotly.js left to the page (:data:`PLOTLY_FROM_PAGE`).

        setup_notebook()
    """
    import os
    import re

    import plotly.io as pio
    from plotly.io._base_renderers import NotebookRenderer

    class PageRenderer(NotebookRenderer):
        # a 4.8 MB plotly.js inlined into every figure's page made chapter 02 weigh 5 MB
        def activate(self):
            pass  # the notebook renderer's activation displays the whole plotly.js once

        def to_mimebundle(self, fig_dict):
            return {"text/html": pio.to_html(fig_dict, include_plotlyjs=False, include_mathjax=False,
                                             full_html=False, validate=False)}

    class OfflineNotebookRenderer(NotebookRenderer):
        # plotly's notebook renderer hard-codes a CDN MathJax into every figure; these
        # figures have no TeX, and the book serves its own MathJax (rosetta_lite.book.build).
        def to_mimebundle(self, fig_dict):
            bundle = super().to_mimebundle(fig_dict)
            bundle["text/html"] = re.sub(r'<script src="https?://[^"]*mathjax[^"]*"></script>', "",
                                         bundle["text/html"])
            return bundle

    pio.renderers["notebook_offline"] = OfflineNotebookRenderer()
    pio.renderers["book_page"] = PageRenderer()
    pio.renderers.default = "book_page" if os.environ.get(PLOTLY_FROM_PAGE) else "notebook_offline"


def correlation_heatmap(corr_gd: torch.Tensor, generator: str, encoder: str, max_units: int = 200,
                        title: str | None = None):
    """An interactive heat map of a (generator units x encoder units) correlation table.

        correlation_heatmap(d.similarity("lite-clip"), "lite-gan", "lite-clip").show()

    Rows and columns are ordered by each unit's best correlation and cut to ``max_units``,
    so the strongest structure is on screen; hover shows the unit indices.
    """
    import plotly.graph_objects as go

    table = corr_gd.float()
    rows = table.abs().amax(1).argsort(descending=True)[:max_units]
    cols = table.abs().amax(0).argsort(descending=True)[:max_units]
    shown = table[rows][:, cols]
    figure = go.Figure(go.Heatmap(
        z=shown.numpy(), x=[str(int(c)) for c in cols], y=[str(int(r)) for r in rows], zmin=-1, zmax=1,
        colorscale="RdBu_r", colorbar={"title": "Pearson r"},
        hovertemplate=f"{generator} unit %{{y}}<br>{encoder} unit %{{x}}<br>r = %{{z:.3f}}<extra></extra>"))
    figure.update_layout(title=title or f"{generator} x {encoder}: the {len(rows)} x {len(cols)} most correlated units",
                         xaxis={"title": f"{encoder} unit", "type": "category", "showticklabels": False},
                         yaxis={"title": f"{generator} unit", "type": "category", "showticklabels": False},
                         width=640, height=560)
    return figure


def unit_grid(images_bchw: torch.Tensor, columns: dict[str, torch.Tensor], row_labels: list[str] | None = None,
              title: str | None = None) -> plt.Figure:
    """Rows of (image, then one heat map per column) with the maps laid over the image.

        unit_grid(images, {"lite-gan 12": maps_b_hw, "lite-clip 40": maps2_b_hw})

    ``columns`` maps a title to maps (B, H, W) at the image size, one per row.
    """
    images_bchw = images_bchw.detach().float().cpu()
    columns = {name: maps.detach().float().cpu() for name, maps in columns.items()}
    n, cols = images_bchw.shape[0], 1 + len(columns)
    fig, axes = plt.subplots(n, cols, figsize=(1.6 * cols, 1.6 * n + 0.5), squeeze=False)
    for row in range(n):
        image = images_bchw[row].permute(1, 2, 0).clamp(0, 1).numpy()
        axes[row, 0].imshow(image)
        if row_labels:
            axes[row, 0].set_ylabel(row_labels[row], fontsize=8)
        for col, (name, maps) in enumerate(columns.items(), start=1):
            axes[row, col].imshow(image)
            axes[row, col].imshow(maps[row].numpy(), cmap="magma", alpha=0.7)
            if row == 0:
                axes[row, col].set_title(name, fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([]), ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def cluster_maps(dictionary: RosettaDictionary, generator: Member, encoders: dict, z: torch.Tensor, cluster: Cluster,
                 size: int = 64):
    """A cluster's heat maps on generated images: (images, one (B, size, size) map per model, their unit names).

        images, maps, names = cluster_maps(d, gan, run.members, gan.sample_latents(3, seed=0), d.clusters[0])

    The cluster's first generator unit and, for every encoder, its member unit most
    correlated with that generator unit; maps are z-scores of the mining statistics.
    """
    with torch.no_grad():
        native = generator.generate(z).clamp(0, 1)
    images = torch.nn.functional.interpolate(native, size=(size, size), mode="bilinear", align_corners=False)
    g_unit = cluster.generator_units[0]
    maps = [unit_maps(generator, z, [g_unit], dictionary, size)[:, 0]]
    names = [dictionary.unit_name(dictionary.generator, g_unit)]
    for encoder in dictionary.encoders:
        corr = dictionary.similarity(encoder)
        best = max(cluster.members[encoder], key=lambda unit: float(corr[g_unit, unit]))
        maps.append(unit_maps(encoders[encoder], native, [best], dictionary, size, name=encoder)[:, 0])
        names.append(dictionary.unit_name(encoder, best))
    return images, maps, names


def _column_title(model: str) -> str:
    return model.replace("@untrained", "\n(untrained)")


def _cluster_label(cluster) -> str:
    label = cluster.concept or f"cluster {cluster.id}"
    return f"{label}\n" + (f"IoU {cluster.iou:.2f}" if cluster.iou is not None else f"r {cluster.score:.2f}")


def dictionary_figure(dictionary: RosettaDictionary, generator: Member, encoders: dict, z: torch.Tensor,
                      clusters: list[int] | None = None, size: int = 64) -> plt.Figure:
    """The paper's Figure 2: one row per concept, one column per model, heat maps on one image.

        dictionary_figure(d, gan, {e.name: e for e in encoders}, gan.sample_latents(1, seed=3))

    Each row shows, for the first generated image of ``z``, the maps of ``cluster_maps``.
    """
    chosen = clusters if clusters is not None else list(range(min(6, len(dictionary.clusters))))
    per_cluster = [cluster_maps(dictionary, generator, encoders, z[:1], dictionary.clusters[i], size) for i in chosen]
    images = torch.cat([images for images, _, _ in per_cluster])
    columns = {_column_title(model): torch.cat([maps[col] for _, maps, _ in per_cluster])
               for col, model in enumerate([dictionary.generator] + dictionary.encoders)}
    return unit_grid(images, columns, [_cluster_label(dictionary.clusters[i]) for i in chosen])


def dictionary_sheet(dictionary: RosettaDictionary, generator: Member, encoders: dict,
                     control: RosettaDictionary | None = None, images: int = 2, size: int = 48, pool: int = 64,
                     other: str = "control") -> plt.Figure:
    """Every cluster of a labelled dictionary, learned concepts first, each on the images that drive it hardest.

        dictionary_sheet(run.trained, run.generator, run.members, control=run.control)

    Rows come in :func:`~rosetta_lite.evaluation.concepts.cluster_order` (label the
    dictionaries first, e.g. with ``concept_report``), ``images`` rows a cluster, each on one
    of its :func:`~rosetta_lite.dictionary.units.strongest_latents` of a pool of ``pool``
    (latent stream 0);
    the first row of a cluster says its concept, IoU and whether the control has it. Columns
    are the maps of :func:`cluster_maps`: the generator unit and each encoder's buddy.
    ``other`` names ``control`` in the rows' words (the control's own sheet: "trained").
    """
    order = cluster_order(dictionary, control, other)
    if not order:
        raise ValueError("the dictionary has no cluster to show")
    clusters = [dictionary.clusters[index] for index, _ in order]
    latents = strongest_latents(generator, dictionary, clusters, n=images, pool=pool)
    per_cluster = [cluster_maps(dictionary, generator, encoders, z, c, size) for z, c in zip(latents, clusters)]
    columns = {_column_title(model): torch.cat([maps[col] for _, maps, _ in per_cluster])
               for col, model in enumerate([dictionary.generator] + dictionary.encoders)}
    labels = []
    for cluster, (_, what) in zip(clusters, order):
        labels += [f"{_cluster_label(cluster)}\n{what.replace(', ', chr(10))}"] + [""] * (images - 1)
    return unit_grid(torch.cat([shown for shown, _, _ in per_cluster]), columns, labels)


def cluster_figure(dictionary: RosettaDictionary, generator: Member, encoders: dict, z: torch.Tensor, cluster: Cluster,
                   size: int = 64) -> plt.Figure:
    """One concept on several generated images: a row per image of ``z``, a column per model.

        cluster_figure(d, gan, run.members, gan.sample_latents(3, seed=3), d.clusters[0])
    """
    images, maps, names = cluster_maps(dictionary, generator, encoders, z, cluster, size)
    columns = {_column_title(name).replace(":", "\n", 1): m for name, m in zip(names, maps)}
    return unit_grid(images, columns, [f"image {i}" for i in range(len(images))])


def best_correlation_figure(trained: RosettaDictionary, control: RosettaDictionary | None = None) -> plt.Figure:
    """Per encoder, the distribution of each generator unit's best correlation, trained vs untrained.

        best_correlation_figure(*load_dictionaries("runs/lite"))
    """
    fig, axes = plt.subplots(1, len(trained.encoders), figsize=(2.6 * len(trained.encoders), 2.4), squeeze=False)
    for ax, encoder in zip(axes[0], trained.encoders):
        best = trained.similarity(encoder).amax(1).numpy()
        ax.hist(best, bins=30, range=(0, 1), alpha=0.7, label="trained")
        if control is not None:
            twin = next(e for e in control.encoders if e.startswith(encoder))
            ax.hist(control.similarity(twin).amax(1).numpy(), bins=30, range=(0, 1), alpha=0.6, label="untrained")
        ax.set_title(encoder, fontsize=8)
        ax.set_xlabel("best r of a generator unit", fontsize=7)
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def best_buddy_figure(dictionary: RosettaDictionary, generator: Member, encoder: Member, pairs: int = 4,
                      images: int = 3, seed: int = 0, size: int = 64) -> plt.Figure:
    """The strongest best-buddy pairs of one encoder: each pair's two maps on the same images.

        best_buddy_figure(d, gan, clip, pairs=4)
    """
    rows = dictionary.buddies[encoder.name][:pairs]
    z = generator.sample_latents(images, seed=seed)
    with torch.no_grad():
        native = generator.generate(z).clamp(0, 1)
    shown = torch.nn.functional.interpolate(native, size=(size, size), mode="bilinear", align_corners=False)
    g_maps = unit_maps(generator, z, [r[0] for r in rows], dictionary, size)
    d_maps = unit_maps(encoder, native, [r[1] for r in rows], dictionary, size)
    columns = {}
    for i, (g_unit, d_unit, corr) in enumerate(rows):
        columns[f"G {dictionary.unit_name(dictionary.generator, g_unit).split(':', 1)[1]}\nr = {corr:.2f}"] = g_maps[:, i]
        columns[f"{encoder.name}\n{dictionary.unit_name(encoder.name, d_unit).split(':', 1)[1]}"] = d_maps[:, i]
    return unit_grid(shown, columns)


def samples_figure(generators: Member | list[Member] | tuple[Member, ...], world: ShapesWorld, n: int = 32,
                   seed: int = 0) -> plt.Figure:
    """Samples of one or more generators beside Shapes World images, one grid each.

        samples_figure([zoo.load("lite-renderer"), zoo.load("lite-gan")], ShapesWorld())
    """
    import torchvision

    generators = generators if isinstance(generators, (list, tuple)) else [generators]
    panels = []
    with torch.no_grad():
        for generator in generators:
            images = generator.generate(generator.sample_latents(n, seed=seed)).clamp(0, 1)
            panels.append((images, f"{generator.name} samples"))
    panels.append((world.batch(n, seed=EVAL_SEED).images, "Shapes World"))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 4.8), squeeze=False)
    for ax, (images, title) in zip(axes[0], panels):
        grid = torchvision.utils.make_grid(images, nrow=8, padding=1, pad_value=1.0)
        ax.imshow(grid.permute(1, 2, 0).numpy())
        ax.set_title(title)
        ax.axis("off")
    fig.tight_layout()
    return fig


def zoo_table(scale: str = "lite"):
    """One row per member: kind, what it was trained for, its measured quality figures.

        zoo_table("lite")
    """
    import pandas as pd

    manifest = read_manifest()["members"]
    rows = []
    for row in zoo.describe(scale):
        entry = manifest.get(row["name"], {})
        quality = ", ".join(f"{k} {v}" for k, v in entry.get("quality", {}).items() if not isinstance(v, list))
        seconds = entry.get("train_seconds")
        note = entry.get("train_note")  # e.g. trained on fewer threads than the recipe's 2
        gates = entry.get("gates", {})
        missed = [figure for figure, met in gates.items() if not met]
        verdict = (f"misses {', '.join(missed)}" if missed else f"all {len(gates)} met") if gates else "none set"
        rows.append(row | {"quality (held-out world)": quality or "not shipped", "gates": verdict,
                           "train s": f"{seconds} ({note})" if note and seconds else seconds})
    return pd.DataFrame(rows).set_index("name")


def gate_table():
    """One row per gate of each lite member: its figures as the manifest records them, the lowest passing values, met or not.

        gate_table()
    """
    import pandas as pd

    from rosetta_lite.train.recipes import GATES, gate_results

    manifest = read_manifest()["members"]
    rows = []
    for name, gates in GATES.items():
        quality = manifest.get(name, {}).get("quality", {})
        met = gate_results(name, quality)
        for gate, figures in gates.items():
            shown = " or ".join(f"{f} {quality[f]:.3f}" if f in quality else f"{f} not measured" for f in figures)
            needed = " or ".join(f"{f} >= {lowest:g}" for f, lowest in figures.items())
            rows.append({"member": name, "gate": gate, "figure": shown, "target": needed,
                         "met": "yes" if met[gate] else "no"})
    return pd.DataFrame(rows).set_index(["member", "gate"])


def image_rows(rows: dict[str, torch.Tensor], n: int | None = None, cmap_maps: str = "magma"):
    """A figure with one row per entry: images (B, 3, H, W) in [0, 1] or maps (B, 1, H, W) as heat maps.

        image_rows({"before": result.before, "after": result.after, "edited map": result.targets["b16"][:, :1]})
    """
    import matplotlib.pyplot as plt

    n = n or min(len(v) for v in rows.values())
    fig, axes = plt.subplots(len(rows), n, figsize=(1.6 * n, 1.7 * len(rows)), squeeze=False)
    for r, (label, values) in enumerate(rows.items()):
        for c in range(n):
            ax = axes[r, c]
            v = values[c].detach().float().cpu()
            if v.shape[0] == 3:
                ax.imshow(v.clamp(0, 1).permute(1, 2, 0).numpy())
            else:
                ax.imshow(v[0].numpy(), cmap=cmap_maps)
            ax.set_xticks([]), ax.set_yticks([])
        axes[r, 0].set_ylabel(label, fontsize=8)
    fig.tight_layout()
    return fig


def census_figure(report: dict, top: int = 12) -> plt.Figure:
    """Units per concept, trained beside untrained, one panel per member (a census's JSON).

        census_figure(census(CensusOptions(images=300)))

    Concepts are those the trained member or its copy holds most, at most ``top`` a panel;
    the count axis is logarithmic, since sky and ground fill hundreds of a ViT's units.
    """
    members = report["members"]
    if not members:
        raise ValueError("the census holds no member")
    columns = min(3, len(members))
    rows_of_panels = -(-len(members) // columns)
    fig, axes = plt.subplots(rows_of_panels, columns, figsize=(3.3 * columns, 3.2 * rows_of_panels), squeeze=False)
    for ax in axes.flat[len(members):]:
        ax.set_visible(False)
    for ax, (name, m) in zip(axes.flat, members.items()):
        names = sorted(set(m["trained"]) | set(m["untrained"]),
                       key=lambda c: -max(m["trained"].get(c, 0), m["untrained"].get(c, 0)))[:top]
        rows = np.arange(len(names))
        ax.barh(rows - 0.2, [m["trained"].get(c, 0) for c in names], 0.4, label="trained", color="tab:blue")
        ax.barh(rows + 0.2, [m["untrained"].get(c, 0) for c in names], 0.4, label="untrained", color="tab:gray")
        ax.set_yticks(rows, [c.replace("shape:", "").replace("colour:", "colour ") for c in names], fontsize=7)
        ax.invert_yaxis()
        ax.set_xscale("symlog", linthresh=1)
        ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda value, _: f"{value:g}"))
        ax.set_title(f"{name} ({m['units']} units)", fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
    axes[0, 0].legend(fontsize=7, loc="lower right")
    fig.supxlabel("units labelled with the concept (IoU above chance >= "
                  f"{report['settings']['min_iou']})", fontsize=8)
    fig.tight_layout()
    return fig


def null_figure(report: dict) -> plt.Figure:
    """Rosetta neurons, clusters and learned clusters against K: trained, control and shuffled (a null report).

        null_figure(null_report("runs/lite"))

    The trained zoo means something only where its line leaves the two nulls'.
    """
    rows = report["rows"]
    if not rows:
        raise ValueError("the null report holds no K")
    ks = [row["k"] for row in rows]
    panels = (("n_rosetta", "Rosetta neurons"), ("n_clusters", "clusters"),
              ("n_learned", "learned clusters\n(not sky, ground, colour)"))
    styles = {"trained": ("tab:blue", "o"), "control": ("tab:gray", "s"), "shuffled": ("tab:orange", "^")}
    fig, axes = plt.subplots(1, len(panels), figsize=(9.5, 2.9))
    for ax, (key, title) in zip(axes, panels):
        for null, (colour, marker) in styles.items():
            ax.plot(ks, [row[null][key] for row in rows], marker=marker, color=colour, label=null)
        ax.axvline(report["operating_k"], color="black", lw=0.8, ls=":")
        ax.set_title(title, fontsize=9)
        ax.set_xticks(ks)
        ax.set_xlabel("K (best buddies among the top K)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_ylim(bottom=0)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig
