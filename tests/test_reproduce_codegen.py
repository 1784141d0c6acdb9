"""``codistill reproduce codegen --budget smoke`` end to end on tiny random models."""

import json
import re
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from codistill.cli.main import main
from codistill.data.schema import CodegenRecord
from codistill.reproduce_codegen import (
    CODEGEN_BUDGETS,
    CodegenOptions,
    arm_targets,
    evaluate_model,
    gguf_key,
    prepare_data,
    reproduce_codegen,
    study_arms,
    train_file,
)
from codistill.reproduce_codegen.arms import ARMS, BASELINE, paired_with_ce
from codistill.reproduce_codegen.report import answer_shape

# MBPP's sanitized layout; task ids place each task in MBPP's own split (1-10 prompt, 11-510
# test, 511-600 validation, 601-974 train).
MBPP = [
    {
        "task_id": task_id,
        "prompt": prompt,
        "code": code,
        "test_imports": [],
        "test_list": tests,
    }
    for task_id, prompt, code, tests in (
        (2, "Reverse a string.", "def rev(s):\n    return s[::-1]\n", ["assert rev('ab') == 'ba'"]),
        (12, "Add two numbers.", "def add(a, b):\n    return a + b\n", ["assert add(1, 2) == 3"]),
        (13, "Square a number.", "def sq(x):\n    return x * x\n", ["assert sq(3) == 9"]),
        (
            602,
            "Count the vowels in a text.",
            "def vowels(t):\n    return sum(c in 'aeiou' for c in t)\n",
            ["assert vowels('banana') == 3"],
        ),
        (
            603,
            "Largest of three values.",
            "def big(a, b, c):\n    return max(a, b, c)\n",
            ["assert big(1, 5, 2) == 5"],
        ),
    )
]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("reproduce-codegen")
    mbpp = root / "mbpp.json"
    mbpp.write_text(json.dumps(MBPP))
    out = root / "out"
    argv = ["reproduce", "codegen", "--budget", "smoke", "--out", str(out), "--mbpp", str(mbpp)]
    assert main(argv) == 0
    return out, argv


def _train_rows(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r["kind"] == "train"]


