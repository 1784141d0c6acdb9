"""Record schemas for the tasks codistill trains and evaluates on.

One frozen dataclass per task. Each validates itself on construction (types, allowed values and
the invariants between fields), so a record that exists is a record that is well formed, and
``from_dict`` turns a JSON object into a record or raises a `RecordError` that names the file,
line and field. Each task has a dataclass here and an entry in `TASKS`; the JSONL loader finds
them through that registry. Fields with a default (``split``, ``extra``, ...) may be left out of
a JSON object; every other field must be present, and unknown fields are rejected.

Tasks and their JSONL schemas (one JSON object per line, fields as in each class):

* ``assertion`` (`AssertionRecord`), after Methods2Test / ATLAS: a focal method (the method under
  test), a test method with one assertion replaced by `PLACEHOLDER`, and that assertion as the
  target.
* ``codegen`` (`CodegenRecord`), HumanEval / HumanEval+ / MBPP: a prompt, the function to write,
  a test program and optionally a reference solution.
* ``clone`` (`CloneRecord`), BigCloneBench: two code fragments and whether they are clones.
* ``defect`` (`DefectRecord`), Devign: one function and whether it is vulnerable.
"""

import dataclasses
import functools
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol, Self

PLACEHOLDER = "<AssertPlaceHolder>"

Language = Literal["python", "java"]
# Languages of the classification data sets (BigCloneBench is Java, Devign is C). Kept separate
# from `Language` so the assertion schema does not start accepting languages it has no miner for.
ClassifierLanguage = Literal["python", "java", "c", "cpp"]
# Languages a code-generation question's tests can be written in: the sandbox's languages.
CodegenLanguage = Literal["python", "javascript", "c", "cpp", "java"]
Label = Literal[0, 1]
Split = Literal["train", "valid", "test"]
# How the focal method was found. "module" is reserved for linkers that fall back to the whole
# module under test; the Python miner produces "name", "last_call" or "none".
FocalLink = Literal["name", "module", "last_call", "none"]


class RecordError(ValueError):
    """A record is malformed: bad JSON, a missing or mistyped field, or a broken invariant.

    Attributes:
        where: Where the record came from, ``FILE:LINE`` for records read from a file.
        reason: What is wrong, without the location.
        cause: A short grouping key for reports: ``"field 'target'"``, ``"invalid JSON"``, ...
    """

    def __init__(self, reason: str, *, where: str = "", cause: str | None = None) -> None:
        self.where = where
        self.reason = reason
        self.cause = cause or reason
        super().__init__(f"{where}: {reason}" if where else reason)

    def located(self, where: str) -> "RecordError":
        """Return the same error, placed at ``where``."""
        return RecordError(self.reason, where=where, cause=self.cause)


class TaskRecord(Protocol):
    """What the loaders and writers need from a task's record class."""

    id: str
    split: str | None

    def to_dict(self) -> dict[str, Any]:
        """The record as a JSON-ready dict."""
        ...

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "<record>") -> Self:
        """Validate ``d`` and build a record from it."""
        ...


def _is_union(hint: Any) -> bool:
    # `Literal[...] | None` is a typing.Union, `str | None` a types.UnionType.
    return isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union


def _describe(hint: Any) -> str:
    if hint is str:
        return "a string"
    if hint is int:
        return "an integer"
    if hint is type(None):
        return "null"
    if _is_dict(hint):
        return "a JSON object"
    if typing.get_origin(hint) is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    if _is_union(hint):
        return " or ".join(_describe(a) for a in typing.get_args(hint))
    return getattr(hint, "__name__", str(hint))


def _is_dict(hint: Any) -> bool:
    return hint is dict or typing.get_origin(hint) is dict


