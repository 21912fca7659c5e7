"""load_model: each format to its adapter; skops checked against the allowlist; pickles only when trusted and clean."""

from __future__ import annotations

import builtins
import importlib
import json
import operator
import os
import pickle
import zipfile
from collections.abc import Iterator
from pathlib import Path

import joblib
import numpy as np
import pytest
import skops.io
import torch
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from bastion.cli.main import main
from bastion.errors import ConfigError, ModelError, UnsafeModelError
from bastion.models import ModelFormat, OnnxClassifier, SklearnClassifier, load_model, sniff_format

SHAPE = (1, 8, 8)


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    x, y = load_digits(return_X_y=True)
    return x[:300] / 16.0, y[:300]


@pytest.fixture(scope="module")
def fitted(digits: tuple[np.ndarray, np.ndarray]) -> LogisticRegression:
    return LogisticRegression(max_iter=300).fit(*digits)


@pytest.fixture
def marker(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "pwned"
    yield path
    assert not path.exists(), "loading the file ran code from it"


class _Reduce:
    def __init__(self, func: object, *args: object) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return self.func, self.args


def agrees(model: SklearnClassifier, estimator: LogisticRegression, x: np.ndarray) -> None:
    scores = model.logits(torch.from_numpy(x).double().reshape(-1, *SHAPE))
    np.testing.assert_allclose(scores.numpy(), estimator.predict_proba(x))


def test_skops_round_trip(fitted: LogisticRegression, digits: tuple[np.ndarray, ...], tmp_path: Path) -> None:
    path = tmp_path / "model.skops"
    skops.io.dump(fitted, path)
    assert sniff_format(path) is ModelFormat.SKOPS
    model = load_model(path, input_shape=SHAPE)
    assert isinstance(model, SklearnClassifier) and model.name == "model.skops"
    agrees(model, fitted, digits[0][:16])


def test_skops_with_a_type_off_the_allowlist_is_refused(digits: tuple[np.ndarray, ...], tmp_path: Path) -> None:
    pipeline = make_pipeline(FunctionTransformer(operator.neg), LogisticRegression(max_iter=1000))
    path = tmp_path / "model.skops"
    skops.io.dump(pipeline.fit(*digits), path)
    with pytest.raises(UnsafeModelError, match=r"holding types that are not known to be safe: .*operator\.neg"):
        load_model(path, input_shape=SHAPE)


def test_skops_schema_naming_os_system_is_refused(fitted: LogisticRegression, tmp_path: Path) -> None:
    good = tmp_path / "good.skops"
    skops.io.dump(fitted, good)
    path = tmp_path / "evil.skops"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "schema.json":
                schema = json.loads(data)
                schema["__module__"], schema["__class__"] = "os", "system"
                data = json.dumps(schema).encode()
            dst.writestr(info, data)
    with pytest.raises(UnsafeModelError, match=r"os\.system"):
        load_model(path, input_shape=SHAPE)


@pytest.mark.parametrize("writer", ["pickle", "joblib"])
def test_pickle_is_refused_without_the_flag(fitted: LogisticRegression, tmp_path: Path, writer: str) -> None:
    path = tmp_path / "model.pkl"
    if writer == "pickle":
        path.write_bytes(pickle.dumps(fitted))
    else:
        joblib.dump(fitted, path)
    advice = r"unpickling it could execute code\. Save a scikit-learn model with skops.*pass --trust-pickle"
    with pytest.raises(UnsafeModelError, match=advice):
        load_model(path, input_shape=SHAPE)


@pytest.mark.parametrize("writer", ["pickle", "joblib"])
def test_benign_pickle_loads_with_the_flag(
    fitted: LogisticRegression, digits: tuple[np.ndarray, ...], tmp_path: Path, writer: str
) -> None:
    path = tmp_path / "model.joblib"
    if writer == "pickle":
        path.write_bytes(pickle.dumps(fitted, protocol=2))
    else:
        joblib.dump(fitted, path)
    model = load_model(path, input_shape=SHAPE, trust_pickle=True)
    assert isinstance(model, SklearnClassifier)
    agrees(model, fitted, digits[0][:16])


@pytest.mark.parametrize(
    "payload",
    [
        lambda marker: _Reduce(os.mkdir, str(marker)),
        lambda marker: _Reduce(eval, f"__import__('os').mkdir({str(marker)!r})"),
        lambda marker: _Reduce(getattr, _Reduce(builtins.__import__, "os"), "mkdir"),
        lambda marker: _Reduce(importlib.import_module, "os"),
        lambda marker: {"model": _Reduce(os.system, f"mkdir {marker}")},
    ],
    ids=["os.mkdir", "eval", "getattr-chain", "importlib", "os.system"],
)
@pytest.mark.parametrize("writer", ["pickle", "joblib"])
def test_malicious_pickle_is_refused_even_with_the_flag(
    tmp_path: Path, marker: Path, payload: object, writer: str
) -> None:
    path = tmp_path / "model.pkl"
    obj = payload(marker)  # type: ignore[operator]
    if writer == "pickle":
        path.write_bytes(pickle.dumps(obj))
    else:
        joblib.dump({"w": np.ones(5), "x": obj}, path)
    with pytest.raises(UnsafeModelError, match=r"refused by the model-file scan: .*Even with --trust-pickle"):
        load_model(path, input_shape=SHAPE, trust_pickle=True)


def test_scanned_pickle_that_is_not_a_classifier(tmp_path: Path) -> None:
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps({"weights": [1.0, 2.0]}))
    with pytest.raises(ModelError, match="dict has neither predict_proba nor decision_function"):
        load_model(path, input_shape=SHAPE, trust_pickle=True)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the TorchScript-based ONNX exporter works offline
