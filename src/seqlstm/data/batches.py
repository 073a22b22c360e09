"""Batches drawn from tensors already in memory: no DataLoader, no per-sample Python."""

from __future__ import annotations

import math

import torch


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Batches in one pass over n samples; the last one may be smaller."""
    return math.ceil(n / batch_size)


def shuffled_batches(n: int, batch_size: int, generator: torch.Generator, device: torch.device) -> tuple[torch.Tensor, ...]:
    """Index tensors (on `device`) covering 0..n-1 once, in an order drawn from `generator`."""
    order = torch.randperm(n, generator=generator).to(device)
    return order.split(batch_size)
