"""Alfen Eve / NG9xx Modbus TCP server, devices.md section 2.3.

Unit 200 answers the station registers, units 1 and 2 the socket registers; holding registers
(FC03 read, FC06/FC16 write), big-endian, float32/float64/U16/U32/strings (2 ASCII per register,
zero-terminated). Reserved or unavailable registers read NaN (0xFFFF per register); addresses
outside the documented blocks answer 02. Multi-register values must be written in one request
(a half-written float -> exception 03; devices.md only says "a Modbus error is returned", the
code is our choice). Up to 2 TCP masters (``max_clients``), keep-alive 60 s (``keepalive_s``),
both enforced by the transport, not here.

Failsafe: validity time 60 s by default; every write of 1210 (max current) restarts it
(``heartbeat=True`` on 1210: the model receives ``setpoint_a`` and then ``heartbeat``), the
remaining time is 1208, then the station reverts to the safe current (1212). evcc rewrites the
current every 25 s.

Values the charger model does not have are derived (line-line voltage and neutral current for a
symmetric 120-degree system, per-phase power = V x I) or read NaN (per-phase energies, which the
NG9xx reports only when its meter provides them). Frequency reads 50.0 Hz and power factor 1.0
(no charger points for them).

Controller side (:data:`DRIVER`, see ``driver.py``; :func:`alfen_status`), socket units 1/2:
two requests, 320..325 (I L1..L3, float32) and 1200..1215 (availability, mode 3 state, applied
current 1206, remaining validity 1208, set-point 1210, safe current 1212, accounted 1214,
phases 1215). State:

=======================  ==================================================================
registers                decoded
=======================  ==================================================================
1201 E, F                fault (first: a faulted socket is a fault even when inoperative)
1200 = 0 (inoperative)   unavailable
1201 A                   disconnected
1201 B1, B2              connected_idle
1201 C1, D1              connected_idle: the EV requests, the station offers no current
                         (paused, failsafe 0 A); the EV takes current as soon as it is
                         offered, so it is not "ev_suspended" (the charger model says the same)
1201 C2, D2              any phase >= 1 A: charging, else ev_suspended
=======================  ==================================================================

Collapse: an EV that stopped after charging and sits in B2 reads "connected_idle" (the mode 3
state cannot tell it from an EV that has not started). NaN currents -> ``DecodeError``; NaN
applied / set-point read as None. Writes: 1210 float32, both registers in ONE request (the
station rejects half a float), 0 = pause, each write restarts the validity time (so the
heartbeat is the set-point rewrite, every 25 s as evcc); phases 1215 (1 or 3). The safe
current (1212) and the validity time are installer settings, read-only over Modbus:
``failsafe_writes`` is empty.
"""
from __future__ import annotations

import math
import time

from .base import Profile, Register, Watchdog
from .driver import ChargerSpec, charging_or_suspended
from .points import finite_range, line_voltage, neutral_current, one_of

SOURCE = ("devices.md 2.3: Alfen 'Implementation of Modbus Slave TCP/IP for Alfen NG9xx "
          "platform' v2.3 (30-10-2020, fw 4.10) [VENDOR-copy]; evcc charger/alfen.go [IMPL]")

NAN = math.nan


def alfen_status(raw) -> str:
    """The allocator state from 1200 (``availability``), 1201 (``mode3_state``) and currents."""
    m = str(raw["mode3_state"]).strip()
    if m in ("E", "F"):
        return "fault"
    if raw["availability"] == 0:
        return "unavailable"
    if m == "A":
        return "disconnected"
    if m in ("B1", "B2", "C1", "D1"):
        return "connected_idle"
    if m in ("C2", "D2"):
        return charging_or_suspended(raw)
    raise ValueError(f"unknown mode 3 state {m!r}")


DRIVER = ChargerSpec(status=alfen_status,
                     reads=(("holding", 1200), ("holding", 1201), ("holding", 1208),
                            ("holding", 1212), ("holding", 1214)),   # 1208..1214: raw, diagnostics
                     min_current_a=6.0, max_current_a=80.0, pause="zero")


def _s(addr: int, dtype: str, point: str | None, desc: str, unit: str = "", **kw) -> Register:
    return Register(addr, dtype, point, table="holding", role="socket", unit=unit,
                    description=desc, **kw)


def _st(addr: int, dtype: str, desc: str, **kw) -> Register:
    return Register(addr, dtype, table="holding", role="station", description=desc, **kw)


def _vi(p, i):  # phase voltage x current
    return p[f"voltage_l{i}_v"] * p[f"current_l{i}_a"]


