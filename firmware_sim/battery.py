"""An on-site stationary battery (battery + inverter), as a pure, time-injected model.

Sign convention (the site's): ``power_kw > 0`` discharges into the site (lowers the grid import),
``power_kw < 0`` charges from it. The inverter limits power to ``max_discharge_kw`` /
``max_charge_kw``; the stored energy stays within ``[min_soc, max_soc] x capacity_kwh``. Losses are
one efficiency per direction (AC at the inverter vs DC in the cells): charging P kW for h hours
stores ``P x h x charge_efficiency`` kWh, discharging P kW for h hours takes ``P x h /
discharge_efficiency`` kWh out of the cells (0.95 each: a round trip of about 90 %, typical of
lithium-ion systems with their inverter).

``feasible_kw(requested, dt_s)`` says what the battery can hold for a whole interval of ``dt_s``
(so a controller can plan the next cycle with a power it will really get); ``step(power, dt_s)``
applies a power for ``dt_s`` and returns the power actually delivered.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Battery:
    capacity_kwh: float
    max_charge_kw: float | None = None       # default: 0.5 C
    max_discharge_kw: float | None = None    # default: 0.5 C
    soc: float = 0.5                         # initial state of charge, 0..1
    min_soc: float = 0.05
    max_soc: float = 0.95
    charge_efficiency: float = 0.95
    discharge_efficiency: float = 0.95
    charged_kwh: float = field(default=0.0, init=False)      # AC energy taken from the site
    discharged_kwh: float = field(default=0.0, init=False)   # AC energy given to the site

    def __post_init__(self):
        if not self.capacity_kwh > 0:
            raise ValueError(f"capacity_kwh: must be > 0, got {self.capacity_kwh!r}")
        if self.max_charge_kw is None:
            self.max_charge_kw = 0.5 * self.capacity_kwh
        if self.max_discharge_kw is None:
            self.max_discharge_kw = 0.5 * self.capacity_kwh
        for name in ("max_charge_kw", "max_discharge_kw"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must be >= 0, got {getattr(self, name)!r}")
        if not 0 <= self.min_soc <= self.soc <= self.max_soc <= 1:
            raise ValueError(f"soc: need 0 <= min_soc <= soc <= max_soc <= 1, got min_soc={self.min_soc}, "
                             f"soc={self.soc}, max_soc={self.max_soc}")
        for name in ("charge_efficiency", "discharge_efficiency"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"{name}: must be in (0, 1], got {getattr(self, name)!r}")
        self.energy_kwh = self.soc * self.capacity_kwh

    @property
    def state_of_charge(self) -> float:
        return self.energy_kwh / self.capacity_kwh

    def feasible_kw(self, requested_kw: float, dt_s: float) -> float:
        """The part of ``requested_kw`` the battery can hold for all of the next ``dt_s`` seconds."""
        h = dt_s / 3600
        if requested_kw > 0:
            room = max(0.0, self.energy_kwh - self.min_soc * self.capacity_kwh)
            by_energy = room * self.discharge_efficiency / h if h > 0 else float("inf")
            return max(0.0, min(requested_kw, self.max_discharge_kw, by_energy))
        if requested_kw < 0:
            room = max(0.0, self.max_soc * self.capacity_kwh - self.energy_kwh)
            by_energy = room / self.charge_efficiency / h if h > 0 else float("inf")
            return -max(0.0, min(-requested_kw, self.max_charge_kw, by_energy))
        return 0.0

    def step(self, power_kw: float, dt_s: float) -> float:
        """Hold ``power_kw`` (clipped to what is feasible) for ``dt_s``; returns the power delivered."""
        p = self.feasible_kw(power_kw, dt_s)
        h = dt_s / 3600
        if p > 0:
            self.energy_kwh -= p * h / self.discharge_efficiency
            self.discharged_kwh += p * h
        elif p < 0:
            self.energy_kwh += -p * h * self.charge_efficiency
            self.charged_kwh += -p * h
        lo, hi = self.min_soc * self.capacity_kwh, self.max_soc * self.capacity_kwh
        self.energy_kwh = min(max(self.energy_kwh, lo), hi)   # float dust only: p was feasible
        return p
