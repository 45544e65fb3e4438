"""SLA gates: thresholds a call storm's metrics must meet, read from a YAML file.

A gate names one figure of the metrics dict (`tsunagu.storm.metrics.compute`) by a dotted
path, `*` standing for every key of a map (`groups.*.answer_rate`: one gate per hunt
group), and compares it with exactly one of `min`, `max` or `equals`. `min: target`
compares with the figure's `_target` sibling (a group's own `answer_rate_target` from the
estate). A gate with fewer samples than `min_samples` (default 1) fails: a figure nobody
measured must never pass a release.

Samples are the count of a distribution (`...srd_success_ms.p95` -> `srd_success_ms.count`)
or, for any other figure, the attempts (or offered calls) of the section holding it;
sections without such a counter (generator, window) count one sample when the figure
is there. The file is checked like an estate: every problem as FILE:LINE: path: message.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from pathlib import Path as FsPath
from typing import Annotated, Any, Literal

from pydantic import Field, PlainValidator, StrictBool, StrictInt, ValidationError, model_validator

from ..estate import _from_pydantic
from ..model import Strict
from ..problems import EstateInvalid, Path
from ..source import load_yaml

DEFAULT_SLA = FsPath(__file__).resolve().parent.parent.parent / "loadtests" / "sla.yaml"

# --- the figures a gate may name --------------------------------------------------------
# METRICS mirrors what metrics.compute and generator.verdict write (a test holds them in
# step), so a misspelt metric is caught when the file is read, not after a long storm.
# Kinds of leaf: what a threshold on it may be, and how it is shown.
COUNT, NUMBER, PERCENT, FRACTION, BOOL = "count", "number", "percent", "fraction", "bool"
SUMMARY_FIELDS = {"count": COUNT, "mean": NUMBER, "p50": NUMBER, "p95": NUMBER, "p99": NUMBER, "max": NUMBER}


class _Each:
    """A map whose keys are ids (hunt groups, call kinds): `*` or any one key."""

    def __init__(self, entry: dict, keys: tuple[str, ...] | None = None):
        self.entry, self.keys = entry, keys


_SESSIONS: dict[str, Any] = {
    **dict.fromkeys(("attempts", "redirected", "connected", "effective", "ineffective", "completed", "unresolved"),
                    COUNT),
    **dict.fromkeys(("ser_percent", "seer_percent", "isa_percent", "scr_percent"), PERCENT),
    **dict.fromkeys(("srd_success_ms", "srd_failure_ms", "sdd_ms", "sdt_s"), SUMMARY_FIELDS),
}
_HUNT: dict[str, Any] = {
    **dict.fromkeys(("offered", "answered", "overflowed", "abandoned", "failed"), COUNT),
    **dict.fromkeys(("answer_rate", "overflow_rate", "abandoned_rate"), FRACTION),
    **dict.fromkeys(("pbx_processing_ms", "first_alert_ms", "fork_spread_ms", "time_to_answer_ms",
                     "srd_success_ms"), SUMMARY_FIELDS),
}
_ERLANG_C = {"agents": COUNT, "offered_erlangs": NUMBER, "aht_s": NUMBER, "t_s": NUMBER,
             "predicted_service_level": FRACTION, "predicted_asa_s": NUMBER,
             "measured_service_level": FRACTION, "measured_asa_s": NUMBER}
METRICS: dict[str, Any] = {
    "window": {"start_wall": NUMBER, "end_wall": NUMBER, "seconds": NUMBER},
    "registration": {"attempts": COUNT, "successes": COUNT, "ineffective": COUNT, "ira_percent": PERCENT,
                     "rrd_ms": SUMMARY_FIELDS},
    "sessions": {**_SESSIONS, "by_kind": _Each(_SESSIONS, ("citizen", "staff", "outbound"))},
    "groups": _Each({**_HUNT, "members": COUNT, "answer_rate_target": FRACTION, "erlang_c": _ERLANG_C}),
    "hunt_overall": _HUNT,
    # CPU figures are % of one core summed over the generator's processes, so may pass 100.
    "generator": {"cores": COUNT, "cpu_percent_mean": NUMBER, "cpu_percent_peak": NUMBER,
                  "busiest_process_percent": PERCENT, "machine_percent_mean": PERCENT,
                  "retransmissions": COUNT, "refused": COUNT, "saturated": BOOL},
}
_SAMPLE_COUNTERS = ("attempts", "offered")  # what a section's non-distribution figures are counted by


def metric_kind(metric: str) -> str | None:
    """The kind of leaf a dotted path names (COUNT, NUMBER, ...), None when it names no leaf."""
    node, _ = _resolve(metric.split("."))
    return node if isinstance(node, str) else None


def _resolve(parts: list[str]) -> tuple[Any, dict | None]:
    """(node the path leads to, the dict holding it); node None when a part is unknown."""
    node: Any = METRICS
    parent = None
    for part in parts:
        if isinstance(node, _Each):
            if part != "*" and node.keys is not None and part not in node.keys:
                return None, None
            node = node.entry
        elif isinstance(node, dict) and part in node:
            parent, node = node, node[part]
        else:
            return None, None
    return node, parent


def _known_paths(node: Any = METRICS, prefix: str = "") -> list[str]:
    if isinstance(node, _Each):
        return _known_paths(node.entry, prefix + "*.")
    if isinstance(node, dict):
        return [p for key, sub in node.items() for p in _known_paths(sub, f"{prefix}{key}.")]
    return [prefix.rstrip(".")]


# --- the file ---------------------------------------------------------------------------
def _threshold(value: object) -> float | str:
    if value == "target" or (isinstance(value, (int, float)) and not isinstance(value, bool)
                             and math.isfinite(value)):
        return value
    raise ValueError(f"{value!r} is neither a number nor 'target' (the figure's own target from the estate)")


COMPARISONS = ("min", "max", "equals")
Threshold = Annotated[float | Literal["target"], PlainValidator(_threshold)]


class Gate(Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,60}$")
    metric: str = Field(min_length=1)
    min: Threshold | None = None
    max: Threshold | None = None
    equals: StrictBool | None = None
    min_samples: StrictInt = Field(default=1, ge=1)
    source: str | None = Field(default=None, description="the standard or figure the threshold comes from")

    @model_validator(mode="after")
    def _one_comparison(self) -> Gate:
        if sum(getattr(self, c) is not None for c in COMPARISONS) != 1:
            raise ValueError("a gate compares its metric with exactly one of min, max or equals")
        return self

    @property
    def comparison(self) -> str:
        return next(c for c in COMPARISONS if getattr(self, c) is not None)


class Sla(Strict):
    name: str = Field(default="sla", min_length=1)
    gates: list[Gate] = Field(min_length=1)


def load_sla(file: str | FsPath = DEFAULT_SLA) -> Sla:
    """Load and check an SLA file; raises EstateInvalid with every problem and its line."""
    data, source = load_yaml(file)
    if not isinstance(data, dict):
        raise EstateInvalid([source.problem((), "an SLA file is a mapping (name:, gates:)")])
    try:
        sla = Sla.model_validate(data)
    except ValidationError as exc:
        problems = [_from_pydantic(err, source, Sla) for err in exc.errors()]
        # Gates that are well-formed on their own still get their meaning checked.
        raw = data.get("gates")
        for i, entry in enumerate(raw if isinstance(raw, list) else []):
            try:
                gate = Gate.model_validate(entry)
            except ValidationError:
                continue
            problems += [source.problem(("gates", i) + path, message) for path, message in check_gate(gate)]
        raise EstateInvalid(problems) from None
    problems = [source.problem(path, message) for path, message in check(sla)]
    if problems:
        raise EstateInvalid(problems)
    return sla


def check(sla: Sla) -> list[tuple[Path, str]]:
    """Rules beyond each field's type: the metric exists, the comparison fits it, names are unique."""
    found: list[tuple[Path, str]] = []
    first: dict[str, int] = {}
    for i, gate in enumerate(sla.gates):
        found += [(("gates", i) + path, message) for path, message in check_gate(gate)]
        if gate.name in first:
            used = f"gate name {gate.name!r} is already used by gates[{first[gate.name]}]"
            found.append((("gates", i, "name"), used))
        first.setdefault(gate.name, i)
    return found


