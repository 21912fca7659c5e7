"""The scikit-learn adapter: scores from real fitted estimators, exact query counts, and clear refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.calibration import CalibratedClassifierCV
from sklearn.datasets import load_digits
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.svm import SVC, LinearSVC

from bastion.attacks import FGSM
from bastion.errors import ConfigError, DataError, ModelError
from bastion.models import Classifier, Knowledge, SklearnClassifier

SHAPE = (1, 8, 8)


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    x, y = load_digits(return_X_y=True)
    return x[:400] / 16.0, y[:400]


@pytest.fixture(scope="module")
def estimators(digits: tuple[np.ndarray, np.ndarray]) -> dict[str, object]:
    x, y = digits
    return {
        "logistic": LogisticRegression(max_iter=300).fit(x, y),
        "forest": RandomForestClassifier(n_estimators=10, max_depth=6, random_state=0).fit(x, y),
        # SVC(probability=True) is deprecated in scikit-learn 1.9 in favour of this calibration.
        "svc-probability": CalibratedClassifierCV(SVC(), ensemble=False).fit(x, y),
        "svc-decision": SVC().fit(x, y),
        "linear-svc": LinearSVC().fit(x, y),
    }


def as_batch(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x).float().reshape(-1, *SHAPE)


@pytest.mark.parametrize("kind", ["logistic", "forest", "svc-probability", "svc-decision", "linear-svc"])
def test_scores_match_the_estimator(estimators: dict[str, object], digits: tuple[np.ndarray, ...], kind: str) -> None:
    estimator = estimators[kind]
    model = SklearnClassifier(estimator, input_shape=SHAPE, name=kind)
    assert isinstance(model, Classifier)
    assert model.knowledge is Knowledge.SCORES and model.device == torch.device("cpu") and model.num_classes == 10
    x = as_batch(digits[0][:32])
    with model.inference():
        scores = model.logits(x)
    assert scores.shape == (32, 10) and scores.dtype == torch.float32
    rows = x.reshape(32, -1).double().numpy()
    method = "predict_proba" if hasattr(estimator, "predict_proba") else "decision_function"
    expected = getattr(estimator, method)(rows)
    np.testing.assert_allclose(scores.numpy(), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(scores.argmax(1).numpy(), estimator.predict(rows))  # type: ignore[attr-defined]


def test_binary_decision_function_becomes_two_columns(digits: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = digits
    estimator = LinearSVC().fit(x, y % 2)
    model = SklearnClassifier(estimator, input_shape=(64,))
    scores = model.logits(torch.from_numpy(x[:20]).double())
    d = estimator.decision_function(x[:20])
    assert model.num_classes == 2 and scores.dtype == torch.float64
    np.testing.assert_allclose(scores.numpy(), np.stack([-d, d], axis=1))
    np.testing.assert_array_equal(scores.argmax(1).numpy(), estimator.predict(x[:20]))


def test_every_forward_row_is_counted(estimators: dict[str, object], digits: tuple[np.ndarray, ...]) -> None:
    model = SklearnClassifier(estimators["logistic"], input_shape=SHAPE)
    x = as_batch(digits[0][:7])
    model.logits(x)
    model.logits(x[:3])
    assert model.queries.snapshot() == (10, 0)


def test_gradient_attack_refuses_a_scores_model(estimators: dict[str, object], digits: tuple[np.ndarray, ...]) -> None:
    model = SklearnClassifier(estimators["logistic"], input_shape=SHAPE)
    x = as_batch(digits[0][:4])
    y = torch.from_numpy(digits[1][:4])
    with pytest.raises(ConfigError, match="fgsm needs white-box access; the model exposes only scores"):
        FGSM()(model, x, y, norm="linf", eps=0.1)


def test_wrong_input_shape(estimators: dict[str, object]) -> None:
    model = SklearnClassifier(estimators["logistic"], input_shape=SHAPE)
    with pytest.raises(DataError, match=r"inputs have shape \(64,\), the model expects \(1, 8, 8\)"):
        model.logits(torch.zeros(2, 64))
    with pytest.raises(DataError, match="the estimator expects 64 features, but the input shape has 16"):
        SklearnClassifier(estimators["logistic"], input_shape=(1, 4, 4))


def test_estimators_without_scores_or_classes_are_refused(digits: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = digits
    with pytest.raises(ModelError, match="LinearRegression has neither predict_proba nor decision_function"):
        SklearnClassifier(LinearRegression().fit(x, y), input_shape=(64,))
    with pytest.raises(ModelError, match="LogisticRegression has no classes_: expected a fitted classifier"):
        SklearnClassifier(LogisticRegression(), input_shape=(64,))
    shifted = LogisticRegression(max_iter=50).fit(x[:100], y[:100] + 1)
    with pytest.raises(ModelError, match=r"expected integer classes 0..9 \(the data's labels\), got \[1, 2"):
        SklearnClassifier(shifted, input_shape=(64,))
    with pytest.raises(DataError, match=r"expected bounds \(low, high\) with low < high, got \(1.0, 0.0\)"):
        SklearnClassifier(LogisticRegression().fit(x, y), input_shape=(64,), bounds=(1.0, 0.0))
