"""The skew report on a real server: demo planets (HASH by save_id, a sub-partition of the LIST
table celestial_bodies) and hash tables made here, found from the catalog."""

from __future__ import annotations

from fractions import Fraction

import pytest

from cosmic_ops import db, layout
from cosmic_ops.layout.skew import ROWS_ESTIMATE, ROWS_ESTIMATE_LIVE, ROWS_EXACT

from ..monitoring.helpers import flush_stats
from .helpers import create_hash_table, fill, keys_in_remainder, load_demo, rows_by_partition

pytestmark = pytest.mark.slow  # loads the demo data

HOT_KEY = 42
PLANETS = "public.celestial_bodies_planets"


@pytest.fixture(scope="module")
def demo_db(fresh_database):
    load_demo(fresh_database)
    with db.connect(fresh_database, autocommit=True) as conn:
        create_hash_table(conn, "orders", [(4, r) for r in range(4)])
        # One customer holds 6,000 of 7,980 rows: its remainder dominates, and by that one key.
        fill(conn, "orders", {**{k: 20 for k in range(1, 101) if k != HOT_KEY}, HOT_KEY: 6_000})
    return fresh_database


@pytest.fixture()
def conn(demo_db):
    with db.connect(demo_db, autocommit=True) as connection:
        yield connection


def test_every_hash_table_and_sub_table_comes_from_the_catalog(conn):
    tables = {t.label: t for t in layout.hash_tables(conn)}
    assert {PLANETS, "public.orders"} <= set(tables)
    assert not {"public.celestial_bodies", "public.event_logs"} & set(tables)  # LIST and RANGE
    planets = tables[PLANETS]
    assert planets.is_sub_partition and planets.root_label == "public.celestial_bodies"
    assert planets.key_columns == ("save_id",) and planets.key_definition == "HASH (save_id)"
    assert [(p.modulus, p.remainder) for p in planets.partitions] == [(4, 0), (4, 1), (4, 2), (4, 3)]
    assert planets.modulus == 4 and planets.coverage == 1
    assert not tables["public.orders"].is_sub_partition
    # Each partition's bound, as read, is where PostgreSQL's own hash puts its rows.
    for partition in planets.partitions:
        misplaced = conn.execute(
            "SELECT count(*) FROM celestial_bodies_planets WHERE tableoid = %s::oid "
            "AND NOT satisfies_hash_partition('celestial_bodies_planets'::regclass, %s, %s, save_id)",
            (partition.oid, partition.modulus, partition.remainder)).fetchone()[0]
        assert misplaced == 0
    assert layout.hash_table(conn, "celestial_bodies_planets") == planets
    with pytest.raises(layout.NotHashPartitioned, match="not hash-partitioned"):
        layout.hash_table(conn, "celestial_bodies")
    with pytest.raises(layout.NotHashPartitioned, match="no table"):
        layout.hash_table(conn, "no_such_table")


def test_estimates_by_default_exact_on_request(conn):
    estimate = layout.measure(conn, tables=[PLANETS])
    exact = layout.measure(conn, exact=True, tables=[PLANETS])
    reltuples = dict(conn.execute(
        "SELECT c.oid::bigint, c.reltuples::bigint FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'celestial_bodies_planets'::regclass").fetchall())
    counted = rows_by_partition(conn, "celestial_bodies_planets")
    assert estimate.rows_method == ROWS_ESTIMATE and exact.rows_method == ROWS_EXACT
    [estimated], [counted_layout] = estimate.parents, exact.parents
    assert {r.partition.oid: r.rows for r in estimated.remainders} == reltuples
    assert {r.partition.name: r.rows for r in counted_layout.remainders} == counted
    assert counted_layout.total_rows == conn.execute("SELECT count(*) FROM celestial_bodies_planets").fetchone()[0]
    # max/mean of the partitions' rows
    rows = list(counted.values())
    assert counted_layout.skew_ratio == pytest.approx(max(rows) / (sum(rows) / len(rows)))
    for stats in counted_layout.remainders:
        sizes = conn.execute(
            "SELECT pg_relation_size(%(t)s::regclass), pg_indexes_size(%(t)s::regclass), "
            "pg_total_relation_size(%(t)s::regclass), n_dead_tup "
            "FROM pg_stat_user_tables WHERE relid = %(t)s::regclass",
            {"t": stats.partition.label}).fetchone()
        assert (stats.heap_bytes, stats.index_bytes, stats.total_bytes, stats.dead_tuples) == sizes
        assert stats.heap_bytes > 0 and stats.index_bytes > 0 and stats.leaves == 1
        # The demo's remainders are smaller than the default sample: their keys are exact too.
        assert stats.hot_keys_source == "exact" and len(stats.hot_keys) == layout.DEFAULT_TOP_KEYS
        top = stats.top_key
        assert top.rows == conn.execute(
            "SELECT count(*) FROM celestial_bodies_planets WHERE save_id = %s", top.key).fetchone()[0]
        assert top.share == pytest.approx(top.rows / stats.rows)


