"""Shared mechanics of the benchmarks: batching, timing, scoring, the machine's description, the table and JSON."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import os
import platform
import re
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

# An attack under test: clean inputs and labels on the device in, adversarial inputs on the device out.
Runner = Callable[[Tensor, Tensor], Tensor]

# Slack when checking that a returned point lies inside the eps ball (float32 round-off).
BALL_TOLERANCE = 1e-5


@dataclass(frozen=True)
class Measurement:
    """One tool in one configuration on one benchmark row."""

    row: str
    tool: str  # bastion, torchattacks, art or torch (the floor)
    config: str  # what was run, in a few words
    batch_size: int | None
    n: int
    seconds: float  # wall time
    cpu_seconds: float  # this process's CPU time over the same run
    eps: float | None = None
    robust_accuracy: float | None = None  # share of all n examples still classified correctly
    success_rate: float | None = None  # share of clean-correct examples the attack broke
    median_distance: float | None = None  # over successful examples, in the row's norm
    outside_ball: int = 0  # returned points farther than eps (should be 0)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Score:
    robust_accuracy: float
    success_rate: float
    median_distance: float | None
    outside_ball: int
    clean_ok: Tensor  # bool per example: classified correctly before the attack
    fooled: Tensor  # bool per example: misclassified and inside the ball
    distance: Tensor


def batched(runner: Callable[[Tensor, Tensor], Tensor], batch_size: int) -> Runner:
    """Run ``runner`` on consecutive batches of ``batch_size`` examples and join the results."""

    def run(x: Tensor, y: Tensor) -> Tensor:
        parts = [runner(x[s : s + batch_size], y[s : s + batch_size]) for s in range(0, x.shape[0], batch_size)]
        return torch.cat(parts)

    return run


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(runner: Runner, x: Tensor, y: Tensor, *, seed: int = 0) -> tuple[Tensor, float, float]:
    """Seed every generator the tools use, run once; the output, its wall time and this process's CPU time.

    CPU time is the steadier figure on a machine shared with other work: time spent descheduled
    does not count (with one torch thread; more threads may spin while they wait for each other).
    """
    torch.manual_seed(seed)
    np.random.seed(seed)
    synchronize(x.device)
    wall, cpu = time.perf_counter(), time.process_time()
    out = runner(x, y)
    synchronize(x.device)
    return out.detach(), time.perf_counter() - wall, time.process_time() - cpu


def distance(norm: str, x_adv: Tensor, x: Tensor) -> Tensor:
    p = {"linf": math.inf, "l2": 2.0, "l1": 1.0}[norm]
    return torch.linalg.vector_norm((x_adv - x).reshape(x.shape[0], -1), ord=p, dim=1)


@torch.no_grad()
def predict(module: nn.Module, x: Tensor, batch_size: int = 1000) -> Tensor:
    return torch.cat([module(x[s : s + batch_size]).argmax(dim=1) for s in range(0, x.shape[0], batch_size)])


def score(module: nn.Module, x: Tensor, y: Tensor, x_adv: Tensor, norm: str, eps: float | None) -> Score:
    """Judge adversarial points the same way for every tool: one forward pass of our own."""
    clean_ok = predict(module, x) == y
    adv_ok = predict(module, x_adv) == y
    dist = distance(norm, x_adv, x)
    inside = dist <= eps + BALL_TOLERANCE if eps is not None else torch.ones_like(adv_ok)
    fooled = clean_ok & ~adv_ok & inside
    robust = clean_ok & ~fooled
    n_ok = int(clean_ok.sum())
    return Score(
        robust_accuracy=int(robust.sum()) / robust.numel(),  # counts, not a float32 mean: exact at the 0.5-point edge
        success_rate=int(fooled.sum()) / n_ok if n_ok else 0.0,
        median_distance=float(dist[fooled].median()) if bool(fooled.any()) else None,
        outside_ball=int((~inside).sum()),
        clean_ok=clean_ok,
        fooled=fooled,
        distance=dist,
    )


def measure(
    row: str,
    tool: str,
    config: str,
    runner: Runner,
    data: tuple[Tensor, Tensor],
    module: nn.Module,
    *,
    norm: str,
    eps: float | None,
    batch_size: int | None,
    scored: bool = True,
) -> tuple[Measurement, Score | None]:
    """Time one run of ``runner`` on ``data`` and score its output."""
    x, y = data
    x_adv, seconds, cpu = timed(runner, x, y)
    s = score(module, x, y, x_adv, norm, eps) if scored else None
    m = Measurement(
        row=row,
        tool=tool,
        config=config,
        batch_size=batch_size,
        n=int(x.shape[0]),
        seconds=seconds,
        cpu_seconds=cpu,
        eps=eps,
        robust_accuracy=None if s is None else s.robust_accuracy,
        success_rate=None if s is None else s.success_rate,
        median_distance=None if s is None else s.median_distance,
        outside_ball=0 if s is None else s.outside_ball,
    )
    return m, s


def versions() -> dict[str, str]:
    found = {}
    for name in ("torch", "numpy", "bastion-ml", "adversarial-robustness-toolbox", "torchattacks", "psutil"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def machine(device: torch.device) -> dict[str, Any]:
    """What the figures were measured on, including how busy the machine was."""
    info: dict[str, Any] = {
        "hostname": socket.gethostname(),
        "date_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_model": _cpu_model(),
        "ram_gib": _ram_gib(),
        "python": platform.python_version(),
        "device": str(device),
        "load_average": os.getloadavg(),
        "versions": versions(),
        "bastion_source": _source_state(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info


def _source_state() -> str:
    """The commit the run measured, with ``+modified`` when src/ had uncommitted changes."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "src"], cwd=root, capture_output=True, text=True)
    except OSError:
        return "unknown"
    return head.stdout.strip() + ("+modified" if dirty.stdout.strip() else "") or "unknown"


def _cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    found = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    return found.group(1).strip() if found else "unknown"


def _ram_gib() -> float | None:
    try:
        text = Path("/proc/meminfo").read_text()
    except OSError:
        return None
    found = re.search(r"^MemTotal:\s*(\d+) kB", text, re.MULTILINE)
    return round(int(found.group(1)) / 2**20, 1) if found else None


def write_json(path: Path, info: dict[str, Any], rows: Sequence[Measurement], args: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"machine": info, "arguments": args, "measurements": [dataclasses.asdict(m) for m in rows]}
    path.write_text(json.dumps(payload, indent=2, default=_jsonable) + "\n")


def _jsonable(value: object) -> object:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    return str(value)


def result_path(root: Path, device: torch.device, kind: str = "evasion") -> Path:
    """``<root>/<machine>-<device>-<kind>-<UTC date and time>.json``."""
    host = re.sub(r"[^A-Za-z0-9_.-]+", "-", socket.gethostname()) or "machine"
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H%MZ")
    return root / f"{host}-{device.type}-{kind}-{stamp}.json"
