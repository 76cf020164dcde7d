"""Meter with quantise_memo (the plant's fast mode) displays exactly what the plain meter does:
the kept quantised voltages are reused only for the same true voltages and resolution; a supply
change (a phase lost, another voltage), a -0.0, a resolution change and voltage noise all show."""
from dlbrig.firmware_sim.meter import Meter


def _pair(**kw):
    plain, fast = Meter(**kw), Meter(**kw)
    fast.quantise_memo = True
    return plain, fast


def test_memo_equals_plain_meter():
    plain, fast = _pair(update_interval_ms=1000, nominal_voltage_v=230.0)
    volts = {20: [230.0, 0.0, 230.0], 25: [231.04, 229.96, -0.0], 30: None, 40: [0.0, 0.0, 0.0],
             41: [-0.0, -0.0, -0.0], 50: [230.0, 230.0, 230.0]}
    v = None
    for s in range(1, 80):
        v = volts.get(s, v)
        cur = [100.0 + 0.37 * s, -3.0 + 0.11 * s, 0.0 if s % 3 else -0.0]
        if s == 60:
            for m in (plain, fast):
                m.resolution_v = 0.01
        if s == 70:
            for m in (plain, fast):
                m.voltage_noise_v = 0.5
        for m in (plain, fast):
            m.advance(s * 1000, cur, v)
        assert repr(list(fast.points().items())) == repr(list(plain.points().items())), s
    assert fast._v_memo is not None and plain._v_memo is None
