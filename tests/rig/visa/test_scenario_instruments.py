"""The scenario's instruments block: roles, precise errors, the showroom bench."""
from __future__ import annotations

import pytest

from dlbrig.firmware_sim.instruments import INSTRUMENT_KINDS
from dlbrig.rig.scenario import ScenarioError, load_scenario
from dlbrig.rig.scenario.loader import validate
from rig_cli_helpers import TRACEBACK, dlbrig

SITE = {
    "name": "inst", "duration": "1m",
    "site": {"voltage_v": 230, "circuits": [{"name": "main", "limit_a": 63, "meter": True}],
             "chargers": [{"name": "cp1", "circuit": "main", "max_a": 32},
                          {"name": "cp2", "circuit": "main", "phases": 1, "phase_map": ["L2"], "max_a": 16}]},
}


def check(instruments):
    return validate({**SITE, "instruments": instruments}, file="bench.yaml")


def test_roles_resolve_to_charger_conductors_and_circuit_phases():
    sc = check([{"name": "l", "model": "itech_it8615", "ev": "cp2"},
                {"name": "wt", "model": "yokogawa_wt500", "elements": ["cp1.1", None, "cp1.L3"]},
                {"name": "d", "model": "keysight_34465a", "charger": "cp1", "conductor": 2, "scale": 0.01},
                {"name": "g", "model": "chroma_61504", "circuit": "main", "phase": "L3"},
                {"name": "real", "model": "keysight_34465a", "charger": "cp2",
                 "resource": "TCPIP0::10.0.0.7::5025::SOCKET"}])
    by = {s.name: s for s in sc.instruments}
    assert by["l"].channels == [("charger", "cp2", 0)] and by["l"].kind == "eload"
    assert by["wt"].channels == [("charger", "cp1", 0), None, ("charger", "cp1", 2)]
    assert by["d"].channels == [("charger", "cp1", 1)]
    assert by["g"].channels == [("circuit", "main", 2)]
    assert by["real"].emulated is False and by["l"].emulated is True


@pytest.mark.parametrize("instruments,where,problem", [
    ([{"name": "x", "model": "fluke_87"}], "instruments[0] (x).model", "unknown instrument model 'fluke_87'"),
    ([{"name": "l", "model": "chroma_63804"}], "instruments[0] (l).ev", "an electronic load needs ev"),
    ([{"name": "l", "model": "chroma_63804", "ev": "cp9"}], "instruments[0] (l).ev", "unknown charger 'cp9'"),
    ([{"name": "l", "model": "chroma_63804", "ev": "cp2", "conductor": 2}], "instruments[0] (l).ev",
     "charger 'cp2' has 1 conductor(s), no conductor 2"),
    ([{"name": "l", "model": "chroma_63804", "ev": "cp1", "circuit": "main"}], "instruments[0] (l).circuit",
     "not a field of a eload"),
    ([{"name": "w", "model": "yokogawa_wt500", "elements": ["cp1.1", "cp1.2", "cp1.3", "cp2.1"]}],
     "instruments[0] (w).elements", "yokogawa_wt500 has 3 elements, 4 given"),
    ([{"name": "w", "model": "yokogawa_wt500", "elements": ["cp1-1"]}], "instruments[0] (w).elements[0]",
     "expected 'charger.N'"),
    ([{"name": "w", "model": "yokogawa_wt500", "elements": ["cp1.1", "cp1.1"]}], "instruments[0] (w).elements[1]",
     "already measured by element 1"),
    ([{"name": "g", "model": "chroma_61504", "circuit": "mian"}], "instruments[0] (g).circuit",
     "unknown circuit 'mian'"),
    ([{"name": "g", "model": "chroma_61504", "circuit": "main", "phase": "L4"}], "instruments[0] (g).phase",
     "must be L1, L2 or L3"),
    ([{"name": "d", "model": "keysight_34465a", "charger": "cp1", "resource": "GPIB0::12::INSTR"}],
     "instruments[0] (d).resource", "not a VISA socket resource"),
    ([{"name": "d", "model": "keysight_34465a", "charger": "cp1"},
      {"name": "d", "model": "keysight_34465a", "charger": "cp2"}], "instruments[1] (d).name",
     "instrument 'd' already defined (instruments[0])"),
    ([{"name": "d", "model": "keysight_34465a", "charger": "cp1", "volts": 3}], "instruments[0] (d).volts", ""),
])
def test_bad_instruments_are_rejected_with_field_and_problem(instruments, where, problem):
    with pytest.raises(ScenarioError) as exc:
        check(instruments)
    msg = str(exc.value)
    assert msg.startswith("bench.yaml") and where in msg and problem in msg, msg


def test_cli_reports_file_line_field_problem(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("name: bad\nduration: 1m\nsite:\n  circuits: [{name: main, limit_a: 32, meter: true}]\n"
                 "  chargers: [{name: cp1, circuit: main, max_a: 16}]\n"
                 "instruments:\n  - {name: l, model: chroma_63804, ev: cp7}\n")
    r = dlbrig("run", p, "--duration", "5s", "--out", tmp_path / "o", timeout=60)
    assert r.returncode == 2 and TRACEBACK not in r.stderr
    assert "bad.yaml:7" in r.stderr and "instruments[0] (l).ev: unknown charger 'cp7'" in r.stderr, r.stderr


def test_showroom_has_one_instrument_of_every_kind_bound_to_its_chargers():
    sc = load_scenario("showroom")
    kinds = {s.kind for s in sc.instruments}
    # an EV simulator is the EV of its charger (it takes over the socket): the FS stand-in and
    # `dlbrig emulate --ev-sim` add one (tests/rig/visa/test_ev_simulator.py), not the showroom
    assert kinds == set(INSTRUMENT_KINDS) - {"ev_simulator"}
    chargers = set(sc.core_site.charger_names)
    for s in sc.instruments:
        assert s.emulated and s.channels and all(c is not None for c in s.channels)
        for what, name, _ in s.channels:
            assert name in (chargers if what == "charger" else set(sc.core_site.circuit_names))
    # every load and source within its ratings on its role: no protection trips in a normal run
    from dlbrig.firmware_sim.instruments import INSTRUMENT_MODELS
    site = sc.core_site
    for s in sc.instruments:
        info = INSTRUMENT_MODELS[s.model]
        if s.kind == "eload":
            k = site.chargers[site.charger_names.index(s.ev)]
            assert k.max_ma / 1000 * 1.1 <= info.max_current_a
            assert k.max_ma / 1000 * 1.1 * 230 <= info.max_power_w
