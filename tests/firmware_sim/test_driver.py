"""Controller-side drivers (profiles/driver.py): round trips through the real engine.

A dict-backed fake device in a known generic state is served by ``DeviceImage``; the driver's
read plan is executed against ``image.read`` and decoded; its writes go through ``image.write``
and must land on the fake as the vocabulary values the controller meant.
"""
import math
import random
from dataclasses import replace

import pytest

from dlbrig.firmware_sim.profiles import (DeviceImage, ModbusError, Profile, get_profile,
                                          list_profiles)
from dlbrig.firmware_sim.profiles.driver import (ChargerDriver, ChargerReading, ChargerSpec,
                                                 DecodeError, MeterDriver, Request, driver_for)

# --- fakes ----------------------------------------------------------------------------------------
METER_BASE = dict(
    voltage_l1_v=230.0, voltage_l2_v=231.0, voltage_l3_v=229.0, current_n_a=0.0,
    va_l1=0.0, va_l2=0.0, va_l3=0.0, va_total=0.0, var_l1=0.0, var_l2=0.0, var_l3=0.0,
    var_total=0.0, pf_l1=1.0, pf_l2=1.0, pf_l3=1.0, pf_total=1.0, frequency_hz=50.0,
    import_kwh=100.0, export_kwh=5.0, import_l1_kwh=30.0, import_l2_kwh=30.0, import_l3_kwh=40.0,
    export_l1_kwh=1.0, export_l2_kwh=2.0, export_l3_kwh=2.0, total_kwh=105.0,
    demand_period_min=60, modbus_address=1, baud_code=2, system_type=3,
)

CHARGER_BASE = dict(
    cp_state="A", status="disconnected", error_code=0,
    current_l1_a=0.0, current_l2_a=0.0, current_l3_a=0.0,
    voltage_l1_v=230.0, voltage_l2_v=231.0, voltage_l3_v=229.0, power_total_w=0.0,
    session_energy_wh=100.0, total_energy_wh=5000.0, session_duration_s=60,
    pwm_duty_pct=100.0, applied_current_a=0.0, setpoint_a=10.0, setpoint_valid_s=30.0,
    hw_max_current_a=32.0, cable_max_current_a=20.0, safe_current_a=6.0,
    watchdog_timeout_s=20.0, watchdog_remaining_s=20.0, in_failsafe=False, phases_in_use=3,
    phases_setting=3, enabled=True, connector_locked=False, contactor_closed=False,
    vehicle_connected=False, serial="12345678", firmware_version="1.2.3", model_name="EVSE-X",
)

PLUGGED = dict(vehicle_connected=True, connector_locked=True)
CHARGER_VARIANTS = {
    "disconnected": dict(),
    "idle_paused": dict(cp_state="B1", status="connected_idle", **PLUGGED),
    "idle_offered": dict(cp_state="B2", status="connected_idle", applied_current_a=16.0,
                         pwm_duty_pct=26.7, **PLUGGED),
    "paused_requesting": dict(cp_state="C1", status="connected_idle", **PLUGGED),
    "charging": dict(cp_state="C2", status="charging", contactor_closed=True,
                     current_l1_a=16.0, current_l2_a=15.5, current_l3_a=15.75,
                     applied_current_a=16.0, pwm_duty_pct=26.7, power_total_w=10960.0, **PLUGGED),
    "suspended_in_c": dict(cp_state="C2", status="ev_suspended", contactor_closed=True,
                           current_l1_a=0.2, current_l2_a=0.0, current_l3_a=0.1,
                           applied_current_a=16.0, pwm_duty_pct=26.7, **PLUGGED),
    "suspended_after_charge": dict(cp_state="B2", status="ev_suspended", applied_current_a=16.0,
                                   pwm_duty_pct=26.7, **PLUGGED),
    "fault_f": dict(cp_state="F", status="fault", error_code=1, **PLUGGED),
    "fault_e": dict(cp_state="E", status="fault", error_code=5, **PLUGGED),
    "unavailable_plugged": dict(cp_state="B1", status="unavailable", enabled=False, **PLUGGED),
    "unavailable_empty": dict(cp_state="A", status="unavailable", enabled=False),
}

