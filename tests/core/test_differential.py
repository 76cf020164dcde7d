"""C core == executable specification (core/reference.py), output field by output field, at every step.

Worlds are generated as in test_invariants (trees, mixed phases, caps, unbalance, all policies, stale
meters, lost chargers, garbage readings, EVs following with a delay); both backends get the same input
lists through ``step_raw``. A disagreement is reported with the step, the field and the inputs.
"""
from __future__ import annotations

import random

from hypothesis import given, strategies as st

import core_helpers as H
from dlbrig.core import Allocator
from dlbrig.core.model import ChargerInput, MeterInput

FIELDS_K = ("setpoint_ma", "phases", "reason", "limit_circuit", "limit_lane", "flags")
FIELDS_C = ("allocated_ma", "headroom_ma", "base_ma", "power_headroom_ma", "status")


def _diff(step, oa, ob):
    out = []
    for k, (x, y) in enumerate(zip(oa[0], ob[0])):
        for f in FIELDS_K:
            if getattr(x, f) != getattr(y, f):
                out.append(f"step {step} charger k{k}.{f}: C {getattr(x, f)} != reference {getattr(y, f)}")
    for c, (x, y) in enumerate(zip(oa[1], ob[1])):
        for f in FIELDS_C:
            if getattr(x, f) != getattr(y, f):
                out.append(f"step {step} circuit c{c}.{f}: C {getattr(x, f)} != reference {getattr(y, f)}")
    return out


def run_both(site, seed, steps, dt_choices=(1000,), world_kw=None):
    rnd = random.Random(seed)
    world = H.World(site, rnd, **(world_kw or {}))
    a, b = Allocator(site, backend="c"), Allocator(site, backend="reference")
    for step in range(steps):
        meters, chargers = world.inputs()
        m2, c2 = H.copy_inputs(meters, chargers)
        oa = a.step_raw(world.now, meters, chargers)
        ob = b.step_raw(world.now, m2, c2)
        bad = _diff(step, oa, ob)
        assert not bad, "\n".join(bad[:10]) + f"\ninputs: meters={m2}\nchargers={c2}"
        for k in range(len(site.chargers)):
            assert a.session_energy_wh(f"k{k}") == b.session_energy_wh(f"k{k}")
        world.advance(ob[0], rnd.choice(dt_choices))
    return steps


@H.profile(max_examples=200)
@given(site=H.sites_st(), seed=st.integers(0, 2**32 - 1), steps=st.integers(1, 50),
       dt=st.sampled_from([(1000,), (1000,), (250, 1000, 5000), (0, 1000), (60_000, 1000)]))
def test_c_equals_reference_on_generated_worlds(site, seed, steps, dt):
    """Every output field of every charger and circuit, and the session energy, agree at every step."""
    run_both(site, seed, steps, dt)


@H.profile(max_examples=30)
@given(site=H.sites_st(max_chargers=30), seed=st.integers(0, 2**32 - 1), steps=st.integers(50, 200))
def test_c_equals_reference_on_long_runs(site, seed, steps):
    """Long runs with sessions coming and going: rotation, min on/off, start caps, reclaim and probing,
    phase switching and the lowered-set-point staircase all get time to happen."""
    run_both(site, seed, steps, (1000, 1000, 2000), world_kw={"p_leave": 0.03, "p_arrive": 0.1})


@H.profile(max_examples=40)
@given(site=H.sites_st(max_chargers=12), data=st.data())
def test_c_equals_reference_on_adversarial_inputs(site, data):
    """Inputs straight from hypothesis (no physics): any state code, any currents (including ones the
    core must reject), session updates with any departure / energy values, any time steps."""
    nc, nk = len(site.circuits), len(site.chargers)
    a, b = Allocator(site, backend="c"), Allocator(site, backend="reference")
    cur = st.one_of(st.integers(0, 40_000), st.integers(-2_100_000, 2_100_000))
    now = 0
    for step in range(data.draw(st.integers(1, 25))):
        now += data.draw(st.sampled_from([0, 1, 999, 1000, 10_000, 3_600_000]))
        meters = [MeterInput(data.draw(st.integers(0, 1)), data.draw(st.lists(cur, min_size=3, max_size=3)))
                  for _ in range(nc)]
        chargers = [ChargerInput(data.draw(st.integers(0, 1)), data.draw(st.integers(-1, 7)),
                                 data.draw(st.lists(cur, min_size=3, max_size=3)), data.draw(st.integers(0, 1)),
                                 data.draw(st.integers(-5, 86_400_000)), data.draw(st.integers(-5, 200_000)))
                    for _ in range(nk)]
        m2, c2 = H.copy_inputs(meters, chargers)
        bad = _diff(step, a.step_raw(now, meters, chargers), b.step_raw(now, m2, c2))
        assert not bad, "\n".join(bad[:10])


@H.profile(max_examples=40)
@given(seed=st.integers(0, 2**32 - 1), steps=st.integers(1, 30))
def test_c_equals_reference_through_step(seed, steps):
    """The same through the public ``.step()`` (amps, names, Result objects) on the README site."""
    from dlbrig.core import Site
    site = Site.from_dict(H.example_spec())
    a, b = Allocator(site, backend="c"), Allocator(site, backend="reference")
    rnd = random.Random(seed)
    states = ["charging", "connected_idle", "ev_suspended", "disconnected", "fault", "unavailable"]
    for step in range(steps):
        now = step * 1000
        meters = {} if rnd.random() < 0.1 else {"main": [rnd.uniform(-10, 70) for _ in range(3)]}
        chargers = {n: {"state": rnd.choice(states), "current_a": [rnd.uniform(0, 33) for _ in range(3)]}
                    for n in ("cp1", "cp2") if rnd.random() < 0.9}
        assert a.step(now, meters, chargers) == b.step(now, meters, chargers), step
