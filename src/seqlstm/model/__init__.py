from .classifier import LSTMClassifier

__all__ = ["LSTMClassifier"]
