"""Fault shutdown of an external charger through an EV-side simulator (``certify --dut modbus-charger
--ev-sim RESOURCE``).

The stand-in is the emulated charger served over Modbus with an emulated EV simulator on its
socket (SCPI), in this process at 10x (as COM-010..012's stand-in); the rig reaches both over real
sockets, acts as controller (Modbus) and as the EV (the simulator), and judges with the same
fault-shutdown / signalling checkers as the built-in mode, fed from the simulator's event log:

- the compliant charger passes every FS case; the non-compliant firmware fails the right ones, and
  each rule (including close within 3 s and the F hold) is shown failing on a bad charger;
- a case the simulator cannot run (missing option) is skipped and says which option;
- on an error or a cancellation the simulator ends safe and the charger at its safe current; SIGINT
  to ``dlbrig certify`` in the middle of a case leaves the simulator in A, no injection, load off;
- the CLI end to end: ``dlbrig emulate --ev-sim`` in another process, ``dlbrig certify --ev-sim``;
  without ``--ev-sim`` the FS cases are skipped with a message naming it; bad options exit 2.
"""
from __future__ import annotations

import asyncio
import copy
import json
import subprocess

import pytest

from rig_cli_helpers import DLBRIG, TRACEBACK, cli_env, dlbrig, stop_process, wait_for_json_file

from dlbrig.firmware_sim import FirmwareFaults
from dlbrig.rig import compliance as C
from dlbrig.rig.certify import ev_side
from dlbrig.rig.certify.catalog import select
from dlbrig.rig.scenario.loader import validate

FS = {c.id: c for c in select("FS-*")}


def _standin(faults=None, firmware=None):
    data = copy.deepcopy(FS["FS-009"].spec)
    data["name"] = "fs-standin"
    if faults:
        data["chargers"][0]["faults"] = faults
    if firmware:
        data["chargers"][0]["firmware"].update(firmware)
    return validate(data, file="<test>")


def _run(sc, ids, **kw):
    return asyncio.run(ev_side.run_on_emulated(sc, [FS[i] for i in ids], **kw))


def _violated(verdicts):
    rules = set()
    for v in verdicts:
        if v.check == "signalling":
            rules |= {"pwm_spacing"} if not v.passed else set()
        for c in v.metrics.get("checks", []):
            if not c["ok"]:
                rules.add(c["rule"])
    return rules


def test_compliant_charger_passes_every_fs_case_judged_from_the_simulators_log():
    res = _run(_standin(), sorted(FS))
    assert set(res) == set(FS)
    for cid, (status, verdicts, note) in res.items():
        assert status == "pass", (cid, [v.summary for v in verdicts], note)
        assert all("EV simulator event log" in v.metrics["judged_from"] for v in verdicts)
    # the deadlines were measured, to the millisecond, at the charger model's own timings
    rules = {}
    for _, verdicts, _ in res.values():
        for v in verdicts:
            for r, info in v.metrics.get("rules", {}).items():
                rules.setdefault(r, []).append(info["worst_ms"])
    assert max(rules["open_after_c_to_b"]) == 50 and max(rules["open_after_a_e_f"]) == 50
    assert max(rules["close_after_b_to_c"]) == 500 and max(rules["force_open_after_pwm_off"]) == 6000
    assert max(rules["rcd_ac"]) == 300 and min(rules["rcd_ac"]) == 40 and rules["rcd_dc"] == [10000]
    assert rules["soft_overcurrent"] == [7001] and min(rules["f_hold_min"]) == 300
    assert set(rules) >= {"diode"}


