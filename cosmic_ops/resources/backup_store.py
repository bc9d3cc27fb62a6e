"""The backup store as a Dagster resource (SPEC §7: ``COSMIC_OPS_BACKUP_DIR``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import dagster as dg
import psycopg
from pydantic import Field

from .. import settings
from ..backups import BackupStore, PgClient, client_for


class BackupStoreResource(dg.ConfigurableResource):
    """Where backups and their manifests live, and which client programs make them.

    ``root`` comes from ``EnvVar("COSMIC_OPS_BACKUP_DIR")`` when the variable is set, and
    must then be an existing folder (it is never created: a typo would scatter backups);
    unset, the git-ignored ``.cosmic_ops/backups`` folder of the project is used (and created).
    """

    root: Optional[str] = Field(default=None, description="backup root directory; unset: project default")
    pg_bin_dir: Optional[str] = Field(
        default=None,
        description="folder holding pg_dump/pg_restore; unset: the closest version >= the server's from "
        "PATH, /usr/lib/postgresql/*/bin and the embedded server",
    )

    def root_dir(self) -> Path:
        return Path(self.root) if self.root else settings.default_backup_dir()

    def store(self) -> BackupStore:
        """The store; a configured root must exist, the project default is created."""
        if self.root:
            return BackupStore(self.root_dir(), must_exist=True)
        root = settings.default_backup_dir()
        root.mkdir(parents=True, exist_ok=True)
        return BackupStore(root)

    def client(self, conn: psycopg.Connection) -> PgClient:
        client = client_for(conn, self.pg_bin_dir)
        if not conn.autocommit:
            conn.rollback()
        return client


def backup_store_from_env() -> BackupStoreResource:
    if os.environ.get(settings.BACKUP_DIR_ENV):
        return BackupStoreResource(root=dg.EnvVar(settings.BACKUP_DIR_ENV))
    return BackupStoreResource()
