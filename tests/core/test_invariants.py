"""Property tests of the allocator contract (DESIGN.md "The allocator contract", csrc/dlb.h "Invariants").

Every test states its invariant, generates the world (random circuit trees up to depth 5, up to 200
chargers, 1p/3p with rotated phase maps, power caps, unbalance limits, every policy, weights,
priorities; readings from a small physical world with base-load steps, stale meters, lost chargers,
garbage readings, EVs that follow after a delay, 1p EVs on 3p chargers, 95 % under-draw) and lets
hypothesis shrink any counterexample. The oracle (core_helpers.Oracle) re-derives everything from the
inputs and outputs; it never calls into the reference's internals.
"""
from __future__ import annotations

import copy
import random
from fractions import Fraction

import pytest
from hypothesis import given, strategies as st

import core_helpers as H
from dlbrig.core import Allocator, Site, model
from dlbrig.core.model import (CHARGER_ADMITTED, ChargerInput, MeterInput, STATE_CHARGING,
                               STATE_CONNECTED_IDLE, STATE_DISCONNECTED)

backends = st.sampled_from(["c", "c", "reference"])


# ------------------------------------------------------------------------------------- safety
@H.profile(max_examples=100)
@given(site=H.sites_st(), seed=st.integers(0, 2**32 - 1), steps=st.integers(1, 3), backend=backends)
def test_single_steps_keep_the_contract(site, seed, steps, backend):
    """Capacity (transition-safe, per circuit and phase and power lane), the overload rules, minimum
    current and step grid, the failsafe ladder, base/allocation/headroom/status outputs: on the first
    few steps of any world, where every device is still 'never seen' or just trusted."""
    H.run_world(site, seed, steps, backend)


@H.profile(max_examples=150)
@given(site=H.sites_st(), seed=st.integers(0, 2**32 - 1), steps=st.integers(5, 45), backend=backends,
       dt=st.sampled_from([(1000,), (1000,), (500, 1000, 3000), (0, 1000)]))
def test_multi_step_runs_keep_the_contract(site, seed, steps, backend, dt):
    """The same contract at EVERY step of a run where EVs follow their set-points after a delay, base
    loads drift and step, meters go stale and recover, chargers go silent (lost: counted at
    max(held set-point, failsafe) on their installed phases) and come back after recovery_hold."""
    H.run_world(site, seed, steps, backend, dt_choices=dt)


@H.profile(max_examples=25)
@given(site=H.sites_st(max_chargers=40), seed=st.integers(0, 2**32 - 1), steps=st.integers(5, 30))
def test_determinism_two_runs_are_identical(site, seed, steps):
    """Same configuration, inputs and history give bit-identical outputs (C core, two instances)."""
    a = H.run_world(site, seed, steps, "c", check=False)
    b = H.run_world(site, seed, steps, "c", check=False)
    assert a == b


# ------------------------------------------------------------------------------------ reasons
@H.profile(max_examples=150)
@given(site=H.sites_st(max_chargers=60), seed=st.integers(0, 2**32 - 1), steps=st.integers(1, 30))
def test_reasons_are_truthful(site, seed, steps):
    """'charger max' means sp == max; a charger reported as limited by 'circuit X Lp' with 0 < sp < max
    names a lane on its path that cannot take its next grid step (its reported headroom is below one
    step, counted as dlb.h counts it: max(set-point, counted draw)); 'overload' names an overloaded
    lane. (A charger still counted above its set-point, i.e. a reduction in flight, is exempt from the
    'no room' part: the capacity it will free is reserved for the chargers it is reduced for.)"""
    H.run_world(site, seed, steps, "c", reasons=True)


@H.profile(max_examples=150)
@given(site=H.sites_st(max_chargers=60, work_conserving=True), seed=st.integers(0, 2**32 - 1),
       steps=st.integers(1, 30))
def test_work_conservation(site, seed, steps):
    """With ramp off and reclaim effectively off: every admitted charger below its max names a binding
    lane (circuit, transition, unbalance or overload) on its path that has no room for its next step."""
    H.run_world(site, seed, steps, "c", work_conserving=True)


