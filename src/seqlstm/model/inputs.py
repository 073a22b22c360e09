"""The model's first stage: stored samples, raw, turned into the recurrent core's input.

    images uint8 (batch, H, W)  (or float already scaled to [0, 1])
      -> scaled to [0, 1] -> read as the view says: rows (H steps of W), pixels (H*W steps of 1),
         permuted (the pixels in a fixed order kept as a buffer)
    sequences float (batch, T, F), zero-padded after each one's length
      -> as they are
    then -> standardised with the training set's statistics (buffers), or each sequence by its own
         -> padding set to 0

Because the transform is part of the model, `model(raw, lengths)` is the whole contract of every
command that runs one — evaluate, predict, explain, serve and the ONNX file — and the checkpoint
carries it: the view, the pixel order and the statistics travel with the weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import ConfigError

IMAGES, SEQUENCES = "images", "sequences"


@dataclass(frozen=True)
class View:
    """One way of reading an image as a sequence, with what the fast recipe does differently for it."""

    name: str
    fast: dict = field(default_factory=dict)  # the fast recipe's measured exceptions (see config.py)

    def shape(self, height: int, width: int) -> tuple[int, int]:
        """(steps, features) of an image of (height, width) read this way."""
        return (height, width) if self.name == "rows" else (height * width, 1)


# One pixel per step makes sequences of 784 steps, which the tutorial's rate and a forget bias of 1
# do not learn at all (the loss stays at chance); memories spread over all 784 steps ("chrono"
# init), standardised pixels and a peak rate of 0.001 do.
ONE_PIXEL_A_STEP = dict(init="chrono", normalize="standard", lr=0.001)
ROWS = View("rows")
PIXELS = View("pixels", ONE_PIXEL_A_STEP)
PERMUTED = View("permuted", ONE_PIXEL_A_STEP)
VIEWS = {view.name: view for view in (ROWS, PIXELS, PERMUTED)}


def get_view(name: str) -> View:
    """The view called `name`; ConfigError naming the others for anything else."""
    try:
        return VIEWS[name]
    except KeyError:
        raise ConfigError(f"unknown view {name!r}; use one of {', '.join(VIEWS)}") from None


def pixel_order(pixels: int, seed: int) -> torch.Tensor:
    """The permuted view's fixed pixel order, int64 (pixels,), drawn from `seed` alone (never --seed)."""
    return torch.randperm(pixels, generator=torch.Generator().manual_seed(seed))


