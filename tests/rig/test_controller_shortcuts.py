"""The controller's and the allocator face's per-cycle shortcuts against the plain paths.

* The scan reuses last cycle's list of a charger's currents while the driver hands back the same
  reading object (decode_shared), and makes a new one as soon as the reading changes.
* Meters are read through the scan's direct path too; a fault on the meter's link is a failed
  read as before (and no reading for that cycle).
* The write loop's per-driver facts (heartbeat interval, heartbeat by set-point, phase
  register) are found after configure() and found again after a restart's configure().
* ``Allocator.step`` on plain-dict readings (the inline path: mA of unchanged amps reused,
  session data of the common case converted without a call) decides as the general path does
  for the same readings given as a dict subclass (which takes ``_to_ma`` / ``_session_flat``),
  step after step, including readings that must not be taken (NaN, out of range, bools,
  negative or missing session data); ``step_shared`` reuses a circuit's result object only
  while its outputs are unchanged.
"""
from __future__ import annotations

import asyncio
import math
import random

from dlbrig.core import Allocator, Site
from dlbrig.firmware_sim.profiles.driver import ChargerReading, driver_for
from dlbrig.rig.clock import VirtualClock
from dlbrig.rig.controller import Endpoint, SiteController
from dlbrig.rig.links import CommFault, FastLink
from dlbrig.rig.plant import Plant
from dlbrig.rig.scenario import load_scenario
from test_controller import cycles

SCENARIO = """\
name: controller_shortcuts
start: "Mon 10:00"
duration: 3m
site:
  circuits:
    - {name: main, limit_a: 60, meter: true, fallback_base_a: [20, 20, 20]}
    - {name: sub, parent: main, limit_a: 32}
  chargers:
    - {name: cp1, circuit: sub, min_a: 6, max_a: 16, failsafe_a: 6}
    - {name: cp2, circuit: sub, min_a: 6, max_a: 16, failsafe_a: 8}
    - {name: cp3, circuit: main, min_a: 6, max_a: 16, failsafe_a: 6}
meters:
  - {circuit: main, profile: em24, transport: rtu}
chargers:
  - {charger: cp1, profile: alfen_ng9xx, transport: tcp}
  - {charger: cp2, profile: keba_p30, transport: tcp}
  - {charger: cp3, profile: abb_terra_ac, transport: tcp}
loads:
  - {circuit: main, kind: constant, peak_a: 10}
vehicles:
  - {id: a, preset: sedan_3p, charger: cp1, arrive: "+0s"}
  - {id: b, preset: sedan_3p, charger: cp2, arrive: "+0s"}
  - {id: c, preset: compact_1p, charger: cp3, arrive: "+0s"}
"""


def _build(tmp_path):
    path = tmp_path / "controller_shortcuts.yaml"
    path.write_text(SCENARIO)
    sc = load_scenario(str(path))
    site = Site.from_dict(sc.site)
    clock = VirtualClock()
    plant = Plant(sc, site, caches=True)
    eps = []
    for name, dev in plant.devices.items():
        link = FastLink(name, dev.image, clock, plant.comm)
        eps.append(Endpoint(name, dev.kind, driver_for(dev.profile, dev.unit, memo=True), link, dev.unit))
    ctrl = SiteController(site, eps, clock, session_info=plant.session_info)
    return clock, plant, ctrl


def test_currents_list_follows_the_reading_object(tmp_path):
    clock, plant, ctrl = _build(tmp_path)
    reused = renewed = 0
    last = {}
    for t in range(0, 90_000, 1000):
        cycles(clock, plant, ctrl, 1, start=t)
        for name, reading in ctrl.last_readings["chargers"].items():
            r, cur = ctrl._seen[name]
            assert reading["current_a"] is cur and cur == list(r.currents_a)
            if name in last:
                if last[name][0] is r:
                    assert cur is last[name][1]
                    reused += 1
                else:
                    assert cur is not last[name][1]
                    renewed += 1
            last[name] = (r, cur)
    assert reused > 100 and renewed > 3


