"""The public Python face: Allocator(site).step(now_ms, meters=..., chargers=...) -> Result.

Readings that cannot be trusted (NaN, inf, out of range, unknown state, wrong shape) are listed in
``res.rejected`` and treated as missing: they age toward the failsafe ladder and are never used.
An absent entry means "no new reading". Both backends give equal results.
"""
from __future__ import annotations

import math

import pytest
from hypothesis import given, strategies as st

import core_helpers as H
from dlbrig.core import Allocator, Site, model

CP1_CHARGING = {"state": "charging", "current_a": [10, 10, 10]}
CP2_IDLE = {"state": "connected_idle", "current_a": [0, 0, 0]}


def test_result_fields(example_site, backend):
    al = Allocator(example_site, backend=backend)
    res = al.step(0, meters={"main": [20.0, 18.5, 19.0]}, chargers={"cp1": CP1_CHARGING, "cp2": CP2_IDLE})
    cp1, cp2 = res.chargers["cp1"], res.chargers["cp2"]
    assert res.now_ms == 0 and res.rejected == []
    for cp in (cp1, cp2):
        assert isinstance(cp.current_a, float) and cp.current_a in (0.0,) or 6.0 <= cp.current_a <= 32.0
        assert cp.admitted and not cp.lost
    assert cp1.phases == 3 and cp2.phases == 1
    # both share garage L2 (32 A): fair split on L2, cp1 also loads L1 and L3
    assert cp1.current_a + cp2.current_a <= 32.0
    assert cp2.reason.startswith("circuit garage L2") or cp2.reason == "charger max"
    main, garage = res.circuits["main"], res.circuits["garage"]
    assert main.status == "ok" and garage.status == "ok"
    assert garage.allocated_a == [cp1.current_a, cp1.current_a + cp2.current_a, cp1.current_a]
    assert main.allocated_a == garage.allocated_a
    # base = meter - EV draws below it
    assert main.base_a == [10.0, 8.5, 9.0]
    assert garage.base_a == [0.0, 0.0, 0.0]
    # headroom = limit - margin - base - sum max(set-point, draw)
    assert main.headroom_a[1] == pytest.approx(63 - 1 - 8.5 - max(cp1.current_a, 10) - cp2.current_a)
    assert main.power_headroom_a is not None and garage.power_headroom_a is None


def test_reason_strings(backend):
    spec = H.example_spec()
    spec["chargers"][0]["max_a"] = 6
    al = Allocator(Site.from_dict(spec), backend=backend)
    res = al.step(0, meters={"main": [0, 0, 0]}, chargers={"cp1": {"state": "charging"}, "cp2": {"state": "disconnected"}})
    assert res.chargers["cp1"].reason == "charger max" and res.chargers["cp1"].current_a == 6.0
    assert res.chargers["cp2"].reason == "not connected" and res.chargers["cp2"].current_a == 0.0
    res = al.step(1000, meters={"main": [0, 0, 0]}, chargers={"cp1": {"state": "fault"}, "cp2": {"state": "unavailable"}})
    assert (res.chargers["cp1"].reason, res.chargers["cp2"].reason) == ("fault", "unavailable")


BAD_METER = [[math.nan, 0, 0], [0, math.inf, 0], [0, 0, -math.inf], [2001, 0, 0], [0, -2000.5, 0],
             [1, 2], [1, 2, 3, 4], "20", None, [True, 0, 0], [0, "1", 0]]
BAD_CHARGER = [{"state": "charging", "current_a": [math.nan, 0, 0]}, {"state": "charging", "current_a": [-1, 0, 0]},
               {"state": "charging", "current_a": [0, math.inf, 0]}, {"state": "charging", "current_a": [2001, 0, 0]},
               {"state": "flying"}, {"state": None}, {"current_a": [0, 0, 0]}, "charging", None,
               {"state": "charging", "current_a": [1, 2]}]


