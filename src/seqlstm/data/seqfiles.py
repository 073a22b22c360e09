"""A user's file of labelled sequences (`.npz`, `.ts` or `.csv`) as one zero-padded array.

Each reader checks the whole file and turns every way it can be unusable into a DataError that
names the file, what is wrong, where (sequence/step/feature, or line/column) and what to do, so a
bad file fails here rather than as a shape error or a NaN loss halfway through training.

Places in text files: lines are numbered from 1, as an editor shows them; `.csv` columns from 0,
as `label_column` counts them.
"""

from __future__ import annotations

import csv
import os
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.lib import format as npformat

from ..errors import DataError
from ..memory import available_bytes, gib

SUPPORTED = (".npz", ".ts", ".csv")


@dataclass
class RawSequences:
    """Sequences read from a user's file, zero-padded to the longest."""

    values: np.ndarray  # float32 (N, T, F): sequence i is values[i, :lengths[i]]; steps after that are 0.0
    lengths: np.ndarray  # int64 (N,), each 1..T
    labels: np.ndarray | None  # (N,) as written: int64, or str ('<U..'); None when the file has none
    source: str  # the path, as given, for messages


def read_sequences(path: str | os.PathLike, label_column: str | int | None = None) -> RawSequences:
    """The sequences in `path`, read by its extension (case-insensitive): `.npz`, `.ts` or `.csv`.

    `label_column` applies to `.csv` only: a header name or a 0-based index (negative counts from
    the end of each row); None means the first column.
    Raises DataError for a missing, empty, unsupported or malformed file.
    """
    source, path = checked_path(path)
    if path.suffix.lower() == ".npz":
        with readable(source):
            return read_npz(path, source)
    cases, labels = [], []
    for case, label in sequence_cases(path, label_column):
        cases.append(case)
        labels.append(label)
    values, lengths = pad(cases, source)
    if labels[0] is None:
        return RawSequences(values, lengths, None, source)
    return RawSequences(values, lengths, label_array(labels) if path.suffix.lower() == ".csv" else np.array(labels, dtype=str),
                        source)


def sequence_cases(path: str | os.PathLike, label_column: str | int | None = None) -> Iterator[tuple[np.ndarray, str | None]]:
    """Each sequence of the file at `path`, one at a time, checked as `read_sequences` checks them:
    (float (L, F) values, its label as written or None). Only a part of the file is in memory at
    once, whatever its size (`seqlstm pack` reads this way). DataError as `read_sequences` raises."""
    source, path = checked_path(path)
    suffix = path.suffix.lower()
    reader = npz_cases(path, source) if suffix == ".npz" else ts_cases(path, source) if suffix == ".ts" else \
        csv_cases(path, source, label_column)
    with readable(source):
        yield from reader


def checked_path(path: str | os.PathLike) -> tuple[str, Path]:
    """(`path` as given, for messages; as a Path) once it names a non-empty file of a supported kind."""
    source = str(path)
    path = Path(path)
    if path.suffix.lower() not in SUPPORTED:
        raise DataError(
            f"{source}: unsupported extension {path.suffix!r}; give a {', '.join(SUPPORTED)} file "
            "(a .npz archive with X and y, a sktime/aeon .ts file, or a .csv with one sequence per row)"
        )
    if not path.is_file():
        raise DataError(f"{source}: no such file")
    try:
        empty = path.stat().st_size == 0
    except OSError as e:
        raise DataError(f"{source}: cannot read the file ({e.strerror})") from None
    if empty:
        raise DataError(f"{source}: the file is empty; it holds no sequences")
    return source, path


@contextmanager
def readable(source: str):
    """Turns what the operating system or the text decoder raise while reading `source` into DataError."""
    try:
        yield
    except UnicodeDecodeError as e:
        raise DataError(f"{source}: not UTF-8 text (byte {e.start} cannot be decoded); save it as UTF-8") from None
    except OSError as e:
        raise DataError(f"{source}: cannot read the file ({e.strerror})") from None


# --- .npz -----------------------------------------------------------------------------------


