"""Packing inactive saves and rehydrating them, on a real server: exactness, verification, concurrency, kills."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from cosmic_ops import db
from cosmic_ops.fingerprint import Fingerprint, fingerprint, table_columns
from cosmic_ops.lifecycle import (
    Codec, SavePolicy, Throttle, compress_inactive_saves, rehydrate_save, rehydrate_saves,
)
from cosmic_ops.lifecycle.policy import BatchLog, MonthScope
from cosmic_ops.lifecycle.saves import (
    CompressReport, SaveVerificationFailed, compress_batch, select_candidates, verify_packed_saves,
)

from ..clock import NOW
from .helpers import SAVE_TABLES, KillableWorker, inactive_save_months, load_demo, rows_as_text

pytestmark = pytest.mark.slow  # every test packs saves of a loaded demo database

# Values that trip naive serializers: NULLs next to empty strings, quotes, backslashes,
# commas, parentheses, newlines, unicode, nested jsonb, special floats, microseconds.
_TRICKY_BODY = """
INSERT INTO celestial_bodies (id, save_id, body_type, name, parent_id, mass, radius, position_x, position_y,
    position_z, orbital_period_s, properties, is_destroyed, destroyed_at, created_at, updated_at)
VALUES
 (900001, %(save)s, 'planet', E'Ke"pler (b), \\\\ back\\nslash', NULL, 5.972168e24, 6371000.123456789,
  'NaN', 'Infinity', '-0', NULL,
  '{"a": [1, 2.50, {"b": null}], "q": "say \\"hi\\", (ok)", "u": "星雲 ✨", "big": 12345678901234567890.123}',
  false, NULL, '2024-02-29 23:59:59.999999+00', '2024-03-01 00:00:00.000001+00'),
 (900002, %(save)s, 'black_hole', '', 900001, 1e-300, 2.2250738585072014e-308, -1.5, 0.1, 0.30000000000000004,
  1.7976931348623157e308, '{}', true, '2024-03-01 00:00:00.5+00', '2000-01-01 00:00:00+00',
  '2024-03-01 00:00:00.5+00'),
 (9223372036854775807, %(save)s, 'comet', 'int8 edges', -9223372036854775808, 5e-324, 1e22, 0.1, 0.2, 0.3,
  123456.789, '[]', true, 'infinity', '-infinity', '2024-03-01 00:00:00+00')
"""
_TRICKY_RESOURCE = """
INSERT INTO save_resources (save_id, resource_type, amount, capacity, production_rate, updated_at)
VALUES (%(save)s, 'antimatter', 0.0001, NULL, -0.0, '1999-12-31 23:59:59.123456+00'),
       (%(save)s, E'quote"comma,paren)', 9999999999999999.9999, 0, 1e-10, '2024-01-01 00:00:00+00')
"""
_TRICKY_RESEARCH = """
INSERT INTO save_research (save_id, tech_id, level, progress, started_at, completed_at)
VALUES (%(save)s, 'tech_null_dates', -32768, 0.33333334, NULL, NULL),
       (%(save)s, 'tech_full', 32767, 1, '2024-01-01 00:00:00.000001+00', '2024-01-02 00:00:00+00')
