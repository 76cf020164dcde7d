"""The certification reports (rig/report.py): self-contained HTML, JUnit XML, summary.json, pcap.

A small suite is built by hand: hand-made recordings of a two-circuit site with tiny fake chargers,
verdicts from a local stand-in with the same fields as ``compliance.Verdict``, a passing case, a
failing case (with a thermal series and Modbus frames), an error and a skipped case.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import re
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest

from dlbrig.core.site import Site
from dlbrig.rig import report
from dlbrig.rig.certify.model import Case, CaseResult, SuiteResult
from dlbrig.rig.recording import Recording


@dataclass
class Verdict:
    """Stand-in with the fields of dlbrig.rig.compliance.Verdict (duck typing in the report)."""
    check: str
    subject: str
    passed: bool
    summary: str
    metrics: dict
    evidence: list
    markers: list = field(default_factory=list)
    requirement: str = ""


SITE = {
    "voltage_v": 230,
    "circuits": [
        {"name": "main", "limit_a": 40, "margin_a": 1},
        {"name": "garage", "parent": "main", "limit_a": 32},
    ],
    "chargers": [
        {"name": "cp1", "circuit": "garage", "phases": 3, "min_a": 6, "max_a": 32},
        {"name": "cp2", "circuit": "garage", "phases": 1, "phase_map": ["L2"], "min_a": 6, "max_a": 32},
        {"name": "cp3", "circuit": "main", "phases": 3, "min_a": 6, "max_a": 16},
    ],
}


class _Cp:
    """ChargePoint-like: currents_a(), status, evse.applied_current_a."""

    def __init__(self):
        self.cur = [0.0, 0.0, 0.0]
        self.status = "charging"
        self.evse = SimpleNamespace(applied_current_a=0.0)

    def currents_a(self):
        return list(self.cur)


def make_recording(n: int, *, overshoot: bool) -> Recording:
    """``n`` samples at 1 s; with ``overshoot`` the garage breaks its 32 A limit from t = 20 s."""
    rec = Recording.for_site("hand_made", Site.from_dict(SITE))
    cps = {k: _Cp() for k in rec.charger_names}
    for i in range(n):
        t = i * 1000
        sp = {"cp1": 16.0 if i < 20 else 10.0, "cp2": 10.0, "cp3": None if i < 3 else 8.0}
        for k, cp in cps.items():
            cp.evse.applied_current_a = sp[k] or 0.0
            lag = 0.0 if not overshoot else (8.0 if 20 <= i < 30 else 0.0)
            draw = (sp[k] or 0.0) + (lag if k == "cp1" else 0.0)
            cp.cur = [draw, draw, draw] if k != "cp2" else [draw, 0.0, 0.0]
        garage = [cps["cp1"].cur[0], cps["cp1"].cur[1] + cps["cp2"].cur[0], cps["cp1"].cur[2]]
        if overshoot and 20 <= i < 30:
            garage[1] += 4.0   # a disturbance on L2
        main = [g + c + 5.0 for g, c in zip(garage, cps["cp3"].cur)]
        result = SimpleNamespace(chargers={
            k: SimpleNamespace(current_a=sp[k], reason="circuit garage L2" if k != "cp3" else "")
            for k in cps})
        rec.sample(t, {"main": main, "garage": garage}, cps, result if i != 2 else None)
    rec.steps = [(20_000, "step", "garage", "base load +4 A on L2"), (25_000, "meter main offline")]
    return rec


def make_case(cid: str, title: str, **kw) -> Case:
    return Case(id=cid, title=title, requirement=f"requirement of {cid}: stay under the limit",
                source="IEC 61851-1 / standards.md#limits", role="controller", scenario="base_load_step",
                procedure=["Start the site with two EVs", "Step the base load by +4 A on L2",
                           "Watch the garage breaker for 60 s"],
                criteria=["no phase above the limit after the settle time"],
                prerequisites=["chargers connected", "meters fresh"], **kw)


class FakeFrame:
    """Frame-like object without raw bytes (HTML listing only)."""

    def __init__(self, t_ms, direction, text):
        self.t_ms, self.direction, self.text = t_ms, direction, text

    def describe(self):
        return f"{self.t_ms} {self.direction} {self.text}"


def modbus_frames():
    """Real rig Frames with raw Modbus/TCP ADUs: a read request and its response, then RTU."""
    from dlbrig.rig.modbus import frames as F
    from dlbrig.rig.modbus.server import Frame

    out = []
    for i in range(60):
        req_pdu = bytes([3, 0, 0x10, 0, 2])
        rsp_pdu = bytes([3, 4, 0, i, 0, 0])
        req, rsp = F.mbap(i + 1, 1, req_pdu), F.mbap(i + 1, 1, rsp_pdu)
        common = dict(server="cp1", device="cp1", peer="127.0.0.1:51000", transport="tcp", unit=1,
                      function=3, local="127.0.0.1:40502")
        out.append(Frame("rx", req, i * 1000, 1_700_000_000.0 + i, **common))
        out.append(Frame("tx", rsp, i * 1000 + 3, 1_700_000_000.003 + i, **common))
    out.append(Frame("event", b"", 5000, 1_700_000_005.5, "cp1", "cp1", "127.0.0.1:51000", "tcp",
                     note="disconnect", local="127.0.0.1:40502"))
    rtu = F.rtu_frame(7, bytes([4, 0, 0, 0, 2]))
    out.append(Frame("rx", rtu, 61_000, 1_700_000_061.0, "meterbus", "main_meter", "/dev/pts/9", "rtu",
                     unit=7, function=4, local="/dev/pts/9"))
    return out


def build_suite(run_dir) -> SuiteResult:
    """Pass (with run files), fail (long recording, thermal series), error, skipped."""
    ok_dir = run_dir / "LIM-001"
    ok_dir.mkdir()
    (ok_dir / "trace.csv").write_text("t_ms,main_L1\n0,5\n")
    (ok_dir / "summary.json").write_text("{}")

    rec_ok = make_recording(60, overshoot=False)
    rec_bad = make_recording(5000, overshoot=True)   # long: decimated to <= 2000 points per line

    ok = CaseResult(
        case=make_case("LIM-001", "Strict limit on a base-load step"), status="pass",
        verdicts=[Verdict("limit.strict", "garage", True, "max 26.0 A <= 32 A after settle",
                          {"max_a": 26.0, "settle_s": 10}, [{"t_ms": 0, "what": "steady"}],
                          requirement="garage never above 32 A after 10 s")],
        recording=rec_ok, out_dir=str(ok_dir), duration_s=0.8,
        summary={"peak_kw": 21.5, "site_energy_kwh": 0.3, "events": [{"t_s": 1, "event": "x"}]})
    thermal = [min(1.2, i / 4000) for i in range(len(rec_bad.t_ms))]
    bad = CaseResult(
        case=make_case("LIM-002", "Envelope <&> limit under an EV that does not follow"), status="fail",
        verdicts=[
            Verdict("limit.strict", "garage", False, "L2 at 40.0 A > 32 A for 10.0 s (cp1 did not follow)",
                    {"max_over_a": 8.0, "time_over_s": 10.0},
                    [{"t_ms": 20_000, "what": "garage L2 40.0 A > 32 A"},
                     {"t_ms": 21_000, "what": "cp1 draws 18 A with set-point 10 A"}],
                    markers=[(20_000, "over limit"), (30_000, "back under")]),
            Verdict("limit.envelope", "garage", True, "never in the trip region",
                    {"thermal": thermal, "peak_ratio": 1.25}, []),
        ],
        recording=rec_bad, out_dir=str(run_dir / "LIM-002"), duration_s=2.5)
    err = CaseResult(case=make_case("FS-001", "Charger watchdog"), status="error",
                     error="ScenarioError: unknown scenario 'nope'\nTraceback...", duration_s=0.01)
    skip = CaseResult(case=make_case("COM-003", "RTU bus noise"), status="skipped",
                      error="needs a serial port", duration_s=0.0)
    return SuiteResult(dut="ACME Wallbox 2000", firmware="noncompliant", seed=7,
                       started="2025-01-02T03:04:05+00:00", duration_s=3.4, cases=[ok, bad, err, skip])


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    return build_suite(tmp_path_factory.mktemp("runs"))


@pytest.fixture(scope="module")
def written(suite, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    frames = {"LIM-002": [FakeFrame(i * 100, "rx", f"read holding 0x10 n=2 #{i}") for i in range(80)]
              + [FakeFrame(20_500, "tx", "frame near the failure")]}
    t0 = time.perf_counter()
    paths = report.write_reports(out, suite, frames=frames)
    return paths, time.perf_counter() - t0


def test_writes_the_three_files(written):
    paths, elapsed = written
    assert set(paths) == {"html", "junit", "summary"}        # no raw frames: no pcap
    for p in paths.values():
        assert p.exists() and p.stat().st_size > 0
    assert elapsed < 10


def test_html_is_self_contained_with_every_case(written, suite):
    html = written[0]["html"].read_text()
    assert html.startswith("<!DOCTYPE html>")
    for cr in suite.cases:
        assert cr.case.id in html
        assert f'id="case-{cr.case.id}"' in html
        assert f'href="#case-{cr.case.id}"' in html
    assert "PASS" in html and "FAIL" in html and "ERROR" in html and "SKIPPED" in html
    assert "<svg" in html and "<path d=" in html
    # no external references (scripts, images, styles, links)
    assert not re.search(r'(src|href)\s*=\s*["\']?\s*(https?:)?//', html)
    assert not re.search(r"url\(\s*['\"]?https?:", html)
    assert "<link" not in html and "<script" not in html
    # header
    for text in ("ACME Wallbox 2000", "noncompliant", "2025-01-02T03:04:05", report._version()):
        assert text in html
    assert "INTERRUPTED" not in html
    # escaping: the title with <&> is escaped
    assert "Envelope &lt;&amp;&gt; limit" in html


def test_html_case_documents_verdicts_and_evidence(written):
    html = written[0]["html"].read_text()
    sec = html.split('id="case-LIM-002"')[1].split('<section class="case"')[0]
    assert sec.count("<li>") >= 3                                        # procedure steps
    assert "<ol><li>Start the site with two EVs</li>" in sec
    assert "limit.strict" in sec and "limit.envelope" in sec
    assert "t = 20.000 s: garage L2 40.0 A &gt; 32 A" in sec            # evidence
    assert "series of 5000 points" in sec                               # thermal summarised
    assert "max_over_a" in sec
    # plots: 2 circuits + envelope + involved chargers (cp1 mentioned, garage's cp2)
    imgs = sec.count("<svg")
    assert imgs >= 4
    assert 'data-plot="charger cp1"' in sec and 'data-plot="charger cp2"' in sec
    assert 'data-plot="envelope garage"' in sec
    assert "frame near the failure" in sec                              # frames around the failure
    assert sec.count("read holding 0x10") == report.MAX_FRAMES
    # links to run files: present for LIM-001, marked missing for LIM-002
    ok = html.split('id="case-LIM-001"')[1].split('<section class="case"')[0]
    assert re.search(r'<a href="[^"]*LIM-001/trace.csv">trace.csv</a>', ok)
    assert not re.search(r'href="/', ok)                                 # relative
    assert "not present" in sec
    err = html.split('id="case-FS-001"')[1].split('<section class="case"')[0]
    assert "ScenarioError: unknown scenario" in err and "No recording" in err


def test_junit_counts_and_details(written, suite):
    root = ET.parse(written[0]["junit"]).getroot()
    assert root.tag == "testsuites"
    ts = root.find("testsuite")
    assert ts.get("name") == "dlbrig certify"
    assert (ts.get("tests"), ts.get("failures"), ts.get("errors"), ts.get("skipped")) == ("4", "1", "1", "1")
    cases = ts.findall("testcase")
    assert [c.get("name") for c in cases] == [f"{cr.case.id} {cr.case.title}" for cr in suite.cases]
    assert cases[0].get("classname") == "dlbrig.LIM" and cases[2].get("classname") == "dlbrig.FS"
    assert cases[0].find("failure") is None and cases[0].find("system-out") is not None
    fail = cases[1].find("failure")
    assert "limit.strict" in fail.get("message") and "garage L2 40.0 A" in fail.text
    assert cases[1].find("error") is None
    assert "ScenarioError" in cases[2].find("error").get("message")
    assert cases[3].find("skipped").get("message") == "needs a serial port"
    assert "never in the trip region" in cases[1].find("system-out").text
    assert float(cases[1].get("time")) == pytest.approx(2.5)


def test_summary_json_round_trips(written, suite):
    data = json.loads(written[0]["summary"].read_text())
    assert data["dut"] == suite.dut and data["seed"] == 7 and data["interrupted"] is False
    assert data["totals"] == {"cases": 4, "passed": 1, "failed": 1, "errors": 1, "skipped": 1,
                              "verdicts": 3, "verdicts_failed": 1}
    assert data["verdict"] == "FAIL"
    by_id = {c["id"]: c for c in data["cases"]}
    assert list(by_id) == ["LIM-001", "LIM-002", "FS-001", "COM-003"]
    bad = by_id["LIM-002"]
    assert bad["status"] == "fail" and bad["family"] == "LIM" and bad["frames"] == 81
    env = bad["verdicts"][1]
    assert env["metrics"]["thermal"] == {"series_omitted": True, "points": 5000}   # no arrays
    assert env["metrics"]["peak_ratio"] == 1.25
    assert bad["verdicts"][0]["markers"] == [[20000, "over limit"], [30000, "back under"]]
    assert by_id["LIM-001"]["kpis"] == {"site_energy_kwh": 0.3, "peak_kw": 21.5}
    assert json.loads(json.dumps(data)) == data


def test_thirty_cases_render_in_a_few_seconds(suite, tmp_path):
    """30+ cases with an hour-long recording (3,600 samples) each: seconds, not minutes."""
    rec = make_recording(3600, overshoot=True)
    bad = suite.cases[1]
    cases = [CaseResult(case=make_case(f"LIM-{i:03d}", f"case {i}"), status=bad.status,
                        verdicts=bad.verdicts, recording=rec, duration_s=1.0) for i in range(32)]
    big = SuiteResult(dut="x", firmware="compliant", seed=1, started="", cases=cases)
    t0 = time.perf_counter()
    paths = report.write_reports(tmp_path, big)
    elapsed = time.perf_counter() - t0
    html = paths["html"].read_text()
    assert html.count('<section class="case"') == 32
    assert elapsed < 8, f"report for 32 cases took {elapsed:.1f} s"
    assert paths["html"].stat().st_size < 20_000_000


def test_decimation_keeps_peaks():
    t = list(range(100_000))
    y = [0.0] * 100_000
    y[54_321] = 99.0
    y[77_777] = -5.0
    tt, yy = report._decimate(t, y)
    assert len(tt) <= report.MAX_POINTS and len(yy) == len(tt)
    assert max(yy) == 99.0 and min(yy) == -5.0
    assert list(tt) == sorted(tt)
    tt, yy = report._decimate([0, 1, 2], [1.0, None, 3.0])     # short, gaps kept
    assert len(tt) == 3 and yy[1] != yy[1]


def test_interrupted_suite_still_renders(suite, tmp_path):
    part = SuiteResult(dut=suite.dut, firmware="compliant", seed=1, started="2025-01-02T03:04:05",
                       duration_s=1.0, cases=suite.cases[:1] + suite.cases[2:3], interrupted=True)
    paths = report.write_reports(tmp_path, part)
    html = paths["html"].read_text()
    assert 'id="interrupted"' in html and "INTERRUPTED" in html and "INCOMPLETE" in html
    data = json.loads(paths["summary"].read_text())
    assert data["interrupted"] is True and data["verdict"] == "INCOMPLETE"
    ts = ET.parse(paths["junit"]).getroot().find("testsuite")
    assert ts.get("tests") == "2" and ts.find("properties/property[@name='interrupted']").get("value") == "true"


def test_empty_suite_renders(tmp_path):
    paths = report.write_reports(tmp_path, SuiteResult(dut="x", firmware="compliant", seed=0,
                                                       started="", interrupted=True))
    assert "INTERRUPTED" in paths["html"].read_text()
    assert ET.parse(paths["junit"]).getroot().find("testsuite").get("tests") == "0"


def test_pcap_of_raw_modbus_frames(suite, tmp_path):
    scapy_all = pytest.importorskip("scapy.all")
    frames = modbus_frames()
    paths = report.write_reports(tmp_path, suite, frames={"LIM-002": frames})
    assert "pcap" in paths
    pkts = scapy_all.rdpcap(str(paths["pcap"]))
    raw = [f for f in frames if f.direction in ("rx", "tx")]
    assert len(pkts) == len(raw)                                         # events are not packets
    TCP = scapy_all.TCP
    for pkt, f in zip(pkts, raw):
        assert bytes(pkt[TCP].payload) == f.data
        if f.transport == "tcp":
            srv_port = report.PCAP_TCP_PORT
        else:
            srv_port = report.PCAP_RTU_PORT
        if f.direction == "rx":
            assert pkt[TCP].dport == srv_port
            if f.transport == "tcp":                   # a real master keeps its address and port
                assert pkt[scapy_all.IP].src == "127.0.0.1" and pkt[TCP].sport == 51000
            else:                                      # a pty has none: a synthetic one
                assert pkt[scapy_all.IP].src.startswith("127.0.2.")
        else:
            assert pkt[TCP].sport == srv_port and pkt[TCP].dport == 51000
        assert float(pkt.time) == pytest.approx(f.wall, abs=1e-3)
    # TCP sequence numbers advance by the payload per direction
    req = [p for p in pkts if p[TCP].dport == 502]
    assert req[1][TCP].seq == req[0][TCP].seq + len(bytes(req[0][TCP].payload))
    # scapy's own Modbus/TCP layer decodes the payload (as Wireshark's dissector does on port 502)
    from scapy.contrib.modbus import ModbusADURequest
    adu = ModbusADURequest(bytes(req[0][TCP].payload))
    assert adu.transId == 1 and adu.unitId == 1 and adu.len == 6
    html = paths["html"].read_text()
    assert 'href="capture.pcap"' in html and "127.0.1.1:502" in html


def test_no_scapy_skips_pcap_with_a_note(suite, tmp_path, monkeypatch):
    def no_scapy(*a, **k):
        raise ImportError("No module named 'scapy'")
    monkeypatch.setattr(report, "write_pcap", no_scapy)
    paths = report.write_reports(tmp_path, suite, frames={"LIM-002": modbus_frames()})
    assert "pcap" not in paths and not (tmp_path / "capture.pcap").exists()
    assert "scapy is not installed" in paths["html"].read_text()


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark (Wireshark's CLI) not installed")
def test_wireshark_decodes_the_capture(suite, tmp_path):
    """Wireshark's own dissectors: Modbus/TCP with no configuration, RTU with one Decode As."""
    pytest.importorskip("scapy")
    paths = report.write_reports(tmp_path, suite, frames={"LIM-002": modbus_frames()})
    run = lambda *a: subprocess.run(["tshark", "-r", str(paths["pcap"]), *a], capture_output=True,
                                    text=True, timeout=60, stdin=subprocess.DEVNULL)
    out = run("-d", f"tcp.port=={report.PCAP_RTU_PORT},mbrtu", "-T", "fields", "-e", "frame.protocols",
              "-e", "mbtcp.trans_id", "-e", "modbus.func_code").stdout.splitlines()
    assert len(out) == 121
    assert all(line.startswith("eth:ethertype:ip:tcp:mbtcp:modbus") for line in out[:120])
    assert out[0].split("\t")[1:] == ["1", "3"] and out[119].split("\t")[1:] == ["60", "3"]
    assert "mbrtu:modbus" in out[120] and out[120].endswith("4")
    assert run("-Y", "_ws.expert || _ws.malformed").stdout.strip() == ""
