"""Connections, safe DDL execution and the maintenance advisory lock.

Every DDL statement runs under a short ``lock_timeout`` and is retried with
backoff, so game traffic never queues for long behind maintenance (a DDL waiting
for ACCESS EXCLUSIVE blocks every later query on the table).
"""

from __future__ import annotations

import contextlib
import logging
import random
import secrets
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional, Sequence, TypeVar

import psycopg
from psycopg import errors, sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

log = logging.getLogger(__name__)

DEFAULT_APPLICATION_NAME = "cosmic_ops"


def redact(conninfo: str) -> str:
    """The conninfo with any password removed: safe for logs, metadata and errors."""
    try:
        params = conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError:
        return "<unparseable connection string>"
    if "password" in params:
        params["password"] = "****"
    return make_conninfo(**params)


def with_database(conninfo: str, dbname: str) -> str:
    """The same server and credentials, another database."""
    params = conninfo_to_dict(conninfo)
    params["dbname"] = dbname
    return make_conninfo(**params)


def sqlalchemy_url(conninfo: str, dbname: str | None = None) -> str:
    """A ``postgresql+psycopg2://`` URL for dagster-postgres. The scheme must name psycopg2: with
    SQLAlchemy 2.1 a plain ``postgresql://`` means psycopg 3, on which dagster-postgres 0.29 fails
    every event write (a syntax error at ``NOTIFY run_events, $1``)."""
    from sqlalchemy.engine import URL

    params = {k: str(v) for k, v in conninfo_to_dict(conninfo).items()}
    host = params.pop("host", None)
    port = params.pop("port", None)
    socket = host is not None and host.startswith("/")
    if socket:  # a Unix socket directory goes in the query string, as libpq reads it there
        params["host"] = host
        if port:
            params["port"] = port
    params.pop("dbname", None)
    url = URL.create(
        "postgresql+psycopg2", username=params.pop("user", "postgres"), password=params.pop("password", None),
        host=None if socket else host, port=None if socket or not port else int(port),
        database=dbname or conninfo_to_dict(conninfo).get("dbname", "postgres"), query=params)
    return url.render_as_string(hide_password=False)


def connect(
    conninfo: str,
    *,
    application_name: str = DEFAULT_APPLICATION_NAME,
    lock_timeout: str = "5s",
    statement_timeout: str = "0",
    autocommit: bool = True,
) -> psycopg.Connection:
    """Open a maintenance session: named in pg_stat_activity, bounded lock waits.

    Sessions are in autocommit: whatever must be atomic says so with ``with conn.transaction()``
    (psycopg's own advice), so no read leaves a transaction open that a later batch or DDL would
    nest in by accident.

    Errors never carry the password: psycopg's messages quote the server, not the
    conninfo, and we re-raise with a redacted description.
    """
    # DateStyle ISO whatever the server's default: psycopg parses dates and timestamps only in ISO.
    options = f"-c lock_timeout={lock_timeout} -c statement_timeout={statement_timeout} -c DateStyle=ISO"
    try:
        return psycopg.connect(
            conninfo,
            application_name=application_name,
            options=options,
            autocommit=autocommit,
        )
    except psycopg.OperationalError as exc:
        raise psycopg.OperationalError(
            f"cannot connect to {redact(conninfo)}: {str(exc).strip()}"
        ) from None


@dataclass(frozen=True)
class SessionSpec:
    """What ``connect`` needs, as a value: picklable, so a worker process can open its own session.

    The conninfo (which may hold a password) stays out of ``repr``.
    """

    conninfo: str = field(repr=False)
    application_name: str = DEFAULT_APPLICATION_NAME
    lock_timeout: str = "5s"
    statement_timeout: str = "0"

    def connect(self, *, autocommit: bool = True) -> psycopg.Connection:
        return connect(self.conninfo, application_name=self.application_name, lock_timeout=self.lock_timeout,
                       statement_timeout=self.statement_timeout, autocommit=autocommit)