# the non-compliant knobs: slow contactor (+500 ms), no diode check, ignores the PWM spacing,
# overcurrent never trips (no watchdog: COM-011's business)
NONCOMPLIANT_FAILS = {
    "FS-001": {"open_after_c_to_b"}, "FS-002": {"open_after_a_e_f"}, "FS-003": {"diode"},
    "FS-004": {"open_after_a_e_f"}, "FS-005": {"rcd_dc", "open_after_a_e_f"},
    "FS-006": {"rcd_ac", "open_after_a_e_f"}, "FS-007": {"rcd_ac", "open_after_a_e_f"},
    "FS-008": {"soft_overcurrent"}, "FS-010": {"rcd_ac", "open_after_a_e_f"}, "FS-011": {"pwm_spacing"},
    "FS-012": {"force_open_after_pwm_off"},
}


def test_noncompliant_charger_fails_the_right_fs_cases():
    bad = FirmwareFaults.noncompliant()
    res = _run(_standin(faults={k: getattr(bad, k) for k in vars(bad)}), sorted(FS))
    for cid, (status, verdicts, note) in res.items():
        want = NONCOMPLIANT_FAILS.get(cid, set())
        assert status == ("fail" if want else "pass"), (cid, [v.summary for v in verdicts], note)
        assert _violated(verdicts) == want, (cid, [v.summary for v in verdicts])


def test_slow_close_and_short_f_hold_fail_their_rules():
    """The two rules the non-compliant knobs do not break: close within 3 s after B->C, F held
    >= 300 ms after a fault."""
    res = _run(_standin(firmware={"contactor_close_delay_ms": 4000, "f_hold_ms": 100}), ["FS-009", "FS-010"])
    assert res["FS-009"][0] == "fail" and _violated(res["FS-009"][1]) == {"close_after_b_to_c"}
    assert res["FS-010"][0] == "fail" and _violated(res["FS-010"][1]) == {"close_after_b_to_c", "f_hold_min"}


def test_a_case_the_simulator_cannot_run_is_skipped_naming_the_option():
    res = _run(_standin(), ["FS-001", "FS-005", "FS-008"], options=("CP", "LOG"))
    assert res["FS-001"][0] == "pass"
    assert res["FS-005"][0] == "skipped" and "RCDDC" in res["FS-005"][2] and "has CP, LOG" in res["FS-005"][2]
    assert res["FS-008"][0] == "skipped" and "LOAD" in res["FS-008"][2]


def test_recording_from_a_hand_made_log_infers_the_fault_from_state_f():
    # a charger that closes at +400 ms, then on 30 mA AC trips after 250 ms but opens 200 ms after its F
    log = [(0, "LOAD", 16.0), (0, "CP", "B"), (0, "PWM", 26.667), (1000, "CP", "C"), (1400, "CONTACTOR", 1),
           (5000, "RCDAC", 30.0), (5250, "PWM", 100.0), (5250, "STATEF", 1), (5450, "CONTACTOR", 0),
           (5550, "STATEF", 0)]
    rec = ev_side.recording_from_log(log, 8000)
    (v,) = C.fault_shutdown(rec)
    assert not v.passed
    bad = {c["rule"]: c["measured_ms"] for c in v.metrics["checks"] if not c["ok"]}
    # the fault (F) while closed: open 200 ms later; break time from the leak to the supply removed 450 ms
    assert bad == {"open_after_a_e_f": 200, "rcd_ac": 450}, v.metrics["checks"]
    assert v.metrics["rules"]["close_after_b_to_c"]["worst_ms"] == 400
    fault = next(d for t, k, d in rec.evse_events["charger"] if k == "fault")
    assert fault["name"] == "RCD_AC"
    assert rec.chargers["charger"].current[0][rec.t_ms.index(1400)] == pytest.approx(16.0)


