"""SequenceClassifier: scikit-learn's own estimator checks, its tools on a real problem, and the
same weights as `seqlstm train` on the same data."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
import torch

from conftest import run_cli
from seqlstm import SequenceClassifier, TrainConfig, load_checkpoint, read_sequences, train

sklearn = pytest.importorskip("sklearn")
from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import FunctionTransformer  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

# A budget small enough for scikit-learn's ~55 checks, each of which fits on toy data.
SMALL = dict(hidden_size=8, num_layers=1, conv=4, max_steps=20, device="cpu")
# What a sequence classifier cannot do as a tabular one would: a 2-D X is N univariate series of T
# steps, so n_features_in_ counts features per step (1), and a series of another length (X[:, [1]],
# or X.T: two series of 300 steps) is valid input to predict, where these checks expect an error.
NOT_TABULAR = "a 2-D X is univariate series: n_features_in_ is features per step, and any length is valid input"
EXPECTED_FAILURES = {
    "check_n_features_in": NOT_TABULAR,
    "check_n_features_in_after_fitting": NOT_TABULAR,
    "check_classifiers_train": NOT_TABULAR + " (it predicts on X.T)",
    # class_weight is `seqlstm train --class-weight`: "none" or "balanced", not a dict of per-class weights.
    "check_class_weight_classifiers": "class_weight takes 'none' or 'balanced', not a dict of weights per class",
}


@parametrize_with_checks([SequenceClassifier(**SMALL)], expected_failed_checks=lambda estimator: EXPECTED_FAILURES)
def test_scikit_learn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        check(estimator)


def ucr(ucr_dir, split: str) -> tuple[np.ndarray, np.ndarray]:
    raw = read_sequences(ucr_dir / f"ItalyPowerDemand_{split}.ts")
    return raw.values, raw.labels


@pytest.mark.slow
@pytest.mark.accuracy
def test_cross_validation_grid_search_and_pipeline_on_a_real_problem(ucr_dir):
    X, y = ucr(ucr_dir, "TRAIN")
    X_test, y_test = ucr(ucr_dir, "TEST")
    budget = dict(hidden_size=16, conv=16, epochs=30, device="cpu")
    scores = cross_val_score(SequenceClassifier(**budget), X, y, cv=3)
    assert scores.shape == (3,) and scores.mean() >= 0.7, scores  # two classes: chance is 0.5
    search = GridSearchCV(SequenceClassifier(**budget), {"pool": ["mean", "last"], "hidden_size": [8, 16]}, cv=2)
    search.fit(X, y)
    assert set(search.best_params_) == {"pool", "hidden_size"} and len(search.cv_results_["params"]) == 4
    assert search.score(X_test, y_test) >= 0.8
    # A pipeline of a scikit-learn step and the classifier: the step's output is what fit reads.
    pipeline = make_pipeline(FunctionTransformer(lambda x: x[:, ::2]), SequenceClassifier(**budget)).fit(X, y)
    assert pipeline.score(X_test, y_test) >= 0.8
    assert pipeline[-1].n_features_in_ == 1 and pipeline[-1].model_.inputs.steps == 12


def test_fit_on_arrays_gives_the_weights_train_gives_on_the_same_npz(tmp_path, ucr_dir):
    X, y = ucr(ucr_dir, "TRAIN")
    X_test, y_test = ucr(ucr_dir, "TEST")
    np.savez(tmp_path / "train.npz", X=X, y=y)
    np.savez(tmp_path / "test.npz", X=X_test, y=y_test)
    settings = dict(hidden_size=16, conv=8, max_steps=30, device="cpu", seed=3)
    estimator = SequenceClassifier(**settings).fit(X, y)
    result = train(TrainConfig(dataset=str(tmp_path / "train.npz"), test_dataset=str(tmp_path / "test.npz"),
                               out=str(tmp_path / "m.ckpt"), run_dir=str(tmp_path / "run"), **settings), log=lambda line: None)
    ours, theirs = estimator.model_.state_dict(), result.model.state_dict()
    assert ours.keys() == theirs.keys()
    for name in ours:
        assert torch.equal(ours[name], theirs[name]), name
    assert estimator.config_.plan == result.config.plan and "30 training" not in estimator.config_.plan
    assert list(estimator.classes_) == list(result.model.classes) == ["1", "2"]
    assert estimator.score(X_test, y_test) * 100 == pytest.approx(result.evaluation.accuracy, abs=100 / len(y_test))


def test_lists_of_unequal_length_equal_their_padded_array_with_lengths():
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 15, 60)
    series = [rng.normal(size=(n, 2)).astype(np.float32) for n in lengths]
    y = np.array(["up" if s[0, 0] > 0 else "down" for s in series])
    padded = np.zeros((60, 14, 2), dtype=np.float32)
    for i, s in enumerate(series):
        padded[i, : len(s)] = s
    settings = dict(hidden_size=8, conv=4, max_steps=15, device="cpu")
    from_list = SequenceClassifier(**settings).fit(series, y)
    from_array = SequenceClassifier(**settings).fit(padded, y, lengths=lengths)
    for name, weight in from_list.model_.state_dict().items():
        assert torch.equal(weight, from_array.model_.state_dict()[name]), name
    np.testing.assert_array_equal(from_list.predict_proba(series), from_array.predict_proba(padded, lengths=lengths))
    assert from_list.n_features_in_ == 2 and list(from_list.classes_) == ["down", "up"]


@pytest.mark.e2e
def test_save_load_and_pickle_predict_identically_and_the_cli_reads_the_file(tmp_path, ucr_dir):
    X, y = ucr(ucr_dir, "TRAIN")
    X_test, y_test = ucr(ucr_dir, "TEST")
    y, y_test = y.astype(int), y_test.astype(int)  # labels of another type than strings come back as they were
    estimator = SequenceClassifier(hidden_size=16, conv=8, max_steps=40, device="cpu").fit(X, y)
    expected = estimator.predict_proba(X_test)
    estimator.save(tmp_path / "m.ckpt")
    loaded = SequenceClassifier.load(tmp_path / "m.ckpt")
    np.testing.assert_array_equal(loaded.predict_proba(X_test), expected)
    assert loaded.get_params() == estimator.get_params() and loaded.predict(X_test).dtype == y.dtype
    unpickled = pickle.loads(pickle.dumps(estimator))
    np.testing.assert_array_equal(unpickled.predict_proba(X_test), expected)
    # The same file is a checkpoint like any other: evaluate reads it with a labelled file.
    np.savez(tmp_path / "test.npz", X=X_test, y=y_test)
    done = run_cli("evaluate", str(tmp_path / "m.ckpt"), "--dataset", str(tmp_path / "test.npz"), "--json", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    accuracy = __import__("json").loads(done.stdout)["accuracy"]
    assert accuracy == pytest.approx(100 * estimator.score(X_test, y_test), abs=1e-9)
    done = run_cli("evaluate", str(tmp_path / "m.ckpt"), "--device", "cpu")
    assert done.returncode == 1 and "trained on arrays in memory" in done.stderr and "--dataset" in done.stderr
    model, config = load_checkpoint(tmp_path / "m.ckpt")
    assert config.dataset is None and model.classes == ("1", "2")


@pytest.mark.parametrize("X, y, message", [
    (np.zeros((4, 3, 2, 1)), [0, 1, 0, 1], r"X has shape \(4, 3, 2, 1\); expected \(N, T, F\)"),
    ([np.zeros((3, 2)), np.zeros((4, 3))], [0, 1], r"different numbers of features per step \(\[2, 3\]\)"),
    (np.zeros((4, 3)), [0, 1, 0], "X holds 4 sequences but y 3 labels"),
    (np.full((4, 3), np.nan), [0, 1, 0, 1], "Input contains NaN"),
    (np.zeros((4, 3)), [0.5, 1.5, 0.25, 1.0], "Unknown label type"),
])
def test_bad_input_is_a_value_error_that_says_what_is_wrong(X, y, message):
    with pytest.raises(ValueError, match=message):
        SequenceClassifier(**SMALL).fit(X, y)


def test_numpy_parameters_as_searches_draw_them_fit_save_and_load(tmp_path):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(30, 6)), np.array([0, 1] * 15)
    estimator = SequenceClassifier(hidden_size=np.int64(8), lr=np.float64(0.01), conv=np.int32(4), max_steps=np.int64(5),
                                   device="cpu").fit(X, y)
    estimator.save(tmp_path / "m.ckpt")
    loaded = SequenceClassifier.load(tmp_path / "m.ckpt", device="auto")
    np.testing.assert_array_equal(loaded.predict_proba(X), estimator.predict_proba(X))
    assert loaded.get_params()["hidden_size"] == 8 and type(loaded.get_params()["lr"]) is float


def test_bad_parameters_are_value_errors_at_fit_not_at_construction():
    estimator = SequenceClassifier(pool="sideways", **{k: v for k, v in SMALL.items()})
    with pytest.raises(ValueError, match="pool must be one of last, mean, max, attention, got 'sideways'"):
        estimator.fit(np.zeros((4, 3)), [0, 1, 0, 1])


def test_the_parameters_are_the_config_fields_that_apply_to_arrays():
    from dataclasses import fields

    from seqlstm.estimator import NOT_PARAMETERS

    assert set(SequenceClassifier().get_params()) == {f.name for f in fields(TrainConfig)} - set(NOT_PARAMETERS)