def read_npz(path: Path, source: str) -> RawSequences:
    """`X` (N, T, F) or (N, T), optional `y` (N,) and `lengths` (N,) from a numpy archive."""
    arrays = load_npz(path, source)
    if "X" not in arrays:
        there = ", ".join(sorted(arrays)) or "none"
        raise DataError(
            f"{source}: no array named X (arrays in the file: {there}); save the sequences as X, "
            "e.g. np.savez(path, X=sequences, y=labels)"
        )
    return from_arrays(arrays["X"], arrays.get("y"), arrays.get("lengths"), source)


def from_arrays(x: np.ndarray, y: np.ndarray | None, lengths: np.ndarray | None, source: str,
                first: int = 0) -> RawSequences:
    """Sequences `x` (N, T, F) or (N, T), labels `y` (N,) and `lengths` (N,) checked as `.npz` members
    are; errors name `source` (a file, or the arrays handed to the estimator) and number sequence i
    `first + i` (`x` a part of a larger array)."""
    shape = x.shape
    if x.ndim == 2:
        x = x[:, :, None]  # (N, T): one feature per step
    if x.ndim != 3:
        raise DataError(
            f"{source}: X has shape {shape}; expected (N, T, F) sequences of feature vectors, "
            "or (N, T) for one feature per step"
        )
    if x.dtype.kind not in "iuf":
        raise DataError(f"{source}: X has dtype {x.dtype}; expected float or integer numbers")
    n, t, f = x.shape
    if n == 0:
        raise DataError(f"{source}: X has shape {x.shape}; it holds no sequences")
    if t == 0 or f == 0:
        raise DataError(f"{source}: X has shape {x.shape}; every sequence needs at least one step of one feature")
    labels = npz_labels(y, n, source)
    lengths = npz_lengths(lengths, n, t, source, first)
    with np.errstate(over="ignore"):  # an overflow becomes inf, reported below with its place
        values = x.astype(np.float32)
    real = np.arange(t)[None, :] < lengths[:, None]  # (N, T): True on steps that belong to the sequence
    # Checked after the cast, so a float64 too large for float32 is caught as the inf it became.
    bad = ~np.isfinite(values) & real[:, :, None]
    if bad.any():
        i, step, feature = np.unravel_index(np.flatnonzero(bad)[0], bad.shape)
        raise DataError(
            f"{source}: X has {int(bad.sum())} NaN or infinite value(s) (or values too large for float32) inside "
            f"the sequences, the first at sequence {first + i}, step {step}, feature {feature}; fix or drop those "
            "sequences (NaN is allowed only in the padding after each sequence's length)"
        )
    values[~real] = 0.0  # people pad with NaN or anything; the model must see zeros there
    return RawSequences(values=values, lengths=lengths, labels=labels, source=source)


def load_npz(path: Path, source: str, skip: str | None = None) -> dict[str, np.ndarray]:
    """Every array in the archive (but `skip`), loaded without pickle; errors say what to do about the file.

    Each member's .npy header is read and checked against the member's size before its data is:
    a header may promise any shape, and numpy would allocate it before finding the data short.
    Every way the zip or zlib layer can fail (truncation, a bad CRC, encryption, an unknown
    compression) is a DataError naming the file and the array.
    """
    damaged = f"{source}: the file is damaged or not a .npz archive"
    with path.open("rb") as f:
        magic = f.read(6)
        if magic == b"\x93NUMPY":  # a .npy file that was given a .npz name
            raise DataError(
                f"{source}: the file holds a single .npy array, not a .npz archive; "
                "save with np.savez(path, X=sequences, y=labels)"
            )
        f.seek(0)
        try:
            archive = zipfile.ZipFile(f)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
            # What np.load takes any other file for is a pickle, which seqlstm never loads.
            raise DataError(f"{damaged} ({e}); save it again with np.savez") from None
        with archive:
            return {info.filename.removesuffix(".npy"): npz_member(archive, info, source)
                    for info in archive.infolist() if not info.is_dir() and info.filename.removesuffix(".npy") != skip}


def npz_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, source: str) -> np.ndarray:
    """One member of a .npz archive as an array, its header checked against its size first."""
    with npz_errors(info, source):
        with archive.open(info) as member:
            npz_header(member, info, source)
        with archive.open(info) as member:
            return npformat.read_array(member, allow_pickle=False)


