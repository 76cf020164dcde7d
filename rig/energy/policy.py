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
  Dispatch: discharge by the shortfall under the cap (peak shaving; with a capacity tariff's
  target, under the target) of the base load plus what the EVs need to finish by their departures
  (3 x the average rate each still needs, so fair sharing still leaves the tight sessions enough);
  charge only from room left after that. With a tariff, it charges only in the cheapest hours of
  the next 24 h (or from PV surplus), and in those hours discharges only when the base load alone
  is above the room. No price arbitrage beyond that.
- **Price-aware deferral**: a session with a known departure and energy need is reported to the
  core as ``unavailable`` (the core gives it 0 A and counts its measured draw) while a cheaper
  price comes before the latest moment it can start, and only while it keeps its slack:
  ``departure - now - cycle >= need / rate + guard``, where ``rate`` is the smaller of
  ``assumed_rate x`` its power (the charger's current on one conductor until the car has been seen
  drawing on three) and its share of the site's room now; and only while all flexible sessions
  together could still be served by their departures from the room the site has now (earliest
  departure first). A session without a departure or a need is never deferred (nothing proves it
  would not miss its departure). Cars that arrive later are not known: deferral can crowd them.
"""
from __future__ import annotations

from .config import EnergySpec, contract_kw_at, price_at
from .ledger import PeakTracker

NEED_FACTOR = 3.0        # the battery leaves EVs this multiple of the average rate they still need
DEMANDING = ("connected_idle", "charging", "ev_suspended")


def min_price_ahead(tariff, t_from_abs_ms: int, t_to_abs_ms: int) -> float | None:
    """Lowest price of the tariff in [t_from, t_to] (minute resolution), None for an empty span."""
    return tariff.min_between(t_from_abs_ms, t_to_abs_ms)


def may_defer(now_abs_ms: int, departure_in_s, need_kwh, max_kw: float, tariff, policy, cycle_ms: int,
              share_kw: float | None = None) -> bool:
    """Whether a session may be held back this cycle (pure: the property tests call this).

    True only if (1) departure and need are known and the need is positive, (2) after this cycle
    the session still has ``need / rate + guard`` before its departure, with ``rate`` the smaller
    of ``assumed_rate x max_kw`` and ``share_kw`` (its share of the site's room, when given), and
    (3) a strictly cheaper price comes before the latest moment it can start."""
    if departure_in_s is None or need_kwh is None or need_kwh <= 0 or max_kw <= 0:
        return False
    rate_kw = max_kw * policy.assumed_rate
    if share_kw is not None:
        rate_kw = min(rate_kw, share_kw)
    if rate_kw <= 0:
        return False
    need_ms = need_kwh / rate_kw * 3_600_000
    slack_ms = departure_in_s * 1000 - need_ms - policy.guard_ms - cycle_ms
    if slack_ms < 0:
        return False
    now_price = price_at(tariff, now_abs_ms)
    cheapest = min_price_ahead(tariff, now_abs_ms + cycle_ms, now_abs_ms + cycle_ms + int(slack_ms))
    return cheapest is not None and cheapest < now_price - 1e-9


def aggregate_feasible(sessions, room_kw: float, guard_ms: int, cycle_ms: int) -> bool:
    """Whether every session can still get its energy by its departure if all of them wait one more
    cycle and the site then gives EVs ``room_kw`` (pure). ``sessions``: (departure_in_s, need_kwh,
    max_kw) each.

    Earliest-departure-first on one shared resource: for each departure d_j (in order), the energy
    of every session leaving by d_j must fit in ``room_kw x (d_j - cycle - guard)``. A session
    counts with what it could take at its own power in that time at best (one that cannot finish
    anyway does not stop the others from being shifted; it is not deferred itself, see may_defer)."""
    total = 0.0
    for dep_s, need, max_kw in sorted(sessions):
        window_h = max(0.0, (dep_s * 1000 - cycle_ms - guard_ms) / 3_600_000)
        total += min(max(0.0, need), max_kw * window_h)
        if total > 1e-9 and total > room_kw * window_h + 1e-9:
            return False
    return True


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
        # per conductor: a session's rate is counted on one conductor until it is seen drawing on
        # more (a 1-phase car on a 3-phase charger gets a third of the charger's power)
        self.conductor_kw = {n: k.max_ma / 1000 * self.v / 1000 for n, k in zip(site.charger_names, site.chargers)}
        self.conductors_seen: dict = {}
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
        as_read = chargers                    # as read (before deferral): what the EVs want
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
            share = self._share_kw(t_abs, reading, chargers)
            room = self._room_kw(t_abs, reading, chargers)
            flexible = [(r["departure_s"], r["energy_need_kwh"], self.max_kw[n]) for n, r in chargers.items()
                        if r.get("state") in DEMANDING and r.get("departure_s") is not None
                        and r.get("energy_need_kwh") is not None]
            # sessions without a departure or a need are not deferred and take room first
            fixed_kw = sum(self.max_kw[n] for n, r in chargers.items() if r.get("state") in DEMANDING
                           and (r.get("departure_s") is None or r.get("energy_need_kwh") is None))
            feasible = aggregate_feasible(flexible, max(0.0, room - fixed_kw), pol.guard_ms, cycle_ms)
            for name, r in chargers.items():
                if r.get("state") not in DEMANDING:
                    self.deferred.discard(name)
                    self.released_until.pop(name, None)
                    self.conductors_seen.pop(name, None)
                    continue
                seen = sum(1 for a in r.get("current_a", [0, 0, 0]) if a >= 1.0)
                self.conductors_seen[name] = max(self.conductors_seen.get(name, 1), seen)
                ok = feasible and now_ms >= self.released_until.get(name, -1) and may_defer(
                    t_abs, r.get("departure_s"), r.get("energy_need_kwh"), self.conductor_kw[name] * self.conductors_seen[name], tariff, pol, cycle_ms, share)
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
            new_kw = self._dispatch(t_abs, reading, as_read, cap, cycle_ms)
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

    def _room_kw(self, t_abs: int, reading, chargers: dict) -> float:
        """The room the site has for EVs now: the cap (or the main's limit) less the base load."""
        if reading is None:
            return 0.0
        v = self.v
        ev_kw = sum(sum(r.get("current_a", [0, 0, 0])) * v / 1000 for r in chargers.values())
        base_kw = sum(reading) * v / 1000 + self.battery_kw - ev_kw
        room = min(self.root_room_a) * 3 * v / 1000
        cap = self.cap_kw(t_abs)
        if cap is not None:
            room = min(room, cap)
        return max(0.0, room - base_kw)

    def _share_kw(self, t_abs: int, reading, chargers: dict) -> float:
        """Each session's share of that room, split over every session that still needs energy:
        the rate a deferred session can count on once the deferred sessions start together."""
        needing = sum(1 for r in chargers.values() if r.get("state") in DEMANDING
                      and (r.get("energy_need_kwh") is None or r.get("energy_need_kwh") > 0))
        return self._room_kw(t_abs, reading, chargers) / max(1, needing)

    def _dispatch(self, t_abs: int, reading, chargers: dict, cap, cycle_ms: int) -> float:
        v = self.v
        grid_kw = sum(reading) * v / 1000                       # measured import (battery included)
        ev_kw = sum(sum(r.get("current_a", [0, 0, 0])) * v / 1000 for r in chargers.values())
        base_kw = grid_kw + self.battery_kw - ev_kw             # site load without EVs and battery
        # what the EVs need to finish by their departures (NEED_FACTOR x the average rate still needed,
        # at most their power; a session without departure or need counts at its full power)
        wanted_kw = 0.0
        for n, r in chargers.items():
            if r.get("state") not in DEMANDING:
                continue
            dep, need = r.get("departure_s"), r.get("energy_need_kwh")
            if dep is None or need is None:
                wanted_kw += self.max_kw[n]
            elif need > 0:
                wanted_kw += min(self.max_kw[n], NEED_FACTOR * need / max(dep / 3600, cycle_ms / 3_600_000))
        room_kw = sum(self.root_room_a) * v / 1000
        if cap is not None:
            room_kw = min(room_kw, cap)
        ct = self.spec.capacity_tariff
        if ct is not None and ct.target_kw:
            # the battery aims at the target itself, so the base load does not set a new peak either
            room_kw = min(room_kw, self.peaks.allowed_kw(t_abs, max(ct.target_kw, ct.floor_kw)))
        tariff = self.spec.tariff
        cheap = tariff is not None and (base_kw < 0 or price_at(tariff, t_abs) <= min_price_ahead(
            tariff, t_abs, t_abs + 24 * 3_600_000) + 1e-9)
        # in the cheapest hours the battery recharges: it discharges then only if the base load
        # alone is above the room (it keeps its energy for the expensive peaks)
        shortfall = (base_kw if cheap else base_kw + wanted_kw) - room_kw
        dt_s = cycle_ms / 1000
        if shortfall > 0:
            kw = self.battery.feasible_kw(shortfall, dt_s)
            if kw > 0:
                self.stats["battery_discharge_cycles"] += 1
            return kw
        spare = room_kw - base_kw - wanted_kw      # room the EVs do not want
        if spare > 0 and (tariff is None or cheap):
            kw = self.battery.feasible_kw(-spare, dt_s)
            if kw < 0:
                self.stats["battery_charge_cycles"] += 1
            return kw
        return 0.0
