"""The engine: a product's Modbus register image over live device models.

:class:`DeviceImage` answers PDU-level requests for one product (one :class:`Profile`) and one
or more unit ids, each backed by device objects implementing the point vocabulary
(``points() -> Mapping[str, Any]`` and ``write_point(name, value, now_ms)``). It is pure: no
sockets, no clock, no threads. The Modbus transport calls::

    image.read(unit, table, address, count, now_ms) -> list[int]      # FC01/02/03/04
    image.write(unit, table, address, values, now_ms, fc=None)         # FC05/06/15/16

and turns :class:`ModbusError` into an exception response with ``.code``, and
:class:`NoSuchUnit` into exception 0x0B (TCP gateway) or silence (RTU, unplugged device).

Behaviour common to every product, in the order checks are made:

1. unknown unit id -> :class:`NoSuchUnit` (before anything else; the device never saw it);
2. a function code the product does not implement -> 01 ILLEGAL FUNCTION (also writes to the
   input / discrete tables, which Modbus has no function for);
3. a quantity of 0 or above the product's per-request limit -> ``profile.limit_exception``
   (03 by the Modbus spec, Eastron's 80-register rule);
4. addresses outside the product's answering blocks -> 02 ILLEGAL DATA ADDRESS; unused
   addresses inside a block -> ``profile.reserved`` ("nan" = 0xFFFF, "zero" = 0, "exception"
   = 02); write-only registers read like reserved ones;
5. KEBA-style products (``single_value_reads``) reject a read that is not inside exactly one
   value with ``profile.boundary_exception``; ``partial_reads="exception"`` rejects reads that
   start or end inside a value; otherwise the covered words of the value are returned;
6. writes: every covered register must exist (02) and be writable
   (``profile.readonly_exception``, 02 unless the product says otherwise); a write covering part
   of a multi-register value is rejected with ``profile.partial_write_exception`` when the
   product requires atomic writes, else merged with the current words (read-modify-write);
   decoded values outside the register's ``valid`` range, or rejected by the model with
   ``ValueError``, give ``profile.invalid_value_exception`` (03). All values of a request are
   decoded and checked before the first one is applied; nothing is written on an exception.
7. a model that raises anything else (or lacks a point) -> 04 SERVER DEVICE FAILURE, with the
   original exception chained as ``__cause__``.

Watchdog kicks (``profile.watchdog.kick``): "any" sends ``write_point("heartbeat", True, now)``
to the unit's devices on every request; "write" sends it, after the values, to the devices an
accepted write touched (one charging point's device for a CHARX per-point register, all devices
of the unit for a unit-level register); "register" does the same only for writes of registers
flagged ``heartbeat=True`` (Alfen 1210, Vestel 6000). Every accepted value is also kept in the
image, so a writable register whose point the model does not expose reads back what was written.
"""
from __future__ import annotations

import math
from collections.abc import Mapping as _MappingABC
from typing import Any, Mapping, Sequence

from .base import READ_FC, Profile, Register, check_value
from .codec import CodecError, decode, decoder, encode, encoder

__all__ = ["DeviceImage", "ModbusError", "NoSuchUnit",
           "ILLEGAL_FUNCTION", "ILLEGAL_DATA_ADDRESS", "ILLEGAL_DATA_VALUE", "DEVICE_FAILURE"]

ILLEGAL_FUNCTION = 0x01
ILLEGAL_DATA_ADDRESS = 0x02
ILLEGAL_DATA_VALUE = 0x03
DEVICE_FAILURE = 0x04
_NAMES = {1: "ILLEGAL FUNCTION", 2: "ILLEGAL DATA ADDRESS", 3: "ILLEGAL DATA VALUE",
          4: "SERVER DEVICE FAILURE"}


class ModbusError(Exception):
    """A Modbus exception response; ``code`` is the exception code (1..4)."""

    def __init__(self, code: int, message: str = "") -> None:
        self.code = code
        super().__init__(f"exception {code:02d} {_NAMES.get(code, '')}: {message}".rstrip(": "))


class NoSuchUnit(LookupError):
    """No device at this unit id: 0x0B on TCP, no answer on RTU."""

    def __init__(self, unit: int) -> None:
        self.unit = unit
        super().__init__(f"no device at unit id {unit}")


class _Unit:
    __slots__ = ("uid", "role", "devices", "maps", "blocks", "local", "is_station", "layouts", "enc",
                 "answers", "pure", "plans", "getters", "plan_ids", "token_fns", "timed")

    def __init__(self, uid: int, role: str, devices: tuple, is_station: bool) -> None:
        self.uid = uid
        self.role = role
        self.devices = devices
        self.maps: dict[str, dict[int, tuple[Register, int]]] = {}
        self.blocks: dict[str, tuple[tuple[int, int], ...]] = {}
        self.local: dict[tuple[str, int], Any] = {}
        self.is_station = is_station
        # caches (``DeviceImage(cache=True)``): read layouts per (table, address, count), and the
        # last encoding per register (id) as (type, value, words)
        self.layouts: dict[tuple[str, int, int], Any] = {}
        self.enc: dict[int, tuple] = {}
        # answer memo: request -> (points looked up as (device index, name, value), words), for
        # requests whose registers all come from points (``pure``: no clock, no group, no local)
        self.answers: dict[tuple[str, int, int], tuple] = {}
        self.pure: set = set()
        # plan memo (``read_many``): a master's whole per-cycle read plan -> (points looked up by
        # all its requests, answers), while every request of it is memoizable as above
        self.plans: dict[tuple, tuple] = {}
        # (device index, point name) -> zero-argument callable computing that point (see
        # ``_getter``), so re-checking a memo's points skips the mapping layers
        self.getters: dict[tuple[int, str], Any] = {}
        # read_many: id(plan tuple) -> its _Plan (the driver passes the same tuple every cycle:
        # one identity lookup instead of hashing the requests)
        self.plan_ids: dict[int, _Plan] = {}
        # each device's ``read_token`` (None unless every device has one) and ``timed_points``
        fns = tuple(getattr(d, "read_token", None) for d in devices)
        self.token_fns = fns if fns and all(f is not None for f in fns) else None
        self.timed = tuple(getattr(d, "timed_points", frozenset()) for d in devices)


