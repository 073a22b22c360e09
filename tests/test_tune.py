"""`seqlstm tune`: Optuna's search over training settings, under the training protocol — trials
choose on validation sequences, the test split is read once, by the final model."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import tiny_task
from seqlstm import ConfigError, TrainConfig
from seqlstm.checkpoint import read_checkpoint
from seqlstm.data.records import SequenceFile

optuna = pytest.importorskip("optuna")

from seqlstm.tuning import (FOLD_STEPS, Fold, Report, default_space, enqueue_default,  # noqa: E402
                            folds_for, open_study, read_space, suggest, train_best, tune)

# The tiny problem's model, and a budget of 12 epochs, validating after each on 60 (stratified)
# of the 200 training sequences.
TINY = dict(hidden_size=8, num_layers=1, conv=0, precision="fp32", batch_size=16, epochs=12, val_size=60)


@pytest.fixture
def tiny_files(tmp_path) -> tuple[Path, Path]:
    np.savez(tmp_path / "train.npz", **tiny_task(200))
    np.savez(tmp_path / "test.npz", **tiny_task(90, seed=7))
    return tmp_path / "train.npz", tmp_path / "test.npz"


def config_for(files: tuple[Path, Path], **settings) -> TrainConfig:
    return TrainConfig(dataset=str(files[0]), test_dataset=str(files[1]), **{**TINY, **settings})


def states(study) -> list[str]:
    return [t.state.name for t in study.trials]


@dataclass(frozen=True)
class Watched(SequenceFile):
    """The training file's record, noting every load and whether it asked for the test split."""

    asked: list = None

    def load(self, config, test: bool = True):
        self.asked.append(test)
        return super().load(config, test)


@pytest.mark.slow
def test_a_tiny_study_finds_the_planted_learning_rate_and_tests_only_the_best(tmp_path, tiny_files):
    # One rate learns the problem in the budget, the other cannot move the weights.
    space = {"lr": [0.00001, 0.02]}
    watched = Watched(str(tiny_files[0]), asked=[])
    lines = []
    result = tune(config_for(tiny_files), tmp_path / "tune", trials=4, space=space, log_line=lines.append, source=watched)
    values = {t.params["lr"]: t.user_attrs["accuracy"] for t in result.study.trials}
    assert result.best_params == {"lr": 0.02} and values[0.02] > values[0.00001] + 20
    # The test split was asked for once, by the final training; the plan and every trial left it unread.
    assert watched.asked == [False] * 5 + [True]
    assert result.final.evaluation.total == 90 and result.final.evaluation.accuracy > 60  # chance: 33 %
    saved = read_checkpoint(tmp_path / "tune" / "best.ckpt")
    assert saved["config"]["lr"] == 0.02 and saved["config"]["val_size"] == 0
    rows = list(csv.DictReader(open(result.results)))
    assert [r["trial"] for r in rows] == ["0", "1", "2", "3"] and {r["state"] for r in rows} == {"complete"}
    assert (tmp_path / "tune" / "plots" / "history.png").stat().st_size > 0
    assert sum(line.startswith("trial ") for line in lines) == 4
    # Every trial is a run of its own.
    assert sorted(p.name for p in (tmp_path / "tune" / "trials" / "train").iterdir()) == ["0000", "0001", "0002", "0003"]

    # Run again on the finished study: no trial more, and the best is not trained twice.
    again = tune(config_for(tiny_files), tmp_path / "tune", trials=4, space=space, log_line=lines.append)
    assert len(again.study.trials) == 4 and again.final is None



@pytest.mark.slow
def test_a_small_file_s_trial_is_the_mean_of_its_folds(tmp_path, monkeypatch):
    # 45 sequences validating on 9 at a time: a trial trains three folds of five, each validating on others.
    np.savez(tmp_path / "small.npz", **tiny_task(45))
    np.savez(tmp_path / "test.npz", **tiny_task(30, seed=7))
    held_out = []
    hold_out = Fold.hold_out
    monkeypatch.setattr(Fold, "hold_out", lambda self, labels, size: held_out.append(hold_out(self, labels, size)[1])
                        or hold_out(self, labels, size))
    config = config_for((tmp_path / "small.npz", tmp_path / "test.npz"), val_size=9, epochs=6)
    result = tune(config, tmp_path / "tune", trials=1, space={"lr": [0.02]}, log_line=lambda line: None)
    trial = result.study.trials[0]
    assert sorted(p.name for p in (tmp_path / "tune" / "trials" / "small" / "0000").iterdir()) == ["fold-1", "fold-2", "fold-3"]
    assert [len(h) for h in held_out] == [9, 9, 9] and len(set().union(*(set(h.tolist()) for h in held_out))) == 27
    # The trial's value is its folds' mean score; each fold's is the mean of its last 3 validations (a run to its end).
    folds = trial.user_attrs["folds"]
    assert len(folds) == 3 and trial.user_attrs["accuracy"] == pytest.approx(np.mean(folds), abs=0.01)
    assert trial.user_attrs["epochs"] == 6
    assert sorted(trial.intermediate_values) == [f * FOLD_STEPS + e for f in range(3) for e in range(1, 7)]
    per_fold = [np.mean([trial.intermediate_values[f * FOLD_STEPS + e] for e in (4, 5, 6)]) for f in range(3)]
    assert trial.value == pytest.approx(np.mean(per_fold))