def test_top_up_leaves_headroom_on_the_lane_it_names():
    """Regression: minimal reproducer found by the reasons oracle against commit b0012cf (both backends
    gave a = 28 A with 4 A left on main L1); the lead's reservation change makes it pass.

    A charger that comes back within follow_time_ms is counted at its held set-point (20 A). Its fair
    share (16 A) is below that; the top-up then measures its room from the fair share (12 A of real
    headroom -> 28 A) but pays only for the part above the held 20 A (8 A). 4 A of headroom stay on the
    lane it names as its limit while it sits 4 A below its max: not work-conserving, and the reason
    'circuit main L1' is not true (the lane can take four more steps)."""
    spec = {"min_off_s": 0, "min_on_s": 0,
            "circuits": [{"name": "main", "limit_a": 32, "meter": True}],
            "chargers": [{"name": "a", "circuit": "main", "phases": 1, "min_a": 6, "max_a": 32},
                         {"name": "b", "circuit": "main", "phases": 1, "min_a": 16, "max_a": 32}]}
    for backend in ("c", "reference"):
        al = Allocator(Site.from_dict(spec), backend=backend)
        al.step(0, meters={"main": [12, 0, 0]}, chargers={"a": {"state": "charging"}, "b": {"state": "disconnected"}})
        al.step(1000, meters={"main": [12, 0, 0]}, chargers={"a": {"state": "disconnected"},
                                                             "b": {"state": "disconnected"}})
        r = al.step(2000, meters={"main": [0, 0, 0]}, chargers={"a": {"state": "connected_idle"},
                                                                "b": {"state": "connected_idle"}})
        a, main = r.chargers["a"], r.circuits["main"]
        assert r.chargers["b"].current_a == 0 and r.chargers["b"].reason == "transition main L1"
        if a.reason == "circuit main L1":
            assert main.headroom_a[0] < 1.0, (backend, a, main)


def _switching_site(phase_switch_hold_ms):
    """One 3-phase charger (6-16 A, may switch 1p/3p, follow_time 10 s, reclaim off) on a metered 40 A
    circuit: the site of the switch-up regressions below."""
    p = model.Params(min_on_ms=0, min_off_ms=0, max_starts_per_hour=0, follow_time_ms=10000,
                     phase_switch_hold_ms=phase_switch_hold_ms, reclaim_hold_ms=model.MAX_DURATION_MS,
                     probe_interval_ms=model.MAX_DURATION_MS)
    c = model.Circuit(limit_ma=[40000] * 3, has_meter=1)
    k = model.Charger(circuit=0, phases=3, phase_map=[0, 1, 2], min_ma=6000, max_ma=16000, step_ma=1000,
                      can_switch_phases=1)
    return H.make_site(p, [c], [k])


def test_switch_up_counts_all_three_conductors_until_settled():
    """Regression: core-dev found runs where both backends failed the oracle identically at the first
    step after a 1p -> 3p switch-up ("narrowed flag False but counted conductors [0]").

    dlb.h "Counted phases": a charger is counted on its measured conductors only once follow_time_ms
    has passed since a phase switch. The switch-up is decided at the end of a step and shows first in
    the next step's outputs (phases 3, no CHARGER_SWITCHED); the core counts from the deciding step's
    time. The EV's draw is still the 1-phase one ([16, 0, 0]), so the core rightly counts the charger
    on L1, L2 and L3 (allocation [16, 16, 16]) until then. The oracle learned of the switch-up only
    after checking that step and expected it narrowed to L1: zero on the two conductors the EV was
    just given. Here: admitted at 1 phase at t=0 (L2 full), room from t=3 s, switch-up decided at
    t=11 s (hold 8 s), 3-phase outputs from 12 s, counted on all three until 21 s."""
    site = _switching_site(phase_switch_hold_ms=8000)
    for backend in ("c", "reference"):
        al, oracle, sp = Allocator(site, backend=backend), H.Oracle(site), 0
        for t in range(0, 23000, 1000):
            draw = [sp, 0, 0]                                   # a 1-phase EV, following at once
            meters = [MeterInput(1, [sp, 38000 if t < 3000 else 0, 0])]
            chargers = [ChargerInput(1, STATE_CHARGING, list(draw))]
            outs, couts = al.step_raw(t, meters, chargers)
            o, alloc = outs[0], couts[0].allocated_ma
            assert o.setpoint_ma == 16000, (backend, t, o)
            assert o.phases == (1 if t < 12000 else 3), (backend, t, o)
            narrowed = bool(o.flags & H.CHARGER_NARROWED)
            if 12000 <= t < 21000:      # switched up at 11 s: all three conductors until 21 s
                assert not narrowed and alloc == [16000] * 3, (backend, t, o, alloc)
            elif t >= 21000:
                assert narrowed and alloc == [16000, 0, 0], (backend, t, o, alloc)
            if t == 12000:
                # the oracle still catches a core that would narrow right after the switch-up
                liar = copy.deepcopy(oracle)
                bad_outs, bad_couts = copy.deepcopy(outs), copy.deepcopy(couts)
                bad_outs[0].flags |= H.CHARGER_NARROWED
                bad_couts[0].allocated_ma = [16000, 0, 0]
                bad_couts[0].headroom_ma = [24000, 40000, 40000]
                bad = liar.check(t, meters, chargers, bad_outs, bad_couts)
                assert any("narrowed flag True but counted conductors [0, 1, 2]" in b for b in bad), bad
                assert any("reported allocation [16000, 0, 0] != [16000, 16000, 16000]" in b for b in bad), bad
            bad = oracle.check(t, meters, chargers, outs, couts, reasons=True)
            assert not bad, (backend, bad)
            sp = o.setpoint_ma


