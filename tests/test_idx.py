import gzip
import struct

import numpy as np
import pytest

from seqlstm.data.idx import DTYPES, encode_idx, parse_idx, read_idx, write_idx
from seqlstm.errors import DataError


@pytest.mark.parametrize("dtype", [d.newbyteorder("=") for d in DTYPES.values()])
@pytest.mark.parametrize("name", ["a.idx", "a.idx.gz"])
def test_round_trip_every_dtype_raw_and_gzip(tmp_path, dtype, name):
    array = (np.arange(2 * 3 * 4) - 7).astype(dtype).reshape(2, 3, 4)
    write_idx(tmp_path / name, array)
    back = read_idx(tmp_path / name)
    assert back.dtype == dtype and back.shape == (2, 3, 4)
    np.testing.assert_array_equal(back, array)


def test_header_layout_is_the_published_one():
    data = encode_idx(np.zeros((60000, 28, 28), np.uint8))
    assert data[:16] == bytes.fromhex("00000803 0000ea60 0000001c 0000001c")
    assert len(data) == 16 + 60000 * 28 * 28


def test_compression_is_detected_by_content_not_name(tmp_path):
    array = np.arange(10, dtype=np.uint8)
    (tmp_path / "raw.gz").write_bytes(encode_idx(array))
    (tmp_path / "packed").write_bytes(gzip.compress(encode_idx(array)))
    np.testing.assert_array_equal(read_idx(tmp_path / "raw.gz"), array)
    np.testing.assert_array_equal(read_idx(tmp_path / "packed"), array)


GOOD = encode_idx(np.arange(12, dtype=np.uint8).reshape(3, 4))


@pytest.mark.parametrize(
    "payload, message",
    [
        (b"\x00\x00", "shorter than the 4-byte header"),
        (b"\x01\x02" + GOOD[2:], "does not start with two zero bytes"),
        (GOOD[:2] + b"\x07" + GOOD[3:], "unknown IDX dtype code 0x07"),
        (GOOD[:3] + b"\x00", "declares 0 dimensions"),
        (GOOD[:9], "ends inside the header"),
        (GOOD[:-1], "11 data bytes|holds 11"),
        (GOOD + b"\x00", "holds 13"),
        (GOOD[:4] + struct.pack(">II", 3, 5) + GOOD[12:], "3x5 items"),
    ],
)
def test_malformed_payloads_are_rejected_with_the_reason(payload, message):
    with pytest.raises(DataError, match=message):
        parse_idx(payload, "bad.idx")


def test_truncated_gzip_names_the_file(tmp_path):
    path = tmp_path / "cut.gz"
    path.write_bytes(gzip.compress(GOOD * 100)[:-20])
    with pytest.raises(DataError, match=r"cut\.gz: the gzip stream is truncated or corrupt"):
        read_idx(path)


def test_corrupt_gzip_names_the_file(tmp_path):
    path = tmp_path / "bad.gz"
    data = bytearray(gzip.compress(GOOD * 100))
    data[20:30] = b"\xff" * 10
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"bad\.gz: the gzip stream is truncated or corrupt"):
        read_idx(path)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_idx(tmp_path / "nope.gz")
