"""The lite zoo's shipped weights: safetensors files with a manifest of checksums.

    state = verified_state_dict("lite-resnet-sup")

``manifest.json`` records, for each member, its file, SHA-256 and size, the recipe and
seed that made it, and its measured quality figures.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from rosetta_lite.files import atomic_path
from rosetta_lite.zoo.member import ZooError

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
MANIFEST = WEIGHTS_DIR / "manifest.json"
MANIFEST_SCHEMA = 1


def retrain_command(name: str) -> str:
    return f"python -m rosetta_lite train {name} --install"


def read_manifest(path: Path = MANIFEST) -> dict:
    """The manifest as a dict ({"schema": 1, "members": {name: entry}}); empty if absent."""
    if not path.exists():
        return {"schema": MANIFEST_SCHEMA, "members": {}}
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ZooError(f"the weights manifest {path} cannot be read ({error}); restore it with git "
                       f"(git checkout -- {_repo_path(path)})") from None
    if manifest.get("schema") != MANIFEST_SCHEMA:
        raise ZooError(f"{path} has schema {manifest.get('schema')!r}; this rosetta_lite reads {MANIFEST_SCHEMA}")
    return manifest


def _repo_path(path: Path) -> str:
    """``path`` as git takes it from the repository's root (the package's own folder otherwise)."""
    root = Path(__file__).resolve().parents[2]
    try:
        return str(Path(path).resolve().relative_to(root))
    except ValueError:
        return str(path)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def entry(name: str, folder: Path = WEIGHTS_DIR) -> dict:
    """The manifest entry of ``name``, or a ZooError that says how to make it."""
    members = read_manifest(folder / "manifest.json")["members"]
    if name not in members:
        raise ZooError(f"no weights for {name!r} in {folder / 'manifest.json'}; train them with: "
                       f"{retrain_command(name)}")
    return members[name]


def verified_state_dict(name: str, folder: Path = WEIGHTS_DIR) -> dict[str, torch.Tensor]:
    """Load ``name``'s weights after checking the file against its manifest checksum.

        state = verified_state_dict("lite-resnet-sup"); net.load_state_dict(state)
    """
    return load_file(verified_file(name, folder))


def verified_file(name: str, folder: Path = WEIGHTS_DIR) -> Path:
    """The path of ``name``'s weights file, after checking it against its manifest checksum.

        path = verified_file("lite-gan")
    """
    info = entry(name, folder)
    path = folder / info["file"]
    if not path.exists():
        raise ZooError(f"weights file {path} of {name!r} is missing; retrain it with: {retrain_command(name)}")
    if sha256(path) != info["sha256"]:
        raise ZooError(f"weights file {path} of {name!r} is corrupt (SHA-256 differs from the manifest); "
                       f"restore it with git (git checkout -- {_repo_path(path)}) or retrain: {retrain_command(name)}")
    return path


def install(name: str, source: Path, record: dict, folder: Path = WEIGHTS_DIR) -> Path:
    """Copy a trained weights file into ``folder`` and record it in the manifest.

        install("lite-gan", Path("runs/zoo/lite-gan.safetensors"), {"seed": 1000, "quality": {...}})
    """
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{name}.safetensors"
    data = Path(source).read_bytes()
    with atomic_path(target) as tmp:
        Path(tmp).write_bytes(data)
    manifest = read_manifest(folder / "manifest.json")
    manifest["members"][name] = {"file": target.name, "sha256": hashlib.sha256(data).hexdigest(),
                                 "bytes": len(data), **record}
    manifest["members"] = dict(sorted(manifest["members"].items()))
    with atomic_path(folder / "manifest.json") as tmp:
        Path(tmp).write_text(json.dumps(manifest, indent=2) + "\n")
    return target


def check_finite(state: dict[str, torch.Tensor], source: str) -> None:
    """Refuse weights holding NaN or infinity, naming the first such tensor (a member would mine only NaN).

        check_finite(load_file("runs/zoo/lite-clip.safetensors"), "runs/zoo/lite-clip.safetensors")
    """
    for key, value in state.items():
        if torch.is_tensor(value) and value.is_floating_point() and not torch.isfinite(value).all():
            bad = int((~torch.isfinite(value)).sum())
            raise ZooError(f"weights {source}: tensor {key!r} holds {bad} NaN or infinite value(s) of "
                           f"{value.numel()}; the file is damaged or its training diverged")

