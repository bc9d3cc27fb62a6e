"""Deterministic synthetic Cosmic Gardener data, loaded with COPY (SPEC §3.1).

Columns are generated as numpy arrays and streamed as CSV through ``COPY ... FROM
STDIN`` in chunks, so the cost is dominated by PostgreSQL, not by Python. For a
given ``seed`` and ``as_of`` date the data is identical run after run.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timezone

import numpy as np
import pandas as pd
import psycopg
from psycopg import sql

from . import schema
from .timeutil import add_months, month_start

DAY_US = 86_400 * 1_000_000


@dataclass(frozen=True)
class Scale:
    players: int
    saves: int
    bodies: int
    events: int
    sessions: int
    months: int = 15


SCALES = {
    "small": Scale(players=200, saves=500, bodies=25_000, events=100_000, sessions=2_500),
    "default": Scale(players=8_000, saves=20_000, bodies=1_000_000, events=5_000_000, sessions=100_000),
}

BODY_TYPES = np.array(["star", "planet", "moon", "asteroid", "comet", "dust_cloud", "black_hole"])
BODY_TYPE_P = np.array([0.08, 0.27, 0.30, 0.17, 0.09, 0.085, 0.005])
RESOURCES = ["energy", "metal", "crystal", "gas", "water", "biomass", "dark_matter", "credits"]
TECHS = [f"tech_{name}" for name in (
    "fusion", "warp", "terraforming", "gravity_lens", "ion_drive", "stellar_lift", "dyson_swarm",
    "nanoforge", "cryo_storage", "quantum_comms", "biodome", "orbital_ring", "asteroid_mining",
    "comet_harvest", "nebula_scoop", "singularity", "solar_sails", "planet_cracker", "moon_base",
    "hab_module", "ai_governor", "xeno_botany", "dark_energy", "time_dilation", "shield_grid",
    "mass_driver", "star_seeding", "void_anchor", "hyperlane", "genesis")]
EVENT_TYPES = np.array([
    "celestial_body_created", "celestial_body_destroyed", "resource_collected", "research_completed",
    "player_login", "player_logout", "orbit_adjusted", "achievement_unlocked"])
EVENT_TYPE_P = np.array([0.18, 0.05, 0.40, 0.04, 0.08, 0.08, 0.15, 0.02])
REGIONS = np.array(["eu", "na", "sa", "asia", "oce"])


@dataclass
class LoadReport:
    scale: str
    seed: int
    as_of: date
    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())

    @property
    def rows_per_s(self) -> float:
        return self.total_rows / self.seconds if self.seconds else 0.0


class DemoDataPresent(RuntimeError):
    """The database already holds game data; loading again would mix two worlds."""


def _ts(base_us: int, offsets_us: np.ndarray) -> np.ndarray:
    """ISO-8601 strings, in UTC, for microsecond offsets from ``base_us`` (epoch µs).

    No offset suffix (appending one costs as much as the formatting): ``load`` runs
    COPY with ``TimeZone = 'UTC'``, which is how PostgreSQL then reads them.
    """
    return np.datetime_as_string((base_us + offsets_us).astype("datetime64[us]"), unit="us")


def _json_values(key: str, values: np.ndarray, distinct: int) -> np.ndarray:
    """``{"key": v}`` strings for small non-negative ints, via a lookup table (string
    concatenation per row is the slowest part of generation)."""
    table = np.array([f'{{"{key}": {i}}}' for i in range(distinct)])
    return table[values]


def _copy_frame(conn: psycopg.Connection, table: str, frame: pd.DataFrame, chunk: int = 250_000) -> int:
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in frame.columns)
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(sql.Identifier(table), columns)
    with conn.cursor().copy(statement) as copy:
        for start in range(0, len(frame), chunk):
            buffer = io.StringIO()
            frame.iloc[start:start + chunk].to_csv(buffer, header=False, index=False, na_rep="")
            copy.write(buffer.getvalue())
    return len(frame)


def _epoch_us(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


def generate(scale: Scale, seed: int, as_of: date) -> dict[str, pd.DataFrame]:
    """Every table's rows as DataFrames, in load order (parents before children)."""
    rng = np.random.default_rng(seed)
    now_us = _epoch_us(datetime(as_of.year, as_of.month, as_of.day, tzinfo=timezone.utc))
    frames: dict[str, pd.DataFrame] = {}

    n_players = scale.players
    player_ids = np.arange(1, n_players + 1)
    player_created = -rng.integers(30 * DAY_US, 900 * DAY_US, n_players)
    frames["players"] = pd.DataFrame({
        "player_id": player_ids,
        "username": np.char.add("gardener_", player_ids.astype(str)),
        "email": np.char.add(np.char.add("player", player_ids.astype(str)), "@example.invalid"),
        "region": rng.choice(REGIONS, n_players),
        "created_at": _ts(now_us, player_created),
        "last_login_at": _ts(now_us, -rng.integers(0, 60 * DAY_US, n_players)),
        "is_banned": rng.random(n_players) < 0.01,
    })

    n_saves = scale.saves
    save_ids = np.arange(1, n_saves + 1)
    inactive = rng.random(n_saves) < 0.30
    save_updated = np.where(
        inactive,
        -rng.integers(8 * DAY_US, 400 * DAY_US, n_saves),
        -rng.integers(0, 6 * DAY_US, n_saves),
    )
    frames["game_saves"] = pd.DataFrame({
        "id": save_ids,
        "player_id": (save_ids - 1) % n_players + 1,
        "slot": (save_ids - 1) // n_players + 1,
        "name": np.char.add("Garden ", save_ids.astype(str)),
        "game_version": rng.choice(np.array(["1.4.2", "1.5.0", "1.5.1"]), n_saves),
        "universe_seed": rng.integers(0, 2**62, n_saves),
        "play_time_s": rng.integers(600, 2_000_000, n_saves),
        "is_active": ~inactive,
        "created_at": _ts(now_us, save_updated - rng.integers(DAY_US, 300 * DAY_US, n_saves)),
        "updated_at": _ts(now_us, save_updated),
    })

    n_res = n_saves * len(RESOURCES)
    amounts = rng.gamma(2.0, 5_000.0, n_res).round(4)
    frames["save_resources"] = pd.DataFrame({
        "save_id": np.repeat(save_ids, len(RESOURCES)),
        "resource_type": np.tile(RESOURCES, n_saves),
        "amount": amounts,
        "capacity": (amounts * rng.uniform(1.1, 3.0, n_res)).round(4),
        "production_rate": rng.normal(12.0, 4.0, n_res).round(3),
        "updated_at": _ts(now_us, np.repeat(save_updated, len(RESOURCES))),
    })

    per_save = 15
    tech_pick = np.argsort(rng.random((n_saves, len(TECHS))), axis=1)[:, :per_save].ravel()
    progress = rng.random(n_saves * per_save).round(4)
    done = progress > 0.6
    research_start = np.repeat(save_updated, per_save) - rng.integers(DAY_US, 200 * DAY_US, n_saves * per_save)
    frames["save_research"] = pd.DataFrame({
        "save_id": np.repeat(save_ids, per_save),
        "tech_id": np.array(TECHS)[tech_pick],
        "level": rng.integers(0, 10, n_saves * per_save),
        "progress": np.where(done, 1.0, progress),
        "started_at": _ts(now_us, research_start),
        "completed_at": np.where(done, _ts(now_us, research_start + DAY_US), ""),
    })

    n_bodies = scale.bodies
    body_save = rng.integers(1, n_saves + 1, n_bodies)
    body_type = rng.choice(BODY_TYPES, n_bodies, p=BODY_TYPE_P)
    roll = rng.random(n_bodies)
    destroyed_old = roll < 0.10  # destroyed more than 30 days ago: archive candidates
    destroyed_new = (roll >= 0.10) & (roll < 0.12)
    body_updated = np.where(
        destroyed_old, -rng.integers(31 * DAY_US, 420 * DAY_US, n_bodies),
        np.where(destroyed_new, -rng.integers(0, 29 * DAY_US, n_bodies),
                 -rng.integers(0, 420 * DAY_US, n_bodies)))
    mass = rng.lognormal(50.0, 6.0, n_bodies)
    frames["celestial_bodies"] = pd.DataFrame({
        "id": np.arange(1, n_bodies + 1),
        "save_id": body_save,
        "body_type": body_type,
        "name": np.char.add(np.char.add(body_type, "-"), np.arange(1, n_bodies + 1).astype(str)),
        "mass": mass,
        "radius": rng.lognormal(15.0, 3.0, n_bodies),
        "position_x": rng.normal(0, 1e12, n_bodies).round(1),
        "position_y": rng.normal(0, 1e12, n_bodies).round(1),
        "position_z": rng.normal(0, 1e10, n_bodies).round(1),
        "orbital_period_s": rng.lognormal(16.0, 2.0, n_bodies).round(2),
        "properties": _json_values("temperature_k", rng.integers(3, 40_000, n_bodies), 40_000),
        "is_destroyed": destroyed_old | destroyed_new,
        "destroyed_at": np.where(destroyed_old | destroyed_new, _ts(now_us, body_updated), ""),
        "created_at": _ts(now_us, body_updated - rng.integers(DAY_US, 300 * DAY_US, n_bodies)),
        "updated_at": _ts(now_us, body_updated),
    })

    window_start = month_start(add_months(as_of, -(scale.months - 1)))
    window_us = now_us - _epoch_us(datetime(window_start.year, window_start.month, 1, tzinfo=timezone.utc))
    # Traffic grows over time: more recent months carry more events.
    event_offsets = -(window_us * (1.0 - rng.random(scale.events) ** 0.8)).astype(np.int64) - 1
    event_offsets.sort()
    n_events = scale.events
    event_player = rng.integers(1, n_players + 1, n_events)
    frames["event_logs"] = pd.DataFrame({
        "id": np.arange(1, n_events + 1),
        "server_timestamp": _ts(now_us, event_offsets),
        "player_id": event_player,
        "event_type": rng.choice(EVENT_TYPES, n_events, p=EVENT_TYPE_P),
        "save_id": rng.integers(1, n_saves + 1, n_events),
        "client_timestamp": _ts(now_us, event_offsets - rng.integers(0, 2_000_000, n_events)),
        "server_region": rng.choice(REGIONS, n_events),
        "payload": _json_values("value", rng.integers(0, 10_000, n_events), 10_000),
    })

    n_sessions = scale.sessions
    session_start = -rng.integers(0, 400 * DAY_US, n_sessions)
    frames["player_sessions"] = pd.DataFrame({
        "session_id": np.arange(1, n_sessions + 1),
        "player_id": rng.integers(1, n_players + 1, n_sessions),
        "started_at": _ts(now_us, session_start),
        "ended_at": _ts(now_us, session_start + rng.integers(60_000_000, 4 * 3_600_000_000, n_sessions)),
        "client_version": rng.choice(np.array(["1.4.2", "1.5.0", "1.5.1"]), n_sessions),
        "platform": rng.choice(np.array(["pc", "mac", "switch", "mobile"]), n_sessions),
    })

    sessions_per_player = np.bincount(frames["player_sessions"]["player_id"], minlength=n_players + 1)[1:]
    frames["player_statistics"] = pd.DataFrame({
        "player_id": player_ids,
        "total_playtime_s": sessions_per_player * rng.integers(600, 7_200, n_players),
        "sessions_count": sessions_per_player,
        "bodies_created": rng.integers(0, 5_000, n_players),
        "bodies_destroyed": rng.integers(0, 500, n_players),
        "research_completed": rng.integers(0, 30, n_players),
        "updated_at": _ts(now_us, -rng.integers(0, 30 * DAY_US, n_players)),
    })
    return frames


