"""The training loop: the tutorial's model and hyperparameters on tensors held in memory, with a
run directory that records it and lets it continue exactly after an interruption."""

from __future__ import annotations

import logging
import math
import os
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from . import distributed
from .atomic import check_writable
from .checkpoint import read_checkpoint, read_training_state, save_checkpoint
from .config import TrainConfig
from .data.batches import longest, shuffled_batches, steps_per_epoch
from .data.records import Arrays, ImageSet, SequenceFile, TrainingData, source_for
from .data.sequences import Sequences
from .device import resolve_device, resolve_precision
from .errors import CheckpointError, ConfigError, NonFiniteLossError, TrainingInterrupted
from .evaluate import Evaluation, evaluate
from .interrupt import StopSignals
from .memory import activation_bytes, check_fits, model_bytes
from .model import LSTMClassifier, lstm_init
from .plan import FEW_STEPS, plan_for
from .resume import LoopState, capture, restore
from .runs import BEST, LAST, MetricsLog, default_run_dir, plot_run, remove_leftovers, start_run_dir, write_run_config

logger = logging.getLogger(__name__)


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
    epochs: int  # epochs planned
    samples: int  # samples in this step's batch


@dataclass
class TrainResult:
    model: LSTMClassifier
    config: TrainConfig  # as resolved: run_dir is set
    evaluation: Evaluation | None  # on the test split; None for arrays in memory, which bring none
    checkpoint: Path | None  # None when nothing was written (the estimator's default)
    losses: list[float]  # the loss of every logged step, in order (a resumed run's include the earlier ones)
    run_dir: Path | None


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
    source: ImageSet | SequenceFile | Arrays | None = None,
    files: bool = True,
) -> TrainResult:
    """Train a classifier as `config` says, evaluate it on the test split and save it to `config.out`.

    The run directory (`config.run_dir`, default `runs/<UTC time>-<dataset>-<cell>`) receives
    config.json, metrics.jsonl, last.ckpt (resumable, see `resume`), best.ckpt (with a validation
    split) and plots/training.png. SIGINT/SIGTERM stop after the running step, save last.ckpt and
    raise TrainingInterrupted; a NaN or infinite loss raises NonFiniteLossError, saving nothing.

    Args:
        config: the run's settings (see TrainConfig).
        log: receives the tutorial's progress lines (`Epoch [1/2], Step [100/600], Loss: 0.2355`),
            the validation lines and the final accuracy line.
        on_step: called after every optimizer step (for progress bars, benchmarks, notebooks).
        source: the record of what to learn from (data/records.py); None: the one `config.dataset`
            names. Arrays in memory come this way (with `config.dataset` None).
        files: False writes nothing at all — no run directory, no checkpoint — and leaves Ctrl+C
            to raise KeyboardInterrupt (the estimator's way).
    Returns:
        TrainResult with the trained model, its test evaluation, the checkpoint path and the run directory.
    """
    source = source_for(config.dataset) if source is None else source
    return run(source.pin(config), log, on_step, None, source, files)


def resume(
    checkpoint: str | os.PathLike,
    log: Callable[[str], None] = print,
    on_step: Callable[[StepInfo], None] | None = None,
    data_dir: str | None = None,
    device: str | None = None,
) -> TrainResult:
    """Continue the run saved in `checkpoint` (a run directory's last.ckpt) to its end.

    The run's stored settings are used, and its folder stays the run directory; `data_dir` and
    `device` (when given) replace the stored ones. On the same machine and device the result is the
    same, bit for bit on the CPU, as if the run had never stopped. Returns what `train` returns.
    """
    saved = read_training_state(checkpoint)
    try:
        config = TrainConfig.from_dict(saved["config"])
    except ConfigError as e:
        raise CheckpointError(f"{checkpoint}: its stored config is not valid: {e}") from None
    config = replace(
        config,
        run_dir=str(Path(checkpoint).parent),
        data_dir=config.data_dir if data_dir is None else data_dir,
        device=config.device if device is None else device,
    )
    return run(config, log, on_step, saved, source_for(config.dataset), files=True)


