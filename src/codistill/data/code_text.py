"""Brace-level surgery on C-family source text (C, C++, Java, JavaScript): find a block's end,
a function's body, a ``main`` to drop, the class around an offset.

Hand-written rather than tree-sitter: it must work on the fragments models and MultiPL-E's
prompts produce (a function left open, tests that start by closing it), which no grammar
parses, and for JavaScript and C++, whose grammars codistill does not install. Comments and
string or character literals are skipped; nothing else of the languages is understood.
"""

from __future__ import annotations

import re


def blank_comments_and_strings(code: str) -> str:
    """``code`` with every comment and string or character literal replaced by spaces (newlines
    kept), so offsets stay the same and a regex sees only code."""
    out, i, n = list(code), 0, len(code)

    def blank(start: int, end: int) -> None:
        for j in range(start, min(end, n)):
            if out[j] != "\n":
                out[j] = " "

    while i < n:
        if code.startswith("//", i):
            end = code.find("\n", i)
            end = n if end == -1 else end
            blank(i, end)
            i = end
        elif code.startswith("/*", i):
            end = code.find("*/", i + 2)
            end = n if end == -1 else end + 2
            blank(i, end)
            i = end
        elif code[i] in "\"'`":
            quote, j = code[i], i + 1
            while j < n and code[j] != quote and (quote == "`" or code[j] != "\n"):
                j += 2 if code[j] == "\\" else 1
            blank(i, j + 1)
            i = j + 1
        else:
            i += 1
    return "".join(out)


def closing_brace(code: str, start: int) -> int | None:
    """Index of the ``}`` that closes the block opened just before ``start`` (comments and
    literals skipped); None if it never closes."""
    plain = blank_comments_and_strings(code)
    depth = 1
    for i in range(start, len(plain)):
        if plain[i] == "{":
            depth += 1
        elif plain[i] == "}":
            depth -= 1
            if depth == 0:
                return i
    return None


def _definition(name: str) -> re.Pattern:
    # `name(...) {` with whatever may sit between the parameters and the brace: `const`,
    # `throws X`, `-> T`, a C++ initializer is not handled (rare in these answers).
    return re.compile(rf"\b{re.escape(name)}\s*\([^;{{}}()]*\)[^;{{}}()]*\{{")


def defines(code: str, name: str) -> bool:
    """Whether ``code`` holds a definition of function ``name`` (``name(...) ... {``)."""
    return _definition(name).search(blank_comments_and_strings(code)) is not None


def function_body(code: str, name: str) -> str | None:
    """The text between the braces of function ``name``'s definition in ``code`` (what a
    MultiPL-E completion of a prompt ending in ``{`` is), or None when it is not defined."""
    found = _definition(name).search(blank_comments_and_strings(code))
    if found is None:
        return None
    end = closing_brace(code, found.end())
    if end is None:
        return None
    return code[found.end() : end]


_MAIN = {
    "c": re.compile(r"^[ \t]*(?:(?:static|extern)\s+)?(?:int|void)\s+main\s*\([^()]*\)\s*\{", re.M),
    "java": re.compile(
        r"^[ \t]*(?:@[\w.]+(?:\([^()]*\))?\s+)*"
        r"(?:(?:public|protected|private|static|final|synchronized|strictfp)\s+)*"
        r"void\s+main\s*\([^()]*\)(?:\s*throws\s+[\w.,\s]+?)?\s*\{",
        re.M,
    ),
}


def drop_main(code: str, language: str) -> str:
    """``code`` without its ``main`` (C, C++) or ``main`` method (Java): a solution's own
    demo ``main`` would clash with the one the tests bring. Other languages: ``code``."""
    head = _MAIN.get("c" if language == "cpp" else language)
    if head is None:
        return code
    found = head.search(blank_comments_and_strings(code))
    if found is None:
        return code
    end = closing_brace(code, found.end())
    if end is None:
        return code
    return code[: found.start()] + code[end + 1 :].lstrip("\n")


_TYPE = re.compile(r"\b(?:class|interface|enum|record)\s+(\w+)[^;{}()]*\{")


def enclosing_type(code: str, offset: int) -> str | None:
    """The innermost Java type (class, interface, enum, record) whose body holds ``offset``."""
    plain = blank_comments_and_strings(code)
    best = None
    for found in _TYPE.finditer(plain, 0, offset):
        end = closing_brace(code, found.end())
        if end is None or end >= offset:
            best = found.group(1)  # later matches are nested deeper
    return best
