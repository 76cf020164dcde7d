"""The Python face of the core: ``Allocator(site).step(now_ms, meters=..., chargers=...)``.

Two backends share one contract: ``"c"`` (the C library through cffi, the default) and
``"reference"`` (:mod:`dlbrig.core.reference`, the executable specification). Readings are converted
from amps to integer milliamps once; NaN, infinite or out-of-range readings are rejected (treated as
"no new reading", so they age toward the failsafe ladder) and listed in ``Result.rejected``.
"""
from __future__ import annotations

import math
import struct
from array import array
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from . import model
from .reference import ReferenceCore
from .site import PHASE_NAMES, Site

LANE_NAMES = PHASE_NAMES + ("power",)


@dataclass
class ChargerResult:
    current_a: float          # set-point (0.0 = paused)
    phases: int
    reason: str               # e.g. "circuit garage L2", "charger max", "rotation"
    reason_code: int
    limit_circuit: str | None
    limit_phase: str | None   # "L1" | "L2" | "L3" | "power" | None
    setpoint_ma: int
    flags: int

    @property
    def admitted(self) -> bool:
        return bool(self.flags & model.CHARGER_ADMITTED)

    @property
    def lost(self) -> bool:
        return bool(self.flags & model.CHARGER_LOST)


@dataclass
class CircuitResult:
    allocated_a: list
    headroom_a: list
    base_a: list
    power_headroom_a: float | None
    status: str               # "ok" | "overloaded" | "meter_stale" | "meter_recovering"
    flags: set


@dataclass
class Result:
    now_ms: int
    chargers: dict
    circuits: dict
    rejected: list = field(default_factory=list)   # (device, why) of readings not trusted this step


# numpy record types laid out exactly like dlb.h's I/O structs (checked against ffi.sizeof at run time)
METER_INPUT_DTYPE = np.dtype([("fresh", "<i4"), ("current_ma", "<i4", (3,))])
CHARGER_INPUT_DTYPE = np.dtype([("fresh", "<i4"), ("state", "<i4"), ("current_ma", "<i4", (3,)),
                                ("session_update", "<i4"), ("departure_in_ms", "<i4"),
                                ("energy_need_wh", "<i4")])
CHARGER_OUTPUT_DTYPE = np.dtype([("setpoint_ma", "<i4"), ("phases", "<i4"), ("reason", "<i4"),
                                 ("limit_circuit", "<i4"), ("limit_lane", "<i4"), ("flags", "<u4")])
CIRCUIT_OUTPUT_DTYPE = np.dtype([("allocated_ma", "<i4", (3,)), ("headroom_ma", "<i4", (3,)),
                                 ("base_ma", "<i4", (3,)), ("power_headroom_ma", "<i4"), ("status", "<u4")])


class CoreArrays(NamedTuple):
    """The core's per-step I/O as numpy record arrays (integer units of dlb.h: mA, ms, Wh).

    For the C backend they are views of the cffi-owned arrays that ``dlb_step`` reads and writes: fill
    ``meters`` / ``chargers`` in place (vectorised, e.g. ``arrays.chargers["current_ma"][:] = ...``),
    call :meth:`Allocator.step_arrays`, read ``charger_out`` / ``circuit_out``. No copy, no per-charger
    Python loop. ``fresh`` is 1 for a reading taken at this step's time; set it to 0 for "no new reading".
    """
    meters: np.ndarray        # METER_INPUT_DTYPE, one per circuit (ignored for circuits without a meter)
    chargers: np.ndarray      # CHARGER_INPUT_DTYPE, one per charger
    charger_out: np.ndarray   # CHARGER_OUTPUT_DTYPE, one per charger
    circuit_out: np.ndarray   # CIRCUIT_OUTPUT_DTYPE, one per circuit


def _circuit_result(c, a0, a1, a2, h0, h1, h2, b0, b1, b2, pw, st) -> CircuitResult:
    """A circuit's result from its eleven output integers (step_flat's order)."""
    if st < 0:                          # uint32 read through a signed view
        st += 1 << 32
    status, flags = _status_name(st)
    ph = None if c.power_limit_w == 0 else pw / 1000
    return CircuitResult([a0 / 1000, a1 / 1000, a2 / 1000], [h0 / 1000, h1 / 1000, h2 / 1000],
                         [b0 / 1000, b1 / 1000, b2 / 1000], ph, status, flags)


