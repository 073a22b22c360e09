"""One checkpoint format: plain containers and tensors, written atomically, read weights-only.

A checkpoint is a dict: `format`, `format_version`, `seqlstm_version`, `config` (TrainConfig as
plain types), `model_args` (the classifier's constructor arguments), `state_dict` (CPU tensors)
and `metrics`. A run's `last.ckpt` also holds `training`: everything needed to continue the run
exactly (see training/state.py); one saved by SequenceClassifier holds `estimator` (its parameters and label
values). `digest` is a SHA-256 of everything else, taken when it was written: a flipped bit, a
partial copy or an edit is refused on load, as are weights that are not finite.
`torch.load(weights_only=True)` reads it; nothing in it can run code.

Format versions: 1 had no `training` key and no run settings in `config` (run_dir, val_size,
eval_every, checkpoint_every); version 2 added both. Version 3 added `encoding`, a side-car saying
how stored samples became the model's input, and the class names. Version 4 moved all of that into
the model: `model_args` holds its `classes` and its input transform's arguments (`inputs`), and the
transform's statistics and pixel order are tensors of the `state_dict` (`inputs.*`). Older files
load through `upgrade`, the one place that knows the old layouts.
"""

from __future__ import annotations

import hashlib
import math
import os
import pickle
import re
import warnings
from pathlib import Path

import torch

from .atomic import replace_atomically
from .config import TrainConfig
from .data.records import source_for
from .errors import CheckpointError, ConfigError, DataError
from .model import LSTMClassifier
from .model.inputs import IMAGES, SEQUENCES

FORMAT = "seqlstm-checkpoint"
FORMAT_VERSION = 4


def save_checkpoint(
    path: str | os.PathLike,
    model: LSTMClassifier,
    config: TrainConfig,
    metrics: dict | None = None,
    training: dict | None = None,
    estimator: dict | None = None,
) -> Path:
    """Write `model` and `config` (and, for a resumable checkpoint, the `training` state) to `path`.

    The model's class names and input transform are saved with it (in `model_args` and its weights).
    The data goes to a temporary file in the same folder, is flushed to disk, then renamed over
    `path`, so a crash leaves either the old file or the complete new one, never a partial file.
    `training` must hold tensors and plain containers only; so must `estimator`, what
    SequenceClassifier keeps beside the model (its parameters and label values). Raises OutputError when `path` cannot
    be written, ConfigError when `model` is not the cell `config` names (such a file could not be
    loaded again). Returns `path`.
    """
    from . import __version__

    if model.cell != config.cell:
        raise ConfigError(
            f"the model is a {model.cell!r} cell but its config says {config.cell!r}; "
            f"save it with TrainConfig(cell={model.cell!r}, ...)"
        )

    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "seqlstm_version": __version__,
        "config": config.to_dict(),
        "model_args": dict(model.hparams),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "metrics": dict(metrics or {}),
    }
    if training is not None:
        payload["training"] = training
    if estimator is not None:
        payload["estimator"] = estimator
    payload["digest"] = digest(payload)
    return replace_atomically(path, lambda tmp: torch.save(payload, tmp))


def digest(payload: dict) -> str:
    """SHA-256 (hex) of a checkpoint dict's contents: every tensor's dtype, shape and bytes and every
    plain value, in a fixed order (dict keys sorted), the `digest` entry itself left out."""
    h = hashlib.sha256()

    def feed(value) -> None:
        if isinstance(value, torch.Tensor):
            t = value.detach().cpu().contiguous()
            h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        elif isinstance(value, dict):
            h.update(b"{")
            for key in sorted(value, key=str):
                if key != "digest":
                    feed(str(key))
                    feed(value[key])
            h.update(b"}")
        elif isinstance(value, (list, tuple)):
            h.update(b"[")
            for item in value:
                feed(item)
            h.update(b"]")
        else:
            h.update(f"{type(value).__name__}:{value!r};".encode())

    feed(payload)
    return h.hexdigest()


