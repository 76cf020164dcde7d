"""Golden tests per profile (values from devices.md) and the products' quirks."""
import math
import struct

import pytest

from dlbrig.firmware_sim.profiles import (DeviceImage, ModbusError, NoSuchUnit, Profile,
                                          Register, get_profile, list_profiles)
from dlbrig.firmware_sim.profiles.codec import LSW, decode, encode

METER = dict(
    voltage_l1_v=230.1, voltage_l2_v=231.2, voltage_l3_v=229.3,
    current_l1_a=10.0, current_l2_a=12.5, current_l3_a=8.25, current_n_a=3.5,
    power_l1_w=2301.0, power_l2_w=2890.0, power_l3_w=1891.7, power_total_w=7082.7,
    va_l1=2400.0, va_l2=2950.0, va_l3=1900.0, va_total=7250.0,
    var_l1=100.0, var_l2=-50.0, var_l3=0.0, var_total=50.0,
    pf_l1=0.95, pf_l2=0.98, pf_l3=-0.5, pf_total=0.97, frequency_hz=50.02,
    import_kwh=12345.6, export_kwh=78.9, import_l1_kwh=4000.1, import_l2_kwh=4000.2,
    import_l3_kwh=4345.3, export_l1_kwh=20.0, export_l2_kwh=30.0, export_l3_kwh=28.9,
    total_kwh=12424.5,
)
CHARGER = dict(
    cp_state="C2", status="charging", error_code=0,
    current_l1_a=16.0, current_l2_a=15.5, current_l3_a=15.75,
    voltage_l1_v=230.0, voltage_l2_v=231.0, voltage_l3_v=229.0, power_total_w=10960.0,
    session_energy_wh=5432.0, total_energy_wh=1234567.0, session_duration_s=1800,
    pwm_duty_pct=26.7, applied_current_a=16.0, setpoint_a=16.0, setpoint_valid_s=42.0,
    hw_max_current_a=32.0, cable_max_current_a=20.0, safe_current_a=6.0,
    watchdog_timeout_s=15.0, watchdog_remaining_s=7.5, in_failsafe=False, phases_in_use=3,
    phases_setting=3, enabled=True, connector_locked=True, contactor_closed=True,
    vehicle_connected=True, serial="12345678", firmware_version="1.2.3", model_name="EVSE-X",
)


class Fake:
    """A dict-backed device implementing the point vocabulary."""

    def __init__(self, kind="charger", **over):
        self.pts = dict(METER if kind == "meter" else CHARGER)
        self.pts.update(over)
        self.writes = []

    def points(self):
        return self.pts

    def write_point(self, name, value, now_ms):
        self.writes.append((name, value, now_ms))
        if name not in ("heartbeat", "unlock"):
            self.pts[name] = value

    def written(self, name):
        return [v for n, v, _ in self.writes if n == name]


def f32(x):
    b = struct.pack(">f", x)
    return [(b[0] << 8) | b[1], (b[2] << 8) | b[3]]


def code(exc_info):
    return exc_info.value.code


# --- registry ------------------------------------------------------------------------------
def test_registry():
    names = list_profiles()
    for n in ("sdm630", "sdm72", "sdm120", "em24", "em340", "alfen_ng9xx", "charx_sec",
              "keba_p30", "keba_p40", "heidelberg_ec", "vestel_evc04", "abb_terra_ac",
              "dlbrig_generic"):
        assert n in names
        p = get_profile(n)
        assert isinstance(p, Profile) and p.source and p.registers
    assert get_profile("Alfen") is get_profile("alfen_ng9xx")
    assert set(list_profiles("meter")) == {"sdm630", "sdm72", "sdm120", "em24", "em340"}
    with pytest.raises(KeyError):
        get_profile("nope")


def test_overlapping_registers_rejected():
    with pytest.raises(ValueError):
        Profile(name="x", vendor="v", model="m", kind="meter", transport="tcp",
                registers=(Register(0, "u32", "a"), Register(1, "u16", "b")))


