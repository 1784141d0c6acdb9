"""``codistill teacher generate`` end to end on tiny random models and a fake OpenAI server."""

from __future__ import annotations

import argparse
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from codistill.cli.teacher_generate import add_parser
from codistill.data.jsonl import write_records
from codistill.data.schema import CodegenRecord
from codistill.evaluation.backends import llama_cpp_available
from codistill.models.tiny import make_tiny_causal_lm
from codistill.teacher.generations import generation_key, read_generations
from tests.helpers import make_records
from tests.qwen_fixtures import make_tiny_qwen2


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["generate", *argv])
    return args.func(args)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("generate")
    records = make_records(6, "train")
    write_records(root / "all.jsonl", records)
    write_records(root / "half.jsonl", records[:3])
    return {
        "root": root,
        "gemma": make_tiny_causal_lm(root / "gemma", num_layers=2, seed=3),
        "all": root / "all.jsonl",
        "half": root / "half.jsonl",
    }


def test_assertions_are_evals_greedy_lines_and_a_rerun_computes_none(tiny, tmp_path, capsys):
    from codistill.data.prompts import encode_prompts
    from codistill.evaluation.generate import generate
    from codistill.models.loading import load_model, load_tokenizer

    out = tmp_path / "g"
    common = ["--teacher", str(tiny["gemma"]), "--data", str(tiny["all"]), "--out", str(out)]
    assert cli(*common, "--max-new-tokens", "6", "--batch-size", "4") == 0
    assert "6 computed now, 0 reused" in capsys.readouterr().out
    header, entries = read_generations(out)
    records = make_records(6, "train")
    tok = load_tokenizer(tiny["gemma"])
    expected = generate(
        load_model(tiny["gemma"]), tok, encode_prompts(tok, records, 256), max_new_tokens=6
    ).texts
    got = [entries[generation_key(r)]["outputs"] for r in records]
    assert got == [[e] for e in expected]
    assert header["teacher"]["name"] == "gemma" and header["prompt"]["style"] == "prefix"
    assert all(entries[generation_key(r)]["verdicts"] is None for r in records)

    before = (out / "generations.jsonl").read_bytes()
    assert cli(*common, "--max-new-tokens", "6") == 0
    assert "0 computed now, 6 reused" in capsys.readouterr().out
    assert (out / "generations.jsonl").read_bytes() == before


def test_middle_truncation_gives_the_teacher_middle_cut_prompts(tiny, tmp_path, capsys):
    from codistill.data.prompts import encode_prompts
    from codistill.evaluation.generate import generate
    from codistill.models.loading import load_model, load_tokenizer

    out = tmp_path / "g"
    args = ["--teacher", str(tiny["gemma"]), "--data", str(tiny["all"]), "--out", str(out)]
    args += ["--max-new-tokens", "6", "--max-source-tokens", "10", "--truncation", "middle"]
    assert cli(*args) == 0
    assert "6 prompts cut to 10 tokens" in capsys.readouterr().out
    header, entries = read_generations(out)
    assert header["prompt"]["truncation"] == "middle"
    records = make_records(6, "train")
    tok = load_tokenizer(tiny["gemma"])
    prompts = encode_prompts(tok, records, 10, truncation="middle")
    assert prompts != encode_prompts(tok, records, 10)
    expected = generate(load_model(tiny["gemma"]), tok, prompts, max_new_tokens=6).texts
    assert [entries[generation_key(r)]["outputs"] for r in records] == [[e] for e in expected]
    assert cli(*args[:-1], "left") == 2
    assert "prompt.truncation: file has 'middle', requested 'left'" in capsys.readouterr().err


def test_a_partial_file_is_completed_with_only_the_missing_records(tiny, tmp_path, capsys):
    out = str(tmp_path / "g")
    base = ["--teacher", str(tiny["gemma"]), "--out", out, "--max-new-tokens", "4"]
    assert cli(*base, "--data", str(tiny["half"])) == 0
    capsys.readouterr()
    assert cli(*base, "--data", str(tiny["all"])) == 0
    assert "3 computed now, 3 reused" in capsys.readouterr().out
    assert len(read_generations(out)[1]) == 6


