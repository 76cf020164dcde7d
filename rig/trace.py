"""Per-cycle traces and the run summary.

The trace is one wide CSV row per control cycle (a data person opens it with pandas, a spreadsheet or
DuckDB): time, per circuit and phase the true current and the limit, per charger the set-point, the
current its PWM signals, the true current per conductor, its state and the allocator's reason.
Rows are flushed as they are written, so an interrupted run still leaves what it has.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path


class TraceWriter:
    """The bytes are exactly what ``csv.writer(f).writerow`` gives row by row; a row can also come as
    text (:meth:`line`, parts formatted by :meth:`fields`), which lets the runner keep the text of
    what did not change. Every FLUSH_ROWS rows the file is flushed to the OS."""

    FLUSH_ROWS = 256

    def __init__(self, path: Path, circuits: list, chargers: list):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = self.path.open("w", newline="")
        self._w = csv.writer(self._f)
        # formats fields exactly as the file's writer (same dialect): see fields()
        self._text = io.StringIO()
        self._tw = csv.writer(self._text)
        self._end = self._tw.dialect.lineterminator
        header = ["t_s"]
        for c in circuits:
            header += [f"{c}.I{p}_A" for p in (1, 2, 3)] + [f"{c}.limit{p}_A" for p in (1, 2, 3)]
        for k in chargers:
            header += [f"{k}.setpoint_A", f"{k}.pwm_A"] + [f"{k}.I{p}_A" for p in (1, 2, 3)] + \
                      [f"{k}.state", f"{k}.reason"]
        self._w.writerow(header)
        self.rows = 0

    def fields(self, values: list) -> str:
        """``values`` as csv text without the line end, as ``writerow`` writes them. csv quotes field by
        field, so the texts of consecutive parts of a row joined by "," are the row's text, provided
        no part is a single empty field (alone on a row that one is written as ``""``)."""
        t = self._text
        t.seek(0)
        t.truncate()
        self._tw.writerow(values)
        return t.getvalue()[:-len(self._end)]

    def row(self, values: list):
        self._w.writerow(values)
        self.rows += 1
        if self.rows % self.FLUSH_ROWS == 0:
            self._f.flush()

    def line(self, text: str):
        """One row already formatted (by :meth:`fields`, parts joined by ",")."""
        self._f.write(text + self._end)
        self.rows += 1
        if self.rows % self.FLUSH_ROWS == 0:
            self._f.flush()

    def close(self):
        if self._f.closed:
            return
        self._f.flush()
        self._f.close()


def write_json(path: Path, data: dict):
    Path(path).write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
