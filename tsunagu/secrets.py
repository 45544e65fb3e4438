"""Per-estate secrets: generated once, kept out of git, read by Ansible and the handsets.

The file lives at `secrets/<sip_domain>.yaml` (mode 0600, git-ignored). New staff get
a password the next time it is opened; existing passwords never change, so a re-run
deploy leaves subscribers as they were. Writes go to a temporary file renamed into
place, so a crash never leaves half a file.
"""

from __future__ import annotations

import os
import secrets as random_source
from pathlib import Path

import yaml

from .model import Estate

REPO = Path(__file__).resolve().parent.parent
# Tests and CI point this elsewhere so they never touch a developer's secrets.
SECRETS_DIR = Path(os.environ.get("TSUNAGU_SECRETS_DIR", REPO / "secrets"))
SERVICE_ACCOUNTS = ("postgres_superuser", "postgres_replication", "postgres_kamailio",
                    "redis", "carrier_trunk")


def secrets_file(estate: Estate, directory: Path = SECRETS_DIR) -> Path:
    return directory / f"{estate.municipality.sip_domain}.yaml"


def _new_password() -> str:
    return random_source.token_urlsafe(18)


def ensure_secrets(estate: Estate, directory: Path = SECRETS_DIR) -> dict:
    """Load the estate's secrets, adding any that are missing; returns them."""
    path = secrets_file(estate, directory)
    current = yaml.safe_load(path.read_text()) if path.exists() else {}
    current = current or {}
    services = current.setdefault("services", {})
    handsets = current.setdefault("handsets", {})
    before = (len(services), len(handsets))
    for account in SERVICE_ACCOUNTS:
        services.setdefault(account, _new_password())
    for person in estate.staff:
        handsets.setdefault(person.extension, _new_password())
    if (len(services), len(handsets)) != before or not path.exists():
        _write_private(path, current)
    return current


def _write_private(path: Path, data: dict) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        yaml.safe_dump(data, out, sort_keys=True)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
