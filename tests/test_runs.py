"""Run directories, exact resume after SIGKILL/SIGINT/SIGTERM, non-finite losses, metrics and plots,
all through real `python -m seqlstm` processes on the real MNIST."""

import fcntl
import json
import os
import platform
import pty
import re
import shlex
import signal
import struct
import subprocess
import sys
import termios

import pytest
import torch
from PIL import Image

from conftest import run_cli
from seqlstm import TrainConfig, evaluate_checkpoint, load_checkpoint, per_class_metrics, read_metrics
from seqlstm.evaluate import summarise

STEPS = 100
PER_EPOCH = 595  # (60,000 - 500 held out) / 100


def run_args(mnist_dir, run_dir, out):
    """A short run with a small model; checkpoints every 20 steps, validation every 25."""
    return ["--data-dir", str(mnist_dir), "--max-steps", str(STEPS), "--checkpoint-every", "20", "--log-every", "5",
            "--hidden-size", "16", "--val-size", "500", "--eval-every", "25", "--device", "cpu",
            "--run-dir", run_dir, "--out", out]


@pytest.fixture(scope="module")
def uninterrupted(mnist_dir, tmp_path_factory):
    """The reference: the run trained start to end in one process, in folder/A, model in folder/a.ckpt."""
    folder = tmp_path_factory.mktemp("uninterrupted")
    result = run_cli("train", *run_args(mnist_dir, "A", "a.ckpt"), cwd=folder)
    assert result.returncode == 0, result.stderr
    return folder, result


