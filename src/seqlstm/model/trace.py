"""Gate traces: every gate and state of a classifier at every step, and its answer after each step."""

from __future__ import annotations

import torch

from .cells import unroll
from .classifier import LSTMClassifier


@torch.no_grad()
def trace_gates(model: LSTMClassifier, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Run `model` on x (batch, seq, features) (standardised as the model does) through its explicit
    cell and record everything.

    Returns a dict of tensors: one (layers, batch, seq, hidden) tensor per gate of the model's cell
    (`update`, `forget`, `output`, `relevance` for seed; `reset`, `update` for gru), `candidate`,
    `cell` (lstm and seed) and `hidden`; and `probabilities` (batch, seq, classes), the head's
    softmax applied at every step. The last step of `probabilities` is the model's own prediction:
    fused nn.LSTM/nn.GRU weights run unchanged through the explicit equations.
    """
    x = x.to(next(model.parameters()).device)
    trace: dict[str, torch.Tensor] = {}
    outputs, _ = unroll(model.cell, model.lstm, model.standardise(x), trace=trace)
    trace["probabilities"] = model.fc(outputs).softmax(dim=-1)
    return trace
