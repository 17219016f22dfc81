"""Architecture of the lite renderer: a generator that learned to draw a scene from its description.

    r = SceneRenderer().eval(); images = r(torch.randn(8, Z_DIM))   # (8, 3, 32, 32) in [0, 1]
    # units to mine: r.b4, r.b8, r.b16, r.b32 return (B, C, r, r) maps at 4, 8, 16, 32 px

The paper's generators are GANs. This one is a learned renderer (a decoder trained by
reconstruction): its latent is the Shapes World's own
description of a scene, so every sample is a scene the world could draw, with the
world's frequencies of shapes, colours and layouts by construction.

Latent (``Z_DIM`` = 63 numbers; ``sample_latents`` draws the world's distribution):
z[0] the horizon (its normal CDF is the world's uniform draw),
z[1:5] sky and z[5:9] ground colour, z[9:12] the object count, then per object slot 17:
shape (6), colour (8), centre x, centre y, radius (their normal CDFs are the world's
uniforms). A categorical code is the argmax of its numbers (drawn as normals, so uniform
over the choices, as the world's picks are, then snapped to +1 and -1 so that small steps
do not flip it): the forward pass uses the exact one-hot, the backward pass the gradient
of a softmax (straight-through), so ``generate(z)`` draws world scenes exactly and
inversion can still move a code.

Decoder, per resolution r in 4, 8, 16, 32 (coordinates are pixel centres in the unit
square, as the world renders): every object slot is a small field, an MLP of the pixel's
position relative to the object's centre and radius and of its shape code, giving a mask
logit (trained against the world's slot masks, so the shape is supervised directly) and
features, to which its colour's embedding is appended; the background is an MLP of the
row's height relative to the horizon and of the sky and ground codes. The slots are
alpha-composited over the background in depth order (later slots in front, as the world
draws them). Scene-level blocks (3 x 3 convolution and ReLU) take the composite at r and
the previous block upsampled; their outputs ``b4 .. b32`` are the units, and a 1 x 1
convolution and a sigmoid turn ``b32`` into RGB.

A renderer carries a ``reader``: a small CNN trained beside it to read a scene's
description back from its image (``read(images)`` gives latents). Gradient descent from
a random latent rarely finds where three objects are and which shapes they have (a
shape's mask is flat a pixel away from its edge, so an object that misses its target
feels no pull towards it); inversion starts one of its restarts from the reader's guess,
as encoder-initialised GAN inversion does (Zhu et al., "In-Domain GAN Inversion", 2020).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from rosetta_lite.world import (
    COLOURS,
    FILL_PERIOD,
    FILLS,
    GROUNDS,
    SHAPES,
    SKIES,
    WorldConfig,
    horizon_height,
    object_draws,
    place_object,
)

__all__ = ["SceneRenderer", "SceneReader", "RENDERER_LAYERS", "Z_DIM", "describe", "scene_codes", "latent_layout"]

#: names of the renderer modules whose outputs are the units to mine, coarse to fine
RENDERER_LAYERS: tuple[str, ...] = ("b4", "b8", "b16", "b32")
SLOTS = WorldConfig().max_objects
_SLOT_DIM = len(SHAPES) + len(COLOURS) + 3
_SCENE_DIM = 1 + len(SKIES) + len(GROUNDS) + SLOTS
Z_DIM = _SCENE_DIM + SLOTS * _SLOT_DIM
_RESOLUTIONS = (4, 8, 16, 32)


def latent_fills(z_dim: int) -> int:
    """How many fills a latent of width ``z_dim`` describes: 1 (plain objects, ``Z_DIM``) or the
    textured world's, whose fill codes follow the rest, one per slot.

        latent_fills(Z_DIM + SLOTS * len(FILLS))   # 5
    """
    if z_dim == Z_DIM:
        return 1
    if z_dim == Z_DIM + SLOTS * len(FILLS):
        return len(FILLS)
    raise ValueError(f"latents are (B, {Z_DIM}) for plain objects or (B, {Z_DIM + SLOTS * len(FILLS)}) with "
                     f"fills, got width {z_dim}")


def fill_world(fills: int) -> dict:
    """The ``ShapesWorld`` settings of a renderer drawing ``fills`` fills: the plain world or the textured one."""
    return {} if fills == 1 else {"fills": tuple(FILLS)[:fills]}


def _code(logits: torch.Tensor) -> torch.Tensor:
    """Straight-through one-hot: the argmax forward, the softmax's gradient backward."""
    soft = logits.softmax(-1)
    hard = F.one_hot(logits.argmax(-1), logits.shape[-1]).to(soft.dtype)
    return hard + (soft - soft.detach())  # exactly the one-hot forward: the bracket is 0


