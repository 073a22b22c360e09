"""`seqlstm serve` under measurement: API latency one request at a time, then throughput under load.

Starts `seqlstm serve CKPT --port 0` as a real process on 127.0.0.1 and sends it the page's
requests: MNIST test digits drawn black on white at 280x280, as PNG. Prints the median and 95th
percentile latency of POST /api/predict with the gate traces (what the page asks for when the pen
lifts) and without (the live requests while drawing), then the throughput and error count of
`--requests` requests sent `--concurrency` at a time. Figures only; nothing passes or fails.

    python benchmarks/serve_latency.py CKPT [--data-dir DIR] [--repeats 100] [--requests 200] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import io
import re
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx2
from PIL import Image

from seqlstm import load_dataset

DIGITS = 20


def drawings(data_dir: str | None) -> list[bytes]:
    images = load_dataset("mnist", "test", data_dir).images[:DIGITS].numpy()
    out = []
    for digit in images:
        buffer = io.BytesIO()
        Image.fromarray(255 - digit).resize((280, 280), Image.Resampling.BICUBIC).save(buffer, "PNG")
        out.append(buffer.getvalue())
    return out


def latencies(http: httpx2.Client, bodies: list[bytes], repeats: int, traces: bool) -> list[float]:
    times = []
    for n in range(repeats):
        started = time.perf_counter()
        response = http.post(f"api/predict?traces={str(traces).lower()}", content=bodies[n % len(bodies)],
                             headers={"Content-Type": "image/png"})
        response.json()
        times.append(time.perf_counter() - started)
        response.raise_for_status()
    return times


def under_load(url: str, bodies: list[bytes], requests: int, concurrency: int) -> tuple[float, int]:
    """Seconds for `requests` requests from `concurrency` clients at once, and how many failed."""

    def client(offset: int) -> int:
        failed = 0
        with httpx2.Client(base_url=url, timeout=120) as http:
            for n in range(offset, requests, concurrency):
                response = http.post("api/predict", content=bodies[n % len(bodies)], headers={"Content-Type": "image/png"})
                failed += response.status_code != 200
        return failed

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        failed = sum(pool.map(client, range(concurrency)))
    return time.perf_counter() - started, failed


def describe(name: str, times: list[float]) -> str:
    ms = sorted(1000 * t for t in times)
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    return f"{name}: median {statistics.median(ms):.1f} ms, p95 {p95:.1f} ms ({len(ms)} requests)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", metavar="CKPT")
    parser.add_argument("--data-dir", help="folder with the MNIST files (default: seqlstm's usual search)")
    parser.add_argument("--repeats", type=int, default=100, help="sequential requests per latency figure")
    parser.add_argument("--requests", type=int, default=200, help="requests in the load run")
    parser.add_argument("--concurrency", type=int, default=8, help="clients at once in the load run")
    args = parser.parse_args()

    bodies = drawings(args.data_dir)
    server = subprocess.Popen(
        [sys.executable, "-m", "seqlstm", "serve", args.checkpoint, "--port", "0"], stdout=subprocess.PIPE, text=True
    )
    try:
        url = re.search(r"http://\S+/", server.stdout.readline()).group(0)
        with httpx2.Client(base_url=url, timeout=60) as http:
            latencies(http, bodies, 10, True)  # warm-up: first requests pay for lazy initialisation
            full = latencies(http, bodies, args.repeats, True)
            live = latencies(http, bodies, args.repeats, False)
        print(f"POST /api/predict, a 280x280 PNG drawing, one request at a time, on 127.0.0.1 ({url})")
        print(describe("  with gate traces", full))
        print(describe("  without traces  ", live))
        elapsed, failed = under_load(url, bodies, args.requests, args.concurrency)
        print(
            f"load: {args.requests} requests, {args.concurrency} concurrent, with traces: {elapsed:.2f} s, "
            f"{args.requests / elapsed:.1f} requests/s, {failed} errors"
        )
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
