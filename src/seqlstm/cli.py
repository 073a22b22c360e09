"""`seqlstm` command line: argument parsing only; each command calls one API function."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from . import __version__
from .config import TrainConfig
from .errors import SeqlstmError
from .evaluate import evaluate_checkpoint
from .export import export_onnx
from .predict import FilePrediction, predict_files
from .train import train

DEFAULTS = TrainConfig()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seqlstm", description="Train and evaluate many-to-one LSTM sequence classifiers."
    )
    parser.add_argument("--version", action="version", version=f"seqlstm {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data_dir_help = "folder holding the dataset's files (gzip or raw); nothing is downloaded when given"
    device_help = "auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps (default: %(default)s)"

    t = commands.add_parser("train", help="train a classifier, evaluate it and save a checkpoint")
    t.add_argument("--dataset", default=DEFAULTS.dataset, help="dataset name (default: %(default)s)")
    t.add_argument("--data-dir", default=DEFAULTS.data_dir, metavar="DIR", help=data_dir_help)
    t.add_argument("--epochs", type=int, default=DEFAULTS.epochs, help="passes over the training set (default: %(default)s)")
    t.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size, help="samples per step (default: %(default)s)")
    t.add_argument("--lr", type=float, default=DEFAULTS.lr, help="Adam learning rate (default: %(default)s)")
    t.add_argument("--hidden-size", type=int, default=DEFAULTS.hidden_size, help="LSTM units per layer (default: %(default)s)")
    t.add_argument("--num-layers", type=int, default=DEFAULTS.num_layers, help="stacked LSTM layers (default: %(default)s)")
    t.add_argument("--seed", type=int, default=DEFAULTS.seed, help="seed for initial weights and shuffling (default: %(default)s)")
    t.add_argument("--device", default=DEFAULTS.device, help=device_help)
    t.add_argument("--max-steps", type=int, default=DEFAULTS.max_steps, metavar="N", help="stop after N optimizer steps (smoke runs)")
    t.add_argument("--log-every", type=int, default=DEFAULTS.log_every, metavar="N", help="print the loss every N steps (default: %(default)s)")
    t.add_argument("--out", default=DEFAULTS.out, metavar="PATH", help="checkpoint to write (default: %(default)s)")

    e = commands.add_parser("evaluate", help="print a checkpoint's accuracy on the test split")
    e.add_argument("checkpoint", metavar="CKPT", help="checkpoint written by `seqlstm train`")
    e.add_argument("--data-dir", metavar="DIR", help=data_dir_help)
    e.add_argument("--device", default="auto", help=device_help)

    p = commands.add_parser("predict", help="top classes for image files (PNG, JPEG, BMP, GIF, TIFF) or .npy arrays")
    p.add_argument("checkpoint", metavar="CKPT", help="checkpoint written by `seqlstm train`")
    p.add_argument("files", nargs="+", metavar="FILE", help="images or .npy arrays, one character each")
    p.add_argument("--top-k", type=int, default=3, metavar="K", help="classes to show per file (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print a JSON list, one object per file")
    p.add_argument(
        "--no-preprocess", action="store_true",
        help="feed files as they are: they must be 28x28, bright ink on black, like MNIST",
    )
    p.add_argument("--save-preprocessed", metavar="DIR", help="write the 28x28 image the model saw for each file to DIR")
    p.add_argument("--device", default="auto", help=device_help)

    x = commands.add_parser("export", help="export a checkpoint to ONNX, verified against PyTorch with onnxruntime")
    x.add_argument("checkpoint", metavar="CKPT", help="checkpoint written by `seqlstm train`")
    x.add_argument("--onnx", required=True, metavar="PATH", help="ONNX file to write")
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        if args.command == "train":
            options = {k: v for k, v in vars(args).items() if k != "command"}
            train(TrainConfig(**options), log=lambda line: print(line, flush=True))
        elif args.command == "evaluate":
            print(evaluate_checkpoint(args.checkpoint, args.data_dir, args.device).summary())
        elif args.command == "predict":
            results = predict_files(
                args.checkpoint, args.files, args.top_k, not args.no_preprocess, args.save_preprocessed, args.device
            )
            print(json.dumps([r.to_dict() for r in results], indent=2) if args.json else format_predictions(results))
            failed = sum(r.error is not None for r in results)
            if failed:
                print(f"seqlstm: error: {failed} of {len(results)} files could not be predicted", file=sys.stderr)
                return 1
        elif args.command == "export":
            print(export_onnx(args.checkpoint, args.onnx).summary())
    except SeqlstmError as e:
        print(f"seqlstm: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("seqlstm: interrupted", file=sys.stderr)
        return 130
    return 0
