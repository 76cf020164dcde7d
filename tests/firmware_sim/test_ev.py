"""Vehicle model: decoding, seeded delays and draw, reaction delay, taper, presets, fault knobs."""
from __future__ import annotations

import pytest

from dlbrig.firmware_sim.ev import EV, EV_POINTS, EV_PRESETS, EvFaults, current_from_duty
from dlbrig.firmware_sim.evse import ChargePoint, EvseConfig, duty_from_current


def session(ev, setpoint=16.0, cfg=None):
    cp = ChargePoint(cfg or EvseConfig(watchdog_timeout_ms=0, hw_max_current_a=32.0))
    cp.write_point("setpoint_a", setpoint, 0)
    cp.plug(ev, 0)
    return cp


@pytest.mark.parametrize("duty,iec,j1772", [
    (2.0, None, None), (5.0, None, None), (7.5, None, None), (8.0, 6.0, None), (9.0, 6.0, None),
    (9.7, 6.0, 6.0), (10.0, 6.0, 6.0), (50.0, 30.0, 30.0), (85.0, 51.0, 51.0), (90.0, 65.0, 65.0),
    (96.0, 80.0, 80.0), (96.4, 80.0, 80.0), (96.8, 80.0, None), (100.0, None, None), (None, None, None),
])
def test_duty_decoding_tables(duty, iec, j1772):
    assert current_from_duty(duty, "iec") == iec
    assert current_from_duty(duty, "j1772") == j1772


@pytest.mark.parametrize("amps", [6.0, 7.3, 7.1234567, 13.0, 16.0, 32.0, 51.0, 52.0, 63.0, 80.0])
def test_decoding_never_exceeds_encoded_current(amps):
    got = current_from_duty(duty_from_current(amps))
    assert got <= amps and got == pytest.approx(amps if amps != 52.0 else 50.88, abs=1e-5)


def test_seeded_start_delay_and_draw_fraction_are_deterministic_and_in_range():
    a, b = EV(seed=42), EV(seed=42)
    assert (a.start_delay_ms, a.draw_fraction) == (b.start_delay_ms, b.draw_fraction)
    vals = {(EV(seed=s).start_delay_ms, EV(seed=s).draw_fraction) for s in range(50)}
    assert len(vals) > 40
    for d, f in vals:
        assert 10_000 <= d <= 40_000 and 0.95 <= f <= 1.0
    fixed = EV(seed=1, start_delay_ms=12_345, draw_fraction=0.97)
    assert (fixed.start_delay_ms, fixed.draw_fraction) == (12_345, 0.97)
    with pytest.raises(ValueError):
        EV(draw_fraction=1.05)


@pytest.mark.parametrize("name", sorted(EV_PRESETS))
def test_presets(name):
    ev = EV.preset(name, seed=1)
    assert ev.phases in (1, 2, 3) and ev.battery_kwh > 0
    assert getattr(EV, name)(seed=1) == ev
    with pytest.raises(KeyError):
        EV.preset("tractor")


def test_preset_parameters():
    assert (EV.compact_1p().phases, EV.compact_1p().max_current_a, EV.compact_1p().battery_kwh) == (1, 32.0, 40.0)
    assert (EV.sedan_3p().phases, EV.sedan_3p().max_current_a, EV.sedan_3p().battery_kwh) == (3, 16.0, 75.0)
    assert (EV.van_3p_22kw().phases, EV.van_3p_22kw().max_current_a) == (3, 32.0)
    assert (EV.legacy_1p_16a().phases, EV.legacy_1p_16a().max_current_a) == (1, 16.0)


def test_start_delay_then_draw_fraction_of_signal():
    ev = EV.sedan_3p(seed=3, start_delay_ms=15_000, reaction_delay_ms=2000, draw_fraction=0.96)
    cp = session(ev)
    cp.advance(16_999)  # perceived at 2000, C at 17000
    assert ev.cp_state == "B" and cp.currents_a() == [0.0, 0.0, 0.0]
    cp.advance(17_000)
    assert ev.cp_state == "C"
    cp.advance(17_500)  # contactor closes after the EVSE's close delay
    assert cp.currents_a() == pytest.approx([16 * 0.96] * 3)


@pytest.mark.parametrize("delay", [2000, 6000])
def test_reaction_delay_to_pwm_change(delay):
    ev = EV.sedan_3p(seed=4, start_delay_ms=10_000, reaction_delay_ms=delay, draw_fraction=1.0)
    cp = session(ev)
    cp.advance(60_000)
    cp.write_point("setpoint_a", 10.0, 60_000)  # spacing long satisfied: emitted at once
    cp.advance(60_000 + delay - 1)
    assert cp.currents_a()[0] == 16.0
    cp.advance(60_000 + delay)
    assert cp.currents_a()[0] == 10.0


def test_ev_slower_than_7s_trips_soft_overcurrent():
    ev = EV.sedan_3p(seed=4, start_delay_ms=10_000, reaction_delay_ms=9000, draw_fraction=1.0)
    cp = session(ev)
    cp.advance(60_000)
    cp.write_point("setpoint_a", 10.0, 60_000)  # limit (10 + 0.5) * 1.1 = 11.55 A < 16 A
    cp.advance(67_000)
    assert cp.points()["error_code"] == 0
    cp.advance(67_001)
    assert cp.points()["error_code"] == 4 and cp.cp_state == "F"


