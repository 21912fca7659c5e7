"""The JUnit XML: thresholds, findings and attack runs as test cases CI can read."""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET

from bastion.report import Assessment, render_junit


def _suite(assessment: Assessment) -> ET.Element:
    root = ET.fromstring(render_junit(assessment))
    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    assert suite.get("name") == "bastion.assess"
    return suite


def _cases(suite: ET.Element, group: str) -> list[ET.Element]:
    return [case for case in suite.iter("testcase") if case.get("classname") == f"bastion.assess.{group}"]


def test_missed_threshold_is_a_failure_with_required_and_actual(assessment: Assessment) -> None:
    passed, missed = _cases(_suite(assessment), "thresholds")
    assert passed.find("failure") is None
    failure = missed.find("failure")
    assert failure is not None
    assert failure.get("message") == "robust_accuracy at eps=0.1: required >= 0.5, actual 0.35"


def test_findings_by_severity(assessment: Assessment) -> None:
    error, warning, info = _cases(_suite(assessment), "findings")
    assert error.find("failure") is not None
    assert warning.find("skipped") is not None and warning.find("failure") is None
    assert info.find("failure") is None and info.find("skipped") is None
    assert "deterministic" in (info.findtext("system-out") or "")


def test_attack_runs_pass_with_their_figures(assessment: Assessment) -> None:
    runs = _cases(_suite(assessment), "attacks")
    assert len(runs) == 6
    assert all(case.find("failure") is None for case in runs)
    figures = {p.get("name"): p.get("value") for p in runs[4].iter("property")}
    assert figures["robust_accuracy"] == "0.38"
    assert figures["gradients_total"] == "8000"
    assert figures["config.random_start"] == "true"
    assert runs[4].get("time") == "10.0"


def test_counts_and_escaping(assessment: Assessment) -> None:
    model = dataclasses.replace(assessment.model, name='a<b & "c"\x00')
    suite = _suite(dataclasses.replace(assessment, model=model))
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("11", "2", "1")
    properties = {p.get("name"): p.get("value") for p in suite.find("properties") or []}
    assert properties["model"] == 'a<b & "c"\ufffd'
