"""Benchmark decontamination by token n-gram overlap, and the set-similarity search it runs on.

The rule is SODA's: a training record is removed when the Jaccard similarity between its token
5-gram set and the 5-gram set of any benchmark prompt or solution is at least 0.7.

Tokens (`tokenize_code`) are word-level and language-agnostic: identifiers (a letter or ``_``
followed by letters, digits, ``_``), numbers (a digit followed by letters, digits, ``.``:
``42``, ``3.14``, ``0x1F``), and every other non-space character on its own (``(``, ``=``,
``"``, ...). Whitespace is dropped, so layout and indentation never matter; string and comment
contents are tokenized like code. A text with fewer than ``n`` tokens has one shingle, all of
its tokens; an empty text has none and is similar to nothing.

Shingles are stored as 64-bit hashes (Python's per-token string hash, combined per window), so
two distinct n-grams compare equal with probability about 2^-64: Jaccard values are exact up to
such a collision. The hashes are salted per process, so they are compared within a run and never
stored. The search is exact too: `SimilarityIndex` uses prefix filtering (Chaudhuri et
al. 2006; Bayardo et al. 2007, "AllPairs"): n-grams are put in one global order, rarest first,
and two sets with Jaccard >= t must share an n-gram among the first ``|x| - ceil(t*|x|) + 1`` of
each. Only those prefixes are indexed and probed, and every candidate found that way is
confirmed by computing its Jaccard on the full sets. Dedup (`codistill.data.dedup`) uses the
same index.
"""

import json
import math
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from codistill.data.jsonl import write_text_atomic
from codistill.data.schema import (
    PLACEHOLDER,
    AssertionRecord,
    CloneRecord,
    CodegenRecord,
    DefectRecord,
)

DEFAULT_N = 5
DEFAULT_THRESHOLD = 0.7

_TOKEN = re.compile(r"[^\W\d]\w*|\d[\w.]*|\S")
# An odd multiplier, so that each window position maps token hashes one-to-one mod 2^64.
_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)
# Slack for float rounding in ceil(t * size): it only ever lengthens a prefix, which is safe.
_EPS = 1e-9


def tokenize_code(text: str) -> list[str]:
    """Split code into word-level tokens: identifiers, numbers and single punctuation characters.

    >>> tokenize_code("x1 = f(3.5)  # ok")
    ['x1', '=', 'f', '(', '3.5', ')', '#', 'ok']
    """
    return _TOKEN.findall(text)


def shingles(text: str, n: int = DEFAULT_N) -> np.ndarray:
    """The set of token n-grams of ``text``, as sorted unique 64-bit hashes.

    Args:
        text: Any code or text; see `tokenize_code`.
        n: n-gram length.

    Returns:
        A sorted ``uint64`` array without repeats; one element when the text has fewer than
        ``n`` tokens, none when it has no token.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    tokens = tokenize_code(text)
    if not tokens:
        return np.empty(0, dtype=np.uint64)
    # Python's own str hash: 64-bit SipHash, computed in C and cached on the string. It is
    # salted per process, which is harmless: hashes are compared within one run, never stored.
    ids = np.fromiter(map(hash, tokens), dtype=np.int64, count=len(tokens)).view(np.uint64)
    window = min(n, len(ids))
    count = len(ids) - window + 1
    hashes = np.zeros(count, dtype=np.uint64)
    for k in range(window):
        hashes = hashes * _MULTIPLIER + ids[k : k + count]  # wraps mod 2^64
    return np.unique(hashes)


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Jaccard similarity of two sorted unique arrays (`shingles` output); 0.0 if both are empty."""
    inter = np.intersect1d(a, b, assume_unique=True).size
    union = a.size + b.size - inter
    return inter / union if union else 0.0


def _prefix_length(size: int, threshold: float) -> int:
    return size - math.ceil(threshold * size - _EPS) + 1


@dataclass(frozen=True)
class EncodedSet:
    """A shingle set in a `SimilarityIndex`'s global order.

    Attributes:
        ranks: Sorted ranks of the n-grams the index's universe knows (rarest first).
        size: Number of n-grams in the set, known or not.
    """

    ranks: np.ndarray
    size: int

    @property
    def unknown(self) -> int:
        """N-grams outside the universe: they can be shared with no indexed set."""
        return self.size - self.ranks.size


