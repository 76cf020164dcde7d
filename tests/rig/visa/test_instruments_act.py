"""The emulated instruments act on the physics (wire-mode coupling, rig.visa.bench.EmulatedBench).

An electronic load bound to an EV conductor decides that conductor's draw (input off: 0 A; CC:
the EV's draw capped at the set-point; an OCP trip latches 0 A until PROT:CLE); an AC source bound
to a circuit phase is that phase's supply (output off or a current-limit trip: phase lost; its
voltage set-point: the phase voltage).  Every action goes over pyvisa to the SCPI servers, every
observation comes back over pyvisa (analyzer, load, source) and Modbus (the charger's and the
meter's own registers), exactly as on a bench.

The physics runs on *virtual* time advanced by the test (``VirtualBench.step``), not on the wall
clock: after a command has been answered (the drivers check ``SYST:ERR?``), N physics ticks later
the outcome is certain, so nothing depends on timing luck.  Each test has its control: the other
conductors / phases, or the same step without the action.
"""
from __future__ import annotations

import asyncio
import sys
import threading
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from bench_site import bench_yaml  # noqa: E402

from dlbrig.core import Site  # noqa: E402
from dlbrig.firmware_sim.profiles import get_profile  # noqa: E402
from dlbrig.rig.modbus import ModbusEmulator, ModbusMaster  # noqa: E402
from dlbrig.rig.modbus.client import DeviceClient  # noqa: E402
from dlbrig.rig.plant import Plant  # noqa: E402
from dlbrig.rig.scenario import load_scenario  # noqa: E402
from dlbrig.rig.visa.bench import BenchClient, EmulatedBench  # noqa: E402
from dlbrig.rig.visa.server import InstrumentEmulator  # noqa: E402
from dlbrig.rig.wire import serve_plant  # noqa: E402

pytestmark = pytest.mark.timeout(120)
TICK_MS = 100


