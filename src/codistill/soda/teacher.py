"""SODA's teacher calls: any of codistill's generation backends, every answer cached on disk.

SODA teaches through the teacher's text (correct and faulty solutions, judgements, new
questions), so one interface serves every stage: :meth:`TeacherCalls.ask` takes rendered
:class:`codistill.soda.prompts.Prompt` objects and returns one answer text per prompt. The
teacher is named by one spec, as elsewhere in codistill:

* ``embedded`` / ``embedded:NAME`` or a local HF directory: in-process transformers
  (:class:`codistill.evaluation.backends.TransformersBackend`);
* ``llamacpp:FILE.gguf`` (or ``llamacpp:embedded:NAME``): a loopback llama.cpp server
  (:class:`codistill.evaluation.backends.LlamaCppServer`);
* ``openai:URL``: an OpenAI-compatible server (vLLM, a hosted API); the API key comes from an
  environment variable whose *name* is given, and is never written to a file, a log or a key.

How a prompt reaches the model (``prompt_mode``), following :mod:`codistill.data.prompts`:

* ``chat`` with a tokenizer that has a chat template (the in-process model's, or ``tokenizer=``
  for a server): the system and user messages through that template, sent as text;
* ``chat`` on a server without a tokenizer: the messages go to the server's
  ``/chat/completions`` (the server applies its model's template; hosted APIs are chat-only);
* ``raw``: :meth:`Prompt.text`, for base models without a chat template;
* ``auto`` (default): ``chat`` when a template is known or the backend is a server, else ``raw``.

The cache is one append-only JSONL file, one answer per line, keyed by the sha256 of (the
teacher's identity, the exact text or messages sent, the decoding settings), never by position.
The identity is the weights' sha256 (HF directory: its safetensors; llama.cpp: the GGUF file)
or the server's URL and model name, as :func:`codistill.teacher.generations.teacher_identity`
computes it, so another teacher's answers are never served and renaming a model directory does
not invalidate anything. Answers are appended in chunks, each flushed and fsynced; a torn last
line (a crash mid-write) is ignored and cut off before the next append, so an interrupted run
resumes and a finished one reruns with zero teacher calls.

Counts per stage: calls made, cache hits, prompt and completion tokens. Completion tokens come
from the backend's :class:`codistill.evaluation.backends.Completion` (an even share of a batch
in-process, the server's ``usage`` otherwise); prompt tokens from the server's ``usage`` on the
chat endpoint, else the teacher's tokenizer, else characters. :attr:`TeacherCalls.token_units`
says which.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from codistill.evaluation.backends import (
    Completion,
    GenerationBackend,
    OpenAIServerBackend,
    make_backend,
    parse_backend_spec,
    resolve_backend_target,
)
from codistill.models.registry import parse_embedded, resolve_model
from codistill.soda.prompts import Prompt

PROMPT_MODES = ("auto", "raw", "chat")
# How a rendered prompt is sent: text to continue, or messages to a chat endpoint.
SEND_TEXT, SEND_MESSAGES = "text", "messages"


class TeacherError(ValueError):
    """A teacher spec, setting or cache file that cannot be used; one-line message."""


@dataclass(frozen=True)
class Decoding:
    """How the teacher decodes; part of every cache key.

    Attributes:
        temperature: 0 decodes greedily (the default: one deterministic answer per prompt).
        top_p: nucleus mass when sampling.
        max_new_tokens: most tokens per answer.
        seed: sampling seed (in-process: ``torch.manual_seed`` once; servers: the request's
            ``seed`` field, which vLLM, llama.cpp and OpenAI's API accept).
    """

    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 512
    seed: int = 0

    def check(self) -> Decoding:
        """Returns self; raises :class:`TeacherError` naming the first field out of range."""
        if self.temperature < 0:
            raise TeacherError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise TeacherError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise TeacherError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        return self


@dataclass
class StageCounts:
    """What one stage asked of the teacher.

    ``calls`` are answers generated now; ``cache_hits`` answers served from the cache (or a
    duplicate prompt of the same call). Token counts are of the calls made now; the
    ``cached_*`` ones are those recorded with the cached answers when they were made.
    """

    calls: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0
    cached_completion_tokens: int = 0
    seconds: float = 0.0


class AnswerStore:
    """An append-only JSONL file of ``{"key": ..., ...}`` objects, read into a dict by key.

    Reading ignores a torn last line (no trailing newline); the first :meth:`append` cuts it off
    before writing. A malformed complete line is a :class:`TeacherError` naming ``FILE:LINE``:
    a line in the middle cannot be torn by an interrupted append, so it is not silently
    skipped. A later line with the same key wins.
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self.entries: dict[str, dict[str, Any]] = {}
        self._end = 0
        if self.path.is_file():
            data = self.path.read_bytes()
            self._end = data.rfind(b"\n") + 1
            for lineno, raw in enumerate(data[: self._end].split(b"\n")[:-1], 1):
                if not raw.strip():
                    continue
                try:
                    obj = json.loads(raw)
                except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                    msg = getattr(exc, "msg", getattr(exc, "reason", str(exc)))
                    raise TeacherError(f"{self.path}:{lineno}: not valid JSON ({msg})") from None
                if not isinstance(obj, dict) or not isinstance(obj.get("key"), str):
                    raise TeacherError(f"{self.path}:{lineno}: expected an object with a 'key'")
                self.entries[obj["key"]] = obj

    def __contains__(self, key: str) -> bool:
        return key in self.entries

    def __getitem__(self, key: str) -> dict[str, Any]:
        return self.entries[key]

    def append(self, entries: Sequence[dict[str, Any]]) -> None:
        """Appends entries (each with a ``key``), flushed and fsynced, after cutting a torn
        tail."""
        if not entries:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.is_file() and self.path.stat().st_size > self._end:
            with open(self.path, "r+b") as fh:
                fh.truncate(self._end)
        text = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in entries)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        self._end += len(text.encode("utf-8"))
        self.entries.update((e["key"], e) for e in entries)


