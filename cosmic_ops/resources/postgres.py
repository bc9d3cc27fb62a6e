"""The managed PostgreSQL database as a Dagster resource."""

from __future__ import annotations

import contextlib
import os
from typing import Iterator, Optional

import dagster as dg
import psycopg
from pydantic import Field

from .. import db, settings
from ..embedded import resolve_conninfo


_PG_DURATION = r"^[0-9]+(us|ms|s|min|h|d)?$"


class PostgresResource(dg.ConfigurableResource):
    """Sessions on the managed database.

    ``database_url`` comes from ``EnvVar("COSMIC_OPS_DATABASE_URL")``, so the UI
    shows the variable's name, never its value; when it is unset the embedded
    server of the project is started (or reused).
    """

    database_url: Optional[str] = Field(
        default=None, description="libpq URI of the managed database; unset: embedded PostgreSQL"
    )
    application_name: str = "cosmic_ops"
    # A PostgreSQL duration without spaces: the value goes into the session's startup options.
    lock_timeout: str = Field(default="5s", pattern=_PG_DURATION, description="session default for maintenance")
    statement_timeout: str = Field(default="30min", pattern=_PG_DURATION,
                                   description="session default for maintenance")

    def conninfo(self) -> str:
        return resolve_conninfo(self.database_url)

    def describe(self) -> str:
        """Where we connect, password removed: fit for metadata and logs."""
        return db.redact(self.conninfo())

    def session_spec(self, purpose: str = "") -> db.SessionSpec:
        """How to open a session like ``connect`` does, as a value a worker process can use."""
        name = f"{self.application_name}:{purpose}" if purpose else self.application_name
        return db.SessionSpec(self.conninfo(), application_name=name[:63], lock_timeout=self.lock_timeout,
                              statement_timeout=self.statement_timeout)

    @contextlib.contextmanager
    def connect(self, *, autocommit: bool = True, purpose: str = "") -> Iterator[psycopg.Connection]:
        conn = self.session_spec(purpose).connect(autocommit=autocommit)
        try:
            yield conn
        finally:
            conn.close()


def postgres_from_env() -> PostgresResource:
    """The resource as ``definitions.py`` wires it: the env var when set, else embedded."""
    if os.environ.get(settings.DATABASE_URL_ENV):
        return PostgresResource(database_url=dg.EnvVar(settings.DATABASE_URL_ENV))
    return PostgresResource()
