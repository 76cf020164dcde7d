"""Fault-shutdown cases (FS-*) against an external charger, with an EV-side simulator.

A rig that polls a charger over Modbus can neither act as the EV nor time 100 ms.  A lab puts an
EV-side simulator between the charger and the EV (Keysight SL1040A Scienlab, comemso EPTS,
Vector / dSPACE EV simulators): it sets the pilot state, the diode, residual current and the draw,
and time-stamps every response of the charger itself (contactor, PWM duty, state F) with 1 ms
resolution.  This module is the rig's side of that bench:

* the rig is the charger's **controller** over Modbus (failsafe, set-points, heartbeats: the same
  :class:`~.charger_probe._Probe` as COM-010..012) and the **EV** through the simulator
  (:class:`~dlbrig.rig.visa.drivers.EvSimulatorDriver`, pyvisa);
* each FS case has a procedure (:data:`PROCEDURES`): stimuli and holds in charger time, the
  options of the simulator it needs (``*OPT?``); a case the instrument cannot run is skipped and
  says which option is missing;
* after the procedure the simulator's event log is read back over SCPI and turned into a
  :class:`~dlbrig.rig.recording.Recording` (:func:`recording_from_log`): the charger's contactor,
  PWM and pilot events at the instrument's timestamps, the EV-side stimuli as timeline steps, and
  samples of what the simulator drew; the case's own checks (the same
  :func:`~dlbrig.rig.compliance.fault_shutdown` / :func:`~dlbrig.rig.compliance.signalling` as the
  built-in mode) judge it.  The charger's registers and fault codes are never used for a verdict.

What the instrument cannot see is inferred from what it can: the charger's internal fault is the
pilot going to F (-12 V); its name is the stimulus active at that instant (diode fault, residual
current, overdraw, CP short).  A latched fault is taken as cleared when the EV is unplugged (A).

Safety (DESIGN.md): nothing is written to a non-loopback charger or instrument unless armed (the
CLI refuses first; the driver refuses too); on every exit path (normal, error, Ctrl-C) the
simulator returns to CP A / diode present / no injection / load off and the charger gets its safe
current.
"""
from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

from .. import compliance as C
from .charger_probe import ChargerTarget, _Probe

SETTLE_S = 1.0        # charger time in A before a case starts recording
MARGIN_S = 1.5        # charger time after a deadline (from the stimulus' logged instant) before the log is read
FEED_S = 2.0          # set-point rewrite (watchdog feed) period while holding, charger time
POLL_S = 0.1          # simulator poll period while waiting for a condition, charger time
CHARGE_A = 16.0       # the current offered while the EV charges
STIMULI = ("CP", "DIODE", "RCDDC", "RCDAC", "LOAD", "LMODE")   # the simulator's own events
SAMPLE_MS = 100       # sample grid of the synthesized recording (events are exact on top)
CHARGER = "charger"   # the charger's name inside the synthesized recording


class NotRunnable(Exception):
    """The given EV simulator lacks an option the case's procedure needs."""


@dataclass
class Procedure:
    needs: tuple                      # EV simulator options (``*OPT?``)
    steps: object                     # async (bench) -> None
    what: str                         # one line for the report


