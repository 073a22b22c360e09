"""Packs (`seqlstm pack`): the round trip from every file kind, atomic writing, and training from disk
exactly as from memory — resumed, under torchrun, and in bounded memory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import TINY_MODEL, run_cli, tiny_task
from seqlstm import ConfigError, DataError, TrainConfig, TrainingInterrupted, evaluate_checkpoint, explain, resume, train
from seqlstm.checkpoint import read_checkpoint
from seqlstm.data import seqfiles
from seqlstm.data.packed import Pack, SplitRule, pack
from seqlstm.data.records import source_for, to_sequences
from seqlstm.data.seqfiles import read_sequences
from seqlstm.errors import OutputError
from seqlstm.model.inputs import InputTransform
from test_distributed import torchrun
from test_trainer import StopAt

def variable_task(n: int = 240, seed: int = 0) -> dict:
    """tiny_task with lengths of 5 to 16 steps (the padding after them NaN, as users leave it)."""
    task = tiny_task(n, seed)
    lengths = np.random.default_rng(seed).integers(5, 17, n)
    task["X"][np.arange(16)[None, :] >= lengths[:, None]] = np.nan
    return {**task, "lengths": lengths}


def write_csv(path: Path, task: dict) -> None:
    """One row a sequence, a header, string labels; shorter sequences end in empty cells."""
    rows = ["label," + ",".join(f"t{i}" for i in range(16))]
    for x, y, length in zip(task["X"][:, :, 0], task["y"], task["lengths"]):
        rows.append(f"class-{y}," + ",".join(repr(float(v)) for v in x[:length]) + "," * (16 - length))
    path.write_text("\n".join(rows) + "\n")


@pytest.fixture
def sources(tmp_path, ucr_dir) -> dict[str, Path]:
    np.savez(tmp_path / "seq.npz", **variable_task())
    write_csv(tmp_path / "seq.csv", variable_task(seed=1))
    return {"ts": ucr_dir / "ItalyPowerDemand_TRAIN.ts", "npz": tmp_path / "seq.npz", "csv": tmp_path / "seq.csv"}


@pytest.mark.parametrize("kind", ["ts", "npz", "csv"])
def test_a_pack_holds_what_the_in_memory_reader_reads(tmp_path, sources, monkeypatch, kind):
    monkeypatch.setattr(seqfiles, "NPZ_CHUNK_BYTES", 1000)  # a .npz is read in many parts
    # Shards of about 2 kB: several files, no sequence across two.
    summary = pack([sources[kind]], tmp_path / "p", shard_bytes=2000)
    raw = read_sequences(sources[kind])
    classes = tuple(str(c) for c in np.unique(raw.labels))
    expected = to_sequences(raw, classes)

    opened = Pack(tmp_path / "p")
    assert len(summary.manifest["shards"]) > 3 and opened.classes == classes
    train_split = opened.split("train")
    assert torch.equal(train_split.inputs[0 : len(train_split)], expected.inputs)
    assert torch.equal(train_split.lengths, expected.lengths) and torch.equal(train_split.labels, expected.labels)
    assert torch.equal(train_split.inputs[7], expected.inputs[7, : expected.lengths[7]])
    # The statistics of one pass are the input transform's, computed from the whole file in memory.
    transform = InputTransform(raw.values.shape[2], kind="sequences", steps=raw.values.shape[1])
    transform.fit(expected)
    stats = summary.manifest["splits"]["train"]
    torch.testing.assert_close(torch.tensor(stats["mean"], dtype=torch.float32), transform.mean, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(torch.tensor(stats["std"], dtype=torch.float32), transform.std, rtol=1e-6, atol=1e-7)
    assert stats["sequences"] == len(raw.labels) and stats["longest"] == raw.values.shape[1]
    assert stats["per_class"] == {c: int((expected.labels == k).sum()) for k, c in enumerate(classes)}
    # Each shard is a plain .npy file that NumPy maps.
    first = np.load(tmp_path / "p" / "values-00000.npy", mmap_mode="r")
    np.testing.assert_array_equal(first[: expected.lengths[0]], expected.inputs[0, : expected.lengths[0]].numpy())


def test_classes_are_named_and_ordered_as_the_files_own(tmp_path, ucr_dir):
    # Integers beyond int64 are names in memory (sorted as text); so are a .ts file's numbers.
    (tmp_path / "big.csv").write_text("99999999999999999999999,1,2\n3,4,5\n10,1,1\n")
    (tmp_path / "small.csv").write_text("3,4,5\n10,1,1\n03,1,2\n")  # 03 is the class 3
    for source in (tmp_path / "big.csv", tmp_path / "small.csv", ucr_dir / "ArrowHead_TRAIN.ts"):
        out = tmp_path / f"pack-{source.stem}"
        expected = [str(c) for c in np.unique(read_sequences(source).labels)]
        assert pack([source], out).manifest["classes"] == expected
    assert Pack(tmp_path / "pack-small").classes == ("3", "10")
    assert Pack(tmp_path / "pack-small").split("train").labels.tolist() == [0, 1, 0]


def test_the_test_rule_gives_each_class_its_share_and_never_its_first(tmp_path):
    rule = SplitRule(0.25, seed=3)
    labels = [f"c{k % 4}" for k in range(400)] + ["rare"] * 3
    chosen = [rule.test(label) for label in labels]
    for name in ("c0", "c1", "c2", "c3"):
        picks = [c for c, label in zip(chosen, labels) if label == name]
        assert sum(picks) == 25 and not picks[0]
    assert not chosen[400]  # the first of a class always trains
    again = SplitRule(0.25, seed=3)
    assert [again.test(label) for label in labels] == chosen
    other = SplitRule(0.25, seed=4)
    assert [other.test(label) for label in labels] != chosen

    np.savez(tmp_path / "a.npz", **tiny_task(90))
    summary = pack([tmp_path / "a.npz"], tmp_path / "p", test_size=0.2, seed=1)
    splits = summary.manifest["splits"]
    assert (splits["train"]["sequences"], splits["test"]["sequences"]) == (72, 18)
    assert splits["test"]["per_class"] == {"0": 6, "1": 6, "2": 6}


def test_bad_packs_are_refused_with_what_to_do(tmp_path, sources, cli):
    np.savez(tmp_path / "three.npz", X=np.zeros((4, 5, 3)), y=[0, 1, 0, 1])
    np.savez(tmp_path / "unlabelled.npz", X=np.zeros((4, 5, 2)))
    np.savez(tmp_path / "one.npz", X=np.zeros((4, 5, 2)), y=[1, 1, 1, 1])
    np.savez(tmp_path / "bad.npz", X=np.array([[[0.0, 1.0]], [[np.inf, 0.0]]]), y=[0, 1])
    np.savez(tmp_path / "four.npz", X=np.zeros((3, 4, 5, 6)), y=[0, 1, 0])
    cases = {
        (str(sources["npz"]), str(tmp_path / "three.npz")): "three.npz: sequence 0 has 3 features per step but the sequences packed before it have 2",
        (str(tmp_path / "unlabelled.npz"),): "unlabelled.npz: holds no labels",
        (str(tmp_path / "one.npz"),): "every sequence has the label '1'",
        (str(tmp_path / "bad.npz"),): "bad.npz: X has 1 NaN or infinite value(s)",
        (str(tmp_path / "nothing.ts"),): "nothing.ts: no such file",
        (str(tmp_path / "four.npz"),): "four.npz: X has shape (3, 4, 5, 6); expected (N, T, F)",
    }
    for files, message in cases.items():
        ran = cli("pack", *files, "--out", str(tmp_path / "out"))
        assert ran.returncode == 1 and message in ran.stderr, ran.stderr
        assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()
    ran = cli("pack", str(sources["npz"]), "--test-size", "1.5", "--out", str(tmp_path / "out"))
    assert "--test-size must be a fraction between 0 and 1, got 1.5" in ran.stderr
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "mine.txt").write_text("the user's")
    ran = cli("pack", str(sources["npz"]), "--out", str(tmp_path / "taken"))
    assert ran.returncode == 1 and "taken exists; a pack is written to a new folder" in ran.stderr
    assert (tmp_path / "taken" / "mine.txt").read_text() == "the user's"
    (tmp_path / "mine.partial").mkdir()  # a folder of the user's where a pack would write its unfinished one
    with pytest.raises(OutputError, match="mine.partial exists and is not an unfinished pack of seqlstm's; move it away"):
        pack([sources["npz"]], tmp_path / "mine")
    ran = cli("train", "--dataset", str(tmp_path / "taken"))
    assert ran.returncode == 1 and "taken: a folder, but not one seqlstm pack wrote (it has no pack.json)" in ran.stderr


@pytest.mark.e2e
def test_an_interrupted_pack_leaves_nothing_that_looks_finished(tmp_path):
    task = tiny_task(400_000)  # 51 MB of values in short sequences: packing takes seconds
    np.savez(tmp_path / "big.npz", **task)
    out, partial = tmp_path / "p", tmp_path / "p.partial"
    for signum in (signal.SIGKILL, signal.SIGINT):
        # Ctrl+C reaches the process even where this test's own runner ignores it (a shell's background job).
        process = subprocess.Popen([sys.executable, "-m", "seqlstm", "pack", str(tmp_path / "big.npz"), "--out", str(out)],
                                   stderr=subprocess.PIPE, text=True,
                                   preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        assert process.stderr.readline() == "10,000 sequences\n"  # packing is under way
        process.send_signal(signum)
        assert process.wait(timeout=60) == (-9 if signum == signal.SIGKILL else 130)
        assert not out.exists()
        if signum == signal.SIGKILL:
            # Killed outright, the half-written folder stays, and is refused.
            assert partial.is_dir() and not (partial / "pack.json").exists()
            ran = run_cli("train", "--dataset", str(partial))
            assert ran.returncode == 1 and "an unfinished pack (its writing was interrupted); run seqlstm pack again" \
                in ran.stderr, ran.stderr
        else:
            assert not partial.exists()  # Ctrl+C clears its own
    finished = run_cli("pack", str(tmp_path / "big.npz"), "--out", str(out))
    assert finished.returncode == 0, finished.stderr
    assert "packed 400,000 train sequences" in finished.stdout
    assert Pack(out).split("train").lengths.sum() == 400_000 * 16


def tiny_config(tmp_path: Path, name: str, **settings) -> TrainConfig:
    settings = {"hidden_size": 8, "num_layers": 1, "conv": 0, "precision": "fp32", "max_steps": 30, "patience": 0,
                **settings}
    return TrainConfig(out=str(tmp_path / f"{name}.ckpt"), run_dir=str(tmp_path / name), **settings)


@pytest.mark.parametrize("val_size", [0, 60, 150])  # the pack's sums, less the held-out ones, or those of the kept ones
def test_training_from_a_pack_ends_with_the_weights_training_in_memory_does(tmp_path, val_size):
    np.savez(tmp_path / "train.npz", **variable_task(240))
    np.savez(tmp_path / "test.npz", **variable_task(90, seed=5))
    pack([tmp_path / "train.npz"], tmp_path / "p", test=[tmp_path / "test.npz"], shard_bytes=3000)
    settings = dict(val_size=val_size, eval_every=10, batch_size=20)
    packed = train(tiny_config(tmp_path, "packed", dataset=str(tmp_path / "p"), **settings), log=lambda line: None)
    memory = train(tiny_config(tmp_path, "memory", dataset=str(tmp_path / "train.npz"),
                               test_dataset=str(tmp_path / "test.npz"), **settings), log=lambda line: None)
    a, b = read_checkpoint(packed.checkpoint)["state_dict"], read_checkpoint(memory.checkpoint)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert packed.losses == memory.losses and packed.evaluation.to_dict() == memory.evaluation.to_dict()
    assert packed.evaluation.total == 90


def test_evaluate_and_explain_read_a_pack(tmp_path, ucr_dir, cli):
    name = "ItalyPowerDemand"
    pack([ucr_dir / f"{name}_TRAIN.ts"], tmp_path / "p", test=[ucr_dir / f"{name}_TEST.ts"])
    result = train(tiny_config(tmp_path, "m", dataset=str(tmp_path / "p")), log=lambda line: None)
    assert evaluate_checkpoint(result.checkpoint, device="cpu").to_dict() == result.evaluation.to_dict()
    # Any pack of the same classes: all its sequences.
    again = evaluate_checkpoint(result.checkpoint, device="cpu", dataset=tmp_path / "p")
    assert again.total == 67 + 1029
    explained = explain(result.checkpoint, 5, out=tmp_path / "g.png", device="cpu")
    assert explained.inputs.shape == (24, 1)
    pytest.importorskip("onnxruntime")
    exported = cli("export", str(result.checkpoint), "--onnx", str(tmp_path / "m.onnx"), "--int8")
    assert exported.returncode == 0, exported.stderr
    assert f"against {result.evaluation.accuracy:.2f} % in float32" in exported.stdout
    # A pack is packed once: one written again in its place is not the one trained on.
    os.rename(tmp_path / "p", tmp_path / "old")
    pack([ucr_dir / f"{name}_TRAIN.ts"], tmp_path / "p", test=[ucr_dir / f"{name}_TEST.ts"])
    ran = cli("evaluate", str(result.checkpoint))
    assert ran.returncode == 1 and "p: not the pack the model was trained on (it was packed again since)" in ran.stderr
    with pytest.raises(ConfigError, match="is a pack, which holds its own test split"):
        train(tiny_config(tmp_path, "x", dataset=str(tmp_path / "p"), test_size=0.3))
    with pytest.raises(DataError, match="has no test split"):
        pack([ucr_dir / f"{name}_TRAIN.ts"], tmp_path / "only-train")
        evaluate_checkpoint(train(tiny_config(tmp_path, "y", dataset=str(tmp_path / "only-train"))).checkpoint)
    assert source_for(tmp_path / "p").name == "p"


def test_predict_and_the_estimator_read_a_pack(tmp_path, ucr_dir, cli):
    pytest.importorskip("sklearn")
    from seqlstm import SequenceClassifier

    name = "ItalyPowerDemand"
    pack([ucr_dir / f"{name}_TRAIN.ts"], tmp_path / "p", test=[ucr_dir / f"{name}_TEST.ts"])
    opened = Pack(tmp_path / "p")
    settings = dict(hidden_size=16, num_layers=1, conv=0, max_steps=150, device="cpu", precision="fp32")
    packed = SequenceClassifier(**settings).fit(opened.split("train"))
    raw = read_sequences(ucr_dir / f"{name}_TRAIN.ts")
    memory = SequenceClassifier(**settings).fit(raw.values, raw.labels, raw.lengths)
    test = opened.split("test")
    assert packed.classes_.tolist() == memory.classes_.tolist() == ["1", "2"]
    np.testing.assert_array_equal(packed.predict_proba(test), memory.predict_proba(test.inputs[0 : len(test)].numpy()))
    assert packed.score(test, test.names) > 0.85
    with pytest.raises(ValueError, match="carry their own labels and lengths"):
        SequenceClassifier(**settings).fit(test, test.names)

    packed.save(tmp_path / "m.ckpt")
    ran = cli("predict", str(tmp_path / "m.ckpt"), str(tmp_path / "p"), "--json", "--top-k", "1")
    answers = json.loads(ran.stdout)
    assert ran.returncode == 0 and len(answers) == 67 + 1029
    assert answers[67]["file"] == f"{tmp_path / 'p'}[67]"
    expected = packed.predict(test)
    assert [a["top"][0]["label"] for a in answers[67:]] == expected.tolist()


@pytest.mark.parametrize("stop_at", [13, 20])  # between checkpoints (mid-epoch), and on one
def test_a_streamed_run_interrupted_and_resumed_ends_as_the_unbroken_one(tmp_path, stop_at):
    np.savez(tmp_path / "train.npz", **variable_task(240))
    pack([tmp_path / "train.npz"], tmp_path / "p", test_size=0.25, shard_bytes=3000)
    settings = dict(dataset=str(tmp_path / "p"), val_size=30, batch_size=20, checkpoint_every=10, max_steps=25)
    unbroken = train(tiny_config(tmp_path, "unbroken", **settings), log=lambda line: None)
    with pytest.raises(TrainingInterrupted) as stopped:
        train(tiny_config(tmp_path, "broken", **settings), log=lambda line: None, recorders=[StopAt(stop_at)])
    resumed = resume(stopped.value.checkpoint, log=lambda line: None)
    assert resumed.losses == unbroken.losses
    a, b = read_checkpoint(unbroken.checkpoint)["state_dict"], read_checkpoint(resumed.checkpoint)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.e2e
@pytest.mark.slow
def test_two_processes_read_disjoint_halves_of_each_batch_of_a_pack(tmp_path):
    np.savez(tmp_path / "train.npz", **variable_task(240))
    pack([tmp_path / "train.npz"], tmp_path / "p", test_size=0.2, shard_bytes=3000)
    args = ("train", "--dataset", str(tmp_path / "p"), *TINY_MODEL, "--max-steps", "12", "--batch-size", "16",
            "--val-size", "30", "--patience", "0", "--eval-every", "6")
    one = tmp_path / "one"
    one.mkdir()
    single = subprocess.run([sys.executable, str(Path(__file__).with_name("worker.py")), *args, "--run-dir", "r",
                             "--out", "one.ckpt"], cwd=one, capture_output=True, text=True,
                            env={**os.environ, "SEQLSTM_TEST_READS": str(one)})
    assert single.returncode == 0, single.stderr
    two = torchrun(tmp_path, *args, "--run-dir", "r", "--out", "two.ckpt", env={"SEQLSTM_TEST_READS": str(tmp_path)})
    assert two.returncode == 0, two.stderr

    whole = json.loads((one / "reads0.json").read_text())
    rank0, rank1 = (json.loads((tmp_path / f"reads{r}.json").read_text()) for r in (0, 1))
    assert len(whole) == len(rank0) == len(rank1) == 12  # the batch after the last step is not read ahead
    for batch, first, second in zip(whole, rank0, rank1):
        assert len(first) == len(second) == len(batch) // 2 and not set(first) & set(second)
        assert sorted(first + second) == sorted(batch)
    a, b = read_checkpoint(one / "one.ckpt"), read_checkpoint(tmp_path / "two.ckpt")
    for name, weights in a["state_dict"].items():
        assert (weights - b["state_dict"][name]).abs().max() <= 1e-5, name
    assert a["metrics"]["test_accuracy"] == b["metrics"]["test_accuracy"]


# Under this limit on the memory a process may allocate (RLIMIT_DATA; PyTorch and a training run
# take about 470 MB), a pack three times its size is trained on, and its training split cannot be
# read into memory.
LIMIT_MB = 600
CHILD = textwrap.dedent("""
    import resource, sys
    import numpy as np
    limit = {limit} << 20
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    from seqlstm import TrainConfig, train
    from seqlstm.data.packed import Pack
    result = train(TrainConfig(dataset=sys.argv[1], out="m.ckpt", run_dir="run", max_steps=4, val_size=0, patience=0,
                               hidden_size=32, conv=0), log=print)
    split = Pack(sys.argv[1]).split("train")
    try:
        split.inputs[0 : len(split)]
        print("read whole")
    except MemoryError:
        print("too large to read whole")
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent (this test) across exec.
    status = open("/proc/self/status").read()
    print("peak resident MB", int(status.split("VmHWM:")[1].split()[0]) // 1024)
""")


@pytest.mark.e2e
@pytest.mark.slow
def test_a_pack_three_times_larger_than_the_memory_limit_trains_under_it(tmp_path):
    rng = np.random.default_rng(0)
    n, steps, features = 30_000, 1000, 16  # 1.92 GB of float32 values
    x = rng.standard_normal((n, steps, features), dtype=np.float32)
    y = np.arange(n) % 4
    np.savez(tmp_path / "big.npz", X=x, y=y)
    np.savez(tmp_path / "test.npz", X=x[:64], y=y[:64])
    del x
    summary = pack([tmp_path / "big.npz"], tmp_path / "p", test=[tmp_path / "test.npz"])
    (tmp_path / "big.npz").unlink()
    assert sum(s["rows"] for s in summary.manifest["shards"]) * features * 4 > 3 * LIMIT_MB << 20
    ran = subprocess.run([sys.executable, "-c", CHILD.format(limit=LIMIT_MB), str(tmp_path / "p")], cwd=tmp_path,
                         capture_output=True, text=True, timeout=600)
    assert ran.returncode == 0, ran.stderr
    assert "Test Accuracy of the model on the 64 test sequences" in ran.stdout
    assert "too large to read whole" in ran.stdout
    assert int(ran.stdout.split("peak resident MB")[1]) < LIMIT_MB
