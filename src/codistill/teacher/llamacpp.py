"""llama.cpp in-process as the teacher of the top-k cache (``--backend llamacpp:FILE.gguf``).

The teacher's log-probs come from llama-cpp-python's low-level API on a GGUF file: each example's
teacher ids (the Hugging Face tokenizer's, exactly as training builds them) go to
``llama_decode`` as one sequence, and only the positions just before each target token ask for
output logits, so the output head (Gemma's 262,144 x 640) runs on the target rows only, as the
torch path's ``target_states`` + head does. Nothing is tokenized by llama.cpp: the cached
positions line up with training's by construction.

Consecutive examples that share the start of their prompt (assertions of one test method, in
the order a corpus is mined) share its keys and values: only the rest is decoded
(``LlamaCppTeacher._keep``), as llama.cpp's server reuses a cached prompt prefix. The logits
then come from a decode of different batch shape than a fresh one, so they agree with it to
rounding, not bit for bit; ``reused_tokens`` and ``decoded_tokens`` count the saving.

The GGUF must be the model the ``--teacher`` directory was converted from (that directory
supplies the tokenizer): :func:`check_vocabulary` refuses a file whose vocabulary size differs
from the tokenizer's, or whose token texts differ on a sample of ids.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from codistill.evaluation.llamacpp_batch import check_gguf_file, cpu_threads, import_llama_cpp

# Token texts compared between the GGUF and the tokenizer: enough to catch another model with
# the same vocabulary size, few enough to cost nothing.
_VOCAB_SAMPLE = 512


class LlamaCppTeacher:
    """A GGUF model loaded by llama.cpp that returns full-vocabulary log-probs at target rows.

    Args:
        gguf: the model file.
        n_ctx: context length; at least the longest prompt + target of the examples.
        n_threads: CPU threads (default: every core this process may use).
        reuse_prefix: keep the keys and values of a prompt prefix shared with the previous
            example (False: decode every example whole, for comparison).
    """

    def __init__(
        self, gguf: str | Path, n_ctx: int, n_threads: int | None = None, reuse_prefix: bool = True
    ):
        llama_cpp = import_llama_cpp()
        self.path = check_gguf_file(gguf)
        self.n_ctx = int(n_ctx)
        threads = n_threads or cpu_threads()
        # One decode per example: the batch holds a whole sequence, and llama.cpp's micro-batch
        # at most 512 tokens (its default) so memory stays bounded for long contexts.
        self._llm = llama_cpp.Llama(
            model_path=str(self.path),
            n_ctx=self.n_ctx,
            n_batch=self.n_ctx,
            n_ubatch=min(self.n_ctx, 512),
            n_threads=threads,
            n_threads_batch=threads,
            logits_all=False,
            verbose=False,
        )
        self._lib = llama_cpp
        self.n_vocab = int(self._llm.n_vocab())
        self._batch = llama_cpp.llama_batch_init(self.n_ctx, 0, 1)
        self.reuse_prefix = reuse_prefix
        self._held: list[int] = []  # the tokens whose keys and values the context holds
        self.reused_tokens = 0  # prompt tokens not recomputed (a shared prefix)
        self.decoded_tokens = 0

    def token_text(self, token_id: int) -> str:
        """The GGUF's text of one token (as its vocabulary stores it, e.g. '▁foo' or 'Ġfoo')."""
        vocab = self._lib.llama_model_get_vocab(self._llm.model)
        return self._lib.llama_vocab_get_text(vocab, int(token_id)).decode("utf-8", "replace")

    def target_logits(self, prompt_ids: Sequence[int], target_ids: Sequence[int]) -> np.ndarray:
        """``[len(target_ids), n_vocab]`` float32 logits, row t predicting target token t.

        Raises:
            ValueError: the sequence is longer than ``n_ctx`` or empty.
        """
        seq = [*map(int, prompt_ids), *map(int, target_ids)]
        n, first = len(seq), len(prompt_ids) - 1
        if not target_ids:
            return np.zeros((0, self.n_vocab), np.float32)
        if n > self.n_ctx or first < 0:
            raise ValueError(
                f"an example of {n} tokens ({len(prompt_ids)} prompt) does not fit the llama.cpp "
                f"context of {self.n_ctx} (or has no prompt token)"
            )
        lib, batch = self._lib, self._batch
        ctx = self._llm.ctx
        keep = self._keep(seq, first)
        batch.n_tokens = n - 1 - keep  # the last target token predicts nothing we store
        for j, i in enumerate(range(keep, n - 1)):
            batch.token[j] = seq[i]
            batch.pos[j] = i
            batch.n_seq_id[j] = 1
            batch.seq_id[j][0] = 0
            batch.logits[j] = i >= first
        code = lib.llama_decode(ctx, batch)
        if code != 0:
            self._forget()
            raise RuntimeError(f"llama_decode returned {code} on a {n}-token example")
        self._held = seq[: n - 1]
        self.reused_tokens += keep
        self.decoded_tokens += n - 1 - keep
        rows = len(target_ids)
        ptr = lib.llama_get_logits(ctx)
        return np.ctypeslib.as_array(ptr, shape=(rows, self.n_vocab)).copy()

    def _keep(self, seq: list[int], first: int) -> int:
        """How many leading tokens of ``seq`` the context already holds and may keep.

        Consecutive examples often share most of their prompt (assertions of one test method,
        the same focal method): those keys and values are kept and only the rest is decoded,
        as llama.cpp's own server reuses a prompt's prefix. Kept at most up to ``first``, the
        first position whose logits are stored (logits come only from the batch decoded now).
        A context that cannot drop its tail (some sliding-window caches) starts over.
        """
        shared = 0
        for a, b in zip(self._held if self.reuse_prefix else (), seq[:first], strict=False):
            if a != b:
                break
            shared += 1
        lib = self._lib
        memory = lib.llama_get_memory(self._llm.ctx)
        if shared and lib.llama_memory_seq_rm(memory, 0, shared, -1):
            return shared
        self._forget()
        return 0

    def _forget(self) -> None:
        self._lib.llama_memory_clear(self._lib.llama_get_memory(self._llm.ctx), True)
        self._held = []

    def logprob_rows(self, examples: Sequence) -> Iterator[np.ndarray]:
        """Per example, ``[len(target_ids), n_vocab]`` float32 log-softmax rows (T=1)."""
        # torch's float32 log-softmax, as the torch teacher's rows: a float64 numpy one cost
        # ~10 ms per row of Gemma's 262,144 logits, torch's under 1 ms.
        for ex in examples:
            logits = torch.from_numpy(self.target_logits(ex.prompt_ids, ex.target_ids))
            yield torch.log_softmax(logits, dim=-1).numpy()

    def close(self) -> None:
        if self._batch is not None:
            self._lib.llama_batch_free(self._batch)
            self._batch = None
        self._llm.close()

    def __enter__(self) -> LlamaCppTeacher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def check_vocabulary(teacher: LlamaCppTeacher, tokenizer, model_vocab: int) -> None:
    """Refuse a GGUF that is not the model the tokenizer belongs to.

    Args:
        teacher: the loaded GGUF.
        tokenizer: the ``--teacher`` directory's tokenizer.
        model_vocab: the directory's model vocabulary (its config's ``vocab_size``).

    Raises:
        ValueError: vocabulary sizes differ, or token texts differ on a spread sample of ids.
    """
    sizes = {"GGUF": teacher.n_vocab, "tokenizer": len(tokenizer), "model config": model_vocab}
    if len(set(sizes.values())) != 1:
        detail = ", ".join(f"{k} {v}" for k, v in sizes.items())
        raise ValueError(
            f"{teacher.path}: vocabulary sizes differ ({detail}); the GGUF must be the model "
            "the --teacher directory was converted from"
        )
    special = set(getattr(tokenizer, "all_special_ids", []))
    ids = np.unique(np.linspace(0, teacher.n_vocab - 1, _VOCAB_SAMPLE).astype(np.int64))
    hf = tokenizer.convert_ids_to_tokens([int(i) for i in ids])
    differ = [
        (int(i), t, teacher.token_text(int(i)))
        for i, t in zip(ids, hf, strict=True)
        if int(i) not in special and t != teacher.token_text(int(i))
    ]
    if differ:
        i, a, b = differ[0]
        raise ValueError(
            f"{teacher.path}: {len(differ)} of {len(ids)} sampled tokens differ from the "
            f"tokenizer's (id {i}: tokenizer {a!r}, GGUF {b!r}); the GGUF must be the model the "
            "--teacher directory was converted from"
        )
