"""Frozen meters: a meter that keeps answering the same values while the EVs it feeds change their
draw is withheld (so the core's stale ladder takes over); a constant load with constant EVs is not."""
from dlbrig.core import Site
from dlbrig.rig import controller as ctl
from dlbrig.rig.certify.catalog import select
from dlbrig.rig.certify.runner import run_case

SITE = Site.from_dict({"circuits": [{"name": "main", "limit_a": 100, "meter": True}],
                       "chargers": [{"name": "cp1", "circuit": "main", "min_a": 6, "max_a": 32},
                                    {"name": "cp2", "circuit": "main", "phases": 1, "phase_map": ["L2"],
                                     "min_a": 6, "max_a": 32}]})


def _ctrl():
    return ctl.SiteController(SITE, [], clock=None)


def _ev(a1, a2):
    return {"cp1": {"state": "charging", "current_a": [a1, a1, a1]},
            "cp2": {"state": "charging", "current_a": [a2, 0, 0]}}


def test_constant_meter_with_constant_evs_is_not_frozen():
    c = _ctrl()
    flags = [c._frozen("main", [30.0, 40.0, 30.0], _ev(16, 16), t) for t in range(0, 120_000, 1000)]
    assert not any(flags) and not c.failures


def test_meter_unchanged_while_evs_move_is_frozen_until_it_changes():
    c = _ctrl()
    assert not c._frozen("main", [10.0, 10.0, 10.0], _ev(0, 0), 0)
    assert not c._frozen("main", [10.0, 10.0, 10.0], _ev(16, 0), 1000)      # within the meter's lag
    assert c._frozen("main", [10.0, 10.0, 10.0], _ev(16, 0), 3000)          # 16 A more, meter still
    assert c._frozen("main", [10.0, 10.0, 10.0], _ev(16, 0), 4000)
    assert "meter frozen" in c.failures[0].error
    assert not c._frozen("main", [26.0, 26.0, 26.0], _ev(16, 0), 5000)      # it moves again: trusted
    assert "changing again" in c.failures[-1].error


def test_one_phase_ev_moves_only_its_phase():
    c = _ctrl()
    c._frozen("main", [10.0, 10.0, 10.0], _ev(0, 0), 0)
    # cp2 is wired to L2: 2.5 A on it is below the threshold, 10 A is not (once the meter had its lag)
    assert not c._frozen("main", [10.0, 10.0, 10.0], _ev(0, 2.5), 5000)
    assert not c._frozen("main", [10.0, 10.0, 10.0], _ev(0, 10), 6000)
    assert c._frozen("main", [10.0, 10.0, 10.0], _ev(0, 10), 8000)


def test_meter_one_poll_behind_after_a_quiet_spell_is_not_frozen():
    """The wire bench's "failed transactions": the emulated bay meter held the same values for 3 s
    because its EVs did; when they moved, the meter showed it one poll later. The lag allowance must
    run from the EVs' change, not from when the meter's values were first seen."""
    c = _ctrl()
    for t in range(0, 5000, 1000):                                           # quiet: EVs and meter hold
        assert not c._frozen("main", [26.0, 26.0, 26.0], _ev(16, 0), t)
    assert not c._frozen("main", [26.0, 26.0, 26.0], _ev(32, 0), 5000)      # EVs moved, meter one poll behind
    assert not c._frozen("main", [42.0, 42.0, 42.0], _ev(32, 0), 6000)      # ... and follows
    assert not c.failures
    # a meter that stays behind past its lag (2 cycles) is frozen
    assert not c._frozen("main", [42.0, 42.0, 42.0], _ev(48, 0), 7000)
    assert not c._frozen("main", [42.0, 42.0, 42.0], _ev(48, 0), 8000)
    assert c._frozen("main", [42.0, 42.0, 42.0], _ev(48, 0), 9000)
    assert "meter frozen" in c.failures[0].error


def test_com_013_needs_the_detection(tmp_path, monkeypatch):
    case = select("COM-013")[0]
    assert run_case(case, out_dir=tmp_path / "with").status == "pass"
    monkeypatch.setattr(ctl, "FROZEN_EV_DELTA_A", float("inf"))     # a controller that trusts any meter
    assert run_case(case, out_dir=tmp_path / "without").status == "fail"
