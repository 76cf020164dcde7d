"""Every class of scenario error reports FILE:LINE: FIELD: PROBLEM with the right line."""
import re
import textwrap

import pytest

from dlbrig.rig.scenario import ScenarioError, load_scenario, validate

BASE = """\
name: t
start: "08:00"
duration: 1h
site:
  circuits:
    - {name: main, limit_a: 63, meter: true}
    - {name: pv_roof, parent: main, limit_a: 40}
  chargers:
    - {name: cp1, circuit: main, max_a: 16}
    - {name: cp2, circuit: main, max_a: 16}
"""   # 10 lines: appended text starts on line 11


def load(tmp_path, extra="", base=BASE, **kw):
    p = tmp_path / "scn.yaml"
    p.write_text(base + textwrap.dedent(extra))
    return load_scenario(p, **kw)


def err(tmp_path, extra="", base=BASE, **kw) -> ScenarioError:
    with pytest.raises(ScenarioError) as ei:
        load(tmp_path, extra, base, **kw)
    e = ei.value
    assert isinstance(e, ValueError)
    assert re.fullmatch(r".+scn\.yaml:\d+: [^:]+: .+", str(e).splitlines()[0]), str(e)
    assert str(e) == f"{e.file}:{e.line}: {e.field}: {e.problem}"
    return e


def check(e, line, field, *fragments):
    assert e.line == line, str(e)
    assert e.field == field, str(e)
    for f in fragments:
        assert f in e.problem, str(e)


def test_base_is_valid(tmp_path):
    sc = load(tmp_path)
    assert [d.charger for d in sc.chargers] == ["cp1", "cp2"]


# -- YAML --------------------------------------------------------------------------------
def test_yaml_syntax_error_has_line(tmp_path):
    e = err(tmp_path, "meters:\n  - {circuit: main\ntimeline: []\n")
    assert e.field == "yaml" and "syntax error" in e.problem and e.line in (12, 13)


def test_duplicate_key(tmp_path):
    check(err(tmp_path, "seed: 1\nseed: 2\n"), 12, "seed", "duplicate key", "line 11")


def test_not_a_mapping(tmp_path):
    check(err(tmp_path, base="- just\n- a list\n"), 1, "scenario", "mapping")


def test_unquoted_times_are_strings(tmp_path):
    sc = load(tmp_path, "timeline:\n  - at 17:30 controller restart\n",
              base=BASE.replace('start: "08:00"', "start: 17:00"))
    assert sc.start == "17:00" and sc.steps[0].at_ms == 30 * 60_000


# -- unknown keys / types ------------------------------------------------------------------
def test_unknown_top_level_key(tmp_path):
    check(err(tmp_path, "colour: red\n"), 11, "colour", "unknown key 'colour'", "allowed:", "timeline")


def test_unknown_nested_key_names_allowed_keys(tmp_path):
    e = err(tmp_path, """\
        meters:
          - circuit: main
            profle: sdm630
        """)
    check(e, 13, "meters[0] (main).profle", "unknown key 'profle'", "profile")


def test_derived_field_is_rejected(tmp_path):
    check(err(tmp_path, "start_ms: 5\n"), 11, "start_ms", "computed")


def test_missing_required(tmp_path):
    e = err(tmp_path, base=BASE.replace("duration: 1h\n", ""))
    check(e, 1, "duration", "required")


def test_wrong_type(tmp_path):
    check(err(tmp_path, "seed: many\n"), 11, "seed", "integer")


def test_literal_lists_choices(tmp_path):
    check(err(tmp_path, "mode: turbo\n"), 11, "mode", "'fast'", "'wire'", "turbo")


def test_several_errors_are_all_reported_in_file_order(tmp_path):
    e = err(tmp_path, "mode: turbo\nseed: x\n")
    assert [x.line for x in e.errors] == [11, 12]


