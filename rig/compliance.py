"""Compliance checkers: verdicts with evidence, computed from a :class:`~dlbrig.rig.recording.Recording`.

Every checker reads only the recording (ground-truth currents, set-points, PWM, firmware event
logs, applied timeline steps, sessions), so a verdict can be recomputed from a saved run and tested
on a hand-made recording of a bad DUT.  Every threshold is a parameter whose default is the value
in ``reference/standards.md`` (the firmware deadlines come from
:data:`dlbrig.firmware_sim.evse.STANDARD_DEADLINES_MS`).

Checkers
--------
* :func:`limit_strict`    never above the circuit limit, except inside a settle window after a
  disturbance the controller did not cause (EVerest's reading: "never above the set limit beyond
  settle time").
* :func:`limit_envelope`  never inside the trip region of an IEC 60898-1 B/C/D breaker (a
  documented thermal-magnetic model, :class:`BreakerModel`).
* :func:`fault_shutdown`  IEC 61851-1 Table A.6 contactor deadlines, state F hold, residual-current
  break times and the soft overcurrent, from the firmware event logs.
* :func:`comm_loss`, :func:`meter_loss`  fallbacks after a communication / meter loss.
* :func:`signalling`      set-points never in (0, 6 A); PWM duty changes at most every 5 s.
* :func:`service_kpis`, :func:`fairness`  Jain index, starvation, contactor cycles, energy,
  peak demand, capacity utilisation.
* :func:`instrument_crosscheck`  with lab instruments as ground truth: a charger's self-reported
  current against the measured one.

Conventions
-----------
Times are ms since the scenario start (the recording's clock).  A sample at ``t[j]`` stands for the
interval ``[t[j], t[j+1])`` (the last one for the median sample spacing).  Phases are reported as
L1/L2/L3 of the site.  Float comparisons use ``EPS_A`` (1 mA) so that rounding never fails a DUT.
"""
from __future__ import annotations

import bisect
import math
import re
from dataclasses import asdict, dataclass, field

from ..firmware_sim.evse import STANDARD_DEADLINES_MS

__all__ = [
    "Verdict", "BreakerModel", "limit_strict", "limit_envelope", "fault_shutdown", "comm_loss",
    "meter_loss", "signalling", "service_kpis", "fairness", "disturbances", "jain_index",
    "BREAKER_CURVES", "RCD_DC_BREAK_MS", "RCD_AC_BREAK_MS", "instrument_crosscheck",
]

EPS_A = 1e-3
PHASE_NAMES = ("L1", "L2", "L3")
MAX_EVIDENCE = 20

#: Timeline verbs whose steps are disturbances the controller did not cause.
DISTURBANCE_VERBS = ("base", "pv", "phase", "ev", "meter")
_VERBS = ("plug", "unplug", "meter", "ev", "charger", "base", "pv", "phase", "controller")

#: IEC 60898-1 instantaneous trip band per curve, multiples of In: (no trip <= 0.1 s, trip < 0.1 s).
BREAKER_CURVES = {"B": (3.0, 5.0), "C": (5.0, 10.0), "D": (10.0, 20.0)}

#: DC residual current (RDC-DD, IEC 62955): (threshold mA, break ms) rows, ascending.  The standard's
#: table was NOT FOUND (standards.md 1.2); these are the rows the firmware model uses, UNVERIFIED.
RCD_DC_BREAK_MS = ((6.0, 10_000), (60.0, 300), (200.0, 100))
#: AC residual current, general type (IEC 61008): (multiple of IDn, break ms), ascending.
RCD_AC_BREAK_MS = ((1.0, STANDARD_DEADLINES_MS["rcd_ac_1x"]), (2.0, STANDARD_DEADLINES_MS["rcd_ac_2x"]),
                   (5.0, STANDARD_DEADLINES_MS["rcd_ac_5x"]))


@dataclass
class Verdict:
    check: str          # "limit_strict" | "limit_envelope" | "fault_shutdown" | "comm_loss" | ...
    subject: str        # circuit, charger or "site"
    passed: bool
    summary: str        # one line a lab engineer reads, with the numbers
    metrics: dict       # numbers (overshoot_a_s, peak_over_a, time_to_safe_ms, ...)
    evidence: list      # up to ~20 dicts {"t_ms": ..., "what": "..."}: the moments that decided it
    markers: list = field(default_factory=list)   # (t_ms, label) for plots
    requirement: str = ""                          # which rule

    @property
    def status(self) -> str:
        return "pass" if self.passed else "fail"

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return f"[{self.status.upper()}] {self.check} {self.subject}: {self.summary}"


# ================================================================== small helpers
def _r(x, nd=3):
    return None if x is None else round(float(x), nd)


def _fmt_t(t_ms) -> str:
    return f"{t_ms / 1000:.3f}".rstrip("0").rstrip(".") + " s"


