"""Which inputs decided an answer: integrated gradients over a model's raw inputs, per step and
feature (per pixel for an image), with the completeness error that says how far to trust them.

Captum's IntegratedGradients does the integration (the `attribute` extra). Attributions are taken
with respect to the input in its own units — an image scaled to [0, 1], a sequence's raw features —
so they line up with what a user sees. The baseline is "no signal": a blank image, or for
sequences the training set's mean (the model keeps it), the input that standardises to zero.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch

from .model import LSTMClassifier
from .model.inputs import IMAGES

# Integration points. Gauss-Legendre with 64 of them left a completeness error of a median 0.2 %
# (worst 5.9 %) of the logit gap on 100 MNIST test images of a trained model, 0.14 % (worst 0.5 %)
# on a sequence model with a convolutional branch, and under 1e-5 on untrained models; more points
# shrink it at a proportional cost (100 images took 2.9 s on 2 CPU cores).
STEPS = 64


@dataclass
class Attribution:
    """Integrated gradients for a batch of samples."""

    values: torch.Tensor  # float32 like the input: (batch, H, W) for images, (batch, T, F) for sequences
    target: torch.Tensor  # int64 (batch,): the class explained
    gap: torch.Tensor  # float32 (batch,): the target's logit at the input minus at the baseline
    error: torch.Tensor  # float32 (batch,): sum(values) - gap; completeness makes it 0 up to the integration's error

    def per_step(self) -> torch.Tensor:
        """(batch, steps): each step's attribution summed over its features (an image's row over its pixels)."""
        return self.values.sum(dim=-1)


def attribute(model: LSTMClassifier, raw: torch.Tensor, lengths: torch.Tensor | None = None,
              target: torch.Tensor | int | None = None, steps: int = STEPS) -> Attribution:
    """Integrated gradients of `model`'s logit for `target` (default: each sample's predicted
    class) with respect to raw samples: uint8 or float images (batch, H, W), or float sequences
    (batch, T, F) with `lengths` (batch,) for padded ones (padding gets no attribution).

    Returns an Attribution whose values sum, per sample, to the target logit's change from the
    baseline, up to `error`. ImportError saying what to install when Captum is missing.
    """
    try:
        from captum.attr import IntegratedGradients
    except ImportError as e:
        raise ImportError(f'attributions need Captum ({e}); install it with: pip install "seqlstm[attribute]"') from None
    device = next(model.parameters()).device
    x, baseline = input_and_baseline(model, raw, device)
    extra = None if lengths is None else (lengths.to(device),)
    was_training = model.training
    model.eval()
    # cuDNN computes an RNN's gradients only in training mode; its plain kernels do it in eval mode.
    kernels = torch.backends.cudnn.flags(enabled=False) if device.type == "cuda" else nullcontext()
    try:
        with kernels:
            if target is None:
                with torch.no_grad():
                    target = model(x, *(extra or ())).argmax(dim=1)
            target = torch.as_tensor(target, device=device).expand(len(x)).clone()
            values, error = IntegratedGradients(model).attribute(
                x, baselines=baseline, target=target, additional_forward_args=extra, n_steps=steps,
                method="gausslegendre", return_convergence_delta=True)
    finally:
        model.train(was_training)
    values, error = values.detach().float(), error.detach().float()
    # Captum's delta is sum(values) minus the logit's change, which it ran the model at both ends for.
    return Attribution(values, target, values.flatten(1).sum(1) - error, error)


def input_and_baseline(model: LSTMClassifier, raw: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw samples in their own units on `device` (images scaled to [0, 1]), and the baseline that
    stands for "no signal": a blank image, or for sequences the training mean."""
    x = (raw.float() / 255 if raw.dtype == torch.uint8 else raw.float()).to(device)
    return x, torch.zeros_like(x) if model.inputs.kind == IMAGES else model.inputs.mean.expand_as(x).clone()


@dataclass
class Deletion:
    """A deletion check of attributions: the target's probability as more and more of each
    sample's steps are masked (set to the baseline), the most attributed first, against the same
    number masked in random orders. Faithful attributions make the first curve fall faster."""

    fractions: torch.Tensor  # (points,): the share of each sample's real steps masked, 0 to 1
    attributed: torch.Tensor  # (batch, points): P(target) with the most attributed steps masked
    random: torch.Tensor  # (batch, points): P(target) with random steps masked, the mean over the orders drawn

    def areas(self) -> tuple[float, float]:
        """The mean area under each curve (attributed, random), over the samples: lower falls faster."""
        return tuple(float(torch.trapezoid(curve, self.fractions, dim=1).mean()) for curve in (self.attributed, self.random))


def deletion(model: LSTMClassifier, raw: torch.Tensor, lengths: torch.Tensor | None = None,
             attribution: Attribution | None = None, points: int = 11, repeats: int = 5, seed: int = 0) -> Deletion:
    """The deletion check of `attribution` (default: `attribute(model, raw, lengths)`) on raw samples
    as `attribute` takes them. A step is an input step in the order the model reads them — an
    image's row, or one pixel for the pixel views; a sequence's step, all its features (a model
    reading patches reads several at once) — ranked by its attribution summed over its features;
    masking sets it to the baseline (blank, or the training mean). `points` shares of the real
    steps from 0 to 1; `repeats` random orders per sample, drawn from `seed`."""
    fractions = torch.linspace(0, 1, points)
    if len(raw) == 0:
        return Deletion(fractions, torch.empty(0, points), torch.empty(0, points))
    attribution = attribution or attribute(model, raw, lengths)
    device = next(model.parameters()).device
    x, baseline = input_and_baseline(model, raw, device)
    # Where each step's values sit in a sample, flattened: the transform's own arrangement of
    # indices (as float32, exact for any sample under 2**24 values).
    where = model.inputs.arrange(torch.arange(x[0].numel(), dtype=torch.float32, device=device).reshape(1, *x.shape[1:]))
    where = where[0].long()  # (steps, features)
    score = model.inputs.arrange(attribution.values.to(device)).sum(dim=-1)  # (batch, steps)
    generator = torch.Generator().manual_seed(seed)
    masked, real_steps = [], []
    for b in range(len(x)):
        real = len(where) if lengths is None else int(lengths[b])  # a sequence's steps are read as they are
        real_steps.append(real)
        orders = [torch.argsort(score[b, :real], descending=True).cpu()] + [torch.randperm(real, generator=generator)
                                                                            for _ in range(repeats)]
        for order in orders:
            for fraction in fractions:
                sample = x[b].flatten().clone()
                hidden = where[order[: round(float(fraction) * real)].to(device)].flatten()
                sample[hidden] = baseline[b].flatten()[hidden]
                masked.append(sample.reshape(x.shape[1:]))
    batch = torch.stack(masked)
    extra = () if lengths is None else (lengths.to(device).repeat_interleave((1 + repeats) * points),)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        probabilities = torch.cat([model(batch[i : i + 1000], *(e[i : i + 1000] for e in extra)).softmax(dim=1)
                                   for i in range(0, len(batch), 1000)])
    model.train(was_training)
    target = attribution.target.to(device).repeat_interleave((1 + repeats) * points)
    curves = probabilities.gather(1, target[:, None])[:, 0].float().cpu().reshape(len(x), 1 + repeats, points)
    return Deletion(fractions, curves[:, 0], curves[:, 1:].mean(dim=1))
