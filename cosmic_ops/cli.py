"""``cosmic-ops``: the operator's command line (SPEC §7)."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import date, datetime, timezone
from pathlib import Path

import psycopg

from . import db, demo, devserver, schema, settings
from .embedded import resolve_conninfo, stop_embedded


def _connect(purpose: str) -> psycopg.Connection:
    return db.connect(resolve_conninfo(), application_name=f"cosmic_ops:{purpose}")


def cmd_db_init(args: argparse.Namespace) -> int:
    with _connect("bootstrap") as conn:
        result = schema.bootstrap(conn)
    state = "applied " + ", ".join(map(str, result.applied)) if result.changed else "already up to date"
    print(f"schema version {result.version_after} ({state})")
    return 0


def cmd_db_url(args: argparse.Namespace) -> int:
    print(db.redact(resolve_conninfo()))
    return 0


def cmd_demo_load(args: argparse.Namespace) -> int:
    # The load's one clock: the operator's --as-of, else today (UTC), decided here once.
    as_of = date.fromisoformat(args.as_of) if args.as_of else datetime.now(timezone.utc).date()
    with _connect("demo") as conn:
        schema.bootstrap(conn)
        try:
            report = demo.load(conn, args.scale, seed=args.seed, as_of=as_of, replace=args.replace)
        except demo.DemoDataPresent as exc:
            print(f"cosmic-ops: {exc}", file=sys.stderr)
            return 2
    for table, rows in report.rows.items():
        print(f"{table:>20}: {rows:>10,d} rows")
    print(f"loaded {report.total_rows:,d} rows in {report.seconds:.1f}s ({report.rows_per_s:,.0f} rows/s)")
    return 0


def ensure_dagster_storage(conninfo: str) -> str:
    """Create Dagster's storage database on the managed server if missing; return its URL."""
    db.ensure_database(conninfo, settings.DAGSTER_STORAGE_DB)
    return db.sqlalchemy_url(conninfo, settings.DAGSTER_STORAGE_DB)


def prepare_dagster_env(conninfo: str) -> dict[str, str]:
    """The environment of the start's runs and of ``dagster dev``: Dagster's home and storage
    (``COSMIC_OPS_DAGSTER_HOME`` / ``COSMIC_OPS_DAGSTER_STORAGE_URL`` when set, else the
    checkout's dagster_home/ and the storage database on the managed server)."""
    env = dict(os.environ)
    env["DAGSTER_HOME"] = str(settings.dagster_home())
    if not env.get(settings.DAGSTER_STORAGE_URL_ENV):
        env[settings.DAGSTER_STORAGE_URL_ENV] = ensure_dagster_storage(conninfo)
    return env


def cmd_dev(args: argparse.Namespace) -> int:
    """Bootstrap through the product's named jobs (``cosmic_ops.start``), then serve the UI."""
    from . import start

    conninfo = resolve_conninfo()
    env = prepare_dagster_env(conninfo)
    now = datetime.now(timezone.utc)  # the start's one clock: demo data, the months it records and retires
    # Decided before the definitions load (the partitions read it at import); an operator's setting wins.
    env.setdefault(settings.FIRST_MONTH_ENV, start.first_month(conninfo, args.scale, now).isoformat())
    os.environ.update(env)
    import dagster as dg

    report = start.bootstrap(dg.DagsterInstance.get(), conninfo=conninfo, scale=args.scale, now=now)
    if not report.runs or not report.runs[0][2]:
        return 1
    print(f"managed database: {db.redact(conninfo)}; months from {env[settings.FIRST_MONTH_ENV][:7]}")
    dagster = Path(sys.executable).with_name("dagster")
    command = [str(dagster), "dev", "-w", str(settings.project_root() / "workspace.yaml"),
               "-h", args.host, "-p", str(args.port)]
    # Stays in front of dagster dev: Ctrl-C or SIGTERM stops its whole process group (devserver).
    code = devserver.serve(command, env)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # nothing left to release; skips seconds of interpreter finalization (devserver)


def cmd_stop(args: argparse.Namespace) -> int:
    if os.environ.get(settings.DATABASE_URL_ENV):
        print(f"{settings.DATABASE_URL_ENV} is set: that server is not ours to stop", file=sys.stderr)
        return 2
    stopped = stop_embedded()
    print(f"embedded PostgreSQL in {settings.embedded_pgdata_dir()}: {'stopped' if stopped else 'not running'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cosmic-ops", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    db_parser = sub.add_parser("db", help="the managed database")
    db_sub = db_parser.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("init", help="create or migrate the schema (idempotent)").set_defaults(func=cmd_db_init)
    db_sub.add_parser("url", help="print the managed database's conninfo, password removed").set_defaults(
        func=cmd_db_url)
    db_sub.add_parser("stop", help="stop the embedded PostgreSQL (it keeps running after ./scripts/start)"
                      ).set_defaults(func=cmd_stop)

    demo_parser = sub.add_parser("demo", help="synthetic game data")
    demo_sub = demo_parser.add_subparsers(dest="demo_command", required=True)
    load = demo_sub.add_parser("load", help="load deterministic demo data with COPY")
    load.add_argument("--scale", choices=sorted(demo.SCALES), default="small")
    load.add_argument("--seed", type=int, default=42)
    load.add_argument("--as-of", help="reference date YYYY-MM-DD (default: today, UTC)")
    load.add_argument("--replace", action="store_true", help="wipe existing game data first")
    load.set_defaults(func=cmd_demo_load)

    dev = sub.add_parser("dev", help="bootstrap, load demo data if empty, start the Dagster UI")
    dev.add_argument("--scale", choices=sorted(demo.SCALES), default="small")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=3000)
    dev.set_defaults(func=cmd_dev)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
