"""A checkpoint as an ONNX file, checked against PyTorch with onnxruntime before it is kept; with
int8 weights (ONNX Runtime's dynamic quantization) when its test accuracy allows."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import logging
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import __version__
from .atomic import check_writable, replace_atomically
from .checkpoint import load_checkpoint
from .config import INT8_MAX_LOSS
from .data.records import samples_for
from .errors import ConfigError, ExportError
from .evaluation import EVAL_BATCH_SIZE, summarise
from .runtime import EXPORT_PACKAGES, OUTPUT_NAME, OnnxRunner, onnx_session

# The largest difference between onnxruntime's and PyTorch's logits that still counts as the
# same model; float32 reordering differences are around 1e-7.
TOLERANCE = 1e-4
INPUT_NAMES = ("x", "lengths")
# Batch sizes the exported file is checked with: 1, and a larger one, to show the batch axis is dynamic.
CHECK_BATCHES = (1, 37)
REQUIRED = EXPORT_PACKAGES


@dataclass
class ExportResult:
    path: Path
    inputs: dict[str, str]  # input name -> its type and shape, as the summary prints it
    num_classes: int
    max_abs_diff: float
    lengths: tuple[int, ...] = ()  # the sequence lengths the file was checked at (none for images)
    accuracy: dict[str, float] | None = None  # with int8: "float32" and "int8" test accuracy, in percent

    def summary(self) -> str:
        given = ", ".join(f"{name!r} {kind}" for name, kind in self.inputs.items())
        at = f" at lengths {', '.join(map(str, self.lengths))}" if self.lengths else ""
        line = (
            f"wrote {self.path}: input {given}, output {OUTPUT_NAME!r} float32 (batch, {self.num_classes}) logits; "
            f"onnxruntime matches PyTorch{at} to a max abs difference of {self.max_abs_diff:.2e} (limit {TOLERANCE:.0e})"
        )
        if self.accuracy is None:
            return line
        return line + "\n" + accuracy_line(self.accuracy)


def accuracy_line(accuracy: dict[str, float]) -> str:
    return (f"int8 weights: {accuracy['int8']:.2f} % on the test split, against {accuracy['float32']:.2f} % in float32 "
            f"({accuracy['int8'] - accuracy['float32']:+.2f} points)")


def export_onnx(
    checkpoint: str | os.PathLike, out: str | os.PathLike, max_length: int | None = None, int8: bool = False,
    max_loss: float = INT8_MAX_LOSS, data_dir: str | os.PathLike | None = None,
) -> ExportResult:
    """Export the model in `checkpoint` to the ONNX file `out`, with dynamic batch and sequence axes.

    The file is the whole model, its input transform included, so it takes the raw input the model
    takes — an image model's pictures (batch, H, W) scaled to [0, 1], read inside the file by rows,
    pixels or permuted pixels as in training; a sequence model's raw features (batch, T, F) of any
    T from 1 to `max_length` (default: the longest training sequence), zero-padded after each
    sequence's `lengths` (batch,) — and returns the logits (batch, classes). A sequence model's
    file computes `max_length` steps whatever T is (the steps past T are padding it never reads),
    so export with the longest length you need, not more.

    It is written to a temporary name, run with onnxruntime on random inputs of several batch sizes
    (and sequence lengths up to `max_length`), compared with the PyTorch model, and renamed to
    `out` only if every logit agrees within TOLERANCE. With `int8`, the checked file's weights are
    then quantized to int8 (ONNX Runtime's dynamic quantization: activations quantized per call),
    both files are evaluated on the checkpoint's test split (`data_dir` as for evaluate), and the
    int8 one is kept only if it loses at most `max_loss` points of accuracy.
    Raises ExportError when the export packages are missing, the export fails, the outputs
    disagree or int8 loses too much (then `out` is left as it was); ConfigError for a bad
    `max_length` or `max_loss`.
    """
    missing = [name for name in REQUIRED if importlib.util.find_spec(name) is None]
    if missing:
        raise ExportError(
            f"ONNX export needs the packages {', '.join(REQUIRED)}; missing: {', '.join(missing)}. "
            'Install them with: pip install "seqlstm[export]"'
        )
    if not (isinstance(max_loss, (int, float)) and np.isfinite(max_loss) and max_loss >= 0):
        raise ConfigError(f"--int8-max-loss must be a number of points >= 0, got {max_loss}")
    model, config = load_checkpoint(checkpoint, "cpu")
    model.eval()
    reads_sequences = not model.reads_images
    if max_length is not None and not reads_sequences:
        raise ConfigError(f"--max-length is for models that read sequences; this one reads {model.inputs.steps}-step images")
    max_length = model.inputs.steps if max_length is None else max_length
    if not (isinstance(max_length, int) and max_length >= 1):
        raise ConfigError(f"--max-length must be a whole number of steps >= 1, got {max_length}")
    lengths = check_lengths(model.inputs.steps, max_length) if reads_sequences else ()
    out = check_writable(out, reads=[checkpoint])
    test = samples_for(config, model, "test", data_dir) if int8 else None
    if test is not None and test.lengths is not None and int(test.lengths.max()) > max_length:
        raise ConfigError(f"the test split holds sequences of up to {int(test.lengths.max()):,} steps, more than "
                          f"--max-length {max_length:,}; export with --max-length {int(test.lengths.max())} to measure int8 on it")
    generator = torch.Generator().manual_seed(0)
    example = model.inputs.example(2, generator)
    if reads_sequences:
        # The example must lie inside the dynamic axis, and be longer than 1 step, a size
        # torch.export takes as fixed (a file taking 1 step only keeps a fixed axis).
        steps = min(max(2, model.inputs.steps), max_length)
        example = (torch.randn(2, steps, model.inputs.features, generator=generator), torch.tensor([steps, 1]))
    exported = Window(model, max_length) if reads_sequences else model
    diff, accuracy = None, None

    def write_checked(tmp: Path) -> None:
        nonlocal diff, accuracy
        with tempfile.TemporaryDirectory() as folder:
            plain = Path(folder) / "float32.onnx" if int8 else tmp
            to_onnx(exported, example, plain, dynamic_steps=max_length if reads_sequences and max_length > 1 else None)
            diff = max_abs_diff(model, plain, lengths)
            if not diff <= TOLERANCE:
                raise ExportError(
                    f"the exported model's logits differ from PyTorch's by up to {diff:.2e}, more than {TOLERANCE:.0e}; "
                    f"{out} was not written. Please report this with the checkpoint's settings"
                )
            if int8:
                quantize_int8(plain, tmp)
                accuracy = {kind: onnx_accuracy(OnnxRunner(path, max_length), test)
                            for kind, path in (("float32", plain), ("int8", tmp))}
                if accuracy["float32"] - accuracy["int8"] > max_loss:
                    raise ExportError(f"{accuracy_line(accuracy)}: more than the {max_loss:g} points "
                                      f"--int8-max-loss allows; {out} was not written. Export without --int8, or allow more")
            write_metadata(tmp, model, max_length if reads_sequences else None, int8)

    replace_atomically(out, write_checked, reads=[checkpoint])
    steps = f"1-{max_length} steps, " if reads_sequences else ""
    shapes = {"x": f"float32 (batch, {steps}{', '.join(map(str, example[0].shape[2 if reads_sequences else 1:]))})"}
    if reads_sequences:
        shapes["lengths"] = "int64 (batch)"
    return ExportResult(out, shapes, model.hparams["num_classes"], diff, lengths, accuracy)


class Window(nn.Module):
    """A sequence model taking any length up to `max_length`: the input is zero-padded to
    `max_length` steps inside the graph, so every cell and shape exports with a fixed number of
    recurrent steps (the seed cell's loop is unrolled) while the file's sequence axis stays dynamic.
    The padding is never read (the model reads each sequence's real steps only)."""

    def __init__(self, model: nn.Module, max_length: int):
        super().__init__()
        self.model, self.max_length = model, max_length

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        # Zeros concatenated, not a pad: a pad by a negative amount would crop a longer input and
        # answer wrongly, while zeros of a negative length make the runtime refuse it.
        padding = x.new_zeros(x.shape[0], self.max_length - x.shape[1], x.shape[2])
        return self.model(torch.cat([x, padding], dim=1), lengths)


def check_lengths(trained: int, max_length: int) -> tuple[int, ...]:
    """The sequence lengths an export is checked at: one step, a few between, the training length
    and the longest the file takes."""
    return tuple(sorted({1, max(1, trained // 3), min(trained, max_length), max_length}))


def to_onnx(model: torch.nn.Module, example: tuple[torch.Tensor, ...], path: Path, dynamic_steps: int | None = None) -> None:
    """Write `model` to `path` as ONNX, the batch axis of its inputs and output dynamic, and with
    `dynamic_steps` the sequence axis of `x` too, from 1 to that many steps.

    This uses the torch.export-based exporter (`dynamo=True`), which PyTorch documents as the
    recommended and default path since 2.9; the TorchScript-based one is legacy and warns that it
    is deprecated. It needs onnxscript.
    """
    batch = torch.export.Dim("batch")
    shapes = [{0: batch} for _ in example]
    if dynamic_steps is not None:
        shapes[0][1] = torch.export.Dim("steps", min=1, max=dynamic_steps)
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
                dynamic_shapes=tuple(shapes),  # by position: forward's argument names are its own business
            )
            program.save(path, external_data=False)
    except Exception as e:  # the exporter fails with many exception types, all meaning "not exportable"
        raise ExportError(f"PyTorch could not export this model to ONNX: {type(e).__name__}: {e}") from None
    finally:
        logging.disable(disabled)


def max_abs_diff(model: torch.nn.Module, path: Path, lengths: tuple[int, ...] = ()) -> float:
    """Largest |onnxruntime - PyTorch| over the logits for random inputs of each CHECK_BATCHES size
    (for a sequence model, at each of `lengths` steps, each sequence padded after a random length)."""
    session = onnx_session(path)
    generator = torch.Generator().manual_seed(1)
    worst = 0.0
    for batch in CHECK_BATCHES:
        for steps in lengths or (None,):
            inputs = model.inputs.example(batch, generator)
            if steps is not None:
                inputs = (torch.randn(batch, steps, model.inputs.features, generator=generator),
                          torch.randint(1, steps + 1, (batch,), generator=generator))
            with torch.inference_mode():
                expected = model(*inputs).numpy()
            got = session.run([OUTPUT_NAME], {name: t.numpy() for name, t in zip(INPUT_NAMES, inputs)})[0]
            at = f"batch {batch}" + (f" of {steps} steps" if steps is not None else "")
            if got.shape != expected.shape:
                raise ExportError(f"the exported model returned shape {got.shape} for {at}, expected {expected.shape}")
            if not (np.isfinite(got).all() and np.isfinite(expected).all()):
                # max() would pass a NaN over: a file answering NaN is no copy of a model.
                raise ExportError(f"the model's logits for {at} hold NaN or infinite values; nothing was written")
            worst = max(worst, float(np.abs(got - expected).max()))
    return worst


def quantize_int8(source: Path, target: Path) -> None:
    """Write `source`'s model to `target` with int8 weights (ONNX Runtime's dynamic quantization:
    weights per tensor, activations quantized as each call runs; LSTM, MatMul and Gemm nodes)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    disabled = logging.root.manager.disable
    try:
        logging.disable(logging.WARNING)  # it advises a pre-processing pass meant for convolutional image models
        quantize_dynamic(source, target, weight_type=QuantType.QInt8)
    finally:
        logging.disable(disabled)


def onnx_accuracy(runner: OnnxRunner, test) -> float:
    """The accuracy, in percent, of `runner` on the samples `test` (records.Sequences, or a pack's
    Packed), taken EVAL_BATCH_SIZE at a time."""
    parts = range(0, len(test.labels), EVAL_BATCH_SIZE)
    logits = [runner.logits(test.inputs[i : i + EVAL_BATCH_SIZE], None if test.lengths is None else test.lengths[i : i + EVAL_BATCH_SIZE])
              for i in parts]
    return summarise(torch.cat(logits), test.labels, "test").accuracy


def write_metadata(path: Path, model: torch.nn.Module, max_length: int | None, int8: bool) -> None:
    """Record in the file's metadata what a program running it needs: the class names in output
    order, the input's form, and what wrote it."""
    import onnx

    proto = onnx.load(path)
    facts = {
        "classes": json.dumps(list(model.classes)),
        "input": model.inputs.kind,
        "max_length": str(max_length) if max_length is not None else "",
        "weights": "int8" if int8 else "float32",
        "producer": f"seqlstm {__version__}",
    }
    for key, value in facts.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, path)
