"""A meter model read through a cached register image (fast mode) answers what plain reads answer.

``Meter.point(name)`` lets the image look up only the points a read needs (as for the charger
model), which makes a meter's read plan memoizable; every second most of its values move, and
then ``DeviceImage._plan_regen`` re-encodes each register from its point instead of rebuilding the
plan. The cases below move the values forward, back to earlier values (a memo that kept stale
dependencies would answer the old words) and flip faults in place, and compare every answer
(the memo's own lists with ``shared=True``, else copies) with an image without caches over the
same model.
"""
from __future__ import annotations

import random

import pytest

from dlbrig.firmware_sim.meter import METER_CONFIG_POINTS, METER_FAULTS, Meter
from dlbrig.firmware_sim.profiles import DeviceImage, ModbusError, get_profile
from dlbrig.firmware_sim.profiles.driver import driver_for
from dlbrig.firmware_sim.profiles import image as image_mod

METERS = ["em24", "em340", "sdm120", "sdm630", "sdm72"]


def test_point_is_points_of_that_name_under_every_fault():
    m = Meter(update_interval_ms=1000, seed=4)
    m.advance(1000, [12.5, -3.0, 7.25], [230.0, 231.0, 229.0])
    for fault in METER_FAULTS:
        m.fault = fault
        pts = m.points()
        for name, value in pts.items():
            got = m.point(name)
            assert got == value or (got != got and value != value), (fault, name)
        with pytest.raises(KeyError):
            m.point("no_such_point")
    assert set(METER_CONFIG_POINTS) <= set(m.points())


def _answer(fn):
    try:
        return ("ok", fn())
    except ModbusError as exc:
        return ("exc", exc.code)


@pytest.mark.parametrize("name", METERS)
def test_cached_plan_reads_equal_plain_reads(name, monkeypatch):
    p = get_profile(name)
    drv = driver_for(p)
    m = Meter(update_interval_ms=1000, seed=2)
    fast = DeviceImage(p, {drv.unit: m}, cache=True)
    plain = DeviceImage(p, {drv.unit: m})
    plan = drv.read_plan_view()
    regens = []
    real = image_mod.DeviceImage._plan_regen
    monkeypatch.setattr(image_mod.DeviceImage, "_plan_regen",
                        lambda self, *a: regens.append(1) or real(self, *a))
    rng = random.Random(name)
    values = [[20.0, 10.0, 5.0], [21.5, 9.0, 5.0], [20.0, 10.0, 5.0], [-4.0, 10.0, 30.0]]
    t = 0
    for k in range(120):
        t += 1000
        cur = values[k % len(values)] if k < 60 else [rng.uniform(-40, 40) for _ in range(3)]
        m.advance(t, cur, [230.0, 230.0 + (k % 7 == 0), 229.0])
        if k in (70, 90):
            m.fault = rng.choice(["nan", "zero", "garbage", "frozen"])
        if k in (80, 100):
            m.fault = None
        fast.invalidate()
        got = _answer(lambda: fast.read_many(drv.unit, plan, t, shared=k % 3 != 0))
        want = _answer(lambda: [plain.read(drv.unit, tb, a, n, t) for tb, a, n in plan])
        assert got == want, (name, k)
    assert regens, "the meter's plan was never re-encoded in place"
