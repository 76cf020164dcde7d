"""Per-cycle traces and the run summary.

The trace is one wide CSV row per control cycle (a data person opens it with pandas, a spreadsheet or
DuckDB): time, per circuit and phase the true current and the limit, per charger the set-point, the
current its PWM signals, the true current per conductor, its state and the allocator's reason.
Rows are flushed as they are written, so an interrupted run still leaves what it has.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path


class TraceWriter:
    def __init__(self, path: Path, circuits: list, chargers: list):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = self.path.open("w", newline="")
        self._w = csv.writer(self._f)
        header = ["t_s"]
        for c in circuits:
            header += [f"{c}.I{p}_A" for p in (1, 2, 3)] + [f"{c}.limit{p}_A" for p in (1, 2, 3)]
        for k in chargers:
            header += [f"{k}.setpoint_A", f"{k}.pwm_A"] + [f"{k}.I{p}_A" for p in (1, 2, 3)] + \
                      [f"{k}.state", f"{k}.reason"]
        self._w.writerow(header)
        self.rows = 0

    def row(self, values: list):
        self._w.writerow(values)
        self.rows += 1
        if self.rows % 256 == 0:
            self._f.flush()

    def close(self):
        self._f.flush()
        self._f.close()


def write_json(path: Path, data: dict):
    Path(path).write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
