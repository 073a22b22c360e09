"""Recorders: the small objects a training run tells what happened (loop.py's Trainer calls them).

Each does one thing: the tutorial's log lines, metrics.jsonl, best.ckpt, last.ckpt, the run's
config and final model, the watch for a NaN loss, the stop on SIGINT/SIGTERM, early stopping, the
progress bar, TensorBoard. They hear each event in the order `recorders_for` lists them; that order
is what puts, say, the NaN watch before anything is written.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, TextIO

import torch
from tqdm import tqdm

from ..checkpoint import read_checkpoint, save_checkpoint
from ..errors import ConfigError, NonFiniteLossError
from ..evaluation import Evaluation
from ..interrupt import StopSignals
from ..runs import BEST, MetricsLog, plot_run, write_run_config

if TYPE_CHECKING:
    from .loop import Step, Trainer

logger = logging.getLogger(__name__)


class Recorder:
    """Hears the events of a training run; each method does nothing unless a recorder overrides it.

    A recorder acts on rank 0 only (under torchrun) unless `everywhere`: what every rank must do
    alike, such as stopping at the same step.
    """

    everywhere = False

    def start(self, trainer: Trainer) -> None:
        """The run is set up (a resumed one restored) and about to take its first step."""

    def after_step(self, trainer: Trainer, step: Step) -> None:
        """An optimizer step was taken."""

    def after_validation(self, trainer: Trainer, step: Step, result: Evaluation, improved: bool) -> None:
        """The model was evaluated on the validation split after `step`; `improved`: the best so far."""

    def epoch_end(self, trainer: Trainer, step: Step) -> None:
        """`step` ended an epoch (after its validation)."""

    def checkpoint(self, trainer: Trainer, step: Step) -> None:
        """A resumable checkpoint falls due: on schedule, at the last step, or because the run is interrupted."""

    def end(self, trainer: Trainer, evaluation: Evaluation | None) -> None:
        """Training is over and the final model tested (`evaluation` None without a test split)."""

    def close(self, trainer: Trainer) -> None:
        """The run is over, however it ended: release what `start` took."""


class NonFiniteWatch(Recorder):
    """Ends the run with NonFiniteLossError at the first NaN or infinite loss, before anything after it is
    logged, validated or saved.

    The first bad step is kept on the device, so that watching costs no synchronisation: it is read
    where the loop synchronises anyway (logged steps, validations, checkpoints), and every step on the
    CPU, where reading it costs nothing.
    """

    everywhere = True

    def start(self, trainer: Trainer) -> None:
        self.first_bad = torch.zeros((), dtype=torch.long, device=trainer.device)  # 0: none yet
        self.every = 1 if trainer.device.type == "cpu" else trainer.config.log_every
        self.saved = trainer.loop.step if trainer.resumed else None  # the step of the last good checkpoint

    def after_step(self, trainer: Trainer, step: Step) -> None:
        self.first_bad = torch.where((self.first_bad == 0) & ~torch.isfinite(step.loss.detach()), step.step, self.first_bad)
        if step.logged or step.validate or step.checkpoint or step.step % self.every == 0:
            self.check(trainer)

    def checkpoint(self, trainer: Trainer, step: Step) -> None:
        self.check(trainer)  # an interrupted run checkpoints at any step
        if trainer.last is not None:
            self.saved = step.step

    def check(self, trainer: Trainer) -> None:
        bad = int(self.first_bad)
        if bad:
            epoch, batch = divmod(bad - 1, trainer.per_epoch)
            kept = (f"the last good checkpoint is {trainer.last} (step {self.saved})" if self.saved
                    else "no checkpoint had been written yet")
            raise NonFiniteLossError(
                f"the loss became NaN or infinite at step {bad} (epoch {epoch + 1}, batch {batch + 1}); "
                f"training stopped there and saved nothing after it: {kept}. Lower --lr or check the data"
            )


class TutorialLog(Recorder):
    """The tutorial's lines (`Epoch [1/2], Step [100/600], Loss: 0.2355`), each validation's and the test's."""

    def __init__(self, log: Callable[[str], None]):
        self.log = log

    def after_step(self, trainer: Trainer, step: Step) -> None:
        if step.logged:
            self.log(f"Epoch [{step.epoch}/{step.epochs}], Step [{step.batch}/{step.steps_per_epoch}], Loss: {step.loss_value:.4f}")

    def after_validation(self, trainer: Trainer, step: Step, result: Evaluation, improved: bool) -> None:
        # Epochs shorter than the log interval (a small file) would print a line per epoch: only the
        # improvements are told then.
        short = step.steps_per_epoch < trainer.config.log_every
        if not short or improved:
            self.log(result.summary() + (" (best so far)" if improved and short else ""))

    def end(self, trainer: Trainer, evaluation: Evaluation | None) -> None:
        if evaluation is not None:
            self.log(evaluation.summary())


