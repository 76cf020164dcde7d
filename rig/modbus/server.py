"""Emulated devices as real Modbus servers: Modbus TCP, RTU over a TCP socket, RTU over a pty.

Each served device is a :class:`~dlbrig.firmware_sim.profiles.DeviceImage` (a product's register
map over live models) with a name. A server routes requests by unit id to its devices: one
device per port, several unit ids of one product behind one port (Alfen 200/1/2, KEBA 255), or
several devices behind one port (a TCP gateway) or on one RTU bus. Every request is answered by
``DeviceImage.read/write`` with ``now_ms = clock()`` (an injected callable), so the same server
runs on virtual or real time.

Why our own asyncio server and not ``pymodbus.server``
------------------------------------------------------
The server is where the rig must be *exact* (it certifies other people's masters), so the bytes
are ours; pymodbus is used for the master side (:mod:`.client`) and as an independent check in
the tests. With pymodbus 3.12 the following would be impossible or wrong:

* the datastore turns every exception it raises into 0x04; profile-specific codes (Eastron's 03
  for an 81-register read, KEBA's 02 across a value boundary, 03 for half a float32) need the
  3.12-only ``SimDevice`` action API, which 3.13 rebases again;
* FC06 vs FC16 is hidden behind ``setValues`` (SDM630 refuses FC06; the image needs the fc);
  datastore addresses are off by one (``address += 1``) and not safe for concurrent use;
* unit id 0 is treated as broadcast on TCP since 3.8.5 (#2571); there is no per-connection hook
  to refuse a third client (Alfen ``max_clients``) or to see the peer of a frame; multi-drop RTU
  is "limited support" (<= 38400 baud) and a request cannot be delayed per frame.

So: MBAP and RTU framing and PDU decoding are :mod:`.frames` (small, pure, byte-exact; tested
against pymodbus's client and CRC, and against ``mbpoll``/libmodbus over TCP and a pty).

Behaviour on the wire
---------------------
* Unknown unit: TCP answers 0x0B GATEWAY TARGET FAILED TO RESPOND (``unknown_unit="exception"``,
  default) or stays silent (``"silence"``); an RTU bus is always silent (another device, or
  nobody, owns that address). RTU unit 0 is broadcast: writes go to every device, no answer.
* ``ModbusError(code)`` -> exception response ``code``; any other exception -> 0x04.
* Malformed input never stops a server: unknown function code -> 01; a PDU whose length does not
  fit its function code, or a write quantity/byte count mismatch -> 03; an oversized read ->
  the profile's ``limit_exception``; an MBAP header with protocol id != 0 -> frame dropped; an
  MBAP length outside 2..254 (garbage) -> receive buffer discarded; an incomplete MBAP frame is
  discarded after ``frame_timeout_s`` of silence. RTU: bytes that do not form a CRC-valid
  request are skipped (resynchronisation byte by byte) and whatever is left after
  ``frame_gap_s`` of silence (t3.5) is discarded, as a real device does; nothing is answered.
  Every discarded piece is still shown to the frame tap (``note`` says why).
* Requests on one connection (or one RTU link) are served in order, one at a time, like a real
  device; different connections are independent.
* ``profile.max_clients`` (Alfen: 2): a further simultaneous TCP connection is accepted by the
  kernel and immediately reset (RST). ``profile.keepalive_s`` (Alfen: 60 s): a connection idle
  that long is closed. Both can be overridden per server (``max_clients=``, ``idle_timeout_s=``).

Frame tap and fault injection
-----------------------------
``tap(frame: Frame)`` sees every received and sent frame (raw ADU bytes, direction, injected
clock time and wall time, server, device, peer and local address, unit, function) plus
connection events
(``direction="event"``): the input for pcap export and evidence. ``fault_hook.on_request(frame)``
may return a :class:`FaultAction` for a received request: ``drop`` (request lost: not applied,
no answer), ``drop_response`` (applied, answer lost), ``delay_ms`` (answer late, in real time;
the link is busy meanwhile), ``exception`` (answer this code instead of applying), ``garbage``
(send these bytes instead of the answer, after applying), ``disconnect`` (TCP: close the
connection instead of answering). :class:`FaultRules` is a small rule-based hook.
"""
from __future__ import annotations

import abc
import asyncio
import ipaddress
import json
import logging
import os
import time
import tty
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Protocol, Sequence, Union

from dlbrig.firmware_sim.profiles import DeviceImage, ModbusError, NoSuchUnit

