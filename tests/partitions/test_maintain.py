"""Plan → apply of monthly partitions on event_logs: bounds, indexes, storage,
idempotency, dry run, DEFAULT rows, session TimeZone, conflicts."""

from __future__ import annotations

from datetime import date, datetime, timezone

import psycopg
import pytest
from psycopg import sql

from cosmic_ops.partitions import EVENT_LOGS_POLICY, PartitionConflict, ensure_months, list_partitions, plan_months
from cosmic_ops.partitions.catalog import indexes_of, storage_parameters
from cosmic_ops.partitions.maintain import CreatePartition, SetStorage, index_matches
from cosmic_ops.schema import EVENT_LOG_STORAGE

from ..clock import NOW

from .helpers import insert_events, row_fingerprint, rows_per_partition, tree_snapshot

SEED_FUNCTION = open(__file__.replace("test_maintain.py", "seed_function.sql")).read()


def _ranges(conn):
    rows = [(p.name, p.bound) for p in list_partitions(conn, "event_logs") if not p.is_default]
    conn.commit()
    return rows


def test_window_matches_the_seed_function_plus_storage(econn):
    econn.execute("SET TimeZone = 'UTC'")
    econn.execute(SEED_FUNCTION)
    # The seed's function decides by the server's CURRENT_DATE: ours is given the same instant.
    server_now = econn.execute("SELECT now()").fetchone()[0]
    econn.execute("SELECT manage_event_log_partitions()")
    econn.commit()
    seed_ranges = _ranges(econn)
    # The seed's own storage statement is refused on the partitioned parent (PostgreSQL 15
    # names the parameter; 16 and later refuse any storage parameter on a partitioned table).
    with pytest.raises((psycopg.errors.InvalidParameterValue, psycopg.errors.WrongObjectType)):
        econn.execute("ALTER TABLE event_logs SET (autovacuum_vacuum_scale_factor = 0.05)")
    econn.rollback()
    for name, _ in seed_ranges:
        econn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(name)))
    econn.commit()

    result = ensure_months(econn, EVENT_LOGS_POLICY, EVENT_LOGS_POLICY.window(server_now))
    assert len(seed_ranges) == 7 and len(result.created) == 7
    assert _ranges(econn) == seed_ranges
    partitions = [p for p in list_partitions(econn, "event_logs") if not p.is_default]
    indexes = indexes_of(econn, [p.oid for p in partitions])
    storage = storage_parameters(econn, [p.oid for p in partitions])
    for p in partitions:
        for spec in EVENT_LOGS_POLICY.indexes:
            matching = [i for i in indexes[p.oid] if index_matches(i, spec)]
            # ... and attached to the parent's partitioned index, not a free-standing twin.
            assert [i.parent_index for i in matching] in (["event_logs_player_time_idx"], ["event_logs_type_time_idx"])
        assert storage[p.oid] == EVENT_LOG_STORAGE
    constraints = econn.execute(
        "SELECT count(*) FROM pg_constraint WHERE conname LIKE '%attach_check'").fetchone()[0]
    assert constraints == 0


def test_second_run_changes_nothing(econn):
    months = EVENT_LOGS_POLICY.window(NOW)
    first = ensure_months(econn, EVENT_LOGS_POLICY, months)
    before = tree_snapshot(econn)
    second = ensure_months(econn, EVENT_LOGS_POLICY, months)
    assert first.changed and not second.changed and second.plan.is_noop
    assert "Nothing to do" in second.plan.to_markdown(econn)
    assert tree_snapshot(econn) == before


def test_dry_run_returns_the_plan_and_changes_nothing(econn):
    insert_events(econn, "2026-05-03 10:00+00")
    before, rows = tree_snapshot(econn), rows_per_partition(econn)
    result = ensure_months(econn, EVENT_LOGS_POLICY, [date(2026, 5, 1), date(2026, 6, 1)], dry_run=True)
    markdown = result.plan.to_markdown(econn)
    assert result.dry_run and not result.results
    assert [type(a) for a in result.plan.actions] == [CreatePartition, CreatePartition]
    assert 'CREATE TABLE "public"."event_logs_2026_05" (LIKE "public"."event_logs"' in markdown
    assert 'ATTACH PARTITION "public"."event_logs_2026_05" FOR VALUES FROM' in markdown
    assert "DELETE FROM ONLY" in markdown
    assert tree_snapshot(econn) == before and rows_per_partition(econn) == rows


