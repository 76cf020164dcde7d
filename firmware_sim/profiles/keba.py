"""KEBA KeContact P30 / P40 (Modbus TCP, unit 255), devices.md appendix B and section 2.4.

Holding registers read as U32 (2 registers, high word first); writes are single U16 registers
(FC06; FC16 with one register is accepted too). The station "does not support reading across
register boundaries": a read must lie inside exactly one value, otherwise exception 02 (the
code is our choice; devices.md and evcc only say it is not supported). Unmapped addresses and
the write-only 5xxx registers answer 02 to reads.

Failsafe: 1600/1602 read the failsafe current (mA) and timeout (s); 5016/5018 write them. evcc
rewrites 5018 every timeout/2 as a keep-alive, so any accepted write restarts the timer here
(``kick="write"``). Set-point 5004 in mA (6000-63000, or 0 to pause).

P30 vs P40 (evcc keba-modbus.go): the P30 enables with 5014 and reports phase state 0 for
1-phase; the P40 has no 5014 (enable = 5004 > 0), 5004 is readable, phase state 1 = 1-phase.
Registers 1016 (product code), 1550/1552 (phase source/state) and 5052 (phase switch) are from
evcc. 1036 is 0.1 Wh and 1502 Wh as devices.md says (evcc notes P40 fw < 1.2.1 differ).

Controller side (:data:`DRIVER_P30` / :data:`DRIVER_P40`, see ``driver.py``; :func:`keba_status`):
one request per value (single-value reads): 1000, 1004, 1008, 1010, 1012, 1100 (applied, mA),
1552 (phases), and on the P40 5004 (set-point read-back). State from 1000 + 1004 + currents:

====================  ===================================================================
1000 charging state   decoded
====================  ===================================================================
4 error               fault
0 start-up            unavailable
1 not ready           cable at vehicle (1004 >= 5): unavailable ("ena" not set, RFID not
                      enabled); otherwise disconnected
2 ready               cable at vehicle: connected_idle; otherwise disconnected
3 charging            any phase >= 1 A: charging, else ev_suspended (the station reports 3
                      while the contactor is closed, also for an EV that stopped drawing)
5 suspended           cable at vehicle: connected_idle (interrupted by the station:
                      temperature, suspended mode); otherwise disconnected
====================  ===================================================================

Collapse: "unavailable" without a vehicle reads "disconnected" (state 1, cable 0). Writes:
5004 in mA (floored to 1 mA, 6..63 A); P30 pauses with 5014 = 0 and resumes with 5004 then
5014 = 1 (as evcc), P40 pauses with 5004 = 0. In the charger model a cleared enable is
"unavailable", so a P30 paused by its controller reads back "unavailable" while plugged.
Phases 5052 (0 = 1p, 1 = 3p). Failsafe 5016 (mA) and 5018 (s); the heartbeat rewrites 5018
with the configured timeout every timeout/2.
"""
from __future__ import annotations

from dataclasses import replace

from .base import Profile, Register, Watchdog
from .driver import ChargerSpec, charging_or_suspended
from .points import int_or, version_u32, zero_or_range

SOURCE = ("devices.md appendix B and 2.4: KeContact P30/P40 Modbus TCP programmer's guides "
          "[VENDOR]; evcc charger/keba-modbus.go [IMPL]")


def keba_state(p) -> int:
    """Charging state 1000: 0 start-up, 1 not ready, 2 ready, 3 charging, 4 error, 5 suspended."""
    s = p["status"]
    if s == "fault":
        return 4
    if s in ("disconnected", "unavailable"):
        return 1
    if not p["enabled"]:
        return 5
    if s in ("charging", "ev_suspended"):
        return 3
    return 2


def keba_cable(p) -> int:
    """Cable state 1004: 0 unplugged, 1 at station, 3 locked at station, 5 at vehicle, 7 locked."""
    if not p["vehicle_connected"]:
        return 0
    return 7 if p["connector_locked"] else 5


def keba_status(raw) -> str:
    """The allocator state from 1000 (``charging_state``), 1004 (``cable_state``) and currents."""
    st, cable = raw["charging_state"], raw["cable_state"]
    plugged = cable >= 5
    if st == 4:
        return "fault"
    if st == 0:
        return "unavailable"
    if st == 1:
        return "unavailable" if plugged else "disconnected"
    if st in (2, 5):
        return "connected_idle" if plugged else "disconnected"
    if st == 3:
        return charging_or_suspended(raw)
    raise ValueError(f"unknown KEBA charging state {st}")


_DRIVER_COMMON = dict(status=keba_status, reads=(("holding", 1000), ("holding", 1004)),
                      min_current_a=6.0, max_current_a=63.0, phase_codes=((1, 0), (3, 1)))
DRIVER_P30 = ChargerSpec(pause="enable", phases=("holding", 1552, lambda v: 1 if v == 0 else 3),
                         **_DRIVER_COMMON)
DRIVER_P40 = ChargerSpec(pause="zero", phases=("holding", 1552, lambda v: 1 if v == 1 else 3),
                         **_DRIVER_COMMON)


def _r(addr: int, point: str | None, desc: str, unit: str = "", scale: float = 1.0, **kw):
    return Register(addr, "u32", point, table="holding", scale=scale, unit=unit,
                    description=desc, **kw)


