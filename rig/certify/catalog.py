"""The certification catalog: every case, in the shape of the OCPP compliance test-case documents.

Families: LIM (limit compliance), FS (fault shutdown), COM (communication faults), FAIR (fairness and
rotation), KPI (service level). Each case names its scenario (a small inline site, or a built-in
scenario cut short), the procedure, the pass criteria and the checks (:mod:`dlbrig.rig.compliance`)
that decide it. Numbers come from ``shared/reference/standards.md``.
"""
from __future__ import annotations

import copy

from .. import compliance as C
from .model import Case

CYCLE_S = 1
STANDARDS = "IEC 61851-1:2017 Table A.6 (via EVerest IECStateMachine) [IMPL citing STD]"


# ---------------------------------------------------------------------------- inline sites
def _site(limit_a=100, n=5, max_a=32, *, policy="fair", base_a=10, meter="sdm630", charger="dlbrig_generic",
          firmware=None, params=None, vehicles=None, timeline=(), duration="10m", circuits=None,
          chargers=None, loads=None, start="Mon 10:00", fallback=None):
    spec = {
        "name": "inline", "start": start, "duration": duration, "seed": 1,
        "site": {"voltage_v": 230, "policy": policy, "min_on_s": 60, "min_off_s": 30,
                 "circuits": circuits or [{"name": "main", "limit_a": limit_a, "meter": True,
                                           "fallback_base_a": fallback if fallback is not None else [40, 40, 40]}],
                 "chargers": chargers or [{"name": f"cp{i + 1}", "circuit": "main", "min_a": 6, "max_a": max_a,
                                           "failsafe_a": 6} for i in range(n)]},
        "meters": [{"circuit": "main", "profile": meter, "transport": "rtu"}],
        "chargers": [{"charger": "*", "profile": charger, "transport": "tcp",
                      "firmware": dict(firmware or {"watchdog_timeout_s": 15})}],
        "loads": loads if loads is not None else [{"circuit": "main", "kind": "constant", "peak_a": base_a}],
        "vehicles": vehicles if vehicles is not None else [
            {"id": f"ev{i + 1}", "preset": ("van_3p_22kw" if i % 2 else "sedan_3p"), "charger": f"cp{i + 1}",
             "arrive": f"+{5 * i}s"} for i in range(n)],
        "timeline": list(timeline),
    }
    if params:
        spec["site"].update(params)
    return spec


def _one_charger(timeline, *, preset="sedan_3p", firmware=None, vehicles=None, duration="3m"):
    """One charger, one EV: the charger-role cases (the DUT is the charger firmware)."""
    return _site(limit_a=63, n=1, base_a=5, firmware=firmware, duration=duration, timeline=timeline,
                 vehicles=vehicles if vehicles is not None else
                 [{"id": "ev1", "preset": preset, "charger": "cp1", "arrive": "+0s", "soc": 0.3}])


def _verdict(check, subject, passed, summary, **metrics):
    return C.Verdict(check=check, subject=subject, passed=bool(passed), summary=summary, metrics=metrics,
                     evidence=[], requirement="")


# ---------------------------------------------------------------------------- checks
def limits(rec, case):
    return C.limit_strict(rec) + C.limit_envelope(rec)


def strict(rec, case):
    return C.limit_strict(rec)


def shutdown(rec, case):
    return C.fault_shutdown(rec)


def shutdown_and_limits(rec, case):
    return C.fault_shutdown(rec) + C.limit_strict(rec)


def signalling(rec, case):
    return C.signalling(rec)


def comm_charger(t_loss_s, timeout_s, charger="cp1"):
    def check(rec, case):
        return [C.comm_loss(rec, charger, t_loss_ms=t_loss_s * 1000, timeout_ms=timeout_s * 1000)] + \
            C.limit_strict(rec)
    return check


def meter_loss(t_loss_s, timeout_s=10):
    def check(rec, case):
        return [C.meter_loss(rec, "main", t_loss_ms=t_loss_s * 1000, meter_timeout_ms=timeout_s * 1000)] + \
            C.limit_strict(rec)
    return check


