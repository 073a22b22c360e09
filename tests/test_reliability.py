"""Nothing a user owns is overwritten or silently corrupted, and every damaged input gets a clear,
one-line error: one test per way it went wrong before (issue 17's numbered items)."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from seqlstm import (CheckpointError, DataError, LSTMClassifier, OutputError, RunError, TrainConfig,
                     evaluate_checkpoint, load_checkpoint, predict_files, read_sequences, save_checkpoint, train)
from seqlstm.checkpoint import digest
from seqlstm.runs import default_run_dir, plot_run, start_run_dir


def sequences(n: int = 40, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 12, 2)).astype(np.float32)
    return dict(X=x, y=(x[:, 0, 0] > 0).astype(int))


@pytest.fixture
def small_run(tmp_path):
    """A tiny model trained on a user's .npz (2 steps): (folder, data file, checkpoint)."""
    np.savez(tmp_path / "data.npz", **sequences())
    config = TrainConfig(dataset=str(tmp_path / "data.npz"), hidden_size=4, num_layers=1, conv=2, max_steps=2,
                         out=str(tmp_path / "model.ckpt"), run_dir=str(tmp_path / "run"))
    train(config, log=lambda line: None)
    return tmp_path, tmp_path / "data.npz", tmp_path / "model.ckpt"


def one_line_error(done, *parts: str) -> None:
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("seqlstm: error: "), done.stderr
    for part in parts:
        assert part in last, last


# --- 1-4: outputs never replace an input, a device, a pipe ---------------------------------------


def test_1_save_preprocessed_never_replaces_the_photo_it_read(tmp_path, image_checkpoint, cli):
    photos = tmp_path / "photos"
    photos.mkdir()
    picture = np.full((60, 40), 255, np.uint8)
    picture[10:50, 18:22] = 0
    Image.fromarray(picture).save(photos / "seven.png")
    before = (photos / "seven.png").read_bytes()
    done = cli("predict", str(image_checkpoint), str(photos / "seven.png"), "--save-preprocessed", str(photos))
    one_line_error(done, "seven.png: is", "which this command reads")
    assert (photos / "seven.png").read_bytes() == before


def test_2_train_never_writes_its_checkpoint_over_its_data(small_run, cli):
    folder, data, _ = small_run
    before = data.read_bytes()
    done = cli("train", "--dataset", "data.npz", "--out", "data.npz", "--max-steps", "1", "--hidden-size", "4",
                   "--run-dir", "again", cwd=folder)
    one_line_error(done, "data.npz: is", "which this command reads")
    assert data.read_bytes() == before and not (folder / "again").exists()


def test_3_explain_and_export_never_write_over_the_checkpoint_they_read(small_run, cli):
    folder, _, checkpoint = small_run
    before = checkpoint.read_bytes()
    one_line_error(cli("explain", "model.ckpt", "--index", "0", "--json", "model.ckpt", cwd=folder), "which this command reads")
    one_line_error(cli("explain", "model.ckpt", "--index", "0", "--out", "model.ckpt", cwd=folder))
    one_line_error(cli("export", "model.ckpt", "--onnx", "model.ckpt", cwd=folder), "which this command reads")
    assert checkpoint.read_bytes() == before


def test_4_no_output_replaces_a_pipe_and_a_symbolic_link_is_followed(small_run, cli):
    folder, _, checkpoint = small_run
    os.mkfifo(folder / "pipe")
    one_line_error(cli("export", "model.ckpt", "--onnx", "pipe", cwd=folder), "pipe: is not a regular file")
    assert (folder / "pipe").is_fifo()
    # A link to a file elsewhere: the file is written, the link stays a link.
    (folder / "elsewhere").mkdir()
    (folder / "latest.json").symlink_to(folder / "elsewhere" / "gates.json")
    done = cli("explain", "model.ckpt", "--index", "0", "--out", "gates.png", "--json", "latest.json", cwd=folder)
    assert done.returncode == 0, done.stderr
    assert (folder / "latest.json").is_symlink() and (folder / "elsewhere" / "gates.json").stat().st_size > 0


# --- 5-6: damage is found, not trusted -----------------------------------------------------------