def run(
    config: TrainConfig, log: Callable[[str], None], on_step: Callable[[StepInfo], None] | None, saved: dict | None,
    source, files: bool,
) -> TrainResult:
    """Train from scratch (`saved` None) or from a resumable checkpoint dict, as `train` describes.

    Under torchrun, every process joins the process group and trains its shard of each batch;
    only rank 0 logs and writes files, and the group is left however the run ends.
    """
    device = resolve_device(config.device)
    if not distributed.launched():
        return fit(config, device, log, on_step, saved, source, files)
    device = distributed.start(device)
    try:
        if not distributed.is_main():
            log, on_step = ignore, None
        return fit(config, device, log, on_step, saved, source, files)
    finally:
        distributed.stop()


def ignore(line: str) -> None:
    """The log of ranks other than 0: one copy of every line is enough."""


def fit(
    config: TrainConfig,
    device: torch.device,
    log: Callable[[str], None],
    on_step: Callable[[StepInfo], None] | None,
    saved: dict | None,
    source,
    files: bool,
) -> TrainResult:
    """The training run itself, in this process, as `run` describes."""
    main = distributed.is_main()
    writes = main and files  # the process that writes the run's files, if any are written
    amp_dtype = resolve_precision(config.precision, device)
    if writes:
        # Before the work: a bad --out must not cost a training run, nor replace the data it reads.
        check_writable(config.out, reads=source.files(config))
    # The test split is loaded now so that a missing test file fails before training rather than after it.
    data = source.load(config)
    if saved is None:  # what a later command (or a resume) checks the user's files against
        config = replace(config, digests=source.digests(config) or None)
    train_set, test_set, classes = data.train, data.test, data.classes
    config = with_plan(config, data, source)
    validation = None
    if config.val_size:
        if config.val_size >= len(train_set.labels):
            raise ConfigError(
                f"val_size {config.val_size} leaves nothing to train on: the {source.name} training split "
                f"has {len(train_set.labels)} {data.inputs['kind']}; use a smaller --val-size"
            )
        kept, held_out = source.hold_out(train_set.labels, config.val_size)
        validation = train_set.take(held_out).to(device)
        train_set = train_set.take(kept)

    distributed.check_batches(len(train_set.labels), config.batch_size)  # before the run directory is made
    # Before anything is allocated: a size the machine cannot hold is refused with the figures.
    directions = 2 if config.bidirectional else 1
    needed = (model_bytes(data.features, config.hidden_size, config.num_layers, len(classes), directions, config.conv,
                          config.patch, config.conv_patch)
              + activation_bytes(config.batch_size, math.ceil(data.steps / config.patch), config.hidden_size,
                                 config.num_layers, directions)
              + (sum(t.numel() * t.element_size() for t in train_set if t is not None) if device.type != "cpu" else 0))
    check_fits(f"training a {config.num_layers} x {config.hidden_size} {config.cell} model in batches of {config.batch_size}",
               needed, device, "choose a smaller --hidden-size, --num-layers or --batch-size")

    run_dir = None
    if writes and saved is None:
        # Claimed now, once the data is known to be good: a failed start leaves no folder behind.
        run_dir = start_run_dir(Path(config.run_dir)) if config.run_dir else default_run_dir(config, source.name)
        config = replace(config, run_dir=str(run_dir))
    elif files:
        run_dir = Path(config.run_dir or "runs")  # resumed, or a rank that writes nothing
        if writes:
            remove_leftovers(run_dir)
    if writes:
        write_run_config(run_dir, config, device, amp_dtype)
        logger.info("run directory: %s", run_dir)

    torch.manual_seed(config.seed)
    model = LSTMClassifier(data.features, config.hidden_size, config.num_layers, len(classes), config.cell,
                           patch=config.patch, bidirectional=config.bidirectional, pool=config.pool,
                           dropout=config.dropout, conv=config.conv, series_norm=config.normalize == "series",
                           conv_patch=config.conv_patch, classes=classes, inputs=data.inputs)
    if config.init != "default":
        memory = math.ceil(model.inputs.steps / config.patch) if config.init == "chrono" else None
        for core in (model.lstm, model.lstm_reverse):
            if core is not None:
                lstm_init(core, memory=memory)
    if config.normalize == "standard":
        # Inputs of mean 0 and std 1 per feature keep the gates out of saturation from the first step.
        model.inputs.fit(train_set.inputs, train_set.lengths)
    # The lengths stay on the CPU too, where batches are drawn: no device synchronisation per step.
    cpu_lengths = train_set.lengths
    train_set = train_set.to(device)
    model.to(device)
    # Every rank starts from the same weights (same seed; DDP also copies rank 0's) and DDP averages
    # the gradients, so the ranks' models stay identical and `model` is the one to evaluate and save.
    net = DistributedDataParallel(model, device_ids=None if device.type == "cpu" else [device]) if distributed.launched() else model
    # PyTorch's default Adam (multi-tensor "foreach"), AdamW when weight decay is asked for (decay
    # apart from the adaptive step, so it shrinks every weight alike): the fused kernel measured no
    # faster here (the step is <3 % of an iteration) and would make the tutorial recipe differ in the last bits.
    optimizer = (torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay) if config.weight_decay
                 else torch.optim.Adam(model.parameters(), lr=config.lr))
    per_epoch = steps_per_epoch(len(train_set.labels), config.batch_size)
    planned = per_epoch * config.epochs
    total_steps = min(config.max_steps or planned, planned)
    if source.planned and total_steps < FEW_STEPS:
        logger.warning(
            "warning: only %d optimizer steps (%d training sequences, batch %d, %d epochs): too few for a model to "
            "learn from; leave --epochs and --batch-size unset to let seqlstm plan the budget, or raise --epochs",
            total_steps, len(train_set.labels), config.batch_size, config.epochs)
    schedule = make_schedule(optimizer, config, total_steps)
    criterion = nn.CrossEntropyLoss(weight=class_weights(config, train_set.labels, len(classes), device),
                                    label_smoothing=config.label_smoothing)
    order = torch.Generator().manual_seed(config.seed)
    # A generator of its own, so that turning augmentation on or off keeps the same data order.
    shifts = torch.Generator().manual_seed(config.seed + 1)
    loop = LoopState()
    best_state = None  # the weights of the best validation so far, when early stopping keeps them
    if saved is not None:
        try:
            model.load_state_dict(saved["state_dict"])
        except RuntimeError as e:
            # load_state_dict lists every mismatched tensor over many lines; the first says what is wrong.
            raise CheckpointError(f"the checkpoint's weights do not fit its config: {str(e).strip().splitlines()[0]}") from None
        # Every rank draws the same batch order and shifts (for the whole batch, before taking its
        # shard) and nothing else random, so rank 0's saved generators are every rank's.
        loop = restore(saved["training"], optimizer, schedule, order, shifts)
        if loop.best_val_accuracy is not None and config.patience:
            best_state = read_checkpoint(run_dir / BEST)["state_dict"]
        logger.info("resuming at step %d of %d (epoch %d, batch %d)", loop.step, total_steps, loop.epoch, loop.batch)

    last = run_dir / LAST if files else None
    saved_step = loop.step if saved is not None else None
    metrics = MetricsLog(run_dir, resume_step=saved_step) if writes else None
    # The first step whose loss was not finite (0: none), kept on the device so that watching for
    # it costs no synchronisation; it is read where the loop syncs anyway, and every step on the
    # CPU, where reading it costs nothing.
    first_bad = torch.zeros((), dtype=torch.long, device=device)
    check_every = 1 if device.type == "cpu" else config.log_every
    speed = Speedometer()

    def check_finite() -> None:
        bad = int(first_bad)
        if bad:
            epoch, batch = divmod(bad - 1, per_epoch)
            kept = (f"the last good checkpoint is {last} (step {saved_step})" if saved_step
                    else "no checkpoint had been written yet")
            raise NonFiniteLossError(
                f"the loss became NaN or infinite at step {bad} (epoch {epoch + 1}, batch {batch + 1}); "
                f"training stopped there and saved nothing after it: {kept}. Lower --lr or check the data"
            )

    model.train()
    try:
        with StopSignals() if files else nullcontext(NO_SIGNALS) as stop:
            for epoch in range(loop.epoch, config.epochs + 1):
                if loop.step == total_steps or stopped(loop, config):
                    break
                if epoch != loop.epoch:
                    loop.epoch, loop.batch = epoch, 0
                loop.epoch_order = order.get_state()
                bucket_by = cpu_lengths if config.bucket else None
                for batch in shuffled_batches(len(train_set.labels), config.batch_size, order, bucket_by)[loop.batch:]:
                    indices = batch.to(device)
                    inputs, lengths, labels = train_set.take(indices)
                    steps = longest(cpu_lengths, batch)
                    if steps is not None:
                        inputs = inputs[:, :steps]  # padded to this batch's longest, not the file's
                    if cpu_lengths is not None and bool((cpu_lengths[batch] == inputs.shape[1]).all()):
                        lengths = None  # no padding in this batch (told on the CPU: no device sync)
                    # Augmentation (the shifts of images) is drawn for the whole batch, so each sample
                    # moves as it would in one process.
                    x = distributed.shard(source.augment(inputs, config, shifts))
                    lengths = None if lengths is None else distributed.shard(lengths)
                    # Autocast runs the LSTM and head in bf16 where enabled; weights, gradients and the
                    # optimizer stay float32, so only the matrix products lose precision.
                    with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                        # The mean over this rank's equal shard: DDP's average of them is the batch mean.
                        loss = criterion(net(x, lengths), distributed.shard(labels))
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    if config.clip_grad:
                        nn.utils.clip_grad_norm_(model.parameters(), config.clip_grad, foreach=True)
                    lr = optimizer.param_groups[0]["lr"]
                    optimizer.step()
                    if schedule is not None:
                        schedule.step()
                    loop.step += 1
                    loop.batch += 1
                    speed.count(len(indices))
                    first_bad = torch.where((first_bad == 0) & ~torch.isfinite(loss.detach()), loop.step, first_bad)

                    # Counted within the epoch as the tutorial does; over the run when an epoch is shorter
                    # than the interval (a small file), which would otherwise never log.
                    logged = (loop.batch if per_epoch >= config.log_every else loop.step) % config.log_every == 0
                    end = loop.batch == per_epoch or loop.step == total_steps
                    validate = validation is not None and (
                        end or (config.eval_every is not None and loop.step % config.eval_every == 0)
                    )
                    checkpoint = loop.step == total_steps or (
                        loop.step % config.checkpoint_every == 0 if config.checkpoint_every else loop.batch == per_epoch
                    )
                    if logged or validate or checkpoint or stop.received or loop.step % check_every == 0:
                        check_finite()
                    if logged:
                        # .item() synchronises with the device, so it happens only on logged steps.
                        loop.losses.append(distributed.mean(loss).item())
                        if writes:
                            metrics.write(dict(step=loop.step, epoch=epoch, loss=loop.losses[-1], lr=lr,
                                               samples_per_s=speed.samples_per_s()))
                        log(f"Epoch [{epoch}/{config.epochs}], Step [{loop.batch}/{per_epoch}], Loss: {loop.losses[-1]:.4f}")
                    if validate:
                        with speed.paused():
                            result = evaluate_shards(model, validation, "validation", amp_dtype)
                            if writes:
                                metrics.write(dict(step=loop.step, epoch=epoch, split="validation",
                                                   accuracy=result.accuracy, loss=result.loss))
                            improved = loop.best_val_accuracy is None or (result.accuracy, -result.loss) > (
                                loop.best_val_accuracy, -loop.best_val_loss)
                            if per_epoch >= config.log_every or improved:
                                log(result.summary() + (" (best so far)" if improved and per_epoch < config.log_every else ""))
                            loop.since_best = 0 if improved else loop.since_best + 1
                            if improved:
                                loop.best_val_accuracy, loop.best_val_loss = result.accuracy, result.loss
                                if config.patience:
                                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                                if writes:
                                    save_checkpoint(run_dir / BEST, model, config,
                                                    metrics={"validation_accuracy": result.accuracy, "steps": loop.step})
                    if on_step is not None:
                        on_step(StepInfo(loop.step, epoch, loop.batch, per_epoch, total_steps, loss, lr, model,
                                         config.epochs, len(indices)))
                    if (checkpoint or stop.received) and writes:
                        with speed.paused():
                            save_checkpoint(last, model, config, metrics={"steps": loop.step},
                                            training=capture(loop, optimizer, schedule, shifts))
                    if (checkpoint or stop.received) and files:
                        saved_step = loop.step
                    if stop.received:
                        raise TrainingInterrupted(stop.received, loop.step, last)
                    if loop.step == total_steps or stopped(loop, config):
                        break

        if best_state is not None:
            logger.info("kept the weights of the best validation (accuracy %.2f %%, loss %.4f) for the test%s",
                        loop.best_val_accuracy, loop.best_val_loss,
                        f"; stopped early at step {loop.step} of {total_steps}" if stopped(loop, config) else "")
            model.load_state_dict(best_state)
        evaluation = None if test_set is None else evaluate_shards(model, test_set, "test", amp_dtype)
        if writes and evaluation is not None:
            metrics.write(dict(step=loop.step, epoch=loop.epoch, split="test", accuracy=evaluation.accuracy, loss=evaluation.loss))
    finally:
        if writes:
            metrics.close()
    if evaluation is not None:
        log(evaluation.summary())
    path = Path(config.out) if files else None
    if writes:
        tested = {} if evaluation is None else {"test_accuracy": evaluation.accuracy}
        save_checkpoint(path, model, config, metrics={**tested, "steps": loop.step})
        plot_run(run_dir)
    return TrainResult(model, config, evaluation, path, loop.losses, run_dir)


