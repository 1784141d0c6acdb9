"""Typed, validated configuration objects built from YAML files and ``key=value`` overrides.

Precedence is one rule, everywhere: command line > YAML file > the dataclass defaults.
Every field carries a one-line ``help`` and, where it has one, an allowed range; errors name
the field and what was expected (``alpha must be in [0, 1], got 1.5``), and unknown keys are
errors with a did-you-mean. We write this small layer by hand rather than pulling in a config
framework because the rules we need (typed overrides from strings, ranges, choices, suggestions)
fit in one short module and stay readable in the error messages users see.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A configuration value is missing, unknown or out of range."""


def field(
    default: Any = dataclasses.MISSING,
    *,
    help: str,
    choices: tuple | None = None,
    min: float | None = None,
    max: float | None = None,
    min_exclusive: bool = False,
    default_factory: Any = dataclasses.MISSING,
) -> Any:
    """A dataclass field with help text and an optional allowed range or set of choices."""
    meta = {
        "help": help,
        "choices": choices,
        "min": min,
        "max": max,
        "min_exclusive": min_exclusive,
    }
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _type_ok(value: Any, annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, arg) for arg in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if origin is typing.Literal:
        return value in typing.get_args(annotation)
    if origin in (list, tuple):
        return isinstance(value, list | tuple)
    if origin is dict:
        return isinstance(value, dict)
    if annotation is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(annotation, type):
        return isinstance(value, annotation)
    return True


def _describe(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def validate_field(name: str, value: Any, f: dataclasses.Field, hints: dict) -> Any:
    """Check one value against its field's type, choices and range; return it (ints widened)."""
    annotation = hints[name]
    if not _type_ok(value, annotation):
        raise ConfigError(f"{name} must be {_describe(annotation)}, got {value!r}")
    if annotation is float or (
        typing.get_origin(annotation) in (typing.Union, types.UnionType)
        and float in typing.get_args(annotation)
    ):
        if isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
    meta = f.metadata
    if meta.get("choices") and value is not None and value not in meta["choices"]:
        raise ConfigError(f"{name} must be one of {list(meta['choices'])}, got {value!r}")
    lo, hi = meta.get("min"), meta.get("max")
    if isinstance(value, int | float) and not isinstance(value, bool):
        low_bad = lo is not None and (value <= lo if meta.get("min_exclusive") else value < lo)
        if low_bad or (hi is not None and value > hi):
            if lo is not None and hi is not None:
                raise ConfigError(f"{name} must be in [{lo:g}, {hi:g}], got {value:g}")
            if lo is not None:
                op = ">" if meta.get("min_exclusive") else ">="
                raise ConfigError(f"{name} must be {op} {lo:g}, got {value:g}")
            raise ConfigError(f"{name} must be <= {hi:g}, got {value:g}")
    return value


def _unknown(key: str, known: list[str], source: str) -> ConfigError:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return ConfigError(f"{source}: unknown key '{key}'{hint}")


class _Loader(yaml.SafeLoader):
    """YAML 1.2 scalars: only true/false are booleans (``no`` stays a string, as
    ``mixed_precision: no`` needs) and ``1e-3`` is a float, as in JSON and Python."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def parse_value(text: str) -> Any:
    """Turn a command-line value into a Python value the way YAML would (``0.5``, ``[1, 2]``)."""
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError:
        return text


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """Parse ``key=value`` strings; ``loss.jsd=0.4`` sets one entry of a mapping field."""
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"override '{pair}' must look like key=value")
        key, text = pair.split("=", 1)
        key = key.strip()
        value = parse_value(text)
        if "." in key:
            head, sub = key.split(".", 1)
            nested = out.setdefault(head, {})
            if not isinstance(nested, dict):
                raise ConfigError(f"override '{pair}': '{head}' was already set to a non-mapping")
            nested[sub] = value
        else:
            out[key] = value
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.load(path.read_text(), Loader=_Loader) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of key: value at the top level")
    return data


def build(cls: type, *layers: tuple[str, dict[str, Any]]) -> Any:
    """Build a validated ``cls`` from layers applied in order (later layers win).

    Args:
        cls: a dataclass whose fields were declared with :func:`field`.
        layers: ``(source name, mapping)`` pairs, e.g. ``("alpha.yaml", {...})``,
            ``("command line", {...})``. A mapping-typed field merges key by key
            when the later layer's value is a mapping and the earlier one was too.

    Raises:
        ConfigError: unknown key (with a suggestion), wrong type, out-of-range value.
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for source, mapping in layers:
        for key, value in mapping.items():
            if key not in fields:
                raise _unknown(key, list(fields), source)
            previous = values.get(key)
            if isinstance(value, dict) and isinstance(previous, dict):
                value = {**previous, **value}
            values[key] = value
    for name, f in fields.items():
        if name in values:
            values[name] = validate_field(name, values[name], f, hints)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{name} is required: {f.metadata['help']}")
    obj = cls(**values)
    check = getattr(obj, "check", None)
    if check is not None:
        check()
    return obj


def to_dict(obj: Any) -> dict[str, Any]:
    return dataclasses.asdict(obj)


def describe(cls: type) -> str:
    """One line per field: name, default and help (for ``--help-config``)."""
    lines = []
    for f in dataclasses.fields(cls):
        default = (
            f.default
            if f.default is not dataclasses.MISSING
            else (
                f.default_factory()
                if f.default_factory is not dataclasses.MISSING
                else "(required)"
            )
        )
        lines.append(f"  {f.name} = {default!r}\n      {f.metadata.get('help', '')}")
    return "\n".join(lines)


def load_layers(
    cls: type,
    config: str | Path | None,
    overrides: list[str] | dict | None = None,
    base: dict[str, Any] | None = None,
):
    """``cls`` from defaults < ``base`` (programmatic) < YAML file < command-line overrides
    (``key=value`` strings or a mapping): the precedence of every codistill config."""
    layers: list[tuple[str, dict[str, Any]]] = []
    if base:
        layers.append(("defaults", base))
    if config is not None:
        layers.append((str(config), load_yaml(config)))
    if overrides:
        parsed = overrides if isinstance(overrides, dict) else parse_overrides(list(overrides))
        layers.append(("command line", parsed))
    return build(cls, *layers)
