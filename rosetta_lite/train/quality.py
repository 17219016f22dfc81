"""Gate measurements of the lite zoo's encoders: floats (``linear_probe_by_scene``: a table).

    from rosetta_lite.train.quality import classification_accuracy
    acc = classification_accuracy(net, "lite-resnet-sup")       # world seed 7, held out

Every measurement draws its images from the evaluation stream (world seed 7) that no
training run uses (training seeds are >= 1000). Functions take images in [0, 1] and
normalise them per member (``rosetta_lite.zoo.lite_arch.normalize``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from rosetta_lite.world import COLOURS, EVAL_SEED, FILLS, GROUNDS, SHAPES, SKIES, ShapesWorld
from rosetta_lite.zoo.lite_arch import normalize

if TYPE_CHECKING:
    import pandas as pd


def _world(size: int = 32, **settings):
    return ShapesWorld(size=size, **settings)


def _batches(n: int, batch_size: int, seed: int, start: int, world=None):
    world = world or _world()
    for s in range(start, start + n, batch_size):
        yield world.batch(min(batch_size, start + n - s), seed=seed, start=s)


@torch.no_grad()
def encode(model: nn.Module, member: str, images: torch.Tensor) -> torch.Tensor:
    """A member's global feature vector for images in [0, 1]: (B, D).

    ResNets: average-pooled last stage (before any classifier); ViTs: the final
    normalised class token; CLIP: the image embedding (``encode_image``).
    """
    x = normalize(images, member)
    if hasattr(model, "encode_image"):
        return model.encode_image(x)
    if hasattr(model, "forward_head"):
        return model.forward_head(model.forward_features(x), pre_logits=True)
    return model(x)


@torch.no_grad()
def classification_accuracy(model: nn.Module, member: str = "lite-resnet-sup", n: int = 2000,
                            seed: int = EVAL_SEED, batch_size: int = 250, **world_settings: Any) -> float:
    """Fraction of held-out scenes whose label (largest object's shape) ``model`` predicts.

    ``world_settings`` (e.g. ``max_objects=1``) go to ``ShapesWorld``.
    """
    model.eval()
    correct = 0
    for batch in _batches(n, batch_size, seed, 0, _world(**world_settings)):
        logits = model(normalize(batch.images, member))
        correct += int((logits.argmax(1) == batch.labels).sum())
    return correct / n


def fit_linear_probe(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor,
                     test_y: torch.Tensor, classes: Optional[int] = None, weight_decay: float = 1e-4,
                     iters: int = 200) -> float:
    """Multinomial logistic regression (L-BFGS on standardised features); test accuracy."""
    predicted = linear_probe_predictions(train_x, train_y, test_x, classes, weight_decay, iters)
    return float((predicted == test_y).double().mean())


def linear_probe_predictions(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor,
                             classes: Optional[int] = None, weight_decay: float = 1e-4,
                             iters: int = 200) -> torch.Tensor:
    """``fit_linear_probe``'s predicted class for every test row: (N_test,) int64."""
    classes = classes or int(train_y.max()) + 1
    mean, std = train_x.mean(0), train_x.std(0).clamp_min(1e-6)
    a, b = ((train_x - mean) / std).double(), ((test_x - mean) / std).double()
    w = torch.zeros(a.shape[1], classes, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, bias], lr=1, max_iter=iters, history_size=20,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(a @ w + bias, train_y) + weight_decay * (w * w).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    with torch.no_grad():
        return (b @ w + bias).argmax(1)


PROBE_LABELS = ("class", "shape", "fill")


@torch.no_grad()
def linear_probe_accuracy(model: nn.Module, member: str, n_train: int = 4000, n_test: int = 2000,
                          seed: int = EVAL_SEED, batch_size: int = 250,
                          feature_fn: Optional[Callable] = None, label: str = "class", **world_settings: Any) -> float:
    """Accuracy of a linear probe on frozen features (``encode``) of held-out scenes.

        linear_probe_accuracy(net, "lite-resnet-dino", label="fill", fills=FILLS, max_objects=1)

    The probe trains on scenes 0..n_train-1 of the evaluation stream and is tested on
    the next n_test scenes; the encoder never saw either (it trained on seeds >= 1000).
    ``label`` is the largest object's "class" (its shape, or fill and shape in a textured
    world), its "shape" or its "fill". ``world_settings`` (e.g. ``max_objects=1``: one
    object, so the label is unambiguous) go to ``ShapesWorld``.
    """
    x, y, _ = _probe_features(model, member, n_train + n_test, seed, batch_size, feature_fn, label,
                              **world_settings)
    return fit_linear_probe(x[:n_train], y[:n_train], x[n_train:], y[n_train:])


def class_parts(class_names: Sequence[str], label: str) -> torch.Tensor:
    """Per class index, the index of its ``label`` part: ``class_parts(("dots circle",), "shape")`` is [0].

    A textured world's class is "<fill> <shape>"; a plain world's is the shape, its fill plain.
    """
    if label not in PROBE_LABELS:
        raise ValueError(f"label must be one of {list(PROBE_LABELS)}, got {label!r}")
    if label == "class":
        return torch.arange(len(class_names))
    if label == "shape":
        return torch.tensor([SHAPES.index(name.split()[-1]) for name in class_names])
    fills = list(FILLS)
    return torch.tensor([fills.index(name.split()[0]) if " " in name else fills.index("plain")
                         for name in class_names])


@torch.no_grad()
def shape_probes(model: nn.Module, member: str, init_seed: int, n_train: int = 4000,
                 n_test: int = 2000, **world_settings: Any) -> dict[str, float]:
    """The probes every encoder's gates read: trained on all and on one-object scenes, untrained.

        shape_probes(zoo.load("lite-vit-dino").model, "lite-vit-dino", init_seed=1000)

    ``probe_untrained_one_object`` reads the member's architecture as its recipe initialised
    it (``init_seed``, the recipe's seed) before any step; ``probe_gain`` is what training
    added on one-object scenes, where the label is the shape alone. Every probe reads the
    largest object's shape; in a textured world (``world_settings`` go to ``ShapesWorld``)
    ``fill_probe_one_object`` and its untrained twin read its fill as well.
    """
    from rosetta_lite.train.loop import seed_everything
    from rosetta_lite.zoo.lite_arch import build_member

    seed_everything(init_seed)
    untrained = build_member(member).eval()
    one = {**world_settings, "max_objects": 1}
    # the gates ask for shape knowledge in every world; a textured world adds the fill, probed on its own
    figures = {"probe": linear_probe_accuracy(model, member, n_train, n_test, label="shape", **world_settings),
               "probe_one_object": linear_probe_accuracy(model, member, n_train, n_test, label="shape", **one),
               "probe_untrained_one_object": linear_probe_accuracy(untrained, member, n_train, n_test,
                                                                   label="shape", **one)}
    figures["probe_gain"] = figures["probe_one_object"] - figures["probe_untrained_one_object"]
    if len(_world(**world_settings).config.fills) > 1:
        figures["fill_probe_one_object"] = linear_probe_accuracy(model, member, n_train, n_test, label="fill", **one)
        figures["fill_probe_untrained_one_object"] = linear_probe_accuracy(untrained, member, n_train, n_test,
                                                                           label="fill", **one)
    return figures


def _probe_features(model, member, n, seed, batch_size, feature_fn=None, label="class", **world_settings):
    """Features, labels and each scene's objects' visible pixels (N, max_objects)."""
    model.eval()
    feature_fn = feature_fn or (lambda images: encode(model, member, images))
    world = _world(**world_settings)
    parts = class_parts(world.class_names, label)
    feats, labels, pixels = [], [], []
    for batch in _batches(n, batch_size, seed, 0, world):
        feats.append(feature_fn(batch.images).float().flatten(1))
        labels.append(parts[batch.labels])
        pixels.append(batch.object_masks.flatten(2).sum(-1))
    return torch.cat(feats), torch.cat(labels), torch.cat(pixels)


SIZE_RATIO_BINS: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)