def tensor_bytes(path: Path) -> list[tuple[int, int]]:
    """(offset, size) of every stored tensor's bytes in a checkpoint's zip (stored uncompressed)."""
    spans = []
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if "/data/" in info.filename and info.file_size:
                with path.open("rb") as f:
                    f.seek(info.header_offset + 26)
                    name_length, extra_length = (int.from_bytes(f.read(2), "little") for _ in range(2))
                spans.append((info.header_offset + 30 + name_length + extra_length, info.file_size))
    return spans


def test_5_a_checkpoint_with_a_changed_bit_or_nan_weights_is_refused(small_run, cli):
    folder, _, checkpoint = small_run
    good = checkpoint.read_bytes()
    rng = np.random.default_rng(0)
    spans = tensor_bytes(checkpoint)
    flipped = folder / "flipped.ckpt"
    for case in range(40):
        offset, size = spans[rng.integers(len(spans))]
        data = bytearray(good)
        data[offset + int(rng.integers(size))] ^= 1 << int(rng.integers(8))
        flipped.write_bytes(bytes(data))
        with pytest.raises(CheckpointError, match="damaged|cannot read it as a checkpoint"):
            load_checkpoint(flipped)
    # A crafted file whose digest agrees with its NaN weights: refused for the NaN.
    raw = torch.load(checkpoint, weights_only=True)
    raw["state_dict"]["fc.weight"][0, 0] = float("nan")
    raw["digest"] = digest(raw)
    torch.save(raw, folder / "nan.ckpt")
    with pytest.raises(CheckpointError, match=r"weights hold NaN or infinite values \(fc\.weight\)"):
        load_checkpoint(folder / "nan.ckpt")
    one_line_error(cli("export", "nan.ckpt", "--onnx", "nan.onnx", cwd=folder), "NaN or infinite")
    assert not (folder / "nan.onnx").exists()
    one_line_error(cli("serve", "nan.ckpt", "--port", "0", cwd=folder), "NaN or infinite")


def test_6_evaluate_refuses_a_data_file_that_changed_since_training(small_run):
    folder, data, checkpoint = small_run
    assert evaluate_checkpoint(checkpoint, device="cpu").total == 8
    np.savez(data, **sequences(seed=1))  # same shape, other sequences: a silent re-split before
    with pytest.raises(DataError, match=r"data\.npz: the file changed since the model was trained on it"):
        evaluate_checkpoint(checkpoint, device="cpu")
    assert evaluate_checkpoint(checkpoint, device="cpu", dataset=data).total == 40  # the file as it is now, whole


# --- 7-8: damaged user files ---------------------------------------------------------------------


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def damaged_npz_files(folder: Path) -> dict[str, Path]:
    files = {}
    np.savez_compressed(folder / "zlib.npz", X=np.random.default_rng(0).normal(size=(50, 30)), y=np.zeros(50, int))
    data = bytearray((folder / "zlib.npz").read_bytes())
    data[200:240] = bytes(40)  # inside the first member's deflate stream
    (folder / "zlib.npz").write_bytes(bytes(data))
    files["zlib"] = folder / "zlib.npz"
    with zipfile.ZipFile(folder / "encrypted.npz", "w") as archive:
        archive.writestr("X.npy", npy_bytes(np.zeros((2, 3))))
    data = bytearray((folder / "encrypted.npz").read_bytes())
    data[6] |= 1  # the local header's "encrypted" flag
    central = data.rfind(b"PK\x01\x02")
    data[central + 8] |= 1  # and the central directory's
    (folder / "encrypted.npz").write_bytes(bytes(data))
    files["encrypted"] = folder / "encrypted.npz"
    with zipfile.ZipFile(folder / "text.npz", "w") as archive:
        archive.writestr("X.npy", npy_bytes(np.zeros((2, 3))))
        archive.writestr("notes.txt", "not an array")
    files["not an array"] = folder / "text.npz"
    # A 200-byte member whose header promises 3e12 x 3 float64 values (72 TB).
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (3_000_000_000_000, 3)})
    with zipfile.ZipFile(folder / "huge.npz", "w") as archive:
        archive.writestr("X.npy", header.getvalue() + bytes(72))
    files["huge header"] = folder / "huge.npz"
    return files


