"""seqlstm: train, evaluate and explain many-to-one LSTM sequence classifiers."""

__version__ = "0.1.0"

from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig
from .data import LabelledImages, load_dataset
from .errors import CheckpointError, ConfigError, DataError, DownloadError, SeqlstmError
from .evaluate import Evaluation, evaluate, evaluate_checkpoint
from .model import LSTMClassifier
from .train import TrainResult, train

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "DownloadError",
    "Evaluation",
    "LSTMClassifier",
    "LabelledImages",
    "SeqlstmError",
    "TrainConfig",
    "TrainResult",
    "evaluate",
    "evaluate_checkpoint",
    "load_checkpoint",
    "load_dataset",
    "save_checkpoint",
    "train",
]
