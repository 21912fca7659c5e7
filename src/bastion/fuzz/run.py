"""A ``bastion fuzz`` campaign: the model fuzzers over a seed set, or the pipeline fuzzers, folded into one report.

For a model, the budget (in generated inputs, in seconds, or both: whichever ends first) is
split between the metamorphic fuzzer (DeepTest/DeepHunter; its oracle a changed prediction on a
valid mutant) and the coverage-guided fuzzer (TensorFuzz, with prediction-guided selection and
its crash oracles). Raw findings fold into unique failures (same class, seed and labels); the
first ``max_reproducers`` get a minimised reproducer on disk. A held-out oracle checks that the
metamorphic mutants keep their label (:mod:`bastion.fuzz.validity`). For Bastion's own decoders
and for a running gateway the part-3 fuzzers (``bastion.fuzz.pipeline``, ``bastion.fuzz.http``)
run instead. With an input budget alone the run is deterministic under ``seed``.
"""

from __future__ import annotations

import logging
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import torch

from bastion.data import Dataset
from bastion.errors import ConfigError, DataError, RemoteModelError
from bastion.fuzz.guided import CoverageGuidedFuzzer, GuidedFuzzResult
from bastion.fuzz.metamorphic import Finding, MetamorphicFuzzer
from bastion.fuzz.minimise import minimise, save_reproducer
from bastion.fuzz.pipeline import PipelineResult
from bastion.fuzz.transforms import MutationLimits, check_strength
from bastion.fuzz.validity import check_validity
from bastion.models.interface import Classifier
from bastion.report.fuzz import CoveragePoint, FuzzerRun, FuzzFinding, FuzzReport, ValiditySummary

__all__ = ["DEFAULT_STRENGTH", "ENGINES", "FUZZERS", "TARGETS", "FuzzOptions", "FuzzProgress", "run_fuzz"]

logger = logging.getLogger(__name__)

FUZZERS = ("metamorphic", "guided")
TARGETS = ("model", "pipeline", "gateway")
ENGINES = ("hypothesis", "libfuzzer")
# At strength 0.5 the held-out oracle gives 97.0% of the valid digits mutants their true label,
# 99.5% of its accuracy on the seeds (docs/BENCHMARKS.md, "Fuzzing (issue 7)"): the 95% target holds.
DEFAULT_STRENGTH = 0.5
_BLOCK = 16  # seeds per metamorphic chunk: progress and the clock are checked between chunks
_PER_SEED = 8  # metamorphic mutants per seed and round
_UNBOUNDED = 10**9  # the input budget when only a time limit is given
# The guided fuzzer's settings for a campaign (bench/bench_fuzz.py chose them on the digits demo).
_SELECTION, _TOURNAMENT = "margin", 16
_CLASS = {"misprediction": "changed_prediction"}  # the fuzzers' kind -> the report's class
_LIBFUZZER_START_S = 3.0  # a libFuzzer child's start-up (instrumenting Bastion's modules), measured ~2.7 s


class FuzzProgress(Protocol):
    """What a campaign reports as it goes (the CLI draws a bar with the findings so far)."""

    def phase(self, name: str, total: int | None) -> None: ...

    def update(self, done: int, findings: int) -> None: ...


