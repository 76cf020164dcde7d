"""Run a scenario: plant + site controller + trace + summary, in fast or wire mode.

fast: virtual clock, in-memory links through each product's register map, as fast as the CPU allows,
deterministic per seed. wire: the plant's devices are served over real Modbus TCP/RTU on loopback and
the controller talks to them through sockets in (optionally sped-up) real time.

Both modes write ``trace.csv`` (one row per sample) and ``summary.json`` (KPIs) to ``out_dir``; an
interrupted run (Ctrl-C) still closes the trace and writes the summary of what ran.
"""
from __future__ import annotations

import asyncio
import time
from math import copysign as _copysign
from dataclasses import dataclass, field
from pathlib import Path

from ..core import Site
from ..firmware_sim.evse import _KNOBS_GEN, Evse
from ..firmware_sim.profiles.driver import driver_for
from .clock import VirtualClock, WallClock
from .controller import Endpoint, SiteController
from .links import FastLink
from .plant import Plant
from .trace import TraceWriter, write_json

RESTART_MS = 5000   # how long a restarted controller is silent
_NO_PWM = object()  # a charger model without applied_current_a (its trace field is empty)


def _fmt_key(x):
    """A trace value as a cache key that equals another only when both print the same (unlike the
    value itself: 0.0 == -0.0, 6 == 6.0, 1 == True). Floats are their own key except the zeros
    (_ZERO_KEY: inline in Run.record, the common case)."""
    return (x.__class__, repr(x))


_ZERO_KEY = {1.0: ("zero", "+"), -1.0: ("zero", "-")}   # by math.copysign(1.0, zero)


@dataclass
class Kpis:
    """Service and limit KPIs accumulated over a run."""

    site: Site
    limits: dict = field(default_factory=dict)
    peak_a: dict = field(default_factory=dict)
    overshoot_as: dict = field(default_factory=dict)
    time_over_s: dict = field(default_factory=dict)
    max_over_a: dict = field(default_factory=dict)
    energy_kwh: float = 0.0
    peak_kw: float = 0.0
    samples: int = 0

    def __post_init__(self):
        for name, c in zip(self.site.circuit_names, self.site.circuits):
            self.limits[name] = [v / 1000 for v in c.limit_ma]
            self.peak_a[name] = 0.0
            self.overshoot_as[name] = 0.0
            self.time_over_s[name] = 0.0
            self.max_over_a[name] = 0.0

    def update(self, dt_s: float, truth: dict, voltage_v: float):
        self.samples += 1
        limits, peak_a = self.limits, self.peak_a
        for name, cur in truth.items():
            lim = limits[name]
            # max(self.peak_a[name], max(cur)) and max(c - l ...) spelled out (four circuits every
            # second): the first of equal values stays, as max keeps it (0.0 / -0.0 print apart)
            a, b, c = cur
            m = a
            if b > m:
                m = b
            if c > m:
                m = c
            if m > peak_a[name]:
                peak_a[name] = m
            la, lb, lc = lim
            over = a - la
            if b - lb > over:
                over = b - lb
            if c - lc > over:
                over = c - lc
            if over > 1e-6:
                self.overshoot_as[name] += sum(max(0.0, c - l) for c, l in zip(cur, lim)) * dt_s
                self.time_over_s[name] += dt_s
                self.max_over_a[name] = max(self.max_over_a[name], over)
        root = self.site.circuit_names[0]
        kw = sum(truth[root]) * voltage_v / 1000
        self.peak_kw = max(self.peak_kw, kw)
        self.energy_kwh += kw * dt_s / 3600


def _session_kpis(plant: Plant) -> dict:
    sessions = []
    for s in plant.sessions:
        met = None
        if s.need_kwh is not None:
            met = s.delivered_kwh + 1e-6 >= s.need_kwh
        sessions.append({"vehicle": s.vehicle, "charger": s.charger, "preset": s.preset,
                         "arrive_s": s.arrive_ms / 1000, "left_s": None if s.left_ms is None else s.left_ms / 1000,
                         "need_kwh": s.need_kwh, "delivered_kwh": round(s.delivered_kwh, 3), "met": met})
    with_need = [s for s in sessions if s["met"] is not None]
    return {"sessions": sessions, "energy_delivered_kwh": round(sum(s["delivered_kwh"] for s in sessions), 3),
            "energy_requested_kwh": round(sum(s["need_kwh"] or 0 for s in with_need), 3),
            "share_met": (sum(s["met"] for s in with_need) / len(with_need)) if with_need else None}


