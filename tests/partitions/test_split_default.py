"""Months created while DEFAULT holds many rows: the rows move online (``split_default``).

The oracle for "no row lost, doubled or resurrected": every game change goes, in the same
transaction, to ``event_logs`` and to ``shadow``, a plain table that no maintenance touches.
After the move the two hold the same multiset of rows.
"""

from __future__ import annotations

import dataclasses
import random
import threading
from datetime import date, datetime, timedelta, timezone

import psycopg
import pytest

from cosmic_ops import db
from cosmic_ops.db import LockRetryPolicy
from cosmic_ops.online import VerificationFailed
from cosmic_ops.partitions import EVENT_LOGS_POLICY, ensure_months, plan_months, rehome_default_rows
from cosmic_ops.partitions.actions import SplitDefault
from cosmic_ops.partitions.split_default import apply_split

POLICY = dataclasses.replace(EVENT_LOGS_POLICY, online_move_min_rows=1000, online_move_batch_rows=500)
MAY, JUNE = date(2026, 5, 1), date(2026, 6, 1)
IN_MONTH = {MAY: datetime(2026, 5, 3, tzinfo=timezone.utc), JUNE: datetime(2026, 6, 2, tzinfo=timezone.utc),
            None: datetime(2024, 1, 5, tzinfo=timezone.utc)}  # None: a month nobody creates here
PATIENT = LockRetryPolicy(lock_timeout_ms=60_000, attempts=1)
COLUMNS = "id, server_timestamp, player_id, event_type, payload"


def _seed(conninfo: str) -> None:
    with psycopg.connect(conninfo) as conn:
        conn.execute("CREATE TABLE shadow (LIKE event_logs INCLUDING DEFAULTS)")
        for month, rows in ((MAY, 2500), (JUNE, 1500), (None, 40)):
            conn.execute(
                "INSERT INTO event_logs (server_timestamp, player_id, event_type, payload) "
                "SELECT %s::timestamptz + g * interval '7 minutes', g, 'seed', jsonb_build_object('g', g) "
                "FROM generate_series(1, %s) g", (IN_MONTH[month], rows))
        conn.execute("INSERT INTO shadow SELECT * FROM event_logs")


class Game:
    """Changes rows as a game would, each change to event_logs and shadow in one transaction."""

    def __init__(self, conninfo: str, seed: int):
        self.conn = psycopg.connect(conninfo, application_name="game", autocommit=True)
        self.random = random.Random(seed)
        self.errors: list[BaseException] = []

    def both(self, statement: str, params: tuple) -> None:
        try:
            with self.conn.transaction():
                self.conn.execute(statement.format(table="event_logs"), params)
                self.conn.execute(statement.format(table="shadow"), params)
        except psycopg.Error as exc:
            self.errors.append(exc)

    def insert(self, month) -> None:
        row_id = self.conn.execute("SELECT nextval('event_logs_id_seq')").fetchone()[0]
        self.both("INSERT INTO {table} (id, server_timestamp, player_id, event_type) VALUES (%s, %s, 7, 'live')",
                  (row_id, IN_MONTH[month] + timedelta(seconds=self.random.randrange(86400))))

    def update_payload(self, row_id: int) -> None:
        self.both("UPDATE {table} SET payload = jsonb_build_object('touched', %s) WHERE id = %s",
                  (self.random.random(), row_id))

    def move_row(self, row_id: int, month) -> None:
        """Change the partition key: the row changes route (month, or the fresh DEFAULT)."""
        self.both("UPDATE {table} SET server_timestamp = %s WHERE id = %s", (IN_MONTH[month], row_id))

    def delete(self, row_id: int) -> None:
        self.both("DELETE FROM {table} WHERE id = %s", (row_id,))

    def every_kind_of_change(self) -> None:
        """Rows already copied (low ids) and rows not yet copied (high ids)."""
        self.insert(MAY), self.insert(JUNE), self.insert(None)
        self.update_payload(3), self.update_payload(2400)
        self.move_row(5, JUNE), self.move_row(2450, JUNE), self.move_row(7, None), self.move_row(2600, MAY)
        self.delete(9), self.delete(2300)

    def play_randomly(self, stop: threading.Event) -> None:
        kinds = [lambda: self.insert(self.random.choice([MAY, JUNE, None])),
                 lambda: self.update_payload(self.random.randrange(1, 4100)),
                 lambda: self.move_row(self.random.randrange(1, 4100), self.random.choice([MAY, JUNE, None])),
                 lambda: self.delete(self.random.randrange(1, 4100))]
        while not stop.is_set():
            self.random.choice(kinds)()

    def close(self) -> None:
        self.conn.close()


