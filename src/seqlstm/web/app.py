"""The FastAPI app of `seqlstm serve`: the drawing page, POST /api/predict and GET /api/model.

Every request is answered from the same model, loaded once and only read afterwards: inference
runs in the framework's thread pool under `torch.inference_mode`, holding no state between
requests, so concurrent requests cannot disturb one another.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from .. import __version__
from ..checkpoint import load_checkpoint, read_checkpoint
from ..data.digits import FRAME
from ..data.userfiles import decode_image
from ..errors import ConfigError, InputError
from ..explanation import plain, trace_sample, unit_order
from ..model.cells import GATES, TRACED
from ..plots import TITLES
from ..prediction import check_reads_images, prepare_image
from ..runtime import load_runner

# The largest request body accepted. A drawing from the page is a PNG of a few kilobytes and a
# 28x28 JSON array under 4 KB; 1 MiB leaves room for photos while keeping memory per request small.
MAX_BODY_BYTES = 1024 * 1024
# A body over the limit is still read, and dropped, up to this size so its sender sees the 413.
DRAIN_BYTES = 64 * MAX_BODY_BYTES
# A PNG compresses blank areas about a thousandfold, so 1 MiB can claim a gigapixel: pictures
# whose header promises more than this (a 2000x2000 image) are refused before decoding.
MAX_PIXELS = 4_000_000
MEDIA_TYPES = ("image/png", "application/json")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Gate values in (0, 1) drawn as colours need no more; it keeps a full answer near 300 KB.
TRACE_DECIMALS = 4
STATIC = Path(__file__).with_name("static")
SEND = f"send a PNG image (Content-Type: image/png) or a {FRAME}x{FRAME} array of gray levels 0-255 (application/json)"


class ModelInfo(BaseModel):
    checkpoint: str = Field(description="the checkpoint's file name")
    cell: str = Field(description="lstm, gru or seed")
    num_layers: int
    hidden_size: int
    steps: int = Field(description="rows read, one per step")
    classes: list[str]
    gates: list[str] = Field(description="the cell's gates, in `traces`")
    traced: list[str] = Field(description="every per-unit trace in `traces`: the gates, then candidate, cell, hidden")
    titles: dict[str, str] = Field(description="a readable title for each traced name")
    dataset: str
    test_accuracy: float | None = Field(description="in percent, measured on the test split when the checkpoint was trained")
    max_body_bytes: int = Field(description="the largest request body POST /api/predict accepts")


class Reading(BaseModel):
    prediction: str = Field(description="the most probable class's name")
    probabilities: list[float] = Field(description="per class, after the last row; they sum to 1")
    image: list[list[int]] = Field(description=f"the {FRAME}x{FRAME} image the model read (0-255, bright ink on black)")
    traces: dict[str, list] | None = Field(
        description="absent with traces=false; else each traced name -> [layer][step][unit], and "
        "`probabilities` -> [step][class], the answer after each row (its last step is `probabilities`)"
    )
    unit_order: list[list[int]] | None = Field(
        description="absent with traces=false; else [layer][position] -> unit: the order the page draws the units "
        "in, by the step at which each unit's hidden state is strongest (as `seqlstm explain` draws them)"
    )


class Problem(BaseModel):
    detail: str = Field(description="what is wrong with the request and what to send instead")


PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "description": f"The drawing, at most {MAX_BODY_BYTES:,} bytes: {SEND}.",
        "content": {
            "image/png": {"schema": {"type": "string", "format": "binary"}},
            "application/json": {
                "schema": {
                    "type": "array",
                    "minItems": FRAME,
                    "maxItems": FRAME,
                    "items": {
                        "type": "array",
                        "minItems": FRAME,
                        "maxItems": FRAME,
                        "items": {"type": "number", "minimum": 0, "maximum": 255},
                    },
                }
            },
        },
    }
}
PREDICT_ERRORS = {
    400: {"model": Problem, "description": "the body is empty, not a PNG, damaged, or not JSON"},
    413: {"model": Problem, "description": f"the body is larger than {MAX_BODY_BYTES:,} bytes"},
    415: {"model": Problem, "description": "the Content-Type is neither image/png nor application/json"},
    422: {"description": "the image holds no ink, the array has the wrong shape or values, or a query parameter is invalid"},
}


def create_app(checkpoint: str | os.PathLike, runtime: str = "torch") -> FastAPI:
    """The app serving the model in `checkpoint` (on the CPU: one drawing at a time is fastest there).

    `runtime` runs the answers without traces: "torch", "onnxruntime" or "auto" (runtime.py); the
    traces are always PyTorch's. Raises CheckpointError for an unreadable checkpoint and ConfigError
    for a model that does not read 28x28 images row by row.
    """
    model, config = load_checkpoint(checkpoint, "cpu")
    check_reads_images(model)
    if model.inputs.view != "rows":
        raise ConfigError(
            f"this model reads images pixel by pixel (--view {model.inputs.view}); the page shows a "
            "model reading rows, so serve a model trained with --view rows (evaluate and predict take this one)"
        )
    runner = load_runner(model, checkpoint, runtime)
    classes = list(model.classes)
    info = ModelInfo(
        checkpoint=Path(checkpoint).name,
        cell=model.cell,
        num_layers=model.hparams["num_layers"],
        hidden_size=model.hparams["hidden_size"],
        steps=FRAME,
        classes=classes,
        gates=list(GATES[model.cell]),
        traced=list(TRACED[model.cell]),
        titles=TITLES[model.cell],
        dataset=config.dataset,
        test_accuracy=read_checkpoint(checkpoint)["metrics"].get("test_accuracy"),
        max_body_bytes=MAX_BODY_BYTES,
    )
    # Swagger UI and ReDoc load their scripts from a CDN, and the page must work offline: the
    # schema itself stays at /openapi.json.
    app = FastAPI(
        title="seqlstm",
        version=__version__,
        description="Draw a character and watch a many-to-one recurrent classifier read it row by row.",
        docs_url=None,
        redoc_url=None,
    )
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/api/model", response_model=ModelInfo, summary="Describe the served model")
    def describe() -> ModelInfo:
        return info

    @app.post(
        "/api/predict",
        response_model=Reading,
        responses=PREDICT_ERRORS,
        openapi_extra=PREDICT_BODY,
        summary="Read one drawing: the prediction, the image the model saw and every gate at every row",
    )
    async def predict(
        request: Request,
        traces: bool = Query(True, description="include the gate traces (false: a small, fast answer)"),
        preprocess: bool = Query(True, description="prepare the image the way the training images were (MNIST's or "
                                                   "Fashion-MNIST's), as `seqlstm predict` does"),
    ) -> JSONResponse:
        media = media_type(request)
        body = await read_body(request)
        reading = await run_in_threadpool(read_drawing, model, classes, body, media, preprocess, traces, config.dataset,
                                          runner)
        return JSONResponse(reading)

    return app


def media_type(request: Request) -> str:
    """The request's media type if it is one the API reads, else HTTP 415."""
    header = request.headers.get("content-type")
    media = (header or "").split(";")[0].strip().lower()
    if media not in MEDIA_TYPES:
        got = f"Content-Type {header!r} is not accepted" if header else "the request has no Content-Type"
        raise HTTPException(415, f"{got}; {SEND}")
    return media


