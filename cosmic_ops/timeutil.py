"""Month arithmetic in UTC: partition bounds never depend on the session TimeZone."""

from __future__ import annotations

from datetime import date, datetime, timezone


def month_start(day: date) -> date:
    return date(day.year, day.month, 1)


def add_months(day: date, months: int) -> date:
    index = day.year * 12 + (day.month - 1) + months
    return date(index // 12, index % 12 + 1, 1)


def month_bounds_utc(month: date) -> tuple[datetime, datetime]:
    """``[month, month + 1)`` as UTC-aware datetimes."""
    lower = month_start(month)
    upper = add_months(lower, 1)
    return (
        datetime(lower.year, lower.month, 1, tzinfo=timezone.utc),
        datetime(upper.year, upper.month, 1, tzinfo=timezone.utc),
    )
