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
        # Input standardisation, x -> (x - mean) / std per feature, with statistics of the training
        # data (set by training; identity until then). Inside the model, so that every way of
        # running it (evaluate, predict, serve, an ONNX export) feeds raw inputs and gets it right.
        self.register_buffer("input_mean", torch.zeros(input_size))
        self.register_buffer("input_std", torch.ones(input_size))
        self.register_load_state_dict_pre_hook(identity_for_missing_statistics)

        # How stored samples become this model's input, and its class names (data.sequences.Encoding);
        # set by training and by load_checkpoint, None for a bare model fed ready-made sequences.
        self.encoding = None

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (batch, classes) for x (batch, seq, features).

        `lengths` (batch,) int64: sequence i is x[i, :lengths[i]] and is classified from its own last
        real step; the core runs forward in time, so the padding after it cannot change the answer.
        None: every sequence uses all `seq` steps.
        """
        # No initial state passed: the core then starts from zeros on x's own device and dtype.
        out, _ = self.lstm(self.standardise(x))
        if lengths is None:
            return self.fc(out[:, -1, :])
        last = (lengths.to(out.device) - 1).view(-1, 1, 1).expand(-1, 1, out.shape[2])
        return self.fc(out.gather(1, last).squeeze(1))

    def standardise(self, x: torch.Tensor) -> torch.Tensor:
        """x (batch, seq, features) standardised with the model's input statistics."""
        return (x - self.input_mean) / self.input_std


def identity_for_missing_statistics(module: LSTMClassifier, state_dict: dict, prefix: str, *args) -> None:
    """Checkpoints written before input standardisation existed read their input as it is: load
    them with mean 0 and std 1 rather than refuse them."""
    for name, default in (("input_mean", module.input_mean), ("input_std", module.input_std)):
        if prefix + name not in state_dict and any(key.startswith(prefix + "lstm.") for key in state_dict):
            state_dict[prefix + name] = torch.full_like(default, 0.0 if name == "input_mean" else 1.0)


def lstm_init(core: nn.Module, memory: int | None = None) -> None:
    """Re-initialise a recurrent core in place: memory gate open, orthogonal recurrent weights per gate.

    A forget gate that starts half-closed (PyTorch's default bias ~0) erases the cell state at
    every step, so early gradients barely reach the first rows; starting it open (bias 1) lets the
    whole sequence train from the first step. Orthogonal recurrent blocks keep the recurrent
    Jacobian's singular values near 1, so signals neither vanish nor explode across the 28 steps.
    The input weights keep their default.

    `memory` (steps) asks instead for the "chrono" initialisation (Tallec & Ollivier, 2018): each
    unit's memory-gate bias drawn as log U(1, memory - 1), and an input gate's bias its negative.
    A bias of 1 keeps a cell's content for a few steps only; over 784 one-pixel steps the digit lies
    hundreds of steps before the answer, and these biases spread the units' memories over every
    time scale up to the whole sequence. Draws from torch's global generator.

    Per cell: nn.LSTM opens its forget gate f (input gate i); nn.GRU its update gate z (which keeps
    the old state, and has no separate input gate); the seed cell its Γf (input gate Γu). The
    recurrent blocks are nn.LSTM/nn.GRU's `weight_hh` row blocks, and the seed cell's columns acting
    on a<t-1> in W_g (one block per gate) and W_c.
    """
    hidden = core.hidden_size
    gru = isinstance(core, nn.GRU)
    with torch.no_grad():
        for name, param in core.named_parameters():
            if name.startswith("weight_hh"):
                for gate in param.split(hidden):  # nn.LSTM stacks i, f, g, o; nn.GRU r, z, n
                    nn.init.orthogonal_(gate)
            elif name.startswith(("weight_gates", "weight_candidate")):
                for gate in param[:, :hidden].split(hidden):  # seed: rows Γu, Γf, Γo, Γr (W_g) or c~ (W_c)
                    nn.init.orthogonal_(gate)
            elif name.startswith(("bias_ih", "bias_gates")):
                # Row block 0 is the input gate (i, Γu) and block 1 the memory gate in all three
                # layouts: f (i, f, g, o), z (r, z, n), Γf (Γu, Γf, Γo, Γr).
                param.zero_()
                if memory is None:
                    param[hidden : 2 * hidden] = 1.0
                else:
                    keep = torch.log(torch.empty(hidden).uniform_(1.0, max(memory - 1.0, 1.0)))
                    param[hidden : 2 * hidden] = keep
                    if not gru:
                        param[:hidden] = -keep
            elif name.startswith(("bias_hh", "bias_candidate")):
                param.zero_()
