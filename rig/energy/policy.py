"""The energy layer the site controller calls before ``Allocator.step``: site caps from the contract
and the capacity tariff, the battery's dispatch, the price-aware deferral of flexible sessions.

It never changes the core; it changes what the core is told (DESIGN.md's contract stays whole):

- **Site cap** (contracted capacity, and the capacity-tariff budget of the open 15-minute window):
  a virtual load is added to each phase of the main meter's reading, so the core sees the limit
  minus that load as its room. ``cap_kw`` split evenly over the three phases is the per-phase room:
  the import (sum of the phases) is then at most ``cap_kw`` whatever the unbalance (conservative on
  unbalanced sites). The core keeps every guarantee (minimum currents, rotation, decreases first).
- **Battery**: the battery is a real source on the main circuit (the plant or the planning
  simulator applies its power). The layer decides its power for the next cycle and tells the core
  in the same cycle: the meter reading is adjusted by the change (old minus new battery power), so
  a battery that stops discharging is accounted for before the EVs are given more, never after.
  Dispatch: discharge by the EVs' shortfall under the cap (peak shaving); charge only from room the
  EVs do not want (never taking current from a car), and, with a tariff, only at the cheapest price
  of the next 24 h or from PV surplus (export).
- **Price-aware deferral**: a session with a known departure and energy need is reported to the
  core as ``unavailable`` (the core gives it 0 A and counts its measured draw) while a cheaper
  price comes before the latest moment it can start, and only while it keeps its slack:
  ``departure - now - cycle >= need / (assumed_rate x its max power) + guard``. A session without
  a departure or a need is never deferred (nothing proves it would not miss its departure).
"""
from __future__ import annotations

from .config import EnergySpec, contract_kw_at, price_at
from .ledger import PeakTracker

DEMANDING = ("connected_idle", "charging", "ev_suspended")
SCAN_MS = 15 * 60_000      # price look-ahead resolution


