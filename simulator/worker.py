"""One worker process: one pjsua2 Endpoint holding up to 8 handsets (or carrier phones).

Forked by the supervisor into the site's network namespace (simulator/forked.py; by hand:
`ip netns exec <ns> python -m simulator.worker CONFIG`), so its SIP and RTP cross that
site's WAN link. pjsua2 runs with threadCnt=0 and mainThreadOnly=True: this process is
one loop calling libHandleEvents(), running due timers (answer delays, hang-ups, failover
waits), reading commands from stdin (JSON lines from the supervisor) and flushing events.
Every pj.Call is held in `calls` until DISCONNECTED and dropped before libDestroy.
"""

from __future__ import annotations

import ctypes
import heapq
import itertools
import json
import os
import random
import re
import select
import signal
import sys
import time
from pathlib import Path

import pjsua2 as pj

from . import profiles, srv_failover
from .events import Sink

CALL_SLOTS = 4
IDLE_POLL_MS = 100
BUSY_POLL_MS = 10
FLUSH_EVERY_S = 0.1
CALLEE_GRACE_S = 5.0
_USER = re.compile(r"sip:([^@;>]+)@")
_RETRANSMITTED = re.compile(r"msg (\S+?)/cseq")  # "Request msg INVITE/cseq=..", "Response msg 200/INVITE/cseq=.."


def _user_of(uri: str) -> str:
    m = _USER.search(uri or "")
    return m.group(1) if m else (uri or "")


def _header(message: str, *names: str) -> str:
    for line in message.split("\r\n"):
        name, sep, value = line.partition(":")
        if sep and name.strip().lower() in names:
            return value.strip()
    return ""


class FarmEndpoint(pj.Endpoint):
    def __init__(self, worker: Worker):
        super().__init__()
        self.worker = worker

    def onRejectedIncomingCall(self, prm):
        # pjsua refuses an INVITE itself when every call slot is taken: a farm bug, reported.
        w = self.worker
        handset = _user_of(prm.localInfo)
        w.sink.emit("refused_no_slot", handset=handset, call_id=prm.callId, status=prm.statusCode,
                    reason=prm.reason, peer=prm.remoteInfo, slots=CALL_SLOTS)
        print(f"FARM BUG: INVITE for {handset} refused with {prm.statusCode}: no free call slot", file=sys.stderr)


class RetransmitCounter(pj.LogWriter):
    """pjsip logs each retransmission of a request or response (level 5, sip_transaction.c
    tsx_retransmit); pjsua2 exposes no counter, so the log is where a load generator's own
    retransmissions are seen. Lines up to `echo_level` still go to stderr as before."""

    def __init__(self, worker: Worker, echo_level: int):
        super().__init__()
        self.worker, self.echo_level = worker, echo_level

    def write(self, entry):
        if "Retransmit" in entry.msg:
            m = _RETRANSMITTED.search(entry.msg)
            self.worker.sink.emit("retransmit", what=m.group(1) if m else "")
        if entry.level <= self.echo_level:
            sys.stderr.write(entry.msg if entry.msg.endswith("\n") else entry.msg + "\n")


class FarmCall(pj.Call):
    def __init__(self, handset: Handset, call_id: int = pj.PJSUA_INVALID_ID, *, incoming: bool,
                 request: str = "", hold_s: float = 0.0):
        super().__init__(handset, call_id)
        self.handset, self.incoming, self.request, self.hold_s = handset, incoming, request, hold_s
        self.sip_call_id = ""
        self.connected_at: float | None = None
        self.bye_sent_at: float | None = None  # for RFC 6076 §4.4 Session Disconnect Delay
        self.hung_up_by_us = False
        self.done = False

    def onCallState(self, prm):
        info = self.getInfo()
        self.sip_call_id = self.sip_call_id or info.callIdString
        w, ext = self.handset.worker, self.handset.extension
        if info.state == pj.PJSIP_INV_STATE_EARLY and not self.incoming:
            w.sink.emit("call_ringing", handset=ext, call_id=self.sip_call_id, status=info.lastStatusCode)
        elif info.state == pj.PJSIP_INV_STATE_CONFIRMED and self.connected_at is None:
            self.connected_at = time.monotonic()
            if not self.incoming:
                w.sink.emit("call_connected", handset=ext, call_id=self.sip_call_id, request=self.request)
                if self.hold_s > 0:
                    w.later(self.hold_s, lambda: w.hang_up(self))
        elif info.state == pj.PJSIP_INV_STATE_DISCONNECTED and not self.done:
            self.done = True
            if self.connected_at is not None:
                now = time.monotonic()
                # pjsip reaches DISCONNECTED for our own BYE when its final response (or
                # Timer F) ends the BYE transaction, so this is the BYE's 2xx-or-timeout
                sdd = f"{(now - self.bye_sent_at) * 1000:.3f}" if self.bye_sent_at is not None else ""
                w.sink.emit("bye", handset=ext, call_id=self.sip_call_id, status=info.lastStatusCode,
                            duration=f"{(self.bye_sent_at or now) - self.connected_at:.3f}",
                            by="local" if self.hung_up_by_us else "remote", request=self.request, sdd=sdd)
            elif not self.hung_up_by_us or not self.incoming:
                w.sink.emit("call_failed", handset=ext, call_id=self.sip_call_id, status=info.lastStatusCode,
                            reason=info.lastReason, request=self.request,
                            direction="in" if self.incoming else "out")
            w.finished(self)

    def onCallTransferStatus(self, prm):
        w = self.handset.worker
        w.sink.emit("transfer", handset=self.handset.extension, call_id=self.sip_call_id, peer="",
                    status=prm.statusCode, final=int(prm.finalNotify))