def content_key(*parts: Any) -> str:
    """sha256 hex of the JSON of ``parts`` (keys sorted): a cache key by content."""
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()


class TeacherCalls:
    """Asks a teacher through a generation backend, through a disk cache, counting per stage.

    Build one with :func:`open_teacher` from a spec; tests build it directly with a scripted
    backend (any object with :class:`codistill.evaluation.backends.GenerationBackend`'s
    ``generate``). The backend is created on the first answer not in the cache, so a rerun
    with everything cached loads no model and starts no server.
    """

    def __init__(
        self,
        identity: dict[str, Any],
        cache: str | os.PathLike[str],
        decoding: Decoding | None = None,
        *,
        backend: GenerationBackend | Callable[[], GenerationBackend],
        send: str = SEND_TEXT,
        render: Callable[[Prompt], str] | None = None,
        count_tokens: Callable[[str], int] | None = None,
        chunk: int = 16,
    ):
        """Sets up the calls; nothing is generated yet.

        Args:
            identity: what identifies the teacher (weights hash, or URL and model name, and how
                prompts are rendered); JSON-ready; never holds a secret.
            cache: the JSONL answer file (created on the first answer).
            decoding: decoding settings (default greedy, 512 new tokens).
            backend: the backend, or a function that builds it on first use.
            send: ``text`` (``generate`` on the rendered text) or ``messages`` (an
                :class:`OpenAIServerBackend`'s ``/chat/completions``).
            render: ``Prompt`` -> the text sent in ``text`` mode (default :meth:`Prompt.text`).
            count_tokens: text -> prompt tokens (the teacher's tokenizer); None counts
                characters (``messages`` mode takes the server's count).
            chunk: answers generated (and appended to the cache) at a time.
        """
        if send not in (SEND_TEXT, SEND_MESSAGES):
            raise TeacherError(f"send must be {SEND_TEXT!r} or {SEND_MESSAGES!r}, got {send!r}")
        if chunk < 1:
            raise TeacherError(f"chunk must be >= 1, got {chunk}")
        self.identity = dict(identity)
        self.decoding = (decoding or Decoding()).check()
        self.store = AnswerStore(cache)
        self.send = send
        self.render = render or Prompt.text
        self.count_tokens = count_tokens
        self.chunk = chunk
        self.stages: dict[str, StageCounts] = {}
        # An object with ``generate`` is the backend; anything else builds it on first use.
        ready = hasattr(backend, "generate")
        self._backend: GenerationBackend | None = backend if ready else None
        self._factory = None if ready else backend
        prompt_unit = "characters" if count_tokens is None else "tokenizer"
        self.token_units = {
            "prompt": "backend" if send == SEND_MESSAGES else prompt_unit,
            "completion": "backend",
        }

    @property
    def teacher_key(self) -> str:
        """sha256 over the identity and decoding: what every answer's key starts from."""
        return content_key(self.identity, asdict(self.decoding), self.send)

    def key(self, prompt: Prompt) -> str:
        """The cache key of ``prompt``'s answer: teacher, decoding and what is sent."""
        return content_key(self.teacher_key, self._payload(prompt))

    def _payload(self, prompt: Prompt) -> str | list[dict[str, str]]:
        return prompt.messages() if self.send == SEND_MESSAGES else self.render(prompt)

    def ask(self, prompts: Sequence[Prompt], *, stage: str) -> list[str]:
        """One answer text per prompt, in order, from the cache or the teacher.

        A prompt repeated within the call is asked once. Answers are appended to the cache
        every ``chunk`` prompts, so an interrupted call keeps what it got.

        Args:
            prompts: rendered prompts.
            stage: the name the counts go under (``stage1.correct``, ``judge``...).
        """
        counts = self.stages.setdefault(stage, StageCounts())
        payloads = [self._payload(p) for p in prompts]
        keys = [content_key(self.teacher_key, p) for p in payloads]
        first: dict[str, int] = {}
        for i, k in enumerate(keys):
            first.setdefault(k, i)
        missing = [i for k, i in first.items() if k not in self.store]
        counts.cache_hits += len(prompts) - len(missing)
        for k in set(keys) - {keys[i] for i in missing}:
            counts.cached_prompt_tokens += int(self.store[k].get("prompt_tokens") or 0)
            counts.cached_completion_tokens += int(self.store[k].get("completion_tokens") or 0)
        for start in range(0, len(missing), self.chunk):
            part = missing[start : start + self.chunk]
            t0 = time.perf_counter()
            done = self._generate([payloads[i] for i in part])
            counts.seconds += time.perf_counter() - t0
            entries = []
            for i, (text, prompt_tokens, completion_tokens) in zip(part, done, strict=True):
                counts.calls += 1
                counts.prompt_tokens += prompt_tokens
                counts.completion_tokens += completion_tokens
                entries.append(
                    {
                        "key": keys[i],
                        "stage": stage,
                        "answer": text,
                        "prompt_tokens": prompt_tokens,
                        "completion_tokens": completion_tokens,
                    }
                )
            self.store.append(entries)
        return [self.store[k]["answer"] for k in keys]

    def asker(self, stage: str) -> Callable[[list[Prompt]], list[str]]:
        """``ask`` bound to ``stage``, for callers that take a plain function (the judge)."""
        return lambda prompts: self.ask(prompts, stage=stage)

    def _backend_now(self) -> GenerationBackend:
        if self._backend is None:
            self._backend = self._factory()
        return self._backend

    def _generate(self, payloads: list) -> list[tuple[str, int, int]]:
        """``(text, prompt tokens, completion tokens)`` per payload."""
        backend = self._backend_now()
        d = self.decoding
        if self.send == SEND_MESSAGES:
            return _chat_many(backend, payloads, d)
        done: list[Completion] = backend.generate(
            payloads, max_new_tokens=d.max_new_tokens, temperature=d.temperature, top_p=d.top_p
        )
        if len(done) != len(payloads):
            raise TeacherError(f"backend returned {len(done)} answers for {len(payloads)} prompts")
        count = self.count_tokens or len
        return [(c.text, count(p), int(c.tokens)) for p, c in zip(payloads, done, strict=True)]

    def counts(self) -> dict[str, Any]:
        """Identity, token units and per-stage counts, for a report (no secret in it)."""
        return {
            "identity": self.identity,
            "decoding": asdict(self.decoding),
            "send": self.send,
            "token_units": self.token_units,
            "stages": {name: asdict(c) for name, c in sorted(self.stages.items())},
        }

    def close(self) -> None:
        """Releases the backend (stops an owned llama.cpp server); idempotent."""
        backend, self._backend = self._backend, None
        if backend is not None:
            backend.close()

    def __enter__(self) -> TeacherCalls:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _chat_many(backend, messages: list, d: Decoding) -> list[tuple[str, int, int]]:
    """Messages through an OpenAI-compatible server's ``/chat/completions``, ``concurrency``
    at a time. Uses the backend's own transport (auth header, retries, error messages), so the
    API key stays inside it."""
    if not isinstance(backend, OpenAIServerBackend):
        raise TeacherError("chat messages need an OpenAI-compatible server backend")

    def one(msgs: list[dict[str, str]]) -> tuple[str, int, int]:
        text, usage = backend.chat(
            msgs, max_new_tokens=d.max_new_tokens, temperature=d.temperature, top_p=d.top_p
        )
        prompt_tokens = usage.get("prompt_tokens")
        if prompt_tokens is None:  # a server without usage: characters, as the docs say
            prompt_tokens = sum(len(m["content"]) for m in msgs)
        return text, int(prompt_tokens), int(usage.get("completion_tokens") or 0)

    if backend.concurrency == 1 or len(messages) == 1:
        return [one(m) for m in messages]
    with ThreadPoolExecutor(max_workers=backend.concurrency) as pool:
        return list(pool.map(one, messages))


