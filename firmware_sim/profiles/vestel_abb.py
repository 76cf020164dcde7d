"""Vestel EVC04 (and Hymes) and ABB Terra AC, devices.md section 2.4.

**Vestel EVC04** (Modbus TCP, unit 255, big-endian). Input registers: identity strings, cable
and charge state, phase currents (mA) and voltages (V) at *non-contiguous* U16 registers
1008/1010/1012 and 1014/1016/1018 (the odd addresses between them read 0 here), power (W),
energies, charge time. Holding: 405 phase switch, 2000 failsafe current (A), 2002 failsafe
timeout (s), 5004 charging current (A), 6000 alive register (write 1; evcc every timeout/4, at
least every 1 s, default 20 s / 4 = 5 s). Only writes of 6000 restart the timer
(``kick="register"``).

**ABB Terra AC** (TCP or RTU, unit 1, U32 big-endian, holding registers). 0x4100 set-point U32
mA (FC16, 2 registers, the whole value in one request), 0x400E read-back of the current limit,
0x4020 communication timeout (U16 s, read) / 0x4106 (write); unhealthy communication may put
the charger in an error state: any request restarts the timer (evcc polls every 30 s;
``kick="any"``). 0x4105 start/stop is dangerous (resets the authorisation): 0 = start,
1 = stop, mapped to ``enabled``. Charging state 0x400C: evcc reads byte 2 of the 4 bytes
(``b[2] & 0x7f``: 0 A, 1 B1, 2 B2, 3 C1, 4 C2, 5 other), i.e. the high byte of the second
register; devices.md's "low byte" is read as the low *register*. Write-only registers read
like unmapped ones (02).

Controller side (``driver.py``).

**Vestel** (:data:`VESTEL_DRIVER`, :func:`vestel_status`): three requests, IR 1000..1012
(chargepoint / charging / equipment / cable state, error, currents in mA), HR 5004 (set-point
read-back), HR 405 (phase switch: 0 = 1 phase, 1 = 3 phases). No applied-current register.

========================================  ==================================================
registers                                 decoded
========================================  ==================================================
1000 = 8 (faulted) or 1002 = 2 (fault)    fault
1000 = 7 (unavailable) or 1002 = 4        unavailable
1000 = 6 (reserved)                       unavailable (reserved for another user)
1000 = 0 (available)                      disconnected
1000 = 1, 3, 5 (preparing, suspended      connected_idle
EVSE, finishing)
1000 = 4 (suspended EV)                   ev_suspended
1000 = 2 (charging)                       any phase >= 1 A: charging, else ev_suspended
========================================  ==================================================

Every state is expressible. Writes: 5004 (A, integer, floored, 6..32; 0 pauses), phases 405,
failsafe 2000 (A) and 2002 (s), heartbeat 6000 = 1 every timeout/4 (evcc; 5 s by default).

**ABB Terra AC** (:data:`ABB_DRIVER`, :func:`abb_status`): ONE request 0x4008..0x4015 (error
code, socket lock, state, applied limit 0x400E, currents L1..L3 in mA). State from 0x400C
(``(value >> 8) & 0x7F``, evcc's byte 2) and the error code:

===========================  ==============================================================
registers                    decoded
===========================  ==============================================================
0x4008 error code != 0       fault
0x400C 0 (A)                 disconnected
0x400C 1, 2, 3 (B1, B2, C1)  connected_idle
0x400C 4 (C2)                any phase >= 1 A: charging, else ev_suspended
0x400C 5 (other)             fault (D, E, F and undocumented states: served 0 A)
===========================  ==============================================================

The product cannot express "unavailable" (reads "disconnected" / "connected_idle") nor an EV
stopped after charging in B2 ("connected_idle"). Writes: 0x4100 U32 mA in one FC16 request
(floored to 1 mA, 6..32 A, 0 pauses; the start/stop register 0x4105 is never used: it resets
the authorisation). Failsafe: only the communication timeout (0x4106, s); there is no safe
current register. Any request feeds the timer: polling is the heartbeat (30 s, or timeout/2).
"""
from __future__ import annotations

