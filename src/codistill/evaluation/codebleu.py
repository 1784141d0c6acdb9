"""CodeBLEU (Ren et al. 2020) on current tree-sitter, matching the ``codebleu`` 0.7.0 package.

The ``codebleu`` package needs ``tree-sitter==0.22.3`` and grammar wheels 0.21.0, which cannot
coexist with the tree-sitter 0.26 grammars the rest of codistill uses. This module re-implements
its four components and reproduces the package's numbers, quirks included, so scores stay
comparable with published ones (``tests/evaluation/data/codebleu_reference.json`` holds the
package's values on a fixed sample; ``benchmarks/codebleu_agreement.py`` re-checks them):

- ``ngram_match``: corpus BLEU-4 on whitespace tokens (NLTK's ``corpus_bleu``, uniform weights,
  Chen & Cherry smoothing method 1: a zero n-gram count becomes 0.1; 0 when no unigram matches).
- ``weighted_ngram_match``: BLEU-4 whose unigram term is a *recall* of the reference's unigrams
  in which language keywords weigh 1 and every other token 0.2 (keywords x5); the 2-4-gram
  terms are unweighted recalls. As in the package, the brevity penalty takes every example's
  "closest reference length" to be 2 (it measures the ``[tokens, weights]`` pair, not the
  tokens), so it only bites when predictions average fewer than two tokens.
- ``syntax_match``: the share of the reference AST's subtrees (each node that has children,
  compared as tree-sitter S-expressions) that also occur in the prediction's AST.
- ``dataflow_match``: the share of the reference's data-flow edges (GraphCodeBERT's DFG, variable
  names normalised to ``var_0, var_1, ...`` in order of appearance) found in the prediction's.
  Comments are stripped first for both syntax and data flow.

Corpus-level aggregation, as in the package: BLEU and weighted BLEU sum their n-gram numerators,
denominators and lengths over all examples before dividing (micro-average, not the mean of
sentence scores); syntax and data-flow match are also summed counts (matched subtrees / all
reference subtrees; matched edges / all reference edges). With several references per example,
BLEU clips against the most generous reference, the other three sum over every reference.
``per_sample=True`` adds each example's own score (the corpus formulas on that example alone),
which is what a per-example Code Quality Score needs.

Data flow and the "perfect score when missing" quirk: the package combines the components with
``dataflow_match or 1``, so a data-flow score of 0 counts as a perfect match, both when no
reference in the corpus has a data-flow edge (then ``dataflow_match`` is reported as 0) and when
none of the references' edges is matched. A one-line assertion usually has no data flow at all
(edges only appear when a variable is assigned or an identifier repeats), so on assertion
corpora the fourth quarter of CodeBLEU is mostly a free 0.25. The result therefore carries
``dataflow_defined`` and ``pairs_without_dataflow``; ``strict_dataflow=True`` keeps a genuine 0
as 0 and, when no reference has data flow, re-normalises the weights over the other three.

Known differences from the package:

- Grammars: tree-sitter-java 0.23 / tree-sitter-python 0.25 instead of 0.21. One change is
  bridged: Python's ``is not`` / ``not in`` are now one anonymous node with two keyword
  children, and are read back as grammar 0.21's two sibling tokens. On code that parses, the
  golden sample and a stress run (300 JDK methods, 300 stdlib functions, mutated or paired with
  others) agree exactly. On Python code with syntax errors the grammars' error recovery can
  differ (different ERROR placement), and with it syntax and data-flow match.
- Hash order: the package merges some data-flow parents through ``list(set(...))``, whose order
  follows Python's string hashing and changes from process to process (``PYTHONHASHSEED``);
  since names are numbered in that order, the package's ``dataflow_match`` on code with loops or
  merged assignments can differ between runs. Here the default order is first appearance
  (deterministic, and one of the package's possible outcomes); ``hash_order=True`` uses the
  package's ``list(set(...))`` and reproduces its values under the same ``PYTHONHASHSEED``.
- The package strips Python comments with :mod:`tokenize`; Python 3.12 tokenises f-strings
  differently from 3.11, which can change which strings count as docstrings.
"""

from __future__ import annotations

import io
import math
import re
import tokenize
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tree_sitter import Node

from codistill.evaluation.codebleu_dataflow import (
    _has_subtree,
    _parse,
    data_flow,
    normalize_dataflow,
)

LANGUAGES = ("java", "python")

