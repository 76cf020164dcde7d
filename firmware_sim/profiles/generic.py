"""``dlbrig_generic``: the reference charger map dlbrig proposes to vendors.

Modbus TCP (port 502) or RTU, unit 1, big-endian (high word first), integers only (mA, mV, ms,
Wh), FC01/02/03/04/05/06/15/16, up to 125 registers per read and 123 per write. Unused addresses
inside a block read 0, outside any block 02. 32-bit values must be written whole (partial -> 03);
out-of-range values -> 03; writes to read-only registers -> 02. **Any accepted write restarts
the communication watchdog**; when it expires the charger applies the safe current.

Input registers (FC04):

====  ====  =====  =============================  =====================================
addr  regs  type   value                          notes
====  ====  =====  =============================  =====================================
0     1     U16    map version                    1
1     1     U16    IEC 61851 CP state             0 A, 1 B1, 2 B2, 3 C1, 4 C2, 5 D1, 6 D2, 7 E, 8 F
2     1     U16    status                         0 disconnected, 1 connected idle, 2 charging,
                                                  3 EV suspended, 4 fault, 5 unavailable
3     1     U16    error code                     0 = none
4     1     U16    phases in use                  1 or 3
5     1     U16    PWM duty                       0.1 %
6     2     U32    current L1                     mA
8     2     U32    current L2                     mA
10    2     U32    current L3                     mA
12    2     U32    voltage L1                     mV
14    2     U32    voltage L2                     mV
16    2     U32    voltage L3                     mV
18    2     I32    active power                   W
20    2     U32    session energy                 Wh
22    4     U64    total energy                   Wh
26    2     U32    session duration               s
28    2     U32    applied current limit          mA (what the PWM offers now)
30    2     U32    set-point remaining validity   s
32    2     U32    watchdog remaining             ms
34    2     U32    hardware max current           mA
36    2     U32    cable max current              mA
38    1     U16    in failsafe                    0/1
39    1     U16    enabled                        0/1
40    1     U16    vehicle connected              0/1
41    1     U16    contactor closed               0/1
42    1     U16    connector locked               0/1
100   16    ASCII  model name                     NUL padded
116   16    ASCII  serial number
132   8     ASCII  firmware version
====  ====  =====  =============================  =====================================

Holding registers (FC03 / FC06 / FC16):

====  ====  =====  =============================  =====================================
addr  regs  type   value                          notes
====  ====  =====  =============================  =====================================
0     2     U32    current set-point (R/W)        mA; 0 = pause, else 6000..80000
2     2     U32    set-point validity (R/W)       s; 0 = until the watchdog expires
4     2     U32    safe (failsafe) current (R/W)  mA; 0 or 6000..80000
6     2     U32    watchdog timeout (R/W)         ms; 0 = off
8     1     U16    enabled (R/W)                  0/1
9     1     U16    phases setting (R/W)           1 or 3
10    1     U16    heartbeat (W)                  any value
11    1     U16    unlock connector (W)           any value
====  ====  =====  =============================  =====================================

Coils (FC01/05/15): 0 enabled (R/W). Discrete inputs (FC02): 0 vehicle connected,
1 contactor closed, 2 in failsafe, 3 connector locked.
"""
from __future__ import annotations

from .base import Profile, Register, Watchdog
from .driver import ChargerSpec
from .points import CP_STATES, STATUSES, one_of, zero_or_range

CP_CODE = {s: i for i, s in enumerate(CP_STATES)}
STATUS_CODE = {s: i for i, s in enumerate(STATUSES)}


def generic_status(raw) -> str:
    """The allocator state: IR 2 (``status_code``) is an index into :data:`STATUSES`."""
    code = raw["status_code"]
    if not 0 <= code < len(STATUSES):
        raise ValueError(f"unknown status code {code}")
    return STATUSES[code]


DRIVER = ChargerSpec(status=generic_status, reads=(("input", 1), ("input", 2)),
                     min_current_a=6.0, max_current_a=80.0, pause="zero")


def _i(addr, dtype, point, desc, scale=1.0, unit="", **kw):
    return Register(addr, dtype, point, table="input", scale=scale, unit=unit, description=desc, **kw)


def _h(addr, dtype, point, desc, scale=1.0, unit="", access="rw", **kw):
    return Register(addr, dtype, point, table="holding", scale=scale, unit=unit, access=access,
                    description=desc, **kw)


