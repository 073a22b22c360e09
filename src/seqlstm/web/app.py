"""The FastAPI app of `seqlstm serve`: the page, POST /api/predict, GET /api/model and, for a model
of sequences, GET /api/samples/{index}.

An image model (any view) reads a drawing or an uploaded picture; a sequence model reads a pasted
or uploaded sequence, or one of its test sequences. Every request is answered from the same model,
loaded once and only read afterwards: inference runs in the framework's thread pool, holding no
state between requests, so concurrent requests cannot disturb one another.
"""

from __future__ import annotations

import importlib.util
import math
import os
from pathlib import Path

import torch
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from .. import __version__
from ..checkpoint import load_checkpoint, read_checkpoint
from ..data.digits import FRAME
from ..data.records import samples_for
from ..errors import InputError, SeqlstmError
from ..explanation import attribution_dict, attribution_of, plain, steps_of, trace_sample, unit_order
from ..model.cells import GATES, TRACED
from ..plots import TITLES
from ..prediction import prepare_image
from ..runtime import load_runner
from .bodies import (MAX_SEQUENCE_STEPS, SEND, SEND_SEQUENCE, checked_sequence, decode_json, decode_png, decode_sequence,
                     json_image)

# The largest request body accepted. A drawing from the page is a PNG of a few kilobytes and a
# 28x28 JSON array under 4 KB; 1 MiB leaves room for photos while keeping memory per request small.
MAX_BODY_BYTES = 1024 * 1024
# A body over the limit is still read, and dropped, up to this size so its sender sees the 413.
DRAIN_BYTES = 64 * MAX_BODY_BYTES
MEDIA_TYPES = ("image/png", "application/json")
SEQUENCE_MEDIA_TYPES = ("application/json", "text/csv", "text/plain", "application/octet-stream")
# Gate values in (0, 1) drawn as colours need no more: a full answer for a 28-row image of the
# tutorial's model is about 350 KB (784 pixels read one per step: about 10 MB).
TRACE_DECIMALS = 4
STATIC = Path(__file__).with_name("static")



class ModelInfo(BaseModel):
    checkpoint: str = Field(description="the checkpoint's file name")
    cell: str = Field(description="lstm, gru or seed")
    num_layers: int
    hidden_size: int
    input: str = Field(description="images or sequences")
    view: str | None = Field(description="images: how they are read (rows, pixels or permuted); sequences: null")
    features: int = Field(description="values per input step")
    steps: int = Field(description="steps the core reads for a training sample (an image's rows or pixels; the "
                                   "longest training sequence, in the core's patches)")
    step_name: str = Field(description="what one step is: row, pixel or step")
    classes: list[str]
    gates: list[str] = Field(description="the cell's gates, in `traces`")
    traced: list[str] = Field(description="every per-unit trace in `traces`: the gates, then candidate, cell, hidden")
    titles: dict[str, str] = Field(description="a readable title for each traced name")
    dataset: str
    test_accuracy: float | None = Field(description="in percent, measured on the test split when the checkpoint was trained")
    test_samples: int = Field(description="sequences: how many test sequences GET /api/samples/{index} serves (0: "
                                          "the test data cannot be read here); images: 0")
    attributions: bool = Field(description="whether answers with traces carry attributions (Captum is installed)")
    max_body_bytes: int = Field(description="the largest request body POST /api/predict accepts")


class Attributions(BaseModel):
    method: str = Field(description="how they were computed, and from what baseline")
    target: int = Field(description="the class explained: the predicted one")
    values: list[list[float]] = Field(description="integrated gradients, [row][column] for an image, [step][feature] "
                                                  "for a sequence; red for the class, blue against it")
    per_step: list[float] = Field(description="summed over what each core step read: [step]")
    logit_change: float = Field(description="the target's logit at the input minus at the baseline")
    completeness_error: float = Field(description="sum(values) - logit_change: how far to trust them")


class Reading(BaseModel):
    prediction: str = Field(description="the most probable class's name")
    probabilities: list[float] = Field(description="per class, after the last step; they sum to 1")
    image: list[list[int]] | None = Field(
        description=f"images: the {FRAME}x{FRAME} image the model read (0-255, bright ink on black); sequences: null")
    inputs: list[list[float]] | None = Field(description="sequences: the sequence the model read, [step][feature]; images: null")
    traces: dict[str, list] | None = Field(
        description="absent with traces=false; else each traced name -> [layer][step][unit], and "
        "`probabilities` -> [step][class], the answer after each step (its last step is `probabilities`)"
    )
    unit_order: list[list[int]] | None = Field(
        description="absent with traces=false; else [layer][position] -> unit: the order the page draws the units "
        "in, by the step at which each unit's hidden state is strongest (as `seqlstm explain` draws them)"
    )
    attribution: Attributions | None = Field(
        description="absent with traces=false or without Captum; else which inputs decided the answer")


