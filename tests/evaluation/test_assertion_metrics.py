"""The alpha-T assertion metrics, checked on hand-counted examples."""

from __future__ import annotations

import pytest

from codistill.evaluation.assertion_metrics import assertion_metrics, code_tokens


def test_counts_by_hand():
    generated = [["assertEquals(1, x);", "assertNull(y);"], "assertTrue(z);", ""]
    reference = ["assertEquals(1,  x);", "assertTrue(z);", "assertFalse(q);"]
    got = assertion_metrics(generated, reference)
    # 2 exact matches (whitespace collapsed), 3 generated, 3 references.
    assert got["precision"] == pytest.approx(2 / 3) and got["recall"] == pytest.approx(2 / 3)
    assert got["accuracy"] == pytest.approx(2 / 3) and got["f1"] == pytest.approx(2 / 3)
    assert (got["exact_matches"], got["generated"], got["references"]) == (2, 3, 3)


def test_casefold_follows_the_paper_when_asked():
    assert assertion_metrics(["assertequals(a, b);"], ["assertEquals(a, b);"])["accuracy"] == 0
    folded = assertion_metrics(["assertequals(a, b);"], ["assertEquals(a, b);"], casefold=True)
    assert folded["accuracy"] == 1


def test_format_insensitive_match_forgives_spaces_between_tokens_only():
    spaced = "assertTrue ( conn . isOpen ( ) ) ;"
    got = assertion_metrics([spaced], ["assertTrue(conn.isOpen());"], language="java")
    assert got["accuracy"] == 0 and got["format_insensitive_accuracy"] == 1
    other = assertion_metrics([spaced], ["assertFalse(conn.isOpen());"], language="java")
    assert other["format_insensitive_accuracy"] == 0
    strings = assertion_metrics(
        ['assertEquals("a  b", s);'], ['assertEquals("a b", s);'], language="java"
    )
    assert (
        strings["format_insensitive_accuracy"] == 1
    )  # whitespace inside literals is collapsed too


def test_code_tokens_use_pythons_lexer_and_drop_comments():
    assert code_tokens("self.assertEqual(a , b)  # note", "python") == code_tokens(
        "self.assertEqual(a,b)", "python"
    )
    assert code_tokens("x >>>= 2;", "java") == ("x", ">>>=", "2", ";")
    assert code_tokens("self.assertIn(x, (1,", "python")[-2:] == ("1", ",")  # cut-off text
