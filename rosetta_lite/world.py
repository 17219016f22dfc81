"""Shapes World: seeded procedural scenes with per-pixel ground truth.

    world = ShapesWorld(size=32); batch = world.batch(n=64, seed=0)

A scene is a sky over a ground, split by a horizon at a random height, with one to
three flat-coloured objects drawn in depth order (later objects occlude earlier ones).
Every sample carries masks for sky, ground, each object, object contours, each shape
and each colour, a class label (the shape of the largest visible object) and a
caption. Scene parameters live in the unit square, so one seed gives the same scene
at 32, 64 or 128 pixels.

Determinism: sample ``i`` of seed ``s`` is drawn from ``numpy.random.default_rng([s, i])``
(PCG64, identical on every platform) and rendered with exactly rounded arithmetic
(add, multiply, compare) into uint8, so the same seed gives the same bytes anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

Draws = float | np.ndarray | torch.Tensor  # one formula serves numpy scenes, torch batches and single values

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "ring", "cross")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 225),
    "yellow": (245, 215, 40),
    "orange": (245, 135, 30),
    "purple": (140, 55, 190),
    "cyan": (40, 205, 215),
    "white": (245, 245, 245),
}
SKIES: dict[str, tuple[int, int, int]] = {
    "blue": (120, 170, 235),
    "grey": (165, 170, 180),
    "pink": (235, 170, 185),
    "yellow": (240, 225, 150),
}
GROUNDS: dict[str, tuple[int, int, int]] = {
    "green": (70, 130, 60),
    "brown": (120, 85, 50),
    "grey": (95, 95, 100),
    "sand": (200, 175, 120),
}
SIZE_WORDS = ((0.15, "small"), (0.21, "medium"), (1.0, "large"))
#: an object's fill and the word its caption uses; the default world's objects are all plain
FILLS: dict[str, str] = {
    "plain": "plain",
    "hstripes": "horizontally striped",
    "vstripes": "vertically striped",
    "checks": "checked",
    "dots": "dotted",
}
FILL_PERIOD = 1 / 8  # a texture's period, a fraction of the image: 4 px at 32 px, the same scene at any size
FILL_DARK = 0.55  # the dark half of a texture keeps this much of the object's colour

# Per-sample random draws, in this order: horizon, sky, ground, object count, then per
# object slot: shape, colour, centre x, centre y, radius; then the ground noise, then one fill
# draw per slot (drawn last, so that a world of plain objects keeps its bytes).
_SCENE_DRAWS = 4
_OBJECT_DRAWS = 5
_TEXTURE_LEVELS = 9  # ground noise in [-4, 4] grey levels: a mild texture


def horizon_height(u: Draws) -> Draws:
    """The horizon's height (a fraction of the image, from the top) for a uniform draw ``u``; numpy or torch."""
    return 0.35 + 0.4 * u


def place_object(ux: Draws, uy: Draws, ur: Draws, min_radius: float, max_radius: float) -> tuple[Draws, Draws, Draws]:
    """(cx, cy, radius) in the unit square from three uniform draws; numpy or torch.

    The centre keeps half a radius from every edge, so an object is never more than half cut off.
    """
    radius = min_radius + (max_radius - min_radius) * ur
    margin = 0.5 * radius
    return margin + (1 - 2 * margin) * ux, margin + (1 - 2 * margin) * uy, radius


def object_draws(cx: Draws, cy: Draws, radius: Draws, min_radius: float,
                 max_radius: float) -> tuple[Draws, Draws, Draws]:
    """The uniform draws (ux, uy, ur) that ``place_object`` turns into (cx, cy, radius); numpy or torch."""
    margin = 0.5 * radius
    return (cx - margin) / (1 - 2 * margin), (cy - margin) / (1 - 2 * margin), \
        (radius - min_radius) / (max_radius - min_radius)


