"""Codec: encode/decode for every dtype, both word orders, scales, NaN/inf, strings."""
import math
import struct

import pytest
from hypothesis import given, settings, strategies as st

from dlbrig.firmware_sim.profiles.codec import (BE, LSW, CodecError, decode, encode,
                                                not_available, size_of)

INT_RANGES = {"u16": (0, 2**16 - 1), "i16": (-2**15, 2**15 - 1), "u32": (0, 2**32 - 1),
              "i32": (-2**31, 2**31 - 1), "u64": (0, 2**64 - 1), "i64": (-2**63, 2**63 - 1)}
FMT = {"u16": ">H", "i16": ">h", "u32": ">I", "i32": ">i", "u64": ">Q", "i64": ">q",
       "f32": ">f", "f64": ">d"}
word_orders = st.sampled_from([BE, LSW])
words16 = st.integers(0, 0xFFFF)


def _be_words(fmt, value):
    b = struct.pack(fmt, value)
    return [(b[i] << 8) | b[i + 1] for i in range(0, len(b), 2)]


# --- golden examples -----------------------------------------------------------------------
def test_f32_big_endian_matches_struct():
    assert encode(12.5, "f32") == _be_words(">f", 12.5) == [0x4148, 0x0000]


def test_lsw_first_swaps_words_not_bytes():
    assert encode(0x12345678, "u32", LSW) == [0x5678, 0x1234]
    assert encode(0x0102030405060708, "u64", LSW) == [0x0708, 0x0506, 0x0304, 0x0102]
    assert decode([0x5678, 0x1234], "u32", "cdab") == 0x12345678


def test_scaled_int32_lsw_em24_style():
    # 230.1 V as INT32 in 0.1 V, low word first
    assert encode(230.1, "i32", LSW, 0.1) == [2301, 0]
    assert encode(-1234.5, "i32", LSW, 0.1) == [(-12345) & 0xFFFF, 0xFFFF]
    assert decode([(-12345) & 0xFFFF, 0xFFFF], "i32", LSW, 0.1) == -1234.5


def test_scale_divides_exactly():
    assert decode([3], "u16", scale=0.1) == 0.3
    assert decode([16000], "u16", scale=0.001) == 16.0
    assert encode(0.3, "u16", scale=0.1) == [3]
    assert encode(12.0, "u16", scale=10) == [1]     # 10 Wh units
    assert decode([7], "u16", scale=10) == 70


def test_rounding_half_away_from_zero():
    assert encode(0.25, "i16", scale=0.1) == [3]         # 2.5 -> 3
    assert encode(-0.25, "i16", scale=0.1) == [(-3) & 0xFFFF]


def test_integer_range_and_saturation():
    with pytest.raises(CodecError):
        encode(70000, "u16")
    with pytest.raises(CodecError):
        encode(-1, "u32")
    assert encode(70000, "u16", saturate=True) == [0xFFFF]
    assert encode(-5, "u16", saturate=True) == [0]
    assert encode(math.inf, "i32", saturate=True) == [0x7FFF, 0xFFFF]
    assert encode(-math.inf, "i16", saturate=True) == [0x8000]


def test_not_available_pattern():
    assert encode(None, "u32") == [0xFFFF, 0xFFFF] == not_available("u32")
    assert encode(math.nan, "i16", saturate=True) == [0xFFFF]
    with pytest.raises(CodecError):
        encode(math.nan, "i16")


def test_float_specials():
    assert encode(math.inf, "f32") == [0x7F80, 0]
    assert encode(-math.inf, "f64") == [0xFFF0, 0, 0, 0]
    assert math.isnan(decode(encode(math.nan, "f32"), "f32"))
    assert math.isnan(decode(encode(None, "f64"), "f64"))
    assert math.isnan(decode([0xFFFF, 0xFFFF], "f32"))        # Alfen reserved pattern
    assert encode(1e39, "f32") == [0x7F80, 0]                 # beyond binary32 -> inf
    assert encode(-1e39, "f32") == [0xFF80, 0]


