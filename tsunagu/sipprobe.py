"""Small SIP and rtpengine probes over UDP, standard library only.

`tsunagu verify` and the SIP tier's tests use these to ask a running service a question
the way a handset or a peer would: does a PBX node answer OPTIONS, can a handset register
with digest authentication, does a request sent to one node reach a contact registered on
another, does rtpengine answer an ng `ping`.

    python -m tsunagu.sipprobe options 10.251.0.10
    python -m tsunagu.sipprobe ngping 10.251.0.10
"""

from __future__ import annotations

import argparse
import hashlib
import re
import secrets
import socket
import sys
import time
from dataclasses import dataclass, field

SIP_PORT = 5060
NG_PORT = 2223


class ProbeError(RuntimeError):
    pass


@dataclass
class Message:
    """A parsed SIP message: a reply (status set) or a request (method set)."""

    first_line: str
    headers: dict[str, list[str]] = field(default_factory=dict)
    body: str = ""
    source: tuple[str, int] | None = None

    @property
    def status(self) -> int | None:
        m = re.match(r"SIP/2\.0 (\d{3})", self.first_line)
        return int(m.group(1)) if m else None

    @property
    def method(self) -> str | None:
        return None if self.first_line.startswith("SIP/2.0") else self.first_line.split(" ", 1)[0]

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        return values[0] if values else None


_COMPACT = {"v": "via", "f": "from", "t": "to", "i": "call-id", "m": "contact", "l": "content-length"}


def parse(data: bytes, source: tuple[str, int] | None = None) -> Message:
    text = data.decode("utf-8", errors="replace")
    head, _, body = text.partition("\r\n\r\n")
    lines = head.split("\r\n")
    msg = Message(lines[0], body=body, source=source)
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            key = name.strip().lower()
            msg.headers.setdefault(_COMPACT.get(key, key), []).append(value.strip())
    return msg


def digest_authorization(challenge: str, method: str, uri: str, user: str, password: str,
                         header_name: str = "Authorization", cnonce: str | None = None) -> str:
    """The Authorization header answering a WWW-/Proxy-Authenticate Digest challenge (MD5)."""
    params = dict(re.findall(r'(\w+)="?([^",]*)"?', challenge.removeprefix("Digest").strip()))
    realm, nonce = params.get("realm", ""), params["nonce"]

    def md5(s: str) -> str:
        return hashlib.md5(s.encode()).hexdigest()  # noqa: S324 - SIP digest is MD5 by definition

    ha1, ha2 = md5(f"{user}:{realm}:{password}"), md5(f"{method}:{uri}")
    parts = [f'username="{user}"', f'realm="{realm}"', f'nonce="{nonce}"', f'uri="{uri}"',
             "algorithm=MD5"]
    if "auth" in params.get("qop", "").split(","):
        cnonce = cnonce or secrets.token_hex(8)
        response = md5(f"{ha1}:{nonce}:00000001:{cnonce}:auth:{ha2}")
        parts += ["qop=auth", "nc=00000001", f'cnonce="{cnonce}"']
    else:
        response = md5(f"{ha1}:{nonce}:{ha2}")
    parts.append(f'response="{response}"')
    if "opaque" in params:
        parts.append(f'opaque="{params["opaque"]}"')
    return f"{header_name}: Digest " + ", ".join(parts)


