"""Register-level links between the site controller and a device, with communication faults.

The controller speaks to every device through ``await link.read(unit, table, address, count)`` and
``await link.write(unit, table, address, words)``. Two implementations share that interface:

- :class:`FastLink` (fast mode): calls the device's :class:`~dlbrig.firmware_sim.profiles.DeviceImage`
  in memory, so every value still goes through the product's register map and codecs;
- a wire link (wire mode, :mod:`dlbrig.rig.modbus`): real Modbus TCP/RTU on sockets.

Communication faults from the scenario timeline (offline, exception, delay, drop) are applied here in
fast mode, and in the Modbus server's fault hook in wire mode, so both modes see the same timeline.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

from ..firmware_sim.profiles import DeviceImage, ModbusError


class LinkTimeout(Exception):
    """No answer within the timeout (device offline, dropped frame, absent unit)."""


@dataclass
class CommFault:
    kind: str                 # "offline" | "exception" | "delay" | "drop"
    until_ms: int | None      # None = until cleared
    code: int = 4             # Modbus exception code for "exception"
    delay_ms: int = 0
    jitter_ms: int = 0
    probability: float = 1.0  # "drop"


@dataclass
class CommFaults:
    """Active communication faults per device name; the timeline sets and clears them."""

    seed: int = 1
    active: dict = field(default_factory=dict)

    def __post_init__(self):
        self._rng = random.Random(f"dlbrig.comm:{self.seed}")

    def set(self, device: str, fault: CommFault | None) -> None:
        if fault is None:
            self.active.pop(device, None)
        else:
            self.active[device] = fault

    def check(self, device: str, now_ms: int) -> CommFault | None:
        f = self.active.get(device)
        if f is None:
            return None
        if f.until_ms is not None and now_ms >= f.until_ms:
            del self.active[device]
            return None
        return f

    def outcome(self, device: str, now_ms: int):
        """None (answer normally), or the exception the request ends with; plus an extra delay."""
        f = self.check(device, now_ms)
        if f is None:
            return None, 0
        if f.kind == "offline":
            return LinkTimeout(f"{device}: offline"), 0
        if f.kind == "exception":
            return ModbusError(f.code, f"{device}: injected exception"), 0
        if f.kind == "drop":
            if self._rng.random() < f.probability:
                return LinkTimeout(f"{device}: response dropped"), 0
            return None, 0
        if f.kind == "delay":
            extra = f.delay_ms + (self._rng.randint(-f.jitter_ms, f.jitter_ms) if f.jitter_ms else 0)
            return None, max(0, extra)
        return None, 0


class FastLink:
    """In-memory link to one device image, on the virtual clock.

    A delay longer than ``timeout_ms`` is a timeout; shorter delays are recorded (fast mode does not
    wait: the controller's cycle-time accounting adds them).
    """

    def __init__(self, name: str, image: DeviceImage, clock, faults: CommFaults, timeout_ms: int = 1000):
        self.name, self.image, self.clock, self.faults = name, image, clock, faults
        self.timeout_ms = timeout_ms
        self.transactions = 0
        self.latency_ms = 0

    def _gate(self):
        now = self.clock.now_ms()
        if self.name not in self.faults.active:     # no fault on this device: answer (the common case)
            return now
        err, extra = self.faults.outcome(self.name, now)
        if err is None and extra > self.timeout_ms:
            err = LinkTimeout(f"{self.name}: answer after {extra} ms > timeout {self.timeout_ms} ms")
        if err is not None:
            raise err
        self.latency_ms += extra
        return now

    def _read_now(self, unit: int, table: str, address: int, count: int) -> list:
        now = self._gate()
        self.transactions += 1
        return self.image.read(unit, table, address, count, now)

    async def read(self, unit: int, table: str, address: int, count: int) -> list:
        return self._read_now(unit, table, address, count)

    async def read_many(self, unit: int, requests) -> list:
        """``[await read(unit, t, a, n) for t, a, n in requests]`` in one call (a device's read
        plan). A device with an active communication fault takes the per-request path, so every
        request meets the fault (and its random draw) exactly as separate reads do."""
        return self.read_many_now(unit, requests)

    def read_many_now(self, unit: int, requests, *, shared: bool = False) -> list:
        """:meth:`read_many` without the coroutine: nothing in memory waits, and the controller
        reads every device every cycle (it calls this when the link has it). ``shared``: see
        :meth:`read_many_shared`."""
        if self.name in self.faults.active:
            return [self._read_now(unit, t, a, n) for t, a, n in requests]
        self.transactions += len(requests)
        return self.image.read_many(unit, requests, self.clock.now_ms(), shared=shared)

    def read_many_shared(self, unit: int, requests) -> list:
        """:meth:`read_many_now` for a caller that never mutates the answers (the controller's
        scan): an unchanged plan answers with the image's own lists, no copy per cycle. (The body
        of read_many_now, not a call to it: the controller calls this for every device every
        cycle.)"""
        if self.name in self.faults.active:
            return [self._read_now(unit, t, a, n) for t, a, n in requests]
        self.transactions += len(requests)
        return self.image.read_many(unit, requests, self.clock.now_ms(), shared=True)

    async def write(self, unit: int, table: str, address: int, words) -> None:
        now = self._gate()
        self.transactions += 1
        self.image.write(unit, table, address, list(words), now)
