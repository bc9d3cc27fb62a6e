"""When a table crosses the layout policy, and which split is proposed: a split evens a fat
remainder of many keys, and is said not to help a remainder one key fills."""

from __future__ import annotations

import pytest

from cosmic_ops import db, layout
from cosmic_ops.layout import parse_layout_policy

from .helpers import create_hash_table, fill, keys_in_remainder

POLICY = parse_layout_policy({"default": {"max_skew": "1.5x", "min_rows": "1k rows"}})


@pytest.fixture(scope="module")
def conn(bootstrapped_database):
    with db.connect(bootstrapped_database, autocommit=True) as connection:
        yield connection


def _finding(conn, table, policy=POLICY, **measure):
    report = layout.measure(conn, tables=[table], **measure)
    found = [f for f in layout.find_layout_problems(report, policy) if f.table == f"public.{table}"]
    return found[0] if found else None


def test_one_key_filling_a_remainder_is_named_and_a_split_is_not_promised(conn):
    create_hash_table(conn, "whale", [(4, r) for r in range(4)])
    fill(conn, "whale", {**{k: 10 for k in range(1, 101)}, 42: 5_000})
    finding = _finding(conn, "whale", exact=True)
    assert finding.kinds == (layout.SKEW,) and finding.skew_ratio > 2.5
    proposal = finding.proposal
    assert proposal.target_modulus == 8 and not proposal.split_helps
    assert proposal.hottest_key == "42" and proposal.hottest_key_rows == 5_000
    assert "key 42 holds 5,000 rows, which stay in one partition at any modulus" in proposal.describe()
    assert finding.to_json()["proposal"]["split_helps"] is False


def test_a_fat_remainder_of_many_keys_is_split_alone(conn):
    create_hash_table(conn, "fat", [(4, r) for r in range(4)])
    fat_keys = set(keys_in_remainder(conn, "fat", 4, 1, range(1, 801)))
    # Every key has 10 rows; the keys of remainder 1 have 30: that remainder holds 3x the others.
    fill(conn, "fat", {k: 30 if k in fat_keys else 10 for k in range(1, 801)})
    finding = _finding(conn, "fat", exact=True)
    assert finding.kinds == (layout.SKEW,)
    proposal = finding.proposal
    assert proposal.partitions == ((4, 1),) and proposal.target_modulus == 8
    # Its halves come out about as large as the other remainders.
    assert proposal.split_helps and proposal.expected_skew_after < 1.3
    assert "remainder 1 of modulus 4 -> modulus 8" in proposal.describe()


def test_an_even_table_over_the_byte_threshold_doubles_every_partition(conn):
    create_hash_table(conn, "even", [(4, r) for r in range(4)])
    fill(conn, "even", {k: 10 for k in range(1, 401)})
    report = layout.measure(conn, tables=["even"]).parent("even")
    largest = report.largest.total_bytes
    policy = parse_layout_policy({"default": {"max_partition_bytes": f"{largest // 1024 - 8} kB"}})
    finding = _finding(conn, "even", policy)
    assert layout.BYTES in finding.kinds
    assert finding.largest_partition_bytes == largest
    proposal = finding.proposal
    # Splitting only the largest would leave its halves far below the rest; all four go to 8.
    assert len(proposal.partitions) == 4 and proposal.target_modulus == 8
    assert proposal.expected_largest_bytes_after < largest
    assert "every partition (4) -> modulus 8" in proposal.describe()


def test_small_tables_and_switched_off_thresholds_are_not_judged(conn):
    create_hash_table(conn, "tiny", [(4, r) for r in range(4)])
    fill(conn, "tiny", {1: 50, 2: 1})  # very skewed, but 51 rows
    assert _finding(conn, "tiny") is None
    lenient = parse_layout_policy({"default": {"min_rows": "1k rows"}, "tables": {"whale": {"max_skew": None}}})
    assert _finding(conn, "whale", lenient) is None