class Handset(pj.Account):
    """A staff handset (digest auth, SRV failover) or a carrier phone (no auth)."""

    def __init__(self, worker: Worker, spec: dict):
        super().__init__()
        self.worker, self.spec = worker, spec
        self.extension = spec["extension"]
        self.profile = profiles.PROFILES[spec["profile"]]
        self.failover: srv_failover.Failover | None = None
        self.forced: str | None = None
        self.incoming_count = 0
        self.register_sent_at = 0.0
        self.registered = False

    def config(self, target: srv_failover.Target | None) -> pj.AccountConfig:
        w, cfg = self.worker, pj.AccountConfig()
        cfg.idUri = f"sip:{self.extension}@{w.domain}"
        cfg.sipConfig.transportId = w.transport_id
        if self.spec.get("password"):
            cfg.sipConfig.authCreds.append(pj.AuthCredInfo("digest", "*", self.extension, 0, self.spec["password"]))
        if target is not None:
            cfg.regConfig.registrarUri = target.uri
            cfg.sipConfig.proxies.append(target.uri + ";lr")
        elif w.registrar:
            cfg.regConfig.registrarUri = w.registrar
            cfg.sipConfig.proxies.append(w.registrar + ";lr")
        elif w.policy == srv_failover.PJSIP_POLICY:
            cfg.regConfig.registrarUri = f"sip:{w.domain}"
        cfg.regConfig.registerOnAdd = False
        cfg.regConfig.timeoutSec = self.spec.get("expires", 600)
        cfg.regConfig.retryIntervalSec = 0  # the farm retries (srv_failover), not pjsip
        cfg.regConfig.unregWaitMsec = 300
        cfg.mediaConfig.transportConfig.boundAddress = w.address
        cfg.mediaConfig.transportConfig.publicAddress = w.address
        cfg.mediaConfig.transportConfig.port = w.rtp_port
        cfg.mediaConfig.transportConfig.portRange = 4 * CALL_SLOTS
        return cfg

    def register(self) -> None:
        if not self.spec.get("register", True):
            return
        target = self.failover.current.host if self.failover else (self.worker.registrar or self.worker.domain)
        self.register_sent_at = time.monotonic()
        self.worker.sink.emit("register_sent", handset=self.extension, target=target)
        try:
            self.setRegistration(True)
        except pj.Error as exc:
            self.worker.sink.emit("register_failed", handset=self.extension, target=target, status=0,
                                  reason=exc.info())
            self.fail_over()

    def onRegState(self, prm):
        w, ext = self.worker, self.extension
        target = self.failover.current.host if self.failover else (w.registrar or w.domain)
        if prm.code // 100 == 2 and prm.expiration > 0:
            first = not self.registered
            self.registered = True
            if self.failover:
                self.failover.succeeded()
            w.sink.emit("registered", handset=ext, target=target, expires=prm.expiration,
                        elapsed=f"{time.monotonic() - self.register_sent_at:.3f}", refresh=int(not first))
            w.sink.set_handset(ext, f"registered {target}")
        elif prm.code // 100 == 2:
            self.registered = False
            w.sink.emit("unregistered", handset=ext)
            w.sink.set_handset(ext, "unregistered")
        else:
            self.registered = False
            w.sink.emit("register_failed", handset=ext, target=target, status=prm.code, reason=prm.reason)
            w.sink.set_handset(ext, f"failed {prm.code}")
            if not w.stopping:
                self.fail_over()

    def fail_over(self) -> None:
        w = self.worker
        if self.failover is None:  # pjsip-native or a fixed registrar: retry the same, with backoff
            wait = srv_failover.Backoff(self.profile.registration.backoff_base_s,
                                        self.profile.registration.backoff_max_s).wait(0, w.rng)
            w.sink.emit("failover", handset=self.extension, target=w.registrar or w.domain,
                        wait=f"{wait:.2f}", policy=w.policy)
            w.later(wait, self.register)
            return
        target, wait = self.failover.failed()
        w.sink.emit("failover", handset=self.extension, target=target.host, wait=f"{wait:.2f}", policy=w.policy)

        def switch():
            try:
                self.modify(self.config(target))
            except pj.Error as exc:
                print(f"{self.extension}: modify failed: {exc.info()}", file=sys.stderr)
            self.register()

        w.later(wait, switch)

    def onIncomingCall(self, prm):
        w = self.worker
        call = FarmCall(self, prm.callId, incoming=True)
        w.calls[id(call)] = call
        info = call.getInfo()
        call.sip_call_id = info.callIdString
        peer = _user_of(info.remoteUri)
        w.sink.emit("invite_received", handset=self.extension, call_id=call.sip_call_id, peer=peer)
        if self.spec.get("public"):
            msg = prm.rdata.wholeMsg
            w.sink.emit("outbound_received", handset=self.extension, call_id=call.sip_call_id,
                        caller_id=_user_of(_header(msg, "p-asserted-identity") or _header(msg, "from", "f")),
                        from_header=_header(msg, "from", "f"), pai=_header(msg, "p-asserted-identity"))
        n, self.incoming_count = self.incoming_count, self.incoming_count + 1
        other_calls = sum(1 for c in w.calls.values() if c.handset is self and c is not call and not c.done)
        decision = profiles.decide(self.profile, w.seed, self.extension, n, on_duty=w.on_duty(),
                                   takes_phone_home=self.spec.get("takes_phone_home", False),
                                   forced=self.forced, hold_scale=w.hold_scale,
                                   realistic=w.behaviour == "profiles")
        if other_calls and decision.action == profiles.ANSWER and w.behaviour == "profiles":
            # people on a call let another ring out or decline it; in `answer` mode the
            # handset takes it (call waiting) so a callee's busy is never the generator's
            decision = profiles.Decision(profiles.BUSY, reason="on another call")
        if decision.status:
            w.sink.emit("rejected", handset=self.extension, call_id=call.sip_call_id, status=decision.status,
                        reason=decision.reason)
            w.respond(call, decision.status)
            return
        w.respond(call, 180)
        w.sink.emit("ringing_sent", handset=self.extension, call_id=call.sip_call_id, reason=decision.reason)
        if decision.action == profiles.ANSWER:
            w.later(decision.delay_s * w.delay_scale, lambda: w.answer(call, decision.hold_s))


