"""The trainer and its recorders, on a tiny model and tiny data: the events and their order, the run
directory and metrics, resuming exactly, the NaN stop, early stopping's weights, and TensorBoard."""

from __future__ import annotations

import json
import platform
import re
import shutil
import signal
import sys

import numpy as np
import pytest
import torch

from conftest import tiny_task
from seqlstm import ConfigError, NonFiniteLossError, Recorder, TrainConfig, TrainingInterrupted, resume, train
from seqlstm.checkpoint import read_checkpoint
from seqlstm.config import LOGGER_NAMES
from seqlstm.runs import read_metrics
from seqlstm.training.recorders import LOGGERS

STEPS = 60
PER_EPOCH = 14  # 141 training sequences in whole batches of 10
# The loss is logged every 5 batches of an epoch, as the tutorial counts.
LOGGED = [s for s in range(1, STEPS + 1) if ((s - 1) % PER_EPOCH + 1) % 5 == 0]
VALIDATED = [s for s in range(1, STEPS + 1) if s % PER_EPOCH == 0 or s % 25 == 0 or s == STEPS]


@pytest.fixture
def tiny(tmp_path) -> TrainConfig:
    """A tiny run on a tiny file: 161 training sequences (20 of them held out to validate) and 39 to
    test; 60 steps of 10, the loss logged every 5 of an epoch, validation every 25 steps and after
    each epoch, last.ckpt every 20 steps."""
    np.savez(tmp_path / "tiny.npz", **tiny_task())
    return TrainConfig(dataset=str(tmp_path / "tiny.npz"), hidden_size=8, num_layers=1, conv=0, batch_size=10, epochs=5,
                       max_steps=STEPS, log_every=5, val_size=20, patience=0, eval_every=25, checkpoint_every=20,
                       precision="fp32", out=str(tmp_path / "m.ckpt"), run_dir=str(tmp_path / "run"))


class Heard(Recorder):
    """Every event, with its step, in order."""

    def __init__(self):
        self.events = []

    def start(self, trainer):
        self.events.append(("start", trainer.loop.step))

    def after_step(self, trainer, step):
        self.events.append(("after_step", step.step))

    def after_validation(self, trainer, step, result, improved):
        self.events.append(("after_validation", step.step))

    def epoch_end(self, trainer, step):
        self.events.append(("epoch_end", step.step))

    def checkpoint(self, trainer, step):
        self.events.append(("checkpoint", step.step))

    def end(self, trainer, evaluation):
        self.events.append(("end", evaluation.split))

    def close(self, trainer):
        self.events.append(("close", trainer.loop.step))


def test_the_events_of_a_run_in_their_order(tiny):
    heard = Heard()
    result = train(tiny, log=lambda line: None, recorders=[heard])
    expected = [("start", 0)]
    for step in range(1, STEPS + 1):
        expected.append(("after_step", step))
        if step in VALIDATED:  # after each epoch, every 25 steps and at the end
            expected.append(("after_validation", step))
        if step % PER_EPOCH == 0:
            expected.append(("epoch_end", step))
        if step % 20 == 0:
            expected.append(("checkpoint", step))
    assert heard.events == expected + [("end", "test"), ("close", STEPS)]
    assert len(result.losses) == len(LOGGED)


class EveryLoss(Recorder):
    def __init__(self):
        self.losses = {}

    def after_step(self, trainer, step):
        self.losses[step.step] = step.loss.item()