def _w(addr: int, point: str | None, desc: str, scale: float = 1.0, unit: str = "", **kw):
    return Register(addr, "u16", table="holding", access="w", write_point=point, scale=scale,
                    unit=unit, description=desc, **kw)


def _regs(p40: bool) -> tuple[Register, ...]:
    r = [
        _r(1000, None, "Charging state: 0 start-up, 1 not ready, 2 ready, 3 charging, 4 error, "
           "5 suspended", fn=keba_state, name="charging_state"),
        _r(1004, None, "Cable state: 0 unplugged, 1 at station, 3 at station locked, 5 at "
           "vehicle, 7 at vehicle locked", fn=keba_cable, name="cable_state"),
        _r(1006, "error_code", "Error code"),
    ]
    for i in (1, 2, 3):
        r.append(_r(1006 + 2 * i, f"current_l{i}_a", f"Charging current L{i} (mA)", "A", 0.001))
    r += [
        _r(1014, None, "Serial number", fn=lambda p: int_or(p["serial"]) & 0xFFFFFFFF,
           name="serial"),
        _r(1016, None, "Product type code (evcc: P30 = 6 digits starting with 3, P40 = 7 "
           "digits starting with 4; digit 5 != 0: meter, digit 6 == 1: RFID)",
           const=4110111 if p40 else 311011, name="product_code"),
        _r(1018, None, "Firmware version 0xMMmmss00", name="firmware",
           fn=lambda p: version_u32(p["firmware_version"])),
        _r(1020, "power_total_w", "Active power (mW)", "W", 0.001),
        _r(1036, "total_energy_wh", "Total energy (0.1 Wh)", "Wh", 0.1),
    ]
    for i in (1, 2, 3):
        r.append(_r(1038 + 2 * i, f"voltage_l{i}_v", f"Voltage L{i} (V)", "V"))
    r += [
        _r(1100, "applied_current_a", "Max charging current now (mA)", "A", 0.001),
        _r(1110, None, "Max supported current: DIP switch, cable, temperature (mA)", "A", 0.001,
           fn=lambda p: min(p["hw_max_current_a"], p["cable_max_current_a"])
           if p["cable_max_current_a"] else p["hw_max_current_a"], name="max_supported_a"),
        _r(1500, None, "Last RFID tag (hex)", const=0, name="rfid"),
        _r(1502, "session_energy_wh", "Charged energy of the session (Wh)", "Wh"),
        _r(1550, None, "Phase switch source (3 = Modbus, evcc)", const=3, name="phase_source"),
        _r(1552, None, "Phase switch state (evcc: P30 0 = 1p; P40 1 = 1p, 3 = 3p)",
           fn=(lambda p: 1 if p["phases_in_use"] == 1 else 3) if p40
           else (lambda p: 0 if p["phases_in_use"] == 1 else 1), name="phase_state"),
        _r(1600, "safe_current_a", "Failsafe current (mA)", "A", 0.001),
        _r(1602, "watchdog_timeout_s", "Failsafe timeout (s)", "s"),
        _w(5010, None, "Session energy limit (10 Wh units; kept locally)", 10.0, "Wh", const=0,
           name="energy_limit_wh"),
        _w(5012, "unlock", "Unlock plug (write 0)", write_fn=lambda v: True, name="unlock"),
        _w(5016, "safe_current_a", "Set failsafe current (mA)", 0.001, "A",
           valid=zero_or_range(6, 63)),
        _w(5018, "watchdog_timeout_s", "Set failsafe timeout (s)", unit="s"),
        _w(5052, "phases_setting", "Phase switch: 0 = 1 phase, 1 = 3 phases (evcc)",
           valid=(0, 1), write_fn=lambda v: 3 if v else 1),
    ]
    if p40:
        r.append(Register(5004, "u16", "setpoint_a", table="holding", access="rw", scale=0.001,
                          unit="A", valid=zero_or_range(6, 63),
                          description="Charging current (mA, 6000-63000; 0 = disabled; "
                                      "readable on the P40)"))
    else:
        r.append(_w(5004, "setpoint_a", "Set charging current (mA, 6000-63000)", 0.001, "A",
                    valid=zero_or_range(6, 63)))
        r.append(_w(5014, "enabled", "Enable (1) / disable (0) station", valid=(0, 1),
                    write_fn=bool))
    return tuple(r)


KEBA_P30 = Profile(
    name="keba_p30", vendor="KEBA", model="KeContact P30 (c/x-series)", kind="charger",
    transport="tcp", port=502, units=((255, "device"),), word_order="be",
    function_codes=frozenset({3, 6, 16}), reserved="exception", single_value_reads=True,
    boundary_exception=2, atomic_writes=True,
    watchdog=Watchdog(timeout_register=1602, timeout_write_register=5018,
                      safe_current_register=1600, safe_current_write_register=5016,
                      heartbeat_register=5018, kick="write",
                      notes="evcc rewrites 5018 every timeout/2; any write restarts the timer"),
    registers=_regs(p40=False), source=SOURCE, driver=DRIVER_P30,
    notes="Modbus TCP exists in addition to the UDP interface; must be enabled (DIP/web UI).",
)

KEBA_P40 = replace(KEBA_P30, name="keba_p40", model="KeContact P40", registers=_regs(p40=True),
                   driver=DRIVER_P40)

PROFILES = (KEBA_P30, KEBA_P40)
