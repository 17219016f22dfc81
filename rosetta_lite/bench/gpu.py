"""The GPU check: the full-scale path on a lent or Colab GPU, untrained weights, one JSON report.

    python -m rosetta_lite check gpu --json
    python -m rosetta_lite check gpu --generator biggan-deep-128 --encoders resnet50 dino-vitb16 --images 32

On CUDA with the full-scale zoo's untrained weights (nothing to download), it runs a small
mining run with the tables on the device and on the host, each in tf32 and bf16; the
float64 exactness check on a sample of units (:func:`~rosetta_lite.mining.reference.check_exactness`)
in fp32, tf32 and bf16; one inversion and one editing run on the first run's dictionary; and
a two-process ``torchrun`` mining run on the same GPU, whose tables must equal the one-process
run's. Each part reports its seconds, images per second and peak GPU memory, beside the
memory plan's estimate (:func:`~rosetta_lite.mining.plan.estimate_memory`). ``passed`` is
true when every part ran, the fp32 tables are exact (below :data:`ERROR_TARGET`) and the two
processes agree with one.

``GpuCheckOptions(device="cpu")`` runs the same logic on the CPU, at a size the options
choose (the tests use the lite zoo); the command line refuses a machine without CUDA.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from rosetta_lite.applications.edit import edit, shift
from rosetta_lite.applications.invert import invert
from rosetta_lite.device import check_precision, resolve_device
from rosetta_lite.dictionary.rosetta import build_dictionary
from rosetta_lite.mining import processes as distributed
from rosetta_lite.mining.loop import mine
from rosetta_lite.mining.plan import MemoryRequest, estimate_memory, table_bytes
from rosetta_lite.mining.reference import check_exactness
from rosetta_lite.mining.settings import MiningResult
from rosetta_lite.zoo.member import Member
from rosetta_lite.zoo.registry import ZOOS, zoo_members

#: the largest difference from float64 Pearson that fp32 mining may show
ERROR_TARGET = 1e-5
#: the largest difference between the two-process run's tables and the one-process run's
PROCESSES_TARGET = 1e-5
#: what each mining run of the check tries: where the tables live, and the models' precision
MINING_RUNS = (("device", "tf32"), ("device", "bf16"), ("host", "tf32"), ("host", "bf16"))
EXACT_PRECISIONS = ("fp32", "tf32", "bf16")
MIB = 2**20


@dataclass
class GpuCheckOptions:
    """What the GPU check runs, and how large; checked as a whole by :meth:`check`.

        run_check(GpuCheckOptions(generator="biggan-deep-128", encoders=["resnet50"], images=32))
    """

    device: str = "cuda"
    zoo: str = "full-untrained"  # untrained: nothing to download; the lite zoo only for testing the check
    generator: str | None = None  # None: the zoo's (biggan-deep-256 at full scale)
    encoders: list[str] | None = None  # None: every encoder of the zoo
    images: int = 64  # mined by every run
    batch_size: int = 16
    grid: int | None = 56  # the full-scale chapters' grid
    exact_images: int = 8
    exact_units: int = 256  # per model, for the float64 check
    targets: int = 2  # images inverted and latents edited
    steps: int = 2  # optimisation steps of the inversion and of the edit
    application_precision: str = "bf16"  # the inversion's and the edit's forward passes
    processes: int = 2  # of the torchrun run on this one device; 0 or 1: no torchrun run

    def check(self) -> None:
        """Refuse settings the check cannot run: a missing CUDA device first, in one line."""
        if str(self.device).startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"check gpu needs a CUDA device, and torch {torch.__version__} sees none on this "
                             "machine; run it where a GPU is (e.g. a Colab GPU runtime)")
        resolve_device(self.device)
        if self.zoo not in ZOOS:
            raise ValueError(f"zoo must be one of {list(ZOOS)}, got {self.zoo!r}")
        for name in ("images", "batch_size", "exact_images", "exact_units", "targets", "steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if self.processes not in (0, 1) and self.images < self.processes * self.batch_size:
            raise ValueError(f"images ({self.images}) must make at least one batch of {self.batch_size} for each of "
                             f"the {self.processes} processes; mine more images or lower batch_size")
        check_precision(self.application_precision)


@dataclass
class Part:
    """One part of the check as it ran: seconds, peak GPU memory, figures of its own, or the error that stopped it."""

    seconds: float | None = None
    peak_gpu_mb: float | None = None
    figures: dict = field(default_factory=dict)
    error: str | None = None

    def report(self) -> dict:
        """The part as JSON: its figures, seconds and peak memory, or its error."""
        out = {"seconds": self.seconds, "peak_gpu_mb": self.peak_gpu_mb, **self.figures}
        return out | ({"error": self.error} if self.error else {})


def measured(device: torch.device, work: Callable[[], dict]) -> Part:
    """Run ``work`` (returning its figures), timed and with its peak GPU memory; an exception becomes the part's error.

        part = measured(torch.device("cuda"), lambda: {"images": 64})

    A check of a new machine reports every part it could run rather than stopping at the
    first failure, so any exception is kept (its type, message and the line that raised it).
    """
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    try:
        figures = work()
    except Exception as error:  # noqa: BLE001 - the report names it; the other parts still run
        where = traceback.extract_tb(error.__traceback__)[-1]
        return Part(error=f"{type(error).__name__}: {error} ({Path(where.filename).name}:{where.lineno})"[:2000])
    if cuda:
        torch.cuda.synchronize(device)
    peak = round(torch.cuda.max_memory_allocated(device) / MIB, 1) if cuda else None
    return Part(round(time.perf_counter() - start, 3), peak, figures)


def check_members(options: GpuCheckOptions) -> tuple[Member, list[Member]]:
    """The check's generator and encoders, untrained unless the zoo says otherwise, on its device.

        gan, encoders = check_members(GpuCheckOptions(device="cpu", zoo="lite-untrained"))
    """
    gan, encoders = zoo_members(options.zoo, options.generator, options.encoders)
    for member in [gan, *encoders]:
        member.to(options.device)
    return gan, encoders


def _mining_part(gan: Member, encoders: list[Member], o: GpuCheckOptions, tables: str, precision: str,
                 kept: dict) -> Callable[[], dict]:
    def work() -> dict:
        start = time.perf_counter()
        result = mine(gan, encoders, o.images, batch_size=o.batch_size, progress=False, device=o.device,
                      precision=precision, grid=o.grid, tables=tables)
        seconds = time.perf_counter() - start
        if not kept:
            kept["result"] = result
        estimate = estimate_memory(gan, encoders, MemoryRequest(o.grid, o.batch_size, tables))
        return {"tables": tables, "precision": precision, "tables_placed_on": result.settings.extra["tables"],
                "images_per_s": round(o.images / seconds, 2),
                "estimated_device_mb": round(estimate.device / MIB, 1),
                "estimated_host_tables_mb": round(estimate.host / MIB, 1)}
    return work


def _inversion_part(gan: Member, encoders: list[Member], o: GpuCheckOptions, kept: dict) -> Callable[[], dict]:
    def work() -> dict:
        dictionary = kept["dictionary"]
        paired = [e for e in encoders if dictionary.rosetta_pairs(e.name)]
        with torch.no_grad():
            targets = gan.generate(gan.sample_latents(o.targets, seed=1).to(o.device))
        start = time.perf_counter()
        result = invert(gan, targets, dictionary, encoders=paired, perceptual=encoders[0], steps=o.steps, restarts=1,
                        batch_size=o.targets, progress=False, device=o.device, precision=o.application_precision)
        seconds = time.perf_counter() - start
        return {"targets": o.targets, "steps": o.steps, "precision": o.application_precision,
                "rosetta_encoders": [e.name for e in paired], "loss_finite": bool(torch.isfinite(result.loss).all()),
                "target_steps_per_s": round(o.targets * o.steps / seconds, 3)}
    return work


def _editing_part(gan: Member, o: GpuCheckOptions, kept: dict) -> Callable[[], dict]:
    def work() -> dict:
        z = gan.sample_latents(o.targets, seed=2)
        start = time.perf_counter()
        result = edit(gan, z, shift(0.125, 0.0), kept["dictionary"], units="all", steps=o.steps,
                      batch_size=o.targets, progress=False, device=o.device, precision=o.application_precision)
        seconds = time.perf_counter() - start
        finite = bool(torch.isfinite(result.after).all()) and all(math.isfinite(h) for h in result.history)
        return {"latents": o.targets, "steps": o.steps, "precision": o.application_precision, "edit": "shift",
                "units": "all", "images_finite": finite, "latent_steps_per_s": round(o.targets * o.steps / seconds, 3)}
    return work


def _exactness_part(gan: Member, encoders: list[Member], o: GpuCheckOptions) -> Callable[[], dict]:
    def work() -> dict:
        report = check_exactness(gan, encoders, images=o.exact_images, batch_size=min(o.batch_size, o.exact_images),
                                 units=o.exact_units, grid=o.grid, device=o.device, precisions=EXACT_PRECISIONS,
                                 tables="device")
        return {"max_abs_err_vs_float64": report.errors, "checked": report.describe()}
    return work


def _processes_part(o: GpuCheckOptions, kept: dict) -> Callable[[], dict]:
    def work() -> dict:
        with tempfile.TemporaryDirectory() as folder:
            spec = Path(folder) / "spec.json"
            spec.write_text(json.dumps({"options": asdict(o), "out": folder}))
            command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                       f"--nproc_per_node={o.processes}", "-m", "rosetta_lite.bench.gpu", str(spec)]
            env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
            done = subprocess.run(command, capture_output=True, text=True, env=env)
            if done.returncode != 0:
                raise RuntimeError(f"torchrun exited {done.returncode}: {done.stderr.strip()[-1500:]}")
            figures = json.loads((Path(folder) / "rank0.json").read_text())
            two = MiningResult.load(Path(folder) / "result.safetensors")
        one = kept["result"]
        figures["max_abs_diff_vs_one_process"] = max(
            float((two.similarity(name) - one.similarity(name)).nan_to_num(torch.inf).abs().max())
            for name in one.pairs)
        return figures
    return work


def torchrun_worker(spec_path: str) -> None:
    """One process of the check's torchrun run: mine the check's images, rank 0 writes its figures and tables.

        torchrun --nproc_per_node=2 -m rosetta_lite.bench.gpu spec.json
    """
    spec = json.loads(Path(spec_path).read_text())
    o = GpuCheckOptions(**spec["options"])
    device = torch.device(o.device)
    if device.type == "cuda" and torch.cuda.device_count() < distributed.world_size_from_env():
        # NCCL refuses two ranks on one GPU; gloo all-reduces CUDA tensors, so the processes share it
        device = torch.device("cuda", 0)
        torch.cuda.set_device(device)
        dist.init_process_group(backend="gloo")
    o = dataclasses.replace(o, device=str(device))
    try:
        gan, encoders = check_members(o)
        part = measured(device, lambda: {"result": mine(gan, encoders, o.images, batch_size=o.batch_size,
                                                        progress=False, device=o.device, precision="tf32",
                                                        grid=o.grid, tables="device")})
        if part.error:
            raise RuntimeError(part.error)
        if int(os.environ.get("RANK", "0")) == 0:
            part.figures.pop("result").save(Path(spec["out"]) / "result.safetensors")
            backend = dist.get_backend() if dist.is_initialized() else None
            (Path(spec["out"]) / "rank0.json").write_text(json.dumps(
                {"processes": distributed.world_size_from_env(), "backend": backend, "precision": "tf32",
                 "tables": "device", "images_per_s": round(o.images / part.seconds, 2), "seconds": part.seconds,
                 "peak_gpu_mb_rank0": part.peak_gpu_mb}))
    finally:
        distributed.teardown()


def run_check(options: GpuCheckOptions | None = None, **changes: Any) -> dict:
    """Every part of the GPU check, run in turn; the report as a dict (see the module's docstring).

        report = run_check()                                                   # on CUDA
        report = run_check(device="cpu", zoo="lite-untrained", images=8, grid=8, batch_size=4)
    """
    o = dataclasses.replace(options or GpuCheckOptions(), **changes)
    o.check()
    device = resolve_device(o.device)
    cuda = device.type == "cuda"
    report: dict[str, Any] = {"check": "gpu", "device": str(device), "torch": torch.__version__,
                              "gpu": torch.cuda.get_device_name(device) if cuda else None,
                              "options": asdict(o)}
    members: dict = {}

    def load() -> dict:
        members["gan"], members["encoders"] = check_members(o)
        gan, encoders = members["gan"], members["encoders"]
        return {"members": [gan.name, *[e.name for e in encoders]],
                "parameters": {m.name: sum(p.numel() for p in m.model.parameters()) for m in [gan, *encoders]}}

    loading = measured(device, load)
    report["load"] = loading.report()
    if loading.error:
        report["passed"] = False
        return report
    gan, encoders = members["gan"], members["encoders"]
    # one batch first: CUDA's context, cuDNN's algorithm search and the allocator's pools are no mining run's time
    warm_up = measured(device, lambda: {"images": mine(gan, encoders, o.batch_size, batch_size=o.batch_size,
                                                       progress=False, device=o.device, grid=o.grid).images_counted})
    report["warm_up"] = warm_up.report()
    kept: dict = {}
    runs = [measured(device, _mining_part(gan, encoders, o, tables, precision, kept)) for tables, precision in
            MINING_RUNS]
    report["mining"] = [part.report() for part in runs]
    if "result" in kept:
        result = kept["result"]
        report["units"] = {name: sum(widths) for name, widths in result.settings.units.items()}
        report["tables_mb"] = round(table_bytes(result.settings.units, gan.name) / MIB, 1)
        kept["dictionary"] = build_dictionary(result, 3)
        report["rosetta_neurons"] = kept["dictionary"].rosetta_count()
    exact = measured(device, _exactness_part(gan, encoders, o))
    parts = {"exactness": exact}
    if "dictionary" in kept:
        parts["inversion"] = measured(device, _inversion_part(gan, encoders, o, kept))
        parts["editing"] = measured(device, _editing_part(gan, o, kept))
    if o.processes > 1 and "result" in kept:
        if cuda:  # the processes load the zoo again on the same GPU
            torch.cuda.empty_cache()
        parts["torchrun"] = measured(device, _processes_part(o, kept))
    report.update({name: part.report() for name, part in parts.items()})
    report["failures"] = _failures(report, runs, parts, o)
    report["passed"] = not report["failures"]
    return report


def _failures(report: dict, runs: list[Part], parts: dict[str, Part], o: GpuCheckOptions) -> list[str]:
    """What makes the check fail, one line each."""
    failures = [f"warm-up: {report['warm_up']['error']}"] if "error" in report["warm_up"] else []
    failures += [f"mining with {t} tables in {p}: {part.error}" for (t, p), part in zip(MINING_RUNS, runs)
                 if part.error]
    failures += [f"{name}: {part.error}" for name, part in parts.items() if part.error]
    for name in ("inversion", "editing"):
        if name not in parts and not failures:
            failures.append(f"{name}: not run (no dictionary)")
    errors = report["exactness"].get("max_abs_err_vs_float64", {})
    if "fp32" in errors and not errors["fp32"] < ERROR_TARGET:
        failures.append(f"exactness: fp32 tables differ from float64 Pearson by {errors['fp32']:.2e} "
                        f"(target {ERROR_TARGET})")
    for name, key in (("inversion", "loss_finite"), ("editing", "images_finite")):
        if name in parts and not parts[name].error and not report[name][key]:
            failures.append(f"{name}: an image or a loss is not finite")
    if "torchrun" in parts and not parts["torchrun"].error:
        diff = report["torchrun"]["max_abs_diff_vs_one_process"]
        if not diff < PROCESSES_TARGET:
            failures.append(f"torchrun: {o.processes} processes' tables differ from one process's by {diff:.2e} "
                            f"(target {PROCESSES_TARGET})")
    return failures


def main(args: argparse.Namespace) -> int:
    """The ``check gpu`` action of the command line: the report as JSON; exit status 1 when it did not pass."""
    options = GpuCheckOptions(**{f.name: getattr(args, f.name) for f in dataclasses.fields(GpuCheckOptions)})
    report = run_check(options)
    print(json.dumps(report, indent=None if args.json else 2))
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    torchrun_worker(sys.argv[1])