def test_the_study_compares_kd_with_sft_on_pooled_benchmarks(smoke_run):
    out, _ = smoke_run
    result = json.loads((out / "codegen" / "comparison.json").read_text())
    assert result["baseline"] == "sft"
    assert set(result["arms"]) == {"teacher", "student_init", *ARMS}
    assert set(result["paired"]) == {"teacher", "student_init", *ARMS} - {"sft"}
    summary = json.loads((out / "codegen" / "reproduce.json").read_text())
    data = Path(summary["stages"]["data"])
    test = [json.loads(line) for line in (data / "test.jsonl").read_text().splitlines()]
    # The smoke budget's 6 items: 3 of each benchmark, and MBPP has 2 in its test split.
    assert len(test) == 5 == result["n"]
    info = json.loads((data / "data.json").read_text())
    assert info["test"] == {"humaneval": 3, "mbpp": 2}
    assert info["train_with_tests"] == 3  # MBPP's prompt and train tasks
    tested = (data / "train-tested.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["id"] for line in tested) == ["Mbpp/2", "Mbpp/602", "Mbpp/603"]
    train_ids = {json.loads(line)["id"] for line in (data / "train.jsonl").read_text().splitlines()}
    assert not train_ids & {"Mbpp/12", "Mbpp/13"}  # never train on MBPP's test split
    report = (out / "codegen" / "report.md").read_text()
    assert "Does distillation pay?" in report and "| kd | `teacher` outputs |" in report
    assert "MBPP's training tasks are written as MBPP writes them" in report
    # The arms on every prompt are also paired with CE-only on the same prompts.
    vs_ce = json.loads((out / "codegen" / "vs-ce" / "comparison.json").read_text())
    assert vs_ce["baseline"] == "ce"
    on_every_prompt = {"kd-ref", "seq", "kd-seq", "kd-own", "kd-hidden", "kd-online"}
    assert set(vs_ce["paired"]) == on_every_prompt | {"teacher"}
    assert "## On every training prompt: against `ce`" in report
    assert "\n#### Against the ground truth" in report
    # ... and every arm with the student it started from: did training help at all?
    vs_init = json.loads((out / "codegen" / "vs-init" / "comparison.json").read_text())
    assert vs_init["baseline"] == "student_init"
    assert set(vs_init["paired"]) == set(ARMS)
    section = report.split("## Against the untouched student")[1].split("\n## ")[0]
    assert all(f"| {arm} |" in section for arm in ARMS), section
    assert (out / "codegen" / "quality_vs_steps.png").read_bytes()[:4] == b"\x89PNG"
    # Every scored model's answers: how many, how long (the median of what it wrote), how long
    # scoring took.
    answers = report.split("## Answers")[1].split("![")[0]
    predictions = Path(summary["evals"]["teacher"]) / "predictions.jsonl"
    written = sorted(len(json.loads(line)["completion"]) for line in predictions.open())
    assert f"| teacher | 5 | {written[2]} |" in answers  # the middle one of 5
    # ... and how many of its answers do not parse: all 5 smoke items are Python.
    assert re.search(r"\| teacher \| 5 \| \d+ \| \d of 5 \| \d \| ", answers), answers
    assert all(f"| {name} | 5 |" in answers for name in summary["evals"])


def test_sft_and_kd_see_the_same_batches_and_differ_only_in_the_loss(smoke_run):
    out, _ = smoke_run
    summary = json.loads((out / "codegen" / "reproduce.json").read_text())
    runs = {arm: _train_rows(Path(p)) for arm, p in summary["runs"].items()}
    steps = CODEGEN_BUDGETS["smoke"].student_steps
    assert all([r["step"] for r in rows] == list(range(1, steps + 1)) for rows in runs.values())
    digests = {a: [r["batch_digest"] for r in rows] for a, rows in runs.items()}
    assert digests["sft"] == digests["kd"] == digests["rkl"]
    on_references = ("kd-ref", "kd-hidden", "kd-online")
    assert all(digests[a] == digests["ce"] for a in on_references)
    assert digests["seq"] == digests["kd-seq"]  # the two on every solution of the teacher
    assert "kl" in runs["kd-seq"][0] and "kl" not in runs["seq"][0]
    assert "kl" in runs["kd-own"][0] and "ce" not in runs["kd-own"][0]
    assert "kl" in runs["kd"][0] and "kl" not in runs["sft"][0]
    assert "kl" in runs["kd-ref"][0] and "kl" not in runs["ce"][0]
    assert "reverse_kl" in runs["rkl"][0] and "kl" not in runs["rkl"][0]
    assert {"kl", "ce", "hidden"} <= set(runs["kd-hidden"][0])
    assert {"kl", "ce"} <= set(runs["kd-online"][0]) and "hidden" not in runs["kd-online"][0]
    configs = {
        a: json.loads((Path(p) / "run.json").read_text())["config"]
        for a, p in summary["runs"].items()
    }
    # Arms checkpoint at every validation, so a stopped study resumes from there.
    steps_with_checkpoints = CODEGEN_BUDGETS["smoke"].valid_every
    assert all(c["save_every_steps"] == steps_with_checkpoints for c in configs.values())
    for key in ("student", "lr", "batch_size", "max_steps", "seed", "train_data"):
        assert len({json.dumps(c[key]) for c in configs.values()}) == 1, key
    assert configs["sft"]["targets"] == configs["kd"]["targets"] != configs["ce"]["targets"]
    assert configs["rkl"]["targets"] == configs["kd"]["targets"]
    assert configs["ce"]["targets"] == configs["kd-ref"]["targets"] == "reference"
    assert configs["seq"]["targets"] == configs["kd-seq"]["targets"]
    assert configs["seq"]["targets"].startswith("teacher:")
    # kd-own trains on what the untouched student wrote for every prompt, not the teacher.
    own = Path(configs["kd-own"]["targets"].removeprefix("teacher:"))
    assert own.parent.name.startswith("codegen-student-outputs-")
    assert own != Path(configs["seq"]["targets"].removeprefix("teacher:"))
    header = json.loads((own / "generations.jsonl").read_text().splitlines()[0])
    assert header["teacher"]["name"] == summary["stages"]["student"]
    # Each KD arm reads the teacher along its own targets: one cache per kind.
    caches = summary["stages"]["caches"]
    assert set(caches) == {configs["kd"]["targets"], configs["kd-own"]["targets"], "reference"}
    assert (
        configs["kd"]["teacher_cache"]
        == configs["rkl"]["teacher_cache"]
        == caches[configs["kd"]["targets"]]
    )
    assert configs["kd-ref"]["teacher_cache"] == caches["reference"]
    assert configs["kd-seq"]["teacher_cache"] == caches[configs["kd-seq"]["targets"]]
    assert configs["kd-own"]["teacher_cache"] == caches[configs["kd-own"]["targets"]]
    # The hidden-state arm runs the teacher itself (a cache has no hidden states), and so does
    # its ablation.
    for arm in ("kd-hidden", "kd-online"):
        online = configs[arm]
        assert online["teacher_cache"] is None and online["targets"] == "reference"
        assert Path(online["teacher"]) == Path(summary["stages"]["teacher"])
        assert online["loss"] == ARMS[arm].get("loss", "alpha_temperature")
    # Every arm with a teacher term learns the EOS ending a target from its label.
    stops = {a: c["stop_target"] for a, c in configs.items()}
    assert stops == {a: "teacher" if c["loss"] == "ce" else "label" for a, c in configs.items()}
    assert stops["ce"] == stops["sft"] == stops["seq"] == "teacher" != stops["kd"]
    # ... and the teacher, not the student, scored them
    from codistill.teacher.cache import open_cache

    scorer = open_cache(configs["kd-own"]["teacher_cache"]).header.teacher_path
    assert scorer == str(Path(summary["stages"]["teacher"]).resolve())
    # Finished arms keep their students, not their optimizer state.
    assert all(not (Path(p) / "checkpoint").exists() for p in summary["runs"].values())
    assert all((Path(p) / "final" / "config.json").exists() for p in summary["runs"].values())


def test_a_second_run_reuses_every_stage(smoke_run, capsys):
    out, argv = smoke_run
    before = sorted(p.name for p in out.iterdir())
    assert main(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == before
    assert "building" not in capsys.readouterr().out


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--arms", "alpha_t"], "not part of the codegen study"),
        (["--data", "x"], "--data is an option of the assertion studies"),
        (["--teacher", "embedded"], "the smoke budget builds its own tiny models"),
        (["--budget", "cpu"], "need training prompts with tests: give --mbpp FILE"),
        (["--teacher-samples", "0"], "--teacher-samples must be >= 1, got 0"),
        (["--student-lr", "0"], "--student-lr must be > 0, got 0.0"),
        (["--student-steps", "0"], "--student-steps must be >= 1, got 0"),
    ],
)
def test_user_errors_are_one_line(tmp_path, capsys, extra, message):
    argv = ["reproduce", "codegen", "--budget", "smoke", "--out", str(tmp_path), *extra]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "option",
    [
        ["--mbpp", "x"],
        ["--teacher-samples", "4"],
        ["--student-lr", "1e-4"],
        ["--student-steps", "9"],
        ["--train-prompts", "humaneval"],
    ],
    ids=["mbpp", "teacher-samples", "student-lr", "student-steps", "train-prompts"],
)
def test_codegen_options_are_refused_for_the_assertion_studies(tmp_path, capsys, option):
    argv = ["reproduce", "alpha-t", "--budget", "smoke", "--out", str(tmp_path), *option]
    assert main(argv) == 2
    assert f"{option[0]} is an option of the codegen study" in capsys.readouterr().err


