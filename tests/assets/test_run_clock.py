"""A run's one clock: the schedule's tick (run tag), else the run's creation; never a later time."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import dagster as dg

from cosmic_ops.assets.common import AS_OF_TAG, as_of_tags
from cosmic_ops.assets.monitoring import nothing_attached_past_retention, partition_counts
from cosmic_ops.definitions import defs
from cosmic_ops.resources import PostgresResource


def _check(conninfo, tags=None):
    result = dg.materialize([partition_counts, nothing_attached_past_retention],
                            resources={"postgres": PostgresResource(database_url=conninfo)},
                            instance=dg.DagsterInstance.ephemeral(), tags=tags, raise_on_error=False)
    return result


def test_the_tag_decides_the_checks_today(bootstrapped_database):
    result = _check(bootstrapped_database, as_of_tags(datetime(2026, 3, 15, 23, 59, tzinfo=timezone.utc)))
    (evaluation,) = result.get_asset_check_evaluations()
    assert evaluation.metadata["cutoff_month"].value == "2025-03-01"


def test_without_a_tag_the_run_decides_as_of_its_creation(bootstrapped_database):
    before = datetime.now(timezone.utc)
    result = _check(bootstrapped_database)
    after = datetime.now(timezone.utc)
    (evaluation,) = result.get_asset_check_evaluations()
    # The retention cut-off of the run's creation day (12 months back), whichever side of a
    # midnight the run fell on.
    cutoffs = {date(d.year - 1, d.month, 1).isoformat() for d in (before, after)}
    assert evaluation.metadata["cutoff_month"].value in cutoffs


def test_a_tag_in_the_future_or_without_offset_fails_the_run(bootstrapped_database):
    future = as_of_tags(datetime.now(timezone.utc) + timedelta(days=40))
    for tags, message in ((future, "is in the future"), ({AS_OF_TAG: "2026-11-01T00:00:00"}, "no UTC offset"),
                          ({AS_OF_TAG: "yesterday"}, "not an ISO 8601 timestamp")):
        result = _check(bootstrapped_database, tags)
        assert not result.success
        failures = [e for e in result.all_events if e.is_step_failure]
        assert message in failures[0].step_failure_data.error.to_string()


def test_every_schedule_that_decides_by_date_tags_its_tick():
    tick = datetime(2026, 3, 1, 2, tzinfo=timezone.utc)
    for name in ("event_log_retention_monthly", "event_log_backups_monthly", "destroyed_bodies_archive_nightly",
                 "compressed_saves_nightly", "event_log_partitions_daily_schedule"):
        schedule = defs.resolve_schedule_def(name)
        context = dg.build_schedule_context(scheduled_execution_time=tick, repository_def=defs.get_repository_def())
        requests = schedule.evaluate_tick(context).run_requests
        assert requests, name
        assert all(r.tags[AS_OF_TAG] == tick.isoformat() for r in requests), name
