"""Labelled samples in memory, in their stored form: what a record loads and the batches take from.
The model's input transform (model/inputs.py) turns them into its input, batch by batch on the device."""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch


class Sequences(NamedTuple):
    """Labelled samples held in memory.

    inputs: uint8 images (N, H, W), or float32 sequences (N, T, F) zero-padded after their length.
    lengths: int64 (N,) real steps of each sequence (1..T), or None when every sample uses all T.
    labels: int64 (N,) class indices.
    """

    inputs: torch.Tensor
    lengths: torch.Tensor | None
    labels: torch.Tensor

    def take(self, indices: torch.Tensor) -> "Sequences":
        """The samples at `indices` (int64 (M,)), in that order."""
        return Sequences(self.inputs[indices], None if self.lengths is None else self.lengths[indices], self.labels[indices])

    def read(self, indices: torch.Tensor, steps: int | None = None) -> "Sequences":
        """The samples at `indices`, their steps cut to `steps` (the padding a batch needs) when given."""
        taken = self.take(indices.to(self.labels.device))
        return taken if steps is None else taken._replace(inputs=taken.inputs[:, :steps])

    def moments(self, arrange: Callable[[torch.Tensor], torch.Tensor], chunk: int = 10_000) -> tuple[int, torch.Tensor, torch.Tensor]:
        """(count of real steps, per-feature sum, per-feature sum of squares) of the samples as
        `arrange` turns them into model input (N, T, F), summed in float64 `chunk` samples at a
        time, so the whole arranged set is never held at once. Padding never counts."""
        count, total, squares = 0, 0, 0
        for start in range(0, len(self.labels), chunk):
            x = arrange(self.inputs[start : start + chunk].cpu()).to(torch.float64)
            if self.lengths is not None:
                x = x[torch.arange(x.shape[1])[None, :] < self.lengths[start : start + chunk, None].cpu()]  # (real steps, F)
            x = x.reshape(-1, x.shape[-1])
            count += len(x)
            total = total + x.sum(dim=0)
            squares = squares + x.square().sum(dim=0)
        return count, total, squares

    def to(self, device: torch.device) -> "Sequences":
        return Sequences(*(None if t is None else t.to(device) for t in self))
