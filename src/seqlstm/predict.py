"""Predictions: the top classes for MNIST-style images, and for a user's image or array files."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .checkpoint import load_checkpoint
from .data.digits import FRAME, mnist_style
from .data.sequences import image_rows
from .data.sources import get_dataset
from .data.userfiles import read_grayscale
from .device import resolve_device
from .errors import ConfigError, DataError, InputError
from .evaluate import EVAL_BATCH_SIZE


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

    Images are in MNIST's form (bright ink on black, as `mnist_style` makes them). `classes`
    names the model's outputs (default: their indices). Runs on the model's device under
    inference mode; the model's train/eval mode is restored.
    """
    images = torch.as_tensor(images)
    if images.dtype != torch.uint8 or images.ndim != 3 or tuple(images.shape[1:]) != (FRAME, FRAME):
        raise ConfigError(
            f"predict takes uint8 images of shape (N, {FRAME}, {FRAME}); got {images.dtype} {tuple(images.shape)}"
        )
    if not isinstance(top_k, int) or top_k < 1:
        raise ConfigError(f"top_k must be a positive integer, got {top_k!r}")
    check_reads_images(model)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    probabilities = []
    with torch.inference_mode():
        for start in range(0, len(images), EVAL_BATCH_SIZE):
            x = image_rows(images[start : start + EVAL_BATCH_SIZE].to(device))
            probabilities.append(model(x).float().softmax(dim=1).cpu())
    model.train(was_training)
    if not probabilities:
        return []
    probabilities = torch.cat(probabilities)
    names = list(classes) if classes is not None else [str(i) for i in range(probabilities.shape[1])]
    values, indices = probabilities.topk(min(top_k, probabilities.shape[1]), dim=1)
    return [
        [Guess(names[i], p) for p, i in zip(row_values.tolist(), row_indices.tolist())]
        for row_values, row_indices in zip(values, indices)
    ]


def check_reads_images(model: torch.nn.Module) -> None:
    features = getattr(model, "hparams", {}).get("input_size", FRAME)
    if features != FRAME:
        raise ConfigError(
            f"this model reads {features} features per step; predicting from images needs one that reads "
            f"{FRAME}x{FRAME} images row by row ({FRAME} features per step)"
        )


def prepare_file(path: str | os.PathLike, preprocess: bool = True) -> np.ndarray:
    """The uint8 (28, 28) MNIST-style image the model sees for the image or `.npy` file at `path`.

    With `preprocess=False` the file must already be 28x28 with bright ink on black.
    Raises InputError naming the file.
    """
    return prepare_image(read_grayscale(path), preprocess, str(path))


def prepare_image(gray: np.ndarray, preprocess: bool = True, name: str = "image") -> np.ndarray:
    """The uint8 (28, 28) MNIST-style image the model sees for the uint8 (H, W) picture `gray`.

    `gray` is as `read_grayscale` returns it (either polarity, any size); with `preprocess=False`
    it must already be 28x28 with bright ink on black. Raises InputError starting with `name`.
    """
    if not preprocess:
        if gray.shape != (FRAME, FRAME):
            raise InputError(
                f"{name}: is {gray.shape[1]}x{gray.shape[0]} pixels; without preprocessing the input must be "
                f"{FRAME}x{FRAME} and MNIST-like (bright ink on black); turn preprocessing on (drop "
                "--no-preprocess) to prepare it"
            )
        return gray
    try:
        return mnist_style(gray)
    except InputError as e:
        raise InputError(f"{name}: {e}") from None


def class_names(dataset: str, count: int) -> list[str]:
    """A name for each of the model's `count` outputs: the dataset's class names when it has one
    per output, else the output indices as strings."""
    try:
        names = list(get_dataset(dataset).classes)
    except DataError:
        names = []
    return names if len(names) == count else [str(k) for k in range(count)]


def predict_files(
    checkpoint: str | os.PathLike,
    files: list[str | os.PathLike],
    top_k: int = 3,
    preprocess: bool = True,
    save_preprocessed: str | os.PathLike | None = None,
    device: str = "auto",
) -> list[FilePrediction]:
    """Load `checkpoint` and predict each file; a file that fails gets its error, the rest go on.

    `save_preprocessed`: a folder to write each prepared 28x28 image to, as `<file stem>.png`.
    Raises (instead of returning per-file errors) only for what stops every file: an unreadable
    checkpoint, an unknown device, a bad `top_k`.
    """
    if not isinstance(top_k, int) or top_k < 1:
        raise ConfigError(f"top_k must be a positive integer, got {top_k!r}")
    model, config = load_checkpoint(checkpoint, resolve_device(device))
    check_reads_images(model)
    results = [FilePrediction(str(f)) for f in files]
    prepared = {}
    for index, (result, path) in enumerate(zip(results, files)):
        try:
            prepared[index] = prepare_file(path, preprocess)
        except InputError as e:
            result.error = str(e)
    if save_preprocessed is not None and prepared:
        save_images(Path(save_preprocessed), [(Path(files[i]).stem, image) for i, image in prepared.items()])
    if prepared:
        classes = class_names(config.dataset, model.hparams["num_classes"])
        guesses = predict(model, np.stack(list(prepared.values())), top_k, classes)
        for index, top in zip(prepared, guesses):
            results[index].top = top
    return results


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
