"""`explain`: one sample through a trained model, every gate at every step, and which inputs decided
its answer (integrated gradients), as a figure and numbers."""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from .atomic import check_writable, replace_atomically
from .attribution import Attribution, attribute
from .checkpoint import load_checkpoint
from .data.records import samples_for
from .device import resolve_device
from .errors import ConfigError
from .model import trace_gates
from .model.cells import GATES

log = logging.getLogger(__name__)


@dataclass
class Explanation:
    """One sample's trace. Tensors hold that sample alone: gates (layers, seq, hidden)."""

    cell: str
    split: str
    index: int
    inputs: torch.Tensor  # float32 (seq, features): the sequence the model read, up to its last real step
    image: torch.Tensor | None  # uint8 (H, W) for an image dataset, else None
    label: int
    predicted: int
    classes: tuple[str, ...]
    trace: dict[str, torch.Tensor]  # name -> (layers, seq, hidden); "probabilities" -> (seq, classes)
    # Integrated gradients toward `predicted` (attribution.py): values (1, H, W) for an image, (1, T, F)
    # for a sequence; and the same values in the order the model reads its input, (input steps,
    # features): an image's rows as they are, its pixels one per step for the pixel views. None
    # without Captum.
    attribution: Attribution | None = None
    attribution_read: torch.Tensor | None = None
    patch: int = 1  # input steps per core step
    figure: Path | None = None
    json: Path | None = None

    @property
    def gates(self) -> tuple[str, ...]:
        return GATES[self.cell]

    def gate_means(self) -> dict[str, torch.Tensor]:
        """Each gate's mean over the units: name -> (layers, seq)."""
        return {name: self.trace[name].mean(dim=-1) for name in self.gates}

    def unit_order(self) -> torch.Tensor:
        """(layers, hidden) int64: each layer's units in the order the heatmaps show them (`unit_order`)."""
        return unit_order(self.trace)

    def cell_norm(self) -> torch.Tensor:
        """L2 norm of the memory per step, (layers, seq): the cell state c, or the GRU's hidden state."""
        return self.trace["cell" if "cell" in self.trace else "hidden"].norm(dim=-1)

    def attribution_per_step(self) -> torch.Tensor:
        """(seq,): the attribution of what each core step read, aligned with the gate means (`steps_of`)."""
        return steps_of(self.attribution_read, self.patch)

    def summary(self) -> str:
        confidence = 100 * float(self.trace["probabilities"][-1, self.predicted])
        return (
            f"{self.split} sample {self.index}: label {self.classes[self.label]}, predicted "
            f"{self.classes[self.predicted]} ({confidence:.1f} %), {self.cell} cell"
        )

    def to_dict(self) -> dict:
        """Plain numbers (nested lists, rounded to 6 decimals) for JSON."""
        return {
            "cell": self.cell,
            "split": self.split,
            "index": self.index,
            "label": self.label,
            "predicted": self.predicted,
            "classes": list(self.classes),
            "image": None if self.image is None else self.image.tolist(),
            "inputs": plain(self.inputs),
            "shapes": "inputs: [step][feature]; traces: [layer][step][unit]; probabilities: [step][class]; "
                      "means and norms: [layer][step]; unit_order: [layer][position] -> unit",
            "probabilities": plain(self.trace["probabilities"]),
            "traces": {name: plain(t) for name, t in self.trace.items() if name != "probabilities"},
            "gate_means": {name: plain(t) for name, t in self.gate_means().items()},
            "unit_order": self.unit_order().tolist(),
            "cell_norm": plain(self.cell_norm()),
            "attribution": None if self.attribution is None else attribution_dict(self.attribution, self.attribution_per_step()),
        }


def steps_of(read: torch.Tensor, patch: int) -> torch.Tensor:
    """(core steps,): attributions in the model's reading order, `read` (input steps, features), summed
    over what each core step read: its features, and the `patch` input steps it reads at once."""
    per_input_step = read.sum(dim=-1)
    steps = math.ceil(len(per_input_step) / patch)
    return torch.nn.functional.pad(per_input_step, (0, steps * patch - len(per_input_step))).reshape(steps, patch).sum(dim=1)


def attribution_dict(attribution: Attribution, per_step: torch.Tensor, decimals: int = 6) -> dict:
    """One sample's attributions as plain numbers for JSON: values [row][column] for an image,
    [step][feature] for a sequence, and `per_step` (core steps,)."""
    return {
        "method": "integrated gradients toward the predicted class, from a blank image (sequences: the training mean)",
        "target": int(attribution.target[0]),
        "values": plain(attribution.values[0], decimals),
        "per_step": plain(per_step, decimals),
        "logit_change": float(attribution.gap[0]),
        "completeness_error": float(attribution.error[0]),
    }