def test_onnx_and_torch_files_dispatch(tmp_path: Path) -> None:
    module = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)).eval()
    path = tmp_path / "model.onnx"
    torch.onnx.export(module, (torch.zeros(1, *SHAPE),), str(path), dynamo=False, dynamic_axes={"input": {0: "n"}},
                      input_names=["input"])  # fmt: skip
    assert isinstance(load_model(path, input_shape=SHAPE), OnnxClassifier)
    weights = tmp_path / "weights.safetensors"
    from safetensors.torch import save_file

    save_file(module.state_dict(), str(weights))
    with pytest.raises(ConfigError, match="holds only weights: pass --factory"):
        load_model(weights, input_shape=SHAPE)


def test_unknown_format_names_the_file_and_the_formats(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(b"not a model")
    expected = (
        r"model\.bin: unrecognised model format \(unknown\); expected TorchScript.*ONNX, "
        r"skops \(scikit-learn\), or a scanned pickle / joblib file with --trust-pickle"
    )
    with pytest.raises(ModelError, match=expected):
        load_model(path, input_shape=SHAPE)


def write_data(tmp_path: Path, digits: tuple[np.ndarray, np.ndarray]) -> Path:
    path = tmp_path / "d.npz"
    np.savez(path, x=digits[0][:16].reshape(-1, *SHAPE).astype(np.float32), y=digits[1][:16].astype(np.int64))
    return path


def test_cli_gradient_attack_on_a_skops_model_needs_white_box(
    fitted: LogisticRegression,
    digits: tuple[np.ndarray, np.ndarray],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    skops.io.dump(fitted, tmp_path / "model.skops")
    args = ["assess", str(tmp_path / "model.skops"), "--data", str(write_data(tmp_path, digits))]
    code = main([*args, "-a", "fgsm", "--eps", "0.1", "-o", str(tmp_path / "out"), "-q", "--no-trust-checks"])
    err = capsys.readouterr().err.replace("\n", " ")
    assert code == 2, err
    assert "needs white-box access" in err and "Traceback" not in err


def test_cli_pickle_needs_the_flag(
    fitted: LogisticRegression,
    digits: tuple[np.ndarray, np.ndarray],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    joblib.dump(fitted, tmp_path / "model.joblib")
    args = ["assess", str(tmp_path / "model.joblib"), "--data", str(write_data(tmp_path, digits)), "-q"]
    assert main([*args, "-o", str(tmp_path / "out")]) == 4
    err = capsys.readouterr().err.replace("\n", " ")
    assert "--trust-pickle" in err and "skops" in err and "Traceback" not in err
