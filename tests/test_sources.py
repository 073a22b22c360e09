"""Finding, verifying and downloading MNIST, against a real HTTP server on 127.0.0.1."""

import gzip
import hashlib
import os
import socket

import numpy as np
import pytest

from conftest import Route
from seqlstm import DataError, DownloadError, load_dataset
from seqlstm.data.idx import encode_idx, write_idx
from seqlstm.data.sources import MNIST, cache_dir

TEST_FILES = [f.name for f in MNIST.splits["test"]]


def serve_test_split(server, mnist_dir, prefix="/good/"):
    for name in TEST_FILES:
        server.routes[prefix + name] = Route((mnist_dir / name).read_bytes())
    return server.url + prefix


def closed_port_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def cache_files(tmp_path):
    root = tmp_path / "cache" / "mnist"
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def test_data_dir_loads_the_real_files(mnist_dir):
    images, labels = load_dataset("mnist", "test", data_dir=mnist_dir)
    assert images.dtype.is_floating_point is False and images.shape == (10000, 28, 28)
    assert str(images.dtype) == "torch.uint8" and str(labels.dtype) == "torch.int64"
    assert labels.shape == (10000,) and labels[:5].tolist() == [7, 2, 1, 0, 4]
    assert np.bincount(labels.numpy()).tolist()[0] == 980


def test_decompressed_copies_with_a_new_gzip_wrapper_pass_the_checksum(tmp_path, mnist_dir):
    raw = gzip.decompress((mnist_dir / TEST_FILES[0]).read_bytes())
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(raw)  # decompressed
    (tmp_path / TEST_FILES[1]).write_bytes(gzip.compress(gzip.decompress((mnist_dir / TEST_FILES[1]).read_bytes()), 1))
    images, labels = load_dataset("mnist", "test", data_dir=tmp_path)
    assert images.shape == (10000, 28, 28) and labels.shape == (10000,)


def test_data_dir_missing_file_says_what_to_put_there(tmp_path, mnist_dir, file_server, monkeypatch):
    monkeypatch.setenv("SEQLSTM_MNIST_MIRRORS", serve_test_split(file_server, mnist_dir))
    (tmp_path / TEST_FILES[0]).write_bytes((mnist_dir / TEST_FILES[0]).read_bytes())
    with pytest.raises(DataError, match=r"has no t10k-labels-idx1-ubyte\.gz .*Put the mnist files there"):
        load_dataset("mnist", "test", data_dir=tmp_path)
    assert file_server.requests == []  # --data-dir never downloads


def test_checksum_mismatch_names_file_expected_and_got(tmp_path):
    labels = np.zeros(10000, np.uint8)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labels)
    got = hashlib.md5(encode_idx(labels)).hexdigest()
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((10000, 28, 28), np.uint8))
    with pytest.raises(DataError) as info:
        load_dataset("mnist", "test", data_dir=tmp_path)
    message = str(info.value)
    assert "t10k-images-idx3-ubyte.gz: checksum mismatch" in message
    assert "expected 2646ac647ad5339dbf082846283269ea" in message
    assert hashlib.md5(encode_idx(np.zeros((10000, 28, 28), np.uint8))).hexdigest() in message
    assert got not in message


def test_unknown_dataset_and_split():
    with pytest.raises(DataError, match="unknown dataset 'cifar'; known datasets: mnist"):
        load_dataset("cifar")
    with pytest.raises(DataError, match="unknown split 'valid'"):
        load_dataset("mnist", "valid")


def test_download_fills_the_cache_once(tmp_path, mnist_dir, file_server, monkeypatch):
    monkeypatch.setenv("SEQLSTM_MNIST_MIRRORS", serve_test_split(file_server, mnist_dir))
    images, labels = load_dataset("mnist", "test")
    assert images.shape == (10000, 28, 28) and labels[:3].tolist() == [7, 2, 1]
    assert cache_files(tmp_path) == sorted(TEST_FILES)  # no temporary files left behind
    assert len(file_server.requests) == 2
    load_dataset("mnist", "test")
    assert len(file_server.requests) == 2  # served from the cache


def test_refusing_mirrors_fall_through_in_order(tmp_path, mnist_dir, file_server, monkeypatch):
    good = serve_test_split(file_server, mnist_dir)
    for name in TEST_FILES:
        file_server.routes["/forbidden/" + name] = Route(status=403)
    mirrors = [closed_port_url(), file_server.url + "/forbidden", good]
    monkeypatch.setenv("SEQLSTM_MNIST_MIRRORS", ",".join(mirrors))
    images, _ = load_dataset("mnist", "test")
    assert images.shape == (10000, 28, 28)
    assert file_server.requests[:2] == ["/forbidden/" + TEST_FILES[0], "/good/" + TEST_FILES[0]]


def test_checksum_mismatch_on_download_leaves_nothing_cached(tmp_path, mnist_dir, file_server, monkeypatch):
    serve_test_split(file_server, mnist_dir)
    payload = bytearray(gzip.decompress((mnist_dir / TEST_FILES[1]).read_bytes()))
    payload[-1] ^= 1  # one flipped label bit: still a valid IDX file, not the real one
    file_server.routes["/good/" + TEST_FILES[1]] = Route(gzip.compress(bytes(payload)))
    monkeypatch.setenv("SEQLSTM_MNIST_MIRRORS", file_server.url + "/good/")
    with pytest.raises(DownloadError, match=r"t10k-labels-idx1-ubyte\.gz: checksum mismatch.*expected 27ae3e4e"):
        load_dataset("mnist", "test")
    assert TEST_FILES[1] not in cache_files(tmp_path)
    assert not [n for n in cache_files(tmp_path) if n.startswith(".")]


