"""The certification reports: one self-contained HTML file a lab can sign, JUnit XML for CI, a
machine-readable ``summary.json``, and (when raw Modbus frames were captured) a ``capture.pcap``.

    paths = write_reports(out_dir, suite, frames=frames)

``suite`` is a :class:`~dlbrig.rig.certify.model.SuiteResult`. Verdicts are read by duck typing
(``check``, ``subject``, ``passed``, ``summary``, ``metrics``, ``evidence``, ``markers``,
``requirement``; a ``dict`` with those keys works too), so this module does not import the checkers.
``frames`` is optional: case id -> frames with ``.t_ms``, ``.direction`` and ``.describe()``; frames
that also carry raw bytes (``.data``, ``.peer``, ``.local``, ``.transport``) go into the pcap.

Every verdict shows its evidence (DESIGN.md, "Certification"): the requirement, the metrics, the
timestamped evidence, plots of the recording (per circuit: true current per phase against the
limit, with the timeline steps and the checker's markers; per charger involved: set-point, PWM
current and true current) and the first Modbus frames of the case.

Plots are inline SVG drawn here (:class:`SvgPlot`: a few ms a plot, where matplotlib's Agg took
~0.2 s, so a 30-case report renders in about a second, with no plotting dependency), and every
line is decimated to at most :data:`MAX_POINTS` points (two per pixel column) by a min/max
reduction, so a peak above a limit survives decimation.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import html
import itertools
import json
import math
import os
import re
import socket
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Iterable

#: at most this many points per plotted line
MAX_POINTS = 2000
#: at most this many charger plots per case
MAX_CHARGER_PLOTS = 6
#: at most this many circuit plots per case
MAX_CIRCUIT_PLOTS = 8
#: Modbus frames listed per case (and around the first failure)
MAX_FRAMES = 50
#: evidence items listed per verdict (the rest are counted)
MAX_EVIDENCE = 100
#: vertical markers per plot
MAX_MARKERS = 16
#: metrics lists longer than this are series: summarised in the HTML, left out of summary.json
MAX_METRIC_LIST = 50

#: IEC 60898-1 conventional currents (multiples of In): no trip <= 1 h / trip < 1 h
#: (reference/standards.md, "Tripping characteristic tests")
MCB_NO_TRIP = 1.13
MCB_TRIP = 1.45

#: server ports in the pcap: Modbus/TCP on 502 (Wireshark decodes it with no configuration); RTU
#: has no standard port, so every RTU server sits on 5020 (Decode As... -> Modbus RTU, once)
PCAP_TCP_PORT = 502
PCAP_RTU_PORT = 5020

_STATUS_LABEL = {"pass": "PASS", "fail": "FAIL", "error": "ERROR", "skipped": "SKIPPED"}


# ---------------------------------------------------------------------------------------- public
def write_reports(out_dir, suite, *, frames: dict | None = None) -> dict[str, Path]:
    """Write ``report.html``, ``junit.xml``, ``summary.json`` (and ``capture.pcap`` when ``frames``
    carry raw Modbus bytes and scapy is installed) into ``out_dir``. Returns name -> path of every
    file written (keys: ``"html"``, ``"junit"``, ``"summary"``, and ``"pcap"`` when written)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    frames = frames or {}
    written: dict[str, Path] = {}

    pcap_note, pcap_map = "", []
    raw = _raw_frames(suite, frames)
    if raw:
        try:
            pcap_map = write_pcap(out / "capture.pcap", raw)
            written["pcap"] = out / "capture.pcap"
        except ImportError:
            pcap_note = ("capture.pcap not written: scapy is not installed "
                         "(pip install scapy); the frames are listed per case below.")

    p = out / "summary.json"
    p.write_text(json.dumps(summary_dict(suite, frames), indent=2, ensure_ascii=False) + "\n",
                 encoding="utf-8")
    written["summary"] = p

    p = out / "junit.xml"
    p.write_bytes(junit_xml(suite))
    written["junit"] = p

    p = out / "report.html"
    p.write_text(render_html(suite, frames=frames, base_dir=out, pcap_written="pcap" in written,
                             pcap_note=pcap_note, pcap_map=pcap_map), encoding="utf-8")
    written["html"] = p
    return written


# ---------------------------------------------------------------------------------- small helpers
def _vget(v, name: str, default=None):
    """A verdict field: attribute or mapping key (a verdict reloaded from JSON is a dict)."""
    if isinstance(v, dict):
        return v.get(name, default)
    return getattr(v, name, default)


def _version() -> str:
    try:
        from importlib.metadata import version
        return version("dlbrig")
    except Exception:
        try:
            import dlbrig
            return getattr(dlbrig, "__version__", "unknown")
        except Exception:
            return "unknown"


def _fmt_duration(s: float | None) -> str:
    if s is None:
        return "-"
    s = float(s)
    if s < 60:
        return f"{s:.2f} s" if s < 10 else f"{s:.1f} s"
    m, sec = divmod(int(round(s)), 60)
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min {sec:02d} s" if h else f"{m} min {sec:02d} s"


def _fmt_t(t_ms) -> str:
    try:
        return f"{float(t_ms) / 1000:.3f} s"
    except (TypeError, ValueError):
        return str(t_ms)


def _fmt_num(x) -> str:
    if isinstance(x, bool) or x is None:
        return str(x)
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        if math.isnan(x) or math.isinf(x):
            return str(x)
        return f"{x:.4g}" if abs(x) < 1e5 else f"{x:.6g}"
    return str(x)


_XML_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _clean(text) -> str:
    """A string safe for XML 1.0 (and HTML): control characters become U+FFFD."""
    return _XML_BAD.sub("\ufffd", "" if text is None else str(text))


def _esc(text) -> str:
    return html.escape(_clean(text), quote=True)


def _anchor(case_id: str) -> str:
    return "case-" + re.sub(r"[^A-Za-z0-9_-]", "_", str(case_id))


def _first_line(text, limit: int = 200) -> str:
    line = (str(text or "").strip().splitlines() or [""])[0]
    return line if len(line) <= limit else line[:limit - 1] + "…"


def _jsonable(x, *, drop_series: bool = False):
    """Plain JSON types: dataclasses, tuples, numpy scalars/arrays, NaN -> None, Paths -> str.
    With ``drop_series`` a list longer than MAX_METRIC_LIST becomes {"series": n points}."""
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        x = {f.name: getattr(x, f.name) for f in dataclasses.fields(x)}
    if isinstance(x, dict):
        return {str(k): _jsonable(v, drop_series=drop_series) for k, v in x.items()}
    if hasattr(x, "tolist") and not isinstance(x, (str, bytes)):
        x = x.tolist()
    if isinstance(x, (list, tuple)):
        if drop_series and len(x) > MAX_METRIC_LIST:
            return {"series_omitted": True, "points": len(x)}
        return [_jsonable(v, drop_series=drop_series) for v in x]
    if isinstance(x, float):
        return None if (math.isnan(x) or math.isinf(x)) else x
    if isinstance(x, (str, int, bool)) or x is None:
        return x
    if isinstance(x, bytes):
        return x.hex()
    if isinstance(x, Path):
        return str(x)
    return str(x)


def _verdicts(cr) -> list:
    return list(getattr(cr, "verdicts", None) or [])


