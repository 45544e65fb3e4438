"""A mergeable latency histogram: HDR-style log-linear buckets, exact count, min, max and sum.

Every Locust worker and farm shard keeps its own histograms and the report merges them,
so the bucket a value lands in is a pure function of the value (never of what was
recorded before) and the sum is kept as an integer: merging in any order gives exactly
the histogram one process would have recorded.

Layout (HdrHistogram's, with 128 sub-buckets per power of two): a value v >= 0 is first
quantised to n = round(v * 10**6) units (1 ns when v is in milliseconds). Each n < 256
has a bucket of its own; above that, every range [2**m, 2**(m+1)) is cut into 128 equal
sub-buckets, so no bucket is wider than 1/128 (0.78 %) of the values in it. Bucket index
i = 128*k + (n >> k), with k = max(0, bit_length(n) - 8), is monotone in n.

Percentiles use the nearest-rank definition: the q-th percentile of N values is the
value of rank ceil(q/100 * N) in ascending order (rank 1 for q = 0). The histogram
reports the upper edge of the bucket holding that value, clamped to [min, max]: never
below the true value (so a latency gate errs on the strict side) and at most 1/128 above
it. The lowest and highest ranks are the exact min and max.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from fractions import Fraction

SCALE = 1_000_000  # quantisation units per value unit
SUB_BUCKETS = 128
_SUB_BITS = 7
_LINEAR_LIMIT = 2 * SUB_BUCKETS  # below this every quantised value has its own bucket


def _index(n: int) -> int:
    k = max(0, n.bit_length() - (_SUB_BITS + 1))
    return (k << _SUB_BITS) + (n >> k)


def _bounds(index: int) -> tuple[int, int]:
    """The quantised values [lower, upper] a bucket holds (both inclusive)."""
    k = 0 if index < _LINEAR_LIMIT else (index >> _SUB_BITS) - 1
    sub = index - (k << _SUB_BITS)
    return sub << k, ((sub + 1) << k) - 1


class Histogram:
    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.count = 0
        self.min: float | None = None
        self.max: float | None = None
        self.sum_units = 0  # sum of quantised values: an integer, so merges are exact

    # --- recording and merging --------------------------------------------------------
    def record(self, value: float) -> None:
        value = float(value)
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"a histogram value must be finite and >= 0, not {value!r}")
        n = round(value * SCALE)
        i = _index(n)
        self.counts[i] = self.counts.get(i, 0) + 1
        self.count += 1
        self.sum_units += n
        if self.min is None or value < self.min:
            self.min = value
        if self.max is None or value > self.max:
            self.max = value

    def merge(self, other: Histogram) -> Histogram:
        """Adds `other` into this histogram and returns it."""
        for i, c in other.counts.items():
            self.counts[i] = self.counts.get(i, 0) + c
        self.count += other.count
        self.sum_units += other.sum_units
        for bound, pick in (("min", min), ("max", max)):
            mine, theirs = getattr(self, bound), getattr(other, bound)
            setattr(self, bound, theirs if mine is None else mine if theirs is None else pick(mine, theirs))
        return self

    @classmethod
    def merged(cls, histograms: Iterable[Histogram]) -> Histogram:
        out = cls()
        for h in histograms:
            out.merge(h)
        return out

    # --- statistics -------------------------------------------------------------------
    @property
    def mean(self) -> float | None:
        return self.sum_units / self.count / SCALE if self.count else None

    def percentile(self, q: float) -> float | None:
        return self.percentiles(q)[0]

    def percentiles(self, *qs: float) -> list[float | None]:
        """Several nearest-rank percentiles in one pass over the sorted buckets."""
        if not self.count:
            return [None for _ in qs]
        ranks = [self._rank(q) for q in qs]
        out: list[float | None] = [None] * len(qs)
        todo = sorted(range(len(qs)), key=ranks.__getitem__)
        seen = 0
        for i in sorted(self.counts):
            seen += self.counts[i]
            while todo and ranks[todo[0]] <= seen:
                q = todo.pop(0)
                out[q] = self._at(ranks[q], _bounds(i)[1] / SCALE)
            if not todo:
                break
        return out

    def _rank(self, q: float) -> int:
        if not 0 <= q <= 100:
            raise ValueError(f"percentile {q!r} is outside 0..100")
        # str() keeps 99.9 as 999/10: binary floating point would make rank 999 into 1000
        return max(1, math.ceil(Fraction(str(q)) * self.count / 100))

    def _at(self, rank: int, upper: float) -> float:
        if rank == 1:
            return self.min
        if rank == self.count:
            return self.max
        return min(max(upper, self.min), self.max)

    def buckets(self) -> Iterator[tuple[float, float, int]]:
        """(lower, upper, count) of each non-empty bucket in value units, for plots."""
        for i in sorted(self.counts):
            lo, hi = _bounds(i)
            yield lo / SCALE, (hi + 1) / SCALE, self.counts[i]

    def summary(self) -> dict:
        p50, p95, p99 = self.percentiles(50, 95, 99)
        return {"count": self.count, "mean": self.mean, "p50": p50, "p95": p95, "p99": p99, "max": self.max,
                "histogram": self.to_dict()}

    # --- serialisation ----------------------------------------------------------------
    def to_dict(self) -> dict:
        """JSON-ready; only non-empty buckets, as [index, count] pairs in index order."""
        return {"scale": SCALE, "sub_buckets": SUB_BUCKETS, "count": self.count, "min": self.min, "max": self.max,
                "sum_units": self.sum_units, "buckets": [[i, self.counts[i]] for i in sorted(self.counts)]}

    @classmethod
    def from_dict(cls, d: dict) -> Histogram:
        if d.get("scale") != SCALE or d.get("sub_buckets") != SUB_BUCKETS:
            raise ValueError(f"histogram layout {d.get('scale')}/{d.get('sub_buckets')} "
                             f"is not {SCALE}/{SUB_BUCKETS}")
        out = cls()
        out.counts = {int(i): int(c) for i, c in d["buckets"]}
        out.count, out.sum_units = int(d["count"]), int(d["sum_units"])
        out.min, out.max = d["min"], d["max"]
        if sum(out.counts.values()) != out.count:
            raise ValueError("histogram bucket counts do not add up to its count")
        return out

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Histogram):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"Histogram(count={self.count}, min={self.min}, max={self.max}, buckets={len(self.counts)})"
