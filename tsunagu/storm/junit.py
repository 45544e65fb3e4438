"""SLA gate results as JUnit XML, so CI (Jenkins, GitLab) shows each gate as a test case.

The layout keeps to the JUnit schema Jenkins validates reports with (junit-4.xsd from
Jenkins' dtkit, which GitLab reads too): <testsuites> holding one <testsuite> with
tests/failures/errors counts, one <testcase> per gate, a <failure> for a breach. That
schema allows <properties> only on the suite, so each gate's figures are suite
properties named after the gate (`post-dial-delay.measured`) and, for people reading
one test case, its <system-out>.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from .sla import GateResult


def _figures(r: GateResult) -> dict[str, str]:
    figures = {"metric": r.metric, "measured": r.measured_text, "threshold": r.threshold_text,
               "samples": str(r.samples)}
    if r.source:
        figures["source"] = r.source
    return figures


def junit_tree(results: list[GateResult], suite_name: str, timestamp: str | None = None) -> ET.ElementTree:
    failures = str(sum(not r.passed for r in results))
    counts = {"tests": str(len(results)), "failures": failures, "errors": "0", "time": "0"}
    root = ET.Element("testsuites", {"name": suite_name, **counts})
    suite = ET.SubElement(root, "testsuite", {"name": suite_name, **counts, "skipped": "0"})
    if timestamp:
        suite.set("timestamp", timestamp)
    if results:  # the schema wants at least one <property> in a <properties>
        props = ET.SubElement(suite, "properties")
        for r in results:
            for key, value in _figures(r).items():
                ET.SubElement(props, "property", {"name": f"{r.name}.{key}", "value": value})
    for r in results:
        case = ET.SubElement(suite, "testcase", {"classname": suite_name, "name": r.name, "time": "0"})
        if not r.passed:
            failure = ET.SubElement(case, "failure", {"message": r.message, "type": "SLABreach"})
            failure.text = f"{r.metric}: {r.message} (threshold {r.threshold_text})"
        ET.SubElement(case, "system-out").text = "\n".join(f"{k}: {v}" for k, v in _figures(r).items())
    ET.indent(root)
    return ET.ElementTree(root)


def write_junit(results: list[GateResult], path: str | Path, suite_name: str = "sla",
                timestamp: str | None = None) -> Path:
    """Write the gates as JUnit XML; `timestamp` (ISO 8601) is left out when None, for repeatable files."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    junit_tree(results, suite_name, timestamp).write(path, encoding="utf-8", xml_declaration=True)
    return path