@torch.no_grad()
def linear_probe_by_scene(model: nn.Module, member: str, n_train: int = 4000, n_test: int = 2000,
                          seed: int = EVAL_SEED, batch_size: int = 250) -> "pd.DataFrame":
    """The gate's linear probe, its test scenes split by what makes the label hard.

        linear_probe_by_scene(zoo.load("lite-resnet-dino").model, "lite-resnet-dino")

    One row per group of test scenes (all; one, two, three objects; scenes of two or
    more objects by the second-largest object's visible area over the largest's, in
    ``SIZE_RATIO_BINS``) with its ``scenes`` and probe ``accuracy``. The label is the
    largest object's shape, so near ties (ratio 0.75 or more) ask the features to rank
    two objects by size. The probe is fitted once, exactly as ``linear_probe_accuracy``'s.
    """
    import pandas as pd

    x, y, pixels = _probe_features(model, member, n_train + n_test, seed, batch_size, None, "class")
    predicted = linear_probe_predictions(x[:n_train], y[:n_train], x[n_train:])
    correct, pixels = (predicted == y[n_train:]).double(), pixels[n_train:].float()
    objects = (pixels > 0).sum(1)
    top2 = torch.cat([pixels, torch.zeros_like(pixels[:, :1])], 1).topk(2, dim=1).values
    ratio = top2[:, 1] / top2[:, 0].clamp_min(1)
    groups = {"all": torch.ones_like(objects, dtype=torch.bool)}
    most = int(objects.max())
    groups.update({f"{k} object{'s' * (k > 1)}": objects == k for k in range(1, most + 1)})
    bins = SIZE_RATIO_BINS
    for i, (lo, hi) in enumerate(zip(bins[:-1], bins[1:])):
        upper = ratio <= hi if i == len(bins) - 2 else ratio < hi
        groups[f"second / largest {lo:g}-{hi:g}"] = (objects > 1) & (ratio >= lo) & upper
    rows = {name: {"scenes": int(m.sum()),
                   "accuracy": float(correct[m].mean()) if m.any() else float("nan")}
            for name, m in groups.items()}
    return pd.DataFrame.from_dict(rows, orient="index")


