"""Side-by-side benchmark of Bastion's black-box attacks and model stealing against ART (issue 3).

One process, one demo CNN, the same MNIST test images and the same query budget for both tools:
HopSkipJump and Boundary (labels only, minimal L2) at each budget, Square (scores, eps-bounded,
Linf 0.3) and model extraction (Bastion's Extraction against ART's CopycatCNN). Queries are
counted the same way for both tools: rows through the demo module's forward, by a hook on it.
ART's HopSkipJump and Boundary count iterations, not queries, so their ``max_iter`` is
calibrated on a few held-out images to the largest value that stays within the budget, and the
queries they really spent are reported next to each row.

    .venv/bin/python bench/bench_blackbox.py --quick   # a smoke run: few images, small budgets
    .venv/bin/python bench/bench_blackbox.py           # the full run (see docs/BENCHMARKS.md)
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from anchors import INPUT_SHAPE, NUM_CLASSES, art_classifier
from bastion.attacks import make_attack
from bastion.attacks.extraction import Extraction, agreement
from bastion.data import load_demo
from bastion.demo import demo_model
from bastion.models import restrict
from bastion.models.torch import TorchClassifier
from bastion.models.zoo import MnistCNN
from harness import Measurement, machine, result_path, score, timed, write_json

RESULTS = Path(__file__).resolve().parent / "results"
CALIBRATION_EXAMPLES = 3  # held-out images (after the measured ones) used to fit ART's max_iter to a budget
SQUARE_EPS = 0.3
log = logging.getLogger("bench_blackbox")


@dataclass(frozen=True)
class Options:
    n: int  # images for HopSkipJump and Boundary
    art_n: int  # of those, how many ART attacks (its decision attacks run one image at a time)
    square_n: int
    square_budget: int
    budgets: tuple[int, ...]
    extraction_budget: int
    epochs: int
    threads: int
    out: Path | None


def parse(argv: list[str] | None = None) -> Options:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=50, help="images for HopSkipJump and Boundary")
    p.add_argument("--art-n", type=int, help="ART's decision attacks on the first N of them only (default: all)")
    p.add_argument("--square-n", type=int, default=200, help="images for Square")
    p.add_argument("--square-budget", type=int, default=1000, help="queries per image for Square")
    p.add_argument("--budgets", default="1000,5000", help="queries per image for HopSkipJump and Boundary")
    p.add_argument("--extraction-budget", type=int, default=4000, help="queries for stealing (at most the seeds)")
    p.add_argument("--epochs", type=int, default=10, help="surrogate training epochs for both tools")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--quick", action="store_true", help="smoke run: 5 images, budgets 200/500, small stealing")
    p.add_argument(
        "--out", type=Path, help="JSON path (default: bench/results/<machine>-<device>-blackbox-<date>.json)"
    )
    a = p.parse_args(argv)
    if a.quick:
        a.n, a.square_n, a.square_budget, a.budgets, a.extraction_budget, a.epochs = 5, 20, 200, "200,500", 500, 1
    budgets = tuple(int(b) for b in a.budgets.split(","))
    if not 1 <= a.n <= 1000 - CALIBRATION_EXAMPLES or not 1 <= a.square_n <= 1000 or min(budgets) < 10:
        p.error(f"expected 1 <= n, square-n <= 1000 and budgets >= 10, got {a.n}, {a.square_n}, {a.budgets!r}")
    art_n = a.n if a.art_n is None else min(a.art_n, a.n)
    return Options(a.n, art_n, a.square_n, a.square_budget, budgets, a.extraction_budget, a.epochs, a.threads, a.out)


# ---------------------------------------------------------------- counting rows


class RowCounter:
    """Rows through a module's forward, counted by a pre-hook: the same meter for both tools."""

    def __init__(self, module: nn.Module) -> None:
        self.rows = 0
        module.register_forward_pre_hook(self._count)

    def _count(self, _module: nn.Module, args: tuple[Any, ...]) -> None:
        self.rows += int(args[0].shape[0])

    @contextmanager
    def metered(self) -> Iterator[list[int]]:
        """Yield a one-item list that holds, on exit, the rows sent inside the block."""
        spent = [0]
        start = self.rows
        try:
            yield spent
        finally:
            spent[0] = self.rows - start


