"""Trimmed student vocabularies and the student↔teacher token-id map.

Most of a small code LM's parameters are its vocabulary (Gemma 3 270M: 168M of 268M), and most of
that vocabulary never occurs in source code. A student keeps only the tokens a distillation corpus
uses (plus what the tokenizer needs to stay complete, see :func:`trim_tokenizer`), renumbered
``0..n-1``; :class:`TokenMap` records which teacher id each student id stands for and is saved
beside the student as ``token_map.json``.

How tokens the student does not have are handled:

* **Training text** is tokenized once, with the *teacher* tokenizer, and the ids are mapped with
  :meth:`TokenMap.teacher_to_student`. A teacher token outside the kept set maps to the fallback
  id (the student's ``<unk>``); :meth:`TokenMap.count_unmapped` counts them, and
  ``teacher_to_student(..., warn=True)`` logs how many there were. Teacher logits are gathered
  onto the student vocabulary with ``teacher_logits[..., token_map.student_to_teacher_tensor]``,
  so probability mass on dropped tokens is simply not part of the student's distribution.
* **The student's own tokenizer** (saved with it, used at inference) splits a word made of
  dropped tokens into kept sub-pieces and, below that, into the byte-fallback tokens ``<0x..>``,
  which are always kept, so a byte-fallback tokenizer such as Gemma's never emits ``<unk>``
  (a Unigram one without byte fallback, like T5's, does for unseen characters). Any text whose
  teacher tokens are all kept (every corpus text included) is segmented exactly as the teacher
  segments it (argued below), so ``vocab_texts`` should cover the training
  corpus.

**Why a trimmed BPE tokenizer segments like the teacher.** A BPE tokenizer trimmed by
:func:`trim_tokenizer` segments a text exactly like the teacher whenever the
teacher's segmentation of it uses only kept tokens: BPE starts from single characters (or
bytes) and repeatedly applies the lowest-rank merge whose pair is adjacent. Symbols are only
ever merged, never split, so every symbol the teacher forms along the way, initial
characters included, is a part in the merge tree of one of its final tokens, hence kept by
the closure together with the merge that formed it. Inductively, both tokenizers hold the
same symbols at each step: the merge the teacher applies is in the trimmed list, and every
merge applicable in the trimmed tokenizer is applicable in the teacher with the same relative
rank, so the trimmed tokenizer picks the same merge, and it stops when the teacher stops.
(Added tokens, normalizer and pre-tokenizer are unchanged, so they split the text alike.)
This covers every corpus text, and any text all of whose teacher tokens were seen in the
corpus (property-tested on random substrings of it). New texts that recombine corpus
words usually qualify too, but not always: Gemma's whitespace-run pieces (``▁▁▁``) absorb
the ``▁`` of the next word, so a word seen only after indentation can be a different, unkept
token after a single space; the teacher's id then maps to the fallback while the student
spells the word with kept pieces. Unigram picks the best-scoring segmentation; restricting
the pieces only removes candidates, so the same holds when the teacher's best segmentation
uses kept pieces.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, pre_tokenizers
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

logger = logging.getLogger(__name__)

TOKEN_MAP_FILE = "token_map.json"
TOKEN_MAP_VERSION = 1
_BYTE_TOKEN = re.compile(r"<0x[0-9A-Fa-f]{2}>")
_UNUSED_PLACEHOLDER = re.compile(r"<unused\d+>|\[unused\d+\]")
_NAMED_SPECIALS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token")
_CARRIED_ATTRIBUTES = (
    "model_max_length",
    "padding_side",
    "truncation_side",
    "chat_template",
    "clean_up_tokenization_spaces",
)


def collect_token_ids(
    tokenizer: PreTrainedTokenizerBase, texts: Iterable[str], batch_size: int = 256
) -> set[int]:
    """Collects the teacher token ids a corpus uses.

    Args:
        tokenizer: The teacher tokenizer.
        texts: The corpus; consumed once, in batches.
        batch_size: Texts per call to the (fast, batched) tokenizer.

    Returns:
        Every id that occurs when the texts are tokenized, special tokens included.
    """
    seen: set[int] = set()
    batch: list[str] = []

    def flush() -> None:
        for ids in tokenizer(batch, add_special_tokens=True, verbose=False)["input_ids"]:
            seen.update(ids)
        batch.clear()

    for text in texts:
        batch.append(text)
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    return seen


def trim_tokenizer(
    tokenizer: PreTrainedTokenizerBase,
    keep_ids: Iterable[int],
    max_id: int | None = None,
    keep_unused_placeholders: bool = False,
) -> tuple[PreTrainedTokenizerFast, list[int]]:
    """Builds a tokenizer restricted to a subset of the teacher's tokens, renumbered ``0..n-1``.

    Besides ``keep_ids``, the trimmed vocabulary always keeps every special and added token, the
    byte-fallback tokens ``<0x00>``..``<0xFF>`` when the model falls back to bytes, the 256
    byte-level characters for byte-level BPE (GPT-2/Qwen style), and for BPE the *merge closure*:
    for each kept token, both parts of every merge that produces it, recursively. Only merges whose
    two parts and result are all kept survive, in their original rank order (why this segments
    kept text exactly like the teacher: see the module docstring).

    Added tokens named like unused placeholders (``<unused12>``, ``[unused3]``; Gemma 3 has
    6,242 of them, 4M parameters at width 640) are dropped unless ``keep_ids`` asks for them or
    ``keep_unused_placeholders`` is set: no text the student sees uses them.

    Ordering: the named special tokens (bos/eos/unk/sep/pad/cls) come first, then every other
    kept token, each group in teacher-id order, so a teacher whose specials have low ids (Gemma:
    pad 0, eos 1, bos 2, unk 3) keeps those ids in the student.

    Args:
        tokenizer: The teacher's fast tokenizer.
        keep_ids: Teacher ids to keep (e.g. from :func:`collect_token_ids`).
        max_id: Exclusive upper bound on kept teacher ids, usually the teacher's embedding rows:
            tokenizer entries past the model's vocabulary (some tokenizers list more entries
            than the model has rows) are dropped. None keeps all.
        keep_unused_placeholders: Keep ``<unusedN>``-style added tokens even when unused.

    Returns:
        The trimmed tokenizer and ``student_to_teacher``: entry ``i`` is the teacher id of
        student id ``i``.

    Raises:
        ValueError: An id in ``keep_ids`` is not in the teacher vocabulary, or the tokenizer's
            model type is not BPE, Unigram, WordPiece or WordLevel.
        TypeError: ``tokenizer`` is not a fast (``tokenizers``-backed) tokenizer.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise TypeError(f"trim_tokenizer needs a fast tokenizer, got {type(tokenizer).__name__}")
    spec = json.loads(backend.to_str())
    model = spec["model"]
    if model["type"] not in ("BPE", "Unigram", "WordPiece", "WordLevel"):
        raise ValueError(
            f"cannot trim a tokenizer whose model type is {model['type']!r}: "
            "expected one of BPE, Unigram, WordPiece, WordLevel"
        )
    id_to_token = _id_to_token(spec)
    required = _required_ids(tokenizer, spec, id_to_token)
    if not keep_unused_placeholders:
        required = {i for i in required if not _UNUSED_PLACEHOLDER.fullmatch(id_to_token[i])}
    keep = required | _checked_ids(keep_ids, id_to_token)
    if model["type"] == "BPE":
        keep = _bpe_merge_closure(model, keep, id_to_token)
    if max_id is not None:
        keep = {i for i in keep if i < max_id}

    named = sorted({i for i in _named_special_ids(tokenizer) if i in keep})
    student_to_teacher = named + sorted(keep - set(named))
    new_id = {teacher: student for student, teacher in enumerate(student_to_teacher)}
    _rewrite_model(model, student_to_teacher, id_to_token)
    spec["added_tokens"] = [
        {**entry, "id": new_id[entry["id"]]}
        for entry in spec["added_tokens"]
        if entry["id"] in new_id
    ]
    if spec.get("post_processor"):
        _remap_processor(spec["post_processor"], new_id)
    if spec.get("padding") and spec["padding"].get("pad_id") is not None:
        spec["padding"]["pad_id"] = new_id.get(spec["padding"]["pad_id"], 0)

    trimmed = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(json.dumps(spec, ensure_ascii=False)),
        **_carried_kwargs(tokenizer, {id_to_token[t] for t in student_to_teacher}),
    )
    return trimmed, student_to_teacher


