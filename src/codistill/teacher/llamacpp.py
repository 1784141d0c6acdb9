"""llama.cpp in-process as the teacher of the top-k cache (``--backend llamacpp:FILE.gguf``).

The teacher's log-probs come from llama-cpp-python's low-level API on a GGUF file: each example's
teacher ids (the Hugging Face tokenizer's, exactly as training builds them) go to
``llama_decode`` as one sequence, and only the positions just before each target token ask for
output logits, so the output head (Gemma's 262,144 x 640) runs on the target rows only, as the
torch path's ``target_states`` + head does. Nothing is tokenized by llama.cpp: the cached
positions line up with training's by construction.

Several consecutive examples go to one decode, each as its own sequence, so the head's weights
are read once for all their rows. Consecutive examples that share the start of their prompt
(assertions of one test method, in the order a corpus is mined) share its keys and values: only
the rest is decoded (``LlamaCppTeacher._decode``, ``_keep``), as llama.cpp's server reuses a
cached prompt prefix; ``truncation=middle`` keeps that shared start in prompts too long for the
context. The logits then come from a decode of different batch shape than a fresh one, so they
agree with it to rounding, not bit for bit; ``reused_tokens`` and ``decoded_tokens`` count the
saving.

The GGUF must be the model the ``--teacher`` directory was converted from (that directory
supplies the tokenizer): :func:`check_vocabulary` refuses a file whose vocabulary size differs
from the tokenizer's, or whose token texts differ on a sample of ids.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from codistill.evaluation.llamacpp_batch import LlamaCppContext
from codistill.models.gguf_check import common_prefix

# Token texts compared between the GGUF and the tokenizer: enough to catch another model with
# the same vocabulary size, few enough to cost nothing.
_VOCAB_SAMPLE = 512


class LlamaCppTeacher(LlamaCppContext):
    """A GGUF model loaded by llama.cpp that returns full-vocabulary log-probs at target rows.

    Up to ``n_seq`` consecutive examples go to one ``llama_decode``, each as its own sequence:
    the output head's weights (Gemma's 262,144 x 640, read from memory for every decode) are then
    read once for all their target rows. A prompt prefix an example shares with the example
    before it is decoded once, its tokens tagged with both sequences (or, for the first example
    of a decode, kept in the context from the decode before).

    Args:
        gguf: the model file.
        n_ctx: context length of one example; at least its prompt + target.
        n_threads: CPU threads (default: every core this process may use).
        reuse_prefix: share a prompt prefix with the previous example (False: decode every
            example whole, for comparison).
        n_seq: examples per decode (1: one at a time).
    """

    def __init__(
        self,
        gguf: str | Path,
        n_ctx: int,
        n_threads: int | None = None,
        reuse_prefix: bool = True,
        n_seq: int = 4,
    ):
        if n_seq < 1 or n_ctx < 1:
            raise ValueError(f"n_seq and n_ctx must be >= 1, got {n_seq}, {n_ctx}")
        self.n_ctx, self.n_seq = int(n_ctx), int(n_seq)
        # One KV cache for all sequences: a shared prefix's cells carry several sequence ids.
        super().__init__(
            gguf,
            n_ctx=self.n_ctx,
            n_seq=self.n_seq,
            n_threads=n_threads,
            kv_unified=True,
            seq_ids_per_token=self.n_seq,
        )
        self._mem = self._lib.llama_get_memory(self._ctx)
        self.n_vocab = int(self._llm.n_vocab())
        self.reuse_prefix = reuse_prefix
        self._held: list[int] = []  # the tokens of sequence _held_seq the context holds
        self._held_seq = 0
        self.reused_tokens = 0  # prompt tokens not recomputed (a shared prefix)
        self.decoded_tokens = 0

    def token_text(self, token_id: int) -> str:
        """The GGUF's text of one token (as its vocabulary stores it, e.g. '▁foo' or 'Ġfoo')."""
        vocab = self._lib.llama_model_get_vocab(self._llm.model)
        return self._lib.llama_vocab_get_text(vocab, int(token_id)).decode("utf-8", "replace")

    def logprob_rows(self, examples: Sequence) -> Iterator[np.ndarray]:
        """Per example, ``[len(target_ids), n_vocab]`` float32 log-softmax rows (T=1); row t is
        the distribution over target token t.

        Raises:
            ValueError: an example is longer than ``n_ctx`` or has no prompt token.
        """
        group: list = []
        for ex in examples:
            n = len(ex.prompt_ids) + len(ex.target_ids)
            if n > self.n_ctx or not ex.prompt_ids:
                raise ValueError(
                    f"an example of {n} tokens ({len(ex.prompt_ids)} prompt) does not fit the "
                    f"llama.cpp context of {self.n_ctx} (or has no prompt token)"
                )
            if not ex.target_ids:  # nothing to score: no decode
                if group:
                    yield from self._log_softmax(self._decode(group))
                    group = []
                yield np.zeros((0, self.n_vocab), np.float32)
                continue
            group.append(ex)
            if len(group) == self.n_seq:
                yield from self._log_softmax(self._decode(group))
                group = []
        if group:
            yield from self._log_softmax(self._decode(group))

    @staticmethod
    def _log_softmax(rows: list[np.ndarray]) -> Iterator[np.ndarray]:
        # torch's float32 log-softmax, as the torch teacher's rows: a float64 numpy one cost
        # ~10 ms per row of Gemma's 262,144 logits, torch's under 1 ms.
        for logits in rows:
            yield torch.log_softmax(torch.from_numpy(logits), dim=-1).numpy()

    def _decode(self, examples: Sequence) -> list[np.ndarray]:
        """Logit rows of each example (``[len(target_ids), n_vocab]``), from one decode.

        Example j is sequence j: ``prompt + target[:-1]`` (the last target token predicts
        nothing we store), logits asked from position ``first_j = len(prompt) - 1`` on. It
        decodes itself from position ``lo_j``: for j = 0 the prefix kept in the context, for
        j > 0 the prefix it shares with example j - 1, at most up to ``first_j``. A token of
        example j at position p also serves every following example whose shared prefixes all
        reach past p, so it is tagged with their sequence ids too.
        """
        lib = self._lib
        seqs = [[*map(int, e.prompt_ids), *map(int, e.target_ids)][:-1] for e in examples]
        firsts = [len(e.prompt_ids) - 1 for e in examples]
        los = [self._keep(seqs[0], firsts[0])]
        for j in range(1, len(seqs)):
            shared = common_prefix(seqs[j - 1], seqs[j]) if self.reuse_prefix else 0
            los.append(min(shared, firsts[j]))
        # Sequence j's cells kept from before: the prefix of sequence 0 every shared prefix
        # up to j reaches.
        held = los[0]
        for j in range(1, len(seqs)):
            held = min(held, los[j])
            if held:
                lib.llama_memory_seq_cp(self._mem, 0, j, 0, held)
        batch, t = self._batch, 0
        for j, seq in enumerate(seqs):
            reach = [min(los[j + 1 : k + 1], default=len(seq)) for k in range(j, len(seqs))]
            for p in range(los[j], len(seq)):
                ids = [k for k, r in zip(range(j, len(seqs)), reach, strict=True) if p < r]
                batch.token[t], batch.pos[t], batch.n_seq_id[t] = seq[p], p, len(ids)
                for i, k in enumerate(ids):
                    batch.seq_id[t][i] = k
                batch.logits[t] = p >= firsts[j]
                t += 1
        batch.n_tokens = t
        code = lib.llama_decode(self._ctx, batch)
        if code != 0:
            self._forget()
            raise RuntimeError(f"llama_decode returned {code} on {len(seqs)} examples")
        self._held, self._held_seq = seqs[-1], len(seqs) - 1
        self.reused_tokens += sum(los)
        self.decoded_tokens += sum(len(s) - lo for s, lo in zip(seqs, los, strict=True))
        ptr = lib.llama_get_logits(self._ctx)
        rows = np.ctypeslib.as_array(
            ptr, shape=(sum(len(e.target_ids) for e in examples), self.n_vocab)
        )
        out, offset = [], 0
        for e in examples:
            out.append(rows[offset : offset + len(e.target_ids)].copy())
            offset += len(e.target_ids)
        return out

    def _keep(self, seq: list[int], first: int) -> int:
        """How many leading tokens of ``seq`` the context already holds and may keep, left as
        sequence 0 with every other sequence emptied.

        Consecutive examples often share most of their prompt (assertions of one test method,
        the same focal method): those keys and values are kept and only the rest is decoded,
        as llama.cpp's own server reuses a prompt's prefix. Kept at most up to ``first``, the
        first position whose logits are stored (logits come only from the batch decoded now).
        A context that cannot drop its tail (some sliding-window caches), or that no longer
        holds the sequence's first positions (a sliding-window cache may reuse cells that fell
        out of the window; llama.cpp's server checks the same), starts over.
        """
        lib, mem, h = self._lib, self._mem, self._held_seq
        shared = common_prefix(self._held, seq[:first]) if self.reuse_prefix else 0
        if (
            not shared
            or lib.llama_memory_seq_pos_min(mem, h) != 0
            or not lib.llama_memory_seq_rm(mem, h, shared, -1)
        ):
            self._forget()
            return 0
        for s in range(self.n_seq):
            if s != h:
                lib.llama_memory_seq_rm(mem, s, -1, -1)
        if h != 0:
            lib.llama_memory_seq_cp(mem, h, 0, -1, -1)
            lib.llama_memory_seq_rm(mem, h, -1, -1)
        return shared

    def _forget(self) -> None:
        self._lib.llama_memory_clear(self._mem, True)
        self._held, self._held_seq = [], 0


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
