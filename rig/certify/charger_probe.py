"""Charger cases judged over Modbus alone: the rig as the charger's controller.

These cases need nothing but the charger's Modbus server, so they run the same against a charger
firmware_sim serves in this process (``--dut builtin``/``naive``, honouring ``--firmware``) and
against an external charger (``--dut modbus-charger --profile NAME --host H --port P``, a real
product or ``dlbrig emulate`` of another process). The charger must have an EV (or an EV simulator)
connected and asking for current, as the case's procedure says; the emulated one plugs one in.

- set-point following (COM-010): write a sequence of set-points, each must be offered within the
  PWM update spacing plus a tolerance; a set-point between 0 and 6 A is never offered;
- watchdog fallback (COM-011): configure the failsafe (safe current, timeout), then go quiet: the
  charger must fall back to its safe current within its timeout plus a tolerance;
- malformed frames (COM-012): frames crafted with scapy's Modbus layer (wrong MBAP length, bad
  protocol id, unknown function code, truncated PDU, oversized quantity, wrong unit id) get the
  right exception or silence, and the charger still answers a valid request afterwards.

Time is the charger's: wall time × ``speed`` (1 for a real product; an emulated charger of another
process runs at its own ``--speed``, which must then be given here too).
"""
from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

from .. import compliance as C
from ..faults.malformed import exchange as _exchange, malformed_frames

PWM_SPACING_S = 5.0          # IEC 61851-1: the PWM duty changes at most every 5 s
FOLLOW_TOLERANCE_S = 2.0     # on top of the spacing: poll period, EV-side settling
FALLBACK_TOLERANCE_S = 3.0   # on top of the charger's own timeout
POLL_S = 0.25                # charger time between two reads


@dataclass
class ChargerTarget:
    """Where the charger under test answers, and how to talk to it."""

    profile: str
    host: str
    port: int
    unit: int
    transport: str = "tcp"   # "tcp" | "rtu" (RTU over TCP)
    speed: float = 1.0
    safe_a: float = 6.0
    timeout_s: float = 10.0


class _Probe:
    def __init__(self, target: ChargerTarget):
        from ...firmware_sim.profiles.driver import driver_for
        from ..modbus import ModbusMaster

        self.t = target
        self.drv = driver_for(target.profile, target.unit)
        transport = "tcp" if target.transport == "tcp" else "rtu-over-tcp"
        self.master = ModbusMaster(target.host, target.port, transport=transport,
                                   timeout_s=max(0.1, 0.5 / target.speed), retries=1)
        self.t0 = time.monotonic()
        self.evidence: list = []

    def now_ms(self) -> int:
        return int((time.monotonic() - self.t0) * 1000 * self.t.speed)

    async def sleep(self, charger_s: float):
        await asyncio.sleep(charger_s / self.t.speed)

    def note(self, what: str):
        self.evidence.append({"t_ms": self.now_ms(), "what": what})

    async def write(self, writes):
        for table, address, words in writes:
            await self.master.write(self.t.unit, address, list(words), table=table)

    async def read(self):
        responses = [await self.master.read(self.t.unit, tb, a, n) for tb, a, n in self.drv.read_plan()]
        return self.drv.decode(responses)

    async def offered(self):
        """The current the charger offers now (A): its applied/PWM current, else its set-point."""
        r = await self.read()
        a = r.applied_a if r.applied_a is not None else r.setpoint_a
        return (None if a is None else float(a)), r

    async def wait_offered(self, pred, deadline_s: float):
        """Poll until ``pred(offered)``; returns (seconds it took or None, last value, values seen)."""
        start = self.now_ms()
        seen = []
        last = None
        while True:
            try:
                last, _ = await self.offered()
                seen.append(last)
            except Exception as exc:            # a failed read is evidence, not a crash of the case
                self.note(f"read failed: {type(exc).__name__}: {exc}")
            if last is not None and pred(last):
                return (self.now_ms() - start) / 1000, last, seen
            if (self.now_ms() - start) / 1000 > deadline_s:
                return None, last, seen
            await self.sleep(POLL_S)

    def raw_setpoint_writes(self, amps: float):
        """The set-point register written with ``amps`` as is, even below 6 A (where the driver would
        pause): what a careless controller sends, to see what the charger makes of it."""
        from ...firmware_sim.profiles.codec import encode

        drv = self.drv
        reg = drv._sp
        words = encode(float(amps), reg.dtype, reg.word_order or drv.profile.word_order, reg.scale, reg.count)
        writes = [(reg.table, reg.address, words)]
        if drv.spec.pause == "enable":
            writes.append(drv._write(drv._enable, drv.spec.enable_codes[1]))
        return writes

    async def feed(self):
        """One heartbeat (where the product needs one besides the set-point writes)."""
        hb = self.drv.heartbeat_writes()
        if hb:
            await self.write(hb)

    async def close(self):
        with contextlib.suppress(Exception):
            await self.master.close()


