"""`SeqlstmClassifier`: seqlstm as an aeon classifier, for aeon's benchmarks, pipelines and tooling.

aeon's collections are (n_cases, n_channels, n_timepoints) arrays, or lists of (n_channels,
n_timepoints_i) arrays of unequal length; this classifier turns them into seqlstm's (T, F) steps and
trains a `SequenceClassifier` with the same parameters. Needs aeon (`pip install "seqlstm[aeon]"`).
"""

from __future__ import annotations

import inspect

import numpy as np
from aeon.classification.base import BaseClassifier

from .estimator import SequenceClassifier


class SeqlstmClassifier(BaseClassifier):
    """seqlstm's many-to-one recurrent classifier under aeon's BaseClassifier conventions; its
    parameters are SequenceClassifier's (TrainConfig's fields; None: planned from the data)."""

    _tags = {
        "capability:multivariate": True,
        "capability:unequal_length": True,
        "X_inner_type": ["np-list", "numpy3D"],
        "algorithm_type": "deeplearning",
        "python_dependencies": "torch",
    }

    def __init__(self, **params):
        # The parameters are SequenceClassifier's, declared once there (the signature below is its
        # signature, which aeon and scikit-learn read); aeon's base comes last, as aeon requires.
        unknown = sorted(set(params) - set(DEFAULTS))
        if unknown:
            raise TypeError(f"SeqlstmClassifier got unknown parameters {', '.join(unknown)}; it takes {', '.join(DEFAULTS)}")
        for name, value in {**DEFAULTS, **params}.items():
            setattr(self, name, value)
        super().__init__()

    def _fit(self, X, y) -> "SeqlstmClassifier":
        self.estimator_ = SequenceClassifier(**self.get_params()).fit(steps(X), y)
        return self

    def _predict(self, X) -> np.ndarray:
        return self.estimator_.predict(steps(X))

    def _predict_proba(self, X) -> np.ndarray:
        return self.estimator_.predict_proba(steps(X))

    @classmethod
    def _get_test_params(cls, parameter_set: str = "default") -> dict:
        """A budget small enough for aeon's estimator checks."""
        return {"hidden_size": 8, "num_layers": 1, "conv": 4, "max_steps": 5, "device": "cpu"}


SIGNATURE = inspect.signature(SequenceClassifier.__init__)
DEFAULTS = {name: p.default for name, p in SIGNATURE.parameters.items() if name != "self"}
SeqlstmClassifier.__init__.__signature__ = SIGNATURE


def steps(X) -> np.ndarray | list[np.ndarray]:
    """aeon's (n_cases, n_channels, n_timepoints) array, or list of (n_channels, n_timepoints_i), as
    seqlstm's sequences of steps: (n_cases, n_timepoints, n_channels), or a list of (n_timepoints_i, n_channels)."""
    if isinstance(X, np.ndarray):
        return X.transpose(0, 2, 1)
    return [case.T for case in X]
