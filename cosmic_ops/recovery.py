"""Taking a table for maintenance, and repairing what an interrupted job left on it.

Every job that changes or moves a table's data or structure enters ``table_maintenance``:
it holds the table's one lock scope (``db.maintenance_lock``: the root of its partition
tree, by OID) and then, before the job's own work, ``recover`` puts the tree back in the
state every job expects, so whichever job runs next on the table heals it:

- A partition left "detach pending" by an interrupted ``DETACH ... CONCURRENTLY`` (inserts
  for its range fail meanwhile) is finalized. When no retirement journal explains the
  detach, the partition is attached again with the bound it had, in the same transaction:
  nothing leaves a table outside its tree without a record of why.
- A month whose retirement was interrupted (journal ``detaching`` or ``detached``; this
  needs the backup store) is finished when the proof holds -- a verified backup whose file
  still hashes to its manifest, with the row count and checksum of the table, compared
  under ACCESS EXCLUSIVE as retention does -- and attached again otherwise. Nothing is
  dropped without that proof.
- An online move (``online``: a DEFAULT split, a re-split) interrupted before its swap is
  undone (its source still holds every row); one interrupted after its swap is finished
  (the old table, proven copied, is dropped).
- A month whose table is gone while its journal never said ``done`` (killed just before
  that write) is recorded done when a verified, intact backup of it exists; without one it
  is left as it is, reported, and retention refuses the month.

A month that cannot be repaired is reported, not raised: one broken month must not stop
the job's own work on the rest of the table (SPEC §4).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional

import psycopg
from psycopg import sql

from . import db, online
from .backups.store import BackupStore
from .partitions.catalog import partition_for_month

if TYPE_CHECKING:
    from . import retention

# Every job imports this module to take its tables, the partition and backup code included,
# so it imports nothing of theirs at load: retention (which itself takes tables through here)
# and the attach helper are imported where an interrupted retirement is finished or undone.

RETIRING_STATES = ("detaching", "detached")

_PENDING_DETACHES_SQL = """
SELECT p.oid::bigint, pn.nspname, p.relname, c.oid::bigint, cn.nspname, c.relname,
       pg_get_expr(c.relpartbound, c.oid)
FROM pg_inherits i
JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace pn ON pn.oid = p.relnamespace
JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_namespace cn ON cn.oid = c.relnamespace
WHERE i.inhdetachpending
  AND i.inhparent IN (SELECT relid FROM pg_partition_tree(%s::oid) WHERE NOT isleaf)
