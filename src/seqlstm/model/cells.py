"""The gate equations written out, one line of code per equation, in the tutorial's notation.

Three cells, each stacked over layers and run batch-first, `x` shaped (batch, seq, features):

* `lstm`: exactly nn.LSTM. Its parameters have nn.LSTM's names and layout (`weight_ih_l{k}`
  (4*hidden, in) with row blocks in nn.LSTM's order i, f, g, o; `weight_hh_l{k}`; `bias_ih_l{k}`;
  `bias_hh_l{k}`), so the weights of a fused nn.LSTM run through `unroll` unchanged.
* `gru`: exactly nn.GRU (row blocks r, z, n), under nn.GRU's parameter names.
* `seed`: the tutorial's four equations as written, where Γr is the GRU's reset gate moved into an
  LSTM-like cell and the output has no tanh:

      Γu, Γf, Γo, Γr = σ(W_g [a<t-1>, x<t>] + b_g)
      c~<t> = tanh(W_c [Γr * a<t-1>, x<t>] + b_c)
      c<t>  = Γu * c~<t> + Γf * c<t-1>
      a<t>  = Γo * c<t>

  W_g is `weight_gates_l{k}` (4*hidden, hidden + in), row blocks Γu, Γf, Γo, Γr, columns
  [a<t-1>, x<t>]; b_g is `bias_gates_l{k}`; W_c is `weight_candidate_l{k}` (hidden, hidden + in);
  b_c is `bias_candidate_l{k}`.

Every cell computes the input's share of all its pre-activations for all steps in one matrix
product before the loop: it does not depend on the recurrent state, so only the product with
a<t-1> stays inside the loop. (Measured on a 2-core CPU, benchmarks/cell_speed.py: on par with
multiplying [a<t-1>, x<t>] at every step; the loop's per-step overhead dominates at this size.)
The product is split into per-step views with `unbind`, not indexed with `[:, t]`: the backward of
`unbind` is one stack, while each `[:, t]` allocates and fills a zero gradient the size of the
whole sequence; measured, this halves the time of a training step.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError

CELLS = ("lstm", "gru", "seed")

# What `unroll` records per cell when asked to trace: the gates, then the candidate, cell and hidden state.
TRACED = {
    "lstm": ("update", "forget", "output", "candidate", "cell", "hidden"),
    "gru": ("reset", "update", "candidate", "hidden"),
    "seed": ("update", "forget", "output", "relevance", "candidate", "cell", "hidden"),
}
GATES = {
    cell: tuple(name for name in names if name not in ("candidate", "cell", "hidden"))
    for cell, names in TRACED.items()
}


def check_cell(cell: str) -> str:
    """`cell` if it names a known cell, else ConfigError listing the known ones."""
    if cell not in CELLS:
        raise ConfigError(f"unknown cell {cell!r}; use one of {', '.join(CELLS)}")
    return cell


def lstm_layer(
    x: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor, b_ih: torch.Tensor, b_hh: torch.Tensor,
    a: torch.Tensor, c: torch.Tensor, trace: list | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One nn.LSTM layer over x (batch, seq, in) from state a, c (batch, hidden).

    Returns the outputs (batch, seq, hidden) and the final a, c. With `trace`, appends one dict of
    (batch, hidden) tensors per step.
    """
    x_part = F.linear(x, w_ih, b_ih + b_hh).unbind(1)  # seq x (batch, 4*hidden): W_i* x<t> + b_i* + b_h*
    outputs = []
    for t in range(x.shape[1]):
        i, f, g, o = (x_part[t] + F.linear(a, w_hh)).chunk(4, dim=1)
        update = torch.sigmoid(i)  # Γu = σ(W_ii x<t> + W_hi a<t-1> + b_i)   (nn.LSTM's input gate)
        forget = torch.sigmoid(f)  # Γf = σ(W_if x<t> + W_hf a<t-1> + b_f)
        candidate = torch.tanh(g)  # c~<t> = tanh(W_ig x<t> + W_hg a<t-1> + b_g)
        output = torch.sigmoid(o)  # Γo = σ(W_io x<t> + W_ho a<t-1> + b_o)
        c = update * candidate + forget * c  # c<t> = Γu * c~<t> + Γf * c<t-1>
        a = output * torch.tanh(c)  # a<t> = Γo * tanh(c<t>)
        outputs.append(a)
        if trace is not None:
            trace.append(dict(update=update, forget=forget, output=output, candidate=candidate, cell=c, hidden=a))
    return torch.stack(outputs, dim=1), a, c


