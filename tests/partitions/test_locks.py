"""Contention: a conflicting table lock makes DDL retry then fail clearly with
nothing half done; a held maintenance lock makes the run fail, never a silent no-op."""

from __future__ import annotations

import threading
from datetime import date

import psycopg

import pytest

from cosmic_ops import db
from cosmic_ops.db import LockRetriesExhausted, MaintenanceLockBusy, LockRetryPolicy
from cosmic_ops.partitions import EVENT_LOGS_POLICY, ensure_months, rehome_default_rows

from ..lockwait import wait_for_lock_wait
from .helpers import insert_events, row_fingerprint, tree_snapshot

QUICK = LockRetryPolicy(lock_timeout_ms=100, attempts=3, backoff_s=0.05, max_backoff_s=0.1)


def test_conflicting_table_lock_retries_then_fails_with_nothing_half_done(event_db, econn):
    insert_events(econn, "2026-05-10 00:00+00")
    before, rows = tree_snapshot(econn), row_fingerprint(econn)
    with db.connect(event_db, application_name="game_traffic", autocommit=False) as other:
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
    with db.connect(event_db, autocommit=False) as other:
        other.execute("LOCK TABLE event_logs_default IN ACCESS SHARE MODE")  # a long reader of DEFAULT
        with pytest.raises(LockRetriesExhausted):
            ensure_months(econn, EVENT_LOGS_POLICY, [date(2026, 5, 1)], retry=QUICK)
        other.rollback()
    assert tree_snapshot(econn) == before


def test_held_maintenance_lock_fails_the_run_and_names_the_holder(event_db, econn):
    insert_events(econn, "1999-01-01 00:00+00")
    before = tree_snapshot(econn)
    with db.connect(event_db, application_name="other_maintenance") as other:
        with db.maintenance_lock(other, EVENT_LOGS_POLICY.qualified_name):
            with pytest.raises(MaintenanceLockBusy, match="other_maintenance.*did not do its work"):
                ensure_months(econn, EVENT_LOGS_POLICY, [date(2026, 5, 1)])
            with pytest.raises(MaintenanceLockBusy):
                rehome_default_rows(econn, EVENT_LOGS_POLICY)
    assert tree_snapshot(econn) == before


def test_failure_after_the_rows_moved_rolls_everything_back_and_the_next_run_finishes(econn):
    insert_events(econn, "2026-05-10 00:00+00", "2026-05-11 00:00+00", "1999-01-01 00:00+00")
    before, rows = tree_snapshot(econn), row_fingerprint(econn)
    # Fails the ATTACH, i.e. after CREATE TABLE and after the rows were moved into the new table.
    econn.execute("CREATE FUNCTION fail_attach() RETURNS event_trigger LANGUAGE plpgsql AS "
                  "$$ BEGIN RAISE EXCEPTION 'injected failure at ALTER TABLE'; END $$")
    econn.execute("CREATE EVENT TRIGGER fail_attach ON ddl_command_end WHEN TAG IN ('ALTER TABLE') "
                  "EXECUTE FUNCTION fail_attach()")
    econn.commit()
    with pytest.raises(Exception, match="injected failure"):
        ensure_months(econn, EVENT_LOGS_POLICY, [date(2026, 5, 1)], retry=QUICK)
    econn.rollback()
    econn.execute("DROP EVENT TRIGGER fail_attach")
    econn.commit()
    assert row_fingerprint(econn) == rows
    assert [r for r in tree_snapshot(econn) if r[0] != "fail_attach"] == before
    assert econn.execute("SELECT count(*) FROM ONLY event_logs_default").fetchone()[0] == 3
    econn.commit()
    assert ensure_months(econn, EVENT_LOGS_POLICY, [date(2026, 5, 1)], retry=QUICK).rows_moved == 2
    assert row_fingerprint(econn) == rows


def test_killed_run_leaves_nothing_and_the_next_run_finishes(event_db, econn):
    insert_events(econn, "2026-05-10 00:00+00")
    before, rows = tree_snapshot(econn), row_fingerprint(econn)
    errors: list[BaseException] = []

    def victim():
        with db.connect(event_db, application_name="victim_run") as conn:
            try:
                ensure_months(conn, EVENT_LOGS_POLICY, [date(2026, 5, 1)],
                              retry=LockRetryPolicy(lock_timeout_ms=600_000, attempts=1))
            except BaseException as exc:  # noqa: BLE001 - the thread reports what killed it
                errors.append(exc)

    with db.connect(event_db, autocommit=False) as other, db.connect(event_db, autocommit=True) as watcher:
        other.execute("LOCK TABLE event_logs_default IN ACCESS SHARE MODE")
        thread = threading.Thread(target=victim)
        thread.start()
        # Until the victim waits inside its create transaction.
        waiting = wait_for_lock_wait(event_db, application_name="victim_run", limit_s=20, what="the run")
        watcher.execute("SELECT pg_terminate_backend(%s)", (waiting,))
        thread.join()
        other.rollback()
    assert errors and isinstance(errors[0], psycopg.OperationalError)
    assert tree_snapshot(econn) == before and row_fingerprint(econn) == rows
    # The advisory lock died with the session: the next run does the work.
    assert ensure_months(econn, EVENT_LOGS_POLICY, [date(2026, 5, 1)]).rows_moved == 1
    assert row_fingerprint(econn) == rows
