"""Is a group open at a given moment? Business hours, Japanese holidays, municipal closed days.

National holidays, substitute holidays (振替休日) and citizens' holidays (国民の休日)
come from the maintained `holidays` library, never from a typed list.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays

from .model import Schedule

JST = ZoneInfo("Asia/Tokyo")
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@lru_cache(maxsize=64)
def _national(year: int) -> holidays.HolidayBase:
    return holidays.Japan(years=year, language="ja")


def national_holiday(day: date) -> str | None:
    return _national(day.year).get(day)


def closed_reason(schedule: Schedule, day: date) -> str | None:
    """Why the whole day is closed, or None when it follows the weekday's hours."""
    if day in schedule.extra_open_dates:
        return None
    if day in schedule.extra_closed_dates:
        return "extra closed date"
    if day.strftime("%m-%d") in schedule.closed_days:
        return "municipal closed day"
    if schedule.national_holidays and (name := national_holiday(day)):
        return f"national holiday ({name})"
    if schedule.hours.get(_WEEKDAYS[day.weekday()]) is None:
        return "closed weekday"
    return None


def is_open(schedule: Schedule, moment: datetime) -> bool:
    local = moment.astimezone(JST) if moment.tzinfo else moment
    day = local.date()
    if closed_reason(schedule, day):
        return False
    hours = schedule.hours.get(_WEEKDAYS[day.weekday()])
    if hours is None:  # an extra open date on a normally closed weekday keeps the usual hours
        hours = next((h for h in (schedule.hours.get(d) for d in _WEEKDAYS) if h), None)
        if hours is None:
            return False
    opens, closes = hours
    return opens <= local.time().replace(tzinfo=None) < closes


def closed_dates(schedule: Schedule, year: int) -> list[tuple[date, str]]:
    """Every whole closed day of a year with its reason, for the PBX's routing data."""
    day, out = date(year, 1, 1), []
    while day.year == year:
        reason = closed_reason(schedule, day)
        if reason and reason != "closed weekday":
            out.append((day, reason))
        day = date.fromordinal(day.toordinal() + 1)
    return out


def next_office_hour(schedule: Schedule, after: datetime, into_day: timedelta = timedelta(hours=1)) -> datetime:
    """The first open day's opening time plus `into_day` (JST) at or after `after`'s day:
    the moment a rehearsal pins the PBX's clock to so a storm meets the day's routing."""
    day = after.astimezone(JST).date()
    for n in range(366):
        candidate = day + timedelta(days=n)
        if closed_reason(schedule, candidate) is None:
            opens = schedule.hours.get(_WEEKDAYS[candidate.weekday()]) or next(h for h in schedule.hours.values() if h)
            return datetime.combine(candidate, opens[0], JST) + into_day
    raise ValueError("the schedule is closed every day of a year")
