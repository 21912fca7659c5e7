"""Model-file scan: malicious pickles in every container are refused unrun; clean checkpoints and safe formats pass."""

from __future__ import annotations

import builtins
import importlib
import io
import os
import pickle
import pickletools
import time
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from bastion.audit.models import Verdict, scan_model_file


class _Reduce:
    """Pickles as ``func(*args)``: what a malicious file does to run code when loaded."""

    def __init__(self, func: object, *args: object) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return self.func, self.args


def _getattr_chain(command: str) -> bytes:
    """getattr(importlib.import_module("os"), "system")(command), written as opcodes (pickle.dumps cannot)."""
    text = command.encode()
    call = b"X" + len(text).to_bytes(4, "little") + text + b"\x85R"  # BINUNICODE, TUPLE1, REDUCE
    return b"\x80\x04cbuiltins\ngetattr\ncimportlib\nimport_module\n\x8c\x02os\x85R\x8c\x06system\x86R" + call + b"."


def _payloads(marker: Path) -> dict[str, object]:
    command = f"touch {marker}"
    return {
        "os.system": _Reduce(os.system, command),
        "eval": _Reduce(builtins.eval, f"__import__('os').system({command!r})"),
        "importlib": _Reduce(importlib.import_module, "os"),
    }


@pytest.mark.parametrize("kind", ["os.system", "eval", "getattr", "importlib"])
@pytest.mark.parametrize("suffix", [".pkl", ".joblib"])
def test_malicious_pickles_are_refused(tmp_path: Path, kind: str, suffix: str) -> None:
    marker = tmp_path / "MARKER"
    path = tmp_path / f"model{suffix}"
    blob = _getattr_chain(f"touch {marker}") if kind == "getattr" else pickle.dumps({"w": _payloads(marker)[kind]})
    path.write_bytes(blob)
    report = scan_model_file(path)
    assert report.verdict is Verdict.UNSAFE
    assert report.findings
    assert not marker.exists()


def test_getattr_chain_names_each_step(tmp_path: Path) -> None:
    path = tmp_path / "chain.pkl"
    path.write_bytes(_getattr_chain("true"))
    text = " ".join(scan_model_file(path).findings)
    assert "builtins.getattr" in text
    assert "importlib.import_module" in text
    pickletools.dis(path.read_bytes(), out=io.StringIO())  # a well-formed pickle: decoded, never run


def test_dup_bomb_stays_small_and_fast(tmp_path: Path) -> None:
    # Nested memo references: each level is a list holding the previous one 100 times, 8 levels deep,
    # which an expanding walker would blow up to 10**16 leaves; then a global off the allowlist.
    body = b"\x80\x04]" + b"\x94"  # EMPTY_LIST, MEMOIZE (0)
    for level in range(8):
        body += b"](" + b"h" + bytes([level]) + b"2" * 99 + b"e\x94"  # EMPTY_LIST MARK BINGET DUP*99 APPENDS MEMOIZE
    body += b"\x8c\x02os\x94\x8c\x06system\x94\x93\x94."
    path = tmp_path / "bomb.pkl"
    path.write_bytes(body * 1)
    tracemalloc.start()
    start = time.perf_counter()
    report = scan_model_file(path)
    elapsed = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert report.verdict is Verdict.UNSAFE
    assert any("os.system" in f for f in report.findings)
    assert elapsed < 1.0
    assert peak < 5_000_000


def _state_dict_path(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "model.pt"
    torch.save(torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2)).state_dict(), path)
    return path


def test_clean_state_dict_passes(tmp_path: Path) -> None:
    report = scan_model_file(_state_dict_path(tmp_path))
    assert report.verdict is Verdict.SAFE, report.findings
    assert report.detected_format == "pytorch pickle checkpoint"


@pytest.mark.parametrize("member", ["data.pkl", "extra.pkl"])
def test_torch_zip_with_payload_is_refused(tmp_path: Path, member: str) -> None:
    marker = tmp_path / "MARKER"
    clean = _state_dict_path(tmp_path)
    evil = tmp_path / "evil.pt"
    with zipfile.ZipFile(clean) as src, zipfile.ZipFile(evil, "w") as dst:
        prefix = src.namelist()[0].split("/", 1)[0]
        for info in src.infolist():
            blob = src.read(info.filename)
            if info.filename == f"{prefix}/data.pkl" and member == "data.pkl":
                blob = pickle.dumps(_payloads(marker)["os.system"])
            dst.writestr(info, blob)
        if member != "data.pkl":
            dst.writestr(f"{prefix}/{member}", pickle.dumps(_payloads(marker)["eval"]))
    report = scan_model_file(evil)
    assert report.verdict is Verdict.UNSAFE
    assert any(member in f for f in report.findings)
    assert not marker.exists()


def test_safetensors_passes_and_truncated_is_named(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    save_file({"w": torch.ones(8, 8), "b": torch.zeros(8)}, str(path))
    assert scan_model_file(path).verdict is Verdict.SAFE
    truncated = tmp_path / "cut.safetensors"
    truncated.write_bytes(path.read_bytes()[:-40])
    report = scan_model_file(truncated)
    assert report.verdict is Verdict.ERROR
    assert any("truncated" in f and "cut.safetensors" in f for f in report.findings)


def test_pt_that_is_safetensors_is_named(tmp_path: Path) -> None:
    path = tmp_path / "weights.pt"
    save_file({"w": torch.ones(2, 2)}, str(path))
    report = scan_model_file(path)
    assert report.detected_format == "safetensors"
    assert report.verdict is Verdict.ERROR
    assert any("weights.pt" in f and "safetensors" in f for f in report.findings)


def test_onnx_passes(tmp_path: Path) -> None:
    pytest.importorskip("onnx", reason="onnx is not installed: ONNX export cannot be checked")
    path = tmp_path / "model.onnx"
    try:
        torch.onnx.export(torch.nn.Linear(3, 2), (torch.zeros(1, 3),), str(path), dynamo=False)
    except Exception as exc:  # torch's exporter needs optional packages on some versions
        pytest.skip(f"torch.onnx.export failed here: {exc}")
    report = scan_model_file(path)
    assert report.verdict is Verdict.SAFE, report.findings


def test_object_npy_with_payload_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "|O", "fortran_order": False, "shape": (1,)})
    path = tmp_path / "arr.npy"
    path.write_bytes(buffer.getvalue() + pickle.dumps(_payloads(marker)["os.system"]))
    report = scan_model_file(path)
    assert report.verdict is Verdict.UNSAFE
    assert not marker.exists()
    clean = tmp_path / "clean.npy"
    np.save(clean, np.arange(6.0))
    assert scan_model_file(clean).verdict is Verdict.SAFE


def test_missing_file_is_an_error_finding(tmp_path: Path) -> None:
    report = scan_model_file(tmp_path / "nope.pkl")
    assert report.verdict is Verdict.ERROR
    assert "nope.pkl" in report.findings[0]


def test_torchscript_and_legacy_checkpoint_pass(tmp_path: Path) -> None:
    torch.manual_seed(0)
    scripted = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(3, 2)), str(scripted))
    report = scan_model_file(scripted)
    assert (report.detected_format, report.verdict) == ("torchscript", Verdict.SAFE), report.findings
    legacy = tmp_path / "legacy.pt"
    torch.save(torch.nn.Linear(3, 2).state_dict(), legacy, _use_new_zipfile_serialization=False)
    report = scan_model_file(legacy)
    assert report.verdict is Verdict.SAFE, report.findings
