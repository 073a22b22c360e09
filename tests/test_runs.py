"""Run directories on tiny data: exact resume after SIGKILL, SIGINT and SIGTERM of a real
`python -m seqlstm` process, the progress bar on a real terminal, the plot and evaluate commands,
and what `--resume` and a taken run directory refuse."""

import fcntl
import json
import os
import pty
import re
import shlex
import signal
import struct
import subprocess
import sys
import termios
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import TINY_MODEL, tiny_task
from seqlstm import TrainConfig, evaluate_checkpoint, per_class_metrics, read_metrics, train
from seqlstm.evaluation import summarise

WORKER = Path(__file__).with_name("worker.py")
STEPS = 60
PER_EPOCH = 70  # 141 training sequences in batches of 2


def run_args(run_dir, out):
    """A tiny run of 60 steps in batches of 2; checkpoints every 20 steps, validation every 25."""
    return ["--dataset", "tiny.npz", *TINY_MODEL, "--batch-size", "2", "--epochs", "2", "--max-steps", str(STEPS),
            "--checkpoint-every", "20", "--log-every", "5", "--val-size", "20", "--eval-every", "25", "--device", "cpu",
            "--run-dir", run_dir, "--out", out]


def start_training(args, cwd, slow_from):
    """`seqlstm train ARGS` in a real process whose steps take 0.2 s each from step `slow_from` on."""
    return subprocess.Popen([sys.executable, str(WORKER), "train", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "SEQLSTM_TEST_SLOW_FROM": str(slow_from)})


def worker(*args, cwd):
    return subprocess.run([sys.executable, str(WORKER), *args], cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The reference: the run trained start to end in one process, in folder/A, model in folder/a.ckpt."""
    folder = tmp_path_factory.mktemp("uninterrupted")
    np.savez(folder / "tiny.npz", **tiny_task())
    result = worker("train", *run_args("A", "a.ckpt"), cwd=folder)
    assert result.returncode == 0, result.stderr
    return folder, result


@pytest.fixture
def folder(tmp_path, uninterrupted):
    """A folder holding the reference run's data file."""
    (tmp_path / "tiny.npz").write_bytes((uninterrupted[0] / "tiny.npz").read_bytes())
    return tmp_path


def read_until(process, text):
    """Stdout lines up to and including the first that contains `text`."""
    lines = []
    for line in process.stdout:
        lines.append(line)
        if text in line:
            return lines
    raise AssertionError(f"the run ended before printing {text!r}: {process.stderr.read()}")


def assert_same_weights(path, reference):
    ours, theirs = (torch.load(p, weights_only=True)["state_dict"] for p in (path, reference))
    assert ours.keys() == theirs.keys()
    for name in ours:
        assert torch.equal(ours[name], theirs[name]), name


def without_speed(records):
    return [{k: v for k, v in r.items() if k != "samples_per_s"} for r in records]


def assert_resumed_run_equals_the_uninterrupted_one(folder, run, out, uninterrupted):
    reference, _ = uninterrupted
    assert_same_weights(folder / out, reference / "a.ckpt")
    assert_same_weights(folder / run / "best.ckpt", reference / "A" / "best.ckpt")
    # Every logged loss, learning rate and evaluation, before and after the resume point, once each.
    assert without_speed(read_metrics(folder / run)) == without_speed(read_metrics(reference / "A"))


@pytest.mark.e2e
def test_sigkill_after_a_checkpoint_then_resume_equals_the_uninterrupted_run(folder, uninterrupted):
    process = start_training(run_args("B", "b.ckpt"), folder, slow_from=25)
    read_until(process, f"Step [25/{PER_EPOCH}]")
    process.kill()
    process.wait()
    assert torch.load(folder / "B" / "last.ckpt", weights_only=True)["training"]["step"] == 20
    assert not (folder / "b.ckpt").exists()
    # Steps 21-25 were logged after the checkpoint and must not count twice.
    assert max(r["step"] for r in read_metrics(folder / "B")) == 25

    resumed = worker("train", "--resume", "B/last.ckpt", cwd=folder)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming at step 20 of {STEPS}" in resumed.stderr
    assert_resumed_run_equals_the_uninterrupted_one(folder, "B", "b.ckpt", uninterrupted)
    # What the user sees after the resume point is what the uninterrupted run printed there.
    reference = uninterrupted[1].stdout.splitlines()
    assert resumed.stdout.splitlines() == reference[len(reference) - len(resumed.stdout.splitlines()):]


def interrupt(folder, signum):
    """Start a run in folder/C, send `signum` once it has logged step 15; return (exit code, stderr, saved step)."""
    process = start_training(run_args("C", "c.ckpt"), folder, slow_from=15)
    read_until(process, f"Step [15/{PER_EPOCH}]")
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=300)
    step = torch.load(folder / "C" / "last.ckpt", weights_only=True)["training"]["step"]
    assert 15 <= step < STEPS
    assert stderr.splitlines()[-2:] == [
        f"seqlstm: {signum.name}: stopped after step {step} and saved C/last.ckpt",
        "resume with: seqlstm train --resume C/last.ckpt",
    ]
    assert not (folder / "c.ckpt").exists()
    return process.returncode, stderr, step


