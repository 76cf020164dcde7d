"""A scenario's instruments on the bench: emulated ones coupled to the plant, and the rig's side
(pyvisa drivers) that prepares them safely, reads them as ground truth and leaves them safe.

Two halves, as on a real bench:

* :class:`EmulatedBench` (device side): one pure model per emulated instrument of the scenario,
  coupled to the plant on every physics tick (:meth:`couple`), served by an
  :class:`~dlbrig.rig.visa.server.InstrumentEmulator`.  It never reads a socket.  The coupling
  goes both ways: an electronic load decides its EV's draw on its conductor (input off: 0 A; CC:
  the EV's draw capped at the set-point; a protection trip latches 0 A) through the charge
  point's draw limit, and an AC source is the supply of its circuit phase (output off or a
  current-limit trip: the phase is lost, as a timeline ``phase CIRCUIT Lx loss``; its voltage
  set-point: that phase's voltage); then every instrument observes the resulting physics.
* :class:`BenchClient` (rig side): one driver per instrument, addressed by its VISA resource, so
  the same code drives an emulated or a real instrument.  :meth:`prepare` sets every protection
  limit before any output is enabled and refuses without ``armed``; :meth:`read` returns the
  measured charger currents (power analyzer first, then DMM, then electronic load) and circuit
  phase currents (AC sources); :meth:`safe_off` turns every output off and never raises.

:class:`FastBench` is fast mode's bench: the same two halves in one process, the drivers talking
to the models through :class:`~dlbrig.rig.visa.drivers.DirectResource` (no socket), coupled
once per sample.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from ...firmware_sim.instruments import make_instrument
from .drivers import NotArmed, VisaError, direct_driver, open_driver
from .server import InstrumentEmulator

__all__ = ["EmulatedBench", "BenchClient", "BenchReading", "FastBench", "needs_arming", "instrument_resources",
           "record_measured"]

GRID_FREQ_HZ = 50.0
PF = 1.0      # the EV models draw resistive current


def needs_arming(scenario) -> list:
    """Names of the instruments whose output a run enables (electronic loads, AC sources)."""
    return [s.name for s in scenario.instruments if s.kind in ("eload", "ac_source")]


class EvSimCoupling:
    """An emulated EV simulator on its charger's socket (device side).

    :meth:`act` applies the instrument's settings at a physics instant: the first pilot state other
    than A plugs a :class:`~dlbrig.firmware_sim.ev.SimulatedEv` (taking over the socket from any
    vehicle plugged there), A unplugs it; everything else (pilot, diode, residual current, load)
    acts through the vehicle's stimulus, and the instrument logs it at that instant.
    :meth:`sense` gives the instrument the outlet and pilot transitions of the charger since the
    last call, each at the millisecond it happened in the charger model (the emulated sensors
    sample at 1 ms): contactor, PWM duty, state F.  Never the charger's registers or its fault codes.
    """

    def __init__(self, plant, charger: str, model):
        from ...firmware_sim.instruments import EvSimStimulus
        self.plant, self.charger, self.model = plant, charger, model
        self.cp = plant.chargers[charger]
        self.ev = None
        self.applied = EvSimStimulus()
        self._seen = len(self.cp.events)
        e = self.cp.evse
        self._state = [bool(e.contactor_closed), float(e.duty_pct if e.pwm_on else 100.0), e.cp_state == "F"]
        model.sense(plant.now_ms, *self._state)

    def act(self, t_ms: int) -> None:
        from ...firmware_sim.ev import SimulatedEv
        want = self.model.stimulus()
        if want == self.applied:
            return
        cp, log = self.cp, self.plant.events_log
        cp.advance(t_ms)
        if want.cp == "A":
            if self.ev is not None and cp.ev is self.ev:
                cp.unplug(t_ms)
                log.append((t_ms, f"unplug {self.charger}"))
            self.ev = None
        if self.ev is not None:
            self.ev.stim = want
            cp.advance(t_ms)            # settles at t_ms with the new stimulus
        elif want.cp != "A":
            if cp.ev is not None:       # the simulator takes over the socket (the session ends)
                log.append((t_ms, f"{self.charger}: EV simulator takes over the socket"))
                self.plant._unplug(self.charger, t_ms)
            self.ev = SimulatedEv(want)
            cp.plug(self.ev, t_ms)
            log.append((t_ms, f"plug {self.charger} ev_simulator"))
        self.model.applied(t_ms, want)
        self.applied = want
        if getattr(self.plant, "caches", False):
            self.plant.invalidate()

    def sense(self) -> None:
        evs = self.cp.events
        st = self._state
        for e in evs[self._seen:]:
            if e.kind == "contactor_close":
                st[0] = True
            elif e.kind == "contactor_open":
                st[0] = False
            elif e.kind == "pwm":
                st[1] = float(e.data.get("duty_pct", 100.0)) if e.data.get("on", True) else 100.0
            elif e.kind == "cp_state":
                st[2] = e.data.get("to") == "F"
            else:
                continue
            self.model.sense(e.t_ms, *st)
        self._seen = len(evs)


def _channel(plant, ch):
    if ch is None:
        return None
    what, name, idx = ch
    if what == "charger":
        cp = plant.chargers[name]
        return (float(cp.evse.voltages_v[idx]), float(cp.currents_a()[idx]), PF, GRID_FREQ_HZ)
    return (float(plant.circuit_voltages_v(name)[idx]), float(plant.truth[name][idx]), PF, GRID_FREQ_HZ)


class EmulatedBench:
    """The emulated instruments of a scenario, bound to the plant's chargers and circuits."""

    def __init__(self, scenario, plant):
        self.plant = plant
        self.specs = [s for s in scenario.instruments if s.emulated]
        self.models = {}
        self.evsims = {}
        for s in self.specs:
            kw = {"scale": s.scale} if s.kind == "dmm" else {}
            self.models[s.name] = make_instrument(s.model, serial=f"SIM-{s.name}", **kw)
            if s.kind == "ev_simulator":
                self.evsims[s.name] = EvSimCoupling(plant, s.channels[0][1], self.models[s.name])
        self.act(plant.now_ms)          # loads and sources start off: no draw, no supply

    def act(self, t_ms: int) -> None:
        """The instruments' outputs on the plant at ``t_ms``: each bound load's draw limit on its
        EV conductor, each AC source's voltage on its circuit phase (0 = phase lost).  Several
        loads on one conductor: the smallest limit; several sources on one phase: the lowest."""
        limits, supplies = {}, {}
        for c in self.evsims.values():
            c.act(t_ms)
        for s in self.specs:
            ch = s.channels[0] if s.channels else None
            if ch is None:
                continue
            m = self.models[s.name]
            if s.kind == "eload":
                lim = m.draw_limit_a()
                key = (ch[1], ch[2])
                if key in limits and limits[key] is not None:
                    lim = limits[key] if lim is None else min(lim, limits[key])
                limits[key] = lim
            elif s.kind == "ac_source":
                key = (ch[1], ch[2])
                supplies[key] = min(m.supply_v(), supplies.get(key, m.supply_v()))
        for (charger, idx), lim in limits.items():
            self.plant.set_draw_limit(charger, idx, lim, t_ms)
        for (circuit, p), v in supplies.items():
            self.plant.set_supply(circuit, p, v, t_ms)

    def couple(self, t_ms: int) -> None:
        """Couple the instruments and the plant at ``t_ms`` (call after ``plant.advance``): the
        outputs act (:meth:`act`), every instrument observes the result, and a protection that
        tripped on it acts at once."""
        for c in self.evsims.values():     # what the plant's advance did, before anything new acts
            c.sense()
        self.act(t_ms)
        for c in self.evsims.values():
            c.sense()
        for s in self.specs:
            self.models[s.name].observe(t_ms, [_channel(self.plant, ch) for ch in s.channels])
        self.act(t_ms)
        for c in self.evsims.values():
            c.sense()

    def serve(self, emulator: InstrumentEmulator, base_port: int = 0) -> None:
        port = base_port
        for s in self.specs:
            emulator.serve(s.name, self.models[s.name], port)
            port = port + 1 if port else 0

    def all_off(self) -> None:
        for m in self.models.values():
            m.safe_off()


