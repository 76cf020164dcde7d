"""Wire mode: the plant's devices on real Modbus servers, the controller on real sockets.

One asyncio loop holds the Modbus servers (:mod:`dlbrig.rig.modbus`), a physics task that advances
the plant on the wall clock (optionally sped up), and (for ``dlbrig run``) the site controller,
which reaches every device through a :class:`~dlbrig.rig.modbus.ModbusMaster`. ``dlbrig emulate``
runs the same servers and physics with no controller, so an external (vendor) controller can be
pointed at the endpoints.

Communication faults of the timeline act in the servers' fault hook (the same
:class:`~dlbrig.rig.links.CommFaults` the fast links consult), so both modes see the same timeline.
"""
from __future__ import annotations

import asyncio
import contextlib
import signal
import time

from .clock import WallClock
from .controller import SiteController
from .links import LinkTimeout
from .modbus import FaultAction, FrameRecorder, ModbusEmulator, ModbusMaster
from .modbus.client import ModbusConnectionError, ModbusTimeout
from .runner import RESTART_MS, Run
from .trace import write_json

PHYSICS_TICK_MS = 100


class CommFaultHook:
    """Server-side face of the timeline's communication faults."""

    def __init__(self, comm, clock):
        self.comm, self.clock = comm, clock

    def on_request(self, frame):
        f = self.comm.check(frame.device, self.clock.now_ms()) if frame.device else None
        if f is None:
            return None
        if f.kind == "offline":
            return FaultAction(drop=True)
        if f.kind == "exception":
            return FaultAction(exception=f.code)
        if f.kind == "delay":
            return FaultAction(delay_ms=f.delay_ms / self.clock.speed)
        if f.kind == "drop":
            err, _ = self.comm.outcome(frame.device, self.clock.now_ms())
            return FaultAction(drop=True) if err is not None else None
        return None


class WireLink:
    """The controller's link to one device over a Modbus master (shared by the devices of a bus)."""

    def __init__(self, master: ModbusMaster):
        self.master = master

    async def read(self, unit, table, address, count):
        try:
            return await self.master.read(unit, table, address, count)
        except (ModbusTimeout, ModbusConnectionError) as exc:
            raise LinkTimeout(str(exc)) from exc

    async def write(self, unit, table, address, words):
        try:
            await self.master.write(unit, address, list(words), table=table)
        except (ModbusTimeout, ModbusConnectionError) as exc:
            raise LinkTimeout(str(exc)) from exc


def serve_plant(plant, emulator: ModbusEmulator, *, base_port: int = 0) -> None:
    """Register every plant device with the emulator: TCP devices on their own port, RTU devices
    grouped per bus on one RTU-over-TCP line each."""
    buses: dict[str, list] = {}
    port = base_port
    for name, dev in plant.devices.items():
        if dev.transport == "rtu":
            buses.setdefault(dev.bus or "rs485-1", []).append((name, dev.image))
        else:
            emulator.serve_tcp({name: dev.image}, port=port)
            port = port + 1 if port else 0
    for bus, devices in buses.items():
        emulator.serve_rtu(devices, medium="tcp", port=port, name=bus)
        port = port + 1 if port else 0


async def _physics(plant, clock, stop: asyncio.Event, until_ms: int | None):
    while not stop.is_set():
        t = clock.now_ms()
        if until_ms is not None and t >= until_ms:
            break
        if t > plant.now_ms:
            plant.advance(t)
        await asyncio.sleep(PHYSICS_TICK_MS / 1000 / clock.speed)


