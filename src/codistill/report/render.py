"""The run report: ``collect`` run directories, build sections, render HTML and Markdown.

Pipeline::

    collect(run_dirs) -> ReportData        recognise and read each directory
    build_sections(data) -> [Section]      every registered section builder, in page order
    render_html / render_markdown          the same sections as one self-contained HTML page
                                           (PNG plots as base64 data URIs, inline CSS) or as
                                           Markdown with the plots saved next to it
    write_report(data, out_dir)            report.html, report.md, report_assets/, atomically

Directories recognised (one directory may be several kinds, e.g. a distill run that
``codistill eval`` later wrote ``metrics.json`` into):

    eval        metrics.json            teacher (``reference``) vs students, efficiency, ratios
    distill     run.json + metrics.jsonl
    quickstart  quickstart.json         its table and examples, plus each sub-run (kd/, ce/)
    sweep       sweep.json              rows of swept keys + final metrics, runs under runs/

Adding a section (a later issue's fidelity table) needs no edit here: put a module in the
``codistill.report`` package that calls ``register_section`` at import time; every module of
the package is imported before the sections are built::

    from codistill.report.render import Table, register_section

    def fidelity(data):
        return [Table("fidelity", ["relation", "student"], rows)] if rows else []

    register_section("fidelity", "Fidelity", fidelity, before="training")
"""

from __future__ import annotations

import base64
import html
import importlib
import json
import math
import os
import pkgutil
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import codistill.report as report_package
from codistill.report import plots
from codistill.report.collect import (  # noqa: F401 (collect, ReportError: the public entry points)
    EFFICIENCY_KEYS,
    LABELS,
    NOT_METRICS,
    Comparison,
    ModelResult,
    ReportData,
    ReportError,
    as_number,
    collect,
)
from codistill.rundir import fresh_tmp_dir, replace_dir

# --------------------------------------------------------------------------- blocks, sections


@dataclass
class Table:
    """A table of already formatted cells; ``code_columns`` hold code (monospace, kept as is)."""

    title: str
    columns: list[str]
    rows: list[list[str]]
    note: str = ""
    code_columns: frozenset[int] = frozenset()


@dataclass
class Plot:
    """A PNG figure; ``name`` is its file stem in ``report_assets/`` (unique in a report)."""

    name: str
    title: str
    png: bytes


@dataclass
class Text:
    text: str


Block = Table | Plot | Text
SectionBuilder = Callable[[ReportData], list[Block]]


@dataclass
class Section:
    id: str
    title: str
    blocks: list[Block]


@dataclass(frozen=True)
class SectionSpec:
    id: str  # HTML id and Markdown anchor: stable, other pages and tests link to it
    title: str
    build: SectionBuilder  # returns no blocks when it has nothing to show: section left out


SECTIONS: list[SectionSpec] = []


def register_section(
    id: str, title: str, build: SectionBuilder, *, before: str | None = None
) -> None:
    """Add a section to every report, at the end or before the section ``before``.

    Registering an id again replaces that section in place (a module imported twice, or a
    later issue overriding a built-in section).
    """
    spec = SectionSpec(id, title, build)
    for i, old in enumerate(SECTIONS):
        if old.id == id:
            SECTIONS[i] = spec
            return
    ids = [s.id for s in SECTIONS]
    SECTIONS.insert(ids.index(before) if before in ids else len(SECTIONS), spec)


def _import_section_modules() -> None:
    """Import every module of ``codistill.report`` so the sections they register are present."""
    for info in pkgutil.iter_modules(report_package.__path__):
        importlib.import_module(f"{report_package.__name__}.{info.name}")


def build_sections(data: ReportData) -> list[Section]:
    _import_section_modules()
    sections = []
    for spec in list(SECTIONS):
        blocks = spec.build(data)
        if blocks:
            sections.append(Section(spec.id, spec.title, blocks))
    return sections


# --------------------------------------------------------------------------- formatting


def fmt(value: Any, key: str = "") -> str:
    """A cell: parameter counts as 42.2M, large numbers with separators, others 4 digits."""
    if value is None or value == "":
        return "—"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        if not math.isfinite(value):
            return str(value)
        if key.startswith("params") and abs(value) >= 1e4:
            return f"{value / 1e9:.2f}B" if abs(value) >= 1e9 else f"{value / 1e6:.1f}M"
        if isinstance(value, int):
            return f"{value:,}"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.4g}"
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


