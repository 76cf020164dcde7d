"""Energy meter model: a measuring instrument over the site's ground truth.

The rig feeds the *true* per-phase currents (A, signed: import positive, export negative) and
optionally voltages at each ``advance(now_ms, true_currents_a, voltages_v=None)``.  Between two
calls the truth is held (zero-order hold: the values given at ``t`` are valid from ``t`` until the
next call).  The meter

* integrates true power into import/export energy (per phase and total) continuously;
* refreshes its displayed values on an absolute grid of ``update_interval_ms`` (sample at the last
  grid point <= now), with Gaussian noise ``noise_a`` seeded per sample index (so the readings do
  not depend on how often ``advance`` is called) and rounded to ``resolution_a`` / ``resolution_v``;
* can be faulted at runtime: ``meter.fault = "frozen" | "nan" | "garbage" | "zero" | None``.

Electrical conventions: P = V*I*pf per phase (``power_factor`` = cos phi, lagging), VA = V*|I|,
VAr = +sqrt(VA^2 - P^2) (inductive), PF = P/VA (negative when exporting).  Totals are sums.  Total
import/export energy integrates the *net* total power (a "saldierend" meter, like the SDM630 total
registers); the per-phase counters integrate each phase's own power.  The neutral current is the
magnitude of the phasor sum (phases 120 degrees apart).  With ``system_type`` 1 (1P2W) L2 and L3
read 0, as a real meter returns 0 for quantities its wiring does not have.
"""
from __future__ import annotations

import cmath
import math
import random
from dataclasses import dataclass, field
from typing import Iterable

__all__ = ["Meter", "METER_POINTS", "METER_CONFIG_POINTS", "METER_FAULTS"]

#: Read points (all float).
METER_POINTS: tuple[str, ...] = (
    "voltage_l1_v", "voltage_l2_v", "voltage_l3_v",
    "current_l1_a", "current_l2_a", "current_l3_a", "current_n_a",
    "power_l1_w", "power_l2_w", "power_l3_w", "power_total_w",
    "va_l1", "va_l2", "va_l3", "va_total",
    "var_l1", "var_l2", "var_l3", "var_total",
    "pf_l1", "pf_l2", "pf_l3", "pf_total",
    "frequency_hz",
    "import_kwh", "export_kwh",
    "import_l1_kwh", "import_l2_kwh", "import_l3_kwh",
    "export_l1_kwh", "export_l2_kwh", "export_l3_kwh",
    "total_kwh",
)

#: Configuration points (read and write) with their allowed values (SDM630 holding registers).
METER_CONFIG_POINTS: dict[str, tuple[int, ...]] = {
    "demand_period_min": (0, 5, 8, 10, 15, 20, 30, 60),
    "modbus_address": tuple(range(1, 248)),
    "baud_code": (0, 1, 2, 3, 4),  # 2400, 4800, 9600, 19200, 38400
    "system_type": (1, 2, 3),      # 1P2W, 3P3W, 3P4W
}

METER_FAULTS = (None, "frozen", "nan", "garbage", "zero")

_ROT = (1.0, cmath.exp(-2j * math.pi / 3), cmath.exp(2j * math.pi / 3))
# per phase the display keys of _measure, in the order it inserts them
_PHASE_KEYS = tuple((f"voltage_l{n}_v", f"current_l{n}_a", f"power_l{n}_w", f"va_l{n}", f"var_l{n}", f"pf_l{n}")
                    for n in (1, 2, 3))


def _q(x: float, res: float) -> float:
    """Quantise to the display resolution (0 = none); the final round drops binary artefacts
    such as 3.0620000000000003."""
    return round(round(x / res) * res, 9) if res > 0 else x


def _three(values: Iterable[float] | float, name: str) -> list[float]:
    if isinstance(values, (int, float)):
        return [float(values)] * 3
    v = [float(x) for x in values]
    if len(v) == 1:
        return [v[0], 0.0, 0.0]
    if len(v) != 3:
        raise ValueError(f"{name} must have 1 or 3 values, got {len(v)}")
    return v


