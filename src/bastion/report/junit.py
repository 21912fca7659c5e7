"""The assessment as JUnit XML, so a CI system shows thresholds, trust findings and attack runs as tests.

One ``<testsuite name="bastion.assess">`` inside ``<testsuites>`` holds:

* a test per threshold (``bastion.assess.thresholds``): a ``<failure>`` when it was missed,
  its message giving the required and the actual figure;
* a test per trust finding (``bastion.assess.findings``): severity ``error`` is a
  ``<failure>``; ``warning`` is ``<skipped>`` with the message, so it stands out in every CI
  summary without failing the build; ``info`` passes, its message in ``<system-out>``;
* a test per attack run (``bastion.assess.attacks``), always passing, its figures as
  ``<properties>`` and its wall time as the test's time;
* a test per universal pattern (``bastion.assess.universal``), the same way: its held-out
  success, baseline and training settings as ``<properties>``.

The tree is built with :mod:`xml.etree.ElementTree`, which escapes every value.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path

from bastion.report.model import Assessment, AttackRun, Finding, Threshold, UniversalRun
from bastion.report.views import describe_threshold

__all__ = ["SUITE_NAME", "render_junit", "write_junit"]

SUITE_NAME = "bastion.assess"

# Characters XML 1.0 forbids even escaped; ElementTree passes them through, so they are replaced.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def render_junit(assessment: Assessment) -> str:
    """The JUnit XML document as a string, with its XML declaration."""
    suite = _suite(assessment)
    for threshold in assessment.thresholds:
        suite.append(_threshold_case(threshold))
    for finding in assessment.findings:
        suite.append(_finding_case(finding))
    for run in assessment.runs:
        suite.append(_run_case(run))
    for pattern in assessment.universal:
        suite.append(_universal_case(pattern))
    _count(suite)
    root = ET.Element("testsuites", {key: suite.attrib[key] for key in ("tests", "failures", "skipped")})
    root.append(suite)
    ET.indent(root)
    document = ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"
    return _NOT_XML.sub("\ufffd", document)


def write_junit(assessment: Assessment, path: str | Path) -> Path:
    """Write the JUnit XML to ``path`` (UTF-8) and return the path."""
    path = Path(path)
    path.write_text(render_junit(assessment), encoding="utf-8")
    return path


def _suite(assessment: Assessment) -> ET.Element:
    suite = ET.Element(
        "testsuite",
        {"name": SUITE_NAME, "time": _text(assessment.elapsed), "timestamp": assessment.environment.created},
    )
    _properties(
        suite,
        {
            "model": assessment.model.name,
            "data": assessment.data.name,
            "clean_accuracy": assessment.clean_accuracy,
            "norm": assessment.settings.norm,
            "preset": assessment.settings.preset,
            "schema_version": assessment.schema_version,
        },
    )
    return suite


def _count(suite: ET.Element) -> None:
    cases = suite.findall("testcase")
    suite.set("tests", str(len(cases)))
    suite.set("failures", str(sum(case.find("failure") is not None for case in cases)))
    suite.set("errors", "0")
    suite.set("skipped", str(sum(case.find("skipped") is not None for case in cases)))


def _case(classname: str, name: str, time: float = 0.0) -> ET.Element:
    return ET.Element("testcase", {"classname": f"{SUITE_NAME}.{classname}", "name": name, "time": _text(time)})


def _threshold_case(threshold: Threshold) -> ET.Element:
    where = "" if threshold.eps is None else f" at eps={threshold.eps:g}"
    case = _case("thresholds", f"{threshold.metric}{where} >= {threshold.required:g}")
    if not threshold.passed:
        message = describe_threshold(threshold)
        ET.SubElement(case, "failure", {"type": "ThresholdMissed", "message": message}).text = message
    return case


def _finding_case(finding: Finding) -> ET.Element:
    case = _case("findings", f"{finding.check} ({finding.severity})")
    text = finding.message + "".join(f"\n{key}: {value}" for key, value in finding.details.items())
    if finding.severity == "error":
        failure = ET.SubElement(case, "failure", {"type": "UntrustworthyEvaluation", "message": finding.message})
        failure.text = text
    elif finding.severity == "warning":
        ET.SubElement(case, "skipped", {"message": f"warning: {finding.message}"}).text = text
    else:
        ET.SubElement(case, "system-out").text = text
    return case


def _run_case(run: AttackRun) -> ET.Element:
    case = _case("attacks", f"{run.attack} {run.norm} eps={run.eps:g}", run.elapsed)
    figures: dict[str, object] = {
        "robust_accuracy": run.robust_accuracy,
        "success_rate": run.success_rate,
        "median_distance": run.median_distance,
        "queries_median": run.queries_median,
        "queries_max": run.queries_max,
        "gradients_total": run.gradients_total,
        "elapsed": run.elapsed,
        "n_examples": run.n_examples,
    }
    _properties(case, figures | {f"config.{key}": value for key, value in run.config.items()})
    return case


def _universal_case(run: UniversalRun) -> ET.Element:
    case = _case("universal", run.attack, run.elapsed)
    figures: dict[str, object] = {
        "holdout_success": run.holdout_success,
        "holdout_target_success": run.holdout_target_success,
        "baseline_success": run.baseline_success,
        "train_success": run.train_success,
        "n_train": run.n_train,
        "n_holdout": run.n_holdout,
        "queries": run.queries,
        "gradients": run.gradients,
        "png": run.png,
    }
    _properties(case, figures | {f"config.{key}": value for key, value in run.config.items()})
    return case


def _properties(parent: ET.Element, values: Mapping[str, object]) -> None:
    properties = ET.SubElement(parent, "properties")
    for name, value in values.items():
        ET.SubElement(properties, "property", {"name": name, "value": _text(value)})


def _text(value: object) -> str:
    """An attribute value: text as is, ``None`` as empty, anything else as JSON (``0.1``, ``true``)."""
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, default=str)