def _socket() -> list[Register]:
    r: list[Register] = [
        _s(300, "u16", None, "Meter state: bitmask 1 initialised, 2 updated, 4 warning, 8 error",
           const=3, name="meter_state"),
    ]
    for i in (1, 2, 3):
        r.append(_s(304 + 2 * i, "f32", f"voltage_l{i}_v", f"Voltage phase L{i}N", "V"))
    for k, (a, b) in enumerate(((1, 2), (2, 3), (3, 1))):
        r.append(_s(312 + 2 * k, "f32", None, f"Voltage phase L{a}L{b}", "V",
                    fn=lambda p, a=a, b=b: line_voltage(p[f"voltage_l{a}_v"], p[f"voltage_l{b}_v"]),
                    name=f"voltage_l{a}l{b}_v"))
    r.append(_s(318, "f32", None, "Current N", "A", name="current_n_a",
                fn=lambda p: neutral_current(p["current_l1_a"], p["current_l2_a"], p["current_l3_a"])))
    for i in (1, 2, 3):
        r.append(_s(318 + 2 * i, "f32", f"current_l{i}_a", f"Current phase L{i}", "A"))
    r.append(_s(326, "f32", None, "Current sum", "A", name="current_sum_a",
                fn=lambda p: p["current_l1_a"] + p["current_l2_a"] + p["current_l3_a"]))
    for k, nm in enumerate(("L1", "L2", "L3", "sum")):
        r.append(_s(328 + 2 * k, "f32", None, f"Power factor {nm} (1.0: no charger point)",
                    const=1.0, name=f"pf_{nm.lower()}"))
    r.append(_s(336, "f32", None, "Frequency (50 Hz: no charger point)", "Hz", const=50.0,
                name="frequency_hz"))
    for i in (1, 2, 3):
        r.append(_s(336 + 2 * i, "f32", None, f"Real power L{i}", "W",
                    fn=lambda p, i=i: _vi(p, i), name=f"power_l{i}_w"))
    r.append(_s(344, "f32", "power_total_w", "Real power sum", "W"))
    for k, nm in enumerate(("L1", "L2", "L3")):
        r.append(_s(346 + 2 * k, "f32", None, f"Apparent power {nm}", "VA",
                    fn=lambda p, i=k + 1: _vi(p, i), name=f"va_l{k + 1}"))
    r.append(_s(352, "f32", None, "Apparent power sum", "VA", name="va_total",
                fn=lambda p: sum(_vi(p, i) for i in (1, 2, 3))))
    for k, nm in enumerate(("L1", "L2", "L3", "sum")):
        r.append(_s(354 + 2 * k, "f32", None, f"Reactive power {nm} (0: resistive model)", "var",
                    const=0.0, name=f"var_{nm.lower()}"))
    for k, nm in enumerate(("L1", "L2", "L3")):
        r.append(_s(362 + 4 * k, "f64", None, f"Real energy delivered {nm} (NaN: not metered "
                    "per phase)", "Wh", const=NAN, name=f"energy_delivered_l{k + 1}_wh"))
    r.append(_s(374, "f64", "total_energy_wh", "Real energy delivered sum", "Wh"))
    for k, nm in enumerate(("L1", "L2", "L3")):
        r.append(_s(378 + 4 * k, "f64", None, f"Real energy consumed {nm} (NaN)", "Wh",
                    const=NAN, name=f"energy_consumed_l{k + 1}_wh"))
    r.append(_s(390, "f64", None, "Real energy consumed sum (0: no reverse flow)", "Wh",
                const=0.0, name="energy_consumed_wh"))
    r += [
        _s(1200, "u16", None, "Availability: 1 operative, 0 inoperative",
           fn=lambda p: 0 if p["status"] == "unavailable" else 1, name="availability"),
        _s(1201, "str", None, "Mode 3 state: A, B1, B2, C1, C2, D1, D2, E, F",
           count=5, fn=lambda p: p["cp_state"], name="mode3_state"),
        _s(1206, "f32", "applied_current_a", "Actual applied max current", "A"),
        _s(1208, "u32", "setpoint_valid_s", "Modbus slave max current valid time: remaining "
           "time before fallback to safe current", "s"),
        _s(1210, "f32", "setpoint_a", "Modbus slave max current (each write restarts the "
           "validity time)", "A", access="rw", valid=finite_range(0.0, 80.0), heartbeat=True),
        _s(1212, "f32", "safe_current_a", "Active load balancing safe current", "A"),
        _s(1214, "u16", None, "Setpoint accounted for: 1 yes, 0 no (fallback active)",
           fn=lambda p: 0 if p["in_failsafe"] else 1, name="setpoint_accounted"),
        _s(1215, "u16", "phases_setting", "Charge using 1 or 3 phases", access="rw",
           valid=one_of(1, 3)),
    ]
    return r


