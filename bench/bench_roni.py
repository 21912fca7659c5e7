"""Side-by-side benchmark of Bastion's RONI against ART's RONIDefense and ProvenanceDefense (issue 5).

One process, the same data and the same poisoned indices for every tool: the digits demo split
in a fixed random order; ``--n`` untrusted candidates, ``--poison-rate`` of them label-flipped
(each to one of the 9 other classes at random); ``--trusted`` trusted examples; ``--sources``
sources for the provenance variants, one of them the attacker who sent every flipped example,
the others sharing the clean ones round-robin.

- **Bastion**: ``Roni()`` with the digits demo recipe (the demo CNN, Adam), its defaults, and its
  own quiz set (the first ``--quiz`` digits *test* images, never drawn from the candidates), per
  candidate and with ``sources=``.
- **ART** 1.20: ``RONIDefense`` and ``ProvenanceDefense`` as their own tests use them, on a
  scikit-learn ``SVC(kernel="linear")`` in ``SklearnClassifier`` (retrained from scratch at every
  fit, as the defences are designed for; 96% test accuracy on digits, ~9 ms a fit on one core, far
  cheaper than a CNN fit). The trusted examples are their ``x_val``; ``RONIDefense`` draws its quiz
  and calibration sets from the candidates themselves (its design). ``--art-pp-cal`` is the share
  of the candidates it calibrates on, and it recalibrates for every candidate: 1 + n * (1 + pp_cal * n)
  fits. Its default of 0.2 would be 50,501 fits for 500 candidates (about 10 minutes of CPU, 20 of
  wall time on this shared machine), so the run uses 0.04 (20 calibration points; ART's own test
  calibrates on 9) and prints the count the default would have needed. ``ProvenanceDefense``
  removes a source's rows by *value* (``np.isin`` over pixel values), which on digits removes
  every row; when it fails so, it is run again on inputs plus U(0, 1e-6) noise, which lets its
  filter tell rows apart.

A *fit* is one training run, whatever its length: each call of the recipe's ``fit`` for Bastion
(the base model, every fine-tuning), each call of the ART classifier's ``fit`` (counted by
wrapping its class's ``fit`` during the run). Threads: one for torch, BLAS and OpenMP, so wall
time on this shared machine stays comparable; CPU time is reported too.

    .venv/bin/python bench/bench_roni.py --quick   # a smoke run: 100 candidates, ~1 minute
    .venv/bin/python bench/bench_roni.py           # the full run (see docs/BENCHMARKS.md)
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from bastion.data import Dataset, load_demo
from bastion.defences import Roni
from bastion.training import demo_recipe
from harness import machine, result_path

log = logging.getLogger("bench_roni")


@dataclass(frozen=True)
class Row:
    tool: str
    config: str
    flagged: int
    precision: float
    recall: float
    f1: float
    fits: int
    seconds: float
    cpu_seconds: float
    note: str = ""


@dataclass(frozen=True)
class Setup:
    candidates: Dataset
    trusted: Dataset
    quiz: Dataset
    poisoned: frozenset[int]
    sources: tuple[str, ...]


def build(n: int, poison_rate: float, n_trusted: int, n_quiz: int, n_sources: int, seed: int) -> Setup:
    """The candidates (``poison_rate`` of them label-flipped), the trusted set, Bastion's quiz set, the sources."""
    shuffled = load_demo("digits", "train").take(None, seed=seed)
    if n + n_trusted > len(shuffled):
        raise SystemExit(f"--n + --trusted must be at most {len(shuffled)}, got {n + n_trusted}")
    gen = torch.Generator().manual_seed(seed + 1)
    poisoned = torch.randperm(n, generator=gen)[: round(poison_rate * n)]
    y = shuffled.y[:n].clone()
    y[poisoned] = (y[poisoned] + torch.randint(1, 10, (len(poisoned),), generator=gen)) % 10
    candidates = replace(shuffled, x=shuffled.x[:n], y=y, name="candidates")
    trusted = replace(shuffled, x=shuffled.x[n : n + n_trusted], y=shuffled.y[n : n + n_trusted], name="trusted")
    test = load_demo("digits", "test")
    quiz = replace(test, x=test.x[:n_quiz], y=test.y[:n_quiz], name="quiz")
    bad = set(poisoned.tolist())
    clean = [i for i in range(n) if i not in bad]
    sources = ["attacker" if i in bad else "" for i in range(n)]
    for rank, i in enumerate(clean):
        sources[i] = f"client-{rank % (n_sources - 1)}"
    return Setup(candidates, trusted, quiz, frozenset(bad), tuple(sources))


