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


# ---------------------------------------------------------------------------- ChargePoint._settle
from dlbrig.firmware_sim.evse import ChargePoint, FirmwareFaults  # noqa: E402


class _NoSkipChargePoint(ChargePoint):
    """The reference: ChargePoint._settle never skips the EVSE's update."""

    @property
    def _settled(self):
        return None

    @_settled.setter
    def _settled(self, value):
        pass


def _observe(cp):
    e = cp.evse
    return ([(x.t_ms, x.kind, sorted(x.data.items()) if hasattr(x, "data") else None) for x in e.events],
            e.read_token()[0], e.state_signature(), e.total_energy_wh, cp.ev and cp.ev.state_signature(),
            e.now_ms)


def _script(cls, bypass=None):
    """A charging session with the cases the skip must not swallow: a PWM change held back by the
    spacing rule (pending), a watchdog timeout between ticks, a knob change, and (``bypass``) a
    direct EVSE write that does not go through ChargePoint."""
    cp = cls(EvseConfig(watchdog_timeout_ms=5500, pwm_min_interval_ms=5000), FirmwareFaults())
    cp.write_point("setpoint_a", 16.0, 0)
    cp.plug(EV(reaction_delay_ms=300, start_delay_ms=1200, seed=3, tick_ms=1000), 0)
    obs = []
    for t in range(0, 40_000, 1000):
        cp.advance(t)
        if t in (3000, 4000):                   # 4000: inside the 5 s spacing -> pending
            cp.write_point("setpoint_a", 10.0 if t == 3000 else 12.0, t)
        if t < 20_000:
            cp.write_point("heartbeat", 1, t)   # then silence: the watchdog falls back at 24.5 s
        if t == 12_000:
            cp.evse.config.hw_max_current_a = 6     # a knob (generation, not counter): PWM moves
        if t == 30_000 and bypass:
            bypass(cp, t)
        obs.append(_observe(cp))
    return obs


def _disable(cp, t):
    cp.evse.write_point("enabled", False, t)     # bypasses ChargePoint: no settle at t


def test_settle_skip_equals_reference():
    # the skip's conditions each broken in turn makes this differ (checked: dropping the counter,
    # the knob generation or the pending test). Dropping the next-event test does not: a deadline
    # passed over by a skip leaves next_event_ms in the EVSE's signature, so the settle loop runs
    # a second pass with the update (the test is kept: it keeps the skip's proof local)
    assert _script(ChargePoint) == _script(_NoSkipChargePoint)
    assert _script(ChargePoint, _disable) == _script(_NoSkipChargePoint, _disable)
    ref = _script(_NoSkipChargePoint, _disable)
    assert any(k == "watchdog_fallback" for k in (x[1] for x in ref[-1][0]))
    assert any(k == "enabled" for k in (x[1] for x in ref[-1][0]))


def test_settle_skip_is_taken(monkeypatch):
    # the equivalence above is not vacuous: a charging EV's ticks skip the EVSE's update
    calls = [0]
    real = Evse.update

    def counting(self, t, ev=None, _real=real):
        calls[0] += 1
        return _real(self, t) if ev is None else _real(self, t, ev)
    monkeypatch.setattr(Evse, "update", counting)
    _script(ChargePoint)
    n_fast = calls[0]
    calls[0] = 0
    _script(_NoSkipChargePoint)
    assert n_fast < calls[0] * 0.8


def test_signals_read_directly_equal_the_properties():
    # ChargePoint._signals reads EV / SimulatedEv attributes directly (the properties' bodies);
    # they must give what the properties give, energised with leakage and a missing diode too
    # (swapping dc and ac, or dropping the energised test, fails: checked)
    cp = ChargePoint(EvseConfig(watchdog_timeout_ms=0))
    cp.write_point("setpoint_a", 16.0, 0)
    v = EV(reaction_delay_ms=0, start_delay_ms=0, seed=2)
    cp.plug(v, 0)
    seen = []
    for t, knobs in ((1000, {}), (3000, {"leakage_dc_ma": 3.0, "leakage_ac_ma": 7.0}),
                     (5000, {"missing_diode": True})):
        for k, x in knobs.items():
            setattr(v.faults, k, x)
        cp.advance(t)
        s = cp._signals()
        assert s == EvSignals(cp=v.cp_state, diode_ok=v.diode_ok, currents_a=tuple(v.currents_a),
                              leakage_dc_ma=v.leakage_dc_ma, leakage_ac_ma=v.leakage_ac_ma,
                              pp_ohm=v.pp_ohm)
        seen.append((s.leakage_dc_ma, s.leakage_ac_ma, s.diode_ok))
    assert seen[1][:2] == (3.0, 7.0) or seen[2][:2] == (3.0, 7.0)