def test_generic_docstring_table_matches_map():
    import dlbrig.firmware_sim.profiles.generic as g
    doc = g.__doc__
    for r in g.DLBRIG_GENERIC.registers:
        if r.table in ("input", "holding"):
            assert f"\n{r.address:<6}{r.count:<6}" in doc or f"\n{r.address} " in doc, r


# --- Eastron -------------------------------------------------------------------------------
@pytest.fixture
def sdm():
    m = Fake("meter")
    return DeviceImage(get_profile("sdm630"), {1: m}), m


def test_sdm630_golden_input(sdm):
    img, m = sdm
    assert img.read(1, "input", 0x0008, 2) == f32(12.5)
    assert img.read(1, "input", 0x0000, 6) == f32(230.1) + f32(231.2) + f32(229.3)
    assert img.read(1, "input", 0x0034, 2) == f32(7082.7)
    assert img.read(1, "input", 0x0046, 2) == f32(50.02)
    assert img.read(1, "input", 0x0048, 4) == f32(12345.6) + f32(78.9)
    assert img.read(1, "input", 0x0156, 2) == f32(12424.5)
    assert img.read(1, "input", 0x015C, 2) == f32(4000.2)
    assert img.read(1, "input", 0x0162, 2) == f32(30.0)
    assert img.read(1, "input", 0x00E0, 2) == f32(3.5)
    assert img.read(1, "input", 0x0024, 2) == [0, 0]          # inside the map, not modelled


def test_sdm630_request_limit_80(sdm):
    img, _ = sdm
    assert len(img.read(1, "input", 0, 80)) == 80
    with pytest.raises(ModbusError) as e:
        img.read(1, "input", 0, 81)
    assert code(e) == 3
    with pytest.raises(ModbusError) as e:
        img.read(1, "input", 0, 0)
    assert code(e) == 3


def test_sdm72_limit_60_and_subset():
    img = DeviceImage(get_profile("sdm72"), {1: Fake("meter")})
    assert len(img.read(1, "input", 0, 60)) == 60
    with pytest.raises(ModbusError) as e:
        img.read(1, "input", 0, 61)
    assert code(e) == 3
    assert img.read(1, "input", 0x015A, 2) == [0, 0]           # no per-phase kWh on the SDM72


def test_sdm120_single_phase():
    img = DeviceImage(get_profile("sdm120"), {1: Fake("meter")})
    assert img.read(1, "input", 0x0006, 2) == f32(10.0)
    assert img.read(1, "input", 0x0008, 2) == [0, 0]


def test_sdm_out_of_map_and_unknown_unit(sdm):
    img, _ = sdm
    with pytest.raises(ModbusError) as e:
        img.read(1, "input", 0x0200, 2)
    assert code(e) == 2
    with pytest.raises(NoSuchUnit) as e:
        img.read(2, "input", 0, 2)
    assert e.value.unit == 2


def test_sdm_holding_config(sdm):
    img, m = sdm
    assert img.read(1, "holding", 0x0018, 2) == f32(1000.0)          # password default
    img.write(1, "holding", 0x0002, f32(15.0), now_ms=5)
    assert m.writes == [("demand_period_min", 15.0, 5)]
    assert img.read(1, "holding", 0x0002, 2) == f32(15.0)
    img.write(1, "holding", 0x000A, f32(1.0))
    img.write(1, "holding", 0x0014, f32(7.0))
    img.write(1, "holding", 0x001C, f32(3.0))
    assert m.pts["system_type"] == 1.0 and m.pts["modbus_address"] == 7.0 and m.pts["baud_code"] == 3
    img.write(1, "holding", 0x0018, f32(1234.0))                      # password: local
    assert img.read(1, "holding", 0x0018, 2) == f32(1234.0)


