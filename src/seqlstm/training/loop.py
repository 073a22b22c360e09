"""The trainer: a run set up from a config and a source, a short optimizer `step`, and `fit`, a loop
over steps that tells recorders (recorders.py) what happened. `train` and `resume` are the API."""

from __future__ import annotations

import logging
import math
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .. import distributed
from ..atomic import check_writable
from ..checkpoint import read_training_state
from ..config import TrainConfig
from ..data.batches import longest, shuffled_batches, steps_per_epoch
from ..data.packed import Packed, ReadAhead
from ..data.records import Arrays, ImageSet, PackedSet, SequenceFile, TrainingData, source_for
from ..data.sequences import Sequences
from ..device import resolve_device, resolve_precision
from ..errors import CheckpointError, ConfigError, TrainingInterrupted
from ..evaluation import Evaluation, evaluate
from ..memory import activation_bytes, check_fits, model_bytes
from ..model import LSTMClassifier, lstm_init
from ..plan import FEW_STEPS, plan_for
from ..runs import LAST, default_run_dir, remove_leftovers, start_run_dir
from .recorders import LOGGERS, Recorder, recorders_for
from .state import LoopState, capture, restore

logger = logging.getLogger(__name__)


@dataclass
class Step:
    """What recorders see after each optimizer step."""

    step: int  # optimizer steps done so far, from 1
    epoch: int  # from 1
    batch: int  # batch within the epoch, from 1
    steps_per_epoch: int
    total_steps: int
    epochs: int  # epochs planned
    loss: torch.Tensor  # this rank's loss of the step, still on the device (.item() synchronises)
    lr: float  # the learning rate the step was taken with
    samples: int  # samples in the step's batch, over all ranks
    logged: bool  # the tutorial logs this step's loss (every log_every steps of an epoch)
    loss_value: float | None  # logged steps: the loss averaged over the ranks
    mean_loss: float | None  # logged steps: the mean loss of every step since the previous logged one
    samples_per_s: float | None  # logged steps: training samples per second since the last logged step
    validate: bool  # a validation follows the step
    end_of_epoch: bool
    checkpoint: bool  # a resumable checkpoint falls due after the step (and its validation)
    last: bool  # the last step of the plan


@dataclass
class TrainResult:
    model: LSTMClassifier
    config: TrainConfig  # as resolved: run_dir is set
    evaluation: Evaluation | None  # on the test split; None for arrays in memory, which bring none
    checkpoint: Path | None  # None when nothing was written (the estimator's default)
    losses: list[float]  # the loss of every logged step, in order (a resumed run's include the earlier ones)
    run_dir: Path | None


