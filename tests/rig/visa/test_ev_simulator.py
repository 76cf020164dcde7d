"""The EV-side simulator instrument: its model, its SCPI command set over a real socket, its pyvisa
driver (arming, protection first, safe state) and its coupling to a charger model (the EV it is,
and the time-stamped log of the charger's responses)."""
from __future__ import annotations

import copy

import pytest

from dlbrig.firmware_sim.instruments import EVSIM_OPTIONS, make_instrument
from dlbrig.rig.visa.drivers import EvSimulatorDriver, NotArmed, direct_driver, identify, open_driver


def test_scpi_command_set_and_driver_over_a_socket(instruments):
    bench = instruments(sim="keysight_sl1040a")
    res = bench.resource("sim")
    ident = identify(res)
    assert (ident.kind, ident.vendor, ident.model) == ("ev_simulator", "Keysight Technologies", "SL1040A")
    d = open_driver(res, armed=True, expect_kind="ev_simulator")
    try:
        assert isinstance(d, EvSimulatorDriver) and d.options() == EVSIM_OPTIONS
        with pytest.raises(NotArmed, match="protection"):
            d.set_cp("C")                  # the load's protection comes first
        d.set_protection(current_a=80)     # capped at the instrument's rating
        assert float(d.query("LOAD:CURR:PROT?")) == 32.0
        d.set_load(16, mode="FIX")
        d.set_cp("C")
        d.set_residual(dc_ma=6, ac_ma=30)
        assert d.query("CP?") == "C" and float(d.query("RCD:DC?")) == pytest.approx(0.006)
        assert float(d.query("RCD:AC?")) == pytest.approx(0.030)
        assert d.query("LOAD:MODE?") == "FIX" and d.output_on()
        # malformed input only queues errors
        d.write("CP:STAT X")
        d.write("LOAD:CURR 40")            # above the protection
        d.write("LOAD:MODE SIDEWAYS")
        codes = [c for c, _ in d.errors()]
        assert codes == [-222, -222, -224], codes
        # no charger coupled (no bench): nothing applied, the log empty, the clock at 0
        assert d.events() == [] and d.clock_ms() == 0
        assert d.measure() == {"cp": "A", "duty_pct": 100.0, "contactor": False, "current_a": 0.0}
        assert d.safe_off() is True and not d.output_on()
        assert d.query("CP?") == "A" and d.query("CP:DIOD?") == "1" and d.query("LOAD?") == "0"
    finally:
        d.close()


def test_driver_refuses_outputs_unarmed_and_a_missing_option_is_hardware_missing():
    model = make_instrument("comemso_epts", serial="SIM-x", options=("CP", "LOG"))
    d = direct_driver(model, armed=False)
    d.set_cp("A")                          # the safe state needs no arming
    with pytest.raises(NotArmed):
        d.set_cp("B")
    with pytest.raises(NotArmed):
        d.set_residual(dc_ma=6)
    armed = direct_driver(model, armed=True)
    armed.set_protection(current_a=16)     # no LOAD option: nothing to protect, nothing written
    assert armed.options() == ("CP", "LOG")
    armed.write("RCD:DC 0.006")
    armed.write("LOAD ON")
    assert [c for c, _ in armed.errors()] == [-241, -241]
    assert armed.safe_off() is True        # as safe as it can be: what it has is off
    assert not model.output_on


