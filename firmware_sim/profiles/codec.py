"""The one register codec every profile goes through.

A *value* (what the manual describes: volts, amps, a state string) is turned into Modbus
register *words* (16-bit unsigned ints) and back:

    encode(value, dtype, word_order="be", scale=1.0, count=None) -> list[int]
    decode(words, dtype, word_order="be", scale=1.0) -> value

Data types (``dtype``) and their size in registers:

=========  =====  ==================================================================
dtype      regs   meaning
=========  =====  ==================================================================
``u16``    1      unsigned 16-bit
``i16``    1      two's-complement 16-bit
``u32``    2      unsigned 32-bit
``i32``    2      two's-complement 32-bit
``u64``    4      unsigned 64-bit
``i64``    4      two's-complement 64-bit
``f32``    2      IEEE-754 binary32
``f64``    4      IEEE-754 binary64
``str``    count  ASCII, 2 characters per register, high byte first, NUL padded
``bool``   1      a coil / discrete input (0 or 1); also usable as a U16 flag
=========  =====  ==================================================================

Byte order inside a register is always big-endian (the Modbus rule). ``word_order`` says how a
multi-register value is split: ``"be"`` = high word first ("ABCD", Eastron, Alfen, KEBA, ...),
``"lsw"`` = low word first ("CDAB", Carlo Gavazzi, Phoenix EV-ETH, Schneider). Word order does
not apply to strings (characters are always in reading order) nor to 1-register types.

Scale: ``value = raw * scale`` (so an INT32 in 0.1 V has ``scale=0.1``; KEBA's mA with a point in
A has ``scale=0.001``). When ``1/scale`` is an integer the division is done as ``raw / (1/scale)``,
which is exactly rounded (``3 * 0.1`` would give 0.30000000000000004, ``3 / 10`` gives 0.3).
Integer encodings round half away from zero.

Edge cases, chosen once for every profile:

* Floats: NaN and +-inf encode as IEEE NaN/inf; a value beyond the binary32 range encodes as
  +-inf (that is what a C ``(float)`` cast does). ``None`` encodes as NaN.
* Integers: out-of-range values raise :class:`CodecError` unless ``saturate=True``, which clamps
  to the type's range (what a device's firmware does when it stores a measurement). ``None`` or
  NaN encode as the *not-available* pattern, all words 0xFFFF (-1 for signed types), the value
  Alfen, Bender and CHARX use for "unknown"; with ``saturate=False`` NaN raises instead.
* Strings: non-ASCII characters become ``?``; longer strings are truncated to ``2*count`` bytes;
  decode stops at the first NUL.
"""
from __future__ import annotations

import math
import struct
from typing import Any, Sequence

__all__ = [
    "BE", "LSW", "DTYPES", "CodecError", "encode", "decode", "size_of", "not_available",
    "WORD_ORDERS",
]

BE = "be"
LSW = "lsw"

_WO_ALIASES = {
    "be": BE, "big": BE, "abcd": BE, "msw": BE, "high_first": BE,
    "lsw": LSW, "le": LSW, "little": LSW, "cdab": LSW, "low_first": LSW,
}
WORD_ORDERS = (BE, LSW)

# dtype -> (registers, struct format for the whole value in big-endian, is_int, lo, hi)
_INT_RANGES = {
    "u16": (1, ">H", 0, 0xFFFF),
    "i16": (1, ">h", -0x8000, 0x7FFF),
    "u32": (2, ">I", 0, 0xFFFF_FFFF),
    "i32": (2, ">i", -0x8000_0000, 0x7FFF_FFFF),
    "u64": (4, ">Q", 0, 0xFFFF_FFFF_FFFF_FFFF),
    "i64": (4, ">q", -0x8000_0000_0000_0000, 0x7FFF_FFFF_FFFF_FFFF),
}
_FLOATS = {"f32": (2, ">f"), "f64": (4, ">d")}
DTYPES = tuple(_INT_RANGES) + tuple(_FLOATS) + ("str", "bool")
_F32_MAX = struct.unpack(">f", b"\x7f\x7f\xff\xff")[0]


