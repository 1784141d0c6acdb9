"""``codistill report``: recognising run directories, tables, plots, escaping, the CLI.

Run directories are written by hand in ``tmp_path`` in the shapes ``codistill distill``,
``quickstart``, ``sweep`` and ``eval`` write; no model is loaded.
"""

from __future__ import annotations

import argparse
import base64
import json
import re
from pathlib import Path

import pytest

from codistill.cli import report as report_cli
from codistill.report import plots, render
from codistill.report.render import ReportError, collect, render_html, render_markdown

# Code with every character HTML and Markdown care about.
NASTY = "assert a < b && c > d | '</td><script>alert(1)</script>'"


def _write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1))


def make_distill_run(path: Path, terms=("kl", "ce"), steps=(1, 5, 10), final=None) -> Path:
    """``run.json`` + ``metrics.jsonl`` as ``codistill distill`` writes them."""
    final = final or {"valid_loss": 3.5, "valid_tokens": 80, "kind": "valid", "step": steps[-1]}
    _write_json(
        path / "run.json",
        {
            "config": {"loss": "alpha_temperature" if len(terms) > 1 else "ce", "alpha": 0.5},
            "versions": {"python": "3.11"},
            "parameters": {
                "student": {"total": 42_000_000, "non_embedding": 22_000_000},
                "teacher": {"total": 268_000_000, "non_embedding": 100_000_000},
            },
            "status": "finished",
            "global_step": steps[-1],
            "total_steps": steps[-1],
            "wall_seconds": 12.5,
            "final_validation": final,
            "best": {"metric": "valid_loss", "value": final["valid_loss"]},
        },
    )
    lines = []
    for i, step in enumerate(steps):
        row = {"kind": "train", "step": step, "epoch": 0, "lr": 1e-3, "tokens_per_s": 500.0}
        for t, term in enumerate(terms):
            row[term] = 20.0 / (i + 1) + t
            row[f"w_{term}"] = 1.0 / len(terms)
        row["loss"] = sum(row[t] for t in terms) / len(terms)
        lines.append(row)
    lines.append({**final, "kind": "valid"})
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    return path


def make_quickstart(path: Path, n_examples: int = 3) -> Path:
    _write_json(
        path / "quickstart.json",
        {
            "options": {"test_examples": 40},
            "rows": [
                {
                    "model": "teacher",
                    "params_total": 268_098_176,
                    "params_non_embedding": 100_326_016,
                    "size_mb": 1054.6,
                    "ms_per_sample": 913.8,
                    "gt_exact_match": 0.05,
                    "gt_similarity": 0.5,
                    "teacher_exact_match": None,
                    "teacher_similarity": None,
                },
                {
                    "model": "student_kd",
                    "params_total": 42_244_608,
                    "params_non_embedding": 22_295_168,
                    "size_mb": 165.9,
                    "ms_per_sample": 245.8,
                    "gt_exact_match": 0.0,
                    "gt_similarity": 0.4,
                    "teacher_exact_match": 0.0,
                    "teacher_similarity": 0.3,
                },
                {
                    "model": "student_ce",
                    "params_total": 42_244_608,
                    "params_non_embedding": 22_295_168,
                    "size_mb": 165.9,
                    "ms_per_sample": 240.8,
                    "gt_exact_match": 0.0,
                    "gt_similarity": 0.43,
                    "teacher_exact_match": 0.0,
                    "teacher_similarity": 0.33,
                },
            ],
            "examples": [
                {
                    "target": NASTY if i == 0 else f"self.assertEqual(x, {i})",
                    "teacher": f"self.assertEqual(y, {i})",
                    "student_kd": "self.assertEqual(TypeError):",
                    "student_ce": f"self.assertTrue(z & {i})",
                }
                for i in range(n_examples)
            ],
        },
    )
    make_distill_run(path / "kd", terms=("kl", "ce"))
    make_distill_run(path / "ce", terms=("ce",))
    (path / "data").mkdir()  # not a run: ignored
    return path


