"""The campaign report: ``aggregate.json`` (machine-readable) and ``report.html`` (self-contained:
pass/fail matrix, KPI distributions as a table and box plots, the worst runs with links to their
evidence: trace.csv, summary.json, verdicts.json in ``runs/RUN_ID/``)."""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path

from .worker import KPI_KEYS, write_atomic

PLOTTED = ("share_met", "energy_delivered_kwh", "peak_kw", "max_over_a", "starvation_max_s")


def _esc(x) -> str:
    return html.escape(str(x))


def _num(x) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.3g}" if abs(x) < 1000 else f"{x:.0f}"
    return str(x)


def kpi_plot_png(agg: dict, runs: list) -> bytes | None:
    """Box plots of a few KPIs per DUT variant (matplotlib, Agg backend); None without data."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    duts = agg["axes"]["duts"]
    done = [r for r in runs if r["status"] in ("pass", "fail")]
    if not done:
        return None
    fig, axes = plt.subplots(1, len(PLOTTED), figsize=(3.2 * len(PLOTTED), 3.2))
    for ax, key in zip(axes, PLOTTED):
        data = [[r["kpis"][key] for r in done if r["dut"] == d and r["kpis"].get(key) is not None] for d in duts]
        shown = [(d, xs) for d, xs in zip(duts, data) if xs]
        if shown:
            ax.boxplot([xs for _, xs in shown], tick_labels=[d for d, _ in shown])
        ax.set_title(key, fontsize=9)
        ax.tick_params(labelsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return buf.getvalue()


def write_report(out_dir, agg: dict, meta: dict) -> dict:
    out = Path(out_dir)
    write_atomic(out / "aggregate.json", dict(agg, meta=meta))
    png = kpi_plot_png(agg, agg["runs"])
    if png:
        (out / "kpis.png").write_bytes(png)
    duts = agg["axes"]["duts"]
    c = agg["counts"]
    h = [f"<!doctype html><meta charset=utf-8><title>campaign {_esc(agg['campaign'])}</title>",
         "<style>body{font:14px sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
         "td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}th{background:#eee}"
         ".pass{background:#d9f2d9}.fail{background:#f8d0d0}.mixed{background:#fbe8c0}"
         "td.l{text-align:left}</style>",
         f"<h1>Campaign {_esc(agg['campaign'])}: {_esc(agg['verdict'].upper())}</h1>",
         f"<p>{_esc(agg['description'])}</p>",
         f"<p>{c['total']} runs: {c['pass']} pass, {c['fail']} fail, {c['error']} error, "
         f"{c['missing']} missing. Checks: {_esc(', '.join(agg['axes']['checks']))}. "
         f"Seeds: {_esc(agg['axes']['seeds'])}. Engine: {_esc(meta.get('engine'))}; "
         f"{meta.get('executed', 0)} runs executed now, {meta.get('reused', 0)} reused from earlier "
         f"(resume); wall time {meta.get('wall_s', 0):.1f} s.</p>",
         "<h2>Pass/fail matrix</h2><p>Each cell: runs passed / runs (over seeds).</p><table><tr>"
         "<th>scenario</th><th>fault</th>" + "".join(f"<th>{_esc(d)}</th>" for d in duts) + "</tr>"]
    for row in agg["matrix"]:
        h.append(f"<tr><td class=l>{_esc(row['scenario'])}</td><td class=l>{_esc(row['fault'])}</td>")
        for d in duts:
            cell = row["cells"][d]
            n = sum(cell[k] for k in ("pass", "fail", "error", "missing"))
            cls = "pass" if cell["pass"] == n else ("fail" if cell["pass"] == 0 else "mixed")
            h.append(f"<td class={cls}>{cell['pass']}/{n}</td>")
        h.append("</tr>")
    h.append("</table><h2>KPI distributions</h2><table><tr><th>KPI</th><th>variant</th><th>n</th>"
             "<th>min</th><th>median</th><th>max</th></tr>")
    for key in KPI_KEYS:
        for variant in ["all"] + duts:
            dd = agg["kpi_distributions"][variant][key]
            if dd:
                h.append(f"<tr><td class=l>{_esc(key)}</td><td class=l>{_esc(variant)}</td><td>{dd['n']}</td>"
                         f"<td>{_num(dd['min'])}</td><td>{_num(dd['median'])}</td><td>{_num(dd['max'])}</td></tr>")
    h.append("</table>")
    if png:
        h.append(f"<img alt='KPI box plots per DUT' src='data:image/png;base64,{base64.b64encode(png).decode()}'>")
    h.append(f"<h2>Worst runs</h2><table><tr><th>run</th><th>status</th><th>overshoot A·s</th>"
             "<th>max over A</th><th>share met</th><th>why</th><th>evidence</th></tr>")
    for r in agg["worst"]:
        k = r.get("kpis") or {}
        why = "; ".join(r.get("failed") or []) or (r.get("error") or "").splitlines()[0:1]
        why = why if isinstance(why, str) else " ".join(why)
        d = r["dir"]
        links = " ".join(f"<a href='{_esc(d)}/{f}'>{f}</a>" for f in ("trace.csv", "summary.json", "verdicts.json", "result.json"))
        h.append(f"<tr><td class=l>{_esc(r['run_id'])}</td><td class={'pass' if r['status'] == 'pass' else 'fail'}>"
                 f"{_esc(r['status'])}</td><td>{_num(k.get('overshoot_a_s'))}</td><td>{_num(k.get('max_over_a'))}</td>"
                 f"<td>{_num(k.get('share_met'))}</td><td class=l>{_esc(why[:300])}</td><td class=l>{links}</td></tr>")
    h.append("</table><h2>All runs</h2><table><tr><th>run</th><th>status</th>" +
             "".join(f"<th>{_esc(k)}</th>" for k in KPI_KEYS) + "</tr>")
    for r in agg["runs"]:
        k = r.get("kpis") or {}
        h.append(f"<tr><td class=l><a href='{_esc(r['dir'])}/result.json'>{_esc(r['run_id'])}</a></td>"
                 f"<td class={'pass' if r['status'] == 'pass' else 'fail'}>{_esc(r['status'])}</td>" +
                 "".join(f"<td>{_num(k.get(x))}</td>" for x in KPI_KEYS) + "</tr>")
    h.append("</table>")
    (out / "report.html").write_text("\n".join(h), encoding="utf-8")
    return {"report": out / "report.html", "json": out / "aggregate.json"}