def test_ascii_strings():
    assert encode("C2", "str", count=5) == [0x4332, 0, 0, 0, 0]
    assert encode("ABC", "str", count=2) == [0x4142, 0x4300]
    assert encode("ABCDEFG", "str", count=2) == [0x4142, 0x4344]   # truncated
    assert decode([0x4332, 0, 0x4142, 0], "str") == "C2"            # up to the first NUL
    assert encode("é", "str", count=1) == [0x3F00]                   # non-ASCII -> '?'
    with pytest.raises(CodecError):
        size_of("str")


def test_bool_and_sizes():
    assert encode(True, "bool") == [1] and decode([0], "bool") is False
    assert [size_of(d) for d in ("u16", "i16", "u32", "i32", "u64", "i64", "f32", "f64")] == \
        [1, 1, 2, 2, 4, 4, 2, 4]


def test_wrong_length_and_bad_words():
    with pytest.raises(CodecError):
        decode([1], "u32")
    with pytest.raises(CodecError):
        decode([0x10000, 0], "u32")
    with pytest.raises(CodecError):
        encode(1, "u24")
    with pytest.raises(CodecError):
        encode(1, "u32", "middle")


# --- properties ----------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", list(INT_RANGES))
@settings(derandomize=True, database=None, max_examples=60, deadline=None)
@given(data=st.data(), wo=word_orders)
def test_int_roundtrip_and_struct_agreement(dtype, data, wo):
    lo, hi = INT_RANGES[dtype]
    v = data.draw(st.integers(lo, hi))
    w = encode(v, dtype, wo)
    assert len(w) == size_of(dtype) and all(0 <= x <= 0xFFFF for x in w)
    be = _be_words(FMT[dtype], v)
    assert w == (be if wo == BE else be[::-1])
    assert decode(w, dtype, wo) == v


@pytest.mark.parametrize("dtype", list(INT_RANGES))
@settings(derandomize=True, database=None, max_examples=40, deadline=None)
@given(data=st.data(), wo=word_orders)
def test_words_roundtrip_ints(dtype, data, wo):
    w = data.draw(st.lists(words16, min_size=size_of(dtype), max_size=size_of(dtype)))
    assert encode(decode(w, dtype, wo), dtype, wo) == w


@pytest.mark.parametrize("scale", [0.1, 0.01, 0.001, 10.0, 100.0])
@settings(derandomize=True, database=None, max_examples=50, deadline=None)
@given(raw=st.integers(-2**31, 2**31 - 1), wo=word_orders)
def test_scaled_int_words_roundtrip(scale, raw, wo):
    w = encode(raw, "i32", wo)
    v = decode(w, "i32", wo, scale)
    assert encode(v, "i32", wo, scale) == w


@settings(derandomize=True, database=None, max_examples=100, deadline=None)
@given(v=st.floats(width=32, allow_nan=False), wo=word_orders)
def test_f32_value_roundtrip(v, wo):
    assert decode(encode(v, "f32", wo), "f32", wo) == v


@settings(derandomize=True, database=None, max_examples=100, deadline=None)
@given(v=st.floats(allow_nan=False), wo=word_orders)
def test_f64_value_roundtrip_and_struct(v, wo):
    w = encode(v, "f64", wo)
    be = _be_words(">d", v)
    assert w == (be if wo == BE else be[::-1])
    assert decode(w, "f64", wo) == v


@settings(derandomize=True, database=None, max_examples=100, deadline=None)
@given(w=st.lists(words16, min_size=4, max_size=4), wo=word_orders)
def test_f64_words_roundtrip_including_nan_payloads(w, wo):
    assert encode(decode(w, "f64", wo), "f64", wo) == w


@settings(derandomize=True, database=None, max_examples=100, deadline=None)
@given(w=st.lists(words16, min_size=2, max_size=2), wo=word_orders)
def test_f32_words_roundtrip(w, wo):
    v = decode(w, "f32", wo)
    if math.isnan(v):            # NaN payloads may be quieted by the C float->double cast
        assert math.isnan(decode(encode(v, "f32", wo), "f32", wo))
    else:
        assert encode(v, "f32", wo) == w


