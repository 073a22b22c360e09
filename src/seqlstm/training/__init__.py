"""Training: the trainer and its loop (loop.py), the recorders it tells what happened
(recorders.py), and the state a run keeps to continue exactly (state.py)."""

from .loop import Step, Trainer, TrainResult, resolve, resume, train
from .recorders import Recorder

__all__ = ["Recorder", "Step", "Trainer", "TrainResult", "resolve", "resume", "train"]
