"""Shared fixtures: an isolated cache, the real MNIST and Fashion-MNIST files, a real HTTP server on
127.0.0.1, the command line in this process and in a real one, and the test tiers.

Tiers (markers, registered in pyproject.toml): `e2e` runs real processes or a browser, `slow` takes
more than a few seconds, `accuracy` holds a trained model to a floor on real data; every other test
is `fast`, and `pytest -m fast` runs those alone, in under a minute."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
# Read once, before the per-test isolation below removes it from the environment, and made
# absolute: tests run commands in other folders, and `SEQLSTM_DATA=../shared/data` must still hold.
SHARED_DATA = Path(os.environ["SEQLSTM_DATA"]).resolve() if os.environ.get("SEQLSTM_DATA") else None


def data_folder(name: str, marker: str) -> Path:
    """`$SEQLSTM_DATA/<name>`, the one place tests read shared data from, when it holds `marker`;
    else the test is skipped (and fails in CI, which must provide it)."""
    directory = SHARED_DATA / name if SHARED_DATA is not None else None
    if directory is None or not (directory / marker).is_file():
        where = f"{directory} has no {marker}" if directory is not None else "SEQLSTM_DATA is not set"
        if os.environ.get("CI"):
            pytest.fail(f"{where}; CI must set SEQLSTM_DATA to a folder holding {name}/")
        pytest.skip(f"{where}; set SEQLSTM_DATA to a folder holding {name}/")
    return directory


TIERS = ("e2e", "slow", "accuracy")


def pytest_collection_modifyitems(items):
    """Every test that no tier claims is `fast`."""
    for item in items:
        if not any(item.get_closest_marker(tier) for tier in TIERS):
            item.add_marker(pytest.mark.fast)


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path, monkeypatch):
    """Every test gets its own empty cache and no mirror or data-root settings from the caller."""
    monkeypatch.setenv("SEQLSTM_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SEQLSTM_MNIST_MIRRORS", raising=False)
    monkeypatch.delenv("SEQLSTM_DATA", raising=False)


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The folder with the four real MNIST files: `$SEQLSTM_DATA/mnist`."""
    return data_folder("mnist", "train-images-idx3-ubyte.gz")


@pytest.fixture(scope="session")
def fashion_dir() -> Path:
    """Fashion-MNIST as Debian's `dataset-fashion-mnist` installs it (`.ci/run` installs it in CI)."""
    directory = Path("/usr/share/datasets/fashion-mnist")
    if not directory.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"{directory} not found; CI must install dataset-fashion-mnist")
        pytest.skip(f"{directory} not found: apt-get install dataset-fashion-mnist")
    return directory


def product_photo(image: np.ndarray, seed: int) -> np.ndarray:
    """A uint8 (28, 28) Fashion-MNIST image as a product photo: the article dark on an off-white
    background (as Zalando's were before negation), enlarged 6x, with seeded uneven margins."""
    margins = np.random.default_rng(seed).integers(5, 80, size=4)
    top, left, bottom, right = (int(m) for m in margins)
    article = np.asarray(Image.fromarray(255 - image).resize((168, 168), Image.Resampling.BICUBIC))
    photo = np.full((168 + top + bottom, 168 + left + right), 250, dtype=np.uint8)
    photo[top : top + 168, left : left + 168] = article
    return photo