# What each product cannot express (documented in its module): variant -> what it reads as.
_NO_UNAVAILABLE_NO_B2_SUSPEND = {"suspended_after_charge": "connected_idle",
                                 "unavailable_plugged": "connected_idle",
                                 "unavailable_empty": "disconnected"}
COLLAPSES = {
    "alfen_ng9xx": {"suspended_after_charge": "connected_idle"},
    "charx_sec": {"suspended_after_charge": "connected_idle"},
    "keba_p30": {"unavailable_empty": "disconnected"},
    "keba_p40": {"unavailable_empty": "disconnected"},
    "heidelberg_ec": _NO_UNAVAILABLE_NO_B2_SUSPEND,
    "abb_terra_ac": _NO_UNAVAILABLE_NO_B2_SUSPEND,
    "vestel_evc04": {},
    "dlbrig_generic": {},
}


class Fake:
    """A dict-backed device implementing the point vocabulary."""

    def __init__(self, kind="charger", **over):
        self.pts = dict(METER_BASE if kind == "meter" else CHARGER_BASE)
        self.pts.update(over)
        self.writes = []

    def points(self):
        return self.pts

    def write_point(self, name, value, now_ms):
        self.writes.append((name, value))
        if name not in ("heartbeat", "unlock"):
            self.pts[name] = value

    def written(self, name):
        return [v for n, v in self.writes if n == name]


def cfake(variant, **over):
    return Fake(**{**CHARGER_VARIANTS[variant], **over})


def meter_fake(currents, signed=True, **over):
    pts = {}
    for i, c in enumerate(currents, 1):
        v = METER_BASE[f"voltage_l{i}_v"]
        pts[f"current_l{i}_a"] = c if signed else abs(c)
        pts[f"power_l{i}_w"] = v * c
    pts["power_total_w"] = sum(pts[f"power_l{i}_w"] for i in (1, 2, 3))
    pts.update(over)
    return Fake("meter", **pts)


def serve(profile, dev, unit=None, slot=0):
    """An image with ``dev`` at the driver's unit (and connector), plus the driver."""
    drv = driver_for(profile, unit, slot)
    p = drv.profile
    if p.connectors > 1:
        devs = [Fake() for _ in range(slot + 2)]
        devs[slot] = dev
        return DeviceImage(p, {drv.unit: devs}), drv
    return DeviceImage(p, {drv.unit: dev}), drv


def run(image, drv, now_ms=0):
    return drv.decode([image.read(drv.unit, t, a, n, now_ms) for t, a, n in drv.read_plan()])


def apply(image, drv, writes, now_ms=0):
    for table, address, words in writes:
        image.write(drv.unit, table, address, words, now_ms)


CHARGERS = list_profiles("charger")
METERS = list_profiles("meter")


def test_every_profile_has_a_driver():
    assert set(CHARGERS) == set(COLLAPSES)
    for name in list_profiles():
        d = driver_for(name)
        assert isinstance(d, MeterDriver if get_profile(name).kind == "meter" else ChargerDriver)
        assert d.read_plan()


# --- charger reads --------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", sorted(CHARGER_VARIANTS))
@pytest.mark.parametrize("name", CHARGERS)
def test_charger_state_roundtrip(name, variant):
    dev = Fake(**CHARGER_VARIANTS[variant])
    image, drv = serve(name, dev)
    r = run(image, drv)
    assert isinstance(r, ChargerReading)
    expected = COLLAPSES[name].get(variant, dev.pts["status"])
    assert r.state == expected, (name, variant, r.raw)
    want = [dev.pts[f"current_l{i}_a"] for i in (1, 2, 3)]
    assert r.currents_a == pytest.approx(want, abs=0.051)       # Heidelberg: 0.1 A
    if r.applied_a is not None:
        assert r.applied_a == pytest.approx(dev.pts["applied_current_a"], abs=0.001)
    if r.setpoint_a is not None:
        assert r.setpoint_a == pytest.approx(dev.pts["setpoint_a"], abs=0.001)
    if r.phases is not None:
        assert r.phases == 3


