"""Heidelberg Energy Control (Modbus RTU, unit 1), devices.md section 2.4 and section 7.3.

U16 big-endian registers. Input: 5 state, 6-8 currents (0.1 A), 9 temperature (0.1 degC),
10-12 voltages (V), 14 power (W), 17-18 energy since installation (Wh, U32). Holding: 257
watchdog timeout (ms), 258 standby (write 4 to disable standby, otherwise comms drop), 259
remote lock, 261 max current (0.1 A), 262 failsafe current (0.1 A).

Watchdog: if no Modbus request reaches the box within 257 ms it falls back to 262; evcc polls
the status at timeout/2, so *any* request restarts the timer (``kick="any"``).

Chosen here (not in devices.md): 19200 baud 8E1 (Heidelberg's documented default; configurable),
unused input addresses 13, 15-16 answer (13 external lock = 1, 15-16 energy since power-on =
total energy), other unmapped addresses 02. 259 and 258 are kept locally (no vocabulary points).

Controller side (:data:`DRIVER`, see ``driver.py``; :func:`heidelberg_status`): two requests,
IR 5..8 (state, currents in 0.1 A) and HR 261 (set-point read-back). IR 5:

=========================  =================================================================
IR 5                       decoded
=========================  =================================================================
2, 3 (A1 / A2)             disconnected (2 "no vehicle, charging not allowed" is also what a
                           paused empty box shows: not mapped to "unavailable")
4, 5 (B1 / B2)             connected_idle
6 (C1)                     connected_idle (the EV requests, the box offers no current)
7 (C2), 8 (derating / D)   any phase >= 1 A: charging, else ev_suspended
9 (E), 10 (F), 11 (error)  fault
=========================  =================================================================

The product cannot express "unavailable" (reads "disconnected", or "connected_idle" with a
vehicle) nor an EV stopped after charging in B2 ("connected_idle"). No applied-current or phase
register. Writes: 261 in 0.1 A (floored, 6..16 A, 0 = pause), failsafe 262 (0.1 A) and 257 (ms,
U16: at most 65.535 s, a longer timeout is shortened). Any request feeds the watchdog: polling
at least every timeout/2 is the heartbeat (``heartbeat_by_poll``).
"""
from __future__ import annotations

from .base import Profile, Register, Watchdog
from .driver import ChargerSpec, charging_or_suspended
from .points import zero_or_range

SOURCE = "devices.md 2.4 / 7.3: evcc charger/heidelberg-ec.go [IMPL] (EC Modbus register table 2021-02-22)"

HEIDELBERG_STATE = {"A": 2, "B1": 4, "B2": 5, "C1": 6, "C2": 7, "D1": 8, "D2": 8, "E": 9, "F": 10}


def heidelberg_state(p) -> int:
    """IR 5: 2/3 = A (3: charging allowed), 4/5 = B, 6/7 = C, 8 = D, 9 = E, 10 = F."""
    s = p["cp_state"]
    if s == "A":
        return 3 if p["enabled"] else 2
    return HEIDELBERG_STATE[s]


def heidelberg_status(raw) -> str:
    """The allocator state from IR 5 (``charging_state``) and currents."""
    st = raw["charging_state"]
    if st in (2, 3):
        return "disconnected"
    if st in (4, 5, 6):
        return "connected_idle"
    if st in (7, 8):
        return charging_or_suspended(raw)
    if st in (9, 10, 11):
        return "fault"
    raise ValueError(f"unknown Heidelberg charging state {st}")


DRIVER = ChargerSpec(status=heidelberg_status, reads=(("input", 5),), min_current_a=6.0,
                     max_current_a=16.0, pause="zero")


def _ir(addr, dtype, point, desc, scale=1.0, unit="", **kw):
    return Register(addr, dtype, point, table="input", scale=scale, unit=unit, description=desc, **kw)


def _hr(addr, point, desc, scale=1.0, unit="", **kw):
    return Register(addr, "u16", point, table="holding", access="rw", scale=scale, unit=unit,
                    description=desc, **kw)


HEIDELBERG_EC = Profile(
    name="heidelberg_ec", vendor="Heidelberger Druckmaschinen", model="Wallbox Energy Control",
    kind="charger", transport="rtu", baud=19200, parity="E", stopbits=1,
    units=((1, "device"),), word_order="be", function_codes=frozenset({3, 4, 6, 16}),
    reserved="exception",
    blocks=(("input", 5, 19), ("holding", 257, 263)),
    watchdog=Watchdog(timeout_register=257, timeout_unit="ms", timeout_write_register=257,
                      safe_current_register=262, safe_current_write_register=262, kick="any",
                      notes="any request restarts the timer; evcc polls at timeout/2; write 4 to "
                            "258 to disable standby or the box stops answering"),
    registers=(
        _ir(5, "u16", None, "Charging state: 2/3 A, 4/5 B, 6/7 C, 8 D, 9 E, 10 F",
            fn=heidelberg_state, name="charging_state"),
        _ir(6, "u16", "current_l1_a", "Current L1 (0.1 A)", 0.1, "A"),
        _ir(7, "u16", "current_l2_a", "Current L2 (0.1 A)", 0.1, "A"),
        _ir(8, "u16", "current_l3_a", "Current L3 (0.1 A)", 0.1, "A"),
        _ir(9, "i16", None, "PCB temperature (0.1 degC; not modelled)", 0.1, "degC", const=25.0,
            name="temperature_c"),
        _ir(10, "u16", "voltage_l1_v", "Voltage L1 (V)", unit="V"),
        _ir(11, "u16", "voltage_l2_v", "Voltage L2 (V)", unit="V"),
        _ir(12, "u16", "voltage_l3_v", "Voltage L3 (V)", unit="V"),
        _ir(13, "u16", None, "External lock state (1 = unlocked)", const=1, name="external_lock"),
        _ir(14, "u16", "power_total_w", "Power (W)", unit="W"),
        _ir(15, "u32", "total_energy_wh", "Energy since power-on (Wh; = total, no power-on "
            "counter in the model)", unit="Wh", name="energy_since_poweron_wh"),
        _ir(17, "u32", "total_energy_wh", "Energy since installation (Wh)", unit="Wh"),
        _hr(257, "watchdog_timeout_s", "Modbus watchdog timeout (ms; 0 = off)", 0.001, "s"),
        _hr(258, None, "Standby function: 0 enabled, 4 disabled (kept locally)", const=0,
            valid=(0, 4), name="standby"),
        _hr(259, None, "Remote lock: 1 unlocked, 0 locked (kept locally: no lock point)",
            const=1, valid=(0, 1), name="remote_lock"),
        _hr(261, "setpoint_a", "Maximal current command (0.1 A; 0 = pause, 60-160)", 0.1, "A",
            valid=zero_or_range(6, 16)),
        _hr(262, "safe_current_a", "Failsafe current (0.1 A)", 0.1, "A",
            valid=zero_or_range(6, 16)),
    ),
    source=SOURCE, driver=DRIVER,
    notes="An RTU charger with a ms watchdog; shares the RS-485 bus with the SDM630 (multi-drop).",
)

PROFILES = (HEIDELBERG_EC,)
