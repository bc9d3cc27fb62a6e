"""One online move: begin (new tables + capture trigger), copy in batches, verify, swap, finish.

Why the copy is correct while the game writes:

- The capture trigger is created in the transaction that creates the new tables; creating it
  waits for the writers already in the source and from then on every change to the source is
  mirrored into the new tables *in the writer's own transaction*: inserts are upserted into
  the route their row matches, updates and deletes first remove the old key from every route.
- Each batch takes the next rows of the source in unique-key order ``FOR SHARE``: a game
  update or delete of one of those rows waits for the batch (milliseconds), and a row the
  game changed first is copied in its new version (or not at all if deleted). Rows the
  trigger already mirrored are skipped (``ON CONFLICT DO NOTHING``). So no stale version
  can land after the trigger's newer one.
- When the copy has passed every row, the source and the new tables agree in every
  snapshot: ``verify`` compares, per route, the row count and an order-independent checksum
  of the source's rows for that route with the new table's, in one REPEATABLE READ snapshot,
  with no lock the game notices. The swap then counts again under its locks before it
  changes anything.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import psycopg
from psycopg import sql

from .. import db
from ..fingerprint import fingerprint, table_columns

log = logging.getLogger(__name__)

ColumnRef = Callable[[str], sql.Composable]
Predicate = Callable[[ColumnRef], sql.Composable]
Hook = Callable[[str], None]

STATE_TABLE = sql.Identifier("cosmic_ops", "online_moves")

_STATE_DDL = """
CREATE TABLE IF NOT EXISTS cosmic_ops.online_moves (
    move_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind         text NOT NULL,
    root_oid     oid NOT NULL,
    source_oid   oid NOT NULL,
    source_name  text NOT NULL,
    routes       jsonb NOT NULL DEFAULT '[]',
    phase        text NOT NULL CHECK (phase IN ('copying', 'swapped', 'done', 'undone')),
    drop_source  boolean NOT NULL DEFAULT true,
    rows_copied  bigint NOT NULL DEFAULT 0,
    verification jsonb,
    detail       text,
    started_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    swapped_at   timestamptz,
    finished_at  timestamptz
)
"""


def table_column(name: str) -> sql.Composable:
    """Column reference inside a query over the table itself."""
    return sql.Identifier(name)


def record_column(record: str) -> ColumnRef:
    """Column reference on a trigger record (``NEW`` / ``OLD``)."""
    return lambda name: sql.SQL(record + ".") + sql.Identifier(name)


class VerificationFailed(RuntimeError):
    """The new tables do not hold exactly the source's rows; nothing was swapped."""


