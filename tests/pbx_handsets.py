"""Real pjsua2 handsets for the PBX tests, each group of them a child process in a lab namespace.

`Handsets(namespace, accounts)` starts `python tests/pbx_handsets.py` under
`ip netns exec NAMESPACE` and talks to it in JSON lines: commands on its stdin, events
on its stdout. One process holds at most 8 accounts and 4 calls (pjsua2's compiled
limits); it runs pjsua2 with threadCnt=0 and mainThreadOnly=True and polls
libHandleEvents() itself.

Every incoming INVITE is answered 180 at once; what follows is the account's mode:
`ring` (keep ringing until cancelled), `answer` (200 after `delay` s), `busy` (486).
Events carry wall-clock times (time.time()) so the order seen by handsets in different
processes can be compared:

    {"ev": "incoming", "acc": "2002", "call": 3, "t": ..., "from": ..., "call_id": ...}
    {"ev": "state", "acc": "2002", "call": 3, "state": "CONFIRMED", "code": 200, "t": ...}
    {"ev": "reg", "acc": "2002", "code": 200, "t": ...}
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

POLL_MS = 5


# ---------------------------------------------------------------- parent side

@dataclass
class Account:
    user: str  # extension (or any user for an unregistered caller)
    password: str = ""
    domain: str = ""
    registrar: str = ""  # host of the PBX node to register with ("" = no registration)
    proxy: str = ""  # where calls go first (defaults to the registrar)


@dataclass
class Handsets:
    namespace: str
    accounts: list[Account]
    python: str = sys.executable
    events: list[dict] = field(default_factory=list)

    def __post_init__(self):
        spec = [a.__dict__ for a in self.accounts]
        # the child's stderr (pjsua asserts, tracebacks) is kept for a failing test to show
        self.stderr = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.namespace, self.python, __file__, json.dumps(spec)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, text=True, bufsize=1,
            env=dict(os.environ, PYTHONUNBUFFERED="1"))
        self._queue: queue.Queue = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                self._queue.put(json.loads(line))
            except json.JSONDecodeError:
                pass
        self._queue.put({"ev": "exit"})

    def send(self, **command) -> None:
        if self.proc.poll() is not None:
            self.stderr.seek(0)
            raise RuntimeError(f"handset {self.accounts[0].user} exited {self.proc.returncode}:\n"
                               + self.stderr.read()[-3000:])
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()

    def pump(self, timeout: float = 0.0) -> None:
        """Move every event that arrived (waiting up to timeout for the first) into self.events."""
        try:
            self.events.append(self._queue.get(timeout=timeout) if timeout else self._queue.get_nowait())
            while True:
                self.events.append(self._queue.get_nowait())
        except queue.Empty:
            pass

    def wait_for(self, predicate, timeout: float = 10.0) -> dict:
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for ev in self.events[seen:]:
                if predicate(ev):
                    return ev
            seen = len(self.events)
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no matching event in {timeout} s; last events: {self.events[-8:]}")
            self.pump(timeout=min(left, 0.2))

    def registered(self, timeout: float = 15.0) -> None:
        for a in self.accounts:
            if a.registrar:
                self.wait_for(lambda e, u=a.user: e["ev"] == "reg" and e["acc"] == u and e["code"] == 200, timeout)

    def mode(self, user: str, mode: str, delay: float = 0.0) -> None:
        self.send(cmd="mode", acc=user, mode=mode, delay=delay)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send(cmd="quit")
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()


# ---------------------------------------------------------------- child side

def _child(spec: list[dict]) -> None:  # noqa: C901 - one event loop, read top to bottom
    import pjsua2 as pj

    def emit(**event):
        event.setdefault("t", time.time())
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()

    ep = pj.Endpoint()
    ep.libCreate()
    cfg = pj.EpConfig()
    cfg.uaConfig.threadCnt = 0
    cfg.uaConfig.mainThreadOnly = True
    cfg.uaConfig.maxCalls = 4
    cfg.logConfig.level = 0
    cfg.logConfig.consoleLevel = 0
    cfg.medConfig.noVad = True
    ep.libInit(cfg)
    tcfg = pj.TransportConfig()
    tcfg.port = 0
    ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tcfg)
    ep.libStart()
    ep.audDevManager().setNullDev()

    calls: dict[int, object] = {}  # keep a Python reference to every call until DISCONNECTED
    # ... and after it, until libDestroy: a pj.Call's destructor hangs up the call *id* it had,
    # and once the cyclic GC gets to it that id may be a new call's (which then ends at once,
    # 603, without a callback). Ended calls are therefore only dropped at shutdown.
    ended: list[object] = []
    timers: list[tuple[float, object]] = []  # (when, action)
    accounts: dict[str, object] = {}
    transferred: list[object] = []  # calls pjsua2 placed for a REFER, before they have an id

    class Call(pj.Call):
        def __init__(self, acc, call_id=pj.PJSUA_INVALID_ID):
            super().__init__(acc, call_id)
            self.acc = acc

        def onCallState(self, prm):
            info = self.getInfo()
            state = info.stateText
            emit(ev="state", acc=self.acc.user, call=info.id, state=state, code=info.lastStatusCode,
                 reason=info.lastReason, call_id=info.callIdString)
            if info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
                calls.pop(info.id, None)
                ended.append(self)
                if self in transferred:
                    transferred.remove(self)
            elif self in transferred:
                calls[info.id] = self

        def onCallMediaState(self, prm):
            pass

        def onCallTransferRequest(self, prm):
            # pjsua2 places the transferred call itself; it needs a Call object to put it in
            new = Call(self.acc)
            prm.newCall = new
            transferred.append(new)
            emit(ev="xfer_request", acc=self.acc.user, uri=prm.dstUri)

        def onCallTransferStatus(self, prm):
            emit(ev="xfer_status", acc=self.acc.user, code=prm.statusCode, final=prm.finalNotify)

    class Acc(pj.Account):
        def __init__(self, user):
            super().__init__()
            self.user = user
            self.mode, self.delay = "ring", 0.0

        def onRegState(self, prm):
            emit(ev="reg", acc=self.user, code=prm.code, expiration=prm.expiration)

        def onIncomingCall(self, prm):
            call = Call(self, prm.callId)
            info = call.getInfo()
            calls[info.id] = call
            text = prm.rdata.wholeMsg
            referred = "Referred-By" in text or "\nb:" in text
            emit(ev="incoming", acc=self.user, call=info.id, call_id=info.callIdString,
                 remote=info.remoteUri, referred=referred)
            op = pj.CallOpParam()
            if self.mode == "busy":
                op.statusCode = 486
                call.answer(op)
                return
            op.statusCode = 180
            call.answer(op)
            if self.mode == "answer":
                timers.append((time.monotonic() + self.delay, lambda c=call: _answer(c)))

    def _answer(call):
        try:
            op = pj.CallOpParam()
            op.statusCode = 200
            call.answer(op)
        except pj.Error as e:  # the call may have ended meanwhile
            emit(ev="error", cmd={"cmd": "answer"}, error=e.info())

    for a in spec:
        acfg = pj.AccountConfig()
        acfg.idUri = f"sip:{a['user']}@{a['domain']}"
        if a["registrar"]:
            acfg.regConfig.registrarUri = f"sip:{a['registrar']}"
            acfg.regConfig.timeoutSec = 300
            acfg.regConfig.retryIntervalSec = 5
            acfg.regConfig.firstRetryIntervalSec = 1
        proxy = a.get("proxy") or a["registrar"]
        if proxy:
            acfg.sipConfig.proxies.append(f"sip:{proxy};lr")
        if a["password"]:
            acfg.sipConfig.authCreds.append(pj.AuthCredInfo("digest", "*", a["user"], 0, a["password"]))
        acfg.natConfig.sipOutboundUse = 0
        acc = Acc(a["user"])
        acc.create(acfg)
        accounts[a["user"]] = acc

    import select
    buf = ""
    running = True
    while running:
        ep.libHandleEvents(POLL_MS)
        now = time.monotonic()
        due = [t for t in timers if t[0] <= now]
        for t in due:
            timers.remove(t)
            t[1]()
        ready, _, _ = select.select([sys.stdin], [], [], 0)
        if not ready:
            continue
        chunk = os.read(sys.stdin.fileno(), 65536).decode()
        if not chunk:
            break
        buf += chunk
        while "\n" in buf:
            line, buf = buf.split("\n", 1)
            cmd = json.loads(line)
            try:
                running = _command(pj, cmd, accounts, calls, timers, Call, emit)
            except pj.Error as e:
                emit(ev="error", cmd=cmd, error=e.info())

    for c in list(calls.values()):
        try:
            c.hangup(pj.CallOpParam())
        except pj.Error:
            pass
    end = time.monotonic() + 2
    while calls and time.monotonic() < end:
        ep.libHandleEvents(POLL_MS)
    for acc in accounts.values():
        try:
            acc.setRegistration(False)
        except pj.Error:
            pass
    end = time.monotonic() + 1
    while time.monotonic() < end:
        ep.libHandleEvents(POLL_MS)
    calls.clear()
    ended.clear()
    transferred.clear()
    accounts.clear()
    ep.libDestroy()


def _command(pj, cmd, accounts, calls, timers, Call, emit) -> bool:
    what = cmd["cmd"]
    if what == "quit":
        return False
    acc = accounts.get(cmd.get("acc"))
    if what == "mode":
        acc.mode, acc.delay = cmd["mode"], cmd.get("delay", 0.0)
    elif what == "register":
        acc.setRegistration(bool(cmd.get("on", True)))
    elif what == "call":
        call = Call(acc)
        op = pj.CallOpParam(True)
        call.makeCall(cmd["uri"], op)
        info = call.getInfo()
        calls[info.id] = call
        emit(ev="calling", acc=acc.user, call=info.id, call_id=info.callIdString, uri=cmd["uri"])
    elif what == "hangup":
        targets = [c for c in calls.values() if cmd.get("call") in (None, c.getInfo().id)
                   and (acc is None or c.acc is acc)]
        for c in targets:
            c.hangup(pj.CallOpParam())
    elif what == "xfer":
        call = calls[cmd["call"]]
        call.xfer(cmd["uri"], pj.CallOpParam(True))
    emit(ev="done", cmd=what, tag=cmd.get("tag"))
    return True


if __name__ == "__main__":
    _child(json.loads(sys.argv[1]))
