"""Is the load generator the bottleneck? Its CPU, its retransmissions, and a verdict.

The generator is the farm (supervisor, pjsua2 workers, its Redis) and Locust (master and
workers). A sampler thread reads /proc once a second: each generator process's CPU time
and the whole machine's busy time. A run is invalid when the generator saturated, because
then its timings measure its own queueing, not the PBX:

* a single generator process (each is single-threaded: one pjsua2 loop, one gevent loop)
  used >= 90 % of a core over a 5 s window;
* the whole machine was >= 95 % busy over the storm (the PBX and the generator share it);
* Locust warned that its CPU was above 90 %;
* the farm refused calls for lack of a call slot, or could not place them, for more than
  0.5 % of the attempts.

Generator-side SIP retransmissions (pjsip's, counted by the farm's workers) are reported
beside it; they say the far end answered late, which may be the PBX or the generator.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field

PROCESS_LIMIT = 0.90
MACHINE_LIMIT = 0.95
WINDOW_S = 5
REFUSED_LIMIT = 0.005
TICK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float | None:
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def _machine() -> tuple[float, float]:
    """(busy, total) jiffies since boot, all cores."""
    values = [int(v) for v in open("/proc/stat").readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


@dataclass
class Sample:
    t: float
    generator_cores: float  # all generator processes, in cores (1.0 = one core busy)
    busiest: float  # the busiest single generator process, fraction of a core
    busiest_pid: int
    machine: float  # fraction of all cores busy


@dataclass
class CpuSampler:
    pids: callable  # returns the generator's current pids
    period_s: float = 1.0
    samples: list[Sample] = field(default_factory=list)

    def start(self) -> CpuSampler:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        last = {pid: _cpu_seconds(pid) for pid in self.pids()}
        busy0, total0 = _machine()
        t0 = time.monotonic()
        while not self._stop.wait(self.period_s):
            now = time.monotonic()
            busy, total = _machine()
            current, per = {}, {}
            for pid in self.pids():
                s = _cpu_seconds(pid)
                if s is None:
                    continue
                current[pid] = s
                if last.get(pid) is not None:
                    per[pid] = (s - last[pid]) / (now - t0)
            top = max(per.items(), key=lambda kv: kv[1], default=(0, 0.0))
            self.samples.append(Sample(now, sum(per.values()), top[1], top[0],
                                       (busy - busy0) / max(1, total - total0)))
            last, busy0, total0, t0 = current, busy, total, now

    def latest(self) -> Sample | None:
        return self.samples[-1] if self.samples else None


def verdict(samples: list[Sample], *, retransmissions: int, refused: int, attempts: int,
            locust_cpu_warning: bool) -> dict:
    """The `generator` section of the metrics: CPU figures and whether the run is valid."""
    cores = os.cpu_count() or 1
    reasons = []
    window: deque[Sample] = deque(maxlen=WINDOW_S)
    worst = 0.0
    for s in samples:
        window.append(s)
        if len(window) == WINDOW_S:
            worst = max(worst, sum(x.busiest for x in window) / WINDOW_S)
    if worst >= PROCESS_LIMIT:
        reasons.append(f"a generator process used {worst:.0%} of a core over {WINDOW_S} s")
    machine = sum(s.machine for s in samples) / len(samples) if samples else 0.0
    if machine >= MACHINE_LIMIT:
        reasons.append(f"the machine was {machine:.0%} busy over the storm")
    if locust_cpu_warning:
        reasons.append("Locust warned that its CPU was above 90 %")
    if attempts and refused / attempts > REFUSED_LIMIT:
        reasons.append(f"the farm could not place {refused} of {attempts} calls (no free call slot)")
    gen = [s.generator_cores for s in samples]
    return {
        "cores": cores,
        "cpu_percent_mean": round(100 * sum(gen) / len(gen), 1) if gen else 0.0,
        "cpu_percent_peak": round(100 * max(gen), 1) if gen else 0.0,
        "busiest_process_percent": round(100 * worst, 1),
        "machine_percent_mean": round(100 * machine, 1),
        "retransmissions": retransmissions,
        "refused": refused,
        "saturated": bool(reasons),
        "reason": "; ".join(reasons),
        "timeline": [[round(s.t - samples[0].t, 1), round(100 * s.generator_cores, 1), round(100 * s.machine, 1)]
                     for s in samples],
    }
