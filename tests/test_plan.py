"""The training plan for a user's sequences: its arithmetic, what it tells the user, early stopping
that keeps the best weights, and a long series learned with no flags at all."""

from __future__ import annotations

import json
import signal

import numpy as np
import pytest
import torch

from conftest import run_cli
from seqlstm import Recorder, TrainConfig, TrainingInterrupted, load_checkpoint, resume, train
from seqlstm.checkpoint import read_checkpoint
from seqlstm.plan import Plan, plan_for


@pytest.mark.parametrize("sequences, longest, features, expected", [
    # Small files: every sequence trains, in batches of 8, for 2000 steps.
    (20, 5, 1, Plan(batch_size=8, epochs=667, val_size=0, patience=0, patch=1, conv_patch=1)),
    (36, 251, 1, Plan(batch_size=8, epochs=400, val_size=0, patience=0, patch=2, conv_patch=2)),
    (67, 24, 1, Plan(batch_size=8, epochs=223, val_size=0, patience=0, patch=1, conv_patch=1)),
    # Batches grow with the file, about ten to an epoch; long series are read in patches (at most ~128 core steps).
    (200, 427, 1, Plan(batch_size=16, epochs=154, val_size=0, patience=0, patch=4, conv_patch=4)),
    # Large batches of long series: the work bound leaves 496 steps, not 2000.
    (499, 1460, 1, Plan(batch_size=64, epochs=62, val_size=0, patience=0, patch=12, conv_patch=12)),
    # From 500 sequences a fifth validates, with patience a quarter of the epochs (at least 10).
    (1000, 100, 1, Plan(batch_size=64, epochs=48, val_size=200, patience=12, patch=1, conv_patch=1)),
    (1000, 1000, 1, Plan(batch_size=64, epochs=38, val_size=200, patience=10, patch=8, conv_patch=8)),
    (100_000, 64, 1, Plan(batch_size=64, epochs=1, val_size=20_000, patience=10, patch=1, conv_patch=1)),
    # Many features make each step dearer: 1345 channels in patches of 3 leave 455 steps (measured: 66 s in all).
    (50, 270, 1345, Plan(batch_size=8, epochs=65, val_size=0, patience=0, patch=3, conv_patch=3)),
    (270, 29, 12, Plan(batch_size=32, epochs=223, val_size=0, patience=0, patch=1, conv_patch=1)),
])
def test_plan_arithmetic(sequences, longest, features, expected):
    assert plan_for(sequences, longest, features) == expected


