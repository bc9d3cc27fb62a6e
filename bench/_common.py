"""What the benchmarks that play the game with pgbench share: scratch databases, the demo
database, the game's pgbench script, pgbench at a fixed rate with per-transaction logs,
and latency figures taken from those logs.

Imported by the scripts in ``bench/`` after they put the repository on ``sys.path``.
cosmic_ops.demo (numpy, pandas) is imported where it is used: worker processes are
spawned and re-import the running script, which would otherwise charge each worker a
second of imports.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Callable, Iterator, Sequence

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from cosmic_ops import db, schema

# Game traffic: every transaction logs an event (the game's own clock: now()) and moves a
# live body; ``game_script`` appends what else a transaction does.
GAME_VARIABLES = r"""
\set pid random(1, :players)
\set bid random(1, :bodies)
"""
GAME_WRITES = """\
INSERT INTO event_logs (player_id, event_type, server_timestamp) VALUES (:pid, 'orbit_adjusted', now());
UPDATE celestial_bodies SET position_x = position_x + 1.0, updated_at = now() WHERE id = :bid AND NOT is_destroyed;
"""


def game_script(*statements: str) -> str:
    """One game transaction: the writes every benchmark's game does, then ``statements``."""
    return GAME_VARIABLES + "BEGIN;\n" + GAME_WRITES + "".join(statements) + "END;\n"


# --- scratch databases ----------------------------------------------------------------------
class Server:
    """Databases this benchmark created on one server, dropped at the end."""

    def __init__(self, conninfo: str):
        self.conninfo = conninfo
        self.created: list[str] = []

    def url(self, name: str) -> str:
        return db.with_database(self.conninfo, name)

    def clone(self, name: str, template: str, *statements: str) -> str:
        """A copy of ``template`` with ``statements`` run in it, after a checkpoint.

        The checkpoint gives every contender the same start: the first change of each
        page after it writes a full-page image to WAL.
        """
        url = self.create(name, template)
        with psycopg.connect(url) as conn:
            for statement in statements:
                conn.execute(sql.SQL(statement))
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CHECKPOINT")
        return url

    def create(self, name: str, template: str | None = None) -> str:
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
            if template:
                statement = sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY").format(
                    sql.Identifier(name), sql.Identifier(template))
            conn.execute(statement)
        self.created.append(name)
        return self.url(name)

    def drop(self, name: str) -> None:
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        self.created.remove(name)

    def drop_all(self) -> None:
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            for name in reversed(self.created):
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def build_demo(server: Server, name: str, scale: str, *, as_of: date,
               reshape: Callable[[psycopg.Connection], None] | None = None) -> tuple[str, int, int]:
    """A new database with the demo data (seed 2026), ``reshape``d, vacuumed and analyzed.

    Returns its conninfo and the game's ranges: the highest player id and body id.
    """
    url = server.create(name)
    with db.connect(url) as conn:
        schema.bootstrap(conn)
        from cosmic_ops import demo

        demo.load(conn, scale, seed=2026, as_of=as_of)
        if reshape is not None:
            reshape(conn)
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")
        players, bodies = conn.execute("SELECT (SELECT max(player_id) FROM players), "
                                       "(SELECT max(id) FROM celestial_bodies)").fetchone()
    return url, players, bodies


def due_months(conn: psycopg.Connection, table: str, where: str):
    """The months (UTC, by ``updated_at``) of the rows of ``table`` that match ``where``."""
    rows = conn.execute(
        sql.SQL("SELECT DISTINCT date_trunc('month', updated_at AT TIME ZONE 'UTC')::date FROM {} WHERE {} "
                "ORDER BY 1").format(sql.Identifier(table), sql.SQL(where))).fetchall()
    conn.commit()
    return [r[0] for r in rows]


def scalar(url: str, query: str | sql.Composable):
    with psycopg.connect(url) as conn:
        return conn.execute(sql.SQL(query) if isinstance(query, str) else query).fetchone()[0]


