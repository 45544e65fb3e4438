"""Erlang C: what a hunt group's members and offered load predict for its callers.

The M/M/N queue behind it: calls arrive at random (Poisson) at A erlangs of offered load
(arrival rate x average handling time), N agents serve them, and a caller who finds every
agent busy waits until one is free. A hunt group does not queue callers (it rings, then
overflows), so the prediction is the capacity a group's staffing could give at best,
shown beside what the rehearsal measured.

Erlang C is computed from Erlang B by the recurrence B(0) = 1,
B(n) = A*B(n-1) / (n + A*B(n-1)), then C = N*B / (N - A*(1 - B)): no factorials or powers,
so it stays finite for thousands of agents where the textbook sum overflows.
"""

from __future__ import annotations

import math


def erlang_b(agents: int, erlangs: float) -> float:
    """Probability that a call finding N busy lines is lost (Erlang B, blocked calls cleared)."""
    _check(agents, erlangs)
    b = 1.0
    for n in range(1, agents + 1):
        b = erlangs * b / (n + erlangs * b)
    return b


def erlang_c(agents: int, erlangs: float) -> float:
    """Probability that a call has to wait; 1.0 when the load reaches the agents (A >= N)."""
    _check(agents, erlangs)
    if erlangs >= agents:
        return 1.0
    if erlangs == 0:
        return 0.0
    b = erlang_b(agents, erlangs)
    return agents * b / (agents - erlangs * (1 - b))


def service_level(agents: int, erlangs: float, aht_s: float, t_s: float) -> float:
    """Fraction of calls answered within t_s seconds: 1 - C * exp(-(N - A) * t / AHT); 0 when unstable."""
    c = erlang_c(agents, erlangs)
    if erlangs >= agents:
        return 0.0
    return 1.0 - c * math.exp(-(agents - erlangs) * t_s / aht_s)


def asa_s(agents: int, erlangs: float, aht_s: float) -> float:
    """Average speed of answer over all calls, seconds: C * AHT / (N - A); inf when unstable."""
    if erlangs >= agents:
        return math.inf
    return erlang_c(agents, erlangs) * aht_s / (agents - erlangs)


def _check(agents: int, erlangs: float) -> None:
    if agents < 0 or erlangs < 0:
        raise ValueError(f"agents ({agents}) and erlangs ({erlangs}) must be >= 0")