def test_sdm_holding_rejections(sdm):
    img, m = sdm
    for args, exp in [((0x0002, f32(7.0)), 3),                        # not a valid period
                      ((0x0014, f32(248.0)), 3),                      # address range
                      ((0x0002, f32(15.0)[:1]), 3),                   # half a float
                      ((0x0002, f32(15.0) + f32(0.0)), 3),            # > one parameter
                      ((0x0004, f32(1.0)), 2)]:                       # no register
        with pytest.raises(ModbusError) as e:
            img.write(1, "holding", *args)
        assert code(e) == exp, args
    with pytest.raises(ModbusError) as e:
        img.write(1, "holding", 0x0002, [0x4170], fc=6)             # FC06 not supported
    assert code(e) == 1
    with pytest.raises(ModbusError) as e:
        img.write(1, "input", 0x0000, f32(1.0))
    assert code(e) == 1
    assert m.writes == []


# --- Carlo Gavazzi -------------------------------------------------------------------------
def test_em24_int32_lsw_scaled():
    m = Fake("meter", power_l1_w=-1234.5)
    img = DeviceImage(get_profile("em24"), {1: m})
    assert img.read(1, "input", 0x00, 2) == [2301, 0]                     # 230.1 V, 0.1 V
    assert img.read(1, "input", 0x0E, 2) == [12500, 0]                    # 12.5 A in mA
    assert img.read(1, "input", 0x12, 2) == [(-12345) & 0xFFFF, 0xFFFF]   # -1234.5 W
    assert img.read(1, "input", 0x28, 2) == encode(7082.7, "i32", LSW, 0.1)
    assert img.read(1, "input", 0x32, 4) == [950, 980, (-500) & 0xFFFF, 970]
    assert img.read(1, "input", 0x37, 1) == [500]                         # 50.02 Hz -> 50.0
    assert img.read(1, "input", 0x42, 2) == [123456 & 0xFFFF, 123456 >> 16]
    assert img.read(1, "input", 0x48, 2) == [40002, 0]
    assert img.read(1, "input", 0x5C, 2) == [789, 0]
    big = Fake("meter", import_kwh=500000.0)                               # 5,000,000 > 16 bit
    assert DeviceImage(get_profile("em24"), {1: big}).read(1, "input", 0x42, 2) == \
        [5000000 & 0xFFFF, 5000000 >> 16]


def test_em340_addresses():
    img = DeviceImage(get_profile("em340"), {1: Fake("meter")})
    assert img.read(1, "input", 0x2E, 4) == [950, 980, (-500) & 0xFFFF, 970]
    assert img.read(1, "input", 0x33, 3) == [500, 123456 & 0xFFFF, 123456 >> 16]
    assert img.read(1, "input", 0x40, 2) == [40001, 0]
    assert img.read(1, "input", 0x4E, 2) == [789, 0]


# --- Alfen ---------------------------------------------------------------------------------
@pytest.fixture
def alfen():
    s1, s2 = Fake(), Fake(cp_state="A", status="disconnected", serial="999")
    return DeviceImage(get_profile("alfen_ng9xx"), {1: s1, 2: s2}), s1, s2


def test_alfen_profile_attributes():
    p = get_profile("alfen_ng9xx")
    assert p.max_clients == 2 and p.keepalive_s == 60 and p.reserved == "nan"
    assert p.atomic_writes and p.unit_ids == (200, 1, 2)
    assert p.watchdog.heartbeat_s == 25 and p.watchdog.default_timeout_s == 60


