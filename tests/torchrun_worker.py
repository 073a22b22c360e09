"""`seqlstm` as torchrun runs it for tests/test_distributed.py, with two hooks that live only here:
every rank saves its final weights and the number of training samples it ran through the model to
$SEQLSTM_TEST_WEIGHTS/rank<R>.pt (rank 1 writes nothing otherwise), and the rank named by $SEQLSTM_TEST_FAIL_RANK raises at training step $SEQLSTM_TEST_FAIL_STEP."""

import importlib
import os
import sys
from pathlib import Path

import torch

from seqlstm import LSTMClassifier, cli

training = importlib.import_module("seqlstm.train")
records = importlib.import_module("seqlstm.data.records")
rank = os.environ["RANK"]
fit, augment, forward = training.fit, records.ImageSet.augment, LSTMClassifier.forward
steps, samples = [], []


def failing_augment(*args, **kwargs):
    steps.append(None)
    if rank == os.environ.get("SEQLSTM_TEST_FAIL_RANK") and len(steps) == int(os.environ["SEQLSTM_TEST_FAIL_STEP"]):
        raise RuntimeError(f"injected failure on rank {rank}")
    return augment(*args, **kwargs)


def counted_forward(model, x, lengths=None):
    if model.training:
        samples.append(len(x))
    return forward(model, x, lengths)


def fit_and_keep(*args, **kwargs):
    result = fit(*args, **kwargs)
    kept = {"weights": result.model.state_dict(), "samples": sum(samples)}
    torch.save(kept, Path(os.environ["SEQLSTM_TEST_WEIGHTS"]) / f"rank{rank}.pt")
    return result


records.ImageSet.augment, training.fit, LSTMClassifier.forward = failing_augment, fit_and_keep, counted_forward
sys.exit(cli.main(sys.argv[1:]))
