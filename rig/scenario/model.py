"""The scenario object model (pydantic v2, ``extra="forbid"`` everywhere).

A :class:`Scenario` is validated in two passes: pydantic checks every field's type and the
per-device rules (profile exists and is of the right kind, preset exists, firmware/fault keys), then
:meth:`Scenario._resolve` checks cross-references against the site (validated with
``Site.from_dict``), fills defaults (one :class:`ChargerDevice` per site charger in site order, one
:class:`MeterDevice` per metered circuit, transports / units / buses from the profiles, load seeds)
and computes the derived fields (``start_ms``, ``duration_ms``, ``steps``, ``arrive_ms`` ...).
Derived fields are output only: a file that sets them is rejected.

Errors raised here are pydantic ``ValidationError``s whose ``loc`` points into the input; the loader
(:mod:`.loader`) turns them into :class:`ScenarioError` ``FILE:LINE: FIELD: PROBLEM``.
"""
from __future__ import annotations

import fnmatch
import math
import random
import re
from dataclasses import MISSING, dataclass
from dataclasses import fields as dfields
from typing import Any, ClassVar, Literal, Optional, Union

from pydantic import (BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, ValidationInfo,
                      field_validator, model_validator)
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import InitErrorDetails, PydanticCustomError

from dlbrig.core.site import Site, SiteError
from dlbrig.firmware_sim import EV, EV_PRESETS, EvFaults, EvseConfig, FirmwareFaults
from dlbrig.firmware_sim.profiles import get_profile

from .timeline import StepError, TimelineContext, parse_step
from ..energy.config import EnergySpec   # the energy block (see "energy block" below)
from .times import format_rel, parse_duration, parse_start, parse_time

__all__ = ["Scenario", "Step", "MeterDevice", "ChargerDevice", "LoadSpec", "VehicleSpec",
           "ArrivalSpec", "InstrumentSpec", "Expansion", "DEFAULT_BUS", "BUILDING_KINDS", "LOAD_KINDS"]

DEFAULT_BUS = "rs485-1"
BUILDING_KINDS = ("office", "hotel", "hospital", "residential")
LOAD_KINDS = BUILDING_KINDS + ("constant", "pv", "step")
Duration = Union[str, int, float]
PerPhase = Union[float, list[float]]


# ---------------------------------------------------------------------------------- errors
def _err(loc: tuple, msg: str, value: Any = None, field: str | None = None) -> InitErrorDetails:
    ctx = {"msg": msg}
    if field is not None:
        ctx["field"] = field
    return InitErrorDetails(type=PydanticCustomError("scenario", "{msg}", ctx), loc=tuple(loc),
                            input=value)


def _raise(errors: list) -> None:
    if errors:
        raise ValidationError.from_exception_data("Scenario", errors)


class _Base(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    _derived: ClassVar[tuple] = ()   # output-only fields (rejected on input, hidden from the JSON Schema)

    @model_validator(mode="before")
    @classmethod
    def _no_derived(cls, data):
        if isinstance(data, dict):
            bad = [k for k in data if k in cls._derived]
            _raise([_err((k,), f"{k!r} is computed, not set (allowed: {_allowed(cls)})", data[k])
                    for k in bad])
        return data


def _allowed(cls) -> str:
    derived = cls._derived
    return ", ".join(sorted((f.alias or n) for n, f in cls.model_fields.items() if n not in derived))


# ---------------------------------------------------------------------------------- helpers
def _dc_fields(dc) -> dict:
    return {f.name: f for f in dfields(dc) if not f.name.startswith("_")}


def _dc_default(f):
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:   # type: ignore[misc]
        return f.default_factory()          # type: ignore[misc]
    return None


def _check_dc_dict(value: dict, dc, what: str, exclude: tuple = (), example: str = "") -> dict:
    """Validate override keys against a dataclass's fields (``*_s`` accepted for ``*_ms``) and
    return them under the canonical names, ``*_s`` converted to integer ms."""
    if not isinstance(value, dict):
        raise ValueError(f"must be a mapping of {what} fields")
    known = {n: f for n, f in _dc_fields(dc).items() if n not in exclude}
    out, errors = {}, []
    for key, v in value.items():
        name, scale = key, None
        if isinstance(key, str) and key not in known and key.endswith("_s") and key[:-2] + "_ms" in known:
            name, scale = key[:-2] + "_ms", 1000
        if name not in known:
            allowed = sorted(known) + [k[:-3] + "_s" for k in known if k.endswith("_ms")]
            errors.append(_err((key,), f"unknown {what} field {key!r} (allowed: {', '.join(sorted(allowed))})", v))
            continue
        default = _dc_default(known[name])
        problem = None
        if v is None and "None" in str(known[name].type):
            pass
        elif isinstance(default, bool):
            if not isinstance(v, bool):
                problem = f"must be true or false, got {v!r}"
        elif isinstance(default, (int, float)) or name.endswith(("_ms", "_a", "_pct", "_kwh", "_v")):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                problem = f"must be a number, got {v!r}"
            elif scale:
                v = int(round(v * scale))
            elif isinstance(default, int) and name.endswith("_ms"):
                if v != int(v):
                    problem = f"must be a whole number of ms, got {v!r}"
                v = int(v)
        elif isinstance(default, str) and not isinstance(v, str):
            problem = f"must be a string, got {v!r}"
        elif isinstance(default, tuple) and isinstance(v, list):
            v = tuple(tuple(x) if isinstance(x, list) else x for x in v)
        if problem:
            errors.append(_err((key,), problem, v))
        out[name] = v
    _raise(errors)
    return out


def _profile(name: str, kind: str):
    try:
        p = get_profile(name)
    except KeyError:
        from dlbrig.firmware_sim.profiles import list_profiles
        raise ValueError(f"unknown profile {name!r} (known {kind} profiles: "
                         f"{', '.join(list_profiles(kind))})") from None
    if p.kind != kind:
        from dlbrig.firmware_sim.profiles import list_profiles
        raise ValueError(f"profile {name!r} is a {p.kind}, not a {kind} (known {kind} profiles: "
                         f"{', '.join(list_profiles(kind))})")
    return p


def _default_unit(p) -> int:
    for unit, role in p.units:
        if role == p.default_role:
            return unit
    return p.unit_ids[0]


# ---------------------------------------------------------------------------------- devices
class _Device(_Base):
    profile: str
    transport: Optional[Literal["tcp", "rtu"]] = Field(
        None, description="tcp or rtu; default: the profile's transport")
    unit: Optional[int] = Field(None, ge=0, le=255, description="Modbus unit id; default: the profile's "
                                "(on an RTU bus, the next free id when taken)")
    bus: Optional[str] = Field(None, description=f"RTU line name; devices with the same bus share one "
                               f"line (default {DEFAULT_BUS!r}); ignored for tcp")
    baud: Optional[int] = Field(None, gt=0, description="RTU baud rate; default: the profile's")
    parity: Optional[Literal["N", "E", "O"]] = Field(None, description="RTU parity; default: the profile's")
    _loc: tuple = PrivateAttr(())     # where the entry came from in the input (for error lines)

    @property
    def label(self) -> str:
        return getattr(self, "charger", None) or getattr(self, "circuit", "?")

    def _fill_transport(self, kind: str) -> None:
        p = get_profile(self.profile)
        if self.transport is None:
            self.transport = p.transport   # type: ignore[assignment]
        if self.transport == "rtu":
            self.bus = self.bus or DEFAULT_BUS
            self.baud = self.baud or p.baud
            self.parity = self.parity or p.parity   # type: ignore[assignment]
        else:
            self.bus = None


class MeterDevice(_Device):
    """An emulated (or real) meter on a metered circuit of the site."""

    circuit: str = Field(description="a circuit of the site with meter: true")
    profile: str = Field("sdm630", description="a meter profile (list_profiles('meter'))")
    update_interval_s: float = Field(1.0, gt=0, description="how often the meter refreshes its values")
    noise_a: float = Field(0.0, ge=0, description="measurement noise amplitude (A)")

    @field_validator("profile")
    @classmethod
    def _meter_profile(cls, v):
        return _profile(v, "meter").name


class ChargerDevice(_Device):
    """The charger device (firmware model + product profile) of a site charger.

    ``charger`` may be a glob pattern (``"a*"``): the entry applies to every matching site charger
    that is not named exactly by another entry (first matching pattern wins)."""

    charger: str = Field(description="a site charger name, or a glob pattern such as 'hall_a_*'")
    profile: str = Field("dlbrig_generic", description="a charger profile (list_profiles('charger'))")
    firmware: dict[str, Any] = Field(default_factory=dict, description="EvseConfig overrides "
                                     "(*_s accepted for *_ms, e.g. watchdog_timeout_s)")
    faults: dict[str, Any] = Field(default_factory=dict, description="FirmwareFaults fields")

    @field_validator("profile")
    @classmethod
    def _charger_profile(cls, v):
        return _profile(v, "charger").name

    def firmware_config(self) -> dict:
        """EvseConfig keyword overrides (canonical field names, ``*_s`` already in ms)."""
        return dict(self.firmware)

    @field_validator("firmware")
    @classmethod
    def _firmware(cls, v):
        out = _check_dc_dict(v, EvseConfig, "EvseConfig")
        try:
            EvseConfig(**out)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"rejected by EvseConfig: {exc}") from None
        return out

    @field_validator("faults")
    @classmethod
    def _faults(cls, v):
        out = _check_dc_dict(v, FirmwareFaults, "FirmwareFaults")
        FirmwareFaults(**out)
        return out