def make_eval(path: Path, student_f1=0.4, reference_path="/teachers/gemma", **extra) -> Path:
    """``metrics.json`` in the shape ``codistill eval`` writes."""
    scores = {"precision": 0.5, "recall": 0.4, "f1": student_f1, "similarity": 0.6}
    _write_json(
        path / "metrics.json",
        {
            "task": "assertion",
            "data": "test.jsonl",
            "n": 40,
            "decoding": {"max_new_tokens": 48, "do_sample": False},
            "models": {
                "student": {
                    "path": str(path / "final"),
                    "efficiency": {
                        "params_total": 40_000_000,
                        "size_mb": 160.0,
                        "ms_per_sample": 250.0,
                        "tokens_per_s": 400.0,
                    },
                    "vs_truth": scores,
                    "vs_reference": {"f1": 0.7, "similarity": 0.8},
                },
                "reference": {
                    "path": reference_path,
                    "efficiency": {
                        "params_total": 250_000_000,
                        "size_mb": 1000.0,
                        "ms_per_sample": 1000.0,
                        "tokens_per_s": 100.0,
                    },
                    "vs_truth": {"precision": 0.8, "recall": 0.5, "f1": 0.5, "similarity": 0.75},
                },
            },
            "ratios": {"params_total": 0.16, "size_mb": 0.16, "peak_memory_mb": 0.3},
            **extra,
        },
    )
    return path


def make_sweep(path: Path) -> Path:
    """``sweep.json`` rows (grid point, final metrics, run_dir) and the runs under runs/."""
    rows = []
    for alpha in (0.1, 0.5):
        for temperature in (1.0, 4.0):
            run_dir = path / "runs" / f"alpha={alpha}_temperature={temperature}"
            loss = 3.0 + alpha - temperature / 10
            final = {"valid_loss": loss, "valid_tokens": 80, "valid_exact_match": alpha / 2}
            make_distill_run(run_dir, final={**final, "kind": "valid", "step": 10})
            rows.append(
                {
                    "alpha": alpha,
                    "temperature": temperature,
                    **final,
                    "epoch": 0,
                    "step": 10,
                    "run_dir": str(run_dir),
                }
            )
    _write_json(path / "sweep.json", rows)
    return path


def _section(page: str, ident: str) -> str:
    match = re.search(rf'<section id="{ident}">(.*?)</section>', page, re.S)
    assert match, f"no section {ident}"
    return match.group(1)


