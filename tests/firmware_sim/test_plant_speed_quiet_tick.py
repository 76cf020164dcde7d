"""ChargePoint's quiet SOC ticks (EV.quiet_tick under the owner's promise) leave every model
exactly as settling at each tick does: compared step by step with a charge point advanced
without the promise, across the taper knee, the target SOC and PWM changes in flight."""
import pytest

from dlbrig.firmware_sim import EV, ChargePoint, EvseConfig
from dlbrig.firmware_sim.ev import EV as EvClass


def _state(cp):
    # (not the EVSE's change counter: the plain path may count more no-op assignments; the
    # counter only has to move when a point changes)
    ev, e = cp.ev, cp.evse
    en = ev._energy
    return (cp.now_ms, ev._now_ms, repr(ev._soc_snapshot), ev.state_signature(),
            repr(ev._currents), repr(ev._demand), (repr(en.acc), repr(en.rate), en.t0),
            e.now_ms, e.state_signature(), repr(e.session_energy_wh),
            [(x.t_ms, x.kind, x.data) for x in e.events], e.status)


def _pair(watchdog_ms=0, **ev_kw):
    cps = []
    for _ in range(2):
        cp = ChargePoint(EvseConfig(hw_max_current_a=16.0, hw_phases=3, watchdog_timeout_ms=watchdog_ms))
        cp.write_point("setpoint_a", 16.0, 0)
        cp.plug(EV.preset("sedan_3p", seed=3, **ev_kw), 0)
        cps.append(cp)
    return cps


def _run(fast, plain, until_ms, writes=()):
    """Advance both every second (fast under the promise, as the plant does in fast mode) with
    set-point writes at the given seconds; compare after every step."""
    writes = dict(writes)
    for t in range(1000, until_ms + 1, 1000):
        fast.advance(t, unchanged=True)
        plain.advance(t)
        assert _state(fast) == _state(plain), t
        if t in writes:
            fast.settled_promise = True
            fast.write_point("setpoint_a", writes[t], t)
            fast.settled_promise = False
            plain.write_point("setpoint_a", writes[t], t)
            assert _state(fast) == _state(plain), t


@pytest.fixture
def quiet_count(monkeypatch):
    n = [0]
    real = EvClass.quiet_tick

    def counted(self, t):
        took = real(self, t)
        n[0] += took
        return took
    monkeypatch.setattr(EvClass, "quiet_tick", counted)
    return n


def test_quiet_ticks_across_taper_knee_and_target(quiet_count):
    # 2 kWh at ~10 kW: about 1.4 % SOC per 10 s, from below the knee (80 %) to the target
    fast, plain = _pair(battery_kwh=2.0, soc_pct=76.0, target_soc_pct=88.0)
    _run(fast, plain, 400_000)
    assert fast.ev.full and plain.ev.full          # the target was crossed
    assert quiet_count[0] > 20                     # and the quiet path was taken before the knee


def test_quiet_ticks_with_pwm_changes_in_flight(quiet_count):
    fast, plain = _pair(battery_kwh=60.0, soc_pct=30.0)
    _run(fast, plain, 300_000, writes={60_000: 10.0, 61_000: 8.0, 90_000: 0.0, 150_000: 13.0,
                                       200_000: 16.0, 201_000: 6.0})
    assert quiet_count[0] > 100


def test_no_quiet_tick_off_the_tick_grid(quiet_count):
    fast, plain = _pair(battery_kwh=60.0, soc_pct=30.0)
    _run(fast, plain, 60_000)
    before = quiet_count[0]
    for t in range(60_250, 70_000, 250):      # steps off the SOC grid: ticks still at whole seconds
        fast.advance(t, unchanged=True)
        plain.advance(t)
        assert _state(fast) == _state(plain), t
    assert quiet_count[0] > before


def test_quiet_ticks_up_to_a_target_below_the_knee(quiet_count):
    # the draw is flat up to the target: only the target crossing ends the quiet ticks
    fast, plain = _pair(battery_kwh=2.0, soc_pct=75.0, target_soc_pct=79.0)
    _run(fast, plain, 120_000)
    assert fast.ev.full and plain.ev.full
    assert quiet_count[0] > 20


def test_the_evse_event_on_a_tick_is_not_skipped(quiet_count):
    # the watchdog (last feed: the set-point at 0 and 40 s) runs out on a tick while the EV draws
    fast, plain = _pair(watchdog_ms=70_000, battery_kwh=60.0, soc_pct=30.0)
    _run(fast, plain, 150_000, writes={40_000: 12.0})
    assert any(x.kind == "watchdog_fallback" and x.t_ms == 110_000 for x in fast.evse.events)
    assert quiet_count[0] > 50
