"""`seqlstm` command line: argument parsing only; each command calls one API function.

The `train` flags are built from TrainConfig's fields (config.py holds each one's help text and
default). Only what parsing needs is imported at start-up: `seqlstm --help` and `--version` never
load PyTorch; a command's modules load when it runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shlex
import signal
import sys
import threading
from dataclasses import MISSING, Field, fields
from pathlib import Path
from typing import Sequence

from . import __version__
from .config import FLAG_CHOICES, GROUPS, INT8_MAX_LOSS, RUNTIMES, SHARD_MB, TrainConfig
from .errors import ConfigError, SeqlstmError, TrainingInterrupted

# The fields that are `seqlstm train` flags: those with help text.
FLAGS = tuple(f for f in fields(TrainConfig) if "help" in f.metadata)
# What `train --resume` accepts besides the checkpoint: everything else comes from the run itself.
RESUME_OPTIONS = ("data_dir", "device")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seqlstm", description="Train, evaluate and explain many-to-one LSTM sequence classifiers."
    )
    parser.add_argument("--version", action="version", version=f"seqlstm {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    runtime_help = ("what runs the model: PyTorch, ONNX Runtime (the export extra; the checkpoint is exported once "
                    "and cached; CPU only), or auto, whichever is faster for each batch size, measured on first use "
                    "(default: %(default)s)")
    data_dir_help = "folder holding the dataset's files (gzip or raw); nothing is downloaded when given"
    device_help = "auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps (default: %(default)s)"

    t = commands.add_parser("train", help="train a classifier, evaluate it and save a checkpoint")
    add_config_flags(t)
    t.add_argument("--quiet", action="store_true", help="no progress bar (it is shown only when stderr is a terminal)")
    t.add_argument("--config", metavar="FILE",
                   help="read settings from a YAML or JSON file of flag names (as in --print-config); flags given "
                        "beside it override it")
    t.add_argument("--print-config", action="store_true",
                   help="print the resolved settings (the recipe's and the plan's choices filled in) as YAML and stop; "
                        "the output is a --config file that trains the same run")
    t.add_argument("--resume", metavar="CKPT",
                   help="continue the run saved in CKPT (a run's last.ckpt) with its own settings; "
                        "only --data-dir, --device and --quiet may be given with it")

    e = commands.add_parser("evaluate", help="accuracy, per-class metrics and confusion matrix on the test split")
    e.add_argument("checkpoint", metavar="CKPT", help="checkpoint written by `seqlstm train`")
    e.add_argument("--json", action="store_true",
                   help="print one JSON object instead of text: split, total, correct, accuracy (%%), loss (mean "
                        "cross-entropy), classes, per_class (label, precision, recall, f1 as fractions, support), "
                        "confusion (rows: true class, columns: predicted), figures")
    e.add_argument("--plots", metavar="DIR",
                   help="draw DIR/confusion.png (counts, coloured by the share of the true class) and, for images, "
                        "DIR/misclassified.png (the 25 most confidently wrong, with true and predicted label)")
    e.add_argument("--dataset", metavar="PATH",
                   help="a labelled .npz, .ts or .csv file to evaluate on instead (models trained on sequences)")
    e.add_argument("--data-dir", metavar="DIR", help=data_dir_help)
    e.add_argument("--device", default="auto",
                   help=device_help.replace(" (default", "; the device it was trained on reproduces its accuracy to the "
                                                          "last digit (default"))

    pl = commands.add_parser("plot", help="draw a run's training curves into RUN_DIR/plots/training.png")
    pl.add_argument("run_dir", metavar="RUN_DIR", help="run directory written by `seqlstm train`")

    x = commands.add_parser("explain", help="draw every gate of a trained model at every step for one sample")
    x.add_argument("checkpoint", metavar="CKPT", help="checkpoint written by `seqlstm train`")
    x.add_argument("--index", type=int, required=True, metavar="N", help="which sample of the split (0-based)")
    x.add_argument("--split", default="test", choices=("train", "test"), help="split to take the sample from (default: %(default)s)")
    x.add_argument("--out", default="gates.png", metavar="PNG", help="figure to write (default: %(default)s)")
    x.add_argument("--json", metavar="FILE",
                   help="also write the numbers to FILE as JSON: traces [layer][step][unit], probabilities "
                        "[step][class], unit_order [layer][position], gate means and memory norms [layer][step]")
    x.add_argument("--data-dir", metavar="DIR", help=data_dir_help)
    x.add_argument("--device", default="cpu", help="as for train (default: %(default)s; one sample is fastest on the CPU)")

    p = commands.add_parser(
        "predict", help="top classes for image files (PNG, JPEG, BMP, GIF, TIFF), .npy arrays, or sequence files"
    )
    p.add_argument("checkpoint", metavar="CKPT", help="checkpoint written by `seqlstm train`")
    p.add_argument("files", nargs="+", metavar="FILE",
                   help="images or .npy arrays, one character (Fashion-MNIST: one article) each; for a model "
                        "trained on sequences, .npz, .ts or .csv files (every sequence in them)")
    p.add_argument("--top-k", type=int, default=3, metavar="K",
                   help="classes to show per file, most probable first (default: %(default)s)")
    p.add_argument("--json", action="store_true",
                   help='print a JSON list, one object per file: {"file", "top": [{"label", "probability"}, ...]}, or '
                        '{"file", "error"} for a file that failed')
    p.add_argument(
        "--no-preprocess", action="store_true",
        help="feed files as they are: they must be 28x28, bright on black, like the training images",
    )
    p.add_argument("--save-preprocessed", metavar="DIR",
                   help="write the 28x28 image the model saw for each file to DIR/<file stem>.png (<stem>-2.png, ... "
                        "when two files share a stem)")
    p.add_argument("--device", default="auto", help=device_help)
    p.add_argument("--runtime", default="torch", choices=RUNTIMES, help=runtime_help)

    o = commands.add_parser("export", help="export a checkpoint to ONNX, verified against PyTorch with onnxruntime")
    o.add_argument("checkpoint", metavar="CKPT", help="checkpoint written by `seqlstm train`")
    o.add_argument("--onnx", required=True, metavar="PATH", help="ONNX file to write")
    o.add_argument("--max-length", type=int, metavar="T",
                   help="models reading sequences: the longest sequence the file takes; any length from 1 to T is "
                        "accepted, and every call computes T steps (default: the longest training sequence)")
    o.add_argument("--int8", action="store_true",
                   help="int8 weights (ONNX Runtime's dynamic quantization): a smaller file, faster at batch 1; "
                        "its accuracy on the test split is printed beside float32's")
    o.add_argument("--int8-max-loss", type=float, default=INT8_MAX_LOSS, metavar="POINTS",
                   help="refuse the int8 file (nothing written) when it loses more than POINTS of test accuracy "
                        "(default: %(default)s)")
    o.add_argument("--data-dir", metavar="DIR", help=data_dir_help + " (the test split --int8 is measured on)")

    k = commands.add_parser("pack", help="pack sequence files into a folder that training reads from disk a batch at a "
                                         "time, for data larger than memory")
    k.add_argument("sources", nargs="+", metavar="SOURCE",
                   help="labelled .ts, .csv or .npz files, or folders of them (taken in name order): the training sequences")
    k.add_argument("--out", required=True, metavar="DIR", help="the pack's folder; must not exist yet")
    k.add_argument("--test", nargs="+", default=(), metavar="SOURCE", help="files or folders of test sequences")
    k.add_argument("--test-size", type=float, metavar="F",
                   help="instead of --test: put this share of each class's sequences into the test split, by a rule "
                        "seeded with --seed")
    k.add_argument("--seed", type=int, default=0, help="seed of the --test-size rule (default: %(default)s)")
    k.add_argument("--label-column", metavar="COLUMN",
                   help=".csv files: the label column, a header name or a 0-based index (default: the first)")
    k.add_argument("--shard-mb", type=float, default=SHARD_MB, metavar="MB",
                   help="about this many MB of values per shard file (default: %(default)s)")

    u = commands.add_parser("tune", help="search the training settings on your data with Optuna, then train and test "
                                         "the best once")
    add_config_flags(u, without=("out", "run_dir"))
    u.add_argument("--trials", type=int, default=20, metavar="N",
                   help="trials of the study, over every process working on it (default: %(default)s)")
    u.add_argument("--timeout", type=float, metavar="S", help="end the search after S seconds (this process): a trial still running is stopped; then the best trains")
    u.add_argument("--space", metavar="YAML",
                   help="the search space: 'name: [choices]', 'name: {low: A, high: B, log: true}' or 'name: value' "
                        "for settings named as the flags are (default: learning rate, hidden size, layers, cell, "
                        "bidirectional, pooling, dropout, patch length and batch size, less the flags you give)")
    u.add_argument("--tune-dir", metavar="DIR",
                   help="the study (study.db), the trials' run directories, best.ckpt, results.csv and plots/ "
                        "(default: tunes/<dataset>)")
    u.add_argument("--storage", metavar="URL",
                   help="an Optuna storage URL (e.g. postgresql://...) shared by workers on several machines "
                        "(default: sqlite in --tune-dir)")
    u.add_argument("--study", metavar="NAME", help="the study's name in the storage (default: the dataset's)")

    s = commands.add_parser("serve", help="a web page to watch the model read a drawing or a sequence, step by step, with a JSON API")
    s.add_argument("checkpoint", metavar="CKPT", help="checkpoint written by `seqlstm train`")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on; 0.0.0.0 opens it to the network (default: %(default)s)")
    s.add_argument("--port", type=int, default=8000,
                   help="port to listen on; 0 takes any free port, which the printed URL shows (default: %(default)s)")
    s.add_argument("--request-timeout", type=float, default=30.0, metavar="S",
                   help="close a connection whose request has not fully arrived within S seconds (default: %(default)s)")
    s.add_argument("--runtime", default="torch", choices=RUNTIMES,
                   help="what answers the requests without traces: torch, onnxruntime or auto, as for predict; the "
                        "traces are always PyTorch's (default: %(default)s)")
    return parser


def add_config_flags(parser: argparse.ArgumentParser, without: tuple[str, ...] = ()) -> None:
    """A flag for each TrainConfig field with help text (but those named in `without`), in
    config.GROUPS' groups. A flag left out is absent from the parsed arguments (not set to its
    default), so a --config file's value stands."""
    groups = {None: parser, **{name: parser.add_argument_group(name, text) for name, text in GROUPS.items()}}
    for f in FLAGS:
        if f.name in without:
            continue
        options = dict(default=argparse.SUPPRESS, help=flag_help(f), metavar=f.metadata["metavar"])
        if f.name in FLAG_CHOICES:
            options.update(choices=FLAG_CHOICES[f.name])
        kind = kind_of(f)
        if kind == "bool":
            options.update(action="store_true" if f.default is False else argparse.BooleanOptionalAction)
            options.pop("metavar")
        elif kind == "tuple":
            options.update(action="append")
        else:
            options.update(type={"int": int, "float": float, "str": str}[kind])
        groups[f.metadata["group"]].add_argument("--" + f.name.replace("_", "-"), **options)


