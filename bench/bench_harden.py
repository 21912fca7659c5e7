"""Side-by-side benchmark of Bastion's adversarial training against ART's trainers (issue 6).

One process, the same start (the trained MNIST demo CNN), the same training images, epochs,
optimiser (Adam, lr 1e-3), training batch and attack budget (Linf eps 0.3, 10 PGD steps of the
same step length, one random start) for both tools: Bastion's PGD-AT and TRADES against ART's
AdversarialTrainerMadryPGD and AdversarialTrainerTRADESPyTorch. Each trained model is then judged
the same way: clean and robust accuracy on the first test images under Bastion's ensemble
(``bastion.assess``) and under ART's ProjectedGradientDescent, plus the wall time of each
training. A plain clean epoch (forward, backward, step; no attack) on the same data is the floor
for the epoch-time target: a PGD-AT epoch within 1.1 x (steps + 1) clean epochs.

    .venv/bin/python bench/bench_harden.py --quick   # a smoke run: few images, one epoch, quick preset
    .venv/bin/python bench/bench_harden.py           # the full run (see docs/BENCHMARKS.md)
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import bastion
from anchors import INPUT_SHAPE, NUM_CLASSES
from bastion.data import Dataset, load_demo
from bastion.demo import demo_model
from bastion.harden import harden
from bastion.models.torch import TorchClassifier
from harness import Measurement, machine, result_path, score, write_json

RESULTS = Path(__file__).resolve().parent / "results"
ART_DEFAULT_ATTACK_BATCH = 32  # ProjectedGradientDescent's default, which AdversarialTrainerMadryPGD keeps
EVAL_STEPS, EVAL_STEP = 40, 0.01  # ART's PGD used to judge every trained model
log = logging.getLogger("bench_harden")


@dataclass(frozen=True)
class Options:
    train: int  # training images (the first ones of the MNIST demo train split)
    n: int  # test images each trained model is judged on
    val: int  # test images (from the end of the split) Bastion measures after each epoch
    epochs: int
    eps: float
    steps: int
    step_size: float
    batch_size: int  # training batch, both tools
    art_batch: int  # ART's attack batch size
    beta: float
    preset: str
    threads: int
    out: Path | None


def parse(argv: list[str] | None = None) -> Options:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", type=int, default=2000, help="training images (MNIST demo train split)")
    p.add_argument("--n", type=int, default=150, help="test images each trained model is judged on")
    p.add_argument("--val", type=int, default=50, help="held-out test images Bastion evaluates after each epoch")
    p.add_argument("--epochs", type=int, default=3, help="training epochs, both tools")
    p.add_argument("--eps", type=float, default=0.3, help="Linf radius, training and evaluation")
    p.add_argument("--steps", type=int, default=10, help="PGD steps of the training attack, both tools")
    p.add_argument("--step-size", type=float, help="PGD step of the training attack (default 2.5 * eps / steps)")
    p.add_argument("--batch-size", type=int, default=128, help="training batch, both tools")
    art_help = f"ART's attack batch (its default: {ART_DEFAULT_ATTACK_BATCH})"
    p.add_argument("--art-batch", type=int, default=128, help=art_help)
    p.add_argument("--beta", type=float, default=6.0, help="TRADES' robustness weight, both tools")
    p.add_argument("--preset", default="standard", help="bastion.assess preset that judges the trained models")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads, both tools")
    p.add_argument("--quick", action="store_true", help="smoke run: 200 images, one epoch, 20 judged, quick preset")
    p.add_argument("--out", type=Path, help="JSON path (default: bench/results/<machine>-cpu-harden-<date>.json)")
    a = p.parse_args(argv)
    if a.quick:
        a.train, a.n, a.val, a.epochs, a.preset = 200, 20, 20, 1, "quick"
    if not (1 <= a.train <= 60000 and a.n >= 1 and a.val >= 1 and a.n + a.val <= 1000 and a.epochs >= 1):
        p.error(f"expected 1 <= train, 1 <= n, val, n + val <= 1000, epochs >= 1; got {a.train}, {a.n}, {a.val}")
    step = a.step_size if a.step_size is not None else 2.5 * a.eps / a.steps
    return Options(
        a.train, a.n, a.val, a.epochs, a.eps, a.steps, step, a.batch_size, a.art_batch, a.beta, a.preset, a.threads,
        a.out,
    )  # fmt: skip


@dataclass(frozen=True)
class Data:
    train: Dataset
    test: Dataset  # the judged images
    val: Dataset  # Bastion's per-epoch evaluation set, disjoint from ``test``


def load(opts: Options) -> Data:
    train, test = load_demo("mnist", "train"), load_demo("mnist", "test")
    k = min(opts.train, len(train))
    return Data(
        train=dataclasses.replace(train, x=train.x[:k], y=train.y[:k]),
        test=dataclasses.replace(test, x=test.x[: opts.n], y=test.y[: opts.n]),
        val=dataclasses.replace(test, x=test.x[-opts.val :], y=test.y[-opts.val :], name="mnist-val"),
    )


def fresh(start: TorchClassifier) -> nn.Module:
    """A copy of the start module: every trainer begins from the same weights."""
    return copy.deepcopy(start.module)


def classifier(module: nn.Module, name: str) -> TorchClassifier:
    return TorchClassifier(module.eval(), input_shape=INPUT_SHAPE, num_classes=NUM_CLASSES, name=name)


# ---------------------------------------------------------------- training


@dataclass(frozen=True)
class Trained:
    tool: str
    method: str
    model: TorchClassifier
    seconds: float  # wall time of the whole call
    cpu_seconds: float  # this process's CPU time over the same call (steadier under load)
    train_seconds: float  # training steps only (Bastion: the epochs' own figure; ART: the whole fit)
    epoch_seconds: tuple[float, ...]


def clean_epochs(start: TorchClassifier, data: Data, opts: Options) -> tuple[float, ...]:
    """The floor: plain epochs (forward, backward, Adam step) at the same batch size, no attack."""
    module = fresh(start).train()
    optimiser = torch.optim.Adam(module.parameters(), lr=1e-3)
    x, y = data.train.x, data.train.y
    generator = torch.Generator().manual_seed(0)
    out = []
    for _ in range(opts.epochs):
        started = time.perf_counter()
        order = torch.randperm(x.shape[0], generator=generator)
        for s in range(0, x.shape[0], opts.batch_size):
            idx = order[s : s + opts.batch_size]
            optimiser.zero_grad()
            F.cross_entropy(module(x[idx]), y[idx]).backward()
            optimiser.step()
        out.append(time.perf_counter() - started)
    log.info("clean epochs: %s s", ", ".join(f"{t:.2f}" for t in out))
    return tuple(out)


def train_bastion(start: TorchClassifier, data: Data, opts: Options, method: str) -> Trained:
    torch.manual_seed(0)
    cpu = time.process_time()
    result = harden(
        classifier(fresh(start), "start"), data.train, method=method, eps=opts.eps, norm="linf", epochs=opts.epochs,
        seed=0, steps=opts.steps, step_size=opts.step_size, batch_size=opts.batch_size, lr=1e-3, beta=opts.beta,
        val=data.val,
    )  # fmt: skip
    epochs = tuple(e.seconds for e in result.history)
    log.info("bastion %s: %.1f s wall, epochs %s", method, result.seconds, epochs)
    cpu = time.process_time() - cpu
    return Trained("bastion", method, result.model, result.seconds, cpu, sum(epochs), epochs)


def art_estimator(module: nn.Module) -> Any:
    from art.estimators.classification import PyTorchClassifier

    return PyTorchClassifier(
        model=module,
        loss=nn.CrossEntropyLoss(),
        optimizer=torch.optim.Adam(module.parameters(), lr=1e-3),  # harden()'s optimiser and lr
        input_shape=INPUT_SHAPE,
        nb_classes=NUM_CLASSES,
        clip_values=(0.0, 1.0),
    )


def art_pgd(estimator: Any, opts: Options, *, steps: int, step: float, batch: int) -> Any:
    from art.attacks.evasion import ProjectedGradientDescent

    return ProjectedGradientDescent(
        estimator, norm=np.inf, eps=opts.eps, eps_step=step, max_iter=steps, num_random_init=1, batch_size=batch,
        verbose=False,
    )  # fmt: skip


def train_art(start: TorchClassifier, data: Data, opts: Options, method: str) -> Trained:
    """ART's Madry PGD trainer (its attack batch raised from 32 to ``art_batch``) or its TRADES trainer."""
    from art.defences.trainer import AdversarialTrainerMadryPGD, AdversarialTrainerTRADESPyTorch

    module = fresh(start)
    estimator = art_estimator(module)
    if method == "pgd":
        trainer: Any = AdversarialTrainerMadryPGD(
            estimator, nb_epochs=opts.epochs, batch_size=opts.batch_size, eps=opts.eps, eps_step=opts.step_size,
            max_iter=opts.steps, num_random_init=1,
        )  # fmt: skip
        trainer.attack.set_params(batch_size=opts.art_batch, verbose=False)
    else:
        attack = art_pgd(estimator, opts, steps=opts.steps, step=opts.step_size, batch=opts.art_batch)
        trainer = AdversarialTrainerTRADESPyTorch(estimator, attack, beta=opts.beta)
    torch.manual_seed(0)
    np.random.seed(0)
    x, y = data.train.x.numpy(), data.train.y.numpy()
    started, cpu = time.perf_counter(), time.process_time()
    trainer.fit(x, y, batch_size=opts.batch_size, nb_epochs=opts.epochs)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    log.info("art %s: %.1f s wall", method, seconds)
    return Trained("art", method, classifier(module, f"art-{method}"), seconds, cpu, seconds, ())


