"""The storm's outputs: JUnit XML for CI, the one-file HTML report, and the command that writes both."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

import pytest

from tests.test_storm_sla import group, storm_metrics
from tsunagu.storm.junit import write_junit
from tsunagu.storm.report import main, render
from tsunagu.storm.sla import evaluate, load_sla

HOSTILE = '<script>alert("x")</script> & 市民課'


def breached_metrics() -> dict:
    """A storm that misses two gates: PBX processing, and one group's answer rate."""
    metrics = storm_metrics()
    metrics["hunt_overall"]["pbx_processing_ms"]["p95"] = 12.5
    metrics["groups"]["evil"] = group(HOSTILE, 20, 10, 0.9)
    return metrics


@pytest.fixture(scope="module")
def results():
    return evaluate(load_sla(), breached_metrics())


@pytest.fixture(scope="module")
def page(results):
    run = {"estate": "紀の川市", "scenario": "smoke", "command": "tsunagu rehearse --output <runs>",
           "machine": {"cores": 8, "memory": "16 GiB"}, "locust_csv": ["runs/x/locust_stats.csv"]}
    return render(breached_metrics(), results, run)


# Jenkins' JUnit schema (junit-4.xsd, which GitLab reads too), summarised: each element's
# allowed children in their order, and its allowed attributes.
_JUNIT_SCHEMA = {
    "testsuites": (["testsuite"], {"name", "time", "tests", "failures", "disabled", "errors"}),
    "testsuite": (["properties", "testcase", "system-out", "system-err"],
                  {"name", "tests", "failures", "errors", "time", "disabled", "skipped", "timestamp", "hostname",
                   "id", "package"}),
    "properties": (["property"], set()),
    "property": ([], {"name", "value"}),
    "testcase": (["skipped", "error", "failure", "system-out", "system-err"],
                 {"name", "assertions", "time", "classname", "status"}),
    "failure": ([], {"type", "message"}),
    "system-out": ([], set()),
}
_REQUIRED = {"testsuite": {"name", "tests"}, "property": {"name", "value"}, "testcase": {"name"}}


def assert_fits_junit_schema(element: ET.Element) -> None:
    children, attributes = _JUNIT_SCHEMA[element.tag]
    assert set(element.attrib) <= attributes, element.tag
    assert _REQUIRED.get(element.tag, set()) <= set(element.attrib), element.tag
    order = [children.index(child.tag) for child in element]  # ValueError: a child the schema does not allow
    assert order == sorted(order), f"{element.tag}: children out of order"
    for child in element:
        assert_fits_junit_schema(child)


def test_junit_has_one_case_per_gate_and_a_failure_for_each_breach(tmp_path, results):
    path = write_junit(results, tmp_path / "gates.xml", "tsunagu-default-sla")
    root = ET.parse(path).getroot()
    assert_fits_junit_schema(root)
    [suite] = root.findall("testsuite")
    cases = suite.findall("testcase")
    failed = [c.get("name") for c in cases if c.find("failure") is not None]
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("10", "2", "0")
    assert root.get("tests") == "10" and root.get("failures") == "2"
    assert len(cases) == 10
    assert failed == ["pbx-processing-time", "group-answer-rate[evil]"]
    pbx = next(c for c in cases if c.get("name") == "pbx-processing-time")
    assert pbx.find("failure").get("message") == "12.5 ms > 10 ms"
    assert "measured: 12.5 ms" in pbx.find("system-out").text
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["pbx-processing-time.measured"] == "12.5 ms"
    assert props["pbx-processing-time.threshold"] == "≤ 10 ms"
    assert props["pbx-processing-time.samples"] == "150"


def test_junit_of_no_gates_still_fits_the_schema(tmp_path):
    root = ET.parse(write_junit([], tmp_path / "gates.xml")).getroot()
    assert_fits_junit_schema(root)
    assert root.get("tests") == "0"


def test_the_report_is_one_file_that_loads_nothing_from_elsewhere(page):
    assert page.startswith("<!DOCTYPE html>") and '<meta charset="utf-8">' in page
    assert "http://" not in page and "https://" not in page
    assert not re.search(r"<(script|link|img|iframe)\b", page)
    assert not re.search(r"""(src|href)=["'](?!#)""", page)  # only links within the page


def test_the_verdict_comes_first_and_counts_the_breaches(page):
    verdict = re.search(r'<p class="verdict failed">([^<]*)</p>', page)
    assert verdict and "2 of 10 gates breached" in verdict[1]
    assert page.index("verdict") < page.index("<h2>SLA gates</h2>")


def test_the_report_has_a_plot_for_each_figure(page):
    sections = re.findall(r"<h2>([^<]*)</h2>(.*?)</section>", page, re.S)
    plotted = {title for title, body in sections if "<svg" in body}
    assert plotted == {"Latency distributions per hunt group", "Throughput and success over time",
                       "Registration storm", "Measured against Erlang C", "Load generator"}


def test_group_names_are_escaped_and_japanese_ones_kept(page):
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; 市民課" in page
    assert "代表（交換台）" in page


def test_the_command_writes_both_files_and_exits_1_on_a_breach(tmp_path, capsys):
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps(breached_metrics(), ensure_ascii=False), encoding="utf-8")
    out = tmp_path / "out"
    assert main([str(metrics), "--out", str(out)]) == 1
    printed = capsys.readouterr().out
    assert "FAILED  pbx-processing-time" in printed
    assert "2 of 10 gates breached" in printed
    assert ET.parse(out / "gates.xml").getroot().get("failures") == "2"
    assert (out / "report.html").read_text(encoding="utf-8").count("<svg") >= 5


def test_the_command_exits_2_on_an_invalid_sla(tmp_path, capsys):
    sla = tmp_path / "sla.yaml"
    sla.write_text("gates:\n  - name: a\n    metric: sessions.ser\n    min: 99\n", encoding="utf-8")
    assert main([str(tmp_path / "metrics.json"), "--sla", str(sla), "--out", str(tmp_path)]) == 2
    assert f"{sla}:3: gates[0].metric: unknown metric 'sessions.ser'" in capsys.readouterr().err
    assert not (tmp_path / "gates.xml").exists()
