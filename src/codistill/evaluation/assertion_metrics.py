"""The alpha-T paper's assertion metrics (Sec. 4.2), as pure functions.

Per example, a model generates a set of assertions and the reference (ground truth, or another
model's output) holds a set. After normalisation (whitespace collapsed, optional case folding):

- precision  = exact matches / generated assertions
- recall     = exact matches / reference assertions
- f1         = harmonic mean of precision and recall
- accuracy   = exact matches / max(#generated, #reference) (penalises over-generation)
- similarity = for each generated assertion, its best character-level similarity ratio
  (``difflib.SequenceMatcher``) against the example's reference assertions, averaged.

Empty strings are "nothing generated" and are not counted as assertions.

Beside the paper's exact match, ``format_insensitive_accuracy`` counts a match when both sides
are the same sequence of code tokens (:func:`code_tokens`): Methods2Test-style data stores test
code with spaces between tokens (``assertTrue ( conn . isOpen ( ) ) ;``) and oracles without,
and collapsing whitespace alone cannot equate the two.
"""

from __future__ import annotations

import difflib
import io
import re
import tokenize
from collections import Counter
from collections.abc import Sequence

_WS = re.compile(r"\s+")


def normalize(text: str, casefold: bool = False) -> str:
    text = _WS.sub(" ", text).strip()
    return text.casefold() if casefold else text


def _as_sets(items: Sequence[str | Sequence[str]], casefold: bool) -> list[list[str]]:
    out = []
    for item in items:
        group = [item] if isinstance(item, str) else list(item)
        out.append([n for n in (normalize(g, casefold) for g in group) if n])
    return out


# Java/C lexical tokens: string and char literals (with escapes), numbers, identifiers, the
# multi-character operators longest first, then any other single character. Assertions are
# statement fragments, which a parser's error recovery would split unpredictably; a lexer sees
# them exactly as the compiler's lexer would.
_C_LIKE = re.compile(
    r'"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\''
    r"|\d[\w.]*|[A-Za-z_$][\w$]*"
    r"|>>>=|<<=|>>=|>>>|->|::|\+\+|--|&&|\|\||[=!<>+\-*/%&|^]=|<<|>>|\S"
)
_SKIP = {
    tokenize.NL,
    tokenize.NEWLINE,
    tokenize.INDENT,
    tokenize.DEDENT,
    tokenize.ENDMARKER,
    tokenize.COMMENT,
}


def code_tokens(text: str, language: str) -> tuple[str, ...]:
    """The code tokens of ``text`` (layout and comments dropped): Python's own ``tokenize``
    for Python, a Java/C lexer otherwise. Text Python cannot tokenize (an unclosed bracket in a
    cut-off generation) falls back to the Java/C lexer, which needs no balance."""
    if language == "python":
        try:
            toks = tokenize.generate_tokens(io.StringIO(text.strip() + "\n").readline)
            return tuple(t.string for t in toks if t.type not in _SKIP)
        except (tokenize.TokenError, IndentationError, SyntaxError):
            pass
    return tuple(_C_LIKE.findall(text))


def char_similarity(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


def assertion_metrics(
    generated: Sequence[str | Sequence[str]],
    reference: Sequence[str | Sequence[str]],
    casefold: bool = False,
    language: str | None = None,
) -> dict[str, float]:
    """Exact-match precision/recall/F1/accuracy and character similarity.

    Args:
        generated: per example, one assertion or a list of them.
        reference: per example, the reference assertion(s); same length as ``generated``.
        casefold: compare case-insensitively.
        language: with a language, also ``format_insensitive_accuracy``: matches of equal code
            token sequences over max(#generated, #reference).

    Returns:
        ``precision, recall, f1, accuracy, similarity`` and the counts behind them.
    """
    if len(generated) != len(reference):
        raise ValueError(f"generated has {len(generated)} examples, reference {len(reference)}")
    gen_sets, ref_sets = _as_sets(generated, casefold), _as_sets(reference, casefold)
    matches = n_gen = n_ref = 0
    sims: list[float] = []
    for gen, ref in zip(gen_sets, ref_sets, strict=True):
        matches += sum((Counter(gen) & Counter(ref)).values())
        n_gen += len(gen)
        n_ref += len(ref)
        for g in gen:
            sims.append(max((char_similarity(g, r) for r in ref), default=0.0))
    precision = matches / n_gen if n_gen else 0.0
    recall = matches / n_ref if n_ref else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    denom = max(n_gen, n_ref)
    out = {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "accuracy": matches / denom if denom else 0.0,
        "similarity": sum(sims) / len(sims) if sims else 0.0,
        "exact_matches": float(matches),
        "generated": float(n_gen),
        "references": float(n_ref),
    }
    if language is not None:
        token_matches = 0
        for gen, ref in zip(gen_sets, ref_sets, strict=True):
            gen_toks = Counter(code_tokens(g, language) for g in gen)
            token_matches += sum(
                (gen_toks & Counter(code_tokens(r, language) for r in ref)).values()
            )
        out["format_insensitive_accuracy"] = token_matches / denom if denom else 0.0
        out["format_insensitive_matches"] = float(token_matches)
    return out
