"""`tsunagu farm`: the handset farm (simulator/) against a lab: start, stop, status, calls.

    tsunagu farm start --run-dir runs/shiken          # every handset of the lab's estate
    tsunagu farm call 2001 2002 --hold 5 --wait        # an extension call
    tsunagu farm dial 0736-77-2520                     # a citizen's call through the carrier
    tsunagu farm kill --handset 2004                   # a dead phone; the supervisor restarts it
    tsunagu farm stop
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def _shard(text: str) -> tuple[int, int]:
    """`i/n` with i counted from 1 on the command line (shard 1/4 .. 4/4)."""
    i, n = (int(x) for x in text.split("/"))
    if not 1 <= i <= n:
        raise ValueError(text)
    return i - 1, n


def _run_dir(args) -> Path:
    if args.run_dir:
        return Path(args.run_dir)
    from .cli import DEFAULT_ESTATE, load_or_exit
    from .lab import default_run_dir

    return default_run_dir(load_or_exit(getattr(args, "estate", None) or str(DEFAULT_ESTATE)).municipality.sip_domain)


def _farm(args):
    from simulator.control import open_farm

    return open_farm(_run_dir(args), args.shard)


def _wait_outcome(farm, request: str, timeout_s: float) -> int:
    e = farm.outcome(request, timeout_s)
    if e is None:
        print(f"no outcome for request {request} within {timeout_s:g} s", file=sys.stderr)
        return 1
    print(json.dumps(e, ensure_ascii=False))
    return 0 if e["type"] == "call_connected" else 1


def _command(args) -> int:
    from simulator.control import Farm, FarmError

    if os.geteuid() != 0:
        print("tsunagu farm: needs root (its workers run inside the lab's namespaces)", file=sys.stderr)
        return 1
    try:
        if args.action == "start":
            farm = Farm.start(_run_dir(args), args.estate, shard=args.shard, policy=args.policy, seed=args.seed,
                              redis_url=args.redis_url, carrier_workers=args.carrier_workers,
                              on_duty=args.on_duty, behaviour=args.behaviour, foreground=args.foreground)
            print(f"farm started (pid {farm.pid}); events in {farm.settings['redis_url']}")
            if args.wait:
                got = farm.wait_registered(timeout_s=args.wait)
                print(f"{got} handsets and carrier phones registered")
            return 0
        farm = _farm(args)
        if args.action == "stop":
            clean = farm.stop()
            print("farm stopped" + ("" if clean else "; SOME WORKERS ARE STILL RUNNING"))
            return 0 if clean else 1
        if args.action == "status":
            print(json.dumps(farm.status(), indent=1))
            return 0
        if args.action == "events":
            for e in farm.events()[-args.last:] if args.last else farm.events():
                if not args.type or e["type"] == args.type:
                    print(json.dumps(e, ensure_ascii=False))
            return 0
        if args.action == "call":
            request = farm.call(args.source, args.destination, hold_s=args.hold)
        elif args.action == "dial":
            request = farm.dial(args.number, hold_s=args.hold)
        elif args.action == "transfer":
            request = farm.transfer(args.handset, args.destination)
        elif args.action == "set":
            request = farm.set_state(args.handset, args.state)
        elif args.action == "kill":
            request = farm.kill_worker(worker=args.worker, handset=args.handset)
        elif args.action == "trunk":
            farm.trunk(args.trunk, args.state == "up")
            print(f"trunk {args.trunk} {args.state}")
            return 0
        print(f"request {request}")
        if getattr(args, "wait", None) and args.action in ("call", "dial"):
            return _wait_outcome(farm, request, args.wait)
        return 0
    except (FarmError, ValueError) as exc:
        print(f"tsunagu farm: {exc}", file=sys.stderr)
        return 1


def add_command(sub) -> None:
    from simulator.srv_failover import FARM_POLICY, POLICIES

    p = sub.add_parser("farm", help="the handset farm: the estate's staff as pjsua2 handsets, and a carrier",
                       description="Run the handset farm (simulator/) against the lab of a run dir: every "
                       "staff member's handset registers from its site's namespace; the carrier simulator "
                       "plays the public network. Events go to the farm's Redis stream.")
    p.set_defaults(func=_command)
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    def action(name: str, help_text: str):
        a = actions.add_parser(name, help=help_text)
        a.add_argument("--run-dir", help="the lab's run dir (default: runs/<first label of sip_domain>/)")
        a.add_argument("--shard", type=_shard, default=(0, 1), metavar="I/N",
                       help="this machine's slice of the handsets, 1/N .. N/N (default: all)")
        return a

    a = action("start", "start the farm (returns once the supervisor is up)")
    a.add_argument("estate", nargs="?", help="estate YAML file (default: the lab's)")
    a.add_argument("--policy", choices=POLICIES, default=FARM_POLICY, help="registration failover policy")
    a.add_argument("--seed", type=int, default=1, help="behaviour seed (same seed, same decisions)")
    a.add_argument("--redis-url", help="write events to this Redis instead of the farm's own")
    a.add_argument("--carrier-workers", type=int, default=1, help="carrier simulator processes (4 calls each)")
    a.add_argument("--on-duty", choices=["schedule", "always"], default="schedule",
                   help="staff are on duty per the estate's default schedule, or always")
    a.add_argument("--behaviour", choices=["profiles", "answer"], default="profiles",
                   help="people per their profiles (busy, no answer, DND...), or everyone on duty answers")
    a.add_argument("--foreground", action="store_true", help="run the supervisor here; Ctrl-C stops the farm")
    a.add_argument("--wait", type=float, default=0, metavar="S", help="wait up to S seconds for registrations")
    action("stop", "stop the farm and every process it started")
    action("status", "workers, registrations, restarts, policy")
    a = action("events", "print the event stream as JSON lines")
    a.add_argument("--type", help="only events of this type")
    a.add_argument("--last", type=int, default=0, help="only the last N events")
    a = action("call", "place a call from a handset (or a carrier phone)")
    a.add_argument("source", help="the calling handset's extension")
    a.add_argument("destination", help="extension, or outside-line prefix + public number")
    a.add_argument("--hold", type=float, default=0, help="hang up S seconds after answer (0: the callee decides)")
    a.add_argument("--wait", type=float, default=0, metavar="S", help="wait up to S seconds for the outcome")
    a = action("dial", "a citizen's call from the carrier to one of the city's numbers")
    a.add_argument("number", help="a DID, e.g. 0736-77-2520")
    a.add_argument("--hold", type=float, default=0)
    a.add_argument("--wait", type=float, default=0, metavar="S")
    a = action("transfer", "blind-transfer a handset's connected call")
    a.add_argument("handset")
    a.add_argument("destination")
    a = action("set", "make a handset busy, do-not-disturb, or available again")
    a.add_argument("handset")
    a.add_argument("state", choices=["busy", "dnd", "available"])
    a = action("kill", "SIGKILL a worker (a dead phone); the supervisor restarts it")
    a.add_argument("--worker")
    a.add_argument("--handset")
    a = action("trunk", "take a carrier trunk down or bring it back (at the carrier's end)")
    a.add_argument("trunk")
    a.add_argument("state", choices=["up", "down"])
