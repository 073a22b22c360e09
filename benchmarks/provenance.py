"""Where and when a benchmark's figures were measured: the machine, the versions, the commit (and
whether the working tree had changes) and the UTC date, for every results JSON."""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def git(*args: str) -> str | None:
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def provenance(**extra) -> dict:
    """The facts above as a dict, with `extra` (a benchmark's own: threads, device) added."""
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"processor": platform.processor(), "machine": platform.machine(), "platform": platform.platform(),
            "cpu_count": os.cpu_count(), "python": platform.python_version(), "torch": version("torch"),
            "aeon": version("aeon"), "git_commit": git("rev-parse", "HEAD"),
            "git_dirty": None if status is None else bool(status),
            "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"), **extra}
