"""Destroyed celestial bodies -> ``celestial_bodies_archive``, in bounded committed batches.

Each batch is one statement, ``WITH moved AS (DELETE ... RETURNING) INSERT ...``,
committed on its own: a row is either still live or already archived, never both,
never neither, whenever the process dies. ``FOR UPDATE SKIP LOCKED`` (the default)
keeps a game transaction holding a row from blocking a batch; without it, dense due
rows move by heap page ranges, one sequential pass per page.

Archiving and un-archiving move rows between two tables, so both hold the maintenance
lock scopes of both (``recovery.table_maintenance``): neither overlaps the other, a
VACUUM of either table, or any other job that changes them.
"""

from __future__ import annotations

import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Sequence

import psycopg
from psycopg import sql

from .. import recovery
from ..db import LockRetryPolicy, SessionSpec, compress_wal, compressed_wal, end_read, run_ddl
from .policy import BatchLog, MonthScope, ProgressCallback, Throttle, own_transaction, run_batches

LIVE_TABLE = "celestial_bodies"
ARCHIVE_TABLE = "celestial_bodies_archive"
DEFAULT_OLDER_THAN = timedelta(days=30)
# Default pacing, chosen with bench/bench_lifecycle.py: 5,000-row batches (fewer commits and
# plans than 1,000 for the same game latency), at most 60k rows/s. A lower cap did not
# lower the game's p99 measurably on the 2-core machine, and fell below half the seed's
# speed when the machine ran fast (the seed moved 35-110k rows/s there, run to run).
DEFAULT_THROTTLE = Throttle(batch_size=5_000, pause_s=0.0, max_rows_per_s=60_000)


class ArchiveMismatch(RuntimeError):
    """A batch stored other rows than it deleted: it was rolled back."""


@dataclass(frozen=True)
class ArchivePolicy:
    older_than: timedelta = DEFAULT_OLDER_THAN
    throttle: Throttle = DEFAULT_THROTTLE
    tablespace: str | None = None
    # Lock candidate rows and skip those a game transaction holds (never wait on the game).
    skip_locked: bool = True
    # Sessions moving different leaf partitions side by side (each paced by ``throttle``);
    # more than one needs a way to open sessions (``worker_sessions``).
    workers: int = 1

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError("workers must be at least 1")


@dataclass(frozen=True)
class Action:
    """One step of a plan and the SQL it runs."""

    kind: str
    description: str
    statement: str


@dataclass
class ArchivePlan:
    scope: MonthScope
    candidates: int
    actions: list[Action] = field(default_factory=list)

    def as_markdown(self) -> str:
        lines = [f"**archive destroyed bodies** updated in {self.scope.describe()}: {self.candidates} rows", ""]
        for number, action in enumerate(self.actions, 1):
            lines += [f"{number}. {action.kind}: {action.description}", "", "```sql", action.statement, "```", ""]
        return "\n".join(lines)


@dataclass(frozen=True)
class MonthCounts:
    """One month of a run's scope (bodies by ``updated_at``): live destroyed and archived rows
    before and after the run."""

    scope: MonthScope
    live_before: int
    archived_before: int
    live_after: int
    archived_after: int

    @property
    def month(self) -> date:
        return self.scope.month

    @property
    def rows_before(self) -> int:
        return self.live_before + self.archived_before

    @property
    def rows_after(self) -> int:
        return self.live_after + self.archived_after

    @property
    def rows_moved(self) -> int:
        return self.archived_after - self.archived_before

    @property
    def conserved(self) -> bool:
        return self.rows_before == self.rows_after


@dataclass
class ArchiveReport:
    scope: MonthScope
    log: BatchLog
    rows_remaining: int
    scope_rows_before: int
    scope_rows_after: int
    tablespace_moved: bool = False
    wal_compression: str | None = None
    # Wall time of the batches (all sessions), without the scope counts before and after.
    moving_s: float = 0.0
    months: list[MonthCounts] = field(default_factory=list)  # each month of the scope on its own

    @property
    def conserved(self) -> bool:
        return self.scope_rows_before == self.scope_rows_after and all(m.conserved for m in self.months)


def table_columns(conn: psycopg.Connection, table: str) -> list[str]:
    """Column names of ``table`` in order, from the catalog."""
    rows = conn.execute(
        """
        SELECT a.attname FROM pg_attribute a
        WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY a.attnum
        """,
        (table,),
    ).fetchall()
    if not rows:
        raise LookupError(f"table {table!r} not found")
    return [r[0] for r in rows]


