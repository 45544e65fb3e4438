"""The lab's service manager: one supervisord per lab, living in the WAN namespace.

A real host has systemd; a lab host is a namespace, so the lab brings its own init.
supervisord runs inside the lab's WAN namespace (so `lab down` finds it with every
other lab process) and starts each program with `ip netns exec <host namespace>`.
Ansible's `service_unit` role writes one program file per service under
`<run dir>/supervisor/programs/` and drives it with supervisorctl.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

SUPERVISORD = "/usr/bin/supervisord"
SUPERVISORCTL = "/usr/bin/supervisorctl"
READY_TIMEOUT_S = 15.0


def directory(run_dir: Path) -> Path:
    return run_dir / "supervisor"


def config_text(run_dir: Path) -> str:
    d = directory(run_dir)
    return f"""; Written by `tsunagu lab up`. Programs are added by Ansible's service_unit role.
[unix_http_server]
file={d}/supervisor.sock
chmod=0700

[supervisord]
logfile={d}/supervisord.log
pidfile={d}/supervisord.pid
childlogdir={d}/logs
; Services are stopped by `lab down`, never left behind by a dying supervisord.
nodaemon=false
minfds=16384

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{d}/supervisor.sock

[include]
files = {d}/programs/*.conf
"""


def ctl(run_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([SUPERVISORCTL, "-c", str(directory(run_dir) / "supervisord.conf"), *args],
                          capture_output=True, text=True, check=False)


def running_pid(run_dir: Path) -> int | None:
    try:
        pid = int((directory(run_dir) / "supervisord.pid").read_text().strip())
        os.kill(pid, 0)
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return None
    return pid


def ensure_running(run_dir: Path, namespace: str) -> list[str]:
    """Start the lab's supervisord if it is not running; wait until it answers."""
    d = directory(run_dir)
    (d / "programs").mkdir(parents=True, exist_ok=True)
    (d / "logs").mkdir(exist_ok=True)
    conf = d / "supervisord.conf"
    text = config_text(run_dir)
    changes = []
    if not conf.exists() or conf.read_text() != text:
        conf.write_text(text)
        changes.append(f"{conf} written")
    if running_pid(run_dir) is not None:
        return changes
    subprocess.run(["ip", "netns", "exec", namespace, SUPERVISORD, "-c", str(conf)], check=True)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while ctl(run_dir, "pid").returncode != 0:
        if time.monotonic() > deadline:
            raise RuntimeError(f"supervisord did not answer within {READY_TIMEOUT_S:g} s; see {d}/supervisord.log")
        time.sleep(0.1)  # polling the readiness condition, bounded by the deadline above
    changes.append(f"supervisord started in {namespace}")
    return changes


def shutdown(run_dir: Path, timeout_s: float = 60.0) -> list[str]:
    """Stop every program gracefully, then supervisord itself."""
    pid = running_pid(run_dir)
    if pid is None:
        return []
    ctl(run_dir, "stop", "all")
    ctl(run_dir, "shutdown")
    deadline = time.monotonic() + timeout_s
    while running_pid(run_dir) is not None and time.monotonic() < deadline:
        time.sleep(0.1)  # waiting for the process to exit, bounded by the deadline
    if running_pid(run_dir) is not None:
        os.kill(pid, signal.SIGKILL)
    return [f"supervisord (pid {pid}) and its programs stopped"]
