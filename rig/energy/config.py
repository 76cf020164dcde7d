"""The energy inputs of a site: time-of-use prices, a contracted-capacity schedule, a capacity
tariff (monthly peak of 15-minute average demand), an on-site battery, the price-aware policy.

As YAML (the ``energy:`` block of a scenario or a planning site file)::

    energy:
      tariff:                          # time-of-use import prices (EUR/kWh), on the weekly clock
        default: 0.30
        export: 0.05                   # paid for export (PV surplus); default 0
        periods:
          - {days: mon-fri, from: "07:00", to: "22:00", price: 0.40}
          - {days: all, from: "23:00", to: "06:00", price: 0.18}   # through midnight
      contract:                        # contracted capacity (kW): a hard cap on the site import
        kw: 80
        periods: [{days: mon-fri, from: "08:00", to: "18:00", kw: 60}]
      capacity_tariff:                 # billed on the month's highest 15-min average import
        eur_per_kw_month: 4.5
        window: 15m
        floor_kw: 2.5                  # the least that is billed
        target_kw: 40                  # keep the monthly peak at or below this when the base allows
      battery: {capacity_kwh: 100, max_charge_kw: 50, max_discharge_kw: 50, soc: 0.5}
      price_aware: {assumed_rate: 0.5, guard: 30m}      # or true / false

Days: ``all``, ``mon-fri`` (a range), ``sat,sun`` (a list), ``weekdays``, ``weekend``. A period
whose ``to`` is not after its ``from`` runs through midnight into the next day. The first period
that covers a time wins. Billing months are 30-day blocks from the start of the run (the models'
clock has weekdays but no calendar).
"""
from __future__ import annotations

import re
from typing import Any, Optional, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator



def parse_duration(value, allow_zero=True) -> int:
    # imported when used: rig.scenario's model imports this module for its energy block
    from ..scenario.times import parse_duration as _parse
    return _parse(value, allow_zero=allow_zero)

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MS_PER_MIN = 60_000
MS_PER_DAY = 24 * 60 * MS_PER_MIN
MS_PER_WEEK = 7 * MS_PER_DAY
MONTH_MS = 30 * MS_PER_DAY
MIN_PER_WEEK = 7 * 24 * 60


def parse_days(text: str) -> frozenset:
    s = str(text).strip().lower()
    if s in ("all", "daily", "*"):
        return frozenset(range(7))
    if s == "weekdays":
        return frozenset(range(5))
    if s == "weekend":
        return frozenset((5, 6))
    out = set()
    for part in s.split(","):
        part = part.strip()
        m = re.fullmatch(r"([a-z]{3})(?:\s*-\s*([a-z]{3}))?", part)
        if not m or m.group(1) not in DAYS or (m.group(2) and m.group(2) not in DAYS):
            raise ValueError(f"days must be all, weekdays, weekend, 'mon-fri' or 'sat,sun', got {text!r}")
        a = DAYS.index(m.group(1))
        b = DAYS.index(m.group(2)) if m.group(2) else a
        d = a
        while True:
            out.add(d)
            if d == b:
                break
            d = (d + 1) % 7
    return frozenset(out)


def parse_clock(text: str) -> int:
    m = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*", str(text))
    if not m or int(m.group(1)) > 24 or int(m.group(2)) > 59 or (int(m.group(1)) == 24 and int(m.group(2))):
        raise ValueError(f"must be a time of day HH:MM, got {text!r}")
    return (int(m.group(1)) * 60 + int(m.group(2))) * MS_PER_MIN


