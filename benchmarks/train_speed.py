"""Training and inference speed: the tutorial's pipeline against seqlstm's default recipe.

Both sides train the tutorial's model (2-layer LSTM, 128 units, batch 100, Adam peak lr 0.01) on
the same MNIST tensors, each in a fresh child process, alternating reference/seqlstm so that
machine noise falls on both. Evaluation every quarter epoch is excluded from the timings.

    python benchmarks/train_speed.py [--data-dir DIR] [--device cpu] [--repeats 1] [--levers]
    python benchmarks/train_speed.py --quick          # a smoke run of every code path

Prints a table and writes JSON (--json, default benchmarks/results/train_speed.json).
Nothing here asserts a time: the figures are for reading.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
from queue import Empty
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

import seqlstm
from provenance import provenance
from seqlstm.device import resolve_device, resolve_precision
from seqlstm.evaluation import logits_of
from seqlstm.evaluation import summarise as evaluation_of

TARGET_ACCURACY = 98.0


# --- (a) the tutorial's pipeline, re-implemented faithfully -------------------------------------


class PILDigits(Dataset):
    """torchvision's MNIST as the tutorial uses it: each sample becomes a PIL image, then a tensor."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images, self.labels = images.numpy(), labels.numpy()

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        picture = Image.fromarray(self.images[i], mode="L")
        return to_tensor(picture), int(self.labels[i])


def to_tensor(picture: Image.Image) -> torch.Tensor:
    """What torchvision.transforms.ToTensor does to an 8-bit grayscale image: (1, H, W) in [0, 1]."""
    array = np.array(picture, np.uint8, copy=True)
    return torch.from_numpy(array).view(picture.size[1], picture.size[0], 1).permute(2, 0, 1).float().div(255)


class TutorialRNN(nn.Module):
    """The tutorial's model class, with its explicit zero initial states."""

    def __init__(self, input_size=28, hidden_size=128, num_layers=2, num_classes=10):
        super().__init__()
        self.hidden_size, self.num_layers = hidden_size, num_layers
        self.lstm = nn.LSTM(input_size, hidden_size, num_layers, batch_first=True)
        self.fc = nn.Linear(hidden_size, num_classes)

    def forward(self, x):
        h0 = torch.zeros(self.num_layers, x.size(0), self.hidden_size, device=x.device)
        c0 = torch.zeros(self.num_layers, x.size(0), self.hidden_size, device=x.device)
        out, _ = self.lstm(x, (h0, c0))
        return self.fc(out[:, -1, :])


class Clock:
    """Training time from step to step, with evaluations cut out, and the accuracy curve."""

    def __init__(self, test, eval_every: int, precision):
        self.test, self.eval_every, self.precision = test, eval_every, precision
        self.train_s = 0.0
        self.last = None
        self.curve = []  # (step, train seconds, accuracy)

    def tick(self, step: int, model: nn.Module):
        if self.test[0].device.type == "cuda":
            # CUDA queues work: without this, training time would leak into the untimed evaluation.
            torch.cuda.synchronize()
        if self.last is not None:
            self.train_s += time.perf_counter() - self.last
        if step % self.eval_every == 0:
            # Any module mapping raw samples to logits: seqlstm's (uint8 images in) and the tutorial's (float ones).
            accuracy = evaluation_of(logits_of(model, self.test[0], self.precision), self.test[1], "test").accuracy
            # The first step is timed by the average of the others (it has no tick before it).
            self.curve.append((step, self.train_s * step / max(step - 1, 1), accuracy))
            model.train()
        self.last = time.perf_counter()


