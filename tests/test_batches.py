"""Batches of variable-length sequences: bucketed by length, padded to their own longest, and
trained the same however much padding the stored array carries."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seqlstm import TrainConfig, train
from seqlstm.data import batches
from seqlstm.data.batches import longest, shuffled_batches
from seqlstm.model.classifier import MaskedBatchNorm


def test_equal_lengths_draw_exactly_the_plain_shuffled_batches():
    plain = torch.randperm(103, generator=torch.Generator().manual_seed(5)).split(10)
    drawn = shuffled_batches(103, 10, torch.Generator().manual_seed(5), torch.full((103,), 7))
    assert all(torch.equal(a, b) for a, b in zip(plain, drawn)) and len(plain) == len(drawn)


def test_variable_lengths_are_bucketed_and_every_sample_is_drawn_once():
    lengths = torch.from_numpy(np.random.default_rng(0).integers(1, 500, 1000))
    drawn = shuffled_batches(1000, 8, torch.Generator().manual_seed(1), lengths)
    assert sorted(torch.cat(drawn).tolist()) == list(range(1000)) and len(drawn) == 125
    spread = np.mean([float(lengths[b].max() - lengths[b].min()) for b in drawn])
    assert spread < 20, spread  # random batches of 8 from 1..500 spread over ~390 steps
    again = shuffled_batches(1000, 8, torch.Generator().manual_seed(1), lengths)
    assert all(torch.equal(a, b) for a, b in zip(drawn, again))


def test_a_batch_is_padded_to_its_longest_rounded_up_but_never_past_the_file():
    lengths = torch.tensor([3, 70, 200, 150])
    assert longest(lengths, torch.tensor([0])) == 64
    assert longest(lengths, torch.tensor([0, 1])) == 128
    assert longest(lengths, torch.tensor([2, 3])) == 200  # 256 would pass the longest of all
    assert longest(None, torch.tensor([0])) is None


def test_masked_batch_norm_ignores_the_padding():
    torch.manual_seed(0)
    norm, plain = MaskedBatchNorm(3), torch.nn.BatchNorm1d(3)
    x = torch.randn(2, 3, 5)
    padded = torch.cat([x, torch.randn(2, 3, 7) * 100], dim=2)  # 7 steps of padding of any value
    mask = torch.cat([torch.ones(2, 1, 5), torch.zeros(2, 1, 7)], dim=2)
    torch.testing.assert_close(norm(padded, mask)[:, :, :5], plain(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(norm.running_mean, plain.running_mean)
    torch.testing.assert_close(norm.running_var, plain.running_var)


@pytest.mark.parametrize("bucket", [False, True])
def test_the_stored_padding_never_changes_training(tmp_path, bucket):
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 90, 120)
    values = rng.normal(size=(120, 90, 2)).astype(np.float32)
    y = (values[:, 0, 0] > 0).astype(int)
    weights = []
    for stored in (90, 700):  # the same sequences, stored with 610 more steps of padding
        x = np.zeros((120, stored, 2), np.float32)
        for i, n in enumerate(lengths):
            x[i, :n] = values[i, :n]
        np.savez(tmp_path / f"{stored}.npz", X=x, y=y, lengths=lengths)
        config = TrainConfig(dataset=str(tmp_path / f"{stored}.npz"), test_dataset=str(tmp_path / f"{stored}.npz"),
                             hidden_size=8, conv=4, max_steps=12, batch_size=16, bucket=bucket, out=str(tmp_path / f"{stored}.ckpt"),
                             run_dir=str(tmp_path / f"run{stored}"))
        weights.append(train(config, log=lambda line: None).model.state_dict())
    for name, weight in weights[0].items():
        assert torch.equal(weight, weights[1][name]), name
    assert batches.TRIM
