"""A naive controller: the negative control of the certification suite (``--dut naive``).

What many simple load managers do: every cycle, split the root circuit's limit minus the measured
base load equally among the chargers that want current, capped at each charger's maximum. It has
the classic faults the suite must catch:

- freed current is handed over at once (no "decreases first, increases after"): when one EV is
  reduced and another raised in the same cycle, both currents flow until the slow EV follows;
- it keeps using the last meter value when the meter goes stale (no failsafe ladder);
- it ignores sub-circuit limits, phase maps and power caps (one number per site);
- a share below the minimum current is sent as is (signalling between 0 and 6 A).

It has the :class:`~dlbrig.core.Allocator` step interface so the same site controller drives it.
"""
from __future__ import annotations

from ..core.allocator import ChargerResult, CircuitResult, Result
from ..core.site import Site


class NaiveAllocator:
    def __init__(self, site: Site, backend: str = "naive"):
        self.site = site
        self.backend = backend
        self.last_meter = None
        root = site.circuits[0]
        self.limit_a = min(root.limit_ma) / 1000
        self.root = site.circuit_names[0]

    def step(self, now_ms, meters=None, chargers=None) -> Result:
        meters = meters or {}
        chargers = chargers or {}
        if self.root in meters:
            self.last_meter = list(meters[self.root])       # stale readings: keep the last one
        ev = [sum(r["current_a"][p] for r in chargers.values()) for p in range(3)]
        base = max((self.last_meter[p] - ev[p]) if self.last_meter else 0.0 for p in range(3))
        wanting = [n for n, r in chargers.items() if r["state"] in ("charging", "connected_idle")]
        share = max(0.0, (self.limit_a - base) / max(1, len(wanting)))
        out = {}
        for name, k in zip(self.site.charger_names, self.site.chargers):
            sp = round(min(k.max_ma / 1000, share), 1) if name in wanting else 0.0
            ma = int(sp * 1000)
            out[name] = ChargerResult(sp, k.phases, "naive equal share", 2, None, None, ma, 1)
        circ = {n: CircuitResult([0.0] * 3, [0.0] * 3, [0.0] * 3, None, "ok", set())
                for n in self.site.circuit_names}
        return Result(now_ms, out, circ, [])