def fairness(**kw):
    def check(rec, case):
        return C.fairness(rec, **kw) + C.limit_strict(rec)
    return check


def power_cap(cap_kw):
    def check(rec, case):
        v = rec.params.get("voltage_v", 230)
        series = rec.circuit_current[rec.circuit_names[0]]
        peak = max((sum(series[p][i] for p in range(3)) * v / 1000 for i in range(len(rec.t_ms))), default=0.0)
        return [_verdict("power_cap", rec.circuit_names[0], peak <= cap_kw * 1.001,
                         f"peak {peak:.2f} kW against a contracted {cap_kw} kW", peak_kw=round(peak, 3),
                         cap_kw=cap_kw)] + C.limit_strict(rec)
    return check


def unbalance(circuit, limit_a):
    def check(rec, case):
        worst, at = 0.0, None
        chargers = rec.subtree_chargers(circuit)
        for i, t in enumerate(rec.t_ms):
            ph = [0.0, 0.0, 0.0]
            for k in chargers:
                for cond, p in enumerate(rec.phase_map[k]):
                    ph[p] += rec.chargers[k].current[cond][i]
            d = max(ph) - min(ph)
            if d > worst:
                worst, at = d, t
        return [_verdict("unbalance", circuit, worst <= limit_a + 0.5,
                         f"largest EV phase unbalance {worst:.1f} A (limit {limit_a} A)" +
                         (f" at t={at / 1000:.0f} s" if at is not None else ""), worst_a=round(worst, 2))] + \
            C.limit_strict(rec)
    return check


def priority_first(high, low):
    def check(rec, case):
        bad = []
        for i, t in enumerate(rec.t_ms):
            hi_short = any(rec.chargers[h].status[i] == "charging" and (rec.chargers[h].sp[i] or 0) < 16 - 1e-6
                           for h in high)
            lo_above = [k for k in low if (rec.chargers[k].sp[i] or 0) > rec.min_current_a[k] + 1e-6]
            if hi_short and lo_above:
                bad.append(t)
        return [_verdict("priority", "site", not bad,
                         "a lower class got more than its minimum while a higher class was short"
                         if bad else "higher classes served first at every cycle", violations=len(bad))] + \
            C.limit_strict(rec)
    return check


def service(min_share_met=None, min_energy_ratio=None):
    def check(rec, case):
        k = C.service_kpis(rec)
        ok, notes = True, []
        share = k.get("share_met")
        if min_share_met is not None:
            ok &= share is not None and share >= min_share_met
            notes.append(f"share met {share if share is None else round(share, 3)} (≥ {min_share_met})")
        req, got = k.get("energy_requested_kwh"), k.get("energy_delivered_kwh")
        ratio = (got / req) if req else None
        if min_energy_ratio is not None:
            ok &= ratio is not None and ratio >= min_energy_ratio
            notes.append(f"energy delivered/requested {ratio if ratio is None else round(ratio, 3)} "
                         f"(≥ {min_energy_ratio})")
        metrics = {key: v for key, v in k.items() if isinstance(v, (int, float)) or v is None}
        return [C.Verdict(check="service", subject="site", passed=bool(ok), summary="; ".join(notes),
                          metrics=metrics, evidence=[], requirement="service level")] + C.limit_strict(rec)
    return check


