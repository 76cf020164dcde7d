"""Helpers for the VISA suites: emulated instruments served from a background asyncio loop."""
from __future__ import annotations

import asyncio
import threading

import pytest

from dlbrig.firmware_sim.instruments import make_instrument
from dlbrig.rig.visa import InstrumentEmulator


class BackgroundInstruments:
    """Instrument servers in their own thread and loop; models are touched through :meth:`call`."""

    def __init__(self, models: dict):
        self.models = models
        self.loop = asyncio.new_event_loop()
        self.emu = InstrumentEmulator()
        for name, m in models.items():
            self.emu.serve(name, m)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.emu.start(), self.loop).result(10)
        return self

    def call(self, fn, *args):
        async def run():
            return fn(*args)
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)

    def resource(self, name) -> str:
        return next(s.resource for s in self.emu.servers if s.name == name)

    def __exit__(self, *exc):
        asyncio.run_coroutine_threadsafe(self.emu.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def instruments():
    """Factory: serve {name: model key} and return the running BackgroundInstruments."""
    started = []

    def make(**keys):
        b = BackgroundInstruments({n: make_instrument(k, serial=f"SIM-{n}") for n, k in keys.items()})
        started.append(b.__enter__())
        return b
    yield make
    for b in started:
        b.__exit__(None, None, None)
