"""Training through the API and the command line: seeds, the checkpoint, the CLI's messages, and
end to end on the real MNIST in a real process."""

import re
import tempfile

import numpy as np
import pytest
import torch

from conftest import run_cli, tiny_task
from seqlstm import TrainConfig, load_checkpoint, train

LOSS_LINE = re.compile(r"^Epoch \[(\d+)/(\d+)\], Step \[(\d+)/600\], Loss: \d+\.\d{4}$")
ACCURACY_LINE = re.compile(r"^Test Accuracy of the model on the 10000 test images: (\d+\.\d\d) %$")


def short_run(tmp_path, mnist_dir, **overrides):
    options = dict(data_dir=str(mnist_dir), max_steps=20, log_every=5, out=str(tmp_path / "m.ckpt"),
                   run_dir=tempfile.mkdtemp(dir=tmp_path))
    return train(TrainConfig(**{**options, **overrides}), log=lambda line: None)


def test_same_seed_same_losses_other_seed_other_losses(tmp_path):
    np.savez(tmp_path / "tiny.npz", **tiny_task())
    config = dict(dataset=str(tmp_path / "tiny.npz"), hidden_size=8, num_layers=1, conv=4, batch_size=10, epochs=2,
                  log_every=5, val_size=20)
    first, again, other = (train(TrainConfig(**config, seed=seed), log=lambda line: None, files=False) for seed in (0, 0, 1))
    assert len(first.losses) == 4
    assert first.losses == again.losses
    assert first.evaluation.correct == again.evaluation.correct
    assert all(torch.equal(a, b) for a, b in zip(first.model.state_dict().values(), again.model.state_dict().values()))
    assert first.losses != other.losses


def test_max_steps_and_the_checkpoint_it_leaves(tmp_path, mnist_dir):
    result = short_run(tmp_path, mnist_dir, max_steps=7, log_every=2, hidden_size=32, num_layers=1)
    assert len(result.losses) == 3
    model, config = load_checkpoint(result.checkpoint)
    assert config == result.config
    assert model.hparams == {"input_size": 28, "hidden_size": 32, "num_layers": 1, "num_classes": 10, "cell": "lstm",
                             "patch": 1, "bidirectional": False, "pool": "last", "dropout": 0.0, "conv": 0, "series_norm": False, "conv_patch": 1,
                             "classes": list("0123456789"),
                             "inputs": {"kind": "images", "steps": 28, "image_shape": [28, 28], "view": "rows"}}


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.accuracy
def test_cli_trains_logs_the_tutorial_lines_and_evaluate_agrees(tmp_path, mnist_dir):
    trained = run_cli(
        "train", "--data-dir", str(mnist_dir), "--epochs", "1", "--out", "digits.ckpt",
        cwd=tmp_path,
    )
    assert trained.returncode == 0, trained.stderr
    lines = trained.stdout.splitlines()
    assert [LOSS_LINE.match(line).group(1, 2, 3) for line in lines[:-1]] == [
        ("1", "1", str(step)) for step in range(100, 700, 100)
    ]
    accuracy = float(ACCURACY_LINE.match(lines[-1]).group(1))
    # One epoch of the tutorial recipe reaches about 96.9 %; a model that does not learn stays near 10 %.
    assert accuracy >= 94.0
    assert (tmp_path / "digits.ckpt").is_file()

    evaluated = run_cli("evaluate", "digits.ckpt", "--data-dir", str(mnist_dir), cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    assert evaluated.stdout.splitlines()[0] == lines[-1]
    # The default run directory, holding everything the run recorded.
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert re.fullmatch(r"\d{8}T\d{6}Z-mnist-lstm", run_dir.name)
    assert sorted(p.name for p in run_dir.iterdir()) == ["config.json", "last.ckpt", "metrics.jsonl", "plots"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--device", "tpu"], "unknown device 'tpu'"),
        (["--epochs", "0"], "epochs must be a positive integer, got 0"),
        (["--lr", "-1"], "lr must be positive"),
        (["--data-dir", "no/such/dir"], "--data-dir no/such/dir: no such directory"),
        (["--checkpoint-every", "0"], "checkpoint_every must be a positive integer or None, got 0"),
        (["--seed", str(2**64)], "seed must be an integer from 0 to 2**63 - 1"),
        (["--seed", "-1"], "seed must be an integer from 0 to 2**63 - 1"),
    ],
)
def test_cli_bad_input_is_one_clear_line_and_exit_1(tmp_path, cli, args, message):
    result = cli("train", *args, cwd=tmp_path)
    assert result.returncode == 1
    assert message in result.stderr and "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cli_asked_for_an_absent_gpu_says_so(tmp_path, cli):
    result = cli("train", "--device", "cuda", cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "CUDA is not available" in result.stderr


def test_a_bad_out_fails_before_training(tmp_path, mnist_dir, cli):
    (tmp_path / "taken").mkdir()
    result = cli("train", "--out", "taken", "--data-dir", str(mnist_dir), cwd=tmp_path)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == "seqlstm: error: taken: is a folder; give a file name (for example taken/model.ckpt)\n"


@pytest.mark.e2e
def test_entry_points(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(sys.executable).with_name("seqlstm")
    console = subprocess.run([str(script), "--version"], capture_output=True, text=True)
    module = run_cli("--version")
    assert console.returncode == module.returncode == 0
    assert console.stdout == module.stdout and re.match(r"seqlstm \d+\.\d+\.\d+", module.stdout)


@pytest.mark.accuracy
@pytest.mark.parametrize("cell", ["lstm", "gru", "seed"])
def test_every_cell_learns_and_its_checkpoint_restores_it(tmp_path, mnist_dir, cell):
    result = short_run(tmp_path, mnist_dir, cell=cell, hidden_size=48, max_steps=100, log_every=50)
    # 100 steps take every cell from chance (10 %) to 74-85 % (measured: lstm 78, gru 85, seed 74).
    assert result.evaluation.accuracy >= 60.0, f"{cell}: {result.evaluation.accuracy:.2f} %"
    assert result.losses[-1] < result.losses[0]
    model, config = load_checkpoint(result.checkpoint)
    assert model.cell == config.cell == cell
    x = torch.rand(3, 28, 28)
    torch.testing.assert_close(model(x), result.model.eval()(x), rtol=0, atol=0)
