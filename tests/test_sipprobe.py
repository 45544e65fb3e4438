"""tsunagu.sipprobe against tiny fake servers on loopback (no lab, no root)."""

from __future__ import annotations

import hashlib
import socket
import threading

import pytest

from tsunagu import sipprobe


def test_digest_matches_rfc2617_example():
    challenge = ('Digest realm="testrealm@host.com", qop="auth,auth-int", '
                 'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"')
    header = sipprobe.digest_authorization(challenge, "GET", "/dir/index.html", "Mufasa",
                                           "Circle Of Life", cnonce="0a4f113b")
    assert 'response="6629fae49393a05397450978507c4ef1"' in header
    assert 'opaque="5ccc069c403ebaf9f0171e9517f40e41"' in header


def test_parse_reads_status_headers_and_compact_forms():
    msg = sipprobe.parse(b"SIP/2.0 200 OK\r\nv: SIP/2.0/UDP a\r\ni: abc\r\nServer: x\r\n\r\nbody")
    assert msg.status == 200 and msg.method is None
    assert msg.header("call-id") == "abc" and msg.header("Server") == "x" and msg.body == "body"
    assert sipprobe.parse(b"OPTIONS sip:a SIP/2.0\r\n\r\n").method == "OPTIONS"


class FakeRegistrar(threading.Thread):
    """Challenges the first request of each Call-ID, accepts a correct digest with 200."""

    def __init__(self, password: str):
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(5)
        self.port = self.sock.getsockname()[1]
        self.password = password
        self.seen: list[sipprobe.Message] = []

    def run(self):
        while True:
            try:
                data, source = self.sock.recvfrom(65535)
            except OSError:
                return
            req = sipprobe.parse(data, source)
            self.seen.append(req)
            auth = req.header("authorization")
            if auth is None:
                status = '401 Unauthorized\r\nWWW-Authenticate: Digest realm="lab", nonce="n1", qop="auth"'
            else:
                fields = dict(p.split("=", 1) for p in auth.removeprefix("Digest ").replace('"', "").split(", "))
                md5 = lambda s: hashlib.md5(s.encode()).hexdigest()  # noqa: E731,S324
                ha1 = md5(f"{fields['username']}:lab:{self.password}")
                ha2 = md5(f"{req.method}:{fields['uri']}")
                good = md5(f"{ha1}:n1:{fields['nc']}:{fields['cnonce']}:auth:{ha2}")
                status = "200 OK" if fields["response"] == good else "403 Forbidden"
            reply = (f"SIP/2.0 {status}\r\nVia: {req.header('via')}\r\nFrom: {req.header('from')}\r\n"
                     f"To: {req.header('to')};tag=x\r\nCall-ID: {req.header('call-id')}\r\n"
                     f"CSeq: {req.header('cseq')}\r\nServer: fake\r\nContent-Length: 0\r\n\r\n")
            self.sock.sendto(reply.encode(), source)


@pytest.fixture
def registrar():
    server = FakeRegistrar("s3cret")
    server.start()
    yield server
    server.sock.close()


def test_register_answers_the_digest_challenge(registrar):
    with sipprobe.Endpoint("127.0.0.1", "2001", "lab.test", "s3cret") as ep:
        reply, _ = ep.request("REGISTER", "127.0.0.1", uri="sip:lab.test", port=registrar.port)
    assert reply.status == 200
    assert [m.method for m in registrar.seen] == ["REGISTER", "REGISTER"]
    assert registrar.seen[1].header("cseq").startswith("2 ")


def test_wrong_password_is_refused(registrar):
    with sipprobe.Endpoint("127.0.0.1", "2001", "lab.test", "wrong") as ep:
        reply, _ = ep.request("REGISTER", "127.0.0.1", uri="sip:lab.test", port=registrar.port)
    assert reply.status == 403


def test_options_without_password_returns_the_challenge(registrar):
    reply, rtt = sipprobe.options("127.0.0.1", registrar.port)
    assert reply.status == 401 and reply.header("server") == "fake" and rtt > 0


def test_options_to_a_silent_port_raises():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        with pytest.raises(sipprobe.ProbeError):
            sipprobe.options("127.0.0.1", silent.getsockname()[1], timeout=0.2)


def test_ng_ping_expects_pong():
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))

    def pong():
        data, source = server.recvfrom(1500)
        cookie = data.split(b" ", 1)[0]
        server.sendto(cookie + b" d6:result4:ponge", source)

    threading.Thread(target=pong, daemon=True).start()
    try:
        assert sipprobe.ng_ping("127.0.0.1", server.getsockname()[1]) > 0
    finally:
        server.close()


def test_endpoint_receives_and_answers_a_relayed_request():
    with sipprobe.Endpoint("127.0.0.1") as callee, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as proxy:
        proxy.bind(("127.0.0.1", 0))
        proxy.settimeout(2)
        proxy.sendto(b"OPTIONS sip:2001@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK1\r\n"
                     b"From: <sip:a@b>;tag=1\r\nTo: <sip:2001@b>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\n\r\n",
                     (callee.address, callee.port))
        got = callee.wait_request(2)
        answer = sipprobe.parse(proxy.recv(1500))
    assert got.method == "OPTIONS" and answer.status == 200 and answer.header("call-id") == "c1"
