"""CIRCUIT_OVERLOADED after a merged hold staircase (regression).

dlb.h: DLB_CIRCUIT_OVERLOADED = base + counted draws exceed a lane before this step's cut, the counted
draw m being max(measured, previous set-point, set-points lowered within follow_time_ms). The core keeps
the lowered set-points on a bounded staircase (DLB_HOLDS = 4 entries): a fifth reduction within
follow_time_ms merges the two oldest into (larger value, later expiry), so for a while it counts MORE than
the exact rule (safe: it only holds chargers back). The oracle used the exact holds for the status bit and
so rejected a correct OVERLOADED flag while the merged value was still counted (found by hypothesis in
test_multi_step_runs_keep_the_contract and test_work_conservation).

Here: one 1-phase charger on a 100 A metered main. The base load rises 4 A per step, so the set-point
falls 32 -> 28 -> 24 -> 20 -> 16 -> 12 A at t = 1..5 s (five reductions within follow_time_ms = 10 s:
holds 32 A until 11 s and 28 A until 12 s merge into 32 A until 12 s). At t = 11 s the base drops to
70 A: exactly, m = 28 A fits the 30 A left; the core still counts 32 A, so the lane is overloaded.
"""
from __future__ import annotations

import copy

import pytest

import core_helpers as H
from dlbrig.core import Allocator, Site, model
from dlbrig.core.model import CIRCUIT_OVERLOADED, ChargerInput, CircuitOutput, MeterInput

SPEC = {"circuits": [{"name": "main", "limit_a": 100, "meter": True, "fallback_base_a": 0}],
        "chargers": [{"name": "ev", "circuit": "main", "phases": 1, "phase_map": ["L1"],
                      "min_a": 6, "max_a": 32}]}
BASES = [68_000, 72_000, 76_000, 80_000, 84_000, 88_000] + [88_000] * 5 + [70_000, 70_000]


@pytest.mark.parametrize("backend", ["c", "reference"])
def test_overloaded_status_with_a_merged_hold_staircase(backend):
    site = Site.from_dict(SPEC)
    assert site.params.follow_time_ms == 10_000
    alloc, oracle = Allocator(site, backend=backend), H.Oracle(site)
    draw, sps, status = 0, [], []
    for i, base in enumerate(BASES):
        now = i * 1000
        meters = [MeterInput(1, [base + draw, 0, 0])]      # the EV follows its set-point at once
        state = model.STATE_CHARGING if draw else model.STATE_CONNECTED_IDLE
        chargers = [ChargerInput(1, state, [draw, 0, 0])]
        outs, couts = alloc.step_raw(now, meters, chargers)
        if now == 11_000:
            # the scenario really exercises the merge: exact holds say 28 A, the staircase 32 A
            assert oracle.tracker.held(0, now) == 28_000
            assert oracle.tracker.stair_held(0, now) == 32_000
        if now in (0, 5_000, 12_000):
            # the oracle still rejects a wrong bit where exact and staircase counting agree: flip it
            # (set while nothing is over at 0 s and 12 s, cleared while the lane is over at 5 s)
            co = couts[0]
            flipped = [CircuitOutput(list(co.allocated_ma), list(co.headroom_ma), list(co.base_ma),
                                     co.power_headroom_ma, co.status ^ CIRCUIT_OVERLOADED)]
            probe = copy.deepcopy(oracle)
            assert any("overloaded status" in b for b in probe.check(now, meters, chargers, outs, flipped))
        bad = oracle.check(now, meters, chargers, outs, couts)
        assert bad == [], "\n".join(bad)
        sps.append(outs[0].setpoint_ma)
        status.append(bool(couts[0].status & CIRCUIT_OVERLOADED))
        draw = outs[0].setpoint_ma
    assert sps == [32_000, 28_000, 24_000, 20_000, 16_000] + [12_000] * 7 + [30_000]
    assert status == [False] + [True] * 11 + [False]
