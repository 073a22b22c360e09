"""`seqlstm` command line: argument parsing only; each command calls one API function."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import signal
import sys
from typing import Sequence

from . import __version__, distributed
from .config import CHOICES, LOGGER_NAMES, TrainConfig
from .data.sources import DATASETS
from .errors import ConfigError, SeqlstmError, TrainingInterrupted
from .model import CELLS
from .evaluate import evaluate_checkpoint
from .explain import explain
from .export import export_onnx
from .predict import FilePrediction, predict_files
from .runs import plot_run
from .training import Recorder, resume, train
from .training.recorders import ProgressBar
from .web import serve

DEFAULTS = TrainConfig()
# What `train --resume` accepts besides the checkpoint: everything else comes from the run itself.
RESUME_OPTIONS = ("data_dir", "device", "quiet")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seqlstm", description="Train, evaluate and explain many-to-one LSTM sequence classifiers."
    )
    parser.add_argument("--version", action="version", version=f"seqlstm {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data_dir_help = "folder holding the dataset's files (gzip or raw); nothing is downloaded when given"
    device_help = "auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps (default: %(default)s)"

    t = commands.add_parser("train", help="train a classifier, evaluate it and save a checkpoint")
    t.add_argument("--dataset", default=DEFAULTS.dataset, metavar="NAME|PATH",
                   help=f"{' or '.join(DATASETS)}, or your own labelled sequences: a .npz, .ts (sktime/UCR/UEA) "
                        "or .csv file (default: %(default)s)")
    t.add_argument("--data-dir", default=DEFAULTS.data_dir, metavar="DIR", help=data_dir_help)
    t.add_argument("--view", choices=CHOICES["view"], default=DEFAULTS.view,
                   help="how an image is read: rows (28 steps of 28 pixels), pixels (784 steps of 1), permuted "
                        "(784 steps in a fixed random order) (default: %(default)s)")
    t.add_argument("--perm-seed", type=int, default=DEFAULTS.perm_seed, metavar="N",
                   help="seed of the permuted view's pixel order (default: %(default)s)")
    t.add_argument("--test-dataset", default=DEFAULTS.test_dataset, metavar="PATH",
                   help="your own test sequences (same format as --dataset); default: hold out --test-size")
    t.add_argument("--test-size", type=float, default=DEFAULTS.test_size, metavar="FRACTION",
                   help="share of your --dataset file held out for testing, stratified and seeded by --seed (default: 0.2)")
    t.add_argument("--label-column", default=DEFAULTS.label_column, metavar="NAME|N",
                   help=".csv: the label column's header name or 0-based position (default: the first column)")
    t.add_argument("--epochs", type=int, help="passes over the training set (default: 2 for an image set; planned from "
                                             "your file's size, with early stopping)")
    t.add_argument("--batch-size", type=int, help="samples per step (default: 100 for an image set; planned from your file's size)")
    t.add_argument("--hidden-size", type=int, default=DEFAULTS.hidden_size, help="LSTM units per layer (default: %(default)s)")
    t.add_argument("--num-layers", type=int, default=DEFAULTS.num_layers, help="stacked LSTM layers (default: %(default)s)")
    t.add_argument("--cell", choices=CELLS, default=DEFAULTS.cell, help="recurrent cell: lstm and gru run fused (oneDNN/cuDNN), seed is the tutorial's 4-gate cell run as explicit equations (default: %(default)s)")
    t.add_argument("--seed", type=int, default=DEFAULTS.seed, help="seed for initial weights and shuffling (default: %(default)s)")
    t.add_argument("--device", default=DEFAULTS.device, help=device_help)
    t.add_argument("--max-steps", type=int, default=DEFAULTS.max_steps, metavar="N", help="stop after N optimizer steps (smoke runs)")
    t.add_argument("--log-every", type=int, default=DEFAULTS.log_every, metavar="N", help="print the loss every N steps (default: %(default)s)")
    t.add_argument("--out", default=DEFAULTS.out, metavar="PATH", help="checkpoint to write (default: %(default)s)")
    t.add_argument("--quiet", action="store_true", help="no progress bar (it is shown only when stderr is a terminal)")
    g = t.add_argument_group("run directory", "what the run records, and continuing it")
    g.add_argument("--run-dir", default=DEFAULTS.run_dir, metavar="DIR",
                   help="config.json, metrics.jsonl, last.ckpt, best.ckpt, plots/ (default: runs/<UTC time>-<dataset>-<cell>)")
    g.add_argument("--val-size", type=int, metavar="N",
                   help="hold N training samples out (fixed seed; stratified for your files) to validate on after each "
                        "epoch (default: 0 for an image set; a stratified 20%% of a file of 500 or more sequences)")
    g.add_argument("--patience", type=int, metavar="N",
                   help="stop after N validations without a better one and keep the best weights; 0: never (default: "
                        "0 for an image set; planned for your files)")
    g.add_argument("--eval-every", type=int, default=DEFAULTS.eval_every, metavar="N", help="also validate every N steps")
    g.add_argument("--checkpoint-every", type=int, default=DEFAULTS.checkpoint_every, metavar="N",
                   help="write last.ckpt every N steps (default: after each epoch)")
    g.add_argument("--log", action="append", choices=LOGGER_NAMES, default=[], metavar="LOGGER",
                   help="also log the run's numbers to LOGGER, in the run directory: tensorboard (pip install "
                        "\"seqlstm[tensorboard]\"; then tensorboard --logdir runs)")
    g.add_argument("--resume", metavar="CKPT",
                   help="continue the run saved in CKPT (a run's last.ckpt) with its own settings; "
                        "only --data-dir, --device and --quiet may be given with it")
    r = t.add_argument_group("recipe", "how the model is trained; each flag overrides the recipe's choice")
    r.add_argument("--recipe", choices=CHOICES["recipe"], default=DEFAULTS.recipe,
                   help="fast: bf16 where supported, one-cycle lr, clipping, LSTM init, 1-px shifts, measured changes "
                        "for Fashion-MNIST and the pixel views; "
                        "tutorial: exactly the tutorial's training (default: %(default)s)")
    r.add_argument("--precision", choices=CHOICES["precision"],
                   help="auto: bf16 autocast on CUDA and on CPUs with bf16 instructions, else fp32")
    r.add_argument("--schedule", choices=CHOICES["schedule"], help="onecycle: warm up to --lr, then anneal")
    r.add_argument("--clip-grad", type=float, metavar="NORM", help="clip the gradient norm to NORM; 0: off")
    r.add_argument("--lr", type=float, help="Adam's peak learning rate (the tutorial's 0.01; 0.005 on Fashion-MNIST, "
                                            "0.001 for the pixels and permuted views)")
    r.add_argument("--label-smoothing", type=float, metavar="EPS",
                   help="cross-entropy label smoothing from 0 (off) to below 1 (0.1 on Fashion-MNIST, else off)")
    r.add_argument("--weight-decay", type=float, metavar="WD",
                   help="AdamW's decoupled weight decay; 0: Adam (0.01 on Fashion-MNIST, else 0)")
    r.add_argument("--init", choices=CHOICES["init"],
                   help="lstm: forget-gate bias 1, orthogonal recurrent weights; chrono: memory-gate biases spread up "
                        "to the sequence's length (the pixels and permuted views)")
    r.add_argument("--augment-shift", type=int, metavar="PX", help="shift training images by up to PX pixels; 0: off")
    r.add_argument("--normalize", choices=CHOICES["normalize"],
                   help="standard: each input feature to mean 0, std 1 with training-set statistics kept in the model; "
                        "series: each sequence by its own mean and std")
    r.add_argument("--class-weight", choices=CHOICES["class_weight"],
                   help="balanced: every class weighs the same in the loss whatever its count (default: none)")
    m = t.add_argument_group("model shape", "beyond the tutorial's; each flag overrides the recipe's choice")
    m.add_argument("--patch", type=int, metavar="K",
                   help="read K consecutive steps as one step of K x features (default: 1 for images; for your files, "
                        "enough to leave the core at most about 128 steps)")
    m.add_argument("--bidirectional", action=argparse.BooleanOptionalAction, default=None,
                   help="a second core reads every sequence backwards from its last real step")
    m.add_argument("--pool", choices=CHOICES["pool"],
                   help="how the core's outputs become one vector, over the real steps only (default: last for images, "
                        "mean for your files)")
    m.add_argument("--dropout", type=float, metavar="P", help="dropout on the pooled vector before the head (default: 0)")
    m.add_argument("--conv", type=int, metavar="FILTERS",
                   help="a convolutional branch beside the core, LSTM-FCN style (conv-BN-ReLU blocks of FILTERS, 2xFILTERS, "
                        "FILTERS); 0: none (default: 0 for images, 128 for your files)")
    m.add_argument("--conv-patch", type=int, metavar="K",
                   help="the convolutional branch reads K steps as one (default: --patch)")
    r.add_argument("--bucket", action="store_true",
                   help="batch variable-length sequences with others of about their length: faster, but measured to "
                        "cost accuracy on some problems (default: random batches, each padded to its own longest)")

    e = commands.add_parser("evaluate", help="accuracy, per-class metrics and confusion matrix on the test split")
    e.add_argument("checkpoint", metavar="CKPT", help="checkpoint written by `seqlstm train`")
    e.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    e.add_argument("--plots", metavar="DIR", help="draw confusion.png and misclassified.png into DIR")
    e.add_argument("--dataset", metavar="PATH",
                   help="a labelled .npz, .ts or .csv file to evaluate on instead (models trained on sequences)")
    e.add_argument("--data-dir", metavar="DIR", help=data_dir_help)
    e.add_argument("--device", default="auto", help=device_help)

    pl = commands.add_parser("plot", help="draw a run's training curves into RUN_DIR/plots/training.png")
    pl.add_argument("run_dir", metavar="RUN_DIR", help="run directory written by `seqlstm train`")

    x = commands.add_parser("explain", help="draw every gate of a trained model at every step for one sample")
    x.add_argument("checkpoint", metavar="CKPT", help="checkpoint written by `seqlstm train`")
    x.add_argument("--index", type=int, required=True, metavar="N", help="which sample of the split (0-based)")
    x.add_argument("--split", default="test", choices=("train", "test"), help="split to take the sample from (default: %(default)s)")
    x.add_argument("--out", default="gates.png", metavar="PNG", help="figure to write (default: %(default)s)")
    x.add_argument("--json", metavar="FILE", help="also write the traced numbers to FILE as JSON")
    x.add_argument("--data-dir", metavar="DIR", help=data_dir_help)
    x.add_argument("--device", default="cpu", help="as for train (default: %(default)s; one sample is fastest on the CPU)")

    p = commands.add_parser(
        "predict", help="top classes for image files (PNG, JPEG, BMP, GIF, TIFF), .npy arrays, or sequence files"
    )
    p.add_argument("checkpoint", metavar="CKPT", help="checkpoint written by `seqlstm train`")
    p.add_argument("files", nargs="+", metavar="FILE",
                   help="images or .npy arrays, one character (Fashion-MNIST: one article) each; for a model "
                        "trained on sequences, .npz, .ts or .csv files (every sequence in them)")
    p.add_argument("--top-k", type=int, default=3, metavar="K", help="classes to show per file (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print a JSON list, one object per file")
    p.add_argument(
        "--no-preprocess", action="store_true",
        help="feed files as they are: they must be 28x28, bright on black, like the training images",
    )
    p.add_argument("--save-preprocessed", metavar="DIR", help="write the 28x28 image the model saw for each file to DIR")
    p.add_argument("--device", default="auto", help=device_help)

    o = commands.add_parser("export", help="export a checkpoint to ONNX, verified against PyTorch with onnxruntime")
    o.add_argument("checkpoint", metavar="CKPT", help="checkpoint written by `seqlstm train`")
    o.add_argument("--onnx", required=True, metavar="PATH", help="ONNX file to write")

    s = commands.add_parser("serve", help="a web page to draw a digit and watch the model read it, with a JSON API")
    s.add_argument("checkpoint", metavar="CKPT", help="checkpoint written by `seqlstm train`")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on; 0.0.0.0 opens it to the network (default: %(default)s)")
    s.add_argument("--port", type=int, default=8000, help="port to listen on; 0 takes any free port (default: %(default)s)")
    s.add_argument("--request-timeout", type=float, default=30.0, metavar="S",
                   help="close a connection whose request has not fully arrived within S seconds (default: %(default)s)")
    return parser


def format_predictions(results: list[FilePrediction]) -> str:
    """One block per file: its name, then a line per guess (`  label  probability %`) or its error."""
    width = max((len(g.label) for r in results for g in r.top or ()), default=1)
    lines = []
    for result in results:
        lines.append(result.file)
        if result.error is not None:
            lines.append(f"  error: {result.error}")
        for guess in result.top or ():
            lines.append(f"  {guess.label:<{width}}  {100 * guess.probability:6.2f} %")
    return "\n".join(lines)


def resume_device(args: argparse.Namespace) -> str | None:
    """The --device given with --resume, or None to keep the run's; ConfigError for any setting given with it."""
    defaults = vars(build_parser().parse_args(["train"]))
    given = [k for k, v in vars(args).items() if k not in ("command", "resume", *RESUME_OPTIONS) and v != defaults[k]]
    if given:
        raise ConfigError(
            f"--resume continues the run with the settings it was started with; drop "
            f"{', '.join('--' + k.replace('_', '-') for k in given)} (only --data-dir, --device and --quiet go with it)"
        )
    return None if args.device == defaults["device"] else args.device


