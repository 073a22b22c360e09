"""`explain`: the figure and the numbers for one sample, through the API and the CLI."""

import json
import sys

import numpy as np
import pytest
import torch
from conftest import run_cli, tiny_task
from PIL import Image

from seqlstm import ConfigError, LSTMClassifier, TrainConfig, explain, save_checkpoint
from seqlstm.explanation import unit_order
from seqlstm.model.cells import GATES, TRACED

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def checkpoint(tmp_path, cell, layers=2, hidden=12):
    torch.manual_seed(0)
    model = LSTMClassifier(28, hidden_size=hidden, num_layers=layers, num_classes=10, cell=cell)
    return save_checkpoint(tmp_path / f"{cell}.ckpt", model, TrainConfig(cell=cell, hidden_size=hidden, num_layers=layers))


@pytest.mark.parametrize("cell", ["lstm", "gru", "seed"])
def test_explain_writes_a_png_and_json_for_every_cell(tmp_path, mnist_dir, cell):
    path = checkpoint(tmp_path, cell)
    result = explain(path, 7, out=tmp_path / "figs" / "g.png", json_path=tmp_path / "g.json", data_dir=mnist_dir)

    png = (tmp_path / "figs" / "g.png").read_bytes()
    assert png.startswith(PNG_SIGNATURE)
    with Image.open(tmp_path / "figs" / "g.png") as image:
        width, height = image.size
    assert width >= 800 and height >= 800

    data = json.loads((tmp_path / "g.json").read_text())
    assert data["cell"] == cell and data["index"] == 7 and data["split"] == "test"
    assert data["label"] == 9  # the eighth test image of MNIST is a 9
    assert data["predicted"] == result.predicted
    assert len(data["image"]) == 28 and len(data["image"][0]) == 28
    assert set(data["traces"]) == set(TRACED[cell])
    for values in data["traces"].values():
        assert (len(values), len(values[0]), len(values[0][0])) == (2, 28, 12)
    assert (len(data["probabilities"]), len(data["probabilities"][0])) == (28, 10)
    assert abs(sum(data["probabilities"][-1]) - 1) < 1e-4
    assert set(data["gate_means"]) == set(GATES[cell])
    assert all((len(v), len(v[0])) == (2, 28) for v in data["gate_means"].values())
    assert (len(data["cell_norm"]), len(data["cell_norm"][0])) == (2, 28)
    check_attribution(data, (28, 28), 28)


def check_attribution(data: dict, shape: tuple[int, int], steps: int) -> None:
    """The JSON's attributions: toward the prediction, of the input's shape, complete, and summed per step."""
    found = data["attribution"]
    assert found["target"] == data["predicted"]
    assert (len(found["values"]), len(found["values"][0])) == shape
    assert len(found["per_step"]) == steps
    total = sum(map(sum, found["values"]))
    assert sum(found["per_step"]) == pytest.approx(total, abs=1e-4)
    assert total == pytest.approx(found["logit_change"] + found["completeness_error"], abs=1e-4)
    assert abs(found["completeness_error"]) <= 0.01 * max(1.0, abs(found["logit_change"]))


def test_explain_attributes_a_sequence_models_answer_to_its_steps_and_features(tmp_path):
    np.savez(tmp_path / "tiny.npz", **tiny_task())
    torch.manual_seed(0)
    shape = dict(patch=3, conv=4, pool="mean")
    model = LSTMClassifier(2, hidden_size=8, num_layers=1, num_classes=3, inputs=dict(kind="sequences", steps=16), **shape)
    path = save_checkpoint(tmp_path / "seq.ckpt", model, TrainConfig(dataset=str(tmp_path / "tiny.npz"), hidden_size=8,
                                                                     num_layers=1, **shape))
    result = explain(path, 2, out=tmp_path / "seq.png", json_path=tmp_path / "seq.json")
    assert (tmp_path / "seq.png").read_bytes().startswith(PNG_SIGNATURE)
    check_attribution(json.loads((tmp_path / "seq.json").read_text()), (16, 2), 6)  # 16 steps read in patches of 3
    assert result.attribution_read.shape == (16, 2)


def test_explain_agrees_with_the_model(tmp_path, mnist_dir):
    from seqlstm import load_checkpoint, load_dataset

    path = checkpoint(tmp_path, "lstm", layers=3)
    result = explain(path, 3, split="train", out=None, data_dir=mnist_dir)
    assert result.figure is None and result.json is None and result.split == "train"
    model, _ = load_checkpoint(path)
    images, labels = load_dataset("mnist", "train", mnist_dir)
    expected = model(images[3:4].float() / 255).softmax(-1)[0]  # rows of pixels scaled to [0, 1]
    torch.testing.assert_close(result.trace["probabilities"][-1], expected, rtol=0, atol=1e-5)
    assert result.label == int(labels[3]) and result.trace["forget"].shape == (3, 28, 12)