def test_rows_in_default_for_the_month_move_into_it(econn):
    insert_events(econn, "2026-05-01 00:00+00", "2026-05-31 23:59:59.999999+00", "2026-05-15 12:00+00",
                  "2026-06-01 00:00+00", "2026-04-30 23:59:59+00")
    before = row_fingerprint(econn)
    result = ensure_months(econn, EVENT_LOGS_POLICY, [date(2026, 5, 1)])
    assert result.created == ["event_logs_2026_05"] and result.rows_moved == 3
    assert rows_per_partition(econn) == {"event_logs_2026_05": 3, "event_logs_default": 2}
    assert row_fingerprint(econn) == before


def test_bounds_ignore_the_session_time_zone(econn):
    econn.execute("SET TimeZone = 'Pacific/Kiritimati'")  # UTC+14
    econn.commit()
    ensure_months(econn, EVENT_LOGS_POLICY, [date(2026, 1, 1)])
    assert ensure_months(econn, EVENT_LOGS_POLICY, [date(2026, 1, 1)]).plan.is_noop
    econn.execute("SET TimeZone = 'UTC'")
    assert _ranges(econn) == [
        ("event_logs_2026_01", "FOR VALUES FROM ('2026-01-01 00:00:00+00') TO ('2026-02-01 00:00:00+00')")]
    (p,) = [p for p in list_partitions(econn, "event_logs") if not p.is_default]
    assert p.lower == datetime(2026, 1, 1, tzinfo=timezone.utc)


def test_existing_partition_without_storage_gets_it(econn):
    econn.execute(
        "CREATE TABLE event_logs_2026_03 PARTITION OF event_logs "
        "FOR VALUES FROM ('2026-03-01 00:00+00') TO ('2026-04-01 00:00+00')")
    econn.commit()
    plan = plan_months(econn, EVENT_LOGS_POLICY, [date(2026, 3, 1)])
    econn.commit()
    assert [type(a) for a in plan.actions] == [SetStorage]
    ensure_months(econn, EVENT_LOGS_POLICY, [date(2026, 3, 1)])
    (p,) = [p for p in list_partitions(econn, "event_logs") if not p.is_default]
    assert storage_parameters(econn, [p.oid])[p.oid] == EVENT_LOG_STORAGE
    assert ensure_months(econn, EVENT_LOGS_POLICY, [date(2026, 3, 1)]).plan.is_noop


def test_conflicting_month_is_reported_and_the_others_are_created(econn):
    econn.execute("CREATE TABLE event_logs_2026_08 (id bigint)")  # a stray table with the month's name
    econn.execute(
        "CREATE TABLE event_logs_q4 PARTITION OF event_logs "
        "FOR VALUES FROM ('2026-10-01 00:00+00') TO ('2027-01-01 00:00+00')")
    econn.commit()
    with pytest.raises(PartitionConflict) as raised:
        ensure_months(econn, EVENT_LOGS_POLICY, [date(2026, 7, 1), date(2026, 8, 1), date(2026, 11, 1)])
    message = str(raised.value)
    assert "event_logs_2026_08" in message and "already exists but is not this month's partition" in message
    assert "event_logs_q4 overlap" in message and "1 action(s) were applied" in message
    assert [name for name, _ in _ranges(econn)] == ["event_logs_2026_07", "event_logs_q4"]


def test_a_policy_index_the_parent_lacks_is_created_on_each_new_partition(econn):
    econn.execute("DROP INDEX event_logs_type_time_idx")
    econn.commit()
    ensure_months(econn, EVENT_LOGS_POLICY, [date(2026, 2, 1)])
    (p,) = [p for p in list_partitions(econn, "event_logs") if not p.is_default]
    found = indexes_of(econn, [p.oid])[p.oid]
    assert all(any(index_matches(i, spec) for i in found) for spec in EVENT_LOGS_POLICY.indexes)
