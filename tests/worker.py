"""`seqlstm` as a real process, with test recorders chosen by environment variables (the tests that
need a real process: signals, SIGKILL, torchrun). Each recorder is injected through `cli.main`'s
`recorders`, nothing is patched:

- SEQLSTM_TEST_WEIGHTS=DIR: every rank saves its final weights and the number of training samples
  it ran through the model to DIR/rank<R>.pt (rank 1 writes nothing otherwise);
- SEQLSTM_TEST_FAIL_RANK=R, SEQLSTM_TEST_FAIL_STEP=N: rank R raises RuntimeError after step N;
- SEQLSTM_TEST_SLOW_FROM=N: from step N on, every step takes 0.2 s more, so that a signal sent
  after its line is printed arrives while the run is still going;
- SEQLSTM_TEST_READS=DIR: every rank writes the training samples it read from a pack, step by step,
  to DIR/reads<R>.json (the only recorder that wraps something: the pack's `read`).
"""

import json
import os
import sys
import time
from pathlib import Path

import torch

from seqlstm import Recorder, cli

RANK = os.environ.get("RANK", "0")


class KeepWeights(Recorder):
    everywhere = True

    def __init__(self, folder: str):
        self.folder, self.samples = Path(folder), 0

    def start(self, trainer):
        trainer.model.register_forward_pre_hook(self.count)

    def count(self, model, args):
        if model.training:
            self.samples += len(args[0])

    def end(self, trainer, evaluation):
        kept = {"weights": trainer.model.state_dict(), "samples": self.samples}
        torch.save(kept, self.folder / f"rank{RANK}.pt")


class FailAt(Recorder):
    everywhere = True

    def __init__(self, rank: str, step: int):
        self.rank, self.step = rank, step

    def after_step(self, trainer, step):
        if RANK == self.rank and step.step == self.step:
            raise RuntimeError(f"injected failure on rank {RANK}")


class SlowFrom(Recorder):
    def __init__(self, step: int):
        self.step = step

    def after_step(self, trainer, step):
        if step.step >= self.step:
            time.sleep(0.2)


class KeepReads(Recorder):
    everywhere = True

    def __init__(self, folder: str):
        self.folder, self.reads = Path(folder), []

    def start(self, trainer):
        read = trainer.train_set.read

        def recorded(indices, steps=None):
            self.reads.append(indices.tolist())
            return read(indices, steps)

        trainer.train_set.read = recorded

    def end(self, trainer, evaluation):
        (self.folder / f"reads{RANK}.json").write_text(json.dumps(self.reads))


env = os.environ
recorders = ([KeepWeights(env["SEQLSTM_TEST_WEIGHTS"])] if "SEQLSTM_TEST_WEIGHTS" in env else []) + (
    [FailAt(env["SEQLSTM_TEST_FAIL_RANK"], int(env["SEQLSTM_TEST_FAIL_STEP"]))] if "SEQLSTM_TEST_FAIL_RANK" in env else []) + (
    [SlowFrom(int(env["SEQLSTM_TEST_SLOW_FROM"]))] if "SEQLSTM_TEST_SLOW_FROM" in env else []) + (
    [KeepReads(env["SEQLSTM_TEST_READS"])] if "SEQLSTM_TEST_READS" in env else [])
sys.exit(cli.main(sys.argv[1:], recorders))