def _presence(count_code: torch.Tensor) -> torch.Tensor:
    """(B, SLOTS) presence of each slot from a one-hot object count (1 .. SLOTS objects)."""
    return count_code.flip(-1).cumsum(-1).flip(-1)


def latent_layout(fills: int = 1) -> dict[str, slice | tuple[slice, ...]]:
    """Where each part of the description sits in a latent: name -> slice (per slot: a tuple of slices).

        latent_layout()["shape"][0]   # slice(12, 18): the shape code of the first slot

    With ``fills`` > 1, a "fill" code per slot follows everything else.
    """
    a, b = 1 + len(SKIES), 1 + len(SKIES) + len(GROUNDS)
    ns, nc = len(SHAPES), len(COLOURS)
    slot = [_SCENE_DIM + j * _SLOT_DIM for j in range(SLOTS)]
    return {"horizon": slice(0, 1), "sky": slice(1, a), "ground": slice(a, b), "count": slice(b, _SCENE_DIM),
            "shape": tuple(slice(o, o + ns) for o in slot), "colour": tuple(slice(o + ns, o + ns + nc) for o in slot),
            "place": tuple(slice(o + ns + nc, o + _SLOT_DIM) for o in slot),
            **({"fill": tuple(slice(Z_DIM + j * fills, Z_DIM + (j + 1) * fills) for j in range(SLOTS))}
               if fills > 1 else {})}


def describe(z: torch.Tensor) -> dict[str, torch.Tensor]:
    """The scene a latent stands for, as the codes ``SceneRenderer.render`` takes; differentiable.

        describe(torch.randn(4, Z_DIM))["shape"].shape   # (4, 3, 6) one-hot shape codes
    """
    if z.ndim != 2:
        raise ValueError(f"latents are (B, {Z_DIM}), got shape {tuple(z.shape)}")
    fills = latent_fills(z.shape[1])
    cfg = WorldConfig()
    u = torch.special.ndtr(z)
    a, b, c = 1 + len(SKIES), 1 + len(SKIES) + len(GROUNDS), _SCENE_DIM
    slots = z[:, c:Z_DIM].reshape(-1, SLOTS, _SLOT_DIM)
    uslots = u[:, c:Z_DIM].reshape(-1, SLOTS, _SLOT_DIM)
    ns, nc = len(SHAPES), len(COLOURS)
    cx, cy, radius = place_object(uslots[..., ns + nc], uslots[..., ns + nc + 1], uslots[..., ns + nc + 2],
                                  cfg.min_radius, cfg.max_radius)
    codes = {"horizon": horizon_height(u[:, 0]), "sky": _code(z[:, 1:a]), "ground": _code(z[:, a:b]),
             "present": _presence(_code(z[:, b:c])), "shape": _code(slots[..., :ns]),
             "colour": _code(slots[..., ns:ns + nc]), "cx": cx, "cy": cy, "radius": radius}
    if fills > 1:
        codes["fill"] = _code(z[:, Z_DIM:].reshape(-1, SLOTS, fills))
    return codes


def describe_scene(z: torch.Tensor) -> dict[str, torch.Tensor]:
    """The scene a latent stands for in the world's terms (a ``WorldBatch.scene``): indices and places.

        ShapesWorld().render_scene(describe_scene(z)).masks   # the ground truth of the renderer's samples
    """
    with torch.no_grad():
        codes = describe(z)
    scene = {"horizon": codes["horizon"], "sky": codes["sky"].argmax(-1), "ground": codes["ground"].argmax(-1),
             "count": codes["present"].sum(-1).round().long(), "shape": codes["shape"].argmax(-1),
             "colour": codes["colour"].argmax(-1), "cx": codes["cx"], "cy": codes["cy"], "radius": codes["radius"]}
    if "fill" in codes:
        scene["fill"] = codes["fill"].argmax(-1)
    return scene


def scene_codes(scene: dict[str, torch.Tensor], fills: int = 1) -> dict[str, torch.Tensor]:
    """The codes of a world batch's ``scene`` (integer indices) in the form ``describe`` gives.

        codes = scene_codes(ShapesWorld().batch(8).scene); SceneRenderer().render(codes)

    ``fills`` > 1 adds the objects' fill codes (a textured world's scenes).
    """
    count = F.one_hot(scene["count"].long() - 1, SLOTS).float()
    extra = {"fill": F.one_hot(scene["fill"].long(), fills).float()} if fills > 1 else {}
    return extra | {"horizon": scene["horizon"].float(), "sky": F.one_hot(scene["sky"].long(), len(SKIES)).float(),
            "ground": F.one_hot(scene["ground"].long(), len(GROUNDS)).float(), "present": _presence(count),
            "shape": F.one_hot(scene["shape"].long(), len(SHAPES)).float(),
            "colour": F.one_hot(scene["colour"].long(), len(COLOURS)).float(),
            "cx": scene["cx"].float(), "cy": scene["cy"].float(), "radius": scene["radius"].float()}