class _Base(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class _Period(_Base):
    days: str = "all"
    from_: str = Field(alias="from")
    to: str

    @field_validator("days")
    @classmethod
    def _days(cls, v):
        parse_days(v)
        return v

    @field_validator("from_", "to")
    @classmethod
    def _clock(cls, v):
        parse_clock(v)
        return v

    def covers(self, t_abs_ms: int) -> bool:
        """Whether the weekly time ``t_abs_ms`` (ms since a Monday 00:00) is in this period."""
        days = parse_days(self.days)
        a, b = parse_clock(self.from_), parse_clock(self.to)
        tod = t_abs_ms % MS_PER_DAY
        day = (t_abs_ms // MS_PER_DAY) % 7
        if a < b:
            return day in days and a <= tod < b
        # through midnight: the evening part on a listed day, the morning part on the day after one
        return (day in days and tod >= a) or (((day - 1) % 7) in days and tod < b)


class PricePeriod(_Period):
    price: float = Field(ge=0, description="EUR/kWh")


class KwPeriod(_Period):
    kw: float = Field(gt=0)


def _weekly(periods, default: float, attr: str) -> np.ndarray:
    """The schedule as one value per minute of the week (first matching period wins)."""
    minutes = np.arange(MIN_PER_WEEK, dtype=np.int64)
    out = np.full(MIN_PER_WEEK, float(default))
    taken = np.zeros(MIN_PER_WEEK, dtype=bool)
    for p in periods:
        days = np.array(sorted(parse_days(p.days)))
        a, b = parse_clock(p.from_) // MS_PER_MIN, parse_clock(p.to) // MS_PER_MIN
        tod, day = minutes % 1440, minutes // 1440
        on_day = np.isin(day, days)
        prev_day = np.isin((day - 1) % 7, days)
        hit = (on_day & (tod >= a) & (tod < b)) if a < b else ((on_day & (tod >= a)) | (prev_day & (tod < b)))
        new = hit & ~taken
        out[new] = getattr(p, attr)
        taken |= hit
    return out


class _Schedule(_Base):
    _week: Any = PrivateAttr(None)        # (numpy array, list): value per minute of the week

    def _cache(self):
        # read through __pydantic_private__: the cycle loop asks for prices per charger and cycle
        c = self.__pydantic_private__["_week"]
        if c is None:
            w = _weekly(self.periods, self._default(), self._attr)
            c = self.__pydantic_private__["_week"] = (w, w.tolist())
        return c

    def weekly(self) -> np.ndarray:
        """Value per minute of the week (computed once: the schedule is validated and not changed)."""
        return self._cache()[0]

    def at(self, t_abs_ms: int) -> float:
        return self._cache()[1][(int(t_abs_ms) // MS_PER_MIN) % MIN_PER_WEEK]

    def min_between(self, t_from_abs_ms: int, t_to_abs_ms: int) -> float | None:
        """Lowest value over the minutes from ``t_from`` to ``t_to`` (both included)."""
        if t_to_abs_ms < t_from_abs_ms:
            return None
        a, b = int(t_from_abs_ms) // MS_PER_MIN, int(t_to_abs_ms) // MS_PER_MIN
        w = self._cache()[0]
        if b - a + 1 >= MIN_PER_WEEK:
            return float(w.min())
        a, b = a % MIN_PER_WEEK, b % MIN_PER_WEEK
        return float(w[a:b + 1].min()) if a <= b else float(min(w[a:].min(), w[:b + 1].min()))


class Tariff(_Schedule):
    _attr = "price"
    default: float = Field(ge=0, description="EUR/kWh outside every period")
    export: float = Field(0.0, ge=0, description="EUR/kWh paid for export")
    periods: list[PricePeriod] = Field(default_factory=list)

    def _default(self):
        return self.default


class Contract(_Schedule):
    _attr = "kw"
    kw: float = Field(gt=0, description="contracted capacity outside every period (kW)")
    periods: list[KwPeriod] = Field(default_factory=list)

    def _default(self):
        return self.kw


class CapacityTariff(_Base):
    eur_per_kw_month: float = Field(ge=0)
    window: Union[str, int] = "15m"
    floor_kw: float = Field(0.0, ge=0)
    target_kw: Optional[float] = Field(None, gt=0)

    @field_validator("window")
    @classmethod
    def _window(cls, v):
        ms = parse_duration(v, allow_zero=False)
        if MS_PER_DAY % ms:
            raise ValueError(f"must divide a day evenly (e.g. 15m), got {v!r}")
        return v

    @property
    def window_ms(self) -> int:
        return parse_duration(self.window, allow_zero=False)


class BatterySpec(_Base):
    capacity_kwh: float = Field(gt=0)
    max_charge_kw: Optional[float] = Field(None, ge=0)
    max_discharge_kw: Optional[float] = Field(None, ge=0)
    soc: float = Field(0.5, ge=0, le=1)
    min_soc: float = Field(0.05, ge=0, le=1)
    max_soc: float = Field(0.95, ge=0, le=1)
    efficiency: float = Field(0.95, gt=0, le=1, description="per direction (charge, discharge)")

    @model_validator(mode="after")
    def _soc(self):
        if not self.min_soc <= self.soc <= self.max_soc:
            raise ValueError(f"need min_soc <= soc <= max_soc, got {self.min_soc}, {self.soc}, {self.max_soc}")
        return self

    def build(self):
        from ...firmware_sim.battery import Battery
        return Battery(self.capacity_kwh, self.max_charge_kw, self.max_discharge_kw, soc=self.soc,
                       min_soc=self.min_soc, max_soc=self.max_soc, charge_efficiency=self.efficiency,
                       discharge_efficiency=self.efficiency)


class PriceAware(_Base):
    assumed_rate: float = Field(0.5, gt=0, le=1, description="share of a charger's max power a "
                                "deferred session is assumed to get once released")
    guard: Union[str, int] = Field("30m", description="slack kept on top of the time the session needs")

    @field_validator("guard")
    @classmethod
    def _guard(cls, v):
        parse_duration(v)
        return v

    @property
    def guard_ms(self) -> int:
        return parse_duration(self.guard)


class EnergySpec(_Base):
    tariff: Optional[Tariff] = None
    contract: Optional[Contract] = None
    capacity_tariff: Optional[CapacityTariff] = None
    battery: Optional[BatterySpec] = None
    price_aware: Union[bool, PriceAware] = False

    @field_validator("price_aware", mode="before")
    @classmethod
    def _pa(cls, v):
        if v is True:
            return PriceAware()
        return v

    @model_validator(mode="after")
    def _needs_tariff(self):
        if self.price_aware and self.tariff is None:
            raise ValueError("price_aware needs a tariff (time-of-use prices) to shift sessions to")
        return self

    @property
    def policy(self) -> Optional[PriceAware]:
        return self.price_aware if isinstance(self.price_aware, PriceAware) else None


def price_at(tariff: Tariff, t_abs_ms: int) -> float:
    """The import price at ``t_abs_ms`` (ms since a Monday 00:00; the schedule repeats weekly)."""
    return tariff.at(t_abs_ms)


def contract_kw_at(contract: Contract, t_abs_ms: int) -> float:
    return contract.at(t_abs_ms)