def instrument_resources(scenario, endpoints: list) -> dict:
    """name -> VISA resource: real instruments from the scenario, emulated ones from endpoints."""
    out = {s.name: s.resource for s in scenario.instruments if s.resource}
    for ep in endpoints:
        if ep.get("kind") == "instrument":
            out.setdefault(ep["device"], ep["resource"])
    missing = [s.name for s in scenario.instruments if s.name not in out]
    if missing:
        raise VisaError(f"no VISA resource for instrument(s) {', '.join(missing)} (not in the endpoints)")
    return out


@dataclass
class BenchReading:
    """One read of every instrument: measured charger currents and circuit-phase currents."""

    charger_a: dict = field(default_factory=dict)       # charger -> {conductor index: A}
    circuit_a: dict = field(default_factory=dict)       # circuit -> {phase index: A}
    source: dict = field(default_factory=dict)          # (charger, conductor) -> "wt.3" (which instrument)
    errors: list = field(default_factory=list)          # instruments that did not answer


class BenchClient:
    """The rig's side of the bench: pyvisa drivers on the scenario's instruments."""

    def __init__(self, scenario, resources: dict, *, armed: bool = False, timeout_ms: int = 2000):
        self.scenario = scenario
        self.site = scenario.core_site
        self.specs = list(scenario.instruments)
        self.resources = resources
        self.armed = armed
        self.timeout_ms = timeout_ms
        self.drivers: dict = {}
        self.enabled: list = []
        self._load_set: dict = {}

    # -- set-up -------------------------------------------------------------------------------------
    def check_armed(self) -> None:
        outs = needs_arming(self.scenario)
        if outs and not self.armed:
            raise NotArmed(f"refusing to run: instrument output(s) of {', '.join(outs)} would be enabled; "
                           f"add --arm to allow it")
        for s in self.specs:
            if not self.armed and s.resource and not _loopback(self.resources[s.name]):
                raise NotArmed(f"refusing to write to instrument {s.name} at {self.resources[s.name]} "
                               f"(not loopback) without --arm")

    def open(self) -> None:
        for s in self.specs:
            kw = {"scale": s.scale} if s.kind == "dmm" else {}
            self.drivers[s.name] = open_driver(self.resources[s.name], armed=self.armed, expect_kind=s.kind,
                                               timeout_ms=self.timeout_ms, **kw)

    def open_direct(self, models: dict) -> None:
        """Fast mode: drivers on the emulated instrument models in this process (same drivers and
        command sets, no socket); instruments without a model (real ones) are left out."""
        self.specs = [s for s in self.specs if s.name in models]
        for s in self.specs:
            kw = {"scale": s.scale} if s.kind == "dmm" else {}
            self.drivers[s.name] = direct_driver(models[s.name], armed=self.armed, **kw)

    def _charger(self, name):
        return self.site.chargers[self.site.charger_names.index(name)]

    def prepare(self) -> None:
        """Configure every instrument; protection limits first; then (armed) enable the outputs."""
        self.check_armed()
        voltage = float(self.site.params.voltage_v)
        for s in self.specs:
            d = self.drivers[s.name]
            d.write("*CLS")
            if s.kind == "eload":
                k = self._charger(s.ev)
                ocp = min(_rating(s.model)[0], 1.1 * k.max_ma / 1000)
                opp = min(_rating(s.model)[1], ocp * voltage)
                d.configure_cc(ac=True)
                d.set_protection(current_a=ocp, power_w=opp)
                d.set_current(0.0)
            elif s.kind == "ac_source":
                circuit = self.site.circuits[self.site.circuit_names.index(s.circuit)]
                limit = min(_rating(s.model)[0], circuit.limit_ma[int(s.phase[1]) - 1] / 1000)
                d.set_protection(current_a=limit)
                d.set_voltage(voltage, GRID_FREQ_HZ)
            elif s.kind == "power_analyzer":
                d.configure([e + 1 for e, ch in enumerate(s.channels) if ch is not None])
                d.start_integration()
            elif s.kind == "ev_simulator":     # stays in A (unplugged) until a procedure drives it
                d.safe_off()
                d.set_protection(current_a=min(_rating(s.model)[0], 1.1 * self._charger(s.ev).max_ma / 1000))
        for s in self.specs:            # every protection is set: now the outputs
            d = self.drivers[s.name]
            if s.kind in ("eload", "ac_source"):
                d.enable_output()
                self.enabled.append(s.name)

    # -- per cycle ------------------------------------------------------------------------------------
    def follow(self, plant, *, external: bool = False) -> None:
        """Program each load's set-point to what its EV model would draw (its demand under the
        PWM, not the draw the load itself capped; changes of 0.1 A or more), rounded up so the
        set-point never caps the EV below its demand.  ``external``: the chargers (and the EVs
        behind the loads) are modelled by another process, which this plant does not see: the
        set-point is the charger's maximum current and the EV model there decides the draw."""
        for s in self.specs:
            if s.kind != "eload":
                continue
            if external:
                demand = self._charger(s.ev).max_ma / 1000
            else:
                demand = plant.chargers[s.ev].demand_a()[s.conductor - 1]
            want = min(math.ceil(demand * 10 - 1e-9) / 10, _rating(s.model)[0])
            if abs(self._load_set.get(s.name, -1.0) - want) >= 0.1:
                self.drivers[s.name].set_current(want)
                self._load_set[s.name] = want

    def read(self) -> BenchReading:
        out = BenchReading()
        rank = {"power_analyzer": 0, "dmm": 1, "eload": 2}
        best: dict = {}
        for s in self.specs:
            d = self.drivers[s.name]
            try:
                if s.kind == "power_analyzer":
                    vals = d.read()
                    for e, ch in enumerate(s.channels):
                        if ch is not None and vals[e + 1]["irms"] is not None:
                            best_put(best, ch, vals[e + 1]["irms"], rank[s.kind], f"{s.name}.{e + 1}")
                elif s.kind == "dmm":
                    v = d.ac_current()
                    if v is not None:
                        best_put(best, s.channels[0], v, rank[s.kind], s.name)
                elif s.kind == "eload":
                    best_put(best, s.channels[0], d.measure()["current_a"], rank[s.kind], s.name)
                elif s.kind == "ac_source":
                    _, circuit, p = s.channels[0]
                    m = d.measure()
                    if m["current_a"] is not None and d.output_on():
                        out.circuit_a.setdefault(circuit, {})[p] = m["current_a"]
            except VisaError as exc:
                out.errors.append(f"{s.name}: {exc}")
        for (what, name, idx), (val, _, src) in best.items():
            out.charger_a.setdefault(name, {})[idx] = val
            out.source[(name, idx)] = src
        return out

    # -- safety ------------------------------------------------------------------------------------
    def safe_off(self) -> dict:
        """Every load input and source output off (all instruments, enabled by us or not).
        Returns name -> confirmed off; never raises."""
        done = {}
        for s in self.specs:
            d = self.drivers.get(s.name)
            if d is not None and s.kind in ("eload", "ac_source", "ev_simulator"):
                done[s.name] = d.safe_off()
        return done

    def close(self) -> None:
        for d in self.drivers.values():
            d.close()


