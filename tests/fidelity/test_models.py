"""Generators through a generation backend: what the backend is sent and what is cached."""

from __future__ import annotations

import pytest

from codistill.evaluation import backends
from codistill.evaluation.backends import Completion
from codistill.evaluation.codegen import STOP_SEQUENCES
from codistill.fidelity.models import Generator
from codistill.fidelity.runner import FidelityError, run_fidelity
from tests.fidelity.test_runner import _opts


class RecordingBackend:
    """Answers every prompt with a fixed text and records the requests."""

    def __init__(self, reply: str):
        self.reply, self.requests, self.closed = reply, [], False

    def generate(self, prompts, *, max_new_tokens, stop=None, **_):
        self.requests.append((list(prompts), max_new_tokens, stop))
        return [Completion(self.reply, 3, 0.0) for _ in prompts]

    def close(self):
        self.closed = True


@pytest.fixture
def recording(monkeypatch):
    made = []

    def fake_make_backend(spec, **kwargs):
        made.append(RecordingBackend(made_reply[0]))
        return made[-1]

    made_reply = ["\n  assertEquals(1, x);\nmore"]
    monkeypatch.setattr(backends, "make_backend", fake_make_backend)
    return made, made_reply


def test_line_mode_keeps_the_first_non_blank_line_and_sends_no_newline_stop(
    recording, tiny_setup, tmp_path
):
    made, _ = recording
    gen = Generator(
        tiny_setup["student"],
        backend="openai:http://127.0.0.1:9/v1",
        max_source_tokens=8,
        max_new_tokens=5,
        cache_dir=tmp_path,
    )
    long_prompt = " ".join(f"token{i}" for i in range(40))
    assert gen([long_prompt, "x = 1"]) == ["assertEquals(1, x);"] * 2
    ((prompts, budget, stop),) = made[0].requests
    assert budget == 5 and stop is None
    assert len(gen.tokenizer(prompts[0])["input_ids"]) <= 9  # cut by the student's tokenizer
    assert prompts[0].endswith("token39") and prompts[1] == "x = 1"
    # Cached under the backend: a second generator asks nothing and starts no backend.
    settings = dict(max_source_tokens=8, max_new_tokens=5, cache_dir=tmp_path)
    again = Generator(tiny_setup["student"], backend="openai:http://127.0.0.1:9/v1", **settings)
    assert again(["x = 1"]) == ["assertEquals(1, x);"] and len(made) == 1
    # Prompts cut by characters instead of that tokenizer are other prompts: not reused.
    by_chars = Generator(None, backend="openai:http://127.0.0.1:9/v1", **settings)
    assert by_chars(["x = 1"]) == ["assertEquals(1, x);"] and len(made) == 2
    gen.close()
    assert made[0].closed


def test_middle_truncation_keeps_both_ends_and_caches_apart_from_left(
    recording, tiny_setup, tmp_path
):
    made, _ = recording
    settings = dict(max_source_tokens=40, max_new_tokens=5, cache_dir=tmp_path)
    spec = "openai:http://127.0.0.1:9/v1"
    long_prompt = " ".join(f"token{i}" for i in range(40))
    middle = Generator(tiny_setup["student"], backend=spec, truncation="middle", **settings)
    middle([long_prompt])
    sent = made[0].requests[0][0][0]
    assert sent.startswith("token0 ") and sent.endswith("token39") and "token20" not in sent
    Generator(tiny_setup["student"], backend=spec, **settings)([long_prompt])
    assert len(made) == 2  # the left cut is another prompt: asked again
    by_chars = Generator(None, backend=spec, truncation="middle", max_source_tokens=4)
    by_chars(["a" * 10 + "b" * 20 + "c" * 10])
    assert made[2].requests[0][0] == ["a" * 8 + "c" * 8]


