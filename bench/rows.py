"""The benchmark rows: each lists Bastion's and the anchors' configurations; one driver runs them side by side.

Within a row the tools are interleaved (batch size by batch size), so that a burst of load from
other processes falls on all of them rather than on one. A row whose Bastion attack is not
registered yet is skipped with a printed note; so is an anchor that is not installed.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import anchors
from bastion.attacks import ATTACKS, make_attack
from bastion.attacks.interface import Attack
from bastion.models.torch import TorchClassifier
from harness import Measurement, Runner, Score, batched, measure

TOOLS = ("bastion", "torchattacks", "art")
FLOOR_PASSES = 40


@dataclass
class Context:
    """What every row shares: the model, the data on the device, the settings, and what earlier rows found."""

    model: TorchClassifier
    x: Tensor
    y: Tensor
    tools: tuple[str, ...]
    batch_sizes: tuple[int, ...]
    repeats: int
    cw_steps: int
    cw_search_steps: int
    cw_examples: int
    cw_art_examples: int
    ensemble_examples: int
    best_batch: dict[str, int] = field(default_factory=dict)
    done: list[Measurement] = field(default_factory=list)
    scores: dict[tuple[str, str, float | None], Score] = field(default_factory=dict)

    @property
    def module(self) -> nn.Module:
        return self.model.module

    @property
    def n(self) -> int:
        return int(self.x.shape[0])

    def heavy_batch(self, tool: str) -> int:
        """The batch size a tool was fastest at on PGD-40 Linf, else the largest one tried."""
        return self.best_batch.get(tool, min(max(self.batch_sizes), self.n))

    def record(self, m: Measurement, s: Score | None) -> None:
        self.done.append(m)
        if s is not None:
            self.scores[(m.row, m.tool, m.eps)] = s


def progress(m: Measurement) -> None:
    ra = "" if m.robust_accuracy is None else f"  robust {m.robust_accuracy:.1%}"
    print(
        f"  {m.row:<15} {m.tool:<12} eps={m.eps!s:<5} bs={m.batch_size!s:<5} n={m.n:<5} "
        f"{m.seconds:8.2f} s wall {m.cpu_seconds:8.2f} s cpu{ra}  {m.config[:40]}",
        flush=True,
    )


@dataclass(frozen=True)
class Entry:
    """One tool in one configuration: ``build(batch_size)`` gives the runner for a batch."""

    tool: str
    config: str
    build: Callable[[int], Runner]
    examples: int | None = None  # run on the first k images only (a slow anchor)
    scored: bool = True  # False for the floor, which returns its input


@dataclass(frozen=True)
class Row:
    name: str
    passes: int  # forward+backward passes per example the algorithm takes (0: varies); for the floor ratio
    norm: str
    radii: tuple[float | None, ...]
    entries: Callable[[Context, float | None], list[Entry]]
    sweep: bool = False  # every batch size of the context, else each tool's best
    repeats: int = 1  # the fastest of this many runs (cheap rows only)
    examples: Callable[[Context], int] | None = None  # all rows run on the first k images

    def run(self, ctx: Context) -> None:
        """Every radius; within one, every repeat, batch size and tool in turn, keeping each one's fastest run."""
        for eps in self.radii:
            entries = self.entries(ctx, eps)
            best: dict[tuple[int, int], tuple[Measurement, Score | None]] = {}
            for _ in range(self._repeats(ctx)):
                for bs in _sizes(ctx) if self.sweep else [None]:
                    for i, e in enumerate(entries):
                        size = bs or ctx.heavy_batch(e.tool)
                        m, s = self._one(ctx, e, eps, size)
                        if (i, size) not in best or m.seconds < best[(i, size)][0].seconds:
                            best[(i, size)] = (m, s)
            for m, s in best.values():
                ctx.record(m, s)
        if self.sweep:
            _remember_best(ctx, self.name)

    def _repeats(self, ctx: Context) -> int:
        return max(1, self.repeats, ctx.repeats if self.sweep else 1)

    def _one(self, ctx: Context, e: Entry, eps: float | None, bs: int) -> tuple[Measurement, Score | None]:
        k = min(e.examples or ctx.n, self.examples(ctx) if self.examples else ctx.n, ctx.n)
        data = (ctx.x[:k], ctx.y[:k])
        m, s = measure(
            self.name, e.tool, e.config, batched(e.build(bs), bs), data, ctx.module,
            norm=self.norm, eps=eps, batch_size=bs, scored=e.scored,
        )  # fmt: skip
        progress(m)
        return m, s