"""


def _save_rows(conn, save_ids) -> dict[str, list[str]]:
    return {t: rows_as_text(conn, t, "save_id = ANY(%s)", (list(save_ids),)) for t in SAVE_TABLES}


def _packed_ids(conn) -> list[int]:
    ids = [r[0] for r in conn.execute("SELECT id FROM game_saves WHERE compressed_state IS NOT NULL ORDER BY id")]
    conn.commit()
    return ids


def _saves_with_rows_and_state(conn) -> int:
    row = conn.execute(
        "SELECT count(*) FROM game_saves g WHERE g.compressed_state IS NOT NULL AND ("
        "EXISTS (SELECT 1 FROM celestial_bodies c WHERE c.save_id = g.id) OR "
        "EXISTS (SELECT 1 FROM save_resources r WHERE r.save_id = g.id) OR "
        "EXISTS (SELECT 1 FROM save_research s WHERE s.save_id = g.id))").fetchone()
    conn.commit()
    return row[0]


@pytest.fixture(scope="module")
def demo_db(bootstrapped_database):
    load_demo(bootstrapped_database, seed=3)
    with db.connect(bootstrapped_database) as conn:
        tricky = conn.execute("SELECT id FROM game_saves WHERE NOT is_active AND updated_at < %s - interval "
                              "'40 days' ORDER BY id LIMIT 1", (NOW,)).fetchone()[0]
        for statement in (_TRICKY_BODY, _TRICKY_RESOURCE, _TRICKY_RESEARCH):
            conn.execute(statement, {"save": tricky})
        conn.commit()
    return bootstrapped_database


def test_round_trip_restores_every_row_exactly(demo_db):
    with db.connect(demo_db) as conn:
        months = inactive_save_months(conn)
        due = [r[0] for r in conn.execute(
            "SELECT id FROM game_saves WHERE NOT is_active AND updated_at < %s - interval '7 days' ORDER BY id",
            (NOW,))]
        conn.commit()
        before = _save_rows(conn, due)
        assert all(before.values()) and any("Ke" in row for row in before["celestial_bodies"])

        # The first half of the months as one range with two worker processes side by side (enough
        # batches of 4 for both), then every other month on its own, then the rest in one session.
        middle = months[len(months) // 2]
        pair = SavePolicy(throttle=Throttle(batch_size=4), workers=2)
        reports = [compress_inactive_saves(conn, months[0], pair, through=middle,
                                           worker_sessions=db.SessionSpec(demo_db), now=NOW)]
        assert reports[0].log.batches >= 2 * pair.workers
        reports += [compress_inactive_saves(conn, m, pair, worker_sessions=db.SessionSpec(demo_db), now=NOW)
                    for m in months[::2] if m > middle]
        reports += [compress_inactive_saves(conn, months[0], SavePolicy(throttle=Throttle(batch_size=16)),
                                            through=months[-1], now=NOW)]
        assert sum(r.log.moved for r in reports) == len(due) == len(_packed_ids(conn))
        assert sum(r.rows_folded for r in reports) == sum(len(v) for v in before.values())
        assert all(not v for v in _save_rows(conn, due).values())
        assert _saves_with_rows_and_state(conn) == 0

        info = conn.execute("SELECT compression_info FROM game_saves WHERE id = %s", (due[0],)).fetchone()[0]
        assert info["codec"] == "zstd" and info["compressed_bytes"] < info["original_bytes"]
        assert info["format"] == "cosmic_ops.save/5" and info["dictionary"] is not None
        assert set(info["row_counts"]) == set(SAVE_TABLES) and len(info["sha256"]) == 64
        state = conn.execute("SELECT compressed_state FROM game_saves WHERE id = %s", (due[0],)).fetchone()[0]
        conn.commit()
        assert len(state) == info["compressed_bytes"]

        for save_id in due:
            restored = rehydrate_save(conn, save_id)
            assert restored == {t: len(_save_rows(conn, [save_id])[t]) for t in SAVE_TABLES}
        conn.commit()
        assert _save_rows(conn, due) == before
        assert _packed_ids(conn) == []
        cleared = conn.execute("SELECT count(*) FROM game_saves WHERE id = ANY(%s) AND (compression_info IS NOT NULL "
                               "OR compressed_at IS NOT NULL)", (due,)).fetchone()[0]
        assert cleared == 0


def test_rehydrate_is_the_callers_transaction(demo_db):
    with db.connect(demo_db) as conn:
        month = inactive_save_months(conn)[0]
        compress_inactive_saves(conn, month, SavePolicy(codec=Codec("zlib", 9)), now=NOW)
        save_id = _packed_ids(conn)[0]
        info = conn.execute("SELECT compression_info FROM game_saves WHERE id = %s", (save_id,)).fetchone()[0]
        assert info["codec"] == "zlib" and info["level"] == 9
        with conn.transaction(force_rollback=True):  # the caller's transaction decides
            rehydrate_save(conn, save_id)
        assert save_id in _packed_ids(conn)
        with conn.transaction():
            rehydrate_save(conn, save_id)
        assert save_id not in _packed_ids(conn)
        with pytest.raises(ValueError, match="not compressed"):
            rehydrate_save(conn, save_id)
        conn.rollback()


def test_corrupt_pack_is_detected_and_rehydrate_changes_nothing(demo_db):
    with db.connect(demo_db) as conn:
        for month in inactive_save_months(conn):
            compress_inactive_saves(conn, month, now=NOW)
        victim, other = _packed_ids(conn)[:2]
        state = bytes(conn.execute("SELECT compressed_state FROM game_saves WHERE id = %s", (other,)).fetchone()[0])
        # A different save's valid pack under this save's checksum: decompresses fine, checksum differs.
        conn.execute("UPDATE game_saves SET compressed_state = %s WHERE id = %s", (state, victim))
        conn.commit()
        problems = verify_packed_saves(conn, [victim, other])
        assert set(problems) == {victim} and "checksum" in problems[victim]
        with pytest.raises(SaveVerificationFailed):
            rehydrate_save(conn, victim)
        conn.rollback()
        assert victim in _packed_ids(conn)
        assert conn.execute("SELECT count(*) FROM celestial_bodies WHERE save_id = %s", (victim,)).fetchone()[0] == 0


def test_a_table_changed_since_packing_is_refused_until_it_matches_again(new_database):
    """Binary input applies type modifiers: a narrower numeric would round restored values silently."""
    load_demo(new_database, seed=29)
    with db.connect(new_database) as conn:
        month = inactive_save_months(conn)[0]
        save_id = select_candidates(conn, MonthScope.of(month, timedelta(days=7), NOW), 1)[0][0]
        conn.commit()
        before = _save_rows(conn, [save_id])
        compress_inactive_saves(conn, month, SavePolicy(workers=1), now=NOW)
        layouts = conn.execute("SELECT count(*) FROM cosmic_ops.save_layouts").fetchone()[0]
        conn.execute("ALTER TABLE save_resources ALTER COLUMN amount TYPE numeric(20,2)")
        conn.commit()
        with pytest.raises(SaveVerificationFailed, match=r"save_resources changed since packing .*amount numeric"):
            rehydrate_save(conn, save_id)
        conn.rollback()
        assert save_id in _packed_ids(conn) and not _save_rows(conn, [save_id])["save_resources"]

        conn.execute("ALTER TABLE save_resources ALTER COLUMN amount TYPE numeric(20,4)")
        conn.commit()
        rehydrate_save(conn, save_id)
        conn.commit()
        assert _save_rows(conn, [save_id]) == before
        assert layouts == len(SAVE_TABLES)


def test_a_save_changed_after_selection_is_not_compressed(new_database):
    load_demo(new_database, seed=9)
    with db.connect(new_database) as conn, psycopg.connect(new_database) as game:
        # The first month with four due saves: how many fall in the oldest month depends on the date.
        scope = next(s for s in (MonthScope.of(m, timedelta(days=7), NOW) for m in inactive_save_months(conn))
                     if len(select_candidates(conn, s, 4)) == 4)
        selected = select_candidates(conn, scope, 4)
        conn.commit()
        assert len(selected) == 4
        touched, held = selected[0][0], selected[1][0]
        before = _save_rows(conn, [touched, held])

        # The player came back (committed), and another game transaction is still writing.
        with psycopg.connect(new_database, autocommit=True) as other:
            other.execute("UPDATE game_saves SET updated_at = %s - interval '8 days' WHERE id = %s", (NOW, touched))
        game.execute("UPDATE game_saves SET play_time_s = play_time_s + 1 WHERE id = %s", (held,))

        report = CompressReport(scope=scope, log=BatchLog(unit="saves"))
        packed = compress_batch(conn, selected, Codec(), report)
        game.rollback()

        assert packed == [selected[2][0], selected[3][0]]
        assert report.skipped_changed == 2
        assert _save_rows(conn, [touched, held]) == before
        assert set(_packed_ids(conn)) == set(packed)


def _busiest_month_and_its_saves(conninfo: str):
    with db.connect(conninfo) as conn:
        months = inactive_save_months(conn)
        month = max(((m, conn.execute("SELECT count(*) FROM game_saves WHERE NOT is_active AND "
                                      "date_trunc('month', updated_at AT TIME ZONE 'UTC')::date = %s",
                                      (m,)).fetchone()[0]) for m in months[:-1]), key=lambda x: x[1])[0]
        conn.commit()
        due = [s[0] for s in select_candidates(conn, MonthScope.of(month, timedelta(days=7), NOW))]
        conn.commit()
        return month, due, _save_rows(conn, due)


def _nothing_lost_and_the_rerun_finishes(conninfo: str, month, due: list[int], before: dict) -> None:
    with db.connect(conninfo) as conn:
        packed = _packed_ids(conn)
        assert 3 <= len(packed) < len(due)
        assert _saves_with_rows_and_state(conn) == 0
        unpacked = [s for s in due if s not in packed]
        assert _save_rows(conn, unpacked) == {t: [r for r in before[t] if int(r[1:].split(",")[1 if t == "celestial_bodies" else 0]) in unpacked] for t in SAVE_TABLES}
        folded = sum(sum(i["row_counts"].values()) for (i,) in conn.execute(
            "SELECT compression_info FROM game_saves WHERE compressed_state IS NOT NULL"))
        conn.commit()
        assert folded + sum(len(v) for v in _save_rows(conn, due).values()) == sum(len(v) for v in before.values())

        rerun = compress_inactive_saves(conn, month, now=NOW)
        assert rerun.log.moved == len(due) - len(packed) and rerun.saves_remaining == 0
        for save_id in due:
            rehydrate_save(conn, save_id)
        conn.commit()
        assert _save_rows(conn, due) == before


def test_killed_compression_loses_nothing_and_the_rerun_finishes(new_database):
    load_demo(new_database, seed=13)
    month, due, before = _busiest_month_and_its_saves(new_database)
    slow = SavePolicy(throttle=Throttle(batch_size=1, pause_s=0.01))
    worker = KillableWorker(new_database, lambda c: compress_inactive_saves(c, month, slow, now=NOW)).start()
    worker.kill_when(new_database, "SELECT count(*) >= 3 FROM game_saves WHERE compressed_state IS NOT NULL")
    assert isinstance(worker.error, psycopg.OperationalError)
    _nothing_lost_and_the_rerun_finishes(new_database, month, due, before)


_PACK_WORKER = "cosmic_ops:test-pack-worker"


def _workers_waiting_on_a_lock(conninfo: str, count: int, limit_s: float = 120) -> list[int]:
    """The pids of ``count`` worker sessions once each waits on a lock (a polled condition;
    the limit only keeps a broken test from hanging)."""
    deadline = time.monotonic() + limit_s
    with psycopg.connect(conninfo, autocommit=True) as watcher:
        while time.monotonic() < deadline:
            pids = [r[0] for r in watcher.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND wait_event_type = 'Lock'",
                (_PACK_WORKER,))]
            if len(pids) == count:
                return pids
            time.sleep(0.01)
    raise AssertionError(f"{count} pack workers never waited on a lock together")


def test_killed_worker_processes_lose_nothing_and_the_rerun_finishes(new_database):
    load_demo(new_database, seed=23)
    month, due, before = _busiest_month_and_its_saves(new_database)
    slow = SavePolicy(throttle=Throttle(batch_size=1, pause_s=0.05), workers=2)
    sessions = db.SessionSpec(new_database, application_name=_PACK_WORKER)
    # A SHARE lock on save_research stops every batch at its DELETE from that table (the
    # batch's last), inside the batch's transaction: with it the test holds both workers
    # in the middle of a batch, so both sessions exist when they are killed.
    hold = "LOCK TABLE save_research IN SHARE MODE"
    with psycopg.connect(new_database) as gate:
        gate.execute(hold)
        worker = KillableWorker(new_database, lambda c: compress_inactive_saves(
            c, month, slow, worker_sessions=sessions, now=NOW)).start()
        _workers_waiting_on_a_lock(new_database, 2)  # both workers started
        gate.commit()
        with psycopg.connect(new_database, autocommit=True) as watcher:
            while worker.thread.is_alive() and not watcher.execute(
                    "SELECT count(*) >= 3 FROM game_saves WHERE compressed_state IS NOT NULL").fetchone()[0]:
                time.sleep(0.01)
        gate.execute(hold)
        waiting = _workers_waiting_on_a_lock(new_database, 2)
        killed = gate.execute("SELECT pid FROM unnest(%s::int[]) AS w(pid) WHERE pg_terminate_backend(pid)",
                              (waiting,)).fetchall()
        gate.rollback()
    worker.thread.join()
    worker.conn.close()
    assert sorted(pid for (pid,) in killed) == sorted(waiting)
    assert isinstance(worker.error, psycopg.OperationalError)
    _nothing_lost_and_the_rerun_finishes(new_database, month, due, before)


_PACK_WITH_WORKERS = """
import sys
from datetime import date, datetime
from cosmic_ops import db
from cosmic_ops.lifecycle import SavePolicy, Throttle, compress_inactive_saves
conninfo, month, app, now = sys.argv[1:]
# Each worker pauses after every one-save batch: they stay busy until the parent is killed.
policy = SavePolicy(throttle=Throttle(batch_size=1, pause_s=5), workers=2)
with db.connect(conninfo) as conn:
    compress_inactive_saves(conn, date.fromisoformat(month), policy,
                            worker_sessions=db.SessionSpec(conninfo, application_name=app),
                            now=datetime.fromisoformat(now))
