"""Strict reader and writer for the IDX format of the MNIST family.

An IDX file is: two zero bytes, a dtype code, the number of dimensions, each dimension as a
big-endian uint32, then exactly prod(dims) big-endian items. The reader checks every part of
that, so a truncated or foreign file fails here with its name rather than later as a shape error.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from ..errors import DataError

# dtype code -> big-endian numpy dtype, as in the format's specification.
DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
CODES = {dtype.newbyteorder("="): code for code, dtype in DTYPES.items()}


GZIP_MAGIC = b"\x1f\x8b"


def read_bytes(path: str | os.PathLike, limit: int | None = None) -> bytes:
    """The payload of `path`, uncompressed when it is gzip data.

    Compression is recognised by the gzip magic bytes, not the file name, so a raw IDX file that
    kept its `.gz` name (or the reverse) still reads. `limit`: the most bytes the payload can hold;
    more is a DataError found after reading limit + 1 bytes, so a gzip bomb costs no more memory
    than the real file. Raises DataError for a missing file or a truncated/corrupt gzip stream.
    """
    path = Path(path)
    try:
        with path.open("rb") as f:
            compressed = f.read(2) == GZIP_MAGIC
            f.seek(0)
            stream = gzip.GzipFile(fileobj=f) if compressed else f
            data = stream.read() if limit is None else stream.read(limit + 1)
        if limit is not None and len(data) > limit:
            raise DataError(f"{path}: holds more than the {limit:,} bytes its file has; it is not the file its name says")
        return data
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:  # BadGzipFile is an OSError: first
        raise DataError(
            f"{path}: the gzip stream is truncated or corrupt ({e}); delete the file and "
            "download or copy it again"
        ) from None
    except OSError as e:
        raise DataError(f"{path}: cannot read the file ({e.strerror or e})") from None


def parse_idx(payload: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode an uncompressed IDX payload into an array in native byte order.

    `name` is only used in error messages. Raises DataError naming what is wrong.
    """
    if len(payload) < 4:
        raise DataError(f"{name}: not an IDX file: {len(payload)} bytes is shorter than the 4-byte header")
    zero, code, ndim = struct.unpack(">HBB", payload[:4])
    if zero != 0:
        raise DataError(
            f"{name}: not an IDX file: magic number 0x{payload[:4].hex()} does not start with two zero bytes"
        )
    if code not in DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in DTYPES)
        raise DataError(f"{name}: unknown IDX dtype code 0x{code:02X} (known: {known})")
    if ndim == 0:
        raise DataError(f"{name}: IDX header declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(payload) < header:
        raise DataError(f"{name}: file ends inside the header ({len(payload)} of {header} bytes)")
    dims = struct.unpack(f">{ndim}I", payload[4:header])
    dtype = DTYPES[code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    actual = len(payload) - header
    if actual != expected:
        shape = "x".join(map(str, dims))
        raise DataError(
            f"{name}: header declares {shape} items of {dtype.itemsize} byte(s) = {expected} data bytes, "
            f"but the file holds {actual}; the file is truncated or not what its header says"
        )
    return np.frombuffer(payload, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file, raw or gzip-compressed, into a native-order array."""
    return parse_idx(read_bytes(path), str(path))


def encode_idx(array: np.ndarray) -> bytes:
    """The IDX bytes of `array` (one of the dtypes in DTYPES, at least one dimension)."""
    array = np.asarray(array)
    native = array.dtype.newbyteorder("=")
    if native not in CODES:
        raise ValueError(f"IDX cannot hold dtype {array.dtype}; use one of {sorted(str(d) for d in CODES)}")
    if array.ndim == 0 or array.ndim > 255:
        raise ValueError(f"IDX needs 1 to 255 dimensions, got {array.ndim}")
    code = CODES[native]
    header = struct.pack(f">HBB{array.ndim}I", 0, code, array.ndim, *array.shape)
    return header + array.astype(DTYPES[code], copy=False).tobytes()


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write `array` as an IDX file, gzip-compressed when `path` ends in `.gz`."""
    path = Path(path)
    data = encode_idx(array)
    if path.suffix == ".gz":
        data = gzip.compress(data)
    path.write_bytes(data)