def test_every_exit_path_leaves_the_simulator_safe_and_the_charger_at_its_safe_current(monkeypatch):
    async def scenario():
        async with ev_side.serve_ev_side(_standin(), speed=10) as (target, resource, bench):
            sim = bench.models["evsim_cp1"]
            charger = bench.plant.chargers["cp1"]

            async def boom(b):
                await ev_side._charge(b)
                raise RuntimeError("instrument fell off the bench")
            monkeypatch.setitem(ev_side.PROCEDURES, "FS-001",
                                ev_side.Procedure(("CP", "LOG"), boom, "raises while charging"))
            with pytest.raises(RuntimeError, match="fell off"):
                await ev_side.run_case_external(FS["FS-001"], target, resource)
            assert not sim.output_on and charger.point("setpoint_a") == 6.0
            # cancellation (what Ctrl-C does to asyncio.run) in the middle of a hold
            task = asyncio.ensure_future(ev_side.run_case_external(FS["FS-012"], target, resource))
            for _ in range(2000):
                if sim.cp == "C" and charger.evse.contactor_closed:
                    break
                await asyncio.sleep(0.005)
            assert sim.output_on
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task                 # its finally has run: the simulator and charger are safe
            assert not sim.output_on and sim.stimulus().cp == "A"
            assert charger.point("setpoint_a") == 6.0
    asyncio.run(scenario())


ONE = """name: fs-bench
duration: 1h
site:
  voltage_v: 230
  circuits: [{name: main, limit_a: 63, meter: true}]
  chargers: [{name: cp1, circuit: main, min_a: 6, max_a: 32, failsafe_a: 6}]
meters: [{circuit: main, profile: sdm630, transport: tcp}]
chargers: [{charger: cp1, profile: dlbrig_generic, transport: tcp, faults: {faults}}]
loads: [{circuit: main, kind: constant, peak_a: 5}]
vehicles: [{id: ev1, preset: sedan_3p, charger: cp1, arrive: "+0s"}]
"""