def unit_order(trace: dict[str, torch.Tensor]) -> torch.Tensor:
    """(layers, hidden) int64: each layer's units ordered by the step at which their hidden state is
    largest in magnitude, earliest first, and among those the strongest first.

    `trace` maps names to (layers, steps, hidden), as `trace_sample` returns. Drawn in this order,
    units that respond to the first steps sit left of those that respond to the last: a gate map
    shows a diagonal sweep where the model's own unit order shows noise.
    """
    strength = trace["hidden"].abs().double()
    peak, when = strength.max(dim=1)  # (layers, hidden): each unit's largest magnitude and its step
    key = when * (float(peak.max()) + 1) - peak  # by step, then the larger first
    return torch.argsort(key, dim=1, stable=True)


def plain(t: torch.Tensor, decimals: int = 6) -> list:
    """A tensor as nested lists of floats rounded to `decimals`, for JSON."""
    return torch.round(t.double(), decimals=decimals).tolist()


def trace_sample(model: torch.nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """`trace_gates` for one raw sample x (an image (H, W), or a sequence (seq, features) without its
    padding); the tensors come back on the CPU.

    Returns name -> (layers, seq, hidden) for every traced gate and state, and "probabilities"
    -> (seq, classes), the answer after each step; its last row is the model's prediction.
    """
    traced = trace_gates(model, x[None])
    trace = {name: t[:, 0].cpu() for name, t in traced.items() if name != "probabilities"}
    trace["probabilities"] = traced["probabilities"][0].cpu()
    return trace


def attribution_of(model: torch.nn.Module, raw: torch.Tensor, target: int) -> tuple[Attribution | None, torch.Tensor | None]:
    """Integrated gradients of one raw sample (without padding) toward `target`, and its values in
    the model's reading order (input steps, features); (None, None), with a logged note, when
    Captum is missing."""
    try:
        result = attribute(model, raw[None], target=target)
    except ImportError as e:
        log.warning("%s; the figure and JSON leave the attributions out", e)
        return None, None
    # The input transform's arrangement is a reshape and a reordering: it moves attributions as it moves inputs.
    read = model.inputs.arrange(result.values)[0].cpu()
    return Attribution(*(t.cpu() for t in (result.values, result.target, result.gap, result.error))), read


def explain(
    checkpoint: str | os.PathLike,
    index: int,
    split: str = "test",
    out: str | os.PathLike | None = "gates.png",
    json_path: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
    device: str = "cpu",
) -> Explanation:
    """Trace sample `index` of `split` through the model in `checkpoint`.

    Draws the figure to `out` (PNG; None: no figure) and writes the numbers to `json_path` (None:
    no JSON). Raises ConfigError for an index outside the split or a figure name not ending in
    .png, and OutputError (before any work) when `out` or `json_path` cannot be written.
    """
    if out is not None and Path(out).suffix.lower() != ".png":
        raise ConfigError(f"{out}: the figure is written as PNG; give a file name ending in .png")
    for path in (out, json_path):
        if path is not None:
            check_writable(path, reads=[checkpoint])
    model, config = load_checkpoint(checkpoint, resolve_device(device))
    samples = samples_for(config, model, split, data_dir)
    count = len(samples.labels)
    if not 0 <= index < count:
        raise ConfigError(f"index {index} is out of range: the {split} split has {count} samples (0..{count - 1})")
    raw = samples.inputs[index]
    if samples.lengths is not None:
        raw = raw[: int(samples.lengths[index])]  # the padding after a sequence is never read for its answer
    trace = trace_sample(model, raw)
    predicted = int(trace["probabilities"][-1].argmax())
    result = Explanation(
        cell=model.cell,
        split=split,
        index=index,
        inputs=model.inputs.arrange(raw[None].to(next(model.parameters()).device))[0].cpu(),
        image=model.inputs.pictures(raw),
        label=int(samples.labels[index]),
        predicted=predicted,
        classes=model.classes,
        trace=trace,
    )
    result.attribution, result.attribution_read = attribution_of(model, raw, predicted)
    result.patch = model.patch
    if out is not None:
        # Imported here so that training and evaluation never load matplotlib.
        from .plots import gate_figure, save_figure

        result.figure = save_figure(gate_figure(result), out)
    if json_path is not None:
        text = json.dumps(result.to_dict())
        result.json = replace_atomically(json_path, lambda tmp: tmp.write_text(text), reads=[checkpoint])
    return result
