"""Every model loader runs the model-file scan before a loading library reads the file."""

from __future__ import annotations

import os
import pickle
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from bastion.audit import Verdict, scan_model_file
from bastion.errors import ModelError, UnsafeModelError
from bastion.models import load_model
from bastion.models.load import load_torch_model

SHAPE = (1, 2, 2)


def build() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 3))


@pytest.fixture
def factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    name = f"bastion_scan_factory_{uuid.uuid4().hex[:8]}"
    source = "from torch import nn\n\ndef build():\n    return nn.Sequential(nn.Flatten(), nn.Linear(4, 3))\n"
    (tmp_path / f"{name}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield f"{name}:build"
    sys.modules.pop(name, None)


class _Mkdir:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.mkdir, (str(self.marker),)


def test_truncated_safetensors_is_refused_by_the_scan_before_loading(tmp_path: Path, factory: str) -> None:
    path = tmp_path / "weights.safetensors"
    save_file(build().state_dict(), str(path))
    path.write_bytes(path.read_bytes()[:-8])
    with pytest.raises(ModelError, match=r"failed the model-file scan: .*truncated safetensors file"):
        load_torch_model(path, input_shape=SHAPE, factory=factory)


def test_state_dict_with_a_payload_beside_the_tensors_never_runs(tmp_path: Path, factory: str) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "weights.pt"
    torch.save({**build().state_dict(), "extra": _Mkdir(marker)}, path)
    with pytest.raises(UnsafeModelError, match=r"refused by the model-file scan: .*mkdir"):
        load_torch_model(path, input_shape=SHAPE, factory=factory)
    assert not marker.exists()


def test_clean_state_dict_and_safetensors_still_load(tmp_path: Path, factory: str) -> None:
    state = build().state_dict()
    torch.save(state, tmp_path / "w.pt")
    save_file(state, str(tmp_path / "w.safetensors"))
    x = torch.rand(2, *SHAPE)
    outputs = [
        load_model(tmp_path / name, input_shape=SHAPE, factory=factory).logits(x) for name in ("w.pt", "w.safetensors")
    ]
    torch.testing.assert_close(outputs[0], outputs[1])


def test_a_file_whose_name_claims_another_format_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"  # a pickle, dressed as ONNX
    path.write_bytes(pickle.dumps({"a": 1}, protocol=4))
    with pytest.raises(ModelError, match=r"claims \.onnx by its extension but its content is pickle"):
        load_model(path, input_shape=SHAPE, trust_pickle=True)


def test_npz_arrays_scan_safe_and_object_arrays_are_refused(tmp_path: Path) -> None:
    plain = tmp_path / "plain.npz"
    np.savez(plain, x=np.zeros((3, 4), dtype=np.float32), y=np.arange(3))
    report = scan_model_file(plain)
    assert (report.detected_format, report.verdict) == (".npz", Verdict.SAFE)

    marker = tmp_path / "pwned"
    hostile = tmp_path / "hostile.npz"
    objects = np.empty(1, dtype=object)
    objects[0] = _Mkdir(marker)
    np.savez(hostile, x=np.zeros(2), payload=objects)
    report = scan_model_file(hostile)
    assert report.verdict is Verdict.UNSAFE
    assert any("payload.npy" in f and "mkdir" in f for f in report.findings)
    assert not marker.exists()


def test_truncated_npz_member_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "arrays.npz"
    np.savez(path, x=np.zeros((100, 100)))
    path.write_bytes(path.read_bytes()[:-200])
    report = scan_model_file(path)
    assert report.verdict is Verdict.ERROR