def _failed_verdicts(cr) -> list:
    return [v for v in _verdicts(cr) if not _vget(v, "passed", False)]


def case_reason(cr) -> str:
    """One line: why the case has its status."""
    if cr.status == "error":
        return "error: " + _first_line(cr.error or "unknown error")
    if cr.status == "skipped":
        return _first_line(cr.error or "skipped")
    vs = _verdicts(cr)
    bad = _failed_verdicts(cr)
    if bad:
        v = bad[0]
        more = f" (+{len(bad) - 1} more failed)" if len(bad) > 1 else ""
        return f"{_vget(v, 'check', '?')} [{_vget(v, 'subject', '')}]: " \
               f"{_first_line(_vget(v, 'summary', ''))}{more}"
    if cr.status == "fail":
        return _first_line(cr.error or "failed")
    if not vs:
        return "no checks"
    return f"{len(vs)}/{len(vs)} checks passed"


def suite_counts(suite) -> dict:
    c = {"total": len(suite.cases), "pass": 0, "fail": 0, "error": 0, "skipped": 0}
    for cr in suite.cases:
        c[cr.status if cr.status in c else "error"] += 1
    return c


def overall(suite) -> str:
    c = suite_counts(suite)
    if suite.interrupted:
        return "INCOMPLETE"
    if c["fail"] or c["error"]:
        return "FAIL"
    if c["pass"] == 0:
        return "NO RESULT"
    return "PASS"


# ---------------------------------------------------------------------------------- summary.json
def _kpis(cr) -> dict:
    s = getattr(cr, "summary", None) or {}
    keep = ("simulated_s", "wall_s", "speed_x_realtime", "circuits", "site_energy_kwh", "peak_kw",
            "energy_delivered_kwh", "energy_requested_kwh", "share_met", "failed_transactions",
            "controller")
    return {k: _jsonable(s[k]) for k in keep if k in s}


def _verdict_dict(v, case) -> dict:
    return {
        "check": _vget(v, "check", ""), "subject": _vget(v, "subject", ""),
        "passed": bool(_vget(v, "passed", False)), "summary": _vget(v, "summary", ""),
        "requirement": _vget(v, "requirement", "") or "",
        "metrics": _jsonable(_vget(v, "metrics", None) or {}, drop_series=True),
        "evidence": _jsonable(list(_vget(v, "evidence", None) or [])),
        "markers": _jsonable(list(_vget(v, "markers", None) or [])),
    }


def summary_dict(suite, frames: dict | None = None) -> dict:
    frames = frames or {}
    counts = suite_counts(suite)
    cases = []
    for cr in suite.cases:
        case = cr.case
        cases.append({
            "id": case.id, "title": case.title, "family": case.family, "role": case.role,
            "requirement": case.requirement, "source": case.source, "scenario": case.scenario,
            "status": cr.status, "reason": case_reason(cr), "duration_s": round(cr.duration_s or 0, 3),
            "error": cr.error, "out_dir": None if cr.out_dir is None else str(cr.out_dir),
            "verdicts": [_verdict_dict(v, case) for v in _verdicts(cr)],
            "kpis": _kpis(cr), "frames": len(frames.get(case.id) or []),
        })
    return {
        "report": "dlbrig certify", "dlbrig_version": _version(),
        "generated": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "dut": suite.dut, "firmware": suite.firmware, "seed": suite.seed, "started": suite.started,
        "duration_s": round(suite.duration_s or 0, 3), "interrupted": bool(suite.interrupted),
        "verdict": overall(suite),
        "totals": {"cases": counts["total"], "passed": counts["pass"], "failed": counts["fail"],
                   "errors": counts["error"], "skipped": counts["skipped"],
                   "verdicts": sum(len(_verdicts(cr)) for cr in suite.cases),
                   "verdicts_failed": sum(len(_failed_verdicts(cr)) for cr in suite.cases)},
        "cases": cases,
    }


# -------------------------------------------------------------------------------------- junit.xml
def _verdict_text(v, max_evidence: int = 20, case=None) -> str:
    lines = [f"{'PASS' if _vget(v, 'passed', False) else 'FAIL'} {_vget(v, 'check', '')} "
             f"[{_vget(v, 'subject', '')}]: {_vget(v, 'summary', '')}"]
    req = _vget(v, "requirement", "") or (case.requirement if case is not None else "")
    if req:
        lines.append(f"  requirement: {req}")
    ev = list(_vget(v, "evidence", None) or [])
    for e in ev[:max_evidence]:
        t = e.get("t_ms") if isinstance(e, dict) else None
        what = e.get("what") if isinstance(e, dict) else e
        lines.append(f"  t={_fmt_t(t)}: {what}")
    if len(ev) > max_evidence:
        lines.append(f"  ... {len(ev) - max_evidence} more evidence items")
    return "\n".join(lines)


def junit_xml(suite) -> bytes:
    """JUnit XML in the shape CI systems read (Jenkins/GitLab/GitHub test reporters)."""
    c = suite_counts(suite)
    root = ET.Element("testsuites", name="dlbrig certify", tests=str(c["total"]),
                      failures=str(c["fail"]), errors=str(c["error"]), skipped=str(c["skipped"]),
                      time=f"{suite.duration_s or 0:.3f}")
    ts = ET.SubElement(root, "testsuite", name="dlbrig certify", tests=str(c["total"]),
                       failures=str(c["fail"]), errors=str(c["error"]), skipped=str(c["skipped"]),
                       time=f"{suite.duration_s or 0:.3f}", timestamp=_clean(suite.started),
                       hostname=_clean(socket.gethostname()))
    props = ET.SubElement(ts, "properties")
    for k, v in (("dut", suite.dut), ("firmware", suite.firmware), ("seed", suite.seed),
                 ("interrupted", str(bool(suite.interrupted)).lower()),
                 ("dlbrig_version", _version())):
        ET.SubElement(props, "property", name=k, value=_clean(v))
    for cr in suite.cases:
        case = cr.case
        tc = ET.SubElement(ts, "testcase", classname=_clean(f"dlbrig.{case.family}"),
                           name=_clean(f"{case.id} {case.title}"), time=f"{cr.duration_s or 0:.3f}")
        if cr.status == "fail":
            bad = _failed_verdicts(cr)
            msg = case_reason(cr)
            body = "\n\n".join(_verdict_text(v, case=case) for v in bad) or _clean(cr.error or "failed")
            el = ET.SubElement(tc, "failure", message=_clean(msg), type="VerdictFailed")
            el.text = _clean(body)
        elif cr.status == "error":
            el = ET.SubElement(tc, "error", message=_clean(_first_line(cr.error or "error")),
                               type="CaseError")
            el.text = _clean(cr.error or "")
        elif cr.status == "skipped":
            ET.SubElement(tc, "skipped", message=_clean(_first_line(cr.error or "skipped")))
        vs = _verdicts(cr)
        out_lines = [f"{case.id}: {cr.status.upper()} - {case_reason(cr)}"]
        out_lines += [_verdict_text(v, max_evidence=5) for v in vs]
        if cr.out_dir:
            out_lines.append(f"trace: {os.path.join(str(cr.out_dir), 'trace.csv')}")
        so = ET.SubElement(tc, "system-out")
        so.text = _clean("\n".join(out_lines))
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


