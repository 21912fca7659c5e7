"""Benchmark of Bastion's coverage-guided fuzzer against plain random mutation, and of mutant validity (issue 7).

One process, the demo digits CNN, its 360 test images as seeds, the same budget of model
evaluations for both fuzzers: Bastion's guided fuzzer (TensorFuzz's nearest-neighbour coverage
with prediction-guided, margin-based parent selection; ``bastion fuzz``'s settings) against the
same fuzzer with ``guided=False``: random single mutations of uniformly drawn seeds, no corpus.
A third arm, for the record, is the guided fuzzer with TensorFuzz's own recent-biased selection.

A *unique failure* is a distinct (seed index, predicted label) pair among the findings: the
same seed pushed to the same wrong class twice counts once. A *confirmed* unique failure is one
whose input a held-out oracle (the demo architecture trained with another seed on the train
split, disjoint from the seeds) still gives the seed's true label: the model erred, the input
kept its meaning. Validity: the share of valid metamorphic mutants (``bastion fuzz``'s default
strength and limits) the oracle classifies as their seed's true label, raw and relative to its
accuracy on the unmutated seeds. Targets: >= 2x the baseline's unique failures; >= 95% validity.

    .venv/bin/python bench/bench_fuzz.py            # the run in docs/BENCHMARKS.md (about a minute)
    .venv/bin/python bench/bench_fuzz.py --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import torch

from bastion.data import Dataset, load_demo
from bastion.demo import demo_model
from bastion.fuzz import CoverageGuidedFuzzer, GuidedFuzzResult
from bastion.fuzz.run import _SELECTION, _TOURNAMENT, DEFAULT_STRENGTH, FuzzOptions
from bastion.fuzz.validity import check_validity, demo_oracle
from bastion.models.interface import Classifier
from harness import machine

RESULTS = Path(__file__).resolve().parent / "results"
log = logging.getLogger("bench_fuzz")


def unique_failures(result: GuidedFuzzResult, oracle: Classifier, seeds: Dataset) -> tuple[int, int]:
    """Distinct (seed, predicted label) pairs, and how many of them the oracle confirms."""
    first: dict[tuple[int, int | None], torch.Tensor] = {}
    for finding in result.findings:
        first.setdefault((finding.seed_index, finding.new_label), finding.mutant)
    if not first:
        return 0, 0
    keys = list(first)
    with oracle.inference(), torch.no_grad():
        labels = oracle.logits(torch.stack([first[k] for k in keys])).argmax(dim=1)
    confirmed = sum(int(label) == int(seeds.y[seed]) for (seed, _), label in zip(keys, labels.tolist(), strict=True))
    return len(keys), confirmed


def fuzz_pair(model: Classifier, oracle: Classifier, seeds: Dataset, budget: int, seed: int) -> dict[str, Any]:
    """The guided fuzzer and its random baseline, same budget and settings but for the guidance."""
    row: dict[str, Any] = {"seed": seed}
    arms = (("guided", True, _SELECTION), ("baseline", False, _SELECTION), ("recent", True, "recent"))
    for name, guided, selection in arms:
        fuzzer = CoverageGuidedFuzzer(
            strength=DEFAULT_STRENGTH,
            linf=FuzzOptions().guided_linf,
            mispredictions=True,
            selection=selection,
            tournament=_TOURNAMENT,
            guided=guided,
            seed=seed,
        )
        started = time.perf_counter()
        result = fuzzer(model, seeds, budget=budget)
        unique, confirmed = unique_failures(result, oracle, seeds)
        row[name] = {
            "findings": len(result.findings),
            "unique": unique,
            "confirmed": confirmed,
            "corpus": result.corpus_size,
            "evaluations": result.queries,
            "seconds": round(time.perf_counter() - started, 2),
        }
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=4000, help="model evaluations per fuzzer and seed")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="fuzzing seeds (one run each)")
    parser.add_argument("--quick", action="store_true", help="budget 800, one seed")
    args = parser.parse_args()
    if args.quick:
        args.budget, args.seeds = 800, [0]
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    model, oracle = demo_model("digits"), demo_oracle("digits")
    seeds = load_demo("digits", "test")
    rows = [fuzz_pair(model, oracle, seeds, args.budget, seed) for seed in args.seeds]
    print(f"unique failures (distinct seed, predicted label) at {args.budget} evaluations, {len(seeds)} seeds:")
    for row in rows:
        g, b = row["guided"], row["baseline"]
        print(
            f"  seed {row['seed']}: guided {g['unique']} ({g['confirmed']} confirmed by the oracle, "
            f"{g['findings']} raw, corpus {g['corpus']}, {g['seconds']} s)  baseline {b['unique']} "
            f"({b['confirmed']} confirmed, {b['findings']} raw, {b['seconds']} s)  "
            f"TensorFuzz's recent-biased selection {row['recent']['unique']} ({row['recent']['confirmed']} confirmed)"
        )
    totals = {name: sum(row[name]["unique"] for row in rows) for name in ("guided", "baseline")}
    confirmed = {name: sum(row[name]["confirmed"] for row in rows) for name in ("guided", "baseline")}
    ratio = totals["guided"] / totals["baseline"] if totals["baseline"] else float("inf")
    confirmed_ratio = confirmed["guided"] / confirmed["baseline"] if confirmed["baseline"] else float("inf")
    print(f"total unique: guided {totals['guided']}, baseline {totals['baseline']}: ratio {ratio:.2f}x (target 2x)")
    print(
        f"total confirmed: guided {confirmed['guided']}, baseline {confirmed['baseline']}: ratio {confirmed_ratio:.2f}x"
    )
    validity = []
    for strength in (0.25, DEFAULT_STRENGTH, 0.75, 1.0):
        v = check_validity(oracle, seeds, strength=strength, seed=0)
        validity.append({"strength": strength, "valid": v.valid, "mutants": v.mutants, "kept": v.kept,
                         "raw": v.raw_rate, "seed_accuracy": v.seed_accuracy, "relative": v.relative_rate})  # fmt: skip
        default = " (bastion fuzz's default)" if strength == DEFAULT_STRENGTH else ""
        print(
            f"validity at strength {strength}{default}: {v.kept}/{v.valid} valid mutants keep their true label "
            f"by the oracle: raw {v.raw_rate:.1%}, relative {v.relative_rate:.1%} (oracle seed accuracy "
            f"{v.seed_accuracy:.1%}; {v.valid}/{v.mutants} mutants inside the limits)"
        )
    RESULTS.mkdir(exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H%MZ")
    path = RESULTS / f"cpu-fuzz-{stamp}.json"
    info = machine(torch.device("cpu"))
    payload = {"machine": info, "args": vars(args), "rows": rows, "ratio": ratio,
               "confirmed_ratio": confirmed_ratio, "validity": validity}  # fmt: skip
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"results: {path}")


if __name__ == "__main__":
    main()
