"""SODA's teacher calls: cache by content, resumable, counted per stage, API key never written."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from codistill.evaluation.backends import Completion
from codistill.soda.prompts import Prompt
from codistill.soda.teacher import (
    Decoding,
    TeacherCalls,
    TeacherError,
    open_teacher,
    parse_teacher_spec,
)


class ScriptedBackend:
    """A generation backend that answers from a function of the prompt text; counts calls."""

    def __init__(self, script=lambda text: f"answer to {text[-12:]}"):
        self.script = script
        self.prompts: list[str] = []
        self.closed = False

    def generate(self, prompts, *, max_new_tokens, temperature=0.0, top_p=1.0, n=1, **_):
        self.prompts += prompts
        return [Completion(self.script(p), 7, 0.0) for p in prompts for _ in range(n)]

    def close(self):
        self.closed = True


PROMPTS = [Prompt("sys", f"question {i}") for i in range(3)]


def _calls(tmp_path, backend, decoding=None, **kwargs):
    return TeacherCalls(
        {"name": "scripted"}, tmp_path / "cache.jsonl", decoding, backend=backend, **kwargs
    )


def test_second_run_on_the_same_cache_makes_zero_calls(tmp_path):
    first = ScriptedBackend()
    answers = _calls(tmp_path, first).ask(PROMPTS, stage="s")
    assert len(first.prompts) == 3 and answers[0] == first.script(PROMPTS[0].text())
    again = ScriptedBackend(lambda text: "something else")
    teacher = _calls(tmp_path, again)
    assert teacher.ask(PROMPTS, stage="s") == answers
    assert again.prompts == []
    counts = teacher.counts()["stages"]["s"]
    assert counts["calls"] == 0 and counts["cache_hits"] == 3
    assert counts["cached_completion_tokens"] == 21


def test_counts_calls_hits_and_tokens_per_stage(tmp_path):
    backend = ScriptedBackend()
    teacher = _calls(tmp_path, backend)
    teacher.ask(PROMPTS[:2] + PROMPTS[:1], stage="a")  # a repeated prompt is asked once
    teacher.ask(PROMPTS, stage="b")
    stages = teacher.counts()["stages"]
    assert (stages["a"]["calls"], stages["a"]["cache_hits"]) == (2, 1)
    assert (stages["b"]["calls"], stages["b"]["cache_hits"]) == (1, 2)
    # No tokenizer: prompt tokens are characters of the text sent; completion tokens the
    # backend's own count.
    assert stages["b"]["prompt_tokens"] == len(PROMPTS[2].text())
    assert stages["a"]["completion_tokens"] == 14
    assert teacher.token_units == {"prompt": "characters", "completion": "backend"}
    counted = _calls(tmp_path / "t", ScriptedBackend(), count_tokens=lambda t: 5)
    counted.ask(PROMPTS[:1], stage="c")
    assert counted.counts()["stages"]["c"]["prompt_tokens"] == 5
    assert counted.token_units["prompt"] == "tokenizer"


def test_another_teacher_or_decoding_is_not_served_from_the_cache(tmp_path):
    _calls(tmp_path, ScriptedBackend()).ask(PROMPTS, stage="s")
    hotter = ScriptedBackend()
    _calls(tmp_path, hotter, Decoding(temperature=0.7, seed=1)).ask(PROMPTS, stage="s")
    assert len(hotter.prompts) == 3
    other = ScriptedBackend()
    TeacherCalls({"name": "other"}, tmp_path / "cache.jsonl", backend=other).ask(PROMPTS, stage="s")
    assert len(other.prompts) == 3


def test_torn_last_line_is_ignored_and_cut_before_the_next_append(tmp_path):
    _calls(tmp_path, ScriptedBackend()).ask(PROMPTS[:2], stage="s")
    cache = tmp_path / "cache.jsonl"
    with open(cache, "a") as fh:
        fh.write('{"key": "abc", "answ')  # a crash mid-write
    backend = ScriptedBackend()
    _calls(tmp_path, backend).ask(PROMPTS, stage="s")
    assert len(backend.prompts) == 1
    lines = cache.read_text().splitlines()
    assert len(lines) == 3 and all(json.loads(line)["key"] != "abc" for line in lines)


def test_malformed_complete_line_names_file_and_line(tmp_path):
    cache = tmp_path / "cache.jsonl"
    cache.write_text('{"key": "a", "answer": "x"}\nnot json\n{"key": "b"}\n')
    with pytest.raises(TeacherError, match=r"cache\.jsonl:2: not valid JSON"):
        _calls(tmp_path, ScriptedBackend())


def test_interrupted_call_keeps_the_chunks_it_finished(tmp_path):
    class Failing(ScriptedBackend):
        def generate(self, prompts, **kw):
            if any("question 2" in p for p in prompts):
                raise RuntimeError("server died")
            return super().generate(prompts, **kw)

    with pytest.raises(RuntimeError):
        _calls(tmp_path, Failing(), chunk=1).ask(PROMPTS, stage="s")
    resumed = ScriptedBackend()
    _calls(tmp_path, resumed).ask(PROMPTS, stage="s")
    assert resumed.prompts == [PROMPTS[2].text()]


def test_backend_is_built_only_when_something_is_missing(tmp_path):
    _calls(tmp_path, ScriptedBackend()).ask(PROMPTS, stage="s")
    built = []
    teacher = _calls(tmp_path, lambda: built.append(1) or ScriptedBackend())
    teacher.ask(PROMPTS, stage="s")
    assert built == []
    teacher.ask([Prompt("sys", "new")], stage="s")
    assert built == [1]


def test_bad_specs_and_settings_are_one_line_errors(tmp_path, monkeypatch):
    with pytest.raises(TeacherError, match="not a model directory"):
        parse_teacher_spec(str(tmp_path / "missing"))
    with pytest.raises(TeacherError, match="expected DIR, embedded.*openai:URL"):
        parse_teacher_spec("vllm:http://x")
    with pytest.raises(TeacherError, match="backend spec must be"):
        parse_teacher_spec("openai:")
    assert parse_teacher_spec("openai:http://h/v1") == ("openai", "http://h/v1")
    assert parse_teacher_spec(str(tmp_path)) == ("transformers", str(tmp_path))
    with pytest.raises(TeacherError, match="top_p"):
        Decoding(top_p=0).check()
    monkeypatch.delenv("SODA_TEST_KEY", raising=False)
    with pytest.raises(TeacherError, match="SODA_TEST_KEY: that environment variable is unset"):
        open_teacher("openai:http://127.0.0.1:9/v1", tmp_path / "c", api_key_env="SODA_TEST_KEY")
    with pytest.raises(TeacherError, match="is for an openai:URL teacher"):
        open_teacher(str(tmp_path), tmp_path / "c", api_key_env="SODA_TEST_KEY")


class _ChatServer(BaseHTTPRequestHandler):
    """A loopback OpenAI-compatible server: ``/models`` and ``/chat/completions``."""

    seen: list = []

    def _reply(self, obj):
        body = json.dumps(obj).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802 - http.server's naming
        self._reply({"data": [{"id": "big-teacher"}]})

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.seen.append((self.path, self.headers.get("Authorization"), body))
        content = body["messages"][-1]["content"]
        self._reply(
            {
                "choices": [{"message": {"role": "assistant", "content": f"re: {content}"}}],
                "usage": {"prompt_tokens": 11, "completion_tokens": 3},
            }
        )

    def log_message(self, *args):
        pass


@pytest.fixture
def chat_server():
    _ChatServer.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ChatServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_openai_teacher_sends_messages_and_never_writes_the_api_key(
    tmp_path, monkeypatch, chat_server, capsys
):
    secret = "sk-soda-test-7f3a9c1e"
    monkeypatch.setenv("SODA_TEST_KEY", secret)
    cache = tmp_path / "out" / "cache.jsonl"
    teacher = open_teacher(f"openai:{chat_server}", cache, api_key_env="SODA_TEST_KEY")
    answers = teacher.ask(PROMPTS[:2], stage="s")
    assert answers == ["re: question 0", "re: question 1"]
    paths = {p for p, _, _ in _ChatServer.seen}
    assert paths == {"/v1/chat/completions"}
    assert {auth for _, auth, _ in _ChatServer.seen} == {f"Bearer {secret}"}
    body = _ChatServer.seen[0][2]
    assert body["model"] == "big-teacher" and body["messages"][0] == {
        "role": "system",
        "content": "sys",
    }
    counts = teacher.counts()
    assert counts["identity"]["model"] == "big-teacher" and counts["identity"]["url"]
    assert counts["stages"]["s"]["prompt_tokens"] == 22  # the server's usage
    assert counts["token_units"]["prompt"] == "backend"
    (tmp_path / "out" / "report.json").write_text(json.dumps(counts))
    teacher.close()
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert secret not in path.read_text(), path
    out = capsys.readouterr()
    assert secret not in out.out + out.err
    # The key is not part of the cache key: the same teacher with another key is served.
    monkeypatch.setenv("SODA_TEST_KEY", "sk-another")
    again = open_teacher(f"openai:{chat_server}", cache, api_key_env="SODA_TEST_KEY")
    _ChatServer.seen = []
    again.ask(PROMPTS[:2], stage="s")
    assert [p for p, _, _ in _ChatServer.seen] == []


def test_in_process_teacher_renders_its_chat_template_once_with_one_bos(tmp_path):
    from codistill.models.tiny import make_tiny_causal_lm

    model = make_tiny_causal_lm(tmp_path / "m", num_layers=1, hidden=16)
    (model / "chat_template.jinja").write_text(
        "{{ bos_token }}{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}<bot>"
    )
    cache = tmp_path / "cache.jsonl"
    teacher = open_teacher(str(model), cache, Decoding(max_new_tokens=3))
    assert (
        teacher.identity["prompt_mode"] == "chat" and len(teacher.identity["weights_sha256"]) == 64
    )
    sent = teacher.render(PROMPTS[0])
    assert sent == "<system>sys<user>question 0<bot>"  # the backend's tokenizer adds the BOS
    answers = teacher.ask(PROMPTS[:2], stage="s")
    stage = teacher.counts()["stages"]["s"]
    assert len(answers) == 2 and stage["calls"] == 2 and stage["completion_tokens"] > 0
    assert teacher.token_units["prompt"] == "tokenizer"
    teacher.close()
    rerun = open_teacher(str(model), cache, Decoding(max_new_tokens=3))
    assert rerun.ask(PROMPTS[:2], stage="s") == answers
    assert rerun.counts()["stages"]["s"]["calls"] == 0 and rerun._backend is None