# ---------------------------------------------------------------------------------- loads
class LoadSpec(_Base):
    """A load on a circuit (positive = import): a building profile, a constant, PV or a step."""

    _derived: ClassVar[tuple] = ("at_ms", "for_ms")
    circuit: str = Field(description="a site circuit")
    kind: Literal["office", "hotel", "hospital", "residential", "constant", "pv", "step"]
    peak_a: Optional[float] = Field(None, ge=0, description="per-phase peak (building kinds) or level "
                                    "(constant), A")
    kwp: Optional[float] = Field(None, gt=0, description="installed PV power (pv), kW")
    weather: Literal["clear", "cloudy"] = "clear"
    unbalance: PerPhase = Field(0.0, description="scalar u -> weights (1+u, 1, 1-u), or 3 weights")
    at: Optional[str] = Field(None, description="step: when it switches on (a scenario time)")
    delta_a: Optional[PerPhase] = Field(None, description="step: current, one value or [L1, L2, L3] (A)")
    for_: Optional[Duration] = Field(None, alias="for", description="step: how long (default: forever)")
    seed: Optional[int] = Field(None, description="noise/cloud seed; default (None): the runner "
                                "derives one from the scenario seed and the load index")
    at_ms: SkipJsonSchema[Optional[int]] = None
    for_ms: SkipJsonSchema[Optional[int]] = None

    @field_validator("unbalance", "delta_a", mode="before")
    @classmethod
    def _per_phase(cls, v, info: ValidationInfo):
        if v is None and info.field_name == "delta_a":
            return v
        if isinstance(v, list):
            if len(v) != 3 or any(isinstance(x, bool) or not isinstance(x, (int, float)) for x in v):
                raise ValueError(f"must be one number or three numbers [L1, L2, L3], got {v!r}")
        elif isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"must be one number or three numbers [L1, L2, L3], got {v!r}")
        return v

    @field_validator("for_")
    @classmethod
    def _for(cls, v):
        if v is not None:
            parse_duration(v, allow_zero=False)
        return v

    @model_validator(mode="after")
    def _kind_fields(self):
        errors = []
        need = {"pv": ("kwp",), "step": ("at", "delta_a")}.get(self.kind, ("peak_a",))
        for name in need:
            if getattr(self, name) is None:
                errors.append(_err((_alias(self, name),), f"required for kind {self.kind}"))
        allowed = set(need) | {"circuit", "kind", "seed", "unbalance"}
        allowed |= {"weather"} if self.kind == "pv" else set()
        allowed |= {"for_"} if self.kind == "step" else set()
        for name in ("peak_a", "kwp", "at", "delta_a", "for_"):
            if name not in allowed and getattr(self, name) is not None:
                errors.append(_err((_alias(self, name),), f"does not apply to kind {self.kind}"))
        if self.kind != "pv" and "weather" in self.model_fields_set:
            errors.append(_err(("weather",), f"does not apply to kind {self.kind}"))
        _raise(errors)
        if self.for_ is not None:
            self.for_ms = parse_duration(self.for_)
        return self


def _alias(model, name: str) -> str:
    f = type(model).model_fields[name]
    return f.alias or name


# ---------------------------------------------------------------------------------- vehicles
_EV_EXCLUDE = ("name", "faults", "soc_pct", "departure_ms")