def tiny_task(n: int = 200, seed: int = 0) -> dict:
    """The `X` and `y` of a tiny learnable problem for mechanics tests: three classes of 16 steps x 2
    features, told apart by the level of the first steps of feature 0."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = rng.normal(0, 1, (n, 16, 2)).astype(np.float32)
    x[:, :4, 0] += y[:, None]
    return dict(X=x, y=y)


# A tiny model for the tiny problem, as `seqlstm train` flags.
TINY_MODEL = ("--hidden-size", "8", "--num-layers", "1", "--conv", "0", "--precision", "fp32")


@dataclass
class Ran:
    """What a command did: its exit code and output, as subprocess.CompletedProcess names them."""

    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(capsys, caplog, monkeypatch):
    """`cli(*ARGS, cwd=None)` runs `seqlstm ARGS` in this process, in `cwd`, and returns a Ran whose
    stderr holds the lines seqlstm logged, then what it printed there. For what a message says; the
    tests that need a real process (exit by signal, the output streams themselves) use `run_cli`."""
    from seqlstm.cli import main

    def run(*args: str, cwd: Path | None = None) -> Ran:
        if cwd is not None:
            monkeypatch.chdir(cwd)
        caplog.clear()
        with caplog.at_level(logging.INFO):
            try:
                code = main(list(args))
            except SystemExit as e:  # argparse's own errors
                code = e.code
        out, err = capsys.readouterr()
        return Ran(code, out, "".join(f"{r.getMessage()}\n" for r in caplog.records) + err)

    return run


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `python -m seqlstm ARGS` in a real process and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "seqlstm", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
    )


class Route:
    """What the test server answers for one path: a body, a status, a body cut short, or a body sent
    one byte every `trickle` seconds (until the client gives up)."""

    def __init__(self, body: bytes = b"", status: int = 200, cut_after: int | None = None, trickle: float | None = None):
        self.body, self.status, self.cut_after, self.trickle = body, status, cut_after, trickle


class FileServer:
    """A threaded HTTP server on 127.0.0.1 serving `routes`; `requests` records every path asked for."""

    def __init__(self):
        self.routes: dict[str, Route] = {}
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.path)
                route = server.routes.get(self.path)
                if route is None:
                    self.send_error(404)
                    return
                if route.status != 200:
                    self.send_error(route.status)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(route.body)))
                self.end_headers()
                if route.trickle is not None:
                    try:
                        for k in range(len(route.body)):
                            self.wfile.write(route.body[k : k + 1])
                            self.wfile.flush()
                            time.sleep(route.trickle)
                    except OSError:  # the client gave up, as it should
                        self.close_connection = True
                elif route.cut_after is None:
                    self.wfile.write(route.body)
                else:
                    # Promise the whole file, deliver part of it, and drop the connection.
                    self.wfile.write(route.body[: route.cut_after])
                    self.wfile.flush()
                    self.close_connection = True

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        # A short poll: shutdown() waits for the loop to notice, once per test.
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def file_server():
    server = FileServer()
    yield server
    server.close()


@pytest.fixture(scope="session")
def trained_checkpoint(mnist_dir, tmp_path_factory) -> Path:
    """A model trained for one epoch on the real MNIST (about 97 %), once per test session."""
    from seqlstm import TrainConfig, train

    folder = tmp_path_factory.mktemp("trained")
    config = TrainConfig(epochs=1, data_dir=str(mnist_dir), out=str(folder / "model.ckpt"), run_dir=str(folder / "run"))
    return train(config, log=lambda line: None).checkpoint


@pytest.fixture(scope="session")
def image_checkpoint(tmp_path_factory) -> Path:
    """A small untrained model of MNIST's images (rows view): for what a command does with a
    checkpoint, not for what the model predicts."""
    from seqlstm import LSTMClassifier, TrainConfig, save_checkpoint
    from seqlstm.data.sources import DATASETS

    torch.manual_seed(0)
    model = LSTMClassifier(hidden_size=8, num_layers=1, classes=DATASETS["mnist"].classes)
    path = tmp_path_factory.mktemp("image-model") / "model.ckpt"
    save_checkpoint(path, model, TrainConfig(hidden_size=8, num_layers=1))
    return path


@pytest.fixture(scope="session")
def ucr_dir() -> Path:
    """The UCR problems in `.ts` files: `$SEQLSTM_DATA/ucr`."""
    return data_folder("ucr", "ItalyPowerDemand_TRAIN.ts")