def test_switch_up_then_switch_down_counts_the_old_draw_on_three_conductors():
    """Regression (the same oracle fix, found by core-dev right after it): with phase_switch_hold_ms = 0
    a switch-up decided at the end of a step can be undone by a switch-down in the next step's
    admission; the outputs then never show phases 3, only CHARGER_SWITCHED after phases 1. The charger
    began that step at 3 phases, switched up within follow_time_ms, so its old draw is counted on all
    three conductors (dlb.h "Counted phases"; stage 3 keeps the old draw on the old phases): L2 shows
    38 + 16 A against 40 A. The oracle judged the step by the switch before (13 s ago), counted L1 only
    and expected 2 A of headroom on L2 and no overload (both backends failed identically)."""
    site = _switching_site(phase_switch_hold_ms=0)
    for backend in ("c", "reference"):
        al, oracle, sp = Allocator(site, backend=backend), H.Oracle(site), 0
        for t in range(0, 16000, 1000):
            meters = [MeterInput(1, [sp, 0 if t in (11000, 12000) else 38000, 0])]   # L2 free 11-12 s
            chargers = [ChargerInput(1, STATE_CHARGING, [sp, 0, 0])]               # a 1-phase EV
            outs, couts = al.step_raw(t, meters, chargers)
            o, co = outs[0], couts[0]
            assert (o.setpoint_ma, o.phases) == (16000, 1), (backend, t, o)
            assert bool(o.flags & H.CHARGER_SWITCHED) == (t in (0, 13000)), (backend, t, o)
            if t == 13000:              # switched up at the end of 12 s, down again at 13 s
                assert co.headroom_ma == [24000, -14000, 24000] and co.status & H.CIRCUIT_OVERLOADED, \
                    (backend, co)
            bad = oracle.check(t, meters, chargers, outs, couts, reasons=True)
            assert not bad, (backend, bad)
            sp = o.setpoint_ma


# ----------------------------------------------------------------------------------- policies
def _shared_circuit(draw, n, policy, *, weights=False, priorities=False, one_phase=False):
    p = model.Params(policy=model.POLICIES[policy], min_on_ms=0, min_off_ms=0, max_starts_per_hour=0,
                     reclaim_hold_ms=model.MAX_DURATION_MS, probe_interval_ms=model.MAX_DURATION_MS)
    lim = draw(st.integers(6, 400)) * 1000
    c = model.Circuit(limit_ma=[lim] * 3, margin_ma=draw(st.sampled_from([0, 1000])), has_meter=1)
    mx = draw(st.sampled_from([16000, 32000, 10000]))
    chargers = []
    for i in range(n):
        k = model.Charger(circuit=0, min_ma=6000, max_ma=mx if not (weights or priorities)
                          else draw(st.sampled_from([6000, 16000, 32000])), step_ma=1000)
        if one_phase:
            k.phases, k.phase_map = 1, [0, 0, 0]
        else:
            k.phase_map = list(draw(st.sampled_from(H.PERMUTATIONS)))
        if weights:
            k.weight = draw(st.integers(1, 16))
        if priorities:
            k.priority = draw(st.integers(0, 3))
        chargers.append(k)
    return H.make_site(p, [c], chargers), draw(st.integers(0, 20)) * 1000


