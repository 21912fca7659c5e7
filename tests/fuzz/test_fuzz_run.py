"""Tests for a fuzzing campaign (bastion.fuzz.run), its reproducers, the validity check and the report."""

from __future__ import annotations

import itertools
import socket
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from bastion.data import Dataset
from bastion.errors import ConfigError, DataError, RemoteModelError
from bastion.fuzz import CoverageGuidedFuzzer, MutationLimits
from bastion.fuzz.run import FuzzOptions, run_fuzz
from bastion.fuzz.validity import check_validity
from bastion.models import TorchClassifier
from bastion.report.fuzz import fuzz_from_dict, fuzz_to_dict, read_fuzz_json, write_fuzz_report


class _Planted(nn.Module):
    """The digits CNN, except that bright images give NaN logits and very bright ones raise."""

    def __init__(self, inner: nn.Module, threshold: float) -> None:
        super().__init__()
        self.inner, self.threshold = inner, threshold

    def forward(self, x: Tensor) -> Tensor:
        if bool((x.flatten(1).mean(dim=1) > self.threshold + 0.2).any()):
            raise RuntimeError("planted crash")
        out = self.inner(x)
        region = x.flatten(1).mean(dim=1) > self.threshold
        return torch.where(region.unsqueeze(1), torch.full_like(out, float("nan")), out)


def _seeds(data: Dataset, n: int = 32) -> Dataset:
    return replace(data, x=data.x[:n], y=data.y[:n], name="digits-seeds")


def _planted(model: TorchClassifier, seeds: Dataset) -> TorchClassifier:
    threshold = float(seeds.x.flatten(1).mean(dim=1).max()) + 0.03
    return TorchClassifier(
        _Planted(model.module, threshold), input_shape=model.input_shape, bounds=(0.0, 1.0), name="planted"
    )


def test_campaign_finds_planted_failures_and_saves_reproducers_that_fail(
    digits_model: TorchClassifier, digits_test: Dataset, tmp_path: Path
) -> None:
    seeds = _seeds(digits_test)
    model = _planted(digits_model, seeds)
    report = run_fuzz(FuzzOptions(budget=600, seed=0), model=model, seeds=seeds, out_dir=tmp_path)
    assert {"non_finite", "changed_prediction"} <= {f.kind for f in report.findings}
    assert [run.fuzzer for run in report.runs][:2] == ["metamorphic", "guided"]
    assert report.runs[0].inputs == 300 and report.runs[1].inputs + len(seeds) <= 300
    assert sum(report.by_class.values()) == len(report.findings)
    assert len({(f.kind, f.seed_index, f.new_label) for f in report.findings}) == len(report.findings)
    saved = [f for f in report.findings if f.reproducer is not None]
    assert saved and len(saved) == min(len(report.findings), 20)
    for finding in saved:
        x = torch.from_numpy(np.load(tmp_path / finding.reproducer, allow_pickle=False))
        assert (tmp_path / str(finding.image)).read_bytes().startswith(b"\x89PNG")
        assert finding.seed_index is not None
        assert finding.distance == pytest.approx(float((x - seeds.x[finding.seed_index]).abs().max()), abs=1e-5)
        with torch.no_grad():
            planted_out, clean_out = model.module(x.unsqueeze(0))[0], model.module.inner(x.unsqueeze(0))[0]
        if finding.kind == "non_finite":
            assert not bool(torch.isfinite(planted_out).all())
        else:
            assert finding.kind == "changed_prediction" and int(clean_out.argmax()) != finding.original_label
    assert any(f.minimised for f in saved)
    growth = report.coverage
    assert growth[0].evaluations == len(seeds) and growth[-1].evaluations <= 300
    assert all(a.evaluations < b.evaluations and a.corpus <= b.corpus for a, b in itertools.pairwise(growth))


def test_a_model_that_raises_is_a_finding_not_a_crash(digits_model: TorchClassifier, digits_test: Dataset) -> None:
    seeds = _seeds(digits_test, 8)
    model = _planted(digits_model, seeds)  # planted above these seeds' brightness; a white seed makes it raise
    seeds = replace(seeds, x=torch.cat([seeds.x[:7], torch.ones_like(seeds.x[:1])]))
    report = run_fuzz(FuzzOptions(budget=100, fuzzers=("metamorphic",)), model=model, seeds=seeds)
    crashes = [f for f in report.findings if f.kind == "exception"]
    assert crashes and crashes[0].seed_index == 7 and "planted crash" in crashes[0].message


def test_same_seed_same_campaign(digits_model: TorchClassifier, digits_test: Dataset, tmp_path: Path) -> None:
    seeds = _seeds(digits_test)
    model = _planted(digits_model, seeds)
    runs = [run_fuzz(FuzzOptions(budget=300, seed=5), model=model, seeds=seeds, out_dir=tmp_path / n) for n in "ab"]
    first, second = ([replace(f, distance=None) for f in r.findings] for r in runs)
    assert first == second and runs[0].coverage == runs[1].coverage
    for finding in runs[0].findings:
        if finding.reproducer is not None:
            assert (tmp_path / "a" / finding.reproducer).read_bytes() == (
                tmp_path / "b" / finding.reproducer
            ).read_bytes()
    other = run_fuzz(FuzzOptions(budget=300, seed=6), model=model, seeds=seeds)
    assert [f.chain for f in other.findings] != [f.chain for f in runs[0].findings]


