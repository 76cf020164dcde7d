"""Time grammar, timeline verbs with units, and deterministic vehicle expansion."""
import pytest

from dlbrig.rig.scenario import ScenarioError, validate
from dlbrig.rig.scenario.timeline import VERBS, StepError, TimelineContext, parse_step
from dlbrig.rig.scenario.times import (format_rel, parse_duration, parse_start, parse_time)

H, M, S, DAY = 3_600_000, 60_000, 1000, 86_400_000


# -- time grammar -----------------------------------------------------------------------
@pytest.mark.parametrize("text,ms", [
    ("8h", 8 * H), ("90m", 90 * M), ("3600s", 3600 * S), (3600, 3600 * S), (1.5, 1500),
    ("1h30m", 90 * M), ("300ms", 300), ("1.5h", 90 * M), ("2d", 2 * DAY), ("45", 45 * S),
    ("1h 30m", 90 * M),
])
def test_durations(text, ms):
    assert parse_duration(text) == ms


@pytest.mark.parametrize("bad", ["", "5 min", "h", "-5m", -1, True, None, "1h30", [1]])
def test_bad_durations(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


@pytest.mark.parametrize("text,ms", [
    ("00:00", 0), ("07:00", 7 * H), ("07:30:15", 7 * H + 30 * M + 15 * S), ("Sat 08:00", 5 * DAY + 8 * H),
    ("saturday 08:00", 5 * DAY + 8 * H), ("d2 08:00", 2 * DAY + 8 * H), ("Mon 7:05", 7 * H + 5 * M),
])
def test_start(text, ms):
    assert parse_start(text) == ms


@pytest.mark.parametrize("bad", ["25:00", "24:00", "07:60", "7h", "Funday 08:00", 700, "Sat"])
def test_bad_start(bad):
    with pytest.raises(ValueError):
        parse_start(bad)


def test_times_relative_to_start():
    start = parse_start("Sat 08:00")
    assert parse_time("+5m", start) == 5 * M
    assert parse_time("+1h30m", start) == 90 * M
    assert parse_time("08:05", start) == 5 * M               # on the start's day
    assert parse_time("07:00", start) == -H                  # before the start: caller rejects
    assert parse_time("Sun 07:00", start) == 23 * H          # next such weekday
    assert parse_time("Mon 07:00", start) == 47 * H          # wraps into the next week
    assert parse_time("Sat 09:00", start) == H               # the start's own day
    assert parse_time("d6 07:00", start) == 23 * H           # absolute day index
    for bad in ("8:5", "+5", "tomorrow", 5, "+x"):
        with pytest.raises(ValueError):
            parse_time(bad, start)


@pytest.mark.parametrize("ms", [0, 1, 999, 1000, 61_000, H, 3_723_000, 90 * M, H + 500, 26 * H])
def test_format_rel_round_trips(ms):
    assert parse_time(format_rel(ms), 12345) == ms


# -- timeline verbs -------------------------------------------------------------------------
CTX = TimelineContext(start_ms=parse_start("Mon 08:00"), duration_ms=10 * H,
                      chargers=["cp1", "cp2"], circuits=["main", "garage"], meters=["main"],
                      pv_circuits=["main"], presets=["sedan_3p", "compact_1p"])


def step(text):
    return parse_step(text, CTX)


@pytest.mark.parametrize("text,expect", [
    ("at 08:05 plug cp1 ev=compact_1p",
     (5 * M, "plug", "cp1", {"ev": "compact_1p", "soc": None, "need_kwh": None, "depart_ms": None,
                              "id": "cp1@300s"})),
    ("plug cp1 ev=sedan_3p soc=0.3 need=20kWh depart=17:30 id=car7 at 08:05",
     (5 * M, "plug", "cp1", {"ev": "sedan_3p", "soc": 0.3, "need_kwh": 20.0,
                              "depart_ms": 9 * H + 30 * M, "id": "car7"})),
    ("+5m plug cp2 ev=sedan_3p soc=45% need=7500Wh depart=Tue 07:00",
     (5 * M, "plug", "cp2", {"ev": "sedan_3p", "soc": 0.45, "need_kwh": 7.5, "depart_ms": 23 * H,
                              "id": "cp2@300s"})),
    ("unplug cp1 at +2h", (2 * H, "unplug", "cp1", {})),
    ("at 08:10 meter main stale for 30s", (10 * M, "meter", "main", {"mode": "stale", "for_ms": 30 * S})),
    ("at 08:10 meter main frozen 2m", (10 * M, "meter", "main", {"mode": "frozen", "for_ms": 2 * M})),
    ("at 08:10 meter main nan", (10 * M, "meter", "main", {"mode": "nan", "for_ms": None})),
    ("at 08:10 meter main garbage for 5s", (10 * M, "meter", "main", {"mode": "garbage", "for_ms": 5 * S})),
    ("at 08:10 meter main zero", (10 * M, "meter", "main", {"mode": "zero", "for_ms": None})),
    ("at 08:10 meter main offline for 1m30s", (10 * M, "meter", "main", {"mode": "offline", "for_ms": 90 * S})),
    ("at 08:11 meter main ok", (11 * M, "meter", "main", {"mode": "ok", "for_ms": None})),
    ("at +1m ev cp1 overdraw 10%", (M, "ev", "cp1", {"fault": "overdraw", "fraction": 0.1,
                                                      "faults": {"overdraw_pct": 10.0}, "for_ms": None})),
    ("at +1m ev cp1 ignore_pwm for 30s", (M, "ev", "cp1", {"fault": "ignore_pwm", "faults": {"ignore_pwm": True},
                                                           "for_ms": 30 * S})),
    ("at +1m ev cp1 missing_diode", (M, "ev", "cp1", {"fault": "missing_diode",
                                                      "faults": {"missing_diode": True}, "for_ms": None})),
    ("at +1m ev cp1 cp_short", (M, "ev", "cp1", {"fault": "cp_short", "faults": {"cp_short": True},
                                                 "for_ms": None})),
    ("at +1m ev cp1 leakage dc 6mA", (M, "ev", "cp1", {"fault": "leakage", "kind": "dc", "ma": 6.0,
                                                       "faults": {"leakage_dc_ma": 6.0}, "for_ms": None})),
    ("at +1m ev cp1 leakage ac 30mA for 1s", (M, "ev", "cp1", {"fault": "leakage", "kind": "ac", "ma": 30.0,
                                                               "faults": {"leakage_ac_ma": 30.0},
                                                               "for_ms": S})),
    ("at +1m ev cp1 slow 6s", (M, "ev", "cp1", {"fault": "slow", "delay_ms": 6000,
                                                "knobs": {"reaction_delay_ms": 6000}, "faults": {},
                                                "for_ms": None})),
    ("at +1m charger cp2 offline for 60s", (M, "charger", "cp2", {"mode": "offline", "for_ms": 60 * S})),
    ("at +1m charger cp2 offline", (M, "charger", "cp2", {"mode": "offline", "for_ms": None})),
    ("at +1m charger cp2 fault", (M, "charger", "cp2", {"mode": "fault", "for_ms": None})),
    ("at +1m charger cp2 ok", (M, "charger", "cp2", {"mode": "ok", "for_ms": None})),
    ("at +1m charger cp2 exception 4 for 10s", (M, "charger", "cp2", {"mode": "exception", "code": 4,
                                                                      "for_ms": 10 * S})),
    ("at +1m charger cp2 delay 300ms jitter 100ms for 2m",
     (M, "charger", "cp2", {"mode": "delay", "delay_ms": 300, "jitter_ms": 100, "for_ms": 2 * M})),
    ("at +1m charger cp2 delay 1.5s", (M, "charger", "cp2", {"mode": "delay", "delay_ms": 1500, "jitter_ms": 0,
                                                             "for_ms": None})),
    ("at +1m charger cp2 drop 20% for 5m", (M, "charger", "cp2", {"mode": "drop", "fraction": 0.2,
                                                                  "for_ms": 5 * M})),
    ("at +10m base main step +20A for 10m", (10 * M, "base", "main", {"mode": "step", "delta_a": [20.0] * 3,
                                                                      "for_ms": 10 * M})),
    ("at +10m base main step -5A", (10 * M, "base", "main", {"mode": "step", "delta_a": [-5.0] * 3,
                                                             "for_ms": None})),
    ("at +10m base garage step +20A,0,0", (10 * M, "base", "garage", {"mode": "step", "delta_a": [20.0, 0.0, 0.0],
                                                                      "for_ms": None})),
    ("at +10m base main set 30A", (10 * M, "base", "main", {"mode": "set", "current_a": [30.0] * 3,
                                                            "for_ms": None})),
    ("at +10m base main set 30A,20A,10.5A for 1h", (10 * M, "base", "main", {"mode": "set",
                                                                             "current_a": [30.0, 20.0, 10.5],
                                                                             "for_ms": H})),
    ("at +10m base main ok", (10 * M, "base", "main", {"mode": "ok", "for_ms": None})),
    ("at +10m pv main cloud 60% for 5m", (10 * M, "pv", "main", {"mode": "cloud", "fraction": 0.6,
                                                                 "for_ms": 5 * M})),
    ("at +10m pv main ok", (10 * M, "pv", "main", {"mode": "ok", "for_ms": None})),
    ("at +10m phase main L2 loss for 10s", (10 * M, "phase", "main", {"phase": "L2", "index": 1, "mode": "loss",
                                                                      "for_ms": 10 * S})),
    ("at +10m phase main l3 ok", (10 * M, "phase", "main", {"phase": "L3", "index": 2, "mode": "ok",
                                                            "for_ms": None})),
    ("at 09:00 controller restart", (H, "controller", None, {"mode": "restart"})),
    ("AT Mon 09:00 controller restart", (H, "controller", None, {"mode": "restart"})),
    ("controller restart at d0 08:30:30", (30 * M + 30 * S, "controller", None, {"mode": "restart"})),
])
def test_every_verb(text, expect):
    assert step(text) == expect


def test_every_verb_is_covered():
    assert set(VERBS) == {"plug", "unplug", "meter", "ev", "charger", "base", "pv", "phase", "controller"}


@pytest.mark.parametrize("text,fragment", [
    ("at 08:05 plg cp1", "unknown verb 'plg' (valid: plug, unplug, meter, ev, charger, base, pv, phase, controller)"),
    ("plug cp1 ev=sedan_3p", "missing time"),
    ("at 08:05 at 08:06 unplug cp1", "more than one 'at'"),
    ("at 08:05", "missing verb"),
    ("at 08:05 plug cp1", "missing ev=PRESET"),
    ("at 08:05 plug cp1 ev=tesla", "unknown EV preset 'tesla'"),
    ("at 08:05 plug cp1 ev=sedan_3p soc=3", "between 0 and 1"),
    ("at 08:05 plug cp1 ev=sedan_3p need=lots", "energy like 20kWh"),
    ("at 08:05 plug cp1 ev=sedan_3p depart=08:00", "not after the plug time"),
    ("at 08:05 plug cp1 ev=sedan_3p colour=red", "unknown option 'colour'"),
    ("at 08:05 plug cp1 ev=sedan_3p now", "unexpected 'now'"),
    ("at 08:05 unplug", "missing charger"),
    ("at 08:05 unplug cp3", "unknown charger 'cp3' (known: cp1, cp2)"),
    ("at 08:05 meter garage stale", "unknown meter 'garage'"),
    ("at 08:05 meter main stale for", "missing duration after 'for'"),
    ("at 08:05 meter main stale for 30", "'for'"),
    ("at 08:05 meter main stale 30s extra", "unexpected 'extra'"),
    ("at 08:05 ev cp1 overdraw 10", "percentage"),
    ("at 08:05 ev cp1 leakage dc 6", "mA"),
    ("at 08:05 ev cp1 leakage xx 6mA", "dc or ac"),
    ("at 08:05 ev cp1 teleport", "unknown ev fault 'teleport'"),
    ("at 08:05 charger cp1 exception x", "exception code"),
    ("at 08:05 charger cp1 exception 0", "exception code"),
    ("at 08:05 charger cp1 drop 120%", "at most 100%"),
    ("at 08:05 charger cp1 sleep", "unknown charger mode 'sleep'"),
    ("at 08:05 base main step 20", "unit A"),
    ("at 08:05 base main step +20A,0", "three"),
    ("at 08:05 base main set -5A", "not a current"),
    ("at 08:05 base main grow 5A", "unknown base operation"),
    ("at 08:05 pv garage cloud 50%", "no PV load"),
    ("at 08:05 pv main cloud 50", "percentage"),
    ("at 08:05 phase main L4 loss", "L1, L2 or L3"),
    ("at 08:05 phase main L1 melt", "unknown phase operation"),
    ("at 08:05 controller reboot", "restart"),
    ("at 07:59 controller restart", "before the scenario start"),
    ("at 18:01 controller restart", "after the end"),
    ("at 8h controller restart", "08:05"),
])
def test_step_errors(text, fragment):
    with pytest.raises(StepError) as ei:
        step(text)
    assert fragment in str(ei.value)


def test_steps_sorted_stably_with_lines():
    sc = validate({"name": "x", "start": "08:00", "duration": "1h",
                   "site": {"circuits": [{"name": "main", "limit_a": 32, "meter": True}],
                            "chargers": [{"name": "cp1", "circuit": "main", "max_a": 16}]},
                   "timeline": ["at 08:30 controller restart", "at +10m meter main stale",
                                "meter main ok at 08:10", "+5m unplug cp1"]})
    assert [(s.at_ms, s.verb) for s in sc.steps] == [(5 * M, "unplug"), (10 * M, "meter"), (10 * M, "meter"),
                                                    (30 * M, "controller")]
    assert [s.args.get("mode") for s in sc.steps[1:3]] == ["stale", "ok"]
    assert sc.steps[0].text == "+5m unplug cp1"


# -- expansion -----------------------------------------------------------------------------
def scenario(seed=1, **arrival):
    a = {"count": 8, "window": ["08:00", "08:30"], "dwell": ["1h", "2h"], "energy_kwh": [5, 20],
         "presets": {"sedan_3p": 1, "compact_1p": 1}}
    a.update(arrival)
    return validate({
        "name": "x", "seed": seed, "start": "Mon 07:55", "duration": "4h",
        "site": {"circuits": [{"name": "main", "limit_a": 63, "meter": True}],
                 "chargers": [{"name": "cp{n}", "count": 5, "circuit": "main", "max_a": 16}]},
        "vehicles": [{"id": "fixed", "preset": "sedan_3p", "charger": "cp1", "arrive": "08:00",
                      "depart": "11:00"}],
        "arrivals": [a]})


def test_expand_is_deterministic_per_seed():
    a = [v.model_dump() for v in scenario(1).expand_vehicles()]
    b = [v.model_dump() for v in scenario(1).expand_vehicles()]
    c = [v.model_dump() for v in scenario(2).expand_vehicles()]
    assert a == b and a != c
    d = [v.model_dump() for v in scenario(1, seed_offset=3).expand_vehicles()]
    assert d != a


def test_expand_assigns_first_free_charger_and_drops_when_full():
    sc = scenario(1)
    exp = sc.expand()
    vs = exp.vehicles
    assert vs[0].id == "fixed" or vs[0].arrive_ms <= vs[1].arrive_ms
    assert [v.arrive_ms for v in vs] == sorted(v.arrive_ms for v in vs)
    # cp1 is reserved by the explicit vehicle; 4 chargers for 8 drawn arrivals within 30 min
    drawn = [v for v in vs if v.id != "fixed"]
    assert len(drawn) == 4 and len(exp.dropped) == 4
    assert sorted(v.charger for v in drawn) == ["cp2", "cp3", "cp4", "cp5"]
    first = min(drawn, key=lambda v: v.arrive_ms)
    assert first.charger == "cp2"
    for v in drawn:
        assert 5 * M <= v.arrive_ms <= 35 * M and v.arrive_ms % 1000 == 0
        assert H <= v.depart_ms - v.arrive_ms <= 2 * H and (v.depart_ms - v.arrive_ms) % M == 0
        assert 5 <= v.energy_kwh <= 20 and v.preset in ("sedan_3p", "compact_1p")
        assert v.origin.startswith("arrivals[0]#")
        assert v.arrive == "+" + v.arrive[1:] and v.id.startswith("a0-")
    assert all(v.charger == "" for v in exp.dropped)


def test_expand_wait_plugs_when_a_charger_frees():
    sc = scenario(1, count=6, dwell=["20m", "20m"], window=["08:00", "08:05"], when_full="wait",
                  chargers=["cp2", "cp3"], id_prefix="w")
    exp = sc.expand()
    drawn = [v for v in exp.vehicles if v.id.startswith("w-")]
    assert len(drawn) + len(exp.dropped) == 6
    # no two sessions overlap on a charger
    for cp in ("cp2", "cp3"):
        iv = sorted((v.arrive_ms, v.depart_ms) for v in drawn if v.charger == cp)
        assert all(a[1] <= b[0] for a, b in zip(iv, iv[1:]))
    assert any(v.arrive_ms > 10 * M for v in drawn)       # someone waited


def test_expand_respects_timeline_plugs():
    sc = validate({
        "name": "x", "start": "08:00", "duration": "2h",
        "site": {"circuits": [{"name": "main", "limit_a": 63, "meter": True}],
                 "chargers": [{"name": "cp1", "circuit": "main", "max_a": 16},
                              {"name": "cp2", "circuit": "main", "max_a": 16}]},
        "arrivals": [{"count": 1, "window": ["08:10", "08:10"], "dwell": ["1h", "1h"], "energy_kwh": [5, 5]}],
        "timeline": ["at 08:00 plug cp1 ev=sedan_3p"]})
    assert [v.charger for v in sc.expand_vehicles()] == ["cp2"]


def test_soc_range_and_bad_soc():
    sc = scenario(1, soc=[0.2, 0.4])
    assert all(0.2 <= v.soc <= 0.4 for v in sc.expand_vehicles() if v.id != "fixed")
    with pytest.raises(ScenarioError):
        scenario(1, soc=[0.2, 40])