class VehicleSpec(_Base):
    """One vehicle plugging into a charger.  ``arrive_ms`` / ``depart_ms`` (ms since the scenario
    start) are filled in by the scenario."""

    _derived: ClassVar[tuple] = ("arrive_ms", "depart_ms", "origin")
    id: str
    preset: str = Field(description="an EV preset (firmware_sim.EV_PRESETS)")
    charger: str = Field(description="a site charger")
    arrive: str = Field(description="a scenario time: '08:05', '+5m', 'Tue 07:30'")
    depart: Optional[str] = Field(None, description="a scenario time (may be after the end); "
                                  "None: stays until the end")
    energy_kwh: Optional[float] = Field(None, gt=0, description="energy the driver needs (kWh)")
    soc: Optional[float] = Field(None, ge=0, le=1, description="state of charge at arrival, 0..1")
    knobs: dict[str, Any] = Field(default_factory=dict, description="EV field overrides "
                                  "(*_s accepted for *_ms, e.g. reaction_delay_s)")
    faults: dict[str, Any] = Field(default_factory=dict, description="EvFaults fields")
    arrive_ms: SkipJsonSchema[Optional[int]] = None
    depart_ms: SkipJsonSchema[Optional[int]] = None
    origin: SkipJsonSchema[Optional[str]] = None

    @field_validator("preset")
    @classmethod
    def _preset(cls, v):
        if v not in EV_PRESETS:
            raise ValueError(f"unknown EV preset {v!r} (known: {', '.join(EV_PRESETS)})")
        return v

    @field_validator("knobs")
    @classmethod
    def _knobs(cls, v):
        return _check_dc_dict(v, EV, "EV", exclude=_EV_EXCLUDE)

    @field_validator("faults")
    @classmethod
    def _faults(cls, v):
        return _check_dc_dict(v, EvFaults, "EvFaults")

    @model_validator(mode="after")
    def _buildable(self):
        try:
            EV.preset(self.preset, **self.knobs)
        except (TypeError, ValueError) as exc:
            _raise([_err(("knobs",), f"rejected by the EV model: {exc}", self.knobs)])
        return self

    def ev_kwargs(self, start_ms: int | None = None) -> dict:
        """Keyword arguments for ``EV.preset(self.preset, **kw)``: knobs, ``soc_pct``, ``faults``
        (an EvFaults) and, given the scenario's ``start_ms``, ``departure_ms`` on the models'
        absolute clock.  ``energy_kwh`` is not an EV field: the runner reports it to the core."""
        kw = dict(self.knobs)
        if start_ms is not None and self.depart_ms is not None:
            kw["departure_ms"] = int(start_ms) + self.depart_ms
        if self.soc is not None:
            kw["soc_pct"] = self.soc * 100.0
        if self.faults:
            kw["faults"] = EvFaults(**self.faults)
        return kw


class ArrivalSpec(_Base):
    """A stream of ``count`` random arrivals (deterministic per scenario seed), see
    :meth:`Scenario.expand`."""

    count: int = Field(ge=0)
    chargers: Union[Literal["all"], list[str]] = Field(
        "all", description="'all' (site order) or charger names / glob patterns, in preference order")
    window: tuple[str, str] = Field(description="[earliest, latest] arrival time")
    dwell: tuple[Duration, Duration] = Field(description="[shortest, longest] stay, e.g. ['4h', '9h']")
    energy_kwh: tuple[float, float] = Field(description="[least, most] energy need (kWh)")
    soc: Optional[tuple[float, float]] = Field(None, description="[lowest, highest] state of charge "
                                               "at arrival (0..1); default: not set (preset default)")
    presets: dict[str, float] = Field(default_factory=lambda: {"sedan_3p": 1.0},
                                      description="EV preset -> weight")
    seed_offset: int = Field(0, description="added to the scenario seed for this stream")
    when_full: Literal["drop", "wait"] = Field(
        "drop", description="no free charger at arrival: 'drop' (the driver leaves; listed in "
        "Expansion.dropped) or 'wait' (plugs into the first charger that frees before the departure)")
    id_prefix: Optional[str] = Field(None, description="vehicle ids are PREFIX-NNN (default a<index>)")

    @field_validator("dwell")
    @classmethod
    def _dwell(cls, v):
        lo, hi = (parse_duration(x, allow_zero=False) for x in v)
        if lo > hi:
            raise ValueError(f"shortest dwell {v[0]!r} is longer than the longest {v[1]!r}")
        return v

    @field_validator("energy_kwh", "soc")
    @classmethod
    def _range(cls, v, info: ValidationInfo):
        if v is None:
            return v
        lo, hi = v
        if lo < 0 or lo > hi:
            raise ValueError(f"must be [low, high] with 0 <= low <= high, got {list(v)!r}")
        if info.field_name == "soc" and hi > 1:
            raise ValueError(f"state of charge is a fraction 0..1, got {list(v)!r}")
        return v

    @field_validator("presets")
    @classmethod
    def _presets(cls, v):
        errors = []
        for k, w in v.items():
            if k not in EV_PRESETS:
                errors.append(_err((k,), f"unknown EV preset {k!r} (known: {', '.join(EV_PRESETS)})", k))
            elif not w > 0:
                errors.append(_err((k,), f"weight must be > 0, got {w!r}", w))
        _raise(errors)
        if not v:
            raise ValueError("needs at least one preset")
        return v


# ---------------------------------------------------------------------------------- steps
class Step(_Base):
    """One timeline step, parsed.  ``at_ms`` is ms since the scenario start."""

    at_ms: int = Field(ge=0)
    verb: str
    target: Optional[str] = None
    args: dict[str, Any] = Field(default_factory=dict)
    text: str = ""
    line: int = 0


@dataclass
class Expansion:
    """Result of :meth:`Scenario.expand`: vehicles in arrival order, and arrivals turned away."""

    vehicles: list
    dropped: list


# ---------------------------------------------------------------------------------- instruments
# (issue 6, lab instruments over VISA: this block, the ``instruments`` field of Scenario and the
# ``_resolve_instruments`` call in ``_resolve_all`` are the whole of it)
_CONDUCTOR = re.compile(r"^([A-Za-z_][\w-]*)\.(L?[123])$")


