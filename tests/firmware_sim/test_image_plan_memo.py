"""``DeviceImage.read_many``'s plan memo against plain reads of the same charger model.

The memo reuses registers computed from points outside the model's ``timed_points`` while the
model's ``read_token`` is unchanged, and encodes time-dependent registers (Alfen 1208, the
set-point's remaining validity) again on every read. Each test changes the model in a way one of
those shortcuts must not miss, at the same instant and across instants, and compares with a
second image without caches over the same model (plain reads: the truth). As the plant does, a
change made to a model outside the image is followed by ``invalidate()`` (which only drops the
points cached for the current instant: the plan memos stay and must find the change themselves).

Each case fails when its invalidation is removed (checked by hand: ``read_token`` without the
knobs' generation fails the fault-knob case; a ``__setattr__`` that does not count the attribute
fails the direct-attribute case; re-encoding no timed register fails the countdown case).
"""
from __future__ import annotations

import pytest

from dlbrig.firmware_sim.ev import EV
from dlbrig.firmware_sim.evse import ChargePoint, EvseConfig
from dlbrig.firmware_sim.profiles import DeviceImage, ModbusError, get_profile
from dlbrig.firmware_sim.profiles.driver import driver_for

PROFILES = ["alfen_ng9xx", "keba_p30", "abb_terra_ac"]


def _setup(name):
    p = get_profile(name)
    cp = ChargePoint(EvseConfig(watchdog_timeout_ms=60_000))
    drv = driver_for(p)
    unit = drv.unit
    fast = DeviceImage(p, {unit: cp}, cache=True)
    plain = DeviceImage(p, {unit: cp})
    plan = drv.read_plan_view()
    return cp, drv, unit, fast, plain, plan


def _answer(fn):
    try:
        return ("ok", fn())
    except ModbusError as exc:
        return ("exc", exc.code)    # the code is what goes on the wire


def _check(fast, plain, unit, plan, t):
    got = _answer(lambda: fast.read_many(unit, plan, t))
    want = _answer(lambda: [plain.read(unit, tb, a, n, t) for tb, a, n in plan])
    assert got == want, t
    return got


def _charging(cp, drv, fast, unit, t=0):
    cp.plug(EV.preset("sedan_3p", seed=3, start_delay_range_ms=(1000, 1000)), t)
    for table, address, words in drv.setpoint_writes(16.0):
        fast.write(unit, table, address, words, t)
    cp.advance(t + 5000)
    assert cp.status == "charging"
    return t + 5000


@pytest.mark.parametrize("name", PROFILES)
def test_memo_follows_the_model_every_second(name):
    cp, drv, unit, fast, plain, plan = _setup(name)
    t = _charging(cp, drv, fast, unit)
    answers = set()
    for k in range(40):
        t += 1000
        cp.advance(t, unchanged=True)
        fast.invalidate()
        for _ in range(2):
            answers.add(repr(_check(fast, plain, unit, plan, t)))
    # the plan is memoized (not resting) and its token was reused
    pm = fast._units[unit].plans[plan]
    assert pm.__class__.__name__ == "_Plan" and pm.tokens == cp.read_token()
    if name == "alfen_ng9xx":
        # the validity countdown moved every second and only it is re-encoded
        assert pm.timed and len(answers) >= 40


@pytest.mark.parametrize("name", PROFILES)
def test_memo_sees_a_fault_knob_changed_in_place(name):
    cp, drv, unit, fast, plain, plan = _setup(name)
    t = _charging(cp, drv, fast, unit)
    before = _check(fast, plain, unit, plan, t)
    cp.evse.faults.misreport_current_pct = 25.0      # the charger's own meter lies from now on
    fast.invalidate()       # the owner's duty after changing a model (drops the instant's points)
    after = _check(fast, plain, unit, plan, t)
    assert after != before


@pytest.mark.parametrize("name", PROFILES)
def test_memo_sees_model_attributes_set_directly(name):
    cp, drv, unit, fast, plain, plan = _setup(name)
    t = _charging(cp, drv, fast, unit)
    before = _check(fast, plain, unit, plan, t)
    cp.evse.contactor_closed = False                 # an owner changing the model by hand
    fast.invalidate()
    after = _check(fast, plain, unit, plan, t)
    assert after != before


@pytest.mark.parametrize("name", PROFILES)
def test_memo_sees_writes_and_unplug(name):
    cp, drv, unit, fast, plain, plan = _setup(name)
    t = _charging(cp, drv, fast, unit)
    seen = {repr(_check(fast, plain, unit, plan, t))}
    for amps in (6.0, 0.0, 10.0):
        t += 6000
        cp.advance(t)
        fast.invalidate()
        for table, address, words in drv.setpoint_writes(amps):
            fast.write(unit, table, address, words, t)
        seen.add(repr(_check(fast, plain, unit, plan, t)))
    cp.unplug(t)
    fast.invalidate()
    seen.add(repr(_check(fast, plain, unit, plan, t)))
    assert len(seen) >= 3


