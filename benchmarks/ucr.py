"""UCR problems: `seqlstm train` with its defaults against aeon's 1-NN DTW and MiniRocket.

    python benchmarks/ucr.py [DIR] [NAMES...] [--seqlstm-args "..."] [--no-peers] [--json PATH]

DIR holds NAME_TRAIN.ts / NAME_TEST.ts (or .csv) pairs; it defaults to $SEQLSTM_DATA/ucr, else
../shared/data/ucr from the repository's root. A first argument that is not a folder is a NAME.
NAMES restrict the run to those problems.

Each problem runs `seqlstm train --dataset NAME_TRAIN.x --test-dataset NAME_TEST.x --quiet` (plus
--out and --run-dir in a temporary folder, plus --seqlstm-args, split like a shell would) as a child
process, timed as a whole, and reads the accuracy from its last `Test Accuracy ...: 81.14 %` line.
The peers (1-NN DTW, MiniRocket with random_state=0, both n_jobs=1) run in this process, timed over
fit and predict; --no-peers skips them and aeon is not imported.

Prints a table and writes JSON (--json, default benchmarks/results/ucr.json). A failing command is
recorded with its stderr's tail and the run goes on. Nothing here asserts an accuracy or a time.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from provenance import provenance
from seqlstm import read_sequences

REPO = Path(__file__).resolve().parents[1]
ACCURACY = re.compile(r"^Test Accuracy .*: ([0-9.]+) %$")
PEERS = ("dtw", "minirocket")
COLUMNS = ("problem", "classes", "train/test", "length", "channels", "seqlstm %", "seqlstm s",
           "1-NN DTW %", "DTW s", "MiniRocket %", "MiniRocket s", "seqlstm/MiniRocket s")


def default_dir() -> Path:
    """$SEQLSTM_DATA/ucr when SEQLSTM_DATA is set, else ../shared/data/ucr from the repository's root."""
    if os.environ.get("SEQLSTM_DATA"):
        return Path(os.environ["SEQLSTM_DATA"]) / "ucr"
    return Path(__file__).resolve().parents[2] / "shared/data/ucr"


def find_problems(folder: Path, names: list[str]) -> dict[str, tuple[Path, Path]]:
    """NAME -> (train file, test file) for each NAME_TRAIN.ts/.csv with its NAME_TEST twin, sorted."""
    problems = {}
    for train in sorted([*folder.glob("*_TRAIN.ts"), *folder.glob("*_TRAIN.csv")]):
        name = train.name.rsplit("_TRAIN", 1)[0]
        test = train.with_name(f"{name}_TEST{train.suffix}")
        if test.is_file() and (not names or name in names):
            problems.setdefault(name, (train, test))
    missing = [n for n in names if n not in problems]
    if missing:
        sys.exit(f"no NAME_TRAIN/NAME_TEST pair in {folder} for: {', '.join(missing)}")
    return problems


def load(path: Path) -> tuple[np.ndarray | list[np.ndarray], np.ndarray]:
    """(X, y) as aeon takes them, read by seqlstm's own reader so that every side sees the same
    data: (n, channels, length) when every series is as long, else a list of (channels, length_i)."""
    raw = read_sequences(path)
    series = [raw.values[i, : raw.lengths[i]].T.astype(np.float64) for i in range(len(raw.lengths))]
    return (np.stack(series) if len({x.shape for x in series}) == 1 else series), np.asarray(raw.labels).astype(str)


def describe(X_train, y_train, X_test) -> dict:
    """Classes, sizes, length ("min-max" when unequal) and channels of one problem."""
    lengths = sorted({x.shape[-1] for x in [*X_train, *X_test]})
    return {"classes": len(set(y_train)), "train": len(X_train), "test": len(X_test),
            "length": str(lengths[0]) if len(lengths) == 1 else f"{lengths[0]}-{lengths[-1]}",
            "channels": X_train[0].shape[0]}