class _Plan:
    """A read plan's memo (``read_many``): the answers; the points the registers that do not move
    with the clock looked up (``deps``) and the devices' read tokens when those were last seen
    unchanged (``tokens``); and the segments of the registers that read a time-dependent point
    (``timed``: request index, word position, layout segment, the point's getter for a register
    bound directly to one, else None), re-encoded on every read."""

    __slots__ = ("key", "answers", "deps", "tokens", "timed", "points", "shared", "regs")

    def __init__(self, key: tuple, answers: tuple, deps: tuple, tokens: Any, timed: tuple,
                 points: tuple | None = None, regs: tuple | None = None) -> None:
        self.key, self.answers, self.deps, self.tokens, self.timed = key, answers, deps, tokens, timed
        # when every register of the plan is bound directly to one point: per register (request
        # index, word position, layout segment, the point's getter, device index, point name,
        # timed), so that changed points re-encode only their registers (see _plan_regen)
        self.points = points
        self.shared: list | None = None     # the answers as lists, for read_many(shared=True)
        # per register (request index, word position, layout segment, the points it looked up
        # as (device index, name, value), timed, getter or None): a charger's plan (registers
        # computed by product functions too) re-encodes only the registers whose points changed
        # (see _plan_update)
        self.regs = regs


_MISSING = object()
# read_many: a plan that cannot be memoized rests for _PLAN_REST reads before it is tried again
# (the answers are the same either way; only the bookkeeping is skipped)
_PLAN_REST = 64
_copysign = math.copysign
_SCALARS = frozenset({int, float, str, bool, type(None)})


class _LazyPoints(_MappingABC):
    """A device's ``points()`` computed one point at a time, on first use (``cache=True``).

    For devices with ``point(name)`` (the charger model): a request usually needs a handful of
    the ~30 points, and the image's cache is dropped whenever the device may have changed, so
    the values are those ``points()`` would have given at the same instant."""

    __slots__ = ("_dev", "_vals", "_all", "rec", "idx")

    def __init__(self, dev: Any, idx: int = 0) -> None:
        self._dev = dev
        self._vals: dict = {}
        self._all: dict | None = None
        self.rec: list | None = None      # while set: (idx, name, value) of every lookup
        self.idx = idx

    def __getitem__(self, name: str) -> Any:
        vals = self._vals
        if name in vals:
            v = vals[name]
        else:
            v = vals[name] = self._dev.point(name)
        if self.rec is not None:
            self.rec.append((self.idx, name, v))
        return v

    def _full(self) -> dict:
        if self._all is None:
            self._all = self._dev.points()
        return self._all

    def __iter__(self):
        return iter(self._full())

    def __len__(self) -> int:
        return len(self._full())


def _from_points(reg: Register) -> bool:
    """The register's value is computed from one device's points only (see ``_value``)."""
    if reg.fn is not None:
        return True
    return (reg.group_fn is None and reg.clock_fn is None and reg.point is not None
            and reg.readable)


def _as_devices(dev: Any) -> tuple:
    if isinstance(dev, (list, tuple)):
        return tuple(dev)
    return (dev,)


def _file_register(rec, timed_points, timed: list, deps: dict, where: tuple) -> bool:
    """File a plan register by the points it read (rec: (unit index, point, value) ...): one that
    reads a time-dependent point is re-encoded every read (timed); the others make the plan's
    dependencies (the first value seen of each point). Returns whether it is timed."""
    if any(name in timed_points[i] for i, name, _ in rec):
        timed.append(where)
        return True
    for i, name, v in rec:
        deps.setdefault((i, name), v)
    return False


