"""A progress bar for training: a `train` on_step hook and a log hook that prints above the bar."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from tqdm import tqdm

from .train import StepInfo

# The bar's loss is read from the device (a synchronisation) at most this often, never every step.
REFRESH_S = 0.5
# Weight of the old value in the bar's smoothed loss and samples/s.
SMOOTHING = 0.7


class ProgressBar:
    """Step, epoch, smoothed loss, samples/s and ETA on `stream` (stderr), when `enabled`.

    Use `log` as train's log hook and `on_step` as its on_step hook; `log` prints the tutorial's
    lines on stdout either way, above the bar when there is one.
    """

    def __init__(self, enabled: bool, stream: TextIO | None = None):
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.bar: tqdm | None = None
        self.epoch = 0
        self.loss: float | None = None
        self.samples_per_s: float | None = None
        self.samples = 0
        self.since = time.perf_counter()

    def log(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line, file=sys.stdout)
        else:
            print(line, flush=True)

    def on_step(self, info: StepInfo) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            self.bar = tqdm(total=info.total_steps, initial=info.step - 1, unit="step", file=self.stream, dynamic_ncols=True)
        if info.epoch != self.epoch:
            self.epoch = info.epoch
            self.bar.set_description_str(f"epoch {info.epoch}/{info.epochs}", refresh=False)
        self.samples += info.samples
        now = time.perf_counter()
        if now - self.since >= REFRESH_S or info.step == info.total_steps:
            self.loss = smooth(self.loss, info.loss.item())
            self.samples_per_s = smooth(self.samples_per_s, self.samples / (now - self.since))
            self.samples, self.since = 0, now
            self.bar.set_postfix_str(f"loss {self.loss:.4f}, {self.samples_per_s:,.0f} samples/s", refresh=False)
        self.bar.update(1)
        if info.step == info.total_steps:
            self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self) -> "ProgressBar":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def smooth(old: float | None, new: float) -> float:
    return new if old is None else SMOOTHING * old + (1 - SMOOTHING) * new
