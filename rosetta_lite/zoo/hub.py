"""Hub access for the full-scale members: is the hub reachable, and state dicts from a URL or a file.

    reason = hub_unavailable_reason()   # None when weights can be downloaded
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import torch

from rosetta_lite.zoo.member import ZooError


def hub_unavailable_reason(host: str = "huggingface.co") -> str | None:
    """Why pretrained weights cannot be downloaded from ``host``, or None if it seems reachable.

        if hub_unavailable_reason("s3.amazonaws.com"): ...   # offline: use weights= or pretrained=False
    """
    # HF_HUB_OFFLINE is the switch users and tests already set; it stands for every model hub here
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return "HF_HUB_OFFLINE is set"
    try:
        socket.create_connection((host, 443), timeout=3).close()
    except OSError as error:
        return f"{host} is not reachable ({error.__class__.__name__})"
    return None


def cached_download(url: str, file_name: str | None = None) -> Path | None:
    """The file ``torch.hub.load_state_dict_from_url(url, file_name=...)`` saved earlier, or None.

        cached_download(DINO_RESNET50_URL)   # ~/.cache/torch/hub/checkpoints/dino_resnet50_pretrain.pth
    """
    path = Path(torch.hub.get_dir()) / "checkpoints" / (file_name or url.rsplit("/", 1)[-1])
    return path if path.is_file() else None


def offline_error(name: str, reason: str, url: str | None = None) -> ZooError:
    """The error for pretrained weights that cannot be downloaded, saying what to do instead.

        if reason := hub_unavailable_reason(): raise offline_error("clip-rn50", reason)
    """
    source = f" ({url})" if url else ""
    return ZooError(
        f"{name}: pretrained weights are a download{source} and {reason}. Run where the model hubs are "
        f"reachable (e.g. Colab), or point at a local file: zoo.load({name!r}, weights='path/to/weights'); "
        f"for untrained weights of the real shapes use zoo.load({name!r}, pretrained=False)")


def read_state_dict(path: str) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors or torch weights file, unwrapped from a training checkpoint.

        state = read_state_dict("dino_resnet50_pretrain.pth")   # {"conv1.weight": ..., ...}

    Torch files load with ``weights_only=True`` (anything else is refused, never unpickled);
    a checkpoint's ``state_dict`` / ``model`` / ``teacher`` entry and ``module.`` / ``backbone.``
    prefixes are taken off.
    """
    if not Path(path).exists():
        raise ZooError(f"weights file {path!r} does not exist")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path)
    import argparse
    import pickle

    try:  # DINO's checkpoints keep their training arguments, a plain Namespace, beside the weights
        with torch.serialization.safe_globals([argparse.Namespace]):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise ZooError(f"weights file {path!r} holds objects other than tensors and plain values, so it was not "
                       f"unpickled (loading it could run code): {str(error).splitlines()[0]}. If you trust the file, "
                       "save its weights alone and load that file: state = torch.load(path, weights_only=False); "
                       "torch.save(state.get('teacher', state), 'weights.pth') (a DINO checkpoint's 'teacher')"
                       ) from None
    for key in ("state_dict", "model", "teacher"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    return {k.removeprefix("module.").removeprefix("backbone."): v for k, v in state.items()}