class InstrumentSpec(_Base):
    """A lab instrument bound to roles of the site: emulated, or a real one at ``resource``.

    * electronic load (``eload``): ``ev`` (the charger whose EV it stands in for) and ``conductor``;
    * power analyzer: ``elements``, one ``charger.N`` per element (N = conductor 1..3), null = unbound;
    * DMM: ``charger`` and ``conductor``, through a clamp of ``scale`` A at the DMM per A;
    * AC source: ``circuit`` and ``phase`` (the grid of that site phase);
    * EV simulator (``ev_simulator``): ``ev``, the charger whose EV it is (it takes over the
      charger's socket: no scenario vehicle should use that charger).
    """

    name: str = Field(min_length=1, description="unique instrument name")
    model: str = Field(description="an instrument model (dlbrig.firmware_sim.instruments.INSTRUMENT_MODELS)")
    resource: Optional[str] = Field(None, description="VISA resource of a real instrument "
                                    "(TCPIP0::host::port::SOCKET); absent: emulated")
    ev: Optional[str] = Field(None, description="eload: the charger whose EV the load stands in for; "
                              "ev_simulator: the charger whose EV it is")
    charger: Optional[str] = Field(None, description="dmm: the charger it measures")
    conductor: int = Field(1, ge=1, le=3, description="eload / dmm: charger conductor 1..3 (L1..L3 of the charger)")
    elements: list[Optional[str]] = Field(default_factory=list, description="power analyzer: 'charger.N' per element")
    scale: float = Field(1.0, gt=0, description="dmm: A at the DMM per A in the conductor (current clamp)")
    circuit: Optional[str] = Field(None, description="ac_source: the circuit it feeds")
    phase: str = Field("L1", description="ac_source: the site phase it stands in for (L1, L2, L3)")
    _kind: str = PrivateAttr("")
    _channels: list = PrivateAttr(default_factory=list)   # resolved: ("charger", name, conductor index) | ("circuit", name, phase index) | None

    @field_validator("model")
    @classmethod
    def _model(cls, v):
        from dlbrig.firmware_sim.instruments import INSTRUMENT_MODELS
        if v not in INSTRUMENT_MODELS:
            raise ValueError(f"unknown instrument model {v!r} (known: {', '.join(INSTRUMENT_MODELS)})")
        return v

    @field_validator("resource")
    @classmethod
    def _resource(cls, v):
        if v is not None and not re.fullmatch(r"TCPIP\d*::[^:]+::\d{1,5}::SOCKET", v.strip(), re.IGNORECASE):
            raise ValueError(f"{v!r} is not a VISA socket resource (TCPIP0::host::port::SOCKET)")
        return v

    @field_validator("phase")
    @classmethod
    def _phase(cls, v):
        if v not in ("L1", "L2", "L3"):
            raise ValueError(f"must be L1, L2 or L3, got {v!r}")
        return v

    @property
    def kind(self) -> str:
        from dlbrig.firmware_sim.instruments import INSTRUMENT_MODELS
        return INSTRUMENT_MODELS[self.model].kind

    @property
    def channels(self) -> list:
        return list(self._channels)

    @property
    def emulated(self) -> bool:
        return self.resource is None


def _resolve_instruments(sc, core: Site, errors: list) -> None:
    """Cross-references of the instruments block: roles exist, conductors exist, names unique."""
    from dlbrig.firmware_sim.instruments import INSTRUMENT_MODELS
    names = core.charger_names
    seen: dict[str, int] = {}

    def charger_ok(loc, name, conductor) -> tuple | None:
        if name not in names:
            errors.append(_err(loc, f"unknown charger {name!r} (site chargers: {_short(names)})", name))
            return None
        k = core.chargers[names.index(name)]
        if conductor > k.phases:
            errors.append(_err(loc, f"charger {name!r} has {k.phases} conductor(s), no conductor {conductor}",
                               conductor))
            return None
        return ("charger", name, conductor - 1)

    for i, ins in enumerate(sc.instruments):
        loc = ("instruments", i)
        if ins.name in seen:
            errors.append(_err(loc + ("name",), f"instrument {ins.name!r} already defined "
                               f"(instruments[{seen[ins.name]}])", ins.name))
        seen.setdefault(ins.name, i)
        info = INSTRUMENT_MODELS[ins.model]
        ins._kind = info.kind
        allowed = {"eload": ("ev", "conductor"), "dmm": ("charger", "conductor", "scale"),
                   "power_analyzer": ("elements",), "ac_source": ("circuit", "phase"),
                   "ev_simulator": ("ev",)}[info.kind]
        for f in ("ev", "charger", "elements", "scale", "circuit", "phase", "conductor"):
            if f in ins.model_fields_set and f not in allowed:
                errors.append(_err(loc + (f,), f"not a field of a {info.kind} ({ins.model}); its "
                                   f"roles: {', '.join(allowed)}", getattr(ins, f)))
        chans: list = []
        if info.kind == "eload":
            if ins.ev is None:
                errors.append(_err(loc + ("ev",), f"an electronic load needs ev: the charger whose EV "
                                   f"it stands in for (site chargers: {_short(names)})"))
            else:
                chans = [charger_ok(loc + ("ev",), ins.ev, ins.conductor)]
        elif info.kind == "ev_simulator":
            if ins.ev is None:
                errors.append(_err(loc + ("ev",), f"an EV simulator needs ev: the charger whose EV it is "
                                   f"(site chargers: {_short(names)})"))
            else:
                chans = [charger_ok(loc + ("ev",), ins.ev, 1)]
        elif info.kind == "dmm":
            if ins.charger is None:
                errors.append(_err(loc + ("charger",), f"a DMM needs charger: the charger it measures "
                                   f"(site chargers: {_short(names)})"))
            else:
                chans = [charger_ok(loc + ("charger",), ins.charger, ins.conductor)]
        elif info.kind == "power_analyzer":
            if not ins.elements:
                errors.append(_err(loc + ("elements",), "a power analyzer needs elements: one "
                                   "'charger.N' per element (N = conductor 1..3)"))
            if len(ins.elements) > info.elements:
                errors.append(_err(loc + ("elements",), f"{ins.model} has {info.elements} elements, "
                                   f"{len(ins.elements)} given", len(ins.elements)))
            used: dict = {}
            for e, ref in enumerate(ins.elements):
                if ref is None:
                    chans.append(None)
                    continue
                m = _CONDUCTOR.match(str(ref))
                if not m:
                    errors.append(_err(loc + ("elements", e), f"{ref!r}: expected 'charger.N' "
                                       f"(N = conductor 1..3, e.g. 'cp1.1')", ref))
                    chans.append(None)
                    continue
                ch = charger_ok(loc + ("elements", e), m.group(1), int(m.group(2).lstrip("L")))
                if ch is not None and ch in used:
                    errors.append(_err(loc + ("elements", e), f"{ref!r} is already measured by "
                                       f"element {used[ch] + 1}", ref))
                if ch is not None:
                    used.setdefault(ch, e)
                chans.append(ch)
        else:
            if ins.circuit is None:
                errors.append(_err(loc + ("circuit",), f"an AC source needs circuit: the circuit it "
                                   f"feeds (site circuits: {', '.join(core.circuit_names)})"))
            elif ins.circuit not in core.circuit_names:
                errors.append(_err(loc + ("circuit",), f"unknown circuit {ins.circuit!r} "
                                   f"(site circuits: {', '.join(core.circuit_names)})", ins.circuit))
            else:
                chans = [("circuit", ins.circuit, int(ins.phase[1]) - 1)]
        ins._channels = chans


# ---------------------------------------------------------------------------------- scenario
_SITE_FIELD = re.compile(r"([A-Za-z_]\w*)|\[(\d+)\]|\s*\(([^)]*)\)|(\.)")


