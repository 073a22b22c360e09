"""Temporary names for files that are written completely and then renamed into place."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def temp_path_beside(path: Path) -> Path:
    """A fresh, hidden name in `path`'s folder for a file that will be renamed onto `path`.

    Same folder, so the rename is atomic; the caller creates the file itself, so it gets the
    user's usual permissions (tempfile.mkstemp would make it private, 0600, for good).
    """
    return path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