# ---------------------------------------------------------------- judging


@dataclass(frozen=True)
class Judged:
    clean: float
    robust_bastion: float
    robust_art: float
    assess_seconds: float
    art_seconds: float


def judge(model: TorchClassifier, data: Data, opts: Options) -> Judged:
    """Clean accuracy, worst case over Bastion's preset, and ART's PGD-40, on the same test images."""
    started = time.perf_counter()
    report = bastion.assess(
        model=model, data=data.test, preset=opts.preset, epsilons=[opts.eps], n_examples=opts.n, seed=0
    )
    assess_seconds = time.perf_counter() - started
    robust = report.worst_case[0].robust_accuracy
    x, y = data.test.x, data.test.y
    attack = art_pgd(art_estimator(model.module), opts, steps=EVAL_STEPS, step=EVAL_STEP, batch=256)
    np.random.seed(0)
    started = time.perf_counter()
    x_adv = torch.from_numpy(np.asarray(attack.generate(x=x.numpy(), y=y.numpy()), dtype=np.float32))
    art_seconds = time.perf_counter() - started
    model.module.eval()
    s = score(model.module, x, y, x_adv, "linf", opts.eps)
    log.info("%s: clean %.3f, robust (bastion) %.3f, robust (art) %.3f", model.name, report.clean_accuracy, robust,
             s.robust_accuracy)  # fmt: skip
    return Judged(report.clean_accuracy, robust, s.robust_accuracy, assess_seconds, art_seconds)


