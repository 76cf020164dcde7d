"""Loading scenario files: YAML with line numbers -> :class:`Scenario`, errors -> ScenarioError."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from .errors import ScenarioError
from .model import Scenario
from .yamlio import load_yaml, nearest_line

__all__ = ["load_scenario", "list_scenarios", "scenario_json_schema", "validate", "LIBRARY"]

LIBRARY = Path(__file__).with_name("library")


def _library_file(name: str) -> Path | None:
    p = LIBRARY / f"{name}.yaml"
    return p if p.is_file() else None


def load_scenario(name_or_path, *, duration=None, seed=None, mode=None) -> Scenario:
    """Load a scenario file, or a built-in scenario by name (see :func:`list_scenarios`).

    ``duration`` / ``seed`` / ``mode`` override the file's values; a ``duration`` override cuts
    the scenario short (timeline steps and vehicles after the new end are dropped, not errors).
    Raises :class:`ScenarioError` (``FILE:LINE: FIELD: PROBLEM``).
    """
    path = Path(name_or_path)
    if path.is_file():
        file = str(name_or_path)
    else:
        lib = _library_file(str(name_or_path)) if isinstance(name_or_path, str) else None
        if lib is None:
            names = ", ".join(n for n, _ in list_scenarios())
            raise ScenarioError(str(name_or_path), None, "scenario",
                                f"no such file, nor a built-in scenario (built-ins: {names})")
        path = file = lib
        file = str(lib)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(file, None, "scenario", f"cannot read: {exc}") from None
    data, lines = load_yaml(text, file)
    return validate(data, file=file, lines=lines, duration=duration, seed=seed, mode=mode)


def validate(data: Any, *, file: str | None = None, lines: dict | None = None, duration=None,
             seed=None, mode=None) -> Scenario:
    """Validate a scenario mapping (as read from a file) with optional overrides."""
    lines = lines or {}
    if not isinstance(data, dict):
        raise ScenarioError(file, nearest_line(lines, ()) or 1, "scenario",
                            f"must be a mapping of scenario fields, got {type(data).__name__}")
    raw = {k: v for k, v in data.items() if not (isinstance(k, str) and k.startswith("x-"))}
    data = dict(raw)
    for key, value in (("duration", duration), ("seed", seed), ("mode", mode)):
        if value is not None:
            data[key] = value
    try:
        sc = Scenario.model_validate(data, context={"truncate": duration is not None, "lines": lines})
    except ValidationError as exc:
        raise _convert(exc, data, file, lines) from None
    sc.source = file
    sc._raw = raw
    sc._lines = lines
    sc._overrides = {"duration": duration, "seed": seed, "mode": mode}
    return sc


# ---------------------------------------------------------------------------------- errors
def _convert(exc: ValidationError, data: dict, file, lines) -> ScenarioError:
    out = []
    seen = set()
    for e in exc.errors(include_url=False):
        path, field = _data_path(e["loc"], data, e["type"])
        ctx = e.get("ctx") or {}
        field = ctx.get("field") or field
        problem = _problem(e, path, data)
        key = (field, problem)
        if key in seen:
            continue
        seen.add(key)
        out.append(ScenarioError(file, nearest_line(lines, path), field, problem))
    out.sort(key=lambda x: (x.line or 0))
    first = out[0]
    first.errors = out
    return first


def _data_path(loc: tuple, data, etype: str) -> tuple[tuple, str]:
    """Drop pydantic's union/type tags from ``loc`` (keep only steps into the data) and format the
    field: ``chargers[2] (cp3).profile``."""
    path: list = []
    text = ""
    cur = data
    for n, el in enumerate(loc):
        last = n == len(loc) - 1
        if isinstance(cur, dict) and el in cur:
            cur = cur[el]
        elif isinstance(cur, (list, tuple)) and isinstance(el, int) and 0 <= el < len(cur):
            cur = cur[el]
        elif last and isinstance(cur, dict) and isinstance(el, str):
            cur = None                                  # a missing key
        else:
            continue                                    # a union member tag such as 'list[str]'
        path.append(el)
        if isinstance(el, int):
            text += f"[{el}]"
            label = _label(cur)
            if label:
                text += f" ({label})"
        else:
            text += f".{el}" if text else str(el)
    return tuple(path), text or "scenario"


def _label(item) -> str | None:
    if isinstance(item, dict):
        for k in ("name", "id", "charger", "circuit"):
            if isinstance(item.get(k), str):
                return item[k]
    return None


def _model_at(path: tuple):
    cls: Any = Scenario
    for el in path:
        if isinstance(el, int):
            continue
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)):
            return None
        field = next((f for n, f in cls.model_fields.items() if (f.alias or n) == el), None)
        if field is None:
            return None
        cls = _inner_model(field.annotation)
    return cls if isinstance(cls, type) and issubclass(cls, BaseModel) else None


def _inner_model(ann):
    import typing
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for arg in typing.get_args(ann):
        m = _inner_model(arg)
        if m is not None:
            return m
    return None


def _problem(e: dict, path: tuple, data) -> str:
    t = e["type"]
    ctx = e.get("ctx") or {}
    if t == "scenario":
        return ctx["msg"]
    if t == "extra_forbidden":
        cls = _model_at(path[:-1])
        key = path[-1] if path else "?"
        if cls is not None:
            allowed = ", ".join(sorted((f.alias or n) for n, f in cls.model_fields.items()
                                       if n not in getattr(cls, "_derived", ())))
            return f"unknown key {key!r} (allowed: {allowed})"
        return f"unknown key {key!r}"
    if t == "missing":
        return "required"
    msg = e["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            return msg[len(prefix):]
    if t in ("literal_error", "enum"):
        return f"must be one of {ctx.get('expected', '?')}, got {e.get('input')!r}"
    inp = e.get("input")
    if not isinstance(inp, (dict, list)):
        return f"{msg[0].lower()}{msg[1:]}, got {inp!r}"
    return msg[0].lower() + msg[1:]


# ---------------------------------------------------------------------------------- library
def list_scenarios() -> list[tuple[str, str]]:
    """Built-in scenarios as ``(name, summary)``, sorted by name; the summary is the first line of
    the scenario's description (``load_scenario(name).description`` has the whole text)."""
    import yaml
    out = []
    for p in sorted(LIBRARY.glob("*.yaml")):
        try:
            loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
            desc = (yaml.load(p.read_text(encoding="utf-8"), Loader=loader) or {}).get("description", "")
        except (yaml.YAMLError, AttributeError):
            desc = ""
        out.append((p.stem, (str(desc).strip().splitlines() or [""])[0]))
    return out


def scenario_json_schema() -> dict:
    """JSON Schema (draft 2020-12) of a scenario file, for editors (e.g. yaml-language-server:
    ``# yaml-language-server: $schema=scenario.schema.json``)."""
    schema = Scenario.model_json_schema(by_alias=True, mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema.setdefault("title", "dlbrig scenario")
    props = schema.get("properties", {})
    # x-* keys are allowed at the top level (YAML anchors live there)
    schema["patternProperties"] = {"^x-": {}}
    schema["additionalProperties"] = False
    assert "name" in props
    return schema
