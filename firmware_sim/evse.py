"""Charger firmware model (IEC 61851-1 Mode 3 EVSE) and the EVSE + EV composite.

Pure and time-injected: :class:`Evse` is a state machine driven by ``update(t_ms, ev_signals)``;
:class:`ChargePoint` couples it with an optional plugged :class:`~dlbrig.firmware_sim.ev.EV` and
runs a small discrete-event loop in ``advance(now_ms)``.  No clock, no sleep, no threads.

What the firmware does (defaults from reference/standards.md; every number is a field of
:class:`EvseConfig`):

* Control pilot: A (+12 V), B (+9 V), C (+6 V), D (+3 V), E (0 V), F (-12 V); suffix 2 = PWM on,
  1 = PWM off (X1).  Duty from current: 6-51 A -> I/0.6, 51-80 A -> I/2.5 + 64; < 6 A -> PWM off.
* PWM changes between two duty values are spaced by ``pwm_min_interval_ms`` (5 s); a newer
  set-point waits and the latest wins.  Switching the PWM *off* is never delayed (safety);
  switching it back on waits ``x1_min_off_ms`` (t_step_X1 = 3 s) after it went off.
* Contactor: opens ``contactor_open_delay_ms`` after C->B and on ->A/E, on faults (plus the
  ``slow_contactor_ms`` knob); closes ``contactor_close_delay_ms`` after the EV requests (C/D)
  with PWM on, after a diode check; force-opens ``pwm_off_force_open_ms`` (6 s) after the PWM went
  off if the EV stays in C.  State F is held ``f_hold_ms`` (300 ms) after a fault.
* Residual current (only while the contactor is closed): DC >= 6 mA and AC >= IDn (30 mA) trip
  at the latest instant their break-time tables allow (worst compliant device), so a checker's
  deadline is exercised exactly at its boundary.  The uncertain AC band 0.5-1 IDn: the model
  trips from ``rcd_ac_trip_fraction`` x IDn (default 1.0, i.e. never below IDn; must be in
  [0.5, 1.0]).  Below 0.5 IDn never trips.
* Soft overcurrent (EVerest): any conductor above (I_pwm + 0.5 A) x 1.10 for *longer* than 7 s
  (i.e. at onset + 7001 ms) -> error and contactor open.
* Watchdog: without a set-point write / heartbeat for ``watchdog_timeout_ms`` the firmware falls
  back to ``safe_current_a`` (or stops, ``watchdog_action="stop"``).  A new set-point write ends
  the fallback.  An optional per-write validity (Alfen style) does the same on expiry.
* Latched errors (diode, RCD, overcurrent) clear when the EV is unplugged (state A).

Event resolution: 1 ms for the firmware; the EV's taper/SOC runs on its ``tick_ms`` grid.
``ChargePoint.advance`` processes every internal deadline in order, so advancing in 1 ms or
1000 ms steps gives identical states, event logs and (bit-identical) energy counters.
"""
from __future__ import annotations

import functools

import math
from dataclasses import dataclass, field, fields
from enum import IntEnum
from typing import Any, Iterable

from .ev import EV, SimulatedEv, _Integrator

__all__ = [
    "Evse", "EvseConfig", "FirmwareFaults", "ChargePoint", "EvSignals", "EvseEvent", "ErrorCode",
    "CHARGER_POINTS_READ", "CHARGER_POINTS_WRITE", "CHARGER_STATUSES", "CP_STATES", "CP_VOLTAGE_V",
    "STANDARD_DEADLINES_MS", "EVENT_KINDS", "duty_from_current", "cp_voltage_v",
    "classify_cp_resistance", "cable_rating_from_pp",
]

#: CP states as reported (Alfen "Mode 3 state" strings).
CP_STATES = ("A", "B1", "B2", "C1", "C2", "D1", "D2", "E", "F")

#: CP high-level voltage per state letter (V); F is the EVSE driving -12 V.
CP_VOLTAGE_V = {"A": 12.0, "B": 9.0, "C": 6.0, "D": 3.0, "E": 0.0, "F": -12.0}

#: The allocator's charger-status vocabulary (core/model.py STATES).
CHARGER_STATUSES = ("disconnected", "connected_idle", "charging", "ev_suspended", "fault",
                    "unavailable")

#: Deadlines a compliance checker asserts (ms), from standards.md §6.  The model's own timings are
#: EvseConfig fields; these are the requirements they must meet.
STANDARD_DEADLINES_MS = {
    "open_after_c_to_b": 100,        # Table A.6 seq. 8.1
    "open_after_a_e_f": 100,         # assumed, figure not found
    "close_after_b_to_c": 3000,      # Table A.6 seq. 4
    "force_open_after_pwm_off": 6000,  # Table A.6 seq. 10.2
    "f_hold_min": 300,               # Table A.5 (EVerest state_F_after_fault_ms)
    "pwm_min_interval": 5000,        # EVerest IEC_PWM_MAX_UPDATE_INTERVAL
    "x1_min_off": 3000,              # T_STEP_X1
    "soft_overcurrent": 7000,        # EVerest soft_over_current_timeout_ms
    "rcd_ac_1x": 300, "rcd_ac_2x": 150, "rcd_ac_5x": 40,
}

#: Kinds of :class:`EvseEvent` in the log, with their ``data`` keys.
EVENT_KINDS = {
    "plug": (), "unplug": (),
    "cp_state": ("from", "to"),
    "pwm": ("on", "duty_pct", "current_a", "requested_ms"),  # requested: when that target appeared
    "contactor_close": ("cause_ms", "latency_ms", "reason"),
    "contactor_open": ("cause_ms", "latency_ms", "reason"),
    "fault": ("code", "name", "cause_ms"),
    "fault_cleared": ("code", "name"),
    "watchdog_fallback": ("reason", "action", "current_a", "last_feed_ms"),
    "watchdog_recovered": (),
    "setpoint": ("current_a",),
    "enabled": ("enabled",),
    "phase_switch": ("phases",),
    "lock": ("locked",),
}


class ErrorCode(IntEnum):
    """``error_code`` point values (0 = none)."""

    NONE = 0
    DIODE = 1        # diode check failed before a close
    RCD_DC = 2       # DC residual current >= 6 mA
    RCD_AC = 3       # AC residual current >= IDn
    OVERCURRENT = 4  # soft overcurrent
    CP_SHORT = 5     # state E (not latched: clears with the short)
    CABLE = 6        # no / invalid proximity-pilot coding (not latched)


def duty_from_current(current_a: float) -> float:
    """PWM duty cycle (%) the EVSE emits for a maximum current (IEC 61851-1 Annex A).

    < 6 A -> 100.0 (PWM off, state X1); 6-51 A -> I/0.6; 51-80 A -> I/2.5 + 64; above 80 A the
    current is clamped to 80 A (96 %).  Note the gap in the norm: 52 A gives 84.8 %, which an EV
    decodes as 50.88 A, i.e. less than signalled (safe).
    """
    i = float(current_a)
    if math.isnan(i) or i < 6.0:
        return 100.0
    if i <= 51.0:
        return i / 0.6
    return min(i, 80.0) / 2.5 + 64.0


def cp_voltage_v(cp_state: str) -> float:
    """High-level CP voltage (V) of a reported state such as "B2"."""
    return CP_VOLTAGE_V[cp_state[0]]


def classify_cp_resistance(ohm: float) -> str:
    """CP state letter from the EV's CP-PE resistance (Tinkerforge thresholds)."""
    if ohm > 10_000:
        return "A"
    if ohm > 1790:
        return "B"
    if ohm > 300:
        return "C"
    if ohm > 150:
        return "D"
    return "E"


def cable_rating_from_pp(ohm: float | None) -> int | None:
    """Cable rating (A) from the PP-PE resistance; None when out of every band."""
    if ohm is None or math.isnan(ohm):
        return None
    if 1000 <= ohm <= 2200:
        return 13
    if 330 <= ohm < 1000:
        return 20
    if 150 <= ohm < 330:
        return 32
    if 75 <= ohm < 150:
        return 63
    return None