def upgrade(data: dict) -> dict:
    """A checkpoint dict of any earlier format version in today's layout (see the module docstring).

    Each step applies only where the old layout is found, so a file whose version number says older
    than its contents still loads. Files of version 1 and 2 knew no other input than square images
    read by rows, their classes named as the published dataset's when the counts agree.
    """
    args, state = dict(data["model_args"]), dict(data["state_dict"])
    encoding = data.pop("encoding", None)
    count, features = args.get("num_classes", 10), args.get("input_size", 28)
    if "inputs" not in args:
        if isinstance(encoding, dict) and encoding.get("kind") == "features":
            args["inputs"] = dict(kind=SEQUENCES, steps=encoding.get("steps"))
        elif isinstance(encoding, dict):
            view, shape = encoding.get("view", "rows"), encoding.get("image_shape")
            if shape is None:  # the first version-3 files: square images, as their steps say
                side = encoding.get("steps", features) if view == "rows" else math.isqrt(encoding.get("steps", 1))
                shape = [side, side]
            args["inputs"] = dict(kind=IMAGES, image_shape=shape, view=view)
            if encoding.get("permutation") is not None:
                state["inputs.permutation"] = encoding["permutation"]
        else:
            args["inputs"] = dict(kind=IMAGES, image_shape=[features, features], view="rows")
    if "classes" not in args:
        if isinstance(encoding, dict) and "classes" in encoding:
            args["classes"] = list(encoding["classes"])
        else:
            try:
                known = source_for(data["config"].get("dataset", "mnist"))
            except DataError:
                known = None
            named = known is not None and known.kind == IMAGES and len(known.dataset.classes) == count
            args["classes"] = list(known.dataset.classes) if named else [str(k) for k in range(count)]
    # Statistics before version 4 were the model's own buffers; before version 3 there were none
    # (the input was read as it is).
    for old, new, fill in (("input_mean", "inputs.mean", 0.0), ("input_std", "inputs.std", 1.0)):
        if old in state:
            state[new] = state.pop(old)
        elif new not in state:
            state[new] = torch.full((features,), fill)
    return {**data, "model_args": args, "state_dict": state}


def read_checkpoint(path: str | os.PathLike) -> dict:
    """The validated checkpoint dict at `path` (tensors on the CPU).

    Raises CheckpointError for a missing, truncated, foreign, unsafe or too-new file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        with warnings.catch_warnings():
            # torch warns about odd pickles before failing on them; the failure is reported below.
            warnings.simplefilter("ignore")
            data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # Name the offending object but drop torch's advice to allowlist it.
        reason = re.search(r"Unsupported .*?(?= was not|\. |\.?$)", str(e), re.MULTILINE)
        raise CheckpointError(
            f"{path}: refused to load: it holds Python objects other than tensors and plain containers"
            f"{' (' + reason.group(0) + ')' if reason else ''}. It is not a seqlstm checkpoint or it was tampered "
            "with; seqlstm never executes code from a checkpoint"
        ) from None
    except Exception as e:  # a damaged file can fail anywhere inside the unpickler, with any type
        raise CheckpointError(
            f"{path}: cannot read it as a checkpoint; the file is truncated or not a PyTorch file ({e})"
        ) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a seqlstm checkpoint (no {FORMAT!r} marker); train one with `seqlstm train`")
    version = data.get("format_version")
    if not isinstance(version, int):
        raise CheckpointError(f"{path}: checkpoint has no valid format_version")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {version} was written by seqlstm "
            f"{data.get('seqlstm_version', '?')}, newer than this one reads (up to {FORMAT_VERSION}); "
            "upgrade seqlstm"
        )
    missing = [k for k in ("config", "model_args", "state_dict") if not isinstance(data.get(k), dict)]
    if missing:
        raise CheckpointError(f"{path}: checkpoint is incomplete: missing {', '.join(missing)}")
    # Files before version 4 carry no digest; from 4 on it is part of the format.
    if version >= 4 and data.get("digest") != digest(data):
        raise CheckpointError(
            f"{path}: the checkpoint is damaged: its contents do not match the digest taken when it was written "
            "(a changed bit, a partial copy or an edit); use another copy, or train again"
        )
    bad = [name for name, t in data["state_dict"].items()
           if isinstance(t, torch.Tensor) and t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise CheckpointError(
            f"{path}: the model's weights hold NaN or infinite values ({', '.join(bad[:3])}{' ...' if len(bad) > 3 else ''}); "
            "such a model answers nothing; use another checkpoint"
        )
    return upgrade(data) if version < FORMAT_VERSION else data


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[LSTMClassifier, TrainConfig]:
    """Rebuild the trained model (in eval mode, on `device`, with its classes and input transform) and
    its config from `path`."""
    data = read_checkpoint(path)
    try:
        config = TrainConfig.from_dict(data["config"])
        model = LSTMClassifier(**data["model_args"])
        if model.cell != config.cell:
            raise ConfigError(f"the model is a {model.cell!r} cell but its config says {config.cell!r}")
        model.load_state_dict(data["state_dict"])
    except (ConfigError, CheckpointError, DataError, TypeError, ValueError, RuntimeError) as e:
        # load_state_dict lists every mismatched tensor over many lines; the first says what is wrong.
        reason = str(e).strip().splitlines()[0]
        raise CheckpointError(f"{path}: checkpoint contents do not fit together: {reason}") from None
    return model.to(device).eval(), config


def read_training_state(path: str | os.PathLike) -> dict:
    """The validated checkpoint dict at `path`, which must hold a `training` state to resume from.

    Raises CheckpointError for anything read_checkpoint refuses and for a model-only checkpoint
    (a final model or a best.ckpt), which cannot be continued.
    """
    data = read_checkpoint(path)
    if not isinstance(data.get("training"), dict):
        raise CheckpointError(
            f"{path}: this checkpoint holds a model but no training state, so it cannot be resumed; "
            "resume from the last.ckpt in the run directory"
        )
    return data
