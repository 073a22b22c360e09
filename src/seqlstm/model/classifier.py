"""The many-to-one classifier: its input transform, a recurrent core, a reading of its outputs, a linear head.

    raw samples (images (batch, H, W), or sequences (batch, T, F)), lengths (batch,)
      -> the input transform (inputs.py): the view, standardisation, padding set to 0
      -> patches: K consecutive steps as one step of K*F features (batch, ceil(T/K), K*F)
      -> recurrent core (forward; with `bidirectional` a second core reads each sequence reversed)
      -> pool over the real steps only (last | mean | max | attention)
         [+ beside it, a convolutional branch over the series in its own, finer patches: LSTM-FCN]
      -> dropout -> linear head -> logits (batch, classes)

Every stage reads only a sequence's real steps, so the zero padding after a sequence (however
long) never changes its answer.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..errors import ConfigError
from .cells import SeedRNN, check_cell
from .inputs import IMAGES, InputTransform

POOLS = ("last", "mean", "max", "attention")


def make_core(cell: str, input_size: int, hidden_size: int, num_layers: int) -> nn.Module:
    """A stacked, batch-first recurrent core of `cell` (fused nn.LSTM/nn.GRU, or the explicit seed cell)."""
    if cell == "lstm":
        return nn.LSTM(input_size, hidden_size, num_layers, batch_first=True)
    if cell == "gru":
        return nn.GRU(input_size, hidden_size, num_layers, batch_first=True)
    return SeedRNN(input_size, hidden_size, num_layers)


class LSTMClassifier(nn.Module):
    """A stacked recurrent core over a sequence, read at its last step (or pooled), then a linear head.

    Args:
        input_size: features per step of the raw input (28 for MNIST read row by row).
        hidden_size: units per layer (and per direction).
        num_layers: stacked layers.
        num_classes: outputs of the linear head.
        cell: "lstm" (fused nn.LSTM), "gru" (fused nn.GRU) or "seed" (the tutorial's 4-gate cell,
            run through its explicit equations in `cells.py`).
        patch: read `patch` consecutive steps as one step of patch * input_size features; a long
            series then takes T / patch recurrent steps (what the rows view does to an image's pixels).
        bidirectional: a second core of the same shape reads every sequence from its own last real
            step back to its first; its outputs are concatenated with the forward core's.
        pool: how the core's outputs become one vector: "last" (each sequence's last real step; the
            reverse core's last step is the sequence's first), "mean" or "max" over the real steps, or
            "attention" (a learned score per step, softmax over the real steps).
        dropout: dropout rate on the pooled vector before the head (training only).
        conv: filters of a convolutional branch (conv-BN-ReLU blocks of conv, 2*conv, conv filters,
            kernels 7, 5, 3, averaged over the real steps) read beside the core, as LSTM-FCN does;
            0: none.
        conv_patch: the patch length the convolutional branch reads the series in (1: every step;
            it sees local shapes the core's coarser patches average away).
        series_norm: standardise each sequence by its own per-feature mean and std over its real
            steps (after the training set's statistics).
        classes: the names of the outputs, persisted with the model (default: "0", "1", ...).
        inputs: what the model reads, as `InputTransform`'s arguments: e.g. dict(kind="images",
            image_shape=(28, 28), view="pixels") or dict(kind="sequences", steps=T). Default: square
            images of input_size x input_size read by rows, as the tutorial's model does (float
            input is taken as already scaled to [0, 1], so such a model also reads any float
            sequences of input_size features as they are).
    """

    def __init__(
        self, input_size: int = 28, hidden_size: int = 128, num_layers: int = 2, num_classes: int = 10,
        cell: str = "lstm", patch: int = 1, bidirectional: bool = False, pool: str = "last", dropout: float = 0.0,
        conv: int = 0, series_norm: bool = False, conv_patch: int = 1, classes: Sequence[str] | None = None,
        inputs: dict | None = None,
    ):
        super().__init__()
        self.cell = check_cell(cell)
        if pool not in POOLS:
            raise ConfigError(f"unknown pool {pool!r}; use one of {', '.join(POOLS)}")
        classes = tuple(str(k) for k in range(num_classes)) if classes is None else tuple(str(c) for c in classes)
        if len(classes) != num_classes:
            raise ConfigError(f"{len(classes)} class names for a model of {num_classes} classes")
        self.classes = classes
        self.inputs = InputTransform(input_size, series_norm=series_norm, **(inputs or {}))
        self.hparams = dict(
            input_size=input_size, hidden_size=hidden_size, num_layers=num_layers, num_classes=num_classes, cell=cell,
            patch=patch, bidirectional=bidirectional, pool=pool, dropout=dropout, conv=conv, series_norm=series_norm,
            conv_patch=conv_patch, classes=list(classes), inputs=self.inputs.args,
        )
        self.conv_patch = conv_patch
        self.patch, self.bidirectional, self.pool, self.series_norm = patch, bidirectional, pool, series_norm
        steps_in = input_size * patch
        # The core keeps the attribute name `lstm` for every cell: checkpoints written before there
        # was a choice of cell hold `lstm.*` weights and must load unchanged.
        self.lstm = make_core(cell, steps_in, hidden_size, num_layers)
        self.lstm_reverse = make_core(cell, steps_in, hidden_size, num_layers) if bidirectional else None
        width = hidden_size * (2 if bidirectional else 1)
        self.attend = nn.Linear(width, 1) if pool == "attention" else None
        self.conv = ConvBranch(input_size * conv_patch, conv) if conv else None
        self.drop = nn.Dropout(dropout) if dropout else None
        self.fc = nn.Linear(width + (conv if conv else 0), num_classes)

    @property
    def plain(self) -> bool:
        """True for the tutorial's shape: one forward core over the standardised input, read at its
        last step, nothing beside it."""
        return (self.patch == 1 and not self.bidirectional and self.pool == "last" and self.conv is None
                and not self.series_norm)

    @property
    def reads_images(self) -> bool:
        return self.inputs.kind == IMAGES

    def forward(self, raw: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (batch, classes) for raw samples: uint8 images (batch, H, W) (float ones scaled to
        [0, 1]), or float sequences (batch, seq, features).

        `lengths` (batch,) int64: sequence i is raw[i, :lengths[i]]; whatever follows is padding and
        is never read. None: every sequence uses all `seq` steps.
        """
        if self.plain:
            # The tutorial's path, unchanged: no masks, so the fused kernel sees exactly its input.
            # No initial state passed: the core then starts from zeros on x's own device and dtype.
            out, _ = self.lstm(self.inputs(raw))
            if lengths is None:
                return self.fc(out[:, -1, :])
            return self.fc(at_last(out, lengths.to(out.device)))
        # Without lengths nothing is padding: the branch's batch statistics then need no mask.
        return self.classify(*self.prepare(raw, lengths), padded=lengths is not None)

    def prepare(self, raw: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw samples through the input transform, padding set to 0, and the lengths (batch,) int64
        (all steps when None): what `classify` reads."""
        return self.inputs.prepare(raw, lengths)

    def classify(self, x: torch.Tensor, lengths: torch.Tensor, padded: bool = True) -> torch.Tensor:
        """Logits (batch, classes) for prepared x (batch, seq, features) and its lengths (batch,);
        `padded` False: every sequence has all `seq` steps."""
        steps, counts = patches(x, lengths, self.patch)
        out, _ = self.lstm(steps)
        real = torch.arange(steps.shape[1], device=x.device)[None, :] < counts[:, None]  # (batch, patches)
        if self.lstm_reverse is not None:
            order = reversal(counts, steps.shape[1])
            back, _ = self.lstm_reverse(take_steps(steps, order))
            if self.pool == "last":
                return self.head(torch.cat([at_last(out, counts), at_last(back, counts)], dim=-1), x, lengths, steps, counts,
                                 padded)
            out = torch.cat([out, take_steps(back, order)], dim=-1)  # each step's two readings side by side
        if self.pool == "last":
            features = at_last(out, counts)
        elif self.pool == "mean":
            features = (out * real.unsqueeze(-1)).sum(1) / counts.unsqueeze(-1).to(out.dtype)
        elif self.pool == "max":
            features = out.masked_fill(~real.unsqueeze(-1), float("-inf")).amax(1)
        else:
            scores = self.attend(out).squeeze(-1).masked_fill(~real, float("-inf"))
            features = (scores.softmax(dim=1).unsqueeze(-1) * out).sum(1)
        return self.head(features, x, lengths, steps, counts, padded)

    def head(self, features: torch.Tensor, x: torch.Tensor, lengths: torch.Tensor, steps: torch.Tensor,
             counts: torch.Tensor, padded: bool = True) -> torch.Tensor:
        """Logits from the pooled core features (batch, width), with the convolutional branch's
        reading of prepared x (batch, seq, features) beside them; `steps` and `counts` are x in the
        core's patches, which the branch reuses when it reads the same ones."""
        if self.conv is not None:
            if self.conv_patch != self.patch:
                steps, counts = patches(x, lengths, self.conv_patch)
            real = torch.arange(steps.shape[1], device=x.device)[None, :] < counts[:, None]
            features = torch.cat([features, self.conv(steps, real, padded)], dim=-1)
        if self.drop is not None:
            features = self.drop(features)
        return self.fc(features)


def patches(x: torch.Tensor, lengths: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """x (batch, seq, features) read `size` steps at a time: (batch, ceil(seq / size), size * features),
    and the lengths in patches (batch,) (a partly filled last patch counts; x's zero padding fills it)."""
    if size == 1:
        return x, lengths
    batch, steps, features = x.shape
    count = -(-steps // size)
    x = nn.functional.pad(x, (0, 0, 0, count * size - steps))
    return x.reshape(batch, count, size * features), torch.div(lengths + size - 1, size, rounding_mode="floor")


class ConvBranch(nn.Module):
    """Three conv-BN-ReLU blocks over the steps (the FCN of Wang et al. 2017, used by LSTM-FCN),
    averaged over the real steps. Padding is zeroed after every block, so what follows a sequence
    reads as the convolution's own zero padding and never changes the answer; in training, the
    batch statistics come from the real steps alone (MaskedBatchNorm)."""

    def __init__(self, channels: int, filters: int):
        super().__init__()
        widths = (channels, filters, 2 * filters, filters)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Conv1d(a, b, k, padding="same", bias=False), MaskedBatchNorm(b), nn.ReLU())
            for a, b, k in zip(widths, widths[1:], (7, 5, 3))
        )

    def forward(self, x: torch.Tensor, real: torch.Tensor, padded: bool = True) -> torch.Tensor:
        """(batch, filters) for x (batch, steps, channels) and real (batch, steps) bool; `padded`
        False says every step is real (the statistics then need no mask)."""
        mask = real.unsqueeze(1).to(x.dtype)  # (batch, 1, steps)
        h = x.transpose(1, 2)
        for conv, norm, relu in self.blocks:
            h = relu(norm(conv(h), mask if padded else None)) * mask
        return h.sum(-1) / mask.sum(-1)


class MaskedBatchNorm(nn.BatchNorm1d):
    """nn.BatchNorm1d whose training statistics come from the real steps only, so padding — however
    much of a batch it fills — never shifts them (the running statistics eval mode uses included).
    Without a mask, and in eval mode, it is nn.BatchNorm1d itself."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (batch, channels, steps); mask (batch, 1, steps), 1 on real steps."""
        if mask is None or not self.training:
            return super().forward(x)
        real = mask.to(torch.float32)
        values = x.float()
        count = real.sum()
        mean = (values * real).sum((0, 2)) / count
        var = ((values - mean[:, None]).square() * real).sum((0, 2)) / count
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
            self.running_mean.lerp_(mean, self.momentum)
            self.running_var.lerp_(var * count / (count - 1).clamp(min=1), self.momentum)
        scale = self.weight * torch.rsqrt(var + self.eps)
        return ((values - mean[:, None]) * scale[:, None] + self.bias[:, None]).to(x.dtype)


def at_last(out: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """out (batch, steps, width) at each sequence's last real step: (batch, width)."""
    last = (lengths - 1).view(-1, 1, 1).expand(-1, 1, out.shape[2])
    return out.gather(1, last).squeeze(1)


def reversal(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """Step indices (batch, steps) that reverse each sequence's real steps and keep its padding after them."""
    t = torch.arange(steps, device=lengths.device)[None, :]
    return torch.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)


def take_steps(x: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """x (batch, steps, width) with its steps taken in `order` (batch, steps)."""
    return x.gather(1, order.unsqueeze(-1).expand(-1, -1, x.shape[2]))


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
