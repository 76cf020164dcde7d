"""The pytest plugin runs the catalog as pytest items: passes the built-in core, fails the negative
controls on the cases meant to catch them, writes the reports, and stays inert without its option."""
import json
import subprocess
import sys
import xml.etree.ElementTree as ET


def _pytest(tmp_path, *args):
    # a fresh interpreter in an empty folder: the plugin comes from the installed entry point
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
                          cwd=tmp_path, capture_output=True, text=True, timeout=110)


def test_builtin_passes_and_reports(tmp_path):
    out = tmp_path / "out"
    p = _pytest(tmp_path, "--dlbrig-dut=builtin", "--dlbrig-cases=LIM-001,COM-003",
                f"--dlbrig-out={out}", f"--junitxml={tmp_path / 'j.xml'}")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "2 passed" in p.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dut"] == "builtin" and summary["firmware"] == "compliant"
    assert (out / "report.html").exists() and (out / "junit.xml").exists()
    names = {tc.get("name") for tc in ET.parse(tmp_path / "j.xml").getroot().iter("testcase")}
    assert names == {"LIM-001", "COM-003"}, names


def test_naive_controller_fails_the_stale_meter_case(tmp_path):
    p = _pytest(tmp_path, "--dlbrig-dut=naive", "--dlbrig-cases=COM-003,LIM-001", f"--dlbrig-out={tmp_path}/o")
    assert p.returncode == 1, p.stdout + p.stderr
    assert "FAILED dlbrig::COM-003" in p.stdout or "dlbrig::COM-003 FAILED" in p.stdout, p.stdout
    assert "1 failed, 1 passed" in p.stdout


def test_keyword_selection_and_noncompliant_firmware(tmp_path):
    p = _pytest(tmp_path, "--dlbrig-dut=builtin", "--dlbrig-firmware=noncompliant", "--dlbrig-cases=FS-00*",
                "-k", "FS-001", f"--dlbrig-out={tmp_path}/o")
    assert p.returncode == 1, p.stdout + p.stderr
    assert "1 failed" in p.stdout and "deselected" in p.stdout


def test_inert_without_option_and_bad_dut_is_a_usage_error(tmp_path):
    (tmp_path / "test_x.py").write_text("def test_x():\n    assert True\n")
    p = _pytest(tmp_path)
    assert p.returncode == 0 and "1 passed" in p.stdout, p.stdout + p.stderr
    p = _pytest(tmp_path, "--dlbrig-dut=nonsense")
    assert p.returncode == 4 and "unknown DUT 'nonsense'" in p.stderr, p.stdout + p.stderr
    p = _pytest(tmp_path, "--dlbrig-dut=builtin", "--dlbrig-cases=NOPE-*")
    assert p.returncode == 4 and "no case matches" in p.stderr, p.stdout + p.stderr
