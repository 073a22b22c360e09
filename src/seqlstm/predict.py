"""Predictions: the top classes for MNIST-style images, for a user's image or array files (prepared
the way the model's training images were), and for the sequences in a user's .npz, .ts or .csv file."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

from .checkpoint import encoding_of, load_checkpoint
from .data.articles import fashion_style
from .data.digits import FRAME, mnist_style
from .data.datasets import is_file, label_column
from .data.seqfiles import SUPPORTED, read_sequences
from .data.sequences import FEATURES, IMAGES
from .data.userfiles import read_grayscale
from .device import resolve_device
from .errors import ConfigError, DataError, InputError
from .evaluate import logits_of

# How a user's picture becomes a frame like those a model trained on: by the model's dataset,
# handwriting (MNIST's preparation) for any other.
STYLES: dict[str, Callable[[np.ndarray], np.ndarray]] = {"mnist": mnist_style, "fashion-mnist": fashion_style}


@dataclass(frozen=True)
class Guess:
    label: str
    probability: float


@dataclass
class FilePrediction:
    """The outcome for one file: its best guesses, or why it could not be predicted."""

    file: str
    top: list[Guess] | None = None
    error: str | None = None

    def to_dict(self) -> dict:
        """`{"file", "top": [{"label", "probability"}, ...]}`, or `{"file", "error"}`."""
        if self.error is not None:
            return {"file": self.file, "error": self.error}
        return {"file": self.file, "top": [asdict(guess) for guess in self.top]}


def predict(
    model: torch.nn.Module, images: torch.Tensor | np.ndarray, top_k: int = 3, classes: list[str] | None = None
) -> list[list[Guess]]:
    """The `top_k` most probable classes, best first, for each of the uint8 `images` (N, 28, 28).

    Images are in MNIST's form (bright ink on black, as `mnist_style` makes them) and are read as
    the model's encoding says (rows, pixels or permuted pixels). `classes` names the model's
    outputs (default: the encoding's names). Runs on the model's device under inference mode; the
    model's train/eval mode is restored.
    """
    images = torch.as_tensor(images)
    if images.dtype != torch.uint8 or images.ndim != 3 or tuple(images.shape[1:]) != (FRAME, FRAME):
        raise ConfigError(
            f"predict takes uint8 images of shape (N, {FRAME}, {FRAME}); got {images.dtype} {tuple(images.shape)}"
        )
    check_reads_images(model)
    return top_guesses(logits_of(model, images), top_k, classes or encoding_of(model).classes)


def top_guesses(logits: torch.Tensor, top_k: int, classes: tuple[str, ...] | list[str]) -> list[list[Guess]]:
    """The `top_k` classes by probability, best first, for each row of `logits` (N, classes)."""
    if not isinstance(top_k, int) or top_k < 1:
        raise ConfigError(f"top_k must be a positive integer, got {top_k!r}")
    values, indices = logits.float().softmax(dim=1).cpu().topk(min(top_k, logits.shape[1]), dim=1)
    return [
        [Guess(classes[i], p) for p, i in zip(row_values.tolist(), row_indices.tolist())]
        for row_values, row_indices in zip(values, indices)
    ]


def check_reads_images(model: torch.nn.Module) -> None:
    """ConfigError unless `model` reads 28x28 images (by rows or by pixels)."""
    encoding = encoding_of(model)
    if encoding.kind != IMAGES or encoding.steps * encoding.features != FRAME * FRAME:
        raise ConfigError(
            f"this model reads {encoding.unit} of {encoding.features} features per step; predicting from images needs "
            f"one trained on {FRAME}x{FRAME} images (--dataset mnist or fashion-mnist)"
        )


def prepare_file(path: str | os.PathLike, preprocess: bool = True, style: str = "mnist") -> np.ndarray:
    """The uint8 (28, 28) image the model sees for the image or `.npy` file at `path`.

    `style` names the dataset whose preparation to repeat (see `prepare_image`). With
    `preprocess=False` the file must already be 28x28, bright on black. Raises InputError naming the file.
    """
    return prepare_image(read_grayscale(path), preprocess, str(path), style)


def prepare_image(gray: np.ndarray, preprocess: bool = True, name: str = "image", style: str = "mnist") -> np.ndarray:
    """The uint8 (28, 28) image the model sees for the uint8 (H, W) picture `gray`.

    `gray` is as `read_grayscale` returns it (either polarity, any size). `style`: the dataset the
    model was trained on; "fashion-mnist" prepares a product photo as Fashion-MNIST's were
    (`fashion_style`), any other name a handwritten character as MNIST's (`mnist_style`). With
    `preprocess=False` it must already be 28x28, bright on black. Raises InputError starting with `name`.
    """
    if not preprocess:
        if gray.shape != (FRAME, FRAME):
            raise InputError(
                f"{name}: is {gray.shape[1]}x{gray.shape[0]} pixels; without preprocessing the input must be "
                f"{FRAME}x{FRAME} and like the training images (bright on black); turn preprocessing on (drop "
                "--no-preprocess) to prepare it"
            )
        return gray
    try:
        return STYLES.get(style, mnist_style)(gray)
    except InputError as e:
        raise InputError(f"{name}: {e}") from None


def predict_files(
    checkpoint: str | os.PathLike,
    files: list[str | os.PathLike],
    top_k: int = 3,
    preprocess: bool = True,
    save_preprocessed: str | os.PathLike | None = None,
    device: str = "auto",
) -> list[FilePrediction]:
    """Load `checkpoint` and predict each file; a file that fails gets its error, the rest go on.

    A model trained on images takes image or .npy files, one character (or, for Fashion-MNIST, one
    article) each, prepared as its training images were; a model trained on sequences takes .npz,
    .ts or .csv files and predicts every sequence in them (`file[i]`).
    `save_preprocessed`: a folder to write each prepared 28x28 image to, as `<file stem>.png`.
    Raises (instead of returning per-file errors) only for what stops every file: an unreadable
    checkpoint, an unknown device, a bad `top_k`.
    """
    if not isinstance(top_k, int) or top_k < 1:
        raise ConfigError(f"top_k must be a positive integer, got {top_k!r}")
    model, config = load_checkpoint(checkpoint, resolve_device(device))
    if model.encoding.kind == FEATURES:
        if save_preprocessed is not None:
            raise ConfigError("--save-preprocessed writes images; this model reads sequences")
        column = label_column(config.label_column)
        return [result for path in files for result in predict_sequence_file(model, path, top_k, column)]
    check_reads_images(model)
    results = [FilePrediction(str(f)) for f in files]
    prepared = {}
    for index, (result, path) in enumerate(zip(results, files)):
        try:
            prepared[index] = prepare_file(path, preprocess, config.dataset)
        except InputError as e:
            result.error = str(e)
    if save_preprocessed is not None and prepared:
        save_images(Path(save_preprocessed), [(Path(files[i]).stem, image) for i, image in prepared.items()])
    if prepared:
        guesses = predict(model, np.stack(list(prepared.values())), top_k)
        for index, top in zip(prepared, guesses):
            results[index].top = top
    return results


def predict_sequence_file(
    model: torch.nn.Module, path: str | os.PathLike, top_k: int, column: str | int | None = None
) -> list[FilePrediction]:
    """One prediction per sequence in the .npz, .ts or .csv file at `path` (named `path[i]`); labels
    in the file are ignored, but a .csv keeps its label column (`column`, as in training) so that
    the values are told apart from it. A file that cannot be used gives one FilePrediction with its
    error."""
    encoding = model.encoding
    try:
        if not is_file(path):
            raise InputError(f"{path}: this model reads sequences; give a {', '.join(SUPPORTED)} file of them")
        raw = read_sequences(path, column)
        if raw.values.shape[2] != encoding.features:
            raise InputError(
                f"{path}: its sequences have {raw.values.shape[2]} features per step; the model reads {encoding.features}"
            )
    except (DataError, InputError) as e:
        return [FilePrediction(str(path), error=str(e))]
    logits = logits_of(model, torch.from_numpy(raw.values), lengths=torch.from_numpy(raw.lengths))
    return [FilePrediction(f"{path}[{i}]", top) for i, top in enumerate(top_guesses(logits, top_k, encoding.classes))]


def save_images(folder: Path, images: list[tuple[str, np.ndarray]]) -> None:
    """Write each uint8 (28, 28) image as `<stem>.png`; repeated stems get `-2`, `-3`, ... appended."""
    taken = set()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for stem, image in images:
            name, number = stem, 1
            while name in taken:
                number += 1
                name = f"{stem}-{number}"
            taken.add(name)
            Image.fromarray(image).save(folder / f"{name}.png")
    except OSError as e:
        raise ConfigError(f"{folder}: cannot write the preprocessed images there ({e}); choose another folder") from None
