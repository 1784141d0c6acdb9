"""What the fidelity models are given: the inputs (items), the assertion hole, the prompt or
partial code built from (a variant of) an input, and the checks of their outputs.

Shared by the runner (relations on every input) and the attacks (renamings searched per input),
below both so neither imports the other.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import Any

from codistill.config.fidelity import FidelityConfig
from codistill.data.prompts import assertion_prompt
from codistill.data.schema import PLACEHOLDER
from codistill.evaluation.assertion_metrics import char_similarity
from codistill.evaluation.sandbox import run_programs
from codistill.fidelity.code import parse, text, walk

HOLE = "__codistill_hole__"
# Horizontal space only: a newline after the hole belongs to the code that follows it.
_HOLE_RE = re.compile(re.escape(HOLE) + r"[ \t]*\([ \t]*\)(?:[ \t]*;)?")


class FidelityError(ValueError):
    """Bad fidelity input (task, data, relation, backend), with what was expected."""


@dataclass
class Item:
    """One input: what relations transform, and what a model is judged against."""

    id: str
    language: str
    code: str
    target: str | None = None
    label: int | None = None
    record: Any = None


def assertion_record(item: Item, code: str, target: str):
    """The record a model sees for (variant) ``code``: the hole back to the placeholder."""
    if not _HOLE_RE.search(code):
        return None
    return replace(item.record, test_code=_HOLE_RE.sub(PLACEHOLDER, code, count=1), target=target)


def verify_text(item: Item, code: str, target: str | None) -> str:
    """What verification compiles: the assertion in its hole (real code), else the code."""
    if target is None:
        return code
    return _HOLE_RE.sub(lambda _: target, code, count=1)


def codegen_input(code: str, entry_point: str, partial: float) -> str | None:
    """ReCode's partial code: up to the entry point's docstring plus the first ``partial``
    share of its remaining body statements; None when the function is not found."""
    data = code.encode("utf-8")
    for node in walk(parse(code, "python").root_node):
        if node.type != "function_definition":
            continue
        name = node.child_by_field_name("name")
        if name is None or text(name) != entry_point:
            continue
        body = [c for c in node.child_by_field_name("body").named_children if c.type != "comment"]
        head = 0
        if body and body[0].type == "expression_statement" and body[0].named_children:
            if body[0].named_children[0].type == "string":
                head = 1
        rest = body[head:]
        keep = head + int(math.floor(partial * len(rest)))
        end = body[keep - 1].end_byte if keep else node.child_by_field_name("body").start_byte
        # End on a fresh line, as HumanEval's prompts do: the model writes the indentation. A
        # prompt ending in the indentation itself has models open with a blank line instead.
        return data[:end].decode("utf-8").rstrip() + "\n"
    return None


def model_inputs(task: str, item: Item, code: str, target: str | None, opts: FidelityConfig):
    """What the models are given for (a variant of) an item; None when it cannot be built."""
    if task == "assertion":
        record = assertion_record(item, code, target or item.target)
        return None if record is None else assertion_prompt(record, opts.prompt_style)
    if task == "codegen":
        return codegen_input(code, item.record.entry_point, opts.partial)
    if task == "clone":
        return (code, item.record.code2)
    return code


def codegen_passes(task_items: list[Item], prompts: list[str], completions: list[str]):
    """Whether each prompt + completion passes its item's tests (codistill's sandbox)."""
    programs = [
        f"{p}{c}\n\n{item.record.tests}\n"
        for item, p, c in zip(task_items, prompts, completions, strict=True)
    ]
    return [r.passed for r in run_programs(programs, timeout_s=10.0, workers=2)]


def similarity(a: str, b: str) -> float:
    """The evaluation's character similarity (``codistill eval``), on stripped outputs."""
    return char_similarity(a.strip(), b.strip())
