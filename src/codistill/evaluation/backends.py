"""One small generation interface with two backends: transformers in-process, or an HTTP server.

Evaluation and teacher-side generation call :class:`GenerationBackend.generate` with text
prompts and get one :class:`Completion` per prompt and sample. Two backends implement it:

* :class:`TransformersBackend` runs a local checkpoint in-process through
  :func:`codistill.evaluation.generate.generate` (the default; no extra dependency).
* :class:`OpenAIServerBackend` speaks the OpenAI ``/v1/completions`` API to a server that
  tokenizes and decodes on its side: llama.cpp's ``llama_cpp.server`` on a GGUF file (about 5x
  faster than transformers for Gemma 3 270M on two CPU cores, and it returns top log-probs), or
  vLLM on a GPU machine. :class:`LlamaCppServer` starts and stops a loopback llama.cpp server.

:func:`make_backend` builds either from a one-string spec, for command lines and configs.
"""

from __future__ import annotations

import atexit
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from codistill.models.registry import model_gguf, parse_embedded, resolve_model

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
# llama-cpp-python's server defaults to repeat_penalty=1.1 (a sampling habit of llama.cpp's CLI);
# 1.0 turns it off so "greedy" means argmax, as it does for transformers and vLLM.
LLAMACPP_NEUTRAL_SAMPLING: dict[str, Any] = {"repeat_penalty": 1.0}
# HTTP statuses worth retrying: the server (or a proxy before it) is busy or restarting.
_RETRY_STATUSES = (502, 503, 504)


@dataclass
class Completion:
    """One generated continuation.

    Attributes:
        text: The continuation, without the prompt and without a matched stop string.
        tokens: Number of generated tokens.
        seconds: Wall time spent on this completion: for a server, its request's latency
            (time queued at the server included); in-process, an even share of its batch's time.
            With concurrent requests, ``sum(c.seconds)`` exceeds the elapsed time.
        top_logprobs: Per generated token, the ``k`` most likely tokens and their natural-log
            probabilities, when ``logprobs=k`` was asked; else None.
    """

    text: str
    tokens: int
    seconds: float
    top_logprobs: list[dict[str, float]] | None = None


@runtime_checkable
class GenerationBackend(Protocol):
    """Generates continuations of text prompts."""

    def generate(
        self,
        prompts: list[str],
        *,
        max_new_tokens: int,
        temperature: float = 0.0,
        top_p: float = 1.0,
        n: int = 1,
        stop: list[str] | None = None,
        logprobs: int | None = None,
    ) -> list[Completion]:
        """Continues each prompt ``n`` times.

        Args:
            prompts: Prompt texts; the backend tokenizes them (adding BOS as its tokenizer does).
            max_new_tokens: Most tokens to generate per completion.
            temperature: 0 decodes greedily; above 0 samples at that temperature.
            top_p: Nucleus-sampling mass (used only when sampling).
            n: Completions per prompt; above 1 needs ``temperature > 0``.
            stop: Strings that end a completion; the text is cut before the first one.
            logprobs: Return the top ``logprobs`` tokens' log-probabilities per position.

        Returns:
            ``len(prompts) * n`` completions: prompt 0's ``n`` samples, then prompt 1's, ...
        """
        ...

    def close(self) -> None:
        """Releases what the backend holds (a model, a server process)."""
        ...


def _check_request(temperature: float, top_p: float, n: int, max_new_tokens: int) -> None:
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if n > 1 and temperature == 0:
        raise ValueError(
            f"n={n} samples need temperature > 0: greedy decoding would repeat one completion"
        )


def truncate_at_stop(text: str, stop: list[str] | None) -> str:
    """Cuts ``text`` before the earliest occurrence of any stop string (OpenAI semantics)."""
    cut = len(text)
    for s in stop or ():
        if s and (i := text.find(s)) != -1:
            cut = min(cut, i)
    return text[:cut]