async def run_wire_async(scenario, out_dir, *, speed: float = 1.0, host: str = "127.0.0.1", **kw) -> dict:
    run = Run(scenario, out_dir, **kw)
    clock = WallClock(speed)
    tap = FrameRecorder(maxlen=200_000)
    emulator = ModbusEmulator(host=host, clock=clock.now_ms, tap=tap,
                              fault_hook=CommFaultHook(run.plant.comm, clock))
    serve_plant(run.plant, emulator)
    interrupted = False
    stop = asyncio.Event()
    masters = []
    ctrl = None
    wall0 = time.perf_counter()
    try:
        await emulator.start()
        links = {}
        by_port = {}
        for ep in emulator.endpoints():
            key = (ep["host"], ep["port"])
            if key not in by_port:
                transport = "tcp" if ep["transport"] == "tcp" else "rtu-over-tcp"
                m = ModbusMaster(ep["host"], ep["port"], transport=transport,
                                 timeout_s=max(0.05, 0.5 / speed), retries=1)
                by_port[key] = m
                masters.append(m)
            links.setdefault(ep["device"], (WireLink(by_port[key]), True))
        # connect every master up front (concurrently), not one by one inside the first cycle
        await asyncio.gather(*(m.connect() for m in masters), return_exceptions=True)
        ctrl = SiteController(run.site, run.endpoints(links), clock, session_info=run.plant.session_info,
                              backend=run.backend, measure_wall=True, concurrent_setup=True)
        physics = asyncio.ensure_future(_physics(run.plant, clock, stop, run.duration_ms))
        next_t, silent_until, restarts_seen, last_t = 0, -1, 0, None
        while next_t < run.duration_ms:
            await clock.sleep_until(next_t)
            t = max(clock.now_ms(), run.plant.now_ms)
            run.plant.advance(t)
            if len(run.plant.controller_restarts) > restarts_seen:
                restarts_seen = len(run.plant.controller_restarts)
                ctrl.restart()
                silent_until = t + RESTART_MS
            res = ctrl.last_result
            if t >= silent_until:
                res = await ctrl.cycle(t)
            # a late cycle covers more time: weight the sample by the real time since the last one
            run.record(t, res, (t - last_t) / 1000 if last_t is not None else run.cycle_ms / 1000)
            last_t = t
            if run.progress is not None:
                run.progress(t, run.duration_ms)
            next_t += run.cycle_ms
            if next_t <= clock.now_ms() - run.cycle_ms:     # fell behind: skip, do not burst
                next_t = (clock.now_ms() // run.cycle_ms + 1) * run.cycle_ms
        stop.set()
        await physics
    except (KeyboardInterrupt, asyncio.CancelledError):
        interrupted = True
    finally:
        stop.set()
        for m in masters:
            with contextlib.suppress(Exception):
                await m.close()
        with contextlib.suppress(Exception):
            await emulator.stop()
        run.trace.close()
        if ctrl is None:
            ctrl = SiteController(run.site, [], clock)
        summary = run.summary(ctrl, "wire", time.perf_counter() - wall0, interrupted)
        summary["frames"] = len(tap.frames)
        write_json(run.out_dir / "summary.json", summary)
    return summary


def run_wire(scenario, out_dir, **kw) -> dict:
    return asyncio.run(run_wire_async(scenario, out_dir, **kw))


async def emulate_async(scenario, *, host="127.0.0.1", base_port=0, endpoints_file=None,
                        allow_non_loopback=False, duration_ms=None, speed=1.0, ready=None) -> None:
    """Serve the scenario's devices in real time with no controller, until interrupted."""
    from ..core import Site
    from .plant import Plant

    plant = Plant(scenario, Site.from_dict(scenario.site))
    clock = WallClock(speed)
    emulator = ModbusEmulator(host=host, allow_non_loopback=allow_non_loopback, clock=clock.now_ms,
                              fault_hook=CommFaultHook(plant.comm, clock))
    serve_plant(plant, emulator, base_port=base_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    await emulator.start()
    try:
        if endpoints_file:
            emulator.write_endpoints(endpoints_file)
        if ready is not None:
            ready(emulator.endpoints())
        physics = asyncio.ensure_future(_physics(plant, clock, stop, duration_ms))
        waiter = asyncio.ensure_future(stop.wait())
        await asyncio.wait({physics, waiter}, return_when=asyncio.FIRST_COMPLETED)
        stop.set()
        waiter.cancel()
        await physics
    finally:
        await emulator.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