def _utc(now_ms: int) -> time.struct_time:
    return time.gmtime(now_ms // 1000)


def _station() -> list[Register]:
    r = [
        _st(100, "str", "Name", count=17, group_fn=lambda ps: ps[0]["model_name"], name="name"),
        _st(117, "str", "Manufacturer", count=5, const="Alfen", name="manufacturer"),
        _st(122, "u16", "Modbus table version", const=1, name="table_version"),
        _st(123, "str", "Firmware version", count=17, group_fn=lambda ps: ps[0]["firmware_version"],
            name="firmware_version"),
        _st(140, "str", "Platform type", count=17, const="NG910", name="platform_type"),
        _st(157, "str", "Station serial number", count=11, group_fn=lambda ps: ps[0]["serial"],
            name="serial"),
    ]
    for k, (nm, f) in enumerate((("year", lambda t: t.tm_year), ("month", lambda t: t.tm_mon),
                                 ("day", lambda t: t.tm_mday), ("hour", lambda t: t.tm_hour),
                                 ("minute", lambda t: t.tm_min), ("second", lambda t: t.tm_sec))):
        r.append(_st(168 + k, "i16", f"Date/time {nm} (UTC, from the rig clock)",
                     clock_fn=lambda ms, f=f: f(_utc(ms)), name=f"time_{nm}"))
    r += [
        _st(174, "u64", "Uptime (ms, from the rig clock)", clock_fn=lambda ms: ms, unit="ms",
            name="uptime_ms"),
        _st(178, "i16", "Time zone offset (min)", const=0, name="tz_offset_min"),
        _st(1100, "f32", "Station active max current", unit="A", name="station_max_current_a",
            group_fn=lambda ps: max(p["hw_max_current_a"] for p in ps)),
        _st(1102, "f32", "Temperature (25 degC: not modelled)", unit="degC", const=25.0,
            name="temperature_c"),
        _st(1104, "u16", "OCPP state (0: not connected, not modelled)", const=0, name="ocpp_state"),
        _st(1105, "u16", "Number of sockets", group_fn=len, name="sockets"),
    ]
    for k in range(3):
        r.append(_st(1417 + 2 * k, "f32", f"SCN max current phase L{k + 1} (kept locally)",
                     access="rw", const=NAN, unit="A", valid=finite_range(0.0, 1000.0),
                     name=f"scn_max_current_l{k + 1}_a"))
    for k in range(3):
        r.append(_st(1423 + 2 * k, "u32", f"SCN remaining valid time L{k + 1} (not modelled)",
                     const=0, unit="s", name=f"scn_valid_time_l{k + 1}_s"))
    r += [
        _st(1429, "f32", "SCN safe current (kept locally)", access="rw", const=NAN, unit="A",
            valid=finite_range(0.0, 1000.0), name="scn_safe_current_a"),
        _st(1431, "u16", "SCN enabled (kept locally)", access="rw", const=0, valid=one_of(0, 1),
            name="scn_enable"),
    ]
    return r


ALFEN_NG9XX = Profile(
    name="alfen_ng9xx", vendor="Alfen", model="Eve / NG9xx (Modbus slave TCP/IP v2.3)",
    kind="charger", transport="tcp", port=502,
    units=((200, "station"), (1, "socket"), (2, "socket")), default_role="socket",
    station_unit=200, word_order="be", function_codes=frozenset({3, 6, 16}),
    reserved="nan", atomic_writes=True, partial_write_exception=3, readonly_exception=2,
    blocks=(("holding", 300, 394), ("holding", 1200, 1216),
            ("holding", 100, 179), ("holding", 1100, 1106), ("holding", 1417, 1432)),
    watchdog=Watchdog(remaining_register=1208, safe_current_register=1212,
                      heartbeat_register=1210, kick="register", default_timeout_s=60.0,
                      heartbeat_s=25.0,
                      notes="validity time (default 60 s) restarts on every write of 1210; "
                            "safe current must be configured (installer) before 1210 is accepted; "
                            "max current is not persisted across reboot"),
    max_clients=2, keepalive_s=60.0,
    registers=tuple(_socket() + _station()),
    source=SOURCE, driver=DRIVER,
    notes="Requires the Active Load Balancing licence, Data Source = Energy Management System, "
          "Allow reading / Allow writing (both off by default). TapHome's 'LSW-first' claim "
          "contradicts Alfen and evcc: big-endian is used.",
)

PROFILES = (ALFEN_NG9XX,)
