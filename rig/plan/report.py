"""The plan's report: ``plan.json``, ``plan.png`` (service level, peak and wait against the number
of chargers) and ``plan.html`` (the table, the plot, the recommendation, the model's assumptions)."""
from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

COLUMNS = (("chargers", "chargers"), ("drivers", "drivers"), ("turned_away", "turned away"),
           ("energy_requested_kwh", "requested kWh"), ("energy_delivered_kwh", "delivered kWh"),
           ("served_share", "served by departure"), ("wait_mean_min", "mean wait min"),
           ("wait_max_min", "worst wait min"), ("peak_kw", "peak kW"), ("peak_15min_kw", "peak 15-min kW"),
           ("contract_exceedance_s", "contract exceedance s"),
           ("contract_exceedance_with_ev_s", "of which with EVs charging s"), ("main_over_s", "main over limit s"),
           ("total_cost_eur", "cost EUR"), ("ev_price_eur_per_kwh", "EV EUR/kWh"))


def plot_png(plan: dict) -> bytes:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rs = plan["results"]
    n = [r["chargers"] for r in rs]
    fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(12, 3.4))
    a1.plot(n, [100 * (r["served_share"] or 0) for r in rs], "o-", label="served by departure")
    a1.plot(n, [100 * (r["delivered_share"] or 0) for r in rs], "s--", label="energy delivered / requested")
    a1.axhline(95, color="grey", lw=0.8, ls=":")
    a1.set_xlabel("chargers")
    a1.set_ylabel("%")
    a1.legend(fontsize=8)
    a1.set_title("service level")
    a2.plot(n, [r["peak_15min_kw"] for r in rs], "o-", label="peak 15-min average")
    a2.plot(n, [r["peak_kw"] for r in rs], "x:", label="peak (one cycle)")
    site = plan["site"]
    limit_kw = 3 * site["limit_a"] * site["voltage_v"] / 1000
    a2.axhline(limit_kw, color="red", lw=0.8, ls="--", label="main limit")
    contract = (site.get("energy") or {}).get("contract")
    if contract:
        a2.axhline(contract["kw"], color="orange", lw=0.8, ls="--", label="contract")
    a2.set_xlabel("chargers")
    a2.set_ylabel("kW")
    a2.legend(fontsize=8)
    a2.set_title("site demand")
    a3.plot(n, [r["wait_mean_min"] for r in rs], "o-", label="mean")
    a3.plot(n, [r["wait_max_min"] for r in rs], "x:", label="worst")
    a3.set_xlabel("chargers")
    a3.set_ylabel("minutes from plug-in to first current")
    a3.legend(fontsize=8)
    a3.set_title("wait")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def _fmt(v, key) -> str:
    if v is None:
        return "–"
    if key in ("served_share", "delivered_share"):
        return f"{v * 100:.1f} %"
    if isinstance(v, float):
        return f"{v:,.1f}"
    return str(v)


def write_plan_report(out_dir, plan: dict) -> dict:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "plan.json").write_text(json.dumps(plan, indent=1, sort_keys=True, default=str) + "\n")
    png = plot_png(plan)
    (out / "plan.png").write_bytes(png)
    s, p = plan["site"], plan["profile"]
    h = [f"<!doctype html><meta charset=utf-8><title>plan {html.escape(s['name'])}</title>",
         "<style>body{font:14px sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
         "padding:3px 7px;text-align:right}th{background:#eee}</style>",
         f"<h1>Capacity plan: {html.escape(s['name'])}, {html.escape(p['name'])} demand, {plan['days']} days</h1>",
         f"<p><b>{html.escape(plan['recommendation']['text'])}</b></p>",
         f"<p>Connection {s['limit_a']:g} A per phase at {s['voltage_v']} V (margin {s['margin_a']:g} A); base load "
         f"{html.escape(s['base_kind'])} {s['base_peak_a']:g} A peak; PV {s['pv_kwp']:g} kWp; chargers "
         f"{s['charger_phases']} x {s['charger_max_a']:g} A; policy {html.escape(s['policy'])}; energy "
         f"{html.escape(json.dumps(s['energy']) if s['energy'] else 'none')}; seed {plan['seed']}.</p>",
         f"<p>Model: {html.escape(plan['model'])}; cycle {plan['cycle_s']} s. Demand: "
         f"{html.escape(p['description'])} (rig/plan/demand.py documents the numbers and their sources). "
         f"Engine: {html.escape(plan['engine'])}, {plan['wall_s']} s.</p><table><tr>" +
         "".join(f"<th>{html.escape(t)}</th>" for _, t in COLUMNS) + "</tr>"]
    for r in plan["results"]:
        h.append("<tr>" + "".join(f"<td>{_fmt(r.get(k), k)}</td>" for k, _ in COLUMNS) + "</tr>")
    h.append(f"</table><img alt='plan plot' src='data:image/png;base64,{base64.b64encode(png).decode()}'>")
    (out / "plan.html").write_text("\n".join(h), encoding="utf-8")
    return {"report": out / "plan.html", "json": out / "plan.json", "plot": out / "plan.png"}