_REGS = [
    _i(0, "u16", None, "Map version", const=1, name="map_version"),
    _i(1, "u16", None, "IEC 61851 CP state code", fn=lambda p: CP_CODE[p["cp_state"]],
       name="cp_state_code"),
    _i(2, "u16", None, "Status code", fn=lambda p: STATUS_CODE[p["status"]], name="status_code"),
    _i(3, "u16", "error_code", "Error code"),
    _i(4, "u16", "phases_in_use", "Phases in use"),
    _i(5, "u16", "pwm_duty_pct", "PWM duty (0.1 %)", 0.1, "%"),
]
for _k in (1, 2, 3):
    _REGS.append(_i(4 + 2 * _k, "u32", f"current_l{_k}_a", f"Current L{_k} (mA)", 0.001, "A"))
for _k in (1, 2, 3):
    _REGS.append(_i(10 + 2 * _k, "u32", f"voltage_l{_k}_v", f"Voltage L{_k} (mV)", 0.001, "V"))
_REGS += [
    _i(18, "i32", "power_total_w", "Active power (W)", unit="W"),
    _i(20, "u32", "session_energy_wh", "Session energy (Wh)", unit="Wh"),
    _i(22, "u64", "total_energy_wh", "Total energy (Wh)", unit="Wh"),
    _i(26, "u32", "session_duration_s", "Session duration (s)", unit="s"),
    _i(28, "u32", "applied_current_a", "Applied current limit (mA)", 0.001, "A"),
    _i(30, "u32", "setpoint_valid_s", "Set-point remaining validity (s)", unit="s"),
    _i(32, "u32", "watchdog_remaining_s", "Watchdog remaining (ms)", 0.001, "s"),
    _i(34, "u32", "hw_max_current_a", "Hardware max current (mA)", 0.001, "A"),
    _i(36, "u32", "cable_max_current_a", "Cable max current (mA)", 0.001, "A"),
    _i(38, "u16", "in_failsafe", "In failsafe (0/1)"),
    _i(39, "u16", "enabled", "Enabled (0/1)"),
    _i(40, "u16", "vehicle_connected", "Vehicle connected (0/1)"),
    _i(41, "u16", "contactor_closed", "Contactor closed (0/1)"),
    _i(42, "u16", "connector_locked", "Connector locked (0/1)"),
    _i(100, "str", "model_name", "Model name", count=16),
    _i(116, "str", "serial", "Serial number", count=16),
    _i(132, "str", "firmware_version", "Firmware version", count=8),
    _h(0, "u32", "setpoint_a", "Current set-point (mA; 0 = pause)", 0.001, "A",
       valid=zero_or_range(6, 80)),
    _h(2, "u32", None, "Set-point validity (s)", unit="s", write_point="setpoint_validity_s",
       const=0, name="setpoint_validity_s"),
    _h(4, "u32", "safe_current_a", "Safe current (mA)", 0.001, "A", valid=zero_or_range(6, 80)),
    _h(6, "u32", "watchdog_timeout_s", "Watchdog timeout (ms; 0 = off)", 0.001, "s"),
    _h(8, "u16", "enabled", "Enabled (0/1)", valid=(0, 1), write_fn=bool),
    _h(9, "u16", "phases_setting", "Phases setting (1 or 3)", valid=one_of(1, 3)),
    _h(10, "u16", None, "Heartbeat (write any value)", access="w", write_point="heartbeat",
       write_fn=lambda v: True, name="heartbeat"),
    _h(11, "u16", None, "Unlock connector (write any value)", access="w", write_point="unlock",
       write_fn=lambda v: True, name="unlock"),
    Register(0, "bool", "enabled", table="coil", access="rw", description="Enabled"),
    Register(0, "bool", "vehicle_connected", table="discrete", description="Vehicle connected"),
    Register(1, "bool", "contactor_closed", table="discrete", description="Contactor closed"),
    Register(2, "bool", "in_failsafe", table="discrete", description="In failsafe"),
    Register(3, "bool", "connector_locked", table="discrete", description="Connector locked"),
]

DLBRIG_GENERIC = Profile(
    name="dlbrig_generic", vendor="dlbrig", model="generic reference charger map v1",
    kind="charger", transport="tcp", port=502, baud=19200, parity="E",
    units=((1, "device"),), word_order="be",
    function_codes=frozenset({1, 2, 3, 4, 5, 6, 15, 16}), reserved="zero", atomic_writes=True,
    blocks=(("input", 0, 43), ("input", 100, 140), ("holding", 0, 12),
            ("coil", 0, 1), ("discrete", 0, 4)),
    watchdog=Watchdog(timeout_register=6, timeout_unit="ms", timeout_write_register=6,
                      safe_current_register=4, safe_current_write_register=4,
                      remaining_register=32, heartbeat_register=10, kick="write",
                      notes="any accepted write restarts the watchdog; rewrite the set-point or "
                            "the heartbeat at least every timeout/2"),
    registers=tuple(_REGS),
    source="dlbrig reference map (this module's docstring)", driver=DRIVER,
)

PROFILES = (DLBRIG_GENERIC,)