def measurement(t: Trained, j: Judged, opts: Options, clean_epoch: float) -> Measurement:
    return Measurement(
        row=f"harden-{t.method}",
        tool=t.tool,
        config=f"epochs={opts.epochs}, steps={opts.steps}, step={opts.step_size:g}",
        batch_size=opts.batch_size,
        n=opts.n,
        seconds=t.seconds,
        cpu_seconds=t.cpu_seconds,
        eps=opts.eps,
        robust_accuracy=j.robust_bastion,
        extra={
            "clean_accuracy": j.clean,
            "robust_accuracy_art_pgd": j.robust_art,
            "train_seconds": t.train_seconds,
            "epoch_seconds": list(t.epoch_seconds),
            "clean_epoch_seconds": clean_epoch,
            "assess_seconds": j.assess_seconds,
            "art_pgd_seconds": j.art_seconds,
        },
    )


# ---------------------------------------------------------------- the table


def table(rows: list[Measurement], opts: Options) -> list[str]:
    head = f"{'row':14} {'tool':8} {'clean':>6} {f'robust ({opts.preset})':>18} {'robust (ART PGD)':>17}"
    lines = [f"{head} {'wall s':>8} {'cpu s':>8} {'train s':>8} ratios"]
    for m in rows:
        e = m.extra
        text = f"{m.row:14} {m.tool:8} {e['clean_accuracy']:6.3f} {m.robust_accuracy:18.3f} "
        text += f"{e['robust_accuracy_art_pgd']:17.3f} {m.seconds:8.1f} {m.cpu_seconds:8.1f} {e['train_seconds']:8.1f}"
        art = _art(rows, m)
        if art is not None:
            text += f" wall {m.seconds / art.seconds:.2f}x ART, cpu {m.cpu_seconds / art.cpu_seconds:.2f}x"
            text += f", train {e['train_seconds'] / art.seconds:.2f}x"
        lines.append(text)
    return lines