# --- building a teacher from a spec -------------------------------------------------------------


def parse_teacher_spec(spec: str) -> tuple[str, str]:
    """``(kind, target)`` of a teacher spec: ``transformers`` with an HF directory or
    ``embedded[:NAME]``, ``llamacpp`` with a GGUF file or ``embedded:NAME``, or ``openai``
    with a URL.

    Raises:
        TeacherError: a malformed spec, or a path that is not a directory.
    """
    if spec.partition(":")[0] in ("transformers", "llamacpp", "openai"):
        try:
            return parse_backend_spec(spec)
        except ValueError as exc:
            raise TeacherError(f"teacher {spec!r}: {exc}") from None
    if parse_embedded(spec) is not None:
        return "transformers", spec
    if Path(spec).is_dir():
        return "transformers", spec
    raise TeacherError(
        f"teacher {spec!r}: not a model directory; expected DIR, embedded[:NAME], "
        "llamacpp:FILE.gguf or openai:URL"
    )


def api_key_from_env(var: str | None, kind: str) -> str | None:
    """The API key held by environment variable ``var`` (None when no variable is named).

    Raises:
        TeacherError: a variable named for a non-server teacher, or one that is unset; the
            message names the variable, never its value.
    """
    if var is None:
        return None
    if kind != "openai":
        raise TeacherError(f"api_key_env {var}: an API key is for an openai:URL teacher")
    key = os.environ.get(var)
    if not key:
        raise TeacherError(f"api_key_env {var}: that environment variable is unset or empty")
    return key


