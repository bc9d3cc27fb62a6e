"""Which hash-partitioned tables cross their layout thresholds, and what split would help.

A finding names the table, what crossed (row skew, partition bytes, a gap in the hash space)
with the observed values and thresholds, and a split proposal: the partitions to split (each
remainder r of modulus m becomes remainders r and r+m of modulus 2m) and what to expect after.
A proposal is advice for an operator; nothing here changes the database.

Splitting helps when a partition holds many keys: its rows divide between the two halves.
It cannot help a partition dominated by one key, whose rows always stay together: the
proposal then says so, with that key, instead of promising an even layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from ..units import format_bytes
from .policy import LayoutPolicy, LayoutThresholds
from .skew import LayoutReport, ParentLayout, RemainderStats

SKEW, BYTES, GAP = "skew", "partition_bytes", "hash_gap"
# Candidate splits whose expected skew differs by less than this are equally even: the one
# moving fewer partitions wins.
SKEW_TOLERANCE = 0.05


@dataclass(frozen=True)
class SplitProposal:
    table: str
    current_modulus: int
    target_modulus: int
    partitions: tuple[tuple[int, int], ...]  # (modulus, remainder) of each partition to split
    partition_count: int  # the table's partitions now
    expected_skew_after: float
    expected_largest_bytes_after: int
    # The key that alone fills the fullest partition after the split, if one does: its rows
    # stay together at any modulus.
    hottest_key: Optional[str]
    hottest_key_rows: int
    split_helps: bool  # expected within the thresholds

    def describe(self) -> str:
        if len(self.partitions) == self.partition_count:
            parts = f"every partition ({self.partition_count})"
        else:
            parts = ", ".join(f"remainder {r} of modulus {m}" for m, r in self.partitions)
        text = (f"plan a split of {self.table}: {parts} -> modulus {self.target_modulus}; expected after: "
                f"skew {self.expected_skew_after:.2f}x, largest partition "
                f"{format_bytes(self.expected_largest_bytes_after)}")
        if not self.split_helps:
            text += ". A split alone is not expected to bring the table within its thresholds"
            if self.hottest_key is not None:
                text += (f": key {self.hottest_key} holds {self.hottest_key_rows:,d} rows, which stay in one "
                         f"partition at any modulus")
            else:
                text += ": the keys differ in rows, and each half keeps its partition's share of them"
        return text

    def to_json(self) -> dict[str, Any]:
        return {
            "table": self.table, "current_modulus": self.current_modulus, "target_modulus": self.target_modulus,
            "partitions": [{"modulus": m, "remainder": r} for m, r in self.partitions],
            "partition_count": self.partition_count,
            "expected_skew_after": round(self.expected_skew_after, 4),
            "expected_largest_bytes_after": self.expected_largest_bytes_after,
            "hottest_key": self.hottest_key, "hottest_key_rows": self.hottest_key_rows,
            "split_helps": self.split_helps,
            "description": self.describe(),
        }


@dataclass(frozen=True)
class Finding:
    table: str
    kinds: tuple[str, ...]  # of SKEW, BYTES, GAP
    skew_ratio: float
    max_skew: Optional[float]
    rows: int
    largest_partition: str
    largest_partition_bytes: int
    max_partition_bytes: Optional[int]
    hash_coverage: float
    proposal: Optional[SplitProposal]

    def describe(self) -> str:
        reasons = []
        if SKEW in self.kinds:
            reasons.append(f"skew {self.skew_ratio:.2f}x > {self.max_skew:g}x over {self.rows:,d} rows")
        if BYTES in self.kinds:
            reasons.append(f"{self.largest_partition} is {format_bytes(self.largest_partition_bytes)} > "
                           f"{format_bytes(self.max_partition_bytes or 0)}")
        if GAP in self.kinds:
            reasons.append(f"partitions cover {self.hash_coverage:.1%} of the hash space: inserts of keys "
                           f"hashing into the gap fail")
        return f"{self.table}: " + "; ".join(reasons)

    def to_json(self) -> dict[str, Any]:
        return {
            "table": self.table, "kinds": list(self.kinds), "skew_ratio": round(self.skew_ratio, 4),
            "max_skew": self.max_skew, "rows": self.rows, "largest_partition": self.largest_partition,
            "largest_partition_bytes": self.largest_partition_bytes,
            "max_partition_bytes": self.max_partition_bytes, "hash_coverage": self.hash_coverage,
            "proposal": self.proposal.to_json() if self.proposal else None,
            "description": self.describe(),
        }


def _over(layout: ParentLayout, stats: RemainderStats, rule: LayoutThresholds, judge_skew: bool) -> bool:
    return ((judge_skew and rule.max_skew is not None and layout.load(stats) > rule.max_skew)
            or (rule.max_partition_bytes is not None and stats.total_bytes > rule.max_partition_bytes))


@dataclass(frozen=True)
class _Outcome:
    chosen: tuple[RemainderStats, ...]
    skew: float
    largest_bytes: int
    # The hottest key of the chosen partitions, when it alone fills the fullest partition after.
    key_bound: Optional[tuple[str, int]]


def _expected(layout: ParentLayout, chosen: list[RemainderStats]) -> _Outcome:
    """Partitions after splitting ``chosen``: the larger half of each holds at least half of
    its rows and at least its hottest key's rows (a key is never divided); bytes follow rows."""
    sizes: list[tuple[float, float, Optional[tuple[str, int]]]] = []  # rows, bytes, key filling it
    for stats in layout.remainders:
        if not any(stats is c for c in chosen):
            sizes.append((stats.rows, stats.total_bytes, None))
            continue
        top = stats.top_key
        key_rows = top.rows if top else 0
        bigger = max(stats.rows / 2, key_rows)
        share = bigger / stats.rows if stats.rows else 0.5
        filled_by = (top.text, key_rows) if top and key_rows > stats.rows / 2 else None
        sizes += [(bigger, stats.total_bytes * share, filled_by),
                  (stats.rows - bigger, stats.total_bytes * (1 - share), None)]
    mean = sum(rows for rows, _, _ in sizes) / len(sizes)
    fullest = max(sizes, key=lambda size: size[0])
    return _Outcome(tuple(chosen), fullest[0] / mean if mean else 1.0, int(max(b for _, b, _ in sizes)), fullest[2])


