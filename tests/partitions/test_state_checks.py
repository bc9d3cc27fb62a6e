"""Each state check passes on a maintained database and fails, saying what is
wrong, on a deliberately broken one."""

from __future__ import annotations

from datetime import date

from psycopg import sql

from cosmic_ops.partitions import EVENT_LOGS_POLICY, ensure_months
from cosmic_ops.partitions.state import (
    check_contiguous,
    check_default_empty,
    check_indexes_and_storage,
    check_month_pruning,
    check_months_exist,
    describe_month,
)

from ..clock import NOW

from .helpers import insert_events

POLICY = EVENT_LOGS_POLICY


def _maintained(conn):
    ensure_months(conn, POLICY, POLICY.window(NOW))
    return POLICY.current_month(NOW)


def _detach(conn, month):
    conn.execute(sql.SQL("ALTER TABLE event_logs DETACH PARTITION {}").format(
        sql.Identifier(POLICY.partition_name(month))))
    conn.commit()


def _all_pass(conn, month):
    outcomes = [check_months_exist(conn, POLICY, now=NOW), check_default_empty(conn, POLICY),
                check_indexes_and_storage(conn, POLICY), check_contiguous(conn, POLICY, now=NOW),
                check_month_pruning(conn, POLICY, month)]
    conn.commit()
    return [o.description for o in outcomes if not o.passed]


def test_all_checks_pass_on_a_maintained_database(econn):
    month = _maintained(econn)
    assert _all_pass(econn, month) == []


def test_missing_future_month_is_named(econn):
    _maintained(econn)
    nxt = POLICY.premake_months(NOW)[1]
    _detach(econn, nxt)
    outcome = check_months_exist(econn, POLICY, now=NOW)
    assert not outcome.passed and outcome.metadata["missing_months"] == [f"{nxt:%Y-%m}"]
    assert f"no partition for {nxt:%Y-%m}" in outcome.description


def test_rows_in_default_fail_the_default_check(econn):
    _maintained(econn)
    insert_events(econn, "2001-02-03 00:00+00")
    outcome = check_default_empty(econn, POLICY)
    assert not outcome.passed and outcome.description.startswith("event_logs_default holds 1 row(s): 2001-02: 1")


def test_missing_storage_and_index_are_named(econn):
    month = _maintained(econn)
    name = f"event_logs_{month:%Y_%m}"
    econn.execute(sql.SQL("ALTER TABLE {} RESET (autovacuum_vacuum_scale_factor)").format(sql.Identifier(name)))
    econn.execute("DROP INDEX event_logs_type_time_idx")
    econn.commit()
    outcome = check_indexes_and_storage(econn, POLICY)
    assert not outcome.passed
    problems = outcome.metadata["problems"]
    assert "autovacuum_vacuum_scale_factor is unset (want 0.05)" in problems[name]
    assert all("missing index (event_type, server_timestamp DESC)" in issues for issues in problems.values())
    assert len(problems) == 8  # seven months and DEFAULT


def test_gap_is_named_with_both_neighbours(econn):
    month = _maintained(econn)
    _detach(econn, month)
    outcome = check_contiguous(econn, POLICY, now=NOW)
    assert not outcome.passed
    assert outcome.description.startswith("gap between event_logs_")
    assert f"[{month:%Y-%m}-01 00:00:00+00:00" in outcome.description


def test_a_partition_that_is_not_one_month_is_named(econn):
    econn.execute("CREATE TABLE event_logs_odd PARTITION OF event_logs "
                  "FOR VALUES FROM ('2026-01-01 00:00+00') TO ('2026-01-15 00:00+00')")
    econn.commit()
    outcome = check_contiguous(econn, POLICY, now=NOW)
    assert not outcome.passed and "event_logs_odd" in outcome.description and "not exactly one month" in outcome.description


def test_pruning_check_fails_without_the_partition_and_without_pruning(econn):
    month = _maintained(econn)
    far = date(2040, 1, 1)
    missing = check_month_pruning(econn, POLICY, far)
    assert not missing.passed and missing.metadata["scanned"] == ["event_logs_default"]
    econn.execute("SET enable_partition_pruning = off")
    off = check_month_pruning(econn, POLICY, month)
    assert not off.passed and "expected only event_logs_" in off.description and len(off.metadata["scanned"]) == 8


def test_describe_month_reports_bounds_rows_bytes_indexes(econn):
    month = _maintained(econn)
    insert_events(econn, f"{month:%Y-%m}-02 00:00+00", f"{month:%Y-%m}-03 00:00+00")
    facts = describe_month(econn, POLICY, month, exact_rows=True)
    assert facts["rows_exact"] == 2 and facts["total_bytes"] > 0 and len(facts["indexes"]) == 3
    assert facts["lower_bound"] == f"{month:%Y-%m}-01T00:00:00+00:00"
    assert describe_month(econn, POLICY, date(2040, 1, 1)) == {}