def generate_first_lines(
    backend: GenerationBackend, prompts: list[str], *, max_new_tokens: int
) -> list[Completion]:
    """Greedy completions whose first non-blank line is the model's: one pass that stops at
    the first newline, then, for the few whose text before it was blank, one pass without a
    stop. Greedy decoding makes the result the same as decoding ``max_new_tokens`` and cutting
    afterwards, without paying for the tokens after the line (an assertion is ~20 tokens of a
    64-token budget)."""
    done = backend.generate(prompts, max_new_tokens=max_new_tokens, stop=["\n"])
    blank = [i for i, c in enumerate(done) if not c.text.strip()]
    if blank:
        again = backend.generate([prompts[i] for i in blank], max_new_tokens=max_new_tokens)
        for i, completion in zip(blank, again, strict=True):
            done[i] = completion
    return done


def _split_evenly(total: int, parts: int) -> list[int]:
    base, extra = divmod(total, parts)
    return [base + (i < extra) for i in range(parts)]


class TransformersBackend:
    """In-process generation with a local transformers checkpoint.

    Wraps :func:`codistill.evaluation.generate.generate`. ``stop=["\\n"]`` switches on its
    one-line mode, which stops each row at its first newline *after* some non-blank text and
    returns that first non-blank line stripped (a server cuts at the very first ``"\\n"``, so a
    completion that opens with a blank line differs between backends). Other stop strings are
    applied after generation. ``generate`` measures tokens and time per batch, so each row gets an
    even share of its batch's counts: sums over a batch are exact, single rows are not.

    Log-probabilities are not supported (``generate`` does not return scores); ask a server
    backend for them.
    """

    def __init__(self, model_dir: str | Path, batch_size: int = 8, device: str = "cpu"):
        """Loads the model and tokenizer.

        Args:
            model_dir: A checkpoint directory (``config.json``, weights, tokenizer files).
            batch_size: Prompts per ``model.generate`` call (rows are ``batch_size * n``).
            device: Torch device to run on.
        """
        # lazy: torch, transformers (the llama.cpp and server backends need neither)
        from codistill.models.loading import is_encoder_decoder, load_model, load_tokenizer

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model_dir = Path(model_dir)
        self.batch_size = batch_size
        self.model = load_model(self.model_dir).to(device)
        self.tokenizer = load_tokenizer(self.model_dir)
        self.encoder_decoder = is_encoder_decoder(self.model)

    def generate(
        self,
        prompts: list[str],
        *,
        max_new_tokens: int,
        temperature: float = 0.0,
        top_p: float = 1.0,
        n: int = 1,
        stop: list[str] | None = None,
        logprobs: int | None = None,
    ) -> list[Completion]:
        """See :meth:`GenerationBackend.generate`."""
        from codistill.evaluation.generate import generate  # lazy: torch, transformers

        _check_request(temperature, top_p, n, max_new_tokens)
        if logprobs is not None:
            raise NotImplementedError(
                "TransformersBackend does not return log-probabilities; "
                "use an OpenAIServerBackend (e.g. make_backend('llamacpp:MODEL.gguf'))"
            )
        one_line = "\n" in (stop or ())
        other_stops = [s for s in stop or () if s != "\n"]
        ids = [self.tokenizer(p)["input_ids"] for p in prompts]
        completions: list[Completion] = []
        for i in range(0, len(ids), self.batch_size):
            out = generate(
                self.model,
                self.tokenizer,
                ids[i : i + self.batch_size],
                max_new_tokens=max_new_tokens,
                batch_size=self.batch_size,
                one_line=one_line,
                encoder_decoder=self.encoder_decoder,
                do_sample=temperature > 0,
                temperature=temperature if temperature > 0 else 1.0,
                top_p=top_p,
                num_return_sequences=n,
            )
            rows = len(out.texts)
            for text, tokens in zip(out.texts, _split_evenly(out.new_tokens, rows), strict=True):
                text = truncate_at_stop(text, other_stops)
                completions.append(Completion(text, tokens, out.seconds / rows))
        return completions

    def close(self) -> None:
        """Drops the model so its memory can be freed."""
        self.model = None


