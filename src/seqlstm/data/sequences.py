"""Labelled samples in memory, in their stored form: what a record loads and the batches take from.
The model's input transform (model/inputs.py) turns them into its input, batch by batch on the device."""

from __future__ import annotations

from typing import NamedTuple

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

    def to(self, device: torch.device) -> "Sequences":
        return Sequences(*(None if t is None else t.to(device) for t in self))
