"""Images become sequences: each row is one step, its pixels the step's features."""

from __future__ import annotations

import torch


def image_rows(images: torch.Tensor) -> torch.Tensor:
    """uint8 images (batch, H, W) -> float32 sequences (batch, seq=H, features=W) scaled to [0, 1]."""
    return images.to(torch.float32).div_(255)
