"""`seqlstm train` under torchrun: two real gloo processes on 127.0.0.1 take the same steps as one."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import run_cli
from seqlstm.checkpoint import read_checkpoint
from seqlstm.runs import read_metrics

WORKER = Path(__file__).with_name("worker.py")
SRC = Path(__file__).resolve().parents[1] / "src"
# Small but complete: augmentation, clipping, the one-cycle schedule and a validation split all
# take part, in float32 so that the only difference is the order of the gradient sums.
ARGS = ("--hidden-size", "16", "--max-steps", "10", "--precision", "fp32", "--log-every", "2",
        "--val-size", "1000", "--eval-every", "5", "--augment-shift", "2", "--checkpoint-every", "5")


@pytest.fixture(scope="module")
def single(mnist_dir, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """The same run in one process: its folder (run directory `one`, model `one.ckpt`) and its output."""
    folder = tmp_path_factory.mktemp("single")
    one = run_cli("train", "--data-dir", str(mnist_dir), "--run-dir", "one", "--out", "one.ckpt", *ARGS, cwd=folder)
    assert one.returncode == 0, one.stderr
    return folder, one


def torchrun(tmp_path: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the test worker (seqlstm's CLI) in 2 processes under torchrun, in `tmp_path`."""
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(WORKER), *args],
        cwd=tmp_path,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
             "SEQLSTM_TEST_WEIGHTS": str(tmp_path), **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.e2e
@pytest.mark.slow
def test_two_processes_train_and_evaluate_as_one(tmp_path, mnist_dir, single):
    two = torchrun(tmp_path, "train", "--data-dir", str(mnist_dir), "--run-dir", "two", "--out", "two.ckpt", *ARGS)
    assert two.returncode == 0, two.stderr
    folder, one = single

    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    # Each rank trained on its half of every batch of 100...
    assert rank0["samples"] == rank1["samples"] == 10 * 50
    rank0, rank1 = rank0["weights"], rank1["weights"]
    reference = read_checkpoint(folder / "one.ckpt")
    double = read_checkpoint(tmp_path / "two.ckpt")
    for name, weights in reference["state_dict"].items():
        # ...yet both hold the same weights, those of one process trained on whole batches.
        assert torch.equal(rank0[name], rank1[name]), name
        assert torch.equal(double["state_dict"][name], rank0[name]), name
        assert (weights - rank0[name]).abs().max() <= 1e-5, name

    # Rank 0 alone wrote: the same files as the single process, each once, and one copy of every line.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rank0.pt", "rank1.pt", "two", "two.ckpt"]
    assert sorted(p.relative_to(tmp_path / "two") for p in (tmp_path / "two").rglob("*")) == sorted(
        p.relative_to(folder / "one") for p in (folder / "one").rglob("*"))
    assert two.stdout.count("Test Accuracy") == 1 and two.stdout.count("Validation Accuracy") == 2
    assert two.stdout.count("Epoch [1/2], Step [10/590]") == 1

    # Sharded evaluation counts every validation and test image once: the same accuracies exactly.
    evaluations = lambda run: [(r["step"], r["split"], r["accuracy"]) for r in read_metrics(run) if "split" in r]
    assert evaluations(tmp_path / "two") == evaluations(folder / "one")
    assert [e[:2] for e in evaluations(folder / "one")] == [(5, "validation"), (10, "validation"), (10, "test")]
    assert double["metrics"]["test_accuracy"] == reference["metrics"]["test_accuracy"]
    test_line = lambda out: [line for line in out.splitlines() if line.startswith("Test Accuracy")]
    assert test_line(two.stdout) == test_line(one.stdout)
    # The logged loss is the whole batch's, as in one process (up to the order of float sums).
    losses = lambda run: [r["loss"] for r in read_metrics(run) if "split" not in r]
    assert torch.allclose(torch.tensor(losses(tmp_path / "two")), torch.tensor(losses(folder / "one")), atol=1e-5)


@pytest.mark.e2e
@pytest.mark.slow
def test_a_failure_on_one_rank_ends_every_rank_and_the_run_resumes_exactly(tmp_path, mnist_dir, single):
    start = time.monotonic()
    failed = torchrun(tmp_path, "train", "--data-dir", str(mnist_dir), "--run-dir", "run", "--out", "two.ckpt", *ARGS,
                      env={"SEQLSTM_TEST_FAIL_RANK": "1", "SEQLSTM_TEST_FAIL_STEP": "8"})
    assert time.monotonic() - start < 60  # a hang would wait for the 300 s timeout
    assert failed.returncode != 0
    assert failed.stderr.count("RuntimeError: injected failure on rank 1") == 1
    assert not (tmp_path / "two.ckpt").exists()
    assert read_checkpoint(tmp_path / "run" / "last.ckpt")["metrics"]["steps"] == 5

    # Both ranks continue from rank 0's last.ckpt and end where the uninterrupted single process did.
    resumed = torchrun(tmp_path, "train", "--resume", "run/last.ckpt")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming at step 5 of 10" in resumed.stderr
    folder, _ = single
    reference = read_checkpoint(folder / "one.ckpt")["state_dict"]
    for name, weights in read_checkpoint(tmp_path / "two.ckpt")["state_dict"].items():
        assert (weights - reference[name]).abs().max() <= 1e-5, name


@pytest.mark.e2e
def test_a_batch_that_does_not_split_evenly_is_refused(tmp_path, mnist_dir):
    result = torchrun(tmp_path, "train", "--data-dir", str(mnist_dir), "--batch-size", "99", "--run-dir", "run", *ARGS)
    assert result.returncode != 0
    assert ("seqlstm: error: --batch-size 99 (last batch of an epoch: 95 of 59000 training samples) does not split "
            "evenly across 2 processes; use a batch size (and --val-size) whose batches divide by 2\n") in result.stderr
    assert result.stderr.count("seqlstm: error:") == 1
    assert not (tmp_path / "run").exists()
