from .cells import CELLS
from .classifier import LSTMClassifier
from .trace import trace_gates

__all__ = ["CELLS", "LSTMClassifier", "trace_gates"]
