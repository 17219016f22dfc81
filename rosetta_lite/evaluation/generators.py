"""Generator to generator: one generator's units matched with another's, against the same three nulls.

    report = generator_pair_report("runs/generators", PairOptions(images=2000))
    print(format_generator_pair(report))

Mining needs every model's maps of the same image. An encoder takes any image; a
generator draws only its own. The paper reports that its matching fails between two
GANs. Here the second generator sees the first's image through its reader (image ->
latent -> its own drawing of it), and its units are recorded while it redraws the image:
:func:`redrawing_encoder` turns it into an encoder that way. The pair is judged as the
zoo is (:mod:`~rosetta_lite.evaluation.nulls`): against the redrawer untrained (its reader
untrained too), against the shuffled pairing, at K = 1 to 5. With one encoder, a Rosetta
neuron is a generator unit with a best buddy in the redrawer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rosetta_lite.evaluation.nulls import SHUFFLED, NullOptions, format_nulls, null_rows, null_summary
from rosetta_lite.mining.loop import mine
from rosetta_lite.mining.settings import MiningResult
from rosetta_lite.zoo.member import Member
from rosetta_lite.zoo.preprocess import Preprocess
from rosetta_lite.zoo.registry import CONTROL_SUFFIX, load

GENERATOR_PAIR_RUN = "runs/generators"  # where ``eval generators`` mines by default
READ_SUFFIX = "@read"  # a generator seen as an encoder through its reader: "<generator>@read"


@dataclass
class PairOptions(NullOptions):
    """:class:`NullOptions` for two generators: ``generator`` draws the images, ``redrawer`` reads and redraws them.

        PairOptions(images=2000, generator="lite-gan", redrawer="lite-renderer")
    """

    generator: str = "lite-gan"
    redrawer: str = "lite-renderer"

    def check(self) -> None:
        """NullOptions' checks, and two different generators."""
        super().check()
        if self.generator == self.redrawer:
            raise ValueError(f"generator and redrawer must differ, both are {self.generator!r}")


def redrawing_encoder(generator: Member, size: int = 32) -> Member:
    """``generator`` as an encoder: an image is read into a latent, redrawn, and the redrawing's layers recorded.

        encoder = redrawing_encoder(zoo.load("lite-renderer")); maps = record_encoder(encoder, images)

    Named ``<generator>@read``; the model is the generator's own (its reader inside), so
    its digest is the generator's. ``size`` is the side the reader takes.
    """
    if not generator.is_generator or generator.reader is None:
        raise ValueError(f"{generator.name} cannot redraw an image: a generator with a reader is needed "
                         "(lite-renderer has one)")
    identity = Preprocess(size=size, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    return Member(generator.name + READ_SUFFIX, "encoder", generator.scale, generator.model, list(generator.layers),
                  identity, trained_for=generator.trained_for, pretrained=generator.pretrained,
                  forward=lambda model, images: model(model.read(images)))


def pair_members(options: PairOptions) -> tuple[Member, Member, Member]:
    """The generator, the trained redrawer and its untrained control (``control_seed``), as mining sees them.

        gan, redrawer, control = pair_members(PairOptions())
    """
    generator = load(options.generator)
    trained = redrawing_encoder(load(options.redrawer))
    control = redrawing_encoder(load(options.redrawer, pretrained=False, seed=options.control_seed))
    control.name = trained.name + CONTROL_SUFFIX
    return generator, trained, control


def mine_generator_pair(folder: str | Path, options: PairOptions | None = None) -> tuple[MiningResult, MiningResult,
                                                                                          dict[str, Member]]:
    """The pair (trained and control redrawer, in ``folder``) and its shuffled null (``folder/shuffled``), resumed.

        result, shuffled, members = mine_generator_pair("runs/generators", PairOptions(images=2000))
    """
    options = options or PairOptions()
    options.check()
    generator, trained, control = pair_members(options)
    result = mine(generator, [trained, control], options.images, out=folder, control_seed=options.control_seed,
                  **options.mining)
    shuffled = mine(generator, [trained], options.images, out=Path(folder) / SHUFFLED, pairing="shuffled",
                    **options.mining)
    return result, shuffled, {m.name: m for m in (trained, control)}


def generator_pair_report(folder: str | Path, options: PairOptions | None = None) -> dict:
    """Two generators matched: Rosetta neurons and concepts, trained vs control vs shuffled, at every K.

        report = generator_pair_report("runs/generators", PairOptions(images=2000))

    The same report as :func:`~rosetta_lite.evaluation.nulls.null_report`, for the pair.
    """
    options = options or PairOptions()
    result, shuffled, members = mine_generator_pair(folder, options)
    return null_summary(folder, options, result, null_rows(result, shuffled, options, members))


def format_generator_pair(report: dict) -> str:
    """:func:`~rosetta_lite.evaluation.nulls.format_nulls` of a pair's report, headed by the pair.

        print(format_generator_pair(generator_pair_report("runs/generators")))
    """
    s = report["settings"]
    return f"{s['generator']} against {s['redrawer']} (redrawing its images through its reader)\n" + format_nulls(report)
