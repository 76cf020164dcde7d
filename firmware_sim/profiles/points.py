"""The point vocabulary that binds profiles to device models, and small shared converters.

Models (``firmware_sim.meter``, ``firmware_sim.evse``) expose ``points() -> Mapping[str, Any]``
and accept ``write_point(name, value, now_ms)``; profiles only ever use the names below.
Units are SI-ish and fixed: V, A, W, VA, var, Hz, kWh for meters; A, V, W, Wh, s for chargers.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

METER_READ = frozenset("""
voltage_l1_v voltage_l2_v voltage_l3_v current_l1_a current_l2_a current_l3_a current_n_a
power_l1_w power_l2_w power_l3_w power_total_w va_l1 va_l2 va_l3 va_total var_l1 var_l2 var_l3
var_total pf_l1 pf_l2 pf_l3 pf_total frequency_hz import_kwh export_kwh import_l1_kwh
import_l2_kwh import_l3_kwh export_l1_kwh export_l2_kwh export_l3_kwh total_kwh
""".split())
METER_WRITE = frozenset("demand_period_min modbus_address baud_code system_type".split())

CHARGER_READ = frozenset("""
cp_state status error_code current_l1_a current_l2_a current_l3_a voltage_l1_v voltage_l2_v
voltage_l3_v power_total_w session_energy_wh total_energy_wh session_duration_s pwm_duty_pct
applied_current_a setpoint_a setpoint_valid_s hw_max_current_a cable_max_current_a
safe_current_a watchdog_timeout_s watchdog_remaining_s in_failsafe phases_in_use phases_setting
enabled connector_locked contactor_closed vehicle_connected serial firmware_version model_name
""".split())
CHARGER_WRITE = frozenset("""
setpoint_a setpoint_validity_s safe_current_a watchdog_timeout_s enabled phases_setting
heartbeat unlock
""".split())

CP_STATES = ("A", "B1", "B2", "C1", "C2", "D1", "D2", "E", "F")
STATUSES = ("disconnected", "connected_idle", "charging", "ev_suspended", "fault", "unavailable")

VOCABULARY = {
    "meter": (METER_READ, METER_WRITE),
    "charger": (CHARGER_READ, CHARGER_WRITE),
}


def phases(p: Mapping[str, Any], prefix: str = "current", suffix: str = "a") -> tuple:
    return tuple(p[f"{prefix}_l{i}_{suffix}"] for i in (1, 2, 3))


def neutral_current(i1: float, i2: float, i3: float) -> float:
    """|I1 + I2 + I3| for a symmetric 120-degree system at equal power factors."""
    return math.sqrt(max(0.0, i1 * i1 + i2 * i2 + i3 * i3 - i1 * i2 - i2 * i3 - i3 * i1))


def line_voltage(va: float, vb: float) -> float:
    """|Va - Vb| for phasors 120 degrees apart."""
    return math.sqrt(max(0.0, va * va + vb * vb + va * vb))


def int_or(value: Any, default: int = 0) -> int:
    """An integer serial number from a string (digits only), else ``default``."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    s = "".join(ch for ch in str(value) if ch.isdigit())
    return int(s) if s else default


def version_u32(version: Any) -> int:
    """"1.2.3" -> 0x01020300 (0xMMmmss00, KEBA/ABB style)."""
    parts = [int_or(x) & 0xFF for x in str(version).lstrip("vV").split(".")[:3]]
    parts += [0] * (3 - len(parts))
    return (parts[0] << 24) | (parts[1] << 16) | (parts[2] << 8)


def one_of(*allowed: float):
    """A ``valid`` rule: the decoded value is one of ``allowed``."""
    s = frozenset(allowed)
    return lambda v: v in s


def zero_or_range(lo: float, hi: float):
    """A ``valid`` rule: 0 (pause) or within [lo, hi]; NaN is never valid."""
    return lambda v: v == 0 or (lo <= v <= hi)


def finite_range(lo: float, hi: float):
    return lambda v: isinstance(v, (int, float)) and math.isfinite(v) and lo <= v <= hi


def int_range(lo: int, hi: int):
    """A ``valid`` rule: an integral value within [lo, hi] (float32 configuration values)."""
    return lambda v: isinstance(v, (int, float)) and math.isfinite(v) and v == int(v) and lo <= v <= hi
