"""`seqlstm serve`: the JSON API through FastAPI's test client, then a real server process on
127.0.0.1 under load and driven by a real headless Chromium."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx2
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image
from playwright.sync_api import sync_playwright

from conftest import tiny_task

from seqlstm import (
    LSTMClassifier,
    ServeError,
    TrainConfig,
    load_checkpoint,
    load_dataset,
    predict,
    save_checkpoint,
    serve,
)
from seqlstm.data.digits import mnist_style
from seqlstm.explanation import trace_sample, unit_order
from seqlstm.model.cells import GATES, TRACED
from seqlstm.prediction import prepare_file
from seqlstm.web.app import MAX_BODY_BYTES, create_app
from seqlstm.web.bodies import MAX_PIXELS

LOAD_REQUESTS = 200
LOAD_CONCURRENCY = 8


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def drawing(digit: np.ndarray) -> bytes:
    """A 28x28 MNIST digit as the page's canvas sends it: black ink on white, 280x280, as PNG."""
    return png_bytes(Image.fromarray(255 - digit).resize((280, 280), Image.Resampling.BICUBIC))


@pytest.fixture(scope="module")
def digits(mnist_dir):
    return load_dataset("mnist", "test", mnist_dir)


@pytest.fixture(scope="module")
def client(trained_checkpoint):
    """The app of a trained model, in this process."""
    with TestClient(create_app(trained_checkpoint)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def plain_client(image_checkpoint):
    """The app of a small untrained model: for what the app does, whatever the model predicts."""
    with TestClient(create_app(image_checkpoint)) as test_client:
        yield test_client


def post(client, body: bytes, content_type: str | None, query: str = ""):
    headers = {"Content-Type": content_type} if content_type else {}
    return client.post(f"/api/predict{query}", content=body, headers=headers)


@pytest.mark.slow
def test_a_png_drawing_is_read_exactly_as_seqlstm_predict_reads_the_file(client, trained_checkpoint, digits, tmp_path):
    model, _ = load_checkpoint(trained_checkpoint)
    correct = 0
    for index in range(10):
        path = tmp_path / f"{index}.png"
        path.write_bytes(drawing(digits.images[index].numpy()))
        response = post(client, path.read_bytes(), "image/png")
        assert response.status_code == 200, response.text
        reading = response.json()
        seen = prepare_file(path)
        assert np.array_equal(np.array(reading["image"], dtype=np.uint8), seen)
        expected = {g.label: g.probability for g in predict(model, seen[None], top_k=10)[0]}
        assert reading["prediction"] == max(expected, key=expected.get)
        assert reading["probabilities"] == pytest.approx([expected[str(c)] for c in range(10)], abs=1e-5)
        correct += reading["prediction"] == str(int(digits.labels[index]))

        traces = reading["traces"]
        assert list(traces) == [*TRACED["lstm"], "probabilities"]
        for name in TRACED["lstm"]:
            assert np.array(traces[name]).shape == (2, 28, 128)
        per_row = np.array(traces["probabilities"])
        assert per_row.shape == (28, 10)
        # The last row of the per-row answers is the answer (traces are rounded to 4 decimals).
        assert per_row[-1] == pytest.approx(reading["probabilities"], abs=1e-4)
        gates = np.array([traces[name] for name in GATES["lstm"]])
        assert gates.min() >= 0 and gates.max() <= 1
    assert correct >= 9


@pytest.mark.slow
def test_a_json_array_is_prepared_like_a_file_or_taken_as_it_is(client, trained_checkpoint, digits):
    model, _ = load_checkpoint(trained_checkpoint)
    digit = digits.images[7].numpy()
    raw = client.post("/api/predict?preprocess=false&traces=false", json=digit.tolist())
    assert raw.status_code == 200, raw.text
    assert raw.json()["traces"] is None
    assert raw.json()["image"] == digit.tolist()
    expected = [g.probability for g in sorted(predict(model, digit[None], top_k=10)[0], key=lambda g: int(g.label))]
    assert raw.json()["probabilities"] == pytest.approx(expected, abs=1e-5)

    # Dark ink on light paper, floats: inverted, cropped and centred like any picture.
    paper = (255 - digit).astype(float).tolist()
    prepared = client.post("/api/predict?traces=false", json=paper)
    assert prepared.status_code == 200, prepared.text
    assert prepared.json()["image"] == mnist_style(255 - digit).tolist()


@pytest.mark.slow
def test_answers_without_traces_come_from_onnxruntime_when_asked(trained_checkpoint, digits, tmp_path):
    model, _ = load_checkpoint(trained_checkpoint)
    with TestClient(create_app(trained_checkpoint, runtime="onnxruntime")) as onnx_client:
        for index in range(20):
            digit = digits.images[index].numpy()
            fast = onnx_client.post("/api/predict?preprocess=false&traces=false", json=digit.tolist()).json()
            traced = onnx_client.post("/api/predict?preprocess=false", json=digit.tolist()).json()  # PyTorch's traces
            assert fast["probabilities"] == pytest.approx(traced["probabilities"], abs=1e-5)
            assert fast["prediction"] == traced["prediction"] == predict(model, digit[None])[0][0].label
    assert len(list((tmp_path / "cache" / "onnx").iterdir())) == 1  # the checkpoint's ONNX file, exported once


@pytest.mark.slow
def test_the_model_is_described(client, trained_checkpoint):
    info = client.get("/api/model").json()
    assert info["checkpoint"] == trained_checkpoint.name
    assert (info["cell"], info["num_layers"], info["hidden_size"], info["steps"]) == ("lstm", 2, 128, 28)
    assert info["classes"] == [str(d) for d in range(10)]
    assert info["gates"] == list(GATES["lstm"]) and info["traced"] == list(TRACED["lstm"])
    assert set(info["titles"]) == set(TRACED["lstm"])
    assert 90 < info["test_accuracy"] <= 100
    assert info["max_body_bytes"] == MAX_BODY_BYTES


def test_the_page_works_offline_and_the_schema_documents_the_api(plain_client):
    client = plain_client
    page = client.get("/")
    assert page.status_code == 200 and '<canvas id="pad"' in page.text
    assets = re.findall(r'(?:href|src)="(static/[^"]+)"', page.text)
    assert sorted(assets) == ["static/app.js", "static/style.css"]
    for text in [page.text] + [client.get(f"/{asset}").text for asset in assets]:
        # Nothing is fetched from another host: no absolute or protocol-relative URLs.
        assert not re.search(r"https?://|[\"'(]//", text)
    schema = client.get("/openapi.json").json()
    body = schema["paths"]["/api/predict"]["post"]["requestBody"]
    assert set(body["content"]) == {"image/png", "application/json"}
    assert f"{MAX_BODY_BYTES:,} bytes" in body["description"]
    assert {"400", "413", "415", "422"} <= set(schema["paths"]["/api/predict"]["post"]["responses"])
    assert "/api/model" in schema["paths"]
    # Swagger UI would load its scripts from a CDN; it is off.
    assert client.get("/docs").status_code == 404


def blank_png(width: int, height: int, shade: int = 255) -> bytes:
    return png_bytes(Image.new("L", (width, height), shade))


def grid(change=None) -> bytes:
    rows = [[0] * 28 for _ in range(28)]
    if change:
        change(rows)
    return json.dumps(rows).encode()


BAD_REQUESTS = {
    "unknown content type": (b"7", "text/plain", "", 415, "Content-Type 'text/plain' is not accepted"),
    "no content type": (b"7", None, "", 415, "the request has no Content-Type"),
    "empty body": (b"", "image/png", "", 400, "the body is empty"),
    "JPEG sent as PNG": (b"\xff\xd8\xff\xe0" + bytes(100), "image/png", "", 400, "not a PNG image"),
    "truncated PNG": (None, "image/png", "", 400, "the PNG image: the image is truncated or damaged"),
    "too many pixels": (blank_png(2100, 2000), "image/png", "", 400, f"2100x2000 = 4,200,000 pixels; the limit is {MAX_PIXELS:,}"),
    "blank drawing": (blank_png(280, 280), "image/png", "", 422, "the image: no ink found"),
    "wrong size unprepared": (blank_png(100, 50, 0), "image/png", "?preprocess=false", 422, "is 100x50 pixels; without preprocessing"),
    "bad query value": (blank_png(28, 28), "image/png", "?preprocess=maybe", 422, "preprocess"),
    "invalid JSON": (b"[[0, 1,", "application/json", "", 400, "the body is not valid JSON"),
    "JSON nested too deep": (b"[" * 200_000, "application/json", "", 400, "the body is not valid JSON"),
    "JSON object": (b'{"image": []}', "application/json", "", 422, "got an object"),
    "27 rows": (json.dumps([[0] * 28] * 27).encode(), "application/json", "", 422, "got 27 rows"),
    "ragged row": (grid(lambda rows: rows[5].pop()), "application/json", "", 422, "row 5 holds 27 entries"),
    "a row that is a number": (grid(lambda rows: rows.__setitem__(2, 0)), "application/json", "", 422, "row 2 holds a number"),
    "level above 255": (grid(lambda rows: rows[3].__setitem__(4, 300)), "application/json", "", 422, "row 3, column 4 holds 300"),
    "text": (grid(lambda rows: rows[0].__setitem__(1, "x")), "application/json", "", 422, 'row 0, column 1 holds "x"'),
    "NaN": (grid(lambda rows: rows[9].__setitem__(9, float("nan"))), "application/json", "", 422, "row 9, column 9 holds NaN"),
}


@pytest.mark.parametrize("case", BAD_REQUESTS)
def test_each_bad_request_gets_its_status_and_says_what_is_wrong(plain_client, digits, case):
    client = plain_client
    body, content_type, query, status, message = BAD_REQUESTS[case]
    if body is None:
        body = drawing(digits.images[0].numpy())[:300]
    response = post(client, body, content_type, query)
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert message in (detail if isinstance(detail, str) else json.dumps(detail))


def chunked_oversize():
    """A body over the cap as a generator: sent chunked, with no Content-Length to check in advance."""
    for _ in range(MAX_BODY_BYTES // 65536 + 2):
        yield bytes(65536)


def test_bodies_over_the_cap_get_413_with_or_without_a_declared_length(plain_client, digits):
    client = plain_client
    png = drawing(digits.images[0].numpy())
    # Pillow ignores bytes after a PNG's end: a body exactly at the cap is still read.
    at_cap = png + bytes(MAX_BODY_BYTES - len(png))
    assert post(client, at_cap, "image/png", "?traces=false").status_code == 200
    declared = post(client, at_cap + b"\0", "image/png")
    assert declared.status_code == 413
    assert declared.json()["detail"] == (
        f"the body declares {MAX_BODY_BYTES + 1:,} bytes, more than the limit of {MAX_BODY_BYTES:,} bytes; send a smaller image"
    )
    streamed = client.post("/api/predict", content=chunked_oversize(), headers={"Content-Type": "image/png"})
    assert streamed.status_code == 413
    assert streamed.json()["detail"].startswith("the body is longer than the limit of 1,048,576 bytes")


@pytest.mark.parametrize("cell", ["gru", "seed"])
def test_every_cell_is_served_with_its_own_gates(cell, digits, tmp_path):
    torch.manual_seed(0)
    model = LSTMClassifier(hidden_size=16, num_layers=2, cell=cell)
    path = save_checkpoint(tmp_path / f"{cell}.ckpt", model, TrainConfig(cell=cell, hidden_size=16))
    with TestClient(create_app(path)) as cell_client:
        info = cell_client.get("/api/model").json()
        assert info["gates"] == list(GATES[cell]) and info["test_accuracy"] is None
        digit = digits.images[3].numpy()
        response = cell_client.post("/api/predict?preprocess=false", json=digit.tolist())
    assert response.status_code == 200, response.text
    traces = response.json()["traces"]
    assert list(traces) == [*TRACED[cell], "probabilities"]
    # The order the page draws the units in: a permutation of each layer's units, as explain's.
    assert response.json()["unit_order"] == unit_order(trace_sample(model, torch.as_tensor(digit))).tolist()
    assert [sorted(layer) for layer in response.json()["unit_order"]] == [list(range(16))] * 2
    assert all(np.array(traces[name]).shape == (2, 28, 16) for name in TRACED[cell])
    expected = [g.probability for g in sorted(predict(model, digit[None], top_k=10)[0], key=lambda g: int(g.label))]
    assert response.json()["probabilities"] == pytest.approx(expected, abs=1e-5)


def test_serve_without_its_packages_says_how_to_install_them(image_checkpoint, monkeypatch):
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # importing it now fails as if it were not installed
    with pytest.raises(ServeError, match=r'uvicorn is missing; install them with: pip install "seqlstm\[serve\]"'):
        serve(image_checkpoint, port=0)


def test_cli_serve_refuses_a_busy_port_and_a_missing_checkpoint(image_checkpoint, tmp_path, cli):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = cli("serve", str(image_checkpoint), "--port", str(port))
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.splitlines() == [
        f"seqlstm: error: cannot listen on 127.0.0.1:{port} (Address already in use); choose another --port "
        "(0 takes any free one) or stop the program that uses it"
    ]
    missing = cli("serve", str(tmp_path / "nope.ckpt"), "--port", "0")
    assert missing.returncode == 1
    assert missing.stderr.strip() == f"seqlstm: error: {tmp_path / 'nope.ckpt'}: no such checkpoint file"


@contextlib.contextmanager
def serving(checkpoint):
    """`seqlstm serve CKPT --port 0` in a real process; yields its URL; stopped with Ctrl+C (SIGINT),
    which must end it with 130 and one line on stderr."""
    process = subprocess.Popen(
        [sys.executable, "-m", "seqlstm", "serve", str(checkpoint), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = process.stdout.readline()
    found = re.fullmatch(rf"serving {re.escape(str(checkpoint))} at (http://127\.0\.0\.1:\d+/) \(Ctrl\+C stops\)\n", line)
    if not found:
        process.kill()
        pytest.fail(f"`seqlstm serve` printed {line!r}, stderr: {process.stderr.read()}")
    try:
        yield found.group(1)
    finally:
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=30)
    assert code == 130
    assert process.stderr.read().strip() == "seqlstm: interrupted"


@pytest.fixture(scope="module")
def server(trained_checkpoint):
    with serving(trained_checkpoint) as url:
        yield url


@pytest.mark.e2e
@pytest.mark.slow
def test_load_on_127_0_0_1_zero_errors_and_no_answer_mixed_up(server, client, digits):
    bodies = [drawing(digits.images[i].numpy()) for i in range(LOAD_CONCURRENCY)]
    expected = [post(client, body, "image/png").json() for body in bodies]

    def worker(offset: int) -> list[tuple[int, int, dict | str]]:
        results = []
        with httpx2.Client(base_url=server, timeout=60) as http:
            for n in range(offset, LOAD_REQUESTS, LOAD_CONCURRENCY):
                which = (n * 5) % len(bodies)  # each worker cycles through every digit
                response = http.post("api/predict", content=bodies[which], headers={"Content-Type": "image/png"})
                results.append((which, response.status_code, response.json() if response.status_code == 200 else response.text))
        return results

    started = time.perf_counter()
    with ThreadPoolExecutor(LOAD_CONCURRENCY) as pool:
        results = [r for batch in pool.map(worker, range(LOAD_CONCURRENCY)) for r in batch]
    elapsed = time.perf_counter() - started
    errors = [r for r in results if r[1] != 200]
    print(f"load: {len(results)} requests, {LOAD_CONCURRENCY} concurrent, {len(errors)} errors, "
          f"{len(results) / elapsed:.1f} requests/s")
    assert len(results) == LOAD_REQUESTS and errors == []
    for which, _, reading in results:
        assert reading["prediction"] == expected[which]["prediction"]
        assert reading["image"] == expected[which]["image"]
        assert reading["probabilities"] == pytest.approx(expected[which]["probabilities"], abs=1e-5)


@pytest.mark.e2e
@pytest.mark.slow
def test_the_real_server_caps_a_chunked_body(server):
    response = httpx2.post(f"{server}api/predict", content=chunked_oversize(), headers={"Content-Type": "image/png"}, timeout=60)
    assert response.status_code == 413
    assert response.json()["detail"].startswith("the body is longer than the limit of 1,048,576 bytes")


def chromium_path() -> str:
    found = shutil.which("chromium")
    if found is None:
        reason = "Debian's chromium is not installed (apt-get install chromium; .ci/run installs it)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return found


def draw(page, points: list[tuple[float, float]]) -> None:
    """A mouse stroke through `points`, given as fractions of the drawing pad's width and height."""
    box = page.locator("#pad").bounding_box()
    at = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in points]
    page.mouse.move(*at[0])
    page.mouse.down()
    for x, y in at[1:]:
        page.mouse.move(x, y, steps=12)
    page.mouse.up()


def touch(page, cdp, points: list[tuple[float, float]], before_lifting=None) -> None:
    """A finger stroke through `points` (fractions of the pad), sent as real touch events."""
    box = page.locator("#pad").bounding_box()
    at = [{"x": box["x"] + fx * box["width"], "y": box["y"] + fy * box["height"]} for fx, fy in points]
    cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [at[0]]})
    for start, end in zip(at, at[1:]):
        for t in np.linspace(0, 1, 12)[1:]:
            point = {"x": start["x"] + t * (end["x"] - start["x"]), "y": start["y"] + t * (end["y"] - start["y"])}
            cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [point]})
    if before_lifting:
        before_lifting()
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})


