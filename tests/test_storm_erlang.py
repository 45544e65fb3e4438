"""Erlang B and C against textbook values and the closed-form factorial sums."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest

from tsunagu.storm.erlang import asa_s, erlang_b, erlang_c, service_level


def erlang_c_by_factorials(n: int, a: Fraction) -> Fraction:
    """C(N, A) = (A^N/N! * N/(N-A)) / (sum_{k<N} A^k/k! + A^N/N! * N/(N-A)), exactly."""
    top = a**n / math.factorial(n) * Fraction(n) / (n - a)
    return top / (sum(a**k / math.factorial(k) for k in range(n)) + top)


def erlang_b_by_factorials(n: int, a: Fraction) -> Fraction:
    return (a**n / math.factorial(n)) / sum(a**k / math.factorial(k) for k in range(n + 1))


@pytest.mark.parametrize("n", range(1, 31))
@pytest.mark.parametrize("a", [Fraction(1, 10), Fraction(1), Fraction(5, 2), Fraction(7), Fraction(59, 2)])
def test_recurrences_agree_with_the_factorial_sums(n, a):
    assert erlang_b(n, float(a)) == pytest.approx(float(erlang_b_by_factorials(n, a)), rel=1e-12)
    if a < n:
        assert erlang_c(n, float(a)) == pytest.approx(float(erlang_c_by_factorials(n, a)), rel=1e-12)


def test_three_servers_two_erlangs_wait_with_probability_four_ninths():
    # the M/M/3 example of Mathematica's ErlangC documentation: ErlangC[3, 2] = 4/9
    assert erlang_c(3, 2.0) == pytest.approx(4 / 9, rel=1e-15)


def test_call_centre_helper_worked_example():
    # Call Centre Helper, "Erlang C Formula - Made Simple with an Easy Worked Example":
    # 100 calls in 30 minutes, AHT 180 s -> A = 10 erlangs; with 11 agents and a 20 s target,
    # probability of waiting 68.21 %, service level 39.0 %, ASA 122.8 s
    a = 100 / 1800 * 180
    assert erlang_c(11, a) == pytest.approx(0.6821, abs=5e-5)
    assert service_level(11, a, 180, 20) == pytest.approx(0.390, abs=5e-4)
    assert asa_s(11, a, 180) == pytest.approx(122.8, abs=0.05)


def test_erlang_b_table_value():
    # the Erlang B table row for 10 circuits: 5 erlangs are blocked 1.8 % of the time
    assert erlang_b(10, 5.0) == pytest.approx(0.018385, abs=1e-6)


def test_large_groups_stay_finite_where_the_factorial_sum_overflows():
    with pytest.raises(OverflowError):
        float(1950.0**2000)
    c = erlang_c(2000, 1950.0)
    assert 0 < c < 1
    assert 0 < service_level(2000, 1950.0, 180, 20) < 1


def test_an_overloaded_group_always_waits():
    assert erlang_c(5, 5.0) == 1.0 and erlang_c(5, 7.5) == 1.0
    assert service_level(5, 5.0, 120, 20) == 0.0
    assert asa_s(5, 7.5, 120) == math.inf


def test_no_load_never_waits():
    assert erlang_c(4, 0.0) == 0.0
    assert service_level(4, 0.0, 120, 20) == 1.0
    assert asa_s(4, 0.0, 120) == 0.0


def test_service_level_and_asa_follow_their_formulas():
    c = erlang_c(12, 10.0)
    assert service_level(12, 10.0, 180, 20) == pytest.approx(1 - c * math.exp(-2 * 20 / 180), rel=1e-15)
    assert asa_s(12, 10.0, 180) == pytest.approx(c * 180 / 2, rel=1e-15)


def test_negative_inputs_are_refused():
    with pytest.raises(ValueError):
        erlang_c(-1, 1.0)
    with pytest.raises(ValueError):
        erlang_b(3, -0.5)
