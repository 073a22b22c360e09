"""A user's file (an image Pillow reads, or a `.npy` array) as one 8-bit grayscale picture.

Every way a file can be unusable becomes an InputError that names the file, what is wrong and
what to do; nothing else about the file is interpreted here (polarity, size, centring are
`data.digits`' job).
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from numpy.lib import format as npformat
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import InputError

# The decompression-bomb guard: a picture is refused before its pixels are decoded when its
# header claims more than this many pixels (50 MP, above any phone camera's default photo, and
# about 200 MB decoded as 8-bit RGBA). Pillow's own, larger limit is left as the library set it.
MAX_PIXELS = 50_000_000

# Digits are shrunk to 20 px in the end, so decoding more than this many pixels along the
# longer side only costs time; JPEG can even skip the work while decoding (`draft`).
WORKING_SIDE = 1024

NPY_DTYPES = "uint8 (0-255) or float (0.0-1.0)"


def read_grayscale(path: str | os.PathLike) -> np.ndarray:
    """The picture in `path` as uint8 (H, W), 0 = black, 255 = white, as drawn (no inversion).

    Images: the first frame of an animation; transparency composited on white; 16-bit scaled to
    8 bits; colour to luminance; EXIF rotation applied; shrunk to at most WORKING_SIDE pixels
    along the longer side. `.npy`: one 2-D array, uint8 0-255 or float 0.0-1.0.
    Raises InputError for a missing, unreadable, truncated, oversized or wrongly shaped file.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if path.suffix.lower() == ".npy":
        return read_npy(path)
    return read_image(path, path)


def decode_image(data: bytes, name: str, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """An image file's bytes (PNG, JPEG, ... anything Pillow reads) as uint8 (H, W), exactly as
    `read_grayscale` reads the same file. Raises InputError starting with `name`, also for a picture
    of more than `max_pixels` pixels."""
    return read_image(io.BytesIO(data), name, max_pixels)


def read_image(source: Path | BinaryIO, path: Path | str, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """The image in `source` (a file, or a file's bytes) as uint8 (H, W); errors begin with `path`."""
    try:
        with warnings.catch_warnings():
            # Pillow warns about sizes between its two limits while opening; MAX_PIXELS is checked below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(source) as image:
                check_size(path, image.size, max_pixels)
                image.draft("L", (WORKING_SIDE, WORKING_SIDE))  # JPEG: decode at a reduced scale
                image.seek(0)  # an animated GIF/PNG/TIFF: its first frame
                image.load()
                return to_gray(ImageOps.exif_transpose(image))
    except UnidentifiedImageError:
        raise InputError(
            f"{path}: not an image Pillow can read; give a PNG, JPEG, BMP, GIF or TIFF image, or a .npy array"
        ) from None
    except Image.DecompressionBombError:
        raise InputError(size_message(path, None, max_pixels)) from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        # Pillow reports damaged data with any of these, depending on the format and where it breaks.
        raise InputError(f"{path}: the image is truncated or damaged and cannot be decoded ({e}); export it again") from None


def check_size(path: Path | str, size: tuple[int, int], max_pixels: int = MAX_PIXELS) -> None:
    if size[0] * size[1] > max_pixels:
        raise InputError(size_message(path, size, max_pixels))


def size_message(path: Path | str, size: tuple[int, int] | None, max_pixels: int) -> str:
    claimed = f"{size[0]}x{size[1]} = {size[0] * size[1]:,} pixels" if size else "too many pixels"
    return (
        f"{path}: image is too large ({claimed}; the limit is {max_pixels:,} pixels, a guard against "
        "decompression bombs); scale it down or crop it around the digit"
    )


def to_gray(image: Image.Image) -> np.ndarray:
    """Any Pillow mode -> uint8 (H, W) luminance, at most WORKING_SIDE along the longer side."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16-bit grayscale: Pillow's convert("L") would clip everything above 255 to white.
        values = np.asarray(image, dtype=np.float64)
        image = Image.fromarray(np.clip(np.rint(values / 257.0), 0, 255).astype(np.uint8))
    elif image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        # Transparent pixels are paper, not ink: lay the picture on white before dropping alpha.
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
    if image.mode != "L":
        image = image.convert("L")
    if max(image.size) > WORKING_SIDE:
        image.thumbnail((WORKING_SIDE, WORKING_SIDE), Image.Resampling.BOX)
    return np.array(image, dtype=np.uint8)


def read_npy(path: Path) -> np.ndarray:
    # The header is read and checked first, so a wrong shape, a pickle or a truncated file is
    # reported before any data is loaded (or unpickled: that never happens).
    with path.open("rb") as f:
        try:
            version = npformat.read_magic(f)
            # Versions 1.0 and 2.0 are what numpy.save writes for numeric arrays (3.0 only adds
            # UTF-8 field names of structured dtypes, which are no image anyway).
            read_header = {(1, 0): npformat.read_array_header_1_0, (2, 0): npformat.read_array_header_2_0}.get(version)
            if read_header is None:
                raise ValueError(f"unsupported .npy format version {version[0]}.{version[1]}")
            shape, _, dtype = read_header(f)
        except (ValueError, EOFError, SyntaxError) as e:
            raise InputError(f"{path}: not a .npy array, or its header is damaged ({e}); save it with numpy.save") from None
        data_start = f.tell()
    if dtype.hasobject:
        raise InputError(f"{path}: the array holds Python objects, which seqlstm never unpickles; save a numeric array")
    if len(shape) != 2 or 0 in shape:
        raise InputError(
            f"{path}: array has shape {shape}; expected one grayscale image of shape (H, W), e.g. (28, 28); "
            "save one image per file"
        )
    check_size(path, shape[::-1])
    if dtype != np.uint8 and dtype.kind != "f":
        raise InputError(f"{path}: array has dtype {dtype}; expected {NPY_DTYPES}")
    expected = data_start + shape[0] * shape[1] * dtype.itemsize
    actual = path.stat().st_size
    if actual < expected:
        raise InputError(f"{path}: the .npy file is truncated ({actual} bytes, its header promises {expected}); save it again")
    array = np.load(path, allow_pickle=False)
    if dtype == np.uint8:
        return array
    values = array.astype(np.float64)
    if not np.isfinite(values).all() or values.min() < 0.0 or values.max() > 1.0:
        raise InputError(f"{path}: float array has values outside 0.0-1.0 (or NaN/inf); expected {NPY_DTYPES}")
    return np.rint(values * 255).astype(np.uint8)