class Sample(BaseModel):
    index: int
    label: str = Field(description="its true class")
    values: list[list[float]] = Field(description="[step][feature], without padding")


class Problem(BaseModel):
    detail: str = Field(description="what is wrong with the request and what to send instead")


def predict_body(images: bool) -> dict:
    """The OpenAPI description of POST /api/predict's body for an image or a sequence model."""
    if not images:
        number = {"type": "number"}
        steps = {"type": "array", "minItems": 1, "maxItems": MAX_SEQUENCE_STEPS,
                 "items": {"oneOf": [number, {"type": "array", "items": number}]}}
        text = {"schema": {"type": "string"}}
        return {"requestBody": {"required": True, "description": f"The sequence, at most {MAX_BODY_BYTES:,} bytes: {SEND_SEQUENCE}.",
                                "content": {"application/json": {"schema": steps}, "text/csv": text, "text/plain": text,
                                            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}}
    gray = {"type": "number", "minimum": 0, "maximum": 255}
    row = {"type": "array", "minItems": FRAME, "maxItems": FRAME, "items": gray}
    return {"requestBody": {"required": True, "description": f"The drawing, at most {MAX_BODY_BYTES:,} bytes: {SEND}.",
                            "content": {"image/png": {"schema": {"type": "string", "format": "binary"}},
                                        "application/json": {"schema": {"type": "array", "minItems": FRAME,
                                                                        "maxItems": FRAME, "items": row}}}}}


PREDICT_ERRORS = {
    400: {"model": Problem, "description": "the body is empty, or no PNG, JSON, text or .npy that can be decoded"},
    413: {"model": Problem, "description": f"the body is larger than {MAX_BODY_BYTES:,} bytes"},
    415: {"model": Problem, "description": "the Content-Type is not one the model reads (see the body's media types)"},
    422: {"description": "the image holds no ink, the array or sequence has the wrong shape or values, or a query "
                        "parameter is invalid"},
}


def create_app(checkpoint: str | os.PathLike, runtime: str = "torch") -> FastAPI:
    """The app serving the model in `checkpoint` (on the CPU: one input at a time is fastest there).

    `runtime` runs the answers without traces: "torch", "onnxruntime" or "auto" (runtime.py); the
    traces and attributions are always PyTorch's. A sequence model's test sequences are served when
    its test data can be read here. Raises CheckpointError for an unreadable checkpoint.
    """
    model, config = load_checkpoint(checkpoint, "cpu")
    model.eval()
    images = model.reads_images
    runner = load_runner(model, checkpoint, runtime)
    classes = list(model.classes)
    samples = None if images else readable_test_split(config, model)
    info = ModelInfo(
        checkpoint=Path(checkpoint).name,
        cell=model.cell,
        num_layers=model.hparams["num_layers"],
        hidden_size=model.hparams["hidden_size"],
        input=model.inputs.kind,
        view=model.inputs.view if images else None,
        features=model.inputs.features,
        steps=math.ceil(model.inputs.steps / model.patch),
        step_name=("row" if model.inputs.view == "rows" else "pixel") if images else "step",
        classes=classes,
        gates=list(GATES[model.cell]),
        traced=list(TRACED[model.cell]),
        titles=TITLES[model.cell],
        dataset=config.dataset,
        test_accuracy=read_checkpoint(checkpoint)["metrics"].get("test_accuracy"),
        test_samples=0 if samples is None else len(samples.labels),
        attributions=importlib.util.find_spec("captum") is not None,
        max_body_bytes=MAX_BODY_BYTES,
    )
    # Swagger UI and ReDoc load their scripts from a CDN, and the page must work offline: the
    # schema itself stays at /openapi.json.
    app = FastAPI(
        title="seqlstm",
        version=__version__,
        description="Watch a many-to-one recurrent classifier read a drawing or a sequence, step by step.",
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

    @app.get("/api/samples/{index}", response_model=Sample, responses={404: {"model": Problem}},
             summary="One of a sequence model's test sequences, to send to POST /api/predict")
    def sample(index: int) -> Sample:
        if samples is None:
            raise HTTPException(404, "this model reads images; draw or upload one" if images else
                                f"the test data of {config.dataset} cannot be read here; paste or upload a sequence")
        if not 0 <= index < len(samples.labels):
            raise HTTPException(404, f"there are {len(samples.labels)} test sequences: ask for 0 to {len(samples.labels) - 1}")
        length = len(samples.inputs[index]) if samples.lengths is None else int(samples.lengths[index])
        return Sample(index=index, label=classes[int(samples.labels[index])], values=samples.inputs[index][:length].tolist())

    @app.post(
        "/api/predict",
        response_model=Reading,
        responses=PREDICT_ERRORS,
        openapi_extra=predict_body(images),
        summary="Read one input: the prediction, what the model read, every gate at every step and what decided it",
    )
    async def predict(
        request: Request,
        traces: bool = Query(True, description="include the gate traces and attributions (false: a small, fast answer)"),
        preprocess: bool = Query(True, description="images: prepare the picture the way the training images were "
                                                   "(MNIST's or Fashion-MNIST's), as `seqlstm predict` does"),
    ) -> JSONResponse:
        media = media_type(request, MEDIA_TYPES if images else SEQUENCE_MEDIA_TYPES, SEND if images else SEND_SEQUENCE)
        body = await read_body(request)
        if images:
            reading = await run_in_threadpool(read_drawing, model, classes, body, media, preprocess, traces,
                                              config.dataset, runner, info.attributions)
        else:
            reading = await run_in_threadpool(read_sequence, model, classes, body, media, traces, runner, info.attributions)
        return JSONResponse(reading)

    return app


def readable_test_split(config, model):
    """The test split of a sequence model (records.Sequences), or None when its data cannot be read here."""
    try:
        return samples_for(config, model, "test")
    except SeqlstmError:
        return None


def media_type(request: Request, accepted: tuple[str, ...], send: str) -> str:
    """The request's media type if it is one of `accepted`, else HTTP 415 saying what to `send`."""
    header = request.headers.get("content-type")
    media = (header or "").split(";")[0].strip().lower()
    if media not in accepted:
        got = f"Content-Type {header!r} is not accepted" if header else "the request has no Content-Type"
        raise HTTPException(415, f"{got}; {send}")
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
    runner, attributions: bool = True,
) -> dict:
    """The API's answer for one picture (see `Reading`), prepared as `style`'s (the model's dataset)
    were; HTTP 400 when the body cannot be decoded, 422 when it is no usable picture of a character.
    Without traces, `runner` (runtime.py) answers."""
    if not body:
        raise HTTPException(400, f"the body is empty; {SEND}")
    png = media == "image/png"
    try:
        decoded = decode_png(body) if png else decode_json(body, SEND)
    except InputError as e:
        raise HTTPException(400, str(e)) from None
    try:
        image = prepare_image(decoded if png else json_image(decoded), preprocess, "the image", style)
    except InputError as e:
        raise HTTPException(422, str(e)) from None
    return answer(model, classes, torch.as_tensor(image), traces, runner, attributions) | {"image": image.tolist(),
                                                                                         "inputs": None}


def read_sequence(model: torch.nn.Module, classes: list[str], body: bytes, media: str, traces: bool, runner,
                  attributions: bool = True) -> dict:
    """The API's answer for one sequence (see `Reading`); HTTP 400 when the body cannot be decoded,
    422 when it is no sequence of the model's features or too long to trace."""
    if not body:
        raise HTTPException(400, f"the body is empty; {SEND_SEQUENCE}")
    try:
        decoded = decode_sequence(body, media)
    except InputError as e:
        raise HTTPException(400, str(e)) from None
    try:
        values = checked_sequence(decoded, media, model.inputs.features)
    except InputError as e:
        raise HTTPException(422, str(e)) from None
    # Tracing a model that reads patches, pools or reads backwards reruns it on every prefix: the
    # work grows with the square of the length, so traced answers stop at twice the training length.
    longest = 2 * model.inputs.steps
    if traces and len(values) > longest:
        raise HTTPException(422, f"the sequence has {len(values):,} steps; answers with traces follow at most {longest:,} "
                                 "(twice the training length): send a shorter one, or ask with traces=false")
    x = torch.from_numpy(values)
    try:
        return answer(model, classes, x, traces, runner, attributions) | {"image": None, "inputs": plain(x)}
    except InputError as e:  # longer than the ONNX file takes
        raise HTTPException(422, str(e)) from None


def answer(model: torch.nn.Module, classes: list[str], raw: torch.Tensor, traces: bool, runner,
           attributions: bool = True) -> dict:
    """The prediction for one raw sample (an image (H, W) or a sequence (T, F)); with `traces`, every
    gate at every step (PyTorch's explicit equations), and with `attributions` (Captum installed)
    which inputs decided it."""
    if not traces:
        lengths = None if model.reads_images else torch.tensor([len(raw)])
        final = runner.logits(raw[None], lengths)[0].softmax(dim=0)
        return {"prediction": classes[int(final.argmax())], "probabilities": plain(final), "traces": None,
                "unit_order": None, "attribution": None}
    with torch.inference_mode():
        trace = trace_sample(model, raw)
    final = trace["probabilities"][-1]
    predicted = int(final.argmax())
    attribution, read = attribution_of(model, raw, predicted) if attributions else (None, None)
    explained = None if attribution is None else attribution_dict(attribution, steps_of(read, model.patch), TRACE_DECIMALS)
    return {
        "prediction": classes[predicted],
        "probabilities": plain(final),
        "traces": {name: plain(t, TRACE_DECIMALS) for name, t in trace.items()},
        "unit_order": unit_order(trace).tolist(),
        "attribution": explained,
    }