def _status_name(bits: int) -> tuple:
    flags = set()
    for bit, name in ((model.CIRCUIT_OVERLOADED, "overloaded"), (model.CIRCUIT_BASE_OVERLOAD, "base_overload"),
                      (model.CIRCUIT_METER_STALE, "meter_stale"),
                      (model.CIRCUIT_METER_RECOVERING, "meter_recovering"),
                      (model.CIRCUIT_LIMITING, "limiting")):
        if bits & bit:
            flags.add(name)
    if bits & (model.CIRCUIT_OVERLOADED | model.CIRCUIT_BASE_OVERLOAD):
        status = "overloaded"
    elif bits & model.CIRCUIT_METER_STALE:
        status = "meter_stale"
    elif bits & model.CIRCUIT_METER_RECOVERING:
        status = "meter_recovering"
    else:
        status = "ok"
    return status, flags


def _to_ma(values, lo, hi):
    """Three finite amps within [lo, hi] -> mA, or None if the reading cannot be trusted."""
    # Fast path for the common reading (a list or tuple of three floats, in range): the same checks
    # as _to_ma_checked, fused (for a float the range test before scaling also rejects NaN and
    # infinities, and round() of a float is already an int). Anything else takes the full path.
    tv = type(values)
    if (tv is list or tv is tuple) and len(values) == 3:
        a, b, c = values
        if type(a) is float and type(b) is float and type(c) is float:
            flo, fhi = lo / 1000 - 1, hi / 1000 + 1
            if flo <= a <= fhi and flo <= b <= fhi and flo <= c <= fhi:
                a, b, c = round(a * 1000), round(b * 1000), round(c * 1000)
                if lo <= a <= hi and lo <= b <= hi and lo <= c <= hi:
                    return [a, b, c]
                return None
    return _to_ma_checked(values, lo, hi)


def _to_ma_checked(values, lo, hi):
    """_to_ma for any input, value by value (the definition the fast path must agree with)."""
    if not isinstance(values, (list, tuple)) or len(values) != 3:
        return None
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return None
        if not lo / 1000 - 1 <= v <= hi / 1000 + 1:   # out of range before scaling (no overflow)
            return None
        ma = int(round(v * 1000))
        if not lo <= ma <= hi:
            return None
        out.append(ma)
    return out


