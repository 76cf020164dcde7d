"""Built-in scenario library, JSON Schema export, overrides and round trips."""
import json
import textwrap

import pytest

from dlbrig.firmware_sim import EV_PRESETS
from dlbrig.firmware_sim.profiles import get_profile, list_profiles
from dlbrig.rig.scenario import (Scenario, ScenarioError, list_scenarios, load_scenario,
                                 scenario_json_schema, validate)
from dlbrig.rig.scenario.loader import LIBRARY
from dlbrig.rig.scenario.yamlio import load_yaml

EXPECTED = {"office", "hotel", "hospital", "depot", "home", "pv_surplus", "phase_rotated",
            "arrival_burst", "base_load_step", "showroom"}
NAMES = [n for n, _ in list_scenarios()]


def test_library_lists_every_expected_scenario():
    assert EXPECTED <= set(NAMES)
    for name, summary in list_scenarios():
        assert summary and "\n" not in summary, name


@pytest.mark.parametrize("name", NAMES)
def test_builtin_loads_and_is_consistent(name):
    sc = load_scenario(name)
    assert isinstance(sc, Scenario)
    assert sc.name == name and sc.description.strip()
    assert sc.source.endswith(f"{name}.yaml")
    site = sc.core_site
    # one charger device per site charger, in site order; one meter per metered circuit
    assert [d.charger for d in sc.chargers] == site.charger_names
    assert sorted(m.circuit for m in sc.meters) == sorted(site.metered)
    for d in [*sc.meters, *sc.chargers]:
        assert d.transport in ("tcp", "rtu") and d.unit is not None
        assert get_profile(d.profile).kind == ("meter" if hasattr(d, "circuit") else "charger")
        if d.transport == "rtu":
            assert d.bus and d.baud and d.parity
    for bus, devs in sc.buses().items():
        assert len({d.unit for d in devs}) == len(devs), bus
        assert len({(d.baud, d.parity) for d in devs}) == 1, bus
    vs = sc.expand_vehicles()
    assert all(v.charger in site.charger_names and v.preset in EV_PRESETS for v in vs)
    assert all(0 <= v.arrive_ms < sc.duration_ms for v in vs)
    assert [v.arrive_ms for v in vs] == sorted(v.arrive_ms for v in vs)
    assert all(0 <= s.at_ms <= sc.duration_ms and s.line > 0 for s in sc.steps)


def test_library_sizes_and_settings_as_specified():
    office = load_scenario("office")
    assert len(office.chargers) == 30 and office.start_ms % 86_400_000 == 7 * 3_600_000
    assert office.duration_ms == 10 * 3_600_000
    assert len([c for c in office.site["circuits"] if c.get("parent") == "main"]) == 3
    assert office.site["circuits"][0]["limit_a"] == 250
    hotel = load_scenario("hotel")
    assert len(hotel.chargers) == 12 and hotel.duration_ms == 16 * 3_600_000
    hosp = load_scenario("hospital")
    assert hosp.site["policy"] == "priority" and len(hosp.chargers) == 16
    prio = [c for c in hosp.site["chargers"] if c.get("priority", 0) > 0]
    assert len(prio) == 4
    depot = load_scenario("depot")
    assert len(depot.chargers) == 200 and depot.site["policy"] in ("edf", "llf")
    assert all(v.depart_ms is not None for v in depot.expand_vehicles())
    home = load_scenario("home")
    assert len(home.chargers) == 1 and home.site["circuits"][0]["limit_a"] == 25
    pv = load_scenario("pv_surplus")
    assert any(ld.kind == "pv" and ld.kwp == 30 for ld in pv.loads)
    rot = load_scenario("phase_rotated")
    maps = {c["phase_map"][0] for c in rot.site["chargers"]}
    assert maps == {"L1", "L2", "L3"} and rot.site["circuits"][0]["unbalance_limit_a"] == 20
    burst = load_scenario("arrival_burst")
    arr = burst.expand_vehicles()
    assert len(arr) == 20 and max(v.arrive_ms for v in arr) - min(v.arrive_ms for v in arr) <= 300_000
    step = load_scenario("base_load_step")
    st = [ld for ld in step.loads if ld.kind == "step"]
    assert st and st[0].at_ms == 600_000 and st[0].delta_a == 40


def test_showroom_has_every_profile():
    sc = load_scenario("showroom")
    assert sc.duration_ms == 600_000
    used = {d.profile for d in [*sc.meters, *sc.chargers]}
    assert used == set(list_profiles())


def test_library_mixes_tcp_and_rtu_realistically():
    rtu_brands = ("sdm", "em24", "em340", "heidelberg")
    for name in NAMES:
        sc = load_scenario(name)
        for d in [*sc.meters, *sc.chargers]:
            if d.profile.startswith(rtu_brands):
                assert d.transport == "rtu", (name, d.profile)
            elif d.profile != "dlbrig_generic":
                assert d.transport == "tcp", (name, d.profile)


