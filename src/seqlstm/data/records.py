"""What a model learns from, as one record resolved once: a published image set, a user's sequence
file, or arrays in memory (the estimator's). Everything that depends on the kind of input asks its
record — the recipe's defaults, the train/test split, validation, augmentation, how a file given to
`predict` is read — so no other module looks a dataset up by name or asks whether it is a file.

Each record's `load(config, test=True)` gives the labelled samples (without the test split when
`test` is False: it is then never read) and what the model's input transform needs
(model/inputs.py); the samples stay in their stored form (uint8 images, or float sequences padded
with their lengths) and the model turns them into its input.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar, NamedTuple

import numpy as np
import torch

from ..errors import ConfigError, DataError, InputError
from ..model.inputs import IMAGES, SEQUENCES, get_view
from .augment import random_shift
from .batches import hold_out, stratified_hold_out, stratified_test_rows
from .packed import MANIFEST, Pack, Packed, is_pack
from .seqfiles import SUPPORTED, RawSequences, from_arrays, pad, read_sequences
from .sequences import Sequences
from .sources import DATASETS, ImageDataset, get_dataset, load_dataset
from .userfiles import read_grayscale

# The tutorial's model and budget: what a published image set trains with unless told otherwise.
FOR_IMAGES = dict(batch_size=100, epochs=2, val_size=0, patch=1, conv_patch=1, pool="last", bidirectional=False, conv=0,
                  dropout=0.0, patience=0, class_weight="none")
# A user's features come in any units (volts beside metres): every recipe standardises them. The
# budget (batch size, epochs, validation share, patience) and the patch length are planned from the
# data itself (plan.py); the model's shape was chosen by measurement over the UCR problems (see the
# docs). Images shifts make no sense for a series.
FOR_SEQUENCES = dict(normalize="standard", pool="mean", bidirectional=False, conv=128, dropout=0.0, class_weight="none",
                     augment_shift=0)
# The share of a user's file held out for testing when no --test-dataset is given.
DEFAULT_TEST_SIZE = 0.2


class TrainingData(NamedTuple):
    train: Sequences | Packed  # Packed: a pack's, read from disk a batch at a time
    test: Sequences | Packed | None  # None: arrays in memory bring no test split
    classes: tuple[str, ...]
    inputs: dict  # the model's input transform: InputTransform's arguments (kind, steps, image_shape, view)
    features: int  # per step, as the model reads them
    steps: int  # per sample, as the model reads them (the longest sequence's)


@dataclass(frozen=True)
class ImageSet:
    """A published image set (data/sources.py), read in one of the views."""

    dataset: ImageDataset
    kind: ClassVar[str] = IMAGES
    planned: ClassVar[bool] = False  # the tutorial's budget, not the plan's

    @property
    def name(self) -> str:
        return self.dataset.name

    def defaults(self, recipe: str, view: str) -> dict:
        """What `recipe` chooses for this set read in `view`, over the recipe's own settings."""
        fast = {**self.dataset.fast, **get_view(view).fast} if recipe == "fast" else {}
        return {**FOR_IMAGES, **fast}

    def load(self, config, test: bool = True) -> TrainingData:
        """Both splits of the set (`test` False: the training split only), and how the model reads them."""
        if config.test_dataset is not None or config.test_size is not None:
            raise ConfigError(
                f"{self.name} has its own test split; --test-dataset and --test-size apply to your own sequence files "
                f"({', '.join(SUPPORTED)})"
            )
        train, test = self.split(config, "train"), self.split(config, "test") if test else None
        view = get_view(config.view)
        steps, features = view.shape(*train.inputs.shape[1:])
        inputs = dict(kind=IMAGES, image_shape=tuple(train.inputs.shape[1:]), view=view.name, perm_seed=config.perm_seed)
        return TrainingData(train, test, self.dataset.classes, inputs, features, steps)

    def split(self, config, split: str, model=None, data_dir: str | os.PathLike | None = None) -> Sequences:
        """The images of `split`; `data_dir` replaces the config's folder."""
        images = load_dataset(self.name, split, data_dir if data_dir is not None else config.data_dir)
        return Sequences(images.images, None, images.labels)

    def hold_out(self, labels: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        return hold_out(len(labels), size)

    def pin(self, config):
        return config

    def digests(self, config) -> dict[str, str]:
        return {}  # the set's files are verified against their published MD5s whenever they are read

    def files(self, config) -> list[Path]:
        """The user's copies of the set's files that training reads (those in --data-dir), which no
        output may replace."""
        if config.data_dir is None:
            return []
        names = [f.name for pair in self.dataset.splits.values() for f in pair]
        return [Path(config.data_dir) / n for name in names for n in (name, name.removesuffix(".gz"))]

    def augment(self, inputs: torch.Tensor, config, generator: torch.Generator) -> torch.Tensor:
        return random_shift(inputs, config.augment_shift, generator)

    def read_inputs(self, path: str | os.PathLike, config, model, preprocess: bool = True) -> tuple[list[str], torch.Tensor, None]:
        """A picture file as ([its name], its prepared frame uint8 (1, 28, 28), no lengths)."""
        return [str(path)], torch.from_numpy(self.prepare(read_grayscale(path), preprocess, str(path)))[None], None

    def prepare(self, gray: np.ndarray, preprocess: bool = True, name: str = "image") -> np.ndarray:
        """uint8 (H, W) picture -> the uint8 frame the model sees, prepared as this set's images were.

        With `preprocess=False` it must already be the frame's size, bright on black. Raises
        InputError starting with `name`.
        """
        frame = self.dataset.frame
        if not preprocess:
            if gray.shape != frame:
                raise InputError(
                    f"{name}: is {gray.shape[1]}x{gray.shape[0]} pixels; without preprocessing the input must be "
                    f"{frame[1]}x{frame[0]} and like the training images (bright on black); turn preprocessing on (drop "
                    "--no-preprocess) to prepare it"
                )
            return gray
        try:
            return self.dataset.prepare(gray)
        except InputError as e:
            raise InputError(f"{name}: {e}") from None


@dataclass(frozen=True)
class SequenceRecord:
    """What a user's sequences have in common, from a file or from arrays."""

    kind: ClassVar[str] = SEQUENCES
    planned: ClassVar[bool] = True  # budget and patching planned from the data (plan.py)

    def defaults(self, recipe: str, view: str) -> dict:
        if view != "rows":
            raise ConfigError(f"--view {view} reads images; {self.where} holds sequences, which are read as they are")
        return dict(FOR_SEQUENCES)

    def hold_out(self, labels: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        # A user's classes may be few and unequal, where a plain draw can miss one.
        return stratified_hold_out(labels, size)

    def augment(self, inputs: torch.Tensor, config, generator: torch.Generator) -> torch.Tensor:
        return inputs

    def pin(self, config):
        return config

    def digests(self, config) -> dict[str, str]:
        return {}

    def read_inputs(self, path: str | os.PathLike, config, model, preprocess: bool = True) -> tuple[list[str], torch.Tensor, torch.Tensor]:
        """Every sequence of a .npz, .ts or .csv file, as (names `path[i]`, float32 (N, T, F), lengths (N,)).
        Labels in the file are ignored; a .csv keeps its label column as in training, so the values
        are told apart from it. InputError when its features are not the `model`'s."""
        if Path(path).suffix.lower() not in SUPPORTED:
            raise InputError(f"{path}: this model reads sequences; give a {', '.join(SUPPORTED)} file of them")
        raw = read_sequences(path, label_column(config.label_column))
        if raw.values.shape[2] != model.inputs.features:
            raise InputError(
                f"{path}: its sequences have {raw.values.shape[2]} features per step; the model reads {model.inputs.features}"
            )
        return [f"{path}[{i}]" for i in range(len(raw.lengths))], torch.from_numpy(raw.values), torch.from_numpy(raw.lengths)

    def training_data(self, train: RawSequences, test: RawSequences | None,
                      classes: tuple[str, ...] | None = None) -> TrainingData:
        """`train` and `test` as Sequences labelled by `classes` (default: the training set's labels, sorted)."""
        classes = class_names(train) if classes is None else classes
        if len(classes) < 2:
            raise DataError(
                f"{train.source}: every training sequence has the label {classes[0]!r}; with one class only there is "
                "nothing to learn: a classifier needs at least two classes to tell apart"
            )
        steps, features = train.values.shape[1:]
        return TrainingData(to_sequences(train, classes), None if test is None else to_sequences(test, classes), classes,
                            dict(kind=SEQUENCES, steps=steps), features, steps)


@dataclass(frozen=True)
class SequenceFile(SequenceRecord):
    """A user's labelled `.npz`, `.ts` or `.csv` file; the test set is another file or a seeded,
    stratified share of it."""

    path: str = ""

    @property
    def name(self) -> str:
        return Path(self.path).stem

    @property
    def where(self) -> str:
        return self.path

    def load(self, config, test: bool = True) -> TrainingData:
        """The split the run of `config` trains and tests on (`test` False: no test sequences, and a
        test file is not read); DataError when a file changed since the run began (a resumed run would
        otherwise go on with other data)."""
        for name in ("dataset", "test_dataset"):
            unchanged(config, name)
        return self.training_data(*self.split_raw(read_labelled(self.path, config), config, test))

    def pin(self, config):
        """`config` with the files by absolute path, so that evaluate and explain find them from anywhere."""
        absolute = {name: str(Path(getattr(config, name)).resolve()) for name in ("dataset", "test_dataset")
                    if getattr(config, name) is not None}
        return replace(config, **absolute)

    def files(self, config) -> list[str]:
        """The files training reads, which no output may replace."""
        return [name for name in (config.dataset, config.test_dataset) if name is not None]

    def split(self, config, split: str, model, data_dir: str | os.PathLike | None = None) -> Sequences:
        """The sequences of `split` that the run of `config` used, labelled by `model`'s classes.
        DataError when a file changed since training: its split would silently differ."""
        if split == "test" and config.test_dataset is not None:
            unchanged(config, "test_dataset")
            return labelled(config.test_dataset, config, model)  # the training file is not needed
        unchanged(config, "dataset")
        train, test = self.split_raw(read_labelled(self.path, config), config, test=split == "test")
        return checked(train if split == "train" else test, model)

    def digests(self, config) -> dict[str, str]:
        """The SHA-256 of each file training reads, by config field, for `unchanged` to check later."""
        return {name: file_digest(getattr(config, name)) for name in ("dataset", "test_dataset")
                if getattr(config, name) is not None}

    def split_raw(self, raw: RawSequences, config, test: bool = True) -> tuple[RawSequences, RawSequences | None]:
        """(train, test): the test file when one is given, else a seeded stratified split of `raw`;
        `test` False: test None, and a test file is not read."""
        if config.test_dataset is not None:
            if config.test_size is not None:
                raise ConfigError("give --test-dataset or --test-size, not both")
            if not test:
                return raw, None
            test = read_labelled(config.test_dataset, config)
            if test.values.shape[2] != raw.values.shape[2]:
                raise DataError(
                    f"{config.test_dataset} has {test.values.shape[2]} features per step but {config.dataset} has "
                    f"{raw.values.shape[2]}; train and test sequences must have the same features"
                )
            return raw, test
        fraction = DEFAULT_TEST_SIZE if config.test_size is None else config.test_size
        test_rows = stratified_test_rows(raw.labels, fraction, config.seed)
        if not test_rows.any():
            raise DataError(
                f"{raw.source}: --test-size {fraction} of {len(raw.labels)} sequences leaves no test sequences; "
                "use a larger --test-size or give --test-dataset"
            )
        if test_rows.all():
            raise DataError(f"{raw.source}: --test-size {fraction} leaves no training sequences; use a smaller one")
        return subset(raw, ~test_rows), subset(raw, test_rows) if test else None


@dataclass(frozen=True, eq=False)
class Arrays(SequenceRecord):
    """Labelled sequences in memory: X float (N, T, F), or (N, T) for one feature per step; y (N,)
    labels; lengths (N,) int, None when every sequence has all T steps. All of it is training data:
    the estimator is scored on data the caller holds out. A checkpoint trained on arrays has no
    record of them (`Arrays()`)."""

    X: np.ndarray | None = None
    y: np.ndarray | None = None
    lengths: np.ndarray | None = None
    classes: tuple[str, ...] | None = None  # names of the labels, when y holds their indices (the estimator's)
    source: str = "X"  # what errors call the arrays
    name: ClassVar[str] = "arrays"
    where: ClassVar[str] = "the arrays given"

    def load(self, config, test: bool = True) -> TrainingData:
        if self.X is None:
            raise ConfigError("no arrays were given; the estimator's fit(X, y) passes them")
        raw = from_arrays(np.asarray(self.X), None if self.y is None else np.asarray(self.y),
                          None if self.lengths is None else np.asarray(self.lengths), self.source)
        if raw.labels is None:
            raise DataError(f"{self.source}: no labels were given; fit(X, y) needs one label per sequence")
        return self.training_data(raw, None, self.classes)

    def files(self, config) -> list[str]:
        return []

    def split(self, config, split: str, model=None, data_dir: str | os.PathLike | None = None) -> Sequences:
        raise ConfigError(
            f"this model was trained on arrays in memory, whose {split} split seqlstm does not keep; give a labelled "
            f"{', '.join(SUPPORTED)} file with --dataset"
        )


@dataclass(frozen=True)
class PackedSet(SequenceRecord):
    """A pack written by `seqlstm pack` (data/packed.py): its splits are read from disk a batch at a
    time, so it may be far larger than memory. The test split is the pack's own."""

    path: str = ""

    @property
    def name(self) -> str:
        return Path(self.path).name

    @property
    def where(self) -> str:
        return self.path

    def opened(self, config) -> Pack:
        """The pack, checked to be the one the run of `config` began with (DataError otherwise)."""
        if config.test_dataset is not None or config.test_size is not None:
            raise ConfigError(f"{self.path} is a pack, which holds its own test split; --test-dataset and --test-size "
                              "apply to sequence files (split a pack with seqlstm pack --test or --test-size)")
        opened = Pack(self.path)
        recorded = (config.digests or {}).get("dataset")
        if recorded is not None and opened.digest() != recorded:
            raise DataError(f"{self.path}: not the pack the model was trained on (it was packed again since); "
                            f"evaluate on it as it is now with --dataset {self.path}, or train again")
        return opened

    def load(self, config, test: bool = True) -> TrainingData:
        opened = self.opened(config)
        train = opened.split("train")
        test = opened.split("test") if test and "test" in opened.manifest["splits"] else None
        steps = opened.manifest["splits"]["train"]["longest"]
        return TrainingData(train, test, opened.classes, dict(kind=SEQUENCES, steps=steps), opened.features, steps)

    def pin(self, config):
        return replace(config, dataset=str(Path(config.dataset).resolve()))

    def files(self, config) -> list[Path]:
        return Pack(self.path).files()

    def digests(self, config) -> dict[str, str]:
        return {"dataset": Pack(self.path).digest()}

    def split(self, config, split: str, model, data_dir: str | os.PathLike | None = None) -> Packed:
        return checked_pack(self.opened(config).split(split), model)


@dataclass(frozen=True, eq=False)
class PackedSamples(SequenceRecord):
    """Sequences of a pack handed over as Packed (the estimator's `fit(Pack(path).split("train"))`):
    all of them training data, read from disk a batch at a time. Like arrays, the checkpoint keeps
    no record of them."""

    samples: Packed | None = None
    name: ClassVar[str] = "pack"
    where: ClassVar[str] = "the pack given"

    def load(self, config, test: bool = True) -> TrainingData:
        pack, steps = self.samples.pack, int(self.samples.lengths.max())
        return TrainingData(self.samples, None, pack.classes, dict(kind=SEQUENCES, steps=steps), pack.features, steps)

    def files(self, config) -> list[str]:
        return []


def checked_pack(samples: Packed, model) -> Packed:
    """`samples` when the model reads their features and knows their classes; DataError otherwise."""
    pack = samples.pack
    if pack.features != model.inputs.features:
        raise DataError(f"{pack.path}: the sequences have {pack.features} features per step but the model reads "
                        f"{model.inputs.features}")
    if pack.classes != tuple(model.classes):
        raise DataError(f"{pack.path}: its classes ({', '.join(pack.classes)}) are not the model's "
                        f"({', '.join(model.classes)}); evaluate a model on a pack of the classes it was trained on")
    return samples


def source_for(dataset: str | os.PathLike | None) -> ImageSet | SequenceFile | PackedSet | Arrays:
    """The record of what `dataset` names: a published image set (any case), a user's sequence file
    (by its extension), a pack (a folder `seqlstm pack` wrote), or None for arrays in memory.
    DataError saying what is accepted otherwise."""
    if dataset is None:
        return Arrays()
    if is_pack(dataset):
        return PackedSet(str(dataset))
    if Path(dataset).suffix.lower() in SUPPORTED:
        return SequenceFile(str(dataset))
    if Path(dataset).suffix or Path(dataset).is_file():
        raise DataError(
            f"--dataset {dataset}: not a file seqlstm reads; give a {', '.join(SUPPORTED)} file of labelled sequences, "
            f"a folder written by seqlstm pack, or a dataset name ({', '.join(DATASETS)})"
        )
    if Path(dataset).is_dir():
        raise DataError(f"--dataset {dataset}: a folder, but not one seqlstm pack wrote (it has no {MANIFEST}); pack "
                        f"your files into one with seqlstm pack FILES --out FOLDER, or give a file")
    return ImageSet(get_dataset(str(dataset)))


def samples_for(config, model, split: str = "test", data_dir: str | os.PathLike | None = None,
                dataset: str | os.PathLike | None = None) -> Sequences:
    """The samples of `split` ("train" or "test") that the run of `config` used, labelled by `model`'s
    classes; `dataset`, a labelled sequence file, to take whole instead (to evaluate on new data).
    `data_dir` replaces the config's folder for a published image set."""
    if split not in ("train", "test"):
        raise ConfigError(f"unknown split {split!r}; use train or test")
    if dataset is not None and is_pack(dataset):
        return checked_pack(Pack(dataset).everything(), model)
    if dataset is not None:
        return labelled(dataset, config, model)
    return source_for(config.dataset).split(config, split, model, data_dir)


def labelled(path: str | os.PathLike, config, model) -> Sequences:
    """Every sequence of the labelled file at `path`, labelled by `model`'s classes (a model reading
    sequences, trained with `config`)."""
    if model.inputs.kind != SEQUENCES:
        raise ConfigError(
            f"this model reads {config.dataset} images; --dataset takes sequence files only for models trained on them"
        )
    return checked(read_labelled(path, config), model)


def read_labelled(path: str | os.PathLike, config) -> RawSequences:
    raw = read_sequences(path, label_column(config.label_column))
    if raw.labels is None:
        raise DataError(f"{path}: holds no labels; a labelled file is needed here (y in a .npz, @classLabel in a .ts)")
    return raw


def checked(raw: RawSequences, model) -> Sequences:
    """`raw` as Sequences labelled by `model`'s classes, when its features match what the model
    reads; DataError otherwise."""
    if raw.values.shape[2] != model.inputs.features:
        raise DataError(
            f"{raw.source}: the sequences have {raw.values.shape[2]} features per step but the model reads "
            f"{model.inputs.features}"
        )
    return to_sequences(raw, model.classes)


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of the file at `path`; DataError when it cannot be read."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError as e:
        raise DataError(f"{path}: cannot read the file ({e.strerror or e})") from None
    return h.hexdigest()


def unchanged(config, name: str) -> None:
    """DataError when the file of config field `name` is not the one training read (by its digest)."""
    recorded = (config.digests or {}).get(name)
    path = getattr(config, name)
    if recorded is not None and Path(path).is_file() and file_digest(path) != recorded:
        raise DataError(
            f"{path}: the file changed since the model was trained on it, so the {name.replace('_', ' ')}'s sequences "
            "and the held-out split would not be the ones it used; evaluate on the file as it is now with --dataset "
            f"{path}, or train again"
        )


def label_column(value: str | None) -> str | int | None:
    """A CSV label column as given on the command line: an integer is a position, anything else a name."""
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return value


def padded(sequences: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """A list of float (T_i, F) arrays (or (T_i,) for one feature) -> float32 (N, T, F) zero-padded to the
    longest, and int64 (N,) lengths."""
    return pad([np.asarray(s, dtype=np.float32).reshape(len(s), -1) for s in sequences])


def subset(raw: RawSequences, rows: np.ndarray) -> RawSequences:
    """The sequences at `rows`, trimmed to the longest of them."""
    lengths = raw.lengths[rows]
    return RawSequences(raw.values[rows, : lengths.max()], lengths, raw.labels[rows], raw.source)


def class_names(raw: RawSequences) -> tuple[str, ...]:
    """The classes of the training labels, sorted (numerically for integer labels)."""
    return tuple(str(v) for v in np.unique(raw.labels))


def to_sequences(raw: RawSequences, classes: tuple[str, ...]) -> Sequences:
    """`raw` as tensors, its labels as indices into `classes`; DataError for a label not among them."""
    index = {name: k for k, name in enumerate(classes)}
    names = [str(v) for v in raw.labels]
    unknown = sorted(set(names) - set(index))
    if unknown:
        counts = ", ".join(f"{name!r} ({names.count(name)})" for name in unknown[:5])
        raise DataError(
            f"{raw.source}: labels {counts}{' ...' if len(unknown) > 5 else ''} do not occur in the training data, "
            f"whose classes are {', '.join(classes)}; a model cannot learn a class it never saw"
        )
    labels = torch.tensor([index[name] for name in names], dtype=torch.int64)
    return Sequences(torch.from_numpy(raw.values), torch.from_numpy(raw.lengths), labels)
