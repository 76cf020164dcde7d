"""The fast-mode shortcuts of the read path answer exactly what the plain path answers.

``DeviceImage.read_many`` (a device's whole read plan in one call, with a plan-level memo) against
``read`` per request on an image without caches, over every shipped profile bound to live models
(the showroom scenario: one device of each), while EVs plug in, charge and the controller writes
set-points: same words, same exceptions, in the same order.
"""
from __future__ import annotations

import pytest

from dlbrig.firmware_sim.profiles import ModbusError
from dlbrig.firmware_sim.profiles.driver import driver_for
from dlbrig.rig.plant import Plant
from dlbrig.rig.scenario import load_scenario


def _plants():
    sc = load_scenario("showroom", duration="3m")
    return Plant(sc, caches=True), Plant(sc, caches=False)


def _answer(fn):
    try:
        return ("ok", fn())
    except ModbusError as exc:
        return ("exc", exc.code)


def test_read_many_matches_reads_on_every_profile():
    fast, plain = _plants()
    names = list(fast.devices)
    drivers = {n: driver_for(fast.devices[n].profile, fast.devices[n].unit) for n in names}
    seen_change = set()
    last = {}
    for step, t in enumerate(range(0, 180_000, 1000)):
        fast.advance(t)
        plain.advance(t)
        for n in names:
            fd, pd, drv = fast.devices[n], plain.devices[n], drivers[n]
            plan = drv.read_plan()
            # twice at the same instant: the second answer comes from the plan memo
            for _ in range(2):
                got = _answer(lambda: fd.image.read_many(fd.unit, plan, t))
                want = _answer(lambda: [pd.image.read(pd.unit, tb, a, c, t) for tb, a, c in plan])
                assert got == want, (n, t)
            if n in last and last[n] != got:
                seen_change.add(n)
            last[n] = got
            # a request the product refuses, inside a plan: the same exception as a plain read
            bad = plan + [("holding", 0xFFF0, 16)]
            assert _answer(lambda: fd.image.read_many(fd.unit, bad, t)) == \
                _answer(lambda: [pd.image.read(pd.unit, tb, a, c, t) for tb, a, c in bad])
            if fd.kind == "charger" and step % 7 == 3:       # the controller changes the set-point
                for table, address, words in drv.setpoint_writes(6.0 + step % 11):
                    fd.image.write(fd.unit, table, address, words, t)
                    pd.image.write(pd.unit, table, address, words, t)
    # the run moved the answers of most devices (currents, states, countdowns): the memo met changes
    assert len(seen_change) >= len(names) // 2, seen_change


def test_an_arrival_after_a_write_moved_the_charger_clock_ahead():
    """Wire mode: a Modbus write (server thread, real time) advances a charger's model; the physics
    loop may apply a car arrival due a few ms earlier only afterwards. It plugs at the charger's own
    time instead of raising "time went backwards" (seen once in `dlbrig bench`'s wire run)."""
    plant = Plant(load_scenario("home"))
    v = plant._pending_vehicles[0]
    due = plant._time(v.arrive)
    cp = plant.chargers[v.charger]
    cp.advance(due + 62)                     # what the write did
    plant.advance(due + 100)
    assert cp.ev is not None
    session = plant.sessions[-1]
    assert session.charger == v.charger and session.arrive_ms == due + 62
