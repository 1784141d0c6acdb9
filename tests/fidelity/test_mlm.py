"""The masked-LM candidate source for ALERT, on a tiny random BERT with a hand-written vocab."""

from __future__ import annotations

import re

import pytest
import torch

from codistill.cli.main import main
from codistill.fidelity.attack_run import attack_candidates
from codistill.fidelity.attacks import alert_attack
from codistill.fidelity.mlm import MaskedLmCandidates, mask_windows, strip_subword_marker
from codistill.fidelity.runner import FidelityError, FidelityOptions
from tests.fidelity.test_attacks import CODE, Model, count_sensitive

JAVA = """int sum(int[] xs) {
    int count = 0;
    for (int x : xs) {
        count += x;
    }
    return count;
}
"""
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = [
    *"def for in return int ( ) [ ] { } : ; = += 0".split(),
    *"count items item xs x sum total acc tally 9lives ##s ##total for_each while".split(),
]
# Output biases, far above what the random weights contribute: the fills the model prefers, best
# first. Only "total", "tally" and "acc" survive the filters in the Java snippet.
PREFERRED = {
    "while": 60.0,  # keyword
    "xs": 58.0,  # already in the code
    "count": 56.0,  # the name itself
    "+=": 54.0,  # no identifier
    "9lives": 52.0,  # no identifier either
    "[MASK]": 50.0,  # special token
    "##total": 48.0,  # "total" once its marker is stripped
    "total": 46.0,
    "int": 44.0,  # keyword
    "tally": 42.0,
    "acc": 40.0,
}


@pytest.fixture(scope="module")
def mlm_dir(tmp_path_factory):
    from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast

    root = tmp_path_factory.mktemp("mlm") / "tiny-mlm"
    root.mkdir()
    vocab = {token: i for i, token in enumerate(SPECIAL + WORDS)}
    tokenizer = BertTokenizerFast(vocab=vocab, do_lower_case=False)
    assert len(tokenizer) == len(vocab)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
    )
    model = BertForMaskedLM(config)
    with torch.no_grad():
        bias = model.cls.predictions.decoder.bias
        for word, value in PREFERRED.items():
            bias[tokenizer.convert_tokens_to_ids(word)] = value
    model.save_pretrained(root)
    tokenizer.save_pretrained(root)
    return root


@pytest.fixture(scope="module")
def source(mlm_dir):
    return MaskedLmCandidates.load(mlm_dir)


def test_the_favoured_fill_comes_first_and_the_rest_is_filtered(source):
    assert source.name == "tiny-mlm"
    assert source(JAVA, "java", "count", 3) == ["total", "tally", "acc"]
    # In Python "xs" is free, "int" a builtin and "total" the function's name.
    assert source(CODE, "python", "count", 3) == ["xs", "tally", "acc"]


def test_every_occurrence_is_masked_and_scored_once(source, monkeypatch):
    seen = []
    forward = source.model.forward

    def spy(*args, **kwargs):
        seen.append(kwargs["input_ids"])
        return forward(*args, **kwargs)

    monkeypatch.setattr(source.model, "forward", spy)
    assert source(JAVA, "java", "x", 1) == ["total"]  # not cached yet: runs the model
    (ids,) = seen
    mask = source.tokenizer.mask_token_id
    assert ids.shape[0] == 1 and int((ids == mask).sum()) == 2  # `int x` and `count += x`
    # The parameter `xs` stays: only the local `x` is masked, as a whole token.
    assert source.tokenizer.convert_tokens_to_ids("xs") in ids[0].tolist()
    assert source(JAVA, "java", "x", 1) == ["total"] and len(seen) == 1  # cached


def test_long_code_is_cut_into_windows_around_the_masks(mlm_dir):
    source = MaskedLmCandidates.load(mlm_dir)
    long = JAVA.replace("return count;", "count += 0;\n" * 40 + "    return count;")
    assert len(source.tokenizer(long)["input_ids"]) > source.max_length == 64
    assert source(long, "java", "count", 1) == ["total"]


def test_mask_windows():
    assert mask_windows(10, [2, 7], 16) == [(0, 10, [2, 7])]
    assert mask_windows(10, [], 16) == []
    windows = mask_windows(100, [3, 5, 50, 99], 10)
    assert [w[2] for w in windows] == [[3, 5], [50], [99]]
    for start, end, scored in windows:
        assert end - start == 10 and all(start <= m < end for m in scored)


def test_strip_subword_marker():
    assert [strip_subword_marker(t) for t in ("Ġtotal", "##s", "▁count", "x")] == [
        "total",
        "s",
        "count",
        "x",
    ]


def test_a_name_that_is_no_local_gets_no_candidates(source):
    assert source(JAVA, "java", "sum", 5) == []  # the method's name
    assert source(JAVA, "java", "count", 0) == []


def test_alert_with_the_masked_lm_finds_the_flip(source):
    model = Model(count_sensitive)
    result = alert_attack(CODE, "python", model, mlm_candidates=source, budget=50, batch_size=1)
    assert result.success and result.stage == "greedy"
    assert result.renames == {"count": "xs"}
    assert not re.search(r"\bcount\b", result.adversarial_code)


def test_the_candidate_source_is_named(mlm_dir):
    opts = FidelityOptions("t", "s", "assertion", "d", "o")
    assert attack_candidates(opts) == ("synonyms", None)
    opts.attack_mlm = str(mlm_dir)
    label, mlm = attack_candidates(opts)
    assert label == "mlm:tiny-mlm" and isinstance(mlm, MaskedLmCandidates)


def test_a_missing_or_bad_masked_lm_directory_is_a_clear_error(tmp_path, capsys):
    missing = tmp_path / "no-such-mlm"
    opts = FidelityOptions("t", "s", "assertion", "d", "o", attack_mlm=str(missing))
    with pytest.raises(FidelityError, match=r"--attack-mlm.*no-such-mlm"):
        attack_candidates(opts)
    opts.attack_mlm = str(tmp_path)  # a directory, but no model in it
    with pytest.raises(FidelityError, match="--attack-mlm"):
        attack_candidates(opts)
    argv = ["fidelity", "--teacher", "t", "--student", "s", "--task", "assertion"]
    argv += ["--data", "d", "--out", str(tmp_path / "out"), "--attack-mlm", str(missing)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--attack-mlm" in err and str(missing) in err


def test_fidelity_json_names_the_masked_lm(tiny_setup, mlm_dir, tmp_path):
    from codistill.fidelity.runner import run_fidelity

    opts = FidelityOptions(
        str(tiny_setup["teacher"]),
        str(tiny_setup["student"]),
        "assertion",
        str(tiny_setup["valid"]),
        str(tmp_path),
        relations=["rename_placeholder"],
        max_records=2,
        attacks=["alert"],
        attack_records=1,
        attack_budget=4,
        attack_mlm=str(mlm_dir),
        n_resamples=10,
        max_new_tokens=4,
        cache_dir=str(tmp_path / "cache"),
        log=lambda _: None,
    )
    result = run_fidelity(opts)
    assert result["attacks"]["candidates"] == "mlm:tiny-mlm"
    assert result["options"]["attack_mlm"] == str(mlm_dir)
