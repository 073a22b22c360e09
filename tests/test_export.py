"""ONNX export: the file reproduces PyTorch for every model variant, and runs with onnxruntime alone."""

import re

import numpy as np
import pytest
import torch

from conftest import run_cli
from seqlstm import ExportError, LSTMClassifier, OutputError, TrainConfig, export_onnx, load_checkpoint, load_dataset, predict, save_checkpoint
from seqlstm import export as export_module

onnxruntime = pytest.importorskip("onnxruntime")

# Every kind of model a checkpoint can hold: (constructor arguments, config fields).
MODEL_VARIANTS = {
    "lstm-1x16": (dict(hidden_size=16, num_layers=1), {}),
    "lstm-2x48": (dict(hidden_size=48, num_layers=2), {}),
    "lstm-3x8-26-classes": (dict(hidden_size=8, num_layers=3, num_classes=26), {}),
    "gru-2x32": (dict(hidden_size=32, num_layers=2, cell="gru"), dict(cell="gru")),
    "seed-2x32": (dict(hidden_size=32, num_layers=2, cell="seed"), dict(cell="seed")),
}


def session(path):
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.slow
@pytest.mark.parametrize("variant", list(MODEL_VARIANTS))
def test_onnx_equals_pytorch_for_each_model_variant(tmp_path, variant):
    model_args, config_fields = MODEL_VARIANTS[variant]
    torch.manual_seed(0)
    model = LSTMClassifier(**model_args)
    checkpoint = save_checkpoint(tmp_path / "m.ckpt", model, TrainConfig(**config_fields))
    result = export_onnx(checkpoint, tmp_path / "m.onnx")
    assert result.max_abs_diff <= 1e-4

    # Checked here again, independently, on a batch size the export did not see.
    x = torch.rand(9, 28, 28, generator=torch.Generator().manual_seed(5))
    got = session(tmp_path / "m.onnx").run(None, {"x": x.numpy()})[0]
    with torch.inference_mode():
        expected = model.eval()(x).numpy()
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= 1e-4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.ckpt", "m.onnx"]  # no temporary left


@pytest.mark.e2e
@pytest.mark.slow
def test_cli_export_then_onnxruntime_alone_predicts_like_pytorch(trained_checkpoint, mnist_dir, tmp_path):
    done = run_cli("export", str(trained_checkpoint), "--onnx", "digits.onnx", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    line = done.stdout.strip()
    assert line.startswith("wrote digits.onnx: input 'x' float32 (batch, 28, 28), output 'logits' float32 (batch, 10)")
    diff = float(re.search(r"max abs difference of (\S+) \(limit 1e-04\)$", line).group(1))
    print(f"ONNX max abs difference reported by the export: {diff:.2e}")
    assert diff <= 1e-4

    # The README's recipe: numpy and onnxruntime only.
    images, labels = load_dataset("mnist", "test", mnist_dir)
    batch = images[:200].numpy().astype(np.float32) / 255
    logits = session(tmp_path / "digits.onnx").run(None, {"x": batch})[0]
    model, _ = load_checkpoint(trained_checkpoint)
    expected = [int(top[0].label) for top in predict(model, images[:200])]
    assert logits.argmax(axis=1).tolist() == expected
    with torch.inference_mode():
        assert np.abs(logits - model(torch.from_numpy(batch)).numpy()).max() <= 1e-4


@pytest.mark.slow
def test_export_refuses_a_file_that_disagrees_and_leaves_nothing(tmp_path, monkeypatch):
    checkpoint = save_checkpoint(tmp_path / "m.ckpt", LSTMClassifier(hidden_size=8, num_layers=1), TrainConfig())
    (tmp_path / "old.onnx").write_bytes(b"previous export")
    monkeypatch.setattr(export_module, "max_abs_diff", lambda model, path: 0.5)
    with pytest.raises(ExportError, match=r"differ from PyTorch's by up to 5.00e-01, more than 1e-04; .*old.onnx was not written"):
        export_onnx(checkpoint, tmp_path / "old.onnx")
    assert (tmp_path / "old.onnx").read_bytes() == b"previous export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.ckpt", "old.onnx"]


def test_export_without_the_packages_says_how_to_install_them(tmp_path, monkeypatch):
    checkpoint = save_checkpoint(tmp_path / "m.ckpt", LSTMClassifier(hidden_size=8, num_layers=1), TrainConfig())
    monkeypatch.setattr(export_module, "REQUIRED", ("onnx", "seqlstm_no_such_package"))
    with pytest.raises(ExportError, match=r'missing: seqlstm_no_such_package\. Install them with: pip install "seqlstm\[export\]"'):
        export_onnx(checkpoint, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_export_into_a_folder_fails_before_exporting(tmp_path, monkeypatch):
    checkpoint = save_checkpoint(tmp_path / "m.ckpt", LSTMClassifier(hidden_size=8, num_layers=1), TrainConfig())
    (tmp_path / "out").mkdir()
    monkeypatch.setattr(export_module, "to_onnx", lambda *args: pytest.fail("exported although the target is a folder"))
    with pytest.raises(OutputError, match=r"out: is a folder; give a file name"):
        export_onnx(checkpoint, tmp_path / "out")


# The shapes a model trained on a user's sequences can take (model/classifier.py), each with padding.
SEQUENCE_SHAPES = {
    "patch-mean": dict(patch=4, pool="mean"),
    "bidirectional-last": dict(bidirectional=True, pool="last"),
    "gru-max-series": dict(cell="gru", pool="max", series_norm=True),
    "seed-attention-patch": dict(cell="seed", pool="attention", patch=3),
    "conv-bidirectional-mean": dict(conv=8, conv_patch=2, bidirectional=True, pool="mean", patch=5),
}


@pytest.mark.slow
@pytest.mark.parametrize("shape", list(SEQUENCE_SHAPES))
def test_onnx_equals_pytorch_for_each_sequence_shape(tmp_path, shape):
    model_args = SEQUENCE_SHAPES[shape]
    torch.manual_seed(0)
    model = LSTMClassifier(3, hidden_size=8, num_layers=2, num_classes=4, classes=tuple("abcd"),
                           inputs=dict(kind="sequences", steps=20), **model_args)
    if model.conv is not None:
        for norm in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d)):  # statistics as after training
            norm.running_mean.uniform_(-0.5, 0.5)
            norm.running_var.uniform_(0.5, 2.0)
    config = TrainConfig(dataset="x.npz", cell=model.cell, **{k: v for k, v in model_args.items() if k not in ("cell", "series_norm")},
                         **({"normalize": "series"} if model.series_norm else {}))
    checkpoint = save_checkpoint(tmp_path / "m.ckpt", model, config)
    assert export_onnx(checkpoint, tmp_path / "m.onnx").max_abs_diff <= 1e-4

    # Checked again on padded sequences of other lengths and a batch size the export did not see.
    generator = torch.Generator().manual_seed(5)
    x = torch.randn(7, 20, 3, generator=generator)
    lengths = torch.tensor([20, 1, 7, 13, 2, 19, 5])
    got = session(tmp_path / "m.onnx").run(None, {"x": x.numpy(), "lengths": lengths.numpy()})[0]
    with torch.inference_mode():
        expected = model.eval()(x, lengths).numpy()
    assert np.abs(got - expected).max() <= 1e-4