from .base import Profile, Register, Watchdog
from .driver import ChargerSpec, charging_or_suspended
from .points import int_or, one_of, version_u32, zero_or_range

VESTEL_SOURCE = "devices.md 2.4: evcc charger/vestel.go [IMPL]; failsafe 2000/2002 from a 3rd-party tool"
ABB_SOURCE = ("devices.md 2.4: evcc charger/abb.go [IMPL]; timeout registers from the star.ke.st "
              "page (ABB doc rev 1.7) [3RD]")


# --- Vestel -------------------------------------------------------------------------------
def vestel_cable(p) -> int:
    """IR 1004: 0 no cable, 1 cable at charger, 2 cable at vehicle, 3 locked (>= 2: plugged)."""
    if not p["vehicle_connected"]:
        return 0
    return 3 if p["connector_locked"] else 2


def vestel_chargepoint(p) -> int:
    """IR 1000 (OCPP-like): 0 available, 1 preparing, 2 charging, 3 suspended EVSE, 4 suspended
    EV, 5 finishing, 6 reserved, 7 unavailable, 8 faulted."""
    s = p["status"]
    return {"disconnected": 0, "connected_idle": 1, "charging": 2, "ev_suspended": 4,
            "fault": 8, "unavailable": 7}[s] if (s != "connected_idle" or p["enabled"]) else 3


def vestel_status(raw) -> str:
    """The allocator state from IR 1000 (``chargepoint_state``), 1002 and currents."""
    cp, eq = raw["chargepoint_state"], raw["equipment_state"]
    if cp == 8 or eq == 2:
        return "fault"
    if cp in (6, 7) or eq == 4:
        return "unavailable"
    if cp == 0:
        return "disconnected"
    if cp in (1, 3, 5):
        return "connected_idle"
    if cp == 4:
        return "ev_suspended"
    if cp == 2:
        return charging_or_suspended(raw)
    raise ValueError(f"unknown Vestel chargepoint state {cp}")


VESTEL_DRIVER = ChargerSpec(
    status=vestel_status, reads=(("input", 1000), ("input", 1002)),
    phases=("holding", 405, lambda v: 1 if v == 0 else 3), phase_codes=((1, 0), (3, 1)),
    min_current_a=6.0, max_current_a=32.0, pause="zero", heartbeat_fraction=0.25)


def _vi(addr, dtype, point, desc, scale=1.0, unit="", **kw):
    return Register(addr, dtype, point, table="input", scale=scale, unit=unit, description=desc, **kw)


def _vh(addr, point, desc, **kw):
    return Register(addr, "u16", point, table="holding", access="rw", description=desc, **kw)


