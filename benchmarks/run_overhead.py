"""What recording a run costs next to training itself, for the default model and fast recipe.

Prints the median time of one training step (batch 100), of one resumable last.ckpt save (model,
Adam state, schedule, RNG states; written to a temporary file, fsynced, renamed) and its size, of
reading it back to resume, of the per-step NaN watch, and of drawing training.png at the end of a
run; then the overhead each adds to a 2-epoch run. Figures only; nothing passes or fails.

    python benchmarks/run_overhead.py [--repeats 20] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from seqlstm import TrainConfig
from seqlstm.checkpoint import read_training_state, save_checkpoint
from seqlstm.device import resolve_precision
from seqlstm.model import LSTMClassifier, lstm_init
from seqlstm.training.state import LoopState, capture, restore
from seqlstm.runs import METRICS, plot_run
from seqlstm.training.loop import make_schedule


def median_time(run, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, help="CPU threads (default: PyTorch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    config = TrainConfig()
    steps_per_epoch, steps = 600, 1200
    precision = resolve_precision(config.precision, torch.device("cpu"))
    torch.manual_seed(0)
    model = LSTMClassifier()
    lstm_init(model.lstm)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    schedule = make_schedule(optimizer, config, steps)
    x, y = torch.rand(100, 28, 28), torch.randint(0, 10, (100,))
    loss = None

    def step():
        nonlocal loss
        with torch.autocast("cpu", dtype=precision, enabled=precision is not None):
            loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), config.clip_grad, foreach=True)
        optimizer.step()
        schedule.step()

    step()  # Adam's state exists from the first step on
    step_s = median_time(step, args.repeats)

    shifts = torch.Generator().manual_seed(1)
    loop = LoopState(step=2, epoch=1, batch=2, epoch_order=torch.Generator().manual_seed(0).get_state())
    scratch = tempfile.TemporaryDirectory()
    last = Path(scratch.name) / "last.ckpt"
    save_s = median_time(lambda: save_checkpoint(last, model, config, training=capture(loop, optimizer, schedule, shifts)),
                         args.repeats)
    size_mb = last.stat().st_size / 1e6

    def load():
        saved = read_training_state(last)
        model.load_state_dict(saved["state_dict"])
        restore(saved["training"], optimizer, schedule, torch.Generator(), shifts)

    load_s = median_time(load, args.repeats)

    first_bad = torch.zeros((), dtype=torch.long)

    def watch():
        nonlocal first_bad
        first_bad = torch.where((first_bad == 0) & ~torch.isfinite(loss.detach()), 7, first_bad)
        int(first_bad)

    watch_s = median_time(watch, 1000)

    # A 2-epoch run's metrics: a loss every 100 steps, the test accuracy at the end.
    run_dir = Path(scratch.name) / "run"
    run_dir.mkdir()
    records = [dict(step=s, epoch=1 + (s - 1) // steps_per_epoch, loss=1 / s, lr=0.01, samples_per_s=5000.0)
               for s in range(100, steps + 1, 100)]
    records.append(dict(step=steps, epoch=2, split="test", accuracy=98.7, loss=0.04))
    (run_dir / METRICS).write_text("".join(json.dumps(r) + "\n" for r in records))
    start = time.perf_counter()
    plot_run(run_dir)  # the first figure includes importing matplotlib, as at the end of a training run
    plot_s = time.perf_counter() - start
    scratch.cleanup()

    train_s = steps * step_s
    print(f"training step (batch 100, {'bf16' if precision else 'fp32'}): {1e3 * step_s:.1f} ms; "
          f"{steps} steps = {train_s:.1f} s")
    print(f"last.ckpt save: {1e3 * save_s:.1f} ms, {size_mb:.2f} MB; read back and restore: {1e3 * load_s:.1f} ms")
    for every, label in ((steps_per_epoch, "each epoch (default)"), (50, "every 50 steps"), (1, "every step")):
        print(f"  checkpoint {label}: {100 * (steps // every) * save_s / train_s:.2f} % of the training time")
    print(f"NaN watch (read every step on the CPU): {1e6 * watch_s:.1f} us per step, "
          f"{100 * watch_s / step_s:.3f} % of a step")
    print(f"training.png at the end of the run (with the matplotlib import): {plot_s:.2f} s, "
          f"{100 * plot_s / train_s:.1f} % of {steps} steps")


if __name__ == "__main__":
    main()