async def read_body(request: Request) -> bytes:
    """The body, or HTTP 413 once it passes MAX_BODY_BYTES: counted as it arrives, because a chunked
    body declares no length and a declared one need not be true.

    The rest of a body too large is read and dropped (up to DRAIN_BYTES) before the 413 is sent: a
    client that sends its whole body before reading (Python's urllib) would otherwise find the
    connection reset and never see the answer.
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > DRAIN_BYTES:
        raise too_large(f"the body declares {int(declared):,} bytes, more")
    body = bytearray()
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received <= MAX_BODY_BYTES:
            body += chunk
        elif received > DRAIN_BYTES:
            break
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise too_large(f"the body declares {int(declared):,} bytes, more")
    if received > MAX_BODY_BYTES:
        raise too_large("the body is longer")
    return bytes(body)


def too_large(what: str) -> HTTPException:
    return HTTPException(413, f"{what} than the limit of {MAX_BODY_BYTES:,} bytes; send a smaller image")


def read_drawing(
    model: torch.nn.Module, classes: list[str], body: bytes, media: str, preprocess: bool, traces: bool, style: str,
    runner,
) -> dict:
    """The API's answer for one request body (see `Reading`), the picture prepared as `style`'s
    (the model's dataset) were; HTTP 400 when the body cannot be decoded, 422 when it is no usable
    picture of a character. Without traces, `runner` (runtime.py) answers."""
    if not body:
        raise HTTPException(400, f"the body is empty; {SEND}")
    png = media == "image/png"
    try:
        decoded = decode_png(body) if png else decode_json(body)
    except InputError as e:
        raise HTTPException(400, str(e)) from None
    try:
        image = prepare_image(decoded if png else json_image(decoded), preprocess, "the image", style)
    except InputError as e:
        raise HTTPException(422, str(e)) from None
    if not traces:
        final = runner.logits(torch.as_tensor(image)[None])[0].softmax(dim=0)
        return {"prediction": classes[int(final.argmax())], "probabilities": plain(final), "image": image.tolist(),
                "traces": None, "unit_order": None}
    with torch.inference_mode():
        trace = trace_sample(model, torch.as_tensor(image))
    final = trace["probabilities"][-1]
    return {
        "prediction": classes[int(final.argmax())],
        "probabilities": plain(final),
        "image": image.tolist(),
        "traces": {name: plain(t, TRACE_DECIMALS) for name, t in trace.items()},
        "unit_order": unit_order(trace).tolist(),
    }


def decode_png(body: bytes) -> np.ndarray:
    if not body.startswith(PNG_SIGNATURE):
        raise InputError(f"the body is not a PNG image (it does not begin with the PNG signature); {SEND}")
    return decode_image(body, "the PNG image", MAX_PIXELS)


def decode_json(body: bytes) -> object:
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise InputError(f"the body is not valid JSON ({e}); {SEND}") from None


def json_image(value: object) -> np.ndarray:
    """A decoded JSON value as a uint8 (28, 28) image, else InputError saying where it is not one."""
    if not isinstance(value, list):
        raise InputError(f"expected a {FRAME}x{FRAME} array (a list of {FRAME} rows), got {json_kind(value)}")
    if len(value) != FRAME:
        raise InputError(f"expected {FRAME} rows of {FRAME} numbers, got {len(value)} rows")
    for i, row in enumerate(value):
        if not isinstance(row, list) or len(row) != FRAME:
            got = f"{len(row)} entries" if isinstance(row, list) else json_kind(row)
            raise InputError(f"expected {FRAME} rows of {FRAME} numbers; row {i} holds {got}")
        for j, level in enumerate(row):
            # bool is an int to Python but not a gray level; NaN fails both comparisons.
            if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 <= level <= 255:
                raise InputError(
                    f"row {i}, column {j} holds {json.dumps(level)[:40]}; every entry must be a gray level from 0 to 255"
                )
    return np.rint(np.array(value, dtype=np.float64)).astype(np.uint8)


def json_kind(value: object) -> str:
    kinds = {dict: "an object", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return kinds.get(type(value), "null")