@dataclass
class _Bench:
    """The rig's two hands on the DUT: Modbus (controller) and the EV simulator (EV)."""

    target: ChargerTarget
    resource: str
    armed: bool
    probe: _Probe = None
    drv: object = None
    options: tuple = ()
    sp: float | None = None
    log: list = field(default_factory=list)
    start_ms: int = 0
    initial: dict = field(default_factory=dict)

    async def sim(self, fn, *a, **kw):
        return await asyncio.to_thread(fn, *a, **kw)

    def note(self, what: str):
        self.probe.note(what)

    async def open(self):
        from ..visa.drivers import open_driver
        self.probe = _Probe(self.target)
        self.drv = await self.sim(open_driver, self.resource, armed=self.armed, expect_kind="ev_simulator",
                                  timeout_ms=3000)
        self.options = await self.sim(self.drv.options)
        await self.probe.master.connect()

    async def setpoint(self, amps: float):
        self.sp = amps
        await self.probe.write(self.probe.drv.setpoint_writes(amps))

    async def hold(self, charger_s: float, until=None):
        """Wait ``charger_s`` (charger time), rewriting the set-point every FEED_S (the charger's
        watchdog stays fed, the PWM does not change); with ``until`` (a predicate on the
        simulator's measurements) return as soon as it holds.  True when ``until`` held."""
        end = self.probe.now_ms() + charger_s * 1000
        next_feed = self.probe.now_ms() + FEED_S * 1000
        while True:
            if until is not None and until(await self.sim(self.drv.measure)):
                return True
            now = self.probe.now_ms()
            if now >= end:
                return False
            await self.probe.sleep(min(POLL_S if until is not None else FEED_S, (end - now) / 1000))
            if self.sp is not None and self.probe.now_ms() >= next_feed:
                next_feed = self.probe.now_ms() + FEED_S * 1000
                with contextlib.suppress(Exception):
                    await self.setpoint(self.sp)
                    await self.probe.feed()

    async def drain(self):
        self.log += await self.sim(self.drv.events)

    async def hold_until(self, t_ms: int):
        """Hold (watchdog fed) until the simulator's clock reaches ``t_ms``."""
        while True:
            now = await self.sim(self.drv.clock_ms)
            if now >= t_ms:
                return
            await self.hold(min(FEED_S, max(POLL_S, (t_ms - now) / 1000)))

    async def stimulate(self, fn_name: str, *args, after_s: float, **kw):
        """Apply a stimulus through the simulator, find in its log the instant it reached the
        charger, and hold until ``after_s`` (charger time) past that instant: the verdict window
        does not depend on how late the command got there."""
        t_cmd = await self.sim(self.drv.clock_ms)
        await self.sim(getattr(self.drv, fn_name), *args, **kw)
        t_stim = None
        for _ in range(int(3.0 / POLL_S)):              # bounded: 3 s of charger time
            await self.drain()
            t_stim = next((t for t, k, _ in reversed(self.log) if k in STIMULI and t >= t_cmd), None)
            if t_stim is not None:
                break
            await self.probe.sleep(POLL_S)
        if t_stim is None:
            self.note(f"the stimulus ({fn_name} {args or ''}{kw or ''}) is not in the simulator's log")
        await self.hold_until((t_stim if t_stim is not None else t_cmd) + int(after_s * 1000))

    async def safe(self):
        """Simulator safe (A, diode, no injection, load off) and the charger at its safe current.
        Bounded; never raises."""
        from ..wire import bounded
        ok = await bounded(asyncio.to_thread(self.drv.safe_off), 5.0) if self.drv is not None else None
        if self.probe is not None:
            try:
                await bounded(self.probe.write(self.probe.drv.failsafe_writes(self.target.safe_a,
                                                                             self.target.timeout_s)
                                               + self.probe.drv.setpoint_writes(self.target.safe_a)), 5.0)
            except Exception:
                pass
        return ok


# ---------------------------------------------------------------------------- procedures
async def _charge(b: _Bench, *, diode=True):
    """EV plugged (B), asking (C), the charger offering CHARGE_A: charging (the contactor closes)."""
    d = b.drv
    amps = min(CHARGE_A, b.probe.drv.max_current_a)
    await b.setpoint(amps)
    if "LOAD" in b.options:
        await b.sim(d.set_load, amps, mode="FOLL")
    if not diode:
        await b.sim(d.set_diode, False)
    await b.sim(d.set_cp, "B")
    b.note("EV simulator: CP B (plugged)")
    await b.hold(1.0)
    await b.sim(d.set_cp, "C")
    b.note("EV simulator: CP C (asking for current)")
    closed = await b.hold(3.0 + MARGIN_S, until=lambda m: m["contactor"])
    b.note("contactor closed" if closed else "contactor not closed within 3 s + margin")
    return closed


def _stimulus(fn_name, *args, hold_s, what, **kw):
    async def steps(b: _Bench):
        await _charge(b)
        b.note(f"EV simulator: {what}")
        await b.stimulate(fn_name, *args, after_s=hold_s, **kw)
    return steps


async def _fs003(b: _Bench):
    await _charge(b, diode=False)
    b.note("EV simulator: diode missing during B and C")
    await b.hold(MARGIN_S)


