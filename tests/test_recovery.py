"""Reruns after a kill complete (issue 12, part 3): whichever job takes the table next
repairs what an interrupted retirement or DETACH CONCURRENTLY left, and never drops a
month without a verified backup of it."""

from __future__ import annotations

import threading
from datetime import date

import psycopg
import pytest

from cosmic_ops import db
from cosmic_ops.backups import RetentionPolicy
from cosmic_ops.monitoring import apply as run_vacuum, plan_vacuum
from cosmic_ops.partitions import EVENT_LOGS_POLICY, ensure_months, partition_for_month
from cosmic_ops.partitions import rehome_default_rows
from cosmic_ops.retention import RetentionRefused, retire_month
from cosmic_ops.timeutil import month_bounds_utc

from .backups.helpers import TODAY, backed_up, bootstrap_without_default, make_month, month_rows, store_for
from .lockwait import wait_for_lock_wait

POLICY = RetentionPolicy()
LIMIT_S = 120  # only keeps a broken test from hanging forever


@pytest.fixture(scope="module")
def months(bootstrapped_database):
    with db.connect(bootstrapped_database) as conn:
        for m in range(1, 9):
            make_month(conn, date(2025, m, 1), 30 + m)
    return bootstrapped_database


def _retire(conninfo, store, month, policy=POLICY):
    with db.connect(conninfo) as conn:
        return retire_month(conn, store, conninfo=conninfo, month=month, policy=policy, today=TODAY)


def _killed_after_the_detach(conninfo, store, month, state, *, generation=None, policy=POLICY):
    """What a retirement leaves when killed after its detach: its journal (as it writes
    it) saying ``state``, the month's table outside the tree. Returns the table's OID."""
    name = f"event_logs_{month:%Y_%m}"
    with db.connect(conninfo) as conn:
        oid = conn.execute("SELECT %s::regclass::oid::bigint", (name,)).fetchone()[0]
        conn.execute(f"ALTER TABLE event_logs DETACH PARTITION {name}")
        conn.commit()
        store.write_retirement(conn.info.dbname, "event_logs", month, {
            "state": state, "table_oid": oid, "table": f"public.{name}", "detach_mode": "plain",
            "backup_generation": generation.name if generation else None, "action": policy.action,
            "archive_schema": policy.archive_schema})
    return oid


def _relation(conninfo, oid):
    with db.connect(conninfo) as conn:
        return conn.execute("SELECT n.nspname, c.relname, c.relispartition FROM pg_class c JOIN pg_namespace n "
                            "ON n.oid = c.relnamespace WHERE c.oid = %s", (oid,)).fetchone()


def _journal(store, conninfo, month):
    return store.read_retirement(psycopg.conninfo.conninfo_to_dict(conninfo)["dbname"], "event_logs", month)


@pytest.mark.slow
def test_killed_just_before_the_done_write_is_done_with_a_verified_backup_only(months, tmp_path):
    store, client = store_for(months, tmp_path)
    month = date(2025, 1, 1)
    generation = backed_up(months, store, client, month)
    oid = _killed_after_the_detach(months, store, month, "detached", generation=generation)
    with db.connect(months) as conn:
        conn.execute("DROP TABLE event_logs_2025_01")  # the drop committed; the "done" write never came
        conn.commit()
    result = _retire(months, store, month)
    assert result.plan.status == "record-done" and result.rows_retired == 31
    journal = _journal(store, months, month)
    assert journal["state"] == "done" and journal["rows"] == 31 and journal["table_oid"] == oid
    assert _retire(months, store, month).plan.status == "already-retired"

    # The same state without a verified backup of the month: refused, journal untouched.
    month = date(2025, 2, 1)
    backed_up(months, store, client, month, verify=False)
    _killed_after_the_detach(months, store, month, "detached")
    with db.connect(months) as conn:
        conn.execute("DROP TABLE event_logs_2025_02")
        conn.commit()
    with pytest.raises(RetentionRefused, match="neither attached nor a standalone table.*never verified"):
        _retire(months, store, month)
    assert _journal(store, months, month)["state"] == "detached"


@pytest.mark.slow
def test_killed_after_the_move_to_the_archive_schema_is_done(months, tmp_path):
    store, client = store_for(months, tmp_path)
    month = date(2025, 3, 1)
    policy = RetentionPolicy(action="archive-schema", archive_schema="old_logs")
    generation = backed_up(months, store, client, month)
    oid = _killed_after_the_detach(months, store, month, "detached", generation=generation, policy=policy)
    with db.connect(months) as conn:
        conn.execute("CREATE SCHEMA old_logs")
        conn.execute("ALTER TABLE event_logs_2025_03 SET SCHEMA old_logs")
        conn.commit()
    result = _retire(months, store, month, policy)
    assert result.plan.status == "record-done" and result.archived_as == "old_logs.event_logs_2025_03"
    assert _journal(store, months, month)["state"] == "done"
    assert _relation(months, oid) == ("old_logs", "event_logs_2025_03", False)


def test_month_detached_before_its_journal_said_so_is_undone_by_the_next_job_without_proof(months, tmp_path):
    store, client = store_for(months, tmp_path)
    month = date(2025, 4, 1)
    before = month_rows(db.connect(months), month)
    backed_up(months, store, client, month, verify=False)  # no proof: the month must come back
    oid = _killed_after_the_detach(months, store, month, "detaching")
    assert partition_for_month(db.connect(months), "event_logs", month) is None
    with db.connect(months) as conn:
        result = rehome_default_rows(conn, EVENT_LOGS_POLICY, store=store)  # any job on the table
    assert any("attached public.event_logs_2025_04" in line and "never verified" in line for line in result.recovered)
    assert _relation(months, oid)[2] is True and month_rows(db.connect(months), month) == before
    assert _journal(store, months, month) is None


