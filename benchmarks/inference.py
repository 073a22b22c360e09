"""Inference speed of one checkpoint in every runtime, side by side in one run.

For PyTorch in float32 and bf16 (autocast), PyTorch's dynamic int8 quantization, and ONNX Runtime
on the float32 and the int8 file that `seqlstm export` writes, it prints:
  - the accuracy on the checkpoint's test split,
  - batch-1 latency, p50 and p99 over `--calls` calls (each a different test sample),
  - batch-1000 throughput (sequences/s over `--seconds`),
  - that throughput as a fraction of this machine's matrix-multiply peak in the runtime's number
    format, measured here in the same run: the recurrent core's forward FLOPs per sequence
    (2 x gates x hidden x (inputs + hidden) per layer, direction and step) x throughput / peak;
  - for an LSTM, the throughput its matrix products alone and its gate arithmetic alone would
    allow in bf16: what bounds the batch-1000 figure.
Figures only; nothing passes or fails. Without CKPT it trains the tutorial's model first (2 epochs).

    python benchmarks/inference.py [CKPT] [--data-dir DIR] [--calls 1000] [--seconds 5] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import torch

from provenance import provenance
from seqlstm import TrainConfig, export_onnx, load_checkpoint, train
from seqlstm.data.records import samples_for
from seqlstm.runtime import OnnxRunner

GATES = {"lstm": 4, "gru": 3, "seed": 5}  # weight blocks per cell: the seed cell's four gates and its candidate
BATCH = 1000


def gemm_peak(dtype: torch.dtype, seconds: float = 2.0, m: int = BATCH, k: int = 256, n: int = 512) -> float:
    """GFLOP/s (int8: GOP/s) of an (m, k) x (k, n) product in `dtype`: a recurrent step's shape at batch 1000."""
    if dtype == torch.int8:
        a, b = torch.randint(-128, 127, (m, k), dtype=dtype), torch.randint(-128, 127, (k, n), dtype=dtype)
        multiply = torch._int_mm
    else:
        a, b = torch.randn(m, k).to(dtype), torch.randn(k, n).to(dtype)
        multiply = torch.mm
    for _ in range(10):
        multiply(a, b)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        multiply(a, b)
        count += 1
    return 2 * m * k * n * count / (time.perf_counter() - start) / 1e9


def rate(work, seconds: float = 2.0) -> float:
    """Calls of `work` per second, after a few unmeasured ones."""
    for _ in range(3):
        work()
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        work()
        count += 1
    return count / (time.perf_counter() - start)


def lstm_parts(hparams: dict) -> dict:
    """Sequences/s at batch 1000 that each half of an LSTM core's work alone would allow, in bf16:
    its matrix products (one input product per layer over all steps, then one recurrent product per
    step), and its gate arithmetic (σ, tanh and the cell update per step, as separate operations).
    What a runtime reaches with both is below either."""
    steps = math.ceil(hparams["inputs"]["steps"] / hparams["patch"])
    hidden, inputs, layers = hparams["hidden_size"], hparams["input_size"] * hparams["patch"], hparams["num_layers"]
    bf16 = torch.bfloat16
    state, cell = torch.randn(BATCH, hidden).to(bf16), torch.randn(BATCH, hidden).to(bf16)
    weights = [torch.randn(inputs if layer == 0 else hidden, 4 * hidden).to(bf16) for layer in range(layers)]
    recurrent = torch.randn(hidden, 4 * hidden).to(bf16)
    sequences = [torch.randn(BATCH * steps, inputs if layer == 0 else hidden).to(bf16) for layer in range(layers)]
    gates = torch.randn(BATCH, 4 * hidden).to(bf16)

    def products():
        for layer in range(layers):
            sequences[layer] @ weights[layer]
            for _ in range(steps):
                state @ recurrent

    def arithmetic():
        for _ in range(layers * steps):
            i, f, g, o = gates.chunk(4, dim=1)
            c = torch.sigmoid(f) * cell + torch.sigmoid(i) * torch.tanh(g)
            torch.sigmoid(o) * torch.tanh(c)

    with torch.inference_mode():
        return {"matrix_products_alone": BATCH * rate(products), "gate_arithmetic_alone": BATCH * rate(arithmetic)}


def forward_flops(hparams: dict) -> float:
    """FLOPs of the recurrent core's matrix products for one sequence (the head and gates' arithmetic left out)."""
    steps = math.ceil(hparams["inputs"]["steps"] / hparams["patch"])
    hidden, inputs = hparams["hidden_size"], hparams["input_size"] * hparams["patch"]
    total = 0
    for layer in range(hparams["num_layers"]):
        total += 2 * GATES[hparams["cell"]] * hidden * ((inputs if layer == 0 else hidden) + hidden) * steps
    return total * (2 if hparams["bidirectional"] else 1)