@pytest.mark.parametrize("name", CHARGERS)
def test_charger_optional_fields_and_phases(name):
    dev = cfake("charging", phases_in_use=1, phases_setting=1)
    image, drv = serve(name, dev)
    r = run(image, drv)
    readable = {  # which products read back applied current / set-point / phases
        "alfen_ng9xx": (True, True, True), "charx_sec": (True, True, False),
        "keba_p30": (True, False, True), "keba_p40": (True, True, True),
        "heidelberg_ec": (False, True, False), "vestel_evc04": (False, True, True),
        "abb_terra_ac": (True, False, False), "dlbrig_generic": (True, True, True),
    }[name]
    assert (r.applied_a is not None, r.setpoint_a is not None, r.phases is not None) == readable
    if r.phases is not None:
        assert r.phases == 1


def test_charx_slot_selects_the_connector():
    cps = [Fake(**CHARGER_VARIANTS[v]) for v in ("disconnected", "fault_f", "charging")]
    image = DeviceImage(get_profile("charx_sec"), {1: cps})
    for slot, state in enumerate(("disconnected", "fault", "charging")):
        drv = ChargerDriver("charx_sec", 1, slot=slot)
        assert drv.read_plan() == [("holding", (slot + 1) * 1000 + 238, 64)]
        assert run(image, drv).state == state
    drv = ChargerDriver("charx", slot=2)
    apply(image, drv, drv.setpoint_writes(13))
    assert cps[2].pts["setpoint_a"] == 13 and cps[0].pts["setpoint_a"] == 10.0
    with pytest.raises(ValueError):
        ChargerDriver("charx_sec", slot=12)
    with pytest.raises(ValueError):
        ChargerDriver("keba_p30", slot=1)


def test_alfen_second_socket_and_station_unit_untouched():
    s1, s2 = cfake("charging"), cfake("idle_paused")
    image = DeviceImage(get_profile("alfen"), {1: s1, 2: s2})
    assert driver_for("alfen").unit == 1
    assert run(image, ChargerDriver("alfen", 2)).state == "connected_idle"
    assert run(image, ChargerDriver("alfen", 1)).state == "charging"


# --- meters ---------------------------------------------------------------------------------------
METER_CASES = {
    "import": ((10.0, 12.5, 8.25), True),
    "export_signed": ((-10.0, -12.5, -8.25), True),
    "export_magnitude": ((-10.0, -12.5, -8.25), False),
    "mixed_magnitude": ((10.0, -12.5, 0.0), False),
}


@pytest.mark.parametrize("case", sorted(METER_CASES))
@pytest.mark.parametrize("name", METERS)
def test_meter_roundtrip_signed(name, case):
    currents, signed = METER_CASES[case]
    image, drv = serve(name, meter_fake(currents, signed))
    got = run(image, drv)
    want = list(currents) if name != "sdm120" else [currents[0], 0.0, 0.0]
    assert got == pytest.approx(want, abs=0.001)


@pytest.mark.parametrize("name", METERS)
def test_meter_nan_and_garbage_raise(name):
    image, drv = serve(name, meter_fake((1.0, 2.0, 3.0), current_l1_a=math.nan,
                                        power_l1_w=math.nan, voltage_l1_v=math.nan))
    with pytest.raises(DecodeError):                   # f32 NaN, or INT32 "not available"
        run(image, drv)
    rng = random.Random(7)
    for _ in range(20):
        junk = {k: rng.uniform(-1e6, 1e6) for k in METER_BASE if not k.endswith(("_kwh",))}
        junk.update({f"{q}_l{i}_{u}": rng.uniform(-1e6, 1e6)
                     for q, u in (("current", "a"), ("power", "w")) for i in (1, 2, 3)})
        junk.update(demand_period_min=60, modbus_address=1, baud_code=2, system_type=3)
        image, drv = serve(name, meter_fake((0, 0, 0), **junk))
        with pytest.raises(DecodeError):
            run(image, drv)


def test_meter_zero_fault_is_a_valid_zero_reading():
    image, drv = serve("sdm630", meter_fake((0.0, 0.0, 0.0)))
    assert run(image, drv) == [0.0, 0.0, 0.0]