def npz_header(member, info: zipfile.ZipInfo, source: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran order, dtype) from the .npy header at the start of the open `member`, checked:
    no pickled objects, and no more data promised than the archive holds."""
    name = info.filename.removesuffix(".npy")
    if info.flag_bits & 0x1:
        raise DataError(f"{source}: the file is damaged or not a .npz archive (array {name} is encrypted); save it "
                        "again with np.savez, without a password")
    version = npformat.read_magic(member)
    read_header = {(1, 0): npformat.read_array_header_1_0, (2, 0): npformat.read_array_header_2_0,
                   (3, 0): npformat.read_array_header_2_0}.get(version)
    if read_header is None:
        raise ValueError(f"unsupported .npy format version {version}")
    shape, fortran, dtype = read_header(member)
    if dtype.hasobject:
        raise DataError(
            f"{source}: array {name} is ragged / holds Python objects, which seqlstm never "
            "unpickles; pad the sequences to one length T and add a lengths array, e.g. "
            "np.savez(path, X=padded, y=labels, lengths=lengths) with padded of shape (N, T, F)"
        )
    promised = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
    if promised > info.file_size:
        raise DataError(
            f"{source}: the file is damaged or not a .npz archive (array {name}: its header promises {promised:,} "
            f"bytes of data but the archive holds {info.file_size:,}); save it again with np.savez"
        )
    return shape, fortran, dtype


@contextmanager
def npz_errors(info: zipfile.ZipInfo, source: str):
    """Every way the zip or zlib layer can fail while reading member `info`, as a DataError naming it."""
    try:
        yield
    except DataError:
        raise
    except (ValueError, EOFError, OSError, RuntimeError, NotImplementedError, zipfile.BadZipFile, zlib.error,
            MemoryError) as e:
        raise DataError(f"{source}: the file is damaged or not a .npz archive (array "
                        f"{info.filename.removesuffix('.npy')}: {e}); save it again with np.savez") from None


# Rows of X read at a time when a .npz is streamed (`npz_cases`).
NPZ_CHUNK_BYTES = 32 << 20


def npz_cases(path: Path, source: str) -> Iterator[tuple[np.ndarray, int | str | None]]:
    """Each sequence of a `.npz` archive as (float32 (L, F), its label or None), reading `X` a few
    rows at a time: only `y` and `lengths` are loaded whole. Checked as `read_npz` checks them."""
    arrays = load_npz(path, source, skip="X")
    with path.open("rb") as f, zipfile.ZipFile(f) as archive:
        members = {info.filename.removesuffix(".npy"): info for info in archive.infolist() if not info.is_dir()}
        if "X" not in members:
            there = ", ".join(sorted(arrays)) or "none"
            raise DataError(
                f"{source}: no array named X (arrays in the file: {there}); save the sequences as X, "
                "e.g. np.savez(path, X=sequences, y=labels)"
            )
        info = members["X"]
        with npz_errors(info, source), archive.open(info) as member:
            shape, fortran, dtype = npz_header(member, info, source)
            if fortran and len(shape) > 1:
                raise DataError(f"{source}: X is stored in Fortran order, which cannot be read a sequence at a time; "
                                "save it again with np.savez(path, X=np.ascontiguousarray(X), ...)")
            if len(shape) not in (2, 3) or 0 in shape:
                # The in-memory reader's error, from an array of that shape that takes no memory.
                from_arrays(np.broadcast_to(np.zeros((), dtype), shape), None, None, source)
            n, row = shape[0], int(np.prod(shape[1:])) * dtype.itemsize
            y, lengths = arrays.get("y"), arrays.get("lengths")
            for name, array in (("y", y), ("lengths", lengths)):
                if array is not None and array.shape != (n,):  # checked whole, before any sequence is given
                    (npz_labels if name == "y" else npz_lengths)(array, n, shape[1], source)
            rows = max(1, NPZ_CHUNK_BYTES // row)
            for start in range(0, n, rows):
                count = min(rows, n - start)
                data = member.read(count * row)
                if len(data) != count * row:
                    raise EOFError(f"X ends inside sequence {start + len(data) // row} of its {n}")
                part = slice(start, start + count)
                raw = from_arrays(np.frombuffer(data, dtype).reshape(count, *shape[1:]), None if y is None else y[part],
                                  None if lengths is None else lengths[part], source, first=start)
                for i in range(count):
                    yield raw.values[i, : raw.lengths[i]], None if raw.labels is None else raw.labels[i]


def npz_labels(y: np.ndarray | None, n: int, source: str) -> np.ndarray | None:
    """`y` as int64 or str (N,); None when the archive has no `y` (the caller decides if that is fine)."""
    if y is None:
        return None
    if y.shape != (n,):
        raise DataError(
            f"{source}: y has shape {y.shape}; expected ({n},), one label for each of the {n} sequences in X"
        )
    if y.dtype.kind in "iu":
        return y.astype(np.int64)
    if y.dtype.kind in "US":
        return y.astype(str)
    if y.dtype.kind == "f":
        # Labels saved as floats (e.g. via pandas) are fine as long as they are whole numbers.
        whole = np.isfinite(y) & (y == np.round(y))
        if whole.all():
            return y.astype(np.int64)
        i = int(np.flatnonzero(~whole)[0])
        raise DataError(
            f"{source}: y[{i}] is {y[i].item()!r}; labels must be integers or strings, not fractional numbers "
            "(for a regression target, seqlstm is the wrong tool: it classifies)"
        )
    raise DataError(f"{source}: y has dtype {y.dtype}; labels must be integers or strings")


def npz_lengths(lengths: np.ndarray | None, n: int, t: int, source: str, first: int = 0) -> np.ndarray:
    """`lengths` as int64 (N,) within 1..T; every sequence is T steps long without it. Errors number
    sequence i `first + i`."""
    if lengths is None:
        return np.full(n, t, dtype=np.int64)
    if lengths.shape != (n,):
        raise DataError(f"{source}: lengths has shape {lengths.shape}; expected ({n},), one length per sequence in X")
    if lengths.dtype.kind == "f":
        whole = np.isfinite(lengths) & (lengths == np.round(lengths))
        if not whole.all():
            i = int(np.flatnonzero(~whole)[0])
            raise DataError(f"{source}: lengths[{first + i}] is {lengths[i].item()!r}; lengths must be whole numbers of steps")
    elif lengths.dtype.kind not in "iu":
        raise DataError(f"{source}: lengths has dtype {lengths.dtype}; expected integers (steps per sequence)")
    lengths = lengths.astype(np.int64)
    short = np.flatnonzero(lengths < 1)
    if short.size:
        i = int(short[0])
        raise DataError(f"{source}: sequence {first + i} has length {lengths[i]}; every sequence needs at least 1 step")
    long = np.flatnonzero(lengths > t)
    if long.size:
        i = int(long[0])
        raise DataError(
            f"{source}: sequence {first + i} has length {lengths[i]} but X holds only {t} steps; "
            "pad X to the longest sequence or correct lengths"
        )
    return lengths


# --- .ts (sktime/aeon) ----------------------------------------------------------------------

# The header keys seqlstm knows, lower-cased (the format's keys are case-insensitive); those that take true/false first.
TS_BOOLEAN_KEYS = ("timestamps", "missing", "univariate", "equallength", "targetlabel")
TS_KEYS = TS_BOOLEAN_KEYS + ("problemname", "dimensions", "dimension", "serieslength", "classlabel", "data")


@dataclass
class TsHeader:
    """What a .ts header says about the data lines that follow it."""

    equal_length: bool = False
    series_length: int | None = None  # only checked when equal_length
    dimensions: int | None = None  # None: taken from the first case
    class_labels: list[str] | None = None  # the declared labels; None when cases carry no label
    class_label_line: int = 0
    data_line: int = 0


def ts_cases(path: Path, source: str) -> Iterator[tuple[np.ndarray, str | None]]:
    """Each case of a sktime/aeon `.ts` classification file as (float64 (L, F), label or None).

    The file is a `#` description, an `@` header, then one case a line. A case is its dimensions
    separated by `:`, each a `,`-separated list of values, then its class label as a last
    `:`-field when the header says `@classLabel true ...`. `?` marks a missing value; trailing
    `?`s only shorten a case in unequal-length files. Timestamped series and regression targets
    are refused.
    """
    with path.open(encoding="utf-8-sig") as f:
        lines = enumerate(f, 1)
        header = read_ts_header(lines, source)
        found = False
        for number, line in lines:
            line = line.strip()
            if not line:
                continue
            case, label = parse_ts_case(line, number, header, source)
            if header.dimensions is None:
                header.dimensions = case.shape[1]  # later cases must agree with the first
            if header.equal_length and header.series_length is None:
                header.series_length = case.shape[0]
            found = True
            yield case, label
    if not found:
        raise DataError(f"{source}: no cases after @data (line {header.data_line}); the file holds no sequences")


def read_ts_header(lines: Iterator[tuple[int, str]], source: str) -> TsHeader:
    """Consume the description and header up to and including `@data`."""
    header = TsHeader()
    univariate: bool | None = None
    dimensions_line = 0
    class_label_seen = target_label_false = False
    for number, raw in lines:
        line = raw.strip()
        # `%` too: some files in aeon's own test data start with ARFF-style comments.
        if not line or line.startswith(("#", "%")):
            continue
        where = f"{source}, line {number}"
        if not line.startswith("@"):
            raise DataError(
                f"{where}: a data line before @data; the header must end with a line reading @data "
                "before the first case"
            )
        tokens = line.split()
        key, values = tokens[0][1:].lower(), tokens[1:]
        if key not in TS_KEYS:
            raise DataError(
                f"{where}: unknown header key {tokens[0]}; known keys: "
                "@problemName, @timeStamps, @missing, @univariate, @dimensions, @equalLength, @seriesLength, "
                "@classLabel, @targetLabel, @data"
            )
        if key == "data":
            if values:
                raise DataError(f"{where}: @data takes no value; put the first case on the next line")
            if not class_label_seen and not target_label_false:
                raise DataError(
                    f"{where}: the header has no @classLabel line; add '@classLabel true <label> <label> ...' "
                    "(or '@classLabel false' for a file without labels) before @data"
                )
            if univariate and header.dimensions not in (None, 1):
                raise DataError(
                    f"{source}, line {dimensions_line}: @dimensions {header.dimensions} contradicts "
                    "@univariate true; correct one of them"
                )
            if univariate:
                header.dimensions = 1
            header.data_line = number
            return header
        if key in TS_BOOLEAN_KEYS:
            flag = ts_boolean(tokens, where)
            if key == "timestamps" and flag:
                raise DataError(
                    f"{where}: timestamped series ((time,value) pairs) are not supported; "
                    "write the values alone, e.g. 1.0,2.5,3.1:label"
                )
            if key == "targetlabel" and flag:
                raise DataError(
                    f"{where}: this file holds a regression target (@targetLabel true), but seqlstm classifies; "
                    "give a file with @classLabel true and its class labels"
                )
            if key == "targetlabel":
                target_label_false = True
            elif key == "univariate":
                univariate = flag
            elif key == "equallength":
                header.equal_length = flag
        elif key in ("dimensions", "dimension"):
            header.dimensions = ts_positive_int(tokens, where)
            dimensions_line = number
        elif key == "serieslength":
            header.series_length = ts_positive_int(tokens, where)
        elif key == "classlabel":
            class_label_seen = True
            if not values or values[0].lower() not in ("true", "false"):
                raise DataError(f"{where}: {tokens[0]} expects true followed by the labels, or false")
            if values[0].lower() == "true":
                if len(values) == 1:
                    raise DataError(
                        f"{where}: @classLabel true lists no labels; list them, e.g. @classLabel true walking running"
                    )
                header.class_labels, header.class_label_line = values[1:], number
            else:
                header.class_labels = None
        # @problemName: any value; it only names the data set.
    raise DataError(f"{source}: no @data line; the header must end with a line reading @data, then one case a line")


def ts_boolean(tokens: list[str], where: str) -> bool:
    if len(tokens) != 2 or tokens[1].lower() not in ("true", "false"):
        got = " ".join(tokens[1:]) or "nothing"
        raise DataError(f"{where}: {tokens[0]} expects true or false, got {got!r}")
    return tokens[1].lower() == "true"


def ts_positive_int(tokens: list[str], where: str) -> int:
    try:
        value = int(tokens[1]) if len(tokens) == 2 else 0
    except ValueError:
        value = 0
    if value < 1:
        got = " ".join(tokens[1:]) or "nothing"
        raise DataError(f"{where}: {tokens[0]} expects a positive integer, got {got!r}")
    return value


def parse_ts_case(line: str, number: int, header: TsHeader, source: str) -> tuple[np.ndarray, str | None]:
    """One data line as float64 (L, F) and its label (None when the file has no labels)."""
    where = f"{source}, line {number}"
    fields = line.split(":")
    label = None
    if header.class_labels is not None:
        if len(fields) < 2:
            raise DataError(f"{where}: no class label; end the case with ':' and its label")
        label = fields.pop().strip()
        if label not in header.class_labels:
            raise DataError(
                f"{where}: label {label!r} is not among the @classLabel values declared on line "
                f"{header.class_label_line} ({' '.join(header.class_labels)}); add it there or correct the case"
            )
    if header.dimensions is not None and len(fields) != header.dimensions:
        raise DataError(
            f"{where}: the case has {len(fields)} dimension(s) but {header.dimensions} are expected "
            "(from @dimensions, @univariate true, or the first case); dimensions are separated by ':'"
        )
    channels = [parse_ts_dimension(field, where, d, header.equal_length) for d, field in enumerate(fields)]
    lengths = [len(c) for c in channels]
    if len(set(lengths)) > 1:
        raise DataError(
            f"{where}: the dimensions have different lengths ({', '.join(map(str, lengths))}); every dimension "
            "of one case needs the same number of values"
        )
    if header.equal_length and header.series_length is not None and lengths[0] != header.series_length:
        raise DataError(
            f"{where}: the case has {lengths[0]} values per dimension but the series length is "
            f"{header.series_length} (@seriesLength, or the first case) and @equalLength is true; "
            "correct the case, or declare @equalLength false"
        )
    return np.stack(channels, axis=1), label


def parse_ts_dimension(field: str, where: str, dimension: int, equal_length: bool) -> np.ndarray:
    """One `,`-separated dimension as float64 (L,); `?` is missing, and only trailing ones are allowed."""
    texts = field.split(",")
    if not equal_length:
        # Unequal-length UEA files sometimes fill the end of a shorter case with `?`: that is padding.
        while texts and texts[-1].strip() == "?":
            texts.pop()
    if not texts or texts == [""]:
        raise DataError(f"{where}: dimension {dimension} has no values")
    try:
        values = np.array(texts, dtype=np.float64)
    except ValueError:
        # Only on failure: find which value it was, one at a time.
        for position, text in enumerate(texts):
            if text.strip() == "?":
                continue
            try:
                float(text)
            except ValueError:
                raise DataError(
                    f"{where}: dimension {dimension}, position {position}: {text.strip()!r} is not a number"
                ) from None
        values = np.array([np.nan if t.strip() == "?" else t for t in texts], dtype=np.float64)
    # float32 is what the model gets: a finite float64 beyond its range would arrive as inf.
    with np.errstate(over="ignore"):
        bad = np.flatnonzero(~np.isfinite(values.astype(np.float32)))
    if bad.size:
        raise DataError(
            f"{where}: dimension {dimension}, position {bad[0]}: missing (?), NaN or infinite value "
            f"({bad.size} in this dimension); seqlstm needs every step's values — fill or drop the case"
        )
    return values


# --- .csv -----------------------------------------------------------------------------------


def csv_cases(path: Path, source: str, label_column: str | int | None) -> Iterator[tuple[np.ndarray, str]]:
    """Each row of a `.csv` of univariate sequences as (float64 (L, 1), its label cell): a label cell
    and the values a row; trailing empty cells end a shorter sequence. The first row is a header
    when it holds text outside the label column."""
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        index = has_header = None
        found = False
        try:
            for row in reader:
                # Blank rows (often a trailing newline or two) carry nothing; line numbers still count them.
                if not any(cell.strip() for cell in row):
                    continue
                if index is None:
                    index, has_header = csv_label_index(row, reader.line_num, source, label_column)
                    if has_header:
                        continue
                found = True
                line = reader.line_num
                column = index if index >= 0 else len(row) + index  # negative: from the end of this row
                if not 0 <= column < len(row) or not row[column].strip():
                    raise DataError(
                        f"{source}, line {line}: labels missing: column {column} is empty; every row needs its label"
                    )
                yield parse_csv_values(row, column, f"{source}, line {line}")[:, None], row[column].strip()
        except csv.Error as e:
            tabs = " (a tab-separated file? seqlstm reads comma-separated values: replace the tabs by commas)" \
                if "field larger than field limit" in str(e) else ""
            raise DataError(f"{source}, line {reader.line_num}: not readable as CSV: {e}{tabs}") from None
    if index is None:
        raise DataError(f"{source}: no rows with values; the file holds no sequences")
    if not found:
        raise DataError(f"{source}: only a header row; the file holds no sequences")


def csv_label_index(first: list[str], line: int, source: str, label_column: str | int | None) -> tuple[int, bool]:
    """(the label column's index, whether `first`, the file's first row with values, is a header)."""
    if isinstance(label_column, str):
        names = [cell.strip() for cell in first]
        if label_column not in names:
            raise DataError(
                f"{source}: no column named {label_column!r} in the header (line {line}: "
                f"{', '.join(repr(n) for n in names)}); give one of those names, or a 0-based column index"
            )
        return names.index(label_column), True
    index = 0 if label_column is None else label_column
    if not -len(first) <= index < len(first):
        raise DataError(
            f"{source}: label column {index} is out of range: line {line} has {len(first)} columns "
            f"(0 to {len(first) - 1}, or -1 to -{len(first)} from the end)"
        )
    # A header row names its columns; a data row holds only numbers (and trailing empties).
    return index, any(cell.strip() and not is_number(cell) for cell in without(first, index))


def parse_csv_values(row: list[str], label: int, where: str) -> np.ndarray:
    """The row's cells other than column `label` as float64 (L,), up to the last non-empty one."""
    columns = [c for c in range(len(row)) if c != label]
    cells = [row[c].strip() for c in columns]
    filled = [i for i, cell in enumerate(cells) if cell]
    if not filled:
        raise DataError(f"{where}: the row has a label but no values")
    end = filled[-1] + 1
    empty = [i for i in range(end) if not cells[i]]
    if empty:
        raise DataError(
            f"{where}, column {columns[empty[0]]}: empty cell followed by a value; only trailing cells may be "
            "empty (they end a shorter sequence)"
        )
    try:
        values = np.array(cells[:end], dtype=np.float64)
    except ValueError:
        i = next(i for i in range(end) if not is_number(cells[i]))
        raise DataError(f"{where}, column {columns[i]}: {cells[i]!r} is not a number") from None
    with np.errstate(over="ignore"):  # beyond float32's range counts as inf
        bad = np.flatnonzero(~np.isfinite(values.astype(np.float32)))
    if bad.size:
        raise DataError(
            f"{where}, column {columns[bad[0]]}: {cells[bad[0]]!r} is NaN or infinite (in float32); "
            "every step needs a finite value (leave trailing cells empty to end a shorter sequence)"
        )
    return values


