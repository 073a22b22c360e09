"""The one training configuration. Defaults are the tutorial's hyperparameters.

The model, batch size and epochs are always the tutorial's unless changed; *how* they are trained
comes from a recipe. `fast` (the default) adds bf16 autocast where the hardware has it, a one-cycle
schedule peaking at the tutorial's lr 0.01, gradient clipping, an LSTM-friendly initialisation and
random one-pixel shifts of the training images, with measured exceptions that live in the records of
what is read: an image set's (data/sources.py), a view's (model/inputs.py), and the budget and
model of a user's sequences (data/records.py). `tutorial` trains exactly as the tutorial did, for
comparison. A user's sequences are standardised by every recipe.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from .data.records import FOR_IMAGES, source_for
from .errors import ConfigError
from .model.cells import check_cell
from .model.classifier import POOLS
from .model.inputs import VIEWS

RECIPES = {
    "fast": dict(precision="auto", schedule="onecycle", clip_grad=1.0, init="lstm", augment_shift=1, normalize="none",
                 lr=0.01, label_smoothing=0.0, weight_decay=0.0),
    "tutorial": dict(precision="fp32", schedule="constant", clip_grad=0.0, init="default", augment_shift=0, normalize="none",
                     lr=0.01, label_smoothing=0.0, weight_decay=0.0),
}
# `--log`: the names of training/recorders.py's LOGGERS (not imported here: they import the training loop's needs).
LOGGER_NAMES = ("tensorboard",)
CHOICES = dict(
    recipe=tuple(RECIPES),
    view=tuple(VIEWS),
    precision=("auto", "fp32", "bf16"),
    schedule=("onecycle", "constant"),
    init=("lstm", "chrono", "default"),
    normalize=("standard", "series", "none"),
    pool=POOLS,
    class_weight=("none", "balanced"),
)


@dataclass
class TrainConfig:
    dataset: str | None = "mnist"  # mnist | fashion-mnist | a path to the user's .npz, .ts or .csv sequences | None: arrays in memory
    data_dir: str | None = None  # a folder with the named dataset's files; None: $SEQLSTM_DATA, system, cache, download
    view: str = "rows"  # images: rows (28 steps x 28) | pixels (784 x 1) | permuted (784 x 1, order from perm_seed)
    perm_seed: int = 0  # the pixel order of the permuted view
    test_dataset: str | None = None  # the user's test file; None: hold out test_size of --dataset
    test_size: float | None = None  # share of the user's file held out for testing (stratified, seeded); None: 0.2
    label_column: str | None = None  # .csv: the label column's name or 0-based position; None: the first
    hidden_size: int = 128
    num_layers: int = 2
    cell: str = "lstm"  # lstm | gru | seed (see model/cells.py)
    # None: the tutorial's 100 and 2 for an image set; planned from the data for a user's file (plan.py).
    batch_size: int | None = None
    epochs: int | None = None
    seed: int = 0  # initial weights and the shuffling order
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    max_steps: int | None = None  # stop after this many optimizer steps (smoke runs)
    log_every: int = 100  # print the loss line (and record metrics) every this many steps of an epoch
    out: str = "model.ckpt"
    run_dir: str | None = None  # config, metrics, last/best checkpoints, plots; None: runs/<UTC time>-<dataset>-<cell>
    # training samples held out (fixed seed; stratified for a user's file) for validation; 0: none, as the
    # tutorial; None: 0 for an image set, planned for a user's file
    val_size: int | None = None
    patience: int | None = None  # stop after this many validations without a better one, keep the best weights; 0: never
    eval_every: int | None = None  # also validate every this many steps (always after each epoch)
    checkpoint_every: int | None = None  # write last.ckpt every this many steps; None: after each epoch
    recipe: str = "fast"
    # None: the recipe's choice. Set explicitly, each overrides the recipe.
    precision: str | None = None  # auto (bf16 where the hardware has it) | fp32 | bf16
    schedule: str | None = None  # onecycle (peaking at lr) | constant
    clip_grad: float | None = None  # max gradient norm; 0 disables clipping
    # lstm (forget-gate bias 1, orthogonal recurrent weights) | chrono (memories up to the sequence's length) | default
    init: str | None = None
    augment_shift: int | None = None  # shift training images by up to this many pixels; 0: off
    normalize: str | None = None  # standard (each input feature to mean 0, std 1 over the training set) | none
    lr: float | None = None  # Adam's (peak) learning rate: the tutorial's 0.01 but for the exceptions above
    label_smoothing: float | None = None  # the cross-entropy's label smoothing, from 0 (none) to below 1
    weight_decay: float | None = None  # AdamW's decoupled weight decay; 0: Adam, as the tutorial
    # The model's shape beyond the tutorial's (model/classifier.py); None: the recipe's choice.
    patch: int | None = None  # read this many steps as one; None for a user's file: planned from its length
    bidirectional: bool | None = None  # a second core reads each sequence backwards
    pool: str | None = None  # last | mean | max | attention, over the real steps only
    dropout: float | None = None  # on the pooled features before the head
    conv: int | None = None  # filters of a convolutional branch beside the core (LSTM-FCN); 0: none
    conv_patch: int | None = None  # the branch reads this many steps as one; None for a user's file: planned
    class_weight: str | None = None  # none | balanced (each class weighs in the loss inversely to its count)
    log: tuple[str, ...] = ()  # loggers written besides metrics.jsonl, into the run directory: tensorboard
    bucket: bool = False  # batch variable-length sequences with others of about their length (faster; see the docs)
    plan: str | None = None  # set by training: the plan's one-line account of the budget it chose, and why
    # set by training on a user's files: the SHA-256 of each file it read ({"dataset": ..., "test_dataset": ...}),
    # so that a later command reading the file again can tell that it changed
    digests: dict | None = None

    def __post_init__(self):
        source = source_for(self.dataset)
        if source.kind == "images":
            self.dataset = source.name  # its one spelling, however it was typed
        if self.recipe not in RECIPES:
            raise ConfigError(f"unknown recipe {self.recipe!r}; use one of {', '.join(RECIPES)}")
        if self.view not in VIEWS:
            raise ConfigError(f"view must be one of {', '.join(VIEWS)}, got {self.view!r}")
        for name, value in {**RECIPES[self.recipe], **source.defaults(self.recipe, self.view)}.items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        self.log = (self.log,) if isinstance(self.log, str) else tuple(self.log)  # a checkpoint's JSON keeps a list
        unknown = [name for name in self.log if name not in LOGGER_NAMES]
        if unknown:
            raise ConfigError(f"unknown logger {unknown[0]!r}; log can name {', '.join(LOGGER_NAMES)}")
        if not isinstance(self.augment_shift, int) or self.augment_shift < 0:
            raise ConfigError(f"augment_shift must be an integer >= 0, got {self.augment_shift!r}")
        if not self.clip_grad >= 0:
            raise ConfigError(f"clip_grad must be >= 0 (0 disables clipping), got {self.clip_grad!r}")
        for name in ("hidden_size", "num_layers", "log_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        for name in ("batch_size", "epochs", "patch", "conv_patch"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        for name in ("max_steps", "eval_every", "checkpoint_every"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ConfigError(f"{name} must be a positive integer or None, got {value!r}")
        for name in ("val_size", "patience", "conv"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 0):
                raise ConfigError(f"{name} must be an integer >= 0, got {value!r}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be from 0 (none) to below 1, got {self.dropout!r}")
        check_cell(self.cell)
        if self.test_size is not None and not 0 < self.test_size < 1:
            raise ConfigError(f"test_size is the share of sequences held out, between 0 and 1 (e.g. 0.2); got {self.test_size!r}")
        if not isinstance(self.perm_seed, int) or not 0 <= self.perm_seed < 2**63:
            raise ConfigError(f"perm_seed must be an integer from 0 to 2**63 - 1, got {self.perm_seed!r}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be positive, got {self.lr!r}")
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"label_smoothing must be from 0 (none) to below 1, got {self.label_smoothing!r}")
        if not self.weight_decay >= 0:
            raise ConfigError(f"weight_decay must be >= 0 (0: none), got {self.weight_decay!r}")
        # torch.manual_seed takes any 64-bit value, but the augmentation generator uses seed + 1.
        if not isinstance(self.seed, int) or not 0 <= self.seed < 2**63:
            raise ConfigError(f"seed must be an integer from 0 to 2**63 - 1, got {self.seed!r}")

    def to_dict(self) -> dict:
        """Plain types only, so the config can live in a weights-only checkpoint."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        """Rebuild a config from `to_dict()` output; ConfigError on unknown keys.

        A config saved before recipes existed has no `recipe` key; it was trained the tutorial's
        way (the only way there was), so it is read as the `tutorial` recipe, not today's default.
        Likewise one saved before input standardisation existed read its input as it was (`none`),
        and one saved before label smoothing and weight decay existed trained without them; one saved
        before the budget was planned trained with the tutorial's batch of 100 for 2 epochs.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown config keys: {', '.join(unknown)}")
        before = dict(recipe="tutorial", normalize="none", label_smoothing=0.0, weight_decay=0.0, **FOR_IMAGES)
        return cls(**{**before, **values})
