"""Teacher generations: the teacher's outputs for every record of a data set, kept on disk.

Sequence-level KD (Kim & Rush 2016) trains the student on what the teacher writes instead of on
the references. ``codistill teacher generate`` writes those outputs once; ``codistill distill
targets=teacher:G`` reads them. This module holds both sides of that contract and the generation
run itself.

The format: ``G/generations.jsonl``, one JSON object per line. Line 1 is the header::

    {"codistill_generations": 1, "task": "assertion"|"codegen",
     "teacher": {"spec", "name", "weights_sha256", "url", "model"},
     "backend": "transformers"|"llamacpp"|"llamacpp-batch"|"openai",
     "decoding": {"n", "temperature", "top_p", "max_new_tokens", "seed"},
     "prompt": {"mode": "raw"|"chat", "style": <assertion prompt style or null>,
                "max_source_tokens"},
     "created": <ISO time>}

every further line one record's outputs::

    {"key": <generation_key(record)>, "id": <record id>, "outputs": [str, ...],
     "verdicts": [<sandbox status>, ...] or null}

``outputs`` are already completions of the task's raw prompt (for code generation through
:func:`codistill.data.prompts.completion_from_output`, for assertions the first non-blank line);
``verdicts`` are the sandbox statuses of ``prompt + output + tests`` (``passed``, ``failed``,
``timed_out``, ``memory_exceeded``, ``crashed``, ``unavailable``), null for records without tests.

Entries are keyed by content (:func:`generation_key`), never by position, so an edited record gets
a new key and a reordered data file reuses every output. The file is written append-only in
chunks, each flushed and fsynced: an interrupted run resumes by skipping the keys present; a torn
last line (a crash mid-write) is ignored by the reader and cut off before the writer appends. A
run whose teacher, backend, decoding or prompt settings differ from the file's header is refused,
naming each field that differs (as :class:`codistill.teacher.cache_format.CacheMismatch` does).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from codistill.config.evaluate import EvalConfig
from codistill.data.jsonl import write_text_atomic
from codistill.data.prompts import (
    TRUNCATIONS,
    assertion_prompt,
    chat_template_adds_bos,
    check_prompt_mode,
    codegen_instruction,
    completion_from_output,
    cut_prompt,
    is_whole_program,
    render_prompt,
)
from codistill.data.schema import AssertionRecord, CodegenRecord
from codistill.evaluation.backends import OpenAIServerBackend, generate_first_lines, make_backend
from codistill.evaluation.codegen import score_completions, stop_sequences, truncate_completion
from codistill.files import sha256_file

# torch and transformers (through models.loading, evaluation.generate, teacher.cache) are imported
# only inside the functions that run or hash a teacher: the file format (keys, reader, writer)
# then imports in 0.2 s instead of ~5 s, as does a server run with nothing left to generate.

FORMAT_KEY = "codistill_generations"
FORMAT_VERSION = 1
FILENAME = "generations.jsonl"
TASKS = ("assertion", "codegen")
BACKENDS = ("transformers", "llamacpp", "llamacpp-batch", "openai")
# What makes two runs' outputs interchangeable. The teacher's ``spec`` and ``name`` are how the
# user named it (a path, ``embedded``): the same weights under another name are the same teacher.
COMPARED_FIELDS = (
    "task",
    "teacher.weights_sha256",
    "teacher.url",
    "teacher.model",
    "backend",
    "decoding.n",
    "decoding.temperature",
    "decoding.top_p",
    "decoding.max_new_tokens",
    "decoding.seed",
    "prompt.mode",
    "prompt.style",
    "prompt.max_source_tokens",
    "prompt.truncation",
)


class GenerationsError(ValueError):
    """A generations file that cannot be read (the message names the file and line)."""


class GenerationsMismatch(GenerationsError):
    """The file was made by another teacher or with other settings; ``fields`` names them."""

    def __init__(self, where: str, differences: dict[str, tuple[object, object]]):
        self.fields = list(differences)
        detail = "; ".join(
            f"{f}: file has {a!r}, requested {b!r}" for f, (a, b) in differences.items()
        )
        super().__init__(f"{where}: teacher generations do not match ({detail})")


class TeacherBackendError(RuntimeError):
    """A server backend could not start or answer (named, with the cause)."""


# --- keys and headers ---------------------------------------------------------------------------


def generation_key(record: AssertionRecord | CodegenRecord, prompt_style: str = "prefix") -> str:
    """Content key of a record's input: sha256 hex of the JSON of what the teacher is given.

    For an assertion record, the prompt text :func:`codistill.data.prompts.assertion_prompt`
    builds in ``prompt_style``; for a code-generation record, its ``prompt``, ``entry_point`` and
    ``tests`` (the tests decide the verdicts). Ids, splits and references are not part of it.

    Raises:
        TypeError: ``record`` is neither an assertion nor a code-generation record.
    """
    if isinstance(record, AssertionRecord):
        # The exact text the trainer builds (one function for both), so the keys agree.
        content: dict[str, str] = {"assertion": assertion_prompt(record, prompt_style)}
    elif isinstance(record, CodegenRecord):
        content = {
            "prompt": record.prompt,
            "entry_point": record.entry_point,
            "tests": record.tests,
        }
    else:
        raise TypeError(f"teacher generations cover assertion and codegen records, not {record!r}")
    blob = json.dumps(content, sort_keys=True, ensure_ascii=False).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()


def make_header(
    *,
    task: str,
    teacher: dict[str, Any],
    backend: str,
    decoding: dict[str, Any],
    prompt: dict[str, Any],
    created: str | None = None,
) -> dict[str, Any]:
    """The header line of a generations file, with every field of the format present.

    Args:
        task: ``assertion`` or ``codegen``.
        teacher: ``spec``, ``name``, ``weights_sha256``, ``url``, ``model`` (missing ones null).
        backend: ``transformers``, ``llamacpp``, ``llamacpp-batch`` or ``openai``.
        decoding: ``n``, ``temperature``, ``top_p``, ``max_new_tokens``, ``seed``.
        prompt: ``mode``, ``style``, ``max_source_tokens``, ``truncation`` (default left).
        created: ISO time; now (UTC) when None.

    Raises:
        ValueError: an unknown task or backend.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    who = ("spec", "name", "weights_sha256", "url", "model")
    return {
        FORMAT_KEY: FORMAT_VERSION,
        "task": task,
        "teacher": {k: teacher.get(k) for k in who},
        "backend": backend,
        "decoding": {
            "n": int(decoding["n"]),
            "temperature": float(decoding["temperature"]),
            "top_p": float(decoding["top_p"]),
            "max_new_tokens": int(decoding["max_new_tokens"]),
            "seed": int(decoding["seed"]),
        },
        "prompt": {
            "mode": prompt["mode"],
            "style": prompt.get("style"),
            "max_source_tokens": int(prompt["max_source_tokens"]),
            "truncation": prompt.get("truncation", "left"),
        },
        "created": created or datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _get(header: dict, dotted: str) -> Any:
    value: Any = header
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if value is None and dotted == "prompt.truncation":
        return "left"  # files written before prompts could be cut in the middle
    return value


def header_differences(
    found: dict, requested: dict, fields: Sequence[str] = COMPARED_FIELDS
) -> dict[str, tuple[Any, Any]]:
    """``{field: (found, requested)}`` for each dotted field (``decoding.n``) that differs."""
    out = {}
    for name in fields:
        a, b = _get(found, name), _get(requested, name)
        if a != b:
            out[name] = (a, b)
    return out


def check_header(
    found: dict, requested: dict, where: str, fields: Sequence[str] = COMPARED_FIELDS
) -> None:
    """Refuses a file whose header differs from the requested one in any of ``fields``.

    Raises:
        GenerationsMismatch: naming every differing field with both values.
    """
    differences = header_differences(found, requested, fields)
    if differences:
        raise GenerationsMismatch(where, differences)


# --- reading ------------------------------------------------------------------------------------


def generations_path(path: str | os.PathLike[str]) -> Path:
    """``G/generations.jsonl`` for a directory ``G``; a path to the file itself is kept."""
    path = Path(path)
    return path if path.suffix == ".jsonl" and not path.is_dir() else path / FILENAME


def _check_header_line(obj: Any, where: str) -> dict:
    if not isinstance(obj, dict) or FORMAT_KEY not in obj:
        raise GenerationsError(f"{where}: not a teacher-generations header (no {FORMAT_KEY!r})")
    if obj[FORMAT_KEY] != FORMAT_VERSION:
        raise GenerationsError(
            f"{where}: format version {obj[FORMAT_KEY]!r}; this codistill reads {FORMAT_VERSION}"
        )
    for name in ("task", "teacher", "backend", "decoding", "prompt"):
        if name not in obj:
            raise GenerationsError(f"{where}: header has no field {name!r}")
    return obj


def _check_entry(obj: Any, where: str) -> dict:
    if not isinstance(obj, dict):
        raise GenerationsError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    key, outputs, verdicts = obj.get("key"), obj.get("outputs"), obj.get("verdicts", None)
    if not isinstance(key, str) or len(key) != 64:
        raise GenerationsError(f"{where}: field key must be a sha256 hex string, got {key!r}")
    if not isinstance(outputs, list) or not all(isinstance(o, str) for o in outputs):
        raise GenerationsError(f"{where}: field outputs must be a list of strings")
    if verdicts is not None and (
        not isinstance(verdicts, list)
        or len(verdicts) != len(outputs)
        or not all(isinstance(v, str) for v in verdicts)
    ):
        raise GenerationsError(
            f"{where}: field verdicts must be null or one string per output "
            f"({len(outputs)} outputs)"
        )
    return obj


def _scan(path: Path) -> tuple[dict, dict[str, dict], int]:
    """Header, entries by key, and the byte offset where the complete lines end."""
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1  # a last line without its newline is torn: ignored
    header: dict | None = None
    entries: dict[str, dict] = {}
    for lineno, raw in enumerate(data[:end].split(b"\n")[:-1], 1):
        where = f"{path}:{lineno}"
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise GenerationsError(f"{where}: not valid JSON ({exc.msg})") from None
        if header is None:
            header = _check_header_line(obj, where)
            continue
        entry = _check_entry(obj, where)
        entries[entry["key"]] = entry
    if header is None:
        raise GenerationsError(f"{path}: empty, or its header line is incomplete")
    return header, entries, end


def read_generations(path: str | os.PathLike[str]) -> tuple[dict, dict[str, dict]]:
    """Reads a generations directory (or its ``generations.jsonl``).

    Returns:
        ``(header, entries)``: the header dict, and every record line by its ``key`` (a later
        line with the same key wins).

    Raises:
        FileNotFoundError: there is no generations file there.
        GenerationsError: a bad header or line, naming ``FILE:LINE`` and the field.
    """
    file = generations_path(path)
    if not file.is_file():
        raise FileNotFoundError(f"{file}: no teacher generations (run codistill teacher generate)")
    header, entries, _ = _scan(file)
    return header, entries


# --- writing ------------------------------------------------------------------------------------


class GenerationsWriter:
    """Appends record lines to a generations file, creating it or resuming it.

    Opening an existing file checks its header against ``header`` (refusing a mismatch), cuts
    off a torn last line, and exposes the keys already present as :attr:`present`.
    """

    def __init__(self, out: str | os.PathLike[str], header: dict):
        """Creates ``out/generations.jsonl`` with ``header`` (atomically), or resumes it.

        Raises:
            GenerationsMismatch: the existing file's header differs from ``header``.
            GenerationsError: the existing file is not a readable generations file.
        """
        self.path = generations_path(out)
        self.resumed = self.path.is_file()
        if self.resumed:
            self.header, self.entries, end = _scan(self.path)
            check_header(self.header, header, str(self.path))
            if end < self.path.stat().st_size:
                with open(self.path, "r+b") as fh:
                    fh.truncate(end)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(self.path, json.dumps(header, ensure_ascii=False) + "\n")
            self.header, self.entries = header, {}

    @property
    def present(self) -> set[str]:
        """Keys with outputs in the file."""
        return set(self.entries)

    def append(self, entries: Sequence[dict]) -> None:
        """Appends one chunk of record lines, then flushes and fsyncs it.

        Raises:
            GenerationsError: an entry does not have the format's fields.
        """
        lines = []
        for entry in entries:
            _check_entry(entry, f"{self.path}: entry for {entry.get('id')!r}")
            lines.append(json.dumps(entry, ensure_ascii=False) + "\n")
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write("".join(lines))
            fh.flush()
            os.fsync(fh.fileno())
        self.entries.update((e["key"], e) for e in entries)


def make_entry(
    key: str, record_id: str, outputs: list[str], verdicts: list[str] | None
) -> dict[str, Any]:
    """One record line of the format."""
    return {"key": key, "id": record_id, "outputs": list(outputs), "verdicts": verdicts}


# --- the generation run -------------------------------------------------------------------------


@dataclass(frozen=True)
class GenerateSettings:
    """How the teacher is asked (everything but the teacher itself).

    Attributes:
        task: ``assertion`` or ``codegen``.
        backend: ``transformers`` (in-process), ``llamacpp:FILE.gguf`` (llama.cpp's server),
            ``llamacpp-batch:FILE.gguf`` (llama.cpp in-process, several answers per decode
            step) or ``openai:URL``.
        n, temperature, top_p, max_new_tokens, seed: decoding; greedy when ``temperature`` is 0.
        prompt_mode: ``raw`` (the task prompt as text to continue) or ``chat`` (through the
            model's chat template; code generation only).
        prompt_style: assertion prompt style (``prefix``/``placeholder``); None for codegen.
        max_source_tokens: prompts are cut to this many tokens (BOS kept), by ``truncation``
            (``left`` or ``middle``, as :func:`codistill.data.prompts.cut_prompt`).
        batch_size: prompts per in-process ``generate`` call.
        chunk: records generated (and verified) between two appends to the file.
        timeout_s, workers: the sandbox's wall-clock limit per program and its workers.
        server_model: the model name sent to an OpenAI server (None: its first listed model).
        concurrency: requests in flight to a server.
        n_threads: llama.cpp decoding threads.
    """

    task: str = "assertion"
    backend: str = "transformers"
    n: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 64
    seed: int = 0
    prompt_mode: str = "raw"
    prompt_style: str | None = "prefix"
    max_source_tokens: int = 256
    truncation: str = "left"
    batch_size: int = 8
    chunk: int = 16
    timeout_s: float = 10.0
    workers: int = 2
    server_model: str | None = None
    concurrency: int = 2
    n_threads: int = 2

    def check(self) -> None:
        """Raises ValueError naming the first setting out of its range."""
        if self.task not in TASKS:
            raise ValueError(f"--task must be one of {', '.join(TASKS)}, got {self.task!r}")
        check_prompt_mode(self.prompt_mode)
        if self.task == "assertion" and self.prompt_mode == "chat":
            raise ValueError(
                "--prompt-mode chat is for code generation; assertion prompts go raw "
                "(the teacher continues the test up to the assertion)"
            )
        for name, value, low in (
            ("--n", self.n, 1),
            ("--max-new-tokens", self.max_new_tokens, 1),
            ("--max-source-tokens", self.max_source_tokens, 8),
            ("--batch-size", self.batch_size, 1),
            ("--workers", self.workers, 1),
        ):
            if value < low:
                raise ValueError(f"{name} must be >= {low}, got {value}")
        if self.truncation not in TRUNCATIONS:
            raise ValueError(
                f"--truncation must be one of {', '.join(TRUNCATIONS)}, got {self.truncation!r}"
            )
        if self.temperature < 0:
            raise ValueError(f"--temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"--top-p must be in (0, 1], got {self.top_p}")
        if self.n > 1 and self.temperature == 0:
            raise ValueError(f"--n {self.n} needs --temperature > 0 (greedy repeats one output)")
        if self.timeout_s <= 0:
            raise ValueError(f"--timeout-s must be > 0, got {self.timeout_s}")

    @property
    def backend_kind(self) -> str:
        return self.backend.partition(":")[0]


@dataclass
class GenerateStats:
    """What a run did: ``computed`` records generated now, ``reused`` found in the file."""

    records: int = 0
    unique: int = 0
    computed: int = 0
    reused: int = 0
    duplicates: int = 0
    prompts_cut: int = 0
    new_tokens: int = 0
    generate_seconds: float = 0.0
    verify_seconds: float = 0.0
    verdicts: Counter = field(default_factory=Counter)


def teacher_identity(
    spec: str,
    teacher_dir: str | Path,
    settings: GenerateSettings,
    name: str | None = None,
    api_key: str | None = None,
) -> dict[str, Any]:
    """The header's ``teacher``: the weights' hash of the HF directory (transformers), the GGUF
    file's sha256 (llamacpp), or the server's URL and model name (openai; asks the server for
    its first model when ``settings.server_model`` is None)."""
    kind, _, target = settings.backend.partition(":")
    who: dict[str, Any] = {"spec": spec, "name": name or Path(teacher_dir).name}
    if kind == "transformers":
        from codistill.teacher.cache import teacher_weights_hash  # lazy: imports torch

        who["weights_sha256"] = teacher_weights_hash(teacher_dir)
    elif kind.startswith("llamacpp"):
        who["weights_sha256"] = sha256_file(target)
        who["name"] = name or Path(target).name
    else:
        who["url"] = target.rstrip("/")
        server = OpenAIServerBackend(target, model=settings.server_model, api_key=api_key)
        try:
            who["model"] = server.model_name()
        except (OSError, RuntimeError) as exc:
            raise TeacherBackendError(f"backend {settings.backend!r}: {exc}") from exc
    return who


def requested_header(
    spec: str,
    teacher_dir: str | Path,
    settings: GenerateSettings,
    name: str | None = None,
    api_key: str | None = None,
) -> dict[str, Any]:
    """The header a run with these settings writes (and requires of an existing file)."""
    return make_header(
        task=settings.task,
        teacher=teacher_identity(spec, teacher_dir, settings, name, api_key),
        backend=settings.backend_kind,
        decoding={
            "n": settings.n,
            "temperature": settings.temperature,
            "top_p": settings.top_p,
            "max_new_tokens": settings.max_new_tokens,
            "seed": settings.seed,
        },
        prompt={
            "mode": settings.prompt_mode,
            "style": settings.prompt_style if settings.task == "assertion" else None,
            "max_source_tokens": settings.max_source_tokens,
            "truncation": settings.truncation,
        },
    )


class _Prompter:
    """Task records -> what the teacher is given: token ids (in-process) or text (a server)."""

    def __init__(self, tokenizer, settings: GenerateSettings):
        self.tok, self.s = tokenizer, settings
        self.chat = settings.prompt_mode == "chat"
        self.add_special = not (self.chat and chat_template_adds_bos(tokenizer))

    def text(self, record) -> str:
        if isinstance(record, AssertionRecord):
            return assertion_prompt(record, self.s.prompt_style or "prefix")
        instruction = codegen_instruction(record.language)
        return render_prompt(self.tok, record.prompt, self.s.prompt_mode, instruction)

    def ids(self, text: str) -> tuple[list[int], bool]:
        """The ids cut as ``encode_prompts`` cuts them (BOS kept), and whether they were cut."""
        ids = self.tok(text, add_special_tokens=self.add_special)["input_ids"]
        limit = self.s.max_source_tokens
        if len(ids) <= limit:
            return ids, False
        return cut_prompt(ids, limit, self.s.truncation, self.tok.bos_token_id), True

    def server_text(self, text: str) -> tuple[str, bool]:
        """The text a server gets: unchanged when it fits (the server adds its own BOS), else
        the kept ids decoded (special tokens kept in chat mode: they are the template)."""
        ids, cut = self.ids(text)
        if not cut:
            return text, False
        bos = self.tok.bos_token_id
        if ids and bos is not None and ids[0] == bos:
            ids = ids[1:]
        return self.tok.decode(ids, skip_special_tokens=not self.chat), True


def _postprocess(record, text: str, mode: str) -> str:
    """A generated text as an output of the format: a completion of the raw task prompt."""
    from codistill.evaluation.generate import first_line  # lazy: imports torch

    if isinstance(record, AssertionRecord):
        return first_line(text)
    if mode == "raw":  # a raw continuation runs on past the function (Chen et al.'s stops)
        text = truncate_completion(text, is_whole_program(record), record.language)
    return completion_from_output(text, record.prompt, mode, record.entry_point, record.language)


def _verify(
    records: list[CodegenRecord], outputs: list[list[str]], settings, data_path: str | None
) -> list:
    """Sandbox verdict per output (base tests, then HumanEval+'s plus tests); None per record
    without tests. ``data_path`` (it holds the reference solutions) is hidden from the programs."""
    tested = [i for i, r in enumerate(records) if (r.tests or "").strip()]
    verdicts: list[list[str] | None] = [None] * len(records)
    if not tested:
        return verdicts
    cfg = EvalConfig(
        data=str(data_path or ""),
        task="codegen",
        pass_k=[1],
        timeout_s=settings.timeout_s,
        workers=settings.workers,
    )
    _, rows = score_completions([records[i] for i in tested], [outputs[i] for i in tested], cfg)
    it = iter(rows)
    for i in tested:
        verdicts[i] = [_verdict(next(it)) for _ in outputs[i]]
    return verdicts


def _verdict(row: dict) -> str:
    if not row["passed"]:
        return row["status"]
    if row.get("plus_status") is not None and not row.get("passed_plus"):
        return row["plus_status"]
    return "passed"


class _Teacher:
    """The teacher behind one interface: ``__call__(records) -> (texts per record, tokens)``.

    In-process it runs :func:`codistill.evaluation.generate.generate` on the checkpoint; with a
    server spec it goes through :func:`codistill.evaluation.backends.make_backend`. Either starts
    on first use, so a run with nothing to compute loads nothing.
    """

    def __init__(self, teacher_dir, settings: GenerateSettings, api_key: str | None, stats):
        from codistill.models.loading import load_tokenizer  # lazy: imports torch, transformers

        self.dir, self.s, self.api_key, self.stats = teacher_dir, settings, api_key, stats
        self.tokenizer = load_tokenizer(teacher_dir)
        self.prompter = _Prompter(self.tokenizer, settings)
        self.model = self.backend = None

    def __call__(self, records: list) -> tuple[list[list[str]], int]:
        texts = [self.prompter.text(r) for r in records]
        if self.s.backend_kind == "transformers":
            return self._in_process(texts)
        kinds = [
            (r.language, is_whole_program(r)) if isinstance(r, CodegenRecord) else ("", False)
            for r in records
        ]
        grouped: list[list[str]] = [[] for _ in records]
        tokens = 0
        for kind in sorted(set(kinds)):  # whole programs (MBPP), other languages: own stops
            rows = [i for i, k in enumerate(kinds) if k == kind]
            done, used = self._server([texts[i] for i in rows], kind)
            tokens += used
            for i, outputs in zip(rows, done, strict=True):
                grouped[i] = outputs
        return grouped, tokens

    def _in_process(self, texts: list[str]) -> tuple[list[list[str]], int]:
        # lazy: torch and transformers, for the in-process teacher only
        import torch

        from codistill.evaluation.generate import generate
        from codistill.models.loading import is_encoder_decoder, load_model

        if self.model is None:
            self.model = load_model(self.dir)
            torch.manual_seed(self.s.seed)
        cut = [self.prompter.ids(t) for t in texts]
        self.stats.prompts_cut += sum(c for _, c in cut)
        sample = self.s.temperature > 0
        with torch.inference_mode():
            out = generate(
                self.model,
                self.tokenizer,
                [ids for ids, _ in cut],
                max_new_tokens=self.s.max_new_tokens,
                batch_size=self.s.batch_size,
                one_line=self.s.task == "assertion",
                encoder_decoder=is_encoder_decoder(self.model),
                do_sample=sample,
                temperature=self.s.temperature if sample else 1.0,
                top_p=self.s.top_p,
                num_return_sequences=self.s.n,
            )
        n = self.s.n
        return [out.texts[i * n : (i + 1) * n] for i in range(len(texts))], out.new_tokens

    def _server(self, texts: list[str], kind: tuple[str, bool]) -> tuple[list[list[str]], int]:
        language, programs = kind
        prompts = [self.prompter.server_text(t) for t in texts]
        self.stats.prompts_cut += sum(c for _, c in prompts)
        # Raw code completions stop where eval cuts them anyway; greedy assertions stop at their
        # first non-blank line, sampled ones are cut to it afterwards (a plain "\n" stop would
        # end on a leading blank line).
        code = self.s.task == "codegen" and not self.prompter.chat
        stop = list(stop_sequences(programs, language)) if code else None
        try:
            if self.backend is None:
                self.backend = self._start_server()
            if self.s.task == "assertion" and self.s.n == 1 and self.s.temperature == 0:
                done = generate_first_lines(  # stop at the line instead of decoding past it
                    self.backend, [p for p, _ in prompts], max_new_tokens=self.s.max_new_tokens
                )
            else:
                done = self.backend.generate(
                    [p for p, _ in prompts],
                    max_new_tokens=self.s.max_new_tokens,
                    temperature=self.s.temperature,
                    top_p=self.s.top_p,
                    n=self.s.n,
                    stop=stop,
                )
        except (ImportError, OSError, RuntimeError) as exc:  # TimeoutError is an OSError
            raise TeacherBackendError(f"backend {self.s.backend!r}: {exc}") from exc
        n = self.s.n
        grouped = [[c.text for c in done[i * n : (i + 1) * n]] for i in range(len(texts))]
        return grouped, sum(c.tokens for c in done)

    def _start_server(self):
        kwargs: dict[str, Any] = {"concurrency": self.s.concurrency}
        if self.s.backend_kind.startswith("llamacpp"):
            # Room for the prompt as llama.cpp tokenizes it (it may split a little differently
            # from the HF tokenizer that cut it) and the completion.
            kwargs["n_ctx"] = int(1.25 * self.s.max_source_tokens) + self.s.max_new_tokens + 64
            kwargs["n_threads"] = self.s.n_threads
            if self.s.backend_kind == "llamacpp-batch":  # in-process: seeds its sampled answers
                kwargs["seed"] = self.s.seed
        else:
            kwargs.update(model=self.s.server_model, api_key=self.api_key)
        return make_backend(self.s.backend, **kwargs)

    def close(self) -> None:
        if self.backend is not None:
            self.backend.close()
            self.backend = None
        self.model = None


def generate_teacher_outputs(
    spec: str,
    teacher_dir: str | Path,
    records: Sequence[AssertionRecord | CodegenRecord],
    out: str | os.PathLike[str],
    settings: GenerateSettings,
    *,
    name: str | None = None,
    api_key: str | None = None,
    data_path: str | os.PathLike[str] | None = None,
    log: Callable[[str], None] = print,
) -> GenerateStats:
    """Writes (or completes) the teacher's outputs for ``records`` into ``out``.

    Records whose key is already in the file are reused; duplicates (same key) are generated
    once. Each chunk of ``settings.chunk`` records is generated, verified in the sandbox (code
    generation with tests) and appended before the next starts, so an interrupted run keeps its
    work. Greedy decoding is deterministic; sampled outputs are seeded once per run in-process
    (they depend on how records fall into batches) and not seeded through a server.

    Args:
        spec: the teacher as the user named it (recorded in the header).
        teacher_dir: its HF directory: the model in-process, the tokenizer for a server backend
            (chat template, prompt cutting).
        records: assertion or codegen records (one task).
        out: the generations directory.
        settings: decoding, prompt and backend settings.
        name: the teacher's name for the header (default: the directory's or GGUF's name).
        api_key: bearer token for an OpenAI server (never written anywhere).
        data_path: the file ``records`` came from, hidden from the programs in the sandbox
            (a benchmark file holds the reference solutions).
        log: progress lines.

    Raises:
        GenerationsMismatch: ``out`` holds outputs made with another teacher or settings.
        ValueError: a setting out of range.
    """
    settings.check()
    stats = GenerateStats(records=len(records))
    header = requested_header(spec, teacher_dir, settings, name, api_key)
    if settings.backend_kind == "openai":  # the model the header names is the one asked
        settings = replace(settings, server_model=header["teacher"]["model"])
    writer = GenerationsWriter(out, header)
    keys = [generation_key(r, settings.prompt_style or "prefix") for r in records]
    pending = _pending(keys, records, writer, stats)
    log(
        f"{len(records)} records ({stats.unique} distinct): {len(pending)} to generate, "
        f"{stats.reused} already in {writer.path}"
    )
    teacher = _Teacher(teacher_dir, settings, api_key, stats) if pending else None
    try:
        for start in range(0, len(pending), settings.chunk):
            part = pending[start : start + settings.chunk]
            entries, tokens, gen_s, verify_s = _generate_chunk(teacher, part, settings, data_path)
            writer.append(entries)
            log(_count_chunk(stats, len(part), len(pending), tokens, gen_s, verify_s))
    finally:
        if teacher is not None:
            teacher.close()
    for key in set(keys):
        stats.verdicts.update(writer.entries[key].get("verdicts") or [])
    return stats


def _pending(
    keys: Sequence[str], records: Sequence, writer: GenerationsWriter, stats: GenerateStats
) -> list[tuple[str, Any]]:
    """``(key, record)`` of the records the file lacks, one per key, in data order.

    Counts into ``stats`` the distinct keys, the duplicates and the keys already in the file.
    """
    todo: dict[str, Any] = {}
    for key, record in zip(keys, records, strict=True):
        if key not in writer.entries:
            todo.setdefault(key, record)
    stats.unique = len(set(keys))
    stats.duplicates = len(keys) - stats.unique
    stats.reused = len(set(keys) & writer.present)
    return list(todo.items())


def _count_chunk(
    stats: GenerateStats, records: int, total: int, tokens: int, gen_s: float, verify_s: float
) -> str:
    """Counts one appended chunk into ``stats``; returns its progress line."""
    stats.computed += records
    stats.new_tokens += tokens
    stats.generate_seconds += gen_s
    stats.verify_seconds += verify_s
    rate = stats.new_tokens / max(stats.generate_seconds, 1e-9)
    return (
        f"  {stats.computed}/{total} generated ({tokens} tokens in "
        f"{gen_s:.1f} s, {rate:.1f} tok/s overall; verified in {verify_s:.1f} s)"
    )


def _generate_chunk(
    teacher: _Teacher,
    part: Sequence[tuple[str, Any]],
    settings: GenerateSettings,
    data_path: str | os.PathLike[str] | None,
) -> tuple[list[dict[str, Any]], int, float, float]:
    """One chunk's record lines: generated, shaped into outputs, verified (code generation).

    Returns:
        ``(entries, new tokens, generation seconds, verification seconds)``.
    """
    records = [r for _, r in part]
    t0 = time.perf_counter()
    texts, tokens = teacher(records)
    t1 = time.perf_counter()
    outputs = [
        [_postprocess(r, t, settings.prompt_mode) for t in ts]
        for r, ts in zip(records, texts, strict=True)
    ]
    verdicts: list = [None] * len(part)
    if settings.task == "codegen":
        verdicts = _verify(records, outputs, settings, data_path)
    t2 = time.perf_counter()
    entries = [
        make_entry(k, r.id, o, v) for (k, r), o, v in zip(part, outputs, verdicts, strict=True)
    ]
    return entries, tokens, t1 - t0, t2 - t1