def main(argv: list[str] | None = None, recorders: Sequence[Recorder] = ()) -> int:
    """Run the `seqlstm` command `argv` (default: sys.argv[1:]) and return its exit code; `recorders`
    (training/recorders.py) also hear a `train` run, for a program that runs the command itself."""
    args = build_parser().parse_args(argv)
    # Under torchrun, rank 0 speaks for all: the other ranks log only warnings and their own errors.
    logging.basicConfig(level=logging.INFO if distributed.is_main() else logging.WARNING, format="%(message)s", stream=sys.stderr)
    try:
        if args.command == "train":
            progress = ProgressBar(enabled=not args.quiet and sys.stderr.isatty())
            if args.resume:
                resume(args.resume, progress.log, [progress, *recorders], args.data_dir, resume_device(args))
            else:
                options = {k: v for k, v in vars(args).items() if k not in ("command", "resume", "quiet")}
                train(TrainConfig(**options), progress.log, [progress, *recorders])
        elif args.command == "evaluate":
            evaluation = evaluate_checkpoint(args.checkpoint, args.data_dir, args.device, plots=args.plots, dataset=args.dataset)
            print(json.dumps(evaluation.to_dict(), indent=2) if args.json else evaluation.report())
            if evaluation.figures and not args.json:
                print(f"wrote {', '.join(str(p) for p in evaluation.figures)}")
        elif args.command == "plot":
            print(f"wrote {plot_run(args.run_dir)}")
        elif args.command == "explain":
            result = explain(args.checkpoint, args.index, args.split, args.out, args.json, args.data_dir, args.device)
            print(f"{result.summary()}; wrote {', '.join(str(p) for p in (result.figure, result.json) if p)}")
        elif args.command == "predict":
            results = predict_files(
                args.checkpoint, args.files, args.top_k, not args.no_preprocess, args.save_preprocessed, args.device
            )
            print(json.dumps([r.to_dict() for r in results], indent=2) if args.json else format_predictions(results))
            failed = sum(r.error is not None for r in results)
            if failed:
                print(f"seqlstm: error: {failed} of {len(args.files)} files could not be predicted", file=sys.stderr)
                return 1
        elif args.command == "export":
            print(export_onnx(args.checkpoint, args.onnx).summary())
        elif args.command == "serve":
            serve(args.checkpoint, args.host, args.port, log=lambda line: print(line, flush=True),
                  request_timeout=args.request_timeout)
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
    return 0
