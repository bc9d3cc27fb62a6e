"""VACUUM / ANALYZE core: lowers dead tuples, holds the maintenance lock, refuses misuse."""

import threading

import pytest

from cosmic_ops import db
from cosmic_ops.monitoring import (
    RelationNotFound, apply, partitioned_roots, plan_analyze, plan_markdown, plan_vacuum,
)

from ..clock import NOW

from .helpers import create_int_range_table, make_dead_tuples


@pytest.fixture(scope="module")
def database(bootstrapped_database):
    with db.connect(bootstrapped_database) as conn:
        create_int_range_table(conn, "vac", 3)
    return bootstrapped_database


def dead_tuples(conn, table):
    return conn.execute("SELECT pg_stat_get_dead_tuples(%s::regclass)", (table,)).fetchone()[0]


def test_plan_is_sql_and_changes_nothing(database):
    make_dead_tuples(database, "public", "vac", 0, rows=500, deleted=250)
    with db.connect(database, autocommit=True) as conn:
        actions = plan_vacuum(conn, [("public", "vac_p0")])
        assert [a.as_sql(conn) for a in actions] == ['VACUUM (ANALYZE) "public"."vac_p0"']
        assert actions[0].lock_scope == "public.vac"
        assert '`VACUUM (ANALYZE) "public"."vac_p0"`' in plan_markdown(conn, actions)
        assert dead_tuples(conn, "vac_p0") == 250


def test_vacuum_lowers_dead_tuples_under_the_tables_lock(database):
    make_dead_tuples(database, "public", "vac", 1, rows=600, deleted=300)
    with db.connect(database, autocommit=True) as conn:
        assert dead_tuples(conn, "vac_p1") == 300
        [result] = apply(conn, plan_vacuum(conn, [("public", "vac_p1")]))
        assert (result.dead_tuples_before, result.dead_tuples_after, result.live_tuples_after) == (300, 0, 300)
        assert dead_tuples(conn, "vac_p1") == 0
        last = conn.execute("SELECT last_vacuum IS NOT NULL, last_analyze IS NOT NULL "
                            "FROM pg_stat_all_tables WHERE relid = 'vac_p1'::regclass").fetchone()
        assert last == (True, True)


def test_vacuum_needs_autocommit(database):
    with db.connect(database, autocommit=False) as conn:
        with pytest.raises(ValueError, match="transaction block"):
            apply(conn, plan_vacuum(conn, [("public", "vac_p2")]))


def test_busy_lock_names_the_holder_and_does_no_work(database):
    make_dead_tuples(database, "public", "vac", 2, rows=400, deleted=200)
    with db.connect(database, autocommit=True, application_name="cosmic_ops:holder-run") as holder:
        with db.maintenance_lock(holder, "vac"):
            with db.connect(database, autocommit=True) as conn:
                with pytest.raises(db.MaintenanceLockBusy) as caught:
                    apply(conn, plan_vacuum(conn, [("public", "vac_p2")]))
                assert "cosmic_ops:holder-run" in str(caught.value)
                assert dead_tuples(conn, "vac_p2") == 200


def test_a_waiting_run_proceeds_once_the_holder_finishes(database):
    make_dead_tuples(database, "public", "vac", 2, rows=400, deleted=200)
    holder = db.connect(database, autocommit=True)
    release = threading.Event()
    holding = threading.Event()

    def hold():
        with db.maintenance_lock(holder, "vac"):
            holding.set()
            release.wait()

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        holding.wait()
        with db.connect(database, autocommit=True) as conn:
            actions = plan_vacuum(conn, [("public", "vac_p2")])
            threading.Timer(0.5, release.set).start()
            [result] = apply(conn, actions, lock_wait_s=120)
        assert result.dead_tuples_after == 0
    finally:
        release.set()
        thread.join()
        holder.close()


def test_analyze_of_every_partitioned_root_fills_parent_statistics(database):
    with db.connect(database, autocommit=True) as conn:
        conn.execute("INSERT INTO event_logs (server_timestamp, player_id, event_type) "
                     "SELECT %s, g, 'player_login' FROM generate_series(1, 50) g", (NOW,))
        roots = partitioned_roots(conn)
        assert {("public", "event_logs"), ("public", "celestial_bodies"), ("public", "vac")} <= set(roots)
        assert ("public", "celestial_bodies_planets") not in roots
        results = apply(conn, plan_analyze(conn, roots))
        assert {r.sql_text for r in results} >= {'ANALYZE "public"."event_logs"', 'ANALYZE "public"."celestial_bodies"'}
        stats = conn.execute("SELECT count(*) FROM pg_stats WHERE tablename = 'event_logs' "
                             "AND attname = 'player_id'").fetchone()[0]
        assert stats >= 1


def test_unknown_and_partitioned_relations_are_refused(database):
    with db.connect(database, autocommit=True) as conn:
        with pytest.raises(RelationNotFound):
            plan_vacuum(conn, [("public", "no_such_table")])
        with pytest.raises(ValueError, match="partitioned"):
            plan_vacuum(conn, [("public", "vac")])
        with pytest.raises(RelationNotFound):
            plan_vacuum(conn, [("public", "x'; DROP TABLE vac; --")])
        assert conn.execute("SELECT to_regclass('public.vac') IS NOT NULL").fetchone()[0]
