"""Contention: a conflicting table lock makes DDL retry then fail clearly with
nothing half done; a held maintenance lock makes the run fail, never a silent no-op."""

from __future__ import annotations

from datetime import date

import pytest

from cosmic_ops import db
from cosmic_ops.db import LockRetriesExhausted, MaintenanceLockBusy, RetryPolicy
from cosmic_ops.partitions import EVENT_LOGS_POLICY, ensure_months, rehome_default_rows

from .helpers import insert_events, row_fingerprint, tree_snapshot

QUICK = RetryPolicy(lock_timeout_ms=100, attempts=3, backoff_s=0.05, max_backoff_s=0.1)


def test_conflicting_table_lock_retries_then_fails_with_nothing_half_done(event_db, econn):
    insert_events(econn, "2026-05-10 00:00+00")
    before, rows = tree_snapshot(econn), row_fingerprint(econn)
    with db.connect(event_db, application_name="game_traffic") as other:
        other.execute("LOCK TABLE event_logs IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(LockRetriesExhausted, match="after 3 attempts of 100 ms.*Nothing was changed"):
            ensure_months(econn, EVENT_LOGS_POLICY, [date(2026, 5, 1)], retry=QUICK)
        other.rollback()
    assert tree_snapshot(econn) == before and row_fingerprint(econn) == rows
    assert econn.execute("SELECT to_regclass('event_logs_2026_05')").fetchone()[0] is None
    econn.commit()
    # The advisory lock was released: the next run does the work.
    assert ensure_months(econn, EVENT_LOGS_POLICY, [date(2026, 5, 1)], retry=QUICK).created == ["event_logs_2026_05"]


def test_lock_on_the_default_partition_alone_also_blocks_cleanly(event_db, econn):
    before = tree_snapshot(econn)
    with db.connect(event_db) as other:
        other.execute("LOCK TABLE event_logs_default IN ACCESS SHARE MODE")  # a long reader of DEFAULT
        with pytest.raises(LockRetriesExhausted):
            ensure_months(econn, EVENT_LOGS_POLICY, [date(2026, 5, 1)], retry=QUICK)
        other.rollback()
    assert tree_snapshot(econn) == before


def test_held_maintenance_lock_fails_the_run_and_names_the_holder(event_db, econn):
    insert_events(econn, "1999-01-01 00:00+00")
    before = tree_snapshot(econn)
    with db.connect(event_db, application_name="other_maintenance") as other:
        with db.maintenance_lock(other, EVENT_LOGS_POLICY.lock_scope):
            with pytest.raises(MaintenanceLockBusy, match="other_maintenance.*did not do its work"):
                ensure_months(econn, EVENT_LOGS_POLICY, [date(2026, 5, 1)])
            with pytest.raises(MaintenanceLockBusy):
                rehome_default_rows(econn, EVENT_LOGS_POLICY)
    assert tree_snapshot(econn) == before
