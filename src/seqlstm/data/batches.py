"""Batches drawn from tensors already in memory: no DataLoader, no per-sample Python."""

from __future__ import annotations

import math

import numpy as np
import torch


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Batches in one pass over n samples; the last one may be smaller."""
    return math.ceil(n / batch_size)


# Variable-length sequences are batched with others of about their length: the shuffled samples are
# taken BUCKET batches at a time, sorted by length, cut into batches, and the epoch's batches shuffled.
# Each batch is then padded only to its own longest (`longest`), so an outlier pads its own batch
# alone. 1 turns the sorting off (random batches); benchmarks/variable_length.py measures both.
BUCKET = 32
# False pads every batch to the file's longest sequence, as before bucketing (the benchmark's reference).
TRIM = True


def shuffled_batches(n: int, batch_size: int, generator: torch.Generator,
                     lengths: torch.Tensor | None = None) -> list[torch.Tensor]:
    """CPU index tensors covering 0..n-1 once, in an order drawn from `generator`.

    `lengths` (n,) on the CPU: when they differ, batches are bucketed by length (see BUCKET). Equal
    lengths, or None, give plain shuffled batches, and draw from `generator` exactly as before.
    """
    order = torch.randperm(n, generator=generator)
    if lengths is None or BUCKET <= 1 or bool((lengths == lengths[0]).all()):
        return list(order.split(batch_size))
    batches = []
    for bucket in order.split(batch_size * BUCKET):
        # A stable sort keeps equal lengths in their shuffled order.
        batches += bucket[lengths[bucket].sort(stable=True).indices].split(batch_size)
    return [batches[k] for k in torch.randperm(len(batches), generator=generator).tolist()]


def longest(lengths: torch.Tensor | None, indices: torch.Tensor) -> int | None:
    """The longest of `lengths` at `indices` (both on the CPU): what a batch needs padding to; None
    without lengths."""
    if lengths is None or not TRIM:
        return None
    return int(lengths[indices].max())


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
