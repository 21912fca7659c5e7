"""Model files: format sniffing, safe loading of each supported format, and refusal of pickles."""

from __future__ import annotations

import io
import os
import pickle
import re
import sys
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from bastion.errors import ConfigError, ModelError, NotFoundError, UnsafeModelError
from bastion.models import ModelFormat, load_factory, load_torch_model, sniff_format

SHAPE = (1, 2, 2)
X = torch.rand(5, *SHAPE, generator=torch.Generator().manual_seed(0))

FACTORY_SOURCE = """
from torch import nn


def build():
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.Dropout(0.5))


def not_a_module():
    return 42


NOT_CALLABLE = 1
"""


def tiny() -> nn.Module:
    """The factory's architecture, seeded; the dropout shows whether a loaded model runs in eval mode."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.Dropout(0.5)).eval()


class _Payload:
    """Unpickling this runs ``os.mkdir(marker)``: the marker must never appear."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.mkdir, (str(self.marker),)


@pytest.fixture
def factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A factory module written to ``tmp_path`` and importable for this test only; yields its module name."""
    name = f"bastion_test_factory_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(FACTORY_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


@pytest.fixture
def marker(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "pwned"
    yield path
    assert not path.exists(), "loading the file ran code from it"


@pytest.mark.filterwarnings("ignore:`torch.jit.*` is deprecated:DeprecationWarning")
def test_torchscript_file(tmp_path: Path) -> None:
    module = tiny()
    path = tmp_path / "model.ts"
    torch.jit.save(torch.jit.script(module), str(path))
    assert sniff_format(path) is ModelFormat.TORCHSCRIPT
    model = load_torch_model(path, input_shape=SHAPE)
    assert model.num_classes == 3 and model.name == "model.ts"
    with torch.no_grad():
        torch.testing.assert_close(model.logits(X), module(X))


def export(module: nn.Module, path: Path) -> Path:
    program = torch.export.export(module, (X,), dynamic_shapes={"input": {0: torch.export.Dim("batch")}})
    torch.export.save(program, str(path))
    return path


def test_torch_export_file_when_trusted(tmp_path: Path) -> None:
    module = tiny()
    path = export(module, tmp_path / "model.pt2")
    assert sniff_format(path) is ModelFormat.TORCH_EXPORT
    model = load_torch_model(path, input_shape=SHAPE, trusted=True)
    assert model.num_classes == 3
    with torch.no_grad(), model.inference():  # an exported module refuses eval(): inference() must cope
        torch.testing.assert_close(model.logits(X), module(X))


def test_torch_export_file_is_refused_unless_trusted(tmp_path: Path) -> None:
    path = export(tiny(), tmp_path / "model.pt2")
    with pytest.raises(
        UnsafeModelError,
        match=r"model\.pt2 is a torch\.export archive \(\.pt2\): loading one can run code it carries .*"
        r"Load it only if you trust it \(--trust-model-file; trusted=True in Python\), "
        r"or save its weights as safetensors",
    ):
        load_torch_model(path, input_shape=SHAPE)


def test_malicious_torch_export_file_never_runs(tmp_path: Path, marker: Path) -> None:
    # torch.export.load unpickles the sample inputs, retrying with weights_only=False when that fails.
    good = export(tiny(), tmp_path / "good.pt2")
    payload = io.BytesIO()
    torch.save(_Payload(marker), payload)
    path = tmp_path / "evil.pt2"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            sample_inputs = info.filename.endswith("data/sample_inputs/model.pt")
            dst.writestr(info, payload.getvalue() if sample_inputs else src.read(info))
    with pytest.raises(UnsafeModelError, match=r"torch\.export archive"):
        load_torch_model(path, input_shape=SHAPE)


def test_safetensors_with_factory(tmp_path: Path, factory: str) -> None:
    module = tiny()
    path = tmp_path / "weights.safetensors"
    save_file(module.state_dict(), str(path))
    assert sniff_format(path) is ModelFormat.SAFETENSORS
    model = load_torch_model(path, input_shape=SHAPE, factory=f"{factory}:build")
    assert not any(m.training for m in model.module.modules()), "a loaded model runs as deployed"
    with torch.no_grad():
        torch.testing.assert_close(model.logits(X), module(X))


def test_safetensors_whose_header_length_starts_like_a_pickle(tmp_path: Path) -> None:
    # The 8-byte little-endian header length can begin with 0x80, the pickle protocol opcode.
    path = tmp_path / "weights.safetensors"
    for n in range(1, 200):
        save_file({"w" * n: torch.zeros(1)}, str(path))
        if path.read_bytes()[0] == 0x80:
            break
    assert path.read_bytes()[0] == 0x80
    assert sniff_format(path) is ModelFormat.SAFETENSORS


def test_state_dict_with_factory(tmp_path: Path, factory: str) -> None:
    module = tiny()
    path = tmp_path / "weights.pt"
    torch.save(module.state_dict(), path)
    assert sniff_format(path) is ModelFormat.TORCH_PICKLE
    model = load_torch_model(path, input_shape=SHAPE, factory=f"{factory}:build")
    with torch.no_grad():
        torch.testing.assert_close(model.logits(X), module(X))


def test_weights_that_do_not_fit_the_factory(tmp_path: Path, factory: str) -> None:
    path = tmp_path / "weights.safetensors"
    save_file({"1.weight": torch.zeros(5, 4), "1.bias": torch.zeros(5)}, str(path))
    with pytest.raises(ModelError, match=f"do not fit the module built by {factory}:build"):
        load_torch_model(path, input_shape=SHAPE, factory=f"{factory}:build")


def test_weights_without_a_factory(tmp_path: Path) -> None:
    path = tmp_path / "weights.safetensors"
    save_file(tiny().state_dict(), str(path))
    with pytest.raises(ConfigError, match="holds only weights: pass --factory module:function"):
        load_torch_model(path, input_shape=SHAPE)


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_raw_pickle_is_refused(tmp_path: Path, protocol: int) -> None:
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps({"weight": [1.0, 2.0]}, protocol=protocol))
    assert sniff_format(path) is ModelFormat.PICKLE
    with pytest.raises(UnsafeModelError, match=r"is a pickle: unpickling it could execute code\. Instead, save"):
        load_torch_model(path, input_shape=SHAPE)


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_malicious_pickle_never_runs(tmp_path: Path, marker: Path, protocol: int, factory: str) -> None:
    path = tmp_path / "model.pt"
    path.write_bytes(pickle.dumps(_Payload(marker), protocol=protocol))
    with pytest.raises(UnsafeModelError, match="pickle"):
        load_torch_model(path, input_shape=SHAPE)
    with pytest.raises(UnsafeModelError, match="pickle"):
        load_torch_model(path, input_shape=SHAPE, factory=f"{factory}:build")


def test_malicious_torch_checkpoint_never_runs(tmp_path: Path, marker: Path, factory: str) -> None:
    path = tmp_path / "model.pt"
    torch.save({"weight": _Payload(marker)}, path)
    with pytest.raises(UnsafeModelError, match="could execute code"):
        load_torch_model(path, input_shape=SHAPE)
    # The model-file scan refuses it before torch's weights-only loader is reached.
    with pytest.raises(UnsafeModelError, match=r"refused by the model-file scan: .*data\.pkl: \w+\.mkdir"):
        load_torch_model(path, input_shape=SHAPE, factory=f"{factory}:build")


def test_whole_module_checkpoint_without_factory(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    torch.save(tiny(), path)
    with pytest.raises(
        UnsafeModelError,
        match=r"pickled PyTorch checkpoint \(torch\.save\): loading it as a whole could execute code\. "
        r"Instead, save its weights as safetensors",
    ):
        load_torch_model(path, input_shape=SHAPE)


def test_whole_module_checkpoint_with_factory(tmp_path: Path, factory: str) -> None:
    path = tmp_path / "model.pt"
    torch.save(tiny(), path)
    with pytest.raises(UnsafeModelError) as caught:
        load_torch_model(path, input_shape=SHAPE, factory=f"{factory}:build")
    message = str(caught.value)
    assert re.search(
        r"refused by the model-file scan: .*torch\.nn\.modules\.container\.Sequential.*"
        r"Instead, save its weights as safetensors",
        message,
    )
    # Never pass on torch's advice to retry with weights_only=False: that runs the pickle.
    assert "weights_only" not in message and "\x1b" not in message


def test_damaged_state_dict(tmp_path: Path, factory: str) -> None:
    whole = tmp_path / "whole.pt"
    torch.save(tiny().state_dict(), whole)
    path = tmp_path / "damaged.pt"
    with zipfile.ZipFile(whole) as src, zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            dst.writestr(info, data[:2] if info.filename.endswith("data/0") else data)  # a short tensor record
    with pytest.raises(ModelError, match=r"could not read .*damaged\.pt: RuntimeError: .*does not match"):
        load_torch_model(path, input_shape=SHAPE, factory=f"{factory}:build")


def test_truncated_zip(tmp_path: Path) -> None:
    whole = tmp_path / "whole.pt"
    torch.save(tiny().state_dict(), whole)
    path = tmp_path / "truncated.pt"
    path.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(ModelError, match="damaged zip archive"):
        load_torch_model(path, input_shape=SHAPE)


def test_zip_of_something_else(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hello")
    assert sniff_format(path) is ModelFormat.UNKNOWN
    with pytest.raises(ModelError, match=r"unrecognised model format \(unknown\); expected TorchScript"):
        load_torch_model(path, input_shape=SHAPE)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match=r"model file not found: .*absent\.pt"):
        load_torch_model(tmp_path / "absent.pt", input_shape=SHAPE)


def test_folder_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="expected a model file, got a folder"):
        load_torch_model(tmp_path, input_shape=SHAPE)


@pytest.mark.parametrize("content", [b"", b"hello, world\n", b"\x00" * 64], ids=["empty", "text", "zeros"])
def test_unknown_format(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(content)
    assert sniff_format(path) is ModelFormat.UNKNOWN
    with pytest.raises(ModelError, match="unrecognised model format"):
        load_torch_model(path, input_shape=SHAPE)


def test_onnx_is_recognised_not_loaded(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"\x08\x07\x12\x07pytorch")
    assert sniff_format(path) is ModelFormat.ONNX
    with pytest.raises(ModelError, match=r"unrecognised model format \(onnx\)"):
        load_torch_model(path, input_shape=SHAPE)


@pytest.mark.parametrize("spec", ["no_colon", "module:", ":build", ""])
def test_factory_spec_needs_module_and_function(spec: str) -> None:
    with pytest.raises(ConfigError, match=rf"expected a factory as 'package.module:function', got {spec!r}"):
        load_factory(spec)


def test_factory_errors(factory: str, tmp_path: Path) -> None:
    assert isinstance(load_factory(f"{factory}:build")(), nn.Module)
    with pytest.raises(ConfigError, match="cannot import factory 'bastion_no_such_module:build'"):
        load_factory("bastion_no_such_module:build")
    with pytest.raises(ConfigError, match=f"cannot import factory '{factory}:missing'"):
        load_factory(f"{factory}:missing")
    with pytest.raises(ConfigError, match=f"factory '{factory}:NOT_CALLABLE' is not callable"):
        load_factory(f"{factory}:NOT_CALLABLE")
    path = tmp_path / "weights.safetensors"
    save_file(tiny().state_dict(), str(path))
    with pytest.raises(ConfigError, match=r"returned int, expected an nn\.Module"):
        load_torch_model(path, input_shape=SHAPE, factory=f"{factory}:not_a_module")
