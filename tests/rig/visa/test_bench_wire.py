"""Instruments as ground truth: a wire-mode run whose verdicts come from the instruments.

The bench site (bench_site.py) has an electronic load and a power analyzer per charger.  The run
serves the chargers over Modbus and the instruments over SCPI, reads the instruments with the
pyvisa drivers every cycle and records their measurements as the ground truth.  Three runs:
honest (everything passes), a lying charger (cross-check fails for it alone) and a miscalibrated
analyzer (the limit verdict fails although the models never break the limit: the verdict comes
from the instrument)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from bench_site import bench_yaml  # noqa: E402

from dlbrig.firmware_sim.instruments import PowerAnalyzer  # noqa: E402
from dlbrig.rig.compliance import instrument_crosscheck, limit_strict  # noqa: E402
from dlbrig.rig.recording import Recording  # noqa: E402
from dlbrig.rig.scenario import load_scenario  # noqa: E402
from dlbrig.rig.visa.drivers import NotArmed  # noqa: E402
from dlbrig.rig.wire import run_wire  # noqa: E402
from rig_cli_helpers import TRACEBACK, dlbrig  # noqa: E402

SPEED = 6.0


def _run(tmp_path, duration="18s", **kw):
    sc = load_scenario(str(bench_yaml(tmp_path, duration=duration, **kw)))
    rec = Recording.for_site(sc.name, sc.core_site)
    summary = run_wire(sc, tmp_path / "out", speed=SPEED, armed=True, recording=rec)
    return sc, rec, summary


def test_honest_bench_verdicts_come_from_the_instruments(tmp_path):
    sc, rec, summary = _run(tmp_path)
    assert summary["ground_truth"] == "instruments" and rec.ground_truth == "instruments"
    assert rec.measured_by == {"cp1": ["wt_cp1.1", "wt_cp1.2", "wt_cp1.3"], "cp2": ["wt_cp2.1", None, None]}
    cp1 = rec.chargers["cp1"].current[0]
    assert max(cp1) > 10.0, "the EV never charged"
    # every recorded charger current is an analyzer reading: 5 significant digits (ASCII NR3)
    assert all(v == float(f"{v:.4E}") for v in cp1)
    verdicts = limit_strict(rec) + instrument_crosscheck(rec)
    assert [v.subject for v in verdicts if v.check == "instrument_crosscheck"] == ["cp1", "cp2"]
    assert all(v.passed for v in verdicts), [str(v) for v in verdicts if not v.passed]
    # on exit: outputs off (confirmed by the instruments), chargers at their safe current
    safe = summary["exit_safe_state"]
    assert safe["instruments_off"] == {"load_cp1": True, "load_cp2": True}
    assert safe["chargers_safe_a"] == {"cp1": 6.5, "cp2": 6.5}


def test_lying_charger_fails_the_cross_check(tmp_path):
    _, rec, _ = _run(tmp_path, lie_pct=30)
    by = {v.subject: v for v in instrument_crosscheck(rec)}
    assert by["cp1"].passed
    assert not by["cp2"].passed and by["cp2"].metrics["worst_diff_a"] > 3.0
    assert "wt_cp2.1 measures" in by["cp2"].evidence[0]["what"]


def test_miscalibrated_analyzer_changes_the_limit_verdict(tmp_path, monkeypatch):
    real = PowerAnalyzer.element_value

    def reads_high(self, function, element):      # +50 A on every current the analyzers report
        v = real(self, function, element)
        return v + 50.0 if function.upper() == "IRMS" and v is not None and element != "SIGMA" else v
    monkeypatch.setattr(PowerAnalyzer, "element_value", reads_high)
    # long enough that the reading stays high after the settle windows of the EVs' arrival end
    _, rec, summary = _run(tmp_path, duration="45s")
    lim = limit_strict(rec)
    assert not all(v.passed for v in lim), [str(v) for v in lim]   # main measured far above its 63 A
    assert summary["circuits"]["main"]["peak_a"] > 63.0


def test_run_refuses_to_enable_outputs_without_arm(tmp_path):
    path = bench_yaml(tmp_path)
    r = dlbrig("run", path, "--mode", "wire", "--duration", "5s", "--out", tmp_path / "o", timeout=60)
    assert r.returncode == 2
    assert "refusing to run: instrument output(s) of load_cp1, load_cp2 would be enabled; add --arm" in r.stderr
    assert TRACEBACK not in r.stderr
    assert not (tmp_path / "o" / "trace.csv").exists() or (tmp_path / "o" / "trace.csv").read_text().count("\n") <= 1
    sc = load_scenario(str(path))
    with pytest.raises(NotArmed):
        run_wire(sc, tmp_path / "o2", speed=SPEED, armed=False)


def test_cli_wire_run_writes_verdicts_from_the_instruments(tmp_path):
    path = bench_yaml(tmp_path, lie_pct=30)
    out = tmp_path / "cli"
    r = dlbrig("run", path, "--mode", "wire", "--duration", "12s", "--speed", SPEED, "--arm", "--out", out,
               timeout=120)
    assert r.returncode == 0, r.stderr
    assert "ground truth: instruments (load_cp1, load_cp2, wt_cp1, wt_cp2)" in r.stdout
    assert "FAIL instrument_crosscheck cp2:" in r.stdout
    import json
    v = json.loads((out / "verdicts.json").read_text())
    assert v["ground_truth"] == "instruments" and v["measured_by"]["cp1"] == ["wt_cp1.1", "wt_cp1.2", "wt_cp1.3"]
    by = {(x["check"], x["subject"]): x["passed"] for x in v["verdicts"]}
    assert by[("instrument_crosscheck", "cp2")] is False and by[("instrument_crosscheck", "cp1")] is True
    assert by[("limit_strict", "main")] is True


def test_protection_is_programmed_before_any_output_and_outputs_end_off(tmp_path, monkeypatch):
    from dlbrig.rig.visa.server import ScpiServer

    seen = []
    real = ScpiServer.execute

    def logged(self, text):
        seen.append((self.name, text))
        return real(self, text)
    monkeypatch.setattr(ScpiServer, "execute", logged)
    sc = load_scenario(str(bench_yaml(tmp_path, duration="6s", ac_source=True)))
    run_wire(sc, tmp_path / "out", speed=SPEED, armed=True)

    def sent(name):
        return [t for n, t in seen if n == name and not t.endswith("?")]
    chroma, itech, grid = sent("load_cp1"), sent("load_cp2"), sent("grid_l1")
    assert chroma.index(":LOAD:CURR:PEAK:MAX 24.890") < chroma.index(":LOAD 1")      # 1.1 x 16 A, peak
    assert max(itech.index("CURR:PROT 17.600"), itech.index("CURR:PROT:STAT ON"),
               itech.index("POW:PROT 4048.0")) < itech.index("INP:STAT ON")
    assert max(grid.index("CURR 40.000"), grid.index("CURR:PROT:STAT ON")) < grid.index("OUTP ON")  # its rating
    # every output enabled only after every protection of the bench was set
    first_on = min(i for i, (n, t) in enumerate(seen) if t in (":LOAD 1", "INP:STAT ON", "OUTP ON"))
    last_prot = max(i for i, (n, t) in enumerate(seen) if "PROT" in t.upper() and "CLE" not in t.upper()
                    and not t.endswith("?") or t.startswith(":LOAD:CURR:PEAK:MAX"))
    assert last_prot < first_on
    assert chroma[-1] == ":LOAD 0" and itech[-1] == "INP:STAT OFF" and grid[-1] == "OUTP OFF"