class Endpoint:
    """A UDP SIP user agent bound to the local address that faces `toward`.

    It sends requests (answering one digest challenge), and can wait for a request to
    arrive at its own contact, which is how a relay through the PBX is observed."""

    def __init__(self, toward: str, user: str = "probe", domain: str = "invalid",
                 password: str | None = None, timeout: float = 2.0):
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        probe.connect((toward, SIP_PORT))
        local = probe.getsockname()[0]
        probe.close()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((local, 0))
        self.address, self.port = self.sock.getsockname()
        self.user, self.domain, self.password, self.timeout = user, domain, password, timeout
        self.cseq = 0
        self.pending: list[Message] = []

    def close(self) -> None:
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def contact(self) -> str:
        return f"<sip:{self.user}@{self.address}:{self.port}>"

    def request(self, method: str, host: str, uri: str | None = None, to: str | None = None,
                extra: str = "", port: int = SIP_PORT, sdp: str = "") -> tuple[Message, float]:
        """Send a request to host:port and return the final reply and its round trip (s)."""
        uri = uri or f"sip:{host}"
        call_id, tag = secrets.token_hex(8), secrets.token_hex(4)
        authorization = ""
        for _ in range(2):
            self.cseq += 1
            branch = "z9hG4bK" + secrets.token_hex(8)
            text = (f"{method} {uri} SIP/2.0\r\n"
                    f"Via: SIP/2.0/UDP {self.address}:{self.port};branch={branch};rport\r\n"
                    "Max-Forwards: 70\r\n"
                    f"From: <sip:{self.user}@{self.domain}>;tag={tag}\r\n"
                    f"To: <{to or uri}>\r\n"
                    f"Call-ID: {call_id}\r\nCSeq: {self.cseq} {method}\r\n"
                    f"Contact: {self.contact}\r\n{extra}{authorization}"
                    "User-Agent: tsunagu-sipprobe\r\n"
                    + ("Content-Type: application/sdp\r\n" if sdp else "")
                    + f"Content-Length: {len(sdp.encode())}\r\n\r\n{sdp}")
            started = time.monotonic()
            self.sock.sendto(text.encode(), (host, port))
            reply = self._final_reply(call_id, self.cseq)
            rtt = time.monotonic() - started
            if method == "INVITE" and reply.status >= 300:
                self._ack(text, reply)
            challenge = reply.header("www-authenticate") or reply.header("proxy-authenticate")
            if reply.status in (401, 407) and challenge and self.password and not authorization:
                name = "Authorization" if reply.status == 401 else "Proxy-Authorization"
                authorization = digest_authorization(challenge, method, uri, self.user, self.password,
                                                     name) + "\r\n"
                continue
            return reply, rtt
        return reply, rtt

    def _ack(self, invite: str, reply: Message) -> None:
        """ACK a failed INVITE (same branch, To with the reply's tag) so no one retransmits."""
        request_line, rest = invite.split("\r\n", 1)
        head = rest.split("\r\n\r\n", 1)[0]
        keep = [h for h in head.split("\r\n") if h.split(":", 1)[0] in ("Via", "From", "Call-ID", "Max-Forwards")]
        cseq = (reply.header("cseq") or "").split(" ")[0]
        text = (request_line.replace("INVITE", "ACK", 1) + "\r\n" + "\r\n".join(keep)
                + f"\r\nTo: {reply.header('to')}\r\nCSeq: {cseq} ACK\r\nContent-Length: 0\r\n\r\n")
        if reply.source:
            self.sock.sendto(text.encode(), reply.source)

    def register(self, host: str, expires: int = 300) -> Message:
        reply, _ = self.request("REGISTER", host, uri=f"sip:{self.domain}",
                                to=f"sip:{self.user}@{self.domain}",
                                extra=f"Expires: {expires}\r\n")
        return reply

    def wait_request(self, timeout: float | None = None) -> Message:
        """The next request that arrives at this endpoint (answered 200 if OPTIONS, else 486)."""
        if self.pending:
            msg = self.pending.pop(0)
        else:
            msg = self._receive(lambda m: m.method is not None, timeout)
        self._answer(msg, 200 if msg.method == "OPTIONS" else 486)
        return msg

    def _final_reply(self, call_id: str, cseq: int) -> Message:
        return self._receive(lambda m: m.status is not None and m.status >= 200
                             and m.header("call-id") == call_id
                             and (m.header("cseq") or "").startswith(f"{cseq} "), self.timeout)

    def _receive(self, wanted, timeout: float | None) -> Message:
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ProbeError("no answer")
            self.sock.settimeout(left)
            try:
                data, source = self.sock.recvfrom(65535)
            except TimeoutError:
                raise ProbeError("no answer") from None
            msg = parse(data, source)
            if wanted(msg):
                return msg
            if msg.method is not None:
                self.pending.append(msg)

    def _answer(self, req: Message, status: int) -> None:
        reason = {200: "OK", 486: "Busy Here"}[status]
        to = req.header("to") or ""
        if ";tag=" not in to:
            to += ";tag=" + secrets.token_hex(4)
        via = "".join(f"Via: {v}\r\n" for v in req.headers.get("via", []))
        text = (f"SIP/2.0 {status} {reason}\r\n{via}From: {req.header('from')}\r\nTo: {to}\r\n"
                f"Call-ID: {req.header('call-id')}\r\nCSeq: {req.header('cseq')}\r\n"
                "Content-Length: 0\r\n\r\n")
        if req.source:
            self.sock.sendto(text.encode(), req.source)


def options(host: str, port: int = SIP_PORT, timeout: float = 2.0) -> tuple[Message, float]:
    """Ask a SIP server whether it is alive: its final reply to OPTIONS and the round trip."""
    with Endpoint(host, timeout=timeout) as ep:
        return ep.request("OPTIONS", host, port=port)


def ng_ping(host: str, port: int = NG_PORT, timeout: float = 2.0) -> float:
    """Send rtpengine's ng `ping` and return the round trip; raise unless it answers `pong`."""
    cookie = secrets.token_hex(4).encode()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        started = time.monotonic()
        sock.sendto(cookie + b" d7:command4:pinge", (host, port))
        try:
            data = sock.recv(1500)
        except TimeoutError:
            raise ProbeError(f"rtpengine {host}:{port}: no answer") from None
        rtt = time.monotonic() - started
    if data != cookie + b" d6:result4:ponge":
        raise ProbeError(f"rtpengine {host}:{port}: unexpected answer {data[:80]!r}")
    return rtt


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tsunagu.sipprobe", description=__doc__.splitlines()[0])
    p.add_argument("probe", choices=["options", "ngping"])
    p.add_argument("host")
    p.add_argument("--port", type=int)
    p.add_argument("--timeout", type=float, default=2.0)
    args = p.parse_args(argv)
    try:
        if args.probe == "options":
            reply, rtt = options(args.host, args.port or SIP_PORT, args.timeout)
            print(f"{reply.first_line}  ({rtt * 1000:.2f} ms)  {reply.header('server') or ''}")
            return 0 if reply.status == 200 else 1
        rtt = ng_ping(args.host, args.port or NG_PORT, args.timeout)
        print(f"pong  ({rtt * 1000:.2f} ms)")
        return 0
    except (ProbeError, OSError) as exc:
        print(f"{args.host}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
