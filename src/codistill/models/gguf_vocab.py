"""A Hugging Face tokenizer as llama.cpp's GGUF vocabulary, trimmed students included.

llama.cpp implements two tokenizers that cover the families codistill exports:

* ``llama`` (SentencePiece-style BPE) for Gemma: text has its spaces replaced by ``▁``, then
  adjacent pieces are merged, always the pair whose concatenation is the vocabulary token with
  the highest *score*; characters no token covers fall back to ``<0xXX>`` byte tokens. A
  Hugging Face Gemma tokenizer is the same algorithm written as a ranked merge list, so a token's
  score here is minus the rank of the first merge that produces it: the merge order becomes the
  score order. A trimmed student keeps the merges among its kept tokens (see
  :mod:`codistill.models.vocab`), so its scores come out of its own merge list.
* ``gpt2`` (byte-level BPE) for Qwen2: tokens are written in their byte-level spelling and the
  merges are copied as ``"left right"`` strings; the regex that splits text before BPE is not
  stored but named (``tokenizer.ggml.pre``), and llama.cpp only knows the regexes it was built
  with, so the tokenizer's regex must be one of those (Qwen2's here).

Added tokens the tokenizer marks special become ``CONTROL`` tokens (matched in text only when a
caller asks for special tokens, as in Hugging Face); other added tokens become ``USER_DEFINED``
(always matched first, as Hugging Face matches added tokens before the model). Embedding rows past
the tokenizer (Qwen pads 151,665 tokens to 151,936 rows) become ``[PADn]`` tokens of type
``UNUSED``, as llama.cpp's own converter writes them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gguf import GGUFWriter, TokenType

_BYTE_TOKEN = re.compile(r"<0x[0-9A-Fa-f]{2}>")
# Qwen2's pre-tokenizer regex, as in Qwen2/Qwen2.5(-Coder)'s tokenizer.json; llama.cpp implements
# it under the name "qwen2".
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_PRE_BY_REGEX = {QWEN2_SPLIT: "qwen2"}
# Scores llama.cpp's own converter gives tokens outside the merge order.
_SCORE_ADDED = -1000.0
_SCORE_UNUSED = -10000.0


class VocabError(ValueError):
    """The tokenizer cannot be written as a llama.cpp vocabulary (the message says why)."""


@dataclass
class GGUFVocab:
    """A tokenizer in GGUF terms.

    Attributes:
        model: ``tokenizer.ggml.model``: ``"llama"`` or ``"gpt2"``.
        pre: ``tokenizer.ggml.pre``: the pre-tokenizer's name in llama.cpp.
        tokens: One string per embedding row.
        types: One :class:`gguf.TokenType` value per token.
        scores: Merge priority per token (``llama`` only).
        merges: ``"left right"`` merges in rank order (``gpt2`` only).
        special_ids: ``bos``, ``eos``, ``unk``, ``pad`` ids present in the tokenizer.
        add_bos: Whether encoding prepends BOS.
        add_eos: Whether encoding appends EOS.
        add_space_prefix: Whether a ``▁`` is prepended to the text (``llama`` only).
        chat_template: The tokenizer's chat template, if it has one.
    """

    model: str
    pre: str
    tokens: list[str]
    types: list[int]
    scores: list[float] | None = None
    merges: list[str] | None = None
    special_ids: dict[str, int] = field(default_factory=dict)
    add_bos: bool = False
    add_eos: bool = False
    add_space_prefix: bool | None = None
    chat_template: str | None = None

    def write(self, writer: GGUFWriter) -> None:
        """Adds the ``tokenizer.ggml.*`` (and chat template) keys to a GGUF writer."""
        writer.add_tokenizer_model(self.model)
        writer.add_tokenizer_pre(self.pre)
        writer.add_token_list(self.tokens)
        writer.add_token_types(self.types)
        if self.scores is not None:
            writer.add_token_scores(self.scores)
        if self.merges is not None:
            writer.add_token_merges(self.merges)
        setters = {
            "bos": writer.add_bos_token_id,
            "eos": writer.add_eos_token_id,
            "unk": writer.add_unk_token_id,
            "pad": writer.add_pad_token_id,
        }
        for name, token_id in self.special_ids.items():
            setters[name](token_id)
        writer.add_add_bos_token(self.add_bos)
        writer.add_add_eos_token(self.add_eos)
        if self.add_space_prefix is not None:
            writer.add_add_space_prefix(self.add_space_prefix)
        if self.chat_template:
            writer.add_chat_template(self.chat_template)


def _merge_pairs(merges: list[Any]) -> list[tuple[str, str]]:
    # tokenizers writes merges as "a b" strings (older) or [a, b] pairs (newer).
    return [tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1)) for m in merges]


def _id_to_token(spec: dict[str, Any]) -> tuple[dict[int, str], dict[int, dict[str, Any]]]:
    """Every token of a tokenizer.json by id, and the added-token entries by id."""
    model = spec["model"]
    if model.get("type") != "BPE":
        raise VocabError(
            f"tokenizer model {model.get('type')!r} is not supported: GGUF export handles BPE "
            "tokenizers (Gemma's SentencePiece-style BPE, Qwen2's byte-level BPE)"
        )
    id_to_token = {i: t for t, i in model["vocab"].items()}
    added = {entry["id"]: entry for entry in spec.get("added_tokens", [])}
    for token_id, entry in added.items():
        id_to_token[token_id] = entry["content"]
    return id_to_token, added


def _nodes(node: Any, type_name: str) -> list[dict[str, Any]]:
    """Every component of a (nested) normalizer or pre-tokenizer spec of the given type."""
    if isinstance(node, list):
        return [found for child in node for found in _nodes(child, type_name)]
    if not isinstance(node, dict):
        return []
    found = [node] if node.get("type") == type_name else []
    for value in node.values():
        if isinstance(value, list | dict):
            found += _nodes(value, type_name)
    return found


def _is_byte_level(spec: dict[str, Any]) -> bool:
    return bool(_nodes(spec.get("pre_tokenizer"), "ByteLevel"))


def _split_regexes(spec: dict[str, Any]) -> list[str]:
    splits = _nodes(spec.get("pre_tokenizer"), "Split")
    return [s["pattern"]["Regex"] for s in splits if "Regex" in (s.get("pattern") or {})]


def _gpt2_pre(spec: dict[str, Any], source: str) -> str:
    regexes = _split_regexes(spec)
    names = {_PRE_BY_REGEX.get(r) for r in regexes}
    if len(regexes) != 1 or None in names:
        raise VocabError(
            f"{source}: the byte-level pre-tokenizer splits text with {regexes or 'no regex'}; "
            "llama.cpp would split it differently. Supported: Qwen2's regex (tokenizer.ggml.pre "
            "'qwen2')"
        )
    return names.pop()


def _sentencepiece_scores(model: dict[str, Any], id_to_token: dict[int, str]) -> dict[str, float]:
    """Score per merged token: minus the rank of the first merge producing it."""
    scores: dict[str, float] = {}
    prefix = model.get("continuing_subword_prefix") or ""
    for rank, (left, right) in enumerate(_merge_pairs(model["merges"])):
        if prefix and right.startswith(prefix):
            right = right[len(prefix) :]
        scores.setdefault(left + right, -float(rank))
    # A token no merge produces can't come out of Hugging Face's BPE; llama.cpp merges any pair
    # whose concatenation is a token, so such tokens go last.
    floor = -float(len(model["merges"]))
    return {t: scores.get(t, floor if len(t) > 1 else 0.0) for t in id_to_token.values()}


def _space_prefix(spec: dict[str, Any]) -> bool:
    """Whether the tokenizer prepends ``▁`` to the text (Llama 2 does, Gemma 3 does not)."""
    if any(n.get("prepend") == "▁" for n in _nodes(spec.get("normalizer"), "Prepend")):
        return True
    metaspaces = _nodes(spec.get("pre_tokenizer"), "Metaspace")
    return any(m.get("prepend_scheme", "always") != "never" for m in metaspaces)


def read_vocab(model_dir: str | Path, vocab_size: int) -> GGUFVocab:
    """Reads a model directory's tokenizer as a GGUF vocabulary of ``vocab_size`` tokens.

    Args:
        model_dir: A directory with ``tokenizer.json`` (and ``tokenizer_config.json``), e.g. a
            student from ``codistill student derive``.
        vocab_size: Rows of the model's embedding matrix; the vocabulary is padded to it.

    Returns:
        The vocabulary, in the format its tokenizer needs (``llama`` or ``gpt2``).

    Raises:
        VocabError: No ``tokenizer.json``, a tokenizer llama.cpp cannot reproduce, or more
            tokens than embedding rows. The message names the file and the reason.
    """
    model_dir = Path(model_dir)
    path = model_dir / "tokenizer.json"
    spec, id_to_token, added = _read_spec(path, vocab_size)
    byte_level = _is_byte_level(spec)
    model = spec["model"]
    if not byte_level and not model.get("byte_fallback"):
        raise VocabError(
            f"{path}: a BPE without byte fallback or byte-level encoding; llama.cpp's tokenizers "
            "could not encode every text as this one does"
        )
    tokens, types, scores = _token_table(model, id_to_token, added, vocab_size, byte_level)
    common = {"tokens": tokens, "types": types, **_runtime_settings(model_dir)}
    if byte_level:
        merges = [f"{left} {right}" for left, right in _merge_pairs(model["merges"])]
        return GGUFVocab(model="gpt2", pre=_gpt2_pre(spec, str(path)), merges=merges, **common)
    return GGUFVocab(
        model="llama",
        pre="default",
        scores=scores,
        add_space_prefix=_space_prefix(spec),
        **common,
    )


def _read_spec(
    path: Path, vocab_size: int
) -> tuple[dict[str, Any], dict[int, str], dict[int, dict[str, Any]]]:
    """``tokenizer.json`` parsed, with its tokens and added tokens by id (see :func:`_id_to_token`).

    Raises:
        VocabError: the file is missing, not a BPE, or has a token id past ``vocab_size``.
    """
    if not path.is_file():
        raise VocabError(f"{path}: missing; GGUF export needs the model's fast tokenizer file")
    spec = json.loads(path.read_text(encoding="utf-8"))
    id_to_token, added = _id_to_token(spec)
    if max(id_to_token) >= vocab_size:
        raise VocabError(
            f"{path}: token id {max(id_to_token)} has no embedding row "
            f"(the model's vocab_size is {vocab_size})"
        )
    return spec, id_to_token, added


def _token_table(
    model: dict[str, Any],
    id_to_token: dict[int, str],
    added: dict[int, dict[str, Any]],
    vocab_size: int,
    byte_level: bool,
) -> tuple[list[str], list[int], list[float]]:
    """``(tokens, types, scores)``, one per embedding row (scores are used by ``llama`` only)."""
    scores = None if byte_level else _sentencepiece_scores(model, id_to_token)
    tokens, types, score_list = [], [], []
    for token_id in range(vocab_size):
        token, kind, score = _token_entry(token_id, id_to_token, added, model, scores, byte_level)
        tokens.append(token)
        types.append(int(kind))
        score_list.append(score)
    return tokens, types, score_list


def _token_entry(
    token_id: int,
    id_to_token: dict[int, str],
    added: dict[int, dict[str, Any]],
    model: dict[str, Any],
    scores: dict[str, float] | None,
    byte_level: bool,
) -> tuple[str, TokenType, float]:
    """One row's ``(token text, type, score)`` as llama.cpp's converter writes it."""
    token = id_to_token.get(token_id)
    if token is None:
        return f"[PAD{token_id}]", TokenType.UNUSED, _SCORE_UNUSED
    if token_id in added:
        kind = TokenType.CONTROL if added[token_id]["special"] else TokenType.USER_DEFINED
        if kind == TokenType.USER_DEFINED and not byte_level:
            # llama.cpp matches user-defined tokens in the raw text, before ▁ replaces spaces.
            token = token.replace("▁", " ")
        return token, kind, _SCORE_ADDED
    if not byte_level and _BYTE_TOKEN.fullmatch(token):
        return token, TokenType.BYTE, 0.0
    if not byte_level and token == model.get("unk_token"):
        return token, TokenType.UNKNOWN, 0.0
    return token, TokenType.NORMAL, scores[token] if scores is not None else 0.0


def _runtime_settings(model_dir: Path) -> dict[str, Any]:
    """``special_ids``, ``add_bos``, ``add_eos`` and ``chat_template`` of the loaded tokenizer;
    whether it adds BOS or EOS is read off how it encodes a probe text."""
    # lazy: transformers takes seconds to import, and export_gguf (which imports this module)
    # is imported by the CLI's parser; both keep it out until a vocabulary is read.
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    special_ids = {}
    for name in ("bos", "eos", "unk", "pad"):
        token_id = getattr(tokenizer, f"{name}_token_id", None)
        if token_id is not None:
            special_ids[name] = int(token_id)
    probe = tokenizer("a")["input_ids"]
    template = getattr(tokenizer, "chat_template", None)
    return {
        "special_ids": special_ids,
        "add_bos": "bos" in special_ids and bool(probe) and probe[0] == special_ids["bos"],
        "add_eos": "eos" in special_ids and len(probe) > 1 and probe[-1] == special_ids["eos"],
        "chat_template": template if isinstance(template, str) else None,
    }
