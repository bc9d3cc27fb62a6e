"""The code location: every domain module's definitions plus shared resources.

Each module under ``cosmic_ops.assets`` exports ``defs`` (its assets, checks,
jobs, schedules and sensors); this file only assembles them.
"""

from __future__ import annotations

import dagster as dg

from .assets import archive as archive_assets
from .assets import backups as backup_assets
from .assets import event_logs as event_log_assets
from .assets import layout as layout_assets
from .assets import ledger as ledger_assets
from .assets import monitoring as monitoring_assets
from .assets import resplit as resplit_assets
from .assets import retention as retention_assets
from .assets import saves as save_assets
from .assets import schema as schema_assets
from .resources.backup_store import backup_store_from_env
from .resources.postgres import postgres_from_env

DOMAIN_MODULES = [
    schema_assets,
    event_log_assets,
    monitoring_assets,
    backup_assets,
    retention_assets,
    archive_assets,
    save_assets,
    layout_assets,
    resplit_assets,
    ledger_assets,
]

defs = dg.Definitions.merge(
    *(module.defs for module in DOMAIN_MODULES),
    dg.Definitions(
        resources={"postgres": postgres_from_env(), "backup_store": backup_store_from_env()},
        # Maintenance steps are short DDL / VACUUM statements: run them in the run's own process
        # (no per-step subprocess start-up) unless a job chooses otherwise.
        executor=dg.in_process_executor,
    ),
)
