"""Run.record in fast mode (caches) reuses a charger's trace part while its EVSE's change counter
and the knob generation hold; the trace must be byte for byte the plain path's (caches off) when
the models change through writes, the state machine and knobs (config / fault assignments)."""
from types import SimpleNamespace

from dlbrig.rig.runner import Run
from dlbrig.rig.scenario import load_scenario


def _trace(tmp_path, caches):
    sc = load_scenario("office", duration="5m")
    run = Run(sc, tmp_path / str(caches), caches=caches)
    plant = run.plant
    names = list(plant.chargers)
    for k, name in enumerate(names[:12]):
        plant._plug(name, "sedan_3p" if k % 3 else "compact_1p", 0, vehicle=f"v{k}")
    for step in range(150):
        t = step * 1000
        plant.advance(t)
        cps = plant.chargers
        if step == 50:          # set-points through the charger's own write (counted state)
            for name in names[:6]:
                cps[name].write_point("setpoint_a", 10.0, t)
        if step == 72:          # a knob the status depends on: no counted assignment, and the
            # controller fields (res) are those of the step before: only the generation tells
            cps[names[1]].evse.config.charging_threshold_a = 50.0
        if step == 90:
            cps[names[2]].write_point("enabled", False, t)
        if step == 110:         # a fault knob: the reported current only, the trace keeps the truth
            cps[names[3]].evse.faults.misreport_current_pct = 20.0
        if step == 122:
            cps[names[1]].evse.config.charging_threshold_a = 0.5
        res = None if step % 40 == 3 else SimpleNamespace(chargers={
            n: SimpleNamespace(current_a=(10.0 if step >= 50 and i < 6 else 6.0) if step % 7 else 0.0,
                               reason="share" if step % 11 else "min")
            for i, n in enumerate(names)})
        run.record(t, res, 1.0)
    run.trace.close()
    return (tmp_path / str(caches) / "trace.csv").read_bytes()


def test_cached_charger_parts_equal_the_plain_trace(tmp_path):
    fast, plain = _trace(tmp_path, True), _trace(tmp_path, False)
    assert fast.count(b"ev_suspended") > 10            # the knob change reached the status
    assert fast == plain