#: Bumped by every attribute assignment on any :class:`FirmwareFaults` or :class:`EvseConfig`
#: (construction included). Part of :meth:`Evse.read_token`: a point computed from a config or
#: fault knob cannot keep a stale value when one is changed at run time. A global counter, not a
#: field, so ``vars()`` / ``fields()`` of those objects stay exactly their knobs.
_KNOBS_GEN = [0]


class _CountedKnobs:
    """Mixin: every assignment bumps :data:`_KNOBS_GEN` (rare: set-up, fault injection)."""

    def __setattr__(self, name: str, value: Any) -> None:
        _KNOBS_GEN[0] += 1
        object.__setattr__(self, name, value)


@dataclass
class FirmwareFaults(_CountedKnobs):
    """Knobs that make the firmware non-compliant on purpose (negative controls).

    slow_contactor_ms: extra delay on every contactor opening (and RCD supply removal).
    no_diode_check: close even when the EV's diode is missing.
    no_watchdog: never fall back when the controller goes silent.
    ignore_pwm_spacing: apply every duty change at once (also ignores the X1 minimum off time).
    overcurrent_never_trips: no soft-overcurrent error.
    misreport_current_pct: the current the charger reports about itself (its current points) is
        off by this many percent of the true current (a lying meter in the charger; instruments
        catch it, see rig.compliance.instrument_crosscheck).
    """

    slow_contactor_ms: int = 0
    no_diode_check: bool = False
    no_watchdog: bool = False
    ignore_pwm_spacing: bool = False
    overcurrent_never_trips: bool = False
    misreport_current_pct: float = 0.0

    @classmethod
    def noncompliant(cls, slow_contactor_ms: int = 500) -> "FirmwareFaults":
        """Every knob on (the contactor opens ``slow_contactor_ms`` late)."""
        return cls(slow_contactor_ms=slow_contactor_ms, no_diode_check=True, no_watchdog=True,
                   ignore_pwm_spacing=True, overcurrent_never_trips=True)

    def any(self) -> bool:
        return any(getattr(self, f.name) != f.default for f in fields(self))


@dataclass
class EvseConfig(_CountedKnobs):
    """Product parameters and timings of a charger firmware (defaults: the standard's values or a
    typical compliant product).  Identity strings feed the ``serial`` / ``model_name`` points."""

    model_name: str = "dlbrig-sim-evse"
    serial: str = "SIM00000001"
    firmware_version: str = "1.0.0"
    hw_max_current_a: float = 32.0
    hw_phases: int = 3                    # conductors wired to the outlet: 1 or 3
    supports_phase_switching: bool = False
    tethered_cable_a: float | None = None  # None: socket, the cable rating comes from PP
    nominal_voltage_v: float = 230.0
    # communication / failsafe
    safe_current_a: float = 6.0
    startup_current_a: float | None = None  # before the first set-point; None = safe current
    watchdog_timeout_ms: int = 60_000     # 0 = disabled
    watchdog_action: str = "fallback"     # "fallback" (safe current) or "stop"
    # contactor and pilot timings
    contactor_open_delay_ms: int = 50     # firmware + relay; must be <= 100 ms
    contactor_close_delay_ms: int = 500   # must be <= 3 s
    pwm_min_interval_ms: int = 5000
    x1_min_off_ms: int = 3000
    pwm_off_force_open_ms: int = 6000
    f_hold_ms: int = 300
    # soft overcurrent
    soft_overcurrent_margin_a: float = 0.5
    soft_overcurrent_factor: float = 1.10
    soft_overcurrent_timeout_ms: int = 7000
    # residual current: (threshold mA, break ms) rows, ascending.  The IEC 62955 table was not
    # found (standards.md §1.2); these DC rows are the values commonly quoted by RDC-DD makers and
    # are UNVERIFIED: configure them from the standard before relying on them.
    rcd_dc_break_ms: tuple[tuple[float, int], ...] = ((6.0, 10_000), (60.0, 300), (200.0, 100))
    rcd_ac_idn_ma: float = 30.0
    # (multiple of IDn, break ms) rows, ascending (IEC 61008 general type)
    rcd_ac_break_ms: tuple[tuple[float, int], ...] = ((1.0, 300), (2.0, 150), (5.0, 40))
    rcd_ac_trip_fraction: float = 1.0     # deterministic rule for the 0.5-1 IDn band
    # status
    charging_threshold_a: float = 1.0     # below this with the contactor closed: ev_suspended
    lock_on_plug: bool = True

    def __post_init__(self) -> None:
        if self.hw_phases not in (1, 3):
            raise ValueError("hw_phases must be 1 or 3")
        if self.watchdog_action not in ("fallback", "stop"):
            raise ValueError("watchdog_action must be 'fallback' or 'stop'")
        if not 0.5 <= self.rcd_ac_trip_fraction <= 1.0:
            raise ValueError("rcd_ac_trip_fraction must be in [0.5, 1.0] (no trip below 0.5 IDn)")
        for name in ("contactor_open_delay_ms", "contactor_close_delay_ms", "pwm_min_interval_ms",
                     "x1_min_off_ms", "pwm_off_force_open_ms", "f_hold_ms",
                     "soft_overcurrent_timeout_ms", "watchdog_timeout_ms"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"{name} must be >= 0")


@dataclass(frozen=True)
class EvSignals:
    """What the EVSE measures of the EV side at one instant.

    cp: EV pilot state letter "A" (nothing plugged), "B", "C", "D" or "E" (CP short).
    diode_ok: the negative PWM half-wave reaches -12 V.
    currents_a: true current per conductor L1, L2, L3 (A).
    pp_ohm: proximity-pilot resistance of the plugged cable (None: none).
    """

    cp: str = "A"
    diode_ok: bool = True
    currents_a: tuple[float, float, float] = (0.0, 0.0, 0.0)
    leakage_dc_ma: float = 0.0
    leakage_ac_ma: float = 0.0
    pp_ohm: float | None = None


NO_EV = EvSignals()


@dataclass(frozen=True)
class EvseEvent:
    """One entry of the firmware's event log (see :data:`EVENT_KINDS`)."""

    t_ms: int
    kind: str
    data: dict = field(default_factory=dict)


#: Charger point vocabulary, read side (name -> description with unit).
CHARGER_POINTS_READ: dict[str, str] = {
    "cp_state": "str: A, B1, B2, C1, C2, D1, D2, E, F",
    "status": "str: " + ", ".join(CHARGER_STATUSES),
    "error_code": "int: ErrorCode, 0 = none",
    "current_l1_a": "A, true current on conductor L1",
    "current_l2_a": "A", "current_l3_a": "A",
    "voltage_l1_v": "V, supply voltage", "voltage_l2_v": "V", "voltage_l3_v": "V",
    "power_total_w": "W, sum V*I",
    "session_energy_wh": "Wh, since plug-in (kept after unplug until the next plug)",
    "total_energy_wh": "Wh, lifetime, never decreases",
    "session_duration_s": "s since plug-in (frozen at unplug, 0 before the first plug)",
    "pwm_duty_pct": "%, 100 = PWM off",
    "applied_current_a": "A, what the PWM signals now (0 when off)",
    "setpoint_a": "A, last written set-point (startup current before the first write)",
    "setpoint_valid_s": "s until the set-point falls back (validity, else watchdog)",
    "hw_max_current_a": "A", "cable_max_current_a": "A, 0 = no valid cable",
    "safe_current_a": "A", "watchdog_timeout_s": "s, 0 = disabled",
    "watchdog_remaining_s": "s (full timeout while not armed)",
    "in_failsafe": "bool", "phases_in_use": "int 1 or 3", "phases_setting": "int 1 or 3",
    "enabled": "bool", "connector_locked": "bool", "contactor_closed": "bool",
    "vehicle_connected": "bool", "serial": "str", "firmware_version": "str", "model_name": "str",
}

