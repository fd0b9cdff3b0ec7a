"""Typed configuration: dataclasses filled from TOML, overridable with `--set a.b=value`.

Unknown keys and values of the wrong type are `UserError`s naming the key, so a typo
in a config file never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from attndiff import UserError

T = TypeVar("T")


def from_dict(cls: type[T], values: dict[str, Any], where: str = "") -> T:
    """Build dataclass `cls` from a (nested) dict, rejecting unknown keys and bad types."""
    if not isinstance(values, dict):
        raise UserError(f"config section '{where or '<root>'}' must be a table, got {values!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in values.items():
        path = f"{where}.{key}" if where else key
        renamed = getattr(cls, "RENAMED", {})
        if key in renamed:
            raise UserError(f"config key '{path}' was renamed: use {renamed[key]}")
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise UserError(f"unknown config key '{path}' (known here: {known})")
        kwargs[key] = _coerce(hints[key], value, path)
    obj = cls(**kwargs)
    check = getattr(obj, "validate", None)
    if check is not None:
        check()
    return obj


def _coerce(hint: Any, value: Any, path: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, path)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(option, value, path)
            except UserError as e:
                errors.append(str(e))
        raise UserError(errors[0] if errors else f"bad value for '{path}': {value!r}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise UserError(f"config key '{path}' must be a list, got {value!r}")
        (item,) = {a for a in typing.get_args(hint) if a is not Ellipsis}
        return tuple(_coerce(item, v, f"{path}[{i}]") for i, v in enumerate(value))
    if origin is typing.Literal:
        if value not in typing.get_args(hint):
            choices = ", ".join(repr(a) for a in typing.get_args(hint))
            raise UserError(f"config key '{path}' must be one of {choices}, got {value!r}")
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, float) and not math.isfinite(value):
        raise UserError(f"config key '{path}' must be a finite number, got {value!r}")
    if hint in (int, float, str, bool):
        if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
            raise UserError(f"config key '{path}' must be {hint.__name__}, got {value!r}")
        return value
    return value


def check_choice(path: str, value: Any, choices) -> None:
    """A UserError naming the key unless value is one of choices (a registry's keys)."""
    if value not in choices:
        raise UserError(f"config key '{path}' must be one of {', '.join(repr(c) for c in choices)}, got {value!r}")


def to_dict(obj: Any) -> dict[str, Any]:
    """Dataclass -> plain dict (tuples become lists), ready for TOML or JSON."""

    def plain(v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items() if x is not None}
        return v

    return plain(dataclasses.asdict(obj))


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """['train.steps=200', 'data.name="fashion-mnist"'] -> nested dict.

    Values are parsed as TOML; a value that is not valid TOML is taken as a string,
    so `--set data.name=fashion-mnist` works without quotes.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UserError(f"--set {key}: '{part}' is not a section")
        node[parts[-1]] = value
    return out


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def read_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise UserError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"config file {path} is not valid TOML: {e}") from None
    except UnicodeDecodeError:
        raise UserError(f"config file {path} is not UTF-8 text (a TOML file is)") from None
    except IsADirectoryError:
        raise UserError(f"config file {path} is a folder, not a TOML file") from None


def load(cls: type[T], path: str | Path | None, overrides: list[str] = ()) -> T:
    values = read_toml(path) if path is not None else {}
    return from_dict(cls, merge(values, parse_overrides(list(overrides))))


def dumps_toml(values: dict[str, Any]) -> str:
    """A tiny TOML writer for our configs (tables of scalars and lists)."""
    lines: list[str] = []

    def scalar(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(scalar(x) for x in v) + "]"
        return repr(v)

    def table(prefix: str, d: dict[str, Any]) -> None:
        plain = {k: v for k, v in d.items() if not isinstance(v, dict) and v is not None}
        nested = {k: v for k, v in d.items() if isinstance(v, dict)}
        if prefix and plain:
            lines.append(f"\n[{prefix}]")
        lines.extend(f"{k} = {scalar(v)}" for k, v in plain.items())
        for k, v in nested.items():
            table(f"{prefix}.{k}" if prefix else k, v)

    table("", values)
    return "\n".join(lines).lstrip("\n") + "\n"
