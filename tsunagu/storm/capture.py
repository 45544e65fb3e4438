"""What a storm leaves behind for its report: the farm's events and the PBX's CDRs.

Events are copied from the farm's Redis stream as JSON lines, CDRs from the PostgreSQL
primary (reached from inside a data host's namespace, as the lab has no route out) as CSV.
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


def export_cdrs(run_dir: Path, password: str, since_wall: float, path: Path) -> int:
    """The CDR rows written since `since_wall`, from the read-write PostgreSQL node."""
    inventory = yaml.safe_load((run_dir / "inventory.yml").read_text())
    hosts = inventory["all"]["hosts"]
    pg = list(inventory["all"]["children"]["postgresql"]["hosts"])
    url = (f"postgresql://kamailio@{','.join(hosts[h]['tsunagu_address'] for h in pg)}/kamailio"
           "?target_session_attrs=read-write&connect_timeout=5")
    out = subprocess.run(["ip", "netns", "exec", hosts[pg[0]]["tsunagu_netns"], "psql", "-X", "-q",
                          "-v", "ON_ERROR_STOP=1", url, "-c", cdr_query(since_wall)],
                         env=dict(os.environ, PGPASSWORD=password), capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise RuntimeError(f"could not read the CDRs: {out.stderr.strip()}")
    _atomic(path, out.stdout)
    return max(0, len(out.stdout.splitlines()) - 1)
