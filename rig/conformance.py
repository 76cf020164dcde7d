"""Core conformance scenarios: the seed guide's situations run in-process against the built-in core.

This is what ``make certify`` runs until the certification suite with emulated hardware exists (see
README). Each scenario drives :class:`~dlbrig.core.Allocator` on a virtual 1 s clock with a small plant
(EVs that follow their set-point after a delay and draw 95-100 % of it, a building base load, a meter
that sums them) and checks, at every cycle, on the *true* currents of the plant:

- strict limit: every circuit phase stays at or below its limit, except inside a settle window after a
  disturbance the controller did not cause (a base-load step);
- minimum current: every set-point is 0 or within [min, max];
- service: no waiting EV goes without charging longer than the starvation bound, and no EV is started
  more often than max_starts_per_hour.

A naive controller (equal split that hands freed current over at once) runs through the same checks
as the negative control: the suite must fail it, or the checks prove nothing.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

from ..core import Allocator, Site

CYCLE_MS = 1000


@dataclass
class Event:
    at_s: int
    kind: str          # "base" (new base per phase, A) | "meter_stale" (seconds) | "lose" (charger)
    arg: object


@dataclass
class Scenario:
    name: str
    title: str
    spec: dict
    duration_s: int
    base_a: list
    evs: dict                        # charger -> (arrival_s, phases of the EV)
    events: list = field(default_factory=list)
    settle_s: int = 8                # cycle + EV reaction after an uncontrolled disturbance
    starvation_bound_s: int | None = None


@dataclass
class Verdict:
    scenario: str
    title: str
    passed: bool
    findings: list
    stats: dict


def _site(limit_a, n, extra=None, **params):
    spec = {"policy": "fair", "circuits": [{"name": "main", "limit_a": limit_a, "meter": True,
                                            "fallback_base_a": [40, 40, 40]}],
            "chargers": [{"name": f"cp{i + 1}", "circuit": "main", "max_a": 32} for i in range(n)]}
    spec.update(params)
    if extra:
        extra(spec)
    return spec


SCENARIOS = [
    Scenario("five-evs-100a", "Five EVs on a 100 A connection share it without crossing the limit",
             _site(100, 5), 600, [10, 10, 10], {f"cp{i + 1}": (i * 30, 3) for i in range(5)}),
    Scenario("base-load-step", "A 30 A base-load step is absorbed within the settle window",
             _site(100, 5), 600, [10, 10, 10], {f"cp{i + 1}": (0, 3) for i in range(5)},
             [Event(300, "base", [40, 40, 40])]),
    Scenario("stale-meter", "A stale meter switches to the fallback base load; recovery after the hold",
             _site(100, 5), 600, [10, 10, 10], {f"cp{i + 1}": (0, 3) for i in range(5)},
             [Event(200, "meter_stale", 60), Event(215, "base", [35, 35, 35])], settle_s=0),
    Scenario("lost-charger", "A charger that stops answering is counted at max(set-point, failsafe)",
             _site(100, 5), 600, [10, 10, 10], {f"cp{i + 1}": (0, 3) for i in range(5)},
             [Event(200, "lose", "cp1")]),
    Scenario("scarcity-rotation", "Twelve EVs on 40 A for two hours: rotation, nobody starves",
             _site(40, 12, rotation_period_s=900, min_on_s=120, min_off_s=60, max_starts_per_hour=6),
             7200, [4, 4, 4], {f"cp{i + 1}": (0, 3) for i in range(12)},
             starvation_bound_s=900 + 120 + 60),
]


class NaiveController:
    """Negative control: equal split of the limit minus measured base, freed current handed over at once,
    stale meters ignored (keeps using the last value)."""

    def __init__(self, site: Site):
        self.site = site
        self.last_meter = [0.0, 0.0, 0.0]

    def step(self, now_ms, meters=None, chargers=None):
        if meters and "main" in meters:
            self.last_meter = meters["main"]
        chargers = chargers or {}
        ev = [sum(r["current_a"][p] for r in chargers.values()) for p in range(3)]
        base = max(self.last_meter[p] - ev[p] for p in range(3))
        limit = self.site.circuits[0].limit_ma[0] / 1000
        wanting = [n for n, r in chargers.items() if r["state"] in ("charging", "connected_idle")]
        share = (limit - base) / max(1, len(wanting))
        out = {n: (min(32.0, max(0.0, share)) if n in wanting else 0.0) for n in self.site.charger_names}
        return out


def run_scenario(sc: Scenario, controller: str = "builtin", seed: int = 1) -> Verdict:
    rng = random.Random(seed)
    site = Site.from_dict(sc.spec)
    alloc = Allocator(site) if controller == "builtin" else NaiveController(site)
    limit = [v / 1000 for v in site.circuits[0].limit_ma]
    names = site.charger_names
    draw = {n: [0.0, 0.0, 0.0] for n in names}
    pending = {n: [] for n in names}          # (apply_at_ms, current) set-points in flight
    factor = {n: rng.uniform(0.95, 1.0) for n in names}
    delay_ms = {n: rng.randrange(1000, 6000, 1000) for n in names}   # EVs react in 1-5 s
    base = list(sc.base_a)
    meter_silent_until, lost = -1, set()
    disturbance_at = -10**9
    findings, starts, waiting_since, longest_wait = [], {n: [] for n in names}, {}, 0
    was_on = {n: False for n in names}
    overshoot_as = 0.0
    for t in range(0, sc.duration_s * 1000, CYCLE_MS):
        for ev in sc.events:
            if ev.at_s * 1000 == t:
                if ev.kind == "base":
                    base = list(ev.arg)
                    if t >= meter_silent_until:   # a change the meter shows is a disturbance to settle
                        disturbance_at = t
                elif ev.kind == "meter_stale":
                    meter_silent_until = t + ev.arg * 1000
                elif ev.kind == "lose":
                    lost.add(ev.arg)
        plugged = {n for n, (arr, _) in sc.evs.items() if arr * 1000 <= t}
        # the plant: each EV follows its set-point after its own reaction delay
        for n in names:
            while pending[n] and pending[n][0][0] <= t:
                _, sp = pending[n].pop(0)
                phases = sc.evs.get(n, (0, 3))[1]
                draw[n] = [sp * factor[n] if p < phases else 0.0 for p in range(3)]
        true = [base[p] + sum(draw[n][p] for n in names) for p in range(3)]
        for p in range(3):
            over = true[p] - limit[p]
            if over > 1e-9:
                overshoot_as += over * CYCLE_MS / 1000
                if t - disturbance_at > sc.settle_s * 1000:
                    findings.append(f"t={t // 1000}s L{p + 1}: {true[p]:.1f} A > limit {limit[p]:.0f} A")
        meters = {} if t < meter_silent_until else {"main": [round(v, 3) for v in true]}
        readings = {}
        for n in names:
            if n in lost:
                continue
            state = ("charging" if any(draw[n]) else "connected_idle") if n in plugged else "disconnected"
            readings[n] = {"state": state, "current_a": [round(v, 3) for v in draw[n]]}
        res = alloc.step(t, meters=meters, chargers=readings)
        sps = {n: (res.chargers[n].current_a if hasattr(res, "chargers") else res[n]) for n in names}
        for n in names:
            sp = sps[n]
            kc = site.chargers[names.index(n)]
            if sp and not (kc.min_ma / 1000 <= sp <= kc.max_ma / 1000):
                findings.append(f"t={t // 1000}s {n}: set-point {sp} A outside [min, max]")
            if n not in lost:
                pending[n].append((t + delay_ms[n], sp))
            on = sp > 0
            if on and not was_on[n]:
                starts[n].append(t)
            was_on[n] = on
            if n in plugged and not on:
                waiting_since.setdefault(n, t)
                longest_wait = max(longest_wait, t - waiting_since[n])
            else:
                waiting_since.pop(n, None)
        if len(findings) > 20:
            break
    if sc.starvation_bound_s is not None and longest_wait > sc.starvation_bound_s * 1000:
        findings.append(f"an EV waited {longest_wait / 1000:.0f} s > bound {sc.starvation_bound_s} s")
    cap = sc.spec.get("max_starts_per_hour")
    if cap:
        for n, ts in starts.items():
            for i in range(len(ts)):
                if sum(1 for u in ts[i:] if u - ts[i] < 3_600_000) > cap:
                    findings.append(f"{n}: more than {cap} starts within an hour")
                    break
    stats = {"overshoot_A_s": round(overshoot_as, 1), "longest_wait_s": longest_wait // 1000,
             "starts": sum(len(v) for v in starts.values())}
    return Verdict(sc.name, sc.title, not findings, findings, stats)


def run_all(controller: str = "builtin", seed: int = 1) -> list:
    return [run_scenario(sc, controller, seed) for sc in SCENARIOS]