def test_a_stale_estimate_says_so_and_exact_counts_see_new_rows(conn):
    create_hash_table(conn, "stale_orders", [(2, 0), (2, 1)])
    fill(conn, "stale_orders", {k: 10 for k in range(1, 51)})  # analyzed: 500 rows
    fill(conn, "stale_orders", {k: 10 for k in range(51, 101)}, analyze=False)  # 500 more, not yet analyzed
    estimate = layout.measure(conn, tables=["stale_orders"]).parent("stale_orders")
    exact = layout.measure(conn, exact=True, tables=["stale_orders"]).parent("stale_orders")
    assert estimate.total_rows == 500 and exact.total_rows == 1_000
    assert {r.rows_source for r in estimate.remainders} == {ROWS_ESTIMATE}

    # A table never analyzed has no reltuples (-1): the statistics collector's live tuples stand in.
    create_hash_table(conn, "fresh_orders", [(2, 0), (2, 1)])
    fill(conn, "fresh_orders", {k: 3 for k in range(1, 101)}, analyze=False)
    fresh = layout.measure(conn, tables=["fresh_orders"])
    assert fresh.rows_method == ROWS_ESTIMATE_LIVE
    assert fresh.parent("fresh_orders").total_rows == 300


def test_the_skewed_table_and_its_hottest_key_exact_and_sampled(conn):
    exact = layout.measure(conn, exact=True, tables=["orders"]).parent("orders")
    hot_partition = conn.execute("SELECT tableoid::regclass::text FROM orders WHERE customer_id = %s LIMIT 1",
                                 (HOT_KEY,)).fetchone()[0]
    hottest = exact.hottest_remainder
    assert hottest.partition.name == hot_partition
    assert exact.skew_ratio == pytest.approx(hottest.rows / (7_980 / 4)) and exact.skew_ratio > 3
    remainder, key = exact.hottest_key
    assert remainder is hottest and key.key == (HOT_KEY,) and key.rows == 6_000
    assert key.share == pytest.approx(6_000 / hottest.rows) and key.share > 0.9
    assert exact.hottest_key_share_of_table() == pytest.approx(6_000 / 7_980)

    # Sampled: a few hundred rows per remainder find the same key and about its share.
    sampled = layout.measure(conn, tables=["orders"], sample_rows=300)
    orders = sampled.parent("orders")
    stats = orders.hottest_remainder
    assert stats.partition.name == hot_partition
    assert stats.hot_keys_source.startswith("sample (SYSTEM") and 0 < stats.sampled_rows < stats.rows
    assert stats.top_key.key == (HOT_KEY,) and stats.top_key.share > 0.8
    assert stats.top_key.rows == round(stats.top_key.share * stats.rows)
    assert "TABLESAMPLE SYSTEM" in sampled.hot_keys_method
    # The same sample each run while the table is unchanged (REPEATABLE).
    again = layout.measure(conn, tables=["orders"], sample_rows=300).parent("orders").hottest_remainder
    assert again.top_key == stats.top_key


