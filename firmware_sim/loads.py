"""Site load models: building base loads, PV generation, step events, and their sum.

Every component is a pure function of absolute virtual time: ``current_a(t_ms) -> [L1, L2, L3]``
in A (positive = import, PV negative = export).  ``t_ms = 0`` is Monday 00:00; day ``d`` of the
week is ``(t_ms // MS_PER_DAY) % 7`` (0 = Monday).  Randomness (load noise, clouds) is drawn per
day from ``numpy.random.default_rng((seed, day, salt))``, so values are deterministic per seed and
independent of the order or step of the queries.

Daily shapes (fraction of ``peak_a``, hourly knots, linear in between; see ``_PROFILES``):

* office: night ~17 %, ramp 7-9 h, peak late morning, lunch dip 12-13 h, drop after 18 h,
  weekend low (Saturday a little higher than Sunday);
* hotel: night ~40 %, morning peak 7-8 h (breakfast, showers), evening peak 19-20 h (highest);
* hospital: high constant critical base (``critical_fraction`` = 55 %) plus a daytime load;
* residential (apartment block): low at night, morning peak 7 h, strong evening peak 19 h,
  later and flatter mornings at the weekend.
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from typing import Iterable, Protocol, Sequence

import numpy as np

__all__ = [
    "BuildingLoad", "PV", "StepEvent", "SiteLoad", "LoadComponent", "BUILDING_KINDS",
    "MS_PER_HOUR", "MS_PER_DAY", "MS_PER_WEEK", "day_of_week", "hour_of_day",
]

MS_PER_HOUR = 3_600_000
MS_PER_DAY = 24 * MS_PER_HOUR
MS_PER_WEEK = 7 * MS_PER_DAY


def day_of_week(t_ms: int) -> int:
    """0 = Monday ... 6 = Sunday."""
    return (int(t_ms) // MS_PER_DAY) % 7


def hour_of_day(t_ms: int) -> float:
    """Hours since midnight, fractional."""
    return (int(t_ms) % MS_PER_DAY) / MS_PER_HOUR


class LoadComponent(Protocol):
    def current_a(self, t_ms: int) -> list[float]: ...


# Hourly knots (value at h:00) as a fraction of peak: (weekday, saturday, sunday)
_PROFILES: dict[str, tuple[Sequence[float], Sequence[float], Sequence[float]]] = {
    "office": (
        [0.18, 0.17, 0.17, 0.17, 0.17, 0.18, 0.22, 0.40, 0.72, 0.90, 0.97, 1.00,
         0.84, 0.88, 0.95, 0.93, 0.88, 0.75, 0.50, 0.32, 0.25, 0.21, 0.19, 0.18],
        [0.18, 0.17, 0.17, 0.17, 0.17, 0.17, 0.18, 0.20, 0.24, 0.27, 0.28, 0.28,
         0.27, 0.26, 0.25, 0.24, 0.22, 0.20, 0.19, 0.18, 0.18, 0.18, 0.18, 0.18],
        [0.17, 0.16, 0.16, 0.16, 0.16, 0.16, 0.17, 0.18, 0.19, 0.20, 0.20, 0.20,
         0.20, 0.20, 0.19, 0.19, 0.18, 0.18, 0.17, 0.17, 0.17, 0.17, 0.17, 0.17],
    ),
    "hotel": (
        [0.45, 0.42, 0.40, 0.40, 0.42, 0.50, 0.72, 0.90, 0.86, 0.70, 0.60, 0.58,
         0.62, 0.58, 0.55, 0.55, 0.60, 0.72, 0.90, 1.00, 0.97, 0.85, 0.65, 0.52],
        [0.47, 0.43, 0.41, 0.40, 0.41, 0.45, 0.58, 0.78, 0.90, 0.82, 0.66, 0.60,
         0.62, 0.60, 0.57, 0.57, 0.62, 0.74, 0.92, 1.00, 0.97, 0.87, 0.68, 0.54],
        [0.47, 0.43, 0.41, 0.40, 0.41, 0.45, 0.58, 0.78, 0.90, 0.82, 0.66, 0.60,
         0.62, 0.60, 0.57, 0.57, 0.60, 0.70, 0.86, 0.95, 0.92, 0.80, 0.62, 0.50],
    ),
    "hospital": (
        [0.62, 0.60, 0.60, 0.60, 0.60, 0.62, 0.70, 0.85, 0.95, 1.00, 1.00, 0.98,
         0.95, 0.97, 0.97, 0.93, 0.88, 0.80, 0.75, 0.72, 0.70, 0.67, 0.65, 0.63],
        [0.62, 0.60, 0.60, 0.60, 0.60, 0.61, 0.65, 0.72, 0.76, 0.78, 0.78, 0.77,
         0.76, 0.76, 0.75, 0.74, 0.72, 0.70, 0.69, 0.68, 0.66, 0.65, 0.64, 0.63],
        [0.62, 0.60, 0.60, 0.60, 0.60, 0.61, 0.64, 0.70, 0.74, 0.76, 0.76, 0.75,
         0.74, 0.74, 0.73, 0.72, 0.71, 0.70, 0.69, 0.68, 0.66, 0.65, 0.64, 0.63],
    ),
    "residential": (
        [0.30, 0.25, 0.22, 0.21, 0.21, 0.25, 0.45, 0.60, 0.50, 0.38, 0.35, 0.36,
         0.40, 0.37, 0.35, 0.36, 0.45, 0.65, 0.90, 1.00, 0.92, 0.75, 0.55, 0.40],
        [0.32, 0.27, 0.23, 0.21, 0.21, 0.22, 0.28, 0.40, 0.55, 0.62, 0.60, 0.55,
         0.55, 0.50, 0.48, 0.48, 0.52, 0.68, 0.90, 1.00, 0.92, 0.78, 0.58, 0.42],
        [0.32, 0.27, 0.23, 0.21, 0.21, 0.22, 0.26, 0.36, 0.52, 0.62, 0.62, 0.60,
         0.62, 0.52, 0.48, 0.48, 0.52, 0.68, 0.90, 1.00, 0.92, 0.76, 0.55, 0.40],
    ),
}
BUILDING_KINDS = tuple(_PROFILES)
_SALT = {"office": 11, "hotel": 12, "hospital": 13, "residential": 14, "pv": 21}
#: Critical (non-sheddable) share of peak per kind.
_CRITICAL = {"office": 0.0, "hotel": 0.0, "hospital": 0.55, "residential": 0.0}

_NOISE_KNOT_MS = 15 * 60_000  # load noise knots every 15 min, linear in between
_KNOTS_PER_DAY = MS_PER_DAY // _NOISE_KNOT_MS


def _unbalance_weights(unbalance: float | Sequence[float]) -> list[float]:
    if isinstance(unbalance, (int, float)):
        u = float(unbalance)
        if not 0.0 <= u < 1.0:
            raise ValueError("scalar unbalance must be in [0, 1)")
        return [1.0 + u, 1.0, 1.0 - u]  # L1 heaviest, L3 lightest; mean stays 1
    w = [float(x) for x in unbalance]
    if len(w) != 3 or any(x < 0 for x in w) or sum(w) <= 0:
        raise ValueError("unbalance weights must be three values >= 0")
    m = sum(w) / 3.0
    return [x / m for x in w]


def _three(x: float | Iterable[float]) -> list[float]:
    if isinstance(x, (int, float)):
        return [float(x)] * 3
    v = [float(a) for a in x]
    if len(v) != 3:
        raise ValueError("need 3 per-phase values")
    return v


@dataclass
class BuildingLoad:
    """Building base load of a ``kind`` (see :data:`BUILDING_KINDS`).

    peak_a: per-phase current (A) at the top of the weekday shape, before unbalance and noise.
    unbalance: scalar u -> phase weights (1+u, 1, 1-u); or three weights (normalised to mean 1).
    noise_fraction: deterministic multiplicative noise amplitude (uniform, +-), 15-min knots.
    critical_fraction: non-sheddable share of peak (hospital default 55 %).
    """

    kind: str
    peak_a: float
    seed: int = 0
    unbalance: float | tuple[float, float, float] = 0.0
    noise_fraction: float = 0.05
    critical_fraction: float | None = None
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in _PROFILES:
            raise ValueError(f"unknown building kind {self.kind!r}; known: {BUILDING_KINDS}")
        if self.peak_a < 0 or not 0.0 <= self.noise_fraction < 1.0:
            raise ValueError("peak_a >= 0 and noise_fraction in [0, 1)")
        self._w = _unbalance_weights(self.unbalance)
        if self.critical_fraction is None:
            self.critical_fraction = _CRITICAL[self.kind]

    def _noise_knots(self, day: int) -> np.ndarray:
        k = self._cache.get(day)
        if k is None:
            rng = np.random.default_rng((int(self.seed), int(day), _SALT[self.kind]))
            k = rng.uniform(-1.0, 1.0, _KNOTS_PER_DAY)
            if len(self._cache) > 64:
                self._cache.clear()
            self._cache[day] = k
        return k

    def shape(self, t_ms: int) -> float:
        """Noise-free fraction of peak at ``t_ms``."""
        t = int(t_ms)
        day, ms = divmod(t, MS_PER_DAY)
        dow = day % 7
        prof = _PROFILES[self.kind][0 if dow < 5 else (1 if dow == 5 else 2)]
        h, frac = divmod(ms, MS_PER_HOUR)
        a = prof[h]
        if h < 23:
            b = prof[h + 1]
        else:  # continue into the next day's midnight value
            nd = (dow + 1) % 7
            b = _PROFILES[self.kind][0 if nd < 5 else (1 if nd == 5 else 2)][0]
        return a + (b - a) * frac / MS_PER_HOUR

    def noise(self, t_ms: int) -> float:
        """Deterministic noise in [-1, 1] at ``t_ms`` (linear between 15-min knots)."""
        day, ms = divmod(int(t_ms), MS_PER_DAY)
        i, frac = divmod(ms, _NOISE_KNOT_MS)
        knots = self._noise_knots(day)
        a = knots[i]
        b = knots[i + 1] if i + 1 < _KNOTS_PER_DAY else self._noise_knots(day + 1)[0]
        return float(a + (b - a) * frac / _NOISE_KNOT_MS)

    def total_fraction(self, t_ms: int) -> float:
        """Fraction of peak including noise; never below the critical share."""
        f = self.shape(t_ms) * (1.0 + self.noise_fraction * self.noise(t_ms))
        return max(f, float(self.critical_fraction))  # type: ignore[arg-type]

    def current_a(self, t_ms: int) -> list[float]:
        """Per-phase current [L1, L2, L3] (A) at ``t_ms``."""
        if self.segment_memo:
            return self._current_a_memo(int(t_ms))
        base = self.peak_a * self.total_fraction(t_ms)
        return [base * w for w in self._w]

    #: Set by an owner that asks every second (the rig's plant in fast mode): current_a keeps the
    #: knots of the stretch it is in (one hour's shape knots, one 15-min pair of noise knots) and
    #: does shape's and noise's arithmetic on them, instead of finding them again for every query.
    #: The same operations on the same values (the numpy knots as the floats they hold), so the
    #: same result. Not a field: the plain path (False) is the reference.
    segment_memo = False
    _seg = None     # (from, until, hour start, shape knot, its slope, noise knot, its slope, kind, seed)

    def _current_a_memo(self, t: int) -> list[float]:
        seg = self._seg
        if seg is None or not seg[0] <= t < seg[1] or seg[7] != self.kind or seg[8] != self.seed:
            seg = self._seg = self._segment(t)
        shape = seg[3] + seg[4] * (t - seg[2]) / MS_PER_HOUR
        noise = seg[5] + seg[6] * (t - seg[0]) / _NOISE_KNOT_MS
        base = self.peak_a * max(shape * (1.0 + self.noise_fraction * noise), float(self.critical_fraction))
        return [base * w for w in self._w]

    def _segment(self, t: int) -> tuple:
        """The knots shape(t) and noise(t) interpolate between, for the 15-min stretch of ``t``."""
        day, ms = divmod(t, MS_PER_DAY)
        dow = day % 7
        prof = _PROFILES[self.kind][0 if dow < 5 else (1 if dow == 5 else 2)]
        h = ms // MS_PER_HOUR
        a = prof[h]
        if h < 23:
            b = prof[h + 1]
        else:
            nd = (dow + 1) % 7
            b = _PROFILES[self.kind][0 if nd < 5 else (1 if nd == 5 else 2)][0]
        i = ms // _NOISE_KNOT_MS
        knots = self._noise_knots(day)
        na = knots[i]
        nb = knots[i + 1] if i + 1 < _KNOTS_PER_DAY else self._noise_knots(day + 1)[0]
        start = day * MS_PER_DAY + i * _NOISE_KNOT_MS
        return (start, start + _NOISE_KNOT_MS, day * MS_PER_DAY + h * MS_PER_HOUR, a, b - a,
                float(na), float(nb - na), self.kind, self.seed)

    def critical_current_a(self, t_ms: int) -> list[float]:
        """Per-phase non-sheddable part (A), e.g. a hospital's critical loads."""
        return [self.peak_a * float(self.critical_fraction) * w for w in self._w]  # type: ignore[arg-type]


