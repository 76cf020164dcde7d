"""Kpis.update's spelled-out maxima are max()'s: the first of equal values stays (a -0.0 peak
before 0.0 prints apart), overshoot only above the limit."""
from dlbrig.core import Site
from dlbrig.rig.runner import Kpis
from dlbrig.rig.scenario import load_scenario


def _reference(k, dt_s, truth):
    for name, cur in truth.items():
        lim = k["limits"][name]
        k["peak_a"][name] = max(k["peak_a"][name], max(cur))
        over = max(c - l for c, l in zip(cur, lim))
        if over > 1e-6:
            k["overshoot_as"][name] += sum(max(0.0, c - l) for c, l in zip(cur, lim)) * dt_s
            k["time_over_s"][name] += dt_s
            k["max_over_a"][name] = max(k["max_over_a"][name], over)


def test_update_equals_max_expressions():
    site = Site.from_dict(load_scenario("office", duration="1m").site)
    kp = Kpis(site)
    ref = {f: {n: (list(v) if isinstance(v, list) else v) for n, v in getattr(kp, f).items()}
           for f in ("limits", "peak_a", "overshoot_as", "time_over_s", "max_over_a")}
    names = site.circuit_names
    rows = [[-0.0, -0.0, -0.0], [0.0, -0.0, 0.0], [5.0, 5.0, 4.0], [260.0, 251.0, 249.0],
            [-3.0, 120.0, 120.0], [99.0, 101.0, 101.0], [81.0, 80.0, 82.5]]
    for step in range(len(rows)):
        truth = {n: list(rows[(step + i) % len(rows)]) for i, n in enumerate(names)}
        kp.update(1.0, truth, 230)
        _reference(ref, 1.0, truth)
        for f in ("peak_a", "overshoot_as", "time_over_s", "max_over_a"):
            assert repr(getattr(kp, f)) == repr(ref[f]), (step, f)
