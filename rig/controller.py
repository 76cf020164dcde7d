"""The site controller a real site would run, with a PLC's scan-cycle discipline.

Every cycle: read all inputs (meters and chargers, through each product's driver and a link), compute
(:class:`~dlbrig.core.Allocator` step), write all outputs (set-points, phase switches, heartbeats at
each product's required interval). Cycle time and jitter are measured; a cycle that takes longer
than the cycle period is an overrun, and ``max_overruns`` overruns in a row are a fault that drives
every charger to its safe current and stops allocating until the cycle recovers.

The same code runs in fast mode (in-memory links, virtual clock) and wire mode (Modbus links, wall
clock). Writing to a device on a non-loopback address requires the run to be armed
(:class:`NotArmed` otherwise): see DESIGN.md "Safety of the rig itself".
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from ..core import Allocator, ChargerResult, Site, model
from ..firmware_sim.profiles import ModbusError
from ..firmware_sim.profiles.driver import ChargerDriver, DecodeError, MeterDriver
from .links import LinkTimeout


_READ_ERRORS = (ModbusError, LinkTimeout, DecodeError, OSError)   # a failed read, not a crash
_LOST = model.CHARGER_LOST

#: a meter reading that stays bit-identical while the EVs under it move by more than this is frozen
FROZEN_EV_DELTA_A = 3.0
SETUP_CONCURRENCY = 8   # chargers configured at once at start-up (wire mode)


class NotArmed(RuntimeError):
    """A write to real hardware was attempted without ``--arm``."""


@dataclass
class Endpoint:
    """How the controller reaches one device."""

    name: str           # circuit name (meter) or charger name
    kind: str           # "meter" | "charger"
    driver: object      # MeterDriver | ChargerDriver
    link: object        # FastLink or a Modbus link: async read/write
    unit: int
    loopback: bool = True


@dataclass
class Failure:
    t_ms: int
    device: str
    op: str
    error: str


@dataclass
class CycleStats:
    cycles: int = 0
    overruns: int = 0
    consecutive_overruns: int = 0
    durations_ms: list = field(default_factory=list)
    starts_ms: list = field(default_factory=list)
    safe_state_entries: int = 0

    def summary(self, cycle_ms: int) -> dict:
        d = sorted(self.durations_ms) or [0.0]
        gaps = [b - a for a, b in zip(self.starts_ms, self.starts_ms[1:])]
        jitter = [abs(g - cycle_ms) for g in gaps] or [0]
        pick = lambda xs, q: xs[min(len(xs) - 1, int(q * len(xs)))]
        return {"cycles": self.cycles, "overruns": self.overruns,
                "safe_state_entries": self.safe_state_entries,
                "cycle_time_ms_median": round(pick(d, 0.5), 3), "cycle_time_ms_p99": round(pick(d, 0.99), 3),
                "cycle_time_ms_max": round(d[-1], 3),
                "jitter_ms_max": round(max(jitter), 3), "jitter_ms_p99": round(pick(sorted(jitter), 0.99), 3)}


class SiteController:
    def __init__(self, site: Site, endpoints: list, clock, *, armed: bool = False, max_overruns: int = 3,
                 session_info=None, measure_wall: bool = False, backend: str = "c",
                 allocator_factory=None, energy=None, concurrent_setup: bool = False):
        self.site = site
        self.energy = energy    # rig.energy.EnergyManager: adjusts the core's inputs (caps, deferral, battery)
        self.clock = clock
        self.armed = armed
        self.max_overruns = max_overruns
        self.session_info = session_info          # charger -> (departure_s, need_kwh) or None
        self.measure_wall = measure_wall
        # wire mode: configure every charger at once (one Modbus master per port, each with its
        # own lock), not one round trip after the other inside the first cycle
        self.concurrent_setup = concurrent_setup
        self.backend = backend
        # the decision maker: the built-in core, or another DUT with the same step() (rig.naive)
        self.allocator_factory = allocator_factory or (lambda s: Allocator(s, backend=backend))
        self.meters = [e for e in endpoints if e.kind == "meter"]
        self.chargers = [e for e in endpoints if e.kind == "charger"]
        self.alloc = self.allocator_factory(site)
        self.stats = CycleStats()
        self.failures: list[Failure] = []
        self.last_result = None
        self.safe_state = False
        self.written: dict[str, float] = {}
        self.phases_written: dict[str, int] = {}
        self.last_write_ms: dict[str, int] = {}
        self.last_hb_ms: dict[str, int] = {}
        self.configured = False
        self.last_readings: dict = {}
        self._meter_seen: dict = {}      # meter -> (last currents, since when, EV sum then, frozen)
        self._meter_recent: dict = {}    # meter -> [(t, readings)] of the last cycles (see _frozen)
        self._meter_subtree: dict = {}
        self._timed_links = None
        self._scan = None        # per charger endpoint: (endpoint, its name, unit, *_direct_read(endpoint))
        self._meter_scan = None  # per meter endpoint: (endpoint, *_direct_read(endpoint))
        self._seen: dict = {}    # charger -> (its last reading object, the currents list made from it)
        self._out_scan = None    # per charger endpoint: what the write loop needs of its driver (see cycle)

    def _under_meter(self, meter: str) -> list:
        """(charger name, phase map) of every charger in the meter's circuit subtree."""
        site = self.site
        if meter not in site.circuit_names:
            return []
        root = site.circuit_names.index(meter)
        out = []
        for name, k in zip(site.charger_names, site.chargers):
            c = k.circuit
            while c >= 0 and c != root:
                c = site.circuits[c].parent
            if c == root:
                out.append((name, list(k.phase_map[:k.phases])))
        return out

    def _ev_sum(self, meter: str, chargers: dict) -> list:
        tot = [0.0, 0.0, 0.0]
        sub = self._meter_subtree.get(meter)
        if sub is None:     # the site does not change: walk the circuit tree once per meter
            sub = self._meter_subtree[meter] = [(name, tuple(enumerate(pm))) for name, pm in self._under_meter(meter)]
        for name, pairs in sub:
            r = chargers.get(name)
            if r is None:
                continue
            cur = r["current_a"]
            for conductor, phase in pairs:
                tot[phase] += float(cur[conductor])
        return tot

    def _frozen(self, name: str, currents, chargers: dict, now_ms: int) -> bool:
        """True when the meter answers but its values stopped updating (frozen): its three currents
        stayed bit-identical while the EVs under it changed their draw by more than
        FROZEN_EV_DELTA_A on a phase, and that change is older than the meter can lag
        (``meter_latency_ms`` + 2 cycles). A frozen meter's readings are withheld until a value
        changes, so the core ages them into its stale ladder (fallback budget). A constant load with
        constant EVs is never taken for frozen, nor a meter that is one poll behind EVs that moved
        after a quiet spell: only a meter that contradicts the chargers it feeds for longer than its
        lag is."""
        key = tuple(currents)
        last = self._meter_seen.get(name)
        lag_ms = self.site.params.meter_latency_ms + 2 * self.site.cycle_ms
        # the cycles' readings (references: a new dict per cycle, never mutated) back to the newest
        # one at least lag_ms old: what the meter must reflect by now
        recent = self._meter_recent.get(name)
        if recent is None:
            recent = self._meter_recent[name] = []
        recent.append((now_ms, chargers))
        drop = 0
        while drop + 1 < len(recent) and recent[drop + 1][0] <= now_ms - lag_ms:
            drop += 1
        if drop:
            del recent[:drop]
        if last is None or last[0] != key:
            if last is not None and last[3]:
                self.failures.append(Failure(now_ms, name, "read", "meter values changing again (was frozen)"))
            # the readings the EV sum comes from, not the sum: it is only needed once the values
            # have held past the meter's lag, and a live meter changes every cycle (the cycle's
            # readings are never mutated: a new dict per cycle)
            self._meter_seen[name] = (key, now_ms, chargers, False)
            return False
        if last[3]:
            return True
        if now_ms - last[1] <= lag_ms:
            return False
        then = last[2]
        if then.__class__ is dict:
            then = self._ev_sum(name, then)
            self._meter_seen[name] = last = (key, last[1], then, False)
        # recent[0] is at least lag_ms old and no older than the values (first seen > lag_ms ago)
        moved = max(abs(a - b) for a, b in zip(self._ev_sum(name, recent[0][1]), then))
        if moved > FROZEN_EV_DELTA_A:
            self.failures.append(Failure(now_ms, name, "read", f"meter frozen: values unchanged for "
                                         f"{(now_ms - last[1]) / 1000:g} s while the EVs under it changed "
                                         f"by {moved:.1f} A"))
            self._meter_seen[name] = (key, last[1], then, True)
            return True
        return False

    def restart(self):
        """Controller restart: the allocator loses its state; devices keep theirs."""
        self.alloc = self.allocator_factory(self.site)
        self.written.clear()
        self.phases_written.clear()
        self.configured = False

    def _check_armed(self, ep: Endpoint):
        if not ep.loopback and not self.armed:
            raise NotArmed(f"refusing to write to {ep.name} (a non-loopback device) without --arm")

    async def _write(self, ep: Endpoint, writes, now_ms: int) -> bool:
        self._check_armed(ep)
        try:
            for table, address, words in writes:
                await ep.link.write(ep.unit, table, address, words)
            return True
        except (ModbusError, LinkTimeout, OSError) as exc:
            self.failures.append(Failure(now_ms, ep.name, "write", f"{type(exc).__name__}: {exc}"))
            return False

    @staticmethod
    def _direct_read(ep: Endpoint) -> tuple:
        """(link's read_many_shared or read_many_now, the driver's plan tuple, decoder) for an
        in-memory link (fast mode: the whole plan in one call), else (None, None, None): read
        through the awaitable link. The image keys its plan memo on the plan tuple, and the
        answers and a charger's reading come without copies (read_many_shared, decode_shared):
        the controller only reads them."""
        drv = ep.driver
        link = ep.link
        now = getattr(link, "read_many_shared", None) or getattr(link, "read_many_now", None)
        if now is None:
            return None, None, None
        return now, drv.read_plan_view(), getattr(drv, "decode_shared", None) or drv.decode

    async def _read(self, ep: Endpoint, now_ms: int):
        try:
            now, plan, dec = self._direct_read(ep)
            if now is not None:
                return dec(now(ep.unit, plan))
            drv = ep.driver
            link = ep.link
            many = getattr(link, "read_many", None)
            if many is not None:
                responses = await many(ep.unit, drv.read_plan())
            else:
                responses = [await link.read(ep.unit, t, a, n) for t, a, n in drv.read_plan()]
            return drv.decode(responses)
        except _READ_ERRORS as exc:
            self._read_failed(ep, now_ms, exc)
            return None

    def _read_failed(self, ep: Endpoint, now_ms: int, exc: Exception) -> None:
        self.failures.append(Failure(now_ms, ep.name, "read", f"{type(exc).__name__}: {exc}"))

    async def configure(self, now_ms: int):
        """Start-up: set each charger's own failsafe (safe current and communication timeout)."""
        cfg = {n: k for n, k in zip(self.site.charger_names, self.site.chargers)}
        timeout_s = max(5.0, 3 * self.site.params.charger_timeout_ms / 1000)
        plans = [(ep, ep.driver.failsafe_writes(cfg[ep.name].failsafe_ma / 1000, timeout_s))
                 for ep in self.chargers]
        if self.concurrent_setup:
            for ep, _ in plans:         # refuse before the first write, not halfway through
                self._check_armed(ep)
            # a bounded number at a time: each request keeps its answer time (a burst of 200
            # would queue at the servers past the masters' timeouts)
            gate = asyncio.Semaphore(SETUP_CONCURRENCY)

            async def one(ep, writes):
                async with gate:
                    await self._write(ep, writes, now_ms)

            await asyncio.gather(*(one(ep, writes) for ep, writes in plans))
        else:
            for ep, writes in plans:
                await self._write(ep, writes, now_ms)
        self._out_scan = None       # (the failsafe timeouts set the heartbeat intervals)
        self.configured = True

    async def cycle(self, now_ms: int):
        """One scan cycle at ``now_ms``; returns the allocator's result (None in the safe state)."""
        wall0 = time.perf_counter()
        if not self.configured:
            await self.configure(now_ms)
        read = self._read
        mscan = self._meter_scan
        if mscan is None:
            mscan = self._meter_scan = [(ep, *self._direct_read(ep)) for ep in self.meters]
        raw_meters = {}
        for ep, link_now, plan, dec in mscan:
            if link_now is not None:        # as for the chargers below
                try:
                    currents = dec(link_now(ep.unit, plan))
                except _READ_ERRORS as exc:
                    self._read_failed(ep, now_ms, exc)
                    continue
            else:
                currents = await read(ep, now_ms)
            if currents is not None:
                raw_meters[ep.name] = currents
        chargers = {}
        written = self.written
        session_info = self.session_info
        scan = self._scan
        if scan is None:
            scan = self._scan = [(ep, ep.name, ep.unit, *self._direct_read(ep)) for ep in self.chargers]
        seen = self._seen
        for ep, name, unit, link_now, plan, dec in scan:
            if link_now is not None:
                # an in-memory link: _read's fast path, without a coroutine per device
                try:
                    r = dec(link_now(unit, plan))
                except _READ_ERRORS as exc:
                    self._read_failed(ep, now_ms, exc)
                    continue
            else:
                r = await read(ep, now_ms)
                if r is None:
                    continue
            state = r.state
            if state == "unavailable" and written.get(name) == 0:
                # KEBA P30 and CHARX pause through their enable register and then report
                # "unavailable": that is our own pause, not an out-of-service charger
                state = "connected_idle"
            # decode_shared gives the same reading object while its currents hold: last cycle's
            # copy of them is still right (nothing downstream mutates a reading)
            last = seen.get(name)
            if last is not None and last[0] is r:
                cur = last[1]
            else:
                cur = list(r.currents_a)
                seen[name] = (r, cur)
            info = session_info(name) if session_info is not None else None
            if info is None:
                reading = {"state": state, "current_a": cur}
            else:
                dep, need = info
                if dep is not None and need is not None:    # (a session with both: one build)
                    reading = {"state": state, "current_a": cur, "departure_s": dep, "energy_need_kwh": need}
                else:
                    reading = {"state": state, "current_a": cur}
                    if dep is not None:
                        reading["departure_s"] = dep
                    if need is not None:
                        reading["energy_need_kwh"] = need
            chargers[name] = reading
        meters = {n: cur for n, cur in raw_meters.items() if not self._frozen(n, cur, chargers, now_ms)}
        self.last_readings = {"meters": meters, "chargers": chargers}
        if self.energy is not None and not self.safe_state:
            meters, chargers = self.energy.before_step(now_ms, meters, chargers, self.site.cycle_ms)
        if self.safe_state:
            res = None
        else:
            # the controller and the runner only read the result: the core's no-copy step when
            # the decision maker has one (another DUT may not)
            step = getattr(self.alloc, "step_shared", None) or self.alloc.step
            res = step(now_ms, meters=meters, chargers=chargers)
        self.last_result = res
        by_name = res.chargers if res is not None else None
        phases_written, last_write_ms, last_hb_ms = self.phases_written, self.last_write_ms, self.last_hb_ms
        outs = self._out_scan
        if outs is None:
            # the drivers' heartbeat intervals hold from configure() (which sets their failsafe
            # timeout) to the next: found once, not through a property per charger per cycle
            outs = self._out_scan = [(ep, ep.name, ep.driver, *self._out_of(ep.driver)) for ep in self.chargers]
        for ep, name, drv, hb_ms, hb_sp, switches in outs:
            if by_name is not None:
                cr = by_name[name]
                # (the core's result: its flags without the property call; another DUT's: lost)
                if (cr.flags & _LOST) if cr.__class__ is ChargerResult else cr.lost:
                    continue            # no answer: writing would only add timeouts
                target, phases = cr.current_a, cr.phases
            else:                       # safe state: each charger at its safe current
                k = self.site.chargers[self.site.charger_names.index(name)]
                target, phases = k.failsafe_ma / 1000, None
            hb_due = hb_ms is not None and now_ms - last_hb_ms.get(name, -10**12) >= hb_ms
            # (a driver without a phase register has no phase writes for 1 or 3 phases: only
            # any other value is asked, for the error it raises)
            if phases is not None and phases_written.get(name) != phases and \
                    (switches or phases not in (1, 3)) and drv.phase_writes(phases):
                if await self._write(ep, drv.phase_writes(phases), now_ms):
                    phases_written[name] = phases
            if written.get(name) != target or (hb_due and hb_sp):
                if await self._write(ep, drv.setpoint_writes(target), now_ms):
                    written[name] = target
                    last_write_ms[name] = now_ms
                    if hb_sp:
                        last_hb_ms[name] = now_ms
            if hb_due and not hb_sp:
                writes = drv.heartbeat_writes()
                if writes and await self._write(ep, writes, now_ms):
                    last_hb_ms[name] = now_ms
                elif not writes:
                    last_hb_ms[name] = now_ms
        if self._account(now_ms, (time.perf_counter() - wall0) * 1000):
            # the overrun fault is declared now: drive the outputs to their safe state at once
            await self._write_safe(now_ms)
            res = None
        self.last_result = res
        return res

    @staticmethod
    def _out_of(drv) -> tuple:
        """(heartbeat interval in ms or None, heartbeat_is_setpoint, has a phase register) of a
        charger driver, as the write loop uses them."""
        interval = drv.heartbeat_interval_s
        return (None if interval is None else interval * 1000, drv.heartbeat_is_setpoint,
                getattr(drv, "switches_phases", True))

    async def _write_safe(self, now_ms: int):
        cfg = {n: k for n, k in zip(self.site.charger_names, self.site.chargers)}
        for ep in self.chargers:
            safe = cfg[ep.name].failsafe_ma / 1000
            if await self._write(ep, ep.driver.setpoint_writes(safe), now_ms):
                self.written[ep.name] = safe

    def _account(self, now_ms: int, wall_ms: float) -> bool:
        """Record the cycle's duration; True when this cycle declares the overrun fault."""
        st = self.stats
        st.cycles += 1
        if self.measure_wall:
            elapsed = wall_ms
        else:
            # the links that count a latency (fast mode: FastLink) do not change: found once
            timed = self._timed_links
            if timed is None:
                timed = self._timed_links = [e.link for e in self.meters + self.chargers if hasattr(e.link, "latency_ms")]
            elapsed = float(sum([link.latency_ms for link in timed]))
            if elapsed:         # (latencies are never negative: a zero sum leaves nothing to reset)
                for link in timed:
                    link.latency_ms = 0
        st.durations_ms.append(elapsed)
        st.starts_ms.append(now_ms)
        if elapsed > self.site.cycle_ms:
            st.overruns += 1
            st.consecutive_overruns += 1
            if st.consecutive_overruns >= self.max_overruns and not self.safe_state:
                self.safe_state = True
                st.safe_state_entries += 1
                return True
        else:
            st.consecutive_overruns = 0
            self.safe_state = False
        return False