from . import frames as F

log = logging.getLogger(__name__)

__all__ = [
    "Frame", "FaultAction", "FaultHook", "FaultRule", "FaultRules", "FrameRecorder",
    "ServedDevice", "ModbusTcpServer", "ModbusRtuServer", "ModbusEmulator", "BackgroundEmulator",
    "wall_clock_ms", "check_bind_host", "GATEWAY_TARGET_FAILED",
]

GATEWAY_TARGET_FAILED = 0x0B
DEVICE_FAILURE = 0x04

Clock = Callable[[], int]


def wall_clock_ms() -> int:
    """Default clock: Unix time in ms (the Alfen date/time registers read sensible values)."""
    return time.time_ns() // 1_000_000


def check_bind_host(host: str, allow_non_loopback: bool) -> None:
    """Emulators bind to loopback unless told otherwise (DESIGN.md, safety of the rig)."""
    if allow_non_loopback:
        return
    if host == "localhost":
        return
    try:
        ok = ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = False
    if not ok:
        raise PermissionError(f"refusing to bind {host!r}: not a loopback address; pass "
                              f"allow_non_loopback=True to serve on a real network")


# --- frames, tap, faults ---------------------------------------------------------------------
@dataclass(frozen=True)
class Frame:
    """One frame (or event) seen by a server."""

    direction: str          # "rx" (from the master), "tx" (to the master), "event"
    data: bytes             # the raw ADU as on the wire (MBAP + PDU, or unit + PDU + CRC)
    t_ms: int               # injected clock
    wall: float             # time.time()
    server: str
    device: str | None      # the addressed device (None: unknown unit / unparseable)
    peer: str               # "host:port" of the master, or the pty path
    transport: str          # "tcp" | "rtu"
    unit: int | None = None
    function: int | None = None
    note: str = ""
    local: str = ""         # the server's side: "host:port" or the pty path

    @property
    def pdu(self) -> bytes:
        if self.transport == "tcp":
            return self.data[7:]
        return self.data[1:-2]

    def describe(self) -> str:
        head = f"{self.t_ms} {self.direction} {self.server}/{self.device or '-'} unit={self.unit}"
        if self.direction == "event" or self.function is None:
            body = self.data.hex()
        else:
            body = F.describe_pdu(self.pdu, response=self.direction == "tx")
        return f"{head} {body} {self.note}".rstrip()


@dataclass(frozen=True)
class FaultAction:
    """What to do with one request (see module docstring)."""

    drop: bool = False
    drop_response: bool = False
    delay_ms: float = 0.0
    exception: int | None = None
    garbage: bytes | None = None
    disconnect: bool = False

    def describe(self) -> str:
        parts = [k for k in ("drop", "drop_response", "disconnect") if getattr(self, k)]
        if self.delay_ms:
            parts.append(f"delay {self.delay_ms:g} ms")
        if self.exception is not None:
            parts.append(f"exception {self.exception:#04x}")
        if self.garbage is not None:
            parts.append(f"garbage {self.garbage.hex()}")
        return "fault: " + ", ".join(parts or ["none"])


class FaultHook(Protocol):
    def on_request(self, frame: Frame) -> FaultAction | None: ...


@dataclass
class FaultRule:
    """Apply ``action`` to requests matching unit / function / device (None = any), after
    letting ``skip`` matching requests pass, at most ``times`` times (None = always)."""

    action: FaultAction
    unit: int | None = None
    function: int | None = None
    device: str | None = None
    skip: int = 0
    times: int | None = None
    seen: int = 0
    hits: int = 0

    def take(self, frame: Frame) -> bool:
        if self.unit is not None and frame.unit != self.unit:
            return False
        if self.function is not None and frame.function != self.function:
            return False
        if self.device is not None and frame.device != self.device:
            return False
        self.seen += 1
        if self.seen <= self.skip or (self.times is not None and self.hits >= self.times):
            return False
        self.hits += 1
        return True


class FaultRules:
    """A :class:`FaultHook`: the first rule that takes a request decides its action."""

    def __init__(self, rules: Iterable[FaultRule] = ()) -> None:
        self.rules: list[FaultRule] = list(rules)

    def add(self, action: FaultAction, **match: Any) -> FaultRule:
        rule = FaultRule(action, **match)
        self.rules.append(rule)
        return rule

    def clear(self) -> None:
        self.rules.clear()

    def on_request(self, frame: Frame) -> FaultAction | None:
        for r in self.rules:
            if r.take(frame):
                return r.action
        return None


