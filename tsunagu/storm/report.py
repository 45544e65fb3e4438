"""The call-storm report: one self-contained HTML file a vendor can hand to a city.

Everything is inline (CSS, SVG plots drawn by matplotlib), so the file can be mailed or
archived as CI output and still open years later without a network. Plots label hunt
groups by id only: matplotlib's fonts may lack Japanese glyphs, and the tables beside
them give each id its name. Output is a pure function of the inputs (no dates, fixed
SVG ids), so two reports of the same run compare equal.

Run as `python -m tsunagu.storm.report METRICS.json --sla SLA --estate ESTATE --out DIR`
to (re)judge a run's metrics: writes DIR/gates.xml and DIR/report.html, prints the gate
table, exits 1 on any breach and 2 on an invalid SLA or estate file.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import re
import sys
from datetime import UTC, datetime
from html import escape
from pathlib import Path

from matplotlib import rc_context
from matplotlib.figure import Figure

from ..problems import EstateInvalid
from .generator import MACHINE_LIMIT
from .histogram import Histogram
from .junit import write_junit
from .sla import DEFAULT_SLA, GateResult, evaluate, format_number, format_value, load_sla, with_estate

KINDS = ("citizen", "staff", "outbound")
LATENCIES = (("pbx_processing_ms", "PBX processing"), ("first_alert_ms", "first member alerted"),
             ("fork_spread_ms", "fork spread"), ("time_to_answer_ms", "time to answer"))
# Fixed SVG ids and no date: the same metrics always give the same bytes.
_SVG_RC = {"svg.hashsalt": "tsunagu", "svg.fonttype": "none", "font.size": 9, "axes.grid": True,
           "grid.alpha": 0.3}
_CDF_QUANTILES = [q / 2 for q in range(0, 200)] + [99.5, 99.9, 100]


# --- the page ---------------------------------------------------------------------------
def write_report(path: str | Path, metrics: dict, results: list[GateResult], run: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(metrics, results, run), encoding="utf-8")
    return path


def render(metrics: dict, results: list[GateResult], run: dict) -> str:
    title = f"Call storm: {run.get('estate', '')} {run.get('scenario', '')}".strip()
    body = [
        f"<h1>{escape(title)}</h1>",
        _verdict(metrics, results),
        _section("Run", _run_table(run)),
        _section("SLA gates", _gate_table(results)),
        _section("RFC 6076 metrics", _rfc6076_tables(metrics)),
        _section("Hunt groups", _group_tables(metrics)),
        _section("Latency distributions per hunt group", _plot(_latency_plot, metrics)),
        _section("Throughput and success over time", _plot(_timeline_plot, metrics)),
        _section("Registration storm", _plot(_registration_plot, metrics)),
        _section("Measured against Erlang C", _plot(_erlang_plot, metrics)),
        _section("Load generator", _generator_table(metrics) + _plot(_generator_plot, metrics)),
    ]
    return (f'<!DOCTYPE html>\n<html lang="ja">\n<head>\n<meta charset="utf-8">\n<title>{escape(title)}</title>\n'
            f"<style>{_CSS}</style>\n</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n")


_CSS = """
body { font-family: system-ui, "Hiragino Sans", "Noto Sans CJK JP", "Yu Gothic", sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f2f2f2; } td.text, th.text { text-align: left; }
.verdict { font-size: 1.4em; padding: 0.6em 1em; border-radius: 4px; }
.passed { background: #e3f4e1; color: #17601a; } .failed { background: #fbe4e1; color: #8c1d12; }
.invalid { background: #fff3cd; color: #7a5b00; padding: 0.4em 1em; }
td.passed, td.failed { font-weight: bold; text-align: center; }
svg { max-width: 100%; height: auto; }
""".strip()


def _section(title: str, content: str) -> str:
    return f"<section>\n<h2>{escape(title)}</h2>\n{content}\n</section>"


def _verdict(metrics: dict, results: list[GateResult]) -> str:
    breached = [r.name for r in results if not r.passed]
    breaches = len(breached)
    if breaches:
        text = f"FAILED: {breaches} of {len(results)} gate{'s' * (len(results) != 1)} breached ({', '.join(breached)})"
    else:
        text = f"PASSED: all {len(results)} gate{'s' * (len(results) != 1)} met"
    out = f'<p class="verdict {"failed" if breaches else "passed"}">{escape(text)}</p>'
    generator = metrics.get("generator") or {}
    if generator.get("saturated"):
        reason = escape(str(generator.get("reason") or "no reason given"))
        out += (f'\n<p class="invalid">Run invalid: the load generator saturated ({reason}); '
                "its figures say nothing about the PBX.</p>")
    return out


def _table(header: list[str], rows: list[list[str]], text_columns: int = 1, raw: bool = False) -> str:
    """A table; the first `text_columns` columns are left-aligned text. Cells are escaped unless raw."""
    def cell(tag: str, i: int, value: str) -> str:
        cls = ' class="text"' if i < text_columns else ""
        return f"<{tag}{cls}>{value if raw else escape(value)}</{tag}>"

    head = "<tr>" + "".join(cell("th", i, h) for i, h in enumerate(header)) + "</tr>"
    body = ["<tr>" + "".join(cell("td", i, v) for i, v in enumerate(row)) + "</tr>" for row in rows]
    return "<table>\n" + "\n".join([head, *body]) + "\n</table>"


# --- tables -----------------------------------------------------------------------------
_RUN_FACTS = (("estate", "estate"), ("scenario", "scenario"), ("started", "started"), ("ended", "ended"),
              ("command", "command line"), ("machine", "machine"), ("generator_cpu", "generator CPU"),
              ("lab_dir", "lab output"), ("locust_csv", "Locust CSV"))


def _run_table(run: dict) -> str:
    known = dict(_RUN_FACTS)
    keys = [k for k, _ in _RUN_FACTS if k in run] + [k for k in run if k not in known]
    rows = [[known.get(k, k), _when(run[k]) if k in ("started", "ended") else _fact(run[k])] for k in keys]
    return _table(["fact", "value"], rows, text_columns=2)


def _when(value: object) -> str:
    if isinstance(value, (int, float)):  # wall-clock seconds, as the metrics' window has them
        return datetime.fromtimestamp(value, UTC).isoformat(timespec="seconds")
    return str(value)


def _fact(value: object) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_fact(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return " ".join(_fact(v) for v in value)
    return str(value)


def _gate_table(results: list[GateResult]) -> str:
    rows = [["passed" if r.passed else "FAILED", r.name, r.metric, r.measured_text, r.threshold_text,
             str(r.samples), r.message, r.source or ""] for r in results]
    table = _table(["result", "gate", "metric", "measured", "threshold", "samples", "message", "source"], rows,
                   text_columns=3)
    # Colour the result cells; the words are ours, so marking them up after escaping is safe.
    table = table.replace('<td class="text">passed</td>', '<td class="passed">passed</td>')
    return table.replace('<td class="text">FAILED</td>', '<td class="failed">FAILED</td>')


def gate_table(results: list[GateResult]) -> str:
    """The gates as plain text, for the terminal."""
    rows = [("result", "gate", "measured", "threshold", "samples", "message")]
    rows += [("ok" if r.passed else "FAILED", r.name, r.measured_text, r.threshold_text, str(r.samples), r.message)
             for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[-1]
                     for row in rows)


_SESSION_ROWS = (
    ("session attempts", "attempts", None), ("connected", "connected", None),
    ("SER (§4.6)", "ser_percent", None), ("SEER (§4.7)", "seer_percent", None),
    ("ISA (§4.8)", "isa_percent", None), ("SCR (§4.9)", "scr_percent", None),
    ("SRD success p50 (§4.3.1)", "srd_success_ms", "p50"), ("SRD success p95", "srd_success_ms", "p95"),
    ("SRD success p99", "srd_success_ms", "p99"), ("SRD failure p95 (§4.3.2)", "srd_failure_ms", "p95"),
    ("SDD p95 (§4.4)", "sdd_ms", "p95"), ("SDT mean (§4.5)", "sdt_s", "mean"),
)


def _rfc6076_tables(metrics: dict) -> str:
    sessions = metrics.get("sessions") or {}
    by_kind = sessions.get("by_kind") or {}
    columns = [("overall", sessions)] + [(k, by_kind[k]) for k in KINDS if k in by_kind]
    rows = []
    for label, key, field in _SESSION_ROWS:
        path = f"sessions.{key}" + (f".{field}" if field else "")
        rows.append([label] + [format_value(_figure(section, key, field), path) for _, section in columns])
    sessions_table = _table(["metric"] + [name for name, _ in columns], rows)
    reg = metrics.get("registration") or {}
    rrd = reg.get("rrd_ms") or {}
    reg_rows = [["REGISTER attempts", format_value(reg.get("attempts"), "registration.attempts")],
                ["successful", format_value(reg.get("successes"), "registration.successes")],
                ["IRA (§4.2)", format_value(reg.get("ira_percent"), "registration.ira_percent")]]
    reg_rows += [[f"RRD {q} (§4.1)", format_value(rrd.get(q), f"registration.rrd_ms.{q}")]
                 for q in ("p50", "p95", "p99")]
    return sessions_table + "\n<h3>Registration</h3>\n" + _table(["metric", "value"], reg_rows)


def _figure(section: dict, key: str, field: str | None):
    value = section.get(key)
    if field is None:
        return value
    return value.get(field) if isinstance(value, dict) else None


def _group_tables(metrics: dict) -> str:
    groups = metrics.get("groups") or {}
    overall = metrics.get("hunt_overall") or {}
    traffic_header = ["group", "name", "strategy", "members", "offered", "answered", "overflowed", "abandoned",
                      "failed", "answer rate", "target", "overflow rate", "abandoned rate",
                      "Erlang C erlangs", "service level predicted", "service level measured",
                      "ASA predicted", "ASA measured"]
    rows = [_traffic_row(gid, g) for gid, g in groups.items()]
    rows.append(_traffic_row("(all groups)", overall))
    traffic = _table(traffic_header, rows, text_columns=3)
    latency_header = ["group"] + [f"{label} {q}" for _, label in LATENCIES for q in ("p50", "p95", "p99")]
    latency_rows = [[gid] + [format_number(_figure(g, key, q)) for key, _ in LATENCIES for q in ("p50", "p95", "p99")]
                    for gid, g in [*groups.items(), ("(all groups)", overall)]]
    note = ("<p>Service level is the share of calls answered within the Erlang C window t; "
            "ASA the average speed of answer. Latencies below are in milliseconds.</p>")
    return traffic + "\n" + note + "\n" + _table(latency_header, latency_rows)


def _traffic_row(gid: str, g: dict) -> list[str]:
    erlang = g.get("erlang_c") or {}
    window = erlang.get("t_s")
    within = f" (≤ {format_number(window)} s)" if window is not None else ""

    def pct(value):
        return format_value(value, "groups.*.answer_rate")

    return [gid, str(g.get("name", "")), str(g.get("strategy", "")), str(g.get("members", "")),
            *(str(g.get(k, "")) for k in ("offered", "answered", "overflowed", "abandoned", "failed")),
            pct(g.get("answer_rate")), pct(g.get("answer_rate_target")), pct(g.get("overflow_rate")),
            pct(g.get("abandoned_rate")), format_number(erlang.get("offered_erlangs")),
            pct(erlang.get("predicted_service_level")) + within if erlang else "—",
            pct(erlang.get("measured_service_level")) if erlang else "—",
            format_value(erlang.get("predicted_asa_s"), "groups.*.erlang_c.predicted_asa_s"),
            format_value(erlang.get("measured_asa_s"), "groups.*.erlang_c.measured_asa_s")]


def _generator_table(metrics: dict) -> str:
    gen = metrics.get("generator") or {}
    rows = [["cores", str(gen.get("cores", "—"))],
            ["CPU mean (% of one core, all generator processes)", format_number(gen.get("cpu_percent_mean"))],
            ["CPU peak", format_number(gen.get("cpu_percent_peak"))],
            ["busiest process, worst window (% of a core)", format_number(gen.get("busiest_process_percent"))],
            ["machine busy, mean (%)", format_number(gen.get("machine_percent_mean"))],
            ["SIP retransmissions", str(gen.get("retransmissions", "—"))],
            ["calls refused for want of a call slot", str(gen.get("refused", "—"))],
            ["saturated", format_value(gen.get("saturated"), "generator.saturated")],
            ["why", str(gen.get("reason") or "")]]
    return _table(["generator", "value"], rows, text_columns=1)


# --- plots ------------------------------------------------------------------------------
def _plot(draw, metrics: dict) -> str:
    with rc_context(_SVG_RC):
        figure = Figure(figsize=(9, 4.5), layout="constrained")
        draw(figure, metrics)
        out = io.StringIO()
        figure.savefig(out, format="svg", metadata={"Date": None, "Creator": None})
    return _inline(out.getvalue())


def _inline(svg: str) -> str:
    """SVG as it goes into HTML: no XML prolog, no RDF metadata, no namespace URLs.

    HTML's parser puts <svg> and its xlink:href attributes in their namespaces itself, so the
    page needs no URL at all, which is what shows at a glance it loads nothing from elsewhere.
    """
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r"\s*<metadata>.*?</metadata>", "", svg, flags=re.S)
    return re.sub(r'\s+xmlns(:xlink)?="[^"]*"', "", svg)


def _nothing(axes, what: str) -> None:
    axes.text(0.5, 0.5, f"no {what} in this run", ha="center", va="center", transform=axes.transAxes)
    axes.set_xticks([])
    axes.set_yticks([])


def _cdf(summary: dict) -> tuple[list[float], list[float]]:
    """(values, cumulative share) of a Summary, from its histogram when it has one."""
    if not isinstance(summary, dict) or not summary.get("count"):
        return [], []
    try:
        hist = Histogram.from_dict(summary["histogram"])
        values = hist.percentiles(*_CDF_QUANTILES)
        return values, [q / 100 for q in _CDF_QUANTILES]
    except (KeyError, TypeError, ValueError):  # no usable histogram: the quantiles the summary has
        points = [(summary.get(k), q) for k, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99), ("max", 1.0))]
        points = [(v, q) for v, q in points if v is not None]
        return [v for v, _ in points], [q for _, q in points]


_STYLES = ("-", "--", ":", "-.")


def _latency_plot(figure: Figure, metrics: dict) -> None:
    figure.set_size_inches(10, 6.5)
    groups = metrics.get("groups") or {}
    axes = figure.subplots(2, 2).flatten()
    colours = [f"C{i}" for i in range(10)]
    for ax, (key, label) in zip(axes, LATENCIES, strict=True):
        ax.set_title(f"{label} (ms)")
        drawn = 0
        for i, (gid, g) in enumerate(groups.items()):
            xs, ys = _cdf(g.get(key))
            if xs:
                ax.step(xs, ys, where="post", label=gid, color=colours[i % 10], linestyle=_STYLES[i // 10 % 4])
                drawn += 1
        if not drawn:
            _nothing(ax, "samples")
            continue
        ax.set_xscale("symlog", linthresh=1)  # fork spread is 0 for one-member groups
        ax.set_ylabel("share of calls")
        ax.set_ylim(0, 1.02)
    handles, labels = [], []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    if handles:
        figure.legend(handles, labels, loc="outside right upper", fontsize=7, ncols=1 + len(labels) // 25)


def _timeline_plot(figure: Figure, metrics: dict) -> None:
    timeline = metrics.get("timeline") or []
    calls, regs = figure.subplots(2, 1, sharex=True)
    if not timeline:
        _nothing(calls, "timeline")
        _nothing(regs, "timeline")
        return
    seconds = [row.get("second", i) for i, row in enumerate(timeline)]
    for ax, keys, title in ((calls, ("attempts", "connected", "failed"), "calls per second"),
                            (regs, ("registered", "register_failed"), "registrations per second")):
        for key in keys:
            ax.plot(seconds, [row.get(key, 0) for row in timeline], label=key.replace("_", " "))
        ax.set_title(title)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    regs.set_xlabel("seconds since start")


def _registration_plot(figure: Figure, metrics: dict) -> None:
    reg = metrics.get("registration") or {}
    curve = reg.get("curve") or []
    ax = figure.subplots()
    if not curve:
        _nothing(ax, "registration storm")
        return
    ax.step([p[0] for p in curve], [p[1] for p in curve], where="post")
    ax.set_xlabel("seconds since start")
    ax.set_ylabel("handsets registered")
    ax.set_title(f"{reg.get('successes', '?')} of {reg.get('attempts', '?')} REGISTERs succeeded")


def _erlang_plot(figure: Figure, metrics: dict) -> None:
    groups = {gid: g["erlang_c"] for gid, g in (metrics.get("groups") or {}).items() if g.get("erlang_c")}
    level, asa = figure.subplots(2, 1, sharex=True)
    if not groups:
        _nothing(level, "Erlang C prediction")
        _nothing(asa, "Erlang C prediction")
        return
    figure.set_size_inches(max(9, 0.35 * len(groups) + 2), 6)
    x = list(range(len(groups)))
    for ax, key, title, scale in ((level, "service_level", "service level (%)", 100),
                                  (asa, "asa_s", "average speed of answer (s)", 1)):
        for offset, kind in ((-0.2, "predicted"), (0.2, "measured")):
            # A figure that could not be computed (no calls, an unstable queue) leaves a gap, not a 0.
            values = [math.nan if e.get(f"{kind}_{key}") is None else e[f"{kind}_{key}"] * scale
                      for e in groups.values()]
            label = "predicted (Erlang C)" if kind == "predicted" else kind
            ax.bar([i + offset for i in x], values, width=0.4, label=label)
        ax.set_title(title)
        ax.set_ylim(bottom=0)
    level.set_ylim(0, 105)
    level.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    asa.set_xticks(x, list(groups), rotation=60, ha="right", fontsize=7)


def _generator_plot(figure: Figure, metrics: dict) -> None:
    figure.set_size_inches(9, 3)
    gen = metrics.get("generator") or {}
    timeline = gen.get("timeline") or []  # [seconds, generator % of one core, machine busy %]
    ax = figure.subplots()
    if not timeline:
        _nothing(ax, "generator CPU samples")
        return
    seconds = [row[0] for row in timeline]
    ax.plot(seconds, [row[1] for row in timeline], label="generator (% of one core)")
    ax.plot(seconds, [row[2] for row in timeline], label="machine busy (%)")
    ax.axhline(100 * MACHINE_LIMIT, color="C3", linestyle=":", label="machine saturation")
    ax.set_ylim(bottom=0)
    ax.set_xlabel("seconds since start")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)


# --- command line -----------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tsunagu.storm.report",
                                     description="Judge a call storm's metrics against an SLA and write "
                                                 "DIR/gates.xml (JUnit) and DIR/report.html.")
    parser.add_argument("metrics", help="metrics JSON written by the storm")
    parser.add_argument("--sla", default=str(DEFAULT_SLA), help="SLA file (default: loadtests/sla.yaml)")
    parser.add_argument("--estate", help="estate the run rehearsed: group names and answer-rate targets")
    parser.add_argument("--run", help="JSON of run facts (estate, scenario, command, machine, ...)")
    parser.add_argument("--out", required=True, help="folder for gates.xml and report.html")
    args = parser.parse_args(argv)

    try:
        sla = load_sla(args.sla)
    except EstateInvalid as exc:
        return _invalid(args.sla, exc)
    try:
        metrics = json.loads(Path(args.metrics).read_text(encoding="utf-8"))
        run = json.loads(Path(args.run).read_text(encoding="utf-8")) if args.run else {}
    except (OSError, ValueError) as exc:
        print(f"{exc.filename if isinstance(exc, OSError) else args.metrics}: cannot read: {exc}", file=sys.stderr)
        return 2
    if args.estate:
        from ..cli import load_or_exit

        estate = load_or_exit(args.estate)
        metrics = with_estate(metrics, estate)
        run.setdefault("estate", estate.municipality.name)
    window = metrics.get("window") or {}
    run.setdefault("started", window.get("start_wall"))
    run.setdefault("ended", window.get("end_wall"))
    given = argv if argv is not None else sys.argv[1:]
    run.setdefault("command", " ".join(["python -m tsunagu.storm.report", *given]))
    run = {k: v for k, v in run.items() if v is not None}

    results = evaluate(sla, metrics)
    out = Path(args.out)
    write_junit(results, out / "gates.xml", sla.name)
    report = write_report(out / "report.html", metrics, results, run)
    print(gate_table(results))
    breaches = sum(not r.passed for r in results)
    print(f"{breaches} of {len(results)} gates breached; report: {report}" if breaches
          else f"all {len(results)} gates met; report: {report}")
    return 1 if breaches else 0


def _invalid(file: str, exc: EstateInvalid) -> int:
    for problem in exc.problems:
        print(problem, file=sys.stderr)
    n = len(exc.problems)
    print(f"{file}: {n} problem{'s' * (n != 1)}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
