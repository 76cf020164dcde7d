"""Register maps of real products, bound to the device models through the point vocabulary.

One table-driven engine serves every product: a :class:`Profile` is data (registers, word order,
unit ids, quirks), :class:`DeviceImage` answers Modbus PDU requests for it over live models, and
:mod:`.codec` is the only place that turns values into register words. Adding a product is adding
a profile module; models and transports do not change.

    >>> from dlbrig.firmware_sim.profiles import get_profile, DeviceImage
    >>> image = DeviceImage(get_profile("sdm630"), {1: meter})
    >>> image.read(1, "input", 0x0006, 6, now_ms)       # I L1..L3 as float32 words
"""
from __future__ import annotations

from . import alfen, carlo_gavazzi, eastron, generic, heidelberg, keba, phoenix, vestel_abb
from .base import READ_FC, TABLES, WRITE_FC, Profile, Register, Watchdog
from .codec import BE, LSW, CodecError, decode, encode, size_of
from .image import (DEVICE_FAILURE, ILLEGAL_DATA_ADDRESS, ILLEGAL_DATA_VALUE, ILLEGAL_FUNCTION,
                    DeviceImage, ModbusError, NoSuchUnit)
from .points import CHARGER_READ, CHARGER_WRITE, METER_READ, METER_WRITE, VOCABULARY

__all__ = [
    "Profile", "Register", "Watchdog", "DeviceImage", "ModbusError", "NoSuchUnit",
    "encode", "decode", "size_of", "CodecError", "BE", "LSW",
    "get_profile", "list_profiles", "register_profile", "PROFILES",
    "ILLEGAL_FUNCTION", "ILLEGAL_DATA_ADDRESS", "ILLEGAL_DATA_VALUE", "DEVICE_FAILURE",
    "TABLES", "READ_FC", "WRITE_FC",
    "METER_READ", "METER_WRITE", "CHARGER_READ", "CHARGER_WRITE", "VOCABULARY",
]

PROFILES: dict[str, Profile] = {}
_ALIASES = {
    "eastron_sdm630": "sdm630", "sdm72d": "sdm72", "sdm72v2": "sdm72", "em330": "em340",
    "alfen": "alfen_ng9xx", "alfen_eve": "alfen_ng9xx", "charx": "charx_sec",
    "phoenix_charx": "charx_sec", "keba": "keba_p30", "heidelberg": "heidelberg_ec",
    "vestel": "vestel_evc04", "abb": "abb_terra_ac", "generic": "dlbrig_generic",
}


def register_profile(profile: Profile) -> Profile:
    """Add a profile to the registry (names are unique, case-insensitive)."""
    key = profile.name.lower()
    if key in PROFILES and PROFILES[key] is not profile:
        raise ValueError(f"profile {profile.name!r} already registered")
    PROFILES[key] = profile
    return profile


def get_profile(name: str) -> Profile:
    key = name.lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    try:
        return PROFILES[key]
    except KeyError:
        raise KeyError(f"unknown profile {name!r}; known: {', '.join(list_profiles())}") from None


def list_profiles(kind: str | None = None) -> list[str]:
    return sorted(n for n, p in PROFILES.items() if kind is None or p.kind == kind)


for _mod in (eastron, carlo_gavazzi, alfen, phoenix, keba, heidelberg, vestel_abb, generic):
    for _p in _mod.PROFILES:
        register_profile(_p)
del _mod, _p