def _assert_consistent(conninfo: str) -> None:
    with psycopg.connect(conninfo) as conn:
        missing = conn.execute(f"SELECT count(*) FROM (SELECT {COLUMNS} FROM shadow EXCEPT ALL "
                               f"SELECT {COLUMNS} FROM event_logs) d").fetchone()[0]
        extra = conn.execute(f"SELECT count(*) FROM (SELECT {COLUMNS} FROM event_logs EXCEPT ALL "
                             f"SELECT {COLUMNS} FROM shadow) d").fetchone()[0]
        assert (missing, extra) == (0, 0)
        misplaced = conn.execute(
            "SELECT count(*) FROM event_logs WHERE tableoid::regclass::text <> CASE "
            "WHEN server_timestamp >= '2026-05-01Z' AND server_timestamp < '2026-06-01Z' THEN coalesce(to_regclass('event_logs_2026_05')::text, 'event_logs_default') "
            "WHEN server_timestamp >= '2026-06-01Z' AND server_timestamp < '2026-07-01Z' THEN coalesce(to_regclass('event_logs_2026_06')::text, 'event_logs_default') "
            "ELSE 'event_logs_default' END").fetchone()[0]
        assert misplaced == 0
        leftovers = conn.execute(
            "SELECT (SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'cosmic_ops_online_move_%%'), "
            "(SELECT count(*) FROM pg_proc WHERE proname LIKE 'online_move_%%'), "
            "(SELECT count(*) FROM pg_class WHERE relname LIKE 'event_logs_default_%%' AND relkind = 'r')"
        ).fetchone()
        assert leftovers == (0, 0, 0)
        default_is_attached = conn.execute(
            "SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'event_logs'::regclass AND c.relname = 'event_logs_default' "
            "AND pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT'").fetchone()[0]
        assert default_is_attached == 1
        # The policy's storage settings came along to the fresh DEFAULT.
        options = conn.execute("SELECT reloptions FROM pg_class WHERE oid = 'event_logs_default'::regclass"
                               ).fetchone()[0]
        assert sorted(options) == sorted(f"{k}={v}" for k, v in POLICY.storage.items())


def _phases(conninfo: str) -> list[str]:
    with psycopg.connect(conninfo) as conn:
        return [r[0] for r in conn.execute("SELECT phase FROM cosmic_ops.online_moves ORDER BY move_id")]


@pytest.mark.slow
def test_months_are_created_online_while_the_game_changes_every_kind_of_row(event_db):
    _seed(event_db)
    scripted, background = Game(event_db, seed=1), Game(event_db, seed=2)
    stop = threading.Event()
    player = threading.Thread(target=background.play_randomly, args=(stop,))
    player.start()
    done_once: list[str] = []

    def hook(point: str) -> None:
        if point == "batch" and not done_once:  # the copy has started and is not finished
            done_once.append(point)
            scripted.every_kind_of_change()

    try:
        with db.connect(event_db, application_name="cosmic_ops:test") as conn:
            plan = plan_months(conn, POLICY, [MAY, JUNE])
            conn.commit()
            assert [a.kind for a in plan.actions] == ["split_default"]
            results = apply_split(conn, plan.actions[0], PATIENT, hook=hook)
    finally:
        stop.set()
        player.join()
    scripted.close(), background.close()

    assert scripted.errors == [] and background.errors == []
    assert done_once == ["batch"]
    assert [r.action.target for r in results] == ["event_logs_2026_05", "event_logs_2026_06"]
    assert all(r.rows_moved > 1000 for r in results)
    _assert_consistent(event_db)
    assert _phases(event_db) == ["done"]


def test_a_dry_run_shows_the_online_move_and_changes_nothing(event_db):
    _seed(event_db)
    with db.connect(event_db) as conn:
        before = conn.execute("SELECT count(*) FROM pg_class").fetchone()[0]
        result = ensure_months(conn, POLICY, [MAY, JUNE], dry_run=True)
        text = result.plan.to_markdown(conn)
        after = conn.execute("SELECT count(*) FROM pg_class").fetchone()[0]
    assert result.results == [] and before == after
    assert "`split_default`" in text and "CREATE TRIGGER" in text and "FOR SHARE" in text
    assert 'DETACH PARTITION "public"."event_logs_default"' in text
    assert 'ATTACH PARTITION "public"."event_logs_default" DEFAULT' in text


class Killed(Exception):
    """Stands for the process dying at a point: nothing after it runs."""