def test_the_run_directory_metrics_and_printed_lines_agree(tiny, tmp_path):
    lines, every = [], EveryLoss()
    result = train(tiny, log=lines.append, recorders=[every])
    run = tmp_path / "run"
    assert sorted(p.name for p in run.iterdir()) == ["best.ckpt", "config.json", "last.ckpt", "metrics.jsonl", "plots"]
    assert sorted(p.name for p in (run / "plots").iterdir()) == ["training.png"]
    record = json.loads((run / "config.json").read_text())
    assert TrainConfig.from_dict(record["config"]) == result.config
    assert (record["torch"], record["python"], record["device"]) == (torch.__version__, platform.python_version(), "cpu")

    records = read_metrics(run)
    expected = sorted([(s, "train") for s in LOGGED] + [(s, "validation") for s in VALIDATED])
    assert [(r["step"], r.get("split", "train")) for r in records] == expected + [(STEPS, "test")]
    steps = [r for r in records if "split" not in r]
    assert all(set(r) == {"step", "epoch", "loss", "mean_loss", "lr", "samples_per_s"} and r["samples_per_s"] > 0
               for r in steps)
    assert [r["loss"] for r in steps] == result.losses == [every.losses[r["step"]] for r in steps]
    # The mean loss is that of every step since the previous logged one.
    since = [0] + [r["step"] for r in steps]
    for (start, end), r in zip(zip(since, since[1:]), steps):
        assert r["mean_loss"] == pytest.approx(np.mean([every.losses[k] for k in range(start + 1, end + 1)]), rel=1e-6)
    printed = [float(m) for m in re.findall(r"Loss: (\d+\.\d{4})$", "\n".join(lines), re.M)]
    assert printed == [round(loss, 4) for loss in result.losses]
    assert lines[-1] == result.evaluation.summary() == (
        f"Test Accuracy of the model on the 39 test sequences: {records[-1]['accuracy']:.2f} %")

    # best.ckpt: the first of the best validations; last.ckpt: the last step, resumable; --out: the final model.
    validations = [r for r in records if r.get("split") == "validation"]
    top = max(validations, key=lambda r: (r["accuracy"], -r["loss"]))
    best = read_checkpoint(run / "best.ckpt")
    assert best["metrics"] == {"validation_accuracy": top["accuracy"], "steps": top["step"]} and "training" not in best
    assert read_checkpoint(run / "last.ckpt")["training"]["step"] == STEPS
    assert read_checkpoint(tmp_path / "m.ckpt")["metrics"] == {"test_accuracy": result.evaluation.accuracy, "steps": STEPS}


def test_nothing_is_written_when_files_is_false(tiny, tmp_path):
    result = train(tiny, log=lambda line: None, files=False)
    assert (result.checkpoint, result.run_dir) == (None, None)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "cache") == ["tiny.npz"]


class StopAt(Recorder):
    """Sends this process SIGINT after `step`, as Ctrl+C would."""

    def __init__(self, step: int):
        self.step = step

    def after_step(self, trainer, step):
        if step.step == self.step:
            signal.raise_signal(signal.SIGINT)


@pytest.mark.parametrize("stop_at", [20, 33])  # on a checkpoint's step, and between them
def test_an_interrupted_run_resumed_ends_as_the_unbroken_one(tiny, tmp_path, stop_at):
    unbroken = train(tiny, log=lambda line: None)
    config = TrainConfig.from_dict({**tiny.to_dict(), "out": str(tmp_path / "b.ckpt"), "run_dir": str(tmp_path / "b")})
    with pytest.raises(TrainingInterrupted) as stopped:
        train(config, log=lambda line: None, recorders=[StopAt(stop_at)])
    assert (stopped.value.signum, stopped.value.step) == (signal.SIGINT, stop_at)
    assert read_checkpoint(stopped.value.checkpoint)["training"]["step"] == stop_at
    assert not (tmp_path / "b.ckpt").exists()

    heard = Heard()
    resumed = resume(stopped.value.checkpoint, log=lambda line: None, recorders=[heard])
    assert heard.events[:2] == [("start", stop_at), ("after_step", stop_at + 1)]
    assert resumed.losses == unbroken.losses
    a, b = read_checkpoint(unbroken.checkpoint)["state_dict"], read_checkpoint(resumed.checkpoint)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    speedless = lambda run: [{k: v for k, v in r.items() if k != "samples_per_s"} for r in read_metrics(run)]
    assert speedless(tmp_path / "b") == speedless(tmp_path / "run")


class Poison(Recorder):
    """Makes the model's output NaN from the step after `step` on."""

    def __init__(self, step: int):
        self.step = step

    def after_step(self, trainer, step):
        if step.step == self.step:
            with torch.no_grad():
                trainer.model.fc.bias.fill_(float("nan"))