#: Charger point vocabulary, write side (name -> accepted values).
CHARGER_POINTS_WRITE: dict[str, str] = {
    "setpoint_a": "A >= 0 (< 6 pauses); feeds the watchdog, ends a fallback",
    "setpoint_validity_s": "s > 0, applies to the next setpoint_a write only",
    "safe_current_a": "A >= 0",
    "watchdog_timeout_s": "s >= 0, 0 disables",
    "enabled": "bool",
    "phases_setting": "1 or 3",
    "heartbeat": "any value; feeds the watchdog",
    "unlock": "bool: True pauses and unlocks once the contactor is open; False re-locks",
}


def _as_bool(name: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    raise ValueError(f"{name} must be a bool (or 0/1), got {value!r}")


def _same_float(old: object, new: float) -> bool:
    """``old`` is a float equal to ``new`` that prints the same (0.0 and -0.0 do not): assigning
    ``new`` over it would change no point (write_point then leaves the change counter alone)."""
    return old.__class__ is float and old == new and (old != 0.0 or math.copysign(1.0, old) == math.copysign(1.0, new))


def _as_float(name: str, value: object, lo: float = 0.0, hi: float = math.inf) -> float:
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if math.isnan(v) or v < lo or v > hi:
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {v}")
    return v


#: Read points whose value moves with the clock alone (``now_ms``, the energy integrators, the
#: watchdog's last feed and the validity deadline): every other point is a function of the state
#: :meth:`Evse.read_token` covers.
TIMED_POINTS = frozenset({"session_energy_wh", "total_energy_wh", "session_duration_s",
                          "setpoint_valid_s", "watchdog_remaining_s"})
# Attributes whose assignment does not bump the change counter: the clock (every advance) and the
# watchdog feed / validity times (every heartbeat of a product fed by any request). Only the
# state machine and TIMED_POINTS read them (checked: tests/firmware_sim/test_evse_token.py).
_UNVERSIONED = frozenset({"now_ms", "_wd_last_feed_ms", "_validity_deadline_ms", "_rev"})
_UNSET = object()


class Evse:
    """The charger firmware.  Drive it with :meth:`update` at every :meth:`next_event_ms` (or use
    :class:`ChargePoint`, which does that and couples an EV)."""

    timed_points = TIMED_POINTS

    def __setattr__(self, name: str, value: Any) -> None:
        # The change counter behind read_token: any assignment that replaces a value (not the
        # same object) bumps it, wherever it comes from (the state machine, writes, an owner
        # setting an attribute), so an unchanged counter proves an unchanged state. The clock
        # and the feed times are left out (_UNVERSIONED): they move every cycle.
        if name not in _UNVERSIONED:
            d = self.__dict__
            if d.get(name, _UNSET) is not value:
                d["_rev"] = d.get("_rev", 0) + 1
        object.__setattr__(self, name, value)

    def read_token(self) -> tuple:
        """A value equal to an earlier one only if no point outside :data:`TIMED_POINTS` can
        have changed since (the change counter, and the generation of config / fault knobs):
        a register image reuses answers computed from those points while it is unchanged."""
        return (self.__dict__["_rev"], _KNOBS_GEN[0])

    def __init__(self, config: EvseConfig | None = None, faults: FirmwareFaults | None = None,
                 start_ms: int = 0, initial_total_wh: float = 0.0) -> None:
        self.config = config or EvseConfig()
        self.faults = faults or FirmwareFaults()
        c = self.config
        self.now_ms = int(start_ms)
        self.events: list[EvseEvent] = []
        self.voltages_v: tuple[float, float, float] = (c.nominal_voltage_v,) * 3
        self._ev = NO_EV
        self._ev_cp = "A"
        self._cp_reported = "A"
        # settings written by the controller
        self.enabled = True
        self._setpoint_a: float | None = None
        self._safe_a = float(c.safe_current_a)
        self._wd_timeout_ms = int(c.watchdog_timeout_ms)
        self._wd_last_feed_ms: int | None = None
        self._pending_validity_ms: int | None = None
        self._validity_deadline_ms: int | None = None
        self.in_failsafe = False
        self._phases_setting = c.hw_phases
        self._phases_active = c.hw_phases
        self._unlock_requested = False
        self.connector_locked = False
        # pilot / PWM
        self.pwm_on = False
        self.duty_pct = 100.0
        self.applied_current_a = 0.0
        self._pwm_last_change_ms: int | None = None
        self._pwm_off_at_ms: int | None = None
        self._pwm_pending_at_ms: int | None = None
        self._target_seen_a = 0.0
        self._target_since_ms = int(start_ms)
        # contactor
        self.contactor_closed = False
        self._open_at_ms: int | None = None
        self._open_reason = ""
        self._open_cause_ms = 0
        self._close_armed_ms: int | None = None
        # faults
        self._error = ErrorCode.NONE
        self._f_until_ms: int | None = None
        self._dc_onset_ms: int | None = None
        self._ac_onset_ms: int | None = None
        self._oc_onset_ms: int | None = None
        # session
        self._plug_ms: int | None = None
        self._unplug_ms: int | None = None
        self._had_charged = False
        self._session = _Integrator(start_ms)
        self._total = _Integrator(start_ms, initial_total_wh)

    # ------------------------------------------------------------------ small helpers
    def _log(self, t_ms: int, kind: str, **data: Any) -> None:
        self.events.append(EvseEvent(t_ms, kind, data))

    @property
    def connected(self) -> bool:
        return self._ev_cp != "A"

    @property
    def in_f_hold(self) -> bool:
        return self._f_until_ms is not None

    @property
    def cable_max_current_a(self) -> float | None:
        if self.config.tethered_cable_a is not None:
            return float(self.config.tethered_cable_a)
        if not self.connected:
            return None
        r = cable_rating_from_pp(self._ev.pp_ohm)
        return None if r is None else float(r)

    @property
    def error_code(self) -> ErrorCode:
        if self._error != ErrorCode.NONE:
            return self._error
        if self._ev_cp == "E":
            return ErrorCode.CP_SHORT
        if self.connected and self.cable_max_current_a is None:
            return ErrorCode.CABLE
        return ErrorCode.NONE

    @property
    def cp_state(self) -> str:
        if self.in_f_hold:
            return "F"
        if self._ev_cp in ("A", "E"):
            return self._ev_cp
        return self._ev_cp + ("2" if self.pwm_on else "1")

    @property
    def energised_conductors(self) -> int:
        return 1 if (self.config.hw_phases == 1 or self._phases_active == 1) else 3

    def _wd_armed(self) -> bool:
        return (self._wd_timeout_ms > 0 and not self.faults.no_watchdog
                and self._wd_last_feed_ms is not None)

    def _open_latency_ms(self) -> int:
        return int(self.config.contactor_open_delay_ms) + int(self.faults.slow_contactor_ms)

    def _schedule_open(self, cause_ms: int, reason: str, latency_ms: int) -> None:
        """Commit to opening at cause + latency (the earliest commitment wins)."""
        at = cause_ms + latency_ms
        if self._open_at_ms is None or at < self._open_at_ms:
            self._open_at_ms, self._open_reason, self._open_cause_ms = at, reason, cause_ms
        self._close_armed_ms = None

    def _raise_fault(self, t_ms: int, code: ErrorCode, cause_ms: int, open_latency_ms: int) -> None:
        if self._error != ErrorCode.NONE:
            return  # the first error is the one that is latched and reported
        self._error = code
        self._f_until_ms = t_ms + int(self.config.f_hold_ms)
        self._log(t_ms, "fault", code=int(code), name=code.name, cause_ms=cause_ms)
        if self.contactor_closed:
            self._schedule_open(cause_ms, code.name.lower(), open_latency_ms)
        self._close_armed_ms = None

    def _rcd_dc_deadline(self) -> int | None:
        if self._dc_onset_ms is None:
            return None
        ma, brk = self._ev.leakage_dc_ma, None
        for thr, ms in self.config.rcd_dc_break_ms:
            if ma >= thr:
                brk = int(ms)
        return None if brk is None else self._dc_onset_ms + brk

    def _rcd_ac_deadline(self) -> int | None:
        if self._ac_onset_ms is None:
            return None
        c = self.config
        mult = self._ev.leakage_ac_ma / c.rcd_ac_idn_ma
        brk = None
        if mult >= c.rcd_ac_trip_fraction:
            brk = int(c.rcd_ac_break_ms[0][1])
            for m, ms in c.rcd_ac_break_ms:
                if mult >= m:
                    brk = int(ms)
        return None if brk is None else self._ac_onset_ms + brk

    def _oc_deadline(self) -> int | None:
        if self._oc_onset_ms is None:
            return None
        # "longer than" the timeout: the first whole ms beyond it
        return self._oc_onset_ms + int(self.config.soft_overcurrent_timeout_ms) + 1

    def _force_open_deadline(self) -> int | None:
        if (self.contactor_closed and not self.pwm_on and self._ev_cp in ("C", "D")
                and self._pwm_off_at_ms is not None):
            return (self._pwm_off_at_ms + int(self.config.pwm_off_force_open_ms)
                    + int(self.faults.slow_contactor_ms))
        return None

    def _wd_deadline(self) -> int | None:
        if not self._wd_armed() or self.in_failsafe:
            return None
        return self._wd_last_feed_ms + self._wd_timeout_ms  # type: ignore[operator]

    def _validity_deadline(self) -> int | None:
        if self.in_failsafe or self.faults.no_watchdog:
            return None
        return self._validity_deadline_ms

    def target_current_a(self) -> float:
        """Current the PWM *should* signal now (before the spacing rules); 0 = PWM off."""
        c = self.config
        cable = self.cable_max_current_a
        if (not self.connected or self._ev_cp == "E" or self.in_f_hold
                or self._error != ErrorCode.NONE or not self.enabled or self._unlock_requested
                or cable is None or self._phases_setting != self._phases_active):
            return 0.0
        if self.in_failsafe:
            base = 0.0 if c.watchdog_action == "stop" else self._safe_a
        elif self._setpoint_a is None:
            base = self._safe_a if c.startup_current_a is None else float(c.startup_current_a)
        else:
            base = self._setpoint_a
        cur = min(base, float(c.hw_max_current_a), cable, 80.0)
        return cur if cur >= 6.0 else 0.0

    # ------------------------------------------------------------------ the state machine
    def update(self, t_ms: int, ev: EvSignals = NO_EV) -> None:
        """Process everything due at ``t_ms`` given the EV-side signals at ``t_ms``.

        Idempotent when repeated at the same time with the same inputs; a caller that couples an
        EV repeats it until nothing changes (see :meth:`ChargePoint._settle`).
        """
        if t_ms < self.now_ms:
            raise ValueError(f"time went backwards: {t_ms} < {self.now_ms}")
        d = self.__dict__
        d["now_ms"] = t_ms      # the clock is not counted (_UNVERSIONED): no __setattr__ needed
        if d["_ev"] is not ev:
            self._ev = ev
        self._track_ev_cp(t_ms, ev.cp)
        self._track_conditions(t_ms)
        rev, gen = d["_rev"], _KNOBS_GEN[0]
        self._process_deadlines(t_ms)
        self._apply_pwm(t_ms)
        # _track_conditions reads only versioned attributes, the config / fault knobs and t, and
        # is idempotent on its own output: with the change counter and the knob generation
        # unchanged since its first run, the second run would assign nothing (skipped)
        if d["_rev"] != rev or _KNOBS_GEN[0] != gen:
            self._track_conditions(t_ms)
        self._update_locks(t_ms)
        self._log_cp_state(t_ms)
        self._update_energy(t_ms)

    def _track_ev_cp(self, t: int, cp: str) -> None:
        prev = self._ev_cp
        if cp == prev:
            return
        self._ev_cp = cp
        if prev == "A":
            self._plug_ms, self._unplug_ms, self._had_charged = t, None, False
            self._unlock_requested = False
            self._session.reset(t)
            self._log(t, "plug")
        if cp == "A":
            self._unplug_ms = t
            self._unlock_requested = False
            if self._error != ErrorCode.NONE:
                self._log(t, "fault_cleared", code=int(self._error), name=self._error.name)
                self._error = ErrorCode.NONE
            self._log(t, "unplug")
        if self.contactor_closed:
            if prev in ("C", "D") and cp == "B":
                self._schedule_open(t, "c_to_b", self._open_latency_ms())
            elif cp in ("A", "E"):
                self._schedule_open(t, f"state_{cp}", self._open_latency_ms())
        if cp not in ("C", "D"):
            self._close_armed_ms = None

    def _track_conditions(self, t: int) -> None:
        # (runs twice per update: attributes already None are not assigned again, which spares
        # the change counter's __setattr__ the no-op)
        c, ev, closed = self.config, self._ev, self.contactor_closed
        can_close = (not closed and self._open_at_ms is None and self.pwm_on
                     and self._ev_cp in ("C", "D") and self._error == ErrorCode.NONE
                     and not self.in_f_hold)
        if not can_close:
            if self._close_armed_ms is not None:
                self._close_armed_ms = None
        elif self._close_armed_ms is None:
            self._close_armed_ms = t
        dc_on = closed and ev.leakage_dc_ma >= c.rcd_dc_break_ms[0][0]
        if not dc_on:
            if self._dc_onset_ms is not None:
                self._dc_onset_ms = None
        elif self._dc_onset_ms is None:
            self._dc_onset_ms = t
        ac_on = closed and ev.leakage_ac_ma >= c.rcd_ac_trip_fraction * c.rcd_ac_idn_ma
        if not ac_on:
            if self._ac_onset_ms is not None:
                self._ac_onset_ms = None
        elif self._ac_onset_ms is None:
            self._ac_onset_ms = t
        oc_on = False
        if closed and not self.faults.overcurrent_never_trips and self._error == ErrorCode.NONE:
            limit = (self.applied_current_a + c.soft_overcurrent_margin_a) * c.soft_overcurrent_factor
            for i in ev.currents_a:     # (any() over a generator, without the generator)
                if i > limit:
                    oc_on = True
                    break
        if not oc_on:
            if self._oc_onset_ms is not None:
                self._oc_onset_ms = None
        elif self._oc_onset_ms is None:
            self._oc_onset_ms = t

    def _process_deadlines(self, t: int) -> None:
        c, f = self.config, self.faults
        # committed openings first: safety actions never wait behind anything else
        if self._open_at_ms is not None and self._open_at_ms <= t:
            if self.contactor_closed:
                self.contactor_closed = False
                self._log(t, "contactor_open", reason=self._open_reason,
                          cause_ms=self._open_cause_ms, latency_ms=t - self._open_cause_ms)
            self._open_at_ms = None
        if self._f_until_ms is not None and self._f_until_ms <= t:
            self._f_until_ms = None
        d = self._wd_deadline()
        if d is not None and d <= t:
            self._enter_failsafe(t, "watchdog")
        d = self._validity_deadline()
        if d is not None and d <= t:
            self._validity_deadline_ms = None
            self._enter_failsafe(t, "validity")
        # RCD: the trip instant is the supply-removal instant (its break time includes the
        # switching device); the slow-contactor knob still delays it
        if self._dc_onset_ms is not None or self._ac_onset_ms is not None:   # (else both None)
            for deadline, code, onset in ((self._rcd_dc_deadline(), ErrorCode.RCD_DC, self._dc_onset_ms),
                                          (self._rcd_ac_deadline(), ErrorCode.RCD_AC, self._ac_onset_ms)):
                if deadline is not None and deadline <= t and self.contactor_closed:
                    self._raise_fault(t, code, onset, (t - onset) + int(f.slow_contactor_ms))  # type: ignore[operator]
        d = self._oc_deadline() if self._oc_onset_ms is not None else None
        if d is not None and d <= t and self.contactor_closed:
            self._raise_fault(t, ErrorCode.OVERCURRENT, t, self._open_latency_ms())
        d = self._force_open_deadline() if self.contactor_closed and not self.pwm_on else None
        if d is not None and d <= t:
            self.contactor_closed = False
            self._open_at_ms = None
            self._log(t, "contactor_open", reason="pwm_off_timeout", cause_ms=self._pwm_off_at_ms,
                      latency_ms=t - self._pwm_off_at_ms)  # type: ignore[operator]
        # a fault above may have committed an opening due right now (slow_contactor_ms = 0)
        if self._open_at_ms is not None and self._open_at_ms <= t and self.contactor_closed:
            self.contactor_closed = False
            self._log(t, "contactor_open", reason=self._open_reason,
                      cause_ms=self._open_cause_ms, latency_ms=t - self._open_cause_ms)
            self._open_at_ms = None
        if (self._close_armed_ms is not None
                and self._close_armed_ms + int(c.contactor_close_delay_ms) <= t):
            armed = self._close_armed_ms
            self._close_armed_ms = None
            # IEC 61851-1 Table A.4: check the diode at least once before closing
            if not self._ev.diode_ok and not f.no_diode_check:
                self._raise_fault(t, ErrorCode.DIODE, t, 0)
            else:
                self.contactor_closed = True
                self._had_charged = True
                self._log(t, "contactor_close", reason="ev_request", cause_ms=armed,
                          latency_ms=t - armed)

    def _enter_failsafe(self, t: int, reason: str) -> None:
        if self.in_failsafe:
            return
        self.in_failsafe = True
        stop = self.config.watchdog_action == "stop"
        self._log(t, "watchdog_fallback", reason=reason, action=self.config.watchdog_action,
                  current_a=0.0 if stop else self._safe_a, last_feed_ms=self._wd_last_feed_ms)

    def _apply_pwm(self, t: int) -> None:
        c, f = self.config, self.faults
        if self._phases_setting != self._phases_active and not self.contactor_closed:
            # phase switching only with the contactor open (the PWM was paused for it)
            self._phases_active = self._phases_setting
            self._log(t, "phase_switch", phases=self._phases_active)
        target = self.target_current_a()
        if self._pwm_pending_at_ms is not None:
            self._pwm_pending_at_ms = None
        if target != self._target_seen_a:  # remember when the latest target appeared
            self._target_seen_a, self._target_since_ms = target, t
        if target <= 0.0:
            if self.pwm_on:
                # switching off is a safety action: never delayed by the spacing rules
                self.pwm_on, self.duty_pct, self.applied_current_a = False, 100.0, 0.0
                self._pwm_off_at_ms = self._pwm_last_change_ms = t
                self._log(t, "pwm", on=False, duty_pct=100.0, current_a=0.0,
                          requested_ms=self._target_since_ms)
            return
        duty = duty_from_current(target)
        if self.pwm_on and duty == self.duty_pct:
            return
        if not self.pwm_on:
            # t_step_X1: stay off for x1_min_off_ms within a session before switching back on
            off = self._pwm_off_at_ms
            in_session = off is not None and self._plug_ms is not None and off >= self._plug_ms
            earliest = off + int(c.x1_min_off_ms) if in_session else t  # type: ignore[operator]
        else:
            earliest = self._pwm_last_change_ms + int(c.pwm_min_interval_ms)  # type: ignore[operator]
        if f.ignore_pwm_spacing or t >= earliest:
            self.pwm_on, self.duty_pct, self.applied_current_a = True, duty, target
            self._pwm_last_change_ms = t
            self._log(t, "pwm", on=True, duty_pct=duty, current_a=target,
                      requested_ms=self._target_since_ms)
        else:
            self._pwm_pending_at_ms = earliest  # the latest target at that time wins

    def _update_locks(self, t: int) -> None:
        want = (self.connected and self.config.lock_on_plug
                and not (self._unlock_requested and not self.contactor_closed))
        if want != self.connector_locked:
            self.connector_locked = want
            self._log(t, "lock", locked=want)

    def _log_cp_state(self, t: int) -> None:
        s = self.cp_state
        if s != self._cp_reported:
            self._log(t, "cp_state", **{"from": self._cp_reported, "to": s})
            self._cp_reported = s

    def _update_energy(self, t: int) -> None:
        if self.contactor_closed:
            # power_total_w inlined (currents_a is [float(i) for i in _ev.currents_a] when
            # closed): the same products summed in the same order
            p = sum([v * float(i) for v, i in zip(self.voltages_v, self._ev.currents_a)])
            rate = max(0.0, p) / 3.6e6  # Wh per ms; an EVSE only delivers
        else:
            rate = 0.0      # what the formula gives with the contactor open (no current)
        self._session.set_rate(t, rate)
        self._total.set_rate(t, rate)

    def next_event_ms(self) -> int | None:
        """Earliest future time at which the firmware acts by itself (None: nothing pending)."""
        # the deadline helpers inlined where they are trivially None (this runs twice per settle)
        now = self.now_ms
        best = None
        for x in (self._open_at_ms, self._f_until_ms, self._pwm_pending_at_ms):
            if x is not None and x > now and (best is None or x < best):
                best = x
        if not self.in_failsafe and not self.faults.no_watchdog:
            if self._wd_timeout_ms > 0 and self._wd_last_feed_ms is not None:
                x = self._wd_last_feed_ms + self._wd_timeout_ms
                if x > now and (best is None or x < best):
                    best = x
            x = self._validity_deadline_ms
            if x is not None and x > now and (best is None or x < best):
                best = x
        if self._dc_onset_ms is not None or self._ac_onset_ms is not None \
                or self._oc_onset_ms is not None:
            for x in (self._rcd_dc_deadline(), self._rcd_ac_deadline(), self._oc_deadline()):
                if x is not None and x > now and (best is None or x < best):
                    best = x
        if self.contactor_closed and not self.pwm_on:
            x = self._force_open_deadline()
            if x is not None and x > now and (best is None or x < best):
                best = x
        if self._close_armed_ms is not None:
            x = self._close_armed_ms + int(self.config.contactor_close_delay_ms)
            if x > now and (best is None or x < best):
                best = x
        return best

    def next_event_memo(self) -> int | None:
        """:meth:`next_event_ms` for a caller that asks it every cycle (ChargePoint under its
        owner's promise). Of its candidates only the watchdog's moves without a counted
        assignment (every heartbeat feeds it); the earliest of the others is a function of the
        counted state, the knobs and the validity deadline (not counted), and while it is after
        the clock it stays the earliest after a later clock: kept under those keys."""
        d = self.__dict__
        now = d["now_ms"]
        m = d.get("_next_memo")
        if m is None or m[0] != d["_rev"] or m[1] != _KNOBS_GEN[0] or \
                m[2] != d["_validity_deadline_ms"] or (m[3] is not None and m[3] <= now):
            feed = d["_wd_last_feed_ms"]
            d["_wd_last_feed_ms"] = None    # (uncounted) the candidates without the watchdog's
            try:
                rest = self.next_event_ms()
            finally:
                d["_wd_last_feed_ms"] = feed
            d["_next_memo"] = m = (d["_rev"], _KNOBS_GEN[0], d["_validity_deadline_ms"], rest)
        best = m[3]
        feed = d["_wd_last_feed_ms"]
        if feed is not None and d["_wd_timeout_ms"] > 0 and not d["in_failsafe"] \
                and not self.faults.no_watchdog:
            x = feed + d["_wd_timeout_ms"]
            if x > now and (best is None or x < best):
                best = x
        return best

    def state_signature(self) -> tuple:
        """Observable state plus timers, for fixed-point settling of a coupled EV."""
        # cp_state inlined (the property's body: this runs two to three times per settle)
        ev_cp = self._ev_cp
        if self._f_until_ms is not None:
            cp = "F"
        elif ev_cp == "A" or ev_cp == "E":
            cp = ev_cp
        else:
            cp = ev_cp + ("2" if self.pwm_on else "1")
        return (cp, self.pwm_on, self.duty_pct, self.contactor_closed, self._error,
                self.in_failsafe, self._open_at_ms, self._close_armed_ms, self._dc_onset_ms,
                self._ac_onset_ms, self._oc_onset_ms, self._pwm_pending_at_ms, self._phases_active,
                self.connector_locked, self.next_event_ms())

    # ------------------------------------------------------------------ measurements
    @property
    def currents_a(self) -> list[float]:
        """True current per conductor L1, L2, L3 (A); zero with the contactor open."""
        if not self.contactor_closed:
            return [0.0, 0.0, 0.0]
        return [float(i) for i in self._ev.currents_a]

    @property
    def power_total_w(self) -> float:
        return sum(v * i for v, i in zip(self.voltages_v, self.currents_a))

    @property
    def session_energy_wh(self) -> float:
        return self._session.value(self.now_ms)

    @property
    def total_energy_wh(self) -> float:
        return self._total.value(self.now_ms)

    @property
    def status(self) -> str:
        """The allocator's status vocabulary (:data:`CHARGER_STATUSES`)."""
        # a function of counted state only (the point is not timed): while the change counter
        # and the knob generation hold, the last answer stands (the trace and the image ask
        # every charger every cycle). Kept in __dict__ directly: not an assignment that counts.
        d = self.__dict__
        memo = d.get("_status_memo")
        rev, gen = d["_rev"], _KNOBS_GEN[0]
        if memo is not None and memo[0] == rev and memo[1] == gen:
            return memo[2]
        st = self._status()
        d["_status_memo"] = (rev, gen, st)
        return st

    def _status(self) -> str:
        # error_code != NONE or cp_state in (E, F), spelled out on the attributes (the trace
        # asks every charger's status every cycle): a latched error, a CP short (E), the F hold,
        # or a plugged cable without a valid coding
        ev_cp = self._ev_cp
        if self._error != ErrorCode.NONE or ev_cp == "E" or self._f_until_ms is not None or \
                (ev_cp != "A" and self.cable_max_current_a is None):
            return "fault"
        if not self.enabled:
            return "unavailable"
        if ev_cp == "A":
            return "disconnected"
        if not self.pwm_on:
            return "connected_idle"  # the charger is not offering current (paused, failsafe stop)
        if self._ev_cp in ("C", "D"):
            if self.contactor_closed and max(self.currents_a) <= self.config.charging_threshold_a:
                return "ev_suspended"  # energised but the EV takes nothing (full, staying in C)
            return "charging"
        # B2: offered but not requested; after a charge in this session the EV has stopped
        return "ev_suspended" if self._had_charged else "connected_idle"

    @property
    def phases_in_use(self) -> int:
        """1 or 3: conductors actually carrying current (2 reported as 3), else energised ones."""
        if self.contactor_closed:
            n = sum(1 for i in self.currents_a if i > 0.5)
            if n:
                return 1 if n == 1 else 3
        return self.energised_conductors

    def watchdog_remaining_ms(self) -> int:
        if not self._wd_armed():
            return self._wd_timeout_ms
        return max(0, self._wd_last_feed_ms + self._wd_timeout_ms - self.now_ms)  # type: ignore[operator]

    # ------------------------------------------------------------------ point vocabulary
    def _valid_ms(self) -> int:
        # (watchdog_remaining_ms inlined: a timed point, read every cycle)
        if self.in_failsafe:
            return 0
        if self._validity_deadline_ms is not None:
            return max(0, self._validity_deadline_ms - self.now_ms)
        if self._wd_timeout_ms > 0 and not self.faults.no_watchdog and self._wd_last_feed_ms is not None:
            return max(0, self._wd_last_feed_ms + self._wd_timeout_ms - self.now_ms)
        return self._wd_timeout_ms

    def _duration_ms(self) -> int:
        if self._plug_ms is None:
            return 0
        return (self._unplug_ms if self._unplug_ms is not None else self.now_ms) - self._plug_ms

    def _setpoint_point(self) -> float:
        if self._setpoint_a is not None:
            return self._setpoint_a
        c = self.config
        return self._safe_a if c.startup_current_a is None else float(c.startup_current_a)

    def _cable_point(self) -> float:
        cable = self.cable_max_current_a
        return 0.0 if cable is None else cable

    def points(self) -> dict[str, object]:
        """Current values of :data:`CHARGER_POINTS_READ`."""
        return {name: get(self) for name, get in _POINT_GETTERS.items()}

    def point(self, name: str) -> object:
        """One value of :data:`CHARGER_POINTS_READ` (``points()[name]`` without the others);
        KeyError for unknown names."""
        return _POINT_GETTERS[name](self)

    def point_getter(self, name: str):
        """A zero-argument callable returning ``point(name)`` whenever it is called (a register
        image re-checks the same few points every cycle); KeyError for unknown names."""
        return functools.partial(_POINT_GETTERS[name], self)

    def _reported_current(self, conductor: int) -> float:
        """The current the charger reports about itself (``misreport_current_pct`` skews it)."""
        pct = self.faults.misreport_current_pct
        i = self.currents_a[conductor]
        return i * (1.0 + pct / 100.0) if pct else i

    def write_point(self, name: str, value: object, now_ms: int) -> None:
        """Apply a controller write at ``now_ms`` (not earlier than the model time).

        Raises KeyError for names outside :data:`CHARGER_POINTS_WRITE`, ValueError for bad values.
        The state machine reacts at the next :meth:`update` (ChargePoint does that at once).
        """
        if name not in CHARGER_POINTS_WRITE:
            raise KeyError(name)
        if now_ms < self.now_ms:
            raise ValueError(f"write in the past: {now_ms} < {self.now_ms}")
        self.__dict__["now_ms"] = now_ms                # not counted (_UNVERSIONED): no hook
        if name == "heartbeat":     # first: products fed by any request send one every cycle
            if not self.in_failsafe:  # only a set-point write ends a fallback
                self._feed(now_ms)
        elif name == "setpoint_a":
            v = _as_float(name, value)
            if not _same_float(self._setpoint_a, v):    # (a repeated value counts no change)
                self._setpoint_a = v
            self._feed(now_ms)
            if self._pending_validity_ms is not None:
                self._validity_deadline_ms = now_ms + self._pending_validity_ms
                self._pending_validity_ms = None
            else:
                self._validity_deadline_ms = None
            if self.in_failsafe:
                self.in_failsafe = False
                self._log(now_ms, "watchdog_recovered")
            self._log(now_ms, "setpoint", current_a=v)
        elif name == "setpoint_validity_s":
            v = _as_float(name, value)
            if v <= 0:
                raise ValueError("setpoint_validity_s must be > 0")
            ms = int(round(v * 1000))
            if ms != self._pending_validity_ms:
                self._pending_validity_ms = ms
        elif name == "safe_current_a":
            v = _as_float(name, value, 0.0, 80.0)
            if not _same_float(self._safe_a, v):
                self._safe_a = v
        elif name == "watchdog_timeout_s":
            ms = int(round(_as_float(name, value) * 1000))
            if ms != self._wd_timeout_ms:
                self._wd_timeout_ms = ms
        elif name == "enabled":
            en = _as_bool(name, value)
            if en != self.enabled:
                self.enabled = en
                self._log(now_ms, "enabled", enabled=en)
        elif name == "phases_setting":
            if value not in (1, 3) or isinstance(value, bool):
                raise ValueError("phases_setting must be 1 or 3")
            p = int(value)  # type: ignore[arg-type]
            if p != self._phases_setting:
                if not self.config.supports_phase_switching or self.config.hw_phases == 1:
                    raise ValueError("this charger does not support 1p/3p switching")
                self._phases_setting = p
        elif name == "unlock":
            self._unlock_requested = _as_bool(name, value) and self.connected

    def _feed(self, now_ms: int) -> None:
        self.__dict__["_wd_last_feed_ms"] = now_ms      # not counted (_UNVERSIONED): no hook


#: How each read point is computed (``Evse.points`` / ``Evse.point``): one function per point, so
#: a register image can compute only the points a request needs.
_POINT_GETTERS: dict[str, Any] = {
    "cp_state": lambda e: e.cp_state,
    "status": lambda e: e.status,
    "error_code": lambda e: int(e.error_code),
    "current_l1_a": lambda e: e._reported_current(0),
    "current_l2_a": lambda e: e._reported_current(1),
    "current_l3_a": lambda e: e._reported_current(2),
    "voltage_l1_v": lambda e: e.voltages_v[0],
    "voltage_l2_v": lambda e: e.voltages_v[1],
    "voltage_l3_v": lambda e: e.voltages_v[2],
    "power_total_w": lambda e: e.power_total_w,
    "session_energy_wh": lambda e: e.session_energy_wh,
    "total_energy_wh": lambda e: e.total_energy_wh,
    "session_duration_s": lambda e: e._duration_ms() / 1000.0,
    "pwm_duty_pct": lambda e: e.duty_pct,
    "applied_current_a": lambda e: e.applied_current_a,
    "setpoint_a": Evse._setpoint_point,
    "setpoint_valid_s": lambda e: e._valid_ms() / 1000.0,
    "hw_max_current_a": lambda e: float(e.config.hw_max_current_a),
    "cable_max_current_a": Evse._cable_point,
    "safe_current_a": lambda e: e._safe_a,
    "watchdog_timeout_s": lambda e: e._wd_timeout_ms / 1000.0,
    "watchdog_remaining_s": lambda e: e.watchdog_remaining_ms() / 1000.0,
    "in_failsafe": lambda e: e.in_failsafe,
    "phases_in_use": lambda e: e.phases_in_use,
    "phases_setting": lambda e: e._phases_setting,
    "enabled": lambda e: e.enabled,
    "connector_locked": lambda e: e.connector_locked,
    "contactor_closed": lambda e: e.contactor_closed,
    "vehicle_connected": lambda e: e.connected,
    "serial": lambda e: e.config.serial,
    "firmware_version": lambda e: e.config.firmware_version,
    "model_name": lambda e: e.config.model_name,
}


#: EV classes whose cp_state / diode_ok / currents_a / leakage_*_ma are EV's own properties
#: (ChargePoint._signals reads their bodies directly; any other class goes through them)
_PLAIN_EVS = (EV, SimulatedEv)


class ChargePoint:
    """A charger (:class:`Evse`) with an optional plugged :class:`EV`, on a virtual clock.

    ``advance(now_ms)`` moves to an absolute time, processing every internal deadline of the EVSE
    and the EV in time order; the result does not depend on the step size.  External changes
    (EV fault knobs, firmware fault knobs) take effect at the current model time.

    The charger's point vocabulary is :meth:`points` / :meth:`write_point` (writes first advance
    the model to ``now_ms``).
    """

    def __init__(self, config: EvseConfig | None = None, faults: FirmwareFaults | None = None, *,
                 evse: Evse | None = None, start_ms: int = 0,
                 voltages_v: Iterable[float] | None = None) -> None:
        self.evse = evse or Evse(config, faults, start_ms=start_ms)
        self._last_signals: tuple | None = None
        # set by an owner that guarantees nothing but this object's own methods (which leave it
        # settled) changes the EVSE or the EV until it clears the flag (the rig's plant in fast
        # mode, between two of its advances): writes then skip the no-op leading settle
        self.settled_promise = False
        self.now_ms = self.evse.now_ms
        self.ev: EV | None = None
        self.draw_limit_a: tuple | None = None     # see set_draw_limit
        if voltages_v is not None:
            self.evse.voltages_v = tuple(float(v) for v in voltages_v)  # type: ignore[assignment]
        self._settle(self.now_ms)

    @property
    def events(self) -> list[EvseEvent]:
        return self.evse.events

    @property
    def config(self) -> EvseConfig:
        return self.evse.config

    @property
    def faults(self) -> FirmwareFaults:
        return self.evse.faults

    def plug(self, ev: EV, now_ms: int) -> None:
        """Plug ``ev`` in at ``now_ms``."""
        if self.ev is not None:
            raise RuntimeError("a vehicle is already plugged in")
        self.advance(now_ms)
        self.ev = ev
        ev.connect(now_ms)
        self._settle(now_ms)

    def unplug(self, now_ms: int) -> EV | None:
        """Pull the cable at ``now_ms``; returns the EV that was plugged."""
        self.advance(now_ms)
        ev, self.ev = self.ev, None
        if ev is not None:
            ev.disconnect(now_ms)
        self._settle(now_ms)
        return ev

    def set_voltages(self, voltages_v: Iterable[float], now_ms: int) -> None:
        """Change the supply voltages (V per conductor) from ``now_ms`` on."""
        self.advance(now_ms)
        self.evse.voltages_v = tuple(float(v) for v in voltages_v)  # type: ignore[assignment]
        self._settle(now_ms)

    def set_draw_limit(self, conductor: int, amps: float | None, now_ms: int) -> None:
        """Cap what the vehicle draws on one conductor (0, 1, 2 = L1, L2, L3) from ``now_ms`` on;
        ``None`` removes the cap.  For a bench where something outside the EV decides the draw (an
        electronic load in place of the vehicle: input off = 0 A).  The cap belongs to the socket,
        not to a vehicle: it stays across plug-ins until removed."""
        lim = list(self.draw_limit_a or (None, None, None))
        lim[conductor] = None if amps is None else max(0.0, float(amps))
        new = None if all(x is None for x in lim) else tuple(lim)
        if new == self.draw_limit_a:
            return
        self.advance(now_ms)
        self.draw_limit_a = new
        self._settle(now_ms)

    def demand_a(self) -> list[float]:
        """What the vehicle would draw per conductor without the draw limit (A); 0 with the
        contactor open or no vehicle."""
        if self.ev is None or not self.evse.contactor_closed:
            return [0.0, 0.0, 0.0]
        return self.ev.demand_a

    def advance(self, now_ms: int, *, unchanged: bool = False) -> None:
        """Advance to absolute virtual time ``now_ms`` (ms), processing internal events in order.

        ``unchanged=True`` is the caller's promise that nothing outside this object changed the
        EVSE or the EV since this object last settled (a fixed point: its own ``advance``,
        ``write_point``, ``plug``...). Then settling again at the current time is a no-op and is
        skipped, and when no internal event falls in (now, now_ms] the models only move their
        clocks: an update at a time with nothing due changes nothing else (every time-triggered
        change is an event of ``next_event_ms``; the energy integrators keep their rate). The
        result is the same as without the promise, in far less work for an idle charger.
        """
        now_ms = int(now_ms)
        if now_ms < self.now_ms:
            raise ValueError(f"time went backwards: {now_ms} < {self.now_ms}")
        if unchanged:
            if now_ms == self.now_ms and self.evse.now_ms == now_ms and \
                    (self.ev is None or getattr(self.ev, "_now_ms", None) == now_ms):
                # already there (a same-instant heartbeat after the plant's advance): the
                # events after now are all later than now_ms, so the branch below would only
                # set the clocks to the values they have
                return
            if type(self.ev) is EV:
                t = self._quiet_ticks(now_ms)
            else:
                t = self._next_event_ms(type(self.evse) is Evse)
            if t is None or t > now_ms:
                self.now_ms = self.evse.__dict__["now_ms"] = now_ms    # (not counted: _UNVERSIONED)
                if self.ev is not None:
                    self.ev._now_ms = now_ms
                return
            # an event is due in (now, now_ms]: t is the loop's first one (nothing ran since)
        else:
            self._settle(self.now_ms)  # pick up external changes made at the current time
            if now_ms == self.now_ms:
                return      # settled at now_ms just above: settling again is a no-op (idempotent)
            t = self._next_event_ms()
        while t is not None and t <= now_ms:
            self._settle(t)
            t = self._next_event_ms()
        if self.now_ms != now_ms:   # (an event exactly at now_ms has settled it already)
            self._settle(now_ms)

    def _quiet_ticks(self, now_ms: int) -> int | None:
        """Under the owner's promise (see advance), take the EV's SOC ticks up to now_ms that
        settling would only repeat, without settling; returns the first event left
        (:meth:`_next_event_ms` after them).

        A charging EV's tick comes every second. Settling at it would be one pass (the fixed
        point is found at once) when the EVSE is still in the state of this object's last
        settle (change counter and knob generation unchanged; the promise: the EV's inputs too),
        nothing of the EVSE falls due by the tick and no PWM change is pending, and the EV's
        update only moves its SOC snapshot (EV.quiet_tick decides). That pass leaves the EVSE
        as it is (an update with the same signals and nothing due moves only its clock) and
        ends with the change counter, the knob generation and the tick as the settle record.
        The EVSE's next event is asked once: a quiet tick before it leaves it where it is.
        """
        ev, evse = self.ev, self.evse
        ed = evse.__dict__
        now = self.now_ms
        # (as _next_event_ms: after now)
        x = evse.next_event_memo() if type(evse) is Evse else evse.next_event_ms()
        if x is not None and x <= now:
            x = None
        settled = self._settled
        while True:
            t = x
            y = ev.next_event_ms()
            if y is not None and y > now and (t is None or y < t):
                t = y
            if t is None or t > now_ms or t == x:       # nothing due, or the EVSE's own event
                return t
            if settled is None or settled[0] != ed["_rev"] or settled[1] != _KNOBS_GEN[0] \
                    or ed["_pwm_pending_at_ms"] is not None or not ev.quiet_tick(t):
                return t                # (quiet_tick changes nothing when it declines)
            self.now_ms = ed["now_ms"] = now = t        # (not counted: _UNVERSIONED)
            self._settled = settled = (settled[0], settled[1], t)

    def _next_event_ms(self, memo: bool = False) -> int | None:
        # the earliest of the EVSE's and the EV's next events after now (every idle charger asks
        # this every cycle: no lists built); memo: under the owner's promise, a plain Evse
        now = self.now_ms
        best = self.evse.next_event_memo() if memo else self.evse.next_event_ms()
        if best is not None and best <= now:
            best = None
        ev = self.ev
        if ev is not None:
            x = ev.next_event_ms()
            if x is not None and x > now and (best is None or x < best):
                best = x
        return best

    def _signals(self) -> EvSignals:
        ev = self.ev
        if ev is None:
            return NO_EV
        if type(ev) in _PLAIN_EVS:
            # the EV's properties read directly (their bodies; neither class overrides them)
            f = ev.faults
            if ev._energised:
                dc, ac = float(f.leakage_dc_ma), float(f.leakage_ac_ma)
            else:
                dc = ac = 0.0
            key = (ev._cp, not f.missing_diode, tuple(ev._currents), dc, ac, ev.pp_ohm)
        else:
            key = (ev.cp_state, ev.diode_ok, tuple(ev.currents_a), ev.leakage_dc_ma,
                   ev.leakage_ac_ma, ev.pp_ohm)
        # the same values give an equal (frozen) object: reuse the last one (built twice per settle)
        last = self._last_signals
        if last is not None and last[0] == key:
            return last[1]
        sig = EvSignals(cp=key[0], diode_ok=key[1], currents_a=key[2],  # type: ignore[arg-type]
                        leakage_dc_ma=key[3], leakage_ac_ma=key[4], pp_ohm=key[5])
        self._last_signals = (key, sig)
        return sig

    def _settle(self, t: int) -> None:
        """Iterate EV and EVSE at time ``t`` until neither changes (a fixed point)."""
        self.now_ms = t
        evse = self.evse
        ed = evse.__dict__
        # The EVSE may skip its update in the first pass (a charging EV's tick re-settles every
        # cycle, the EVSE having nothing to do) when all of these hold:
        # - it is still in the state of this object's last completed settle, at that settle's
        #   time T: change counter, knob generation and clock unchanged (the only uncounted
        #   writes, heartbeat feeds, put the watchdog deadline after T);
        # - nothing of its own falls due in (T, t] (every time-triggered change is an event of
        #   next_event_ms) and no PWM change is pending (its update would re-arm the same
        #   pending time, counting two assignments);
        # - the EV's signals after its update are the object the EVSE last consumed.
        # Then update(t) finds the inputs of its last, idempotent update at T and nothing due,
        # so it would only move the clock (and set_rate the same rate: a no-op).
        settled = self._settled
        may_skip = False
        if settled is not None and settled[0] == ed["_rev"] and settled[1] == _KNOBS_GEN[0] \
                and settled[2] == ed["now_ms"] <= t and ed["_pwm_pending_at_ms"] is None:
            x = evse.next_event_ms()
            may_skip = x is None or x > t
        # the state after one pass is the state before the next: its signature is computed once
        after = (evse.state_signature(), self.ev.state_signature() if self.ev else None)
        for _ in range(32):
            before = after
            if self.ev is not None:
                self.ev.update(t, evse.duty_pct if evse.pwm_on else None, evse.contactor_closed,
                               evse.energised_conductors, evse.voltages_v, self.draw_limit_a)
            sig = self._signals()
            if may_skip and sig is ed["_ev"]:
                ed["now_ms"] = t        # all update(t) would do (not counted: _UNVERSIONED)
                # its signature is the one before: only its clock moved, and the clock enters it
                # only through next_event_ms, which has nothing in (T, t] (may_skip) and so
                # gives the same answer at t as at T
                evse_after = before[0]
            else:
                evse.update(t, sig)
                evse_after = evse.state_signature()
            may_skip = False            # (first pass only)
            after = (evse_after, self.ev.state_signature() if self.ev else None)
            if after == before:
                self._settled = (ed["_rev"], _KNOBS_GEN[0], t)
                return
        raise RuntimeError(f"EVSE/EV coupling did not settle at t={t} ms")

    _settled: tuple | None = None   # (change counter, knob generation, time) of the last settle

    # ------------------------------------------------------------------ measurements
    def currents_a(self) -> list[float]:
        """True current per charger conductor [L1, L2, L3] (A); unused conductors 0."""
        return self.evse.currents_a

    @property
    def status(self) -> str:
        return self.evse.status

    @property
    def cp_state(self) -> str:
        return self.evse.cp_state

    def points(self) -> dict[str, object]:
        """Charger points (:data:`CHARGER_POINTS_READ`) at the current model time."""
        return self.evse.points()

    def point(self, name: str) -> object:
        """One charger point (``points()[name]``); KeyError for unknown names."""
        return self.evse.point(name)

    def point_getter(self, name: str):
        """``point(name)`` as a zero-argument callable (see :meth:`Evse.point_getter`)."""
        return self.evse.point_getter(name)

    timed_points = TIMED_POINTS

    def read_token(self) -> tuple:
        """:meth:`Evse.read_token` (the points are the EVSE's)."""
        return self.evse.read_token()

    def write_point(self, name: str, value: object, now_ms: int) -> None:
        """Controller write (:data:`CHARGER_POINTS_WRITE`) at ``now_ms``; the firmware reacts at once."""
        if name not in CHARGER_POINTS_WRITE:
            raise KeyError(name)
        promise = self.settled_promise
        self.advance(now_ms, unchanged=promise)
        evse = self.evse
        if promise:
            ed = evse.__dict__
            rev, gen = ed["_rev"], _KNOBS_GEN[0]
        evse.write_point(name, value, now_ms)
        if promise:
            if name == "heartbeat":
                # Settled at now_ms just above, and a heartbeat only moves the watchdog's last feed
                # to now_ms (its deadline to the future): nothing is due at now_ms that was not,
                # so settling again is a no-op (idempotent update, integrators keep their rate).
                # Skipped under the owner's promise only (fast mode: products fed by any request
                # see this every cycle); the plain path settles, and both give the same run.
                return
            # Likewise any write that assigned nothing counted (a repeated set-point, watchdog
            # timeout, enable...): besides the feed it can only have cleared the validity
            # deadline (a new one is set only with the pending validity, which is counted)
            if ed["_rev"] == rev and _KNOBS_GEN[0] == gen:
                return
        self._settle(now_ms)
