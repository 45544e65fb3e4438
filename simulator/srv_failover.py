"""How a handset finds its PBX node, and what it does when that node stops answering.

RFC 3263 says: look up `_sip._udp.<domain>` SRV, try targets by priority (weighted random
within a priority, RFC 2782), move to the next on failure. PJSIP moves on only when a
TCP/TLS connect() fails, never after a UDP timeout or a 408/5xx (pjproject #4477; its docs
recommend application-level failover). Real phones do fail over, so the farm does it
itself: on a failed registration it switches the account to the next SRV target after a
randomised wait in the spirit of RFC 5626 §4.5:

    wait = uniform(0.5, 1.0) * min(max_time, base_time * 2**consecutive_failures)

Two policies, and every run says which it used (farm start event, `tsunagu farm status`):

* `farm-srv-rfc5626` (default): the above, from the site's own DNS server;
* `pjsip-native`: the account registers to the bare domain and PJSIP resolves SRV itself,
  for comparing against what an unmodified pjsua2 client does.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

FARM_POLICY = "farm-srv-rfc5626"
PJSIP_POLICY = "pjsip-native"
POLICIES = (FARM_POLICY, PJSIP_POLICY)


@dataclass(frozen=True)
class Target:
    priority: int
    weight: int
    port: int
    host: str
    address: str

    @property
    def uri(self) -> str:
        return f"sip:{self.address}:{self.port};transport=udp"


def order(targets: list[Target], rng: random.Random) -> list[Target]:
    """RFC 2782 order: ascending priority; within one priority a weighted random draw."""
    out = []
    for priority in sorted({t.priority for t in targets}):
        pool = [t for t in targets if t.priority == priority]
        while pool:
            total = sum(t.weight for t in pool)
            if total == 0:
                out += pool
                break
            pick = rng.uniform(0, total)
            running = 0.0
            for t in pool:
                running += t.weight
                if pick <= running:
                    break
            out.append(t)
            pool.remove(t)
    return out


def resolve(domain: str, nameservers: list[str], transport: str = "udp", attempts: int = 4) -> list[Target]:
    """SRV then A lookups at the lab's DNS servers (the ones the site's resolv.conf lists;
    named here because a forked worker keeps its supervisor's /etc), retried with backoff:
    a site starting hundreds of workers may find its DNS slow."""
    import time

    import dns.exception

    for attempt in range(attempts):
        try:
            return _resolve(domain, nameservers, transport)
        except dns.exception.Timeout:
            if attempt == attempts - 1:
                raise
            time.sleep(Backoff(1.0, 8.0).wait(attempt, random.Random()))
    return []


def _resolve(domain: str, nameservers: list[str], transport: str) -> list[Target]:
    import dns.resolver

    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = nameservers
    resolver.lifetime = 5.0
    out = []
    for rr in resolver.resolve(f"_sip._{transport}.{domain}", "SRV"):
        host = str(rr.target).rstrip(".")
        for a in resolver.resolve(host, "A"):
            out.append(Target(rr.priority, rr.weight, rr.port, host, a.address))
    return out


@dataclass
class Backoff:
    """RFC 5626 §4.5 flow-recovery timing; the lab scales base and max down from 30/1800 s."""

    base_s: float = 2.0
    max_s: float = 60.0

    def wait(self, failures: int, rng: random.Random) -> float:
        return rng.uniform(0.5, 1.0) * min(self.max_s, self.base_s * 2 ** max(0, failures))


@dataclass
class Failover:
    """One handset's position in its SRV target list."""

    targets: list[Target]
    backoff: Backoff
    rng: random.Random
    failures: int = 0
    position: int = 0
    history: list[str] = field(default_factory=list)

    @property
    def current(self) -> Target:
        return self.targets[self.position % len(self.targets)]

    def failed(self) -> tuple[Target, float]:
        """The registration at the current target failed: (next target, seconds to wait)."""
        wait = self.backoff.wait(self.failures, self.rng)
        self.failures += 1
        self.position = (self.position + 1) % len(self.targets)
        self.history.append(self.current.host)
        return self.current, wait

    def succeeded(self) -> None:
        self.failures = 0