def test_a_timed_register_that_fails_raises_as_the_plain_path(monkeypatch):
    cp, drv, unit, fast, plain, plan = _setup("alfen_ng9xx")
    t = _charging(cp, drv, fast, unit)
    _check(fast, plain, unit, plan, t)
    assert fast._units[unit].plans[plan].timed

    def broken(self):
        raise RuntimeError("model bug")
    monkeypatch.setattr(type(cp.evse), "_valid_ms", broken)
    got = _check(fast, plain, unit, plan, t + 1000)
    assert got[0] == "exc" and got[1] == 4


@pytest.mark.parametrize("name", PROFILES)
def test_decode_shared_is_decode(name):
    """The controller's no-copy decode gives what ``decode`` gives, response after response (its
    memo is keyed on the responses: a stale key would repeat the previous reading)."""
    cp, drv, unit, fast, plain, plan = _setup(name)
    shared = driver_for(get_profile(name), memo=True)
    t = _charging(cp, drv, fast, unit)
    states = set()
    for k in range(30):
        t += 1000
        if k == 10:
            cp.unplug(t)
        if k == 20:
            cp.plug(EV.preset("compact_1p", seed=1, start_delay_range_ms=(1000, 1000)), t)
        cp.advance(t)
        fast.invalidate()
        resp = fast.read_many(unit, plan, t)
        want = drv.decode([list(r) for r in resp])
        got = shared.decode_shared(resp)
        assert (got.state, got.currents_a, got.applied_a, got.setpoint_a, got.phases, got.raw) == \
            (want.state, want.currents_a, want.applied_a, want.setpoint_a, want.phases, want.raw)
        states.add(got.state)
    assert len(states) >= 2, states


@pytest.mark.parametrize("first_bad", [True, False])
def test_a_refused_request_feeds_the_watchdog_as_plain_reads_do(first_bad):
    """ABB is fed by any request, but a request refused for static reasons (an address outside
    the address space, a quantity above the limit) is answered before the device sees it: the
    memo path must not feed it either."""
    p = get_profile("abb_terra_ac")
    drv = driver_for(p)
    cps = [ChargePoint(EvseConfig(watchdog_timeout_ms=60_000)) for _ in range(2)]
    fast = DeviceImage(p, {drv.unit: cps[0]}, cache=True)
    plain = DeviceImage(p, {drv.unit: cps[1]})
    for t, bad in ((1000, ("holding", 0xFFF8, 16)), (2000, ("holding", 0, 500)), (3000, ("holding", 0xFFF8, 16))):
        plan = tuple([bad] + drv.read_plan()) if first_bad else tuple(drv.read_plan() + [bad])
        for cp in cps:
            cp.advance(t)
        fast.invalidate()
        got = _answer(lambda: fast.read_many(drv.unit, plan, t))
        want = _answer(lambda: [plain.read(drv.unit, tb, a, n, t) for tb, a, n in plan])
        assert got == want
        assert cps[0].evse._wd_last_feed_ms == cps[1].evse._wd_last_feed_ms, t


@pytest.mark.parametrize("name", PROFILES)
def test_shared_answers_are_the_memo_while_it_holds(name):
    """``read_many(shared=True)`` (the controller's scan) answers what plain reads answer; a plan
    without timed registers gives the memo's own lists while the model is unchanged and new
    ones once it changed; with a timed register every answer is a fresh copy."""
    cp, drv, unit, fast, plain, plan = _setup(name)
    t = _charging(cp, drv, fast, unit)
    same = changed = 0
    last = None
    for k in range(40):
        t += 1000
        if k == 20:
            for table, address, words in drv.setpoint_writes(10.0):
                fast.write(unit, table, address, words, t)
        cp.advance(t, unchanged=k != 20)
        fast.invalidate()
        got = fast.read_many(unit, plan, t, shared=True)
        assert got == [plain.read(unit, tb, a, n, t) for tb, a, n in plan], k
        if last is not None:
            if got is last:
                same += 1
            elif got != last:
                changed += 1
        last = got
    pm = fast._units[unit].plans[plan]
    if pm.timed:
        assert same == 0 and changed >= 39
    else:
        assert same >= 30 and changed >= 1, (same, changed)
    assert fast.read_many(unit, plan, t) is not last        # a caller without shared: a copy