@dataclass(frozen=True)
class Relation:
    oid: int
    schema: str
    name: str

    @property
    def identifier(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass(frozen=True)
class Route:
    """A new table and the source rows it takes. ``create`` builds it outside any tree."""

    schema: str
    name: str
    label: str
    predicate: Predicate
    create: tuple[sql.Composable, ...]

    @property
    def identifier(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)


def unique_key(conn: psycopg.Connection, relation_oid: int) -> Optional[tuple[str, ...]]:
    """The columns of the relation's primary key, else of a plain unique index on NOT NULL
    columns; ``None`` when rows have no identity (then no online move is possible)."""
    row = conn.execute(
        """
        SELECT array(SELECT a.attname FROM unnest(i.indkey[:i.indnkeyatts - 1]) WITH ORDINALITY k(attnum, ord)
                     JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum ORDER BY k.ord)
        FROM pg_index i
        WHERE i.indrelid = %s::oid AND i.indisunique AND i.indisvalid AND i.indpred IS NULL
          AND 0 <> ALL (i.indkey[:i.indnkeyatts - 1])
          AND NOT EXISTS (SELECT 1 FROM unnest(i.indkey[:i.indnkeyatts - 1]) k(attnum)
                          JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                          WHERE NOT a.attnotnull)
        ORDER BY i.indisprimary DESC, i.indnkeyatts, i.indexrelid
        LIMIT 1
        """,
        (relation_oid,),
    ).fetchone()
    return tuple(row[0]) if row else None


def insertable_columns(conn: psycopg.Connection, relation_oid: int) -> tuple[str, ...]:
    rows = conn.execute(
        """
        SELECT attname FROM pg_attribute
        WHERE attrelid = %s::oid AND attnum > 0 AND NOT attisdropped AND attgenerated = ''
        ORDER BY attnum
        """,
        (relation_oid,),
    ).fetchall()
    return tuple(r[0] for r in rows)


def ensure_state_table(conn: psycopg.Connection, retry: db.LockRetryPolicy) -> None:
    """``cosmic_ops.online_moves``, created on first use (serialised like the bootstrap)."""
    if conn.execute("SELECT to_regclass('cosmic_ops.online_moves') IS NOT NULL").fetchone()[0]:
        db.end_read(conn)
        return
    db.end_read(conn)

    def create(c: psycopg.Connection) -> None:
        c.execute("SELECT pg_advisory_xact_lock(hashtext('cosmic_ops.bootstrap'))")
        c.execute("CREATE SCHEMA IF NOT EXISTS cosmic_ops")
        c.execute(_STATE_DDL)

    db.run_locked(conn, create, what="create cosmic_ops.online_moves", policy=retry)


@dataclass
class MoveOutcome:
    move_id: int
    rows_copied: int = 0
    batches: int = 0
    copy_seconds: float = 0.0
    verification: dict[str, dict[str, Any]] = field(default_factory=dict)
    swap_attempts: int = 0
    swap_lock_wait_s: float = 0.0
    swap_seconds: float = 0.0
    rows_by_route: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class OnlineMove:
    """Everything about one move that does not depend on the database's state at run time.

    ``lock`` statements open the swap (they take the locks that keep the game out for its
    few milliseconds); ``swap`` statements then put the new tables in place of the source
    (detached by them). ``drop_source``: drop the old table once the swap committed.
    """

    kind: str
    root_oid: int
    source: Relation
    columns: tuple[str, ...]
    key: tuple[str, ...]
    routes: tuple[Route, ...]
    lock: tuple[sql.Composable, ...]
    swap: tuple[sql.Composable, ...]
    drop_source: bool = True
    batch_rows: int = 10_000  # at most; each batch is sized to take about batch_target_s
    batch_target_s: float = 0.02  # a game update of a row in the batch waits for it

    # -- SQL -------------------------------------------------------------------------------

    def _list(self, names: Sequence[str], ref: ColumnRef = table_column) -> sql.Composable:
        return sql.SQL(", ").join(ref(n) for n in names)

    def capture_function(self, move_id: int) -> sql.Identifier:
        return sql.Identifier("cosmic_ops", f"online_move_{move_id}_capture")

    def capture_trigger(self, move_id: int) -> sql.Identifier:
        return sql.Identifier(f"cosmic_ops_online_move_{move_id}")

    def truncate_guard(self, move_id: int) -> tuple[sql.Identifier, sql.Identifier]:
        """TRUNCATE fires no row trigger: during a move it is refused (function, trigger)."""
        return (sql.Identifier("cosmic_ops", f"online_move_{move_id}_no_truncate"),
                sql.Identifier(f"cosmic_ops_online_move_{move_id}_truncate"))

    def capture_body(self) -> sql.Composable:
        new, old = record_column("NEW"), record_column("OLD")
        key = self._list(self.key)
        deletes = [sql.SQL("DELETE FROM {} WHERE ({}) = ({});").format(r.identifier, key, self._list(self.key, old))
                   for r in self.routes]
        rest = [c for c in self.columns if c not in self.key]
        on_conflict = (sql.SQL("DO UPDATE SET ({}) = ROW({})").format(
            self._list(rest), sql.SQL(", ").join(sql.SQL("EXCLUDED.") + sql.Identifier(c) for c in rest))
            if rest else sql.SQL("DO NOTHING"))
        branches = [sql.SQL("{} {} THEN INSERT INTO {} ({}) VALUES ({}) ON CONFLICT ({}) {};").format(
            sql.SQL("IF" if i == 0 else "ELSIF"), r.predicate(new), r.identifier, self._list(self.columns),
            self._list(self.columns, new), key, on_conflict) for i, r in enumerate(self.routes)]
        return sql.SQL("\n").join([
            sql.SQL("BEGIN"),
            sql.SQL("IF TG_OP <> 'INSERT' THEN"), *deletes, sql.SQL("END IF;"),
            sql.SQL("IF TG_OP <> 'DELETE' THEN"), *branches, sql.SQL("END IF; END IF;"),
            sql.SQL("RETURN NULL;"),
            sql.SQL("END"),
        ])

    def capture_statements(self, conn: psycopg.Connection, move_id: int) -> list[sql.Composable]:
        """The capture trigger and the TRUNCATE guard, both ``ENABLE ALWAYS``: they fire even in a
        session with ``session_replication_role = replica``, so no write to the source escapes them."""
        guard_function, guard_trigger = self.truncate_guard(move_id)
        refusal = (f"BEGIN RAISE EXCEPTION 'online move {move_id} of % is in progress: TRUNCATE would bypass "
                   f"its change capture', TG_TABLE_NAME; END")
        return [
            sql.SQL("CREATE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql AS {}").format(
                self.capture_function(move_id), sql.Literal(self.capture_body().as_string(conn))),
            sql.SQL("CREATE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql AS {}").format(
                guard_function, sql.Literal(refusal)),
            sql.SQL("CREATE TRIGGER {} AFTER INSERT OR UPDATE OR DELETE ON {} FOR EACH ROW EXECUTE FUNCTION {}()")
            .format(self.capture_trigger(move_id), self.source.identifier, self.capture_function(move_id)),
            sql.SQL("CREATE TRIGGER {} BEFORE TRUNCATE ON {} FOR EACH STATEMENT EXECUTE FUNCTION {}()")
            .format(guard_trigger, self.source.identifier, guard_function),
            sql.SQL("ALTER TABLE {} ENABLE ALWAYS TRIGGER {}").format(self.source.identifier,
                                                                      self.capture_trigger(move_id)),
            sql.SQL("ALTER TABLE {} ENABLE ALWAYS TRIGGER {}").format(self.source.identifier, guard_trigger),
        ]

    def drop_capture_statements(self, move_id: int, source_exists: bool = True) -> list[sql.Composable]:
        guard_function, guard_trigger = self.truncate_guard(move_id)
        statements = []
        if source_exists:
            statements += [sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(trigger, self.source.identifier)
                           for trigger in (self.capture_trigger(move_id), guard_trigger)]
        statements += [sql.SQL("DROP FUNCTION IF EXISTS {}()").format(function)
                       for function in (self.capture_function(move_id), guard_function)]
        return statements

    def capture_intact_statement(self, move_id: int) -> sql.Composable:
        """Under the swap's locks: both triggers still there and firing always (the proof that
        source and new tables stayed equal since the verification; counting rows here would
        keep the game waiting in proportion to the table)."""
        return sql.SQL("SELECT count(*) = 2 FROM pg_trigger WHERE tgrelid = {}::oid AND tgname IN ({}, {}) "
                       "AND tgenabled = 'A'").format(
            sql.Literal(self.source.oid), sql.Literal(f"cosmic_ops_online_move_{move_id}"),
            sql.Literal(f"cosmic_ops_online_move_{move_id}_truncate"))

    def batch_statement(self, first: bool) -> sql.Composable:
        key = self._list(self.key)
        after = sql.SQL("") if first else sql.SQL("WHERE ({}) > ({})").format(
            key, sql.SQL(", ").join(sql.Placeholder() for _ in self.key))
        inserts = [sql.SQL("r{} AS (INSERT INTO {} ({}) SELECT {} FROM batch WHERE {} ON CONFLICT DO NOTHING "
                           "RETURNING 1)").format(sql.SQL(str(i)), r.identifier, self._list(self.columns),
                                                  self._list(self.columns), r.predicate(table_column))
                   for i, r in enumerate(self.routes)]
        inserted = sql.SQL(" + ").join(sql.SQL("(SELECT count(*) FROM r{})").format(sql.SQL(str(i)))
                                        for i in range(len(self.routes)))
        descending = sql.SQL(", ").join(sql.SQL("{} DESC").format(sql.Identifier(k)) for k in self.key)
        return sql.SQL(
            "WITH batch AS (SELECT {cols} FROM ONLY {src} {after} ORDER BY {key} LIMIT %s FOR SHARE), {inserts} "
            "SELECT (SELECT count(*) FROM batch), {inserted}, last.* FROM (SELECT 1) one "
            "LEFT JOIN LATERAL (SELECT {key} FROM batch ORDER BY {desc} LIMIT 1) last ON true"
        ).format(cols=self._list(self.columns), src=self.source.identifier, after=after, key=key,
                 inserts=sql.SQL(", ").join(inserts), inserted=inserted,
                 desc=descending)

    def render(self, conn: psycopg.Connection) -> list[str]:
        """Every statement the move will run, in order, for a plan (``<id>`` is the move's number)."""
        shown = [s for r in self.routes for s in r.create]
        body = [s.as_string(conn) + ";" for s in shown]
        body += [s.as_string(conn).replace("online_move_0", "online_move_<id>") + ";"
                 for s in self.capture_statements(conn, 0)]
        body.append(f"-- then batches, each its own transaction, sized to take about {self.batch_target_s}s "
                    f"(at most {self.batch_rows} rows: a game update of a row in a batch waits for it):")
        body.append(self.batch_statement(first=False).as_string(conn) + ";")
        body.append("-- verify per route: count and checksum of the source's rows = the new table's")
        body.append("-- swap, one transaction under lock_timeout with retries:")
        body += [s.as_string(conn) + ";" for s in self.lock]
        body.append(self.capture_intact_statement(0).as_string(conn).replace("online_move_0", "online_move_<id>")
                    + ";  -- must be true")
        body += [s.as_string(conn) + ";" for s in self.swap]
        if self.drop_source:
            body.append(sql.SQL("DROP TABLE {}").format(self.source.identifier).as_string(conn)
                        + ";  -- after the swap committed, as the old table")
        return body

    # -- running ---------------------------------------------------------------------------

    def run(self, conn: psycopg.Connection, *, retry: db.LockRetryPolicy = db.LockRetryPolicy(),
            progress: Optional[Callable[[str], None]] = None, hook: Optional[Hook] = None) -> MoveOutcome:
        """Begin, copy, verify, swap and finish. The caller holds the table's maintenance lock
        scope, so no other job moves it meanwhile; a kill leaves a record ``recover_moves`` acts on."""
        say = progress or (lambda line: log.info("%s", line))
        poke = hook or (lambda point: None)
        db.end_read(conn)
        ensure_state_table(conn, retry)
        move_id = self._begin(conn, retry)
        outcome = MoveOutcome(move_id)
        say(f"move {move_id}: capturing changes of {self.source} into "
            + ", ".join(f"{r.name} ({r.label})" for r in self.routes))
        poke("begun")
        try:
            self._copy(conn, outcome, retry, say, poke)
            poke("copied")
            self._verify(conn, outcome)
            poke("verified")
        except (VerificationFailed, db.LockRetriesExhausted) as exc:
            undo(conn, self._record(conn, move_id), retry, reason=str(exc))
            raise
        self._swap(conn, outcome, retry)
        say(f"move {move_id}: swapped in {outcome.swap_seconds:.3f}s "
            f"(lock wait {outcome.swap_lock_wait_s:.3f}s, attempt {outcome.swap_attempts})")
        poke("swapped")
        finish(conn, self._record(conn, move_id), retry)
        return outcome

    def _begin(self, conn: psycopg.Connection, retry: db.LockRetryPolicy) -> int:
        box: list[int] = []

        def begin(c: psycopg.Connection) -> None:
            move_id = c.execute(
                sql.SQL("INSERT INTO {} (kind, root_oid, source_oid, source_name, phase, drop_source) "
                        "VALUES (%s, %s, %s, %s, 'copying', %s) RETURNING move_id").format(STATE_TABLE),
                (self.kind, self.root_oid, self.source.oid, str(self.source), self.drop_source)).fetchone()[0]
            for route in self.routes:
                for statement in route.create:
                    c.execute(statement)
            routes = [{"oid": c.execute("SELECT %s::regclass::oid::bigint",
                                        (route.identifier.as_string(c),)).fetchone()[0],
                       "schema": route.schema, "name": route.name, "label": route.label} for route in self.routes]
            c.execute(sql.SQL("UPDATE {} SET routes = %s WHERE move_id = %s").format(STATE_TABLE),
                      (json.dumps(routes), move_id))
            for statement in self.capture_statements(c, move_id):  # last: the trigger waits for writers
                c.execute(statement)
            box[:] = [move_id]

        db.run_locked(conn, begin, what=f"begin moving {self.source}", policy=retry)
        return box[0]

    def _copy(self, conn: psycopg.Connection, outcome: MoveOutcome, retry: db.LockRetryPolicy,
              say: Callable[[str], None], poke: Hook) -> None:
        started = time.monotonic()
        last: Optional[tuple] = None
        # A batch that meets a row the game just moved to another partition fails and is simply
        # run again (it has changed nothing): more attempts, and short pauses, than for DDL.
        copy_retry = dataclasses.replace(retry, attempts=max(retry.attempts, 20), backoff_s=min(retry.backoff_s, 0.02),
                                         max_backoff_s=min(retry.max_backoff_s, 0.5))
        size = min(self.batch_rows, 500)
        while True:
            result: list[Any] = []

            def batch(c: psycopg.Connection) -> None:
                result[:] = c.execute(self.batch_statement(last is None), (*(last or ()), size)).fetchone()

            batch_started = time.monotonic()
            db.run_locked(conn, batch, what=f"copy a batch of {self.source}", policy=copy_retry)
            took = time.monotonic() - batch_started
            seen, inserted, *key = result
            if seen == 0:
                break
            outcome.batches += 1
            outcome.rows_copied += inserted
            last = tuple(key)
            if outcome.batches % 10 == 0:
                say(f"move {outcome.move_id}: {outcome.rows_copied} rows copied in {outcome.batches} batches")
            poke("batch")
            if seen < size:
                break
            # The next batch sized to the target time: a game update of a row in it waits that long.
            size = max(100, min(self.batch_rows, int(size * min(2.0, self.batch_target_s / max(took, 1e-3)))))
        outcome.copy_seconds = time.monotonic() - started
        conn.execute(sql.SQL("UPDATE {} SET rows_copied = %s WHERE move_id = %s").format(STATE_TABLE),
                     (outcome.rows_copied, outcome.move_id))
        conn.commit()

    def _verify(self, conn: psycopg.Connection, outcome: MoveOutcome) -> None:
        """Per route, the source's rows for it against the new table, in one snapshot."""
        columns = table_columns(conn, self.source.schema, self.source.name)  # all, generated ones too
        db.end_read(conn)
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY" if conn.autocommit else
                     "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        try:
            total = conn.execute(sql.SQL("SELECT count(*) FROM ONLY {}").format(self.source.identifier)).fetchone()[0]
            found: dict[str, dict[str, Any]] = {}
            for route in self.routes:
                source = fingerprint(conn, self.source.schema, self.source.name, columns,
                                     where=route.predicate(table_column))
                target = fingerprint(conn, route.schema, route.name, columns)
                found[route.label] = {"table": route.name, "source_rows": source.rows, "rows": target.rows,
                                      "source_checksum": source.checksum, "checksum": target.checksum,
                                      "equal": source == target}
        finally:
            conn.execute("ROLLBACK") if conn.autocommit else conn.rollback()
        outcome.verification = found
        outcome.rows_by_route = {label: v["rows"] for label, v in found.items()}
        unequal = [label for label, v in found.items() if not v["equal"]]
        routed = sum(v["source_rows"] for v in found.values())
        if unequal or routed != total:
            raise VerificationFailed(
                f"move {outcome.move_id} of {self.source}: "
                + (f"routes {', '.join(unequal)} differ from the source ({found}); " if unequal else "")
                + (f"{total - routed} source rows match no route; " if routed != total else "")
                + "nothing was swapped, the move is undone and the source is unchanged")
        conn.execute(sql.SQL("UPDATE {} SET verification = %s WHERE move_id = %s").format(STATE_TABLE),
                     (json.dumps(found), outcome.move_id))
        conn.commit()

    def _swap(self, conn: psycopg.Connection, outcome: MoveOutcome, retry: db.LockRetryPolicy) -> None:
        move_id = outcome.move_id

        def swap(c: psycopg.Connection) -> None:
            for statement in self.lock:
                c.execute(statement)
            if not c.execute(self.capture_intact_statement(move_id)).fetchone()[0]:
                raise VerificationFailed(
                    f"move {move_id}: the change capture on {self.source} was dropped or disabled since the "
                    "verification, so the new tables may have missed changes; nothing was swapped")
            for statement in self.drop_capture_statements(move_id):
                c.execute(statement)
            for statement in self.swap:
                c.execute(statement)
            c.execute(sql.SQL("UPDATE {} SET phase = 'swapped', swapped_at = clock_timestamp(), "
                              "detail = 'capture intact under the swap''s locks' WHERE move_id = %s").format(
                STATE_TABLE), (move_id,))

        started = time.monotonic()
        try:
            result = db.run_locked(conn, swap, what=f"swap {self.source}", policy=retry)
        except (VerificationFailed, db.LockRetriesExhausted) as exc:
            undo(conn, self._record(conn, move_id), retry, reason=str(exc))
            raise
        outcome.swap_seconds = time.monotonic() - started - result.lock_wait_s
        outcome.swap_attempts, outcome.swap_lock_wait_s = result.attempts, result.lock_wait_s

    def _record(self, conn: psycopg.Connection, move_id: int) -> "MoveRecord":
        return next(r for r in read_moves(conn, self.root_oid, phases=None) if r.move_id == move_id)


# ---------------------------------------------------------------------------------------------
# The record, and what the next job on the table does with an interrupted move


@dataclass(frozen=True)
class MoveRecord:
    move_id: int
    kind: str
    root_oid: int
    source_oid: int
    source_name: str
    routes: tuple[dict[str, Any], ...]
    phase: str
    drop_source: bool = True

    def capture(self) -> OnlineMove:
        """Enough of the move to drop its capture trigger and function."""
        schema, _, name = self.source_name.partition(".")
        return OnlineMove(self.kind, self.root_oid, Relation(self.source_oid, schema, name), (), (), (), (), ())


def read_moves(conn: psycopg.Connection, root_oid: int, *, phases: Optional[Sequence[str]] = ("copying", "swapped")
               ) -> list[MoveRecord]:
    if not conn.execute("SELECT to_regclass('cosmic_ops.online_moves') IS NOT NULL").fetchone()[0]:
        return []
    rows = conn.execute(
        sql.SQL("SELECT move_id, kind, root_oid::bigint, source_oid::bigint, source_name, routes, phase, "
                "drop_source FROM {} "
                "WHERE root_oid = %s::oid AND (%s::text[] IS NULL OR phase = ANY(%s::text[])) ORDER BY move_id")
        .format(STATE_TABLE), (root_oid, phases and list(phases), phases and list(phases))).fetchall()
    return [MoveRecord(m, k, r, s, n, tuple(routes), p, d) for m, k, r, s, n, routes, p, d in rows]


def _existing(conn: psycopg.Connection, oid: int) -> Optional[tuple[str, str, bool]]:
    """(schema, name, is a partition) of the relation with ``oid``, or ``None``."""
    return conn.execute(
        "SELECT n.nspname, c.relname, c.relispartition FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = %s::oid", (oid,)).fetchone()


def undo(conn: psycopg.Connection, record: MoveRecord, retry: db.LockRetryPolicy, *, reason: str) -> str:
    """Drop the capture and the new tables of a move that never swapped: the source still
    holds every row, so nothing is lost. A new table that is somehow in a tree is left alone."""
    db.end_read(conn)

    def drop(c: psycopg.Connection) -> None:
        source = _existing(c, record.source_oid)
        move = record.capture()
        if source is not None:
            move = OnlineMove(move.kind, move.root_oid, Relation(record.source_oid, source[0], source[1]),
                              (), (), (), (), ())
        for statement in move.drop_capture_statements(record.move_id, source_exists=source is not None):
            c.execute(statement)
        for route in record.routes:
            found = _existing(c, route["oid"])
            if found is not None and not found[2]:
                c.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(found[0], found[1])))
        c.execute(sql.SQL("UPDATE {} SET phase = 'undone', finished_at = clock_timestamp(), detail = %s "
                          "WHERE move_id = %s").format(STATE_TABLE), (reason[:2000], record.move_id))

    db.run_locked(conn, drop, what=f"undo move {record.move_id}", policy=retry)
    return f"online move {record.move_id} of {record.source_name} undone ({reason}); the source holds every row"


