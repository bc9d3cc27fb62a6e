"""Backups of the managed database: per-month dumps, full parallel dumps, verification
by scratch restore, restore of a month, PITR readiness. Plain Python over psycopg."""

from ..fingerprint import Fingerprint, fingerprint, table_columns
from .full import FullBackupResult, full_backup, verify_full_backup
from .month import BackupResult, NoPartitionToBackUp, backup_month
from .pitr import PitrReport, pitr_readiness
from .policy import PolicyError, RetentionPolicy, parse_retention_months
from .restore import RestoreRefused, RestoreResult, newest_proven_generation, restore_month
from .store import BackupStore, BackupStoreError, Generation, Manifest, Verification
from .tools import PgClient, PgClientNotFound, PgToolFailed, client_for, find_client
from .verify import verify_month_backup

__all__ = [
    "BackupResult", "BackupStore", "BackupStoreError", "Fingerprint", "FullBackupResult", "Generation",
    "Manifest", "NoPartitionToBackUp", "PgClient", "PgClientNotFound", "PgToolFailed", "PitrReport",
    "PolicyError", "RestoreRefused", "RestoreResult", "RetentionPolicy", "Verification", "backup_month",
    "client_for", "find_client", "fingerprint", "full_backup", "newest_proven_generation",
    "parse_retention_months", "pitr_readiness", "restore_month", "table_columns", "verify_full_backup",
    "verify_month_backup",
]
