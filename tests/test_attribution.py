"""Attributions by integrated gradients: complete for every cell and model shape, none on padding,
and concentrated where a task's answer is decided."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import tiny_task
from seqlstm import LSTMClassifier, TrainConfig, train
from seqlstm.attribution import attribute
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


def test_the_steps_that_decide_get_the_attribution():
    # tiny_task's class is set by the level of feature 0 in the first 4 of 16 steps; the rest is noise.
    task = tiny_task(300, seed=0)
    config = TrainConfig(dataset=None, hidden_size=16, num_layers=1, conv=0, batch_size=20, epochs=20, lr=0.01,
                         val_size=0, patience=0, precision="fp32")
    model = train(config, log=lambda line: None, source=Arrays(task["X"], task["y"]), files=False).model
    test = tiny_task(60, seed=1)
    result = attribute(model, torch.from_numpy(test["X"]))
    strength = result.values.abs().mean(dim=0)  # (steps, features)
    deciding = float(strength[:4, 0].mean())
    assert deciding > 3 * float(strength[4:].mean()) and deciding > 3 * float(strength[:, 1].mean())
    # The model did learn the task (chance is 1/3; four noisy steps allow about 85 %).
    assert np.mean(model.eval()(torch.from_numpy(test["X"])).argmax(1).numpy() == test["y"]) > 0.6
