"""Matplotlib figures, drawn headless (no pyplot, no display), saved as PNG.

The gate picture of `explain`; the training curves of a run directory; the confusion matrix and
the worst misclassified images of `evaluate --plots`.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from matplotlib.colors import PowerNorm
from matplotlib.figure import Figure

from .atomic import replace_atomically

if TYPE_CHECKING:
    from .evaluation import Evaluation
    from .explanation import Explanation

# The smoothed loss line is an exponential moving average (as TensorBoard draws it) over about
# this share of the logged steps: long enough to see the trend through batch-to-batch noise,
# short enough not to lag behind it.
LOSS_SMOOTHING_SHARE = 0.05
# The misclassified grid: the most confidently wrong images, MISCLASSIFIED_COLUMNS per row.
MISCLASSIFIED_SHOWN = 25
MISCLASSIFIED_COLUMNS = 5

# How each traced quantity is drawn: colormap and value range. Gates are sigmoids in (0, 1);
# candidate and LSTM/GRU hidden states are tanh-bounded in (-1, 1); the cell state (and the seed
# cell's hidden state a = Γo * c) is unbounded, so its range comes from the data, centred on 0.
STYLE = {
    "gate": dict(cmap="viridis", vmin=0.0, vmax=1.0),
    "candidate": dict(cmap="RdBu_r", vmin=-1.0, vmax=1.0),
    "signed": dict(cmap="RdBu_r"),
}
# Panel titles in the tutorial's notation, with PyTorch's own letter where the cell is PyTorch's.
TITLES = {
    "lstm": {
        "update": "update Γu (nn.LSTM i)",
        "forget": "forget Γf (f)",
        "output": "output Γo (o)",
        "candidate": "candidate c~ (g)",
        "cell": "cell c",
        "hidden": "hidden a = Γo·tanh(c)",
    },
    "gru": {
        "reset": "reset r",
        "update": "update z (keeps old a)",
        "candidate": "candidate n",
        "hidden": "hidden a = (1-z)·n + z·a",
    },
    "seed": {
        "update": "update Γu",
        "forget": "forget Γf",
        "output": "output Γo",
        "relevance": "relevance Γr",
        "candidate": "candidate c~",
        "cell": "cell c",
        "hidden": "hidden a = Γo·c",
    },
}
GATE_COLOURS = {"update": "C0", "forget": "C1", "output": "C2", "relevance": "C3", "reset": "C3"}


def style_of(name: str, values: np.ndarray, cell: str) -> dict:
    if name not in ("candidate", "cell", "hidden"):
        return STYLE["gate"]
    if name == "candidate" or (name == "hidden" and cell != "seed"):
        return STYLE["candidate"]
    # The 99th percentile, not the maximum: a few large units would otherwise wash out all the rest.
    limit = float(np.percentile(np.abs(values), 99)) or 1.0
    return dict(STYLE["signed"], vmin=-limit, vmax=limit)


def gate_figure(explanation: "Explanation") -> Figure:
    """The whole story of one sample in one figure.

    Top: the input (the image read by rows, a one-value sequence's trace, or the sequence's
    features; step t is row t) beside the class probabilities after each step.
    Middle: one heatmap per traced quantity and layer, steps down (aligned with the image rows)
    and units across, the same unit in the same column of every panel of a layer; the units are
    ordered by when they act (`Explanation.unit_order`), which shows the structure an arbitrary
    order hides.
    Bottom: per layer, each gate's mean over the units and the norm of the memory, per step.
    """
    e = explanation
    names = [n for n in e.trace if n != "probabilities"]
    layers, steps, _ = e.trace[names[0]].shape
    probabilities = e.trace["probabilities"].numpy()

    fig = Figure(figsize=(2.3 * len(names) + 1, 3.0 + 2.6 * layers + 2.6), layout="constrained")
    correct = e.label == e.predicted
    fig.suptitle(
        f"{e.cell} cell — {e.split} sample {e.index}: true label {e.classes[e.label]}, "
        f"predicted {e.classes[e.predicted]} ({100 * probabilities[-1, e.predicted]:.1f} %)",
        fontsize=15, fontweight="bold", color="darkgreen" if correct else "darkred",
    )
    top, middle, bottom = fig.subfigures(3, 1, height_ratios=[3.0, 2.6 * layers, 2.6])

    draw_input_and_answer(top, e, probabilities)
    draw_heatmaps(middle, e, names, layers, steps)
    draw_means(bottom, e, layers, steps)
    return fig


def step_label(inputs: int, steps: int) -> str:
    """The input panel's axis: input steps, or the core's steps when the model reads patches of them."""
    return "step" if inputs == steps else f"core step (patches of {math.ceil(inputs / steps)} steps)"


def draw_input_and_answer(sub, e: "Explanation", probabilities: np.ndarray) -> None:
    steps = probabilities.shape[0]
    if e.attribution is None:
        image_ax, prob_ax, line_ax = sub.subplots(1, 3, width_ratios=[1, 1.2, 3])
    else:
        image_ax, prob_ax, line_ax, attribution_ax = sub.subplots(
            1, 4, width_ratios=[1, 1.2, 2.4, 1.3 if e.image is not None else 3])
        draw_attribution(sub, attribution_ax, e)
    rows = e.image is not None and tuple(e.image.shape) == tuple(e.inputs.shape)
    if rows:
        image_ax.imshow(e.image.numpy(), cmap="gray_r", extent=(0.5, e.image.shape[1] + 0.5, steps + 0.5, 0.5))
        image_ax.set_title("input: row t is step t")
        image_ax.set_ylabel("step (image row)")
        image_ax.set_xlabel("feature (pixel column)")
    elif e.inputs.shape[1] == 1:
        # One value per step (the pixel views, a univariate series): its trace, steps down as in
        # every other panel, reads better than a one-column heatmap.
        # A model reading patches takes several input steps per core step: each value is drawn
        # inside the core step that read it.
        values = e.inputs[:, 0].numpy()
        image_ax.plot(values, 0.5 + (np.arange(len(values)) + 0.5) * steps / len(values), color="tab:purple", linewidth=0.8)
        image_ax.set_ylim(steps + 0.5, 0.5)
        image_ax.set_title("input: value at step t")
        image_ax.set_ylabel(step_label(len(values), steps))
        image_ax.set_xlabel("value")
    else:
        # The user's multivariate sequences: what the model read, one step per row.
        features = e.inputs.shape[1]
        shown_input = image_ax.imshow(e.inputs.numpy(), cmap="viridis", aspect="auto", interpolation="nearest",
                                      extent=(-0.5, features - 0.5, steps + 0.5, 0.5))
        image_ax.set_title("input: row t is step t")
        image_ax.set_ylabel(step_label(len(e.inputs), steps))
        image_ax.set_xlabel("feature")
        sub.colorbar(shown_input, ax=image_ax, shrink=0.8)

    shown = prob_ax.imshow(
        probabilities, cmap="Blues", vmin=0, vmax=1, aspect="auto",
        extent=(-0.5, len(e.classes) - 0.5, steps + 0.5, 0.5),
    )
    class_ticks(prob_ax, "x", e.classes)
    prob_ax.set_title("P(class) after each step")
    prob_ax.set_xlabel("class")
    prob_ax.set_ylabel("step")
    sub.colorbar(shown, ax=prob_ax, shrink=0.8)

    x = np.arange(1, steps + 1)
    # The true and the predicted class always, then the strongest contenders seen at any step.
    contenders = [int(k) for k in np.argsort(probabilities.max(axis=0))[::-1]]
    shown_classes = list(dict.fromkeys([e.label, e.predicted] + contenders))[:4]
    for k in shown_classes:
        if k == e.label:
            role = "true, predicted" if k == e.predicted else "true"
            style = dict(color="darkgreen", linewidth=2.5, label=f"{e.classes[k]} ({role})")
        elif k == e.predicted:
            style = dict(color="darkred", linewidth=2.5, label=f"{e.classes[k]} (predicted)")
        else:
            style = dict(linewidth=1.2, linestyle="--", label=e.classes[k])
        line_ax.plot(x, probabilities[:, k], **style)
    line_ax.set_ylim(-0.02, 1.02)
    line_ax.set_xlim(1, steps)
    line_ax.set_xlabel("step (image rows read so far)" if rows else "steps read so far")
    line_ax.set_ylabel("probability")
    line_ax.set_title("the answer forming, row by row" if rows else "the answer forming, step by step")
    line_ax.legend(loc="upper left", fontsize=9)
    line_ax.grid(alpha=0.3)


# Features drawn in the attribution panel of a sequence: those with the most attribution, at most this many.
SHOWN_FEATURES = 8


def draw_attribution(sub, ax, e: "Explanation") -> None:
    """Integrated gradients toward the prediction: a map over the image, or each feature of a
    sequence as its line over a band coloured by each step's attribution (red for, blue against)."""
    values = e.attribution.values[0].numpy()
    limit = float(np.abs(values).max()) or 1.0
    style = dict(cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
    title = f"what decided {e.classes[e.predicted]!r}:\nintegrated gradients (red for, blue against)"
    if e.image is not None:
        shown = ax.imshow(values, **style)
        ax.set_xlabel("pixel column")
        ax.set_ylabel("image row")
    else:
        inputs = e.inputs.numpy()
        strongest = np.argsort(np.abs(values).sum(axis=0))[::-1][:SHOWN_FEATURES]
        features = sorted(int(k) for k in strongest)
        steps = len(values)
        shown = ax.imshow(values[:, features].T, aspect="auto", alpha=0.75,
                          extent=(0.5, steps + 0.5, len(features) - 0.5, -0.5), **style)
        for row, feature in enumerate(features):
            line = inputs[:, feature]
            span = float(line.max() - line.min()) or 1.0
            # Each feature's line fills its own band: row - 0.4 (its highest value) to row + 0.4.
            ax.plot(np.arange(1, steps + 1), row + 0.4 - 0.8 * (line - line.min()) / span, color="black", linewidth=1)
        ax.set_yticks(range(len(features)), [f"feature {k}" for k in features])
        ax.set_xlabel("input step")
        if len(features) < values.shape[1]:
            title += f"\n{len(features)} of {values.shape[1]} features, those with the most"
    ax.set_title(title, fontsize=10)
    sub.colorbar(shown, ax=ax, shrink=0.8)


def draw_heatmaps(sub, e: "Explanation", names: list[str], layers: int, steps: int) -> None:
    axes = sub.subplots(layers, len(names), sharex=True, sharey=True, squeeze=False)
    order = e.unit_order().numpy()
    for column, name in enumerate(names):
        values = e.trace[name].numpy()
        style = style_of(name, values, e.cell)
        for layer in range(layers):
            ax = axes[layer, column]
            image = ax.imshow(
                values[layer][:, order[layer]], aspect="auto", interpolation="nearest",
                extent=(-0.5, values.shape[2] - 0.5, steps + 0.5, 0.5), **style,
            )
            if layer == 0:
                ax.set_title(TITLES[e.cell][name], fontsize=12)
            if column == 0:
                ax.set_ylabel(f"layer {layer + 1}\nstep", fontsize=11)
            if layer == layers - 1:
                ax.set_xlabel("unit")
        sub.colorbar(image, ax=axes[:, column], location="bottom", shrink=0.85, aspect=25)
    sub.suptitle("units left to right by the step at which their hidden state is strongest", fontsize=11)


def draw_means(sub, e: "Explanation", layers: int, steps: int) -> None:
    x = np.arange(1, steps + 1)
    means = {name: t.numpy() for name, t in e.gate_means().items()}
    norm = e.cell_norm().numpy()
    memory = "‖c‖ (cell state)" if "cell" in e.trace else "‖a‖ (hidden state)"
    axes = sub.subplots(1, layers + (e.attribution is not None), squeeze=False)[0]
    if e.attribution is not None:
        per_step = e.attribution_per_step().numpy()
        ax = axes[-1]
        ax.bar(x, per_step, width=1.0, color=np.where(per_step >= 0, "tab:red", "tab:blue"))
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xlim(0.5, steps + 0.5)
        ax.set_xlabel("step")
        ax.set_ylabel("attribution")
        ax.set_title(f"input attribution per step: {float(per_step.sum()):+.2f} in all\n"
                     f"(the logit's change {float(e.attribution.gap[0]):+.2f}, "
                     f"completeness error {float(e.attribution.error[0]):+.1e})", fontsize=10)
        ax.grid(alpha=0.3)
        axes = axes[:-1]
    for layer, ax in enumerate(axes):
        for name, values in means.items():
            ax.plot(x, values[layer], color=GATE_COLOURS[name], label=f"mean {TITLES[e.cell][name].split(' (')[0]}")
        ax.set_ylim(0, 1)
        ax.set_xlim(1, steps)
        ax.set_xlabel("step")
        ax.set_ylabel("gate mean over units")
        ax.set_title(f"layer {layer + 1}: gate means and memory norm per step")
        ax.grid(alpha=0.3)
        twin = ax.twinx()
        twin.plot(x, norm[layer], color="black", linestyle=":", linewidth=2, label=memory)
        twin.set_ylabel(memory)
        twin.set_ylim(bottom=0)
    # One legend for all layers, outside the plots, so it never hides a curve.
    lines = axes[0].get_lines() + twin.get_lines()
    sub.legend(lines, [line.get_label() for line in lines], loc="outside lower center", ncol=len(lines), fontsize=10)


def save_figure(figure: Figure, path: str | os.PathLike, dpi: int = 110) -> Path:
    """Write `figure` to `path` as a PNG, atomically (a temporary file renamed into place)."""
    return replace_atomically(path, lambda tmp: figure.savefig(tmp, format="png", dpi=dpi))


def smoothed(values: np.ndarray) -> np.ndarray:
    """Exponential moving average of `values` over about LOSS_SMOOTHING_SHARE of them, debiased so
    that it starts at the first value."""
    weight = 1 - 1 / max(1.0, LOSS_SMOOTHING_SHARE * len(values))
    out = np.empty(len(values))
    average = 0.0
    for k, value in enumerate(values):
        average = weight * average + (1 - weight) * value
        out[k] = average / (1 - weight ** (k + 1))
    return out


def training_figure(records: list[dict]) -> Figure:
    """The loss (each logged step's, and the mean of every step), the learning rate, and the accuracy
    of each evaluation.

    `records` are metrics.jsonl's objects: steps carry `loss`, `mean_loss` and `lr`, evaluations
    `split` and `accuracy`. Runs recorded before `mean_loss` existed get a moving average of the
    logged losses instead.
    """
    steps = [r for r in records if "split" not in r]
    evaluations = [r for r in records if "split" in r]
    fig = Figure(figsize=(15, 4.2), layout="constrained")
    loss_ax, lr_ax, accuracy_ax = fig.subplots(1, 3)
    x = np.array([r["step"] for r in steps])
    loss = np.array([r["loss"] for r in steps])
    loss_ax.plot(x, loss, color="C0", alpha=0.35, linewidth=1, marker="." if len(x) < 50 else None,
                 label="the logged step's loss")
    if steps and all("mean_loss" in r for r in steps):
        loss_ax.plot(x, [r["mean_loss"] for r in steps], color="C0", linewidth=2.2, marker="o" if len(x) < 50 else None,
                     markersize=3, label="mean of every step since the last")
    elif len(loss):
        loss_ax.plot(x, smoothed(loss), color="C0", linewidth=2.2, label="smoothed")
    loss_ax.set_yscale("log")
    loss_ax.set_title("training loss")
    lr_ax.plot(x, [r["lr"] for r in steps], color="C1", linewidth=2)
    lr_ax.set_title("learning rate")
    lr_ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    for split, colour in (("validation", "C2"), ("test", "C3")):
        points = [(r["step"], r["accuracy"]) for r in evaluations if r["split"] == split]
        if points:
            px, py = zip(*points)
            accuracy_ax.plot(px, py, color=colour, marker="o", label=f"{split} ({py[-1]:.2f} % at step {px[-1]})")
            # The test's value above its point, the last validation's below: they often share the last step.
            accuracy_ax.annotate(f"{py[-1]:.2f} %", (px[-1], py[-1]), textcoords="offset points",
                                 xytext=(-6, 8 if split == "test" else -16), ha="right", color=colour, fontsize=10)
    if evaluations:
        accuracy_ax.set_ylim(*accuracy_limits([r["accuracy"] for r in evaluations]))
        # One evaluation (a run without validation) is a point: give it the run's steps for context.
        accuracy_ax.set_xlim(0, max(r["step"] for r in records) * 1.05)
    accuracy_ax.set_title("accuracy per evaluation")
    accuracy_ax.set_ylabel("accuracy (%)")
    for ax in (loss_ax, lr_ax, accuracy_ax):
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for ax in (loss_ax, accuracy_ax):
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    return fig


def accuracy_limits(accuracies: list[float]) -> tuple[float, float]:
    """The accuracy axis: around the values with room for their labels, never past 100 %, and at
    least 2 points tall, so that one evaluation or a few close ones sit in a readable range."""
    low, high = min(accuracies), max(accuracies)
    pad = max(0.5, 0.15 * (high - low))
    top = min(100.0, high + 2 * pad)
    bottom = max(0.0, min(low - pad, top - 2.0))
    return bottom, top + (0.6 if top == 100.0 else 0.0)


def class_ticks(ax, axis: str, classes: tuple[str, ...]) -> None:
    """Class names as tick labels on `axis` ("x" or "y"); long names on the x axis slant, so that
    Fashion-MNIST's "T-shirt/top" and "Ankle boot" do not run into each other."""
    if axis == "y":
        ax.set_yticks(range(len(classes)), classes)
        return
    slanted = max(len(c) for c in classes) > 3
    ax.set_xticks(range(len(classes)), classes, rotation=40 if slanted else 0, ha="right" if slanted else "center",
                  rotation_mode="anchor")


def confusion_figure(evaluation: "Evaluation") -> Figure:
    """The confusion matrix: counts written in each cell, coloured by the share of the true class."""
    counts = evaluation.confusion.numpy()
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = len(evaluation.classes)
    room = 0.08 * max(len(c) for c in evaluation.classes)  # inches for the longest class name
    fig = Figure(figsize=(1.0 + room + 0.62 * size, 0.6 + room + 0.55 * size), layout="constrained")
    ax = fig.subplots()
    # A power scale (1 % shows a quarter of the full colour), so the few confusions stand out next
    # to the ~99 % diagonal.
    shown = ax.imshow(share, cmap="Blues", norm=PowerNorm(gamma=0.3, vmin=0, vmax=1))
    for (row, column), n in np.ndenumerate(counts):
        if n:
            ax.text(column, row, str(n), ha="center", va="center", fontsize=8,
                    color="white" if share[row, column] > 0.5 else "black")
    class_ticks(ax, "x", evaluation.classes)
    class_ticks(ax, "y", evaluation.classes)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(f"{evaluation.split}: {evaluation.accuracy:.2f} % of {evaluation.total}")
    fig.colorbar(shown, ax=ax, shrink=0.8, label="share of the true class")
    return fig


def misclassified_figure(
    images: torch.Tensor, labels: torch.Tensor, probabilities: torch.Tensor, classes: tuple[str, ...]
) -> Figure:
    """The most confidently misclassified images (uint8 (N, H, W)), with true and predicted label.

    `probabilities` (N, classes) are the model's; the grid shows up to MISCLASSIFIED_SHOWN images,
    the highest confidence in a wrong answer first.
    """
    confidence, predicted = probabilities.max(dim=1)
    wrong = (predicted != labels).nonzero().flatten()
    worst = wrong[confidence[wrong].argsort(descending=True)][:MISCLASSIFIED_SHOWN]
    rows = max(1, -(-len(worst) // MISCLASSIFIED_COLUMNS))
    fig = Figure(figsize=(2.3 * MISCLASSIFIED_COLUMNS, 2.7 * rows + 0.5), layout="constrained")
    fig.suptitle(f"the {len(worst)} most confidently misclassified of {len(labels)} images ({len(wrong)} wrong)")
    axes = fig.subplots(rows, MISCLASSIFIED_COLUMNS, squeeze=False).flatten()
    for ax in axes:
        ax.set_axis_off()
    for ax, k in zip(axes, worst.tolist()):
        ax.imshow(images[k].numpy(), cmap="gray_r")
        # One fact per line: long class names ("T-shirt/top", "Ankle boot") fit the panel's width.
        ax.set_title(
            f"#{k}: true {classes[labels[k]]}\npredicted {classes[predicted[k]]}\n{100 * confidence[k]:.1f} % sure",
            fontsize=9, color="darkred",
        )
    return fig


def evaluation_figures(
    folder: str | os.PathLike,
    evaluation: "Evaluation",
    images: torch.Tensor | None,
    labels: torch.Tensor,
    probabilities: torch.Tensor,
) -> tuple[Path, ...]:
    """Write `confusion.png` and, given uint8 `images` (N, H, W), `misclassified.png` into `folder`;
    return their paths."""
    folder = Path(folder)
    figures = [save_figure(confusion_figure(evaluation), folder / "confusion.png")]
    if images is not None:
        figure = misclassified_figure(images, labels, probabilities, evaluation.classes)
        figures.append(save_figure(figure, folder / "misclassified.png"))
    return tuple(figures)
