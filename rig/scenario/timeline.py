"""Timeline steps: one short line each, in the spirit of EVerest's simulated-EV commands.

    at 08:05 plug cp3 ev=compact_1p soc=30% need=20kWh depart=17:30
    meter main stale for 30s at +10m
    +20m charger cp2 exception 4 for 10s

The time is ``at TIME`` anywhere in the line, or a leading ``TIME`` (grammar: :mod:`.times`).
:func:`parse_step` turns a line into ``(at_ms, verb, target, args)`` with units converted:
currents in A (per phase: a list of 3), durations in ms (``for_ms``; None = until changed),
percentages as fractions, residual currents in mA, times in ms since the scenario start; every
optional ``[for D]`` is ``for_ms`` (None: until the matching ``ok``).
See :data:`USAGE` for every verb and :func:`parse_step` for the exact ``args`` of each.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from .times import TIME_HINT, is_day_token, is_time_token, parse_duration, parse_time

__all__ = ["StepError", "TimelineContext", "parse_step", "USAGE", "VERBS", "METER_MODES",
           "EV_FAULTS", "CHARGER_MODES"]

METER_MODES = ("stale", "frozen", "nan", "garbage", "zero", "offline")
EV_FAULTS = ("overdraw", "ignore_pwm", "missing_diode", "cp_short", "leakage", "slow")
CHARGER_MODES = ("offline", "fault", "exception", "delay", "drop")

USAGE = {
    "plug": "plug CP ev=PRESET [soc=0.3|30%] [need=20kWh] [depart=17:30] [id=NAME]",
    "unplug": "unplug CP",
    "meter": "meter CIRCUIT stale|frozen|nan|garbage|zero|offline [for 30s | 30s]  |  meter CIRCUIT ok",
    "ev": ("ev CP overdraw 10% | ignore_pwm | missing_diode | cp_short | leakage dc 6mA | "
           "leakage ac 30mA | slow 6s | ok  [for 30s]"),
    "charger": ("charger CP offline | fault | exception CODE | delay 300ms [jitter 100ms] | "
                "drop 20% | ok  [for 60s]"),
    "base": "base CIRCUIT step +20A [for 10m]  |  base CIRCUIT set 30A [for 10m]  "
            "(per phase: +20A,0,0)  |  base CIRCUIT ok",
    "pv": "pv CIRCUIT cloud 60% [for 5m]  |  pv CIRCUIT ok",
    "phase": "phase CIRCUIT L1|L2|L3 loss [for 10s]  |  phase CIRCUIT L1|L2|L3 ok",
    "controller": "controller restart",
}
VERBS = tuple(USAGE)


class StepError(ValueError):
    """A bad timeline line; the message is the problem."""


@dataclass
class TimelineContext:
    start_ms: int
    duration_ms: int
    chargers: list = field(default_factory=list)
    circuits: list = field(default_factory=list)
    meters: list = field(default_factory=list)      # circuits that have a meter device
    pv_circuits: list = field(default_factory=list)
    presets: list = field(default_factory=list)
    truncate: bool = False


_NUM = r"(\d+(?:\.\d+)?)"


def _amps(tok: str, *, signed: bool, unit_required: bool = True) -> float:
    m = re.fullmatch(r"([+-]?\d+(?:\.\d+)?)\s*(a)?", tok, re.IGNORECASE)
    if not m or (unit_required and not m.group(2)) or (not signed and tok.startswith(("+", "-"))):
        raise StepError(f"{tok!r} is not a current: write e.g. {'+20A' if signed else '30A'}")
    return float(m.group(1))


def _phase_amps(tok: str, *, signed: bool) -> list[float]:
    parts = tok.split(",")
    if len(parts) not in (1, 3) or any(not p for p in parts):
        raise StepError(f"{tok!r}: give one current for all phases or three (L1,L2,L3), e.g. +20A,0,0")
    has_unit = any(p.lower().endswith("a") for p in parts)
    if not has_unit:
        raise StepError(f"{tok!r} is not a current: write e.g. {'+20A' if signed else '30A'} (unit A)")
    vals = [_amps(p, signed=signed, unit_required=False) for p in parts]
    return vals * 3 if len(vals) == 1 else vals


def _pct(tok: str, what: str, *, hi: float | None = 100.0) -> float:
    m = re.fullmatch(_NUM + r"%", tok)
    if not m:
        raise StepError(f"{what} must be a percentage like 20%, got {tok!r}")
    v = float(m.group(1))
    if hi is not None and v > hi:
        raise StepError(f"{what} must be at most {hi:g}%, got {tok!r}")
    return v / 100.0


def _ma(tok: str) -> float:
    m = re.fullmatch(_NUM + r"ma", tok, re.IGNORECASE)
    if not m:
        raise StepError(f"residual current must be in mA like 6mA, got {tok!r}")
    return float(m.group(1))


def _dur(tok: str, what: str = "duration") -> int:
    try:
        return parse_duration(tok, allow_zero=False, allow_bare=False)
    except ValueError as exc:
        raise StepError(f"{what} {exc}") from None
    

class _Cursor:
    def __init__(self, verb: str, toks: list[str]):
        self.verb, self.toks, self.i = verb, toks, 0

    def peek(self) -> str | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self, what: str) -> str:
        tok = self.peek()
        if tok is None:
            raise StepError(f"missing {what}; usage: {USAGE[self.verb]}")
        self.i += 1
        return tok

    def opt_for(self, bare: bool = False) -> int | None:
        tok = self.peek()
        if tok is None:
            return None
        if tok.lower() == "for":
            self.i += 1
            return _dur(self.take("duration after 'for'"), "'for'")
        if bare:
            self.i += 1
            return _dur(tok)
        return None

    def end(self) -> None:
        if self.i < len(self.toks):
            rest = " ".join(self.toks[self.i:])
            raise StepError(f"unexpected {rest!r}; usage: {USAGE[self.verb]}")


def _extract_time(toks: list[str], ctx: TimelineContext) -> tuple[int | None, list[str]]:
    """Remove the time (``at TIME`` anywhere, or a leading TIME) from the tokens."""
    def take_time(j: int) -> tuple[str, int]:
        if j < len(toks) and is_day_token(toks[j]) and j + 1 < len(toks):
            return f"{toks[j]} {toks[j + 1]}", 2
        if j < len(toks):
            return toks[j], 1
        raise StepError(f"missing time after 'at' ({TIME_HINT})")

    ats = [j for j, t in enumerate(toks) if t.lower() == "at"]
    if len(ats) > 1:
        raise StepError("more than one 'at' in the step")
    if ats:
        j = ats[0]
        text, n = take_time(j + 1)
        rest = toks[:j] + toks[j + 1 + n:]
    elif toks and (is_time_token(toks[0]) or (is_day_token(toks[0]) and len(toks) > 1
                                               and is_time_token(toks[1]))):
        text, n = take_time(0)
        rest = toks[n:]
    else:
        raise StepError("missing time: write 'at 08:05 VERB ...', 'VERB ... at +5m' or '+5m VERB ...'")
    return _time(text, ctx), rest


def _time(text: str, ctx: TimelineContext, what: str = "time") -> int:
    try:
        t = parse_time(text, ctx.start_ms)
    except ValueError as exc:
        raise StepError(f"{what} {exc}") from None
    if t < 0:
        raise StepError(f"{what} {text!r} is before the scenario start")
    if t > ctx.duration_ms and what == "time" and not ctx.truncate:
        raise StepError(f"{what} {text!r} is after the end of the scenario "
                        f"({ctx.duration_ms / 1000:g} s after the start)")
    return t


def _known(name: str, known: list, kind: str, hint: str = "") -> str:
    if name not in known:
        listed = ", ".join(known[:12]) + (", ..." if len(known) > 12 else "")
        raise StepError(f"unknown {kind} {name!r}{hint} (known: {listed or 'none'})")
    return name


def parse_step(text: str, ctx: TimelineContext) -> tuple[int, str, str | None, dict]:
    """Parse one timeline line -> ``(at_ms, verb, target, args)``; raises :class:`StepError`.

    ``args`` per verb (``for_ms`` None = until the matching ``ok``):

    * plug: ``ev`` preset, ``soc`` fraction|None, ``need_kwh``|None, ``depart_ms``|None, ``id``
    * unplug: ``{}``
    * meter: ``mode`` (one of METER_MODES or "ok"), ``for_ms``
    * ev: ``fault`` (one of EV_FAULTS or "ok"), ``for_ms``, ``faults`` (the :class:`EvFaults`
      fields to set; "ok" lists every field at its default), and per fault ``fraction`` (overdraw),
      ``kind``/``ma`` (leakage), ``delay_ms`` (slow: the EV's reaction delay; also in ``knobs``:
      the EV fields to set)
    * charger: ``mode`` (one of CHARGER_MODES or "ok"), ``for_ms``, plus ``code`` (exception),
      ``delay_ms``/``jitter_ms`` (delay), ``fraction`` (drop: share of requests dropped)
    * base: ``mode`` "step" (``delta_a`` [3], added to the modelled load) | "set" (``current_a``
      [3], replaces it) | "ok" (back to the model), ``for_ms``
    * pv: ``mode`` "cloud" (``fraction`` of the PV output removed) | "ok", ``for_ms``
    * phase: ``phase`` "L1".."L3", ``index`` 0..2, ``mode`` "loss" | "ok", ``for_ms``
    * controller: ``mode`` "restart"
    """
    toks = text.split()
    if not toks:
        raise StepError("empty step")
    at_ms, toks = _extract_time(toks, ctx)
    if not toks:
        raise StepError(f"missing verb (one of: {', '.join(VERBS)})")
    verb = toks[0].lower()
    if verb not in USAGE:
        raise StepError(f"unknown verb {toks[0]!r} (valid: {', '.join(VERBS)})")
    cur = _Cursor(verb, toks[1:])
    target, args = _VERB_PARSERS[verb](cur, ctx, at_ms)
    cur.end()
    return at_ms, verb, target, args


def _p_plug(cur, ctx, at_ms):
    cp = _known(cur.take("charger"), ctx.chargers, "charger")
    args = {"ev": None, "soc": None, "need_kwh": None, "depart_ms": None, "id": None}
    while cur.peek() is not None:
        tok = cur.take("option")
        if "=" not in tok:
            raise StepError(f"unexpected {tok!r}; usage: {USAGE['plug']}")
        key, _, val = tok.partition("=")
        key = key.lower()
        if key == "ev":
            args["ev"] = _known(val, ctx.presets, "EV preset")
        elif key == "soc":
            if val.endswith("%"):
                v = _pct(val, "soc")
            else:
                try:
                    v = float(val)
                except ValueError:
                    raise StepError(f"soc must be a fraction 0..1 or a percentage, got {val!r}") from None
                if not 0.0 <= v <= 1.0:
                    raise StepError(f"soc must be between 0 and 1 (or 0-100%), got {val!r}")
            args["soc"] = v
        elif key == "need":
            m = re.fullmatch(_NUM + r"\s*(kwh|wh)?", val, re.IGNORECASE)
            if not m:
                raise StepError(f"need must be an energy like 20kWh, got {val!r}")
            args["need_kwh"] = float(m.group(1)) / (1000.0 if (m.group(2) or "").lower() == "wh" else 1.0)
        elif key == "depart":
            if is_day_token(val) and cur.peek() is not None:
                val = f"{val} {cur.take('time')}"
            t = _time(val, ctx, "depart")
            if t <= at_ms:
                raise StepError(f"depart {val!r} is not after the plug time")
            args["depart_ms"] = t
        elif key == "id":
            if not val:
                raise StepError("id must not be empty")
            args["id"] = val
        else:
            raise StepError(f"unknown option {key!r} (ev, soc, need, depart, id)")
    if args["ev"] is None:
        raise StepError(f"missing ev=PRESET (one of: {', '.join(ctx.presets)})")
    if args["id"] is None:
        args["id"] = f"{cp}@{at_ms // 1000}s"
    return cp, args


def _p_unplug(cur, ctx, at_ms):
    return _known(cur.take("charger"), ctx.chargers, "charger"), {}


def _p_meter(cur, ctx, at_ms):
    name = cur.take("meter (its circuit name)")
    _known(name, ctx.meters, "meter", " (name a metered circuit)")
    mode = cur.take("mode").lower()
    if mode == "ok":
        return name, {"mode": "ok", "for_ms": None}
    if mode not in METER_MODES:
        raise StepError(f"unknown meter mode {mode!r} (valid: {', '.join(METER_MODES)}, ok)")
    return name, {"mode": mode, "for_ms": cur.opt_for(bare=True)}


def _p_ev(cur, ctx, at_ms):
    from dataclasses import fields as dfields

    from dlbrig.firmware_sim import EvFaults

    cp = _known(cur.take("charger"), ctx.chargers, "charger")
    fault = cur.take("fault").lower()
    args: dict = {"fault": fault}
    if fault == "ok":
        args["faults"] = {f.name: f.default for f in dfields(EvFaults)}
        args["reset"] = True
    elif fault == "overdraw":
        args["fraction"] = _pct(cur.take("overdraw percentage"), "overdraw", hi=None)
        args["faults"] = {"overdraw_pct": args["fraction"] * 100.0}
    elif fault in ("ignore_pwm", "missing_diode", "cp_short"):
        args["faults"] = {fault: True}
    elif fault == "leakage":
        kind = cur.take("leakage kind (dc or ac)").lower()
        if kind not in ("dc", "ac"):
            raise StepError(f"leakage kind must be dc or ac, got {kind!r}")
        args["kind"] = kind
        args["ma"] = _ma(cur.take("residual current (mA)"))
        args["faults"] = {f"leakage_{kind}_ma": args["ma"]}
    elif fault == "slow":
        args["delay_ms"] = _dur(cur.take("reaction delay"), "reaction delay")
        args["knobs"] = {"reaction_delay_ms": args["delay_ms"]}
        args["faults"] = {}
    else:
        raise StepError(f"unknown ev fault {fault!r} (valid: {', '.join(EV_FAULTS)}, ok)")
    args["for_ms"] = None if fault == "ok" else cur.opt_for()
    return cp, args


def _p_charger(cur, ctx, at_ms):
    cp = _known(cur.take("charger"), ctx.chargers, "charger")
    mode = cur.take("mode").lower()
    args: dict = {"mode": mode}
    if mode == "ok":
        args["for_ms"] = None
        return cp, args
    if mode == "exception":
        code = cur.take("Modbus exception code")
        if not code.isdigit() or not 1 <= int(code) <= 255:
            raise StepError(f"exception code must be a Modbus exception code 1-255 (e.g. 4), got {code!r}")
        args["code"] = int(code)
    elif mode == "delay":
        args["delay_ms"] = _dur(cur.take("delay"), "delay")
        args["jitter_ms"] = 0
        if (cur.peek() or "").lower() == "jitter":
            cur.take("jitter")
            args["jitter_ms"] = _dur(cur.take("jitter"), "jitter")
    elif mode == "drop":
        args["fraction"] = _pct(cur.take("drop percentage"), "drop")
    elif mode not in CHARGER_MODES:
        raise StepError(f"unknown charger mode {mode!r} (valid: {', '.join(CHARGER_MODES)}, ok)")
    args["for_ms"] = cur.opt_for()
    return cp, args


def _p_base(cur, ctx, at_ms):
    c = _known(cur.take("circuit"), ctx.circuits, "circuit")
    op = cur.take("operation (step, set or ok)").lower()
    if op == "ok":
        return c, {"mode": "ok", "for_ms": None}
    if op == "step":
        args = {"mode": "step", "delta_a": _phase_amps(cur.take("current step, e.g. +20A"), signed=True)}
    elif op == "set":
        args = {"mode": "set", "current_a": _phase_amps(cur.take("current, e.g. 30A"), signed=False)}
    else:
        raise StepError(f"unknown base operation {op!r} (valid: step, set, ok)")
    args["for_ms"] = cur.opt_for()
    return c, args


def _p_pv(cur, ctx, at_ms):
    c = _known(cur.take("circuit"), ctx.circuits, "circuit")
    if c not in ctx.pv_circuits:
        raise StepError(f"circuit {c!r} has no PV load (add a load of kind pv on it)")
    op = cur.take("operation (cloud or ok)").lower()
    if op == "ok":
        return c, {"mode": "ok", "for_ms": None}
    if op != "cloud":
        raise StepError(f"unknown pv operation {op!r} (valid: cloud, ok)")
    args = {"mode": "cloud", "fraction": _pct(cur.take("cloud percentage"), "cloud")}
    args["for_ms"] = cur.opt_for()
    return c, args


def _p_phase(cur, ctx, at_ms):
    c = _known(cur.take("circuit"), ctx.circuits, "circuit")
    ph = cur.take("phase (L1, L2 or L3)").upper()
    if ph not in ("L1", "L2", "L3"):
        raise StepError(f"phase must be L1, L2 or L3, got {ph!r}")
    op = cur.take("operation (loss or ok)").lower()
    if op not in ("loss", "ok"):
        raise StepError(f"unknown phase operation {op!r} (valid: loss, ok)")
    args = {"phase": ph, "index": int(ph[1]) - 1, "mode": op}
    args["for_ms"] = cur.opt_for() if op == "loss" else None
    return c, args


def _p_controller(cur, ctx, at_ms):
    op = cur.take("operation (restart)").lower()
    if op != "restart":
        raise StepError(f"unknown controller operation {op!r} (valid: restart)")
    return None, {"mode": "restart"}


_VERB_PARSERS = {"plug": _p_plug, "unplug": _p_unplug, "meter": _p_meter, "ev": _p_ev,
                 "charger": _p_charger, "base": _p_base, "pv": _p_pv, "phase": _p_phase,
                 "controller": _p_controller}