class CodecError(ValueError):
    """A value cannot be represented in the requested type (or words have the wrong length)."""


def normalize_word_order(word_order: str) -> str:
    try:
        return _WO_ALIASES[word_order.lower()]
    except (KeyError, AttributeError):
        raise CodecError(f"unknown word order {word_order!r}") from None


def size_of(dtype: str, count: int | None = None) -> int:
    """Number of registers a value of ``dtype`` occupies (``count`` for strings)."""
    if dtype in _INT_RANGES:
        return _INT_RANGES[dtype][0]
    if dtype in _FLOATS:
        return _FLOATS[dtype][0]
    if dtype == "bool":
        return 1
    if dtype == "str":
        if not count or count < 1:
            raise CodecError("str needs count >= 1 (registers)")
        return count
    raise CodecError(f"unknown dtype {dtype!r}")


def not_available(dtype: str, count: int | None = None) -> list[int]:
    """The all-ones "no value" pattern (0xFFFF per register)."""
    return [0xFFFF] * size_of(dtype, count)


def _inv(scale: float) -> int | None:
    """1/scale when it is a (positive) integer > 1, else None."""
    if scale == 1 or scale == 0:
        return None
    inv = 1.0 / scale
    r = round(inv)
    if r > 1 and abs(inv - r) < 1e-9 * r:
        return int(r)
    return None


def _to_raw(value: float, scale: float) -> float:
    if scale == 1:
        return value
    inv = _inv(scale)
    if inv is not None:
        return value * inv
    return value / scale


def _from_raw(raw: float, scale: float) -> float:
    if scale == 1:
        return raw
    inv = _inv(scale)
    if inv is not None:
        return raw / inv
    return raw * scale


def _round_half_away(x: float) -> int:
    return int(math.floor(x + 0.5)) if x >= 0 else -int(math.floor(-x + 0.5))


def _split(data: bytes, word_order: str) -> list[int]:
    words = [(data[i] << 8) | data[i + 1] for i in range(0, len(data), 2)]
    if word_order == LSW and len(words) > 1:
        words.reverse()
    return words


def _join(words: Sequence[int], word_order: str) -> bytes:
    ws = list(words)
    if word_order == LSW and len(ws) > 1:
        ws.reverse()
    out = bytearray()
    for w in ws:
        if not 0 <= w <= 0xFFFF:
            raise CodecError(f"register word out of range: {w!r}")
        out += bytes(((w >> 8) & 0xFF, w & 0xFF))
    return bytes(out)


def encode(value: Any, dtype: str, word_order: str = BE, scale: float = 1.0,
           count: int | None = None, saturate: bool = False) -> list[int]:
    """Encode ``value`` (in the manual's unit, after scale) into register words."""
    wo = normalize_word_order(word_order)
    if dtype in _INT_RANGES:
        n, fmt, lo, hi = _INT_RANGES[dtype]
        if value is None or (isinstance(value, float) and math.isnan(value)):
            if value is None or saturate:
                return [0xFFFF] * n
            raise CodecError(f"NaN cannot be encoded as {dtype}")
        if isinstance(value, bool):
            value = int(value)
        if isinstance(value, int) and scale == 1:
            raw = value
        else:
            x = _to_raw(float(value), scale)
            if math.isinf(x):
                if not saturate:
                    raise CodecError(f"{value!r} out of range for {dtype}")
                raw = hi if x > 0 else lo
            else:
                raw = _round_half_away(x)
        if raw < lo or raw > hi:
            if not saturate:
                raise CodecError(f"{value!r} (raw {raw}) out of range for {dtype}")
            raw = lo if raw < lo else hi
        return _split(struct.pack(fmt, raw), wo)
    if dtype in _FLOATS:
        n, fmt = _FLOATS[dtype]
        if value is None:
            x = math.nan
        else:
            x = float(value)
            if not (math.isnan(x) or math.isinf(x)):
                x = _to_raw(x, scale)
        if dtype == "f32" and not math.isnan(x) and abs(x) > _F32_MAX:
            # beyond binary32: a C cast gives inf; but values that round to F32_MAX stay finite
            try:
                return _split(struct.pack(fmt, x), wo)
            except OverflowError:
                x = math.copysign(math.inf, x)
        return _split(struct.pack(fmt, x), wo)
    if dtype == "str":
        n = size_of("str", count)
        s = "" if value is None else str(value)
        b = s.encode("ascii", errors="replace")[: 2 * n]
        b = b.ljust(2 * n, b"\x00")
        return [(b[i] << 8) | b[i + 1] for i in range(0, 2 * n, 2)]
    if dtype == "bool":
        return [1 if value else 0]
    raise CodecError(f"unknown dtype {dtype!r}")


