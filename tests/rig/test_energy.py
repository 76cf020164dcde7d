"""The energy layer: schedules, peak tracking, cost, the price-aware policy's guarantee (property
tests), caps through the core, the battery's accounting, and the planning simulator end to end."""
from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from dlbrig.core import Allocator, Site
from dlbrig.rig.energy import (EnergyManager, EnergySpec, Ledger, PeakTracker, PriceAware, Tariff, may_defer,
                               parse_days, price_at)
from dlbrig.rig.energy.config import MS_PER_DAY, PricePeriod
from dlbrig.rig.energy.policy import aggregate_feasible

H = 3_600_000
TOU = {"default": 0.30, "periods": [{"days": "all", "from": "17:00", "to": "21:00", "price": 0.45},
                                    {"days": "all", "from": "23:00", "to": "06:00", "price": 0.15}]}


# ------------------------------------------------------------------ schedules
def test_days_and_through_midnight_periods():
    assert parse_days("mon-fri") == frozenset(range(5))
    assert parse_days("fri-mon") == frozenset({4, 5, 6, 0})
    assert parse_days("sat,sun") == parse_days("weekend")
    with pytest.raises(ValueError, match="days"):
        parse_days("someday")
    t = Tariff.model_validate({"default": 0.3, "periods": [{"days": "fri", "from": "22:00", "to": "06:00", "price": 0.1}]})
    assert price_at(t, 4 * MS_PER_DAY + 23 * H) == 0.1          # Friday evening
    assert price_at(t, 5 * MS_PER_DAY + 5 * H) == 0.1           # Saturday morning: Friday's night
    assert price_at(t, 5 * MS_PER_DAY + 23 * H) == 0.3          # Saturday evening: not listed
    assert price_at(t, 3 * MS_PER_DAY + 5 * H) == 0.3           # Thursday morning


period = st.builds(lambda d, a, b, p: {"days": d, "from": f"{a // 60:02d}:{a % 60:02d}",
                                       "to": f"{b // 60:02d}:{b % 60:02d}", "price": p},
                   st.sampled_from(["all", "mon-fri", "sat,sun", "tue", "sun-tue"]),
                   st.integers(0, 1439), st.integers(0, 1439), st.floats(0, 1))


@settings(max_examples=60, deadline=None)
@given(st.lists(period, max_size=4), st.lists(st.integers(0, 4 * 7 * MS_PER_DAY), min_size=1, max_size=20))
def test_weekly_array_matches_the_period_rule(periods, times):
    """The per-minute array (fast path) against the first-match rule of _Period.covers."""
    t = Tariff.model_validate({"default": 0.5, "periods": periods})
    for x in times:
        expected = next((p.price for p in t.periods if p.covers(x)), 0.5)
        assert price_at(t, x) == pytest.approx(expected)


def test_bad_energy_blocks_name_the_field():
    with pytest.raises(ValidationError, match="price_aware needs a tariff"):
        EnergySpec.model_validate({"price_aware": True})
    with pytest.raises(ValidationError, match="time of day"):
        EnergySpec.model_validate({"tariff": {"default": 0.3, "periods": [{"from": "25:00", "to": "01:00", "price": 1}]}})
    with pytest.raises(ValidationError, match="divide a day"):
        EnergySpec.model_validate({"capacity_tariff": {"eur_per_kw_month": 4, "window": "7m"}})
    with pytest.raises(ValidationError, match="min_soc"):
        EnergySpec.model_validate({"battery": {"capacity_kwh": 10, "soc": 0.01}})


# ------------------------------------------------------------------ peaks and cost
def test_peak_tracker_windows_months_and_budget():
    pt = PeakTracker(15 * 60_000, start_abs_ms=0, month_ms=MS_PER_DAY)
    pt.add(0, 40.0, 5 * 60_000)                   # 5 min at 40 kW, then 10 min at 10 kW: avg 20
    pt.add(5 * 60_000, 10.0, 10 * 60_000)
    pt.add(15 * 60_000, 30.0, 15 * 60_000)        # next window: 30
    # mid-window budget: 7.5 min used at 30 kW of a 20 kW target -> (5 - 3.75) kWh over 7.5 min = 10 kW
    pt.add(MS_PER_DAY, 30.0, 7 * 60_000 + 30_000)
    assert pt.allowed_kw(MS_PER_DAY + 7 * 60_000 + 30_000, 20.0) == pytest.approx(10.0)
    pt.finish()
    assert pt.month_peaks[0] == pytest.approx(30.0)
    assert pt.month_peaks[1] == pytest.approx(15.0)   # 3.75 kWh in a 15-min window