@dataclass
class Meter:
    """A 3-phase energy meter.  See the module docstring.

    ``power_factor`` is one cos phi for all phases or three values.  ``start_ms`` is the time of
    the first (implicit) zero truth.  Energy counters start at ``initial_import_kwh`` /
    ``initial_export_kwh`` (split equally over the phases).
    """

    update_interval_ms: int = 1000
    noise_a: float = 0.0
    resolution_a: float = 0.001
    seed: int = 0
    resolution_v: float = 0.1
    nominal_voltage_v: float = 230.0
    voltage_noise_v: float = 0.0
    frequency_hz: float = 50.0
    power_factor: float | tuple[float, float, float] = 1.0
    signed_current: bool = True  # False: report |I| like many meters (power keeps the sign)
    start_ms: int = 0
    initial_import_kwh: float = 0.0
    initial_export_kwh: float = 0.0
    demand_period_min: int = 60
    modbus_address: int = 1
    baud_code: int = 2
    system_type: int = 3
    fault: str | None = field(default=None)

    def __post_init__(self) -> None:
        if self.update_interval_ms <= 0:
            raise ValueError("update_interval_ms must be > 0")
        self._pf = _three(self.power_factor, "power_factor")
        if any(not 0.0 < p <= 1.0 for p in self._pf):
            raise ValueError("power_factor must be in (0, 1]")
        self.now_ms = int(self.start_ms)
        self._truth_i = [0.0, 0.0, 0.0]
        self._truth_v = [float(self.nominal_voltage_v)] * 3
        # energy accumulators at self.now_ms (kWh); per phase import/export, total import/export
        self._imp = [self.initial_import_kwh / 3.0] * 3
        self._exp = [self.initial_export_kwh / 3.0] * 3
        self._imp_tot = float(self.initial_import_kwh)
        self._exp_tot = float(self.initial_export_kwh)
        self._last_sample_ms: int | None = None
        self._sample_index = 0
        self._display = self._measure([0.0] * 3, list(self._truth_v), 0, self._energies())

    # ------------------------------------------------------------------ fault knob
    def __setattr__(self, name: str, value: object) -> None:
        if name == "fault" and value not in METER_FAULTS:
            raise ValueError(f"meter fault must be one of {METER_FAULTS}, got {value!r}")
        object.__setattr__(self, name, value)

    # ------------------------------------------------------------------ physics
    def _true_powers(self, i: list[float], v: list[float]) -> list[float]:
        return [vk * ik * pf for vk, ik, pf in zip(v, i, self._pf)]

    def _energies(self) -> tuple:
        return (list(self._imp), list(self._exp), self._imp_tot, self._exp_tot)

    def _energies_after(self, dt_ms: int) -> tuple:
        """Energy counters after holding the current truth for ``dt_ms`` more."""
        imp, exp = list(self._imp), list(self._exp)
        p = self._true_powers(self._truth_i, self._truth_v)
        h = dt_ms / 3.6e9  # W*ms -> kWh
        for k in range(3):
            if p[k] >= 0:
                imp[k] += p[k] * h
            else:
                exp[k] -= p[k] * h
        tot = sum(p)
        imp_tot = self._imp_tot + (tot * h if tot > 0 else 0.0)
        exp_tot = self._exp_tot + (-tot * h if tot < 0 else 0.0)
        return (imp, exp, imp_tot, exp_tot)

    def advance(self, now_ms: int, true_currents_a: Iterable[float] | float,
                voltages_v: Iterable[float] | float | None = None) -> None:
        """Move to ``now_ms`` with the truth valid *from* ``now_ms`` on.

        true_currents_a: per-phase current (A), signed (export negative); one value = L1 only.
        voltages_v: per-phase voltage (V); None keeps the previous (initially nominal).
        """
        now_ms = int(now_ms)
        if now_ms < self.now_ms:
            raise ValueError(f"time went backwards: {now_ms} < {self.now_ms}")
        new_i = _three(true_currents_a, "true_currents_a")
        new_v = list(self._truth_v) if voltages_v is None else _three(voltages_v, "voltages_v")
        for x in new_i:
            if x != x:
                raise ValueError("ground truth must not be NaN")
        for x in new_v:
            if x != x:
                raise ValueError("ground truth must not be NaN")
        iv = self.update_interval_ms
        g = (now_ms // iv) * iv  # the last sample instant <= now
        en_now = None
        # the state is stored in the instance's dict: __setattr__ is there for the fault knob
        # only, and going through it costs a Python call per assignment (every second)
        d = self.__dict__
        if self._last_sample_ms is None or g > self._last_sample_ms:
            if g >= now_ms:  # the sample instant is now: it sees the new truth
                # (the counters at now_ms: the same as those stored below, computed once)
                s_i, s_v, en = new_i, new_v, self._energies_after(now_ms - self.now_ms)
                en_now = en
            else:  # it was in the held interval
                s_i, s_v = list(self._truth_i), list(self._truth_v)
                en = self._energies_after(max(0, g - self.now_ms))
            d["_last_sample_ms"] = g
            d["_sample_index"] = g // iv
            if self.fault != "frozen":
                d["_display"] = self._measure(s_i, s_v, self._sample_index, en)
        d["_imp"], d["_exp"], d["_imp_tot"], d["_exp_tot"] = \
            en_now if en_now is not None else self._energies_after(now_ms - self.now_ms)
        d["_truth_i"], d["_truth_v"] = new_i, new_v
        d["now_ms"] = now_ms

    def _measure(self, i_true: list[float], v_true: list[float], index: int, en: tuple) -> dict:
        """Displayed values for one sample: noise (seeded by sample index), resolution, wiring."""
        noise_a, noise_v = self.noise_a, self.voltage_noise_v
        if noise_a > 0 or noise_v > 0:
            rng = random.Random(f"dlbrig.meter:{self.seed}:{index}")
            i = [_q(x + (rng.gauss(0.0, noise_a) if noise_a > 0 else 0.0), self.resolution_a)
                 for x in i_true]
            v = [_q(x + (rng.gauss(0.0, noise_v) if noise_v > 0 else 0.0), self.resolution_v)
                 for x in v_true]
        else:
            # without noise the generator draws nothing: not seeded (a string seed hashes,
            # every sample); x + 0.0 is what the noisy expression adds
            res_a, res_v = self.resolution_a, self.resolution_v
            i = [_q(x + 0.0, res_a) for x in i_true]
            vm = self._v_memo
            if vm is not None and vm[0] == v_true and vm[1] == res_v:
                v = list(vm[2])
            else:
                v = [_q(x + 0.0, res_v) for x in v_true]
                if self.quantise_memo:
                    # (equal inputs quantise alike: x + 0.0 makes a -0.0 the 0.0 it equals)
                    self.__dict__["_v_memo"] = (list(v_true), res_v, list(v))
        if self.system_type == 1:
            i[1] = i[2] = v[1] = v[2] = 0.0
        d: dict[str, float] = {}
        p_tot = va_tot = var_tot = 0.0
        pfs, signed = self._pf, self.signed_current
        for k in range(3):
            kv, ki, kp, kva, kvar, kpf = _PHASE_KEYS[k]
            ik, vk = i[k], v[k]
            p = vk * ik * pfs[k]
            va = vk * abs(ik)
            var = math.sqrt(max(0.0, va * va - p * p))
            d[kv] = vk
            d[ki] = ik if signed else abs(ik)
            d[kp] = p
            d[kva] = va
            d[kvar] = var
            d[kpf] = p / va if va > 0 else 1.0
            p_tot, va_tot, var_tot = p_tot + p, va_tot + va, var_tot + var
        shift = self._n_shift
        if shift is None or shift[0] is not pfs:
            # the phase-angle factors depend on the power factors only
            shift = self._n_shift = (pfs, [cmath.exp(-1j * math.acos(pf)) for pf in pfs])
        e = shift[1]
        d["current_n_a"] = abs(sum([i[k] * _ROT[k] * e[k] for k in range(3)]))
        d["power_total_w"] = p_tot
        d["va_total"] = va_tot
        d["var_total"] = var_tot
        d["pf_total"] = p_tot / va_tot if va_tot > 0 else 1.0
        d["frequency_hz"] = float(self.frequency_hz)
        imp, exp, imp_tot, exp_tot = en
        d["import_l1_kwh"] = imp[0]
        d["export_l1_kwh"] = exp[0]
        d["import_l2_kwh"] = imp[1]
        d["export_l2_kwh"] = exp[1]
        d["import_l3_kwh"] = imp[2]
        d["export_l3_kwh"] = exp[2]
        d["import_kwh"] = imp_tot
        d["export_kwh"] = exp_tot
        d["total_kwh"] = imp_tot + exp_tot
        return d

    _n_shift = None     # (self._pf, [exp(-j phi)] per phase) for the neutral current; not a field
    #: Set by an owner that advances the meter every second (the rig's plant in fast mode): the
    #: quantised voltages of the last noise-free sample are kept for the same true voltages (the
    #: supply, which rarely changes; _q's round(x, 9) is the costly part of a sample). Not a field.
    quantise_memo = False
    _v_memo = None      # (true voltages, resolution, their quantised values)

    # ------------------------------------------------------------------ readings
    def true_energy_kwh(self) -> tuple[float, float]:
        """(import, export) ground-truth energy at ``now_ms`` (kWh), unaffected by faults."""
        return self._imp_tot, self._exp_tot

    def points(self) -> dict[str, object]:
        """Displayed values of :data:`METER_POINTS` plus the configuration points."""
        if self.fault in (None, "frozen"):
            d: dict[str, object] = dict(self._display)
        elif self.fault == "nan":
            d = {k: math.nan for k in METER_POINTS}
        elif self.fault == "zero":
            d = {k: (self._display[k] if k.endswith("_kwh") else 0.0) for k in METER_POINTS}
        else:  # garbage: wild but deterministic per sample
            rng = random.Random(f"dlbrig.meter.garbage:{self.seed}:{self._sample_index}")
            d = {k: rng.uniform(-1e6, 1e6) for k in METER_POINTS}
        for k in METER_CONFIG_POINTS:
            d[k] = getattr(self, k)
        return d

    def point(self, name: str) -> object:
        """``points()[name]`` without building the mapping (a register image in fast mode looks
        up the few points a read needs); KeyError for unknown names."""
        if name in METER_CONFIG_POINTS:
            return getattr(self, name)
        if self.fault is None or self.fault == "frozen":
            return self._display[name]
        return self.points()[name]

    @property
    def currents_a(self) -> list[float]:
        p = self.points()
        return [p["current_l1_a"], p["current_l2_a"], p["current_l3_a"]]  # type: ignore[list-item]

    @property
    def voltages_v(self) -> list[float]:
        p = self.points()
        return [p["voltage_l1_v"], p["voltage_l2_v"], p["voltage_l3_v"]]  # type: ignore[list-item]

    @property
    def power_total_w(self) -> float:
        return self.points()["power_total_w"]  # type: ignore[return-value]

    def write_point(self, name: str, value: object, now_ms: int) -> None:
        """Write a configuration point (:data:`METER_CONFIG_POINTS`); KeyError / ValueError."""
        if name not in METER_CONFIG_POINTS:
            raise KeyError(name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
            raise ValueError(f"{name} must be an integer, got {value!r}")
        if int(value) not in METER_CONFIG_POINTS[name]:
            raise ValueError(f"{name}={value} not in the allowed values")
        setattr(self, name, int(value))