def decode(words: Sequence[int], dtype: str, word_order: str = BE, scale: float = 1.0) -> Any:
    """Decode register words into a value (``raw * scale``).

    Integers with ``scale == 1`` decode to ``int``; scaled integers and floats to ``float``;
    ``str`` to ``str`` (up to the first NUL); ``bool`` to ``bool`` (any non-zero word is true).
    """
    wo = normalize_word_order(word_order)
    if dtype == "str":
        b = _join(words, BE)
        b = b.split(b"\x00", 1)[0]
        return b.decode("ascii", errors="replace")
    if dtype == "bool":
        if len(words) != 1:
            raise CodecError("bool is one register/bit")
        return bool(words[0])
    n = size_of(dtype)
    if len(words) != n:
        raise CodecError(f"{dtype} needs {n} registers, got {len(words)}")
    data = _join(words, wo)
    if dtype in _INT_RANGES:
        raw = struct.unpack(_INT_RANGES[dtype][1], data)[0]
        return raw if scale == 1 else _from_raw(float(raw), scale)
    x = struct.unpack(_FLOATS[dtype][1], data)[0]
    if scale != 1 and not (math.isnan(x) or math.isinf(x)):
        x = _from_raw(x, scale)
    return x


# --- compiled codecs ----------------------------------------------------------------------------
# encode()/decode() interpret dtype, word order and scale on every call. A register's are fixed, so
# the engine and the drivers ask once for a function specialised to them (the struct formats,
# 1/scale and the word split precomputed) that gives exactly what encode()/decode() give for the
# same arguments, values and exceptions included (tests/firmware_sim/test_codec.py compares them).
# Strings and anything unusual go through the generic functions.
_CODECS: dict = {}


def encoder(dtype: str, word_order: str = BE, scale: float = 1.0, count: int | None = None,
            saturate: bool = False):
    """``lambda value: encode(value, dtype, word_order, scale, count, saturate)``, compiled."""
    key = ("e", dtype, word_order, scale, count, saturate)
    f = _CODECS.get(key)
    if f is None:
        f = _CODECS[key] = _compile_encoder(dtype, normalize_word_order(word_order), scale, count,
                                            saturate)
    return f


def decoder(dtype: str, word_order: str = BE, scale: float = 1.0):
    """``lambda words: decode(words, dtype, word_order, scale)``, compiled."""
    key = ("d", dtype, word_order, scale)
    f = _CODECS.get(key)
    if f is None:
        f = _CODECS[key] = _compile_decoder(dtype, normalize_word_order(word_order), scale)
    return f


