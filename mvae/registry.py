"""The modalities: one entry each, and the only place in the package that names them.

A `Modality` says everything the layers above need to know about one input: its kind (an image or a
recording, whose shape, likelihood, normaliser and output `mvae.kinds` holds), where its prepared files
lie and how each split is found, where it is downloaded from, how the app shows it, which judges read it
and its lines of the quality bar. The config, the data layer, the evaluator, the judges, the benchmarks and
the app iterate over `MODALITIES`; none of them branches on a modality's name. Adding a modality is one
`register(Modality(...))`.

This module sits below everything in the package (it imports nothing from it), so that the config can take
its defaults from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

IMAGE, SPEECH = "image", "speech"  # the kinds (mvae.kinds)


@dataclass(frozen=True)
class Output:
    """One prepared file (or folder) of a downloaded set and the raw files it is made from."""

    sources: tuple[str, ...]
    # SHA-256 of the prepared content (`arrays_sha256` or `recordings_sha256`), where it is known.
    sha256: str | None = None


@dataclass(frozen=True)
class DataSet:
    """Where a modality's data is downloaded from and how its raw files become the prepared ones."""

    kind: str  # "idx", "cdb" or "wav-zip": how the raw files become the outputs
    base_url: str  # a raw file's URL is base_url + its name, percent-encoded
    outputs: Mapping[str, Output]  # keyed by the path inside DIR/<folder>/
    raw_sha256: Mapping[str, str] = field(default_factory=dict)  # raw file name -> SHA-256, where known


@dataclass(frozen=True)
class ImageFiles:
    """Prepared image sets: DIR/<folder>/<stem>.npz, one per split."""

    folder: str
    splits: Mapping[str, str]  # split -> file stem; "extra" is a harder held-out set of other writers
    extra_name: str = ""  # what the "extra" set is called where a person reads it


@dataclass(frozen=True)
class Recordings:
    """Recordings named {digit}_{speaker}_{index}.wav in DIR/<folder>/recordings/; a split is a range of the
    index (the dataset's official split is recordings 0-4 of each speaker and digit for test, 5-49 for train;
    a hyperparameter search holds out 5-9 of the training part for validation)."""

    folder: str
    splits: Mapping[str, range]


@dataclass(frozen=True)
class Modality:
    name: str  # the key of the model's networks, the checkpoint's tensors and predict's inputs
    kind: str  # IMAGE or SPEECH
    title: str  # the name in a sentence ("Farsi", "speech")
    noun: str  # what a user gives ("Farsi drawing")
    colour: str  # Okabe-Ito, distinguishable with colour-blindness
    source: ImageFiles | Recordings
    download: DataSet | None = None
    glyphs: str = ""  # the Unicode digits 0-9 of a script, shown beside the model's own rendering
    # The set it is drawn from as a reader knows it ("Hoda"): the report names its test split "Hoda test" and its
    # judge "the Hoda judge". Without one, its title stands in.
    dataset: str = ""
    judges: tuple[str, ...] = ()  # the judges (mvae.evaluation.judges) that read what the model makes of it
    # Its lines of the quality bar (mvae.evaluation.bar): "unimodal_accuracy" and "extra_accuracy" are the least
    # label accuracy from it alone on its test and extra sets; "frechet_reference" the Fréchet distance of the
    # plain PoE-MVAE that the bar's Fréchet line is a share of.
    bar: Mapping[str, float] = field(default_factory=dict)

    @property
    def reads(self) -> tuple[str, ...]:
        """Its judges, its own name standing for the judge of its kind when none is named."""
        return self.judges or (self.name,)

    @property
    def test_set(self) -> str:
        """Its test split as the report names it ("Hoda test")."""
        return f"{self.dataset or self.title} test"


KANNADA_COMMIT = "f8390ece0c6990551e6f35189ccc42757bb29c43"
HODA_COMMIT = "728dd5465fcf38c3c82a1d3fda721da30b2e70ed"
FSDD_COMMIT = "26eb9aaf76e81b692f806f9140c2d2777410d7a1"


def _idx_pair(stem: str) -> tuple[str, str]:
    return f"X_{stem}-idx3-ubyte.gz", f"y_{stem}-idx1-ubyte.gz"


# Hashes of the raw files could not be computed where this was written (no network), so what is pinned
# is what the local copies prove: the Kannada test and Dig-MNIST arrays were decoded unchanged from the
# canonical idx files, and the FSDD wavs are byte-identical to the repository's. The GitHub archive zip
# itself is not pinned on purpose: GitHub does not promise byte-stable archives, only stable contents.
MODALITIES: dict[str, Modality] = {}


