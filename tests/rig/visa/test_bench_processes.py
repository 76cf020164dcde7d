"""Bench safety across processes: devices emulated by ``dlbrig emulate`` in one process, the rig
(``dlbrig run --endpoints --arm``) in another, and this test as a third party asking the emulated
instruments (pyvisa) and chargers (Modbus) for their state.

* during the run, a pyvisa session here reads an analyzer and a load and gets what the charger's
  own registers and the simulation say (steady 16 A on cp1);
* the rig is killed mid-run with SIGINT and with SIGTERM, and also dies of an exception: every
  time the load inputs and the AC source output end up off and both chargers at their safe
  current (6.5 A, a value the allocator never hands out on this site).
"""
from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from bench_site import FAILSAFE_A, bench_yaml  # noqa: E402

from dlbrig.firmware_sim.profiles import get_profile  # noqa: E402
from dlbrig.rig.modbus import ModbusMaster  # noqa: E402
from dlbrig.rig.modbus.client import DeviceClient  # noqa: E402
from dlbrig.rig.visa.drivers import open_driver  # noqa: E402
from rig_cli_helpers import DLBRIG, cli_env, stop_process, wait_for_json_file  # noqa: E402

SPEED = 4.0
pytestmark = pytest.mark.timeout(180)


def _charger_points(eps, names=("cp1", "cp2"), points=("setpoint_a", "current_l1_a")) -> dict:
    async def go():
        out = {}
        for ep in eps:
            if ep["device"] not in names:
                continue
            m = ModbusMaster(ep["host"], ep["port"], transport="tcp", timeout_s=2.0, retries=1)
            await m.connect()
            try:
                out[ep["device"]] = await DeviceClient(m, get_profile(ep["profile"]), ep["unit"]).read_points(list(points))
            finally:
                await m.close()
        return out
    return asyncio.run(go())


def _resources(eps) -> dict:
    return {e["device"]: e["resource"] for e in eps if e["kind"] == "instrument"}


def _wait(cond, deadline_s, what, proc=None):
    end = time.monotonic() + deadline_s
    last = None
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate(timeout=10)
            pytest.fail(f"the rig exited early (rc {proc.returncode}) waiting for {what}:\n{out}\n{err}")
        last = cond()
        if last:
            return last
        time.sleep(0.05)      # polling cadence of a condition with a deadline
    pytest.fail(f"timed out waiting for {what} (last: {last!r})")


