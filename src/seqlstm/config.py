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

from dataclasses import asdict, dataclass, field, fields

from .errors import ConfigError

# What a user can choose from. Kept here, not imported from the modules that implement each
# choice, so that the command line (its --help included) is built without loading PyTorch; tests
# hold each list to its implementation's.
DATASET_NAMES = ("mnist", "fashion-mnist")  # data/sources.py's DATASETS
CELLS = ("lstm", "gru", "seed")  # model/cells.py
POOLS = ("last", "mean", "max", "attention")  # model/classifier.py
VIEWS = ("rows", "pixels", "permuted")  # model/inputs.py
LOGGER_NAMES = ("tensorboard",)  # training/recorders.py's LOGGERS
RUNTIMES = ("torch", "onnxruntime", "auto")  # runtime.py: what runs a model for predict and serve
# export.py: the test accuracy, in points, that int8 weights may cost before `export --int8` refuses them.
INT8_MAX_LOSS = 0.2
# data/packed.py: a pack's shard files close once they hold this many MB of values (a sequence never spans two).
SHARD_MB = 256

RECIPES = {
    "fast": dict(precision="auto", schedule="onecycle", clip_grad=1.0, init="lstm", augment_shift=1, normalize="none",
                 lr=0.01, label_smoothing=0.0, weight_decay=0.0),
    "tutorial": dict(precision="fp32", schedule="constant", clip_grad=0.0, init="default", augment_shift=0, normalize="none",
                     lr=0.01, label_smoothing=0.0, weight_decay=0.0),
}
CHOICES = dict(
    recipe=tuple(RECIPES),
    view=VIEWS,
    precision=("auto", "fp32", "bf16"),
    schedule=("onecycle", "constant"),
    init=("lstm", "chrono", "default"),
    normalize=("standard", "series", "none"),
    pool=POOLS,
    class_weight=("none", "balanced"),
)
# The flags' choices: the cell and the loggers are checked with messages of their own.
FLAG_CHOICES = {**CHOICES, "cell": CELLS, "log": LOGGER_NAMES}
# The groups of `seqlstm train --help`, in order, with what each is for.
GROUPS = {
    "run directory": "what the run records, and continuing it",
    "recipe": "how the model is trained; each flag overrides the recipe's choice",
    "model shape": "beyond the tutorial's; each flag overrides the recipe's choice",
}


def flag(default, help: str, group: str | None = None, metavar: str | None = None):
    """A config field that is also a `seqlstm train` flag (cli.py builds it from this): its default,
    its help text, its group in `--help` (None: the first) and its metavar."""
    return field(default=default, metadata=dict(help=help, group=group, metavar=metavar))