# ---------------------------------------------------------------------------- the catalog
def _lim():
    cases = [
        Case("LIM-001", "Five EVs share a 100 A connection", "The true current of every phase of the main "
             "circuit never exceeds its limit while five EVs arrive and share the capacity.",
             "Seed guide; DESIGN.md capacity invariant", "controller", "inline",
             ["Five EVs arrive 5 s apart on a 100 A main with 10 A base load.", "Run 10 min."],
             ["Strict: I(phase) ≤ 100 A at every sample.", "Envelope: the C-curve breaker model never trips."],
             limits, spec=_site()),
        Case("LIM-002", "Base-load step is absorbed within the settle window",
             "After an uncontrolled +40 A base-load step the site is back under its limit within cycle + PWM "
             "spacing + EV reaction time, and stays there.", "Seed guide; standards.md §1.1 (5 s PWM spacing, "
             "EV reaction up to 6 s)", "controller", "inline",
             ["Five EVs charge on 100 A with 30 A base load.", "At +2 min a 40 A base load switches on for 3 min."],
             ["Strict with settle window; overshoot integral and time-to-safe reported."],
             limits, spec=_site(base_a=30, timeline=["at +2m base main step +40A for 3m"], duration="8m")),
        Case("LIM-003", "Arrival burst", "Twenty EVs arriving within five minutes never push the main above "
             "its limit.", "Seed guide (office at 9:00)", "controller", "arrival_burst",
             ["Built-in scenario arrival_burst, first 20 min."], ["Strict limit on every circuit."],
             strict, duration="20m"),
        Case("LIM-004", "Single-phase chargers on rotated phases", "Single-phase chargers wired to L1/L2/L3 "
             "(phase rotation) are counted on their own phase; no phase exceeds its limit and the EV load "
             "unbalance stays within 20 A (4.6 kVA rule).", "DESIGN.md per-phase accounting; VDE-AR-N 4100 "
             "unbalance limit", "controller", "phase_rotated", ["Built-in scenario phase_rotated, 20 min."],
             ["Strict limit per phase.", "EV unbalance ≤ 20 A."], unbalance("main", 20), duration="20m"),
        Case("LIM-005", "Circuit tree: sub-circuit fuses", "Every circuit of a tree (main, sub-circuits) "
             "stays within its own per-phase limit.", "DESIGN.md circuit tree", "controller", "office",
             ["Built-in scenario office from 07:00, 2 h (arrivals 07:30-09:30), 5 s control cycle."],
             ["Strict limit on every circuit."], strict, duration="2h", overrides={"site": {"cycle_s": 5}}),
        Case("LIM-006", "PV cloud drop", "When PV output drops by 80 % in a cloud, the export that EVs were "
             "using disappears; the site is safe again within the settle window.", "standards.md; seed guide",
             "controller", "pv_surplus", ["Built-in scenario pv_surplus, 1 h.",
                                          "At +20 min 80 % of the PV output is lost for 10 min."],
             ["Strict limit with settle window."], strict, duration="1h",
             overrides={"timeline": ["at +20m pv main cloud 80% for 10m"]}),
        Case("LIM-007", "An EV overdraws its signalled current", "An EV drawing 10 % above its PWM current "
             "(a misbehaving vehicle) does not take the circuit into the breaker's trip region.",
             "standards.md §1.1 soft overcurrent; IEC 60898-1", "controller", "inline",
             ["Five EVs on 100 A.", "At +1 min EV on cp2 overdraws by 10 % for 2 min."],
             ["Envelope: no trip; strict limit outside the settle window."], limits,
             spec=_site(timeline=["at +1m ev cp2 overdraw 10% for 2m"], duration="5m")),
        Case("LIM-013", "An EV slow to follow a reduction", "An EV that takes 6 s to follow a lower PWM "
             "current is never handed over to another EV before it has followed: the limit holds outside "
             "the settle window of the base-load step.", "DESIGN.md transition safety", "controller", "inline",
             ["Five EVs on 100 A.", "From +1 min the EV on cp2 reacts in 6 s.",
              "At +2 min the base load rises by 30 A for 2 min."], ["Strict limit with settle window."], strict,
             spec=_site(timeline=["at +1m ev cp2 slow 6s", "at +2m base main step +30A for 2m"], duration="5m")),
        Case("LIM-008", "Contracted power cap", "The site's total power stays within its contracted capacity "
             "(peak shaving) while phases have room.", "DESIGN.md power cap", "controller", "inline",
             ["Six EVs on a 100 A main capped at 30 kW."], ["Σ phases × 230 V ≤ 30 kW at every sample."],
             power_cap(30), spec=_site(n=6, circuits=[{"name": "main", "limit_a": 100, "meter": True,
                                                      "power_limit_kw": 30, "fallback_base_a": [40, 40, 40]}],
                                       duration="6m")),
        Case("LIM-009", "Breaker envelope under sustained load", "Running at the limit for a long time keeps "
             "the C-curve breaker model below its thermal trip (1.13 In never trips).", "IEC 60898-1",
             "controller", "inline", ["Eight EVs saturate a 63 A main for 30 min."],
             ["Thermal fraction < 1; strict limit."], limits,
             spec=_site(limit_a=63, n=8, duration="30m")),
        Case("LIM-010", "Fleet depot with 200 chargers", "A depot with 200 chargers on four sub-circuits "
             "stays within every limit.", "Scale; DESIGN.md bounded cost", "controller", "depot",
             ["Built-in scenario depot, first 5 min."], ["Strict limit on every circuit."], strict,
             duration="5m"),
        Case("LIM-011", "Hospital: critical loads first", "With a hospital's base load the chargers only use "
             "what the critical loads leave, within every limit.", "Seed guide (healthcare)", "controller",
             "hospital", ["Built-in scenario hospital, 30 min."], ["Strict limit."], strict, duration="30m"),
        Case("LIM-012", "Home behind a 25 A main fuse", "One EV behind a 25 A house fuse with residential "
             "load never blows the fuse.", "Seed guide", "controller", "home",
             ["Built-in scenario home, 1 h."], ["Strict limit and envelope."], limits, duration="1h"),
    ]
    return cases