def _idents(names: Sequence[str]) -> sql.Composable:
    return sql.SQL(", ").join(sql.Identifier(n) for n in names)


def leaf_tables(conn: psycopg.Connection, table: str) -> list[str]:
    """The tables that hold ``table``'s rows (its leaf partitions, or itself), from the catalog."""
    rows = conn.execute(
        "SELECT c.relname FROM pg_partition_tree(to_regclass(%s)) t JOIN pg_class c ON c.oid = t.relid "
        "WHERE t.isleaf ORDER BY c.relname", (table,)).fetchall()
    return [r[0] for r in rows] or [table]


def move_statement(conn: psycopg.Connection, leaf: str, target: str, where: sql.Composable,
                   *, stamp_archived_at: bool, skip_locked: bool = True, by_pages: bool = False) -> sql.Composed:
    """One batch: delete up to ``%(limit)s`` rows matching ``where`` from ``leaf``, insert them into ``target``.

    Working on one leaf at a time lets the delete find its rows by ``ctid`` instead of
    joining the whole partitioned table on the key. Two ways to bound a batch:

    - ``by_pages``: the rows of the heap pages ``%(first)s`` up to ``%(stop)s`` (TIDs),
      read by a TID range scan: one sequential pass over each page, no index, no sort,
      no second visit. Used where due rows are dense (archiving a month: every page
      holds some), without row locks.
    - otherwise rows are taken in ``updated_at`` order from ``%(after)s`` on (keyset
      paging): an index scan that stops after ``limit`` rows and never revisits what
      earlier batches moved (a plain ``LIMIT`` makes PostgreSQL scan from the table's
      start through every dead row of the batches before). With ``skip_locked`` the
      candidates are locked first and rows a game transaction holds are skipped.

    Without row locks, a row another session updates meanwhile is re-checked by the
    delete (range and ``where`` included) and stays live if it no longer matches; one
    locked by a running transaction makes the batch wait (up to ``lock_timeout``).
    Either way what is inserted is exactly what was deleted. Returns the rows stored,
    the last ``updated_at`` and the rows deleted.
    """
    columns = table_columns(conn, LIVE_TABLE)
    target_columns = columns + (["archived_at"] if stamp_archived_at else [])
    selected = _idents(columns) if not stamp_archived_at else sql.SQL("{}, now()").format(_idents(columns))
    if by_pages:
        delete = sql.SQL("""DELETE FROM {leaf}
    WHERE ctid >= %(first)s::tid AND ctid < %(stop)s::tid AND {where}""")
    else:
        delete = sql.SQL("""DELETE FROM {leaf}
    WHERE ctid = ANY(ARRAY(
        SELECT ctid FROM {leaf}
        WHERE {where} AND updated_at >= %(after)s
        ORDER BY updated_at
        LIMIT %(limit)s{locking}))""")
    # The moved rows pass through one materialized CTE; the insert returns only
    # updated_at, so paging reads a narrow result. Rows deleted and rows inserted are
    # both counted: a rule or trigger that drops rows on insert makes them differ.
    return sql.SQL(
        """WITH moved AS (
    {delete}
    RETURNING {columns}),
stored AS (
    INSERT INTO {target} ({target_columns})
    SELECT {selected} FROM moved
    RETURNING updated_at)
SELECT count(*), max(updated_at), (SELECT count(*) FROM moved) FROM stored"""
    ).format(
        delete=delete.format(
            leaf=sql.Identifier(leaf), where=where,
            locking=sql.SQL("\n        FOR UPDATE SKIP LOCKED") if skip_locked else sql.SQL("")),
        target=sql.Identifier(target),
        columns=_idents(columns),
        target_columns=_idents(target_columns),
        selected=selected,
    )


# Due rows per heap page above which a page range beats index lookups: reading a page in
# sequence costs a fraction of a random visit through the index.
DENSE_ROWS_PER_PAGE = 0.25


