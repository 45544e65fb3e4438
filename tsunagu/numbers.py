"""Japanese telephone numbers: normalisation and the special numbers extensions must avoid."""

from __future__ import annotations

import re

# Named 1XY service codes (総務省 電気通信番号計画). Every 1XY code is reserved, so an
# extension may not begin with "1" at all; the names only make messages readable.
SPECIAL_NUMBERS = {
    "100": "operator-assisted call",
    "102": "operator assistance",
    "104": "directory enquiries",
    "110": "police",
    "113": "fault reports",
    "115": "telegram",
    "116": "sales enquiries",
    "117": "time announcement",
    "118": "coast guard",
    "119": "fire and ambulance",
    "171": "disaster message dial",
    "177": "weather forecast",
    "188": "consumer hotline",
    "189": "child welfare hotline",
}

_SEPARATORS = re.compile(r"[\s\-()]")
_NATIONAL = re.compile(r"^0\d{9,10}$")


def normalise(number: str) -> str:
    """Digits only, national format (leading 0). '+81 736-77-2511' -> '0736772511'."""
    digits = _SEPARATORS.sub("", str(number))
    if digits.startswith("+81"):
        digits = "0" + digits[3:]
    if not _NATIONAL.match(digits):
        raise ValueError(
            f"{number!r} is not a Japanese telephone number (0 followed by 9 or 10 digits)"
        )
    return digits


def e164(national: str) -> str:
    return "+81" + national[1:]


def special_number_clash(extension: str) -> str | None:
    """Why an extension clashes with a 1XY special number, or None."""
    if not extension.startswith("1"):
        return None
    code = extension[:3]
    name = SPECIAL_NUMBERS.get(code)
    what = f"special number {code} ({name})" if name else f"the reserved 1XY special-number range ({code})"
    return f"extension {extension!r} begins with {what}"