def test_folds_hold_out_disjoint_stratified_shares():
    labels = torch.tensor([0] * 20 + [1] * 10 + [2] * 15)
    held = [Fold(None, f, 5, seed=0).hold_out(labels, 9) for f in range(3)]
    for kept, out in held:
        assert sorted([*kept.tolist(), *out.tolist()]) == list(range(45))
        # A fifth of every class: 4, 2 and 3 of them.
        assert torch.bincount(labels[out], minlength=3).tolist() == [4, 2, 3]
    outs = [set(out.tolist()) for _, out in held]
    assert not (outs[0] & outs[1]) and not (outs[0] & outs[2]) and not (outs[1] & outs[2])
    # Seeded: the same folds again; another seed, others.
    assert Fold(None, 0, 5, seed=0).hold_out(labels, 9)[1].tolist() == held[0][1].tolist()
    assert Fold(None, 0, 5, seed=1).hold_out(labels, 9)[1].tolist() != held[0][1].tolist()


def test_the_folds_follow_the_validation_share_and_the_classes():
    labels = torch.tensor([0] * 20 + [1] * 10 + [2] * 15)
    assert folds_for(labels, 9) == (3, 5)  # 27 validated in all: the most folds
    assert folds_for(labels, 20) == (2, 2)  # 45 / 20: a 2-fold split has two folds only
    assert folds_for(labels, 30) == (2, 2) and folds_for(labels, 60) == (1, 0)  # 60 validated by one: no folds
    # Classes of two: a stratified split has two folds at most; of one: none.
    assert folds_for(torch.arange(52).repeat(2), 21) == (2, 2)
    assert folds_for(torch.arange(40), 8) == (1, 0)


def test_a_run_is_scored_on_a_window_of_validations_not_one_peak():
    report = Report(trial=None)
    # (score, accuracy, epoch): one lucky peak at epoch 2, a steadier plateau over epochs 6-8, then a fall.
    report.validations = [(50, 50, 1), (90, 90, 2), (40, 40, 3), (60, 60, 4), (70, 70, 5), (75, 75, 6), (72, 72, 7),
                          (74, 74, 8), (50, 50, 9), (52, 52, 10)]
    assert report.chosen(3, to_the_end=False) == (pytest.approx(221 / 3), pytest.approx(221 / 3), 8)
    assert report.chosen(3, to_the_end=True) == (pytest.approx(176 / 3), pytest.approx(176 / 3), 10)
    assert report.chosen(1, to_the_end=False)[2] == 2
    assert report.chosen(20, to_the_end=True) == (pytest.approx(63.3), pytest.approx(63.3), 10)  # fewer: all of them


def test_a_new_study_first_tries_the_settings_train_would_choose(tmp_path):
    study = open_study(f"sqlite:///{tmp_path / 'study.db'}", "first", seed=0)
    planned = TrainConfig(dataset=str(tmp_path / "x.npz"), batch_size=16, patch=2)
    space = {**default_space(patch=2), "lr": {"low": 0.02, "high": 0.05}}  # the default 0.01 is outside: drawn
    enqueue_default(study, space, planned)
    enqueue_default(study, space, planned)  # a second worker, or a second start, queues nothing more
    assert len(study.trials) == 1
    assert study.trials[0].system_attrs["fixed_params"] == {"hidden_size": 128, "num_layers": 2, "cell": "lstm", "bidirectional": False,
                                      "pool": "mean", "dropout": 0.0, "patch": 2, "batch_size": 16}
    started = open_study(f"sqlite:///{tmp_path / 'study.db'}", "other", seed=0)
    started.enqueue_trial({"lr": 0.03})
    enqueue_default(started, space, planned)
    assert [t.system_attrs["fixed_params"] for t in started.trials] == [{"lr": 0.03}]


