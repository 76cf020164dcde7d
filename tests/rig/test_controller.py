"""The site controller: scan-cycle discipline, overruns to the safe state, failsafe set-up, heartbeats,
communication loss, arming. Fast mode (virtual clock, in-memory links through the register maps)."""
from __future__ import annotations

import asyncio
import json

import pytest

from dlbrig.core import Site
from dlbrig.firmware_sim.profiles.driver import driver_for
from dlbrig.rig.clock import VirtualClock
from dlbrig.rig.controller import Endpoint, NotArmed, SiteController
from dlbrig.rig.links import FastLink
from dlbrig.rig.plant import Plant
from dlbrig.rig.runner import run_fast
from dlbrig.rig.scenario import load_scenario

SCENARIO = """\
name: ctrl
start: "Mon 10:00"
duration: 3m
site:
  circuits:
    - {{name: main, limit_a: 40, meter: true, fallback_base_a: [20, 20, 20]}}
  chargers:
    - {{name: cp1, circuit: main, min_a: 6, max_a: 16, failsafe_a: 6}}
    - {{name: cp2, circuit: main, min_a: 6, max_a: 16, failsafe_a: 8}}
meters:
  - {{circuit: main, profile: sdm630, transport: rtu}}
chargers:
  - {{charger: cp1, profile: {profile}, transport: tcp, firmware: {{watchdog_timeout_s: 20}}}}
  - {{charger: cp2, profile: dlbrig_generic, transport: tcp}}
loads:
  - {{circuit: main, kind: constant, peak_a: 10}}
vehicles:
  - {{id: a, preset: sedan_3p, charger: cp1, arrive: "+0s"}}
  - {{id: b, preset: sedan_3p, charger: cp2, arrive: "+0s"}}
timeline:
{timeline}
"""


def scenario(tmp_path, timeline="  - at +2m unplug cp2", profile="dlbrig_generic"):
    path = tmp_path / "ctrl.yaml"
    path.write_text(SCENARIO.format(timeline=timeline, profile=profile))
    return load_scenario(str(path))


def build(sc, **kw):
    site = Site.from_dict(sc.site)
    clock = VirtualClock()
    plant = Plant(sc, site)
    eps = []
    links = {}
    for name, dev in plant.devices.items():
        link = FastLink(name, dev.image, clock, plant.comm)
        links[name] = link
        eps.append(Endpoint(name, dev.kind, driver_for(dev.profile, dev.unit), link, dev.unit,
                            kw.pop("loopback", True) if name == "cp1" else True))
    ctrl = SiteController(site, eps, clock, session_info=plant.session_info, **kw)
    return site, clock, plant, ctrl, links


def cycles(clock, plant, ctrl, seconds, start=0):
    res = None
    for t in range(start, start + seconds * 1000, 1000):
        clock.advance_to(t)
        plant.advance(t)
        res = asyncio.run(ctrl.cycle(t))
    return res


def test_scan_cycle_charges_both_and_configures_failsafe(tmp_path):
    sc = scenario(tmp_path)
    site, clock, plant, ctrl, _ = build(sc)
    res = cycles(clock, plant, ctrl, 60)
    # read all, compute, write all: both EVs charge within the limit, the plant follows
    assert res.chargers["cp1"].current_a > 6 and res.chargers["cp2"].current_a > 6
    assert max(plant.truth["main"]) <= 40
    assert plant.chargers["cp1"].evse.applied_current_a == pytest.approx(res.chargers["cp1"].current_a)
    # start-up wrote each charger's own failsafe (safe current) through its register map
    assert plant.chargers["cp2"].points()["safe_current_a"] == pytest.approx(8.0)
    assert ctrl.stats.cycles == 60 and ctrl.stats.overruns == 0
    assert ctrl.failures == []


def test_repeated_overruns_drive_outputs_to_the_safe_state(tmp_path):
    # every answer of cp2 takes 700 ms: two reads per cycle -> the 1 s cycle overruns
    sc = scenario(tmp_path, timeline="  - at +30s charger cp2 delay 700ms for 20s")
    site, clock, plant, ctrl, _ = build(sc, max_overruns=3)
    cycles(clock, plant, ctrl, 33)
    assert ctrl.stats.overruns == 3 and ctrl.safe_state
    # safe state: no allocation, every charger written its own failsafe current
    assert ctrl.last_result is None
    assert plant.chargers["cp1"].points()["setpoint_a"] == pytest.approx(6.0)
    assert plant.chargers["cp2"].points()["setpoint_a"] == pytest.approx(8.0)
    # the delays end: the cycle recovers and allocation resumes
    res = cycles(clock, plant, ctrl, 30, start=33_000)
    assert not ctrl.safe_state and res is not None
    assert ctrl.stats.safe_state_entries == 1


def test_a_charger_that_stops_answering_is_lost_and_recovers(tmp_path):
    sc = scenario(tmp_path, timeline="  - at +40s charger cp1 offline for 30s")
    site, clock, plant, ctrl, _ = build(sc)
    res = cycles(clock, plant, ctrl, 60)
    assert res.chargers["cp1"].lost and res.chargers["cp1"].reason == "failsafe"
    assert any(f.device == "cp1" and f.op == "read" for f in ctrl.failures)
    res = cycles(clock, plant, ctrl, 40, start=60_000)
    assert not res.chargers["cp1"].lost


def test_a_stale_meter_switches_to_the_fallback_budget(tmp_path):
    sc = scenario(tmp_path, timeline="  - at +30s meter main offline for 60s")
    site, clock, plant, ctrl, _ = build(sc)
    res = cycles(clock, plant, ctrl, 50)
    # the fallback (20 A) plus what the EVs still draw is above the limit until they follow: the
    # circuit reports both facts
    assert {"meter_stale", "overloaded"} <= res.circuits["main"].flags
    assert res.circuits["main"].base_a == [20.0, 20.0, 20.0]
    # fallback 20 A of 40 A: both EVs still fit at their minimum and the limit holds
    assert sum(r.current_a for r in res.chargers.values()) <= 20
    assert max(plant.truth["main"]) <= 40


def test_heartbeats_keep_the_watchdog_fed(tmp_path):
    # Alfen: the set-point register is its heartbeat; a controller that only wrote on change would
    # let the station fall back after its validity time
    sc = scenario(tmp_path, profile="alfen_ng9xx")
    site, clock, plant, ctrl, _ = build(sc)
    cycles(clock, plant, ctrl, 150)
    assert not plant.chargers["cp1"].points()["in_failsafe"]
    assert len(ctrl.last_hb_ms) >= 1


def test_writing_to_a_non_loopback_device_needs_arming(tmp_path):
    sc = scenario(tmp_path)
    site, clock, plant, ctrl, _ = build(sc, loopback=False)
    with pytest.raises(NotArmed, match="--arm"):
        cycles(clock, plant, ctrl, 1)
    site, clock, plant, ctrl, _ = build(sc, loopback=False, armed=True)
    cycles(clock, plant, ctrl, 1)


def test_run_fast_writes_trace_and_summary(tmp_path):
    sc = scenario(tmp_path)
    summary = run_fast(sc, tmp_path / "out")
    lines = (tmp_path / "out" / "trace.csv").read_text().splitlines()
    assert lines[0].startswith("t_s,main.I1_A") and len(lines) == 181
    saved = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert saved["circuits"]["main"]["max_over_a"] == 0
    assert summary["energy_delivered_kwh"] > 0.3
    assert len(saved["sessions"]) == 2
