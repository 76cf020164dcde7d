"""The one benchmark report (issue 7 section 1): every row is there and the JSON copy is valid.

Runs the real report with tiny sizes (seconds, not minutes); the figures themselves are not
asserted (speed is measured by ``make bench``, never in a timed test), only the report's shape and
that each verdict follows from its value and target.
"""
from __future__ import annotations

import json

import pytest

from dlbrig.rig import bench

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    cfg = bench.BenchConfig.tiny(certify_cases="FS-001")
    rep = bench.run_report(cfg)
    path = bench.save_report(rep, tmp_path_factory.mktemp("bench"))
    return rep, path


def _one(rows, startswith):
    hits = [r for r in rows if r["benchmark"].startswith(startswith)]
    assert len(hits) == 1, (startswith, [r["benchmark"] for r in rows])
    return hits[0]


def test_every_figure_has_a_row(report):
    rep, _ = report
    rows = rep["rows"]
    assert {r["section"] for r in rows} == {"core", "fast", "wire", "emulator", "certify"}
    for prefix in ("dlb_step N=8, C through cffi", "dlb_step N=8, pure C", "dlb_step N=8, reference",
                   "fast mode: office Mon", "fast mode: office, caches off", "fast mode: caches on and off",
                   "fast mode: home", "wire mode: cycle time, 4 TCP chargers", "wire mode: cycle time, p99",
                   "wire mode: first cycle", "emulator: Modbus transactions/s, 3 devices (dlbrig",
                   "emulator: Modbus transactions/s, 3 devices (pymodbus", "make certify: wall time"):
        _one(rows, prefix)
    for r in rows:
        assert r["verdict"] in ("PASS", "MISS", "-"), r
        assert r["display"], r


def test_verdicts_follow_values_and_targets(report):
    rep, _ = report
    rows = rep["rows"]
    fast = _one(rows, "fast mode: office Mon")
    assert fast["value"] > 0
    assert fast["verdict"] == ("PASS" if fast["value"] >= bench.FAST_TARGET_X else "MISS")
    assert fast["baseline"] == rep["details"]["fast_plain"]["speed_x"]
    wire = _one(rows, "wire mode: cycle time, 4 TCP")
    assert wire["verdict"] == ("PASS" if wire["value"] <= bench.WIRE_TARGET_MEDIAN_MS else "MISS")
    emu = _one(rows, "emulator: Modbus transactions/s, 3 devices (dlbrig")
    assert emu["value"] > 0 and emu["baseline"] > 0
    assert emu["verdict"] == ("PASS" if emu["value"] >= bench.EMU_TARGET_TPS else "MISS")
    cert = _one(rows, "make certify")
    assert rep["details"]["certify"]["exit_code"] == 0, rep["details"]["certify"]
    assert cert["verdict"] == ("PASS" if cert["value"] <= bench.CERTIFY_TARGET_S else "MISS")
    # caches on and off must agree, and the report says so
    assert _one(rows, "fast mode: caches on and off")["verdict"] == "PASS"
    ref = _one(rows, "dlb_step N=8, reference")
    assert ref["value"] > 0 and ref["baseline"] > 0


def test_json_copy_is_complete(report):
    rep, path = report
    data = json.loads(path.read_text())
    assert data["rows"] == json.loads(json.dumps(rep["rows"]))
    assert len(data["commit"] or "") in (0, 40)
    assert data["timestamp"] and data["machine"]["cpus"]
    assert set(data["details"]) >= {"core", "fast", "fast_plain", "library", "wire", "emulator", "certify"}
    copies = sorted(path.parent.glob("bench-*.json"))
    assert len(copies) == 1 and json.loads(copies[0].read_text()) == data


def test_printed_table_has_every_row(report):
    rep, _ = report
    text = bench.format_report(rep)
    for r in rep["rows"]:
        assert r["benchmark"] in text
    assert "targets met" in text


def test_a_missed_target_is_shown_as_miss():
    row = bench._row("fast", "x", 10.0, "x real time", "10x", ">= 1,000x", 10.0 >= bench.FAST_TARGET_X)
    assert row["verdict"] == "MISS"
    rep = {"rows": [row], "machine": bench.machine_info(), "commit": None, "dirty": False,
           "timestamp": "t", "wall_s": 0.0}
    assert "MISS" in bench.format_report(rep) and "1 missed" in bench.format_report(rep)


