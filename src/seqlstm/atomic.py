"""Result files written completely under a temporary name, then renamed into place."""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Callable

from .errors import OutputError


def temp_path_beside(path: Path) -> Path:
    """A fresh, hidden name in `path`'s folder for a file that will be renamed onto `path`.

    Same folder, so the rename is atomic; the writer creates the file itself, so it gets the
    user's usual permissions (tempfile.mkstemp would make it private, 0600, for good).
    """
    return path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"


def check_writable(path: str | os.PathLike, reads: Iterable[str | os.PathLike | None] = ()) -> Path:
    """`path` as a Path, once it is known that a file can be created there (its folder is made).

    Called before long work (training, export) so that a bad destination fails at once rather
    than after the work is done. Refuses, with an OutputError saying what is in the way: a folder;
    anything that exists and is not a regular file (a device, a pipe, a socket), which a rename
    would replace; and any of `reads`, the files the same command reads, which it would destroy.
    A symbolic link is followed: the file it points to is written, the link stays.
    """
    path = Path(path)
    target = Path(os.path.realpath(path))
    if target.is_dir():
        raise OutputError(f"{path}: is a folder; give a file name (for example {path / 'model.ckpt'})")
    if target.exists() and not target.is_file():
        raise OutputError(f"{path}: is not a regular file (a device, pipe or socket); give the path of a file to write")
    for source in reads:
        if source is not None and target.exists() and Path(source).exists() and os.path.samefile(target, source):
            raise OutputError(
                f"{path}: is {source}, which this command reads; writing there would destroy it: choose another name"
            )
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{path}: cannot create its folder {target.parent}: {e.strerror or e}") from None
    if not os.access(target.parent, os.W_OK | os.X_OK):
        raise OutputError(f"{path}: the folder {target.parent} is not writable; choose another place")
    return path


def replace_atomically(path: str | os.PathLike, write: Callable[[Path], None],
                       reads: Iterable[str | os.PathLike | None] = ()) -> Path:
    """Have `write(tmp)` create the file at a temporary path beside `path`, then move it onto `path`.

    The data is flushed to disk before the rename, so a crash leaves either the old file or the
    complete new one, never a partial file; if `write` raises, the temporary file is removed and
    `path` is untouched. `path` is checked as `check_writable` checks it (`reads`: the command's
    inputs). Operating-system failures (disk full, permissions) become OutputError; anything else
    `write` raises passes through.
    """
    path = check_writable(path, reads)
    target = Path(os.path.realpath(path))
    tmp = temp_path_beside(target)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except OSError as e:
        raise OutputError(f"{path}: could not be written: {e.strerror or e}{space_left(target)}") from None
    except RuntimeError as e:
        # torch.save reports a failed write (a full disk, a file-size limit) as a RuntimeError of
        # its zip writer, without the operating system's reason.
        if "PytorchStreamWriter" not in str(e) and "inline_container" not in str(e):
            raise
        raise OutputError(f"{path}: could not be written: the write failed{space_left(target)}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return path


def space_left(path: Path) -> str:
    """"; no space left on device" when `path`'s file system is (nearly) full, else ""."""
    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        return ""
    return f"; no space left on device ({free:,} bytes free on {path.parent})" if free < 1024 * 1024 else ""
