"""Ctrl-C and SIGTERM during training: finish the running step, then stop cleanly."""

from __future__ import annotations

import signal
import threading
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    """While active, SIGINT and SIGTERM are recorded in `received` instead of stopping the process.

    The training loop checks `received` between steps, so a stop never lands halfway through an
    optimizer update. A second signal stops at once (KeyboardInterrupt), for a loop that hangs.
    Outside the main thread, where Python cannot take signals, it does nothing.
    """

    def __init__(self):
        self.received: int | None = None
        self.previous: dict[int, object] = {}

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            self.previous = {s: signal.signal(s, self.handle) for s in SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self.previous.items():
            signal.signal(s, handler)

    def handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None:
            raise KeyboardInterrupt
        self.received = signum
