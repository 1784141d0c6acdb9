"""Grid sweeps over config keys (the alpha-T paper's alpha and temperature studies)."""

from __future__ import annotations

import csv
import itertools
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from codistill import rundir
from codistill.config.distill import DistillConfig, load_distill_config
from codistill.config.fields import ConfigError, parse_overrides, parse_value


def split_values(text: str) -> list[Any]:
    """``0.1,0.5,[0.6,0.3]`` -> ``[0.1, 0.5, [0.6, 0.3]]`` (commas inside brackets stay)."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += ch in "[{"
        depth -= ch in "]}"
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [parse_value(p.strip()) for p in parts if p.strip()]


def parse_grid(pairs: list[str]) -> tuple[dict[str, list[Any]], list[str]]:
    """Split ``key=v1,v2`` (swept) from ``key=v`` (fixed overrides)."""
    grid, fixed = {}, []
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"'{pair}' must look like key=value or key=v1,v2,...")
        key, text = pair.split("=", 1)
        values = split_values(text)
        if len(values) > 1:
            grid[key] = values
        else:
            fixed.append(pair)
    if not grid:
        raise ConfigError("nothing to sweep: give at least one key=v1,v2,...")
    return grid, fixed


def run_name(point: dict[str, Any]) -> str:
    return "_".join(f"{k}={v}" for k, v in point.items()).replace("/", "-").replace(" ", "")


# What ``validate`` reports, and what each needs beyond ``valid_data``.
METRICS = {
    "valid_loss": None,
    "valid_tokens": None,
    "valid_exact_match": "valid_generate",
    "valid_similarity": "valid_generate",
}


def _point_overrides(fixed: list[str], point: dict[str, Any]) -> dict[str, Any]:
    """Fixed overrides, then the grid point's values as parsed Python values.

    The values are not turned back into ``key=value`` text: ``str(None)`` is ``'None'``, which
    YAML reads as a string, so a sweep over ``max_steps=null,100`` would fail to validate.
    """
    overrides = parse_overrides(fixed)
    for key, value in point.items():
        if "." in key:
            head, sub = key.split(".", 1)
            nested = overrides.setdefault(head, {})
            if not isinstance(nested, dict):
                raise ConfigError(f"'{key}': '{head}' is set to a non-mapping ({nested!r})")
            nested[sub] = value
        else:
            overrides[key] = value
    return overrides


def _comparable(config: dict) -> Any:
    return json.loads(json.dumps(config, default=str, sort_keys=True))


def grid_configs(
    config: str | None, pairs: list[str], out_dir: str | Path, metric: str = "valid_loss"
) -> tuple[list[str], list[tuple[dict[str, Any], DistillConfig]]]:
    """Validate every grid point before anything runs; return the swept keys and the points.

    Raises:
        ConfigError: a bad value in any grid point, a metric the runs will not report, or a run
            directory left by an earlier sweep with a different configuration.
    """
    if metric not in METRICS:
        raise ConfigError(f"metric must be one of {list(METRICS)}, got {metric!r}")
    grid, fixed = parse_grid(pairs)
    out = Path(out_dir)
    points = [dict(zip(grid, combo, strict=True)) for combo in itertools.product(*grid.values())]
    result = []
    for point in points:
        overrides = _point_overrides(fixed, point)
        overrides["output_dir"] = str(out / "runs" / run_name(point))
        cfg = load_distill_config(config, overrides)
        where = ", ".join(f"{k}={v}" for k, v in point.items())
        if cfg.valid_data is None:
            raise ConfigError(f"{where}: the sweep plots {metric}, which needs valid_data")
        needs = METRICS[metric]
        if needs is not None and not getattr(cfg, needs):
            raise ConfigError(f"{where}: metric {metric} needs {needs} > 0")
        saved = Path(cfg.output_dir) / "run.json"
        if saved.is_file():
            old = rundir.read_json(saved).get("config", {})
            if _comparable(old) != _comparable(rundir.config_dict(cfg)):
                raise ConfigError(
                    f"{cfg.output_dir} holds a run made with a different config; "
                    "choose another --out or remove that run"
                )
        result.append((point, cfg))
    return list(grid), result


def sweep(
    config: str | None, pairs: list[str], out_dir: str, metric: str = "valid_loss"
) -> list[dict]:
    """Run every grid point (validated before the first run starts); write CSV, JSON, PNG."""
    keys, points = grid_configs(config, pairs, out_dir, metric)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    from codistill.training.loop import distill  # lazy: torch (`codistill --help` imports us)

    rows = []
    for point, cfg in points:
        if (Path(cfg.output_dir) / "final").exists():  # finished earlier: reuse
            info = rundir.read_json(Path(cfg.output_dir) / "run.json")
            final = info.get("final_validation", {})
        else:
            resume = (Path(cfg.output_dir) / "checkpoint" / "trainer_state.json").exists()
            final = distill(cfg, resume=resume).final_metrics
        rows.append(
            {
                **point,
                **{k: v for k, v in final.items() if isinstance(v, int | float)},
                "run_dir": cfg.output_dir,
            }
        )
    write_table(rows, out)
    plot_sweep(rows, keys, metric, out / "sweep.png")
    return rows


def write_table(rows: list[dict], out: Path) -> None:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    fd, tmp = tempfile.mkstemp(dir=out, prefix=".sweep.csv.")
    with os.fdopen(fd, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, out / "sweep.csv")
    rundir.write_json(out / "sweep.json", rows)


def plot_sweep(rows: list[dict], keys: list[str], metric: str, path: Path) -> None:
    """One panel per swept key: ``metric`` against its values, a line per other-key setting."""
    import matplotlib  # lazy: matplotlib, only for the plot

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: matplotlib, after choosing its backend

    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 3.6), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        others = [k for k in keys if k != key]
        groups: dict[tuple, list[dict]] = {}
        for r in rows:
            # str(): swept values may be lists ([start, end] weights), which cannot be keys.
            groups.setdefault(tuple(str(r[k]) for k in others), []).append(r)
        for gkey, grp in groups.items():
            grp = [r for r in grp if metric in r]
            xs = [str(r[key]) for r in grp]
            label = ", ".join(f"{k}={v}" for k, v in zip(others, gkey, strict=True)) or metric
            ax.plot(xs, [r[metric] for r in grp], marker="o", label=label)
        ax.set_xlabel(key)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        if others:
            ax.legend(fontsize=7)
    fig.suptitle(f"sweep: {metric}")
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