# -- site -------------------------------------------------------------------------------
def test_site_error_points_at_site_field(tmp_path):
    bad = BASE.replace("{name: pv_roof, parent: main,", "{name: pv_roof, parent: mian,")
    check(err(tmp_path, base=bad), 7, "site.circuits[1] (pv_roof).parent", "unknown circuit 'mian'")


def test_site_unknown_key_points_at_the_key(tmp_path):
    bad = BASE.replace("    - {name: cp2, circuit: main, max_a: 16}\n",
                       "    - name: cp2\n      circuit: main\n      max_a: 16\n      colour: red\n")
    e = err(tmp_path, base=bad)
    check(e, 13, "site.chargers[1]", "unknown key 'colour'")


def test_site_template_error_maps_to_template_line(tmp_path):
    bad = BASE.replace("    - {name: cp2, circuit: main, max_a: 16}\n",
                       "    - {name: 'x{n}', count: 3, circuit: main, max_a: 16}\n"
                       "    - {name: y, circuit: main, max_a: 16.5}\n")
    e = err(tmp_path, base=bad)
    check(e, 11, "site.chargers[4] (y).max_a", "multiple")
    bad = BASE.replace("    - {name: cp2, circuit: main, max_a: 16}\n",
                       "    - {name: 'x{n}', count: 3, circuit: main, max_a: 0}\n")
    check(err(tmp_path, base=bad), 10, "site.chargers[1] (x1).max_a", ">=")
    bad = BASE.replace("    - {name: cp2, circuit: main, max_a: 16}\n",
                       "    - {name: xx, count: 3, circuit: main, max_a: 16}\n")
    check(err(tmp_path, base=bad), 10, "site.chargers[1] (xx).name", "{n}")


# -- devices ----------------------------------------------------------------------------
def test_meter_on_unknown_or_unmetered_circuit(tmp_path):
    check(err(tmp_path, "meters:\n  - {circuit: main}\n  - circuit: garage\n"), 13,
          "meters[1] (garage).circuit", "unknown circuit 'garage'", "main")
    check(err(tmp_path, "meters:\n  - circuit: pv_roof\n"), 12, "meters[0] (pv_roof).circuit",
          "no meter", "meter: true")
    check(err(tmp_path, "meters:\n  - circuit: main\n  - circuit: main\n"), 13,
          "meters[1] (main).circuit", "already has a meter")


def test_unknown_profile_and_wrong_kind(tmp_path):
    check(err(tmp_path, "meters:\n  - circuit: main\n    profile: sdm999\n"), 13,
          "meters[0] (main).profile", "unknown profile 'sdm999'", "sdm630")
    check(err(tmp_path, "chargers:\n  - charger: cp1\n    profile: sdm630\n"), 13,
          "chargers[0] (cp1).profile", "is a meter, not a charger", "keba_p30")


def test_unknown_charger_and_patterns(tmp_path):
    check(err(tmp_path, "chargers:\n  - charger: cp1\n  - charger: cp7\n"), 13,
          "chargers[1] (cp7).charger", "unknown charger 'cp7'", "cp1, cp2")
    check(err(tmp_path, "chargers:\n  - charger: 'zz*'\n"), 12, "chargers[0] (zz*).charger",
          "matches no")
    check(err(tmp_path, "chargers:\n  - charger: cp1\n  - charger: cp1\n"), 13,
          "chargers[1] (cp1).charger", "already has an entry")


def test_charger_firmware_and_faults_keys(tmp_path):
    e = err(tmp_path, """\
        chargers:
          - charger: cp1
            firmware:
              watchdog_timeout_s: 10
              watchdog_timeot_s: 10
        """)
    check(e, 15, "chargers[0] (cp1).firmware.watchdog_timeot_s", "unknown EvseConfig field",
          "watchdog_timeout_s")
    e = err(tmp_path, "chargers:\n  - charger: cp1\n    firmware: {hw_phases: 2}\n")
    check(e, 13, "chargers[0] (cp1).firmware", "EvseConfig", "hw_phases")
    e = err(tmp_path, "chargers:\n  - charger: cp1\n    faults: {no_watchdog: 1}\n")
    check(e, 13, "chargers[0] (cp1).faults.no_watchdog", "true or false")