"""


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _running(pid: int) -> bool:
    """Alive and not a zombie (an exited orphan waits to be reaped by whoever adopted it)."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds worker processes through /proc (Linux)")
def test_worker_processes_and_their_sessions_end_when_the_parent_is_killed(new_database):
    """kill -9 of the process running compression: its workers (and the multiprocessing
    resource tracker they share) exit, and their sessions close."""
    load_demo(new_database, seed=31)
    month, due, _ = _busiest_month_and_its_saves(new_database)
    assert len(due) >= 8
    app = f"cosmic_ops:test-orphan-{os.getpid()}"
    sessions = "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
    parent = subprocess.Popen([sys.executable, "-c", _PACK_WITH_WORKERS, new_database, month.isoformat(), app,
                               NOW.isoformat()])
    children: list[int] = []
    try:
        with psycopg.connect(new_database, autocommit=True) as watcher:
            while parent.poll() is None and watcher.execute(sessions, (app,)).fetchone()[0] < 2:
                time.sleep(0.05)
            assert parent.poll() is None, "compression ended before its workers were seen"
            children = _children(parent.pid)
            assert len(children) >= 2  # the two workers, and the resource tracker
            parent.kill()
            parent.wait()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and (
                    any(_running(pid) for pid in children) or watcher.execute(sessions, (app,)).fetchone()[0]):
                time.sleep(0.05)
            assert [pid for pid in children if _running(pid)] == []
            assert watcher.execute(sessions, (app,)).fetchone()[0] == 0
    finally:
        for pid in [parent.pid] + children + _children(parent.pid):  # whatever a failure left running
            if _running(pid):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        parent.wait()
    with db.connect(new_database) as conn:
        assert _saves_with_rows_and_state(conn) == 0


