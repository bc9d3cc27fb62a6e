"""The backup store: one folder per backup generation, each with a manifest.

Layout under the root::

    <database>/<table>/<YYYY-MM>/<generation>/manifest.json, <file>, verification.json
    <database>/<table>/<YYYY-MM>/retirement.json        (retention journal)
    <database>/<table>/<YYYY-MM>/restores.json          (every restore of the month, oldest first)
    <database>/full/<generation>/manifest.json, dump/, verification.json

A generation is built in a ``.staging-*`` folder and renamed into place only when
its dump and manifest are complete, so a reader never sees a partial backup and a
failed or killed run leaves nothing under a generation name.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import secrets
import shutil
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Optional

MANIFEST = "manifest.json"
VERIFICATION = "verification.json"
RETIREMENT = "retirement.json"
RESTORES = "restores.json"
STAGING_PREFIX = ".staging-"
_SAFE_SEGMENT = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")


class BackupStoreError(RuntimeError):
    """The store cannot be used (missing, not a folder, not writable)."""


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _segment(name: str) -> str:
    """A path segment for a database/table name; odd names get a stable hashed form."""
    if _SAFE_SEGMENT.match(name) and not name.startswith("."):
        return name
    return "x-" + hashlib.sha256(name.encode()).hexdigest()[:16]


def sha256_of(path: Path) -> str:
    """Of a file, or of a directory as (relative name, content) of each file in name order."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        with open(file, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def size_of(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def _write_json_atomic(path: Path, payload: dict) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    with open(tmp, "w") as handle:
        json.dump(payload, handle, indent=2, sort_keys=True, default=str)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


@dataclass(frozen=True)
class Manifest:
    """What a backup holds, as measured in the same snapshot pg_dump used."""

    kind: str  # "month" | "full"
    database: str
    generation: str
    file: str  # relative to the generation folder
    bytes: int
    sha256: str
    created_at: str
    seconds: float
    server_version: str
    server_version_num: int
    client: str
    table: Optional[str] = None  # parent, qualified
    partition: Optional[str] = None  # qualified, as dumped
    partition_schema: Optional[str] = None
    partition_name: Optional[str] = None
    month: Optional[str] = None
    lower_bound: Optional[str] = None  # the partition's bounds as the catalog had them (ISO 8601)
    upper_bound: Optional[str] = None
    rows: Optional[int] = None
    row_checksum: Optional[str] = None
    columns: tuple[str, ...] = ()
    reloptions: tuple[str, ...] = ()
    tables: dict[str, int] = field(default_factory=dict)  # full backups: rows per table
    jobs: Optional[int] = None

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["columns"] = list(self.columns)
        data["reloptions"] = list(self.reloptions)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Manifest":
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["columns"] = tuple(values.get("columns") or ())
        values["reloptions"] = tuple(values.get("reloptions") or ())
        return cls(**values)


@dataclass(frozen=True)
class Verification:
    """Outcome of restoring a backup somewhere disposable and counting it."""

    ok: bool
    checked_at: str
    method: str  # "scratch database" | "scratch schema" | "not restored"
    scratch: Optional[str]
    sha256_ok: bool
    toc_entries: int
    rows: Optional[int] = None
    row_checksum: Optional[str] = None
    tables: dict[str, int] = field(default_factory=dict)
    mismatches: dict[str, Any] = field(default_factory=dict)
    error: Optional[str] = None
    note: Optional[str] = None
    seconds: float = 0.0
    stale_scratch_dropped: list[str] = field(default_factory=list)  # killed runs' scratch databases

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Verification":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class Generation:
    path: Path
    manifest: Manifest
    verification: Optional[Verification]

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def file(self) -> Path:
        return self.path / self.manifest.file

    @property
    def verified(self) -> bool:
        """A successful restore of this very file was counted and matched its manifest."""
        v = self.verification
        return bool(v and v.ok and v.sha256_ok)

    def file_intact(self) -> bool:
        return self.file.exists() and sha256_of(self.file) == self.manifest.sha256