def propose_split(layout: ParentLayout, rule: LayoutThresholds, *, judge_skew: bool = True
                  ) -> Optional[SplitProposal]:
    """The split to plan for ``layout``, or ``None`` when no partition crosses ``rule``.

    Three candidates, each partition going to twice its modulus: only the partitions over a
    threshold; the partitions of a smaller modulus than the largest (finishing a re-split left
    half-way); every partition. Splitting only a fat remainder of many keys evens the table,
    while when every partition is near its limit (even data that grew) it would leave halves far
    below the rest, and the whole table should go to the next modulus. The proposal is the most
    even candidate expected within both thresholds (or the most even at all, if none is), the
    one moving the fewest partitions among those within ``SKEW_TOLERANCE`` of it.
    """
    over = [s for s in layout.remainders if _over(layout, s, rule, judge_skew)]
    if not over:
        return None
    modulus = layout.table.modulus or 1
    candidates = [over, [s for s in layout.remainders if s.partition.modulus < modulus], list(layout.remainders)]
    outcomes, seen = [], set()
    for chosen in candidates:
        ids = frozenset(id(s) for s in chosen)
        if chosen and ids not in seen:
            seen.add(ids)
            outcomes.append(_expected(layout, chosen))

    def within(outcome: _Outcome) -> bool:
        skew_ok = not judge_skew or rule.max_skew is None or outcome.skew <= rule.max_skew
        return skew_ok and (rule.max_partition_bytes is None or outcome.largest_bytes <= rule.max_partition_bytes)

    pool = [o for o in outcomes if within(o)] or outcomes
    evenest = min(o.skew for o in pool)
    best = min((o for o in pool if o.skew <= evenest + SKEW_TOLERANCE), key=lambda o: (len(o.chosen), o.skew))
    return SplitProposal(
        table=layout.table.label, current_modulus=modulus,
        target_modulus=2 * max(s.partition.modulus for s in best.chosen),
        partitions=tuple((s.partition.modulus, s.partition.remainder) for s in best.chosen),
        partition_count=len(layout.remainders),
        expected_skew_after=best.skew, expected_largest_bytes_after=best.largest_bytes,
        hottest_key=best.key_bound[0] if best.key_bound else None,
        hottest_key_rows=best.key_bound[1] if best.key_bound else 0,
        split_helps=within(best),
    )


def find_layout_problems(report: LayoutReport, policy: LayoutPolicy) -> list[Finding]:
    """Every table whose skew, largest partition or hash coverage crosses its policy."""
    found = []
    for layout in report.parents:
        rule = policy.for_table(layout.table.schema, layout.table.name)
        judge_skew = layout.total_rows >= rule.min_rows
        kinds = []
        if judge_skew and rule.max_skew is not None and layout.skew_ratio > rule.max_skew:
            kinds.append(SKEW)
        largest = layout.largest
        largest_bytes = largest.total_bytes if largest else 0
        if rule.max_partition_bytes is not None and largest_bytes > rule.max_partition_bytes:
            kinds.append(BYTES)
        if layout.table.coverage < 1:
            kinds.append(GAP)
        if not kinds:
            continue
        found.append(Finding(
            table=layout.table.label, kinds=tuple(kinds), skew_ratio=layout.skew_ratio, max_skew=rule.max_skew,
            rows=layout.total_rows, largest_partition=largest.partition.label if largest else "",
            largest_partition_bytes=largest_bytes, max_partition_bytes=rule.max_partition_bytes,
            hash_coverage=float(layout.table.coverage),
            proposal=propose_split(layout, rule, judge_skew=judge_skew) if {SKEW, BYTES} & set(kinds) else None,
        ))
    return found