def run_seqlstm(train: Path, test: Path, extra: list[str]) -> dict:
    """Train and test with `seqlstm train` in a child process: accuracy %, wall seconds, error."""
    with tempfile.TemporaryDirectory(prefix="seqlstm-ucr-") as tmp:
        command = [sys.executable, "-m", "seqlstm", "train", "--dataset", str(train), "--test-dataset",
                   str(test), "--out", f"{tmp}/model.ckpt", "--run-dir", f"{tmp}/run", "--quiet", *extra]
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        seconds = time.perf_counter() - start
    result = {"acc": None, "seconds": round(seconds, 2), "error": None, "command": shlex.join(command[1:])}
    found = [m for m in map(ACCURACY.match, done.stdout.splitlines()) if m]
    if done.returncode != 0:
        result["error"] = f"exit {done.returncode}: " + (done.stderr.strip()[-1500:] or "(no stderr)")
    elif not found:
        result["error"] = "no `Test Accuracy ...: N %` line in its output: " + done.stdout.strip()[-500:]
    else:
        result["acc"] = float(found[-1].group(1))
    return result


def run_peer(make, X_train, y_train, X_test, y_test) -> dict:
    """Fit and predict one aeon classifier: accuracy %, fit + predict seconds, error."""
    model = make()
    if not isinstance(X_train, np.ndarray) and not model.get_tag("capability:unequal_length"):
        return {"acc": None, "seconds": None, "error": None, "note": "n/a (unequal length)"}
    start = time.perf_counter()
    try:
        predicted = model.fit(X_train, y_train).predict(X_test)
    except Exception as e:  # noqa: BLE001 - one peer's failure is a result, not the end of the run
        return {"acc": None, "seconds": None, "error": f"{type(e).__name__}: {e}"}
    seconds = time.perf_counter() - start
    return {"acc": round(100 * float(np.mean(predicted == y_test)), 2), "seconds": round(seconds, 2), "error": None}


def import_aeon():
    """The peers' constructors; exits 1 when aeon is missing."""
    try:
        from aeon.classification.convolution_based import MiniRocketClassifier
        from aeon.classification.distance_based import KNeighborsTimeSeriesClassifier
    except ImportError:
        print("aeon is not installed; pip install -e '.[bench]'", file=sys.stderr)
        sys.exit(1)
    return {
        "dtw": lambda: KNeighborsTimeSeriesClassifier(n_neighbors=1, distance="dtw", n_jobs=1),
        "minirocket": lambda: MiniRocketClassifier(random_state=0, n_jobs=1),
    }


def cells(row: dict) -> list[str]:
    """One table row's text; a missing figure shows as n/a, a failed run as 'failed'."""
    def fig(part: str, key: str) -> str:
        result = row.get(part) or {}
        if result.get(key) is not None:
            return f"{result[key]:.2f}"
        return "failed" if result.get("error") else "n/a"
    ratio = row.get("seqlstm_over_minirocket_time")
    return [row["problem"], str(row.get("classes", "")), f"{row['train']}/{row['test']}" if "train" in row else "",
            str(row.get("length", "")), str(row.get("channels", "")), fig("seqlstm", "acc"),
            fig("seqlstm", "seconds"), fig("dtw", "acc"), fig("dtw", "seconds"), fig("minirocket", "acc"),
            fig("minirocket", "seconds"), "n/a" if ratio is None else f"{ratio:.2f}"]


