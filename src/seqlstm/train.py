"""The training loop: the tutorial's model and hyperparameters on tensors held in memory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .atomic import check_writable
from .checkpoint import save_checkpoint
from .config import TrainConfig
from .data import load_dataset
from .data.augment import random_shift
from .data.batches import shuffled_batches, steps_per_epoch
from .data.sequences import image_rows
from .data.sources import get_dataset
from .device import resolve_device, resolve_precision
from .evaluate import Evaluation, evaluate
from .model import LSTMClassifier, lstm_init


@dataclass
class StepInfo:
    """What an `on_step` hook sees after each optimizer step."""

    step: int  # optimizer steps done so far, from 1
    epoch: int  # from 1
    batch: int  # batch within the epoch, from 1
    steps_per_epoch: int
    total_steps: int
    loss: torch.Tensor  # this step's loss, still on the device (call .item() only when needed)
    lr: float
    model: LSTMClassifier


@dataclass
class TrainResult:
    model: LSTMClassifier
    config: TrainConfig
    evaluation: Evaluation
    checkpoint: Path
    losses: list[float]  # the loss of every logged step, in order


def make_schedule(optimizer: torch.optim.Optimizer, config: TrainConfig, total_steps: int):
    """The learning-rate schedule, or None for a constant rate.

    One-cycle warms up from lr/25 to `lr` over the first 30 % of the steps, then anneals to almost
    zero: the warm-up keeps the early, large LSTM gradients from overshooting, and the long anneal
    settles into a better minimum than a constant rate, within the same step budget.
    """
    if config.schedule == "constant":
        return None
    return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=total_steps)


def train(
    config: TrainConfig,
    log: Callable[[str], None] = print,
    on_step: Callable[[StepInfo], None] | None = None,
) -> TrainResult:
    """Train a classifier as `config` says, evaluate it on the test split and save it to `config.out`.

    Args:
        config: the run's settings (see TrainConfig).
        log: receives the tutorial's progress lines (`Epoch [1/2], Step [100/600], Loss: 0.2355`)
            and the final accuracy line.
        on_step: called after every optimizer step (for metrics, benchmarks, notebooks).
    Returns:
        TrainResult with the trained model, its test evaluation and the checkpoint path.
    """
    device = resolve_device(config.device)
    amp_dtype = resolve_precision(config.precision, device)
    check_writable(config.out)  # before the work: a bad --out must not cost a training run
    classes = get_dataset(config.dataset).classes
    train_set = load_dataset(config.dataset, "train", config.data_dir)
    # Loaded now so that a missing test file fails before training rather than after it.
    test_set = load_dataset(config.dataset, "test", config.data_dir)

    torch.manual_seed(config.seed)
    images, labels = train_set.images.to(device), train_set.labels.to(device)
    model = LSTMClassifier(images.shape[2], config.hidden_size, config.num_layers, len(classes), config.cell)
    if config.init == "lstm":
        lstm_init(model.lstm)
    model.to(device)
    # PyTorch's default Adam (multi-tensor "foreach"): the fused kernel measured no faster here
    # (the step is <3 % of an iteration) and would make the tutorial recipe differ in the last bits.
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    per_epoch = steps_per_epoch(len(images), config.batch_size)
    planned = per_epoch * config.epochs
    total_steps = min(config.max_steps or planned, planned)
    schedule = make_schedule(optimizer, config, total_steps)
    criterion = nn.CrossEntropyLoss()
    order = torch.Generator().manual_seed(config.seed)
    # A generator of its own, so that turning augmentation on or off keeps the same data order.
    shifts = torch.Generator().manual_seed(config.seed + 1)

    losses: list[float] = []
    step = 0
    model.train()
    for epoch in range(1, config.epochs + 1):
        for batch, indices in enumerate(shuffled_batches(len(images), config.batch_size, order, device), 1):
            x = image_rows(random_shift(images[indices], config.augment_shift, shifts))
            # Autocast runs the LSTM and head in bf16 where enabled; weights, gradients and the
            # optimizer stay float32, so only the matrix products lose precision.
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                loss = criterion(model(x), labels[indices])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.clip_grad:
                nn.utils.clip_grad_norm_(model.parameters(), config.clip_grad, foreach=True)
            lr = optimizer.param_groups[0]["lr"]
            optimizer.step()
            if schedule is not None:
                schedule.step()
            step += 1
            if batch % config.log_every == 0:
                # .item() synchronises with the device, so it happens only on logged steps.
                losses.append(loss.item())
                log(f"Epoch [{epoch}/{config.epochs}], Step [{batch}/{per_epoch}], Loss: {losses[-1]:.4f}")
            if on_step is not None:
                on_step(StepInfo(step, epoch, batch, per_epoch, total_steps, loss, lr, model))
            if step == total_steps:
                break
        if step == total_steps:
            break

    evaluation = evaluate(model, test_set.images, test_set.labels, precision=amp_dtype)
    log(evaluation.summary())
    path = save_checkpoint(
        config.out, model, config, metrics={"test_accuracy": evaluation.accuracy, "steps": step}
    )
    return TrainResult(model, config, evaluation, path, losses)
