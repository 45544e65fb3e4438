"""The whole rehearsal on tiny.yaml: lab up, deploy, deploy again with no change, verify,
lab down, and nothing left behind. Needs root and the Debian services (bin/setup)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
PREFIX = "tr-"  # apart from developers' labs (tsu-) and other tests' labs
POOL = "10.253.0.0/16"  # apart from developers' labs (10.251/16) and test_lab.py (10.252/16)

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root"),
]


def lab_namespaces() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(PREFIX)]


def processes_mentioning(text: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmdline and "pytest" not in cmdline:
                found.append(f"{proc.name}: {cmdline[:120]}")
    return found


def test_rehearsal_of_tiny_estate_passes_and_leaves_nothing(lab_tmp):
    assert not lab_namespaces(), f"a {PREFIX}* lab is already up; take it down before running this test"
    tmp_path = lab_tmp / "rehearsal"
    tmp_path.mkdir()
    estate = tmp_path / "tiny.yaml"
    estate.write_text((DATA / "tiny.yaml").read_text().replace("10.251.0.0/16", POOL))
    output = tmp_path / "run"
    env = dict(os.environ, TSUNAGU_SECRETS_DIR=str(tmp_path / "secrets"))
    proc = subprocess.run([sys.executable, "-m", "tsunagu.cli", "rehearse", str(estate), "--output", str(output),
                           "--scenario", str(DATA / "tiny-storm.yaml"), "--sla", str(DATA / "tiny-sla.yaml"),
                           "--prefix", PREFIX],
                          capture_output=True, text=True, env=env, timeout=1500, check=False)
    log = proc.stdout[-8000:] + proc.stderr[-4000:]
    assert proc.returncode == 0, log
    assert "rehearsal passed" in proc.stdout, log
    assert "deploy again: a second run must change nothing" in proc.stdout
    assert (output / "verify" / "dc-east.xml").exists()
    storm = output / "storm"
    assert f"report: {storm / 'report.html'}" in proc.stdout
    gates = ET.parse(storm / "gates.xml").getroot()
    failed = [c.get("name") for c in gates.iter("testcase") if c.find("failure") is not None]
    assert int(gates.get("tests")) >= 8 and not failed, failed
    metrics = json.loads((storm / "metrics.json").read_text())
    assert set(metrics["groups"]) == {"daihyo", "soumu", "shimin", "kikaku", "fukushi"}
    assert all(g["offered"] >= 1 for g in metrics["groups"].values()), "the storm rings every group"
    assert metrics["registration"]["successes"] >= 7, "the registration storm re-registered every handset"
    assert (storm / "locust_stats.csv").exists() and (storm / "locust.html").exists()
    secrets = tmp_path / "secrets" / "shiken.tsunagu.test.yaml"
    assert oct(secrets.stat().st_mode & 0o777) == "0o600"
    assert not lab_namespaces()
    assert not processes_mentioning(str(output)), "processes of the run are still alive"
    assert not list(Path("/etc/netns").glob(f"{PREFIX}*"))
