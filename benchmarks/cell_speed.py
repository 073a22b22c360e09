"""Explicit cells against PyTorch's fused ones: one training step (forward + backward) each.

Prints the median time per step of every variant and the ratios, all measured in the same run with
the variants interleaved, so a busy machine slows them alike. Figures only; nothing passes or fails.

    python benchmarks/cell_speed.py [--batch 100] [--repeats 20] [--compile]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from seqlstm.model.cells import SeedRNN, unroll


def seed_per_step_concat(rnn: SeedRNN, x: torch.Tensor) -> torch.Tensor:
    """The seed cell as the equations read, for comparison: both products over [a<t-1>, x<t>] at every step."""
    for k in range(rnn.num_layers):
        w_g, b_g = getattr(rnn, f"weight_gates_l{k}"), getattr(rnn, f"bias_gates_l{k}")
        w_c, b_c = getattr(rnn, f"weight_candidate_l{k}"), getattr(rnn, f"bias_candidate_l{k}")
        a = c = x.new_zeros(x.shape[0], rnn.hidden_size)
        outputs = []
        for x_t in x.unbind(1):
            update, forget, output, relevance = torch.sigmoid(torch.cat([a, x_t], 1) @ w_g.T + b_g).chunk(4, 1)
            c = update * torch.tanh(torch.cat([relevance * a, x_t], 1) @ w_c.T + b_c) + forget * c
            a = output * c
            outputs.append(a)
        x = torch.stack(outputs, 1)
    return x


def step_time(run, x) -> float:
    start = time.perf_counter()
    out = run(x)
    out[:, -1].sum().backward()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--seq", type=int, default=28)
    parser.add_argument("--features", type=int, default=28)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--compile", action="store_true", help="also time the seed cell under torch.compile")
    args = parser.parse_args()

    torch.manual_seed(0)
    device = torch.device(args.device)
    shape = (args.features, args.hidden, args.layers)
    lstm = nn.LSTM(*shape, batch_first=True).to(device)
    gru = nn.GRU(*shape, batch_first=True).to(device)
    seed = SeedRNN(*shape).to(device)
    variants = {
        "lstm fused (nn.LSTM)": lambda x: lstm(x)[0],
        "lstm explicit": lambda x: unroll("lstm", lstm, x)[0],
        "gru fused (nn.GRU)": lambda x: gru(x)[0],
        "gru explicit": lambda x: unroll("gru", gru, x)[0],
        "seed explicit": lambda x: seed(x)[0],
        "seed, concat at every step": lambda x: seed_per_step_concat(seed, x),
    }
    if args.compile:
        compiled = torch.compile(seed)
        start = time.perf_counter()
        step_time(lambda x: compiled(x)[0], torch.rand(args.batch, args.seq, args.features, device=device))
        print(f"torch.compile of the seed cell: first step (compilation) {time.perf_counter() - start:.1f} s")
        variants["seed explicit, torch.compile"] = lambda x: compiled(x)[0]

    x = torch.rand(args.batch, args.seq, args.features, device=device)
    times = {name: [] for name in variants}
    for name, run in variants.items():  # warm-up: first calls allocate and pick kernels
        step_time(run, x)
    for _ in range(args.repeats):
        for name, run in variants.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append(step_time(run, x))
            if device.type == "cuda":
                torch.cuda.synchronize()
    median = {name: statistics.median(t) * 1000 for name, t in times.items()}

    print(f"one training step, batch {args.batch}, seq {args.seq}, {args.features}->{args.hidden} x{args.layers} "
          f"layers, {args.device}, {torch.get_num_threads()} threads, median of {args.repeats}")
    for name, ms in median.items():
        print(f"  {name:32s} {ms:8.1f} ms")
    print(f"  explicit / fused, lstm: {median['lstm explicit'] / median['lstm fused (nn.LSTM)']:.2f}x")
    print(f"  explicit / fused, gru:  {median['gru explicit'] / median['gru fused (nn.GRU)']:.2f}x")
    print(f"  seed / fused lstm:      {median['seed explicit'] / median['lstm fused (nn.LSTM)']:.2f}x")
    print(f"  seed, inputs projected once / concat at every step: "
          f"{median['seed explicit'] / median['seed, concat at every step']:.2f}x")
    if args.compile:
        print(f"  seed compiled / seed eager: "
              f"{median['seed explicit, torch.compile'] / median['seed explicit']:.2f}x")


if __name__ == "__main__":
    main()