def _rows(section_html: str) -> list[list[str]]:
    """Text of each body row's cells (tags stripped, entities kept)."""
    cells = [
        [re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
        for row in re.findall(r"<tr>(.*?)</tr>", section_html, re.S)
    ]
    return [row for row in cells if row]  # header rows have <th> cells only


@pytest.fixture(scope="module")
def quickstart_page(tmp_path_factory) -> str:
    root = make_quickstart(tmp_path_factory.mktemp("report") / "quickstart")
    return render_html(collect([root]))


# --------------------------------------------------------------------------- collect


def test_collect_reads_a_quickstart_table_and_its_sub_runs(tmp_path):
    data = collect([make_quickstart(tmp_path / "qs")])
    assert data.kinds[str(tmp_path / "qs")] == ["quickstart"]
    (comp,) = data.comparisons
    assert comp.teacher.name == "teacher"
    assert [s.name for s in comp.students] == ["student_kd", "student_ce"]
    assert comp.students[0].vs_truth == {"exact_match": 0.0, "similarity": 0.4}
    assert comp.students[0].vs_teacher == {"exact_match": 0.0, "similarity": 0.3}
    assert comp.teacher.vs_teacher == {}  # None in the JSON: no agreement with itself
    assert sorted(r.name for r in data.distill_runs) == ["qs/ce", "qs/kd"]


def test_collect_recognises_a_directory_that_is_both_a_distill_and_an_eval_run(tmp_path):
    run = make_eval(make_distill_run(tmp_path / "kd"))
    data = collect([run])
    assert data.kinds[str(run)] == ["eval", "distill"]
    assert len(data.comparisons) == 1 and len(data.distill_runs) == 1


def test_collect_names_a_directory_that_is_no_run_and_what_was_expected(tmp_path):
    (tmp_path / "notes").mkdir()
    with pytest.raises(ReportError) as err:
        collect([tmp_path / "notes"])
    message = str(err.value)
    assert str(tmp_path / "notes") in message
    for expected in ("metrics.json", "run.json + metrics.jsonl", "quickstart.json", "sweep.json"):
        assert expected in message


def test_collect_says_when_a_run_json_has_no_metrics_jsonl(tmp_path):
    run = make_distill_run(tmp_path / "run")
    (run / "metrics.jsonl").unlink()
    with pytest.raises(ReportError, match="has run.json but no metrics.jsonl"):
        collect([run])


def test_collect_rejects_a_missing_path_and_a_file(tmp_path):
    with pytest.raises(ReportError, match="no such directory"):
        collect([tmp_path / "absent"])
    (tmp_path / "file.json").write_text("{}")
    with pytest.raises(ReportError, match="not a directory"):
        collect([tmp_path / "file.json"])


def test_a_bad_metrics_line_is_named_with_file_and_line(tmp_path):
    run = make_distill_run(tmp_path / "run")
    with open(run / "metrics.jsonl", "a") as fh:
        fh.write('{"kind": "train", "loss": \n')
    lines = len((run / "metrics.jsonl").read_text().splitlines())
    with pytest.raises(ReportError, match=rf"metrics.jsonl:{lines}: not valid JSON"):
        collect([run])


def test_an_eval_run_with_most_keys_missing_still_renders(tmp_path):
    _write_json(tmp_path / "e" / "metrics.json", {"models": {"student": {"vs_truth": {"f1": 0.3}}}})
    page = render_html(collect([tmp_path / "e"]))
    assert _rows(_section(page, "metrics")) == [["f1", "0.3"]]  # no teacher: no ratio column
    assert 'id="efficiency"' not in page  # nothing to show: section left out


def test_codegen_pass_at_k_per_dataset_becomes_one_row_each(tmp_path):
    run = tmp_path / "codegen"
    _write_json(
        run / "metrics.json",
        {
            "task": "codegen",
            "models": {
                "student": {"vs_truth": {"humaneval": {"pass@1": 0.1, "pass@10": 0.2}}},
                "reference": {"vs_truth": {"humaneval": {"pass@1": 0.4, "pass@10": 0.5}}},
            },
        },
    )
    rows = _rows(_section(render_html(collect([run])), "metrics"))
    assert ["humaneval/pass@1", "0.4", "0.1", "0.25×"] in rows
    assert ["humaneval/pass@10", "0.5", "0.2", "0.4×"] in rows


def test_two_eval_runs_of_one_teacher_share_a_table_with_a_column_each(tmp_path):
    example = {"target": "x < 1", "reference": "x", "student": "y"}
    kd = make_eval(tmp_path / "kd", student_f1=0.4, examples=[example])
    ce = make_eval(tmp_path / "ce", student_f1=0.3)
    data = collect([kd, ce])
    (comp,) = data.comparisons
    assert [s.name for s in comp.students] == ["kd", "ce"]
    assert data.comparisons[0].examples == [{"target": "x < 1", "teacher": "x", "kd": "y"}]
    other_teacher = make_eval(tmp_path / "other", reference_path="/teachers/other")
    assert len(collect([kd, ce, other_teacher]).comparisons) == 2


# --------------------------------------------------------------------------- tables


def test_metrics_table_has_teacher_student_and_ratio_columns(tmp_path):
    page = render_html(collect([make_eval(tmp_path / "kd")]))
    section = _section(page, "metrics")
    assert re.findall(r"<th>(.*?)</th>", section)[:4] == ["metric", "teacher", "kd", "kd / teacher"]
    rows = _rows(section)
    assert ["f1", "0.5", "0.4", "0.8×"] in rows
    assert ["precision", "0.8", "0.5", "0.625×"] in rows
    # Agreement with the teacher: students only.
    assert ["f1", "0.7"] in rows and ["similarity", "0.8"] in rows


def test_efficiency_ratios_are_computed_and_fall_back_to_the_given_ones(tmp_path):
    rows = _rows(_section(render_html(collect([make_eval(tmp_path / "kd")])), "efficiency"))
    assert ["parameters", "250.0M", "40.0M", "0.16×"] in rows
    assert ["latency (ms/sample)", "1,000", "250", "0.25×"] in rows
    assert ["throughput (tokens/s)", "100", "400", "4×"] in rows
    # No values, only metrics.json's "ratios": the ratio is still reported.
    # ... in its usual place, not after the rows that have values.
    assert [r[0] for r in rows] == [
        "parameters",
        "size (MB)",
        "peak memory (MB)",
        "latency (ms/sample)",
        "throughput (tokens/s)",
    ]


def test_quickstart_tables_show_every_model(quickstart_page):
    rows = _rows(_section(quickstart_page, "efficiency"))
    assert rows[0] == ["parameters", "268.1M", "42.2M", "0.158×", "42.2M", "0.158×"]
    truth = _rows(_section(quickstart_page, "metrics"))
    assert ["similarity", "0.5", "0.4", "0.8×", "0.43", "0.86×"] in truth
    assert ["exact_match", "0.05", "0", "0×", "0", "0×"] in truth


def test_sections_have_stable_ids_in_page_order(quickstart_page):
    ids = re.findall(r'<section id="([^"]+)"', quickstart_page)
    assert ids == ["runs", "efficiency", "metrics", "training", "examples"]


def test_examples_are_html_escaped(quickstart_page):
    examples = _section(quickstart_page, "examples")
    assert "<script>" not in quickstart_page
    assert html_escaped(NASTY) in examples
    assert "z &amp; 1" in examples


def html_escaped(text: str) -> str:
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("'", "&#x27;")
    )


