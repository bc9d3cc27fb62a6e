"""Policy values carry units and are validated when loaded (SPEC §4)."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest

from cosmic_ops.partitions.policy import EVENT_LOGS_POLICY, IndexSpec, PartitionPolicy, PolicyError, parse_months
from cosmic_ops.schema import EVENT_LOG_STORAGE

BASE = {"table": "t", "partition_column": "ts", "premake": "3 months", "lookback": "3 months",
        "retention": "12 months"}


def test_event_logs_policy_carries_the_seed_defaults():
    p = EVENT_LOGS_POLICY
    assert (p.table, p.partition_column, p.premake, p.lookback, p.retention, p.timezone) == (
        "event_logs", "server_timestamp", 3, 3, 12, "UTC")
    assert [str(i) for i in p.indexes] == ["(player_id, server_timestamp DESC)", "(event_type, server_timestamp DESC)"]
    assert dict(p.storage) == EVENT_LOG_STORAGE


@pytest.mark.parametrize("text, months", [("12 months", 12), ("1 month", 1), ("1 year", 12), (" 2 years ", 24),
                                          ("3 mons", 3)])
def test_durations_with_units(text, months):
    assert parse_months(text, what="x") == months


@pytest.mark.parametrize("value", [12, "12", "12 days", "1.5 months", "twelve months", None, "-1 months"])
def test_durations_without_a_month_unit_are_refused(value):
    with pytest.raises(PolicyError, match="retention"):
        PartitionPolicy.from_mapping({**BASE, "retention": value})


def test_bare_number_error_says_how_to_write_it():
    with pytest.raises(PolicyError, match='"12 months"'):
        PartitionPolicy.from_mapping({**BASE, "retention": 12})


@pytest.mark.parametrize("change, message", [
    ({"premake": "0 months"}, "premake must be at least 1"),
    ({"retention": "3 months"}, "must be longer than lookback"),
    ({"retention": "2 months"}, "must be longer than lookback"),
    ({"timezone": "Mars/Olympus"}, "not a known IANA time zone"),
    ({"interval": "1 year"}, "only monthly"),
    ({"interval": 1}, "no unit"),
    ({"table": "t; DROP TABLE x"}, "not a plain SQL identifier"),
    ({"indexes": ["a, b DESCENDING"]}, "must be `column"),
    ({"indexes": ["a, b); DROP"]}, "must be `column"),
    ({"storage": {"autovacuum_enabled": "off; DROP"}}, "number or a boolean"),
    ({"storage": {"oids": "true"}}, "not a supported table storage parameter"),
    ({"premake_months": 3}, "unknown keys"),
])
def test_invalid_policies_are_refused(change, message):
    with pytest.raises(PolicyError, match=message):
        PartitionPolicy.from_mapping({**BASE, **change})


def test_missing_keys_are_named():
    with pytest.raises(PolicyError, match="missing premake, retention"):
        PartitionPolicy.from_mapping({"table": "t", "partition_column": "ts", "lookback": "1 month"})


def test_index_spec_parsing():
    spec = IndexSpec.parse("player_id, server_timestamp DESC")
    assert [(c.name, c.descending) for c in spec.columns] == [("player_id", False), ("server_timestamp", True)]


def test_window_is_computed_in_the_policy_time_zone():
    tokyo = PartitionPolicy.from_mapping({**BASE, "timezone": "Asia/Tokyo"})
    # 2026-11-30 20:00 UTC is already December in Tokyo.
    moment = datetime(2026, 11, 30, 20, 0, tzinfo=timezone.utc)
    assert tokyo.current_month(moment) == date(2026, 12, 1)
    assert EVENT_LOGS_POLICY.current_month(moment) == date(2026, 11, 1)
    assert EVENT_LOGS_POLICY.window(moment) == [
        date(2026, 8, 1), date(2026, 9, 1), date(2026, 10, 1), date(2026, 11, 1),
        date(2026, 12, 1), date(2027, 1, 1), date(2027, 2, 1)]
    assert EVENT_LOGS_POLICY.premake_months(moment)[-1] == date(2027, 2, 1)
