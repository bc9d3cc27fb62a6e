"""``event_log_ledger``: every event_logs month ever managed, with its whole life, as table
metadata (``cosmic_ops.ledger`` builds it from the catalog, the backup store's manifests,
verification records, retention journals and restore records, and the materializations of
``event_log_partitions`` this instance recorded).

Refreshed after every successful run that creates, backs up, retires or restores a month
(``event_log_ledger_sensor``), daily, and by ``cosmic-ops dev`` at start. The check re-hashes
the backup each dropped month relied on: after the drop it is the month's only copy.
"""

from datetime import date, datetime, timezone
from typing import Any, Optional

import dagster as dg

from ..ledger import ATTACHED, MISSING, RETIRED, RETIRING, Ledger, MonthEntry, PartitionRecord, build_ledger
from ..ledger import verify_retired_backups
from ..resources import PostgresResource
from ..resources.backup_store import BackupStoreResource

ASSET_KEY = dg.AssetKey("event_log_ledger")
PARTITIONS = dg.AssetKey("event_log_partitions")
SOURCES = (PARTITIONS, dg.AssetKey("event_log_backups"), dg.AssetKey("event_log_retention"))
RESTORE_JOB = "restore_event_log_month"
PAGE = 1000


def _value(metadata: dict, key: str) -> Any:
    entry = metadata.get(key)
    return getattr(entry, "value", entry)


def partition_records(instance: dg.DagsterInstance) -> list[PartitionRecord]:
    """Every materialization of ``event_log_partitions`` (dry runs left out) as plain records."""
    records, cursor = [], None
    while True:
        page = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=PARTITIONS), limit=PAGE,
                                               cursor=cursor, ascending=True)
        for record in page.records:
            materialization = record.asset_materialization
            if materialization is None or materialization.partition is None:
                continue
            metadata = materialization.metadata
            if _value(metadata, "dry_run") is True:
                continue
            try:
                month = date.fromisoformat(materialization.partition)
            except ValueError:
                continue
            names = _value(metadata, "created_partitions")
            rehomed = _value(metadata, "created_by")
            records.append(PartitionRecord(
                month=month, at=datetime.fromtimestamp(record.timestamp, timezone.utc), run_id=record.run_id,
                created=True if rehomed else _value(metadata, "created"),
                created_names=tuple(names) if isinstance(names, list) else None,
                partition=_value(metadata, "partition"), lower_bound=_value(metadata, "lower_bound"),
                upper_bound=_value(metadata, "upper_bound"),
                source=f"event_log_partitions ({rehomed})" if rehomed else "event_log_partitions"))
        if not page.has_more:
            return records
        cursor = page.cursor


# ---------------------------------------------------------------------------
# metadata


def _month_row(m: MonthEntry) -> dict[str, Any]:
    """One month; the columns that answer "what does this retired month depend on" come first."""
    r, newest = m.retirement, m.newest_generation
    relied = r.relied_on_entry if r else None
    restored = m.restores[-1] if m.restores else None
    return {
        "month": f"{m.month:%Y-%m}",
        "state": m.state,
        "rows": m.rows,
        "rows_basis": m.rows_basis or None,
        "bytes": m.bytes,
        "retired_at": r.at if r else None,
        "retired_how": r.how if r and r.state == "done" else (f"interrupted ({r.state})" if r else None),
        "rows_at_retirement": r.rows if r else None,
        "relied_on_backup": r.relied_on if r else None,
        "relied_on_sha256": relied.sha256 if relied else None,
        "restore_test_rows": relied.verified_rows if relied else None,
        "restore_test_equal": r.restore_test_equal if r else None,
        "restore_test_at": relied.verified_at if relied else None,
        "restored_at": restored.at if restored else None,
        "restored_into": (restored.table + (" (attached)" if restored.attached else "")) if restored else None,
        "backups": len(m.generations),
        "newest_backup": newest.generation if newest else None,
        "newest_backup_verified_rows": newest.verified_rows if newest else None,
        "created_at": m.created_at,
        "created_by": m.created_by,
        "partition": m.partition,
        "lower_bound": m.lower_bound,
        "upper_bound": m.upper_bound,
        "problems": "; ".join(m.problems) or None,
    }


