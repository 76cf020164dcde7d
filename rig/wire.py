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


async def _physics(plant, clock, stop: asyncio.Event, until_ms: int | None, couple=None):
    while not stop.is_set():
        t = clock.now_ms()
        if until_ms is not None and t >= until_ms:
            break
        if t > plant.now_ms:
            plant.advance(t)
            if couple is not None:
                couple(plant.now_ms)
        await asyncio.sleep(PHYSICS_TICK_MS / 1000 / clock.speed)


async def bounded(awaitable, timeout_s: float):
    """Await ``awaitable`` for at most ``timeout_s``; on timeout cancel it and go on WITHOUT waiting
    for the cancellation to finish (``asyncio.wait_for`` would wait, and a library that swallows the
    cancellation then hangs the exit path). Errors are swallowed: an exit path must reach its end.
    Returns the result, or None."""
    task = asyncio.ensure_future(awaitable)
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout_s)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if not done:
        task.cancel()
        return None
    if task.cancelled() or task.exception() is not None:
        return None
    return task.result()


def is_loopback(host) -> bool:
    """True for loopback addresses and names (None, localhost, 127.0.0.0/8, ::1)."""
    import ipaddress
    if host in (None, "localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@contextlib.contextmanager
def signals_set(loop, stop: asyncio.Event):
    """SIGINT / SIGTERM set ``stop`` while inside the block (a long-running emulator or controller
    ends its loop and runs its own safe exit). Where the loop cannot take signal handlers (not the
    main thread: RuntimeError; Windows: NotImplementedError) the block runs without them."""
    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    try:
        yield
    finally:
        for sig in installed:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)


def _install_cancel_on_signals(loop, task, fired: list):
    """SIGINT / SIGTERM cancel the run task, so its finally leaves everything safe. ``fired`` gets
    an entry too: the run loop checks it, because a library awaited at that moment may swallow the
    cancellation (seen with a Modbus transaction in flight)."""
    installed = []

    def cancel_once():
        # a second signal must not cancel the task again: it would cut the safe-exit path short
        if not fired:
            fired.append(True)
            task.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, cancel_once)
            installed.append(sig)
    return installed


