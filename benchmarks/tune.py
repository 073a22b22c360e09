"""`seqlstm tune` on the UCR problems against `seqlstm train` with no flags, and one tune worker against two.

    python benchmarks/tune.py [DIR] [NAMES...] [--minutes 30] [--workers 2] [--parallel-trials 8] [--json PATH]

For each problem (NAME_TRAIN.ts / NAME_TEST.ts in DIR, default $SEQLSTM_DATA/ucr): `seqlstm tune`
with the default search space for --minutes (its --timeout: the search ends then), as --workers
processes sharing one study, each on its share of the cores (the route docs/tuning.md gives for a
machine of several cores), then its final model's test accuracy; beside it the test
accuracy of `seqlstm train` with no flags (the default this search has to beat) and MiniRocket's,
from benchmarks/results/ucr-2core-cpu.json (`python benchmarks/ucr.py`); a problem it does not
hold is trained here with no flags.

With --parallel-trials N (on the first problem, or --parallel-on NAME): the wall time of one worker finishing a study of
N trials, against two workers sharing a fresh study of N trials, each worker on one thread
(OMP_NUM_THREADS=1; the one-worker run also on one thread, so that the ratio is the workers'),
with a fixed space and budget so that the trials cost alike.

Prints a table and writes JSON. Nothing here asserts a figure.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from provenance import provenance

RESULTS = Path(__file__).parent / "results"
TEST_LINE = re.compile(r"Test Accuracy of the model on the \d+ test \w+: ([\d.]+) %")
# The parallel comparison's trials: a fixed small search, so that every trial costs about the same.
PARALLEL_SPACE = "lr: {low: 0.001, high: 0.03, log: true}\ndropout: {low: 0.0, high: 0.3}\n"
PARALLEL_ARGS = ("--max-steps", "300", "--hidden-size", "64", "--cell", "lstm", "--no-bidirectional", "--pool", "mean",
                 "--batch-size", "16", "--num-layers", "1")


def seqlstm(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "seqlstm", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, **(env or {})})


def finish(process: subprocess.Popen, what: str) -> str:
    out, err = process.communicate()
    if process.returncode:
        raise SystemExit(f"{what} failed:\n{err[-3000:]}")
    return out


def default_accuracy(folder: Path, name: str, work: Path) -> float:
    """`seqlstm train` with no flags on the problem: from the recorded UCR results, else trained now."""
    recorded = RESULTS / "ucr-2core-cpu.json"
    if recorded.is_file():
        for row in json.loads(recorded.read_text()).get("problems", []):
            if row.get("problem") == name and (row.get("seqlstm") or {}).get("acc") is not None:
                return row["seqlstm"]["acc"]
    out = finish(seqlstm("train", "--dataset", str(folder / f"{name}_TRAIN.ts"), "--test-dataset",
                         str(folder / f"{name}_TEST.ts"), "--quiet", "--out", str(work / f"{name}.ckpt"), "--run-dir",
                         str(work / f"{name}-run")), f"seqlstm train on {name}")
    return float(TEST_LINE.findall(out)[-1])


def tuned(folder: Path, name: str, work: Path, minutes: float, workers: int) -> dict:
    tune_dir = work / f"tune-{name}"
    args = ("tune", "--dataset", str(folder / f"{name}_TRAIN.ts"), "--test-dataset", str(folder / f"{name}_TEST.ts"),
            "--trials", "100000", "--timeout", str(minutes * 60), "--tune-dir", str(tune_dir))
    threads = {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // workers))}
    start = time.perf_counter()
    processes = [seqlstm(*args, env=threads)]
    for _ in range(workers - 1):
        while not (tune_dir / "study.db").exists():  # the others join the study the first created
            time.sleep(0.2)
        time.sleep(2)
        processes.append(seqlstm(*args, env=threads))
    out = "".join(finish(process, f"seqlstm tune on {name}") for process in processes)
    if not (tune_dir / "best.json").is_file():
        raise SystemExit(f"no trial of {name} finished in {minutes} minutes:\n{out}")
    best = json.loads((tune_dir / "best.json").read_text())
    trials = [line for line in out.splitlines() if line.startswith("trial ")]
    return {"test_accuracy": best["test_accuracy"], "best": best, "trials": len(trials),
            "pruned": sum("pruned" in line for line in trials), "stopped": sum("time limit" in line for line in trials),
            "lines": trials, "workers": workers, "seconds": time.perf_counter() - start}


def parallel(folder: Path, name: str, work: Path, trials: int) -> dict:
    """Wall seconds for one worker to finish `trials` trials, and for two workers sharing a study."""
    (work / "space.yaml").write_text(PARALLEL_SPACE)
    seconds = {}
    for workers in (1, 2):
        tune_dir = work / f"parallel-{workers}"
        args = ("tune", "--dataset", str(folder / f"{name}_TRAIN.ts"), "--test-dataset", str(folder / f"{name}_TEST.ts"),
                "--trials", str(trials), "--space", str(work / "space.yaml"), "--tune-dir", str(tune_dir), *PARALLEL_ARGS)
        start = time.perf_counter()
        first = seqlstm(*args, env={"OMP_NUM_THREADS": "1"})
        processes = [first]
        if workers == 2:
            while not (tune_dir / "study.db").exists():  # the second joins the study the first created
                time.sleep(0.2)
            time.sleep(2)
            processes.append(seqlstm(*args, env={"OMP_NUM_THREADS": "1"}))
        for process in processes:
            finish(process, f"{workers} worker(s)")
        seconds[workers] = time.perf_counter() - start
    return {"trials": trials, "one_worker_s": seconds[1], "two_workers_s": seconds[2], "ratio": seconds[2] / seconds[1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="[DIR] then problem names (default: every pair in DIR)")
    parser.add_argument("--minutes", type=float, default=30, help="each problem's tune (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=2, help="tune processes per problem (default: %(default)s)")
    parser.add_argument("--parallel-trials", type=int, default=0, metavar="N",
                        help="also time one worker against two on a study of N trials (default: not measured)")
    parser.add_argument("--parallel-on", metavar="NAME", help="the problem of that comparison (default: the first)")
    parser.add_argument("--json", default=str(RESULTS / "tune.json"))
    args = parser.parse_args()
    names = list(args.names)
    folder = Path(names.pop(0)) if names and Path(names[0]).is_dir() else \
        Path(os.environ.get("SEQLSTM_DATA", Path(__file__).parents[1].parent / "shared" / "data")) / "ucr"
    names = names or sorted(p.name.removesuffix("_TRAIN.ts") for p in folder.glob("*_TRAIN.ts"))
    rows = []
    with tempfile.TemporaryDirectory(prefix="tune-", dir=".") as work:
        work = Path(work)
        for name in names:
            row = {"name": name, "default": default_accuracy(folder, name, work), **tuned(folder, name, work, args.minutes, args.workers)}
            rows.append(row)
            print(f"{name}: no flags {row['default']:.2f} %, tuned {row['test_accuracy']:.2f} % ({row['trials']} trials, "
                  f"{row['pruned']} pruned, {row['seconds'] / 60:.1f} min)", flush=True)
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)  # kept as each problem ends: a tune is long
            Path(args.json).write_text(json.dumps({"machine": provenance(), "minutes": args.minutes, "workers": args.workers,
                                                   "problems": rows}, indent=1))
        speed = parallel(folder, args.parallel_on or names[0], work, args.parallel_trials) if args.parallel_trials else None
    minirocket = {row["problem"]: (row.get("minirocket") or {}).get("acc")
                  for row in json.loads((RESULTS / "ucr-2core-cpu.json").read_text()).get("problems", [])} \
        if (RESULTS / "ucr-2core-cpu.json").is_file() else {}
    for row in rows:
        row["minirocket"] = minirocket.get(row["name"])
    print(f"{'problem':<18}{'no flags':>10}{'tuned':>10}{'gain':>8}{'trials':>8}{'MiniRocket':>12}")
    for row in rows:
        print(f"{row['name']:<18}{row['default']:>9.2f}%{row['test_accuracy']:>9.2f}%"
              f"{row['test_accuracy'] - row['default']:>+8.2f}{row['trials']:>8}"
              f"{'' if row['minirocket'] is None else format(row['minirocket'], '11.2f') + '%':>12}")
    mean = lambda key: sum(r[key] for r in rows) / len(rows)
    print(f"{'mean':<18}{mean('default'):>9.2f}%{mean('test_accuracy'):>9.2f}%{mean('test_accuracy') - mean('default'):>+8.2f}")
    if speed:
        print(f"{speed['trials']} trials: one worker {speed['one_worker_s']:.0f} s, two workers {speed['two_workers_s']:.0f} s "
              f"({speed['ratio']:.2f} of the time)")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"machine": provenance(), "minutes": args.minutes, "workers": args.workers, "problems": rows,
                                           "parallel": speed}, indent=1))


if __name__ == "__main__":
    main()