def scored(
    tool: str, config: str, flagged: set[int], poisoned: frozenset[int], fits: int, wall: float, cpu: float, note: str
) -> Row:
    hits = len(flagged & poisoned)
    precision = hits / len(flagged) if flagged else 0.0
    recall = hits / len(poisoned)
    f1 = 2 * precision * recall / (precision + recall) if hits else 0.0
    row = Row(tool, config, len(flagged), precision, recall, f1, fits, wall, cpu, note)
    log.info("%s %s: P %.2f R %.2f F1 %.2f, %d fits, %.1f s", tool, config, precision, recall, f1, fits, wall)
    return row


def run_bastion(setup: Setup, *, provenance: bool) -> Row:
    recipe = demo_recipe("digits")
    sources = setup.sources if provenance else None
    wall, cpu = time.perf_counter(), time.process_time()
    result = Roni()(recipe, setup.trusted, setup.quiz, setup.candidates, sources=sources)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    config = "Roni(), by source" if provenance else "Roni(), per candidate (groups of 4)"
    note = "; ".join(f"{t.purpose} {t.group_size}: {t.value:+.3f}" for t in result.thresholds)
    return scored("bastion", config, set(result.rejected), setup.poisoned, result.fits, wall, cpu, note)


class FitCounter:
    """Counts calls of an ART classifier class's ``fit`` while installed (every defence fit goes through it)."""

    def __init__(self) -> None:
        self.count = 0

    @contextmanager
    def on(self, cls: type) -> Iterator[None]:
        original: Callable[..., Any] = cls.fit  # type: ignore[attr-defined]

        def fit(instance: Any, *args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return original(instance, *args, **kwargs)

        cls.fit = fit  # type: ignore[attr-defined]
        try:
            yield
        finally:
            cls.fit = original  # type: ignore[attr-defined]


def art_arrays(data: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Flat float inputs and one-hot labels, as ART's scikit-learn wrappers take them."""
    return data.x.reshape(len(data), -1).numpy().astype(np.float64), np.eye(10)[data.y.numpy()]


def art_classifier() -> Any:
    from art.estimators.classification import SklearnClassifier
    from sklearn.svm import SVC

    # probability=False spelled out: scikit-learn 1.9 defaults it to the string "deprecated", which
    # ART 1.20's ScikitlearnSVC.predict takes for True, and then calls the missing predict_proba.
    return SklearnClassifier(model=SVC(kernel="linear", probability=False), clip_values=(0.0, 1.0))


def run_art_roni(setup: Setup, *, pp_cal: float, calibrated: bool, seed: int) -> Row:
    from art.defences.detector.poison import RONIDefense

    x, y = art_arrays(setup.candidates)
    x_val, y_val = art_arrays(setup.trusted)
    np.random.seed(seed)  # RONIDefense draws its quiz, calibration split and order from numpy's global generator
    classifier = art_classifier()
    counter = FitCounter()
    wall, cpu = time.perf_counter(), time.process_time()
    with counter.on(type(classifier)):
        defence = RONIDefense(classifier, x, y, x_val, y_val, pp_cal=pp_cal, calibrated=calibrated)
        _, is_clean = defence.detect_poison()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    flagged = {i for i, clean in enumerate(is_clean) if not clean}
    n_cal = len(defence.x_cal) if calibrated else 0
    config = (
        f"RONIDefense(calibrated=True, pp_cal={pp_cal:g}: {n_cal} points)"
        if calibrated
        else ("RONIDefense(calibrated=False, eps=0.1)")
    )
    return scored("art", config, flagged, setup.poisoned, counter.count, wall, cpu, "")


def run_art_provenance(setup: Setup, *, jitter: float, seed: int) -> Row:
    from art.defences.detector.poison import ProvenanceDefense

    x, y = art_arrays(setup.candidates)
    if jitter:
        x = x + np.random.default_rng(seed).uniform(0, jitter, x.shape)
    x_val, y_val = art_arrays(setup.trusted)
    names = sorted(set(setup.sources))
    p_train = np.eye(len(names))[[names.index(s) for s in setup.sources]]
    classifier = art_classifier()
    counter = FitCounter()
    config = "ProvenanceDefense(x_val=trusted, eps=0.2)" + (f", inputs + U(0, {jitter:g}) noise" if jitter else "")
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        with counter.on(type(classifier)):
            _, is_clean = ProvenanceDefense(classifier, x, y, p_train, x_val=x_val, y_val=y_val).detect_poison()
    except Exception as error:  # report ART's failure as a row rather than stopping the benchmark
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        log.warning("ART ProvenanceDefense failed: %s: %s", type(error).__name__, error)
        note = f"failed: {type(error).__name__}: {str(error)[:120]}"
        return scored("art", config, set(), setup.poisoned, counter.count, wall, cpu, note)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    flagged = {i for i, clean in enumerate(is_clean) if not clean}
    return scored("art", config, flagged, setup.poisoned, counter.count, wall, cpu, "")


def table(rows: list[Row]) -> list[str]:
    head = f"{'tool':8} {'configuration':72} {'flagged':>7} {'P':>5} {'R':>5} {'F1':>5} {'fits':>7}"
    head += f" {'wall s':>8} {'cpu s':>8}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r.tool:8} {r.config:72} {r.flagged:7d} {r.precision:5.2f} {r.recall:5.2f} {r.f1:5.2f} "
            f"{r.fits:7d} {r.seconds:8.1f} {r.cpu_seconds:8.1f}"
        )
        if r.note:
            lines.append(f"{'':8} {r.note}")
    return lines


def verdict(ours: Row, art: Row) -> list[str]:
    fits, wall = art.fits / max(ours.fits, 1), art.seconds / max(ours.seconds, 1e-9)
    met = fits >= 20 and wall > 1 and ours.f1 >= art.f1
    return [
        f"ART RONIDefense / Bastion RONI: {fits:.1f}x the fits, {wall:.1f}x the wall time, "
        f"{art.cpu_seconds / max(ours.cpu_seconds, 1e-9):.1f}x the CPU time; "
        f"F1 {ours.f1:.2f} (Bastion) vs {art.f1:.2f} (ART)",
        f"target (>= 20x fewer fits, less time, F1 at least as high): {'met' if met else 'NOT met'}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500, help="untrusted candidates")
    parser.add_argument("--poison-rate", type=float, default=0.1)
    parser.add_argument("--trusted", type=int, default=364, help="trusted examples (Bastion: base + 64 calibration)")
    parser.add_argument("--quiz", type=int, default=200, help="Bastion's quiz set: digits test images")
    parser.add_argument("--sources", type=int, default=10, help="sources, one of them the attacker")
    parser.add_argument("--art-pp-cal", type=float, default=0.04, help="RONIDefense's calibration share (default 0.2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="100 candidates: a smoke run")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    if args.quick:
        args.n, args.art_pp_cal = 100, 0.1
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    logging.getLogger("art").setLevel(logging.ERROR)  # "model might not have been fitted" on every copy
    torch.set_num_threads(1)
    threadpool_limits(1)  # BLAS and OpenMP under scikit-learn and numpy
    info = machine(torch.device("cpu"))
    info["versions"]["scikit-learn"] = metadata.version("scikit-learn")
    setup = build(args.n, args.poison_rate, args.trusted, args.quiz, args.sources, args.seed)
    ours = run_bastion(setup, provenance=False)
    rows = [ours, run_bastion(setup, provenance=True)]
    art = run_art_roni(setup, pp_cal=args.art_pp_cal, calibrated=True, seed=args.seed)
    rows += [art, run_art_roni(setup, pp_cal=args.art_pp_cal, calibrated=False, seed=args.seed)]
    rows.append(run_art_provenance(setup, jitter=0.0, seed=args.seed))
    if "failed" in rows[-1].note:
        rows.append(run_art_provenance(setup, jitter=1e-6, seed=args.seed))
    default_fits = 1 + args.n * (1 + math.ceil(0.2 * args.n))  # its loop: 1 + n * (1 + calibration points)
    lines = [*table(rows), "", *verdict(ours, art)]
    ratio = default_fits / ours.fits
    lines.append(f"RONIDefense at its default pp_cal=0.2 would fit {default_fits} times ({ratio:.0f}x Bastion's fits)")
    info["load_average_end"] = os.getloadavg()
    for line in lines:
        print(line)
    path = result_path(args.out, torch.device("cpu"), kind="roni")
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"machine": info, "arguments": vars(args) | {"out": str(args.out)}, "rows": [asdict(r) for r in rows]}
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
