"""Gate traces: every gate and state of a classifier at every step, and its answer after each step."""

from __future__ import annotations

import torch

from .cells import unroll
from .classifier import LSTMClassifier, patches


@torch.no_grad()
def trace_gates(model: LSTMClassifier, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Run `model` on raw samples x (images (batch, H, W) or sequences (batch, seq, features), unpadded)
    through its explicit cell and record everything.

    Returns a dict of tensors: one (layers, batch, steps, hidden) tensor per gate of the model's
    cell (`update`, `forget`, `output`, `relevance` for seed; `reset`, `update` for gru),
    `candidate`, `cell` (lstm and seed) and `hidden`; and `probabilities` (batch, steps, classes),
    the model's answer after each step. `steps` are the core's steps: seq / patch for a model that
    reads patches. The gates are the forward core's (a bidirectional model's reverse core is not
    traced). For the tutorial's shape the answer after step t is the head applied to that step's
    output; for any other shape it is the whole model run on the steps up to t, as if the sequence
    ended there. Either way the last step of `probabilities` is model(x).softmax(-1): fused
    nn.LSTM/nn.GRU weights run unchanged through the explicit equations.
    """
    x = x.to(next(model.parameters()).device)
    trace: dict[str, torch.Tensor] = {}
    if model.plain:
        outputs, _ = unroll(model.cell, model.lstm, model.inputs(x), trace=trace)
        trace["probabilities"] = model.fc(outputs).softmax(dim=-1)
        return trace
    x, lengths = model.prepare(x)
    steps, _ = patches(x, lengths, model.patch)
    unroll(model.cell, model.lstm, steps, trace=trace)
    reach = [min((t + 1) * model.patch, x.shape[1]) for t in range(steps.shape[1])]  # input steps read by core step t
    answers = [model.classify(x[:, :n], lengths.clamp(max=n)) for n in reach]
    trace["probabilities"] = torch.stack(answers, dim=1).softmax(dim=-1)
    return trace