def test_ledger_cost_capacity_and_contract():
    spec = EnergySpec.model_validate({"tariff": TOU, "contract": {"kw": 50},
                                      "capacity_tariff": {"eur_per_kw_month": 5, "floor_kw": 2.5}})
    led = Ledger(spec)
    led.add(18 * H, 60.0, H, ev_kw=0.0)           # 1 h at 60 kW in the 0.45 period, base alone over
    led.add(2 * H, 40.0, H, ev_kw=10.0)           # 1 h at 40 kW at 0.15
    led.add(3 * H, 55.0, 60_000, ev_kw=5.0)       # 1 min over the contract with EVs charging
    s = led.summary()
    assert s["energy_cost_eur"] == pytest.approx(60 * 0.45 + 40 * 0.15 + 55 / 60 * 0.15, abs=0.01)
    assert s["peak_15min_kw"] == pytest.approx(60.0)
    assert s["capacity_cost_eur"] == pytest.approx(60 * 5)
    assert s["contract_exceedance_s"] == pytest.approx(3660) and s["contract_exceedance_with_ev_s"] == 60


# ------------------------------------------------------------------ the price-aware policy's guarantee
POLICY = PriceAware(assumed_rate=0.5, guard="30m")
TARIFF = Tariff.model_validate(TOU)


@settings(max_examples=400, deadline=None)
@given(now=st.integers(0, 7 * MS_PER_DAY), dep=st.floats(0, 30 * 3600), need=st.floats(0, 100),
       max_kw=st.floats(1, 50), cycle_s=st.sampled_from([1, 10, 60]), share=st.none() | st.floats(0, 50))
def test_a_deferred_session_can_still_finish(now, dep, need, max_kw, cycle_s, share):
    """Whatever the inputs: a deferred session keeps need / rate + guard before its departure after
    this cycle; a session that would miss even at full power is never deferred."""
    cycle_ms = cycle_s * 1000
    deferred = may_defer(now, dep, need, max_kw, TARIFF, POLICY, cycle_ms, share)
    rate = max_kw * POLICY.assumed_rate if share is None else min(max_kw * POLICY.assumed_rate, share)
    if deferred:
        assert need > 0 and rate > 0
        assert dep * 1000 - cycle_ms - POLICY.guard_ms >= need / rate * H - 1e-6
    if need > 0 and need / max_kw * H > dep * 1000 - cycle_ms:
        assert not deferred


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 20 * 3600), st.floats(0, 60), st.floats(1, 22)), max_size=8), st.floats(0, 100))
def test_aggregate_feasibility_is_the_edf_bound(sessions, room):
    ok = aggregate_feasible(sessions, room, 30 * 60_000, 60_000)
    total, bound_holds = 0.0, True
    for dep, need, max_kw in sorted(sessions):
        window_h = max(0.0, (dep * 1000 - 60_000 - 30 * 60_000) / H)
        total += min(need, max_kw * window_h)
        bound_holds &= total <= room * window_h + 1e-6
    assert ok == bound_holds
    # more room never turns a feasible set infeasible
    if ok:
        assert aggregate_feasible(sessions, room + 10, 30 * 60_000, 60_000)


def test_defers_only_towards_a_cheaper_period():
    evening, night = 18 * H, 23 * H + 30 * 60_000
    # 20 kWh, 11 kW, leaving at 07:00: plenty of slack and cheap night ahead -> deferred
    assert may_defer(evening, 13 * 3600, 20, 11, TARIFF, POLICY, 60_000)
    # already in the cheapest period: nothing cheaper ahead
    assert not may_defer(night, 7 * 3600, 20, 11, TARIFF, POLICY, 60_000)
    # unknown departure or need: never
    assert not may_defer(evening, None, 20, 11, TARIFF, POLICY, 60_000)
    assert not may_defer(evening, 13 * 3600, None, 11, TARIFF, POLICY, 60_000)
    # leaves at 20:30, inside the expensive period: no cheaper time before its latest start
    assert not may_defer(evening, 2.5 * 3600, 2, 11, TARIFF, POLICY, 60_000)
    # leaves at 22:30: the 21:00 shoulder price is cheaper and early enough
    assert may_defer(evening, 4.5 * 3600, 2, 11, TARIFF, POLICY, 60_000)