def test_real_meter_model_reporting_magnitudes():
    from dlbrig.firmware_sim.meter import Meter
    m = Meter(signed_current=False, resolution_a=0.001)
    m.advance(1000, [-12.0, 3.0, -0.5])
    assert m.points()["current_l1_a"] == 12.0          # the model reports |I|
    for name in ("sdm630", "em24"):
        drv = driver_for(name)
        image = DeviceImage(drv.profile, {drv.unit: m})
        assert run(image, drv) == pytest.approx([-12.0, 3.0, -0.5], abs=0.001)
    m.fault = "nan"
    drv = driver_for("sdm630")
    with pytest.raises(DecodeError):
        run(DeviceImage(drv.profile, {1: m}), drv)


def test_meter_sign_from_total_power_when_no_phase_power():
    p = get_profile("sdm630")
    regs = tuple(r for r in p.registers if not (r.point or "").startswith("power_l"))
    q = replace(p, name="sdm630_nophasepower", registers=regs)
    image, drv = serve(q, meter_fake((-5.0, -6.0, -7.0), signed=False))
    assert ("input", 0x34, 2) in drv.read_plan() or any(a <= 0x34 < a + n for _, a, n in drv.read_plan())
    assert run(image, drv) == pytest.approx([-5.0, -6.0, -7.0], abs=0.001)


# --- plans ----------------------------------------------------------------------------------------
MIN_REQUESTS = {"sdm630": 1, "sdm72": 1, "sdm120": 1, "em24": 1, "em340": 1, "alfen_ng9xx": 2,
                "charx_sec": 1, "abb_terra_ac": 1, "heidelberg_ec": 2, "vestel_evc04": 3,
                "dlbrig_generic": 2, "keba_p30": 7, "keba_p40": 8}


@pytest.mark.parametrize("name", list_profiles())
def test_read_plan_respects_product_limits(name):
    drv = driver_for(name)
    p = drv.profile
    plan = drv.read_plan()
    assert len(plan) == MIN_REQUESTS[name]
    for table, address, count in plan:
        assert 1 <= count <= p.max_read
        if p.blocks is not None:
            src = "holding" if p.mirror_input and table == "input" else table
            assert any(t == src and s <= address and address + count <= e for t, s, e in p.blocks)
        if p.single_value_reads:
            reg = p.register(address, table)
            assert reg.count == count
    if p.name == "sdm630":
        assert plan == [("input", 0, 18)]


@pytest.mark.parametrize("name,max_read", [("sdm630", 4), ("em24", 6), ("alfen_ng9xx", 5),
                                           ("charx_sec", 8), ("dlbrig_generic", 3),
                                           ("abb_terra_ac", 4)])
def test_plans_split_under_a_smaller_request_limit(name, max_read):
    p = replace(get_profile(name), name=f"{name}_small", max_read=max_read)
    dev = meter_fake((-3.0, 4.0, 5.0), signed=False) if p.kind == "meter" else \
        cfake("charging")
    image, drv = serve(p, dev)
    plan = drv.read_plan()
    assert len(plan) > MIN_REQUESTS[name]
    assert all(n <= max_read for _, _, n in plan)
    r = run(image, drv)
    if p.kind == "meter":
        assert r == pytest.approx([-3.0, 4.0, 5.0], abs=0.001)
    else:
        assert r.state == "charging"


def test_keba_rejects_what_the_plan_avoids():
    image, drv = serve("keba_p30", cfake("charging"))
    with pytest.raises(ModbusError):
        image.read(drv.unit, "holding", 1008, 6)      # what a naive master would do
    assert ("holding", 1008, 2) in drv.read_plan()


def test_decode_rejects_wrong_responses():
    image, drv = serve("alfen", cfake("charging"))
    good = [image.read(drv.unit, t, a, n) for t, a, n in drv.read_plan()]
    with pytest.raises(DecodeError):
        drv.decode(good[:1])
    with pytest.raises(DecodeError):
        drv.decode([good[0][:-1], good[1]])


# --- charger garbage ------------------------------------------------------------------------------
def test_charger_nan_and_not_available_raise():
    image, drv = serve("alfen", cfake("charging", current_l2_a=math.nan))
    with pytest.raises(DecodeError):
        run(image, drv)
    image, drv = serve("keba_p30", cfake("charging", current_l1_a=None))
    with pytest.raises(DecodeError):                   # U32 0xFFFFFFFF "no value"
        run(image, drv)
    image, drv = serve("alfen", cfake("charging", applied_current_a=math.nan))
    assert run(image, drv).applied_a is None           # optional values: NaN -> None