def _id_to_token(spec: dict[str, Any]) -> dict[int, str]:
    """Maps every id of a serialized tokenizer (model vocabulary and added tokens) to its string."""
    vocab = spec["model"]["vocab"]
    if isinstance(vocab, dict):
        id_to_token = {i: token for token, i in vocab.items()}
    else:  # Unigram: a list of [piece, score], the id being the position
        id_to_token = {i: piece for i, (piece, _) in enumerate(vocab)}
    for entry in spec["added_tokens"]:
        id_to_token[entry["id"]] = entry["content"]
    return id_to_token


def _checked_ids(ids: Iterable[int], id_to_token: dict[int, str]) -> set[int]:
    ids = {int(i) for i in ids}
    unknown = sorted(i for i in ids if i not in id_to_token)
    if unknown:
        raise ValueError(
            f"keep_ids has {len(unknown)} id(s) not in the tokenizer vocabulary "
            f"(valid ids are 0..{max(id_to_token)}), e.g. {unknown[:5]}"
        )
    return ids


def _named_special_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    ids = [getattr(tokenizer, f"{name}_id", None) for name in _NAMED_SPECIALS]
    return [i for i in ids if i is not None]


def _required_ids(
    tokenizer: PreTrainedTokenizerBase, spec: dict[str, Any], id_to_token: dict[int, str]
) -> set[int]:
    """Ids a trimmed tokenizer keeps whatever the corpus: specials, added and fallback tokens."""
    model = spec["model"]
    required = {entry["id"] for entry in spec["added_tokens"]}
    required.update(i for i in tokenizer.all_special_ids if i in id_to_token)
    token_to_id = {token: i for i, token in id_to_token.items()}
    if model.get("unk_token") in token_to_id:
        required.add(token_to_id[model["unk_token"]])
    if model.get("unk_id") is not None:
        required.add(model["unk_id"])
    if model.get("byte_fallback"):
        required.update(i for i, t in id_to_token.items() if _BYTE_TOKEN.fullmatch(t))
    if "ByteLevel" in json.dumps(spec.get("pre_tokenizer")):
        # Byte-level BPE spells every byte with one of these 256 characters; without them some
        # text could not be encoded at all.
        alphabet = pre_tokenizers.ByteLevel.alphabet()
        required.update(token_to_id[c] for c in alphabet if c in token_to_id)
    return required