@pytest.mark.parametrize("bad", BAD_METER, ids=repr)
def test_untrusted_meter_reading_is_rejected_and_ages(example_site, backend, bad):
    """An untrusted meter reading is listed in res.rejected and treated as missing: the last good reading
    stays in use until meter_timeout, then the circuit is meter_stale and runs on its fallback base."""
    al = Allocator(example_site, backend=backend)
    res = al.step(0, meters={"main": [5, 5, 5]}, chargers={"cp1": CP1_CHARGING, "cp2": CP2_IDLE})
    assert res.circuits["main"].base_a == [-5.0, -5.0, -5.0]
    for t in range(1000, 10001, 1000):
        res = al.step(t, meters={"main": bad}, chargers={"cp1": CP1_CHARGING, "cp2": CP2_IDLE})
        assert [name for name, _ in res.rejected] == ["main"]
        assert res.circuits["main"].status == "ok"
        assert res.circuits["main"].base_a == [-5.0, -5.0, -5.0]   # the last good reading, never the bad one
    res = al.step(11000, meters={"main": bad}, chargers={"cp1": CP1_CHARGING, "cp2": CP2_IDLE})
    assert res.circuits["main"].status == "meter_stale"
    assert "meter_stale" in res.circuits["main"].flags
    assert res.circuits["main"].base_a == [25.0, 25.0, 25.0]      # fallback_base_a


@pytest.mark.parametrize("bad", BAD_CHARGER, ids=repr)
def test_untrusted_charger_reading_is_rejected_and_ages(example_site, backend, bad):
    """An untrusted charger reading is listed and treated as missing; after charger_timeout the charger
    is lost: its set-point is held and it is counted at max(set-point, failsafe)."""
    al = Allocator(example_site, backend=backend)
    res = al.step(0, meters={"main": [10, 10, 10]}, chargers={"cp1": CP1_CHARGING, "cp2": CP2_IDLE})
    held = res.chargers["cp1"].current_a
    for t in range(1000, 10001, 1000):
        res = al.step(t, meters={"main": [10, 10, 10]}, chargers={"cp1": bad, "cp2": CP2_IDLE})
        assert [name for name, _ in res.rejected] == ["cp1"]
        assert not res.chargers["cp1"].lost
    res = al.step(11000, meters={"main": [10, 10, 10]}, chargers={"cp1": bad, "cp2": CP2_IDLE})
    cp1 = res.chargers["cp1"]
    assert cp1.lost and cp1.reason == "failsafe" and cp1.current_a == held


def test_absent_entries_mean_no_new_reading(example_site, backend):
    al = Allocator(example_site, backend=backend)
    al.step(0, meters={"main": [12, 12, 12]}, chargers={"cp1": CP1_CHARGING, "cp2": CP2_IDLE})
    for t in range(1000, 10001, 1000):
        res = al.step(t)
        assert res.rejected == []
        assert res.circuits["main"].status == "ok" and res.circuits["main"].base_a == [2.0, 2.0, 2.0]
        assert not res.chargers["cp1"].lost
    res = al.step(10001)
    assert res.circuits["main"].status == "meter_stale" and res.chargers["cp1"].lost and res.chargers["cp2"].lost


def test_recovery_needs_fresh_data_for_recovery_hold(example_site, backend):
    al = Allocator(example_site, backend=backend)
    al.step(0, meters={"main": [12, 12, 12]}, chargers={"cp1": CP1_CHARGING, "cp2": CP2_IDLE})
    assert al.step(11000).circuits["main"].status == "meter_stale"
    res = al.step(12000, meters={"main": [12, 12, 12]}, chargers={"cp1": CP1_CHARGING, "cp2": CP2_IDLE})
    assert res.circuits["main"].status == "meter_recovering"
    assert res.circuits["main"].base_a == [25.0, 25.0, 25.0]
    assert res.chargers["cp1"].reason == "recovering"
    for t in range(13000, 22000, 1000):
        res = al.step(t, meters={"main": [12, 12, 12]}, chargers={"cp1": CP1_CHARGING, "cp2": CP2_IDLE})
        assert res.circuits["main"].status == "meter_recovering", t
    res = al.step(22000, meters={"main": [12, 12, 12]}, chargers={"cp1": CP1_CHARGING, "cp2": CP2_IDLE})
    assert res.circuits["main"].status == "ok" and not res.chargers["cp1"].lost


