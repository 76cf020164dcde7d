"""``Allocator.step_shared`` (the controller's step): the same values as ``step`` step after step,
and a charger's (circuit's) result object is reused only while its output integers are the
ones it was made from. Its invalidation rule is that comparison: a reuse that compares less
(only the set-point, or nothing) gives a stale reason, phase count or flags and fails here
(checked by hand)."""
from __future__ import annotations

import dataclasses
import random

from dlbrig.core import Allocator
from dlbrig.rig.scenario import load_scenario
from dlbrig.core import Site


def _site():
    sc = load_scenario("office", duration="1m")
    return Site.from_dict(sc.site)


def _as_values(res):
    return ({n: dataclasses.astuple(r) for n, r in res.chargers.items()},
            {n: (c.allocated_a, c.headroom_a, c.base_a, c.power_headroom_a, c.status, sorted(c.flags))
             for n, c in res.circuits.items()}, res.rejected, res.now_ms)


def test_step_shared_is_step_and_reuses_only_unchanged_results():
    site = _site()
    plain, shared = Allocator(site), Allocator(site)
    rng = random.Random(7)
    states = ["charging", "charging", "charging", "connected_idle", "ev_suspended", "disconnected"]
    chargers = {n: {"state": "charging", "current_a": [0.0, 0.0, 0.0]} for n in site.charger_names}
    reused = renewed = 0
    last = None
    for k in range(300):
        now = 1000 * (k + 1)
        base = 100.0 + 60.0 * rng.random()
        meters = {"main": [base, base * 0.97, base * 1.02]}
        for n, r in chargers.items():
            if rng.random() < 0.08:
                r["state"] = rng.choice(states)
            if r["state"] == "charging":
                a = min(16.0, max(0.0, rng.gauss(12.0, 4.0)))
                r["current_a"] = [a, a, a if rng.random() < 0.8 else 0.0]
            else:
                r["current_a"] = [0.0, 0.0, 0.0]
        if k % 50 == 49:            # readings missing: the core ages them
            meters = {}
        want = plain.step(now, meters=meters, chargers=chargers)
        got = shared.step_shared(now, meters=meters, chargers=chargers)
        assert _as_values(got) == _as_values(want), k
        if last is not None:
            for n, r in got.chargers.items():
                if r is last.chargers[n]:
                    reused += 1
                else:
                    renewed += 1
        last = got
    assert reused > 1000 and renewed > 100, (reused, renewed)
