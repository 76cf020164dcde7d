"""The Modbus master the site controller uses, and a profile-aware device client.

:class:`ModbusMaster` runs one transaction at a time over Modbus TCP, RTU over TCP or RTU over a
serial port (via the pymodbus adapter, with pymodbus's own retry/reconnect policies switched off
so that this module owns them):

* each attempt has ``timeout_s``; a request is tried ``1 + retries`` times;
* a lost or refused connection is re-opened on the next attempt (reconnect);
* an exception response is an *answer*: it is not retried and surfaces as
  :class:`ModbusExceptionResponse` (``.code``);
* every failed attempt is recorded in :attr:`ModbusMaster.failures` (:class:`Failure`: time,
  unit, function, address, count, kind, attempt, detail), kinds ``"timeout"``,
  ``"connection"``, ``"protocol"`` (an answer that does not match the request) and
  ``"exception"``; after the last attempt :class:`ModbusTimeout` / :class:`ModbusConnectionError`
  / :class:`ModbusProtocolError` is raised.

:class:`DeviceClient` reads and writes *points* of a profile (the same names the device models
use), grouping reads into as few requests as the product allows.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

from dlbrig.firmware_sim.profiles import ModbusError as DeviceModbusError
from dlbrig.firmware_sim.profiles import Profile, Register
from dlbrig.firmware_sim.profiles.codec import decode

from . import _pymodbus as pm

__all__ = ["ModbusMaster", "DeviceClient", "Failure", "ModbusMasterError", "ModbusExceptionResponse",
           "ModbusTimeout", "ModbusConnectionError", "ModbusProtocolError", "ReadPlan"]

READ_FC = {"coil": 1, "discrete": 2, "holding": 3, "input": 4}
_EXC_NAMES = {1: "ILLEGAL FUNCTION", 2: "ILLEGAL DATA ADDRESS", 3: "ILLEGAL DATA VALUE",
              4: "SERVER DEVICE FAILURE", 5: "ACKNOWLEDGE", 6: "SERVER DEVICE BUSY",
              10: "GATEWAY PATH UNAVAILABLE", 11: "GATEWAY TARGET FAILED TO RESPOND"}


class ModbusMasterError(Exception):
    """Base of the master's errors."""


class ModbusExceptionResponse(DeviceModbusError, ModbusMasterError):
    """The device answered with a Modbus exception response (``.code``).

    Also a :class:`dlbrig.firmware_sim.profiles.ModbusError`, so code written against the
    in-memory register image (fast mode) handles wire-mode exception responses unchanged."""

    def __init__(self, code: int, unit: int | None = None, function: int | None = None,
                 address: int | None = None) -> None:
        self.unit = unit
        self.function = function
        self.address = address
        DeviceModbusError.__init__(self, code, f"unit {unit} fc {function} addr {address}: "
                                   f"{_EXC_NAMES.get(code, '')}")
        self.code = code


class ModbusTimeout(ModbusMasterError):
    """No answer after all attempts."""


class ModbusConnectionError(ModbusMasterError):
    """No connection after all attempts."""


class ModbusProtocolError(ModbusMasterError):
    """Answers that did not match the request, after all attempts."""


_KIND_ERRORS = {"timeout": ModbusTimeout, "connection": ModbusConnectionError,
                "protocol": ModbusProtocolError}


@dataclass(frozen=True)
class Failure:
    """One failed attempt of a transaction."""

    t_ms: int
    wall: float
    unit: int
    function: int
    address: int
    count: int
    kind: str           # "timeout" | "connection" | "protocol" | "exception"
    attempt: int        # 1 = first try
    detail: str = ""