class Float32(nn.Module):
    """ART's HopSkipJump sends float64 arrays through; the module is float32."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.inner(x.float())
        return out


# ---------------------------------------------------------------- one row


@dataclass(frozen=True)
class Bench:
    module: nn.Module
    model: TorchClassifier
    art: Any  # ART's PyTorchClassifier around the same module
    counter: RowCounter


def run_row(
    bench: Bench,
    row: str,
    tool: str,
    config: str,
    runner: Callable[[Tensor, Tensor], Tensor],
    data: tuple[Tensor, Tensor],
    *,
    norm: str,
    eps: float | None,
) -> Measurement:
    """Time ``runner`` on ``data``, count its rows, and judge its output with the harness's scorer."""
    x, y = data
    with bench.counter.metered() as spent:
        x_adv, seconds, cpu = timed(runner, x, y)
    s = score(bench.module, x, y, x_adv, norm, eps)
    n = int(x.shape[0])
    m = Measurement(
        row=row,
        tool=tool,
        config=config,
        batch_size=None,
        n=n,
        seconds=seconds,
        cpu_seconds=cpu,
        eps=eps,
        robust_accuracy=s.robust_accuracy,
        success_rate=s.success_rate,
        median_distance=s.median_distance,
        outside_ball=s.outside_ball,
        extra={"queries_per_example": spent[0] / n, "seconds_per_example": seconds / n},
    )
    log.info("%s %s %s: %.1fs, success %.2f, median %s", row, tool, config, seconds, m.success_rate, m.median_distance)
    return m


def bastion_runner(model: Any, name: str, norm: str, eps: float | None, **options: Any) -> Callable[..., Tensor]:
    attack = make_attack(name, **options)

    def run(x: Tensor, y: Tensor) -> Tensor:
        return attack(model, x, y, norm=norm, eps=eps, seed=0).x_adv.detach()

    return run


def art_runner(attack: Any) -> Callable[[Tensor, Tensor], Tensor]:
    def run(x: Tensor, y: Tensor) -> Tensor:
        out = attack.generate(x=x.numpy(), y=y.numpy())
        return torch.from_numpy(np.asarray(out, dtype=np.float32))

    return run


# ---------------------------------------------------------------- ART's iterations fitted to a query budget


def art_decision(bench: Bench, kind: str, max_iter: int) -> Any:
    from art.attacks.evasion import BoundaryAttack, HopSkipJump

    if kind == "hopskipjump":
        return HopSkipJump(bench.art, norm=2, max_iter=max_iter, max_eval=10000, init_eval=100, verbose=False)
    return BoundaryAttack(bench.art, targeted=False, max_iter=max_iter, verbose=False)


def rows_per_example(bench: Bench, kind: str, max_iter: int, calib: tuple[Tensor, Tensor]) -> float:
    np.random.seed(0)
    with bench.counter.metered() as spent:
        art_runner(art_decision(bench, kind, max_iter))(*calib)
    return spent[0] / calib[0].shape[0]


def calibrate(bench: Bench, kind: str, budget: int, calib: tuple[Tensor, Tensor]) -> int:
    """The largest ``max_iter`` whose mean rows per calibration image stay within ``budget`` (bisection)."""
    low, high = 1, 2
    while rows_per_example(bench, kind, high, calib) <= budget:
        low, high = high, high * 2
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if rows_per_example(bench, kind, mid, calib) <= budget else (low, mid)
    log.info("ART %s: max_iter=%d for %d queries", kind, low, budget)
    return low


# ---------------------------------------------------------------- the rows


def decision_rows(bench: Bench, opts: Options, test: Any) -> list[Measurement]:
    """HopSkipJump and Boundary, labels only, minimal L2, at each budget."""
    x, y = test.x[: opts.n], test.y[: opts.n]
    end = opts.n + CALIBRATION_EXAMPLES
    calib = (test.x[opts.n : end], test.y[opts.n : end])
    labels = restrict(bench.model, "labels")
    out = []
    for kind in ("hopskipjump", "boundary"):
        for budget in opts.budgets:
            row = f"{kind}-l2-{budget}"
            run = bastion_runner(labels, kind, "l2", None, max_queries=budget)
            out.append(run_row(bench, row, "bastion", f"max_queries={budget}", run, (x, y), norm="l2", eps=None))
            it = calibrate(bench, kind, budget, calib)
            art = art_runner(art_decision(bench, kind, it))
            art_data = (x[: opts.art_n], y[: opts.art_n])
            out.append(run_row(bench, row, "art", f"max_iter={it}", art, art_data, norm="l2", eps=None))
    return out