@dataclass
class PV:
    """Photovoltaic generation; returns negative (export) currents.

    kwp: installed peak power (kW).  weather: "clear", "cloudy", or a sequence cycled per day.
    Clear sky: P = kwp * performance_ratio * sin(pi x)^shape_exponent with x the fraction of the
    day between ``sunrise_h`` and ``sunset_h`` (solar noon in the middle).  Cloudy: the clear-sky
    value times a cloud factor that jumps between cloud (10-35 %) and sun gaps (70-95 %) every
    3-15 min with linear ramps of 20-120 s (the fast PV ramps a load manager must follow).
    phases: 3 (balanced inverter) or 1 (single-phase inverter on ``phase``, 1..3).
    """

    kwp: float
    weather: str | Sequence[str] = "clear"
    seed: int = 0
    sunrise_h: float = 6.0
    sunset_h: float = 18.0
    performance_ratio: float = 0.85
    shape_exponent: float = 1.3
    phases: int = 3
    phase: int = 1
    voltage_v: float = 230.0
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ws = [self.weather] if isinstance(self.weather, str) else list(self.weather)
        if not ws or any(w not in ("clear", "cloudy") for w in ws):
            raise ValueError("weather must be 'clear', 'cloudy' or a sequence of those")
        if not 0 <= self.sunrise_h < self.sunset_h <= 24:
            raise ValueError("need 0 <= sunrise_h < sunset_h <= 24")
        if self.phases not in (1, 3) or self.phase not in (1, 2, 3):
            raise ValueError("phases must be 1 or 3, phase 1..3")
        self._weathers = ws

    def weather_on(self, day: int) -> str:
        return self._weathers[int(day) % len(self._weathers)]

    def clear_sky_w(self, t_ms: int) -> float:
        h = hour_of_day(t_ms)
        if h <= self.sunrise_h or h >= self.sunset_h:
            return 0.0
        x = (h - self.sunrise_h) / (self.sunset_h - self.sunrise_h)
        return self.kwp * 1000.0 * self.performance_ratio * math.sin(math.pi * x) ** self.shape_exponent

    def _clouds(self, day: int) -> tuple[list[int], list[float], list[int]]:
        c = self._cache.get(day)
        if c is None:
            rng = np.random.default_rng((int(self.seed), int(day), _SALT["pv"]))
            starts, levels, ramps = [0], [float(rng.uniform(0.1, 0.35))], [0]
            t = 0
            while t < MS_PER_DAY:
                t += int(rng.integers(3 * 60_000, 15 * 60_000 + 1))
                gap = rng.random() < 0.45
                levels.append(float(rng.uniform(0.7, 0.95) if gap else rng.uniform(0.1, 0.35)))
                ramps.append(int(rng.integers(20_000, 120_001)))
                starts.append(t)
            c = (starts, levels, ramps)
            if len(self._cache) > 64:
                self._cache.clear()
            self._cache[day] = c
        return c

    def cloud_factor(self, t_ms: int) -> float:
        """Fraction of clear-sky output (1.0 on a clear day)."""
        day, ms = divmod(int(t_ms), MS_PER_DAY)
        if self.weather_on(day) == "clear":
            return 1.0
        starts, levels, ramps = self._clouds(day)
        i = bisect.bisect_right(starts, ms) - 1
        if i > 0 and ms < starts[i] + ramps[i]:
            a, b = levels[i - 1], levels[i]
            return a + (b - a) * (ms - starts[i]) / ramps[i]
        return levels[i]

    def power_w(self, t_ms: int) -> float:
        """AC output (W, >= 0)."""
        return self.clear_sky_w(t_ms) * self.cloud_factor(t_ms)

    def current_a(self, t_ms: int) -> list[float]:
        """Per-phase current [L1, L2, L3] (A), negative = export."""
        p = self.power_w(t_ms)
        if self.phases == 3:
            i = -p / (3.0 * self.voltage_v)
            return [i, i, i]
        out = [0.0, 0.0, 0.0]
        out[self.phase - 1] = -p / self.voltage_v
        return out


