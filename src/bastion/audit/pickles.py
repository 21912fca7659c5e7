"""An allowlist scanner for pickle and joblib files: every global a file would import, found without unpickling it.

Unpickling imports the globals a file names and calls them, so a pickle can run any code. The
scanner reads the opcodes with :func:`pickletools.genops`, which decodes and never imports or
calls, and follows the stack and the memo just far enough to name every import (STACK_GLOBAL
takes its names from the stack, often through the memo). Any global that is not on an allowlist
of plain data types (numpy arrays and dtypes, scipy sparse matrices, scikit-learn classes, a few
builtin containers) makes the file unsafe; so does anything the scanner cannot follow.

A joblib file is a pickle with raw array bytes written after each ``NumpyArrayWrapper``. The
scanner works out from the wrapper's shape and dtype exactly how many bytes joblib's loader will
read there, skips them and goes on; it refuses a wrapper whose layout it cannot work out, since
guessing wrong would let opcodes hide in the skipped bytes. An object array is a nested pickle,
scanned the same way.
"""

from __future__ import annotations

import _compat_pickle
import io
import math
import pickletools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["SAFE_GLOBALS", "ScanResult", "is_safe_global", "python3_name", "refusal_reason", "scan_pickle"]

SAFE_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {
        # numpy arrays, scalars and dtypes (both the numpy 1 and numpy 2 module paths)
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy.random._pickle", "__bit_generator_ctor"),
        ("numpy.random._pickle", "__generator_ctor"),
        ("numpy.random._pickle", "__randomstate_ctor"),
        # joblib's placeholder for an array whose bytes follow the pickle opcodes
        ("joblib.numpy_pickle", "NumpyArrayWrapper"),
        # containers and the helpers protocols 0-2 use to rebuild objects and bytes
        ("builtins", "bytearray"),
        ("builtins", "complex"),
        ("builtins", "frozenset"),
        ("builtins", "object"),
        ("builtins", "set"),
        ("builtins", "slice"),
        ("collections", "OrderedDict"),
        ("copyreg", "_reconstructor"),
        ("_codecs", "encode"),
    }
)

# Named in refusals so that a user sees why; anything else off the allowlist is refused as unknown.
_KNOWN_DANGEROUS_MODULES = frozenset(
    {
        "builtins",
        "code",
        "codeop",
        "ctypes",
        "functools",
        "importlib",
        "marshal",
        "multiprocessing",
        "nt",
        "operator",
        "os",
        "pickle",
        "posix",
        "pty",
        "runpy",
        "shutil",
        "socket",
        "subprocess",
        "sys",
        "webbrowser",
        "_pickle",
    }
)
_SKLEARN_DENIED = ("sklearn.datasets", "sklearn.externals", "sklearn.utils._testing", "sklearn.utils._show_versions")
_PUBLIC_CLASS_NAME = re.compile(r"[A-Z][A-Za-z0-9]*")
_SPARSE_NAME = re.compile(r"(bsr|coo|csc|csr|dia|dok|lil)_(array|matrix)")
_WRAPPER = ("joblib.numpy_pickle", "NumpyArrayWrapper")
_DTYPE = ("numpy", "dtype")
# dtype strings whose size the string fixes: bool, integers, floats, complex, and sized bytes / str.
_FIXED_DTYPE = re.compile(r"[<>|=]?(?:[biufc]\d*|[SU]\d+)")
_OBJECT_DTYPE = re.compile(r"[<>|=]?O\d*")
_MAX_NESTING = 4


@dataclass(frozen=True)
class ScanResult:
    """What scanning a pickle found: every global it would import, and why it is unsafe (if it is)."""

    safe: bool
    globals: tuple[tuple[str, str], ...]
    reasons: tuple[str, ...]


def is_safe_global(module: str, name: str) -> bool:
    """Whether unpickling may import ``module.name``."""
    return refusal_reason(module, name) is None


