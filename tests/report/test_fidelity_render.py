"""``fidelity.render``: ``fidelity.json`` as tables and Markdown, on documents written by hand in
the shape ``codistill fidelity`` writes them; no model is run."""

from __future__ import annotations

import copy
import math

import pytest

from codistill.fidelity.render import (
    model_label,
    num,
    originals_summary,
    recode_table,
    relation_table,
    render_markdown,
)


def _ci(value, low=None, high=None) -> dict:
    return {"value": value, "ci_low": low, "ci_high": high}


# An assertion run: three relations generated, one of which (dead_code) left no verified
# variant and so has no metrics block; the student went through a llama.cpp backend.
ASSERTION = {
    "task": "assertion",
    "language": "python",
    "teacher": "runs/teacher",
    "student": "runs/student",
    "n_inputs": 10,
    "n_variants": 7,
    "options": {"teacher_backend": None, "student_backend": "llamacpp:s.gguf"},
    "verification": {
        "per_relation": {
            "swap": {"generated": 3, "verified": 3, "validity_rate": 1.0},
            "rename": {"generated": 5, "verified": 4, "validity_rate": 0.8},
            "dead_code": {"generated": 2, "verified": 0, "validity_rate": 0.0},
        }
    },
    "relations": {
        "all": {
            "n": 7,
            "metrics": {
                "agreement": _ci(0.714, 0.4, 1.0),
                "teacher_consistency": _ci(0.857, 0.571, 1.0),
                "student_consistency": _ci(0.571, 0.2, 0.9),
                "teacher_stable_student_change_rate": _ci(0.333, 0.0, 0.75),
            },
            "mcnemar": {"p_value": 0.0625},
        },
        "rename": {
            "n": 4,
            "metrics": {
                "agreement": _ci(0.75, 0.5, 1.0),
                "teacher_consistency": _ci(1.0),  # no interval: shown without one
                "student_consistency": _ci(None),  # undefined
            },
            "mcnemar": {"p_value": None},
        },
        "swap": {
            "n": 3,
            "metrics": {
                "agreement": _ci(2 / 3, 1 / 3, 1.0),
                "teacher_consistency": _ci(2 / 3, 1 / 3, 1.0),
                "student_consistency": _ci(1 / 3, 0.0, 2 / 3),
                "teacher_stable_student_change_rate": _ci(0.5, 0.0, 1.0),
            },
            "mcnemar": {"p_value": 1.0},
        },
    },
    "originals": {
        "teacher": {"exact_match": 0.5, "_passed": {"a": True}},
        "student": {"exact_match": 0.25, "similarity": 0.8125},
    },
    "attacks": {
        "target": "self",
        "budget": 100,
        "candidates": {"total": 12},
        "alert": {
            "teacher": {
                "summary": {"attack_success_rate": 0.25, "mean_queries": 41.25, "drop": 0.1}
            },
            "student": {"summary": {"attack_success_rate": 0.5, "mean_queries": 17.0, "drop": 0.3}},
            "relative_drop": 2.0,
        },
    },
    "gates": [
        {"metric": "agreement", "rule": ">=", "threshold": 0.9, "value": 0.714, "passed": False},
        {"metric": "rename.jsd", "rule": "<=", "threshold": 0.1, "value": None, "passed": False},
        {
            "metric": "student.exact_match",
            "rule": ">=",
            "threshold": 0.2,
            "value": 0.25,
            "passed": True,
        },
    ],
}

EXPECTED_MARKDOWN = """\
# Fidelity: assertion (python)

teacher `runs/teacher` vs student `runs/student` (through `llamacpp:s.gguf`), 10 inputs, \
7 verified variants
On the originals: teacher exact_match 0.500; student exact_match 0.250, similarity 0.812.

| relation | validity | n | agreement | teacher_consistency | student_consistency \
| teacher_stable_student_change_rate | McNemar p |
|---|---|---|---|---|---|---|---|
| dead_code | 0.00 (0/2) | 0 | — | — | — | — | — |
| rename | 0.80 (4/5) | 4 | 0.750 [0.500, 1.000] | 1.000 | — | — | — |
| swap | 1.00 (3/3) | 3 | 0.667 [0.333, 1.000] | 0.667 [0.333, 1.000] | 0.333 [0.000, 0.667] \
| 0.500 [0.000, 1.000] | 1 |
| all |  | 7 | 0.714 [0.400, 1.000] | 0.857 [0.571, 1.000] | 0.571 [0.200, 0.900] \
| 0.333 [0.000, 0.750] | 0.0625 |

| attack | model | success rate | mean queries | drop | relative drop |
|---|---|---|---|---|---|
| alert | teacher | 0.250 | 41.2 | 0.100 |  |
| alert | student | 0.500 | 17.0 | 0.300 | 2.000 |

Gates:
- FAIL agreement >= 0.9 (measured 0.714)
- FAIL rename.jsd <= 0.1 (measured —)
- PASS student.exact_match >= 0.2 (measured 0.250)
"""


def test_assertion_run_renders_to_the_expected_markdown():
    assert render_markdown(ASSERTION) == EXPECTED_MARKDOWN


