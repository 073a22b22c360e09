"""Source records: what --dataset names resolves once into a record; adding an image set is one
record; checkpoints of earlier formats load through the one upgrade."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from seqlstm import (Arrays, DataError, ImageSet, LSTMClassifier, SequenceFile, TrainConfig, evaluate_checkpoint,
                     explain, load_checkpoint, predict_files, save_checkpoint, source_for, train)
from seqlstm.checkpoint import FORMAT_VERSION
from seqlstm.data import sources
from seqlstm.data.digits import mnist_style
from seqlstm.data.idx import encode_idx, write_idx


def test_dataset_names_resolve_to_one_record_each():
    assert isinstance(source_for("Fashion-MNIST"), ImageSet) and source_for("Fashion-MNIST").name == "fashion-mnist"
    assert isinstance(source_for("data/Gestures.TS"), SequenceFile) and source_for("data/Gestures.TS").name == "Gestures"
    assert isinstance(source_for(None), Arrays)
    with pytest.raises(DataError, match="unknown dataset 'cifar'; known datasets: mnist, fashion-mnist"):
        source_for("cifar")
    with pytest.raises(DataError, match=r"--dataset notes.txt: not a file seqlstm reads"):
        source_for("notes.txt")


def test_adding_an_image_set_is_one_record(tmp_path, monkeypatch):
    """A third image set — files, checksums, classes, its photo preparation and its recipe — trains,
    evaluates, explains and predicts through every command without a change anywhere else."""
    rng = np.random.default_rng(0)
    labels = {split: rng.integers(0, 3, n).astype(np.uint8) for split, n in (("train", 300), ("test", 60))}
    images = {split: np.zeros((len(y), 28, 28), np.uint8) for split, y in labels.items()}
    for split, y in labels.items():  # class k: a bright bar in band k of the frame, easy to learn
        for i, k in enumerate(y):
            images[split][i, 4 + 8 * k : 8 + 8 * k, 4:24] = 255
    files = {}
    (tmp_path / "bars").mkdir()
    for split, prefix in (("train", "train"), ("test", "t10k")):
        for part, array in (("images-idx3", images[split]), ("labels-idx1", labels[split])):
            name = f"{prefix}-{part}-ubyte.gz"
            write_idx(tmp_path / "bars" / name, array)
            payload = encode_idx(array)
            files.setdefault(split, []).append(sources.DataFile(name, hashlib.md5(payload).hexdigest(), len(payload)))
    bars = sources.ImageDataset(
        name="bars", splits={split: tuple(pair) for split, pair in files.items()}, mirrors=("http://127.0.0.1:9/",),
        mirrors_env="SEQLSTM_BARS_MIRRORS", classes=("top", "middle", "bottom"), prepare=mnist_style,
        fast=dict(lr=0.02, augment_shift=0))
    monkeypatch.setitem(sources.DATASETS, "bars", bars)

    config = TrainConfig(dataset="Bars", data_dir=str(tmp_path / "bars"), hidden_size=16, num_layers=1, max_steps=60,
                         batch_size=20, out=str(tmp_path / "bars.ckpt"), run_dir=str(tmp_path / "run"))
    assert (config.dataset, config.lr, config.augment_shift, config.epochs) == ("bars", 0.02, 0, 2)
    result = train(config, log=lambda line: None)
    assert result.evaluation.total == 60 and result.evaluation.accuracy >= 90, result.evaluation.summary()
    again = evaluate_checkpoint(result.checkpoint, device="cpu")
    assert again.correct == result.evaluation.correct and again.classes == ("top", "middle", "bottom")
    assert explain(result.checkpoint, 0, out=None, device="cpu").classes == ("top", "middle", "bottom")
    picture = np.full((90, 60), 250, np.uint8)
    picture[60:75, 5:55] = 10  # a dark bar low on white paper: prepared as the record says, then read
    from PIL import Image

    Image.fromarray(picture).save(tmp_path / "bar.png")
    [answer] = predict_files(result.checkpoint, [tmp_path / "bar.png"], device="cpu")
    assert answer.error is None and len(answer.top) == 3


def v3_layout(path, encoding: dict) -> None:
    """Rewrite a checkpoint at `path` as format version 3 wrote it: a side-car `encoding`, the
    statistics as the model's own buffers, no classes or inputs in its arguments."""
    raw = torch.load(path, weights_only=True)
    raw["format_version"] = 3
    state = raw["state_dict"]
    state["input_mean"], state["input_std"] = state.pop("inputs.mean"), state.pop("inputs.std")
    permutation = state.pop("inputs.permutation", None)
    del raw["model_args"]["classes"], raw["model_args"]["inputs"]
    raw["encoding"] = {**encoding, "permutation": permutation}
    torch.save(raw, path)


