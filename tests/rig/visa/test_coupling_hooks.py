"""The physics-side hooks the instrument coupling uses, without any instrument:
ChargePoint.set_draw_limit (an electronic load standing in for the EV) and Plant.set_supply (an AC
source standing in for the grid of one circuit phase)."""
from __future__ import annotations

import pytest

from dlbrig.core import Site
from dlbrig.firmware_sim import EV, ChargePoint, EvseConfig
from dlbrig.rig.plant import Plant
from dlbrig.rig.scenario import validate


def _charging_point():
    cp = ChargePoint(EvseConfig(hw_max_current_a=16, hw_phases=3, safe_current_a=16.0))
    cp.plug(EV.preset("sedan_3p", start_delay_ms=0, reaction_delay_ms=0, draw_fraction=1.0), 0)
    cp.advance(5000)
    return cp


def test_draw_limit_caps_one_conductor_and_demand_stays():
    cp = _charging_point()
    assert cp.currents_a() == [16.0, 16.0, 16.0]              # control: no limit
    cp.set_draw_limit(0, 10.0, 6000)
    assert cp.currents_a() == [10.0, 16.0, 16.0] and cp.demand_a() == [16.0, 16.0, 16.0]
    cp.set_draw_limit(1, 0.0, 7000)
    assert cp.currents_a() == [10.0, 0.0, 16.0]
    cp.set_draw_limit(0, 30.0, 8000)                            # above the demand: no effect
    assert cp.currents_a() == [16.0, 0.0, 16.0]
    cp.set_draw_limit(1, None, 9000)
    cp.set_draw_limit(0, None, 9000)
    assert cp.draw_limit_a is None and cp.currents_a() == [16.0, 16.0, 16.0]
    assert cp.points()["current_l1_a"] == 16.0


def test_draw_limit_belongs_to_the_socket_across_plug_ins():
    cp = _charging_point()
    cp.set_draw_limit(2, 0.0, 6000)
    cp.unplug(7000)
    cp.plug(EV.preset("sedan_3p", start_delay_ms=0, reaction_delay_ms=0, draw_fraction=1.0), 8000)
    cp.advance(12000)
    assert cp.currents_a() == [16.0, 16.0, 0.0]


def test_all_zero_limit_is_an_ev_drawing_nothing():
    cp = _charging_point()
    for k in range(3):
        cp.set_draw_limit(k, 0.0, 6000)
    assert cp.currents_a() == [0.0, 0.0, 0.0] and cp.status == "ev_suspended"
    assert cp.evse.contactor_closed                           # the EV still requests (C)


def _nested_plant():
    sc = validate({
        "name": "nested", "start": "08:00", "duration": "10m", "seed": 1,
        "site": {"voltage_v": 230, "circuits": [{"name": "main", "limit_a": 100, "meter": True},
                                                 {"name": "sub", "parent": "main", "limit_a": 32, "meter": True}],
                 "chargers": [{"name": "cp1", "circuit": "sub", "max_a": 16},
                              {"name": "cp2", "circuit": "main", "max_a": 16}]},
        "loads": [{"circuit": "sub", "kind": "constant", "peak_a": 5},
                  {"circuit": "main", "kind": "constant", "peak_a": 7}],
        "vehicles": [{"id": "a", "preset": "sedan_3p", "charger": "cp1", "arrive": "+0s",
                      "knobs": {"start_delay_s": 0.1, "reaction_delay_s": 0.1, "draw_fraction": 1.0}},
                     {"id": "b", "preset": "sedan_3p", "charger": "cp2", "arrive": "+0s",
                      "knobs": {"start_delay_s": 0.1, "reaction_delay_s": 0.1, "draw_fraction": 1.0}}]})
    p = Plant(sc, Site.from_dict(sc.site))
    for t in range(0, 5001, 500):
        p.advance(t)
    return p


def test_supply_off_on_a_sub_circuit_phase_loses_it_below_only():
    p = _nested_plant()
    i = p.chargers["cp1"].currents_a()[1]
    assert i > 5.0
    assert p.truth["sub"] == [pytest.approx(5 + i)] * 3 and p.truth["main"][1] == pytest.approx(12 + 2 * i)
    p.set_supply("sub", 1, 0.0, p.now_ms)
    assert p.chargers["cp1"].currents_a()[1] == 0.0 and p.chargers["cp1"].evse.voltages_v[1] == 0.0
    assert p.truth["sub"][1] == 0.0                              # base load included
    assert p.truth["main"][1] == pytest.approx(7 + i)            # the rest of main is untouched
    assert p.chargers["cp2"].currents_a()[1] == pytest.approx(i)
    p.advance(p.now_ms + 1000)
    assert p.meters["sub"].points()["current_l2_a"] == 0.0 and p.meters["sub"].points()["voltage_l2_v"] == 0.0
    p.set_supply("sub", 1, None, p.now_ms)                        # back to the site's supply
    p.advance(p.now_ms + 2000)
    assert p.truth["sub"][1] == pytest.approx(5 + i)


def test_supply_voltage_and_a_lost_parent_phase_wins():
    p = _nested_plant()
    p.set_supply("sub", 0, 207.0, p.now_ms)
    assert p.chargers["cp1"].evse.voltages_v[0] == 207.0 and p.chargers["cp2"].evse.voltages_v[0] == 230.0
    assert p.circuit_voltages_v("sub") == [207.0, 230.0, 230.0]
    p.set_supply("main", 0, 0.0, p.now_ms)                        # upstream lost: the sub loses it too
    assert p.chargers["cp1"].evse.voltages_v[0] == 0.0 and p.truth["main"][0] == 0.0
