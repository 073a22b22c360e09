"""`SequenceClassifier`: seqlstm as a scikit-learn classifier, over the same training code and the
same checkpoint format as `seqlstm train`.

    from seqlstm import SequenceClassifier
    clf = SequenceClassifier().fit(X_train, y_train)     # X: (N, T, F), (N, T) or a list of (T_i, F)
    clf.score(X_test, y_test); clf.predict_proba(X_test)
    clf.save("model.ckpt")                                # `seqlstm evaluate model.ckpt --dataset test.npz`

Its parameters are TrainConfig's fields that apply to arrays (see `PARAMETERS`); left at None, each
is chosen as `seqlstm train` chooses it for a user's sequences (plan.py). `fit` writes nothing to
disk. Needs scikit-learn (`pip install "seqlstm[sklearn]"`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import fields

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, check_is_fitted, column_or_1d

from .checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from .config import TrainConfig
from .device import resolve_device
from .data.packed import Packed
from .data.records import Arrays, PackedSamples, padded
from .errors import ConfigError, DataError
from .evaluation import logits_of
from .training import train

logger = logging.getLogger(__name__)

# TrainConfig's fields that are no estimator parameter, and why: the data comes as arrays (no
# dataset, files, views or test split), nothing is written (no out, run directory or checkpoints
# along the way), and logging goes through the `logging` module.
NOT_PARAMETERS = ("dataset", "data_dir", "view", "perm_seed", "test_dataset", "test_size", "label_column", "out",
                  "run_dir", "log", "log_every", "eval_every", "checkpoint_every", "augment_shift", "plan", "digests")
PARAMETERS = tuple(f.name for f in fields(TrainConfig) if f.name not in NOT_PARAMETERS)


class SequenceClassifier(ClassifierMixin, BaseEstimator):
    """A many-to-one recurrent classifier of sequences, trained by seqlstm.

    Every parameter is the TrainConfig field (and `seqlstm train` flag) of the same name; None
    leaves the choice to seqlstm, which plans the budget from the data. Set `max_steps` (or
    `epochs`) for a quick fit.

    Attributes after `fit`:
        classes_: the labels, sorted (np.unique(y)).
        n_features_in_: features per step (1 for a 2-D X of univariate series).
        model_: the trained LSTMClassifier (its input transform included), in eval mode.
        config_: the TrainConfig it was trained with, the plan's choices filled in.
    """

    def __init__(
        self, hidden_size=128, num_layers=2, cell="lstm", batch_size=None, epochs=None, seed=0, device="auto",
        max_steps=None, val_size=None, patience=None, recipe="fast", precision=None, schedule=None, clip_grad=None,
        init=None, normalize=None, lr=None, label_smoothing=None, weight_decay=None, patch=None, bidirectional=None,
        pool=None, dropout=None, conv=None, conv_patch=None, class_weight=None, bucket=False,
    ):
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.cell = cell
        self.batch_size = batch_size
        self.epochs = epochs
        self.seed = seed
        self.device = device
        self.max_steps = max_steps
        self.val_size = val_size
        self.patience = patience
        self.recipe = recipe
        self.precision = precision
        self.schedule = schedule
        self.clip_grad = clip_grad
        self.init = init
        self.normalize = normalize
        self.lr = lr
        self.label_smoothing = label_smoothing
        self.weight_decay = weight_decay
        self.patch = patch
        self.bidirectional = bidirectional
        self.pool = pool
        self.dropout = dropout
        self.conv = conv
        self.conv_patch = conv_patch
        self.class_weight = class_weight
        self.bucket = bucket

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        return tags

    def fit(self, X, y=None, lengths=None) -> "SequenceClassifier":
        """Train on sequences X with labels y (N,).

        X: float (N, T, F); (N, T) for one feature per step; or a list of N arrays (T_i, F) (or
        (T_i,)) of different lengths. `lengths` (N,): the real steps of each row of a padded X.
        Or X: sequences of a pack (`seqlstm.Pack(path).split("train")`), read from disk a batch at a
        time, with their labels (y None): `classes_` are then the pack's class names.
        Raises ValueError for unusable data or parameters.
        """
        if isinstance(X, Packed):
            if y is not None or lengths is not None:
                raise ValueError("a pack's sequences carry their own labels and lengths; call fit(pack) without y and lengths")
            return self.trained(PackedSamples(X), np.array(X.pack.classes), X.pack.features)
        x, lengths = sequences(X, lengths)
        y = column_or_1d(y, warn=True)
        if len(y) != len(x):
            raise ValueError(f"X holds {len(x)} sequences but y {len(y)} labels; give one label per sequence")
        check_classification_targets(y)
        classes, codes = np.unique(y, return_inverse=True)
        names = np.array([str(c) for c in classes])
        if len(set(names)) != len(names):
            raise ValueError(f"labels {classes.tolist()} are not told apart by their names; use labels of one type")
        return self.trained(Arrays(x, names[codes], lengths, tuple(names)), classes, x.shape[2])

    def trained(self, source, classes: np.ndarray, features: int) -> "SequenceClassifier":
        """This estimator fitted to `source` (a record of the data), its labels `classes`."""
        try:
            result = train(TrainConfig(dataset=None, **plain_params(self)), log=logger.info, source=source, files=False)
        except (ConfigError, DataError) as e:
            raise ValueError(str(e)) from None
        self.classes_, self.n_features_in_ = classes, features
        self.model_, self.config_ = result.model.eval(), result.config
        return self

    def predict_proba(self, X, lengths=None) -> np.ndarray:
        """float32 (N, classes) probabilities, in the order of `classes_`, for sequences X as `fit` takes
        them (a pack's Packed too, read a batch at a time)."""
        check_is_fitted(self)
        if isinstance(X, Packed):
            if X.pack.features != self.n_features_in_:
                raise ValueError(f"the pack has {X.pack.features} features, but {type(self).__name__} is expecting "
                                 f"{self.n_features_in_} features as input.")
            return logits_of(self.model_, X.inputs, lengths=X.lengths).softmax(dim=1).cpu().numpy()
        x, lengths = sequences(X, lengths)
        if x.shape[2] != self.n_features_in_:
            raise ValueError(
                f"X has {x.shape[2]} features, but {type(self).__name__} is expecting {self.n_features_in_} features as input."
            )
        logits = logits_of(self.model_, torch.from_numpy(x), lengths=None if lengths is None else torch.from_numpy(lengths))
        return logits.softmax(dim=1).cpu().numpy()

    def predict(self, X, lengths=None) -> np.ndarray:
        """The most probable label (N,) for each of the sequences X."""
        check_is_fitted(self)
        return self.classes_[self.predict_proba(X, lengths).argmax(axis=1)]

    def save(self, path: str | os.PathLike) -> None:
        """Write the fitted model as a seqlstm checkpoint (atomically): `seqlstm evaluate`, `predict`,
        `explain` and `export` read it, and `SequenceClassifier.load` gives this estimator back."""
        check_is_fitted(self)
        estimator = {"params": plain_params(self), "classes": self.classes_.tolist()}
        save_checkpoint(path, self.model_, self.config_, estimator=estimator)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "cpu") -> "SequenceClassifier":
        """The estimator saved at `path`; a checkpoint from `seqlstm train` loads too (its labels are
        then the class names, as strings). Raises CheckpointError for an unreadable file."""
        model, config = load_checkpoint(path, resolve_device(device))
        saved = read_checkpoint(path).get("estimator") or {}
        params = saved.get("params") or {name: getattr(config, name) for name in PARAMETERS}
        estimator = cls(**{**params, "device": device})
        estimator.classes_ = np.array(saved.get("classes", list(model.classes)))
        estimator.n_features_in_ = model.inputs.features
        estimator.model_, estimator.config_ = model, config
        return estimator