@dataclass(frozen=True)
class WorldConfig:
    """Settings of a Shapes World; validated on construction.

        WorldConfig(size=64, max_objects=2, shapes=("circle", "ring"))
    """

    size: int = 32
    min_objects: int = 1
    max_objects: int = 3
    shapes: tuple[str, ...] = SHAPES
    colours: tuple[str, ...] = tuple(COLOURS)
    min_radius: float = 0.11
    max_radius: float = 0.27
    fills: tuple[str, ...] = ("plain",)

    def __post_init__(self) -> None:
        if not isinstance(self.size, int) or not 16 <= self.size <= 1024:
            raise ValueError(f"size must be an integer from 16 to 1024 pixels, got {self.size!r}")
        if not 1 <= self.min_objects <= self.max_objects <= 8:
            raise ValueError(
                "need 1 <= min_objects <= max_objects <= 8 objects per scene, got "
                f"min_objects={self.min_objects}, max_objects={self.max_objects}"
            )
        _check_names("shape", self.shapes, SHAPES)
        _check_names("colour", self.colours, tuple(COLOURS))
        _check_names("fill", self.fills, tuple(FILLS))
        if not 0.03 <= self.min_radius <= self.max_radius <= 0.45:
            raise ValueError(
                "need 0.03 <= min_radius <= max_radius <= 0.45 (fractions of the image), got "
                f"{self.min_radius}, {self.max_radius}"
            )


def _check_names(kind: str, names: tuple[str, ...], allowed: tuple[str, ...]) -> None:
    if isinstance(names, str) or len(names) == 0:
        raise ValueError(f"{kind}s must be a non-empty sequence of names from {list(allowed)}")
    unknown = [n for n in names if n not in allowed]
    if unknown:
        raise ValueError(f"unknown {kind} name(s) {unknown}; allowed: {list(allowed)}")
    if len(set(names)) != len(names):
        raise ValueError(f"{kind}s contain duplicates: {list(names)}")


@dataclass
class WorldBatch:
    """A batch of scenes with ground truth. Tensors are (B, ...) with B images.

    images: float32 (B, 3, S, S) in [0, 1]; labels: int64 (B,) index into
    ``class_names``; masks: name -> bool (B, S, S); object_masks: bool
    (B, max_objects, S, S), visible pixels of each object slot (empty if absent);
    objects: per image, a list of dicts (shape, colour, size, pixels) in depth order.
    """

    images: torch.Tensor
    labels: torch.Tensor
    captions: list[str]
    masks: dict[str, torch.Tensor]
    object_masks: torch.Tensor
    objects: list[list[dict]] = field(repr=False)
    class_names: tuple[str, ...] = SHAPES
    slot_masks: torch.Tensor | None = field(default=None, repr=False)
    scene: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def images_uint8(self) -> torch.Tensor:
        """The exact rendered bytes, (B, 3, S, S) uint8."""
        return torch.round(self.images * 255).to(torch.uint8)


