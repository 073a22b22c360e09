"""The training plan for a user's sequences: budget, batch size, validation share and patch length
fitted to the data by one rule, whatever the file.

The tutorial's budget (batch 100, 2 epochs) is 1200 steps on MNIST's 60,000 images but 1 to 12
steps on a file of 36 to 500 sequences: far too few to learn anything. The plan instead aims at
STEPS optimizer steps whatever the file's size, in batches that give even a small file several
steps per epoch, fewer when a large file's batches and long series would make them slow (WORK).
A file of MIN_FOR_VALIDATION sequences or more validates on a stratified fifth of them after every
epoch, stops when validation has not improved for a while and keeps the best weights; a smaller
one trains on everything for the whole budget. A long series is read in patches so that the
recurrent core takes at most about CORE_STEPS steps: the rows view's trick for an image's 784
pixels, which one value per step cannot learn in a short budget. Every constant was measured over
the UCR problems of benchmarks/ucr.py (see docs/own-data.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .data.batches import steps_per_epoch

# Optimizer steps the plan aims at (before early stopping): 800 left 2-3 points of accuracy behind.
STEPS = 2000
# ... unless batches times core steps would pass this many sample-steps (about 70 s of training on
# a 2-core CPU with the default model on a univariate series): a large file of long series trains
# fewer steps.
WORK = 4_000_000
# A step of many features costs more: the core's input product and the branch's first convolution
# grow with patch x features, and at about this many they cost as much as the rest of the default
# model (2 x 128 LSTM, 128-256-128 filters) together. A sample-step counts 1 + patch x features / WIDE.
WIDE = 360
# Never planned below this many steps.
MIN_STEPS = 200
# Batch sizes stay between these: small batches give a small file enough steps per epoch, and a
# large file gains nothing per step beyond 64 here.
MIN_BATCH, MAX_BATCH = 8, 64
# About this many batches per epoch (for a file that is not too small or too large).
BATCHES_PER_EPOCH = 10
# Below this many training sequences a validation share is too small to choose weights by: on
# files of 67 and 100 sequences, stopping on 13 and 20 validation sequences cut training short
# (ACSF1: 39 % against 80 % trained to the end). Such a file trains on all its sequences.
MIN_FOR_VALIDATION = 500
VALIDATION_SHARE = 0.2
# Validations (one per epoch) without a better one before stopping; at least MIN_PATIENCE, and a
# quarter of the planned epochs, so a slow start under the one-cycle warm-up is not cut short.
MIN_PATIENCE = 10
# The recurrent core (and the convolutional branch beside it) reads at most about this many steps:
# longer series are read in patches. 64 lost 2 points of accuracy; 256 gained nothing and took twice the time.
CORE_STEPS = 128
# Fewer optimizer steps than this leave a model near chance on the problems measured: warn.
FEW_STEPS = 100


@dataclass(frozen=True)
class Plan:
    """What the plan chose; each field replaces only a setting the user left unset (None)."""

    batch_size: int
    epochs: int
    val_size: int
    patience: int
    patch: int
    conv_patch: int

    def describe(self, sequences: int, longest: int) -> str:
        """One line for the user: the budget and why."""
        per_epoch = steps_per_epoch(sequences - self.val_size, self.batch_size)
        validation = (f"{self.val_size} of them held out to validate after every epoch, stopping after "
                      f"{self.patience} epochs without a better one and keeping the best weights"
                      if self.val_size else f"all of them trained on (under {MIN_FOR_VALIDATION}: too few to validate on)")
        patches = f"; read in patches of {self.patch} steps ({math.ceil(longest / self.patch)} steps for the core)" if self.patch > 1 else ""
        return (f"plan: {sequences} training sequences, {validation}; batch {self.batch_size}, up to {self.epochs} epochs "
                f"of {per_epoch} steps (about {self.epochs * per_epoch} steps){patches}")


def plan_for(sequences: int, longest: int, features: int = 1) -> Plan:
    """The plan for `sequences` labelled training sequences of `features` values per step, whose
    longest has `longest` steps."""
    val_size = round(VALIDATION_SHARE * sequences) if sequences >= MIN_FOR_VALIDATION else 0
    fit = sequences - val_size
    batch = min(MAX_BATCH, max(MIN_BATCH, 2 ** round(math.log2(max(fit / BATCHES_PER_EPOCH, 1)))))
    patch = max(1, math.ceil(longest / CORE_STEPS))
    cost = batch * math.ceil(longest / patch) * (1 + patch * features / WIDE)
    steps = max(MIN_STEPS, min(STEPS, int(WORK / cost)))
    epochs = math.ceil(steps / steps_per_epoch(fit, batch))
    patience = patience_for(epochs) if val_size else 0
    return Plan(batch, epochs, val_size, patience, patch, conv_patch=patch)


def patience_for(epochs: int) -> int:
    """Validations (one per epoch) without a better one before a run of `epochs` planned epochs stops."""
    return max(MIN_PATIENCE, epochs // 4)