# ------------------------------------------------------------------------------------------ plots
#: list id -> (list, float array) while a report renders: every recording column is converted once
_ARRAYS: dict | None = None


def _floats(y):
    """A float array; ``None`` (a set-point not written) -> NaN. Cached per list while rendering."""
    import numpy as np

    if isinstance(y, np.ndarray):
        return y.astype(float, copy=False)
    if _ARRAYS is not None:
        hit = _ARRAYS.get(id(y))
        if hit is not None and hit[0] is y and len(hit[1]) == len(y):
            return hit[1]
    try:
        arr = np.asarray(y, dtype=float)
    except TypeError:
        arr = np.array([np.nan if v is None else v for v in y], dtype=float)
    if _ARRAYS is not None and isinstance(y, list):
        _ARRAYS[id(y)] = (y, arr)
    return arr


def _decimate(t, y, max_points: int = MAX_POINTS):
    """Min/max decimation: at most ``max_points`` points, every bucket's extremes kept (in time
    order), so a peak above a limit is never hidden by the plot. ``None`` -> NaN (a gap)."""
    import numpy as np

    t = np.asarray(t, dtype=float)
    y = _floats(y)
    n = min(len(t), len(y))
    t, y = t[:n], y[:n]
    if n <= max_points:
        return t, y
    buckets = max(1, max_points // 2)
    edges = np.linspace(0, n, buckets + 1).astype(int)
    starts = edges[:-1]
    lo_src = np.where(np.isnan(y), np.inf, y)
    hi_src = np.where(np.isnan(y), -np.inf, y)
    lo = np.minimum.reduceat(lo_src, starts)
    hi = np.maximum.reduceat(hi_src, starts)
    lo[np.isinf(lo)] = np.nan
    hi[np.isinf(hi)] = np.nan
    t0 = t[starts]
    t1 = t[np.maximum(edges[1:] - 1, starts)]
    rising = y[starts] <= y[np.maximum(edges[1:] - 1, starts)]
    first = np.where(rising, lo, hi)
    second = np.where(rising, hi, lo)
    tt = np.empty(2 * buckets)
    yy = np.empty(2 * buckets)
    tt[0::2], tt[1::2] = t0, t1
    yy[0::2], yy[1::2] = first, second
    return tt, yy


_SVG_IDS = itertools.count(1)
_PHASE_COLORS = ("#1f77b4", "#2ca02c", "#9467bd")


def _nice_ticks(lo: float, hi: float, n: int = 6) -> list:
    span = hi - lo
    if not (span > 0) or not math.isfinite(span):
        return [lo]
    raw = span / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    out, v = [], first
    while v <= hi + 1e-9 * span:
        out.append(0.0 if abs(v) < step * 1e-9 else v)
        v += step
    return out


def _tick_label(v: float) -> str:
    return f"{v:.6g}"


class SvgPlot:
    """A small time-series plot drawn as inline SVG: a few ms per plot (matplotlib's Agg needs
    ~0.2 s), text stays selectable and crisp in print, and the file stays self-contained."""

    W, H = 820, 210
    L, R, T, B = 52, 12, 36, 30

    def __init__(self, title: str, t_lo: float, t_hi: float, y_lo: float, y_hi: float,
                 ylabel: str = "A", height: int | None = None):
        self.title = title
        self.H = height or self.H
        self.t_lo, self.t_hi = t_lo, (t_hi if t_hi > t_lo else t_lo + 1.0)
        self.y_lo, self.y_hi = y_lo, (y_hi if y_hi > y_lo else y_lo + 1.0)
        self.ylabel = ylabel
        self.items: list[str] = []
        self.legend: list[tuple] = []    # (label, color, dash)
        self.id = next(_SVG_IDS)
        self.pw = self.W - self.L - self.R
        self.ph = self.H - self.T - self.B

    @property
    def max_points(self) -> int:
        """Two points per pixel column: more is invisible."""
        return min(MAX_POINTS, 2 * self.pw)

    def x(self, t):
        return self.L + (t - self.t_lo) / (self.t_hi - self.t_lo) * self.pw

    def y(self, v):
        return self.T + (self.y_hi - v) / (self.y_hi - self.y_lo) * self.ph

    def line(self, t, ys, color: str, label: str, *, width: float = 1.0, dash: str = "",
             step: bool = False) -> None:
        import numpy as np

        tt, yy = _decimate(t, ys, self.max_points)
        if not len(tt):
            return
        d = _path_d(np.round(self.L + (tt - self.t_lo) / (self.t_hi - self.t_lo) * self.pw, 1),
                    np.round(self.T + (self.y_hi - yy) / (self.y_hi - self.y_lo) * self.ph, 1), step)
        if d:
            dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
            self.items.append(f'<path d="{d}" fill="none" stroke="{color}" stroke-width="{width:g}"'
                              f'{dash_attr} clip-path="url(#clip{self.id})"/>')
        self.legend.append((label, color, dash))

    def hline(self, v: float, color: str, label: str, *, dash: str = "", width: float = 1.2) -> None:
        if not (self.y_lo <= v <= self.y_hi):
            return
        yv = round(self.y(v), 1)
        d = f' stroke-dasharray="{dash}"' if dash else ""
        self.items.append(f'<line x1="{self.L}" x2="{self.L + self.pw}" y1="{yv:g}" y2="{yv:g}" '
                          f'stroke="{color}" stroke-width="{width:g}"{d}/>')
        self.legend.append((label, color, dash))

    def markers(self, markers) -> int:
        """Vertical labelled lines; returns how many were left out."""
        inside = [m for m in markers if self.t_lo <= m[0] <= self.t_hi]
        shown = inside[:MAX_MARKERS]
        fit = max(8, int(self.ph / 4.8))          # characters that fit along the plot's height
        last_label_x = -1e9
        for t, label, kind in shown:
            color = "#7b3fb5" if kind == "step" else "#d97706"
            xv = round(self.x(t), 1)
            parts = [f'<g><title>t = {t:.3f} s: {_esc(label)}</title>'
                     f'<line x1="{xv:g}" x2="{xv:g}" y1="{self.T}" y2="{self.T + self.ph}" stroke="{color}" '
                     f'stroke-width="1" stroke-dasharray="4 3"/>']
            if xv - last_label_x >= 10:           # labels of markers closer than that would overlap
                short = label if len(label) <= fit else label[:fit - 1] + "…"
                parts.append(f'<text x="{xv - 2:g}" y="{self.T + 3}" '
                             f'transform="rotate(-90 {xv - 2:g} {self.T + 3})" text-anchor="end" '
                             f'font-size="8" fill="{color}">{_esc(short)}</text>')
                last_label_x = xv
            self.items.append("".join(parts) + "</g>")
        return len(inside) - len(shown)

    def render(self) -> str:
        L, T, pw, ph = self.L, self.T, self.pw, self.ph
        out = [f'<svg class="plot" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {self.W} {self.H}" '
               f'width="{self.W}" height="{self.H}" role="img" font-family="Helvetica,Arial,sans-serif">',
               f"<title>{_esc(self.title)}</title>",
               f'<defs><clipPath id="clip{self.id}"><rect x="{L}" y="{T - 1}" width="{pw}" '
               f'height="{ph + 2}"/></clipPath></defs>',
               f'<rect x="{L}" y="{T}" width="{pw}" height="{ph}" fill="#fff" stroke="#9ca3af"/>']
        for v in _nice_ticks(self.y_lo, self.y_hi, 5):
            yv = round(self.y(v), 1)
            out.append(f'<line x1="{L}" x2="{L + pw}" y1="{yv:g}" y2="{yv:g}" stroke="#e5e7eb"/>'
                       f'<text x="{L - 4}" y="{yv + 3:g}" text-anchor="end" font-size="9">{_tick_label(v)}</text>')
        for v in _nice_ticks(self.t_lo, self.t_hi, 8):
            xv = round(self.x(v), 1)
            out.append(f'<line x1="{xv:g}" x2="{xv:g}" y1="{T}" y2="{T + ph}" stroke="#e5e7eb"/>'
                       f'<text x="{xv:g}" y="{T + ph + 12}" text-anchor="middle" font-size="9">{_tick_label(v)}</text>')
        out.append(f'<text x="{L + pw / 2:g}" y="{self.H - 4}" text-anchor="middle" font-size="9">time (s)</text>'
                   f'<text x="12" y="{T + ph / 2:g}" transform="rotate(-90 12 {T + ph / 2:g})" '
                   f'text-anchor="middle" font-size="9">{_esc(self.ylabel)}</text>')
        out += self.items
        out.append(f'<text x="{L}" y="13" font-size="11" font-weight="bold">{_esc(self.title)}</text>')
        # legend: one row under the title
        x = L
        for label, color, dash in self.legend:
            d = f' stroke-dasharray="{dash}"' if dash else ""
            out.append(f'<line x1="{x}" x2="{x + 16}" y1="25" y2="25" stroke="{color}" stroke-width="2"{d}/>'
                       f'<text x="{x + 19}" y="28" font-size="9">{_esc(label)}</text>')
            x += 26 + int(5.2 * len(label))
        out.append("</svg>")
        return "".join(out)


def _path_d(xs, ys, step: bool) -> str:
    """SVG path data for pixel coordinates: NaN = a gap (a new "M"), ``step`` = hold each value
    until the next sample; duplicate points and the middle of horizontal runs are dropped."""
    import numpy as np

    if step and len(xs) > 1:
        X = np.empty(2 * len(xs) - 1)
        Y = np.empty(2 * len(xs) - 1)
        X[0::2], X[1::2] = xs, xs[1:]
        Y[0::2], Y[1::2] = ys, ys[:-1]
        xs, ys = X, Y
    n = len(xs)
    valid = ~np.isnan(ys)
    prev_valid = np.concatenate(([False], valid[:-1]))
    next_valid = np.concatenate((valid[1:], [False]))
    same_prev = np.concatenate(([False], ys[1:] == ys[:-1]))
    same_next = np.concatenate((ys[:-1] == ys[1:], [False]))
    dup = prev_valid & same_prev & np.concatenate(([False], xs[1:] == xs[:-1]))
    mid = prev_valid & next_valid & same_prev & same_next
    keep = valid & ~dup & ~mid
    start = valid & ~prev_valid
    idx = np.nonzero(keep)[0]
    if not len(idx):
        return ""
    xl, yl, sl = xs[idx].tolist(), ys[idx].tolist(), start[idx].tolist()
    return "".join(f"{'M' if st else 'L'}{x:g} {y:g}" for x, y, st in zip(xl, yl, sl)) if n else ""


def _finite_max(*arrays, default: float = 0.0) -> float:
    import numpy as np

    best = default
    for a in arrays:
        a = _floats(a)
        if a.size and not np.all(np.isnan(a)):
            best = max(best, float(np.nanmax(a)))
    return best


def _markers(rec, verdicts) -> list:
    """(t_s, label, kind) for the timeline steps (faults, disturbances) and the checkers' markers."""
    out = []
    for st in getattr(rec, "steps", None) or []:
        try:
            t = float(st[0])
        except (TypeError, ValueError, IndexError):
            continue
        label = " ".join(str(x) for x in st[1:] if x not in (None, ""))
        out.append((t / 1000, label, "step"))
    for v in verdicts:
        for m in _vget(v, "markers", None) or []:
            try:
                out.append((float(m[0]) / 1000, str(m[1]), "check"))
            except (TypeError, ValueError, IndexError):
                continue
    seen, uniq = set(), []
    for m in sorted(out, key=lambda m: m[0]):
        key = (round(m[0], 3), m[1])
        if key not in seen:
            seen.add(key)
            uniq.append(m)
    return uniq


def _series_from_metric(value, rec, subject: str | None):
    """A "thermal" metric as (t_s list, y list) or None: aligned list, {t_ms, value(s)} mapping,
    [(t_ms, v)] pairs, or {circuit: one of those}."""
    if value is None:
        return None
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, dict):
        tk = next((k for k in ("t_ms", "t") if k in value), None)
        vk = next((k for k in ("value", "values", "y", "ratio", "thermal") if k in value), None)
        if tk and vk:
            return [float(x) / 1000 for x in value[tk]], list(value[vk])
        if subject is not None and subject in value:
            return _series_from_metric(value[subject], rec, None)
        return None
    if isinstance(value, (list, tuple)) and value:
        if all(isinstance(x, (list, tuple)) and len(x) == 2 for x in value[:5]):
            return [float(p[0]) / 1000 for p in value], [p[1] for p in value]
        if len(value) == len(rec.t_ms):
            return _floats(rec.t_ms) / 1000, value
    return None


