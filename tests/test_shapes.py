"""The model shapes for a user's sequences: patches, pooling, a reverse core, a convolutional
branch and per-series standardisation. Padding never changes an answer, whatever the shape."""

from __future__ import annotations

import itertools

import pytest
import torch

from seqlstm import ConfigError, LSTMClassifier
from seqlstm.model.classifier import patches, reversal
from seqlstm.model.inputs import series_standardise

SHAPES = [
    dict(pool=pool, bidirectional=bidirectional, patch=patch)
    for pool, bidirectional, patch in itertools.product(("last", "mean", "max", "attention"), (False, True), (1, 4))
] + [dict(conv=6, pool="mean", patch=3), dict(conv=6, conv_patch=2, patch=4, bidirectional=True, series_norm=True),
   dict(series_norm=True, patch=2)]


def shape_id(shape: dict) -> str:
    return "-".join(f"{k}={v}" for k, v in shape.items())


@pytest.mark.parametrize("cell", ["lstm", "gru", "seed"])
@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
def test_padding_never_changes_an_answer_in_any_shape(cell, shape):
    torch.manual_seed(0)
    model = LSTMClassifier(3, hidden_size=8, num_layers=2, num_classes=4, cell=cell, **shape).eval()
    lengths = torch.tensor([5, 17, 9, 1, 12, 16])
    padded = torch.randn(len(lengths), 19, 3)
    for i, n in enumerate(lengths):
        padded[i, n:] = torch.randn(19 - int(n), 3) * 100  # padding of any value
    with torch.no_grad():
        batched = model(padded, lengths)
        for i, n in enumerate(lengths):
            alone = model(padded[i : i + 1, :n])
            torch.testing.assert_close(batched[i : i + 1], alone, rtol=0, atol=1e-5)
        # Without lengths the model reads the padding: the lengths are what make the answers right.
        assert not torch.allclose(model(padded)[0], batched[0], atol=1e-3)


def test_patches_are_consecutive_steps_side_by_side_and_lengths_count_them():
    model = LSTMClassifier(2, hidden_size=4, num_layers=1, num_classes=2, patch=3)
    x = torch.arange(2 * 7 * 2, dtype=torch.float32).reshape(2, 7, 2)
    steps, lengths = patches(*model.prepare(x, torch.tensor([7, 4])), 3)
    assert steps.shape == (2, 3, 6) and lengths.tolist() == [3, 2]
    assert steps[0, 0].tolist() == x[0, :3].flatten().tolist()
    assert steps[0, 2].tolist() == [*x[0, 6].tolist(), 0, 0, 0, 0]  # the last patch filled up with zeros
    assert steps[1, 1].tolist() == [*x[1, 3].tolist(), 0, 0, 0, 0]  # padding after step 4 is zeroed


def test_reversal_reverses_the_real_steps_and_keeps_the_padding_after_them():
    assert reversal(torch.tensor([3, 5, 1]), 5).tolist() == [[2, 1, 0, 3, 4], [4, 3, 2, 1, 0], [0, 1, 2, 3, 4]]


def test_the_reverse_core_reads_the_sequence_backwards():
    torch.manual_seed(1)
    model = LSTMClassifier(2, hidden_size=5, num_layers=1, num_classes=3, bidirectional=True, pool="last").eval()
    x = torch.randn(1, 6, 2)
    with torch.no_grad():
        forward, _ = model.lstm(x)
        backward, _ = model.lstm_reverse(x.flip(1))
        expected = model.fc(torch.cat([forward[:, -1], backward[:, -1]], dim=-1))
        torch.testing.assert_close(model(x), expected, rtol=0, atol=1e-6)


def test_series_standardisation_uses_each_sequences_own_real_steps():
    x = torch.tensor([[[1.0], [3.0], [99.0]], [[2.0], [2.0], [2.0]]])
    lengths = torch.tensor([2, 3])
    real = (torch.arange(3)[None, :] < lengths[:, None]).unsqueeze(-1)
    out = series_standardise(x, real, lengths)
    assert out[0, :2, 0].tolist() == [-1.0, 1.0]
    assert out[1, :, 0].tolist() == [0.0, 0.0, 0.0]  # a constant series is only centred


@pytest.mark.parametrize("pool", ["mean", "max", "attention"])
def test_pooling_reads_every_real_step(pool):
    torch.manual_seed(2)
    model = LSTMClassifier(1, hidden_size=6, num_layers=1, num_classes=2, pool=pool).eval()
    x = torch.randn(1, 10, 1)
    with torch.no_grad():
        out, _ = model.lstm(x)
        if pool == "mean":
            pooled = out.mean(1)
        elif pool == "max":
            pooled = out.amax(1)
        else:
            pooled = (model.attend(out).softmax(dim=1) * out).sum(1)
        torch.testing.assert_close(model(x), model.fc(pooled), rtol=0, atol=1e-6)


def test_unknown_pool_is_refused():
    with pytest.raises(ConfigError, match="unknown pool 'sum'; use one of last, mean, max, attention"):
        LSTMClassifier(pool="sum")
