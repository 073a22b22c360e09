"""seqlstm: train, evaluate and explain many-to-one LSTM sequence classifiers."""

__version__ = "0.1.0"

from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig
from .data import LabelledImages, load_dataset
from .errors import (
    CheckpointError,
    ConfigError,
    DataError,
    DownloadError,
    ExportError,
    InputError,
    OutputError,
    SeqlstmError,
    ServeError,
)
from .evaluate import Evaluation, evaluate, evaluate_checkpoint
from .explain import Explanation, explain
from .export import ExportResult, export_onnx
from .model import CELLS, LSTMClassifier, trace_gates
from .predict import FilePrediction, Guess, predict, predict_files
from .train import TrainResult, train
from .web import serve

__all__ = [
    "CELLS",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "DownloadError",
    "Evaluation",
    "Explanation",
    "ExportError",
    "ExportResult",
    "FilePrediction",
    "Guess",
    "InputError",
    "LSTMClassifier",
    "LabelledImages",
    "OutputError",
    "SeqlstmError",
    "ServeError",
    "TrainConfig",
    "TrainResult",
    "evaluate",
    "evaluate_checkpoint",
    "explain",
    "export_onnx",
    "load_checkpoint",
    "load_dataset",
    "predict",
    "predict_files",
    "save_checkpoint",
    "serve",
    "trace_gates",
    "train",
]