class ModbusMaster:
    """A Modbus master on one line (a TCP connection, an RTU-over-TCP link or a serial port).

    ``host`` is the device path for ``transport="rtu-serial"`` (``port`` is then ignored).
    ``clock`` (ms) stamps the failure records; default: Unix time in ms. ``tap(direction,
    bytes)`` sees the raw bytes the master sends and receives (``"tx"``/``"rx"``; received
    bytes are reported as pymodbus buffers them, so a partial frame may be seen twice).
    """

    def __init__(self, host: str, port: int = 502, transport: str = "tcp",
                 timeout_s: float = 1.0, retries: int = 2, *,
                 clock: Callable[[], int] | None = None, baudrate: int = 9600,
                 parity: str = "N", stopbits: int = 1, max_failures: int = 100_000,
                 tap: Callable[[str, bytes], None] | None = None) -> None:
        if retries < 0:
            raise ValueError("retries must be >= 0")
        self.host = host
        self.port = port
        self.transport = transport
        self.timeout_s = timeout_s
        self.retries = retries
        self.clock = clock or (lambda: time.time_ns() // 1_000_000)
        self.max_failures = max_failures
        self.failures: list[Failure] = []
        self.stats = {"transactions": 0, "ok": 0, "failed": 0, "attempts": 0, "reconnects": 0,
                      "exceptions": 0}
        self._client = pm.AsyncClient(transport, host, port, timeout_s, baudrate=baudrate,
                                      parity=parity, stopbits=stopbits, tap=tap)
        self._lock = asyncio.Lock()
        self._ever_connected = False

    # --- connection
    @property
    def connected(self) -> bool:
        return self._client.connected

    async def connect(self) -> bool:
        ok = await self._client.connect()
        if ok:
            if self._ever_connected:
                self.stats["reconnects"] += 1
            self._ever_connected = True
        return ok

    async def close(self) -> None:
        self._client.close()

    async def __aenter__(self) -> "ModbusMaster":
        await self.connect()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    # --- transactions
    async def read(self, unit: int, table: str, address: int, count: int) -> list[int]:
        """FC03 (``"holding"``), FC04 (``"input"``), FC01/02 (``"coil"``/``"discrete"``)."""
        fc = READ_FC[table]
        reply = await self._transact(fc, unit, address, count, count)
        if len(reply.values) != count:
            raise ModbusProtocolError(f"{len(reply.values)} values for {count}")
        return list(reply.values)

    async def write(self, unit: int, address: int, words: Sequence[int] | int, *,
                    table: str = "holding", fc: int | None = None) -> None:
        """FC06 for one word (unless ``fc=16``), FC16 for several; coils: FC05/FC15."""
        vals = [int(words)] if isinstance(words, int) else [int(w) for w in words]
        if not vals:
            raise ValueError("nothing to write")
        if fc is None:
            if table == "holding":
                fc = 6 if len(vals) == 1 else 16
            else:
                fc = 5 if len(vals) == 1 else 15
        if fc in (5, 6):
            if len(vals) != 1:
                raise ValueError(f"FC{fc:02d} writes exactly one value")
            await self._transact(fc, unit, address, vals[0], 1)
        elif fc in (15, 16):
            await self._transact(fc, unit, address, vals, len(vals))
        else:
            raise ValueError(f"fc {fc} is not a write function")

    def _fail(self, unit: int, fc: int, address: int, count: int, kind: str, attempt: int,
              detail: str) -> None:
        if len(self.failures) >= self.max_failures:
            del self.failures[: self.max_failures // 10 or 1]
        self.failures.append(Failure(self.clock(), time.time(), unit, fc, address, count, kind,
                                     attempt, detail))

    async def _transact(self, fc: int, unit: int, address: int, arg: Any,
                        count: int) -> pm.Reply:
        async with self._lock:
            self.stats["transactions"] += 1
            kind, detail = "timeout", ""
            for attempt in range(1, self.retries + 2):
                self.stats["attempts"] += 1
                if not self._client.connected:
                    if not await self.connect():
                        kind, detail = "connection", f"cannot connect to {self.host}:{self.port}"
                        self._fail(unit, fc, address, count, kind, attempt, detail)
                        continue
                try:
                    reply = await self._client.request(fc, unit, address, arg)
                except pm.TransportTimeout as exc:
                    kind, detail = "timeout", str(exc)
                except pm.TransportClosed as exc:
                    kind, detail = "connection", str(exc)
                    self._client.close()
                except pm.TransportProtocolError as exc:
                    kind, detail = "protocol", str(exc)
                else:
                    if reply.exception is not None:
                        self.stats["exceptions"] += 1
                        self.stats["failed"] += 1
                        self._fail(unit, fc, address, count, "exception", attempt,
                                   f"exception {reply.exception:#04x}")
                        raise ModbusExceptionResponse(reply.exception, unit, fc, address)
                    if fc in (1, 2, 3, 4) and len(reply.values) != count:
                        kind, detail = "protocol", f"{len(reply.values)} values for {count}"
                    else:
                        self.stats["ok"] += 1
                        return reply
                self._fail(unit, fc, address, count, kind, attempt, detail)
            self.stats["failed"] += 1
            raise _KIND_ERRORS[kind](f"unit {unit} fc {fc} addr {address} count {count}: "
                                     f"{kind} after {self.retries + 1} attempts ({detail})")


# --- profile-aware client ------------------------------------------------------------------------
@dataclass(frozen=True)
class ReadPlan:
    """One read request covering ``registers`` (name, register) pairs."""

    table: str
    address: int
    count: int
    registers: tuple[tuple[str, Register], ...]


class DeviceClient:
    """Points of one device (a profile at a unit id) over a :class:`ModbusMaster`."""

    def __init__(self, master: ModbusMaster, profile: Profile, unit: int, *,
                 slot: int | None = None) -> None:
        self.master = master
        self.profile = profile
        self.unit = unit
        self.slot = slot
        self.role = profile.role_of(unit)

    # --- look-up
    def register_for(self, name: str) -> Register:
        """The readable register for a point name (or a register name) at this unit's role."""
        best = None
        for r in self.profile.registers:
            if not r.readable or (r.role is not None and r.role != self.role):
                continue
            if r.point != name and r.name != name:
                continue
            if self.slot is not None and r.slot not in (0, self.slot):
                continue
            if best is None or (self.slot is not None and r.slot == self.slot):
                best = r
        if best is None:
            raise KeyError(f"{self.profile.name}: no readable register {name!r} for role "
                           f"{self.role!r}")
        return best

    def _block(self, table: str, a: int) -> tuple[int, int] | None:
        p = self.profile
        src = "holding" if (p.mirror_input and table == "input") else table
        if p.blocks is None:
            return (-1, 1 << 17)
        for t, s, e in p.blocks:
            if t == src and s <= a < e:
                return (s, e)
        return None

    def plan_reads(self, names: Iterable[str]) -> list[ReadPlan]:
        """Group the registers of ``names`` into requests: contiguous values share a request;
        gaps are bridged only when the product reads them (reserved "nan"/"zero") inside one
        answering block; never more than ``max_read`` registers; one value per request for
        products that refuse reads across value boundaries (KEBA)."""
        p = self.profile
        regs: dict[tuple[str, int], tuple[list[str], Register]] = {}
        for n in names:
            r = self.register_for(n)
            key = (r.table, r.address)
            if key in regs:
                regs[key][0].append(n)
            else:
                regs[key] = ([n], r)
        plans: list[ReadPlan] = []
        cur: list[tuple[str, Register]] = []
        start = end = 0
        table = ""
        bridge = p.reserved in ("nan", "zero")

        def flush() -> None:
            if cur:
                plans.append(ReadPlan(table, start, end - start, tuple(cur)))

        for (t, a), (ns, r) in sorted(regs.items()):
            lim = p.max_read_bits if READ_FC[t] <= 2 else p.max_read
            ok = (cur and t == table and not p.single_value_reads and a >= end
                  and r.end - start <= lim)
            if ok and a > end:
                b1, b2 = self._block(t, end - 1), self._block(t, a)
                ok = bridge and b1 is not None and b1 == b2
            if not ok:
                flush()
                cur, start, table = [], a, t
            cur.extend((n, r) for n in ns)
            end = r.end
        flush()
        return plans

    # --- operations
    def _decode(self, r: Register, words: Sequence[int]) -> Any:
        if r.table in ("coil", "discrete"):
            return bool(words[0])
        return decode(list(words), r.dtype, self.profile.word_order_of(r), r.scale)

    async def read_point(self, name: str) -> Any:
        return (await self.read_points([name]))[name]

    async def read_points(self, names: Sequence[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for plan in self.plan_reads(names):
            words = await self.master.read(self.unit, plan.table, plan.address, plan.count)
            for n, r in plan.registers:
                off = r.address - plan.address
                out[n] = self._decode(r, words[off:off + r.count])
        return out

    async def write_point(self, name: str, value: Any) -> None:
        p = self.profile
        table, address, words = p.write_request(name, value, slot=self.slot, role=self.role)
        if table == "coil":
            await self.master.write(self.unit, address, words, table="coil")
            return
        fc = 6 if (len(words) == 1 and 6 in p.function_codes) else 16
        await self.master.write(self.unit, address, words, fc=fc)