def _fs():
    charge = ["An EV plugs in and charges on one charger (the DUT firmware)."]
    return [
        Case("FS-001", "Contactor opens when the EV stops (C→B)", "The EVSE opens its contactor within 100 ms "
             "after the EV goes from C to B.", STANDARDS + " seq. 8.1", "charger", "inline",
             charge + ["The EV reaches its energy need and stops (C→B)."], ["Open ≤ 100 ms after C→B."],
             shutdown, spec=_one_charger([], vehicles=[{"id": "ev1", "preset": "sedan_3p", "charger": "cp1",
                                                         "arrive": "+0s", "soc": 0.3, "energy_kwh": 0.3}])),
        Case("FS-002", "Unplug under load", "Pulling the cable while charging (→A) opens the contactor within "
             "100 ms.", STANDARDS + " (A/E/F: 100 ms assumed)", "charger", "inline",
             charge + ["At +90 s the cable is pulled."], ["Open ≤ 100 ms after →A."], shutdown,
             spec=_one_charger(["at +90s unplug cp1"])),
        Case("FS-003", "Missing diode: no close", "Before every close the EVSE checks the diode; with the "
             "diode missing the contactor never closes.", "IEC 61851-1 Table A.4 (SmartEVSE #83) [STD-Q]",
             "charger", "inline", ["An EV with a missing diode plugs in."], ["Contactor never closes; fault raised."],
             shutdown, spec=_one_charger([], vehicles=[{"id": "ev1", "preset": "sedan_3p", "charger": "cp1",
                                                         "arrive": "+0s", "faults": {"missing_diode": True}}])),
        Case("FS-004", "CP short (state E)", "A CP-PE short (state E) opens the contactor within 100 ms.",
             STANDARDS, "charger", "inline", charge + ["At +90 s the CP is shorted."], ["Open ≤ 100 ms after E."],
             shutdown, spec=_one_charger(["at +90s ev cp1 cp_short"])),
        Case("FS-005", "Residual DC current 6 mA", "A smooth DC residual current of 6 mA trips the RDC-DD.",
             "IEC 62955 [STD-Q]", "charger", "inline", charge + ["At +90 s 6 mA DC leaks."],
             ["Trip and open within the DC break time."], shutdown,
             spec=_one_charger(["at +90s ev cp1 leakage dc 6mA"])),
        Case("FS-006", "Residual AC current 1 × IΔn", "30 mA AC residual current breaks within 300 ms.",
             "IEC 61008/61009 [VENDOR]", "charger", "inline", charge + ["At +90 s 30 mA AC leaks."],
             ["Break ≤ 300 ms."], shutdown, spec=_one_charger(["at +90s ev cp1 leakage ac 30mA"])),
        Case("FS-007", "Residual AC current 5 × IΔn", "150 mA AC residual current breaks within 40 ms.",
             "IEC 61008/61009 [VENDOR]", "charger", "inline", charge + ["At +90 s 150 mA AC leaks."],
             ["Break ≤ 40 ms."], shutdown, spec=_one_charger(["at +90s ev cp1 leakage ac 150mA"])),
        Case("FS-008", "Soft overcurrent", "An EV drawing above (I_pwm + 0.5 A) × 1.10 for more than 7 s "
             "makes the EVSE raise an error and open.", "EVerest soft_over_current_timeout_ms [IMPL]",
             "charger", "inline", charge + ["At +60 s the EV overdraws by 20 %."],
             ["Error and open after 7 s of overcurrent."], shutdown,
             spec=_one_charger(["at +60s ev cp1 overdraw 20%"])),
        Case("FS-009", "Close within 3 s of B→C", "When the EV asks for power (B→C) and current is offered, "
             "the contactor closes within 3 s.", STANDARDS + " seq. 4", "charger", "inline",
             charge, ["Close ≤ 3 s after B→C."], shutdown, spec=_one_charger([])),
        Case("FS-010", "State F held ≥ 300 ms after a fault", "After a fault the EVSE holds state F for at "
             "least 300 ms.", "IEC 61851-1 Table A.5 (EVerest state_F_after_fault_ms)", "charger", "inline",
             charge + ["At +90 s the CP is shorted (fault)."], ["F ≥ 300 ms."], shutdown,
             spec=_one_charger(["at +90s ev cp1 cp_short"])),
        Case("FS-011", "PWM updates at most every 5 s", "The charger changes its PWM duty at most every "
             "5 s, and no set-point lies between 0 and 6 A.", "EVerest IEC_PWM_MAX_UPDATE_INTERVAL [IMPL]",
             "charger", "inline", ["Three EVs share 32 A with arrivals and departures forcing frequent "
                                   "re-allocation."], ["PWM changes ≥ 5 s apart; no 0 < I < 6 A."],
             signalling, spec=_site(limit_a=32, n=3, base_a=2, duration="5m",
                                    timeline=["at +60s unplug cp2", "at +70s plug cp2 ev=sedan_3p",
                                              "at +90s base main step +8A for 20s"])),
        Case("FS-012", "Force open 6 s after PWM off", "If the PWM is switched off while the EV stays in C, "
             "the EVSE forces the contactor open after 6 s.", STANDARDS + " seq. 10.2", "charger", "inline",
             charge + ["The EV ignores PWM changes; at +90 s a 60 A base step forces a pause."],
             ["Open ≤ 6 s after PWM off."], shutdown,
             spec=_one_charger(["at +60s ev cp1 ignore_pwm", "at +90s base main step +55A for 1m"])),
    ]


