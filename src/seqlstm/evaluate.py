"""Accuracy, loss, per-class precision/recall/F1 and the confusion matrix of a trained classifier."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.nn import functional as F

from .checkpoint import load_checkpoint
from .data import load_dataset
from .data.sequences import image_rows
from .data.sources import get_dataset
from .device import resolve_device, resolve_precision
from .errors import ConfigError
from .model import LSTMClassifier

log = logging.getLogger(__name__)

# Large batches make evaluation a few big matrix products instead of many small ones; the
# result does not depend on it beyond float rounding, and train and evaluate use the same value.
EVAL_BATCH_SIZE = 1000


@dataclass
class ClassMetrics:
    label: str
    precision: float  # of the samples predicted as this class, the fraction that are (0 when none are)
    recall: float  # of the samples of this class, the fraction found (0 when there are none)
    f1: float  # harmonic mean of precision and recall (0 when both are 0)
    support: int  # samples of this class


@dataclass
class Evaluation:
    correct: int
    total: int
    split: str = "test"
    loss: float | None = None  # mean cross-entropy
    confusion: torch.Tensor | None = None  # int64 (classes, classes): row = true class, column = predicted
    classes: tuple[str, ...] = ()
    figures: tuple[Path, ...] = ()  # plots written by evaluate_checkpoint

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

    def per_class(self) -> list[ClassMetrics]:
        """Precision, recall, F1 and support of every class, in class order."""
        return per_class_metrics(self.confusion, self.classes)

    def report(self) -> str:
        """The summary line, a table of per-class metrics and the confusion matrix, as text."""
        width = max(5, *(len(c) for c in self.classes))
        lines = [self.summary(), "", f"{'class':<{width}}  precision  recall      f1  support"]
        lines += [
            f"{m.label:<{width}}  {m.precision:9.4f}  {m.recall:6.4f}  {m.f1:6.4f}  {m.support:7d}"
            for m in self.per_class()
        ]
        counts = self.confusion.tolist()
        cell = max(len(str(self.total)), *(len(c) for c in self.classes))
        lines += ["", "confusion matrix (rows: true class, columns: predicted class)"]
        lines.append(" " * width + "".join(f" {c:>{cell}}" for c in self.classes))
        lines += [f"{c:<{width}}" + "".join(f" {n:>{cell}d}" for n in row) for c, row in zip(self.classes, counts)]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """Plain values for JSON: accuracy (%), loss, per-class metrics (fractions) and the confusion matrix."""
        return {
            "split": self.split,
            "total": self.total,
            "correct": self.correct,
            "accuracy": self.accuracy,
            "loss": self.loss,
            "classes": list(self.classes),
            "per_class": [vars(m) for m in self.per_class()],
            "confusion": self.confusion.tolist(),
            "figures": [str(p) for p in self.figures],
        }


def per_class_metrics(confusion: torch.Tensor, classes: tuple[str, ...]) -> list[ClassMetrics]:
    """Per-class precision, recall and F1 from a confusion matrix (classes, classes), rows = true class."""
    counts = confusion.double()
    hits = counts.diagonal()
    predicted, support = counts.sum(dim=0), counts.sum(dim=1)
    # A class never predicted (or never present) scores 0 rather than 0/0.
    precision = torch.where(predicted > 0, hits / predicted.clamp(min=1), 0.0)
    recall = torch.where(support > 0, hits / support.clamp(min=1), 0.0)
    total = precision + recall
    f1 = torch.where(total > 0, 2 * precision * recall / total.clamp(min=1e-300), 0.0)
    return [
        ClassMetrics(label, float(p), float(r), float(f), int(s))
        for label, p, r, f, s in zip(classes, precision, recall, f1, support)
    ]


def logits_of(model: LSTMClassifier, images: torch.Tensor, precision: torch.dtype | None = None) -> torch.Tensor:
    """The model's float32 logits (N, classes), on its device, for uint8 `images` (N, H, W).

    Runs under inference mode, with autocast to `precision` when given (the precision the model
    was trained in); the model's train/eval mode is restored.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    with torch.inference_mode(), torch.autocast(device.type, dtype=precision, enabled=precision is not None):
        logits = [
            model(image_rows(images[start : start + EVAL_BATCH_SIZE].to(device))).float()
            for start in range(0, len(images), EVAL_BATCH_SIZE)
        ]
    model.train(was_training)
    return torch.cat(logits)


def summarise(logits: torch.Tensor, labels: torch.Tensor, split: str, classes: tuple[str, ...] | None = None) -> Evaluation:
    """Accuracy, mean loss and confusion matrix of `logits` (N, classes) against int64 `labels` (N,)."""
    count = logits.shape[1]
    labels = labels.to(logits.device)
    predicted = logits.argmax(dim=1)
    confusion = torch.bincount(labels * count + predicted, minlength=count * count).reshape(count, count).cpu()
    return Evaluation(
        correct=int(confusion.diagonal().sum()),
        total=len(labels),
        split=split,
        loss=float(F.cross_entropy(logits, labels)),
        confusion=confusion,
        classes=classes or tuple(str(k) for k in range(count)),
    )


def evaluate(
    model: LSTMClassifier,
    images: torch.Tensor,
    labels: torch.Tensor,
    split: str = "test",
    precision: torch.dtype | None = None,
    classes: tuple[str, ...] | None = None,
) -> Evaluation:
    """Evaluate `model` on uint8 `images` (N, H, W) with int64 `labels` (N,).

    Runs on the model's device under inference mode, with autocast to `precision` when given.
    `classes` names the classes (default: their numbers). Returns accuracy, mean cross-entropy
    and the confusion matrix.
    """
    return summarise(logits_of(model, images, precision), labels, split, classes)


def evaluate_checkpoint(
    path: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    device: str = "auto",
    split: str = "test",
    plots: str | os.PathLike | None = None,
) -> Evaluation:
    """Load the checkpoint at `path` and evaluate it on `split` of the dataset it was trained on.

    Uses the precision the model was trained with, as resolved on `device`, so that on the same
    machine the result equals the accuracy printed at the end of training. A bf16-trained model
    on a device without bf16 is evaluated in float32 (with a logged warning). With `plots` (a
    folder), also draws the confusion matrix and the worst misclassified images there.
    """
    target = resolve_device(device)
    model, config = load_checkpoint(path, target)
    data = load_dataset(config.dataset, split, data_dir)
    try:
        precision = resolve_precision(config.precision, target)
    except ConfigError:
        log.warning("%s was trained in bf16, which %s cannot run; evaluating in float32", path, target)
        precision = None
    logits = logits_of(model, data.images, precision)
    evaluation = summarise(logits, data.labels, split, get_dataset(config.dataset).classes)
    if plots is not None:
        # Imported here so that training and plain evaluation never load matplotlib.
        from .plots import evaluation_figures

        evaluation.figures = evaluation_figures(plots, evaluation, data.images, data.labels, logits.softmax(dim=1).cpu())
    return evaluation