def test_connection_cut_mid_file_is_reported_and_leaves_nothing(tmp_path, mnist_dir, file_server, monkeypatch):
    body = (mnist_dir / TEST_FILES[0]).read_bytes()
    file_server.routes["/cut/" + TEST_FILES[0]] = Route(body, cut_after=len(body) // 2)
    monkeypatch.setenv("SEQLSTM_MNIST_MIRRORS", file_server.url + "/cut/")
    with pytest.raises(DownloadError, match="connection was cut|truncated"):
        load_dataset("mnist", "test")
    assert cache_files(tmp_path) == []


def test_total_failure_lists_every_mirror_and_the_manual_route(mnist_dir, file_server, monkeypatch):
    body = (mnist_dir / TEST_FILES[0]).read_bytes()
    file_server.routes["/cut/" + TEST_FILES[0]] = Route(body, cut_after=1000)
    refused = closed_port_url()
    mirrors = [refused, file_server.url + "/missing/", file_server.url + "/cut/"]
    monkeypatch.setenv("SEQLSTM_MNIST_MIRRORS", ",".join(mirrors))
    with pytest.raises(DownloadError) as info:
        load_dataset("mnist", "test")
    message = str(info.value)
    assert f"{refused}t10k-images-idx3-ubyte.gz: could not connect" in message
    assert f"{file_server.url}/missing/t10k-images-idx3-ubyte.gz: HTTP 404" in message
    assert f"{file_server.url}/cut/t10k-images-idx3-ubyte.gz: the connection was cut" in message
    assert "--data-dir" in message and "SEQLSTM_MNIST_MIRRORS" in message
    # Every place it looked in before downloading, and how to fill it.
    assert ("Before downloading, it was looked for in:\n  $SEQLSTM_DATA/mnist: SEQLSTM_DATA is not set; set it to a "
            "folder holding mnist/ with the files\n  ") in message
    assert f"{cache_dir() / 'mnist'}: the download cache (SEQLSTM_CACHE moves it); downloads go there" in message


def test_seqlstm_data_pointing_at_the_dataset_folder_itself_is_understood(tmp_path, mnist_dir, monkeypatch):
    monkeypatch.setenv("SEQLSTM_MNIST_MIRRORS", closed_port_url())  # nothing may be downloaded
    monkeypatch.setenv("SEQLSTM_DATA", str(mnist_dir))  # .../mnist, not the folder holding mnist/
    assert len(load_dataset("mnist", "test").labels) == 10000
    monkeypatch.setenv("SEQLSTM_DATA", str(tmp_path / "elsewhere"))
    with pytest.raises(DownloadError) as info:
        load_dataset("mnist", "test")
    assert (f"{tmp_path / 'elsewhere' / 'mnist'} (from SEQLSTM_DATA): no such folder; SEQLSTM_DATA holds one folder per "
            "dataset, mnist/ among them") in str(info.value)


def test_seqlstm_data_is_searched_first_and_never_downloaded_into(tmp_path, mnist_dir, file_server, monkeypatch):
    root = tmp_path / "datasets"
    (root / "mnist").mkdir(parents=True)
    (root / "mnist" / TEST_FILES[0]).write_bytes((mnist_dir / TEST_FILES[0]).read_bytes())
    monkeypatch.setenv("SEQLSTM_DATA", str(root))
    monkeypatch.setenv("SEQLSTM_MNIST_MIRRORS", serve_test_split(file_server, mnist_dir))
    load_dataset("mnist", "test")
    assert file_server.requests == ["/good/" + TEST_FILES[1]]  # images came from SEQLSTM_DATA
    assert sorted(p.name for p in (root / "mnist").iterdir()) == [TEST_FILES[0]]
    assert cache_files(tmp_path) == [TEST_FILES[1]]


def test_a_damaged_cache_entry_is_downloaded_again(tmp_path, mnist_dir, file_server, monkeypatch):
    monkeypatch.setenv("SEQLSTM_MNIST_MIRRORS", serve_test_split(file_server, mnist_dir))
    load_dataset("mnist", "test")
    cached = tmp_path / "cache" / "mnist" / TEST_FILES[1]
    cached.write_bytes(cached.read_bytes()[:100])
    _, labels = load_dataset("mnist", "test")
    assert labels.shape == (10000,)
    assert file_server.requests.count("/good/" + TEST_FILES[1]) == 2


def test_an_unusable_cache_folder_says_what_to_do(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("SEQLSTM_CACHE", str(blocker))
    with pytest.raises(DownloadError, match=r"cannot create the download cache .*not-a-folder/mnist.*Set SEQLSTM_CACHE"):
        load_dataset("mnist", "test")


def test_downloaded_files_get_the_users_usual_permissions(tmp_path, mnist_dir, file_server, monkeypatch):
    monkeypatch.setenv("SEQLSTM_MNIST_MIRRORS", serve_test_split(file_server, mnist_dir))
    old = os.umask(0o022)
    try:
        load_dataset("mnist", "test")
    finally:
        os.umask(old)
    modes = {(tmp_path / "cache" / "mnist" / name).stat().st_mode & 0o777 for name in TEST_FILES}
    assert modes == {0o644}