def train(
    config: TrainConfig,
    log: Callable[[str], None] = print,
    recorders: Sequence[Recorder] = (),
    source: ImageSet | SequenceFile | PackedSet | Arrays | None = None,
    files: bool = True,
    test: bool = True,
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
        recorders: more recorders (training/recorders.py: a progress bar, a logger, a benchmark's
            clock), told of the run's events after seqlstm's own.
        source: the record of what to learn from (data/records.py); None: the one `config.dataset`
            names. Arrays in memory come this way (with `config.dataset` None).
        files: False writes nothing at all — no run directory, no checkpoint — and leaves Ctrl+C
            to raise KeyboardInterrupt (the estimator's way).
        test: False never reads the test split, nor evaluates on it (a trial of `seqlstm tune`).
    Returns:
        TrainResult with the trained model, its test evaluation, the checkpoint path and the run directory.
    """
    source = source_for(config.dataset) if source is None else source
    return run(source.pin(config), log, recorders, None, source, files, test)


def resume(
    checkpoint: str | os.PathLike,
    log: Callable[[str], None] = print,
    recorders: Sequence[Recorder] = (),
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
    return run(config, log, recorders, saved, source_for(config.dataset), files=True)


def resolve(config: TrainConfig) -> TrainConfig:
    """`config` as a run of it would train: the user's files by absolute path and, for a user's
    sequences, the plan's budget filled in (the training data is read for it, never the test data).
    `seqlstm train --print-config`."""
    source = source_for(config.dataset)
    config = source.pin(config)
    return with_plan(config, source.load(config, test=False), source) if source.planned else config


def run(config: TrainConfig, log: Callable[[str], None], recorders: Sequence[Recorder], saved: dict | None, source,
        files: bool, test: bool = True) -> TrainResult:
    """Train from scratch (`saved` None) or from a resumable checkpoint dict, as `train` describes.

    Under torchrun, every process joins the process group and trains its shard of each batch;
    only rank 0 logs and writes files, and the group is left however the run ends.
    """
    if config.log and not files:
        raise ConfigError(f"log {', '.join(config.log)} writes into the run directory, and this run writes no files")
    # Made now, so that a logger that is not installed is refused before any work.
    loggers = [LOGGERS[name]() for name in config.log]
    device = resolve_device(config.device)

    def fit(device: torch.device) -> TrainResult:
        trainer = Trainer(config, source, device, saved, files, test)
        return trainer.fit(recorders_for(trainer, log, [*recorders, *loggers]))

    if not distributed.launched():
        return fit(device)
    device = distributed.start(device)
    done = False
    try:
        result = fit(device)
        done = True
        return result
    finally:
        distributed.stop(together=done)


class Trainer:
    """One training run, set up: its data, model, optimizer, schedule, generators and run directory.

    `fit` trains it; recorders read the run through the attributes below and steer it through
    three: `interrupted` (a signal number: checkpoint and stop), `stopping` (end the run after
    this step) and `final_weights` (the state dict to test and save instead of the last step's).
    """

    def __init__(self, config: TrainConfig, source, device: torch.device, saved: dict | None = None, files: bool = True,
                 test: bool = True):
        """Set the run up from `config` and `source` on `device`; `saved` (a resumable checkpoint's
        dict) continues a run. `files` False writes nothing (no run directory, no checkpoint);
        `test` False never reads the test split."""
        self.source, self.device, self.files = source, device, files
        writes = distributed.is_main() and files
        self.amp_dtype = resolve_precision(config.precision, device)
        if writes:
            # Before the work: a bad --out must not cost a training run, nor replace the data it reads.
            check_writable(config.out, reads=source.files(config))
        # The test split is loaded now so that a missing test file fails before training rather than after it.
        data = source.load(config, test)
        if saved is None:  # what a later command (or a resume) checks the user's files against
            config = replace(config, digests=source.digests(config) or None)
        config = with_plan(config, data, source)
        self.classes, self.test_set = data.classes, data.test
        train_set, validation = hold_out(config, data, source)
        self.validation = None if validation is None else validation.to(device)
        distributed.check_batches(len(train_set.labels), config.batch_size)  # before the run directory is made
        check_memory(config, data, train_set, device)

        self.run_dir = None
        if writes and saved is None:
            # Claimed now, once the data is known to be good: a failed start leaves no folder behind.
            self.run_dir = start_run_dir(Path(config.run_dir)) if config.run_dir else default_run_dir(config, source.name)
            config = replace(config, run_dir=str(self.run_dir))
        elif files:
            self.run_dir = Path(config.run_dir or "runs")  # resumed, or a rank that writes nothing
            if writes:
                remove_leftovers(self.run_dir)
        self.config = config
        self.last = self.run_dir / LAST if files else None

        self.model = build_model(config, data, train_set)
        # The lengths stay on the CPU too, where batches are drawn: no device synchronisation per step.
        self.cpu_lengths = train_set.lengths
        self.streamed = isinstance(train_set, Packed)
        self.reader = ReadAhead(train_set) if self.streamed else None
        self.train_set = train_set.to(device)
        self.model.to(device)
        # Every rank starts from the same weights (same seed; DDP also copies rank 0's) and DDP averages
        # the gradients, so the ranks' models stay identical and `model` is the one to evaluate and save.
        self.net = (DistributedDataParallel(self.model, device_ids=None if device.type == "cpu" else [device])
                    if distributed.launched() else self.model)
        # PyTorch's default Adam (multi-tensor "foreach"), AdamW when weight decay is asked for (decay
        # apart from the adaptive step, so it shrinks every weight alike): the fused kernel measured no
        # faster here (the step is <3 % of an iteration) and would make the tutorial recipe differ in the last bits.
        self.optimizer = (torch.optim.AdamW(self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
                          if config.weight_decay else torch.optim.Adam(self.model.parameters(), lr=config.lr))
        self.per_epoch = steps_per_epoch(len(train_set.labels), config.batch_size)
        planned = self.per_epoch * config.epochs
        self.total_steps = min(config.max_steps or planned, planned)
        if source.planned and self.total_steps < FEW_STEPS:
            logger.warning(
                "warning: only %d optimizer steps (%d training sequences, batch %d, %d epochs): too few for a model to "
                "learn from; leave --epochs and --batch-size unset to let seqlstm plan the budget, or raise --epochs",
                self.total_steps, len(train_set.labels), config.batch_size, config.epochs)
        self.schedule = make_schedule(self.optimizer, config, self.total_steps)
        self.criterion = nn.CrossEntropyLoss(weight=class_weights(config, train_set.labels, len(self.classes), device),
                                             label_smoothing=config.label_smoothing)
        self.order = torch.Generator().manual_seed(config.seed)
        # A generator of its own, so that turning augmentation on or off keeps the same data order.
        self.shifts = torch.Generator().manual_seed(config.seed + 1)
        self.loop = LoopState()
        self.resumed = saved is not None
        if saved is not None:
            self.restore(saved)
        self.recorders: list[Recorder] = []
        self.interrupted: int | None = None
        self.stopping = False
        self.final_weights: dict | None = None

    def restore(self, saved: dict) -> None:
        """Put the weights, optimizer, schedule, generators and loop position of a resumable checkpoint back."""
        try:
            self.model.load_state_dict(saved["state_dict"])
        except RuntimeError as e:
            # load_state_dict lists every mismatched tensor over many lines; the first says what is wrong.
            raise CheckpointError(f"the checkpoint's weights do not fit its config: {str(e).strip().splitlines()[0]}") from None
        # Every rank draws the same batch order and shifts (for the whole batch, before taking its
        # shard) and nothing else random, so rank 0's saved generators are every rank's.
        self.loop = restore(saved["training"], self.optimizer, self.schedule, self.order, self.shifts)
        if self.loop.loss_sum is not None:  # read on the CPU; the steps add to it on the device
            self.loop.loss_sum = self.loop.loss_sum.to(self.device)
        logger.info("resuming at step %d of %d (epoch %d, batch %d)", self.loop.step, self.total_steps, self.loop.epoch,
                    self.loop.batch)

    def fit(self, recorders: Sequence[Recorder]) -> TrainResult:
        """Train to the end of the plan or an early stop, test, and return the result.

        The recorders hear every event (Recorder's methods) in the order given; on ranks other
        than 0, only those marked `everywhere`.
        """
        self.recorders = [r for r in recorders if r.everywhere or distributed.is_main()]
        self.model.train()
        try:
            self.emit("start")
            self.speed = Speedometer()
            for batch, following in () if self.finished() else self.batches():
                step = self.step(batch, following)
                self.emit("after_step", step)
                if step.validate:
                    self.validate(step)
                if step.end_of_epoch:
                    self.emit("epoch_end", step)
                if step.checkpoint or self.interrupted:
                    with self.speed.paused():
                        self.emit("checkpoint", step)
                if self.interrupted:
                    raise TrainingInterrupted(self.interrupted, step.step, self.last)
                if self.finished():
                    break
            if self.final_weights is not None:
                self.model.load_state_dict(self.final_weights)
            evaluation = None if self.test_set is None else evaluate_shards(self.model, self.test_set, "test", self.amp_dtype)
            self.emit("end", evaluation)
        finally:
            if self.reader is not None:
                self.reader.close()
            self.emit("close")
        path = Path(self.config.out) if self.files else None
        return TrainResult(self.model, self.config, evaluation, path, self.loop.losses, self.run_dir)

    def emit(self, event: str, *args) -> None:
        """Call `event` on every recorder, in order."""
        for recorder in self.recorders:
            getattr(recorder, event)(self, *args)

    def finished(self) -> bool:
        return self.loop.step == self.total_steps or self.stopping

    def batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        """The batches (sample indices, on the CPU) still to train on, epoch by epoch from where the
        loop is, each with the batch after it in its epoch (None for the last): a resumed run
        redraws its epoch's order and skips the batches it did."""
        for epoch in range(self.loop.epoch, self.config.epochs + 1):
            if epoch != self.loop.epoch:
                self.loop.epoch, self.loop.batch = epoch, 0
            self.loop.epoch_order = self.order.get_state()
            bucket_by = self.cpu_lengths if self.config.bucket else None
            left = shuffled_batches(len(self.train_set.labels), self.config.batch_size, self.order, bucket_by)[self.loop.batch:]
            yield from zip(left, [*left[1:], None])

    def step(self, batch: torch.Tensor, following: torch.Tensor | None = None) -> Step:
        """One optimizer step on the training samples numbered `batch` (N,), whole over the ranks;
        `following`, the batch after it, is read from a pack while this one trains."""
        steps = longest(self.cpu_lengths, batch)  # padded to this batch's longest, not the file's
        if self.streamed:
            # A pack's samples are read from disk, each rank reading only its own part of the batch.
            # Packs hold sequences, which are never augmented.
            last = following is None or self.loop.step + 1 == self.total_steps  # nothing to read ahead for
            ahead = None if last else (distributed.shard(following), longest(self.cpu_lengths, following))
            x, lengths, labels = self.reader.read(distributed.shard(batch), steps, ahead).to(self.device)
        else:
            inputs, lengths, labels = self.train_set.read(batch, steps)
            # Augmentation (the shifts of images) is drawn for the whole batch, so each sample moves as
            # it would in one process.
            x = distributed.shard(self.source.augment(inputs, self.config, self.shifts))
            lengths, labels = (None if t is None else distributed.shard(t) for t in (lengths, labels))
        if self.cpu_lengths is not None and bool((self.cpu_lengths[batch] == x.shape[1]).all()):
            lengths = None  # no padding in this batch (told on the CPU: no device sync)
        # Autocast runs the LSTM and head in bf16 where enabled; weights, gradients and the optimizer
        # stay float32, so only the matrix products lose precision.
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            # The mean over this rank's equal shard: DDP's average of them is the batch mean.
            loss = self.criterion(self.net(x, lengths), labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.clip_grad:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip_grad, foreach=True)
        lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step()
        if self.schedule is not None:
            self.schedule.step()
        self.loop.step += 1
        self.loop.batch += 1
        # Summed on the device: no synchronisation until a logged step reads it.
        self.loop.loss_sum = loss.detach().float() + (0 if self.loop.loss_sum is None else self.loop.loss_sum)
        self.loop.loss_count += 1
        self.speed.count(len(batch))
        return self.describe(loss, lr, len(batch))

    def describe(self, loss: torch.Tensor, lr: float, samples: int) -> Step:
        """The step just taken, with what falls due after it."""
        loop, config = self.loop, self.config
        # Counted within the epoch as the tutorial does; over the run when an epoch is shorter than
        # the interval (a small file), which would otherwise never log.
        logged = (loop.batch if self.per_epoch >= config.log_every else loop.step) % config.log_every == 0
        end_of_epoch = loop.batch == self.per_epoch
        last = loop.step == self.total_steps
        validate = self.validation is not None and (
            end_of_epoch or last or (config.eval_every is not None and loop.step % config.eval_every == 0))
        checkpoint = last or (loop.step % config.checkpoint_every == 0 if config.checkpoint_every else end_of_epoch)
        loss_value = mean_loss = samples_per_s = None
        if logged:
            # .item() synchronises with the device, so it happens only on logged steps.
            loss_value = distributed.mean(loss).item()
            mean_loss = distributed.mean(loop.loss_sum / loop.loss_count).item()
            loop.loss_sum, loop.loss_count = None, 0
            loop.losses.append(loss_value)
            samples_per_s = self.speed.samples_per_s()
        return Step(loop.step, loop.epoch, loop.batch, self.per_epoch, self.total_steps, config.epochs, loss, lr, samples,
                    logged, loss_value, mean_loss, samples_per_s, validate, end_of_epoch, checkpoint, last)

    def validate(self, step: Step) -> None:
        """Evaluate on the validation split, keep the loop's best, and tell the recorders."""
        with self.speed.paused():
            result = evaluate_shards(self.model, self.validation, "validation", self.amp_dtype)
            loop = self.loop
            improved = loop.best_val_accuracy is None or (result.accuracy, -result.loss) > (
                loop.best_val_accuracy, -loop.best_val_loss)
            loop.since_best = 0 if improved else loop.since_best + 1
            if improved:
                loop.best_val_accuracy, loop.best_val_loss = result.accuracy, result.loss
            self.emit("after_validation", step, result, improved)

    def state(self) -> dict:
        """The `training` entry of a resumable checkpoint (state.py)."""
        return capture(self.loop, self.optimizer, self.schedule, self.shifts)


def make_schedule(optimizer: torch.optim.Optimizer, config: TrainConfig, total_steps: int):
    """The learning-rate schedule, or None for a constant rate.

    One-cycle warms up from lr/25 to `lr` over the first 30 % of the steps, then anneals to almost
    zero: the warm-up keeps the early, large LSTM gradients from overshooting, and the long anneal
    settles into a better minimum than a constant rate, within the same step budget.
    """
    if config.schedule == "constant":
        return None
    return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=total_steps)


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


def hold_out(config: TrainConfig, data: TrainingData, source) -> tuple[Sequences | Packed, Sequences | Packed | None]:
    """The training split and the validation split held out of it (None without `config.val_size`)."""
    train_set = data.train
    if not config.val_size:
        return train_set, None
    if config.val_size >= len(train_set.labels):
        raise ConfigError(
            f"val_size {config.val_size} leaves nothing to train on: the {source.name} training split "
            f"has {len(train_set.labels)} {data.inputs['kind']}; use a smaller --val-size"
        )
    kept, held_out = source.hold_out(train_set.labels, config.val_size)
    return train_set.take(kept), train_set.take(held_out)


def check_memory(config: TrainConfig, data: TrainingData, train_set: Sequences, device: torch.device) -> None:
    """Before anything is allocated: a size the machine cannot hold is refused with the figures."""
    directions = 2 if config.bidirectional else 1
    needed = (model_bytes(data.features, config.hidden_size, config.num_layers, len(data.classes), directions, config.conv,
                          config.patch, config.conv_patch)
              + activation_bytes(config.batch_size, math.ceil(data.steps / config.patch), config.hidden_size,
                                 config.num_layers, directions)
              + (resident_bytes(train_set) if device.type != "cpu" else 0))
    check_fits(f"training a {config.num_layers} x {config.hidden_size} {config.cell} model in batches of {config.batch_size}",
               needed, device, "choose a smaller --hidden-size, --num-layers or --batch-size")


def resident_bytes(samples: Sequences | Packed) -> int:
    """Bytes `samples` take on the device: all of them in memory; a pack's stay on disk."""
    return 0 if isinstance(samples, Packed) else sum(t.numel() * t.element_size() for t in samples if t is not None)


def build_model(config: TrainConfig, data: TrainingData, train_set: Sequences) -> LSTMClassifier:
    """The model `config` describes, seeded, initialised and fitted to the training inputs' statistics."""
    torch.manual_seed(config.seed)
    model = LSTMClassifier(data.features, config.hidden_size, config.num_layers, len(data.classes), config.cell,
                           patch=config.patch, bidirectional=config.bidirectional, pool=config.pool,
                           dropout=config.dropout, conv=config.conv, series_norm=config.normalize == "series",
                           conv_patch=config.conv_patch, classes=data.classes, inputs=data.inputs)
    if config.init != "default":
        memory = math.ceil(model.inputs.steps / config.patch) if config.init == "chrono" else None
        for core in (model.lstm, model.lstm_reverse):
            if core is not None:
                lstm_init(core, memory=memory)
    if config.normalize == "standard":
        # Inputs of mean 0 and std 1 per feature keep the gates out of saturation from the first step.
        model.inputs.fit(train_set)
    return model


def class_weights(config: TrainConfig, labels: torch.Tensor, classes: int, device: torch.device) -> torch.Tensor | None:
    """Per-class loss weights (classes,) for `--class-weight balanced`: n / (classes * count), so every
    class weighs the same in the loss whatever its count; None for unweighted."""
    if config.class_weight == "none":
        return None
    counts = torch.bincount(labels.cpu(), minlength=classes).clamp(min=1).float()
    return (len(labels) / (classes * counts)).to(device)


def evaluate_shards(model: LSTMClassifier, samples: Sequences | Packed, split: str, precision: torch.dtype | None) -> Evaluation:
    """`evaluate` on `samples`, each rank taking its own slice of them (no sample twice) and the
    ranks' results combined into the whole split's."""
    if distributed.world_size() > 1:
        samples = samples.take(distributed.shard(torch.arange(len(samples.labels))))
    return distributed.combine(evaluate(model, samples.inputs, samples.labels, split, precision, lengths=samples.lengths))


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