def test_examples_table_shows_the_first_n(tmp_path):
    data = collect([make_quickstart(tmp_path / "qs", n_examples=5)], max_examples=2)
    section = _section(render_html(data), "examples")
    assert len(_rows(section)) == 2
    assert "first 2 of 5" in section
    assert re.findall(r"<th>(.*?)</th>", section) == [
        "#",
        "target",
        "teacher",
        "student_kd",
        "student_ce",
    ]


def test_html_is_self_contained(quickstart_page):
    assert "<script" not in quickstart_page and "<link" not in quickstart_page
    assert not re.search(r"(src|href)=\"(https?:)?//", quickstart_page)
    sources = re.findall(r'<img[^>]* src="([^"]+)"', quickstart_page)
    assert len(sources) == 4  # efficiency ratios, scores, two training curves
    for src in sources:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"


def test_training_table_lists_each_run_with_its_final_validation(quickstart_page):
    rows = _rows(_section(quickstart_page, "training"))
    assert rows[0][:5] == ["quickstart/ce", "ce", "finished", "10 / 10", "12.5"]
    # student params, params / teacher, final valid_loss, best
    assert rows[1][5:] == ["42.0M", "0.157×", "3.5", "valid_loss = 3.5"]


# --------------------------------------------------------------------------- plots and sweeps


def test_loss_terms_are_the_weighted_terms_and_the_total():
    train = [{"step": 1, "loss": 2.0, "kl": 1.0, "ce": 3.0, "w_kl": 0.5, "w_ce": 0.5}]
    assert plots.loss_terms(train) == ["loss", "kl", "ce"]
    ce_only = [{"step": 1, "loss": 2.0, "ce": 2.0, "w_ce": 1.0, "lr": 0.1, "tokens_per_s": 9.0}]
    assert plots.loss_terms(ce_only) == ["loss"]  # ce == loss would hide the total's line
    assert plots.loss_terms([{"step": 1, "loss": 2.0, "lr": 0.1, "grad_norm": 1.0}]) == [
        "loss",
        "grad_norm",
    ]


def test_sweep_keys_are_read_from_the_run_directory_names(tmp_path):
    data = collect([make_sweep(tmp_path / "sweep")])
    (sweep,) = data.sweeps
    assert sweep.keys == ["alpha", "temperature"]
    assert sweep.metrics == ["valid_loss", "valid_exact_match"]
    assert len(sweep.runs) == 4
    assert data.distill_runs == []  # a sweep's runs are summarised, not listed one by one


def test_sweep_section_plots_the_chosen_metric_first_then_every_metric(tmp_path):
    sweep = make_sweep(tmp_path / "sweep")
    blocks = render.sweep_section(collect([sweep], sweep_metric="valid_exact_match"))
    names = [b.name for b in blocks if isinstance(b, render.Plot)]
    assert names == ["sweep-sweep-valid_exact_match", "sweep-sweep-valid_loss"]
    table = blocks[0]
    assert table.columns == ["alpha", "temperature", "valid_loss", "valid_exact_match", "run"]
    assert table.rows[0] == ["0.1", "1", "3", "0.05", "alpha=0.1_temperature=1.0"]


def test_an_unknown_sweep_metric_is_an_error_that_lists_the_known_ones(tmp_path):
    with pytest.raises(ReportError, match="'valid_bleu' is in no sweep row.*valid_loss"):
        collect([make_sweep(tmp_path / "sweep")], sweep_metric="valid_bleu")


# --------------------------------------------------------------------------- Markdown, files


