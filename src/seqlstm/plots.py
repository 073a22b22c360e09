"""Matplotlib figures, drawn headless (no pyplot, no display): the gate picture of `explain`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from .explain import Explanation

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

    Top: the input image (row t is step t) beside the class probabilities after each step.
    Middle: one heatmap per traced quantity and layer, steps down (aligned with the image rows)
    and units across, the same unit in the same column of every panel of a layer.
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


def draw_input_and_answer(sub, e: "Explanation", probabilities: np.ndarray) -> None:
    steps = probabilities.shape[0]
    image_ax, prob_ax, line_ax = sub.subplots(1, 3, width_ratios=[1, 1.2, 3])
    image_ax.imshow(e.image.numpy(), cmap="gray_r", extent=(0.5, e.image.shape[1] + 0.5, steps + 0.5, 0.5))
    image_ax.set_title("input: row t is step t")
    image_ax.set_ylabel("step (image row)")
    image_ax.set_xlabel("feature (pixel column)")

    shown = prob_ax.imshow(
        probabilities, cmap="Blues", vmin=0, vmax=1, aspect="auto",
        extent=(-0.5, len(e.classes) - 0.5, steps + 0.5, 0.5),
    )
    prob_ax.set_xticks(range(len(e.classes)), e.classes)
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
    line_ax.set_xlabel("step (image rows read so far)")
    line_ax.set_ylabel("probability")
    line_ax.set_title("the answer forming, row by row")
    line_ax.legend(loc="upper left", fontsize=9)
    line_ax.grid(alpha=0.3)


def draw_heatmaps(sub, e: "Explanation", names: list[str], layers: int, steps: int) -> None:
    axes = sub.subplots(layers, len(names), sharex=True, sharey=True, squeeze=False)
    for column, name in enumerate(names):
        values = e.trace[name].numpy()
        style = style_of(name, values, e.cell)
        for layer in range(layers):
            ax = axes[layer, column]
            image = ax.imshow(
                values[layer], aspect="auto", interpolation="nearest",
                extent=(-0.5, values.shape[2] - 0.5, steps + 0.5, 0.5), **style,
            )
            if layer == 0:
                ax.set_title(TITLES[e.cell][name], fontsize=12)
            if column == 0:
                ax.set_ylabel(f"layer {layer + 1}\nstep", fontsize=11)
            if layer == layers - 1:
                ax.set_xlabel("unit")
        sub.colorbar(image, ax=axes[:, column], location="bottom", shrink=0.85, aspect=25)


def draw_means(sub, e: "Explanation", layers: int, steps: int) -> None:
    x = np.arange(1, steps + 1)
    means = {name: t.numpy() for name, t in e.gate_means().items()}
    norm = e.cell_norm().numpy()
    memory = "‖c‖ (cell state)" if "cell" in e.trace else "‖a‖ (hidden state)"
    axes = sub.subplots(1, layers, squeeze=False)[0]
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