def _idle_step(site, base_ma, now=0, alloc=None, present=None):
    alloc = alloc or Allocator(site)
    nk = len(site.chargers)
    present = present if present is not None else [True] * nk
    meters = [MeterInput(1, [base_ma] * 3)]
    chargers = [ChargerInput(1, STATE_CONNECTED_IDLE if present[k] else STATE_DISCONNECTED, [0, 0, 0])
                for k in range(nk)]
    return alloc, alloc.step_raw(now, meters, chargers)


def _water_level(caps, weights, mins, capacity):
    """Weighted max-min fair level L: sum of clamp(w*L, min, cap) == capacity (exact rational)."""
    lo, hi = Fraction(0), Fraction(max(caps) + 1)
    if sum(min(max(w * hi, m), c) for w, m, c in zip(weights, mins, caps)) <= capacity:
        return hi
    for _ in range(80):
        mid = (lo + hi) / 2
        if sum(min(max(w * mid, m), c) for w, m, c in zip(weights, mins, caps)) <= capacity:
            lo = mid
        else:
            hi = mid
    return lo


@H.profile(max_examples=80)
@given(data=st.data(), n=st.integers(1, 30), weighted=st.booleans(), one_phase=st.booleans())
def test_fair_shares_are_weighted_max_min_fair(data, n, weighted, one_phase):
    """fair, one shared circuit, EVs just plugged in (nothing drawing), no reclaim: when every minimum
    fits, each charger gets at least its weighted max-min fair share rounded down to its step, and the
    rest is only the rounding the top-up hands out (less than one step per charger in total). With equal
    weights this means the set-points differ by at most one step plus the top-up."""
    site, base = _shared_circuit(data.draw, n, "fair", weights=weighted, one_phase=one_phase)
    _, (outs, couts) = _idle_step(site, base)
    c = site.circuits[0]
    capacity = c.limit_ma[0] - c.margin_ma - base
    ks = site.chargers
    if sum(k.min_ma for k in ks) > capacity:
        return                                           # scarcity: covered by the scenario tests
    level = _water_level([k.max_ma for k in ks], [k.weight for k in ks], [k.min_ma for k in ks], capacity)
    floors = [H.floor_grid(int(min(max(k.weight * level, k.min_ma), k.max_ma)), k.step_ma) for k in ks]
    sps = [o.setpoint_ma for o in outs]
    for k, (sp, fl) in enumerate(zip(sps, floors)):
        assert sp >= fl, f"k{k}: {sp} below its fair share {fl} (level {float(level):.1f}, {sps})"
    assert sum(sps) - sum(floors) < n * 1000 + 1000, (sps, floors)
    if not weighted and all(k.max_ma == ks[0].max_ma for k in ks):
        extra = sorted(sp - min(sps) for sp in sps)
        assert extra[-2 if n > 1 else -1] <= 1000 or sum(extra) < n * 1000, sps


@H.profile(max_examples=60)
@given(data=st.data(), n=st.integers(2, 24), steps=st.integers(1, 25))
def test_priority_classes_are_served_first(data, n, steps):
    """priority: a lower class never charges above its minimum while a higher-class EV on the same
    constraint is below its max (all on one circuit, same step), in any step of a run where EVs follow
    their set-point at once."""
    site, base = _shared_circuit(data.draw, n, "priority", priorities=True)
    _assert_greedy_by(site, base, steps, key=lambda k: -site.chargers[k].priority, strict_classes=True)