def ratio(student: float | None, teacher: float | None, given: float | None = None) -> str:
    if as_number(student) is not None and as_number(teacher):
        return f"{student / teacher:.3g}×"
    return "—" if given is None else f"{given:.3g}×"


def label(key: str) -> str:
    return LABELS.get(key, key)


def _keys(results: list[ModelResult], attr: str, order: list[str] | None = None) -> list[str]:
    found = dict.fromkeys(k for r in results for k in getattr(r, attr))
    first = [k for k in order or [] if k in found]
    return first + [k for k in found if k not in first]


def comparison_table(
    comp: Comparison, attr: str, title: str, order: list[str] | None = None
) -> Table | None:
    """metric | teacher | student | student/teacher | ... for ``attr`` (efficiency, vs_truth)."""
    models = ([comp.teacher] if comp.teacher else []) + comp.students
    keys = _keys(models, attr)
    if attr == "efficiency":  # a ratio given without the values behind it still gets a row
        keys = list(dict.fromkeys(keys + [k for s in comp.students for k in s.ratios]))
    keys = [k for k in order or [] if k in keys] + [k for k in keys if k not in (order or [])]
    if not keys:
        return None
    columns = ["metric"] + (["teacher"] if comp.teacher else [])
    for s in comp.students:
        columns += [s.name] + ([f"{s.name} / teacher"] if comp.teacher else [])
    rows = []
    for key in keys:
        row = [label(key)]
        t = getattr(comp.teacher, attr).get(key) if comp.teacher else None
        if comp.teacher:
            row.append(fmt(t, key))
        for s in comp.students:
            v = getattr(s, attr).get(key)
            row.append(fmt(v, key))
            if comp.teacher:
                given = s.ratios.get(key) if attr == "efficiency" else None
                row.append(ratio(v, t, given))
        rows.append(row)
    return Table(title, columns, rows)


def _describe(comp: Comparison) -> str:
    info = comp.info
    parts = [f"from {comp.source}"]
    if "task" in info:
        parts.append(f"task {info['task']}")
    if "n" in info:
        parts.append(f"{info['n']} examples")
    if info.get("data"):
        parts.append(f"data {info['data']}")
    if isinstance(info.get("decoding"), dict) and info["decoding"]:
        parts.append("decoding " + ", ".join(f"{k}={v}" for k, v in info["decoding"].items()))
    if comp.teacher and comp.teacher.path:
        parts.append(f"teacher {comp.teacher.path}")
    return "; ".join(parts)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "plot"


# --------------------------------------------------------------------------- built-in sections


def runs_section(data: ReportData) -> list[Block]:
    rows = []
    for path in data.run_dirs:
        kinds = data.kinds.get(str(path), [])
        rows.append([str(path), ", ".join(kinds), _summary(data, path, kinds)])
    return [Table("run directories", ["directory", "kind", "contents"], rows)] if rows else []


def _summary(data: ReportData, path: Path, kinds: list[str]) -> str:
    parts = []
    if "quickstart" in kinds or "eval" in kinds:
        comp = next((c for c in data.comparisons if path in c.paths), None)
        if comp:
            teacher = ["teacher"] if comp.teacher else []
            parts.append(f"models: {', '.join(teacher + [s.name for s in comp.students])}")
    if "sweep" in kinds:
        sweep = next(s for s in data.sweeps if s.path == path)
        parts.append(f"{len(sweep.rows)} runs over {', '.join(sweep.keys) or '?'}")
    if "distill" in kinds:
        run = next((r for r in data.distill_runs if r.path.resolve() == path.resolve()), None)
        if run:
            parts.append(f"{run.info.get('status', '?')}, {run.info.get('global_step', '?')} steps")
    return "; ".join(parts)


def efficiency_section(data: ReportData) -> list[Block]:
    blocks: list[Block] = []
    for i, comp in enumerate(data.comparisons):
        table = comparison_table(comp, "efficiency", f"cost: {comp.source}", EFFICIENCY_KEYS)
        if table is None:
            continue
        table.note = (
            "student / teacher: below 1 is smaller or faster (for throughput, above 1 is faster)"
            if comp.teacher
            else "no teacher (reference) in this run: no ratios"
        )
        blocks.append(table)
        keys = _keys(comp.students, "efficiency", EFFICIENCY_KEYS)
        if comp.teacher and keys:
            series = {
                s.name: [
                    _ratio_value(s.efficiency.get(k), comp.teacher.efficiency.get(k)) for k in keys
                ]
                for s in comp.students
            }
            png = plots.grouped_bars(
                [label(k) for k in keys],
                series,
                f"student / teacher: {comp.source}",
                "ratio",
                reference_line=1.0,
            )
            blocks.append(Plot(f"efficiency-{i}-{_slug(comp.source)}", "efficiency ratios", png))
    return blocks