def _bench(faults=None):
    from dlbrig.core import Site
    from dlbrig.rig.certify.catalog import select
    from dlbrig.rig.plant import Plant
    from dlbrig.rig.scenario.loader import validate
    from dlbrig.rig.visa.bench import EmulatedBench

    data = copy.deepcopy(select("FS-009")[0].spec)
    data.update(name="evsim", vehicles=[], instruments=[{"name": "sim", "model": "keysight_sl1040a", "ev": "cp1"}])
    if faults:
        data["chargers"][0]["faults"] = faults
    sc = validate(data, file="<test>")
    plant = Plant(sc, Site.from_dict(sc.site))
    bench = EmulatedBench(sc, plant)
    d = direct_driver(bench.models["sim"], armed=True)
    d.set_protection(current_a=32)
    t = [0]

    def run(ms):                           # the physics loop of wire mode, 100 ms ticks
        for _ in range(ms // 100):
            t[0] += 100
            plant.advance(t[0])
            bench.couple(t[0])
    return plant, d, run


@pytest.mark.parametrize("slow_ms", [0, 500])
def test_coupled_to_a_charger_it_is_the_ev_and_time_stamps_the_responses(slow_ms):
    plant, d, run = _bench({"slow_contactor_ms": slow_ms} if slow_ms else None)
    d.set_load(16, mode="FOLL")
    d.set_cp("B")
    run(500)
    d.set_cp("C")
    run(1000)
    m = d.measure()
    assert m["cp"] == "C2" and m["contactor"] and m["duty_pct"] == pytest.approx(10.0)   # no set-point: the safe 6 A
    assert plant.chargers["cp1"].currents_a() == [6.0, 6.0, 6.0]    # what the safe current's PWM allows
    d.set_cp("B")
    run(1000)
    log = d.events()
    kinds = [(k, v) for _, k, v in log]
    assert kinds == [("LOAD", 16.0), ("CP", "B"), ("PWM", pytest.approx(10.0)), ("CP", "C"), ("CONTACTOR", 1.0),
                     ("CP", "B"), ("CONTACTOR", 0.0)], kinds
    t_b = next(t for t, k, v in log if k == "CP" and v == "B" and t > 500)
    t_open = next(t for t, k, v in log if k == "CONTACTOR" and v == 0)
    assert t_open - t_b == 50 + slow_ms    # the charger's own timing, to the millisecond, not the 100 ms tick
    assert d.safe_off()
    run(200)
    assert plant.chargers["cp1"].ev is None and [(k, v) for _, k, v in d.events()] == [("LOAD", 0.0), ("CP", "A"), ("PWM", 100.0)]


def test_scenario_binds_an_ev_simulator_to_a_charger_and_validates_it():
    from dlbrig.rig.certify.catalog import select
    from dlbrig.rig.scenario import ScenarioError
    from dlbrig.rig.scenario.loader import validate

    data = copy.deepcopy(select("FS-009")[0].spec)
    data["name"] = "evsim"
    data["instruments"] = [{"name": "sim", "model": "comemso_epts", "ev": "cp1"}]
    (spec,) = validate(data, file="<t>").instruments
    assert spec.kind == "ev_simulator" and spec.channels == [("charger", "cp1", 0)]
    for bad, msg in [({"name": "sim", "model": "comemso_epts"}, "an EV simulator needs ev"),
                     ({"name": "sim", "model": "comemso_epts", "ev": "cp9"}, "unknown charger 'cp9'"),
                     ({"name": "sim", "model": "comemso_epts", "ev": "cp1", "circuit": "main"},
                      "not a field of a ev_simulator")]:
        data["instruments"] = [bad]
        with pytest.raises(ScenarioError, match=msg):
            validate(data, file="<t>")


def test_the_simulator_takes_over_a_socket_and_the_plant_does_not_unplug_it():
    plant, d, run = _bench()
    plant._plug("cp1", "sedan_3p", 0, vehicle="ev1", depart_ms=1500)    # a scenario vehicle, leaving at 1.5 s
    plant._later(1500, lambda: plant._unplug("cp1", 1500))
    run(300)
    d.set_cp("B")
    run(2000)                              # the departure comes and goes: the simulator's EV stays
    cp = plant.chargers["cp1"]
    assert type(cp.ev).__name__ == "SimulatedEv"
    assert plant.sessions[0].left_ms == 400                           # the vehicle's session ended at the takeover
    assert any("unplug ignored" in text for _, text in plant.events_log)
