"""The Locust side's view of the farm: which handsets are on a call, from the event stream."""

from __future__ import annotations

from loadtests.farm_link import FarmLink


class _Farm:
    def __init__(self):
        self.sent = 0

    def command(self, op, **fields):
        self.sent += 1
        return f"r{self.sent}"


def test_handsets_are_busy_from_the_command_until_their_call_ends():
    link = FarmLink(_Farm(), fire=lambda **_: None)
    request = link.place("call", "staff", "staff:extension", 60, **{"from": "2001", "to": "2002"})
    assert link.busy("2001") and link.busy("2002") and not link.busy("2003")
    link._handle({"type": "call_placed", "request": request, "handset": "2001", "call_id": "c1", "t": "1.0"})
    link._handle({"type": "invite_received", "handset": "2002", "call_id": "c1", "t": "1.1"})
    link._handle({"type": "call_connected", "request": request, "handset": "2001", "call_id": "c1", "t": "1.5"})
    assert link.busy("2001") and link.busy("2002")  # the command is done; the call is not
    link._handle({"type": "bye", "handset": "2001", "call_id": "c1", "t": "3.0"})
    link._handle({"type": "bye", "handset": "2002", "call_id": "c1", "t": "3.0"})
    assert not link.busy("2001") and not link.busy("2002")


def test_a_rejected_or_failed_call_frees_the_handset():
    link = FarmLink(_Farm(), fire=lambda **_: None)
    link._handle({"type": "invite_received", "handset": "3001", "call_id": "c2", "t": "1.0"})
    link._handle({"type": "invite_received", "handset": "3001", "call_id": "c3", "t": "1.0"})
    link._handle({"type": "rejected", "handset": "3001", "call_id": "c3", "t": "1.1"})
    assert link.busy("3001")
    link._handle({"type": "call_failed", "handset": "3001", "call_id": "c2", "t": "2.0"})
    assert not link.busy("3001")