async def _fs008(b: _Bench):
    await _charge(b)
    amps = min(CHARGE_A, b.probe.drv.max_current_a)
    over = round(amps * 1.25, 1)      # above (I_pwm + 0.5 A) x 1.10
    b.note(f"EV simulator: draws {over:g} A whatever the PWM ({amps:g} A) says")
    await b.stimulate("set_load", over, mode="FIX", after_s=7.0 + 2 * MARGIN_S)


async def _fs009(b: _Bench):
    await _charge(b)
    await b.hold(MARGIN_S)


async def _fs011(b: _Bench):
    await _charge(b)
    t0 = await b.sim(b.drv.clock_ms)
    for amps, at_s in ((10.0, 0.0), (13.0, 1.0), (8.0, 2.0), (12.0, 6.0)):
        await b.hold_until(t0 + int(at_s * 1000))
        await b.setpoint(amps)
        b.note(f"controller writes {amps:g} A")
    await b.hold_until(t0 + 16_000)


async def _fs012(b: _Bench):
    await _charge(b)
    t0 = await b.sim(b.drv.clock_ms)
    await b.setpoint(0.0)
    b.note("controller pauses (0 A: PWM off); the EV simulator stays in C")
    await b.hold_until(t0 + int((6.0 + 2 * MARGIN_S) * 1000))


PROCEDURES = {
    "FS-001": Procedure(("CP", "LOG"), _stimulus("set_cp", "B", hold_s=MARGIN_S, what="CP C -> B"),
                        "charge, then the EV stops (C -> B)"),
    "FS-002": Procedure(("CP", "LOG"), _stimulus("set_cp", "A", hold_s=MARGIN_S, what="CP -> A (unplug)"),
                        "charge, then the cable is pulled (-> A)"),
    "FS-003": Procedure(("CP", "DIODE", "LOG"), _fs003, "the EV asks for current with its diode missing"),
    "FS-004": Procedure(("CP", "LOG"), _stimulus("set_cp", "E", hold_s=MARGIN_S, what="CP-PE short (E)"),
                        "charge, then the CP is shorted (E)"),
    "FS-005": Procedure(("CP", "RCDDC", "LOG"), _stimulus("set_residual", dc_ma=6.0, hold_s=10.0 + MARGIN_S,
                                                          what="6 mA DC residual current"),
                        "charge, then 6 mA DC leaks"),
    "FS-006": Procedure(("CP", "RCDAC", "LOG"), _stimulus("set_residual", ac_ma=30.0, hold_s=0.3 + MARGIN_S,
                                                          what="30 mA AC residual current"),
                        "charge, then 30 mA AC leaks"),
    "FS-007": Procedure(("CP", "RCDAC", "LOG"), _stimulus("set_residual", ac_ma=150.0, hold_s=MARGIN_S,
                                                          what="150 mA AC residual current"),
                        "charge, then 150 mA AC leaks"),
    "FS-008": Procedure(("CP", "LOAD", "LOG"), _fs008, "charge, then the EV draws 25 % above the PWM"),
    "FS-009": Procedure(("CP", "LOG"), _fs009, "the EV asks for current (B -> C)"),
    "FS-010": Procedure(("CP", "RCDAC", "LOG"), _stimulus("set_residual", ac_ma=150.0, hold_s=0.3 + 2 * MARGIN_S,
                                                          what="150 mA AC residual current (a fault)"),
                        "charge, then a fault (150 mA AC): state F held"),
    "FS-011": Procedure(("CP", "LOG"), _fs011, "charge while the controller writes 10, 13, 8, 12 A 1-4 s apart"),
    "FS-012": Procedure(("CP", "LOG"), _fs012, "charge, the controller pauses, the EV stays in C"),
}


# ---------------------------------------------------------------------------- the recording
def _decoded(duty: float) -> float:
    from ...firmware_sim.ev import current_from_duty
    a = current_from_duty(duty) if duty < 100.0 else None
    return 0.0 if a is None else round(float(a), 2)     # the duty is measured to 0.001 %


