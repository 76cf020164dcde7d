"""Phase unbalance limit (csrc/dlb.h: unbalance_limit_ma, "max difference between phases of EV load").

A charger cut in the transition stage keeps what it still waits for reserved (the top-up must not hand it
to someone else). That reservation is no EV load: it may restrict a rise on its own phase, but it must
never raise the least-loaded phase that another 1-phase charger's unbalance room is measured from.
Random exploration (DLBRIG_HYPOTHESIS=core-dev) found both backends raising a 1-phase charger to 13 A on
L2 while the EV load was [6, 13, 7] A under a 6 A limit: L1's "load" included 6 A reserved for a charger
that was itself held back by the unbalance limit.
"""
from __future__ import annotations

import pytest

import core_helpers as H
from dlbrig.core import Allocator, model
from dlbrig.core.model import Charger, ChargerInput, Circuit, MeterInput

CHARGING, IDLE = model.STATE_CHARGING, model.STATE_CONNECTED_IDLE


def _one_phase(phase, max_ma):
    return Charger(circuit=0, phases=1, phase_map=[phase, 0, 0], min_ma=6000, max_ma=max_ma, step_ma=1000,
                   priority=0, weight=1, failsafe_ma=0, can_switch_phases=0)


def _inp(state, current):
    return ChargerInput(fresh=1, state=state, current_ma=current, session_update=0, departure_in_ms=-1,
                        energy_need_wh=-1)


@pytest.mark.parametrize("backend", ["c", "reference"])
def test_a_reservation_does_not_lift_the_least_loaded_phase(backend):
    """One unmetered 63 A circuit with a 6 A unbalance limit, 1-phase chargers: k0 draws 6 A on L1; k1
    (L1) waits, held by the unbalance limit (L1 is 6 A above L2/L3), with its 6 A reserved on L1; k2 (L2,
    max 13 A) and k3 (L3, max 7 A) start. k3 gets 7 A. k2 may have at most L1 + 6 A = 12 A: counting
    k1's reservation as EV load on L1 (12 A) let it reach 13 A with EV load [6, 13, 7] A."""
    site = H.make_site(model.Params(), [Circuit(parent=-1, limit_ma=[63000] * 3, margin_ma=0, power_limit_w=0,
                                                fallback_base_ma=[0, 0, 0], unbalance_limit_ma=6000,
                                                has_meter=0)],
                       [_one_phase(0, 6000), _one_phase(0, 6000), _one_phase(1, 13000), _one_phase(2, 7000)])
    alloc, oracle = Allocator(site, backend=backend), H.Oracle(site)
    meters = [MeterInput(0, [0, 0, 0])]
    chargers = [_inp(CHARGING, [6000, 0, 0]), _inp(IDLE, [0, 0, 0]), _inp(IDLE, [0, 0, 0]), _inp(IDLE, [0, 0, 0])]
    outs, couts = alloc.step_raw(0, meters, chargers)
    assert oracle.check(0, meters, chargers, outs, couts) == []
    sp = [o.setpoint_ma for o in outs]
    assert sp[0] == 6000 and sp[1] == 0 and sp[3] == 7000
    assert outs[1].reason == model.REASON_UNBALANCE
    assert 6000 <= sp[2] <= 12000                       # EV load [6, sp2, 7] A within 6 A of L1
