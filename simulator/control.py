"""The farm's control interface, as a Python API; `tsunagu farm` is a thin CLI over it.

    farm = Farm.start("estate.yaml", run_dir)          # the lab's run dir
    farm.wait_registered(timeout_s=60)
    request = farm.call("2001", "2002", hold_s=3)      # an extension call
    farm.wait_for("call_connected", request=request)
    farm.dial("0736772520")                            # a citizen's call through the carrier
    farm.set_state("2003", "dnd"); farm.kill_worker(handset="2004"); farm.stop()

Commands go to the supervisor over the farm's Redis (stream `tsunagu:farm:control`); what
happens comes back as events (`events.py`). The farm's files live in `<run dir>/farm/`
(`<run dir>/farm-<i>of<n>/` for a shard): `farm.json` (settings and the supervisor's pid),
per-worker configs (mode 0600: they hold passwords), logs, and the Redis socket.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

from . import events, srv_failover

REPO = Path(__file__).resolve().parent.parent


OUTCOMES = ("call_connected", "call_failed", "command_failed", "refused_no_slot")


class FarmError(RuntimeError):
    pass


def farm_dir(run_dir: Path, shard: tuple[int, int] = (0, 1)) -> Path:
    return run_dir / ("farm" if shard[1] == 1 else f"farm-{shard[0]}of{shard[1]}")


def _lab_state(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "lab-state.json").read_text())
    except FileNotFoundError:
        raise FarmError(f"no lab in {run_dir} (run `tsunagu lab up` first)") from None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie child of ours counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


class Farm:
    def __init__(self, directory: Path):
        self.dir = directory
        self.settings = json.loads((directory / "farm.json").read_text())
        import redis

        self.redis = redis.Redis.from_url(self.settings["redis_url"], decode_responses=True)
        self.proc: subprocess.Popen | None = None

    # --- life ---------------------------------------------------------------------------
    @classmethod
    def start(cls, run_dir: Path, estate: str | None = None, *, shard: tuple[int, int] = (0, 1),
              policy: str = srv_failover.FARM_POLICY, seed: int = 1, redis_url: str | None = None,
              carrier_workers: int = 1, on_duty: str = "schedule", hold_scale: float = 1.0,
              delay_scale: float = 1.0, behaviour: str = "profiles", spawn_rate: float = 40.0,
              foreground: bool = False, max_handsets: int = 0, count_retransmissions: bool = False) -> Farm:
        """Start the supervisor in the lab's WAN namespace; returns once it is up."""
        run_dir = Path(run_dir).resolve()
        lab = _lab_state(run_dir)
        if policy not in srv_failover.POLICIES:
            raise FarmError(f"policy must be one of {', '.join(srv_failover.POLICIES)}")
        directory = farm_dir(run_dir, shard)
        directory.mkdir(parents=True, exist_ok=True)
        old = directory / "farm.json"
        if old.exists():
            pid = json.loads(old.read_text()).get("pid")
            if pid and _alive(pid):
                raise FarmError(f"a farm is already running from {directory} (pid {pid}); stop it first")
        settings = {
            "estate": str(Path(estate or lab["estate"]).resolve()), "run_dir": str(run_dir),
            "prefix": lab["prefix"], "shard": list(shard), "policy": policy, "seed": seed,
            "own_redis": redis_url is None, "redis_url": redis_url or events.url_for(directory),
            "carrier_workers": carrier_workers, "on_duty": on_duty, "hold_scale": hold_scale,
            "delay_scale": delay_scale, "behaviour": behaviour, "spawn_rate": spawn_rate,
            "max_handsets": max_handsets, "count_retransmissions": count_retransmissions,
        }
        (directory / "farm.json").write_text(json.dumps(settings, indent=1))
        cmd = ["ip", "netns", "exec", lab["prefix"] + "wan", sys.executable, "-m", "simulator.supervisor",
               str(directory / "farm.json")]
        env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
        if foreground:
            settings["pid"] = os.getpid()
            (directory / "farm.json").write_text(json.dumps(settings, indent=1))
            os.execvpe(cmd[0], cmd, env)
        log = open(directory / "supervisor.log", "ab")
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=REPO, env=env,
                                start_new_session=True)
        log.close()
        settings["pid"] = proc.pid
        (directory / "farm.json").write_text(json.dumps(settings, indent=1))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise FarmError(f"the farm's supervisor exited ({proc.returncode}); see {directory / 'supervisor.log'}")
            try:
                farm = cls(directory)
                if any(e["type"] == "farm" and e.get("state") in ("starting", "started")
                       for _, e in farm.redis.xrevrange(events.STREAM, count=50)):
                    farm.proc = proc
                    return farm
            except Exception:  # the farm's Redis is not up yet
                pass
            time.sleep(0.2)  # polling readiness, bounded by the deadline
        os.kill(proc.pid, signal.SIGTERM)
        raise FarmError(f"the farm did not start within 60 s; see {directory / 'supervisor.log'}")

    @property
    def pid(self) -> int | None:
        return self.settings.get("pid")

    def running(self) -> bool:
        return bool(self.pid) and _alive(self.pid)

    def stop(self, timeout_s: float = 40.0) -> bool:
        """Stop the supervisor and every worker; True when nothing is left."""
        if self.running():
            os.kill(self.pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            while self.running() and time.monotonic() < deadline:
                if self.proc is not None:
                    self.proc.poll()
                time.sleep(0.1)  # waiting for the supervisor to finish, bounded by the deadline
            if self.running():
                os.kill(self.pid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(5)
        return not self.running() and not self.worker_pids_alive()

    def worker_pids_alive(self) -> list[int]:
        pids = []
        try:
            workers = self.redis.hgetall(events.WORKERS)
        except Exception:  # the farm's own Redis is gone with the farm
            workers = {}
        for info in workers.values():
            pid = json.loads(info)["pid"]
            if _alive(pid):
                pids.append(pid)
        return pids

    # --- commands -----------------------------------------------------------------------
    def command(self, op: str, **fields) -> str:
        request = fields.pop("request", None) or uuid.uuid4().hex[:12]
        self.redis.xadd(events.CONTROL, {"command": json.dumps({"op": op, "request": request, **fields})})
        return request

    def call(self, from_handset: str, to: str, hold_s: float = 0.0) -> str:
        """A call from any handset (or carrier phone) to an extension, a DID or `0`+outside number."""
        return self.command("call", **{"from": from_handset, "to": to, "hold_s": hold_s})

    def dial(self, did: str, hold_s: float = 0.0, citizen: str | None = None) -> str:
        """A citizen's call from the carrier to one of the city's numbers."""
        return self.command("dial", **{"to": did.replace("-", ""), "hold_s": hold_s, "from": citizen})

    def hang_up(self, handset: str) -> str:
        return self.command("hangup", handset=handset)

    def transfer(self, handset: str, to: str) -> str:
        return self.command("transfer", handset=handset, to=to)

    def reregister(self, spread_s: float) -> str:
        """A registration storm: every staff handset registers again within `spread_s`."""
        return self.command("reregister", spread_s=spread_s)

    def set_state(self, handset: str, state: str) -> str:
        if state not in ("busy", "dnd", "available"):
            raise FarmError("state is busy, dnd or available")
        return self.command("set", handset=handset, state=state)

    def kill_worker(self, worker: str | None = None, handset: str | None = None) -> str:
        return self.command("kill", worker=worker, handset=handset)

    def trunk(self, trunk_id: str, up: bool) -> None:
        from . import carrier

        carrier.set_trunk(self.settings["prefix"], trunk_id, up)
        self.redis.xadd(events.STREAM, events.event("trunk", "control", trunk=trunk_id, state="up" if up else "down"))

    # --- what happened ------------------------------------------------------------------
    def events(self, since: str = "0-0") -> list[dict[str, str]]:
        return [dict(e, id=i) for i, e in events.read(self.redis, since)]

    def wait_for(self, kind: str, timeout_s: float = 30.0, **match) -> dict[str, str] | None:
        """The first event of `kind` whose fields match, waiting up to `timeout_s`."""
        deadline, since = time.monotonic() + timeout_s, "0-0"
        while True:
            for i, e in events.read(self.redis, since):
                since = i
                if e["type"] == kind and all(e.get(k) == str(v) for k, v in match.items()):
                    return e
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.1)  # polling the stream, bounded by the deadline

    def outcome(self, request: str, timeout_s: float = 60.0) -> dict[str, str] | None:
        """How a call placed by `request` ended up: connected, failed, or refused."""
        deadline, since = time.monotonic() + timeout_s, "0-0"
        while True:
            for i, e in events.read(self.redis, since):
                since = i
                if e.get("request") == request and e["type"] in OUTCOMES:
                    return e
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.1)  # polling the stream, bounded by the deadline

    def registration(self) -> Counter:
        states = self.redis.hgetall(events.HANDSETS)
        return Counter(s.split()[0] for s in states.values())

    def handsets(self) -> int:
        return sum(len(s.get("handsets", [])) for s in self.workers().values()
                   if not s.get("namespace", "").endswith("carrier"))

    def workers(self) -> dict[str, dict]:
        return {k: json.loads(v) for k, v in self.redis.hgetall(events.WORKERS).items()}

    def wait_registered(self, expected: int | None = None, timeout_s: float = 120.0) -> int:
        """Wait until `expected` handsets (default: all of this farm's, and its carrier phones)
        are registered; returns how many are."""
        deadline = time.monotonic() + timeout_s
        while True:
            workers = self.workers()
            total = expected if expected is not None else sum(w.get("registering", 0) for w in workers.values())
            got = self.registration().get("registered", 0)
            if (total and got >= total) or time.monotonic() >= deadline:
                return got
            time.sleep(0.25)  # polling the registration hash, bounded by the deadline

    def status(self) -> dict:
        if not self.running():
            return {"running": False, "pid": self.pid, "policy": self.settings["policy"], "dir": str(self.dir)}
        counts = self.registration()
        workers = self.workers()
        alive = sum(1 for w in workers.values() if _alive(w["pid"]))
        restarts = sum(w.get("restarts", 0) for w in workers.values())
        farm_events = [e for _, e in self.redis.xrevrange(events.STREAM, count=100000) if e["type"] == "farm"]
        first = farm_events[-1] if farm_events else {}
        return {"running": self.running(), "pid": self.pid, "policy": self.settings["policy"],
                "shard": "/".join(map(str, self.settings["shard"])), "workers": len(workers),
                "workers_alive": alive, "restarts": restarts, "handsets": first.get("handsets", "?"),
                "registration": dict(counts), "events": self.redis.xlen(events.STREAM),
                "redis": self.settings["redis_url"],
                "refused_no_slot": sum(1 for _, e in self.redis.xrange(events.STREAM)
                                       if e["type"] == "refused_no_slot")}


def open_farm(run_dir: Path, shard: tuple[int, int] = (0, 1)) -> Farm:
    directory = farm_dir(Path(run_dir).resolve(), shard)
    if not (directory / "farm.json").exists():
        raise FarmError(f"no farm in {directory}")
    return Farm(directory)
