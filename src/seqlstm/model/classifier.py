"""The many-to-one classifier: a recurrent core read at its last step, then a linear head."""

from __future__ import annotations

import torch
from torch import nn

from .cells import SeedRNN, check_cell


class LSTMClassifier(nn.Module):
    """Stacked recurrent core over a sequence, classified from the last step's output.

    Args:
        input_size: features per step (28 for MNIST read row by row).
        hidden_size: units per layer.
        num_layers: stacked layers.
        num_classes: outputs of the linear head.
        cell: "lstm" (fused nn.LSTM), "gru" (fused nn.GRU) or "seed" (the tutorial's 4-gate cell,
            run through its explicit equations in `cells.py`).
    """

    def __init__(
        self, input_size: int = 28, hidden_size: int = 128, num_layers: int = 2, num_classes: int = 10,
        cell: str = "lstm",
    ):
        super().__init__()
        self.cell = check_cell(cell)
        self.hparams = dict(
            input_size=input_size, hidden_size=hidden_size, num_layers=num_layers, num_classes=num_classes, cell=cell
        )
        # The core keeps the attribute name `lstm` for every cell: checkpoints written before there
        # was a choice of cell hold `lstm.*` weights and must load unchanged.
        if cell == "lstm":
            self.lstm = nn.LSTM(input_size, hidden_size, num_layers, batch_first=True)
        elif cell == "gru":
            self.lstm = nn.GRU(input_size, hidden_size, num_layers, batch_first=True)
        else:
            self.lstm = SeedRNN(input_size, hidden_size, num_layers)
        self.fc = nn.Linear(hidden_size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (batch, classes) for x (batch, seq, features)."""
        # No initial state passed: the core then starts from zeros on x's own device and dtype.
        out, _ = self.lstm(x)
        return self.fc(out[:, -1, :])