@settings(derandomize=True, database=None, max_examples=100, deadline=None)
@given(s=st.text(alphabet=st.characters(min_codepoint=1, max_codepoint=127), max_size=20),
       count=st.integers(1, 12))
def test_ascii_roundtrip(s, count):
    w = encode(s, "str", count=count)
    assert len(w) == count
    assert decode(w, "str") == s[: 2 * count]


# --- compiled codecs (codec.encoder / codec.decoder): the same results as encode / decode ---------
def _outcome(fn, *args):
    try:
        r = fn(*args)
    except Exception as exc:        # the same exception type and message
        return ("raise", type(exc).__name__, str(exc))
    if isinstance(r, float) and math.isnan(r):
        return ("nan",)
    return ("ok", type(r).__name__, r, math.copysign(1.0, r) if isinstance(r, float) else None)


def _codec_cases():
    from dlbrig.firmware_sim.profiles import PROFILES
    combos = {(r.dtype, r.word_order or p.word_order, r.scale, r.count)
              for p in PROFILES.values() for r in p.registers if r.dtype != "str"}
    for dtype in ("u16", "i16", "u32", "i32", "u64", "i64", "f32", "f64", "bool"):
        for wo in ("be", "lsw"):
            for scale in (1.0, 0.1, 0.01, 0.001, 0.5, 2.0, 0.3, 1):
                combos.add((dtype, wo, scale, None))
    return sorted(combos, key=repr)


_VALUES = [None, 0, 1, -1, 0.0, -0.0, 0.5, -0.5, 1.5, 2.5, -2.5, 0.05, 0.15, 16.0, 229.99, 230.0,
           6.35, 1e-9, 32767.5, 65535, 65536, -32768, -32769, 2**31, -2**31 - 1, 2**63, 1e300, -1e300,
           3.4028235e38, 3.4028236e38, float("inf"), float("-inf"), float("nan"), True, False, 7, "3",
           12345.678, -0.0004, 0.0005, 4294967295, 4294967296]
_WORDS = [[0], [1], [0xFFFF], [0x8000], [0x7FFF], [0, 0], [0xFFFF, 0xFFFF], [0x4170, 0], [0, 0x4170],
          [0x7F80, 0], [0xFF80, 0], [0x7FC0, 0], [1, 2, 3, 4], [0xFFFF] * 4, [0x8000, 0, 0, 0],
          [0x10000], [-1], [1, 2], [1, 2, 3], [True], [0x3F80, 0, 0, 0], [0x1234, 0x5678]]


@pytest.mark.parametrize("dtype,wo,scale,count", _codec_cases())
def test_compiled_codecs_match_the_generic_ones(dtype, wo, scale, count):
    from dlbrig.firmware_sim.profiles.codec import decoder, encoder
    for saturate in (True, False):
        enc = encoder(dtype, wo, scale, count, saturate)
        for v in _VALUES:
            assert _outcome(enc, v) == _outcome(lambda x: encode(x, dtype, wo, scale, count, saturate), v), \
                (dtype, wo, scale, saturate, v)
    dec = decoder(dtype, wo, scale)
    for w in _WORDS:
        assert _outcome(dec, w) == _outcome(lambda x: decode(x, dtype, wo, scale), w), (dtype, wo, scale, w)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(_codec_cases()), st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                                                   st.integers(-2**65, 2**65)),
       st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=4))
def test_compiled_codecs_match_on_random_values(case, value, words):
    from dlbrig.firmware_sim.profiles.codec import decoder, encoder
    dtype, wo, scale, count = case
    for saturate in (True, False):
        assert _outcome(encoder(dtype, wo, scale, count, saturate), value) == \
            _outcome(lambda x: encode(x, dtype, wo, scale, count, saturate), value)
    assert _outcome(decoder(dtype, wo, scale), words) == _outcome(lambda x: decode(x, dtype, wo, scale), words)