@pytest.mark.slow
def test_the_best_trains_on_the_trials_schedule_for_the_epochs_their_windows_chose(tmp_path, tiny_files):
    study = optuna.create_study(direction="maximize")
    study.add_trial(optuna.trial.create_trial(
        params={"lr": 0.02, "patience": 5}, value=90.0, user_attrs={"epochs": 3, "planned_epochs": 12, "accuracy": 90.0},
        distributions={"lr": optuna.distributions.FloatDistribution(0.001, 0.1),
                       "patience": optuna.distributions.IntDistribution(1, 9)}))
    config = replace(config_for(tiny_files), val_size=None)
    lines = []
    final = train_best(config, study.best_trial, tmp_path, lines.append, SequenceFile(str(tiny_files[0])))
    # 200 sequences in batches of 16: 13 steps an epoch; stopped after 3 of the 12 epochs planned.
    assert read_checkpoint(tmp_path / "best" / "trial-0000" / "last.ckpt")["training"]["step"] == 3 * 13
    assert final.config.epochs == 12 and final.config.patience == 0 and final.evaluation.total == 90
    assert json.loads((tmp_path / "best.json").read_text())["epochs"] == 3
    assert lines[0] == ("best: trial 0, 90.00 % on validation; training it on all the training sequences for 3 of 12 "
                        "epochs, then testing it once")


def test_a_trial_that_validates_on_nothing_is_refused(tmp_path, tiny_files):
    with pytest.raises(ConfigError, match=r"trial 0 validated on nothing \(val_size=0\): a search chooses on validation"):
        tune(config_for(tiny_files, epochs=1), tmp_path / "tune", trials=1, space={"val_size": [0]},
             log_line=lambda line: None)


@pytest.mark.slow
def test_the_time_limit_stops_the_running_trial(tmp_path, tiny_files):
    lines = []
    result = tune(config_for(tiny_files, epochs=400), tmp_path / "tune", trials=5, timeout=2, space={"lr": [0.02]},
                  log_line=lines.append)
    assert states(result.study) == ["PRUNED"] and result.final is None
    assert lines[0].startswith("trial 0: stopped at the time limit after ")


@pytest.mark.slow
def test_pruning_stops_a_trial_whose_validation_curve_is_bad(tmp_path, tiny_files):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = open_study(url, "planted", seed=0)
    for lr in (0.02, 0.02, 0.02, 0.02, 0.000001):
        study.enqueue_trial({"lr": lr})
    space = {"lr": {"low": 0.000001, "high": 0.05, "log": True}}
    result = tune(config_for(tiny_files), tmp_path / "tune", trials=5, space=space, storage=url, study_name="planted",
                  log_line=lambda line: None)
    assert states(result.study) == ["COMPLETE"] * 4 + ["PRUNED"]
    pruned = result.study.trials[4]
    # Stopped at the first validation the pruner may judge: the 5th, of the 12 planned.
    assert max(pruned.intermediate_values) == 5
    # (60 sequences held out, 20 of each class, leave 140: 9 steps an epoch.)
    assert read_checkpoint(tmp_path / "tune" / "trials" / "planted" / "0004" / "last.ckpt")["training"]["step"] == 5 * 9


def test_a_bad_search_space_is_refused_with_what_to_do(tmp_path):
    cases = {
        "lr: [0.1, 0.2]\nout: x.ckpt\n": "'out' is no setting a search can choose",
        "cell: []\n": "cell: an empty list of choices",
        "lr: {low: 0.1}\n": "lr: a range is {low: A, high: B}",
        "lr: {low: 0.1, high: 0.01}\n": "lr: low must be below high",
        "lr: {low: 0, high: 0.1, log: true}\n": "lr: a log range needs low > 0",
        "lr: {low: fast, high: 0.1}\n": "lr: low: expected a number, got 'fast'",
        "- lr\n": "expected a mapping of settings to their choices",
        "lr: [0.1\n": "not valid YAML",
    }
    for text, message in cases.items():
        (tmp_path / "space.yaml").write_text(text)
        with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("{", r"\{").replace("}", r"\}")):
            read_space(tmp_path / "space.yaml")
    (tmp_path / "space.yaml").write_text("lr: {low: 1e-4, high: 1e-2, log: true}\nnum_layers: {low: 1, high: 3}\ncell: gru\n")
    space = read_space(tmp_path / "space.yaml")
    # A good file's entries draw as they say: 1e-4 (text to YAML) a float range on a log scale, whole
    # bounds an int range, a lone value fixed.
    chosen = suggest(optuna.trial.FixedTrial({"lr": 0.001, "num_layers": 2}), space)
    assert chosen == {"lr": 0.001, "num_layers": 2, "cell": "gru"} and isinstance(chosen["num_layers"], int)
    # FixedTrial checks a value against the distribution the space gave.
    with pytest.warns(UserWarning, match=r"0.5 .* out of the range of the distribution FloatDistribution\(high=0.01, "
                                         r"log=True, low=0.0001"):
        suggest(optuna.trial.FixedTrial({"lr": 0.5, "num_layers": 2}), space)
    with pytest.warns(UserWarning, match=r"IntDistribution\(high=3, log=False, low=1, step=1\)"):
        suggest(optuna.trial.FixedTrial({"lr": 0.001, "num_layers": 4}), space)