class NoSignals:
    """Stands in for StopSignals when a run writes no files: Ctrl+C stays a KeyboardInterrupt."""

    received = None


NO_SIGNALS = NoSignals()


def with_plan(config: TrainConfig, data: TrainingData, source) -> TrainConfig:
    """`config` with every budget setting the user left unset filled in by the plan for a user's
    sequences (plan.py), and the plan's line logged and kept in `config.plan`. Image sets have the
    tutorial's settings already."""
    if not source.planned:
        return config
    if config.plan is not None:  # a resumed run: planned when it started
        logger.info("%s", config.plan)
        return config
    train_set = data.train
    steps = data.steps
    chosen = plan_for(len(train_set.labels), int(train_set.lengths.max()) if train_set.lengths is not None else steps,
                      data.features)
    unset = {name: value for name, value in vars(chosen).items() if getattr(config, name) is None}
    if "conv_patch" in unset and "patch" not in unset:
        unset["conv_patch"] = config.patch  # the branch reads the patches the user chose for the core
    config = replace(config, **unset)
    if config.patience and not config.val_size:
        raise ConfigError(
            f"--patience {config.patience} stops on validation, but no training sequences are held out to validate on; "
            "give --val-size N as well"
        )
    line = replace(chosen, **{name: getattr(config, name) for name in vars(chosen)}).describe(len(train_set.labels), steps)
    logger.info("%s", line if len(unset) == len(vars(chosen)) else f"{line} (with the settings you gave)")
    return replace(config, plan=line)