def event_months(scale: Scale, as_of: date) -> list[date]:
    """The months the generated event_logs rows fall in, oldest first."""
    first = month_start(add_months(as_of, -(scale.months - 1)))
    return [add_months(first, i) for i in range(scale.months)]


def _has_game_data(conn: psycopg.Connection) -> bool:
    return conn.execute(
        "SELECT EXISTS (SELECT 1 FROM players) OR EXISTS (SELECT 1 FROM event_logs)"
    ).fetchone()[0]


def load(
    conn: psycopg.Connection,
    scale_name: str = "small",
    *,
    seed: int = 42,
    as_of: date,
    replace: bool = False,
) -> LoadReport:
    """Fill a bootstrapped database in one transaction (all or nothing), with data as of ``as_of``
    (the caller's one clock: the CLI's --as-of or today, the tests' session clock)."""
    from .partitions import ensure_month_partitions

    if scale_name not in SCALES:
        raise ValueError(f"unknown scale {scale_name!r}; choose one of {sorted(SCALES)}")
    scale = SCALES[scale_name]
    if schema.current_version(conn) < schema.LATEST_VERSION:
        raise RuntimeError("schema is not bootstrapped: run `cosmic-ops db init` first")
    report = LoadReport(scale=scale_name, seed=seed, as_of=as_of)
    started = time.perf_counter()
    frames = generate(scale, seed, as_of)
    with conn.transaction():
        conn.execute("SET LOCAL TimeZone = 'UTC'")  # generated timestamps carry no offset
        if _has_game_data(conn):
            if not replace:
                raise DemoDataPresent(
                    "the database already holds game data; pass --replace to wipe it and load again"
                )
            conn.execute(
                sql.SQL("TRUNCATE {} RESTART IDENTITY CASCADE").format(
                    sql.SQL(", ").join(sql.Identifier(t) for t in schema.MANAGED_TABLES)
                )
            )
        # Months must exist before COPY, or every row would land in DEFAULT.
        ensure_month_partitions(conn, "event_logs", event_months(scale, as_of))
        for table, frame in frames.items():
            report.rows[table] = _copy_frame(conn, table, frame)
        for table, column in (("celestial_bodies", "id"), ("event_logs", "id"), ("players", "player_id"),
                              ("game_saves", "id"), ("player_sessions", "session_id")):
            conn.execute(
                sql.SQL("SELECT setval(pg_get_serial_sequence({t}, {c}), (SELECT max({ci}) FROM {ti}))").format(
                    t=sql.Literal(table), c=sql.Literal(column), ci=sql.Identifier(column), ti=sql.Identifier(table)
                )
            )
    for table in frames:
        conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(table)))
    if not conn.autocommit:
        conn.commit()
    report.seconds = time.perf_counter() - started
    return report
