"""The operator's command line on a real server."""

from __future__ import annotations

import subprocess
import sys

import dagster as dg

from cosmic_ops import cli, db, demo, schema, settings
from cosmic_ops.assets import event_logs
from cosmic_ops.partitions import list_partitions
from cosmic_ops.timeutil import add_months, month_start

from .clock import NOW, TODAY


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


def test_dev_records_the_demo_months_once(new_database, monkeypatch):
    monkeypatch.setenv(settings.DATABASE_URL_ENV, new_database)
    with db.connect(new_database) as conn:
        schema.bootstrap(conn)
        demo.load(conn, "small", as_of=TODAY)
    instance = dg.DagsterInstance.ephemeral()
    cli.record_demo_months(instance, "small", NOW)
    today = TODAY
    first = demo.event_months(demo.SCALES["small"], today)[0]
    expected = {add_months(first, i).isoformat() for i in range(demo.SCALES["small"].months + 3)}
    assert instance.get_materialized_partitions(event_logs.ASSET_KEY) == expected
    with db.connect(new_database) as conn:
        months = {p.lower_month() for p in list_partitions(conn, "event_logs") if not p.is_default}
    assert add_months(month_start(today), 3) in months and len(months) == len(expected)
    runs = len(instance.get_runs())
    cli.record_demo_months(instance, "small", NOW)
    assert len(instance.get_runs()) == runs
