"""One checkpoint format: plain containers and tensors, written atomically, read weights-only.

A checkpoint is a dict: `format`, `format_version`, `seqlstm_version`, `config` (TrainConfig as
plain types), `model_args` (the classifier's constructor arguments), `state_dict` (CPU tensors)
and `metrics`. A run's `last.ckpt` also holds `training`: everything needed to continue the run
exactly (see resume.py). `torch.load(weights_only=True)` reads it; nothing in it can run code.

Format versions: 1 had no `training` key and no run settings in `config` (run_dir, val_size,
eval_every, checkpoint_every); such files still load, with those settings at their defaults.
Version 2 added both. Version 3 added `encoding` (data.sequences.Encoding: the view or feature
statistics and the class names); older files read as MNIST-style images by rows.
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
from pathlib import Path

import torch

from .atomic import replace_atomically
from .config import TrainConfig
from .data.sequences import Encoding, legacy_encoding
from .data.sources import DATASETS
from .errors import CheckpointError, ConfigError
from .model import LSTMClassifier

FORMAT = "seqlstm-checkpoint"
FORMAT_VERSION = 3


def save_checkpoint(
    path: str | os.PathLike,
    model: LSTMClassifier,
    config: TrainConfig,
    metrics: dict | None = None,
    training: dict | None = None,
) -> Path:
    """Write `model` and `config` (and, for a resumable checkpoint, the `training` state) to `path`.

    The model's `encoding` is saved with it; a bare model (encoding None) is saved as reading
    square images by rows, as the tutorial's model does.
    The data goes to a temporary file in the same folder, is flushed to disk, then renamed over
    `path`, so a crash leaves either the old file or the complete new one, never a partial file.
    `training` must hold tensors and plain containers only. Raises OutputError when `path` cannot
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
        "encoding": encoding_of(model, config.dataset).to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "metrics": dict(metrics or {}),
    }
    if training is not None:
        payload["training"] = training
    return replace_atomically(path, lambda tmp: torch.save(payload, tmp))


def encoding_of(model: torch.nn.Module, dataset: str | None = None) -> Encoding:
    """How `model` reads stored samples: its own encoding or, for a bare model (or any module taking
    (batch, seq, features)), the tutorial's: square images read by rows, its classes named as those
    of the published `dataset` when the counts agree, else by index."""
    if getattr(model, "encoding", None) is not None:
        return model.encoding
    hparams = getattr(model, "hparams", {})
    count, features = hparams.get("num_classes", 0), hparams.get("input_size", 0)
    known = DATASETS.get(dataset)
    named = known is not None and len(known.classes) == count
    return legacy_encoding(known.classes if named else tuple(str(k) for k in range(count)), features)


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
    return data


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[LSTMClassifier, TrainConfig]:
    """Rebuild the trained model (in eval mode, on `device`, its `encoding` set) and its config from `path`."""
    data = read_checkpoint(path)
    try:
        config = TrainConfig.from_dict(data["config"])
        model = LSTMClassifier(**data["model_args"])
        if model.cell != config.cell:
            raise ConfigError(f"the model is a {model.cell!r} cell but its config says {config.cell!r}")
        model.load_state_dict(data["state_dict"])
        encoding = data.get("encoding")
        model.encoding = encoding_of(model, config.dataset) if encoding is None else Encoding.from_dict(encoding)
        if len(model.encoding.classes) != model.hparams["num_classes"] or model.encoding.features != model.hparams["input_size"]:
            raise ConfigError(
                f"the input encoding ({model.encoding.features} features, {len(model.encoding.classes)} classes) does not fit "
                f"the model ({model.hparams['input_size']} features, {model.hparams['num_classes']} classes)"
            )
    except (ConfigError, CheckpointError, TypeError, ValueError, RuntimeError) as e:
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
