"""ONNX export: the file reproduces PyTorch for every model variant, and runs with onnxruntime alone."""

import json
import re

import numpy as np
import pytest
import torch

from conftest import run_cli, tiny_task
from seqlstm import (ExportError, LSTMClassifier, OutputError, TrainConfig, export_onnx, load_checkpoint, load_dataset, predict,
                     predict_files, save_checkpoint, train)
from seqlstm import export as export_module
from seqlstm.runtime import OnnxRunner, load_runner

onnxruntime = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

# Every kind of model a checkpoint can hold: (constructor arguments, config fields).
MODEL_VARIANTS = {
    "lstm-1x16": (dict(hidden_size=16, num_layers=1), {}),
    "lstm-2x48": (dict(hidden_size=48, num_layers=2), {}),
    "lstm-3x8-26-classes": (dict(hidden_size=8, num_layers=3, num_classes=26), {}),
    "gru-2x32": (dict(hidden_size=32, num_layers=2, cell="gru"), dict(cell="gru")),
    "seed-2x32": (dict(hidden_size=32, num_layers=2, cell="seed"), dict(cell="seed")),
}  # the pixel views: test_sequences.py exports a trained permuted-pixel model


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
    monkeypatch.setattr(export_module, "max_abs_diff", lambda model, path, lengths: 0.5)
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
def test_onnx_equals_pytorch_for_each_sequence_shape_at_every_length(tmp_path, shape):
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
    result = export_onnx(checkpoint, tmp_path / "m.onnx", max_length=30)
    assert result.max_abs_diff <= 1e-4
    assert result.lengths == (1, 6, 20, 30)
    assert result.inputs == {"x": "float32 (batch, 1-30 steps, 3)", "lengths": "int64 (batch)"}

    # Checked again on padded batches of other lengths, beyond the training length included, and
    # a batch size the export did not see.
    generator = torch.Generator().manual_seed(5)
    exported = session(tmp_path / "m.onnx")
    for steps in (2, 13, 20, 27, 30):
        x = torch.randn(7, steps, 3, generator=generator)
        lengths = torch.randint(1, steps + 1, (7,), generator=generator)
        lengths[0] = steps
        got = exported.run(None, {"x": x.numpy(), "lengths": lengths.numpy()})[0]
        with torch.inference_mode():
            expected = model.eval()(x, lengths).numpy()
        assert np.abs(got - expected).max() <= 1e-4, steps
    with pytest.raises(Exception, match="ConstantOfShape"):  # beyond its maximum the file refuses the input itself
        exported.run(None, {"x": np.zeros((1, 31, 3), np.float32), "lengths": np.array([31])})


def test_export_options_that_do_not_fit_the_model_are_refused(image_checkpoint, tmp_path, cli):
    done = cli("export", str(image_checkpoint), "--onnx", "m.onnx", "--max-length", "40", cwd=tmp_path)
    assert (done.returncode, done.stderr) == (
        1, "seqlstm: error: --max-length is for models that read sequences; this one reads 28-step images\n")
    done = cli("export", str(image_checkpoint), "--onnx", "m.onnx", "--int8", "--int8-max-loss", "-1", cwd=tmp_path)
    assert (done.returncode, done.stderr) == (1, "seqlstm: error: --int8-max-loss must be a number of points >= 0, got -1.0\n")
    assert not (tmp_path / "m.onnx").exists()


def trained_sequence_model(folder, constant_feature: bool = False):
    """A tiny model trained on tiny_task (100 % on its held-out test share), its checkpoint and config.
    With `constant_feature`, the data has a third feature that is always 5 (0 once standardised)."""
    task = tiny_task(300)
    if constant_feature:
        task["X"] = np.concatenate([task["X"], np.full((300, 16, 1), 5.0, np.float32)], axis=2)
    np.savez(folder / "tiny.npz", **task)
    config = TrainConfig(dataset=str(folder / "tiny.npz"), hidden_size=8, num_layers=1, conv=0, precision="fp32",
                         batch_size=10, epochs=20, out=str(folder / "tiny.ckpt"), run_dir=str(folder / "run"))
    result = train(config, log=lambda line: None)
    return result.checkpoint, result.evaluation


@pytest.mark.slow
def test_int8_export_reports_its_accuracy_beside_float32s_and_keeps_it(tmp_path):
    checkpoint, evaluation = trained_sequence_model(tmp_path)
    result = export_onnx(checkpoint, tmp_path / "tiny8.onnx", int8=True)
    # float32 in onnxruntime scores what PyTorch scored at the end of training, on the same test share.
    assert result.accuracy["float32"] == evaluation.accuracy
    assert result.accuracy["float32"] - result.accuracy["int8"] <= 0.2
    assert result.summary().splitlines()[1] == (
        f"int8 weights: {result.accuracy['int8']:.2f} % on the test split, against {evaluation.accuracy:.2f} % in float32 "
        f"({result.accuracy['int8'] - evaluation.accuracy:+.2f} points)")
    saved = onnx.load(tmp_path / "tiny8.onnx")
    ops = {node.op_type for node in saved.graph.node}
    assert "DynamicQuantizeLSTM" in ops and "LSTM" not in ops  # the core really runs on int8 weights
    meta = {entry.key: entry.value for entry in saved.metadata_props}
    assert (meta["weights"], json.loads(meta["classes"]), meta["input"], meta["max_length"]) == ("int8", ["0", "1", "2"], "sequences", "16")


