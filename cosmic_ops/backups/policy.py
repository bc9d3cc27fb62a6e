"""Retention and backup-generation policy for event_logs months.

Values carry units and are validated: ``"12"`` is an error, not 12 of something.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from ..partitions.policy import EVENT_LOGS_POLICY, plain_identifier
from ..timeutil import add_months, month_start
from ..units import PolicyError, parse_months

RETIRE_ACTIONS = ("drop", "archive-schema")


def parse_retention_months(text: str) -> int:
    months = parse_months(text, what="retention")
    if months < 1:
        raise PolicyError(f"retention {text!r} must keep at least one month")
    return months


def checked_keep_generations(keep: int) -> int:
    """At least one: keeping none would delete the backup just made."""
    if keep < 1:
        raise PolicyError(f"keep_generations must be at least 1, got {keep}")
    return keep


@dataclass(frozen=True)
class RetentionPolicy:
    """How long months stay attached, what retiring does, how many backups to keep."""

    retention: str = f"{EVENT_LOGS_POLICY.retention} months"
    action: str = "drop"
    archive_schema: str = "event_logs_archive"
    keep_generations: int = 3

    def __post_init__(self) -> None:
        parse_retention_months(self.retention)
        if self.action not in RETIRE_ACTIONS:
            raise PolicyError(f"action {self.action!r} must be one of {', '.join(RETIRE_ACTIONS)}")
        plain_identifier(self.archive_schema, what="archive_schema")
        checked_keep_generations(self.keep_generations)

    @property
    def retention_months(self) -> int:
        return parse_retention_months(self.retention)

    def cutoff(self, today: date) -> date:
        """First month still inside the window: months before it may be retired."""
        return add_months(month_start(today), -self.retention_months)

    def is_past_retention(self, month: date, today: date) -> bool:
        return month_start(month) < self.cutoff(today)