def _sizes(ctx: Context) -> list[int]:
    return sorted({min(bs, ctx.n) for bs in ctx.batch_sizes})


def _remember_best(ctx: Context, row: str) -> None:
    for tool in TOOLS:
        mine = [m for m in ctx.done if m.row == row and m.tool == tool]
        if mine:
            ctx.best_batch[tool] = min(mine, key=lambda m: m.seconds).batch_size or ctx.n


def note(text: str) -> None:
    print(f"  note: {text}", flush=True)


def wanted(ctx: Context, tool: str) -> bool:
    """Whether to run ``tool``: asked for, and (for an anchor) installed."""
    if tool not in ctx.tools:
        return False
    if tool != "bastion" and importlib.util.find_spec(tool) is None:
        note(f"{tool} is not installed: its lines are skipped (make bench installs it)")
        return False
    return True


# ---------------------------------------------------------------- Bastion


def bastion_attack(ctx: Context, name: str, **options: Any) -> Attack | None:
    """The registered attack with those of ``options`` its class has; None (and a note) while it is unregistered."""
    if not wanted(ctx, "bastion"):
        return None
    if name not in ATTACKS:
        note(f"Bastion has no attack {name!r} registered yet: its Bastion line is skipped")
        return None
    known = {f.name for f in dataclasses.fields(make_attack(name))}
    dropped = sorted(set(options) - known)
    if dropped:
        note(f"Bastion {name!r} has no option(s) {dropped}: it runs without them")
    return make_attack(name, **{k: v for k, v in options.items() if k in known})


def bastion_entry(ctx: Context, attack: Attack | None, norm: str, eps: float | None) -> list[Entry]:
    if attack is None:
        return []
    seeds = itertools.count()

    def build(bs: int) -> Runner:
        return lambda x, y: attack(ctx.model, x, y, norm=norm, eps=eps, seed=next(seeds)).x_adv

    options = ", ".join(f"{k}={v}" for k, v in attack.config().items() if v not in (None, {}))
    config = f"{type(attack).__name__}({options})"
    return [Entry("bastion", config, build)]


def ta_entry(ctx: Context, config: str, factory: Callable[[Any, nn.Module], Any]) -> list[Entry]:
    """A torchattacks attack, built once from ``factory(torchattacks, module)``; it takes any batch."""
    if not wanted(ctx, "torchattacks"):
        return []
    runner = anchors.torchattacks_runner(factory, ctx.module)
    return [Entry("torchattacks", config, lambda bs: runner)]


def art_entry(ctx: Context, config: str, make: Callable[[Any, int], Any], examples: int | None = None) -> list[Entry]:
    """An ART attack, ``make(classifier, batch_size)``, behind ART's PyTorchClassifier around the same module."""
    if not wanted(ctx, "art"):
        return []
    clf = anchors.art_classifier(ctx.module, ctx.model.device)
    return [Entry("art", config, lambda bs: anchors.art_runner(make(clf, bs)), examples=examples)]


# ---------------------------------------------------------------- the floor


FLOOR_CLEAN = f"floor: {FLOOR_PASSES} x (forward + input-gradient backward) on the clean images"
FLOOR_PERTURBED = f"floor: {FLOOR_PASSES} x (forward + input-gradient backward) on x + U(-eps, eps), clipped"