class FrameRecorder:
    """A tap that keeps the last ``maxlen`` frames (and optionally forwards them)."""

    def __init__(self, maxlen: int | None = 100_000,
                 forward: Callable[[Frame], None] | None = None) -> None:
        self.frames: deque[Frame] = deque(maxlen=maxlen)
        self.forward = forward

    def __call__(self, frame: Frame) -> None:
        self.frames.append(frame)
        if self.forward is not None:
            self.forward(frame)

    def select(self, direction: str | None = None, device: str | None = None,
               note: str | None = None) -> list[Frame]:
        return [f for f in self.frames if (direction is None or f.direction == direction)
                and (device is None or f.device == device)
                and (note is None or note in f.note)]

    def clear(self) -> None:
        self.frames.clear()


# --- devices and the shared request path ----------------------------------------------------
@dataclass(frozen=True)
class ServedDevice:
    name: str
    image: DeviceImage

    @property
    def profile(self):
        return self.image.profile


DeviceSpec = Union[Mapping[str, DeviceImage], Sequence[Union[ServedDevice, tuple]]]


def _normalize(devices: DeviceSpec) -> list[ServedDevice]:
    items = devices.items() if isinstance(devices, Mapping) else devices
    out: list[ServedDevice] = []
    for it in items:
        d = it if isinstance(it, ServedDevice) else ServedDevice(*it)
        if not isinstance(d.image, DeviceImage):
            raise TypeError(f"{d.name}: expected a DeviceImage, got {type(d.image).__name__}")
        out.append(d)
    names = [d.name for d in out]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate device names: {names}")
    return out


@dataclass
class _Outcome:
    data: bytes | None = None       # bytes to send (already framed), None = silence
    delay_s: float = 0.0
    disconnect: bool = False
    unit: int | None = None
    function: int | None = None
    device: str | None = None
    note: str = ""


class _Link:
    """One request stream (a TCP connection or a pty): strictly one request at a time."""

    def __init__(self, server: "_ServerBase", peer: str, send: Callable[[bytes], None],
                 close: Callable[[], None], persistent: bool = False) -> None:
        self.server = server
        self.peer = peer
        self.persistent = persistent    # a serial line: a "disconnect" fault cannot close it
        self._send = send
        self._close = close
        self._pending: deque[Callable[[], _Outcome]] = deque()
        self._task: asyncio.Task | None = None
        self.closed = False

    def submit(self, job: Callable[[], _Outcome]) -> None:
        if self.closed:
            return
        if self._task is not None or self._pending:
            self._pending.append(job)
            return
        out = self._run(job)
        if out.delay_s > 0:
            self._task = asyncio.get_running_loop().create_task(self._drain(out))
        else:
            self._deliver(out)

    async def _drain(self, out: _Outcome | None) -> None:
        try:
            while True:
                if out is not None:
                    if out.delay_s > 0:
                        await asyncio.sleep(out.delay_s)
                    self._deliver(out)
                if not self._pending or self.closed:
                    break
                out = self._run(self._pending.popleft())
        finally:
            self._task = None

    def _run(self, job: Callable[[], _Outcome]) -> _Outcome:
        try:
            return job()
        except Exception:  # a bug here must cost one answer, not the server
            log.exception("%s: request from %s failed", self.server.name, self.peer)
            return _Outcome()

    def _deliver(self, out: _Outcome) -> None:
        if self.closed:
            return
        if out.disconnect:
            self.server._event("disconnect (fault)", self.peer, out.device, out.unit)
            self.shutdown()
            return
        if out.data is None:
            return
        try:
            self._send(out.data)
        except OSError as exc:
            log.warning("%s: send to %s failed: %r", self.server.name, self.peer, exc)
            return
        self.server._emit("tx", out.data, out.device, self.peer, out.unit, out.function, out.note)

    def shutdown(self, force: bool = False) -> None:
        if self.closed or (self.persistent and not force):
            return
        self.closed = True
        self._pending.clear()
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
        try:
            self._close()
        except OSError:
            pass