class DeviceImage:
    """Serve ``profile`` for ``devices`` (unit id -> device, or unit id -> [device per connector]).

    ``cache=True`` (fast mode) keeps, between requests, each device's ``points()`` for one
    ``now_ms``, each request's register layout and each register's last encoding. The points
    cache is dropped on every write and heartbeat through the image and whenever ``now_ms``
    changes; the owner of the devices must call :meth:`invalidate` after changing them by other
    means (the plant does, on every advance). It also computes a charger's points one at a time
    (only those a request needs), skips an "any"-kick heartbeat repeated at the same instant with
    nothing changed since, and reuses a request's answer while every point its registers looked
    up still has the same value (requests from points only: no clock, group or local registers).
    Answers are identical with and without it (tests/rig/test_fast_caches_faults.py).
    """

    def __init__(self, profile: Profile, devices: Mapping[int, Any], *, cache: bool = False) -> None:
        self.profile = profile
        self.cache = bool(cache)
        self._pc_now: int | None = None
        self._pc: dict[int, dict] = {}
        # cache=True: unit id -> now_ms of the last "any"-kick heartbeat. Repeating it at the same
        # time with nothing changed since (no write, no invalidate) feeds the watchdog with the
        # value it already holds: a no-op that costs a model settle, so it is skipped.
        self._kicked: dict[int, int] = {}
        self._encoders: dict[int, Any] = {}     # cache=True: id(register) -> compiled encoder
        self._decoders: dict[int, Any] = {}     # cache=True: id(register) -> compiled decoder (writes)
        p = profile
        self._units: dict[int, _Unit] = {}
        for uid, dev in devices.items():
            if not 0 <= uid <= 255:
                raise ValueError(f"unit id {uid} out of range")
            devs = _as_devices(dev)
            if not devs or len(devs) > p.connectors:
                raise ValueError(f"{p.name}: unit {uid} needs 1..{p.connectors} devices")
            self._units[uid] = _Unit(uid, p.role_of(uid), devs, uid == p.station_unit)
        if p.station_unit is not None and p.station_unit not in self._units and self._units:
            others = tuple(d for u in sorted(self._units) for d in self._units[u].devices)
            self._units[p.station_unit] = _Unit(p.station_unit, p.role_of(p.station_unit),
                                                others, True)
        for u in self._units.values():
            self._build(u)
        wd = p.watchdog
        self._kick = wd.kick if wd is not None else "none"

    # --- set-up --------------------------------------------------------------------------
    def _build(self, u: _Unit) -> None:
        p = self.profile
        n = len(u.devices)
        for reg in p.registers:
            if reg.role is not None and reg.role != u.role:
                continue
            if reg.slot > n or (u.is_station and reg.slot):
                continue
            m = u.maps.setdefault(reg.table, {})
            for off in range(reg.count):
                m[reg.address + off] = (reg, off)
        if p.mirror_input and "holding" in u.maps:
            u.maps["input"] = u.maps["holding"]
        for table, m in u.maps.items():
            src = "holding" if (p.mirror_input and table == "input") else table
            if p.blocks is not None:
                bl = tuple((s, e) for t, s, e in p.blocks
                           if t == src and any(s <= a < e for a in m))
            else:
                bl = ((min(m), max(m) + 1),)
            u.blocks[table] = bl

    @property
    def unit_ids(self) -> tuple[int, ...]:
        return tuple(sorted(self._units))

    def _unit(self, unit: int) -> _Unit:
        u = self._units.get(unit)
        if u is None:
            raise NoSuchUnit(unit)
        return u

    def invalidate(self) -> None:
        """Forget cached ``points()`` (the devices changed outside this image)."""
        # (called on every write, heartbeat and plant step: no new dicts for nothing) the points
        # cache is dropped by its next use, which starts a new one when _pc_now is not its time
        self._pc_now = None
        if self._kicked:
            self._kicked = {}

    def _request_cache(self, u: _Unit, now_ms: int) -> dict:
        if not self.cache:
            return {"now": now_ms}
        if self._pc_now != now_ms:
            self._pc_now = now_ms
            self._pc = {}
        c = self._pc.get(u.uid)
        if c is None:
            c = self._pc[u.uid] = {"now": now_ms}
        return c

    # --- value access --------------------------------------------------------------------
    def _points(self, u: _Unit, idx: int, cache: dict) -> Mapping[str, Any]:
        pts = cache.get(idx)
        if pts is None:
            dev = u.devices[idx]
            pts = _LazyPoints(dev, idx) if self.cache and hasattr(dev, "point") else dev.points()
            cache[idx] = pts
        return pts

    def _value(self, u: _Unit, reg: Register, cache: dict) -> Any:
        idx = reg.slot - 1 if reg.slot else 0
        if reg.fn is not None:
            return reg.fn(self._points(u, idx, cache))
        if reg.group_fn is not None:
            return reg.group_fn([self._points(u, i, cache) for i in range(len(u.devices))])
        if reg.clock_fn is not None:
            return reg.clock_fn(cache.get("now", 0))
        if reg.point is not None and reg.readable:
            pts = self._points(u, idx, cache)
            if reg.writable:
                v = pts.get(reg.point, _MISSING)
                if v is not _MISSING:
                    return v
            else:
                return pts[reg.point]
        return u.local.get((reg.table, reg.address), reg.const)

    def _words(self, u: _Unit, reg: Register, cache: dict) -> list[int]:
        try:
            value = self._value(u, reg, cache)
            return encode(value, reg.dtype, reg.word_order or self.profile.word_order,
                          reg.scale, reg.count, saturate=True)
        except ModbusError:
            raise
        except Exception as exc:  # a model bug or a missing point: the device fails
            raise ModbusError(DEVICE_FAILURE, f"{self.profile.name} {reg.name}: {exc!r}") from exc

    def _words_memo(self, u: _Unit, reg: Register, cache: dict) -> list[int]:
        """:meth:`_words` through the unit's last-encoding memo (do not mutate the result)."""
        try:
            value = self._value(u, reg, cache)
        except ModbusError:
            raise
        except Exception as exc:
            raise ModbusError(DEVICE_FAILURE, f"{self.profile.name} {reg.name}: {exc!r}") from exc
        return self._encode_memo(u, reg, value)

    def _encode_memo(self, u: _Unit, reg: Register, value: Any) -> list[int]:
        """``value``'s words for ``reg`` through the unit's last-encoding memo (do not mutate)."""
        key = id(reg)
        m = u.enc.get(key)
        tv = type(value)
        if m is not None and m[0] is tv and m[1] == value and \
                (tv is not float or value != 0.0 or _copysign(1.0, value) == _copysign(1.0, m[1])):
            return m[2]
        try:
            enc = self._encoders.get(key)
            if enc is None:     # the register's codec, compiled once (codec.encoder)
                enc = self._encoders[key] = encoder(reg.dtype, reg.word_order or self.profile.word_order,
                                                    reg.scale, reg.count, saturate=True)
            words = enc(value)
        except ModbusError:
            raise
        except Exception as exc:
            raise ModbusError(DEVICE_FAILURE, f"{self.profile.name} {reg.name}: {exc!r}") from exc
        u.enc[key] = (tv, value, words)
        return words

    def _layout(self, u: _Unit, table: str, address: int, count: int) -> Any:
        """Segments of a read that cannot fail for static reasons, else None (slow path).

        A segment is a list of filler words, or (register, offset, stop, whole)."""
        p = self.profile
        fc = READ_FC.get(table)
        if fc is None or fc not in p.function_codes:
            return None
        limit = p.max_read_bits if fc <= 2 else p.max_read
        end = address + count
        if count < 1 or count > limit or address < 0 or end > 0x10000:
            return None
        m = u.maps.get(table, {})
        if p.single_value_reads:
            ent = m.get(address)
            if ent is not None and ent[0].readable:
                reg, off = ent
                if off != 0 or count > reg.count:
                    return None
        segs: list = []
        a = address
        while a < end:
            ent = m.get(a)
            if ent is None or not ent[0].readable:
                try:
                    w = self._filler(u, table, a)
                except ModbusError:
                    return None
                if segs and isinstance(segs[-1], list):
                    segs[-1].append(w)
                else:
                    segs.append([w])
                a += 1
                continue
            reg, off = ent
            stop = min(reg.end, end) - reg.address
            if (off or stop < reg.count) and p.partial_reads == "exception":
                return None
            segs.append((reg, off, stop, off == 0 and stop == reg.count))
            a = reg.address + stop
        return tuple(segs)

    def _getter(self, u: _Unit, idx: int, name: str) -> Any:
        """A zero-argument callable giving ``points()[name]`` of device ``idx`` now: the model's
        own ``point_getter`` when it has one (the charger model: one call instead of three
        mapping layers), else its ``point``."""
        key = (idx, name)
        g = u.getters.get(key)
        if g is None:
            dev = u.devices[idx]
            mk = getattr(dev, "point_getter", None)
            g = mk(name) if mk is not None else (lambda d=dev, n=name: d.point(n))
            u.getters[key] = g
        return g

    def _still_valid(self, u: _Unit, deps: tuple, cache: dict) -> bool:
        """The points an earlier answer was computed from still have the same values (same
        type, equal, same sign of zero): the registers' encoders are pure functions of the
        points they look up, so the answer is the same words. Memos are only kept for devices
        with ``point(name)`` (``_LazyPoints``): a value is taken from the lazy mapping's values
        of this instant, else computed straight from the model (``_getter``, without the
        mapping's layers) and kept there, so the plan's check, its requests' checks and a
        recomputation evaluate each point once."""
        try:
            getters = u.getters
            for idx, name, old in deps:
                vals = self._points(u, idx, cache)._vals
                v = vals.get(name, _MISSING)
                if v is _MISSING:
                    g = getters.get((idx, name))
                    v = vals[name] = (g if g is not None else self._getter(u, idx, name))()
                if v.__class__ is not old.__class__ or v != old:
                    return False
                if v.__class__ is float and v == 0.0 and _copysign(1.0, v) != _copysign(1.0, old):
                    return False
        except Exception:      # let the full path raise what it raises
            return False
        return True

    def _heartbeat(self, u: _Unit, now_ms: int, devices: Sequence | None = None) -> None:
        try:
            for d in (u.devices if devices is None else devices):
                try:
                    d.write_point("heartbeat", True, now_ms)
                except Exception as exc:
                    raise ModbusError(DEVICE_FAILURE, f"heartbeat: {exc!r}") from exc
        finally:
            if self.cache:
                self.invalidate()

    def _filler(self, u: _Unit, table: str, address: int) -> int:
        for s, e in u.blocks.get(table, ()):
            if s <= address < e:
                r = self.profile.reserved
                if r == "nan":
                    return 0xFFFF
                if r == "zero":
                    return 0
                break
        raise ModbusError(ILLEGAL_DATA_ADDRESS, f"{table} {address}")

    # --- requests ------------------------------------------------------------------------
    def read(self, unit: int, table: str, address: int, count: int, now_ms: int = 0) -> list[int]:
        """Words (or 0/1 bits for coil/discrete) for ``count`` items from ``address``."""
        u = self._unit(unit)
        if self.cache:
            r = self._read_cached(u, table, address, count, now_ms)
            if r is not None:
                return r[0]
        return self._read_plain(u, table, address, count, now_ms)

    def _new_layout(self, u: _Unit, key: tuple[str, int, int]) -> Any:
        """The request's :meth:`_layout`, kept in the unit; a request whose every register reads
        model points is marked pure (its answer may be memoized)."""
        segs = u.layouts[key] = self._layout(u, *key)
        if segs is not None and all(seg.__class__ is list or _from_points(seg[0]) for seg in segs):
            u.pure.add(key)
        return segs

    def _read_cached(self, u: _Unit, table: str, address: int, count: int, now_ms: int):
        """The cached path of :meth:`read`: None when the request needs the plain path (it may
        fail for static reasons), else (words, points, reused) where points is what the answer
        was computed from, (device index, name, value) per lookup, or None when it is not
        memoizable (local, clock or group registers; non-scalar values); reused: the answer
        came from the memo."""
        key = (table, address, count)
        segs = u.layouts.get(key, _MISSING)
        if segs is _MISSING:
            segs = self._new_layout(u, key)
        if segs is None:
            return None
        if self._kick == "any" and self._kicked.get(u.uid) != now_ms:
            self._heartbeat(u, now_ms)
            self._kicked[u.uid] = now_ms
        cache = self._request_cache(u, now_ms)
        memo = u.answers.get(key)
        if memo is not None and self._still_valid(u, memo[0], cache):
            return list(memo[1]), memo[0], True
        lazies: list = []
        rec: list = []
        memoize = key in u.pure
        if memoize:
            lazies = [self._points(u, i, cache) for i in range(len(u.devices))]
            memoize = all(lz.__class__ is _LazyPoints for lz in lazies)
            if memoize:
                for lz in lazies:
                    lz.rec = rec        # record every point the encoders look up
        try:
            out: list[int] = []
            for seg in segs:
                if seg.__class__ is list:
                    out.extend(seg)
                    continue
                reg, off, stop, whole = seg
                if memoize and reg.writable and reg.fn is None and \
                        reg.point not in lazies[reg.slot - 1 if reg.slot else 0]:
                    memoize = False     # reads back the image's local value
                words = self._words_memo(u, reg, cache)
                out.extend(words if whole else words[off:stop])
        finally:
            for lz in lazies:
                if lz.__class__ is _LazyPoints:
                    lz.rec = None
        if memoize and all(v.__class__ in _SCALARS for _, _, v in rec):
            deps = tuple(rec)
            u.answers[key] = (deps, out)
            return list(out), deps, False
        return out, None, False

    def read_many(self, unit: int, requests: Sequence[tuple[str, int, int]], now_ms: int = 0, *,
                  shared: bool = False) -> list[list[int]]:
        """``[read(unit, t, a, n, now_ms) for t, a, n in requests]``: a master's read plan for
        one device (fast mode reads a whole plan per cycle). The same requests, answers and
        exceptions in the same order. ``shared=True``: a caller that never mutates the answers
        may get the memo's own lists (the same object while they hold), not a copy.

        With ``cache=True`` a plan whose registers all come from the devices' points is answered
        from one memo (nothing changes the device between the requests of a plan but the "any"
        kick, which the first request makes in both paths, so it is done first):

        * the answers of registers computed from points that do not move with the clock are
          reused while every device's ``read_token`` is the one seen when they were last checked
          (the model's change counter: unchanged proves those points unchanged), else while the
          points they looked up still have the same values (then the new token is kept);
        * registers that looked up a time-dependent point (the device's ``timed_points``: a
          validity countdown, an energy counter) are encoded again on every read and patched
          into a copy of the answers: one countdown no longer costs the whole plan.
        """
        u = self._units.get(unit)
        if u is None:
            raise NoSuchUnit(unit)
        if not self.cache:
            return [self._read_plain(u, t, a, n, now_ms) for t, a, n in requests]
        pm = u.plan_ids.get(id(requests))
        if pm is None or pm.key is not requests:
            key = requests if requests.__class__ is tuple else tuple(requests)
            pm = u.plans.get(key)
            if pm.__class__ is int:
                # a plan that cannot be memoized (a register read back from the image, a value
                # that is not a scalar, a device without points): it rests for this many reads
                if pm > 1:
                    u.plans[key] = pm - 1
                else:
                    del u.plans[key]
                return [self.read(unit, t, a, n, now_ms) for t, a, n in key]
            if pm is not None and key is requests:
                u.plan_ids[id(key)] = pm
        else:
            key = requests
        if pm is not None:
            # every request of a memoized plan passes the static checks: its first one kicks
            if self._kick == "any" and self._kicked.get(u.uid) != now_ms:
                self._heartbeat(u, now_ms)
                self._kicked[u.uid] = now_ms
            fns = u.token_fns
            tok = (fns[0]() if len(fns) == 1 else tuple(f() for f in fns)) if fns is not None else None
            if (tok is not None and tok == pm.tokens) or \
                    self._still_valid(u, pm.deps, self._request_cache(u, now_ms)):
                pm.tokens = tok
                if shared and not pm.timed:
                    out = pm.shared
                    if out is None:
                        out = pm.shared = list(map(list, pm.answers))
                    return out
                if shared:
                    # the memo's own lists for the requests without a timed register, a copy
                    # for each one patched below: a caller comparing with the last answers
                    # meets the same objects for the unchanged requests
                    sh = pm.shared
                    if sh is None:
                        sh = pm.shared = list(map(list, pm.answers))
                    out = sh.copy()
                else:
                    out = list(map(list, pm.answers))
                encoders = self._encoders
                for ri, pos, (reg, off, stop, whole), g in pm.timed:
                    words = None
                    if g is not None:       # a point register: its getter, without the mappings
                        # straight to the register's encoder (the build made it): a timed
                        # value moves every second, the last-encoding memo would only miss
                        enc = encoders.get(id(reg))
                        try:
                            words = enc(g()) if enc is not None else self._encode_memo(u, reg, g())
                        except Exception:
                            words = None    # the way below raises what the plain path raises
                    if words is None:
                        words = self._words_memo(u, reg, self._request_cache(u, now_ms))
                    row = out[ri]
                    if shared and row is sh[ri]:
                        row = out[ri] = row.copy()
                    row[pos:pos + stop - off] = words if whole else words[off:stop]
                return out
            if pm.points is not None:
                out = self._plan_regen(u, pm, tok)
                if out is not None:
                    return out
            elif pm.regs is not None:
                out = self._plan_update(u, pm, tok, now_ms)
                if out is not None:
                    return out
        return self._plan_build(u, key, now_ms)

    def _plan_update(self, u: _Unit, pm: _Plan, tok: Any, now_ms: int) -> list[list[int]] | None:
        """A memoized plan whose points changed (a write, a state change): the registers whose
        recorded points all still hold keep their words (their encoders are pure functions of
        those points, as for :meth:`_still_valid`); the others, and every time-dependent one,
        are encoded again with recording, and the memo is renewed as :meth:`_plan_build` would
        leave it. None when a register fails, reads back a local value or looks up a value that
        is not a scalar: the full build then answers (or raises) as before."""
        cache = self._request_cache(u, now_ms)
        lazies = [self._points(u, i, cache) for i in range(len(u.devices))]
        for lz in lazies:
            if lz.__class__ is not _LazyPoints:
                return None
        vals = [lz._vals for lz in lazies]
        getters = u.getters
        timed_points = u.timed
        out = list(map(list, pm.answers))
        deps: dict = {}
        timed: list = []
        regs: list = []
        try:
            for ent in pm.regs:
                ri, pos, seg, rec, is_timed, g = ent
                if not is_timed:
                    for idx, name, old in rec:
                        vs = vals[idx]
                        v = vs.get(name, _MISSING)
                        if v is _MISSING:
                            f = getters.get((idx, name))
                            v = vs[name] = (f if f is not None else self._getter(u, idx, name))()
                        if v.__class__ is not old.__class__ or v != old or \
                                (v.__class__ is float and v == 0.0 and
                                 _copysign(1.0, v) != _copysign(1.0, old)):
                            break
                    else:
                        regs.append(ent)
                        for idx, name, v in rec:
                            deps.setdefault((idx, name), v)
                        continue
                reg, off, stop, whole = seg
                new: list = []
                for lz in lazies:
                    lz.rec = new
                try:
                    if reg.writable and reg.fn is None and \
                            reg.point not in lazies[reg.slot - 1 if reg.slot else 0]:
                        return None     # reads back the image's local value
                    words = self._words_memo(u, reg, cache)
                finally:
                    for lz in lazies:
                        lz.rec = None
                for _, _, v in new:
                    if v.__class__ not in _SCALARS:
                        return None
                out[ri][pos:pos + stop - off] = words if whole else words[off:stop]
                rec = tuple(new)
                is_timed = _file_register(rec, timed_points, timed, deps, (ri, pos, seg, g))
                regs.append((ri, pos, seg, rec, is_timed, g))
        except Exception:
            return None
        pm.answers = tuple(tuple(w) for w in out)
        pm.shared = None
        pm.deps = tuple((i, name, v) for (i, name), v in deps.items())
        pm.timed = tuple(timed)
        pm.regs = tuple(regs)
        pm.tokens = tok
        return out

    def _plan_regen(self, u: _Unit, pm: _Plan, tok: Any) -> list[list[int]] | None:
        """A memoized plan whose points changed, when every register is bound directly to one
        point (a meter: every value moves every second): each register encoded again from its
        point's getter through the register's encoder, and the memo renewed,
        as :meth:`_plan_build` would leave it, without its per-register recording. None when a
        point fails or is not a scalar: the full build then answers (or raises) as before."""
        out = list(map(list, pm.answers))
        deps: dict = {}
        memo = self._encode_memo
        encoders = self._encoders
        try:
            for ri, pos, (reg, off, stop, whole), g, idx, name, timed in pm.points:
                v = g()
                if v.__class__ not in _SCALARS:
                    return None
                # straight to the register's encoder (the build made it): a meter's values move
                # every second, the last-encoding memo would mostly miss
                enc = encoders.get(id(reg))
                words = enc(v) if enc is not None else memo(u, reg, v)
                out[ri][pos:pos + stop - off] = words if whole else words[off:stop]
                if not timed:
                    deps.setdefault((idx, name), v)
        except Exception:
            return None
        pm.answers = tuple(tuple(w) for w in out)
        pm.shared = None
        pm.deps = tuple((i, name, v) for (i, name), v in deps.items())
        pm.tokens = tok
        return out

    def _plan_build(self, u: _Unit, key: tuple, now_ms: int) -> list[list[int]]:
        """Answer a plan request by request, recording per register the points it looked up;
        keep the plan's memo when every register is memoizable (see :meth:`read_many`)."""
        cache = self._request_cache(u, now_ms)
        lazies = [self._points(u, i, cache) for i in range(len(u.devices))]
        ok = all(lz.__class__ is _LazyPoints for lz in lazies)
        timed_points = u.timed
        deps: dict = {}
        timed: list = []
        points: list | None = []
        regs: list = []
        out: list = []
        for ri, (t, a, n) in enumerate(key):
            lk = (t, a, n)
            segs = u.layouts.get(lk, _MISSING)
            if segs is _MISSING:
                segs = self._new_layout(u, lk)
            if segs is None:            # fails for static reasons, or a clock / group register
                out.append(self._read_plain(u, t, a, n, now_ms))    # (kicks after its checks)
                ok = False
                continue
            if self._kick == "any" and self._kicked.get(u.uid) != now_ms:
                self._heartbeat(u, now_ms)      # as _read_cached: once per instant
                self._kicked[u.uid] = now_ms
                cache = self._request_cache(u, now_ms)      # (the heartbeat dropped the points)
                lazies = [self._points(u, i, cache) for i in range(len(u.devices))]
                ok = ok and all(lz.__class__ is _LazyPoints for lz in lazies)
            if lk not in u.pure:
                ok = False
            words_out: list[int] = []
            for seg in segs:
                if seg.__class__ is list:
                    words_out.extend(seg)
                    continue
                reg, off, stop, whole = seg
                rec: list = []
                recording = ok
                if recording:
                    for lz in lazies:
                        lz.rec = rec        # the points this register's encoder looks up
                try:
                    if ok and reg.writable and reg.fn is None and \
                            reg.point not in lazies[reg.slot - 1 if reg.slot else 0]:
                        ok = False      # reads back the image's local value
                    words = self._words_memo(u, reg, cache)
                finally:
                    if recording:
                        for lz in lazies:
                            lz.rec = None
                pos = len(words_out)
                words_out.extend(words if whole else words[off:stop])
                if not ok:
                    continue
                if any(v.__class__ not in _SCALARS for _, _, v in rec):
                    ok = False
                    continue
                g = None
                if reg.fn is None and not reg.writable and reg.point is not None:
                    idx = reg.slot - 1 if reg.slot else 0
                    g = self._getter(u, idx, reg.point)
                is_timed = _file_register(rec, timed_points, timed, deps, (ri, pos, seg, g))
                regs.append((ri, pos, seg, tuple(rec), is_timed, g))
                if points is not None:
                    if g is not None and reg.group_fn is None and reg.clock_fn is None:
                        points.append((ri, pos, seg, g, idx, reg.point, is_timed))
                    else:
                        points = None
            out.append(words_out)
        old = u.plans.get(key)
        if old.__class__ is _Plan:
            u.plan_ids.pop(id(old.key), None)
        if ok:
            # the devices' tokens now: nothing changed them since the kick (reads are pure)
            fns = u.token_fns
            tok = (fns[0]() if len(fns) == 1 else tuple(f() for f in fns)) if fns is not None else None
            pm = _Plan(key, tuple(tuple(w) for w in out),
                       tuple((i, name, v) for (i, name), v in deps.items()), tok, tuple(timed),
                       tuple(points) if points else None, tuple(regs))
            u.plans[key] = pm
            u.plan_ids[id(key)] = pm
        else:
            u.plans[key] = _PLAN_REST
        return out

    def _read_plain(self, u: _Unit, table: str, address: int, count: int, now_ms: int) -> list[int]:
        p = self.profile
        fc = READ_FC.get(table)
        if fc is None or fc not in p.function_codes:
            raise ModbusError(ILLEGAL_FUNCTION, f"read {table}")
        limit = p.max_read_bits if fc <= 2 else p.max_read
        if count < 1 or count > limit:
            raise ModbusError(p.limit_exception, f"quantity {count} (max {limit})")
        end = address + count
        if address < 0 or end > 0x10000:
            raise ModbusError(ILLEGAL_DATA_ADDRESS, f"{address}+{count}")
        if self._kick == "any":
            self._heartbeat(u, now_ms)
        m = u.maps.get(table, {})
        cache: dict = {"now": now_ms}
        if p.single_value_reads:
            ent = m.get(address)
            if ent is not None and ent[0].readable:
                reg, off = ent
                if off != 0 or count > reg.count:
                    raise ModbusError(p.boundary_exception,
                                      f"read {address}+{count} crosses a value boundary")
        out: list[int] = []
        a = address
        while a < end:
            ent = m.get(a)
            if ent is None or not ent[0].readable:
                out.append(self._filler(u, table, a))
                a += 1
                continue
            reg, off = ent
            stop = min(reg.end, end) - reg.address
            if (off or stop < reg.count) and p.partial_reads == "exception":
                raise ModbusError(ILLEGAL_DATA_ADDRESS, f"read inside {reg.name}")
            words = self._words(u, reg, cache)
            out.extend(words[off:stop])
            a = reg.address + stop
        return out

    def write(self, unit: int, table: str, address: int, values: Sequence[int],
              now_ms: int = 0, fc: int | None = None) -> None:
        """Apply a write request (words for holding, 0/1 for coils)."""
        if not self.cache:
            return self._write(unit, table, address, values, now_ms, fc)
        self.invalidate()
        try:
            return self._write(unit, table, address, values, now_ms, fc)
        finally:
            self.invalidate()

    def _write(self, unit: int, table: str, address: int, values: Sequence[int],
               now_ms: int, fc: int | None) -> None:
        p = self.profile
        u = self._unit(unit)
        values = list(values)
        n = len(values)
        if fc is None:
            if table == "holding":
                fc = 16 if (16 in p.function_codes or n != 1) else 6
            else:
                fc = 15 if (15 in p.function_codes or n != 1) else 5
        if table not in ("holding", "coil") or fc not in p.function_codes or \
                (table == "holding") != (fc in (6, 16)):
            raise ModbusError(ILLEGAL_FUNCTION, f"write {table} fc {fc}")
        if fc in (5, 6) and n != 1:
            raise ValueError("FC05/FC06 carry exactly one value")
        limit = p.max_write if table == "holding" else p.max_read_bits
        if n < 1 or n > limit:
            raise ModbusError(p.limit_exception, f"write quantity {n} (max {limit})")
        end = address + n
        if address < 0 or end > 0x10000:
            raise ModbusError(ILLEGAL_DATA_ADDRESS, f"{address}+{n}")
        if self._kick == "any":
            self._heartbeat(u, now_ms)
        m = u.maps.get(table, {})
        cache: dict = {"now": now_ms}
        plan: list[tuple[Register, Any]] = []
        a = address
        while a < end:
            ent = m.get(a)
            if ent is None:
                raise ModbusError(ILLEGAL_DATA_ADDRESS, f"write {table} {a}")
            reg, off = ent
            if not reg.writable:
                raise ModbusError(p.readonly_exception, f"{reg.name} is read-only")
            stop = min(reg.end, end) - reg.address
            chunk = values[a - address: a - address + stop - off]
            if off or stop < reg.count:
                if p.atomic_writes:
                    raise ModbusError(p.partial_write_exception,
                                      f"partial write of {reg.name} ({reg.count} registers)")
                cur = self._current_words(u, reg, cache)
                cur[off:stop] = chunk
                chunk = cur
            plan.append((reg, self._decode_checked(reg, chunk)))
            a = reg.address + stop
        if p.one_value_per_write and len(plan) > 1:
            raise ModbusError(p.invalid_value_exception, "one parameter per message")
        kicked: list = []
        for reg, (value, converted) in plan:
            target = reg.target
            u.local[(reg.table, reg.address)] = value
            devs = u.devices if reg.slot == 0 else (u.devices[reg.slot - 1],)
            if self._kick == "write" or (reg.heartbeat and self._kick == "register"):
                kicked.extend(d for d in devs if d not in kicked)
            if target is not None:
                dev = devs[0]
                try:
                    dev.write_point(target, converted, now_ms)
                except ValueError as exc:
                    raise ModbusError(p.invalid_value_exception, f"{reg.name}: {exc}") from exc
                except Exception as exc:
                    raise ModbusError(DEVICE_FAILURE, f"{reg.name}: {exc!r}") from exc
        if kicked:
            self._heartbeat(u, now_ms, kicked)

    def _current_words(self, u: _Unit, reg: Register, cache: dict) -> list[int]:
        if reg.readable:
            return self._words(u, reg, cache)
        value = u.local.get((reg.table, reg.address), reg.const)
        if value is None:
            return [0] * reg.count
        return encode(value, reg.dtype, reg.word_order or self.profile.word_order, reg.scale,
                      reg.count, saturate=True)

    def _decode_checked(self, reg: Register, words: Sequence[int]) -> tuple[Any, Any]:
        p = self.profile
        try:
            if self.cache:      # the register's codec, compiled once (codec.decoder: same values)
                dec = self._decoders.get(id(reg))
                if dec is None:
                    dec = self._decoders[id(reg)] = decoder(reg.dtype, reg.word_order or p.word_order,
                                                            reg.scale)
                value = dec(words)
            else:
                value = decode(words, reg.dtype, reg.word_order or p.word_order, reg.scale)
        except CodecError as exc:
            raise ModbusError(p.invalid_value_exception, str(exc)) from exc
        if not check_value(reg, value):
            raise ModbusError(p.invalid_value_exception, f"{reg.name} = {value!r} not valid")
        converted = value
        if reg.write_fn is not None:
            try:
                converted = reg.write_fn(value)
            except (ValueError, KeyError, TypeError) as exc:
                raise ModbusError(p.invalid_value_exception, f"{reg.name}: {exc}") from exc
        return value, converted

    # --- conveniences (tests, reports, fast mode) ----------------------------------------
    def request(self, unit: int, fc: int, address: int, arg: Any, now_ms: int = 0) -> Any:
        """Dispatch by function code: FC01-04 ``arg`` = count, FC05/06 a value, FC15/16 values."""
        tables = {1: "coil", 2: "discrete", 3: "holding", 4: "input"}
        if fc in tables:
            return self.read(unit, tables[fc], address, int(arg), now_ms)
        if fc in (5, 6):
            return self.write(unit, "coil" if fc == 5 else "holding", address, [arg], now_ms, fc)
        if fc in (15, 16):
            return self.write(unit, "coil" if fc == 15 else "holding", address, arg, now_ms, fc)
        raise ModbusError(ILLEGAL_FUNCTION, f"fc {fc}")

    def get(self, unit: int, address: int, table: str = "holding", now_ms: int = 0) -> Any:
        """Decoded value of the register at ``address`` (as a master reading it whole would)."""
        u = self._unit(unit)
        reg, off = u.maps[table][address]
        words = self._words(u, reg, {"now": now_ms})
        return decode(words, reg.dtype, reg.word_order or self.profile.word_order, reg.scale)

    def snapshot(self, unit: int) -> dict[str, Any]:
        """name -> decoded value of every readable register of ``unit``."""
        u = self._unit(unit)
        cache: dict = {"now": 0}
        out: dict[str, Any] = {}
        for table, m in u.maps.items():
            for a, (reg, off) in m.items():
                if off or not reg.readable or (self.profile.mirror_input and table == "input"):
                    continue
                words = self._words(u, reg, cache)
                key = reg.name if reg.slot == 0 else f"{reg.name}[{reg.slot}]"
                out[key] = decode(words, reg.dtype, reg.word_order or self.profile.word_order,
                                  reg.scale)
        return out