def test_alfen_socket_golden(alfen):
    img, s1, s2 = alfen
    assert img.read(1, "holding", 320, 6) == f32(16.0) + f32(15.5) + f32(15.75)
    assert img.read(1, "holding", 306, 2) == f32(230.0)
    assert img.read(1, "holding", 344, 2) == f32(10960.0)
    assert decode(img.read(1, "holding", 374, 4), "f64") == 1234567.0
    assert img.read(1, "holding", 1201, 5) == [0x4332, 0, 0, 0, 0]      # "C2"
    assert img.read(2, "holding", 1201, 5) == [0x4100, 0, 0, 0, 0]      # "A"
    assert img.read(1, "holding", 1206, 2) == f32(16.0)
    assert img.read(1, "holding", 1208, 2) == [0, 42]                    # U32 seconds
    assert img.read(1, "holding", 1212, 2) == f32(6.0)
    assert img.read(1, "holding", 1214, 2) == [1, 3]                     # accounted, 3 phases
    assert img.read(1, "holding", 1200, 1) == [1]


def test_alfen_write_max_current_and_heartbeat(alfen):
    img, s1, s2 = alfen
    img.write(1, "holding", 1210, f32(16.0), now_ms=1000)
    assert s1.writes == [("setpoint_a", 16.0, 1000), ("heartbeat", True, 1000)]
    assert s2.writes == []
    img.write(2, "holding", 1215, [1], now_ms=2000, fc=6)
    assert s2.written("phases_setting") == [1]


def test_alfen_multi_register_values_written_whole(alfen):
    img, s1, _ = alfen
    for addr, words in ((1210, f32(16.0)[:1]), (1211, f32(16.0)[1:])):
        with pytest.raises(ModbusError) as e:
            img.write(1, "holding", addr, words)
        assert code(e) == 3
    with pytest.raises(ModbusError) as e:
        img.write(1, "holding", 1210, [0x4180], fc=6)
    assert code(e) == 3
    assert s1.writes == []


def test_alfen_reserved_nan_readonly_and_invalid(alfen):
    img, s1, _ = alfen
    assert img.read(1, "holding", 300, 6) == [3, 0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF]
    assert math.isnan(decode(img.read(1, "holding", 362, 4), "f64"))     # per-phase energy n/a
    with pytest.raises(ModbusError) as e:
        img.read(1, "holding", 500, 2)                                    # outside the blocks
    assert code(e) == 2
    with pytest.raises(ModbusError) as e:
        img.write(1, "holding", 1206, f32(10.0))                          # read-only
    assert code(e) == 2
    for bad in (f32(math.nan), f32(-1.0), f32(100.0)):
        with pytest.raises(ModbusError) as e:
            img.write(1, "holding", 1210, bad)
        assert code(e) == 3
    with pytest.raises(ModbusError) as e:
        img.write(1, "holding", 1215, [2])
    assert code(e) == 3
    with pytest.raises(ModbusError) as e:
        img.read(1, "input", 300, 1)                                       # no FC04
    assert code(e) == 1
    assert s1.writes == []


def test_alfen_station_unit(alfen):
    img, s1, s2 = alfen
    assert 200 in img.unit_ids
    assert decode(img.read(200, "holding", 100, 17), "str") == "EVSE-X"
    assert decode(img.read(200, "holding", 117, 5), "str") == "Alfen"
    assert img.read(200, "holding", 1105, 1) == [2]
    assert img.read(200, "holding", 1100, 2) == f32(32.0)
    assert img.read(200, "holding", 168, 6, now_ms=86_400_000 + 3_661_000) == [1970, 1, 2, 1, 1, 1]
    with pytest.raises(ModbusError):
        img.read(200, "holding", 1210, 2)                 # socket register not on the station
    with pytest.raises(NoSuchUnit):
        img.read(3, "holding", 1210, 2)
    img.write(200, "holding", 1429, f32(10.0))            # SCN safe current: local
    assert img.read(200, "holding", 1429, 2) == f32(10.0)


# --- Phoenix CHARX -------------------------------------------------------------------------
@pytest.fixture
def charx():
    cps = [Fake(), Fake(cp_state="A", status="disconnected", current_l1_a=0.0, current_l2_a=0.0,
                        current_l3_a=0.0, power_total_w=0.0)]
    return DeviceImage(get_profile("charx_sec"), {1: cps}), cps