class _ServerBase(abc.ABC):
    transport_name = "tcp"
    rtu = False

    def __init__(self, devices: DeviceSpec, *, clock: Clock | None = None,
                 tap: Callable[[Frame], None] | None = None,
                 fault_hook: FaultHook | None = None, name: str | None = None) -> None:
        self.devices = _normalize(devices)
        if not self.devices:
            raise ValueError("a server needs at least one device")
        self.routes: dict[int, ServedDevice] = {}
        for d in self.devices:
            for u in d.image.unit_ids:
                if u in self.routes:
                    raise ValueError(f"unit {u} served by both {self.routes[u].name!r} and "
                                     f"{d.name!r}")
                self.routes[u] = d
        self.clock: Clock = clock or wall_clock_ms
        self.tap = tap
        self.fault_hook = fault_hook
        self.name = name or "+".join(d.name for d in self.devices)
        self.stats = {"rx": 0, "tx": 0, "exceptions": 0, "discarded": 0, "refused": 0}

    # --- records
    def _emit(self, direction: str, data: bytes, device: str | None, peer: str,
              unit: int | None, function: int | None, note: str = "",
              t_ms: int | None = None) -> Frame | None:
        if direction in self.stats:
            self.stats[direction] += 1
        if self.tap is None and self.fault_hook is None:
            return None
        fr = Frame(direction, bytes(data), self.clock() if t_ms is None else t_ms, time.time(),
                   self.name, device, peer, self.transport_name, unit, function, note,
                   self.local_address)
        if self.tap is not None:
            try:
                self.tap(fr)
            except Exception:  # a broken tap must not break the device
                log.exception("%s: frame tap failed", self.name)
        return fr

    def _event(self, note: str, peer: str, device: str | None = None,
               unit: int | None = None, data: bytes = b"") -> None:
        self._emit("event", data, device, peer, unit, None, note)

    def _discard(self, data: bytes, peer: str, why: str) -> None:
        self.stats["discarded"] += 1
        self._emit("rx", data, None, peer, None, None, f"discarded: {why}")

    # --- one request -> one outcome
    def _serve(self, adu: bytes, unit: int, pdu: bytes, peer: str,
               wrap: Callable[[bytes], bytes]) -> _Outcome:
        dev = self.routes.get(unit)
        dname = dev.name if dev is not None else None
        fc = pdu[0] if pdu else None
        now = self.clock()
        rx = self._emit("rx", adu, dname, peer, unit, fc, "", t_ms=now)
        act = None
        if self.fault_hook is not None and rx is not None:
            try:
                act = self.fault_hook.on_request(rx)
            except Exception:
                log.exception("%s: fault hook failed", self.name)
        out = _Outcome(unit=unit, function=fc, device=dname)
        if act is not None:
            note = act.describe()
            out.note = note
            out.delay_s = max(0.0, act.delay_ms / 1000.0)
            if act.disconnect:
                out.disconnect = True
                return out
            if act.drop:
                self._event(note + " (request not applied)", peer, dname, unit)
                return out
        if act is not None and act.exception is not None:
            resp = F.exception_pdu(fc or 0, act.exception)
        else:
            resp = self._respond(dev, unit, pdu, now)
        if resp is not None and resp[0] & 0x80:
            self.stats["exceptions"] += 1
        if act is not None:
            if act.drop_response:
                self._event(act.describe() + " (request applied)", peer, dname, unit)
                return out
            if act.garbage is not None:
                out.data = act.garbage
                return out
        if resp is not None:
            out.data = wrap(resp)
            if resp[0] & 0x80 and not out.note:
                out.note = f"exception {resp[1]:#04x}"
        return out

    def _respond(self, dev: ServedDevice | None, unit: int, pdu: bytes, now: int) -> bytes | None:
        """The response PDU, or None for silence."""
        fc = pdu[0] if pdu else 0
        if self.rtu and unit == 0:
            self._broadcast(pdu, now)
            return None
        if dev is None:
            return self._no_such_unit(fc)
        try:
            req = F.parse_request(pdu)
        except F.PduError as exc:
            return F.exception_pdu(fc, exc.code)
        image = dev.image
        try:
            if req.is_write:
                image.write(unit, req.table, req.address, list(req.values), now, fc=req.fc)
                return F.write_response(req)
            if not 1 <= req.count <= F.SPEC_MAX[req.fc]:
                p = image.profile
                code = p.limit_exception if req.fc in p.function_codes else 1
                return F.exception_pdu(fc, code)
            values = image.read(unit, req.table, req.address, req.count, now)
            if len(values) != req.count:
                raise RuntimeError(f"image returned {len(values)} values for {req.count}")
            return F.read_response(req.fc, values)
        except ModbusError as exc:
            return F.exception_pdu(fc, exc.code)
        except NoSuchUnit:
            return self._no_such_unit(fc)
        except Exception:
            log.exception("%s: %s failed on unit %d", self.name, F.describe_pdu(pdu), unit)
            return F.exception_pdu(fc, DEVICE_FAILURE)

    def _no_such_unit(self, fc: int) -> bytes | None:
        return None

    def _broadcast(self, pdu: bytes, now: int) -> None:
        try:
            req = F.parse_request(pdu)
        except F.PduError:
            return
        if not req.is_write:
            return
        for u, d in self.routes.items():
            try:
                d.image.write(u, req.table, req.address, list(req.values), now, fc=req.fc)
            except Exception as exc:  # broadcast has no answer; a refusal is just not applied
                log.debug("%s: broadcast to unit %d refused: %r", self.name, u, exc)

    # --- endpoints
    @abc.abstractmethod
    def endpoints(self) -> list[dict]:
        """Endpoint records of the devices this server answers for (TCP and RTU servers differ)."""

    @property
    def local_address(self) -> str:
        return ""

    def _records(self, host: str | None, port: int | None, serial: str | None) -> list[dict]:
        out = []
        for d in self.devices:
            for u in d.image.unit_ids:
                out.append({"device": d.name, "profile": d.profile.name, "kind": d.profile.kind,
                            "transport": self.transport_name, "host": host, "port": port,
                            "unit": u, "serial": serial})
        return out


