"""Names and folders the operators rely on (SPEC §7)."""

from __future__ import annotations

import os
from pathlib import Path

DATABASE_URL_ENV = "COSMIC_OPS_DATABASE_URL"
BACKUP_DIR_ENV = "COSMIC_OPS_BACKUP_DIR"
# Where runtime state lives (embedded PostgreSQL data, default backups); git-ignored.
STATE_DIR_ENV = "COSMIC_OPS_STATE_DIR"
# Name of the database, on the managed server, that holds Dagster's own storage.
DAGSTER_STORAGE_DB = "cosmic_ops_dagster"
DAGSTER_STORAGE_URL_ENV = "COSMIC_OPS_DAGSTER_STORAGE_URL"
# First month the monthly partitions list (YYYY-MM-01); `cosmic-ops dev` sets it to the earliest
# month the database or the backup store knows, unless the operator did.
FIRST_MONTH_ENV = "COSMIC_OPS_FIRST_MONTH"
# Dagster's home (its dagster.yaml, local compute logs); unset: dagster_home/ of the checkout.
DAGSTER_HOME_ENV = "COSMIC_OPS_DAGSTER_HOME"

PACKAGE_DIR = Path(__file__).resolve().parent


def project_root() -> Path:
    """The checkout when running from one (editable install), else the working directory."""
    candidate = PACKAGE_DIR.parent
    if (candidate / "pyproject.toml").exists():
        return candidate
    return Path.cwd()


def state_dir() -> Path:
    configured = os.environ.get(STATE_DIR_ENV)
    return Path(configured) if configured else project_root() / ".cosmic_ops"


def embedded_pgdata_dir() -> Path:
    return state_dir() / "pgdata"


def default_backup_dir() -> Path:
    return state_dir() / "backups"


def dagster_home() -> Path:
    configured = os.environ.get(DAGSTER_HOME_ENV)
    return Path(configured) if configured else project_root() / "dagster_home"
