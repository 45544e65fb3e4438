"""`tsunagu pbxdata ESTATE --secrets FILE --out DIR`: the PBX's routing data as SQL files.

Ansible's `pbx_data` role runs this on the controller and loads the result into the
Patroni leader. The files:

* `schema.sql`  the Tsunagu tables (`CREATE TABLE IF NOT EXISTS`), see `pbxdata.schema_sql`;
* `data.sql`    one transaction replacing every routing table and the subscribers;
* `data.digest` the digest `data.sql` records in `tsunagu_meta`, so a loaded database
  can be compared without reading the SQL.

Files are rewritten only when their text changes (mode 0600: the subscribers' passwords
are in `data.sql`); the last line printed says whether anything changed, which is what
Ansible reports.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import yaml

from .pbxdata import data_digest, data_sql, schema_sql

UNCHANGED = "pbxdata: unchanged"


def build(estate, secrets: dict) -> dict[str, str]:
    """File name -> text, for one estate and its secrets."""
    handsets = {str(k): v for k, v in (secrets.get("handsets") or {}).items()}
    missing = [p.extension for p in estate.staff if p.extension not in handsets]
    if missing:
        raise KeyError(f"no handset password for extension(s) {', '.join(missing[:5])}"
                       f"{' ...' if len(missing) > 5 else ''}")
    data = data_sql(estate, handsets)
    return {"schema.sql": schema_sql(), "data.sql": data, "data.digest": data_digest(data) + "\n"}


def write_private(directory: Path, files: dict[str, str]) -> list[str]:
    """Write each file whose text differs (atomically, mode 0600); returns the names written."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    written = []
    for name, text in files.items():
        path = directory / name
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        tmp = path.with_name(f".{name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(tmp, path)
        written.append(name)
    return written


def _pbxdata(args) -> int:
    from .cli import load_or_exit

    estate = load_or_exit(args.estate)
    try:
        secrets = yaml.safe_load(Path(args.secrets).read_text(encoding="utf-8")) or {}
        written = write_private(Path(args.out), build(estate, secrets))
    except (OSError, KeyError, yaml.YAMLError) as exc:
        print(f"tsunagu pbxdata: {args.secrets}: {exc}", file=sys.stderr)
        return 1
    print(f"pbxdata: wrote {', '.join(written)} in {args.out}" if written else UNCHANGED)
    return 0


def add_command(sub) -> None:
    p = sub.add_parser("pbxdata", help="the PBX's routing data and subscribers as SQL files",
                       description="Write schema.sql, data.sql and data.digest for the estate into DIR "
                       "(only files whose text changed; mode 0600).")
    p.add_argument("estate", help="estate YAML file")
    p.add_argument("--secrets", required=True, metavar="FILE",
                   help="the estate's secrets file (secrets/<sip_domain>.yaml)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the SQL files")
    p.set_defaults(func=_pbxdata)
