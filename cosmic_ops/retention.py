"""Retiring event_logs months past retention: plan, then apply. Never without proof.

A month is retired only when a backup of it was restored and counted (the
verification record in the backup store), the backup file is still intact, and
its row count equals the partition's current one. After the detach, with the
detached table locked, row count and row checksum are compared with the backup
before the DROP (or the move to the archive schema) in the same transaction: any
difference (rows added, removed or updated meanwhile) re-attaches the table and
refuses. Nothing here trusts that a Dagster check ran.

Detach: ``DETACH PARTITION ... CONCURRENTLY`` (on its own autocommit session)
when PostgreSQL allows it, which it does not while the parent has a DEFAULT
partition; then a plain DETACH under a short lock_timeout with retries. Progress
is journalled in the backup store (``detaching`` before the detach, ``detached``
after it, ``done`` after the drop). A run killed anywhere leaves something the
next job on the table repairs when it takes the table (``recovery``): a pending
concurrent detach is finalized, an interrupted retirement is finished with the
proof or its table attached again, a journal whose table is gone is recorded
done when a verified backup of the month exists.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from datetime import date
from typing import Optional

import psycopg
from psycopg import errors, sql

from . import db, recovery
from .fingerprint import Fingerprint, fingerprint, row_count
from .backups.policy import RetentionPolicy
from .backups.store import BackupStore, Generation
from .backups.verify import qualified_name
from .partitions import attach_month_table, policy_for
from .partitions.catalog import Partition, default_partition, list_partitions, partition_for_month
from .timeutil import month_start

DETACH_CONCURRENT = "concurrent"
DETACH_PLAIN = "plain"
DETACH_FINALIZE = "finalize"


class RetentionRefused(RuntimeError):
    """Retiring this month is not allowed now; nothing was changed."""


@dataclass(frozen=True)
class Step:
    name: str
    sql: Optional[str]
    why: str


@dataclass
class RetirementPlan:
    parent: str  # the table, as SQL names it
    month: date
    cutoff: date
    policy: RetentionPolicy
    # "retire" | "resume" (finish a detached table) | "record-done" (the table is gone and the proof
    # holds: only the journal's last write is missing) | "already-retired" | "nothing-to-retire" | "refused"
    status: str
    refusal: Optional[str] = None
    table_oid: Optional[int] = None
    table_schema: Optional[str] = None
    table_name: Optional[str] = None
    detach_mode: Optional[str] = None
    backup: Optional[Generation] = None
    current_rows: Optional[int] = None
    steps: list[Step] = field(default_factory=list)
    store_table: Optional[str] = None  # the table's folder in the backup store, if not ``parent``

    @property
    def store_key(self) -> str:
        return self.store_table or self.parent

    @property
    def changes_something(self) -> bool:
        return self.status in ("retire", "resume", "record-done")

    def to_markdown(self) -> str:
        lines = [
            f"**Retirement plan for {self.parent} {self.month:%Y-%m}** — status `{self.status}`",
            "",
            f"- retention: {self.policy.retention} (months before {self.cutoff:%Y-%m} may be retired)",
            f"- action: {self.policy.action}"
            + (f" (archive schema `{self.policy.archive_schema}`)" if self.policy.action == "archive-schema" else ""),
        ]
        if self.table_name:
            lines.append(f"- table: `{self.table_schema}.{self.table_name}`")
        if self.current_rows is not None:
            lines.append(f"- rows now: {self.current_rows}")
        if self.backup:
            m = self.backup.manifest
            lines.append(f"- proof: backup `{self.backup.name}` with {m.rows} rows (checksum {m.row_checksum}), "
                         f"verified by {self.backup.verification.method}")
        if self.detach_mode:
            lines.append(f"- detach: {self.detach_mode}")
        if self.refusal:
            lines += ["", f"**Refused:** {self.refusal}"]
        if self.steps:
            lines += ["", "| step | SQL | why |", "|---|---|---|"]
            for step in self.steps:
                shown = (step.sql or "").replace("|", "\\|")
                lines.append(f"| {step.name} | `{shown}` | {step.why} |" if shown else f"| {step.name} | | {step.why} |")
        return "\n".join(lines)


@dataclass(frozen=True)
class RetirementResult:
    plan: RetirementPlan
    detach_mode: Optional[str]
    action: Optional[str]
    rows_retired: int
    archived_as: Optional[str]
    detach_attempts: int
    seconds: float
    recovery: Optional["recovery.Recovery"] = None  # what taking the table repaired first


# ---------------------------------------------------------------------------
# planning


def _detach_pending(conn: psycopg.Connection, oid: int) -> bool:
    row = conn.execute("SELECT inhdetachpending FROM pg_inherits WHERE inhrelid = %s", (oid,)).fetchone()
    return bool(row and row[0])


def standalone_table(conn: psycopg.Connection, oid: int) -> Optional[tuple[str, str]]:
    return conn.execute(
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.oid = %s AND c.relkind = 'r' AND NOT c.relispartition",
        (oid,),
    ).fetchone()


def _proof(store: BackupStore, database: str, parent: str, month: date) -> tuple[Optional[Generation], str]:
    """The newest verified generation whose file still hashes to its manifest, or why none."""
    generations = store.month_generations(database, parent, month)
    if not generations:
        return None, (f"no backup of {parent} {month:%Y-%m} in the store: materialize event_log_backups "
                      "for this month and let its verification run first")
    verified = [g for g in generations if g.verified]
    if not verified:
        last = generations[0].verification
        why = f"last verification failed: {last.error}" if last else "never verified"
        return None, (f"no verified backup of {parent} {month:%Y-%m} ({len(generations)} generation(s); "
                      f"newest {generations[0].name}: {why})")
    for generation in verified:
        if generation.file_intact():
            return generation, ""
    return None, (f"verified backup file(s) of {parent} {month:%Y-%m} no longer match their sha256: "
                  "take a new backup")


def _detach_sql(parent: sql.Composable, table: sql.Composable, mode: str) -> sql.Composed:
    suffix = {DETACH_CONCURRENT: " CONCURRENTLY", DETACH_FINALIZE: " FINALIZE", DETACH_PLAIN: ""}[mode]
    return sql.SQL("ALTER TABLE {} DETACH PARTITION {}" + suffix).format(parent, table)


def _finish_sql(table: sql.Composable, policy: RetentionPolicy) -> list[sql.Composed]:
    if policy.action == "drop":
        return [sql.SQL("DROP TABLE {}").format(table)]
    archive = sql.Identifier(policy.archive_schema)
    return [sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(archive),
            sql.SQL("ALTER TABLE {} SET SCHEMA {}").format(table, archive)]


def plan_retirement(
    conn: psycopg.Connection,
    store: BackupStore,
    *,
    parent: str = "event_logs",
    month: date,
    policy: RetentionPolicy,
    today: date,
) -> RetirementPlan:
    """What retiring ``month`` would do, or why it may not. Reads only."""
    month = month_start(month)
    plan = RetirementPlan(parent=parent, month=month, cutoff=policy.cutoff(today), policy=policy, status="retire")
    try:
        return _fill_plan(conn, store, plan)
    finally:
        if not conn.autocommit:
            conn.rollback()


def refuse(plan: RetirementPlan, why: str) -> RetirementPlan:
    plan.status, plan.refusal, plan.steps = "refused", why, []
    return plan


def journal_policy(journal: dict) -> Optional[RetentionPolicy]:
    """The action a journalled retirement was started with; None when the journal does not say."""
    action = journal.get("action")
    if action == "drop":
        return RetentionPolicy(action=action)
    if action == "archive-schema" and journal.get("archive_schema"):
        return RetentionPolicy(action=action, archive_schema=journal["archive_schema"])
    return None


def _fill_plan(conn: psycopg.Connection, store: BackupStore, plan: RetirementPlan) -> RetirementPlan:
    parent, month, policy = plan.parent, plan.month, plan.policy
    if month >= plan.cutoff:
        return refuse(plan, f"{month:%Y-%m} is inside the retention window ({policy.retention}: months from "
                            f"{plan.cutoff:%Y-%m} on are kept)")
    journal = store.read_retirement(conn.info.dbname, plan.store_key, month)
    partition: Optional[Partition] = partition_for_month(conn, parent, month)
    if partition is None and journal and journal.get("state") in recovery.RETIRING_STATES:
        return _plan_journalled(conn, store, plan, journal)
    if partition is None:
        plan.status = "already-retired" if journal and journal.get("state") == "done" else "nothing-to-retire"
        return plan
    if partition.is_partitioned:
        return refuse(plan, f"{partition.schema}.{partition.name} is itself partitioned; not supported")
    plan.table_oid, plan.table_schema, plan.table_name = partition.oid, partition.schema, partition.name
    if _detach_pending(conn, partition.oid):
        plan.steps.append(Step("recover", None, "an interrupted DETACH CONCURRENTLY left it pending: taking the "
                                                "table finalizes it and attaches it again first"))
    plan.detach_mode = (DETACH_CONCURRENT if default_partition(conn, parent) is None
                        and conn.info.server_version >= 140000 else DETACH_PLAIN)
    return _prove_and_list_steps(conn, plan, *_proof(store, conn.info.dbname, plan.store_key, month))


def plan_journalled(conn: psycopg.Connection, store: BackupStore, *, parent: str, store_table: str, month: date,
                    journal: dict, policy: RetentionPolicy) -> RetirementPlan:
    """How to finish a retirement its journal says was under way (no retention window: that
    decision was taken when it started). Reads only."""
    plan = RetirementPlan(parent=parent, month=month, cutoff=month, policy=policy, status="resume",
                          store_table=store_table)
    try:
        return _plan_journalled(conn, store, plan, journal)
    finally:
        if not conn.autocommit:
            conn.rollback()


def _plan_journalled(conn: psycopg.Connection, store: BackupStore, plan: RetirementPlan,
                     journal: dict) -> RetirementPlan:
    oid, shown = journal.get("table_oid"), journal.get("table")
    standalone = standalone_table(conn, oid) if oid else None
    backup, why = _proof(store, conn.info.dbname, plan.store_key, plan.month)
    plan.status, plan.backup = "resume", backup
    if standalone is None:
        if backup is None:
            return refuse(plan, f"journal says {shown} was being retired; it is neither attached nor a standalone "
                                f"table any more and {why}: inspect it by hand")
        plan.status = "record-done"
        plan.steps.append(Step("record", None, f"{shown} is gone and the verified backup {backup.name} holds its "
                                               "rows: the retirement finished before its journal said so"))
        return plan
    plan.table_oid = oid
    plan.table_schema, plan.table_name = standalone
    if plan.policy.action == "archive-schema" and plan.table_schema == plan.policy.archive_schema and backup:
        plan.status = "record-done"
        plan.steps.append(Step("record", None, f"{plan.table_schema}.{plan.table_name} is already in the archive "
                                               "schema: the retirement finished before its journal said so"))
        return plan
    return _prove_and_list_steps(conn, plan, backup, why)


def _prove_and_list_steps(conn: psycopg.Connection, plan: RetirementPlan, backup: Optional[Generation],
                          why: str) -> RetirementPlan:
    """Refuse without the proof (``backup``, or ``why`` not); else list the steps that detach
    (if attached) and finish."""
    if backup is None:
        return refuse(plan, why)
    plan.backup = backup
    m = backup.manifest
    # A count here (cheap); the full checksum is compared after the detach, under lock.
    plan.current_rows = row_count(conn, plan.table_schema, plan.table_name)
    if plan.current_rows != m.rows:
        return refuse(plan, (
            f"stale backup: {plan.table_schema}.{plan.table_name} has {plan.current_rows} rows now but the "
            f"verified backup {backup.name} holds {m.rows}; rows were added or removed after the dump: "
            "back the month up again"))

    table = sql.Identifier(plan.table_schema, plan.table_name)
    parent_id = qualified_name(conn, plan.parent)
    if plan.status == "retire":
        why = {DETACH_CONCURRENT: "no DEFAULT partition: readers and writers are not blocked",
               DETACH_PLAIN: "the parent has a DEFAULT partition, so PostgreSQL refuses CONCURRENTLY; "
                             "short lock_timeout with retries"}[plan.detach_mode]
        plan.steps.append(Step("detach", _detach_sql(parent_id, table, plan.detach_mode).as_string(conn), why))
    plan.steps.append(Step("recount", None, "lock the detached table and compare row count and checksum with "
                                            "the backup; re-attach and stop if they differ"))
    for statement in _finish_sql(table, plan.policy):
        plan.steps.append(Step(plan.policy.action, statement.as_string(conn), "in the recount's transaction"))
    return plan


# ---------------------------------------------------------------------------
# applying


def _detach_concurrently(conninfo: str, parent: sql.Composable, table: sql.Composable, oid: int,
                         mode: str, policy: db.LockRetryPolicy) -> int:
    """Run DETACH ... CONCURRENTLY (or FINALIZE) on an autocommit session (it cannot run in a
    transaction block) through ``db.retrying``; a timeout after its first phase leaves the
    partition pending, and the next attempt finalizes it."""
    with db.connect(conninfo, autocommit=True, lock_timeout=f"{policy.lock_timeout_ms}ms",
                    application_name="cosmic_ops:retention") as session:
        current = [mode]

        def attempt_once(_: int) -> None:
            try:
                session.execute(_detach_sql(parent, table, current[0]))
            except (errors.LockNotAvailable, errors.QueryCanceled):
                if _detach_pending(session, oid):
                    current[0] = DETACH_FINALIZE
                raise

        def left() -> str:
            return ("It is left 'detach pending' and the next job on the table finalizes it."
                    if _detach_pending(session, oid) else "Nothing was changed.")

        return db.retrying(attempt_once, what=f"detach of oid {oid}", policy=policy,
                           retried=(errors.LockNotAvailable, errors.QueryCanceled), exhausted=left)[1].attempts


def _detach(conn, conninfo: Optional[str], plan: RetirementPlan, policy: db.LockRetryPolicy) -> int:
    parent_id = qualified_name(conn, plan.parent)
    table = sql.Identifier(plan.table_schema, plan.table_name)
    conn.rollback()
    if plan.detach_mode == DETACH_PLAIN:
        return db.run_ddl(conn, [_detach_sql(parent_id, table, DETACH_PLAIN)],
                          what=f"detach {plan.table_schema}.{plan.table_name}", policy=policy).attempts
    if conninfo is None:
        raise ValueError("a concurrent detach needs conninfo (it runs on its own autocommit session)")
    return _detach_concurrently(conninfo, parent_id, table, plan.table_oid, plan.detach_mode, policy)


class _ChangedAfterDetach(Exception):
    def __init__(self, counted: Fingerprint):
        self.counted = counted


def apply_retirement(
    conn: psycopg.Connection,
    store: BackupStore,
    plan: RetirementPlan,
    *,
    conninfo: Optional[str] = None,
    policy: db.LockRetryPolicy = db.LockRetryPolicy(),
) -> RetirementResult:
    """Carry out ``plan``. Call with the table's maintenance lock held (``retire_month`` and
    ``recovery`` do). ``conninfo`` is needed for a concurrent detach only."""
    started = time.monotonic()
    if plan.status == "refused":
        raise RetentionRefused(plan.refusal)
    if not plan.changes_something:
        return RetirementResult(plan, None, None, 0, None, 0, round(time.monotonic() - started, 3))
    database, parent, month, key = conn.info.dbname, plan.parent, plan.month, plan.store_key
    m = plan.backup.manifest
    record = {"table_oid": plan.table_oid, "table": f"{plan.table_schema}.{plan.table_name}",
              "backup_generation": plan.backup.name, "detach_mode": plan.detach_mode,
              "action": plan.policy.action, "archive_schema": plan.policy.archive_schema,
              # whose lock scope must finish it (recovery), whatever the search_path
              "root_oid": db.table_lock_scope(conn, parent).objid}
    db.end_read(conn)
    if plan.status == "record-done":
        journal = store.read_retirement(database, key, month) or {}
        archived_as = (f"{plan.table_schema}.{plan.table_name}" if plan.table_name else None)
        store.write_retirement(database, key, month, {
            **journal, "state": "done", "rows": m.rows, "archived_as": archived_as,
            "backup_generation": plan.backup.name,
            "note": "the table was already retired when the journal's last write was made"})
        return RetirementResult(plan, None, plan.policy.action, m.rows, archived_as, 0,
                                round(time.monotonic() - started, 3))
    attempts = 0
    if plan.status == "retire":
        store.write_retirement(database, key, month, {**record, "state": "detaching"})
        attempts = _detach(conn, conninfo, plan, policy)
        store.write_retirement(database, key, month, {**record, "state": "detached"})

    table = sql.Identifier(plan.table_schema, plan.table_name)
    archived_as = (f"{plan.policy.archive_schema}.{plan.table_name}"
                   if plan.policy.action == "archive-schema" else None)
    if archived_as and conn.execute(
            "SELECT to_regclass(format('%%I.%%I', %s::text, %s::text)) IS NOT NULL",
            (plan.policy.archive_schema, plan.table_name)).fetchone()[0]:
        conn.rollback()
        raise RetentionRefused(f"{archived_as} already exists; {plan.table_schema}.{plan.table_name} stays "
                               "detached (rows safe) until that name is free")
    conn.rollback()
    counted: dict = {}

    def recount_then_finish(c: psycopg.Connection) -> None:
        c.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(table))
        if standalone_table(c, plan.table_oid) is None:
            raise RetentionRefused(f"{plan.table_schema}.{plan.table_name} is not a detached table any more")
        counted["now"] = now = fingerprint(c, plan.table_schema, plan.table_name, m.columns)
        if not now.matches(m.rows, m.row_checksum):
            raise _ChangedAfterDetach(now)
        for statement in _finish_sql(table, plan.policy):
            c.execute(statement)

    try:
        db.run_locked(conn, recount_then_finish, what=f"retire {plan.table_schema}.{plan.table_name}",
                      policy=policy)
    except _ChangedAfterDetach as changed:
        attach_month_table(conn, policy_for(conn, parent), plan.table_schema, plan.table_name, month, policy)
        store.clear_retirement(database, key, month)
        raise RetentionRefused(
            f"{plan.table_schema}.{plan.table_name} held {changed.counted.rows} rows (checksum "
            f"{changed.counted.checksum}) after the detach but the backup {plan.backup.name} holds {m.rows} "
            f"({m.row_checksum}): rows changed since the dump. It was re-attached unchanged: back the month "
            "up again"
        ) from None
    store.write_retirement(database, key, month, {**record, "state": "done", "rows": m.rows,
                                                     "archived_as": archived_as})
    return RetirementResult(plan, plan.detach_mode, plan.policy.action, counted["now"].rows, archived_as,
                            attempts, round(time.monotonic() - started, 3))


def retire_month(
    conn: psycopg.Connection,
    store: BackupStore,
    *,
    conninfo: str,
    parent: str = "event_logs",
    month: date,
    policy: RetentionPolicy,
    today: date,
    dry_run: bool = False,
    retry: db.LockRetryPolicy = db.LockRetryPolicy(),
) -> RetirementResult | RetirementPlan:
    """Take the table (``recovery.table_maintenance``: its lock scope, then the repair of
    interrupted jobs, which may finish this very month), plan, then apply; a dry run returns
    the plan (refused or not) and changes nothing. Applying a refused plan raises
    ``RetentionRefused``."""
    if dry_run:
        return plan_retirement(conn, store, parent=parent, month=month, policy=policy, today=today)
    with recovery.table_maintenance(conn, parent, store=store, retry=retry) as recovered:
        finished = recovered.retired.get((parent, month_start(month)))
        if finished is not None:  # taking the table finished this very month
            finished.plan.cutoff = policy.cutoff(today)
        else:
            plan = plan_retirement(conn, store, parent=parent, month=month, policy=policy, today=today)
            finished = apply_retirement(conn, store, plan, conninfo=conninfo, policy=retry)
    return dataclasses.replace(finished, recovery=recovered)


def attached_past_retention(
    conn: psycopg.Connection, policy: RetentionPolicy, today: date, parent: str = "event_logs"
) -> list[Partition]:
    """Partitions of ``parent`` still attached although their month is past retention
    (read from the catalog bounds): the backlog the retention schedule has not retired."""
    cutoff = policy.cutoff(today)
    return [p for p in list_partitions(conn, parent) if p.lower_month() is not None and p.lower_month() < cutoff]