@pytest.mark.e2e
def test_sigint_saves_last_ckpt_and_the_printed_command_resumes_exactly(folder, uninterrupted):
    code, stderr, step = interrupt(folder, signal.SIGINT)
    assert code == 130, stderr
    command = shlex.split(stderr.splitlines()[-1].removeprefix("resume with: "))
    assert command[0] == "seqlstm"
    resumed = worker(*command[1:], cwd=folder)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming at step {step} of {STEPS}" in resumed.stderr
    assert_resumed_run_equals_the_uninterrupted_one(folder, "C", "c.ckpt", uninterrupted)


@pytest.mark.e2e
def test_sigterm_saves_last_ckpt_and_exits_143(folder):
    code, stderr, step = interrupt(folder, signal.SIGTERM)
    assert code == 143, stderr
    # The saved state is the model after `step` steps: the logged losses stop there.
    assert max(r["step"] for r in read_metrics(folder / "C")) <= step


@pytest.mark.e2e
def test_plot_in_a_real_process(uninterrupted, tmp_path):
    folder, _ = uninterrupted
    drawn = subprocess.run([sys.executable, "-m", "seqlstm", "plot", "A"], cwd=folder, capture_output=True, text=True)
    assert (drawn.returncode, drawn.stdout, drawn.stderr) == (0, "wrote A/plots/training.png\n", "")
    missing = subprocess.run([sys.executable, "-m", "seqlstm", "plot", "nowhere"], cwd=tmp_path, capture_output=True,
                             text=True)
    assert (missing.returncode, missing.stdout) == (1, "")
    assert missing.stderr == "seqlstm: error: nowhere: no metrics.jsonl here; give a run directory written by `seqlstm train`\n"


@pytest.fixture
def tiny_run(tmp_path) -> Path:
    """A finished tiny run in tmp_path/A (model tmp_path/a.ckpt), trained in this process."""
    np.savez(tmp_path / "tiny.npz", **tiny_task())
    train(TrainConfig(dataset=str(tmp_path / "tiny.npz"), hidden_size=8, num_layers=1, conv=0, batch_size=10, epochs=2,
                      log_every=5, val_size=20, run_dir=str(tmp_path / "A"), out=str(tmp_path / "a.ckpt")),
          log=lambda line: None)
    return tmp_path


def assert_png(path):
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG" and min(image.size) > 300


def test_training_plots_and_the_plot_command(tiny_run, cli):
    figure = tiny_run / "A" / "plots" / "training.png"
    assert_png(figure)
    figure.unlink()
    drawn = cli("plot", "A", cwd=tiny_run)
    assert (drawn.returncode, drawn.stdout) == (0, "wrote A/plots/training.png\n")
    assert_png(figure)

    missing = cli("plot", "tiny.npz")
    assert missing.returncode == 1
    assert missing.stderr == "seqlstm: error: tiny.npz: no metrics.jsonl here; give a run directory written by `seqlstm train`\n"


@pytest.fixture(scope="session")
def small_mnist(mnist_dir, tmp_path_factory) -> Path:
    """A small model trained for 30 steps on the real MNIST, in this process: a checkpoint to evaluate."""
    folder = tmp_path_factory.mktemp("small-mnist")
    config = TrainConfig(data_dir=str(mnist_dir), hidden_size=16, max_steps=30, log_every=10, out=str(folder / "a.ckpt"),
                         run_dir=str(folder / "run"))
    return train(config, log=lambda line: None).checkpoint


def test_evaluate_reports_per_class_metrics_confusion_and_plots(small_mnist, mnist_dir, tmp_path, cli):
    evaluated = cli("evaluate", str(small_mnist), "--data-dir", str(mnist_dir), "--json", "--plots", str(tmp_path / "plots"))
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads(evaluated.stdout)
    confusion = torch.tensor(report["confusion"])
    assert confusion.shape == (10, 10) and int(confusion.sum()) == report["total"] == 10000
    assert int(confusion.diagonal().sum()) == report["correct"]
    assert torch.load(small_mnist, weights_only=True)["metrics"]["test_accuracy"] == report["accuracy"]
    expected = per_class_metrics(confusion, tuple(report["classes"]))
    assert report["per_class"] == [vars(m) for m in expected]
    assert [m["support"] for m in report["per_class"]] == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    for name in ("confusion.png", "misclassified.png"):
        assert_png(tmp_path / "plots" / name)

    # The text report (what `evaluate` prints without --json) shows the same numbers.
    lines = evaluate_checkpoint(small_mnist, mnist_dir, "cpu").report().splitlines()
    assert lines[0] == f"Test Accuracy of the model on the 10000 test images: {report['accuracy']:.2f} %"
    assert lines[2].split() == ["class", "precision", "recall", "f1", "support"]
    assert lines[3].split() == ["0", *(f"{report['per_class'][0][k]:.4f}" for k in ("precision", "recall", "f1")), "980"]
    assert [int(n) for n in lines[-1].split()[1:]] == report["confusion"][9]