def refusal_reason(module: str, name: str) -> str | None:
    """Why ``module.name`` may not be imported while unpickling, or None when it may."""
    module, name = python3_name(module, name)
    if (module, name) in SAFE_GLOBALS or _is_sklearn_class(module, name) or _is_sparse(module, name):
        return None
    if module.split(".")[0] in _KNOWN_DANGEROUS_MODULES:
        return f"{module}.{name} can run code or reach the system"
    return f"{module}.{name} is not on the allowlist of safe globals"


def python3_name(module: str, name: str) -> tuple[str, str]:
    """The name an unpickler imports for ``module.name``: protocols 0-2 spell builtins ``__builtin__`` and such."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


def _is_sklearn_class(module: str, name: str) -> bool:
    """A public class name in a scikit-learn module; the loader also checks that it resolves to a class."""
    if module != "sklearn" and not module.startswith("sklearn."):
        return False
    if any(module == denied or module.startswith(denied + ".") for denied in _SKLEARN_DENIED):
        return False
    return _PUBLIC_CLASS_NAME.fullmatch(name) is not None


def _is_sparse(module: str, name: str) -> bool:
    return (module == "scipy.sparse" or module.startswith("scipy.sparse.")) and bool(_SPARSE_NAME.fullmatch(name))


def scan_pickle(data: bytes) -> ScanResult:
    """Scan one pickle (or joblib file) for the globals it imports; never unpickles anything."""
    scanner = _Scanner(data)
    try:
        scanner.scan(depth=0)
    except _Refused as exc:
        scanner.reasons.append(str(exc))
    except ValueError as exc:  # from genops: an unknown opcode, a malformed argument, no STOP
        scanner.reasons.append(f"not a well-formed pickle: {exc}")
    reasons = tuple(dict.fromkeys(scanner.reasons))
    return ScanResult(safe=not reasons, globals=tuple(dict.fromkeys(scanner.found)), reasons=reasons)


class _Refused(Exception):
    """The stream does something the scanner will not follow; the message says what."""


@dataclass(frozen=True)
class _Global:
    module: str
    name: str


@dataclass(eq=False)
class _Object:
    """An object the unpickler would build by calling ``cls(*args)``, then give ``state``."""

    cls: object
    args: object
    state: object = None


_UNKNOWN = object()  # a value the scanner does not follow (it cannot be a global: those are all tracked)


class _Scanner:
    """The byte stream and what was found in it, shared by the outer pickle and nested ones."""

    def __init__(self, data: bytes) -> None:
        self.stream = io.BytesIO(data)
        self.size = len(data)
        self.found: list[tuple[str, str]] = []
        self.reasons: list[str] = []

    def scan(self, depth: int) -> None:
        if depth > _MAX_NESTING:
            raise _Refused(f"pickles nested more than {_MAX_NESTING} deep")
        machine = _Machine(self, depth)
        for opcode, arg, pos in _ops(self.stream):
            machine.step(opcode.name, arg, pos)

    def record(self, module: str, name: str) -> _Global:
        module, name = python3_name(module, name)
        self.found.append((module, name))
        reason = refusal_reason(module, name)
        if reason is not None:
            self.reasons.append(reason)
        return _Global(module, name)

    def skip(self, n: int, what: str) -> bytes:
        start = self.stream.tell()
        if start + n > self.size:
            raise _Refused(f"{what} runs past the end of the file ({n} bytes at offset {start})")
        return self.stream.read(n)


def _ops(stream: io.BytesIO) -> Iterator[tuple[pickletools.OpcodeInfo, Any, int]]:
    """genops reads the stream one opcode at a time, so skipping bytes between opcodes is seen at once."""
    for opcode, arg, pos in pickletools.genops(stream):
        yield opcode, arg, pos if pos is not None else 0


# Opcodes that push their argument, decoded by genops.
_PUSH_ARG = frozenset(
    {
        *("INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "FLOAT", "BINFLOAT"),
        *("STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8"),
        *("BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "BYTEARRAY8"),
    }
)
_CONSTANTS: dict[str, object] = {"NONE": None, "NEWTRUE": True, "NEWFALSE": False, "EMPTY_TUPLE": ()}
_REFUSED_OPS = {
    "PERSID": "persistent ids (resolved by code outside the pickle)",
    "BINPERSID": "persistent ids (resolved by code outside the pickle)",
    "EXT1": "extension codes (globals named through the copyreg registry)",
    "EXT2": "extension codes (globals named through the copyreg registry)",
    "EXT4": "extension codes (globals named through the copyreg registry)",
}


class _Machine:
    """Just enough of an unpickler's stack, marks and memo to name every global and find joblib's arrays."""

    def __init__(self, scanner: _Scanner, depth: int) -> None:
        self.scanner = scanner
        self.depth = depth
        self.stack: list[object] = []
        self.marks: list[int] = []
        self.memo: dict[int, object] = {}
        self.frame_end = 0
        self.handlers: dict[str, Callable[[Any, int], object]] = {
            "PROTO": lambda arg, pos: None,
            "FRAME": self._frame,
            "STOP": self._stop,
            "MARK": lambda arg, pos: self.marks.append(len(self.stack)),
            "POP": self._pop_op,
            "POP_MARK": lambda arg, pos: self._values(self._pop_mark()),
            "DUP": lambda arg, pos: self.stack.append(self._top()),
            "TUPLE": lambda arg, pos: self.stack.append(tuple(self._values(self._pop_mark()))),
            "TUPLE1": lambda arg, pos: self.stack.append(self._take(1)),
            "TUPLE2": lambda arg, pos: self.stack.append(self._take(2)),
            "TUPLE3": lambda arg, pos: self.stack.append(self._take(3)),
            "EMPTY_LIST": lambda arg, pos: self.stack.append([]),
            "LIST": lambda arg, pos: self.stack.append(self._values(self._pop_mark())),
            "APPEND": lambda arg, pos: self._extend(list(self._take(1))),
            "APPENDS": lambda arg, pos: self._extend(self._values(self._pop_mark())),
            "EMPTY_DICT": lambda arg, pos: self.stack.append({}),
            "DICT": lambda arg, pos: self.stack.append(self._update({}, self._values(self._pop_mark()))),
            "SETITEM": lambda arg, pos: self._update(self._top(below=2), list(self._take(2))),
            "SETITEMS": lambda arg, pos: self._update(self._top(below=0, mark=True), self._values(self._pop_mark())),
            "GET": self._get,
            "BINGET": self._get,
            "LONG_BINGET": self._get,
            "PUT": self._put,
            "BINPUT": self._put,
            "LONG_BINPUT": self._put,
            "MEMOIZE": lambda arg, pos: self.memo.__setitem__(len(self.memo), self._top()),
            "GLOBAL": lambda arg, pos: self.stack.append(self._named(arg)),
            "STACK_GLOBAL": self._stack_global,
            "INST": self._inst,
            "OBJ": self._obj,
            "REDUCE": lambda arg, pos: self._call(self._take(1)[0], kwargs=None),
            "NEWOBJ": lambda arg, pos: self._call(self._take(1)[0], kwargs=None),
            "NEWOBJ_EX": lambda arg, pos: self._call(*self._take(2)),
            "BUILD": self._build,
        }

    def step(self, name: str, arg: Any, pos: int) -> None:
        if name in _REFUSED_OPS:
            raise _Refused(f"{name} at offset {pos}: {_REFUSED_OPS[name]} are not supported")
        if name in _PUSH_ARG:
            self.stack.append(arg)
        elif name in _CONSTANTS:
            self.stack.append(_CONSTANTS[name])
        elif name in self.handlers:
            self.handlers[name](arg, pos)
        else:
            self._generic(name)

    # -- the stack -----------------------------------------------------------------------------

    def _top(self, below: int = 0, mark: bool = False) -> object:
        """The value ``below`` places under the top, or (``mark``) the value just under the last mark."""
        index = (self.marks[-1] if self.marks else 0) - 1 if mark else len(self.stack) - 1 - below
        if index < (0 if mark else self._floor()):
            raise _Refused("the pickle's stack underflows: not a well-formed pickle")
        return self.stack[index]

    def _floor(self) -> int:
        return self.marks[-1] if self.marks else 0

    def _take(self, n: int, callee: bool = False) -> tuple[object, ...]:
        """Pop ``n`` values, in stack order; only a ``callee`` may be joblib's wrapper class."""
        if len(self.stack) - n < self._floor():
            raise _Refused("the pickle's stack underflows: not a well-formed pickle")
        values = self.stack[len(self.stack) - n :]
        del self.stack[len(self.stack) - n :]
        return tuple(values if callee else self._values(values))

    def _pop_mark(self) -> list[object]:
        if not self.marks:
            raise _Refused("the pickle pops a mark it never set: not a well-formed pickle")
        start = self.marks.pop()
        values = self.stack[start:]
        del self.stack[start:]
        return values

    def _values(self, values: list[object]) -> list[object]:
        """Values used as data: joblib's wrapper class may only be called, never handed to anything else."""
        for value in values:
            if value == _Global(*_WRAPPER):
                raise _Refused("joblib.numpy_pickle.NumpyArrayWrapper is used other than to build an array wrapper")
        return values

    def _pop_op(self, arg: object, pos: int) -> None:
        if len(self.stack) > self._floor():
            self._take(1)
        else:
            self._values(self._pop_mark())

    def _extend(self, values: list[object]) -> None:
        target = self._top()
        if isinstance(target, list):
            target.extend(self._values(values))

    def _update(self, target: object, items: list[object]) -> object:
        self._values(items)
        if isinstance(target, dict):
            for key, value in zip(items[::2], items[1::2], strict=False):
                # Only flat keys (the state dicts the scanner follows use strings). Hashing a key the file
                # built, e.g. a tuple nested 60 deep through DUP (t = (t, t)), takes 2**60 steps in C: a hang.
                if isinstance(key, (str, bytes, int, float, bool)) or key is None:
                    target[key] = value
        return target

    def _generic(self, name: str) -> None:
        """Any other opcode (e.g. protocol 5 buffers): its documented stack effect, values unknown."""
        opcode = _OPCODES[name]
        before = opcode.stack_before
        if pickletools.markobject in before:
            self._values(self._pop_mark())
            before = before[: before.index(pickletools.markobject)]
        self._take(len(before))
        self.stack.extend(_UNKNOWN for _ in opcode.stack_after)

    # -- the memo and frames -------------------------------------------------------------------

    def _get(self, arg: int, pos: int) -> None:
        if arg not in self.memo:
            raise _Refused(f"memo entry {arg} read at offset {pos} was never written: not a well-formed pickle")
        self.stack.append(self.memo[arg])

    def _put(self, arg: int, pos: int) -> None:
        self.memo[arg] = self._top()

    def _frame(self, arg: int, pos: int) -> None:
        self.frame_end = pos + 9 + arg  # the opcode, its 8-byte length, then the frame

    def _stop(self, arg: object, pos: int) -> None:
        # A nested pickle's loader reads its whole last frame: one running past STOP would hide bytes.
        if self.depth and self.frame_end > pos + 1:
            raise _Refused(f"a nested pickle's frame runs past its STOP at offset {pos}")

    # -- imports and calls ---------------------------------------------------------------------

    def _named(self, arg: str) -> _Global:
        module, _, name = arg.partition(" ")
        return self.scanner.record(module, name)

    def _stack_global(self, arg: object, pos: int) -> None:
        module, name = self._take(2)
        if not isinstance(module, str) or not isinstance(name, str):
            raise _Refused(f"STACK_GLOBAL at offset {pos} imports a name computed while loading")
        self.stack.append(self.scanner.record(module, name))

    def _inst(self, arg: str, pos: int) -> None:
        cls = self._named(arg)
        self.stack.append(_Object(cls, tuple(self._values(self._pop_mark()))))

    def _obj(self, arg: object, pos: int) -> None:
        values = self._pop_mark()
        if not values:
            raise _Refused("OBJ without a class: not a well-formed pickle")
        self.stack.append(_Object(values[0], tuple(self._values(values[1:]))))

    def _call(self, args: object, kwargs: object) -> None:
        (callee,) = self._take(1, callee=True)
        self.stack.append(_Object(callee, args))

    def _build(self, arg: object, pos: int) -> None:
        (state,) = self._take(1)
        target = self._top()
        if not isinstance(target, _Object):
            return
        target.state = state
        if target.cls == _Global(*_WRAPPER):
            self._skip_array(state, pos)

    def _skip_array(self, state: object, pos: int) -> None:
        """Step over the bytes joblib's loader reads after building a NumpyArrayWrapper."""
        # joblib reads them straight from the file: inside a frame, the unpickler would go on with the
        # frame's remaining opcodes (which this scanner would have skipped).
        if self.frame_end > pos + 1:
            raise _Refused(f"array data at offset {pos + 1} starts inside a pickle frame")
        layout = _layout(state)
        if layout is None:
            self.scanner.scan(self.depth + 1)
            return
        nbytes, aligned = layout
        if aligned:
            padding = self.scanner.skip(1, "array padding")[0]
            self.scanner.skip(padding, "array padding")
        self.scanner.skip(nbytes, "array data")


