"""The runner writes a trace row as cached text parts (rig.runner.Run.record): the bytes must be what
csv.writer gives for the whole row, built field by field as before, whatever the values: equal values
that print differently (0.0 / -0.0, 6 / 6.0, 1 / True), empty and None fields, text that needs
quoting, NaN; and a part must be formatted again whenever any of its values changed.
"""
from __future__ import annotations

import csv
import io
import random
from types import SimpleNamespace

from dlbrig.rig.runner import Run
from dlbrig.rig.scenario import load_scenario

POOL = [0.0, -0.0, 6, 6.0, 1, True, 16.0004, 16.0, 1e-7, float("nan"), "", None, "a,b", 'say "x"',
        "line\nbreak", 230.12345]
STATUS = ["charging", "connected_idle", "a,b", "", 0]


class _Cp:
    def __init__(self):
        self.evse = SimpleNamespace(applied_current_a=0.0)
        self.cur = [0.0, 0.0, 0.0]
        self.status = "disconnected"

    def currents_a(self):
        return list(self.cur)


def _plain_row(run, t_ms, res, truth, cps):
    """The trace row as Run.record built it before the cached parts (the definition)."""
    row = [t_ms / 1000]
    for name in run.site.circuit_names:
        a, b, c = truth[name]
        row += (round(a, 3), round(b, 3), round(c, 3), *run.kpis.limits[name])
    by_name = res.chargers if res is not None else None
    for (name, _), cp in zip(run._trace_chargers, cps):
        r = by_name[name] if by_name is not None else None
        evse = cp.evse
        a, b, c = cp.currents_a()
        row += (r.current_a if r else "",
                round(evse.applied_current_a, 3) if hasattr(evse, "applied_current_a") else "",
                round(a, 3), round(b, 3), round(c, 3), cp.status, r.reason if r else "")
    return row


def _num(rng):
    v = rng.choice(POOL)
    return v if isinstance(v, (int, float)) else rng.choice([0.0, -0.0, 6, 6.0])


def test_cached_trace_parts_give_csv_writer_bytes(tmp_path):
    sc = load_scenario("office", duration="1m")
    run = Run(sc, tmp_path)
    cps = [_Cp() for _ in run._trace_chargers]
    run._trace_chargers = [(n, cp) for (n, _), cp in zip(run._trace_chargers, cps)]
    run.kpis.update = lambda *a, **k: None          # the KPIs do not take odd values: not under test
    rng = random.Random(7)
    rows = []
    for step in range(400):
        t_ms = step * 1000
        # few changes per step, so most parts are served from the cache (as in a real run)
        for cp in cps:
            if rng.random() < 0.2:
                cp.evse.applied_current_a = _num(rng)
            if rng.random() < 0.2:
                cp.cur[rng.randrange(3)] = _num(rng)
            if rng.random() < 0.1:
                cp.status = rng.choice(STATUS)
            if rng.random() < 0.05 and hasattr(cp.evse, "applied_current_a"):
                del cp.evse.applied_current_a       # a model without it: empty field
            elif not hasattr(cp.evse, "applied_current_a"):
                cp.evse.applied_current_a = 6.0
        truth = {n: [_num(rng) if rng.random() < 0.3 else 5.0 for _ in range(3)] for n in run.site.circuit_names}
        run.plant.truth = truth
        if step % 50 == 7:
            res = None
        else:
            res = SimpleNamespace(chargers={
                n: (SimpleNamespace(current_a=rng.choice(POOL[:12]) if rng.random() < 0.3 else 6.0,
                                    reason=rng.choice(["", "circuit main L1", "x,y", None]))
                    if rng.random() < 0.9 else None)
                for n, _ in run._trace_chargers})
        rows.append(_plain_row(run, t_ms, res, truth, cps))
        run.record(t_ms, res, 1.0)
    run.trace.close()
    got = (tmp_path / "trace.csv").read_bytes().split(b"\r\n", 1)[1]
    ref = io.StringIO(newline="")
    rw = csv.writer(ref)
    for row in rows:
        rw.writerow(row)
    assert got == ref.getvalue().encode()
    assert run.trace.rows == 400