def test_rtu_unit_collision_and_bus_settings(tmp_path):
    e = err(tmp_path, """\
        meters:
          - {circuit: main, profile: sdm630, transport: rtu, unit: 3}
        chargers:
          - {charger: cp1, profile: heidelberg_ec, bus: rs485-1, baud: 9600, parity: N}
          - charger: cp2
            profile: heidelberg_ec
            unit: 3
            baud: 9600
            parity: N
        """)
    check(e, 17, "chargers[1] (cp2).unit", "unit 3", "already used", "rs485-1")
    e = err(tmp_path, """\
        meters:
          - {circuit: main, profile: sdm630}
        chargers:
          - {charger: cp1, profile: heidelberg_ec}
        """)
    check(e, 14, "chargers[0] (cp1)", "9600 baud", "19200", "another bus")


def test_rtu_units_are_assigned(tmp_path):
    sc = load(tmp_path, """\
        meters:
          - {circuit: main, profile: sdm630}
        chargers:
          - {charger: "cp*", profile: heidelberg_ec, bus: rs485-2}
        """)
    assert (sc.meters[0].transport, sc.meters[0].bus, sc.meters[0].unit) == ("rtu", "rs485-1", 1)
    assert [(d.bus, d.unit, d.baud, d.parity) for d in sc.chargers] == \
        [("rs485-2", 1, 19200, "E"), ("rs485-2", 2, 19200, "E")]


# -- loads ------------------------------------------------------------------------------
def test_load_errors(tmp_path):
    check(err(tmp_path, "loads:\n  - {circuit: roof, kind: office, peak_a: 10}\n"), 12,
          "loads[0] (roof).circuit", "unknown circuit 'roof'")
    check(err(tmp_path, "loads:\n  - circuit: main\n    kind: pv\n    peak_a: 10\n"), 12,
          "loads[0] (main).kwp", "required for kind pv")
    check(err(tmp_path, "loads:\n  - circuit: main\n    kind: office\n    peak_a: 10\n    kwp: 3\n"), 15,
          "loads[0] (main).kwp", "does not apply")
    check(err(tmp_path, "loads:\n  - circuit: main\n    kind: disco\n"), 13, "loads[0] (main).kind",
          "office")
    check(err(tmp_path, "loads:\n  - circuit: main\n    kind: office\n    peak_a: 10\n"
                        "    unbalance: [1, 2]\n"), 15, "loads[0] (main).unbalance", "three numbers")
    check(err(tmp_path, "loads:\n  - {circuit: main, kind: step, at: '07:00', delta_a: 5}\n"), 12,
          "loads[0] (main).at", "before the scenario start")
    check(err(tmp_path, "loads:\n  - {circuit: main, kind: step, at: '+5m', delta_a: 5, for: 5 min}\n"),
          12, "loads[0] (main).for", "duration")


def test_load_step_fields(tmp_path):
    sc = load(tmp_path, "loads:\n  - {circuit: main, kind: step, at: '08:10', delta_a: [5, 0, 0], for: 90s}\n")
    ld = sc.loads[0]
    assert (ld.at_ms, ld.for_ms, ld.delta_a) == (600_000, 90_000, [5, 0, 0])
    assert ld.seed is None          # the runner derives it from the scenario seed


