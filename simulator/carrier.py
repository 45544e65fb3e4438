"""The carrier simulator: the public network at the far end of the city's trunks.

Its phones are ordinary farm workers living in the lab's carrier namespace, bound to the
carrier host's own address (ports 5070+), because the carrier softswitch (ansible/roles/
carrier) takes REGISTER without authentication only from that address. Each carrier
worker holds

* seven public phones registered under public numbers (`0350000001`...): they answer the
  city's outbound calls and record the caller ID each call presents (`outbound_received`:
  the P-Asserted-Identity user if present, else the From user);
* one citizen line that does not register: `dial` places a citizen's call to a DID through
  the softswitch, which sends it to the city over the primary trunk (then the secondary).

`trunk_down`/`trunk_up` set the carrier end of a trunk's veth down or up inside the carrier
namespace: the softswitch's OPTIONS probing sees the trunk go silent and fails over.
"""

from __future__ import annotations

import subprocess

PUBLIC_PHONES_PER_WORKER = 7


def public_number(worker: int, n: int) -> str:
    return f"035{worker:03d}{n:04d}"


def citizen_number(worker: int) -> str:
    return f"045{worker:03d}9999"


def phones(worker: int) -> list[dict]:
    """Account specs for carrier worker `worker` (the worker module's handset format)."""
    out = [{"extension": public_number(worker, n), "profile": "public", "public": True}
           for n in range(1, PUBLIC_PHONES_PER_WORKER + 1)]
    out.append({"extension": citizen_number(worker), "profile": "public", "register": False})
    return out


def public_numbers(workers: int) -> list[str]:
    return [public_number(w, n) for w in range(workers) for n in range(1, PUBLIC_PHONES_PER_WORKER + 1)]


def trunk_interface(trunk_id: str) -> str:
    from tsunagu.lab import ifname

    return ifname("t-", trunk_id)


def set_trunk(prefix: str, trunk_id: str, up: bool) -> None:
    """Take a trunk down (or back up) at the carrier's end."""
    from tsunagu.plan import CARRIER_HOST

    subprocess.run(["ip", "-n", prefix + CARRIER_HOST, "link", "set", trunk_interface(trunk_id),
                    "up" if up else "down"], check=True, capture_output=True, text=True)


def trunk_down(prefix: str, trunk_id: str) -> None:
    set_trunk(prefix, trunk_id, False)


def trunk_up(prefix: str, trunk_id: str) -> None:
    set_trunk(prefix, trunk_id, True)
