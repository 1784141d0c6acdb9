"""Teacher and student as fidelity sees them: batched, and cached by input hash.

Every model call goes through :class:`OutputCache`: an append-only JSONL file per model (keyed by
a hash of the model's weights and of the call's settings) mapping a hash of the input to the
output. Each input's teacher output is therefore computed once across relations, attacks and
later runs; a crash mid-run loses at most the line being written (a torn last line is ignored on
load).

Two kinds of model:

* :class:`Generator` (assertion generation, code generation): greedy text continuations of
  prompts, through codistill's own ``generate`` (one line for assertions, a function body for
  code generation), or through a generation backend of :mod:`codistill.evaluation.backends`
  (a llama.cpp server on a GGUF file, any OpenAI-compatible server).
* :class:`Classifier` (clone and defect detection): class probabilities, through
  :class:`codistill.models.classifier.ClassifierModel`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from codistill.data.prompts import cut_prompt, cut_text
from codistill.evaluation import backends
from codistill.evaluation.backends import llama_cpp_available, parse_backend_spec
from codistill.evaluation.codegen import STOP_SEQUENCES, truncate_completion
from codistill.files import gguf_problem
from codistill.files import sha256_file as file_sha256
from codistill.teacher.cache_format import content_key

DEFAULT_CACHE_DIR = Path(os.environ.get("CODISTILL_CACHE", Path.home() / ".cache" / "codistill"))


def model_identity(path: str | Path) -> str:
    """A hash of a model directory's weights: the teacher cache's, so both agree on identity."""
    from codistill.teacher.cache import teacher_weights_hash  # lazy: transformers

    return teacher_weights_hash(path)


class OutputCache:
    """Input hash -> output, persisted as ``<dir>/<model hash>-<settings hash>.jsonl``."""

    def __init__(
        self, directory: str | Path | None, model_hash: str, settings: dict, chunk: int = 64
    ):
        self.path = None
        self.chunk = chunk
        self._data: dict[str, Any] = {}
        self.hits = self.misses = 0
        if directory is None:
            return
        tag = content_key(json.dumps(settings, sort_keys=True))[:16]
        self.path = Path(directory) / f"{model_hash[:24]}-{tag}.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                    self._data[row["key"]] = row["value"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue  # a torn last line from an interrupted run

    @staticmethod
    def key(item: Any) -> str:
        return content_key(json.dumps(item, sort_keys=True))

    def get_many(
        self, items: Sequence[Any], compute: Callable[[list[Any]], list[Any]]
    ) -> list[Any]:
        """Outputs for ``items``, computing (in one batch) only the ones not cached."""
        keys = [self.key(i) for i in items]
        todo: dict[str, Any] = {}
        for k, item in zip(keys, items, strict=True):
            if k not in self._data and k not in todo:
                todo[k] = item
        self.hits += len(items) - len(todo)
        self.misses += len(todo)
        pending = list(todo.items())
        # In chunks, each appended as soon as it is computed: an interrupted run keeps its work.
        for start in range(0, len(pending), self.chunk):
            part = pending[start : start + self.chunk]
            values = compute([item for _, item in part])
            lines = []
            for (k, _), v in zip(part, values, strict=True):
                self._data[k] = v
                lines.append(json.dumps({"key": k, "value": v}) + "\n")
            if self.path is not None:
                with open(self.path, "a", encoding="utf-8") as f:
                    f.write("".join(lines))
        return [self._data[k] for k in keys]


def backend_identity(spec: str) -> str:
    """What a backend's outputs are cached under: the weights' hash for a local checkpoint or
    GGUF file; for a remote server only its URL (the served model is taken to stay the same)."""
    kind, _, target = spec.partition(":")
    if kind == "transformers":
        return model_identity(target)
    if kind == "llamacpp":
        return file_sha256(target)
    return content_key(spec)


class Generator:
    """Greedy generation from a causal or seq2seq model directory, cached by prompt text.

    Args:
        path: model directory; with ``backend``, only its tokenizer is used (to cut prompts to
            ``max_source_tokens``), and it may be None (prompts are then cut to 4 characters a
            token).
        backend: a generation backend spec (``llamacpp:FILE.gguf``, ``openai:URL``,
            ``transformers:DIR``; see :func:`codistill.evaluation.backends.make_backend`) to
            generate with instead of loading ``path`` in-process. The backend (for llama.cpp, a
            server) starts on the first prompt not found in the cache.
        mode: "line" (first non-blank line: assertions) or "code" (a function body, cut at the
            next top-level statement: code generation).
        max_source_tokens: prompts are cut to this many tokens (BOS kept).
        truncation: how: ``left`` or ``middle`` (:func:`codistill.data.prompts.cut_prompt`).
        max_new_tokens, batch_size: generation settings.
        cache_dir: where outputs persist (None: in memory only).
    """

    def __init__(
        self,
        path: str | Path | None,
        *,
        backend: str | None = None,
        mode: str = "line",
        max_source_tokens: int = 256,
        truncation: str = "left",
        max_new_tokens: int = 48,
        batch_size: int = 8,
        cache_dir: str | Path | None = None,
    ):
        from codistill.models.loading import load_model, load_tokenizer  # lazy: transformers

        if mode not in ("line", "code"):
            raise ValueError(f"mode must be 'line' or 'code', got {mode!r}")
        self.path, self.mode, self.backend_spec = str(path), mode, backend
        self.model = self.tokenizer = self._backend = None
        if backend is None:
            self.model = load_model(path).eval()
            self.tokenizer = load_tokenizer(path)
            identity = model_identity(path)
        else:
            check_backend_spec(backend)
            if path is not None and Path(path).is_dir():
                try:
                    self.tokenizer = load_tokenizer(path)
                except (OSError, ValueError):
                    pass  # e.g. the folder that only holds the GGUF: cut by characters
            identity = backend_identity(backend)
        self.max_source_tokens, self.max_new_tokens = max_source_tokens, max_new_tokens
        self.truncation, self.batch_size = truncation, batch_size
        settings = {"kind": "generate", "mode": mode, "src": max_source_tokens}
        if truncation != "left":  # left-cut outputs cached before the option keep their keys
            settings["truncation"] = truncation
        settings["new"] = max_new_tokens
        if backend is not None:
            # A server's own tokenizer and kernels: its outputs are not the in-process ones;
            # and how prompts were cut before they reached it changes them too.
            settings["backend"] = backend.partition(":")[0]
            settings["cut"] = "chars4" if self.tokenizer is None else self._tokenizer_id(path)
        self.cache = OutputCache(cache_dir, identity, settings)

    @staticmethod
    def _tokenizer_id(path) -> str:
        from codistill.teacher.cache import tokenizer_hash  # lazy: transformers

        try:
            return tokenizer_hash(path)
        except FileNotFoundError:  # no tokenizer.json: the folder names it
            return str(Path(path).resolve())

    def _encode(self, prompt: str) -> list[int]:
        ids = self.tokenizer(prompt)["input_ids"]
        return cut_prompt(ids, self.max_source_tokens, self.truncation, self.tokenizer.bos_token_id)

    def _compute(self, prompts: list[str]) -> list[str]:
        from codistill.evaluation.generate import first_line, generate  # lazy: transformers

        if self.backend_spec is not None:
            if self._backend is None:
                kwargs = {}
                if self.backend_spec.startswith("llamacpp:"):
                    # Room for the prompt as the server tokenizes it (a character cut can come
                    # out longer) and the completion; the server's default is 2048.
                    kwargs["n_ctx"] = 2 * self.max_source_tokens + self.max_new_tokens + 64
                try:
                    self._backend = backends.make_backend(self.backend_spec, **kwargs)
                except (ImportError, OSError, RuntimeError) as exc:
                    raise BackendError(f"backend {self.backend_spec!r}: {exc}") from exc
            # Assertions are cut to their first non-blank line afterwards, not by a "\n" stop:
            # a server stops at the very first newline, even one before any text.
            stop = list(STOP_SEQUENCES) if self.mode == "code" else None
            try:
                done = self._backend.generate(
                    [self._cut(p) for p in prompts], max_new_tokens=self.max_new_tokens, stop=stop
                )
            except (OSError, RuntimeError, TimeoutError) as exc:  # ConnectionError is an OSError
                raise BackendError(f"backend {self.backend_spec!r}: {exc}") from exc
            texts = [c.text for c in done]
            if self.mode == "line":
                return [first_line(t) for t in texts]
        else:
            with torch.inference_mode():
                out = generate(
                    self.model,
                    self.tokenizer,
                    [self._encode(p) for p in prompts],
                    max_new_tokens=self.max_new_tokens,
                    batch_size=self.batch_size,
                    one_line=self.mode == "line",
                    encoder_decoder=bool(self.model.config.is_encoder_decoder),
                )
            texts = list(out.texts)
        return [truncate_completion(t) for t in texts] if self.mode == "code" else texts

    def _cut(self, prompt: str) -> str:
        """The prompt a backend gets: cut to ``max_source_tokens`` by the model's tokenizer
        when there is one (the server tokenizes the text again and adds its own BOS)."""
        if self.tokenizer is None:
            return cut_text(prompt, 4 * self.max_source_tokens, self.truncation)
        ids = self._encode(prompt)
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def __call__(self, prompts: Sequence[str]) -> list[str]:
        return self.cache.get_many(list(prompts), self._compute)

    def close(self) -> None:
        """Stops the backend (a llama.cpp server) if one was started."""
        if self._backend is not None:
            self._backend.close()
            self._backend = None


class BackendError(RuntimeError):
    """A generation backend could not start or answer (named, with the cause)."""


def check_backend_spec(spec: str) -> None:
    """Fails early on what can be checked before a server starts: the spec's form, that a GGUF
    is a GGUF file and llama-cpp-python is installed, that a checkpoint is a directory."""
    kind, target = parse_backend_spec(spec)
    path = Path(target)
    if kind == "transformers" and not path.is_dir():
        raise FileNotFoundError(f"backend {spec!r}: {target} is not a model directory")
    if kind.startswith("llamacpp"):  # the server's and the in-process batch backend's
        if not path.is_file():
            raise FileNotFoundError(f"backend {spec!r}: {target} is not a file")
        if gguf_problem(path):
            raise ValueError(f"backend {spec!r}: {target} is not a GGUF file")
        if not llama_cpp_available():
            raise ValueError(
                f"backend {spec!r} needs llama-cpp-python: pip install 'llama-cpp-python[server]'"
            )


class Classifier:
    """Class probabilities from a classifier directory, cached by input."""

    def __init__(
        self, path: str | Path, *, batch_size: int = 8, cache_dir: str | Path | None = None
    ):
        from codistill.models.classifier import ClassifierModel  # lazy: transformers

        self.path = str(path)
        self.model = ClassifierModel.load(path, batch_size=batch_size)
        settings = {"kind": "classify", "max_length": self.model.max_length}
        self.cache = OutputCache(cache_dir, model_identity(path), settings)

    def _compute(self, inputs: list) -> list[list[float]]:
        with torch.inference_mode():
            probs = self.model.predict_proba(
                [tuple(i) if isinstance(i, list) else i for i in inputs]
            )
        return np.asarray(probs, dtype=float).tolist()

    def __call__(self, inputs: Sequence) -> np.ndarray:
        rows = [list(i) if isinstance(i, tuple) else i for i in inputs]
        return np.asarray(self.cache.get_many(rows, self._compute), dtype=float)

    def close(self) -> None:
        """Nothing to stop: the classifier runs in-process."""