def test_charx_golden(charx):
    img, (c1, c2) = charx
    assert img.read(1, "holding", 1238, 2) == [0, 16000]                   # mA, BE
    assert img.read(1, "holding", 1232, 2) == [230000 >> 16, 230000 & 0xFFFF]
    assert img.read(1, "holding", 1244, 2) == [10960000 >> 16, 10960000 & 0xFFFF]
    assert decode(img.read(1, "holding", 1250, 4), "i64") == 1234567
    assert img.read(1, "holding", 1299, 1) == [0x4332]                     # "C2"
    assert img.read(1, "holding", 2299, 1) == [0x4131]                     # "A1"
    assert img.read(1, "holding", 1301, 1) == [16]
    assert img.read(1, "holding", 1306, 2) == [6, 15]
    assert img.read(1, "holding", 114, 1) == [2]
    assert img.read(1, "holding", 149, 3) == [1, 1, 1]                     # A, B/C/D, charging
    assert img.read(1, "holding", 158, 2) == [0, 16000]                    # group current L1
    assert img.read(1, "input", 1238, 2) == img.read(1, "holding", 1238, 2)  # FC04 == FC03


def test_charx_control_writes(charx):
    img, (c1, c2) = charx
    img.write(1, "holding", 2301, [10], now_ms=7)
    assert c2.writes == [("setpoint_a", 10, 7), ("heartbeat", True, 7)] and c1.writes == []
    img.write(1, "holding", 1307, [65535])
    assert c1.written("watchdog_timeout_s") == [0]
    img.write(1, "holding", 1300, [0])
    assert c1.written("enabled") == [False]
    img.write(1, "holding", 1305, [1])
    assert c1.written("unlock") == [True]
    with pytest.raises(ModbusError) as e:
        img.write(1, "holding", 1301, [90])
    assert code(e) == 3
    img.write(1, "holding", 167, [40])                                      # group limit: local
    assert img.read(1, "holding", 167, 1) == [40]


def test_charx_blocks(charx):
    img, _ = charx
    with pytest.raises(ModbusError) as e:
        img.read(1, "holding", 3301, 1)                                     # CP 3 not installed
    assert code(e) == 2
    with pytest.raises(ModbusError) as e:
        img.read(1, "holding", 1124, 1)                                     # between blocks
    assert code(e) == 2
    assert len(img.read(1, "holding", 1232, 77)) == 77                      # whole status+control


# --- KEBA ----------------------------------------------------------------------------------
@pytest.fixture
def keba():
    d = Fake()
    return DeviceImage(get_profile("keba_p30"), {255: d}), d


def test_keba_golden(keba):
    img, d = keba
    assert img.read(255, "holding", 1000, 2) == [0, 3]                     # charging
    assert img.read(255, "holding", 1004, 2) == [0, 7]                     # at vehicle, locked
    assert img.read(255, "holding", 1008, 2) == [0, 16000]
    assert img.read(255, "holding", 1010, 2) == [0, 15500]
    assert img.read(255, "holding", 1018, 2) == [0x0102, 0x0300]
    assert img.read(255, "holding", 1036, 2) == [12345670 >> 16, 12345670 & 0xFFFF]
    assert img.read(255, "holding", 1110, 2) == [0, 20000]
    assert img.read(255, "holding", 1600, 2) == [0, 6000]
    assert img.read(255, "holding", 1602, 2) == [0, 15]
    d.pts.update(enabled=False, status="connected_idle")
    assert img.read(255, "holding", 1000, 2) == [0, 5]


def test_keba_no_reads_across_boundaries(keba):
    img, _ = keba
    for addr, n in ((1008, 4), (1009, 1), (1008, 3), (1006, 6)):
        with pytest.raises(ModbusError) as e:
            img.read(255, "holding", addr, n)
        assert code(e) == 2, (addr, n)
    assert img.read(255, "holding", 1008, 1) == [0]                        # inside one value
    with pytest.raises(ModbusError) as e:
        img.read(255, "holding", 1002, 2)                                  # unmapped
    assert code(e) == 2
    with pytest.raises(ModbusError) as e:
        img.read(255, "holding", 5004, 1)                                  # write-only on P30
    assert code(e) == 2