class _CBackend:
    """State, inputs and outputs live in cffi-owned arrays; one dlb_step call per cycle."""

    def __init__(self, site: Site):
        from ._dlb import ffi, lib
        self.ffi, self.lib = ffi, lib
        nc, nk = len(site.circuits), len(site.chargers)
        self.nc, self.nk = nc, nk
        p = ffi.new("dlb_params *")
        for name in model.Params.__dataclass_fields__:
            setattr(p, name, getattr(site.params, name))
        circ = ffi.new("dlb_circuit[]", nc)
        for i, c in enumerate(site.circuits):
            circ[i].parent = c.parent
            circ[i].limit_ma = c.limit_ma
            circ[i].margin_ma = c.margin_ma
            circ[i].power_limit_w = c.power_limit_w
            circ[i].fallback_base_ma = c.fallback_base_ma
            circ[i].unbalance_limit_ma = c.unbalance_limit_ma
            circ[i].has_meter = c.has_meter
        chg = ffi.new("dlb_charger[]", max(nk, 1))
        for i, k in enumerate(site.chargers):
            for name in model.Charger.__dataclass_fields__:
                setattr(chg[i], name, getattr(k, name))
        size = lib.dlb_memory_size(nc, nk)
        if size == 0:
            raise ValueError("site too large for the core (see DLB_MAX_CIRCUITS / DLB_MAX_CHARGERS)")
        self.mem = ffi.new("uint64_t[]", (size + 7) // 8)   # 8-byte aligned
        site_pp = ffi.new("dlb_site **")
        rc = lib.dlb_init(self.mem, size, p, circ, nc, chg, nk, site_pp)
        if rc != 0:
            raise _config_error(ffi, lib, self.mem, rc)
        self.site = site_pp[0]
        self.meters_in = ffi.new("dlb_meter_input[]", nc)
        self.chargers_in = ffi.new("dlb_charger_input[]", max(nk, 1))
        self.chargers_out = ffi.new("dlb_charger_output[]", max(nk, 1))
        self.circuits_out = ffi.new("dlb_circuit_output[]", nc)
        self.step_c = lib.dlb_step
        for dtype, ctype in ((METER_INPUT_DTYPE, "dlb_meter_input"), (CHARGER_INPUT_DTYPE, "dlb_charger_input"),
                             (CHARGER_OUTPUT_DTYPE, "dlb_charger_output"),
                             (CIRCUIT_OUTPUT_DTYPE, "dlb_circuit_output")):
            assert dtype.itemsize == ffi.sizeof(ctype), f"{ctype}: numpy layout differs from dlb.h"
        # flat int32 views of the same memory for the dict face (Allocator.step): one slice
        # assignment fills every input and one tolist() reads every output, instead of a cffi
        # attribute access per field (every struct is int32 fields only, no padding: sizes checked above)
        self._mi_flat = memoryview(ffi.buffer(self.meters_in)).cast("B").cast("i")
        self._ci_flat = memoryview(ffi.buffer(self.chargers_in)).cast("B").cast("i")
        self._co_flat = memoryview(ffi.buffer(self.chargers_out)).cast("B").cast("i")[:6 * nk]
        self._ro_flat = memoryview(ffi.buffer(self.circuits_out)).cast("B").cast("i")
        self._pack_m = struct.Struct(f"={4 * nc}i").pack     # step_flat's whole inputs, as bytes
        self._pack_k = struct.Struct(f"={8 * nk}i").pack
        self._mi_bytes = self._mi_flat.cast("B")
        self._ci_bytes = self._ci_flat.cast("B")
        # zero-copy views; an empty site still has one (unused) charger slot in C: views show nk rows
        self.arrays = CoreArrays(
            np.frombuffer(ffi.buffer(self.meters_in), dtype=METER_INPUT_DTYPE)[:nc],
            np.frombuffer(ffi.buffer(self.chargers_in), dtype=CHARGER_INPUT_DTYPE)[:nk],
            np.frombuffer(ffi.buffer(self.chargers_out), dtype=CHARGER_OUTPUT_DTYPE)[:nk],
            np.frombuffer(ffi.buffer(self.circuits_out), dtype=CIRCUIT_OUTPUT_DTYPE)[:nc])

    def step_raw(self, now_ms, meters, chargers):
        mi, ci = self.meters_in, self.chargers_in
        for c in range(self.nc):
            m = meters[c]
            mi[c].fresh = m.fresh
            mi[c].current_ma = m.current_ma
        for k in range(self.nk):
            r = chargers[k]
            d = ci[k]
            d.fresh, d.state, d.current_ma = r.fresh, r.state, r.current_ma
            d.session_update, d.departure_in_ms, d.energy_need_wh = \
                r.session_update, r.departure_in_ms, r.energy_need_wh
        self._call(now_ms)
        return self.outputs()

    def step_arrays(self, now_ms):
        """One dlb_step over the arrays in place: a single call into C, nothing else."""
        self._call(now_ms)

    def step_flat(self, now_ms, meters_flat, chargers_flat):
        """The dict face's step: inputs as flat int lists in dlb.h field order (4 per circuit:
        fresh, current_ma[3]; 8 per charger: fresh, state, current_ma[3], session_update,
        departure_in_ms, energy_need_wh); returns the outputs flat (6 per charger, 11 per circuit;
        the unsigned flags / status as stored, i.e. negative above 2**31 - 1)."""
        try:
            # struct packs an int list in one call (array("i", list) parses each item through
            # a format string: several times the cost); all packed before anything is written
            m = self._pack_m(*meters_flat)
            k = self._pack_k(*chargers_flat) if chargers_flat else None
            self._mi_bytes[:] = m
            if k is not None:
                self._ci_bytes[:len(k)] = k
        except struct.error:    # (a length or value the arrays cannot take: their own error)
            self._mi_flat[:] = array("i", meters_flat)
            if chargers_flat:       # (an empty site has one unused charger slot in C)
                self._ci_flat[:len(chargers_flat)] = array("i", chargers_flat)
        self._call(now_ms)
        return self._co_flat.tolist(), self._ro_flat.tolist()

    def _call(self, now_ms):
        rc = self.step_c(self.site, now_ms, self.meters_in, self.chargers_in, self.chargers_out,
                         self.circuits_out)
        if rc != 0:
            raise ValueError(f"dlb_step failed ({rc}): now_ms earlier than the previous step, or negative")

    def outputs(self):
        outs = []
        for k in range(self.nk):
            o = self.chargers_out[k]
            outs.append(model.ChargerOutput(o.setpoint_ma, o.phases, o.reason, o.limit_circuit,
                                            o.limit_lane, o.flags))
        couts = []
        for c in range(self.nc):
            o = self.circuits_out[c]
            couts.append(model.CircuitOutput(list(o.allocated_ma), list(o.headroom_ma), list(o.base_ma),
                                             o.power_headroom_ma, o.status))
        return outs, couts

    def session_energy_wh(self, k):
        return self.lib.dlb_session_energy_wh(self.site, k)


def _config_error(ffi, lib, mem, rc):
    if rc != -3:
        return ValueError(f"dlb_init failed ({rc})")
    scope, index, fld, problem = (ffi.new("char **"), ffi.new("int32_t *"), ffi.new("char **"),
                                  ffi.new("char **"))
    lib.dlb_config_error(mem, scope, index, fld, problem)
    s, f = ffi.string(scope[0]).decode(), ffi.string(fld[0]).decode()
    name = f"{s}[{index[0]}]" if index[0] >= 0 else s
    if f:
        name += "." + f
    return model.ConfigError(name, ffi.string(problem[0]).decode())


class _ReferenceBackend:
    def __init__(self, site: Site):
        self.core = ReferenceCore(site.params, site.circuits, site.chargers)
        nc, nk = len(site.circuits), len(site.chargers)
        self.arrays = CoreArrays(np.zeros(nc, METER_INPUT_DTYPE), np.zeros(nk, CHARGER_INPUT_DTYPE),
                                 np.zeros(nk, CHARGER_OUTPUT_DTYPE), np.zeros(nc, CIRCUIT_OUTPUT_DTYPE))

    def step_arrays(self, now_ms):
        """The same contract as the C backend's, through the specification (slow, for tests)."""
        a = self.arrays
        meters = [model.MeterInput(int(r["fresh"]), [int(v) for v in r["current_ma"]]) for r in a.meters]
        chargers = [model.ChargerInput(int(r["fresh"]), int(r["state"]), [int(v) for v in r["current_ma"]],
                                       int(r["session_update"]), int(r["departure_in_ms"]),
                                       int(r["energy_need_wh"])) for r in a.chargers]
        outs, couts = self.core.step(now_ms, meters, chargers)
        for i, o in enumerate(outs):
            a.charger_out[i] = (o.setpoint_ma, o.phases, o.reason, o.limit_circuit, o.limit_lane, o.flags)
        for i, o in enumerate(couts):
            a.circuit_out[i] = (o.allocated_ma, o.headroom_ma, o.base_ma, o.power_headroom_ma, o.status)

    def step_raw(self, now_ms, meters, chargers):
        return self.core.step(now_ms, meters, chargers)

    def step_flat(self, now_ms, meters_flat, chargers_flat):
        """The C backend's step_flat contract, through the specification."""
        m = meters_flat
        meters = [model.MeterInput(m[i], m[i + 1:i + 4]) for i in range(0, len(m), 4)]
        k = chargers_flat
        chargers = [model.ChargerInput(k[i], k[i + 1], k[i + 2:i + 5], k[i + 5], k[i + 6], k[i + 7])
                    for i in range(0, len(k), 8)]
        outs, couts = self.core.step(now_ms, meters, chargers)
        co, ro = [], []
        for o in outs:
            co += (o.setpoint_ma, o.phases, o.reason, o.limit_circuit, o.limit_lane, o.flags)
        for o in couts:
            ro += (*o.allocated_ma, *o.headroom_ma, *o.base_ma, o.power_headroom_ma, o.status)
        return co, ro

    def session_energy_wh(self, k):
        return self.core.session_energy_wh(k)


def _session_flat(name, dep, need, rejected) -> tuple[int, int, int]:
    """A charger reading's session data as the core's (session_update, departure_in_ms,
    energy_need_wh); untrusted data is recorded in ``rejected`` and sent as "no update"."""
    # (an in-range float is finite: the common case without _session_value_ok's calls)
    if (dep is None or (dep.__class__ is float and 0.0 <= dep < 2e6) or _session_value_ok(dep)) \
            and (need is None or (need.__class__ is float and 0.0 <= need < 2e6) or _session_value_ok(need)):
        return (1, int(round(dep * 1000)) if dep is not None else -1,
                int(round(need * 1000)) if need is not None else -1)
    rejected.append((name, f"session data not trusted: {dep!r}, {need!r}"))
    return 0, -1, -1


class Allocator:
    """One site's allocator. ``backend="c"`` (default) or ``"reference"``."""

    def __init__(self, site, backend: str = "c"):
        if isinstance(site, dict):
            site = Site.from_dict(site)
        self.site = site
        if backend == "c":
            self._backend = _CBackend(site)
        elif backend == "reference":
            self._backend = _ReferenceBackend(site)
        else:
            raise ValueError(f"backend: unknown backend {backend!r} (c or reference)")
        self.backend = backend
        self._circuit_index = {n: i for i, n in enumerate(site.circuit_names)}
        self._charger_index = {n: i for i, n in enumerate(site.charger_names)}
        self._has_meter = [bool(c.has_meter) for c in site.circuits]
        # step()'s inputs before the readings: model.MeterInput() / model.ChargerInput() flattened
        self._meter_defaults = [v for _ in site.circuits for v in (0, *model.MeterInput().current_ma)]
        d = model.ChargerInput()
        self._charger_defaults = [d.fresh, d.state, *d.current_ma, d.session_update, d.departure_in_ms,
                                  d.energy_need_wh] * len(site.chargers)
        self._reason_cache = {}     # (reason, limit_circuit, limit_lane) -> _reason()
        self._shared_last = None    # step_shared: (outputs, circuit outputs, their result objects)
        # per charger: ([amps, amps, amps], their mA) of its last plain-float reading in range,
        # and (mA, state, the first six input fields) of its last reading with session data
        self._last_ma = [None] * len(site.chargers)
        self._heads = [None] * len(site.chargers)

    def step_raw(self, now_ms: int, meters: list, chargers: list):
        """Integer-level step: lists of model.MeterInput / model.ChargerInput (one per circuit / charger)."""
        return self._backend.step_raw(now_ms, meters, chargers)

    @property
    def arrays(self) -> CoreArrays:
        """The per-step I/O as numpy record arrays (for the C backend: views of the cffi-owned memory)."""
        return self._backend.arrays

    def step_arrays(self, now_ms: int) -> CoreArrays:
        """The fast path: one control cycle over :attr:`arrays`, filled in place by the caller.

        For the C backend this is exactly one ``dlb_step`` call (inputs and outputs are not copied or
        converted). Readings are taken as given (integers in mA; the core itself rejects out-of-range
        values as missing data). Returns :attr:`arrays` for convenience.
        """
        self._backend.step_arrays(now_ms)
        return self._backend.arrays

    def session_energy_wh(self, charger: str) -> int:
        return self._backend.session_energy_wh(self._charger_index[charger])

    def step_shared(self, now_ms: int, meters: dict | None = None, chargers: dict | None = None) -> Result:
        """:meth:`step` for a caller that never mutates the result (the site controller): a
        charger's or circuit's result object is the previous step's own while its outputs (the
        core's integers) are the same, not a new one per step. The values are those of step()."""
        return self.step(now_ms, meters, chargers, _shared=True)

    def step(self, now_ms: int, meters: dict | None = None, chargers: dict | None = None,
             _shared: bool = False) -> Result:
        # Inputs go to the backend as flat int lists in dlb.h field order (see _CBackend.step_flat):
        # a circuit or charger without a (trusted) reading keeps its "no new reading" defaults.
        rejected = []
        m_flat = self._meter_defaults.copy()
        if meters:
            circuit_index, has_meter = self._circuit_index, self._has_meter
            for name, values in meters.items():
                c = circuit_index.get(name)
                if c is None or not has_meter[c]:
                    raise ValueError(f"meters: {name!r} is not a metered circuit of this site")
                ma = _to_ma(values, -model.MAX_CURRENT_MA, model.MAX_CURRENT_MA)
                if ma is None:
                    rejected.append((name, f"meter reading not trusted: {values!r}"))
                    continue
                i = 4 * c
                m_flat[i:i + 4] = (1, *ma)
        k_flat = self._charger_defaults.copy()
        if chargers:
            charger_index, states = self._charger_index, model.STATES
            last_ma, heads = self._last_ma, self._heads
            hi = model.MAX_CURRENT_MA
            fhi = hi / 1000 + 1         # _to_ma's range check before scaling (lo = 0: -1.0)
            for name, reading in chargers.items():
                k = charger_index.get(name)
                if k is None:
                    raise ValueError(f"chargers: {name!r} is not a charger of this site")
                if reading.__class__ is dict:
                    # the common reading (a plain dict, three in-range float amps), decided as
                    # below without a call per charger: _to_ma's fast path inline; anything it
                    # does not take goes through _to_ma itself
                    # (reading.get(...) calls the method without making a bound one per charger)
                    state = states.get(reading.get("state"))
                    cur = reading.get("current_a", _ZERO3)
                    ma = None
                    if cur.__class__ is list and len(cur) == 3:
                        a, b, c = cur
                        if a.__class__ is float and b.__class__ is float and c.__class__ is float:
                            last = last_ma[k]
                            if last is not None and last[0] == cur:
                                # the same amps as last step (a copy of them: floats compared
                                # in C): the same mA (equal floats round alike; NaN never
                                # equals), without the range checks and rounding
                                ma = last[1]
                                cur = None
                            elif -1.0 <= a <= fhi and -1.0 <= b <= fhi and -1.0 <= c <= fhi:
                                ra, rb, rc = round(a * 1000), round(b * 1000), round(c * 1000)
                                if 0 <= ra <= hi and 0 <= rb <= hi and 0 <= rc <= hi:
                                    ma = (ra, rb, rc)
                                    last_ma[k] = ([a, b, c], ma)
                                cur = None      # decided: in range, or not trusted
                    if cur is not None:
                        ma = _to_ma(cur, 0, hi)
                    if state is None or ma is None:
                        rejected.append((name, f"charger reading not trusted: {reading!r}"))
                        continue
                    dep = reading.get("departure_s", _ABSENT)
                    need = reading.get("energy_need_kwh", _ABSENT)
                    i = 8 * k
                    if dep is _ABSENT and need is _ABSENT:
                        k_flat[i:i + 8] = (1, state, *ma, 0, -1, -1)
                        continue
                    if dep.__class__ is float and need.__class__ is float and \
                            0.0 <= dep < 2e6 and 0.0 <= need < 2e6:
                        # _session_flat's common case (both given, in range) without the call;
                        # the six fields before the session data kept while state and mA hold
                        h = heads[k]
                        if h is None or h[0] is not ma or h[1] != state:
                            h = heads[k] = (ma, state, (1, state, *ma, 1))
                        k_flat[i:i + 6] = h[2]
                        k_flat[i + 6] = round(dep * 1000)
                        k_flat[i + 7] = round(need * 1000)
                        continue
                    if dep is _ABSENT:
                        dep = None
                    if need is _ABSENT:
                        need = None
                    k_flat[i:i + 8] = (1, state, *ma, *_session_flat(name, dep, need, rejected))
                    continue
                if isinstance(reading, dict):
                    state = states.get(reading.get("state"))
                    ma = _to_ma(reading.get("current_a", _ZERO3), 0, hi)
                else:
                    state = ma = None
                if state is None or ma is None:
                    rejected.append((name, f"charger reading not trusted: {reading!r}"))
                    continue
                su, dep_ms, need_wh = 0, -1, -1
                if "departure_s" in reading or "energy_need_kwh" in reading:
                    su, dep_ms, need_wh = _session_flat(name, reading.get("departure_s"),
                                                        reading.get("energy_need_kwh"), rejected)
                i = 8 * k
                k_flat[i:i + 8] = (1, state, *ma, su, dep_ms, need_wh)
        co, ro = self._backend.step_flat(now_ms, m_flat, k_flat)
        if _shared:
            return self._result_shared(now_ms, co, ro, rejected)
        return self._result_flat(now_ms, co, ro, rejected)

    def _result_shared(self, now_ms, co, ro, rejected) -> Result:
        """_result_flat, reusing the last shared result's object of each charger (circuit) whose
        six (eleven) output integers are the ones it was made from: its fields are a function of
        those integers and the site only."""
        last = self._shared_last
        if last is None:
            res = self._result_flat(now_ms, co, ro, rejected)
            self._shared_last = (co, ro, res.chargers, res.circuits)
            return res
        lco, lro, lch, lci = last
        if co == lco:
            cres = lch.copy()
        else:
            cres = {}
            reasons = self._reason_cache
            it = iter(co)
            j = 0
            for name, sp, ph, rc, lc, lane, fl in zip(self.site.charger_names, it, it, it, it, it, it):
                if co[j:j + 6] == lco[j:j + 6]:
                    cres[name] = lch[name]
                else:       # as _result_flat
                    why = reasons.get((rc, lc, lane))
                    if why is None:
                        why = reasons[(rc, lc, lane)] = _reason(self.site, rc, lc, lane)
                    if fl < 0:
                        fl += 1 << 32
                    cres[name] = ChargerResult(sp / 1000, ph, why[0], rc, why[1], why[2], sp, fl)
                j += 6
        if ro == lro:
            circ = lci.copy()
        else:
            # circuit by circuit as the chargers above: the metered root moves every step, the
            # circuits below it often hold
            circ = {}
            j = 0
            for name, c in zip(self.site.circuit_names, self.site.circuits):
                if ro[j:j + 11] == lro[j:j + 11]:
                    circ[name] = lci[name]
                else:
                    circ[name] = _circuit_result(c, *ro[j:j + 11])
                j += 11
        self._shared_last = (co, ro, cres, circ)
        return Result(now_ms, cres, circ, rejected)

    def _result_flat(self, now_ms, co, ro, rejected) -> Result:
        """Result from step_flat's outputs; the same objects as _result gives for the same outputs."""
        cres = {}
        reasons = self._reason_cache
        it = iter(co)
        for name, sp, ph, rc, lci, lane, fl in zip(self.site.charger_names, it, it, it, it, it, it):
            why = reasons.get((rc, lci, lane))
            if why is None:
                why = reasons[(rc, lci, lane)] = _reason(self.site, rc, lci, lane)
            if fl < 0:                          # uint32 read through a signed view
                fl += 1 << 32
            cres[name] = ChargerResult(sp / 1000, ph, why[0], rc, why[1], why[2], sp, fl)
        circ = {}
        it = iter(ro)
        for name, c, *out in zip(self.site.circuit_names, self.site.circuits, it, it, it, it, it, it, it, it, it,
                                 it, it):
            circ[name] = _circuit_result(c, *out)
        return Result(now_ms, cres, circ, rejected)

    def _result(self, now_ms, outs, couts, rejected) -> Result:
        site = self.site
        cres = {}
        for name, o in zip(site.charger_names, outs):
            lc = site.circuit_names[o.limit_circuit] if o.limit_circuit >= 0 else None
            lp = LANE_NAMES[o.limit_lane] if o.limit_lane >= 0 else None
            reason = model.REASON_NAMES[o.reason]
            if lc is not None:
                reason = f"{reason} {lc} {lp}"
            cres[name] = ChargerResult(o.setpoint_ma / 1000, o.phases, reason, o.reason, lc, lp,
                                       o.setpoint_ma, o.flags)
        circ = {}
        for name, c, o in zip(site.circuit_names, site.circuits, couts):
            status, flags = _status_name(o.status)
            ph = None if c.power_limit_w == 0 else o.power_headroom_ma / 1000
            circ[name] = CircuitResult([v / 1000 for v in o.allocated_ma], [v / 1000 for v in o.headroom_ma],
                                       [v / 1000 for v in o.base_ma], ph, status, flags)
        return Result(now_ms, cres, circ, rejected)


_ZERO3 = (0, 0, 0)
_ABSENT = object()


def _session_value_ok(v) -> bool:
    """A departure (s) or energy need (kWh) the core can take: None, or finite within [0, 2e6)."""
    return v is None or (isinstance(v, (int, float)) and math.isfinite(v) and 0 <= v < 2e6)


def _reason(site, reason, limit_circuit, limit_lane) -> tuple:
    """(reason text, limiting circuit name or None, lane name or None), as _result spells them."""
    lc = site.circuit_names[limit_circuit] if limit_circuit >= 0 else None
    lp = LANE_NAMES[limit_lane] if limit_lane >= 0 else None
    text = model.REASON_NAMES[reason]
    if lc is not None:
        text = f"{text} {lc} {lp}"
    return text, lc, lp
