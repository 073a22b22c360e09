"""The one training configuration. Defaults are the tutorial's hyperparameters."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from .errors import ConfigError
from .model.cells import check_cell


@dataclass
class TrainConfig:
    dataset: str = "mnist"
    data_dir: str | None = None  # a folder with the dataset's files; None: $SEQLSTM_DATA, cache, download
    hidden_size: int = 128
    num_layers: int = 2
    cell: str = "lstm"  # lstm | gru | seed (see model/cells.py)
    batch_size: int = 100
    epochs: int = 2
    lr: float = 0.01  # Adam's learning rate
    seed: int = 0  # initial weights and the shuffling order
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    max_steps: int | None = None  # stop after this many optimizer steps (smoke runs)
    log_every: int = 100  # print the loss line every this many steps of an epoch
    out: str = "model.ckpt"

    def __post_init__(self):
        for name in ("hidden_size", "num_layers", "batch_size", "epochs", "log_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if self.max_steps is not None and (not isinstance(self.max_steps, int) or self.max_steps < 1):
            raise ConfigError(f"max_steps must be a positive integer or None, got {self.max_steps!r}")
        check_cell(self.cell)
        if not self.lr > 0:
            raise ConfigError(f"lr must be positive, got {self.lr!r}")

    def to_dict(self) -> dict:
        """Plain types only, so the config can live in a weights-only checkpoint."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        """Rebuild a config from `to_dict()` output; ConfigError on unknown keys."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown config keys: {', '.join(unknown)}")
        return cls(**values)
