"""Site specification: the mapping users write (amps, seconds, names) -> validated integer config.

``Site.from_dict(spec)`` checks every field and raises :class:`SiteError` (a ``ValueError``) naming the
field and the problem, e.g. ``circuits[1] (garage).parent: unknown circuit 'mian'``. Units are
converted once: amps to mA, seconds to ms, kW to W. Circuits are re-ordered parents-first (the core
requires it); names map back in results.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from . import model

PHASE_NAMES = ("L1", "L2", "L3")

SITE_KEYS = {
    "voltage_v", "policy", "cycle_s", "circuits", "chargers", "meter_timeout_s", "charger_timeout_s",
    "recovery_hold_s", "rotation_period_s", "min_on_s", "min_off_s", "max_starts_per_hour",
    "ramp_up_a_per_s", "reclaim_hold_s", "reclaim_margin_a", "probe_interval_s", "unbalance_limit_a",
    "phase_switch_hold_s", "max_phase_switches", "active_threshold_a", "follow_time_s", "meter_latency_s",
}
CIRCUIT_KEYS = {"name", "parent", "limit_a", "margin_a", "meter", "power_limit_kw", "fallback_base_a",
                "unbalance_limit_a"}
CHARGER_KEYS = {"name", "circuit", "phases", "phase_map", "min_a", "max_a", "step_a", "priority", "weight",
                "failsafe_a", "switch_phases"}

# site key -> (Params field, scale to integer units)
DURATIONS = {"meter_timeout_s": "meter_timeout_ms", "charger_timeout_s": "charger_timeout_ms",
             "recovery_hold_s": "recovery_hold_ms", "rotation_period_s": "rotation_period_ms",
             "min_on_s": "min_on_ms", "min_off_s": "min_off_ms", "reclaim_hold_s": "reclaim_hold_ms",
             "probe_interval_s": "probe_interval_ms", "phase_switch_hold_s": "phase_switch_hold_ms",
             "follow_time_s": "follow_time_ms", "meter_latency_s": "meter_latency_ms"}
CURRENTS = {"ramp_up_a_per_s": "ramp_up_ma_per_s", "reclaim_margin_a": "reclaim_margin_ma",
            "active_threshold_a": "active_threshold_ma"}


class SiteError(ValueError):
    """A bad site specification; ``field`` names the offending field, ``problem`` says what is wrong."""

    def __init__(self, fld: str, problem: str):
        super().__init__(f"{fld}: {problem}")
        self.field = fld
        self.problem = problem


def _number(value, fld, *, lo=None, hi=None, integer=False):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SiteError(fld, f"must be a number, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise SiteError(fld, f"must be finite, got {value!r}")
    if integer and value != int(value):
        raise SiteError(fld, f"must be a whole number, got {value!r}")
    if lo is not None and value < lo:
        raise SiteError(fld, f"must be >= {lo}, got {value!r}")
    if hi is not None and value > hi:
        raise SiteError(fld, f"must be <= {hi}, got {value!r}")
    return value


def _milli(value, fld, *, lo=None, hi=None) -> int:
    """Amps (or seconds) to milli-units, exactly: 0.1 A -> 100 mA."""
    return int(round(_number(value, fld, lo=lo, hi=hi) * 1000))


def _per_phase(value, fld, *, lo=None, hi=None) -> list:
    if isinstance(value, (list, tuple)):
        if len(value) != 3:
            raise SiteError(fld, f"needs 3 values (L1, L2, L3), got {len(value)}")
        return [_milli(v, f"{fld}[{i}]", lo=lo, hi=hi) for i, v in enumerate(value)]
    v = _milli(value, fld, lo=lo, hi=hi)
    return [v, v, v]


def _phase(value, fld) -> int:
    if isinstance(value, str) and value.upper() in PHASE_NAMES:
        return PHASE_NAMES.index(value.upper())
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 3:
        return value - 1
    raise SiteError(fld, f"must be L1, L2 or L3, got {value!r}")


def _check_keys(entry, allowed, fld):
    if not isinstance(entry, dict):
        raise SiteError(fld, f"must be a mapping, got {type(entry).__name__}")
    for key in entry:
        if key not in allowed:
            raise SiteError(fld, f"unknown key {key!r} (allowed: {', '.join(sorted(allowed))})")


@dataclass
class Site:
    """A validated site: names plus the integer configuration the core runs on."""

    params: model.Params
    circuits: list            # model.Circuit, parents first
    chargers: list            # model.Charger
    circuit_names: list
    charger_names: list
    metered: list = field(default_factory=list)   # names of circuits with a meter
    cycle_ms: int = 1000
    spec: dict = field(default_factory=dict)

    @classmethod
    def from_yaml(cls, path) -> "Site":
        import yaml
        text = Path(path).read_text()
        try:
            spec = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise SiteError(str(path), f"not valid YAML: {exc}") from None
        return cls.from_dict(spec)

    @classmethod
    def from_dict(cls, spec) -> "Site":
        _check_keys(spec, SITE_KEYS, "site")
        params = model.Params()
        if "voltage_v" in spec:
            params.voltage_v = int(_number(spec["voltage_v"], "voltage_v", lo=100, hi=1000, integer=True))
        policy = spec.get("policy", "fair")
        if policy not in model.POLICIES:
            raise SiteError("policy", f"unknown policy {policy!r} (one of {', '.join(model.POLICIES)})")
        params.policy = model.POLICIES[policy]
        for key, attr in DURATIONS.items():
            if key in spec:
                setattr(params, attr, _milli(spec[key], key, lo=0, hi=model.MAX_DURATION_MS / 1000))
        for key, attr in CURRENTS.items():
            if key in spec:
                setattr(params, attr, _milli(spec[key], key, lo=0, hi=model.MAX_CURRENT_MA / 1000))
        if "max_starts_per_hour" in spec:
            params.max_starts_per_hour = int(_number(spec["max_starts_per_hour"], "max_starts_per_hour",
                                                     lo=0, hi=model.MAX_STARTS, integer=True))
        if "max_phase_switches" in spec:
            params.max_phase_switches = int(_number(spec["max_phase_switches"], "max_phase_switches",
                                                    lo=0, hi=1000, integer=True))
        cycle_ms = _milli(spec.get("cycle_s", 1), "cycle_s", lo=0.001, hi=3600)
        site_unbalance = _milli(spec["unbalance_limit_a"], "unbalance_limit_a", lo=0) \
            if "unbalance_limit_a" in spec else 0

        raw_circuits = spec.get("circuits")
        if not isinstance(raw_circuits, list) or not raw_circuits:
            raise SiteError("circuits", "must be a non-empty list")
        entries = {}
        for i, c in enumerate(raw_circuits):
            _check_keys(c, CIRCUIT_KEYS, f"circuits[{i}]")
            name = c.get("name")
            if not isinstance(name, str) or not name:
                raise SiteError(f"circuits[{i}].name", "must be a non-empty string")
            if name in entries:
                raise SiteError(f"circuits[{i}].name", f"duplicate circuit name {name!r}")
            entries[name] = (i, c)
        # parents first, keeping the listed order otherwise; unknown parents and cycles are errors
        order, state = [], {}

        def visit(name, chain):
            i, c = entries[name]
            if state.get(name) == "done":
                return
            if state.get(name) == "active":
                raise SiteError(f"circuits[{i}] ({name}).parent",
                                "cycle: " + " -> ".join(chain + [name]))
            state[name] = "active"
            parent = c.get("parent")
            if parent is not None:
                if parent not in entries:
                    raise SiteError(f"circuits[{i}] ({name}).parent", f"unknown circuit {parent!r}")
                visit(parent, chain + [name])
            state[name] = "done"
            order.append(name)

        for name in entries:
            visit(name, [])
        index = {name: n for n, name in enumerate(order)}
        circuits = []
        for name in order:
            i, c = entries[name]
            f = f"circuits[{i}] ({name})"
            if "limit_a" not in c:
                raise SiteError(f + ".limit_a", "required")
            cm = model.Circuit()
            cm.parent = index[c["parent"]] if c.get("parent") is not None else model.NONE
            cm.limit_ma = _per_phase(c["limit_a"], f + ".limit_a", lo=0, hi=model.MAX_CURRENT_MA / 1000)
            cm.margin_ma = _milli(c.get("margin_a", 0), f + ".margin_a", lo=0, hi=model.MAX_CURRENT_MA / 1000)
            if c.get("power_limit_kw") is not None:
                cm.power_limit_w = int(round(_number(c["power_limit_kw"], f + ".power_limit_kw", lo=0.001,
                                                     hi=model.MAX_POWER_W / 1000) * 1000))
            meter = c.get("meter", False)
            if not isinstance(meter, bool):
                raise SiteError(f + ".meter", f"must be true or false, got {meter!r}")
            cm.has_meter = int(meter)
            cm.fallback_base_ma = _per_phase(c.get("fallback_base_a", 0), f + ".fallback_base_a",
                                             lo=-model.MAX_CURRENT_MA / 1000, hi=model.MAX_CURRENT_MA / 1000)
            cm.unbalance_limit_ma = _milli(c["unbalance_limit_a"], f + ".unbalance_limit_a", lo=0) \
                if "unbalance_limit_a" in c else site_unbalance
            circuits.append(cm)

        raw_chargers = spec.get("chargers", [])
        if not isinstance(raw_chargers, list):
            raise SiteError("chargers", "must be a list")
        chargers, names = [], []
        for i, k in enumerate(raw_chargers):
            _check_keys(k, CHARGER_KEYS, f"chargers[{i}]")
            name = k.get("name")
            if not isinstance(name, str) or not name:
                raise SiteError(f"chargers[{i}].name", "must be a non-empty string")
            if name in names:
                raise SiteError(f"chargers[{i}].name", f"duplicate charger name {name!r}")
            f = f"chargers[{i}] ({name})"
            km = model.Charger()
            circuit = k.get("circuit")
            if circuit not in index:
                raise SiteError(f + ".circuit", f"unknown circuit {circuit!r}")
            km.circuit = index[circuit]
            km.phases = k.get("phases", 3)
            if km.phases not in (1, 3) or isinstance(km.phases, bool):
                raise SiteError(f + ".phases", f"must be 1 or 3, got {km.phases!r}")
            pm = k.get("phase_map", list(PHASE_NAMES[:km.phases]))
            if not isinstance(pm, (list, tuple)) or len(pm) != km.phases:
                raise SiteError(f + ".phase_map", f"needs {km.phases} phase(s) for a {km.phases}-phase charger")
            pm = [_phase(v, f"{f}.phase_map[{j}]") for j, v in enumerate(pm)]
            if km.phases == 3 and sorted(pm) != [0, 1, 2]:
                raise SiteError(f + ".phase_map", "must name each of L1, L2, L3 once")
            km.phase_map = pm + [0] * (3 - len(pm))
            if "max_a" not in k:
                raise SiteError(f + ".max_a", "required")
            km.step_ma = _milli(k.get("step_a", 1), f + ".step_a", lo=0.001, hi=model.MAX_CURRENT_MA / 1000)
            km.min_ma = _milli(k.get("min_a", 6), f + ".min_a", lo=0.001, hi=model.MAX_CURRENT_MA / 1000)
            km.max_ma = _milli(k["max_a"], f + ".max_a", lo=0.001, hi=model.MAX_CURRENT_MA / 1000)
            if km.min_ma > km.max_ma:
                raise SiteError(f + ".min_a", f"min_a {km.min_ma / 1000} > max_a {km.max_ma / 1000}")
            for key, v in (("min_a", km.min_ma), ("max_a", km.max_ma)):
                if v % km.step_ma:
                    raise SiteError(f"{f}.{key}", f"{v / 1000} A is not a multiple of step_a {km.step_ma / 1000} A")
            km.priority = int(_number(k.get("priority", 0), f + ".priority", lo=0, hi=255, integer=True))
            km.weight = int(_number(k.get("weight", 1), f + ".weight", lo=1, hi=model.MAX_WEIGHT, integer=True))
            km.failsafe_ma = _milli(k.get("failsafe_a", 6), f + ".failsafe_a", lo=0, hi=model.MAX_CURRENT_MA / 1000)
            sw = k.get("switch_phases", False)
            if not isinstance(sw, bool):
                raise SiteError(f + ".switch_phases", f"must be true or false, got {sw!r}")
            if sw and km.phases != 3:
                raise SiteError(f + ".switch_phases", "only a 3-phase charger can switch phases")
            km.can_switch_phases = int(sw)
            chargers.append(km)
            names.append(name)
        try:
            model.validate(params, circuits, chargers)
        except model.ConfigError as exc:   # a limit the checks above do not cover (e.g. tree depth)
            raise SiteError(exc.field, exc.problem) from None
        return cls(params=params, circuits=circuits, chargers=chargers, circuit_names=order,
                   charger_names=names, metered=[n for n, c in zip(order, circuits) if c.has_meter],
                   cycle_ms=cycle_ms, spec=spec)