def _com():
    return [
        Case("COM-001", "Charger loses the controller", "A charger that stops hearing from its controller "
             "falls back to its safe current within its communication timeout plus a tolerance.",
             "devices.md (product watchdog/failsafe registers)", "charger", "inline",
             ["Three EVs charge.", "At +2 min the link to cp1 is cut for 2 min (its watchdog: 15 s)."],
             ["PWM ≤ safe current within 15 s + 1 s.", "Strict limit holds meanwhile."],
             comm_charger(120, 15), spec=_site(n=3, timeline=["at +2m charger cp1 offline for 2m"], duration="6m")),
        Case("COM-002", "Stale meter", "A controller that loses its meter switches to its fallback budget "
             "within its meter timeout and never exceeds the limit meanwhile.", "DESIGN.md failsafe ladder",
             "controller", "inline", ["Five EVs charge on 100 A.", "At +2 min the meter stops answering for "
                                      "3 min; at +2.5 min the base load rises by 25 A."],
             ["Fallback budget within meter timeout + one cycle.", "Strict limit holds."],
             meter_loss(120), spec=_site(timeline=["at +2m meter main offline for 3m",
                                                   "at +150s base main step +25A for 2m"], duration="7m")),
        Case("COM-003", "Meter answers NaN", "NaN readings are rejected as stale data, never trusted.",
             "DESIGN.md readings", "controller", "inline", ["At +2 min the meter answers NaN for 2 min while "
                                                            "the base load rises by 25 A."],
             ["Strict limit holds."], strict,
             spec=_site(timeline=["at +2m meter main nan for 2m", "at +150s base main step +25A for 2m"],
                        duration="6m")),
        Case("COM-004", "Meter answers garbage", "Garbage readings are rejected; the limit holds.",
             "DESIGN.md readings", "controller", "inline", ["At +2 min the meter answers garbage for 2 min."],
             ["Strict limit holds."], strict,
             spec=_site(timeline=["at +2m meter main garbage for 2m", "at +150s base main step +25A for 2m"],
                        duration="6m")),
        Case("COM-005", "Modbus exceptions from a charger", "A charger answering exception 04 is treated as "
             "lost (counted at its failsafe) and the limit holds.", "Modbus application protocol v1.1b3",
             "controller", "inline", ["At +2 min cp1 answers exception 04 for 1 min."], ["Strict limit holds."],
             strict, spec=_site(n=3, timeline=["at +2m charger cp1 exception 4 for 1m"], duration="5m")),
        Case("COM-006", "Delays and jitter", "300 ms ± 100 ms answers do not break the cycle or the limit.",
             "DESIGN.md scan cycle", "controller", "inline", ["At +1 min every answer of cp2 takes 300±100 ms "
                                                              "for 2 min."], ["Strict limit holds."], strict,
             spec=_site(n=3, timeline=["at +1m charger cp2 delay 300ms jitter 100ms for 2m"], duration="4m")),
        Case("COM-007", "Dropped responses", "Losing 30 % of the answers of a charger keeps the site safe.",
             "DESIGN.md failsafe ladder", "controller", "inline", ["At +1 min 30 % of cp2's answers are lost "
                                                                  "for 2 min."], ["Strict limit holds."], strict,
             spec=_site(n=3, timeline=["at +1m charger cp2 drop 30% for 2m"], duration="4m")),
        Case("COM-008", "Controller restart", "A controller that restarts (losing its state) brings the site "
             "back without exceeding the limit.", "DESIGN.md", "controller", "inline",
             ["At +2 min the controller restarts (5 s silent)."], ["Strict limit holds."], strict,
             spec=_site(timeline=["at +2m controller restart"], duration="5m")),
        Case("COM-009", "Phase loss", "Losing L2 for 10 s (EVs drop that phase) and getting it back keeps "
             "every phase within its limit.", "standards.md", "controller", "inline",
             ["At +2 min L2 is lost on the main for 10 s."], ["Strict limit holds."], strict,
             spec=_site(timeline=["at +2m phase main L2 loss for 10s"], duration="4m")),
        Case("COM-013", "Meter frozen", "A meter that keeps answering with values that no longer change, "
             "while the EVs it feeds change their draw, is treated as stale: the controller switches to its "
             "fallback budget and the limit holds when the base load rises meanwhile.",
             "DESIGN.md failsafe ladder; devices.md (meter update intervals)", "controller", "inline",
             ["The meter's readings freeze at +20 s for 4 min, before any EV draws.",
              "Five EVs plug in from +30 s (their draw never shows on the meter).",
              "At +2 min the base load rises by 25 A for 2 min."],
             ["Strict limit holds (outside the base step's settle window)."], strict,
             spec=_site(timeline=["at +20s meter main frozen for 4m", "at +2m base main step +25A for 2m"],
                        duration="6m",
                        vehicles=[{"id": f"ev{i + 1}", "preset": ("van_3p_22kw" if i % 2 else "sedan_3p"),
                                   "charger": f"cp{i + 1}", "arrive": f"+{30 + 5 * i}s"} for i in range(5)])),
        Case("COM-014", "Charger reports a fault", "A charger that reports a fault (and later recovers) is "
             "counted safely meanwhile and the limit holds while the others take its share.",
             "DESIGN.md failsafe ladder", "controller", "inline",
             ["Three EVs charge.", "At +2 min cp1 reports a fault for 1 min."], ["Strict limit holds."], strict,
             spec=_site(n=3, limit_a=50, timeline=["at +2m charger cp1 fault for 1m"], duration="5m")),
        # judged over Modbus alone: run against the emulated charger, or an external one (--dut modbus-charger)
        Case("COM-010", "Set-point following over Modbus", "A charger offers each set-point its controller "
             "writes within the PWM update spacing (5 s) plus a tolerance, and never offers a current "
             "between 0 and 6 A (a set-point below 6 A pauses).", "IEC 61851-1 §A.2.2/Table A.8; devices.md "
             "set-point registers", "charger", "inline",
             ["An EV is connected and asks for current.", "The rig configures the charger's failsafe (6 A, "
              "10 s) and writes 16, 10, 6, 0, 3 and 13 A, holding each for 5 s."],
             ["Each set-point offered within 5 s + 2 s (3 A: pause, 0 A offered).", "No offer in (0, 6) A."],
             None, spec=_one_charger([], duration="2m"), probe="setpoint_following"),
        Case("COM-011", "Watchdog fallback over Modbus", "A charger whose controller goes quiet falls back to "
             "the safe current configured over Modbus within its communication timeout plus a tolerance.",
             "devices.md (product watchdog/failsafe registers)", "charger", "inline",
             ["An EV is connected and asks for current.", "The rig sets safe current 6 A and timeout 10 s, "
              "writes 16 A, waits until it is offered, then stops writing (reads continue)."],
             ["6 A offered within timeout + 5 s PWM spacing + 3 s."], None,
             spec=_one_charger([], duration="2m"), probe="watchdog_fallback"),
        Case("COM-012", "Malformed Modbus frames", "Malformed requests get the right Modbus exception or "
             "silence and never stop the charger's Modbus server.", "Modbus Application Protocol v1.1b3 "
             "§4.4, §7; Modbus Messaging on TCP/IP §4.2", "charger", "inline",
             ["Frames crafted with scapy's Modbus layer, each on its own connection: wrong MBAP length, bad "
              "protocol id, unknown function code 0x41, truncated PDU, read of 126 registers, wrong unit id.",
              "After each, a valid read of the charger's registers."],
             ["Bad MBAP length / protocol id: silence (or the connection closed).", "Unknown function: "
              "exception 01.", "Oversized quantity: exception 03.", "Truncated PDU: silence or exception 03.",
              "Wrong unit id: silence, exception 0A/0B, or an answer.", "Every valid read afterwards answers."],
             None, spec=_one_charger([], duration="2m"), probe="malformed_frames"),
    ]


