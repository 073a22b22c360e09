"""Predictions: the top classes for MNIST-style images, for a user's image or array files (prepared
the way the model's training images were), and for the sequences in a user's .npz, .ts or .csv file.
How a file is read is its training data's record's business (data/records.py)."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from PIL import Image

from .atomic import check_writable, replace_atomically
from .checkpoint import load_checkpoint
from .data.digits import FRAME
from .data.packed import Pack, is_pack
from .data.records import source_for
from .data.userfiles import read_grayscale
from .device import resolve_device
from .errors import ConfigError, DataError, InputError
from .evaluation import EVAL_BATCH_SIZE, logits_of
from .runtime import load_runner


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
    the model's input transform says (rows, pixels or permuted pixels). `classes` names the model's
    outputs (default: its own names). Runs on the model's device under inference mode; the
    model's train/eval mode is restored.
    """
    images = torch.as_tensor(images)
    if images.dtype != torch.uint8 or images.ndim != 3 or tuple(images.shape[1:]) != (FRAME, FRAME):
        raise ConfigError(
            f"predict takes uint8 images of shape (N, {FRAME}, {FRAME}); got {images.dtype} {tuple(images.shape)}"
        )
    check_reads_images(model)
    return top_guesses(logits_of(model, images), top_k, classes or model.classes)


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
    inputs = model.inputs
    if inputs.image_shape is None or tuple(inputs.image_shape) != (FRAME, FRAME):
        raise ConfigError(
            f"this model reads {inputs.unit} of {inputs.features} features per step; predicting from images needs "
            f"one trained on {FRAME}x{FRAME} images (--dataset mnist or fashion-mnist)"
        )


def prepare_file(path: str | os.PathLike, preprocess: bool = True, style: str = "mnist") -> np.ndarray:
    """The uint8 (28, 28) image the model sees for the image or `.npy` file at `path`.

    `style` names the image set whose preparation to repeat (see `prepare_image`). With
    `preprocess=False` the file must already be 28x28, bright on black. Raises InputError naming the file.
    """
    return prepare_image(read_grayscale(path), preprocess, str(path), style)


def prepare_image(gray: np.ndarray, preprocess: bool = True, name: str = "image", style: str = "mnist") -> np.ndarray:
    """The uint8 (28, 28) image the model sees for the uint8 (H, W) picture `gray`.

    `gray` is as `read_grayscale` returns it (either polarity, any size). `style`: the published
    image set the model was trained on, whose record says how its images were prepared (MNIST's
    handwriting, Fashion-MNIST's product photos). With `preprocess=False` it must already be 28x28,
    bright on black. Raises InputError starting with `name`.
    """
    return source_for(style).prepare(gray, preprocess, name)


def predict_files(
    checkpoint: str | os.PathLike,
    files: list[str | os.PathLike],
    top_k: int = 3,
    preprocess: bool = True,
    save_preprocessed: str | os.PathLike | None = None,
    device: str = "auto",
    runtime: str = "torch",
) -> list[FilePrediction]:
    """Load `checkpoint` and predict each file; a file that fails gets its error, the rest go on.

    A file is read as the model's training data's record says: for a model trained on images, an
    image or .npy file of one character (or, for Fashion-MNIST, one article), prepared as its
    training images were; for a model trained on sequences, a .npz, .ts or .csv file, every sequence
    in it predicted (`file[i]`).
    `save_preprocessed`: a folder to write each prepared image to, as `<file stem>.png`.
    `runtime`: what runs the model, "torch", "onnxruntime" or "auto" (see runtime.py).
    Raises (instead of returning per-file errors) only for what stops every file: an unreadable
    checkpoint, an unknown device or runtime, a bad `top_k`, `save_preprocessed` for a model that
    reads no images.
    """
    if not isinstance(top_k, int) or top_k < 1:
        raise ConfigError(f"top_k must be a positive integer, got {top_k!r}")
    # ONNX Runtime runs on the CPU: there, "auto" means the CPU.
    model, config = load_checkpoint(checkpoint, resolve_device("cpu" if runtime == "onnxruntime" and device == "auto" else device))
    if save_preprocessed is not None and not model.reads_images:
        raise ConfigError("--save-preprocessed writes images; this model reads sequences")
    runner = load_runner(model, checkpoint, runtime)
    source = source_for(config.dataset)
    results, seen = [], []
    for path in files:
        try:
            for names, raw, lengths in parts_of(source, path, config, model, preprocess):
                logits = runner.logits(raw, lengths)
                if save_preprocessed is not None:
                    seen.append((Path(path).stem, raw[0].numpy()))
                guesses = top_guesses(logits, top_k, model.classes)
                results += [FilePrediction(name, top) for name, top in zip(names, guesses)]
        except (DataError, InputError) as e:
            results.append(FilePrediction(str(path), error=str(e)))
    if seen:
        save_images(Path(save_preprocessed), seen, files)
    return results


def parts_of(source, path: str | os.PathLike, config, model, preprocess: bool) -> Iterator[tuple[list[str], torch.Tensor, torch.Tensor | None]]:
    """The inputs of `path` as (names, raw inputs, lengths): a file's all at once, as `source`
    reads them; a pack's (a folder `seqlstm pack` wrote) EVAL_BATCH_SIZE sequences at a time, read
    from disk as they are predicted, named `path[i]` in the order of its splits."""
    if not is_pack(path):
        yield source.read_inputs(path, config, model, preprocess)
        return
    if model.reads_images:
        raise InputError(f"{path}: a pack of sequences; this model reads images")
    samples = Pack(path).everything()
    if samples.pack.features != model.inputs.features:
        raise InputError(f"{path}: its sequences have {samples.pack.features} features per step; the model reads "
                         f"{model.inputs.features}")
    for start in range(0, len(samples), EVAL_BATCH_SIZE):
        part = samples.read(torch.arange(start, min(start + EVAL_BATCH_SIZE, len(samples))))
        yield [f"{path}[{i}]" for i in range(start, start + len(part.labels))], part.inputs, part.lengths


def save_images(folder: Path, images: list[tuple[str, np.ndarray]], reads: list[str | os.PathLike] = ()) -> None:
    """Write each uint8 (28, 28) image as `<stem>.png`; repeated stems get `-2`, `-3`, ... appended.

    Every target is checked before anything is written: OutputError when one is a file of `reads`
    (the pictures being predicted) or no regular file; each is written atomically.
    """
    taken, targets = set(), []
    for stem, image in images:
        name, number = stem, 1
        while name in taken:
            number += 1
            name = f"{stem}-{number}"
        taken.add(name)
        targets.append((check_writable(folder / f"{name}.png", reads), image))
    for target, image in targets:
        replace_atomically(target, lambda tmp: Image.fromarray(image).save(tmp, format="PNG"), reads)
