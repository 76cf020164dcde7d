"""The one module that imports pymodbus. Everything else in dlbrig uses this small API, so a
pymodbus upgrade (its API changed in 3.7, 3.8, 3.9, 3.10, 3.12 and again in 3.13) touches only
this file.

What pymodbus is used for:

* the **master** transport (:class:`AsyncClient`): Modbus TCP, RTU framing over a TCP socket,
  and RTU over a serial port (a pty in tests), with pymodbus's own retries, auto-reconnect and
  "close after retries+3 silent requests" disabled: :mod:`.client` owns those policies so that
  every failed attempt is visible and recorded;
* an **independent CRC** (:func:`crc_bytes`) and a synchronous one-shot probe
  (:func:`sync_request`) used by tests to check our server with someone else's code.

The version is pinned: importing this module with another pymodbus version raises
:class:`PymodbusVersionError` naming both versions.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Callable

PINNED_VERSION = "3.12.1"


class PymodbusVersionError(ImportError):
    """The installed pymodbus is not the version this adapter was written and tested against."""


try:
    import pymodbus
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise PymodbusVersionError(
        f"pymodbus is not installed; dlbrig.rig.modbus needs pymodbus=={PINNED_VERSION} "
        f"(pip install pymodbus=={PINNED_VERSION})") from exc

INSTALLED_VERSION = getattr(pymodbus, "__version__", "unknown")
if INSTALLED_VERSION != PINNED_VERSION:
    raise PymodbusVersionError(
        f"dlbrig.rig.modbus is pinned to pymodbus=={PINNED_VERSION} but pymodbus "
        f"{INSTALLED_VERSION} is installed; install the pinned version or port "
        f"dlbrig/rig/modbus/_pymodbus.py (the only module that imports pymodbus)")

from pymodbus import FramerType  # noqa: E402
from pymodbus.client import (AsyncModbusSerialClient, AsyncModbusTcpClient,  # noqa: E402
                             ModbusTcpClient)
from pymodbus.exceptions import ConnectionException, ModbusIOException  # noqa: E402
from pymodbus.framer.rtu import FramerRTU  # noqa: E402

__all__ = ["PINNED_VERSION", "INSTALLED_VERSION", "PymodbusVersionError", "AsyncClient",
           "Reply", "TransportTimeout", "TransportClosed", "TransportProtocolError",
           "crc_bytes", "sync_request", "quiet_logging"]

TRANSPORTS = ("tcp", "rtu-over-tcp", "rtu-serial")


class TransportTimeout(Exception):
    """No (valid) answer within the timeout."""


class TransportClosed(Exception):
    """Not connected, could not connect, or the connection was lost during the request."""


class TransportProtocolError(Exception):
    """An answer arrived but does not match the request (unit, function, size)."""


@dataclass(frozen=True)
class Reply:
    """A response: ``values`` (words or bits) for reads, or ``exception`` (code) set."""

    fc: int
    values: tuple[int, ...] = ()
    exception: int | None = None


def quiet_logging(level: int = logging.CRITICAL) -> None:
    """pymodbus logs every timeout at ERROR; the rig records failures itself."""
    logging.getLogger("pymodbus").setLevel(level)


def crc_bytes(data: bytes) -> bytes:
    """The two CRC bytes pymodbus appends to ``data`` (an independent check of ours)."""
    return FramerRTU.compute_CRC(bytes(data)).to_bytes(2, "big")


class AsyncClient:
    """A pymodbus async client with the policies stripped out (one attempt per call)."""

    def __init__(self, transport: str, host: str, port: int = 502, timeout_s: float = 1.0, *,
                 baudrate: int = 9600, parity: str = "N", stopbits: int = 1,
                 bytesize: int = 8, tap: Callable[[str, bytes], None] | None = None) -> None:
        if transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {TRANSPORTS}, not {transport!r}")
        self.transport = transport
        self.tap = tap
        common = dict(timeout=timeout_s, retries=0, reconnect_delay=0,
                      trace_packet=self._trace if tap is not None else None)
        if transport == "rtu-serial":
            self._c = AsyncModbusSerialClient(host, framer=FramerType.RTU, baudrate=baudrate,
                                              parity=parity, stopbits=stopbits,
                                              bytesize=bytesize, **common)
        else:
            framer = FramerType.SOCKET if transport == "tcp" else FramerType.RTU
            self._c = AsyncModbusTcpClient(host, port=port, framer=framer, **common)
        # pymodbus closes the connection after retries+3 unanswered requests: an absent unit on
        # an RTU bus would then cost every other unit a reconnect. The caller decides instead.
        self._c.set_max_no_responses(1 << 30)

    def _trace(self, sending: bool, data: bytes) -> bytes:
        # pymodbus passes every sent frame, and its whole receive buffer each time bytes arrive
        # (a partial frame may be seen again, extended, on the next call).
        try:
            self.tap("tx" if sending else "rx", bytes(data))  # type: ignore[misc]
        except Exception:  # a broken tap must not break the master
            logging.getLogger(__name__).exception("master tap failed")
        return data

    @property
    def connected(self) -> bool:
        return bool(self._c.connected)

    async def connect(self) -> bool:
        try:
            return bool(await self._c.connect())
        except (OSError, ConnectionException):
            return False

    def close(self) -> None:
        self._c.close()

    async def request(self, fc: int, unit: int, address: int, arg: Any) -> Reply:
        """One transaction. ``arg`` = count (FC01-04), a value (FC05/06), values (FC15/16)."""
        c = self._c
        if not c.connected:
            raise TransportClosed("not connected")
        try:
            if fc == 1:
                rr = await c.read_coils(address, count=arg, device_id=unit)
            elif fc == 2:
                rr = await c.read_discrete_inputs(address, count=arg, device_id=unit)
            elif fc == 3:
                rr = await c.read_holding_registers(address, count=arg, device_id=unit)
            elif fc == 4:
                rr = await c.read_input_registers(address, count=arg, device_id=unit)
            elif fc == 5:
                rr = await c.write_coil(address, bool(arg), device_id=unit)
            elif fc == 6:
                rr = await c.write_register(address, int(arg), device_id=unit)
            elif fc == 15:
                rr = await c.write_coils(address, [bool(v) for v in arg], device_id=unit)
            elif fc == 16:
                rr = await c.write_registers(address, [int(v) for v in arg], device_id=unit)
            else:
                raise ValueError(f"function code {fc} not supported by the master")
        except ConnectionException as exc:
            raise TransportClosed(str(exc)) from exc
        except ModbusIOException as exc:
            if not c.connected:
                raise TransportClosed(f"connection lost: {exc}") from exc
            if "device id" in str(exc) or "transaction id" in str(exc):
                raise TransportProtocolError(str(exc)) from exc
            raise TransportTimeout(str(exc)) from exc
        except (asyncio.TimeoutError, OSError) as exc:
            if not c.connected:
                raise TransportClosed(f"connection lost: {exc!r}") from exc
            raise TransportTimeout(repr(exc)) from exc
        if rr is None:
            raise TransportTimeout("no response")
        rfc = rr.function_code & 0x7F
        if rfc != fc:
            raise TransportProtocolError(f"response function {rr.function_code} to fc {fc}")
        if rr.isError():
            return Reply(fc, exception=int(getattr(rr, "exception_code", 0)))
        if fc in (1, 2):
            return Reply(fc, tuple(int(b) for b in rr.bits[:arg]))
        if fc in (3, 4):
            return Reply(fc, tuple(rr.registers))
        return Reply(fc)


def sync_request(host: str, port: int, unit: int, fc: int, address: int, arg: Any, *,
                 framer: str = "tcp", timeout_s: float = 2.0) -> Reply:
    """One blocking transaction with a fresh pymodbus sync client (test probes, CLI checks)."""
    fr = FramerType.SOCKET if framer == "tcp" else FramerType.RTU
    c = ModbusTcpClient(host, port=port, framer=fr, timeout=timeout_s, retries=0,
                        reconnect_delay=0)
    try:
        if not c.connect():
            raise TransportClosed(f"cannot connect to {host}:{port}")
        calls = {1: c.read_coils, 2: c.read_discrete_inputs, 3: c.read_holding_registers,
                 4: c.read_input_registers}
        try:
            if fc in calls:
                rr = calls[fc](address, count=arg, device_id=unit)
            elif fc == 6:
                rr = c.write_register(address, int(arg), device_id=unit)
            elif fc == 16:
                rr = c.write_registers(address, [int(v) for v in arg], device_id=unit)
            else:
                raise ValueError(f"fc {fc} not supported by sync_request")
        except ModbusIOException as exc:
            raise TransportTimeout(str(exc)) from exc
        if rr.isError():
            return Reply(fc, exception=int(getattr(rr, "exception_code", 0)))
        if fc in (1, 2):
            return Reply(fc, tuple(int(b) for b in rr.bits[:arg]))
        if fc in (3, 4):
            return Reply(fc, tuple(rr.registers))
        return Reply(fc)
    finally:
        c.close()