def summarize(rows: list[dict], peers: bool) -> dict:
    """Means over the problems where every figure is there, and seqlstm's gap to MiniRocket in points."""
    parts = ("seqlstm", *PEERS) if peers else ("seqlstm",)
    complete = [r for r in rows if all(r[p]["acc"] is not None for p in parts)]
    mean = {"problem": "mean", **{p: {k: round(float(np.mean([r[p][k] for r in complete])), 2) if complete else None
                                      for k in ("acc", "seconds")} for p in parts}}
    summary = {"problems_in_mean": [r["problem"] for r in complete], "mean": mean, "gap_to_minirocket_points": None}
    if peers and complete:
        mean["seqlstm_over_minirocket_time"] = round(mean["seqlstm"]["seconds"] / mean["minirocket"]["seconds"], 2)
        summary["gap_to_minirocket_points"] = round(mean["seqlstm"]["acc"] - mean["minirocket"]["acc"], 2)
    return summary


def report(rows: list[dict], summary: dict, peers: bool) -> None:
    """Print the table, each problem's seqlstm-vs-DTW verdict, the gap to MiniRocket and any errors."""
    table = [list(COLUMNS), *map(cells, rows), cells(summary["mean"])]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    for n, line in enumerate(table):
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths))))
        if n in (0, len(table) - 2):
            print("  ".join("-" * w for w in widths))
    print(f"mean over {len(summary['problems_in_mean'])} of {len(rows)} problems (those with every figure)")
    for row in rows:
        s, d = row["seqlstm"]["acc"], (row.get("dtw") or {}).get("acc")
        if peers and s is not None and d is not None:
            print(f"{row['problem']}: seqlstm >= 1-NN DTW: {'yes' if s >= d else 'no'} ({s:.2f} vs {d:.2f} %)")
    if summary["gap_to_minirocket_points"] is not None:
        print(f"mean gap to MiniRocket: {summary['gap_to_minirocket_points']:+.2f} points")
    for row in rows:
        for part in ("seqlstm", *PEERS):
            error = (row.get(part) or {}).get("error")
            if error:
                tail = "\n    ".join(error.splitlines()[-8:])
                print(f"{row['problem']} {part} failed:\n    {tail}", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("where", nargs="*", metavar="[DIR] [NAMES...]",
                        help=f"folder of NAME_TRAIN/NAME_TEST pairs (default: {default_dir()}), then problem names")
    parser.add_argument("--seqlstm-args", default="", metavar='"ARGS"',
                        help='more `seqlstm train` flags, e.g. --seqlstm-args="--epochs 5 --cell gru"')
    parser.add_argument("--no-peers", action="store_true", help="skip 1-NN DTW and MiniRocket (aeon is not imported)")
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks/results/ucr.json", metavar="PATH",
                        help="where to write the results (default: %(default)s)")
    args = parser.parse_args(argv)
    names = list(args.where)
    folder = Path(names.pop(0)) if names and Path(names[0]).is_dir() else default_dir()
    problems = find_problems(folder, names)
    if not problems:
        sys.exit(f"no NAME_TRAIN/NAME_TEST .ts or .csv pairs in {folder}")
    peers = not args.no_peers
    makers = import_aeon() if peers else {}
    extra = shlex.split(args.seqlstm_args)

    rows = []
    for name, (train, test) in problems.items():
        print(f"{name}: seqlstm train ...", file=sys.stderr, flush=True)
        row = {"problem": name, "train_file": str(train), "test_file": str(test)}
        (X_train, y_train), (X_test, y_test) = load(train), load(test)
        row.update(describe(X_train, y_train, X_test))
        row["seqlstm"] = run_seqlstm(train, test, extra)
        for peer, make in makers.items():
            print(f"{name}: {peer} ...", file=sys.stderr, flush=True)
            row[peer] = run_peer(make, X_train, y_train, X_test, y_test)
        if peers and row["seqlstm"]["acc"] is not None and row["minirocket"]["acc"] is not None:
            row["seqlstm_over_minirocket_time"] = round(row["seqlstm"]["seconds"] / row["minirocket"]["seconds"], 2)
        rows.append(row)

    summary = summarize(rows, peers)
    report(rows, summary, peers)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    results = {"machine": provenance(), "data_dir": str(folder), "seqlstm_args": extra, "peers": peers,
               "problems": rows, **summary}
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
