"""Request bodies of `seqlstm serve`'s API turned into what a model reads: a picture (a PNG or a
JSON array of gray levels) or a sequence (a JSON array, a .ts case or CSV line, a .npy array),
with an InputError saying what is wrong with one that is not."""

from __future__ import annotations

import io
import json

import numpy as np

from ..data.digits import FRAME
from ..data.userfiles import decode_image
from ..errors import InputError

# A PNG compresses blank areas about a thousandfold, so 1 MiB can claim a gigapixel: pictures
# whose header promises more than this (a 2000x2000 image) are refused before decoding.
MAX_PIXELS = 4_000_000
# The longest sequence a request may hold, in steps: far beyond any training length seen, and a
# bound on an answer without traces (those with traces stop at twice the training length: app.py).
MAX_SEQUENCE_STEPS = 20_000
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SEND = f"send a PNG image (Content-Type: image/png) or a {FRAME}x{FRAME} array of gray levels 0-255 (application/json)"
SEND_SEQUENCE = ("send a sequence: a JSON array of steps (application/json: [v, ...] for one feature, [[f1, f2, ...], ...] "
                 "for several), a line of comma-separated values with the features separated by ':' as in a .ts case "
                 "(text/csv or text/plain), or a .npy array of shape (steps,) or (steps, features) (application/octet-stream)")


def decode_sequence(body: bytes, media: str) -> object:
    """The body decoded as its media type says: an array (.npy), a JSON value, or a line of text;
    InputError when it cannot be."""
    if media == "application/octet-stream":
        try:
            return np.load(io.BytesIO(body), allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise InputError(f"the body is not a .npy array ({e}); {SEND_SEQUENCE}") from None
    if media == "application/json":
        return decode_json(body, SEND_SEQUENCE)
    try:
        return body.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise InputError(f"the body is not UTF-8 text; {SEND_SEQUENCE}") from None


def checked_sequence(decoded: object, media: str, features: int) -> np.ndarray:
    """float32 (steps, features) from a decoded body; InputError saying what is wrong with it."""
    where = {"application/octet-stream": "the .npy array", "application/json": "the JSON array"}.get(media, "the line")
    values = ts_case(decoded, features) if isinstance(decoded, str) else decoded
    try:
        array = np.asarray(values, dtype=np.float64)
    except (ValueError, TypeError):
        raise InputError(f"{where} is not a rectangular array of numbers: every step needs {features} values") from None
    if array.ndim == 1 and features == 1:
        array = array[:, None]
    if array.ndim != 2 or array.shape[1] != features or not 1 <= len(array) <= MAX_SEQUENCE_STEPS:
        raise InputError(f"{where} has shape {array.shape}; the model reads 1 to {MAX_SEQUENCE_STEPS:,} steps of "
                         f"{features} feature{'s' if features > 1 else ''}: (steps, {features})")
    if not np.isfinite(array).all():
        raise InputError(f"{where} holds NaN or infinite values; fill or cut the missing steps first")
    return array.astype(np.float32)


def ts_case(text: str, features: int) -> list:
    """One sequence from a line: comma-separated values, one group per feature separated by ':' (a
    .ts case; a trailing class label is dropped). Returns [step][feature]."""
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) > 1:
        raise InputError(f"the text holds {len(lines)} lines; send one sequence on one line (values separated by "
                         "commas, the features by ':')")
    # Spreadsheets end rows with empty cells: trailing commas carry no value.
    groups = [group.strip().rstrip(",") for group in lines[0].split(":")] if lines else []
    if len(groups) == features + 1:  # a .ts case ends with its class label
        groups = groups[:-1]
    if len(groups) != features:
        raise InputError(f"the line holds {len(groups)} group{'s' if len(groups) != 1 else ''} of values separated by "
                         f"':'; the model reads {features} feature{'s' if features > 1 else ''}, one group each")
    try:
        columns = [[float(value) for value in group.split(",")] for group in groups]
    except ValueError as e:
        raise InputError(f"the line holds a value that is not a number ({e})") from None
    if len({len(column) for column in columns}) > 1:
        raise InputError(f"the features have different lengths: {', '.join(str(len(c)) for c in columns)} values")
    return [list(step) for step in zip(*columns)]


def decode_png(body: bytes) -> np.ndarray:
    if not body.startswith(PNG_SIGNATURE):
        raise InputError(f"the body is not a PNG image (it does not begin with the PNG signature); {SEND}")
    return decode_image(body, "the PNG image", MAX_PIXELS)


def decode_json(body: bytes, send: str) -> object:
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise InputError(f"the body is not valid JSON ({e}); {send}") from None


def json_image(value: object) -> np.ndarray:
    """A decoded JSON value as a uint8 (28, 28) image, else InputError saying where it is not one."""
    if not isinstance(value, list):
        raise InputError(f"expected a {FRAME}x{FRAME} array (a list of {FRAME} rows), got {json_kind(value)}")
    if len(value) != FRAME:
        raise InputError(f"expected {FRAME} rows of {FRAME} numbers, got {len(value)} rows")
    for i, row in enumerate(value):
        if not isinstance(row, list) or len(row) != FRAME:
            got = f"{len(row)} entries" if isinstance(row, list) else json_kind(row)
            raise InputError(f"expected {FRAME} rows of {FRAME} numbers; row {i} holds {got}")
        for j, level in enumerate(row):
            # bool is an int to Python but not a gray level; NaN fails both comparisons.
            if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 <= level <= 255:
                raise InputError(
                    f"row {i}, column {j} holds {json.dumps(level)[:40]}; every entry must be a gray level from 0 to 255"
                )
    return np.rint(np.array(value, dtype=np.float64)).astype(np.uint8)


def json_kind(value: object) -> str:
    kinds = {dict: "an object", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return kinds.get(type(value), "null")
