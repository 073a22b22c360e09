"""Are the attributions faithful? The deletion check on a checkpoint's test split.

For the first `--samples` test samples: integrated gradients toward each predicted class
(`seqlstm.attribute`), their completeness error, then the predicted class's probability as the
most attributed steps are masked (set to the baseline) against the same number of random steps
(`seqlstm.attribution.deletion`). Prints both mean curves and their areas (lower: falls faster).
Figures only; nothing passes or fails.

    python benchmarks/faithfulness.py CKPT [--data-dir DIR] [--samples 100] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from provenance import provenance
from seqlstm import load_checkpoint
from seqlstm.attribution import attribute, deletion
from seqlstm.data.records import samples_for


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--data-dir", help="an image set's folder (default: SEQLSTM_DATA or the download cache)")
    parser.add_argument("--samples", type=int, default=100, help="test samples to explain (default: %(default)s)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()

    model, config = load_checkpoint(args.checkpoint, "cpu")
    test = samples_for(config, model, "test", args.data_dir)
    raw = test.inputs[: args.samples]
    lengths = None if test.lengths is None else test.lengths[: args.samples]
    start = time.perf_counter()
    attribution = attribute(model, raw, lengths)
    took = time.perf_counter() - start
    check = deletion(model, raw, lengths, attribution)
    relative = (attribution.error.abs() / attribution.gap.abs().clamp(min=1e-6)).sort().values
    areas = check.areas()

    print(f"{Path(args.checkpoint).name} ({config.dataset}): {len(raw)} test samples, attributed in {took:.1f} s")
    print(f"completeness error, relative to the logit's change: median {float(relative.median()):.2%}, "
          f"90th percentile {float(relative[int(0.9 * (len(relative) - 1))]):.2%}, worst {float(relative[-1]):.2%}")
    print(f"{'steps masked':36s}" + " ".join(f"{float(f):5.0%}" for f in check.fractions))
    print(f"{'P(predicted), most attributed first':36s}" + " ".join(f"{float(v):5.3f}" for v in check.attributed.mean(0)))
    print(f"{'P(predicted), in random orders':36s}" + " ".join(f"{float(v):5.3f}" for v in check.random.mean(0)))
    print(f"area under the curve: most attributed first {areas[0]:.3f}, random {areas[1]:.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "provenance": provenance(threads=torch.get_num_threads()), "checkpoint": args.checkpoint,
            "dataset": config.dataset, "samples": len(raw), "completeness_error_relative_median": float(relative.median()),
            "completeness_error_relative_worst": float(relative[-1]), "fractions": check.fractions.tolist(),
            "attributed": check.attributed.mean(0).tolist(), "random": check.random.mean(0).tolist(),
            "area_attributed": areas[0], "area_random": areas[1]}, indent=2) + "\n")


if __name__ == "__main__":
    main()
