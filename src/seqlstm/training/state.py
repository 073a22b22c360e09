"""What a run must keep to continue exactly: the optimizer, the schedule, the position in the data
and every random number generator the loop draws from, as tensors and plain containers."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..errors import CheckpointError


@dataclass
class LoopState:
    """Where the training loop is. A run resumed from it replays the same batches in the same order."""

    step: int = 0  # optimizer steps done
    epoch: int = 1  # the epoch in progress (from 1)
    batch: int = 0  # batches of `epoch` done
    # The shuffling generator's state when `epoch` began: drawing the epoch's order from it again
    # gives the same order, and leaves the generator where the uninterrupted run had it.
    epoch_order: torch.Tensor | None = None
    losses: list[float] = field(default_factory=list)  # every logged loss so far
    # The sum of every step's loss since the last logged step, and their number: the logged mean
    # loss covers every step, and a resumed run carries the sum on exactly.
    loss_sum: torch.Tensor | None = None
    loss_count: int = 0
    best_val_accuracy: float | None = None
    best_val_loss: float | None = None  # of the best validation: breaks a tie in accuracy
    since_best: int = 0  # validations since the best one (early stopping's count)


def capture(
    loop: LoopState,
    optimizer: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LRScheduler | None,
    shifts: torch.Generator,
) -> dict:
    """The `training` entry of a resumable checkpoint."""
    return {
        "step": loop.step,
        "epoch": loop.epoch,
        "batch": loop.batch,
        "losses": list(loop.losses),
        "best_val_accuracy": loop.best_val_accuracy,
        "best_val_loss": loop.best_val_loss,
        "since_best": loop.since_best,
        "loss_sum": None if loop.loss_sum is None else loop.loss_sum.detach().cpu(),
        "loss_count": loop.loss_count,
        "optimizer": optimizer.state_dict(),
        "schedule": None if schedule is None else schedule.state_dict(),
        # NumPy's and Python's generators are not listed: nothing in training draws from them.
        "rng": {
            "epoch_order": loop.epoch_order,
            "shifts": shifts.get_state(),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
        },
    }


def restore(
    training: dict,
    optimizer: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LRScheduler | None,
    order: torch.Generator,
    shifts: torch.Generator,
) -> LoopState:
    """Put the optimizer, schedule and generators back as `capture` found them; return the loop's state.

    The shuffling generator is set to the state at the start of the saved epoch; the caller
    redraws that epoch's order and skips the batches already done. CheckpointError if the state
    does not fit this model and optimizer.
    """
    try:
        optimizer.load_state_dict(training["optimizer"])
        if schedule is not None:
            schedule.load_state_dict(training["schedule"])
        rng = training["rng"]
        order.set_state(rng["epoch_order"])
        shifts.set_state(rng["shifts"])
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        return LoopState(
            step=int(training["step"]),
            epoch=int(training["epoch"]),
            batch=int(training["batch"]),
            epoch_order=rng["epoch_order"],
            losses=[float(x) for x in training["losses"]],
            best_val_accuracy=training["best_val_accuracy"],
            # Runs saved before early stopping existed kept no loss of their best validation.
            best_val_loss=training.get("best_val_loss", float("inf")),
            since_best=int(training.get("since_best", 0)),
            # Runs saved before the mean loss existed start its sum afresh.
            loss_sum=training.get("loss_sum"),
            loss_count=int(training.get("loss_count", 0)),
        )
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"the checkpoint's training state does not fit this run: {e}") from None
