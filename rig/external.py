"""External devices under test over real Modbus: a vendor's controller, or the built-in one as a
separate process.

Two halves that meet at an endpoints file (the JSON ``dlbrig emulate --endpoints`` writes):

- :func:`control_async` (``dlbrig control``) is a site controller in its own process: it reads a
  site spec and an endpoints file, polls every meter and charger over Modbus through its product
  profile, runs the allocator (the built-in core, or the naive negative control) and writes
  set-points and heartbeats, on the site's cycle, scaled by ``--speed``. Every exit path (normal
  end, exception, SIGINT, SIGTERM) writes each charger's safe current before closing. A device on a
  non-loopback address is refused unless ``armed``.
- :func:`judge_external_async` (``dlbrig certify --dut modbus-controller``) is the rig's side: it
  emulates the scenario's site exactly as ``dlbrig emulate`` does, writes ``endpoints.json`` and
  ``site.json`` into the case folder, starts the DUT command, starts the scenario clock when the DUT
  first writes to a charger (so start-up time is not judged), applies the timeline's faults, and
  records ground truth and what the DUT wrote to each charger, for the same checkers as every other
  case. A ``controller restart`` step of the timeline restarts the DUT process.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ..core import Site
from ..firmware_sim.profiles.driver import driver_for
from .clock import WallClock
from .controller import Endpoint, NotArmed, SiteController
from .modbus import FrameRecorder, ModbusEmulator, ModbusMaster
from .trace import write_json
from .wire import bounded, is_loopback, signals_set

WRITE_FUNCTIONS = (5, 6, 15, 16, 23)
DUT_START_TIMEOUT_S = 30.0        # real seconds a DUT may take from launch to its first write
DUT_STOP_GRACE_S = 5.0            # SIGTERM, then SIGKILL after this long


class EndpointsError(ValueError):
    """A bad endpoints file: names the file, the entry and the problem."""


def load_endpoints(path) -> list[dict]:
    """Read and check an endpoints file (a list of device records)."""
    from ..firmware_sim.profiles import get_profile

    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EndpointsError(f"{p}: no such file") from None
    except json.JSONDecodeError as exc:
        raise EndpointsError(f"{p}:{exc.lineno}: not JSON ({exc.msg})") from None
    if not isinstance(data, list):
        raise EndpointsError(f"{p}: expected a list of endpoint records")
    out = []
    for i, ep in enumerate(data):
        where = f"{p}: entry {i}"
        if not isinstance(ep, dict):
            raise EndpointsError(f"{where}: expected an object")
        if ep.get("kind") not in ("meter", "charger"):
            continue                      # instruments and other kinds are not the controller's
        for key in ("device", "profile", "unit"):
            if ep.get(key) in (None, ""):
                raise EndpointsError(f"{where}: field {key!r} is missing")
        try:
            get_profile(ep["profile"])
        except KeyError:
            raise EndpointsError(f"{where}: field 'profile': unknown profile {ep['profile']!r}") from None
        if ep.get("serial") in (None, "") and (ep.get("host") in (None, "") or not ep.get("port")):
            raise EndpointsError(f"{where}: field 'host'/'port': a network endpoint needs both "
                                 "(or 'serial' for an RTU line)")
        out.append(ep)
    return out


def _master_for(ep: dict, timeout_s: float) -> ModbusMaster:
    if ep.get("serial"):
        return ModbusMaster(ep["serial"], transport="rtu", timeout_s=timeout_s, retries=1)
    transport = "tcp" if ep.get("transport", "tcp") == "tcp" else "rtu-over-tcp"
    return ModbusMaster(ep["host"], int(ep["port"]), transport=transport, timeout_s=timeout_s, retries=1)


def build_controller(site: Site, endpoints: list[dict], clock, *, armed: bool = False,
                     allocator_factory=None, timeout_s: float = 0.5):
    """A :class:`SiteController` wired to the endpoints over Modbus masters (one per line).
    Returns ``(controller, masters)``. Devices of the site missing from the endpoints are an error."""
    from .wire import WireLink

    masters: dict = {}
    eps = []
    names = set()
    for ep in endpoints:
        key = (ep.get("serial") or ep["host"], ep.get("port"))
        if key not in masters:
            masters[key] = _master_for(ep, timeout_s)
        if ep["device"] in names:
            continue
        names.add(ep["device"])
        drv = driver_for(ep["profile"], int(ep["unit"]))
        loopback = bool(ep.get("serial")) is False and is_loopback(ep.get("host"))
        eps.append(Endpoint(ep["device"], ep["kind"], drv, WireLink(masters[key]), int(ep["unit"]), loopback))
    missing = [n for n in site.charger_names if n not in names]
    if missing:
        raise EndpointsError(f"the endpoints have no charger {', '.join(missing)} of the site")
    metered = [n for n, c in zip(site.circuit_names, site.circuits) if c.has_meter]
    missing = [n for n in metered if n not in names]
    if missing:
        raise EndpointsError(f"the endpoints have no meter for circuit {', '.join(missing)} of the site")
    unknown = [e.name for e in eps if e.name not in site.charger_names and e.name not in site.circuit_names]
    eps = [e for e in eps if e.name not in unknown]
    ctrl = SiteController(site, eps, clock, armed=armed, allocator_factory=allocator_factory,
                          measure_wall=True)
    return ctrl, list(masters.values())


def allocator_named(name: str):
    if name == "builtin":
        return None
    if name == "naive":
        from .naive import NaiveAllocator
        return NaiveAllocator
    raise ValueError(f"unknown allocator {name!r} (builtin, naive)")


async def control_async(site: Site, endpoints: list[dict], *, speed: float = 1.0, duration_ms=None,
                        allocator: str = "builtin", armed: bool = False, log=None) -> dict:
    """Run the site controller against the endpoints until the duration ends or a signal arrives.
    Returns the controller's statistics. The outputs are left safe on every exit path."""
    if not armed:
        remote = sorted({ep.get("host") for ep in endpoints if not ep.get("serial") and not is_loopback(ep.get("host"))})
        if remote:
            raise NotArmed(f"refusing to control non-loopback devices ({', '.join(remote)}) without --arm")
    clock = WallClock(speed)
    ctrl, masters = build_controller(site, endpoints, clock, armed=armed,
                                     allocator_factory=allocator_named(allocator),
                                     timeout_s=max(0.05, min(0.5, site.cycle_ms / 1000 / speed / 4)))
    stop = asyncio.Event()
    with signals_set(asyncio.get_running_loop(), stop):   # the safe exit below runs with them still set
        try:
            await asyncio.gather(*(m.connect() for m in masters), return_exceptions=True)
            next_t = 0
            while not stop.is_set() and (duration_ms is None or next_t < duration_ms):
                delay = (next_t - clock.now_ms()) / 1000 / speed
                if delay > 0:
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(stop.wait(), delay)
                    if stop.is_set():
                        break
                res = await ctrl.cycle(clock.now_ms())
                if log is not None:
                    log(clock.now_ms(), res)
                next_t += site.cycle_ms
                if next_t <= clock.now_ms() - site.cycle_ms:      # fell behind: skip, do not burst
                    next_t = (clock.now_ms() // site.cycle_ms + 1) * site.cycle_ms
        finally:
            # leave every charger at its safe current, whatever ended the run
            await bounded(ctrl._write_safe(clock.now_ms()), 5.0)
            for m in masters:
                await bounded(m.close(), 2.0)
    return {"cycles": ctrl.stats.cycles, "failed_transactions": len(ctrl.failures),
            **ctrl.stats.summary(site.cycle_ms)}


# ------------------------------------------------------------------------------- the rig's side
class _HeldClock:
    """A wall clock that reads 0 until :meth:`start`: the scenario's time begins when the DUT is up."""

    def __init__(self, speed: float):
        self.speed = float(speed)
        self._wall: WallClock | None = None

    def start(self):
        self._wall = WallClock(self.speed)

    @property
    def started(self) -> bool:
        return self._wall is not None

    def now_ms(self) -> int:
        return self._wall.now_ms() if self._wall is not None else 0

    async def sleep_until(self, t_ms: int) -> None:
        if self._wall is not None:
            await self._wall.sleep_until(t_ms)


@dataclass
class _Observed:
    current_a: float | None
    reason: str = "external"
    phases: int = 0
    lost: bool = False


class _ObservedResult:
    """What the external controller decided, as seen by the chargers: the last set-point each one
    received (None before the first write). Shaped like the allocator's result for the recording."""

    def __init__(self, plant):
        self.chargers = {}
        for name, cp in plant.chargers.items():
            sp = getattr(cp.evse, "_setpoint_a", None)
            self.chargers[name] = _Observed(None if sp is None else float(sp))


class DutProcess:
    """The DUT command: ``{endpoints}``, ``{site}``, ``{speed}`` and ``{out}`` are substituted."""

    def __init__(self, template: str, *, endpoints: Path, site: Path, speed: float, out: Path):
        self.argv = [a.format(endpoints=endpoints, site=site, speed=speed, out=out, python=sys.executable)
                     for a in shlex.split(template)]
        self.log_path = out / "dut.log"
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.down_on_purpose = False     # between the stop and the start of a restart

    def start(self):
        self.starts += 1
        self.down_on_purpose = False
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        finally:
            log.close()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    async def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + DUT_STOP_GRACE_S
        while self.proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def kill(self):
        """A crash: no chance to clean up (the controller-restart fault)."""
        self.down_on_purpose = True
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def log_tail(self, n: int = 20) -> str:
        try:
            lines = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        except FileNotFoundError:
            return ""
        return "\n".join(lines[-n:])


class DutError(RuntimeError):
    """The external DUT did not come up, or died."""


async def judge_external_async(scenario, out_dir, *, command: str, speed: float = 1.0,
                               host: str = "127.0.0.1", recording=None, tap: FrameRecorder | None = None,
                               start_timeout_s: float = DUT_START_TIMEOUT_S) -> dict:
    from .runner import RESTART_MS, Run
    from .wire import CommFaultHook, _physics, serve_plant

    run = Run(scenario, out_dir, recording=recording)
    clock = _HeldClock(speed)
    first_write = asyncio.Event()

    def watch(frame):
        if tap is not None:
            tap(frame)
        if (frame.direction == "rx" and frame.function in WRITE_FUNCTIONS
                and frame.device in run.plant.chargers):
            first_write.set()

    emulator = ModbusEmulator(host=host, clock=clock.now_ms, tap=watch,
                              fault_hook=CommFaultHook(run.plant.comm, clock))
    serve_plant(run.plant, emulator)
    out = Path(out_dir)
    ep_path, site_path = out / "endpoints.json", out / "site.json"
    dut = DutProcess(command, endpoints=ep_path, site=site_path, speed=speed, out=out)
    stop = asyncio.Event()
    interrupted = False
    wall0 = time.perf_counter()
    physics = None
    try:
        await emulator.start()
        emulator.write_endpoints(ep_path)
        write_json(site_path, scenario.site)
        dut.start()
        deadline = time.monotonic() + start_timeout_s
        while not first_write.is_set():
            if not dut.alive():
                raise DutError(f"the DUT exited with code {dut.proc.returncode} before writing a set-point:\n"
                               f"{dut.log_tail()}")
            if time.monotonic() > deadline:
                raise DutError(f"the DUT wrote no set-point within {start_timeout_s:.0f} s of its start")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(first_write.wait(), 0.05)
        clock.start()
        physics = asyncio.ensure_future(_physics(run.plant, clock, stop, run.duration_ms))
        next_t, restarts_seen, last_t = 0, 0, None
        while next_t < run.duration_ms:
            await clock.sleep_until(next_t)
            t = max(clock.now_ms(), run.plant.now_ms)
            run.plant.advance(t)
            if len(run.plant.controller_restarts) > restarts_seen:
                restarts_seen = len(run.plant.controller_restarts)
                dut.kill()                       # a restart: the DUT loses its state
                asyncio.get_running_loop().call_later(RESTART_MS / 1000 / speed, dut.start)
            elif not dut.alive() and not dut.down_on_purpose:
                raise DutError(f"the DUT died (exit code {dut.proc.returncode}) at t={t / 1000:.1f} s:\n"
                               f"{dut.log_tail()}")
            run.record(t, _ObservedResult(run.plant), (t - last_t) / 1000 if last_t is not None else run.cycle_ms / 1000)
            last_t = t
            next_t += run.cycle_ms
            if next_t <= clock.now_ms() - run.cycle_ms:
                next_t = (clock.now_ms() // run.cycle_ms + 1) * run.cycle_ms
    except (KeyboardInterrupt, asyncio.CancelledError):
        interrupted = True
    finally:
        stop.set()
        if physics is not None:
            with contextlib.suppress(Exception):
                await physics
        await dut.stop()
        with contextlib.suppress(Exception):
            await emulator.stop()
        run.trace.close()
        ctrl = SiteController(run.site, [], clock)      # no controller of ours: empty statistics
        summary = run.summary(ctrl, "wire", time.perf_counter() - wall0, interrupted)
        summary["dut_command"] = dut.argv
        summary["dut_starts"] = dut.starts
        if recording is not None:
            recording.finish(run.plant, None)
        write_json(out / "summary.json", summary)
    return summary
