"""Demo data: row counts, months, determinism, all-or-nothing reload."""

from __future__ import annotations

from datetime import date

import pytest

from cosmic_ops import db, demo, schema
from cosmic_ops.partitions import list_partitions

AS_OF = date(2026, 11, 21)


@pytest.fixture(scope="module")
def loaded(bootstrapped_database):
    with db.connect(bootstrapped_database) as conn:
        report = demo.load(conn, "small", seed=7, as_of=AS_OF)
    return bootstrapped_database, report


def _count(conn, table, where="true"):
    from psycopg import sql
    return conn.execute(sql.SQL("SELECT count(*) FROM {} WHERE " + where).format(sql.Identifier(table))).fetchone()[0]


@pytest.mark.slow
def test_small_scale_row_counts(loaded):
    url, report = loaded
    scale = demo.SCALES["small"]
    with db.connect(url) as conn:
        assert _count(conn, "players") == scale.players
        assert _count(conn, "game_saves") == scale.saves
        assert _count(conn, "celestial_bodies") == scale.bodies
        assert _count(conn, "event_logs") == scale.events
        assert _count(conn, "save_resources") == scale.saves * len(demo.RESOURCES)
        assert _count(conn, "save_research") == scale.saves * 15
        assert _count(conn, "player_statistics") == scale.players
        assert _count(conn, "player_sessions") == scale.sessions
    assert report.total_rows == sum(report.rows.values()) and report.rows_per_s > 0


@pytest.mark.slow
def test_proportions_match_the_issue(loaded):
    url, _ = loaded
    with db.connect(url) as conn:
        old_destroyed = _count(conn, "celestial_bodies",
                               "is_destroyed AND updated_at < timestamptz '2026-11-21' - interval '30 days'")
        inactive = _count(conn, "game_saves",
                          "NOT is_active AND updated_at < timestamptz '2026-11-21' - interval '7 days'")
        types = {r[0] for r in conn.execute("SELECT DISTINCT body_type FROM celestial_bodies")}
    assert 0.08 < old_destroyed / demo.SCALES["small"].bodies < 0.12
    assert 0.25 < inactive / demo.SCALES["small"].saves < 0.35
    assert types == set(demo.BODY_TYPES)


@pytest.mark.slow
def test_event_logs_span_15_months_and_nothing_lands_in_default(loaded):
    url, _ = loaded
    with db.connect(url) as conn:
        months = [p.lower_month() for p in list_partitions(conn, "event_logs") if not p.is_default]
        in_default = _count(conn, "event_logs_default")
        per_month = conn.execute(
            "SELECT count(DISTINCT date_trunc('month', server_timestamp AT TIME ZONE 'UTC')) FROM event_logs"
        ).fetchone()[0]
    assert months[0] == date(2025, 9, 1) and months[-1] == date(2026, 11, 1)
    assert len(months) == 15
    assert in_default == 0
    assert per_month == 15


@pytest.mark.slow
def test_sequences_continue_after_loaded_ids(loaded):
    url, _ = loaded
    with db.connect(url) as conn:
        new_id = conn.execute(
            "INSERT INTO event_logs (player_id, event_type, server_timestamp) "
            "VALUES (1, 'player_login', timestamptz '2026-11-20 12:00+00') RETURNING id").fetchone()[0]
        conn.rollback()
    assert new_id == demo.SCALES["small"].events + 1


def test_generation_is_deterministic_for_a_seed():
    scale = demo.Scale(players=20, saves=40, bodies=500, events=800, sessions=50)
    first = demo.generate(scale, 99, AS_OF)
    again = demo.generate(scale, 99, AS_OF)
    other = demo.generate(scale, 100, AS_OF)
    for table in first:
        assert first[table].equals(again[table]), table
    assert not first["celestial_bodies"].equals(other["celestial_bodies"])


@pytest.mark.slow
def test_loading_twice_is_refused_and_changes_nothing(loaded):
    url, _ = loaded
    with db.connect(url) as conn:
        before = _count(conn, "event_logs")
        with pytest.raises(demo.DemoDataPresent):
            demo.load(conn, "small", seed=8, as_of=AS_OF)
        conn.rollback()
        assert _count(conn, "event_logs") == before


@pytest.mark.slow
def test_replace_reloads_identically(new_database):
    with db.connect(new_database) as conn:
        schema.bootstrap(conn)
        demo.load(conn, "small", seed=3, as_of=AS_OF)
        first = conn.execute("SELECT md5(string_agg(b::text, ',' ORDER BY id)) FROM celestial_bodies b").fetchone()
        demo.load(conn, "small", seed=3, as_of=AS_OF, replace=True)
        second = conn.execute("SELECT md5(string_agg(b::text, ',' ORDER BY id)) FROM celestial_bodies b").fetchone()
        assert _count(conn, "players") == demo.SCALES["small"].players
    assert first == second


def test_unknown_scale_is_an_error(conn):
    with pytest.raises(ValueError, match="unknown scale"):
        demo.load(conn, "huge", as_of=AS_OF)
