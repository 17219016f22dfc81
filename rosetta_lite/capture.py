"""Record named layers of any ``nn.Module`` as spatial maps (B, C, H, W).

    with Trace(model, ["layer1", "blocks.3.mlp.act"]) as t: model(x)
    t["layer1"].shape  # (B, C, H, W)

CNN maps come back as they are. Token sequences (B, N, C) lose the model's prefix
tokens (class, register, distillation; the count is read from the model) and are
reshaped to the patch grid, square or not. Sequence-first layouts (N, B, C), as in
some CLIP towers, are recognised from the batch size of the model's input.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from types import TracebackType

import torch
import torch.nn.functional as F
from torch import nn

from rosetta_lite.device import scratch
from rosetta_lite.zoo.member import Member


class CaptureError(ValueError):
    """A layer that does not exist, or whose output cannot be made spatial."""


class _StopForward(Exception):
    """Raised inside a hook to end the forward pass once every layer is recorded."""


@dataclass(frozen=True)
class TokenLayout:
    """How a token sequence maps to a grid: ``prefix`` leading tokens, then ``grid`` rows x cols."""

    prefix: int
    grid: tuple[int, int]


class Trace:
    """Context manager that records the outputs of named modules as (B, C, H, W) maps.

        with Trace(model, ["layer1", "layer2"], stop=True) as t: model(x)

    Args:
        model: any module; layer names are those of ``model.named_modules()``.
        layers: names to record, in any order.
        stop: end the forward pass as soon as every requested layer has run.
        detach: record detached tensors (set False to take gradients through maps).
        clone: copy each output, so in-place operations after the hook cannot change it.
        spatial: convert outputs to (B, C, H, W); False keeps them as the module gave them.
        token_layout: force a layout for token outputs instead of reading it from the model.
    """

    def __init__(self, model: nn.Module, layers: list[str] | tuple[str, ...] | str, *,
                 stop: bool = False, detach: bool = True, clone: bool = True,
                 spatial: bool = True, token_layout: TokenLayout | None = None) -> None:
        self.model = model
        self.layers = [layers] if isinstance(layers, str) else list(layers)
        if not self.layers:
            raise CaptureError("no layers requested; list them with rosetta_lite.capture.list_layers(model, x)")
        modules = dict(model.named_modules())
        for name in self.layers:
            if name not in modules:
                raise CaptureError(_unknown_layer_message(name, modules))
        self.stop, self.detach, self.clone, self.spatial = stop, detach, clone, spatial
        self.token_layout = token_layout
        self.outputs: dict[str, torch.Tensor] = {}
        self._input_hw: tuple[int, int] | None = None
        self._batch: int | None = None
        self._handles = [model.register_forward_pre_hook(self._see_input)]
        for name in dict.fromkeys(self.layers):
            self._handles.append(modules[name].register_forward_hook(self._recorder(name)))

    def _see_input(self, module: nn.Module, args: tuple) -> None:
        first = next((a for a in args if torch.is_tensor(a)), None)
        if first is not None and first.dim() >= 1:
            self._batch = first.shape[0]
            self._input_hw = tuple(first.shape[-2:]) if first.dim() == 4 else None
        self.outputs.clear()

    def _recorder(self, name: str):
        def hook(module: nn.Module, args: tuple, output) -> None:
            if not torch.is_tensor(output):
                if self.spatial:
                    raise CaptureError(f"layer {name!r} returned {type(output).__name__}, not a tensor; "
                                       "record one of its submodules instead")
                self.outputs[name] = output
                return
            value = output.detach() if self.detach else output
            if self.spatial:
                value = to_maps(value, self.model, name, self._batch, self._input_hw, self.token_layout)
            if self.clone and value.untyped_storage().data_ptr() == output.untyped_storage().data_ptr():
                value = value.clone()  # keeps the strides: channels-last views stay channels-last
            self.outputs[name] = value
            if self.stop and len(self.outputs) == len(set(self.layers)):
                raise _StopForward
        return hook

    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self.outputs:
            if name in self.layers:
                raise KeyError(f"layer {name!r} did not run in the traced forward pass")
            raise KeyError(f"layer {name!r} was not requested; requested: {self.layers}")
        return self.outputs[name]

    def __contains__(self, name: str) -> bool:
        return name in self.outputs

    def __enter__(self) -> "Trace":
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> bool:
        self.close()
        return kind is not None and issubclass(kind, _StopForward)

    def close(self) -> None:
        """Remove the hooks (done on leaving the ``with`` block)."""
        for handle in self._handles:
            handle.remove()
        self._handles = []


def to_maps(value: torch.Tensor, model: nn.Module, name: str, batch: int | None = None,
            input_hw: tuple[int, int] | None = None, layout: TokenLayout | None = None) -> torch.Tensor:
    """Bring one layer's output to (B, C, H, W).

        maps_bchw = to_maps(tokens_bnc, vit, "blocks.3.mlp.act", batch=8, input_hw=(224, 224))
    """
    if value.dim() == 4:
        return value
    if value.dim() != 3:
        raise CaptureError(f"layer {name!r} gave shape {tuple(value.shape)}: only (B, C, H, W) maps and "
                           "(B, N, C) or (N, B, C) token sequences can be made spatial")
    tokens_bnc = value
    if batch is not None and value.shape[0] != batch and value.shape[1] == batch:
        tokens_bnc = value.transpose(0, 1)
    elif (batch is None or value.shape[0] == value.shape[1] == batch) and not _batch_first(model, name):
        tokens_bnc = value.transpose(0, 1)  # the shapes cannot tell: trust the module's own flag
    layout = layout or token_layout(model, name, tokens_bnc.shape[1], input_hw)
    rows, cols = layout.grid
    grid_bnc = tokens_bnc[:, layout.prefix:]
    if grid_bnc.shape[1] != rows * cols:
        raise CaptureError(f"layer {name!r} has {tokens_bnc.shape[1]} tokens; with {layout.prefix} prefix "
                           f"tokens they do not fill a {rows} x {cols} grid")
    b, _, c = grid_bnc.shape
    # a channels-last view of the tokens: no copy, and the layout mining wants
    return grid_bnc.reshape(b, rows, cols, c).permute(0, 3, 1, 2)


def token_layout(model: nn.Module, name: str, n_tokens: int,
                 input_hw: tuple[int, int] | None = None) -> TokenLayout:
    """Read the prefix-token count and patch grid of the transformer that owns ``name``.

        token_layout(timm_vit, "blocks.0.mlp.act", 197, (224, 224))  # TokenLayout(1, (14, 14))
    """
    for owner in reversed(_ancestors(model, name)):
        prefix = _prefix_tokens(owner)
        if prefix is None:
            continue
        grid = _grid(owner, input_hw)
        if grid is not None and grid[0] * grid[1] == n_tokens:
            return TokenLayout(0, grid)  # e.g. a patch embedding, before prefix tokens are added
        if grid is None or grid[0] * grid[1] != n_tokens - prefix:
            side = math.isqrt(n_tokens - prefix)
            if side * side != n_tokens - prefix:
                raise CaptureError(f"layer {name!r}: cannot tell the patch grid of {n_tokens - prefix} tokens; "
                                   "pass token_layout=TokenLayout(prefix, (rows, cols)) to Trace")
            grid = (side, side)
        return TokenLayout(prefix, grid)
    raise CaptureError(f"layer {name!r} gives {n_tokens} tokens but no enclosing module says how many are "
                       "prefix tokens; pass token_layout=TokenLayout(prefix, (rows, cols)) to Trace")


def _ancestors(model: nn.Module, name: str) -> list[nn.Module]:
    chain, module = [model], model
    for part in name.split(".") if name else []:
        module = getattr(module, part)
        chain.append(module)
    return chain


def _prefix_tokens(module: nn.Module) -> int | None:
    if isinstance(getattr(module, "num_prefix_tokens", None), int):  # timm ViTs, DeiT, EVA, ...
        return module.num_prefix_tokens
    if getattr(module, "class_embedding", None) is not None and hasattr(module, "grid_size"):  # open_clip
        return 1
    return None


def _grid(module: nn.Module, input_hw: tuple[int, int] | None) -> tuple[int, int] | None:
    patch_embed = getattr(module, "patch_embed", None)
    if patch_embed is not None:
        patch = getattr(patch_embed, "patch_size", None)
        if input_hw is not None and patch is not None:
            ph, pw = (patch, patch) if isinstance(patch, int) else patch
            return (math.ceil(input_hw[0] / ph), math.ceil(input_hw[1] / pw))
        if getattr(patch_embed, "grid_size", None) is not None:
            return tuple(patch_embed.grid_size)
    grid = getattr(module, "grid_size", None)
    if grid is not None:
        patch = getattr(module, "patch_size", None)
        if input_hw is not None and patch is not None:
            ph, pw = (patch, patch) if isinstance(patch, int) else patch
            return (input_hw[0] // ph, input_hw[1] // pw)
        return (grid, grid) if isinstance(grid, int) else tuple(grid)
    return None


def _batch_first(model: nn.Module, name: str) -> bool:
    for owner in reversed(_ancestors(model, name)):
        flag = getattr(owner, "batch_first", None)
        if isinstance(flag, bool):
            return flag
    return True


def _unknown_layer_message(name: str, modules: dict[str, nn.Module]) -> str:
    close = difflib.get_close_matches(name, [n for n in modules if n], n=5, cutoff=0.5)
    hint = f"; closest: {close}" if close else ""
    return (f"unknown layer {name!r} in {type(next(iter(modules.values()))).__name__}{hint}. "
            "List all with rosetta_lite.capture.list_layers(model, example_input)")


@dataclass(frozen=True)
class LayerInfo:
    """One capturable layer: its name, module type and map shape (C, H, W), or why it is not spatial."""

    name: str
    module: str
    shape: tuple[int, ...] | None
    note: str = ""


def list_layers(model: nn.Module, example: torch.Tensor, *, spatial_only: bool = True) -> list[LayerInfo]:
    """Every named module's output shape for an example input, as maps where possible.

        for info in list_layers(resnet, torch.zeros(1, 3, 224, 224)): print(info)
    """
    modules = [(n, m) for n, m in model.named_modules() if n]
    infos: dict[str, LayerInfo] = {}
    trace = Trace(model, [n for n, _ in modules], spatial=False, clone=False)
    with trace, torch.no_grad():
        model(example)
    batch, input_hw = example.shape[0], tuple(example.shape[-2:]) if example.dim() == 4 else None
    for name, module in modules:
        if name not in trace.outputs:
            continue
        raw = trace.outputs[name]
        if not torch.is_tensor(raw):
            if not spatial_only:
                infos[name] = LayerInfo(name, type(module).__name__, None, f"returns {type(raw).__name__}")
            continue
        try:
            shape = tuple(to_maps(raw, model, name, batch, input_hw).shape[1:])
            infos[name] = LayerInfo(name, type(module).__name__, shape)
        except CaptureError as error:
            if not spatial_only:
                infos[name] = LayerInfo(name, type(module).__name__, None, str(error))
    return list(infos.values())


def maps_to_rows(maps: dict[str, torch.Tensor], layers: list[str], grid: int,
                 buffer: str | None = None) -> torch.Tensor:
    """Concatenate the layers' maps on a grid x grid raster as rows: (B * grid * grid, units).

        rows = maps_to_rows(trace.outputs, ["layer1", "layer2"], grid=32)

    ``buffer`` names a reused buffer (:func:`rosetta_lite.device.scratch`) to write the rows
    into instead of a fresh tensor: the mining loop's rows live one batch.
    """
    parts = []
    for layer in layers:
        maps_bchw = maps[layer].float()
        if maps_bchw.shape[-2:] != (grid, grid):
            # channels-last: after resizing, each position's units lie side by side, as rows need
            maps_bchw = F.interpolate(maps_bchw.contiguous(memory_format=torch.channels_last), size=(grid, grid),
                                      mode="bilinear", align_corners=False)
        parts.append(maps_bchw.permute(0, 2, 3, 1))  # (B, H, W, C) views; ViT tokens are already laid out so
    # one copy into fresh rows (callers centre them in place, so never a view of the recorded maps)
    if buffer is not None:
        shape = (*parts[0].shape[:3], sum(part.shape[3] for part in parts))
        rows_bhwu = torch.cat(parts, 3, out=scratch(buffer, shape, parts[0]))
    else:
        rows_bhwu = torch.cat(parts, 3) if len(parts) > 1 else parts[0].clone(memory_format=torch.contiguous_format)
    return rows_bhwu.reshape(-1, rows_bhwu.shape[-1])


def record_generator(generator: Member, z: torch.Tensor, layers: list[str] | None = None, *,
                     grad: bool = False) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Generate images in [0, 1] and record the generator's layers: (images, maps by layer).

        images, maps = record_generator(gan, z.requires_grad_(), grad=True)   # maps differentiable in z

    ``layers`` defaults to the generator's mined layers. ``grad`` keeps the maps in the
    autograd graph (for optimising z through them); without it they are detached.
    """
    with Trace(generator.model, layers or generator.layers, detach=not grad) as trace:
        images = generator.generate(z)
    return images.clamp(0, 1), trace.outputs


def record_encoder(encoder: Member, images: torch.Tensor, layers: list[str] | None = None, *,
                   grad: bool = False) -> dict[str, torch.Tensor]:
    """Run an encoder on images in [0, 1], stopping after the last recorded layer: maps by layer.

        maps = record_encoder(clip, images)   # the encoder's mined layers, detached

    ``layers`` defaults to the encoder's mined layers; ``grad`` keeps the maps in the
    autograd graph (for losses on features of generated images).
    """
    with Trace(encoder.model, layers or encoder.layers, stop=True, detach=not grad) as trace:
        encoder.encode(images)
    return trace.outputs