# -- vehicles and arrivals -----------------------------------------------------------------
def test_vehicle_errors(tmp_path):
    check(err(tmp_path, "vehicles:\n  - {id: a, preset: tesla, charger: cp1, arrive: '08:10'}\n"), 12,
          "vehicles[0] (a).preset", "unknown EV preset 'tesla'", "sedan_3p")
    check(err(tmp_path, "vehicles:\n  - {id: a, preset: sedan_3p, charger: cp9, arrive: '08:10'}\n"), 12,
          "vehicles[0] (a).charger", "unknown charger 'cp9'")
    check(err(tmp_path, "vehicles:\n  - id: a\n    preset: sedan_3p\n    charger: cp1\n"
                        "    arrive: '07:10'\n"), 15, "vehicles[0] (a).arrive", "before the scenario start")
    check(err(tmp_path, "vehicles:\n  - id: a\n    preset: sedan_3p\n    charger: cp1\n"
                        "    arrive: '09:10'\n"), 15, "vehicles[0] (a).arrive", "after the end")
    check(err(tmp_path, "vehicles:\n  - id: a\n    preset: sedan_3p\n    charger: cp1\n"
                        "    arrive: '08:10'\n    depart: '08:05'\n"), 16, "vehicles[0] (a).depart",
          "not after the arrival")
    check(err(tmp_path, "vehicles:\n  - id: a\n    preset: sedan_3p\n    charger: cp1\n"
                        "    arrive: 'at eight'\n"), 15, "vehicles[0] (a).arrive", "08:05")
    check(err(tmp_path, "vehicles:\n  - id: a\n    preset: sedan_3p\n    charger: cp1\n"
                        "    arrive: '08:10'\n    knobs: {reaction_delay_s: 6, wings: 2}\n"), 16,
          "vehicles[0] (a).knobs.wings", "unknown EV field", "reaction_delay_s")
    check(err(tmp_path, "vehicles:\n  - id: a\n    preset: sedan_3p\n    charger: cp1\n"
                        "    arrive: '08:10'\n    faults: {ignore_pwn: true}\n"), 16,
          "vehicles[0] (a).faults.ignore_pwn", "unknown EvFaults field", "ignore_pwm")
    check(err(tmp_path, "vehicles:\n  - id: a\n    preset: sedan_3p\n    charger: cp1\n"
                        "    arrive: '08:10'\n    soc: 30\n"), 16, "vehicles[0] (a).soc", "1")


def test_vehicle_overlap_and_duplicate_id(tmp_path):
    e = err(tmp_path, """\
        vehicles:
          - {id: a, preset: sedan_3p, charger: cp1, arrive: '08:10', depart: '08:40'}
          - {id: b, preset: sedan_3p, charger: cp1, arrive: '08:30'}
          - {id: a, preset: sedan_3p, charger: cp2, arrive: '08:30'}
        """)
    check(e, 14, "vehicles[2] (a).id", "duplicate vehicle id")
    e = err(tmp_path, """\
        vehicles:
          - {id: a, preset: sedan_3p, charger: cp1, arrive: '08:10', depart: '08:40'}
          - {id: b, preset: sedan_3p, charger: cp1, arrive: '08:30'}
        """)
    check(e, 13, "vehicles[1] (b).arrive", "still occupied by 'a'")


def test_vehicle_knobs_normalised(tmp_path):
    sc = load(tmp_path, "vehicles:\n  - {id: a, preset: sedan_3p, charger: cp1, arrive: '+1m', "
                        "depart: 'Tue 07:00', soc: 0.3, knobs: {reaction_delay_s: 6}, "
                        "faults: {overdraw_pct: 10}}\n")
    v = sc.vehicles[0]
    assert v.knobs == {"reaction_delay_ms": 6000} and v.arrive_ms == 60_000
    assert v.depart_ms == 23 * 3_600_000                      # next morning, after the end: allowed
    kw = v.ev_kwargs()
    assert kw["soc_pct"] == pytest.approx(30.0) and kw["faults"].overdraw_pct == 10


