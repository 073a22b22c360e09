"""Memory a run will need, estimated before anything is allocated, against what the device has: a
size that cannot fit is refused with the figures, instead of an allocator error (or the operating
system's out-of-memory killer) minutes later."""

from __future__ import annotations

import os

import torch

from .errors import ConfigError

# Bytes per trained parameter: the weights, their gradients and Adam's two moments, in float32.
PER_PARAMETER = 4 * 4
# Float32 values a recurrent layer keeps per sample, step and unit for the backward pass: four
# gates, the candidate, the cell and hidden states and their products (measured ~7 on nn.LSTM).
PER_ACTIVATION = 8


def available_bytes(device: torch.device | None = None) -> int | None:
    """Free memory on `device`: CUDA's free memory, else (and for None) the system's available RAM
    (None when unknown)."""
    if device is not None and device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def gib(count: int) -> str:
    return f"{count / 2**30:,.1f} GiB" if count >= 2**28 else f"{count / 2**20:,.0f} MiB"


def model_bytes(features: int, hidden: int, layers: int, classes: int, directions: int = 1, conv: int = 0,
                patch: int = 1, conv_patch: int = 1) -> int:
    """Bytes to train a classifier of this shape (weights, gradients, Adam's moments), by the
    parameter count of 4-gate cells (the largest of the three)."""
    core = sum(4 * hidden * ((features * patch if layer == 0 else hidden) + hidden + 2) for layer in range(layers))
    branch = (conv * features * conv_patch * 7 + 2 * conv * conv * 5 + 2 * conv * conv * 3) if conv else 0
    head = (hidden * directions + conv) * classes
    return PER_PARAMETER * (directions * core + branch + head)


def activation_bytes(batch: int, steps: int, hidden: int, layers: int, directions: int = 1) -> int:
    """Bytes the recurrent core keeps for one batch's backward pass."""
    return 4 * PER_ACTIVATION * batch * steps * hidden * layers * directions


def check_fits(what: str, needed: int, device: torch.device, advice: str) -> None:
    """ConfigError naming `what`, the bytes `needed`, those available and `advice`, when they do not fit."""
    available = available_bytes(device)
    if available is not None and needed > available:
        raise ConfigError(f"{what} needs about {gib(needed)}, more than the {gib(available)} available on {device}; {advice}")
