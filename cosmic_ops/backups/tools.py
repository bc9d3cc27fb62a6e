"""Locating and running the PostgreSQL client programs (pg_dump, pg_restore).

A dump must be made by a pg_dump whose major version is at least the server's;
we look in PATH, ``/usr/lib/postgresql/*/bin`` and the embedded server's bin dir
and pick the closest fitting major. The password travels in ``PGPASSWORD``,
never on the command line, and no conninfo reaches a log or an error unredacted.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from ..db import redact

PROGRAMS = ("pg_dump", "pg_restore")
_VERSION_RE = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")


class PgClientNotFound(RuntimeError):
    """No pg_dump/pg_restore pair fits the server; the message lists what was found."""


class PgToolFailed(RuntimeError):
    """A client program exited non-zero; the message carries its (redacted) stderr."""


@dataclass(frozen=True)
class PgClient:
    bin_dir: Path
    major: int
    version: str

    @property
    def pg_dump(self) -> Path:
        return self.bin_dir / "pg_dump"

    @property
    def pg_restore(self) -> Path:
        return self.bin_dir / "pg_restore"

    def describe(self) -> str:
        return f"{self.bin_dir} (PostgreSQL {self.version})"


def _probe(bin_dir: Path) -> Optional[PgClient] | str:
    """The client in ``bin_dir``, or a one-line reason it is unusable."""
    missing = [p for p in PROGRAMS if not os.access(bin_dir / p, os.X_OK)]
    if missing:
        return f"{bin_dir}: no executable {', '.join(missing)}"
    try:
        out = subprocess.run(
            [str(bin_dir / "pg_dump"), "--version"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{bin_dir}: pg_dump --version failed ({exc.__class__.__name__})"
    match = _VERSION_RE.search(out)
    if not match:
        return f"{bin_dir}: unrecognised version output {out.strip()!r}"
    version = match.group(1) + (f".{match.group(2)}" if match.group(2) else "")
    return PgClient(bin_dir=bin_dir, major=int(match.group(1)), version=version)


def candidate_bin_dirs() -> list[Path]:
    dirs: list[Path] = []
    on_path = shutil.which("pg_dump")
    if on_path:
        dirs.append(Path(on_path).parent)
    dirs.extend(Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin")))
    try:
        from ..embedded import embedded_bin_dir

        dirs.append(embedded_bin_dir())
    except Exception:  # the embedded wheel is optional at runtime
        pass
    unique: list[Path] = []
    for d in dirs:
        if d not in unique:
            unique.append(d)
    return unique


def find_client(server_version_num: int, bin_dir: str | Path | None = None) -> PgClient:
    """The pg_dump/pg_restore pair to use against a server of ``server_version_num``.

    With ``bin_dir`` only that directory is considered (a wrong path fails, it does
    not silently fall back). Otherwise the lowest major >= the server's wins.
    """
    server_major = server_version_num // 10000
    dirs = [Path(bin_dir)] if bin_dir else candidate_bin_dirs()
    found: list[PgClient] = []
    notes: list[str] = []
    for d in dirs:
        probed = _probe(d)
        if isinstance(probed, PgClient):
            found.append(probed)
            notes.append(f"{d}: PostgreSQL {probed.version}")
        else:
            notes.append(probed)
    fitting = [c for c in found if c.major >= server_major]
    if not fitting:
        seen = "; ".join(notes) if notes else "no pg_dump in PATH, /usr/lib/postgresql/*/bin or the embedded server"
        raise PgClientNotFound(
            f"no pg_dump/pg_restore with major version >= {server_major} (the server runs "
            f"{server_version_num}); found: {seen}. Install postgresql-client-{server_major} "
            "or newer, or point the backup store's pg_bin_dir at one."
        )
    return min(fitting, key=lambda c: c.major)


def client_for(conn, bin_dir: str | Path | None = None) -> PgClient:
    return find_client(conn.info.server_version, bin_dir)


def _split_password(conninfo: str) -> tuple[str, Optional[str]]:
    params = conninfo_to_dict(conninfo)
    password = params.pop("password", None)
    return make_conninfo(**params), password


def _scrub(text: str, conninfo: str, password: Optional[str]) -> str:
    if password:
        text = text.replace(password, "****")
    return text.replace(conninfo, redact(conninfo))


def _command(client: PgClient, program: str, args: Sequence[str], conninfo: Optional[str]
             ) -> tuple[list[str], dict[str, str], Optional[str]]:
    """argv with ``--dbname`` = conninfo minus its password; the password in the env."""
    if program not in PROGRAMS:
        raise ValueError(f"unknown client program {program!r}")
    env = dict(os.environ)
    env.pop("PGPASSWORD", None)
    password = None
    argv = [str(client.bin_dir / program)]
    if conninfo is not None:
        safe_conninfo, password = _split_password(conninfo)
        argv.append(f"--dbname={safe_conninfo}")
        if password:
            env["PGPASSWORD"] = password
    argv.extend(str(a) for a in args)
    return argv, env, password


def _failure(what: str, program: str, code: int, output: str, conninfo: Optional[str],
             password: Optional[str]) -> PgToolFailed:
    detail = _scrub(output.strip(), conninfo or "", password)
    return PgToolFailed(f"{what}: {program} exited with {code}: {detail[-2000:]}")


# Client programs (pg_dump's compression, pg_restore's parsing) run at the lowest CPU and I/O
# priority: on a small server they share cores with the game's backends, which must win.
MAINTENANCE_NICENESS = 19


def _yield_to_the_game() -> None:
    os.nice(MAINTENANCE_NICENESS)


def run_tool(
    client: PgClient,
    program: str,
    args: Sequence[str],
    *,
    conninfo: Optional[str] = None,
    what: str,
    stdout=None,
) -> subprocess.CompletedProcess | subprocess.Popen:
    """Run ``program`` with ``--dbname`` built from ``conninfo`` minus its password.

    With ``stdout=subprocess.PIPE`` the process is returned running (for streaming);
    otherwise it is waited for and a non-zero exit raises ``PgToolFailed``.
    """
    argv, env, password = _command(client, program, args, conninfo)
    if stdout is subprocess.PIPE:
        return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                preexec_fn=_yield_to_the_game)
    try:
        done = subprocess.run(argv, env=env, capture_output=True, text=True, preexec_fn=_yield_to_the_game)
    except OSError as exc:
        raise PgToolFailed(f"{what}: cannot run {argv[0]}: {exc.strerror}") from None
    if done.returncode != 0:
        raise _failure(what, program, done.returncode, done.stderr or done.stdout or "", conninfo, password)
    return done


class RunningTool:
    """A client program started in the background (its stderr kept in a temp file so a
    chatty program never blocks on a full pipe); ``wait`` raises on a non-zero exit."""

    def __init__(self, client: PgClient, program: str, args: Sequence[str], *, conninfo: Optional[str],
                 what: str):
        argv, env, self._password = _command(client, program, args, conninfo)
        self._program, self._what, self._conninfo = program, what, conninfo
        self._stderr = tempfile.TemporaryFile()
        try:
            self._process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=self._stderr,
                                             preexec_fn=_yield_to_the_game)
        except OSError as exc:
            self._stderr.close()
            raise PgToolFailed(f"{what}: cannot run {argv[0]}: {exc.strerror}") from None

    def wait(self) -> None:
        try:
            code = self._process.wait()
            if code != 0:
                self._stderr.seek(0)
                output = self._stderr.read().decode(errors="replace")
                raise _failure(self._what, self._program, code, output, self._conninfo, self._password)
        finally:
            self._stderr.close()

    def kill(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._stderr.close()


def toc_entries(client: PgClient, archive: Path) -> list[str]:
    """``pg_restore --list`` lines that name an entry (comments dropped)."""
    listing = run_tool(client, "pg_restore", ["--list", str(archive)], what=f"list {archive.name}")
    return [line for line in listing.stdout.splitlines() if line and not line.startswith(";")]


# TOC descriptions, longest first so "TABLE DATA" is not read as "TABLE".
_TOC_DESCS = sorted(
    ("TABLE", "TABLE DATA", "TABLE ATTACH", "SEQUENCE", "SEQUENCE SET", "SEQUENCE OWNED BY",
     "CONSTRAINT", "INDEX", "INDEX ATTACH", "DEFAULT", "COMMENT", "ACL", "SCHEMA", "EXTENSION"),
    key=len, reverse=True,
)
_TOC_LINE_RE = re.compile(r"^\d+;\s+\d+\s+\d+\s+(.*)$")


def toc_desc(line: str) -> Optional[str]:
    match = _TOC_LINE_RE.match(line)
    if not match:
        return None
    rest = match.group(1)
    return next((d for d in _TOC_DESCS if rest.startswith(d + " ")), None)


def select_toc(entries: Sequence[str], descs: Sequence[str]) -> list[str]:
    return [line for line in entries if toc_desc(line) in descs]
