"""Fuzzed inputs, seeded and bounded: mutated .npz, .ts, .csv, IDX and checkpoint files each give a
clear error (a SeqlstmError: one line, exit code 1 from the CLI) — never another exception, and a
damaged checkpoint never loads. Hypothesis draws the mutations; `derandomize` makes every run the same."""

from __future__ import annotations

import io
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seqlstm import CheckpointError, LSTMClassifier, SeqlstmError, TrainConfig, load_checkpoint, read_sequences, save_checkpoint
from seqlstm.data.idx import encode_idx, parse_idx, read_bytes

CASES = 60  # per format: five formats, 300 cases in all
SEEDED = settings(max_examples=CASES, derandomize=True, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
COUNTS: Counter = Counter()


def npz_file() -> bytes:
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, X=rng.normal(size=(6, 9, 2)).astype(np.float32), y=np.array(list("abcabc")),
                        lengths=np.array([9, 3, 5, 9, 1, 7]))
    return buffer.getvalue()


TS = """# a small file
@problemName tiny
@timeStamps false
@missing false
@univariate false
@dimensions 2
@equalLength false
@classLabel true up down
@data
1.0,2.0,3.0:4.0,5.0,6.0:up
0.5,0.25:1.5,2.5:down
3,2,1,0:0,1,2,3:up
"""
CSV = "label,t0,t1,t2,t3\nup,1,2,3,4\ndown,4,3,2,1\nup,1.5,2.5,,\n"
BASES = {
    "npz": npz_file(),
    "ts": TS.encode(),
    "csv": CSV.encode(),
    "idx": encode_idx(np.arange(2 * 5 * 5, dtype=np.uint8).reshape(2, 5, 5)),
}


def checkpoint_file() -> tuple[bytes, dict]:
    torch.manual_seed(0)
    model = LSTMClassifier(3, hidden_size=4, num_layers=1, num_classes=2, inputs=dict(kind="sequences", steps=5))
    with tempfile.TemporaryDirectory() as folder:
        path = save_checkpoint(Path(folder) / "m.ckpt", model, TrainConfig(dataset="x.npz", hidden_size=4, num_layers=1))
        return path.read_bytes(), model.state_dict()


CHECKPOINT, WEIGHTS = checkpoint_file()


@st.composite
def mutated(draw, base: bytes) -> bytes:
    """`base` with a few bytes changed, a slice removed or repeated, or cut short."""
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "byte", "cut", "delete", "repeat"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "byte" and data:
            data[at] = draw(st.sampled_from([0, 9, 10, 44, 58, 63, 64, 255, 0x80, ord("e"), ord("-")]))
        elif kind == "cut":
            del data[at:]
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 16))]
        else:
            data[at:at] = data[at : at + draw(st.integers(1, 16))]
    return bytes(data)


def read(kind: str, data: bytes):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"fuzzed.{kind}"
        path.write_bytes(data)
        if kind == "idx":
            return parse_idx(read_bytes(path), str(path))
        return read_sequences(path)


@pytest.mark.parametrize("kind", list(BASES))
def test_mutated_data_files_are_read_or_refused_with_a_clear_error(kind):
    @SEEDED
    @given(mutated(BASES[kind]))
    def check(data):
        COUNTS[kind, "cases"] += 1
        try:
            read(kind, data)
        except SeqlstmError as e:
            assert "\n" not in str(e).strip(), str(e)
            COUNTS[kind, "clear errors"] += 1

    check()
    print(f"fuzz {kind}: {COUNTS[kind, 'cases']} cases, {COUNTS[kind, 'clear errors']} clear errors, 0 tracebacks")
    assert COUNTS[kind, "cases"] >= CASES


def test_mutated_checkpoints_never_load_damaged():
    @SEEDED
    @given(mutated(CHECKPOINT))
    def check(data):
        COUNTS["cases"] += 1
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "fuzzed.ckpt"
            path.write_bytes(data)
            try:
                model, _ = load_checkpoint(path)
            except CheckpointError:
                COUNTS["clear errors"] += 1
                return
        # It loaded: the change missed everything the checkpoint holds (zip bookkeeping), never a weight.
        for name, weight in WEIGHTS.items():
            assert torch.equal(model.state_dict()[name], weight), name

    check()
    print(f"fuzz checkpoints: {COUNTS['cases']} cases, {COUNTS['clear errors']} clear errors, 0 tracebacks")
    assert COUNTS["clear errors"] >= CASES // 2


@pytest.mark.parametrize("kind", ["npz", "ts", "csv"])
def test_the_command_line_gives_one_line_and_exit_code_1(tmp_path, kind, cli):
    """A few of the cases through the CLI itself: the error is one line, never a traceback."""
    rng = np.random.default_rng(1)
    base = bytearray(BASES[kind])
    refused = 0
    for case in range(2):
        data = bytearray(base)
        cut = int(rng.integers(len(data) // 3, len(data)))
        data[cut // 2] ^= 0xFF
        (tmp_path / f"bad.{kind}").write_bytes(bytes(data[:cut]))
        try:
            read_sequences(tmp_path / f"bad.{kind}")
            continue  # this mutation happens to leave a readable file
        except SeqlstmError:
            pass
        done = cli("train", "--dataset", f"bad.{kind}", "--max-steps", "1", cwd=tmp_path)
        assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
        assert done.stderr.count("\n") == 1 and done.stderr.startswith("seqlstm: error: "), done.stderr
        refused += 1
    assert refused, f"no mutation of the {kind} file was refused: the command line was not tried"
