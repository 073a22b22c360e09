"""`seqlstm` as torchrun runs it for tests/test_distributed.py, with two hooks that live only here:
every rank saves its final weights to $SEQLSTM_TEST_WEIGHTS/rank<R>.pt (rank 1 writes nothing
otherwise), and the rank named by $SEQLSTM_TEST_FAIL_RANK raises at its third training step."""

import importlib
import os
import sys
from pathlib import Path

import torch

from seqlstm import cli

training = importlib.import_module("seqlstm.train")
rank = os.environ["RANK"]
fit, random_shift = training.fit, training.random_shift
steps = []


def failing_shift(*args, **kwargs):
    steps.append(None)
    if rank == os.environ.get("SEQLSTM_TEST_FAIL_RANK") and len(steps) == 3:
        raise RuntimeError(f"injected failure on rank {rank}")
    return random_shift(*args, **kwargs)


def fit_and_keep(*args, **kwargs):
    result = fit(*args, **kwargs)
    torch.save(result.model.state_dict(), Path(os.environ["SEQLSTM_TEST_WEIGHTS"]) / f"rank{rank}.pt")
    return result


training.random_shift, training.fit = failing_shift, fit_and_keep
sys.exit(cli.main(sys.argv[1:]))