def test_per_class_metrics_by_hand():
    # rows: true class, columns: predicted. c never occurs; d is never predicted.
    confusion = torch.tensor([[5, 1, 0, 0], [2, 3, 1, 0], [0, 0, 0, 0], [0, 2, 0, 0]])
    labels = torch.repeat_interleave(torch.arange(4).repeat_interleave(4), confusion.flatten())
    predicted = torch.repeat_interleave(torch.arange(4).repeat(4), confusion.flatten())
    evaluation = summarise(torch.nn.functional.one_hot(predicted, 4).float(), labels, "test", ("a", "b", "c", "d"))
    assert torch.equal(evaluation.confusion, confusion)
    assert (evaluation.correct, evaluation.total) == (8, 14)
    metrics = evaluation.per_class()
    assert [(m.label, m.support) for m in metrics] == [("a", 6), ("b", 6), ("c", 0), ("d", 2)]
    assert [(m.precision, m.recall, m.f1) for m in metrics] == [
        pytest.approx((5 / 7, 5 / 6, 10 / 13), rel=1e-12),  # f1 = 2 (5/7)(5/6) / (5/7 + 5/6)
        pytest.approx((3 / 6, 3 / 6, 1 / 2), rel=1e-12),
        (0.0, 0.0, 0.0),  # predicted once, wrongly; no samples
        (0.0, 0.0, 0.0),  # never predicted
    ]


def run_on_a_terminal(args, cwd):
    """Run `seqlstm train ARGS` with stderr on a pseudo-terminal; return (stdout, what the terminal showed)."""
    main, secondary = pty.openpty()
    # A fresh pseudo-terminal is 0 columns wide; give it a real terminal's size.
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    process = subprocess.Popen([sys.executable, "-m", "seqlstm", "train", *args], cwd=cwd,
                               stdout=subprocess.PIPE, stderr=secondary, text=True)
    os.close(secondary)
    shown = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # Linux: the terminal closes when the process exits
            break
        if not chunk:
            break
        shown += chunk
    os.close(main)
    stdout = process.stdout.read()
    assert process.wait() == 0, shown
    return stdout, shown.decode()


@pytest.mark.e2e
@pytest.mark.parametrize("quiet", [False, True])
def test_progress_bar_on_a_terminal_and_quiet(folder, quiet):
    stdout, shown = run_on_a_terminal([*run_args("R", "r.ckpt"), "--log-every", "10", *(["--quiet"] if quiet else [])],
                                      folder)
    assert [line.split(", Loss")[0] for line in stdout.splitlines() if line.startswith("Epoch")] == [
        f"Epoch [1/2], Step [{s}/{PER_EPOCH}]" for s in (10, 20, 30, 40, 50, 60)
    ]
    assert stdout.splitlines()[-1].startswith("Test Accuracy of the model on the 39 test sequences: ")
    if quiet:
        assert "samples/s" not in shown and "100%" not in shown and "run directory: R" in shown
    else:
        final = shown.replace("\r\n", "\n").split("\r")[-1]
        assert re.search(r"epoch 1/2: 100%.*60/60 \[\d\d:\d\d<00:00, +[\d.]+(step/s|s/step), loss \d\.\d{4}, [\d,]+ samples/s\]", final), shown


def test_resume_takes_only_the_runs_own_settings_and_a_run_directory_is_not_reused(tiny_run, cli):
    changed = cli("train", "--resume", "A/last.ckpt", "--epochs", "3", "--lr", "0.1", cwd=tiny_run)
    assert changed.returncode == 1
    assert changed.stderr == (
        "seqlstm: error: --resume continues the run with the settings it was started with; drop --epochs, --lr "
        "(only --data-dir, --device and --quiet go with it)\n"
    )
    before = {p.name: p.stat().st_mtime_ns for p in (tiny_run / "A").iterdir()}
    reused = cli("train", *run_args("A", "other.ckpt"))
    assert reused.returncode == 1
    assert reused.stderr.splitlines()[-1] == (
        "seqlstm: error: run directory A already holds a run (config.json, metrics.jsonl, last.ckpt); continue it "
        "with `seqlstm train --resume A/last.ckpt` or choose another --run-dir"
    )
    assert {p.name: p.stat().st_mtime_ns for p in (tiny_run / "A").iterdir()} == before
    assert not (tiny_run / "other.ckpt").exists()


def test_too_large_a_validation_split(tmp_path, cli):
    np.savez(tmp_path / "tiny.npz", **tiny_task())
    result = cli("train", "--dataset", "tiny.npz", "--val-size", "161", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        "seqlstm: error: val_size 161 leaves nothing to train on: the tiny training split has 161 sequences; "
        "use a smaller --val-size"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.npz"]
