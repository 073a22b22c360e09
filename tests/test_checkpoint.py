import os
import pickle
from pathlib import Path

import pytest
import torch

from conftest import run_cli
from seqlstm import CheckpointError, ConfigError, OutputError, LSTMClassifier, TrainConfig, load_checkpoint, save_checkpoint
from seqlstm.checkpoint import FORMAT_VERSION, digest


def small_model():
    torch.manual_seed(3)
    return LSTMClassifier(28, hidden_size=16, num_layers=2, num_classes=10)


def test_round_trip_restores_weights_config_and_outputs(tmp_path):
    model, config = small_model(), TrainConfig(hidden_size=16, epochs=3, seed=9, out=str(tmp_path / "m.ckpt"))
    path = save_checkpoint(config.out, model, config, metrics={"test_accuracy": 12.5})
    loaded, loaded_config = load_checkpoint(path)
    assert loaded_config == config
    assert not loaded.training
    x = torch.rand(4, 28, 28)
    torch.testing.assert_close(loaded(x), model.eval()(x), rtol=0, atol=0)
    raw = torch.load(path, weights_only=True)
    assert raw["format_version"] == FORMAT_VERSION and raw["metrics"] == {"test_accuracy": 12.5}
    assert raw["model_args"] == {"input_size": 28, "hidden_size": 16, "num_layers": 2, "num_classes": 10, "cell": "lstm",
                                 "patch": 1, "bidirectional": False, "pool": "last", "dropout": 0.0, "conv": 0, "series_norm": False, "conv_patch": 1,
                                 "classes": list("0123456789"),
                                 "inputs": {"kind": "images", "steps": 28, "image_shape": [28, 28], "view": "rows"}}
    assert os.listdir(tmp_path) == ["m.ckpt"]


def test_checkpoint_gets_the_users_usual_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        path = save_checkpoint(tmp_path / "m.ckpt", small_model(), TrainConfig())
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def test_failed_save_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "m.ckpt"
    save_checkpoint(path, small_model(), TrainConfig())
    before = path.read_bytes()

    def broken_save(obj, f):
        Path(f).write_bytes(b"PK\x03\x04 partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OutputError, match="m.ckpt: could not be written: disk full"):
        save_checkpoint(path, small_model(), TrainConfig(seed=1))
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.ckpt"]


def test_truncated_checkpoint(tmp_path):
    path = tmp_path / "m.ckpt"
    save_checkpoint(path, small_model(), TrainConfig())
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="truncated or not a PyTorch file"):
        load_checkpoint(path)


def test_foreign_files(tmp_path):
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a seqlstm checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(CheckpointError, match="truncated or not a PyTorch file"):
        load_checkpoint(tmp_path / "notes.txt")
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        load_checkpoint(tmp_path / "missing.ckpt")


def test_newer_format_version_is_refused(tmp_path):
    path = tmp_path / "m.ckpt"
    save_checkpoint(path, small_model(), TrainConfig())
    data = torch.load(path, weights_only=True)
    data["format_version"] = FORMAT_VERSION + 1
    data["seqlstm_version"] = "9.0.0"
    torch.save(data, path)
    with pytest.raises(CheckpointError, match=rf"format version {FORMAT_VERSION + 1} was written by seqlstm 9\.0\.0.*upgrade seqlstm"):
        load_checkpoint(path)


class Payload:
    """Unpickling this object creates the file named by `target`: proof that code ran."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


@pytest.mark.parametrize("writer", ["torch.save", "torch.save legacy", "plain pickle"])
def test_malicious_checkpoint_does_not_execute(tmp_path, writer, cli):
    target = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    payload = {"format": "seqlstm-checkpoint", "format_version": 1, "config": Payload(str(target))}
    if writer == "plain pickle":
        path.write_bytes(pickle.dumps(payload))
        pickle.loads(path.read_bytes())  # the payload is live: an unrestricted load runs it
    else:
        torch.save(payload, path, _use_new_zipfile_serialization=writer == "torch.save")
        torch.load(path, weights_only=False)
    assert target.exists()
    target.unlink()

    with pytest.raises(CheckpointError, match="refused to load.*never executes code"):
        load_checkpoint(path)
    assert not target.exists()
    result = cli("evaluate", str(path))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"seqlstm: error: {path}: ")
    assert not target.exists()


@pytest.mark.e2e
def test_cli_reports_a_bad_checkpoint_without_traceback(tmp_path):
    (tmp_path / "bad.ckpt").write_bytes(b"\x80\x04garbage")
    result = run_cli("evaluate", str(tmp_path / "bad.ckpt"))
    assert result.returncode == 1
    assert result.stderr.startswith("seqlstm: error: ") and "Traceback" not in result.stderr


def test_checkpoints_from_before_cells_and_recipes_load_as_they_were_trained(tmp_path):
    """The first checkpoints have no `cell` and no recipe keys: an lstm trained the tutorial's way."""
    model = small_model()
    path = save_checkpoint(tmp_path / "old.ckpt", model, TrainConfig())
    raw = torch.load(path, weights_only=True)
    del raw["model_args"]["cell"], raw["config"]["cell"]
    recipe_keys = ("recipe", "precision", "schedule", "clip_grad", "init", "augment_shift", "normalize",
                   "label_smoothing", "weight_decay")
    for key in recipe_keys:
        del raw["config"][key]
    resave(raw, path)
    loaded, config = load_checkpoint(path)
    assert loaded.cell == config.cell == "lstm"
    assert (config.recipe, config.precision, config.schedule) == ("tutorial", "fp32", "constant")
    assert (config.normalize, config.label_smoothing, config.weight_decay, config.lr) == ("none", 0.0, 0.0, 0.01)
    x = torch.rand(2, 28, 28)
    torch.testing.assert_close(loaded(x), model.eval()(x), rtol=0, atol=0)


