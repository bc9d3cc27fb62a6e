"""Benchmark: demo data loading, COPY (ours) vs row-by-row INSERT (baseline), same rows, one run.

Both load the identical generated rows into freshly bootstrapped scratch databases
on the same server. The baseline is what a hand-written generator usually does:
psycopg ``executemany`` of parameterised INSERTs (pipelined by psycopg 3, so it is
already a strong baseline), inside one transaction. Reported: seconds, rows/s and
the ratio baseline/ours.

    /work/venv/bin/python bench/bench_demo.py [--quick] [--scale small|default]

Uses ``COSMIC_OPS_DATABASE_URL`` (else the embedded server).
"""

from __future__ import annotations

import argparse
import time
from datetime import date

import psycopg
from psycopg import sql

from cosmic_ops import db, demo, schema
from cosmic_ops.embedded import resolve_conninfo

AS_OF = date(2026, 11, 21)


def load_with_inserts(conn: psycopg.Connection, scale: demo.Scale, seed: int) -> tuple[int, float]:
    frames = demo.generate(scale, seed, AS_OF)
    started = time.perf_counter()
    rows = 0
    with conn.transaction():
        conn.execute("SET LOCAL TimeZone = 'UTC'")
        from cosmic_ops.partitions import ensure_month_partitions
        ensure_month_partitions(conn, "event_logs", demo.event_months(scale, AS_OF))
        for table, frame in frames.items():
            statement = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
                sql.Identifier(table),
                sql.SQL(", ").join(sql.Identifier(c) for c in frame.columns),
                sql.SQL(", ").join(sql.Placeholder() for _ in frame.columns),
            )
            # CSV-equivalent text values: the same conversions COPY does on the server.
            values = frame.astype(str).replace({"": None}).values.tolist()
            with conn.cursor() as cur:
                cur.executemany(statement, values)
            rows += len(values)
    return rows, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    parser.add_argument("--scale", choices=sorted(demo.SCALES), default="small")
    args = parser.parse_args()
    scale = demo.SCALES[args.scale]
    if args.quick:
        scale = demo.Scale(players=50, saves=100, bodies=3_000, events=10_000, sessions=300)
        demo.SCALES["bench_quick"] = scale
    scale_name = "bench_quick" if args.quick else args.scale

    server = resolve_conninfo()
    with db.scratch_database(server, "cosmic_bench_demo") as ours_db, db.connect(ours_db) as conn:
        schema.bootstrap(conn)
        report = demo.load(conn, scale_name, seed=42, as_of=AS_OF)
    with db.scratch_database(server, "cosmic_bench_demo") as base_db, db.connect(base_db) as conn:
        schema.bootstrap(conn)
        base_rows, base_s = load_with_inserts(conn, scale, 42)

    assert base_rows == report.total_rows, (base_rows, report.total_rows)
    print(f"demo load, scale {scale_name}: {report.total_rows:,d} rows "
          f"({report.rows['event_logs']:,d} event_logs)")
    print(f"{'loader':<28}{'seconds':>10}{'rows/s':>14}")
    print(f"{'cosmic_ops COPY':<28}{report.seconds:>10.2f}{report.rows_per_s:>14,.0f}")
    print(f"{'INSERT executemany':<28}{base_s:>10.2f}{base_rows / base_s:>14,.0f}")
    print(f"ratio INSERT/COPY time: {base_s / report.seconds:.2f}x  (COPY time includes generation: "
          "the baseline's excludes it)")


if __name__ == "__main__":
    main()