def min_price_ahead(tariff, t_from_abs_ms: int, t_to_abs_ms: int) -> float | None:
    """Lowest price of the tariff in [t_from, t_to] (checked at every quarter hour and at both ends)."""
    if t_to_abs_ms < t_from_abs_ms:
        return None
    best = price_at(tariff, t_to_abs_ms)
    t = (t_from_abs_ms // SCAN_MS) * SCAN_MS
    if t < t_from_abs_ms:
        t += SCAN_MS
    best = min(best, price_at(tariff, t_from_abs_ms))
    while t <= t_to_abs_ms:
        best = min(best, price_at(tariff, t))
        t += SCAN_MS
    return best


def may_defer(now_abs_ms: int, departure_in_s, need_kwh, max_kw: float, tariff, policy, cycle_ms: int) -> bool:
    """Whether a session may be held back this cycle (pure: the property tests call this).

    True only if (1) departure and need are known and the need is positive, (2) after this cycle
    the session still has ``need / (assumed_rate x max_kw) + guard`` before its departure, and
    (3) a strictly cheaper price comes before the latest moment it can start."""
    if departure_in_s is None or need_kwh is None or need_kwh <= 0 or max_kw <= 0:
        return False
    rate_kw = max_kw * policy.assumed_rate
    need_ms = need_kwh / rate_kw * 3_600_000
    slack_ms = departure_in_s * 1000 - need_ms - policy.guard_ms - cycle_ms
    if slack_ms < 0:
        return False
    now_price = price_at(tariff, now_abs_ms)
    cheapest = min_price_ahead(tariff, now_abs_ms + cycle_ms, now_abs_ms + cycle_ms + int(slack_ms))
    return cheapest is not None and cheapest < now_price - 1e-9


class EnergyManager:
    def __init__(self, site, spec: EnergySpec, *, start_abs_ms: int = 0, battery=None):
        self.site, self.spec = site, spec
        self.start_abs_ms = int(start_abs_ms)
        self.v = site.params.voltage_v
        roots = [i for i, c in enumerate(site.circuits) if c.parent < 0]
        self.root_i = roots[0]
        self.root = site.circuit_names[self.root_i]
        rc = site.circuits[self.root_i]
        self.root_room_a = [(lim - rc.margin_ma) / 1000 for lim in rc.limit_ma]
        if spec.battery is not None and battery is None:
            battery = spec.battery.build()
        self.battery = battery
        self.battery_kw = 0.0            # the power the battery holds now (decided last cycle)
        ct = spec.capacity_tariff
        self.peaks = PeakTracker(ct.window_ms if ct else 900_000, self.start_abs_ms)
        self.max_kw = {n: k.max_ma / 1000 * k.phases * self.v / 1000 for n, k in zip(site.charger_names, site.chargers)}
        self.deferred: set = set()
        self.released_until: dict = {}
        self.last_ms = None
        self.stats = {"deferred_cycles": 0, "capped_cycles": 0, "battery_discharge_cycles": 0,
                      "battery_charge_cycles": 0}
        self.last = {}                   # the last cycle's decisions (for traces)

    # ------------------------------------------------------------------ caps
    def cap_kw(self, t_abs_ms: int) -> float | None:
        caps = []
        if self.spec.contract is not None:
            caps.append(contract_kw_at(self.spec.contract, t_abs_ms))
        ct = self.spec.capacity_tariff
        if ct is not None:
            target = max(ct.target_kw or 0.0, ct.floor_kw, self.peaks.month_peak(t_abs_ms))
            if target > 0:
                caps.append(self.peaks.allowed_kw(t_abs_ms, target))
        return min(caps) if caps else None

    # ------------------------------------------------------------------ the hook
    def before_step(self, now_ms: int, meters: dict, chargers: dict, cycle_ms: int | None = None):
        """Adjusted (meters, chargers) for ``Allocator.step``; decides the battery's next power
        (``self.battery_kw``; the plant applies it from now on)."""
        cycle_ms = int(cycle_ms or self.site.cycle_ms)
        t_abs = self.start_abs_ms + int(now_ms)
        meters = dict(meters)
        chargers = {n: dict(r) for n, r in chargers.items()}
        reading = meters.get(self.root)
        # the measured import since the last cycle, for the capacity-tariff budget
        if reading is not None and self.last_ms is not None and now_ms > self.last_ms:
            self.peaks.add(self.start_abs_ms + self.last_ms, sum(reading) * self.v / 1000, now_ms - self.last_ms)
        self.last_ms = now_ms
        decision = {"cap_kw": None, "battery_kw": 0.0, "deferred": []}
        # price-aware deferral
        pol, tariff = self.spec.policy, self.spec.tariff
        if pol is not None and tariff is not None:
            for name, r in chargers.items():
                if r.get("state") not in DEMANDING:
                    self.deferred.discard(name)
                    self.released_until.pop(name, None)
                    continue
                ok = now_ms >= self.released_until.get(name, -1) and may_defer(
                    t_abs, r.get("departure_s"), r.get("energy_need_kwh"), self.max_kw[name], tariff, pol, cycle_ms)
                if ok:
                    self.deferred.add(name)
                    r["state"] = "unavailable"
                    decision["deferred"].append(name)
                elif name in self.deferred:      # released: stays released for a guard time (no flapping)
                    self.deferred.discard(name)
                    self.released_until[name] = now_ms + pol.guard_ms
            if decision["deferred"]:
                self.stats["deferred_cycles"] += 1
        if reading is None:
            # no fresh main reading: the core runs on its fallback base; the battery stops
            # (its change is part of what the fallback base must cover)
            new_kw = self.battery.feasible_kw(0.0, cycle_ms / 1000) if self.battery else 0.0
            self.battery_kw = new_kw
            decision["battery_kw"] = new_kw
            self.last = decision
            return meters, chargers
        cap = self.cap_kw(t_abs)
        decision["cap_kw"] = cap
        # the battery: plan its power for the next cycle
        new_kw = 0.0
        if self.battery is not None:
            new_kw = self._dispatch(t_abs, reading, chargers, cap, cycle_ms)
        offset = [(self.battery_kw - new_kw) * 1000 / (3 * self.v)] * 3
        self.battery_kw = new_kw
        decision["battery_kw"] = new_kw
        if cap is not None:
            per_phase = cap * 1000 / (3 * self.v)
            extra = [max(0.0, room - per_phase) for room in self.root_room_a]
            if any(e > 0 for e in extra):
                self.stats["capped_cycles"] += 1
            offset = [o + e for o, e in zip(offset, extra)]
        meters[self.root] = [m + o for m, o in zip(reading, offset)]
        self.last = decision
        return meters, chargers

    def _dispatch(self, t_abs: int, reading, chargers: dict, cap, cycle_ms: int) -> float:
        v = self.v
        grid_kw = sum(reading) * v / 1000                       # measured import (battery included)
        ev_kw = sum(sum(r.get("current_a", [0, 0, 0])) * v / 1000 for r in chargers.values())
        base_kw = grid_kw + self.battery_kw - ev_kw             # site load without EVs and battery
        wanted_kw = sum(self.max_kw[n] for n, r in chargers.items() if r.get("state") in DEMANDING)
        room_kw = sum(self.root_room_a) * v / 1000
        if cap is not None:
            room_kw = min(room_kw, cap)
        shortfall = base_kw + wanted_kw - room_kw
        dt_s = cycle_ms / 1000
        if shortfall > 0:
            kw = self.battery.feasible_kw(shortfall, dt_s)
            if kw > 0:
                self.stats["battery_discharge_cycles"] += 1
            return kw
        spare = -shortfall
        tariff = self.spec.tariff
        cheap = tariff is None or base_kw < 0 or \
            price_at(tariff, t_abs) <= min_price_ahead(tariff, t_abs, t_abs + 24 * 3_600_000) + 1e-9
        if spare > 0 and cheap:
            kw = self.battery.feasible_kw(-spare, dt_s)
            if kw < 0:
                self.stats["battery_charge_cycles"] += 1
            return kw
        return 0.0
