"""Bootstrap: catalog facts of SPEC §2, idempotency, monitoring views."""

from __future__ import annotations

import pytest

from cosmic_ops import db, schema

from .clock import NOW


def _catalog_snapshot(conn):
    """Every relation, column and constraint with the xmin of its catalog row: any
    ALTER/CREATE/DROP changes this snapshot."""
    return conn.execute(
        """
        SELECT 'class', c.oid::text, c.relname, c.xmin::text FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname IN ('public', 'cosmic_ops')
        UNION ALL
        SELECT 'attribute', a.attrelid::text || '.' || a.attnum, a.attname, a.xmin::text FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname IN ('public', 'cosmic_ops')
        UNION ALL
        SELECT 'constraint', co.oid::text, co.conname, co.xmin::text FROM pg_constraint co
        JOIN pg_namespace n ON n.oid = co.connamespace WHERE n.nspname IN ('public', 'cosmic_ops')
        ORDER BY 1, 2
        """
    ).fetchall()


def test_bootstrap_twice_changes_nothing(fresh_database):
    with db.connect(fresh_database) as conn:
        first = schema.bootstrap(conn)
        assert first.applied == tuple(m.version for m in schema.MIGRATIONS) and first.version_after == schema.LATEST_VERSION
        before = _catalog_snapshot(conn)
        conn.commit()
        second = schema.bootstrap(conn)
        after = _catalog_snapshot(conn)
        versions = conn.execute("SELECT count(*) FROM cosmic_ops.schema_version").fetchone()[0]
    assert second.applied == () and not second.changed
    assert len(before) > 100
    assert after == before
    assert versions == len(schema.MIGRATIONS)


def _strategy(conn, table):
    return conn.execute(
        "SELECT partstrat, partnatts, (SELECT array_agg(attname ORDER BY attnum) FROM pg_attribute "
        " WHERE attrelid = partrelid AND attnum = ANY(partattrs)) FROM pg_partitioned_table "
        "WHERE partrelid = %s::regclass",
        (table,),
    ).fetchone()


def _children(conn, table):
    return dict(conn.execute(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass",
        (table,),
    ).fetchall())


def test_event_logs_is_range_by_server_timestamp_with_default(fresh_database):
    with db.connect(fresh_database) as conn:
        schema.bootstrap(conn)
        assert _strategy(conn, "event_logs") == ("r", 1, ["server_timestamp"])
        assert _children(conn, "event_logs") == {"event_logs_default": "DEFAULT"}
        pk = conn.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'event_logs'::regclass "
            "AND contype = 'p'"
        ).fetchone()[0]
        assert pk == "PRIMARY KEY (id, server_timestamp)"
        options = conn.execute(
            "SELECT reloptions FROM pg_class WHERE oid = 'event_logs_default'::regclass"
        ).fetchone()[0]
        assert set(options) == {"autovacuum_vacuum_scale_factor=0.05", "autovacuum_analyze_scale_factor=0.02"}
        indexes = {r[0] for r in conn.execute(
            "SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = 'event_logs'::regclass")}
        assert any("(player_id, server_timestamp DESC)" in d for d in indexes)
        assert any("(event_type, server_timestamp DESC)" in d for d in indexes)
        # Game servers insert just three columns; everything else has a default.
        conn.execute(
            "INSERT INTO event_logs (player_id, event_type, server_timestamp) VALUES (1, 'login', %s)", (NOW,)
        )
        row = conn.execute("SELECT id IS NOT NULL, payload, server_region FROM event_logs").fetchone()
        assert row == (True, {}, "unknown")
        conn.rollback()


def test_celestial_bodies_list_then_hash_layout(fresh_database):
    with db.connect(fresh_database) as conn:
        schema.bootstrap(conn)
        assert _strategy(conn, "celestial_bodies") == ("l", 1, ["body_type"])
        assert _children(conn, "celestial_bodies") == {
            "celestial_bodies_stars": "FOR VALUES IN ('star')",
            "celestial_bodies_planets": "FOR VALUES IN ('planet')",
            "celestial_bodies_moons": "FOR VALUES IN ('moon')",
            "celestial_bodies_small": "FOR VALUES IN ('asteroid', 'comet', 'dust_cloud')",
            "celestial_bodies_special": "FOR VALUES IN ('black_hole')",
        }
        assert _strategy(conn, "celestial_bodies_planets") == ("h", 1, ["save_id"])
        assert _children(conn, "celestial_bodies_planets") == {
            f"celestial_bodies_planets_{r}": f"FOR VALUES WITH (modulus 4, remainder {r})" for r in range(4)
        }
        archive_cols = [r[0] for r in conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = 'celestial_bodies_archive'::regclass "
            "AND attnum > 0 AND NOT attisdropped ORDER BY attnum")]
        body_cols = [r[0] for r in conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = 'celestial_bodies'::regclass "
            "AND attnum > 0 AND NOT attisdropped ORDER BY attnum")]
        assert archive_cols == body_cols + ["archived_at"]
        for column in ("save_id", "body_type", "mass", "is_destroyed", "updated_at"):
            assert column in body_cols


