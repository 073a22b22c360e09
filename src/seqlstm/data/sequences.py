"""What the model reads: stored samples (uint8 images, or a user's padded float sequences) turned
into float sequences (batch, seq, features), batch by batch on the device.

An `Encoding` holds everything that turn needs — the view of an image and its permutation — and
the class names. It is saved in the checkpoint, so every later command (evaluate, explain,
predict, serve, export) reads new data exactly as training did. The standardisation of the
features with training-set statistics (`input_statistics`) lives in the model itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from ..errors import CheckpointError, ConfigError

VIEWS = ("rows", "pixels", "permuted")
IMAGES, FEATURES = "images", "features"


class Sequences(NamedTuple):
    """Labelled samples held in memory.

    inputs: uint8 images (N, H, W), or float32 sequences (N, T, F) zero-padded after their length.
    lengths: int64 (N,) real steps of each sequence (1..T), or None when every sample uses all T.
    labels: int64 (N,) class indices.
    """

    inputs: torch.Tensor
    lengths: torch.Tensor | None
    labels: torch.Tensor

    def take(self, indices: torch.Tensor) -> "Sequences":
        """The samples at `indices` (int64 (M,)), in that order."""
        return Sequences(self.inputs[indices], None if self.lengths is None else self.lengths[indices], self.labels[indices])

    def to(self, device: torch.device) -> "Sequences":
        return Sequences(*(None if t is None else t.to(device) for t in self))


@dataclass
class Encoding:
    """How stored samples become model input, and what the model's outputs are called.

    kind "images": uint8 (N, H, W) scaled to [0, 1] and read as `view` says — rows (H steps of W
    features), pixels (H*W steps of 1 feature, row-major), permuted (the pixels in the fixed
    order `permutation`, int64 (H*W,)). kind "features": float (N, T, F), read as they are.
    """

    kind: str
    classes: tuple[str, ...]
    steps: int  # T of the model's input (the longest sequence for padded data)
    features: int  # F
    view: str = "rows"
    permutation: torch.Tensor | None = None
    image_shape: tuple[int, int] | None = None  # (H, W) of the images, for kind "images"

    def __call__(self, inputs: torch.Tensor) -> torch.Tensor:
        """float32 model input (batch, steps, features) for stored samples `inputs`, on their device."""
        if self.kind == FEATURES:
            return inputs.to(torch.float32)
        return self.arrange(inputs.to(torch.float32).div_(255))

    def arrange(self, images: torch.Tensor) -> torch.Tensor:
        """Float images (batch, H, W) as the view's sequences (batch, steps, features)."""
        if self.view == "rows":
            return images
        x = images.flatten(1).unsqueeze(-1)
        return x if self.view == "pixels" else x[:, self.permutation.to(x.device)]

    @property
    def unit(self) -> str:
        """What one sample is called in messages: images or sequences."""
        return "images" if self.kind == IMAGES else "sequences"

    def to_dict(self) -> dict:
        """Plain types and tensors only, for a weights-only checkpoint."""
        return {
            "kind": self.kind,
            "classes": list(self.classes),
            "steps": self.steps,
            "features": self.features,
            "view": self.view,
            "permutation": self.permutation,
            "image_shape": None if self.image_shape is None else list(self.image_shape),
        }

    @classmethod
    def from_dict(cls, values: dict) -> "Encoding":
        """Rebuild what `to_dict` wrote; CheckpointError when it is not a valid encoding."""
        try:
            encoding = cls(**{**values, "classes": tuple(values["classes"]),
                              "image_shape": None if values.get("image_shape") is None else tuple(values["image_shape"])})
        except (KeyError, TypeError) as e:
            raise CheckpointError(f"the checkpoint's input encoding is incomplete or unknown ({e})") from None
        if encoding.kind not in (IMAGES, FEATURES) or encoding.view not in VIEWS:
            raise CheckpointError(f"the checkpoint's input encoding is unknown: kind {encoding.kind!r}, view {encoding.view!r}")
        return encoding


def image_encoding(classes: tuple[str, ...], height: int, width: int, view: str = "rows", perm_seed: int = 0) -> Encoding:
    """The encoding of `view` for (height, width) images; `permuted` draws its pixel order from `perm_seed`."""
    if view not in VIEWS:
        raise ConfigError(f"unknown view {view!r}; use one of {', '.join(VIEWS)}")
    if view == "rows":
        return Encoding(IMAGES, classes, height, width, image_shape=(height, width))
    pixels = height * width
    permutation = None
    if view == "permuted":
        # A generator of its own: the order depends on --perm-seed alone, never on --seed.
        permutation = torch.randperm(pixels, generator=torch.Generator().manual_seed(perm_seed))
    return Encoding(IMAGES, classes, pixels, 1, view, permutation, (height, width))


def legacy_encoding(classes: tuple[str, ...], input_size: int) -> Encoding:
    """The encoding of checkpoints written before encodings were saved: square images read by rows."""
    return Encoding(IMAGES, classes, input_size, input_size, image_shape=(input_size, input_size))


def feature_encoding(classes: tuple[str, ...], values: torch.Tensor) -> Encoding:
    """The encoding of float sequences like `values` (N, T, F)."""
    return Encoding(FEATURES, classes, values.shape[1], values.shape[2])


def input_statistics(samples: Sequences, encoding: Encoding, chunk: int = 10_000) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-feature mean and std, float32 (F,), of `samples` as `encoding` reads them.

    Only real steps count (never padding). Summed in float64, `chunk` samples at a time, so the
    whole encoded set is never held at once. A feature that never varies gets std 1: it is only
    centred.
    """
    count = 0
    total = torch.zeros(encoding.features, dtype=torch.float64)
    squares = torch.zeros(encoding.features, dtype=torch.float64)
    for start in range(0, len(samples.labels), chunk):
        x = encoding(samples.inputs[start : start + chunk]).to(torch.float64)
        if samples.lengths is not None:
            real = torch.arange(x.shape[1])[None, :] < samples.lengths[start : start + chunk, None]
            x = x[real]  # (real steps, F)
        x = x.reshape(-1, encoding.features)
        count += len(x)
        total += x.sum(dim=0)
        squares += x.square().sum(dim=0)
    mean = total / count
    std = (squares / count - mean.square()).clamp(min=0).sqrt()
    std = torch.where(std > 1e-12, std, torch.ones_like(std))
    return mean.float(), std.float()
