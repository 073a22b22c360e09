"""Packed datasets: labelled sequences on disk, read a batch at a time, for data larger than memory.

`pack` reads `.ts`, `.csv` and `.npz` files one sequence at a time into a folder:

    pack.json            what the pack holds: features, classes, shards, and per split its size,
                         lengths, class counts and per-feature sums (written last)
    values-00000.npy     float32 (rows, features): sequences back to back, no padding; each shard a
    values-00001.npy     plain .npy file, so `np.load(path, mmap_mode="r")` maps it
    train.npy, test.npy  int64 (N, 4) per split: shard, first row, length, class index

Why plain `.npy` shards: they are what NumPy and PyTorch read natively, a sequence is one
contiguous run of rows, and nothing beyond NumPy is needed. Arrow or zarr would add a dependency
and a chunking layer for what is one offset and one length per sequence.

Why a batch is read with positioned reads (`os.preadv`) into its padded array rather than through
a memory map: pages of a mapped file that a process has touched count in its resident memory until
the kernel wants them back, so training over a mapped 10 GB pack shows gigabytes resident;
positioned reads go through the page cache alone, and the process holds only its batches.

The folder is written as `<out>.partial` and renamed into place when complete, so an interrupted
pack never leaves a folder that looks finished; a later pack to the same place clears it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import time
import uuid
import zlib
from array import array
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch

from ..config import SHARD_MB
from ..errors import ConfigError, DataError, OutputError
from .seqfiles import SUPPORTED, label_array, sequence_cases
from .sequences import Sequences

log = logging.getLogger(__name__)

MANIFEST = "pack.json"
FORMAT = "seqlstm-pack"
VERSION = 1
PARTIAL = ".partial"
MARKER = ".seqlstm-packing"  # inside a folder being packed: what a later pack may clear
SHARD_BYTES = SHARD_MB << 20
# The .npy header every shard starts with, padded to this size so that it can be written when
# the shard is closed (its row count known) and the values start 64-byte aligned.
HEADER_BYTES = 128
# Index columns.
SHARD, ROW, LENGTH, LABEL = range(4)
# Bytes of values a statistics pass reads at a time.
CHUNK_BYTES = 64 << 20


# --- writing ----------------------------------------------------------------------------------


@dataclass
class PackSummary:
    """What `pack` wrote: the folder and its manifest (pack.json's contents)."""

    path: Path
    manifest: dict
    bytes_read: int  # of the source files
    seconds: float

    def describe(self) -> str:
        """What was packed, for the user."""
        m = self.manifest
        splits = ", ".join(f"{s['sequences']:,} {name}" for name, s in m["splits"].items())
        train = m["splits"]["train"]
        values = sum(s["rows"] for s in m["shards"]) * m["features"] * 4
        return (f"packed {splits} sequences of {m['features']} feature{'s' if m['features'] > 1 else ''} and "
                f"{train['shortest']:,} to {train['longest']:,} steps, {len(m['classes'])} classes, into {self.path}: "
                f"{len(m['shards'])} shard{'s' if len(m['shards']) > 1 else ''}, {values / 1e6:,.1f} MB of values; "
                f"read {self.bytes_read / 1e6:,.1f} MB in {self.seconds:.1f} s ({self.bytes_read / 1e6 / self.seconds:,.1f} MB/s)")


def pack(sources: Iterable[str | os.PathLike], out: str | os.PathLike, test: Iterable[str | os.PathLike] = (),
         test_size: float | None = None, seed: int = 0, label_column: str | int | None = None,
         shard_bytes: int = SHARD_BYTES, progress: Callable[[int], None] | None = None) -> PackSummary:
    """Pack the labelled sequences of `sources` (files or folders of `.ts`, `.csv`, `.npz` files)
    into the folder `out`, reading one sequence at a time.

    Args:
        sources: the training sequences' files, or folders whose files of those kinds are taken in name order.
        out: the pack's folder; must not exist (nothing is ever overwritten).
        test: files (or folders) of test sequences; or
        test_size: the share of each class's sequences put into the test split, by a rule seeded
            with `seed` (see `SplitRule`); neither: the pack has a training split only.
        label_column: a `.csv` file's label column, as `read_sequences` takes it.
        shard_bytes: about this many bytes of values per shard file.
        progress: called with the number of sequences packed so far, every 10,000.
    Returns:
        PackSummary. Raises DataError naming the file and place of a bad sequence, ConfigError
        for bad arguments, OutputError when `out` exists; an interrupted pack leaves no `out`.
    """
    start = time.perf_counter()
    out = Path(out)
    train_files, test_files = files_of(sources, "SOURCE"), files_of(test, "--test")
    if not train_files:
        raise ConfigError("no source files to pack; give .ts, .csv or .npz files, or folders of them")
    if test_files and test_size is not None:
        raise ConfigError("give --test files or --test-size, not both")
    if test_size is not None and not 0 < test_size < 1:
        raise ConfigError(f"--test-size must be a fraction between 0 and 1, got {test_size}")
    if out.exists():
        raise OutputError(f"{out} exists; a pack is written to a new folder: choose another --out, or remove it")
    partial = out.with_name(out.name + PARTIAL)
    if partial.exists():
        if not (partial / MARKER).is_file():
            raise OutputError(f"{partial} exists and is not an unfinished pack of seqlstm's; move it away")
        shutil.rmtree(partial)  # an earlier pack to `out` that was interrupted
    try:
        partial.mkdir(parents=True)
    except OSError as e:
        raise OutputError(f"cannot create {partial}: {e.strerror or e}") from None
    (partial / MARKER).touch()
    writer = Writer(partial, shard_bytes, test_size, seed)
    try:
        for split, files in (("train", train_files), ("test", test_files)):
            for path in files:
                writer.add_file(path, split, label_column, progress)
        manifest = writer.finish([str(p.resolve()) for p in train_files], [str(p.resolve()) for p in test_files])
        (partial / MARKER).unlink()
        os.rename(partial, out)
        sync_folder(out.parent)  # the rename itself on the disk
    except BaseException:
        writer.close()
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return PackSummary(out, manifest, writer.bytes_read, time.perf_counter() - start)


def sync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def files_of(paths: Iterable[str | os.PathLike], what: str) -> list[Path]:
    """The files `paths` name: files as given, folders replaced by their supported files in name order."""
    found = []
    for path in map(Path, paths):
        if path.is_dir():
            inside = sorted(p for p in path.iterdir() if p.suffix.lower() in SUPPORTED and p.is_file())
            if not inside:
                raise DataError(f"{what} {path}: the folder holds no {', '.join(SUPPORTED)} files")
            found += inside
        elif path.is_file() or path.suffix.lower() in SUPPORTED:
            found.append(path)  # a missing file is reported by the reader, with its name
        else:
            raise DataError(f"{what} {path}: no such file or folder")
    return found


class SplitRule:
    """Which sequences go to the test split: of the k-th sequence of a class (k from 0), the test
    split takes it when floor((k + 1) f + u) > floor(k f + u), for the share f and an offset u drawn
    for the class from `seed` and its label. Every class gets its share within one sequence, the
    first of each class trains, and the rule needs no look ahead: packs are read once."""

    def __init__(self, share: float, seed: int):
        self.share, self.seed = share, seed
        self.seen: dict[str, int] = {}
        self.offsets: dict[str, float] = {}

    def test(self, label: str) -> bool:
        k = self.seen.get(label, 0)
        self.seen[label] = k + 1
        if label not in self.offsets:
            draw = np.random.default_rng([self.seed, zlib.crc32(label.encode())]).random()
            self.offsets[label] = draw * (1 - self.share)  # u < 1 - f: the first never goes to test
        u = self.offsets[label]
        return math.floor((k + 1) * self.share + u) > math.floor(k * self.share + u)


class Moments:
    """Per-feature count, sum and sum of squares of real steps, in float64."""

    def __init__(self, features: int):
        self.count = 0
        self.total = np.zeros(features)
        self.squares = np.zeros(features)

    def add(self, values: np.ndarray) -> None:
        """Count float32 values (steps, features)."""
        wide = values.astype(np.float64)
        self.count += len(wide)
        self.total += wide.sum(axis=0)
        self.squares += np.square(wide).sum(axis=0)


class Writer:
    """Appends sequences to the shards of a pack being written, and keeps each split's index."""

    def __init__(self, folder: Path, shard_bytes: int, test_size: float | None, seed: int):
        self.folder, self.shard_bytes = folder, shard_bytes
        self.rule = None if test_size is None else SplitRule(test_size, seed)
        self.test_size, self.seed = test_size, seed
        self.features: int | None = None
        self.shards: list[dict] = []
        self.file = None
        self.rows = 0  # in the open shard
        self.label_ids: dict[str, int] = {}
        self.text_labels = False  # a .ts file's labels are names, whatever they look like (as read_sequences keeps them)
        self.index = {split: [array("q") for _ in range(4)] for split in ("train", "test")}
        self.moments: dict[str, Moments] = {}
        self.bytes_read = 0
        self.sequences = 0

    def add_file(self, path: Path, split: str, label_column, progress) -> None:
        """Append every sequence of the file at `path` to `split` (or, under a test rule, to either)."""
        self.text_labels |= path.suffix.lower() == ".ts"
        count = 0
        for values, label in sequence_cases(path, label_column):
            if label is None:
                raise DataError(f"{path}: holds no labels; a pack is of labelled sequences (y in a .npz, @classLabel "
                                "in a .ts, a label column in a .csv)")
            values = np.ascontiguousarray(values, dtype="<f4")
            if self.features is None:
                self.features = values.shape[1]
                self.moments = {s: Moments(self.features) for s in ("train", "test")}
            if values.shape[1] != self.features:
                raise DataError(f"{path}: sequence {count} has {values.shape[1]} features per step but the sequences "
                                f"packed before it have {self.features}; every sequence of a pack needs the same features")
            name = str(label)
            to = "test" if self.rule is not None and self.rule.test(name) else split
            self.append(values, self.label_ids.setdefault(name, len(self.label_ids)), to)
            count += 1
            self.sequences += 1
            if progress is not None and self.sequences % 10_000 == 0:
                progress(self.sequences)
        self.bytes_read += path.stat().st_size

    def append(self, values: np.ndarray, label: int, split: str) -> None:
        if self.file is None or self.rows * self.features * 4 >= self.shard_bytes:
            self.open_shard()
        self.file.write(values)  # C-contiguous float32: written from its buffer, not copied
        for column, value in zip(self.index[split], (len(self.shards) - 1, self.rows, len(values), label)):
            column.append(value)
        self.rows += len(values)
        self.moments[split].add(values)

    def open_shard(self) -> None:
        self.close_shard()
        name = f"values-{len(self.shards):05d}.npy"
        self.file = open(self.folder / name, "wb")
        self.file.write(b"\0" * HEADER_BYTES)  # the header, once the row count is known
        self.shards.append({"file": name, "rows": 0})
        self.rows = 0

    def close_shard(self) -> None:
        if self.file is None:
            return
        self.file.seek(0)
        self.file.write(npy_header((self.rows, self.features)))
        self.file.flush()
        os.fsync(self.file.fileno())  # on the disk before pack.json says the shard is complete
        self.file.close()
        self.file = None
        self.shards[-1]["rows"] = self.rows

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None

    def finish(self, train_sources: list[str], test_sources: list[str]) -> dict:
        """Close the last shard, write the index files and pack.json; return pack.json's contents."""
        self.close_shard()
        if not len(self.index["train"][0]):
            raise DataError("no training sequences: every sequence went to the test split; give more sequences, "
                            "or a smaller --test-size")
        names = list(self.label_ids)
        # Sorted as a file's labels are (label_array, then np.unique): numerically when every one is an
        # int64, except from .ts files, whose labels are names.
        labels = np.array(names, dtype=str) if self.text_labels else label_array(names)
        classes = [str(c) for c in np.unique(labels)]
        if len(classes) < 2:
            raise DataError(f"every sequence has the label {classes[0]!r}; with one class only there is nothing to "
                            "learn: a classifier needs at least two classes to tell apart")
        # Class indices by the sorted classes, as a file read into memory numbers them.
        to_class = np.array([classes.index(str(v)) for v in labels], dtype=np.int64)  # "007" is class "7", as in memory
        splits = {}
        for split, columns in self.index.items():
            if not len(columns[0]):
                continue
            index = np.stack([np.frombuffer(c, dtype=np.int64) for c in columns], axis=1)
            index[:, LABEL] = to_class[index[:, LABEL]]
            with open(self.folder / f"{split}.npy", "wb") as f:
                np.save(f, index)
                f.flush()
                os.fsync(f.fileno())
            splits[split] = split_summary(index, self.moments[split], classes)
        manifest = {
            "format": FORMAT, "version": VERSION, "id": uuid.uuid4().hex,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "features": self.features, "dtype": "float32", "classes": classes,
            "shards": self.shards, "splits": splits,
            "sources": {"train": train_sources, "test": test_sources},
            "test_rule": None if self.rule is None else {"share": self.test_size, "seed": self.seed},
        }
        with open(self.folder / MANIFEST, "w") as f:
            f.write(json.dumps(manifest, indent=1))
            f.flush()
            os.fsync(f.fileno())
        return manifest


def split_summary(index: np.ndarray, moments: Moments, classes: list[str]) -> dict:
    """A split's entry of pack.json: its size, lengths, class counts and per-feature moments."""
    lengths = index[:, LENGTH]
    counts = np.bincount(index[:, LABEL], minlength=len(classes))
    mean = moments.total / moments.count
    std = np.sqrt(np.maximum(moments.squares / moments.count - mean**2, 0))
    return {"sequences": len(index), "steps": int(lengths.sum()), "shortest": int(lengths.min()),
            "longest": int(lengths.max()), "per_class": dict(zip(classes, counts.tolist())),
            "mean": mean.tolist(), "std": std.tolist(),
            "moments": {"count": moments.count, "sum": moments.total.tolist(), "squares": moments.squares.tolist()}}


def npy_header(shape: tuple[int, int]) -> bytes:
    """A .npy (version 1.0) header for float32 `shape`, padded to HEADER_BYTES."""
    text = repr({"descr": "<f4", "fortran_order": False, "shape": shape}).encode("latin1")
    text = text.ljust(HEADER_BYTES - 10 - 1) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text


# --- reading ----------------------------------------------------------------------------------


def is_pack(path: str | os.PathLike) -> bool:
    """True when `path` is a folder written by `pack`, finished or not."""
    path = Path(path)
    return path.is_dir() and ((path / MANIFEST).is_file() or (path / MARKER).is_file())


class Pack:
    """An opened pack: its manifest and shard files (opened on first read, shared by every view)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if (self.path / MARKER).exists() or not (self.path / MANIFEST).is_file():
            raise DataError(f"{self.path}: an unfinished pack (its writing was interrupted); run seqlstm pack again")
        try:
            self.manifest = json.loads((self.path / MANIFEST).read_text())
        except (OSError, ValueError) as e:
            raise DataError(f"{self.path / MANIFEST}: not readable ({e}); pack the data again") from None
        if self.manifest.get("format") != FORMAT or self.manifest.get("version") != VERSION:
            raise DataError(f"{self.path}: not a pack this seqlstm reads (format {self.manifest.get('format')!r} "
                            f"version {self.manifest.get('version')!r}); pack the data again")
        self.features = int(self.manifest["features"])
        self.classes = tuple(self.manifest["classes"])
        row = self.features * 4
        for shard in self.manifest["shards"]:
            path = self.path / shard["file"]
            expected = HEADER_BYTES + shard["rows"] * row
            size = path.stat().st_size if path.is_file() else None
            if size != expected:
                got = "is missing" if size is None else f"has {size:,} bytes"
                raise DataError(f"{path} {got}, {expected:,} expected; the pack is damaged: pack the data again")
        self.fds: dict[int, int] = {}

    def digest(self) -> str:
        """SHA-256 of pack.json, which names the pack uniquely (a pack is never changed once written)."""
        return hashlib.sha256((self.path / MANIFEST).read_bytes()).hexdigest()

    def files(self) -> list[Path]:
        return [self.path / MANIFEST, *(self.path / s["file"] for s in self.manifest["shards"]),
                *(self.path / f"{split}.npy" for split in self.manifest["splits"])]

    def split(self, name: str) -> Packed:
        """The sequences of split `name` ("train" or "test"); DataError when the pack has none."""
        if name not in self.manifest["splits"]:
            raise DataError(f"{self.path} has no {name} split; pack it with --test files or --test-size")
        try:
            index = np.load(self.path / f"{name}.npy", allow_pickle=False)
        except (OSError, ValueError) as e:
            raise DataError(f"{self.path / f'{name}.npy'}: not readable ({e}); pack the data again") from None
        summary = self.manifest["splits"][name]
        if index.shape != (summary["sequences"], 4):
            raise DataError(f"{self.path / f'{name}.npy'}: holds {index.shape}, not the ({summary['sequences']}, 4) "
                            "pack.json says; pack the data again")
        moments = summary["moments"]
        whole = (moments["count"], torch.tensor(moments["sum"], dtype=torch.float64),
                 torch.tensor(moments["squares"], dtype=torch.float64))
        return Packed(self, index, np.arange(len(index)), whole)

    def everything(self) -> Packed:
        """Every sequence of the pack, its splits one after the other."""
        parts = [self.split(name) for name in self.manifest["splits"]]
        index = np.concatenate([p.index for p in parts])
        return Packed(self, index, np.arange(len(index)), None)

    def fd(self, shard: int) -> int:
        if shard not in self.fds:
            self.fds[shard] = os.open(self.path / self.manifest["shards"][shard]["file"], os.O_RDONLY)
        return self.fds[shard]

    def read(self, rows: np.ndarray, steps: int | None = None) -> np.ndarray:
        """The sequences of index `rows` (M, 4) as float32 (M, steps, F), zero-padded (default: to the
        longest of them); a sequence longer than `steps` is cut to it."""
        lengths = rows[:, LENGTH]
        steps = int(lengths.max(initial=0)) if steps is None else steps
        out = np.zeros((len(rows), steps, self.features), dtype=np.float32)
        row_bytes = self.features * 4
        for j, (shard, first, length, _) in enumerate(rows.tolist()):
            length = min(length, steps)
            view = memoryview(out[j, :length]).cast("B")
            done, offset = 0, HEADER_BYTES + first * row_bytes
            while done < len(view):
                got = os.preadv(self.fd(shard), [view[done:]], offset + done)
                if got == 0:
                    raise DataError(f"{self.path}: shard {shard} ends early; the pack is damaged: pack the data again")
                done += got
        return out

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()

    def __del__(self):
        self.close()


class Packed:
    """Labelled sequences of a pack, read from disk a batch at a time: what `Sequences` offers
    (inputs, lengths, labels, take, to) for data that need not fit in memory. Only the index
    (N, 4) is held."""

    def __init__(self, pack: Pack, index: np.ndarray, positions: np.ndarray, whole: tuple | None):
        """`index`: the split's full index (N, 4); `positions`: the rows of it in this view, in order;
        `whole`: the full split's moments (count, sum, squares), when `index` is a whole split."""
        self.pack, self.index, self.positions, self.whole = pack, index, positions, whole
        rows = index[positions]
        self.lengths = torch.from_numpy(rows[:, LENGTH].copy())
        self.labels = torch.from_numpy(rows[:, LABEL].copy())
        self.inputs = PackedValues(self)

    def __len__(self) -> int:
        return len(self.positions)

    @property
    def names(self) -> np.ndarray:
        """The samples' labels as class names (N,) (what the estimator's `score` compares with)."""
        return np.array(self.pack.classes)[self.labels.numpy()]

    def take(self, indices: torch.Tensor) -> Packed:
        """The samples at `indices` (int64 (M,)), in that order; nothing is read."""
        return Packed(self.pack, self.index, self.positions[indices.cpu().numpy()], self.whole)

    def to(self, device: torch.device) -> Packed:
        return self  # the values stay on disk; each batch is moved when read

    def read(self, indices: torch.Tensor, steps: int | None = None) -> Sequences:
        """The samples at `indices` (int64 (M,)) as Sequences in CPU memory, padded to `steps`
        (default: their longest)."""
        rows = self.index[self.positions[indices.cpu().numpy()]]
        return Sequences(torch.from_numpy(self.pack.read(rows, steps)), torch.from_numpy(rows[:, LENGTH].copy()),
                         torch.from_numpy(rows[:, LABEL].copy()))

    def moments(self, arrange=None) -> tuple[int, torch.Tensor, torch.Tensor]:
        """(count of real steps, per-feature sum, per-feature sum of squares) float64, for the input
        transform's statistics. From pack.json for a whole split; for a part of one (validation
        held out) the sums of the smaller of the part and the rest are read, and those of the rest
        taken from the split's."""
        if self.whole is not None and len(self.positions) == len(self.index) and \
                np.array_equal(np.sort(self.positions), np.arange(len(self.index))):
            return self.whole
        inside = np.zeros(len(self.index), dtype=bool)
        inside[self.positions] = True
        if self.whole is None or inside.sum() <= len(inside) / 2:
            return summed(self.pack, self.index[inside])
        count, total, squares = summed(self.pack, self.index[~inside])
        return self.whole[0] - count, self.whole[1] - total, self.whole[2] - squares


class ReadAhead:
    """Reads a pack's batches, the next one on a thread while the current one trains: a batch read
    from the disk rather than the page cache then costs no training time."""

    def __init__(self, samples: Packed):
        self.samples = samples
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="seqlstm-read-ahead")
        self.pending: tuple[tuple, Future] | None = None
        self.waited = 0.0  # seconds `read` kept its caller waiting: what reading from disk cost the training

    def read(self, indices: torch.Tensor, steps: int | None, ahead: tuple[torch.Tensor, int | None] | None = None) -> Sequences:
        """`samples.read(indices, steps)`, already read when it was the last call's `ahead`; then
        `ahead` (indices, steps), the batch to come, starts being read."""
        start = time.perf_counter()
        key = (indices.tolist(), steps)
        if self.pending is not None and self.pending[0] == key:
            samples = self.pending[1].result()
        else:
            samples = self.samples.read(indices, steps)
        self.pending = None
        self.waited += time.perf_counter() - start
        if ahead is not None:
            self.pending = ((ahead[0].tolist(), ahead[1]), self.pool.submit(self.samples.read, *ahead))
        return samples

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def summed(pack: Pack, rows: np.ndarray) -> tuple[int, torch.Tensor, torch.Tensor]:
    """Per-feature moments of the real steps of `rows`, read CHUNK_BYTES at a time."""
    count, total, squares = 0, torch.zeros(pack.features, dtype=torch.float64), torch.zeros(pack.features, dtype=torch.float64)
    at = 0
    while at < len(rows):
        steps = np.cumsum(rows[at:, LENGTH])
        take = max(1, int(np.searchsorted(steps, CHUNK_BYTES // (pack.features * 4))))
        part = rows[at : at + take]
        values = torch.from_numpy(pack.read(part))
        real = values[torch.arange(values.shape[1])[None, :] < torch.from_numpy(part[:, LENGTH])[:, None]].double()
        count += len(real)
        total += real.sum(dim=0)
        squares += real.square().sum(dim=0)
        at += take
    return count, total, squares


class PackedValues:
    """The values of packed sequences, read when indexed as a padded tensor would be: `[i]` gives
    float32 (length_i, F); a slice or index tensor gives (M, T, F) padded to the longest of them."""

    def __init__(self, samples: Packed):
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key) -> torch.Tensor:
        if isinstance(key, (int, np.integer)):
            return self.samples.read(torch.tensor([int(key)])).inputs[0]
        if isinstance(key, slice):
            key = torch.arange(len(self.samples))[key]
        return self.samples.read(torch.as_tensor(key)).inputs