def test_a_game_write_cannot_slip_in_while_a_batch_is_packed_and_a_failed_batch_restores_every_row(new_database):
    """The rows are taken (DELETE ... RETURNING) and held until the batch commits or rolls back."""
    from cosmic_ops.lifecycle.saves import _lock_unchanged, pack_saves

    load_demo(new_database, seed=19)
    with db.connect(new_database) as conn:
        month = inactive_save_months(conn)[0]
        selected = select_candidates(conn, MonthScope.of(month, timedelta(days=7), NOW), 2)
        conn.commit()
        ids = [s[0] for s in selected]
        before = _save_rows(conn, ids)
        with pytest.raises(RuntimeError, match="verification failed on purpose"):
            with conn.transaction():
                assert _lock_unchanged(conn, selected) == ids
                batch = pack_saves(conn, ids, Codec())
                assert batch.rows_taken["save_resources"] == len(before["save_resources"]) == 16
                with psycopg.connect(new_database, autocommit=True) as game:
                    game.execute("SET lock_timeout = '200ms'")
                    with pytest.raises(psycopg.errors.LockNotAvailable):
                        game.execute("UPDATE save_resources SET amount = amount + 1 "
                                     "WHERE save_id = %s AND resource_type = 'metal'", (ids[1],))
                    with pytest.raises(psycopg.errors.LockNotAvailable):
                        game.execute("INSERT INTO save_research (save_id, tech_id) VALUES (%s, 'tech_new')",
                                     (ids[0],))
                raise RuntimeError("verification failed on purpose")
        assert _packed_ids(conn) == []
        assert _save_rows(conn, ids) == before