# --- pgbench --------------------------------------------------------------------------------
@dataclass
class Latency:
    transactions: int
    p99_ms: float
    mean_ms: float
    max_ms: float = float("nan")

    @classmethod
    def of(cls, samples: list[tuple[float, float]]) -> "Latency":
        values = sorted(latency for _, latency in samples)
        if not values:
            return cls(0, float("nan"), float("nan"))
        return cls(len(values), values[min(len(values) - 1, int(0.99 * len(values)))], statistics.fmean(values),
                   values[-1])


class Workload:
    """pgbench at a fixed rate in the background, with per-transaction logging."""

    def __init__(self, url: str, players: int, bodies: int, rate: int, clients: int = 8, *,
                 script: str = game_script(), protocol: str | None = None, binary: str | os.PathLike | None = None):
        self.url, self.rate, self.clients, self.protocol = url, rate, clients, protocol
        self.players, self.bodies = players, bodies
        self.dir = Path(tempfile.mkdtemp(prefix="bench_pgbench_"))
        (self.dir / "game.sql").write_text(script)
        self.binary = str(binary or shutil.which("pgbench") or "/usr/bin/pgbench")

    def _env(self) -> dict[str, str]:
        params = conninfo_to_dict(self.url)
        env = dict(os.environ)
        for key, var in (("host", "PGHOST"), ("port", "PGPORT"), ("user", "PGUSER"), ("dbname", "PGDATABASE"),
                         ("password", "PGPASSWORD")):
            if params.get(key):
                env[var] = str(params[key])
        return env

    def start(self, seconds: float, tag: str, extra: Sequence[str] = ()) -> subprocess.Popen:
        """pgbench for ``seconds``, logging each transaction to ``<tag>.*``; its summary on stdout,
        its errors (one line per aborted client) on stderr, both piped."""
        prefix = self.dir / tag
        protocol = ["-M", self.protocol] if self.protocol else []
        return subprocess.Popen(
            [self.binary, "-n", "-f", str(self.dir / "game.sql"), "-R", str(self.rate), "-T", str(int(seconds)),
             "-c", str(self.clients), "-j", "2", "-D", f"players={self.players}", "-D", f"bodies={self.bodies}",
             *protocol, *extra, "--log", f"--log-prefix={prefix}"],
            env=self._env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def _records(self, tag: str, window: tuple[float, float] | None) -> Iterator[tuple[int, float, str]]:
        """(client, end time, latency field) of every logged transaction of the run ``tag`` that ended in
        ``window``. The latency field is microseconds, or what ended the transaction instead
        (``failed``, ``serialization``, ``deadlock``; ``skipped`` with ``-L``)."""
        for path in self.dir.glob(f"{tag}.*"):
            for line in path.read_text().splitlines():
                fields = line.split()
                if len(fields) < 6:
                    continue
                end = int(fields[4]) + int(fields[5]) / 1e6
                if window is None or window[0] <= end <= window[1]:
                    yield int(fields[0]), end, fields[2]

    def samples(self, tag: str, window: tuple[float, float] | None = None) -> list[tuple[float, float]]:
        """(end time, latency ms) of every completed transaction of the run ``tag`` that ended in ``window``."""
        return [(end, int(latency) / 1000) for _, end, latency in self._records(tag, window) if latency.isdigit()]

    def failures(self, tag: str, window: tuple[float, float] | None = None) -> int:
        """Transactions of the run ``tag`` logged as failed (serialization, deadlock) that ended in ``window``."""
        return sum(1 for _, _, latency in self._records(tag, window) if latency != "skipped" and not latency.isdigit())

    def last_end(self, tag: str, client: int) -> float | None:
        """When the last logged transaction of ``client`` in the run ``tag`` ended (None: it logged none)."""
        return max((end for c, end, _ in self._records(tag, None) if c == client), default=None)

    def cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def wait(process: subprocess.Popen) -> None:
    _, err = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"pgbench failed: {err.strip()[-500:]}")
