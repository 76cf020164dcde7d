"""Meter model: integration, sampling grid, noise determinism, electrical quantities, faults."""
from __future__ import annotations

import math

import pytest

from dlbrig.firmware_sim.meter import METER_CONFIG_POINTS, METER_POINTS, Meter

H = 3_600_000


def test_points_vocabulary():
    p = Meter().points()
    assert set(p) == set(METER_POINTS) | set(METER_CONFIG_POINTS)
    assert all(isinstance(p[k], float) for k in METER_POINTS)


def test_energy_integration_import_export_per_phase():
    m = Meter()
    m.advance(0, [10.0, 5.0, -3.0])
    m.advance(H, [10.0, 5.0, -3.0])
    p = m.points()
    assert p["import_l1_kwh"] == pytest.approx(2.3)
    assert p["import_l2_kwh"] == pytest.approx(1.15)
    assert p["export_l3_kwh"] == pytest.approx(0.69) and p["import_l3_kwh"] == 0.0
    assert p["import_kwh"] == pytest.approx(2.3 + 1.15 - 0.69)  # net total ("saldierend")
    assert p["export_kwh"] == 0.0
    m.advance(2 * H, [-10.0, -10.0, -10.0])  # held 10/5/-3 over the 2nd hour, export from now
    m.advance(3 * H, [0.0, 0.0, 0.0])
    p = m.points()
    assert p["export_kwh"] == pytest.approx(3 * 2.3)
    assert p["total_kwh"] == pytest.approx(p["import_kwh"] + p["export_kwh"])
    assert m.true_energy_kwh()[0] == pytest.approx(2 * (2.3 + 1.15 - 0.69))


def test_energy_counters_never_decrease_and_independent_of_call_rate():
    coarse, fine = Meter(), Meter()
    truth = lambda t: [5.0 + (t // 60_000) % 7, -2.0, 1.0]  # changes every minute
    for t in range(0, H + 1, 60_000):
        coarse.advance(t, truth(t))
    last = 0.0
    for t in range(0, H + 1, 1000):
        fine.advance(t, truth(t - t % 60_000))
        assert fine.points()["import_kwh"] >= last
        last = fine.points()["import_kwh"]
    assert coarse.points()["import_kwh"] == pytest.approx(fine.points()["import_kwh"], rel=1e-12)


def test_update_interval_holds_display_between_samples():
    m = Meter(update_interval_ms=1000)
    m.advance(0, [1.0, 1.0, 1.0])
    m.advance(999, [2.0, 2.0, 2.0])
    assert m.currents_a == [1.0, 1.0, 1.0]
    m.advance(1000, [3.0, 3.0, 3.0])
    assert m.currents_a == [3.0, 3.0, 3.0]  # the sample at 1000 sees the truth given at 1000
    m.advance(2500, [4.0, 4.0, 4.0])
    assert m.currents_a == [3.0, 3.0, 3.0]  # sample at 2000 saw the held 3 A


def test_noise_deterministic_per_seed_and_cadence_independent():
    def run(seed, step):
        m = Meter(noise_a=0.2, seed=seed, update_interval_ms=500)
        out = {}
        for t in range(0, 20_001, step):
            m.advance(t, [10.0, 10.0, 10.0])
            if t % 1000 == 0:
                out[t] = m.currents_a
        return out
    a, b, c = run(1, 100), run(1, 250), run(2, 100)
    assert a == b and a != c
    vals = [x for v in a.values() for x in v]
    assert 9.0 < min(vals) < 10.0 < max(vals) < 11.0


def test_resolution_quantises():
    m = Meter(resolution_a=0.1, resolution_v=1.0)
    m.advance(0, [1.234, 5.678, 0.04], [231.4, 229.6, 230.0])
    assert m.currents_a == [1.2, 5.7, 0.0] and m.voltages_v == [231.0, 230.0, 230.0]


def test_power_quantities_with_power_factor():
    m = Meter(power_factor=0.8)
    m.advance(0, [10.0, 10.0, -10.0], [230.0, 230.0, 230.0])
    p = m.points()
    assert p["power_l1_w"] == pytest.approx(1840.0) and p["va_l1"] == pytest.approx(2300.0)
    assert p["var_l1"] == pytest.approx(1380.0) and p["pf_l1"] == pytest.approx(0.8)
    assert p["power_l3_w"] == pytest.approx(-1840.0) and p["pf_l3"] == pytest.approx(-0.8)
    assert p["power_total_w"] == pytest.approx(1840.0) and p["va_total"] == pytest.approx(6900.0)
    assert p["frequency_hz"] == 50.0


def test_neutral_current():
    m = Meter()
    m.advance(0, [10.0, 10.0, 10.0])
    assert m.points()["current_n_a"] == pytest.approx(0.0, abs=1e-9)
    m.advance(1000, [10.0, 0.0, 0.0])
    assert m.points()["current_n_a"] == pytest.approx(10.0)


def test_unsigned_current_option_and_single_phase_system():
    m = Meter(signed_current=False)
    m.advance(0, [-5.0, 1.0, 1.0])
    assert m.currents_a[0] == 5.0 and m.points()["power_l1_w"] < 0
    s = Meter(system_type=1)
    s.advance(0, [5.0, 3.0, 3.0])
    assert s.currents_a == [5.0, 0.0, 0.0]


@pytest.mark.parametrize("fault", ["frozen", "nan", "garbage", "zero"])
def test_faults_settable_at_runtime(fault):
    m = Meter(seed=3)
    m.advance(0, [5.0, 5.0, 5.0])
    before = m.points()
    m.fault = fault
    m.advance(5000, [20.0, 20.0, 20.0])
    p = m.points()
    if fault == "frozen":
        assert p == before
    elif fault == "nan":
        assert all(math.isnan(p[k]) for k in METER_POINTS)
    elif fault == "zero":
        assert p["current_l1_a"] == 0.0 and p["voltage_l1_v"] == 0.0 and p["power_total_w"] == 0.0
    else:
        twin = Meter(seed=3)
        twin.advance(0, [5.0] * 3)
        twin.fault = "garbage"
        twin.advance(5000, [20.0] * 3)
        assert p == twin.points() and p["current_l1_a"] != 20.0
    m.fault = None
    m.advance(6000, [20.0, 20.0, 20.0])
    assert m.currents_a == [20.0, 20.0, 20.0]
    assert m.points()["import_kwh"] == pytest.approx(m.true_energy_kwh()[0])


def test_bad_fault_and_config_writes():
    m = Meter()
    with pytest.raises(ValueError):
        m.fault = "melted"
    m.write_point("modbus_address", 17, 0)
    m.write_point("demand_period_min", 15, 0)
    assert m.points()["modbus_address"] == 17 and m.points()["demand_period_min"] == 15
    for name, value, exc in [("modbus_address", 0, ValueError), ("modbus_address", 248, ValueError),
                             ("baud_code", 9, ValueError), ("demand_period_min", 7, ValueError),
                             ("system_type", 1.5, ValueError), ("current_l1_a", 1, KeyError)]:
        with pytest.raises(exc):
            m.write_point(name, value, 0)


def test_rejects_time_going_backwards_and_nan_truth():
    m = Meter()
    m.advance(100, [1.0, 1.0, 1.0])
    with pytest.raises(ValueError):
        m.advance(99, [1.0, 1.0, 1.0])
    with pytest.raises(ValueError):
        m.advance(200, [math.nan, 1.0, 1.0])
