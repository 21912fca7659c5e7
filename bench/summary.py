"""The printed table (with ratios) and the verdict on each target."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from harness import Measurement, Score

# Targets from the brief: PGD-40 against the floor, C&W against the anchors, the evaluation against the anchors.
FLOOR_TARGET = {"cpu": 1.10, "cuda": 1.05}
EVALUATION_TIME_TARGET = 0.5
ROBUST_ACCURACY_SLACK = 0.005
FLOOR_ROW, FLOOR_PASSES = "pgd-linf", 40

Scores = Mapping[tuple[str, str, float | None], Score]


@dataclass(frozen=True)
class Floor:
    """The fastest floor line: wall and CPU seconds of one forward+backward pass per example."""

    wall: float
    cpu: float
    batch_size: int | None  # of the fastest line by wall time

    @classmethod
    def of(cls, rows: Sequence[Measurement], perturbed: bool = False) -> Floor | None:
        """The clean-image floor (the brief's), or the one on perturbed images; each metric's own minimum."""
        lines = [m for m in rows if m.tool == "torch" and ("U(-eps" in m.config) == perturbed]
        if not lines:
            return None
        best = min(lines, key=lambda m: m.seconds)
        per = FLOOR_PASSES * best.n
        return cls(best.seconds / per, min(m.cpu_seconds for m in lines) / per, best.batch_size)


@dataclass(frozen=True)
class Verdict:
    target: str
    measured: str
    met: bool | None  # None: could not be judged (a line is missing)
    info: bool = False  # a figure for reference, not a target

    def line(self) -> str:
        mark = "INFO" if self.info else {True: "MET", False: "MISSED", None: "NOT MEASURED"}[self.met]
        return f"  [{mark:^12}] {self.target}: {self.measured}"


def fastest(rows: Sequence[Measurement], row: str, tool: str, eps: float | None = None) -> Measurement | None:
    found = [m for m in rows if m.row == row and m.tool == tool and (eps is None or m.eps == eps)]
    return min(found, key=lambda m: m.seconds / m.n) if found else None


def ratio(m: Measurement, rows: Sequence[Measurement], floor: Floor | None, passes: int) -> str:
    """Anchors: their time / Bastion's best, per example. Bastion: its time / the floor's for as many passes."""
    if m.tool == "bastion":
        if floor is None or passes == 0:
            return ""
        return f"{m.seconds / (floor.wall * passes * m.n):.2f}x floor"
    if m.tool == "torch":
        return ""
    best = fastest(rows, m.row, "bastion", m.eps)
    return "" if best is None else f"{(m.seconds / m.n) / (best.seconds / best.n):.2f}x bastion"


def cpu_ratio(m: Measurement, rows: Sequence[Measurement], floor: Floor | None, passes: int) -> str:
    if math.isnan(m.cpu_seconds) or m.tool == "torch":
        return ""
    if m.tool == "bastion":
        return "" if floor is None or passes == 0 else f"{m.cpu_seconds / (floor.cpu * passes * m.n):.2f}x"
    best = fastest(rows, m.row, "bastion", m.eps)
    return "" if best is None else f"{(m.cpu_seconds / m.n) / (best.cpu_seconds / best.n):.2f}x"


def table(rows: Sequence[Measurement], passes: Mapping[str, int]) -> str:
    floor = Floor.of(rows)
    head = (
        f"{'row':<15} {'eps':>4} {'tool':<12} {'bs':>5} {'n':>5} {'wall s':>8} {'cpu s':>8} {'ratio (wall)':>17} "
        f"{'(cpu)':>6} {'robust':>7} {'success':>8} {'med.dist':>8}  config"
    )
    lines = [head, "-" * len(head)]
    for m in rows:
        p = passes.get(m.row, 0)
        lines.append(
            f"{m.row:<15} {_f(m.eps, '.2g'):>4} {m.tool:<12} {m.batch_size!s:>5} {m.n:>5} {m.seconds:>8.2f} "
            f"{_f(m.cpu_seconds, '.2f'):>8} {ratio(m, rows, floor, p):>17} {cpu_ratio(m, rows, floor, p):>6} "
            f"{_pct(m.robust_accuracy):>7} {_pct(m.success_rate):>8} {_f(m.median_distance, '.3f'):>8}  {m.config}"
            + (f"  [{m.outside_ball} outside the ball]" if m.outside_ball else "")
        )
    return "\n".join(lines)


def _f(value: float | None, spec: str) -> str:
    return "" if value is None or math.isnan(value) else format(value, spec)


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value:.1%}"


def verdicts(rows: Sequence[Measurement], scores: Scores, device: str) -> list[Verdict]:
    """Judged on CPU time on the CPU (steady on a shared machine with one torch thread), on wall time on a GPU."""
    by_cpu = device == "cpu"
    return [_headline(rows, device, by_cpu), *_cw(rows, scores), *_evaluation(rows, by_cpu)]


def _headline(rows: Sequence[Measurement], device: str, by_cpu: bool) -> Verdict:
    limit = FLOOR_TARGET.get(device, FLOOR_TARGET["cpu"])
    target = f"PGD-40 Linf, Bastion / floor <= {limit:.2f}x ({device}, {'CPU' if by_cpu else 'wall'} time)"
    lines = [m for m in rows if m.row == FLOOR_ROW and m.tool == "bastion"]
    floor, noisy = Floor.of(rows), Floor.of(rows, perturbed=True)
    if not lines or floor is None:
        return Verdict(target, "the floor or Bastion's PGD line is missing", None)
    work = FLOOR_PASSES * lines[0].n
    wall = min(m.seconds for m in lines) / (floor.wall * work)
    cpu = min(m.cpu_seconds for m in lines) / (floor.cpu * work)
    measured = f"{wall:.3f}x wall, {cpu:.3f}x CPU time (fastest batch size of each)"
    if noisy is not None:
        measured += (
            f"; against the floor on perturbed images {min(m.seconds for m in lines) / (noisy.wall * work):.3f}x "
            f"wall, {min(m.cpu_seconds for m in lines) / (noisy.cpu * work):.3f}x CPU"
        )
    return Verdict(target, measured, (cpu if by_cpu else wall) <= limit)


def _cw(rows: Sequence[Measurement], scores: Scores) -> list[Verdict]:
    """The brief's test (medians over each tool's own successes), and the medians over the images both broke."""
    target = "C&W L2: smaller median L2 than {} at equal or higher success"
    ours = scores.get(("cw", "bastion", None))
    others = [m for m in rows if m.row == "cw" and m.tool != "bastion"]
    if ours is None or not others:
        return [Verdict(target.format("both anchors"), "Bastion's or the anchors' C&W line is missing", None)]
    out = []
    for m in others:
        sr, med = _on_first(ours, m.n)
        met = sr > 0 and sr >= (m.success_rate or 0.0) and (m.median_distance is None or med < m.median_distance)
        measured = (
            f"on the same {m.n} images: Bastion {sr:.1%} at median {med:.3f}, {m.tool} "
            f"{_pct(m.success_rate)} at median {_f(m.median_distance, '.3f') or '-'}"
        )
        theirs = scores.get(("cw", m.tool, None))
        if theirs is not None:
            measured += "; " + _common(ours, theirs, m.n)
        out.append(Verdict(target.format(m.tool), measured, met))
    return out


def _on_first(s: Score, k: int) -> tuple[float, float]:
    """Success rate and median distance of a score restricted to the first ``k`` images."""
    fooled, ok = s.fooled[:k], s.clean_ok[:k]
    rate = int(fooled.sum()) / max(1, int(ok.sum()))
    median = float(s.distance[:k][fooled].median()) if bool(fooled.any()) else math.inf
    return rate, median


def _common(ours: Score, theirs: Score, k: int) -> str:
    """Medians over the images that both tools fooled: the like-for-like distance comparison."""
    both = ours.fooled[:k] & theirs.fooled[:k]
    if not bool(both.any()):
        return "no image fooled by both"
    a, b = float(ours.distance[:k][both].median()), float(theirs.distance[:k][both].median())
    return f"on the {int(both.sum())} images both fooled: Bastion median {a:.3f}, theirs {b:.3f}"


def _evaluation(rows: Sequence[Measurement], by_cpu: bool) -> list[Verdict]:
    lines = [m for m in rows if m.row == "robust-accuracy" and m.tool == "bastion"]
    ours = [m for m in lines if "variant" not in m.extra]
    anchors = [m for m in rows if m.row == "ensemble" and m.tool not in ("bastion", "torch")]
    if not ours or not anchors:
        return [Verdict("robust-accuracy evaluation", "Bastion's assess or the anchors' cascades are missing", None)]
    wall, cpu = float(ours[0].extra["assess_wall_seconds"]), float(ours[0].extra["assess_cpu_seconds"])
    nine = [m for m in lines if m.extra.get("variant") == "nine targets"]
    totals: dict[str, tuple[float, float]] = {}
    for m in anchors:
        w, c = totals.get(m.tool, (0.0, 0.0))
        totals[m.tool] = (w + m.seconds, c + m.cpu_seconds)
    pick = 1 if by_cpu else 0
    tool, (a_wall, a_cpu) = min(totals.items(), key=lambda kv: kv[1][pick])
    ratio_ = (cpu / a_cpu) if by_cpu else (wall / a_wall)
    out = [
        Verdict(
            f"robust-accuracy evaluation, Bastion assess / fastest anchor <= {EVALUATION_TIME_TARGET}x "
            f"({'CPU' if by_cpu else 'wall'} time)",
            f"{wall / a_wall:.3f}x wall ({wall:.1f} s vs {tool} {a_wall:.1f} s), {cpu / a_cpu:.3f}x CPU "
            f"({cpu:.1f} s vs {a_cpu:.1f} s); both radii, n={ours[0].n}",
            ratio_ <= EVALUATION_TIME_TARGET,
        )
    ]
    if nine:
        n_cpu = float(nine[0].extra["assess_cpu_seconds"])
        ras = ", ".join(f"{m.robust_accuracy:.1%} at eps {m.eps:g}" for m in nine)
        out.append(
            Verdict("(for reference) the same with nine APGD-T targets", f"{n_cpu / a_cpu:.3f}x CPU; {ras}", None, True)
        )
    for m in ours:
        lowest = min(a.robust_accuracy or 0.0 for a in anchors if a.eps == m.eps)
        ra = m.robust_accuracy or 0.0
        out.append(
            Verdict(
                f"robust accuracy at eps {m.eps:g} <= lowest anchor's + {ROBUST_ACCURACY_SLACK:.1%}",
                f"Bastion {ra:.1%}, lowest anchor {lowest:.1%}",
                ra <= lowest + ROBUST_ACCURACY_SLACK + 0.5 / m.n,  # half an example: figures stored as float32
            )
        )
    return out