_OPCODES = {opcode.name: opcode for opcode in pickletools.opcodes}


def _layout(state: object) -> tuple[int, bool] | None:
    """(bytes of array data, whether an alignment padding comes first) for a wrapper; None for an object array."""
    if not isinstance(state, dict):
        raise _Refused("a NumpyArrayWrapper without a plain state: its array cannot be located")
    shape = state.get("shape")
    if not isinstance(shape, tuple) or not all(type(d) is int and d >= 0 for d in shape):
        raise _Refused(f"a NumpyArrayWrapper with shape {shape!r}: expected a tuple of sizes")
    descr = _dtype_string(state.get("dtype"))
    if _OBJECT_DTYPE.fullmatch(descr):
        return None
    if not _FIXED_DTYPE.fullmatch(descr):
        raise _Refused(f"a NumpyArrayWrapper with dtype {descr!r}: expected bool, number, bytes or str")
    itemsize = np.dtype(descr).itemsize  # a plain type string: parsing it runs no code
    _check_dtype_state(state["dtype"], itemsize)
    return math.prod(shape) * itemsize, state.get("numpy_array_alignment_bytes") is not None


def _dtype_string(dtype: object) -> str:
    if not (isinstance(dtype, _Object) and dtype.cls == _Global(*_DTYPE) and isinstance(dtype.args, tuple)):
        raise _Refused("a NumpyArrayWrapper whose dtype is not a plain numpy.dtype(...)")
    if not dtype.args or not isinstance(dtype.args[0], str):
        raise _Refused(f"a NumpyArrayWrapper with dtype arguments {dtype.args!r}")
    return dtype.args[0]


def _check_dtype_state(dtype: object, itemsize: int) -> None:
    """A dtype's pickled state may set sub-arrays, fields or a size: any of them would change the layout."""
    state = dtype.state if isinstance(dtype, _Object) else None
    if state is None:
        return
    plain = isinstance(state, tuple) and len(state) in (8, 9) and state[2:5] == (None, None, None)
    if not plain or not isinstance(state, tuple) or state[5] not in (-1, itemsize):
        raise _Refused(f"a NumpyArrayWrapper whose dtype has a layout the scanner does not follow: {state!r}")