@pytest.mark.slow
def test_int8_that_loses_accuracy_is_refused_with_the_figures_and_nothing_written(tmp_path):
    checkpoint, evaluation = trained_sequence_model(tmp_path, constant_feature=True)
    model, config = load_checkpoint(checkpoint)
    # Large input weights on a feature that is always 0 leave float32 unchanged, but int8 keeps one
    # scale per weight tensor: every other weight then rounds to 0.
    with torch.no_grad():
        model.lstm.weight_ih_l0[:, 2] = 1e4
    damaged = save_checkpoint(tmp_path / "damaged.ckpt", model, config)
    (tmp_path / "old.onnx").write_bytes(b"previous export")
    with pytest.raises(ExportError) as refused:
        export_onnx(damaged, tmp_path / "old.onnx", int8=True)
    message = str(refused.value)
    assert re.fullmatch(
        rf"int8 weights: (\S+) % on the test split, against {evaluation.accuracy:.2f} % in float32 \((\S+) points\): more than "
        r"the 0.2 points --int8-max-loss allows; \S*old.onnx was not written. Export without --int8, or allow more", message)
    assert float(re.search(r"\((\S+) points", message).group(1)) < -20
    assert (tmp_path / "old.onnx").read_bytes() == b"previous export"
    assert export_onnx(damaged, tmp_path / "plain.onnx").accuracy is None  # float32 alone is exported as before


@pytest.mark.slow
def test_onnxruntime_gives_the_top1_of_pytorch_on_mnist_test_images(trained_checkpoint, mnist_dir, tmp_path):
    model, _ = load_checkpoint(trained_checkpoint, "cpu")
    images = load_dataset("mnist", "test", mnist_dir).images[:2000]
    expected = load_runner(model, trained_checkpoint, "torch").logits(images)
    runner = load_runner(model, trained_checkpoint, "onnxruntime")
    assert isinstance(runner, OnnxRunner)
    got = runner.logits(images)
    assert torch.equal(got.argmax(1), expected.argmax(1))
    assert (got - expected).abs().max() <= 1e-4
    one = runner.logits(images[:1])  # one sample takes the single-threaded session
    assert torch.equal(one.argmax(1), expected[:1].argmax(1))
    cached = list((tmp_path / "cache" / "onnx").iterdir())
    assert len(cached) == 1
    stamp = cached[0].stat().st_mtime_ns
    auto = load_runner(model, trained_checkpoint, "auto")  # exported once: the cached file is reused
    assert cached[0].stat().st_mtime_ns == stamp
    for batch in (1, 300, 1, 300):
        assert torch.equal(auto.logits(images[:batch]).argmax(1), expected[:batch].argmax(1))
    assert sorted(auto.chosen) == [1, 9]  # one choice per size class, measured once each


@pytest.mark.slow
def test_predict_with_onnxruntime_names_a_sequence_longer_than_its_file_takes(tmp_path):
    torch.manual_seed(0)
    model = LSTMClassifier(3, hidden_size=8, num_layers=1, num_classes=2, inputs=dict(kind="sequences", steps=20))
    checkpoint = save_checkpoint(tmp_path / "m.ckpt", model, TrainConfig(dataset="x.npz"))
    np.savez(tmp_path / "short.npz", X=np.random.default_rng(0).normal(size=(4, 20, 3)).astype(np.float32))
    np.savez(tmp_path / "long.npz", X=np.zeros((1, 25, 3), np.float32))
    torch_results = predict_files(checkpoint, [tmp_path / "short.npz"], device="cpu")
    short, long = predict_files(checkpoint, [tmp_path / "short.npz", tmp_path / "long.npz"], device="cpu", runtime="onnxruntime")[3:]
    assert short.top[0].label == torch_results[3].top[0].label
    assert abs(short.top[0].probability - torch_results[3].top[0].probability) < 1e-5
    assert long.to_dict() == {"file": str(tmp_path / "long.npz"), "error": (
        "a sequence of 25 steps is longer than the 20 the ONNX file takes; use --runtime torch, or export with a "
        "larger --max-length")}
    # auto gives what ONNX Runtime cannot take to PyTorch.
    long_auto = predict_files(checkpoint, [tmp_path / "long.npz"], device="cpu", runtime="auto")[0]
    assert long_auto.error is None
    assert long_auto.top == predict_files(checkpoint, [tmp_path / "long.npz"], device="cpu")[0].top


@pytest.mark.slow
def test_a_file_for_sequences_shorter_than_training_ones(tmp_path):
    torch.manual_seed(0)
    model = LSTMClassifier(2, hidden_size=8, num_layers=1, num_classes=3, pool="mean", patch=2,
                           inputs=dict(kind="sequences", steps=20))
    checkpoint = save_checkpoint(tmp_path / "m.ckpt", model, TrainConfig(dataset="x.npz", pool="mean", patch=2))
    result = export_onnx(checkpoint, tmp_path / "m.onnx", max_length=8)
    assert result.lengths == (1, 6, 8) and result.max_abs_diff <= 1e-4
    assert result.inputs["x"] == "float32 (batch, 1-8 steps, 2)"
