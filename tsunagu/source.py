"""Read YAML keeping the line of every value, so problems can point at their line."""

from __future__ import annotations

from pathlib import Path as FsPath
from typing import Any

import yaml

from .problems import EstateInvalid, Path, Problem, dotted

try:  # libyaml parses the 8,000-staff estate in a fraction of the pure-Python time
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - libyaml is in the lock file's wheels
    from yaml import SafeLoader as _Loader


class SourceMap:
    """Maps a path inside the document to the 1-based line it was written on."""

    def __init__(self, file: str, lines: dict[Path, int]):
        self.file = file
        self._lines = lines

    def line(self, path: Path) -> int:
        # A missing field is reported at the line of its nearest written parent.
        for cut in range(len(path), -1, -1):
            found = self._lines.get(tuple(path[:cut]))
            if found is not None:
                return found
        return 1

    def problem(self, path: Path, message: str) -> Problem:
        return Problem(self.file, self.line(path), dotted(path), message)


class _Constructor(yaml.constructor.SafeConstructor):
    pass


def _walk(node: yaml.Node, path: Path, lines: dict[Path, int], constructor) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        constructor.flatten_mapping(node)
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = constructor.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int)):
                key = str(key)
            if key in out:
                raise EstateInvalid(
                    [Problem(constructor.file, key_node.start_mark.line + 1, dotted(path + (str(key),)),
                             f"key {key!r} is written twice in the same mapping")]
                )
            out[key] = _walk(value_node, path + (key,), lines, constructor)
            lines[path + (key,)] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_walk(item, path + (i,), lines, constructor) for i, item in enumerate(node.value)]
    return constructor.construct_object(node, deep=True)


def load_yaml(file: str | FsPath) -> tuple[Any, SourceMap]:
    name = str(file)
    try:
        text = FsPath(file).read_text(encoding="utf-8")
    except OSError as exc:
        raise EstateInvalid([Problem(name, 1, "(file)", f"cannot read: {exc.strerror}")]) from exc
    except UnicodeDecodeError as exc:
        raise EstateInvalid([Problem(name, 1, "(file)", f"not UTF-8 text: {exc.reason}")]) from exc
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise EstateInvalid([Problem(name, line, "(syntax)", f"YAML syntax error: {exc.problem}")]) from exc
    if node is None:
        raise EstateInvalid([Problem(name, 1, "(top level)", "the file is empty")])
    lines: dict[Path, int] = {}
    constructor = _Constructor()
    constructor.file = name
    try:
        data = _walk(node, (), lines, constructor)
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark
        raise EstateInvalid([Problem(name, mark.line + 1 if mark else 1, "(syntax)", str(exc.problem))]) from exc
    return data, SourceMap(name, lines)
