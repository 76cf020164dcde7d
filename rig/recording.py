"""What a run leaves for the compliance checkers: ground truth and decisions as columns in memory.

One :class:`Recording` per run. The runner calls :meth:`Recording.sample` once per sample (every
cycle): the true currents of every circuit (from the plant, or from instruments when a bench has
them), and per charger the controller's set-point, the current its PWM signals, its true currents
and its state. :meth:`Recording.finish` adds the timestamped event logs of every charger firmware
(contactor open/close, PWM changes, faults, watchdog fallbacks: ms resolution), the timeline steps
that were applied, the vehicle sessions and the controller's failed transactions.

Checkers (:mod:`dlbrig.rig.compliance`) read only this object, so a verdict can be recomputed from a
saved recording, and a checker can be tested on a hand-made recording of a bad DUT.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ChargerSeries:
    sp: list = field(default_factory=list)          # controller set-point (A); None when not written
    pwm: list = field(default_factory=list)         # current the PWM signals (A); 0 when PWM is off
    current: list = field(default_factory=lambda: [[], [], []])   # true current per conductor (A)
    status: list = field(default_factory=list)      # allocator vocabulary (charging, ...)
    reason: list = field(default_factory=list)      # the allocator's reason ("" when none)


@dataclass
class Recording:
    scenario: str
    cycle_ms: int
    circuit_names: list
    charger_names: list
    limits_a: dict                                   # circuit -> [L1, L2, L3] A (the fuse rating)
    margin_a: dict                                   # circuit -> A
    min_current_a: dict                              # charger -> A
    phase_map: dict                                  # charger -> site phase per conductor
    charger_circuit: dict                            # charger -> circuit
    parent: dict                                     # circuit -> parent circuit or None
    t_ms: list = field(default_factory=list)
    circuit_current: dict = field(default_factory=dict)   # circuit -> [[L1...], [L2...], [L3...]] A
    chargers: dict = field(default_factory=dict)          # charger -> ChargerSeries
    steps: list = field(default_factory=list)             # (t_ms, text): applied timeline steps and plant events
    evse_events: dict = field(default_factory=dict)       # charger -> [(t_ms, kind, data)]
    sessions: list = field(default_factory=list)          # dicts, as in summary.json
    failures: list = field(default_factory=list)          # controller's failed transactions (t_ms, device, op, error)
    params: dict = field(default_factory=dict)            # the site's core parameters (ms, mA)
    ground_truth: str = "models"                          # or "instruments"
    fallback_base_a: dict = field(default_factory=dict)   # circuit -> [3] A assumed while its meter is stale
    # instruments (rig.visa): what each charger said about its own current, per sample (None: no
    # reading), and which instrument measured each charger conductor ("wt.3"); empty without instruments
    reported: dict = field(default_factory=dict)           # charger -> [[L1...], [L2...], [L3...]] A
    measured_by: dict = field(default_factory=dict)        # charger -> [source per conductor or None]

    @classmethod
    def for_site(cls, scenario_name: str, site) -> "Recording":
        names = site.circuit_names
        rec = cls(
            scenario=scenario_name, cycle_ms=site.cycle_ms, circuit_names=list(names),
            charger_names=list(site.charger_names),
            limits_a={n: [v / 1000 for v in c.limit_ma] for n, c in zip(names, site.circuits)},
            margin_a={n: c.margin_ma / 1000 for n, c in zip(names, site.circuits)},
            min_current_a={n: k.min_ma / 1000 for n, k in zip(site.charger_names, site.chargers)},
            phase_map={n: list(k.phase_map[:k.phases]) for n, k in zip(site.charger_names, site.chargers)},
            charger_circuit={n: names[k.circuit] for n, k in zip(site.charger_names, site.chargers)},
            parent={n: (names[c.parent] if c.parent >= 0 else None) for n, c in zip(names, site.circuits)},
            params=dict(vars(site.params)),
            fallback_base_a={n: [v / 1000 for v in c.fallback_base_ma] for n, c in zip(names, site.circuits)},
        )
        rec.circuit_current = {n: [[], [], []] for n in names}
        rec.chargers = {n: ChargerSeries() for n in site.charger_names}
        return rec

    def sample(self, t_ms: int, truth: dict, chargers: dict, result) -> None:
        """``truth``: circuit -> [3] A; ``chargers``: name -> ChargePoint-like (currents_a(), status,
        evse.applied_current_a); ``result``: the allocator's Result (or None in the safe state)."""
        self.t_ms.append(t_ms)
        for name, cur in truth.items():
            series = self.circuit_current[name]
            for p in range(3):
                series[p].append(cur[p])
        for name in self.charger_names:
            cp = chargers[name]
            s = self.chargers[name]
            r = result.chargers[name] if result is not None else None
            s.sp.append(r.current_a if r is not None else None)
            s.pwm.append(float(getattr(cp.evse, "applied_current_a", 0.0) or 0.0))
            cur = cp.currents_a()
            for i in range(3):
                s.current[i].append(cur[i])
            s.status.append(cp.status)
            s.reason.append(r.reason if r is not None else "")

    def finish(self, plant, controller=None) -> None:
        for name, cp in plant.chargers.items():
            self.evse_events[name] = [(e.t_ms, e.kind, dict(e.data)) for e in cp.events]
        self.steps = [(t, text) for t, text in plant.events_log]
        if controller is not None:
            self.failures = [(f.t_ms, f.device, f.op, f.error) for f in controller.failures]

    # ---- helpers for checkers ------------------------------------------------------------------
    def subtree_chargers(self, circuit: str) -> list:
        out = []
        for k, c in self.charger_circuit.items():
            while c is not None:
                if c == circuit:
                    out.append(k)
                    break
                c = self.parent[c]
        return out