def floor_entries(ctx: Context, eps: float) -> list[Entry]:
    """Plain forward+backward passes, gradient with respect to the input only: no attack can do less.

    Kernel times depend on the data (clean MNIST is mostly exact zeros), so the floor is also
    taken on randomly perturbed images, which look like an attack's iterates.
    """
    return [
        Entry("torch", FLOOR_CLEAN, lambda bs: _raw_passes(ctx.module, FLOOR_PASSES, 0.0), scored=False),
        Entry("torch", FLOOR_PERTURBED, lambda bs: _raw_passes(ctx.module, FLOOR_PASSES, eps), scored=False),
    ]


def _raw_passes(module: nn.Module, passes: int, eps: float) -> Runner:
    def run(x: Tensor, y: Tensor) -> Tensor:
        if eps:
            x = (x + eps * (2 * torch.rand_like(x) - 1)).clamp(0.0, 1.0)
        for _ in range(passes):
            xb = x.detach().requires_grad_(True)
            torch.autograd.grad(F.cross_entropy(module(xb), y), xb)
        return x

    return run


# ---------------------------------------------------------------- rows


def art_attack(name: str) -> Any:
    """An attack class of ``art.attacks.evasion``, imported only when ART is wanted and installed."""
    return getattr(importlib.import_module("art.attacks.evasion"), name)


def radius(eps: float | None) -> float:
    if eps is None:
        raise ValueError("this row needs a radius")
    return eps


def fgsm(ctx: Context, eps: float | None) -> list[Entry]:
    return [
        *bastion_entry(ctx, bastion_attack(ctx, "fgsm"), "linf", eps),
        *ta_entry(ctx, f"FGSM(eps={eps})", lambda t, m: t.FGSM(m, eps=eps)),
        *art_entry(
            ctx, f"FastGradientMethod(norm=inf, eps={eps})",
            lambda clf, bs: art_attack("FastGradientMethod")(clf, norm=np.inf, eps=eps, batch_size=bs),
        ),
    ]  # fmt: skip


def pgd(norm: str, step: float) -> Callable[[Context, float | None], list[Entry]]:
    """PGD, 40 steps from a random start, every example taking every step (Bastion: early_stop=False)."""

    def entries(ctx: Context, eps: float | None) -> list[Entry]:
        attack = bastion_attack(ctx, "pgd", steps=40, step_size=step, random_start=True, early_stop=False)
        ta_name, art_norm = ("PGD", np.inf) if norm == "linf" else ("PGDL2", 2)
        return [
            *(floor_entries(ctx, radius(eps)) if norm == "linf" else []),
            *bastion_entry(ctx, attack, norm, eps),
            *ta_entry(
                ctx, f"{ta_name}(eps={eps}, alpha={step}, steps=40, random_start=True)",
                lambda t, m: getattr(t, ta_name)(m, eps=eps, alpha=step, steps=40, random_start=True),
            ),
            *art_entry(
                ctx, f"ProjectedGradientDescent(norm={art_norm}, eps={eps}, eps_step={step}, max_iter=40, "
                "num_random_init=1)",
                lambda clf, bs: art_attack("ProjectedGradientDescent")(
                    clf, norm=art_norm, eps=eps, eps_step=step, max_iter=40, num_random_init=1,
                    batch_size=bs, verbose=False,
                ),
            ),
        ]  # fmt: skip

    return entries


def apgd_ce(ctx: Context, eps: float | None) -> list[Entry]:
    """APGD-CE, 100 steps, one run, no early stop anywhere; ART given the paper's first step 2 * eps."""
    eps = radius(eps)
    attack = bastion_attack(ctx, "apgd-ce", steps=100, restarts=1, early_stop=False)
    return [
        *bastion_entry(ctx, attack, "linf", eps),
        *ta_entry(
            ctx, f"APGD(norm='Linf', eps={eps}, steps=100, n_restarts=1, loss='ce')",
            lambda t, m: t.APGD(m, norm="Linf", eps=eps, steps=100, n_restarts=1, seed=0, loss="ce"),
        ),
        *art_entry(
            ctx, f"AutoProjectedGradientDescent(eps={eps}, eps_step={2 * eps}, max_iter=100, nb_random_init=1, "
            "loss_type='cross_entropy')",
            lambda clf, bs: art_attack("AutoProjectedGradientDescent")(
                clf, norm=np.inf, eps=eps, eps_step=2 * eps, max_iter=100, nb_random_init=1,
                batch_size=bs, loss_type="cross_entropy", verbose=False,
            ),
        ),
    ]  # fmt: skip