def gru_layer(
    x: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor, b_ih: torch.Tensor, b_hh: torch.Tensor,
    a: torch.Tensor, trace: list | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One nn.GRU layer over x (batch, seq, in) from state a (batch, hidden).

    Returns the outputs (batch, seq, hidden) and the final a. nn.GRU's update gate z weights the
    *old* state: a<t> = (1 - z) * n + z * a<t-1>.
    """
    x_part = F.linear(x, w_ih, b_ih).unbind(1)  # seq x (batch, 3*hidden): W_i* x<t> + b_i*
    outputs = []
    for t in range(x.shape[1]):
        x_r, x_z, x_n = x_part[t].chunk(3, dim=1)
        # b_hn stays inside the reset product below, so the hidden share is computed with its bias.
        h_r, h_z, h_n = F.linear(a, w_hh, b_hh).chunk(3, dim=1)
        reset = torch.sigmoid(x_r + h_r)  # r = σ(W_ir x<t> + b_ir + W_hr a<t-1> + b_hr)
        update = torch.sigmoid(x_z + h_z)  # z = σ(W_iz x<t> + b_iz + W_hz a<t-1> + b_hz)
        candidate = torch.tanh(x_n + reset * h_n)  # n = tanh(W_in x<t> + b_in + r * (W_hn a<t-1> + b_hn))
        a = (1 - update) * candidate + update * a  # a<t> = (1 - z) * n + z * a<t-1>
        outputs.append(a)
        if trace is not None:
            trace.append(dict(reset=reset, update=update, candidate=candidate, hidden=a))
    return torch.stack(outputs, dim=1), a


def seed_layer(
    x: torch.Tensor, w_gates: torch.Tensor, b_gates: torch.Tensor, w_candidate: torch.Tensor,
    b_candidate: torch.Tensor, a: torch.Tensor, c: torch.Tensor, trace: list | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The tutorial's 4-gate cell over x (batch, seq, in) from state a, c (batch, hidden).

    Returns the outputs (batch, seq, hidden) and the final a, c.
    """
    hidden = a.shape[1]
    # W [a<t-1>, x<t>] = W[:, :hidden] a<t-1> + W[:, hidden:] x<t>: the x half is done for all steps at once.
    w_ga, w_gx = w_gates[:, :hidden].contiguous(), w_gates[:, hidden:]
    w_ca, w_cx = w_candidate[:, :hidden].contiguous(), w_candidate[:, hidden:]
    x_gates = F.linear(x, w_gx, b_gates).unbind(1)  # seq x (batch, 4*hidden)
    x_candidate = F.linear(x, w_cx, b_candidate).unbind(1)  # seq x (batch, hidden)
    outputs = []
    for t in range(x.shape[1]):
        gates = torch.sigmoid(x_gates[t] + F.linear(a, w_ga))  # Γu, Γf, Γo, Γr = σ(W_g [a<t-1>, x<t>] + b_g)
        update, forget, output, relevance = gates.chunk(4, dim=1)
        candidate = torch.tanh(x_candidate[t] + F.linear(relevance * a, w_ca))  # c~<t> = tanh(W_c [Γr * a<t-1>, x<t>] + b_c)
        c = update * candidate + forget * c  # c<t> = Γu * c~<t> + Γf * c<t-1>
        a = output * c  # a<t> = Γo * c<t>
        outputs.append(a)
        if trace is not None:
            trace.append(
                dict(update=update, forget=forget, output=output, relevance=relevance, candidate=candidate, cell=c, hidden=a)
            )
    return torch.stack(outputs, dim=1), a, c


def unroll(
    cell: str, rnn: nn.Module, x: torch.Tensor, state=None, trace: dict | None = None
) -> tuple[torch.Tensor, object]:
    """Run the stacked explicit `cell` with the parameters held by `rnn` over x (batch, seq, features).

    `rnn` is anything with `num_layers`, `hidden_size` and the cell's per-layer parameters: an
    nn.LSTM or nn.GRU (batch_first, with biases) for `lstm`/`gru`, or a `SeedRNN`. `state` and the
    returned state follow nn.LSTM/nn.GRU: (a, c) each (layers, batch, hidden) for `lstm` and
    `seed`, a (layers, batch, hidden) for `gru`; None starts from zeros.

    Returns the last layer's outputs (batch, seq, hidden) and the final state. With `trace` (a
    dict), fills it with one (layers, batch, seq, hidden) tensor per name in TRACED[cell].
    """
    check_cell(cell)
    batch, layers, hidden = x.shape[0], rnn.num_layers, rnn.hidden_size
    if state is None:
        zeros = x.new_zeros(layers, batch, hidden)
        state = zeros if cell == "gru" else (zeros, zeros)
    steps_per_layer = []
    finals = []
    for k in range(layers):
        steps = [] if trace is not None else None
        if cell == "lstm":
            params = [getattr(rnn, f"{name}_l{k}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
            x, a, c = lstm_layer(x, *params, state[0][k], state[1][k], steps)
            finals.append((a, c))
        elif cell == "gru":
            params = [getattr(rnn, f"{name}_l{k}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
            x, a = gru_layer(x, *params, state[k], steps)
            finals.append((a,))
        else:
            params = [
                getattr(rnn, f"{name}_l{k}")
                for name in ("weight_gates", "bias_gates", "weight_candidate", "bias_candidate")
            ]
            x, a, c = seed_layer(x, *params, state[0][k], state[1][k], steps)
            finals.append((a, c))
        steps_per_layer.append(steps)
    if trace is not None:
        for name in TRACED[cell]:
            trace[name] = torch.stack(
                [torch.stack([step[name] for step in steps], dim=1) for steps in steps_per_layer]
            )
    final = tuple(torch.stack(parts) for parts in zip(*finals))
    return x, final[0] if cell == "gru" else final


class ExplicitRNN(nn.Module):
    """Base of the explicit stacked cells: forward(x (batch, seq, in), state) -> (outputs, state)."""

    cell: str

    def __init__(self, input_size: int, hidden_size: int, num_layers: int):
        super().__init__()
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers

    def forward(self, x: torch.Tensor, state=None):
        return unroll(self.cell, self, x, state)

    def add_fused_layout(self, gates: int) -> None:
        """nn.LSTM's / nn.GRU's parameters, names and shapes: `gates` row blocks per matrix, per layer."""
        rows = gates * self.hidden_size
        for k in range(self.num_layers):
            width = self.input_size if k == 0 else self.hidden_size
            self.register_parameter(f"weight_ih_l{k}", nn.Parameter(torch.empty(rows, width)))
            self.register_parameter(f"weight_hh_l{k}", nn.Parameter(torch.empty(rows, self.hidden_size)))
            self.register_parameter(f"bias_ih_l{k}", nn.Parameter(torch.empty(rows)))
            self.register_parameter(f"bias_hh_l{k}", nn.Parameter(torch.empty(rows)))
        self.reset_parameters()

    def reset_parameters(self):
        """nn.LSTM's initialisation: every parameter uniform in ±1/sqrt(hidden)."""
        bound = 1 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)


class ExplicitLSTM(ExplicitRNN):
    """nn.LSTM(input_size, hidden_size, num_layers, batch_first=True) as explicit equations."""

    cell = "lstm"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1):
        super().__init__(input_size, hidden_size, num_layers)
        self.add_fused_layout(gates=4)


class ExplicitGRU(ExplicitRNN):
    """nn.GRU(input_size, hidden_size, num_layers, batch_first=True) as explicit equations."""

    cell = "gru"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1):
        super().__init__(input_size, hidden_size, num_layers)
        self.add_fused_layout(gates=3)


class SeedRNN(ExplicitRNN):
    """The tutorial's 4-gate cell, stacked: the only way to run it (there is no fused kernel)."""

    cell = "seed"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1):
        super().__init__(input_size, hidden_size, num_layers)
        for k in range(num_layers):
            width = hidden_size + (input_size if k == 0 else hidden_size)
            self.register_parameter(f"weight_gates_l{k}", nn.Parameter(torch.empty(4 * hidden_size, width)))
            self.register_parameter(f"bias_gates_l{k}", nn.Parameter(torch.empty(4 * hidden_size)))
            self.register_parameter(f"weight_candidate_l{k}", nn.Parameter(torch.empty(hidden_size, width)))
            self.register_parameter(f"bias_candidate_l{k}", nn.Parameter(torch.empty(hidden_size)))
        self.reset_parameters()