def _verdict(check, subject, passed, summary, evidence, requirement, **metrics):
    return C.Verdict(check=check, subject=subject, passed=bool(passed), summary=summary, metrics=metrics,
                     evidence=evidence[:40], requirement=requirement)


# ------------------------------------------------------------------------------------ COM-010
async def setpoint_following(target: ChargerTarget, subject: str = "charger") -> list:
    p = _Probe(target)
    req = (f"each set-point is offered within {PWM_SPACING_S:.0f} s + {FOLLOW_TOLERANCE_S:.0f} s; "
           "a set-point between 0 and 6 A is never offered")
    hi = min(16.0, p.drv.max_current_a)
    steps = [hi, 10.0, 6.0, 0.0, 3.0, 13.0]
    results, ok = [], True
    in_forbidden = []
    try:
        await p.master.connect()
        await p.write(p.drv.failsafe_writes(target.safe_a, target.timeout_s))
        for sp in steps:
            expect = 0.0 if sp < 6.0 else sp
            p.note(f"write set-point {sp:g} A (expect {expect:g} A offered)")
            if 0 < sp < 6.0:
                try:
                    await p.write(p.raw_setpoint_writes(sp))
                except Exception as exc:       # refusing the value is compliant: it is never offered
                    p.note(f"{sp:g} A refused by the charger ({type(exc).__name__}: {exc})")
            else:
                await p.write(p.drv.setpoint_writes(sp))
            took, last, seen = await p.wait_offered(lambda a, e=expect: abs(a - e) <= 0.15,
                                                    PWM_SPACING_S + FOLLOW_TOLERANCE_S)
            bad = [a for a in seen if a is not None and 0.05 < a < 5.95]
            in_forbidden += bad
            results.append({"setpoint_a": sp, "expected_a": expect, "took_s": took, "last_a": last})
            if took is None:
                ok = False
                p.note(f"set-point {sp:g} A not followed: still offering {last} A after "
                       f"{PWM_SPACING_S + FOLLOW_TOLERANCE_S:.0f} s")
            else:
                p.note(f"offering {last:g} A after {took:.2f} s")
            # hold the step for the spacing so the next change is allowed
            rest = PWM_SPACING_S - (took or 0.0)
            if rest > 0:
                await p.sleep(rest + POLL_S)
            await p.feed()
    except Exception as exc:
        ok = False
        p.note(f"{type(exc).__name__}: {exc}")
    finally:
        await p.close()
    ok = ok and not in_forbidden
    worst = max((r["took_s"] for r in results if r["took_s"] is not None), default=None)
    summary = (f"{sum(r['took_s'] is not None for r in results)}/{len(steps)} set-points followed"
               + (f", slowest {worst:.2f} s" if worst is not None else "")
               + (f"; offered {sorted(set(in_forbidden))} A (between 0 and 6 A)" if in_forbidden else ""))
    return [_verdict("setpoint_following", subject, ok, summary, p.evidence, req,
                     steps=results, slowest_s=worst, forbidden_offers=sorted(set(in_forbidden)))]


# ------------------------------------------------------------------------------------ COM-011
async def watchdog_fallback(target: ChargerTarget, subject: str = "charger") -> list:
    p = _Probe(target)
    req = (f"after its controller goes quiet the charger offers its safe current ({target.safe_a:g} A) "
           f"within its timeout + {FALLBACK_TOLERANCE_S:.0f} s")
    took, last, timeout_s = None, None, target.timeout_s
    ok = False
    try:
        await p.master.connect()
        await p.write(p.drv.failsafe_writes(target.safe_a, target.timeout_s))
        eff = getattr(p.drv, "_timeout_s", None)
        wd = p.drv.profile.watchdog
        timeout_s = eff or (wd.default_timeout_s if wd is not None and wd.default_timeout_s else target.timeout_s)
        high = min(16.0, p.drv.max_current_a)
        await p.write(p.drv.setpoint_writes(high))
        last_write_ms = p.now_ms()
        p.note(f"configured safe current {target.safe_a:g} A, timeout {timeout_s:g} s; wrote {high:g} A")
        t_ok, last, _ = await p.wait_offered(lambda a: abs(a - high) <= 0.15, PWM_SPACING_S + FOLLOW_TOLERANCE_S)
        if t_ok is None:
            p.note(f"never offered {high:g} A (last {last} A): cannot start the test")
        else:
            p.note("controller goes quiet (no writes from now on; reads continue)")
            # reads only: a product whose watchdog is kicked by any request ("any") is fed by reads,
            # so for those the controller goes fully silent and the result is read at the end
            kick_any = wd is not None and wd.kick == "any"
            deadline = timeout_s + PWM_SPACING_S + FALLBACK_TOLERANCE_S - (p.now_ms() - last_write_ms) / 1000
            if kick_any:
                await p.sleep(deadline)
                took, last, _ = await p.wait_offered(lambda a: abs(a - target.safe_a) <= 0.15, 0.0)
            else:
                took, last, _ = await p.wait_offered(lambda a: abs(a - target.safe_a) <= 0.15, deadline)
            took = (p.now_ms() - last_write_ms) / 1000 if took is not None else None
            ok = took is not None
            p.note(f"offering {last} A " + (f"{took:.2f} s after the last write" if ok else
                                              f"{deadline:.0f} s after the last write: no fallback"))
    except Exception as exc:
        p.note(f"{type(exc).__name__}: {exc}")
    finally:
        await p.close()
    summary = (f"fell back to {target.safe_a:g} A after {took:.2f} s (timeout {timeout_s:g} s)" if ok else
               f"no fallback to {target.safe_a:g} A (still {last} A; timeout {timeout_s:g} s)")
    return [_verdict("watchdog_fallback", subject, ok, summary, p.evidence, req,
                     time_to_safe_s=took, timeout_s=timeout_s, last_offered_a=last)]


