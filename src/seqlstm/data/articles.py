"""A photo of one fashion article -> a 28x28 frame prepared the way Fashion-MNIST's were.

Zalando made Fashion-MNIST from product photos on a plain light background: trimmed the edges
that have the corner pixels' colour, scaled the longest edge to 28 px, sharpened, padded the
shorter edge to 28 px with the article centred, negated, and converted to 8-bit grey. Unlike
MNIST's ink, the article keeps its grey levels (a shirt's print, a shoe's sole), and it fills the
frame. `fashion_style` repeats that on a user's photo, whatever its background's polarity.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from ..errors import InputError
from .digits import FRAME, fit_box

# Zalando trimmed edges within 5 % of the full range of the corner pixels' colour: closer than
# this to the background is background (paper texture, JPEG noise, a faint shadow).
BACKGROUND_TOLERANCE = 0.05


def fashion_style(gray: np.ndarray) -> np.ndarray:
    """uint8 (H, W) photo of one article, on a plain background of either polarity -> uint8 (28, 28),
    the article bright on black, its longer side 28 px and centred.

    Raises InputError (without a file name; the caller adds it) when nothing stands out from the
    background.
    """
    levels = gray.astype(np.float32)
    # The background is what the border shows most; a light one (a product photo) is negated,
    # as Zalando negated theirs, so that the article is bright on black.
    border = np.concatenate([levels[0], levels[-1], levels[:, 0], levels[:, -1]])
    background = float(np.median(border))
    if background > 127:
        levels, background = 255 - levels, 255 - background
    rows, cols = np.nonzero(np.abs(levels - background) > BACKGROUND_TOLERANCE * 255)
    if rows.size == 0:
        raise InputError(
            f"no article found: no pixel differs from the background by more than {BACKGROUND_TOLERANCE:.0%} "
            "of the full range; give a photo of one article on a plain background"
        )
    # The background becomes Fashion-MNIST's black (0); the article keeps its grey levels.
    article = np.clip((levels[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1] - background)
                      / (255 - background), 0, 1)
    return centre_in_frame(sharpen(fit_box(article, FRAME)))


def sharpen(article: np.ndarray) -> np.ndarray:
    """Zalando's sharpening after the downscale: an unsharp mask of radius 1, which restores the
    outlines that averaging 20-50 source pixels into one has softened."""
    image = Image.fromarray(np.rint(article * 255).astype(np.uint8))
    return np.asarray(image.filter(ImageFilter.UnsharpMask(radius=1, percent=100, threshold=0)), dtype=np.uint8)


def centre_in_frame(article: np.ndarray) -> np.ndarray:
    """uint8 (h, w), h and w <= FRAME -> uint8 (FRAME, FRAME) with the article in the middle on black."""
    frame = np.zeros((FRAME, FRAME), dtype=np.uint8)
    height, width = article.shape
    top, left = (FRAME - height) // 2, (FRAME - width) // 2
    frame[top : top + height, left : left + width] = article
    return frame