ORDER BY c.oid
"""


@dataclass
class Recovery:
    """What ``recover`` found and did. ``retired``: retirements it finished, by (table, month)."""

    actions: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    retired: dict[tuple[str, date], Any] = field(default_factory=dict)

    @property
    def lines(self) -> list[str]:
        return self.actions + self.problems

    def tell(self, log: Optional[Callable[[str], None]]) -> None:
        """Each repair and problem to ``log`` (a job's progress or log callback)."""
        for line in self.lines if log else ():
            log(line)

    def metadata(self) -> dict[str, list[str]]:
        """For a run's metadata: empty when there was nothing to repair."""
        shown = {"recovered": self.actions, "recovery_problems": self.problems}
        return {key: value for key, value in shown.items() if value}


@contextlib.contextmanager
def table_maintenance(
    conn: psycopg.Connection,
    *tables: str | int,
    store: Optional[BackupStore] = None,
    wait_s: float = 0.0,
    retry: db.LockRetryPolicy = db.LockRetryPolicy(),
) -> Iterator[Recovery]:
    """THE way a job takes its tables: hold each table's lock scope, then ``recover`` them.

    Raises ``MaintenanceLockBusy`` (naming the holder) when another run holds a scope for
    longer than ``wait_s``. Without ``store`` only the catalog can be repaired (pending
    detaches); interrupted retirements wait for a job that has the store.
    """
    db.end_read(conn)
    with db.maintenance_lock(conn, *tables, wait_s=wait_s) as scopes:
        yield recover(conn, scopes, store=store, retry=retry)


def recover(conn: psycopg.Connection, scopes: tuple[db.LockScope, ...], *, store: Optional[BackupStore] = None,
            retry: db.LockRetryPolicy = db.LockRetryPolicy()) -> Recovery:
    """Repair the partition trees of ``scopes`` (held by this session). See the module docstring."""
    report = Recovery()
    for scope in scopes:
        if scope.classid != db.ADVISORY_LOCK_CLASS or not scope.partitioned:
            continue
        try:  # online moves first: a half-done move must not be mistaken for anything else
            report.actions += online.recover_moves(conn, scope.objid, retry)
        except db.LockRetriesExhausted as exc:
            report.problems.append(str(exc))
        journals = list(_journals(conn, store, scope)) if store is not None else []
        journalled = {record.get("table_oid") for _, _, record in journals}
        try:
            pending_detaches = _pending_detaches(conn, scope, retry)
        except db.LockRetriesExhausted as exc:
            report.problems.append(str(exc))
            pending_detaches = []
        for pending in pending_detaches:
            _finalize(conn, pending, reattach=pending[3] not in journalled, report=report, retry=retry)
        for folder, month, record in journals:
            _resume_retirement(conn, store, scope, folder, month, record, report, retry)
    db.end_read(conn)
    return report


def _journals(conn: psycopg.Connection, store: BackupStore, scope: db.LockScope):
    """Unfinished retirement journals of ``scope``'s table: (table as the jobs named it, month, record)."""
    for folder, month, record in store.retirement_journals(conn.info.dbname):
        if record.get("state") not in RETIRING_STATES:
            continue
        root = record["root_oid"] if "root_oid" in record else _names(conn, folder)  # older journals
        if root == scope.objid:
            yield folder, month, record


def _names(conn: psycopg.Connection, text: str) -> Optional[int]:
    """The OID ``text`` resolves to as a table name, as the job that wrote the journal resolved it."""
    try:
        with conn.transaction():
            return conn.execute("SELECT to_regclass(%s)::oid::bigint", (text,)).fetchone()[0]
    except psycopg.Error:  # not a name at all ("x-1f2e...", a store folder of an odd name)
        return None


def _pending_detaches(conn: psycopg.Connection, scope: db.LockScope, retry: db.LockRetryPolicy) -> list[tuple]:
    found: list[tuple] = []
    # pg_get_expr takes ACCESS SHARE on the partition: under lock_timeout, with retries.
    db.run_locked(conn, lambda c: found.extend(c.execute(_PENDING_DETACHES_SQL, (scope.objid,)).fetchall()),
                  what=f"read pending detaches of {scope.name}", policy=retry)
    return found


def _finalize(conn: psycopg.Connection, pending: tuple, *, reattach: bool, report: Recovery,
              retry: db.LockRetryPolicy) -> None:
    _, parent_schema, parent_name, _, schema, name, bound = pending
    parent, table = sql.Identifier(parent_schema, parent_name), sql.Identifier(schema, name)
    statements = [sql.SQL("ALTER TABLE {} DETACH PARTITION {} FINALIZE").format(parent, table)]
    if reattach:
        # The bound as PostgreSQL rendered it from the catalog in this very session (same
        # TimeZone), so the partition comes back exactly as it was.
        statements.append(sql.SQL("ALTER TABLE {} ATTACH PARTITION {} {}").format(parent, table, sql.SQL(bound)))
    shown = f"{schema}.{name}"
    try:
        db.run_ddl(conn, statements, what=f"finalize the pending detach of {shown}", policy=retry)
    except db.LockRetriesExhausted as exc:
        report.problems.append(str(exc))
        return
    report.actions.append(
        f"finalized the interrupted DETACH CONCURRENTLY of {shown} from {parent_schema}.{parent_name}"
        + ("; no retirement journal explains it, so it was attached again with its bound" if reattach else ""))


def _resume_retirement(conn: psycopg.Connection, store: BackupStore, scope: db.LockScope, folder: str, month: date,
                       record: dict[str, Any], report: Recovery, retry: db.LockRetryPolicy) -> None:
    """Finish (with proof) or undo one interrupted retirement. SQL names the table by its
    scope (schema-qualified); the store by the folder the job wrote."""
    from . import retention
    parent = sql.Identifier(scope.schema, scope.table).as_string(conn)
    oid, shown = record.get("table_oid"), record.get("table", f"{parent} {month:%Y-%m}")
    attached = partition_for_month(conn, parent, month)
    db.end_read(conn)
    if attached is not None:
        if attached.oid == oid:  # the run died before its detach took effect
            store.clear_retirement(conn.info.dbname, folder, month)
            report.actions.append(f"{shown} is attached although its retirement journal said "
                                  f"{record.get('state')!r}: the detach never happened; journal cleared")
        else:
            report.problems.append(f"the retirement journal of {parent} {month:%Y-%m} names OID {oid} but "
                                   f"{attached.schema}.{attached.name} is attached for that month: inspect it by hand")
        return
    policy = retention.journal_policy(record)
    plan = retention.plan_journalled(conn, store, parent=parent, store_table=folder, month=month, journal=record,
                                     policy=policy or retention.RetentionPolicy())
    if policy is None and plan.status == "resume":
        plan = retention.refuse(plan, f"the journal of {shown} does not say how to retire it")
    if plan.changes_something:
        try:
            result = retention.apply_retirement(conn, store, plan, policy=retry)
        except (retention.RetentionRefused, db.LockRetriesExhausted) as refused:
            _reattach(conn, store, plan, str(refused), report, retry)
            return
        report.retired[(folder, month)] = result
        report.actions.append(f"finished the interrupted retirement of {shown} ({plan.status}): "
                              f"{result.rows_retired} rows, proof {plan.backup.name}")
        return
    _reattach(conn, store, plan, plan.refusal or plan.status, report, retry)


def _reattach(conn: psycopg.Connection, store: BackupStore, plan: "retention.RetirementPlan", why: str,
              report: Recovery, retry: db.LockRetryPolicy) -> None:
    """Undo a retirement that cannot be finished: the table goes back into the tree."""
    from . import retention
    from .partitions import attach_month_table, policy_for
    if plan.table_oid is None or retention.standalone_table(conn, plan.table_oid) is None:
        db.end_read(conn)
        report.problems.append(why)  # gone without proof, or already put back by apply
        return
    db.end_read(conn)
    try:
        attach_month_table(conn, policy_for(conn, plan.parent), plan.table_schema, plan.table_name, plan.month, retry)
    except (db.LockRetriesExhausted, psycopg.Error) as exc:
        if not conn.autocommit:
            conn.rollback()
        report.problems.append(f"{plan.table_schema}.{plan.table_name} stays detached (rows safe): {why}; "
                               f"attaching it again failed: {exc}")
        return
    store.clear_retirement(conn.info.dbname, plan.store_key, plan.month)
    report.actions.append(f"attached {plan.table_schema}.{plan.table_name} to {plan.parent} again: its interrupted "
                          f"retirement cannot be finished ({why})")