def test_training_tasks_can_be_written_as_humaneval_writes_its_prompts(tmp_path):
    mbpp = tmp_path / "mbpp.json"
    mbpp.write_text(json.dumps(MBPP))
    budget = replace(CODEGEN_BUDGETS["smoke"], train=None)

    def tested(style: str) -> tuple[Path, dict]:
        opts = CodegenOptions(budget="smoke", mbpp=str(mbpp), train_prompts=style)
        data = prepare_data(tmp_path / "out", budget, opts)
        rows = [json.loads(x) for x in (data / "train-tested.jsonl").read_text().splitlines()]
        return data, {r["id"]: r for r in rows}

    plain_dir, plain = tested("mbpp")
    dressed_dir, dressed = tested("humaneval")
    assert plain_dir != dressed_dir  # cached under its own key
    # The same non-test tasks (ids 2, 602, 603), with their tests, in HumanEval's dress.
    assert sorted(dressed) == sorted(plain) == ["Mbpp/2", "Mbpp/602", "Mbpp/603"]
    assert {r["tests"] for r in dressed.values()} == {r["tests"] for r in plain.values()}
    assert plain["Mbpp/2"]["prompt"].startswith('"""')
    assert dressed["Mbpp/2"]["prompt"].startswith("def rev(s):\n")
    assert dressed["Mbpp/2"]["source"] == "humaneval-style-mbpp"
    # The test set is the benchmarks' own, whichever way the training tasks are written.
    test = "test.jsonl"
    assert (plain_dir / test).read_text() == (dressed_dir / test).read_text()
    with pytest.raises(ValueError, match="--train-prompts must be one of mbpp, humaneval"):
        reproduce_codegen(CodegenOptions(budget="smoke", train_prompts="plain"))