def recording_from_log(log, end_ms: int, *, start_ms: int = 0, initial=None, max_a: float = 32.0,
                       name: str = CHARGER):
    """A :class:`~dlbrig.rig.recording.Recording` of one charger from an EV simulator's event log
    ``[(t_ms, kind, value)]`` (see module docstring), up to ``end_ms`` (the instrument's clock)."""
    from ...core import Site
    from ..recording import Recording

    site = Site.from_dict({"voltage_v": 230, "circuits": [{"name": "main", "limit_a": 1000}],
                           "chargers": [{"name": name, "circuit": "main", "min_a": 6, "max_a": max(6, max_a)}]})
    rec = Recording.for_site("ev-simulator", site)
    init = dict(initial or {})
    st = {"ev": "A", "diode": True, "dc": 0.0, "ac": 0.0, "load": 0.0, "mode": "FOLL",
          "closed": bool(init.get("contactor", False)), "duty": float(init.get("duty_pct") or 100.0), "f": False}
    evs, steps = [], []
    latched = False

    def composite():
        if st["f"]:
            return "F"
        if st["ev"] in ("A", "E"):
            return st["ev"]
        return st["ev"] + ("2" if st["duty"] < 100.0 else "1")

    cp = composite()
    samples = []              # (t, pwm_a, current_a)

    def current():
        if not st["closed"] or st["ev"] not in ("C", "D"):
            return 0.0
        return st["load"] if st["mode"] == "FIX" else min(st["load"], _decoded(st["duty"]))

    for t, kind, value in sorted(log, key=lambda e: e[0]):
        if kind == "CP":
            new = str(value).upper()
            if st["ev"] == "A" and new != "A":
                evs.append((t, "plug", {}))
            if new == "A" and st["ev"] != "A":
                if latched:
                    evs.append((t, "fault_cleared", {"name": "unplug"}))
                    latched = False
                evs.append((t, "unplug", {}))
                steps.append((t, f"unplug {name}"))
            st["ev"] = new
        elif kind == "DIODE":
            st["diode"] = bool(float(value))
            steps.append((t, f"ev {name} ok" if st["diode"] else f"ev {name} missing_diode"))
        elif kind in ("RCDDC", "RCDAC"):
            ma = float(value)
            key = "dc" if kind == "RCDDC" else "ac"
            st[key] = ma
            steps.append((t, f"ev {name} leakage {key} {ma:g}mA" if ma > 0 else f"ev {name} ok"))
        elif kind == "LOAD":
            st["load"] = float(value)
        elif kind == "LMODE":
            st["mode"] = str(value).upper()
        elif kind == "CONTACTOR":
            closed = bool(float(value))
            if closed != st["closed"]:
                evs.append((t, "contactor_close" if closed else "contactor_open", {"reason": "sensed"}))
            st["closed"] = closed
        elif kind == "PWM":
            st["duty"] = float(value)
            on = st["duty"] < 100.0
            evs.append((t, "pwm", {"on": on, "duty_pct": st["duty"], "current_a": _decoded(st["duty"])}))
        elif kind == "STATEF":
            f = bool(float(value))
            if f and not st["f"]:
                why = ("DIODE" if not st["diode"] else "RCD_DC" if st["dc"] >= 6.0 else
                       "RCD_AC" if st["ac"] > 0 else "CP_SHORT" if st["ev"] == "E" else
                       "OVERCURRENT" if st["mode"] == "FIX" and st["load"] > 0 else "F")
                evs.append((t, "fault", {"name": why, "sensed": "state F"}))
                latched = True
            st["f"] = f
        now = composite()
        if now != cp:
            evs.append((t, "cp_state", {"from": cp, "to": now}))
            cp = now
        samples.append((t, _decoded(st["duty"]), current()))

    # samples: every event instant (exact) and a SAMPLE_MS grid in between
    ts = sorted({start_ms + k * SAMPLE_MS for k in range(max(0, (end_ms - start_ms) // SAMPLE_MS) + 1)}
                | {t for t, _, _ in samples if start_ms <= t <= end_ms})
    s = rec.chargers[name]
    k, last = 0, (0.0, 0.0)
    init_pwm = _decoded(float(init.get("duty_pct") or 100.0))
    last = (init_pwm, 0.0)
    for t in ts:
        while k < len(samples) and samples[k][0] <= t:
            last = samples[k][1:]
            k += 1
        rec.t_ms.append(t)
        s.sp.append(None)
        s.pwm.append(last[0])
        for i in range(3):
            s.current[i].append(last[1])
        s.status.append("")
        s.reason.append("")
        for p in range(3):
            rec.circuit_current["main"][p].append(last[1])
    rec.evse_events[name] = evs
    rec.steps = steps
    rec.ground_truth = "instruments"
    return rec


# ---------------------------------------------------------------------------- running a case
def check_case(case) -> Procedure:
    try:
        return PROCEDURES[case.id]
    except KeyError:
        raise NotRunnable(f"{case.id} has no EV-simulator procedure") from None


async def run_case_external(case, target: ChargerTarget, resource: str, *, armed: bool = False):
    """Run one FS case against the charger at ``target`` with the EV simulator at ``resource``.
    Returns (verdicts, recording, evidence). Raises NotRunnable when the instrument lacks an option."""
    from ..visa.drivers import is_loopback_resource
    proc = check_case(case)
    b = _Bench(target, resource, armed or is_loopback_resource(resource))
    subject = f"{target.host}:{target.port}"
    try:
        await b.open()
        missing = [o for o in proc.needs if o not in b.options]
        if missing:
            raise NotRunnable(f"{case.id} ({proc.what}) needs EV-simulator option(s) {', '.join(missing)}; "
                              f"the instrument at {resource} has {', '.join(b.options) or 'none'}")
        await b.sim(b.drv.set_protection, current_a=min(b.probe.drv.max_current_a * 1.1, 80.0))
        await b.safe()
        await b.hold(SETTLE_S)
        await b.sim(b.drv.events)                 # what came before this case is not its evidence
        b.initial = await b.sim(b.drv.measure)
        b.start_ms = await b.sim(b.drv.clock_ms)
        # the rig's own notes on the simulator's time base (the evidence has one clock)
        b.probe.t0 = time.monotonic() - b.start_ms / 1000 / target.speed
        b.probe.evidence.clear()
        await b.probe.write(b.probe.drv.failsafe_writes(target.safe_a, target.timeout_s))
        b.note(f"{case.id}: {proc.what}")
        await proc.steps(b)
        await b.drain()
        end_ms = await b.sim(b.drv.clock_ms)
    finally:
        ok = await b.safe()
        if b.probe is not None:
            b.note("exit: EV simulator " + ("safe (CP A, no injection, load off)" if ok else "NOT confirmed safe")
                   + f"; charger at its safe current {target.safe_a:g} A")
            await b.probe.close()
        if b.drv is not None:
            b.drv.close()
    rec = recording_from_log(b.log, end_ms, start_ms=b.start_ms, initial=b.initial,
                             max_a=b.probe.drv.max_current_a)
    verdicts = case.checks(rec, case) if case.checks else []
    for v in verdicts:
        v.subject = subject
        v.evidence = list(v.evidence) + [{"t_ms": e["t_ms"], "what": e["what"]} for e in b.probe.evidence][:20]
        v.metrics["judged_from"] = f"EV simulator event log ({resource})"
    return verdicts, rec


def run_case_external_sync(case, target, resource, *, armed=False):
    return asyncio.run(run_case_external(case, target, resource, armed=armed))


async def with_ev_asking(resource: str, coro_fn, *, armed: bool = False, load_a: float = 32.0):
    """Run ``coro_fn()`` (a Modbus-only charger probe, COM-010..012) with the EV simulator at
    ``resource`` as an EV plugged in and asking for current (B, then C; drawing what the PWM
    allows up to ``load_a``); the simulator is left safe afterwards, whatever happens."""
    from ..visa.drivers import is_loopback_resource, open_driver
    from ..wire import bounded
    armed = armed or is_loopback_resource(resource)
    drv = await asyncio.to_thread(open_driver, resource, armed=armed, expect_kind="ev_simulator", timeout_ms=3000)
    try:
        await asyncio.to_thread(drv.set_protection, current_a=load_a)
        if "LOAD" in await asyncio.to_thread(drv.options):
            await asyncio.to_thread(drv.set_load, load_a, mode="FOLL")
        await asyncio.to_thread(drv.set_cp, "B")
        await asyncio.to_thread(drv.set_cp, "C")
        return await coro_fn()
    finally:
        await bounded(asyncio.to_thread(drv.safe_off), 5.0)
        drv.close()


# ---------------------------------------------------------------------------- the stand-in
def ev_sim_scenario(scenario, chargers, model: str = "keysight_sl1040a"):
    """The scenario with an emulated EV simulator on each of ``chargers`` (instrument
    ``evsim_<charger>``); the scenario's vehicles for those chargers are left out (the simulator
    is their EV).  ValueError for an unknown charger."""
    import copy

    from ..scenario.loader import validate
    core_names = scenario.core_site.charger_names
    for c in chargers:
        if c not in core_names:
            raise ValueError(f"unknown charger {c!r} (site chargers: {', '.join(core_names[:10])}"
                             f"{' ...' if len(core_names) > 10 else ''})")
    raw = copy.deepcopy(scenario._raw)
    raw["vehicles"] = [v for v in raw.get("vehicles", []) or [] if v.get("charger") not in chargers]
    def acts_on_ev(step) -> bool:
        toks = str(step).split()
        return any(tok in ("plug", "unplug", "ev") and toks[i + 1] in chargers
                   for i, tok in enumerate(toks[:-1]))
    raw["timeline"] = [s for s in raw.get("timeline", []) or [] if not acts_on_ev(s)]
    have = {i.get("name") for i in raw.get("instruments", []) or []}
    raw["instruments"] = list(raw.get("instruments", []) or []) + [
        {"name": f"evsim_{c}", "model": model, "ev": c} for c in chargers if f"evsim_{c}" not in have]
    return validate(raw, file=scenario.source or f"<{scenario.name}>")


@contextlib.asynccontextmanager
async def serve_ev_side(scenario, charger: str | None = None, *, speed: float = 10.0, host: str = "127.0.0.1",
                        ev_sim_model: str = "keysight_sl1040a"):
    """Serve the scenario's charger over Modbus and an emulated EV simulator on it over SCPI, in
    this process, in real time x ``speed``.  Yields (ChargerTarget, VISA resource)."""
    from ...core import Site
    from ..clock import WallClock
    from ..modbus import ModbusEmulator
    from ..plant import Plant
    from ..visa.bench import EmulatedBench
    from ..visa.server import InstrumentEmulator
    from ..wire import _physics, serve_plant

    charger = charger or scenario.site["chargers"][0]["name"]
    sc = ev_sim_scenario(scenario, [charger], ev_sim_model)
    plant = Plant(sc, Site.from_dict(sc.site))
    clock = WallClock(speed)
    emulator = ModbusEmulator(host=host, clock=clock.now_ms)
    serve_plant(plant, emulator)
    inst = InstrumentEmulator(host=host)
    bench = EmulatedBench(sc, plant)
    bench.serve(inst)
    stop = asyncio.Event()
    await emulator.start()
    await inst.start()
    physics = asyncio.ensure_future(_physics(plant, clock, stop, None, bench.couple))
    try:
        ep = next(e for e in emulator.endpoints() if e["device"] == charger)
        target = ChargerTarget(profile=ep["profile"], host=ep["host"], port=ep["port"], unit=ep["unit"],
                               transport="tcp" if ep["transport"] == "tcp" else "rtu", speed=speed,
                               safe_a=6.0, timeout_s=10.0)
        yield target, inst.servers[-1].resource, bench
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await physics
        await emulator.stop()
        await inst.stop()


async def run_on_emulated(scenario, cases, *, speed: float = 10.0, options=None) -> dict:
    """Run FS ``cases`` through the EV-simulator path against the scenario's charger served in
    this process (the stand-in, as COM-010..012's).  Returns case id -> (status, verdicts, note)."""
    out = {}
    async with serve_ev_side(scenario, speed=speed) as (target, resource, bench):
        if options is not None:
            for m in bench.models.values():
                m.options = tuple(options)
        for case in cases:
            try:
                verdicts, _ = await run_case_external(case, target, resource, armed=True)
                status = "pass" if verdicts and all(v.passed for v in verdicts) else "fail"
                out[case.id] = (status, verdicts, None)
            except NotRunnable as exc:
                out[case.id] = ("skipped", [], str(exc))
    return out


__all__ = ["PROCEDURES", "NotRunnable", "recording_from_log", "run_case_external", "run_case_external_sync",
           "serve_ev_side", "run_on_emulated", "ev_sim_scenario"]
