"""Simulated charging demand per property type: who arrives when, stays how long, needs how much.

Each charger stands for its share of the property's EV drivers (one charger per commuter at an
office, per room-night group at a hotel, ...): ``sessions_per_charger_day`` drivers arrive per
charger and day (a rate <= 1 is the chance that the charger's regular driver comes that day; a
rate > 1, e.g. retail, is a Poisson mean), so adding chargers adds drivers as it would on a real
site. For every driver the model draws, from a generator seeded with (seed, day, charger index,
profile), so charger k's drivers are the same whatever the count swept:

- an arrival time: a mixture of normal distributions over the time of day (hours);
- a dwell time: log-normal (median, sigma of log), clipped to [min, max] hours;
- an energy wish: log-normal kWh, clipped; the *requested* energy is then capped at what the car
  itself could take at its own maximum rate in 90 % of its dwell (a driver parked one hour with an
  11 kW car does not expect 40 kWh), so a connection without limits serves everyone and any
  shortfall the plan reports is the connection's;
- a car: on-board charger phases and current (3 x 16 A = 11 kW, 1 x 32 A = 7.4 kW, 1 x 16 A = 3.7 kW,
  3 x 32 A = 22 kW), by weight.

Where the numbers come from: they are round engineering assumptions, not fits to a data set. Their
shapes follow published session data: workplace charging (Caltech/JPL ACN-Data: Lee, Li & Low,
"ACN-Data: Analysis and Applications of an Open EV Charging Dataset", e-Energy 2019: arrivals
concentrated in the morning, stays of most of a working day, around 10 kWh per session; also the
workplace data set of Asensio et al., Scientific Data 8, 2021); residential charging in apartment
buildings (Sørensen, Lindberg, Sartori & Andresen, Energy & Buildings 241, 2021: plug-in mostly in
the late afternoon and evening, connected overnight, with far more connection time than charging
time); hotel, depot and retail are set the same way from their opening hours. Change them for a
real site: :data:`PROFILES` is plain data, and ``dlbrig plan --profile`` accepts a YAML file with
the same fields.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

EV_TYPES = {               # name -> (phases, max current per phase A)
    "3p16": (3, 16), "1p32": (1, 32), "1p16": (1, 16), "3p32": (3, 32),
}


@dataclass(frozen=True)
class DemandProfile:
    name: str
    description: str
    sessions_per_charger_day: tuple      # (weekday, saturday, sunday)
    arrival: tuple                       # ((weight, mean_h, sd_h), ...)
    dwell_h: tuple                       # (median, sigma_log, min, max)
    energy_kwh: tuple                    # (median, sigma_log, min, max)
    ev_mix: dict = field(default_factory=lambda: {"3p16": 1.0})

    def check(self) -> None:
        if len(self.sessions_per_charger_day) != 3 or any(x < 0 for x in self.sessions_per_charger_day):
            raise ValueError("sessions_per_charger_day: need [weekday, saturday, sunday] >= 0")
        if not self.arrival or any(len(a) != 3 or a[0] <= 0 or a[2] <= 0 for a in self.arrival):
            raise ValueError("arrival: need a list of [weight > 0, mean_h, sd_h > 0]")
        for name in ("dwell_h", "energy_kwh"):
            med, sig, lo, hi = getattr(self, name)
            if not (med > 0 and sig >= 0 and 0 < lo <= hi):
                raise ValueError(f"{name}: need [median > 0, sigma >= 0, 0 < min <= max]")
        if not self.ev_mix or any(k not in EV_TYPES or w <= 0 for k, w in self.ev_mix.items()):
            raise ValueError(f"ev_mix: weights > 0 of {', '.join(EV_TYPES)}")


PROFILES = {
    "office": DemandProfile(
        "office", "commuters on weekdays, arriving 7-10 h, parked most of the working day",
        (0.85, 0.10, 0.05), ((0.85, 8.4, 0.8), (0.15, 13.0, 1.5)), (8.0, 0.25, 1.0, 11.0),
        (10.0, 0.5, 2.0, 40.0), {"3p16": 6, "1p32": 2, "1p16": 1.5, "3p32": 0.5}),
    "hotel": DemandProfile(
        "hotel", "guests every day, arriving in the evening, leaving after breakfast",
        (0.7, 0.75, 0.6), ((1.0, 19.0, 2.0),), (13.0, 0.2, 8.0, 18.0),
        (25.0, 0.4, 5.0, 60.0), {"3p16": 6, "1p32": 2, "1p16": 1, "3p32": 1}),
    "residential": DemandProfile(
        "residential", "residents plugging in after work and staying overnight; some daytime stays",
        (0.8, 0.6, 0.6), ((0.8, 18.0, 1.8), (0.2, 12.0, 3.0)), (13.0, 0.3, 2.0, 20.0),
        (12.0, 0.6, 2.0, 50.0), {"3p16": 5, "1p32": 2, "1p16": 3}),
    "depot": DemandProfile(
        "depot", "fleet vans back around 17-18 h, out again at 7 h; few on Saturday, none on Sunday",
        (1.0, 0.3, 0.0), ((1.0, 17.5, 0.75),), (13.5, 0.08, 10.0, 15.0),
        (35.0, 0.3, 10.0, 70.0), {"3p16": 7, "3p32": 3}),
    "retail": DemandProfile(
        "retail", "shoppers 9-20 h, short stays, several per charger and day",
        (4.0, 5.0, 1.5), ((0.5, 11.5, 1.5), (0.5, 17.0, 1.5)), (1.0, 0.5, 0.25, 3.0),
        (8.0, 0.5, 1.0, 30.0), {"3p16": 5, "1p32": 2, "1p16": 2, "3p32": 1}),
}


def profile_from_dict(d: dict, name: str = "custom") -> DemandProfile:
    keys = ("sessions_per_charger_day", "arrival", "dwell_h", "energy_kwh")
    missing = [k for k in keys if k not in d]
    if missing:
        raise ValueError(f"{missing[0]}: required")
    extra = set(d) - set(keys) - {"name", "description", "ev_mix"}
    if extra:
        raise ValueError(f"{sorted(extra)[0]}: unknown key (allowed: name, description, ev_mix, {', '.join(keys)})")
    p = DemandProfile(str(d.get("name", name)), str(d.get("description", "")),
                      tuple(d["sessions_per_charger_day"]), tuple(tuple(a) for a in d["arrival"]),
                      tuple(d["dwell_h"]), tuple(d["energy_kwh"]), dict(d.get("ev_mix") or {"3p16": 1.0}))
    p.check()
    return p


@dataclass
class Driver:
    arrive_ms: int           # ms since the start of the run
    depart_ms: int
    need_kwh: float          # requested (capped at what the car can take in 90 % of its stay)
    wish_kwh: float          # what the driver would have liked
    phases: int
    max_a: float


def _lognormal(rng, median, sigma, lo, hi) -> float:
    return float(min(hi, max(lo, median * math.exp(sigma * rng.standard_normal()))))


def draw_drivers(profile: DemandProfile, n_chargers: int, days: int, *, seed: int, start_day: int = 0,
                 voltage_v: float = 230.0, charger_max_a: float = 16.0, charger_phases: int = 3) -> list:
    """Drivers of ``days`` days for ``n_chargers`` chargers, sorted by arrival (day 0 = ``start_day``
    of the week, 0 = Monday). The drivers of n chargers are a subset of those of n + 1."""
    weights = np.array([a[0] for a in profile.arrival], dtype=float)
    weights /= weights.sum()
    mix = list(profile.ev_mix.items())
    mix_w = np.array([w for _, w in mix], dtype=float)
    mix_w /= mix_w.sum()
    out = []
    salt = sum(map(ord, profile.name))
    for d in range(days):
        dow = (start_day + d) % 7
        rate = profile.sessions_per_charger_day[0 if dow < 5 else (1 if dow == 5 else 2)]
        for k in range(n_chargers):
            # one generator per (day, charger): charger k's drivers are the same in every sweep
            # point (common random numbers: a larger count adds drivers, it does not redraw them)
            rng = np.random.default_rng([int(seed), d, k, salt])
            n = int(rng.random() < rate) if rate <= 1 else int(rng.poisson(rate))
            for _ in range(n):
                c = int(rng.choice(len(weights), p=weights))
                _, mean_h, sd_h = profile.arrival[c]
                hour = float(np.clip(mean_h + sd_h * rng.standard_normal(), 0.0, 23.99))
                dwell = _lognormal(rng, *profile.dwell_h)
                wish = _lognormal(rng, *profile.energy_kwh)
                phases, ev_a = EV_TYPES[mix[int(rng.choice(len(mix), p=mix_w))][0]]
                eff_phases = min(phases, charger_phases)
                eff_a = min(ev_a, charger_max_a)
                rate_kw = eff_phases * eff_a * voltage_v / 1000
                arrive = int((d * 24 + hour) * 3_600_000) // 60_000 * 60_000
                depart = arrive + int(dwell * 3_600_000) // 60_000 * 60_000
                stay_h = (depart - arrive) / 3_600_000          # as rounded to whole minutes
                need = math.floor(min(wish, 0.9 * stay_h * rate_kw) * 1000) / 1000
                out.append(Driver(arrive, depart, need, round(wish, 3), eff_phases, eff_a))
    out.sort(key=lambda x: (x.arrive_ms, x.depart_ms, x.need_kwh))
    return out