def check_gate(gate: Gate) -> list[tuple[Path, str]]:
    node, parent = _resolve(gate.metric.split("."))
    if node is None:
        close = difflib.get_close_matches(gate.metric, _known_paths(), n=1, cutoff=0.7)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return [(("metric",), f"unknown metric {gate.metric!r}{hint}")]
    if node is SUMMARY_FIELDS:
        return [(("metric",), f"{gate.metric!r} is a distribution: name one of its figures "
                              f"({', '.join(SUMMARY_FIELDS)}), e.g. {gate.metric}.p95")]
    if not isinstance(node, str):
        return [(("metric",), f"{gate.metric!r} is a section, not a figure: name one of its metrics")]
    comparison = gate.comparison
    threshold = getattr(gate, comparison)
    where = (comparison,)
    if (node == BOOL) != (comparison == "equals"):
        return [(where, f"{gate.metric} is true or false: compare it with equals" if node == BOOL
                 else f"{gate.metric} is a number: compare it with min or max, not equals")]
    if threshold == "target":
        leaf = gate.metric.rsplit(".", 1)[-1]
        if f"{leaf}_target" not in parent:
            return [(where, f"'target' is a figure's own target from the estate, and {gate.metric} has none")]
        return []
    if node == PERCENT and not 0 <= threshold <= 100:
        return [(where, f"{gate.metric} is a percentage: {threshold} is outside 0..100")]
    if node == FRACTION and not 0 <= threshold <= 1:
        return [(where, f"{gate.metric} is a fraction from 0 to 1 (write 0.95 for 95 %), not {threshold}")]
    if threshold < 0:
        return [(where, f"{gate.metric} is never negative: {threshold} makes no sense")]
    return []


