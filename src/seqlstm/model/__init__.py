from .classifier import LSTMClassifier, lstm_init

__all__ = ["LSTMClassifier", "lstm_init"]
