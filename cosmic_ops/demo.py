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


@dataclass
class _World:
    """What the tables' generators share: one random stream (so a seed gives one world, drawn in
    load order), the as-of instant, and the keys and times earlier tables fixed."""

    scale: Scale
    as_of: date
    rng: np.random.Generator
    now_us: int
    player_ids: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    save_ids: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    save_updated: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))

    def ts(self, offsets_us: np.ndarray) -> np.ndarray:
        return _ts(self.now_us, offsets_us)


def _players(w: _World) -> pd.DataFrame:
    n, rng = w.scale.players, w.rng
    w.player_ids = np.arange(1, n + 1)
    created = -rng.integers(30 * DAY_US, 900 * DAY_US, n)
    return pd.DataFrame({
        "player_id": w.player_ids,
        "username": np.char.add("gardener_", w.player_ids.astype(str)),
        "email": np.char.add(np.char.add("player", w.player_ids.astype(str)), "@example.invalid"),
        "region": rng.choice(REGIONS, n),
        "created_at": w.ts(created),
        "last_login_at": w.ts(-rng.integers(0, 60 * DAY_US, n)),
        "is_banned": rng.random(n) < 0.01,
    })


def _game_saves(w: _World) -> pd.DataFrame:
    n, rng, n_players = w.scale.saves, w.rng, w.scale.players
    w.save_ids = np.arange(1, n + 1)
    inactive = rng.random(n) < 0.30  # inactive saves are the packing job's candidates
    w.save_updated = np.where(inactive, -rng.integers(8 * DAY_US, 400 * DAY_US, n), -rng.integers(0, 6 * DAY_US, n))
    return pd.DataFrame({
        "id": w.save_ids,
        "player_id": (w.save_ids - 1) % n_players + 1,
        "slot": (w.save_ids - 1) // n_players + 1,
        "name": np.char.add("Garden ", w.save_ids.astype(str)),
        "game_version": rng.choice(np.array(["1.4.2", "1.5.0", "1.5.1"]), n),
        "universe_seed": rng.integers(0, 2**62, n),
        "play_time_s": rng.integers(600, 2_000_000, n),
        "is_active": ~inactive,
        "created_at": w.ts(w.save_updated - rng.integers(DAY_US, 300 * DAY_US, n)),
        "updated_at": w.ts(w.save_updated),
    })


def _save_resources(w: _World) -> pd.DataFrame:
    n_saves, rng = w.scale.saves, w.rng
    n = n_saves * len(RESOURCES)
    amounts = rng.gamma(2.0, 5_000.0, n).round(4)
    return pd.DataFrame({
        "save_id": np.repeat(w.save_ids, len(RESOURCES)),
        "resource_type": np.tile(RESOURCES, n_saves),
        "amount": amounts,
        "capacity": (amounts * rng.uniform(1.1, 3.0, n)).round(4),
        "production_rate": rng.normal(12.0, 4.0, n).round(3),
        "updated_at": w.ts(np.repeat(w.save_updated, len(RESOURCES))),
    })


RESEARCH_PER_SAVE = 15


def _save_research(w: _World) -> pd.DataFrame:
    n_saves, rng, per_save = w.scale.saves, w.rng, RESEARCH_PER_SAVE
    n = n_saves * per_save
    tech_pick = np.argsort(rng.random((n_saves, len(TECHS))), axis=1)[:, :per_save].ravel()
    progress = rng.random(n).round(4)
    done = progress > 0.6
    started = np.repeat(w.save_updated, per_save) - rng.integers(DAY_US, 200 * DAY_US, n)
    return pd.DataFrame({
        "save_id": np.repeat(w.save_ids, per_save),
        "tech_id": np.array(TECHS)[tech_pick],
        "level": rng.integers(0, 10, n),
        "progress": np.where(done, 1.0, progress),
        "started_at": w.ts(started),
        "completed_at": np.where(done, w.ts(started + DAY_US), ""),
    })