def kind_of(f: Field) -> str:
    """What a flag field holds, from its annotation (a string, as `from __future__ import annotations`
    leaves it): "bool", "int", "float", "str" or "tuple"."""
    return f.type.split(" ")[0].split("[")[0]


def flag_help(f: Field) -> str:
    """The field's help text, with its default where it has one worth stating."""
    if any(f.default is nothing for nothing in (None, False, MISSING)) or f.default == () or "(default" in f.metadata["help"]:
        return f.metadata["help"]
    return f"{f.metadata['help']} (default: {f.default})"


def read_config_file(path: str) -> dict:
    """The settings in a YAML (.yaml, .yml) or JSON (.json) file: a mapping of flag names (with - or _)
    to values. ConfigError naming the file for anything else."""
    import yaml

    file = Path(path)
    if file.suffix.lower() not in (".yaml", ".yml", ".json"):
        raise ConfigError(f"--config {path}: give a .yaml, .yml or .json file")
    try:
        text = file.read_text(encoding="utf-8")
        values = json.loads(text) if file.suffix.lower() == ".json" else yaml.safe_load(text)
    except FileNotFoundError:
        raise ConfigError(f"--config {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"--config {path}: cannot be read: {getattr(e, 'strerror', None) or e}") from None
    except (ValueError, yaml.YAMLError) as e:
        raise ConfigError(f"--config {path}: not valid {'JSON' if file.suffix.lower() == '.json' else 'YAML'}: "
                          f"{' '.join(str(e).split())}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"--config {path}: must be a mapping of settings (name: value), not a {type(values).__name__}")
    flags = {f.name: f for f in FLAGS}
    settings = {str(key).replace("-", "_"): value for key, value in values.items()}
    unknown = sorted(set(settings) - set(flags))
    if unknown:
        raise ConfigError(f"--config {path}: unknown setting {unknown[0]!r}; the settings are the train flags' names "
                          "(seqlstm train --help)")
    return {name: setting(flags[name], value, path) for name, value in settings.items()}


def setting(f: Field, value, path: str):
    """`value` from a config file as field `f` takes it, as the flag's own parsing would; ConfigError otherwise."""
    if value is None and f.default is None:
        return None
    kind = kind_of(f)
    if kind == "float" and isinstance(value, str):  # YAML reads 1e-3 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    wanted = {"bool": (bool,), "int": (int,), "float": (int, float), "str": (str, int), "tuple": (list, str)}[kind]
    if not isinstance(value, wanted) or (kind != "bool" and isinstance(value, bool)):
        names = {"bool": "true or false", "int": "a whole number", "float": "a number", "str": "a text",
                 "tuple": "a list of names"}
        raise ConfigError(f"--config {path}: {f.name.replace('_', '-')} must be {names[kind]}"
                          f"{' or null' if f.default is None else ''}, got {value!r}")
    return str(value) if kind == "str" else float(value) if kind == "float" else value


def config_text(config: TrainConfig) -> str:
    """The flag fields of `config` as YAML, in the order of --help."""
    import yaml

    values = {f.name: getattr(config, f.name) for f in FLAGS}
    values["log"] = list(values["log"])
    return yaml.safe_dump(values, sort_keys=False, allow_unicode=True)


def format_predictions(results: list) -> str:
    """One block per file (prediction.FilePrediction): its name, then a line per guess
    (`  label  probability %`) or its error."""
    width = max((len(g.label) for r in results for g in r.top or ()), default=1)
    lines = []
    for result in results:
        lines.append(result.file)
        if result.error is not None:
            lines.append(f"  error: {result.error}")
        for guess in result.top or ():
            lines.append(f"  {guess.label:<{width}}  {100 * guess.probability:6.2f} %")
    return "\n".join(lines)


def resumed_with(args: argparse.Namespace) -> dict:
    """The settings given with --resume (--data-dir, --device); ConfigError for any other."""
    given = [name for name in vars(args) if name in {f.name for f in FLAGS} and name not in RESUME_OPTIONS]
    if given or args.config or args.print_config:
        named = [f"--{name.replace('_', '-')}" for name in given] + ["--config"] * bool(args.config) + [
            "--print-config"] * bool(args.print_config)
        raise ConfigError(
            f"--resume continues the run with the settings it was started with; drop {', '.join(named)} "
            "(only --data-dir, --device and --quiet go with it)"
        )
    return {name: getattr(args, name, None) for name in RESUME_OPTIONS}


def main(argv: list[str] | None = None, recorders: Sequence = ()) -> int:
    """Run the `seqlstm` command `argv` (default: sys.argv[1:]) and return its exit code; `recorders`
    (training/recorders.py) also hear a `train` run, for a program that runs the command itself."""
    args = build_parser().parse_args(argv)
    try:
        # The command's modules load now, not for --help: PyTorch alone takes seconds. A Ctrl+C
        # while it loads would raise inside its C++ start-up (an abort) or leave NumPy half-made (a
        # traceback), so until then it ends the process at once: nothing has been written yet.
        with interrupt_ends_process():
            from . import distributed

        # Under torchrun, rank 0 speaks for all: the other ranks log only warnings and their own errors.
        logging.basicConfig(level=logging.INFO if distributed.is_main() else logging.WARNING, format="%(message)s",
                            stream=sys.stderr)
        return run(args, recorders)
    except SeqlstmError as e:
        # Under torchrun every rank has the same settings, so rank 0 alone reports a bad one; any
        # other error may be one rank's own (its data, its device) and is reported by that rank.
        if distributed.is_main():
            print(f"seqlstm: error: {e}", file=sys.stderr)
        elif not isinstance(e, ConfigError):
            print(f"seqlstm: error: rank {distributed.rank()}: {e}", file=sys.stderr)
        return 1
    except TrainingInterrupted as e:
        print(
            f"seqlstm: {signal.Signals(e.signum).name}: stopped after step {e.step} and saved {e.checkpoint}\n"
            f"resume with: seqlstm train --resume {shlex.quote(str(e.checkpoint))}",
            file=sys.stderr,
        )
        return 128 + e.signum
    except KeyboardInterrupt:
        print("seqlstm: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of our output went away (`seqlstm predict ... | head -1`): nothing more to say,
        # and nothing to flush at exit either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


@contextlib.contextmanager
def interrupt_ends_process():
    """Within the block, SIGINT exits with 130 at once instead of raising KeyboardInterrupt."""

    def end(signum, frame):
        os.write(sys.stderr.fileno(), b"seqlstm: interrupted\n")
        os._exit(130)

    if threading.current_thread() is not threading.main_thread():  # only the main thread hears signals
        yield
        return
    previous = signal.signal(signal.SIGINT, end)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def run(args: argparse.Namespace, recorders: Sequence) -> int:
    """Carry out the parsed command; its exit code."""
    if args.command == "train":
        from .training import resolve, resume, train
        from .training.recorders import ProgressBar

        progress = ProgressBar(enabled=not args.quiet and sys.stderr.isatty())
        if args.resume:
            resume(args.resume, progress.log, [progress, *recorders], **resumed_with(args))
            return 0
        given = {f.name: getattr(args, f.name) for f in FLAGS if hasattr(args, f.name)}
        config = TrainConfig(**{**(read_config_file(args.config) if args.config else {}), **given})
        if args.print_config:
            print(config_text(resolve(config)), end="")
        else:
            train(config, progress.log, [progress, *recorders])
    elif args.command == "evaluate":
        from .evaluation import evaluate_checkpoint

        evaluation = evaluate_checkpoint(args.checkpoint, args.data_dir, args.device, plots=args.plots, dataset=args.dataset)
        print(json.dumps(evaluation.to_dict(), indent=2) if args.json else evaluation.report())
        if evaluation.figures and not args.json:
            print(f"wrote {', '.join(str(p) for p in evaluation.figures)}")
    elif args.command == "plot":
        from .runs import plot_run

        print(f"wrote {plot_run(args.run_dir)}")
    elif args.command == "explain":
        from .explanation import explain

        result = explain(args.checkpoint, args.index, args.split, args.out, args.json, args.data_dir, args.device)
        print(f"{result.summary()}; wrote {', '.join(str(p) for p in (result.figure, result.json) if p)}")
    elif args.command == "predict":
        from .prediction import predict_files

        results = predict_files(args.checkpoint, args.files, args.top_k, not args.no_preprocess, args.save_preprocessed,
                                args.device, args.runtime)
        print(json.dumps([r.to_dict() for r in results], indent=2) if args.json else format_predictions(results))
        failed = sum(r.error is not None for r in results)
        if failed:
            print(f"seqlstm: error: {failed} of {len(args.files)} files could not be predicted", file=sys.stderr)
            return 1
    elif args.command == "export":
        from .export import export_onnx

        print(export_onnx(args.checkpoint, args.onnx, args.max_length, args.int8, args.int8_max_loss, args.data_dir).summary())
    elif args.command == "pack":
        from .data.packed import pack
        from .data.records import label_column

        if not args.shard_mb > 0:
            raise ConfigError(f"--shard-mb must be a positive number of MB, got {args.shard_mb}")
        summary = pack(args.sources, args.out, args.test, args.test_size, args.seed, label_column(args.label_column),
                       int(args.shard_mb * 2**20), progress=lambda n: print(f"{n:,} sequences", file=sys.stderr))
        print(summary.describe())
    elif args.command == "tune":
        from .tuning import read_space, tune

        given = {f.name: getattr(args, f.name) for f in FLAGS if hasattr(args, f.name)}
        config = TrainConfig(**given)
        space = read_space(args.space) if args.space else None
        folder = args.tune_dir or str(Path("tunes") / Path(str(config.dataset)).stem)
        try:
            result = tune(config, folder, args.trials, args.timeout, space, args.storage, args.study,
                          log_line=lambda line: print(line, flush=True), fixed=tuple(given))
        except TrainingInterrupted as e:  # a trial's run stopped: the study keeps what finished
            print(f"seqlstm: {signal.Signals(e.signum).name}: the tune stopped during a trial; run the same command to go "
                  "on where the study stands", file=sys.stderr)
            return 128 + e.signum
        print(f"wrote {result.results}{''.join(f', {p}' for p in result.plots)}")
    elif args.command == "serve":
        from .web import serve

        serve(args.checkpoint, args.host, args.port, log=lambda line: print(line, flush=True),
              request_timeout=args.request_timeout, runtime=args.runtime)
    return 0
