"""Byte spans of a snippet (literals, macro arguments) asked about many positions."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable


class Spans:
    """A union of open intervals ``(start, end)``: which positions lie strictly inside one.

    Relations ask this for every operator, comma and line of a snippet; merging the intervals
    once turns each question into a bisection instead of a scan over all of them.
    """

    def __init__(self, intervals: Iterable[tuple[int, int]]) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []
        for start, end in sorted(intervals):
            if self.starts and start < self.ends[-1]:  # overlaps (touching is no overlap)
                self.ends[-1] = max(self.ends[-1], end)
            else:
                self.starts.append(start)
                self.ends.append(end)

    def __contains__(self, pos: int) -> bool:
        # the merged intervals are disjoint: only the last one starting before pos can hold it
        i = bisect_left(self.starts, pos) - 1
        return i >= 0 and pos < self.ends[i]

    def __bool__(self) -> bool:
        return bool(self.starts)