def test_mixed_moduli_and_a_gap_in_the_hash_space(conn):
    # Half-way through a re-split of 4 -> 8, with remainder 3 of 4 missing altogether.
    create_hash_table(conn, "halfway", [(4, 0), (4, 1), (8, 2), (8, 6)])
    keys = {k: 5 for k in range(1, 401)}
    keys = {k: n for k, n in keys.items()
            if k not in set(keys_in_remainder(conn, "halfway", 4, 3, range(1, 401)))}
    fill(conn, "halfway", keys)
    table = layout.hash_table(conn, "halfway")
    assert table.moduli == (4, 8) and table.modulus == 8
    assert table.coverage == Fraction(3, 4)
    report = layout.measure(conn, exact=True, tables=["halfway"]).parent("halfway")
    rows = {(r.partition.modulus, r.partition.remainder): r.rows for r in report.remainders}
    assert sum(rows.values()) == sum(keys.values())
    # The modulus-4 remainders hold about twice the modulus-8 ones, and the ratio shows it.
    assert report.skew_ratio == pytest.approx(max(rows.values()) / (sum(rows.values()) / 4))
    assert report.skew_ratio > 1.2
    assert report.summary()["moduli"] == "4,8" and report.summary()["hash_coverage"] == 0.75
    findings = layout.find_layout_problems(layout.measure(conn, tables=["halfway"]), layout.LayoutPolicy())
    assert [f.kinds for f in findings] == [(layout.GAP,)]
    assert "75.0% of the hash space" in findings[0].describe()


def test_a_partitioned_remainder_sums_its_leaves(conn):
    create_hash_table(conn, "nested", [(2, 0)])
    conn.execute("CREATE TABLE nested_rest PARTITION OF nested FOR VALUES WITH (MODULUS 2, REMAINDER 1) "
                 "PARTITION BY LIST (region)")
    conn.execute("CREATE TABLE nested_rest_eu PARTITION OF nested_rest FOR VALUES IN ('eu')")
    conn.execute("CREATE TABLE nested_rest_other PARTITION OF nested_rest DEFAULT")
    fill(conn, "nested", {k: 4 for k in range(1, 201)})
    conn.execute("UPDATE nested SET region = 'na' WHERE id % 3 = 0")
    conn.execute("ANALYZE nested")
    flush_stats(conn)
    exact = layout.measure(conn, exact=True, tables=["nested"]).parent("nested")
    rest = next(r for r in exact.remainders if r.partition.name == "nested_rest")
    assert rest.partition.relkind == "p" and rest.leaves == 2
    assert rest.rows == conn.execute("SELECT count(*) FROM nested_rest").fetchone()[0] > 0
    assert rest.total_bytes == conn.execute(
        "SELECT pg_total_relation_size('nested_rest_eu') + pg_total_relation_size('nested_rest_other')").fetchone()[0]
    assert rest.dead_tuples > 0  # the UPDATE left dead versions in the leaves
    estimate = layout.measure(conn, tables=["nested"]).parent("nested")
    assert {r.partition.name: r.rows for r in estimate.remainders} == {r.partition.name: r.rows
                                                                       for r in exact.remainders}
    assert len(estimate.hottest_key[1].key) == 1


def test_multi_column_and_expression_keys(conn):
    create_hash_table(conn, "pairs", [(2, 0), (2, 1)], key="customer_id,region")
    fill(conn, "pairs", {7: 30, 8: 3})
    pairs = layout.measure(conn, exact=True, tables=["pairs"]).parent("pairs")
    assert pairs.table.key_columns == ("customer_id", "region")
    assert pairs.hottest_key[1].text == "(7, eu)"

    create_hash_table(conn, "by_expression", [(2, 0), (2, 1)], key_sql="(customer_id % 10)")
    fill(conn, "by_expression", {1: 5})
    expression = layout.measure(conn, tables=["by_expression"]).parent("by_expression")
    assert expression.table.key_columns == ()
    assert all(r.hot_keys == () and r.hot_keys_source.startswith("not computed: the key is an expression")
               for r in expression.remainders)
    assert expression.total_rows == 5


def test_asking_for_an_unknown_table_fails_before_reading(conn):
    with pytest.raises(layout.NotHashPartitioned, match="event_logs"):
        layout.measure(conn, tables=["event_logs"])