class Worker:
    def __init__(self, config: dict):
        self.config = config
        self.id = config["id"]
        self.domain = config["domain"]
        self.address = config["address"]
        self.sip_port = config["sip_port"]
        self.rtp_port = config["rtp_port"]
        self.registrar = config.get("registrar")  # fixed (the carrier); else SRV
        self.policy = config.get("policy", srv_failover.FARM_POLICY)
        self.seed = int(config.get("seed", 1))
        self.hold_scale = float(config.get("hold_scale", 1.0))
        self.delay_scale = float(config.get("delay_scale", 1.0))
        self.behaviour = config.get("behaviour", "profiles")  # or "answer": everyone on duty answers
        self.open_intervals = [tuple(x) for x in config.get("open_intervals", [])]
        self.always_on_duty = config.get("on_duty") == "always"
        self.rng = random.Random(f"{self.seed}/{self.id}")
        self.sink = Sink(config["redis_url"], self.id)
        self.calls: dict[int, FarmCall] = {}
        self.graveyard: list[FarmCall] = []
        self.handsets: dict[str, Handset] = {}
        self.timers: list = []
        self.seq = itertools.count()
        self.stopping = False
        self.buffer = b""

    # --- scheduling -------------------------------------------------------------------
    def later(self, delay_s: float, fn) -> None:
        heapq.heappush(self.timers, (time.monotonic() + max(0.0, delay_s), next(self.seq), fn))

    def on_duty(self) -> bool:
        return self.always_on_duty or profiles.on_duty(self.open_intervals, time.time())

    # --- call actions -----------------------------------------------------------------
    def respond(self, call: FarmCall, status: int) -> None:
        prm = pj.CallOpParam()
        prm.statusCode = status
        try:
            if status >= 300:
                call.hung_up_by_us = True
                call.hangup(prm)
            else:
                call.answer(prm)
        except pj.Error as exc:
            print(f"respond {status}: {exc.info()}", file=sys.stderr)

    def answer(self, call: FarmCall, hold_s: float) -> None:
        if call.done:
            return
        self.respond(call, 200)
        self.sink.emit("answered", handset=call.handset.extension, call_id=call.sip_call_id,
                       hold=f"{hold_s:.2f}")
        if hold_s > 0:
            # the caller hangs up after its own hold, normally first; ours is the backstop
            # for a caller that never does. Both BYEs at once (glare) between two handsets of
            # one worker left the callee's BYE unanswered and the handset busy for Timer F
            self.later(hold_s + CALLEE_GRACE_S, lambda: self.hang_up(call))

    def hang_up(self, call: FarmCall) -> None:
        if call.done:
            return
        call.hung_up_by_us = True
        if call.connected_at is not None:
            call.bye_sent_at = time.monotonic()
        try:
            call.hangup(pj.CallOpParam())
        except pj.Error as exc:
            print(f"hangup: {exc.info()}", file=sys.stderr)

    def finished(self, call: FarmCall) -> None:
        self.calls.pop(id(call), None)
        # kept until pjsua is destroyed: the wheel's Call destructor hangs up whatever call
        # holds its id by then, and pjsua reuses ids, so a finished call collected later
        # (say when its hold timer lets go of it) would end a stranger's call
        self.graveyard.append(call)

    def place_call(self, cmd: dict) -> None:
        handset = self.handsets.get(cmd["from"])
        request = cmd.get("request", "")
        if handset is None:
            self.sink.emit("command_failed", request=request, reason=f"{cmd['from']} is not on {self.id}")
            return
        if len(self.calls) >= CALL_SLOTS:
            self.sink.emit("refused_no_slot", handset=handset.extension, call_id="", status=0,
                           reason="outgoing call with every slot taken", request=request)
            return
        to = cmd["to"]
        uri = to if to.startswith("sip:") else f"sip:{to}@{self.registrar_host()}"
        call = FarmCall(handset, incoming=False, request=request, hold_s=float(cmd.get("hold_s", 0)))
        prm = pj.CallOpParam(True)
        try:
            call.makeCall(uri, prm)
        except pj.Error as exc:
            self.sink.emit("command_failed", request=request, reason=exc.info())
            return
        self.calls[id(call)] = call
        call.sip_call_id = call.getInfo().callIdString
        self.sink.emit("call_placed", handset=handset.extension, call_id=call.sip_call_id, peer=to, request=request,
                       kind=cmd.get("kind", ""), group=cmd.get("group", ""))

    def registrar_host(self) -> str:
        if self.registrar:
            return self.registrar.removeprefix("sip:").split(";")[0]
        return self.domain

    def calls_of(self, extension: str) -> list[FarmCall]:
        return [c for c in self.calls.values() if c.handset.extension == extension and not c.done]

    def command(self, cmd: dict) -> None:
        op = cmd.get("op")
        request = cmd.get("request", "")
        if op == "call":
            self.place_call(cmd)
        elif op == "hangup":
            for c in self.calls_of(cmd["handset"]):
                self.hang_up(c)
        elif op == "transfer":
            calls = [c for c in self.calls_of(cmd["handset"]) if c.connected_at is not None]
            if not calls:
                self.sink.emit("command_failed", request=request, reason=f"{cmd['handset']} has no connected call")
                return
            to = cmd["to"]
            uri = to if to.startswith("sip:") else f"sip:{to}@{self.registrar_host()}"
            try:
                calls[0].xfer(uri, pj.CallOpParam(True))
                self.sink.emit("transfer", handset=cmd["handset"], call_id=calls[0].sip_call_id, peer=to,
                               status="REFER", request=request)
            except pj.Error as exc:
                self.sink.emit("command_failed", request=request, reason=exc.info())
        elif op == "set":
            handset = self.handsets[cmd["handset"]]
            handset.forced = None if cmd["state"] == "available" else cmd["state"]
            self.sink.emit("state_set", handset=handset.extension, state=cmd["state"], request=request)
        elif op == "reregister":  # a registration storm: every handset again within spread_s
            spread = float(cmd.get("spread_s", 0))
            for h in self.handsets.values():
                if h.spec.get("register", True):
                    self.later(self.rng.uniform(0, spread), h.register)
        elif op == "stop":
            self.stopping = True
        else:
            self.sink.emit("command_failed", request=request, reason=f"unknown op {op!r}")

    def read_commands(self) -> None:
        while select.select([0], [], [], 0)[0]:
            chunk = os.read(0, 65536)
            if not chunk:  # the supervisor is gone
                self.stopping = True
                return
            self.buffer += chunk
            *lines, self.buffer = self.buffer.split(b"\n")
            for line in lines:
                if line.strip():
                    self.command(json.loads(line))

    # --- life -------------------------------------------------------------------------
    def start(self) -> None:
        ep_cfg = pj.EpConfig()
        ep_cfg.uaConfig.threadCnt = 0
        ep_cfg.uaConfig.mainThreadOnly = True
        ep_cfg.uaConfig.maxCalls = CALL_SLOTS
        ep_cfg.uaConfig.userAgent = f"Tsunagu farm {self.id}"
        echo = int(self.config.get("pj_log_level", 1))
        self.log_writer = RetransmitCounter(self, echo) if self.config.get("count_retransmissions") else None
        ep_cfg.logConfig.level = ep_cfg.logConfig.consoleLevel = 5 if self.log_writer else echo
        if self.log_writer:
            ep_cfg.logConfig.writer = self.log_writer
        ep_cfg.medConfig.threadCnt = 0
        # RTP on the SIP ioqueue, polled by this loop: pjmedia's own ioqueue thread wakes
        # every 10 ms even with no call (92 wakeups/s; 124 idle workers took half a core)
        ep_cfg.medConfig.hasIoqueue = False
        ep_cfg.medConfig.noVad = True
        ep_cfg.medConfig.ecTailLen = 0
        if self.policy == srv_failover.PJSIP_POLICY and not self.registrar:
            for ns in self.config.get("nameservers", []):
                ep_cfg.uaConfig.nameserver.append(ns)
        self.ep = FarmEndpoint(self)
        self.ep.libCreate()
        self.ep.libInit(ep_cfg)
        tcfg = pj.TransportConfig()
        tcfg.port = self.sip_port
        tcfg.boundAddress = self.address
        tcfg.publicAddress = self.address
        self.transport_id = self.ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tcfg)
        self.ep.libStart()
        self.ep.audDevManager().setNoDev()
        targets = None
        if not self.registrar and self.policy == srv_failover.FARM_POLICY:
            targets = srv_failover.resolve(self.domain, self.config["nameservers"])
        for spec in self.config["handsets"]:
            h = Handset(self, spec)
            if targets:
                rng = profiles.rng_for(self.seed, h.extension, "srv")
                h.failover = srv_failover.Failover(
                    srv_failover.order(targets, rng),
                    srv_failover.Backoff(h.profile.registration.backoff_base_s,
                                         h.profile.registration.backoff_max_s), rng)
            h.create(h.config(h.failover.current if h.failover else None))
            self.handsets[h.extension] = h
            if spec.get("register", True):
                self.later(spec.get("register_after", 0.0), h.register)
        self.sink.emit("worker_started", pid=os.getpid(), handsets=len(self.handsets), policy=self.policy,
                       port=self.sip_port)
        self.sink.flush()

    def run(self) -> None:
        last_flush = time.monotonic()
        while not self.stopping:
            now = time.monotonic()
            wait_ms = IDLE_POLL_MS
            if self.timers:
                wait_ms = max(0, min(wait_ms, int((self.timers[0][0] - now) * 1000)))
            if self.calls:
                wait_ms = min(wait_ms, BUSY_POLL_MS)
            self.ep.libHandleEvents(wait_ms)
            now = time.monotonic()
            while self.timers and self.timers[0][0] <= now:
                _, _, fn = heapq.heappop(self.timers)
                fn()
            self.read_commands()
            if now - last_flush >= FLUSH_EVERY_S or len(self.sink.pending) > 200:
                self.sink.flush()
                last_flush = now
        self.shutdown()

    def shutdown(self) -> None:
        for call in list(self.calls.values()):
            self.hang_up(call)
        deadline = time.monotonic() + 1.0
        while self.calls and time.monotonic() < deadline:
            self.ep.libHandleEvents(10)
        self.calls.clear()
        self.sink.emit("worker_stopped")
        try:
            self.sink.flush()
        except Exception as exc:  # the farm's Redis may already be gone at teardown
            print(f"final flush: {exc}", file=sys.stderr)
        for h in self.handsets.values():
            h.shutdown()
        self.handsets.clear()
        self.ep.libDestroy()
        self.graveyard.clear()


def _die_with_parent() -> None:
    """SIGTERM this process when the supervisor dies, however it dies (Linux prctl)."""
    try:
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    _die_with_parent()
    config = json.loads(Path(argv[0]).read_text())
    worker = Worker(config)

    def stop(*_):
        worker.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the supervisor's to handle
    worker.start()
    worker.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
