"""Load an estate file: YAML -> typed model -> cross-checks, every problem with its line."""

from __future__ import annotations

import difflib
import types
import typing
from pathlib import Path as FsPath

from pydantic import BaseModel, ValidationError

from .checks import check
from .model import Estate
from .problems import EstateInvalid, Path, Problem, dotted
from .source import SourceMap, load_yaml

# Sections whose entries are validated one by one, so one bad entry does not hide
# the cross-reference problems of all the others.
_ENTRY_SECTIONS = ("sites", "trunks", "departments", "staff", "hunt_groups")


def load_estate(file: str | FsPath) -> Estate:
    data, source = load_yaml(file)
    if not isinstance(data, dict):
        raise EstateInvalid([source.problem((), "an estate is a mapping (municipality:, sites:, ...)")])
    try:
        estate = Estate.model_validate(data)
    except ValidationError as exc:
        problems = [_from_pydantic(err, source) for err in exc.errors()]
        problems += _checks_on_valid_entries(data, exc, source)
        raise EstateInvalid(problems) from None
    problems = [_located(found, source) for found in check(estate)]
    if problems:
        raise EstateInvalid(problems)
    return estate


def load_document(file: str | FsPath, model: type[BaseModel], what: str) -> BaseModel:
    """Another YAML document Tsunagu reads (a storm scenario, an SLA), with the estate's
    error format: every problem as FILE:LINE: path: message."""
    data, source = load_yaml(file)
    if not isinstance(data, dict):
        raise EstateInvalid([source.problem((), f"{what} is a mapping")])
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise EstateInvalid([_from_pydantic(err, source, model) for err in exc.errors()]) from None


def _checks_on_valid_entries(data: dict, exc: ValidationError, source: SourceMap) -> list[Problem]:
    """Drop entries that failed validation, then cross-check what is left."""
    bad: dict[str, set[int]] = {}
    for err in exc.errors():
        loc = err["loc"]
        if len(loc) >= 2 and loc[0] in _ENTRY_SECTIONS and isinstance(loc[1], int):
            bad.setdefault(loc[0], set()).add(loc[1])
        elif not (len(loc) == 1 and loc[0] in _ENTRY_SECTIONS):
            return []  # a problem outside the entry lists: nothing reliable to cross-check
    kept, missing_ids, renumber = dict(data), set(), {}
    for section, indexes in bad.items():
        entries = data.get(section) or []
        renumber[section] = [i for i in range(len(entries)) if i not in indexes]
        kept[section] = [entries[i] for i in renumber[section]]
        # A dropped group's 'answers' counts as missing too, so its numbers are not "unanswered".
        missing_ids |= {e.get(key) for i, e in enumerate(entries) if i in indexes and isinstance(e, dict)
                        for key in ("id", "answers")}
    try:
        estate = Estate.model_validate(kept)
    except ValidationError:
        return []

    def original(path: Path) -> Path:
        if len(path) >= 2 and path[0] in renumber:
            return (path[0], renumber[path[0]][path[1]]) + tuple(path[2:])
        return path

    found = check(estate, frozenset(i for i in missing_ids if isinstance(i, str)))
    return [_located(f, source, original) for f in found]


def _located(found: tuple, source: SourceMap, original=lambda path: path) -> Problem:
    path, message, *refs = found
    if refs:  # only messages with references are templates; others may hold braces
        message = message.format(*(dotted(original(r)) for r in refs))
    return source.problem(original(path), message)


def _from_pydantic(err: dict, source: SourceMap, root: type[BaseModel] = Estate) -> Problem:
    path = _clean_loc(err["loc"])
    kind = err["type"]
    if kind == "missing":
        message = f"required field {path[-1]!r} is missing"
    elif kind == "extra_forbidden":
        message = f"unknown field {path[-1]!r}"
        allowed = _fields_at(path[:-1], root)
        if allowed:
            close = difflib.get_close_matches(str(path[-1]), allowed, n=1)
            message += f" (did you mean {close[0]!r}?)" if close else f" (allowed: {', '.join(allowed)})"
    elif kind in ("value_error", "assertion_error"):
        message = err["msg"].removeprefix("Value error, ")
    elif kind in ("enum", "literal_error"):
        message = f"{err['input']!r} is not one of: {err['ctx']['expected']}"
    else:
        message = err["msg"][0].lower() + err["msg"][1:]
        if "input" in err and not isinstance(err["input"], (dict, list)):
            message += f" (got {err['input']!r})"
    return source.problem(path, message)


def _clean_loc(loc: tuple) -> Path:
    # pydantic adds tags for union members and validator functions; they are not paths.
    return tuple(p for p in loc if not (isinstance(p, str) and ("[" in p or p.startswith("function-"))))


def _fields_at(path: Path, root: type[BaseModel] = Estate) -> list[str]:
    """Field names of the model at this path, for 'did you mean' hints."""
    kind: typing.Any = root
    for part in path:
        kind = _unwrap(kind)
        if isinstance(part, int) or not (isinstance(kind, type) and issubclass(kind, BaseModel)):
            origin = typing.get_origin(kind)
            args = typing.get_args(kind)
            if origin in (list, dict) and args:
                kind = args[-1]
                continue
            return []
        field = kind.model_fields.get(part)
        if field is None:
            return []
        kind = field.annotation
    kind = _unwrap(kind)
    return sorted(kind.model_fields) if isinstance(kind, type) and issubclass(kind, BaseModel) else []


def _unwrap(kind: typing.Any) -> typing.Any:
    while True:
        if typing.get_origin(kind) is typing.Annotated:
            kind = typing.get_args(kind)[0]
            continue
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if typing.get_origin(kind) in (typing.Union, types.UnionType) and len(args) == 1:
            kind = args[0]
            continue
        return kind