def _matches(value: Any, hint: Any) -> bool:
    if hint is str:
        return isinstance(value, str)
    if hint is int:
        # bool is an int subclass; a JSON `true` in an integer field is a mistake.
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is type(None):
        return value is None
    if _is_dict(hint):
        return isinstance(value, dict) and all(isinstance(k, str) for k in value)
    if typing.get_origin(hint) is Literal:
        # Type first, so that a JSON `true` does not pass for the label 1.
        return any(_matches(value, type(a)) and value == a for a in typing.get_args(hint))
    if _is_union(hint):
        return any(_matches(value, a) for a in typing.get_args(hint))
    raise TypeError(f"schema uses an unsupported field type {hint!r}")


@functools.cache
def _field_hints(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _check_types(record: Any) -> None:
    for name, hint in _field_hints(type(record)).items():
        value = getattr(record, name)
        if not _matches(value, hint):
            raise RecordError(
                f"field '{name}' expected {_describe(hint)}, got {type(value).__name__} "
                f"{_short_repr(value)}",
                cause=f"field '{name}'",
            )


def _short_repr(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@functools.cache
def _optional_fields(cls: type) -> frozenset[str]:
    """Fields with a default, which a JSON object may leave out."""
    return frozenset(
        f.name
        for f in dataclasses.fields(cls)
        if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
    )


def _require_nonempty(record: Any, *names: str) -> None:
    for name in names:
        if not getattr(record, name).strip():
            raise RecordError(f"field '{name}' must not be empty", cause=f"field '{name}'")


def _from_dict(cls: type, d: Any, where: str) -> Any:
    """Shared body of every record class's ``from_dict``."""
    if not isinstance(d, Mapping):
        raise RecordError(
            f"expected a JSON object, got {type(d).__name__}", where=where, cause="not an object"
        )
    names = list(_field_hints(cls))
    optional = _optional_fields(cls)
    for name in names:
        if name not in d and name not in optional:
            raise RecordError(f"field '{name}' missing", where=where, cause=f"field '{name}'")
    # Unknown keys are rejected rather than ignored: a typo like "taget" would otherwise surface
    # later as a confusing "missing" error, or not at all for optional fields.
    unknown = sorted(set(d) - set(names))
    if unknown:
        raise RecordError(
            f"unexpected field '{unknown[0]}' (known fields: {', '.join(names)})",
            where=where,
            cause="unexpected field",
        )
    try:
        return cls(**{name: d[name] for name in names if name in d})
    except RecordError as err:
        raise err.located(where) from None


@dataclass(frozen=True)
class AssertionRecord:
    """One assertion-generation example (Methods2Test / ATLAS style).

    Attributes:
        id: Stable identifier, unique within a data set.
        language: Source language of the test and focal method.
        repository: Where the code came from (a repository name, ``cpython-3.11.7``, ...).
        focal_path: Path of the file holding the focal method; empty when unlinked.
        focal_name: Qualified name of the focal method (``Counter.update``); empty when unlinked.
        focal_code: Source of the focal method; empty when unlinked.
        test_path: Path of the test file, relative to the repository.
        test_name: Qualified name of the test method (``TestCounter.test_update``).
        test_code: Source of the test method with the target assertion replaced by
            `PLACEHOLDER`, which keeps the assertion's indentation.
        target: The masked assertion's source on one line, stripped.
        assert_line: 1-based line of the assertion in ``test_path``.
        focal_link: How the focal method was found; ``"none"`` when it was not.
        split: The data split, or None before splitting.
    """

    task: ClassVar[str] = "assertion"

    id: str
    language: Language
    repository: str
    focal_path: str
    focal_name: str
    focal_code: str
    test_path: str
    test_name: str
    test_code: str
    target: str
    assert_line: int
    focal_link: FocalLink
    split: Split | None

    def __post_init__(self) -> None:
        _check_types(self)
        for name in ("id", "test_path", "test_name", "target"):
            if not getattr(self, name).strip():
                raise RecordError(f"field '{name}' must not be empty", cause=f"field '{name}'")
        if self.assert_line < 1:
            raise RecordError(
                f"field 'assert_line' expected an integer >= 1, got {self.assert_line}",
                cause="field 'assert_line'",
            )
        count = self.test_code.count(PLACEHOLDER)
        if count != 1:
            raise RecordError(
                f"field 'test_code' must contain {PLACEHOLDER} exactly once, found {count}",
                cause="field 'test_code'",
            )
        self._check_focal()

    def _check_focal(self) -> None:
        focal = {"focal_name": self.focal_name, "focal_code": self.focal_code}
        if self.focal_link == "none":
            filled = [name for name, value in focal.items() if value]
            if filled:
                raise RecordError(
                    f"field '{filled[0]}' must be empty when focal_link is 'none'",
                    cause=f"field '{filled[0]}'",
                )
            return
        for name, value in focal.items():
            if not value.strip():
                raise RecordError(
                    f"field '{name}' must not be empty when focal_link is '{self.focal_link}'",
                    cause=f"field '{name}'",
                )

    def to_dict(self) -> dict[str, Any]:
        """The record as a JSON-ready dict, fields in declaration order."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "<record>") -> "AssertionRecord":
        """Validate ``d`` and build a record from it.

        Args:
            d: A decoded JSON object.
            where: Location used in error messages, ``FILE:LINE`` for file input.

        Raises:
            RecordError: ``"{where}: field 'target' missing"`` and the like, naming the first
                problem found.
        """
        return _from_dict(cls, d, where)

    def prompt_prefix(self) -> str:
        """The test code up to the placeholder: what a left-to-right model continues from.

        It ends with the placeholder line's indentation, so the model writes only the assertion.
        """
        return self.test_code[: self.test_code.index(PLACEHOLDER)]


@dataclass(frozen=True)
class CodegenRecord:
    """One code-generation problem (HumanEval, HumanEval+, MBPP).

    A candidate program is judged by running ``tests`` after it in one namespace: the problem is
    solved when that raises nothing. For HumanEval-style problems the candidate is ``prompt``
    followed by the model's completion; for MBPP-style problems (whose prompt is a description)
    it is the model's whole answer.

    Attributes:
        id: Stable identifier, ``HumanEval/0``, ``Mbpp/2``.
        source: Where the problem comes from: ``"humaneval"``, ``"humaneval+"``, ``"mbpp"``, ...
        prompt: What the model is given.
        entry_point: Name of the function the model must write.
        tests: A self-contained Python test program: HumanEval's ``check`` function followed by
            ``check(entry_point)``, or MBPP's imports and asserts, one per line. Empty for
            training-only records that have no tests (functions mined from source,
            `codistill.data.functions`): such a record cannot judge a candidate.
        canonical_solution: The reference solution, or None/empty when there is none. For
            HumanEval it is the body that continues ``prompt``; for MBPP the whole program.
        language: The language of the prompt, the solution and ``tests``. For ``"python"``,
            ``tests`` is as above; for the others (``javascript``, ``c``, ``cpp``, ``java``) it
            is a test program in that language that follows the solution, MultiPL-E's layout
            (:mod:`codistill.evaluation.codegen_languages`).
        extra: Benchmark-specific, JSON-ready fields: HumanEval+'s ``base_input``,
            ``plus_input``, ``atol`` and ``contract``; MBPP's ``test_imports`` and ``test_list``.
        split: The data split, or None (benchmarks are not split).
    """

    task: ClassVar[str] = "codegen"

    id: str
    source: str
    prompt: str
    entry_point: str
    tests: str
    canonical_solution: str | None = None
    language: CodegenLanguage = "python"
    # hash=False: a dict cannot be hashed; records still hash (by their other fields).
    extra: dict[str, Any] = field(default_factory=dict, hash=False)
    split: Split | None = None

    def __post_init__(self) -> None:
        _check_types(self)
        _require_nonempty(self, "id", "source", "prompt", "entry_point")
        if not self.entry_point.isidentifier():
            raise RecordError(
                f"field 'entry_point' expected a Python identifier, got {self.entry_point!r}",
                cause="field 'entry_point'",
            )

    def to_dict(self) -> dict[str, Any]:
        """The record as a JSON-ready dict, fields in declaration order."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "<record>") -> "CodegenRecord":
        """Validate ``d`` and build a record from it (see `AssertionRecord.from_dict`)."""
        return _from_dict(cls, d, where)


@dataclass(frozen=True)
class CloneRecord:
    """One clone-detection pair (BigCloneBench as in CodeXGLUE).

    Attributes:
        id: Stable identifier; the loader uses ``{id1}-{id2}``.
        code1: First code fragment.
        code2: Second code fragment.
        label: 1 when the fragments are clones, else 0.
        language: Source language of both fragments.
        extra: Source-specific, JSON-ready fields (BigCloneBench's ``id1``, ``id2``).
        split: The data split, or None before splitting.
    """

    task: ClassVar[str] = "clone"

    id: str
    code1: str
    code2: str
    label: Label
    language: ClassifierLanguage
    extra: dict[str, Any] = field(default_factory=dict, hash=False)
    split: Split | None = None

    def __post_init__(self) -> None:
        _check_types(self)
        _require_nonempty(self, "id", "code1", "code2")

    def to_dict(self) -> dict[str, Any]:
        """The record as a JSON-ready dict, fields in declaration order."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "<record>") -> "CloneRecord":
        """Validate ``d`` and build a record from it (see `AssertionRecord.from_dict`)."""
        return _from_dict(cls, d, where)


@dataclass(frozen=True)
class DefectRecord:
    """One defect-detection function (Devign as in CodeXGLUE).

    Attributes:
        id: Stable identifier; the loader uses Devign's ``idx``.
        code: The function's source.
        label: 1 when the function is vulnerable, else 0.
        language: Source language.
        project: Project the function comes from (``qemu``, ``FFmpeg``); may be empty.
        extra: Source-specific, JSON-ready fields (Devign's ``commit_id``).
        split: The data split, or None before splitting.
    """

    task: ClassVar[str] = "defect"

    id: str
    code: str
    label: Label
    language: ClassifierLanguage
    project: str
    extra: dict[str, Any] = field(default_factory=dict, hash=False)
    split: Split | None = None

    def __post_init__(self) -> None:
        _check_types(self)
        _require_nonempty(self, "id", "code")

    def to_dict(self) -> dict[str, Any]:
        """The record as a JSON-ready dict, fields in declaration order."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "<record>") -> "DefectRecord":
        """Validate ``d`` and build a record from it (see `AssertionRecord.from_dict`)."""
        return _from_dict(cls, d, where)


TASKS: dict[str, type[TaskRecord]] = {
    AssertionRecord.task: AssertionRecord,
    CodegenRecord.task: CodegenRecord,
    CloneRecord.task: CloneRecord,
    DefectRecord.task: DefectRecord,
}


def prompt_and_target(record: Any) -> tuple[str, str]:
    """The two texts of a record that data tools (dedup, stats) compare and measure.

    * assertion: the focal method (when linked) and the test up to the masked assertion; the
      assertion.
    * codegen: the prompt; the canonical solution (empty when there is none).
    * clone: both fragments, one after the other; the label as text.
    * defect: the function; the label as text.

    Raises:
        TypeError: ``record`` is not one of the task record classes.
    """
    if isinstance(record, AssertionRecord):
        prefix = record.prompt_prefix()
        return (f"{record.focal_code}\n\n{prefix}" if record.focal_code else prefix), record.target
    if isinstance(record, CodegenRecord):
        return record.prompt, record.canonical_solution or ""
    if isinstance(record, CloneRecord):
        return f"{record.code1}\n{record.code2}", str(record.label)
    if isinstance(record, DefectRecord):
        return record.code, str(record.label)
    raise TypeError(f"not a task record: {type(record).__name__}")