SHAPE_TEMPLATES: tuple[str, ...] = (
    "a {size} {colour} {shape}",
    "a {size} {colour} {shape} on {ground} ground under a {sky} sky",
)


def shape_prompts(shape: str, templates: Sequence[str] = SHAPE_TEMPLATES) -> list[str]:
    """Prompts naming one shape in the world's caption style, over sizes, colours and scenes.

    Zero-shot CLIP averages the text embeddings of all prompts of a class (prompt
    ensembling, as in the CLIP paper); these prompts never name the image's own colours.
    A textured world's class ("checks circle") is named as its captions name it ("checked circle").
    """
    if " " in shape:
        fill, shape = shape.split(" ")
        shape = f"{FILLS[fill]} {shape}"
    grounds, skies = list(GROUNDS), list(SKIES)
    out = []
    for t in templates:
        for i, colour in enumerate(COLOURS):
            for size in ("small", "medium", "large"):
                out.append(t.format(size=size, colour=colour, shape=shape,
                                    ground=grounds[i % len(grounds)], sky=skies[(i // 2) % len(skies)]))
    return out


@torch.no_grad()
def clip_text_classifier(model: nn.Module, tokenizer: Callable[[list[str]], torch.Tensor], class_names: Sequence[str],
                         prompts: Optional[Callable[[str], list[str]]] = None) -> torch.Tensor:
    """(C, D) unit class embeddings: mean of the normalised embeddings of each class's prompts."""
    prompts = prompts or shape_prompts
    rows = []
    for name in class_names:
        t = F.normalize(model.encode_text(tokenizer(prompts(name))), dim=-1).mean(0)
        rows.append(F.normalize(t, dim=-1))
    return torch.stack(rows)


@torch.no_grad()
def zero_shot_accuracy(model: nn.Module, tokenizer: Callable[[list[str]], torch.Tensor], member: str = "lite-clip",
                       n: int = 2000, seed: int = EVAL_SEED, batch_size: int = 250,
                       prompts: Optional[Callable[[str], list[str]]] = None, **world_settings: Any) -> float:
    """Zero-shot classification of held-out scenes (their label: shape, and fill if textured) from text
    prompts (no labels used)."""
    model.eval()
    world = _world(**world_settings)
    classifier = clip_text_classifier(model, tokenizer, world.class_names, prompts)
    correct = 0
    for batch in _batches(n, batch_size, seed, 0, world):
        img = F.normalize(model.encode_image(normalize(batch.images, member)), dim=-1)
        correct += int(((img @ classifier.T).argmax(1) == batch.labels).sum())
    return correct / n


@torch.no_grad()
def retrieval_top_k(model: nn.Module, tokenizer: Callable[[list[str]], torch.Tensor], member: str = "lite-clip",
                    n: int = 1000, group: int = 100, k: int = 5, seed: int = EVAL_SEED,
                    **world_settings: Any) -> dict[str, float]:
    """Caption-to-image (and image-to-caption) top-k retrieval within groups of ``group`` scenes.

    Returns {"text_to_image": ..., "image_to_text": ...}: the fraction of queries whose
    true partner is among the k best of the group. Chance is k / group.
    """
    model.eval()
    t2i = i2t = 0
    for batch in _batches(n, group, seed, 0, _world(**world_settings)):
        img = F.normalize(model.encode_image(normalize(batch.images, member)), dim=-1)
        txt = F.normalize(model.encode_text(tokenizer(batch.captions)), dim=-1)
        sim = txt @ img.T  # (texts, images)
        target = torch.arange(len(batch))[:, None]
        kk = min(k, len(batch))
        t2i += int((sim.topk(kk, dim=1).indices == target).any(1).sum())
        i2t += int((sim.T.topk(kk, dim=1).indices == target).any(1).sum())
    return {"text_to_image": t2i / n, "image_to_text": i2t / n}


def psnr_from_mse(mse: float, peak: float = 1.0) -> float:
    return float("inf") if mse <= 0 else 10 * math.log10(peak * peak / mse)


@torch.no_grad()
def mae_psnr(mae: nn.Module, n: int = 1000, seed: int = EVAL_SEED, batch_size: int = 250,
             mask_seed: int = 0, **world_settings: Any) -> dict[str, float]:
    """PSNR (pixels in [0, 1]) of a masked autoencoder's reconstruction of the masked patches.

    ``mae`` is a ``rosetta_lite.train.mae.MaskedAutoencoder``. Baselines on the same
    masked patches: each image's mean colour of its visible patches ("mean_colour"),
    and the evaluation set's global mean colour ("global_mean").
    """
    mae.eval()
    gen = torch.Generator().manual_seed(mask_seed)
    err = base = glob = 0.0
    count = 0
    batches = list(_batches(n, batch_size, seed, 0, _world(**world_settings)))
    global_mean = torch.cat([b.images for b in batches]).mean(dim=(0, 2, 3))  # (3,)
    for batch in batches:
        pred, target, mask = mae.reconstruct(batch.images, gen)  # pixels (B, N, P*P*3) in [0, 1]
        m = mask.bool()
        c = 3
        tp = target.view(*target.shape[:2], -1, c)  # (B, N, P*P, 3)
        visible = (~m).float()[..., None, None]
        mean_col = (tp * visible).sum((1, 2)) / (visible.sum((1, 2)) * tp.shape[2]).clamp_min(1)
        err += float(((pred.clamp(0, 1) - target) ** 2)[m].sum())
        base += float(((mean_col[:, None, None, :] - tp) ** 2)[m].sum())
        glob += float(((global_mean - tp) ** 2)[m].sum())
        count += int(m.sum()) * target.shape[-1]
    return {"psnr_masked": psnr_from_mse(err / count), "psnr_mean_colour": psnr_from_mse(base / count),
            "psnr_global_mean": psnr_from_mse(glob / count)}
