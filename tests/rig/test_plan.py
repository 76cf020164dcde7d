"""Capacity planning: demand model, site files, the simulator's KPIs, the sweep on Dask, the CLI."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from dlbrig.rig.cli import main
from dlbrig.rig.plan import (PROFILES, PlanError, draw_drivers, load_site, parse_counts, profile_from_dict,
                             recommend, run_plan, simulate, site_from_dict)

SMALL = {"name": "small", "main": {"limit_a": 63, "margin_a": 2},
         "base_load": {"kind": "office", "peak_a": 30}, "chargers": {"max_a": 16, "phases": 3}}


def test_demand_is_deterministic_and_scales_with_chargers():
    prof = PROFILES["office"]
    a = draw_drivers(prof, 10, 7, seed=4)
    assert a == draw_drivers(prof, 10, 7, seed=4)
    assert a != draw_drivers(prof, 10, 7, seed=5)
    many = draw_drivers(prof, 40, 7, seed=4)
    assert 3 * len(a) < len(many) < 5 * len(a)
    key = lambda d: (d.arrive_ms, d.depart_ms, d.need_kwh)
    assert {key(d) for d in a} <= {key(d) for d in many}        # more chargers add drivers
    for d in many:
        assert d.depart_ms > d.arrive_ms
        # the request never exceeds what the car could take in 90 % of its stay
        assert d.need_kwh <= 0.9 * (d.depart_ms - d.arrive_ms) / 3.6e6 * d.phases * d.max_a * 0.23 + 1e-3
    weekend = [d for d in draw_drivers(prof, 40, 7, seed=4) if (d.arrive_ms // 86_400_000) % 7 >= 5]
    assert len(weekend) < len(many) / 10          # offices are quiet at the weekend


def test_profile_files_are_checked():
    with pytest.raises(ValueError, match="dwell_h"):
        profile_from_dict({"sessions_per_charger_day": [1, 1, 1], "arrival": [[1, 8, 1]], "dwell_h": [0, 1, 1, 2],
                           "energy_kwh": [10, 0.5, 1, 20]})
    with pytest.raises(ValueError, match="energy_kwh: required"):
        profile_from_dict({"sessions_per_charger_day": [1, 1, 1], "arrival": [[1, 8, 1]], "dwell_h": [8, 0.2, 1, 10]})


def test_site_from_scenario_and_file(tmp_path):
    s = load_site("office")
    assert (s.limit_a, s.margin_a, s.base_kind, s.base_peak_a) == (250, 5, "office", 150)
    p = tmp_path / "site.yaml"
    p.write_text("name: x\nmain: {limit_a: 80}\nbase_load:\n  kind: warehouse\n")
    with pytest.raises(PlanError, match=r"site.yaml:4: base_load.kind: must be one of"):
        load_site(str(p))
    p.write_text("name: x\nmain: {limit_a: 80}\nenergy:\n  battery: {capacity_kwh: -3}\n")
    with pytest.raises(PlanError, match=r"energy.battery.capacity_kwh"):
        load_site(str(p))


def test_counts():
    assert parse_counts("10..60", 10) == [10, 20, 30, 40, 50, 60]
    assert parse_counts("10..25", 10) == [10, 20, 25]
    assert parse_counts("30,10") == [10, 30]
    with pytest.raises(ValueError):
        parse_counts("60..10")


def test_more_chargers_on_a_small_connection_lower_the_service_never_the_limit():
    site = site_from_dict(SMALL)
    few = simulate(site, 3, PROFILES["office"], 3, seed=2)
    many = simulate(site, 24, PROFILES["office"], 3, seed=2)
    assert few["served_share"] == 1.0
    assert many["served_share"] < 0.8                   # 63 A cannot charge 24 commuters
    assert many["wait_max_min"] > few["wait_max_min"]
    assert many["peak_kw"] > few["peak_kw"]
    for r in (few, many):
        assert r["main_over_s"] == 0                    # the core never lets the main go over
        assert r["energy_delivered_kwh"] <= r["energy_requested_kwh"] + 1e-6


def test_recommendation_rules():
    base = {"main_over_s": 0, "contract_exceedance_with_ev_s": 0, "peak_15min_kw": 50.0}
    rs = [dict(base, chargers=10, served_share=1.0), dict(base, chargers=20, served_share=0.96),
          dict(base, chargers=30, served_share=0.97, contract_exceedance_with_ev_s=60),
          dict(base, chargers=40, served_share=0.7)]
    rec = recommend(rs)
    assert rec["chargers"] == 20 and "carries 20 chargers with >= 95 % of drivers served" in rec["text"]
    assert recommend([dict(base, chargers=10, served_share=0.5)])["chargers"] is None


def test_sweep_on_a_dask_scheduler_equals_serial():
    """Through --scheduler: a cluster started apart (two worker processes), reached by its address."""
    from distributed import LocalCluster
    site = site_from_dict(SMALL)
    kw = dict(seed=1)
    serial = run_plan(site, [4, 12], PROFILES["office"], 2, serial=True, **kw)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        dask = run_plan(site, [4, 12], PROFILES["office"], 2, scheduler=cluster.scheduler_address, **kw)
    assert dask["engine"].startswith("Dask cluster at tcp://")
    strip = lambda rs: [{k: v for k, v in r.items() if k != "wall_s"} for r in rs]
    assert strip(serial["results"]) == strip(dask["results"])
    assert serial["recommendation"] == dask["recommendation"]


def test_cli_plan(tmp_path):
    site = tmp_path / "site.yaml"
    site.write_text("name: small\nmain: {limit_a: 63, margin_a: 2}\nbase_load: {kind: office, peak_a: 30}\n")
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["plan", str(site), "--chargers", "3,6", "--days", "2", "--serial",
                                  "--battery-kwh", "20", "--contract-kw", "30", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "chargers with >= 95 % of drivers served" in r.output or "none of the counts" in r.output
    plan = json.loads((out / "plan.json").read_text())
    assert [x["chargers"] for x in plan["results"]] == [3, 6]
    assert plan["site"]["energy"]["battery"]["capacity_kwh"] == 20
    assert all(x["contract_exceedance_with_ev_s"] == 0 for x in plan["results"])
    assert (out / "plan.png").stat().st_size > 1000 and "data:image/png" in (out / "plan.html").read_text()


@pytest.mark.parametrize("args, msg", [
    (["nosuch_site"], "nosuch_site"),
    (["office", "--chargers", "9..3"], "--chargers"),
    (["office", "--profile", "castle"], "--profile"),
])
def test_cli_plan_errors(args, msg):
    r = CliRunner().invoke(main, ["plan", *args, "--serial"])
    assert r.exit_code == 2 and msg in r.output and "Traceback" not in r.output
