"""A checkpoint as an ONNX file, checked against PyTorch with onnxruntime before it is kept."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .atomic import check_writable, replace_atomically
from .checkpoint import load_checkpoint
from .errors import ExportError

# The largest difference between onnxruntime's and PyTorch's logits that still counts as the
# same model; float32 reordering differences are around 1e-7.
TOLERANCE = 1e-4
INPUT_NAMES = ("x", "lengths")
OUTPUT_NAME = "logits"
# Batch sizes the exported file is checked with: 1, and a larger one, to show the batch axis is dynamic.
CHECK_BATCHES = (1, 37)
REQUIRED = ("onnx", "onnxscript", "onnxruntime")


@dataclass
class ExportResult:
    path: Path
    inputs: dict[str, str]  # input name -> its type and shape, as the summary prints it
    num_classes: int
    max_abs_diff: float

    def summary(self) -> str:
        given = ", ".join(f"{name!r} {kind}" for name, kind in self.inputs.items())
        return (
            f"wrote {self.path}: input {given}, output {OUTPUT_NAME!r} float32 (batch, {self.num_classes}) logits; "
            f"onnxruntime matches PyTorch to a max abs difference of {self.max_abs_diff:.2e} (limit {TOLERANCE:.0e})"
        )


def export_onnx(checkpoint: str | os.PathLike, out: str | os.PathLike) -> ExportResult:
    """Export the model in `checkpoint` to the ONNX file `out`, with a dynamic batch axis.

    The file is the whole model, its input transform included, so it takes the raw input the model
    takes — an image model's pictures (batch, H, W) scaled to [0, 1], read inside the file by rows,
    pixels or permuted pixels as in training; a sequence model's raw features (batch, T, F), padded
    to T steps, and their `lengths` — and returns the logits (batch, classes). It is written to a temporary name, run with onnxruntime on random
    inputs of several batch sizes, compared with the PyTorch model, and renamed to `out` only if
    every logit agrees within TOLERANCE. Raises ExportError when the export packages are missing,
    the export fails or the outputs disagree (then `out` is left as it was).
    """
    missing = [name for name in REQUIRED if importlib.util.find_spec(name) is None]
    if missing:
        raise ExportError(
            f"ONNX export needs the packages {', '.join(REQUIRED)}; missing: {', '.join(missing)}. "
            'Install them with: pip install "seqlstm[export]"'
        )
    model, _ = load_checkpoint(checkpoint, "cpu")
    example = model.inputs.example(2, torch.Generator().manual_seed(0))
    out = check_writable(out, reads=[checkpoint])
    diff = None

    def write_checked(tmp: Path) -> None:
        nonlocal diff
        to_onnx(model, example, tmp)
        diff = max_abs_diff(model, tmp)
        if not diff <= TOLERANCE:
            raise ExportError(
                f"the exported model's logits differ from PyTorch's by up to {diff:.2e}, more than {TOLERANCE:.0e}; "
                f"{out} was not written. Please report this with the checkpoint's settings"
            )

    replace_atomically(out, write_checked, reads=[checkpoint])
    shapes = {name: f"{str(t.dtype).removeprefix('torch.')} (batch, {', '.join(map(str, t.shape[1:]))})".replace(", )", ")")
              for name, t in zip(INPUT_NAMES, example)}
    return ExportResult(out, shapes, model.hparams["num_classes"], diff)


def to_onnx(model: torch.nn.Module, example: tuple[torch.Tensor, ...], path: Path) -> None:
    """Write `model` to `path` as ONNX, the batch axis of its input and output dynamic.

    This uses the torch.export-based exporter (`dynamo=True`), which PyTorch documents as the
    recommended and default path since 2.9; the TorchScript-based one is legacy and warns that it
    is deprecated. It needs onnxscript.
    Only the batch axis is dynamic: a model whose cells loop over time in Python has the number
    of steps fixed when it is traced, so the input keeps the length the model was trained on.
    """
    batch = torch.export.Dim("batch")
    chatter = io.StringIO()
    disabled = logging.root.manager.disable
    try:
        # The exporter and onnxscript print progress lines, and log and warn about graph internals
        # a user cannot act on, through several loggers; all but errors are held back meanwhile.
        logging.disable(logging.WARNING)
        with warnings.catch_warnings(), contextlib.redirect_stdout(chatter):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                model,
                example,
                dynamo=True,
                input_names=list(INPUT_NAMES[: len(example)]),
                output_names=[OUTPUT_NAME],
                dynamic_shapes=tuple({0: batch} for _ in example),  # by position: forward's argument names are its own business
            )
            program.save(path, external_data=False)
    except Exception as e:  # the exporter fails with many exception types, all meaning "not exportable"
        raise ExportError(f"PyTorch could not export this model to ONNX: {type(e).__name__}: {e}") from None
    finally:
        logging.disable(disabled)


def max_abs_diff(model: torch.nn.Module, path: Path) -> float:
    """Largest |onnxruntime - PyTorch| over the logits for random inputs of each CHECK_BATCHES size."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only; its warnings are about graph optimisations
    try:
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own untyped errors for a file it cannot load
        raise ExportError(f"onnxruntime cannot load the exported model: {e}") from None
    generator = torch.Generator().manual_seed(1)
    worst = 0.0
    for batch in CHECK_BATCHES:
        inputs = model.inputs.example(batch, generator)
        with torch.inference_mode():
            expected = model(*inputs).numpy()
        got = session.run([OUTPUT_NAME], {name: t.numpy() for name, t in zip(INPUT_NAMES, inputs)})[0]
        if got.shape != expected.shape:
            raise ExportError(f"the exported model returned shape {got.shape} for batch {batch}, expected {expected.shape}")
        if not (np.isfinite(got).all() and np.isfinite(expected).all()):
            # max() would pass a NaN over: a file answering NaN is no copy of a model.
            raise ExportError(f"the model's logits for batch {batch} hold NaN or infinite values; nothing was written")
        worst = max(worst, float(np.abs(got - expected).max()))
    return worst