class ShapesWorld:
    """A procedural world of scenes; ``batch`` renders any slice of a seeded stream.

        world = ShapesWorld(size=32); batch = world.batch(16, seed=0); batch.images.shape
    """

    def __init__(self, size: int = 32, **settings: Any) -> None:
        self.config = WorldConfig(size=size, **settings)
        coords = (np.arange(size, dtype=np.float64) + 0.5) / size
        self._xs = coords[None, None, None, :]  # (1, 1, 1, S)
        self._ys = coords[None, None, :, None]  # (1, 1, S, 1)

    @property
    def size(self) -> int:
        return self.config.size

    @property
    def class_names(self) -> tuple[str, ...]:
        """The class of a scene is its largest object's shape, and its fill where objects have several."""
        cfg = self.config
        if len(cfg.fills) == 1:
            return cfg.shapes
        return tuple(f"{fill} {shape}" for fill in cfg.fills for shape in cfg.shapes)

    @property
    def mask_names(self) -> list[str]:
        """Names of the ground-truth masks every batch carries."""
        cfg = self.config
        fills = [f"fill:{f}" for f in cfg.fills] if len(cfg.fills) > 1 else []
        return (["sky", "ground", "object", "contour"] + [f"shape:{s}" for s in cfg.shapes]
                + [f"colour:{c}" for c in cfg.colours] + fills)

    def batch(self, n: int, seed: int = 0, start: int = 0) -> WorldBatch:
        """Render samples ``start .. start+n-1`` of the stream ``seed``.

            batch = ShapesWorld().batch(n=8, seed=3, start=100)
        """
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        if start < 0 or seed < 0:
            raise ValueError(f"seed and start must be non-negative, got seed={seed}, start={start}")
        draws, noise = self._draw(n, seed, start)
        return self._render(draws, noise)

    def rearranged(self, n: int, seed: int, start: int, layout_seed: int) -> WorldBatch:
        """Samples ``start .. start+n-1`` of ``seed`` with the same objects in a new scene.

            a = world.batch(64, seed=1000); b = world.rearranged(64, seed=1000, start=0, layout_seed=5)

        Each object keeps its shape and colour (and the scene its object count); the horizon,
        sky, ground, texture and every object's place and size are drawn from ``layout_seed``
        instead, so the two renders share their objects' identities and nothing else (an
        object may then hide another). Self-supervised recipes use the pair as two views.
        """
        if n < 1 or start < 0 or seed < 0 or layout_seed < 0:
            raise ValueError(f"need n >= 1 and non-negative seeds and start, got n={n}, seed={seed}, "
                             f"start={start}, layout_seed={layout_seed}")
        draws, _ = self._draw(n, seed, start)
        layout, noise = self._draw(n, layout_seed, start)
        k = self.config.max_objects
        kept = [3] + [_SCENE_DRAWS + _OBJECT_DRAWS * j + d for j in range(k) for d in (0, 1)]
        kept += list(range(_SCENE_DRAWS + _OBJECT_DRAWS * k, layout.shape[1]))  # the fills
        layout[:, kept] = draws[:, kept]
        return self._render(layout, noise)

    def render_scene(self, scene: dict[str, torch.Tensor]) -> WorldBatch:
        """Render scenes given by their description (a batch's ``scene``), ground noise off.

            world.render_scene(world.batch(8, seed=3).scene).masks["object"]   # the same masks

        ``scene``: horizon (B,), sky, ground and count (B,) integers, and per object slot
        (B, max_objects) shape and colour integers, cx, cy and radius. A generator whose
        latent is such a description (the lite renderer's) gets the ground truth of its
        samples this way.
        """
        return self._render(self._scene_draws(scene), None)

    def _scene_draws(self, scene: dict[str, torch.Tensor]) -> np.ndarray:
        """The uniform draws that ``_render`` turns into ``scene``: the inverse of its picks."""
        cfg = self.config
        missing = [k for k in ("horizon", "sky", "ground", "count", "shape", "colour", "cx", "cy", "radius")
                   if k not in scene]
        if missing:
            raise ValueError(f"a scene description needs {missing} too; it holds {sorted(scene)}")
        get = {k: scene[k].detach().cpu().double().numpy() for k in scene}
        n, k = get["horizon"].shape[0], cfg.max_objects
        if get["shape"].shape != (n, k):
            raise ValueError(f"per-object entries are (B, {k}) for this world, got {get['shape'].shape}")
        counts = cfg.max_objects - cfg.min_objects + 1
        if ((get["count"] < cfg.min_objects) | (get["count"] > cfg.max_objects)).any():
            raise ValueError(f"object counts must lie in {cfg.min_objects} .. {cfg.max_objects}")
        centre = lambda index, count: (index + 0.5) / count  # noqa: E731  the middle of a pick's interval
        draws = np.empty((n, _SCENE_DRAWS + _OBJECT_DRAWS * k + k))
        draws[:, 0] = (get["horizon"] - 0.35) / 0.4
        draws[:, 1], draws[:, 2] = centre(get["sky"], len(SKIES)), centre(get["ground"], len(GROUNDS))
        draws[:, 3] = centre(get["count"] - cfg.min_objects, counts)
        obj = np.stack([centre(get["shape"], len(cfg.shapes)), centre(get["colour"], len(cfg.colours)),
                        *object_draws(get["cx"], get["cy"], get["radius"], cfg.min_radius, cfg.max_radius)], -1)
        draws[:, _SCENE_DRAWS:_SCENE_DRAWS + _OBJECT_DRAWS * k] = obj.reshape(n, k * _OBJECT_DRAWS)
        fill = get["fill"] if "fill" in get else np.zeros((n, k))  # a description without fills: plain
        draws[:, _SCENE_DRAWS + _OBJECT_DRAWS * k:] = centre(fill, len(cfg.fills))
        return np.clip(draws, 0, 1 - 1e-12)

    def _draw(self, n: int, seed: int, start: int) -> tuple[np.ndarray, np.ndarray]:
        k = self.config.max_objects
        width = _SCENE_DRAWS + _OBJECT_DRAWS * k
        draws = np.empty((n, width + k))
        noise = np.empty((n, self.size, self.size), dtype=np.int16)
        for row, index in enumerate(range(start, start + n)):
            rng = np.random.default_rng([seed, index])
            draws[row, :width] = rng.random(width)
            noise[row] = rng.integers(0, _TEXTURE_LEVELS, size=(self.size, self.size)) - _TEXTURE_LEVELS // 2
            draws[row, width:] = rng.random(k)
        return draws, noise

    def _render(self, draws: np.ndarray, noise: np.ndarray | None) -> WorldBatch:
        cfg, size = self.config, self.size
        n, k = draws.shape[0], cfg.max_objects
        if noise is None:
            noise = np.zeros((n, size, size), dtype=np.int16)
        horizon = horizon_height(draws[:, 0])  # fraction of the height
        sky_idx = _pick(draws[:, 1], len(SKIES))
        ground_idx = _pick(draws[:, 2], len(GROUNDS))
        count = cfg.min_objects + _pick(draws[:, 3], cfg.max_objects - cfg.min_objects + 1)
        obj = draws[:, _SCENE_DRAWS:_SCENE_DRAWS + _OBJECT_DRAWS * k].reshape(n, k, _OBJECT_DRAWS)
        fill_idx = _pick(draws[:, _SCENE_DRAWS + _OBJECT_DRAWS * k:], len(cfg.fills))
        shape_idx = _pick(obj[..., 0], len(cfg.shapes))
        colour_idx = _pick(obj[..., 1], len(cfg.colours))
        cx, cy, radius = place_object(obj[..., 2], obj[..., 3], obj[..., 4], cfg.min_radius, cfg.max_radius)
        present = np.arange(k)[None, :] < count[:, None]

        # label map: 0 sky, 1 ground, 2 + j object slot j; later slots occlude earlier ones
        is_ground = self._ys[:, 0] >= horizon[:, None, None]  # (n, S, 1)
        label = np.broadcast_to(is_ground, (n, size, size)).astype(np.int64)
        inside = self._shape_masks(shape_idx, cx, cy, radius) & present[..., None, None]
        for j in range(k):
            label[inside[:, j]] = 2 + j

        image = self._background(label < 2, is_ground, horizon, sky_idx, ground_idx, noise)
        palette = np.array([COLOURS[c] for c in cfg.colours], dtype=np.int16)
        object_rgb = palette[colour_idx]  # (n, k, 3)
        dark = self._fill_patterns()[fill_idx]  # (n, k, S, S): the texture's dark pixels
        for j in range(k):
            hit = label == 2 + j
            rows = np.nonzero(hit)[0]
            shaded = np.floor(object_rgb[:, j] * FILL_DARK + 0.5).astype(np.int16)
            image[hit] = np.where(dark[:, j][hit][:, None], shaded[rows], object_rgb[:, j][rows])
        image_u8 = np.clip(image, 0, 255).astype(np.uint8)

        visible = label[:, None] == (2 + np.arange(k))[None, :, None, None]  # (n, k, S, S)
        masks = self._masks(label, visible, shape_idx, colour_idx, fill_idx)
        objects, labels, captions = self._describe(visible, (shape_idx, colour_idx, fill_idx), radius,
                                                   sky_idx, ground_idx)
        images = torch.from_numpy(image_u8).permute(0, 3, 1, 2).float().div_(255)
        return WorldBatch(
            images=images.contiguous(),
            labels=torch.tensor(labels, dtype=torch.int64),
            captions=captions,
            masks={name: torch.from_numpy(m) for name, m in masks.items()},
            object_masks=torch.from_numpy(visible),
            objects=objects,
            class_names=self.class_names,
            slot_masks=torch.from_numpy(inside),
            scene={"horizon": torch.from_numpy(horizon).float(), "sky": torch.from_numpy(sky_idx),
                   "ground": torch.from_numpy(ground_idx), "count": torch.from_numpy(count),
                   "shape": torch.from_numpy(shape_idx), "colour": torch.from_numpy(colour_idx),
                   "fill": torch.from_numpy(fill_idx),
                   "cx": torch.from_numpy(cx).float(), "cy": torch.from_numpy(cy).float(),
                   "radius": torch.from_numpy(radius).float()},
        )

    def _fill_patterns(self) -> np.ndarray:
        """The dark pixels of each of the world's fills, (fills, S, S) bool, fixed to the image."""
        xs, ys = self._xs[0, 0], self._ys[0, 0]  # (1, S), (S, 1)
        cx, cy = np.floor(xs / (FILL_PERIOD / 2)), np.floor(ys / (FILL_PERIOD / 2))  # half-period cells
        fx, fy = xs / FILL_PERIOD % 1 - 0.5, ys / FILL_PERIOD % 1 - 0.5  # place within a period
        patterns = {
            "plain": np.zeros((self.size, self.size), dtype=bool),
            "hstripes": np.broadcast_to(cy % 2 == 1, (self.size, self.size)),
            "vstripes": np.broadcast_to(cx % 2 == 1, (self.size, self.size)),
            "checks": (cx + cy) % 2 == 1,
            "dots": fx * fx + fy * fy <= 0.09,  # a dot of 0.3 periods' radius in each period's cell
        }
        return np.stack([patterns[f] for f in self.config.fills])

    def _shape_masks(self, shape_idx, cx, cy, radius) -> np.ndarray:
        """Inside-masks of every object slot, (n, k, S, S), before occlusion."""
        dx = self._xs - cx[..., None, None]
        dy = self._ys - cy[..., None, None]
        r = radius[..., None, None]
        adx, ady = np.abs(dx), np.abs(dy)
        d2 = dx * dx + dy * dy
        half = 0.8 * r  # squares and crosses look as large as circles this way
        top, base = -r, 0.75 * r  # triangle: apex up, flat base
        forms = {
            "circle": d2 <= r * r,
            "square": (adx <= half) & (ady <= half),
            "triangle": (dy >= top) & (dy <= base) & (adx * (base - top) <= (dy - top) * r),
            "diamond": adx + ady <= r,
            "ring": (d2 <= r * r) & (d2 >= 0.36 * r * r),
            "cross": ((adx <= 0.3 * r) & (ady <= r)) | ((ady <= 0.3 * r) & (adx <= r)),
        }
        out = np.zeros(dx.shape[:2] + (self.size, self.size), dtype=bool)
        for i, name in enumerate(self.config.shapes):
            out |= forms[name] & (shape_idx == i)[..., None, None]
        return out

    def _background(self, is_bg, is_ground, horizon, sky_idx, ground_idx, noise) -> np.ndarray:
        """Sky with a vertical gradient (lighter at the horizon), ground with noise; int16 RGB."""
        size = self.size
        sky = np.array(list(SKIES.values()), dtype=np.float64)[sky_idx]  # (n, 3)
        ground = np.array(list(GROUNDS.values()), dtype=np.float64)[ground_idx]
        ys = self._ys[0, 0, :, 0]  # (S,)
        lift = np.clip(ys[None, :] / horizon[:, None], 0, 1)  # 0 at the top, 1 at the horizon
        sky_rows = sky[:, None, :] * (0.8 + 0.2 * lift[..., None])  # (n, S, 3)
        sky_rows = sky_rows + 40 * lift[..., None] * (1 - sky_rows / 255)
        depth = np.clip((ys[None, :] - horizon[:, None]) / (1 - horizon[:, None]), 0, 1)
        ground_rows = ground[:, None, :] * (1.0 - 0.2 * depth[..., None])
        rows = np.where(is_ground, ground_rows, sky_rows)  # (n, S, 3)
        image = np.broadcast_to(rows[:, :, None, :], (rows.shape[0], size, size, 3))
        image = np.floor(image + 0.5).astype(np.int16)
        return image + (noise * np.broadcast_to(is_ground, noise.shape))[..., None]

    def _masks(self, label, visible, shape_idx, colour_idx, fill_idx) -> dict[str, np.ndarray]:
        cfg = self.config
        obj = label >= 2
        masks = {"sky": label == 0, "ground": label == 1, "object": obj, "contour": _contour(label)}
        for i, name in enumerate(cfg.shapes):
            masks[f"shape:{name}"] = (visible & (shape_idx == i)[..., None, None]).any(1)
        for i, name in enumerate(cfg.colours):
            masks[f"colour:{name}"] = (visible & (colour_idx == i)[..., None, None]).any(1)
        if len(cfg.fills) > 1:
            for i, name in enumerate(cfg.fills):
                masks[f"fill:{name}"] = (visible & (fill_idx == i)[..., None, None]).any(1)
        return masks

    def _describe(self, visible, identity, radius, sky_idx, ground_idx):
        cfg = self.config
        shape_idx, colour_idx, fill_idx = identity
        textured = len(cfg.fills) > 1
        pixels = visible.sum((2, 3))  # (n, k)
        objects, labels, captions = [], [], []
        for b in range(visible.shape[0]):
            items = [
                {"shape": cfg.shapes[shape_idx[b, j]], "colour": cfg.colours[colour_idx[b, j]],
                 "fill": cfg.fills[fill_idx[b, j]], "size": _size_word(radius[b, j]), "pixels": int(pixels[b, j]),
                 "slot": j}
                for j in range(visible.shape[1]) if pixels[b, j] > 0
            ]
            for item in items:
                item["phrase"] = object_phrase(item, textured)
            objects.append(items)
            largest = max(items, key=lambda o: o["pixels"])
            labels.append(self.class_names.index(f"{largest['fill']} {largest['shape']}" if textured
                                                 else largest["shape"]))
            phrases = [o["phrase"] for o in items]
            things = phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
            captions.append(f"{things} on {list(GROUNDS)[ground_idx[b]]} ground "
                            f"under a {list(SKIES)[sky_idx[b]]} sky")
        return objects, labels, captions


