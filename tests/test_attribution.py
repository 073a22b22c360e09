"""Attributions by integrated gradients: complete for every cell and model shape, none on padding,
and concentrated where a task's answer is decided."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import tiny_task
from seqlstm import LSTMClassifier, TrainConfig, train
from seqlstm.attribution import attribute, deletion
from seqlstm.data.records import Arrays

pytest.importorskip("captum", reason='attributions need pip install ".[attribute]"')

SHAPES = {
    "images, lstm": dict(),
    "images, gru": dict(cell="gru"),
    "images, seed": dict(cell="seed"),
    "sequences, conv, mean": dict(cell="lstm", conv=4, pool="mean"),
    "sequences, bidirectional, attention, patches": dict(cell="gru", bidirectional=True, pool="attention", patch=3),
    "sequences, seed, max": dict(cell="seed", pool="max"),
}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_attributions_sum_to_the_logit_change_for_every_shape(shape):
    torch.manual_seed(0)
    if shape.startswith("images"):
        model = LSTMClassifier(hidden_size=16, num_layers=2, **SHAPES[shape])
        raw, lengths = torch.randint(0, 256, (3, 28, 28), dtype=torch.uint8), None
    else:
        model = LSTMClassifier(2, hidden_size=16, num_layers=1, num_classes=3, inputs=dict(kind="sequences", steps=12),
                               **SHAPES[shape])
        raw, lengths = torch.randn(3, 12, 2), torch.tensor([12, 9, 5])
    result = attribute(model, raw, lengths)
    assert result.values.shape == raw.shape
    assert torch.equal(result.target, model.eval()(raw, *(() if lengths is None else (lengths,))).argmax(1))
    # Completeness: the attributions add up to the target logit's change from the baseline (blank
    # images; the training mean for sequences), computed here from the model itself.
    x = raw.float() / 255 if raw.dtype == torch.uint8 else raw
    baseline = torch.zeros_like(x) if lengths is None else model.inputs.mean.expand_as(x)
    args = () if lengths is None else (lengths,)
    with torch.no_grad():
        gap = (model(x, *args) - model(baseline, *args)).gather(1, result.target[:, None])[:, 0]
    torch.testing.assert_close(result.gap, gap, atol=1e-5, rtol=1e-5)
    assert (result.values.flatten(1).sum(1) - gap).abs().max() <= 1e-3 * max(1.0, float(gap.abs().max())), (result.error, gap)
    if lengths is not None:  # padding is never read, so it decides nothing
        assert result.values[1, 9:].abs().max() == 0 and result.values[2, 5:].abs().max() == 0


def test_a_chosen_class_is_explained_and_the_model_keeps_its_mode():
    torch.manual_seed(0)
    model = LSTMClassifier(hidden_size=8, num_layers=1).train()
    result = attribute(model, torch.randint(0, 256, (2, 28, 28), dtype=torch.uint8), target=3)
    assert result.target.tolist() == [3, 3] and model.training


@pytest.fixture(scope="module")
def tiny_model():
    """A model trained on tiny_task, whose class is set by the level of feature 0 in the first 4 of
    16 steps (the rest is noise), and that task's test samples."""
    task = tiny_task(300, seed=0)
    config = TrainConfig(dataset=None, hidden_size=16, num_layers=1, conv=0, batch_size=20, epochs=20, lr=0.01,
                         val_size=0, patience=0, precision="fp32")
    model = train(config, log=lambda line: None, source=Arrays(task["X"], task["y"]), files=False).model
    test = tiny_task(60, seed=1)
    # The model did learn the task (chance is 1/3; four noisy steps allow about 85 %).
    assert np.mean(model.eval()(torch.from_numpy(test["X"])).argmax(1).numpy() == test["y"]) > 0.6
    return model, torch.from_numpy(test["X"])


def test_the_steps_that_decide_get_the_attribution(tiny_model):
    model, x = tiny_model
    result = attribute(model, x)
    strength = result.values.abs().mean(dim=0)  # (steps, features)
    deciding = float(strength[:4, 0].mean())
    assert deciding > 3 * float(strength[4:].mean()) and deciding > 3 * float(strength[:, 1].mean())


def test_masking_the_most_attributed_steps_first_takes_the_answer_away_fastest(tiny_model):
    model, x = tiny_model
    check = deletion(model, x, points=17, repeats=5)  # one point per step of 16
    assert check.attributed.shape == check.random.shape == (len(x), 17)
    torch.testing.assert_close(check.attributed[:, 0], check.random[:, 0])  # nothing masked: the same answer
    torch.testing.assert_close(check.attributed[:, -1], check.random[:, -1])  # everything masked: the baseline's
    attributed, random = check.areas()
    assert attributed < random - 0.1, (attributed, random)
    # The four deciding steps are masked first, while four random steps of 16 usually leave some of them.
    assert check.attributed[:, 4].mean() < check.random[:, 4].mean() - 0.15


def test_deletion_masks_only_real_steps_and_pixels_in_the_order_the_model_reads_them():
    torch.manual_seed(0)
    model = LSTMClassifier(1, hidden_size=8, num_layers=1, inputs=dict(view="permuted", image_shape=(28, 28), perm_seed=1))
    raw = torch.randint(0, 256, (2, 28, 28), dtype=torch.uint8)
    check = deletion(model, raw, points=3, repeats=2)
    with torch.no_grad():
        blank = model(torch.zeros(1, 28, 28)).softmax(1)[0]
    target = attribute(model, raw).target
    torch.testing.assert_close(check.attributed[:, -1], blank[target])  # every pixel masked: a blank image

    sequences = LSTMClassifier(2, hidden_size=8, num_layers=1, num_classes=3, inputs=dict(kind="sequences", steps=10))
    sequences.inputs.mean.copy_(torch.tensor([0.5, -1.0]))
    x, lengths = torch.randn(2, 10, 2), torch.tensor([10, 4])
    check = deletion(sequences, x, lengths, points=2, repeats=1)
    masked = sequences.inputs.mean.expand(2, 10, 2).clone()
    masked[1, 4:] = x[1, 4:]  # the padding is no step of the sequence: whatever it holds, it is never read
    with torch.no_grad():
        expected = sequences(masked, lengths).softmax(1)
    target = attribute(sequences, x, lengths).target
    torch.testing.assert_close(check.attributed[:, -1], expected.gather(1, target[:, None])[:, 0])