@pytest.fixture
def emulated(tmp_path):
    """``dlbrig emulate`` of the bench site (with an AC source) in its own process."""
    path = bench_yaml(tmp_path, ac_source=True, duration="2h")
    ep_file = tmp_path / "ep.json"
    proc = subprocess.Popen([*DLBRIG, "emulate", str(path), "--endpoints", str(ep_file), "--speed", str(SPEED)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(),
                            stdin=subprocess.DEVNULL)
    try:
        eps = wait_for_json_file(ep_file, proc, 60)
        yield path, ep_file, eps
    finally:
        stop_process(proc)


def _start_rig(path, ep_file, out):
    return subprocess.Popen([*DLBRIG, "run", str(path), "--mode", "wire", "--endpoints", str(ep_file), "--arm",
                             "--speed", str(SPEED), "--duration", "1h", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(),
                            stdin=subprocess.DEVNULL)


def _outputs(res) -> dict:
    out = {}
    for name in ("load_cp1", "load_cp2", "grid_l1"):
        d = open_driver(res[name])
        try:
            out[name] = d.output_on()
        finally:
            d.close()
    return out


def test_endpoints_file_lists_the_instruments(emulated):
    _, _, eps = emulated
    inst = {e["device"]: e for e in eps if e["kind"] == "instrument"}
    assert set(inst) == {"load_cp1", "load_cp2", "wt_cp1", "wt_cp2", "grid_l1"}
    assert inst["wt_cp1"]["model"] == "yokogawa_wt500"
    assert inst["load_cp1"]["resource"] == f"TCPIP0::127.0.0.1::{inst['load_cp1']['port']}::SOCKET"
    # emulated, nobody armed them: everything is off
    assert _outputs(_resources(eps)) == {"load_cp1": False, "load_cp2": False, "grid_l1": False}


def _running(eps, res, proc):
    """Wait until the rig has enabled the outputs and cp1 charges at 16 A."""
    _wait(lambda: all(_outputs(res).values()), 60, "outputs enabled by the rig", proc)
    _wait(lambda: _charger_points(eps)["cp1"]["setpoint_a"] == 16.0, 60, "cp1 allocated 16 A", proc)


def _assert_safe(eps, res):
    assert _outputs(res) == {"load_cp1": False, "load_cp2": False, "grid_l1": False}
    pts = _charger_points(eps)
    assert {k: v["setpoint_a"] for k, v in pts.items()} == {"cp1": FAILSAFE_A, "cp2": FAILSAFE_A}


def test_another_process_reads_consistent_values_during_a_run(emulated, tmp_path):
    path, ep_file, eps = emulated
    res = _resources(eps)
    rig = _start_rig(path, ep_file, tmp_path / "out")
    try:
        _running(eps, res, rig)
        wt = open_driver(res["wt_cp1"])
        load = open_driver(res["load_cp1"])
        try:
            wt.configure([1, 2, 3])
            _wait(lambda: (wt.read()[1]["irms"] or 0) > 15.0, 60, "cp1 drawing", rig)
            irms = [wt.read()[e]["irms"] for e in (1, 2, 3)]
            load_a = load.measure()["current_a"]
            said = _charger_points(eps)["cp1"]["current_l1_a"]
        finally:
            wt.close()
            load.close()
        # sedan_3p at its 16 A on-board limit: analyzer, load and the charger's register agree
        assert irms == pytest.approx([16.0, 16.0, 16.0], abs=0.5)
        assert load_a == pytest.approx(irms[0], abs=0.5) and said == pytest.approx(irms[0], abs=0.5)
    finally:
        stop_process(rig, sig=signal.SIGTERM, timeout=30)


@pytest.mark.parametrize("sig,times", [(signal.SIGINT, 1), (signal.SIGTERM, 1), (signal.SIGTERM, 3)],
                         ids=["SIGINT", "SIGTERM", "SIGTERMx3"])
def test_killed_rig_leaves_the_bench_safe(emulated, tmp_path, sig, times):
    path, ep_file, eps = emulated
    res = _resources(eps)
    rig = _start_rig(path, ep_file, tmp_path / "out")
    try:
        _running(eps, res, rig)
        for _ in range(times - 1):          # an impatient operator: repeated signals
            rig.send_signal(sig)
        rc, out, err = stop_process(rig, sig=sig, timeout=30)
    finally:
        if rig.poll() is None:
            rig.kill()
            rig.communicate(timeout=10)
    assert "Traceback" not in err, err
    assert (tmp_path / "out" / "summary.json").exists(), f"exit code {rc}; stderr:\n{err[-3000:]}"
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["interrupted"] is True
    assert summary["exit_safe_state"]["instruments_off"] == {"load_cp1": True, "load_cp2": True, "grid_l1": True}
    _assert_safe(eps, res)


def test_rig_dying_of_an_exception_leaves_the_bench_safe(emulated, tmp_path, monkeypatch):
    from dlbrig.rig.scenario import load_scenario
    from dlbrig.rig.visa import bench
    from dlbrig.rig.wire import run_wire

    path, ep_file, eps = emulated
    res = _resources(eps)
    real_read, calls = bench.BenchClient.read, []

    def failing_read(self):
        calls.append(1)
        if len(calls) == 4:
            # by now the outputs are on (checked here, from the rig's own thread)
            assert all(_outputs(res).values())
            raise RuntimeError("instrument bus fault")
        return real_read(self)
    monkeypatch.setattr(bench.BenchClient, "read", failing_read)
    sc = load_scenario(str(path))
    with pytest.raises(RuntimeError, match="instrument bus fault"):
        run_wire(sc, tmp_path / "out", speed=SPEED, armed=True, endpoints=eps, duration_ms=3_600_000)
    assert len(calls) == 4
    _assert_safe(eps, res)