def test_format_3_checkpoints_load_through_the_upgrade_and_answer_as_before(tmp_path, cli):
    torch.manual_seed(0)
    model = LSTMClassifier(1, hidden_size=8, num_layers=1, num_classes=3, classes=("a", "b", "c"),
                           inputs=dict(kind="images", image_shape=(28, 28), view="permuted", perm_seed=4))
    model.inputs.mean.fill_(0.2)
    model.inputs.std.fill_(0.3)
    path = save_checkpoint(tmp_path / "p.ckpt", model, TrainConfig(view="permuted", hidden_size=8, num_layers=1))
    v3_layout(path, dict(kind="images", classes=["a", "b", "c"], steps=784, features=1, view="permuted",
                         image_shape=[28, 28]))
    loaded, _ = load_checkpoint(path)
    images = torch.randint(0, 256, (5, 28, 28), dtype=torch.uint8)
    torch.testing.assert_close(loaded(images), model.eval()(images), rtol=0, atol=0)
    assert loaded.classes == ("a", "b", "c") and torch.equal(loaded.inputs.permutation, model.inputs.permutation)

    # The first version-3 files had no image_shape: square images, as their steps say.
    path = save_checkpoint(tmp_path / "p0.ckpt", model, TrainConfig(view="permuted", hidden_size=8, num_layers=1))
    v3_layout(path, dict(kind="images", classes=["a", "b", "c"], steps=784, features=1, view="permuted"))
    loaded, _ = load_checkpoint(path)
    assert loaded.inputs.image_shape == (28, 28)
    torch.testing.assert_close(loaded(images), model(images), rtol=0, atol=0)

    sequences = LSTMClassifier(2, hidden_size=8, num_layers=1, num_classes=2, pool="mean", conv=4, classes=("x", "y"),
                               inputs=dict(kind="sequences", steps=9)).eval()
    sequences.inputs.mean.copy_(torch.tensor([1.0, -2.0]))
    path = save_checkpoint(tmp_path / "s.ckpt", sequences, TrainConfig(dataset="s.npz", hidden_size=8, num_layers=1, conv=4))
    v3_layout(path, dict(kind="features", classes=["x", "y"], steps=9, features=2, view="rows", image_shape=None))
    loaded, _ = load_checkpoint(path)
    x, lengths = torch.randn(3, 9, 2), torch.tensor([9, 4, 1])
    torch.testing.assert_close(loaded(x, lengths), sequences(x, lengths), rtol=0, atol=0)
    assert (loaded.inputs.kind, loaded.inputs.steps, loaded.classes) == ("sequences", 9, ("x", "y"))
    # Saved again, it is today's format, and the CLI reads it as any other.
    save_checkpoint(tmp_path / "again.ckpt", loaded, TrainConfig(dataset="s.npz", hidden_size=8, num_layers=1, conv=4))
    assert torch.load(tmp_path / "again.ckpt", weights_only=True)["format_version"] == FORMAT_VERSION
    np.savez(tmp_path / "new.npz", X=x.numpy(), y=np.array(["x", "y", "y"]), lengths=lengths.numpy())
    done = cli("evaluate", str(tmp_path / "again.ckpt"), "--dataset", str(tmp_path / "new.npz"), "--device", "cpu")
    assert done.returncode == 0 and "on the 3 test sequences" in done.stdout, done.stderr
