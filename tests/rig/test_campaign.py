"""Campaigns: matrix expansion and validation, Dask LocalCluster == serial, resume without recomputing,
the report, the CLI's exit codes."""
from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from dlbrig.rig.campaign import CampaignError, load_campaign, run_campaign
from dlbrig.rig.campaign.aggregate import aggregate, distribution
from dlbrig.rig.cli import main

# 2 faults x 2 DUTs x 2 seeds = 8 runs of 2 virtual minutes; the naive DUT ignores a stale meter
# and overshoots the main: the matrix has real fails in it, not only passes
CAMPAIGN = """\
name: smoke
description: two DUTs on a base-load step
duration: 2m
scenarios: [base_load_step]
seeds: [1, 2]
faults:
  none: []
  meter_stale: ["meter main stale for 30s at +30s"]
duts:
  builtin: {}
  naive: {dut: naive}
"""


@pytest.fixture(scope="module")
def campaign_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("camp") / "smoke.yaml"
    p.write_text(CAMPAIGN)
    return p


@pytest.fixture(scope="module")
def serial_run(campaign_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("serial")
    return out, run_campaign(load_campaign(campaign_file), out, serial=True)


def _attempts(out, run_id) -> int:
    return len((out / "runs" / run_id / "attempts.log").read_text().splitlines())


def test_matrix_expands_and_ids_are_unique(campaign_file):
    camp = load_campaign(campaign_file)
    assert len(camp.runs) == 8
    assert len({r.run_id for r in camp.runs}) == 8
    stale = [r for r in camp.runs if r.fault == "meter_stale"]
    assert all(r.data["timeline"][-1] == "meter main stale for 30s at +30s" for r in stale)
    assert {r.settings["dut"] for r in camp.runs} == {"builtin", "naive"}


def test_serial_campaign_has_real_passes_and_fails(serial_run):
    out, res = serial_run
    agg = res.aggregate
    assert agg["counts"]["total"] == 8 and agg["counts"]["missing"] == 0 and agg["counts"]["error"] == 0
    cell = {(r["fault"], d): c for r in agg["matrix"] for d, c in r["cells"].items()}
    assert cell[("meter_stale", "builtin")]["pass"] == 2      # the core goes to its fallback base
    assert cell[("meter_stale", "naive")]["fail"] == 2        # the naive one keeps the old reading
    assert agg["verdict"] == "fail"
    # the worst run is a failing one, with evidence files next to its result
    worst = agg["worst"][0]
    assert worst["status"] == "fail" and worst["dut"] == "naive" and worst["kpis"]["max_over_a"] > 0
    for f in ("trace.csv", "summary.json", "verdicts.json", "result.json"):
        assert (out / worst["dir"] / f).is_file()
    html = (out / "report.html").read_text()
    assert worst["run_id"] in html and f"{worst['dir']}/trace.csv" in html and "data:image/png" in html
    assert json.loads((out / "aggregate.json").read_text())["counts"] == agg["counts"]


def test_local_cluster_aggregate_equals_serial(campaign_file, serial_run, tmp_path):
    _, serial = serial_run
    res = run_campaign(load_campaign(campaign_file), tmp_path, workers=2)
    assert res.executed == 8 and res.reused == 0
    assert res.aggregate == serial.aggregate
    # the runs were spread over more than one worker process
    pids = {line.split("pid=")[1] for p in (tmp_path / "runs").glob("*/attempts.log")
            for line in p.read_text().splitlines()}
    assert len(pids) >= 2


def test_resume_does_not_recompute_finished_runs(campaign_file, serial_run, tmp_path):
    src, serial = serial_run
    out = tmp_path / "out"
    shutil.copytree(src, out)
    camp = load_campaign(campaign_file)
    lost = [camp.runs[1].run_id, camp.runs[6].run_id]
    for rid in lost:                      # "interrupted": these two never finished
        (out / "runs" / rid / "result.json").unlink()
    (out / "runs" / camp.runs[3].run_id / "result.json").write_text('{"status": "pa')   # torn write
    res = run_campaign(camp, out, serial=True)
    assert res.executed == 3 and res.reused == 5
    for r in camp.runs:
        expected = 2 if r.run_id in lost or r is camp.runs[3] else 1
        assert _attempts(out, r.run_id) == expected, r.run_id
    assert res.aggregate == serial.aggregate
    # once more: nothing left to do, nothing executed
    again = run_campaign(camp, out, serial=True)
    assert again.executed == 0 and again.reused == 8
    assert all(_attempts(out, r.run_id) <= 2 for r in camp.runs)


def test_changed_spec_is_rerun(campaign_file, serial_run, tmp_path):
    src, _ = serial_run
    out = tmp_path / "out"
    shutil.copytree(src, out)
    changed = tmp_path / "changed.yaml"
    changed.write_text(CAMPAIGN.replace("naive: {dut: naive}", "naive: {dut: naive, backend: reference}"))
    res = run_campaign(load_campaign(changed), out, serial=True)
    assert res.executed == 4 and res.reused == 4     # only the naive variant's runs changed


def test_missing_runs_make_the_campaign_incomplete(campaign_file):
    camp = load_campaign(campaign_file)
    agg = aggregate(camp, [])
    assert agg["verdict"] == "incomplete" and agg["counts"]["missing"] == 8


def test_distribution():
    assert distribution([3, 1, None, 2]) == {"n": 3, "min": 1, "median": 2, "max": 3, "mean": 2.0}
    assert distribution([None]) is None


@pytest.mark.parametrize("text, where", [
    ("name: x\nscenarios: [nosuch]\n", ":2: scenarios[0]:"),
    ("name: x\nscenarios: [base_load_step]\nseeds: 3..1\n", ":3: seeds:"),
    ("name: x\nscenarios: [base_load_step]\nfaults:\n  f: ['meter nowhere stale for 30s at +1m']\n", ":4: faults.f:"),
    ("name: x\nscenarios: [base_load_step]\nduts:\n  a: {policy: fastest}\n", ":4: duts.a.policy:"),
    ("name: x\nscenarios: [base_load_step]\nduts:\n  a: {site: {min_on_s: -5}}\n", ":4: duts.a:"),
    ("name: x\nscenarios: [base_load_step]\nchecks: [vibes]\n", ":3: checks[0]:"),
    ("name: x\nscenario: [base_load_step]\n", ":2: scenario:"),
])
def test_bad_files_name_line_and_field(tmp_path, text, where):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    with pytest.raises(CampaignError) as ei:
        load_campaign(p)
    assert where in str(ei.value)
    r = CliRunner().invoke(main, ["campaign", str(p)])
    assert r.exit_code == 2 and where in r.output and "Traceback" not in r.output


def test_cli_exit_codes(campaign_file, serial_run, tmp_path):
    src, _ = serial_run
    out = tmp_path / "out"
    shutil.copytree(src, out)
    r = CliRunner().invoke(main, ["campaign", str(campaign_file), "--out", str(out), "--serial"])
    assert r.exit_code == 1, r.output              # naive fails: not every run passes
    assert "0 executed, 8 reused" in r.output
    ok = tmp_path / "ok.yaml"
    ok.write_text(CAMPAIGN.replace("  naive: {dut: naive}\n", ""))
    r = CliRunner().invoke(main, ["campaign", str(ok), "--out", str(out), "--serial"])
    assert r.exit_code == 0, r.output
    assert "0 executed, 4 reused" in r.output