def _compile_encoder(dtype: str, wo: str, scale: float, count: int | None, saturate: bool):
    if dtype in _INT_RANGES:
        n, fmt, lo, hi = _INT_RANGES[dtype]
        na = [0xFFFF] * n
        mask = (1 << (16 * n)) - 1
        shifts = tuple(16 * (n - 1 - i) for i in range(n))      # high word first
        if wo == LSW:
            shifts = shifts[::-1]
        inv = _inv(scale)
        isnan, isinf, floor = math.isnan, math.isinf, math.floor

        def enc_int(value: Any) -> list[int]:
            if value is None or (isinstance(value, float) and isnan(value)):
                if value is None or saturate:
                    return list(na)
                raise CodecError(f"NaN cannot be encoded as {dtype}")
            if isinstance(value, bool):
                value = int(value)
            if isinstance(value, int) and scale == 1:
                raw = value
            else:
                x = float(value)
                if scale != 1:
                    x = x * inv if inv is not None else x / scale
                if isinf(x):
                    if not saturate:
                        raise CodecError(f"{value!r} out of range for {dtype}")
                    raw = hi if x > 0 else lo
                else:   # round half away from zero (_round_half_away)
                    raw = int(floor(x + 0.5)) if x >= 0 else -int(floor(-x + 0.5))
            if raw < lo or raw > hi:
                if not saturate:
                    raise CodecError(f"{value!r} (raw {raw}) out of range for {dtype}")
                raw = lo if raw < lo else hi
            u = raw & mask      # two's complement, as struct.pack writes it
            return [(u >> s) & 0xFFFF for s in shifts]
        if n > 2:
            return enc_int
        # The registers a fast run encodes every second (a countdown, a current in mA, a
        # counter): an exact int, or a float that is neither NaN nor infinite after scaling,
        # within range. The same arithmetic as enc_int, without its checks for the other cases
        # (which it still handles).
        hi_word = n == 2 and wo != LSW
        lo_word = n == 2 and wo == LSW
        exact = scale == 1

        def enc_fast(value: Any) -> list[int]:
            c = value.__class__
            if c is int and exact:
                raw = value
            elif c is float:
                x = value if exact else (value * inv if inv is not None else value / scale)
                if x - x != 0.0:        # NaN or infinite (also a NaN value)
                    return enc_int(value)
                raw = int(floor(x + 0.5)) if x >= 0 else -int(floor(-x + 0.5))
            else:
                return enc_int(value)
            if raw < lo or raw > hi:
                return enc_int(value)
            u = raw & mask
            if hi_word:
                return [u >> 16, u & 0xFFFF]
            if lo_word:
                return [u & 0xFFFF, u >> 16]
            return [u]
        return enc_fast
    if dtype in _FLOATS:
        n, fmt = _FLOATS[dtype]
        pack = struct.Struct(fmt).pack
        words = struct.Struct(f">{n}H").unpack
        lsw = wo == LSW
        inv = _inv(scale)
        isnan, isinf = math.isnan, math.isinf
        f32 = dtype == "f32"

        def enc_float(value: Any) -> list[int]:
            if value is None:
                x = math.nan
            else:
                x = float(value)
                if scale != 1 and not (isnan(x) or isinf(x)):
                    x = x * inv if inv is not None else x / scale
            if f32 and not isnan(x) and abs(x) > _F32_MAX:
                try:
                    data = pack(x)
                except OverflowError:
                    data = pack(math.copysign(math.inf, x))
            else:
                data = pack(x)
            out = list(words(data))
            if lsw:
                out.reverse()
            return out
        return enc_float
    if dtype == "bool":
        return lambda value: [1 if value else 0]
    return lambda value: encode(value, dtype, wo, scale, count, saturate)


def _compile_decoder(dtype: str, wo: str, scale: float):
    if dtype in _INT_RANGES or dtype in _FLOATS:
        n = size_of(dtype)
        join = struct.Struct(f">{n}H").pack
        unpack = struct.Struct(_INT_RANGES[dtype][1] if dtype in _INT_RANGES else _FLOATS[dtype][1]).unpack
        lsw = wo == LSW and n > 1
        is_int = dtype in _INT_RANGES
        inv = _inv(scale)
        isnan, isinf = math.isnan, math.isinf

        def dec(words: Sequence[int]) -> Any:
            if len(words) != n:
                raise CodecError(f"{dtype} needs {n} registers, got {len(words)}")
            try:
                data = join(*(reversed(words) if lsw else words))
            except (struct.error, TypeError):
                return decode(words, dtype, wo, scale)      # the generic path's own error
            x = unpack(data)[0]
            if is_int:
                if scale == 1:
                    return x
                x = float(x)
            elif scale == 1 or isnan(x) or isinf(x):
                return x
            return x / inv if inv is not None else x * scale
        return dec
    return lambda words: decode(words, dtype, wo, scale)
