"""Accuracy, loss, per-class precision/recall/F1 and the confusion matrix of a trained classifier."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.nn import functional as F

from .checkpoint import load_checkpoint
from .data.records import samples_for
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
    unit: str = "images"  # what a sample is called in the summary: images or sequences

    @property
    def accuracy(self) -> float:
        """Percentage of correctly classified samples."""
        return 100.0 * self.correct / self.total

    def summary(self) -> str:
        """The tutorial's line, e.g. `Test Accuracy of the model on the 10000 test images: 97.68 %`."""
        return (
            f"{self.split.capitalize()} Accuracy of the model on the {self.total} {self.split} {self.unit}: "
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


def logits_of(
    model: torch.nn.Module, inputs: torch.Tensor, precision: torch.dtype | None = None, lengths: torch.Tensor | None = None
) -> torch.Tensor:
    """The model's float32 logits (N, classes), on its device, for stored samples `inputs`.

    `inputs` are the raw samples the model reads: uint8 images (N, H, W), or float sequences
    (N, T, F) with `lengths` (N,). Runs under inference mode, with autocast to `precision` when
    given (the precision the model was trained in); the model's train/eval mode is restored.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    logits = []
    with torch.inference_mode(), torch.autocast(device.type, dtype=precision, enabled=precision is not None):
        for start in range(0, len(inputs), EVAL_BATCH_SIZE):
            x = inputs[start : start + EVAL_BATCH_SIZE].to(device)
            # Any module mapping raw samples to logits; lengths only to one that reads padded sequences.
            logits.append((model(x) if lengths is None else model(x, lengths[start : start + EVAL_BATCH_SIZE])).float())
    model.train(was_training)
    return torch.cat(logits) if logits else torch.empty(0, model.hparams["num_classes"], device=device)


def summarise(
    logits: torch.Tensor, labels: torch.Tensor, split: str, classes: tuple[str, ...] | None = None, unit: str = "images"
) -> Evaluation:
    """Accuracy, mean loss and confusion matrix of `logits` (N, classes) against int64 `labels` (N,)."""
    count = logits.shape[1]
    labels = labels.to(logits.device)
    predicted = logits.argmax(dim=1)
    confusion = torch.bincount(labels * count + predicted, minlength=count * count).reshape(count, count).cpu()
    return Evaluation(
        correct=int(confusion.diagonal().sum()),
        total=len(labels),
        split=split,
        # An empty part (a rank's share of a tiny split under torchrun) has loss 0, not NaN, so that
        # the ranks' loss sums still add up.
        loss=float(F.cross_entropy(logits, labels)) if len(labels) else 0.0,
        confusion=confusion,
        classes=classes or tuple(str(k) for k in range(count)),
        unit=unit,
    )


def evaluate(
    model: LSTMClassifier,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    split: str = "test",
    precision: torch.dtype | None = None,
    classes: tuple[str, ...] | None = None,
    lengths: torch.Tensor | None = None,
) -> Evaluation:
    """Evaluate `model` on stored samples `inputs` with int64 `labels` (N,).

    `inputs` and `lengths` are as `logits_of` takes them (uint8 images (N, H, W) for an image
    model). Runs on the model's device under inference mode, with autocast to `precision` when
    given. `classes` names the classes (default: the model's). Returns accuracy, mean
    cross-entropy and the confusion matrix.
    """
    logits = logits_of(model, inputs, precision, lengths)
    return summarise(logits, labels, split, classes or getattr(model, "classes", None), model.inputs.unit)


def evaluate_checkpoint(
    path: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    device: str = "auto",
    split: str = "test",
    plots: str | os.PathLike | None = None,
    dataset: str | os.PathLike | None = None,
) -> Evaluation:
    """Load the checkpoint at `path` and evaluate it on `split` of the data it was trained on.

    For a model trained on the user's sequences, `split` "test" is the test file or held-out share
    it was tested on; `dataset` (a labelled .npz, .ts or .csv file) evaluates on that file instead.
    Uses the precision the model was trained with, as resolved on `device`, so that on the same
    machine the result equals the accuracy printed at the end of training. A bf16-trained model
    on a device without bf16 is evaluated in float32 (with a logged warning). With `plots` (a
    folder), also draws the confusion matrix and, for images, the worst misclassified ones there.
    """
    target = resolve_device(device)
    model, config = load_checkpoint(path, target)
    data = samples_for(config, model, split, data_dir, dataset)
    try:
        precision = resolve_precision(config.precision, target)
    except ConfigError:
        log.warning("%s was trained in bf16, which %s cannot run; evaluating in float32", path, target)
        precision = None
    logits = logits_of(model, data.inputs, precision, data.lengths)
    evaluation = summarise(logits, data.labels, split, model.classes, model.inputs.unit)
    if plots is not None:
        # Imported here so that training and plain evaluation never load matplotlib.
        from .plots import evaluation_figures

        evaluation.figures = evaluation_figures(plots, evaluation, model.inputs.pictures(data.inputs), data.labels,
                                                logits.softmax(dim=1).cpu())
    return evaluation
