"""Carlo Gavazzi EM24 and EM330/EM340 meters, devices.md section 2.2.

32-bit values are INT32 with the *low word first* (mbmd ``RTUInt32ToFloat64Swapped``); power
factor and frequency are INT16. Values are scaled integers: V / 10, A / 1000, W / 10, kWh / 10,
PF / 1000, Hz / 10. Input registers (FC04). Signed power: export reads negative.

Not stated in devices.md and chosen here (documented, adjustable per profile field): RTU at
9600 8N1, unit 1; unused addresses inside the map read 0, beyond it 02; 125 registers per read.

Controller side (:data:`DRIVER`, see ``driver.py``): V, I and P L1..L3 (0x00..0x17) in ONE
request of 24 registers. The INT32 currents may be signed or magnitudes depending on the model
and firmware (mbmd decodes them as signed, the rig's meter model can report |I|): the sign is
always taken from the per-phase active power, which is right in both cases. NaN is impossible
in INT32; garbage is caught by the plausibility checks (voltage range, |P| <= V x |I|).
"""
from __future__ import annotations

from .base import Profile, Register
from .driver import MeterSpec

DRIVER = MeterSpec(sign="power", notes="INT32 currents: sign taken from per-phase power")

SOURCE = "devices.md 2.2: mbmd carlogavazzi-em24.go and carlogavazzi-ex3x0.go [IMPL]"


def _i32(addr: int, point: str, scale: float, desc: str, unit: str) -> Register:
    return Register(addr, "i32", point, table="input", scale=scale, unit=unit, description=desc)


def _i16(addr: int, point: str, scale: float, desc: str, unit: str = "") -> Register:
    return Register(addr, "i16", point, table="input", scale=scale, unit=unit, description=desc)


def _map(pf: int, freq: int, kwh: int, kwh_ph: tuple[int, int, int], kwh_exp: int) -> tuple:
    regs = []
    for i in (1, 2, 3):
        regs.append(_i32(0x00 + 2 * (i - 1), f"voltage_l{i}_v", 0.1, f"V L{i}-N (INT32, 0.1 V)", "V"))
        regs.append(_i32(0x0C + 2 * (i - 1), f"current_l{i}_a", 0.001, f"A L{i} (INT32, mA)", "A"))
        regs.append(_i32(0x12 + 2 * (i - 1), f"power_l{i}_w", 0.1, f"W L{i} (INT32, 0.1 W)", "W"))
    regs.append(_i32(0x28, "power_total_w", 0.1, "W sys (INT32, 0.1 W)", "W"))
    for i, point in enumerate(("pf_l1", "pf_l2", "pf_l3", "pf_total")):
        name = f"L{i + 1}" if i < 3 else "sys"
        regs.append(_i16(pf + i, point, 0.001, f"PF {name} (INT16, 0.001)"))
    regs.append(_i16(freq, "frequency_hz", 0.1, "Hz (INT16, 0.1 Hz)", "Hz"))
    regs.append(_i32(kwh, "import_kwh", 0.1, "kWh (+) TOT (INT32, 0.1 kWh)", "kWh"))
    for i, a in enumerate(kwh_ph, 1):
        regs.append(_i32(a, f"import_l{i}_kwh", 0.1, f"kWh (+) L{i} (INT32, 0.1 kWh)", "kWh"))
    regs.append(_i32(kwh_exp, "export_kwh", 0.1, "kWh (-) TOT (INT32, 0.1 kWh)", "kWh"))
    return tuple(regs)


_COMMON = dict(
    vendor="Carlo Gavazzi", kind="meter", transport="rtu", baud=9600, parity="N",
    units=((1, "device"),), word_order="lsw", function_codes=frozenset({3, 4, 6, 16}),
    reserved="zero", source=SOURCE, driver=DRIVER,
)

EM24 = Profile(
    name="em24", model="EM24", registers=_map(0x32, 0x37, 0x42, (0x46, 0x48, 0x4A), 0x5C),
    notes="Word order differs from the SDM's: exercises the rig's word-order handling.",
    **_COMMON,
)

EM340 = Profile(
    name="em340", model="EM330/EM340", registers=_map(0x2E, 0x33, 0x34, (0x40, 0x42, 0x44), 0x4E),
    **_COMMON,
)

PROFILES = (EM24, EM340)