def _peer(transport: asyncio.BaseTransport) -> str:
    pn = transport.get_extra_info("peername")
    if isinstance(pn, tuple) and len(pn) >= 2:
        return f"{pn[0]}:{pn[1]}"
    return str(pn)


class _StreamServer(_ServerBase):
    """Common asyncio TCP listener handling."""

    def __init__(self, devices: DeviceSpec, *, host: str = "127.0.0.1", port: int = 0,
                 allow_non_loopback: bool = False, **kw: Any) -> None:
        super().__init__(devices, **kw)
        check_bind_host(host, allow_non_loopback)
        self.host = host
        self.port = port
        self._server: asyncio.base_events.Server | None = None
        self.connections: set = set()

    async def start(self) -> "_StreamServer":
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._protocol, self.host, self.port,
                                                reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    @abc.abstractmethod
    def _protocol(self) -> asyncio.Protocol:
        """A new protocol instance per connection (MBAP for TCP, RTU framing for RTU lines)."""

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for c in list(self.connections):
                c.link.shutdown()
            await self._server.wait_closed()
            self._server = None

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def local_address(self) -> str:
        return f"{self.host}:{self.port}"


class _TcpConnection(asyncio.Protocol):
    def __init__(self, server: "ModbusTcpServer") -> None:
        self.server = server
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.link: _Link | None = None
        self._frame_timer: asyncio.TimerHandle | None = None
        self._idle_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        s = self.server
        self.transport = transport  # type: ignore[assignment]
        peer = _peer(transport)
        self.link = _Link(s, peer, transport.write, transport.close)  # type: ignore[attr-defined]
        if s.max_clients is not None and len(s.connections) >= s.max_clients:
            s.stats["refused"] += 1
            s._event(f"refused: {len(s.connections)} clients connected (max {s.max_clients})",
                     peer)
            self.link.closed = True
            transport.abort()  # type: ignore[attr-defined]
            return
        s.connections.add(self)
        s._event("connect", peer)
        self._touch()

    def connection_lost(self, exc: Exception | None) -> None:
        s = self.server
        if self in s.connections:
            s.connections.discard(self)
            s._event("disconnect", self.link.peer if self.link else "?")
        for t in (self._frame_timer, self._idle_timer):
            if t is not None:
                t.cancel()
        if self.link is not None:
            self.link.closed = True

    def _touch(self) -> None:
        t = self.server.idle_timeout_s
        if not t:
            return
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        self._idle_timer = asyncio.get_running_loop().call_later(t, self._idle)

    def _idle(self) -> None:
        if self.link is not None and not self.link.closed:
            self.server._event(f"idle {self.server.idle_timeout_s:g} s: closed", self.link.peer)
            self.link.shutdown()

    def data_received(self, data: bytes) -> None:
        link = self.link
        if link is None or link.closed:
            return
        self._touch()
        buf = self.buf
        buf += data
        s = self.server
        while len(buf) >= 7:
            tid, pid, length, unit = F.MBAP_HEADER.unpack_from(buf)
            if length < 2 or length > F.MAX_PDU + 1:
                s._discard(bytes(buf), link.peer, f"MBAP length {length} outside 2..254")
                buf.clear()
                break
            total = 6 + length
            if len(buf) < total:
                break
            adu = bytes(buf[:total])
            del buf[:total]
            if pid != 0:
                s._discard(adu, link.peer, f"MBAP protocol id {pid} != 0")
                continue
            link.submit(lambda adu=adu, tid=tid, unit=unit: s._serve(
                adu, unit, adu[7:], link.peer, lambda pdu: F.mbap(tid, unit, pdu)))
        if self._frame_timer is not None:
            self._frame_timer.cancel()
            self._frame_timer = None
        if buf:
            self._frame_timer = asyncio.get_running_loop().call_later(
                s.frame_timeout_s, self._flush)

    def _flush(self) -> None:
        self._frame_timer = None
        if self.buf and self.link is not None:
            self.server._discard(bytes(self.buf), self.link.peer,
                                 f"incomplete frame after {self.server.frame_timeout_s:g} s")
            self.buf.clear()