@contextlib.contextmanager
def chromium(url: str, errors: list):
    """A real headless Chromium with a desktop-sized page open at `url`, ready; yields (browser,
    page); every page's JavaScript errors go to `errors`."""
    executable = chromium_path()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(url)
            page.wait_for_selector("body[data-ready=true]")
            yield browser, page
        finally:
            browser.close()


@pytest.mark.e2e
@pytest.mark.slow
def test_a_real_browser_draws_a_seven_and_sees_it_read_with_its_gates(server, digits, tmp_path):
    errors = []
    with chromium(server, errors) as (browser, page):
        assert "lstm cell, 2 × 128 units" in page.inner_text("#model")
        draw(page, [(0.22, 0.2), (0.78, 0.2), (0.45, 0.85)])
        page.wait_for_selector("#gates-card:not([hidden]):not(.stale)")
        assert page.inner_text("#prediction") == "7"
        assert page.locator("#gates canvas").count() == len(TRACED["lstm"])
        assert page.eval_on_selector_all("#gates canvas", "cs => cs.map(c => [c.width, c.height])") == [[28, 128]] * 6
        page.locator("#step").fill("14")
        assert page.inner_text("#step-label").startswith("After row 14 of 28: ")
        page.locator("#step").fill("28")
        page.screenshot(path=tmp_path / "serve.png", full_page=True)
        print(f"screenshot: {tmp_path / 'serve.png'}")
        page.click("#clear")
        assert page.inner_text("#prediction") == "–" and page.locator("#gates-card").is_hidden()
        # A photo of a digit, uploaded: on the pad, then read like a drawing, with its attributions.
        photo = tmp_path / "seven.png"
        photo.write_bytes(drawing(digits.images[0].numpy()))
        page.set_input_files("#image-upload", str(photo))
        page.wait_for_selector("#gates-card:not([hidden]):not(.stale)")
        assert page.inner_text("#prediction") == "7" and page.locator("#attribution-view").is_visible()

        phone = browser.new_context(viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True)
        page = phone.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(server)
        page.wait_for_selector("body[data-ready=true]")
        cdp = phone.new_cdp_session(page)

        def live_answer_while_the_finger_is_down():
            page.wait_for_function("document.getElementById('prediction').textContent !== '–'")
            assert page.locator("#gates-card").is_hidden()

        touch(page, cdp, [(0.5, 0.15), (0.47, 0.85)], before_lifting=live_answer_while_the_finger_is_down)
        page.wait_for_selector("#gates-card:not([hidden]):not(.stale)")
        assert page.inner_text("#prediction") == "1"
        page.screenshot(path=tmp_path / "serve-phone.png", full_page=True)
    assert errors == []