def start_training(args, cwd):
    return subprocess.Popen([sys.executable, "-m", "seqlstm", "train", *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def read_until(process, text):
    """Stdout lines up to and including the first that contains `text`."""
    lines = []
    for line in process.stdout:
        lines.append(line)
        if text in line:
            return lines
    raise AssertionError(f"the run ended before printing {text!r}: {process.stderr.read()}")


def weights(path):
    return torch.load(path, weights_only=True)["state_dict"]


def assert_same_weights(path, reference):
    ours, theirs = weights(path), weights(reference)
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


def test_sigkill_after_a_checkpoint_then_resume_equals_the_uninterrupted_run(tmp_path, mnist_dir, uninterrupted):
    process = start_training(run_args(mnist_dir, "B", "b.ckpt"), tmp_path)
    read_until(process, f"Step [25/{PER_EPOCH}]")
    process.kill()
    process.wait()
    step = torch.load(tmp_path / "B" / "last.ckpt", weights_only=True)["training"]["step"]
    assert step % 20 == 0 and 20 <= step < STEPS  # a checkpoint of the running process, not the final one
    assert not (tmp_path / "b.ckpt").exists()
    if step == 20:  # killed before the next checkpoint: steps 21-25 were logged and must not count twice
        assert max(r["step"] for r in read_metrics(tmp_path / "B")) >= 25

    resumed = run_cli("train", "--resume", "B/last.ckpt", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming at step {step} of {STEPS}" in resumed.stderr
    assert_resumed_run_equals_the_uninterrupted_one(tmp_path, "B", "b.ckpt", uninterrupted)
    # What the user sees after the resume point is what the uninterrupted run printed there.
    reference = uninterrupted[1].stdout.splitlines()
    assert resumed.stdout.splitlines() == reference[len(reference) - len(resumed.stdout.splitlines()):]


def interrupt(tmp_path, mnist_dir, signum):
    """Start a run in tmp_path/C, send `signum` once it has logged step 15; return (exit code, stderr, saved step)."""
    process = start_training(run_args(mnist_dir, "C", "c.ckpt"), tmp_path)
    read_until(process, f"Step [15/{PER_EPOCH}]")
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=300)
    step = torch.load(tmp_path / "C" / "last.ckpt", weights_only=True)["training"]["step"]
    assert 15 <= step < STEPS
    assert stderr.splitlines()[-2:] == [
        f"seqlstm: {signum.name}: stopped after step {step} and saved C/last.ckpt",
        "resume with: seqlstm train --resume C/last.ckpt",
    ]
    assert not (tmp_path / "c.ckpt").exists()
    return process.returncode, stderr, step


def test_sigint_saves_last_ckpt_and_the_printed_command_resumes_exactly(tmp_path, mnist_dir, uninterrupted):
    code, stderr, step = interrupt(tmp_path, mnist_dir, signal.SIGINT)
    assert code == 130, stderr
    command = shlex.split(stderr.splitlines()[-1].removeprefix("resume with: "))
    assert command[0] == "seqlstm"
    resumed = run_cli(*command[1:], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming at step {step} of {STEPS}" in resumed.stderr
    assert_resumed_run_equals_the_uninterrupted_one(tmp_path, "C", "c.ckpt", uninterrupted)


def test_sigterm_saves_last_ckpt_and_exits_143(tmp_path, mnist_dir):
    code, stderr, step = interrupt(tmp_path, mnist_dir, signal.SIGTERM)
    assert code == 143, stderr
    # The saved state is the model after `step` steps: the logged losses stop there.
    assert max(r["step"] for r in read_metrics(tmp_path / "C")) <= step


def test_run_directory_holds_config_metrics_checkpoints_and_plots(uninterrupted, mnist_dir):
    folder, result = uninterrupted
    run = folder / "A"
    assert sorted(p.name for p in run.iterdir()) == ["best.ckpt", "config.json", "last.ckpt", "metrics.jsonl", "plots"]

    record = json.loads((run / "config.json").read_text())
    assert TrainConfig.from_dict(record["config"]) == TrainConfig(
        data_dir=str(mnist_dir), max_steps=STEPS, checkpoint_every=20, log_every=5, hidden_size=16, val_size=500,
        eval_every=25, device="cpu", run_dir="A", out="a.ckpt",
    )
    assert (record["torch"], record["python"], record["device"]) == (torch.__version__, platform.python_version(), "cpu")

    # One record per logged step, one per validation (every 25 steps and at the end), then the test.
    records = read_metrics(run)
    kinds = [(r["step"], r.get("split", "train")) for r in records]
    expected = []
    for step in range(5, STEPS + 1, 5):
        expected.append((step, "train"))
        if step % 25 == 0 or step == STEPS:
            expected.append((step, "validation"))
    assert kinds == expected + [(STEPS, "test")]
    steps = [r for r in records if "split" not in r]
    assert all(set(r) == {"step", "epoch", "loss", "lr", "samples_per_s"} and r["samples_per_s"] > 0 for r in steps)
    printed = [float(m) for m in re.findall(r"Loss: (\d+\.\d{4})$", result.stdout, re.M)]
    assert printed == [round(r["loss"], 4) for r in steps]
    validations = [r for r in records if r.get("split") == "validation"]
    assert all(set(r) == {"step", "epoch", "split", "accuracy", "loss"} for r in validations)

    # best.ckpt holds the weights of the best validation, the first one if tied.
    best = torch.load(run / "best.ckpt", weights_only=True)
    top = max(r["accuracy"] for r in validations)
    assert best["metrics"] == {"validation_accuracy": top,
                               "steps": next(r["step"] for r in validations if r["accuracy"] == top)}
    assert "training" not in best
    # The final model goes to --out and records its run directory.
    model, config = load_checkpoint(folder / "a.ckpt")
    assert config.run_dir == "A"
    test = records[-1]
    assert result.stdout.splitlines()[-1] == f"Test Accuracy of the model on the 10000 test images: {test['accuracy']:.2f} %"


def assert_png(path):
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG" and min(image.size) > 300


def test_training_plots_and_the_plot_command(uninterrupted, tmp_path):
    folder, _ = uninterrupted
    figure = folder / "A" / "plots" / "training.png"
    assert_png(figure)
    figure.unlink()
    drawn = run_cli("plot", "A", cwd=folder)
    assert drawn.returncode == 0, drawn.stderr
    assert drawn.stdout == "wrote A/plots/training.png\n"
    assert_png(figure)

    missing = run_cli("plot", str(tmp_path))
    assert missing.returncode == 1
    assert missing.stderr == f"seqlstm: error: {tmp_path}: no metrics.jsonl here; give a run directory written by `seqlstm train`\n"


def test_evaluate_reports_per_class_metrics_confusion_and_plots(uninterrupted, mnist_dir, tmp_path):
    folder, trained = uninterrupted
    evaluated = run_cli("evaluate", str(folder / "a.ckpt"), "--data-dir", str(mnist_dir), "--json",
                        "--plots", str(tmp_path / "plots"))
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads(evaluated.stdout)
    confusion = torch.tensor(report["confusion"])
    assert confusion.shape == (10, 10) and int(confusion.sum()) == report["total"] == 10000
    assert int(confusion.diagonal().sum()) == report["correct"]
    assert trained.stdout.splitlines()[-1].endswith(f" {report['accuracy']:.2f} %")
    expected = per_class_metrics(confusion, tuple(report["classes"]))
    assert report["per_class"] == [vars(m) for m in expected]
    assert [m["support"] for m in report["per_class"]] == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    for name in ("confusion.png", "misclassified.png"):
        assert_png(tmp_path / "plots" / name)

    # The text report (what `evaluate` prints without --json) shows the same numbers.
    lines = evaluate_checkpoint(folder / "a.ckpt", mnist_dir, "cpu").report().splitlines()
    assert lines[0] == trained.stdout.splitlines()[-1]
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


POISONED = """
import importlib
import sys
from seqlstm.cli import main

# The image set's record loads the data: one of its training images gets a NaN (float images are
# taken as scaled to [0, 1], as the uint8 ones become).
records = importlib.import_module("seqlstm.data.records")
load = records.ImageSet.load

def poisoned(self, config):
    data = load(self, config)
    images = data.train.inputs.float() / 255
    images[{index}, 14, 14] = float("nan")
    return data._replace(train=data.train._replace(inputs=images))

records.ImageSet.load = poisoned
sys.exit(main(sys.argv[1:]))
"""


def test_a_nan_in_the_data_stops_the_run_at_its_step_and_keeps_the_last_good_checkpoint(tmp_path, mnist_dir):
    # The image the first epoch's shuffle puts at position 1449: batch 15 of 100 images.
    index = int(torch.randperm(60000, generator=torch.Generator().manual_seed(0))[1449])
    result = subprocess.run(
        [sys.executable, "-c", POISONED.format(index=index), "train", "--data-dir", str(mnist_dir), "--max-steps", "40",
         "--checkpoint-every", "10", "--log-every", "5", "--hidden-size", "16", "--device", "cpu",
         "--run-dir", "R", "--out", "m.ckpt"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        "seqlstm: error: the loss became NaN or infinite at step 15 (epoch 1, batch 15); training stopped there and "
        "saved nothing after it: the last good checkpoint is R/last.ckpt (step 10). Lower --lr or check the data"
    )
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "m.ckpt").exists()
    last = torch.load(tmp_path / "R" / "last.ckpt", weights_only=True)
    assert last["training"]["step"] == 10
    assert all(torch.isfinite(t).all() for t in last["state_dict"].values())
    assert [r["step"] for r in read_metrics(tmp_path / "R")] == [5, 10]


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


@pytest.mark.parametrize("quiet", [False, True])
def test_progress_bar_on_a_terminal_and_quiet(tmp_path, mnist_dir, quiet):
    args = ["--data-dir", str(mnist_dir), "--max-steps", "30", "--log-every", "10", "--hidden-size", "8",
            "--device", "cpu", "--run-dir", "R", *(["--quiet"] if quiet else [])]
    stdout, shown = run_on_a_terminal(args, tmp_path)
    assert [line.split(", Loss")[0] for line in stdout.splitlines()[:-1]] == [
        f"Epoch [1/2], Step [{s}/600]" for s in (10, 20, 30)
    ]
    assert stdout.splitlines()[-1].startswith("Test Accuracy of the model on the 10000 test images: ")
    if quiet:
        assert "samples/s" not in shown and "step" not in shown.replace("run directory", "")
    else:
        final = shown.replace("\r\n", "\n").split("\r")[-1]
        assert re.search(r"epoch 1/2: 100%.*30/30 \[\d\d:\d\d<00:00, +[\d.]+(step/s|s/step), loss \d\.\d{4}, [\d,]+ samples/s\]", final), shown


def test_resume_takes_only_the_runs_own_settings_and_a_run_directory_is_not_reused(uninterrupted, mnist_dir):
    folder, _ = uninterrupted
    changed = run_cli("train", "--resume", "A/last.ckpt", "--epochs", "3", "--lr", "0.1", cwd=folder)
    assert changed.returncode == 1
    assert changed.stderr == (
        "seqlstm: error: --resume continues the run with the settings it was started with; drop --epochs, --lr "
        "(only --data-dir, --device and --quiet go with it)\n"
    )
    before = {p.name: p.stat().st_mtime_ns for p in (folder / "A").iterdir()}
    reused = run_cli("train", *run_args(mnist_dir, "A", "other.ckpt"), cwd=folder)
    assert reused.returncode == 1
    assert reused.stderr.splitlines()[-1] == (
        "seqlstm: error: run directory A already holds a run (config.json, metrics.jsonl, last.ckpt); continue it "
        "with `seqlstm train --resume A/last.ckpt` or choose another --run-dir"
    )
    assert {p.name: p.stat().st_mtime_ns for p in (folder / "A").iterdir()} == before
    assert not (folder / "other.ckpt").exists()


def test_too_large_a_validation_split(tmp_path, mnist_dir):
    result = run_cli("train", "--data-dir", str(mnist_dir), "--val-size", "60000", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr == (
        "seqlstm: error: val_size 60000 leaves nothing to train on: the mnist training split has 60000 images; "
        "use a smaller --val-size\n"
    )
    assert list(tmp_path.iterdir()) == []
