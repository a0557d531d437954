"""Typed options: nested dataclasses <-> YAML recipes, `--key.sub=value` overrides, one-line errors.

Every option of a recipe is a dataclass field with a type and `metadata={"help": ...}`. `build(cls, mapping)`
checks each key against the fields (a misspelled key names its closest match) and each value against the
field's type (an int where a float is expected is accepted; "abc" where an int is expected is not). Values
given on the command line are read as YAML scalars, so `--train.lr=3e-4`, `--train.compile=true` and
`--data.text=[a.txt,b.txt]` mean what they look like.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

T = TypeVar("T")


class OptionError(ValueError):
    """A recipe key or value that does not fit the options; the message is one line naming the fix."""


def help_of(field: dataclasses.Field) -> str:
    return field.metadata.get("help", "")


def _type_name(kind: Any) -> str:
    origin = typing.get_origin(kind)
    if origin is Literal:
        return " | ".join(repr(v) for v in typing.get_args(kind))
    if origin in (Union, types.UnionType):
        return " | ".join("null" if a is type(None) else _type_name(a) for a in typing.get_args(kind))
    if origin is not None:
        return f"{origin.__name__}[{', '.join(_type_name(a) for a in typing.get_args(kind))}]"
    return getattr(kind, "__name__", str(kind))


def _convert_sequence(value: Any, kind: Any, where: str) -> list[Any] | tuple[Any, ...]:
    """`value` as a list[...] or tuple[...] option; a single string where a list is expected is a list of one."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if not isinstance(value, (list, tuple)):
        if origin is list and isinstance(value, str):  # a single path or name where a list is expected
            value = [value]
        else:
            raise OptionError(f"{where}={value!r} must be a list of {_type_name(args[0])}")
    if origin is tuple and args and args[-1] is not Ellipsis:
        if len(value) != len(args):
            raise OptionError(f"{where}={value!r} must have {len(args)} items ({_type_name(kind)})")
        return tuple(convert(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
    items = [convert(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
    return tuple(items) if origin is tuple else items


def convert(value: Any, kind: Any, where: str) -> Any:
    """`value` as type `kind` (int, float, str, bool, Optional, list, tuple, dict, Literal, dataclass)."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if kind is Any:
        return value
    if dataclasses.is_dataclass(kind):
        if not isinstance(value, dict):
            raise OptionError(f"{where} must be a mapping of {kind.__name__} options, got {value!r}")
        return build(kind, value, where)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            with contextlib.suppress(OptionError):
                return convert(value, arg, where)
        raise OptionError(f"{where}={value!r} is not a {_type_name(kind)}")
    if origin is Literal:
        if value not in args:
            raise OptionError(f"{where}={value!r} is not one of: {', '.join(map(str, args))}")
        return value
    if origin in (list, tuple):
        return _convert_sequence(value, kind, where)
    if origin is dict:
        if not isinstance(value, dict):
            raise OptionError(f"{where}={value!r} must be a mapping")
        return {str(k): convert(v, args[1] if args else Any, f"{where}.{k}") for k, v in value.items()}
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise OptionError(f"{where}={value!r} must be true or false")
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise OptionError(f"{where}={value!r} must be an integer")
    if kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "3e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise OptionError(f"{where}={value!r} must be a number")
    if kind is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise OptionError(f"{where}={value!r} must be a string")
    raise TypeError(f"option {where} has a type the recipe reader does not handle: {kind!r}")


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def build(cls: type[T], mapping: dict[str, Any], where: str = "") -> T:
    """An instance of dataclass `cls` from a nested mapping; unknown keys and wrong types raise OptionError."""
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    values = {}
    for key, value in mapping.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in hints or key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f"did you mean {'.'.join([*filter(None, [where]), close[0]])!r}?" if close else \
                f"known keys{' of ' + where if where else ''}: {', '.join(names)}"
            raise OptionError(f"unknown recipe key {path!r}; {hint}")
        values[key] = convert(value, hints[key], path)
    try:
        return cls(**values)
    except OptionError:
        raise
    except (TypeError, ValueError) as error:
        raise OptionError(f"{where or cls.__name__}: {error}") from None


def to_dict(options: Any) -> Any:
    """Plain data (dicts, lists, scalars) of a dataclass instance, ready for YAML or JSON."""
    if dataclasses.is_dataclass(options):
        return {f.name: to_dict(getattr(options, f.name)) for f in dataclasses.fields(options)}
    if isinstance(options, (list, tuple)):
        return [to_dict(v) for v in options]
    if isinstance(options, dict):
        return {k: to_dict(v) for k, v in options.items()}
    return options


def parse_override(text: str) -> tuple[list[str], Any]:
    """`--a.b=value` or `a.b=value` -> (["a", "b"], value read as a YAML scalar)."""
    body = text[2:] if text.startswith("--") else text
    if "=" not in body:
        raise OptionError(f"override {text!r} has no value; write --key.sub=value, e.g. --train.max_steps=100")
    key, raw = body.split("=", 1)
    if not key or any(not part for part in key.split(".")):
        raise OptionError(f"override {text!r} has an empty key; write --key.sub=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.replace("-", "_").split("."), value


def apply_overrides(mapping: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """A copy of `mapping` with each `--a.b=value` set (missing levels are created; build() checks the keys)."""
    result = _deep_copy(mapping)
    for text in overrides:
        keys, value = parse_override(text)
        node = result
        for depth, key in enumerate(keys[:-1]):
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise OptionError(f"override {text!r}: {'.'.join(keys[:depth + 1])} is a value, not a section")
            node = child
        node[keys[-1]] = value
    return result


def _deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value


def read_yaml(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML file; a missing file, bad YAML or a non-mapping is a one-line OptionError."""
    path = Path(path)
    if not path.is_file():
        raise OptionError(f"recipe {str(path)!r} does not exist; pass a recipe file or a name from `tformer recipes`")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise OptionError(f"recipe {str(path)!r} is not valid YAML{where}: "
                          f"{getattr(error, 'problem', None) or error}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise OptionError(f"recipe {str(path)!r} must be a mapping of sections, got a {type(data).__name__}")
    return data


def to_yaml(options: Any, *, comments: bool = True) -> str:
    """YAML of a dataclass instance, each key followed by its help text as a comment."""
    lines: list[str] = []
    _emit(options, 0, lines, comments)
    return "\n".join(lines) + "\n"


def _scalar(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("\n...").strip()


def _emit(options: Any, indent: int, lines: list[str], comments: bool) -> None:
    pad = " " * indent
    for field in dataclasses.fields(options):
        value = getattr(options, field.name)
        note = f"  # {help_of(field)}" if comments and help_of(field) else ""
        if dataclasses.is_dataclass(value):
            lines.append(f"{pad}{field.name}:{note}")
            _emit(value, indent + 2, lines, comments)
        elif isinstance(value, dict) and value:
            lines.append(f"{pad}{field.name}:{note}")
            for key, item in value.items():
                lines.append(f"{pad}  {key}: {_scalar(to_dict(item))}")
        else:
            lines.append(f"{pad}{field.name}: {_scalar(to_dict(value))}{note}")