# ------------------------------------------------------------------------------------ COM-012
async def malformed_frame_robustness(target: ChargerTarget, subject: str = "charger") -> list:
    req = ("malformed frames get the right Modbus exception or silence, and the server keeps answering "
           "valid requests")
    if target.transport != "tcp":
        return [_verdict("modbus_robustness", subject, False,
                         "not applicable: the crafted frames are Modbus/TCP and this charger speaks RTU",
                         [], req, applicable=False)]
    p = _Probe(target)
    evidence, ok, rows = [], True, []
    loop = asyncio.get_running_loop()
    try:
        for name, data, allowed in malformed_frames(target.unit):
            try:
                got = await loop.run_in_executor(None, _exchange, target.host, target.port, data)
            except OSError as exc:
                got = f"connect failed: {exc}"
            # a closed connection is the server's way of discarding a frame it cannot parse
            good = got in allowed or (got == "closed" and "silence" in allowed)
            alive = True
            try:
                await p.master.connect()
                await p.read()
            except Exception as exc:
                alive = False
                got += f"; then a valid read failed: {type(exc).__name__}: {exc}"
            finally:
                with contextlib.suppress(Exception):
                    await p.master.close()
            rows.append({"frame": name, "hex": data.hex(), "got": got, "expected": sorted(allowed),
                         "still_answers": alive})
            evidence.append({"t_ms": 0, "what": f"{name} ({data.hex()}): {got}"
                                                + ("" if good else f" (expected {' or '.join(sorted(allowed))})")
                                                + ("" if alive else " -- server stopped answering")})
            ok = ok and good and alive
    finally:
        await p.close()
    bad = [r["frame"] for r in rows if not (r["still_answers"] and (r["got"] in r["expected"] or
                                                                     (r["got"] == "closed" and "silence" in r["expected"])))]
    summary = (f"{len(rows)} malformed frames handled, server still answering" if ok else
               f"mishandled: {', '.join(bad)}")
    return [_verdict("modbus_robustness", subject, ok, summary, evidence, req, frames=rows)]


PROBES = {"setpoint_following": setpoint_following, "watchdog_fallback": watchdog_fallback,
          "malformed_frames": malformed_frame_robustness}


# ------------------------------------------------------------------------------ the stand-in
async def run_probe_on_emulated(scenario, probe, *, speed: float = 10.0, host: str = "127.0.0.1",
                                tap=None) -> list:
    """Serve the scenario's (single) charger with firmware_sim in this process, in real time ×
    ``speed``, with its EV plugged, and run ``probe`` against it over Modbus."""
    from ...core import Site
    from ..clock import WallClock
    from ..modbus import ModbusEmulator
    from ..plant import Plant
    from ..wire import _physics, serve_plant

    plant = Plant(scenario, Site.from_dict(scenario.site))
    clock = WallClock(speed)
    emulator = ModbusEmulator(host=host, clock=clock.now_ms, tap=tap)
    serve_plant(plant, emulator)
    stop = asyncio.Event()
    await emulator.start()
    physics = asyncio.ensure_future(_physics(plant, clock, stop, None))
    try:
        name = scenario.site["chargers"][0]["name"]
        ep = next(e for e in emulator.endpoints() if e["device"] == name)
        target = ChargerTarget(profile=ep["profile"], host=ep["host"], port=ep["port"], unit=ep["unit"],
                               transport="tcp" if ep["transport"] == "tcp" else "rtu", speed=speed,
                               safe_a=6.0, timeout_s=10.0)
        return await probe(target, subject=name)
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await physics
        await emulator.stop()
