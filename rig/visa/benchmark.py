"""Emulated-instrument throughput: pyvisa (pyvisa-py) queries per second against one SCPI server.

``python -m dlbrig.rig.visa.benchmark`` prints the numbers; nothing here is asserted in tests."""
from __future__ import annotations

import asyncio
import threading
import time

from ...firmware_sim.instruments import make_instrument
from .drivers import open_driver
from .server import InstrumentEmulator


def measure(n: int = 2000) -> dict:
    loop = asyncio.new_event_loop()
    emu = InstrumentEmulator()
    wt = make_instrument("yokogawa_wt1800")
    wt.observe(0, [(230.0, 16.0, 1.0, 50.0)] * 6)
    emu.serve("wt", wt)
    th = threading.Thread(target=loop.run_forever, daemon=True)
    th.start()
    asyncio.run_coroutine_threadsafe(emu.start(), loop).result(10)
    try:
        d = open_driver(emu.servers[0].resource)
        d.configure([1, 2, 3, 4, 5, 6])
        out = {}
        for name, fn in (("*IDN? query", lambda: d.query("*IDN?")),
                         ("analyzer read (30 items)", d.read)):
            fn()
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            dt = time.perf_counter() - t0
            out[name] = {"per_s": round(n / dt), "ms": round(1000 * dt / n, 3)}
        d.close()
        return out
    finally:
        asyncio.run_coroutine_threadsafe(emu.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        th.join(10)


def main() -> None:
    for name, r in measure().items():
        print(f"{name:<28} {r['per_s']:>7} /s  {r['ms']:>7.3f} ms round trip (pyvisa-py, loopback)")


if __name__ == "__main__":
    main()
