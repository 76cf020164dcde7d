"""The emulated site: device models wired to circuits, and the ground truth they produce.

A :class:`Plant` owns one :class:`~dlbrig.firmware_sim.ChargePoint` per charger, one
:class:`~dlbrig.firmware_sim.Meter` per metered circuit and the base loads of every circuit. It
advances them on the scenario's clock, applies the physical events of the timeline (vehicles
arriving and leaving, EV faults, base-load steps, PV clouds, phase loss, meter faults) and computes
the ground truth per circuit and phase: building load + the true EV currents on each site phase
(through each charger's phase map), summed up the circuit tree. Communication faults are not
physics; they go to :class:`~dlbrig.rig.links.CommFaults` which the links (or the Modbus servers)
consult.

The plant never opens a socket and never sleeps: the runner advances it.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field, fields

from ..core import Site
from ..firmware_sim import EV, PV, BuildingLoad, ChargePoint, EvseConfig, FirmwareFaults, Meter, SiteLoad, StepEvent
from ..firmware_sim.profiles import DeviceImage, get_profile
from ..firmware_sim.ev import SimulatedEv
from ..firmware_sim.evse import Evse
from .links import CommFault, CommFaults

MS = 1000


@dataclass
class Session:
    """One vehicle's visit, for the service KPIs."""

    vehicle: str
    charger: str
    preset: str
    arrive_ms: int
    depart_ms: int | None
    need_kwh: float | None
    ev: EV
    left_ms: int | None = None
    delivered_kwh: float = 0.0


class _Scaled:
    """A load component scaled by a factor (PV clouds)."""

    def __init__(self, component, factor_fn):
        self.component, self.factor_fn = component, factor_fn

    def current_a(self, t_ms):
        f = self.factor_fn(t_ms)
        return [f * x for x in self.component.current_a(t_ms)]


@dataclass
class PlantDevice:
    name: str              # circuit name (meter) or charger name
    kind: str              # "meter" | "charger"
    profile: object
    unit: int
    model: object
    image: DeviceImage
    transport: str
    bus: str | None = None


