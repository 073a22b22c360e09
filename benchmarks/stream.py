"""Data larger than memory: packing, and training from a pack against the same training in memory.

    python benchmarks/stream.py --gb 10 [--cold] [--repeats 3] [--folder DIR] [--length 512] [--features 8] [--steps 200]

1. Writes a synthetic labelled dataset of --gb gigabytes of float32 values (real steps; the files
   hold the padding too) as .npz files of at most 512 MB (sequences of --length/2 to --length steps of --features features; 10 classes, each a
   sine of its own frequency in noise), and a small test file. Not timed.
2. `seqlstm pack` packs it (a fresh process): MB/s of source files read, and its peak resident memory.
3. Trains --steps optimizer steps of seqlstm's default model for such data (the plan's patches,
   batch 64) from the pack, in a fresh process; then the same training from an .npz file of
   --memory-gb of the same kind of sequences, read whole into memory as any file is; with --cold,
   from the pack again after dropping the page cache. Each reports training samples per second
   after --warmup steps, the share of that time the training waited for a batch to be read (the
   most at stake, measured inside the run and so free of the machine's drift from run to run), and
   its peak resident memory (VmHWM); the modes alternate, --repeats times.
Prints the figures and the ratio of the medians streamed / in memory measured in this run; writes JSON.
Nothing here asserts a figure. The sources and the pack are deleted at the end unless --keep.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from provenance import provenance

FILE_BYTES = 512 << 20
CLASSES = 10


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def drop_page_cache() -> None:
    """Make the next reads come from the disk: write back, then drop the kernel's page cache."""
    subprocess.run(["sync"], check=True)
    Path("/proc/sys/vm/drop_caches").write_text("1\n")