class ModbusTcpServer(_StreamServer):
    """Modbus TCP (MBAP) for one or more devices on one port."""

    transport_name = "tcp"

    def __init__(self, devices: DeviceSpec, *, host: str = "127.0.0.1", port: int = 0,
                 unknown_unit: str = "exception", max_clients: int | None | str = "profile",
                 idle_timeout_s: float | None | str = "profile", frame_timeout_s: float = 1.0,
                 **kw: Any) -> None:
        super().__init__(devices, host=host, port=port, **kw)
        if unknown_unit not in ("exception", "silence"):
            raise ValueError("unknown_unit must be 'exception' or 'silence'")
        self.unknown_unit = unknown_unit
        profs = [d.profile for d in self.devices]
        if max_clients == "profile":
            lim = [p.max_clients for p in profs if p.max_clients]
            max_clients = min(lim) if lim else None
        if idle_timeout_s == "profile":
            ka = [p.keepalive_s for p in profs if p.keepalive_s]
            idle_timeout_s = min(ka) if ka else None
        self.max_clients = max_clients
        self.idle_timeout_s = idle_timeout_s
        self.frame_timeout_s = frame_timeout_s

    def _protocol(self) -> asyncio.Protocol:
        return _TcpConnection(self)

    def _no_such_unit(self, fc: int) -> bytes | None:
        if self.unknown_unit == "exception":
            return F.exception_pdu(fc, GATEWAY_TARGET_FAILED)
        return None

    def endpoints(self) -> list[dict]:
        return self._records(self.host, self.port, None)


class _RtuStream:
    """RTU request framing on a byte stream: CRC-validated, resynchronising, t3.5 flush."""

    MAX_BUFFER = 512

    def __init__(self, server: "ModbusRtuServer", link: _Link) -> None:
        self.server = server
        self.link = link
        self.buf = bytearray()
        self._dead = 0
        self._gap: asyncio.TimerHandle | None = None

    def feed(self, data: bytes) -> None:
        if self.link.closed:
            return
        buf = self.buf
        buf += data
        s = self.server
        if len(buf) > self.MAX_BUFFER:
            cut = len(buf) - self.MAX_BUFFER
            s._discard(bytes(buf[:cut]), self.link.peer, "receive buffer overflow")
            del buf[:cut]
            self._dead = max(0, self._dead - cut)
        while True:
            found = self._find()
            if found is None:
                break
            i, n = found
            if i:
                s._discard(bytes(buf[:i]), self.link.peer, "no valid RTU frame (CRC/garbage)")
            frame = bytes(buf[i:i + n])
            del buf[:i + n]
            self._dead = 0
            unit = frame[0]
            link = self.link
            link.submit(lambda frame=frame, unit=unit: s._serve(
                frame, unit, frame[1:-2], link.peer, lambda pdu: F.rtu_frame(unit, pdu)))
        if self._gap is not None:
            self._gap.cancel()
            self._gap = None
        if buf:
            self._gap = asyncio.get_running_loop().call_later(s.frame_gap_s, self._flush)

    MAX_UNKNOWN = 64    # longest request of a function code we do not implement that we
    #                     still recognise (by CRC) in order to answer 01

    def _find(self) -> tuple[int, int] | None:
        """First CRC-valid request in the buffer: (offset, size) or None.

        Known function codes have a known request size: one CRC check per offset. A request
        with another function code is only looked for (CRC over candidate lengths) when its
        unit byte is one of ours: other units' frames are none of our business, and garbage
        costs at most MAX_UNKNOWN checks per plausible offset."""
        buf = self.buf
        n = len(buf)
        ours = self.server.routes
        dead = True         # offsets before self._dead are known not to start a request
        for i in range(self._dead, n - 3):
            size = F.rtu_request_size(buf, i)
            if size is None:
                dead = False
                continue
            if size == -1:
                if buf[i] in ours:
                    top = min(self.MAX_UNKNOWN, n - i)
                    for L in range(4, top + 1):
                        if F.rtu_check(bytes(buf[i:i + L])):
                            return i, L
                    if top < self.MAX_UNKNOWN:
                        dead = False
            elif n - i < size:
                dead = False
            elif F.rtu_check(bytes(buf[i:i + size])):
                return i, size
            if dead:
                self._dead = i + 1
        return None

    def _flush(self) -> None:
        self._gap = None
        if self.buf:
            self.server._discard(bytes(self.buf), self.link.peer,
                                 f"no valid RTU frame after {self.server.frame_gap_s * 1000:g} "
                                 f"ms silence")
            self.buf.clear()
            self._dead = 0

    def close(self) -> None:
        if self._gap is not None:
            self._gap.cancel()
            self._gap = None