def test_code_mode_sends_the_codegen_stops_and_truncates(recording, tmp_path):
    made, reply = recording
    reply[0] = "    return a + b\n\nprint(add(1, 2))"
    gen = Generator(None, backend="openai:http://127.0.0.1:9/v1", mode="code", cache_dir=tmp_path)
    assert gen(["def add(a, b):\n"]) == ["    return a + b\n"]
    assert made[0].requests[0][2] == list(STOP_SEQUENCES)


def test_bad_backend_specs_are_refused_before_any_model_runs(tiny_setup, tmp_path):
    for spec, message in (
        ("gguf", "backend spec must be"),
        ("vllm:http://x", "unknown backend kind"),
        (f"llamacpp:{tmp_path / 'none.gguf'}", "none.gguf is not a file"),
        (f"llamacpp:{tmp_path}", "is not a file"),
        (f"transformers:{tmp_path / 'none'}", "is not a model directory"),
    ):
        with pytest.raises(FidelityError, match=message):
            run_fidelity(_opts(tiny_setup, tmp_path / "out", attacks=[], student_backend=spec))
    with pytest.raises(FidelityError, match="classifier directories"):
        run_fidelity(
            _opts(tiny_setup, tmp_path / "out", task="clone", student_backend="openai:http://x")
        )


def test_student_through_the_transformers_backend_agrees_with_itself_in_process(
    tiny_setup, tmp_path, monkeypatch
):
    calls = []
    real = backends.TransformersBackend.generate

    def counted(self, prompts, **kwargs):
        calls.append(len(prompts))
        return real(self, prompts, **kwargs)

    monkeypatch.setattr(backends.TransformersBackend, "generate", counted)
    opts = dict(attacks=[], relations=["rename_placeholder"])
    direct = run_fidelity(_opts(tiny_setup, tmp_path / "a", **opts))
    assert not calls
    served = run_fidelity(
        _opts(
            tiny_setup,
            tmp_path / "b",
            **opts,
            student_backend=f"transformers:{tiny_setup['student']}",
        )
    )
    a, b = direct["relations"]["all"]["metrics"], served["relations"]["all"]["metrics"]
    assert served["options"]["student_backend"].startswith("transformers:")
    assert sum(calls) == served["n_inputs"] + served["n_variants"]  # every student output
    assert "(through `transformers:" in (tmp_path / "b" / "fidelity.md").read_text()
    assert a["agreement"]["value"] == b["agreement"]["value"]
    assert a["student_consistency"]["value"] == b["student_consistency"]["value"]


def test_cqs_agreement_per_relation_with_intervals(tiny_setup, tmp_path):
    res = run_fidelity(
        _opts(tiny_setup, tmp_path / "out", attacks=[], relations=["rename_placeholder"], cqs=True)
    )
    metrics = res["relations"]["all"]["metrics"]
    diff, within = metrics["cqs_mean_abs_diff"], metrics["cqs_within_tolerance"]
    assert 0 <= diff["ci_low"] <= diff["value"] <= diff["ci_high"] <= 1
    assert 0 <= within["value"] <= 1
    assert "cqs_mean_abs_diff" in (tmp_path / "out" / "fidelity.md").read_text()
    with pytest.raises(FidelityError, match="--cqs scores outputs against a reference"):
        run_fidelity(_opts(tiny_setup, tmp_path / "x", task="codegen", cqs=True))


def test_an_unreachable_server_is_a_named_error_and_nothing_is_left_running(
    tiny_setup, tmp_path, capsys
):
    from codistill.cli.main import main

    argv = ["fidelity", "--teacher", str(tiny_setup["teacher"]), "--student"]
    argv += [str(tiny_setup["student"]), "--task", "assertion", "--data", str(tiny_setup["valid"])]
    argv += ["--out", str(tmp_path / "out"), "--attacks", "none", "--relations", "formatting"]
    argv += ["--cache-dir", str(tmp_path / "cache"), "--max-new-tokens", "4"]
    argv += ["--student-backend", "openai:http://127.0.0.1:9/v1"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "backend 'openai:http://127.0.0.1:9/v1'" in err and "Traceback" not in err
    assert not (tmp_path / "out" / "fidelity.json").exists()
