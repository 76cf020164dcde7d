"""Fast-mode caches change nothing: the same run with and without them gives identical results.

The caches (``run_fast(..., caches=...)``): device images keep ``points()`` per device and
``now_ms`` (dropped on writes, heartbeats and plant advances), read layouts and the last encoding
per register; drivers keep the last responses and their decoding. The reference is the same code
with the caches off, in the same process (no recorded golden).
"""
from __future__ import annotations

import hashlib
import json

import pytest

from dlbrig.rig.runner import run_fast
from dlbrig.rig.scenario import load_scenario


def _run(tmp_path, name, duration, caches):
    sc = load_scenario(name, duration=duration)
    out = tmp_path / f"{name}-{caches}"
    s = run_fast(sc, out, caches=caches)
    for k in ("wall_s", "speed_x_realtime"):
        s.pop(k)
    trace = hashlib.sha256((out / "trace.csv").read_bytes()).hexdigest()
    return json.dumps(s, sort_keys=True, default=str), trace, s


# arrival_burst: 20 EVs plug in within 5 minutes on KEBA and Vestel chargers and share the main;
# showroom: one device of every shipped profile (every map and driver), EVs plugging in
@pytest.mark.parametrize("name,duration", [("arrival_burst", "9m"), ("showroom", "4m")])
def test_caches_do_not_change_results(tmp_path, name, duration):
    with_caches = _run(tmp_path, name, duration, True)
    without = _run(tmp_path, name, duration, False)
    assert with_caches[0] == without[0]            # summary: energy, sessions, overshoot, events
    assert with_caches[1] == without[1]            # trace.csv, byte for byte
    s = with_caches[2]
    if name == "arrival_burst":
        assert s["sessions"], "the window must include arrivals"
        assert s["energy_delivered_kwh"] > 0
