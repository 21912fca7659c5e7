"""The robust-accuracy row: Bastion's ``assess`` (early stopping, its own batch size) against the anchors' cascades.

The anchors' figures are their lines of the ensemble row (APGD-CE then APGD-T, every example
taking every step); if that row was not run, their cascades run here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from bastion.attacks import ATTACKS
from bastion.data.dataset import Dataset
from bastion.engine import get_engine
from bastion.evaluation import PlannedAttack, assess, make_plan, run_plan
from bastion.evaluation.metrics import worst_case
from harness import Measurement, synchronize
from rows import ENSEMBLE_EPS, Context, Entry, Row, ensemble_anchors, ensemble_examples, note, progress, wanted

MEMBERS = ("apgd-ce", "apgd-t")


@dataclass(frozen=True)
class RobustRow:
    name: str = "robust-accuracy"
    passes: int = 0

    def run(self, ctx: Context) -> None:
        if wanted(ctx, "bastion"):
            missing = [a for a in MEMBERS if a not in ATTACKS]
            if missing:
                note(f"Bastion has no {missing} registered yet: its robust-accuracy line is skipped")
            else:
                _bastion(ctx)
                _bastion_nine_targets(ctx)
        _anchors_if_missing(ctx)


def _bastion(ctx: Context) -> None:
    """One ``assess`` call at both radii, as a user would run it (trust checks off: the anchors have none)."""
    k = ensemble_examples(ctx)
    data = Dataset(x=ctx.x[:k].cpu(), y=ctx.y[:k].cpu(), bounds=(0.0, 1.0), name="mnist-test")
    synchronize(ctx.x.device)
    wall, cpu = time.perf_counter(), time.process_time()
    report = assess(
        ctx.model, data, preset="standard", attacks=list(MEMBERS), epsilons=list(ENSEMBLE_EPS),
        n_examples=k, device=str(ctx.model.device), trust_checks=False,
    )  # fmt: skip
    synchronize(ctx.x.device)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    used = {r.attack: r.config for r in report.runs}
    config = "assess(preset='standard', both radii in one call): " + "; ".join(
        f"{name} " + ", ".join(f"{k}={v}" for k, v in cfg.items() if v not in (None, {})) for name, cfg in used.items()
    )
    for wc in report.worst_case:
        m = Measurement(
            "robust-accuracy", "bastion", config, report.settings.batch_size, k,
            seconds=sum(r.elapsed for r in report.runs if abs(r.eps - wc.eps) < 1e-9),
            cpu_seconds=float("nan"), eps=wc.eps, robust_accuracy=wc.robust_accuracy,
            extra={"assess_wall_seconds": wall, "assess_cpu_seconds": cpu},
        )  # fmt: skip
        ctx.record(m, None)
        progress(m)


def _bastion_nine_targets(ctx: Context) -> None:
    """The same evaluation with AutoAttack's nine target classes, to separate early stopping from fewer targets."""
    k = ensemble_examples(ctx)
    data = Dataset(x=ctx.x[:k].cpu(), y=ctx.y[:k].cpu(), bounds=(0.0, 1.0), name="mnist-test")
    plan = make_plan(preset="standard", attacks=MEMBERS, epsilons=ENSEMBLE_EPS, n_examples=k, trust_checks=False)
    nine = PlannedAttack("apgd-t", {**plan.attacks[1].options, "n_target_classes": 9})
    plan = replace(plan, attacks=(plan.attacks[0], nine))
    synchronize(ctx.x.device)
    wall, cpu = time.perf_counter(), time.process_time()
    results = run_plan(ctx.model, data.take(k, seed=plan.seed), plan, engine=get_engine("local"))
    synchronize(ctx.x.device)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    config = f"run_plan(standard preset, apgd-t n_target_classes=9), both radii in one call: {nine.options}"
    for wc in worst_case(results, plan.epsilons):
        seconds = sum(o.elapsed for o in results.outcomes if abs(o.eps - wc.eps) < 1e-9)
        m = Measurement(
            "robust-accuracy", "bastion", config, plan.batch_size, k, seconds=seconds, cpu_seconds=float("nan"),
            eps=wc.eps, robust_accuracy=wc.robust_accuracy,
            extra={"variant": "nine targets", "assess_wall_seconds": wall, "assess_cpu_seconds": cpu},
        )  # fmt: skip
        ctx.record(m, None)
        progress(m)


def _anchors_if_missing(ctx: Context) -> None:
    for eps in ENSEMBLE_EPS:
        have = {m.tool for m in ctx.done if m.row == "ensemble" and m.eps == eps}
        missing = [e for e in ensemble_anchors(ctx, eps) if e.tool not in have]
        if missing:
            _row_of(missing, eps).run(ctx)


def _row_of(entries: list[Entry], eps: float) -> Row:
    def listed(ctx: Context, radius: float | None) -> list[Entry]:
        return entries

    return Row("ensemble", 0, "linf", (eps,), listed, examples=ensemble_examples)


ROW = RobustRow()
