"""Accuracy of a trained classifier on a labelled split."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch

from .checkpoint import load_checkpoint
from .data import load_dataset
from .data.sequences import image_rows
from .device import resolve_device, resolve_precision
from .errors import ConfigError
from .model import LSTMClassifier

log = logging.getLogger(__name__)

# Large batches make evaluation a few big matrix products instead of many small ones; the
# result does not depend on it beyond float rounding, and train and evaluate use the same value.
EVAL_BATCH_SIZE = 1000


@dataclass
class Evaluation:
    correct: int
    total: int
    split: str = "test"

    @property
    def accuracy(self) -> float:
        """Percentage of correctly classified samples."""
        return 100.0 * self.correct / self.total

    def summary(self) -> str:
        """The tutorial's line, e.g. `Test Accuracy of the model on the 10000 test images: 97.68 %`."""
        return (
            f"{self.split.capitalize()} Accuracy of the model on the {self.total} {self.split} images: "
            f"{self.accuracy:.2f} %"
        )


def evaluate(
    model: LSTMClassifier,
    images: torch.Tensor,
    labels: torch.Tensor,
    split: str = "test",
    precision: torch.dtype | None = None,
) -> Evaluation:
    """Count correct predictions of `model` on uint8 `images` (N, H, W) with int64 `labels` (N,).

    Runs on the model's device under inference mode, with autocast to `precision` when given (the
    precision the model was trained in); the model's train/eval mode is restored.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    correct = 0
    with torch.inference_mode(), torch.autocast(device.type, dtype=precision, enabled=precision is not None):
        for start in range(0, len(images), EVAL_BATCH_SIZE):
            x = image_rows(images[start : start + EVAL_BATCH_SIZE].to(device))
            y = labels[start : start + EVAL_BATCH_SIZE].to(device)
            correct += int((model(x).argmax(dim=1) == y).sum())
    model.train(was_training)
    return Evaluation(correct=correct, total=len(images), split=split)


def evaluate_checkpoint(
    path: str | os.PathLike, data_dir: str | os.PathLike | None = None, device: str = "auto", split: str = "test"
) -> Evaluation:
    """Load the checkpoint at `path` and evaluate it on `split` of the dataset it was trained on.

    Uses the precision the model was trained with, as resolved on `device`, so that on the same
    machine the result equals the accuracy printed at the end of training. A bf16-trained model
    on a device without bf16 is evaluated in float32 (with a logged warning).
    """
    target = resolve_device(device)
    model, config = load_checkpoint(path, target)
    data = load_dataset(config.dataset, split, data_dir)
    try:
        precision = resolve_precision(config.precision, target)
    except ConfigError:
        log.warning("%s was trained in bf16, which %s cannot run; evaluating in float32", path, target)
        precision = None
    return evaluate(model, data.images, data.labels, split, precision)