def _mlp(cin: int, hidden: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(cin, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, cout))


class Block(nn.Module):
    """A scene-level block: 3 x 3 convolution and ReLU; its output is a layer of units."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(x))


class SceneRenderer(nn.Module):
    """Draws 32 x 32 Shapes World scenes from latents (see the module docstring).

        r = SceneRenderer(); images = r(torch.randn(2, Z_DIM)); logits = r.render(codes)[1]
    """

    def __init__(self, channels: tuple[int, ...] = (128, 96, 64, 32), features: int = 32,
                 hidden: int = 64, fills: int = 1) -> None:
        super().__init__()
        if len(channels) != len(RENDERER_LAYERS):
            raise ValueError(f"channels needs one width per layer {RENDERER_LAYERS}, got {channels}")
        if fills not in (1, len(FILLS)):
            raise ValueError(f"fills is 1 (plain objects) or {len(FILLS)} (the textured world), got {fills!r}")
        self.fills, self.world = fills, fill_world(fills)
        self.z_dim, self.features = Z_DIM + (SLOTS * fills if fills > 1 else 0), features
        half = features // 2
        # relative x, y, r^2 and shape code; with fills, the fill code and the texture's phase in the image
        self.slot_field = _mlp(3 + len(SHAPES) + (fills + 4 if fills > 1 else 0), hidden, 1 + half)
        self.colour_embedding = nn.Linear(len(COLOURS), features - half, bias=False)
        self.background = _mlp(4 + len(SKIES) + len(GROUNDS), hidden, features)
        cin = features + 1
        self.b4 = Block(cin, channels[0])
        self.b8 = Block(channels[0] + cin, channels[1])
        self.b16 = Block(channels[1] + cin, channels[2])
        self.b32 = Block(channels[2] + cin, channels[3])
        self.to_rgb = nn.Conv2d(channels[3], 3, 1)
        self.reader = SceneReader(outputs=self.z_dim)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.render(describe(z))[0]

    def sample_latents(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` latents of the world's distribution, each code's normals snapped to +1 (its argmax) and -1.

        The scene is that of the plain normals (argmaxes kept), but a code now sits 2 away from
        flipping: an optimiser's small steps on positions and sizes (editing) do not change shapes
        and colours by accident, as they would where two normals of a code are nearly tied.
        """
        z = torch.randn(n, self.z_dim, generator=generator)
        layout = latent_layout(self.fills)
        for name in ("sky", "ground", "count", "shape", "colour") + (("fill",) if self.fills > 1 else ()):
            for part in layout[name] if isinstance(layout[name], tuple) else (layout[name],):
                z[:, part] = F.one_hot(z[:, part].argmax(-1), part.stop - part.start).float() * 2 - 1
        return z

    def scene(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """The scene each latent describes, as ``ShapesWorld.render_scene`` takes it (see ``describe_scene``)."""
        return describe_scene(z)

    def read(self, images: torch.Tensor) -> torch.Tensor:
        """The reader's guess of the latents of images (B, 3, 32, 32) in [0, 1]."""
        return reader_latents(self.reader(images))

    def render(self, codes: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (B, 3, 32, 32) in [0, 1] and the slots' mask logits at 32 px (B, SLOTS, 32, 32)."""
        x, logits = None, None
        for size, block in zip(_RESOLUTIONS, (self.b4, self.b8, self.b16, self.b32)):
            scene, logits = self.composite(codes, size)
            x = block(scene if x is None else torch.cat([F.interpolate(x, scale_factor=2.0), scene], 1))
        return torch.sigmoid(self.to_rgb(x)), logits

    def composite(self, codes: dict[str, torch.Tensor], size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The slots alpha-composited over the background at ``size`` px: features and coverage
        (B, features + 1, size, size), and the slots' mask logits (B, SLOTS, size, size)."""
        centres = (torch.arange(size, device=codes["cx"].device, dtype=codes["cx"].dtype) + 0.5) / size
        radius = codes["radius"][..., None, None]
        dx = ((centres[None, None, None, :] - codes["cx"][..., None, None]) / radius).expand(-1, -1, size, -1)
        dy = ((centres[None, None, :, None] - codes["cy"][..., None, None]) / radius).expand(-1, -1, -1, size)
        inputs = [torch.stack([dx, dy, dx * dx + dy * dy], -1),
                  codes["shape"][:, :, None, None, :].expand(-1, -1, size, size, -1)]
        if self.fills > 1:
            inputs += [codes["fill"][:, :, None, None, :].expand(-1, -1, size, size, -1),
                       _texture_phase(centres)[None, None].expand(dx.shape[0], SLOTS, -1, -1, -1)]
        field = self.slot_field(torch.cat(inputs, -1))
        logits = field[..., 0]
        colour = self.colour_embedding(codes["colour"])[:, :, None, None, :].expand(-1, -1, size, size, -1)
        objects = torch.cat([field[..., 1:], colour], -1)  # (B, SLOTS, S, S, F)
        alpha = torch.sigmoid(logits) * codes["present"][..., None, None]
        out = self._rows(codes, centres)[:, :, None, :].expand(-1, -1, size, -1)  # (B, S, S, F)
        for j in range(SLOTS):  # later slots in front
            a = alpha[:, j, ..., None]
            out = out * (1 - a) + objects[:, j] * a
        coverage = 1 - (1 - alpha).prod(1)
        return torch.cat([out.permute(0, 3, 1, 2), coverage[:, None]], 1), logits

    def _rows(self, codes: dict[str, torch.Tensor], centres: torch.Tensor) -> torch.Tensor:
        """Background features of every row, (B, S, features): sky above the horizon, ground below."""
        h = codes["horizon"][:, None]
        y = centres[None, :].expand(h.shape[0], -1)
        inputs = [(y - h) * 32, (y / h).clamp(0, 1), ((y - h) / (1 - h)).clamp(0, 1), y]
        colours = torch.cat([codes["sky"], codes["ground"]], -1)[:, None, :].expand(-1, y.shape[1], -1)
        return self.background(torch.cat([torch.stack(inputs, -1), colours], -1))


def _texture_phase(centres: torch.Tensor) -> torch.Tensor:
    """(S, S, 4) sine and cosine of each pixel's place in the texture's period, across and down.

    The world's textures are fixed to the image (stripes every ``FILL_PERIOD``), so drawing
    one needs where a pixel lies in that period, which no position relative to the object says.
    """
    angle = 2 * torch.pi * centres / FILL_PERIOD
    x, y = angle[None, :].expand(len(centres), -1), angle[:, None].expand(-1, len(centres))
    return torch.stack([x.sin(), x.cos(), y.sin(), y.cos()], -1)


class SceneReader(nn.Module):
    """Reads a scene's description from its image: (B, 3, 32, 32) -> (B, Z_DIM) outputs in the latent's layout.

        out = SceneReader()(images); z = reader_latents(out)

    Categorical parts are logits; the horizon and each slot's centre and radius are logits
    of the world's uniform draws (their sigmoid is the draw).
    """

    def __init__(self, width: int = 64, outputs: int = Z_DIM) -> None:
        super().__init__()
        w = width
        layers, cin = [], 5  # RGB and two coordinate channels
        for cout, stride in ((w // 2, 1), (w, 2), (w, 1), (2 * w, 2), (2 * w, 1), (2 * w, 2)):
            layers += [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(cin * 16, 512), nn.ReLU(), nn.Linear(512, outputs))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        b, _, h, w = images.shape
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, h, device=images.device),
                                torch.linspace(-1, 1, w, device=images.device), indexing="ij")
        coords = torch.stack([xs, ys]).expand(b, -1, -1, -1)
        return self.head(self.features(torch.cat([images * 2 - 1, coords], 1)))


def reader_latents(out: torch.Tensor) -> torch.Tensor:
    """Latents from a reader's outputs: each code's argmax kept, each uniform draw mapped to its normal.

        z = reader_latents(SceneReader()(images)); describe(z)
    """
    fills = latent_fills(out.shape[1])
    layout = latent_layout(fills)
    z = torch.special.ndtri(torch.sigmoid(out).clamp(1e-3, 1 - 1e-3))
    for name in ("sky", "ground", "count", "shape", "colour") + (("fill",) if fills > 1 else ()):
        for part in layout[name] if isinstance(layout[name], tuple) else (layout[name],):
            logp = out[:, part].log_softmax(-1).clamp_min(-4)
            z[:, part] = logp - logp.mean(-1, keepdim=True)
    return z


def reader_targets(scene: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A world batch's description as the reader predicts it: class indices and uniform draws.

        reader_targets(ShapesWorld().batch(8).scene)["place"].shape   # (8, SLOTS, 3)
    """
    cfg = WorldConfig()
    ux, uy, ur = object_draws(scene["cx"].float(), scene["cy"].float(), scene["radius"].float(),
                              cfg.min_radius, cfg.max_radius)
    return {"horizon": (scene["horizon"].float() - horizon_height(0.0)) / (horizon_height(1.0) - horizon_height(0.0)),
            "sky": scene["sky"].long(), "ground": scene["ground"].long(), "count": scene["count"].long() - 1,
            "shape": scene["shape"].long(), "colour": scene["colour"].long(), "place": torch.stack([ux, uy, ur], -1),
            **({"fill": scene["fill"].long()} if "fill" in scene else {})}
