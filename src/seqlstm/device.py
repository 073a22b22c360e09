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


def cpu_has_bf16() -> bool:
    """Whether this CPU has native bf16 matrix instructions (AVX512-BF16 or AMX)."""
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def resolve_precision(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `name` on `device`, or None for plain float32.

    "auto" picks bf16 where it is fast: CUDA GPUs that support it and CPUs with bf16 instructions
    (elsewhere bf16 is emulated and slower than float32). Raises ConfigError where "bf16" is asked
    for and the device cannot run it at all.
    """
    if name == "fp32":
        return None
    if device.type == "cuda":
        # Native bf16 tensor cores start with Ampere (compute capability 8); older GPUs only
        # emulate it, which is slower than float32. Asked of the chosen GPU, not the current one.
        native = torch.cuda.get_device_capability(device)[0] >= 8
        supported = native if name == "auto" else torch.cuda.is_bf16_supported(including_emulation=True)
    elif device.type == "cpu":
        supported = cpu_has_bf16() if name == "auto" else True
    else:
        supported = False
    if name == "auto":
        return torch.bfloat16 if supported else None
    if not supported:
        raise ConfigError(f"bf16 is not supported on device {device}; use --precision fp32 or auto")
    return torch.bfloat16