def _merge_pairs(merges: list[Any]) -> list[tuple[str, str]]:
    """Reads merges in either serialization: ``"a b"`` strings (older) or ``[a, b]`` pairs."""
    return [tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1)) for m in merges]


def _merge_result(model: dict[str, Any], left: str, right: str) -> str:
    # Mirrors tokenizers' BPE: the right part's continuing-subword prefix ("##") is dropped.
    prefix = model.get("continuing_subword_prefix") or ""
    if prefix and right.startswith(prefix):
        right = right[len(prefix) :]
    return left + right


def _bpe_merge_closure(
    model: dict[str, Any], keep: set[int], id_to_token: dict[int, str]
) -> set[int]:
    """Adds the parts of every merge that produces a kept token, recursively."""
    vocab = model["vocab"]
    producers: dict[str, list[tuple[str, str]]] = {}
    for left, right in _merge_pairs(model["merges"]):
        producers.setdefault(_merge_result(model, left, right), []).append((left, right))
    kept_tokens = {id_to_token[i] for i in keep}
    stack = list(kept_tokens)
    while stack:
        for pair in producers.get(stack.pop(), ()):
            for part in pair:
                if part in vocab and part not in kept_tokens:
                    kept_tokens.add(part)
                    stack.append(part)
    return keep | {vocab[t] for t in kept_tokens if t in vocab}


def _rewrite_model(
    model: dict[str, Any], student_to_teacher: list[int], id_to_token: dict[int, str]
) -> None:
    """Replaces the model's vocabulary (and merges, unk id) with the kept, renumbered tokens.

    Added tokens that the teacher kept outside its model vocabulary are written into it, so the
    student's ids are contiguous and each one has a row in the trimmed embedding.
    """
    tokens = [id_to_token[t] for t in student_to_teacher]
    if model["type"] == "Unigram":
        scores = {piece: score for piece, score in model["vocab"]}
        if model.get("unk_id") is not None:
            unk = model["vocab"][model["unk_id"]][0]
            model["unk_id"] = tokens.index(unk) if unk in tokens else None
        model["vocab"] = [[t, scores.get(t, 0.0)] for t in tokens]
        return
    model["vocab"] = {t: i for i, t in enumerate(tokens)}
    if model["type"] == "BPE":
        kept = set(tokens)
        as_strings = bool(model["merges"]) and isinstance(model["merges"][0], str)
        model["merges"] = [
            f"{left} {right}" if as_strings else [left, right]
            for left, right in _merge_pairs(model["merges"])
            if left in kept and right in kept and _merge_result(model, left, right) in kept
        ]


