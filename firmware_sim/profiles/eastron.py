"""Eastron SDM630 / SDM72 / SDM120 (Modbus RTU meters), devices.md section 2.1.

Input registers (FC04) are IEEE-754 float32, big-endian word order, two registers each; holding
registers (FC03 read, FC16 write, one parameter per message) are float32 configuration values.

Quirks reproduced:

* Request limit: SDM630 "maximum of 40 values in a single transaction ... 80 registers.
  Exceeding this limit prompts an exception response"; SDM72D-M "30 parameters or less"
  (60 registers). devices.md does not name the code; we answer 03 ILLEGAL DATA VALUE (the
  Modbus rule for an illegal quantity). openWB/core PR #2890 reports some SDM units answering
  02 already above 50 registers: ``limit_exception``/``max_read`` are profile fields, derive a
  variant with ``dataclasses.replace`` to emulate such a unit.
* Unused addresses inside the map read 0 ("parameters not valid for the wiring system
  return 0"); addresses beyond the map answer 02.
* Writes: FC16 only, one float32 parameter per request; half a float or two parameters -> 03.
* Parity: default None (SDM72 manual); racksync/SDM630MCT says EVEN; ``parity`` is a field.
* System type (40011) is password-protected on the real meter; the password (40025) is kept
  as a local register here and not enforced.

Controller side (:data:`DRIVER`, see ``driver.py``): read I L1..L3 (0x0006..), P L1..L3 (0x000C..)
and V L1..L3 (0x0000..) in ONE request of 18 registers (0x0000..0x0011, within the 80 / 60
register limits; the SDM120 reads 0x0000..0x000D and reports L2 = L3 = 0). The SDM reports
current magnitudes (mbmd takes the direction from the power): the sign of each phase current is
the sign of that phase's active power. NaN, a voltage outside 0..1000 V, a current above 10 kA
or a power that V x |I| cannot explain -> ``DecodeError``.
"""
from __future__ import annotations

from dataclasses import replace

from .base import Profile, Register
from .driver import MeterSpec
from .points import int_range, one_of

DRIVER = MeterSpec(sign="power", notes="SDM currents are magnitudes; sign from per-phase power")

SOURCE = ("devices.md 2.1: volkszaehler/mbmd meters/rs485/sdm.go, sdm72v2.go, sdm120.go [IMPL]; "
          "Eastron SDM630 Modbus V2 manual pp. 25, 28 and SDM72D-M manual [VENDOR]")


def _ir(addr: int, point: str | None, desc: str, unit: str = "", **kw) -> Register:
    return Register(addr, "f32", point, table="input", unit=unit, description=desc, **kw)


def _hr(addr: int, point: str | None, desc: str, const: float, valid, **kw) -> Register:
    return Register(addr, "f32", point, table="holding", access="rw", const=const, valid=valid,
                    description=desc, **kw)


_PHASE_BLOCKS = [
    (0x0000, "voltage_l{}_v", "Phase {} line to neutral volts", "V"),
    (0x0006, "current_l{}_a", "Phase {} current", "A"),
    (0x000C, "power_l{}_w", "Phase {} power", "W"),
    (0x0012, "va_l{}", "Phase {} volt amps", "VA"),
    (0x0018, "var_l{}", "Phase {} volt amps reactive", "VAr"),
    (0x001E, "pf_l{}", "Phase {} power factor", ""),
]


def _sdm630_input(full: bool) -> list[Register]:
    regs: list[Register] = []
    for base, point, desc, unit in _PHASE_BLOCKS:
        for i in (1, 2, 3):
            regs.append(_ir(base + 2 * (i - 1), point.format(i), desc.format(i), unit))
    regs += [
        _ir(0x0034, "power_total_w", "Total system power (30053)", "W"),
        _ir(0x0038, "va_total", "Total system volt amps (30057)", "VA"),
        _ir(0x003C, "var_total", "Total system VAr (30061)", "VAr"),
        _ir(0x003E, "pf_total", "Total system power factor (30063)"),
        _ir(0x0046, "frequency_hz", "Frequency of supply voltages (30071)", "Hz"),
        _ir(0x0048, "import_kwh", "Total import kWh (30073)", "kWh"),
        _ir(0x004A, "export_kwh", "Total export kWh (30075)", "kWh"),
        _ir(0x0156, "total_kwh", "Total kWh (30343)", "kWh"),
        _ir(0x0158, None, "Total kVArh (30345); reactive energy not modelled, reads 0", "kVArh",
            const=0.0, name="total_kvarh"),
    ]
    if full:
        regs += [
            _ir(0x0054, None, "Total system power demand (30085), mbmd 'ImportPower'; "
                "approximated by the present import power", "W",
                fn=lambda p: max(p["power_total_w"], 0.0), name="import_power_demand_w"),
            _ir(0x00E0, "current_n_a", "Neutral current (30225)", "A"),
        ]
        for i in (1, 2, 3):
            regs.append(_ir(0x015A + 2 * (i - 1), f"import_l{i}_kwh", f"L{i} import kWh", "kWh"))
            regs.append(_ir(0x0160 + 2 * (i - 1), f"export_l{i}_kwh", f"L{i} export kWh", "kWh"))
        for i, addr in enumerate((0x00EA, 0x00EC, 0x00EE), 1):
            regs.append(_ir(addr, None, f"Phase {i} L/N volts THD (%); not modelled, reads 0",
                            "%", const=0.0, name=f"thd_v_l{i}"))
        regs.append(_ir(0x00F8, None, "Average line to neutral volts THD (%); not modelled",
                        "%", const=0.0, name="thd_v_avg"))
    return regs


