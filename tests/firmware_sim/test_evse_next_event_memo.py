"""Evse.next_event_memo (ChargePoint under its owner's promise) answers next_event_ms exactly:
through heartbeats (the watchdog deadline moving without a counted change), a set-point validity
(an uncounted deadline), the watchdog expiring into failsafe, a fault knob switching the watchdog
off, plug and unplug; and an idle charge point advanced under the promise ends where the plain
one does, its watchdog firing on time."""
from dlbrig.firmware_sim import EV, ChargePoint, EvseConfig


def _cp():
    cp = ChargePoint(EvseConfig(hw_max_current_a=16.0, hw_phases=3, watchdog_timeout_ms=5000))
    cp.write_point("setpoint_a", 16.0, 0)
    return cp


def _script(t):
    """Writes of a controller that falls silent now and then (second -> (point, value))."""
    s = t // 1000
    if 20 <= s < 30 or 70 <= s < 74:
        return []                               # silent: the watchdog expires (failsafe)
    out = [("heartbeat", True)]
    if s in (36, 37):       # the same set-point again without a validity: the deadline goes
        return out + [("setpoint_validity_s", 4.0)] * (s == 36) + [("setpoint_a", 12.0)]  # uncounted
    if s % 9 == 0:
        out.append(("setpoint_validity_s", 3.0 + s % 4))
    if s % 7 == 0 or s in (30, 74):
        out.append(("setpoint_a", 6.0 + s % 10))
    return out


def test_memo_equals_next_event_ms_everywhere():
    cp = _cp()
    e = cp.evse
    for s in range(1, 120):
        t = s * 1000
        if s == 15:
            cp.plug(EV.preset("sedan_3p", seed=2, soc_pct=40.0), t)
        if s == 50:
            e.faults.no_watchdog = True
        if s == 60:
            e.faults.no_watchdog = False
        if s == 95:
            cp.unplug(t)
        cp.advance(t)
        assert e.next_event_memo() == e.next_event_ms(), t
        for name, value in _script(t):
            cp.write_point(name, value, t)
            assert e.next_event_memo() == e.next_event_ms(), (t, name)
        for dt in (250, 500):                  # between cycles: the clock moves, nothing else
            cp.advance(t + dt)
            assert e.next_event_memo() == e.next_event_ms(), t + dt
    assert any(x.kind == "watchdog_recovered" for x in e.events)


def test_idle_charge_point_under_promise_equals_plain():
    fast, plain = _cp(), _cp()
    for s in range(1, 100):
        t = s * 1000
        fast.advance(t, unchanged=True)
        plain.advance(t)
        assert fast.evse.state_signature() == plain.evse.state_signature(), t
        assert [(x.t_ms, x.kind) for x in fast.events] == [(x.t_ms, x.kind) for x in plain.events]
        for name, value in _script(t):
            fast.settled_promise = True
            fast.write_point(name, value, t)
            fast.settled_promise = False
            plain.write_point(name, value, t)
    kinds = [x.kind for x in plain.events]
    assert "watchdog_recovered" in kinds and len(kinds) > 10


def test_memo_sees_an_uncounted_validity_deadline_go():
    """A repeated set-point without a pending validity clears the deadline and counts nothing:
    the memo must not keep the old deadline (its key has the deadline itself)."""
    cp = _cp()
    e = cp.evse
    for s in range(1, 36):
        cp.advance(s * 1000)
        cp.write_point("heartbeat", True, s * 1000)
    cp.write_point("setpoint_validity_s", 4.0, 36_000)
    cp.write_point("setpoint_a", 12.0, 36_000)
    cp.advance(37_000)
    assert e.next_event_memo() == e.next_event_ms() == 40_000
    rev = e._rev
    cp.write_point("setpoint_a", 12.0, 37_000)
    assert e._rev == rev and e._validity_deadline_ms is None
    assert e.next_event_memo() == e.next_event_ms() == 42_000