def _tokenizer_bits(tokenizer) -> tuple[Callable[[Prompt], str], Callable[[str], int]]:
    """Chat rendering through the tokenizer's template, and its token counter."""
    adds_bos = False
    bos = getattr(tokenizer, "bos_token", None)
    if bos:
        ids = tokenizer("x")["input_ids"]
        adds_bos = bool(ids) and ids[0] == tokenizer.bos_token_id

    def render(prompt: Prompt) -> str:
        try:
            text = tokenizer.apply_chat_template(
                prompt.messages(), tokenize=False, add_generation_prompt=True
            )
        except Exception:  # noqa: BLE001 - templates without a system role raise their own errors
            text = tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt.text()}],
                tokenize=False,
                add_generation_prompt=True,
            )
        # The backend's tokenizer (or the server) adds BOS itself: keep one, not two.
        return text[len(bos) :] if adds_bos and text.startswith(bos) else text

    def count(text: str) -> int:
        return len(tokenizer(text)["input_ids"])

    return render, count


def open_teacher(
    spec: str,
    cache: str | os.PathLike[str],
    decoding: Decoding | None = None,
    *,
    prompt_mode: str = "auto",
    tokenizer: str | None = None,
    server_model: str | None = None,
    api_key_env: str | None = None,
    concurrency: int = 2,
    n_threads: int = 2,
    batch_size: int = 4,
    n_ctx: int = 4096,
    chunk: int = 16,
) -> TeacherCalls:
    """:class:`TeacherCalls` for a teacher spec (see the module doc), through codistill's
    backends.

    Args:
        spec: ``DIR``, ``embedded[:NAME]``, ``llamacpp:FILE.gguf``, ``llamacpp:embedded:NAME``
            or ``openai:URL``.
        cache: the answer cache (JSONL).
        decoding: decoding settings.
        prompt_mode: ``auto``, ``raw`` or ``chat``.
        tokenizer: servers only: an HF directory or ``embedded:NAME`` whose chat template
            renders the prompts and whose tokenizer counts prompt tokens.
        server_model: openai: the model to request (None: the server's first listed model,
            which costs one ``/models`` request per run).
        api_key_env: openai: the environment variable holding the API key.
        concurrency: server requests in flight.
        n_threads: llama.cpp decoding threads.
        batch_size: in-process prompts per ``generate`` call.
        n_ctx: llama.cpp context length (prompt and answer).
        chunk: answers appended to the cache at a time.

    Raises:
        TeacherError: a bad spec, mode, variable or model directory.
    """
    # lazy: generations imports sandbox, config; teacher_identity may import torch
    from codistill.teacher.generations import (
        GenerateSettings,
        TeacherBackendError,
        teacher_identity,
    )

    if prompt_mode not in PROMPT_MODES:
        raise TeacherError(f"prompt_mode must be one of {', '.join(PROMPT_MODES)}")
    decoding = (decoding or Decoding()).check()
    kind, target = parse_teacher_spec(spec)
    api_key = api_key_from_env(api_key_env, kind)
    if kind == "transformers" and tokenizer is not None:
        raise TeacherError("tokenizer= is for server teachers; an HF teacher uses its own")
    try:
        target = resolve_model(target) if kind == "transformers" else target
        target = resolve_backend_target(kind, target)
    except (FileNotFoundError, ValueError) as exc:
        raise TeacherError(f"teacher {spec!r}: {exc}") from None
    if kind == "llamacpp" and not Path(target).is_file():
        raise TeacherError(f"teacher {spec!r}: GGUF file {target} does not exist")
    backend_spec = "transformers" if kind == "transformers" else f"{kind}:{target}"
    settings = GenerateSettings(task="codegen", backend=backend_spec, server_model=server_model)
    try:
        who = teacher_identity(spec, target, settings, api_key=api_key)
    except (TeacherBackendError, FileNotFoundError) as exc:
        raise TeacherError(f"teacher {spec!r}: {exc}") from None
    tok = _load_tokenizer(target if kind == "transformers" else tokenizer)
    templated = tok is not None and bool(getattr(tok, "chat_template", None))
    if prompt_mode == "chat" and kind == "transformers" and not templated:
        raise TeacherError(f"prompt_mode=chat: {target} has no chat template; use raw")
    chat = prompt_mode == "chat" or (
        prompt_mode == "auto" and (templated or kind != "transformers")
    )
    send = SEND_MESSAGES if chat and not templated else SEND_TEXT
    render, count = _tokenizer_bits(tok) if tok is not None else (None, None)
    identity = {
        "kind": kind,
        "weights_sha256": who.get("weights_sha256"),
        "url": who.get("url"),
        "model": who.get("model"),
        "prompt_mode": "chat" if chat else "raw",
        # The template's text changes what is sent, which the key already covers; the
        # tokenizer only counts tokens, so it is named for the report, not hashed.
        "tokenizer": tokenizer,
    }

    def factory() -> GenerationBackend:
        kwargs: dict[str, Any] = {}
        sampled = decoding.temperature > 0
        if kind == "transformers":
            if sampled:
                import torch  # lazy: the in-process teacher only

                torch.manual_seed(decoding.seed)
            return make_backend(f"transformers:{target}", batch_size=batch_size)
        kwargs["concurrency"] = concurrency
        if sampled:
            kwargs["extra_body"] = {"seed": decoding.seed}
        if kind == "llamacpp":
            kwargs.update(n_ctx=n_ctx, n_threads=n_threads)
        else:
            kwargs.update(model=who.get("model"), api_key=api_key)
        try:
            return make_backend(f"{kind}:{target}", **kwargs)
        except (ImportError, OSError, RuntimeError) as exc:
            raise TeacherError(f"teacher {spec!r}: {exc}") from exc

    return TeacherCalls(
        identity,
        cache,
        decoding,
        backend=factory,
        send=send,
        render=render if chat and templated else None,
        count_tokens=count,
        chunk=chunk,
    )


def _load_tokenizer(where: str | None):
    if where is None:
        return None
    from codistill.models.loading import load_tokenizer  # lazy: transformers

    try:
        return load_tokenizer(resolve_model(where))
    except (OSError, ValueError) as exc:
        raise TeacherError(f"tokenizer {where!r}: {exc}") from None
