"""SeqlstmClassifier under aeon's own estimator checks, and in an aeon-style run on a real problem."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("aeon")
from aeon.testing.estimator_checking import check_estimator  # noqa: E402

from seqlstm import read_sequences  # noqa: E402
from seqlstm.aeon import SeqlstmClassifier  # noqa: E402


def test_aeon_estimator_checks_pass():
    results = check_estimator(SeqlstmClassifier, raise_exceptions=False)
    failed = {check: result for check, result in results.items() if result.startswith("FAILED")}
    assert not failed, failed
    assert sum(result == "PASSED" for result in results.values()) >= 25, results


def test_aeon_collections_of_unequal_length_and_of_several_channels(ucr_dir):
    raw = read_sequences(ucr_dir / "ItalyPowerDemand_TRAIN.ts")
    test = read_sequences(ucr_dir / "ItalyPowerDemand_TEST.ts")
    X, X_test = raw.values.transpose(0, 2, 1), test.values.transpose(0, 2, 1)  # aeon's (cases, channels, timepoints)
    classifier = SeqlstmClassifier(hidden_size=16, conv=16, epochs=30, device="cpu").fit(X, raw.labels)
    assert classifier.score(X_test, test.labels) >= 0.8
    # Unequal lengths as aeon passes them: a list of (channels, timepoints_i) arrays.
    cut = [case[:, : 12 + i % 12] for i, case in enumerate(X_test[:50])]
    probabilities = classifier.predict_proba(cut)
    assert probabilities.shape == (50, 2) and np.allclose(probabilities.sum(axis=1), 1)
    assert classifier.estimator_.model_.inputs.features == 1


def test_unknown_parameters_are_refused():
    with pytest.raises(TypeError, match="unknown parameters hiden_size; it takes hidden_size, num_layers"):
        SeqlstmClassifier(hiden_size=4)
