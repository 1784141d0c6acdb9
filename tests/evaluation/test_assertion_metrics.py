"""The alpha-T assertion metrics, checked on hand-counted examples."""

from __future__ import annotations

import pytest

from codistill.evaluation.assertion_metrics import (
    assertion_metrics,
    char_similarity,
    code_tokens,
    normalize,
)


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


# -- normalize ------------------------------------------------------------------------------------


def test_normalize_collapses_every_whitespace_run_and_strips():
    assert normalize("  assertEquals(a,\n\t  b);\r\n") == "assertEquals(a, b);"
    assert normalize("") == "" and normalize(" \n\t ") == ""


def test_normalize_casefolds_only_when_asked_and_fully():
    assert normalize("assertEquals(Straße)") == "assertEquals(Straße)"
    # casefold, not lower: "ß" folds to "ss", as the paper's case-insensitive match needs.
    assert normalize("assertEquals(Straße)", casefold=True) == "assertequals(strasse)"


# -- char_similarity ------------------------------------------------------------------------------


def test_char_similarity_is_twice_the_matched_characters_over_both_lengths():
    assert char_similarity("abcd", "abed") == pytest.approx(2 * 3 / 8)  # "ab" + "d"
    assert char_similarity("assert a", "assert b") == pytest.approx(2 * 7 / 16)
    assert char_similarity("abc", "xyz") == 0.0
    assert char_similarity("same", "same") == 1.0


def test_char_similarity_does_not_junk_frequent_characters_in_long_assertions():
    # 30 copies of an assertion (419 characters) that differ in one character each: 389 of 419
    # characters match. difflib's default "autojunk" would drop the popular characters of a
    # text over 200 characters and report about 0.03.
    a = " ".join(["assertTrue(x)"] * 30)
    b = " ".join(["assertTrue(y)"] * 30)
    assert len(a) == len(b) == 419
    assert char_similarity(a, b) == pytest.approx(389 / 419)


# -- code_tokens ----------------------------------------------------------------------------------


def test_code_tokens_keep_java_operators_and_escaped_strings_whole():
    text = 'assertEquals("a \\" b", x != y && z >= 1);'
    assert code_tokens(text, "java") == (
        "assertEquals",
        "(",
        '"a \\" b"',
        ",",
        "x",
        "!=",
        "y",
        "&&",
        "z",
        ">=",
        "1",
        ")",
        ";",
    )


def test_code_tokens_of_python_follow_pythons_operators():
    assert code_tokens("x ** 2 // 3", "python") == ("x", "**", "2", "//", "3")
    assert code_tokens("x ** 2 // 3", "java") == ("x", "*", "*", "2", "/", "/", "3")
    assert code_tokens('self.assertEqual(x, "a  b")  # c', "python") == (
        "self",
        ".",
        "assertEqual",
        "(",
        "x",
        ",",
        '"a  b"',
        ")",
    )


# -- assertion_metrics: the alpha-T definitions ------------------------------------------------


def test_accuracy_divides_by_the_larger_of_the_two_totals():
    # Example 1: two generated, one reference, one match. Example 2: nothing generated, two
    # references. Totals: 1 match, 2 generated, 3 references.
    got = assertion_metrics(
        [["assert a", "assert b"], ""],
        ["assert a", ["assert c", "assert d"]],
    )
    assert got["precision"] == pytest.approx(1 / 2)
    assert got["recall"] == pytest.approx(1 / 3)
    assert got["f1"] == pytest.approx(2 * (1 / 2) * (1 / 3) / (1 / 2 + 1 / 3))  # 0.4
    # max(2, 3) over the totals, as the paper words it (a per-example max would give 1/4).
    assert got["accuracy"] == pytest.approx(1 / 3)
    # Each generated assertion's best match: 1.0 and 14/16; the empty generation is no
    # assertion and has no similarity.
    assert got["similarity"] == pytest.approx((1.0 + 14 / 16) / 2)


def test_repeated_assertions_match_at_most_as_often_as_the_reference_holds_them():
    got = assertion_metrics([["assert a", "assert a"]], ["assert a"])
    assert got["exact_matches"] == 1
    assert (got["precision"], got["recall"], got["accuracy"]) == (0.5, 1.0, 0.5)
    assert got["f1"] == pytest.approx(2 / 3)


def test_a_generation_without_reference_scores_zero_similarity():
    got = assertion_metrics(["assert a", "assert b"], ["assert a", ""])
    assert (got["precision"], got["recall"], got["accuracy"]) == (0.5, 1.0, 0.5)
    assert got["similarity"] == pytest.approx(0.5)


def test_nothing_generated_and_nothing_expected_is_all_zero():
    got = assertion_metrics(["", "  "], ["", ""])
    for key in ("precision", "recall", "f1", "accuracy", "similarity", "exact_matches"):
        assert got[key] == 0.0, key
    assert "format_insensitive_accuracy" not in got


def test_python_format_insensitive_match_ignores_comments_and_spacing():
    got = assertion_metrics(
        ["self.assertEqual(a,b)  # why", "self.assertTrue(c)"],
        ["self.assertEqual(a, b)", "self.assertTrue(d)"],
        language="python",
    )
    assert got["accuracy"] == 0.0
    assert got["format_insensitive_matches"] == 1 and got["format_insensitive_accuracy"] == 0.5


def test_examples_must_pair_up():
    with pytest.raises(ValueError, match="generated has 2 examples, reference 1"):
        assertion_metrics(["assert a", "assert b"], ["assert a"])
