from datetime import date, datetime

from tests.conftest import TINY
from tsunagu.calendar import JST, closed_dates, closed_reason, is_open
from tsunagu.estate import load_estate


def schedule():
    return load_estate(TINY).schedules["default"]


def test_substitute_and_citizens_holidays_come_from_the_library():
    s = schedule()
    assert closed_reason(s, date(2026, 5, 6)) == "national holiday (振替休日)"
    assert closed_reason(s, date(2026, 9, 22)) == "national holiday (国民の休日)"
    assert closed_reason(s, date(2027, 1, 11)) == "national holiday (成人の日)"


def test_municipal_closed_days_default_to_year_end():
    s = schedule()
    reasons = {d: r for d, r in closed_dates(s, 2026)}
    assert [d for d, r in reasons.items() if r == "municipal closed day"] == [
        date(2026, 1, 1), date(2026, 1, 2), date(2026, 1, 3),
        date(2026, 12, 29), date(2026, 12, 30), date(2026, 12, 31)]


def test_business_hours_edges():
    s = schedule()
    assert is_open(s, datetime(2026, 11, 24, 8, 30, tzinfo=JST))
    assert not is_open(s, datetime(2026, 11, 24, 8, 29, tzinfo=JST))
    assert not is_open(s, datetime(2026, 11, 24, 17, 15, tzinfo=JST))
    assert not is_open(s, datetime(2026, 11, 28, 10, 0, tzinfo=JST))  # Saturday
    assert not is_open(s, datetime(2026, 11, 23, 10, 0, tzinfo=JST))  # 勤労感謝の日


def test_extra_dates_override():
    s = schedule().model_copy(update={"extra_closed_dates": [date(2026, 11, 24)],
                                      "extra_open_dates": [date(2026, 11, 23)]})
    assert not is_open(s, datetime(2026, 11, 24, 10, 0, tzinfo=JST))
    assert is_open(s, datetime(2026, 11, 23, 10, 0, tzinfo=JST))
