"""The fingerprint's one text-settings dict: the same rows give the same checksum in any session."""

from __future__ import annotations

import pytest

from cosmic_ops import db, fingerprint as fingerprint_module
from cosmic_ops.fingerprint import fingerprint, table_columns

# Sessions whose every text setting differs from TEXT_SETTINGS.
OTHER_SESSIONS = [
    {"DateStyle": "SQL, DMY", "TimeZone": "Pacific/Chatham", "IntervalStyle": "iso_8601",
     "extra_float_digits": "-15", "bytea_output": "escape"},
    {"DateStyle": "German", "TimeZone": "America/St_Johns", "IntervalStyle": "sql_standard",
     "extra_float_digits": "0", "bytea_output": "escape"},
    {"DateStyle": "Postgres, YMD", "TimeZone": "Asia/Kathmandu", "IntervalStyle": "postgres_verbose",
     "extra_float_digits": "-3", "bytea_output": "escape"},
]

VALUES = """
INSERT INTO textish (id, day, at, at_utc, took, ratio, single, big, blob) VALUES
 (1, '2024-02-29', '2024-02-29 23:59:59.999999', '2024-03-01 00:00:00.000001+00',
  '1 mon -2 days 03:04:05.678901', 0.1, 0.33333334, 12345678901234567890.123, '\\x00ff'),
 (2, '0044-03-15 BC', '1999-12-31 12:00:00', '1970-01-01 00:00:00+00', '-178000000 years', -0.0, 'NaN',
  -1e-20, 'quote"back\\\\slash'),
 (3, 'infinity', '-infinity', 'infinity', '0', 1.7976931348623157e308, 1e-45, 0, ''),
 (4, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)
"""


@pytest.fixture(scope="module")
def textish(bootstrapped_database):
    with db.connect(bootstrapped_database) as conn:
        conn.execute("CREATE TABLE textish (id int PRIMARY KEY, day date, at timestamp, at_utc timestamptz, "
                     "took interval, ratio float8, single float4, big numeric, blob bytea)")
        conn.execute(VALUES)
        conn.commit()
    return bootstrapped_database


def _fingerprint(conninfo: str, session: dict[str, str] | None = None):
    with db.connect(conninfo) as conn:
        for name, value in (session or {}).items():
            conn.execute("SELECT set_config(%s, %s, false)", (name, value))
        with conn.transaction():
            return fingerprint(conn, "public", "textish", table_columns(conn, "public", "textish"))


def _unpinned_text(conninfo: str, session: dict[str, str]) -> list[str]:
    with db.connect(conninfo) as conn:
        for name, value in session.items():
            conn.execute("SELECT set_config(%s, %s, false)", (name, value))
        return [r[0] for r in conn.execute("SELECT t::text FROM textish t ORDER BY id")]


@pytest.mark.parametrize("session", OTHER_SESSIONS, ids=lambda s: s["DateStyle"])
def test_the_checksum_does_not_depend_on_the_sessions_text_settings(textish, session):
    # The settings matter: unpinned, this session writes every one of these rows differently.
    plain = _unpinned_text(textish, {})
    other = _unpinned_text(textish, session)
    assert sum(a != b for a, b in zip(plain, other)) == 3
    assert _fingerprint(textish, session) == _fingerprint(textish)


@pytest.mark.parametrize("order", ["YMD", "DMY"])
def test_with_iso_output_the_date_order_does_not_change_the_checksum(textish, monkeypatch, order):
    """Why "ISO, MDY" and "ISO, YMD" could coexist unnoticed: the order half only reads input."""
    before = _fingerprint(textish)
    monkeypatch.setitem(fingerprint_module.TEXT_SETTINGS, "DateStyle", f"ISO, {order}")
    assert _fingerprint(textish) == before