def test_evaluations_are_keyed_by_the_test_set_not_the_data_stage(tmp_path, monkeypatch):
    import codistill.evaluation.runner as runner

    scored = []
    monkeypatch.setattr(runner, "run_eval", lambda config: scored.append(config.data))
    model = tmp_path / "model"
    model.mkdir()
    smoke = CODEGEN_BUDGETS["smoke"]
    dirs = []
    for name, test in (("data-a", "same\n"), ("data-b", "same\n"), ("data-c", "other\n")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "test.jsonl").write_text(test)
        dirs.append(evaluate_model(tmp_path / "out", "teacher", model, smoke, tmp_path / name, []))
    # Two studies whose training data differ share the evaluation of one model on one test set.
    assert dirs[0] == dirs[1] != dirs[2]
    assert len(scored) == 2


def test_reference_arms_train_on_every_prompt_and_teacher_arms_on_the_tested_ones(tmp_path):
    cpu = CODEGEN_BUDGETS["cpu"]
    assert train_file(tmp_path, cpu, "verified").name == "train-tested.jsonl"
    assert train_file(tmp_path, cpu, "reference").name == "train.jsonl"
    # Unverified solutions (the smoke budget's) come from every prompt as well.
    assert train_file(tmp_path, CODEGEN_BUDGETS["smoke"], "verified").name == "train.jsonl"
    # Every solution the teacher wrote, passing or not, comes from every prompt.
    assert train_file(tmp_path, cpu, "teacher").name == "train.jsonl"
    outputs = {"verified": tmp_path / "tested", "teacher": tmp_path / "all"}
    assert arm_targets("ce", cpu, outputs) == arm_targets("kd-ref", cpu, outputs) == "reference"
    assert arm_targets("kd", cpu, outputs) == f"teacher-verified:{tmp_path / 'tested'}"
    assert arm_targets("seq", cpu, outputs) == arm_targets("kd-seq", cpu, outputs)
    assert arm_targets("seq", cpu, outputs) == f"teacher:{tmp_path / 'all'}"
    assert train_file(tmp_path, cpu, "student").name == "train.jsonl"
    own = {"student": tmp_path / "own"}
    assert arm_targets("kd-own", cpu, own) == f"teacher:{tmp_path / 'own'}"