# (the non-compliant firmware through the same path: the in-process tests above; here the charger is
# compliant but for its diode check, and COM-010 runs with the simulator as the EV asking for current)
def test_cli_emulate_ev_sim_and_certify_ev_sim_in_two_processes(tmp_path):
    faults, expect = "{no_diode_check: true}", {"FS-001": "pass", "FS-003": "fail", "COM-010": "pass"}
    sc = tmp_path / "one.yaml"
    sc.write_text(ONE.replace("{faults}", faults))
    ep = tmp_path / "ep.json"
    proc = subprocess.Popen([*DLBRIG, "emulate", str(sc), "--ev-sim", "cp1", "--endpoints", str(ep), "--speed", "10",
                             "--duration", "20m"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL, env=cli_env())
    try:
        endpoints = wait_for_json_file(ep, proc, deadline_s=30)
        cp = next(e for e in endpoints if e["device"] == "cp1")
        sim = next(e for e in endpoints if e["kind"] == "instrument")
        assert sim["instrument"] == "ev_simulator" and sim["device"] == "evsim_cp1"
        out = tmp_path / "out"
        p = dlbrig("certify", "--dut", "modbus-charger", "--profile", cp["profile"], "--port", str(cp["port"]),
                   "--speed", "10", "--ev-sim", sim["resource"], "--cases", "FS-001,FS-003,COM-010",
                   "--out", str(out), timeout=110)
    finally:
        stop_process(proc)
    assert TRACEBACK not in p.stderr, p.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert {c["id"]: c["status"] for c in summary["cases"]} == expect, p.stdout
    assert p.returncode == (1 if "fail" in expect.values() else 0)
    case = json.loads((out / "cases" / "FS-001" / "summary.json").read_text())
    assert case["ev_simulator"] == sim["resource"] and case["events"]["charger"]


def test_cli_without_ev_sim_skips_fs_naming_the_option_and_bad_options_exit_2(tmp_path):
    from click.testing import CliRunner

    from dlbrig.rig.cli import main

    def cli(*args):                         # in process: the option checks come before anything runs
        r = CliRunner().invoke(main, list(map(str, args)))
        assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
        return r

    r = cli("certify", "--dut", "modbus-charger", "--profile", "dlbrig_generic", "--port", "1",
            "--cases", "FS-*", "--out", tmp_path)
    assert r.exit_code == 2 and "--ev-sim RESOURCE" in r.stderr and "no case runs" in r.stderr
    for args, msg in [(["--ev-sim", "TCPIP0::127.0.0.1::5025::SOCKET"], "only applies to --dut modbus-charger"),
                      (["--dut", "modbus-charger", "--profile", "dlbrig_generic", "--port", "502",
                        "--ev-sim", "GPIB0::7::INSTR"], "not a VISA socket resource"),
                      (["--dut", "modbus-charger", "--profile", "dlbrig_generic", "--port", "502",
                        "--ev-sim", "TCPIP0::192.0.2.9::5025::SOCKET"], "without --arm")]:
        r = cli("certify", *args, "--cases", "FS-001", "--out", tmp_path)
        assert r.exit_code == 2 and msg in r.stderr, (args, r.stderr)
    sc = tmp_path / "one.yaml"
    sc.write_text(ONE.replace("{faults}", "{}"))
    r = cli("emulate", sc, "--ev-sim", "cp9", "--duration", "1s")
    assert r.exit_code == 2 and "--ev-sim: unknown charger 'cp9'" in r.stderr
    help_text = cli("certify", "--help").stdout
    assert "--ev-sim" in help_text and "FS-001..FS-012" in help_text
    # and the real command line: no traceback, exit 2
    p = dlbrig("certify", "--dut", "modbus-charger", "--profile", "dlbrig_generic", "--port", "502",
               "--ev-sim", "TCPIP0::192.0.2.9::5025::SOCKET", "--cases", "FS-001", "--out", tmp_path)
    assert p.returncode == 2 and "without --arm" in p.stderr and TRACEBACK not in p.stderr


def test_ctrl_c_during_a_case_leaves_the_simulator_safe(tmp_path):
    """SIGINT to `dlbrig certify --ev-sim` while the EV simulator is charging and leaking: the run
    stops (interrupted) and the simulator is back in A, no injection, load off."""
    import signal
    import time

    from dlbrig.rig.visa.drivers import open_driver

    sc = tmp_path / "one.yaml"
    sc.write_text(ONE.replace("{faults}", "{}"))
    ep = tmp_path / "ep.json"
    emu = subprocess.Popen([*DLBRIG, "emulate", str(sc), "--ev-sim", "cp1", "--endpoints", str(ep), "--speed", "2",
                            "--duration", "20m"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           stdin=subprocess.DEVNULL, env=cli_env())
    cert = None
    try:
        endpoints = wait_for_json_file(ep, emu, deadline_s=30)
        cp = next(e for e in endpoints if e["device"] == "cp1")
        res = next(e for e in endpoints if e["kind"] == "instrument")["resource"]
        cert = subprocess.Popen([*DLBRIG, "certify", "--dut", "modbus-charger", "--profile", cp["profile"],
                                 "--port", str(cp["port"]), "--speed", "2", "--ev-sim", res, "--cases", "FS-005",
                                 "--out", str(tmp_path / "out")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, stdin=subprocess.DEVNULL, env=cli_env())
        watch = open_driver(res)                 # a second client on the simulator (reads only)
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and float(watch.query("RCD:DC?")) == 0:
                assert cert.poll() is None, cert.communicate()
                time.sleep(0.05)
            assert watch.query("CP?") == "C" and float(watch.query("RCD:DC?")) > 0   # charging, leaking
            rc, out, err = stop_process(cert, sig=signal.SIGINT, timeout=20)
            assert rc == 1 and TRACEBACK not in err, err
            assert "(interrupted)" in out
            assert watch.query("CP?") == "A" and watch.query("LOAD?") == "0"
            assert float(watch.query("RCD:DC?")) == 0 and watch.query("CP:DIOD?") == "1"
        finally:
            watch.close()
    finally:
        if cert is not None and cert.poll() is None:
            cert.kill()
        stop_process(emu)
