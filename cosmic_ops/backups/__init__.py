"""Backups of the managed database: per-month dumps, full parallel dumps, verification
by scratch restore, restore of a month, PITR readiness. Plain Python over psycopg.

Names load on first use (PEP 562): every job takes its tables through ``recovery``, which
needs only the store, so importing ``cosmic_ops.backups.store`` must not import the dump,
restore and verification modules (which themselves use the partition code).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Fingerprint": "..fingerprint", "fingerprint": "..fingerprint", "table_columns": "..fingerprint",
    "FullBackupResult": ".full", "full_backup": ".full", "verify_full_backup": ".full",
    "BackupResult": ".month", "NoPartitionToBackUp": ".month", "backup_month": ".month",
    "PitrReport": ".pitr", "pitr_readiness": ".pitr",
    "PolicyError": ".policy", "RetentionPolicy": ".policy", "parse_retention_months": ".policy",
    "RestoreRefused": ".restore", "RestoreResult": ".restore", "newest_proven_generation": ".restore",
    "restore_month": ".restore",
    "BackupStore": ".store", "BackupStoreError": ".store", "Generation": ".store", "Manifest": ".store",
    "Verification": ".store",
    "PgClient": ".tools", "PgClientNotFound": ".tools", "PgToolFailed": ".tools", "client_for": ".tools",
    "find_client": ".tools",
    "verify_month_backup": ".verify",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value
