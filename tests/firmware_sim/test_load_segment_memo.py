"""BuildingLoad.current_a with the segment memo (the plant's fast mode) gives the plain path's
values bit for bit: across hours, 15-min noise knots, the last knot of a day (into the next day's
first), the weekend, random query orders, and after a change of kind or seed (a new stretch)."""
import random

from dlbrig.firmware_sim.loads import MS_PER_DAY, MS_PER_HOUR, BuildingLoad


def _pair(**kw):
    plain, fast = BuildingLoad(**kw), BuildingLoad(**kw)
    fast.segment_memo = True
    return plain, fast


def test_memo_equals_plain_path():
    rng = random.Random(7)
    for kind in ("office", "hotel", "hospital", "residential"):
        plain, fast = _pair(kind=kind, peak_a=150.0, seed=3, unbalance=0.08)
        times = list(range(0, 2 * MS_PER_HOUR, 1000))                       # a Monday morning
        times += list(range(MS_PER_DAY - 20 * 60_000, MS_PER_DAY + 20 * 60_000, 7000))  # midnight
        times += list(range(5 * MS_PER_DAY - 60_000, 5 * MS_PER_DAY + 60_000, 500))    # Fri -> Sat
        times += list(range(7 * MS_PER_DAY - 60_000, 7 * MS_PER_DAY + 60_000, 3000))    # Sun -> Mon
        times += [rng.randrange(0, 14 * MS_PER_DAY) for _ in range(300)]   # back and forth
        for t in times:
            assert repr(fast.current_a(t)) == repr(plain.current_a(t)), (kind, t)
    assert fast._seg is not None


def test_memo_follows_kind_and_seed_changes():
    plain, fast = _pair(kind="office", peak_a=100.0, seed=1)
    t = 9 * MS_PER_HOUR + 1234
    assert fast.current_a(t) == plain.current_a(t)
    for obj in (plain, fast):
        obj.seed = 2
    assert repr(fast.current_a(t + 1000)) == repr(plain.current_a(t + 1000))
    for obj in (plain, fast):
        obj.kind = "hotel"
    assert repr(fast.current_a(t + 2000)) == repr(plain.current_a(t + 2000))
    for obj in (plain, fast):       # read live, never memoized
        obj.peak_a, obj.noise_fraction, obj.critical_fraction = 80.0, 0.2, 0.5
    assert repr(fast.current_a(t + 3000)) == repr(plain.current_a(t + 3000))