def test_a_nan_loss_stops_the_run_at_its_step_and_keeps_the_last_good_checkpoint(tiny, tmp_path):
    with pytest.raises(NonFiniteLossError) as stopped:
        train(tiny, log=lambda line: None, recorders=[Poison(46)])
    assert str(stopped.value) == (
        "the loss became NaN or infinite at step 47 (epoch 4, batch 5); training stopped there and saved nothing after "
        f"it: the last good checkpoint is {tmp_path / 'run' / 'last.ckpt'} (step 40). Lower --lr or check the data")
    last = read_checkpoint(tmp_path / "run" / "last.ckpt")
    assert last["training"]["step"] == 40
    # Step 47's loss is not logged: the last records are step 38's loss and the validation after epoch 3.
    assert [r["step"] for r in read_metrics(tmp_path / "run")][-2:] == [38, 42]
    assert not (tmp_path / "m.ckpt").exists()


def test_early_stopping_tests_and_saves_the_best_validations_weights(tiny, tmp_path):
    config = TrainConfig.from_dict({**tiny.to_dict(), "patience": 1, "lr": 0.05, "schedule": "constant", "max_steps": None,
                                    "epochs": 40, "eval_every": None})
    lines = []
    result = train(config, log=lines.append)
    validations = [r for r in read_metrics(tmp_path / "run") if r.get("split") == "validation"]
    best = max(validations, key=lambda r: (r["accuracy"], -r["loss"]))
    # Stopped one validation after the best (patience 1), well before the 40 epochs.
    assert validations[-1]["step"] == validations[validations.index(best) + 1]["step"] < 40 * 14
    saved = read_checkpoint(result.checkpoint)["state_dict"]
    at_best = read_checkpoint(tmp_path / "run" / "best.ckpt")
    assert at_best["metrics"]["steps"] == best["step"]
    assert all(torch.equal(saved[k], at_best["state_dict"][k]) for k in saved)


def tensorboard_scalars(run) -> dict:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


class KeepCheckpoint(Recorder):
    """Copies last.ckpt aside after `step` (that of the checkpoint before it)."""

    def __init__(self, step: int, to):
        self.step, self.to = step, to

    def after_step(self, trainer, step):
        if step.step == self.step:
            shutil.copyfile(trainer.last, self.to)


@pytest.mark.parametrize("killed", [False, True])
def test_tensorboard_holds_the_numbers_of_metrics_jsonl(tiny, tmp_path, killed):
    config = TrainConfig.from_dict({**tiny.to_dict(), "log": ["tensorboard"]})
    if not killed:
        train(config, log=lambda line: None)
    else:
        # As if killed after step 33: its last checkpoint is step 20's, and steps 21-33 were logged already.
        with pytest.raises(TrainingInterrupted):
            train(config, log=lambda line: None, recorders=[KeepCheckpoint(21, tmp_path / "at20.ckpt"), StopAt(33)])
        shutil.copyfile(tmp_path / "at20.ckpt", tmp_path / "run" / "last.ckpt")
        resume(tmp_path / "run" / "last.ckpt", log=lambda line: None)
    scalars = tensorboard_scalars(tmp_path / "run")
    records = read_metrics(tmp_path / "run")
    f32 = lambda x: float(np.float32(x))  # TensorBoard keeps float32
    expected = {f"train/{name}": [(r["step"], f32(r[name])) for r in records if "split" not in r]
                for name in ("loss", "mean_loss", "lr", "samples_per_s")}
    for split in ("validation", "test"):
        for name in ("accuracy", "loss"):
            expected[f"{split}/{name}"] = [(r["step"], f32(r[name])) for r in records if r.get("split") == split]
    assert scalars == expected


def test_a_logger_that_is_not_installed_or_not_known_is_refused_before_any_work(tiny, tmp_path, monkeypatch):
    assert set(LOGGERS) == set(LOGGER_NAMES)
    with pytest.raises(ConfigError, match="unknown logger 'mlflow'; log can name tensorboard"):
        TrainConfig.from_dict({**tiny.to_dict(), "log": ["mlflow"]})
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # importing it now fails as if not installed
    config = TrainConfig.from_dict({**tiny.to_dict(), "log": ["tensorboard"]})
    with pytest.raises(ConfigError, match=r'--log tensorboard needs the tensorboard package \(.*\); install it with: '
                                          r'pip install "seqlstm\[tensorboard\]"'):
        train(config, log=lambda line: None)
    assert not (tmp_path / "run").exists()