def test_markdown_saves_each_plot_and_links_it_relative_to_the_report(tmp_path):
    data = collect([make_quickstart(tmp_path / "qs")])
    markdown = render_markdown(data, tmp_path / "out" / "assets")
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    assert len(links) == 4
    for link in links:
        assert link.startswith("assets/")
        assert (tmp_path / "out" / link).read_bytes()[:4] == b"\x89PNG"
    for ident in ("efficiency", "metrics", "training", "examples"):
        assert f'<a id="{ident}"></a>' in markdown


def test_markdown_code_cells_keep_the_table_intact(tmp_path):
    markdown = render_markdown(collect([make_quickstart(tmp_path / "qs")]), tmp_path / "a")
    (row,) = [line for line in markdown.splitlines() if line.startswith("| 1 |")]
    # The code's pipe is escaped: the row still has exactly 5 cells (6 unescaped borders).
    assert len(re.findall(r"(?<!\\)\|", row)) == 6
    assert "`assert a < b && c > d \\| '</td><script>alert(1)</script>'`" in row


def test_write_report_replaces_the_previous_report_whole(tmp_path):
    run = make_distill_run(tmp_path / "run")
    out = tmp_path / "out"
    (out / "report_assets").mkdir(parents=True)
    (out / "report_assets" / "stale.png").write_bytes(b"old")
    paths = render.write_report(collect([run]), out)
    assert paths["html"].read_text().startswith("<!DOCTYPE html>")
    assert paths["markdown"].read_text().startswith("# codistill report")
    assert sorted(p.name for p in (out / "report_assets").iterdir()) == ["training-run.png"]
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "report.md", "report_assets"]


# --------------------------------------------------------------------------- section registry


def test_a_registered_section_appears_where_asked_without_editing_the_renderer(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(render, "SECTIONS", list(render.SECTIONS))

    def fidelity(data):
        rows = [[r.name, "0.9"] for r in data.distill_runs]
        return [render.Table("metamorphic fidelity", ["run", "consistency"], rows)]

    render.register_section("fidelity", "Fidelity", fidelity, before="training")
    page = render_html(collect([make_quickstart(tmp_path / "qs")]))
    ids = re.findall(r'<section id="([^"]+)"', page)
    assert ids == ["runs", "efficiency", "metrics", "fidelity", "training", "examples"]
    assert _rows(_section(page, "fidelity")) == [["qs/ce", "0.9"], ["qs/kd", "0.9"]]


def test_registering_an_id_again_replaces_that_section(monkeypatch):
    monkeypatch.setattr(render, "SECTIONS", list(render.SECTIONS))
    render.register_section("examples", "Samples", lambda data: [])
    assert [s.id for s in render.SECTIONS].count("examples") == 1
    assert render.SECTIONS[-1].title == "Samples"


# --------------------------------------------------------------------------- CLI


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="codistill")
    report_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["report", *argv])
    return args.func(args)


def test_cli_writes_the_report_into_the_first_run_dir_by_default(tmp_path, capsys):
    run = make_distill_run(tmp_path / "run")
    assert _cli([str(run)]) == 0
    assert (run / "report.html").is_file() and (run / "report.md").is_file()
    assert str(run / "report.html") in capsys.readouterr().out


def test_cli_combines_several_dirs_into_out(tmp_path):
    out = tmp_path / "out"
    qs, sweep = make_quickstart(tmp_path / "qs"), make_sweep(tmp_path / "sweep")
    assert _cli([str(qs), str(sweep), "--out", str(out), "--metric", "valid_exact_match"]) == 0
    page = (out / "report.html").read_text()
    assert re.findall(r'<section id="([^"]+)"', page) == [
        "runs",
        "efficiency",
        "metrics",
        "training",
        "sweep",
        "examples",
    ]


def test_cli_reports_a_bad_directory_as_a_usage_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert _cli([str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"codistill report: error: {tmp_path / 'empty'} is not a codistill run")
    assert not (tmp_path / "empty" / "report.html").exists()


def test_report_runs_through_the_main_entry_point(tmp_path):
    # The real `codistill` parser, unpatched: `report` must be registered there, after the
    # steps whose runs it reads (pipeline order).
    from codistill.cli import main as cli_main

    names = cli_main.SUBCOMMANDS
    assert names.index("report") > max(names.index(s) for s in ("distill", "eval", "fidelity"))
    run = make_eval(tmp_path / "eval")
    assert cli_main.main(["report", str(run), "--out", str(tmp_path / "out")]) == 0
    assert 'id="metrics"' in (tmp_path / "out" / "report.html").read_text()
