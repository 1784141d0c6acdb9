"""Fault operators: sites, exact edits, determinism, no crash without a site."""

from __future__ import annotations

import ast

import pytest

from codistill.soda.faults import (
    FAULT_TYPES,
    OPERATORS,
    candidates,
    inject,
    sample_faults,
)
from tests.soda.fault_questions import (
    COUNT_BETWEEN_SOLUTION,
    DESCRIBE_SOLUTION,
    DIGIT_SUM_SOLUTION,
    MAX_GAP_SOLUTION,
    QUESTIONS,
    SUM_TO_SOLUTION,
)


def _changed_lines(before: str, after: str) -> list[tuple[str, str]]:
    a, b = before.splitlines(), after.splitlines()
    assert len(a) == len(b)
    return [(x, y) for x, y in zip(a, b, strict=True) if x != y]


def test_every_operator_has_a_site_in_the_test_questions():
    found = {f.operator for _, source in QUESTIONS for f in candidates(source)}
    assert found == set(OPERATORS)


def test_every_operator_belongs_to_one_of_the_five_paper_types():
    assert {op.fault_type for op in OPERATORS.values()} == set(FAULT_TYPES)


@pytest.mark.parametrize(
    ("operator", "before", "after"),
    [
        ("range_off_by_one", "for i in range(n + 1):", "for i in range(n):"),
        ("str_operand", "for i in range(n + 1):", 'for i in range(n + "1"):'),
        ("iterate_int", "for i in range(n + 1):", "for i in n + 1:"),
        ("unbound_name", "total += i", "total += i_"),
        ("unbound_call", "for i in range(n + 1):", "for i in raneg(n + 1):"),
        ("drop_colon", "def sum_to(n):", "def sum_to(n)"),
        ("misspelled_keyword", "return total", "retrun total"),
    ],
)
def test_operator_edits_one_line_and_nothing_else(operator, before, after):
    faults = candidates(SUM_TO_SOLUTION, operators=[operator])
    edits = [_changed_lines(SUM_TO_SOLUTION, f.source) for f in faults]
    assert all(len(e) == 1 for e in edits)
    assert (before, after) in [(x.strip(), y.strip()) for [(x, y)] in edits]


_SUMS = "sums = [sum(values[i:i + 2]) for i in range(len(values) - 1)]"
_REPORT = 'return "max=" + str(max(sums)) + " sums=" + ",".join(map(str, sums))'


@pytest.mark.parametrize(
    ("operator", "before", "after"),
    [
        ("min_max_swap", _REPORT, _REPORT.replace("max(", "min(")),
        ("negate_condition", "if not sums:", "if sums:"),
        ("slice_off_by_one", _SUMS, _SUMS.replace("i:i + 2", "i:i + 1")),
        ("slice_off_by_one", _SUMS, _SUMS.replace("i:i + 2", "i + 1:i + 2")),
        ("sum_str_start", _SUMS, _SUMS.replace("i + 2])", 'i + 2], "")')),
        ("drop_conversion", _REPORT, _REPORT.replace("str(max(sums))", "max(sums)")),
        ("drop_conversion", _REPORT, _REPORT.replace("map(str, sums)", "sums")),
        ("range_of_sequence", _SUMS, _SUMS.replace("len(values) - 1", "values - 1")),
    ],
)
def test_more_operators_edit_as_documented(operator, before, after):
    faults = candidates(DESCRIBE_SOLUTION, operators=[operator])
    edits = [_changed_lines(DESCRIBE_SOLUTION, f.source) for f in faults]
    assert all(len(e) == 1 for e in edits)
    assert (before, after) in [(x.strip(), y.strip()) for [(x, y)] in edits]


def test_fault_records_type_operator_and_original_line():
    (fault,) = candidates(DIGIT_SUM_SOLUTION, operators=["while_true"])
    assert (fault.fault_type, fault.operator, fault.line) == ("timeout", "while_true", 3)
    assert "while True:" in fault.source.splitlines()[2]


