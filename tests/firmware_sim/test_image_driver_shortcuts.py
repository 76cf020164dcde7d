"""Fast paths of the controller's reads and writes against the plain paths they stand for.

* ``read_many(shared=True)`` of a plan with a timed register (Alfen 1208): the requests without
  one are the memo's own lists (the same objects every read), the patched one a fresh copy; the
  words are what plain reads give.
* ``MeterDriver``'s change detection field by field (``_spans``) finds the changed fields the
  word-by-word comparison finds, and still hands a moved filler word to the full decode.
* ``ChargerDriver._decode_changed`` with one changed field (the countdown) updates ``raw`` in
  place as the general path does, and leaves it as it was when that field fails to decode.
* A write through a cached image decodes with the register's compiled decoder: the same values
  and the same exceptions as an image without caches; a memo driver encodes its writes with the
  compiled encoders: the same words and refusals as a driver without memo.
* ``invalidate()`` no longer empties the points cache itself: the next request at any time
  still sees the model's new values.
"""
from __future__ import annotations

import math
import random

import pytest

from dlbrig.firmware_sim.ev import EV
from dlbrig.firmware_sim.evse import ChargePoint, EvseConfig
from dlbrig.firmware_sim.profiles import DeviceImage, ModbusError, get_profile
from dlbrig.firmware_sim.profiles.driver import DecodeError, driver_for


def _charger(name):
    p = get_profile(name)
    cp = ChargePoint(EvseConfig(watchdog_timeout_ms=60_000))
    drv = driver_for(p, memo=True)
    fast = DeviceImage(p, {drv.unit: cp}, cache=True)
    plain = DeviceImage(p, {drv.unit: cp})
    cp.plug(EV.preset("sedan_3p", seed=3, start_delay_range_ms=(1000, 1000)), 0)
    for table, address, words in drv.setpoint_writes(16.0):
        fast.write(drv.unit, table, address, words, 0)
    cp.advance(5000)
    return cp, drv, fast, plain


def test_timed_plan_shares_the_untimed_requests():
    cp, drv, fast, plain = _charger("alfen_ng9xx")
    unit, plan = drv.unit, drv.read_plan_view()
    t = 5000
    last = None
    held = 0
    for k in range(30):
        t += 1000
        cp.advance(t, unchanged=True)
        fast.invalidate()
        got = fast.read_many(unit, plan, t, shared=True)
        assert got == [plain.read(unit, tb, a, n, t) for tb, a, n in plan], k
        pm = fast._units[unit].plans[plan]
        timed = {ri for ri, *_ in pm.timed}
        assert timed and len(timed) < len(plan)
        if pm.shared is not None:       # (None: answered by a rebuild, all new lists)
            held += 1
            for ri, row in enumerate(got):
                assert (row is pm.shared[ri]) == (ri not in timed), (k, ri)
        if last is not None:
            assert got is not last
            for ri in timed:
                assert got[ri] is not last[ri]      # never patched in place: last is a memo key
        last = got
    assert held >= 25
    # an unshared caller gets copies throughout
    mine = fast.read_many(unit, plan, t)
    assert mine == last and all(a is not b for a, b in zip(mine, last))


def test_shared_countdown_reads_decode_as_plain_reads():
    """The controller's pair (shared answers, decode_shared) against plain reads and a full
    decode, every second, with a set-point change in between (the reading must change then)."""
    cp, drv, fast, plain = _charger("alfen_ng9xx")
    ref = driver_for(get_profile("alfen_ng9xx"))
    unit, plan = drv.unit, drv.read_plan_view()
    t = 5000
    same = 0
    last = None
    for k in range(40):
        t += 1000
        if k == 20:
            for table, address, words in drv.setpoint_writes(10.0):
                fast.write(unit, table, address, words, t)
        cp.advance(t, unchanged=k != 20)
        fast.invalidate()
        r = drv.decode_shared(fast.read_many(unit, plan, t, shared=True))
        want = ref.decode([plain.read(unit, tb, a, n, t) for tb, a, n in plan])
        assert (r.state, r.currents_a, r.applied_a, r.setpoint_a, r.phases) == \
            (want.state, want.currents_a, want.applied_a, want.setpoint_a, want.phases), k
        assert r.raw == want.raw, k
        same += r is last
        last = r
    assert same >= 30


def test_one_changed_field_that_fails_leaves_raw_as_it_was(monkeypatch):
    cp, drv, fast, plain = _charger("alfen_ng9xx")
    unit, plan = drv.unit, drv.read_plan_view()
    t = 5000
    r1 = None
    for _ in range(60):         # until the EV settles: the countdown alone changes, hinted
        t += 1000
        cp.advance(t, unchanged=True)
        fast.invalidate()
        r0, r1 = r1, drv.decode_shared(fast.read_many(unit, plan, t, shared=True))
        if r1 is r0 and drv._change_hints:
            break
    assert r1 is r0 and drv._change_hints
    before = dict(r1.raw)

    def boom(*a):
        raise DecodeError("boom")
    monkeypatch.setattr(drv, "_field_value", boom)
    t += 1000
    cp.advance(t, unchanged=True)
    fast.invalidate()
    with pytest.raises(DecodeError):
        drv.decode_shared(fast.read_many(unit, plan, t, shared=True))
    assert r1.raw == before


def _meter_words(rng, n, fields):
    words = [0] * n
    for _, reg, i, off, end in fields:
        for j in range(off, end):
            words[j] = rng.randrange(0, 0x10000)
    return words


