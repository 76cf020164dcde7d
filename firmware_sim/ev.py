"""Vehicle model: an EV as seen from the charger's socket (IEC 61851-1 EV side).

The EV reads the control-pilot PWM (duty cycle, or no PWM), presents a CP state through its
resistance (A open, B 2.74 kOhm, C 882 Ohm, D 246 Ohm, E short), has a diode on the CP line, and
draws current per conductor when the EVSE's contactor is closed.  It is a pure model: every method
takes the absolute virtual time ``t_ms``; nothing reads a clock.

Behaviour (all numbers are dataclass fields with defaults from reference/standards.md):

* Reaction delay: a PWM change is *perceived* ``reaction_delay_ms`` after it was emitted (a delay
  line; every change is kept in order).  Default 2 s (GrugBus field notes), configurable to 6 s and
  beyond.
* Start delay: when charging becomes allowed while the EV is in B, it waits ``start_delay_ms``
  (drawn deterministically from ``seed`` in ``start_delay_range_ms`` = 10-40 s unless fixed)
  before closing S2 (B -> C).  The same delay applies to every resume after a pause.
* Draw: ``draw_fraction`` (drawn from ``seed`` in 95-100 %) of min(perceived limit, on-board
  charger max, taper limit), on ``phases`` conductors (L1, L1+L2 or L1+L2+L3).  The EV never
  rounds the decoded limit up, so it never draws more than the EVSE signalled.
* Taper above ``taper_soc_pct``; when ``soc >= target_soc_pct`` the EV is full and goes to B
  (``full_behaviour="b"``) or stays in C with zero current (``"c0"``).  Either way the charger sees
  "ev_suspended".
* PWM off (X1) or F: the EV stops drawing when it perceives it and opens S2 (C -> B), unless
  ``stays_in_c_when_paused`` (some EVs do, which is why the EVSE has a 6 s force-open).
* Conductors with no supply (below 1 V, e.g. a lost phase) carry no current.
* External draw limit (:meth:`EV.update` ``draw_limit_a``, set by the charge point's
  :meth:`~dlbrig.firmware_sim.evse.ChargePoint.set_draw_limit`): a per-conductor cap on what
  flows, for a bench where something else decides the draw (an electronic load standing in for
  the vehicle: input off = 0 A, a current set-point = a cap).  :attr:`EV.demand_a` is what the EV
  would draw without it.
* SOC and taper are re-evaluated on a grid of ``tick_ms`` (absolute multiples), which is the
  event resolution of the taper; everything else is exact to the millisecond.

Fault knobs (:class:`EvFaults`, settable at runtime; a change takes effect at the model's current
time, i.e. the last ``update``/``advance`` time): ``overdraw_pct``, ``ignore_pwm``,
``missing_diode``, ``cp_short`` (-> state E), ``leakage_dc_ma``, ``leakage_ac_ma``.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field, fields
from typing import Any

__all__ = [
    "EV", "EvFaults", "EV_PRESETS", "EV_POINTS", "current_from_duty", "EV_CP_RESISTANCE_OHM",
    "pp_ohm_for_rating", "SimulatedEv",
]

#: Nominal EV-side CP-PE resistances (standards.md §1.1).  "E" is a short (0 Ohm).
EV_CP_RESISTANCE_OHM = {"A": math.inf, "B": 2740.0, "C": 882.0, "D": 246.0, "E": 0.0}

#: Nominal PP-PE resistances of the cable coding (Ohm), by cable rating in A.
_PP_OHM = {13: 1500.0, 20: 680.0, 32: 220.0, 63: 100.0}


def pp_ohm_for_rating(rating_a: int) -> float:
    """Nominal proximity-pilot resistance (Ohm) of a cable rated ``rating_a`` (13/20/32/63 A)."""
    try:
        return _PP_OHM[int(rating_a)]
    except KeyError:
        raise ValueError(f"no PP coding for a {rating_a} A cable (13, 20, 32 or 63)") from None


def _floor_micro(x: float) -> float:
    """Round down to 1 uA.  Decoding D*0.6 in floating point can land a hair above the current
    the EVSE encoded (16/0.6*0.6 = 16.000000000000004); an EV must never read more than was sent."""
    return math.floor(x * 1e6 + 1e-3) / 1e6


def current_from_duty(duty_pct: float | None, table: str = "iec") -> float | None:
    """EV-side decoding of the PWM duty cycle into the allowed current (A).

    Returns ``None`` when the duty cycle means "no charging" (PWM off / 100 %, < 3 %, 3-7 %
    digital communication, 7-8 % error, or out of range).

    ``table="iec"`` follows the Fluke FEV300 / IEC 61851-1 table (standards.md §1.1):
    8-10 % -> 6 A, 10-85 % -> D*0.6, 85-96 % -> (D-64)*2.5, 96-97 % -> 80 A.
    ``table="j1772"`` follows SAE J1772 (2017): <= 8 % none, 9.5-10 % -> 6 A (8-9.5 % none),
    10-85 % and 85-96 % as IEC, 96-96.5 % -> 80 A, > 96.5 % none.
    """
    if duty_pct is None or math.isnan(duty_pct):
        return None
    d = float(duty_pct)
    if table == "iec":
        if d < 8.0 or d > 97.0:
            return None
        if d < 10.0:
            return 6.0
        if d <= 85.0:
            return _floor_micro(d * 0.6)
        if d <= 96.0:
            return _floor_micro((d - 64.0) * 2.5)
        return 80.0
    if table == "j1772":
        if d <= 8.0 or d > 96.5:
            return None
        if d < 9.5:
            return None
        if d < 10.0:
            return 6.0
        if d <= 85.0:
            return _floor_micro(d * 0.6)
        if d <= 96.0:
            return _floor_micro((d - 64.0) * 2.5)
        return 80.0
    raise ValueError(f"unknown duty table {table!r} (iec or j1772)")


@dataclass
class EvFaults:
    """Vehicle-side fault injection.  All default to "healthy".

    overdraw_pct: draw (1 + p/100) x the perceived PWM limit (ignores the on-board max and taper).
    ignore_pwm: lock onto the first PWM limit perceived in the session and ignore every later
        change, including PWM off (the EV keeps drawing and stays in C).
    missing_diode: the CP diode is missing; the EVSE must refuse to close.
    cp_short: CP shorted to PE -> state E.
    leakage_dc_ma / leakage_ac_ma: residual current while the EV is energised (mA).
    """

    overdraw_pct: float = 0.0
    ignore_pwm: bool = False
    missing_diode: bool = False
    cp_short: bool = False
    leakage_dc_ma: float = 0.0
    leakage_ac_ma: float = 0.0

    def any(self) -> bool:
        """True if any knob is set."""
        return any(getattr(self, f.name) != f.default for f in fields(self))


class _Integrator:
    """Exact integral of a piecewise-constant rate.  The accumulator only moves when the rate
    changes (at model events), so the result does not depend on how time was stepped."""

    __slots__ = ("acc", "rate", "t0")

    def __init__(self, t0_ms: int = 0, acc: float = 0.0) -> None:
        self.acc, self.rate, self.t0 = float(acc), 0.0, int(t0_ms)

    def value(self, t_ms: int) -> float:
        return self.acc + self.rate * (t_ms - self.t0)

    def set_rate(self, t_ms: int, rate: float) -> None:
        if rate != self.rate:
            self.acc = self.value(t_ms)
            self.t0 = t_ms
            self.rate = rate

    def reset(self, t_ms: int, acc: float = 0.0) -> None:
        self.acc, self.t0 = float(acc), t_ms


#: Vehicle presets (constructor keyword arguments).  Use ``EV.preset(name, seed=..., **overrides)``.
EV_PRESETS: dict[str, dict[str, Any]] = {
    # small hatchback, 1-phase 7.4 kW on-board charger
    "compact_1p": dict(name="compact_1p", battery_kwh=40.0, max_current_a=32.0, phases=1),
    # mid-size sedan, 3 x 16 A (11 kW)
    "sedan_3p": dict(name="sedan_3p", battery_kwh=75.0, max_current_a=16.0, phases=3),
    # SUV, 11 kW, big battery
    "suv_3p_11kw": dict(name="suv_3p_11kw", battery_kwh=100.0, max_current_a=16.0, phases=3),
    # delivery van with a 22 kW charger, 3 x 32 A
    "van_3p_22kw": dict(name="van_3p_22kw", battery_kwh=90.0, max_current_a=32.0, phases=3),
    # early-generation EV: 1 x 16 A, slow to react, slow to start, 20 A cable
    "legacy_1p_16a": dict(name="legacy_1p_16a", battery_kwh=24.0, max_current_a=16.0, phases=1,
                          reaction_delay_ms=5000, cable_rating_a=20),
}

#: EV point vocabulary (read); write names are the :class:`EvFaults` fields.
EV_POINTS = ("cp_state", "soc_pct", "energy_need_kwh", "departure_ms", "current_l1_a",
             "current_l2_a", "current_l3_a", "battery_energy_wh", "perceived_limit_a",
             "plugged", "full")
EV_POINTS_WRITE = tuple(f.name for f in fields(EvFaults))


@dataclass
class EV:
    """An electric vehicle.  See the module docstring for the behaviour.

    Units are in the names: ``_a`` amps per conductor, ``_ms`` milliseconds, ``_kwh``, ``_pct``.
    ``soc_pct`` is the SOC at creation; the live value is :attr:`soc` (the field is not mutated,
    so a dataclass ``replace`` reproduces the same vehicle).
    ``start_delay_ms`` / ``draw_fraction`` = None draw them from ``seed`` (deterministic).
    ``departure_ms`` (absolute virtual time) and :attr:`energy_need_kwh` are information for the
    scenario and the allocator; the model does not unplug itself.
    """

    name: str = "ev"
    battery_kwh: float = 60.0
    soc_pct: float = 20.0
    target_soc_pct: float = 100.0
    max_current_a: float = 16.0
    phases: int = 3
    reaction_delay_ms: int = 2000
    start_delay_ms: int | None = None
    start_delay_range_ms: tuple[int, int] = (10_000, 40_000)
    draw_fraction: float | None = None
    draw_fraction_range: tuple[float, float] = (0.95, 1.00)
    taper_soc_pct: float = 80.0
    taper_end_fraction: float = 0.1  # fraction of max current left at 100 % SOC
    charge_efficiency: float = 0.92  # grid -> battery
    departure_ms: int | None = None
    duty_table: str = "iec"
    full_behaviour: str = "b"  # "b": go to B when full; "c0": stay in C at 0 A
    stays_in_c_when_paused: bool = False
    ventilation: bool = False  # requests D instead of C
    cable_rating_a: int | None = 32  # the EV's own cable for socket chargers (None: no PP)
    tick_ms: int = 1000
    seed: int = 0
    faults: EvFaults = field(default_factory=EvFaults)

    def __post_init__(self) -> None:
        if self.phases not in (1, 2, 3):
            raise ValueError("phases must be 1, 2 or 3")
        if self.battery_kwh <= 0 or self.max_current_a <= 0:
            raise ValueError("battery_kwh and max_current_a must be positive")
        if not 0.0 <= self.soc_pct <= 100.0 or not 0.0 < self.target_soc_pct <= 100.0:
            raise ValueError("soc_pct in [0, 100], target_soc_pct in (0, 100]")
        if self.full_behaviour not in ("b", "c0"):
            raise ValueError("full_behaviour must be 'b' or 'c0'")
        if self.duty_table not in ("iec", "j1772"):
            raise ValueError("duty_table must be 'iec' or 'j1772'")
        if self.tick_ms <= 0 or self.reaction_delay_ms < 0:
            raise ValueError("tick_ms > 0 and reaction_delay_ms >= 0")
        rng = random.Random(f"dlbrig.ev:{self.seed}")
        lo, hi = self.start_delay_range_ms
        drawn_delay = rng.randint(int(lo), int(hi))
        flo, fhi = self.draw_fraction_range
        drawn_fraction = round(rng.uniform(flo, fhi), 4)
        if self.start_delay_ms is None:
            self.start_delay_ms = drawn_delay
        if self.draw_fraction is None:
            self.draw_fraction = drawn_fraction
        if not 0.0 < self.draw_fraction <= 1.0:
            # > 1 would be an overdraw: that is what EvFaults.overdraw_pct is for
            raise ValueError("draw_fraction must be in (0, 1]")
        self._soc0_pct = float(self.soc_pct)
        self._energy = _Integrator()  # Wh into the battery
        self._soc_snapshot = float(self.soc_pct)
        self._now_ms = 0
        self._plugged = False
        self._cp = "A"
        self._reset_session(0)

    # ------------------------------------------------------------------ presets
    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "EV":
        """Build a preset vehicle (see :data:`EV_PRESETS`) with keyword overrides."""
        try:
            kw = dict(EV_PRESETS[name])
        except KeyError:
            raise KeyError(f"unknown EV preset {name!r}; known: {sorted(EV_PRESETS)}") from None
        kw.update(overrides)
        return cls(**kw)

    @classmethod
    def compact_1p(cls, **kw: Any) -> "EV":
        return cls.preset("compact_1p", **kw)

    @classmethod
    def sedan_3p(cls, **kw: Any) -> "EV":
        return cls.preset("sedan_3p", **kw)

    @classmethod
    def suv_3p_11kw(cls, **kw: Any) -> "EV":
        return cls.preset("suv_3p_11kw", **kw)

    @classmethod
    def van_3p_22kw(cls, **kw: Any) -> "EV":
        return cls.preset("van_3p_22kw", **kw)

    @classmethod
    def legacy_1p_16a(cls, **kw: Any) -> "EV":
        return cls.preset("legacy_1p_16a", **kw)

    # ------------------------------------------------------------------ derived quantities
    def _reset_session(self, t_ms: int) -> None:
        self._last_signal: float | None = None
        self._queue: list[tuple[int, float | None]] = []  # PWM delay line (due_ms, limit)
        self._perceived: float | None = None
        self._frozen = False  # ignore_pwm has locked onto a limit
        self._c_at_ms: int | None = None  # scheduled B -> C
        self._currents = [0.0, 0.0, 0.0]
        self._demand = [0.0, 0.0, 0.0]
        self._drawing = False

    def soc_at(self, t_ms: int) -> float:
        """Exact state of charge (%) at ``t_ms`` (not earlier than the last update)."""
        soc = self._soc0_pct + self._energy.value(t_ms) / 1000.0 / self.battery_kwh * 100.0
        return min(100.0, soc)

    @property
    def soc(self) -> float:
        """State of charge (%) at the model's current time."""
        return self.soc_at(self._now_ms)

    @property
    def battery_energy_wh(self) -> float:
        """Energy stored into the battery since the model was created (Wh)."""
        return self._energy.value(self._now_ms)

    @property
    def energy_need_kwh(self) -> float:
        """Energy (grid side, kWh) still needed to reach ``target_soc_pct``."""
        need = (self.target_soc_pct - self.soc) / 100.0 * self.battery_kwh
        return max(0.0, need / self.charge_efficiency)

    @property
    def full(self) -> bool:
        return self._soc_snapshot >= self.target_soc_pct

    @property
    def plugged(self) -> bool:
        return self._plugged

    @property
    def cp_state(self) -> str:
        """What the EV presents on the pilot: "A", "B", "C", "D" or "E" (short)."""
        return self._cp

    @property
    def cp_resistance_ohm(self) -> float:
        return EV_CP_RESISTANCE_OHM[self._cp]

    @property
    def diode_ok(self) -> bool:
        return not self.faults.missing_diode

    @property
    def pp_ohm(self) -> float | None:
        """PP-PE resistance of the EV's cable (None: no cable coding)."""
        return None if self.cable_rating_a is None else pp_ohm_for_rating(self.cable_rating_a)

    @property
    def currents_a(self) -> list[float]:
        """Current drawn per charger conductor L1, L2, L3 (A) as of the last update."""
        return list(self._currents)

    @property
    def demand_a(self) -> list[float]:
        """What the EV would draw per conductor without the external draw limit (A)."""
        return list(self._demand)

    @property
    def leakage_dc_ma(self) -> float:
        """Residual DC current (mA); only flows while the EV is energised."""
        return float(self.faults.leakage_dc_ma) if self._energised else 0.0

    @property
    def leakage_ac_ma(self) -> float:
        return float(self.faults.leakage_ac_ma) if self._energised else 0.0

    @property
    def perceived_limit_a(self) -> float | None:
        """The PWM limit the EV currently acts on (None: not allowed to charge)."""
        return self._perceived

    def taper_limit_a(self, soc_pct: float) -> float:
        """On-board charger limit at ``soc_pct``: flat up to the taper knee, then linear down to
        ``taper_end_fraction`` of the maximum at 100 %."""
        if soc_pct <= self.taper_soc_pct or self.taper_soc_pct >= 100.0:
            return self.max_current_a
        x = min(1.0, (soc_pct - self.taper_soc_pct) / (100.0 - self.taper_soc_pct))
        return self.max_current_a * (1.0 - (1.0 - self.taper_end_fraction) * x)

    # ------------------------------------------------------------------ coupling
    def connect(self, t_ms: int) -> None:
        """The cable is plugged in at ``t_ms``: the EV shows B (or E with a CP short)."""
        if self._plugged:
            raise RuntimeError(f"EV {self.name} is already plugged in")
        self._now_ms = max(self._now_ms, t_ms)
        self._energy.set_rate(t_ms, 0.0)
        self._plugged = True
        self._reset_session(t_ms)
        self._cp = "E" if self.faults.cp_short else "B"
        self._energised = False

    def disconnect(self, t_ms: int) -> None:
        """The cable is pulled at ``t_ms``."""
        self._energy.set_rate(t_ms, 0.0)
        self._now_ms = max(self._now_ms, t_ms)
        self._soc_snapshot = self.soc_at(t_ms)
        self._plugged = False
        self._cp = "A"
        self._energised = False
        self._reset_session(t_ms)

    _energised = False
    _duty_memo = None     # (duty_pct, duty_table, current_from_duty(...)); no annotation: not a field

    def update(self, t_ms: int, duty_pct: float | None, contactor_closed: bool,
               conductors_energised: int = 3,
               voltages_v: tuple[float, float, float] | list[float] = (230.0, 230.0, 230.0),
               draw_limit_a=None) -> None:
        """Bring the EV to ``t_ms`` given what the EVSE presents *now*.

        duty_pct: emitted PWM duty cycle (%), or None when there is no PWM (A, X1, E, F).
        contactor_closed: the EVSE's contactor state; without it no current flows.
        conductors_energised: 1 (1-phase mode / 1-phase charger) or 3.
        draw_limit_a: None, or per conductor a cap in A (None: no cap) imposed from outside.
        Idempotent for repeated calls at the same ``t_ms``; must be called at every
        :meth:`next_event_ms` (the :class:`~dlbrig.firmware_sim.evse.ChargePoint` does).
        """
        if t_ms < self._now_ms:
            raise ValueError(f"time went backwards: {t_ms} < {self._now_ms}")
        self._now_ms = t_ms
        if not self._plugged:
            return
        f = self.faults
        # 1. the PWM delay line: a change is perceived reaction_delay_ms later, in order
        if duty_pct is None:
            allowed = None
        else:
            # current_from_duty is a pure function of (duty, table): reuse the last answer
            # (the duty stays put for minutes while the EV is asked every tick)
            memo = self._duty_memo
            table = self.duty_table
            if memo is not None and memo[0] == duty_pct and memo[1] == table:
                allowed = memo[2]
            else:
                allowed = current_from_duty(duty_pct, table)
                self._duty_memo = (duty_pct, table, allowed)
        if allowed != self._last_signal:
            self._last_signal = allowed
            self._queue.append((t_ms + int(self.reaction_delay_ms), allowed))
        while self._queue and self._queue[0][0] <= t_ms:
            _, value = self._queue.pop(0)
            if f.ignore_pwm and self._frozen:
                continue
            self._perceived = value
            if f.ignore_pwm and value is not None:
                self._frozen = True
        if f.ignore_pwm and not self._frozen and self._perceived is not None:
            self._frozen = True  # knob switched on mid-session: lock the current limit
        if not f.ignore_pwm:
            self._frozen = False
        # 2. SOC / taper on the absolute tick grid while drawing (event resolution tick_ms)
        if self._drawing and t_ms % self.tick_ms == 0:
            self._soc_snapshot = self.soc_at(t_ms)
        full = self._soc_snapshot >= self.target_soc_pct     # (the property full, inlined)
        # 3. pilot state machine
        request = "D" if self.ventilation else "C"
        if f.cp_short:
            self._cp = "E"
            self._c_at_ms = None
        else:
            if self._cp == "E":
                self._cp = "B"  # short removed
            wants = (not full) and self._perceived is not None
            if self._cp == "B":
                if wants:
                    if self._c_at_ms is None:
                        self._c_at_ms = t_ms + int(self.start_delay_ms)
                    if t_ms >= self._c_at_ms:
                        self._cp = request
                        self._c_at_ms = None
                else:
                    self._c_at_ms = None
            elif self._cp in ("C", "D"):
                if full:
                    if self.full_behaviour == "b":
                        self._cp = "B"
                elif self._perceived is None and not self.stays_in_c_when_paused:
                    self._cp = "B"
        # 4. draw
        energised = contactor_closed and self._cp in ("C", "D")
        per = 0.0
        if energised and self._perceived is not None and not full:
            if f.overdraw_pct > 0:
                per = self._perceived * (1.0 + f.overdraw_pct / 100.0)
            else:
                limit = min(self._perceived, self.max_current_a, self.taper_limit_a(self._soc_snapshot))
                per = max(0.0, limit * self.draw_fraction)
        n = min(self.phases, 1 if conductors_energised == 1 else 3)
        # (the comprehension over range(3), unrolled: same elements)
        demand = [per if 0 < n and voltages_v[0] >= 1.0 else 0.0,
                  per if 1 < n and voltages_v[1] >= 1.0 else 0.0,
                  per if 2 < n and voltages_v[2] >= 1.0 else 0.0]
        self._demand = demand
        if draw_limit_a is not None:
            demand = [d if lim is None else min(d, max(0.0, float(lim))) for d, lim in zip(demand, draw_limit_a)]
        self._currents = demand
        per = max(demand)
        self._energised = energised
        drawing = per > 0.0
        if drawing != self._drawing:
            # SOC is exact at the start and end of every draw period
            self._soc_snapshot = self.soc_at(t_ms)
            self._drawing = drawing
        power_w = sum([v * i for v, i in zip(voltages_v, self._currents)]) * self.charge_efficiency
        self._energy.set_rate(t_ms, power_w / 3.6e6)  # Wh per ms

    def quiet_tick(self, t_ms: int) -> bool:
        """Take the SOC tick at ``t_ms`` alone if :meth:`update` at ``t_ms`` with the inputs of the
        last update would change nothing else; False (nothing done) otherwise.

        For a caller that knows the inputs are those of the last update and that it left the EV
        settled (ChargePoint under its owner's promise). While drawing, a tick only moves the
        SOC snapshot: every other step of update is then a repetition of the last one unless the
        snapshot crosses the target (full) or moves the taper limit, or a queued PWM change or
        the B -> C start falls due; with none of those the draw, the pilot state and the
        integrator's rate stay as they are.
        """
        if not self._drawing or t_ms % self.tick_ms or t_ms < self._now_ms:
            return False
        q = self._queue
        if q and q[0][0] <= t_ms:
            return False
        c = self._c_at_ms
        if c is not None and c <= t_ms:
            return False
        # soc_at(t_ms) and the integrator's value inlined (every charging EV, every second)
        e = self._energy
        old = self._soc_snapshot
        new = min(100.0, self._soc0_pct + (e.acc + e.rate * (t_ms - e.t0)) / 1000.0 / self.battery_kwh * 100.0)
        target = self.target_soc_pct
        if (new >= target) != (old >= target):
            return False
        knee = self.taper_soc_pct
        # both at or below the knee: taper_limit_a is max_current_a for both (not called)
        if (new > knee or old > knee) and knee < 100.0 and self.faults.overdraw_pct <= 0 and \
                self.taper_limit_a(new) != self.taper_limit_a(old):
            return False
        self._now_ms = t_ms
        self._soc_snapshot = new
        return True

    def next_event_ms(self) -> int | None:
        """Earliest future time at which the EV changes by itself (None: never)."""
        if not self._plugged:
            return None
        # the minimum of the candidates after now, without building lists (every charging
        # charger asks this several times per cycle); same candidates, same result
        now = self._now_ms
        best = None
        if self._queue:
            x = self._queue[0][0]
            if x > now:
                best = x
        x = self._c_at_ms
        if x is not None and x > now and (best is None or x < best):
            best = x
        if self._drawing:
            tick = self.tick_ms
            x = (now // tick + 1) * tick
            if x > now and (best is None or x < best):
                best = x
        return best

    def state_signature(self) -> tuple:
        """Everything the EVSE can observe plus internal timers (for fixed-point settling)."""
        # (diode_ok inlined as the property's body: no subclass of EV overrides it)
        return (self._cp, tuple(self._currents), self._perceived, len(self._queue), self._c_at_ms,
                self._energised, not self.faults.missing_diode, self._drawing)

    # ------------------------------------------------------------------ point vocabulary
    def points(self) -> dict[str, object]:
        """Current values of :data:`EV_POINTS`."""
        c = self._currents
        return {
            "cp_state": self._cp, "soc_pct": self.soc, "energy_need_kwh": self.energy_need_kwh,
            "departure_ms": self.departure_ms, "current_l1_a": c[0], "current_l2_a": c[1],
            "current_l3_a": c[2], "battery_energy_wh": self.battery_energy_wh,
            "perceived_limit_a": self._perceived, "plugged": self._plugged, "full": self.full,
        }

    def write_point(self, name: str, value: object, now_ms: int) -> None:
        """Set a fault knob (:data:`EV_POINTS_WRITE`).  Effective at the next update."""
        if name not in EV_POINTS_WRITE:
            raise KeyError(name)
        if name in ("ignore_pwm", "missing_diode", "cp_short"):
            if value not in (True, False, 0, 1):
                raise ValueError(f"{name} must be a bool")
            setattr(self.faults, name, bool(value))
            return
        v = float(value)  # type: ignore[arg-type]
        if math.isnan(v) or v < 0:
            raise ValueError(f"{name} must be >= 0")
        setattr(self.faults, name, v)


class SimulatedEv(EV):
    """The EV as an EV-side simulator presents it: no behaviour of its own.  The pilot state,
    diode, residual current and draw are whatever :attr:`stim` (an
    :class:`~dlbrig.firmware_sim.instruments.EvSimStimulus`, set by the bench when it applies the
    instrument's settings) says; the PWM is only read to decide the draw in ``FOLL`` load mode.

    Draw while energised (contactor closed, pilot C/D) with the load on: ``FOLL`` -> min(load
    current, the current the PWM signals; 0 without PWM); ``FIX`` -> the load current whatever the
    PWM says (an EV that overdraws).  Residual current flows only while energised.
    """

    def __init__(self, stim, **kw: Any) -> None:
        kw.setdefault("name", "ev_simulator")
        kw.setdefault("max_current_a", 80.0)
        super().__init__(reaction_delay_ms=0, start_delay_ms=0, draw_fraction=1.0, **kw)
        self.stim = stim

    def connect(self, t_ms: int) -> None:
        super().connect(t_ms)
        self._cp = self.stim.cp if self.stim.cp != "A" else "B"

    def update(self, t_ms: int, duty_pct: float | None, contactor_closed: bool,
               conductors_energised: int = 3,
               voltages_v: tuple[float, float, float] | list[float] = (230.0, 230.0, 230.0),
               draw_limit_a=None) -> None:
        if t_ms < self._now_ms:
            raise ValueError(f"time went backwards: {t_ms} < {self._now_ms}")
        self._now_ms = t_ms
        if not self._plugged:
            return
        s = self.stim
        self._cp = s.cp if s.cp != "A" else self._cp
        self.faults.missing_diode = not s.diode
        self.faults.leakage_dc_ma = float(s.rcd_dc_ma)
        self.faults.leakage_ac_ma = float(s.rcd_ac_ma)
        energised = contactor_closed and self._cp in ("C", "D")
        allowed = current_from_duty(duty_pct, self.duty_table) if duty_pct is not None else None
        per = 0.0
        if energised and s.load_on:
            per = float(s.load_a) if s.load_mode == "FIX" else min(float(s.load_a), allowed or 0.0)
        n = min(int(s.phases), 1 if conductors_energised == 1 else 3)
        demand = [per if k < n and voltages_v[k] >= 1.0 else 0.0 for k in range(3)]
        self._demand = list(demand)
        if draw_limit_a is not None:
            demand = [d if lim is None else min(d, max(0.0, float(lim))) for d, lim in zip(demand, draw_limit_a)]
        self._currents = demand
        self._energised = energised
        self._perceived = allowed

    def next_event_ms(self) -> int | None:
        return None

    def state_signature(self) -> tuple:
        return (self._cp, tuple(self._currents), self._perceived, self._energised, self.diode_ok,
                self.faults.leakage_dc_ma, self.faults.leakage_ac_ma)