_MONTH_TYPES = {"rows": "int", "bytes": "int", "backups": "int", "newest_backup_verified_rows": "int",
                "rows_at_retirement": "int", "restore_test_rows": "int", "restore_test_equal": "bool"}


def _generation_row(g) -> dict[str, Any]:
    return {"month": f"{g.month:%Y-%m}", "generation": g.generation, "file": g.file, "file_present": g.file_present,
            "bytes": g.bytes, "sha256": g.sha256, "rows": g.rows, "verified": g.verified,
            "verified_rows": g.verified_rows, "verified_at": g.verified_at, "verification": g.verification,
            "backed_up_at": g.created_at}


_GENERATION_TYPES = {"file_present": "bool", "bytes": "int", "rows": "int", "verified": "bool",
                     "verified_rows": "int"}


def _table(rows: list[dict[str, Any]], types: dict[str, str], columns: list[str]) -> dg.TableMetadataValue:
    return dg.MetadataValue.table(
        records=[dg.TableRecord(row) for row in rows],
        schema=dg.TableSchema(columns=[dg.TableColumn(name, types.get(name, "string")) for name in columns]))


def _minute(iso: Optional[str]) -> str:
    return f"{datetime.fromisoformat(iso).astimezone(timezone.utc):%Y-%m-%d %H:%M} UTC" if iso else ""


def _retired_markdown(ledger: Ledger) -> str:
    """One line per retired (or once retired) month: whether the restore test of the backup it
    depends on counted the rows that were retired, and that backup (the sha256 last: it is long)."""
    lines = ["| month | retired at | how | rows retired | restore test rows | equal | relies on backup | sha256 | "
             "restored |", "|---|---|---|---|---|---|---|---|---|"]
    for m in ledger.months:
        r = m.retirement
        if r is None:
            continue
        g = r.relied_on_entry
        restored = ", ".join(f"{_minute(x.at)} into {x.table}" for x in m.restores)
        equal = {True: "yes", False: "**NO**", None: "unknown"}[r.restore_test_equal]
        lines.append(f"| {m.month:%Y-%m} | {_minute(r.at) or r.state} | {r.how} | {r.rows} | "
                     f"{g.verified_rows if g else ''} | {equal} | {r.relied_on} | "
                     f"`{g.sha256 if g else 'missing'}` | {restored} |")
    return "\n".join(lines) if len(lines) > 2 else "no month was ever retired"


def ledger_metadata(ledger: Ledger) -> dict[str, Any]:
    months = [_month_row(m) for m in ledger.months]
    generations = [_generation_row(g) for g in ledger.generations]
    problems = ledger.problems
    return {
        "dagster/row_count": len(months),
        "retired_months": dg.MetadataValue.md(_retired_markdown(ledger)),
        "problems": dg.MetadataValue.md("\n".join(f"- {p}" for p in problems) or "none"),
        "months_attached": ledger.count(ATTACHED),
        "months_retired": ledger.count(RETIRED),
        "months_retiring": ledger.count(RETIRING),
        "months_missing": ledger.count(MISSING),
        "months_restored": sum(1 for m in ledger.months if m.restores),
        "generations": len(generations),
        "generations_unverified": sum(1 for g in ledger.generations if not g.verified),
        "months": _table(months, _MONTH_TYPES, list(months[0]) if months else ["month"]),
        "backup_generations": _table(generations, _GENERATION_TYPES,
                                     list(generations[0]) if generations else ["month"]),
    }


# ---------------------------------------------------------------------------
# asset, check, job, sensor, schedule