# --- a model of sequences: its test sequences, pasted or uploaded ones, read step by step --------


@pytest.fixture(scope="module")
def sequence_checkpoint(tmp_path_factory):
    """A small model trained on tiny_task (3 classes, 16 steps of 2 features) with a held-out test share."""
    from seqlstm import train

    folder = tmp_path_factory.mktemp("sequences")
    np.savez(folder / "tiny.npz", **tiny_task(300))
    config = TrainConfig(dataset=str(folder / "tiny.npz"), hidden_size=8, num_layers=2, conv=0, precision="fp32",
                         batch_size=10, epochs=5, out=str(folder / "tiny.ckpt"), run_dir=str(folder / "run"))
    return train(config, log=lambda line: None).checkpoint


@pytest.fixture(scope="module")
def sequence_client(sequence_checkpoint):
    with TestClient(create_app(sequence_checkpoint)) as test_client:
        yield test_client


def ts_line(values: list[list[float]], label: str | None = None) -> str:
    """A sequence [step][feature] as a .ts case: each feature's values, features separated by ':'."""
    groups = [",".join(repr(step[k]) for step in values) for k in range(len(values[0]))]
    return ":".join(groups + ([label] if label is not None else []))


def test_a_sequence_model_serves_its_test_sequences_and_reads_every_form_alike(sequence_client, sequence_checkpoint):
    info = sequence_client.get("/api/model").json()
    assert (info["input"], info["view"], info["features"], info["steps"], info["step_name"]) == ("sequences", None, 2, 16, "step")
    assert info["test_samples"] > 0 and info["attributions"] is True
    sample = sequence_client.get("/api/samples/3").json()
    assert sample["index"] == 3 and sample["label"] in ("0", "1", "2")
    values = sample["values"]
    assert (len(values), len(values[0])) == (16, 2)

    model, _ = load_checkpoint(sequence_checkpoint)
    with torch.no_grad():
        expected = model.eval()(torch.tensor([values])).softmax(1)[0]
    as_json = sequence_client.post("/api/predict", json=values).json()
    assert as_json["probabilities"] == pytest.approx(expected.tolist(), abs=1e-5)
    assert as_json["prediction"] == model.classes[int(expected.argmax())]
    assert as_json["image"] is None and np.allclose(as_json["inputs"], values, atol=1e-6)
    assert all(len(t) == 2 and len(t[0]) == 16 for name, t in as_json["traces"].items() if name != "probabilities")
    found = as_json["attribution"]
    assert found["target"] == int(expected.argmax())
    assert (len(found["values"]), len(found["values"][0]), len(found["per_step"])) == (16, 2, 16)
    assert sum(map(sum, found["values"])) == pytest.approx(found["logit_change"] + found["completeness_error"], abs=1e-3)

    buffer = io.BytesIO()
    np.save(buffer, np.array(values, dtype=np.float64))
    for body, media in ((ts_line(values, label="1"), "text/plain"), (ts_line(values), "text/csv"),
                        (buffer.getvalue(), "application/octet-stream")):
        answer = post(sequence_client, body.encode() if isinstance(body, str) else body, media).json()
        assert answer["probabilities"] == pytest.approx(as_json["probabilities"], abs=1e-5), media
    assert post(sequence_client, f"{ts_line(values)},,\n".encode(), "text/csv").json()["probabilities"] == \
        pytest.approx(as_json["probabilities"], abs=1e-5)  # a spreadsheet's empty cells at the end of the row
    fast = post(sequence_client, json.dumps(values).encode(), "application/json", "?traces=false").json()
    assert fast["traces"] is None and fast["attribution"] is None
    assert fast["probabilities"] == pytest.approx(as_json["probabilities"], abs=1e-5)


