"""The command line: train flags built from the config's fields, config files, --print-config, and a
start-up that does not load PyTorch."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import fields

import numpy as np
import pytest
import torch
import yaml

from conftest import tiny_task
from seqlstm import TrainConfig
from seqlstm.cli import FLAGS, build_parser
from seqlstm.config import CELLS, DATASET_NAMES, LOGGER_NAMES, POOLS, VIEWS
from seqlstm.training import resolve


def test_the_names_a_user_chooses_from_are_those_implemented():
    from seqlstm.data.sources import DATASETS
    from seqlstm.model import cells, classifier, inputs
    from seqlstm.training.recorders import LOGGERS

    assert CELLS == cells.CELLS and POOLS == classifier.POOLS and VIEWS == tuple(inputs.VIEWS)
    assert DATASET_NAMES == tuple(DATASETS) and LOGGER_NAMES == tuple(LOGGERS)


@pytest.mark.e2e
def test_every_commands_help_and_version_work_without_loading_pytorch():
    commands = ("train", "evaluate", "plot", "explain", "predict", "export", "pack", "tune", "serve")
    code = ("import sys, contextlib, io\nfrom seqlstm.cli import main\n"
            f"for argv in (['--help'], ['--version'], *([c, '--help'] for c in {commands!r})):\n"
            "    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
            "        main(argv)\n"
            "print(sorted(m for m in ('torch', 'numpy', 'matplotlib') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (0, "[]\n"), done.stderr


def test_every_field_with_help_is_a_flag_that_gives_the_configs_value():
    assert {f.name for f in FLAGS} == {f.name for f in fields(TrainConfig)} - {"plan", "digests"}
    args = build_parser().parse_args([
        "train", "--dataset", "fashion-mnist", "--epochs", "3", "--lr", "0.002", "--no-bidirectional", "--bucket",
        "--log", "tensorboard", "--cell", "gru", "--test-size", "0.3", "--label-column", "7"])
    given = {f.name: getattr(args, f.name) for f in FLAGS if hasattr(args, f.name)}
    assert given == dict(dataset="fashion-mnist", epochs=3, lr=0.002, bidirectional=False, bucket=True,
                         log=["tensorboard"], cell="gru", test_size=0.3, label_column="7")
    # Flags left out are not in the parsed arguments at all: the config's defaults (or a file's values) stand.
    assert not any(hasattr(build_parser().parse_args(["train"]), f.name) for f in FLAGS)


def test_a_bad_flag_value_is_argparses_usage_error(cli, tmp_path):
    done = cli("train", "--cell", "rnn", cwd=tmp_path)
    assert done.returncode == 2
    assert "argument --cell: invalid choice: 'rnn' (choose from lstm, gru, seed)" in done.stderr.replace("'lstm', 'gru', 'seed'", "lstm, gru, seed")


@pytest.fixture
def tiny_file(tmp_path):
    np.savez(tmp_path / "tiny.npz", **tiny_task())
    return tmp_path


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_a_config_file_and_the_flags_that_override_it(tiny_file, cli, suffix):
    settings = {"dataset": "tiny.npz", "hidden-size": 8, "num_layers": 1, "conv": 0, "epochs": 2, "batch_size": 10,
                "lr": "1e-3" if suffix == ".yaml" else 0.001, "log-every": 5, "out": "a.ckpt", "run_dir": "a"}
    text = yaml.safe_dump(settings) if suffix == ".yaml" else json.dumps(settings)
    (tiny_file / f"run{suffix}").write_text(text.replace("'1e-3'", "1e-3"))  # as YAML reads it: a string
    done = cli("train", "--config", f"run{suffix}", "--epochs", "1", "--out", "b.ckpt", "--run-dir", "b", cwd=tiny_file)
    assert done.returncode == 0, done.stderr
    config = TrainConfig.from_dict(torch.load(tiny_file / "b.ckpt", weights_only=True)["config"])
    assert (config.hidden_size, config.num_layers, config.lr, config.batch_size, config.epochs) == (8, 1, 0.001, 10, 1)
    assert not (tiny_file / "a.ckpt").exists()


@pytest.mark.parametrize("text, message", [
    ("epochs: 3\nlearning_rate: 0.1\n", "unknown setting 'learning_rate'; the settings are the train flags' names"),
    ("epochs: three\n", "epochs must be a whole number or null, got 'three'"),
    ("bucket: 1\n", "bucket must be true or false, got 1"),
    ("- epochs\n", "must be a mapping of settings (name: value), not a list"),
    ("epochs: [3\n", "not valid YAML: "),
    ("plan: mine\n", "unknown setting 'plan'"),
])
def test_a_bad_config_file_says_what_is_wrong_in_it(tiny_file, cli, text, message):
    (tiny_file / "bad.yaml").write_text(text)
    done = cli("train", "--config", "bad.yaml", cwd=tiny_file)
    assert done.returncode == 1
    assert done.stderr.startswith("seqlstm: error: --config bad.yaml: ") and message in done.stderr, done.stderr
    assert cli("train", "--config", "none.yaml").stderr == "seqlstm: error: --config none.yaml: no such file\n"
    assert cli("train", "--config", "bad.toml").stderr == "seqlstm: error: --config bad.toml: give a .yaml, .yml or .json file\n"


def test_print_config_gives_a_file_that_trains_the_same_run(tiny_file, cli):
    flags = ("--dataset", "tiny.npz", "--hidden-size", "8", "--num-layers", "1", "--conv", "4", "--max-steps", "12",
             "--precision", "fp32")
    printed = cli("train", *flags, "--print-config", cwd=tiny_file)
    assert printed.returncode == 0, printed.stderr
    values = yaml.safe_load(printed.stdout)
    assert list(values) == [f.name for f in FLAGS]
    # The recipe's and the plan's choices are filled in, the file by its absolute path.
    assert values["dataset"] == str(tiny_file / "tiny.npz") and values["schedule"] == "onecycle"
    assert all(isinstance(values[name], int) for name in ("batch_size", "epochs", "val_size", "patience", "patch"))
    expected = resolve(TrainConfig(dataset="tiny.npz", hidden_size=8, num_layers=1, conv=4, max_steps=12, precision="fp32"))
    assert values == {f.name: list(expected.log) if f.name == "log" else getattr(expected, f.name) for f in FLAGS}
    assert not list(tiny_file.glob("runs")) and not (tiny_file / "model.ckpt").exists()

    (tiny_file / "printed.yaml").write_text(printed.stdout)
    assert cli("train", "--config", "printed.yaml", "--out", "a.ckpt", "--run-dir", "a").returncode == 0
    assert cli("train", *flags, "--out", "b.ckpt", "--run-dir", "b").returncode == 0
    a, b = (torch.load(tiny_file / f"{x}.ckpt", weights_only=True)["state_dict"] for x in "ab")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_takes_no_config_file(tiny_file, cli):
    done = cli("train", "--resume", "run/last.ckpt", "--config", "run.yaml", "--data-dir", "d", cwd=tiny_file)
    assert done.returncode == 1
    assert done.stderr == ("seqlstm: error: --resume continues the run with the settings it was started with; drop "
                           "--config (only --data-dir, --device and --quiet go with it)\n")