class InputTransform(nn.Module):
    """Raw stored samples -> the core's input (batch, steps, features); see the module docstring.

    Args:
        features: F, the features per step the core reads.
        kind: "images" or "sequences".
        steps: T, the steps of a training sample (an image's view; the longest training sequence).
        image_shape: (H, W) of the images, for kind "images".
        view: "rows", "pixels" or "permuted", for kind "images".
        perm_seed: the seed of the permuted view's pixel order (a loaded checkpoint's own order
            replaces it).
        series_norm: standardise each sequence by its own per-feature mean and std over its real
            steps, after the training set's statistics.
    """

    def __init__(self, features: int, kind: str = IMAGES, steps: int | None = None, image_shape=None, view: str = "rows",
                 perm_seed: int = 0, series_norm: bool = False):
        super().__init__()
        if kind not in (IMAGES, SEQUENCES):
            raise ConfigError(f"unknown kind of input {kind!r}; use {IMAGES} or {SEQUENCES}")
        if kind == IMAGES:
            # The tutorial's model reads square images by rows: what a bare model takes by default.
            image_shape = tuple(image_shape) if image_shape is not None else (features, features)
            steps, width = get_view(view).shape(*image_shape)
            if width != features:
                raise ConfigError(f"{view} of {image_shape[0]}x{image_shape[1]} images gives {width} features per step, "
                                  f"but the model reads {features}")
        elif steps is None:
            raise ConfigError("a model reading sequences needs the length of its training sequences (steps)")
        self.kind, self.features, self.steps, self.view = kind, features, int(steps), view
        self.image_shape, self.series_norm = image_shape, series_norm
        self.args = dict(kind=kind, steps=self.steps, image_shape=None if image_shape is None else list(image_shape),
                         view=view)
        self.register_buffer("permutation", pixel_order(steps, perm_seed) if view == "permuted" else None)
        # x -> (x - mean) / std per feature, with the training data's statistics (set by training;
        # identity until then).
        self.register_buffer("mean", torch.zeros(features))
        self.register_buffer("std", torch.ones(features))

    @property
    def unit(self) -> str:
        """What one sample is called in messages: images or sequences."""
        return self.kind

    def pictures(self, raw: torch.Tensor) -> torch.Tensor | None:
        """Raw samples as pictures to draw — images (..., H, W) as they are — or None for sequences."""
        return raw if self.kind == IMAGES else None

    def arrange(self, raw: torch.Tensor) -> torch.Tensor:
        """float32 (batch, steps, features) in the data's own units (images scaled to [0, 1]) for raw
        samples: uint8 or float images (batch, H, W), or float sequences (batch, T, F)."""
        if self.kind == SEQUENCES:
            return raw.to(torch.float32)
        x = raw.to(torch.float32).div_(255) if raw.dtype == torch.uint8 else raw.to(torch.float32)
        if self.view == "rows":
            return x
        x = x.flatten(1).unsqueeze(-1)
        return x if self.permutation is None else x[:, self.permutation]

    def standardise(self, x: torch.Tensor) -> torch.Tensor:
        """x (batch, steps, features) standardised with the training set's statistics."""
        return (x - self.mean) / self.std

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        """The tutorial's path: raw samples arranged and standardised, (batch, steps, features)."""
        return self.standardise(self.arrange(raw))

    def prepare(self, raw: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw samples as the core reads them — arranged, standardised, each by its own statistics with
        `series_norm` — with their padding set to 0, and the lengths (batch,) int64 (all steps when None)."""
        x = self.forward(raw)
        batch, steps, _ = x.shape
        if lengths is None:
            lengths = torch.full((batch,), steps, dtype=torch.long, device=x.device)
        lengths = lengths.to(x.device)
        real = (torch.arange(steps, device=x.device)[None, :] < lengths[:, None]).unsqueeze(-1)  # (batch, steps, 1)
        if self.series_norm:
            x = series_standardise(x, real, lengths)
        return torch.where(real, x, torch.zeros((), dtype=x.dtype, device=x.device)), lengths

    def example(self, batch: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        """Random raw inputs of the exported file's form for `batch` samples: (images float32 (batch, H, W)
        in [0, 1],) or (sequences float32 (batch, T, F), lengths int64 (batch,))."""
        if self.kind == IMAGES:
            return (torch.rand(batch, *self.image_shape, generator=generator),)
        x = torch.randn(batch, self.steps, self.features, generator=generator)
        return x, torch.randint(1, self.steps + 1, (batch,), generator=generator)

    @torch.no_grad()
    def fit(self, samples) -> None:
        """Set the statistics to the per-feature mean and std of the real steps of `samples` (Sequences
        in memory, or a pack's Packed) as arranged: from `samples.moments(self.arrange)`, the count,
        sums and sums of squares in float64. A feature that never varies gets std 1: it is only centred."""
        count, total, squares = samples.moments(self.arrange)
        mean = total / count
        std = (squares / count - mean.square()).clamp(min=0).sqrt()
        self.mean.copy_(mean.float())
        self.std.copy_(torch.where(std > 1e-12, std, torch.ones_like(std)).float())


def series_standardise(x: torch.Tensor, real: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Each sequence of x (batch, seq, features) to mean 0 and std 1 per feature over its real steps
    (`real` (batch, seq, 1) bool); a constant feature is only centred."""
    count = lengths.view(-1, 1, 1).to(x.dtype)
    x = x * real
    mean = x.sum(1, keepdim=True) / count
    var = ((x - mean) * real).square().sum(1, keepdim=True) / count
    std = var.sqrt()
    return (x - mean) / torch.where(std > 1e-8, std, torch.ones_like(std))
