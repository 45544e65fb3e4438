"""The handset farm against a real lab of tiny.yaml: registration, calls, events, crash
recovery, clean shutdown. Needs root; the lab is deployed once for the module (~4 min).

TSUNAGU_FARM_TEST_RUN_DIR=<run dir of a deployed lab of tiny.yaml> reuses that lab instead
(its secrets must be where TSUNAGU_SECRETS_DIR says), for quick iterations."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from simulator import events
from simulator.control import Farm

from .conftest import TINY

pytestmark = pytest.mark.lab
STAFF = ["2000", "2001", "2002", "2003", "2004", "2005", "2010"]


@pytest.fixture(scope="module")
def lab_run_dir():
    if os.geteuid() != 0:
        pytest.skip("the lab needs root")
    reuse = os.environ.get("TSUNAGU_FARM_TEST_RUN_DIR")
    if reuse:
        yield Path(reuse)
        return
    # Services run as their own users (etcd, postgres), so the run dir must be readable by
    # them: pytest's tmp_path is 0700, hence a world-readable folder of our own.
    base = Path(tempfile.mkdtemp(prefix="tf-farm-lab-", dir="/tmp"))
    base.chmod(0o755)
    estate = base / "tiny.yaml"
    estate.write_text(TINY.read_text(encoding="utf-8").replace("10.251.0.0/16", "10.255.0.0/16"), encoding="utf-8")
    run_dir = base / "run"
    saved = os.environ.get("TSUNAGU_SECRETS_DIR")
    os.environ["TSUNAGU_SECRETS_DIR"] = str(base / "secrets")  # the farm's supervisor inherits it
    cli = [sys.executable, "-m", "tsunagu.cli"]
    try:
        for args in (["lab", "up", str(estate), "--run-dir", str(run_dir), "--prefix", "tf-"],
                     ["deploy", str(estate), "--run-dir", str(run_dir)]):
            proc = subprocess.run(cli + args, capture_output=True, text=True, check=False)
            assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
        yield run_dir
    finally:
        subprocess.run(cli + ["lab", "down", "--run-dir", str(run_dir)], capture_output=True, check=False)
        if (run_dir / "farm").exists():  # the farm's logs outlive the lab, for a failed run
            shutil.rmtree("/tmp/tf-farm-lab-last", ignore_errors=True)
            shutil.copytree(run_dir / "farm", "/tmp/tf-farm-lab-last",
                            ignore=shutil.ignore_patterns("*.sock", "workers"))
        shutil.rmtree(base, ignore_errors=True)
        if saved is None:
            os.environ.pop("TSUNAGU_SECRETS_DIR", None)
        else:
            os.environ["TSUNAGU_SECRETS_DIR"] = saved


@pytest.fixture(scope="module")
def farm(lab_run_dir):
    farm = Farm.start(lab_run_dir, on_duty="always", behaviour="answer", delay_scale=0.2)
    try:
        yield farm
    finally:
        farm.stop()


def _registered(farm) -> set[str]:
    return {e for e, s in farm.redis.hgetall(events.HANDSETS).items() if s.startswith("registered")}


def test_every_handset_registers_through_srv_with_digest(farm):
    farm.wait_registered(timeout_s=60)
    assert set(STAFF) <= _registered(farm)
    registered = [e for e in farm.events() if e["type"] == "registered" and e["handset"] in STAFF]
    assert {e["handset"] for e in registered} == set(STAFF)
    assert {e["target"] for e in registered} == {"dc-east.shiken.tsunagu.test"}  # SRV priority 10
    starts = [e for e in farm.events() if e["type"] == "farm" and e["state"] == "starting"]
    assert starts[0]["policy"] == "farm-srv-rfc5626"


def test_an_extension_call_connects_and_its_events_join_by_call_id(farm):
    farm.wait_registered(timeout_s=60)
    request = farm.call("2001", "2002", hold_s=1.0)
    outcome = farm.outcome(request, timeout_s=30)
    assert outcome and outcome["type"] == "call_connected", outcome
    call_id = outcome["call_id"]
    time.sleep(3)
    seen = [e for e in farm.events() if e.get("call_id") == call_id]
    kinds = {(e["type"], e["handset"]) for e in seen}
    assert {("call_placed", "2001"), ("invite_received", "2002"), ("ringing_sent", "2002"),
            ("answered", "2002"), ("call_connected", "2001"), ("bye", "2001"), ("bye", "2002")} <= kinds
    assert all(events.problems(e) == [] for e in seen)
    ts = {e["type"]: float(e["t"]) for e in seen}
    assert ts["call_placed"] <= ts["invite_received"] <= ts["answered"] <= ts["call_connected"]


def test_an_outbound_call_reaches_the_carrier_which_records_the_caller_id(farm):
    from simulator.carrier import public_number

    farm.wait_registered(timeout_s=60)
    request = farm.call("2003", "0" + public_number(0, 1), hold_s=1.0)
    outcome = farm.outcome(request, timeout_s=30)
    assert outcome and outcome["type"] == "call_connected", outcome
    got = farm.wait_for("outbound_received", call_id=outcome["call_id"], timeout_s=5)
    assert got and got["handset"] == public_number(0, 1) and got["caller_id"]


def test_a_handset_set_to_dnd_refuses_then_answers_again(farm):
    farm.wait_registered(timeout_s=60)
    farm.set_state("2004", "dnd")
    assert farm.wait_for("state_set", handset="2004", state="dnd", timeout_s=5)
    outcome = farm.outcome(farm.call("2005", "2004"), timeout_s=30)
    assert outcome["type"] == "call_failed" and outcome["status"] == "480", outcome
    farm.set_state("2004", "available")
    assert farm.wait_for("state_set", handset="2004", state="available", timeout_s=5)
    outcome = farm.outcome(farm.call("2005", "2004", hold_s=0.5), timeout_s=30)
    assert outcome["type"] == "call_connected", outcome


def test_a_killed_worker_is_restarted_and_its_handsets_register_again(farm):
    farm.wait_registered(timeout_s=60)
    worker = next(w for w, info in farm.workers().items() if "2004" in info["handsets"])
    old_pid = farm.workers()[worker]["pid"]
    mark = farm.events()[-1]["id"]
    farm.kill_worker(handset="2004")
    crashed = farm.wait_for("worker_crashed", crashed_worker=worker, timeout_s=10)
    assert crashed and crashed["pid"] == str(old_pid)
    assert farm.wait_for("worker_restarted", crashed_worker=worker, timeout_s=10)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        again = {e["handset"] for e in farm.events(since=mark) if e["type"] == "registered"}
        if set(farm.workers()[worker]["handsets"]) <= again:
            break
        time.sleep(0.5)
    assert set(farm.workers()[worker]["handsets"]) <= again
    assert farm.workers()[worker]["pid"] != old_pid
    assert farm.status()["workers_alive"] == len(farm.workers())


def test_stop_leaves_no_process_behind(farm):
    pids = [w["pid"] for w in farm.workers().values()] + [farm.pid]
    assert farm.stop()
    time.sleep(0.5)
    left = [p for p in pids if Path(f"/proc/{p}").exists()]
    assert left == []
    stray = subprocess.run(["pgrep", "-f", str(farm.dir)], capture_output=True, text=True).stdout.split()
    assert stray == []


def test_the_rehearsal_stage_registers_the_staff_and_calls_every_group(lab_run_dir, farm, capsys):
    import json

    from tsunagu.estate import load_estate
    from tsunagu.rehearse import farm_stage

    assert not farm.running()  # the module's farm is stopped by now; the stage gets its own
    estate = load_estate(json.loads((lab_run_dir / "lab-state.json").read_text())["estate"])
    stage_farm = Farm.start(lab_run_dir, on_duty="always", behaviour="answer", delay_scale=0.2)
    try:
        stage_farm.wait_registered(timeout_s=60)
        assert farm_stage(estate, stage_farm) is None
    finally:
        assert stage_farm.stop()
    out = capsys.readouterr().out
    assert "registered 7 of 7 staff handsets" in out
    published = [g for g in estate.hunt_groups if g.answers]
    assert f"hunt groups: {len(published)} called through the carrier" in out