def _holding(with_system_type: bool = True) -> list[Register]:
    regs = [
        _hr(0x0002, "demand_period_min", "Demand period (40003): 0, 5, 8, 10, 15, 20, 30 or 60 "
            "minutes, default 60", 60.0, one_of(0, 5, 8, 10, 15, 20, 30, 60), unit="min"),
        _hr(0x0012, None, "Network parity stop (40019): 0 = one stop bit no parity, 1 = one stop "
            "bit even parity, 2 = one stop bit odd parity, 3 = two stop bits no parity", 0.0,
            one_of(0, 1, 2, 3), name="parity_stop"),
        _hr(0x0014, "modbus_address", "Modbus node address (40021): 1-247, default 1", 1.0,
            int_range(1, 247)),
        _hr(0x0018, None, "Password (40025), default 1000 (kept locally, not enforced)", 1000.0,
            int_range(0, 9999), name="password"),
        _hr(0x001C, "baud_code", "Baud rate (40029): 0 = 2400, 1 = 4800, 2 = 9600 (default), "
            "3 = 19200, 4 = 38400", 2.0, one_of(0, 1, 2, 3, 4)),
    ]
    if with_system_type:
        regs.insert(1, _hr(0x000A, "system_type", "System type (40011): 3 = 3P4W, 2 = 3P3W, "
                           "1 = 1P2W; password-protected", 3.0, one_of(1, 2, 3)))
    return regs


_COMMON = dict(
    vendor="Eastron", kind="meter", transport="rtu", baud=9600, parity="N", stopbits=1,
    units=((1, "device"),), word_order="be", function_codes=frozenset({3, 4, 16}),
    limit_exception=3, reserved="zero", atomic_writes=True, partial_write_exception=3,
    one_value_per_write=True, readonly_exception=2, source=SOURCE, driver=DRIVER,
)

SDM630 = Profile(
    name="sdm630", model="SDM630 Modbus V2", max_read=80, max_write=2,
    registers=tuple(_sdm630_input(full=True) + _holding()),
    blocks=(("input", 0x0000, 0x0180), ("holding", 0x0000, 0x0020)),
    notes="3-phase DIN-rail meter; the de-facto mains/EV meter of SmartEVSE, openWB, evcc.",
    **_COMMON,
)

SDM72 = replace(
    SDM630, name="sdm72", model="SDM72D-M v2", max_read=60,
    registers=tuple(_sdm630_input(full=False) + _holding()),
    notes="SDM72 v2 subset of the SDM630 map; '30 parameters or less' = 60 registers per read.",
)

SDM120 = replace(
    SDM630, name="sdm120", model="SDM120-Modbus",
    registers=tuple(
        [_ir(0x0000, "voltage_l1_v", "Voltage", "V"),
         _ir(0x0006, "current_l1_a", "Current", "A"),
         _ir(0x000C, "power_l1_w", "Active power", "W"),
         _ir(0x0012, "va_l1", "Apparent power", "VA"),
         _ir(0x0018, "var_l1", "Reactive power", "VAr"),
         _ir(0x001E, "pf_l1", "Power factor"),
         _ir(0x0046, "frequency_hz", "Frequency", "Hz"),
         _ir(0x0048, "import_kwh", "Import active energy", "kWh"),
         _ir(0x004A, "export_kwh", "Export active energy", "kWh"),
         _ir(0x0156, "total_kwh", "Total active energy", "kWh"),
         _ir(0x0158, None, "Total reactive energy; not modelled, reads 0", "kVArh", const=0.0,
             name="total_kvarh")]
        + _holding(with_system_type=False)),
    notes="Single-phase meter: reads the model's L1 quantities. Request limit not documented "
          "for the SDM120; the SDM630's 80 registers is assumed. No system-type register.",
)

PROFILES = (SDM630, SDM72, SDM120)
