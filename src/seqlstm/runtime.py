"""What runs a model for predict and serve: PyTorch, ONNX Runtime, or whichever is faster.

Every runner takes the raw samples the model reads — uint8 images (N, H, W), or float sequences
(N, T, F) with their lengths (N,) — and returns float32 logits (N, classes) as a CPU tensor, so
callers never know which one answered. ONNX Runtime runs the file `seqlstm export` writes; for a
checkpoint it is exported once and kept in the cache folder, keyed by the checkpoint's contents.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import time
from pathlib import Path

import numpy as np
import torch

from .config import RUNTIMES
from .errors import ConfigError, ExportError, InputError
from .evaluation import logits_of

OUTPUT_NAME = "logits"
# What exporting a checkpoint to ONNX needs (the export extra): the exporter's two and the runtime.
EXPORT_PACKAGES = ("onnx", "onnxscript", "onnxruntime")
# ONNX Runtime is given at most this many samples per call: its working memory grows with the batch.
ONNX_BATCH_SIZE = 1000


class TorchRunner:
    """The PyTorch model itself, in float32 under inference mode."""

    def __init__(self, model: torch.nn.Module):
        self.model = model

    def logits(self, raw: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return logits_of(self.model, raw, lengths=lengths).cpu()

    def takes(self, lengths: torch.Tensor | None) -> bool:
        return True


class OnnxRunner:
    """An exported ONNX file in ONNX Runtime on the CPU.

    One sample runs in a single-threaded session, batches in one with as many threads as PyTorch
    uses (one per core). At batch 1, a second thread saves 15 % when the OS places the two threads
    well and costs 85 % when it does not (measured on 2 cores: 0.196 or 0.42 ms, varying from
    process to process, against a steady 0.23 ms on one thread); and a server answering several
    requests at once then uses one core per request instead of every core for each.
    """

    def __init__(self, path: str | os.PathLike, max_length: int | None = None):
        self.single = onnx_session(path, threads=1)
        self.session = onnx_session(path)
        self.max_length = max_length  # the longest sequence the file takes (None: an image model)

    def takes(self, lengths: torch.Tensor | None) -> bool:
        """Whether the file takes sequences of these lengths (images: always)."""
        return lengths is None or len(lengths) == 0 or int(lengths.max()) <= self.max_length

    def logits(self, raw: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if lengths is None:  # images: the file takes them scaled to [0, 1], as floats
            x = raw.numpy().astype(np.float32) / 255 if raw.dtype == torch.uint8 else raw.numpy().astype(np.float32)
            feeds = [{"x": x[i : i + ONNX_BATCH_SIZE]} for i in range(0, len(x), ONNX_BATCH_SIZE)]
        else:
            longest = int(lengths.max()) if len(lengths) else 0
            if not self.takes(lengths):
                raise InputError(f"a sequence of {longest:,} steps is longer than the {self.max_length:,} the ONNX "
                                 "file takes; use --runtime torch, or export with a larger --max-length")
            # Padding beyond the longest sequence is never read: the file takes any length up to its maximum.
            x = raw[:, : max(longest, 1)].numpy().astype(np.float32)
            steps = lengths.numpy().astype(np.int64)
            feeds = [{"x": x[i : i + ONNX_BATCH_SIZE], "lengths": steps[i : i + ONNX_BATCH_SIZE]}
                     for i in range(0, len(x), ONNX_BATCH_SIZE)]
        session = self.single if len(raw) == 1 else self.session
        outputs = [session.run([OUTPUT_NAME], feed)[0] for feed in feeds]
        return torch.from_numpy(np.concatenate(outputs)) if outputs else torch.empty(0, self.session.get_outputs()[0].shape[1])


class AutoRunner:
    """Whichever of `runners` answers a batch of this size fastest, measured on the first batch of
    each size class (powers of two) and remembered; every runner gives the same logits to 1e-4.
    Sequences longer than a runner takes go to the others (the first runner takes everything)."""

    def __init__(self, runners: list):
        self.runners = runners
        self.chosen: dict[int, object] = {}  # size class -> runner

    def logits(self, raw: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        able = [runner for runner in self.runners if runner.takes(lengths)]
        if len(raw) == 0 or len(able) == 1:  # nothing to measure, or nothing to choose from
            return able[0].logits(raw, lengths)
        size = len(raw).bit_length()
        if size in self.chosen:
            return self.chosen[size].logits(raw, lengths)
        best, answer = None, None
        for runner in able:
            runner.logits(raw, lengths)  # the first call of a size pays for allocation and warm-up
            start = time.perf_counter()
            logits = runner.logits(raw, lengths)
            took = time.perf_counter() - start
            if best is None or took < best[0]:
                best, answer = (took, runner), logits
        self.chosen[size] = best[1]
        return answer


def onnx_session(path: str | os.PathLike, threads: int | None = None):
    """An ONNX Runtime CPU session for the file at `path`, on `threads` threads (default: as many as
    PyTorch uses); ExportError when it cannot be loaded."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only; its warnings are about graph optimisations
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    try:
        return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own untyped errors for a file it cannot load
        raise ExportError(f"onnxruntime cannot load {path}: {e}") from None


def load_runner(model: torch.nn.Module, checkpoint: str | os.PathLike, runtime: str = "torch"):
    """The runner `runtime` names for `model`, loaded from `checkpoint`.

    "onnxruntime" and "auto" need the export extra; the checkpoint's ONNX file is exported (and
    checked against PyTorch) on first use and kept in the cache folder. "auto" measures per batch
    size; without the export extra, or for a model on a GPU, it is PyTorch. "onnxruntime" needs the
    model on the CPU (ConfigError otherwise).
    """
    if runtime not in RUNTIMES:
        raise ConfigError(f"unknown runtime {runtime!r}; use one of {', '.join(RUNTIMES)}")
    torch_runner = TorchRunner(model)
    on_cpu = next(model.parameters()).device.type == "cpu"
    exportable = all(importlib.util.find_spec(name) is not None for name in EXPORT_PACKAGES)
    if runtime == "torch" or (runtime == "auto" and not (exportable and on_cpu)):
        return torch_runner
    if not on_cpu:
        raise ConfigError("--runtime onnxruntime runs ONNX Runtime on the CPU; use --device cpu (or auto) with it")
    onnx = OnnxRunner(cached_export(checkpoint), model.inputs.steps if not model.reads_images else None)
    return onnx if runtime == "onnxruntime" else AutoRunner([torch_runner, onnx])


def cached_export(checkpoint: str | os.PathLike) -> Path:
    """The ONNX file of `checkpoint` in the cache folder, exported now unless already there."""
    # Imported here: export.py reads test data through this module's runners.
    from . import __version__
    from .data.sources import cache_dir
    from .export import export_onnx

    digest = hashlib.sha256(Path(checkpoint).read_bytes()).hexdigest()[:32]
    path = cache_dir() / "onnx" / f"{digest}-seqlstm{__version__}-torch{torch.__version__}.onnx"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        export_onnx(checkpoint, path)
    return path