def synthetic(n: int, length: int, features: int, rng: np.random.Generator) -> dict:
    """n sequences (X zero-padded to `length`, y, lengths) of a learnable 10-class problem."""
    y = rng.integers(0, CLASSES, n)
    lengths = rng.integers(length // 2, length + 1, n)
    t = np.arange(length, dtype=np.float32)[None, :, None]
    phase = rng.uniform(0, 2 * np.pi, (n, 1, features)).astype(np.float32)
    x = np.sin(t * (0.02 + 0.01 * y[:, None, None]).astype(np.float32) + phase)
    x += rng.standard_normal(x.shape, dtype=np.float32)
    x[np.arange(length)[None, :] >= lengths[:, None]] = 0
    return dict(X=x, y=y, lengths=lengths)


def mean_length(length: int) -> float:
    """The mean of `synthetic`'s lengths, drawn uniformly from length // 2 to length."""
    return (length // 2 + length) / 2


def write_sources(folder: Path, total_bytes: int, length: int, features: int) -> tuple[list[Path], Path, int]:
    """Training .npz files holding about `total_bytes` of values (real steps, not padding) in all, and
    a test file; (files, test file, sequences)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    per_file = max(1, FILE_BYTES // (length * features * 4))
    total = max(1, int(total_bytes / (mean_length(length) * features * 4)))
    files = []
    for start in range(0, total, per_file):
        files.append(folder / f"train-{len(files):03d}.npz")
        np.savez(files[-1], **synthetic(min(per_file, total - start), length, features, rng))
    test = folder.parent / "test.npz"
    np.savez(test, **synthetic(2000, length, features, rng))
    return files, test, total


def child_train(args: argparse.Namespace) -> None:
    """In a fresh process: train --steps steps on --dataset; print one JSON line of figures."""
    from seqlstm import Recorder, TrainConfig, train

    class Clock(Recorder):
        def __init__(self):
            self.times = {}

        def after_step(self, trainer, step):
            if step.step in (args.warmup, args.steps):
                self.times[step.step] = (time.perf_counter(), trainer.reader.waited if trainer.reader else 0.0)

    clock = Clock()
    config = TrainConfig(dataset=args.dataset, test_dataset=args.test_dataset, max_steps=args.steps, batch_size=64,
                         epochs=1, val_size=0, patience=0, out=str(Path(args.run) / "model.ckpt"), run_dir=args.run)
    start = time.perf_counter()
    result = train(config, log=lambda line: None, recorders=[clock])
    (t0, w0), (t1, w1) = clock.times[args.warmup], clock.times[args.steps]
    print(json.dumps({"samples_per_s": (args.steps - args.warmup) * 64 / (t1 - t0), "peak_rss_mb": peak_rss_mb(),
                      "waiting_for_data": (w1 - w0) / (t1 - t0),
                      "seconds": time.perf_counter() - start, "test_accuracy": result.evaluation.accuracy}))


def run_child(*argv: str) -> dict:
    out = subprocess.run([sys.executable, __file__, *argv], capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{' '.join(argv)} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def child_pack(args: argparse.Namespace) -> None:
    from seqlstm.data.packed import pack

    summary = pack([args.sources], args.dataset, test=[args.test_dataset])
    print(json.dumps({"mb_per_s": summary.bytes_read / 1e6 / summary.seconds, "seconds": summary.seconds,
                      "source_mb": summary.bytes_read / 1e6, "peak_rss_mb": peak_rss_mb(),
                      "values_mb": sum(s["rows"] for s in summary.manifest["shards"]) * summary.manifest["features"] * 4 / 1e6,
                      "sequences": summary.manifest["splits"]["train"]["sequences"]}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gb", type=float, default=1.0, help="gigabytes of values to pack and stream (default: %(default)s)")
    parser.add_argument("--folder", help="where to write the data (default: a temporary folder in the current one)")
    parser.add_argument("--length", type=int, default=512, help="longest sequence, in steps (default: %(default)s)")
    parser.add_argument("--features", type=int, default=8, help="features per step (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=200, help="optimizer steps trained each way (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=20, help="steps not counted in the rate (default: %(default)s)")
    parser.add_argument("--memory-gb", type=float, default=1.0,
                        help="gigabytes of values in the in-memory file (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each mode, alternated (default: %(default)s)")
    parser.add_argument("--cold", action="store_true",
                        help="also train from the pack after dropping the page cache (needs root): read from the disk")
    parser.add_argument("--keep", action="store_true", help="keep the data")
    parser.add_argument("--json", default=str(Path(__file__).parent / "results" / "stream-2core-cpu.json"))
    parser.add_argument("--child", choices=("train", "pack"), help=argparse.SUPPRESS)
    parser.add_argument("--dataset", help=argparse.SUPPRESS)
    parser.add_argument("--test-dataset", help=argparse.SUPPRESS)
    parser.add_argument("--sources", help=argparse.SUPPRESS)
    parser.add_argument("--run", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "train":
        return child_train(args)
    if args.child == "pack":
        return child_pack(args)

    folder = Path(args.folder) if args.folder else Path(tempfile.mkdtemp(prefix="stream-", dir="."))
    try:
        start = time.perf_counter()
        files, test, total = write_sources(folder / "sources", int(args.gb * 1e9), args.length, args.features)
        print(f"wrote {total:,} sequences in {len(files)} files in {time.perf_counter() - start:.0f} s", flush=True)
        memory_file = folder / "in-memory.npz"
        np.savez(memory_file, **synthetic(max(1, int(args.memory_gb * 1e9 / (mean_length(args.length) * args.features * 4))),
                                          args.length, args.features, np.random.default_rng(1)))
        packed = run_child("--child", "pack", "--sources", str(folder / "sources"), "--dataset", str(folder / "pack"),
                           "--test-dataset", str(test))
        print(f"pack: {packed['source_mb']:,.0f} MB of .npz read in {packed['seconds']:.0f} s, {packed['mb_per_s']:,.0f} MB/s; "
              f"{packed['values_mb']:,.0f} MB of values; peak resident {packed['peak_rss_mb']:,.0f} MB", flush=True)
        common = ("--steps", str(args.steps), "--warmup", str(args.warmup))
        modes = {f"a pack of {packed['values_mb'] / 1e3:,.1f} GB": ("--dataset", str(folder / "pack")),
                 f"memory ({args.memory_gb:g} GB file)": ("--dataset", str(memory_file), "--test-dataset", str(test))}
        if args.cold:
            modes["the pack, page cache dropped"] = modes[next(iter(modes))]
        runs = {name: [] for name in modes}
        for repeat in range(args.repeats):  # alternated, so that the machine's drift touches every mode alike
            for k, (name, dataset) in enumerate(modes.items()):
                if name == "the pack, page cache dropped":
                    drop_page_cache()
                runs[name].append(run_child("--child", "train", *dataset, "--run", str(folder / f"run-{repeat}-{k}"), *common))
                run = runs[name][-1]
                print(f"{name}: {run['samples_per_s']:,.0f} samples/s, {100 * run['waiting_for_data']:.2f} % of the time "
                      "waiting for data", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    median = {name: float(np.median([r["samples_per_s"] for r in rs])) for name, rs in runs.items()}
    streamed, memory = list(median)[:2]
    ratio = median[streamed] / median[memory]
    print(f"{'training from':<32}{'samples/s (median)':>20}{'waiting for data':>18}{'peak resident MB':>18}"
          f"{'test accuracy':>15}")
    for name, rs in runs.items():
        waiting = max(r["waiting_for_data"] for r in rs)
        print(f"{name:<32}{median[name]:>20,.0f}{100 * waiting:>17.2f}%{max(r['peak_rss_mb'] for r in rs):>18,.0f}"
              f"{rs[0]['test_accuracy']:>14.2f}%")
    print(f"streamed / in memory: {ratio:.3f} (medians of {args.repeats} runs each, alternated)")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"machine": provenance(), "args": {k: v for k, v in vars(args).items()
                                                                           if k in ("gb", "length", "features", "steps",
                                                                                    "warmup", "memory_gb")},
                                           "pack": packed, "runs": runs, "median_samples_per_s": median, "ratio": ratio},
                                          indent=1))


if __name__ == "__main__":
    main()
