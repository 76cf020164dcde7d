"""Campaign files: a matrix of scenarios x seeds x fault variants x DUT settings, expanded into runs.

A campaign file (YAML)::

    name: nightly
    description: limits and service across the library, two DUTs
    duration: 5m                 # optional: cut every scenario to this (a scenario time span)
    scenarios: [base_load_step, pv_surplus, ./sites/my_garage.yaml]   # built-in names or paths
                                 # (relative paths are relative to the campaign file)
    seeds: [1, 2, 3]             # a list, or "1..5"
    faults:                      # variant name -> timeline steps appended to the scenario
      none: []
      meter_stale: ["meter main stale for 30s at +1m"]
    duts:                        # variant name -> DUT settings
      builtin: {}
      naive: {dut: naive}
      edf: {policy: edf}         # site policy override
      reference: {backend: reference}
      slow_fw: {firmware: noncompliant, site: {min_on_s: 300}}
    checks: [limits]             # limits | signalling | fairness | shutdown (default: limits)
    worst: 5                     # how many worst runs the report lists

Every run of the matrix is validated when the file is loaded (the scenario with its fault steps
and DUT overrides), so a fault step that names a circuit a scenario lacks is reported before any
run starts: ``FILE:LINE: FIELD: PROBLEM`` (:class:`CampaignError`, exit code 2 in the CLI).
"""
from __future__ import annotations

import copy
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..certify.runner import deep_merge
from ..scenario import ScenarioError, load_scenario
from ..scenario.loader import validate
from ..scenario.times import parse_duration
from ..scenario.yamlio import load_yaml, nearest_line

TOP_KEYS = {"name", "description", "duration", "scenarios", "seeds", "faults", "duts", "checks", "worst"}
DUT_KEYS = {"dut": ("builtin", "naive"), "backend": ("c", "reference"),
            "policy": ("fair", "priority", "fifo", "edf", "llf"),
            "firmware": ("compliant", "noncompliant"), "site": None}
CHECKS = ("limits", "signalling", "fairness", "shutdown")
MAX_RUNS = 100_000


class CampaignError(ScenarioError):
    """A bad campaign file: ``FILE:LINE: FIELD: PROBLEM``, as for scenarios."""


@dataclass
class RunSpec:
    """One run of the matrix; ``task()`` is what a worker needs (plain data, picklable)."""

    run_id: str
    scenario: str            # the scenario's name
    fault: str
    dut: str
    seed: int
    data: dict               # the scenario mapping, fault steps and DUT site overrides applied
    settings: dict           # dut, backend, firmware
    duration: str | None
    checks: list
    source: str              # the scenario file

    def task(self, out_dir: str) -> dict:
        t = {"run_id": self.run_id, "scenario": self.scenario, "fault": self.fault, "dut": self.dut,
             "seed": self.seed, "data": self.data, "settings": self.settings, "duration": self.duration,
             "checks": list(self.checks), "source": self.source}
        t["spec_hash"] = spec_hash(t)
        t["out_dir"] = str(out_dir)
        return t