# --- evaluation -------------------------------------------------------------------------
@dataclass(frozen=True)
class GateResult:
    name: str  # the gate's name, with the group (or kind) in brackets for a `*` gate
    metric: str  # the concrete path: groups.daihyo.answer_rate
    comparison: str  # min | max | equals
    threshold: float | bool | None  # a `target` resolved to the figure's own; None when it has none
    measured: float | bool | None
    samples: int
    passed: bool
    message: str
    from_target: bool = False
    source: str | None = None

    @property
    def threshold_text(self) -> str:
        sign = {"min": "≥", "max": "≤", "equals": "="}[self.comparison]
        suffix = " (target)" if self.from_target else ""
        return f"{sign} {format_value(self.threshold, self.metric)}{suffix}"

    @property
    def measured_text(self) -> str:
        return format_value(self.measured, self.metric)


def evaluate(sla: Sla, metrics: dict, estate=None) -> list[GateResult]:
    """One result per concrete gate, in the SLA file's order (groups in the metrics' order).

    With the estate, each group's `target` is the estate's answer_rate_target, whatever
    the metrics file recorded: re-judging an old run against a revised estate works.
    """
    if estate is not None:
        metrics = with_estate(metrics, estate)
    results = []
    for gate in sla.gates:
        concrete = list(_expand(gate.metric.split("."), metrics))
        if not concrete:  # a `*` over an empty map: still one failing result, never silence
            results.append(_result(gate, gate.metric, gate.name, None, None, 0, False, "no samples"))
        for parts, keys in concrete:
            name = f"{gate.name}[{','.join(keys)}]" if keys else gate.name
            results.append(_judge(gate, parts, name, metrics))
    return results


def with_estate(metrics: dict, estate) -> dict:
    """The metrics with each group's name and answer_rate_target as the estate has them."""
    groups = {g.id: g for g in estate.hunt_groups}
    out = dict(metrics)
    out["groups"] = {gid: ({**g, "name": groups[gid].name, "answer_rate_target": groups[gid].answer_rate_target}
                           if gid in groups else g)
                     for gid, g in (metrics.get("groups") or {}).items()}
    return out


def _expand(parts: list[str], metrics: dict, done: tuple = (), keys: tuple = ()):
    if not parts:
        yield list(done), keys
        return
    head, rest = parts[0], parts[1:]
    if head != "*":
        yield from _expand(rest, metrics, done + (head,), keys)
        return
    node = _lookup(list(done), metrics)
    for key in node if isinstance(node, dict) else ():
        yield from _expand(rest, metrics, done + (key,), keys + (key,))