VESTEL_EVC04 = Profile(
    name="vestel_evc04", vendor="Vestel", model="EVC04 (Ethernet 'SW' models; also Hymes)",
    kind="charger", transport="tcp", port=502, units=((255, "device"),), word_order="be",
    function_codes=frozenset({3, 4, 6, 16}), reserved="zero", atomic_writes=True,
    blocks=(("input", 100, 280), ("input", 404, 405), ("input", 1000, 1038),
            ("input", 1502, 1531), ("holding", 405, 406), ("holding", 2000, 2003),
            ("holding", 5004, 5005), ("holding", 6000, 6001)),
    watchdog=Watchdog(timeout_register=2002, timeout_write_register=2002,
                      safe_current_register=2000, safe_current_write_register=2000,
                      heartbeat_register=6000, kick="register", default_timeout_s=20.0,
                      heartbeat_s=5.0,
                      notes="write 1 to 6000 every timeout/4 (evcc), at least every second"),
    registers=(
        _vi(100, "str", None, "Serial number", count=25, fn=lambda p: p["serial"], name="serial"),
        _vi(190, "str", None, "Brand", count=10, const="Vestel", name="brand"),
        _vi(210, "str", None, "Model", count=5, fn=lambda p: p["model_name"], name="model"),
        _vi(230, "str", None, "Firmware version", count=50, fn=lambda p: p["firmware_version"],
            name="firmware"),
        _vi(404, "u16", None, "Number of phases (1 = 3-phase capable, phase switching)", const=1,
            name="number_of_phases"),
        _vi(1000, "u16", None, "Chargepoint state (0 available ... 8 faulted)",
            fn=vestel_chargepoint, name="chargepoint_state"),
        _vi(1001, "u16", None, "Charging state (1 = charging)",
            fn=lambda p: 1 if p["status"] == "charging" else 0, name="charging_state"),
        _vi(1002, "u16", None, "Equipment state (0 initialising, 1 running, 2 fault, 4 "
            "unavailable)", name="equipment_state",
            fn=lambda p: {"fault": 2, "unavailable": 4}.get(p["status"], 1)),
        _vi(1004, "u16", None, "Cable state (>= 2: plugged to the vehicle)", fn=vestel_cable,
            name="cable_state"),
        _vi(1006, "u16", "error_code", "Fault code"),
        _vi(1008, "u16", "current_l1_a", "Current L1 (mA)", 0.001, "A"),
        _vi(1010, "u16", "current_l2_a", "Current L2 (mA)", 0.001, "A"),
        _vi(1012, "u16", "current_l3_a", "Current L3 (mA)", 0.001, "A"),
        _vi(1014, "u16", "voltage_l1_v", "Voltage L1 (V)", unit="V"),
        _vi(1016, "u16", "voltage_l2_v", "Voltage L2 (V)", unit="V"),
        _vi(1018, "u16", "voltage_l3_v", "Voltage L3 (V)", unit="V"),
        _vi(1020, "u32", "power_total_w", "Active power (W)", unit="W"),
        _vi(1036, "u32", "total_energy_wh", "Meter reading (0.1 kWh)", 100.0, "Wh"),
        _vi(1502, "u32", "session_energy_wh", "Session energy (Wh)", unit="Wh"),
        _vi(1508, "u32", "session_duration_s", "Session duration (s)", unit="s"),
        _vi(1516, "str", None, "RFID UID of the session", count=15, const="", name="rfid"),
        _vh(405, "phases_setting", "Phase switch: 0 = 1 phase, 1 = 3 phases", valid=(0, 1),
            fn=lambda p: 0 if p["phases_setting"] == 1 else 1, write_fn=lambda v: 3 if v else 1),
        _vh(2000, "safe_current_a", "Failsafe current (A)", unit="A", valid=zero_or_range(6, 32)),
        _vh(2002, "watchdog_timeout_s", "Failsafe timeout (s)", unit="s"),
        _vh(5004, "setpoint_a", "Charging current (A; 0 pauses)", unit="A",
            valid=zero_or_range(6, 32)),
        _vh(6000, None, "Alive register: write 1", const=0, valid=one_of(0, 1), heartbeat=True,
            name="alive"),
    ),
    source=VESTEL_SOURCE, driver=VESTEL_DRIVER,
)


# --- ABB ----------------------------------------------------------------------------------
ABB_STATE = {"A": 0, "B1": 1, "B2": 2, "C1": 3, "C2": 4}


def abb_state(p) -> int:
    return (ABB_STATE.get(p["cp_state"], 5) & 0x7F) << 8


def abb_lock(p) -> int:
    """0x400A socket lock state (evcc: >= 0x0101 means a cable is plugged into the vehicle)."""
    v = 0
    if p["vehicle_connected"]:
        v |= 0x0101
    if p["connector_locked"]:
        v |= 0x0010
    return v


def abb_status(raw) -> str:
    """The allocator state from 0x400C (``charging_state``), 0x4008 (error) and currents."""
    if raw["error_code"]:
        return "fault"
    code = (raw["charging_state"] >> 8) & 0x7F
    if code == 0:
        return "disconnected"
    if code in (1, 2, 3):
        return "connected_idle"
    if code == 4:
        return charging_or_suspended(raw)
    return "fault"


ABB_DRIVER = ChargerSpec(status=abb_status, reads=(("holding", 0x400C), ("holding", 0x4008)),
                         min_current_a=6.0, max_current_a=32.0, pause="zero")


