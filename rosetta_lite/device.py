"""Devices and precisions: CUDA checks, TF32 / autocast contexts, bf16 support, reused buffers.

    device = resolve_device("auto")                   # "cuda" when a GPU is there, else "cpu"
    with precision_context("bf16", device): images = gan.generate(z)
"""

from __future__ import annotations

import contextlib

import torch

#: fp32: exact statistics (the default); tf32: TF32 matmuls allowed (GPU); bf16 / fp16: the
#: models run under autocast in that dtype, statistics still in float32 / float64
PRECISIONS = ("fp32", "tf32", "bf16", "fp16")


def check_precision(precision: str) -> str:
    """``precision`` if it is one of :data:`PRECISIONS`, else a ValueError listing them.

        check_precision("bf16")
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
    return precision


@contextlib.contextmanager
def precision_context(precision: str, device: str | torch.device):
    """Run the models in ``precision``: TF32 switches, and autocast for bf16 / fp16.

        with precision_context("bf16", "cuda"): images = gan.generate(z)

    Statistics are computed outside autocast (rows are converted to float32 first), so
    only the activations carry the lower precision.
    """
    check_precision(precision)
    device_type = torch.device(device).type
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = precision != "fp32"
    try:
        if precision in ("bf16", "fp16"):
            dtype = torch.bfloat16 if precision == "bf16" else torch.float16
            with torch.autocast(device_type, dtype=dtype):
                yield
        else:
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


def scratch(tag: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    """A reusable buffer of ``shape`` (dtype and device of ``like``), one per ``tag``.

        buffer = scratch("squares", rows.shape, rows)   # overwritten by the next call with this tag

    On the CPU a fresh multi-megabyte temporary per batch costs more in page faults than
    the arithmetic that fills it, and many small chunked operations each pay a thread
    synchronisation; one buffer per role, kept between batches, avoids both. On a GPU the
    caching allocator already does this, so a fresh tensor is returned. The buffers are
    per process: two mining loops in threads of one process would overwrite each other's.
    """
    numel = 1
    for side in shape:
        numel *= side
    if like.device.type != "cpu":
        return torch.empty(shape, dtype=like.dtype, device=like.device)
    held = _SCRATCH.get(tag)
    if held is None or held.dtype != like.dtype or held.numel() < numel:
        held = _SCRATCH[tag] = torch.empty(numel, dtype=like.dtype)
    return held[:numel].view(shape)


def resolve_device(device: str | torch.device) -> torch.device:
    """``torch.device(device)``, refusing a CUDA device on a machine without one."""
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}") from None
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {str(device)!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} asked for, but torch sees no CUDA GPU here; use 'cpu'")
    return device


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 natively (emulated bf16 is slower than fp32)."""
    if device.type == "cuda":
        try:
            return torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:  # torch < 2.4 has no such argument and counts only native bf16
            return torch.cuda.is_bf16_supported()
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


_SCRATCH: dict[str, torch.Tensor] = {}