# The keyword lists the codebleu 0.7.0 package ships (codebleu/keywords/{java,python}.txt).
JAVA_KEYWORDS = frozenset(
    "abstract assert boolean break byte case catch char class const continue default do double "
    "else enum extends final finally float for goto if implements import instanceof int "
    "interface long native new package private protected public return short static strictfp "
    "super switch synchronized this throw throws transient try void volatile while".split()
)
PYTHON_KEYWORDS = frozenset(
    "False None True and as assert async await break class continue def del elif else except "
    "finally for from global if import in is lambda nonlocal not or pass raise return try "
    "while with yield match case type".split()
)
KEYWORDS = {"java": JAVA_KEYWORDS, "python": PYTHON_KEYWORDS}

_KEYWORD_WEIGHT, _TOKEN_WEIGHT = 1, 0.2
_MAX_ORDER = 4
_SMOOTHING_EPSILON = 0.1  # Chen & Cherry (2014) method 1, as NLTK's default

"""A data-flow edge: (variable, token index, relation, parent variables, parent token indices)."""


@dataclass(frozen=True)
class _PairCounts:
    """The sufficient statistics of one example; corpus scores sum them over examples."""

    bleu_matches: tuple[int, ...]
    bleu_totals: tuple[int, ...]
    hyp_len: int
    ref_len: int
    weighted_matches: tuple[float, ...]
    weighted_totals: tuple[float, ...]
    syntax_matched: int
    syntax_total: int
    dataflow_matched: int
    dataflow_total: int


def codebleu(
    predictions: Sequence[str],
    references: Sequence[str] | Sequence[Sequence[str]],
    language: str,
    weights: tuple[float, float, float, float] = (0.25, 0.25, 0.25, 0.25),
    *,
    tokenizer: Callable[[str], list[str]] | None = None,
    strict_dataflow: bool = False,
    hash_order: bool = False,
    per_sample: bool = False,
) -> dict[str, Any]:
    """Corpus-level CodeBLEU and its components, as ``codebleu.calc_codebleu`` 0.7.0 computes it.

    Args:
        predictions: n predicted code strings.
        references: n references, each a string or a list of alternative strings.
        language: ``"java"`` or ``"python"``.
        weights: weights of ngram, weighted ngram, syntax and data-flow match.
        tokenizer: splits code into BLEU tokens; default ``str.split`` (the package's).
        strict_dataflow: don't count a data-flow score of 0 as 1; without any reference data
            flow, average the other three components by their weights instead.
        hash_order: order merged data-flow names by string hash, exactly as the package does,
            so that under the same ``PYTHONHASHSEED`` the values are the package's to the bit;
            by default they follow first appearance and don't change from run to run.
        per_sample: also return ``per_sample``, the same dict for each example alone.

    Returns:
        ``codebleu, ngram_match, weighted_ngram_match, syntax_match, dataflow_match`` (floats),
        ``dataflow_defined`` (bool: some reference has a data-flow edge),
        ``pairs_without_dataflow`` (examples whose references have no edge), ``n`` and, if
        asked, ``per_sample`` (list of dicts without ``per_sample``).
    """
    refs = _check_inputs(predictions, references, language, weights)
    tokenize_fn = tokenizer if tokenizer is not None else str.split
    counts = [
        _pair_counts(pred.strip(), [r.strip() for r in ref], language, tokenize_fn, hash_order)
        for pred, ref in zip(predictions, refs, strict=True)
    ]
    result = _combine(counts, weights, strict_dataflow)
    if per_sample:
        result["per_sample"] = [_combine([c], weights, strict_dataflow) for c in counts]
    return result


def sentence_codebleu(
    predictions: Sequence[str],
    references: Sequence[str] | Sequence[Sequence[str]],
    language: str,
    weights: tuple[float, float, float, float] = (0.25, 0.25, 0.25, 0.25),
    **kwargs: Any,
) -> list[float]:
    """Each example's own CodeBLEU (what the package returns for that pair alone)."""
    result = codebleu(predictions, references, language, weights, per_sample=True, **kwargs)
    return [sample["codebleu"] for sample in result["per_sample"]]


def check_pairs(predictions, references, language: str) -> list[list[str]]:
    """Refuse a language outside :data:`LANGUAGES`, bare strings and unpaired lists; return each
    example's references as a list (one reference may be given as a string). Shared with CQS."""
    if language not in LANGUAGES:
        raise ValueError(f"language must be one of {LANGUAGES}, got {language!r}")
    if isinstance(predictions, str) or isinstance(references, str):
        raise ValueError("predictions and references must be lists, got a single string")
    if len(predictions) != len(references):
        raise ValueError(
            f"predictions has {len(predictions)} examples, references {len(references)}"
        )
    return [[ref] if isinstance(ref, str) else list(ref) for ref in references]