def _time_s(rec, window=None):
    """(t in s, slice of the samples, (t_lo, t_hi)) for the whole run or a (lo, hi) s window."""
    import numpy as np

    t = _floats(rec.t_ms) / 1000
    if not len(t):
        return t, slice(0, 0), (0.0, 1.0)
    if window is None:
        return t, slice(0, len(t)), (float(t[0]), float(t[-1]))
    lo, hi = window
    i0 = int(np.searchsorted(t, lo, "left"))
    i1 = int(np.searchsorted(t, hi, "right"))
    return t[i0:i1], slice(i0, i1), (float(lo), float(hi))


def _zoom_title(title: str, window) -> str:
    return title if window is None else f"{title}, zoom {window[0]:g}–{window[1]:g} s"


def zoom_window(rec, verdicts):
    """A window (s) around what the failing verdicts point at (evidence and markers), when it is
    small against the run (< 1/4 of it): the first failure, some time before, the recovery after."""
    ts = []
    for v in verdicts:
        if _vget(v, "passed", False):
            continue
        ts += [e["t_ms"] for e in (_vget(v, "evidence", None) or [])
               if isinstance(e, dict) and isinstance(e.get("t_ms"), (int, float))]
        ts += [m[0] for m in (_vget(v, "markers", None) or [])
               if isinstance(m, (list, tuple)) and m and isinstance(m[0], (int, float))]
    if not ts or not rec.t_ms:
        return None
    run_lo, run_hi = rec.t_ms[0] / 1000, rec.t_ms[-1] / 1000
    lo, hi = min(ts) / 1000, max(ts) / 1000
    pad = max(10 * (rec.cycle_ms or 1000) / 1000, 0.5 * (hi - lo), 5.0)
    lo, hi = max(run_lo, lo - pad), min(run_hi, hi + pad)
    if hi <= lo or (hi - lo) * 4 > (run_hi - run_lo):
        return None
    return round(lo, 3), round(hi, 3)


