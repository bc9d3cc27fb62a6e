"""Jobs on one table exclude each other (issue 12, part 2): event_logs.

Each pair runs for real: one job runs in a thread on its own session and is stopped
inside its locked region (a progress/log callback, or a pause put in front of a
function it calls there); the other job must then fail with ``MaintenanceLockBusy``
and change nothing. Then the first job finishes its work.
"""

from __future__ import annotations

from datetime import date

import psycopg
import pytest

from cosmic_ops import db, retention
from cosmic_ops.backups import RetentionPolicy, restore as restore_module, restore_month
from cosmic_ops.db import MaintenanceLockBusy
from cosmic_ops.monitoring import apply as run_vacuum, plan_vacuum
from cosmic_ops.partitions import EVENT_LOGS_POLICY, ensure_months, partition_for_month, rehome_default_rows
from cosmic_ops.partitions import maintain, rehome

from .backups.helpers import TODAY, backed_up, make_month, store_for
from .partitions.helpers import insert_events, tree_snapshot
from .paused import Paused

POLICY = RetentionPolicy()


# ---------------------------------------------------------------------------
# event_logs: partitions, rehoming, retention, restore, VACUUM


@pytest.fixture(scope="module")
def months(bootstrapped_database):
    with db.connect(bootstrapped_database) as conn:
        for m in range(1, 8):
            make_month(conn, date(2025, m, 1), 40 + m)
    return bootstrapped_database


def test_one_scope_per_table_whatever_names_it(months):
    """The root of the partition tree by OID: every partition and every spelling of the
    parent, and a partition left "detach pending", give the same scope."""
    with db.connect(months) as conn:
        conn.execute("CREATE TABLE probe (k int) PARTITION BY RANGE (k)")
        conn.execute("CREATE TABLE probe_1 PARTITION OF probe FOR VALUES FROM (1) TO (10)")
        conn.commit()
        reader = psycopg.connect(months)
        reader.execute("SELECT count(*) FROM probe").fetchone()
        with psycopg.connect(months, autocommit=True) as detacher:
            detacher.execute("SET lock_timeout = '200ms'")
            with pytest.raises(psycopg.errors.LockNotAvailable):
                detacher.execute("ALTER TABLE probe DETACH PARTITION probe_1 CONCURRENTLY")
        reader.close()
        root = conn.execute("SELECT 'event_logs'::regclass::oid::bigint").fetchone()[0]
        names = ("event_logs", "public.event_logs", '"public"."event_logs"', "event_logs_2025_05",
                 "event_logs_default", root)
        assert {db.table_lock_scope(conn, name) for name in names} == {db.table_lock_scope(conn, root)}
        scope = db.table_lock_scope(conn, root)
        assert (scope.objid, scope.name, scope.partitioned) == (root, "public.event_logs", True)
        planet = conn.execute("SELECT relid::bigint FROM pg_partition_tree('celestial_bodies') "
                              "WHERE level = 2 LIMIT 1").fetchone()[0]
        assert db.table_lock_scope(conn, planet).name == "public.celestial_bodies"
        assert db.table_lock_scope(conn, "celestial_bodies_archive").name == "public.celestial_bodies_archive"
        assert db.table_lock_scope(conn, "probe_1").name == "public.probe"  # pending: still probe's
        conn.execute("ALTER TABLE probe DETACH PARTITION probe_1 FINALIZE")
        conn.commit()
        assert db.table_lock_scope(conn, "probe_1").name == "public.probe_1"
        with db.maintenance_lock(conn, "event_logs_2025_06"):
            held = conn.execute("SELECT objid::regclass::text FROM pg_locks WHERE locktype = 'advisory' "
                                "AND pid = pg_backend_pid() AND classid = %s", (db.ADVISORY_LOCK_CLASS,)).fetchall()
            conn.commit()
        assert held == [("event_logs",)]


def _retire(conn, conninfo, store, month):
    return retention.retire_month(conn, store, conninfo=conninfo, month=month, policy=POLICY, today=TODAY)


def _attached(conninfo, month):
    with db.connect(conninfo) as conn:
        return partition_for_month(conn, "event_logs", month)


def _snapshot(conninfo):
    with db.connect(conninfo) as conn:
        return tree_snapshot(conn)


@pytest.mark.slow
def test_partition_creation_and_retirement_exclude_each_other(months, tmp_path, monkeypatch):
    store, client = store_for(months, tmp_path)
    month = date(2025, 1, 1)
    backed_up(months, store, client, month)

    creating = Paused(months, lambda c: ensure_months(c, EVENT_LOGS_POLICY, [date(2027, 5, 1)]))
    monkeypatch.setattr(maintain, "read_with_retry", creating.wrap(maintain.read_with_retry))
    with creating, db.connect(months) as conn:
        before = _snapshot(months)
        with pytest.raises(MaintenanceLockBusy, match="paused-job"):
            _retire(conn, months, store, month)
        assert _snapshot(months) == before and _attached(months, month) is not None
    assert creating.result.created == ["event_logs_2027_05"]
    monkeypatch.undo()

    retiring = Paused(months, lambda c: _retire(c, months, store, month))
    monkeypatch.setattr(retention, "plan_retirement", retiring.wrap(retention.plan_retirement))
    with retiring, db.connect(months) as conn:
        before = _snapshot(months)
        with pytest.raises(MaintenanceLockBusy, match="paused-job"):
            ensure_months(conn, EVENT_LOGS_POLICY, [date(2027, 6, 1)])
        assert _snapshot(months) == before
    assert retiring.result.rows_retired == 41 and _attached(months, month) is None


