"""VACUUM / ANALYZE of partitions and ANALYZE of partitioned parents: plan, then apply.

VACUUM cannot run inside a transaction block, so ``apply`` needs an autocommit
connection. Each action runs holding its table (``recovery.table_maintenance``:
the maintenance lock scope of the root of its partition tree, the scope every job
that changes that table takes), so a VACUUM never overlaps a DETACH, a retirement
or an archive move of the same table; a busy lock raises ``MaintenanceLockBusy``
naming the holder.

Autovacuum never ANALYZEs a partitioned parent (it holds no rows itself), so the
planner's parent-level statistics go stale unless someone runs ``ANALYZE
<parent>`` after structural changes: the seed's ``ANALYZE event_logs; ANALYZE
celestial_bodies``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable, Optional, Sequence

import psycopg
from psycopg import sql

from .. import db, recovery

if TYPE_CHECKING:
    from ..backups.store import BackupStore

KINDS = ("vacuum_analyze", "vacuum", "analyze")

_RELATION_SQL = """
SELECT c.oid, n.nspname, c.relname, c.relkind
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relname = %s
"""

_ROOTS_SQL = """
SELECT n.nspname, c.relname, c.oid::regclass::text
FROM pg_partitioned_table pt
JOIN pg_class c ON c.oid = pt.partrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE NOT c.relispartition
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
ORDER BY n.nspname, c.relname
"""


class RelationNotFound(LookupError):
    """The relation to maintain does not exist (or is not a table)."""


@dataclass(frozen=True)
class MaintenanceAction:
    kind: str  # one of KINDS
    schema: str
    table: str
    oid: int
    lock_scope: str  # db.table_lock_scope of the table, as words (the root of its tree)

    @property
    def statement(self) -> sql.Composed:
        target = sql.Identifier(self.schema, self.table)
        if self.kind == "analyze":
            return sql.SQL("ANALYZE {}").format(target)
        options = sql.SQL("(ANALYZE) ") if self.kind == "vacuum_analyze" else sql.SQL("")
        return sql.SQL("VACUUM {}{}").format(options, target)

    def as_sql(self, conn: psycopg.Connection) -> str:
        return self.statement.as_string(conn)


@dataclass(frozen=True)
class ActionResult:
    action: MaintenanceAction
    sql_text: str
    seconds: float
    attempts: int
    dead_tuples_before: int
    dead_tuples_after: int
    live_tuples_after: int


def _relation(conn: psycopg.Connection, schema: str, table: str) -> tuple[int, str, str]:
    row = conn.execute(_RELATION_SQL, (schema, table)).fetchone()
    if row is None or row[3] not in ("r", "p", "m"):
        raise RelationNotFound(f"no table {schema}.{table} in database {conn.info.dbname!r}")
    oid, _, _, relkind = row
    return oid, relkind, db.table_lock_scope(conn, oid).name


def plan_vacuum(
    conn: psycopg.Connection, relations: Iterable[tuple[str, str]], *, analyze: bool = True
) -> list[MaintenanceAction]:
    """VACUUM (ANALYZE) of each leaf table; a partitioned table is refused (VACUUM of a parent
    would walk every partition: name the partitions instead)."""
    actions = []
    for schema, table in relations:
        oid, relkind, root = _relation(conn, schema, table)
        if relkind == "p":
            raise ValueError(f"{schema}.{table} is partitioned: vacuum its partitions, analyze the parent")
        actions.append(MaintenanceAction("vacuum_analyze" if analyze else "vacuum", schema, table, oid, root))
    return actions


def plan_analyze(conn: psycopg.Connection, relations: Iterable[tuple[str, str]]) -> list[MaintenanceAction]:
    actions = []
    for schema, table in relations:
        oid, _, root = _relation(conn, schema, table)
        actions.append(MaintenanceAction("analyze", schema, table, oid, root))
    return actions


def partitioned_roots(conn: psycopg.Connection) -> list[tuple[str, str]]:
    """(schema, table) of every top-level partitioned table in the database."""
    return [(nsp, name) for nsp, name, _ in conn.execute(_ROOTS_SQL).fetchall()]


def plan_markdown(conn: psycopg.Connection, actions: Sequence[MaintenanceAction]) -> str:
    lines = ["| # | action | relation | lock scope | SQL |", "|---|---|---|---|---|"]
    for number, action in enumerate(actions, 1):
        lines.append(
            f"| {number} | {action.kind} | {action.schema}.{action.table} | {action.lock_scope} "
            f"| `{action.as_sql(conn)}` |"
        )
    return "\n".join(lines)


def _tuples(conn: psycopg.Connection, oid: int) -> tuple[int, int]:
    # Each autocommit statement takes a fresh statistics snapshot.
    live, dead = conn.execute(
        "SELECT pg_stat_get_live_tuples(%s::oid), pg_stat_get_dead_tuples(%s::oid)", (oid, oid)
    ).fetchone()
    return int(live), int(dead)


def apply(
    conn: psycopg.Connection,
    actions: Sequence[MaintenanceAction],
    *,
    lock_wait_s: float = 0.0,
    policy: db.LockRetryPolicy = db.LockRetryPolicy(),
    log: Callable[[str], None] = lambda message: None,
    store: Optional[BackupStore] = None,
) -> list[ActionResult]:
    """Run the actions on an autocommit connection, holding every table they touch
    (``recovery.table_maintenance``; what it repaired goes to ``log``).

    The scopes are taken up front (in key order, so two runs cannot deadlock) and held until
    the end: a run either does all its work or reports who holds the lock.
    """
    if not conn.autocommit:
        raise ValueError("VACUUM cannot run inside a transaction block: pass an autocommit connection")
    results: list[ActionResult] = []
    if not actions:
        return results
    with recovery.table_maintenance(conn, *(a.oid for a in actions), store=store, wait_s=lock_wait_s,
                                    retry=policy) as recovered:
        recovered.tell(log)
        for action in actions:
            text = action.as_sql(conn)
            _, dead_before = _tuples(conn, action.oid)
            started = time.perf_counter()
            attempts = db.execute_with_retry(conn, action.statement, what=text, policy=policy)
            seconds = time.perf_counter() - started
            live_after, dead_after = _tuples(conn, action.oid)
            if action.kind == "analyze":  # a partitioned parent holds no tuples of its own
                log(f"{text} in {seconds:.2f}s")
            else:
                log(f"{text}: dead tuples {dead_before} -> {dead_after} in {seconds:.2f}s")
            results.append(ActionResult(action, text, seconds, attempts, dead_before, dead_after, live_after))
    return results