def test_other_decoding_settings_are_refused_naming_the_field(tiny, tmp_path, capsys):
    out = str(tmp_path / "g")
    base = ["--teacher", str(tiny["gemma"]), "--data", str(tiny["half"]), "--out", out]
    assert cli(*base, "--max-new-tokens", "4") == 0
    assert cli(*base, "--max-new-tokens", "4", "--n", "2", "--temperature", "0.7") == 2
    err = capsys.readouterr().err
    assert "decoding.n: file has 1, requested 2" in err
    assert "decoding.temperature: file has 0.0, requested 0.7" in err
    assert "Traceback" not in err


def test_user_errors_exit_2_with_one_line(tiny, tmp_path, capsys):
    base = ["--data", str(tiny["half"]), "--out", str(tmp_path / "g")]
    assert cli("--teacher", str(tmp_path / "nowhere"), *base) == 2
    assert "not a model directory" in capsys.readouterr().err
    assert cli("--teacher", str(tiny["gemma"]), *base, "--n", "2") == 2
    assert "--n 2 needs --temperature > 0" in capsys.readouterr().err
    for kind in ("llamacpp", "llamacpp-batch"):  # refused before anything is written
        assert cli("--teacher", str(tiny["gemma"]), *base, "--backend", f"{kind}:/no/a.gguf") == 2
        assert "not a file" in capsys.readouterr().err
    assert not (tmp_path / "g").exists()


# --- code generation through an OpenAI-compatible server (a fake one) ---------------------------

ADD = CodegenRecord(
    id="T/add",
    source="test",
    prompt='def add(a, b):\n    """Sum of a and b."""\n',
    entry_point="add",
    tests="assert add(1, 2) == 3\nassert add(-1, 1) == 0\n",
)
NEG = CodegenRecord(
    id="T/neg",
    source="test",
    prompt='def neg(x):\n    """Minus x."""\n',
    entry_point="neg",
    tests="assert neg(2) == -2\n",
)