def test_7_damaged_npz_files_are_clear_errors_and_do_not_stop_the_good_files(small_run):
    folder, data, checkpoint = small_run
    for kind, path in damaged_npz_files(folder).items():
        with pytest.raises(DataError, match=r"the file is damaged or not a \.npz archive") as caught:
            read_sequences(path)
        assert "\n" not in str(caught.value), kind
    assert "header promises" in str(pytest.raises(DataError, read_sequences, folder / "huge.npz").value)
    assert "encrypted" in str(pytest.raises(DataError, read_sequences, folder / "encrypted.npz").value)
    results = predict_files(checkpoint, [folder / "zlib.npz", data, folder / "huge.npz"], device="cpu")
    assert [r.error is None for r in results] == [False] + [True] * 40 + [False]


def test_8_csv_with_a_giant_cell_or_a_label_beyond_int64(tmp_path):
    (tmp_path / "tabs.csv").write_text("a\t" + "1.5\t" * 40000 + "\n")
    with pytest.raises(DataError, match=r"tabs\.csv, line 1: not readable as CSV: field larger .*tab-separated"):
        read_sequences(tmp_path / "tabs.csv")
    (tmp_path / "big.csv").write_text("99999999999999999999999,1,2\n3,4,5\n")
    assert read_sequences(tmp_path / "big.csv").labels.tolist() == ["99999999999999999999999", "3"]


# --- 9: the machine's limits are errors, not tracebacks ------------------------------------------