@dataclass
class StepEvent:
    """A load switched on at ``at_ms`` (heat pump, lift, kitchen) for ``duration_ms`` (None:
    forever).  ``delta_a`` is one value for all phases or [L1, L2, L3] (A, may be negative)."""

    at_ms: int
    delta_a: float | Sequence[float]
    duration_ms: int | None = None

    def __post_init__(self) -> None:
        self._d = _three(self.delta_a)  # type: ignore[arg-type]
        if self.duration_ms is not None and self.duration_ms < 0:
            raise ValueError("duration_ms must be >= 0")

    def active(self, t_ms: int) -> bool:
        if t_ms < self.at_ms:
            return False
        return self.duration_ms is None or t_ms < self.at_ms + self.duration_ms

    def current_a(self, t_ms: int) -> list[float]:
        return list(self._d) if self.active(t_ms) else [0.0, 0.0, 0.0]


class SiteLoad:
    """Sum of load components (buildings, PV, steps, anything with ``current_a(t_ms)``)."""

    def __init__(self, *components: LoadComponent) -> None:
        self.components: list[LoadComponent] = list(components)

    def add(self, component: LoadComponent) -> "SiteLoad":
        self.components.append(component)
        return self

    def current_a(self, t_ms: int) -> list[float]:
        """Per-phase net current [L1, L2, L3] (A) at ``t_ms``; negative = net export."""
        tot = [0.0, 0.0, 0.0]
        for c in self.components:
            for k, x in enumerate(c.current_a(t_ms)):
                tot[k] += x
        return tot

    def critical_current_a(self, t_ms: int) -> list[float]:
        """Per-phase sum of the components' critical (non-sheddable) currents."""
        tot = [0.0, 0.0, 0.0]
        for c in self.components:
            f = getattr(c, "critical_current_a", None)
            if f is not None:
                for k, x in enumerate(f(t_ms)):
                    tot[k] += x
        return tot
