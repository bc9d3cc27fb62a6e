"""Row lifecycle: archive destroyed bodies, pack inactive saves, and undo both exactly."""

from .archive import ArchivePolicy, ArchiveReport, archive_destroyed_bodies, plan_archive, unarchive_bodies
from ..units import parse_age
from .policy import MonthScope, Throttle
from .saves import (
    Codec, CompressReport, RehydrateReport, SaveNotCompressed, SavePolicy, compress_inactive_saves, rehydrate_save,
    rehydrate_saves,
)

__all__ = [
    "ArchivePolicy", "ArchiveReport", "Codec", "CompressReport", "MonthScope", "RehydrateReport",
    "SaveNotCompressed", "SavePolicy", "Throttle", "archive_destroyed_bodies", "compress_inactive_saves",
    "parse_age", "plan_archive", "rehydrate_save", "rehydrate_saves", "unarchive_bodies",
]
