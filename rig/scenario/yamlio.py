"""YAML loading that remembers where every mapping key and sequence item came from.

``load_yaml(text, file)`` returns ``(data, lines)``: plain Python data (dicts, lists, scalars) and
``lines``: ``{path: line}`` with ``path`` a tuple of keys and indices (``("chargers", 2,
"profile")``) and ``line`` 1-based (the line of the key for a mapping entry, of the item for a
sequence item).  Syntax errors and duplicate keys raise :class:`ScenarioError` with the line.

Scalars follow PyYAML's safe loader with one fix: YAML 1.1 reads an unquoted ``17:30`` as the
base-60 integer 1050; here anything written with a colon stays a string, so times need no quotes.
"""
from __future__ import annotations

import yaml

from .errors import ScenarioError

__all__ = ["load_yaml", "nearest_line"]

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)   # libyaml when available: 10x faster


def load_yaml(text: str, file: str | None = None) -> tuple[object, dict[tuple, int]]:
    loader = _Loader(text)
    try:
        try:
            node = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark is not None else None
            problem = " ".join(str(p) for p in (exc.context, exc.problem) if p)
            raise ScenarioError(file, line, "yaml", f"syntax error: {problem}") from None
        except yaml.YAMLError as exc:
            raise ScenarioError(file, None, "yaml", f"syntax error: {exc}") from None
        lines: dict[tuple, int] = {}
        if node is None:
            return None, lines
        lines[()] = node.start_mark.line + 1
        return _build(node, (), lines, loader, file, 0), lines
    finally:
        loader.dispose()


def _build(node, path, lines, loader, file, depth):
    if depth > 100:
        raise ScenarioError(file, node.start_mark.line + 1, _fmt(path), "nesting too deep (recursive alias?)")
    if isinstance(node, yaml.MappingNode):
        own = sum(1 for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge")
        loader.flatten_mapping(node)          # resolves '<<' merge keys (merged pairs come first)
        n_merged = len(node.value) - own
        out: dict = {}
        own_keys: set = set()
        for j, (knode, vnode) in enumerate(node.value):
            key = _scalar(knode, loader, file) if isinstance(knode, yaml.ScalarNode) else None
            kline = knode.start_mark.line + 1
            if key is None or not isinstance(key, (str, int, float, bool)):
                raise ScenarioError(file, kline, _fmt(path), "mapping keys must be plain scalars")
            if j >= n_merged and key in own_keys:
                raise ScenarioError(file, kline, _fmt(path + (key,)),
                                    f"duplicate key {key!r} (first on line {lines[path + (key,)]})")
            if j >= n_merged:
                own_keys.add(key)
            lines[path + (key,)] = kline
            out[key] = _build(vnode, path + (key,), lines, loader, file, depth + 1)
        return out
    if isinstance(node, yaml.SequenceNode):
        out_l = []
        for i, item in enumerate(node.value):
            lines[path + (i,)] = item.start_mark.line + 1
            out_l.append(_build(item, path + (i,), lines, loader, file, depth + 1))
        return out_l
    return _scalar(node, loader, file)


def _scalar(node, loader, file):
    if node.tag in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float") and ":" in node.value:
        return node.value                     # 17:30 is a time, not 1050
    try:
        return loader.construct_object(node, deep=True)
    except yaml.YAMLError as exc:
        raise ScenarioError(file, node.start_mark.line + 1, "yaml", f"bad value: {exc}") from None


def _fmt(path) -> str:
    s = ""
    for p in path:
        s += f"[{p}]" if isinstance(p, int) else (f".{p}" if s else str(p))
    return s or "scenario"


def nearest_line(lines: dict[tuple, int], path: tuple) -> int | None:
    """Line of ``path`` or of its closest recorded ancestor."""
    path = tuple(path)
    while True:
        if path in lines:
            return lines[path]
        if not path:
            return None
        path = path[:-1]
