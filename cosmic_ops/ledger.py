"""The month ledger: every month of a table ever managed, with its whole life, read from the
records the tool already writes -- never from a copy of its own that could drift:

- the catalog: which months are attached now, their bounds, rows (estimate) and bytes;
- the backup store: each backup generation's manifest (file, bytes, sha256, rows, bounds) and
  verification record (rows the scratch restore counted, when, how), the retention journal
  (when and how the month was retired, the rows and the generation the proof rested on) and
  the restore record (when a month came back, from which generation);
- ``records``: what the orchestrator recorded about the month's partition (the Dagster layer
  passes the materializations of ``event_log_partitions``: when a month was created, by which
  run, with which bounds). Plain data here: this module knows nothing of Dagster.

It answers "which backup does the retired month 2025-03 depend on, and did its restore test
count the same rows we dropped?" in one row: ``relied_on_generation`` / ``relied_on_sha256``,
``rows_at_retirement`` and ``restore_test_rows`` (``restore_test_equal``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Iterable, Optional

import psycopg

from .backups.store import BackupStore, Generation, sha256_of
from .db import LockRetryPolicy
from .partitions.catalog import list_partitions
from .partitions.maintain import read_with_retry
from .recovery import RETIRING_STATES
from .retention import standalone_table

ATTACHED = "attached"
RETIRED = "retired"
RETIRING = "retiring"  # a retirement journal says detaching/detached: the next job on the table finishes it
MISSING = "missing"  # recorded once, now neither attached nor retired by us


@dataclass(frozen=True)
class PartitionRecord:
    """One record of the month's partition kept by the orchestrator (a materialization)."""

    month: date
    at: datetime
    run_id: Optional[str] = None
    created: Optional[bool] = None  # the record says a partition was created
    created_names: Optional[tuple[str, ...]] = None  # the partitions its run created, when it lists them
    partition: Optional[str] = None
    lower_bound: Optional[str] = None
    upper_bound: Optional[str] = None
    source: str = "event_log_partitions"

    def created_month(self, partition_name: Optional[str]) -> bool:
        """Whether this record is the creation of the month (whose partition is ``partition_name``).
        A ranged run that lists the partitions it created counts for those months only."""
        if not self.created:
            return False
        if self.created_names is None:
            return True
        if partition_name is None:
            return len(self.created_names) == 1
        return _bare(partition_name) in {_bare(name) for name in self.created_names}


def _bare(name: str) -> str:
    return name.rsplit(".", 1)[-1]


@dataclass(frozen=True)
class GenerationEntry:
    """One backup generation of a month, as its manifest and verification record say."""

    month: date
    generation: str
    file: str
    file_present: bool
    bytes: int
    sha256: str
    rows: Optional[int]
    created_at: str
    verified: bool
    verified_rows: Optional[int]
    verified_at: Optional[str]
    verification: str  # method, or why it failed, or "never verified"
    lower_bound: Optional[str] = None  # of the partition it was dumped from (manifests since the ledger)
    upper_bound: Optional[str] = None

    @classmethod
    def of(cls, month: date, generation: Generation) -> "GenerationEntry":
        m, v = generation.manifest, generation.verification
        if v is None:
            verification = "never verified"
        elif generation.verified:
            verification = v.method
        else:
            verification = f"failed: {v.error or 'rows or checksum differ'}"
        return cls(month=month, generation=generation.name, file=str(generation.file),
                   file_present=generation.file.exists(), bytes=m.bytes, sha256=m.sha256, rows=m.rows,
                   created_at=m.created_at, verified=generation.verified,
                   verified_rows=v.rows if v else None, verified_at=v.checked_at if v else None,
                   verification=verification, lower_bound=m.lower_bound, upper_bound=m.upper_bound)


@dataclass(frozen=True)
class Retirement:
    """What the retention journal says about the month's (last) retirement."""

    state: str
    at: Optional[str]
    action: Optional[str]
    archived_as: Optional[str]
    archive_present: Optional[bool]  # archive-schema: the archived table is still there
    rows: Optional[int]
    relied_on: Optional[str]  # the generation the proof rested on
    relied_on_entry: Optional[GenerationEntry]

    @property
    def how(self) -> str:
        if self.action == "archive-schema":
            return f"archive-schema ({self.archived_as or 'not yet moved'})"
        return self.action or ""

    @property
    def restore_test_equal(self) -> Optional[bool]:
        """Did the scratch restore of the relied-on backup count the rows that were retired?"""
        entry = self.relied_on_entry
        if self.rows is None or entry is None:
            return None
        return entry.verified and entry.verified_rows == self.rows