def _ratio_value(student: Any, teacher: Any) -> float | None:
    if as_number(student) is not None and as_number(teacher):
        return student / teacher
    return None


def metrics_section(data: ReportData) -> list[Block]:
    blocks: list[Block] = []
    for i, comp in enumerate(data.comparisons):
        truth = comparison_table(comp, "vs_truth", f"against the ground truth: {comp.source}")
        agree = comparison_table(
            Comparison(comp.source, None, comp.students),
            "vs_teacher",
            f"agreement with the teacher's outputs: {comp.source}",
        )
        if truth is None and agree is None:
            continue
        blocks.append(Text(_describe(comp)))
        if truth is not None:
            blocks.append(truth)
            models = ([comp.teacher] if comp.teacher else []) + comp.students
            keys = _keys(models, "vs_truth")
            png = plots.grouped_bars(
                keys,
                {m.name: [m.vs_truth.get(k) for k in keys] for m in models},
                f"against the ground truth: {comp.source}",
                "score",
            )
            blocks.append(Plot(f"metrics-{i}-{_slug(comp.source)}", "scores vs truth", png))
        if agree is not None:
            agree.note = "each student's outputs scored with the teacher's outputs as the target"
            blocks.append(agree)
    return blocks


def training_section(data: ReportData) -> list[Block]:
    blocks: list[Block] = []
    runs = data.distill_runs
    if runs:
        finals = [r.info.get("final_validation") or {} for r in runs]
        metric_keys = list(
            dict.fromkeys(
                k for f in finals for k, v in f.items() if k not in NOT_METRICS and as_number(v)
            )
        )
        columns = ["run", "objective", "status", "steps", "wall (s)", "student params"]
        columns += ["params / teacher", *metric_keys, "best"]
        rows = []
        for run, final in zip(runs, finals, strict=True):
            info = run.info
            params = info.get("parameters") or {}
            student = (params.get("student") or {}).get("total")
            teacher = (params.get("teacher") or {}).get("total")
            best = info.get("best") or {}
            steps = info.get("global_step")
            if info.get("total_steps") is not None:
                steps = f"{fmt(steps)} / {fmt(info['total_steps'])}"
            rows.append(
                [
                    run.name,
                    fmt((info.get("config") or {}).get("loss")),
                    fmt(info.get("status")),
                    fmt(steps),
                    fmt(info.get("wall_seconds")),
                    fmt(student, "params"),
                    ratio(student, teacher),
                    *[fmt(final.get(k), k) for k in metric_keys],
                    f"{best['metric']} = {fmt(best.get('value'))}" if best.get("metric") else "—",
                ]
            )
        blocks.append(Table("distillation runs", columns, rows, note="final validation shown"))
        for run in runs:
            png = plots.training_curves(run.train, run.valid, run.name)
            blocks.append(Plot(f"training-{_slug(run.name)}", f"training curves: {run.name}", png))
    for sweep in data.sweeps:
        if sweep.runs:
            png = plots.runs_overlay(
                [(r.name, r.train, r.valid) for r in sweep.runs], f"sweep runs: {sweep.path.name}"
            )
            blocks.append(
                Plot(f"training-sweep-{_slug(sweep.path.name)}", "training loss per run", png)
            )
    return blocks


def sweep_section(data: ReportData) -> list[Block]:
    blocks: list[Block] = []
    for sweep in data.sweeps:
        columns = [*sweep.keys, *sweep.metrics, "run"]
        rows = [
            [fmt(r.get(k), k) for k in sweep.keys + sweep.metrics]
            + [Path(str(r.get("run_dir", ""))).name or "—"]
            for r in sweep.rows
        ]
        blocks.append(Table(f"sweep: {sweep.path.name}", columns, rows))
        # The chosen metric first, then every other numeric validation metric.
        metrics = [data.sweep_metric] if data.sweep_metric in sweep.metrics else []
        metrics += [m for m in sweep.metrics if m not in metrics]
        for metric in metrics:
            if sweep.keys:
                png = plots.sweep_curves(sweep.rows, sweep.keys, metric)
                name = f"sweep-{_slug(sweep.path.name)}-{_slug(metric)}"
                blocks.append(Plot(name, f"sweep curves: {metric}", png))
    return blocks