class BackupStore:
    def __init__(self, root: str | Path, *, must_exist: bool = False):
        """``must_exist``: refuse a root that is not an existing folder (a configured root: a
        typo must fail, not scatter backups into a new folder), rather than create it."""
        self.root = Path(root)
        if must_exist and not self.root.is_dir():
            raise BackupStoreError(
                f"backup directory {self.root} does not exist (or is not a folder); create it or correct "
                "the configured path: a configured backup directory is never created")

    def __repr__(self) -> str:
        return f"BackupStore({str(self.root)!r})"

    # -- folders -------------------------------------------------------------
    def month_dir(self, database: str, table: str, month: date) -> Path:
        return self.root / _segment(database) / _segment(table) / f"{month:%Y-%m}"

    def full_dir(self, database: str) -> Path:
        return self.root / _segment(database) / "full"

    def _ensure_dir(self, path: Path) -> list[Path]:
        """Make ``path`` and its missing parents; returns those it made, outermost first."""
        missing = []
        for folder in (path, *path.parents):
            if folder.exists():
                break
            missing.insert(0, folder)
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BackupStoreError(
                f"backup directory {path} cannot be created under {self.root}: {exc.strerror}"
            ) from None
        if not os.access(path, os.W_OK | os.X_OK):
            raise BackupStoreError(f"backup directory {path} is not writable")
        return missing

    @staticmethod
    def _remove_empty(folders: list[Path]) -> None:
        """Remove ``folders`` (outermost first) from the innermost out, stopping at one not empty."""
        for folder in reversed(folders):
            try:
                folder.rmdir()
            except OSError:
                return

    @contextlib.contextmanager
    def staging(self, parent: Path) -> Iterator[tuple[Path, str]]:
        """A private folder to build a generation in; renamed to its generation name on
        success, removed on any failure with the folders made for it (nothing partial and no
        empty month folder is left behind)."""
        made = self._ensure_dir(parent)
        generation = f"{utc_now():%Y%m%dT%H%M%S%fZ}-{secrets.token_hex(3)}"
        staging = parent / f"{STAGING_PREFIX}{generation}"
        staging.mkdir()
        try:
            yield staging, generation
            os.rename(staging, parent / generation)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            self._remove_empty(made)
            raise

    def remove_stale_staging(self, parent: Path) -> list[str]:
        """Folders left by a killed run. Call only while holding the backup lock."""
        if not parent.is_dir():
            return []
        removed = []
        for entry in parent.iterdir():
            if entry.name.startswith(STAGING_PREFIX) and entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry.name)
        return removed

    # -- generations ---------------------------------------------------------
    @staticmethod
    def write_manifest(folder: Path, manifest: Manifest) -> None:
        _write_json_atomic(folder / MANIFEST, manifest.to_dict())

    @staticmethod
    def record_verification(generation: Generation | Path, verification: Verification) -> None:
        folder = generation.path if isinstance(generation, Generation) else generation
        _write_json_atomic(folder / VERIFICATION, verification.to_dict())

    @staticmethod
    def load(folder: Path) -> Optional[Generation]:
        manifest_path = folder / MANIFEST
        if not manifest_path.is_file():
            return None
        manifest = Manifest.from_dict(json.loads(manifest_path.read_text()))
        verification = None
        if (folder / VERIFICATION).is_file():
            verification = Verification.from_dict(json.loads((folder / VERIFICATION).read_text()))
        return Generation(folder, manifest, verification)

    def _generations_in(self, parent: Path) -> list[Generation]:
        if not parent.is_dir():
            return []
        found = []
        for entry in sorted(parent.iterdir(), reverse=True):  # names sort by time
            if entry.is_dir() and not entry.name.startswith("."):
                generation = self.load(entry)
                if generation is not None:
                    found.append(generation)
        return found

    def month_generations(self, database: str, table: str, month: date) -> list[Generation]:
        """Newest first."""
        return self._generations_in(self.month_dir(database, table, month))

    def full_generations(self, database: str) -> list[Generation]:
        return self._generations_in(self.full_dir(database))

    def prune(self, generations: list[Generation], keep: int) -> list[str]:
        """Keep the ``keep`` newest generations, and always the newest verified one."""
        newest_verified = next((g for g in generations if g.verified), None)
        removed = []
        for generation in generations[keep:]:
            if generation is newest_verified:
                continue
            shutil.rmtree(generation.path, ignore_errors=True)
            removed.append(generation.name)
        return removed

    # -- retention journal ---------------------------------------------------
    def read_retirement(self, database: str, table: str, month: date) -> Optional[dict[str, Any]]:
        path = self.month_dir(database, table, month) / RETIREMENT
        return json.loads(path.read_text()) if path.is_file() else None

    def write_retirement(self, database: str, table: str, month: date, record: dict[str, Any]) -> None:
        folder = self.month_dir(database, table, month)
        self._ensure_dir(folder)
        _write_json_atomic(folder / RETIREMENT, {**record, "updated_at": utc_now().isoformat()})

    def clear_retirement(self, database: str, table: str, month: date) -> None:
        path = self.month_dir(database, table, month) / RETIREMENT
        if path.exists():
            path.unlink()

    def retirement_journals(self, database: str) -> Iterator[tuple[str, date, dict[str, Any]]]:
        """(table folder, month, record) of every retirement journal of ``database``. The
        folder is the table's name as the jobs gave it (``event_logs``)."""
        base = self.root / _segment(database)
        for path in sorted(base.glob(f"*/*/{RETIREMENT}")) if base.is_dir() else []:
            try:
                month = datetime.strptime(path.parent.name, "%Y-%m").date()
            except ValueError:
                continue
            yield path.parent.parent.name, month, json.loads(path.read_text())

    # -- restores ------------------------------------------------------------
    def record_restore(self, database: str, table: str, month: date, record: dict[str, Any]) -> None:
        """Append one restore of the month to its record (callers hold the table's lock scope,
        so two restores of one month never write at once)."""
        folder = self.month_dir(database, table, month)
        self._ensure_dir(folder)
        restores = self.read_restores(database, table, month)
        entry = {**record, "restored_at": utc_now().isoformat()}
        _write_json_atomic(folder / RESTORES, {"restores": [*restores, entry]})

    def read_restores(self, database: str, table: str, month: date) -> list[dict[str, Any]]:
        path = self.month_dir(database, table, month) / RESTORES
        return json.loads(path.read_text())["restores"] if path.is_file() else []

    def months(self, database: str, table: str) -> list[date]:
        """Every month of ``table`` the store holds anything for (backups, journal, restores), oldest first."""
        base = self.root / _segment(database) / _segment(table)
        found = []
        for entry in base.iterdir() if base.is_dir() else ():
            try:
                month = datetime.strptime(entry.name, "%Y-%m").date()
            except ValueError:
                continue
            if entry.is_dir() and any(not child.name.startswith(".") for child in entry.iterdir()):
                found.append(month)
        return sorted(found)