class SimilarityIndex:
    """Exact search for indexed sets whose Jaccard similarity with a query is >= ``threshold``.

    The universe (the sets whose n-gram frequencies fix the global order) is given up front;
    sets are then added one by one, so a caller can query before adding (greedy dedup) or add
    everything first (decontamination). Only sets drawn from the universe may be added; queries
    may hold unknown n-grams, which are ordered before all known ones and never match.
    """

    def __init__(self, universe: Iterable[np.ndarray], threshold: float) -> None:
        """Order the universe's n-grams by frequency, rarest first (ties by hash).

        Args:
            universe: `shingles` arrays; every set later added must come from these.
            threshold: Jaccard threshold in (0, 1].

        Raises:
            ValueError: ``threshold`` is out of range.
        """
        if not 0 < threshold <= 1:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        self.threshold = threshold
        arrays = list(universe)
        merged = np.concatenate(arrays) if arrays else np.empty(0, dtype=np.uint64)
        self._keys, counts = np.unique(merged, return_counts=True)
        order = np.lexsort((self._keys, counts))
        self._rank = np.empty(order.size, dtype=np.int64)
        self._rank[order] = np.arange(order.size, dtype=np.int64)
        self._postings: dict[int, list[int]] = {}
        self._sets: list[EncodedSet] = []
        self._keys_of: list[Any] = []

    def __len__(self) -> int:
        return len(self._sets)

    def encode(self, hashes: np.ndarray) -> EncodedSet:
        """Put a `shingles` array in this index's order."""
        if not self._keys.size:
            return EncodedSet(np.empty(0, dtype=np.int64), int(hashes.size))
        pos = np.searchsorted(self._keys, hashes)
        clipped = np.minimum(pos, self._keys.size - 1)
        known = self._keys[clipped] == hashes
        return EncodedSet(np.sort(self._rank[clipped[known]]), int(hashes.size))

    def add(self, key: Any, encoded: EncodedSet) -> None:
        """Index a set under ``key`` (returned by `query`).

        Raises:
            ValueError: The set holds n-grams outside the universe.
        """
        if encoded.unknown:
            raise ValueError(f"set {key!r} has {encoded.unknown} n-grams outside the universe")
        slot = len(self._sets)
        self._sets.append(encoded)
        self._keys_of.append(key)
        for rank in encoded.ranks[: _prefix_length(encoded.size, self.threshold)].tolist():
            self._postings.setdefault(rank, []).append(slot)

    def query(self, encoded: EncodedSet) -> list[tuple[Any, float]]:
        """Every indexed set with Jaccard >= threshold, as ``(key, similarity)``, best first."""
        t = self.threshold
        probe = max(0, _prefix_length(encoded.size, t) - encoded.unknown)
        candidates: set[int] = set()
        for rank in encoded.ranks[:probe].tolist():
            candidates.update(self._postings.get(rank, ()))
        found = []
        for slot in sorted(candidates):
            other = self._sets[slot]
            small, large = sorted((encoded.size, other.size))
            if small < t * large - _EPS:  # size filter: J <= small / large
                continue
            inter = np.intersect1d(encoded.ranks, other.ranks, assume_unique=True).size
            similarity = inter / (encoded.size + other.size - inter)
            if similarity >= t:
                found.append((self._keys_of[slot], similarity))
        found.sort(key=lambda kv: -kv[1])
        return found


def record_text(record: Any) -> str:
    """The text of a record compared against benchmarks.

    * assertion: the focal method (when linked), then the test method with the target put back
      in place of the placeholder, so focal code + test code + target;
    * codegen: the complete solution program (`codegen_solution_program`), the form benchmark
      solutions take: an MBPP-style prompt is a description the solution does not contain, and
      prompt + solution would hide an exact copy of an MBPP solution;
    * clone: both fragments; defect: the function.
    """
    if isinstance(record, AssertionRecord):
        test = record.test_code.replace(PLACEHOLDER, record.target)
        return f"{record.focal_code}\n{test}" if record.focal_code else test
    if isinstance(record, CodegenRecord):
        return codegen_solution_program(record)
    if isinstance(record, CloneRecord):
        return f"{record.code1}\n{record.code2}"
    if isinstance(record, DefectRecord):
        return record.code
    raise TypeError(f"no default text for {type(record).__name__}; pass text_fn")


def codegen_solution_program(record: CodegenRecord) -> str:
    """A codegen record's complete solution program: the canonical solution when it defines the
    entry point itself (MBPP), else the prompt followed by it (HumanEval's bodies; the prompt
    alone when there is no solution)."""
    solution = record.canonical_solution or ""
    if re.search(rf"\bdef\s+{re.escape(record.entry_point)}\b", solution):
        return solution
    return record.prompt + solution


def codegen_benchmark_texts(records: Iterable[CodegenRecord]) -> dict[str, str]:
    """A benchmark's prompts and solutions, as `decontaminate` takes them.

    Each problem gives ``"{id}:prompt"`` and, when it has a canonical solution,
    ``"{id}:solution"``: the complete solution program. A solution that does not define the
    entry point itself (HumanEval's bodies) is taken with the prompt in front of it.
    """
    texts = {}
    for r in records:
        texts[f"{r.id}:prompt"] = r.prompt
        if r.canonical_solution:
            texts[f"{r.id}:solution"] = codegen_solution_program(r)
    return texts