@pytest.mark.parametrize("missing", ["optuna", "sklearn.model_selection"])
def test_without_optuna_tune_says_what_to_install(tiny_files, tmp_path, monkeypatch, missing):
    monkeypatch.setitem(sys.modules, missing, None)  # as if it were not installed: importing it fails
    with pytest.raises(ConfigError, match=r'seqlstm tune needs Optuna and scikit-learn \(.*\); install them with: '
                                          r'pip install "seqlstm\[tune\]"'):
        tune(config_for(tiny_files), tmp_path / "tune", trials=2)


def tune_process(folder: Path, files: tuple[Path, Path], trials: int) -> subprocess.Popen:
    args = [sys.executable, "-m", "seqlstm", "tune", "--dataset", str(files[0]), "--test-dataset", str(files[1]),
            "--trials", str(trials), "--tune-dir", str(folder), "--hidden-size", "8", "--num-layers", "1", "--conv", "0",
            "--precision", "fp32", "--batch-size", "16", "--epochs", "12", "--val-size", "60", "--cell", "lstm",
            "--no-bidirectional", "--pool", "mean", "--patch", "1"]  # the space left: learning rate and dropout
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


def study_of(folder: Path):
    return optuna.load_study(study_name="train", storage=f"sqlite:///{folder / 'study.db'}")


def wait_for(condition, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def counted(folder: Path, *kinds: str) -> int:
    """The study's trials in states `kinds` (all: every state); 0 before the study exists."""
    try:
        return sum(not kinds or state in kinds for state in states(study_of(folder)))
    except Exception:  # no study yet (Optuna raises KeyError, SQLAlchemy its own)
        return 0


def finished(folder: Path) -> int:
    return counted(folder, "COMPLETE", "PRUNED")


@pytest.mark.e2e
@pytest.mark.slow
def test_two_processes_share_one_study_without_running_a_trial_twice(tmp_path, tiny_files):
    folder = tmp_path / "tune"
    first = tune_process(folder, tiny_files, trials=6)
    wait_for(lambda: counted(folder) >= 1)
    second = tune_process(folder, tiny_files, trials=6)
    outputs = [p.communicate(timeout=600) for p in (first, second)]
    assert first.returncode == second.returncode == 0, [err for _, err in outputs]
    ran = [[line.split(":")[0] for line in out.splitlines() if line.startswith("trial ")] for out, _ in outputs]
    assert ran[0] and ran[1] and not set(ran[0]) & set(ran[1])  # both worked, on different trials
    study = study_of(folder)
    # Each stops once the study has 6 finished trials: one more at most, started while the other's last ran.
    assert 6 <= finished(folder) <= 7 and len(ran[0]) + len(ran[1]) == len(study.trials)
    assert sorted(t.number for t in study.trials) == list(range(len(study.trials)))
    assert len({tuple(sorted(t.params.items())) for t in study.trials}) == len(study.trials)  # no settings drawn twice
    assert (folder / "best.ckpt").is_file()
    assert sum("training it on all the training sequences" in out for out, _ in outputs) == 1


@pytest.mark.e2e
@pytest.mark.slow
def test_a_killed_tune_goes_on_where_the_study_stands(tmp_path, tiny_files):
    folder = tmp_path / "tune"
    killed = tune_process(folder, tiny_files, trials=4)
    wait_for(lambda: finished(folder) >= 2)
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=60)
    before = {t.number: t.value for t in study_of(folder).trials if t.state.name == "COMPLETE"}
    again = tune_process(folder, tiny_files, trials=4)
    out, err = again.communicate(timeout=600)
    assert again.returncode == 0, err
    study = study_of(folder)
    assert finished(folder) == 4
    assert {t.number: t.value for t in study.trials if t.number in before} == before  # kept, not redone
    assert not any(line.startswith(f"trial {n}:") for n in before for line in out.splitlines())
    assert (folder / "best.ckpt").is_file() and (folder / "results.csv").is_file()