class Scenario(_Base):
    """A test scenario: a site, its devices, loads, vehicles and a timeline.  See the package
    docstring for the file format and :mod:`.times` for the time grammar."""

    _derived: ClassVar[tuple] = ("start_ms", "duration_ms", "steps", "source")
    name: str = Field(min_length=1)
    description: str = ""
    seed: int = 1
    start: str = Field("00:00", description="time of day at t=0: 'HH:MM[:SS]', 'Sat 08:00' or "
                       "'d2 08:00' (day 0 = Monday)")
    duration: Duration = Field(description="'8h', '90m', '3600s' or seconds")
    mode: Literal["fast", "wire"] = "fast"
    site: dict[str, Any] = Field(description="the core site spec (dlbrig.core.Site.from_dict); a "
                                 "charger entry with count: N and {n} in its name stands for N chargers")
    meters: list[MeterDevice] = Field(default_factory=list)
    chargers: list[ChargerDevice] = Field(default_factory=list)
    loads: list[LoadSpec] = Field(default_factory=list)
    vehicles: list[VehicleSpec] = Field(default_factory=list)
    arrivals: list[ArrivalSpec] = Field(default_factory=list)
    instruments: list[InstrumentSpec] = Field(default_factory=list, description="lab instruments over "
                                              "VISA bound to chargers and circuits (InstrumentSpec)")
    timeline: list[str] = Field(default_factory=list, description="steps, e.g. 'at 08:05 plug cp3 "
                                "ev=compact_1p' or 'meter main stale for 30s at +10m'")
    source: SkipJsonSchema[Optional[str]] = None
    start_ms: SkipJsonSchema[int] = 0
    duration_ms: SkipJsonSchema[int] = 0
    steps: SkipJsonSchema[list[Step]] = Field(default_factory=list)
    _core_site: Any = PrivateAttr(None)
    _raw: Any = PrivateAttr(None)
    _lines: Any = PrivateAttr(None)
    _overrides: Any = PrivateAttr(None)
    _expansion: Any = PrivateAttr(None)

    # ---- energy block: time-of-use tariff, contracted capacity, capacity tariff (15-min peak), on-site
    # battery, price-aware policy (dlbrig.rig.energy; the layer the controller calls before the core)
    energy: Optional[EnergySpec] = Field(None, description="tariff, contract, capacity_tariff, battery, "
                                         "price_aware (dlbrig.rig.energy.config); fast mode only")

    @model_validator(mode="after")
    def _resolve_energy(self):
        if self.energy is not None:
            try:            # may run before _resolve: the site's own errors are _resolve's to report
                core = self._core_site or Site.from_dict(_expand_site(self.site)[0])
            except (SiteError, ValidationError):
                return self
            root = next(n for n, c in zip(core.circuit_names, core.circuits) if c.parent < 0)
            if root not in core.metered:
                _raise([_err(("energy",), f"needs a meter on the main circuit {root!r} (set meter: true on it): "
                             f"caps and the battery act on its reading")])
        return self
    # ---- end of the energy block

    @field_validator("start")
    @classmethod
    def _start(cls, v):
        parse_start(v)
        return v

    @field_validator("duration")
    @classmethod
    def _duration(cls, v):
        parse_duration(v, allow_zero=False)
        return v

    @field_validator("timeline", mode="before")
    @classmethod
    def _timeline_items(cls, v):
        if isinstance(v, list):
            _raise([_err((i,), "a step is one line of text; quote it if it contains ': ' or starts "
                         "with a special character", x) for i, x in enumerate(v) if not isinstance(x, str)])
        return v

    @model_validator(mode="after")
    def _resolve(self, info: ValidationInfo):
        ctx = info.context or {}
        self._resolve_all(bool(ctx.get("truncate")), ctx.get("lines") or {})
        return self

    # -- public helpers -------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict, *, source: str | None = None, duration=None, seed=None,
                  mode=None) -> "Scenario":
        """Validate a mapping; errors raise :class:`ScenarioError` (no line numbers).  Plain
        ``Scenario(**data)`` / ``model_validate`` work too but raise pydantic's ValidationError."""
        from .loader import validate
        return validate(data, file=source, duration=duration, seed=seed, mode=mode)

    @property
    def core_site(self) -> Site:
        """The validated :class:`dlbrig.core.Site` (built once)."""
        if self._core_site is None:
            self._core_site = Site.from_dict(self.site)
        return self._core_site

    def time_ms(self, value) -> int:
        """A scenario time (``"08:05"``, ``"+5m"``, ``"Tue 07:30"``) -> ms since the start.
        Raises ValueError if it is malformed or before the start."""
        t = parse_time(value, self.start_ms)
        if t < 0:
            raise ValueError(f"{value!r} is before the scenario start")
        return t

    def to_abs_ms(self, t_ms: int) -> int:
        """ms since the scenario start -> the models' absolute clock (ms since Monday 00:00)."""
        return self.start_ms + int(t_ms)

    def charger_device(self, name: str) -> ChargerDevice:
        for d in self.chargers:
            if d.charger == name:
                return d
        raise KeyError(name)

    def meter_device(self, circuit: str) -> MeterDevice:
        for d in self.meters:
            if d.circuit == circuit:
                return d
        raise KeyError(circuit)

    def buses(self) -> dict[str, list]:
        """RTU bus name -> its devices (MeterDevice / ChargerDevice) in file order."""
        out: dict[str, list] = {}
        for d in [*self.meters, *self.chargers]:
            if d.transport == "rtu":
                out.setdefault(d.bus, []).append(d)
        return out

    def expand_vehicles(self) -> list[VehicleSpec]:
        """``vehicles`` plus the arrivals drawn from ``arrivals``, sorted by arrival time."""
        return self.expand().vehicles

    def expand(self) -> Expansion:
        """Turn ``vehicles`` + ``arrivals`` into concrete vehicles, deterministically per seed.

        Each arrival stream draws, per vehicle and in order: arrival time (uniform in ``window``,
        whole seconds), dwell (uniform, whole minutes), energy need (uniform, 0.1 kWh), soc (if
        ``soc`` is set) and preset (by weight), from ``random.Random`` seeded with the scenario seed,
        the stream index and ``seed_offset``; the draws do not depend on ``duration``, so a shortened
        scenario keeps the same early arrivals (later ones are cut).  Then all drawn arrivals are
        placed in time order (ties: stream, then draw order): each takes the first charger in its
        ``chargers`` order that is free from its arrival to its departure (not used in that span
        by an explicit vehicle, an earlier arrival, or a timeline ``plug`` until its ``unplug``:
        those are known in advance, like reservations).  When none is free,
        ``when_full="drop"`` turns it away (``Expansion.dropped``, ``charger`` = "") and
        ``"wait"`` plugs it at the earliest time a candidate charger frees, if that is before its
        departure and the end of the scenario (``arrive`` is then the plug time; else dropped).
        """
        key = (self.seed, self.duration_ms, self.start_ms)   # model_copy(update=...) safe
        if self._expansion is None or self._expansion[0] != key:
            self._expansion = (key, _expand(self))
        return self._expansion[1]

    def to_dict(self) -> dict:
        """The input fields (as a file would write them, defaults filled in)."""
        d = self.model_dump(mode="json", by_alias=True, exclude=set(self._derived), exclude_unset=True)
        for key, cls in (("vehicles", VehicleSpec), ("loads", LoadSpec)):
            for item in d.get(key, []):
                for k in cls._derived:
                    item.pop(k, None)
        return d

    def with_overrides(self, *, duration=None, seed=None, mode=None) -> "Scenario":
        """A copy re-validated with a new duration / seed / mode.  A shorter duration drops the
        steps and vehicles after the new end instead of failing."""
        from .loader import validate
        data = dict(self._raw if self._raw is not None else self.to_dict())
        ov = {k: v for k, v in (self._overrides or {}).items() if v is not None}
        ov.update({k: v for k, v in (("duration", duration), ("seed", seed), ("mode", mode))
                   if v is not None})
        return validate(data, file=self.source, lines=self._lines, **ov)

    # -- resolution ---------------------------------------------------------------------
    def _resolve_all(self, truncate: bool, lines: dict) -> None:
        self.start_ms = parse_start(self.start)
        self.duration_ms = parse_duration(self.duration, allow_zero=False)
        site, origin = _expand_site(self.site)
        try:
            core = Site.from_dict(site)
        except SiteError as exc:
            _raise([_site_error(exc, origin)])
        self.site = site
        self._core_site = core
        errors: list = []
        self._resolve_meters(core, errors)
        self._resolve_chargers(core, errors)
        _raise(errors)
        self._resolve_buses(errors)
        self._resolve_loads(core, truncate, errors)
        self._resolve_vehicles(core, truncate, errors)
        self._resolve_arrivals(core, errors)
        _resolve_instruments(self, core, errors)
        _raise(errors)
        self._resolve_timeline(core, truncate, errors, lines)
        _raise(errors)

    def _resolve_meters(self, core: Site, errors: list) -> None:
        seen: dict[str, int] = {}
        for i, m in enumerate(self.meters):
            if m.circuit not in core.circuit_names:
                errors.append(_err(("meters", i, "circuit"), f"unknown circuit {m.circuit!r} "
                                   f"(site circuits: {', '.join(core.circuit_names)})", m.circuit))
            elif m.circuit not in core.metered:
                errors.append(_err(("meters", i, "circuit"), f"circuit {m.circuit!r} has no meter in "
                                   f"the site (set meter: true on it)", m.circuit))
            elif m.circuit in seen:
                errors.append(_err(("meters", i, "circuit"), f"circuit {m.circuit!r} already has a "
                                   f"meter (meters[{seen[m.circuit]}])", m.circuit))
            else:
                seen[m.circuit] = i
        if errors:
            return
        for i, m in enumerate(self.meters):
            m._loc = ("meters", i)
        out = []
        for c in core.metered:               # site order (parents first), a default where missing
            if c in seen:
                out.append(self.meters[seen[c]])
            else:
                out.append(MeterDevice(circuit=c))
                out[-1]._loc = ("site", "circuits")
        self.meters = out
        for m in self.meters:
            m._fill_transport("meter")

    def _resolve_chargers(self, core: Site, errors: list) -> None:
        names = core.charger_names
        exact: dict[str, int] = {}
        patterns: list[int] = []
        for i, d in enumerate(self.chargers):
            if any(ch in d.charger for ch in "*?["):
                if not fnmatch.filter(names, d.charger):
                    errors.append(_err(("chargers", i, "charger"), f"pattern {d.charger!r} matches no "
                                       f"site charger", d.charger))
                patterns.append(i)
            elif d.charger not in names:
                errors.append(_err(("chargers", i, "charger"), f"unknown charger {d.charger!r} "
                                   f"(site chargers: {_short(names)})", d.charger))
            elif d.charger in exact:
                errors.append(_err(("chargers", i, "charger"), f"charger {d.charger!r} already has an "
                                   f"entry (chargers[{exact[d.charger]}])", d.charger))
            else:
                exact[d.charger] = i
        if errors:
            return
        for i, d in enumerate(self.chargers):
            d._loc = ("chargers", i)
        out, next_unit = [], {}
        for name in names:
            if name in exact:
                out.append(self.chargers[exact[name]])
                continue
            src = next((self.chargers[i] for i in patterns if fnmatch.fnmatchcase(name, self.chargers[i].charger)),
                       None)
            if src is None:
                out.append(ChargerDevice(charger=name))
                out[-1]._loc = ("site", "chargers")
                continue
            dev = src.model_copy(deep=True)
            dev.charger = name
            dev._loc = src._loc
            if src.unit is not None:            # a pattern with a unit numbers its chargers from it
                u = next_unit.get(id(src), src.unit)
                dev.unit = u
                next_unit[id(src)] = u + 1
            out.append(dev)
        self.chargers = out
        for d in self.chargers:
            d._fill_transport("charger")

    def _resolve_buses(self, errors: list) -> None:
        devices = [*self.meters, *self.chargers]
        used: dict[str, dict[int, str]] = {}
        settings: dict[str, tuple] = {}

        def label(d) -> str:
            return f"{'meter' if isinstance(d, MeterDevice) else 'charger'} {d.label!r}"

        def loc(d, key=None) -> tuple:
            return d._loc + ((key,) if key and len(d._loc) == 2 and d._loc[0] != "site" else ())

        rtu = [d for d in devices if d.transport == "rtu"]
        for d in [d for d in rtu if d.unit is not None]:
            units = used.setdefault(d.bus, {})
            if not 1 <= d.unit <= 247:
                errors.append(_err(loc(d, "unit"), f"an RTU unit id must be 1-247, got {d.unit}", d.unit))
            elif d.unit in units:
                errors.append(_err(loc(d, "unit"), f"unit {d.unit} of {label(d)} is already used on bus "
                                   f"{d.bus!r} by {units[d.unit]}", d.unit))
            units[d.unit] = label(d)
        for d in [d for d in rtu if d.unit is None]:
            units = used.setdefault(d.bus, {})
            u = _default_unit(get_profile(d.profile))
            if not 1 <= u <= 247 or u in units:
                u = next((x for x in range(1, 248) if x not in units), None)
            if u is None:
                errors.append(_err(loc(d), f"bus {d.bus!r} is full (247 units) at {label(d)}: put "
                                   f"devices on another bus", d.label))
                continue
            d.unit = u
            units[u] = label(d)
        for d in rtu:
            first = settings.setdefault(d.bus, (d.baud, d.parity, label(d)))
            if (d.baud, d.parity) != first[:2]:
                errors.append(_err(loc(d), f"bus {d.bus!r} runs at {first[0]} baud parity {first[1]} "
                                   f"({first[2]}) but {label(d)} ({d.profile}) is at {d.baud} baud "
                                   f"parity {d.parity}: set baud/parity or use another bus", d.profile))
        for d in devices:
            if d.transport != "rtu" and d.unit is None:
                d.unit = _default_unit(get_profile(d.profile))

    def _resolve_loads(self, core: Site, truncate: bool, errors: list) -> None:
        for i, ld in enumerate(self.loads):
            if ld.circuit not in core.circuit_names:
                errors.append(_err(("loads", i, "circuit"), f"unknown circuit {ld.circuit!r} "
                                   f"(site circuits: {', '.join(core.circuit_names)})", ld.circuit))
            if ld.kind == "step" and ld.at is not None:
                try:
                    t = parse_time(ld.at, self.start_ms)
                except ValueError as exc:
                    errors.append(_err(("loads", i, "at"), str(exc), ld.at))
                    continue
                if t < 0:
                    errors.append(_err(("loads", i, "at"), f"{ld.at!r} is before the scenario start", ld.at))
                elif t > self.duration_ms and not truncate:
                    errors.append(_err(("loads", i, "at"), f"{ld.at!r} is after the end of the scenario", ld.at))
                ld.at_ms = t

    def _resolve_vehicles(self, core: Site, truncate: bool, errors: list) -> None:
        ids: dict[str, int] = {}
        keep = []
        for i, v in enumerate(self.vehicles):
            v.origin = f"vehicles[{i}]"
            bad = False
            if v.id in ids:
                errors.append(_err(("vehicles", i, "id"), f"duplicate vehicle id {v.id!r} "
                                   f"(vehicles[{ids[v.id]}])", v.id))
            ids.setdefault(v.id, i)
            if v.charger not in core.charger_names:
                errors.append(_err(("vehicles", i, "charger"), f"unknown charger {v.charger!r} "
                                   f"(site chargers: {_short(core.charger_names)})", v.charger))
            for key in ("arrive", "depart"):
                val = getattr(v, key)
                if val is None:
                    continue
                try:
                    t = parse_time(val, self.start_ms)
                except ValueError as exc:
                    errors.append(_err(("vehicles", i, key), str(exc), val))
                    bad = True
                    continue
                if t < 0:
                    errors.append(_err(("vehicles", i, key), f"{val!r} is before the scenario start", val))
                    bad = True
                setattr(v, f"{key}_ms", t)
            if bad:
                continue
            if v.depart_ms is not None and v.depart_ms <= v.arrive_ms:
                errors.append(_err(("vehicles", i, "depart"), f"{v.depart!r} is not after the arrival "
                                   f"{v.arrive!r}", v.depart))
            elif v.arrive_ms >= self.duration_ms:
                if not truncate:
                    errors.append(_err(("vehicles", i, "arrive"), f"{v.arrive!r} is at or after the end "
                                       f"of the scenario", v.arrive))
                continue
            keep.append(v)
        if errors:
            return
        by_cp: dict[str, list] = {}
        for v in keep:
            by_cp.setdefault(v.charger, []).append(v)
        for cp, vs in by_cp.items():
            vs.sort(key=lambda v: v.arrive_ms)
            for a, b in zip(vs, vs[1:]):
                if a.depart_ms is None or a.depart_ms > b.arrive_ms:
                    j = self.vehicles.index(b)
                    errors.append(_err(("vehicles", j, "arrive"), f"charger {cp!r} is still occupied by "
                                       f"{a.id!r} ({a.arrive} to {a.depart or 'the end'})", b.arrive))
        self.vehicles = keep

    def _resolve_arrivals(self, core: Site, errors: list) -> None:
        for i, a in enumerate(self.arrivals):
            if a.chargers != "all":
                for j, pat in enumerate(a.chargers):
                    if not fnmatch.filter(core.charger_names, pat):
                        errors.append(_err(("arrivals", i, "chargers", j), f"unknown charger {pat!r} "
                                           f"(site chargers: {_short(core.charger_names)})", pat))
            ts = []
            for j, val in enumerate(a.window):
                try:
                    t = parse_time(val, self.start_ms)
                except ValueError as exc:
                    errors.append(_err(("arrivals", i, "window", j), str(exc), val))
                    continue
                if t < 0:
                    errors.append(_err(("arrivals", i, "window", j), f"{val!r} is before the scenario "
                                       f"start", val))
                ts.append(t)
            if len(ts) == 2 and ts[0] > ts[1]:
                errors.append(_err(("arrivals", i, "window"), f"earliest {a.window[0]!r} is after latest "
                                   f"{a.window[1]!r}", list(a.window)))

    def _resolve_timeline(self, core: Site, truncate: bool, errors: list, lines: dict) -> None:
        tctx = TimelineContext(
            start_ms=self.start_ms, duration_ms=self.duration_ms, chargers=list(core.charger_names),
            circuits=list(core.circuit_names), meters=[m.circuit for m in self.meters],
            pv_circuits=sorted({ld.circuit for ld in self.loads if ld.kind == "pv"}),
            presets=list(EV_PRESETS), truncate=truncate)
        parsed = []
        for i, text in enumerate(self.timeline):
            try:
                at_ms, verb, target, args = parse_step(text, tctx)
            except StepError as exc:
                errors.append(_err(("timeline", i), str(exc), text))
                continue
            if at_ms > self.duration_ms:     # only when truncating
                continue
            parsed.append((i, Step(at_ms=at_ms, verb=verb, target=target, args=args, text=text,
                                   line=lines.get(("timeline", i), 0))))
        if errors:
            return
        parsed.sort(key=lambda p: p[1].at_ms)        # stable: the same time keeps file order
        # a plug on a charger that is taken (explicit vehicle, or an earlier plug) is an error
        unplugged: dict[str, int] = {}
        plugged: dict[str, str] = {}
        for i, s in parsed:
            if s.verb == "unplug":
                plugged.pop(s.target, None)
                unplugged[s.target] = s.at_ms
            elif s.verb == "plug":
                who = plugged.get(s.target)
                if who is None:
                    u = unplugged.get(s.target)
                    who = next((v.id for v in self.vehicles if v.charger == s.target
                                and v.arrive_ms <= s.at_ms and (v.depart_ms is None or v.depart_ms > s.at_ms)
                                and not (u is not None and v.arrive_ms <= u)), None)
                if who is not None:
                    errors.append(_err(("timeline", i), f"charger {s.target!r} is occupied by {who!r} "
                                       f"at that time (unplug it first)", s.text))
                    continue
                plugged[s.target] = s.args["id"]
        self.steps = [s for _, s in parsed]


