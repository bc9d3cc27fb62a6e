"""The operator's command line on a real server."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from cosmic_ops import cli, db, schema, settings


@pytest.mark.slow
def test_db_init_and_demo_load_commands(fresh_database):
    env = {settings.DATABASE_URL_ENV: fresh_database, "PATH": ""}
    run = [sys.executable, "-m", "cosmic_ops.cli"]
    init = subprocess.run(run + ["db", "init"], env=env, capture_output=True, text=True)
    applied = ", ".join(str(m.version) for m in schema.MIGRATIONS)
    assert init.returncode == 0, init.stderr
    assert f"schema version {schema.LATEST_VERSION} (applied {applied})" in init.stdout
    load = subprocess.run(run + ["demo", "load", "--scale", "small", "--as-of", "2026-11-21"],
                          env=env, capture_output=True, text=True)
    assert load.returncode == 0, load.stderr
    assert "event_logs:    100,000 rows" in load.stdout
    again = subprocess.run(run + ["demo", "load", "--scale", "small"], env=env, capture_output=True, text=True)
    assert again.returncode == 2 and "--replace" in again.stderr
    with db.connect(fresh_database) as conn:
        assert conn.execute("SELECT count(*) FROM event_logs").fetchone()[0] == 100_000


@pytest.mark.slow
def test_dev_decides_the_first_month_before_the_definitions_load(tmp_path):
    # cosmic-ops dev sets COSMIC_OPS_FIRST_MONTH after importing cli and start, and the monthly
    # partitions read it when cosmic_ops.assets.common is imported: neither may import it first.
    check = ("import sys, cosmic_ops.cli, cosmic_ops.start; "
             "assert 'cosmic_ops.assets.common' not in sys.modules, sorted(sys.modules)")
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    first_key = "from cosmic_ops.assets.common import MONTHLY; print(MONTHLY.get_first_partition_key())"
    shown = subprocess.run(
        [sys.executable, "-c", first_key],
        env={**os.environ, settings.FIRST_MONTH_ENV: "2025-10-01"}, capture_output=True, text=True)
    assert shown.stdout.strip() == "2025-10-01", shown.stderr


def test_dev_environment_keeps_a_given_dagster_home_and_storage(monkeypatch, tmp_path):
    monkeypatch.setenv(settings.DAGSTER_HOME_ENV, str(tmp_path))
    monkeypatch.setenv(settings.DAGSTER_STORAGE_URL_ENV, "postgresql+psycopg2://u@h/elsewhere")
    env = cli.prepare_dagster_env("host=/nowhere dbname=unused")  # nothing is created on that server
    assert env["DAGSTER_HOME"] == str(tmp_path)
    assert env[settings.DAGSTER_STORAGE_URL_ENV] == "postgresql+psycopg2://u@h/elsewhere"


@pytest.mark.slow
def test_db_stop_leaves_a_configured_server_alone(fresh_database):
    env = {**os.environ, settings.DATABASE_URL_ENV: fresh_database}
    done = subprocess.run([sys.executable, "-m", "cosmic_ops.cli", "db", "stop"], env=env, capture_output=True,
                          text=True)
    assert done.returncode == 2 and "not ours to stop" in done.stderr
    with db.connect(fresh_database) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