@H.profile(max_examples=50)
@given(data=st.data(), n=st.integers(2, 16), policy=st.sampled_from(["fifo", "edf"]))
def test_fifo_and_edf_serve_in_order(data, n, policy):
    """fifo: chargers that arrived earlier are filled first (greedy); edf: earlier departure first,
    sessions without a departure last. An EV served later never gets more than its minimum while one
    served earlier on the same circuit is below its max."""
    site, base = _shared_circuit(data.draw, n, policy)
    nk = len(site.chargers)
    deps = [data.draw(st.one_of(st.just(-1), st.integers(1, 600)).map(lambda m: m * 60_000 if m > 0 else -1))
            for _ in range(nk)]
    alloc = Allocator(site)
    arrival = {}
    sp = [0] * nk
    for step in range(nk + 3):
        now = step * 1000
        meters = [MeterInput(1, [base + sum(s for s in sp)] * 3)]
        chargers = []
        for k in range(nk):
            if policy == "fifo" and k > step:
                chargers.append(ChargerInput(1, STATE_DISCONNECTED, [0, 0, 0]))
                continue
            ci = ChargerInput(1, model.STATE_CHARGING if sp[k] else STATE_CONNECTED_IDLE, [sp[k]] * 3)
            if k not in arrival:
                arrival[k] = now
                ci.session_update, ci.departure_in_ms = 1, deps[k]
            chargers.append(ci)
        outs, couts = alloc.step_raw(now, meters, chargers)
        if policy == "fifo":
            order = sorted(arrival, key=lambda k: (arrival[k], k))
        else:
            order = sorted(arrival, key=lambda k: (deps[k] < 0, arrival[k] + deps[k] if deps[k] >= 0 else 0, k))
        _assert_served_in_order(site, outs, order, sp)
        sp = [o.setpoint_ma for o in outs]


def _assert_served_in_order(site, outs, order, drawn):
    for i, a in enumerate(order):
        oa, ka = outs[a], site.chargers[a]
        if not (oa.flags & CHARGER_ADMITTED) or oa.setpoint_ma >= ka.max_ma:
            continue
        if oa.reason in (model.REASON_TRANSITION,) or oa.setpoint_ma < drawn[a]:
            continue                        # waiting for others to follow: not an order violation
        for b in order[i + 1:]:
            ob, kb = outs[b], site.chargers[b]
            assert ob.setpoint_ma <= max(kb.min_ma, drawn[b]), \
                f"k{b} (served later) at {ob.setpoint_ma} while k{a} (earlier) is at {oa.setpoint_ma} < max"


def _assert_greedy_by(site, base, steps, key, strict_classes):
    alloc = Allocator(site)
    nk = len(site.chargers)
    sp = [0] * nk
    for step in range(steps):
        meters = [MeterInput(1, [base + sum(sp)] * 3)]
        chargers = [ChargerInput(1, model.STATE_CHARGING if sp[k] else STATE_CONNECTED_IDLE, [sp[k]] * 3)
                    for k in range(nk)]
        outs, couts = alloc.step_raw(step * 1000, meters, chargers)
        for a in range(nk):
            oa, ka = outs[a], site.chargers[a]
            if not (oa.flags & CHARGER_ADMITTED) or oa.setpoint_ma >= ka.max_ma or oa.setpoint_ma < sp[a]:
                continue
            for b in range(nk):
                if key(b) > key(a):
                    ob, kb = outs[b], site.chargers[b]
                    assert ob.setpoint_ma <= max(kb.min_ma, sp[b]), \
                        (f"step {step}: k{b} (class {kb.priority}) at {ob.setpoint_ma} while k{a} (class "
                         f"{ka.priority}) at {oa.setpoint_ma} < max {ka.max_ma}")
        sp = [o.setpoint_ma for o in outs]


def test_priority_rounding_remainder_goes_to_the_higher_class():
    """Minimal reproducer (found by test_priority_classes_are_served_first, shrunk by hypothesis).

    19 A, three 6-16 A chargers, two in class 1, one in class 0: all minimums fit with 1 A over. The
    fair fill inside class 1 gives each 6.5 A, rounded down to 6 A; the 1 A remainder then goes to the
    class-0 charger (7 A) although either class-1 charger could take it."""
    spec = {"policy": "priority", "circuits": [{"name": "main", "limit_a": 19}],
            "chargers": [{"name": "hi1", "circuit": "main", "max_a": 16, "priority": 1},
                         {"name": "hi2", "circuit": "main", "max_a": 16, "priority": 1},
                         {"name": "lo", "circuit": "main", "max_a": 16, "priority": 0}]}
    for backend in ("c", "reference"):
        r = Allocator(Site.from_dict(spec), backend=backend).step(
            0, chargers={n: {"state": "connected_idle"} for n in ("hi1", "hi2", "lo")})
        got = {n: c.current_a for n, c in r.chargers.items()}
        assert got["lo"] == 6.0 and sorted([got["hi1"], got["hi2"]]) == [6.0, 7.0], (backend, got)
