"""Fast mode with instruments: the scenario's emulated instruments act on the physics and are the
ground truth as in wire mode, driven by the same drivers through in-process resources (no sockets,
rig.visa.bench.FastBench).  Each test has its control: the same run with ``instruments=False``
(the models are the ground truth) or without the fault."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_site import bench_yaml  # noqa: E402

from dlbrig.firmware_sim.instruments import ElectronicLoad, PowerAnalyzer, make_instrument  # noqa: E402
from dlbrig.rig.compliance import instrument_crosscheck, limit_strict  # noqa: E402
from dlbrig.rig.recording import Recording  # noqa: E402
from dlbrig.rig.runner import run_fast  # noqa: E402
from dlbrig.rig.scenario import load_scenario  # noqa: E402
from dlbrig.rig.visa.drivers import DirectResource  # noqa: E402


def _run(tmp_path, instruments=True, duration="40s", **kw):
    sc = load_scenario(str(bench_yaml(tmp_path, duration=duration, **kw)))
    rec = Recording.for_site(sc.name, sc.core_site)
    summary = run_fast(sc, tmp_path / f"out-{instruments}", recording=rec, instruments=instruments)
    return rec, summary


def test_direct_resource_speaks_the_same_scpi_as_the_socket():
    load = make_instrument("chroma_63804")
    res = DirectResource(load)
    assert res.query("*IDN?").startswith("Chroma ATE,63804,")
    res.write(":LOAD:CURR 12.5")
    assert load.current_set_a == 12.5
    res.write(":LOAD:BOGUS 1")
    assert res.query("SYST:ERR?").startswith("-113")


def test_fast_run_takes_its_ground_truth_from_the_instruments(tmp_path):
    rec, summary = _run(tmp_path)
    assert summary["ground_truth"] == "instruments" and rec.ground_truth == "instruments"
    assert rec.measured_by == {"cp1": ["wt_cp1.1", "wt_cp1.2", "wt_cp1.3"], "cp2": ["wt_cp2.1", None, None]}
    cp1 = rec.chargers["cp1"].current[0]
    assert max(cp1) > 10.0, "the EV never charged"
    assert all(v == float(f"{v:.4E}") for v in cp1)        # analyzer readings (ASCII NR3)
    verdicts = limit_strict(rec) + instrument_crosscheck(rec)
    assert all(v.passed for v in verdicts), [str(v) for v in verdicts if not v.passed]
    # control: without the instruments the models are the ground truth
    rec0, summary0 = _run(tmp_path, instruments=False)
    assert summary0["ground_truth"] == "models" and rec0.ground_truth == "models" and not rec0.measured_by
    assert max(rec0.chargers["cp1"].current[0]) > 10.0


def test_fast_lying_charger_fails_the_cross_check(tmp_path):
    rec, _ = _run(tmp_path, lie_pct=30)
    by = {v.subject: v for v in instrument_crosscheck(rec)}
    assert by["cp1"].passed and not by["cp2"].passed


def test_fast_miscalibrated_analyzer_changes_the_limit_verdict(tmp_path, monkeypatch):
    rec_ok, _ = _run(tmp_path, duration="45s")
    assert all(v.passed for v in limit_strict(rec_ok))                   # control
    real = PowerAnalyzer.element_value

    def reads_high(self, function, element):
        v = real(self, function, element)
        return v + 50.0 if function.upper() == "IRMS" and v is not None and element != "SIGMA" else v
    monkeypatch.setattr(PowerAnalyzer, "element_value", reads_high)
    rec, summary = _run(tmp_path, duration="45s")
    assert not all(v.passed for v in limit_strict(rec))
    assert summary["circuits"]["main"]["peak_a"] > 63.0


def test_fast_load_decides_the_draw(tmp_path, monkeypatch):
    """A load whose input never lets anything through: its conductor draws nothing in fast mode."""
    monkeypatch.setattr(ElectronicLoad, "draw_limit_a", lambda self: 0.0)
    rec, _ = _run(tmp_path)
    cur = rec.chargers["cp1"].current
    assert max(cur[0]) == 0.0 and max(cur[1]) > 10.0          # the load's conductor / the others
    assert max(rec.chargers["cp2"].current[0]) == 0.0


def test_cli_fast_run_writes_verdicts_from_the_instruments(tmp_path):
    from rig_cli_helpers import TRACEBACK, dlbrig
    import json
    path = bench_yaml(tmp_path, lie_pct=30)
    out = tmp_path / "cli"
    r = dlbrig("run", path, "--mode", "fast", "--duration", "30s", "--out", out, timeout=120)
    assert r.returncode == 0 and TRACEBACK not in r.stderr, r.stderr
    assert "ground truth: instruments (load_cp1, load_cp2, wt_cp1, wt_cp2)" in r.stdout
    assert "FAIL instrument_crosscheck cp2:" in r.stdout
    v = json.loads((out / "verdicts.json").read_text())
    assert v["ground_truth"] == "instruments" and v["measured_by"]["cp1"] == ["wt_cp1.1", "wt_cp1.2", "wt_cp1.3"]
    assert json.loads((out / "summary.json").read_text())["ground_truth"] == "instruments"
