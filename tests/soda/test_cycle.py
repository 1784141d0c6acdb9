"""SODA's cycles at the smoke budget: a scripted teacher, a tiny random student, the real stages,
training, sandbox and evaluation; resuming, ablation switches and config errors."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from codistill.config.fields import ConfigError
from codistill.data.jsonl import write_records
from codistill.evaluation.backends import llama_cpp_available
from codistill.soda import config as soda_config
from codistill.soda import cycle, stage2, stage3
from codistill.soda.teacher import TeacherCalls
from tests.qwen_fixtures import make_tiny_qwen2
from tests.soda.fault_questions import (
    COUNT_BETWEEN,
    COUNT_BETWEEN_SOLUTION,
    DESCRIBE,
    DESCRIBE_SOLUTION,
    DIGIT_SUM,
    DIGIT_SUM_SOLUTION,
    MAX_GAP,
    MAX_GAP_SOLUTION,
    PALINDROME,
    PALINDROME_SOLUTION,
    SUM_TO,
    SUM_TO_SOLUTION,
)
from tests.soda.test_teacher import ScriptedBackend

FENCE = "```"
SEEDS = [SUM_TO, COUNT_BETWEEN, DIGIT_SUM, MAX_GAP, PALINDROME, DESCRIBE]
SOLUTIONS = {
    "sum_to": SUM_TO_SOLUTION,
    "count_between": COUNT_BETWEEN_SOLUTION,
    "digit_sum": DIGIT_SUM_SOLUTION,
    "max_gap": MAX_GAP_SOLUTION,
    "is_palindrome": PALINDROME_SOLUTION,
    "describe": DESCRIBE_SOLUTION,
}
NEW = "scaled_"  # new questions: scaled_<seed entry>(n) = n * k + k % 5, k = len(seed entry)
STEPS = ("stage1", "sft", "contrastive", "eval", "stage2", "stage3")


def _solution(entry: str) -> str:
    if entry in SOLUTIONS:
        return SOLUTIONS[entry]
    k = len(entry) - len(NEW)
    return f"def {entry}(n):\n    return n * {k} + {k % 5}\n"


def teacher_script(text: str) -> str:
    """The teacher: right solutions, name-error faults, a low score, one new question a seed."""
    if "six-point" in text:
        return "Code Analysis: it does not solve the task.\nScore: 1"
    entry = re.search(r"assert (\w+)\(", text).group(1)
    if "Draw inspiration" in text:
        name, k = f"{NEW}{entry}", len(entry)
        return (
            f"#Created Instruction#\nWrite a function {name}(n) that multiplies n by {k} and "
            f"then adds {k % 5} to the product of {entry} style.\n#Tests#\n"
            f"assert {name}(1) == {k + k % 5}\nassert {name}(0) == {k % 5}\n"
        )
    if "faulty solution" in text:
        return f"{FENCE}python\ndef {entry}(*args):\n    return undefined_total\n{FENCE}"
    return f"Here:\n{FENCE}python\n{_solution(entry)}{FENCE}\n"


def _quiet(_line: str) -> None:
    pass


def scripted_teacher(root: Path, script=teacher_script) -> tuple[TeacherCalls, ScriptedBackend]:
    backend = ScriptedBackend(script)
    calls = TeacherCalls({"name": "scripted"}, root / "teacher_cache.jsonl", backend=backend)
    return calls, backend


def smoke_config(root: Path, out: str = "run", **over):
    return soda_config.load_soda_config(
        "smoke",
        overrides=over,
        teacher="scripted",
        student=str(root / "student"),
        seeds=str(root / "seeds.jsonl"),
        output_dir=str(root / out),
    )


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("soda")
    make_tiny_qwen2(root / "student", num_layers=2, seed=3)
    write_records(root / "seeds.jsonl", SEEDS)
    return root


@pytest.fixture(scope="module")
def first(setup):
    """Two smoke cycles, everything real but the teacher."""
    teacher, backend = scripted_teacher(setup)
    results = cycle.run_soda(smoke_config(setup), teacher=teacher, log=_quiet)
    return setup, results, backend


def test_smoke_cycles_run_every_stage_and_report_each_cycle(first):
    root, results, backend = first
    run = root / "run"
    assert [r["cycle"] for r in results["cycles"]] == [0, 1, 2]
    for c in (1, 2):
        for step in STEPS:
            assert (run / f"cycle-{c}" / step / "step.json").is_file(), (c, step)
        report = json.loads((run / f"cycle-{c}" / "report.json").read_text())
        assert report["stage1"]["correct"]["verified"] == report["questions"]  # all solved
        assert report["sft"]["trained"] and report["contrastive"]["trained"]
        assert report["levels"]["total"] == report["questions"]
        assert report["new_questions"]["asked"] == 4
        kept, rejected = report["new_questions"]["kept"], report["new_questions"]["rejected"]
        assert kept + sum(rejected.values()) == 4
        assert report["teacher_calls"]["stage1"]["calls"] > 0
        assert set(report["wall_s"]) == set(STEPS)
        assert "pass@1" in (run / f"cycle-{c}" / "report.md").read_text()
    # Two seeds are held out for evaluation; each cycle's pass vector covers exactly those.
    held = {r["id"] for r in map(json.loads, (run / "eval_set.jsonl").read_text().splitlines())}
    assert len(held) == 2 and held <= {s.id for s in SEEDS}
    for r in results["cycles"]:
        assert set(r["eval"]["items"]) == held
        assert r["eval"]["pass@1"] == sum(r["eval"]["items"].values()) / 2
    # The held-out seeds are not trained on.
    correct_rows = (run / "cycle-1" / "stage1" / "correct.jsonl").read_text()
    assert not any(h in correct_rows for h in held)
    # Cycle 2 works on cycle 1's questions plus the new ones kept (keep_questions=true).
    q1 = (run / "cycle-1" / "questions.jsonl").read_text().splitlines()
    q2 = (run / "cycle-2" / "questions.jsonl").read_text().splitlines()
    new1 = (run / "cycle-1" / "stage3" / "questions.jsonl").read_text().splitlines()
    assert len(q1) == 4 and q2 == q1 + new1 and new1
    # Cycle 2 starts from cycle 1's final student.
    reports = results["cycles"]
    assert reports[2]["student_in"] == reports[1]["student_out"]
    assert reports[1]["student_out"].endswith("cycle-1/contrastive/run/final")
    assert json.loads((run / "results.json").read_text())["arm"] == "soda"
    assert backend.prompts


def test_a_second_run_asks_nothing_and_trains_nothing(first, monkeypatch):
    root, results, _ = first

    def never(*args, **kwargs):
        raise AssertionError("ran again")

    for name in ("distill", "train_preference", "run_eval", "run_stage1", "open_student"):
        monkeypatch.setattr(cycle, name, never)
    monkeypatch.setattr(stage2, "run_stage2", never)
    monkeypatch.setattr(stage3, "run_stage3", never)
    teacher, backend = scripted_teacher(root)
    again = cycle.run_soda(smoke_config(root), teacher=teacher, log=_quiet)
    assert backend.prompts == []
    assert [r["eval"] for r in again["cycles"]] == [r["eval"] for r in results["cycles"]]
    assert all(set(r["skipped_now"]) == set(STEPS) for r in again["cycles"][1:])
    # What the steps measured when they ran is kept, not zeroed by the rerun.
    assert again["cycles"][1]["teacher_calls"] == results["cycles"][1]["teacher_calls"]


def test_a_changed_setting_redoes_the_steps_that_depend_on_it(first, tmp_path, monkeypatch):
    root, _, _ = first
    shutil.copytree(root / "run", tmp_path / "run")
    shutil.copy(root / "seeds.jsonl", tmp_path / "seeds.jsonl")
    shutil.copytree(root / "student", tmp_path / "student")
    ran = []
    real = stage3.run_stage3
    monkeypatch.setattr(stage3, "run_stage3", lambda *a, **k: ran.append(1) or real(*a, **k))
    monkeypatch.setattr(cycle, "distill", lambda *a, **k: pytest.fail("trained again"))
    teacher, _ = scripted_teacher(tmp_path)
    cfg = smoke_config(tmp_path, n_new=2, cycles=1)
    out = cycle.run_soda(cfg, teacher=teacher, log=_quiet)
    assert ran == [1]  # only cycle 1's Stage III: the training and Stage II inputs are unchanged
    assert out["cycles"][1]["new_questions"]["asked"] == 2
    assert out["cycles"][1]["skipped_now"] == ["contrastive", "eval", "sft", "stage1", "stage2"]


# --- ablation switches, with fast fakes for training and evaluation --------------------------


class Fakes:
    """Training and evaluation that copy the student and score nothing; records what ran."""

    def __init__(self, monkeypatch, solved: set[str] = frozenset()):
        self.trained: list[str] = []
        self.stage2_configs: list = []
        self.stage3_configs: list = []
        self.judges: list = []
        monkeypatch.setattr(cycle, "distill", self.distill)
        monkeypatch.setattr(cycle, "train_preference", self.preference)
        monkeypatch.setattr(cycle, "run_eval", self.evaluate)
        monkeypatch.setattr(cycle, "open_student", self.student)
        real2, real3 = stage2.run_stage2, stage3.run_stage3

        def spy2(questions, student, judge, out, config, **kw):
            self.stage2_configs.append(config)
            self.judges.append(judge)
            return real2(questions, student, judge, out, config, **kw)

        def spy3(feedback, questions, teacher, out, config, **kw):
            self.stage3_configs.append(config)
            return real3(feedback, questions, teacher, out, config, **kw)

        monkeypatch.setattr(stage2, "run_stage2", spy2)
        monkeypatch.setattr(stage3, "run_stage3", spy3)
        self.solved = solved

    def _copy(self, student, out, what):
        self.trained.append(what)
        shutil.copytree(student, Path(out) / "final")
        Path(out, "run.json").write_text('{"global_step": 1}')
        return type("Result", (), {"global_step": 1, "final": None, "status": "finished"})()

    def distill(self, cfg, resume=False):
        return self._copy(cfg.student, cfg.output_dir, "sft")

    def preference(self, cfg, resume=False):
        return self._copy(cfg.student, cfg.output_dir, "contrastive")

    def evaluate(self, cfg):
        out = Path(cfg.output_dir)
        out.mkdir(parents=True)
        ids = [json.loads(x)["id"] for x in Path(cfg.data).read_text().splitlines()]
        rows = [{"task_id": i, "sample": 0, "passed": False, "passed_plus": None} for i in ids]
        (out / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        return {"n": len(ids), "models": {"student": {"vs_truth": {"pass@1": 0.0}}}}

    def student(self, path, cache, cfg, gguf=None):
        def answer(text):
            entry = re.search(r"assert (\w+)\(", text).group(1)
            code = _solution(entry) if entry in self.solved else "def nothing():\n    pass\n"
            return f"{FENCE}python\n{code}{FENCE}"

        return TeacherCalls({"student": str(path)}, cache, backend=ScriptedBackend(answer))


@pytest.fixture
def small(tmp_path, setup):
    write_records(tmp_path / "seeds.jsonl", SEEDS)
    (tmp_path / "student").symlink_to(setup / "student")
    return tmp_path


def test_full_soda_asks_faults_trains_both_stages_and_samples_by_level(small, monkeypatch):
    fakes = Fakes(monkeypatch, solved={"sum_to", "digit_sum"})
    teacher, backend = scripted_teacher(small)
    out = cycle.run_soda(smoke_config(small, cycles=1), teacher=teacher, log=_quiet)
    assert fakes.trained == ["sft", "contrastive"]
    assert any("faulty solution" in p for p in backend.prompts)
    assert fakes.stage2_configs[0].use_judge and fakes.stage2_configs[0].use_execution
    assert fakes.judges == [teacher]  # the teacher judges by default
    assert fakes.stage3_configs[0].use_difficulty and fakes.stage3_configs[0].ratio == (1, 1, 2)
    assert out["cycles"][1]["stage1"]["split"] == {"sft": 3, "contrastive": 1}


def test_faults_false_drops_faulty_calls_and_the_contrastive_stage(small, monkeypatch):
    fakes = Fakes(monkeypatch)
    teacher, backend = scripted_teacher(small)
    out = cycle.run_soda(smoke_config(small, cycles=1, faults=False), teacher=teacher, log=_quiet)
    assert fakes.trained == ["sft"]
    assert not any("faulty solution" in p for p in backend.prompts)
    report = out["cycles"][1]
    assert report["contrastive"] == {"trained": False, "reason": "faults=false"}
    assert report["stage1"]["split"] == {"sft": 4, "contrastive": 0}  # nothing held back
    assert report["sft"]["examples"] == 4


def test_judge_and_execution_switches_reach_stage_two(small, monkeypatch):
    fakes = Fakes(monkeypatch, solved={"sum_to"})
    teacher, backend = scripted_teacher(small)
    cycle.run_soda(smoke_config(small, cycles=1, judge=False), teacher=teacher, log=_quiet)
    assert not fakes.stage2_configs[0].use_judge and fakes.judges == [None]
    assert not any("six-point" in p for p in backend.prompts)
    fakes2 = Fakes(monkeypatch, solved={"sum_to"})
    teacher, _ = scripted_teacher(small)
    cfg = smoke_config(small, "run2", cycles=1, execution=False)
    cycle.run_soda(cfg, teacher=teacher, log=_quiet)
    assert not fakes2.stage2_configs[0].use_execution and fakes2.stage2_configs[0].use_judge


def test_difficulty_false_and_ratio_reach_stage_three(small, monkeypatch):
    fakes = Fakes(monkeypatch)
    teacher, _ = scripted_teacher(small)
    cfg = smoke_config(small, cycles=1, difficulty=False, ratio="0:0:1")
    out = cycle.run_soda(cfg, teacher=teacher, log=_quiet)
    s3 = fakes.stage3_configs[0]
    assert not s3.use_difficulty and s3.ratio == (0, 0, 1)
    assert list(out["cycles"][1]["new_questions"]["allocation"]["quotas"]) == ["random"]


def test_sft_only_skips_feedback_and_matches_a_soda_runs_teacher_answers(small, monkeypatch):
    Fakes(monkeypatch, solved={"sum_to"})
    teacher, _ = scripted_teacher(small)
    soda = cycle.run_soda(smoke_config(small, cycles=2), teacher=teacher, log=_quiet)
    fakes = Fakes(monkeypatch, solved={"sum_to"})
    teacher, backend = scripted_teacher(small)
    cfg = smoke_config(
        small, "sft", cycles=2, sft_only=True, match_calls=str(small / "run" / "results.json")
    )
    sft = cycle.run_soda(cfg, teacher=teacher, log=_quiet)
    assert fakes.trained == ["sft", "sft"] and fakes.stage2_configs == []
    assert all(not c.use_difficulty for c in fakes.stage3_configs)
    assert not any("faulty solution" in p or "six-point" in p for p in backend.prompts)
    assert sft["arm"] == "sft_only" and sft["cycles"][1]["levels"] is None
    for c in (1, 2):
        match = sft["cycles"][c]["budget_match"]
        soda_total = sum(r["teacher_answers_total"] for r in soda["cycles"][1 : c + 1])
        assert match["soda_answers"] == soda_total
        # The answers SODA spent on faults and the judge buy more new questions here.
        assert (
            sft["cycles"][c]["new_questions"]["asked"] > soda["cycles"][c]["new_questions"]["asked"]
        )
        assert abs(match["answers"] - soda_total) <= 2  # within one new question's cost


def test_matched_n_new_spends_what_is_left_after_stage_one():
    assert cycle.matched_n_new(answers_left=30, n_questions=10, per_new=2.0) == 10
    assert cycle.matched_n_new(answers_left=5, n_questions=10, per_new=2.0) == 0


def test_next_questions_keep_or_replace_and_never_empty():
    old, new = [SUM_TO, DIGIT_SUM], [MAX_GAP, SUM_TO]
    kept, rest = cycle.next_questions(old, new, [PALINDROME], keep=True, log=_quiet)
    assert kept == [SUM_TO, DIGIT_SUM, MAX_GAP] and rest == [PALINDROME]
    moved, rest = cycle.next_questions(old, new, [], keep=False, log=_quiet)
    assert moved == [MAX_GAP] and rest == [SUM_TO, DIGIT_SUM]
    again, _ = cycle.next_questions(old, [], [], keep=False, log=_quiet)
    assert again == old


# --- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"ratio": "1:2"}, "ratio must be easy:medium:hard like 1:1:2, got '1:2'"),
        ({"ratio": "0:0:0"}, "ratio must be easy:medium:hard"),
        ({"judge": False, "execution": False}, "judge and execution are both false"),
        ({"cycles": 0}, "cycles must be >= 1, got 0"),
        ({"n_neww": 3}, "unknown key 'n_neww'; did you mean 'n_new'?"),
        ({"match_calls": "x.json"}, "match_calls is for sft_only=true"),
        ({"teacher_fault_types": ["logic", "typo"]}, "unknown fault type 'typo'"),
        ({"eval_holdout": 0}, "no evaluation set"),
        ({"sft_share": 1.5}, "sft_share must be in [0, 1], got 1.5"),
    ],
)
def test_bad_values_are_one_line_errors_naming_the_field(tmp_path, over, message):
    with pytest.raises(ConfigError) as err:
        smoke_config(tmp_path, **over)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_ratio_reads_text_lists_and_yamls_base_60_integer():
    from codistill.config.fields import parse_value

    assert soda_config.parse_ratio("1:1:2") == (1, 1, 2)
    assert soda_config.parse_ratio([0, 0, 1]) == (0, 0, 1)
    assert soda_config.parse_ratio(parse_value("1:1:2")) == (1, 1, 2)  # YAML 1.1: 3662
    assert soda_config.parse_ratio(parse_value("1:1:1")) == (1, 1, 1)


def test_budgets_layer_under_yaml_and_overrides(tmp_path):
    (tmp_path / "c.yaml").write_text("n_new: 7\ncycles: 5\n")
    names = {"teacher": "t", "student": "s", "seeds": "q", "output_dir": "o"}
    with pytest.raises(ConfigError, match="no evaluation set: give eval_data"):
        soda_config.load_soda_config("cpu", tmp_path / "c.yaml", ["cycles=1"], **names)
    cfg = soda_config.load_soda_config(
        "cpu", tmp_path / "c.yaml", ["cycles=1", "eval_data=[he.jsonl]"], **names
    )
    assert (cfg.n_new, cfg.cycles, cfg.budget) == (7, 1, "cpu")
    assert cfg.teacher_fault_types == ["logic"]  # from the cpu budget
    assert cfg.student_backend == "llamacpp"  # the cpu budget's student answers via llama.cpp
    assert cfg.eval_data == ["he.jsonl"]
    full = soda_config.BUDGETS["full"]
    assert full["cycles"] == 3 and full["sft_lr"] == 2e-5


def test_a_missing_eval_file_and_a_too_large_holdout_are_refused(small):
    with pytest.raises(cycle.SodaError, match="does not exist"):
        cycle.load_eval_set([f"mbpp-test:{small / 'no.json'}"])
    with pytest.raises(cycle.SodaError, match="leaves no seed question"):
        cycle.hold_out(SEEDS, 6, 0)


@pytest.mark.skipif(not llama_cpp_available(), reason="llama-cpp-python not installed")
def test_student_backend_llamacpp_answers_through_an_export_of_each_student(
    setup, tmp_path, monkeypatch
):
    """``student_backend=llamacpp``: the untouched and the trained student are each exported
    once as a bfloat16 GGUF, and the evaluation and Stage II generate through llama.cpp."""
    write_records(tmp_path / "seeds.jsonl", SEEDS)
    (tmp_path / "student").symlink_to(setup / "student")
    teacher, _ = scripted_teacher(tmp_path)
    opened = []
    real_open = cycle.open_teacher
    monkeypatch.setattr(
        cycle, "open_teacher", lambda spec, *a, **k: opened.append(spec) or real_open(spec, *a, **k)
    )
    cfg = smoke_config(tmp_path, cycles=1, student_backend="llamacpp", prompt_mode="raw")
    results = cycle.run_soda(cfg, teacher=teacher, log=_quiet)
    run = tmp_path / "run"
    for c in (0, 1):
        gguf = run / f"cycle-{c}" / "gguf" / "model.gguf"
        assert gguf.is_file() and gguf.read_bytes()[:4] == b"GGUF"
        metrics = json.loads((run / f"cycle-{c}" / "eval" / "run" / "metrics.json").read_text())
        assert metrics["models"]["student"]["generation"]["backend"] == f"llamacpp:{gguf}"
    exported = json.loads((run / "cycle-1" / "gguf" / "step.json").read_text())["result"]
    assert exported["model"].endswith("cycle-1/contrastive/run/final")
    assert opened == [f"llamacpp:{run / 'cycle-1' / 'gguf' / 'model.gguf'}"]  # Stage II
    assert (run / "cycle-1" / "stage2" / "student_cache.jsonl").read_text().count("\n") == 4
    assert set(results["cycles"][1]["eval"]["items"]) == set(results["cycles"][0]["eval"]["items"])