def test_keba_writes_ma_and_failsafe(keba):
    img, d = keba
    img.write(255, "holding", 5004, [16000], now_ms=3, fc=6)
    assert d.writes == [("setpoint_a", 16.0, 3), ("heartbeat", True, 3)]
    img.write(255, "holding", 5018, [30], fc=6)
    img.write(255, "holding", 5016, [8000], fc=6)
    img.write(255, "holding", 5014, [0], fc=6)
    img.write(255, "holding", 5052, [0], fc=6)
    assert d.pts["watchdog_timeout_s"] == 30 and d.pts["safe_current_a"] == 8.0
    assert d.pts["enabled"] is False and d.pts["phases_setting"] == 1
    with pytest.raises(ModbusError) as e:
        img.write(255, "holding", 5004, [3000], fc=6)
    assert code(e) == 3
    with pytest.raises(ModbusError) as e:
        img.write(255, "holding", 1100, [1], fc=6)
    assert code(e) == 2
    with pytest.raises(NoSuchUnit):
        img.read(1, "holding", 1000, 2)


def test_keba_p40_reads_5004():
    d = Fake(setpoint_a=10.0)
    img = DeviceImage(get_profile("keba_p40"), {255: d})
    assert img.read(255, "holding", 5004, 1) == [10000]
    with pytest.raises(ModbusError):
        img.write(255, "holding", 5014, [1], fc=6)


# --- Heidelberg ----------------------------------------------------------------------------
def test_heidelberg_golden_and_watchdog():
    d = Fake()
    img = DeviceImage(get_profile("heidelberg_ec"), {1: d})
    assert img.read(1, "input", 5, 4, now_ms=1) == [7, 160, 155, 158]       # C2, 0.1 A
    assert img.read(1, "input", 10, 5) == [230, 231, 229, 1, 10960]
    assert img.read(1, "input", 17, 2) == [1234567 >> 16, 1234567 & 0xFFFF]
    assert img.read(1, "holding", 257, 1) == [15000]                       # ms
    assert d.writes == [("heartbeat", True, 1)] + [("heartbeat", True, 0)] * 3  # any request
    d.writes.clear()
    img.write(1, "holding", 261, [160], now_ms=9, fc=6)
    assert ("setpoint_a", 16.0, 9) in d.writes
    img.write(1, "holding", 262, [60], fc=6)
    img.write(1, "holding", 257, [20000], fc=6)
    img.write(1, "holding", 258, [4], fc=6)
    assert d.pts["safe_current_a"] == 6.0 and d.pts["watchdog_timeout_s"] == 20.0
    assert img.read(1, "holding", 258, 1) == [4]
    with pytest.raises(ModbusError) as e:
        img.write(1, "holding", 261, [50], fc=6)                          # 5 A
    assert code(e) == 3
    d.pts.update(cp_state="A", enabled=False)
    assert img.read(1, "input", 5, 1) == [2]


# --- Vestel / ABB --------------------------------------------------------------------------
def test_vestel_golden():
    d = Fake()
    img = DeviceImage(get_profile("vestel_evc04"), {255: d})
    assert img.read(255, "input", 1008, 5) == [16000, 0, 15500, 0, 15750]  # gaps read 0
    assert img.read(255, "input", 1001, 1) == [1]
    assert img.read(255, "input", 1004, 1) == [3]
    assert img.read(255, "input", 1036, 2) == [0, 12346]                   # 0.1 kWh
    assert img.read(255, "holding", 2000, 3) == [6, 0, 15]
    assert decode(img.read(255, "input", 100, 25), "str") == "12345678"
    img.write(255, "holding", 5004, [16], now_ms=4, fc=6)
    assert d.writes == [("setpoint_a", 16, 4)]                             # no kick: not alive
    img.write(255, "holding", 6000, [1], now_ms=5, fc=6)
    assert d.writes[-1] == ("heartbeat", True, 5)
    img.write(255, "holding", 405, [0], fc=6)
    assert d.pts["phases_setting"] == 1