def _data_dir(tmp_path: Path) -> Path:
    """A data stage's files: 3 training prompts, 1 of them with tests."""
    data = tmp_path / "codegen-data-x"
    data.mkdir()
    record = {"source": "t", "prompt": "def f():\n", "entry_point": "f", "tests": ""}
    for name, n in (("train.jsonl", 3), ("train-tested.jsonl", 1)):
        rows = [{**record, "id": f"t/{i}"} for i in range(n)]
        (data / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return data


def test_interrupted_teacher_outputs_and_caches_resume_from_what_they_wrote(
    tmp_path, monkeypatch, capsys
):
    """A stop in the middle of the teacher's outputs or cache keeps what was written: the rerun
    hands the builder the same directory (the builders skip the records and shards present)."""
    import codistill.reproduce_codegen as study
    import codistill.teacher.cache as cache
    import codistill.teacher.generations as generations

    seen = []

    def interrupted_once(out: Path) -> None:
        seen.append(sorted(p.name for p in out.iterdir()) if out.exists() else None)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"part-{len(seen)}").write_text("written\n")
        if len(seen) % 2:  # the first of each pair of calls is stopped
            raise KeyboardInterrupt

    monkeypatch.setattr(
        generations, "generate_teacher_outputs", lambda b, t, r, out, s, **kw: interrupted_once(out)
    )
    monkeypatch.setattr(cache, "build_cache", lambda t, r, out, **kw: interrupted_once(out))
    monkeypatch.setattr(study, "_teacher_gguf", lambda root, teacher: tmp_path / "t.gguf")
    data, cpu, teacher = _data_dir(tmp_path), CODEGEN_BUDGETS["cpu"], tmp_path / "teacher"
    for build in (
        lambda: study.prepare_outputs(tmp_path, cpu, teacher, data, 1, "teacher"),
        lambda: study.prepare_cache(tmp_path, cpu, teacher, data, "reference", "reference"),
    ):
        with pytest.raises(KeyboardInterrupt):
            build()
        done = build()
        assert seen[-2:] == [None, [f"part-{len(seen) - 1}"]]
        assert sorted(p.name for p in done.iterdir()) == [
            f"part-{len(seen) - 1}",
            f"part-{len(seen)}",
        ]
        assert (done.parent / "stage.json").is_file() and build() == done
    printed = capsys.readouterr().out
    assert "codegen-outputs: resuming" in printed and "codegen-cache-ref: resuming" in printed


def test_the_teacher_writes_for_every_prompt_only_for_the_arms_on_all_its_solutions(
    tmp_path, monkeypatch
):
    """Under a verifying budget the verified arms' solutions come from the prompts with tests
    (their stage names no file in its key) and the ``seq`` arms' from every prompt, each its
    own stage; ``kd-own``'s are the student's, from the GGUF its evaluation reads; all through
    batched in-process llama.cpp."""
    import codistill.reproduce_codegen as study
    import codistill.teacher.generations as generations
    from codistill.reproduce import content_key

    seen, backends = [], []

    def fake_generate(backend, teacher, records, out, settings, **kw):
        seen.append(len(records))
        backends.append((backend, teacher))
        out.mkdir(parents=True)

    monkeypatch.setattr(generations, "generate_teacher_outputs", fake_generate)
    monkeypatch.setattr(study, "_teacher_gguf", lambda root, teacher: tmp_path / "t.gguf")
    monkeypatch.setattr(study, "export_bf16", lambda root, name, model: tmp_path / f"{name}.gguf")
    data = _data_dir(tmp_path)
    cpu, teacher = CODEGEN_BUDGETS["cpu"], tmp_path / "teacher"
    verified = study.prepare_outputs(tmp_path, cpu, teacher, data, 1, "verified")
    every = study.prepare_outputs(tmp_path, cpu, teacher, data, 1, "teacher")
    assert seen == [1, 3] and verified != every
    settings = generations.GenerateSettings(
        task="codegen",
        backend=f"llamacpp-batch:{tmp_path / 't.gguf'}",
        max_new_tokens=cpu.max_target_tokens,
        max_source_tokens=cpu.max_source_tokens,
        prompt_style=None,
        chunk=32,
    )
    key = content_key("codegen-outputs", str(teacher), data.name, asdict(settings))
    assert verified.parent.name == f"codegen-outputs-{key}"
    student = tmp_path / "student"
    own = study.prepare_outputs(tmp_path, cpu, student, data, 1, "student")
    assert seen == [1, 3, 3] and own.parent.name.startswith("codegen-student-outputs-")
    assert backends[-1] == (f"llamacpp-batch:{tmp_path / 'student_init.gguf'}", student)
    assert backends[0] == (f"llamacpp-batch:{tmp_path / 't.gguf'}", teacher)