def _celestial_bodies(w: _World) -> pd.DataFrame:
    n, rng = w.scale.bodies, w.rng
    body_save = rng.integers(1, w.scale.saves + 1, n)
    body_type = rng.choice(BODY_TYPES, n, p=BODY_TYPE_P)
    roll = rng.random(n)
    destroyed_old = roll < 0.10  # destroyed more than 30 days ago: archive candidates
    destroyed_new = (roll >= 0.10) & (roll < 0.12)
    updated = np.where(
        destroyed_old, -rng.integers(31 * DAY_US, 420 * DAY_US, n),
        np.where(destroyed_new, -rng.integers(0, 29 * DAY_US, n), -rng.integers(0, 420 * DAY_US, n)))
    ids = np.arange(1, n + 1)
    return pd.DataFrame({
        "id": ids,
        "save_id": body_save,
        "body_type": body_type,
        "name": np.char.add(np.char.add(body_type, "-"), ids.astype(str)),
        "mass": rng.lognormal(50.0, 6.0, n),
        "radius": rng.lognormal(15.0, 3.0, n),
        "position_x": rng.normal(0, 1e12, n).round(1),
        "position_y": rng.normal(0, 1e12, n).round(1),
        "position_z": rng.normal(0, 1e10, n).round(1),
        "orbital_period_s": rng.lognormal(16.0, 2.0, n).round(2),
        "properties": _json_values("temperature_k", rng.integers(3, 40_000, n), 40_000),
        "is_destroyed": destroyed_old | destroyed_new,
        "destroyed_at": np.where(destroyed_old | destroyed_new, w.ts(updated), ""),
        "created_at": w.ts(updated - rng.integers(DAY_US, 300 * DAY_US, n)),
        "updated_at": w.ts(updated),
    })


def _event_logs(w: _World) -> pd.DataFrame:
    n, rng = w.scale.events, w.rng
    window_start = event_months(w.scale, w.as_of)[0]
    window_us = w.now_us - _epoch_us(datetime(window_start.year, window_start.month, 1, tzinfo=timezone.utc))
    # Traffic grows over time: more recent months carry more events.
    offsets = -(window_us * (1.0 - rng.random(n) ** 0.8)).astype(np.int64) - 1
    offsets.sort()
    return pd.DataFrame({
        "id": np.arange(1, n + 1),
        "server_timestamp": w.ts(offsets),
        "player_id": rng.integers(1, w.scale.players + 1, n),
        "event_type": rng.choice(EVENT_TYPES, n, p=EVENT_TYPE_P),
        "save_id": rng.integers(1, w.scale.saves + 1, n),
        "client_timestamp": w.ts(offsets - rng.integers(0, 2_000_000, n)),
        "server_region": rng.choice(REGIONS, n),
        "payload": _json_values("value", rng.integers(0, 10_000, n), 10_000),
    })


def _player_sessions(w: _World) -> pd.DataFrame:
    n, rng = w.scale.sessions, w.rng
    started = -rng.integers(0, 400 * DAY_US, n)
    return pd.DataFrame({
        "session_id": np.arange(1, n + 1),
        "player_id": rng.integers(1, w.scale.players + 1, n),
        "started_at": w.ts(started),
        "ended_at": w.ts(started + rng.integers(60_000_000, 4 * 3_600_000_000, n)),
        "client_version": rng.choice(np.array(["1.4.2", "1.5.0", "1.5.1"]), n),
        "platform": rng.choice(np.array(["pc", "mac", "switch", "mobile"]), n),
    })


def _player_statistics(w: _World, sessions: pd.DataFrame) -> pd.DataFrame:
    n, rng = w.scale.players, w.rng
    sessions_per_player = np.bincount(sessions["player_id"], minlength=n + 1)[1:]
    return pd.DataFrame({
        "player_id": w.player_ids,
        "total_playtime_s": sessions_per_player * rng.integers(600, 7_200, n),
        "sessions_count": sessions_per_player,
        "bodies_created": rng.integers(0, 5_000, n),
        "bodies_destroyed": rng.integers(0, 500, n),
        "research_completed": rng.integers(0, 30, n),
        "updated_at": w.ts(-rng.integers(0, 30 * DAY_US, n)),
    })


def generate(scale: Scale, seed: int, as_of: date) -> dict[str, pd.DataFrame]:
    """Every table's rows as DataFrames, in load order (parents before children). The order of
    the calls is the order of the draws from the one random stream: keep it."""
    now_us = _epoch_us(datetime(as_of.year, as_of.month, as_of.day, tzinfo=timezone.utc))
    w = _World(scale, as_of, np.random.default_rng(seed), now_us)
    frames = {"players": _players(w), "game_saves": _game_saves(w), "save_resources": _save_resources(w),
              "save_research": _save_research(w), "celestial_bodies": _celestial_bodies(w),
              "event_logs": _event_logs(w), "player_sessions": _player_sessions(w)}
    frames["player_statistics"] = _player_statistics(w, frames["player_sessions"])
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
    report.seconds = time.perf_counter() - started
    return report