@dataclass
class PageRanges:
    """The heap pages of a leaf, cut into ranges expected to hold about ``limit`` due rows each."""

    pages: int
    step: int
    first: int = 0

    @classmethod
    def of(cls, conn: psycopg.Connection, leaf: str, where: sql.Composable, params: dict) -> PageRanges | None:
        """Ranges for ``leaf`` when its due rows are dense enough, else None (use the index)."""
        pages, due = conn.execute(
            sql.SQL("SELECT pg_relation_size({name}::regclass) / current_setting('block_size')::int, "
                    "(SELECT count(*) FROM {table} WHERE {where})").format(
                name=sql.Literal(sql.Identifier(leaf).as_string(conn)), table=sql.Identifier(leaf), where=where),
            params).fetchone()
        end_read(conn)
        if not due or due < pages * DENSE_ROWS_PER_PAGE:
            return None if due else cls(pages=0, step=1)
        return cls(pages=pages, step=max(1, -(-pages * params["limit"] // due)))

    def next(self) -> dict | None:
        """TID bounds of the next range; None past the last page (rows added since are not due yet)."""
        if self.first >= self.pages:
            return None
        stop = self.first + self.step
        bounds = {"first": f"({self.first},0)", "stop": f"({stop},0)"}
        self.first = stop
        return bounds


def leaf_move(conn: psycopg.Connection, leaf: str, target: str, where: sql.Composable, params: dict,
              *, stamp_archived_at: bool, skip_locked: bool) -> tuple[sql.Composed, PageRanges | None]:
    """How ``leaf``'s batches are bounded and the statement each runs: page ranges where due
    rows are dense and no row locks are taken, else keyset paging. The plan and the run share it."""
    ranges = None if skip_locked else PageRanges.of(conn, leaf, where, params)
    statement = move_statement(conn, leaf, target, where, stamp_archived_at=stamp_archived_at,
                               skip_locked=skip_locked, by_pages=ranges is not None)
    return statement, ranges


def batch_mover(conn: psycopg.Connection, source: str, target: str, where: sql.Composable, params: dict,
                *, stamp_archived_at: bool, skip_locked: bool = True, leaves: deque[str] | None = None):
    """A step for ``run_batches``: one committed batch from the first leaf of ``source`` with rows left.

    ``leaves`` (the leaf partitions still to do) may be shared by several movers, each
    on its own session: a mover takes the next leaf when its own has no rows left.
    A batch over a page range that held no due row returns 0, so the throttle paces
    reading as well as moving.
    """
    if leaves is None:
        leaves = deque(leaf_tables(conn, source))
        end_read(conn)
    start = datetime(1, 1, 1, tzinfo=timezone.utc)
    cursor: dict = {}
    current: list[tuple[str, sql.Composed, PageRanges | None]] = []

    def next_leaf() -> bool:
        try:
            leaf = leaves.popleft()  # atomic: movers on other threads share the deque
        except IndexError:
            return False
        current[:] = [(leaf, *leaf_move(conn, leaf, target, where, params, stamp_archived_at=stamp_archived_at,
                                        skip_locked=skip_locked))]
        cursor.clear()
        cursor["after"] = start
        return True

    def one_batch() -> int | None:
        while current or next_leaf():
            leaf, move, ranges = current[0]
            if ranges is not None:
                bounds = ranges.next()
                if bounds is None:
                    current.clear()
                    continue
                cursor.update(bounds)
            with own_transaction(conn):
                # A batch lost to a server crash simply was not moved (delete and insert
                # commit together), so the batch need not wait for its WAL flush; game
                # commits then share fewer fsyncs with maintenance.
                conn.execute("SET LOCAL synchronous_commit = off")
                # The moved rows stay in memory between the delete and the insert.
                conn.execute("SET LOCAL work_mem = '64MB'")
                moved, last, deleted = conn.execute(move, {**params, **cursor}).fetchone()
                if moved != deleted:
                    raise ArchiveMismatch(f"{leaf}: {deleted} rows deleted but {moved} stored in {target}; "
                                          "batch rolled back")
            if ranges is not None:
                return moved
            if moved < params["limit"]:
                current.clear()  # a short batch found the last rows of this leaf
            else:
                cursor["after"] = last  # inclusive: rows sharing the last timestamp may remain
            if moved:
                return moved
        return None

    return one_batch


_DESTROYED_IN_SCOPE = sql.SQL("is_destroyed AND updated_at >= %(lower)s AND updated_at < %(upper)s")
_ARCHIVED_IN_SCOPE = sql.SQL("updated_at >= %(lower)s AND updated_at < %(upper)s")


def _scope_params(scope: MonthScope, limit: int = 0) -> dict:
    return {"lower": scope.lower, "upper": scope.upper, "limit": limit}


def scope_counts(conn: psycopg.Connection, scope: MonthScope) -> tuple[int, int]:
    """(live destroyed rows, archived rows) whose ``updated_at`` is in ``scope``, one snapshot."""
    statement = sql.SQL("SELECT (SELECT count(*) FROM {} WHERE {}), (SELECT count(*) FROM {} WHERE {})").format(
        sql.Identifier(LIVE_TABLE), _DESTROYED_IN_SCOPE, sql.Identifier(ARCHIVE_TABLE), _ARCHIVED_IN_SCOPE)
    live, archived = conn.execute(statement, _scope_params(scope)).fetchone()
    end_read(conn)
    return live, archived


def archive_tablespace(conn: psycopg.Connection) -> str | None:
    """The tablespace the archive lives on (None: the database default)."""
    return conn.execute(
        "SELECT t.spcname FROM pg_class c LEFT JOIN pg_tablespace t ON t.oid = c.reltablespace "
        "WHERE c.oid = to_regclass(%s)", (ARCHIVE_TABLE,)
    ).fetchone()[0]


def _tablespace_statements(conn: psycopg.Connection, tablespace: str) -> list[sql.Composed]:
    exists = conn.execute("SELECT 1 FROM pg_tablespace WHERE spcname = %s", (tablespace,)).fetchone()
    if not exists:
        raise LookupError(f"tablespace {tablespace!r} does not exist; create it first (CREATE TABLESPACE)")
    indexes = [r[0] for r in conn.execute(
        "SELECT i.relname FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
        "WHERE x.indrelid = to_regclass(%s) ORDER BY i.relname", (ARCHIVE_TABLE,)).fetchall()]
    statements = [sql.SQL("ALTER TABLE {} SET TABLESPACE {}").format(
        sql.Identifier(ARCHIVE_TABLE), sql.Identifier(tablespace))]
    statements += [sql.SQL("ALTER INDEX {} SET TABLESPACE {}").format(
        sql.Identifier(index), sql.Identifier(tablespace)) for index in indexes]
    return statements


def plan_archive(conn: psycopg.Connection, month: date, policy: ArchivePolicy = ArchivePolicy(),
                 *, now: datetime, through: date | None = None) -> ArchivePlan:
    """What archiving ``month`` (.. ``through``) would do; reads only."""
    scope = MonthScope.of(month, policy.older_than, now, through=through)
    live, _ = scope_counts(conn, scope)
    plan = ArchivePlan(scope=scope, candidates=live)
    if policy.tablespace and archive_tablespace(conn) != policy.tablespace:
        for statement in _tablespace_statements(conn, policy.tablespace):
            plan.actions.append(Action("move archive", f"to tablespace {policy.tablespace}",
                                       statement.as_string(conn)))
    params = _scope_params(scope, policy.throttle.batch_size)
    for leaf in leaf_tables(conn, LIVE_TABLE):
        statement, ranges = leaf_move(conn, leaf, ARCHIVE_TABLE, _DESTROYED_IN_SCOPE, params,
                                      stamp_archived_at=True, skip_locked=policy.skip_locked)
        if ranges is not None and not ranges.pages:
            continue  # nothing due in this leaf
        bound = (f"heap pages 0..{ranges.pages - 1} in ranges of {ranges.step} pages (about "
                 f"{policy.throttle.batch_size} due rows each)" if ranges else
                 f"batches of at most {policy.throttle.batch_size} rows")
        plan.actions.append(Action(
            "archive batches",
            f"{leaf}: {bound}, each committed; {policy.throttle.describe()}",
            statement.as_string(conn),
        ))
    end_read(conn)
    return plan


def ensure_archive_tablespace(conn: psycopg.Connection, tablespace: str,
                              retry: LockRetryPolicy = LockRetryPolicy()) -> bool:
    """Put the archive table and its indexes on ``tablespace``; False when already there."""
    if archive_tablespace(conn) == tablespace:
        end_read(conn)
        return False
    statements = _tablespace_statements(conn, tablespace)
    end_read(conn)
    run_ddl(conn, statements, what=f"move {ARCHIVE_TABLE} to tablespace {tablespace}", policy=retry)
    return True


def _move_in_sessions(conns: list[psycopg.Connection], leaves: deque[str], params: dict, policy: ArchivePolicy,
                      progress: ProgressCallback | None, max_batches: int | None) -> BatchLog:
    """Every session moves leaves from the shared queue until none is left; their logs are merged."""
    def work(conn: psycopg.Connection) -> BatchLog:
        mover = batch_mover(conn, LIVE_TABLE, ARCHIVE_TABLE, _DESTROYED_IN_SCOPE, params, stamp_archived_at=True,
                            skip_locked=policy.skip_locked, leaves=leaves)
        return run_batches(mover, policy.throttle, BatchLog(unit="rows"), progress=progress, max_batches=max_batches)

    if len(conns) == 1:
        return work(conns[0])
    log = BatchLog(unit="rows")
    with ThreadPoolExecutor(max_workers=len(conns), thread_name_prefix="archive") as pool:
        for mine in pool.map(work, conns):
            log.absorb(mine)
    log.finish()
    return log


def archive_destroyed_bodies(
    conn: psycopg.Connection,
    month: date,
    policy: ArchivePolicy = ArchivePolicy(),
    *,
    now: datetime,
    progress: ProgressCallback | None = None,
    max_batches: int | None = None,
    through: date | None = None,
    worker_sessions: SessionSpec | None = None,
) -> ArchiveReport:
    """Move destroyed bodies of ``month`` (.. ``through``), older than the policy, to the archive.

    Batch by batch: ``conn`` must not be in a transaction; every batch commits on its own.
    With ``policy.workers`` > 1 and ``worker_sessions``, that many sessions move
    different leaf partitions side by side (the server does the work: threads suffice).
    """
    scope = MonthScope.of(month, policy.older_than, now, through=through)
    with recovery.table_maintenance(conn, LIVE_TABLE, ARCHIVE_TABLE) as recovered:
        recovered.tell(progress)
        moved_tablespace = bool(policy.tablespace) and ensure_archive_tablespace(conn, policy.tablespace)
        before_by_month = [(part, scope_counts(conn, part)) for part in scope.by_month()]
        before = sum(live + archived for _, (live, archived) in before_by_month)
        params = _scope_params(scope, policy.throttle.batch_size)
        leaves = deque(leaf_tables(conn, LIVE_TABLE))
        end_read(conn)
        extra = [worker_sessions.connect() for _ in range(policy.workers - 1)] if worker_sessions else []
        try:
            for worker in extra:
                compress_wal(worker)  # the worker's own session, closed below
            with compressed_wal(conn) as wal_compression:
                began = time.monotonic()
                log = _move_in_sessions([conn, *extra], leaves, params, policy, progress, max_batches)
                moving_s = time.monotonic() - began
        finally:
            for worker in extra:
                worker.close()
        months = [MonthCounts(part, *counted, *scope_counts(conn, part)) for part, counted in before_by_month]
    live = sum(m.live_after for m in months)
    return ArchiveReport(scope=scope, log=log, rows_remaining=live, scope_rows_before=before,
                         scope_rows_after=sum(m.rows_after for m in months), tablespace_moved=moved_tablespace,
                         wal_compression=wal_compression, moving_s=moving_s, months=months)


@dataclass
class UnarchiveReport:
    log: BatchLog
    requested: str


_BY_IDS = sql.SQL("id = ANY(%(ids)s)")
_BY_SAVE = sql.SQL("save_id = %(save_id)s")


def unarchive_bodies(
    conn: psycopg.Connection,
    *,
    body_ids: Sequence[int] | None = None,
    save_id: int | None = None,
    throttle: Throttle = Throttle(),
    progress: ProgressCallback | None = None,
) -> UnarchiveReport:
    """Move archived rows back to ``celestial_bodies`` exactly as they were (``archived_at`` dropped)."""
    if bool(body_ids) == (save_id is not None):
        raise ValueError("give either body_ids or save_id (exactly one)")
    where = _BY_IDS if body_ids else _BY_SAVE
    params = {"ids": list(body_ids or []), "save_id": save_id, "limit": throttle.batch_size}
    with recovery.table_maintenance(conn, LIVE_TABLE, ARCHIVE_TABLE) as recovered:
        recovered.tell(progress)
        one_batch = batch_mover(conn, ARCHIVE_TABLE, LIVE_TABLE, where, params, stamp_archived_at=False)
        log = run_batches(one_batch, throttle, BatchLog(unit="rows"), progress=progress)
    requested = f"{len(body_ids)} body ids" if body_ids else f"save {save_id}"
    return UnarchiveReport(log=log, requested=requested)
