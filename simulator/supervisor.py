"""The farm's supervisor: starts a worker process per slice of handsets, in each site's
namespace, keeps them running, routes commands to them, and ends every one of them.

It runs inside the lab's WAN namespace (so `tsunagu lab down`, which ends every process in
the lab's namespaces, can never leave a farm behind) and forks each worker into its
site's namespace (simulator/forked.py). A worker that dies is reported (`worker_crashed`) and
started again (`worker_restarted`); its handsets register again on their own. SIGTERM or
SIGINT (Ctrl-C) stops the farm: every worker is asked to stop, then SIGTERM, then SIGKILL.

    python -m simulator.supervisor FARM_DIR/farm.json
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from . import events
from .assignment import assign
from .forked import ForkedWorker

RESTART_DELAY_S = 1.0
MAX_RESTARTS = 20
STOP_GRACE_S = 10.0
SIP_PORT_BASE = 5100
RTP_PORT_BASE = 20000
CARRIER_SIP_PORT_BASE = 5070
CARRIER_RTP_PORT_BASE = 40000


@dataclass
class Child:
    id: str
    namespace: str
    config: Path
    extensions: tuple[str, ...]
    registering: int = 0
    proc: ForkedWorker | None = None
    restarts: int = 0
    restart_at: float | None = None
    history: list[int] = field(default_factory=list)


def open_intervals(schedule, start: datetime, days: int = 8) -> list[tuple[float, float]]:
    """Business hours from the estate's schedule (tsunagu.calendar) as epoch intervals."""
    from tsunagu.calendar import _WEEKDAYS, JST, closed_reason

    out = []
    first = start.astimezone(JST).date() - timedelta(days=1)
    for n in range(days + 1):
        day = first + timedelta(days=n)
        if closed_reason(schedule, day):
            continue
        hours = schedule.hours.get(_WEEKDAYS[day.weekday()]) or next(
            (h for h in schedule.hours.values() if h), None)
        if hours:
            opens, closes = (datetime.combine(day, t, JST).timestamp() for t in hours)
            out.append((opens, closes))
    return out


def worker_configs(settings: dict) -> list[tuple[str, str, tuple[str, ...], dict]]:
    """(id, namespace, extensions, config) for every worker of this farm (or shard)."""
    from tsunagu.estate import load_estate
    from tsunagu.plan import CARRIER_HOST, plan
    from tsunagu.secrets import ensure_secrets

    from . import carrier, profiles

    estate = load_estate(settings["estate"])
    topology = plan(estate)
    secrets = ensure_secrets(estate)["handsets"]
    layout = assign(estate)
    shard_index, shard_count = settings.get("shard", [0, 1])
    layout = layout.shard(shard_index, shard_count)
    workers = layout.workers
    if settings.get("max_handsets"):  # benchmarks: the first workers holding at most N handsets
        kept, total = [], 0
        for w in workers:
            if total + len(w.extensions) > settings["max_handsets"]:
                break
            kept.append(w)
            total += len(w.extensions)
        workers = kept
    schedule = estate.schedules.get("default") or next(iter(estate.schedules.values()))
    common = {
        "domain": topology.domain, "policy": settings["policy"], "seed": settings["seed"],
        "redis_url": settings["redis_url"], "hold_scale": settings.get("hold_scale", 1.0),
        "delay_scale": settings.get("delay_scale", 1.0), "behaviour": settings.get("behaviour", "profiles"),
        "on_duty": settings.get("on_duty", "schedule"),
        "open_intervals": open_intervals(schedule, datetime.now().astimezone()),
        "pj_log_level": settings.get("pj_log_level", 1),
        "count_retransmissions": settings.get("count_retransmissions", False),
        "nameservers": [str(h.address) for h in topology.hosts if "dns" in {s.value for s in h.services}],
    }
    prefix = settings["prefix"]
    out = []
    for w in workers:
        specs = []
        for ext in w.extensions:
            h = layout.handsets[ext]
            profile = profiles.PROFILES[profiles.profile_name(h.role, h.device)]
            delay, expires = profiles.registration_plan(profile, settings["seed"], ext)
            specs.append({"extension": ext, "password": secrets[ext], "profile": profile.name,
                          "takes_phone_home": h.takes_phone_home, "register_after": round(delay, 3),
                          "expires": expires})
        out.append((w.id, prefix + w.site, w.extensions, {
            **common, "id": w.id, "site": w.site, "address": str(topology.host(w.site).address),
            "sip_port": SIP_PORT_BASE + w.index, "rtp_port": RTP_PORT_BASE + 16 * w.index, "handsets": specs}))
    if settings.get("carrier_workers", 0) and shard_index == 0:
        address = str(topology.host(CARRIER_HOST).address)
        for n in range(settings["carrier_workers"]):
            phones = carrier.phones(n)
            out.append((f"carrier-{n:03d}", prefix + CARRIER_HOST, tuple(p["extension"] for p in phones), {
                **common, "id": f"carrier-{n:03d}", "site": CARRIER_HOST, "address": address,
                "on_duty": "always", "registrar": f"sip:{address}:5060", "policy": "fixed-registrar", "domain": address,
                "sip_port": CARRIER_SIP_PORT_BASE + n, "rtp_port": CARRIER_RTP_PORT_BASE + 16 * n,
                "handsets": phones}))
    return out


