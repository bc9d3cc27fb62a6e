"""Sizes and counts come from the catalog for every partitioned table."""

from datetime import date

import pytest
from psycopg import sql

from cosmic_ops.monitoring import read_partition_counts, read_partition_sizes
from cosmic_ops.partitions import ensure_month_partitions

from .helpers import create_int_range_table, make_dead_tuples


@pytest.fixture(scope="module")
def populated(bootstrapped_database):
    from cosmic_ops import db

    with db.connect(bootstrapped_database) as conn:
        with conn.transaction():
            ensure_month_partitions(conn, "event_logs", [date(2026, 9, 1), date(2026, 10, 1), date(2026, 11, 1)])
        conn.execute(
            "INSERT INTO event_logs (server_timestamp, player_id, event_type) "
            "SELECT timestamptz '2026-10-01 00:00+00' + g * interval '1 minute', g, 'player_login' "
            "FROM generate_series(1, 2000) g"
        )
        conn.commit()
        # A table the seed's LIKE patterns never see, whose names sort against its bounds.
        conn.execute("CREATE SCHEMA ops_extra")
        conn.execute(
            "CREATE TABLE ops_extra.readings (taken date NOT NULL, v int) PARTITION BY RANGE (taken);"
            "CREATE TABLE ops_extra.zz_oldest PARTITION OF ops_extra.readings"
            "  FOR VALUES FROM ('2020-01-01') TO ('2021-01-01');"
            "CREATE TABLE ops_extra.aa_newest PARTITION OF ops_extra.readings"
            "  FOR VALUES FROM ('2030-01-01') TO ('2031-01-01');"
            "CREATE TABLE ops_extra.mm_middle PARTITION OF ops_extra.readings"
            "  FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')"
        )
        conn.commit()
        create_int_range_table(conn, "scratch_ints", 5)
    make_dead_tuples(bootstrapped_database, "public", "scratch_ints", 2, rows=400, deleted=100)
    return bootstrapped_database


def test_sizes_match_pg_total_relation_size_for_every_leaf(populated, conn):
    sizes = read_partition_sizes(conn)
    expected = dict(conn.execute(
        "SELECT c.oid::regclass::text, pg_total_relation_size(c.oid) FROM pg_class c "
        "WHERE c.relispartition AND c.relkind = 'r'"
    ).fetchall())
    got = {}
    for schema, table, total in sizes[["schema_name", "table_name", "total_bytes"]].itertuples(index=False):
        regclass = conn.execute("SELECT %s::regclass::text",
                                (sql.Identifier(schema, table).as_string(conn),)).fetchone()[0]
        got[regclass] = total
    assert got == expected
    assert {"event_logs_2026_10", "celestial_bodies_planets_3", "zz_oldest", "scratch_ints_p4"} <= set(
        sizes["table_name"])
    assert list(sizes["total_bytes"]) == sorted(sizes["total_bytes"], reverse=True)
    row = sizes.set_index("table_name").loc["event_logs_2026_10"]
    assert row["table_bytes"] + row["index_bytes"] <= row["total_bytes"]
    assert row["root_table"] == "event_logs"
    planets = sizes.set_index("table_name").loc["celestial_bodies_planets_0"]
    assert (planets["parent_table"], planets["root_table"]) == ("celestial_bodies_planets", "celestial_bodies")


def test_dead_tuple_ratio_is_computed_from_statistics(populated, conn):
    row = read_partition_sizes(conn).set_index("table_name").loc["scratch_ints_p2"]
    assert (row["live_tuples"], row["dead_tuples"]) == (300, 100)
    assert row["dead_tuple_ratio"] == pytest.approx(0.25)
    empty = read_partition_sizes(conn).set_index("table_name").loc["scratch_ints_p0"]
    assert empty["dead_tuple_ratio"] == 0.0


def test_counts_cover_every_partitioned_table_oldest_and_newest_by_bound(populated, conn):
    counts = read_partition_counts(conn).set_index(["schema_name", "parent_table"])
    readings = counts.loc[("ops_extra", "readings")]
    assert (readings["partition_count"], readings["oldest_partition"], readings["newest_partition"]) == (
        3, "zz_oldest", "aa_newest")
    events = counts.loc[("public", "event_logs")]
    assert events["strategy"] == "range"
    assert (events["partition_count"], events["default_partitions"]) == (4, 1)
    assert (events["oldest_partition"], events["newest_partition"]) == ("event_logs_2026_09", "event_logs_2026_11")
    assert counts.loc[("public", "celestial_bodies_planets"), "strategy"] == "hash"
    assert counts.loc[("public", "celestial_bodies"), "partition_count"] == 5
    assert counts.loc[("public", "scratch_ints"), "newest_partition"] == "scratch_ints_p4"
