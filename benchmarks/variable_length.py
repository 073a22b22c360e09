"""Variable-length sequences: batches padded to the file's longest against batches of similar lengths.

    python benchmarks/variable_length.py [--sequences 1200] [--longest 1200] [--epochs 10] [--seed 0] [--json PATH]

A synthetic file of labelled sequences whose lengths are mostly short (log-normal, median 60 steps)
with a few outliers up to --longest steps; the class is the sign pattern of the first step, so a
model must carry it through the whole sequence. The same training (seqlstm's defaults for a file,
with a fixed budget: --epochs epochs of batch 32, patches of 4 steps, --seed) runs three ways, each in a
fresh process: every batch padded to the file's longest sequence (seqlstm before this change),
random batches padded to their own longest (the default), and batches bucketed by length (--bucket).
Prints the training time, its ratio to the padded reference measured in the same run, and the test
accuracy; writes JSON. Nothing here asserts a figure.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import tempfile
import time
from pathlib import Path

import numpy as np

from provenance import provenance

# How each mode is set: the batches module's reference switch, and the config's --bucket.
MODES = {"padded to the file's longest": (dict(TRIM=False), False), "random batches, own longest (default)": ({}, False),
         "bucketed by length (--bucket)": ({}, True)}


def make_file(folder: Path, n: int, longest: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(np.log(60), 0.5, n).astype(int), 4, longest)
    lengths[rng.choice(n, max(1, n // 100), replace=False)] = rng.integers(longest // 2, longest + 1, max(1, n // 100))
    x = np.zeros((n, int(lengths.max()), 2), np.float32)
    for i, length in enumerate(lengths):
        x[i, :length] = rng.normal(size=(length, 2))
    y = (x[:, 0, 0] > 0).astype(int) + 2 * (x[:, 0, 1] > 0)
    path = folder / f"seq-{seed}.npz"
    np.savez(path, X=x, y=y, lengths=lengths)
    return path


def cut_file(folder: Path, source: str, seed: int) -> Path:
    """A real problem made variable-length: each series of the .ts/.csv/.npz file `source` cut to a
    random prefix of 40-100 % of its length (seeded)."""
    import seqlstm

    raw = seqlstm.read_sequences(source)
    rng = np.random.default_rng(seed)
    lengths = np.maximum(1, (raw.lengths * rng.uniform(0.4, 1.0, len(raw.lengths))).astype(int))
    x = raw.values.copy()
    for i, length in enumerate(lengths):
        x[i, length:] = 0.0
    path = folder / f"{Path(source).stem}-cut.npz"
    np.savez(path, X=x, y=raw.labels, lengths=lengths)
    return path


def child(mode: str, train_file: str, test_file: str, epochs: int, seed: int, conv: int | None, queue) -> None:
    import seqlstm
    from seqlstm.data import batches

    switches, bucket = MODES[mode]
    for name, value in switches.items():
        setattr(batches, name, value)
    config = seqlstm.TrainConfig(dataset=train_file, test_dataset=test_file, epochs=epochs, batch_size=32, patch=4, seed=seed, conv=conv, bucket=bucket,
                                 out=str(Path(train_file).with_name(f"{list(MODES).index(mode)}.ckpt")),
                                 run_dir=str(Path(train_file).with_name(f"run-{list(MODES).index(mode)}")))
    start = time.perf_counter()
    result = seqlstm.train(config, log=lambda line: None)
    queue.put({"mode": mode, "train_s": time.perf_counter() - start, "accuracy": result.evaluation.accuracy})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sequences", type=int, default=1200)
    parser.add_argument("--longest", type=int, default=1200)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0, help="the training's seed (the data stay the same)")
    parser.add_argument("--conv", type=int, default=None, help="the convolutional branch's filters (default: seqlstm's)")
    parser.add_argument("--from", dest="real", nargs=2, metavar=("TRAIN", "TEST"),
                        help="instead of synthetic data, a real problem's files with every series cut to a random prefix")
    parser.add_argument("--json", default=str(Path(__file__).parent / "results" / "variable_length.json"))
    args = parser.parse_args()
    context = multiprocessing.get_context("spawn")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        if args.real:
            train_file, test_file = (cut_file(Path(folder), name, k) for k, name in enumerate(args.real))
        else:
            train_file = make_file(Path(folder), args.sequences, args.longest, 0)
            test_file = make_file(Path(folder), args.sequences // 3, args.longest, 1)
        for mode in MODES:
            queue = context.Queue()
            process = context.Process(target=child, args=(mode, str(train_file), str(test_file), args.epochs, args.seed, args.conv, queue))
            process.start()
            rows.append(queue.get())
            process.join()
    reference = rows[0]["train_s"]
    data = f"{args.real[0]} cut to random prefixes" if args.real else (
        f"{args.sequences} training sequences, lengths median 60, up to {args.longest}")
    print(f"{data}; {args.epochs} epochs of batch 32, seed {args.seed}")
    print(f"{'batches':<32} {'time s':>8} {'vs padded':>10} {'accuracy %':>11}")
    for row in rows:
        row["vs_padded"] = row["train_s"] / reference
        print(f"{row['mode']:<32} {row['train_s']:8.1f} {row['vs_padded']:9.2f}x {row['accuracy']:11.2f}")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"machine": provenance(), "args": vars(args),
                                           "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