def examples_section(data: ReportData) -> list[Block]:
    blocks: list[Block] = []
    for comp in data.comparisons:
        if not comp.examples:
            continue
        keys = list(dict.fromkeys(k for ex in comp.examples for k in ex))
        first = [k for k in ("target", "teacher", "reference") if k in keys]
        keys = first + [k for k in keys if k not in first]
        shown = comp.examples[: data.max_examples]
        rows = [[str(i)] + [ex.get(k, "") for k in keys] for i, ex in enumerate(shown, 1)]
        note = f"first {len(shown)} of {len(comp.examples)}"
        blocks.append(
            Table(
                f"examples: {comp.source}",
                ["#", *keys],
                rows,
                note=note,
                code_columns=frozenset(range(1, len(keys) + 1)),
            )
        )
    return blocks


register_section("runs", "Runs", runs_section)
register_section("efficiency", "Efficiency", efficiency_section)
register_section("metrics", "Teacher vs student", metrics_section)
register_section("training", "Training", training_section)
register_section("sweep", "Sweep", sweep_section)
register_section("examples", "Examples", examples_section)


# --------------------------------------------------------------------------- HTML

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d2330;
       margin: 0 auto; max-width: 1200px; padding: 16px 28px 48px; background: #fff; }
h1 { font-size: 22px; margin: 8px 0 4px; }
h2 { font-size: 18px; border-bottom: 2px solid #d8dee9; padding-bottom: 4px; margin-top: 32px; }
h3 { font-size: 14px; margin: 18px 0 6px; color: #3b4252; }
nav a { margin-right: 14px; }
.meta { color: #5e6779; font-size: 12px; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: 4px 0 6px; font-size: 13px; }
th, td { border: 1px solid #d8dee9; padding: 4px 8px; vertical-align: top; }
th { background: #eef1f6; text-align: left; }
tbody tr:nth-child(even) td { background: #f8f9fb; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.code code { font: 12px/1.35 ui-monospace, "DejaVu Sans Mono", monospace;
               white-space: pre-wrap; word-break: break-all; }
td.code { max-width: 360px; }
p.note { color: #5e6779; font-size: 12px; margin: 0 0 12px; }
figure { margin: 10px 0 18px; }
figure img { max-width: 100%; height: auto; border: 1px solid #e5e9f0; }
figcaption { color: #5e6779; font-size: 12px; }
"""

_NUMERIC = re.compile(r"^(—|[-+]?[\d.,]+(e[-+]?\d+)?\s*[%×MBK]?( / [\d.,]+)?)$")


def _cell(text: str, code: bool) -> str:
    if code:
        return f'<td class="code"><code>{html.escape(text)}</code></td>'
    cls = ' class="num"' if _NUMERIC.match(text) else ""
    return f"<td{cls}>{html.escape(text)}</td>"


def _html_block(block: Block) -> str:
    if isinstance(block, Text):
        return f"<p>{html.escape(block.text)}</p>"
    if isinstance(block, Plot):
        src = "data:image/png;base64," + base64.b64encode(block.png).decode("ascii")
        title = html.escape(block.title)
        return f'<figure><img alt="{title}" src="{src}"><figcaption>{title}</figcaption></figure>'
    head = "".join(f"<th>{html.escape(c)}</th>" for c in block.columns)
    body = "".join(
        "<tr>" + "".join(_cell(c, i in block.code_columns) for i, c in enumerate(row)) + "</tr>"
        for row in block.rows
    )
    note = f'<p class="note">{html.escape(block.note)}</p>' if block.note else ""
    return (
        f"<h3>{html.escape(block.title)}</h3>"
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>{note}"
    )


def sections_html(data: ReportData, sections: list[Section]) -> str:
    nav = " ".join(f'<a href="#{s.id}">{html.escape(s.title)}</a>' for s in sections)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(data.title)}</title><style>{CSS}</style></head><body>",
        f"<header><h1>{html.escape(data.title)}</h1>",
        f'<p class="meta">{html.escape(", ".join(str(p) for p in data.run_dirs))}</p>',
        f"<nav>{nav}</nav></header>",
    ]
    for s in sections:
        blocks = "\n".join(_html_block(b) for b in s.blocks)
        parts.append(f'<section id="{html.escape(s.id)}"><h2>{html.escape(s.title)}</h2>')
        parts.append(f"{blocks}</section>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def render_html(data: ReportData) -> str:
    """One self-contained page: inline CSS, plots as PNG data URIs, no script, no links out."""
    return sections_html(data, build_sections(data))


# --------------------------------------------------------------------------- Markdown


def _md_text(text: str) -> str:
    # What a Markdown renderer would read as markup, a cell border or raw HTML. Underscores
    # stay: GFM does not emphasise inside words (valid_loss), and escaping hurts the source.
    text = re.sub(r"([\\`*\[\]|])", r"\\\1", text)
    return html.escape(text, quote=False).replace("\n", " ")


def _md_code(text: str) -> str:
    if not text:
        return ""
    # A code span ends at a run of backticks as long as its fence: use a longer fence.
    fence = "`" * (max((len(m) for m in re.findall(r"`+", text)), default=0) + 1)
    body = text.replace("|", "\\|").replace("\n", " ⏎ ")
    pad = " " if body.startswith("`") or body.endswith("`") else ""
    return f"{fence}{pad}{body}{pad}{fence}"


def _md_block(block: Block, assets_dir: Path, link_dir: str) -> str:
    if isinstance(block, Text):
        return _md_text(block.text)
    if isinstance(block, Plot):
        file = f"{_slug(block.name)}.png"
        n = 1
        while (assets_dir / file).exists():  # two sweeps in directories of the same name
            n += 1
            file = f"{_slug(block.name)}-{n}.png"
        (assets_dir / file).write_bytes(block.png)
        return f"![{_md_text(block.title)}]({link_dir}/{file})"
    lines = [f"**{_md_text(block.title)}**", ""]
    lines.append("| " + " | ".join(_md_text(c) for c in block.columns) + " |")
    lines.append("|" + "|".join("---" for _ in block.columns) + "|")
    for row in block.rows:
        cells = [_md_code(c) if i in block.code_columns else _md_text(c) for i, c in enumerate(row)]
        lines.append("| " + " | ".join(cells) + " |")
    if block.note:
        lines += ["", f"*{_md_text(block.note)}*"]
    return "\n".join(lines)


def sections_markdown(
    data: ReportData, sections: list[Section], assets_dir: Path, link_dir: str | None = None
) -> str:
    assets_dir = Path(assets_dir)
    assets_dir.mkdir(parents=True, exist_ok=True)
    link_dir = link_dir or assets_dir.name
    parts = [f"# {_md_text(data.title)}", ""]
    parts += ["Run directories: " + ", ".join(f"`{p}`" for p in data.run_dirs), ""]
    parts += [" · ".join(f"[{_md_text(s.title)}](#{s.id})" for s in sections), ""]
    for s in sections:
        # Explicit anchors: heading slugs differ between Markdown renderers.
        parts += [f'<a id="{s.id}"></a>', "", f"## {_md_text(s.title)}", ""]
        for block in s.blocks:
            parts += [_md_block(block, assets_dir, link_dir), ""]
    return "\n".join(parts)


def render_markdown(data: ReportData, assets_dir: str | Path) -> str:
    """The same sections as Markdown; plots are written as PNG files into ``assets_dir`` and
    linked as ``<assets_dir name>/<file>.png`` (the Markdown file goes next to ``assets_dir``)."""
    return sections_markdown(data, build_sections(data), Path(assets_dir))


# --------------------------------------------------------------------------- writing


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    # mkstemp makes 0600 files; a report is meant to be read by others (served, attached).
    os.chmod(tmp, 0o666 & ~_umask())
    os.replace(tmp, path)


def write_report(data: ReportData, out_dir: str | Path) -> dict[str, Path]:
    """Write ``report.html``, ``report.md`` and ``report_assets/`` into ``out_dir``.

    Each file is replaced atomically, the assets directory as a whole: a reader never sees a
    half-written report, and a failure while plotting leaves the previous report in place.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sections = build_sections(data)
    page = sections_html(data, sections)
    assets = out / "report_assets"
    tmp_assets = fresh_tmp_dir(assets)
    try:
        markdown = sections_markdown(data, sections, tmp_assets, link_dir=assets.name)
    except BaseException:
        shutil.rmtree(tmp_assets, ignore_errors=True)
        raise
    os.chmod(tmp_assets, 0o777 & ~_umask())
    replace_dir(tmp_assets, assets)
    _write_text(out / "report.md", markdown)
    _write_text(out / "report.html", page)
    return {"html": out / "report.html", "markdown": out / "report.md", "assets": assets}
