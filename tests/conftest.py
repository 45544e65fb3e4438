from __future__ import annotations

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
