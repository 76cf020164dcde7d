"""Emulated instruments as SCPI-over-TCP servers: raw socket, one port each, newline-terminated.

The same shape as :mod:`dlbrig.rig.modbus.server`: an asyncio :class:`asyncio.Protocol` per
connection that frames the byte stream (here: lines), a server per instrument, and an
:class:`InstrumentEmulator` that starts / stops a set of them and lists their endpoints.  The
instrument's state and physics are the pure models of :mod:`dlbrig.firmware_sim.instruments`;
the command sets are :mod:`.commands`.

Query interrupted (IEEE 488.2 6.3.2.3, reference/instruments.md: "read the full response before
sending the next command"): a response is delivered only when the client is waiting for it, that
is when no further complete program message has already arrived.  A client that sends a query and
then another message before reading loses the first response and finds -410 in the error queue.
On a socket that is decided per received batch: the messages of one batch after a query mean
the client did not wait.

Malformed input never crashes a server: undecodable bytes and unknown headers become errors in the
queue, a line longer than :data:`MAX_LINE` is dropped (-223 Too much data), an exception inside a
handler becomes -200 with the message.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
from dataclasses import dataclass, field

from ...firmware_sim.instruments import Instrument, ScpiErr
from ..modbus.server import check_bind_host
from .commands import command_set

__all__ = ["ScpiServer", "InstrumentEmulator", "visa_resource", "MAX_LINE"]

log = logging.getLogger(__name__)
MAX_LINE = 64 * 1024


def visa_resource(host: str, port: int) -> str:
    return f"TCPIP0::{host}::{port}::SOCKET"


class _ScpiConnection(asyncio.Protocol):
    def __init__(self, server: "ScpiServer"):
        self.server = server
        self.buf = bytearray()
        self.skipping = False      # inside an over-long message: drop bytes up to its newline
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        self.server.connections.add(self)

    def connection_lost(self, exc):
        self.server.connections.discard(self)

    def data_received(self, data: bytes) -> None:
        inst = self.server.instrument
        self.buf += data
        lines = []
        while True:
            nl = self.buf.find(b"\n")
            if nl < 0:
                break
            if self.skipping:          # the rest of an over-long message: dropped with it
                self.skipping = False
            else:
                lines.append(bytes(self.buf[:nl]))
            del self.buf[:nl + 1]
        overflow = len(self.buf) > MAX_LINE or (self.skipping and self.buf)
        if overflow:
            self.buf.clear()
        for k, raw in enumerate(lines):
            try:
                text = raw.decode("ascii").rstrip("\r")
            except UnicodeDecodeError:
                inst.push_error(ScpiErr.SYNTAX, "non-ASCII bytes in the program message")
                continue
            if len(raw) > MAX_LINE:
                inst.push_error((-223, "Too much data"), f"program message over {MAX_LINE} bytes")
                continue
            try:
                response = self.server.execute(text)
            except Exception as exc:          # a handler bug must not take the server down
                log.exception("instrument %s: %r", self.server.name, text)
                inst.push_error(ScpiErr.EXECUTION, f"{type(exc).__name__}: {exc}")
                response = None
            if response is None:
                continue
            if k + 1 < len(lines) and any(x.strip() for x in lines[k + 1:]):
                # the client sent its next message before reading this response
                inst.push_error(ScpiErr.QUERY_INTERRUPTED, f"response to {text!r} discarded")
                continue
            if self.transport is not None and not self.transport.is_closing():
                self.transport.write(response.encode("ascii", "replace") + b"\n")
        if overflow and not self.skipping:
            self.skipping = True
            inst.push_error((-223, "Too much data"), f"program message over {MAX_LINE} bytes")


@dataclass
class ScpiServer:
    """One instrument on one TCP port."""

    name: str
    instrument: Instrument
    host: str = "127.0.0.1"
    port: int = 0
    allow_non_loopback: bool = False
    on_command: object = None            # callable(name, text) before each message, for hooks
    connections: set = field(default_factory=set)
    _server: object = None

    def __post_init__(self):
        check_bind_host(self.host, self.allow_non_loopback)
        self.commands = command_set(self.instrument.info.family)

    def execute(self, text: str):
        if self.on_command is not None:
            self.on_command(self.name, text)
        return self.commands.execute(self.instrument, text)

    async def start(self) -> "ScpiServer":
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _ScpiConnection(self), self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for c in list(self.connections):
                if c.transport is not None:
                    c.transport.close()
            await self._server.wait_closed()
            self._server = None

    @property
    def resource(self) -> str:
        return visa_resource(self.host, self.port)

    def endpoint(self) -> dict:
        info = self.instrument.info
        return {"device": self.name, "kind": "instrument", "instrument": info.kind, "model": info.key,
                "profile": info.key, "transport": "scpi", "host": self.host, "port": self.port,
                "unit": None, "serial": None, "resource": self.resource,
                "idn": self.instrument.idn()}


class InstrumentEmulator:
    """A set of instrument servers in one asyncio loop."""

    def __init__(self, *, host: str = "127.0.0.1", allow_non_loopback: bool = False):
        check_bind_host(host, allow_non_loopback)
        self.host, self.allow_non_loopback = host, allow_non_loopback
        self.servers: list[ScpiServer] = []

    def serve(self, name: str, instrument: Instrument, port: int = 0) -> ScpiServer:
        s = ScpiServer(name, instrument, self.host, port, self.allow_non_loopback)
        self.servers.append(s)
        return s

    async def start(self) -> None:
        for s in self.servers:
            await s.start()

    async def stop(self) -> None:
        for s in self.servers:
            await s.stop()

    def endpoints(self) -> list:
        return [s.endpoint() for s in self.servers]

    def write_endpoints(self, path) -> None:
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(self.endpoints(), fh, indent=2)
            fh.write("\n")
