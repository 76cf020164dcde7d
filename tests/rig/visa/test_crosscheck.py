"""instrument_crosscheck on hand-made recordings: what passes, what fails, and why."""
from __future__ import annotations

import pytest

from dlbrig.core import Site
from dlbrig.rig.compliance import instrument_crosscheck
from dlbrig.rig.recording import Recording

SITE = Site.from_dict({"circuits": [{"name": "main", "limit_a": 63}],
                       "chargers": [{"name": "cp1", "circuit": "main", "phases": 1, "max_a": 32}]})


def rec_with(measured, reported):
    rec = Recording.for_site("x", SITE)
    rec.ground_truth = "instruments"
    rec.measured_by = {"cp1": ["wt.1", None, None]}
    rec.reported = {"cp1": [list(reported), [0.0] * len(reported), [0.0] * len(reported)]}
    for j, m in enumerate(measured):
        rec.t_ms.append(1000 * j)
        s = rec.chargers["cp1"]
        s.current[0].append(m)
        s.current[1].append(0.0)
        s.current[2].append(0.0)
    return rec


def test_agreeing_charger_passes_and_transients_are_tolerated():
    # 16 A measured; reports within 1 A + 5 %; two samples in a row far off (a ramp) are not a lie
    v, = instrument_crosscheck(rec_with([16.0] * 8, [16.5, 17.7, 16.0, 0.0, 0.0, 16.0, 15.2, None]))
    assert v.passed and v.metrics["samples_checked"] == 7 and v.metrics["worst_diff_a"] == 16.0


def test_three_disagreeing_samples_in_a_row_fail_with_evidence():
    v, = instrument_crosscheck(rec_with([16.0] * 6, [16.0, 20.8, 20.8, 20.8, 16.0, 16.0]))
    assert not v.passed and v.metrics["first_disagreement_ms"] == 1000
    assert v.evidence[0]["what"] == ("conductor 1: reports 20.80 A, wt.1 measures 16.00 A (off by 4.80 A, "
                                     "allowed 1.80 A)")


def test_needs_instruments_as_ground_truth_and_some_samples():
    rec = rec_with([16.0], [16.0])
    rec.ground_truth = "models"
    with pytest.raises(ValueError, match="needs a recording with instruments"):
        instrument_crosscheck(rec)
    v, = instrument_crosscheck(rec_with([16.0, 16.0], [None, None]))
    assert not v.passed and "no sample with both" in v.summary