@pytest.mark.slow
@pytest.mark.parametrize("point", ["begun", "batch", "copied", "verified", "swapped"])
def test_a_move_killed_at_any_point_is_undone_or_finished_by_the_next_run(event_db, point):
    _seed(event_db)
    game = Game(event_db, seed=3)

    def hook(reached: str) -> None:
        if reached == point:
            raise Killed(point)

    with db.connect(event_db) as conn:
        plan = plan_months(conn, POLICY, [MAY, JUNE])
        conn.commit()
        with pytest.raises(Killed):
            apply_split(conn, plan.actions[0], PATIENT, hook=hook)
    game.every_kind_of_change()  # the game goes on between the kill and the rerun
    with db.connect(event_db) as conn:
        rerun = ensure_months(conn, POLICY, [MAY, JUNE], retry=PATIENT)
    game.every_kind_of_change()
    game.close()

    assert game.errors == []
    if point == "swapped":
        assert rerun.recovery.actions and "finished" in rerun.recovery.actions[0]
        assert rerun.results == []  # the months were there already
        assert _phases(event_db) == ["done"]
    else:
        assert "undone" in rerun.recovery.actions[0]
        assert rerun.created == ["event_logs_2026_05", "event_logs_2026_06"]
        assert _phases(event_db) == ["undone", "done"]
    _assert_consistent(event_db)


def test_new_tables_that_differ_from_the_source_are_never_swapped_in(event_db):
    _seed(event_db)

    def sabotage(point: str) -> None:
        if point == "copied":  # a row vanishes from a new table behind the capture's back
            with psycopg.connect(event_db, autocommit=True) as other:
                other.execute("ALTER TABLE event_logs_2026_05 DISABLE TRIGGER USER")
                other.execute("DELETE FROM event_logs_2026_05 WHERE id = 11")

    with db.connect(event_db) as conn:
        plan = plan_months(conn, POLICY, [MAY, JUNE])
        conn.commit()
        with pytest.raises(VerificationFailed, match="2026-05"):
            apply_split(conn, plan.actions[0], PATIENT, hook=sabotage)
        partitions = [r[0] for r in conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'event_logs'::regclass")]
        in_default = conn.execute("SELECT count(*) FROM event_logs_default").fetchone()[0]
    assert partitions == ["event_logs_default"]
    assert in_default == 2500 + 1500 + 40
    assert _phases(event_db) == ["undone"]
    _assert_consistent(event_db)


def test_rehoming_moves_every_month_in_one_online_move(event_db):
    _seed(event_db)
    with db.connect(event_db) as conn:
        result = rehome_default_rows(conn, POLICY, retry=PATIENT)
    assert result.created == ["event_logs_2024_01", "event_logs_2026_05", "event_logs_2026_06"]
    assert result.rows_moved == 4040 and result.default_rows_after == 0
    assert _phases(event_db) == ["done"]


def test_a_few_rows_still_move_inside_the_create_transaction(event_db):
    with db.connect(event_db) as conn:
        conn.execute("INSERT INTO event_logs (server_timestamp, player_id, event_type) VALUES (%s, 1, 'x')",
                     (IN_MONTH[MAY],))
        conn.commit()
        plan = plan_months(conn, POLICY, [MAY])
    assert [a.kind for a in plan.actions] == ["create_partition"]
    assert not any(isinstance(a, SplitDefault) for a in plan.actions)


def test_a_capture_disabled_after_verification_stops_the_swap_and_truncate_is_refused(event_db):
    _seed(event_db)
    seen: list[str] = []

    def meddle(point: str) -> None:
        if point == "verified":
            with psycopg.connect(event_db, autocommit=True) as other:
                with pytest.raises(psycopg.errors.RaiseException, match="TRUNCATE would bypass"):
                    other.execute("TRUNCATE event_logs_default")
                trigger = other.execute("SELECT tgname FROM pg_trigger WHERE tgrelid = 'event_logs_default'::regclass "
                                        "AND tgname LIKE 'cosmic_ops_online_move_%%' AND tgtype & 1 = 1").fetchone()[0]
                other.execute(f'ALTER TABLE event_logs_default DISABLE TRIGGER "{trigger}"')
                seen.append(trigger)

    with db.connect(event_db) as conn:
        plan = plan_months(conn, POLICY, [MAY, JUNE])
        conn.commit()
        with pytest.raises(VerificationFailed, match="dropped or disabled"):
            apply_split(conn, plan.actions[0], PATIENT, hook=meddle)
    assert seen and _phases(event_db) == ["undone"]
    _assert_consistent(event_db)