@dataclass(frozen=True)
class FuzzOptions:
    """A fuzzing campaign's settings, stored as given and checked by :func:`run_fuzz`."""

    target: str = "model"  # model, pipeline (Bastion's decoders) or gateway
    budget: int | None = 2000  # generated inputs in all (model); examples per target (pipeline, gateway)
    time_limit_s: float | None = None  # seconds; with a budget too, whichever ends first
    seed: int = 0
    strength: float = DEFAULT_STRENGTH  # transformation strength in [0, 1], both model fuzzers
    fuzzers: tuple[str, ...] = FUZZERS
    guided_linf: float = 0.15  # the guided fuzzer's L-infinity ball around each seed, share of the bounds
    limits: MutationLimits = field(default_factory=MutationLimits)  # the metamorphic validity limits
    minimise: bool = True
    max_reproducers: int = 20  # unique findings that get a reproducer on disk
    request_timeout_s: float = 10.0  # gateway
    engine: str = "hypothesis"  # pipeline: hypothesis (property-based) or libfuzzer (atheris, coverage-guided)
    decoders: tuple[str, ...] = ()  # pipeline: names in DECODER_TARGETS; empty: all of them

    def check(self) -> None:
        """A :class:`ConfigError` naming the first bad value."""
        if self.target not in TARGETS:
            raise ConfigError(f"unknown fuzzing target {self.target!r}; expected one of {', '.join(TARGETS)}")
        if self.budget is None and self.time_limit_s is None:
            raise ConfigError("give a budget in inputs, a time limit in seconds, or both")
        if self.budget is not None and (isinstance(self.budget, bool) or not isinstance(self.budget, int)):
            raise ConfigError(f"expected a whole number of inputs as the budget, got {self.budget!r}")
        if self.budget is not None and self.budget < 1:
            raise ConfigError(f"expected a budget of at least 1 input, got {self.budget}")
        if self.time_limit_s is not None and not self.time_limit_s > 0:
            raise ConfigError(f"expected a time limit above 0 seconds, got {self.time_limit_s!r}")
        check_strength(self.strength)
        unknown = [name for name in self.fuzzers if name not in FUZZERS]
        if unknown or not self.fuzzers:
            raise ConfigError(f"unknown fuzzers {unknown or self.fuzzers!r}; expected some of {', '.join(FUZZERS)}")
        if not 0.0 < self.guided_linf <= 1.0:
            raise ConfigError(f"expected guided_linf in (0, 1], got {self.guided_linf!r}")
        if self.max_reproducers < 0:
            raise ConfigError(f"expected max_reproducers >= 0, got {self.max_reproducers!r}")
        if self.engine not in ENGINES:
            raise ConfigError(f"unknown pipeline engine {self.engine!r}; expected one of {', '.join(ENGINES)}")
        if self.decoders:
            from bastion.fuzz.decoders import DECODER_TARGETS

            unknown = [name for name in self.decoders if name not in DECODER_TARGETS]
            if unknown:
                raise ConfigError(f"unknown decoders {unknown}; expected some of {', '.join(DECODER_TARGETS)}")

    def to_dict(self) -> dict[str, Any]:
        """JSON values for the report."""
        return {
            "target": self.target,
            "budget": self.budget,
            "time_limit_s": self.time_limit_s,
            "seed": self.seed,
            "strength": self.strength,
            "fuzzers": ", ".join(self.fuzzers),
            "guided_linf": self.guided_linf,
            "limits": f"linf {self.limits.linf:g} or {self.limits.changed_fraction:.0%} of values changed",
            "minimise": self.minimise,
            **(
                {"engine": self.engine, "decoders": ", ".join(self.decoders) or "all"}
                if self.target == "pipeline"
                else {}
            ),
        }


@dataclass
class _Campaign:
    """One model campaign's running state."""

    options: FuzzOptions
    model: Classifier
    seeds: Dataset
    reference: Classifier | None
    progress: FuzzProgress | None
    stop: Callable[[], bool]
    raw: list[tuple[str, Finding]] = field(default_factory=list)  # (fuzzer, finding)
    runs: list[FuzzerRun] = field(default_factory=list)
    coverage: list[CoveragePoint] = field(default_factory=list)


