"""IMAP sequence sets: parse, resolve lazily, format.

RFCs: RFC 9051 §9 (``sequence-set``, ``seq-range``, ``seq-number``), RFC 3501 §9,
RFC 5182 §2.1 (``$``: the result saved by ``SEARCH RETURN (SAVE)``).

Invariants:

* A parsed :class:`SequenceSet` is kept as ranges; nothing here ever expands a range into
  a list (``1:4294967295`` costs two integers, not four billion).
* ``*`` is stored as ``None`` and only bound to a number by :meth:`SequenceSet.resolve`,
  :meth:`SequenceSet.contains` or :meth:`SequenceSet.iter_numbers`, which take the
  current maximum (highest sequence number or UID) from the caller: the core tracks no
  mailbox state.
* ``$`` cannot be resolved here; the adapter substitutes the saved result
  (:meth:`SequenceSet.with_saved`) before resolving.

Hand-written because no stdlib module knows IMAP sequence sets.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

# RFC 9051 §9: nz-number is a 32-bit unsigned integer > 0.
MAX_NZ_NUMBER = 4294967295

_SEQ_NUMBER = re.compile(rb"\*|[1-9][0-9]{0,9}")


class SequenceSetError(ValueError):
    """The text is not a valid ``sequence-set``."""


@dataclass(frozen=True, slots=True)
class SeqRange:
    """One ``seq-number`` or ``seq-range``; ``None`` stands for ``*``."""

    start: int | None
    end: int | None

    def bind(self, max_value: int) -> tuple[int, int]:
        """Replace ``*`` by ``max_value`` and order the ends (RFC 9051 §9: ``4:2`` == ``2:4``)."""
        a = max_value if self.start is None else self.start
        b = max_value if self.end is None else self.end
        return (a, b) if a <= b else (b, a)

    def __str__(self) -> str:
        a = "*" if self.start is None else str(self.start)
        if self.start == self.end:
            return a
        b = "*" if self.end is None else str(self.end)
        return f"{a}:{b}"


@dataclass(frozen=True, slots=True)
class SequenceSet:
    """A parsed sequence set. ``saved`` is True when ``$`` (RFC 5182) appeared."""

    ranges: tuple[SeqRange, ...]
    saved: bool = False

    @classmethod
    def parse(cls, text: str | bytes) -> SequenceSet:
        """Parse ``1:5,7,9:*`` or ``$``; raise :class:`SequenceSetError` on bad syntax."""
        data = text.encode("ascii", "replace") if isinstance(text, str) else bytes(text)
        if not data:
            raise SequenceSetError("empty sequence set")
        ranges: list[SeqRange] = []
        saved = False
        for part in data.split(b","):
            if part == b"$":  # RFC 5182 §2.1: seq-last-command
                saved = True
                continue
            ends = part.split(b":")
            if len(ends) > 2:
                raise SequenceSetError("too many ':' in a range")
            nums: list[int | None] = []
            for e in ends:
                if not _SEQ_NUMBER.fullmatch(e):
                    raise SequenceSetError(f"bad sequence number {e[:20]!r}")
                if e == b"*":
                    nums.append(None)
                else:
                    n = int(e)
                    if n > MAX_NZ_NUMBER:  # RFC 9051 §9: nz-number is 32-bit
                        raise SequenceSetError("sequence number out of range")
                    nums.append(n)
            ranges.append(SeqRange(nums[0], nums[-1]))
        return cls(tuple(ranges), saved)

    @classmethod
    def from_numbers(cls, numbers: Iterable[int]) -> SequenceSet:
        """Build the most compact set for ``numbers`` (for ESEARCH ALL, VANISHED, COPYUID)."""
        ranges: list[SeqRange] = []
        lo = hi = -1
        for n in sorted(set(numbers)):
            if n == hi + 1:
                hi = n
                continue
            if lo > 0:
                ranges.append(SeqRange(lo, hi))
            lo = hi = n
        if lo > 0:
            ranges.append(SeqRange(lo, hi))
        return cls(tuple(ranges))

    def with_saved(self, saved: SequenceSet) -> SequenceSet:
        """Return this set with ``$`` replaced by ``saved`` (the adapter's SEARCHRES state)."""
        if not self.saved:
            return self
        return SequenceSet(self.ranges + saved.ranges, saved.saved)

    def resolve(self, max_value: int) -> tuple[tuple[int, int], ...]:
        """Sorted, merged, inclusive ranges clipped to ``1..max_value``.

        The result has at most as many ranges as the input, whatever the numbers.
        """
        if self.saved:
            raise ValueError("'$' must be substituted with with_saved() before resolving")
        bound = sorted(r.bind(max_value) for r in self.ranges)
        out: list[tuple[int, int]] = []
        for a, b in bound:
            a, b = max(a, 1), min(b, max_value)
            if a > b:
                continue
            if out and a <= out[-1][1] + 1:
                if b > out[-1][1]:
                    out[-1] = (out[-1][0], b)
            else:
                out.append((a, b))
        return tuple(out)

    def iter_numbers(self, max_value: int) -> Iterator[int]:
        """Yield each number in ascending order, lazily."""
        for a, b in self.resolve(max_value):
            yield from range(a, b + 1)

    def contains(self, n: int, max_value: int) -> bool:
        """Is ``n`` in the set when ``*`` means ``max_value``? O(ranges), no allocation."""
        if self.saved:
            raise ValueError("'$' must be substituted with with_saved() before use")
        for r in self.ranges:
            a, b = r.bind(max_value)
            if a <= n <= b:
                return True
        return False

    def highest(self, max_value: int) -> int:
        """The highest number referenced (unclipped), to detect out-of-range message numbers."""
        return max((r.bind(max_value)[1] for r in self.ranges), default=0)

    def __str__(self) -> str:
        parts = [str(r) for r in self.ranges]
        if self.saved:
            parts.append("$")
        return ",".join(parts)