def _art(rows: list[Measurement], m: Measurement) -> Measurement | None:
    if m.tool != "bastion":
        return None
    return next((a for a in rows if a.row == m.row and a.tool == "art"), None)


def verdicts(rows: list[Measurement], opts: Options, clean_epoch: float) -> list[str]:
    """Issue 6's targets: robust accuracy at least ART's, wall time no more than ART's, epoch time bound."""
    out = []
    for ours in (m for m in rows if m.tool == "bastion"):
        art = _art(rows, ours)
        if art is None:
            continue
        for key, label in ((None, opts.preset), ("robust_accuracy_art_pgd", "ART PGD")):
            a = ours.robust_accuracy if key is None else ours.extra[key]
            b = art.robust_accuracy if key is None else art.extra[key]
            ok = "met" if a is not None and b is not None and a >= b else "MISSED"
            out.append(f"{ours.row}: robust ({label}) {a:.3f} vs ART {b:.3f} -> {ok}")
        share = ours.seconds / art.seconds
        out.append(f"{ours.row}: wall {ours.seconds:.1f} s vs ART {art.seconds:.1f} s ({share:.2f}x) -> "
                   f"{'met' if share <= 1.0 else 'MISSED'}")  # fmt: skip
    pgd = next((m for m in rows if m.tool == "bastion" and m.row == "harden-pgd"), None)
    if pgd is not None:
        epoch = float(np.median(pgd.extra["epoch_seconds"]))
        bound = 1.1 * (opts.steps + 1) * clean_epoch
        verdict = "met" if epoch <= bound else "MISSED"
        out.append(
            f"PGD-AT epoch {epoch:.2f} s = {epoch / clean_epoch:.1f} clean epochs ({clean_epoch:.2f} s); "
            f"bound {bound:.2f} s = 1.1 x {opts.steps + 1} -> {verdict}"
        )
    return out


# ---------------------------------------------------------------- main


def warm_up(start: TorchClassifier, data: Data) -> None:
    """Pay torch's first-call costs (thread pools, autograd) before anything is timed."""
    module = fresh(start).train()
    F.cross_entropy(module(data.train.x[:64]), data.train.y[:64]).backward()


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    logging.getLogger("art").setLevel(logging.WARNING)
    opts = parse(argv)
    torch.set_num_threads(opts.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(opts.threads))
    start = demo_model("mnist")
    data = load(opts)
    info = machine(torch.device("cpu"))
    warm_up(start, data)
    clean_epoch = float(np.median(clean_epochs(start, data, opts)))
    rows = []
    # The order alternates (PGD: Bastion first; TRADES: ART first) so that drifting load falls on both.
    for method, order in (("pgd", (train_bastion, train_art)), ("trades", (train_art, train_bastion))):
        for train in order:
            trained = train(start, data, opts, method)
            rows.append(measurement(trained, judge(trained.model, data, opts), opts, clean_epoch))
    rows.sort(key=lambda m: (m.row, m.tool != "bastion"))
    for line in [*table(rows, opts), "", *verdicts(rows, opts, clean_epoch)]:
        print(line)
    path = opts.out or result_path(RESULTS, torch.device("cpu"), "harden")
    extra = {"load_average_end": os.getloadavg(), "clean_epoch_seconds": clean_epoch}
    write_json(path, {**info, **extra}, rows, {**vars(opts), "out": str(path)})
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