def _fair():
    rot = {"rotation_period_s": 900, "min_on_s": 120, "min_off_s": 60, "max_starts_per_hour": 6}
    return [
        Case("FAIR-001", "Rotation under scarcity", "With twelve EVs on 40 A for two hours every waiting EV "
             "gets charging time within the rotation period (plus min-on time), and no EV is started more "
             "than 6 times an hour.", "DESIGN.md no starvation; peers.md (SmartEVSE #316, evcc #30340)",
             "controller", "inline", ["Twelve EVs wait on a 40 A main, 2 h."],
             ["Longest wait ≤ 900 + 120 + 60 s.", "Contactor cycles per EV per hour ≤ 6."],
             fairness(starvation_max_s=900 + 120 + 60, cycles_per_hour_max=6),
             spec=_site(limit_a=40, n=12, base_a=4, params=rot, duration="2h")),
        Case("FAIR-002", "Equal shares", "Four identical EVs on one circuit get equal shares (Jain index of "
             "their mean current ≥ 0.95).", "DESIGN.md weighted max-min fairness", "controller", "inline",
             ["Four sedans on a 40 A main, 20 min."], ["Jain ≥ 0.95."], fairness(jain_min=0.95),
             spec=_site(limit_a=40, n=4, base_a=0, duration="20m",
                        vehicles=[{"id": f"ev{i}", "preset": "sedan_3p", "charger": f"cp{i}", "arrive": "+0s"}
                                  for i in range(1, 5)])),
        Case("FAIR-003", "Priority classes", "Under the priority policy a lower class never gets more than "
             "its minimum while a higher class on the same circuit is below its maximum.",
             "DESIGN.md policy", "controller", "inline", ["Two high-priority and three low-priority EVs on "
                                                          "63 A, 15 min."],
             ["Higher class first at every cycle."], priority_first(["cp1", "cp2"], ["cp3", "cp4", "cp5"]),
             spec=_site(limit_a=63, n=5, base_a=5, policy="priority", max_a=16, duration="15m",
                        chargers=[{"name": f"cp{i}", "circuit": "main", "min_a": 6, "max_a": 16,
                                   "priority": 1 if i <= 2 else 0} for i in range(1, 6)])),
    ]