class _RtuTcpConnection(asyncio.Protocol):
    def __init__(self, server: "ModbusRtuServer") -> None:
        self.server = server
        self.link: _Link | None = None
        self.stream: _RtuStream | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = _peer(transport)
        self.link = _Link(self.server, peer, transport.write,  # type: ignore[attr-defined]
                          transport.close)
        self.stream = _RtuStream(self.server, self.link)
        self.server.connections.add(self)
        self.server._event("connect", peer)

    def data_received(self, data: bytes) -> None:
        if self.stream is not None:
            self.stream.feed(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        if self.link is not None:
            self.link.closed = True
            self.server._event("disconnect", self.link.peer)
        if self.stream is not None:
            self.stream.close()


class _Pty:
    """A pseudo-terminal pair: the server owns the master side; masters open ``path``."""

    def __init__(self, server: "ModbusRtuServer") -> None:
        self.server = server
        self.master_fd, self.slave_fd = os.openpty()
        tty.setraw(self.slave_fd)       # no echo, no line discipline: bytes pass unchanged
        self.path = os.ttyname(self.slave_fd)
        os.set_blocking(self.master_fd, False)
        self.link = _Link(server, self.path, self._write, lambda: None, persistent=True)
        self.stream = _RtuStream(server, self.link)
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self.master_fd, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self.master_fd, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:  # EIO: no reader on the other side; keep the line open
            log.debug("%s: pty read: %r", self.server.name, exc)
            return
        if data:
            self.stream.feed(data)

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.master_fd, view)
            except BlockingIOError:
                log.warning("%s: pty output full, %d bytes lost", self.server.name, len(view))
                return
            view = view[n:]

    def close(self) -> None:
        self.link.shutdown(force=True)
        self.stream.close()
        try:
            self._loop.remove_reader(self.master_fd)
        except Exception:
            pass
        for fd in (self.master_fd, self.slave_fd):
            try:
                os.close(fd)
            except OSError:
                pass


class ModbusRtuServer(_StreamServer):
    """Modbus RTU for devices sharing one bus, over a TCP socket (``medium="tcp"``: RTU framing,
    no MBAP, as a transparent serial-to-Ethernet converter) or a pty (``medium="pty"``: masters
    open :attr:`serial_path` as a serial port). Absent units are silent."""

    transport_name = "rtu"
    rtu = True

    def __init__(self, devices: DeviceSpec, *, medium: str = "tcp", host: str = "127.0.0.1",
                 port: int = 0, frame_gap_s: float = 0.05, **kw: Any) -> None:
        if medium not in ("tcp", "pty"):
            raise ValueError("medium must be 'tcp' or 'pty'")
        super().__init__(devices, host=host, port=port, **kw)
        self.medium = medium
        self.frame_gap_s = frame_gap_s
        self._pty: _Pty | None = None

    @property
    def serial_path(self) -> str | None:
        return self._pty.path if self._pty is not None else None

    @property
    def local_address(self) -> str:
        if self.medium == "pty":
            return self.serial_path or ""
        return f"{self.host}:{self.port}"

    async def start(self) -> "ModbusRtuServer":
        if self.medium == "pty":
            self._pty = _Pty(self)
            return self
        await super().start()
        return self

    async def stop(self) -> None:
        if self._pty is not None:
            self._pty.close()
            self._pty = None
        await super().stop()

    @property
    def running(self) -> bool:
        return self._server is not None or self._pty is not None

    def _protocol(self) -> asyncio.Protocol:
        return _RtuTcpConnection(self)

    def endpoints(self) -> list[dict]:
        if self.medium == "pty":
            return self._records(None, None, self.serial_path)
        return self._records(self.host, self.port, None)