@dataclass(frozen=True)
class Restore:
    at: str
    generation: str
    sha256: Optional[str]
    rows: Optional[int]
    table: str
    attached: bool


@dataclass
class MonthEntry:
    month: date
    state: str
    partition: Optional[str] = None
    lower_bound: Optional[str] = None
    upper_bound: Optional[str] = None
    created_at: Optional[str] = None
    created_by: str = ""
    first_recorded_at: Optional[str] = None
    rows: Optional[int] = None
    rows_basis: str = ""
    bytes: Optional[int] = None
    generations: list[GenerationEntry] = field(default_factory=list)
    retirement: Optional[Retirement] = None
    restores: list[Restore] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def newest_generation(self) -> Optional[GenerationEntry]:
        return self.generations[0] if self.generations else None

    @property
    def newest_verified(self) -> Optional[GenerationEntry]:
        return next((g for g in self.generations if g.verified), None)


@dataclass
class Ledger:
    table: str
    months: list[MonthEntry]

    @property
    def generations(self) -> list[GenerationEntry]:
        return [g for m in self.months for g in m.generations]

    def month(self, month: date) -> Optional[MonthEntry]:
        return next((m for m in self.months if m.month == month), None)

    def count(self, state: str) -> int:
        return sum(1 for m in self.months if m.state == state)

    @property
    def problems(self) -> list[str]:
        return [f"{m.month:%Y-%m}: {p}" for m in self.months for p in m.problems]


def build_ledger(conn: psycopg.Connection, store: BackupStore, *, parent: str = "event_logs",
                 records: Iterable[PartitionRecord] = (), retry: LockRetryPolicy = LockRetryPolicy()) -> Ledger:
    """The ledger of ``parent``'s months. Reads only (catalog reads under lock_timeout with retries)."""
    database = conn.info.dbname
    attached = read_with_retry(conn, lambda c: _attached_months(c, parent), what="read the months", retry=retry)
    by_month: dict[date, list[PartitionRecord]] = {}
    for record in sorted(records, key=lambda r: r.at):
        by_month.setdefault(record.month, []).append(record)
    months = sorted(set(attached) | set(store.months(database, parent)) | set(by_month))
    entries = []
    for month in months:
        entry = _entry(conn, store, database, parent, month, attached.get(month), by_month.get(month, []))
        entries.append(entry)
    if not conn.autocommit:
        conn.rollback()
    return Ledger(table=parent, months=entries)


def _attached_months(conn: psycopg.Connection, parent: str) -> dict[date, dict]:
    """Month -> name, bounds, rows estimate, bytes of each attached monthly partition."""
    partitions = [p for p in list_partitions(conn, parent) if not p.is_default and p.lower_month() is not None]
    sizes = dict((oid, (rows, size)) for oid, rows, size in conn.execute(
        "SELECT oid::bigint, reltuples::bigint, pg_total_relation_size(oid) FROM pg_class WHERE oid = ANY(%s)",
        ([p.oid for p in partitions],)).fetchall())
    found = {}
    for p in partitions:
        rows, size = sizes.get(p.oid, (None, None))
        found[p.lower_month()] = {"partition": f"{p.schema}.{p.name}", "lower": p.lower.isoformat(),
                                  "upper": p.upper.isoformat() if p.upper is not None else None,
                                  # reltuples is -1 until the first VACUUM/ANALYZE
                                  "rows": max(int(rows), 0) if rows is not None else None,
                                  "bytes": int(size) if size is not None else None}
    return found


def _entry(conn: psycopg.Connection, store: BackupStore, database: str, parent: str, month: date,
           now: Optional[dict], records: list[PartitionRecord]) -> MonthEntry:
    generations = [GenerationEntry.of(month, g) for g in store.month_generations(database, parent, month)]
    journal = store.read_retirement(database, parent, month)
    entry = MonthEntry(month=month, state=MISSING, generations=generations,
                       restores=[_restore(r) for r in store.read_restores(database, parent, month)])
    if journal is not None:
        entry.retirement = _retirement(conn, journal, generations)
    if now is not None:
        entry.state = ATTACHED
        entry.partition, entry.lower_bound, entry.upper_bound = now["partition"], now["lower"], now["upper"]
        entry.rows, entry.rows_basis, entry.bytes = now["rows"], "estimate (pg_class)", now["bytes"]
    elif journal is not None and journal.get("state") == "done":
        entry.state = RETIRED
    elif journal is not None and journal.get("state") in RETIRING_STATES:
        entry.state = RETIRING
    _fill_from_records(entry, generations, journal, records)
    _find_problems(entry)
    return entry


