"""Threshold evaluation on a real database, and the one-run-per-crossing cursor logic."""

import json

import pytest

from cosmic_ops import db
from cosmic_ops.monitoring import find_crossings, parse_policy, plan_tick, read_partition_sizes

from .helpers import create_int_range_table, make_dead_tuples


@pytest.fixture(scope="module")
def database(bootstrapped_database):
    with db.connect(bootstrapped_database) as conn:
        create_int_range_table(conn, "ticks", 4)
    make_dead_tuples(bootstrapped_database, "public", "ticks", 1, rows=800, deleted=400)  # 50% dead
    make_dead_tuples(bootstrapped_database, "public", "ticks", 2, rows=900, deleted=10)  # ~1% dead
    return bootstrapped_database


POLICY = parse_policy({
    "default": {"max_bytes": "1 TB", "max_dead_ratio": "20%", "min_dead_tuples": "50 rows"},
    "tables": {"ticks": {"max_bytes": "64 kB", "max_rows": "850 rows", "bytes_action": "analyze"}},
})


def test_each_threshold_kind_is_found_with_the_tables_policy(database, conn):
    crossings = {c.key: c for c in find_crossings(read_partition_sizes(conn), POLICY)}
    assert set(crossings) == {
        "dead_ratio:public.ticks_p1", "bytes:public.ticks_p1", "bytes:public.ticks_p2", "rows:public.ticks_p2",
    }
    dead = crossings["dead_ratio:public.ticks_p1"]
    assert (dead.action, dead.observed, dead.threshold) == ("vacuum", 0.5, 0.2)
    assert crossings["bytes:public.ticks_p1"].action == "analyze"
    assert crossings["rows:public.ticks_p2"].observed == 890
    assert "ticks_p1" in dead.describe() and "50.0%" in dead.describe()


def test_min_dead_tuples_keeps_small_tables_quiet(database, conn):
    strict = parse_policy({"default": {"max_dead_ratio": "20%", "min_dead_tuples": "1000 rows"}})
    assert [c for c in find_crossings(read_partition_sizes(conn), strict) if c.kind == "dead_ratio"] == []


def test_a_crossing_is_acted_on_once_until_it_clears(database, conn):
    crossings = [c for c in find_crossings(read_partition_sizes(conn), POLICY) if c.kind == "dead_ratio"]
    first = plan_tick(crossings, None, "t1")
    assert [(c.key, key) for c, key in first.new] == [
        ("dead_ratio:public.ticks_p1", "dead_ratio:public.ticks_p1@t1")]
    second = plan_tick(crossings, first.cursor, "t2")
    assert second.new == [] and [c.key for c in second.still_active] == ["dead_ratio:public.ticks_p1"]
    cleared = plan_tick([], second.cursor, "t3")
    assert cleared.new == [] and json.loads(cleared.cursor) == {"active": {}}
    again = plan_tick(crossings, cleared.cursor, "t4")
    assert [key for _, key in again.new] == ["dead_ratio:public.ticks_p1@t4"]


def test_an_unreadable_cursor_rearms_rather_than_hides(database, conn):
    crossings = find_crossings(read_partition_sizes(conn), POLICY)
    assert len(plan_tick(crossings, "not json", "t9").new) == len(crossings)