def test_a_checked_gguf_is_known_by_its_sha256_not_its_mtime(tmp_path):
    import os

    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    unstamped = gguf_key(gguf)
    os.utime(gguf, ns=(1, 1))
    assert gguf_key(gguf) != unstamped  # without a stamp, a rewritten file is a new model
    gguf.with_suffix(".gguf.sha256").write_text("ab12\n")
    stamped = gguf_key(gguf)
    os.utime(gguf, ns=(2, 2))  # a cache restored elsewhere: same bytes, new mtime
    assert gguf_key(gguf) == stamped == ["sha256", "ab12"]


def test_only_arms_on_every_prompt_are_paired_with_ce_and_only_when_it_runs():
    assert paired_with_ce(["sft", "kd", "ce", "kd-ref"]) == ["kd-ref"]
    assert paired_with_ce(["sft", "rkl", "ce", "seq", "kd-seq"]) == ["seq", "kd-seq"]
    assert paired_with_ce(["sft", "ce", "kd-own"]) == ["kd-own"]
    assert paired_with_ce(["sft", "kd", "kd-ref"]) == []
    assert paired_with_ce(["sft", "ce"]) == []


def test_the_hidden_state_arm_runs_only_for_a_student_derived_from_the_teacher(tmp_path):
    from codistill.models.student import derive_student
    from codistill.models.tiny import make_tiny_causal_lm
    from codistill.reproduce_codegen import _hidden_arms_if_derived, derivation_problem

    teacher = make_tiny_causal_lm(tmp_path / "teacher", num_layers=4, seed=0)
    derive_student(teacher, tmp_path / "derived", 2)
    other = make_tiny_causal_lm(tmp_path / "other", num_layers=2, seed=1)  # no derivation.json
    assert derivation_problem(tmp_path / "derived", teacher) is None
    assert "was not derived from" in derivation_problem(other, teacher)
    arms = ["sft", "ce", "kd-hidden"]
    assert _hidden_arms_if_derived(arms, tmp_path / "derived", teacher, chosen=True) == arms
    assert _hidden_arms_if_derived(arms, other, teacher, chosen=False) == ["sft", "ce"]
    with pytest.raises(ValueError, match=r"'kd-hidden' .* was not derived from"):
        _hidden_arms_if_derived(arms, other, teacher, chosen=True)
    bigger = make_tiny_causal_lm(tmp_path / "bigger", num_layers=6, seed=2)
    assert "derived from a 4-layer teacher, and this teacher has 6" in derivation_problem(
        tmp_path / "derived", bigger
    )
    with pytest.raises(ValueError, match=r"'kd-hidden' .*derivation.json: derived from a 4-"):
        _hidden_arms_if_derived(arms, tmp_path / "derived", bigger, chosen=True)


def test_the_baseline_always_runs_first():
    assert study_arms(["kd"]) == [BASELINE, "kd"]
    assert study_arms(None)[0] == BASELINE and set(study_arms(None)) == set(ARMS)


def test_the_teacher_is_scored_from_the_gguf_it_taught_from(tmp_path, monkeypatch):
    """The teacher wrote the targets and the cache through its GGUF; it is scored through that
    same file, while a student (``gguf`` not given) goes through a bfloat16 export."""
    import codistill.evaluation.runner as runner
    import codistill.reproduce_codegen as study

    seen = []
    monkeypatch.setattr(runner, "run_eval", lambda cfg: seen.append(cfg.model_backend))
    monkeypatch.setattr(study, "export_bf16", lambda root, name, model: tmp_path / f"{name}.gguf")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "test.jsonl").write_text("")
    taught = tmp_path / "teacher-q4.gguf"
    taught.write_bytes(b"GGUF")
    budget = CODEGEN_BUDGETS["cpu"]
    for name, gguf in (("teacher", taught), ("student_init", None)):
        model = tmp_path / name
        model.mkdir()
        study.evaluate_model(tmp_path, name, model, budget, tmp_path / "data", [], gguf)
    batch = "llamacpp-batch"  # eight answers per decode step
    assert seen == [f"{batch}:{taught}", f"{batch}:{tmp_path / 'student_init.gguf'}"]


