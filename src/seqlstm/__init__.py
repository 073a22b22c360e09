"""seqlstm: train, evaluate and explain many-to-one LSTM sequence classifiers."""

__version__ = "0.1.0"

from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig
from .data import LabelledImages, load_dataset
from .data.datasets import TrainingData, load_training_data
from .data.seqfiles import RawSequences, read_sequences
from .data.sequences import Encoding, Sequences
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
from .train import TrainResult, resume, train
from .web import serve

__all__ = [
    "CELLS",
    "CheckpointError",
    "ClassMetrics",
    "ConfigError",
    "DataError",
    "DownloadError",
    "Encoding",
    "Evaluation",
    "Explanation",
    "ExportError",
    "ExportResult",
    "FilePrediction",
    "Guess",
    "InputError",
    "LSTMClassifier",
    "LabelledImages",
    "NonFiniteLossError",
    "OutputError",
    "RawSequences",
    "RunError",
    "SeqlstmError",
    "Sequences",
    "ServeError",
    "TrainConfig",
    "TrainingData",
    "TrainResult",
    "TrainingInterrupted",
    "evaluate",
    "evaluate_checkpoint",
    "explain",
    "export_onnx",
    "load_checkpoint",
    "load_dataset",
    "load_training_data",
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
