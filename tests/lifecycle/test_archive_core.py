"""Archive of destroyed bodies on a real server: exact moves, batches, kill safety, tablespace, un-archive."""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from cosmic_ops import db
from cosmic_ops.lifecycle import ArchivePolicy, Throttle, archive_destroyed_bodies, plan_archive, unarchive_bodies
from cosmic_ops.lifecycle.archive import ArchiveMismatch, archive_tablespace, ensure_archive_tablespace
from cosmic_ops.lifecycle.policy import MonthScope
from cosmic_ops.units import parse_age

from ..clock import NOW
from ..lockwait import wait_for_lock_wait
from .helpers import KillableWorker, archived_as_live_text, destroyed_months, load_demo, rows_as_text

SMALL_BATCHES = ArchivePolicy(throttle=Throttle(batch_size=97))


@pytest.fixture(scope="module")
def demo_db(bootstrapped_database):
    load_demo(bootstrapped_database)
    return bootstrapped_database


def _due_in(conn, scope: MonthScope) -> int:
    row = conn.execute(
        "SELECT count(*) FROM celestial_bodies WHERE is_destroyed AND updated_at >= %s AND updated_at < %s",
        (scope.lower, scope.upper)).fetchone()
    conn.commit()
    return row[0]


def test_age_needs_a_unit():
    assert parse_age("30 days") == timedelta(days=30)
    assert parse_age("2 weeks") == timedelta(days=14)
    for bad in ("30", "30 parsecs", "-3 days", "0 days"):
        with pytest.raises(ValueError):
            parse_age(bad)


def test_throttle_paces_to_the_rows_per_second_cap():
    throttle = Throttle(batch_size=1000, pause_s=0.01, max_rows_per_s=10_000)
    assert Throttle(batch_size=10, pause_s=0.2).delay_after(3, 0.0) == 0.0
    assert throttle.delay_after(1000, 0.02) == pytest.approx(0.08)
    assert throttle.delay_after(1000, 0.5) == pytest.approx(0.01)  # the pause is a floor
    assert throttle.delay_after(999, 0.5) == 0.0  # a short batch ended its table: no pause
    with pytest.raises(ValueError):
        Throttle(batch_size=0)


def test_sleep_coefficient_pauses_in_proportion_to_each_batch():
    relative = Throttle(batch_size=1000, sleep_coef=1.5)
    assert relative.delay_after(1000, 0.2) == pytest.approx(0.3)
    assert relative.delay_after(1000, 0.04) == pytest.approx(0.06)  # a faster machine pauses less
    assert relative.delay_after(10, 0.02) == pytest.approx(0.03)
    both = Throttle(batch_size=1000, max_rows_per_s=10_000, sleep_coef=0.5)
    assert both.delay_after(1000, 0.02) == pytest.approx(0.08)  # the cap is the longer wait here
    assert both.delay_after(1000, 0.2) == pytest.approx(0.1)
    assert "then 1.5x each batch's time" in relative.describe()
    with pytest.raises(ValueError):
        Throttle(sleep_coef=-1)


def test_scope_is_the_month_cut_at_the_policy_age():
    now = datetime(2026, 11, 21, 12, tzinfo=timezone.utc)
    scope = MonthScope.of(datetime(2026, 10, 1).date(), timedelta(days=30), now)
    assert scope.lower == datetime(2026, 10, 1, tzinfo=timezone.utc)
    assert scope.upper == datetime(2026, 10, 22, 12, tzinfo=timezone.utc)
    assert MonthScope.of(datetime(2026, 11, 1).date(), timedelta(days=30), now).is_empty


@pytest.mark.slow
def test_dry_run_plan_changes_nothing(demo_db):
    with db.connect(demo_db) as conn:
        month = destroyed_months(conn)[0]
        before = rows_as_text(conn, "celestial_bodies_archive")
        plan = plan_archive(conn, month, SMALL_BATCHES, now=NOW)
        assert plan.candidates == _due_in(conn, plan.scope) > 0
        text = plan.as_markdown()
        assert "DELETE FROM" in text and "FOR UPDATE SKIP LOCKED" in text and "celestial_bodies_archive" in text
        assert rows_as_text(conn, "celestial_bodies_archive") == before