def test_arrival_errors(tmp_path):
    arr = "arrivals:\n  - count: 3\n    window: ['08:10', '08:20']\n    dwell: [1h, 2h]\n    energy_kwh: [5, 10]\n"
    assert load(tmp_path, arr)
    check(err(tmp_path, arr + "    chargers: [cp1, zz]\n"), 16, "arrivals[0].chargers[1]", "unknown charger 'zz'")
    check(err(tmp_path, arr.replace("'08:20'", "'08:00'")), 13, "arrivals[0].window", "after latest")
    check(err(tmp_path, arr.replace("'08:10'", "'07:00'")), 13, "arrivals[0].window[0]", "before the scenario start")
    check(err(tmp_path, arr.replace("[1h, 2h]", "[3h, 2h]")), 14, "arrivals[0].dwell", "longer")
    check(err(tmp_path, arr + "    presets: {sedan_3p: 1, flying_car: 2}\n"), 16,
          "arrivals[0].presets.flying_car", "unknown EV preset")
    check(err(tmp_path, arr + "    when_full: panic\n"), 16, "arrivals[0].when_full", "drop")


# -- timeline ---------------------------------------------------------------------------
def test_timeline_errors_point_at_their_line(tmp_path):
    e = err(tmp_path, """\
        timeline:
          - at 08:05 controller restart
          - at 08:06 plg cp1 ev=sedan_3p
          - at 07:00 controller restart
          - at 10:00 controller restart
          - at 08:10 plug cp9 ev=sedan_3p
          - controller restart
          - at 08:10 meter main sleepy
          - "at 08:10 plug cp1: ev=x"
        """)
    got = [(x.line, x.field) for x in e.errors]
    assert got == [(13, "timeline[1]"), (14, "timeline[2]"), (15, "timeline[3]"), (16, "timeline[4]"),
                   (17, "timeline[5]"), (18, "timeline[6]"), (19, "timeline[7]")]
    probs = [x.problem for x in e.errors]
    assert "unknown verb 'plg'" in probs[0] and "plug, unplug, meter" in probs[0]
    assert "before the scenario start" in probs[1]
    assert "after the end" in probs[2]
    assert "unknown charger 'cp9'" in probs[3]
    assert "missing time" in probs[4]
    assert "unknown meter mode 'sleepy'" in probs[5] and "frozen" in probs[5]
    assert "unknown charger 'cp1:'" in probs[6]


def test_timeline_item_must_be_text(tmp_path):
    check(err(tmp_path, "timeline:\n  - at 08:05 controller restart\n  - at 08:06 unplug cp1: now\n"),
          13, "timeline[1]", "quote it")


def test_timeline_plug_on_occupied_charger(tmp_path):
    e = err(tmp_path, """\
        vehicles:
          - {id: a, preset: sedan_3p, charger: cp1, arrive: '08:10'}
        timeline:
          - at 08:20 plug cp1 ev=compact_1p
        """)
    check(e, 14, "timeline[0]", "occupied by 'a'")
    sc = load(tmp_path, """\
        vehicles:
          - {id: a, preset: sedan_3p, charger: cp1, arrive: '08:10'}
        timeline:
          - at 08:20 plug cp1 ev=compact_1p
          - at 08:15 unplug cp1
        """)
    assert [s.verb for s in sc.steps] == ["unplug", "plug"]
    e = err(tmp_path, "timeline:\n  - at 08:20 plug cp2 ev=compact_1p\n  - at 08:25 plug cp2 ev=sedan_3p id=x\n")
    check(e, 13, "timeline[1]", "occupied by 'cp2@1200s'")


def test_duration_override_truncates_instead_of_failing(tmp_path):
    extra = """\
        vehicles:
          - {id: late, preset: sedan_3p, charger: cp1, arrive: '08:50'}
        timeline:
          - at 08:40 controller restart
        """
    sc = load(tmp_path, extra, duration="30m")
    assert sc.steps == [] and sc.vehicles == [] and sc.duration_ms == 1_800_000


def test_dict_input_errors_have_no_line():
    with pytest.raises(ScenarioError) as ei:
        validate({"name": "x", "duration": "1h", "site": {"circuits": []}})
    e = ei.value
    assert e.line is None and e.file == "<scenario>" and e.field == "site.circuits"
    assert str(e) == "<scenario>: site.circuits: must be a non-empty list"