def _retirement(conn: psycopg.Connection, journal: dict, generations: list[GenerationEntry]) -> Retirement:
    relied_on = journal.get("backup_generation")
    archive_present = None
    if journal.get("action") == "archive-schema" and journal.get("state") == "done" and journal.get("table_oid"):
        found = standalone_table(conn, journal["table_oid"])
        archive_present = found is not None and found[0] == journal.get("archive_schema")
    return Retirement(
        state=journal.get("state", ""), at=journal.get("updated_at") if journal.get("state") == "done" else None,
        action=journal.get("action"), archived_as=journal.get("archived_as"), archive_present=archive_present,
        rows=journal.get("rows"), relied_on=relied_on,
        relied_on_entry=next((g for g in generations if g.generation == relied_on), None))


def _restore(record: dict) -> Restore:
    return Restore(at=record.get("restored_at", ""), generation=record.get("generation", ""),
                   sha256=record.get("sha256"), rows=record.get("rows"), table=record.get("table", ""),
                   attached=bool(record.get("attached")))


def _fill_from_records(entry: MonthEntry, generations: list[GenerationEntry], journal: Optional[dict],
                       records: list[PartitionRecord]) -> None:
    """Name and bounds of a month no longer attached, rows at retirement, creation and first record."""
    if entry.partition is None:
        entry.partition = (journal or {}).get("table") or next(
            (r.partition for r in reversed(records) if r.partition), None)
    bounded_backup = next((g for g in generations if g.lower_bound), None)
    if entry.lower_bound is None and bounded_backup is not None:
        entry.lower_bound, entry.upper_bound = bounded_backup.lower_bound, bounded_backup.upper_bound
    if entry.lower_bound is None:
        bounded = next((r for r in records if r.lower_bound), None)
        if bounded is not None:
            entry.lower_bound, entry.upper_bound = bounded.lower_bound, bounded.upper_bound
    if entry.state != ATTACHED and entry.retirement is not None and entry.retirement.rows is not None:
        entry.rows, entry.rows_basis = entry.retirement.rows, "at retirement (journal)"
    if records:
        entry.first_recorded_at = records[0].at.isoformat()
    creation = next((r for r in records if r.created_month(entry.partition)), None)
    if creation is not None:
        entry.created_at = creation.at.isoformat()
        entry.created_by = f"{creation.source} run {creation.run_id[:8]}" if creation.run_id else creation.source
    elif records:
        entry.created_by = "before its first record"  # by the demo load, or outside cosmic_ops
    else:
        entry.created_by = "not recorded"


def _find_problems(entry: MonthEntry) -> None:
    r = entry.retirement
    if entry.state == MISSING:
        entry.problems.append("neither attached nor retired by cosmic_ops (dropped or detached by hand?)")
    if entry.state == RETIRING:
        entry.problems.append(f"retirement interrupted (journal {r.state!r}): the next job on the table "
                              "finishes it with the proof or attaches the month again")
    if r is None or r.state != "done":
        return
    if r.relied_on_entry is None:
        entry.problems.append(f"the backup its retirement relied on ({r.relied_on}) is no longer in the store")
    elif not r.relied_on_entry.file_present:
        entry.problems.append(f"the file of the backup its retirement relied on ({r.relied_on}) is missing")
    elif r.restore_test_equal is False:
        entry.problems.append(f"the restore test of {r.relied_on} counted {r.relied_on_entry.verified_rows} rows; "
                              f"{r.rows} were retired")
    if entry.state == RETIRED and r.action == "archive-schema" and r.archive_present is False:
        entry.problems.append(f"the archived table {r.archived_as} is gone")
    if entry.state == ATTACHED and not any(x.attached for x in entry.restores):
        entry.problems.append("attached again although its journal says retired, and no restore is recorded")


def verify_retired_backups(store: BackupStore, ledger: Ledger) -> tuple[list[str], int]:
    """Re-hash the backup each dropped month relied on (its only copy): the problems found and the
    number of files hashed."""
    problems, hashed = [], 0
    for entry in ledger.months:
        r = entry.retirement
        if entry.state != RETIRED or r is None or r.action != "drop":
            continue
        g = r.relied_on_entry
        if g is None or not g.file_present:
            problems.append(f"{entry.month:%Y-%m}: the backup it relied on ({r.relied_on}) is missing")
            continue
        hashed += 1
        if sha256_of(Path(g.file)) != g.sha256:
            problems.append(f"{entry.month:%Y-%m}: {g.file} no longer hashes to its manifest's sha256 {g.sha256}")
        elif not r.restore_test_equal:
            problems.append(f"{entry.month:%Y-%m}: the restore test of {g.generation} counted {g.verified_rows} "
                            f"rows; {r.rows} were retired")
    return problems, hashed
