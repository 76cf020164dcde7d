"""The energy block in a rig run (fast mode): the manager in front of the core, the battery as a
source on the main circuit of the plant, the cost ledger on the ground truth.

``attach(run)`` is called by the runner; it returns None for a scenario without an ``energy:``
block, so runs without one are unchanged.
"""
from __future__ import annotations

from .ledger import Ledger
from .policy import EnergyManager


class BatterySource:
    """The battery as a load component of the plant's main circuit (negative = it supplies).

    The plant asks for ``current_a(t)`` once per tick; the battery holds the power the manager
    planned at the last control cycle over each interval, and its state of charge follows."""

    def __init__(self, manager: EnergyManager, voltage_v: float):
        self.manager, self.v = manager, float(voltage_v)
        self.last_t = None
        self.power_kw = 0.0

    def current_a(self, t_abs_ms: int) -> list:
        if self.last_t is not None and t_abs_ms > self.last_t:
            self.power_kw = self.manager.battery.step(self.power_kw, (t_abs_ms - self.last_t) / 1000)
        if self.last_t is None or t_abs_ms > self.last_t:
            self.last_t = t_abs_ms
            self.power_kw = self.manager.battery_kw        # from now on: what the manager planned
        return [-self.power_kw * 1000 / (3 * self.v)] * 3


class RunEnergy:
    def __init__(self, run):
        sc = run.scenario
        self.site = run.site
        self.start_ms = int(sc.start_ms)
        self.manager = EnergyManager(run.site, sc.energy, start_abs_ms=self.start_ms)
        self.root = self.manager.root
        self.ledger = Ledger(sc.energy, self.start_ms)
        self.v = run.site.params.voltage_v
        if self.manager.battery is not None:
            run.plant.loads[self.root].add(BatterySource(self.manager, self.v))

    def sample(self, t_ms: int, plant, dt_s: float) -> None:
        truth = plant.truth[self.root]
        ev_a = sum(sum(cp.currents_a()) for cp in plant.chargers.values())
        self.ledger.add(self.start_ms + t_ms, sum(truth) * self.v / 1000, int(dt_s * 1000), ev_kw=ev_a * self.v / 1000)

    def summary(self) -> dict:
        out = self.ledger.summary()
        out["layer"] = dict(self.manager.stats)
        b = self.manager.battery
        if b is not None:
            out["battery"] = {"capacity_kwh": b.capacity_kwh, "charged_kwh": round(b.charged_kwh, 3),
                              "discharged_kwh": round(b.discharged_kwh, 3), "final_soc": round(b.state_of_charge, 4)}
        return out


def attach(run):
    return RunEnergy(run) if getattr(run.scenario, "energy", None) is not None else None
