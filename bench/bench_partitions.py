"""Benchmark: plan + apply of the 7-month event_logs window (3 back, this month, 3 ahead).

Side by side in one run, on the same server and one scratch database, each
contender on an identical ``event_logs`` (the bootstrap's DDL, in a schema of its
own that is dropped after each repetition, so every "fresh" run starts empty):
- cosmic_ops: ``ensure_months`` -- advisory lock, catalog plan, per month one
  transaction: CREATE outside the tree, CHECK, ATTACH, DROP CHECK, storage settings;
- seed: ``manage_event_log_partitions()`` from seed 000 (CREATE ... PARTITION OF,
  plus its name-based DROP loop), called with the schema on the search_path;
- pg_partman ``run_maintenance()`` (native, monthly, premake 3); "fresh" is
  ``create_parent()`` + ``run_maintenance()``, the table given without a DEFAULT
  partition because pg_partman creates its own.
Scenarios: a fresh table (nothing exists) and an already-maintained one (all seven
exist: the daily no-op). Median seconds over the repetitions; ratio = other / cosmic_ops.

    /work/venv/bin/python bench/bench_partitions.py [--quick] [--repeat 7]

Uses ``COSMIC_OPS_DATABASE_URL`` (else the embedded server); creates its own scratch
database and drops it. pg_partman comes from the Debian package
``postgresql-15-partman``; without it that column says so and the others still run.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402

from cosmic_ops import db, schema  # noqa: E402
from cosmic_ops.embedded import resolve_conninfo  # noqa: E402
from cosmic_ops.partitions import EVENT_LOGS_POLICY, ensure_months, list_partitions  # noqa: E402
from cosmic_ops.timeutil import add_months  # noqa: E402

# The benchmark's one clock: demo data and every age-based decision are as of this instant.
NOW = datetime.now(timezone.utc)

# manage_event_log_partitions() verbatim from seed 000.
SEED_FUNCTION = (Path(__file__).resolve().parents[1] / "tests" / "partitions" / "seed_function.sql").read_text()
# The bootstrap's event_logs DDL (sequence, parent, partitioned indexes, DEFAULT), static text.
EVENT_LOGS_DDL = schema._EVENT_LOGS


@dataclasses.dataclass
class Contender:
    name: str
    prepare: Callable[[psycopg.Connection, str], None]  # once per repetition, untimed
    fresh: Callable[[psycopg.Connection, str], None]
    maintained: Callable[[psycopg.Connection, str], None]


def make_table(conn: psycopg.Connection, schema_name: str, *, with_default: bool = True) -> None:
    conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema_name)))
    conn.execute(sql.SQL("SET search_path = {}, public").format(sql.Identifier(schema_name)))
    conn.execute(sql.SQL(EVENT_LOGS_DDL))
    if not with_default:
        conn.execute("DROP TABLE event_logs_default")
    conn.commit()


def cosmic(conn: psycopg.Connection, schema_name: str) -> None:
    policy = dataclasses.replace(EVENT_LOGS_POLICY, schema=schema_name)
    ensure_months(conn, policy, policy.window(NOW))


def seed(conn: psycopg.Connection, schema_name: str) -> None:
    conn.execute("SELECT manage_event_log_partitions()")
    conn.commit()


def partman_create(conn: psycopg.Connection, schema_name: str) -> None:
    start = add_months(EVENT_LOGS_POLICY.current_month(NOW), -EVENT_LOGS_POLICY.lookback)
    conn.execute(
        "SELECT partman.create_parent(p_parent_table := %s, p_control := 'server_timestamp', p_type := 'native',"
        " p_interval := 'monthly', p_premake := 3, p_start_partition := %s)",
        (f"{schema_name}.event_logs", start.isoformat()),
    )
    conn.execute("SELECT partman.run_maintenance()")
    conn.commit()


def partman_maintain(conn: psycopg.Connection, schema_name: str) -> None:
    conn.execute("SELECT partman.run_maintenance()")
    conn.commit()


def window_bounds(conn: psycopg.Connection, schema_name: str) -> list[tuple]:
    parts = list_partitions(conn, f"{schema_name}.event_logs")
    conn.commit()
    return [(p.lower, p.upper) for p in parts if not p.is_default]


def drop_schema(conn: psycopg.Connection, schema_name: str, partman: bool) -> None:
    conn.rollback()
    if partman:
        conn.execute("DELETE FROM partman.part_config WHERE parent_table = %s", (f"{schema_name}.event_logs",))
    conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema_name)))
    conn.execute("SET search_path = public")
    conn.commit()


def partman_available(conn: psycopg.Connection) -> Optional[str]:
    try:
        conn.execute("CREATE SCHEMA IF NOT EXISTS partman")
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_partman SCHEMA partman")
        version = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'pg_partman'").fetchone()[0]
        conn.commit()
        return version
    except psycopg.Error as exc:
        conn.rollback()
        print(f"pg_partman unavailable ({str(exc).strip()}); install postgresql-15-partman to compare", file=sys.stderr)
        return None


def measure(conn: psycopg.Connection, contender: Contender, repeat: int, partman: bool) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"fresh": [], "maintained": []}
    expected = None
    for rep in range(repeat):
        schema_name = f"bench_{contender.name}_{rep}"
        contender.prepare(conn, schema_name)
        started = time.perf_counter()
        contender.fresh(conn, schema_name)
        times["fresh"].append(time.perf_counter() - started)
        bounds = window_bounds(conn, schema_name)
        started = time.perf_counter()
        contender.maintained(conn, schema_name)
        times["maintained"].append(time.perf_counter() - started)
        if window_bounds(conn, schema_name) != bounds:
            raise AssertionError(f"{contender.name}: the maintained run changed the partitions")
        expected = bounds
        drop_schema(conn, schema_name, partman)
    times["bounds"] = expected  # type: ignore[assignment]
    return times


def fill_default(conn: psycopg.Connection, rows: int) -> None:
    """``rows`` events spread evenly over the window, all in DEFAULT (no month exists yet)."""
    window = EVENT_LOGS_POLICY.window(NOW)
    start = window[0]
    end = add_months(window[-1], 1)
    conn.execute(
        "INSERT INTO event_logs (server_timestamp, player_id, event_type) "
        "SELECT %(start)s::timestamptz + (%(end)s::timestamptz - %(start)s::timestamptz) * g / (%(n)s + 1), "
        "g %% 5000, 'resource_collected' FROM generate_series(1, %(n)s) g",
        {"start": start.isoformat() + " 00:00+00", "end": end.isoformat() + " 00:00+00", "n": rows},
    )
    conn.commit()


def measure_default_rows(conn: psycopg.Connection, rows: int) -> dict[str, object]:
    """Fresh window while DEFAULT holds ``rows`` rows of those months: ours moves them,
    the seed's CREATE ... PARTITION OF is refused by PostgreSQL."""
    outcome: dict[str, object] = {}
    for label, run in (("cosmic_ops", cosmic), ("seed_plpgsql", seed)):
        schema_name = f"bench_default_{label}"
        make_table(conn, schema_name)
        fill_default(conn, rows)
        started = time.perf_counter()
        try:
            run(conn, schema_name)
            outcome[label] = time.perf_counter() - started
            left = conn.execute("SELECT count(*) FROM ONLY event_logs_default").fetchone()[0]
            total = conn.execute("SELECT count(*) FROM event_logs").fetchone()[0]
            conn.commit()
            if left or total != rows:
                raise AssertionError(f"{label}: {left} rows left in DEFAULT, {total} of {rows} in the table")
        except psycopg.Error as exc:
            conn.rollback()
            outcome[label] = "fails: " + str(exc).strip().splitlines()[0][:70]
        drop_schema(conn, schema_name, False)
    return outcome


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 repetitions: a smoke run")
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--default-rows", type=int, default=200_000, help="rows in DEFAULT for the third scenario")
    args = parser.parse_args()
    repeat = 2 if args.quick else args.repeat
    default_rows = 2_000 if args.quick else args.default_rows

    server = resolve_conninfo(None)
    name = f"cosmic_bench_partitions_{uuid.uuid4().hex[:8]}"
    db.create_database(server, name)
    try:
        with db.connect(db.with_database(server, name), application_name="bench_partitions") as conn:
            conn.execute("SET TimeZone = 'UTC'")  # the seed's CURRENT_DATE must mean the UTC day
            conn.execute(SEED_FUNCTION)
            conn.commit()
            version = partman_available(conn)
            contenders = [
                Contender("cosmic_ops", make_table, cosmic, cosmic),
                Contender("seed_plpgsql", make_table, seed, seed),
            ]
            if version:
                contenders.append(Contender(
                    "pg_partman", lambda c, s: make_table(c, s, with_default=False), partman_create, partman_maintain))
            results = {c.name: measure(conn, c, repeat, c.name == "pg_partman") for c in contenders}
            with_rows = measure_default_rows(conn, default_rows)
    finally:
        db.drop_database(server, name)

    reference = results["cosmic_ops"]["bounds"]
    for contender, times in results.items():
        same = "same 7 bounds" if times["bounds"] == reference else f"DIFFERENT bounds: {times['bounds']}"
        print(f"{contender:<13} {same}")
    print()
    print(f"7-month window plan+apply, median of {repeat} (pg_partman {version or 'not installed'}, PostgreSQL "
          f"{server_version(server)})")
    header = f"{'scenario':<12} {'cosmic_ops s':>13} {'seed s':>10} {'seed/ours':>10}"
    if version:
        header += f" {'partman s':>10} {'partman/ours':>13}"
    print(header)
    for scenario in ("fresh", "maintained"):
        ours = statistics.median(results["cosmic_ops"][scenario])
        seed_s = statistics.median(results["seed_plpgsql"][scenario])
        line = f"{scenario:<12} {ours:>13.4f} {seed_s:>10.4f} {seed_s / ours:>10.2f}"
        if version:
            partman_s = statistics.median(results["pg_partman"][scenario])
            line += f" {partman_s:>10.4f} {partman_s / ours:>13.2f}"
        print(line)
    ours = with_rows["cosmic_ops"]
    print(f"fresh, {default_rows} rows of the window waiting in DEFAULT (single run): cosmic_ops "
          + (f"{ours:.4f} s ({default_rows / ours:,.0f} rows/s moved)" if isinstance(ours, float) else str(ours))
          + "; seed " + (f"{with_rows['seed_plpgsql']:.4f} s" if isinstance(with_rows["seed_plpgsql"], float)
                         else str(with_rows["seed_plpgsql"])))
    print("cosmic_ops also sets the storage settings on each partition, which the seed cannot (refused on the parent).")
    return 0


def server_version(server: str) -> str:
    with psycopg.connect(server) as conn:
        return conn.execute("SHOW server_version").fetchone()[0]


if __name__ == "__main__":
    sys.exit(main())