def plot_circuit(rec, circuit: str, markers, window=None) -> str:
    """Per circuit: the true current per phase against the limit (and limit - margin)."""
    t, sl, (t_lo, t_hi) = _time_s(rec, window)
    series = [_floats(s)[sl] for s in (rec.circuit_current.get(circuit) or [[], [], []])]
    limits = list(rec.limits_a.get(circuit) or [])
    margin = float(rec.margin_a.get(circuit) or 0.0)
    peak = max(_finite_max(*[s for s in series if len(s)]), max(limits) if limits else 0.0)
    p = SvgPlot(_zoom_title(f"circuit {circuit}: true current per phase vs limit", window), t_lo, t_hi,
                0.0, max(1.0, peak * 1.12))
    for ph in range(3):
        if len(series[ph]):
            p.line(t, series[ph], _PHASE_COLORS[ph], f"L{ph + 1} true", width=1.1)
    if limits:
        if len(set(limits)) == 1:
            p.hline(limits[0], "#d62728", f"limit {limits[0]:g} A", width=1.6)
            if margin > 0:
                p.hline(limits[0] - margin, "#d62728", f"limit - margin {limits[0] - margin:g} A",
                        dash="2 3", width=1.0)
        else:
            for ph, lim in enumerate(limits):
                p.hline(lim, _PHASE_COLORS[ph], f"L{ph + 1} limit {lim:g} A", dash="8 3 2 3")
    hidden = p.markers(markers)
    if hidden:
        p.title += f" ({hidden} more markers not drawn)"
    return p.render()


def plot_envelope(rec, circuit: str, markers, thermal=None) -> str:
    """Trip-envelope proximity: the checker's ``thermal`` series (1.0 = trip) when it gave one,
    else the largest phase current over the rated current with the IEC 60898-1 conventional
    non-tripping (1.13 In) and tripping (1.45 In) currents."""
    import numpy as np

    t, _, (t_lo, t_hi) = _time_s(rec)
    if thermal is not None:
        top = max(1.1, _finite_max(thermal[1]) * 1.1)
        p = SvgPlot(f"circuit {circuit}: breaker trip-envelope proximity (checker's thermal state)",
                    t_lo, t_hi, 0.0, top, "trip-envelope use", height=180)
        p.line(np.asarray(thermal[0], dtype=float), thermal[1], "#b91c1c", "thermal (checker)")
        p.hline(1.0, "#d62728", "trip", dash="6 3")
    else:
        series = rec.circuit_current.get(circuit) or [[], [], []]
        limits = rec.limits_a.get(circuit) or [1, 1, 1]
        ratio = np.zeros(len(t))
        for ph in range(3):
            if len(series[ph]) == len(t) and limits[ph]:
                ratio = np.maximum(ratio, _floats(series[ph]) / float(limits[ph]))
        top = max(1.6, _finite_max(ratio) * 1.1)
        p = SvgPlot(f"circuit {circuit}: current over rated current (IEC 60898-1 conventional currents)",
                    t_lo, t_hi, 0.0, top, "I / In", height=180)
        p.line(t, ratio, "#b91c1c", "max phase I / In")
        p.hline(MCB_NO_TRIP, "#f59e0b", f"{MCB_NO_TRIP} In: no trip ≤ 1 h", dash="6 3")
        p.hline(MCB_TRIP, "#d62728", f"{MCB_TRIP} In: trip < 1 h", dash="6 3")
    p.markers(markers)
    return p.render()


def plot_charger(rec, name: str, markers, window=None) -> str:
    """Per charger: the controller's set-point, the current the PWM signals, the true current."""
    s = rec.chargers[name]
    t, sl, (t_lo, t_hi) = _time_s(rec, window)
    pmap = list(rec.phase_map.get(name) or [0, 1, 2])[:3]
    sp, pwm = _floats(s.sp)[sl], _floats(s.pwm)[sl]
    currents = [_floats(s.current[i])[sl] if i < len(s.current) else [] for i in range(len(pmap))]
    peak = _finite_max(sp, pwm, *[c for c in currents if len(c)])
    circ = rec.charger_circuit.get(name, "?")
    p = SvgPlot(_zoom_title(f"charger {name} (circuit {circ}): set-point vs PWM vs true current", window),
                t_lo, t_hi, 0.0, max(1.0, peak * 1.15), height=190)
    for i, site_phase in enumerate(pmap):
        if not len(currents[i]):
            continue
        ph = int(site_phase) % 3 if isinstance(site_phase, (int, float)) else i
        p.line(t, currents[i], _PHASE_COLORS[ph], f"true L{ph + 1}", width=1.0)
    p.line(t, pwm, "#f59e0b", "PWM current", width=1.4, dash="5 3", step=True)
    p.line(t, sp, "#111827", "set-point", width=1.4, step=True)
    mn = rec.min_current_a.get(name)
    if mn:
        p.hline(mn, "#6b7280", f"min {mn:g} A", dash="2 3", width=0.8)
    p.markers(markers)
    return p.render()


def _mentions(text: str, name: str) -> bool:
    return re.search(r"(?<![A-Za-z0-9_])" + re.escape(name) + r"(?![A-Za-z0-9_])", text) is not None


def involved(rec, verdicts) -> tuple[list, list]:
    """(circuits, chargers) the verdicts are about: named in a subject or evidence, or (chargers)
    under a circuit that is a subject. Chargers capped at MAX_CHARGER_PLOTS."""
    chargers, circuits = [], []
    subjects = [str(_vget(v, "subject", "") or "") for v in verdicts]
    texts = subjects + [str(e.get("what", "")) for v in verdicts
                        for e in (_vget(v, "evidence", None) or [])[:200] if isinstance(e, dict)]
    blob = "\n".join(texts)
    for c in rec.circuit_names:
        if any(_mentions(s, c) for s in subjects):
            circuits.append(c)
    # direct mentions: failing verdicts first
    ordered = sorted(verdicts, key=lambda v: bool(_vget(v, "passed", False)))
    for v in ordered:
        subj = str(_vget(v, "subject", "") or "")
        for k in rec.charger_names:
            if k not in chargers and _mentions(subj, k):
                chargers.append(k)
    for k in rec.charger_names:
        if k not in chargers and _mentions(blob, k):
            chargers.append(k)
    for c in circuits:
        for k in rec.subtree_chargers(c):
            if k not in chargers:
                chargers.append(k)
    return circuits, chargers


# ------------------------------------------------------------------------------------------- pcap
def _raw_frames(suite, frames: dict) -> list:
    """(case_id, frame) for frames with raw bytes and endpoints, in case order."""
    out = []
    order = [cr.case.id for cr in suite.cases]
    order += [k for k in frames if k not in order]
    for cid in order:
        for f in frames.get(cid) or []:
            data = getattr(f, "data", None)
            if not isinstance(data, (bytes, bytearray)) or not data:
                continue
            if getattr(f, "direction", None) not in ("rx", "tx"):
                continue
            if not hasattr(f, "peer") or not hasattr(f, "local"):
                continue
            out.append((cid, f))
    return out