def _short(names: list) -> str:
    return ", ".join(names[:10]) + (f", ... ({len(names)} in all)" if len(names) > 10 else "")


# ---------------------------------------------------------------------------------- site macro
def _expand_site(site: dict) -> tuple[dict, list]:
    """Expand ``count: N`` charger templates; returns (site, origin) where origin[k] is the index
    of the input entry that produced expanded charger k."""
    raw = site.get("chargers") if isinstance(site, dict) else None
    if not isinstance(raw, list) or not any(isinstance(c, dict) and "count" in c for c in raw):
        n = len(raw) if isinstance(raw, list) else 0
        return site, list(range(n))
    out, origin, errors = [], [], []
    for i, c in enumerate(raw):
        if not (isinstance(c, dict) and "count" in c):
            out.append(c)
            origin.append(i)
            continue
        n, first, name = c.get("count"), c.get("first", 1), c.get("name")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            errors.append(_err(("site", "chargers", i, "count"), f"must be a whole number >= 1, got {n!r}", n))
            continue
        if isinstance(first, bool) or not isinstance(first, int):
            errors.append(_err(("site", "chargers", i, "first"), f"must be a whole number, got {first!r}", first))
            continue
        if not isinstance(name, str) or "{n" not in name:
            errors.append(_err(("site", "chargers", i, "name"), "a template with count needs {n} in its "
                               "name, e.g. 'a{n:02d}'", name))
            continue
        body = {k: v for k, v in c.items() if k not in ("count", "first")}
        for k in range(first, first + n):
            try:
                nm = name.format(n=k)
            except (ValueError, KeyError, IndexError) as exc:
                errors.append(_err(("site", "chargers", i, "name"), f"bad name template: {exc}", name))
                break
            out.append({**body, "name": nm})
            origin.append(i)
    _raise(errors)
    return {**site, "chargers": out}, origin