# A session whose text settings differ from fingerprint.TEXT_SETTINGS. DateStyle keeps ISO output:
# psycopg reads timestamptz text in no other style (tests/test_fingerprint.py covers the others).
_OTHER_SESSION = {"DateStyle": "ISO, DMY", "TimeZone": "Pacific/Chatham", "IntervalStyle": "iso_8601",
                  "extra_float_digits": "-15", "bytea_output": "escape"}


def _fingerprints(conn) -> dict[str, Fingerprint]:
    with conn.transaction():
        return {t: fingerprint(conn, "public", t, table_columns(conn, "public", t)) for t in SAVE_TABLES}


def test_a_round_trip_in_a_session_with_other_text_settings_keeps_the_fingerprint(new_database):
    """Packing is binary and the fingerprint pins the one text-settings dict: dates, timestamps,
    intervals and floats packed and rehydrated under another DateStyle/TimeZone/... fingerprint equal.
    A -0.0 among short decimals (the demo's production rates) takes the raw float path."""
    load_demo(new_database, seed=31)
    with db.connect(new_database) as conn:
        months = inactive_save_months(conn)
        due = [s[0] for s in select_candidates(conn, MonthScope.of(months[0], timedelta(days=7), NOW,
                                                                   through=months[-1]))]
        conn.execute("ALTER TABLE save_research ADD COLUMN due_on date, ADD COLUMN took interval, "
                     "ADD COLUMN noted_at timestamp")
        conn.execute("UPDATE save_research SET due_on = DATE '2024-01-31' + level * 37, "
                     "took = make_interval(months => level, days => -level, secs => progress * 1e5), "
                     "noted_at = started_at AT TIME ZONE 'Asia/Tokyo' WHERE save_id = ANY(%s)", (due,))
        conn.execute("UPDATE save_research SET due_on = '0044-03-15 BC', took = '-178000000 years', "
                     "noted_at = '-infinity' WHERE save_id = %s AND tech_id = "
                     "(SELECT min(tech_id) FROM save_research WHERE save_id = %s)", (due[0], due[0]))
        conn.execute("UPDATE save_resources SET production_rate = '-0' WHERE save_id = %s", (due[-1],))
        conn.commit()
        before, rows_before = _fingerprints(conn), _save_rows(conn, due)

    with db.connect(new_database) as other:
        for name, value in _OTHER_SESSION.items():
            other.execute("SELECT set_config(%s, %s, false)", (name, value))
        other.commit()
        assert other.execute("SELECT (INTERVAL '1 day', 123.456::float8)::text").fetchone()[0] == "(P1D,1e+02)"
        other.commit()
        assert _fingerprints(other) == before
        skipped: list[str] = []
        report = compress_inactive_saves(other, months[0], SavePolicy(workers=1), through=months[-1], now=NOW,
                                         progress=lambda m: skipped.append(m) if "skipped" in m else None)
        assert skipped == [] and report.log.moved == len(due) > 1
        assert _fingerprints(other) != before
        assert rehydrate_saves(other, due).already_live == []
        assert _fingerprints(other) == before

    with db.connect(new_database) as conn:
        assert _fingerprints(conn) == before
        assert _save_rows(conn, due) == rows_before