class MetricsFile(Recorder):
    """metrics.jsonl: a record for every logged step, every validation and the test."""

    def __init__(self):
        self.file: MetricsLog | None = None

    def start(self, trainer: Trainer) -> None:
        self.file = MetricsLog(trainer.run_dir, resume_step=trainer.loop.step if trainer.resumed else None)

    def after_step(self, trainer: Trainer, step: Step) -> None:
        if step.logged:
            self.file.write(dict(step=step.step, epoch=step.epoch, loss=step.loss_value, mean_loss=step.mean_loss, lr=step.lr,
                                 samples_per_s=step.samples_per_s))

    def after_validation(self, trainer: Trainer, step: Step, result: Evaluation, improved: bool) -> None:
        self.file.write(dict(step=step.step, epoch=step.epoch, split="validation", accuracy=result.accuracy, loss=result.loss))

    def end(self, trainer: Trainer, evaluation: Evaluation | None) -> None:
        if evaluation is not None:
            self.file.write(dict(step=trainer.loop.step, epoch=trainer.loop.epoch, split="test",
                                 accuracy=evaluation.accuracy, loss=evaluation.loss))

    def close(self, trainer: Trainer) -> None:
        if self.file is not None:
            self.file.close()


class RunRecord(Recorder):
    """The run directory's frame: config.json at the start; at the end the model (`config.out`, with its
    test accuracy) and plots/training.png."""

    def start(self, trainer: Trainer) -> None:
        # A resumed run's record is written again: the machine, device or data folder may be new.
        write_run_config(trainer.run_dir, trainer.config, trainer.device, trainer.amp_dtype)
        logger.info("run directory: %s", trainer.run_dir)

    def end(self, trainer: Trainer, evaluation: Evaluation | None) -> None:
        tested = {} if evaluation is None else {"test_accuracy": evaluation.accuracy}
        save_checkpoint(Path(trainer.config.out), trainer.model, trainer.config, metrics={**tested, "steps": trainer.loop.step})
        plot_run(trainer.run_dir)


class BestCheckpoint(Recorder):
    """best.ckpt: the model at its best validation so far."""

    def after_validation(self, trainer: Trainer, step: Step, result: Evaluation, improved: bool) -> None:
        if improved:
            save_checkpoint(trainer.run_dir / BEST, trainer.model, trainer.config,
                            metrics={"validation_accuracy": result.accuracy, "steps": step.step})


class LastCheckpoint(Recorder):
    """last.ckpt: the model and everything needed to continue the run exactly (`seqlstm train --resume`)."""

    def checkpoint(self, trainer: Trainer, step: Step) -> None:
        save_checkpoint(trainer.last, trainer.model, trainer.config, metrics={"steps": step.step}, training=trainer.state())


class StopOnSignal(Recorder):
    """SIGINT and SIGTERM stop the run after the running step, with a checkpoint to resume from
    (TrainingInterrupted); a second signal stops at once."""

    everywhere = True  # torchrun signals every rank; each stops after the same step

    def __init__(self):
        self.signals: StopSignals | None = None

    def start(self, trainer: Trainer) -> None:
        self.signals = StopSignals().__enter__()

    def after_step(self, trainer: Trainer, step: Step) -> None:
        if self.signals.received is not None:
            trainer.interrupted = self.signals.received

    def close(self, trainer: Trainer) -> None:
        if self.signals is not None:
            self.signals.__exit__(None, None, None)


class EarlyStopping(Recorder):
    """Ends the run after `patience` validations in a row without a better one, and has the trainer
    test and save the best validation's weights rather than the last step's."""

    everywhere = True  # every rank stops at the same step and tests the same weights

    def __init__(self, patience: int):
        self.patience = patience

    def start(self, trainer: Trainer) -> None:
        loop = trainer.loop
        if trainer.resumed and loop.best_val_accuracy is not None:
            trainer.final_weights = read_checkpoint(trainer.run_dir / BEST)["state_dict"]
        trainer.stopping = loop.since_best >= self.patience

    def after_validation(self, trainer: Trainer, step: Step, result: Evaluation, improved: bool) -> None:
        if improved:
            trainer.final_weights = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
        if trainer.loop.since_best >= self.patience:
            trainer.stopping = True

    def end(self, trainer: Trainer, evaluation: Evaluation | None) -> None:
        loop = trainer.loop
        if trainer.final_weights is not None:
            logger.info("kept the weights of the best validation (accuracy %.2f %%, loss %.4f) for the test%s",
                        loop.best_val_accuracy, loop.best_val_loss,
                        f"; stopped early at step {loop.step} of {trainer.total_steps}" if trainer.stopping else "")