def _site_error(exc: SiteError, origin: list) -> InitErrorDetails:
    loc: list = ["site"]
    fld = exc.field
    if fld != "site":
        pos = 0
        for m in _SITE_FIELD.finditer(fld):
            if m.start() != pos:
                break
            pos = m.end()
            if m.group(1):
                loc.append(m.group(1))
            elif m.group(2):
                idx = int(m.group(2))
                if loc[-1] == "chargers" and len(loc) == 2 and idx < len(origin):
                    idx = origin[idx]
                loc.append(idx)
        mk = re.match(r"unknown key '([^']+)'", exc.problem)
        if mk:
            loc.append(mk.group(1))
    return _err(tuple(loc), exc.problem, None, field="site" if fld == "site" else f"site.{fld}")


# ---------------------------------------------------------------------------------- expansion
def _expand(sc: Scenario) -> Expansion:
    names = sc.core_site.charger_names
    # occupancy: charger -> list of (from, to|None)
    occ: dict[str, list] = {n: [] for n in names}
    for v in sc.vehicles:
        occ[v.charger].append((v.arrive_ms, v.depart_ms))
    plug_at: dict[str, int] = {}
    for s in sc.steps:
        if s.verb == "plug":
            plug_at[s.target] = s.at_ms
            occ[s.target].append((s.at_ms, s.args.get("depart_ms")))
        elif s.verb == "unplug":
            iv = occ[s.target]
            occ[s.target] = [(a, s.at_ms if a <= s.at_ms and (d is None or d > s.at_ms) else d) for a, d in iv]
    draws = []
    for si, a in enumerate(sc.arrivals):
        rng = random.Random(f"dlbrig.scenario:{sc.seed}:{si}:{a.seed_offset}")
        w0, w1 = (parse_time(x, sc.start_ms) for x in a.window)
        d0, d1 = (parse_duration(x) for x in a.dwell)
        presets, weights = list(a.presets), list(a.presets.values())
        cands = names if a.chargers == "all" else \
            [n for pat in a.chargers for n in fnmatch.filter(names, pat)]
        cands = list(dict.fromkeys(cands))
        prefix = a.id_prefix or f"a{si}"
        width = max(3, len(str(a.count)))
        for k in range(a.count):
            arrive = w0 + round(rng.uniform(0, w1 - w0) / 1000) * 1000
            dwell = d0 + round(rng.uniform(0, d1 - d0) / 60_000) * 60_000
            energy = round(rng.uniform(*a.energy_kwh), 1)
            soc = round(rng.uniform(*a.soc), 3) if a.soc is not None else None
            preset = rng.choices(presets, weights)[0]
            draws.append((arrive, si, k, dict(id=f"{prefix}-{k + 1:0{width}d}", preset=preset,
                                              energy_kwh=energy or None, soc=soc), dwell, cands, a))
    draws.sort(key=lambda d: d[:3])
    vehicles = [v.model_copy() for v in sc.vehicles]
    dropped = []

    def free(cp, t0, t1):
        """No session on cp overlaps [t0, t1)."""
        return all(not (a < t1 and (d is None or d > t0)) for a, d in occ[cp])

    def next_free(cp, t, t1):
        """Earliest time in [t, t1) from which cp is free until t1 (None: never)."""
        for x in sorted({t} | {d for a, d in occ[cp] if d is not None and t < d < t1}):
            if free(cp, x, t1):
                return x
        return None

    for arrive, si, k, kw, dwell, cands, a in draws:
        if arrive >= sc.duration_ms:
            continue
        depart = arrive + dwell
        plug_t, cp = arrive, next((c for c in cands if free(c, arrive, depart)), None)
        if cp is None and a.when_full == "wait":
            best = None
            for c in cands:
                t = next_free(c, arrive, depart)
                if t is not None and t < sc.duration_ms and (best is None or t < best[0]):
                    best = (t, c)
            if best is not None:
                plug_t, cp = best
        v = VehicleSpec(charger=cp or "", arrive=format_rel(plug_t), depart=format_rel(depart), **kw)
        v.arrive_ms, v.depart_ms, v.origin = plug_t, depart, f"arrivals[{si}]#{k}"
        if cp is None:
            v.arrive, v.arrive_ms = format_rel(arrive), arrive
            dropped.append(v)
            continue
        occ[cp].append((plug_t, depart))
        vehicles.append(v)
    vehicles.sort(key=lambda v: v.arrive_ms)
    return Expansion(vehicles=vehicles, dropped=dropped)
