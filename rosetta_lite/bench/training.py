"""The training benchmark: seconds per step of the zoo's recipes in fp32 and bf16, one run.

    python -m rosetta_lite bench training --members lite-resnet-dino lite-clip --steps 20

Each member's recipe (its batch size and options as ``train`` runs it) trains a few warm-up
steps, then ``steps`` timed steps, once per precision, in a temporary folder; the
precisions alternate ``repeats`` times and each keeps its fastest time, so the ratio
comes from one run on one machine. bf16 falls back to fp32 where the device has no native
bf16 (the report says which ran). The GAN is timed with its vision-aided discriminator on
from the first step, as in all but the first 500 steps of its recipe.
"""

from __future__ import annotations

import argparse
import json
import tempfile

import torch

from rosetta_lite.device import native_bf16, resolve_device
from rosetta_lite.train.recipes import ORDER, train

PRECISIONS = ("fp32", "bf16")
TIMED_MEMBERS = ORDER


def seconds_per_step(member: str, precision: str, steps: int = 10, warmup: int = 3,
                     device: str = "cpu") -> dict:
    """Mean seconds of ``steps`` training steps after ``warmup`` untimed ones, the precision that
    ran and the batch size.

        seconds_per_step("lite-resnet-dino", "bf16", steps=10)["seconds"]
    """
    if member not in TIMED_MEMBERS:
        raise ValueError(f"member must be one of {list(TIMED_MEMBERS)}, got {member!r}")
    if steps < 1 or warmup < 1:
        raise ValueError(f"steps and warmup must be at least 1, got {steps} and {warmup}")
    # the GAN's vision-aided discriminator counts from the first step, as in all but its first 500
    options = {"precision": precision, **({"feature_start": 0} if member == "lite-gan" else {})}
    with tempfile.TemporaryDirectory() as folder:
        kw = dict(steps=warmup + steps, progress=False, device=device, checkpoint_every=warmup + steps, **options)
        first = train(member, folder, stop_after=warmup, **kw)
        second = train(member, folder, **kw)  # resumes: its seconds add the timed steps
    return {"seconds": (second["seconds"] - first["seconds"]) / steps,
            "precision": second["config"]["precision"], "batch_size": second["batch_size"]}


def bench_training(members: list[str], steps: int = 10, repeats: int = 2, device: str = "cpu") -> list[dict]:
    """Per member: seconds per step in fp32 and in bf16 (fastest of ``repeats``), and their ratio.

        rows = bench_training(["lite-resnet-sup"], steps=10)
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    rows = []
    for member in members:
        best = {p: float("inf") for p in PRECISIONS}
        for _ in range(repeats):
            for precision in PRECISIONS:
                timing = seconds_per_step(member, precision, steps, device=device)
                best[precision] = min(best[precision], timing["seconds"])
        rows.append({"member": member, "batch_size": timing["batch_size"],
                     "fp32_seconds_per_step": round(best["fp32"], 4),
                     "bf16_seconds_per_step": round(best["bf16"], 4), "bf16_ran_as": timing["precision"],
                     "speed_up": round(best["fp32"] / best["bf16"], 2)})
    return rows


def main(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    rows = bench_training(args.members, steps=args.steps, repeats=args.repeats, device=str(device))
    report = {"benchmark": "training", "threads": args.threads, "device": str(device),
              "native_bf16": native_bf16(device), "steps": args.steps, "repeats": args.repeats,
              "members": rows}
    print(json.dumps(report) if args.json else json.dumps(report, indent=1))
    return 0