@pytest.mark.parametrize("profile", ["em24", "sdm630"])
def test_meter_change_detection_by_field(profile):
    """Random changes of a few fields (or a filler word) decode, through the memo, to what a
    driver without memo decodes; and the fields found changed are those the word-by-word
    comparison finds."""
    drv = driver_for(profile, memo=True)
    ref = driver_for(profile)
    assert drv._spans is not None
    rng = random.Random(7)
    plan = drv.read_plan()
    # plausible values: decode a real meter image's answer, then perturb field words
    from dlbrig.firmware_sim.meter import Meter
    m = Meter()
    img = DeviceImage(get_profile(profile), {drv.unit: m})
    base = [img.read(drv.unit, t, a, n, 0) for t, a, n in plan]
    assert drv.decode(base) == ref.decode(base)
    fillers = [(i, j) for i, owner in enumerate(drv._word_owner) for j, o in enumerate(owner) if o is None]
    for k in range(200):
        new = [list(x) for x in base]
        for key, reg, i, off, end in rng.sample(drv._locs, rng.randint(1, 3)):
            j = rng.randrange(off, end)
            new[i][j] = (new[i][j] + rng.randrange(1, 4)) & 0xFFFF
        if fillers and k % 10 == 0:
            i, j = rng.choice(fillers)
            new[i][j] ^= 1
        old = drv._memo_key
        spans = drv._spans
        drv._spans = None
        by_word = drv._values_changed(old, tuple(map(tuple, new)))
        drv._spans = spans
        by_field = drv._values_changed(old, tuple(map(tuple, new)))
        assert (by_word is None) == (by_field is None)
        if by_word is not None:
            assert by_word == by_field or all(
                (a == b) or (isinstance(a, float) and math.isnan(a) and math.isnan(b))
                for a, b in zip(by_word.values(), by_field.values()))
        try:
            want = ("ok", ref.decode(new))
        except DecodeError as exc:
            want = ("err", str(exc))
        try:
            got = ("ok", drv.decode(new))
        except DecodeError as exc:
            got = ("err", str(exc))
        assert got == want, k
        if got[0] == "ok":
            base = new


@pytest.mark.parametrize("name", ["alfen_ng9xx", "keba_p30", "abb_terra_ac"])
def test_cached_writes_decode_as_plain_writes(name):
    """Set-points, a value outside the register's range and a quantity the codec cannot take:
    the cached image (compiled decoder) and the plain one accept and refuse alike."""
    p = get_profile(name)
    drv = driver_for(p)
    cps = [ChargePoint(EvseConfig(watchdog_timeout_ms=60_000)) for _ in range(2)]
    fast = DeviceImage(p, {drv.unit: cps[0]}, cache=True)
    plain = DeviceImage(p, {drv.unit: cps[1]})
    reg = drv._sp
    writes = [w for a in (6.0, 10.5, 16.0, 0.0) for w in drv.setpoint_writes(a)]
    writes += [(reg.table, reg.address, [0xFFFF] * reg.count), (reg.table, reg.address, [0x7FFF] * reg.count),
               (reg.table, reg.address, [1] * (reg.count + 1))]
    for t, (table, address, words) in enumerate(writes):
        out = []
        for img in (fast, plain):
            try:
                img.write(drv.unit, table, address, words, 1000 * t)
                out.append("ok")
            except ModbusError as exc:
                out.append(exc.code)
        assert out[0] == out[1], (t, words)
        assert fast.read_many(drv.unit, drv.read_plan_view(), 1000 * t) == \
            [plain.read(drv.unit, tb, a, n, 1000 * t) for tb, a, n in drv.read_plan_view()]


def test_invalidate_drops_the_points_at_the_same_instant():
    cp, drv, fast, plain = _charger("keba_p30")
    unit, plan = drv.unit, drv.read_plan_view()
    t = 6000
    cp.advance(t)
    fast.invalidate()
    first = fast.read_many(unit, plan, t)
    cp.unplug(t)            # the model changes at the same instant
    fast.invalidate()
    assert fast.read_many(unit, plan, t) == [plain.read(unit, tb, a, n, t) for tb, a, n in plan] != first


@pytest.mark.parametrize("name", ["alfen_ng9xx", "keba_p30", "abb_terra_ac", "dlbrig_generic", "vestel_evc04"])
def test_memo_driver_writes_the_plain_drivers_words(name):
    """A memo driver encodes its writes with the registers' compiled encoders: the same writes
    (and the same refusals) as a driver without memo."""
    fast, plain = driver_for(name, memo=True), driver_for(name)

    def outcome(fn):
        try:
            return ("ok", fn())
        except Exception as exc:    # (the type is what must agree)
            return ("err", type(exc).__name__)
    for amps in (0.0, 5.9, 6.0, 7.3, 13.37, 16.0, 32.0, 80.0, 1e9, -1.0, math.nan):
        assert outcome(lambda: fast.setpoint_writes(amps)) == outcome(lambda: plain.setpoint_writes(amps)), amps
    for ph in (1, 3, 2):
        assert outcome(lambda: fast.phase_writes(ph)) == outcome(lambda: plain.phase_writes(ph)), ph
    assert outcome(lambda: fast.failsafe_writes(6.0, 20.0)) == outcome(lambda: plain.failsafe_writes(6.0, 20.0))
    assert outcome(fast.heartbeat_writes) == outcome(plain.heartbeat_writes)
    # fresh lists each call: a caller may keep or change what it got
    w1, w2 = fast.setpoint_writes(10.0), fast.setpoint_writes(10.0)
    assert w1 == w2 and all(a[2] is not b[2] for a, b in zip(w1, w2))
