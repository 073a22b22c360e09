"""The training loop: the tutorial's recipe on tensors held in memory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .checkpoint import save_checkpoint
from .config import TrainConfig
from .data import load_dataset
from .data.batches import shuffled_batches, steps_per_epoch
from .data.sequences import image_rows
from .data.sources import get_dataset
from .device import resolve_device
from .evaluate import Evaluation, evaluate
from .model import LSTMClassifier


@dataclass
class TrainResult:
    model: LSTMClassifier
    config: TrainConfig
    evaluation: Evaluation
    checkpoint: Path
    losses: list[float]  # the loss of every logged step, in order


def train(config: TrainConfig, log: Callable[[str], None] = print) -> TrainResult:
    """Train a classifier as `config` says, evaluate it on the test split and save it to `config.out`.

    `log` receives the tutorial's progress lines (`Epoch [1/2], Step [100/600], Loss: 0.2355`) and
    the final accuracy line. Returns the trained model, its evaluation and the checkpoint path.
    """
    device = resolve_device(config.device)
    classes = get_dataset(config.dataset).classes
    train_set = load_dataset(config.dataset, "train", config.data_dir)
    # Loaded now so that a missing test file fails before training rather than after it.
    test_set = load_dataset(config.dataset, "test", config.data_dir)

    torch.manual_seed(config.seed)
    images, labels = train_set.images.to(device), train_set.labels.to(device)
    model = LSTMClassifier(images.shape[2], config.hidden_size, config.num_layers, len(classes), config.cell).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    criterion = nn.CrossEntropyLoss()
    order = torch.Generator().manual_seed(config.seed)

    total_steps = steps_per_epoch(len(images), config.batch_size)
    losses: list[float] = []
    step = 0
    model.train()
    for epoch in range(config.epochs):
        for i, batch in enumerate(shuffled_batches(len(images), config.batch_size, order, device)):
            loss = criterion(model(image_rows(images[batch])), labels[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if (i + 1) % config.log_every == 0:
                # .item() synchronises with the device, so it happens only on logged steps.
                losses.append(loss.item())
                log(f"Epoch [{epoch + 1}/{config.epochs}], Step [{i + 1}/{total_steps}], Loss: {losses[-1]:.4f}")
            if step == config.max_steps:
                break
        if step == config.max_steps:
            break

    evaluation = evaluate(model, test_set.images, test_set.labels)
    log(evaluation.summary())
    path = save_checkpoint(
        config.out, model, config, metrics={"test_accuracy": evaluation.accuracy, "steps": step}
    )
    return TrainResult(model, config, evaluation, path, losses)
