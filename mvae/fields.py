"""Config fields that carry their own limits, and the checks and the builder that read them.

A field made with `setting` holds its default, the inclusive range of a number (or of each number a tuple
or mapping holds), the choices of a text and, for a command-line flag of train.py (`option`), its help. A
number without a range gets DEFAULT_INT_RANGE or DEFAULT_FLOAT_RANGE by the type of its default, so a new
field is bounded without further edits. `Checked.validate()` holds every field of a config dataclass to
its limits, then the class's own cross-checks; `build` makes a config from parsed JSON.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import field

DEFAULT_INT_RANGE = (0, 4_096)
DEFAULT_FLOAT_RANGE = (-1e6, 1e6)
MAX_STR_LEN = 200
MAX_ITEMS = 64  # of a tuple or dict field


def setting(default=None, *, range: tuple[float, float] | None = None, choices: tuple[str, ...] | None = None,
            factory=None, help: str | None = None):
    """A config field with everything known about it in one place: its default (or `factory`, for a mapping),
    the inclusive `range` of a number (or of each number a tuple or mapping holds), the `choices` of a text,
    and, for a command-line flag of train.py, its `help`. A number without a range gets DEFAULT_INT_RANGE or
    DEFAULT_FLOAT_RANGE by the type of its default, so a new field is bounded without further edits."""
    metadata = {key: value for key, value in (("range", range), ("choices", choices), ("help", help))
                if value is not None}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def option(default, help: str, **kwargs):
    """A config field that train.py offers as a flag, with the help text its --help shows."""
    return setting(default, help=help, **kwargs)


def flag_fields(cls) -> list[dataclasses.Field]:
    """The fields of a config dataclass that are command-line flags, in declaration order."""
    return [f for f in dataclasses.fields(cls) if "help" in f.metadata]


class Checked:
    """validate() for a config dataclass: every field within its range, then the class's own cross-checks
    (a subclass extends `_problems`)."""

    def validate(self):
        _raise(self._problems(""))
        return self

    def _problems(self, prefix: str) -> list[str]:
        return _field_problems(self, prefix)


def _raise(problems: list[str]) -> None:
    if problems:
        raise ValueError("; ".join(problems))


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _number_problem(name: str, value, kind: type, bounds) -> str | None:
    if kind is int and not _is_int(value):
        return f"{name} must be a whole number, not {value!r}"
    if kind is float and not _is_real(value):
        return f"{name} must be a finite number, not {value!r}"
    low, high = bounds
    if not low <= value <= high:
        return f"{name} is {value!r}; it must lie between {low:g} and {high:g}"
    return None


def _default_of(f: dataclasses.Field):
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()


def _field_problems(cfg, prefix: str) -> list[str]:
    """Each field checked against the type of its default, and its range or choices (`setting`)."""
    problems: list[str] = []
    for f in dataclasses.fields(cfg):
        name, value = prefix + f.name, getattr(cfg, f.name)
        default = _default_of(f)
        problem = None
        if dataclasses.is_dataclass(default):
            if not isinstance(value, type(default)):
                problem = f"{name} must be an object of {type(default).__name__} fields, not {value!r}"
            else:
                check = getattr(value, "_problems", None) or (lambda p, v=value: _field_problems(v, p))
                problems += check(name + ".")
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                problem = f"{name} must be true or false, not {value!r}"
        elif isinstance(default, (int, float)):
            kind = int if _is_int(default) else float
            fallback = DEFAULT_INT_RANGE if kind is int else DEFAULT_FLOAT_RANGE
            problem = _number_problem(name, value, kind, f.metadata.get("range", fallback))
        elif isinstance(default, str):
            choices = f.metadata.get("choices")
            if not isinstance(value, str) or len(value) > MAX_STR_LEN:
                problem = f"{name} must be a short text, not {value!r:.80}"
            elif choices and value not in choices:
                problem = f"{name} is {value!r}; use one of {list(choices)}"
        elif isinstance(default, (tuple, dict)):
            problem = _collection_problem(name, value, default, f.metadata.get("range"))
        if problem:
            problems.append(problem)
    return problems


def _collection_problem(name: str, value, default: tuple | dict, bounds) -> str | None:
    """The first problem of a tuple or mapping field: its type and size, then each item against the type of
    the default's first item (and `bounds`, for numbers)."""
    kind = type(default)
    if not isinstance(value, kind) or len(value) > MAX_ITEMS:
        return f"{name} must be a {'list' if kind is tuple else 'mapping'} of at most {MAX_ITEMS} items"
    items = list(value.items()) if kind is dict else list(enumerate(value))
    sample = next(iter(default.values() if kind is dict else default), None)
    for key, item in items:
        problem = None
        if kind is dict and (not isinstance(key, str) or len(key) > MAX_STR_LEN):
            problem = f"{name} keys must be short texts, not {key!r:.80}"
        elif isinstance(sample, str):
            if not isinstance(item, str) or len(item) > MAX_STR_LEN:
                problem = f"{name}[{key!r}] must be a short text, not {item!r:.80}"
        elif isinstance(sample, (int, float)):
            kind_item = int if _is_int(sample) else float
            fallback = DEFAULT_INT_RANGE if kind_item is int else DEFAULT_FLOAT_RANGE
            problem = _number_problem(f"{name}[{key!r}]", item, kind_item, bounds or fallback)
        if problem:
            return problem
    return None


def build(cls, data: dict, prefix: str = ""):
    """A `cls` config dataclass from parsed JSON: nested configs built in turn, lists made tuples where the
    default is one; ValueError naming what is not an object or a field `cls` lacks (validate() checks the
    values)."""
    if not isinstance(data, dict):
        raise ValueError(f"{prefix.rstrip('.') or cls.__name__} must be an object of {cls.__name__} fields, "
                         f"not {type(data).__name__}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        default = _default_of(f)
        if dataclasses.is_dataclass(default):
            value = build(type(default), value, f"{prefix}{f.name}.")
        elif isinstance(value, list) and isinstance(default, tuple):
            value = tuple(value)
        kwargs[f.name] = value
    unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields: {sorted(map(str, unknown))}")
    return cls(**kwargs)
