"""The certification suite: the catalog's shape, the built-in core passing, and the negative controls
(the naive controller, the non-compliant firmware) failing on exactly the cases meant to catch them.
A checker that cannot fail is a defect: each family below has a case a bad DUT fails."""
from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from dlbrig.rig.certify.catalog import catalog, select
from dlbrig.rig.certify.model import FAMILIES
from dlbrig.rig.certify.runner import run_case, run_suite
from dlbrig.rig.report import write_reports

# cheap cases (a few simulated minutes each) that cover every family
CONTROLLER_CASES = ["LIM-001", "LIM-002", "LIM-008", "LIM-013", "COM-002", "COM-003", "COM-013", "COM-014",
                    "FAIR-003"]
NAIVE_FAILS = {"LIM-008", "COM-002", "COM-003", "COM-013", "FAIR-003"}
CHARGER_CASES = ["FS-001", "FS-002", "FS-003", "FS-008", "FS-009", "FS-011", "FS-012", "COM-001"]
NONCOMPLIANT_FAILS = {"FS-001", "FS-002", "FS-003", "FS-008", "FS-011", "FS-012", "COM-001"}


def test_catalog_shape():
    cases = catalog()
    assert len(cases) >= 30
    assert {c.family for c in cases} == set(FAMILIES)
    ids = [c.id for c in cases]
    assert len(ids) == len(set(ids))
    for c in cases:
        assert c.title and c.requirement and c.source and c.procedure and c.criteria, c.id
        # a case is decided by checkers over its recording, or (Modbus-only charger cases) by a probe
        assert c.role in ("controller", "charger") and (callable(c.checks) != bool(c.probe)), c.id
        assert (c.scenario == "inline") == (c.spec is not None), c.id
    assert [c.id for c in select("fs-00?,COM-001")] == [f"FS-00{i}" for i in range(1, 10)] + ["COM-001"]


def test_list_prints_the_catalog():
    out = subprocess.run([sys.executable, "-m", "dlbrig.rig.cli", "certify", "--list"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for c in catalog():
        assert c.id in out.stdout
    assert "cases in 5 families" in out.stdout


@pytest.mark.timeout(600)
def test_builtin_core_passes_and_reports(tmp_path):
    cases = select(",".join(CONTROLLER_CASES + CHARGER_CASES))
    suite = run_suite(cases, out_dir=tmp_path)
    bad = {c.case.id: (c.error or [v.summary for v in c.verdicts if not v.passed]) for c in suite.cases
           if c.status != "pass"}
    assert not bad, bad
    written = write_reports(tmp_path, suite)
    junit = ET.parse(written["junit"]).getroot()
    assert junit.find("testsuite").get("tests") == str(len(cases))
    assert junit.find("testsuite").get("failures") == "0"
    html = written["html"].read_text()
    assert all(f'id="case-{c.id}"' in html for c in cases)
    summary = json.loads(written["summary"].read_text())
    assert [c["id"] for c in summary["cases"]] == [c.id for c in cases]
    # every verdict carries its evidence: a trace per case
    for cr in suite.cases:
        assert (tmp_path / "cases" / cr.case.id / "trace.csv").exists()


@pytest.mark.timeout(600)
def test_naive_controller_fails_the_controller_cases(tmp_path):
    results = {c.id: run_case(c, dut="naive", out_dir=tmp_path) for c in select(",".join(CONTROLLER_CASES))}
    failed = {cid for cid, r in results.items() if r.status == "fail"}
    assert NAIVE_FAILS <= failed, {cid: r.status for cid, r in results.items()}
    assert not any(r.status == "error" for r in results.values()), {c: r.error for c, r in results.items()}


@pytest.mark.timeout(600)
def test_noncompliant_firmware_fails_the_charger_cases(tmp_path):
    results = {c.id: run_case(c, firmware="noncompliant", out_dir=tmp_path) for c in select(",".join(CHARGER_CASES))}
    failed = {cid for cid, r in results.items() if r.status == "fail"}
    assert failed == NONCOMPLIANT_FAILS, {cid: r.status for cid, r in results.items()}
    # the verdicts name the broken rule
    assert "open_after_c_to_b" in " ".join(v.summary for v in results["FS-001"].verdicts)


def test_cli_exit_codes(tmp_path):
    ok = subprocess.run([sys.executable, "-m", "dlbrig.rig.cli", "certify", "--cases", "FS-009",
                         "--out", str(tmp_path / "a")], capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "1 passed, 0 failed" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "dlbrig.rig.cli", "certify", "--cases", "FS-003",
                          "--firmware", "noncompliant", "--out", str(tmp_path / "b")],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert (tmp_path / "b" / "report.html").exists() and (tmp_path / "b" / "junit.xml").exists()
    none = subprocess.run([sys.executable, "-m", "dlbrig.rig.cli", "certify", "--cases", "XYZ-*"],
                          capture_output=True, text=True, timeout=120)
    assert none.returncode == 2 and "no case matches" in none.stderr
