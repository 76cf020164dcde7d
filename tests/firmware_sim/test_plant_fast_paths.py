"""The plant-side shortcuts of the device models (firmware_sim/evse.py, ev.py) keep the physics.

Each test fails when the condition behind its shortcut is broken (checked by breaking it).
"""
from __future__ import annotations

from dlbrig.firmware_sim import ev as ev_mod
from dlbrig.firmware_sim.ev import EV
from dlbrig.firmware_sim.evse import Evse, EvseConfig, EvSignals

PP32 = 220.0


def _sig(cp="B", i=0.0, dc=0.0, ac=0.0):
    return EvSignals(cp=cp, diode_ok=True, currents_a=(float(i),) * 3, leakage_dc_ma=dc,
                     leakage_ac_ma=ac, pp_ohm=PP32)


def _armed_evse():
    """A bare Evse with PWM on and an EV in C: the contactor closes at the returned time."""
    e = Evse(EvseConfig(watchdog_timeout_ms=0))
    e.write_point("setpoint_a", 16.0, 0)
    for t, s in ((0, _sig("B")), (1000, _sig("C"))):
        for _ in range(4):
            e.update(t, s)
    assert e.pwm_on and e._close_armed_ms == 1000 and not e.contactor_closed
    return e, 1000 + e.config.contactor_close_delay_ms


def test_conditions_tracked_again_after_contactor_closes_in_the_same_update():
    # Evse.update skips its second _track_conditions when the change counter did not move; here
    # _process_deadlines closes the contactor (a counted change), so the onsets that need a
    # closed contactor must be recorded in that same update (dropping the second run entirely,
    # or skipping it unconditionally, leaves them None: checked)
    e, t_close = _armed_evse()
    e.update(t_close, _sig("C", i=40.0, dc=100.0, ac=1000.0))
    assert e.contactor_closed
    assert e._dc_onset_ms == t_close
    assert e._ac_onset_ms == t_close
    assert e._oc_onset_ms == t_close


def test_second_condition_pass_is_a_no_op_when_skipped():
    # the skip's premise: with nothing counted changed, running _track_conditions again changes
    # nothing (idempotent on its own output)
    e, t_close = _armed_evse()
    e.update(t_close, _sig("C", i=16.0))
    e.update(t_close + 1, _sig("C", i=16.0, dc=100.0))
    snap = dict(vars(e))
    e._track_conditions(t_close + 1)
    assert dict(vars(e)) == snap


def test_duty_memo_follows_duty_and_table(monkeypatch):
    # EV.update reuses current_from_duty's last answer for the same (duty, table); a changed
    # duty or table must be decoded again (a memo keyed on the duty alone fails the table
    # switch: checked)
    calls = []
    real = ev_mod.current_from_duty
    monkeypatch.setattr(ev_mod, "current_from_duty", lambda d, tb: calls.append((d, tb)) or real(d, tb))
    v = EV(reaction_delay_ms=0, start_delay_ms=0, seed=1)
    v.connect(0)
    v.update(0, 50.0, False)
    v.update(1, 50.0, False)
    assert calls == [(50.0, "iec")]
    v.update(2, 60.0, False)
    assert v._last_signal == real(60.0, "iec") and calls[-1] == (60.0, "iec")
    v.duty_table = "j1772"
    v.update(3, 9.0, False)
    v.update(4, 9.0, False)
    v.duty_table = "iec"
    v.update(5, 9.0, False)
    assert calls[-2:] == [(9.0, "j1772"), (9.0, "iec")]
    assert v._last_signal == real(9.0, "iec")
