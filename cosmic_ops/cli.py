"""``cosmic-ops``: the operator's command line (SPEC §7)."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import date, datetime, timezone
from pathlib import Path

import psycopg

from . import db, demo, schema, settings
from .embedded import resolve_conninfo


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
    env = dict(os.environ)
    env["DAGSTER_HOME"] = str(settings.dagster_home())
    env[settings.DAGSTER_STORAGE_URL_ENV] = ensure_dagster_storage(conninfo)
    return env


def record_demo_months(instance, scale: str, now: datetime) -> None:
    """Materialize ``event_log_partitions`` over the demo's months and the premake window,
    as one ranged run, so the UI shows the months that exist (each a no-op but for the
    future ones) with their metadata and checks. Once per Dagster instance."""
    import dagster as dg

    from .assets import event_logs
    from .assets.common import MONTHLY, as_of_tags
    from .resources.backup_store import backup_store_from_env
    from .resources.postgres import postgres_from_env

    if instance.get_materialized_partitions(event_logs.ASSET_KEY):
        return
    first = demo.event_months(demo.SCALES[scale], now.date())[0].isoformat()
    keys = [key for key in MONTHLY.get_partition_keys(current_time=now) if key >= first]
    result = dg.materialize(
        [event_logs.event_log_partitions, *event_logs.defs.asset_checks],
        instance=instance, resources={"postgres": postgres_from_env(), "backup_store": backup_store_from_env()},
        tags={event_logs.RANGE_START_TAG: keys[0], event_logs.RANGE_END_TAG: keys[-1], **as_of_tags(now)},
        raise_on_error=False,
    )
    print(f"event_log_partitions: {keys[0]}..{keys[-1]} recorded ({'ok' if result.success else 'FAILED'})")


def cmd_dev(args: argparse.Namespace) -> int:
    """Bootstrap (as a Dagster materialization), load demo data if empty, start the UI."""
    conninfo = resolve_conninfo()
    env = prepare_dagster_env(conninfo)
    os.environ.update(env)
    import dagster as dg

    from .assets.schema import cosmic_schema
    from .resources.postgres import postgres_from_env

    instance = dg.DagsterInstance.get()
    now = datetime.now(timezone.utc)  # the start's one clock: demo data and the months it records
    result = dg.materialize([cosmic_schema], instance=instance, resources={"postgres": postgres_from_env()})
    if not result.success:
        return 1
    with _connect("demo") as conn:
        try:
            report = demo.load(conn, args.scale, as_of=now.date())
            print(f"demo data: {report.total_rows:,d} rows at scale {args.scale} in {report.seconds:.1f}s")
        except demo.DemoDataPresent:
            print("demo data: already present, kept as is")
    record_demo_months(instance, args.scale, now)
    print(f"managed database: {db.redact(conninfo)}")
    dagster = Path(sys.executable).with_name("dagster")
    command = [str(dagster), "dev", "-w", str(settings.project_root() / "workspace.yaml"),
               "-h", args.host, "-p", str(args.port)]
    os.execvpe(command[0], command, env)
    return 0  # pragma: no cover


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cosmic-ops", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    db_parser = sub.add_parser("db", help="the managed database")
    db_sub = db_parser.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("init", help="create or migrate the schema (idempotent)").set_defaults(func=cmd_db_init)
    db_sub.add_parser("url", help="print the managed database's conninfo, password removed").set_defaults(
        func=cmd_db_url)

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