# ------------------------------------------------------------------ the layer in front of the core
def _site(n=4):
    return Site.from_dict({"voltage_v": 230, "cycle_s": 1, "circuits": [
        {"name": "main", "limit_a": 100, "meter": True, "fallback_base_a": 60}],
        "chargers": [{"name": f"cp{i}", "circuit": "main", "min_a": 6, "max_a": 32} for i in range(n)]})


def _readings(n=4, **extra):
    return {f"cp{i}": {"state": "connected_idle", "current_a": [0, 0, 0], **extra} for i in range(n)}


def test_contract_cap_is_respected_by_the_core():
    site = _site()
    mgr = EnergyManager(site, EnergySpec.model_validate({"contract": {"kw": 40}}))
    alloc = Allocator(site)
    base_a = 20.0
    res = None
    for t in range(0, 5000, 1000):
        m, c = mgr.before_step(t, {"main": [base_a] * 3}, _readings())
        res = alloc.step(t, meters=m, chargers=c)
    ev_kw = sum(r.current_a * 3 * 230 / 1000 for r in res.chargers.values())
    assert ev_kw > 0
    assert base_a * 3 * 230 / 1000 + ev_kw <= 40 + 1e-6
    # without the layer the same core hands out the whole main
    free = Allocator(site)
    for t in range(0, 5000, 1000):
        r2 = free.step(t, meters={"main": [base_a] * 3}, chargers=_readings())
    assert base_a * 3 * 230 / 1000 + sum(r.current_a * 3 * 230 / 1000 for r in r2.chargers.values()) > 40


def test_deferred_sessions_get_nothing_and_urgent_ones_charge():
    site = _site(2)
    spec = EnergySpec.model_validate({"tariff": TOU, "price_aware": True})
    mgr = EnergyManager(site, spec)
    alloc = Allocator(site)
    c = {"cp0": {"state": "connected_idle", "current_a": [0, 0, 0], "departure_s": 13 * 3600, "energy_need_kwh": 10},
         "cp1": {"state": "connected_idle", "current_a": [0, 0, 0], "departure_s": 1800, "energy_need_kwh": 10}}
    m, c2 = mgr.before_step(18 * H, {"main": [10, 10, 10]}, c)
    assert c2["cp0"]["state"] == "unavailable" and c2["cp1"]["state"] == "connected_idle"
    assert c["cp0"]["state"] == "connected_idle"       # the caller's readings are not changed
    res = alloc.step(0, meters=m, chargers=c2)
    assert res.chargers["cp0"].current_a == 0 and res.chargers["cp1"].current_a > 0


def test_battery_change_is_told_to_the_core_in_the_same_cycle():
    site = _site()
    spec = EnergySpec.model_validate({"contract": {"kw": 30}, "battery": {"capacity_kwh": 50, "soc": 0.9}})
    mgr = EnergyManager(site, spec)
    m, _ = mgr.before_step(0, {"main": [20, 20, 20]}, _readings())
    assert mgr.battery_kw > 0                       # EVs want more than the contract: discharge
    per_phase_cap = 30_000 / (3 * 230)
    # the core sees the battery's help at once: reading lowered by its power, raised by the cap
    expected = 20 - mgr.battery_kw * 1000 / (3 * 230) + (100 - per_phase_cap)
    assert m["main"][0] == pytest.approx(expected)
    # the battery stops (empty): the core is told in the cycle it stops, not one later
    before = mgr.battery_kw
    mgr.battery.energy_kwh = mgr.battery.min_soc * mgr.battery.capacity_kwh
    m2, _ = mgr.before_step(1000, {"main": [20 - before * 1000 / 690] * 3}, _readings())
    assert mgr.battery_kw == 0
    assert m2["main"][0] == pytest.approx(20 + (100 - per_phase_cap))


# ------------------------------------------------------------------ end to end in the planning simulator
@pytest.fixture(scope="module")
def hotel():
    from dlbrig.rig.plan import PROFILES, site_from_dict
    site = site_from_dict({"name": "h", "main": {"limit_a": 160, "margin_a": 3},
                           "base_load": {"kind": "hotel", "peak_a": 100, "unbalance": 0.05}})
    return site, PROFILES["hotel"]