def _split_endpoint(text: str):
    """"host:port" (IPv4, or IPv6 with or without brackets) -> (host, port, is_ipv6) or None."""
    import ipaddress

    text = str(text or "")
    m = re.fullmatch(r"\[?([0-9A-Fa-f:.]+?)\]?:(\d+)", text)
    if not m:
        return None
    host, port = m.group(1), int(m.group(2))
    if host == "localhost":
        host = "127.0.0.1"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    return str(ip), port, ip.version == 6


def write_pcap(path, raw: list) -> list:
    """Write (case_id, frame) pairs as a classic pcap (Ethernet/IPv4/TCP) Wireshark opens.

    Each server endpoint gets its own address (127.0.1.N) and a fixed port: 502 for Modbus/TCP
    (Wireshark's Modbus/TCP dissector decodes it with no configuration; requests go to 502,
    responses come from it) and 5020 for RTU (raw RTU ADUs: Decode As... -> Modbus RTU). Masters
    keep their real loopback address and port when they have one. rx = master -> server, tx =
    server -> master; TCP sequence numbers run per direction of each connection. The payload
    bytes are the ADUs exactly as seen on the wire.

    Returns the endpoint mapping as rows (real server, transport, pcap address) for the report.
    Raises ImportError when scapy is not installed."""
    import ipaddress

    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw
    from scapy.utils import PcapWriter

    servers: dict = {}
    masters: dict = {}
    seq: dict = {}
    rows = []

    def server_addr(f):
        key = (getattr(f, "server", ""), str(f.local), getattr(f, "transport", "tcp"))
        if key not in servers:
            n = len(servers) + 1
            port = PCAP_RTU_PORT if key[2] == "rtu" else PCAP_TCP_PORT
            servers[key] = (str(ipaddress.IPv4Address("127.0.1.0") + n), port)
            rows.append({"server": key[0] or "-", "local": key[1] or "-", "transport": key[2],
                         "pcap": f"{servers[key][0]}:{port}"})
        return servers[key]

    def master_addr(f, srv_key):
        real = _split_endpoint(f.peer)
        if real is not None and not real[2]:
            return real[0], real[1]
        key = (str(f.peer), srv_key)
        if key not in masters:
            n = len(masters) + 1
            masters[key] = (str(ipaddress.IPv4Address("127.0.2.0") + n), 40000 + n % 20000)
        return masters[key]

    # timestamps: wall clock when every frame has one; else the injected clock, cases in sequence
    walls = [getattr(f, "wall", None) for _, f in raw]
    use_wall = all(isinstance(w, (int, float)) and w > 0 for w in walls)
    last_case, case_base, case_max = None, 0.0, 0.0
    w = PcapWriter(str(path), linktype=1, sync=False)
    try:
        for cid, f in raw:
            srv = server_addr(f)
            cli = master_addr(f, srv)
            if f.direction == "rx":
                src, dst = cli, srv
            else:
                src, dst = srv, cli
            conn = (src, dst)
            s = seq.get(conn, 1)
            a = seq.get((dst, src), 1)
            data = bytes(f.data)
            pkt = (Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
                   / IP(src=src[0], dst=dst[0])
                   / TCP(sport=src[1], dport=dst[1], flags="PA", seq=s, ack=a, window=65535)
                   / Raw(load=data))
            seq[conn] = (s + len(data)) % (1 << 32)
            if use_wall:
                pkt.time = float(f.wall)
            else:
                if cid != last_case:
                    case_base, last_case = case_max + (1.0 if case_max else 0.0), cid
                tsec = case_base + float(getattr(f, "t_ms", 0) or 0) / 1000
                case_max = max(case_max, tsec)
                pkt.time = tsec
            w.write(pkt)
    finally:
        w.close()
    return rows


# ------------------------------------------------------------------------------------------- HTML
_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;font-size:13px;color:#111827;
 margin:0 auto;max-width:1100px;padding:16px 24px;line-height:1.4}
h1{font-size:22px;margin:4px 0 8px}h2{font-size:17px;margin:28px 0 8px;border-bottom:2px solid #e5e7eb;
 padding-bottom:4px}h3{font-size:14px;margin:16px 0 6px}h4{font-size:13px;margin:10px 0 4px}