def _ah(addr, dtype, point, desc, scale=1.0, unit="", **kw):
    return Register(addr, dtype, point, table="holding", scale=scale, unit=unit, description=desc, **kw)


ABB_TERRA_AC = Profile(
    name="abb_terra_ac", vendor="ABB", model="Terra AC wallbox (TACW)", kind="charger",
    transport="tcp", port=502, baud=9600, parity="E", units=((1, "device"),), word_order="be",
    function_codes=frozenset({3, 6, 16}), reserved="exception", atomic_writes=True,
    blocks=(("holding", 0x4000, 0x4021), ("holding", 0x4100, 0x4107)),
    watchdog=Watchdog(timeout_register=0x4020, timeout_write_register=0x4106, kick="any",
                      heartbeat_s=30.0,
                      notes="comm timeout (s); set it long (>= 20 min, GrugBus) and poll; ABB "
                            "recommends polling every 30-90 s; no separate safe-current register"),
    registers=(
        _ah(0x4000, "u64", None, "Serial number", fn=lambda p: int_or(p["serial"]) & (2**64 - 1),
            name="serial"),
        _ah(0x4004, "u32", None, "Firmware version (bytes major.minor.patch)",
            fn=lambda p: version_u32(p["firmware_version"]), name="firmware"),
        _ah(0x4006, "u32", "hw_max_current_a", "Max rated current (mA)", 0.001, "A"),
        _ah(0x4008, "u32", "error_code", "Error code"),
        _ah(0x400A, "u32", None, "Socket lock state", fn=abb_lock, name="socket_lock_state"),
        _ah(0x400C, "u32", None, "Charging state (byte 2 & 0x7F: 0 A, 1 B1, 2 B2, 3 C1, 4 C2, "
            "5 other)", fn=abb_state, name="charging_state"),
        _ah(0x400E, "u32", "applied_current_a", "Current charging current limit (mA)", 0.001, "A"),
        _ah(0x4010, "u32", "current_l1_a", "Charging current L1 (mA)", 0.001, "A"),
        _ah(0x4012, "u32", "current_l2_a", "Charging current L2 (mA)", 0.001, "A"),
        _ah(0x4014, "u32", "current_l3_a", "Charging current L3 (mA)", 0.001, "A"),
        _ah(0x4016, "u32", "voltage_l1_v", "Voltage L1 (0.1 V)", 0.1, "V"),
        _ah(0x4018, "u32", "voltage_l2_v", "Voltage L2 (0.1 V)", 0.1, "V"),
        _ah(0x401A, "u32", "voltage_l3_v", "Voltage L3 (0.1 V)", 0.1, "V"),
        _ah(0x401C, "u32", "power_total_w", "Active power (W)", unit="W"),
        _ah(0x401E, "u32", "session_energy_wh", "Energy delivered in the session (Wh)", unit="Wh"),
        _ah(0x4020, "u16", "watchdog_timeout_s", "Communication timeout (s)", unit="s"),
        _ah(0x4100, "u32", None, "Set charging current limit (mA; FC16, 2 registers)", 0.001, "A",
            access="w", write_point="setpoint_a", valid=zero_or_range(6, 32), name="set_current"),
        _ah(0x4103, "u16", None, "Unlock socket (W; 0 unlock; mapped to the unlock command)",
            access="w", write_point="unlock", write_fn=lambda v: True, valid=(0, 1),
            name="socket_unlock"),
        _ah(0x4105, "u16", None, "Start/stop charging session: 0 start, 1 stop (dangerous: "
            "resets the authorisation)", access="w", write_point="enabled",
            write_fn=lambda v: v == 0, valid=(0, 1), name="start_stop"),
        _ah(0x4106, "u16", None, "Set communication timeout (s)", access="w",
            write_point="watchdog_timeout_s", unit="s", name="set_comm_timeout"),
    ),
    source=ABB_SOURCE, driver=ABB_DRIVER,
    notes="Over RTU the same map is served (9600 8E1 assumed).",
)

PROFILES = (VESTEL_EVC04, ABB_TERRA_AC)
