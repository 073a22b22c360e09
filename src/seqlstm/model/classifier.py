"""The many-to-one classifier: a recurrent core read at its last step, then a linear head."""

from __future__ import annotations

import torch
from torch import nn


class LSTMClassifier(nn.Module):
    """Stacked LSTM over a sequence, classified from the last step's output.

    Args:
        input_size: features per step (28 for MNIST read row by row).
        hidden_size: LSTM units per layer.
        num_layers: stacked LSTM layers.
        num_classes: outputs of the linear head.
    """

    def __init__(self, input_size: int = 28, hidden_size: int = 128, num_layers: int = 2, num_classes: int = 10):
        super().__init__()
        self.hparams = dict(
            input_size=input_size, hidden_size=hidden_size, num_layers=num_layers, num_classes=num_classes
        )
        self.lstm = nn.LSTM(input_size, hidden_size, num_layers, batch_first=True)
        self.fc = nn.Linear(hidden_size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (batch, classes) for x (batch, seq, features)."""
        # No initial state passed: nn.LSTM then starts from zeros on x's own device and dtype.
        out, _ = self.lstm(x)
        return self.fc(out[:, -1, :])
