"""Problems found in an estate file, each carrying where it came from."""

from __future__ import annotations

from dataclasses import dataclass

Path = tuple[str | int, ...]


def dotted(path: Path) -> str:
    """('staff', 3, 'extension') -> 'staff[3].extension'."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out or "(top level)"


@dataclass(frozen=True, order=True)
class Problem:
    file: str
    line: int
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.path}: {self.message}"


class EstateInvalid(Exception):
    """Raised with every problem found, not just the first."""

    def __init__(self, problems: list[Problem]):
        self.problems = sorted(set(problems))
        super().__init__("\n".join(str(p) for p in self.problems))