# --- a set of servers --------------------------------------------------------------------------
class ModbusEmulator:
    """Starts and stops a set of servers in one asyncio loop; collects their endpoints."""

    def __init__(self, *, host: str = "127.0.0.1", allow_non_loopback: bool = False,
                 clock: Clock | None = None, tap: Callable[[Frame], None] | None = None,
                 fault_hook: FaultHook | None = None) -> None:
        check_bind_host(host, allow_non_loopback)
        self.host = host
        self.allow_non_loopback = allow_non_loopback
        self.clock = clock or wall_clock_ms
        self.tap = tap
        self.fault_hook = fault_hook
        self.servers: list[_StreamServer] = []
        self._started = False

    def _kw(self, kw: dict) -> dict:
        kw.setdefault("host", self.host)
        kw.setdefault("allow_non_loopback", self.allow_non_loopback)
        kw.setdefault("clock", self.clock)
        kw.setdefault("tap", self.tap)
        kw.setdefault("fault_hook", self.fault_hook)
        return kw

    def serve_tcp(self, devices: DeviceSpec, **kw: Any) -> ModbusTcpServer:
        s = ModbusTcpServer(devices, **self._kw(kw))
        self.servers.append(s)
        return s

    def serve_rtu(self, devices: DeviceSpec, **kw: Any) -> ModbusRtuServer:
        s = ModbusRtuServer(devices, **self._kw(kw))
        self.servers.append(s)
        return s

    def serve(self, name: str, image: DeviceImage, **kw: Any) -> _StreamServer:
        """One device on its own port, with the product's native transport (RTU products as
        RTU over TCP unless ``medium="pty"``)."""
        if image.profile.transport == "rtu":
            return self.serve_rtu({name: image}, **kw)
        return self.serve_tcp({name: image}, **kw)

    async def start(self) -> "ModbusEmulator":
        try:
            for s in self.servers:
                if not s.running:
                    await s.start()
        except BaseException:
            await self.stop()
            raise
        self._started = True
        return self

    async def stop(self) -> None:
        for s in self.servers:
            await s.stop()
        self._started = False

    async def __aenter__(self) -> "ModbusEmulator":
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    def endpoints(self) -> list[dict]:
        return [e for s in self.servers for e in s.endpoints()]

    def write_endpoints(self, path: str | os.PathLike) -> None:
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(self.endpoints(), fh, indent=2)
            fh.write("\n")

    def run_in_thread(self) -> "BackgroundEmulator":
        return BackgroundEmulator(self)


class BackgroundEmulator:
    """Run a :class:`ModbusEmulator` in its own thread and loop, for synchronous callers.

    Device models are then touched from that thread: change them through :meth:`call`, which
    runs a function in the emulator's loop, between two requests."""

    def __init__(self, emulator: ModbusEmulator) -> None:
        self.emulator = emulator
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread = None

    def start(self, timeout_s: float = 10.0) -> "BackgroundEmulator":
        import threading
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="modbus-emulator",
                                        daemon=True)
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(self.emulator.start(), self.loop)
        try:
            fut.result(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def call(self, fn: Callable[..., Any], *args: Any, timeout_s: float = 10.0) -> Any:
        async def run() -> Any:
            return fn(*args)
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout_s)

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.loop is None:
            return
        try:
            if self.loop.is_running():
                asyncio.run_coroutine_threadsafe(self.emulator.stop(), self.loop).result(timeout_s)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            if self._thread is not None:
                self._thread.join(timeout_s)
            self.loop.close()
            self.loop = None

    def endpoints(self) -> list[dict]:
        return self.emulator.endpoints()

    def __enter__(self) -> "BackgroundEmulator":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
