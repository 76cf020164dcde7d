"""Modbus application data units, byte-exact and pure (no sockets, no pymodbus).

The server side of :mod:`dlbrig.rig.modbus` frames and parses requests with this module only, so
the bytes on the wire are under our control (malformed-frame handling, fault injection, frame
capture). The master side uses pymodbus, an independent implementation: the two check each other.

* :func:`crc16` / :func:`rtu_frame` / :func:`rtu_check`: the Modbus RTU CRC (poly 0xA001, init
  0xFFFF, low byte first on the wire).
* :func:`mbap` / :data:`MBAP_HEADER`: the Modbus TCP header (transaction id, protocol id 0,
  length = unit byte + PDU, unit id).
* :func:`parse_request`: a request PDU -> :class:`Request`, or :class:`PduError` carrying the
  exception code a conforming server answers (01 unknown function, 03 malformed/oversized).
* :func:`read_response` / :func:`write_response` / :func:`exception_pdu`: response PDUs.
* :func:`rtu_request_size`: how long an RTU *request* is, from its first bytes (RTU has no
  length field; a server knows request sizes by function code).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Sequence

__all__ = [
    "crc16", "rtu_frame", "rtu_check", "mbap", "MBAP_HEADER", "MAX_PDU", "Request", "PduError",
    "parse_request", "read_response", "write_response", "exception_pdu", "rtu_request_size",
    "SPEC_MAX", "FC_TABLE", "describe_pdu",
]

MBAP_HEADER = struct.Struct(">HHHB")      # transaction id, protocol id, length, unit id
MAX_PDU = 253                               # Modbus application protocol spec, 4.1
FC_TABLE = {1: "coil", 2: "discrete", 3: "holding", 4: "input"}
# Quantity limits of the Modbus application protocol v1.1b3 (what fits in one PDU).
SPEC_MAX = {1: 2000, 2: 2000, 3: 125, 4: 125, 15: 1968, 16: 123}


def _crc_table() -> tuple[int, ...]:
    out = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        out.append(crc)
    return tuple(out)


_CRC = _crc_table()


def crc16(data: bytes) -> int:
    """Modbus CRC-16 of ``data``; on the wire it is sent low byte first."""
    crc = 0xFFFF
    tbl = _CRC
    for b in data:
        crc = (crc >> 8) ^ tbl[(crc ^ b) & 0xFF]
    return crc


def rtu_frame(unit: int, pdu: bytes) -> bytes:
    """unit + PDU + CRC (low byte first)."""
    body = bytes((unit & 0xFF,)) + pdu
    c = crc16(body)
    return body + bytes((c & 0xFF, c >> 8))


def rtu_check(frame: bytes) -> bool:
    """True if the last two bytes of ``frame`` are the CRC of the rest."""
    if len(frame) < 4:
        return False
    c = crc16(frame[:-2])
    return frame[-2] == (c & 0xFF) and frame[-1] == (c >> 8)


def mbap(tid: int, unit: int, pdu: bytes, pid: int = 0) -> bytes:
    """A Modbus TCP ADU (MBAP header + PDU)."""
    return MBAP_HEADER.pack(tid & 0xFFFF, pid & 0xFFFF, len(pdu) + 1, unit & 0xFF) + pdu


def exception_pdu(fc: int, code: int) -> bytes:
    return bytes(((fc | 0x80) & 0xFF, code & 0xFF))


class PduError(Exception):
    """A request PDU that a server answers with exception ``code``."""

    def __init__(self, code: int, message: str = "") -> None:
        self.code = code
        super().__init__(f"exception {code:02d}: {message}")


@dataclass(frozen=True)
class Request:
    """A decoded request PDU."""

    fc: int
    table: str
    address: int
    count: int
    values: tuple[int, ...] | None = None   # words (FC06/16) or 0/1 bits (FC05/15)

    @property
    def is_write(self) -> bool:
        return self.values is not None


def parse_request(pdu: bytes) -> Request:
    """Decode a request PDU; :class:`PduError` (01 or 03) when a server must refuse it.

    Function codes other than 01-06, 15, 16 -> 01. A PDU whose length does not match its
    function code (truncated, trailing bytes, byte count inconsistent with the quantity) -> 03,
    as is a quantity of 0 or above the spec limit for FC05/06/15/16 framing. Read quantities are
    *not* limited here: the device (the profile) decides how it refuses an oversized read.
    """
    if not pdu:
        raise PduError(1, "empty PDU")
    fc = pdu[0]
    n = len(pdu)
    if fc in (1, 2, 3, 4):
        if n != 5:
            raise PduError(3, f"fc {fc}: PDU length {n} != 5")
        address, count = struct.unpack_from(">HH", pdu, 1)
        return Request(fc, FC_TABLE[fc], address, count)
    if fc in (5, 6):
        if n != 5:
            raise PduError(3, f"fc {fc}: PDU length {n} != 5")
        address, value = struct.unpack_from(">HH", pdu, 1)
        if fc == 5:
            if value not in (0xFF00, 0x0000):
                raise PduError(3, f"fc 5: value {value:#06x}")
            return Request(5, "coil", address, 1, (1 if value else 0,))
        return Request(6, "holding", address, 1, (value,))
    if fc in (15, 16):
        if n < 6:
            raise PduError(3, f"fc {fc}: truncated PDU ({n} bytes)")
        address, count, nbytes = struct.unpack_from(">HHB", pdu, 1)
        if fc == 16:
            if not 1 <= count <= SPEC_MAX[16] or nbytes != 2 * count or n != 6 + nbytes:
                raise PduError(3, f"fc 16: quantity {count}, byte count {nbytes}, PDU {n}")
            return Request(16, "holding", address, count,
                           struct.unpack_from(f">{count}H", pdu, 6))
        if not 1 <= count <= SPEC_MAX[15] or nbytes != (count + 7) // 8 or n != 6 + nbytes:
            raise PduError(3, f"fc 15: quantity {count}, byte count {nbytes}, PDU {n}")
        bits = tuple((pdu[6 + i // 8] >> (i % 8)) & 1 for i in range(count))
        return Request(15, "coil", address, count, bits)
    raise PduError(1, f"function code {fc:#04x} not supported")


def read_response(fc: int, values: Sequence[int]) -> bytes:
    """FC01-04 response PDU for ``values`` (words, or 0/1 bits for FC01/02)."""
    if fc in (1, 2):
        nbytes = (len(values) + 7) // 8
        buf = bytearray(nbytes)
        for i, v in enumerate(values):
            if v:
                buf[i // 8] |= 1 << (i % 8)
        return bytes((fc, nbytes)) + bytes(buf)
    return bytes((fc, 2 * len(values))) + struct.pack(f">{len(values)}H",
                                                     *(int(v) & 0xFFFF for v in values))


def write_response(req: Request) -> bytes:
    """FC05/06 echo the request; FC15/16 answer address and quantity."""
    if req.fc == 5:
        return struct.pack(">BHH", 5, req.address, 0xFF00 if req.values[0] else 0)
    if req.fc == 6:
        return struct.pack(">BHH", 6, req.address, req.values[0])
    return struct.pack(">BHH", req.fc, req.address, req.count)


def rtu_request_size(buf: bytes | bytearray, start: int = 0) -> int | None:
    """Total size of the RTU request starting at ``buf[start]``: an int, ``None`` if more bytes
    are needed to know, ``-1`` for a function code whose request size is unknown."""
    avail = len(buf) - start
    if avail < 2:
        return None
    fc = buf[start + 1]
    if 1 <= fc <= 6:
        return 8
    if fc in (15, 16):
        if avail < 7:
            return None
        return 9 + buf[start + 6]
    return -1


def describe_pdu(pdu: bytes, response: bool = False) -> str:
    """A one-line human description of a request (or response) PDU, for logs and reports."""
    if not pdu:
        return "empty"
    fc = pdu[0]
    if fc & 0x80:
        return f"exception fc={fc & 0x7F} code={pdu[1] if len(pdu) > 1 else '?'}"
    if response:
        if fc in (1, 2, 3, 4) and len(pdu) >= 2:
            return f"fc={fc} response {pdu[1]} bytes"
        return f"fc={fc} response"
    try:
        r = parse_request(pdu)
        return f"fc={fc} {r.table} addr={r.address} count={r.count}"
    except PduError:
        return f"fc={fc} len={len(pdu)} (malformed)"
