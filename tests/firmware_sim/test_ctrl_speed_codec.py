"""The fast paths of the register codecs the fast mode runs every second agree with the generic
ones: the compiled integer encoder's shortcut for in-range ints and finite floats, and a driver's
per-field decoder (not-available pattern, compiled decoder, DecodeError) against _decode_reg."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from dlbrig.firmware_sim.profiles import PROFILES
from dlbrig.firmware_sim.profiles.codec import encode, encoder
from dlbrig.firmware_sim.profiles.driver import DecodeError, _decode_reg, _field_decoder


def _outcome(fn, x):
    try:
        r = fn(x)
    except Exception as exc:    # noqa: BLE001 - the type and text are what must agree
        return ("exc", type(exc).__name__, str(exc))
    return ("ok", type(r).__name__, repr(r))


_INT_CASES = [(d, wo, sc) for d in ("u16", "i16", "u32", "i32") for wo in ("be", "lsw")
              for sc in (1, 1.0, 0.1, 0.001, 0.5, 2.0, 0.3)]


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(_INT_CASES), st.one_of(st.integers(-2**33, 2**33),
                                             st.floats(allow_nan=True, allow_infinity=True),
                                             st.floats(-1e6, 1e6)), st.booleans())
def test_int_encoder_shortcut_is_encode(case, value, saturate):
    dtype, wo, scale = case
    assert _outcome(encoder(dtype, wo, scale, None, saturate), value) == \
        _outcome(lambda v: encode(v, dtype, wo, scale, None, saturate), value)


_REGS = [(p, r) for p in PROFILES.values() for r in p.registers if r.readable]
_WORDS = [(0,), (0xFFFF,), (0x8000,), (0, 0), (0xFFFF, 0xFFFF), (0xFFFF, 0xFFFE), (0x4170, 0),
          (0x7FC0, 0), (0xFFFF,) * 4, (1, 2, 3, 4), (0x10000, 0), (-1, 0), (0x4142, 0x4300, 0, 0, 0),
          (0xFFFF,) * 5, (True,), (1.5, 2)]


@pytest.mark.parametrize("k", range(0, len(_REGS), 7))
def test_field_decoder_is_decode_reg(k):
    for p, reg in _REGS[k:k + 7]:
        f = _field_decoder(p, reg, {})
        for w in _WORDS + [tuple(range(reg.count)), (0xFFFF,) * reg.count]:
            for words in (w, list(w)):
                got, want = _outcome(f, words), _outcome(lambda x: _decode_reg(p, reg, x), words)
                assert got == want, (p.name, reg.name, words)


def test_field_decoder_raises_decode_error():
    p = PROFILES["alfen_ng9xx"]
    reg = next(r for r in p.registers if r.dtype == "f32" and r.readable)
    with pytest.raises(DecodeError):
        _field_decoder(p, reg, {})((0x10000, 0))