def class_weights(config: TrainConfig, labels: torch.Tensor, classes: int, device: torch.device) -> torch.Tensor | None:
    """Per-class loss weights (classes,) for `--class-weight balanced`: n / (classes * count), so every
    class weighs the same in the loss whatever its count; None for unweighted."""
    if config.class_weight == "none":
        return None
    counts = torch.bincount(labels.cpu(), minlength=classes).clamp(min=1).float()
    return (len(labels) / (classes * counts)).to(device)


def stopped(loop: LoopState, config: TrainConfig) -> bool:
    """True when early stopping ends the run: `patience` validations in a row without a better one."""
    return bool(config.patience) and loop.since_best >= config.patience


def evaluate_shards(model: LSTMClassifier, samples: Sequences, split: str, precision: torch.dtype | None) -> Evaluation:
    """`evaluate` on `samples`, each rank taking its own slice of them (no sample twice) and the
    ranks' results combined into the whole split's."""
    inputs, lengths, labels = (None if t is None else distributed.shard(t) for t in samples)
    return distributed.combine(evaluate(model, inputs, labels, split, precision, lengths=lengths))


class Speedometer:
    """Training samples per second between logged steps, not counting evaluation and checkpoints."""

    def __init__(self):
        self.samples = 0
        self.since = time.perf_counter()

    def count(self, samples: int) -> None:
        self.samples += samples

    def samples_per_s(self) -> float:
        """The rate since the last call (or the start), and start counting afresh."""
        now = time.perf_counter()
        rate = self.samples / (now - self.since)
        self.samples, self.since = 0, now
        return rate

    @contextmanager
    def paused(self):
        """The time spent inside does not count towards the rate."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.since += time.perf_counter() - start
