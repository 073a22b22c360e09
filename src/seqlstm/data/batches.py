"""Batches drawn from tensors already in memory: no DataLoader, no per-sample Python."""

from __future__ import annotations

import math

import numpy as np
import torch


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Batches in one pass over n samples; the last one may be smaller."""
    return math.ceil(n / batch_size)


def shuffled_batches(n: int, batch_size: int, generator: torch.Generator, device: torch.device) -> tuple[torch.Tensor, ...]:
    """Index tensors (on `device`) covering 0..n-1 once, in an order drawn from `generator`."""
    order = torch.randperm(n, generator=generator).to(device)
    return order.split(batch_size)


# The validation images are the same whatever --seed says, so runs with different seeds are
# compared on the same held-out images.
VALIDATION_SEED = 1_000_003


def hold_out(n: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split sample indices 0..n-1 into (kept, held_out), `size` held out, drawn with a fixed seed.

    Both index tensors are ascending, so the kept samples stay in their original order.
    """
    order = torch.randperm(n, generator=torch.Generator().manual_seed(VALIDATION_SEED))
    return order[size:].sort().values, order[:size].sort().values


def stratified_hold_out(labels: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Like `hold_out`, with every class of `labels` (int64 (n,)) in its share on both sides: about
    `size` held out. A user's classes may be few and unequal, where a plain draw can miss one."""
    held = torch.from_numpy(stratified_test_rows(labels.numpy(), size / len(labels), VALIDATION_SEED))
    return torch.nonzero(~held).squeeze(1), torch.nonzero(held).squeeze(1)


def stratified_test_rows(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A bool mask (N,) choosing round(fraction * n) samples of every class (n of them) for testing,
    drawn with `seed`: each class keeps its share in both parts, and at least one sample in training
    (a class the model never saw could not be tested)."""
    generator = torch.Generator().manual_seed(seed)
    mask = np.zeros(len(labels), dtype=bool)
    for value in np.unique(labels):
        rows = np.flatnonzero(labels == value)
        count = min(round(fraction * len(rows)), len(rows) - 1)
        chosen = rows[torch.randperm(len(rows), generator=generator).numpy()[:count]]
        mask[chosen] = True
    return mask