def _dictionaries(conn) -> list[tuple[str, int]]:
    rows = conn.execute("SELECT id, trained_on FROM cosmic_ops.save_dictionaries ORDER BY trained_at, id").fetchall()
    conn.commit()
    return rows


def _dictionary_of_packs(conn, save_ids) -> set:
    found = {r[0] for r in conn.execute("SELECT compression_info->>'dictionary' FROM game_saves WHERE id = ANY(%s)",
                                        (list(save_ids),))}
    conn.commit()
    return found


def test_the_dictionary_is_trained_once_per_table_layouts_and_every_pack_rehydrates(new_database):
    """A batch packed before any dictionary has none; the first run trains one on saves with rows and
    every later run reuses it, until a table's layout changes."""
    load_demo(new_database, seed=37)
    with db.connect(new_database) as conn:
        months = inactive_save_months(conn)
        scopes = [MonthScope.of(m, timedelta(days=7), NOW) for m in months]
        first = select_candidates(conn, scopes[0], 2)
        conn.commit()
        everything = _save_rows(conn, [r[0] for r in conn.execute("SELECT id FROM game_saves")])
        conn.commit()
        compress_batch(conn, first, Codec(), CompressReport(scope=scopes[0], log=BatchLog(unit="saves")))
        assert _dictionaries(conn) == [] and _dictionary_of_packs(conn, [s[0] for s in first]) == {None}

        messages: list[str] = []
        compress_inactive_saves(conn, months[0], SavePolicy(workers=1), through=months[len(months) // 2], now=NOW,
                                progress=messages.append)
        compress_inactive_saves(conn, months[len(months) // 2], SavePolicy(workers=1), through=months[-1], now=NOW)
        [(trained, samples)] = _dictionaries(conn)
        assert any(trained in m for m in messages) and samples >= 100
        packed = _packed_ids(conn)
        assert _dictionary_of_packs(conn, set(packed) - {s[0] for s in first}) == {trained}
        assert verify_packed_saves(conn, packed) == {}
        assert rehydrate_saves(conn, packed).already_live == []

        conn.execute("ALTER TABLE save_research ADD COLUMN notes text")
        conn.commit()
        compress_inactive_saves(conn, months[0], SavePolicy(workers=1), through=months[-1], now=NOW)
        assert len(_dictionaries(conn)) == 2 and _dictionary_of_packs(conn, _packed_ids(conn)) == {
            d for d, _ in _dictionaries(conn)} - {trained}
        assert rehydrate_saves(conn, _packed_ids(conn)).already_live == []
        conn.execute("ALTER TABLE save_research DROP COLUMN notes")
        conn.commit()
        assert _save_rows(conn, [r[0] for r in conn.execute("SELECT id FROM game_saves")]) == everything