class FakeServer:
    """``/v1/models`` and ``/v1/completions``; answers ``replies[marker]`` for the first marker
    found in the prompt, and keeps every request body and header."""

    def __init__(self, replies: dict[str, str]):
        self.replies, self.bodies, self.headers = replies, [], []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def _send(self, obj):
                data = json.dumps(obj).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                fake.headers.append(dict(self.headers))
                self._send({"data": [{"id": "fake-coder"}]})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.bodies.append(body)
                fake.headers.append(dict(self.headers))
                text = next(v for k, v in fake.replies.items() if k in body["prompt"])
                self._send({"choices": [{"text": text}], "usage": {"completion_tokens": 5}})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def qwen(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("qwen")
    write_records(root / "cg.jsonl", [ADD, NEG])
    return {"dir": make_tiny_qwen2(root / "qwen", num_layers=2), "data": root / "cg.jsonl"}


@pytest.mark.parametrize("mode", ["raw", "chat"])
def test_codegen_outputs_are_run_against_their_tests(qwen, tmp_path, capsys, monkeypatch, mode):
    monkeypatch.setenv("FAKE_KEY", "sk-secret-123")
    if mode == "raw":  # Qwen's one extra leading space, then text past the function
        replies = {"def add": "     return a + b\n\n\ndef junk():\n", "def neg": "    return x\n"}
    else:
        replies = {
            "def add": "```python\ndef add(a, b):\n    return a + b\n```",
            "def neg": "```python\ndef neg(x):\n    return x\n```",
        }
    out = tmp_path / "g"
    with FakeServer(replies) as fake:
        rc = cli(
            *("--teacher", str(qwen["dir"]), "--data", str(qwen["data"]), "--out", str(out)),
            *("--task", "codegen", "--prompt-mode", mode, "--backend", f"openai:{fake.url}"),
            *("--api-key-env", "FAKE_KEY", "--max-new-tokens", "32"),
        )
    assert rc == 0
    assert "verdicts over 2 outputs: failed 1, passed 1" in capsys.readouterr().out
    header, entries = read_generations(out)
    assert header["teacher"]["url"] == fake.url and header["teacher"]["model"] == "fake-coder"
    assert header["backend"] == "openai" and header["prompt"]["mode"] == mode
    assert entries[generation_key(ADD)]["verdicts"] == ["passed"]
    assert entries[generation_key(NEG)]["verdicts"] == ["failed"]
    assert all(h["Authorization"] == "Bearer sk-secret-123" for h in fake.headers)
    assert "sk-secret" not in (out / "generations.jsonl").read_text()
    sent = {b["prompt"] for b in fake.bodies}
    if mode == "raw":
        assert sent == {ADD.prompt, NEG.prompt}
        assert entries[generation_key(ADD)]["outputs"] == ["    return a + b\n\n"]
        assert all("\ndef " in b["stop"] for b in fake.bodies)
    else:
        assert all(p.startswith("<|im_start|>user\nComplete the following") for p in sent)
        assert all("stop" not in b for b in fake.bodies)


def test_in_process_chat_sampling_keeps_n_outputs_and_verdicts_per_record(qwen, tmp_path):
    out = tmp_path / "g"
    rc = cli(
        *("--teacher", str(qwen["dir"]), "--data", str(qwen["data"]), "--out", str(out)),
        *("--task", "codegen", "--prompt-mode", "chat", "--n", "3", "--temperature", "0.9"),
        *("--max-new-tokens", "8"),
    )
    assert rc == 0
    header, entries = read_generations(out)
    assert header["decoding"]["n"] == 3 and header["backend"] == "transformers"
    for record in (ADD, NEG):
        entry = entries[generation_key(record)]
        assert entry["id"] == record.id
        assert len(entry["outputs"]) == len(entry["verdicts"]) == 3


# --- a real llama.cpp server on a tiny GGUF ---------------------------------------------------


@pytest.mark.skipif(not llama_cpp_available(), reason="llama-cpp-python not installed")
@pytest.mark.parametrize("kind", ["llamacpp", "llamacpp-batch"])
def test_llamacpp_backends_write_the_same_greedy_outputs_as_in_process(tmp_path, kind):
    from tests.gguf_fixtures import make_tiny_llama_with_bytelevel_tokenizer, write_llama_gguf

    hf = make_tiny_llama_with_bytelevel_tokenizer(tmp_path / "hf")
    gguf = write_llama_gguf(hf, tmp_path / "tiny.gguf")
    write_records(tmp_path / "a.jsonl", make_records(4, "train"))
    base = ["--teacher", str(hf), "--data", str(tmp_path / "a.jsonl"), "--max-new-tokens", "6"]
    assert cli(*base, "--out", str(tmp_path / "local")) == 0
    assert cli(*base, "--out", str(tmp_path / "served"), "--backend", f"{kind}:{gguf}") == 0
    local_header, local = read_generations(tmp_path / "local")
    served_header, served = read_generations(tmp_path / "served")
    assert {k: e["outputs"] for k, e in served.items()} == {
        k: e["outputs"] for k, e in local.items()
    }
    assert (
        served_header["teacher"]["weights_sha256"] == hashlib.sha256(gguf.read_bytes()).hexdigest()
    )
    assert served_header["backend"] == kind


def test_pooled_functions_and_whole_programs_each_get_their_own_stops(qwen, tmp_path, capsys):
    double = CodegenRecord(
        id="Mbpp/1",
        source="mbpp",
        prompt='"""\nWrite a function to double a number.\n"""\n',
        entry_point="double",
        tests="assert double(2) == 4\n",
    )
    data = tmp_path / "pooled.jsonl"
    write_records(data, [ADD, double])
    program = "def _two():\n    return 2\n\ndef double(x):\n    return _two() * x\n"
    replies = {"def add": "    return a + b\n", "double a number": program + "\nassert 1\n"}
    out = tmp_path / "g"
    with FakeServer(replies) as fake:
        rc = cli(
            *("--teacher", str(qwen["dir"]), "--data", str(data), "--out", str(out)),
            *("--task", "codegen", "--backend", f"openai:{fake.url}", "--max-new-tokens", "32"),
        )
    assert rc == 0
    stops = {b["prompt"]: b["stop"] for b in fake.bodies}
    assert "\ndef " in stops[ADD.prompt] and "\ndef " not in stops[double.prompt]
    _, entries = read_generations(out)
    assert entries[generation_key(double)]["outputs"] == [program]  # helper kept, assert cut
    assert entries[generation_key(double)]["verdicts"] == ["passed"]
