"""What a storm leaves behind for its report: the farm's events and the PBX's CDRs.

Events are copied from the farm's Redis stream as JSON lines, CDRs from the PostgreSQL
primary (reached from inside a data host's namespace, as the lab has no route out) as CSV.
The same database holds the PBX's clock for opening hours, which a storm pins to an office
hour so that a rehearsal run at night or on a Sunday still meets the day's routing.
Both files are written to a temporary name and renamed, so a crash mid-copy never leaves a
half file that looks whole.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import yaml

from simulator import events


def _atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".part")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def export_events(redis, since_id: str, path: Path) -> int:
    """Every farm event after `since_id` as JSON lines; returns how many."""
    lines, cursor = [], since_id
    while True:
        batch = redis.xrange(events.STREAM, min=f"({cursor}", count=10000)
        if not batch:
            break
        for entry_id, entry in batch:
            lines.append(json.dumps({**entry, "id": entry_id}, ensure_ascii=False))
        cursor = batch[-1][0]
    _atomic(path, "\n".join(lines) + ("\n" if lines else ""))
    return len(lines)


def cdr_query(since_wall: float) -> str:
    return (f"COPY (SELECT * FROM tsunagu_cdr WHERE started_at >= to_timestamp({since_wall:.6f}) "
            f"ORDER BY started_at) TO STDOUT WITH (FORMAT csv, HEADER true)")


class PbxDatabase:
    """psql against the read-write PostgreSQL node, from inside a data host's namespace."""

    def __init__(self, run_dir: Path, password: str, user: str = "kamailio"):
        inventory = yaml.safe_load((run_dir / "inventory.yml").read_text())
        hosts = inventory["all"]["hosts"]
        pg = list(inventory["all"]["children"]["postgresql"]["hosts"])
        self.netns = hosts[pg[0]]["tsunagu_netns"]
        self.url = (f"postgresql://{user}@{','.join(hosts[h]['tsunagu_address'] for h in pg)}/kamailio"
                    "?target_session_attrs=read-write&connect_timeout=5")
        self.password = password

    def run(self, sql: str, *, tuples: bool = False) -> str:
        out = subprocess.run(["ip", "netns", "exec", self.netns, "psql", "-X", "-q", *(["-tA"] if tuples else []),
                              "-v", "ON_ERROR_STOP=1", self.url, "-c", sql],
                             env=dict(os.environ, PGPASSWORD=self.password), capture_output=True, text=True,
                             timeout=120)
        if out.returncode != 0:
            raise RuntimeError(f"PBX database: {out.stderr.strip()}")
        return out.stdout

    def export_cdrs(self, since_wall: float, path: Path) -> int:
        """The CDR rows written since `since_wall`, as CSV; returns how many."""
        text = self.run(cdr_query(since_wall))
        _atomic(path, text)
        return max(0, len(text.splitlines()) - 1)

    def clock(self) -> str:
        """The moment the PBX judges opening hours at, when pinned ('' = the real time)."""
        return self.run("SELECT value FROM tsunagu_meta WHERE key = 'clock'", tuples=True).strip()

    def pin_clock(self, moment: str) -> None:
        if not moment:
            self.run("DELETE FROM tsunagu_meta WHERE key = 'clock'")
        else:  # the cast refuses anything that is not a timestamp
            self.run(f"INSERT INTO tsunagu_meta SELECT 'clock', '{moment}' WHERE '{moment}'::timestamptz IS NOT NULL "
                     "ON CONFLICT (key) DO UPDATE SET value = excluded.value")