class Supervisor:
    def __init__(self, settings_file: Path):
        self.settings = json.loads(settings_file.read_text())
        self.farm_dir = settings_file.parent
        self.children: dict[str, Child] = {}
        self.owner: dict[str, str] = {}  # extension -> worker id
        self.stopping = False
        self.redis_proc = None
        self.dial_turn = 0

    def log(self, text: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {text}", flush=True)

    def start(self) -> None:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        if self.settings.get("own_redis"):
            self.redis_proc = events.start_redis(self.farm_dir, None)
        import redis

        self.redis = redis.Redis.from_url(self.settings["redis_url"], decode_responses=True)
        if self.settings.get("own_redis"):
            self.redis.delete(events.STREAM, events.HANDSETS, events.WORKERS, events.CONTROL)
        self.sink = events.Sink(self.settings["redis_url"], "supervisor")
        # commands written from now on are ours; a shared Redis may hold an older farm's
        self.control_id = (self.redis.xinfo_stream(events.CONTROL)["last-generated-id"]
                           if self.redis.exists(events.CONTROL) else "0-0")
        configs = worker_configs(self.settings)
        (self.farm_dir / "workers").mkdir(exist_ok=True)
        (self.farm_dir / "logs").mkdir(exist_ok=True)
        for wid, ns, exts, cfg in configs:
            path = self.farm_dir / "workers" / f"{wid}.json"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # holds passwords
            with os.fdopen(fd, "w") as out:
                json.dump(cfg, out)
            self.children[wid] = Child(wid, ns, path, exts,
                                       sum(1 for h in cfg["handsets"] if h.get("register", True)))
            self.owner.update(dict.fromkeys(exts, wid))
        handsets = sum(len(c.extensions) for c in self.children.values() if not c.id.startswith("carrier"))
        self.sink.emit("farm", state="starting", policy=self.settings["policy"], workers=len(self.children),
                       handsets=handsets, shard="/".join(map(str, self.settings.get("shard", [0, 1]))),
                       seed=self.settings["seed"], pid=os.getpid())
        self.sink.flush()
        self.log(f"{len(self.children)} workers, {handsets} handsets, policy {self.settings['policy']}")
        rate = float(self.settings.get("spawn_rate", 40))
        for n, child in enumerate(self.children.values()):
            if self.stopping:
                break
            self.spawn(child)
            if n % 10 == 9:
                self.service(timeout_ms=0)
                time.sleep(10 / rate)  # pacing the start so a whole site does not start at once
        self.sink.emit("farm", state="started", workers=len(self.children))
        self.sink.flush()

    def spawn(self, child: Child) -> None:
        child.proc = ForkedWorker(child.namespace, child.config, self.farm_dir / "logs" / f"{child.id}.log")
        child.history.append(child.proc.pid)
        self.redis.hset(events.WORKERS, child.id, json.dumps(
            {"pid": child.proc.pid, "namespace": child.namespace, "handsets": list(child.extensions),
             "registering": child.registering, "restarts": child.restarts}))

    def send(self, child: Child, cmd: dict) -> bool:
        if child.proc is None or child.proc.poll() is not None:
            return False
        try:
            child.proc.stdin.write((json.dumps(cmd) + "\n").encode())
            child.proc.stdin.flush()
            return True
        except (BrokenPipeError, OSError):
            return False

    def route(self, cmd: dict) -> None:
        op, request = cmd.get("op"), cmd.get("request", "")
        if op == "stop":
            self.stopping = True
            return
        if op == "kill":
            wid = cmd.get("worker") or self.owner.get(cmd.get("handset", ""))
            child = self.children.get(wid or "")
            if child and child.proc and child.proc.poll() is None:
                os.kill(child.proc.pid, signal.SIGKILL)
                self.log(f"killed worker {wid} (pid {child.proc.pid}) on request")
            else:
                self.sink.emit("command_failed", request=request, reason=f"no running worker {wid}")
            return
        if op == "reregister":
            for child in self.children.values():
                if not child.id.startswith("carrier"):
                    self.send(child, cmd)
            return
        if op == "dial":  # a citizen's call from the carrier, round-robin over carrier workers
            carriers = [c for c in self.children.values() if c.id.startswith("carrier")]
            if not carriers:
                self.sink.emit("command_failed", request=request, reason="the farm has no carrier")
                return
            child = carriers[self.dial_turn % len(carriers)]
            self.dial_turn += 1
            cmd = {**cmd, "op": "call", "from": cmd.get("from") or child.extensions[-1]}
        handset = cmd.get("from") or cmd.get("handset")
        wid = self.owner.get(handset or "")
        if wid is None or not self.send(self.children[wid], cmd):
            self.sink.emit("command_failed", request=request,
                           reason=f"handset {handset} is not in this farm" if wid is None
                           else f"worker {wid} is not running")

    def service(self, timeout_ms: int) -> None:
        """Restart dead workers, route pending commands, flush events."""
        now = time.monotonic()
        for child in self.children.values():
            if child.proc is None or child.proc.poll() is None:
                if child.restart_at and now >= child.restart_at and child.proc is None:
                    child.restart_at = None
                    child.restarts += 1
                    self.spawn(child)
                    self.sink.emit("worker_restarted", pid=child.proc.pid, restarts=child.restarts,
                                   crashed_worker=child.id)
                    self.log(f"worker {child.id} restarted (pid {child.proc.pid}, restart {child.restarts})")
                continue
            if self.stopping:
                continue
            rc, pid = child.proc.returncode, child.proc.pid
            child.proc.stdin.close()
            child.proc = None
            self.sink.emit("worker_crashed", pid=pid, status=rc, crashed_worker=child.id,
                           handsets=",".join(child.extensions))
            for ext in child.extensions:  # their registrations die with the process
                self.sink.set_handset(ext, "lost worker-crashed")
            self.log(f"worker {child.id} (pid {pid}) died with status {rc}; handsets {', '.join(child.extensions)}")
            if child.restarts < MAX_RESTARTS:
                child.restart_at = now + RESTART_DELAY_S
        self.sink.flush()
        reply = self.redis.xread({events.CONTROL: self.control_id}, block=timeout_ms or None, count=100)
        for _, entries in reply or []:
            for entry_id, fields in entries:
                self.control_id = entry_id
                self.route(json.loads(fields["command"]))

    def run(self) -> None:
        self.start()
        while not self.stopping:
            self.service(timeout_ms=200)
        self.stop()

    def stop(self) -> None:
        self.log("stopping every worker")
        self.sink.emit("farm", state="stopping")
        self.sink.flush()
        live = [c for c in self.children.values() if c.proc and c.proc.poll() is None]
        for c in live:
            self.send(c, {"op": "stop"})
        deadline = time.monotonic() + STOP_GRACE_S
        for sig, grace in ((None, STOP_GRACE_S), (signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0)):
            live = [c for c in live if c.proc.poll() is None]
            for c in live if sig else []:
                try:
                    os.kill(c.proc.pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + grace
            while any(c.proc.poll() is None for c in live) and time.monotonic() < deadline:
                time.sleep(0.05)  # waiting for workers to exit, bounded by the deadline
        left = [c.proc.pid for c in self.children.values() if c.proc and c.proc.poll() is None]
        self.sink.emit("farm", state="stopped", left=len(left))
        self.sink.flush()
        self.log(f"farm stopped; {len(left)} workers left")
        if self.redis_proc is not None:
            self.redis_proc.terminate()
            try:
                self.redis_proc.wait(5)
            except subprocess.TimeoutExpired:
                self.redis_proc.kill()
                self.redis_proc.wait()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    sup = Supervisor(Path(argv[0]))

    def stop(*_):
        sup.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        sup.run()
    except BaseException:
        sup.stopping = True
        sup.stop()
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