def without(row: list[str], index: int) -> list[str]:
    column = index if index >= 0 else len(row) + index
    return row[:column] + row[column + 1 :]


def is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def label_array(labels: list[str]) -> np.ndarray:
    """int64 when every label is an integer ('3', '-1'), else the labels as written (str)."""
    try:
        return np.array([int(label) for label in labels], dtype=np.int64)
    except (ValueError, OverflowError):  # not integers, or integers beyond int64: names, then
        return np.array(labels, dtype=str)


# --- shared ---------------------------------------------------------------------------------


def pad(cases: list[np.ndarray], source: str = "the sequences") -> tuple[np.ndarray, np.ndarray]:
    """float (L_i, F) cases -> float32 (N, T, F) zero-padded to the longest, and int64 (N,) lengths.

    DataError, before allocating, when the padded array would not fit in the memory available: one
    very long outlier pads every other sequence to its length."""
    lengths = np.array([len(c) for c in cases], dtype=np.int64)
    needed = len(cases) * int(lengths.max()) * cases[0].shape[1] * 4
    available = available_bytes()
    if available is not None and needed > available:
        longest = int(lengths.argmax())
        raise DataError(
            f"{source}: padding all {len(cases):,} sequences to the longest ({int(lengths.max()):,} steps, sequence "
            f"{longest}) needs {gib(needed)}, more than the {gib(available)} of memory available; the lengths run from "
            f"{int(lengths.min()):,} to {int(lengths.max()):,} steps (median {int(np.median(lengths)):,}): cut or drop the "
            "longest sequences, or split them into windows"
        )
    values = np.zeros((len(cases), int(lengths.max()), cases[0].shape[1]), dtype=np.float32)
    for i, case in enumerate(cases):
        values[i, : len(case)] = case
    return values, lengths
