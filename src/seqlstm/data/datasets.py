"""What `--dataset` names, loaded as labelled `Sequences` with the `Encoding` the model reads them by.

A name (mnist, fashion-mnist) is a published image set with its own train and test splits, read
in one of the views. A path to a `.npz`, `.ts` or `.csv` file is the user's own sequences: labels
become class indices (names kept), and the test set is another file or a seeded, stratified share
of the training file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from ..errors import ConfigError, DataError
from .seqfiles import SUPPORTED, RawSequences, read_sequences
from .sequences import FEATURES, Encoding, Sequences, feature_encoding, image_encoding
from .sources import DATASETS, get_dataset, load_dataset

# The share of a user's file held out for testing when no --test-dataset is given.
DEFAULT_TEST_SIZE = 0.2


class TrainingData(NamedTuple):
    train: Sequences
    test: Sequences
    encoding: Encoding


def is_file(dataset: str | os.PathLike) -> bool:
    """True when `dataset` names a user's file (by its extension) rather than a published dataset."""
    return Path(dataset).suffix.lower() in SUPPORTED


def label_column(value: str | None) -> str | int | None:
    """A CSV label column as given on the command line: an integer is a position, anything else a name."""
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return value


def load_training_data(config) -> TrainingData:
    """The train and test samples of `config.dataset` (a TrainConfig) and the encoding fitted to them.

    Raises DataError for a missing or bad file, ConfigError for options that do not fit the data.
    """
    if not is_file(config.dataset):
        dataset = named_dataset(config.dataset)
        if config.test_dataset is not None or config.test_size is not None:
            raise ConfigError(
                f"{config.dataset} has its own test split; --test-dataset and --test-size apply to your own "
                f"sequence files ({', '.join(SUPPORTED)})"
            )
        train, test = (load_dataset(dataset.name, split, config.data_dir) for split in ("train", "test"))
        height, width = train.images.shape[1:]
        encoding = image_encoding(dataset.classes, height, width, config.view, config.perm_seed)
        return TrainingData(Sequences(train.images, None, train.labels), Sequences(test.images, None, test.labels), encoding)

    if config.view != "rows":
        raise ConfigError(f"--view {config.view} reads images; {config.dataset} holds sequences, which are read as they are")
    raw = read_file(config.dataset, config)
    train, test = split_raw(raw, config)
    classes = class_names(train)
    if len(classes) < 2:
        raise DataError(
            f"{config.dataset}: every training sequence has the label {classes[0]!r}; a classifier needs at least "
            "two classes to tell apart"
        )
    encoding = feature_encoding(classes, torch.from_numpy(train.values))
    return TrainingData(to_sequences(train, classes), to_sequences(test, classes), encoding)


def load_split(config, encoding: Encoding, split: str, data_dir: str | os.PathLike | None = None,
               dataset: str | os.PathLike | None = None) -> Sequences:
    """The samples of `split` ("train" or "test") that the run of `config` used, read by `encoding`.

    `dataset`: a labelled sequence file to take whole instead (to evaluate on new data). `data_dir`
    replaces the config's folder for a published dataset.
    """
    if split not in ("train", "test"):
        raise ConfigError(f"unknown split {split!r}; use train or test")
    if dataset is not None:
        if encoding.kind != FEATURES:
            raise ConfigError(f"this model reads {config.dataset} images; --dataset takes sequence files only for models trained on them")
        return checked(read_file(dataset, config), encoding)
    if not is_file(config.dataset):
        images = load_dataset(config.dataset, split, data_dir if data_dir is not None else config.data_dir)
        return Sequences(images.images, None, images.labels)
    if split == "test" and config.test_dataset is not None:
        return checked(read_file(config.test_dataset, config), encoding)  # the training file is not needed
    train, test = split_raw(read_file(config.dataset, config), config)
    return checked(train if split == "train" else test, encoding)


def read_file(path: str | os.PathLike, config) -> RawSequences:
    raw = read_sequences(path, label_column(config.label_column))
    if raw.labels is None:
        raise DataError(f"{path}: holds no labels; a labelled file is needed here (y in a .npz, @classLabel in a .ts)")
    return raw


def named_dataset(name: str):
    """The published dataset `name`; DataError saying what is accepted for anything else."""
    if Path(name).suffix or Path(name).is_file():
        raise DataError(
            f"--dataset {name}: not a file seqlstm reads; give a {', '.join(SUPPORTED)} file of labelled sequences "
            f"or a dataset name ({', '.join(DATASETS)})"
        )
    return get_dataset(name)


def checked(raw: RawSequences, encoding: Encoding) -> Sequences:
    """`raw` as Sequences labelled by `encoding`'s classes, when its features match what the model
    reads; DataError otherwise."""
    if raw.values.shape[2] != encoding.features:
        raise DataError(
            f"{raw.source}: the sequences have {raw.values.shape[2]} features per step but the model reads {encoding.features}"
        )
    return to_sequences(raw, encoding.classes)


def split_raw(raw: RawSequences, config) -> tuple[RawSequences, RawSequences]:
    """(train, test): the test file when one is given, else a seeded stratified split of `raw`."""
    if config.test_dataset is not None:
        if config.test_size is not None:
            raise ConfigError("give --test-dataset or --test-size, not both")
        test = read_file(config.test_dataset, config)
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
    return subset(raw, ~test_rows), subset(raw, test_rows)


def stratified_test_rows(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A bool mask (N,) choosing round(fraction * n) samples of every class (n of them) for testing,
    drawn with `seed`: each class keeps its share in both parts, and at least one sample in training
    (a class the model never saw could not be tested)."""
    generator = torch.Generator().manual_seed(seed)
    mask = np.zeros(len(labels), dtype=bool)
    for value in np.unique(labels):
        rows = np.flatnonzero(labels == value)
        count = min(round(fraction * len(rows)), len(rows) - 1)
        chosen = rows[torch.randperm(len(rows), generator=generator).numpy()[:count]]
        mask[chosen] = True
    return mask


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