def _remap_processor(node: Any, new_id: dict[int, int]) -> None:
    """Rewrites the special-token ids a post-processor inserts, in place, recursively."""
    if isinstance(node, list):
        for child in node:
            _remap_processor(child, new_id)
        return
    if not isinstance(node, dict):
        return
    kind = node.get("type")
    if kind == "TemplateProcessing":
        for name, special in node["special_tokens"].items():
            missing = [i for i in special["ids"] if i not in new_id]
            if missing:
                raise ValueError(
                    f"post-processor special token {name!r} uses dropped ids {missing}"
                )
            special["ids"] = [new_id[i] for i in special["ids"]]
    elif kind in ("BertProcessing", "RobertaProcessing"):
        for field in ("sep", "cls"):
            token, old = node[field]
            node[field] = [token, new_id[old]]
    elif kind == "Sequence":
        _remap_processor(node.get("processors", []), new_id)


def _carried_kwargs(tokenizer: PreTrainedTokenizerBase, kept_tokens: set[str]) -> dict[str, Any]:
    """Special-token attributes and settings to carry over to the trimmed tokenizer."""
    kwargs: dict[str, Any] = {}
    standard = set(PreTrainedTokenizerBase.SPECIAL_TOKENS_ATTRIBUTES)
    model_specific: dict[str, str] = {}
    # The instance's list also names model-specific tokens (Gemma 3's image_token, boi_token...).
    for name in tokenizer.SPECIAL_TOKENS_ATTRIBUTES:
        value = getattr(tokenizer, name, None)
        if value is None or str(value) not in kept_tokens:
            continue
        if name in standard:
            kwargs[name] = str(value)
        else:
            model_specific[name] = str(value)
    if model_specific:
        kwargs["model_specific_special_tokens"] = model_specific
    extra = [str(t) for t in getattr(tokenizer, "extra_special_tokens", None) or []]
    if extra:
        kwargs["extra_special_tokens"] = [t for t in extra if t in kept_tokens]
    for name in _CARRIED_ATTRIBUTES:
        value = getattr(tokenizer, name, None)
        if value is not None:
            kwargs[name] = value
    return kwargs


