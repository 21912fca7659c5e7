"""The ONNX adapter: a real export of a torch module, run by onnxruntime, agrees with torch."""

from __future__ import annotations

import warnings
from pathlib import Path

import onnxruntime
import pytest
import torch
from torch import nn

from bastion.errors import ConfigError, DataError, ModelError
from bastion.models import Classifier, Knowledge, OnnxClassifier

SHAPE = (1, 8, 8)
X = torch.rand(9, *SHAPE, generator=torch.Generator().manual_seed(0))


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 10)).eval()


def export(module: nn.Module, path: Path, dynamic: bool = True, example: torch.Tensor = X) -> Path:
    axes = {"input": {0: "batch"}, "logits": {0: "batch"}} if dynamic else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter needs no onnxscript
        torch.onnx.export(
            module, (example,), str(path), dynamo=False, input_names=["input"], output_names=["logits"],
            dynamic_axes=axes,
        )  # fmt: skip
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[nn.Module, Path]:
    module = net()
    return module, export(module, tmp_path_factory.mktemp("onnx") / "model.onnx")


def test_agrees_with_torch(exported: tuple[nn.Module, Path]) -> None:
    module, path = exported
    model = OnnxClassifier(path, input_shape=SHAPE, name="model.onnx")
    assert isinstance(model, Classifier)
    assert model.knowledge is Knowledge.SCORES and model.num_classes == 10 and model.device == torch.device("cpu")
    with model.inference():
        out = model.logits(X)
    with torch.no_grad():
        torch.testing.assert_close(out, module(X), rtol=1e-5, atol=1e-5)
    assert model.queries.snapshot() == (9, 0)  # the probe that found the classes is not a query


def test_fixed_batch_of_one_runs_row_by_row(tmp_path: Path) -> None:
    module = net()
    path = export(module, tmp_path / "fixed.onnx", dynamic=False, example=X[:1])
    model = OnnxClassifier(path, input_shape=SHAPE)
    with torch.no_grad():
        torch.testing.assert_close(model.logits(X), module(X), rtol=1e-5, atol=1e-5)
    assert model.queries.forward == 9


def test_session_and_flattened_inputs(tmp_path: Path) -> None:
    module = nn.Sequential(nn.Linear(64, 3)).eval()
    path = export(module, tmp_path / "flat.onnx", example=X.reshape(9, 64))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    model = OnnxClassifier(session, input_shape=SHAPE)  # a (1, 8, 8) input fed as the model's 64 features
    with torch.no_grad():
        torch.testing.assert_close(model.logits(X.double()), module(X.reshape(9, 64)).double(), rtol=1e-5, atol=1e-5)


def test_refusals(exported: tuple[nn.Module, Path], tmp_path: Path) -> None:
    _, path = exported
    model = OnnxClassifier(path, input_shape=SHAPE)
    with pytest.raises(DataError, match=r"inputs have shape \(64,\), the model expects \(1, 8, 8\)"):
        model.logits(torch.zeros(2, 64))
    with pytest.raises(DataError, match=r"the ONNX model takes inputs of shape \(1, 8, 8\), the data has shape"):
        OnnxClassifier(export(net(), tmp_path / "static.onnx", dynamic=False), input_shape=(3, 4, 4))
    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        with pytest.raises(ConfigError, match="no CUDAExecutionProvider"):
            OnnxClassifier(path, input_shape=SHAPE, device="cuda")
    damaged = tmp_path / "damaged.onnx"
    damaged.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ModelError, match="could not load ONNX model"):
        OnnxClassifier(damaged, input_shape=SHAPE)


def test_probe_finds_output_shape_problems(tmp_path: Path) -> None:
    class Vector(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.flatten()

    path = export(Vector(), tmp_path / "vector.onnx", dynamic=False, example=X[:1])
    with pytest.raises(ModelError, match=r"expected the ONNX output 'logits' of shape \(1, classes\), got \(64,\)"):
        OnnxClassifier(path, input_shape=SHAPE)
