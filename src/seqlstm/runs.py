"""The run directory: config.json, metrics.jsonl, last.ckpt, best.ckpt and plots/ of one training run."""

from __future__ import annotations

import json
import os
import platform
from datetime import datetime, timezone
from pathlib import Path

import torch

from .atomic import replace_atomically, space_left
from .config import TrainConfig
from .errors import OutputError, RunError

CONFIG = "config.json"
METRICS = "metrics.jsonl"
LAST = "last.ckpt"
BEST = "best.ckpt"
PLOTS = "plots"
TRAINING_PLOT = "training.png"
# The fields of metrics.jsonl that are numbers (plot draws them).
NUMBERS = ("epoch", "loss", "mean_loss", "lr", "accuracy", "samples_per_s")


def default_run_dir(config: TrainConfig, name: str, now: datetime | None = None) -> Path:
    """A new, empty `runs/<UTC timestamp>-<name>-<cell>` (<name>: what the data's record calls it: a
    dataset's name, a file's stem), with `-2`, `-3`, ... if runs start in the same second. The folder
    is created here, so two runs starting at once can never claim the same one."""
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    base = Path("runs") / f"{stamp}-{name}-{config.cell}"
    try:
        base.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunError(f"cannot create {base.parent}: {e.strerror or e}; give --run-dir a folder you can write") from None
    path, n = base, 1
    while True:
        try:
            path.mkdir()
            return path
        except FileExistsError:
            n += 1
            path = base.with_name(f"{base.name}-{n}")
        except OSError as e:
            raise RunError(f"cannot create {path}: {e.strerror or e}; give --run-dir a folder you can write") from None


def start_run_dir(path: Path) -> Path:
    """Create the run directory `path` for a new run; RunError if it already holds one, or cannot be made.

    A folder whose run never wrote a checkpoint (it was killed before its first one) holds nothing
    to continue: the new run starts over in it. Temporary files that killed runs left behind are removed.
    """
    if (path / LAST).exists():
        taken = [name for name in (CONFIG, METRICS, LAST) if (path / name).exists()]
        raise RunError(
            f"run directory {path} already holds a run ({', '.join(taken)}); continue it with "
            f"`seqlstm train --resume {path / LAST}` or choose another --run-dir"
        )
    if path.exists() and not path.is_dir():
        raise RunError(f"--run-dir {path}: is a file; give a folder for the run (it is created if needed)")
    held = [name for name in (CONFIG, METRICS) if (path / name).exists()]
    if held and not is_run_record(path / CONFIG):
        raise RunError(
            f"--run-dir {path}: holds {', '.join(held)} that no seqlstm run wrote; choose another folder for the run"
        )
    try:
        (path / PLOTS).mkdir(parents=True, exist_ok=True)
        for stale in (path / CONFIG, path / METRICS):
            stale.unlink(missing_ok=True)
    except OSError as e:
        raise RunError(f"--run-dir {path}: cannot create the run directory there: {e.strerror or e}; choose another folder") from None
    remove_leftovers(path)
    return path


def is_run_record(path: Path) -> bool:
    """Whether `path` is a config.json that `write_run_config` wrote (so a new run may replace it)."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and "seqlstm" in record and isinstance(record.get("config"), dict)


def remove_leftovers(path: Path) -> None:
    """Remove the temporary files (atomic.temp_path_beside's) that processes no longer alive left in `path`."""
    for tmp in path.glob(".*.tmp"):
        parts = tmp.name.split(".")
        pid = int(parts[-3]) if len(parts) >= 4 and parts[-3].isdigit() else None
        if pid is not None and not alive(pid):
            tmp.unlink(missing_ok=True)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_run_config(path: Path, config: TrainConfig, device: torch.device, precision: torch.dtype | None) -> Path:
    """Write config.json: the resolved config, the versions of seqlstm, PyTorch and Python, and the device."""
    from . import __version__

    record = {
        "config": config.to_dict(),
        "seqlstm": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
        "precision": "bf16" if precision is torch.bfloat16 else "fp32",
        "threads": torch.get_num_threads(),
        "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    return replace_atomically(path / CONFIG, lambda tmp: tmp.write_text(json.dumps(record, indent=2) + "\n"))


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """The records of `path`/metrics.jsonl, in order.

    A last line cut short (the process was killed while writing it) is skipped; any other line
    that is not a JSON object is a RunError naming the line.
    """
    file = Path(path) / METRICS
    if not file.is_file():
        raise RunError(f"{path}: no {METRICS} here; give a run directory written by `seqlstm train`")
    lines = file.read_text().splitlines()
    records = []
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):
                break
            raise RunError(f"{file}, line {number}: not a JSON object; the metrics file is damaged") from None
        if not isinstance(record, dict) or not isinstance(record.get("step"), int):
            raise RunError(f"{file}, line {number}: a metrics record needs an integer 'step'")
        for key in NUMBERS:
            value = record.get(key)
            if key in record and (isinstance(value, bool) or not isinstance(value, (int, float)) or value != value):
                raise RunError(f"{file}, line {number}: {key!r} is {json.dumps(value)[:40]}; it must be a number")
        if "split" in record and not isinstance(record["split"], str):
            raise RunError(f"{file}, line {number}: 'split' must be a name such as \"validation\"")
        if "split" not in record and not all(key in record for key in ("loss", "lr")):
            raise RunError(f"{file}, line {number}: a step's record needs 'loss' and 'lr'")
        if "split" in record and "accuracy" not in record:
            raise RunError(f"{file}, line {number}: an evaluation's record needs 'accuracy'")
        records.append(record)
    return records


class MetricsLog:
    """Appends one JSON object per line to a run's metrics.jsonl, flushed as it goes."""

    def __init__(self, run_dir: Path, resume_step: int | None = None):
        """Open `run_dir`/metrics.jsonl; when resuming at `resume_step`, first drop what came after it.

        Records written after the checkpoint being resumed from (a run killed between checkpoints)
        would otherwise appear twice: the resumed run logs those steps again.
        """
        self.path = run_dir / METRICS
        if resume_step is not None and self.path.exists():
            kept = [r for r in read_metrics(run_dir) if belongs_before(r, resume_step)]
            replace_atomically(self.path, lambda tmp: tmp.write_text("".join(json.dumps(r) + "\n" for r in kept)))
        self.file = open(self.path, "a", encoding="utf-8")

    def write(self, record: dict) -> None:
        try:
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()
        except OSError as e:
            raise OutputError(f"{self.path}: could not be written: {e.strerror or e}{space_left(self.path)}") from None

    def close(self) -> None:
        try:
            self.file.close()
        except OSError:
            pass  # a write that failed already said why


def belongs_before(record: dict, step: int) -> bool:
    """Whether `record` was logged before a checkpoint taken after `step`.

    Everything a step logs (its loss line, a validation) comes before that step's checkpoint; only
    the final test evaluation, logged after the last checkpoint, is redone on resume.
    """
    return record["step"] < step or (record["step"] == step and record.get("split") != "test")


def plot_run(run_dir: str | os.PathLike) -> Path:
    """Draw `run_dir`/plots/training.png from its metrics.jsonl and return the path."""
    # Imported here so that training without plots and the CLI's start-up never load matplotlib.
    from .plots import save_figure, training_figure

    run_dir = Path(run_dir)
    return save_figure(training_figure(read_metrics(run_dir)), run_dir / PLOTS / TRAINING_PLOT)