def _sample_dt_ms(rec) -> list:
    """Duration each sample stands for (ms)."""
    t = rec.t_ms
    if not t:
        return []
    diffs = [b - a for a, b in zip(t, t[1:])]
    last = sorted(diffs)[len(diffs) // 2] if diffs else rec.cycle_ms
    return diffs + [last]


def _end_ms(rec) -> int:
    end = rec.t_ms[-1] + (_sample_dt_ms(rec)[-1] if rec.t_ms else 0) if rec.t_ms else 0
    for evs in rec.evse_events.values():
        if evs:
            end = max(end, evs[-1][0])
    return end


def _ancestors(rec, circuit) -> list:
    out, c = [], rec.parent.get(circuit)
    while c is not None:
        out.append(c)
        c = rec.parent.get(c)
    return out


def _subtree_circuits(rec, circuit) -> set:
    return {c for c in rec.circuit_names if c == circuit or circuit in _ancestors(rec, c)}


def _charger_current(rec, k, i, j) -> float:
    s = rec.chargers[k]
    return float(s.current[i][j] or 0.0)


def _circuit_ev_current(rec, circuit, p, j) -> float:
    tot = 0.0
    for k in rec.subtree_chargers(circuit):
        for i, ph in enumerate(rec.phase_map.get(k, [])):
            if ph == p:
                tot += _charger_current(rec, k, i, j)
    return tot


def _parse_ms(tok):
    from .scenario.times import parse_duration
    try:
        return parse_duration(tok, allow_bare=False)
    except ValueError:
        return None


def _steps(rec) -> list:
    """Applied timeline steps as dicts {t_ms, verb, target, args: [tokens], for_ms, text}.

    Accepts the shapes a Recording may hold: ``(t_ms, verb, target, text)``, ``(t_ms, text)`` (the
    plant's event log) or dicts with those keys.  Lines that are not steps (plant notes such as
    ``"cp2: charger fault (disabled)"``) are skipped when no verb can be found."""
    out = []
    for st in rec.steps or []:
        verb = target = None
        if isinstance(st, dict):
            t, verb, target, text = st.get("t_ms"), st.get("verb"), st.get("target"), st.get("text", "")
        elif len(st) >= 4:
            t, verb, target, text = st[0], st[1], st[2], st[3]
        elif len(st) == 3:
            t, verb, text = st[0], st[1], st[2]
        else:
            t, text = st[0], st[1]
        toks = str(text or "").split()
        low = [x.lower() for x in toks]
        vi = None
        if verb is not None and verb in low:
            vi = low.index(verb)
        elif verb is None:
            # the verb is the first token unless a time comes first ("at 08:05 plug ...", "+20m ...")
            for n, tok in enumerate(low[:4]):
                if tok in _VERBS:
                    vi = n
                    break
                if tok.endswith(":"):
                    break
            if vi is None:
                continue
            verb = low[vi]
        rest = toks[vi + 1:] if vi is not None else toks
        if target is None and rest:
            target = rest[0]
            rest = rest[1:]
        elif target is not None and rest and rest[0] == target:
            rest = rest[1:]
        if isinstance(target, str) and target.endswith(":"):
            continue   # a plant note, not a step
        args, for_ms, n = [], None, 0
        while n < len(rest):
            tok = rest[n]
            if tok.lower() == "for" and n + 1 < len(rest):
                for_ms = _parse_ms(rest[n + 1])
                n += 2
                continue
            if tok.lower() == "at":
                n += 2     # "at TIME" anywhere in the line (a day token may follow)
                continue
            args.append(tok)
            n += 1
        out.append({"t_ms": int(t), "verb": str(verb).lower(), "target": target, "args": args,
                    "for_ms": for_ms, "text": str(text or "")})
    out.sort(key=lambda s: s["t_ms"])
    return out


def _ev_fault_intervals(rec, charger, fault) -> list:
    """[(start, end, args)] during which the EV on ``charger`` had ``fault`` (timeline steps
    ``ev CP <fault> ...``); ends at ``ev CP ok``, at the step's ``for`` or at the next unplug."""
    steps = [s for s in _steps(rec) if s["verb"] == "ev" and s["target"] == charger]
    unplugs = [e[0] for e in rec.evse_events.get(charger, []) if e[1] == "unplug"]
    unplugs += [s["t_ms"] for s in _steps(rec) if s["verb"] == "unplug" and s["target"] == charger]
    end_all = _end_ms(rec) + 1
    out = []
    for n, s in enumerate(steps):
        if not s["args"] or s["args"][0].lower() != fault:
            continue
        end = end_all
        if s["for_ms"] is not None:
            end = s["t_ms"] + s["for_ms"]
        for s2 in steps[n + 1:]:
            if s2["args"] and s2["args"][0].lower() in ("ok", fault) and s2["t_ms"] < end:
                end = s2["t_ms"]
                break
        for u in unplugs:
            if s["t_ms"] <= u < end:
                end = u
        out.append((s["t_ms"], end, s["args"][1:]))
    return out


def _relevant_targets(rec, circuit) -> set:
    sub = _subtree_circuits(rec, circuit)
    return sub | set(_ancestors(rec, circuit)) | set(rec.subtree_chargers(circuit))


def disturbances(rec, circuit, ev_reaction_ms=6000, base_step_a=1.0, ev_margin_a=0.5,
                 ev_factor=1.10) -> dict:
    """Disturbances the controller did not cause, per site phase of ``circuit``:
    ``{phase: [(t_ms, label)]}``.

    * timeline steps of verbs base/pv/phase/ev/meter whose target is the circuit, a circuit of its
      subtree, an ancestor, or a charger below it (all phases);
    * base-load rises seen in the ground truth: the circuit's non-EV current (truth minus the true
      EV currents below it) rising by more than ``base_step_a`` between two samples (that phase);
      this catches load steps defined in a scenario's ``loads`` and PV drops;
    * EV misbehaviour: a charger below the circuit whose true current exceeds
      ``(I_pwm + ev_margin_a) * ev_factor`` where I_pwm is the *highest* current its PWM signalled
      during the last ``ev_reaction_ms`` (a vehicle still reacting to a reduction is not
      misbehaving) - onset of each such run (the charger's phases).
    """
    out = {p: [] for p in range(3)}
    rel = _relevant_targets(rec, circuit)
    for s in _steps(rec):
        if s["verb"] in DISTURBANCE_VERBS and (s["target"] in rel or s["target"] not in
                                              set(rec.circuit_names) | set(rec.charger_names)):
            for p in range(3):
                out[p].append((s["t_ms"], s["text"] or f"{s['verb']} {s['target']}"))
    t = rec.t_ms
    if not t:
        return out
    cur = rec.circuit_current[circuit]
    prev = None
    for j in range(len(t)):
        base = [cur[p][j] - _circuit_ev_current(rec, circuit, p, j) for p in range(3)]
        if prev is not None:
            for p in range(3):
                if base[p] - prev[p] > base_step_a:
                    out[p].append((t[j], f"base load +{base[p] - prev[p]:.1f} A on {PHASE_NAMES[p]}"))
        prev = base
    for k in rec.subtree_chargers(circuit):
        s = rec.chargers[k]
        pm = rec.phase_map.get(k, [])
        lo, bad_prev = 0, False
        for j in range(len(t)):
            while t[lo] < t[j] - ev_reaction_ms:
                lo += 1
            pwm_hi = max(float(x or 0.0) for x in s.pwm[lo:j + 1])
            lim = (pwm_hi + ev_margin_a) * ev_factor
            over = [i for i in range(len(pm)) if _charger_current(rec, k, i, j) > lim + EPS_A]
            if over and not bad_prev:
                for i in over:
                    out[pm[i]].append((t[j], f"{k}: EV draws {_charger_current(rec, k, i, j):.1f} A "
                                             f"> ({pwm_hi:g} + {ev_margin_a}) x {ev_factor} (misbehaving EV)"))
            bad_prev = bool(over)
    for p in out:
        out[p].sort(key=lambda x: x[0])
    return out


# ================================================================== limit_strict
def limit_strict(rec, circuit=None, settle_ms=None, ev_reaction_ms=6000, pwm_spacing_ms=5000, *,
                 base_step_a=1.0) -> list:
    """Strict limit compliance: per circuit and phase the true current never exceeds the limit
    (the fuse rating, ``limits_a``), except inside a settle window after a disturbance the
    controller did not cause (see :func:`disturbances`).

    Settle window = ``settle_ms`` if given, else one control cycle + ``pwm_spacing_ms`` (a charger
    may hold a reduction that long, IEC PWM update spacing) + ``ev_reaction_ms`` (the EV's reaction
    to a PWM change, 6 s worst case per standards.md).  Windows of one phase that overlap merge.

    Fails if the current is above the limit at a sample outside every window, or if it is still
    above the limit when a window ends (not safe in time).  Reports the overshoot integral (A*s
    above the limit), the peak excess, time above, and the time-to-safe after each disturbance.
    """
    window = int(settle_ms) if settle_ms is not None else int(rec.cycle_ms + pwm_spacing_ms + ev_reaction_ms)
    names = [circuit] if circuit is not None else list(rec.circuit_names)
    dts = _sample_dt_ms(rec)
    out = []
    for c in names:
        lim = rec.limits_a[c]
        cur = rec.circuit_current[c]
        dist = disturbances(rec, c, ev_reaction_ms=ev_reaction_ms, base_step_a=base_step_a)
        over_as = over_out_as = 0.0
        time_over = time_over_out = 0.0
        peak_over, peak_a, peak_at = 0.0, 0.0, None
        evidence, markers, violations = [], [], []
        per_dist = []
        seen_marks = set()
        for p in range(3):
            wins = sorted((t0, t0 + window, label) for t0, label in dist[p])
            merged = []
            for a, b, label in wins:
                if merged and a <= merged[-1][1]:
                    merged[-1][1] = max(merged[-1][1], b)
                else:
                    merged.append([a, b, label])
            for a, b, label in merged:
                if (a, label) not in seen_marks:
                    seen_marks.add((a, label))
                    markers.append((a, f"disturbance: {label}"))
                    markers.append((b, "settle window end"))

            starts = [a for a, _, _ in merged]
            mask = []
            for tt in rec.t_ms:
                w = bisect.bisect_right(starts, tt) - 1
                mask.append(w >= 0 and tt <= merged[w][1])
            run_start = None
            for j, tt in enumerate(rec.t_ms):
                i = cur[p][j]
                peak_a = max(peak_a, i)
                ex = i - lim[p]
                if ex > EPS_A:
                    dt = dts[j] / 1000
                    over_as += ex * dt
                    time_over += dt
                    if ex > peak_over:
                        peak_over, peak_at = ex, (tt, p)
                    if not mask[j]:
                        over_out_as += ex * dt
                        time_over_out += dt
                        if run_start is None:
                            run_start = tt
                            why = "still above at the end of its settle window" if j and mask[j - 1] \
                                else "above the limit outside any settle window"
                            violations.append({"t_ms": tt, "what": f"{c} {PHASE_NAMES[p]} {i:.2f} A > "
                                                                    f"{lim[p]:g} A: {why}"})
                    else:
                        run_start = None
                else:
                    run_start = None
            # time-to-safe per disturbance: from the disturbance to the first sample from which the
            # phase stays at or below the limit until the end of its (merged) window
            for t0, label in dist[p]:
                end = merged[bisect.bisect_right(starts, t0) - 1][1]
                j0, j1 = bisect.bisect_left(rec.t_ms, t0), bisect.bisect_right(rec.t_ms, end)
                over_js = [j for j in range(j0, j1) if cur[p][j] - lim[p] > EPS_A]
                if not over_js:
                    tts, ok = 0, True
                else:
                    last = over_js[-1]
                    tts = rec.t_ms[last] + dts[last] - t0
                    ok = rec.t_ms[last] + dts[last] <= end
                ovs = sum((cur[p][j] - lim[p]) * dts[j] / 1000 for j in over_js)
                pk = max((cur[p][j] - lim[p] for j in over_js), default=0.0)
                per_dist.append({"t_ms": t0, "phase": PHASE_NAMES[p], "label": label,
                                 "time_to_safe_ms": tts, "safe_in_time": ok,
                                 "overshoot_a_s": _r(ovs), "peak_over_a": _r(pk)})
        # one line per disturbance (phases folded: the worst)
        folded = {}
        for d in per_dist:
            key = (d["t_ms"], d["label"])
            if key not in folded or d["time_to_safe_ms"] > folded[key]["time_to_safe_ms"]:
                folded[key] = d
        tts_max = max((d["time_to_safe_ms"] for d in folded.values()), default=0)
        passed = not violations
        for d in sorted(folded.values(), key=lambda d: d["t_ms"]):
            if d["time_to_safe_ms"] or len(evidence) < 5:
                evidence.append({"t_ms": d["t_ms"], "what": f"{d['label']}: safe after "
                                 f"{d['time_to_safe_ms'] / 1000:g} s (window {window / 1000:g} s), "
                                 f"{d['overshoot_a_s']} A*s, peak +{d['peak_over_a']} A on {d['phase']}"})
        evidence = (violations + evidence)[:MAX_EVIDENCE]
        worst = f"peak +{peak_over:.2f} A on {PHASE_NAMES[peak_at[1]]} at {_fmt_t(peak_at[0])}" if peak_at else "never above"
        if passed:
            summary = (f"{c}: never above {max(lim):g} A outside settle windows ({window / 1000:g} s); "
                       f"{over_as:.1f} A*s inside {len(folded)} disturbance window(s), {worst}, "
                       f"worst time-to-safe {tts_max / 1000:g} s")
        else:
            v = violations[0]
            summary = (f"{c}: FAIL at {_fmt_t(v['t_ms'])}: {v['what'].split(': ', 1)[0]}; "
                       f"{over_out_as:.1f} A*s / {time_over_out:g} s above the limit outside settle "
                       f"windows ({window / 1000:g} s), {worst}")
        metrics = {"limit_a": list(lim), "settle_ms": window, "overshoot_a_s": _r(over_as),
                   "overshoot_outside_a_s": _r(over_out_as), "time_over_s": _r(time_over),
                   "time_over_outside_s": _r(time_over_out), "peak_over_a": _r(peak_over),
                   "peak_a": _r(peak_a), "time_to_safe_ms": tts_max, "disturbances": len(folded),
                   "violations": len(violations),
                   "per_disturbance": sorted(folded.values(), key=lambda d: d["t_ms"])}
        out.append(Verdict("limit_strict", c, passed, summary, metrics, evidence, markers,
                           "never above the circuit limit beyond the settle time after a disturbance "
                           "(cycle + PWM update spacing 5 s + EV reaction; EVerest / IEC 61851-1)"))
    return out


# ================================================================== limit_envelope
class BreakerModel:
    """Thermal-magnetic model of an IEC 60898-1 miniature circuit breaker (curve B, C or D).

    The standard's table (standards.md 1.3): 1.13 In no trip for 1 h (2 h above 63 A); 1.45 In
    trips within 1 h (2 h); 2.55 In trips in 1-60 s (In <= 32 A) or 1-120 s (In > 32 A);
    instantaneous release: no trip within 0.1 s at B 3 / C 5 / D 10 In, trip within 0.1 s at
    B 5 / C 10 / D 20 In.

    **Thermal part.**  With x = I/In and k = 1.13 (the conventional non-tripping current), a thermal
    state H (H = 1 is a trip) integrates the heating above the non-tripping current::

        dH/dt = sign(d) * |d|**n / C,      d = x**2 - k**2,      H >= 0

    so at a constant current from cold the trip time is ``t(x) = C / (x**2 - k**2)**n``, 1.13 In
    never trips and the state cools (d < 0) below 1.13 In.  A pure I^2t integrator (n = 1)
    cannot meet both rows of the table: its 1.45 In / 2.55 In trip-time ratio is fixed at
    (2.55^2 - k^2)/(1.45^2 - k^2) = 6.33, the table's is 3600 s / 60 s = 60.  The exponent n and the
    constant C are fitted so the model trips *exactly at the table's upper bounds*,
    t(1.45) = T1 (3600 s, 7200 s above 63 A) and t(2.55) = T2 (60 s for In <= 32 A, else 120 s)::

        d1 = 1.45**2 - k**2 = 0.8256        d2 = 2.55**2 - k**2 = 5.2256
        n  = ln(T1 / T2) / ln(d2 / d1)      C  = T2 * d2**n

    Above 2.55 In the power law would trip too fast (a D breaker at 9.9 In in 0.09 s, against
    the standard's "no trip within 0.1 s below 10 In"), so there the heating continues as a pure
    (adiabatic) I^2t, continuous at 2.55 In::

        dH/dt = d2**n / C * (d / d2)   for d > d2,   i.e.  t(x) = T2 * d2 / (x**2 - k**2)

    (9.9 In -> 3.2 s, 19.9 In -> 0.8 s: the thermal part never trips within 0.1 s).

    In <= 32 A: n = 2.219, C = 2353 s (2 In -> 255 s, 3 In -> 25 s, 1.2 In -> 36 h); 32 < In <= 63 A:
    n = 1.843, C = 2529 s.  From H = 1 at zero current the state cools to 0 in C / k**(2n) s (23 min).
    It is the *slowest* breaker the standard allows: H >= 1 means every compliant breaker would
    have tripped; a real one may trip earlier anywhere in the band (so :func:`limit_envelope`
    reports the fraction, and its pass threshold ``max_fraction`` is a parameter).

    **Magnetic part.**  Conservatively, the instantaneous release trips as soon as I reaches the
    *lower* bound of the curve's band (B 3, C 5, D 10 In): there a compliant breaker may trip once
    the current lasts 0.1 s, and recording samples are never shorter in practice.  At the upper
    bound every breaker trips.
    """

    def __init__(self, rated_a: float, curve: str = "C", k_nt: float = 1.13,
                 t_145_s: float | None = None, t_255_s: float | None = None):
        curve = curve.upper()
        if curve not in BREAKER_CURVES:
            raise ValueError(f"curve must be one of {sorted(BREAKER_CURVES)}, got {curve!r}")
        if rated_a <= 0:
            raise ValueError("rated_a must be > 0")
        self.rated_a, self.curve, self.k = float(rated_a), curve, float(k_nt)
        self.t1 = float(t_145_s if t_145_s is not None else (3600.0 if rated_a <= 63 else 7200.0))
        self.t2 = float(t_255_s if t_255_s is not None else (60.0 if rated_a <= 32 else 120.0))
        d1, d2 = 1.45 ** 2 - self.k ** 2, 2.55 ** 2 - self.k ** 2
        self.d2 = d2
        self.n = math.log(self.t1 / self.t2) / math.log(d2 / d1)
        self.C = self.t2 * d2 ** self.n
        self.magnetic_lo, self.magnetic_hi = BREAKER_CURVES[curve]

    @property
    def magnetic_a(self) -> float:
        return self.magnetic_lo * self.rated_a

    def rate(self, current_a: float) -> float:
        """dH/dt (1/s) at a current."""
        x = abs(current_a) / self.rated_a
        d = x * x - self.k * self.k
        if d > self.d2:   # adiabatic I^2t continuation above 2.55 In (see the class docstring)
            return self.d2 ** self.n / self.C * (d / self.d2)
        return math.copysign(abs(d) ** self.n / self.C, d) if d else 0.0

    def trip_time_s(self, current_a: float) -> float:
        """Time to trip from cold at a constant current (0: magnetic; inf: never)."""
        if abs(current_a) >= self.magnetic_a:
            return 0.0
        r = self.rate(current_a)
        return 1.0 / r if r > 0 else math.inf

    def simulate(self, t_ms: list, current_a: list, h0: float = 0.0, dt_ms: list | None = None) -> dict:
        """Run the model over piecewise-constant samples; returns max fraction, trip time, ..."""
        if dt_ms is None:
            dt_ms = [b - a for a, b in zip(t_ms, t_ms[1:])] + [0]
        h, h_max, h_max_at, trip_ms, mag_ms = h0, h0, None, None, None
        for tt, i, dt in zip(t_ms, current_a, dt_ms):
            if mag_ms is None and abs(i) >= self.magnetic_a:
                mag_ms = tt
                if trip_ms is None:
                    trip_ms = tt
            r = self.rate(i)
            h_new = max(0.0, h + r * dt / 1000.0)
            if trip_ms is None and h_new >= 1.0 - 1e-9 and r > 0:   # 1e-9: float sums of a fit at the bound
                trip_ms = tt + max(0.0, 1.0 - h) / r * 1000.0
            h = h_new
            if h > h_max:
                h_max, h_max_at = h, tt + dt
        return {"max_fraction": h_max, "max_at_ms": h_max_at, "trip_ms": trip_ms,
                "magnetic_ms": mag_ms, "final": h}


def limit_envelope(rec, circuit=None, curve="C", rated_a=None, *, max_fraction=1.0) -> list:
    """Envelope compliance: the circuit's true currents never reach the trip region of an
    IEC 60898-1 breaker of ``curve`` rated ``rated_a`` (default: the circuit's limit per phase),
    using :class:`BreakerModel` (one thermal state per pole, started cold).

    Passes if no pole reaches the magnetic threshold and the thermal state stays below
    ``max_fraction`` (1.0 = the slowest compliant breaker trips).  Reports how close the run came:
    ``thermal_fraction`` (0..1+), the peak as a multiple of In and the margin to the magnetic
    threshold in A."""
    names = [circuit] if circuit is not None else list(rec.circuit_names)
    dts = _sample_dt_ms(rec)
    out = []
    for c in names:
        cur = rec.circuit_current[c]
        ratings = rated_a if isinstance(rated_a, (list, tuple)) else \
            [rated_a] * 3 if rated_a is not None else list(rec.limits_a[c])
        worst = None
        per_phase = []
        evidence, markers = [], []
        mag_margin, peak_mult, trip_at = math.inf, 0.0, None
        for p in range(3):
            if not ratings[p] or ratings[p] <= 0:
                continue
            m = BreakerModel(ratings[p], curve)
            res = m.simulate(rec.t_ms, cur[p], dt_ms=dts)
            pk = max(cur[p], default=0.0)
            peak_mult = max(peak_mult, pk / m.rated_a)
            mag_margin = min(mag_margin, m.magnetic_a - pk)
            per_phase.append({"phase": PHASE_NAMES[p], "rated_a": m.rated_a,
                              "thermal_fraction": _r(res["max_fraction"], 4), "peak_a": _r(pk),
                              "peak_in": _r(pk / m.rated_a), "magnetic_a": m.magnetic_a,
                              "trip_ms": _r(res["trip_ms"], 0)})
            if worst is None or res["max_fraction"] > worst[1]["max_fraction"]:
                worst = (p, res, m)
            if res["magnetic_ms"] is not None:
                evidence.append({"t_ms": res["magnetic_ms"], "what": f"{c} {PHASE_NAMES[p]} reaches "
                                 f"{m.magnetic_lo:g} In = {m.magnetic_a:g} A: magnetic trip possible"})
                markers.append((res["magnetic_ms"], f"magnetic threshold {PHASE_NAMES[p]}"))
            if res["trip_ms"] is not None and (trip_at is None or res["trip_ms"] < trip_at):
                trip_at = res["trip_ms"]
            if res["trip_ms"] is not None and res["magnetic_ms"] is None:
                evidence.append({"t_ms": round(res["trip_ms"]), "what": f"{c} {PHASE_NAMES[p]} thermal "
                                 f"state reaches 1.0: the {curve}{m.rated_a:g} breaker trips"})
                markers.append((round(res["trip_ms"]), f"thermal trip {PHASE_NAMES[p]}"))
        if worst is None:
            out.append(Verdict("limit_envelope", c, True, f"{c}: no rated phase, not judged", {},
                               [], [], "IEC 60898-1 tripping characteristic"))
            continue
        p, res, m = worst
        frac = res["max_fraction"]
        magnetic = any(ev["what"].endswith("possible") for ev in evidence)
        passed = not magnetic and frac < max_fraction
        if res["max_at_ms"] is not None and frac > 0:
            evidence.append({"t_ms": res["max_at_ms"], "what": f"max thermal state {frac:.3f} on "
                             f"{PHASE_NAMES[p]} ({curve}{m.rated_a:g} model)"})
        summary = (f"{c}: {curve}{m.rated_a:g} breaker model: max thermal state {frac:.2f} of trip "
                   f"({PHASE_NAMES[p]}), peak {peak_mult:.2f} In, {mag_margin:.1f} A below the magnetic "
                   f"threshold ({m.magnetic_lo:g} In)")
        if not passed:
            summary = (f"{c}: FAIL, the {curve}{m.rated_a:g} breaker would trip at "
                       f"{_fmt_t(trip_at)}: " + summary.split(": ", 1)[1])
        metrics = {"curve": curve, "rated_a": ratings, "thermal_fraction": _r(frac, 4),
                   "peak_in": _r(peak_mult), "magnetic_margin_a": _r(mag_margin),
                   "magnetic_in": m.magnetic_lo, "trip_ms": _r(trip_at, 0),
                   "model_n": _r(m.n, 4), "model_c_s": _r(m.C, 1), "per_phase": per_phase}
        out.append(Verdict("limit_envelope", c, passed, summary, metrics, evidence[:MAX_EVIDENCE],
                           markers, "IEC 60898-1 Table 7: never in the trip region of the "
                           f"protective device ({curve} curve: 1.13/1.45/2.55 In, "
                           f"{BREAKER_CURVES[curve][0]:g}-{BREAKER_CURVES[curve][1]:g} In instantaneous)"))
    return out


# ================================================================== fault_shutdown
_REQ = {
    "open_after_c_to_b": "IEC 61851-1 Table A.6 seq. 8.1: contactor open within 100 ms after C->B",
    "open_after_a_e_f": "contactor open within 100 ms after ->A/E/F or a fault (assumed, standards.md 6)",
    "close_after_b_to_c": "IEC 61851-1 Table A.6 seq. 4: contactor closed within 3 s after B->C (PWM on)",
    "force_open_after_pwm_off": "IEC 61851-1 Table A.6 seq. 10.2: open within 6 s after PWM off with the EV in C",
    "f_hold_min": "IEC 61851-1 Table A.5: state F held >= 300 ms after a fault",
    "diode": "IEC 61851-1 Table A.4: diode checked before closing; never close without it",
    "rcd_dc": "IEC 62955 RDC-DD: remove supply on DC residual current >= 6 mA (break table UNVERIFIED)",
    "rcd_ac": "IEC 61008 general type: break <= 300/150/40 ms at 1/2/5 IDn",
    "soft_overcurrent": "EVerest soft overcurrent: error within 7 s above (I_pwm + 0.5 A) x 1.10",
}


def _events(rec, k) -> list:
    return sorted(((int(t), kind, dict(data or {})) for t, kind, data in rec.evse_events.get(k, [])),
                  key=lambda e: e[0]) if rec.evse_events.get(k) else []


def _letter(state) -> str:
    return (state or "A")[0]


def _resolve(evs, start, t0, deadline, done, cancel=None):
    """Scan ``evs`` after index ``start``: ('met', t) at the first ``done`` event, ('cancelled', t)
    at a ``cancel`` event before it, else (None, None)."""
    for t, kind, data in evs[start + 1:]:
        if done(kind, data):
            return "met", t
        if cancel is not None and cancel(kind, data):
            return "cancelled", t
    return None, None


def fault_shutdown(rec, charger=None, deadlines=STANDARD_DEADLINES_MS, tolerance_ms=0, *,
                   rcd_idn_ma=30.0, rcd_dc_break_ms=RCD_DC_BREAK_MS, rcd_ac_break_ms=None,
                   oc_margin_a=0.5, oc_factor=1.10) -> list:
    """Firmware safety deadlines, one verdict per charger, from its event log (ms resolution).

    Rules (deadline keys of ``deadlines``; ``tolerance_ms`` is added to every deadline and taken
    off the F hold minimum):

    * ``open_after_c_to_b``: a ``cp_state`` C/D -> B while the contactor is closed -> ``contactor_open``.
    * ``open_after_a_e_f``: ``cp_state`` -> A/E/F, or a ``fault`` (diode, RCD, overcurrent), while
      closed -> ``contactor_open``.
    * ``close_after_b_to_c``: ``cp_state`` -> C2/D2 (EV requests, PWM on) while open, enabled and
      with no latched error -> ``contactor_close``, unless the request is withdrawn first (state
      change, fault, disable).  A diode fault instead of a close is the correct reaction.
    * ``force_open_after_pwm_off``: ``pwm`` off while closed with the EV in C/D -> ``contactor_open``
      unless the PWM comes back or the EV leaves C/D first.
    * ``f_hold_min``: every stay in F lasts at least the minimum.
    * diode: a ``contactor_close`` while the EV's diode is missing (timeline ``ev CP missing_diode``).
    * RCD: while the EV leaks (timeline ``ev CP leakage dc|ac XmA``) and the contactor is closed,
      the supply is removed (``contactor_open``) within the break time: AC by multiple of
      ``rcd_idn_ma`` (1x 300, 2x 150, 5x 40 ms; nothing required below 1 IDn), DC by
      ``rcd_dc_break_ms`` rows (>= 6 mA; the IEC 62955 table was not found: UNVERIFIED defaults).
    * soft overcurrent (needs the current samples): whenever the EV's true current stays above
      ``(I_pwm + oc_margin_a) * oc_factor`` longer than ``soft_overcurrent`` ms, an error (``fault``)
      or an opening must come by onset + ``soft_overcurrent`` + 1 ms ("longer than") - and it must
      trip at all.

    A deadline not yet reached when the recording ends is not judged.
    """
    dl = dict(STANDARD_DEADLINES_MS)
    dl.update(deadlines or {})
    ac_rows = tuple(rcd_ac_break_ms) if rcd_ac_break_ms is not None else \
        ((1.0, dl["rcd_ac_1x"]), (2.0, dl["rcd_ac_2x"]), (5.0, dl["rcd_ac_5x"]))
    names = [charger] if charger is not None else list(rec.charger_names)
    end_ms = _end_ms(rec)
    out = []
    for k in names:
        evs = _events(rec, k)
        checks = []

        def add(rule, t0, trigger, deadline, measured, ok, note="", minimum=False):
            checks.append({"rule": rule, "t_ms": t0, "trigger": trigger, "deadline_ms": deadline,
                           "measured_ms": measured, "ok": ok, "minimum": minimum, "note": note})

        def deadline_check(rule, idx, t0, trigger, done, cancel=None, deadline=None, what="open"):
            d = dl[rule] if deadline is None else deadline
            status, t = _resolve(evs, idx, t0, d, done, cancel)
            if status == "met":
                add(rule, t0, trigger, d, t - t0, t - t0 <= d + tolerance_ms)
            elif status == "cancelled":
                if t - t0 > d + tolerance_ms:
                    add(rule, t0, trigger, d, None, False, f"no {what} in {d} ms (condition ended at "
                                                           f"+{t - t0} ms)")
            elif end_ms - t0 > d + tolerance_ms:
                add(rule, t0, trigger, d, None, False, f"no {what} before the end of the recording "
                                                       f"(+{end_ms - t0} ms)")

        closed, cp, latched, enabled = False, "A", False, True
        opened = lambda kind, data: kind == "contactor_open"   # noqa: E731
        closed_ev = lambda kind, data: kind == "contactor_close"  # noqa: E731
        fault_times = set()
        for idx, (t, kind, data) in enumerate(evs):
            if kind == "fault":
                if closed:
                    fault_times.add(t)
                    deadline_check("open_after_a_e_f", idx, t, f"fault {data.get('name', '')}", opened)
                latched = True
            elif kind == "fault_cleared":
                latched = False
            elif kind == "enabled":
                enabled = bool(data.get("enabled", True))
            elif kind == "cp_state":
                frm, to = data.get("from", cp), data.get("to", "A")
                if closed and _letter(frm) in "CD" and _letter(to) == "B":
                    deadline_check("open_after_c_to_b", idx, t, f"{frm}->{to}", opened)
                elif closed and _letter(to) in "AEF" and not (to == "F" and t in fault_times):
                    deadline_check("open_after_a_e_f", idx, t, f"{frm}->{to}", opened)
                if to in ("C2", "D2") and not closed and not latched and enabled:
                    deadline_check("close_after_b_to_c", idx, t, f"{frm}->{to}", closed_ev,
                                   lambda kd, d: (kd == "cp_state" and d.get("to") not in ("C2", "D2"))
                                   or kd == "fault" or (kd == "enabled" and not d.get("enabled", True)),
                                   what="close")
                if to == "F":
                    nxt = next(((t2, d2) for t2, k2, d2 in evs[idx + 1:] if k2 == "cp_state"), None)
                    if nxt is not None:
                        held = nxt[0] - t
                        add("f_hold_min", t, f"F until {nxt[1].get('to')}", dl["f_hold_min"], held,
                            held >= dl["f_hold_min"] - tolerance_ms, minimum=True)
                cp = to
            elif kind == "pwm":
                if not data.get("on", True) and closed and _letter(cp) in "CD":
                    deadline_check("force_open_after_pwm_off", idx, t, f"PWM off in {cp}", opened,
                                   lambda kd, d: (kd == "pwm" and d.get("on"))
                                   or (kd == "cp_state" and _letter(d.get("to")) not in "CD"))
            elif kind == "contactor_close":
                closed = True
            elif kind == "contactor_open":
                closed = False
        # closed intervals
        intervals, t_close = [], None
        for t, kind, data in evs:
            if kind == "contactor_close" and t_close is None:
                t_close = t
            elif kind == "contactor_open" and t_close is not None:
                intervals.append((t_close, t))
                t_close = None
        if t_close is not None:
            intervals.append((t_close, math.inf))
        # diode: never close without it
        for a, b, _ in _ev_fault_intervals(rec, k, "missing_diode"):
            closes = [t for t, kind, data in evs if kind == "contactor_close" and a <= t < b]
            for t in closes:
                add("diode", t, "EV diode missing", 0, None, False,
                    "contactor closed without the diode (no diode check)")
            t_f = next((t for t, kind, data in evs if kind == "fault" and data.get("name") == "DIODE"
                        and a <= t < b), None)
            if t_f is not None and not closes:
                add("diode", t_f, "EV diode missing", 0, None, True, "diode fault raised, contactor kept open")
        # residual current
        for kind_l in ("dc", "ac"):
            for a, b, args in _ev_fault_intervals(rec, k, "leakage"):
                if not args or args[0].lower() != kind_l:
                    continue
                m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*ma", "".join(args[1:2]).lower())
                if not m:
                    continue
                ma = float(m.group(1))
                if kind_l == "ac":
                    mult, brk = ma / rcd_idn_ma, None
                    for mm, ms in ac_rows:
                        if mult >= mm:
                            brk = int(ms)
                    rule, label = "rcd_ac", f"AC {ma:g} mA ({mult:.2g} IDn)"
                else:
                    brk = None
                    for thr, ms in rcd_dc_break_ms:
                        if ma >= thr:
                            brk = int(ms)
                    rule, label = "rcd_dc", f"DC {ma:g} mA"
                if brk is None:
                    continue
                for c0, c1 in intervals:
                    onset = max(a, c0)
                    if onset >= min(b, c1):
                        continue
                    if c1 < b:   # the supply was removed while the leakage lasted
                        add(rule, onset, label, brk, c1 - onset, c1 - onset <= brk + tolerance_ms)
                    elif b - onset > brk + tolerance_ms or (b > end_ms and end_ms - onset > brk + tolerance_ms):
                        add(rule, onset, label, brk, None, False, "supply not removed while leaking")
        # soft overcurrent from the samples
        s = rec.chargers.get(k)
        oc_d = dl["soft_overcurrent"] + 1
        if s is not None and rec.t_ms:
            run = None
            tt = rec.t_ms
            for j in range(len(tt) + 1):
                exceed = False
                if j < len(tt):
                    lim = (float(s.pwm[j] or 0.0) + oc_margin_a) * oc_factor
                    exceed = any(float(s.current[i][j] or 0.0) > lim + EPS_A for i in range(3))
                if exceed and run is None:
                    run = tt[j]
                elif not exceed and run is not None:
                    t_stop = tt[j] if j < len(tt) else end_ms
                    fault = next((t for t, kd, d in evs if run <= t <= t_stop and kd == "fault"), None)
                    opened_at = next((t for t, kd, d in evs if run <= t <= t_stop and kd == "contactor_open"), None)
                    stop = fault if fault is not None else opened_at
                    label = "EV above (I_pwm + 0.5) x 1.1"
                    if stop is not None and (fault is not None or t_stop - run > oc_d + tolerance_ms):
                        add("soft_overcurrent", run, label + ("" if fault is not None else ", stopped by an opening"),
                            oc_d, stop - run, stop - run <= oc_d + tolerance_ms)
                    elif stop is None and t_stop - run > oc_d + tolerance_ms:
                        add("soft_overcurrent", run, label, oc_d, None, False,
                            f"no overcurrent error after {(t_stop - run) / 1000:g} s above the limit")
                    run = None
        checks.sort(key=lambda c: c["t_ms"])
        bad = [c for c in checks if not c["ok"]]
        rules = {}
        for c in checks:
            r = rules.setdefault(c["rule"], {"n": 0, "violations": 0, "deadline_ms": c["deadline_ms"],
                                             "worst_ms": None})
            r["n"] += 1
            r["violations"] += not c["ok"]
            if c["measured_ms"] is not None:
                if r["worst_ms"] is None or (c["measured_ms"] < r["worst_ms"] if c["minimum"]
                                             else c["measured_ms"] > r["worst_ms"]):
                    r["worst_ms"] = c["measured_ms"]

        def line(c):
            if c["measured_ms"] is None:
                meas = c["note"]
            elif c["minimum"]:
                meas = f"held {c['measured_ms']} ms (>= {c['deadline_ms']} ms)"
            else:
                meas = f"{c['measured_ms']} ms (<= {c['deadline_ms']} ms)"
            return f"{'OK' if c['ok'] else 'VIOLATION'} {c['rule']}: {c['trigger']}: {meas}"

        evidence = [{"t_ms": c["t_ms"], "what": line(c)} for c in bad]
        evidence += [{"t_ms": c["t_ms"], "what": line(c)} for c in checks if c["ok"]]
        evidence = sorted(evidence[:MAX_EVIDENCE], key=lambda e: e["t_ms"])
        markers = [(c["t_ms"], f"{c['rule']}: {c['trigger']}") for c in checks]
        markers += [(c["t_ms"] + c["deadline_ms"], f"deadline {c['rule']}") for c in bad if not c["minimum"]]
        decide = bad[0] if bad else (max(checks, key=lambda c: (c["measured_ms"] or 0) / max(1, c["deadline_ms"]))
                                     if checks else None)
        counts = ", ".join(f"{r} {v['n']}" + (f" (worst {v['worst_ms']} ms / {v['deadline_ms']} ms)"
                                              if v["worst_ms"] is not None else "") for r, v in rules.items())
        if not checks:
            summary = f"{k}: no safety-relevant event in the log (nothing checked)"
        elif bad:
            summary = (f"{k}: FAIL, {len(bad)} of {len(checks)} checks violated; first at "
                       f"{_fmt_t(bad[0]['t_ms'])}: {line(bad[0]).split(' ', 1)[1]}")
        else:
            summary = f"{k}: all {len(checks)} checks within deadline: {counts}"
        metrics = {"checked": len(checks), "violations": len(bad),
                   "deadline_ms": decide["deadline_ms"] if decide else None,
                   "measured_ms": decide["measured_ms"] if decide else None,
                   "rules": rules, "checks": checks}
        req = "; ".join(_REQ[r] for r in rules) if rules else _REQ["open_after_c_to_b"]
        out.append(Verdict("fault_shutdown", k, not bad, summary, metrics, evidence, markers, req))
    return out


# ================================================================== comm_loss / meter_loss
def _pwm_series(rec, k) -> list:
    """[(t_ms, current_a)]: from the firmware's ``pwm`` events (ms) when it logged any, else from
    the samples."""
    evs = [(t, d) for t, kind, d in _events(rec, k) if kind == "pwm"]
    if evs:
        out = [(-1, 0.0)]
        for t, d in evs:
            out.append((t, float(d.get("current_a", 0.0)) if d.get("on", True) else 0.0))
        return out
    s = rec.chargers.get(k)
    if s is None:
        return []
    return [(t, float(x or 0.0)) for t, x in zip(rec.t_ms, s.pwm)]


def comm_loss(rec, charger, t_loss_ms, timeout_ms, tolerance_ms=1000, safe_a=None) -> Verdict:
    """After the controller goes silent at ``t_loss_ms`` the charger falls back: its PWM signals at
    most its safe current (0 for "stop" products) by ``t_loss + timeout + tolerance``, and stays
    there until the controller writes again (the next ``setpoint`` event).

    ``safe_a`` default: the ``current_a`` of the first ``watchdog_fallback`` event after the loss,
    else the charger's minimum current (pass it explicitly for a product whose safe current is
    known, e.g. 0 for a stop product without a logged fallback)."""
    evs = _events(rec, charger)
    deadline = t_loss_ms + timeout_ms + tolerance_ms
    fb = next(((t, d) for t, kind, d in evs if kind == "watchdog_fallback" and t >= t_loss_ms), None)
    safe_src = "given"
    if safe_a is None:
        if fb is not None:
            safe_a, safe_src = float(fb[1].get("current_a", 0.0)), "fallback event"
        else:
            safe_a, safe_src = float(rec.min_current_a.get(charger, 6.0)), "charger minimum"
    resume = next((t for t, kind, d in evs if kind == "setpoint" and t > t_loss_ms), None)
    until = resume if resume is not None else _end_ms(rec)
    series = _pwm_series(rec, charger)
    at_loss = next((c for t, c in reversed(series) if t <= t_loss_ms), 0.0)
    t_safe = t_loss_ms if at_loss <= safe_a + EPS_A else \
        next((t for t, c in series if t > t_loss_ms and c <= safe_a + EPS_A), None)
    rise = None
    if t_safe is not None:
        rise = next(((t, c) for t, c in series if t_safe < t < until and c > safe_a + EPS_A), None)
    evidence, markers = [], [(t_loss_ms, "communication lost"), (deadline, "fallback deadline")]
    evidence.append({"t_ms": t_loss_ms, "what": f"controller silent; PWM {at_loss:g} A (safe {safe_a:g} A, "
                                                f"{safe_src})"})
    if fb is not None:
        evidence.append({"t_ms": fb[0], "what": f"watchdog_fallback ({fb[1].get('reason')}, "
                                                f"{fb[1].get('action')}, {fb[1].get('current_a')} A)"})
        markers.append((fb[0], "watchdog fallback"))
    measured = None if t_safe is None else t_safe - t_loss_ms
    if t_safe is not None:
        evidence.append({"t_ms": t_safe, "what": f"PWM at or below the safe current ({safe_a:g} A)"})
    ended_early = t_safe is None and until < deadline
    passed = (t_safe is not None and t_safe <= deadline and rise is None) or ended_early
    if rise is not None:
        evidence.append({"t_ms": rise[0], "what": f"PWM back up to {rise[1]:g} A without a new set-point"})
    if ended_early:
        summary = (f"{charger}: not judged, communication back / run ended at {_fmt_t(until)} before the "
                   f"fallback deadline {_fmt_t(deadline)}")
    elif passed:
        summary = (f"{charger}: fell back to <= {safe_a:g} A {measured / 1000:g} s after the loss "
                   f"(allowed {(timeout_ms + tolerance_ms) / 1000:g} s)")
    elif t_safe is None or t_safe > deadline:
        summary = (f"{charger}: FAIL, PWM still {next((c for t, c in reversed(series) if t <= deadline), 0.0):g} A > safe "
                   f"{safe_a:g} A at {(timeout_ms + tolerance_ms) / 1000:g} s after the loss "
                   + ("(never fell back)" if t_safe is None else f"(fell back after {measured / 1000:g} s)"))
    else:
        summary = f"{charger}: FAIL, PWM rose to {rise[1]:g} A at {_fmt_t(rise[0])} during the loss"
    metrics = {"t_loss_ms": t_loss_ms, "timeout_ms": timeout_ms, "tolerance_ms": tolerance_ms,
               "deadline_ms": timeout_ms + tolerance_ms, "measured_ms": measured,
               "time_to_safe_ms": measured, "safe_a": safe_a, "pwm_at_loss_a": at_loss,
               "watchdog_event_ms": None if fb is None else fb[0] - t_loss_ms}
    return Verdict("comm_loss", charger, passed, summary, metrics, evidence, markers,
                   "charger falls back to its safe current within the watchdog timeout after losing "
                   "the controller (UK SI 2021/1467 reg. 7; vendor watchdogs, standards.md 6)")


def meter_loss(rec, circuit, t_loss_ms, meter_timeout_ms, tolerance_ms=None, fallback_a=None, *,
               until_ms=None) -> Verdict:
    """After the circuit's meter stops answering at ``t_loss_ms``: from ``t_loss + meter_timeout +
    one cycle + tolerance`` (tolerance default 0) until the meter is back (``until_ms``, else the
    step ``meter CIRCUIT ok`` / the loss step's ``for``, else the end), the set-points of the
    chargers below the circuit, summed per site phase through their phase maps, fit the fallback
    budget ``limit - margin - fallback base``; and the true current never exceeds the limit from
    the loss to that end.

    ``fallback_a``: the fallback base load (A, scalar or per phase).  Default: the recording's
    ``fallback_base_a[circuit]`` if it carries one, else 0 (then the budget is limit - margin)."""
    tol = 0 if tolerance_ms is None else tolerance_ms
    t_fb = t_loss_ms + meter_timeout_ms + rec.cycle_ms + tol
    base_src = "given"
    if fallback_a is None:
        fb = getattr(rec, "fallback_base_a", None) or {}
        fallback_a, base_src = (fb.get(circuit), "recording") if circuit in fb else (0.0, "unknown: 0")
    base = list(fallback_a) if isinstance(fallback_a, (list, tuple)) else [float(fallback_a)] * 3
    lim, margin = rec.limits_a[circuit], rec.margin_a.get(circuit, 0.0)
    budget = [lim[p] - margin - base[p] for p in range(3)]
    if until_ms is None:
        until_ms = _end_ms(rec)
        for s in _steps(rec):
            if s["verb"] == "meter" and s["target"] == circuit and s["t_ms"] <= t_loss_ms \
                    and s["for_ms"] is not None and s["t_ms"] + s["for_ms"] > t_loss_ms:
                until_ms = min(until_ms, s["t_ms"] + s["for_ms"])
            if s["verb"] == "meter" and s["target"] == circuit and s["t_ms"] > t_loss_ms \
                    and s["args"] and s["args"][0].lower() == "ok":
                until_ms = min(until_ms, s["t_ms"])
                break
    ks = rec.subtree_chargers(circuit)
    evidence, bad_budget, bad_limit = [], [], []
    worst_sum = [0.0, 0.0, 0.0]
    for j, t in enumerate(rec.t_ms):
        if t < t_loss_ms or t >= until_ms:
            continue
        for p in range(3):
            if rec.circuit_current[circuit][p][j] > lim[p] + EPS_A:
                bad_limit.append((t, p, rec.circuit_current[circuit][p][j]))
        if t < t_fb:
            continue
        sums = [0.0, 0.0, 0.0]
        for k in ks:
            sp = rec.chargers[k].sp[j]
            for ph in rec.phase_map.get(k, []):
                sums[ph] += float(sp or 0.0)
        for p in range(3):
            worst_sum[p] = max(worst_sum[p], sums[p])
            if sums[p] > budget[p] + EPS_A:
                bad_budget.append((t, p, sums[p]))
    judged = any(t_fb <= t < until_ms for t in rec.t_ms)
    passed = not bad_budget and not bad_limit
    for t, p, v in bad_budget[:8]:
        evidence.append({"t_ms": t, "what": f"set-points on {PHASE_NAMES[p]} sum to {v:g} A > fallback "
                                            f"budget {budget[p]:g} A"})
    for t, p, v in bad_limit[:8]:
        evidence.append({"t_ms": t, "what": f"{circuit} {PHASE_NAMES[p]} {v:.2f} A > limit {lim[p]:g} A "
                                            f"while the meter is lost"})
    evidence.sort(key=lambda e: e["t_ms"])
    if passed:
        evidence.append({"t_ms": t_fb, "what": f"set-points per phase at most {[round(x, 2) for x in worst_sum]} A "
                                               f"(budget {[round(x, 2) for x in budget]} A)"})
    markers = [(t_loss_ms, "meter lost"), (t_fb, "fallback deadline"), (until_ms, "meter back / end")]
    if passed and not judged:
        summary = f"{circuit}: not judged, the meter came back before the fallback deadline {_fmt_t(t_fb)}"
    elif passed:
        summary = (f"{circuit}: within {(t_fb - t_loss_ms) / 1000:g} s of the meter loss the set-points fit "
                   f"the fallback budget (max {max(worst_sum):g} A of {min(budget):g} A per phase, base "
                   f"{base_src}); never above {max(lim):g} A")
    else:
        first = min([b[0] for b in bad_budget] + [b[0] for b in bad_limit])
        parts = []
        if bad_budget:
            parts.append(f"set-points up to {max(v for _, _, v in bad_budget):g} A > budget "
                         f"{min(budget):g} A for {len({b[0] for b in bad_budget})} samples")
        if bad_limit:
            parts.append(f"true current up to {max(v for _, _, v in bad_limit):.1f} A > limit")
        summary = f"{circuit}: FAIL from {_fmt_t(first)}: " + "; ".join(parts)
    metrics = {"t_loss_ms": t_loss_ms, "deadline_ms": t_fb - t_loss_ms, "until_ms": until_ms,
               "budget_a": [_r(b) for b in budget], "fallback_base_a": base,
               "max_setpoint_sum_a": [_r(x) for x in worst_sum],
               "budget_violations": len(bad_budget), "limit_violations": len(bad_limit),
               "peak_over_a": _r(max((v - lim[p] for _, p, v in bad_limit), default=0.0))}
    return Verdict("meter_loss", circuit, passed, summary, metrics, evidence[:MAX_EVIDENCE], markers,
                   "after a meter loss the controller allocates within limit - margin - fallback base "
                   "within the meter timeout + one cycle (SmartEVSE-like: lost meter > 10 s, standards.md 6)")


# ================================================================== signalling
def signalling(rec, charger=None, min_a=6.0, pwm_spacing_ms=5000, *, x1_min_off_ms=3000) -> list:
    """Per charger: no controller set-point strictly between 0 and ``min_a`` (IEC 61851-1: < 6 A
    cannot be signalled; below it the controller must pause = 0); PWM duty changes while on
    (``pwm`` events on -> on with a changed current) at least ``pwm_spacing_ms`` after the
    previous PWM change (EVerest IEC_PWM_MAX_UPDATE_INTERVAL); and after a PWM off within a
    session the PWM stays off ``x1_min_off_ms`` (t_step_X1) before coming back."""
    names = [charger] if charger is not None else list(rec.charger_names)
    out = []
    for k in names:
        viol, ok_n = [], 0
        s = rec.chargers.get(k)
        bad_sp = []
        if s is not None:
            for t, sp in zip(rec.t_ms, s.sp):
                if sp is not None and EPS_A < float(sp) < min_a - EPS_A:
                    bad_sp.append((t, float(sp)))
        for t, sp in bad_sp[:10]:
            viol.append({"t_ms": t, "what": f"set-point {sp:g} A between 0 and {min_a:g} A"})
        evs = _events(rec, k)
        prev, min_gap, min_off = None, None, None
        changes = 0
        for t, kind, d in evs:
            if kind == "plug":
                prev = None
                continue
            if kind != "pwm":
                continue
            on, cur = bool(d.get("on", True)), float(d.get("current_a", 0.0))
            if prev is not None:
                pt, pon, pcur = prev
                if on and pon and abs(cur - pcur) > EPS_A:
                    changes += 1
                    gap = t - pt
                    min_gap = gap if min_gap is None else min(min_gap, gap)
                    if gap < pwm_spacing_ms:
                        viol.append({"t_ms": t, "what": f"PWM {pcur:g} -> {cur:g} A only {gap} ms after "
                                                        f"the previous change (>= {pwm_spacing_ms} ms)"})
                    else:
                        ok_n += 1
                elif on and not pon:
                    gap = t - pt
                    min_off = gap if min_off is None else min(min_off, gap)
                    if gap < x1_min_off_ms:
                        viol.append({"t_ms": t, "what": f"PWM back on {gap} ms after it went off "
                                                        f"(t_step_X1 >= {x1_min_off_ms} ms)"})
            prev = (t, on, cur)
        viol.sort(key=lambda e: e["t_ms"])
        passed = not viol
        n_sp = len(bad_sp)
        if passed:
            summary = (f"{k}: no set-point in (0, {min_a:g}) A; {changes} PWM change(s), closest "
                       f"{'-' if min_gap is None else f'{min_gap / 1000:g} s'} apart (>= {pwm_spacing_ms / 1000:g} s)")
        else:
            summary = f"{k}: FAIL at {_fmt_t(viol[0]['t_ms'])}: {viol[0]['what']}" + \
                (f" ({n_sp} set-point samples below {min_a:g} A)" if n_sp else "") + \
                (f"; closest PWM changes {min_gap} ms apart" if min_gap is not None and min_gap < pwm_spacing_ms else "")
        metrics = {"setpoints_below_min": n_sp, "pwm_changes": changes, "min_pwm_gap_ms": min_gap,
                   "min_off_ms": min_off, "pwm_spacing_ms": pwm_spacing_ms, "min_a": min_a,
                   "deadline_ms": pwm_spacing_ms, "measured_ms": min_gap,
                   "violations": len(viol)}
        out.append(Verdict("signalling", k, passed, summary, metrics, viol[:MAX_EVIDENCE],
                           [(v["t_ms"], "signalling violation") for v in viol[:MAX_EVIDENCE]],
                           "IEC 61851-1 Annex A: min signalable 6 A (set-points 0 or >= 6 A); PWM updates "
                           "at most every 5 s (EVerest); t_step_X1 3 s"))
    return out


# ================================================================== service KPIs / fairness
def jain_index(xs) -> float | None:
    """Jain's fairness index (sum x)^2 / (n sum x^2): 1 = equal, 1/n = one takes all.  None when
    empty; 1.0 when every x is 0."""
    xs = [float(x) for x in xs]
    if not xs:
        return None
    sq = sum(x * x for x in xs)
    return 1.0 if sq == 0 else sum(xs) ** 2 / (len(xs) * sq)


def _sessions(rec) -> list:
    """Sessions as dicts (vehicle, charger, arrive_ms, left_ms, need_kwh, delivered_kwh or None),
    from ``rec.sessions``, else from the firmware's plug/unplug events, else from the sampled
    charger status (plugged = not "disconnected")."""
    end = _end_ms(rec)
    out = []
    if rec.sessions:
        for s in rec.sessions:
            a = s.get("arrive_ms", None)
            a = a if a is not None else int(round(float(s.get("arrive_s", 0)) * 1000))
            left = s.get("left_ms", None)
            if left is None and s.get("left_s") is not None:
                left = int(round(float(s["left_s"]) * 1000))
            out.append({"vehicle": s.get("vehicle", f"ev@{s.get('charger')}"), "charger": s.get("charger"),
                        "arrive_ms": a, "left_ms": left if left is not None else end,
                        "depart_ms": s.get("depart_ms"), "need_kwh": s.get("need_kwh"),
                        "delivered_kwh": s.get("delivered_kwh"), "met": s.get("met")})
        return out
    def unplanned(k, arrive_ms, left_ms):      # a session known only from plug-in to unplug
        return {"vehicle": f"ev@{k}@{arrive_ms}", "charger": k, "arrive_ms": arrive_ms, "left_ms": left_ms,
                "depart_ms": None, "need_kwh": None, "delivered_kwh": None, "met": None}

    for k in rec.charger_names:
        t_plug = None
        for t, kind, _ in _events(rec, k):
            if kind == "plug":
                t_plug = t
            elif kind == "unplug" and t_plug is not None:
                out.append(unplanned(k, t_plug, t))
                t_plug = None
        if t_plug is not None:
            out.append(unplanned(k, t_plug, end))
        if any(kind in ("plug", "unplug") for _, kind, _ in _events(rec, k)):
            continue
        # no plug events for this charger: plugged = status other than "disconnected" in the samples
        ser, t_plug = rec.chargers.get(k), None
        for j, t in enumerate(rec.t_ms if ser is not None else []):
            plugged = j < len(ser.status) and ser.status[j] not in ("disconnected", None, "")
            if plugged and t_plug is None:
                t_plug = t
            elif not plugged and t_plug is not None:
                out.append(unplanned(k, t_plug, t))
                t_plug = None
        if t_plug is not None:
            out.append(unplanned(k, t_plug, end))
    return out


def service_kpis(rec, *, active_a=1.0, window_min=15) -> dict:
    """Service-level KPIs of a run.

    * ``jain``: Jain index over sessions of delivered / requested energy (capped at 1) when every
      session states its need, else of the mean current per conductor while plugged
      (``jain_basis`` says which).
    * ``starvation_max_s``: the longest time an EV waited without charging while others charged:
      plugged, offered nothing by the controller (set-point None or < the charger's minimum), not
      suspended by the EV / faulted, and at least one other charger drawing >= ``active_a``.
    * ``cycles_per_hour_max``: the most ``contactor_close`` events of one session in any sliding
      hour; ``cycles_per_hour_mean``: all closes / all plugged hours.
    * energy delivered vs requested, ``share_met`` (sessions with a need that got it by departure).
    * ``peak_kw`` (root circuits, from the true currents x the site voltage) and ``peak_15min_kw``
      (highest average over consecutive ``window_min``-minute blocks from the start; the whole run
      when shorter).
    * ``capacity_utilisation``: energy delivered to EVs / energy the root limit left for EVs while
      at least one EV was plugged, i.e. the integral over those samples of
      sum_phase max(0, limit - margin - base) x V, where base = the root's true current minus the
      EVs' true currents (the capacity the controller could have handed out).
    """
    v = float((rec.params or {}).get("voltage_v", 230) or 230)
    dts = _sample_dt_ms(rec)
    t = rec.t_ms
    sess = _sessions(rec)
    roots = [c for c in rec.circuit_names if rec.parent.get(c) is None]
    rows = []
    for s in sess:
        k = s["charger"]
        ser = rec.chargers.get(k)
        nph = max(1, len(rec.phase_map.get(k, [0, 1, 2])))
        amp_s = plugged_s = 0.0
        energy_wh = 0.0
        waits, cur_wait = [], 0.0
        minimum = rec.min_current_a.get(k, 6.0)
        if ser is not None:
            for j, tt in enumerate(t):
                if not (s["arrive_ms"] <= tt < s["left_ms"]):
                    continue
                dt = dts[j] / 1000
                cs = [float(ser.current[i][j] or 0.0) for i in range(3)]
                plugged_s += dt
                amp_s += sum(cs) / nph * dt
                energy_wh += sum(cs) * v * dt / 3600
                sp = ser.sp[j]
                st = ser.status[j] if j < len(ser.status) else ""
                others = any(max(float(rec.chargers[o].current[i][j] or 0.0) for i in range(3)) >= active_a
                             for o in rec.charger_names if o != k)
                waiting = ((sp is None or float(sp) < minimum - EPS_A) and max(cs) < active_a
                           and st not in ("ev_suspended", "fault", "unavailable", "disconnected") and others)
                if waiting:
                    cur_wait += dt
                elif cur_wait:
                    waits.append(cur_wait)
                    cur_wait = 0.0
            if cur_wait:
                waits.append(cur_wait)
        closes = [tt for tt, kind, _ in _events(rec, k) if kind == "contactor_close"
                  and s["arrive_ms"] <= tt < s["left_ms"]]
        hour_max, lo = 0, 0
        for n, tt in enumerate(closes):
            while closes[lo] <= tt - 3_600_000:
                lo += 1
            hour_max = max(hour_max, n - lo + 1)
        delivered = s["delivered_kwh"] if s["delivered_kwh"] is not None else energy_wh / 1000
        need = s["need_kwh"]
        ratio = None if not need else min(1.0, delivered / need)
        met = s["met"] if s["met"] is not None else (None if need is None else delivered + 1e-6 >= need)
        rows.append({"vehicle": s["vehicle"], "charger": k, "arrive_s": s["arrive_ms"] / 1000,
                     "left_s": s["left_ms"] / 1000, "need_kwh": need, "delivered_kwh": _r(delivered),
                     "ratio": _r(ratio), "met": met,
                     "mean_current_a": _r(amp_s / plugged_s if plugged_s else 0.0),
                     "longest_wait_s": _r(max(waits, default=0.0)), "contactor_closes": len(closes),
                     "cycles_per_hour_max": hour_max,
                     "plugged_h": _r((s["left_ms"] - s["arrive_ms"]) / 3_600_000, 4)})
    if rows and all(r["need_kwh"] for r in rows):
        basis, xs = "energy delivered / requested", [r["ratio"] for r in rows]
    else:
        basis, xs = "mean current while plugged", [r["mean_current_a"] for r in rows]
    # peak demand and capacity
    kw, avail_kwh, ev_kwh = [], 0.0, 0.0
    for j in range(len(t)):
        dt_h = dts[j] / 3_600_000
        kw.append(sum(rec.circuit_current[c][p][j] for c in roots for p in range(3)) * v / 1000)
        plugged = any(s["arrive_ms"] <= t[j] < s["left_ms"] for s in sess)
        if not plugged:
            continue
        for c in roots:
            for p in range(3):
                evp = _circuit_ev_current(rec, c, p, j)
                base = rec.circuit_current[c][p][j] - evp
                avail_kwh += max(0.0, rec.limits_a[c][p] - rec.margin_a.get(c, 0.0) - base) * v / 1000 * dt_h
                ev_kwh += evp * v / 1000 * dt_h
    win = window_min * 60_000
    blocks, acc, acc_t, b_end = [], 0.0, 0.0, (t[0] + win) if t else 0
    for j in range(len(t)):
        if t[j] >= b_end:
            if acc_t >= win - 1:
                blocks.append(acc / acc_t)
            acc, acc_t = 0.0, 0.0
            while t[j] >= b_end:
                b_end += win
        acc += kw[j] * dts[j]
        acc_t += dts[j]
    if acc_t >= win - 1 or (not blocks and acc_t):
        blocks.append(acc / acc_t)
    with_need = [r for r in rows if r["need_kwh"]]
    delivered = sum(r["delivered_kwh"] or 0.0 for r in rows)
    requested = sum(r["need_kwh"] for r in with_need)
    waits = [(r["longest_wait_s"], r["vehicle"]) for r in rows]
    return {
        "sessions": len(rows), "jain": _r(jain_index(xs), 4), "jain_basis": basis,
        "starvation_max_s": _r(max(waits)[0]) if waits else 0.0,
        "starvation_vehicle": max(waits)[1] if waits and max(waits)[0] > 0 else None,
        "cycles_per_hour_max": max((r["cycles_per_hour_max"] for r in rows), default=0),
        "cycles_per_hour_mean": _r(sum(r["contactor_closes"] for r in rows)
                                   / max(1e-9, sum(r["plugged_h"] for r in rows)) if rows else 0.0),
        "energy_delivered_kwh": _r(delivered), "energy_requested_kwh": _r(requested),
        "delivered_vs_requested": _r(sum(min(r["delivered_kwh"], r["need_kwh"]) for r in with_need)
                                     / requested) if requested else None,
        "share_met": _r(sum(bool(r["met"]) for r in with_need) / len(with_need), 4) if with_need else None,
        "peak_kw": _r(max(kw, default=0.0)), "peak_15min_kw": _r(max(blocks, default=0.0)),
        "ev_energy_kwh": _r(ev_kwh), "capacity_available_kwh": _r(avail_kwh),
        "capacity_utilisation": _r(ev_kwh / avail_kwh, 4) if avail_kwh > 0 else None,
        "per_session": rows,
    }


def fairness(rec, jain_min=0.8, starvation_max_s=None, cycles_per_hour_max=None) -> list:
    """Fairness verdicts from :func:`service_kpis`: Jain index >= ``jain_min`` (always); the
    longest starvation <= ``starvation_max_s`` and the contactor cycles per EV per sliding hour
    <= ``cycles_per_hour_max`` (each only when given)."""
    k = service_kpis(rec)
    rows = k["per_session"]
    out = []
    j = k["jain"]
    ev = [{"t_ms": int(r["arrive_s"] * 1000), "what": f"{r['vehicle']} on {r['charger']}: "
           + (f"{r['delivered_kwh']} of {r['need_kwh']} kWh" if r["need_kwh"] else
              f"mean {r['mean_current_a']} A while plugged") + f", longest wait {r['longest_wait_s']} s"}
          for r in rows][:MAX_EVIDENCE]
    if j is None:
        out.append(Verdict("fairness", "site", True, "site: no sessions, fairness not judged",
                           {"jain": None, "sessions": 0}, [], [], "Jain index over sessions"))
    else:
        passed = j >= jain_min - 1e-9
        summary = (f"site: Jain index {j:.3f} over {k['sessions']} sessions ({k['jain_basis']}), "
                   f"{'>=' if passed else '<'} {jain_min:g}; longest starvation {k['starvation_max_s']:g} s")
        if not passed:
            summary = "FAIL " + summary
        out.append(Verdict("fairness", "site", passed, summary,
                           {"jain": j, "jain_min": jain_min, "sessions": k["sessions"],
                            "starvation_max_s": k["starvation_max_s"],
                            "cycles_per_hour_max": k["cycles_per_hour_max"]}, ev, [],
                           f"Jain fairness index over sessions >= {jain_min:g}"))
    if starvation_max_s is not None:
        worst = max(rows, key=lambda r: r["longest_wait_s"] or 0, default=None)
        w = k["starvation_max_s"] or 0.0
        passed = w <= starvation_max_s + 1e-9
        out.append(Verdict("fairness", "site", passed,
                           (f"site: longest wait without charging while others charged {w:g} s "
                            f"({worst['vehicle'] if worst and w else '-'}), "
                            f"{'<=' if passed else '>'} {starvation_max_s:g} s"),
                           {"starvation_max_s": w, "limit_s": starvation_max_s},
                           [e for e in ev if worst and worst["vehicle"] in e["what"]], [],
                           f"no EV waits more than {starvation_max_s:g} s while others charge"))
    if cycles_per_hour_max is not None:
        c = k["cycles_per_hour_max"]
        passed = c <= cycles_per_hour_max
        out.append(Verdict("service", "site", passed,
                           f"site: at most {c} contactor closes per EV in any hour "
                           f"({'<=' if passed else '>'} {cycles_per_hour_max:g}); mean "
                           f"{k['cycles_per_hour_mean']:g}/h",
                           {"cycles_per_hour_max": c, "cycles_per_hour_mean": k["cycles_per_hour_mean"],
                            "limit": cycles_per_hour_max}, [], [],
                           f"contactor cycles per EV per hour <= {cycles_per_hour_max:g}"))
    return out


# ------------------------------------------------------------------------------------ instruments
def instrument_crosscheck(rec, charger=None, *, tolerance_a=1.0, tolerance_pct=5.0, min_samples=3) -> list:
    """A charger's own reported current against the instruments' measurement (issue 6).

    Needs a recording whose ground truth is ``instruments`` (``rec.ground_truth``): then
    ``rec.chargers[k].current`` holds the measured currents and ``rec.reported[k]`` what the charger
    said about itself in the same cycle.  A sample disagrees when
    ``|reported - measured| > tolerance_a + tolerance_pct % of measured`` on a conductor an
    instrument measures; the charger fails when ``min_samples`` samples in a row disagree (one
    sample can straddle a ramp: the charger's register and the instrument are read a few ms
    apart).  Conductors with no instrument (``rec.measured_by``) and samples with no report are
    skipped.  One verdict per charger with instruments.
    """
    if rec.ground_truth != "instruments":
        raise ValueError("instrument_crosscheck needs a recording with instruments as ground truth "
                         f"(this one: {rec.ground_truth!r})")
    names = [charger] if charger else [k for k in rec.charger_names if k in rec.measured_by]
    out = []
    for k in names:
        srcs = rec.measured_by.get(k, [None, None, None])
        s, said = rec.chargers[k], rec.reported.get(k)
        run, worst, worst_j, worst_i, first_fail, checked = 0, 0.0, None, None, None, 0
        evidence = []
        for j, t in enumerate(rec.t_ms):
            bad_here = False
            for i in range(3):
                if srcs[i] is None or said is None or j >= len(said[i]) or said[i][j] is None:
                    continue
                checked += 1
                meas, rep = float(s.current[i][j]), float(said[i][j])
                diff = abs(rep - meas)
                allowed = tolerance_a + tolerance_pct / 100.0 * abs(meas)
                if diff > allowed + EPS_A:
                    bad_here = True
                    if diff > worst:
                        worst, worst_j, worst_i = diff, j, i
                    if len(evidence) < MAX_EVIDENCE:
                        evidence.append({"t_ms": t, "what": f"conductor {i + 1}: reports {rep:.2f} A, "
                                         f"{srcs[i]} measures {meas:.2f} A (off by {diff:.2f} A, "
                                         f"allowed {allowed:.2f} A)"})
            run = run + 1 if bad_here else 0
            if run >= min_samples and first_fail is None:
                first_fail = rec.t_ms[j - min_samples + 1]
        passed = first_fail is None
        if checked == 0:
            summary = f"{k}: no sample with both a report and a measurement"
            passed = False
        elif passed:
            summary = (f"{k}: self-reported current within {tolerance_a:g} A + {tolerance_pct:g} % of "
                       f"the instruments on {checked} conductor samples (largest single-sample difference {worst:.2f} A)")
        else:
            summary = (f"{k}: self-reported current disagrees with the instruments from "
                       f"{_fmt_t(first_fail)} (worst {worst:.2f} A on conductor {worst_i + 1} at "
                       f"{_fmt_t(rec.t_ms[worst_j])})")
        out.append(Verdict("instrument_crosscheck", k, passed, summary,
                           {"worst_diff_a": _r(worst), "samples_checked": checked,
                            "first_disagreement_ms": first_fail, "sources": srcs},
                           evidence if not passed else evidence[:3],
                           [(first_fail, "disagrees")] if first_fail is not None else [],
                           "charger-reported current matches the measuring instruments"))
    return out
