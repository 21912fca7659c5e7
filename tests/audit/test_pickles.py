"""The pickle scanner: allowlisted globals pass, anything else is named and refused, and nothing is ever unpickled."""

from __future__ import annotations

import builtins
import functools
import importlib
import io
import os
import pickle
import struct
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from bastion.audit import is_safe_global, scan_pickle


@pytest.fixture(scope="module")
def fitted() -> LogisticRegression:
    x, y = load_digits(return_X_y=True)
    return LogisticRegression(max_iter=300).fit(x[:300] / 16, y[:300])


def joblib_bytes(obj: object, tmp_path: Path) -> bytes:
    path = tmp_path / "model.joblib"
    joblib.dump(obj, path)
    return path.read_bytes()


class _Reduce:
    """Pickles as ``func(*args)``: what a malicious file does to run code when loaded."""

    def __init__(self, func: object, *args: object) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return self.func, self.args


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_fitted_estimator_pickle_is_safe(fitted: LogisticRegression, protocol: int) -> None:
    result = scan_pickle(pickle.dumps(fitted, protocol=protocol))
    assert result.safe, result.reasons
    assert ("sklearn.linear_model._logistic", "LogisticRegression") in result.globals


def test_joblib_file_is_followed_past_its_raw_arrays(fitted: LogisticRegression, tmp_path: Path) -> None:
    result = scan_pickle(joblib_bytes(fitted, tmp_path))
    assert result.safe, result.reasons
    assert ("joblib.numpy_pickle", "NumpyArrayWrapper") in result.globals
    assert ("sklearn.linear_model._logistic", "LogisticRegression") in result.globals


def test_global_after_a_joblib_array_is_still_seen(tmp_path: Path) -> None:
    # The os.system call comes after an array's raw bytes: the scanner must skip exactly those bytes.
    data = joblib_bytes({"w": np.arange(1000.0), "run": _Reduce(os.system, "true")}, tmp_path)
    result = scan_pickle(data)
    assert not result.safe
    assert any("system can run code" in r for r in result.reasons)


def test_joblib_object_array_is_a_nested_pickle_scanned_too(tmp_path: Path) -> None:
    names = np.array(["a", "b"], dtype=object)
    assert scan_pickle(joblib_bytes({"names": names, "w": np.ones(3)}, tmp_path)).safe
    evil = np.array([_Reduce(eval, "1")], dtype=object)
    result = scan_pickle(joblib_bytes({"w": evil}, tmp_path))
    assert not result.safe and ("builtins", "eval") in result.globals