def test_a_changed_reading_object_gets_a_new_list():
    """A driver whose decode returns a new object each time (no memo): never reused."""
    site = Site.from_dict({"circuits": [{"name": "main", "limit_a": 40}],
                           "chargers": [{"name": "cp", "circuit": "main", "min_a": 6, "max_a": 16}]})
    readings = iter([ChargerReading("charging", [10.0, 10.0, 10.0]), ChargerReading("charging", [10.0, 10.0, 10.0])])

    class Link:
        def read_many_shared(self, unit, plan):
            return []

    class Drv:
        heartbeat_interval_s = None
        heartbeat_is_setpoint = False

        def read_plan_view(self):
            return ()

        def decode_shared(self, responses):
            return next(readings)

        def failsafe_writes(self, *a):
            return []

        def setpoint_writes(self, amps):
            return []

        def phase_writes(self, phases):
            return []

    ctrl = SiteController(site, [Endpoint("cp", "charger", Drv(), Link(), 1)], VirtualClock())
    asyncio.run(ctrl.cycle(0))
    first = ctrl.last_readings["chargers"]["cp"]["current_a"]
    asyncio.run(ctrl.cycle(1000))
    second = ctrl.last_readings["chargers"]["cp"]["current_a"]
    assert first == second and first is not second


def test_a_fault_on_the_meter_link_is_a_failed_read(tmp_path):
    clock, plant, ctrl = _build(tmp_path)
    cycles(clock, plant, ctrl, 5)
    assert "main" in ctrl.last_readings["meters"] and not ctrl.failures
    plant.comm.set("main", CommFault("exception", None, code=4))
    cycles(clock, plant, ctrl, 2, start=5000)
    assert "main" not in ctrl.last_readings["meters"]
    assert [f.op for f in ctrl.failures if f.device == "main"] == ["read", "read"]
    plant.comm.set("main", None)
    cycles(clock, plant, ctrl, 1, start=7000)
    assert "main" in ctrl.last_readings["meters"]


def test_write_facts_are_the_drivers_after_each_configure(tmp_path):
    clock, plant, ctrl = _build(tmp_path)
    cycles(clock, plant, ctrl, 3)

    def facts():
        return [(ep.name, hb, sp, sw) for ep, _, _, hb, sp, sw in ctrl._out_scan]

    want = [(ep.name, None if ep.driver.heartbeat_interval_s is None else ep.driver.heartbeat_interval_s * 1000,
             ep.driver.heartbeat_is_setpoint, ep.driver.phase_writes(3) != []) for ep in ctrl.chargers]
    assert facts() == want
    assert [f[3] for f in want] == [True, True, False]      # the ABB has no phase register
    # a restart configures again (another failsafe timeout: other intervals)
    ctrl.site.params.charger_timeout_ms *= 3
    ctrl.restart()
    cycles(clock, plant, ctrl, 1, start=3000)
    want2 = [(ep.name, None if ep.driver.heartbeat_interval_s is None else ep.driver.heartbeat_interval_s * 1000,
              ep.driver.heartbeat_is_setpoint, ep.driver.phase_writes(3) != []) for ep in ctrl.chargers]
    assert facts() == want2 != want


# --- the allocator's dict face ---------------------------------------------------------------
SITE = {"circuits": [{"name": "main", "limit_a": 63, "meter": True},
                     {"name": "a", "parent": "main", "limit_a": 32},
                     {"name": "b", "parent": "main", "limit_a": 32}],
        "chargers": [{"name": f"k{i}", "circuit": "a" if i < 3 else "b", "min_a": 6, "max_a": 16}
                     for i in range(6)]}


class Reading(dict):
    """The same reading, not a plain dict: step()'s general path."""