def _sim(hotel, energy, days=4, n=8):
    from dlbrig.rig.plan import simulate
    site, prof = hotel
    return simulate(site, n, prof, days, seed=3, energy=energy)


def test_price_aware_costs_less_and_serves_as_many(hotel):
    plain = _sim(hotel, {"tariff": TOU})
    aware = _sim(hotel, {"tariff": TOU, "price_aware": True})
    assert aware["energy_layer"]["deferred_cycles"] > 0
    # the EVs' energy moves to the night: their mean price drops by more than a fifth
    assert aware["ev_price_eur_per_kwh"] < 0.8 * plain["ev_price_eur_per_kwh"]
    assert aware["energy_cost_eur"] < plain["energy_cost_eur"]
    assert aware["served_share"] == plain["served_share"] == 1.0


def test_capacity_target_and_battery(hotel):
    spec = {"capacity_tariff": {"eur_per_kw_month": 5, "target_kw": 60}}
    plain = _sim(hotel, {})
    capped = _sim(hotel, spec)
    with_battery = _sim(hotel, dict(spec, battery={"capacity_kwh": 150}))
    # the hotel's own evening load sets a peak above the target; the cap keeps EVs from adding to it
    assert capped["peak_15min_kw"] < plain["peak_15min_kw"] - 20
    # the battery covers the base load's part above the target too
    assert with_battery["peak_15min_kw"] <= 60.5 < capped["peak_15min_kw"]
    assert with_battery["battery"]["discharged_kwh"] > 0
    assert with_battery["capacity_cost_eur"] < capped["capacity_cost_eur"]


def test_contract_check_fails_without_the_layer(hotel, monkeypatch):
    """The contract check is not vacuous: with the layer bypassed, EVs push the import over it."""
    spec = {"contract": {"kw": 80}}
    ok = _sim(hotel, spec, days=2)
    assert ok["contract_exceedance_with_ev_s"] == 0 and ok["main_over_s"] == 0
    monkeypatch.setattr(EnergyManager, "before_step", lambda self, now, m, c, cycle_ms=None: (m, c))
    bad = _sim(hotel, spec, days=2)
    assert bad["contract_exceedance_with_ev_s"] > 0


# ------------------------------------------------------------------ the energy block in a rig run
EXAMPLE = __import__("pathlib").Path(__file__).parents[2] / "examples" / "hotel_energy.yaml"


def test_energy_block_in_a_fast_rig_run(tmp_path):
    from dlbrig.rig.runner import run_fast
    from dlbrig.rig.scenario import load_scenario
    sc = load_scenario(str(EXAMPLE), duration="25m")
    s = run_fast(sc, tmp_path)
    e = s["energy"]
    assert e["layer"]["capped_cycles"] > 0 and e["layer"]["deferred_cycles"] > 0
    assert e["contract_exceedance_with_ev_s"] == 0
    assert e["battery"]["discharged_kwh"] > 0           # evening: EVs and the hotel want more than 70 kW
    assert s["circuits"]["main"]["max_over_a"] == 0
    plain = run_fast(load_scenario("base_load_step", duration="1m"), tmp_path / "plain")
    assert "energy" not in plain


def test_energy_block_errors_and_wire_mode(tmp_path):
    from click.testing import CliRunner

    from dlbrig.rig.cli import main
    from dlbrig.rig.scenario import ScenarioError, load_scenario
    bad = tmp_path / "bad.yaml"
    bad.write_text(EXAMPLE.read_text().replace("price_aware: {assumed_rate: 0.5, guard: 30m}",
                                               "price_aware: {assumed_rate: 2}"))
    with pytest.raises(ScenarioError, match=r"bad.yaml:\d+: energy.price_aware"):
        load_scenario(str(bad))
    unmetered = tmp_path / "unmetered.yaml"
    unmetered.write_text("name: u\nduration: 1m\nsite:\n  circuits: [{name: main, limit_a: 63}]\n"
                         "  chargers: [{name: cp1, circuit: main, max_a: 16}]\nenergy: {contract: {kw: 20}}\n")
    with pytest.raises(ScenarioError, match=r"unmetered.yaml:6: energy: needs a meter on the main circuit 'main'"):
        load_scenario(str(unmetered))
    r = CliRunner().invoke(main, ["run", str(EXAMPLE), "--mode", "wire", "--duration", "10s"])
    assert r.exit_code == 2 and "fast mode only" in r.output