async def run_wire_async(scenario, out_dir, *, speed: float = 1.0, host: str = "127.0.0.1",
                         armed: bool = False, endpoints: list | None = None, ready=None,
                         tap: FrameRecorder | None = None, **kw) -> dict:
    """``endpoints``: devices already served elsewhere (``dlbrig emulate --endpoints``): the rig
    connects to them instead of serving its own plant (the local plant then only paces the
    timeline; ground truth comes from the scenario's instruments).  ``armed``: allow writes to
    non-loopback devices and enabling instrument outputs.  ``tap``: a :class:`FrameRecorder` that
    keeps the raw frames (for a pcap); one is made if None."""
    from .visa.bench import BenchClient, EmulatedBench, begin_measured, instrument_resources, record_measured
    from .visa.server import InstrumentEmulator

    run = Run(scenario, out_dir, **kw)
    clock = WallClock(speed)
    tap = tap if tap is not None else FrameRecorder(maxlen=200_000)
    external = endpoints is not None
    emulator = ModbusEmulator(host=host, clock=clock.now_ms, tap=tap,
                              fault_hook=CommFaultHook(run.plant.comm, clock))
    inst_emu = InstrumentEmulator(host=host)
    ebench = None
    if not external:
        serve_plant(run.plant, emulator)
        if scenario.instruments:
            ebench = EmulatedBench(scenario, run.plant)
            ebench.serve(inst_emu)
    bench = None
    if scenario.instruments:
        # refuse before anything starts: outputs would be enabled, or a real instrument written
        BenchClient(scenario, {s.name: s.resource or "TCPIP0::127.0.0.1::1::SOCKET"
                               for s in scenario.instruments}, armed=armed).check_armed()
    loop = asyncio.get_running_loop()
    signalled: list = []
    sigs = _install_cancel_on_signals(loop, asyncio.current_task(), signalled)
    interrupted = False
    stop = asyncio.Event()
    masters = []
    ctrl = None
    t = 0
    wall0 = time.perf_counter()
    rec = run.recording
    try:
        await emulator.start()
        await inst_emu.start()
        device_eps = [e for e in (endpoints if external else emulator.endpoints()) if e.get("kind") != "instrument"]
        links = {}
        by_port = {}
        for ep in device_eps:
            if ep.get("serial"):
                continue            # a pty line: not reachable from here
            key = (ep["host"], ep["port"])
            if key not in by_port:
                transport = "tcp" if ep["transport"] == "tcp" else "rtu-over-tcp"
                m = ModbusMaster(ep["host"], ep["port"], transport=transport,
                                 timeout_s=max(0.05, 0.5 / speed), retries=1)
                by_port[key] = m
                masters.append(m)
            links.setdefault(ep["device"], (WireLink(by_port[key]), is_loopback(ep["host"])))
        missing = [n for n in run.plant.devices if n not in links]
        if missing:
            raise ValueError(f"no endpoint for device(s) {', '.join(missing)}")
        # connect every master up front (concurrently), not one by one inside the first cycle
        await asyncio.gather(*(m.connect() for m in masters), return_exceptions=True)
        ctrl = SiteController(run.site, run.endpoints(links), clock, session_info=run.plant.session_info,
                              backend=run.backend, measure_wall=True, armed=armed,
                              allocator_factory=run.allocator_factory, concurrent_setup=True)
        if scenario.instruments:
            inst_eps = endpoints if external else inst_emu.endpoints()
            bench = BenchClient(scenario, instrument_resources(scenario, inst_eps), armed=armed)
            await asyncio.to_thread(bench.open)
            await asyncio.to_thread(bench.prepare)
            begin_measured(run)
        if ready is not None:
            ready()
        couple = ebench.couple if ebench is not None else None
        physics = asyncio.ensure_future(_physics(run.plant, clock, stop, run.duration_ms, couple))
        next_t, silent_until, restarts_seen, last_t = 0, -1, 0, None
        while next_t < run.duration_ms:
            if signalled:
                raise asyncio.CancelledError
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
            dt_s = (t - last_t) / 1000 if last_t is not None else run.cycle_ms / 1000
            if bench is not None:
                if ebench is not None:
                    ebench.couple(run.plant.now_ms)
                await asyncio.to_thread(lambda: bench.follow(run.plant, external=external))
                reading = await asyncio.to_thread(bench.read)
                record_measured(run, ctrl, reading, t, res, dt_s)
            else:
                run.record(t, res, dt_s)
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
        task = asyncio.current_task()
        if task is not None and hasattr(task, "uncancel"):     # 3.11+: the cancels were ours, handled
            while task.cancelling():
                task.uncancel()
    finally:
        stop.set()
        for sig in sigs:        # a second Ctrl-C / SIGTERM must not cut the safe-exit path short
            with contextlib.suppress(Exception):
                loop.add_signal_handler(sig, lambda: None)
        # leave everything safe before the connections go: instrument outputs off, chargers at
        # their safe current (each step on its own: one failure must not skip the others)
        safe = {}
        if bench is not None:
            safe["instruments_off"] = await asyncio.to_thread(bench.safe_off)
        if ctrl is not None and ctrl.chargers:
            await bounded(ctrl._write_safe(t), max(2.0, 5.0 / speed))
            safe["chargers_safe_a"] = {k: v for k, v in ctrl.written.items()}
        if bench is not None:
            await asyncio.to_thread(bench.close)
        for m in masters:
            await bounded(m.close(), 2.0)
        await bounded(emulator.stop(), 5.0)
        await bounded(inst_emu.stop(), 5.0)
        for sig in sigs:
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
        run.trace.close()
        if ctrl is None:
            ctrl = SiteController(run.site, [], clock)
        summary = run.summary(ctrl, "wire", time.perf_counter() - wall0, interrupted)
        summary["frames"] = len(tap.frames)
        summary["ground_truth"] = "instruments" if bench is not None else "models"
        summary["exit_safe_state"] = safe
        if rec is not None:
            rec.finish(run.plant, ctrl)
        write_json(run.out_dir / "summary.json", summary)
    return summary


def run_wire(scenario, out_dir, **kw) -> dict:
    return asyncio.run(run_wire_async(scenario, out_dir, **kw))


async def emulate_async(scenario, *, host="127.0.0.1", base_port=0, endpoints_file=None,
                        allow_non_loopback=False, duration_ms=None, speed=1.0, ready=None) -> None:
    """Serve the scenario's devices (and its emulated instruments) in real time with no
    controller, until interrupted."""
    import json

    from ..core import Site
    from .plant import Plant
    from .visa.bench import EmulatedBench
    from .visa.server import InstrumentEmulator

    plant = Plant(scenario, Site.from_dict(scenario.site))
    clock = WallClock(speed)
    emulator = ModbusEmulator(host=host, allow_non_loopback=allow_non_loopback, clock=clock.now_ms,
                              fault_hook=CommFaultHook(plant.comm, clock))
    serve_plant(plant, emulator, base_port=base_port)
    inst_emu = InstrumentEmulator(host=host, allow_non_loopback=allow_non_loopback)
    ebench = EmulatedBench(scenario, plant)
    # with --base-port the instruments take the ports after the Modbus servers'
    ebench.serve(inst_emu, base_port=base_port + len(emulator.servers) if base_port else 0)
    ebench.couple(0)
    stop = asyncio.Event()
    with signals_set(asyncio.get_running_loop(), stop):
        await emulator.start()
        await inst_emu.start()
        try:
            eps = emulator.endpoints() + inst_emu.endpoints()
            if endpoints_file:
                with open(endpoints_file, "w", encoding="utf-8") as fh:
                    json.dump(eps, fh, indent=2)
                    fh.write("\n")
            if ready is not None:
                ready(eps)
            physics = asyncio.ensure_future(_physics(plant, clock, stop, duration_ms, ebench.couple))
            waiter = asyncio.ensure_future(stop.wait())
            await asyncio.wait({physics, waiter}, return_when=asyncio.FIRST_COMPLETED)
            stop.set()
            waiter.cancel()
            await physics
        finally:
            await emulator.stop()
            await inst_emu.stop()