class ServerUnreachableError(ConnectionError):
    """The OpenAI-compatible server did not accept a connection (after retries)."""


class OpenAIServerBackend:
    """Generation through an OpenAI-compatible ``/v1/completions`` server (llama.cpp, vLLM).

    Each sample is its own request with ``n=1``: llama-cpp-python's server ignores ``n``, and one
    request per sample lets the thread pool spread samples over the server's slots (vLLM shares
    the prompt's cache across them anyway). Requests run ``concurrency`` at a time; results come
    back in prompt order. Connection failures are retried with backoff, then raise
    :class:`ServerUnreachableError` naming the URL.
    """

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        api_key: str | None = None,
        concurrency: int = 2,
        timeout: float = 600.0,
        retries: int = 3,
        retry_wait: float = 0.5,
        extra_body: dict[str, Any] | None = None,
        on_close: Callable[[], None] | None = None,
    ):
        """Configures the client; nothing is sent until the first request.

        Args:
            base_url: The API root, e.g. ``http://127.0.0.1:8000/v1``.
            model: Model name sent with each request; None asks ``/models`` for the first one.
            api_key: Sent as a bearer token when given.
            concurrency: Requests in flight at once.
            timeout: Seconds to wait for one response.
            retries: Attempts per request when the connection fails (at least 1).
            retry_wait: Seconds before the first retry; doubles after each.
            extra_body: Server-specific fields merged into every request body (e.g.
                :data:`LLAMACPP_NEUTRAL_SAMPLING`).
            on_close: Called by :meth:`close` (e.g. to stop a server this backend owns).
        """
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        if retries < 1:
            raise ValueError(f"retries must be >= 1, got {retries}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = api_key
        self.concurrency = concurrency
        self.timeout = timeout
        self.retries = retries
        self.retry_wait = retry_wait
        self.extra_body = dict(extra_body or {})
        self._on_close = on_close
        self._model_lock = threading.Lock()

    def chat(
        self,
        messages: list[dict[str, str]],
        *,
        max_new_tokens: int,
        temperature: float = 0.0,
        top_p: float = 1.0,
    ) -> tuple[str, dict]:
        """One ``/chat/completions`` answer to ``messages`` and the server's ``usage`` ({} when
        it reports none), through this backend's transport (key, retries, error messages)."""
        _check_request(temperature, top_p, 1, max_new_tokens)
        body = {
            "model": self.model_name(),
            "messages": messages,
            "max_tokens": max_new_tokens,
            "temperature": temperature,
            "top_p": top_p,
            **self.extra_body,
        }
        reply = self._request("POST", "/chat/completions", body)
        message = reply["choices"][0].get("message") or {}
        return message.get("content") or "", reply.get("usage") or {}

    def _request(self, method: str, path: str, body: dict | None = None) -> dict:
        url = f"{self.base_url}{path}"
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        data = None if body is None else json.dumps(body).encode()
        wait = self.retry_wait
        for attempt in range(1, self.retries + 1):
            request = urllib.request.Request(url, data=data, headers=headers, method=method)
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return json.loads(response.read())
            except urllib.error.HTTPError as exc:
                detail = exc.read().decode(errors="replace")[:500]
                if exc.code not in _RETRY_STATUSES or attempt == self.retries:
                    raise RuntimeError(
                        f"{method} {url} returned HTTP {exc.code}: {detail}"
                    ) from exc
            except TimeoutError as exc:
                raise TimeoutError(f"{method} {url} got no response in {self.timeout} s") from exc
            except (urllib.error.URLError, ConnectionError) as exc:
                reason = getattr(exc, "reason", exc)
                if isinstance(reason, TimeoutError):
                    raise TimeoutError(
                        f"{method} {url} got no response in {self.timeout} s"
                    ) from exc
                if attempt == self.retries:
                    raise ServerUnreachableError(
                        f"cannot reach the OpenAI-compatible server at {url} after "
                        f"{self.retries} attempt(s): {reason}. Is the server running there?"
                    ) from exc
            time.sleep(wait)
            wait *= 2
        raise AssertionError("unreachable")  # the loop returns or raises

    def model_name(self) -> str:
        """The model sent with requests: the one given, else the first listed by ``/models``."""
        with self._model_lock:
            if self.model is None:
                listed = self._request("GET", "/models").get("data") or []
                if not listed:
                    raise RuntimeError(f"{self.base_url}/models lists no model")
                self.model = listed[0]["id"]
            return self.model

    def _complete(self, body: dict) -> Completion:
        start = time.perf_counter()
        reply = self._request("POST", "/completions", body)
        seconds = time.perf_counter() - start
        choice = reply["choices"][0]
        lp = choice.get("logprobs") or {}
        top = None
        if body.get("logprobs") is not None:
            top = [dict(d or {}) for d in lp.get("top_logprobs") or []]
        usage = reply.get("usage") or {}
        tokens = usage.get("completion_tokens")
        if tokens is None:
            tokens = len(lp.get("tokens") or [])
        # Servers apply stop strings themselves; cutting again is a no-op for them and guards
        # against one that only stops at token boundaries.
        text = truncate_at_stop(choice.get("text", ""), body.get("stop"))
        return Completion(text, int(tokens), seconds, top)

    def generate(
        self,
        prompts: list[str],
        *,
        max_new_tokens: int,
        temperature: float = 0.0,
        top_p: float = 1.0,
        n: int = 1,
        stop: list[str] | None = None,
        logprobs: int | None = None,
    ) -> list[Completion]:
        """See :meth:`GenerationBackend.generate`."""
        _check_request(temperature, top_p, n, max_new_tokens)
        base: dict[str, Any] = {
            "model": self.model_name(),
            "max_tokens": max_new_tokens,
            "temperature": temperature,
            "top_p": top_p,
            "n": 1,
        }
        if stop:
            base["stop"] = list(stop)
        if logprobs is not None:
            base["logprobs"] = logprobs
        base.update(self.extra_body)
        bodies = [{**base, "prompt": p} for p in prompts for _ in range(n)]
        if self.concurrency == 1 or len(bodies) == 1:
            return [self._complete(b) for b in bodies]
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(self._complete, bodies))

    def close(self) -> None:
        """Runs ``on_close`` once (stopping an owned server); the client itself holds nothing."""
        on_close, self._on_close = self._on_close, None
        if on_close is not None:
            on_close()

    def __enter__(self) -> OpenAIServerBackend:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def llama_cpp_available() -> bool:
    """Whether ``llama-cpp-python`` (with its server extra's modules) can be imported."""
    return all(importlib.util.find_spec(m) is not None for m in ("llama_cpp", "uvicorn", "fastapi"))


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