def test_unknown_names_and_backends_are_errors(example_site):
    al = Allocator(example_site)
    with pytest.raises(ValueError, match="garage"):
        al.step(0, meters={"garage": [0, 0, 0]})            # not metered
    with pytest.raises(ValueError, match="cp9"):
        al.step(0, chargers={"cp9": CP2_IDLE})
    with pytest.raises(ValueError, match="backend"):
        Allocator(example_site, backend="rust")
    al.step(5000)
    with pytest.raises(ValueError):
        al.step(4000)                                        # time must not go backwards


def test_allocator_accepts_a_spec_dict(example_spec):
    assert Allocator(example_spec).step(0).chargers.keys() == {"cp1", "cp2"}


amps = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-3000, 3000),
                 st.floats(-100, 100))
charger_reading = st.one_of(
    st.fixed_dictionaries({"state": st.sampled_from(list(model.STATES) + ["bogus"]),
                           "current_a": st.lists(st.one_of(st.floats(0, 40), amps), min_size=3, max_size=3)}),
    st.none(), st.just({"state": "charging"}))


@H.profile(max_examples=60)
@given(steps=st.lists(st.tuples(
    st.integers(0, 4000),
    st.dictionaries(st.just("main"), st.lists(st.one_of(st.floats(-50, 80), amps), min_size=3, max_size=3)),
    st.dictionaries(st.sampled_from(["cp1", "cp2"]), charger_reading)), min_size=1, max_size=25))
def test_both_backends_equal_through_the_public_api(steps):
    """Whatever the readings (including NaN/inf/out-of-range ones), C and reference give equal results,
    and a rejected reading is exactly one that is not finite, out of range or has an unknown state."""
    site = Site.from_dict(H.example_spec())
    a, b = Allocator(site, backend="c"), Allocator(site, backend="reference")
    now = 0
    for dt, meters, chargers in steps:
        now += dt
        ra, rb = a.step(now, meters=meters, chargers=chargers), b.step(now, meters=meters, chargers=chargers)
        assert ra == rb
        for name, why in ra.rejected:
            assert name in meters or name in chargers
        for name, vals in meters.items():
            ok = all(isinstance(x, (int, float)) and math.isfinite(x) and abs(x) <= 2_001
                     and abs(round(x * 1000)) <= 2_000_000 for x in vals)
            assert (name in [n for n, _ in ra.rejected]) == (not ok), (vals, ra.rejected)


