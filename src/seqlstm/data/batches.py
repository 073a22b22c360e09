"""Batches drawn from tensors already in memory: no DataLoader, no per-sample Python."""

from __future__ import annotations

import math

import numpy as np
import torch


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Batches in one pass over n samples; the last one may be smaller."""
    return math.ceil(n / batch_size)


# With --bucket, variable-length sequences are batched with others of about their length: the
# shuffled samples are taken BUCKET batches at a time, sorted by length, cut into batches, and the
# epoch's batches shuffled. Faster, but it cost accuracy on one of the two problems measured
# (benchmarks/variable_length.py, docs/data.md), so it is asked for, not the default.
BUCKET = 32
# Every batch is padded only to its own longest sequence (`longest`). False pads every batch to the
# file's longest, as seqlstm did before: the reference benchmarks/variable_length.py measures against.
TRIM = True


def shuffled_batches(n: int, batch_size: int, generator: torch.Generator,
                     lengths: torch.Tensor | None = None) -> list[torch.Tensor]:
    """CPU index tensors covering 0..n-1 once, in an order drawn from `generator`.

    `lengths` (n,) on the CPU, to bucket by (see BUCKET): when they differ, batches are bucketed by
    length. Equal lengths, or None, give plain shuffled batches, drawn from `generator` exactly as
    without lengths.
    """
    order = torch.randperm(n, generator=generator)
    if lengths is None or bool((lengths == lengths[0]).all()):
        return list(order.split(batch_size))
    batches = []
    for bucket in order.split(batch_size * BUCKET):
        # A stable sort keeps equal lengths in their shuffled order.
        batches += bucket[lengths[bucket].sort(stable=True).indices].split(batch_size)
    return [batches[k] for k in torch.randperm(len(batches), generator=generator).tolist()]


# A batch is padded to its longest sequence rounded up to a multiple of this many steps: each new
# shape costs the CPU kernels a new plan, and mildly varying lengths made many shapes cost more
# than the padding they saved (benchmarks/variable_length.py).
ROUND = 64


def longest(lengths: torch.Tensor | None, indices: torch.Tensor) -> int | None:
    """The steps a batch at `indices` is padded to: its longest of `lengths` (both on the CPU),
    rounded up to a multiple of ROUND but never past the longest of all; None without lengths."""
    if lengths is None or not TRIM:
        return None
    return min(-(-int(lengths[indices].max()) // ROUND) * ROUND, int(lengths.max()))


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
