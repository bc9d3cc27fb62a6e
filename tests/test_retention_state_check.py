"""SPEC §4: a check asserts that nothing past retention is still attached."""

from __future__ import annotations


import dagster as dg
from psycopg import sql

from cosmic_ops import db
from cosmic_ops.assets.monitoring import nothing_attached_past_retention, partition_counts
from cosmic_ops.backups.policy import RetentionPolicy
from cosmic_ops.partitions import ensure_month_partitions
from cosmic_ops.resources import PostgresResource
from cosmic_ops.retention import attached_past_retention
from cosmic_ops.timeutil import add_months, month_start

from .clock import RUN_TAGS, TODAY


def _evaluate(conninfo):
    result = dg.materialize([partition_counts, nothing_attached_past_retention],
                            resources={"postgres": PostgresResource(database_url=conninfo)},
                            instance=dg.DagsterInstance.ephemeral(), tags=RUN_TAGS)
    (evaluation,) = result.get_asset_check_evaluations()
    return evaluation


def test_months_past_retention_fail_the_check_until_retired(bootstrapped_database):
    today = TODAY
    policy = RetentionPolicy()
    cutoff = policy.cutoff(today)
    overdue = [add_months(cutoff, -2), add_months(cutoff, -1)]
    with db.connect(bootstrapped_database) as conn:
        ensure_month_partitions(conn, "event_logs", overdue + [cutoff, month_start(today)])
        conn.commit()
        assert [p.lower_month() for p in attached_past_retention(conn, policy, today)] == overdue

    failing = _evaluate(bootstrapped_database)
    assert not failing.passed
    assert failing.metadata["overdue_months"].value == [m.isoformat() for m in overdue]
    assert "2 month(s) past 12 months still attached" in failing.description

    with db.connect(bootstrapped_database) as conn:
        for partition in attached_past_retention(conn, policy, today):
            conn.execute(sql.SQL("ALTER TABLE event_logs DETACH PARTITION {}").format(
                sql.Identifier(partition.schema, partition.name)))
        conn.commit()
    passing = _evaluate(bootstrapped_database)
    assert passing.passed and passing.metadata["overdue_months"].value == []