@dataclass
class TrainConfig:
    """Every setting of a training run; each field with help text is the `seqlstm train` flag of its name."""

    dataset: str | None = flag(
        "mnist", f"{' or '.join(DATASET_NAMES)}, or your own labelled sequences: a .npz, .ts (sktime/UCR/UEA) or .csv file; "
                 "None in the API: arrays in memory", metavar="NAME|PATH")
    data_dir: str | None = flag(
        None, "folder holding the dataset's files (gzip or raw); nothing is downloaded when given (default: "
              "$SEQLSTM_DATA, the system's copy, the cache, then a download)", metavar="DIR")
    view: str = flag("rows", "how an image is read: rows (28 steps of 28 pixels), pixels (784 steps of 1), permuted (784 "
                             "steps in a fixed random order)")
    perm_seed: int = flag(0, "seed of the permuted view's pixel order", metavar="N")
    test_dataset: str | None = flag(None, "your own test sequences (same format as --dataset); default: hold out "
                                          "--test-size", metavar="PATH")
    test_size: float | None = flag(None, "share of your --dataset file held out for testing, stratified and seeded by "
                                         "--seed (default: 0.2)", metavar="FRACTION")
    label_column: str | None = flag(None, ".csv: the label column's header name or 0-based position (default: the first "
                                          "column)", metavar="NAME|N")
    hidden_size: int = flag(128, "recurrent units per layer", metavar="N")
    num_layers: int = flag(2, "stacked recurrent layers", metavar="N")
    cell: str = flag("lstm", "recurrent cell: lstm and gru run fused (oneDNN/cuDNN), seed is the tutorial's 4-gate cell run "
                             "as explicit equations")
    batch_size: int | None = flag(None, "samples per step (default: 100 for an image set; planned from your file's size)",
                                  metavar="N")
    epochs: int | None = flag(None, "passes over the training set (default: 2 for an image set; planned from your file's "
                                    "size, with early stopping)", metavar="N")
    seed: int = flag(0, "seed for initial weights, shuffling and the held-out splits", metavar="N")
    device: str = flag("auto", "auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps")
    max_steps: int | None = flag(None, "stop after N optimizer steps (smoke runs)", metavar="N")
    log_every: int = flag(100, "print the loss (and record it in metrics.jsonl) every N steps of an epoch", metavar="N")
    out: str = flag("model.ckpt", "checkpoint to write", metavar="PATH")
    run_dir: str | None = flag(
        None, "config.json, metrics.jsonl, last.ckpt, best.ckpt, plots/ (default: runs/<UTC time>-<dataset>-<cell>)",
        "run directory", "DIR")
    val_size: int | None = flag(
        None, "hold N training samples out (fixed seed; stratified for your files) to validate on after each epoch "
              "(default: 0 for an image set; a stratified 20%% of a file of 500 or more sequences)", "run directory", "N")
    patience: int | None = flag(
        None, "stop after N validations without a better one and keep the best weights; 0: never (default: 0 for an "
              "image set; planned for your files)", "run directory", "N")
    eval_every: int | None = flag(None, "also validate every N steps", "run directory", "N")
    checkpoint_every: int | None = flag(None, "write last.ckpt every N steps (default: after each epoch)", "run directory",
                                        "N")
    log: tuple[str, ...] = flag(
        (), "also log the run's numbers to LOGGER, in the run directory: tensorboard (pip install "
            "\"seqlstm[tensorboard]\"; then tensorboard --logdir runs)", "run directory", "LOGGER")
    recipe: str = flag("fast", "fast: bf16 where supported, one-cycle lr, clipping, LSTM init, 1-px shifts, measured "
                               "changes for Fashion-MNIST and the pixel views; tutorial: exactly the tutorial's training",
                       "recipe")
    # None: the recipe's choice. Set explicitly, each overrides the recipe.
    precision: str | None = flag(None, "auto: bf16 autocast on CUDA and on CPUs with bf16 instructions, else fp32", "recipe")
    schedule: str | None = flag(None, "onecycle: warm up to --lr, then anneal; constant: the tutorial's", "recipe")
    clip_grad: float | None = flag(None, "clip the gradient norm to NORM; 0: off", "recipe", "NORM")
    init: str | None = flag(None, "lstm: forget-gate bias 1, orthogonal recurrent weights; chrono: memory-gate biases "
                                  "spread up to the sequence's length (the pixels and permuted views); default: PyTorch's",
                            "recipe")
    augment_shift: int | None = flag(None, "shift training images by up to PX pixels; 0: off", "recipe", "PX")
    normalize: str | None = flag(None, "standard: each input feature to mean 0, std 1 with training-set statistics kept in "
                                       "the model; series: each sequence by its own mean and std", "recipe")
    lr: float | None = flag(None, "Adam's peak learning rate (the tutorial's 0.01; 0.005 on Fashion-MNIST, 0.001 for the "
                                  "pixels and permuted views)", "recipe")
    label_smoothing: float | None = flag(None, "cross-entropy label smoothing from 0 (off) to below 1 (0.1 on "
                                               "Fashion-MNIST, else off)", "recipe", "EPS")
    weight_decay: float | None = flag(None, "AdamW's decoupled weight decay; 0: Adam (0.01 on Fashion-MNIST, else 0)",
                                      "recipe", "WD")
    class_weight: str | None = flag(None, "balanced: every class weighs the same in the loss whatever its count "
                                          "(default: none)", "recipe")
    bucket: bool = flag(False, "batch variable-length sequences with others of about their length: faster, but measured "
                               "to cost accuracy on some problems (default: random batches, each padded to its own "
                               "longest)", "recipe")
    # The model's shape beyond the tutorial's (model/classifier.py); None: the recipe's choice.
    patch: int | None = flag(None, "read K consecutive steps as one step of K x features (default: 1 for images; for your "
                                   "files, enough to leave the core at most about 128 steps)", "model shape", "K")
    bidirectional: bool | None = flag(None, "a second core reads every sequence backwards from its last real step",
                                      "model shape")
    pool: str | None = flag(None, "how the core's outputs become one vector, over the real steps only (default: last for "
                                  "images, mean for your files)", "model shape")
    dropout: float | None = flag(None, "dropout on the pooled vector before the head (default: 0)", "model shape", "P")
    conv: int | None = flag(None, "a convolutional branch beside the core, LSTM-FCN style (conv-BN-ReLU blocks of FILTERS, "
                                  "2xFILTERS, FILTERS); 0: none (default: 0 for images, 128 for your files)", "model shape",
                            "FILTERS")
    conv_patch: int | None = flag(None, "the convolutional branch reads K steps as one (default: --patch)", "model shape",
                                  "K")
    # Set by training, never by a flag:
    plan: str | None = None  # the plan's one-line account of the budget it chose for a user's file, and why
    # the SHA-256 of each user file training read ({"dataset": ..., "test_dataset": ...}), so that a later
    # command reading the file again can tell that it changed
    digests: dict | None = None

    def __post_init__(self):
        from .data.records import source_for  # the data path loads PyTorch: not for --help
        from .model.cells import check_cell

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
        from .data.records import FOR_IMAGES

        before = dict(recipe="tutorial", normalize="none", label_smoothing=0.0, weight_decay=0.0, **FOR_IMAGES)
        return cls(**{**before, **values})
