"""Code and playbooks stay clean: ruff on the Python, ansible-lint (production profile) on ansible/."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def test_ruff_is_clean():
    proc = subprocess.run([str(BIN / "ruff"), "check", "."], cwd=REPO, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ansible_lint_is_clean():
    # ansible-lint reads ansible.cfg (roles path, connection plugin) from the folder it runs in.
    env = dict(os.environ, PATH=f"{BIN}:{os.environ.get('PATH', '')}")
    proc = subprocess.run([str(BIN / "ansible-lint"), "--offline", "--profile", "production", "-q"],
                          cwd=REPO / "ansible", capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