def finish(conn: psycopg.Connection, record: MoveRecord, retry: db.LockRetryPolicy) -> str:
    """After a committed swap (verified before and counted under its locks): drop the old
    table, if it is still outside every tree, and record the move done."""
    db.end_read(conn)
    dropped: list[str] = []

    def drop(c: psycopg.Connection) -> None:
        source = _existing(c, record.source_oid)
        if source is not None and not source[2] and record.drop_source:
            c.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(source[0], source[1])))
            dropped.append(f"{source[0]}.{source[1]}")
        c.execute(sql.SQL("UPDATE {} SET phase = 'done', finished_at = clock_timestamp() WHERE move_id = %s")
                  .format(STATE_TABLE), (record.move_id,))

    db.run_locked(conn, drop, what=f"finish move {record.move_id}", policy=retry)
    return (f"online move {record.move_id} of {record.source_name} finished"
            + (f": dropped the old table {dropped[0]}" if dropped else ""))


def recover_moves(conn: psycopg.Connection, root_oid: int, retry: db.LockRetryPolicy) -> list[str]:
    """Undo moves interrupted before their swap, finish those interrupted after it."""
    lines = []
    for record in read_moves(conn, root_oid):
        if record.phase == "copying":
            lines.append(undo(conn, record, retry, reason="interrupted before its swap"))
        else:
            lines.append(finish(conn, record, retry))
    db.end_read(conn)
    return lines