class Run:
    """Shared set-up of both modes."""

    def __init__(self, scenario, out_dir, *, seed=None, duration_ms=None, backend="c", sample_ms=None,
                 progress=None, recording=None, allocator_factory=None, caches=False):
        if seed is not None:
            scenario = scenario.model_copy(update={"seed": int(seed)})
        self.scenario = scenario
        self.site = Site.from_dict(scenario.site)
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.duration_ms = int(duration_ms if duration_ms is not None else scenario.duration_ms)
        self.cycle_ms = self.site.cycle_ms
        self.sample_ms = int(sample_ms or self.cycle_ms)
        self.backend = backend
        self.progress = progress
        self.recording = recording              # a rig.recording.Recording to fill, or None
        self.allocator_factory = allocator_factory  # the DUT's decision maker (default: the core)
        self.caches = bool(caches)   # fast-mode caches (images, drivers); results are identical
        self.plant = Plant(scenario, self.site, caches=self.caches)
        self.kpis = Kpis(self.site)
        names = self.site.charger_names
        self.trace = TraceWriter(self.out_dir / "trace.csv", self.site.circuit_names, names)
        from .energy.hooks import attach as _attach_energy   # energy block: tariffs, caps, battery
        self.energy = _attach_energy(self)
        self._trace_chargers = [(n, self.plant.chargers[n]) for n in names]
        self._trace_parts = [None] * (len(self.site.circuit_names) + len(names))   # (key, text) per part

    @property
    def _trace_chargers_ed(self):
        """(name, charger, its Evse's __dict__ or None) per trace charger: the EVSE's state is
        known unchanged by its change counter in fast mode (caches) with a real Evse only."""
        src = self._trace_chargers
        memo = self.__dict__.get("_ed_memo")
        if memo is None or memo[0] is not src:
            memo = self._ed_memo = (src, [(n, cp, cp.evse.__dict__ if self.caches and type(getattr(cp, "evse", None)) is Evse
                                           else None) for n, cp in src])
        return memo[1]

    def endpoints(self, links: dict) -> list:
        eps = []
        for name, dev in self.plant.devices.items():
            drv = driver_for(dev.profile, dev.unit, memo=self.caches)
            link, loopback = links[name]
            eps.append(Endpoint(name, dev.kind, drv, link, dev.unit, loopback))
        return eps

    def record(self, t_ms: int, res, dt_s: float, *, truth=None, chargers=None):
        """``truth`` / ``chargers``: measured ground truth (instruments) for the KPIs and the
        recording instead of the models' (the trace keeps the models' currents)."""
        plant = self.plant
        self.kpis.update(dt_s, truth if truth is not None else plant.truth, self.site.params.voltage_v)
        if self.energy is not None:
            self.energy.sample(t_ms, plant, dt_s)
        if self.recording is not None:
            self.recording.sample(t_ms, truth if truth is not None else plant.truth,
                                  chargers if chargers is not None else plant.chargers, res)
        # The trace row as text, per circuit and per charger a part that is formatted again only when
        # its values changed (a charger's part stays the same in ~99% of the office run's cycles):
        # the key of a part is its raw values, where equal values could print differently
        # (0.0 / -0.0, 6 / 6.0, True / 1) a key that tells them apart (zk: a float zero by its sign,
        # _fmt_key: anything but a float); parts joined by "," are csv.writer's row.
        tr, parts_cache = self.trace, self._trace_parts
        zk, cs = _ZERO_KEY, _copysign
        parts = [str(t_ms / 1000)]      # what csv.writer writes for a float (never an empty field)
        append = parts.append
        truth, limits = plant.truth, self.kpis.limits
        i = 0
        for name in self.site.circuit_names:
            a, b, c = truth[name]
            key = ((a or zk[cs(1.0, a)]) if a.__class__ is float else _fmt_key(a),
                   (b or zk[cs(1.0, b)]) if b.__class__ is float else _fmt_key(b),
                   (c or zk[cs(1.0, c)]) if c.__class__ is float else _fmt_key(c))
            hit = parts_cache[i]
            if hit is None or hit[0] != key:
                hit = parts_cache[i] = (key, tr.fields([round(a, 3), round(b, 3), round(c, 3), *limits[name]]))
            append(hit[1])
            i += 1
        by_name = res.chargers if res is not None else None
        gen = _KNOBS_GEN[0]
        for name, cp, ed in self._trace_chargers_ed:
            r = by_name[name] if by_name is not None else None
            sp, why = (r.current_a, r.reason) if r else ("", "")
            hit = parts_cache[i]
            if ed is not None and hit is not None and hit[2] == ed["_rev"] and hit[3] == gen:
                # fast mode, an Evse: the PWM current, the true currents and the status are
                # functions of its counted state and the knobs (Evse.read_token), unchanged
                # since the part was formatted; only the controller's two fields are checked
                key = hit[0]
                if key[0] == ((sp or zk[cs(1.0, sp)]) if sp.__class__ is float else _fmt_key(sp)) and \
                        key[6] == (why if why.__class__ is str else _fmt_key(why)):
                    append(hit[1])
                    i += 1
                    continue
            pwm = getattr(cp.evse, "applied_current_a", _NO_PWM)
            a, b, c = cp.currents_a()
            st = cp.status
            key = ((sp or zk[cs(1.0, sp)]) if sp.__class__ is float else _fmt_key(sp),
                   (pwm or zk[cs(1.0, pwm)]) if pwm.__class__ is float else _fmt_key(pwm),
                   (a or zk[cs(1.0, a)]) if a.__class__ is float else _fmt_key(a),
                   (b or zk[cs(1.0, b)]) if b.__class__ is float else _fmt_key(b),
                   (c or zk[cs(1.0, c)]) if c.__class__ is float else _fmt_key(c),
                   st if st.__class__ is str else _fmt_key(st), why if why.__class__ is str else _fmt_key(why))
            if hit is None or hit[0] != key:
                hit = (key, tr.fields([sp, round(pwm, 3) if pwm is not _NO_PWM else "",
                                       round(a, 3), round(b, 3), round(c, 3), st, why]))
            if ed is not None:
                # (the counter read after the values: reading them assigns nothing counted)
                hit = (hit[0], hit[1], ed["_rev"], gen)
            parts_cache[i] = hit
            append(hit[1])
            i += 1
        tr.line(",".join(parts))

    def summary(self, controller: SiteController, mode: str, wall_s: float, interrupted: bool) -> dict:
        self.plant.finish()
        k = self.kpis
        sim_s = self.plant.now_ms / 1000
        out = {
            "scenario": self.scenario.name, "mode": mode, "seed": self.scenario.seed,
            "simulated_s": sim_s, "wall_s": round(wall_s, 3),
            "speed_x_realtime": round(sim_s / wall_s, 1) if wall_s > 0 else None,
            "interrupted": interrupted,
            "circuits": {n: {"limit_a": k.limits[n], "peak_a": round(k.peak_a[n], 3),
                             "max_over_a": round(k.max_over_a[n], 3),
                             "overshoot_a_s": round(k.overshoot_as[n], 3),
                             "time_over_s": round(k.time_over_s[n], 3)} for n in k.limits},
            "site_energy_kwh": round(k.energy_kwh, 3), "peak_kw": round(k.peak_kw, 3),
            "controller": controller.stats.summary(self.cycle_ms),
            "failed_transactions": len(controller.failures),
            # the record behind the count: when, which device, read or write, what went wrong
            "failures": [{"t_s": f.t_ms / 1000, "device": f.device, "op": f.op, "error": f.error}
                         for f in controller.failures[:500]],
            "events": [{"t_s": t / 1000, "event": e} for t, e in self.plant.events_log[:500]],
        }
        out.update(_session_kpis(self.plant))
        if self.energy is not None:
            out["energy"] = self.energy.summary()
        return out