def test_core_rows_carry_every_core_target():
    """make bench's table shows each of issue 2's core targets with its verdict (not only cffi's):
    synthetic figures where some pass and some miss."""
    st = lambda med, p99: {"median_us": med, "p99_us": p99}
    core = {"rows": [
        {"n": 1000, "cffi": st(40.0, 200.0), "pure_c": st(30.0, 60.0), "reference": st(9000.0, 9000.0),
         "reference_over_c": 180.0, "cffi_same_steps_as_reference": st(50.0, 50.0)},
        {"n": 10000, "cffi": st(900.0, 1000.0), "pure_c": st(1200.0, 1300.0), "reference": None,
         "reference_over_c": None, "reference_skipped_estimate_s": 99.0}],
        "pure_c_noisy": {1000: st(24.0, 30.0)}}
    rows = {r["benchmark"]: r for r in bench._core_rows(core, None)}
    want = {
        "dlb_step N=1,000, C through cffi, median": "PASS",          # 40 <= 50
        "dlb_step N=1,000, C through cffi, p99 / median": "MISS",    # 5x > 3x
        "dlb_step N=1,000, pure C, median": "MISS",                  # 30 > 25
        "dlb_step N=1,000, pure C, p99 / median": "PASS",            # 2x
        "dlb_step N=1,000, pure C, noisy readings, median": "PASS",  # 24 <= 25
        "dlb_step N=1,000, pure C, noisy readings, p99 / median": "PASS",  # 1.25x
        "dlb_step N=1,000, reference / C (cffi, same steps)": "MISS",  # 180 < 200
        "dlb_step N=1,000, reference, median": "-",
        "dlb_step N=10,000, C through cffi, median": "PASS",         # 900 us <= 1 ms
        "dlb_step N=10,000, pure C, median": "MISS",                 # 1.2 ms
        "dlb_step N=10,000, reference, median": "-",                 # skipped
    }
    assert {n: r["verdict"] for n, r in rows.items()} == want


def test_pure_c_second_pass_takes_the_faster_and_shows_both():
    """merge_pure_c: each pure C series becomes the faster of its two passes (with that pass's
    p99), both medians are in the row's note, and the verdict follows the figure kept; a series the
    second pass lacks stays as it was."""
    st = lambda med, p99, allocs=0.0: {"median_us": med, "p99_us": p99, "heap_allocations_per_step": allocs}
    core = {"rows": [
        {"n": 1000, "cffi": st(30.0, 60.0), "pure_c": st(34.0, 80.0), "reference": None,
         "reference_over_c": None, "reference_skipped_estimate_s": 99.0},
        {"n": 64, "cffi": st(3.0, 6.0), "pure_c": st(2.5, 5.0), "reference": None,
         "reference_over_c": None, "reference_skipped_estimate_s": 99.0}],
        "pure_c_noisy": {1000: st(23.0, 50.0)}, "heap_allocations_per_step": 0.0}
    later = {"results": [dict(st(22.0, 70.0), n=1000)],
             "noisy_results": [dict(st(33.0, 90.0, allocs=1.0), n=1000)]}
    bench.merge_pure_c(core, later, 74.6)
    rows = {r["benchmark"]: r for r in bench._core_rows(core, None)}
    steady = rows["dlb_step N=1,000, pure C, median"]
    assert steady["value"] == 22.0 and steady["verdict"] == "PASS"
    assert "faster of 2 runs at 0 / 75 s: run medians 34.0 / 22.0 us" in steady["note"]
    assert rows["dlb_step N=1,000, pure C, p99 / median"]["note"] == "p99 70.0 us"  # the kept pass's
    noisy = rows["dlb_step N=1,000, pure C, noisy readings, median"]
    assert noisy["value"] == 23.0 and "23.0 / 33.0 us" in noisy["note"]
    assert rows["dlb_step N=64, pure C, median"]["value"] == 2.5
    assert "passes" not in rows["dlb_step N=64, pure C, median"]["note"]
    # a heap allocation in either pass is reported
    assert core["heap_allocations_per_step"] == 1.0
    # and a slower second pass changes nothing but the note
    core2 = {"rows": [{"n": 1000, "cffi": st(30.0, 60.0), "pure_c": st(24.0, 50.0), "reference": None,
                       "reference_over_c": None, "reference_skipped_estimate_s": 9.0}],
             "pure_c_noisy": {}, "heap_allocations_per_step": 0.0}
    bench.merge_pure_c(core2, {"results": [dict(st(36.0, 99.0), n=1000)]}, 60.0)
    row = {r["benchmark"]: r for r in bench._core_rows(core2, None)}["dlb_step N=1,000, pure C, median"]
    assert row["value"] == 24.0 and "24.0 / 36.0 us" in row["note"]


