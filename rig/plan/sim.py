"""The planning simulator: weeks of a site at a 60-second cycle, with the core itself deciding.

The full rig (every register through its codec, EV and charger firmware at 1 s) runs an office day
in minutes; a plan needs 30 days x several charger counts. So this simulator keeps the part that
decides the answer, the allocator core (``dlbrig.core.Allocator``, C backend) with the energy layer
(:class:`dlbrig.rig.energy.EnergyManager`) in front of it exactly as the site controller calls
them, and replaces the rest with simple models:

- **cycle** 60 s (``cycle_s``); base load, PV and battery power are held constant over a cycle;
- **EVs** follow their set-point at once (no ramp, no 61851 delays) up to their own on-board
  charger's phases and current, at constant power until their requested energy is in (no taper);
  a 1-phase car on a 3-phase charger draws on the charger's first conductor; charger phase maps
  are rotated (L1-L2-L3, L2-L3-L1, L3-L1-L2) as installers do;
- **meter**: the main's true current each cycle, no noise, no latency (the core's meter latency
  and follow time are set to 0, time-outs to ten cycles);
- **drivers** come from :mod:`.demand`; a driver who finds every charger taken leaves (counted
  as not served); a driver is *served* with at least 99 % of the requested energy by departure.

What it reports is measured on that model's ground truth, per cycle: the import (kW) for peaks,
cost and contract exceedance, and the per-phase current against the main's limit.
"""
from __future__ import annotations

import time

from ...core import Allocator, Site
from ...firmware_sim.loads import PV, BuildingLoad, MS_PER_DAY
from ..energy import EnergyManager, EnergySpec, Ledger
from .demand import DemandProfile, draw_drivers
from .site import PlanSite

MET_FRACTION = 0.99     # a driver counts as served with 99 % of the requested energy by departure
PHASE_ROTATIONS = (["L1", "L2", "L3"], ["L2", "L3", "L1"], ["L3", "L1", "L2"])


def core_site(site: PlanSite, n: int, cycle_s: int) -> Site:
    chargers = []
    for i in range(n):
        pm = PHASE_ROTATIONS[i % 3][:site.charger_phases]
        chargers.append({"name": f"cp{i + 1:03d}", "circuit": "main", "phases": site.charger_phases,
                         "phase_map": pm, "min_a": site.charger_min_a, "max_a": site.charger_max_a,
                         "failsafe_a": site.charger_min_a})
    return Site.from_dict({
        "voltage_v": site.voltage_v, "policy": site.policy, "cycle_s": cycle_s,
        "meter_timeout_s": 10 * cycle_s, "charger_timeout_s": 10 * cycle_s, "recovery_hold_s": 0,
        "follow_time_s": 0, "meter_latency_s": 0,
        "circuits": [{"name": "main", "limit_a": site.limit_a, "margin_a": site.margin_a, "meter": True,
                      "fallback_base_a": site.limit_a}],
        "chargers": chargers})


class _Session:
    __slots__ = ("driver", "charger", "delivered_kwh", "first_ms", "left_ms")

    def __init__(self, driver, charger):
        self.driver, self.charger = driver, charger
        self.delivered_kwh, self.first_ms, self.left_ms = 0.0, None, None