def _kpi():
    slow = {"site": {"cycle_s": 10}}   # service level over hours: a 10 s cycle, as many sites run
    return [
        Case("KPI-001", "Office day service level", "Office drivers arriving 07:30-09:30 on a connection shared "
             "with the building get at least 80 % of the energy they asked for by departure.",
             "Seed guide (offices)", "controller", "office",
             ["Built-in scenario office, whole day, 10 s control cycle."],
             ["Energy delivered / requested ≥ 0.8 (the site is short of capacity at 09:00 by design)."],
             service(min_energy_ratio=0.8), overrides=slow),
        Case("KPI-002", "Hotel overnight", "Overnight hotel guests get their energy by departure.",
             "Seed guide (hotels)", "controller", "hotel", ["Built-in scenario hotel, 10 s control cycle."],
             ["Share met ≥ 0.9."], service(min_share_met=0.9), overrides=slow),
        Case("KPI-003", "Fleet departure deadlines", "Vans get the energy they need by their departure time "
             "under the deadline-aware policy (edf).", "DESIGN.md policies (edf/llf)", "controller", "inline",
             ["Ten vans arrive 18:00-19:00 on 100 A, leave 05:00-07:00, need 20-40 kWh; 30 s cycle."],
             ["Energy delivered / requested ≥ 0.9."], service(min_energy_ratio=0.9),
             spec=_site(n=10, max_a=32, policy="edf", base_a=10, start="Mon 18:00", duration="13h",
                        params={"cycle_s": 30},
                        vehicles=[{"id": f"van{i}", "preset": "van_3p_22kw", "charger": f"cp{i}",
                                   "arrive": f"18:{6 * (i - 1):02d}", "depart": f"Tue 0{5 + (i % 3)}:00",
                                   "energy_kwh": 20 + 2 * i, "soc": 0.2} for i in range(1, 11)])),
        Case("KPI-004", "Home overnight", "One EV behind a 25 A fuse with the evening household load gets "
             "the 15 kWh it needs by 07:00.", "Seed guide", "controller", "inline",
             ["A compact EV (1 phase) plugs in at 18:30 behind a 25 A main with residential load; 30 s cycle."],
             ["Share met = 1."], service(min_share_met=1.0),
             spec=_site(limit_a=25, n=1, max_a=32, start="Mon 18:00", duration="13h", params={"cycle_s": 30},
                        loads=[{"circuit": "main", "kind": "residential", "peak_a": 12}],
                        vehicles=[{"id": "car", "preset": "compact_1p", "charger": "cp1", "arrive": "18:30",
                                   "depart": "Tue 07:00", "energy_kwh": 15, "soc": 0.3}])),
    ]


def catalog() -> list:
    cases = _lim() + _fs() + _com() + _fair() + _kpi()
    return [copy.copy(c) for c in cases]


def select(pattern: str | None) -> list:
    """Cases whose id matches a glob (``LIM-*``) or comma-separated globs; all when None."""
    import fnmatch
    cases = catalog()
    if not pattern:
        return cases
    pats = [p.strip().upper() for p in pattern.split(",") if p.strip()]
    return [c for c in cases if any(fnmatch.fnmatch(c.id, p) for p in pats)]