def spec_hash(task: dict) -> str:
    """What decides a run's result; a resumed campaign re-runs a run whose hash changed."""
    keys = ("scenario", "fault", "dut", "seed", "data", "settings", "duration", "checks")
    blob = json.dumps({k: task[k] for k in keys}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass
class Campaign:
    name: str
    description: str
    file: str
    runs: list = field(default_factory=list)       # RunSpec, in matrix order
    scenarios: list = field(default_factory=list)  # names, file order
    faults: list = field(default_factory=list)
    duts: list = field(default_factory=list)
    seeds: list = field(default_factory=list)
    checks: list = field(default_factory=list)
    worst: int = 5


def _safe(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", s).strip("-") or "x"


def _seeds(value, err):
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(-?\d+)\s*\.\.\s*(-?\d+)\s*", value)
        if not m or int(m.group(1)) > int(m.group(2)):
            err(("seeds",), f"must be a list of integers or 'FIRST..LAST', got {value!r}")
        return list(range(int(m.group(1)), int(m.group(2)) + 1))
    if isinstance(value, int) and not isinstance(value, bool):
        return [value]
    if not isinstance(value, list) or not value:
        err(("seeds",), f"must be a non-empty list of integers or 'FIRST..LAST', got {value!r}")
    for i, s in enumerate(value):
        if isinstance(s, bool) or not isinstance(s, int):
            err(("seeds", i), f"must be an integer, got {s!r}")
    if len(set(value)) != len(value):
        err(("seeds",), f"has duplicates: {value!r}")
    return list(value)


def load_campaign(path) -> Campaign:
    path = Path(path)
    file = str(path)
    if not path.is_file():
        raise CampaignError(file, None, "campaign", "no such file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CampaignError(file, None, "campaign", f"cannot read: {exc}") from None
    try:
        data, lines = load_yaml(text, file)
    except ScenarioError as exc:
        raise CampaignError(file, exc.line, exc.field, exc.problem) from None
    return campaign_from_dict(data, file=file, lines=lines, base=path.parent)


def campaign_from_dict(data, *, file="<campaign>", lines=None, base=".") -> Campaign:
    lines = lines or {}

    def err(loc, problem):
        fld = ""
        for p in loc:
            fld += f"[{p}]" if isinstance(p, int) else (f".{p}" if fld else str(p))
        raise CampaignError(file, nearest_line(lines, loc), fld or "campaign", problem)

    if not isinstance(data, dict):
        err((), f"must be a mapping of campaign fields, got {type(data).__name__}")
    for k in data:
        if k not in TOP_KEYS:
            err((k,), f"unknown key (allowed: {', '.join(sorted(TOP_KEYS))})")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        err(("name",), "required: a non-empty string")
    duration = data.get("duration")
    if duration is not None:
        try:
            parse_duration(duration, allow_zero=False)
        except ValueError as exc:
            err(("duration",), str(exc))
        duration = str(duration) if not isinstance(duration, str) else duration
    scen = data.get("scenarios")
    if not isinstance(scen, list) or not scen:
        err(("scenarios",), "required: a non-empty list of built-in scenario names or paths")
    seeds = _seeds(data.get("seeds", [1]), err)
    faults = data.get("faults", {"none": []})
    if not isinstance(faults, dict) or not faults:
        err(("faults",), "must be a mapping: variant name -> list of timeline steps ({none: []} for none)")
    for fname, steps in faults.items():
        if not isinstance(steps, list) or any(not isinstance(s, str) for s in steps):
            err(("faults", fname), f"must be a list of timeline steps (strings), got {steps!r}")
    duts = data.get("duts", {"builtin": {}})
    if not isinstance(duts, dict) or not duts:
        err(("duts",), "must be a mapping: variant name -> DUT settings ({builtin: {}} for the core)")
    for dname, st in duts.items():
        if st is None:
            duts[dname] = st = {}
        if not isinstance(st, dict):
            err(("duts", dname), f"must be a mapping of DUT settings, got {st!r}")
        for k, v in st.items():
            if k not in DUT_KEYS:
                err(("duts", dname, k), f"unknown DUT setting (allowed: {', '.join(DUT_KEYS)})")
            allowed = DUT_KEYS[k]
            if allowed is None:
                if not isinstance(v, dict):
                    err(("duts", dname, k), f"must be a mapping of site keys merged into the site, got {v!r}")
            elif v not in allowed:
                err(("duts", dname, k), f"must be one of {', '.join(allowed)}, got {v!r}")
    checks = data.get("checks", ["limits"])
    if not isinstance(checks, list) or not checks:
        err(("checks",), f"must be a non-empty list of {', '.join(CHECKS)}")
    for i, c in enumerate(checks):
        if c not in CHECKS:
            err(("checks", i), f"unknown check {c!r} (one of {', '.join(CHECKS)})")
    worst = data.get("worst", 5)
    if isinstance(worst, bool) or not isinstance(worst, int) or worst < 0:
        err(("worst",), f"must be a whole number >= 0, got {worst!r}")
    n = len(scen) * len(seeds) * len(faults) * len(duts)
    if n > MAX_RUNS:
        err((), f"the matrix has {n} runs (more than {MAX_RUNS}): split the campaign")

    camp = Campaign(name=name.strip(), description=str(data.get("description", "")), file=file,
                    faults=list(faults), duts=list(duts), seeds=seeds, checks=list(checks), worst=worst)
    seen_names = {}
    for i, ref in enumerate(scen):
        if not isinstance(ref, str) or not ref:
            err(("scenarios", i), f"must be a built-in scenario name or a path, got {ref!r}")
        cand = Path(base) / ref
        target = str(cand) if cand.is_file() else ref
        try:
            sc = load_scenario(target)
        except ScenarioError as exc:
            err(("scenarios", i), f"{exc}")
        if sc.name in seen_names:
            err(("scenarios", i), f"scenario {sc.name!r} is listed twice (also scenarios[{seen_names[sc.name]}])")
        seen_names[sc.name] = i
        camp.scenarios.append(sc.name)
        raw = copy.deepcopy(sc._raw)
        for fname, steps in faults.items():
            for dname, st in duts.items():
                d = copy.deepcopy(raw)
                d["timeline"] = list(d.get("timeline") or []) + list(steps)
                if "site" in st:
                    deep_merge(d.setdefault("site", {}), st["site"])
                if "policy" in st:
                    d.setdefault("site", {})["policy"] = st["policy"]
                try:   # validate every variant once (seeds do not change validity)
                    validate(copy.deepcopy(d), file=f"{sc.source or target} + faults.{fname} + duts.{dname}",
                             duration=duration)
                except ScenarioError as exc:
                    loc = ("faults", fname) if exc.field.startswith("timeline") else ("duts", dname)
                    err(loc, f"scenario {sc.name!r}: {exc.field}: {exc.problem}")
                settings = {"dut": st.get("dut", "builtin"), "backend": st.get("backend", "c"),
                            "firmware": st.get("firmware", "compliant")}
                for seed in seeds:
                    rid = "__".join(_safe(x) for x in (sc.name, fname, dname)) + f"__s{seed}"
                    camp.runs.append(RunSpec(rid, sc.name, fname, dname, seed, d, settings, duration,
                                             list(checks), sc.source or target))
    return camp