def run_reference(data, steps: int | None, device: torch.device, seed: int) -> dict:
    (train_images, train_labels), test = data
    torch.manual_seed(seed)
    loader = DataLoader(PILDigits(train_images, train_labels), batch_size=100, shuffle=True,
                        generator=torch.Generator().manual_seed(seed))
    model = TutorialRNN().to(device)
    criterion, optimizer = nn.CrossEntropyLoss(), torch.optim.Adam(model.parameters(), lr=0.01)
    epochs, per_epoch = 2, len(loader)
    total = min(steps or epochs * per_epoch, epochs * per_epoch)
    clock = Clock(test, eval_every=quarter(per_epoch, total), precision=None)
    step = 0
    for _ in range(epochs):
        for images, labels in loader:
            images, labels = images.reshape(-1, 28, 28).to(device), labels.to(device)
            loss = criterion(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            clock.tick(step, model)
            if step == total:
                break
        if step == total:
            break
    return summarise("reference", clock, step, "fp32", model, device, None)


def run_seqlstm(data_dir, steps: int | None, device: torch.device, seed: int, overrides: dict, label: str) -> dict:
    scratch = tempfile.TemporaryDirectory()
    config = seqlstm.TrainConfig(data_dir=data_dir, device=str(device), seed=seed, max_steps=steps,
                                 out=str(Path(scratch.name) / "model.ckpt"), run_dir=str(Path(scratch.name) / "run"),
                                 **overrides)
    precision = resolve_precision(config.precision, device)
    test = seqlstm.load_dataset("mnist", "test", data_dir)
    test = (test.images.to(device), test.labels.to(device))

    class Timed(seqlstm.Recorder):
        """Starts the clock with the first step and times the test curve (see Clock)."""

        clock = None

        def after_step(self, trainer, step):
            if self.clock is None:
                self.clock = Clock(test, eval_every=quarter(step.steps_per_epoch, step.total_steps), precision=precision)
            self.clock.tick(step.step, trainer.model)

    timed = Timed()
    result = seqlstm.train(config, log=lambda line: None, recorders=[timed])
    clock = timed.clock
    scratch.cleanup()
    name = "bf16" if precision is not None else "fp32"
    return summarise(label, clock, clock.curve[-1][0], name, result.model, device, precision)


def quarter(per_epoch: int, total: int) -> int:
    """Evaluate every quarter epoch, and at least at the end of a short run."""
    return max(1, min(per_epoch // 4, total))


def summarise(label, clock, steps, precision_name, model, device, precision) -> dict:
    train_s = clock.curve[-1][1]
    reached = next((t for _, t, a in clock.curve if a >= TARGET_ACCURACY), None)
    samples_per_s = steps * 100 / train_s
    return dict(
        side=label,
        precision=precision_name,
        steps=steps,
        train_s=train_s,
        samples_per_s=samples_per_s,
        gflops=samples_per_s * train_flops_per_sample() / 1e9,
        time_to_target_s=reached,
        final_accuracy=clock.curve[-1][2],
        curve=clock.curve,
        inference=inference_speed(model, device, precision, quick=steps < 100),
    )


def train_flops_per_sample(input_size=28, hidden=128, layers=2, seq=28, classes=10) -> float:
    """Forward FLOPs of the LSTM and head for one sequence, times 3 for forward + backward."""
    recurrent = sum(2 * 4 * hidden * ((input_size if k == 0 else hidden) + hidden) for k in range(layers))
    return 3 * (recurrent * seq + 2 * hidden * classes)


def inference_speed(model: nn.Module, device: torch.device, precision, quick: bool) -> dict:
    """Batch-1 latency (median, ms) and batch-1000 throughput (sequences/s) in inference mode."""
    model.eval()

    def forward(batch):
        x = torch.rand(batch, 28, 28, device=device)
        with torch.inference_mode(), torch.autocast(device.type, dtype=precision, enabled=precision is not None):
            model(x)
        if device.type == "cuda":
            torch.cuda.synchronize()

    def timed(batch, repeats):
        forward(batch)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            forward(batch)
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    return dict(batch1_latency_ms=timed(1, 5 if quick else 200) * 1e3,
                batch1000_per_s=1000 / timed(1000, 1 if quick else 10))


def gemm_peak(dtype: torch.dtype, device: torch.device, size: int = 2048, repeats: int = 10) -> float:
    """Best GFLOP/s of a square matrix product on `device` in `dtype`."""
    a = torch.rand(size, size, device=device).to(dtype)
    b = torch.rand(size, size, device=device).to(dtype)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def child(task: tuple, queue) -> None:
    kind, data_dir, steps, device_name, seed, overrides, label = task
    device = resolve_device(device_name)
    # Threads are the process's, not the recipe's: torch uses one per core unless told otherwise.
    overrides = dict(overrides)
    if "threads" in overrides:
        torch.set_num_threads(overrides.pop("threads"))
    if kind == "reference":
        train = seqlstm.load_dataset("mnist", "train", data_dir)
        test = seqlstm.load_dataset("mnist", "test", data_dir)
        # The tutorial's model reads images scaled to [0, 1], as its loader's to_tensor makes them.
        data = ((train.images, train.labels), (test.images.to(device).float() / 255, test.labels.to(device)))
        queue.put(run_reference(data, steps, device, seed))
    else:
        queue.put(run_seqlstm(data_dir, steps, device, seed, overrides, label))


def in_child(task: tuple) -> dict:
    """Run one training in a fresh process, so neither side inherits the other's warm state."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=child, args=(task, queue))
    process.start()
    while True:
        try:
            result = queue.get(timeout=5)
            break
        except Empty:
            # A child that died (an exception, the OOM killer) never answers: say so instead of waiting forever.
            if not process.is_alive():
                raise RuntimeError(f"the benchmark process for {task[0]!r} exited with code {process.exitcode} without a result")
    process.join()
    return result


LEVERS = {
    "fp32 instead of bf16": dict(precision="fp32"),
    "constant lr instead of one-cycle": dict(schedule="constant"),
    "no gradient clipping": dict(clip_grad=0.0),
    "default init instead of LSTM init": dict(init="default"),
    "no 1-px shift augmentation": dict(augment_shift=0),
    "1 thread instead of all cores": dict(threads=1),
}


def table(rows: list[dict]) -> str:
    head = f"{'side':<44} {'prec':>5} {'samples/s':>10} {'GFLOP/s':>8} {'%peak':>6} {'to 98%':>8} {'final %':>8} {'b1 ms':>7} {'b1000/s':>9}"
    lines = [head, "-" * len(head)]
    for r in rows:
        to_target = f"{r['time_to_target_s']:.1f}s" if r["time_to_target_s"] is not None else "never"
        lines.append(
            f"{r['side']:<44} {r['precision']:>5} {r['samples_per_s']:>10.0f} {r['gflops']:>8.1f} "
            f"{100 * r['peak_fraction']:>5.1f}% {to_target:>8} {r['final_accuracy']:>8.2f} "
            f"{r['inference']['batch1_latency_ms']:>7.2f} {r['inference']['batch1000_per_s']:>9.0f}"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", help="folder with the MNIST files (default: seqlstm's usual search)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=1, help="alternating reference/seqlstm pairs")
    parser.add_argument("--levers", action="store_true", help="also train with each lever of the recipe turned off")
    parser.add_argument("--quick", action="store_true", help="a few steps per side: a smoke run, not a measurement")
    parser.add_argument("--json", default=str(Path(__file__).parent / "results" / "train_speed.json"))
    args = parser.parse_args(argv)

    device = resolve_device(args.device)
    steps = 8 if args.quick else None
    peaks = {"fp32": gemm_peak(torch.float32, device, 256 if args.quick else 2048),
             "bf16": gemm_peak(torch.bfloat16, device, 256 if args.quick else 2048)}
    rows = []
    for _ in range(args.repeats):
        rows.append(in_child(("reference", args.data_dir, steps, str(device), 0, {}, "reference")))
        rows.append(in_child(("seqlstm", args.data_dir, steps, str(device), 0, {}, "seqlstm")))
    if args.levers:
        for label, overrides in LEVERS.items():
            rows.append(in_child(("seqlstm", args.data_dir, steps, str(device), 0, overrides, f"seqlstm, {label}")))
    for r in rows:
        r["peak_fraction"] = r["gflops"] / peaks[r["precision"]]

    def median(side, key):
        values = [r[key] for r in rows if r["side"] == side and r[key] is not None]
        return statistics.median(values) if values else None

    ref_time = median("reference", "train_s")
    ours_to_target = median("seqlstm", "time_to_target_s")
    ratios = dict(
        throughput=median("seqlstm", "samples_per_s") / median("reference", "samples_per_s"),
        time_to_98_vs_reference_full_training=(ref_time / ours_to_target) if ours_to_target else None,
        batch1_latency=median_inference(rows, "reference", "batch1_latency_ms") / median_inference(rows, "seqlstm", "batch1_latency_ms"),
        batch1000_throughput=median_inference(rows, "seqlstm", "batch1000_per_s") / median_inference(rows, "reference", "batch1000_per_s"),
    )
    report = dict(
        machine=provenance(threads=torch.get_num_threads(), device=str(device)),
        gemm_peak_gflops=peaks,
        train_flops_per_sample=train_flops_per_sample(),
        quick=args.quick,
        runs=rows,
        ratios_seqlstm_over_reference=ratios,
    )
    print(f"device {device}, {torch.get_num_threads()} threads; GEMM peak fp32 {peaks['fp32']:.0f} GFLOP/s, "
          f"bf16 {peaks['bf16']:.0f} GFLOP/s; {train_flops_per_sample() / 1e6:.1f} MFLOP per training sample")
    print(table(rows))
    print("ratios seqlstm/reference: " + ", ".join(
        f"{k} {v:.2f}x" if v is not None else f"{k} n/a" for k, v in ratios.items()))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2))
    print(f"wrote {args.json}")
    return 0


def median_inference(rows, side, key):
    return statistics.median(r["inference"][key] for r in rows if r["side"] == side)


if __name__ == "__main__":
    sys.exit(main())
