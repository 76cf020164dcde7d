"""The battery model: limits, state-of-charge bounds, losses, bad parameters."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dlbrig.firmware_sim.battery import Battery


def test_defaults_and_losses():
    b = Battery(100)                       # 0.5 C both ways, 50 % full, 95 % each way
    assert b.max_charge_kw == b.max_discharge_kw == 50
    assert b.step(-40, 3600) == -40        # one hour at 40 kW charging
    assert b.energy_kwh == pytest.approx(50 + 40 * 0.95)
    assert b.step(20, 1800) == 20          # half an hour at 20 kW discharging
    assert b.energy_kwh == pytest.approx(88 - 10 / 0.95)
    assert b.charged_kwh == pytest.approx(40) and b.discharged_kwh == pytest.approx(10)


def test_power_and_energy_limits():
    b = Battery(10, max_charge_kw=3, max_discharge_kw=5, soc=0.5, min_soc=0.1, max_soc=0.9)
    assert b.feasible_kw(9, 60) == 5                       # inverter limit
    assert b.feasible_kw(-9, 60) == -3
    # 4 kWh above min_soc: at most 4 x 0.95 kWh of AC energy in one hour
    assert b.feasible_kw(5, 3600) == pytest.approx(3.8)
    b.step(5, 3600)
    assert b.state_of_charge == pytest.approx(0.1)
    assert b.feasible_kw(1, 60) == 0 and b.step(1, 60) == 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(-200, 200), st.floats(1, 3600)), max_size=40),
       st.floats(0.1, 1), st.floats(0.5, 1))
def test_soc_stays_within_bounds_and_energy_balances(steps, soc, eff):
    b = Battery(50, soc=min(max(soc, 0.05), 0.95), charge_efficiency=eff, discharge_efficiency=eff)
    e0 = b.energy_kwh
    for p, dt in steps:
        got = b.step(p, dt)
        assert abs(got) <= abs(p) + 1e-9 and (got == 0 or (got > 0) == (p > 0))
        assert b.min_soc - 1e-9 <= b.state_of_charge <= b.max_soc + 1e-9
    # stored energy = start + charged x eff - discharged / eff (up to float dust)
    assert b.energy_kwh == pytest.approx(e0 + b.charged_kwh * eff - b.discharged_kwh / eff, abs=1e-6)


@pytest.mark.parametrize("kw, field", [({"capacity_kwh": 0}, "capacity_kwh"),
                                       ({"capacity_kwh": 10, "soc": 0.99}, "soc"),
                                       ({"capacity_kwh": 10, "charge_efficiency": 1.2}, "charge_efficiency"),
                                       ({"capacity_kwh": 10, "max_charge_kw": -1}, "max_charge_kw")])
def test_bad_parameters_name_the_field(kw, field):
    with pytest.raises(ValueError, match=field):
        Battery(**kw)