def object_phrase(obj: dict, textured: bool) -> str:
    """How a caption names an object: "a large red circle", or in a textured world "a large red checked circle".

        object_phrase({"size": "large", "colour": "red", "fill": "checks", "shape": "circle"}, True)
    """
    fill = f"{FILLS[obj['fill']]} " if textured else ""
    return f"a {obj['size']} {obj['colour']} {fill}{obj['shape']}"


def _pick(u: np.ndarray, count: int) -> np.ndarray:
    """Map uniforms in [0, 1) to integers 0..count-1."""
    return np.minimum((u * count).astype(np.int64), count - 1)


def _size_word(radius: float) -> str:
    return next(word for limit, word in SIZE_WORDS if radius < limit)


def _contour(label: np.ndarray) -> np.ndarray:
    """Object pixels with a 4-neighbour of another label: the inner boundary of objects."""
    edge = np.zeros(label.shape, dtype=bool)
    vertical = label[:, 1:, :] != label[:, :-1, :]
    horizontal = label[:, :, 1:] != label[:, :, :-1]
    edge[:, 1:, :] |= vertical
    edge[:, :-1, :] |= vertical
    edge[:, :, 1:] |= horizontal
    edge[:, :, :-1] |= horizontal
    return edge & (label >= 2)


class ShapesDataset(torch.utils.data.Dataset):
    """A map-style view of the world for training loops: item i is (image, label).

        loader = DataLoader(ShapesDataset(10_000, seed=1000), batch_size=64)
    """

    def __init__(self, length: int, seed: int = 0, size: int = 32, **settings: Any) -> None:
        if length < 1:
            raise ValueError(f"length must be at least 1, got {length}")
        self.world = ShapesWorld(size=size, **settings)
        self.length, self.seed = length, seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for a dataset of {self.length}")
        sample = self.world.batch(1, seed=self.seed, start=index)
        return sample.images[0], int(sample.labels[0])


#: named world settings: the default world of plain objects, and objects with textured fills
WORLDS: dict[str, dict] = {"plain": {}, "textured": {"fills": tuple(FILLS)}}


def world_settings(name: str) -> dict:
    """The ``ShapesWorld`` settings of a named world.

        ShapesWorld(**world_settings("textured"))
    """
    if name not in WORLDS:
        raise ValueError(f"unknown world {name!r}; named worlds: {list(WORLDS)}")
    return dict(WORLDS[name])


def world_name(settings: dict) -> str:
    """The name of a world's settings (``world_settings``'s inverse); ``"custom"`` for any other."""
    canon = {k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()}
    return next((name for name, known in WORLDS.items() if known == canon), "custom")


EVAL_SEED = 7  # world seed of every gate measurement


MIN_TRAIN_SEED = 1000  # training streams use seeds >= this, disjoint from evaluation
