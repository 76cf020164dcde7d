"""ChargePoint.write_point under the owner's promise skips the settle after a write that assigned
nothing counted (a repeated set-point, timeout, enable...). Random write sequences, repeated values
included, must leave the models exactly as the plain path (settling after every write) does."""
import random

import pytest

from dlbrig.firmware_sim import EV, ChargePoint, EvseConfig


def _state(cp):
    e, ev = cp.evse, cp.ev
    return (cp.now_ms, e.now_ms, e.state_signature(), repr(e._setpoint_a), repr(e._safe_a), e._wd_timeout_ms,
            e._pending_validity_ms, e._validity_deadline_ms, e._wd_last_feed_ms, e.in_failsafe, e.enabled,
            repr(e.session_energy_wh), [(x.t_ms, x.kind, x.data) for x in e.events], e.status,
            None if ev is None else (ev.state_signature(), repr(ev._soc_snapshot)))


WRITES = [("setpoint_a", [6.0, 10.0, 16.0, 0.0, -0.0, 10, 6]), ("watchdog_timeout_s", [0, 5, 5.0, 60]),
          ("setpoint_validity_s", [0.0001, 3, 30]), ("safe_current_a", [6.0, 0.0, -0.0, 8]),
          ("enabled", [True, False, 1, 0]), ("heartbeat", [1]), ("phases_setting", [3, 1]), ("unlock", [False])]


@pytest.mark.parametrize("seed", range(12))
def test_skipped_write_settles_equal_the_plain_path(seed):
    rng = random.Random(seed)
    cps, delay = [], rng.choice([0, 1000, 2000])
    for _ in range(2):
        cp = ChargePoint(EvseConfig(hw_max_current_a=16.0, hw_phases=3, supports_phase_switching=True,
                                    watchdog_timeout_ms=30_000))
        cp.plug(EV.preset("sedan_3p", seed=seed, battery_kwh=30.0, reaction_delay_ms=delay), 0)
        cps.append(cp)
    fast, plain = cps
    t = 0
    for step in range(600):
        t += rng.choice([0, 250, 1000, 1000, 3000])
        fast.advance(t, unchanged=True)
        plain.advance(t)
        fast.settled_promise = True
        for _ in range(rng.choice([0, 1, 2, 4])):
            name, values = rng.choice(WRITES)
            if rng.random() < 0.5 and name == "setpoint_a":
                value = fast.evse._setpoint_a if fast.evse._setpoint_a is not None else 6.0   # repeated
            else:
                value = rng.choice(values)
            wt = t + rng.choice([0, 0, 0, 1])
            fast.write_point(name, value, wt)
            plain.write_point(name, value, wt)
            assert _state(fast) == _state(plain), (step, name, value)
            t = wt
        fast.settled_promise = False
