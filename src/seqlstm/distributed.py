"""Data-parallel training across the processes torchrun starts: joining the process group, each
rank's share of a batch or a split, and the sums that put the shares back together."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from .errors import ConfigError
from .evaluation import Evaluation


def launched() -> bool:
    """True in a process started by torchrun (it sets RANK and WORLD_SIZE)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def start(device: torch.device) -> torch.device:
    """Join torchrun's process group (NCCL on CUDA, gloo otherwise); return this rank's device.

    On CUDA each process takes the GPU of its local rank, so N processes on a machine use N GPUs.
    """
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def stop(together: bool = False) -> None:
    """Leave the process group, if this process joined one; `together` (a run that ended well on
    this rank): first wait until every rank is done.

    A rank that tears gloo down while another still works (rank 0 writes the checkpoint and the
    plot after the last collective) was measured to abort at exit ("terminate called without an
    active exception") in 2 of 5 runs; after a barrier, in none of 10. After a failure the others may
    never arrive, so there is no barrier then.
    """
    if dist.is_initialized():
        if together:
            dist.barrier()
        dist.destroy_process_group()


def rank() -> int:
    """This process's rank: from the process group, or before joining it from torchrun's RANK (0 without)."""
    return dist.get_rank() if dist.is_initialized() else int(os.environ.get("RANK", 0))


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    """True on the process that prints and writes files (rank 0, or the only process)."""
    return rank() == 0


def check_batches(samples: int, batch_size: int) -> None:
    """ConfigError unless every batch of `samples` splits evenly across the ranks.

    Equal shards make the mean of the ranks' mean gradients (what DDP computes) the mean gradient
    of the whole batch, so N processes take the same steps as one.
    """
    world = world_size()
    last = samples % batch_size or batch_size
    if batch_size % world or last % world:
        raise ConfigError(
            f"--batch-size {batch_size} (last batch of an epoch: {last} of {samples} training samples) does not "
            f"split evenly across {world} processes; use a batch size (and --val-size) whose batches divide by {world}"
        )


def shard(items: torch.Tensor) -> torch.Tensor:
    """This rank's contiguous part of `items` (along dim 0): rank r of N gets the r-th of N near-equal slices."""
    return items.tensor_split(world_size())[rank()]


def mean(value: torch.Tensor) -> torch.Tensor:
    """The mean of a scalar `value` over all ranks (every rank calls this and gets the result)."""
    if not dist.is_initialized():
        return value
    total = value.detach().float().clone()
    dist.all_reduce(total)
    return total / world_size()


def combine(part: Evaluation) -> Evaluation:
    """The evaluation of a whole split from each rank's evaluation of its `shard` (every rank calls this).

    Counts and the confusion matrix are summed exactly; the loss is the sum of the ranks' loss sums
    over the split's size.
    """
    if not dist.is_initialized():
        return part
    confusion = part.confusion.to(torch.float64)
    # One all_reduce: the confusion matrix's counts (exact in float64) followed by the loss sum.
    sums = torch.cat([confusion.flatten(), torch.tensor([part.loss * part.total], dtype=torch.float64)])
    if dist.get_backend() == "nccl":
        sums = sums.cuda()
    dist.all_reduce(sums)
    sums = sums.cpu()
    count = confusion.shape[0]
    confusion = sums[:-1].round().to(torch.int64).reshape(count, count)
    total = int(confusion.sum())
    return Evaluation(int(confusion.diagonal().sum()), total, part.split, float(sums[-1]) / total, confusion, part.classes,
                      unit=part.unit)