def torch_runner(model: torch.nn.Module, precision: torch.dtype | None = None):
    def run(raw: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        with torch.inference_mode(), torch.autocast("cpu", dtype=precision, enabled=precision is not None):
            return (model(raw) if lengths is None else model(raw, lengths)).float()

    return run


def measure(run, test, calls: int, seconds: float) -> dict:
    inputs, lengths = test.inputs, test.lengths
    logits = torch.cat([run(inputs[i : i + BATCH], None if lengths is None else lengths[i : i + BATCH])
                        for i in range(0, len(inputs), BATCH)])
    accuracy = 100 * float((logits.argmax(1) == test.labels).float().mean())
    one = [(inputs[i % len(inputs)][None], None if lengths is None else lengths[i % len(inputs)][None]) for i in range(calls)]
    for raw, length in one[:20]:
        run(raw, length)
    latencies = []
    for raw, length in one:
        start = time.perf_counter()
        run(raw, length)
        latencies.append(time.perf_counter() - start)
    latencies.sort()
    batch = (inputs[:BATCH], None if lengths is None else lengths[:BATCH])
    run(*batch)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        run(*batch)
        count += 1
    return {"accuracy": accuracy, "p50_ms": 1000 * statistics.median(latencies),
            "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))],
            "throughput": len(batch[0]) * count / (time.perf_counter() - start)}


# name -> (what runs, the number format whose matrix-multiply peak bounds it)
RUNTIMES = {
    "torch float32": torch.float32,
    "torch bf16": torch.bfloat16,
    "torch int8 (dynamic)": torch.int8,
    "onnxruntime float32": torch.float32,
    "onnxruntime int8": torch.int8,
}


def runner(name: str, folder: str, model: torch.nn.Module):
    """The function running the runtime called `name` on raw samples and their lengths."""
    if name.startswith("onnxruntime"):
        kind = name.split()[1]
        return OnnxRunner(f"{folder}/{kind}.onnx", None if model.reads_images else model.inputs.steps).logits
    if name == "torch int8 (dynamic)":  # PyTorch's own int8: dynamic quantization of the core and head
        return torch_runner(torch.ao.quantization.quantize_dynamic(model, {torch.nn.LSTM, torch.nn.GRU, torch.nn.Linear},
                                                                   dtype=torch.qint8))
    return torch_runner(model, torch.bfloat16 if name == "torch bf16" else None)


def measure_alone(name: str, checkpoint: str, folder: str, data_dir: str | None, calls: int, seconds: float) -> dict:
    """`measure` in this process, which runs nothing else: each runtime keeps thread pools whose idle
    threads slow the next runtime measured in the same process (by up to 2x at batch 1, measured)."""
    warnings.simplefilter("ignore")  # torch.ao's quantization warns that it moves to torchao
    model, config = load_checkpoint(checkpoint, "cpu")
    model.eval()
    return measure(runner(name, folder, model), samples_for(config, model, "test", data_dir), calls, seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", nargs="?", help="default: train the tutorial's model first")
    parser.add_argument("--data-dir", help="the dataset's folder (default: SEQLSTM_DATA or the download cache)")
    parser.add_argument("--calls", type=int, default=1000, help="batch-1 calls per runtime (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds of batch-1000 calls per runtime (default: %(default)s)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()

    fresh = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = args.checkpoint
        if checkpoint is None:
            config = TrainConfig(data_dir=args.data_dir, out=f"{folder}/model.ckpt", run_dir=f"{folder}/run")
            checkpoint = str(train(config, log=lambda line: None).checkpoint)
        model, _ = load_checkpoint(checkpoint, "cpu")
        export_onnx(checkpoint, f"{folder}/float32.onnx")
        export_onnx(checkpoint, f"{folder}/int8.onnx", int8=True, max_loss=100, data_dir=args.data_dir)
        with fresh.Pool(1) as pool:
            peaks = {dtype: pool.apply(gemm_peak, (dtype,)) for dtype in (torch.float32, torch.bfloat16, torch.int8)}
            parts = pool.apply(lstm_parts, (model.hparams,)) if model.cell == "lstm" else None
        rows = {}
        for name, dtype in RUNTIMES.items():
            with fresh.Pool(1) as pool:
                rows[name] = pool.apply(measure_alone, (name, checkpoint, folder, args.data_dir, args.calls, args.seconds))
    flops = forward_flops(model.hparams)
    for name, dtype in RUNTIMES.items():
        rows[name]["peak_fraction"] = flops * rows[name]["throughput"] / (peaks[dtype] * 1e9)

    print(f"{Path(checkpoint).name}: {flops / 1e6:.1f} MFLOP of matrix products per sequence; "
          f"{torch.get_num_threads()} threads; matrix-multiply peak ({BATCH}x256x512): "
          + ", ".join(f"{str(d).removeprefix('torch.')} {p:.0f} G/s" for d, p in peaks.items()))
    print(f"{'runtime':22s} {'accuracy':>9s} {'b1 p50 ms':>10s} {'b1 p99 ms':>10s} {'b1000 seq/s':>12s} {'of peak':>8s} {'vs torch fp32':>14s}")
    base = rows["torch float32"]["throughput"]
    for name, row in rows.items():
        print(f"{name:22s} {row['accuracy']:8.2f}% {row['p50_ms']:10.3f} {row['p99_ms']:10.3f} {row['throughput']:12,.0f} "
              f"{row['peak_fraction']:7.0%} {row['throughput'] / base:13.2f}x")
    if parts is not None:
        print(f"bf16 at batch {BATCH}, each half of the LSTM's work alone: matrix products {parts['matrix_products_alone']:,.0f} "
              f"seq/s, gate arithmetic {parts['gate_arithmetic_alone']:,.0f} seq/s")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"provenance": provenance(threads=torch.get_num_threads()), "checkpoint": str(checkpoint),
             "mflop_per_sequence": flops / 1e6, "gemm_peak_g_per_s": {str(d).removeprefix("torch."): p for d, p in peaks.items()},
             "lstm_parts_bf16_seq_per_s": parts, "runtimes": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