def run_fuzz(
    options: FuzzOptions,
    *,
    model: Classifier | None = None,
    seeds: Dataset | None = None,
    reference: Classifier | None = None,
    oracle: Classifier | None = None,
    url: str | None = None,
    api_key: str | None = None,
    out_dir: str | Path | None = None,
    progress: FuzzProgress | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> FuzzReport:
    """Run the campaign ``options`` describes and return its report (reproducers go under ``out_dir``).

    A model target needs ``model`` and ``seeds`` (``reference`` adds the disagreement oracle,
    ``oracle`` the validity check); a gateway target needs ``url``. Example::

        run_fuzz(FuzzOptions(budget=1000), model=demo_model("digits"), seeds=load_demo("digits", "test"))
    """
    options.check()
    started = clock()
    deadline = None if options.time_limit_s is None else started + options.time_limit_s
    out = Path(out_dir) if out_dir is not None else None
    if options.target != "model":
        return _run_pipeline(options, url, api_key, out, progress, clock, started)
    if model is None or seeds is None:
        raise ConfigError("fuzzing a model needs the model and its seeds")
    _check_fit(model, seeds, reference, oracle)
    campaign = _Campaign(
        options, model, seeds, reference, progress, lambda: deadline is not None and clock() > deadline
    )
    meta_budget, guided_budget = _split(options, len(seeds))
    if meta_budget:
        # With a time limit and both fuzzers, the metamorphic one gets the first half of the time.
        half = None if deadline is None or not guided_budget else (started + deadline) / 2
        _metamorphic(campaign, meta_budget, lambda: campaign.stop() or (half is not None and clock() > half))
    if guided_budget and not campaign.stop():
        _guided(campaign, guided_budget)
    findings = _fold(campaign, out)
    validity = _validity(options, seeds, oracle) if oracle is not None and "metamorphic" in options.fuzzers else None
    return FuzzReport(
        target="model",
        subject=_name(model) or "model",
        seeds=seeds.name,
        n_seeds=len(seeds),
        options={**options.to_dict(), "reference": _name(reference), "oracle": _name(oracle)},
        runs=tuple(campaign.runs),
        findings=findings,
        coverage=tuple(campaign.coverage),
        validity=validity,
        seconds=clock() - started,
    )


def _name(model: Classifier | None) -> str | None:
    return None if model is None else str(getattr(model, "name", type(model).__name__))


def _check_fit(model: Classifier, seeds: Dataset, reference: Classifier | None, oracle: Classifier | None) -> None:
    if len(seeds) == 0:
        raise DataError(f"{seeds.name}: no seeds to fuzz from")
    for role, other in (("model", model), ("reference model", reference), ("oracle model", oracle)):
        if other is not None and seeds.input_shape != tuple(other.input_shape):
            raise DataError(
                f"{seeds.name}: seeds have shape {seeds.input_shape}, but the {role} expects {tuple(other.input_shape)}"
            )


def _split(options: FuzzOptions, n_seeds: int) -> tuple[int, int]:
    """The metamorphic and the guided fuzzer's input budgets (the guided one must exceed its seeds)."""
    total = options.budget if options.budget is not None else _UNBOUNDED
    if "guided" not in options.fuzzers:
        return total, 0
    if "metamorphic" not in options.fuzzers:
        return 0, total if total >= 2 else 0
    guided = total - total // 2
    return (total // 2, guided) if guided >= 2 else (total, 0)


# -- the model fuzzers -----------------------------------------------------------------------------


def _metamorphic(campaign: _Campaign, budget: int, stop: Callable[[], bool]) -> None:
    """Chunks of ``_BLOCK`` correctly classified seeds in turn, each a seeded metamorphic run."""
    options, model, seeds = campaign.options, campaign.model, campaign.seeds
    began, start = time.perf_counter(), model.queries.forward
    correct = _correct_seeds(campaign)
    if not correct:
        raise DataError(f"{seeds.name}: the model classifies none of the {len(seeds)} seeds correctly")
    if campaign.progress is not None:
        campaign.progress.phase("metamorphic", None if budget >= _UNBOUNDED else budget)
    tried = valid = chunk = 0
    blocks = [correct[i : i + _BLOCK] for i in range(0, len(correct), _BLOCK)]
    while tried < budget and not stop():
        block = blocks[chunk % len(blocks)]
        subset = replace(seeds, x=seeds.x[block], y=seeds.y[block], name=f"{seeds.name}[block {chunk}]")
        fuzzer = MetamorphicFuzzer(
            strength=options.strength, limits=options.limits, mutants_per_seed=_PER_SEED, seed=_derive(options, chunk)
        )
        result = fuzzer(model, subset, budget=min(budget - tried, _PER_SEED * len(block)))
        campaign.raw.extend(("metamorphic", replace(f, seed_index=block[f.seed_index])) for f in result.findings)
        tried, valid, chunk = tried + result.tried, valid + result.valid, chunk + 1
        if campaign.progress is not None:
            campaign.progress.update(tried, len(campaign.raw))
    campaign.runs.append(
        FuzzerRun(
            "metamorphic",
            tried,
            valid,
            model.queries.forward - start,
            sum(1 for name, _ in campaign.raw if name == "metamorphic"),
            time.perf_counter() - began,
        )
    )


def _correct_seeds(campaign: _Campaign) -> list[int]:
    """Seeds the model classifies correctly; a seed the model raises on is an exception finding."""
    model, seeds = campaign.model, campaign.seeds
    correct: list[int] = []
    for start in range(0, len(seeds), 256):
        rows = seeds.x[start : start + 256]
        try:
            labels = _predict(model, rows)
        except Exception:  # a model that raises is a finding: find the rows, one at a time
            labels = torch.tensor([_predict_one(campaign, start + i) for i in range(len(rows))])
        correct.extend(start + i for i, label in enumerate(labels.tolist()) if label == int(seeds.y[start + i]))
    return correct


def _predict_one(campaign: _Campaign, index: int) -> int:
    x = campaign.seeds.x[index]
    try:
        return int(_predict(campaign.model, x.unsqueeze(0))[0])
    except Exception as exc:  # any failure of the model under test is what we look for
        label = int(campaign.seeds.y[index])
        error = f"{type(exc).__name__}: {exc}"
        campaign.raw.append(("metamorphic", Finding(index, (), x, label, None, "exception", error)))
        return -1


def _guided(campaign: _Campaign, budget: int) -> None:
    """The coverage-guided fuzzer on as many seeds as half its budget allows (the first ones)."""
    options, model, seeds = campaign.options, campaign.model, campaign.seeds
    began = time.perf_counter()
    n = min(len(seeds), max(1, budget // 2))
    subset = seeds if n == len(seeds) else replace(seeds, x=seeds.x[:n], y=seeds.y[:n], name=f"{seeds.name}[:{n}]")
    fuzzer = CoverageGuidedFuzzer(
        strength=options.strength,
        linf=options.guided_linf,
        seed=options.seed,
        selection=_SELECTION,
        tournament=_TOURNAMENT,
        mispredictions=True,
    )
    if campaign.progress is not None:
        campaign.progress.phase("coverage-guided", None if budget >= _UNBOUNDED else budget)
    earlier = len(campaign.raw)
    progress = campaign.progress

    def report(used: int, found: int) -> None:
        if progress is not None:
            progress.update(used, earlier + found)

    result: GuidedFuzzResult = fuzzer(
        model, subset, budget=budget, reference=campaign.reference, progress=report, stop=campaign.stop
    )
    campaign.raw.extend(("guided", f) for f in result.findings)
    campaign.coverage.extend(
        CoveragePoint(used, corpus, coverage)
        for used, (_, corpus, coverage) in zip(result.evaluations, result.growth, strict=True)
    )
    seconds = time.perf_counter() - began
    campaign.runs.append(FuzzerRun("guided", result.tried, result.valid, result.queries, len(result.findings), seconds))


# -- findings and reproducers ----------------------------------------------------------------------


def _fold(campaign: _Campaign, out: Path | None) -> tuple[FuzzFinding, ...]:
    """One finding per (class, seed, labels, error type), the first seen; reproducers for the first few."""
    groups: dict[tuple[object, ...], list[tuple[str, Finding]]] = {}
    for fuzzer, finding in campaign.raw:
        error_type = (finding.error or "").split(":")[0]
        key = (finding.kind, finding.seed_index, finding.new_label, finding.reference_label, error_type)
        groups.setdefault(key, []).append((fuzzer, finding))
    start, began = campaign.model.queries.forward, time.perf_counter()
    folded, tries = [], 0
    for number, members in enumerate(groups.values(), start=1):
        fuzzer, first = members[0]
        item = _unique(campaign, number, fuzzer, first, len(members))
        if out is not None and number <= campaign.options.max_reproducers:
            item, spent = _reproduce(campaign, item, fuzzer, first, out)
            tries += spent
        folded.append(item)
    if tries:
        queries = campaign.model.queries.forward - start
        campaign.runs.append(FuzzerRun("minimise", tries, tries, queries, 0, time.perf_counter() - began))
    return tuple(folded)


def _unique(campaign: _Campaign, number: int, fuzzer: str, finding: Finding, occurrences: int) -> FuzzFinding:
    kind = _CLASS.get(finding.kind, finding.kind)
    return FuzzFinding(
        id=f"F{number:03d}",
        kind=kind,
        fuzzer=fuzzer,
        target=str(getattr(campaign.model, "name", "model")),
        message=_message(kind, finding),
        occurrences=occurrences,
        seed_index=finding.seed_index,
        chain=tuple(finding.chain),
        original_label=finding.original_label,
        new_label=finding.new_label,
        reference_label=finding.reference_label,
        confidence=finding.confidence,
        distance=_distance(campaign.seeds, finding.seed_index, finding.mutant),
    )


def _message(kind: str, finding: Finding) -> str:
    if kind == "exception":
        return finding.error or "the model raised"
    if kind == "non_finite":
        return "non-finite logits"
    if kind == "disagreement":
        return f"model says {finding.new_label}, reference says {finding.reference_label}"
    if kind == "confidence_collapse":
        return f"top probability fell to {finding.confidence:.3f} on a confidently classified seed"
    return f"prediction changed from {finding.original_label} to {finding.new_label}"


def _reproduce(
    campaign: _Campaign, item: FuzzFinding, fuzzer: str, finding: Finding, out: Path
) -> tuple[FuzzFinding, int]:
    """Minimise (if asked) and save one finding's input; the finding with its file paths, and evaluations spent."""
    options = campaign.options
    if options.minimise:
        shrunk = minimise(
            campaign.model,
            finding,
            campaign.seeds,
            guided=fuzzer == "guided",
            replay_seed=_derive(options, 10_000 + int(item.id[1:])),
            limits=options.limits,
            reference=campaign.reference,
        )
        x, chain, replay, minimised, tries = shrunk.x, shrunk.chain, shrunk.replay_seed, shrunk.minimised, shrunk.tries
    else:
        x, chain, replay, minimised, tries = finding.mutant, finding.chain, None, False, 0
    npy, png = save_reproducer(x, out / "reproducers", item.id, campaign.seeds.bounds)
    return (
        replace(
            item,
            chain=tuple(chain),
            minimised=minimised,
            replay_seed=replay,
            distance=_distance(campaign.seeds, finding.seed_index, x),
            reproducer=npy.relative_to(out).as_posix(),
            image=None if png is None else png.relative_to(out).as_posix(),
        ),
        tries,
    )


def _distance(seeds: Dataset, index: int, x: torch.Tensor) -> float:
    return round(float((x - seeds.x[index]).abs().max()), 6)


def _validity(options: FuzzOptions, seeds: Dataset, oracle: Classifier) -> ValiditySummary:
    result = check_validity(oracle, seeds, strength=options.strength, limits=options.limits, seed=options.seed)
    return ValiditySummary(
        oracle=result.oracle,
        strength=result.strength,
        linf=result.linf,
        changed_fraction=result.changed_fraction,
        valid=result.valid,
        kept=result.kept,
        raw_rate=result.raw_rate,
        seed_accuracy=result.seed_accuracy,
        relative_rate=result.relative_rate,
    )


def _derive(options: FuzzOptions, index: int) -> int:
    """A seed for sub-run ``index``, fixed by the campaign's seed."""
    return (options.seed * 1_000_003 + index) % 2**63


def _predict(model: Classifier, x: torch.Tensor) -> torch.Tensor:
    with model.inference(), torch.no_grad():
        return model.logits(x.to(model.device)).argmax(dim=1).cpu()


# -- the pipeline and the gateway ------------------------------------------------------------------


def _run_pipeline(
    options: FuzzOptions,
    url: str | None,
    api_key: str | None,
    out: Path | None,
    progress: FuzzProgress | None,
    clock: Callable[[], float],
    started: float,
) -> FuzzReport:
    """Bastion's decoders or a running gateway, through the part-3 fuzzers."""
    folder = None if out is None else out / "reproducers"
    if progress is not None:
        progress.phase("pipeline" if options.target == "pipeline" else "gateway", None)
    if options.target == "pipeline":
        subject = "bastion decoders" + (f" ({options.engine})" if options.engine != "hypothesis" else "")
        result = _fuzz_decoders(options, folder, out)
    else:
        subject = _check_url(url, options.request_timeout_s)
        from bastion.fuzz.http import fuzz_gateway

        result = fuzz_gateway(
            subject,
            api_key=api_key,
            max_examples=options.budget or 100,
            seed=options.seed,
            time_limit_s=options.time_limit_s,
            request_timeout_s=options.request_timeout_s,
            out_dir=folder,
        )
    findings = tuple(
        FuzzFinding(
            id=f"F{number:03d}",
            kind=f.kind,
            fuzzer=options.target,
            target=f.target,
            message=f"{f.message} (reproducer: {f.reproducer[:300]})",
            occurrences=1,
            reproducer=_relative(f.reproducer_path, out),
        )
        for number, f in enumerate(result.findings, start=1)
    )
    run = FuzzerRun(options.target, result.inputs_tried, result.inputs_tried, 0, len(findings), result.seconds)
    if progress is not None:
        progress.update(result.inputs_tried, len(findings))
    skipped = {"not reached (time limit)": ", ".join(result.skipped)} if result.skipped else {}
    return FuzzReport(
        target=options.target,
        subject=subject,
        seeds=None,
        n_seeds=0,
        options={**options.to_dict(), **skipped},
        runs=(run,),
        findings=findings,
        coverage=(),
        validity=None,
        seconds=clock() - started,
    )


def _fuzz_decoders(options: FuzzOptions, folder: Path | None, out: Path | None) -> PipelineResult:
    """Hypothesis over the chosen decoders, or libFuzzer on each in turn (the time limit shared out evenly)."""
    from bastion.fuzz.decoders import DECODER_TARGETS
    from bastion.fuzz.pipeline import fuzz_decoders

    names = options.decoders or tuple(DECODER_TARGETS)
    if options.engine == "hypothesis":
        targets = {name: DECODER_TARGETS[name] for name in names}
        return fuzz_decoders(
            max_examples=options.budget or 500,
            seed=options.seed,
            time_limit_s=options.time_limit_s,
            out_dir=folder,
            targets=targets,
        )
    from bastion.fuzz.libfuzzer import fuzz_with_atheris

    work = folder if folder is not None else Path(tempfile.mkdtemp(prefix="bastion-libfuzzer-"))
    deadline = None if options.time_limit_s is None else time.monotonic() + options.time_limit_s
    results: list[PipelineResult] = []
    skipped: list[str] = []
    for left, name in zip(range(len(names), 0, -1), names, strict=True):
        share = None
        if deadline is not None:
            # What is left, shared among the decoders still to run: each child's start-up (a few
            # seconds of instrumentation) then comes out of the time limit instead of adding to it.
            remaining = deadline - time.monotonic()
            if remaining < _LIBFUZZER_START_S + 1:
                skipped.append(name)
                continue
            share = max(1.0, remaining / left - _LIBFUZZER_START_S)
        runs = options.budget or 100_000
        results.append(fuzz_with_atheris(name, out_dir=work, runs=runs, seed=options.seed, time_limit_s=share))
    return PipelineResult(
        targets=tuple(names),
        inputs_tried=sum(r.inputs_tried for r in results),
        findings=tuple(f for r in results for f in r.findings),
        seconds=sum(r.seconds for r in results),
        skipped=tuple(skipped),
    )


def _check_url(url: str | None, timeout_s: float) -> str:
    """The gateway's URL, once something answers on its host and port; else a clear error naming it."""
    if not url:
        raise ConfigError("fuzzing a gateway needs its URL, e.g. http://127.0.0.1:8000")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"expected an http or https URL for the gateway, got {url!r}")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        with socket.create_connection((parts.hostname, port), timeout=min(timeout_s, 5.0)):
            pass
    except (OSError, ValueError) as exc:
        raise RemoteModelError(f"the gateway at {url} does not answer: {exc}") from exc
    return url.rstrip("/")


def _relative(path: str | None, out: Path | None) -> str | None:
    if path is None or out is None:
        return path
    try:
        return Path(path).resolve().relative_to(out.resolve()).as_posix()
    except ValueError:
        return path