@pytest.mark.slow
def test_partition_creation_and_restore_exclude_each_other(months, tmp_path, monkeypatch):
    store, client = store_for(months, tmp_path)
    month = date(2025, 2, 1)
    backed_up(months, store, client, month)
    with db.connect(months) as conn:
        _retire(conn, months, store, month)

    restoring = Paused(months, lambda c: restore_month(c, store, client, month=month))
    monkeypatch.setattr(restore_module, "newest_proven_generation",
                        restoring.wrap(restore_module.newest_proven_generation))
    with restoring, db.connect(months) as conn:
        before = _snapshot(months)
        with pytest.raises(MaintenanceLockBusy, match="paused-job"):
            ensure_months(conn, EVENT_LOGS_POLICY, [date(2027, 7, 1)])
        assert _snapshot(months) == before
    assert restoring.result.attached and _attached(months, month) is not None
    monkeypatch.undo()

    with db.connect(months) as conn:
        _retire(conn, months, store, month)
    creating = Paused(months, lambda c: ensure_months(c, EVENT_LOGS_POLICY, [date(2027, 7, 1)]))
    monkeypatch.setattr(maintain, "read_with_retry", creating.wrap(maintain.read_with_retry))
    with creating, db.connect(months) as conn:
        with pytest.raises(MaintenanceLockBusy, match="paused-job"):
            restore_month(conn, store, client, month=month)
        assert _attached(months, month) is None
    assert creating.result.created == ["event_logs_2027_07"]


@pytest.mark.slow
def test_rehoming_and_retirement_exclude_each_other(months, tmp_path, monkeypatch):
    store, client = store_for(months, tmp_path)
    month = date(2025, 3, 1)
    backed_up(months, store, client, month)
    with db.connect(months) as conn:
        insert_events(conn, "1999-01-10 00:00+00")  # a row waiting in DEFAULT

    rehoming = Paused(months, lambda c: rehome_default_rows(c, EVENT_LOGS_POLICY))
    monkeypatch.setattr(rehome, "read_with_retry", rehoming.wrap(rehome.read_with_retry))
    with rehoming, db.connect(months) as conn:
        before = _snapshot(months)
        with pytest.raises(MaintenanceLockBusy, match="paused-job"):
            _retire(conn, months, store, month)
        assert _snapshot(months) == before
    assert rehoming.result.created == ["event_logs_1999_01"]
    monkeypatch.undo()

    with db.connect(months) as conn:
        insert_events(conn, "1998-01-10 00:00+00")
    retiring = Paused(months, lambda c: _retire(c, months, store, month))
    monkeypatch.setattr(retention, "plan_retirement", retiring.wrap(retention.plan_retirement))
    with retiring, db.connect(months) as conn:
        before = _snapshot(months)
        with pytest.raises(MaintenanceLockBusy, match="paused-job"):
            rehome_default_rows(conn, EVENT_LOGS_POLICY)
        assert _snapshot(months) == before
        assert conn.execute("SELECT count(*) FROM ONLY event_logs_default").fetchone()[0] == 1
        conn.rollback()
    assert retiring.result.rows_retired == 43 and _attached(months, month) is None


def _vacuum_without_public_on_the_search_path(conn, table, log=lambda line: None):
    # The scope must not depend on how a session spells the table: here its root reads
    # back as "public.event_logs", in a retention session as "event_logs".
    conn.execute("SET search_path = pg_catalog")
    return run_vacuum(conn, plan_vacuum(conn, [("public", table)]), log=log)


@pytest.mark.slow
def test_vacuum_and_retirement_exclude_each_other(months, tmp_path, monkeypatch):
    store, client = store_for(months, tmp_path)
    month = date(2025, 4, 1)
    backed_up(months, store, client, month)

    vacuuming = Paused(months, lambda c: _vacuum_without_public_on_the_search_path(
        c, "event_logs_2025_05", vacuuming.hook), autocommit=True)
    with vacuuming, db.connect(months) as conn:
        before = _snapshot(months)
        with pytest.raises(MaintenanceLockBusy, match="paused-job"):
            _retire(conn, months, store, month)
        assert _snapshot(months) == before
    assert [r.sql_text for r in vacuuming.result] == ['VACUUM (ANALYZE) "public"."event_logs_2025_05"']

    retiring = Paused(months, lambda c: _retire(c, months, store, month))
    monkeypatch.setattr(retention, "plan_retirement", retiring.wrap(retention.plan_retirement))
    with retiring, db.connect(months, autocommit=True) as conn:
        with pytest.raises(MaintenanceLockBusy, match="paused-job"):
            _vacuum_without_public_on_the_search_path(conn, "event_logs_2025_04")
    assert retiring.result.rows_retired == 44 and _attached(months, month) is None