class Plant:
    def __init__(self, scenario, site: Site | None = None, *, caches: bool = False):
        self.scenario = scenario
        self.caches = bool(caches)   # DeviceImage caches (fast mode); invalidated on every advance
        self.site = site or Site.from_dict(scenario.site)
        self.start_ms = int(getattr(scenario, "start_ms", 0))
        self.seed = int(scenario.seed)
        self.comm = CommFaults(seed=self.seed)
        self.now_ms = 0
        self._deferred = []          # (time, action): ends of timed faults, departures
        self._deferred_next = None   # the earliest time in _deferred (None: empty)
        self._time_memo = {}         # scenario time text -> ms (see _time)
        self._faulted = set()        # chargers disabled by a timeline `charger CP fault`
        self._timeline_loads = {}    # circuit -> StepEvents added by base steps of the timeline
        s = self.site
        self.circuit_index = {n: i for i, n in enumerate(s.circuit_names)}
        self.charger_index = {n: i for i, n in enumerate(s.charger_names)}
        self.voltage_v = s.params.voltage_v
        # base loads per circuit
        self.loads = {n: SiteLoad() for n in s.circuit_names}
        self._clouds = {n: [] for n in s.circuit_names}     # (from, until, factor)
        self._phase_loss = {}                                # circuit -> {phase: until}
        self._supply_v = {}                                  # circuit -> {phase: V} (set_supply)
        self._dead = {}                                      # circuit -> phases without supply
        self._circuit_v = {}                                 # circuit -> [V] once a supply changed
        for i, ld in enumerate(getattr(scenario, "loads", []) or []):
            self._add_load(ld, i)
        # devices
        self.devices: dict[str, PlantDevice] = {}
        self.chargers: dict[str, ChargePoint] = {}
        for dev in scenario.chargers:
            self._add_charger(dev)
        self.meters: dict[str, Meter] = {}
        for dev in scenario.meters:
            self._add_meter(dev)
        # sessions: vehicles from the scenario (and plug steps of the timeline)
        self.sessions: list[Session] = []
        self._open_session: dict[str, Session] = {}   # charger -> its session still plugged in
        # charger -> (its open session, its EVSE, the EVSE's session integrator) for session_info
        # (caches; a plain Evse only)
        self._open_energy: dict = {}
        self._sessions_of: dict[str, list] = {}       # charger -> its sessions, in self.sessions order
        self._pending_vehicles = sorted(scenario.expand_vehicles(), key=lambda v: (self._time(v.arrive), v.id))
        self._steps = sorted(scenario.steps, key=lambda st: (st.at_ms, st.line))
        self._step_i = 0
        self.controller_restarts: list[int] = []
        self.events_log: list[tuple[int, str]] = []
        # circuit_truth's plan (the site and the charge points do not change): per charger in
        # self.chargers order (name, charge point, circuit name, (conductor, site phase) pairs),
        # and (parent name, circuit name) from the last circuit to the first (children first)
        self._truth_chargers = [
            (name, cp, s.circuit_names[k.circuit], tuple((i, k.phase_map[i]) for i in range(k.phases)))
            for name, cp in self.chargers.items() for k in (s.chargers[self.charger_index[name]],)]
        self._truth_tree = [(s.circuit_names[s.circuits[c].parent], s.circuit_names[c])
                            for c in range(len(s.circuits) - 1, -1, -1) if s.circuits[c].parent != -1]
        self._charger_list = list(self.chargers.values())               # (advance's loops)
        self._promised = False      # the chargers' settled_promise set by advance (fast mode)
        # _truth_fast's plan: per circuit in site order (name, its base loads, its chargers as
        # (EVSE __dict__, charge point, (conductor, site phase) pairs) in self.chargers order, and
        # whether their change counters prove their currents unchanged: plain models only)
        groups = {n: [] for n in s.circuit_names}
        for name, cp, circuit, pairs in self._truth_chargers:
            groups[circuit].append((cp.evse.__dict__, cp, pairs))
        self._truth_groups = [
            (n, self.loads[n], tuple(g), all(type(cp) is ChargePoint and type(cp.evse) is Evse for _, cp, _ in g))
            for n, g in groups.items()]
        self._truth_memo = {}       # circuit -> (change counters of its chargers, its own currents)
        self._images = [dev.image for dev in self.devices.values()]      # (invalidate's loop)
        self.truth = {n: [0.0, 0.0, 0.0] for n in s.circuit_names}
        self._update_truth(0)

    # ------------------------------------------------------------------ construction
    def _time(self, value) -> int:
        """A scenario time (ms since start) from the scenario's own parser (memoized: advance asks
        for the next arrival's time every cycle; the parse depends only on the text and the start)."""
        if isinstance(value, int):
            return value
        t = self._time_memo.get(value)
        if t is None:
            t = self._time_memo[value] = self.scenario.time_ms(value)
        return t

    def _add_load(self, ld, i):
        seed = ld.seed if ld.seed is not None else self.seed * 1000 + i
        if ld.kind == "pv":
            comp = PV(kwp=ld.kwp, weather=ld.weather, seed=seed)
            circuit = ld.circuit
            comp = _Scaled(comp, lambda t, c=circuit: self._cloud_factor(c, t))
        elif ld.kind == "constant":
            comp = StepEvent(at_ms=0, delta_a=_three(ld.peak_a))
        elif ld.kind == "step":
            at = self._time(ld.at) + self.start_ms
            comp = StepEvent(at_ms=at, delta_a=ld.delta_a, duration_ms=ld.for_ms)
        else:
            comp = BuildingLoad(kind=ld.kind, peak_a=ld.peak_a, seed=seed, unbalance=ld.unbalance)
            comp.segment_memo = self.caches     # (asked every second: see BuildingLoad.current_a)
        self.loads[ld.circuit].add(comp)

    def _add_charger(self, dev):
        k = self.site.chargers[self.charger_index[dev.charger]]
        profile = get_profile(dev.profile)
        wd = profile.watchdog
        cfg = dict(hw_max_current_a=k.max_ma / 1000, hw_phases=k.phases,
                   supports_phase_switching=bool(k.can_switch_phases),
                   nominal_voltage_v=float(self.voltage_v),
                   model_name=f"{profile.vendor} {profile.model}", serial=f"SIM-{dev.charger}")
        if wd is not None and wd.default_timeout_s:
            cfg["watchdog_timeout_ms"] = int(wd.default_timeout_s * 1000)
        cfg.update(dev.firmware_config())
        faults = FirmwareFaults(**dev.faults) if dev.faults else FirmwareFaults()
        cp = ChargePoint(EvseConfig(**cfg), faults, voltages_v=[self.voltage_v] * 3)
        unit = dev.unit if dev.unit is not None else profile.unit_ids[0]
        image = DeviceImage(profile, {unit: cp}, cache=self.caches)
        self.chargers[dev.charger] = cp
        self.devices[dev.charger] = PlantDevice(dev.charger, "charger", profile, unit, cp, image,
                                                dev.transport or profile.transport, dev.bus)

    def _add_meter(self, dev):
        profile = get_profile(dev.profile)
        i = self.circuit_index[dev.circuit]
        m = Meter(update_interval_ms=int(dev.update_interval_s * 1000), noise_a=dev.noise_a,
                  seed=self.seed * 7919 + i, nominal_voltage_v=float(self.voltage_v))
        m.quantise_memo = self.caches       # (sampled every second: see Meter._measure)
        unit = dev.unit if dev.unit is not None else profile.unit_ids[0]
        image = DeviceImage(profile, {unit: m}, cache=self.caches)
        self.meters[dev.circuit] = m
        self.devices[dev.circuit] = PlantDevice(dev.circuit, "meter", profile, unit, m, image,
                                                dev.transport or profile.transport, dev.bus)

    # ------------------------------------------------------------------ events
    def _cloud_factor(self, circuit, t_abs):
        t = t_abs - self.start_ms
        f = 1.0
        for start, until, cut in self._clouds[circuit]:
            if start <= t and (until is None or t < until):
                f *= 1.0 - cut
        return f

    def _plug(self, charger, preset, t, *, vehicle=None, soc=None, need_kwh=None, depart_ms=None,
              knobs=None, faults=None):
        cp = self.chargers[charger]
        t = self._charger_time(charger, t)
        if cp.ev is not None:
            self.events_log.append((t, f"{charger}: occupied, {vehicle or preset} not plugged"))
            return
        kw = dict(knobs or {})
        kw.setdefault("seed", zlib.crc32(f"{self.seed}:{charger}:{t}".encode()) & 0xFFFF)  # stable across processes
        if soc is not None:
            kw["soc_pct"] = soc * 100 if soc <= 1 else soc
        ev = EV.preset(preset, **kw)
        if need_kwh is not None:
            target = ev.soc_pct + 100.0 * need_kwh / ev.battery_kwh
            ev.target_soc_pct = max(min(target, 100.0), ev.soc_pct + 1e-6)
        if depart_ms is not None:
            ev.departure_ms = depart_ms
        for name, value in (faults or {}).items():
            setattr(ev.faults, name, value)
            # logged like the timeline's own step, so checkers see faults a vehicle arrives with
            text = {"missing_diode": f"ev {charger} missing_diode", "cp_short": f"ev {charger} cp_short",
                    "ignore_pwm": f"ev {charger} ignore_pwm",
                    "leakage_dc_ma": f"ev {charger} leakage dc {value}mA",
                    "leakage_ac_ma": f"ev {charger} leakage ac {value}mA",
                    "overdraw_pct": f"ev {charger} overdraw {value}%"}.get(name)
            if text and value:
                self.events_log.append((t, text))
        cp.plug(ev, t)
        session = Session(vehicle or f"{preset}@{charger}", charger, preset, t, depart_ms, need_kwh, ev)
        self.sessions.append(session)
        self._sessions_of.setdefault(charger, []).append(session)
        self._open_session[charger] = session
        if type(cp.evse) is Evse:
            self._open_energy[charger] = (session, cp.evse, cp.evse._session)
        self.events_log.append((t, f"plug {charger} {preset}"))

    def _unplug(self, charger, t):
        cp = self.chargers[charger]
        if cp.ev is None:
            return
        t = self._charger_time(charger, t)
        if isinstance(cp.ev, SimulatedEv):   # an EV simulator's vehicle: only the simulator unplugs it
            self.events_log.append((t, f"{charger}: EV simulator plugged in, unplug ignored"))
            return
        for s in reversed(self.sessions):
            if s.charger == charger and s.left_ms is None:
                s.left_ms = t
                s.delivered_kwh = cp.evse.session_energy_wh / 1000
                break
        self._open_session.pop(charger, None)
        self._open_energy.pop(charger, None)
        cp.unplug(t)
        self.events_log.append((t, f"unplug {charger}"))

    def session_info(self, charger):
        """(departure in s from now, energy still needed in kWh) for the controller, or None."""
        if self.caches:
            # every cycle for every charger: the open session and its EVSE at hand, the session
            # energy computed from the EVSE's integrator as its property does (its value() inlined)
            o = self._open_energy.get(charger)
            if o is not None and o[0].left_ms is None:
                s, evse, g = o
                d = s.depart_ms
                dep = None if d is None else max(0.0, (d - self.now_ms) / 1000)
                n = s.need_kwh
                if n is None:
                    return dep, None
                return dep, max(0.0, n - (g.acc + g.rate * (evse.now_ms - g.t0)) / 1000)
        s = self._open_session.get(charger)     # every cycle for every charger: no scan
        if s is not None and s.left_ms is None:
            dep = None if s.depart_ms is None else max(0.0, (s.depart_ms - self.now_ms) / 1000)
            need = None
            if s.need_kwh is not None:
                need = max(0.0, s.need_kwh - self.chargers[charger].evse.session_energy_wh / 1000)
            return dep, need
        for s in reversed(self._sessions_of.get(charger, ())):   # = self.sessions, this charger's
            if s.left_ms is None:
                dep = None if s.depart_ms is None else max(0.0, (s.depart_ms - self.now_ms) / 1000)
                need = None
                if s.need_kwh is not None:
                    need = max(0.0, s.need_kwh - self.chargers[charger].evse.session_energy_wh / 1000)
                return dep, need
        return None

    def _charger_time(self, charger, t):
        """When an event due at ``t`` reaches ``charger``'s model: ``t``, or the model's own clock if a
        Modbus write (wire mode: the server thread, in real time) already moved it past ``t`` before
        the physics loop got to the event. In fast mode the plant advances in order and this is ``t``."""
        return max(t, self.chargers[charger].now_ms)

    def apply_step(self, st, t):
        """One timeline step (physics and communication faults; "controller restart" is the runner's)."""
        a, verb, target = st.args, st.verb, st.target
        if target in self.chargers:
            t = self._charger_time(target, t)
        until = t + a["for_ms"] if a.get("for_ms") is not None else None
        if verb == "plug":
            self._plug(target, a["ev"], t, soc=a.get("soc"), need_kwh=a.get("need_kwh"),
                       depart_ms=a.get("depart_ms"))
        elif verb == "unplug":
            self._unplug(target, t)
        elif verb == "meter":
            mode = a["mode"]
            if mode in ("stale", "offline"):
                self.comm.set(target, CommFault("offline", until))
                self.meters[target].fault = None
            elif mode == "ok":
                self.comm.set(target, None)
                self.meters[target].fault = None
            else:
                self.meters[target].fault = mode
                if until is not None:
                    self._later(until, lambda m=self.meters[target]: setattr(m, "fault", None))
        elif verb == "ev":
            cp = self.chargers[target]
            if cp.ev is None:
                self.events_log.append((t, f"ev {target}: no vehicle plugged"))
                return
            ev, fault = cp.ev, a["fault"]
            if fault == "ok":
                self._clear_ev_faults(ev)
            elif fault == "slow":
                ev.reaction_delay_ms = a["delay_ms"]
            elif fault == "overdraw":
                ev.faults.overdraw_pct = a["fraction"] * 100
            elif fault == "leakage":
                setattr(ev.faults, f"leakage_{a['kind']}_ma", a["ma"])
            else:
                setattr(ev.faults, fault, True)
            cp.advance(t)
            if until is not None and fault != "ok":
                self._later(until, lambda e=ev, c=cp, u=until: (self._clear_ev_faults(e), c.advance(max(u, c.now_ms))))
        elif verb == "charger":
            mode = a["mode"]
            if mode == "ok":
                self.comm.set(target, None)
                if target in self._faulted:
                    self._end_charger_fault(target, t)
            elif mode == "offline":
                self.comm.set(target, CommFault("offline", until))
            elif mode == "exception":
                self.comm.set(target, CommFault("exception", until, code=a.get("code", 4)))
            elif mode == "delay":
                self.comm.set(target, CommFault("delay", until, delay_ms=a["delay_ms"],
                                                jitter_ms=a.get("jitter_ms", 0)))
            elif mode == "drop":
                self.comm.set(target, CommFault("drop", until, probability=a["fraction"]))
            elif mode == "fault":
                # through the charge point (EVSE and EV advance together), and undone after `for`
                cp = self.chargers[target]
                cp.advance(t)
                cp.write_point("enabled", False, t)
                self._faulted.add(target)
                self.events_log.append((t, f"{target}: charger fault (disabled)"))
                if until is not None:
                    self._later(until, lambda n=target, u=until: self._end_charger_fault(n, u))
        elif verb == "base":
            circuit, loads = target, self.loads[target]
            if a.get("mode") == "ok":     # back to the modelled load: end the timeline's steps now
                for comp in self._timeline_loads.pop(circuit, []):
                    if comp.active(t + self.start_ms):
                        comp.duration_ms = t + self.start_ms - comp.at_ms
            else:
                if a.get("mode") == "set":
                    delta = [v - c for v, c in zip(_three(a["current_a"]), loads.current_a(t + self.start_ms))]
                else:
                    delta = _three(a["delta_a"])
                comp = StepEvent(at_ms=t + self.start_ms, delta_a=delta, duration_ms=a.get("for_ms"))
                loads.add(comp)
                self._timeline_loads.setdefault(circuit, []).append(comp)
        elif verb == "pv":
            if a.get("mode") == "ok":
                self._clouds[target] = [(s0, min(u, t) if u is not None else t, f)
                                        for s0, u, f in self._clouds[target]]
            else:
                self._clouds[target].append((t, until, a["fraction"]))
        elif verb == "phase":
            phase = a.get("index", a.get("phase"))
            if isinstance(phase, str):
                phase = int(phase[1]) - 1
            if a.get("mode") == "ok":
                self._phase_loss.setdefault(target, {}).pop(phase, None)
            else:
                self._phase_loss.setdefault(target, {})[phase] = until
            self._apply_voltages(t)
            if until is not None:
                self._later(until, lambda tt=until: self._apply_voltages(tt))
        elif verb == "controller":
            self.controller_restarts.append(t)
        self.events_log.append((t, st.text))

    @staticmethod
    def _clear_ev_faults(ev):
        for f in fields(ev.faults):
            setattr(ev.faults, f.name, f.default)

    def _end_charger_fault(self, name, t):
        if name in self._faulted:
            self._faulted.discard(name)
            cp = self.chargers[name]
            t = self._charger_time(name, t)
            cp.advance(t)
            cp.write_point("enabled", True, t)
            self.events_log.append((t, f"{name}: charger fault cleared"))

    def _later(self, t, fn):
        self._deferred.append((t, fn))
        if self._deferred_next is None or t < self._deferred_next:
            self._deferred_next = t

    def set_supply(self, circuit: str, phase: int, voltage_v: float | None, t_ms: int) -> None:
        """The supply of one circuit phase (0, 1, 2 = L1..L3) from ``t_ms`` on, for everything below
        the circuit: ``voltage_v`` volts (0: no supply, as a timeline phase loss), or None: back to
        the site's voltage.  For an AC source standing in for the grid (rig.visa.bench)."""
        cur = self._supply_v.get(circuit, {}).get(phase)
        if cur == voltage_v:
            return
        if voltage_v is None:
            self._supply_v.get(circuit, {}).pop(phase, None)
        else:
            self._supply_v.setdefault(circuit, {})[phase] = float(voltage_v)
        self._apply_voltages(t_ms)
        self._update_truth(t_ms)

    def set_draw_limit(self, charger: str, conductor: int, amps: float | None, t_ms: int) -> None:
        """Cap the vehicle's draw on one charger conductor (0..2) from ``t_ms`` on (None: no cap);
        see ChargePoint.set_draw_limit.  For an electronic load standing in for the EV."""
        cp = self.chargers[charger]
        before = cp.draw_limit_a
        cp.set_draw_limit(conductor, amps, t_ms)
        if cp.draw_limit_a != before:
            self._update_truth(t_ms)

    def circuit_voltages_v(self, circuit: str) -> list:
        """Supply voltage per phase of a circuit (after phase loss and set_supply)."""
        return list(self._circuit_v.get(circuit) or [float(self.voltage_v)] * 3)

    def _apply_voltages(self, t):
        """Phase loss (timeline) and external supplies (set_supply): the voltage of every circuit
        phase, inherited down the tree; chargers see it, a phase without supply carries no current
        (its base loads draw nothing; the EVs draw nothing on a conductor at 0 V)."""
        s = self.site
        volts_by_circuit = {}
        for c, name in enumerate(s.circuit_names):        # parents come before their children
            par = s.circuits[c].parent
            v = list(volts_by_circuit[s.circuit_names[par]]) if par != -1 else [float(self.voltage_v)] * 3
            for p, sv in self._supply_v.get(name, {}).items():
                if v[p] > 0.0:
                    v[p] = sv
            for p, until in self._phase_loss.get(name, {}).items():
                if until is None or t < until:
                    v[p] = 0.0
            volts_by_circuit[name] = v
        self._dead = {n: {p for p in range(3) if v[p] <= 0.0} for n, v in volts_by_circuit.items()}
        self._dead = {n: ps for n, ps in self._dead.items() if ps}
        self._circuit_v = volts_by_circuit
        for name, cp in self.chargers.items():
            k = s.chargers[self.charger_index[name]]
            v = volts_by_circuit[s.circuit_names[k.circuit]]
            cp.set_voltages([v[k.phase_map[i]] for i in range(3)], t)

    # ------------------------------------------------------------------ time
    def advance(self, t_ms: int) -> None:
        """Move every model to ``t_ms`` (ms since scenario start), applying due events first."""
        chargers = self._charger_list
        if self.caches and self._promised and (
                (self._pending_vehicles and self._time(self._pending_vehicles[0].arrive) <= t_ms)
                or (self._step_i < len(self._steps) and self._steps[self._step_i].at_ms <= t_ms)
                or (self._deferred_next is not None and self._deferred_next <= t_ms)):
            # The images are invalidated once, at the end: nothing reads them while the plant
            # advances (fast mode is one thread; wire mode runs without caches). The promise
            # matters to write_point only, which nothing but the events applied below calls
            # during an advance: it is withdrawn only when one of them is due.
            for cp in chargers:                  # the plant may change them from here on
                cp.settled_promise = False
            self._promised = False
        applied = False      # anything that may change a model outside its own methods
        while self._pending_vehicles and self._time(self._pending_vehicles[0].arrive) <= t_ms:
            v = self._pending_vehicles.pop(0)
            applied = True
            at = self._time(v.arrive)
            depart = self._time(v.depart) if v.depart is not None else None
            self._plug(v.charger, v.preset, at, vehicle=v.id, soc=v.soc, need_kwh=v.energy_kwh,
                       depart_ms=depart, knobs=v.knobs, faults=v.faults)
            if depart is not None:
                self._later(depart, lambda c=v.charger, d=depart: self._unplug(c, d))
        while self._step_i < len(self._steps) and self._steps[self._step_i].at_ms <= t_ms:
            st = self._steps[self._step_i]
            self._step_i += 1
            applied = True
            self.apply_step(st, st.at_ms)
        due = None
        if self._deferred_next is not None and self._deferred_next <= t_ms:   # (else none is due)
            deferred = self._deferred
            due = sorted((d for d in deferred if d[0] <= t_ms), key=lambda d: d[0])
            self._deferred = [d for d in deferred if d[0] > t_ms]
            self._deferred_next = min((d[0] for d in self._deferred), default=None)
            for at, fn in due:
                fn()            # (may add actions: _later keeps _deferred_next)
        # Fast mode (caches): between two advances the models change only through their own
        # methods (the images' writes settle them), so unless this advance applied something
        # (arrivals, timeline steps, deferred actions) they are promised unchanged, which lets
        # an idle charger skip its no-op settles (ChargePoint.advance).
        unchanged = self.caches and not due and not applied
        for cp in chargers:
            cp.advance(t_ms, unchanged=unchanged)
        self._update_truth(t_ms)
        truth, volts = self.truth, self._circuit_v
        for name, m in self.meters.items():
            m.advance(t_ms, truth[name], volts[name] if volts else None)
        self.now_ms = t_ms
        if self.caches:
            self.invalidate()
            # until the next advance only the images touch the chargers, through write_point
            # (which settles): promise them unchanged so same-instant writes skip a no-op settle
            if not self._promised:
                for cp in chargers:
                    cp.settled_promise = True
                self._promised = True

    def invalidate(self) -> None:
        """Drop the device images' cached points (models changed outside their images)."""
        for image in self._images:
            image.invalidate()

    def _update_truth(self, t_ms):
        if self.caches and not self._dead:
            self.truth = self._truth_fast(t_ms)
        else:
            self.truth = self.circuit_truth(t_ms)

    def _truth_fast(self, t_ms) -> dict:
        """circuit_truth(t_ms) of the models (fast mode, every phase supplied), where a circuit
        without base loads keeps the sum of its chargers' currents while their change counters
        hold: an EVSE's currents are a function of its counted state (the EV's through the
        signals object it consumed), and most chargers change nothing from one second to the
        next. The sums are the plain path's, in its order (0.0, then the chargers in order)."""
        t_abs = t_ms + self.start_ms
        memo = self._truth_memo
        own = {}
        for n, load, group, plain in self._truth_groups:
            if load.components:
                tgt = list(load.current_a(t_abs))
                for ed, cp, pairs in group:
                    cur = cp.currents_a()
                    for i, phase in pairs:
                        tgt[phase] += cur[i]
                own[n] = tgt
                continue
            if plain:
                m = memo.get(n)
                if m is not None:
                    revs = m[0]
                    k = 0
                    for ed, cp, pairs in group:
                        if ed["_rev"] != revs[k]:
                            break
                        k += 1
                    else:
                        own[n] = m[1][:]     # (the tree sums below add to the parents' lists)
                        continue
            revs = []
            tgt = [0.0, 0.0, 0.0]
            for ed, cp, pairs in group:
                revs.append(ed["_rev"])
                cur = cp.currents_a()
                for i, phase in pairs:
                    tgt[phase] += cur[i]
            if plain:
                memo[n] = (revs, tgt[:])
            own[n] = tgt
        return self._sum_up(own)

    def _sum_up(self, own: dict) -> dict:
        """``own`` (circuit -> [3] A of the circuit itself) made per subtree, in place."""
        for parent, child in self._truth_tree:     # children before parents: sums up the tree
            pt, ct = own[parent], own[child]
            pt[0] += ct[0]
            pt[1] += ct[1]
            pt[2] += ct[2]
        return own

    def circuit_truth(self, t_ms, charger_currents: dict | None = None) -> dict:
        """True current per circuit and phase (its whole subtree): base loads (none on a phase
        without supply) plus the chargers' currents, the models' or ``charger_currents`` (name ->
        [3] A per conductor: what instruments measured) where given."""
        t_abs = t_ms + self.start_ms
        loads = self.loads
        own = {n: list(loads[n].current_a(t_abs)) for n in self.site.circuit_names}
        for n, phases in self._dead.items():       # no supply, no current
            for p in phases:
                own[n][p] = 0.0
        for name, cp, circuit, pairs in self._truth_chargers:
            cur = charger_currents[name] if charger_currents and name in charger_currents else cp.currents_a()
            tgt = own[circuit]
            for i, phase in pairs:
                tgt[phase] += cur[i]
        return self._sum_up(own)

    def base_a(self, circuit: str) -> list:
        """True non-EV load of a circuit's subtree (for traces)."""
        return self.loads[circuit].current_a(self.now_ms + self.start_ms)

    def finish(self):
        """Close open sessions at the end of the run (for the KPIs)."""
        for s in self.sessions:
            if s.left_ms is None:
                s.delivered_kwh = self.chargers[s.charger].evse.session_energy_wh / 1000


def _three(x):
    if isinstance(x, (int, float)):
        return [float(x)] * 3
    v = [float(a) for a in x]
    if len(v) != 3:
        raise ValueError("need 3 per-phase values")
    return v