async def run_fast_async(scenario, out_dir, *, instruments: bool = True, **kw) -> dict:
    """``caches=False`` turns the fast-mode caches off (same results, slower: for equivalence tests).
    ``instruments``: a scenario's emulated instruments act and measure as in wire mode (read in
    process, rig.visa.bench.FastBench) and are the ground truth; False: the models are."""
    kw.setdefault("caches", True)
    run = Run(scenario, out_dir, **kw)
    from .visa.bench import FastBench
    bench = FastBench.for_run(run) if instruments else None
    clock = VirtualClock()
    links = {name: (FastLink(name, dev.image, clock, run.plant.comm), True)
             for name, dev in run.plant.devices.items()}
    ctrl = SiteController(run.site, run.endpoints(links), clock, session_info=run.plant.session_info,
                          backend=run.backend, allocator_factory=run.allocator_factory,
                          energy=run.energy.manager if run.energy is not None else None)
    wall0 = time.perf_counter()
    interrupted = False
    silent_until = -1
    restarts_seen = 0
    try:
        t = 0
        while t < run.duration_ms:
            clock.advance_to(t)
            run.plant.advance(t)
            if len(run.plant.controller_restarts) > restarts_seen:
                restarts_seen = len(run.plant.controller_restarts)
                ctrl.restart()
                silent_until = t + RESTART_MS
            res = ctrl.last_result
            if t % run.cycle_ms == 0 and t >= silent_until:
                res = await ctrl.cycle(t)
            if bench is not None:
                bench.sample(run, ctrl, t, res, run.sample_ms / 1000)
            else:
                run.record(t, res, run.sample_ms / 1000)
            if run.progress is not None:
                run.progress(t, run.duration_ms)
            t += run.sample_ms
    except KeyboardInterrupt:
        interrupted = True
    finally:
        run.trace.close()
        summary = run.summary(ctrl, "fast", time.perf_counter() - wall0, interrupted)
        summary["ground_truth"] = "instruments" if bench is not None else "models"
        if run.recording is not None:
            run.recording.finish(run.plant, ctrl)
        write_json(run.out_dir / "summary.json", summary)
    return summary


def run_fast(scenario, out_dir, **kw) -> dict:
    return asyncio.run(run_fast_async(scenario, out_dir, **kw))