def test_pause_resume_goes_through_b_and_start_delay():
    ev = EV.sedan_3p(seed=5, start_delay_ms=20_000, reaction_delay_ms=2000)
    cp = session(ev)
    cp.advance(60_000)
    cp.write_point("setpoint_a", 0.0, 60_000)
    cp.advance(62_000)
    assert ev.cp_state == "B" and cp.currents_a()[0] == 0.0
    cp.advance(62_100)
    assert not cp.evse.contactor_closed
    cp.write_point("setpoint_a", 16.0, 70_000)
    cp.advance(70_000 + 2000 + 20_000 - 1)
    assert ev.cp_state == "B"
    cp.advance(70_000 + 2000 + 20_000 + 500)
    assert cp.currents_a()[0] > 15.0


def test_taper_above_threshold_and_full():
    ev = EV.compact_1p(seed=6, soc_pct=79.0, battery_kwh=10.0, start_delay_ms=10_000,
                       draw_fraction=1.0, taper_soc_pct=80.0)
    cp = session(ev, setpoint=32.0)
    cp.advance(20_000)
    assert cp.currents_a()[0] == 32.0
    seen = []
    t = 20_000
    while not ev.full and t < 6 * 3_600_000:
        t += 60_000
        cp.advance(t)
        seen.append((ev.soc, cp.currents_a()[0]))
    tapering = [i for soc, i in seen if 85 < soc < 99]
    assert tapering and all(i < 32.0 for i in tapering)
    assert all(b <= a + 1e-9 for a, b in zip(tapering, tapering[1:]))  # monotone decreasing
    assert ev.full and ev.cp_state == "B" and cp.status == "ev_suspended"
    assert ev.energy_need_kwh == pytest.approx(0.0, abs=1e-6)
    assert ev.soc == pytest.approx(100.0, abs=0.1)


def test_energy_need_and_departure():
    ev = EV(battery_kwh=50.0, soc_pct=40.0, target_soc_pct=80.0, charge_efficiency=1.0,
            departure_ms=8 * 3_600_000)
    assert ev.energy_need_kwh == pytest.approx(20.0)
    p = ev.points()
    assert set(p) == set(EV_POINTS) and p["departure_ms"] == 8 * 3_600_000


@pytest.mark.parametrize("phases,expect", [(1, [16, 0, 0]), (2, [16, 16, 0]), (3, [16, 16, 16])])
def test_phases_map_to_conductors(phases, expect):
    ev = EV(phases=phases, max_current_a=32.0, seed=7, start_delay_ms=10_000, draw_fraction=1.0)
    cp = session(ev)
    cp.advance(30_000)
    assert cp.currents_a() == [float(x) for x in expect]
    one = ChargePoint(EvseConfig(hw_phases=1, watchdog_timeout_ms=0))
    ev3 = EV(phases=3, seed=7, start_delay_ms=10_000, draw_fraction=1.0)
    one.write_point("setpoint_a", 16.0, 0)
    one.plug(ev3, 0)
    one.advance(30_000)
    assert one.currents_a() == [16.0, 0.0, 0.0]


def test_ev_limited_by_own_max():
    ev = EV.sedan_3p(seed=8, start_delay_ms=10_000, draw_fraction=1.0)
    cp = session(ev, setpoint=32.0)
    cp.advance(30_000)
    assert cp.currents_a() == [16.0, 16.0, 16.0]


def test_fault_knobs_write_point_and_missing_diode():
    ev = EV(seed=9, start_delay_ms=10_000)
    ev.write_point("missing_diode", True, 0)
    ev.write_point("overdraw_pct", 10, 0)
    assert ev.faults == EvFaults(overdraw_pct=10.0, missing_diode=True) and ev.faults.any()
    with pytest.raises(KeyError):
        ev.write_point("soc_pct", 10, 0)
    with pytest.raises(ValueError):
        ev.write_point("leakage_dc_ma", -1, 0)
    with pytest.raises(ValueError):
        ev.write_point("cp_short", "maybe", 0)
    cp = session(ev)
    cp.advance(60_000)
    assert not cp.evse.contactor_closed and cp.points()["error_code"] == 1


def test_cp_short_at_plug_and_release():
    ev = EV(seed=10, start_delay_ms=10_000)
    ev.faults.cp_short = True
    cp = session(ev)
    cp.advance(5_000)
    assert cp.cp_state == "E" and cp.status == "fault"
    ev.faults.cp_short = False
    cp.advance(30_000)
    assert cp.status == "charging"


def test_dc_leakage_trips_rcd():
    ev = EV(seed=11, start_delay_ms=10_000)
    cp = session(ev)
    cp.advance(20_000)
    ev.faults.leakage_dc_ma = 6.0
    cp.advance(29_999)
    assert cp.evse.contactor_closed
    cp.advance(30_000)
    assert not cp.evse.contactor_closed and cp.points()["error_code"] == 2


def test_legacy_ev_with_20a_cable_is_limited_by_cable_coding():
    ev = EV.legacy_1p_16a(seed=12)
    cp = session(ev, setpoint=32.0)
    assert cp.points()["cable_max_current_a"] == 20.0 and cp.evse.applied_current_a == 20.0


def test_plug_twice_is_an_error():
    ev = EV(seed=13)
    cp = session(ev)
    with pytest.raises(RuntimeError):
        cp.plug(EV(seed=14), 10)
    cp.unplug(20)
    assert not ev.plugged and ev.cp_state == "A"