@dg.asset(
    key=ASSET_KEY,
    group_name="monitoring",
    kinds={"postgres"},
    deps=[dg.AssetDep(key) for key in SOURCES],
    description="Every event_logs month ever managed, with its whole life: created (when, bounds), rows and "
                "bytes, each backup generation (file, sha256, rows, verified rows, when), retired (when, how, "
                "rows, the backup it relied on and whether its restore test counted those rows), restored. "
                "Read from the catalog, the backup store's records and this instance's materializations.",
)
def event_log_ledger(context: dg.AssetExecutionContext, postgres: PostgresResource,
                     backup_store: BackupStoreResource) -> dg.MaterializeResult:
    records = partition_records(context.instance)
    with postgres.connect(purpose="ledger") as conn:
        ledger = build_ledger(conn, backup_store.store(), records=records)
    context.log.info("%d month(s): %d attached, %d retired; %d backup generation(s); %d problem(s)",
                     len(ledger.months), ledger.count(ATTACHED), ledger.count(RETIRED), len(ledger.generations),
                     len(ledger.problems))
    return dg.MaterializeResult(metadata=ledger_metadata(ledger))


@dg.asset_check(
    asset=event_log_ledger,
    name="retired_months_backups_intact",
    description="Each dropped month's backup (its only copy now) is in the store, still hashes to its "
                "manifest's sha256, and its restore test counted the rows that were dropped.",
)
def retired_months_backups_intact(postgres: PostgresResource,
                                  backup_store: BackupStoreResource) -> dg.AssetCheckResult:
    store = backup_store.store()
    with postgres.connect(purpose="ledger check") as conn:
        ledger = build_ledger(conn, store)
    problems, hashed = verify_retired_backups(store, ledger)
    dropped = sum(1 for m in ledger.months if m.state == RETIRED and m.retirement.action == "drop")
    return dg.AssetCheckResult(
        passed=not problems,
        description=(f"{len(problems)} of {dropped} dropped month(s) cannot be restored as retired: "
                     + "; ".join(problems)) if problems
        else f"the backups of all {dropped} dropped month(s) are intact and their restore tests counted the "
             "rows that were dropped",
        metadata={"dropped_months": dropped, "backups_hashed": hashed,
                  "problems": dg.MetadataValue.json(problems)},
    )


event_log_ledger_job = dg.define_asset_job(
    "event_log_ledger_job", selection=dg.AssetSelection.assets(ASSET_KEY),
    executor_def=dg.in_process_executor,
    description="Rebuild the month ledger (and check the retired months' backups).",
)


def touches_months(instance: dg.DagsterInstance, run: dg.DagsterRun) -> bool:
    """A run that may have changed a month's life: it materialized a SOURCE (its checks ran in
    the same run), or it restored a month (an op job: no materialization)."""
    if run.job_name == event_log_ledger_job.name:
        return False
    if run.job_name == RESTORE_JOB:
        return True
    events = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
    return any(e.dagster_event.asset_key in SOURCES for e in events if e.dagster_event)


@dg.run_status_sensor(
    name="event_log_ledger_sensor",
    run_status=dg.DagsterRunStatus.SUCCESS,
    request_job=event_log_ledger_job,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="After a successful run that created, backed up, retired or restored a month, rebuild the ledger.",
)
def event_log_ledger_sensor(context: dg.RunStatusSensorContext) -> Optional[dg.RunRequest]:
    if not touches_months(context.instance, context.dagster_run):
        return None
    return dg.RunRequest(run_key=f"ledger-after-{context.dagster_run.run_id}")


event_log_ledger_daily = dg.ScheduleDefinition(
    name="event_log_ledger_daily", job=event_log_ledger_job, cron_schedule="0 5 * * *",
    execution_timezone="UTC", default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Daily 05:00 UTC: the ledger and the re-hash of retired months' backups, whatever ran.",
)

defs = dg.Definitions(
    assets=[event_log_ledger],
    asset_checks=[retired_months_backups_intact],
    jobs=[event_log_ledger_job],
    sensors=[event_log_ledger_sensor],
    schedules=[event_log_ledger_daily],
)