class ProgressBar(Recorder):
    """Step, epoch, smoothed loss, samples/s and ETA on `stream` (stderr), when `enabled`.

    Give `log` as train's log and the bar as a recorder: `log` prints the tutorial's lines on stdout
    either way, above the bar when there is one.
    """

    # The bar's loss is read from the device (a synchronisation) at most this often, never every step.
    REFRESH_S = 0.5
    # Weight of the old value in the bar's smoothed loss and samples/s.
    SMOOTHING = 0.7

    def __init__(self, enabled: bool, stream: TextIO | None = None):
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.bar: tqdm | None = None
        self.loss: float | None = None
        self.samples_per_s: float | None = None

    def log(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line, file=sys.stdout)
        else:
            print(line, flush=True)

    def start(self, trainer: Trainer) -> None:
        if self.enabled:
            self.bar = tqdm(total=trainer.total_steps, initial=trainer.loop.step, unit="step", file=self.stream,
                            dynamic_ncols=True)
            self.bar.set_description_str(f"epoch {trainer.loop.epoch}/{trainer.config.epochs}", refresh=False)
            self.samples, self.since = 0, time.perf_counter()

    def after_step(self, trainer: Trainer, step: Step) -> None:
        if self.bar is None:
            return
        self.samples += step.samples
        now = time.perf_counter()
        if now - self.since >= self.REFRESH_S or step.last:
            self.loss = self.smooth(self.loss, step.loss.item())
            self.samples_per_s = self.smooth(self.samples_per_s, self.samples / (now - self.since))
            self.samples, self.since = 0, now
            self.bar.set_postfix_str(f"loss {self.loss:.4f}, {self.samples_per_s:,.0f} samples/s", refresh=False)
        self.bar.update(1)

    def epoch_end(self, trainer: Trainer, step: Step) -> None:
        if self.bar is not None and step.epoch < step.epochs:
            self.bar.set_description_str(f"epoch {step.epoch + 1}/{step.epochs}", refresh=False)

    def close(self, trainer: Trainer) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def smooth(self, old: float | None, new: float) -> float:
        return new if old is None else self.SMOOTHING * old + (1 - self.SMOOTHING) * new


class TensorBoard(Recorder):
    """The numbers of metrics.jsonl as TensorBoard scalars, in RUN_DIR/tensorboard (`--log tensorboard`):
    train/loss, train/mean_loss, train/lr and train/samples_per_s at each logged step; validation/accuracy and
    validation/loss; test/accuracy and test/loss at the end. `tensorboard --logdir runs` shows every run."""

    FOLDER = "tensorboard"

    def __init__(self):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:
            raise ConfigError(f'--log tensorboard needs the tensorboard package ({e}); install it with: '
                              f'pip install "seqlstm[tensorboard]"') from None
        self.writer_type = SummaryWriter
        self.writer = None

    def start(self, trainer: Trainer) -> None:
        # A resumed run drops what was logged after its checkpoint, as metrics.jsonl does: those steps come again.
        purge = trainer.loop.step + 1 if trainer.resumed else None
        self.writer = self.writer_type(str(trainer.run_dir / self.FOLDER), purge_step=purge)

    def after_step(self, trainer: Trainer, step: Step) -> None:
        if step.logged:
            for name in ("loss", "mean_loss", "lr", "samples_per_s"):
                self.writer.add_scalar(f"train/{name}", getattr(step, "loss_value" if name == "loss" else name), step.step)

    def after_validation(self, trainer: Trainer, step: Step, result: Evaluation, improved: bool) -> None:
        self.scalars("validation", result, step.step)

    def epoch_end(self, trainer: Trainer, step: Step) -> None:
        self.writer.flush()  # an epoch's curves show in TensorBoard as soon as the epoch ends

    def end(self, trainer: Trainer, evaluation: Evaluation | None) -> None:
        if evaluation is not None:
            self.scalars("test", evaluation, trainer.loop.step)

    def scalars(self, split: str, result: Evaluation, step: int) -> None:
        self.writer.add_scalar(f"{split}/accuracy", result.accuracy, step)
        self.writer.add_scalar(f"{split}/loss", result.loss, step)

    def close(self, trainer: Trainer) -> None:
        if self.writer is not None:
            self.writer.close()


# `--log NAME`: the loggers a run can write to besides metrics.jsonl.
LOGGERS = {"tensorboard": TensorBoard}


def recorders_for(trainer: Trainer, log: Callable[[str], None], extra: list[Recorder]) -> list[Recorder]:
    """The recorders of a run, in the order they hear each event, with `extra` (the caller's and the
    loggers') after those that report and before those that act on the run: the NaN watch comes
    first, so nothing is logged or saved after a bad step; metrics.jsonl before the printed line, so
    the file holds at least what the user saw; the signal stop and last.ckpt come last, so a
    checkpoint holds everything the step and its validation did."""
    config, files = trainer.config, trainer.files
    chosen: list[Recorder] = [NonFiniteWatch(), *([MetricsFile()] if files else []), TutorialLog(log)]
    if files:
        chosen.append(RunRecord())
    chosen += extra
    if config.patience:
        chosen.append(EarlyStopping(config.patience))
    if files:
        chosen += [BestCheckpoint(), StopOnSignal(), LastCheckpoint()]
    return chosen