def test_library_files_name_profile_and_transport_explicitly():
    for path in LIBRARY.glob("*.yaml"):
        data, _ = load_yaml(path.read_text(), str(path))
        for d in [*data.get("meters", []), *data.get("chargers", [])]:
            assert "profile" in d and "transport" in d, (path.name, d)


def test_duration_override_shortens():
    sc = load_scenario("office", duration="15m")
    assert sc.duration_ms == 900_000
    assert all(s.at_ms <= 900_000 for s in sc.steps)
    assert all(v.arrive_ms < 900_000 for v in sc.expand_vehicles())
    full = load_scenario("office").expand_vehicles()
    short = {v.id: v.arrive_ms for v in sc.expand_vehicles()}
    assert short == {v.id: v.arrive_ms for v in full if v.arrive_ms < 900_000 and v.id in short}
    again = load_scenario("office").with_overrides(duration="15m", seed=7, mode="wire")
    assert again.duration_ms == 900_000 and again.seed == 7 and again.mode == "wire"


def test_unknown_scenario_name():
    with pytest.raises(ScenarioError) as ei:
        load_scenario("no_such_scenario")
    assert "office" in ei.value.problem and ei.value.line is None


def test_to_dict_round_trip():
    for name in ("office", "phase_rotated", "home"):
        sc = load_scenario(name)
        again = validate(sc.to_dict())
        ex = {"source": True, "steps": {"__all__": {"line"}}}
        assert again.model_dump(exclude=ex) == sc.model_dump(exclude=ex)
        assert [s.line for s in again.steps] == [0] * len(sc.steps)   # no file, no lines


def test_json_schema_export():
    schema = scenario_json_schema()
    json.dumps(schema)                                      # serialisable
    assert schema["type"] == "object" and schema["additionalProperties"] is False
    props = schema["properties"]
    for key in ("name", "duration", "site", "meters", "chargers", "loads", "vehicles",
                "arrivals", "timeline", "start", "mode", "instruments"):
        assert key in props
    for derived in ("start_ms", "duration_ms", "steps", "source"):
        assert derived not in props
    assert set(schema["required"]) >= {"name", "duration", "site"}
    defs = schema["$defs"]
    assert "for" in defs["LoadSpec"]["properties"] and "at_ms" not in defs["LoadSpec"]["properties"]
    assert "arrive_ms" not in defs["VehicleSpec"]["properties"]


@pytest.mark.parametrize("name", NAMES)
def test_library_files_match_schema(name):
    schema = scenario_json_schema()
    data, _ = load_yaml((LIBRARY / f"{name}.yaml").read_text())
    try:
        import jsonschema
    except ImportError:   # minimal check without jsonschema: keys and required fields
        assert set(data) <= set(schema["properties"])
        assert set(schema["required"]) <= set(data)
        for key in ("meters", "chargers", "loads", "vehicles", "arrivals"):
            ref = schema["properties"][key]["items"]["$ref"].split("/")[-1]
            allowed = set(schema["$defs"][ref]["properties"])
            for item in data.get(key, []):
                assert set(item) <= allowed, (key, item)
        return
    jsonschema.validate(data, schema)


def test_x_keys_hold_anchors(tmp_path):
    p = tmp_path / "a.yaml"
    p.write_text(textwrap.dedent("""\
        x-charger: &cp {circuit: main, max_a: 16}
        name: anchors
        duration: 10m
        site:
          circuits: [{name: main, limit_a: 32, meter: true}]
          chargers:
            - {<<: *cp, name: cp1}
            - {<<: *cp, name: cp2, max_a: 32}
        """))
    sc = load_scenario(p)
    assert [c["max_a"] for c in sc.site["chargers"]] == [16, 32]


def test_overrides_stack_and_keep_lines():
    sc = load_scenario("office", duration="4h").with_overrides(seed=5)
    assert sc.duration_ms == 4 * 3_600_000 and sc.seed == 5
    full = load_scenario("office")
    assert full.steps[0].line > 0
    assert full.with_overrides(mode="wire").steps[0].line == full.steps[0].line


def test_from_dict_and_vehicle_kwargs():
    home = load_scenario("home")
    sc = Scenario.from_dict(home.to_dict(), source="mem")
    assert sc.source == "mem" and sc.start_ms == home.start_ms
    v = sc.vehicles[0]
    kw = v.ev_kwargs(sc.start_ms)
    assert kw["departure_ms"] == sc.to_abs_ms(v.depart_ms) and kw["soc_pct"] == pytest.approx(25.0)
    with pytest.raises(ScenarioError) as ei:
        Scenario.from_dict({**home.to_dict(), "mode": "x"})
    assert ei.value.field == "mode"