def test_skip_update_replaces_the_loop_variable_update_with_pass():
    sources = [f.source for f in candidates(DIGIT_SUM_SOLUTION, operators=["skip_update"])]
    assert any("        pass" in s and "n //= 10" not in s for s in sources)
    assert not any("s += n % 10" not in s for s in sources)  # s is not in the condition


def test_busy_loop_goes_after_the_docstring():
    (fault,) = candidates(MAX_GAP_SOLUTION, operators=["busy_loop_at_entry"])
    lines = fault.source.splitlines()
    assert lines[1].strip().startswith('"""') and lines[2] == "    while True: pass"


def test_syntax_faults_do_not_compile_and_the_others_do():
    for _, source in QUESTIONS:
        for fault in candidates(source):
            if fault.fault_type == "syntax":
                with pytest.raises(SyntaxError):
                    compile(fault.source, "<f>", "exec")
            else:
                compile(fault.source, "<f>", "exec")


def test_unbound_names_are_bound_nowhere_and_not_builtins():
    for _, source in QUESTIONS:
        bound = {n.id for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Name)}
        for fault in candidates(source, "name"):
            new = fault.change.split(" -> ")[1]
            assert new not in bound and new not in dir(__builtins__) and new.isidentifier()


def test_no_candidate_repeats_the_source_or_another():
    for _, source in QUESTIONS:
        sources = [f.source for f in candidates(source)]
        assert source not in sources and len(set(sources)) == len(sources)


def test_same_seed_same_faults_and_other_seeds_differ():
    first = sample_faults(MAX_GAP_SOLUTION, seed=3, per_type=2)
    assert first == sample_faults(MAX_GAP_SOLUTION, seed=3, per_type=2)
    picks = {tuple(f.source for f in sample_faults(MAX_GAP_SOLUTION, seed=s)) for s in range(8)}
    assert len(picks) > 1


def test_sample_takes_distinct_operators_before_repeating_one():
    faults = sample_faults(COUNT_BETWEEN_SOLUTION, seed=0, per_type=3, fault_types=["syntax"])
    assert len({f.operator for f in faults}) == 3


def test_solution_without_a_site_gives_nothing_for_that_operator():
    source = "def greet(name):\n    return 'hi ' + name\n"
    for operator in (
        "range_off_by_one",
        "while_true",
        "skip_update",
        "iterate_int",
        "bool_op_swap",
        "range_of_sequence",
    ):
        assert candidates(source, operators=[operator]) == []
    assert inject(source, "timeout", seed=1) is not None  # busy loop still has a site
    assert inject("x = 'a'\n", "timeout", seed=1) is None
    assert inject("x = 'a'\n", "type", seed=1) is None


def test_names_from_a_star_import_are_never_called_unbound():
    source = "from math import *\n\ndef f(x):\n    return floor(x) + x\n"
    assert candidates(source, "name") == []


def test_f_string_contents_are_left_alone():
    source = "def f(x):\n    y = 1\n    return f'{x + 1}' + str(y)\n"
    for fault in candidates(source, "name"):
        assert "{x + 1}" in fault.source


def test_non_ascii_text_keeps_edit_positions_right():
    source = "def f(s):\n    t = 'é€' + s\n    return len(t) - 1\n"
    changes = {f.source for f in candidates(source, operators=["arith_swap"])}
    assert changes == {
        "def f(s):\n    t = 'é€' - s\n    return len(t) - 1\n",
        "def f(s):\n    t = 'é€' + s\n    return len(t) + 1\n",
    }


def test_unparsable_solution_and_unknown_names_are_refused():
    with pytest.raises(ValueError, match="does not parse"):
        candidates("def f(:\n")
    with pytest.raises(ValueError, match="fault_type"):
        candidates(SUM_TO_SOLUTION, "semantic")
    with pytest.raises(ValueError, match="unknown fault operator"):
        candidates(SUM_TO_SOLUTION, operators=["nope"])
