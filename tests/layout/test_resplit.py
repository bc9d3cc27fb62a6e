"""Online re-split of hash partitions (planets 4 -> 8, and a second table made here).

Oracle for "no row lost, doubled or resurrected": before the split the table's rows are read
as (primary key, md5 of the row's text); every change a concurrent game makes goes to the
table and, in the same transaction, to ``shadow`` (a plain copy nobody else touches). After
the split the table and the shadow hold the same rows.
"""

from __future__ import annotations

import random
from datetime import timedelta
import threading

import psycopg
import pytest

from cosmic_ops import db, demo, schema
from cosmic_ops.layout.resplit import (
    SplitRefused,
    drop_kept_partitions,
    kept_partitions,
    resplit_hash_partitions,
    verified_moves,
)

from ..clock import NOW, TODAY

PATIENT = db.LockRetryPolicy(lock_timeout_ms=60_000, attempts=1)
PLANETS = "celestial_bodies_planets"


@pytest.fixture()
def demo_db(new_database):
    with db.connect(new_database) as conn:
        schema.bootstrap(conn)
        demo.load(conn, "small", as_of=TODAY)
        conn.commit()
        conn.execute("CREATE TABLE shadow (LIKE celestial_bodies INCLUDING DEFAULTS)")
        conn.execute("INSERT INTO shadow SELECT * FROM celestial_bodies_planets")
        conn.execute("ALTER TABLE shadow ADD PRIMARY KEY (id, body_type, save_id)")
        conn.execute("ANALYZE celestial_bodies_planets")
        conn.commit()
    return new_database


def _rows(conn: psycopg.Connection, table: str) -> dict[tuple, str]:
    return {(r[0], r[1]): r[2] for r in conn.execute(
        f"SELECT id, save_id, md5(t::text) FROM (SELECT id, save_id, body_type, name, mass, radius, properties, "
        f"is_destroyed FROM {table}) t")}


