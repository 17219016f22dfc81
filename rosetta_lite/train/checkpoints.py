"""Training checkpoints and shipped weights: atomic writes, resumable runs, trained-or-shipped loading.

    save_checkpoint({"step": 10, "model": net.state_dict()}, checkpoint_path(out, "lite-resnet-sup"))
    net = load_weights(build_member("lite-resnet-sup"), weights_path(out, "lite-resnet-sup"))
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from rosetta_lite.files import atomic_path
from rosetta_lite.zoo.weights import verified_file


def _atomic_write(path: Path, write: Callable[[str], None]) -> None:
    with atomic_path(path) as tmp:  # the project's one atomic write
        write(tmp)


def save_checkpoint(state: dict, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename over ``path``."""
    _atomic_write(Path(path), lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: str | os.PathLike) -> Optional[dict]:
    """The checkpoint at ``path`` (tensors and plain values only), or None when there is none.

        state = load_checkpoint("runs/zoo/lite-resnet-sup.ckpt.pt")

    Loaded with ``weights_only=True``: a file holding any other object, which unpickling
    could make run code, is refused with a ValueError and never executed.
    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise ValueError(f"{path} holds objects other than tensors and plain values, refused unread (loading it "
                         f"could run code; {str(error).splitlines()[0]}); delete it to train from the start") from None


def save_weights(module: nn.Module, path: str | os.PathLike, metadata: Optional[dict] = None) -> int:
    """Save a module's state dict as safetensors (atomically); returns the file size in bytes.

    Shared tensors are stored once per name (contiguous copies), so the file loads
    with ``safetensors.torch.load_file`` + ``module.load_state_dict``.
    """
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}
    meta = {k: str(v) for k, v in (metadata or {}).items()}
    path = Path(path)
    _atomic_write(path, lambda tmp: save_file(state, tmp, metadata=meta))
    return path.stat().st_size


def load_weights(module: nn.Module, path: str | os.PathLike, strict: bool = True) -> nn.Module:
    """Load a safetensors state dict into ``module`` (built by ``rosetta_lite.zoo.lite_arch``)."""
    from safetensors.torch import load_file

    module.load_state_dict(load_file(str(path)), strict=strict)
    return module


def checkpoint_path(out_dir: str | os.PathLike, member: str) -> Path:
    return Path(out_dir) / f"{member}.ckpt.pt"


def weights_path(out_dir: str | os.PathLike, member: str) -> Path:
    return Path(out_dir) / f"{member}.safetensors"


def trained_or_shipped(out_dir: str | os.PathLike, member: str) -> Path:
    """The weights of a member another recipe depends on: those a run trained in ``out_dir``
    (``train --all`` trains it first), else the shipped ones, checksum verified.

        trained_or_shipped("runs/zoo", "lite-resnet-sup")   # the GAN's judge
    """
    path = weights_path(out_dir, member)
    if path.exists():
        return path

    return verified_file(member)
