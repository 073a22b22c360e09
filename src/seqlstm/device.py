"""Turning a --device string into a torch.device that is really present."""

from __future__ import annotations

import torch

from .errors import ConfigError

CHOICES = "auto, cpu, cuda, cuda:N or mps"


def resolve_device(name: str) -> torch.device:
    """The device `name` refers to: "auto" picks CUDA, then MPS, then the CPU.

    Raises ConfigError for an unknown name or a device this machine does not have.
    """
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; use {CHOICES}") from None
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device {name!r} requested but CUDA is not available here (torch {torch.__version__}); "
                "use --device cpu or --device auto"
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ConfigError(f"device {name!r} requested but this machine has {count} CUDA device(s)")
        return device
    if device.type == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError(f"device {name!r} requested but Apple MPS is not available here; use --device cpu")
        return device
    raise ConfigError(f"unsupported device {name!r}; use {CHOICES}")
