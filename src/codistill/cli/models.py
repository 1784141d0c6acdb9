"""``codistill models list``: the embedded models, what they are and whether they are installed."""

from __future__ import annotations

import json

from codistill.models.registry import MODELS, installed, measured_param_counts


def register(sub) -> None:
    p = sub.add_parser("models", help="the embedded offline models")
    msub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    ls = msub.add_parser(
        "list", help="every embedded model: family, parameters, vocabulary, licence, installed"
    )
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ls.set_defaults(func=run_list)


def _row(model) -> dict:
    total, embedding, counted = model.params, model.embedding_params, "published"
    present = installed(model)
    # Counted from the installed files' tensor shapes, so the list shows what is there.
    measured = measured_param_counts(model) if present else None
    if measured is not None:
        (total, embedding), counted = measured, "installed files"
    return {
        "name": model.name,
        "family": model.family,
        "kind": model.kind,
        "params": total,
        "non_embedding_params": total - embedding,
        "vocab": model.vocab,
        "licence": model.licence,
        "installed": present,
        "extra": model.extra,
        "params_from": counted,
        "spec": f"embedded:{model.name}" if model.converts else None,
        "description": model.description,
    }


def _millions(n: int) -> str:
    return f"{n / 1e6:,.1f}M"


def run_list(args) -> int:
    rows = [_row(m) for m in MODELS.values()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    head = ("name", "family", "params", "non-emb", "vocab", "licence", "installed", "extra")
    table = [
        (
            r["name"],
            r["family"],
            _millions(r["params"]),
            _millions(r["non_embedding_params"]),
            f"{r['vocab']:,}",
            r["licence"],
            "yes" if r["installed"] else "no",
            f".[{r['extra']}]",
        )
        for r in rows
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *table, strict=True)]
    for line in (head, *table):
        print("  ".join(str(x).ljust(w) for x, w in zip(line, widths, strict=True)).rstrip())
    print(
        "\nUse a causal LM as embedded:NAME wherever a model directory is taken "
        "(bare 'embedded' is gemma-3-270m); `codistill teacher convert --model NAME` converts "
        "it once and prints its directory."
    )
    return 0