def _check_inputs(predictions, references, language, weights) -> list[list[str]]:
    refs = check_pairs(predictions, references, language)
    if len(weights) != 4 or any(w < 0 for w in weights):
        raise ValueError(f"weights must be 4 non-negative floats, got {weights!r}")
    if any(len(ref) == 0 for ref in refs):
        raise ValueError("every example needs at least one reference")
    return refs


def _combine(counts: list[_PairCounts], weights, strict_dataflow: bool) -> dict[str, Any]:
    if not counts:
        raise ValueError("codebleu needs at least one example")
    ngram = _bleu(
        [sum(c.bleu_matches[i] for c in counts) for i in range(_MAX_ORDER)],
        [sum(c.bleu_totals[i] for c in counts) for i in range(_MAX_ORDER)],
        sum(c.hyp_len for c in counts),
        sum(c.ref_len for c in counts),
    )
    weighted = _bleu(
        _ordered_sum([c.weighted_matches for c in counts]),
        _ordered_sum([c.weighted_totals for c in counts]),
        sum(c.hyp_len for c in counts),
        # The package's quirk: the "closest reference length" of every example is 2.
        2 * len(counts),
    )
    syntax = sum(c.syntax_matched for c in counts) / sum(c.syntax_total for c in counts)
    flow_total = sum(c.dataflow_total for c in counts)
    dataflow = sum(c.dataflow_matched for c in counts) / flow_total if flow_total else 0.0
    alpha, beta, gamma, theta = weights
    if not strict_dataflow:
        score = alpha * ngram + beta * weighted + gamma * syntax + theta * (dataflow or 1)
    elif flow_total:
        score = alpha * ngram + beta * weighted + gamma * syntax + theta * dataflow
    else:
        rest = alpha + beta + gamma
        score = (alpha * ngram + beta * weighted + gamma * syntax) / rest if rest else 0.0
    return {
        "codebleu": score,
        "ngram_match": ngram,
        "weighted_ngram_match": weighted,
        "syntax_match": syntax,
        "dataflow_match": dataflow,
        "dataflow_defined": flow_total > 0,
        "pairs_without_dataflow": sum(c.dataflow_total == 0 for c in counts),
        "n": len(counts),
    }


def _ordered_sum(rows: list[tuple[float, ...]]) -> list[float]:
    # Left-to-right float sums, as the package accumulates them, so results agree to the bit.
    totals = [0] * _MAX_ORDER
    for row in rows:
        for i in range(_MAX_ORDER):
            totals[i] += row[i]
    return totals


def _bleu(matches, totals, hyp_len: int, ref_len: int) -> float:
    """NLTK corpus BLEU-4 from summed counts, smoothing method 1."""
    if matches[0] == 0:
        return 0.0
    if hyp_len > ref_len:
        brevity = 1.0
    elif hyp_len == 0:
        brevity = 0.0
    else:
        brevity = math.exp(1 - ref_len / hyp_len)
    logs = (
        0.25 * math.log((m if m != 0 else m + _SMOOTHING_EPSILON) / t)
        for m, t in zip(matches, totals, strict=True)
    )
    return brevity * math.exp(math.fsum(logs))


def _pair_counts(
    prediction: str, references: list[str], language: str, tokenize_fn, hash_order: bool
) -> _PairCounts:
    hyp = tokenize_fn(prediction)
    ref_tokens = [tokenize_fn(r) for r in references]
    bleu_matches, bleu_totals = zip(
        *(_clipped_precision(ref_tokens, hyp, n) for n in range(1, _MAX_ORDER + 1)), strict=True
    )
    weighted_matches, weighted_totals = zip(
        *(
            _weighted_recall(ref_tokens, hyp, n, KEYWORDS[language])
            for n in range(1, _MAX_ORDER + 1)
        ),
        strict=True,
    )
    ref_len = min((len(r) for r in ref_tokens), key=lambda r: (abs(r - len(hyp)), r))
    syntax_matched, syntax_total = _syntax_counts(prediction, references, language)
    flow_matched, flow_total = _dataflow_counts(prediction, references, language, hash_order)
    return _PairCounts(
        bleu_matches=bleu_matches,
        bleu_totals=bleu_totals,
        hyp_len=len(hyp),
        ref_len=ref_len,
        weighted_matches=weighted_matches,
        weighted_totals=weighted_totals,
        syntax_matched=syntax_matched,
        syntax_total=syntax_total,
        dataflow_matched=flow_matched,
        dataflow_total=flow_total,
    )


def _ngrams(tokens: list[str], n: int) -> Counter:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def _clipped_precision(references: list[list[str]], hyp: list[str], n: int) -> tuple[int, int]:
    """BLEU's modified precision: hypothesis n-grams clipped by the most generous reference."""
    counts = _ngrams(hyp, n)
    max_ref = {gram: 0 for gram in counts}
    for ref in references:
        ref_counts = _ngrams(ref, n)
        for gram in counts:
            max_ref[gram] = max(max_ref[gram], ref_counts[gram])
    matched = sum(min(count, max_ref[gram]) for gram, count in counts.items())
    return matched, max(1, sum(counts.values()))


