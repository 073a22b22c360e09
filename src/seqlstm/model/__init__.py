from .cells import CELLS
from .classifier import LSTMClassifier, lstm_init
from .trace import trace_gates

__all__ = ["CELLS", "LSTMClassifier", "lstm_init", "trace_gates"]