def test_an_arm_stopped_before_its_first_checkpoint_starts_over(tmp_path, monkeypatch):
    """A run directory with files and no checkpoint used to make the rerun fail ("exists and
    is not empty"); it now trains afresh, and resumes only from a checkpoint."""
    import codistill.reproduce as reproduce
    import codistill.training.loop as loop

    seen = []

    def fake_distill(cfg, resume):
        seen.append((resume, sorted(p.name for p in Path(cfg.output_dir).glob("*"))))
        (Path(cfg.output_dir) / "checkpoint").mkdir(parents=True, exist_ok=True)

    monkeypatch.setattr(loop, "distill", fake_distill)
    work = tmp_path / "work"
    (work / "run").mkdir(parents=True)
    (work / "run" / "metrics.jsonl").write_text("{}\n")
    settings = {"student": "s", "train_data": "t", "valid_data": "v", "loss": "ce"}
    run = reproduce.train_resumably("alpha-temperature", settings, work)
    assert seen == [(False, [])] and not (run / "checkpoint").exists()
    (run / "checkpoint").mkdir()
    (run / "checkpoint" / "trainer_state.json").write_text("{}")
    reproduce.train_resumably("alpha-temperature", settings, work)
    assert seen[1][0] is True


def test_arms_can_be_scored_at_their_best_held_out_checkpoint(smoke_run, capsys):
    out, argv = smoke_run
    assert main([*argv, "--checkpoint", "best"]) == 0
    assert "codegen-arm-kd: cached" in capsys.readouterr().out  # training is not redone
    summary = json.loads((out / "codegen" / "reproduce.json").read_text())
    assert summary["checkpoint"] == "best"
    for arm in ("sft", "kd"):
        metrics = json.loads((Path(summary["evals"][arm]) / "metrics.json").read_text())
        assert metrics["config"]["model"] == str(Path(summary["runs"][arm]) / "best")
    assert "lowest held-out CE" in (out / "codegen" / "report.md").read_text()


def test_the_teacher_can_write_several_sampled_solutions_per_prompt(tmp_path):
    """``--teacher-samples 3``: three sampled outputs per prompt, each distinct one a target."""
    mbpp = tmp_path / "mbpp.json"
    mbpp.write_text(json.dumps(MBPP))
    out = tmp_path / "out"
    argv = ["reproduce", "codegen", "--budget", "smoke", "--out", str(out), "--mbpp", str(mbpp)]
    assert main([*argv, "--arms", "sft", "--teacher-samples", "3"]) == 0
    summary = json.loads((out / "codegen" / "reproduce.json").read_text())
    assert summary["teacher_samples"] == 3
    lines = (
        (Path(summary["stages"]["outputs"]["verified"]) / "generations.jsonl")
        .read_text()
        .splitlines()
    )
    header, entries = json.loads(lines[0]), [json.loads(line) for line in lines[1:]]
    assert header["decoding"]["n"] == 3 and header["decoding"]["temperature"] == 0.8
    assert all(len(e["outputs"]) == 3 for e in entries)
    distinct = sum(len({o for o in e["outputs"] if o.strip()}) for e in entries)
    info = json.loads((Path(summary["runs"]["sft"]) / "run.json").read_text())
    assert distinct > len(entries)  # sampling gave more targets than one per prompt
    assert info["tokenization"]["examples"] == distinct
    assert "3 solutions per training prompt, sampled" in (out / "codegen" / "report.md").read_text()