table{border-collapse:collapse;margin:6px 0 10px}th,td{border:1px solid #d1d5db;padding:3px 7px;
 text-align:left;vertical-align:top}th{background:#f3f4f6;font-weight:600}
table.doc th{width:190px}table.doc{width:100%}table.wide{width:100%}
.st{display:inline-block;font-weight:700;padding:1px 8px;border-radius:3px;color:#fff;font-size:12px}
.st-pass{background:#15803d}.st-fail{background:#b91c1c}.st-error{background:#7c2d12}
.st-skipped{background:#6b7280}.st-incomplete{background:#b45309}.st-no-result{background:#6b7280}
tr.row-fail td,tr.row-error td{background:#fef2f2}tr.row-skipped td{color:#6b7280}
.banner{background:#fef3c7;border:2px solid #b45309;padding:8px 12px;font-weight:700;margin:10px 0}
.note{color:#4b5563;font-size:12px}.verdict{border-left:4px solid #d1d5db;padding:2px 10px;margin:10px 0}
.verdict.v-pass{border-color:#15803d}.verdict.v-fail{border-color:#b91c1c}
figure.plot{margin:6px 0}svg.plot{display:block;max-width:100%;height:auto}pre{white-space:pre-wrap;background:#f9fafb;
 border:1px solid #e5e7eb;padding:6px;font-size:12px}code,.mono{font-family:Menlo,Consolas,monospace;
 font-size:12px}section.case{margin-top:24px}a{color:#1d4ed8}
@media print{section.case{page-break-before:always}a{color:inherit;text-decoration:none}}
"""


def _status_badge(status: str) -> str:
    s = str(status).lower()
    label = _STATUS_LABEL.get(s, s.upper())
    return f'<span class="st st-{_esc(s.replace(" ", "-"))}">{_esc(label)}</span>'


def _metric_cell(value) -> str:
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        value = value.tolist()
    if isinstance(value, (list, tuple)) and len(value) > MAX_METRIC_LIST:
        try:
            top = _finite_max(value, default=-math.inf)
        except (TypeError, ValueError):
            top = -math.inf
        extra = f", max {_fmt_num(top)}" if math.isfinite(top) else ""
        return f"<i>series of {len(value)} points{_esc(extra)} (plotted)</i>"
    if isinstance(value, dict):
        return "<br>".join(f"{_esc(k)}: {_metric_cell(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return _esc(", ".join(_fmt_num(x) for x in value))
    return _esc(_fmt_num(value))


def _rel_link(base_dir: Path | None, case_dir, name: str) -> str:
    if not case_dir:
        return ""
    target = Path(case_dir) / name
    try:
        rel = os.path.relpath(target, base_dir) if base_dir is not None else str(target)
    except ValueError:   # another drive (Windows)
        rel = str(target)
    rel = rel.replace(os.sep, "/")
    if target.exists():
        return f'<a href="{_esc(rel)}">{_esc(name)}</a>'
    return f'<span class="note">{_esc(name)} (not present: {_esc(rel)})</span>'


def _header(suite, counts: dict) -> str:
    ov = overall(suite)
    rows = [
        ("Device under test", suite.dut), ("Firmware variant", suite.firmware),
        ("Seed", suite.seed), ("Date (start)", suite.started),
        ("Duration", _fmt_duration(suite.duration_s)), ("dlbrig version", _version()),
        ("Cases", f"{counts['total']} total: {counts['pass']} passed, {counts['fail']} failed, "
                  f"{counts['error']} errors, {counts['skipped']} skipped"),
    ]
    out = ["<header>", "<h1>dlbrig certification report</h1>",
           f"<p>Overall result: {_status_badge(ov)}</p>"]
    if suite.interrupted:
        out.append('<div class="banner" id="interrupted">INTERRUPTED: the run was stopped before '
                   'every case ran; this report is partial and is not a certification result.</div>')
    out.append('<table class="doc">')
    out += [f"<tr><th>{_esc(k)}</th><td>{_esc(v)}</td></tr>" for k, v in rows]
    out.append("</table></header>")
    return "\n".join(out)


def _summary_table(suite) -> str:
    out = ['<h2 id="summary">Summary</h2>', '<table class="wide"><thead><tr><th>Case</th><th>Title</th>'
           '<th>Family</th><th>DUT role</th><th>Result</th><th>Reason</th><th>Time</th></tr></thead><tbody>']
    from_families = _families()
    for cr in suite.cases:
        c = cr.case
        fam = from_families.get(c.family, c.family)
        out.append(f'<tr class="row-{_esc(cr.status)}"><td><a href="#{_anchor(c.id)}">{_esc(c.id)}</a></td>'
                   f"<td>{_esc(c.title)}</td><td>{_esc(fam)}</td><td>{_esc(c.role)}</td>"
                   f"<td>{_status_badge(cr.status)}</td><td>{_esc(case_reason(cr))}</td>"
                   f"<td>{_esc(_fmt_duration(cr.duration_s))}</td></tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def _families() -> dict:
    try:
        from .certify.model import FAMILIES
        return dict(FAMILIES)
    except Exception:
        return {}


def _ol(items) -> str:
    items = list(items or [])
    if not items:
        return "<i>none</i>"
    return "<ol>" + "".join(f"<li>{_esc(x)}</li>" for x in items) + "</ol>"


def _ul(items) -> str:
    items = list(items or [])
    if not items:
        return "<i>none</i>"
    return "<ul>" + "".join(f"<li>{_esc(x)}</li>" for x in items) + "</ul>"


def _case_doc(case) -> str:
    scen = case.scenario
    if case.scenario == "inline" and case.spec:
        scen = "inline: " + str(case.spec.get("name", "")) if isinstance(case.spec, dict) else "inline"
    if case.duration:
        scen = f"{scen} (duration {case.duration})"
    rows = [
        ("Test case Id", _esc(case.id)), ("Test case name", _esc(case.title)),
        ("Requirement", _esc(case.requirement)), ("Reference / source", _esc(case.source)),
        ("System under test", _esc(case.role)), ("Prerequisite(s)", _ul(case.prerequisites)),
        ("Scenario", _esc(scen)), ("Test scenario (main steps)", _ol(case.procedure)),
        ("Pass criteria / tool validations", _ul(case.criteria)),
    ]
    if case.tags:
        rows.append(("Tags", _esc(", ".join(map(str, case.tags)))))
    return '<table class="doc">' + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows) + "</table>"


def _verdict_html(v, case) -> str:
    passed = bool(_vget(v, "passed", False))
    req = _vget(v, "requirement", "") or case.requirement
    out = [f'<div class="verdict {"v-pass" if passed else "v-fail"}">',
           f'<h4>{_status_badge("pass" if passed else "fail")} <code>{_esc(_vget(v, "check", ""))}</code>'
           f' on <b>{_esc(_vget(v, "subject", ""))}</b></h4>',
           f"<p>{_esc(_vget(v, 'summary', ''))}</p>",
           f'<p class="note">Requirement: {_esc(req)}</p>']
    metrics = _vget(v, "metrics", None) or {}
    if metrics:
        out.append('<table><thead><tr><th>Metric</th><th>Value</th></tr></thead><tbody>')
        for k, val in metrics.items():
            out.append(f"<tr><td>{_esc(k)}</td><td>{_metric_cell(val)}</td></tr>")
        out.append("</tbody></table>")
    ev = list(_vget(v, "evidence", None) or [])
    if ev:
        out.append(f"<b>Evidence</b> ({len(ev)} item{'s' if len(ev) != 1 else ''})<ul class='mono'>")
        for e in ev[:MAX_EVIDENCE]:
            if isinstance(e, dict):
                out.append(f"<li>t = {_esc(_fmt_t(e.get('t_ms')))}: {_esc(e.get('what', ''))}</li>")
            else:
                out.append(f"<li>{_esc(e)}</li>")
        out.append("</ul>")
        if len(ev) > MAX_EVIDENCE:
            out.append(f'<p class="note">… {len(ev) - MAX_EVIDENCE} more evidence items in summary.json</p>')
    out.append("</div>")
    return "\n".join(out)


def _figure(what: str, svg: str) -> str:
    return f'<figure class="plot" data-plot="{_esc(what)}">{svg}</figure>'


def _plots_html(cr) -> str:
    rec = cr.recording
    if rec is None or not getattr(rec, "t_ms", None):
        return '<p class="note">No recording for this case: nothing to plot.</p>'
    vs = _verdicts(cr)
    marks = _markers(rec, vs)
    circuits, chargers = involved(rec, vs)
    out = ["<h3>Plots</h3>"]
    if len(rec.t_ms) > MAX_POINTS:
        out.append(f'<p class="note">{len(rec.t_ms)} samples per series, drawn as at most {MAX_POINTS} '
                   f"points per line (min/max per interval: peaks are kept).</p>")
    plot_circuits = circuits + [c for c in rec.circuit_names if c not in circuits]
    for c in plot_circuits[:MAX_CIRCUIT_PLOTS]:
        out.append(_figure(f"circuit {c}", plot_circuit(rec, c, marks)))
    if len(plot_circuits) > MAX_CIRCUIT_PLOTS:
        out.append(f'<p class="note">{len(plot_circuits) - MAX_CIRCUIT_PLOTS} more circuits not plotted '
                   f"(see trace.csv).</p>")
    # trip-envelope proximity: a checker's thermal series, else computed for envelope verdicts
    done = set()
    for v in vs:
        metrics = _vget(v, "metrics", None) or {}
        subj = str(_vget(v, "subject", "") or "")
        circ = subj if subj in rec.circuit_names else (circuits[0] if circuits else rec.circuit_names[0])
        thermal = _series_from_metric(metrics.get("thermal"), rec, circ) if "thermal" in metrics else None
        is_env = "envelope" in str(_vget(v, "check", "")).lower()
        if (thermal is None and not is_env) or circ in done:
            continue
        done.add(circ)
        out.append(_figure(f"envelope {circ}", plot_envelope(rec, circ, marks, thermal)))
    shown = [k for k in chargers if k in rec.chargers][:MAX_CHARGER_PLOTS]
    for k in shown:
        out.append(_figure(f"charger {k}", plot_charger(rec, k, marks)))
    if len(chargers) > len(shown):
        out.append(f'<p class="note">{len(chargers) - len(shown)} more chargers involved, not plotted: '
                   f"{_esc(', '.join(chargers[len(shown):][:20]))}.</p>")
    window = zoom_window(rec, vs)
    if window is not None:
        bad_circuits, bad_chargers = involved(rec, _failed_verdicts(cr))
        bad_circuits = bad_circuits or circuits[:1] or rec.circuit_names[:1]
        out.append(f"<h4>Zoom on the failure: {window[0]:g} s to {window[1]:g} s</h4>")
        for c in bad_circuits[:2]:
            out.append(_figure(f"zoom circuit {c}", plot_circuit(rec, c, marks, window)))
        for k in [k for k in bad_chargers if k in rec.chargers][:3]:
            out.append(_figure(f"zoom charger {k}", plot_charger(rec, k, marks, window)))
    if marks:
        out.append('<p class="note">Markers: <span style="color:#7b3fb5">purple</span> = applied timeline '
                   'steps (faults, disturbances), <span style="color:#d97706">orange</span> = checker markers.</p>')
        out.append("<details><summary>Marker list</summary><ul class='mono'>"
                   + "".join(f"<li>t = {m[0]:.3f} s: {_esc(m[1])} ({m[2]})</li>" for m in marks[:200])
                   + "</ul></details>")
    return "\n".join(out)


def _frame_rows(fs) -> str:
    rows = []
    for f in fs:
        try:
            d = f.describe()
        except Exception as exc:  # a broken frame must not break the report
            d = f"(describe failed: {exc!r})"
        rows.append(f"<tr><td>{_esc(getattr(f, 't_ms', ''))}</td><td>{_esc(getattr(f, 'direction', ''))}</td>"
                    f"<td class='mono'>{_esc(d)}</td></tr>")
    return ('<table class="wide"><thead><tr><th>t (ms)</th><th>dir</th><th>frame</th></tr></thead><tbody>'
            + "".join(rows) + "</tbody></table>")


def _first_failure_ms(cr):
    ts = []
    for v in _failed_verdicts(cr):
        for e in _vget(v, "evidence", None) or []:
            if isinstance(e, dict) and isinstance(e.get("t_ms"), (int, float)):
                ts.append(e["t_ms"])
    return min(ts) if ts else None


def _frames_html(cr, fs) -> str:
    if not fs:
        return ""
    fs = list(fs)
    out = [f"<h3>Modbus frames</h3><p class='note'>{len(fs)} frames captured for this case; "
           f"the first {min(len(fs), MAX_FRAMES)} are listed.</p>", _frame_rows(fs[:MAX_FRAMES])]
    t_fail = _first_failure_ms(cr)
    if t_fail is not None and len(fs) > MAX_FRAMES:
        last_shown = getattr(fs[MAX_FRAMES - 1], "t_ms", None)
        if isinstance(last_shown, (int, float)) and last_shown < t_fail:
            lo = t_fail - 5 * max(1, int(getattr(cr.recording, "cycle_ms", 1000) or 1000))
            near = [f for f in fs[MAX_FRAMES:] if isinstance(getattr(f, "t_ms", None), (int, float))
                    and f.t_ms >= lo][:MAX_FRAMES]
            if near:
                out.append(f"<h4>Frames around the first failure (t = {_esc(_fmt_t(t_fail))})</h4>")
                out.append(_frame_rows(near))
    return "\n".join(out)


def _case_html(cr, frames: dict, base_dir) -> str:
    c = cr.case
    out = [f'<section class="case" id="{_anchor(c.id)}">',
           f"<h2>{_esc(c.id)}: {_esc(c.title)} {_status_badge(cr.status)}</h2>", _case_doc(c),
           "<h3>Result</h3>",
           f"<p>{_status_badge(cr.status)} {_esc(case_reason(cr))} "
           f'<span class="note">(ran {_esc(_fmt_duration(cr.duration_s))})</span></p>']
    if cr.error:
        out.append(f"<pre>{_esc(cr.error)}</pre>")
    if cr.out_dir:
        out.append(f"<p>Run files: {_rel_link(base_dir, cr.out_dir, 'trace.csv')} · "
                   f"{_rel_link(base_dir, cr.out_dir, 'summary.json')}</p>")
    vs = _verdicts(cr)
    if vs:
        out.append(f"<h3>Verdicts ({sum(bool(_vget(v, 'passed', False)) for v in vs)}/{len(vs)} passed)</h3>")
        out += [_verdict_html(v, c) for v in vs]
    kp = _kpis(cr)
    if kp:
        simple = {k: v for k, v in kp.items() if not isinstance(v, (dict, list))}
        if simple:
            out.append("<h3>Run KPIs</h3><table>" + "".join(
                f"<tr><th>{_esc(k)}</th><td>{_esc(_fmt_num(v))}</td></tr>" for k, v in simple.items())
                + "</table>")
    if cr.status not in ("skipped",):
        out.append(_plots_html(cr))
    out.append(_frames_html(cr, frames.get(c.id)))
    out.append('<p class="note"><a href="#summary">back to summary</a></p></section>')
    return "\n".join(out)


def render_html(suite, *, frames: dict | None = None, base_dir=None, pcap_written: bool = False,
                pcap_note: str = "", pcap_map: Iterable = ()) -> str:
    """The whole report as one self-contained HTML string (plots as inline SVG)."""
    global _ARRAYS
    frames = frames or {}
    counts = suite_counts(suite)
    base = Path(base_dir) if base_dir is not None else None
    _ARRAYS = {}
    try:
        return _render_html(suite, frames, counts, base, pcap_written, pcap_note, pcap_map)
    finally:
        _ARRAYS = None


def _render_html(suite, frames, counts, base, pcap_written, pcap_note, pcap_map) -> str:
    title = f"dlbrig certification report: {suite.dut} ({overall(suite)})"
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>",
             _header(suite, counts), _summary_table(suite)]
    files = ['<a href="summary.json">summary.json</a>', '<a href="junit.xml">junit.xml</a>']
    if pcap_written:
        files.append('<a href="capture.pcap">capture.pcap</a>')
    parts.append(f"<p>Machine-readable results: {' · '.join(files)}</p>")
    if pcap_note:
        parts.append(f'<p class="note">{_esc(pcap_note)}</p>')
    rows = list(pcap_map)
    if pcap_written and rows:
        parts.append("<details><summary>Capture: server addresses in capture.pcap</summary>"
                     f"<p class='note'>Modbus/TCP servers are on port {PCAP_TCP_PORT} (decoded by Wireshark "
                     f"with no configuration); RTU servers on port {PCAP_RTU_PORT} (Decode As... -> "
                     "Modbus RTU). Masters keep their real address and port.</p><table><thead><tr>"
                     "<th>server</th><th>real endpoint</th><th>transport</th><th>in the pcap</th></tr></thead><tbody>"
                     + "".join(f"<tr><td>{_esc(r['server'])}</td><td>{_esc(r['local'])}</td>"
                               f"<td>{_esc(r['transport'])}</td><td>{_esc(r['pcap'])}</td></tr>" for r in rows)
                     + "</tbody></table></details>")
    for cr in suite.cases:
        parts.append(_case_html(cr, frames, base))
    parts.append(f'<footer><p class="note">Generated by dlbrig {_esc(_version())} on '
                 f"{_esc(_dt.datetime.now(_dt.timezone.utc).isoformat(timespec='seconds'))}.</p></footer>")
    parts.append("</body></html>")
    return "\n".join(parts)