class TokenMap:
    """Maps student token ids to teacher ids and back.

    Attributes:
        student_to_teacher: Entry ``i`` is the teacher id that student id ``i`` stands for.
        teacher_vocab_size: Size of the teacher's logit dimension.
        fallback_student_id: Student id that unmapped teacher ids become (the student's unk).
    """

    def __init__(
        self,
        student_to_teacher: Sequence[int],
        teacher_vocab_size: int,
        fallback_student_id: int,
    ) -> None:
        """Validates and indexes a map.

        Args:
            student_to_teacher: Teacher id of each student id; distinct, in
                ``[0, teacher_vocab_size)``.
            teacher_vocab_size: Size of the teacher's logit dimension.
            fallback_student_id: A student id, in ``[0, len(student_to_teacher))``.

        Raises:
            ValueError: Any of the above does not hold (the message names the field).
        """
        s2t = [int(i) for i in student_to_teacher]
        if not s2t:
            raise ValueError("student_to_teacher must not be empty")
        if len(set(s2t)) != len(s2t):
            raise ValueError("student_to_teacher must not repeat a teacher id")
        bad = [i for i in s2t if not 0 <= i < teacher_vocab_size]
        if bad:
            raise ValueError(
                f"student_to_teacher ids must be in [0, teacher_vocab_size={teacher_vocab_size}), "
                f"got {bad[:5]}"
            )
        if not 0 <= fallback_student_id < len(s2t):
            raise ValueError(
                f"fallback_student_id must be in [0, {len(s2t)}), got {fallback_student_id}"
            )
        self.student_to_teacher = s2t
        self.teacher_vocab_size = int(teacher_vocab_size)
        self.fallback_student_id = int(fallback_student_id)
        self._s2t = torch.tensor(s2t, dtype=torch.long)
        # -1 marks teacher ids the student lacks, resolved to the fallback on lookup.
        self._t2s = torch.full((self.teacher_vocab_size,), -1, dtype=torch.long)
        self._t2s[self._s2t] = torch.arange(len(s2t))

    @classmethod
    def identity(cls, vocab_size: int, fallback_student_id: int = 0) -> TokenMap:
        """The map of a student that keeps the teacher's full vocabulary."""
        return cls(range(vocab_size), vocab_size, fallback_student_id)

    @property
    def student_vocab_size(self) -> int:
        return len(self.student_to_teacher)

    @property
    def is_identity(self) -> bool:
        """True when student and teacher ids coincide, so gathering logits can be skipped."""
        return self.student_vocab_size == self.teacher_vocab_size and bool(
            torch.equal(self._s2t, torch.arange(self.teacher_vocab_size))
        )

    @property
    def student_to_teacher_tensor(self) -> torch.Tensor:
        """LongTensor ``[student_vocab]``: ``teacher_logits[..., t]`` is on the student vocab."""
        return self._s2t

    @property
    def teacher_to_student_tensor(self) -> torch.Tensor:
        """LongTensor ``[teacher_vocab]``: the student id of each teacher id, -1 where the
        student lacks the token. Unlike :meth:`teacher_to_student`, no fallback: the sparse
        losses put teacher mass on tokens the student cannot emit in their tail bucket."""
        return self._t2s

    def _lookup(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns the raw lookup (-1 where unmapped) and the mask of real (non-negative) ids."""
        real = ids >= 0
        in_range = real & (ids < self.teacher_vocab_size)
        table = self._t2s.to(ids.device)
        raw = torch.where(in_range, table[ids.clamp(0, self.teacher_vocab_size - 1)], -1)
        return raw, real

    def teacher_to_student(
        self, ids: torch.Tensor | Sequence[int], *, warn: bool = False
    ) -> torch.Tensor | list[int]:
        """Maps teacher ids to student ids.

        Teacher ids the student lacks (or past the teacher vocabulary) become
        ``fallback_student_id``. Negative values such as the ``-100`` ignore index pass through
        unchanged, so label tensors can be mapped directly.

        Args:
            ids: A LongTensor of any shape, or a list of ints.
            warn: Log a warning with the number of unmapped ids when there are any.

        Returns:
            The same kind of object as ``ids``: a tensor (same shape and device) or a list.
        """
        as_list = not isinstance(ids, torch.Tensor)
        tensor = torch.as_tensor(list(ids) if as_list else ids, dtype=torch.long)
        raw, real = self._lookup(tensor)
        unmapped = real & (raw < 0)
        mapped = torch.where(unmapped, self.fallback_student_id, torch.where(real, raw, tensor))
        if warn and bool(unmapped.any()):
            logger.warning(
                "%d of %d teacher token ids have no student token; mapped to fallback id %d",
                int(unmapped.sum()),
                int(real.sum()),
                self.fallback_student_id,
            )
        return mapped.tolist() if as_list else mapped.to(ids.dtype)

    def count_unmapped(self, ids: torch.Tensor | Sequence[int]) -> int:
        """Number of (non-negative) teacher ids in ``ids`` that the student vocabulary lacks."""
        tensor = ids if isinstance(ids, torch.Tensor) else torch.as_tensor(list(ids))
        raw, real = self._lookup(tensor.long())
        return int((real & (raw < 0)).sum())

    def to_dict(self) -> dict[str, Any]:
        return {
            "student_to_teacher": self.student_to_teacher,
            "teacher_vocab_size": self.teacher_vocab_size,
            "fallback_student_id": self.fallback_student_id,
            "version": TOKEN_MAP_VERSION,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "token map") -> TokenMap:
        """Builds a map from :meth:`to_dict` output; ``source`` names it in error messages."""
        if data.get("version") != TOKEN_MAP_VERSION:
            raise ValueError(
                f"{source}: version must be {TOKEN_MAP_VERSION}, got {data.get('version')!r}"
            )
        for field, kind in (
            ("student_to_teacher", list),
            ("teacher_vocab_size", int),
            ("fallback_student_id", int),
        ):
            if not isinstance(data.get(field), kind):
                raise ValueError(f"{source}: field {field!r} must be a {kind.__name__}")
        try:
            return cls(
                data["student_to_teacher"], data["teacher_vocab_size"], data["fallback_student_id"]
            )
        except ValueError as err:
            raise ValueError(f"{source}: {err}") from err

    def save(self, directory: str | Path) -> Path:
        """Writes ``token_map.json`` into ``directory`` atomically; returns the file's path."""
        path = Path(directory) / TOKEN_MAP_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{TOKEN_MAP_FILE}.", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(self.to_dict(), handle)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(cls, directory: str | Path) -> TokenMap:
        """Reads ``token_map.json`` from a student directory.

        Raises:
            FileNotFoundError: The directory has no ``token_map.json``.
            ValueError: The file is malformed (the message names the file and field).
        """
        path = Path(directory) / TOKEN_MAP_FILE
        if not path.is_file():
            raise FileNotFoundError(f"no token map at {path}")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from err
        return cls.from_dict(data, source=str(path))

    @classmethod
    def load_optional(cls, directory: str | Path) -> TokenMap | None:
        """Like :meth:`load`, but None when there is no ``token_map.json`` (full vocabulary)."""
        if not (Path(directory) / TOKEN_MAP_FILE).is_file():
            return None
        return cls.load(directory)

    def __repr__(self) -> str:
        return (
            f"TokenMap(student_vocab_size={self.student_vocab_size}, "
            f"teacher_vocab_size={self.teacher_vocab_size}, "
            f"fallback_student_id={self.fallback_student_id})"
        )