def best_put(best: dict, ch, value, rank, src) -> None:
    if ch is None or value is None:
        return
    cur = best.get(ch)
    if cur is None or rank < cur[1]:
        best[ch] = (float(value), rank, src)


def _rating(model_key: str) -> tuple:
    from ...firmware_sim.instruments import INSTRUMENT_MODELS
    i = INSTRUMENT_MODELS[model_key]
    return i.max_current_a, i.max_power_w


def _loopback(resource: str) -> bool:
    from .drivers import is_loopback_resource
    return is_loopback_resource(resource)


def measured_truth(plant, reading: BenchReading, t_ms: int):
    """Circuit truth per phase and charger currents with the instruments' measurements in place of
    the models' (base loads, which no instrument measures, stay the plant's)."""
    charger_a = {}
    for name, cp in plant.chargers.items():
        cur = list(cp.currents_a())
        for idx, v in reading.charger_a.get(name, {}).items():
            cur[idx] = v
        charger_a[name] = cur
    truth = plant.circuit_truth(t_ms, charger_a)
    for circuit, phases in reading.circuit_a.items():      # an AC source measures the whole phase
        for p, v in phases.items():
            truth[circuit][p] = v
    return truth, charger_a


class MeasuredCharger:
    """A ChargePoint look-alike whose currents are the instruments' (for Recording.sample)."""

    def __init__(self, cp, currents):
        self._cp, self._cur = cp, currents
        self.evse = cp.evse
        self.status = cp.status

    def currents_a(self):
        return list(self._cur)


