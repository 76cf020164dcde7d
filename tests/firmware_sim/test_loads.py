"""Load profiles: deterministic per seed and with the documented daily shapes."""
from __future__ import annotations

import pytest

from dlbrig.firmware_sim.loads import (BUILDING_KINDS, MS_PER_DAY, MS_PER_HOUR, PV, BuildingLoad,
                                       SiteLoad, StepEvent, day_of_week)

MON, SAT, SUN = 0, 5, 6


def hourly(load, day, phase=0):
    """Mean current per hour of ``day`` (sampled every 5 min)."""
    out = []
    for h in range(24):
        t0 = day * MS_PER_DAY + h * MS_PER_HOUR
        vals = [load.current_a(t0 + k * 300_000)[phase] for k in range(12)]
        out.append(sum(vals) / len(vals))
    return out


@pytest.mark.parametrize("kind", BUILDING_KINDS)
def test_deterministic_per_seed(kind):
    a, b, c = BuildingLoad(kind, 100, seed=1), BuildingLoad(kind, 100, seed=1), BuildingLoad(kind, 100, seed=2)
    ts = range(0, 2 * MS_PER_DAY, 777_777)
    assert [a.current_a(t) for t in ts] == [b.current_a(t) for t in ts]
    assert [a.current_a(t) for t in ts] != [c.current_a(t) for t in ts]
    # query order does not matter (values are a pure function of time)
    assert [a.current_a(t) for t in reversed(ts)] == list(reversed([b.current_a(t) for t in ts]))


@pytest.mark.parametrize("seed", range(5))
def test_office_shape(seed):
    office = BuildingLoad("office", 100, seed=seed)
    for day in (MON, 2):
        h = hourly(office, day)
        peak = max(h)
        assert max(h[0:6]) < 0.30 * peak  # night
        assert 9 <= h.index(peak) <= 15
        assert h[7] < h[8] < h[9]  # morning ramp 7-9 h
        assert h[12] < h[11]  # lunch dip
        assert h[19] < 0.5 * peak  # drop after 18 h
    assert sum(hourly(office, SAT)) < 0.5 * sum(hourly(office, MON))
    assert sum(hourly(office, SUN)) < 0.5 * sum(hourly(office, MON))


@pytest.mark.parametrize("seed", range(3))
def test_hotel_shape(seed):
    h = hourly(BuildingLoad("hotel", 100, seed=seed), MON)
    assert max(h[6:10]) > 1.25 * min(h[10:16])  # morning peak above midday
    assert max(h[18:22]) > 1.25 * min(h[10:16])  # evening peak above midday
    assert max(h[18:22]) >= max(h[6:10])
    assert min(h[0:5]) > 0.3 * max(h)  # a hotel never sleeps completely


@pytest.mark.parametrize("seed", range(3))
def test_hospital_shape(seed):
    hosp = BuildingLoad("hospital", 100, seed=seed)
    h = hourly(hosp, MON)
    assert min(h) >= 0.55 * 100 - 1e-9  # critical base
    assert min(h[0:5]) > 0.5 * max(h)
    assert sum(h[9:16]) / 7 > 1.2 * sum(h[0:5]) / 5  # daytime load on top
    assert hosp.critical_current_a(0) == pytest.approx([55.0, 55.0, 55.0])


@pytest.mark.parametrize("seed", range(3))
def test_residential_shape(seed):
    h = hourly(BuildingLoad("residential", 100, seed=seed), MON)
    assert 18 <= h.index(max(h)) <= 21  # strong evening peak
    assert h[7] > 1.3 * h[10]  # morning peak
    assert max(h[1:5]) < 0.4 * max(h)


def test_unbalance():
    b = BuildingLoad("office", 100, seed=0, unbalance=0.2, noise_fraction=0.0)
    i = b.current_a(11 * MS_PER_HOUR)
    assert i[0] > i[1] > i[2] and sum(i) / 3 == pytest.approx(100.0)
    w = BuildingLoad("office", 100, seed=0, unbalance=(2.0, 1.0, 0.0), noise_fraction=0.0)
    assert w.current_a(11 * MS_PER_HOUR) == pytest.approx([200.0, 100.0, 0.0])
    with pytest.raises(ValueError):
        BuildingLoad("castle", 10)


def test_pv_clear_day():
    pv = PV(30.0, "clear")
    h = hourly(pv, MON)
    assert all(x == 0.0 for x in h[0:6] + h[18:24])
    assert all(x <= 0.0 for x in h)
    assert h.index(min(h)) in (11, 12)  # most negative (max export) around noon
    peak_w = -min(pv.current_a(12 * MS_PER_HOUR)) * 3 * 230
    assert peak_w == pytest.approx(30_000 * 0.85, rel=1e-9)


def test_pv_cloudy_day_is_lower_and_has_ramps():
    clear, cloudy = PV(30.0, "clear"), PV(30.0, "cloudy", seed=4)
    assert sum(hourly(cloudy, MON)) > 0.7 * sum(hourly(clear, MON))  # less export (negative)
    steps = [abs(cloudy.current_a(t + 10_000)[0] - cloudy.current_a(t)[0])
             for t in range(9 * MS_PER_HOUR, 15 * MS_PER_HOUR, 10_000)]
    assert max(steps) > 0.5  # fast ramps exist...
    assert max(steps) < 20.0  # ...but as ramps, not instantaneous jumps
    assert PV(30.0, "cloudy", seed=4).current_a(45_000_000) == cloudy.current_a(45_000_000)
    assert PV(30.0, "cloudy", seed=5).current_a(45_000_000) != cloudy.current_a(45_000_000)
    mixed = PV(30.0, ["clear", "cloudy"], seed=4)
    assert mixed.weather_on(0) == "clear" and mixed.weather_on(1) == "cloudy"


def test_single_phase_pv():
    pv = PV(5.0, phases=1, phase=2)
    i = pv.current_a(12 * MS_PER_HOUR)
    assert i[0] == 0.0 and i[2] == 0.0 and i[1] < -15.0


def test_step_event_and_site_sum():
    step = StepEvent(at_ms=1000, delta_a=[10.0, 0.0, 5.0], duration_ms=500)
    assert step.current_a(999) == [0.0, 0.0, 0.0]
    assert step.current_a(1000) == [10.0, 0.0, 5.0]
    assert step.current_a(1499) == [10.0, 0.0, 5.0]
    assert step.current_a(1500) == [0.0, 0.0, 0.0]
    forever = StepEvent(at_ms=0, delta_a=3.0)
    assert forever.current_a(10 * MS_PER_DAY) == [3.0, 3.0, 3.0]
    office = BuildingLoad("office", 50, seed=1)
    pv = PV(20.0)
    site = SiteLoad(office, pv).add(step)
    t = 1200
    expect = [a + b + c for a, b, c in zip(office.current_a(t), pv.current_a(t), step.current_a(t))]
    assert site.current_a(t) == pytest.approx(expect)
    noon = 12 * MS_PER_HOUR + SUN * MS_PER_DAY
    assert min(SiteLoad(office, pv).current_a(noon)) < 0  # net export on a sunny Sunday


def test_day_zero_is_monday():
    assert day_of_week(0) == 0 and day_of_week(5 * MS_PER_DAY) == 5 and day_of_week(7 * MS_PER_DAY) == 0
