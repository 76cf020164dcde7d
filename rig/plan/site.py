"""The site a plan sweeps chargers on: grid connection, base load, PV, charger hardware, energy.

A planning site file (YAML)::

    name: office_block
    voltage_v: 230
    main: {limit_a: 250, margin_a: 5}          # the connection (per phase) and a safety margin
    base_load: {kind: office, peak_a: 150, unbalance: 0.08}   # office | hotel | hospital |
                                               # residential (daily shapes of firmware_sim.loads)
                                               # or {kind: constant, peak_a: 40}
    pv_kwp: 0                                  # rooftop PV (kWp), 0 = none
    chargers: {max_a: 16, phases: 3, min_a: 6} # the hardware of every charger
    policy: fair                               # the core's policy
    energy: {...}                              # optional: tariff, contract, capacity_tariff,
                                               # battery, price_aware (rig.energy.config)

SITE may also be a built-in scenario name or a scenario file: its root circuit (limit, margin),
its building load on that circuit, PV, voltage, policy, and the first charger's hardware are used.
Errors: :class:`PlanError` ``FILE:LINE: FIELD: PROBLEM``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..scenario import ScenarioError, load_scenario
from ..scenario.yamlio import load_yaml, nearest_line

KEYS = {"name", "description", "voltage_v", "main", "base_load", "pv_kwp", "chargers", "policy", "energy", "start_day"}
BASE_KINDS = ("office", "hotel", "hospital", "residential", "constant")


class PlanError(ScenarioError):
    """A bad planning site: ``FILE:LINE: FIELD: PROBLEM``, as for scenarios."""


@dataclass
class PlanSite:
    name: str
    voltage_v: int = 230
    limit_a: float = 100.0
    margin_a: float = 0.0
    base_kind: str = "constant"
    base_peak_a: float = 0.0
    unbalance: float = 0.0
    pv_kwp: float = 0.0
    charger_max_a: float = 16.0
    charger_phases: int = 3
    charger_min_a: float = 6.0
    policy: str = "fair"
    energy: dict = field(default_factory=dict)     # an EnergySpec mapping
    start_day: int = 0                              # 0 = Monday
    source: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def _num(v, fld, err, lo=None, hi=None, integer=False):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (integer and v != int(v)):
        err(fld, f"must be a {'whole ' if integer else ''}number, got {v!r}")
    if lo is not None and v < lo:
        err(fld, f"must be >= {lo}, got {v!r}")
    if hi is not None and v > hi:
        err(fld, f"must be <= {hi}, got {v!r}")
    return v


def load_site(ref: str) -> PlanSite:
    p = Path(ref)
    if p.is_file():
        text = p.read_text(encoding="utf-8")
        try:
            data, lines = load_yaml(text, str(p))
        except ScenarioError as exc:
            raise PlanError(str(p), exc.line, exc.field, exc.problem) from None
        if isinstance(data, dict) and "site" in data and "main" not in data:     # a scenario file
            return _from_scenario(str(p))
        return site_from_dict(data, file=str(p), lines=lines)
    return _from_scenario(ref)


def site_from_dict(data, *, file="<site>", lines=None) -> PlanSite:
    lines = lines or {}

    def err(path, problem):
        path = (path,) if isinstance(path, str) else tuple(path)
        fld = ".".join(str(x) for x in path) or "site"
        raise PlanError(file, nearest_line(lines, path), fld, problem)

    if not isinstance(data, dict):
        err((), f"must be a mapping of site fields, got {type(data).__name__}")
    for k in data:
        if k not in KEYS:
            err((k,), f"unknown key (allowed: {', '.join(sorted(KEYS))})")
    s = PlanSite(name=str(data.get("name") or Path(file).stem), source=file)
    s.voltage_v = int(_num(data.get("voltage_v", 230), ("voltage_v",), err, 100, 1000, integer=True))
    main = data.get("main")
    if not isinstance(main, dict) or "limit_a" not in main:
        err(("main",), "required: {limit_a: A per phase, margin_a: A}")
    for k in main:
        if k not in ("limit_a", "margin_a"):
            err(("main", k), "unknown key (allowed: limit_a, margin_a)")
    s.limit_a = float(_num(main["limit_a"], ("main", "limit_a"), err, 1, 2000))
    s.margin_a = float(_num(main.get("margin_a", 0), ("main", "margin_a"), err, 0, s.limit_a))
    base = data.get("base_load", {"kind": "constant", "peak_a": 0})
    if not isinstance(base, dict):
        err(("base_load",), "must be a mapping {kind, peak_a, unbalance}")
    for k in base:
        if k not in ("kind", "peak_a", "unbalance"):
            err(("base_load", k), "unknown key (allowed: kind, peak_a, unbalance)")
    s.base_kind = base.get("kind", "constant")
    if s.base_kind not in BASE_KINDS:
        err(("base_load", "kind"), f"must be one of {', '.join(BASE_KINDS)}, got {s.base_kind!r}")
    s.base_peak_a = float(_num(base.get("peak_a", 0), ("base_load", "peak_a"), err, 0, 2000))
    s.unbalance = float(_num(base.get("unbalance", 0), ("base_load", "unbalance"), err, 0, 0.99))
    s.pv_kwp = float(_num(data.get("pv_kwp", 0), ("pv_kwp",), err, 0, 10000))
    ch = data.get("chargers", {})
    if not isinstance(ch, dict):
        err(("chargers",), "must be a mapping {max_a, phases, min_a}")
    for k in ch:
        if k not in ("max_a", "phases", "min_a"):
            err(("chargers", k), "unknown key (allowed: max_a, phases, min_a)")
    s.charger_max_a = float(_num(ch.get("max_a", 16), ("chargers", "max_a"), err, 6, 80, integer=True))
    s.charger_phases = int(_num(ch.get("phases", 3), ("chargers", "phases"), err, 1, 3, integer=True))
    if s.charger_phases == 2:
        err(("chargers", "phases"), "must be 1 or 3, got 2")
    s.charger_min_a = float(_num(ch.get("min_a", 6), ("chargers", "min_a"), err, 1, s.charger_max_a, integer=True))
    s.policy = data.get("policy", "fair")
    if s.policy not in ("fair", "priority", "fifo", "edf", "llf"):
        err(("policy",), f"must be one of fair, priority, fifo, edf, llf, got {s.policy!r}")
    s.start_day = int(_num(data.get("start_day", 0), ("start_day",), err, 0, 6, integer=True))
    energy = data.get("energy") or {}
    check_energy(energy, lambda path, problem: err(("energy",) + tuple(path), problem))
    s.energy = energy
    return s


def check_energy(energy, err) -> None:
    """Validate an EnergySpec mapping; ``err(path, problem)`` with the path inside it."""
    from pydantic import ValidationError

    from ..energy import EnergySpec
    if not isinstance(energy, dict):
        err((), f"must be a mapping (tariff, contract, capacity_tariff, battery, price_aware), got {energy!r}")
    try:
        EnergySpec.model_validate(energy)
    except ValidationError as exc:
        e = exc.errors()[0]
        loc = tuple(x for x in e["loc"] if not (isinstance(x, str) and x in ("PriceAware", "bool")))
        err(loc, e["msg"])


def _from_scenario(ref: str) -> PlanSite:
    try:
        sc = load_scenario(ref)
    except ScenarioError as exc:
        raise PlanError(exc.file, exc.line, exc.field, exc.problem) from None
    core = sc.core_site
    ri = next(i for i, c in enumerate(core.circuits) if c.parent < 0)
    root, rc = core.circuit_names[ri], core.circuits[ri]
    s = PlanSite(name=sc.name, source=sc.source or ref, voltage_v=core.params.voltage_v,
                 limit_a=min(rc.limit_ma) / 1000, margin_a=rc.margin_ma / 1000,
                 policy=sc.site.get("policy", "fair"), start_day=(sc.start_ms // 86_400_000) % 7)
    for ld in sc.loads:
        if ld.circuit != root and ld.circuit not in core.circuit_names:
            continue
        if ld.kind in ("office", "hotel", "hospital", "residential") and s.base_kind == "constant":
            s.base_kind, s.base_peak_a = ld.kind, float(ld.peak_a)
            u = ld.unbalance
            s.unbalance = float(u) if isinstance(u, (int, float)) else 0.0
        elif ld.kind == "constant" and s.base_kind == "constant":
            s.base_peak_a += float(ld.peak_a)
        elif ld.kind == "pv":
            s.pv_kwp += float(ld.kwp)
    if core.chargers:
        k = core.chargers[0]
        s.charger_max_a, s.charger_phases, s.charger_min_a = k.max_ma / 1000, k.phases, k.min_ma / 1000
    return s