@pytest.mark.parametrize("index", [10000, -1])
def test_index_out_of_range(tmp_path, mnist_dir, index):
    with pytest.raises(ConfigError, match=rf"index {index} is out of range: the test split has 10000 samples \(0..9999\)"):
        explain(checkpoint(tmp_path, "gru"), index, out=tmp_path / "g.png", data_dir=mnist_dir)
    assert not (tmp_path / "g.png").exists()


@pytest.mark.e2e
def test_cli_explain_in_a_real_process(tmp_path, mnist_dir):
    checkpoint(tmp_path, "seed")
    done = run_cli("explain", "seed.ckpt", "--index", "0", "--data-dir", str(mnist_dir), "--json", "g.json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("test sample 0: label 7, predicted ") and done.stdout.endswith("; wrote gates.png, g.json\n")
    assert (tmp_path / "gates.png").read_bytes().startswith(PNG_SIGNATURE)
    assert json.loads((tmp_path / "g.json").read_text())["label"] == 7


def test_cli_explain_errors(tmp_path, mnist_dir, cli):
    checkpoint(tmp_path, "seed")
    for args, message in [
        (["--index", "60000", "--split", "train"], "index 60000 is out of range: the train split has 60000 samples"),
        (["--index", "0", "--data-dir", "no/such/dir"], "no such directory"),
    ]:
        failed = cli("explain", "seed.ckpt", *args, "--out", "bad.png", *([] if "--data-dir" in args else ["--data-dir", str(mnist_dir)]), cwd=tmp_path)
        assert failed.returncode == 1 and message in failed.stderr and "Traceback" not in failed.stderr
        assert not (tmp_path / "bad.png").exists()
    missing = cli("explain", "nothing.ckpt", "--index", "0", cwd=tmp_path)
    assert missing.returncode == 1 and "no such checkpoint file" in missing.stderr

    (tmp_path / "taken").mkdir()
    for args, message in [
        (["--out", "g.jpg"], "g.jpg: the figure is written as PNG; give a file name ending in .png"),
        (["--out", "g2.png", "--json", "taken"], "taken: is a folder; give a file name"),
    ]:
        failed = cli("explain", "seed.ckpt", "--index", "0", *args, "--data-dir", str(mnist_dir), cwd=tmp_path)
        assert failed.returncode == 1 and message in failed.stderr and "Traceback" not in failed.stderr
        assert not (tmp_path / "g.jpg").exists() and not (tmp_path / "g2.png").exists()


def test_a_model_with_more_outputs_than_the_dataset_has_classes_is_labelled_by_index(tmp_path, mnist_dir):
    torch.manual_seed(0)
    model = LSTMClassifier(28, hidden_size=8, num_layers=1, num_classes=26)
    path = save_checkpoint(tmp_path / "wide.ckpt", model, TrainConfig(hidden_size=8, num_layers=1))
    result = explain(path, 0, out=tmp_path / "g.png", data_dir=mnist_dir)
    assert result.classes == tuple(str(k) for k in range(26))
    assert result.summary().startswith(f"test sample 0: label 7, predicted {result.predicted} (")


def test_units_are_ordered_by_the_step_at_which_their_hidden_state_is_strongest():
    hidden = torch.zeros(2, 4, 3)  # (layers, steps, units)
    hidden[0, 2, 0], hidden[0, 0, 1], hidden[0, 0, 2] = 0.9, -0.5, 0.7  # unit 0 late; units 1 and 2 at step 0
    hidden[1, 3, 0], hidden[1, 1, 1], hidden[1, 3, 2] = 0.2, 0.3, -0.8
    assert unit_order({"hidden": hidden}).tolist() == [[2, 1, 0], [1, 2, 0]]


def test_the_json_holds_the_unit_order_the_figure_uses(tmp_path, mnist_dir):
    result = explain(checkpoint(tmp_path, "gru"), 0, out=None, json_path=tmp_path / "g.json", data_dir=mnist_dir)
    order = json.loads((tmp_path / "g.json").read_text())["unit_order"]
    assert order == result.unit_order().tolist() and [sorted(layer) for layer in order] == [list(range(12))] * 2


def test_without_captum_explain_leaves_the_attributions_out_and_says_so(tmp_path, mnist_dir, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "captum.attr", None)  # as if the attribute extra were not installed
    path = checkpoint(tmp_path, "gru", layers=1)
    result = explain(path, 0, out=tmp_path / "g.png", json_path=tmp_path / "g.json", data_dir=mnist_dir)
    assert result.attribution is None and json.loads((tmp_path / "g.json").read_text())["attribution"] is None
    assert (tmp_path / "g.png").read_bytes().startswith(PNG_SIGNATURE)
    assert 'install it with: pip install "seqlstm[attribute]"; the figure and JSON leave the attributions out' in caplog.text


def test_per_step_attributions_follow_the_models_patches():
    from seqlstm.explanation import steps_of

    read = torch.arange(18, dtype=torch.float32).reshape(9, 2)  # 9 input steps of 2 features
    assert steps_of(read, 4).tolist() == [28.0, 92.0, 33.0]  # steps 0-3, 4-7 and the partly filled 8
    assert steps_of(read, 1).tolist() == read.sum(1).tolist()