@pytest.mark.parametrize("body, media, status, message", [
    (b"[1, 2, 3]", "application/json", 422, "the JSON array has shape (3,); the model reads 1 to 20,000 steps of 2 features: (steps, 2)"),
    (b'[[1, "a"]]', "application/json", 422, "the JSON array is not a rectangular array of numbers: every step needs 2 values"),
    (b"[[1, NaN]]", "application/json", 422, "the JSON array holds NaN or infinite values; fill or cut the missing steps first"),
    (b"1,2,3", "text/plain", 422, "the line holds 1 group of values separated by ':'; the model reads 2 features, one group each"),
    (b"1,2:3", "text/csv", 422, "the features have different lengths: 2, 1 values"),
    (b"1,x:3,4", "text/plain", 422, "the line holds a value that is not a number (could not convert string to float: 'x')"),
    (b"not npy", "application/octet-stream", 400, "the body is not a .npy array"),
    (b"\x89PNG", "image/png", 415, "Content-Type 'image/png' is not accepted; send a sequence: a JSON array of steps"),
    (b"", "text/plain", 400, "the body is empty; send a sequence"),
    (b"1,2:3,4\n5,6:7,8", "text/plain", 422, "the text holds 2 lines; send one sequence on one line"),
    (json.dumps([[0.5, 0.5]] * 33).encode(), "application/json", 422,
     "the sequence has 33 steps; answers with traces follow at most 32 (twice the training length)"),
])
def test_each_bad_sequence_gets_its_status_and_says_what_is_wrong(sequence_client, body, media, status, message):
    response = post(sequence_client, body, media)
    assert response.status_code == status, response.text
    assert response.json()["detail"].startswith(message), response.json()["detail"]


