"""seqlstm: train, evaluate and explain many-to-one LSTM sequence classifiers.

Every name below is imported on first use, so that `import seqlstm` and the command line's
start-up (`seqlstm --help`) do not load PyTorch.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# Where each public name lives. No public name is also a submodule's name: importing the submodule
# would put the module in its place.
EXPORTS = {
    "Attribution": "attribution",
    "attribute": "attribution",
    "load_checkpoint": "checkpoint",
    "save_checkpoint": "checkpoint",
    "TrainConfig": "config",
    "LabelledImages": "data",
    "Pack": "data.packed",
    "PackSummary": "data.packed",
    "Packed": "data.packed",
    "pack": "data.packed",
    "load_dataset": "data",
    "Arrays": "data.records",
    "ImageSet": "data.records",
    "PackedSet": "data.records",
    "SequenceFile": "data.records",
    "TrainingData": "data.records",
    "source_for": "data.records",
    "RawSequences": "data.seqfiles",
    "read_sequences": "data.seqfiles",
    "Sequences": "data.sequences",
    "CheckpointError": "errors",
    "ConfigError": "errors",
    "DataError": "errors",
    "DownloadError": "errors",
    "ExportError": "errors",
    "InputError": "errors",
    "NonFiniteLossError": "errors",
    "OutputError": "errors",
    "RunError": "errors",
    "SeqlstmError": "errors",
    "ServeError": "errors",
    "TrainingInterrupted": "errors",
    "ClassMetrics": "evaluation",
    "Evaluation": "evaluation",
    "evaluate": "evaluation",
    "evaluate_checkpoint": "evaluation",
    "per_class_metrics": "evaluation",
    "Explanation": "explanation",
    "explain": "explanation",
    "ExportResult": "export",
    "export_onnx": "export",
    "CELLS": "model",
    "LSTMClassifier": "model",
    "trace_gates": "model",
    "FilePrediction": "prediction",
    "Guess": "prediction",
    "predict": "prediction",
    "predict_files": "prediction",
    "plot_run": "runs",
    "read_metrics": "runs",
    "Recorder": "training",
    "Step": "training",
    "Trainer": "training",
    "TrainResult": "training",
    "resume": "training",
    "train": "training",
    "serve": "web",
}


def __getattr__(name: str):
    if name == "SequenceClassifier":
        # The estimator needs scikit-learn (the `sklearn` extra).
        try:
            from .estimator import SequenceClassifier
        except ImportError as e:
            raise ImportError(f'SequenceClassifier needs scikit-learn ({e}); install it with: pip install "seqlstm[sklearn]"') from None
        return SequenceClassifier
    if name not in EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *EXPORTS, "SequenceClassifier"])


__all__ = sorted(EXPORTS)
