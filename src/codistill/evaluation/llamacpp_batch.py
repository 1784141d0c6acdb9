"""Batched generation with llama.cpp in-process (``llamacpp-batch:GGUF``).

``llamacpp:GGUF`` starts llama-cpp-python's OpenAI server, which decodes one request at a time:
each generated token reads every weight once for one sequence. On a CPU that is bound by memory
traffic for a small model, so this backend keeps up to ``parallel`` sequences in flight and
advances all of them with one ``llama_decode`` per step (continuous batching, as llama.cpp's own
``llama-server --parallel`` does; llama-cpp-python's server has no such mode, hence this file).
A finished sequence's slot is refilled with the next prompt at once, so short answers do not
wait for long ones. Each slot has its own KV stream (``kv_unified=False``): attention never
scans the other sequences' cells.

Prompts are tokenized as llama-cpp-python's server tokenizes a completion request (the model's
BOS if it asks for one, then the text with special tokens parsed), greedy decoding takes the
arg-max of the logits (no repeat penalty), sampling uses temperature and top-p from a generator
seeded by the backend's seed, the prompt's text and the sample's number, and text is cut at the
first stop string. Rows of one batched decode agree with a single-sequence decode to rounding,
so a greedy answer can differ where two tokens tie.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from codistill.evaluation.backends import Completion, _check_request, truncate_at_stop
from codistill.files import gguf_problem


def check_gguf_file(path: str | Path) -> Path:
    """The path, after checking it exists and starts with the GGUF magic.

    Raises:
        ValueError: missing file or not a GGUF file (one line naming it).
    """
    path = Path(path)
    if problem := gguf_problem(path):
        raise ValueError(f"{path}: {problem}")
    return path


def import_llama_cpp():
    try:
        import llama_cpp  # lazy: optional (the server extra), needed only by this backend
    except ImportError as exc:
        raise ValueError(
            "--backend llamacpp needs llama-cpp-python: pip install -e '.[server]'"
        ) from exc
    return llama_cpp


def cpu_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


class LlamaCppContext:
    """A GGUF model with a llama.cpp context of its own, for ``n_seq`` sequences of ``n_ctx``
    tokens decoded in one batch, and that batch; :meth:`close` frees them.

    The ``Llama`` object loads the model (and tokenizes); its own context is left tiny. The
    context made here takes a whole batch of every sequence at once, with llama.cpp's
    micro-batch at most 512 tokens (its default) so memory stays bounded.

    Args:
        gguf: the model file.
        n_ctx: tokens per sequence.
        n_seq: sequences.
        n_threads: CPU threads (default: every core this process may use).
        kv_unified: one KV cache for all sequences (cells may then belong to several); else
            one stream per sequence.
        seq_ids_per_token: sequence ids a batch token may carry.
        flash_attention: None leaves llama.cpp's choice; False turns it off.
    """

    def __init__(
        self,
        gguf: str | Path,
        *,
        n_ctx: int,
        n_seq: int,
        n_threads: int | None,
        kv_unified: bool,
        seq_ids_per_token: int = 1,
        flash_attention: bool | None = None,
    ):
        lib = import_llama_cpp()
        self.path = check_gguf_file(gguf)
        self._lib = lib
        self._llm = lib.Llama(model_path=str(self.path), n_ctx=64, n_batch=64, verbose=False)
        params = lib.llama_context_default_params()
        params.n_ctx = params.n_batch = n_ctx * n_seq
        params.n_ubatch = min(params.n_ctx, 512)
        params.n_seq_max = n_seq
        params.n_threads = params.n_threads_batch = n_threads or cpu_threads()
        params.kv_unified = kv_unified
        if flash_attention is False:
            params.flash_attn_type = lib.LLAMA_FLASH_ATTN_TYPE_DISABLED
        params.no_perf = True
        self._ctx = lib.llama_init_from_model(self._llm.model, params)
        if not self._ctx:
            self._llm.close()
            raise RuntimeError(f"{self.path}: llama.cpp could not make a context of {params.n_ctx}")
        self._batch = lib.llama_batch_init(params.n_ctx, 0, seq_ids_per_token)

    def close(self) -> None:
        if self._batch is not None:
            self._lib.llama_batch_free(self._batch)
            self._batch = None
        if self._ctx:
            self._lib.llama_free(self._ctx)
            self._ctx = None
        self._llm.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class _Slot:
    """One sequence in flight: which prompt and sample, its tokens so far, where it stands."""

    job: int
    prompt: list[int]
    rng: np.random.Generator
    out: list[int] = field(default_factory=list)
    text: bytearray = field(default_factory=bytearray)
    pos: int = 0  # tokens of this sequence already in the KV cache
    started: float = 0.0


class LlamaCppBatchBackend(LlamaCppContext):
    """A GGUF model generating ``parallel`` sequences per decode step, in this process.

    Args:
        gguf: the model file.
        parallel: sequences in flight at once.
        n_ctx: tokens per sequence (prompt and answer).
        n_threads: CPU threads (default: every core this process may use).
        seed: seed of sampled answers (greedy ones use none).
    """

    def __init__(
        self,
        gguf: str | Path,
        parallel: int = 8,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        seed: int = 0,
    ):
        if parallel < 1 or n_ctx < 8:
            raise ValueError(f"parallel must be >= 1 and n_ctx >= 8, got {parallel}, {n_ctx}")
        self.parallel, self.n_ctx, self.seed = int(parallel), int(n_ctx), int(seed)
        # One KV stream per slot: attention never looks at another slot's cells. Flash
        # attention off: with it, greedy answers differed from llama.cpp's server's.
        super().__init__(
            gguf,
            n_ctx=self.n_ctx,
            n_seq=self.parallel,
            n_threads=n_threads,
            kv_unified=False,
            flash_attention=False,
        )
        lib = self._lib
        self._vocab = lib.llama_model_get_vocab(self._llm.model)
        self.n_vocab = int(lib.llama_vocab_n_tokens(self._vocab))
        model = self._llm._model
        bos = self._llm.token_bos()
        self._bos = [bos] if model.add_bos_token() and bos != -1 else []

    def tokenize(self, text: str) -> list[int]:
        """As llama-cpp-python's server tokenizes a text prompt."""
        return self._bos + self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)

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
        """See :meth:`codistill.evaluation.backends.GenerationBackend.generate`.

        Raises:
            ValueError: ``logprobs`` asked (use ``llamacpp:GGUF``), or a prompt longer than
                ``n_ctx - max_new_tokens`` tokens.
        """
        _check_request(temperature, top_p, n, max_new_tokens)
        if logprobs is not None:
            raise ValueError("llamacpp-batch returns no log-probs; use llamacpp:GGUF for them")
        tokens = [self.tokenize(p) for p in prompts]
        room = self.n_ctx - max_new_tokens
        for i, t in enumerate(tokens):
            if len(t) > room:
                raise ValueError(
                    f"prompt {i} has {len(t)} tokens; with max_new_tokens={max_new_tokens} the "
                    f"context of {self.n_ctx} per sequence holds {room}"
                )
        jobs = [(i, s) for i in range(len(prompts)) for s in range(n)]
        # A prompt's samples are seeded by its text, not its place in this call: a caller that
        # sends its prompts in chunks (teacher generate) gets the same draws as one call, and
        # the prompts at one place in every chunk do not share a random stream.
        keys = [int.from_bytes(hashlib.sha256(p.encode("utf-8")).digest()[:8]) for p in prompts]
        done: list[Completion | None] = [None] * len(jobs)
        stops = [s.encode("utf-8") for s in stop or [] if s]
        longest = max((len(s) for s in stops), default=0)
        lib, mem = self._lib, self._lib.llama_get_memory(self._ctx)
        free = list(range(self.parallel - 1, -1, -1))
        slots: dict[int, _Slot] = {}
        queue = list(range(len(jobs)))[::-1]
        while queue or slots:
            while queue and free:
                j = queue.pop()
                seq = free.pop()
                lib.llama_memory_seq_rm(mem, seq, -1, -1)
                prompt, sample = jobs[j]
                rng = np.random.default_rng([self.seed, keys[prompt], sample])
                slots[seq] = _Slot(j, tokens[jobs[j][0]], rng, started=time.perf_counter())
            rows = self._decode(slots)
            for seq, row in rows.items():
                slot = slots[seq]
                token = self._choose(row, temperature, top_p, slot.rng)
                finished = bool(lib.llama_vocab_is_eog(self._vocab, token))
                if not finished:
                    slot.out.append(token)
                    finished = len(slot.out) >= max_new_tokens
                    if stops and not finished:  # text is only needed to look for a stop
                        slot.text += self._llm.detokenize([token])
                        tail = bytes(slot.text[-(longest + 64) :])
                        finished = any(s in tail for s in stops)
                if finished:
                    text = self._llm.detokenize(slot.out, prev_tokens=slot.prompt)
                    words = truncate_at_stop(text.decode("utf-8", errors="ignore"), stop)
                    seconds = time.perf_counter() - slot.started
                    done[slot.job] = Completion(words, len(slot.out), seconds)
                    del slots[seq]
                    free.append(seq)
        return [c for c in done if c is not None]

    def _decode(self, slots: dict[int, _Slot]) -> dict[int, np.ndarray]:
        """One ``llama_decode`` advancing every slot: a new slot's whole prompt, or the last
        token chosen for a running one. Returns each slot's next-token logits."""
        lib, batch = self._lib, self._batch
        n, last = 0, {}
        for seq, slot in slots.items():
            todo = slot.prompt[slot.pos :] if slot.pos < len(slot.prompt) else slot.out[-1:]
            for k, token in enumerate(todo):
                batch.token[n] = token
                batch.pos[n] = slot.pos + k
                batch.n_seq_id[n] = 1
                batch.seq_id[n][0] = seq
                batch.logits[n] = k == len(todo) - 1
                n += 1
            slot.pos += len(todo)
            last[seq] = n - 1
        batch.n_tokens = n
        code = lib.llama_decode(self._ctx, batch)
        if code != 0:
            raise RuntimeError(f"llama_decode returned {code} on a batch of {n} tokens")
        return {
            seq: np.ctypeslib.as_array(lib.llama_get_logits_ith(self._ctx, i), (self.n_vocab,))
            for seq, i in last.items()
        }

    @staticmethod
    def _choose(row: np.ndarray, temperature: float, top_p: float, rng) -> int:
        if temperature == 0:
            return int(np.argmax(row))
        z = row.astype(np.float64) / temperature
        p = np.exp(z - z.max())
        p /= p.sum()
        order = np.argsort(-p)
        keep = order[: int(np.searchsorted(np.cumsum(p[order]), top_p)) + 1]
        return int(rng.choice(keep, p=p[keep] / p[keep].sum()))
