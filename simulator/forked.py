"""Workers forked from the supervisor rather than started afresh.

`ip netns exec <site> python -m simulator.worker` costs each worker ~0.7 s of CPU
(interpreter start, imports) and its own copy of every imported module, and the large
example has ~1,200 workers. The supervisor imports the worker's modules once (pjsua2 too,
but never creates its Endpoint: one per process, made by the child) and forks; the child
enters its site's network namespace and runs the worker. Imported modules then stay shared
pages, and gc.freeze() keeps the children's collections from copying them.

Only the network namespace is entered: a worker names its DNS servers itself rather than
reading the site's /etc/netns resolv.conf, which `ip netns exec` would bind-mount.
"""

from __future__ import annotations

import ctypes
import gc
import os
import resource
import sys
import traceback
from pathlib import Path

from . import worker

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL("libc.so.6", use_errno=True)


class ForkedWorker:
    """What the supervisor uses of subprocess.Popen (pid, stdin, poll, returncode)."""

    def __init__(self, namespace: str, config: Path, log: Path):
        netns = os.open(f"/run/netns/{namespace}", os.O_RDONLY | os.O_CLOEXEC)
        read_end, write_end = os.pipe()
        log_fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        sys.stdout.flush()  # or the child prints the supervisor's buffered lines again
        sys.stderr.flush()
        gc.freeze()
        pid = os.fork()
        if pid == 0:
            _child(netns, read_end, log_fd, config)  # never returns
        for fd in (netns, read_end, log_fd):
            os.close(fd)
        self.pid = pid
        self.stdin = os.fdopen(write_end, "wb")
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode


def _child(netns: int, commands: int, log: int, config: Path) -> None:
    code = 1
    try:
        os.setsid()  # a Ctrl-C at the terminal is the supervisor's to handle
        if _libc.setns(netns, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns")
        os.dup2(commands, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        # the supervisor's other pipes: a sibling holding one would hide that worker's EOF
        os.closerange(3, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        code = worker.main([str(config)])
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)  # never the supervisor's atexit handlers or finalizers