@pytest.mark.parametrize("name,table,address,value", [
    ("keba_p30", "holding", 1000, [0, 9]), ("heidelberg_ec", "input", 5, [42]),
    ("vestel_evc04", "input", 1000, [99]), ("dlbrig_generic", "input", 2, [6])])
def test_unknown_state_codes_raise(name, table, address, value):
    image, drv = serve(name, cfake("charging"))
    responses = []
    for t, a, n in drv.read_plan():
        words = image.read(drv.unit, t, a, n)
        if t == table and a <= address < a + n:
            words[address - a: address - a + len(value)] = value
        responses.append(words)
    with pytest.raises(DecodeError):
        drv.decode(responses)


def test_alfen_unknown_mode3_string_raises():
    image, drv = serve("alfen", cfake("charging", cp_state="X9"))
    with pytest.raises(DecodeError):
        run(image, drv)


# --- writes ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", CHARGERS)
def test_setpoint_pause_resume(name):
    dev = cfake("charging")
    image, drv = serve(name, dev)
    apply(image, drv, drv.setpoint_writes(16.0))
    assert dev.pts["setpoint_a"] == pytest.approx(16.0) and dev.pts["enabled"] is True
    apply(image, drv, drv.setpoint_writes(0))
    if drv.spec.pause == "enable":
        assert dev.pts["enabled"] is False and dev.pts["setpoint_a"] == pytest.approx(16.0)
    else:
        assert dev.pts["setpoint_a"] == 0 and dev.pts["enabled"] is True
    apply(image, drv, drv.setpoint_writes(10.0))
    assert dev.pts["setpoint_a"] == pytest.approx(10.0) and dev.pts["enabled"] is True
    apply(image, drv, drv.setpoint_writes(3.0))        # below the minimum: pause, never 3 A
    assert dev.pts["setpoint_a"] in (0, 10.0)
    assert dev.pts["setpoint_a"] == 0 or dev.pts["enabled"] is False
    apply(image, drv, drv.setpoint_writes(1000.0))     # clamped to what the product accepts
    assert dev.pts["setpoint_a"] == pytest.approx(drv.max_current_a)
    assert drv.min_current_a == 6.0
    for bad in (-1, math.nan):
        with pytest.raises(ValueError):
            drv.setpoint_writes(bad)


@pytest.mark.parametrize("name,amps,want", [
    ("vestel_evc04", 16.7, 16.0), ("charx_sec", 12.99, 12.0), ("heidelberg_ec", 12.37, 12.3),
    ("keba_p30", 12.3456, 12.345), ("abb_terra_ac", 7.0009, 7.0), ("dlbrig_generic", 6.0004, 6.0),
    ("alfen_ng9xx", 12.5, 12.5), ("heidelberg_ec", 16.05, 16.0), ("vestel_evc04", 6.2, 6.0)])
def test_setpoints_floor_to_the_product_resolution(name, amps, want):
    dev = Fake()
    image, drv = serve(name, dev)
    apply(image, drv, drv.setpoint_writes(amps))
    assert dev.pts["setpoint_a"] == pytest.approx(want, abs=1e-6)
    assert dev.pts["setpoint_a"] <= amps


def test_alfen_setpoint_is_one_float32_request():
    drv = driver_for("alfen")
    w = drv.setpoint_writes(13.5)
    assert w == [("holding", 1210, [0x4158, 0x0000])]
    assert drv.heartbeat_is_setpoint and drv.heartbeat_writes() == []
    assert drv.heartbeat_interval_s == 25.0
    assert drv.failsafe_writes(6, 30) == []            # safe current / validity: installer settings


def test_keba_p30_pause_via_enable_p40_via_zero():
    p30, p40 = driver_for("keba_p30"), driver_for("keba_p40")
    assert p30.setpoint_writes(0) == [("holding", 5014, [0])]
    assert p30.setpoint_writes(16) == [("holding", 5004, [16000]), ("holding", 5014, [1])]
    assert p40.setpoint_writes(0) == [("holding", 5004, [0])]
    assert p40.setpoint_writes(16) == [("holding", 5004, [16000])]