def test_unknown_cell_in_a_checkpoint(tmp_path):
    path = save_checkpoint(tmp_path / "m.ckpt", small_model(), TrainConfig())
    raw = torch.load(path, weights_only=True)
    raw["model_args"]["cell"] = "rnn"
    resave(raw, path)
    with pytest.raises(CheckpointError, match="do not fit together: unknown cell 'rnn'"):
        load_checkpoint(path)


def test_format_version_1_checkpoints_still_load(tmp_path, cli):
    """Version 1 had no run settings in the config and no training state."""
    model = small_model()
    path = save_checkpoint(tmp_path / "v1.ckpt", model, TrainConfig(hidden_size=16))
    raw = torch.load(path, weights_only=True)
    raw["format_version"] = 1
    for key in ("run_dir", "val_size", "eval_every", "checkpoint_every"):
        del raw["config"][key]
    torch.save(raw, path)
    loaded, config = load_checkpoint(path)
    assert config == TrainConfig(hidden_size=16)
    x = torch.rand(2, 28, 28)
    torch.testing.assert_close(loaded(x), model.eval()(x), rtol=0, atol=0)
    result = cli("train", "--resume", str(path))
    assert result.returncode == 1
    assert result.stderr == f"seqlstm: error: {path}: this checkpoint holds a model but no training state, so it cannot be resumed; resume from the last.ckpt in the run directory\n"


@pytest.mark.parametrize(
    "section, key, value, message",
    [
        ("model_args", "hidden_size", -1, "hidden_size must be greater than zero"),
        ("model_args", "hidden_size", 32, r"Error\(s\) in loading state_dict for LSTMClassifier:$"),
        ("config", "cell", "gru", "the model is a 'lstm' cell but its config says 'gru'"),
    ],
)
def test_checkpoint_whose_parts_disagree_gets_a_one_line_error(tmp_path, section, key, value, message):
    path = save_checkpoint(tmp_path / "m.ckpt", small_model(), TrainConfig())
    raw = torch.load(path, weights_only=True)
    raw[section][key] = value
    resave(raw, path)
    with pytest.raises(CheckpointError, match=f"do not fit together: {message}") as caught:
        load_checkpoint(path)
    assert "\n" not in str(caught.value)


def test_a_model_saved_with_another_cells_config_is_refused_before_writing(tmp_path):
    model = LSTMClassifier(28, hidden_size=8, num_layers=1, cell="gru")
    with pytest.raises(ConfigError, match=r"the model is a 'gru' cell but its config says 'lstm'; save it with TrainConfig\(cell='gru'"):
        save_checkpoint(tmp_path / "m.ckpt", model, TrainConfig())
    assert list(tmp_path.iterdir()) == []


def resave(raw: dict, path) -> None:
    """Write an edited checkpoint dict as a crafted file would be: with a digest that matches it, so
    that what is checked is how its contents fit together (a mere edit is refused as damage)."""
    raw["digest"] = digest(raw)
    torch.save(raw, path)


def test_an_edit_without_a_new_digest_is_refused_as_damage(tmp_path):
    path = save_checkpoint(tmp_path / "m.ckpt", small_model(), TrainConfig())
    raw = torch.load(path, weights_only=True)
    raw["config"]["lr"] = 0.5
    torch.save(raw, path)
    with pytest.raises(CheckpointError, match="the checkpoint is damaged: its contents do not match the digest"):
        load_checkpoint(path)
