"""Registration failover: SRV order (RFC 2782), RFC 5626-style backoff, target rotation."""

from __future__ import annotations

import random
from collections import Counter

from simulator.srv_failover import Backoff, Failover, Target, order

EAST = Target(10, 100, 5060, "dc-east", "10.0.0.10")
WEST = Target(20, 100, 5060, "dc-west", "10.0.0.11")


def test_lower_priority_value_first():
    for seed in range(20):
        assert order([WEST, EAST], random.Random(seed)) == [EAST, WEST]


def test_weights_share_one_priority():
    a, b = Target(10, 300, 5060, "a", "1"), Target(10, 100, 5060, "b", "2")
    firsts = Counter(order([a, b], random.Random(seed))[0].host for seed in range(2000))
    assert abs(firsts["a"] / 2000 - 0.75) < 0.05


def test_backoff_doubles_is_capped_and_randomised_between_half_and_full():
    backoff, rng = Backoff(base_s=2, max_s=60), random.Random(1)
    for failures, ceiling in ((0, 2), (1, 4), (2, 8), (5, 60), (10, 60)):
        waits = [backoff.wait(failures, rng) for _ in range(300)]
        assert 0.5 * ceiling <= min(waits) and max(waits) <= ceiling
        assert max(waits) - min(waits) > 0.3 * ceiling  # spread: not a whole site in one second


def test_failure_moves_to_the_next_target_and_success_resets():
    f = Failover([EAST, WEST], Backoff(2, 60), random.Random(1))
    assert f.current == EAST
    target, wait = f.failed()
    assert target == WEST and 1 <= wait <= 2
    target, wait = f.failed()
    assert target == EAST and 2 <= wait <= 4
    f.succeeded()
    assert f.failures == 0
    assert f.history == ["dc-west", "dc-east"]