PHASE_SUPPORT = {"alfen_ng9xx", "keba_p30", "keba_p40", "vestel_evc04", "dlbrig_generic"}


@pytest.mark.parametrize("name", CHARGERS)
def test_phase_writes(name):
    dev = cfake("idle_paused")
    image, drv = serve(name, dev)
    w1 = drv.phase_writes(1)
    if name not in PHASE_SUPPORT:
        assert w1 == [] and drv.phase_writes(3) == []
        return
    apply(image, drv, w1)
    assert dev.pts["phases_setting"] == 1
    apply(image, drv, drv.phase_writes(3))
    assert dev.pts["phases_setting"] == 3
    with pytest.raises(ValueError):
        drv.phase_writes(2)


FAILSAFE = {  # product: (safe current configurable, timeout configurable)
    "alfen_ng9xx": (False, False), "charx_sec": (True, True), "keba_p30": (True, True),
    "keba_p40": (True, True), "heidelberg_ec": (True, True), "vestel_evc04": (True, True),
    "abb_terra_ac": (False, True), "dlbrig_generic": (True, True),
}
INTERVAL_BEFORE = {"alfen_ng9xx": 25.0, "vestel_evc04": 5.0, "abb_terra_ac": 30.0}
INTERVAL_AFTER_30S = {"alfen_ng9xx": 25.0, "vestel_evc04": 7.5}
HEARTBEAT_MODE = {"alfen_ng9xx": "setpoint", "charx_sec": "setpoint", "keba_p30": "timeout",
                  "keba_p40": "timeout", "heidelberg_ec": "poll", "vestel_evc04": "register",
                  "abb_terra_ac": "poll", "dlbrig_generic": "register"}


@pytest.mark.parametrize("name", CHARGERS)
def test_failsafe_and_heartbeat(name):
    dev = cfake("charging", safe_current_a=0.0, watchdog_timeout_s=0.0)
    image, drv = serve(name, dev)
    assert drv.heartbeat_mode == HEARTBEAT_MODE[name]
    assert drv.heartbeat_is_setpoint == (HEARTBEAT_MODE[name] == "setpoint")
    assert drv.heartbeat_interval_s == INTERVAL_BEFORE.get(name)
    w = drv.failsafe_writes(6, 30)
    apply(image, drv, w)
    safe, timeout = FAILSAFE[name]
    assert dev.pts["safe_current_a"] == (pytest.approx(6.0) if safe else 0.0)
    assert dev.pts["watchdog_timeout_s"] == (pytest.approx(30.0) if timeout else 0.0)
    assert drv.heartbeat_interval_s == INTERVAL_AFTER_30S.get(name, 15.0)
    # one controller cycle feeds the product's watchdog
    dev.writes.clear()
    run(image, drv)
    hb = drv.heartbeat_writes()
    if drv.heartbeat_is_setpoint or drv.heartbeat_by_poll:
        assert hb == []
    else:
        assert hb
    apply(image, drv, hb)
    if drv.heartbeat_is_setpoint:
        apply(image, drv, drv.setpoint_writes(16.0))
    assert dev.written("heartbeat"), name
    if name.startswith("keba"):
        assert dev.written("watchdog_timeout_s") == [30]      # KEBA: rewrite 5018


def test_failsafe_edge_values():
    charx = driver_for("charx_sec")
    assert charx.failsafe_writes(0, 0) == [("holding", 1306, [0]), ("holding", 1307, [65535])]
    assert charx.heartbeat_interval_s is None                   # watchdog disabled
    heid = driver_for("heidelberg_ec")
    w = heid.failsafe_writes(7.25, 120)                         # 257 is U16 ms: <= 65.535 s
    assert w == [("holding", 262, [72]), ("holding", 257, [65535])]
    assert heid.heartbeat_interval_s == pytest.approx(65.535 / 2)
    keba = driver_for("keba_p30")
    assert keba.heartbeat_writes() == []                        # nothing configured yet
    keba.failsafe_writes(3, 10.9)                               # < 6 A: 0 (pause on loss)
    assert keba.failsafe_writes(3, 10.9) == [("holding", 5016, [0]), ("holding", 5018, [10])]
    assert keba.heartbeat_writes() == [("holding", 5018, [10])]
    gen = driver_for("generic")
    assert gen.failsafe_writes(6, 2.5) == [("holding", 4, [0, 6000]), ("holding", 6, [0, 2500])]
    assert gen.heartbeat_writes() == [("holding", 10, [1])]


