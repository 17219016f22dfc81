"""A whole mining run, as the CLI and the chapters start it: zoo in, dictionaries out.

    run = open_run("runs/lite")                                   # mine if needed, then load
    summary = mine_zoo("lite", images=2000, out="runs/lite", control=True)

Loads the zoo's generator and encoders (and, with ``control``, untrained seeded copies of
the encoders, mined in the same pass on the same images), mines, and saves the
dictionary of the trained zoo in ``out`` and that of the control zoo in ``out/control``.
A call that mines also writes ``out/memory.json``: the peak memory mining took beside the
plan's estimate (:func:`~rosetta_lite.mining.plan.estimate_memory`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from rosetta_lite.device import resolve_device
from rosetta_lite.dictionary.rosetta import DictionaryError, RosettaDictionary, build_dictionary
from rosetta_lite.files import DEFAULT_RUN, atomic_path, project_path, run_lock, writable_dir
from rosetta_lite.mining import processes as distributed
from rosetta_lite.mining.loop import MiningOptions, mine
from rosetta_lite.mining.plan import MemoryRequest, estimate_memory, plan
from rosetta_lite.mining.ranges import count, missing_ranges
from rosetta_lite.mining.settings import ACCUMULATORS, CHECKPOINT, MiningResult
from rosetta_lite.zoo.member import Member, ZooError
from rosetta_lite.zoo.registry import (
    CONTROL_SUFFIX,
    ZOOS,
    chosen_options,
    control_members,
    load,
    split_zoo,
    use_weights,
    zoo_members,
)


@dataclass
class ZooOptions:
    """Which members a zoo run mines and how its dictionaries are built; how it mines is a :class:`MiningOptions`.

        mine_zoo("lite", 200, "runs/quick", zoo_options=ZooOptions(k=5, control=False))
    """

    k: int = 3  # best buddies kept per unit
    mode: str = "mutual"
    control: bool = True  # also mine untrained seeded copies of the encoders, in the same pass
    control_seed: int = 1  # the control's seed (it overrides MiningOptions.control_seed, which only records it)
    generator: str | None = None  # None: the zoo's
    encoders: list[str] | None = None  # None: all the zoo's
    #: the generator's member options (a BigGAN's classes, truncation, noise_bound, layers); None values: its defaults
    generator_options: dict[str, Any] | None = None
    #: local weights files of pretrained members, {member: path} (see rosetta_lite.zoo.registry.use_weights)
    weights: dict[str, str] | None = None


ZOO_OPTIONS = tuple(f.name for f in dataclasses.fields(ZooOptions))


def mine_zoo(scale: str = "lite", images: int = 2000, out: str | Path = DEFAULT_RUN, *,
             zoo_options: ZooOptions | None = None, options: MiningOptions | None = None,
             **changes: Any) -> dict | None:
    """Mine a zoo, save its dictionary (and the control's), return their summaries.

        mine_zoo("lite", images=200, out="runs/quick")
        mine_zoo("lite", images=200, out="runs/mi", k=5, similarity="mi")   # best buddies by mutual information

    ``changes`` named like a field of :class:`ZooOptions` (``k``, ``mode``, ``control``,
    ``control_seed``, ``generator``, ``encoders``) apply to ``zoo_options``, the others to
    ``options``, which go to :func:`rosetta_lite.mining.loop.mine` (``similarity``,
    ``device``, ``precision``, ...). Under torchrun only rank 0 saves and returns the
    summary; the other processes return None.
    """
    zoo = dataclasses.replace(zoo_options or ZooOptions(), **{n: changes.pop(n) for n in ZOO_OPTIONS if n in changes})
    opts = dataclasses.replace(options or MiningOptions(), **changes)
    opts.check(images)  # before the models load
    if zoo.weights:
        use_weights(zoo.weights)
    generator_options = chosen_options(zoo.generator_options)
    gan, trained = zoo_members(scale, zoo.generator, zoo.encoders, generator_options)
    check_k(zoo.k, plan(gan, trained)[1])
    out = writable_dir(out)  # only once the run can start: a refused one leaves no empty folder
    controls = control_members(trained, zoo.control_seed) if zoo.control else []
    # a single process that has images left to mine records its peak memory (a finished run only reloads)
    record = not distributed.active() and images_saved(out) < images
    with run_lock(out) if distributed.lead_process() else contextlib.nullcontext():  # mining and saving: one writer
        with peak_memory(opts.device) as peak:
            result = mine(gan, trained + controls, images, out=out, options=opts,
                          control_seed=zoo.control_seed if zoo.control else None)
        if record:
            write_memory_record(out, peak, gan, trained + controls, result, opts)
        result.settings.extra["zoo"] = scale
        if generator_options:  # the run's generator is rebuilt with them (open_run)
            result.settings.extra["generator_options"] = generator_options
        if distributed.active() and distributed.dist.get_rank() != 0:
            return None
        return save_dictionaries(result, out, k=zoo.k, mode=zoo.mode)


MEMORY_RECORD = "memory.json"  # in a run folder: the peak memory of its mining beside the plan's estimate


def images_saved(folder: str | Path) -> int:
    """How many latents a run folder's checkpoint or accumulators hold, read from their headers alone.

        images_saved("runs/lite")   # 2000 for a finished default run, 0 for an empty folder
    """
    from safetensors import safe_open

    held = 0
    for name in (CHECKPOINT, ACCUMULATORS):
        path = Path(folder) / name
        if path.is_file():
            with safe_open(str(path), "pt") as handle:
                held = max(held, count(json.loads((handle.metadata() or {}).get("counted", "[]"))))
    return held


def _proc_status(key: str) -> int:
    with open("/proc/self/status") as status:
        return int(next(line for line in status if line.startswith(key + ":")).split()[1]) * 1024


@contextlib.contextmanager
def peak_memory(device: str = "cpu") -> Iterator[dict]:
    """The peak memory a block adds: resident memory (Linux) and, on CUDA, allocated GPU memory.

        with peak_memory("cpu") as peak:
            mine(gan, encoders, 64)
        peak["rss_growth_bytes"]   # None where it cannot be measured

    ``rss_growth_bytes``: the process's peak resident memory during the block less its
    resident memory just before (the kernel's high-water mark is reset first, so a peak of
    earlier work does not count). ``gpu_peak_bytes``: the peak allocated on the CUDA
    device during the block, everything on it included.
    """
    import torch

    figures: dict = {"rss_growth_bytes": None, "gpu_peak_bytes": None}
    before = None
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")  # "5" resets VmHWM to the current resident size
        before = _proc_status("VmRSS")
    except (OSError, StopIteration):  # not Linux, or not allowed: no honest peak to give
        pass
    cuda = resolve_device(device).type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(resolve_device(device))
    yield figures
    if before is not None:
        figures["rss_growth_bytes"] = _proc_status("VmHWM") - before
    if cuda:
        figures["gpu_peak_bytes"] = torch.cuda.max_memory_allocated(resolve_device(device))


def write_memory_record(out: Path, peak: dict, generator: Member, encoders: list[Member], result: MiningResult,
                        options: MiningOptions) -> dict:
    """Write ``out/memory.json``: a mining run's measured peak beside the plan's estimate, and return it.

        write_memory_record(out, peak, gan, encoders, result, options)   # as mine_zoo does after mining

    On the CPU ``rss_growth_bytes`` compares with the estimate's ``mining_bytes`` (all but
    the models, loaded before mining); on CUDA ``gpu_peak_bytes`` with ``device_bytes``.
    The estimate is Pearson's: a mutual-information run records the measurement alone.
    """
    record: dict = {"images": result.images_counted, "device": options.device, "measured": peak, "estimate": None}
    if options.similarity == "pearson":
        request = MemoryRequest(options.grid, options.batch_size, result.settings.extra.get("tables", "device"),
                                options.chunk_bytes)
        estimate = estimate_memory(generator, encoders, request)
        record["estimate"] = {**dataclasses.asdict(estimate), "device_bytes": estimate.device,
                              "host_bytes": estimate.host, "mining_bytes": estimate.device - estimate.models}
    with atomic_path(out / MEMORY_RECORD) as tmp:
        Path(tmp).write_text(json.dumps(record, indent=1))
    return record


def check_k(k: int, units: dict[str, list[int]]) -> None:
    """Refuse a best-buddy K outside 1 .. the smallest model's unit count; warn above 50.

        check_k(3, {"lite-gan": [256, 128], "lite-clip": [64, 128]})
    """
    most = min(sum(widths) for widths in units.values())
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= most:
        raise ValueError(f"k must be an integer from 1 to {most} (the smallest model's units), got {k!r}")
    if k > 50:
        warnings.warn(f"k={k} keeps up to {k} buddies a unit: the dictionary and its JSON grow with k "
                      "(the paper uses 1 to 5)", UserWarning, stacklevel=3)


def save_dictionaries(result: MiningResult, out: str | Path, k: int = 3, mode: str = "mutual") -> dict:
    """Build and save the trained zoo's dictionary and, if mined, the control's."""
    check_k(k, result.settings.units)
    out = Path(out)
    names = result.settings.encoders
    trained = [n for n in names if not n.endswith(CONTROL_SUFFIX)]
    controls = [n for n in names if n.endswith(CONTROL_SUFFIX)]
    dictionary = build_dictionary(result, k, mode=mode, encoders=trained)
    if not dictionary.saved_in(out):  # a finished run mined again leaves its files as they are
        dictionary.save(out)
    s = result.settings
    gaps = missing_ranges(result.counted, s.start, s.start + s.images)
    if gaps:
        warnings.warn(f"the run counted {result.images_counted} of the latents [{s.start}, {s.start + s.images}); "
                      f"missing {gaps}: merge or mine them into {out} to complete it", UserWarning, stacklevel=2)
    summary = {"images": result.images_counted, "out": str(out), "similarity": result.settings.similarity,
               "trained": dictionary.summary()}
    if controls:
        control = build_dictionary(result, k, mode=mode, encoders=controls)
        if not control.saved_in(out / "control"):
            control.save(out / "control")
        summary["control"] = control.summary()
    return summary


def load_dictionaries(folder: str | Path) -> tuple[RosettaDictionary, RosettaDictionary | None]:
    """The trained zoo's dictionary and the control's (None if the run had no control)."""
    folder = Path(folder)
    trained = RosettaDictionary.load(folder)
    control = None
    if (folder / "control").exists():
        try:
            control = RosettaDictionary.load(folder / "control")
        except DictionaryError as error:  # the run's second save, not a run of its own
            raise DictionaryError(f"the control dictionary of the run in {folder} cannot be read ({error}); a run "
                                  f"stopped between its two saves: mine it again with --out {folder} (it resumes "
                                  "from its accumulators)") from None
    if control is not None:
        # one run's two dictionaries share every mining setting, the models' weights included
        differ = [key for key in ("k", "mode", "images", "start", "seed", "similarity", "generator",
                                  "mined_encoders", "weights")
                  if trained.settings.get(key) != control.settings.get(key)]
        if differ:
            shown = ", ".join(f"{key} {trained.settings.get(key)!r} vs {control.settings.get(key)!r}"
                              for key in differ)[:400]
            raise ValueError(f"the trained and control dictionaries in {folder} were not built alike ({shown}): "
                             "a run stopped between the two saves, or the control is another run's; mine it again "
                             "(it resumes from its accumulators)")
    return trained, control


@dataclass
class Run:
    """A mined run as a chapter uses it: the dictionaries and the models they were mined from."""

    folder: Path
    trained: RosettaDictionary
    control: RosettaDictionary | None
    generator: Member
    encoders: list[Member]
    summary: dict | None = None  # what mining printed, when this call mined
    members: dict[str, Member] = field(init=False)

    def __post_init__(self) -> None:
        self.members = {encoder.name: encoder for encoder in self.encoders}


def open_run(folder: str | Path = DEFAULT_RUN, zoo: str = "lite", *, images: int = 2000, k: int = 3,
             mine_always: bool = False, **mine_options: Any) -> Run:
    """The run in ``folder`` (relative to the project), mined first if it has no dictionary yet.

        run = open_run("runs/lite"); run.trained.clusters; run.members["lite-clip"]
        run = open_run("runs/lite", "lite", images=2000, k=3, mine_always=True, batch_size=32)

    ``mine_always`` mines even when a dictionary is there: a finished run with the same
    settings resumes from its accumulators at once, and other settings are refused with
    what differs. ``mine_options`` go to :func:`mine_zoo` (``batch_size``, ``grid``,
    ``device``, ``encoders``, ``generator_options``, ``weights``, ...); the generator is
    rebuilt with the options the run was mined with.
    """
    folder = project_path(folder)
    if mine_options.get("weights"):  # the members rebuilt below read them too, whether or not this call mines
        use_weights(mine_options["weights"])
    summary = None
    if mine_always or not (folder / "dictionary.json").exists():
        summary = mine_zoo(zoo, images, folder, k=k, **mine_options)
    trained, control = load_dictionaries(folder)
    if zoo not in ZOOS:
        raise ValueError(f"zoo must be one of {list(ZOOS)}, got {zoo!r}")
    pretrained = split_zoo(zoo)[1]
    generator = mined_generator(trained, pretrained)
    members = mined_members(trained, pretrained)
    encoders = [members[name] for name in trained.encoders]
    device = resolve_device(mine_options.get("device", "cpu"))  # the chapters invert and edit there too
    for member in [generator, *encoders]:
        member.to(device)
    return Run(folder, trained, control, generator, encoders, summary)


def _recorded_pretrained(dictionary: RosettaDictionary) -> bool:
    """Whether the run mined pretrained weights: the zoo it recorded ("lite-untrained": no)."""
    return split_zoo(str(dictionary.settings.get("extra", {}).get("zoo", "lite")))[1]


def mined_generator(dictionary: RosettaDictionary, pretrained: bool | None = None) -> Member:
    """The generator a dictionary was mined with, rebuilt with the run's weights and member options.

        gan = mined_generator(RosettaDictionary.load("runs/full"))   # e.g. BigGAN with the run's classes

    ``pretrained`` defaults to the zoo the run recorded, so an untrained zoo's generator is
    rebuilt untrained (offline) with the seed mining gave it.
    """
    pretrained = _recorded_pretrained(dictionary) if pretrained is None else pretrained
    return load(dictionary.generator, pretrained=pretrained,
                **dictionary.settings.get("extra", {}).get("generator_options", {}))


def mined_members(dictionary: RosettaDictionary, pretrained: bool | None = None) -> dict[str, Member]:
    """The encoders a dictionary was mined with, rebuilt with the weights that were mined.

        members = mined_members(RosettaDictionary.load("runs/lite/control"))   # {"lite-clip@untrained": ...}

    ``pretrained`` defaults to the zoo the run recorded ("lite-untrained": untrained).
    Trained-zoo encoders get the seed :func:`~rosetta_lite.zoo.registry.zoo_members` gave
    them when mining (their place among the run's encoders), which is what an untrained
    zoo's weights depend on. Control encoders (``<encoder>@untrained``) are rebuilt with
    :func:`~rosetta_lite.zoo.registry.control_members` and the run's ``control_seed``, in
    the run's encoder order. The one place a run's members are rebuilt: ``open_run`` and
    the evaluations' ``dictionary_members`` both come here.
    """
    settings = dictionary.settings
    if pretrained is None:  # the run records its zoo, e.g. "lite" or "lite-untrained"
        pretrained = _recorded_pretrained(dictionary)
    mined = list(settings.get("mined_encoders", dictionary.encoders))
    members: dict[str, Member] = {}
    controls = [e for e in dictionary.encoders if e.endswith(CONTROL_SUFFIX)]
    if controls:
        seed = settings.get("control_seed")
        if seed is None:
            raise ValueError("the dictionary has control encoders but no control_seed in its settings")
        stand_ins = [SimpleNamespace(name=e.removesuffix(CONTROL_SUFFIX)) for e in mined if e.endswith(CONTROL_SUFFIX)]
        members.update({m.name: m for m in control_members(stand_ins, seed) if m.name in controls})
    order = [e for e in mined if not e.endswith(CONTROL_SUFFIX)]
    for name in dictionary.encoders:
        if name in members:
            continue
        try:
            members[name] = load(name, pretrained=pretrained, seed=order.index(name) if name in order else 0)
        except ZooError as error:
            raise ZooError(f"{error} (if the run mined an untrained zoo, e.g. mine --zoo lite-untrained, "
                           "rebuild it with pretrained=False / --untrained)") from None
    return members