def create_database(server_conninfo: str, name: str) -> str:
    """``CREATE DATABASE name`` on the server; returns the new database's conninfo."""
    with connect(server_conninfo, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return with_database(server_conninfo, name)


def ensure_database(server_conninfo: str, name: str) -> str:
    """The database's conninfo, creating it first if it does not exist."""
    with connect(server_conninfo, autocommit=True) as admin:
        if admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            return with_database(server_conninfo, name)
    return create_database(server_conninfo, name)


def drop_database(server_conninfo: str, name: str) -> None:
    """Drop the database even if sessions are still connected to it."""
    with connect(server_conninfo, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextlib.contextmanager
def scratch_database(server_conninfo: str, prefix: str) -> Iterator[str]:
    """A new empty database named ``<prefix>_<random>``, dropped on exit; yields its conninfo.

    Raises ``errors.InsufficientPrivilege`` when the role may not create databases.
    """
    name = f"{prefix}_{secrets.token_hex(4)}"
    conninfo = create_database(server_conninfo, name)
    try:
        yield conninfo
    finally:
        drop_database(server_conninfo, name)


def end_read(conn: psycopg.Connection) -> None:
    """Close the implicit transaction that reads opened, so that the next transaction (a
    batch, a DDL under ``run_locked``) really commits on its own instead of nesting."""
    if not conn.autocommit and conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS:
        conn.commit()


WAL_COMPRESSION_METHODS = ("lz4", "pglz")


def compress_wal(conn: psycopg.Connection) -> str | None:
    """Compress the full-page images in the WAL this session writes from now on, where the role may.

    Bulk maintenance after a checkpoint writes mostly full-page images, and every
    game commit waits for the WAL ahead of it to reach disk: smaller WAL, shorter
    waits. ``wal_compression`` needs a superuser or ``GRANT SET ON PARAMETER
    wal_compression``; otherwise nothing changes. Returns the method set (None:
    unchanged). ``conn`` is an autocommit session outside any transaction block.
    """
    for method in WAL_COMPRESSION_METHODS:
        try:
            conn.execute("SELECT set_config('wal_compression', %s, false)", (method,))
            return method
        except (errors.InsufficientPrivilege, errors.InvalidParameterValue):
            continue
    return None


@contextlib.contextmanager
def compressed_wal(conn: psycopg.Connection) -> Iterator[str | None]:
    """``compress_wal`` for the duration of the block; the session's previous value comes back at exit."""
    previous = conn.execute("SELECT current_setting('wal_compression')").fetchone()[0]
    applied = compress_wal(conn)
    try:
        yield applied
    finally:
        # A session that died (or is mid-error) takes its settings with it.
        if applied and not conn.closed and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
            conn.execute("SELECT set_config('wal_compression', %s, false)", (previous,))


# ---------------------------------------------------------------------------
# DDL under lock_timeout with retries


class LockRetriesExhausted(RuntimeError):
    """A DDL could not get its lock within the retry budget; nothing was changed."""


@dataclass(frozen=True)
class LockRetryPolicy:
    lock_timeout_ms: int = 2000
    attempts: int = 5
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed ``attempt`` (1-based): exponential, capped, with
        jitter so that retrying sessions do not queue up in lockstep."""
        return min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1)) * random.uniform(0.8, 1.2)


T = TypeVar("T")

# What a transaction under ``run_locked`` retries from the start: our lock_timeout fired, or
# (READ COMMITTED) a row it was locking was moved to another partition by the game meanwhile.
RETRIED_CONFLICTS = (errors.LockNotAvailable, errors.SerializationFailure)


@dataclass
class DdlOutcome:
    attempts: int
    lock_wait_s: float


def retrying(
    attempt_once: Callable[[int], T],
    *,
    what: str,
    policy: LockRetryPolicy = LockRetryPolicy(),
    retried: tuple[type[BaseException], ...] = RETRIED_CONFLICTS,
    exhausted: Callable[[], str] = lambda: "Nothing was changed.",
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[T, DdlOutcome]:
    """THE retry loop of every statement that waits for a lock: ``attempt_once(attempt)`` (1-based)
    is tried up to ``policy.attempts`` times; an attempt that raises one of ``retried`` (it must
    have changed nothing: its transaction rolled back) is followed by a capped, jittered backoff.
    Returns the attempt's value with the attempts made and the time spent waiting (failed
    attempts and backoff); raises ``LockRetriesExhausted`` ending with ``exhausted()``."""
    waited = 0.0
    for attempt in range(1, policy.attempts + 1):
        started = time.monotonic()
        try:
            return attempt_once(attempt), DdlOutcome(attempts=attempt, lock_wait_s=waited)
        except retried as exc:
            waited += time.monotonic() - started
            if attempt == policy.attempts:
                break
            delay = policy.backoff(attempt)
            log.warning(
                "%s: %s (attempt %d/%d); retrying in %.2fs", what,
                "a concurrent update moved a row it was locking" if isinstance(exc, errors.SerializationFailure)
                else f"lock not granted within {policy.lock_timeout_ms} ms", attempt, policy.attempts, delay,
            )
            sleep(delay)
            waited += delay
    raise LockRetriesExhausted(
        f"{what}: could not acquire the lock after {policy.attempts} attempts of "
        f"{policy.lock_timeout_ms} ms each; another session holds a conflicting lock. {exhausted()}"
    )


def run_locked(
    conn: psycopg.Connection,
    work: Callable[[psycopg.Connection], object],
    *,
    what: str,
    policy: LockRetryPolicy = LockRetryPolicy(),
    sleep: Callable[[float], None] = time.sleep,
) -> DdlOutcome:
    """Run ``work`` in one transaction under ``SET LOCAL lock_timeout`` (``retrying``): a lock
    timeout or a serialization failure rolls the whole transaction back and it runs again.

    ``work`` must only issue statements (no commit). The connection must not be inside a
    transaction already.
    """
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise RuntimeError(f"{what}: connection already inside a transaction")

    def attempt_once(_: int) -> None:
        with conn.transaction():
            conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(f"{policy.lock_timeout_ms}ms")))
            work(conn)

    return retrying(attempt_once, what=what, policy=policy, sleep=sleep)[1]


def execute_with_retry(
    conn: psycopg.Connection, statement: sql.Composable, *, what: str, policy: LockRetryPolicy = LockRetryPolicy(),
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """One statement that cannot sit in a transaction block (VACUUM), on an autocommit session
    under the policy's lock_timeout (set for the session: ``SET LOCAL`` needs a transaction),
    through ``retrying``; returns the attempt that succeeded."""
    conn.execute(sql.SQL("SET lock_timeout = {}").format(sql.Literal(f"{policy.lock_timeout_ms}ms")))
    return retrying(lambda _: conn.execute(statement), what=what, policy=policy, sleep=sleep)[1].attempts


def run_ddl(
    conn: psycopg.Connection,
    statements: Sequence[sql.Composable],
    *,
    what: str,
    policy: LockRetryPolicy = LockRetryPolicy(),
) -> DdlOutcome:
    """Run DDL statements atomically under lock_timeout with retries."""

    def work(c: psycopg.Connection) -> None:
        for statement in statements:
            c.execute(statement)

    return run_locked(conn, work, what=what, policy=policy)


# ---------------------------------------------------------------------------
# Maintenance advisory lock: one scope per table, computed from the catalog

# First key of the two-int advisory locks cosmic_ops takes on a table; the second key is
# the OID of the table's partition root, so ``pg_locks.objid::regclass`` names the table.
ADVISORY_LOCK_CLASS = 0x0C05
# First key of the locks on a folder of the backup store (not a table): the second key
# is ``hashtext`` of the folder's name. A separate class, so it never meets a table's OID.
STORE_LOCK_CLASS = 0x0C06

# The top of ``relation``'s partition tree. Walks pg_inherits rather than calling
# pg_partition_root(), which stops at a partition left "detach pending" by an
# interrupted DETACH ... CONCURRENTLY (it still belongs to its parent until FINALIZE).
_ROOT_SQL = """
WITH RECURSIVE up(oid, depth) AS (
    SELECT c.oid, 0 FROM pg_class c WHERE c.oid = %s::oid
    UNION ALL
    SELECT i.inhparent, up.depth + 1
    FROM up JOIN pg_class c ON c.oid = up.oid AND c.relispartition
    JOIN pg_inherits i ON i.inhrelid = up.oid
)
SELECT r.oid::bigint, n.nspname, r.relname, r.relkind = 'p'
FROM (SELECT oid FROM up ORDER BY depth DESC LIMIT 1) top
JOIN pg_class r ON r.oid = top.oid JOIN pg_namespace n ON n.oid = r.relnamespace
"""


class MaintenanceLockBusy(RuntimeError):
    """Another session holds the maintenance lock: the work was NOT done."""


@dataclass(frozen=True)
class LockScope:
    """An advisory lock key: ``classid`` and ``objid`` as ``pg_locks`` shows them, and what it guards."""

    classid: int
    objid: int  # unsigned 32 bits, as pg_locks shows it
    name: str  # "public.event_logs" (the root table), or the store folder
    kind: str = "table"  # or "backup folder"
    schema: Optional[str] = None  # set for a table's scope
    table: Optional[str] = None
    partitioned: bool = False

    @property
    def key(self) -> tuple[int, int]:
        """The two int4 arguments of pg_try_advisory_lock (an OID above 2^31 wraps negative)."""
        return self.classid, self.objid - (1 << 32) if self.objid >= 1 << 31 else self.objid


def table_lock_scope(conn: psycopg.Connection, table: str | int) -> LockScope:
    """THE maintenance lock scope of ``table`` (a regclass text or an OID): its partition
    tree's root, by OID.

    Every partition, the parent and any spelling of their names (quoted, schema-qualified
    or through the search_path) give the same scope, and a rename does not change it.
    """
    if isinstance(table, int):
        oid = table
    else:
        oid = conn.execute("SELECT to_regclass(%s)::oid::bigint", (table,)).fetchone()[0]
        if oid is None:
            raise LookupError(f"no table {table!r} in database {conn.info.dbname!r}")
    row = conn.execute(_ROOT_SQL, (oid,)).fetchone()
    if row is None:
        raise LookupError(f"no relation with OID {oid} in database {conn.info.dbname!r}")
    root, schema, name, partitioned = row
    return LockScope(ADVISORY_LOCK_CLASS, root, f"{schema}.{name}", "table", schema, name, partitioned)


def store_lock_scope(conn: psycopg.Connection, folder: str) -> LockScope:
    """The lock of one folder of the backup store (its generations, staging and pruning)."""
    objid = conn.execute("SELECT hashtext(%s)::bigint & 4294967295", (folder,)).fetchone()[0]
    return LockScope(STORE_LOCK_CLASS, objid, folder, "backup folder")


def _lock_holder(conn: psycopg.Connection, scope: LockScope) -> str:
    row = conn.execute(
        """
        SELECT a.pid, a.application_name, a.backend_start, a.state
        FROM pg_locks l
        JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE l.locktype = 'advisory' AND l.granted
          AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND l.classid = %s::bigint::oid AND l.objid = %s::bigint::oid AND l.objsubid = 2
        LIMIT 1
        """,
        (scope.classid, scope.objid),
    ).fetchone()
    if row is None:
        return "an unknown session (it may just have released it)"
    pid, app, started, state = row
    return f"pid {pid} (application_name={app!r}, connected since {started:%Y-%m-%d %H:%M:%S%z}, state={state})"


def _unlock(conn: psycopg.Connection, scopes: Sequence[LockScope]) -> None:
    if conn.closed or conn.broken:
        return  # the session's advisory locks ended with it
    for scope in reversed(scopes):
        conn.execute("SELECT pg_advisory_unlock(%s, %s)", scope.key)


@contextlib.contextmanager
def hold_scopes(
    conn: psycopg.Connection, scopes: Sequence[LockScope], *, wait_s: float = 0.0
) -> Iterator[tuple[LockScope, ...]]:
    """Hold the session-level advisory locks of ``scopes``, taken in key order (two runs
    wanting the same ones cannot deadlock), all or none.

    Each is waited for at most what is left of ``wait_s`` (the server's own lock queue under
    ``lock_timeout``, no polling); then we raise ``MaintenanceLockBusy`` naming the holder: a
    skipped run must never look like success.
    """
    if not conn.autocommit:
        # Session-level locks outlive transactions; a transaction left open around them would
        # pin a snapshot (and block VACUUM) for the whole job.
        raise RuntimeError("maintenance locks are taken on an autocommit session (db.connect opens one)")
    ordered = tuple(sorted(set(scopes), key=lambda s: (s.classid, s.objid)))
    deadline = time.monotonic() + wait_s
    held: list[LockScope] = []
    try:
        for scope in ordered:
            if not _take_advisory_lock(conn, scope, deadline - time.monotonic()):
                holder = _lock_holder(conn, scope)
                raise MaintenanceLockBusy(
                    f"maintenance lock of {scope.kind} {scope.name} on database {conn.info.dbname!r} is held by "
                    f"{holder}; this run did not do its work")
            held.append(scope)
    except BaseException:
        _unlock(conn, held)
        raise
    try:
        yield ordered
    finally:
        _unlock(conn, held)


def _take_advisory_lock(conn: psycopg.Connection, scope: LockScope, wait_s: float) -> bool:
    """Take ``scope``'s session-level advisory lock, waiting up to ``wait_s`` in the server's queue."""
    if wait_s <= 0:  # lock_timeout 0 would mean "wait forever"
        return conn.execute("SELECT pg_try_advisory_lock(%s, %s)", scope.key).fetchone()[0]
    try:
        with conn.transaction():
            conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(f"{max(1, int(wait_s * 1000))}ms")))
            conn.execute("SELECT pg_advisory_lock(%s, %s)", scope.key)
        return True
    except errors.LockNotAvailable:
        return False


@contextlib.contextmanager
def maintenance_lock(
    conn: psycopg.Connection, *tables: str | int, wait_s: float = 0.0
) -> Iterator[tuple[LockScope, ...]]:
    """Hold the maintenance lock scope (``table_lock_scope``) of each of ``tables``.

    Advisory locks are per database; a table's scope is shared by every job that changes
    or moves its data or structure, whichever partition it names. Jobs on a partitioned
    table take it through ``recovery.table_maintenance``, which also repairs what an
    interrupted job left.
    """
    if not tables:
        raise ValueError("maintenance_lock needs at least one table")
    scopes = [table_lock_scope(conn, table) for table in tables]
    with hold_scopes(conn, scopes, wait_s=wait_s) as held:
        yield held