def simulate(site: PlanSite, n_chargers: int, profile: DemandProfile, days: int, *, seed: int = 1,
             cycle_s: int = 60, energy: dict | None = None) -> dict:
    """One charger count for ``days`` days; returns the KPIs (see :func:`kpis`)."""
    wall0 = time.perf_counter()
    spec = EnergySpec.model_validate(energy if energy is not None else site.energy)
    csite = core_site(site, n_chargers, cycle_s)
    alloc = Allocator(csite)
    start_abs = site.start_day * MS_PER_DAY
    mgr = EnergyManager(csite, spec, start_abs_ms=start_abs) if spec.model_dump(exclude_defaults=True) else None
    battery = mgr.battery if mgr is not None else None
    ledger = Ledger(spec, start_abs)
    v = site.voltage_v
    base_model = None
    if site.base_kind != "constant" and site.base_peak_a > 0:
        base_model = BuildingLoad(kind=site.base_kind, peak_a=site.base_peak_a, seed=seed, unbalance=site.unbalance)
    pv_model = PV(kwp=site.pv_kwp, seed=seed) if site.pv_kwp > 0 else None
    drivers = draw_drivers(profile, n_chargers, days, seed=seed, start_day=site.start_day, voltage_v=v,
                           charger_max_a=site.charger_max_a, charger_phases=site.charger_phases)
    names = csite.charger_names
    phase_idx = [[("L1", "L2", "L3").index(p) for p in PHASE_ROTATIONS[i % 3][:site.charger_phases]]
                 for i in range(n_chargers)]
    occupant: list = [None] * n_chargers        # _Session per charger
    draw = [[0.0, 0.0, 0.0] for _ in range(n_chargers)]   # conductor currents this cycle (A)
    sessions, turned_away = [], []
    next_driver = 0
    dt_ms = cycle_s * 1000
    end_ms = days * MS_PER_DAY
    limit = site.limit_a
    over_a_max, over_s = 0.0, 0.0
    t = 0
    while t < end_ms:
        t_abs = start_abs + t
        # departures, then arrivals (a charger freed at t is free for a driver arriving at t)
        for k in range(n_chargers):
            s = occupant[k]
            if s is not None and s.driver.depart_ms <= t:
                s.left_ms = t
                occupant[k] = None
                draw[k] = [0.0, 0.0, 0.0]
        while next_driver < len(drivers) and drivers[next_driver].arrive_ms <= t:
            d = drivers[next_driver]
            next_driver += 1
            k = next((i for i in range(n_chargers) if occupant[i] is None), None)
            if k is None:
                turned_away.append(d)
                continue
            occupant[k] = _Session(d, k)
            sessions.append(occupant[k])
        # the main meter: base + PV + EVs - battery
        base = base_model.current_a(t_abs) if base_model is not None else [site.base_peak_a] * 3
        if pv_model is not None:
            base = [b + p for b, p in zip(base, pv_model.current_a(t_abs))]
        bat_a = (mgr.battery_kw * 1000 / (3 * v)) if battery is not None else 0.0
        meter = [b - bat_a for b in base]
        readings = {}
        for k in range(n_chargers):
            s = occupant[k]
            if s is None:
                readings[names[k]] = {"state": "disconnected", "current_a": [0.0, 0.0, 0.0]}
                continue
            cur = draw[k]
            for i, ph in enumerate(phase_idx[k]):
                meter[ph] += cur[i]
            remaining = s.driver.need_kwh - s.delivered_kwh
            state = "ev_suspended" if remaining <= 1e-9 else ("charging" if max(cur) > 0 else "connected_idle")
            readings[names[k]] = {"state": state, "current_a": list(cur),
                                  "departure_s": max(0.0, (s.driver.depart_ms - t) / 1000),
                                  "energy_need_kwh": max(0.0, remaining)}
        meters = {"main": meter}
        if mgr is not None:
            meters, readings = mgr.before_step(t, meters, readings, dt_ms)
        res = alloc.step(t, meters=meters, chargers=readings)
        # physics over [t, t + dt): EVs follow at once, the battery holds its planned power
        truth = list(base)
        ev_a = 0.0
        for k in range(n_chargers):
            s = occupant[k]
            if s is None:
                continue
            remaining = s.driver.need_kwh - s.delivered_kwh
            sp = res.chargers[names[k]].current_a
            a = min(sp, s.driver.max_a) if remaining > 1e-9 else 0.0
            n_cond = min(s.driver.phases, site.charger_phases)
            kw = a * n_cond * v / 1000
            kwh = kw * cycle_s / 3600
            if kwh > remaining:            # the last bit: the average current over the cycle
                a, kwh = a * remaining / kwh, remaining
            cur = [a if i < n_cond else 0.0 for i in range(3)]
            draw[k] = cur
            if a > 0:
                s.delivered_kwh += kwh
                if s.first_ms is None:
                    s.first_ms = t
            for i, ph in enumerate(phase_idx[k]):
                truth[ph] += cur[i]
            ev_a += sum(cur)
        if battery is not None:
            b = battery.step(mgr.battery_kw, cycle_s)
            truth = [x - b * 1000 / (3 * v) for x in truth]
        over = max(x - limit for x in truth)
        if over > 1e-6:
            over_a_max = max(over_a_max, over)
            over_s += cycle_s
        ledger.add(t_abs, sum(truth) * v / 1000, dt_ms, ev_kw=ev_a * v / 1000)
        t += dt_ms
    for s in sessions:
        if s.left_ms is None:
            s.left_ms = end_ms
    out = kpis(sessions, turned_away, ledger.summary(), end_ms)
    out.update(chargers=n_chargers, days=days, seed=seed, cycle_s=cycle_s, profile=profile.name,
               main_over_a_max=round(over_a_max, 3), main_over_s=over_s,
               battery=None if battery is None else {
                   "capacity_kwh": battery.capacity_kwh, "charged_kwh": round(battery.charged_kwh, 2),
                   "discharged_kwh": round(battery.discharged_kwh, 2), "final_soc": round(battery.state_of_charge, 3)},
               energy_layer=None if mgr is None else dict(mgr.stats),
               wall_s=round(time.perf_counter() - wall0, 2))
    return out


def kpis(sessions, turned_away, ledger: dict, end_ms: int) -> dict:
    """Service KPIs over the drivers who left within the horizon (a car still plugged at the end
    has not reached its departure: it is neither served nor missed, and is counted apart)."""
    done = [s for s in sessions if s.driver.depart_ms <= end_ms]
    turned_away = [d for d in turned_away if d.depart_ms <= end_ms]
    requested = sum(s.driver.need_kwh for s in done)
    delivered = sum(min(s.delivered_kwh, s.driver.need_kwh) for s in done)
    met = sum(s.delivered_kwh + 1e-6 >= MET_FRACTION * s.driver.need_kwh for s in done)
    drivers = len(done) + len(turned_away)
    waits = [((s.first_ms if s.first_ms is not None else s.left_ms) - s.driver.arrive_ms) / 60_000 for s in done]
    out = {
        "drivers": drivers, "sessions": len(done), "turned_away": len(turned_away),
        "open_at_end": len(sessions) - len(done),
        "energy_requested_kwh": round(requested, 2), "energy_delivered_kwh": round(delivered, 2),
        "delivered_share": round(delivered / requested, 4) if requested else None,
        "served_share": round(met / drivers, 4) if drivers else None,
        "wait_mean_min": round(sum(waits) / len(waits), 2) if waits else 0.0,
        "wait_max_min": round(max(waits), 2) if waits else 0.0,
    }
    out.update(ledger)
    return out
