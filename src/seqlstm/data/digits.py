"""A picture of one handwritten character -> a 28x28 frame prepared the way MNIST's were.

MNIST took NIST's black-on-white scans, fitted each character's bounding box into 20x20 pixels
keeping its aspect ratio (anti-aliasing made the grey levels), and placed that in a 28x28 frame
so that the centre of mass of the ink fell on the frame's centre; ink is bright (255) on 0.
`mnist_style` repeats that on a user's photo or scan, after turning its ink bright and its paper
black.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from ..errors import InputError

FRAME = 28  # side of the frame the model reads
BOX = 20  # the longer side of the ink's bounding box once scaled
# Ink must stand out from the paper by at least this fraction of the full 0-255 range; below it
# the picture is blank (or a photo of bare paper) and any prediction would be noise.
MIN_CONTRAST = 0.15
# Between the paper's level (0) and the ink's (1): at or below NOISE_FLOOR is paper (shading,
# texture, JPEG ringing), at or above INK_LEVEL full-strength ink, a linear ramp between them.
NOISE_FLOOR = 0.25
INK_LEVEL = 0.75
# A 3x3 box blur takes an isolated speck (dust, sensor noise) below NOISE_FLOOR, so it cannot
# stretch the bounding box, and smooths paper grain; it would also fade strokes 1 px wide, so
# only pictures at least this large, whose strokes are several pixels thick, get it.
DESPECKLE_MIN_SIDE = 100


def mnist_style(gray: np.ndarray) -> np.ndarray:
    """uint8 (H, W) picture, either polarity -> uint8 (28, 28), bright ink centred on black.

    Raises InputError (without a file name; the caller adds it) when no ink stands out.
    """
    ink = ink_strength(gray)
    rows, cols = np.nonzero(ink)
    if rows.size == 0:
        raise InputError("no ink found: the picture is blank or its strokes are too faint to tell from the paper")
    ink = ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    return centre_in_frame(fit_box(ink))


def ink_strength(gray: np.ndarray) -> np.ndarray:
    """float32 (H, W): 0 where there is paper, up to 1 where there is ink, whatever the polarity."""
    if min(gray.shape) >= DESPECKLE_MIN_SIDE:
        gray = np.asarray(Image.fromarray(gray).filter(ImageFilter.BoxBlur(1)))
    # Paper covers most of a picture of one character, so the median pixel is paper. Dark paper
    # (MNIST itself, a white-on-black drawing) keeps its values; light paper is inverted.
    counts = np.bincount(gray.ravel(), minlength=256)
    paper = quantile(counts, 0.5)
    if paper > 127:
        gray = 255 - gray
        counts = counts[::-1]
        paper = 255 - paper
    # The ink's level: nearly the brightest pixel, ignoring the few brightest (hot pixels, glare).
    strongest = quantile(counts, 0.995) if gray.size >= 400 else int(gray.max())
    contrast = (strongest - paper) / 255
    if contrast < MIN_CONTRAST:
        raise InputError(
            f"no ink found: the picture is blank, or its ink differs from the paper by only "
            f"{contrast:.0%} of the full range (at least {MIN_CONTRAST:.0%} is needed)"
        )
    relative = (gray.astype(np.float32) - paper) / (strongest - paper)
    return np.clip((relative - NOISE_FLOOR) / (INK_LEVEL - NOISE_FLOOR), 0, 1)


def quantile(counts: np.ndarray, q: float) -> int:
    """The smallest value with at least a fraction `q` of the pixels at or below it, from a histogram."""
    return int(np.searchsorted(np.cumsum(counts), q * counts.sum()))


def fit_box(ink: np.ndarray, side: int = BOX) -> np.ndarray:
    """float32 (h, w) cropped ink in [0, 1] -> float32 with the longer side `side` px, aspect kept, anti-aliased."""
    height, width = ink.shape
    scale = side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    # Lanczos averages over the source pixels each output pixel covers when shrinking (the
    # anti-aliasing) and interpolates smoothly when enlarging a small drawing; its slight
    # overshoot at edges is clipped away.
    scaled = Image.fromarray(np.ascontiguousarray(ink, dtype=np.float32)).resize(size, Image.Resampling.LANCZOS)
    return np.clip(np.asarray(scaled, dtype=np.float32), 0, 1)


def centre_in_frame(ink: np.ndarray) -> np.ndarray:
    """float32 (h, w), h and w <= BOX -> uint8 (28, 28) with the ink's centre of mass at the centre."""
    frame = np.zeros((FRAME, FRAME), dtype=np.float32)
    height, width = ink.shape
    total = float(ink.sum())
    if total <= 0:
        raise InputError("no ink found: the strokes vanish when the picture is scaled to MNIST's size")
    # MNIST's centres of mass sit on pixel (14, 14), not between pixels 13 and 14: over its
    # test set they average 13.99 (rows) and 14.00 (columns) in pixel-index coordinates.
    centre = FRAME // 2
    top = round(centre - float((ink.sum(axis=1) * np.arange(height)).sum()) / total)
    left = round(centre - float((ink.sum(axis=0) * np.arange(width)).sum()) / total)
    # A very lopsided character could be pushed partly out of the frame; keeping all of it
    # matters more than the last pixel of centring.
    top = min(max(top, 0), FRAME - height)
    left = min(max(left, 0), FRAME - width)
    frame[top : top + height, left : left + width] = ink
    return np.rint(frame * 255).astype(np.uint8)