# Runs in the child before exec'ing the server. On Linux it asks for SIGTERM when the thread that
# started the server dies, so a killed test run or benchmark leaves no orphan server holding the
# CPU (PR_SET_PDEATHSIG survives exec). Doing it here rather than in ``preexec_fn`` keeps Python
# code out of the window between fork and exec, which is unsafe in a threaded parent.
_LAUNCHER = """\
import ctypes, os, signal, sys
if sys.platform.startswith("linux"):
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != int(sys.argv[1]):  # the parent died before prctl took effect
        sys.exit(1)
os.execv(sys.executable, [sys.executable, *sys.argv[2:]])
"""


class LlamaCppServer:
    """A loopback ``llama_cpp.server`` subprocess serving one GGUF model, as a context manager.

    ``with LlamaCppServer(path) as server:`` starts ``python -m llama_cpp.server`` in its own
    process group, waits until ``/v1/models`` answers, and on exit terminates the group (then
    kills it if it lingers). The server's log goes to a temporary file, quoted in errors. On Linux
    the server also gets SIGTERM if the thread that started it dies, so start it from a thread
    that outlives it (the main thread, usually).
    """

    def __init__(
        self,
        gguf_path: str | Path,
        host: str = "127.0.0.1",
        port: int = 0,
        n_ctx: int = 2048,
        n_threads: int = 2,
        startup_timeout: float = 180.0,
        extra_args: tuple[str, ...] = (),
    ):
        """Checks the arguments; :meth:`start` (or ``with``) launches the process.

        Args:
            gguf_path: The GGUF model file.
            host: A loopback address; the server is never exposed beyond this machine.
            port: TCP port; 0 picks a free one.
            n_ctx: Context length in tokens (prompt plus completion).
            n_threads: CPU threads for decoding.
            startup_timeout: Seconds to wait for the model to load and the server to answer.
            extra_args: More ``llama_cpp.server`` flags, e.g. ``("--n_batch", "256")``.
        """
        if host not in LOOPBACK_HOSTS:
            raise ValueError(f"host must be a loopback address {LOOPBACK_HOSTS}, got {host!r}")
        self.gguf_path = Path(gguf_path)
        self.host, self.port = host, port
        self.n_ctx, self.n_threads = n_ctx, n_threads
        self.startup_timeout = startup_timeout
        self.extra_args = tuple(extra_args)
        self.process: subprocess.Popen | None = None
        self._log_path: Path | None = None

    @property
    def base_url(self) -> str:
        """The OpenAI API root, ``http://HOST:PORT/v1``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    def command(self) -> list[str]:
        """The server's command line."""
        return [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(self.gguf_path),
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--n_ctx",
            str(self.n_ctx),
            "--n_threads",
            str(self.n_threads),
            *self.extra_args,
        ]

    def log_tail(self, chars: int = 2000) -> str:
        """The end of the server's log (empty before start)."""
        if self._log_path is None or not self._log_path.exists():
            return ""
        return self._log_path.read_text(errors="replace")[-chars:]

    def start(self) -> LlamaCppServer:
        """Launches the server and waits until it answers.

        Raises:
            ImportError: llama-cpp-python (with its server extra) is not installed.
            FileNotFoundError: The GGUF file does not exist.
            RuntimeError: The server exited or did not answer within ``startup_timeout``.
        """
        if not llama_cpp_available():
            raise ImportError(
                "llama-cpp-python not installed: pip install 'llama-cpp-python[server]'"
            )
        if not self.gguf_path.is_file():
            raise FileNotFoundError(f"GGUF model {self.gguf_path} does not exist")
        if self.process is not None:
            raise RuntimeError(f"server already started at {self.base_url}")
        if self.port == 0:
            self.port = _free_port(self.host)
        fd, log = tempfile.mkstemp(prefix="llama_cpp_server.", suffix=".log")
        self._log_path = Path(log)
        with os.fdopen(fd, "wb") as log_file:
            self.process = subprocess.Popen(
                [sys.executable, "-c", _LAUNCHER, str(os.getpid()), *self.command()[1:]],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        atexit.register(self.stop)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        url = f"{self.base_url}/models"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"llama_cpp.server exited with code {self.process.returncode} before "
                    f"answering at {url}; its log ends:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        raise RuntimeError(
            f"llama_cpp.server did not answer at {url} within {self.startup_timeout} s; "
            f"its log ends:\n{self.log_tail()}"
        )

    def stop(self) -> None:
        """Terminates the server's process group (SIGTERM, then SIGKILL after 10 s)."""
        process, self.process = self.process, None
        atexit.unregister(self.stop)
        if process is not None and process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            except ProcessLookupError:
                pass
        if self._log_path is not None:
            self._log_path.unlink(missing_ok=True)
            self._log_path = None

    def backend(self, **kwargs) -> OpenAIServerBackend:
        """A client for this server, with llama.cpp's repeat penalty off unless overridden.

        Args:
            **kwargs: Passed to :class:`OpenAIServerBackend` (``concurrency``, ``timeout``, ...).
        """
        extra = {**LLAMACPP_NEUTRAL_SAMPLING, **kwargs.pop("extra_body", {})}
        return OpenAIServerBackend(self.base_url, extra_body=extra, **kwargs)

    def __enter__(self) -> LlamaCppServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


