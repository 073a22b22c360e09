"""Result files written completely under a temporary name, then renamed into place."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Callable

from .errors import OutputError


def temp_path_beside(path: Path) -> Path:
    """A fresh, hidden name in `path`'s folder for a file that will be renamed onto `path`.

    Same folder, so the rename is atomic; the writer creates the file itself, so it gets the
    user's usual permissions (tempfile.mkstemp would make it private, 0600, for good).
    """
    return path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"


def check_writable(path: str | os.PathLike) -> Path:
    """`path` as a Path, once it is known that a file can be created there (its folder is made).

    Called before long work (training, export) so that a bad destination fails at once rather
    than after the work is done. Raises OutputError saying what is in the way.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path}: is a folder; give a file name (for example {path / 'model.ckpt'})")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{path}: cannot create its folder {path.parent}: {e.strerror or e}") from None
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise OutputError(f"{path}: the folder {path.parent} is not writable; choose another place")
    return path


def replace_atomically(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Have `write(tmp)` create the file at a temporary path beside `path`, then move it onto `path`.

    The data is flushed to disk before the rename, so a crash leaves either the old file or the
    complete new one, never a partial file; if `write` raises, the temporary file is removed and
    `path` is untouched. Operating-system failures (disk full, permissions) become OutputError;
    anything else `write` raises passes through.
    """
    path = check_writable(path)
    tmp = temp_path_beside(path)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        raise OutputError(f"{path}: could not be written: {e.strerror or e}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return path