def _same(r1, r2):
    assert r1.rejected == r2.rejected
    assert {n: (c.setpoint_ma, c.phases, c.reason, c.flags) for n, c in r1.chargers.items()} == \
        {n: (c.setpoint_ma, c.phases, c.reason, c.flags) for n, c in r2.chargers.items()}
    assert {n: (c.allocated_a, c.headroom_a, c.base_a, c.power_headroom_a, c.status, c.flags)
            for n, c in r1.circuits.items()} == \
        {n: (c.allocated_a, c.headroom_a, c.base_a, c.power_headroom_a, c.status, c.flags)
         for n, c in r2.circuits.items()}


def _reading(rng, held):
    """A charger reading; ``held`` (the last amps) comes back often, as a steady EV's does."""
    cur = held if held is not None and rng.random() < 0.6 else \
        [round(rng.uniform(0, 16), 3) for _ in range(3)]
    r = {"state": rng.choice(["charging", "charging", "connected_idle", "ev_suspended"]), "current_a": list(cur)}
    odd = rng.random()
    if odd < 0.03:
        r["current_a"][rng.randrange(3)] = math.nan
    elif odd < 0.06:
        r["current_a"][rng.randrange(3)] = 5000.0
    elif odd < 0.08:
        r["current_a"][rng.randrange(3)] = -0.0
    elif odd < 0.10:
        r["current_a"] = [1, 2, 3]
    elif odd < 0.11:
        r["current_a"] = [True, 1.0, 1.0]
    elif odd < 0.12:
        r["current_a"][0] = -0.7
    s = rng.random()
    if s < 0.6:
        r["departure_s"] = rng.uniform(0, 30000)
        r["energy_need_kwh"] = rng.uniform(0, 40)
    elif s < 0.65:
        r["departure_s"] = -5.0
        r["energy_need_kwh"] = 3.0
    elif s < 0.7:
        r["departure_s"] = None
        r["energy_need_kwh"] = float("inf")
    elif s < 0.75:
        r["energy_need_kwh"] = 7
    elif s < 0.8:
        r["departure_s"] = 3e6
    return r


def test_plain_dict_readings_decide_as_the_general_path():
    site = Site.from_dict(SITE)
    fast, general = Allocator(site), Allocator(site)
    rng = random.Random(5)
    held = {}
    hits = 0
    for step in range(400):
        t = 1000 * step
        meters = {"main": [rng.uniform(5, 40) for _ in range(3)]}
        chargers = {}
        for i in range(6):
            if rng.random() < 0.05:
                continue            # no reading this step
            r = _reading(rng, held.get(i))
            held[i] = r["current_a"]
            chargers[f"k{i}"] = r
        before = list(fast._last_ma)
        got = fast.step_shared(t, meters=meters, chargers=chargers)
        want = general.step(t, meters=meters, chargers={n: Reading(r) for n, r in chargers.items()})
        hits += sum(a is b and a is not None for a, b in zip(before, fast._last_ma))
        _same(got, want)
    assert hits > 100       # the reuse of unchanged amps was taken


def test_step_shared_reuses_only_unchanged_circuits():
    site = Site.from_dict(SITE)
    alloc = Allocator(site)
    steady = {f"k{i}": {"state": "charging", "current_a": [10.0, 10.0, 10.0]} for i in range(6)}
    r1 = alloc.step_shared(0, meters={"main": [30.0, 30.0, 30.0]}, chargers=steady)
    r2 = alloc.step_shared(1000, meters={"main": [31.0, 30.0, 30.0]}, chargers=steady)
    ref = Allocator(site)
    ref.step(0, meters={"main": [30.0, 30.0, 30.0]}, chargers=steady)
    _same(r2, ref.step(1000, meters={"main": [31.0, 30.0, 30.0]}, chargers=steady))
    for name in r2.circuits:
        a, b = r1.circuits[name], r2.circuits[name]
        fields = lambda c: (c.allocated_a, c.headroom_a, c.base_a, c.power_headroom_a, c.status, c.flags)
        assert (a is b) == (fields(a) == fields(b)), name
    assert r1.circuits["main"] is not r2.circuits["main"]