def _lookup(parts: list[str], metrics: dict) -> Any:
    node: Any = metrics
    for part in parts:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _samples(parts: list[str], metrics: dict, measured: object) -> int:
    _, holder = _resolve(_patterned(".".join(parts)).split("."))
    if holder is SUMMARY_FIELDS:
        summary = _lookup(parts[:-1], metrics)
        return int(summary.get("count") or 0) if isinstance(summary, dict) else 0
    for cut in range(len(parts) - 1, -1, -1):
        section = _lookup(parts[:cut], metrics)
        if isinstance(section, dict):
            for counter in _SAMPLE_COUNTERS:
                if counter in section:
                    return int(section[counter] or 0)
    return 0 if measured is None else 1


def _judge(gate: Gate, parts: list[str], name: str, metrics: dict) -> GateResult:
    metric = ".".join(parts)
    measured = _lookup(parts, metrics)
    samples = _samples(parts, metrics, measured)
    comparison = gate.comparison
    threshold = getattr(gate, comparison)
    from_target = threshold == "target"
    if from_target:
        threshold = _lookup(parts[:-1] + [f"{parts[-1]}_target"], metrics)

    def result(passed: bool, message: str) -> GateResult:
        return _result(gate, metric, name, threshold, measured, samples, passed, message, from_target)

    if measured is None or samples == 0:
        return result(False, "no samples")
    if samples < gate.min_samples:
        return result(False, f"{samples} samples, fewer than the {gate.min_samples} this gate needs")
    if threshold is None:
        return result(False, f"no {parts[-1]}_target to compare with")
    value, limit = format_value(measured, metric), format_value(threshold, metric)
    if comparison == "min":
        passed = measured >= threshold
        message = f"{value} {'≥' if passed else '<'} {limit}"
    elif comparison == "max":
        passed = measured <= threshold
        message = f"{value} {'≤' if passed else '>'} {limit}"
    else:
        passed = measured == threshold
        message = f"{value}, as required" if passed else f"{value}, required {limit}"
    reason = _lookup(parts[:-1] + ["reason"], metrics)
    if not passed and isinstance(reason, str) and reason:  # e.g. why the generator saturated
        message += f": {reason}"
    return result(passed, message)


def _result(gate: Gate, metric, name, threshold, measured, samples, passed, message, from_target=False):
    return GateResult(name=name, metric=metric, comparison=gate.comparison,
                      threshold=None if threshold == "target" else threshold, measured=measured,
                      samples=samples, passed=passed, message=message, from_target=from_target,
                      source=gate.source)


# --- showing figures --------------------------------------------------------------------
def format_value(value: object, metric: str) -> str:
    """A figure with its unit, read from the metric's name: 3.21 ms, 99.95 %, 93.1 % for 0.931."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "true" if value else "false"
    if not isinstance(value, (int, float)):
        return str(value)
    kind = metric_kind(_patterned(metric))
    if kind == FRACTION:
        return f"{_fixed(value * 100, 3)} %"
    if kind == PERCENT:
        return f"{_fixed(value, 3)} %"
    if kind == COUNT:
        return f"{value:g}" if isinstance(value, float) else str(value)
    figure = metric.split(".")
    name = figure[-2] if figure[-1] in SUMMARY_FIELDS and len(figure) > 1 else figure[-1]
    unit = " ms" if name.endswith("_ms") else " s" if name.endswith("_s") else ""
    return format_number(value) + unit


def format_number(value: float | None) -> str:
    """Three significant digits below 100 (3.21, 0.0412), one decimal above (1234.5); '—' for None."""
    if value is None:
        return "—"
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    text = f"{value:.3g}" if abs(value) < 100 else f"{value:.1f}"
    return _trim(f"{value:f}" if "e" in text else text)


def _fixed(value: float, decimals: int) -> str:
    # Percentages keep their decimals: SER 99.899 must not read as 99.9.
    return _trim(f"{value:.{decimals}f}")


def _trim(text: str) -> str:
    return text.rstrip("0").rstrip(".") if "." in text else text


def _patterned(metric: str) -> str:
    """groups.daihyo.answer_rate -> groups.*.answer_rate, so a concrete path finds its kind."""
    parts, node = metric.split("."), METRICS
    out = []
    for part in parts:
        if isinstance(node, _Each):
            out.append("*")
            node = node.entry
            continue
        out.append(part)
        node = node.get(part) if isinstance(node, dict) else None
    return ".".join(out)

