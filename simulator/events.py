"""The farm's event stream: everything a handset or the carrier sees, in one Redis Stream.

Where it lives: a Redis the farm starts itself, listening only on a Unix socket in the run
dir (`<run dir>/farm/redis.sock`), not the PBX's Redis. The measurement plane stays out of
the system under test: a failover drill that takes the PBX's Redis primary away must not
take the record of that drill with it, and a storm's events must not load the store the
PBX's rotation pointers live in. Unix sockets ignore network namespaces, so every worker
in every site namespace reaches it without crossing the shaped WAN. `--redis-url` points a
farm (or a shard on another machine) at any other Redis instead.

Each entry is flat strings: `type`, `t` (CLOCK_MONOTONIC seconds, comparable between all
processes on one machine), `wall` (epoch seconds, to join with CDRs and across shards),
`worker`, `handset`, `call_id` (the SIP Call-ID, the same on caller, callee and the PBX's
acc records), and per-type fields (`status`, `reason`, `peer`, `target`, `request`, ...).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

STREAM = "tsunagu:farm:events"
CONTROL = "tsunagu:farm:control"  # commands for the supervisor
HANDSETS = "tsunagu:farm:handsets"  # hash: extension -> registration state
WORKERS = "tsunagu:farm:workers"  # hash: worker id -> pid
STREAM_MAXLEN = 2_000_000

# type -> fields it must carry besides type, t, wall, worker
SCHEMA: dict[str, tuple[str, ...]] = {
    "worker_started": ("pid",),
    "worker_stopped": (),
    "worker_crashed": ("pid", "status"),
    "worker_restarted": ("pid",),
    "register_sent": ("handset", "target"),
    "registered": ("handset", "target", "expires", "elapsed"),
    "register_failed": ("handset", "target", "status"),
    "failover": ("handset", "target", "wait", "policy"),
    "unregistered": ("handset",),
    "invite_received": ("handset", "call_id", "peer"),
    "ringing_sent": ("handset", "call_id"),
    "answered": ("handset", "call_id"),
    "rejected": ("handset", "call_id", "status", "reason"),
    "call_placed": ("handset", "call_id", "peer", "request"),
    "call_ringing": ("handset", "call_id", "status"),
    "call_connected": ("handset", "call_id"),
    "bye": ("handset", "call_id", "status", "duration"),
    "call_failed": ("handset", "call_id", "status", "reason"),
    "transfer": ("handset", "call_id", "peer", "status"),
    "state_set": ("handset", "state"),
    "outbound_received": ("handset", "call_id", "caller_id"),
    "refused_no_slot": ("handset", "call_id", "status"),
    "command_failed": ("request", "reason"),
    "trunk": ("trunk", "state"),
    "retransmit": ("what",),  # the generator's own SIP retransmissions (pjsip's log)
    "farm": ("state",),
}
COMMON = ("type", "t", "wall", "worker")


def event(kind: str, worker: str, /, **fields) -> dict[str, str]:
    if kind not in SCHEMA:
        raise ValueError(f"unknown event type {kind!r}")
    out = {"type": kind, "t": f"{time.monotonic():.6f}", "wall": f"{time.time():.6f}", "worker": worker}
    out.update({k: "" if v is None else str(v) for k, v in fields.items()})
    return out


def problems(entry: dict[str, str]) -> list[str]:
    """What makes an entry break the schema (empty when it is sound)."""
    kind = entry.get("type")
    if kind not in SCHEMA:
        return [f"unknown type {kind!r}"]
    missing = [f for f in COMMON + SCHEMA[kind] if f not in entry]
    out = [f"{kind}: missing {f}" for f in missing]
    for f in ("t", "wall"):
        try:
            float(entry.get(f, "x"))
        except ValueError:
            out.append(f"{kind}: {f} is not a number")
    return out


class Sink:
    """Buffers events and writes them in one pipeline; `flush` is called from the event loop."""

    def __init__(self, url: str, worker: str):
        import redis

        self.worker = worker
        self.client = redis.Redis.from_url(url, decode_responses=True, socket_timeout=5)
        self.pending: list[dict[str, str]] = []
        self.states: dict[str, str] = {}

    def emit(self, kind: str, /, **fields) -> dict[str, str]:
        entry = event(kind, self.worker, **fields)
        self.pending.append(entry)
        return entry

    def set_handset(self, extension: str, state: str) -> None:
        self.states[extension] = state

    def flush(self) -> None:
        if not self.pending and not self.states:
            return
        pipe = self.client.pipeline(transaction=False)
        for entry in self.pending:
            pipe.xadd(STREAM, entry, maxlen=STREAM_MAXLEN, approximate=True)
        if self.states:
            pipe.hset(HANDSETS, mapping=self.states)
        pipe.execute()
        self.pending, self.states = [], {}


def read(client, since: str = "0-0", count: int | None = None) -> list[tuple[str, dict[str, str]]]:
    return client.xrange(STREAM, min=since if since == "0-0" else f"({since}", count=count)


# --- the farm's own Redis ------------------------------------------------------------------

def socket_path(farm_dir: Path) -> Path:
    return farm_dir / "redis.sock"


def url_for(farm_dir: Path) -> str:
    return f"unix://{socket_path(farm_dir)}"


def start_redis(farm_dir: Path, namespace: str | None) -> subprocess.Popen:
    """A Redis on a Unix socket only (no TCP port), no persistence; the caller stops it."""
    server = shutil.which("redis-server") or "/usr/bin/redis-server"
    farm_dir.mkdir(parents=True, exist_ok=True)
    sock = socket_path(farm_dir)
    sock.unlink(missing_ok=True)
    cmd = [server, "--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700",
           "--save", "", "--appendonly", "no", "--maxclients", "20000", "--dir", str(farm_dir),
           "--logfile", str(farm_dir / "redis.log"), "--daemonize", "no"]
    if namespace:
        cmd = ["ip", "netns", "exec", namespace, *cmd]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 10
    import redis

    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server exited ({proc.returncode}); see {farm_dir / 'redis.log'}")
        if os.path.exists(sock):
            try:
                redis.Redis(unix_socket_path=str(sock)).ping()
                return proc
            except redis.ConnectionError:
                pass
        time.sleep(0.05)  # polling readiness, bounded by the deadline
    proc.kill()
    raise RuntimeError(f"redis-server did not answer on {sock} within 10 s")