def test_the_arms_learning_rate_can_be_set_for_all_of_them(smoke_run, capsys):
    out, argv = smoke_run
    assert main([*argv, "--arms", "sft", "--student-lr", "0.0123"]) == 0
    printed = capsys.readouterr().out
    assert "codegen-outputs: cached" in printed  # only the arm and its evaluation are new
    assert "codegen-arm-sft: building" in printed
    summary = json.loads((out / "codegen" / "reproduce.json").read_text())
    assert summary["budget"]["student_lr"] == 0.0123
    config = json.loads((Path(summary["runs"]["sft"]) / "run.json").read_text())["config"]
    assert config["lr"] == 0.0123
    assert "at lr 0.0123 from that init" in (out / "codegen" / "report.md").read_text()


def test_the_arms_steps_can_be_set_for_all_of_them(smoke_run):
    out, argv = smoke_run
    assert main([*argv, "--arms", "sft,ce", "--student-steps", "7"]) == 0
    summary = json.loads((out / "codegen" / "reproduce.json").read_text())
    assert summary["budget"]["student_steps"] == 7
    for arm in ("sft", "ce"):
        run = Path(summary["runs"][arm])
        config = json.loads((run / "run.json").read_text())["config"]
        assert config["max_steps"] == 7 and config["valid_every_steps"] == 1  # each quarter
        assert [r["step"] for r in _train_rows(run)] == list(range(1, 8))
    assert "every arm trains 7 steps" in (out / "codegen" / "report.md").read_text()


def test_training_prompts_in_humaneval_dress_end_to_end(smoke_run, capsys):
    out, argv = smoke_run
    assert main([*argv, "--arms", "sft", "--train-prompts", "humaneval"]) == 0
    printed = capsys.readouterr().out
    assert "codegen-data: building" in printed and "codegen-arm-sft: building" in printed
    summary = json.loads((out / "codegen" / "reproduce.json").read_text())
    assert summary["train_prompts"] == "humaneval"
    tested = Path(summary["stages"]["data"]) / "train-tested.jsonl"
    assert all(json.loads(x)["prompt"].startswith("def ") for x in tested.read_text().splitlines())
    assert "written as HumanEval writes its prompts" in (out / "codegen" / "report.md").read_text()


def _record(source: str, prompt: str, language: str = "python") -> CodegenRecord:
    return CodegenRecord(
        id=f"{source}/1", source=source, prompt=prompt, entry_point="f", tests="", language=language
    )


def test_answer_shape_parses_the_program_the_completion_stands_for():
    body = _record("humaneval", 'def f(x):\n    """Twice x."""\n')
    assert answer_shape(body, "    return 2 * x\n") == {"parses": True, "repeats": False}
    # A HumanEval completion is a body: alone it would not parse, after its prompt it does; an
    # unclosed bracket does not parse either way.
    assert answer_shape(body, "    return (2 * x\n")["parses"] is False
    # MBPP answers are whole programs: the description prompt is not part of them.
    mbpp = _record("mbpp", "Write a function f that doubles x.\n")
    assert answer_shape(mbpp, "def f(x):\n    return 2 * x\n")["parses"] is True
    assert answer_shape(mbpp, "def f(x)\n    return 2 * x\n")["parses"] is False
    assert answer_shape(mbpp, "ok\x00")["parses"] is False  # a null byte: ValueError, not a crash
    # Other languages are not parsed here.
    c = _record("humaneval-c", "int f(int x) {\n", language="c")
    assert answer_shape(c, "  return 2 * x;\n}\n")["parses"] is None


def test_answer_shape_counts_a_long_line_repeated_five_times_as_a_runaway():
    rec = _record("mbpp", "Write f.\n")
    loop = "def f(x):\n" + "    x = x + 1  # again\n" * 5
    assert answer_shape(rec, loop)["repeats"] is True
    assert answer_shape(rec, "def f(x):\n" + "    x = x + 1  # again\n" * 4)["repeats"] is False
    # Short lines recur legitimately (8 characters or fewer).
    assert answer_shape(rec, "def f(x):\n" + "    pass\n" * 9)["repeats"] is False
