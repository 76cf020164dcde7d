"""The bench scenario of the VISA suites: two chargers, an electronic load and a power analyzer per
charger, an AC source on main L1 (optional), every value known."""
from __future__ import annotations

BENCH = """\
name: visa_bench
description: two chargers, a load and an analyzer each
seed: 3
start: "Mon 10:00"
duration: {duration}
site:
  voltage_v: 230
  policy: fair
  circuits:
    - {{name: main, limit_a: 63, meter: true, fallback_base_a: [10, 10, 10]}}
  chargers:
    - {{name: cp1, circuit: main, phases: 3, min_a: 6, max_a: 16, failsafe_a: {failsafe}}}
    - {{name: cp2, circuit: main, phases: 1, phase_map: [L2], min_a: 6, max_a: 16, failsafe_a: {failsafe}}}
meters:
  - {{circuit: main, profile: sdm630, transport: tcp}}
chargers:
  - {{charger: cp1, profile: dlbrig_generic, transport: tcp, firmware: {{watchdog_timeout_s: 120}}}}
  - {{charger: cp2, profile: dlbrig_generic, transport: tcp, firmware: {{watchdog_timeout_s: 120}},
     faults: {{misreport_current_pct: {lie_pct}}}}}
loads:
  - {{circuit: main, kind: constant, peak_a: 8}}
vehicles:
  - {{id: ev1, preset: sedan_3p, charger: cp1, arrive: "+0s",
     knobs: {{reaction_delay_s: 0.5, start_delay_s: 0.2, draw_fraction: 1.0}}}}
  - {{id: ev2, preset: compact_1p, charger: cp2, arrive: "+0s",
     knobs: {{reaction_delay_s: 0.5, start_delay_s: 0.2, draw_fraction: 1.0}}}}
instruments:
  - {{name: load_cp1, model: chroma_63804, ev: cp1}}
  - {{name: load_cp2, model: itech_it8617, ev: cp2}}
  - {{name: wt_cp1, model: yokogawa_wt500, elements: [cp1.1, cp1.2, cp1.3]}}
  - {{name: wt_cp2, model: yokogawa_wt500, elements: [cp2.1]}}
{extra}"""

AC_SOURCE = "  - {name: grid_l1, model: keysight_ac6804b, circuit: main, phase: L1}\n"
FAILSAFE_A = 6.5      # not a value the allocator hands out here (EVs get 16 A or a 1 A step share)


def bench_yaml(tmp_path, *, duration="30s", lie_pct=0, ac_source=False, name="bench.yaml"):
    p = tmp_path / name
    p.write_text(BENCH.format(duration=duration, lie_pct=lie_pct, failsafe=FAILSAFE_A,
                              extra=AC_SOURCE if ac_source else ""))
    return p