def test_relation_rows_are_sorted_with_all_last_and_unverified_relations_kept():
    header, rows = relation_table(ASSERTION)
    assert header[:3] == ["relation", "validity", "n"] and header[-1] == "McNemar p"
    assert [r[0] for r in rows] == ["dead_code", "rename", "swap", "all"]
    assert all(len(r) == len(header) for r in rows)


def test_classifier_tasks_get_the_classifier_columns():
    doc = copy.deepcopy(ASSERTION)
    doc["task"] = "defect"
    doc["relations"]["all"]["metrics"]["jsd"] = _ci(0.0421, 0.01, 0.08)
    header, rows = relation_table(doc)
    assert header[3:-1] == [
        "agreement",
        "teacher_consistency",
        "student_consistency",
        "teacher_stable_student_flip_rate",
        "student_correct_to_incorrect",
        "jsd",
    ]
    assert rows[-1][-2] == "0.042 [0.010, 0.080]"


def test_measured_optional_metrics_add_columns_to_a_generator_table():
    doc = copy.deepcopy(ASSERTION)
    doc["relations"]["all"]["metrics"].update(
        student_correct_to_incorrect=_ci(0.1),
        cqs_mean_abs_diff=_ci(0.05, 0.01, 0.09),
        cqs_within_tolerance=_ci(0.9),
    )
    header, rows = relation_table(doc)
    assert header[-4:] == [
        "student_correct_to_incorrect",
        "cqs_mean_abs_diff",
        "cqs_within_tolerance",
        "McNemar p",
    ]
    assert rows[-1][-4:] == ["0.100", "0.050 [0.010, 0.090]", "0.900", "0.0625"]
    assert rows[1][-4:-1] == ["—", "—", "—"]  # rename measured none of them


def test_recode_table_has_one_row_per_model_and_only_for_code_generation():
    assert recode_table(ASSERTION) == (
        ["model", "pass@1", "robust pass", "robust drop", "pass -> fail", "fail -> pass"],
        [],
    )
    doc = copy.deepcopy(ASSERTION)
    doc["task"] = "codegen"
    doc["codegen"] = {
        "teacher": {
            "pass_at_k": 0.5,
            "robust_pass": 0.25,
            "robust_drop": 0.5,
            "robust_change_minus": 0.25,
            "robust_change_plus": 0.0,
        },
        "student": {
            "pass_at_k": 0.0,
            "robust_pass": 0.0,
            "robust_drop": None,  # undefined when pass@1 is 0
            "robust_change_minus": 0.0,
            "robust_change_plus": 0.125,
        },
    }
    _, rows = recode_table(doc)
    assert rows == [
        ["teacher", "0.500", "0.250", "0.500", "0.250", "0.000"],
        ["student", "0.000", "0.000", "—", "0.000", "0.125"],
    ]
    markdown = render_markdown(doc)
    assert "Code generation under the relations (ReCode):" in markdown
    assert "| student | 0.000 | 0.000 | — | 0.000 | 0.125 |" in markdown
    assert "ReCode" not in render_markdown(ASSERTION)


def test_model_label_names_the_backend_only_when_there_is_one():
    assert model_label(ASSERTION, "teacher") == "`runs/teacher`"
    assert model_label(ASSERTION, "student") == "`runs/student` (through `llamacpp:s.gguf`)"
    assert model_label({"teacher": "t"}, "teacher") == "`t`"  # no options at all


def test_originals_summary_hides_private_keys():
    assert originals_summary(ASSERTION) == (
        "teacher exact_match 0.500; student exact_match 0.250, similarity 0.812"
    )
    assert originals_summary({}) == ""


def test_a_document_without_originals_attacks_or_gates_has_none_of_their_parts():
    doc = {k: v for k, v in ASSERTION.items() if k not in ("originals", "attacks", "gates")}
    markdown = render_markdown(doc)
    for absent in ("On the originals", "| attack |", "Gates:"):
        assert absent not in markdown
    assert markdown.endswith("| 0.333 [0.000, 0.750] | 0.0625 |\n")


@pytest.mark.parametrize(
    ("value", "digits", "text"),
    [
        (0.12345, 3, "0.123"),
        (2 / 3, 1, "0.7"),
        (1, 3, "1.000"),
        (None, 3, "—"),
        (math.nan, 3, "—"),
        (math.inf, 3, "—"),
    ],
)
def test_num_formats_finite_numbers_and_dashes_the_rest(value, digits, text):
    assert num(value, digits) == text


def test_a_measured_relation_without_a_verification_entry_keeps_its_row():
    from codistill.fidelity.render import relation_table

    metrics = {"agreement": {"value": 0.5, "ci_low": 0.4, "ci_high": 0.6}}
    result = {
        "task": "assertion",
        "verification": {"per_relation": {}},
        "relations": {"rename": {"n": 3, "metrics": metrics}, "all": {"n": 3, "metrics": metrics}},
    }
    _, rows = relation_table(result)
    assert [r[0] for r in rows] == ["rename", "all"]
    assert rows[0][1] == "—"