def plain_params(estimator: BaseEstimator) -> dict:
    """get_params() with numpy scalars (what scikit-learn's searches draw) as plain Python values,
    which the config checks as such and a weights-only checkpoint can hold."""
    return {name: value.item() if isinstance(value, np.generic) else value for name, value in estimator.get_params().items()}


def sequences(X, lengths=None) -> tuple[np.ndarray, np.ndarray | None]:
    """X as float32 (N, T, F) zero-padded, and lengths int64 (N,) (None: all T steps), from an array
    (N, T, F) or (N, T), or a list of (T_i, F) or (T_i,) arrays; ValueError (sklearn's messages) for
    anything else, NaN and infinity included."""
    if isinstance(X, (list, tuple)) and len(X) and all(hasattr(s, "__len__") for s in X) \
            and len({np.shape(s) for s in X}) > 1:
        if lengths is not None:
            raise ValueError("lengths is for a padded array X; a list of sequences carries its own lengths")
        rows = [check_array(s, ensure_2d=False, dtype=np.float32, input_name=f"X[{i}]").reshape(len(s), -1)
                for i, s in enumerate(X)]
        if len({r.shape[1] for r in rows}) > 1:
            raise ValueError(f"the sequences have different numbers of features per step ({sorted({r.shape[1] for r in rows})})")
        return padded(rows)
    x = check_array(X, allow_nd=True, dtype=np.float32)
    if x.ndim == 2:
        x = x[:, :, None]  # (N, T): one feature per step
    if x.ndim != 3:
        raise ValueError(f"X has shape {x.shape}; expected (N, T, F) sequences, (N, T), or a list of (T_i, F) arrays")
    if lengths is not None:
        lengths = column_or_1d(check_array(lengths, ensure_2d=False, dtype=np.int64, input_name="lengths"))
        if len(lengths) != len(x) or lengths.min() < 1 or lengths.max() > x.shape[1]:
            raise ValueError(f"lengths must hold one length from 1 to {x.shape[1]} for each of the {len(x)} sequences")
    # torch shares the memory of a writable, contiguous array; anything else (a read-only memory map) is copied.
    return np.require(x, requirements=["C", "W"]), lengths
