from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

# tests/verify checks deployed hosts; `tsunagu verify` runs it inside each host.
collect_ignore = ["verify"]

DATA = Path(__file__).parent / "data"
TINY = DATA / "tiny.yaml"


@pytest.fixture
def tiny_text() -> str:
    return TINY.read_text(encoding="utf-8")


@pytest.fixture
def write_estate(tmp_path):
    """Write estate text to a file and return its path."""

    def write(text: str, name: str = "estate.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write


@dataclass(frozen=True)
class DeployedLab:
    estate: Path
    run_dir: Path
    secrets: Path
    prefix: str

    @property
    def inventory(self) -> Path:
        return self.run_dir / "inventory.yml"

    def namespace(self, host: str) -> str:
        return f"{self.prefix}{host}"


@pytest.fixture(scope="session")
def lab_tmp():
    """A folder the lab's services can read. pytest's own tmp dirs are mode 0700 under root,
    and etcd, PostgreSQL and Kamailio run as their own users."""
    path = Path(tempfile.mkdtemp(prefix="tsunagu-test-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def deployed_lab(lab_tmp) -> DeployedLab:
    """tiny.yaml up and deployed once per test session, for every suite that needs a live PBX.

    Its own prefix and address pool keep it apart from a developer's lab (tsu-, 10.251/16)
    and from the other lab tests."""
    if os.geteuid() != 0:
        pytest.skip("the lab needs root")
    base = lab_tmp / "deployed-lab"
    base.mkdir()
    estate = base / "tiny.yaml"
    estate.write_text(TINY.read_text(encoding="utf-8").replace("10.251.0.0/16", "10.250.0.0/16"), encoding="utf-8")
    lab = DeployedLab(estate, base / "run", base / "secrets" / "shiken.tsunagu.test.yaml", "tt-")
    env = dict(os.environ, TSUNAGU_SECRETS_DIR=str(lab.secrets.parent))
    cli = [sys.executable, "-m", "tsunagu.cli"]
    try:
        for args in (["lab", "up", str(estate), "--run-dir", str(lab.run_dir), "--prefix", lab.prefix],
                     ["deploy", str(estate), "--run-dir", str(lab.run_dir)]):
            proc = subprocess.run(cli + args, env=env, capture_output=True, text=True, check=False)
            assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
        yield lab
    finally:
        subprocess.run(cli + ["lab", "down", "--run-dir", str(lab.run_dir)], env=env, capture_output=True,
                       check=False)
