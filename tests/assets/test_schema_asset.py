"""``cosmic_schema`` through Dagster: materialization, metadata, no-op rerun."""

from __future__ import annotations

import dagster as dg

from cosmic_ops import db, schema
from cosmic_ops.assets.schema import cosmic_schema
from cosmic_ops.resources import PostgresResource


def test_cosmic_schema_materializes_then_reports_no_change(fresh_database):
    resources = {"postgres": PostgresResource(database_url=fresh_database)}
    instance = dg.DagsterInstance.ephemeral()
    first = dg.materialize([cosmic_schema], resources=resources, instance=instance)
    second = dg.materialize([cosmic_schema], resources=resources, instance=instance)
    meta1 = first.asset_materializations_for_node("cosmic_schema")[0].metadata
    meta2 = second.asset_materializations_for_node("cosmic_schema")[0].metadata
    assert meta1["changed"].value is True and meta1["schema_version"].value == schema.LATEST_VERSION
    assert meta2["changed"].value is False and meta2["migrations_applied"].value == []
    # 9 tables + 5 body-type + 4 hash + 1 DEFAULT partition
    assert meta2["tables"].value == meta1["tables"].value == 19
    with db.connect(fresh_database) as conn:
        assert conn.execute("SELECT max(version) FROM cosmic_ops.schema_version").fetchone()[0] == schema.LATEST_VERSION


def test_password_never_reaches_metadata(fresh_database):
    from psycopg.conninfo import make_conninfo

    # Trust auth ignores the password, so the connection works and we can inspect metadata.
    with_password = make_conninfo(fresh_database, password="pa55-word-xyz")
    result = dg.materialize([cosmic_schema], resources={"postgres": PostgresResource(database_url=with_password)},
                            instance=dg.DagsterInstance.ephemeral())
    shown = str(result.asset_materializations_for_node("cosmic_schema")[0].metadata)
    assert "pa55-word-xyz" not in shown and "****" in shown