def begin_measured(run) -> None:
    """Mark the run's recording as instrument ground truth (before the first sample)."""
    rec = run.recording
    if rec is not None:
        rec.ground_truth = "instruments"
        rec.reported = {n: [[], [], []] for n in run.site.charger_names}


def record_measured(run, ctrl, reading: BenchReading, t_ms: int, res, dt_s: float) -> None:
    """One sample of a run with the instruments as ground truth: KPIs and recording from the
    measurements, what each charger said about itself (for the cross-check), who measured what."""
    truth, charger_a = measured_truth(run.plant, reading, t_ms)
    proxies = {n: MeasuredCharger(cp, charger_a[n]) for n, cp in run.plant.chargers.items()}
    run.record(t_ms, res, dt_s, truth=truth, chargers=proxies)
    rec = run.recording
    if rec is not None:
        said = (ctrl.last_readings or {}).get("chargers", {})
        for n in run.site.charger_names:
            cur = said.get(n, {}).get("current_a")
            for i in range(3):
                rec.reported[n][i].append(None if cur is None else float(cur[i]))
        for (n, i), src in reading.source.items():
            rec.measured_by.setdefault(n, [None, None, None])[i] = src


class FastBench:
    """Fast mode's bench: the scenario's emulated instruments coupled to the plant as in wire mode
    (:class:`EmulatedBench`), driven and read by the same :class:`BenchClient` through in-process
    resources (no sockets).  Per sample: the loads follow the EVs' demand, the instruments and
    the plant couple, the instruments are read and their measurements are the ground truth."""

    def __init__(self, run):
        self.ebench = EmulatedBench(run.scenario, run.plant)
        self.client = BenchClient(run.scenario, {}, armed=True)   # emulated in-process: nothing energised
        self.client.open_direct(self.ebench.models)
        self.client.prepare()
        self.ebench.act(run.plant.now_ms)
        begin_measured(run)

    @classmethod
    def for_run(cls, run):
        """A FastBench when the scenario has emulated instruments, else None."""
        return cls(run) if any(s.emulated for s in run.scenario.instruments) else None

    def sample(self, run, ctrl, t_ms: int, res, dt_s: float) -> None:
        self.client.follow(run.plant)
        self.ebench.couple(t_ms)
        record_measured(run, ctrl, self.client.read(), t_ms, res, dt_s)


def bench_verdicts(rec, *, external: bool = False) -> list:
    """The compliance verdicts of a run with instruments as ground truth: limit (strict and breaker
    envelope) from the measured currents, the charger cross-check, and (when the rig served the
    chargers itself, so their firmware event logs are this run's) fault shutdown and signalling."""
    from ..compliance import fault_shutdown, instrument_crosscheck, limit_envelope, limit_strict, signalling

    verdicts = limit_strict(rec) + limit_envelope(rec) + instrument_crosscheck(rec)
    if not external:
        verdicts += fault_shutdown(rec) + signalling(rec)
    return verdicts
