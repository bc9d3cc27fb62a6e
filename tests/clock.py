"""The suite's one clock.

Decided once, when the test session starts: demo data are generated as of ``TODAY``,
every core function that decides by age gets ``NOW``, and Dagster runs carry it as
their ``cosmic_ops/as_of`` tag. A session that crosses midnight or a month end (CI
started at 23:58 on the last day of a month) keeps deciding as of the same instant.
Game-side SQL in the tests uses ``NOW`` as a parameter too, not the server's now():
the server under test may run on another clock.
"""

from __future__ import annotations

from datetime import datetime, timezone

from cosmic_ops.assets.common import as_of_tags

NOW = datetime.now(timezone.utc)
TODAY = NOW.date()
RUN_TAGS = as_of_tags(NOW)