def test_time_limit_ends_the_run_on_an_injected_clock(digits_model: TorchClassifier, digits_test: Dataset) -> None:
    ticks = iter(range(10**6))
    report = run_fuzz(
        FuzzOptions(budget=None, time_limit_s=40.0),
        model=digits_model,
        seeds=_seeds(digits_test),
        clock=lambda: float(next(ticks)),
    )
    assert 0 < report.inputs < 5000 and {run.fuzzer for run in report.runs} >= {"metamorphic", "guided"}


def test_bad_input_is_a_clear_error(digits_model: TorchClassifier, digits_test: Dataset) -> None:
    seeds = _seeds(digits_test)
    with pytest.raises(ConfigError, match="at least 1 input, got 0"):
        run_fuzz(FuzzOptions(budget=0), model=digits_model, seeds=seeds)
    with pytest.raises(ConfigError, match="a budget in inputs, a time limit"):
        run_fuzz(FuzzOptions(budget=None), model=digits_model, seeds=seeds)
    with pytest.raises(ConfigError, match="unknown fuzzers"):
        run_fuzz(FuzzOptions(fuzzers=("afl",)), model=digits_model, seeds=seeds)
    flat = replace(seeds, x=seeds.x.flatten(1))
    with pytest.raises(DataError, match=r"seeds have shape \(64,\), but the model expects \(1, 8, 8\)"):
        run_fuzz(FuzzOptions(), model=digits_model, seeds=flat)


def test_a_gateway_that_does_not_answer_is_named() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again when the block ends: nothing listens there
    url = f"http://127.0.0.1:{port}"
    with pytest.raises(RemoteModelError, match=f"gateway at {url} does not answer"):
        run_fuzz(FuzzOptions(target="gateway", budget=5), url=url)
    with pytest.raises(ConfigError, match="expected an http or https URL"):
        run_fuzz(FuzzOptions(target="gateway", budget=5), url="ftp://example")


def test_validity_is_relative_to_the_oracles_seed_accuracy(digits_model: TorchClassifier, digits_data: Dataset) -> None:
    identity = check_validity(digits_model, digits_data, strength=0.0)
    assert identity.valid == identity.mutants == 4 * len(digits_data)
    assert identity.raw_rate == pytest.approx(identity.seed_accuracy) and identity.relative_rate == pytest.approx(1.0)
    bounded = check_validity(digits_model, digits_data, strength=0.5, seed=1)
    assert 0.9 <= bounded.relative_rate <= 1.05 and bounded.valid <= bounded.mutants
    assert bounded.raw_rate == bounded.kept / bounded.valid
    strict = check_validity(
        digits_model, digits_data, strength=1.0, limits=MutationLimits(linf=0.01, changed_fraction=0.01)
    )
    assert strict.valid < bounded.valid


def test_report_round_trips_and_renders(digits_model: TorchClassifier, digits_test: Dataset, tmp_path: Path) -> None:
    seeds = _seeds(digits_test)
    report = run_fuzz(FuzzOptions(budget=300), model=_planted(digits_model, seeds), seeds=seeds, out_dir=tmp_path)
    assert fuzz_from_dict(fuzz_to_dict(report)) == report
    written = write_fuzz_report(report, tmp_path)
    assert read_fuzz_json(written["json"]) == report
    html = written["html"].read_text()
    assert "Coverage growth" in html and "data:image/png;base64," in html and "<script" not in html
    assert all(f'href="{f.reproducer}"' in html for f in report.findings if f.reproducer)


def test_guided_margin_selection_records_inputs_spent(digits_model: TorchClassifier, digits_test: Dataset) -> None:
    seeds = _seeds(digits_test, 64)
    calls: list[tuple[int, int]] = []
    fuzzer = CoverageGuidedFuzzer(seed=0, selection="margin", tournament=16, mispredictions=True, linf=0.2)
    result = fuzzer(digits_model, seeds, budget=600, progress=lambda used, found: calls.append((used, found)))
    assert len(result.evaluations) == len(result.growth) and result.evaluations[-1] == 600
    assert calls[-1] == (600, len(result.findings)) and result.findings
    assert all(f.kind == "misprediction" and f.new_label != f.original_label for f in result.findings)
    stopped = fuzzer(digits_model, seeds, budget=600, stop=lambda: True)
    assert stopped.evaluations == (len(seeds),) and stopped.tried == 0
    with pytest.raises(ConfigError, match="unknown selection 'best'"):
        CoverageGuidedFuzzer(selection="best")(digits_model, seeds, budget=600)