def test_step_cost_rows_judge_the_fastest_of_identical_passes():
    """Series measured in several identical passes are judged on their step cost (each step's fastest
    pass): the median and p99 / median verdicts follow the cost figures, and the notes keep every
    pass's median and the first pass's p99 as measured. A core whose own tail is long still misses."""
    def st(med, p99, cmed, cp99):
        return {"median_us": med, "p99_us": p99, "cost_median_us": cmed, "cost_p99_us": cp99, "passes": 3,
                "pass_medians_us": [med, cmed + 1.0, cmed + 0.5]}
    core = {"rows": [{"n": 1000, "cffi": st(30.0, 95.0, 24.0, 45.0), "pure_c": st(34.0, 90.0, 22.5, 41.0),
                      "reference": None, "reference_over_c": None, "reference_skipped_estimate_s": 9.0}],
            "pure_c_noisy": {1000: st(24.0, 60.0, 23.0, 80.0)},
            "host": {"gaps_5us_per_s": 500.0, "gaps_20us_per_s": 400.0, "lost_pct": 3.1}}
    rows = {r["benchmark"]: r for r in bench._core_rows(core, None)}
    med = rows["dlb_step N=1,000, pure C, median"]
    assert med["value"] == 22.5 and med["verdict"] == "PASS"      # 34.0 as one pass would MISS
    assert "step cost of 3 passes (medians 34.0 / 23.5 / 23.0 us)" in med["note"]
    p99 = rows["dlb_step N=1,000, pure C, p99 / median"]
    assert p99["value"] == pytest.approx(41.0 / 22.5) and p99["verdict"] == "PASS"
    assert "one pass as measured: p99 90.0 us = 2.6x its median" in p99["note"]
    assert rows["dlb_step N=1,000, C through cffi, p99 / median"]["value"] == pytest.approx(45.0 / 24.0)
    noisy = rows["dlb_step N=1,000, pure C, noisy readings, p99 / median"]
    assert noisy["value"] == pytest.approx(80.0 / 23.0) and noisy["verdict"] == "MISS"
    host = rows["host: interruptions of >= 20 us per second (bench.c's 0.5 s probe)"]
    assert host["value"] == 400.0 and host["verdict"] == "-" and "3.1% of the time lost" in host["note"]


def test_step_cost_is_each_steps_fastest_pass_and_passes_must_agree(monkeypatch):
    from dlbrig.core import bench as cb

    assert cb.step_cost([[5, 9, 7], [6, 3, 7], [4, 8, 9]]) == [4, 3, 7]
    # three passes of a tiny series: identical outputs, so a step cost; the pass medians are reported
    st, (t_call, _t_cycle, t_all) = cb.bench_cffi_passes(8, 30)
    assert st["passes"] == 3 and len(st["pass_medians_us"]) == 3 and len(t_call) == 30
    assert st["cost_median_us"] <= max(st["pass_medians_us"])
    # passes whose outputs differ (a non-deterministic core) give no step cost
    runs = iter([([1, 2], [1, 2], [1, 2], 11), ([1, 2], [1, 2], [1, 2], 12), ([1, 2], [1, 2], [1, 2], 11)])
    monkeypatch.setattr(cb, "bench_cffi", lambda nk, iters: next(runs))
    with pytest.raises(RuntimeError, match="outputs differ"):
        cb.bench_cffi_passes(8, 2)


def test_runs_minutes_apart_merge_step_by_step():
    """merge_pure_c: series that carry each step's cost (bench.c's cost_ns) and the same outputs merge
    step by step (each step at its fastest over the runs); the median and p99 are the merged cost's,
    every run's median is in the note. Runs whose outputs differ are not merged (the faster is kept)."""
    def st(costs, checksum="aa"):
        srt = sorted(costs)
        return {"median_us": srt[len(srt) // 2] / 1000 + 1.0, "p99_us": srt[-1] / 1000 + 5.0,
                "cost_median_us": srt[len(srt) // 2] / 1000, "cost_p99_us": srt[int(len(srt) * 0.99)] / 1000,
                "cost_ns": list(costs), "output_checksum": checksum, "heap_allocations_per_step": 0.0}
    slow_start = [30000] * 50 + [20000] * 50   # the host slow in the first half of run 1
    slow_end = [21000] * 50 + [31000] * 50     # and in the second half of run 2
    core = {"rows": [{"n": 1000, "cffi": {"median_us": 30.0, "p99_us": 60.0}, "pure_c": st(slow_start),
                      "reference": None, "reference_over_c": None, "reference_skipped_estimate_s": 9.0}],
            "pure_c_noisy": {1000: st(slow_start)}, "heap_allocations_per_step": 0.0}
    bench.merge_pure_c(core, {"results": [dict(st(slow_end), n=1000)],
                              "noisy_results": [dict(st(slow_end, checksum="bb"), n=1000)]}, 61.0)
    merged = core["rows"][0]["pure_c"]
    assert merged["cost_ns"] == [21000] * 50 + [20000] * 50 and merged["merged"]
    assert merged["cost_median_us"] == 21.0 and merged["cost_p99_us"] == 21.0
    assert merged["passes_us"] == [30.0, 31.0] and merged["runs_at_s"] == [0, 61]
    # outputs differ: not merged, the faster run (by its own cost median) kept
    noisy = core["pure_c_noisy"][1000]
    assert not noisy.get("merged") and noisy["cost_median_us"] == 30.0
    bench._drop_step_arrays(core)
    rows = {r["benchmark"]: r for r in bench._core_rows(core, None)}
    row = rows["dlb_step N=1,000, pure C, median"]
    assert row["value"] == 21.0 and "merged step by step over 2 runs at 0 / 61 s: run medians 30.0 / 31.0 us" in row["note"]
    assert "cost_ns" not in merged