FULL_DISK = """
import resource, signal, sys, torch
from seqlstm import LSTMClassifier, TrainConfig, save_checkpoint
from seqlstm.cli import main
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails as on a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.e2e
def test_9_a_write_the_disk_refuses_keeps_the_previous_checkpoint(tmp_path):
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "model.ckpt", LSTMClassifier(hidden_size=8, num_layers=1), TrainConfig(hidden_size=8, num_layers=1))
    before = (tmp_path / "model.ckpt").read_bytes()
    np.savez(tmp_path / "big.npz", **sequences(200))
    done = subprocess.run([sys.executable, "-c", FULL_DISK, "train", "--dataset", "big.npz", "--out", "model.ckpt",
                           "--hidden-size", "256", "--conv", "0", "--max-steps", "1", "--run-dir", "run"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    one_line_error(done, "could not be written")
    assert (tmp_path / "model.ckpt").read_bytes() == before
    assert not [p for p in tmp_path.rglob(".*.tmp")]


def test_9_run_directories_that_cannot_be_and_metrics_that_were_edited(tmp_path):
    (tmp_path / "taken").write_text("a file")
    with pytest.raises(RunError, match=r"--run-dir .*taken: is a file"):
        start_run_dir(tmp_path / "taken")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.jsonl").write_text('{"step": 1, "loss": "low", "lr": 0.1}\n{"step": 2, "loss": 1, "lr": 0.1}\n')
    with pytest.raises(RunError, match=r"metrics\.jsonl, line 1: 'loss' is \"low\"; it must be a number"):
        plot_run(tmp_path / "run")


def test_9_metrics_on_a_full_disk_are_an_error_that_says_so(tmp_path):
    from seqlstm.runs import MetricsLog

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.jsonl").symlink_to("/dev/full")  # every write: "No space left on device"
    log = MetricsLog(tmp_path / "run")
    with pytest.raises(OutputError, match=r"metrics\.jsonl: could not be written: No space left on device"):
        log.write({"step": 1, "loss": 0.5, "lr": 0.01})
    log.close()


def test_9_a_model_too_large_for_the_machine_is_refused_with_the_figures(small_run, cli):
    folder, _, _ = small_run
    done = cli("train", "--dataset", "data.npz", "--hidden-size", "1000000", "--run-dir", "huge", cwd=folder)
    one_line_error(done, "training a 2 x 1000000 lstm model", "GiB", "more than the", "--hidden-size")
    assert not (folder / "huge").exists()


@pytest.mark.e2e
def test_9_ctrl_c_while_starting_and_a_closed_pipe_are_no_tracebacks(small_run):
    folder, _, checkpoint = small_run
    # The first delays land while PyTorch and NumPy load, where an interrupt once aborted the process.
    for delay in (0.1, 0.2, 0.3, 0.4, 0.8, 1.5):
        process = subprocess.Popen([sys.executable, "-m", "seqlstm", "evaluate", str(checkpoint), "--device", "cpu"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(delay)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
        assert "Traceback" not in stderr, (delay, stderr)
        assert process.returncode in (130, -signal.SIGINT, 0), (delay, process.returncode, stderr)
    done = subprocess.run(f"{sys.executable} -m seqlstm predict {checkpoint} data.npz --device cpu | head -1",
                          shell=True, cwd=folder, capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "data.npz[0]" and done.stderr == ""


# --- 10: one long sequence does not pad the whole file beyond memory ----------------------------


def test_10_a_file_too_large_once_padded_is_refused_before_allocating(tmp_path, monkeypatch):
    from seqlstm.data import seqfiles

    monkeypatch.setattr(seqfiles, "available_bytes", lambda: 10_000_000)  # a 10 MB machine
    rows = ["0," + ",".join(["1"] * 20) for _ in range(500)] + ["1," + ",".join(["2"] * 200_000)]
    (tmp_path / "outlier.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(DataError, match=r"outlier\.csv: padding all 501 sequences to the longest \(200,000 steps, "
                                        r"sequence 500\) needs 0.4 GiB, more than the 10 MiB .* from 20 to 200,000"):
        read_sequences(tmp_path / "outlier.csv")


# --- 13: run directories --------------------------------------------------------------------------


def test_13_runs_started_in_the_same_second_get_folders_of_their_own(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    config = TrainConfig()
    first, second = default_run_dir(config, "mnist", now), default_run_dir(config, "mnist", now)
    assert first != second and first.is_dir() and second.is_dir()
    assert second.name == first.name + "-2"


def test_13_a_run_killed_before_its_first_checkpoint_starts_over_and_leftovers_go(small_run, cli):
    folder, _, _ = small_run
    killed = folder / "killed"
    killed.mkdir()
    (killed / "config.json").write_text('{"seqlstm": "0.1.0", "config": {}}')
    (killed / "metrics.jsonl").write_text('{"step": 1, "loss": 1.0, "lr": 0.1}\n')
    (killed / ".last.ckpt.999999.0badc0de.tmp").write_bytes(b"half a checkpoint")
    done = cli("train", "--dataset", "data.npz", "--hidden-size", "4", "--conv", "2", "--max-steps", "2",
                   "--run-dir", "killed", "--out", "again.ckpt", cwd=folder)
    assert done.returncode == 0, done.stderr
    assert (killed / "last.ckpt").is_file() and not list(killed.glob(".*.tmp"))
    assert '"loss": 1.0,' not in (killed / "metrics.jsonl").read_text()


def test_13_a_folder_of_the_users_own_files_is_not_taken_for_a_killed_run(small_run, cli):
    folder, _, _ = small_run
    (folder / "project").mkdir()
    (folder / "project" / "config.json").write_text('{"my": "settings"}')
    done = cli("train", "--dataset", "data.npz", "--max-steps", "1", "--run-dir", "project", cwd=folder)
    one_line_error(done, "project: holds config.json that no seqlstm run wrote")
    assert (folder / "project" / "config.json").read_text() == '{"my": "settings"}'


def test_6_a_resumed_run_refuses_a_data_file_that_changed(small_run, cli):
    folder, data, _ = small_run
    np.savez(data, **sequences(seed=3))
    done = cli("train", "--resume", "run/last.ckpt", cwd=folder)
    one_line_error(done, "data.npz: the file changed since the model was trained on it")


# --- 11: the server's limits ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def strict_server(image_checkpoint):
    """`seqlstm serve --request-timeout 2` in a real process; yields (host, port)."""
    process = subprocess.Popen([sys.executable, "-m", "seqlstm", "serve", str(image_checkpoint), "--port", "0",
                                "--request-timeout", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    port = int(line.split("http://127.0.0.1:")[1].split("/")[0])
    yield "127.0.0.1", port
    process.send_signal(signal.SIGINT)
    process.wait(timeout=30)


def closed_by_server(sock, within: float) -> bool:
    sock.settimeout(within)
    try:
        return sock.recv(1024) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


@pytest.mark.e2e
def test_11_trickling_clients_do_not_hold_the_server(strict_server):
    import socket
    import urllib.request

    host, port = strict_server
    slow = []
    for _ in range(300):  # slowloris: requests whose heads never end
        sock = socket.create_connection((host, port))
        sock.sendall(b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n")
        slow.append(sock)
    short = socket.create_connection((host, port))  # a body shorter than it says
    short.sendall(b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 1000\r\n\r\n0123456789")
    with urllib.request.urlopen(f"http://{host}:{port}/api/model", timeout=10) as answer:  # meanwhile, served
        assert answer.status == 200
    assert closed_by_server(short, within=10)
    assert sum(closed_by_server(sock, within=10) for sock in slow) == 300
    for sock in [*slow, short]:
        sock.close()


@pytest.mark.e2e
def test_11_the_second_request_on_a_connection_has_a_deadline_too(strict_server):
    import http.client

    host, port = strict_server
    connection = http.client.HTTPConnection(host, port, timeout=10)
    connection.request("GET", "/api/model")
    assert connection.getresponse().read().startswith(b"{")
    sock = connection.sock
    started = time.monotonic()
    closed = False
    for byte in b"GET /api/model HTTP/1.1\r\nHost: x\r\n":  # the next request, trickled
        try:
            sock.sendall(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            closed = True
            break
        if closed_by_server(sock, within=0.5):
            closed = True
            break
    assert closed and time.monotonic() - started < 10
    connection.close()


def test_11_a_request_timeout_that_is_no_time_is_refused(image_checkpoint, cli):
    one_line_error(cli("serve", str(image_checkpoint), "--request-timeout", "0"), "--request-timeout must be a positive")


@pytest.mark.e2e
def test_11_a_client_that_sends_all_before_reading_gets_its_413_and_head_is_answered(strict_server):
    import urllib.error
    import urllib.request

    host, port = strict_server
    request = urllib.request.Request(f"http://{host}:{port}/api/predict", data=bytes(5_000_000),
                                     headers={"Content-Type": "image/png"})
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=30)
    assert caught.value.code == 413 and b"more than the limit" in caught.value.read()
    with urllib.request.urlopen(urllib.request.Request(f"http://{host}:{port}/", method="HEAD"), timeout=10) as answer:
        assert answer.status == 200 and answer.read() == b""


# --- 12: downloads --------------------------------------------------------------------------------


@pytest.mark.slow
def test_12_a_trickling_mirror_is_left_for_the_next_and_a_gzip_bomb_is_refused(tmp_path, mnist_dir, file_server, monkeypatch):
    import gzip

    from conftest import Route
    from seqlstm import DownloadError, load_dataset
    from seqlstm.data import sources

    monkeypatch.setattr(sources, "GRACE_S", 1)
    labels = "t10k-labels-idx1-ubyte.gz"
    images = "t10k-images-idx3-ubyte.gz"
    for name in (labels, images):
        file_server.routes["/slow/" + name] = Route((mnist_dir / name).read_bytes(), trickle=0.2)
        file_server.routes["/good/" + name] = Route((mnist_dir / name).read_bytes())
    monkeypatch.setenv("SEQLSTM_MNIST_MIRRORS", f"{file_server.url}/slow/,{file_server.url}/good/")
    assert load_dataset("mnist", "test").labels.shape == (10000,)
    assert file_server.requests == ["/slow/" + images, "/good/" + images, "/slow/" + labels, "/good/" + labels]

    # 100 MB of zeros in 100 KB: refused after reading one byte more than the real file's 10,008.
    bomb = gzip.compress(bytes(100_000_000), compresslevel=9)
    for name in (labels, images):
        file_server.routes["/bomb/" + name] = Route(bomb)
    monkeypatch.setenv("SEQLSTM_MNIST_MIRRORS", f"{file_server.url}/bomb/")
    monkeypatch.setenv("SEQLSTM_CACHE", str(tmp_path / "other-cache"))
    with pytest.raises(DownloadError, match=r"holds more than the 7,840,016 bytes its file has"):
        load_dataset("mnist", "test")