def test_samples_out_of_range_and_for_an_image_model_are_404_with_what_to_do(sequence_client, plain_client):
    count = sequence_client.get("/api/model").json()["test_samples"]
    response = sequence_client.get(f"/api/samples/{count}")
    assert response.status_code == 404
    assert response.json()["detail"] == f"there are {count} test sequences: ask for 0 to {count - 1}"
    assert plain_client.get("/api/samples/0").json()["detail"] == "this model reads images; draw or upload one"
    schema = sequence_client.get("/openapi.json").json()["paths"]["/api/predict"]["post"]["requestBody"]
    assert set(schema["content"]) == {"application/json", "text/csv", "text/plain", "application/octet-stream"}


@pytest.mark.e2e
@pytest.mark.slow
def test_a_real_browser_reads_a_test_sequence_and_a_pasted_one_with_gates_and_attributions(sequence_checkpoint, tmp_path):
    errors = []
    with serving(sequence_checkpoint) as url, chromium(url, errors) as (_, page):
        assert page.inner_text("#title") == "Give a sequence and watch the model read it"
        assert page.locator("#draw-card").is_hidden() and page.locator("#sequence-card").is_visible()
        page.fill("#sample", "2")
        page.click("#read-sample")
        page.wait_for_selector("#gates-card:not([hidden])")
        assert page.inner_text("#sequence-status").startswith("Test sequence 2, true class ")
        assert page.inner_text("#prediction") in ("0", "1", "2")
        assert page.eval_on_selector_all("#gates canvas", "cs => cs.map(c => [c.width, c.height])") == [[16, 8]] * 6
        assert page.inner_text("#step-label").startswith("After step 16 of 16: ")
        # The trace: both features, each over a band coloured by its attributions.
        assert page.get_attribute("#trace", "data-features") == "0,1"
        coloured = page.evaluate("""() => {
            const c = document.getElementById('trace'), d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0; for (let i = 0; i < d.length; i += 4) if (Math.abs(d[i] - d[i + 2]) > 40) n++; return n / (d.length / 4); }""")
        assert coloured > 0.05, coloured  # red or blue where the attributions are, not white or grey everywhere
        assert page.locator("#attribution-note").is_visible()
        page.screenshot(path=tmp_path / "serve-sequence.png", full_page=True)
        print(f"screenshot: {tmp_path / 'serve-sequence.png'}")

        page.fill("#pasted", "0.5,0.4,0.3,0.2,0.1:1,1,1,1,1")
        page.click("#read-pasted")
        page.wait_for_function("document.getElementById('sequence-status').textContent.startsWith('The pasted')")
        assert page.inner_text("#sequence-status") == "The pasted sequence: 5 steps of 2 features."
        assert page.inner_text("#step-label").startswith("After step 5 of 5: ")
        page.fill("#pasted", "1,2,3")
        page.click("#read-pasted")
        page.wait_for_function("document.getElementById('sequence-status').textContent.includes('group')")
        assert "the model reads 2 features, one group each" in page.inner_text("#sequence-status")
    assert errors == []
