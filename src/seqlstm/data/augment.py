"""Training-time augmentation of image batches, done on whole batches on the device."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def random_shift(images: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Move each image by its own random offset of up to `max_shift` pixels in each direction.

    Args:
        images: (batch, H, W), any dtype, on any device; uncovered pixels become 0 (background).
        max_shift: largest offset in pixels; 0 returns `images` unchanged.
        generator: a CPU generator, so the offsets are reproducible whatever the device.
    Returns:
        (batch, H, W) shifted images on the same device.
    """
    if max_shift == 0:
        return images
    batch, height, width = images.shape
    padded = F.pad(images, (max_shift,) * 4)
    offsets = torch.randint(0, 2 * max_shift + 1, (2, batch), generator=generator).to(images.device)
    rows = (offsets[0, :, None] + torch.arange(height, device=images.device))[:, :, None]
    cols = (offsets[1, :, None] + torch.arange(width, device=images.device))[:, None, :]
    return padded[torch.arange(batch, device=images.device)[:, None, None], rows, cols]