def test_abb_golden():
    d = Fake()
    img = DeviceImage(get_profile("abb_terra_ac"), {1: d})
    assert img.read(1, "holding", 0x400C, 2) == [0, 0x0400]                # C2 in byte 2
    assert img.read(1, "holding", 0x4010, 2) == [0, 16000]
    assert img.read(1, "holding", 0x4016, 2) == [0, 2300]                  # 0.1 V
    assert img.read(1, "holding", 0x4020, 1) == [15]
    d.writes.clear()
    img.write(1, "holding", 0x4100, [0, 16000], now_ms=2)
    assert ("setpoint_a", 16.0, 2) in d.writes
    with pytest.raises(ModbusError) as e:
        img.write(1, "holding", 0x4100, [0])
    assert code(e) == 3
    with pytest.raises(ModbusError) as e:
        img.read(1, "holding", 0x4100, 2)                                  # write-only
    assert code(e) == 2
    img.write(1, "holding", 0x4105, [1], fc=6)
    assert d.pts["enabled"] is False
    img.write(1, "holding", 0x4106, [1200], fc=6)
    assert d.pts["watchdog_timeout_s"] == 1200


# --- generic -------------------------------------------------------------------------------
def test_generic_map_all_function_codes():
    d = Fake()
    img = DeviceImage(get_profile("dlbrig_generic"), {1: d})
    assert img.read(1, "input", 0, 6) == [1, 4, 2, 0, 3, 267]
    assert img.read(1, "input", 6, 2) == [0, 16000]
    assert img.request(1, 1, 0, 1) == [1]
    assert img.request(1, 2, 0, 4) == [1, 1, 0, 1]
    img.request(1, 16, 0, [0, 10000], now_ms=8)
    assert d.writes == [("setpoint_a", 10.0, 8), ("heartbeat", True, 8)]
    img.request(1, 5, 0, False)
    assert d.pts["enabled"] is False
    img.request(1, 6, 10, 1)
    assert img.profile.write_request("setpoint_a", 12.5) == ("holding", 0, [0, 12500])
    with pytest.raises(ModbusError) as e:
        img.request(1, 16, 0, [0])
    assert code(e) == 3
    with pytest.raises(ModbusError) as e:
        img.request(1, 2, 0, 1) and img.write(1, "discrete", 0, [1])
    assert code(e) == 1
    with pytest.raises(ModbusError) as e:
        img.request(1, 8, 0, 1)
    assert code(e) == 1


# --- failure mapping -----------------------------------------------------------------------
class Grumpy(Fake):
    def __init__(self, exc):
        super().__init__()
        self.exc = exc

    def write_point(self, name, value, now_ms):
        raise self.exc


def test_model_exceptions_map_to_modbus_codes():
    p = get_profile("dlbrig_generic")
    with pytest.raises(ModbusError) as e:
        DeviceImage(p, {1: Grumpy(ValueError("no"))}).write(1, "holding", 8, [1])
    assert code(e) == 3
    with pytest.raises(ModbusError) as e:
        DeviceImage(p, {1: Grumpy(RuntimeError("boom"))}).write(1, "holding", 8, [1])
    assert code(e) == 4 and isinstance(e.value.__cause__, RuntimeError)
    broken = Fake()
    del broken.pts["cp_state"]
    with pytest.raises(ModbusError) as e:
        DeviceImage(p, {1: broken}).read(1, "input", 0, 3)
    assert code(e) == 4 and isinstance(e.value.__cause__, KeyError)
