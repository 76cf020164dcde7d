"""Malformed Modbus/TCP frames, crafted with scapy's Modbus layer, for a DUT's own Modbus server.

Each frame is built as a valid request by scapy (``scapy.contrib.modbus``) and then broken where the
layer would otherwise fix the field up (length, protocol id), so what goes on the wire is exactly
the named defect. :func:`exchange` sends one frame on a fresh connection and classifies the answer.
The expectations follow the Modbus Application Protocol v1.1b3 (exception codes, §7) and Modbus
Messaging on TCP/IP (§3.1.3: a frame with a wrong protocol id or length is discarded).
"""
from __future__ import annotations

import socket
import struct

SOCKET_TIMEOUT_S = 1.0       # real seconds to wait for an answer to a crafted frame


def malformed_frames(unit: int, address: int = 0) -> list:
    """(name, raw bytes, what a compliant server does) for each malformed Modbus/TCP frame,
    crafted with scapy's Modbus layer (then broken where the layer would fix the field)."""
    from scapy.contrib.modbus import (ModbusADURequest, ModbusPDU03ReadHoldingRegistersRequest)

    def adu(pdu, **kw):
        return bytes(ModbusADURequest(transId=kw.pop("tid", 0x4242), unitId=kw.pop("unit", unit), **kw) / pdu)

    good = ModbusPDU03ReadHoldingRegistersRequest(startAddr=address, quantity=1)
    frames = []
    raw = bytearray(adu(good))
    struct.pack_into(">H", raw, 4, 40)                      # MBAP length says 40, 6 bytes follow
    frames.append(("wrong MBAP length", bytes(raw), {"silence"}))
    frames.append(("bad protocol id", adu(good, protoId=7), {"silence"}))
    from scapy.packet import Raw
    frames.append(("unknown function code", adu(Raw(bytes([0x41, 0, 0, 0, 1]))), {"exception:1"}))
    raw = bytearray(adu(Raw(bytes([0x03, 0x00]))))          # FC03 with one byte of its four
    frames.append(("truncated PDU", bytes(raw), {"silence", "exception:3"}))
    frames.append(("oversized quantity", adu(ModbusPDU03ReadHoldingRegistersRequest(startAddr=address,
                                                                                    quantity=126)),
                   {"exception:3"}))
    frames.append(("wrong unit id", adu(good, unit=(unit + 17) % 247 or 1),
                   {"silence", "exception:10", "exception:11", "answer"}))
    return frames


def exchange(host: str, port: int, data: bytes) -> str:
    """Send one frame on a fresh connection; "silence", "closed", "answer" or "exception:N"."""
    with socket.create_connection((host, port), timeout=SOCKET_TIMEOUT_S) as s:
        s.settimeout(SOCKET_TIMEOUT_S)
        s.sendall(data)
        try:
            reply = s.recv(260)
        except socket.timeout:
            return "silence"
        except ConnectionResetError:
            return "closed"
    if not reply:
        return "closed"
    if len(reply) >= 9 and reply[7] & 0x80:
        return f"exception:{reply[8]}"
    return "answer"