@dataclass(frozen=True)
class Removal:
    """One record removed as contaminated, with its closest benchmark item.

    Attributes:
        id: The record's id.
        benchmark: Name of the benchmark holding the closest item.
        item: That item's key (``HumanEval/0:solution``, or its index as text).
        similarity: Jaccard similarity of the two n-gram sets.
        matched_benchmarks: Every benchmark with an item at or above the threshold.
    """

    id: str
    benchmark: str
    item: str
    similarity: float
    matched_benchmarks: tuple[str, ...]


@dataclass
class DecontamReport:
    """What `decontaminate` removed and why.

    Attributes:
        n: n-gram length.
        threshold: Jaccard threshold.
        benchmark_items: Items (texts) per benchmark.
        records: Records examined.
        kept: Records kept.
        removed: Records removed.
        removed_per_benchmark: Records with at least one match in each benchmark; a record
            matching two benchmarks counts in both, so these can sum to more than ``removed``.
        removals: Every removed record, in input order.
        seconds: Wall time of the run.
    """

    n: int
    threshold: float
    benchmark_items: dict[str, int]
    records: int = 0
    kept: int = 0
    removed: int = 0
    removed_per_benchmark: dict[str, int] = field(default_factory=dict)
    removals: list[Removal] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """The report as a JSON-ready dict."""
        return asdict(self)

    def summary(self) -> str:
        """One line for logs."""
        per = ", ".join(f"{k}: {v}" for k, v in self.removed_per_benchmark.items())
        return (
            f"decontamination ({self.n}-gram Jaccard >= {self.threshold}): removed "
            f"{self.removed} of {self.records} records ({per}) in {self.seconds:.1f} s"
        )


def _benchmark_items(
    benchmark_texts: Mapping[str, Sequence[str] | Mapping[str, str]],
) -> list[tuple[str, str, str]]:
    items = []
    for name, texts in benchmark_texts.items():
        pairs = texts.items() if isinstance(texts, Mapping) else enumerate(texts)
        items.extend((name, str(key), text) for key, text in pairs)
    return items


def decontaminate(
    records: Sequence[Any],
    text_fn: Callable[[Any], str] | None,
    benchmark_texts: Mapping[str, Sequence[str] | Mapping[str, str]],
    n: int = DEFAULT_N,
    threshold: float = DEFAULT_THRESHOLD,
) -> tuple[list[Any], DecontamReport]:
    """Remove records whose n-gram Jaccard similarity with any benchmark text is >= threshold.

    Args:
        records: Training records with an ``id``.
        text_fn: The text of a record to compare; None uses `record_text`.
        benchmark_texts: Per benchmark name, its texts: a list (items are named by index) or a
            mapping from item key to text (see `codegen_benchmark_texts`).
        n: n-gram length (SODA: 5).
        threshold: Jaccard threshold in (0, 1] (SODA: 0.7).

    Returns:
        The kept records in input order, and the report.
    """
    start = time.perf_counter()
    text_of = text_fn or record_text
    items = _benchmark_items(benchmark_texts)
    item_sets = [shingles(text, n) for _, _, text in items]
    index = SimilarityIndex(item_sets, threshold)
    for slot, hashes in enumerate(item_sets):
        index.add(slot, index.encode(hashes))
    report = DecontamReport(
        n=n,
        threshold=threshold,
        benchmark_items={name: 0 for name in benchmark_texts},
        removed_per_benchmark={name: 0 for name in benchmark_texts},
    )
    for name, _, _ in items:
        report.benchmark_items[name] += 1
    kept = []
    # Records often share their text (every assertion of one test method shows the same
    # method), so each distinct text is searched once.
    searched: dict[str, list[tuple[Any, float]]] = {}
    for record in records:
        text = text_of(record)
        matches = searched.get(text)
        if matches is None:
            matches = searched[text] = index.query(index.encode(shingles(text, n)))
        if not matches:
            kept.append(record)
            continue
        names = tuple(dict.fromkeys(items[slot][0] for slot, _ in matches))
        for name in names:
            report.removed_per_benchmark[name] += 1
        best, similarity = matches[0]
        name, key, _ = items[best]
        report.removals.append(Removal(record.id, name, key, round(similarity, 4), names))
    report.records = len(records)
    report.kept = len(kept)
    report.removed = len(report.removals)
    report.seconds = round(time.perf_counter() - start, 2)
    return kept, report


def write_report(path: str | os.PathLike[str], report: Any) -> None:
    """Write a report (anything with ``to_dict()``) as indented JSON, atomically."""
    write_text_atomic(path, json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n")