BACKEND_KINDS = ("transformers", "openai", "llamacpp", "llamacpp-batch")


def parse_backend_spec(spec: str) -> tuple[str, str]:
    """``KIND:TARGET`` -> (kind, target), refusing a malformed spec or an unknown kind."""
    kind, sep, target = spec.partition(":")
    if not sep or not target:
        raise ValueError(
            "backend spec must be 'transformers:DIR', 'openai:URL', 'llamacpp:GGUF' or "
            f"'llamacpp-batch:GGUF', got {spec!r}"
        )
    if kind not in BACKEND_KINDS:
        raise ValueError(
            f"unknown backend kind {kind!r} in {spec!r}: use 'transformers', 'openai', "
            "'llamacpp' or 'llamacpp-batch'"
        )
    return kind, target


def resolve_backend_target(kind: str, target: str) -> str:
    """``embedded`` / ``embedded:NAME`` as a backend's target: the embedded model's GGUF file
    for ``llamacpp`` (assembled and hash-checked), its converted directory for
    ``transformers``; any other target unchanged."""
    name = parse_embedded(target)
    if name is None or kind == "openai":
        return target
    return str(model_gguf(name)) if kind.startswith("llamacpp") else resolve_model(target)


def make_backend(spec: str, **kwargs) -> GenerationBackend:
    """Builds a backend from ``KIND:TARGET``.

    * ``transformers:DIR`` -- :class:`TransformersBackend` on a checkpoint directory.
    * ``openai:URL`` -- :class:`OpenAIServerBackend` on a running server's API root
      (``openai:http://127.0.0.1:8000/v1``).
    * ``llamacpp:GGUF`` -- starts a :class:`LlamaCppServer` on the file and returns its client;
      the backend's ``close()`` (or interpreter exit) stops the server.
    * ``llamacpp-batch:GGUF`` -- :class:`~codistill.evaluation.llamacpp_batch.LlamaCppBatchBackend`
      in-process: several sequences per decode step (greedy and sampled answers, no log-probs).
    * ``llamacpp:embedded:NAME`` / ``transformers:embedded:NAME`` -- an embedded model (see
      ``codistill models list``).

    Args:
        spec: The spec string.
        **kwargs: Passed to the backend (``batch_size``, ``concurrency``, ...); for ``llamacpp``,
            ``n_ctx``, ``n_threads`` and ``port`` go to the server.

    Returns:
        The backend; call ``close()`` when done.
    """
    kind, target = parse_backend_spec(spec)
    target = resolve_backend_target(kind, target)
    if kind == "transformers":
        return TransformersBackend(target, **kwargs)
    if kind == "openai":
        return OpenAIServerBackend(target, **kwargs)
    if kind == "llamacpp":
        server_keys = ("n_ctx", "n_threads", "port", "startup_timeout", "extra_args")
        server_kwargs = {k: kwargs.pop(k) for k in server_keys if k in kwargs}
        server = LlamaCppServer(target, **server_kwargs).start()
        return server.backend(on_close=server.stop, **kwargs)
    if kind == "llamacpp-batch":
        from codistill.evaluation.llamacpp_batch import LlamaCppBatchBackend  # lazy: llama_cpp

        keys = ("parallel", "n_ctx", "n_threads", "seed")
        return LlamaCppBatchBackend(target, **{k: kwargs[k] for k in keys if k in kwargs})
    raise AssertionError(kind)  # parse_backend_spec admits no other kind