def _partitions(conn: psycopg.Connection, table: str = PLANETS) -> dict[str, str]:
    return dict(conn.execute(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = %s::regclass ORDER BY 1", (table,)).fetchall())


def _leftovers(conn: psycopg.Connection) -> tuple:
    return conn.execute(
        "SELECT (SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'cosmic_ops_online_move_%%'), "
        "(SELECT count(*) FROM pg_proc WHERE proname LIKE 'online_move_%%')").fetchone()


class Game:
    """Reads, updates (including a save_id change that moves a row between remainders),
    inserts and deletes planets; each change also goes to ``shadow``."""

    def __init__(self, conninfo: str, seed: int):
        self.conn = psycopg.connect(conninfo, autocommit=True, application_name="game")
        self.random = random.Random(seed)
        self.errors: list[BaseException] = []
        self.saves = [r[0] for r in self.conn.execute("SELECT id FROM game_saves ORDER BY id")]
        self.ids = [r[0] for r in self.conn.execute("SELECT id FROM celestial_bodies_planets ORDER BY id")]
        self.invisible = 0  # reads of a save with planets that returned none

    def both(self, statement: str, params: tuple) -> None:
        try:
            with self.conn.transaction():
                for table in ("celestial_bodies", "shadow"):
                    self.conn.execute(statement.format(table=table), params)
        except psycopg.Error as exc:
            self.errors.append(exc)

    def step(self) -> None:
        kind = self.random.randrange(5)
        body = self.random.choice(self.ids)
        if kind == 0:
            self.both("UPDATE {table} SET mass = mass * 1.01 WHERE body_type = 'planet' AND id = %s", (body,))
        elif kind == 1:  # the hash key changes: the row moves to another remainder
            self.both("UPDATE {table} SET save_id = %s WHERE body_type = 'planet' AND id = %s",
                      (self.random.choice(self.saves), body))
        elif kind == 2:
            new_id = self.conn.execute("SELECT nextval('celestial_bodies_id_seq')").fetchone()[0]
            self.both("INSERT INTO {table} (id, save_id, body_type, name, mass, radius) "
                      "VALUES (%s, %s, 'planet', 'new', 1, 1)", (new_id, self.random.choice(self.saves)))
        elif kind == 3:
            self.both("DELETE FROM {table} WHERE body_type = 'planet' AND id = %s", (body,))
        else:
            save = self.random.choice(self.saves)
            try:
                expected = self.conn.execute("SELECT count(*) FROM shadow WHERE save_id = %s", (save,)).fetchone()[0]
                seen = self.conn.execute("SELECT count(*) FROM celestial_bodies WHERE body_type = 'planet' "
                                         "AND save_id = %s", (save,)).fetchone()[0]
                self.invisible += expected > 0 and seen == 0
            except psycopg.Error as exc:
                self.errors.append(exc)

    def play(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.step()

    def close(self) -> None:
        self.conn.close()


def _assert_same_rows(conninfo: str) -> None:
    with psycopg.connect(conninfo) as conn:
        assert _rows(conn, "celestial_bodies_planets") == _rows(conn, "shadow")


@pytest.mark.slow
def test_planets_split_4_to_8_while_the_game_plays(demo_db):
    with psycopg.connect(demo_db, autocommit=True) as conn:
        before = _rows(conn, PLANETS)
        assert set(_partitions(conn).values()) == {f"FOR VALUES WITH (modulus 4, remainder {r})" for r in range(4)}
    game = Game(demo_db, seed=1)
    stop = threading.Event()
    player = threading.Thread(target=game.play, args=(stop,))
    player.start()
    try:
        with psycopg.connect(demo_db, autocommit=True) as conn:
            notices: list[str] = []
            conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
            conn.execute("SET client_min_messages = debug1")  # the server says when ATTACH skips its scan
            conn.commit()
            result = resplit_hash_partitions(conn, PLANETS, 8, batch_rows=200, retry=PATIENT)
    finally:
        stop.set()
        player.join()
    game.close()

    assert game.errors == [] and game.invisible == 0
    # A sub-partition's CHECK includes its parent's constraint: still no scan at ATTACH.
    assert len([n for n in notices if "is implied by existing constraints" in n]) == 8, notices
    assert [r.split.old.name for r in result.results] == [f"celestial_bodies_planets_{r}" for r in range(4)]
    assert result.verified and result.rows_moved >= len(before) - 50
    _assert_same_rows(demo_db)
    with psycopg.connect(demo_db, autocommit=True) as conn:
        bounds = _partitions(conn)
        assert sorted(bounds.values()) == sorted(f"FOR VALUES WITH (modulus 8, remainder {r})" for r in range(8))
        assert _leftovers(conn) == (0, 0)
        # Dropped after verification (keep_old is off here): no old table is left.
        assert conn.execute("SELECT count(*) FROM pg_class WHERE relname ~ '^celestial_bodies_planets_[0-3]$'"
                            ).fetchone()[0] == 0
        # Pruning still takes save_id = X to one partition.
        save = conn.execute("SELECT save_id FROM celestial_bodies_planets LIMIT 1").fetchone()[0]
        plan = "\n".join(r[0] for r in conn.execute(
            "EXPLAIN (COSTS OFF) SELECT * FROM celestial_bodies WHERE body_type = 'planet' AND save_id = %s", (save,)))
        scanned = [name for name in bounds if name in plan]
        assert len(scanned) == 1, plan
        # The FK to game_saves came along (attached, not re-validated).
        fks = conn.execute("SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND conrelid = ANY("
                           "SELECT inhrelid FROM pg_inherits WHERE inhparent = %s::regclass)", (PLANETS,)).fetchone()[0]
        assert fks == 8


@pytest.mark.slow
def test_a_dry_run_changes_nothing(demo_db):
    with psycopg.connect(demo_db, autocommit=True) as conn:
        before = _partitions(conn)
        result = resplit_hash_partitions(conn, PLANETS, 8, dry_run=True)
        text = result.plan.to_markdown(conn)
        assert _partitions(conn) == before and _leftovers(conn) == (0, 0)
        assert conn.execute("SELECT to_regclass('cosmic_ops.online_moves')").fetchone()[0] is None
    assert result.results == [] and len(result.plan.remainders) == 4
    assert "satisfies_hash_partition" in text and "FOR VALUES WITH (MODULUS 8, REMAINDER 4)" in text
    assert result.plan.rows == sum(r.rows for r in result.plan.remainders) > 0


class Killed(Exception):
    pass


@pytest.mark.slow
@pytest.mark.parametrize("point", ["begun", "batch", "verified", "swapped"])
def test_a_split_killed_at_any_point_completes_on_rerun(demo_db, point):
    def hook(reached: str) -> None:
        if reached == point:
            raise Killed(point)

    with psycopg.connect(demo_db, autocommit=True) as conn:
        with pytest.raises(Killed):
            resplit_hash_partitions(conn, PLANETS, 8, remainders=[1], batch_rows=200, retry=PATIENT, hook=hook)
    game = Game(demo_db, seed=2)
    for _ in range(50):
        game.step()
    with psycopg.connect(demo_db, autocommit=True) as conn:
        rerun = resplit_hash_partitions(conn, PLANETS, 8, remainders=[1], batch_rows=200, retry=PATIENT)
    for _ in range(50):
        game.step()
    game.close()
    assert game.errors == []
    assert rerun.recovered and ("undone" in rerun.recovered[0] or "finished" in rerun.recovered[0])
    _assert_same_rows(demo_db)
    with psycopg.connect(demo_db, autocommit=True) as conn:
        bounds = set(_partitions(conn).values())
        assert {"FOR VALUES WITH (modulus 8, remainder 1)", "FOR VALUES WITH (modulus 8, remainder 5)"} <= bounds
        assert "FOR VALUES WITH (modulus 4, remainder 1)" not in bounds
        assert _leftovers(conn) == (0, 0)


@pytest.mark.slow
def test_kept_old_partitions_are_dropped_only_after_verification_and_retention(demo_db):
    with psycopg.connect(demo_db, autocommit=True) as conn:
        result = resplit_hash_partitions(conn, PLANETS, 8, remainders=[2], keep_old=True, retry=PATIENT)
        move_id = result.results[0].outcome.move_id
        assert verified_moves(conn, [move_id])[move_id][0]
        kept = kept_partitions(conn, PLANETS)
        assert [k.source_name for k in kept] == ["public.celestial_bodies_planets_2"] and kept[0].verified
        assert result.results[0].kept_old == kept[0].name
        # Not yet: swapped after the cut-off.
        assert drop_kept_partitions(conn, PLANETS, swapped_before=kept[0].swapped_at) == []
        dropped = drop_kept_partitions(conn, PLANETS, swapped_before=NOW + timedelta(days=400))
        assert [d.name for d in dropped] == [kept[0].name]
        assert conn.execute("SELECT to_regclass(%s)", (kept[0].name,)).fetchone()[0] is None


def test_a_second_hash_table_made_here_and_bad_targets(new_database):
    with psycopg.connect(new_database, autocommit=True) as conn:  # maintenance runs in autocommit
        conn.execute("CREATE TABLE orders (id bigint, customer int, note text, PRIMARY KEY (id, customer)) "
                     "PARTITION BY HASH (customer)")
        for r in range(2):
            conn.execute(f"CREATE TABLE orders_{r} PARTITION OF orders FOR VALUES WITH (MODULUS 2, REMAINDER {r})")
        conn.execute("INSERT INTO orders SELECT g, g % 97, 'n' || g FROM generate_series(1, 5000) g")
        conn.commit()
        before = conn.execute("SELECT count(*), sum(hashtext(o::text)) FROM orders o").fetchone()
        with pytest.raises(SplitRefused, match="multiple"):
            resplit_hash_partitions(conn, "orders", 3, retry=PATIENT)
        notices: list[str] = []
        conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        conn.execute("SET client_min_messages = debug1")  # the server says when ATTACH skips its scan
        conn.commit()
        result = resplit_hash_partitions(conn, "orders", 8, batch_rows=700, retry=PATIENT)
        conn.execute("RESET client_min_messages")
        skipped = [n for n in notices if "is implied by existing constraints" in n]
        assert len(skipped) == 8, notices  # every new partition attached without a scan
        after = conn.execute("SELECT count(*), sum(hashtext(o::text)) FROM orders o").fetchone()
        assert before == after and result.verified
        assert sorted(_partitions(conn, "orders").values()) == sorted(
            f"FOR VALUES WITH (modulus 8, remainder {r})" for r in range(8))
        # Each row sits where PostgreSQL itself would route it.
        misplaced = conn.execute("SELECT count(*) FROM orders o WHERE NOT satisfies_hash_partition("
                                 "'orders'::regclass, 8, (SELECT r FROM (VALUES (1)) v(x), LATERAL (SELECT "
                                 "substring(pg_get_expr(c.relpartbound, c.oid) from 'remainder (\\d+)')::int AS r "
                                 "FROM pg_class c WHERE c.oid = o.tableoid) s), customer)").fetchone()[0]
        assert misplaced == 0