def test_truncated_joblib_file_is_refused(fitted: LogisticRegression, tmp_path: Path) -> None:
    data = joblib_bytes(fitted, tmp_path)
    result = scan_pickle(data[: len(data) // 2])
    assert not result.safe
    assert result.reasons


@pytest.mark.parametrize(
    ("payload", "found"),
    [
        (_Reduce(os.system, "touch pwned"), (os.system.__module__, "system")),
        (_Reduce(eval, "1+1"), ("builtins", "eval")),
        (_Reduce(exec, "x=1"), ("builtins", "exec")),
        (_Reduce(getattr, _Reduce(builtins.__import__, "os"), "system"), ("builtins", "getattr")),
        (_Reduce(importlib.import_module, "os"), ("importlib", "import_module")),
        (_Reduce(builtins.__import__, "os"), ("builtins", "__import__")),
        (_Reduce(functools.partial, print), ("functools", "partial")),
        (_Reduce(open, "/etc/passwd"), ("io", "open")),
    ],
    ids=["os.system", "eval", "exec", "getattr", "importlib", "__import__", "partial", "open"],
)
@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_code_running_globals_are_refused(payload: object, found: tuple[str, str], protocol: int) -> None:
    result = scan_pickle(pickle.dumps(payload, protocol=protocol))
    assert not result.safe
    assert found in result.globals
    assert any(f"{found[0]}.{found[1]}" in r for r in result.reasons)


def test_unknown_global_is_refused_as_not_allowlisted() -> None:
    data = b"\x80\x02c" + b"mypackage.models\nThing\n" + b")R."
    result = scan_pickle(data)
    assert not result.safe
    assert result.reasons == ("mypackage.models.Thing is not on the allowlist of safe globals",)


def test_stack_global_names_read_through_the_memo() -> None:
    # 'os' and 'system' are memoised, popped, then fetched back with BINGET before STACK_GLOBAL.
    data = (
        b"\x80\x04\x8c\x02os\x94\x8c\x06system\x94" + b"00"  # push, memoise, pop both
        b"h\x00h\x01\x93" + b"\x8c\x04true\x85R."
    )
    result = scan_pickle(data)
    assert ("os", "system") in result.globals and not result.safe


def test_stack_global_with_a_computed_name_is_refused() -> None:
    # The module name is the result of a call: the scanner cannot know it, so it refuses.
    data = b"\x80\x04\x8c\x08builtins\x8c\x03set\x93)R\x8c\x03foo\x93."
    result = scan_pickle(data)
    assert not result.safe
    assert any("computed while loading" in r for r in result.reasons)


def test_python2_names_are_checked_as_python3_imports_them() -> None:
    assert not scan_pickle(b"c__builtin__\neval\n(S'1'\ntR.").safe
    assert scan_pickle(b"c__builtin__\nset\n(tR.").safe


@pytest.mark.parametrize("data", [b"", b"hello world", b"\x80\x04\x95", b"\x80\x02}q\x00"], ids=str)
def test_malformed_bytes_are_not_safe(data: bytes) -> None:
    result = scan_pickle(data)
    assert not result.safe and result.reasons


def test_persistent_ids_and_extension_codes_are_refused() -> None:
    assert any("persistent ids" in r for r in scan_pickle(b"\x80\x02K\x01Q.").reasons)
    assert any("extension codes" in r for r in scan_pickle(b"\x80\x02\x82\x01.").reasons)


def test_wrapper_class_passed_as_data_is_refused() -> None:
    # joblib's wrapper built through copyreg._reconstructor would slip past the array layout checks.
    data = b"\x80\x02ccopyreg\n_reconstructor\ncjoblib.numpy_pickle\nNumpyArrayWrapper\ncbuiltins\nobject\nN\x87R."
    result = scan_pickle(data)
    assert not result.safe
    assert any("NumpyArrayWrapper is used other than" in r for r in result.reasons)


def test_scan_never_unpickles(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    scan_pickle(pickle.dumps(_Reduce(os.mkdir, str(marker))))
    assert not marker.exists()


@pytest.mark.parametrize(
    ("module", "name", "safe"),
    [
        ("numpy", "ndarray", True),
        ("numpy._core.multiarray", "_reconstruct", True),
        ("scipy.sparse._csr", "csr_matrix", True),
        ("sklearn.ensemble._forest", "RandomForestClassifier", True),
        ("collections", "OrderedDict", True),
        ("builtins", "slice", True),
        ("sklearn.utils._testing", "TempMemmap", False),
        ("sklearn.linear_model", "_private_helper", False),
        ("sklearn.base", "BaseEstimator.__init__", False),
        ("builtins", "getattr", False),
        ("posix", "system", False),
        ("nt", "system", False),
        ("subprocess", "Popen", False),
        ("runpy", "run_path", False),
        ("sys", "modules", False),
        ("pickle", "loads", False),
        ("numpy", "load", False),
    ],
)
def test_allowlist(module: str, name: str, safe: bool) -> None:
    assert is_safe_global(module, name) is safe


def test_result_is_frozen() -> None:
    result = scan_pickle(pickle.dumps([1, 2]))
    assert result.safe and result.globals == () and result.reasons == ()
    with pytest.raises(AttributeError):
        result.safe = False  # type: ignore[misc]


def test_handcrafted_joblib_layout_with_padding() -> None:
    # The layout joblib writes: wrapper state, BUILD, then a padding-length byte, padding, raw float64s.
    arr = np.arange(3.0)
    buf = io.BytesIO()
    joblib.dump(arr, buf)
    data = buf.getvalue()
    assert scan_pickle(data).safe
    assert struct.pack("<d", 2.0) in data  # the raw bytes are really there, between opcodes


def test_a_hash_bomb_key_is_scanned_in_bounded_time(tmp_path: Path) -> None:
    """t = (t, t) sixty levels deep, used as a dict key: hashing it would take 2**60 steps (in C, uninterruptible).

    The scan runs in a child process so that a regression fails this test instead of hanging the suite.
    """
    import pickle
    import subprocess
    import sys

    body = pickle.PROTO + bytes([2]) + pickle.EMPTY_TUPLE
    for _ in range(60):
        body += pickle.DUP + pickle.TUPLE2
    bomb = pickle.EMPTY_DICT + body[2:] + pickle.NONE + pickle.SETITEM + pickle.STOP
    bomb = pickle.PROTO + bytes([2]) + bomb
    path = tmp_path / "bomb.pkl"
    path.write_bytes(bomb)
    code = (
        "import sys; from pathlib import Path; from bastion.audit.pickles import scan_pickle; "
        "r = scan_pickle(Path(sys.argv[1]).read_bytes()); print('scanned', r.safe)"
    )
    result = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("scanned")