def _weighted_recall(
    references: list[list[str]], hyp: list[str], n: int, keywords: frozenset[str]
) -> tuple[float, float]:
    """Recall of reference n-grams; for unigrams keywords weigh 1 and other tokens 0.2."""
    hyp_counts = _ngrams(hyp, n)
    matched: float = 0
    total: float = 0
    for ref in references:
        ref_counts = _ngrams(ref, n)
        clipped = {gram: min(count, hyp_counts[gram]) for gram, count in ref_counts.items()}
        if n == 1:
            weight = {tok: _KEYWORD_WEIGHT if tok in keywords else _TOKEN_WEIGHT for tok in ref}
            matched += _weighted_sum(clipped, weight)
            total += max(1, _weighted_sum(ref_counts, weight))
        else:
            matched += sum(clipped.values())
            total += max(1, sum(ref_counts.values()))
    return matched, total


def _weighted_sum(counts: dict, weight: dict[str, float]) -> float:
    total: float = 0
    for gram, count in counts.items():
        total += count * weight[gram[0]]
    return total


# --- parsing -------------------------------------------------------------------------------


_JAVA_COMMENT_OR_STRING = re.compile(
    r'//.*?$|/\*.*?\*/|\'(?:\\.|[^\\\'])*\'|"(?:\\.|[^\\"])*"', re.DOTALL | re.MULTILINE
)


def strip_comments(source: str, language: str) -> str:
    """Remove comments (and, for Python, docstrings) and blank lines, as the package does.

    Java: comments become a space (string literals are kept intact). Python: a
    :mod:`tokenize` pass drops comments and any string token that starts a logical line
    (docstrings, but also a string at column 0). Raises on code that does not tokenize; the
    callers keep the original code then, as the package does.
    """
    if language == "python":
        out = _strip_python_comments(source)
    else:
        out = _JAVA_COMMENT_OR_STRING.sub(
            lambda m: " " if m.group(0).startswith("/") else m.group(0), source
        )
    return "\n".join(line for line in out.split("\n") if line.strip() != "")


def _strip_python_comments(source: str) -> str:
    out = ""
    prev_type = tokenize.INDENT
    last_line, last_col = -1, 0
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        (start_line, start_col), (end_line, end_col) = tok.start, tok.end
        if start_line > last_line:
            last_col = 0
        if start_col > last_col:
            out += " " * (start_col - last_col)
        if tok.type == tokenize.COMMENT:
            pass
        elif tok.type == tokenize.STRING:
            # A string right after INDENT/NEWLINE, or at column 0, is taken for a docstring.
            if prev_type not in (tokenize.INDENT, tokenize.NEWLINE) and start_col > 0:
                out += tok.string
        else:
            out += tok.string
        prev_type = tok.type
        last_col, last_line = end_col, end_line
    return out


def _try_strip(code: str, language: str) -> str:
    try:
        return strip_comments(code, language)
    except Exception:
        return code


# --- syntax match --------------------------------------------------------------------------


def _subtrees(root: Node) -> list[str]:
    """S-expressions of the root and of every descendant that has children."""
    out, stack = [], [root]
    while stack:
        node = stack.pop()
        out.append(str(node))
        stack.extend(child for child in node.children if _has_subtree(child))
    return out


def _syntax_counts(prediction: str, references: list[str], language: str) -> tuple[int, int]:
    matched = total = 0
    for reference in references:
        # The package re-strips the (already stripped) prediction for every reference.
        prediction = _try_strip(prediction, language)
        ref_trees = _subtrees(_parse(_try_strip(reference, language), language))
        cand_trees = set(_subtrees(_parse(prediction, language)))
        matched += sum(tree in cand_trees for tree in ref_trees)
        total += len(ref_trees)
    return matched, total


# --- data-flow match -----------------------------------------------------------------------


def _dataflow_counts(
    prediction: str, references: list[str], language: str, hash_order: bool
) -> tuple[int, int]:
    matched = total = 0
    for reference in references:
        prediction = _try_strip(prediction, language)
        cand = normalize_dataflow(data_flow(prediction, language, hash_order=hash_order))
        reference = _try_strip(reference, language)
        ref = normalize_dataflow(data_flow(reference, language, hash_order=hash_order))
        total += len(ref)
        for edge in ref:
            if edge in cand:
                matched += 1
                cand.remove(edge)
    return matched, total
