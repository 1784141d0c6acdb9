"""CodeBLEU against golden values from the codebleu 0.7.0 package, and its documented behaviour.

The golden file holds the package's values (tree-sitter 0.22.3, grammars 0.21.0) on a fixed
sample; ``benchmarks/codebleu_agreement.py --regenerate`` rebuilt it (see its ``generated_by``).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from codistill.evaluation.codebleu import codebleu, data_flow, sentence_codebleu
from codistill.evaluation.cqs import code_tokens

GOLDEN = json.loads((Path(__file__).parent / "data" / "codebleu_reference.json").read_text())
COMPONENTS = ("codebleu", "ngram_match", "weighted_ngram_match", "syntax_match", "dataflow_match")
PAIRS = {p["id"]: p for p in GOLDEN["pairs"]}
AGREEING = [p for p in GOLDEN["pairs"] if not p["seed_dependent"] and "known_difference" not in p]
SEED_DEPENDENT = [e for e in GOLDEN["pairs"] + GOLDEN["corpora"] if e["seed_dependent"]]
SRC = Path(__file__).resolve().parents[2] / "src"

PY_FUNCTION = "def total(xs):\n    s = 0\n    for x in xs:\n        s += x\n    return s"
JAVA_METHOD = "public int twice(int x) {\n    int y = x * 2;\n    return y;\n}"


def _corpus_inputs(entry: dict) -> tuple[list[str], list, str]:
    members = [PAIRS[i] for i in entry["ids"]]
    return (
        [p["prediction"] for p in members],
        [p["reference"] for p in members],
        members[0]["language"],
    )


def _assert_components(got: dict, expected: dict, components=COMPONENTS) -> None:
    for name in components:
        assert got[name] == pytest.approx(expected[name], abs=1e-6), name


def test_golden_sample_covers_both_languages_and_the_edge_cases():
    languages = {p["language"] for p in GOLDEN["pairs"]}
    assert languages == {"java", "python"} and len(AGREEING) >= 55
    assert any(p["prediction"] == "" for p in AGREEING)
    assert any(p["prediction"] == p["reference"] for p in AGREEING)
    assert GOLDEN["versions"]["codebleu"] == "0.7.0" and "generated_by" in GOLDEN


@pytest.mark.parametrize("pair", AGREEING, ids=[p["id"] for p in AGREEING])
def test_each_pair_matches_the_package_component_by_component(pair):
    got = codebleu([pair["prediction"]], [pair["reference"]], pair["language"])
    _assert_components(got, pair["package"])


@pytest.mark.parametrize("corpus", GOLDEN["corpora"], ids=[c["name"] for c in GOLDEN["corpora"]])
def test_corpus_scores_match_the_package(corpus):
    got = codebleu(*_corpus_inputs(corpus))
    stable = [c for c in COMPONENTS if c not in corpus.get("package_seen", {})]
    _assert_components(got, corpus["package"], stable)


@pytest.mark.parametrize(
    "entry", SEED_DEPENDENT, ids=[e.get("id", e.get("name")) for e in SEED_DEPENDENT]
)
def test_hash_dependent_entries_get_a_value_the_package_can_give(entry):
    inputs = (
        _corpus_inputs(entry)
        if "ids" in entry
        else ([entry["prediction"]], [entry["reference"]], entry["language"])
    )
    got = codebleu(*inputs)
    for name, seen in entry["package_seen"].items():
        assert any(math.isclose(got[name], v, abs_tol=1e-9) for v in seen), name


def test_hash_order_reproduces_the_package_under_the_same_hash_seed():
    script = (
        "import json, sys\n"
        "from codistill.evaluation.codebleu import codebleu\n"
        "jobs = json.load(sys.stdin)\n"
        "print(json.dumps([codebleu(*job, hash_order=True)['dataflow_match'] for job in jobs]))\n"
    )
    jobs = [
        _corpus_inputs(e) if "ids" in e else ([e["prediction"]], [e["reference"]], e["language"])
        for e in SEED_DEPENDENT
    ]
    path = os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": path}
    out = subprocess.run(
        [sys.executable, "-c", script],
        input=json.dumps(jobs),
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    got = json.loads(out.stdout)
    assert got == pytest.approx([e["package"]["dataflow_match"] for e in SEED_DEPENDENT], abs=1e-12)


def test_known_grammar_difference_is_confined_to_syntax_match():
    pair = next(p for p in GOLDEN["pairs"] if "known_difference" in p)
    got = codebleu([pair["prediction"]], [pair["reference"]], pair["language"])
    _assert_components(
        got, pair["package"], ("ngram_match", "weighted_ngram_match", "dataflow_match")
    )
    assert got["syntax_match"] != pytest.approx(pair["package"]["syntax_match"], abs=1e-6)


def test_hand_computed_corpus_score():
    got = codebleu(["assert x == 1", "assert y"], ["assert x == 1", "assert y == 2"], "python")
    # 6 hypothesis tokens against 8 reference tokens; n-gram matches 6/6, 4/4, 2/3, 1/2.
    bleu = math.exp(1 - 8 / 6) * (1 * 1 * (2 / 3) * (1 / 2)) ** 0.25
    # Unigram recall weighted 1 for `assert`, 0.2 otherwise: (1.6 + 1.2) / 3.2; then 4/6, 2/4, 1/2.
    weighted = (2.8 / 3.2 * (4 / 6) * (2 / 4) * (1 / 2)) ** 0.25
    syntax = 3 / 6  # the second prediction has none of (assert_statement (comparison_operator ...))
    assert got["ngram_match"] == pytest.approx(bleu, abs=1e-12)
    assert got["weighted_ngram_match"] == pytest.approx(weighted, abs=1e-12)
    assert got["syntax_match"] == pytest.approx(syntax)
    assert got["codebleu"] == pytest.approx(0.25 * (bleu + weighted + syntax + 1.0))


@pytest.mark.parametrize(("code", "language"), [(PY_FUNCTION, "python"), (JAVA_METHOD, "java")])
def test_identical_code_scores_one_on_every_component(code, language):
    got = codebleu([code], [code], language)
    _assert_components(got, dict.fromkeys(COMPONENTS, 1.0))


def test_identical_short_assertion_scores_one_with_code_tokens_but_not_whitespace_tokens():
    assertion = "assertNull(result);"  # a single whitespace token: BLEU-4 cannot reach 1
    assert codebleu([assertion], [assertion], "java")["codebleu"] < 0.7
    assert codebleu([assertion], [assertion], "java", tokenizer=code_tokens)["codebleu"] == 1.0


def test_empty_prediction_scores_only_the_missing_dataflow_bonus():
    got = codebleu([""], ["assertNotNull(result);"], "java")
    _assert_components(got, {c: 0.0 for c in COMPONENTS[1:]} | {"codebleu": 0.25})
    assert got["dataflow_defined"] is False and got["pairs_without_dataflow"] == 1


def test_strict_dataflow_removes_the_bonus_and_renormalises_without_dataflow():
    assert (
        codebleu([""], ["assertNotNull(result);"], "java", strict_dataflow=True)["codebleu"] == 0.0
    )
    got = codebleu(["assert x == 1"], ["assert x == 1"], "python", strict_dataflow=True)
    assert got["codebleu"] == pytest.approx(1.0)


def test_strict_dataflow_keeps_a_genuine_zero_dataflow_match():
    pred, ref = "def f(a):\n    return 1", "def f(a):\n    b = a\n    return b"
    loose = codebleu([pred], [ref], "python")
    strict = codebleu([pred], [ref], "python", strict_dataflow=True)
    assert loose["dataflow_defined"] and loose["dataflow_match"] == 0.0
    assert loose["codebleu"] - strict["codebleu"] == pytest.approx(0.25)


def test_pairs_without_dataflow_are_counted():
    got = codebleu(["assert x == 1", PY_FUNCTION], ["assert x == 1", PY_FUNCTION], "python")
    assert got["pairs_without_dataflow"] == 1 and got["dataflow_defined"] is True


def test_repeated_identifier_in_a_one_line_assertion_has_dataflow():
    assert data_flow("assertEquals(user.getId(), user.getId());", "java") != []
    assert data_flow("assertEquals(5, list.size());", "java") == []


def test_corpus_score_pools_counts_rather_than_averaging_sentences():
    preds = ["assert x == 1", "self.assertEqual(result, 4)"]
    refs = ["assert x == 1", "self.assertEqual(4, result)"]
    corpus = codebleu(preds, refs, "python", per_sample=True)
    mean_ngram = sum(s["ngram_match"] for s in corpus["per_sample"]) / 2
    assert corpus["ngram_match"] != pytest.approx(mean_ngram, abs=1e-3)


def test_per_sample_scores_equal_single_pair_calls():
    preds = ["assert x == 1", "", PY_FUNCTION]
    refs = ["assert x == 2", "assert y", PY_FUNCTION.replace("s += x", "s = s + x")]
    per_sample = codebleu(preds, refs, "python", per_sample=True)["per_sample"]
    for pred, ref, sample in zip(preds, refs, per_sample, strict=True):
        _assert_components(sample, codebleu([pred], [ref], "python"))
    assert sentence_codebleu(preds, refs, "python") == [s["codebleu"] for s in per_sample]


def test_custom_weights_combine_the_components():
    got = codebleu(["assert x == 2"], ["assert x == 1"], "python", weights=(0, 0, 1, 0))
    assert got["codebleu"] == got["syntax_match"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"language": "rust"}, "language"),
        ({"references": ["a", "b"]}, "references 2"),
        ({"weights": (0.5, 0.5)}, "weights"),
    ],
)
def test_invalid_arguments_are_rejected(kwargs, message):
    args = {"predictions": ["x"], "references": ["x"], "language": "python"} | kwargs
    with pytest.raises(ValueError, match=message):
        codebleu(**args)