@pytest.mark.slow
def test_month_detached_before_its_journal_said_so_is_finished_by_the_next_job_with_proof(months, tmp_path):
    store, client = store_for(months, tmp_path)
    month = date(2025, 5, 1)
    generation = backed_up(months, store, client, month)
    oid = _killed_after_the_detach(months, store, month, "detaching", generation=generation)
    with db.connect(months) as conn:
        result = ensure_months(conn, EVENT_LOGS_POLICY, [date(2026, 11, 1)], store=store)
    assert any("finished the interrupted retirement of public.event_logs_2025_05" in line
               for line in result.recovery.actions)
    assert _relation(months, oid) is None and month_rows(db.connect(months), month) == []
    assert _journal(store, months, month)["state"] == "done"


# ---------------------------------------------------------------------------
# DETACH ... CONCURRENTLY left pending


@pytest.fixture()
def no_default(new_database):
    return bootstrap_without_default(new_database, [date(2025, m, 1) for m in (1, 2, 3)], 50)


def _cancelled_concurrent_detach(conninfo, name):
    """DETACH ... CONCURRENTLY cancelled (pg_cancel_backend) while it waits for a transaction
    that holds the parent open: its first phase committed, the partition is left pending."""
    reader = psycopg.connect(conninfo)
    reader.execute("SELECT count(*) FROM event_logs").fetchone()
    detacher = psycopg.connect(conninfo, autocommit=True, application_name="cosmic_ops:killed-detach")
    failure: list[BaseException] = []

    def detach():
        try:
            detacher.execute(f"ALTER TABLE event_logs DETACH PARTITION {name} CONCURRENTLY")
        except psycopg.Error as exc:
            failure.append(exc)

    thread = threading.Thread(target=detach)
    thread.start()
    with psycopg.connect(conninfo, autocommit=True) as watcher:
        wait_for_lock_wait(conninfo, pid=detacher.info.backend_pid, limit_s=LIMIT_S, what="the detach")
        watcher.execute("SELECT pg_cancel_backend(%s)", (detacher.info.backend_pid,))
        thread.join()
        reader.close()
        detacher.close()
        assert isinstance(failure[0], psycopg.errors.QueryCanceled)
        assert watcher.execute("SELECT inhdetachpending FROM pg_inherits WHERE inhrelid = %s::regclass",
                               (name,)).fetchone()[0]


def _insert_in(conninfo, month):
    lower, _ = month_bounds_utc(month)
    with db.connect(conninfo) as conn:
        conn.execute("INSERT INTO event_logs (server_timestamp, player_id, event_type) VALUES (%s, 1, 'late')",
                     (lower,))
        conn.commit()


def test_a_pending_detach_no_journal_explains_is_finalized_and_attached_again_by_the_next_job(no_default):
    month = date(2025, 2, 1)
    before = month_rows(db.connect(no_default), month)
    _cancelled_concurrent_detach(no_default, "event_logs_2025_02")
    with pytest.raises(psycopg.errors.CheckViolation, match="no partition of relation"):
        _insert_in(no_default, month)
    with db.connect(no_default) as conn:  # creating another month: any job on the table
        result = ensure_months(conn, EVENT_LOGS_POLICY, [date(2025, 4, 1)])
    assert result.created == ["event_logs_2025_04"]
    with db.connect(no_default) as conn:
        assert conn.execute("SELECT count(*) FROM pg_inherits WHERE inhdetachpending").fetchone()[0] == 0
        assert partition_for_month(conn, "event_logs", month).name == "event_logs_2025_02"
    assert month_rows(db.connect(no_default), month) == before
    _insert_in(no_default, month)
    assert len(month_rows(db.connect(no_default), month)) == len(before) + 1
    assert any("finalized the interrupted DETACH CONCURRENTLY of public.event_logs_2025_02" in line
               for line in result.recovery.actions)


@pytest.mark.slow
def test_a_pending_detach_of_a_journalled_retirement_is_finished_by_the_next_job(no_default, tmp_path):
    store, client = store_for(no_default, tmp_path)
    month = date(2025, 1, 1)
    generation = backed_up(no_default, store, client, month)
    with db.connect(no_default) as conn:
        oid = conn.execute("SELECT 'event_logs_2025_01'::regclass::oid::bigint").fetchone()[0]
        store.write_retirement(conn.info.dbname, "event_logs", month, {
            "state": "detaching", "table_oid": oid, "table": "public.event_logs_2025_01",
            "backup_generation": generation.name, "detach_mode": "concurrent", "action": "drop",
            "archive_schema": POLICY.archive_schema})
    _cancelled_concurrent_detach(no_default, "event_logs_2025_01")
    with db.connect(no_default, autocommit=True) as conn:  # a VACUUM of another month: any job on the table
        run_vacuum(conn, plan_vacuum(conn, [("public", "event_logs_2025_03")]), store=store)
    assert _relation(no_default, oid) is None and month_rows(db.connect(no_default), month) == []
    assert _journal(store, no_default, month)["state"] == "done"
    with db.connect(no_default) as conn:
        assert conn.execute("SELECT count(*) FROM pg_inherits WHERE inhdetachpending").fetchone()[0] == 0