def noisy_task(n: int, seed: int) -> dict:
    """Two classes told apart by the sign of a series' mean, with a third of the labels flipped:
    a model learns the rule first, then memorises the flipped labels, and validation falls."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.normal(0, 1, (n, 12, 1)).astype(np.float32) + np.where(y == 1, 0.4, -0.4)[:, None, None].astype(np.float32)
    flipped = rng.random(n) < 0.33
    return dict(X=x, y=np.where(flipped, 1 - y, y))


@pytest.mark.slow
def test_early_stopping_keeps_the_weights_of_the_best_validation(tmp_path):
    np.savez(tmp_path / "noisy.npz", **noisy_task(240, 0))
    config = TrainConfig(dataset=str(tmp_path / "noisy.npz"), val_size=60, patience=15, epochs=150, batch_size=16,
                         hidden_size=64, conv=0, lr=0.01, schedule="constant", precision="fp32",
                         out=str(tmp_path / "m.ckpt"), run_dir=str(tmp_path / "run"))
    lines = []
    result = train(config, log=lines.append)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    validations = [r for r in records if r.get("split") == "validation"]
    best = max(validations, key=lambda r: (r["accuracy"], -r["loss"]))
    # The case does what it is for: validation peaked, then fell, and the run stopped before its end.
    assert validations[-1]["accuracy"] < best["accuracy"]
    assert len(validations) == validations.index(best) + 1 + config.patience < config.epochs
    # The saved model is the best validation's, not the last step's.
    saved = read_checkpoint(result.checkpoint)["state_dict"]
    at_best = read_checkpoint(tmp_path / "run" / "best.ckpt")
    assert at_best["metrics"]["steps"] == best["step"]
    assert all(torch.equal(saved[k], at_best["state_dict"][k]) for k in saved)
    last = read_checkpoint(tmp_path / "run" / "last.ckpt")["state_dict"]
    assert not all(torch.equal(saved[k], last[k]) for k in saved)


@pytest.mark.slow
def test_an_early_stopped_run_interrupted_and_resumed_ends_as_the_unbroken_one(tmp_path):
    np.savez(tmp_path / "noisy.npz", **noisy_task(240, 0))
    settings = dict(dataset=str(tmp_path / "noisy.npz"), val_size=60, patience=15, epochs=150, batch_size=16, hidden_size=64,
                    conv=0, lr=0.01, schedule="constant", precision="fp32")
    unbroken = train(TrainConfig(**settings, out=str(tmp_path / "a.ckpt"), run_dir=str(tmp_path / "a")), log=lambda line: None)

    class StopAfterStep100(Recorder):
        def after_step(self, trainer, step):
            if step.step == 100:  # after the best validation (step 63 here), before the run stops (step 198)
                signal.raise_signal(signal.SIGINT)

    with pytest.raises(TrainingInterrupted) as stopped:
        train(TrainConfig(**settings, out=str(tmp_path / "b.ckpt"), run_dir=str(tmp_path / "b")), log=lambda line: None,
              recorders=[StopAfterStep100()])
    resumed = resume(stopped.value.checkpoint, log=lambda line: None)
    assert resumed.evaluation.accuracy == unbroken.evaluation.accuracy
    a, b = read_checkpoint(unbroken.checkpoint)["state_dict"], read_checkpoint(resumed.checkpoint)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_the_plan_is_stated_kept_in_the_checkpoint_and_each_flag_overrides_it(tmp_path, cli):
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "d.npz", X=rng.normal(size=(40, 30, 2)).astype(np.float32), y=np.arange(40) % 2)
    done = cli("train", "--dataset", "d.npz", "--hidden-size", "8", "--num-layers", "1", "--conv", "0",
                   "--epochs", "3", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    line = ("plan: 32 training sequences, all of them trained on (under 500: too few to validate on); batch 8, "
            "up to 3 epochs of 4 steps (about 12 steps) (with the settings you gave)")
    assert line in done.stderr.splitlines()
    assert ("warning: only 12 optimizer steps (32 training sequences, batch 8, 3 epochs): too few for a model to learn "
            "from; leave --epochs and --batch-size unset to let seqlstm plan the budget, or raise --epochs") in done.stderr
    _, config = load_checkpoint(tmp_path / "model.ckpt")
    assert (config.batch_size, config.epochs, config.val_size, config.patience, config.patch, config.conv) == (8, 3, 0, 0, 1, 0)
    assert config.plan == line.removesuffix(" (with the settings you gave)")


def long_task(n: int, seed: int, steps: int = 1000) -> dict:
    """Three classes of noisy series of `steps` values, told apart only by a pattern in their first
    tenth (a step up, a step down, or nothing); the rest is noise that says nothing."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = rng.normal(0, 1, (n, steps)).astype(np.float32)
    start = rng.integers(0, steps // 10 - 20, n)
    for i in range(n):
        x[i, start[i] : start[i] + 20] += (3.0, -3.0, 0.0)[y[i]]
    return dict(X=x, y=y)


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.accuracy
def test_a_long_series_whose_class_is_set_early_is_learned_with_no_flags(tmp_path):
    np.savez(tmp_path / "train.npz", **long_task(150, 0))
    np.savez(tmp_path / "test.npz", **long_task(150, 1))
    done = run_cli("train", "--dataset", "train.npz", "--test-dataset", "test.npz", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "read in patches of 8 steps (125 steps for the core)" in done.stderr
    accuracy = float(done.stdout.strip().splitlines()[-1].split(": ")[-1].removesuffix(" %"))
    print(f"long series, no flags: {accuracy:.2f} % test accuracy")
    # A model reading only the last steps sees noise and stays at chance (33 %).
    assert accuracy >= 90


def test_patience_without_a_validation_share_is_refused_before_training(tmp_path, cli):
    rng = np.random.default_rng(2)
    np.savez(tmp_path / "d.npz", X=rng.normal(size=(40, 30, 2)).astype(np.float32), y=np.arange(40) % 2)
    done = cli("train", "--dataset", "d.npz", "--patience", "5", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "seqlstm: error: --patience 5 stops on validation, but no training sequences are held out to validate on; "
        "give --val-size N as well")
    assert not (tmp_path / "model.ckpt").exists() and not (tmp_path / "runs").exists()