def register(spec: Modality) -> Modality:
    """Adds a modality (after the ones there); a name already taken is refused."""
    if spec.name in MODALITIES:
        raise ValueError(f"a modality named {spec.name!r} is already registered")
    if spec.kind not in (IMAGE, SPEECH):
        raise ValueError(f"modality {spec.name!r}: kind must be {IMAGE!r} or {SPEECH!r}, not {spec.kind!r}")
    MODALITIES[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    MODALITIES.pop(name, None)


def modality(name: str) -> Modality:
    if name not in MODALITIES:
        raise ValueError(f"unknown modality {name!r}; use any of {', '.join(MODALITIES)}")
    return MODALITIES[name]


def names(kind: str | None = None) -> tuple[str, ...]:
    """The registered modalities (of one kind), in the order they were registered."""
    return tuple(n for n, m in MODALITIES.items() if kind is None or m.kind == kind)


# How the report names a judge that is not named after the modality it reads ({dataset}: that modality's).
JUDGE_TITLES = {"speech_synthetic": "{dataset}-free judge"}


def judged_modality(judge: str) -> Modality | None:
    """The first registered modality the judge reads, or None."""
    return next((m for m in MODALITIES.values() if judge in m.reads), None)


def judge_title(judge: str) -> str:
    """A judge as the report names it: "FSDD judge" for the one named after the modality it reads, a title of
    JUDGE_TITLES for another, else its name."""
    spec = judged_modality(judge)
    if spec is None or (judge != spec.name and judge not in JUDGE_TITLES):
        return judge
    return JUDGE_TITLES.get(judge, "{dataset} judge").format(dataset=spec.dataset or spec.title)


def title(name: str) -> str:
    """A modality's name in a sentence; any other name (the label, the prior) as it is."""
    return MODALITIES[name].title if name in MODALITIES else name


register(Modality(
    name="farsi", kind=IMAGE, title="Farsi", noun="Farsi drawing", colour="#E69F00", glyphs="۰۱۲۳۴۵۶۷۸۹",
    dataset="Hoda",
    source=ImageFiles("farsi", {"train": "train", "test": "test", "extra": "remaining"}, "Hoda remaining"),
    download=DataSet(
        kind="cdb",
        base_url=f"https://raw.githubusercontent.com/amir-saniyan/HodaDatasetReader/{HODA_COMMIT}/DigitDB/",
        outputs={"train.npz": Output(("Train 60000.cdb",)), "test.npz": Output(("Test 20000.cdb",)),
                 "remaining.npz": Output(("RemainingSamples.cdb",))}),
    bar={"unimodal_accuracy": 0.99, "frechet_reference": 164.76},
))
register(Modality(
    name="kannada", kind=IMAGE, title="Kannada", noun="Kannada drawing", colour="#56B4E9", glyphs="೦೧೨೩೪೫೬೭೮೯",
    dataset="Kannada-MNIST",
    source=ImageFiles("kannada", {"train": "train", "test": "test", "extra": "dig"}, "Dig-MNIST"),
    download=DataSet(
        kind="idx",
        base_url=f"https://raw.githubusercontent.com/vinayprabhu/Kannada_MNIST/{KANNADA_COMMIT}"
                 "/data/output_tensors/MNIST_format/",
        outputs={
            "train.npz": Output(_idx_pair("kannada_MNIST_train")),
            "test.npz": Output(_idx_pair("kannada_MNIST_test"),
                               "85908e292026347510b139537af850fb571dd377c6a004f44c15b5b0e86ba5bc"),
            "dig.npz": Output(_idx_pair("dig_MNIST"),
                              "a3305dcd56be69178fb493295887c13ae5033509659f733711a31091251bdba2"),
        }),
    bar={"unimodal_accuracy": 0.97, "extra_accuracy": 0.85, "frechet_reference": 168.60},
))
register(Modality(
    name="speech", kind=SPEECH, title="speech", noun="Speech", colour="#009E73", dataset="FSDD",
    source=Recordings("fsdd", {"test": range(0, 5), "train": range(5, 50), "fit": range(10, 50), "val": range(5, 10)}),
    download=DataSet(
        kind="wav-zip",
        base_url="https://github.com/Jakobovski/free-spoken-digit-dataset/archive/",
        outputs={"recordings": Output((f"{FSDD_COMMIT}.zip",),
                                      "dbd573d7cafe79c4b49f65718115e1304e24e067fa39eff18a660dc6cb9c360f")}),
    judges=("speech", "speech_synthetic"),
    bar={"unimodal_accuracy": 0.98},
))