@pytest.mark.slow
def test_archive_moves_exact_rows_in_bounded_batches(demo_db):
    with db.connect(demo_db) as conn:
        month = destroyed_months(conn)[1]
        scope = MonthScope.of(month, timedelta(days=30), NOW)
        expected = rows_as_text(conn, "celestial_bodies", "is_destroyed AND updated_at >= %s AND updated_at < %s",
                                (scope.lower, scope.upper))
        untouched = rows_as_text(conn, "celestial_bodies",
                                 "NOT (is_destroyed AND updated_at >= %s AND updated_at < %s)", (scope.lower, scope.upper))
        progress: list[str] = []

        report = archive_destroyed_bodies(conn, month, SMALL_BATCHES, progress=progress.append, now=NOW)

        assert report.log.moved == len(expected) > 97
        assert report.log.batches >= -(-len(expected) // 97)
        assert len(progress) == report.log.batches
        assert report.rows_remaining == 0 and report.conserved
        assert archived_as_live_text(conn, "updated_at >= %s AND updated_at < %s",
                                     (scope.lower, scope.upper)) == expected
        assert rows_as_text(conn, "celestial_bodies", "true") == untouched
        stamped = conn.execute("SELECT count(*) FROM celestial_bodies_archive WHERE archived_at IS NULL").fetchone()
        assert stamped[0] == 0

        again = archive_destroyed_bodies(conn, month, SMALL_BATCHES, now=NOW)
        assert again.log.moved == 0 and again.conserved and again.scope_rows_after == len(expected)


@pytest.mark.slow
def test_a_range_of_months_moves_in_one_run_in_two_sessions_without_row_locks(demo_db):
    with db.connect(demo_db) as conn:
        months = destroyed_months(conn)
        first, last = months[2], months[5]
        scope = MonthScope.of(first, timedelta(days=30), NOW, through=last)
        where = "is_destroyed AND updated_at >= %s AND updated_at < %s"
        expected = rows_as_text(conn, "celestial_bodies", where, (scope.lower, scope.upper))
        policy = ArchivePolicy(throttle=Throttle(batch_size=150), skip_locked=False, workers=2)
        assert "SKIP LOCKED" not in plan_archive(conn, first, policy, through=last, now=NOW).as_markdown()

        # Two sessions side by side, each taking the next leaf partition when its own is done.
        report = archive_destroyed_bodies(conn, first, policy, through=last, worker_sessions=db.SessionSpec(demo_db), now=NOW)

        assert report.log.moved == len(expected) and report.rows_remaining == 0 and report.conserved
        assert archived_as_live_text(conn, "updated_at >= %s AND updated_at < %s",
                                     (scope.lower, scope.upper)) == expected
        with pytest.raises(ValueError):
            MonthScope.of(last, timedelta(days=30), NOW, through=first)


@pytest.mark.slow
def test_a_leaf_that_fits_one_batch_moves_in_one_statement_and_a_row_dropped_on_insert_rolls_it_back(new_database):
    load_demo(new_database, seed=5)
    with db.connect(new_database) as conn:
        month = destroyed_months(conn)[1]
        scope = MonthScope.of(month, timedelta(days=30), NOW)
        where = "is_destroyed AND updated_at >= %s AND updated_at < %s"
        expected = rows_as_text(conn, "celestial_bodies", where, (scope.lower, scope.upper))
        assert any(",comet," in row for row in expected)
        # A trigger that silently swallows comets on their way into the archive.
        conn.execute("CREATE FUNCTION swallow_comets() RETURNS trigger LANGUAGE plpgsql AS "
                     "$$ BEGIN IF NEW.body_type = 'comet' THEN RETURN NULL; END IF; RETURN NEW; END $$")
        conn.execute("CREATE TRIGGER swallow_comets BEFORE INSERT ON celestial_bodies_archive "
                     "FOR EACH ROW EXECUTE FUNCTION swallow_comets()")
        conn.commit()
        whole_leaves = ArchivePolicy(throttle=Throttle(batch_size=1_000_000), skip_locked=False)

        with pytest.raises(ArchiveMismatch, match="celestial_bodies_small: .* rows deleted but"):
            archive_destroyed_bodies(conn, month, whole_leaves, now=NOW)
        live = rows_as_text(conn, "celestial_bodies", where, (scope.lower, scope.upper))
        archived = archived_as_live_text(conn, "updated_at >= %s AND updated_at < %s", (scope.lower, scope.upper))
        assert sorted(live + archived) == sorted(expected) and any(",comet," in row for row in live)

        conn.execute("DROP TRIGGER swallow_comets ON celestial_bodies_archive")
        leaves_left = conn.execute("SELECT count(DISTINCT tableoid) FROM celestial_bodies WHERE " + where,
                                   (scope.lower, scope.upper)).fetchone()[0]
        conn.commit()
        report = archive_destroyed_bodies(conn, month, whole_leaves, now=NOW)
        assert report.log.batches == leaves_left and report.rows_remaining == 0 and report.conserved
        assert archived_as_live_text(conn, "updated_at >= %s AND updated_at < %s",
                                     (scope.lower, scope.upper)) == expected


@pytest.mark.slow
def test_dense_due_rows_move_by_heap_page_ranges_and_a_row_changed_meanwhile_stays(new_database):
    load_demo(new_database, seed=7)
    with db.connect(new_database) as conn:
        month = destroyed_months(conn)[1]
        scope = MonthScope.of(month, timedelta(days=30), NOW)
        # Every third small body destroyed in that month: due rows on every heap page.
        conn.execute("UPDATE celestial_bodies SET is_destroyed = true, updated_at = %s "
                     "WHERE body_type IN ('asteroid', 'comet', 'dust_cloud') AND id %% 3 = 0",
                     (scope.lower + timedelta(days=3),))
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM celestial_bodies_small")
        conn.autocommit = False
        where = "is_destroyed AND updated_at >= %s AND updated_at < %s"
        expected = rows_as_text(conn, "celestial_bodies", where, (scope.lower, scope.upper))
        pages = conn.execute("SELECT pg_relation_size('celestial_bodies_small') / 8192").fetchone()[0]
        conn.commit()
        ranged = ArchivePolicy(throttle=Throttle(batch_size=100), skip_locked=False)
        plan = plan_archive(conn, month, ranged, now=NOW).as_markdown()
        assert f"celestial_bodies_small: heap pages 0..{pages - 1} in ranges of" in plan
        assert "ctid >= " in plan and "SKIP LOCKED" not in plan

        # A due row that a game session changes while the archive waits on its row lock:
        # the delete re-checks it, finds it no longer due, and leaves it live.
        changed_id = conn.execute("SELECT id FROM celestial_bodies_small WHERE " + where + " ORDER BY ctid LIMIT 1",
                                  (scope.lower, scope.upper)).fetchone()[0]
        conn.commit()
        with db.connect(new_database, autocommit=False) as game:  # holds its row lock until commit
            game.execute("UPDATE celestial_bodies SET is_destroyed = false WHERE id = %s", (changed_id,))
            with db.connect(new_database) as archiver:
                blockers: list[list[int]] = []

                def commit_once_the_archive_waits() -> None:
                    try:
                        waiting = wait_for_lock_wait(new_database, pid=archiver.info.backend_pid, limit_s=60,
                                                     what="the archive")
                        with psycopg.connect(new_database, autocommit=True) as watcher:
                            blockers.append(watcher.execute("SELECT pg_blocking_pids(%s)", (waiting,)).fetchone()[0])
                    finally:
                        game.commit()

                committer = threading.Thread(target=commit_once_the_archive_waits)
                committer.start()
                report = archive_destroyed_bodies(archiver, month, ranged, now=NOW)
                committer.join()
            # The archive's batch waited on the game's row lock, and went on once it was released.
            assert blockers == [[game.info.backend_pid]]

        still_due = [row for row in expected if not row.startswith(f"({changed_id},")]
        assert len(still_due) == len(expected) - 1
        assert report.log.moved == len(still_due) and report.rows_remaining == 0
        # The changed row left the month's scope (no longer destroyed), live, not lost.
        assert report.scope_rows_before - report.scope_rows_after == 1
        assert report.log.batches >= -(-len(still_due) // 100)
        assert archived_as_live_text(conn, "updated_at >= %s AND updated_at < %s",
                                     (scope.lower, scope.upper)) == still_due
        assert conn.execute("SELECT NOT is_destroyed FROM celestial_bodies WHERE id = %s",
                            (changed_id,)).fetchone() == (True,)


@pytest.mark.slow
def test_recently_destroyed_bodies_stay_live(demo_db):
    with db.connect(demo_db) as conn:
        recent = conn.execute(
            "SELECT count(*) FROM celestial_bodies WHERE is_destroyed AND updated_at >= %s - interval '30 days'",
            (NOW,)).fetchone()[0]
        conn.commit()
        assert recent > 0
        for month in destroyed_months(conn):
            archive_destroyed_bodies(conn, month, ArchivePolicy(throttle=Throttle(batch_size=5000)), now=NOW)
        left = conn.execute(
            "SELECT count(*) FILTER (WHERE updated_at >= %s - interval '30 days'), count(*) "
            "FROM celestial_bodies WHERE is_destroyed", (NOW,)).fetchone()
        assert left[0] == recent and left[1] == recent


@pytest.mark.slow
def test_unarchive_restores_rows_exactly(demo_db):
    with db.connect(demo_db) as conn:
        ids = [r[0] for r in conn.execute("SELECT id FROM celestial_bodies_archive ORDER BY id LIMIT 5")]
        save_id = conn.execute("SELECT save_id FROM celestial_bodies_archive "
                               "WHERE id <> ALL(%s) GROUP BY save_id ORDER BY count(*) DESC LIMIT 1",
                               (ids,)).fetchone()[0]
        conn.commit()
        by_ids = archived_as_live_text(conn, "id = ANY(%s)", (ids,))
        by_save = archived_as_live_text(conn, "save_id = %s AND id <> ALL(%s)", (save_id, ids))

        report = unarchive_bodies(conn, body_ids=ids, throttle=Throttle(batch_size=2))
        assert report.log.moved == 5 and report.log.batches == 3
        unarchive_bodies(conn, save_id=save_id)

        assert rows_as_text(conn, "celestial_bodies", "id = ANY(%s)", (ids,)) == by_ids
        assert rows_as_text(conn, "celestial_bodies", "save_id = %s AND id <> ALL(%s) AND is_destroyed "
                            "AND updated_at < %s - interval '30 days'", (save_id, ids, NOW)) == by_save
        left = conn.execute("SELECT count(*) FROM celestial_bodies_archive WHERE id = ANY(%s) OR save_id = %s",
                            (ids, save_id)).fetchone()[0]
        assert left == 0
        with pytest.raises(ValueError):
            unarchive_bodies(conn, body_ids=ids, save_id=save_id)


@pytest.fixture()
def archive_tablespace_dir(server_conninfo):
    """A tablespace in a temporary directory owned by the server's OS user; dropped afterwards."""
    location = tempfile.mkdtemp(prefix="cosmic_archive_ts_")
    os.chmod(location, 0o700)
    # The server's OS user owns its data directory: postgres for Debian's server, another
    # user for the embedded one. (The server must run on this machine, as both here do.)
    with psycopg.connect(server_conninfo) as conn:
        data_dir = conn.execute("SHOW data_directory").fetchone()[0]
    owner = os.stat(data_dir)
    os.chown(location, owner.st_uid, owner.st_gid)
    name = "cosmic_test_archive_" + os.path.basename(location).rsplit("_", 1)[-1].lower()
    with psycopg.connect(server_conninfo, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("CREATE TABLESPACE {} LOCATION {}").format(
            psycopg.sql.Identifier(name), psycopg.sql.Literal(location)))
    try:
        yield name
    finally:
        with psycopg.connect(server_conninfo, autocommit=True) as conn:
            conn.execute(psycopg.sql.SQL("DROP TABLESPACE IF EXISTS {}").format(psycopg.sql.Identifier(name)))
        subprocess.run(["rm", "-rf", location], check=False)


@pytest.mark.slow
def test_archive_lives_on_the_configured_tablespace(archive_tablespace_dir, new_database):
    # The tablespace fixture comes first so it is torn down after the database that uses it.
    load_demo(new_database, seed=11)
    with db.connect(new_database) as conn:
        month = destroyed_months(conn)[0]
        policy = ArchivePolicy(throttle=Throttle(batch_size=500), tablespace=archive_tablespace_dir)
        plan = plan_archive(conn, month, policy, now=NOW)
        assert any("SET TABLESPACE" in a.statement for a in plan.actions)
        report = archive_destroyed_bodies(conn, month, policy, now=NOW)
        assert report.tablespace_moved and report.log.moved > 0 and report.conserved
        placed = conn.execute(
            "SELECT c.relname, t.spcname FROM pg_class c LEFT JOIN pg_tablespace t ON t.oid = c.reltablespace "
            "WHERE c.oid = 'celestial_bodies_archive'::regclass OR c.oid IN "
            "(SELECT indexrelid FROM pg_index WHERE indrelid = 'celestial_bodies_archive'::regclass)").fetchall()
        assert len(placed) == 4 and {ts for _, ts in placed} == {archive_tablespace_dir}
        conn.commit()
        assert not archive_destroyed_bodies(conn, month, policy, now=NOW).tablespace_moved
        # Leave the tablespace empty so the fixture can drop it.
        ensure_archive_tablespace(conn, "pg_default")
        assert archive_tablespace(conn) is None


@pytest.mark.slow
def test_killed_archive_loses_nothing_and_the_rerun_finishes(new_database):
    load_demo(new_database, seed=5)
    with db.connect(new_database) as conn:
        months = destroyed_months(conn)
        total = conn.execute("SELECT count(*) FROM celestial_bodies").fetchone()[0]
        conn.commit()
    month = max(months[:-2], key=lambda m: m)  # a month entirely older than 30 days
    with db.connect(new_database) as conn:
        due = _due_in(conn, MonthScope.of(month, timedelta(days=30), NOW))
    slow = ArchivePolicy(throttle=Throttle(batch_size=7, pause_s=0.005))
    worker = KillableWorker(new_database, lambda c: archive_destroyed_bodies(c, month, slow, now=NOW)).start()
    worker.kill_when(new_database, "SELECT count(*) >= 21 FROM celestial_bodies_archive")
    assert isinstance(worker.error, psycopg.OperationalError)

    with db.connect(new_database) as conn:
        live, archived, distinct = conn.execute(
            "SELECT (SELECT count(*) FROM celestial_bodies), (SELECT count(*) FROM celestial_bodies_archive), "
            "(SELECT count(*) FROM (SELECT id, body_type, save_id FROM celestial_bodies UNION "
            "SELECT id, body_type, save_id FROM celestial_bodies_archive) k)").fetchone()
        conn.commit()
        assert 21 <= archived < due
        assert live + archived == total == distinct

        report = archive_destroyed_bodies(conn, month, ArchivePolicy(), now=NOW)
        assert report.log.moved == due - archived and report.rows_remaining == 0 and report.conserved
        live, archived = conn.execute("SELECT (SELECT count(*) FROM celestial_bodies), "
                                      "(SELECT count(*) FROM celestial_bodies_archive)").fetchone()
        assert live + archived == total and archived == due


@pytest.mark.slow
def test_second_worker_is_refused_while_one_runs(demo_db):
    from cosmic_ops.db import MaintenanceLockBusy, maintenance_lock

    with db.connect(demo_db) as holder, db.connect(demo_db) as conn:
        with maintenance_lock(holder, "celestial_bodies_archive"):
            with pytest.raises(MaintenanceLockBusy, match="did not do its work"):
                archive_destroyed_bodies(conn, destroyed_months(conn)[0], now=NOW)