def cw(ctx: Context, eps: float | None) -> list[Entry]:
    """C&W L2 at an equal budget of gradient steps: Bastion's and ART's binary search, torchattacks' c = 1."""
    steps, search = ctx.cw_steps, ctx.cw_search_steps
    attack = bastion_attack(ctx, "cw", steps=steps, binary_search_steps=search)
    k = min(ctx.cw_art_examples, ctx.n)
    return [
        *bastion_entry(ctx, attack, "l2", None),
        *ta_entry(
            ctx, f"CW(c=1, kappa=0, steps={steps * search}, lr=0.01)",
            lambda t, m: t.CW(m, c=1, kappa=0, steps=steps * search, lr=0.01),
        ),
        *art_entry(
            ctx, f"CarliniL2Method(binary_search_steps={search}, max_iter={steps}), first {k} images",
            lambda clf, bs: art_attack("CarliniL2Method")(
                clf, binary_search_steps=search, max_iter=steps, batch_size=bs, verbose=False
            ),
            examples=k,
        ),
    ]  # fmt: skip


ENSEMBLE_STEPS = 100
ENSEMBLE_MEMBERS = ("apgd-ce", "apgd-t")


def ensemble(ctx: Context, eps: float | None) -> list[Entry]:
    """APGD-CE then APGD-T (9 targets), 100 steps each, every example taking every step."""
    eps = radius(eps)
    # The members named: the default cascade may grow (Square, a black-box check) beyond the anchors'.
    attack = bastion_attack(ctx, "autoattack", attacks=ENSEMBLE_MEMBERS)
    if attack is not None and not all(a in ATTACKS for a in getattr(attack, "attacks", ())):
        note(f"the ensemble's members {getattr(attack, 'attacks', ())} are not all registered: Bastion skipped")
        attack = None
    return [*bastion_entry(ctx, attack, "linf", eps), *ensemble_anchors(ctx, eps)]


def ensemble_anchors(ctx: Context, eps: float) -> list[Entry]:
    entries = ta_entry(
        ctx, "MultiAttack([APGD(loss='ce'), APGDT(n_classes=10)]), 100 steps, 1 restart",
        lambda t, m: anchors.ta_ensemble(t, m, eps, ENSEMBLE_STEPS),
    )  # fmt: skip
    if wanted(ctx, "art"):
        clf = anchors.art_classifier(ctx.module, ctx.model.device)
        entries.append(
            Entry(
                "art", "APGD(ce), then APGD(dlr, targeted) x 9 targets, 100 steps, 1 restart",
                lambda bs: anchors.art_ensemble(clf, ctx.module, eps, ENSEMBLE_STEPS, bs),
            )
        )  # fmt: skip
    return entries


def ensemble_examples(ctx: Context) -> int:
    return min(ctx.ensemble_examples, ctx.n)


def cw_examples(ctx: Context) -> int:
    return min(ctx.cw_examples, ctx.n)


ENSEMBLE_EPS = (0.1, 0.3)

ROWS: Sequence[Row] = (
    Row("pgd-linf", 40, "linf", (0.3,), pgd("linf", 0.01), sweep=True),
    Row("fgsm", 1, "linf", (0.3,), fgsm, sweep=True, repeats=3),
    Row("pgd-l2", 40, "l2", (2.0,), pgd("l2", 0.1)),
    Row("apgd-ce", 100, "linf", (0.3,), apgd_ce),
    Row("cw", 0, "l2", (None,), cw, examples=cw_examples),
    Row("ensemble", 0, "linf", ENSEMBLE_EPS, ensemble, examples=ensemble_examples),
)