@pytest.mark.parametrize("table, columns", [
    ("game_saves", {"id", "player_id", "is_active", "updated_at", "compressed_state"}),
    ("save_resources", {"save_id", "resource_type", "amount"}),
    ("save_research", {"save_id", "tech_id", "progress"}),
    ("players", {"player_id", "username"}),
    ("player_sessions", {"player_id", "started_at"}),
    ("player_statistics", {"player_id", "total_playtime_s"}),
])
def test_tables_have_their_columns(bootstrapped_database, table, columns):
    with db.connect(bootstrapped_database) as conn:
        have = {r[0] for r in conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0", (table,))}
    assert columns <= have


def test_foreign_keys_tie_saves_to_players_and_rows_to_saves(bootstrapped_database):
    with db.connect(bootstrapped_database) as conn:
        fks = set(conn.execute(
            "SELECT conrelid::regclass::text, confrelid::regclass::text FROM pg_constraint "
            "WHERE contype = 'f' AND conparentid = 0"
        ).fetchall())
    assert {("game_saves", "players"), ("save_resources", "game_saves"), ("save_research", "game_saves"),
            ("celestial_bodies", "game_saves"), ("player_sessions", "players"),
            ("player_statistics", "players")} <= fks


def test_monitoring_views_answer(bootstrapped_database):
    with db.connect(bootstrapped_database) as conn:
        sizes = conn.execute(
            "SELECT table_name, parent_table, total_bytes FROM partition_sizes").fetchall()
        counts = {r[0]: r[1:] for r in conn.execute(
            "SELECT parent_table, strategy, partition_count, default_partitions FROM partition_counts")}
    assert {"event_logs_default", "celestial_bodies_planets_3", "celestial_bodies_stars"} <= {r[0] for r in sizes}
    assert counts == {
        "event_logs": ("range", 1, 1),
        "celestial_bodies": ("list", 5, 0),
        "celestial_bodies_planets": ("hash", 4, 0),
    }


def test_a_version_1_database_is_upgraded_to_the_save_layout_registry(new_database, monkeypatch):
    with db.connect(new_database) as conn:
        monkeypatch.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:1])
        monkeypatch.setattr(schema, "LATEST_VERSION", 1)
        assert schema.bootstrap(conn).applied == (1,)
        monkeypatch.undo()
        upgrade = schema.bootstrap(conn)
        registry, storage = conn.execute(
            "SELECT to_regclass('cosmic_ops.save_layouts') IS NOT NULL, "
            "(SELECT attstorage FROM pg_attribute WHERE attrelid = 'game_saves'::regclass "
            "AND attname = 'compressed_state')").fetchone()
    assert upgrade.applied == (2, 3, 4) and upgrade.version_after == schema.LATEST_VERSION
    assert registry and storage == "e"


# Bounds whose order differs from their names' order and from their text's order ('9' > '10').
_BOUNDS_UNLIKE_NAMES = """
CREATE TABLE readings (n int NOT NULL, taken timestamp NOT NULL) PARTITION BY RANGE (n);
CREATE TABLE readings_a PARTITION OF readings FOR VALUES FROM (10) TO (100);
CREATE TABLE readings_b PARTITION OF readings FOR VALUES FROM (9) TO (10);
CREATE TABLE readings_c PARTITION OF readings FOR VALUES FROM (MINVALUE) TO (9);
CREATE TABLE readings_z PARTITION OF readings FOR VALUES FROM (100) TO (MAXVALUE);
CREATE TABLE visits (taken timestamp NOT NULL) PARTITION BY RANGE (taken);
CREATE TABLE visits_late PARTITION OF visits FOR VALUES FROM ('2026-02-01') TO ('2026-03-01');
CREATE TABLE visits_early PARTITION OF visits FOR VALUES FROM ('2025-12-01') TO ('2026-02-01');
CREATE TABLE visits_default PARTITION OF visits DEFAULT;
"""


def test_migration_4_keeps_partition_counts_answers(new_database, monkeypatch):
    """The rewritten view (migration 4) gives the rows migration 1's view gave, column for
    column, for every key kind the view types."""
    with db.connect(new_database) as conn:
        monkeypatch.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:3])
        monkeypatch.setattr(schema, "LATEST_VERSION", 3)
        schema.bootstrap(conn)
        monkeypatch.undo()
        conn.execute(_BOUNDS_UNLIKE_NAMES)
        conn.commit()
        read = "SELECT * FROM partition_counts ORDER BY schema_name, parent_table"
        before = conn.execute(read).fetchall()
        conn.commit()
        assert schema.bootstrap(conn).applied == (4,)
        after_cursor = conn.execute(read)
        after, columns = after_cursor.fetchall(), [c.name for c in after_cursor.description]
    assert after == before
    assert columns == ["schema_name", "parent_table", "strategy", "partition_count", "default_partitions",
                       "oldest_partition", "newest_partition"]
    by_table = {row[1]: row[2:] for row in after}
    assert by_table["readings"] == ("range", 4, 0, "readings_c", "readings_z")
    assert by_table["visits"] == ("range", 3, 1, "visits_early", "visits_late")
    assert by_table["celestial_bodies_planets"] == ("hash", 4, 0, None, None)
