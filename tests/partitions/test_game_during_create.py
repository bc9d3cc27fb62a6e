"""The game keeps inserting while a month is created out of DEFAULT: its inserts wait, never fail.

A game server inserts ``server_timestamp = now()``; when the current month has no partition
yet those rows land in ``event_logs_default``. Creating the month then moves them and
attaches the new partition. An insert that read the partition list before that ATTACH
would route its row to DEFAULT and fail DEFAULT's new constraint; the create step must
make it wait instead, and the row must end up in its month.
"""

from __future__ import annotations

import threading
import time
from datetime import date, datetime, timedelta, timezone

import psycopg

from cosmic_ops import db
from cosmic_ops.db import LockRetryPolicy
from cosmic_ops.partitions import EVENT_LOGS_POLICY, ensure_months

from ..lockwait import wait_for_lock_wait

MONTH = date(2026, 5, 1)
IN_MONTH = datetime(2026, 5, 10, 12, tzinfo=timezone.utc)
INSERT = "INSERT INTO event_logs (player_id, event_type, server_timestamp) VALUES (%s, 'login', %s)"
# Long enough that nothing here times out while the test lines sessions up; the waits
# below end on conditions, not on time.
PATIENT = LockRetryPolicy(lock_timeout_ms=60_000, attempts=1)


def _partition_counts(conninfo: str) -> dict[str, int]:
    with psycopg.connect(conninfo) as conn:
        return dict(conn.execute("SELECT tableoid::regclass::text, count(*) FROM event_logs GROUP BY 1").fetchall())


def test_an_insert_planned_during_the_create_waits_and_lands_in_its_month(event_db):
    # A game transaction has a row for the missing month in DEFAULT and has not committed:
    # the create step must wait for it (it holds its locks until then).
    open_game = psycopg.connect(event_db, application_name="game-open-tx")
    open_game.execute(INSERT, (1, IN_MONTH))

    outcome: dict[str, object] = {}

    def create() -> None:
        with db.connect(event_db, application_name="cosmic_ops:test-create") as conn:
            try:
                outcome["result"] = ensure_months(conn, EVENT_LOGS_POLICY, [MONTH], retry=PATIENT)
            except Exception as exc:  # reported by the assertions below
                outcome["create_error"] = exc

    def game_insert() -> None:
        try:
            with psycopg.connect(event_db, application_name="game-insert", autocommit=True) as game:
                game.execute(INSERT, (2, IN_MONTH + timedelta(seconds=1)))
        except Exception as exc:
            outcome["insert_error"] = exc

    creator = threading.Thread(target=create)
    creator.start()
    wait_for_lock_wait(event_db, application_name="cosmic_ops:test-create", limit_s=60, what="the create step")
    # A second game insert arrives while the create step queues for its locks.
    inserter = threading.Thread(target=game_insert)
    inserter.start()
    wait_for_lock_wait(event_db, application_name="game-insert", limit_s=60, what="the game insert")
    open_game.commit()
    open_game.close()
    creator.join()
    inserter.join()

    assert "create_error" not in outcome, outcome
    assert "insert_error" not in outcome, outcome
    assert outcome["result"].created == ["event_logs_2026_05"]
    assert outcome["result"].rows_moved == 1
    # Both rows are in their month; none is left in (or lost from) DEFAULT.
    assert _partition_counts(event_db) == {"event_logs_2026_05": 2}


def test_a_stream_of_inserts_never_errors_while_months_are_created(event_db):
    """Four game sessions insert continuously for the missing month while it and the
    next months are created; no insert fails and every row is in its month."""
    stop = threading.Event()
    errors: list[BaseException] = []
    inserted = [0] * 4

    def play(slot: int) -> None:
        with psycopg.connect(event_db, application_name=f"game-{slot}", autocommit=True) as game:
            while not stop.is_set():
                try:
                    game.execute(INSERT, (slot, IN_MONTH))
                    inserted[slot] += 1
                except psycopg.Error as exc:
                    errors.append(exc)
                    return

    players = [threading.Thread(target=play, args=(slot,)) for slot in range(4)]
    for player in players:
        player.start()
    with psycopg.connect(event_db, autocommit=True) as watcher:  # some rows are waiting in DEFAULT first
        while watcher.execute("SELECT count(*) FROM event_logs_default").fetchone()[0] < 200 and not errors:
            time.sleep(0.01)
    with db.connect(event_db, application_name="cosmic_ops:test-create") as conn:
        result = ensure_months(conn, EVENT_LOGS_POLICY, [MONTH, date(2026, 6, 1), date(2026, 7, 1)],
                               retry=PATIENT)
    # More inserts after the month exists, then stop.
    with psycopg.connect(event_db, autocommit=True) as watcher:
        target = watcher.execute("SELECT count(*) FROM event_logs_2026_05").fetchone()[0] + 100
        while watcher.execute("SELECT count(*) FROM event_logs_2026_05").fetchone()[0] < target and not errors:
            time.sleep(0.01)
    stop.set()
    for player in players:
        player.join()

    assert errors == []
    assert result.created == ["event_logs_2026_05", "event_logs_2026_06", "event_logs_2026_07"]
    assert result.rows_moved >= 200
    assert _partition_counts(event_db) == {"event_logs_2026_05": sum(inserted)}
