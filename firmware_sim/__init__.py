"""dlbrig.firmware_sim: device models, pure and time-injected (no sockets, no sleep, no threads).

``evse`` (IEC 61851-1 charger firmware + :class:`ChargePoint` composite), ``ev`` (vehicle),
``meter`` (measuring instrument over ground truth), ``loads`` (building base loads, PV, steps).
Register maps of real products live in ``profiles/`` and bind to these models only through the
point vocabulary (``points()`` / ``write_point()``; see METER_POINTS, CHARGER_POINTS_READ,
CHARGER_POINTS_WRITE).
"""
from .ev import EV, EV_PRESETS, EvFaults, current_from_duty
from .evse import (CHARGER_POINTS_READ, CHARGER_POINTS_WRITE, ChargePoint, ErrorCode, Evse,
                   EvseConfig, FirmwareFaults, duty_from_current)
from .loads import PV, BuildingLoad, SiteLoad, StepEvent
from .meter import METER_CONFIG_POINTS, METER_POINTS, Meter

__all__ = [
    "EV", "EV_PRESETS", "EvFaults", "current_from_duty",
    "CHARGER_POINTS_READ", "CHARGER_POINTS_WRITE", "ChargePoint", "ErrorCode", "Evse", "EvseConfig",
    "FirmwareFaults", "duty_from_current",
    "PV", "BuildingLoad", "SiteLoad", "StepEvent",
    "METER_CONFIG_POINTS", "METER_POINTS", "Meter",
]