def square_rows(bench: Bench, opts: Options, test: Any) -> list[Measurement]:
    """Square, scores, Linf eps 0.3: success rate at the budget (it is eps-bounded, not minimal).

    ART's SquareAttack sends three rows per iteration (the current point of every image, broken or
    not, then the loss of the current and of the candidate point of each unbroken image) and three
    before its loop, so at a budget of B rows per image it gets (B - 3) // 3 iterations. A second
    ART row at B - 2 iterations (Bastion's iteration count, about three times the rows) is context.
    """
    from art.attacks.evasion import SquareAttack

    data = (test.x[: opts.square_n], test.y[: opts.square_n])
    row, budget = f"square-linf-{opts.square_budget}", opts.square_budget
    scores = restrict(bench.model, "scores")
    ours = bastion_runner(scores, "square", "linf", SQUARE_EPS, max_queries=budget)
    out = [run_row(bench, row, "bastion", f"max_queries={budget}", ours, data, norm="linf", eps=SQUARE_EPS)]
    for name, iters in ((row, (budget - 3) // 3), (f"{row}-same-iterations", budget - 2)):
        art = SquareAttack(bench.art, norm=np.inf, eps=SQUARE_EPS, max_iter=iters, batch_size=128, verbose=False)
        out.append(run_row(bench, name, "art", f"max_iter={iters}", art_runner(art), data, norm="linf", eps=SQUARE_EPS))
    return out


@torch.no_grad()
def seconds_per_row(module: nn.Module, batch_size: int = 100, seconds: float = 1.0) -> float:
    """The floor: one forward row of the module alone, at a batch size both tools reach."""
    x = torch.rand(batch_size, *INPUT_SHAPE)
    module(x)
    rows, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        module(x)
        rows += batch_size
    return (time.perf_counter() - started) / rows


def warm_up(bench: Bench, test: Any) -> None:
    """Pay torch's first-call costs (thread pools, autograd) before anything is timed."""
    x, y = test.x[:2], test.y[:2]
    make_attack("hopskipjump", max_queries=50)(restrict(bench.model, "labels"), x, y, norm="l2", seed=0)
    Extraction(budget=256, epochs=1)(restrict(bench.model, "scores"), test.x[:256], MnistCNN(), seed=0)


def extraction_rows(bench: Bench, opts: Options, test: Any) -> list[Measurement]:
    """Bastion's Extraction (on scores, and on labels like CopycatCNN) against ART's CopycatCNN."""
    seeds = load_demo("mnist", "train").x
    budget = min(opts.extraction_budget, int(seeds.shape[0]))  # CopycatCNN queries each seed at most once
    out = [extract_bastion(bench, opts, seeds, test, budget, knowledge) for knowledge in ("scores", "labels")]
    out.append(extract_art(bench, opts, seeds, test, budget))
    return out


def extract_bastion(bench: Bench, opts: Options, seeds: Tensor, test: Any, budget: int, knowledge: str) -> Measurement:
    torch.manual_seed(0)
    steal = Extraction(budget=budget, epochs=opts.epochs)
    with bench.counter.metered() as spent:
        result = steal(restrict(bench.model, knowledge), seeds, MnistCNN(), seed=0)
    config = f"budget={budget}, epochs={opts.epochs}, {knowledge}"
    return stolen_row(bench, "bastion", config, result.surrogate, test, budget, result.elapsed, spent[0])


def extract_art(bench: Bench, opts: Options, seeds: Tensor, test: Any, budget: int) -> Measurement:
    from art.attacks.extraction import CopycatCNN

    torch.manual_seed(0)
    np.random.seed(0)
    from art.estimators.classification import PyTorchClassifier

    thief_module = MnistCNN()
    thief = PyTorchClassifier(
        model=thief_module,
        loss=nn.CrossEntropyLoss(),
        optimizer=torch.optim.Adam(thief_module.parameters(), lr=1e-3),  # Bastion's Extraction default
        input_shape=INPUT_SHAPE,
        nb_classes=NUM_CLASSES,
        clip_values=(0.0, 1.0),
    )
    attack = CopycatCNN(bench.art, batch_size_fit=128, batch_size_query=128, nb_epochs=opts.epochs, nb_stolen=budget)
    with bench.counter.metered() as spent:
        started = time.perf_counter()
        attack.extract(seeds.numpy(), thieved_classifier=thief)
        seconds = time.perf_counter() - started
    surrogate = TorchClassifier(thief_module.eval(), input_shape=INPUT_SHAPE, num_classes=NUM_CLASSES)
    config = f"nb_stolen={budget}, nb_epochs={opts.epochs}, labels"
    return stolen_row(bench, "art", config, surrogate, test, budget, seconds, spent[0])


def stolen_row(
    bench: Bench, tool: str, config: str, surrogate: TorchClassifier, test: Any, budget: int, seconds: float, rows: int
) -> Measurement:
    share = agreement(surrogate, bench.model, test.x)
    log.info("extraction %s %s: %.1fs, agreement %.3f", tool, config, seconds, share)
    return Measurement(
        row=f"extraction-{budget}",
        tool=tool,
        config=config,
        batch_size=128,
        n=int(test.x.shape[0]),
        seconds=seconds,
        cpu_seconds=float("nan"),
        extra={"agreement": share, "queries": rows},
    )


# ---------------------------------------------------------------- the table


def ratios(rows: list[Measurement], floor: float) -> list[str]:
    """One line per measurement; on Bastion's line, ART time / Bastion time and Bastion / ART median.

    ``floor s`` is the time the rows alone cost through the bare module (rows x ``floor`` seconds).
    """
    head = f"{'row':34} {'tool':8} {'config':34} {'n':>4} {'q/ex':>7} {'time s':>8} {'floor s':>8}"
    lines = [f"{head} {'succ':>5} {'median':>7} ratios"]
    for m in rows:
        art = next((a for a in rows if a.row == m.row and a.tool == "art"), None)
        lines.append(_line(m, art if m.tool == "bastion" else None, floor))
    return lines


def _line(m: Measurement, art: Measurement | None, floor: float) -> str:
    per_example = m.extra.get("queries_per_example")
    queries = per_example if per_example is not None else m.extra.get("queries", float("nan"))
    total = per_example * m.n if per_example is not None else queries
    quality = m.median_distance if m.median_distance is not None else m.extra.get("agreement")
    text = f"{m.row:34} {m.tool:8} {m.config:34} {m.n:4d} {queries:7.0f} {m.seconds:8.2f} {total * floor:8.2f} "
    text += f"{_fmt(m.success_rate, 2):>5} {_fmt(quality, 3):>7}"
    if art is not None:
        speed = (art.seconds / art.n) / (m.seconds / m.n)  # per image: ART may run on fewer images
        text += f" speed x{speed:.1f}"
        if m.eps is None and m.median_distance is not None and art.median_distance:
            text += f", median ratio {m.median_distance / art.median_distance:.2f}"
    return text


def _fmt(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def verdicts(rows: list[Measurement]) -> list[str]:
    """Issue 3's targets: median L2 no worse than ART's, and wall time per image <= 0.3x ART's."""
    out = []
    for ours in (m for m in rows if m.tool == "bastion"):
        art = next((a for a in rows if a.row == ours.row and a.tool == "art"), None)
        if art is None:
            continue
        share = (ours.seconds / ours.n) / (art.seconds / art.n)
        out.append(f"{ours.row} ({ours.config}): time {share:.2f}x ART's -> {'met' if share <= 0.3 else 'MISSED'}")
        out.extend(_quality_verdict(ours, art))
    return out


def _quality_verdict(ours: Measurement, art: Measurement) -> list[str]:
    """Minimal attacks: median L2 no worse; eps-bounded ones: success rate no worse; stealing: agreement."""
    if ours.eps is None and ours.median_distance is not None and art.median_distance is not None:
        ratio = ours.median_distance / art.median_distance
        return [f"{ours.row}: median L2 {ratio:.2f}x ART's -> {'met' if ratio <= 1.0 else 'MISSED'}"]
    if ours.success_rate is not None and art.success_rate is not None:
        ok = ours.success_rate >= art.success_rate
        return [
            f"{ours.row}: success {ours.success_rate:.3f} vs ART {art.success_rate:.3f} -> {'met' if ok else 'MISSED'}"
        ]
    a, b = ours.extra.get("agreement"), art.extra.get("agreement")
    if a is None or b is None:
        return []
    return [f"{ours.row} ({ours.config}): agreement {a:.3f} vs ART {b:.3f} -> {'met' if a >= b else 'MISSED'}"]


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    logging.getLogger("art").setLevel(logging.WARNING)
    opts = parse(argv)
    torch.set_num_threads(opts.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(opts.threads))
    model = demo_model("mnist")
    module = model.module.eval()
    bench = Bench(module, model, art_classifier(Float32(module), torch.device("cpu")), RowCounter(module))
    test = load_demo("mnist", "test")
    info = machine(torch.device("cpu"))
    warm_up(bench, test)
    floor = seconds_per_row(module)  # not through the hook's counter: measured before any row is counted
    rows = [*decision_rows(bench, opts, test), *square_rows(bench, opts, test), *extraction_rows(bench, opts, test)]
    for line in [*ratios(rows, floor), "", *verdicts(rows)]:
        print(line)
    path = opts.out or result_path(RESULTS, torch.device("cpu"), "blackbox")
    write_json(
        path,
        {**info, "load_average_end": os.getloadavg(), "forward_seconds_per_row": floor},
        rows,
        {**vars(opts), "out": str(path)},
    )
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