# --------------------------------------------------------- the dict face's flat fast path
# Allocator.step fills the core's inputs through flat int views (one slice assignment) and reads
# the outputs back in one tolist(); before that it went field by field through model.MeterInput /
# ChargerInput, step_raw and _result. The per-field path below is that earlier definition, kept as
# the oracle: on any site and any readings (trusted or not) both must give equal Results.
def _per_field_step(al, now_ms, meters, chargers):
    from dlbrig.core.allocator import _to_ma_checked
    site = al.site
    rejected = []
    m_in = [model.MeterInput() for _ in site.circuits]
    for name, values in (meters or {}).items():
        c = site.circuit_names.index(name)
        ma = _to_ma_checked(values, -model.MAX_CURRENT_MA, model.MAX_CURRENT_MA)
        if ma is None:
            rejected.append((name, f"meter reading not trusted: {values!r}"))
            continue
        m_in[c] = model.MeterInput(1, ma)
    k_in = [model.ChargerInput() for _ in site.chargers]
    for name, reading in (chargers or {}).items():
        k = site.charger_names.index(name)
        state = model.STATES.get(reading.get("state")) if isinstance(reading, dict) else None
        ma = _to_ma_checked(reading.get("current_a", [0, 0, 0]), 0, model.MAX_CURRENT_MA) \
            if isinstance(reading, dict) else None
        if state is None or ma is None:
            rejected.append((name, f"charger reading not trusted: {reading!r}"))
            continue
        ci = model.ChargerInput(1, state, ma)
        if "departure_s" in reading or "energy_need_kwh" in reading:
            dep, need = reading.get("departure_s"), reading.get("energy_need_kwh")
            if all(v is None or (isinstance(v, (int, float)) and math.isfinite(v) and 0 <= v < 2e6)
                   for v in (dep, need)):
                ci.session_update = 1
                ci.departure_in_ms = int(round(dep * 1000)) if dep is not None else -1
                ci.energy_need_wh = int(round(need * 1000)) if need is not None else -1
            else:
                rejected.append((name, f"session data not trusted: {dep!r}, {need!r}"))
        k_in[k] = ci
    outs, couts = al.step_raw(now_ms, m_in, k_in)
    return al._result(now_ms, outs, couts, rejected)


_odd_amp = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-3000, 3000),
                     st.booleans(), st.just("7"), st.floats(1999, 2001.5), st.floats(-2001.5, -1999))
_amp = st.one_of(st.floats(0, 40), st.floats(0, 40), st.floats(-5, 80), _odd_amp)
_three = st.one_of(st.lists(_amp, min_size=3, max_size=3), st.tuples(_amp, _amp, _amp),
                   st.lists(_amp, min_size=0, max_size=4), st.none())
_session_v = st.one_of(st.none(), st.floats(0, 1e5), st.integers(-5, 10**7), st.floats(allow_nan=True))
_reading = st.one_of(
    st.fixed_dictionaries({"state": st.sampled_from(list(model.STATES) + ["bogus"]), "current_a": _three},
                          optional={"departure_s": _session_v, "energy_need_kwh": _session_v}),
    st.fixed_dictionaries({"state": st.sampled_from(list(model.STATES))}),
    st.none(), st.just([1, 2, 3]))


@H.profile(max_examples=40, deadline=None)
@given(data=st.data(), site=H.sites_st(max_chargers=40, max_circuits=6))
@pytest.mark.parametrize("backend", ["c", "reference"])
def test_dict_face_equals_the_per_field_path(backend, data, site):
    fast, slow = Allocator(site, backend=backend), Allocator(site, backend=backend)
    metered = [n for n, c in zip(site.circuit_names, site.circuits) if c.has_meter]
    now = 0
    for _ in range(data.draw(st.integers(1, 12))):
        now += data.draw(st.integers(0, 5000))
        meters = data.draw(st.dictionaries(st.sampled_from(metered), _three) if metered else st.just({}))
        chargers = data.draw(st.dictionaries(st.sampled_from(site.charger_names), _reading)
                             if site.charger_names else st.just({}))
        ra, rb = fast.step(now, meters=meters, chargers=chargers), _per_field_step(slow, now, meters, chargers)
        assert ra == rb
        for name, r in ra.chargers.items():   # same types too (== would take 6 for 6.0, True for 1)
            assert type(r.current_a) is float and type(r.flags) is int and type(r.setpoint_ma) is int
            assert r.flags >= 0


@H.profile(max_examples=300)
@given(values=_three, lo_hi=st.sampled_from([(0, model.MAX_CURRENT_MA),
                                             (-model.MAX_CURRENT_MA, model.MAX_CURRENT_MA)]))
def test_to_ma_fast_path_equals_checked(values, lo_hi):
    from dlbrig.core.allocator import _to_ma, _to_ma_checked
    a, b = _to_ma(values, *lo_hi), _to_ma_checked(values, *lo_hi)
    assert a == b and (a is None or all(type(v) is int for v in a))
