"""Rows far outside the window land in DEFAULT and are moved into their months."""

from __future__ import annotations

from datetime import date

import pytest

from cosmic_ops.partitions import EVENT_LOGS_POLICY, PolicyError, ensure_months, rehome_default_rows
from cosmic_ops.partitions.state import check_default_empty

from ..clock import NOW

from .helpers import insert_events, row_fingerprint, rows_per_partition, tree_snapshot

FAR = ("1999-01-15 08:00+00", "1999-01-31 23:00+00", "2031-07-04 12:00+00", "2010-03-01 00:00+00",
       "2026-11-10 00:00+00")


def test_rows_in_default_are_reported_then_rehomed_without_loss(econn):
    ensure_months(econn, EVENT_LOGS_POLICY, [date(2026, 10, 1)])
    insert_events(econn, *FAR, "2026-10-05 00:00+00")
    before = row_fingerprint(econn)
    assert rows_per_partition(econn) == {"event_logs_2026_10": 1, "event_logs_default": 5}
    report = check_default_empty(econn, EVENT_LOGS_POLICY)
    assert not report.passed and report.metadata["rows_by_month"] == {
        "1999-01": 2, "2010-03": 1, "2026-11": 1, "2031-07": 1}

    result = rehome_default_rows(econn, EVENT_LOGS_POLICY)
    assert result.default_rows_before == 5 and result.default_rows_after == 0 and result.rows_moved == 5
    assert result.created == ["event_logs_1999_01", "event_logs_2010_03", "event_logs_2026_11", "event_logs_2031_07"]
    assert rows_per_partition(econn) == {"event_logs_1999_01": 2, "event_logs_2010_03": 1, "event_logs_2026_10": 1,
                                         "event_logs_2026_11": 1, "event_logs_2031_07": 1}
    assert row_fingerprint(econn) == before
    assert check_default_empty(econn, EVENT_LOGS_POLICY).passed


def test_max_months_bounds_a_run_and_the_next_run_finishes(econn):
    insert_events(econn, *FAR)
    before = row_fingerprint(econn)
    first = rehome_default_rows(econn, EVENT_LOGS_POLICY, max_months=2)
    assert first.created == ["event_logs_1999_01", "event_logs_2010_03"]
    assert first.remaining_months == ["2026-11", "2031-07"] and first.default_rows_after == 2
    second = rehome_default_rows(econn, EVENT_LOGS_POLICY, max_months=2)
    assert second.default_rows_after == 0 and row_fingerprint(econn) == before


def test_rehome_dry_run_changes_nothing(econn):
    insert_events(econn, *FAR)
    before, rows = tree_snapshot(econn), rows_per_partition(econn)
    result = rehome_default_rows(econn, EVENT_LOGS_POLICY, dry_run=True)
    assert result.dry_run and not result.results and "event_logs_2031_07" in result.plan_markdown
    assert tree_snapshot(econn) == before and rows_per_partition(econn) == rows


def test_rows_in_default_do_not_stop_other_months(econn):
    insert_events(econn, *FAR)
    window = EVENT_LOGS_POLICY.window(NOW)
    created = ensure_months(econn, EVENT_LOGS_POLICY, window).created
    assert len(created) == 7
    # The rows of months inside the window moved in with their months; the others stay in DEFAULT.
    outside = [t for t in FAR if date.fromisoformat(t[:7] + "-01") not in window]
    assert rows_per_partition(econn)["event_logs_default"] == len(outside)


@pytest.mark.parametrize("max_months", [0, -1])
def test_max_months_below_one_is_refused_and_nothing_moves(econn, max_months):
    insert_events(econn, "1998-03-01 00:00+00", "1998-04-01 00:00+00")
    before = rows_per_partition(econn), tree_snapshot(econn)
    with pytest.raises(PolicyError, match="max_months"):
        rehome_default_rows(econn, EVENT_LOGS_POLICY, max_months=max_months)
    econn.rollback()
    assert (rows_per_partition(econn), tree_snapshot(econn)) == before
