"""``ChargerDriver.decode_shared``'s partial decode: when only fields the reading does not depend on
changed (the status decoder did not read them; not a current, the applied current, the set-point
or the phases), those fields are decoded into a copy of ``raw`` and the state is kept. Compared
with a driver without memo on every response; the status decoders below read the changing field,
or the whole mapping, so the shortcut must step aside (each case fails if the keys the decoder read
were not honoured: checked by hand by treating every changed field as passive).
"""
from __future__ import annotations

import copy
import dataclasses

import pytest

from dlbrig.firmware_sim.profiles import get_profile
from dlbrig.firmware_sim.profiles.alfen import alfen_status
from dlbrig.firmware_sim.profiles.driver import ChargerDriver, DecodeError

ALFEN = get_profile("alfen_ng9xx")
# 320..325 I L1..L3; 1200..1215: availability, mode 3 state "C2", applied 16 A, validity 55 s
# (1208-1209), set-point 16 A, safe 6 A, accounted, phases 3
BASE = [[16567, 39951, 16567, 39951, 16567, 39951],
        [1, 17202, 0, 0, 0, 0, 16768, 0, 0, 55, 16768, 0, 16576, 0, 1, 3]]


def _with_status(fn):
    return dataclasses.replace(ALFEN, driver=dataclasses.replace(ALFEN.driver, status=fn))


def _fields(r):
    return (r.state, r.currents_a, r.applied_a, r.setpoint_a, r.phases, r.raw)


def _responses():
    out = []
    for k in range(12):
        r = copy.deepcopy(BASE)
        r[1][9] = 55 - k                        # the validity countdown moves every second
        if k in (4, 5):
            r[1][1] = 0x4232                    # "B2": connected, idle
        if k == 8:
            r[1][0] = 0                         # inoperative
        out.append(r)
    return out


def _countdown_status(raw):
    return "ev_suspended" if raw["setpoint_valid_s"] < 50 else alfen_status(raw)


def _iterating_status(raw):
    return "ev_suspended" if sum(1 for k in raw if raw[k] == 50) else alfen_status(raw)


@pytest.mark.parametrize("status", [alfen_status, _countdown_status, _iterating_status])
def test_partial_decode_matches_a_full_decode(status):
    p = _with_status(status)
    shared, plain = ChargerDriver(p, memo=True), ChargerDriver(p)
    states = []
    for r in _responses():
        got = shared.decode_shared(copy.deepcopy(r))
        want = plain.decode(copy.deepcopy(r))
        assert _fields(got) == _fields(want)
        states.append(got.state)
    assert len(set(states)) >= 2, states


def test_the_countdown_alone_keeps_the_state_without_decoding_it_again(monkeypatch):
    drv = ChargerDriver(ALFEN, memo=True)
    drv.decode_shared(copy.deepcopy(BASE))
    assert drv._status_keys is not None and "setpoint_valid_s" not in drv._status_keys
    calls = []
    monkeypatch.setattr(drv, "_decode", lambda resp: calls.append(resp))
    r = copy.deepcopy(BASE)
    r[1][9] = 54
    got = drv.decode_shared(r)
    assert not calls and got.raw["setpoint_valid_s"] == 54 and got.state == "charging"


def test_a_decoder_that_sees_the_whole_mapping_disables_the_shortcut():
    drv = ChargerDriver(_with_status(_iterating_status), memo=True)
    drv.decode_shared(copy.deepcopy(BASE))
    assert drv._status_keys is None


def _meter_answers():
    """EM24 answers (V, I, P L1..L3, INT32 low word first) over a run where the currents and
    powers move, the voltages mostly hold, one phase reverses, and one answer is garbage."""
    from dlbrig.firmware_sim.meter import Meter
    from dlbrig.firmware_sim.profiles import DeviceImage
    p = get_profile("em24")
    m = Meter(update_interval_ms=1000)
    img = DeviceImage(p, {1: m})
    out = []
    for k in range(40):
        cur = [20.0 + (k % 5), -3.0 if k in (7, 8) else 10.0, 5.0 + k]
        m.advance(1000 * (k + 1), cur, [230.0, 230.0 + (k == 20), 229.0])
        out.append([img.read(1, "input", 0, 24, 1000 * (k + 1))])
    out[30] = [[0xFFFF] * 24]           # implausible: a DecodeError, then normal answers again
    return out


def _meter_result(drv, r):
    from dlbrig.firmware_sim.profiles.driver import DecodeError
    try:
        return ("ok", drv.decode(copy.deepcopy(r)))
    except DecodeError as exc:
        return ("err", str(exc))


def test_meter_partial_decode_matches_a_full_decode():
    from dlbrig.firmware_sim.profiles.driver import MeterDriver
    p = get_profile("em24")
    memo, plain = MeterDriver(p, memo=True), MeterDriver(p)
    seen = set()
    for r in _meter_answers():
        got, want = _meter_result(memo, r), _meter_result(plain, r)
        assert got == want
        seen.add(repr(got))
    assert len(seen) >= 20


def test_the_countdown_alone_keeps_the_reading_object():
    """Only ``raw`` moves, in place: the controller sees the same reading object (and so knows
    nothing it uses changed); a change the state depends on gives a new one."""
    drv = ChargerDriver(ALFEN, memo=True)
    first = drv.decode_shared(copy.deepcopy(BASE))
    for k, left in enumerate((54, 53, 52)):
        r = copy.deepcopy(BASE)
        r[1][9] = left
        assert drv.decode_shared(r) is first and first.raw["setpoint_valid_s"] == left, k
    r = copy.deepcopy(BASE)
    r[1][1] = 0x4232                            # "B2": connected, idle
    got = drv.decode_shared(r)
    assert got is not first and got.state != first.state == "charging"


def test_a_field_that_fails_leaves_the_remembered_reading_as_it_was(monkeypatch):
    drv = ChargerDriver(ALFEN, memo=True)
    first = drv.decode_shared(copy.deepcopy(BASE))
    before = dict(first.raw)
    real = drv._field_value

    def fails_on_the_safe_current(key, reg, words):
        if key == "safe_current_a":
            raise DecodeError("broken on purpose")
        return real(key, reg, words)

    monkeypatch.setattr(drv, "_field_value", fails_on_the_safe_current)
    r = copy.deepcopy(BASE)
    r[1][9] = 40                                # the countdown (decodes first) ...
    r[1][13] = 7                                # ... and the safe current after it (fails)
    with pytest.raises(DecodeError):
        drv.decode_shared(r)
    assert first.raw == before
