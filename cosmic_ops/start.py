"""What ``cosmic-ops dev`` (so ``./scripts/start``) does before it serves the UI, as runs of
the product's own named jobs, recorded in the Dagster instance the UI reads:

1. ``cosmic_schema_job``: create or migrate the schema;
2. demo data if the database holds no game data (plain Python: it is not maintenance);
3. ``event_log_partitions_job``, one ranged run over the demo's months and the premake window,
   so each month that exists shows as materialized (once per Dagster instance);
4. ``event_log_retirement_job`` for each demo month already past retention, when this start
   loaded the demo: back up, verify by a scratch restore, retire -- the same verified path
   the retention schedule takes. The demo spans 15 months and retention keeps 12, so without
   it ``nothing_attached_past_retention`` would fail at once while the retention schedule is
   off. A database that already held data is never retired here: that stays the operator's
   decision (the schedule, or a run from the UI), and the check says when it is due;
5. ``monitoring_snapshot_job`` (``partition_sizes``, ``partition_counts``, ``event_logs_table``
   and their checks) and ``event_log_ledger_job``.

The first month the monthly partitions show (``COSMIC_OPS_FIRST_MONTH``) is decided before
the definitions load: the earliest month the database or the backup store knows, else the
demo's first month.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Callable, Optional

from . import db, demo, settings
from .backups.policy import RetentionPolicy
from .backups.store import BackupStore
from .partitions.catalog import list_partitions

EVENT_LOGS = "event_logs"
# The start prints one line per run; each run's whole log is in the UI (and in the instance).
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def backup_root() -> Path:
    """The backup store's folder as the ``backup_store`` resource resolves it."""
    configured = os.environ.get(settings.BACKUP_DIR_ENV)
    return Path(configured) if configured else settings.default_backup_dir()


def _will_get_demo(conn) -> bool:
    if conn.execute("SELECT to_regclass('public.players') IS NULL OR to_regclass('public.event_logs') IS NULL"
                    ).fetchone()[0]:
        return True
    return not conn.execute("SELECT EXISTS (SELECT 1 FROM players) OR EXISTS (SELECT 1 FROM event_logs)"
                            ).fetchone()[0]


def first_month(conninfo: str, scale: str, now: datetime) -> date:
    """The earliest month of event_logs the database (attached partitions) or the backup store
    (backups, retirements, restores) knows; the demo's first month too when the demo is about
    to be loaded."""
    candidates = []
    with db.connect(conninfo, application_name="cosmic_ops:start") as conn:
        if _will_get_demo(conn):
            candidates.append(demo.event_months(demo.SCALES[scale], now.date())[0])
        if conn.execute("SELECT to_regclass('public.event_logs') IS NOT NULL").fetchone()[0]:
            candidates += [p.lower_month() for p in list_partitions(conn, EVENT_LOGS) if p.lower_month()]
        database = conn.info.dbname
    candidates += BackupStore(backup_root()).months(database, EVENT_LOGS)
    return min(candidates) if candidates else demo.event_months(demo.SCALES[scale], now.date())[0]


@dataclass
class StartReport:
    runs: list[tuple[str, str, bool]] = field(default_factory=list)  # (job, what, success)
    demo_loaded: bool = False

    @property
    def ok(self) -> bool:
        return all(success for _, _, success in self.runs)


def bootstrap(instance, *, conninfo: str, scale: str, now: datetime,
              log: Callable[[str], None] = print) -> StartReport:
    """Steps 1-5 of the module docstring against ``instance``; ``now`` is the start's one clock."""
    from .assets.common import as_of_tags
    from .definitions import defs

    report = StartReport()

    def run(job: str, what: str, partition_key: Optional[str] = None, tags: Optional[dict] = None) -> bool:
        result = defs.resolve_job_def(job).execute_in_process(
            instance=instance, partition_key=partition_key, tags={**as_of_tags(now), **(tags or {})},
            run_config=QUIET, raise_on_error=False)
        report.runs.append((job, what, result.success))
        log(f"{job}: {what} ({'ok' if result.success else 'FAILED: see the run in the UI'})")
        return result.success

    if not run("cosmic_schema_job", "schema"):
        return report
    with db.connect(conninfo, application_name="cosmic_ops:demo") as conn:
        try:
            loaded = demo.load(conn, scale, as_of=now.date())
            report.demo_loaded = True
            log(f"demo data: {loaded.total_rows:,d} rows at scale {scale} in {loaded.seconds:.1f}s")
        except demo.DemoDataPresent:
            log("demo data: the database already holds game data, kept as is")
    record_demo_months(instance, scale, now, run)
    if report.demo_loaded:
        retire_demo_backlog(conninfo, now, run, log)
    run("monitoring_snapshot_job", "partition_sizes, partition_counts, event_logs_table")
    run("event_log_ledger_job", "the month ledger")
    return report


def record_demo_months(instance, scale: str, now: datetime, run: Callable[..., bool]) -> None:
    """One ranged ``event_log_partitions_job`` run over the demo's months and the premake window,
    so the UI shows the months that exist (each a no-op but for the future ones) with their
    metadata and checks. Once per Dagster instance."""
    from .assets import event_logs
    from .assets.common import MONTHLY

    if instance.get_materialized_partitions(event_logs.ASSET_KEY):
        return
    first = demo.event_months(demo.SCALES[scale], now.date())[0].isoformat()
    keys = [key for key in MONTHLY.get_partition_keys(current_time=now) if key >= first]
    run("event_log_partitions_job", f"event_log_partitions {keys[0]}..{keys[-1]}",
        tags={event_logs.RANGE_START_TAG: keys[0], event_logs.RANGE_END_TAG: keys[-1]})


def retire_demo_backlog(conninfo: str, now: datetime, run: Callable[..., bool], log: Callable[[str], None]) -> None:
    """Back up, verify and retire each demo month already past retention (the retirement job)."""
    from .assets.common import MONTHLY
    from .retention import attached_past_retention

    policy = RetentionPolicy()
    with db.connect(conninfo, application_name="cosmic_ops:start") as conn:
        overdue = [p.lower_month() for p in attached_past_retention(conn, policy, now.date())]
    for month in overdue:
        key = month.isoformat()
        if not MONTHLY.has_partition_key(key):
            log(f"{month:%Y-%m} is past retention but before COSMIC_OPS_FIRST_MONTH: not retired")
            continue
        run("event_log_retirement_job", f"back up, verify and retire {month:%Y-%m} (past {policy.retention})",
            partition_key=key)