# --- API details ----------------------------------------------------------------------------------
def test_driver_for_names_units_and_kinds():
    assert isinstance(driver_for("keba"), ChargerDriver) and driver_for("keba").unit == 255
    assert isinstance(driver_for("eastron_sdm630"), MeterDriver)
    assert driver_for(get_profile("vestel"), 255).unit == 255
    with pytest.raises(ValueError):
        MeterDriver("keba_p30")
    with pytest.raises(ValueError):
        ChargerDriver("sdm630")
    with pytest.raises(ValueError):
        driver_for("alfen", 7)
    plan = driver_for("sdm630").read_plan()
    assert all(isinstance(q, tuple) and len(q) == 3 for q in plan)
    r: Request = plan[0]
    assert r[0] == "input"


def test_profile_driver_attribute_is_backward_compatible():
    p = get_profile("keba_p30")
    bare = replace(p, name="keba_bare", driver=None)
    assert bare.driver is None and isinstance(p.driver, ChargerSpec)
    with pytest.raises(ValueError):
        ChargerDriver(bare)
    assert replace(p, driver=None) == p                          # not part of equality
    m = replace(get_profile("em24"), name="em24_bare", driver=None)
    image, drv = serve(m, meter_fake((-1.0, 2.0, 3.0), signed=False))
    assert run(image, drv) == pytest.approx([-1.0, 2.0, 3.0], abs=0.001)   # default: sign from P
    Profile(name="x", vendor="v", model="m", kind="meter", transport="tcp", registers=())


# --- with the real charger model ------------------------------------------------------------------
@pytest.mark.parametrize("name", CHARGERS)
def test_real_charge_point_session(name):
    """A whole session against the firmware model: configure, plug, charge, pause, resume."""
    from dlbrig.firmware_sim.ev import EV
    from dlbrig.firmware_sim.evse import ChargePoint
    drv = driver_for(name)
    cp = ChargePoint()
    image = DeviceImage(drv.profile, {drv.unit: [cp] if drv.profile.connectors > 1 else cp})
    t = 0

    def cycle(dt_ms, amps=None):
        nonlocal t
        for _ in range(int(dt_ms // 1000)):
            t += 1000
            cp.advance(t)
            apply(image, drv, drv.heartbeat_writes(), t)
            if drv.heartbeat_is_setpoint and amps is not None:
                apply(image, drv, drv.setpoint_writes(amps), t)
        return drv.decode([image.read(drv.unit, tb, a, n, t) for tb, a, n in drv.read_plan()])

    assert cycle(1000).state == "disconnected"
    apply(image, drv, drv.failsafe_writes(6, 30), t)
    apply(image, drv, drv.setpoint_writes(16), t)
    cp.plug(EV.sedan_3p(start_delay_ms=2000), t)
    r = cycle(15000, 16)
    assert r.state == "charging" and max(r.currents_a) == pytest.approx(16, abs=1.0)
    assert not cp.points()["in_failsafe"]
    apply(image, drv, drv.setpoint_writes(10), t)
    r = cycle(15000, 10)
    assert r.state == "charging" and max(r.currents_a) == pytest.approx(10, abs=1.0)
    apply(image, drv, drv.setpoint_writes(0), t)
    r = cycle(15000, 0)
    assert max(r.currents_a) < 0.5
    # paused by the controller: 0 A keeps the point released; an enable-pause clears the
    # release, which the charger model reports as "unavailable" (module docstrings)
    assert r.state == ("unavailable" if drv.spec.pause == "enable" else "connected_idle")
    apply(image, drv, drv.setpoint_writes(13), t)
    r = cycle(15000, 13)
    assert r.state == "charging" and max(r.currents_a) == pytest.approx(13, abs=1.0)
