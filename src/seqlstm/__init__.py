"""seqlstm: train, evaluate and explain many-to-one LSTM sequence classifiers."""

__version__ = "0.1.0"

import sys

try:
    from .checkpoint import load_checkpoint, save_checkpoint
    from .config import TrainConfig
    from .data import LabelledImages, load_dataset
    from .data.records import Arrays, ImageSet, SequenceFile, TrainingData, source_for
    from .data.seqfiles import RawSequences, read_sequences
    from .data.sequences import Sequences
    from .errors import (
        CheckpointError,
        ConfigError,
        DataError,
        DownloadError,
        ExportError,
        InputError,
        NonFiniteLossError,
        OutputError,
        RunError,
        SeqlstmError,
        ServeError,
        TrainingInterrupted,
    )
    from .evaluate import ClassMetrics, Evaluation, evaluate, evaluate_checkpoint, per_class_metrics
    from .explain import Explanation, explain
    from .export import ExportResult, export_onnx
    from .model import CELLS, LSTMClassifier, trace_gates
    from .predict import FilePrediction, Guess, predict, predict_files
    from .runs import plot_run, read_metrics
    from .training import Recorder, Step, Trainer, TrainResult, resume, train
    from .web import serve
except KeyboardInterrupt:
    # Ctrl+C while the `seqlstm` command is still loading (torch takes seconds): the command's
    # one line, not a traceback. Imported as a library, the interrupt is the caller's.
    if sys.argv[0].rsplit("/", 1)[-1] == "seqlstm" or sys.orig_argv[1:3] == ["-m", "seqlstm"]:
        print("seqlstm: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    raise

def __getattr__(name: str):
    # The estimator needs scikit-learn (the `sklearn` extra): imported on first use, so that the
    # rest of seqlstm (and the CLI's start-up) never loads it.
    if name == "SequenceClassifier":
        try:
            from .estimator import SequenceClassifier
        except ImportError as e:
            raise ImportError(f'SequenceClassifier needs scikit-learn ({e}); install it with: pip install "seqlstm[sklearn]"') from None
        return SequenceClassifier
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "Arrays",
    "CELLS",
    "CheckpointError",
    "ClassMetrics",
    "ConfigError",
    "DataError",
    "DownloadError",
    "Evaluation",
    "Explanation",
    "ExportError",
    "ExportResult",
    "FilePrediction",
    "Guess",
    "ImageSet",
    "InputError",
    "LSTMClassifier",
    "LabelledImages",
    "NonFiniteLossError",
    "OutputError",
    "RawSequences",
    "Recorder",
    "RunError",
    "SeqlstmError",
    "SequenceFile",
    "Sequences",
    "ServeError",
    "Step",
    "TrainConfig",
    "Trainer",
    "TrainingData",
    "TrainResult",
    "TrainingInterrupted",
    "evaluate",
    "evaluate_checkpoint",
    "explain",
    "export_onnx",
    "load_checkpoint",
    "load_dataset",
    "source_for",
    "per_class_metrics",
    "plot_run",
    "predict",
    "predict_files",
    "read_metrics",
    "read_sequences",
    "resume",
    "save_checkpoint",
    "serve",
    "trace_gates",
    "train",
]
