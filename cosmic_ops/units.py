"""Policy values with units (SPEC §4): ``"2 GB"``, ``"5M rows"``, ``"20%"``, ``"5 min"``, ``"12 months"``.

Every policy of the project (partitions, retention, lifecycle, monitoring) parses
its values here.

A bare number is an error: ``2`` could mean bytes, gigabytes or rows, and a
threshold read with the wrong unit silently never fires (or always does).
"""

from __future__ import annotations

import re
from datetime import timedelta

# PostgreSQL's memory units (postgresql.conf, pg_size_pretty): multiples of 1024.
_BYTE_UNITS = {
    "b": 1, "bytes": 1,
    "kb": 1024, "kib": 1024,
    "mb": 1024**2, "mib": 1024**2,
    "gb": 1024**3, "gib": 1024**3,
    "tb": 1024**4, "tib": 1024**4,
}
_ROW_MULTIPLIERS = {"": 1, "k": 1_000, "m": 1_000_000, "g": 1_000_000_000}
_DURATION_UNITS = {
    "ms": 0.001,
    "s": 1, "sec": 1, "second": 1, "seconds": 1,
    "min": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
    "w": 604800, "week": 604800, "weeks": 604800,
}
_NUMBER = r"(?P<number>\d+(?:\.\d+)?)"


class PolicyError(ValueError):
    """A policy value without a unit, with an unknown unit, out of range or inconsistent;
    nothing was done."""


def _match(pattern: str, value: object, what: str, example: str) -> re.Match:
    if not isinstance(value, str):
        raise PolicyError(f"{what} {value!r} has no unit; write it like {example!r}")
    found = re.fullmatch(pattern, value.strip(), flags=re.IGNORECASE)
    if not found:
        raise PolicyError(f"{what} {value!r} is not understood; write it like {example!r}")
    return found


def _scaled(value: object, units: dict[str, float], what: str, example: str, listed: str) -> float:
    found = _match(_NUMBER + r"\s*(?P<unit>[a-z]+)", value, what, example)
    unit = found["unit"].lower()
    if unit not in units:
        raise PolicyError(f"{what} {value!r}: unknown unit {found['unit']!r}; use one of {listed}")
    return float(found["number"]) * units[unit]


def parse_bytes(value: object) -> int:
    """``"2 GB"`` -> 2147483648. Units: B, kB, MB, GB, TB (x1024; KiB..TiB accepted)."""
    return int(_scaled(value, _BYTE_UNITS, "byte size", "2 GB", "B, kB, MB, GB, TB"))


def parse_rows(value: object) -> int:
    """``"5M rows"`` / ``"250000 rows"`` -> a row count."""
    found = _match(_NUMBER + r"\s*(?P<mult>[kmg]?)\s+rows?", value, "row count", "5M rows")
    return int(float(found["number"]) * _ROW_MULTIPLIERS[found["mult"].lower()])


def parse_ratio(value: object) -> float:
    """``"20%"`` -> 0.2; must lie in (0, 100] percent."""
    found = _match(_NUMBER + r"\s*%", value, "ratio", "20%")
    ratio = float(found["number"]) / 100
    if not 0 < ratio <= 1:
        raise PolicyError(f"ratio {value!r} must be above 0% and at most 100%")
    return ratio


def parse_duration(value: object) -> float:
    """``"5 min"`` -> 300.0 seconds. Units: ms, s, min, h, d, w."""
    return _scaled(value, _DURATION_UNITS, "duration", "5 min", "ms, s, min, h, d, w")


def parse_age(value: object) -> timedelta:
    """``"30 days"`` -> 30 days: how old rows must be before a lifecycle job touches them."""
    age = timedelta(seconds=parse_duration(value))
    if age <= timedelta(0):
        raise PolicyError(f"age {value!r} must be positive")
    return age


_MONTHS = re.compile(r"^\s*(\d+)\s*(month|months|mon|mons|year|years)\s*$", re.IGNORECASE)


def parse_months(value: object, *, what: str) -> int:
    """``"12 months"`` -> 12, ``"1 year"`` -> 12. Months are the partition grain, so a number
    without a unit, or days/hours, are refused rather than guessed or rounded."""
    if not isinstance(value, str):
        raise PolicyError(
            f"{what}: {value!r} has no unit; write it as a string with its unit, e.g. \"{value} months\""
        )
    match = _MONTHS.match(value)
    if not match:
        raise PolicyError(
            f"{what}: {value!r} is not a whole number of months or years (e.g. \"3 months\", \"1 year\")"
        )
    amount = int(match.group(1))
    return amount * 12 if match.group(2).lower().startswith("year") else amount


def format_bytes(size: int) -> str:
    """The inverse of ``parse_bytes`` for display, like ``pg_size_pretty``."""
    amount = float(size)
    for unit in ("bytes", "kB", "MB", "GB"):
        if abs(amount) < 1024:
            return f"{amount:.0f} {unit}" if unit == "bytes" else f"{amount:.1f} {unit}"
        amount /= 1024
    return f"{amount:.1f} TB"