class VirtualBench:
    """The bench site's plant, Modbus servers and emulated instruments on a background loop; the
    plant advances only when the test says so."""

    def __init__(self, tmp_path):
        self.sc = load_scenario(str(bench_yaml(tmp_path, duration="1h", ac_source=True)))
        self.plant = Plant(self.sc, Site.from_dict(self.sc.site))
        self.ebench = EmulatedBench(self.sc, self.plant)
        self.modbus = ModbusEmulator(clock=lambda: self.plant.now_ms)
        serve_plant(self.plant, self.modbus)
        self.inst = InstrumentEmulator()
        self.ebench.serve(self.inst)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self._run(self.modbus.start())
        self._run(self.inst.start())
        self.master = None
        res = {e["device"]: e["resource"] for e in self.inst.endpoints()}
        self.bench = BenchClient(self.sc, res, armed=True)
        self.bench.open()
        self.d = self.bench.drivers

    def _run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def step(self, ms: int, follow: bool = True) -> None:
        """Advance the physics by ``ms`` in 100 ms ticks, coupling the instruments every tick (as
        wire mode's physics task); ``follow``: then the rig programs the loads (as its cycle).
        Every instrument answers ``*OPC?`` first: whatever was written to it has been executed
        (a write alone may still sit in a socket buffer)."""
        self.sync()

        async def go():
            t0 = self.plant.now_ms
            for t in range(t0 + TICK_MS, t0 + ms + 1, TICK_MS):
                self.plant.advance(t)
                self.ebench.couple(t)
        self._run(go())
        if follow:
            self.bench.follow(self.plant)

    def sync(self) -> None:
        for d in self.d.values():
            assert d.query("*OPC?").strip() == "1"

    def cycles(self, n: int, follow: bool = True) -> None:
        for _ in range(n):
            self.step(1000, follow)

    def points(self, device: str, *names) -> dict:
        dev = self.plant.devices[device]
        ep = next(e for e in self.modbus.endpoints() if e["device"] == device)

        async def go():
            m = ModbusMaster(ep["host"], ep["port"], transport="tcp", timeout_s=5.0, retries=1)
            await m.connect()
            try:
                c = DeviceClient(m, get_profile(ep["profile"]), dev.unit)
                if names and names[0] == "=":
                    await c.write_point(names[1], names[2])
                    return {}
                return await c.read_points(list(names))
            finally:
                await m.close()
        return self._run(go())

    def analyzer(self, name: str) -> dict:
        return {e: v["irms"] for e, v in self.d[name].read().items()}

    def start(self) -> None:
        """Protections, outputs on, both chargers offered 16 A; the EVs charge at 16 A."""
        self.bench.prepare()
        self.d["wt_cp1"].configure([1, 2, 3])
        self.d["wt_cp2"].configure([1])
        for cp in ("cp1", "cp2"):
            self.points(cp, "=", "setpoint_a", 16.0)
        self.cycles(4)
        assert self.analyzer("wt_cp1")[1] == pytest.approx(16.0, abs=0.05)
        assert self.analyzer("wt_cp2")[1] == pytest.approx(16.0, abs=0.05)

    def close(self) -> None:
        self.bench.safe_off()
        self.bench.close()
        self._run(self.inst.stop())
        self._run(self.modbus.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def vb(tmp_path):
    b = VirtualBench(tmp_path)
    try:
        yield b
    finally:
        b.close()


def test_outputs_start_off_so_nothing_flows_until_the_rig_enables_them(vb):
    for cp in ("cp1", "cp2"):
        vb.points(cp, "=", "setpoint_a", 16.0)
    vb.cycles(3, follow=False)
    # loads off: the EVs are plugged and offered 16 A but draw nothing on the loads' conductors
    # (cp1.1, cp2.1); source off: main L1 is dead (no base load on it either)
    assert vb.plant.chargers["cp2"].currents_a() == [0.0, 0.0, 0.0]
    assert vb.plant.chargers["cp2"].demand_a()[0] == pytest.approx(16.0)   # the EV wants it
    assert vb.plant.chargers["cp1"].currents_a() == [0.0, 16.0, 16.0]      # no load on cp1.2, cp1.3
    assert vb.plant.truth["main"] == [0.0, pytest.approx(8.0 + 16.0), pytest.approx(8.0 + 16.0)]
    vb.start()      # control: enabled, they draw
    assert vb.points("cp1", "current_l1_a")["current_l1_a"] == pytest.approx(16.0, abs=0.1)


def test_load_input_off_stops_the_draw_on_its_conductor_and_on_comes_back(vb):
    vb.start()
    drv = vb.d["load_cp1"]
    drv.write(":LOAD 0")
    drv.check("input off")
    vb.cycles(2)
    wt = vb.analyzer("wt_cp1")
    said = vb.points("cp1", "current_l1_a", "current_l2_a")
    assert wt[1] == pytest.approx(0.0, abs=0.01) and said["current_l1_a"] == pytest.approx(0.0, abs=0.01)
    assert drv.measure()["current_a"] == pytest.approx(0.0, abs=0.01)
    # control: the conductors (and charger) without a load keep drawing
    assert wt[2] == pytest.approx(16.0, abs=0.05) and said["current_l2_a"] == pytest.approx(16.0, abs=0.1)
    assert vb.plant.chargers["cp1"].status == "charging"
    assert vb.analyzer("wt_cp2")[1] == pytest.approx(16.0, abs=0.05)
    # the rig kept the set-point at the EV's demand (not at the 0 A the load let through)
    assert vb.ebench.models["load_cp1"].current_set_a == pytest.approx(16.0)
    drv.enable_output()
    vb.cycles(2)
    assert vb.analyzer("wt_cp1")[1] == pytest.approx(16.0, abs=0.05)
    assert vb.points("cp1", "current_l1_a")["current_l1_a"] == pytest.approx(16.0, abs=0.1)
    assert drv.measure()["current_a"] == pytest.approx(16.0, abs=0.05)


def test_load_set_point_caps_the_draw_and_never_raises_it(vb):
    vb.start()
    drv = vb.d["load_cp1"]
    drv.set_current(10.0)
    vb.cycles(2, follow=False)          # the rig does not reprogram it
    wt = vb.analyzer("wt_cp1")
    assert wt[1] == pytest.approx(10.0, abs=0.05)
    assert vb.points("cp1", "current_l1_a")["current_l1_a"] == pytest.approx(10.0, abs=0.1)
    assert wt[2] == pytest.approx(16.0, abs=0.05) and wt[3] == pytest.approx(16.0, abs=0.05)   # control
    # above the EV's demand the load draws what the EV draws: 16 A under a 16 A PWM
    drv.set_current(30.0)
    vb.cycles(2, follow=False)
    assert vb.analyzer("wt_cp1")[1] == pytest.approx(16.0, abs=0.05)


def _trip_cp2(vb, level_a):
    drv = vb.d["load_cp2"]          # ITECH IT8617: programmable OCP
    drv.write(f"CURR:PROT {level_a:.3f}")
    drv.check("OCP level")
    vb.cycles(1)
    return drv


def test_ocp_trip_latches_the_draw_at_zero_until_cleared(vb):
    vb.start()
    drv = _trip_cp2(vb, 5.0)        # 16 A through a 5 A OCP: trips
    vb.cycles(2)
    assert not drv.output_on()
    assert vb.ebench.models["load_cp2"].prot & vb.ebench.models["load_cp2"].PROT_OCP
    assert vb.analyzer("wt_cp2")[1] == pytest.approx(0.0, abs=0.01)
    assert vb.points("cp2", "current_l1_a")["current_l1_a"] == pytest.approx(0.0, abs=0.01)
    # latched: input on is refused while the protection holds, the draw stays 0
    drv.write("CURR:PROT 17.6")
    drv.write("INP:STAT ON")
    assert drv.errors(), "input on over a latched OCP was accepted"
    vb.cycles(3)
    assert not drv.output_on() and vb.analyzer("wt_cp2")[1] == pytest.approx(0.0, abs=0.01)
    # PROT:CLE, then input on: the EV draws again
    drv.clear_protection()
    drv.enable_output()
    vb.cycles(2)
    assert drv.output_on()
    assert vb.analyzer("wt_cp2")[1] == pytest.approx(16.0, abs=0.05)
    assert vb.points("cp2", "current_l1_a")["current_l1_a"] == pytest.approx(16.0, abs=0.1)


def test_ocp_above_the_draw_does_not_trip(vb):
    vb.start()
    drv = _trip_cp2(vb, 17.0)       # control of the test above: same steps, level above 16 A
    vb.cycles(2)
    assert drv.output_on() and vb.ebench.models["load_cp2"].prot == 0
    assert vb.analyzer("wt_cp2")[1] == pytest.approx(16.0, abs=0.05)


def test_ac_source_output_off_loses_its_phase_and_on_restores_it(vb):
    vb.start()
    src = vb.d["grid_l1"]
    meter = vb.points("main", "current_l1_a", "current_l2_a")
    assert meter["current_l1_a"] == pytest.approx(8.0 + 16.0, abs=0.1)     # base 8 A + cp1 L1
    assert src.measure()["current_a"] == pytest.approx(24.0, abs=0.05)
    src.write("OUTP OFF")
    src.check("output off")
    vb.cycles(3)
    meter = vb.points("main", "current_l1_a", "current_l2_a", "voltage_l1_v")
    assert meter["current_l1_a"] == pytest.approx(0.0, abs=0.01) and meter["voltage_l1_v"] == 0.0
    assert vb.analyzer("wt_cp1")[1] == pytest.approx(0.0, abs=0.01)
    assert vb.points("cp1", "current_l1_a", "voltage_l1_v") == {"current_l1_a": 0.0, "voltage_l1_v": 0.0}
    # control: L2 (cp1's second conductor, cp2, base load) is untouched
    assert meter["current_l2_a"] == pytest.approx(8.0 + 16.0 + 16.0, abs=0.1)
    assert vb.analyzer("wt_cp1")[2] == pytest.approx(16.0, abs=0.05)
    src.enable_output()
    vb.cycles(3)
    assert vb.points("main", "current_l1_a")["current_l1_a"] == pytest.approx(24.0, abs=0.1)
    assert vb.analyzer("wt_cp1")[1] == pytest.approx(16.0, abs=0.05)


def test_ac_source_current_limit_trip_loses_the_phase(vb):
    vb.start()
    src = vb.d["grid_l1"]
    src.write("CURR 30.000")        # above the 24 A on main L1: control, no trip
    src.check("limit 30 A")
    vb.cycles(5)
    assert src.output_on() and vb.analyzer("wt_cp1")[1] == pytest.approx(16.0, abs=0.05)
    src.write("CURR 20.000")        # below it: the AC6800 trips after its 3 s
    src.check("limit 20 A")
    vb.cycles(5)
    assert not src.output_on() and vb.ebench.models["grid_l1"].tripped
    assert vb.analyzer("wt_cp1")[1] == pytest.approx(0.0, abs=0.01)
    assert vb.points("main", "current_l1_a")["current_l1_a"] == pytest.approx(0.0, abs=0.01)


def test_ac_source_voltage_is_the_phase_voltage(vb):
    vb.start()
    assert vb.points("cp1", "voltage_l1_v")["voltage_l1_v"] == pytest.approx(230.0)
    vb.d["grid_l1"].set_voltage(207.0)
    vb.cycles(2)
    assert vb.points("cp1", "voltage_l1_v", "voltage_l2_v") == {"voltage_l1_v": pytest.approx(207.0),
                                                               "voltage_l2_v": pytest.approx(230.0)}
    assert vb.points("main", "voltage_l1_v")["voltage_l1_v"] == pytest.approx(207.0, abs=0.1)
    assert vb.d["wt_cp1"].read()[1]["urms"] == pytest.approx(207.0, abs=0.05)
