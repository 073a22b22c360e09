"""Files that are written completely and then renamed into place, never left half-written."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import BinaryIO, Callable


def temp_path_beside(path: Path) -> Path:
    """A fresh, hidden name in `path`'s folder for a file that will be renamed onto `path`.

    Same folder, so the rename is atomic; the caller creates the file itself, so it gets the
    user's usual permissions (tempfile.mkstemp would make it private, 0600, for good).
    """
    return path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"


def write_atomically(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """Have `write` fill a temporary file beside `path`, flush it to disk and rename it onto `path`.

    Creates `path`'s folder if needed. A crash or an exception in `write` leaves either the old
    file or the complete new one, never a partial file, and no temporary file. Returns `path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_beside(path)
    try:
        with open(tmp, "xb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
