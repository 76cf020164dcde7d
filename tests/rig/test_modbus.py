"""rig.modbus servers on the wire: framing, interop (pymodbus in another process, mbpoll),
RTU over TCP and over a pty, product quirks, malformed input, frame tap and fault hooks.

Every test is bounded: asyncio.wait_for around the whole test, short timeouts for expected
silence, ports chosen by the OS, loopback only.
"""
from __future__ import annotations

import asyncio
import json
import math
import os
import random
import re
import shutil
import struct
import sys
import textwrap

import pytest

from dlbrig.firmware_sim.profiles import DeviceImage, get_profile
from dlbrig.rig.modbus import (FaultAction, FaultRules, FrameRecorder, ModbusEmulator,
                               ModbusMaster, ModbusRtuServer, ModbusTcpServer, ModbusTimeout,
                               check_bind_host)
from dlbrig.rig.modbus import _pymodbus as pm
from dlbrig.rig.modbus import frames as F

pm.quiet_logging()

METER = dict(
    voltage_l1_v=230.1, voltage_l2_v=231.2, voltage_l3_v=229.3,
    current_l1_a=10.0, current_l2_a=12.5, current_l3_a=8.25, current_n_a=3.5,
    power_l1_w=2301.0, power_l2_w=2890.0, power_l3_w=1891.7, power_total_w=7082.7,
    va_l1=2400.0, va_l2=2950.0, va_l3=1900.0, va_total=7250.0,
    var_l1=100.0, var_l2=-50.0, var_l3=0.0, var_total=50.0,
    pf_l1=0.95, pf_l2=0.98, pf_l3=-0.5, pf_total=0.97, frequency_hz=50.02,
    import_kwh=12345.6, export_kwh=78.9, import_l1_kwh=4000.1, import_l2_kwh=4000.2,
    import_l3_kwh=4345.3, export_l1_kwh=20.0, export_l2_kwh=30.0, export_l3_kwh=28.9,
    total_kwh=12424.5,
)
CHARGER = dict(
    cp_state="C2", status="charging", error_code=0,
    current_l1_a=16.0, current_l2_a=15.5, current_l3_a=15.75,
    voltage_l1_v=230.0, voltage_l2_v=231.0, voltage_l3_v=229.0, power_total_w=10960.0,
    session_energy_wh=5432.0, total_energy_wh=1234567.0, session_duration_s=1800,
    pwm_duty_pct=26.7, applied_current_a=16.0, setpoint_a=16.0, setpoint_valid_s=42.0,
    hw_max_current_a=32.0, cable_max_current_a=20.0, safe_current_a=6.0,
    watchdog_timeout_s=15.0, watchdog_remaining_s=7.5, in_failsafe=False, phases_in_use=3,
    phases_setting=3, enabled=True, connector_locked=True, contactor_closed=True,
    vehicle_connected=True, serial="12345678", firmware_version="1.2.3", model_name="EVSE-X",
)


class Fake:
    """A dict-backed device implementing the point vocabulary."""

    def __init__(self, kind: str = "charger", **over) -> None:
        self.pts = dict(METER if kind == "meter" else CHARGER)
        self.pts.update(over)
        self.writes: list = []

    def points(self):
        return self.pts

    def write_point(self, name, value, now_ms):
        self.writes.append((name, value, now_ms))
        if name not in ("heartbeat", "unlock"):
            self.pts[name] = value

    def written(self, name):
        return [v for n, v, _ in self.writes if n == name]


class Broken(Fake):
    def points(self):
        raise RuntimeError("model crashed")


def run(coro, timeout: float = 20.0):
    """Run one async test body, bounded."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


def f32_words(x: float) -> list[int]:
    b = struct.pack(">f", x)
    return [(b[0] << 8) | b[1], (b[2] << 8) | b[3]]


def words_f32(w) -> float:
    return struct.unpack(">f", struct.pack(">HH", w[0], w[1]))[0]


def as_f32(x: float) -> float:
    return struct.unpack(">f", struct.pack(">f", x))[0]


def sdm630(unit: int = 1, **over):
    dev = Fake("meter", **over)
    return DeviceImage(get_profile("sdm630"), {unit: dev}), dev


# --- raw clients -----------------------------------------------------------------------------
class RawTcp:
    """A raw Modbus TCP peer: send bytes, read whole MBAP ADUs, assert silence."""

    def __init__(self, reader, writer) -> None:
        self.r, self.w = reader, writer
        self.tid = 0

    @classmethod
    async def open(cls, port: int) -> "RawTcp":
        r, w = await asyncio.open_connection("127.0.0.1", port)
        return cls(r, w)

    async def send(self, data: bytes) -> None:
        self.w.write(data)
        await self.w.drain()

    async def recv(self, timeout: float = 2.0) -> bytes:
        head = await asyncio.wait_for(self.r.readexactly(7), timeout)
        n = struct.unpack(">H", head[4:6])[0]
        return head + await asyncio.wait_for(self.r.readexactly(n - 1), timeout)

    async def pdu(self, unit: int, pdu: bytes, timeout: float = 2.0) -> bytes:
        """Send a request PDU, return the response PDU (checks tid and unit echo)."""
        self.tid = (self.tid + 1) & 0xFFFF
        await self.send(F.mbap(self.tid, unit, pdu))
        adu = await self.recv(timeout)
        tid, pid, _, u = F.MBAP_HEADER.unpack_from(adu)
        assert (tid, pid, u) == (self.tid, 0, unit)
        return adu[7:]

    async def silent(self, timeout: float = 0.2) -> bool:
        try:
            data = await asyncio.wait_for(self.r.read(1), timeout)
        except asyncio.TimeoutError:
            return True
        return False if data else True

    async def closed_by_peer(self, timeout: float = 2.0) -> bool:
        try:
            data = await asyncio.wait_for(self.r.read(100), timeout)
        except (ConnectionResetError, BrokenPipeError):
            return True
        return data == b""

    async def close(self) -> None:
        self.w.close()
        try:
            await self.w.wait_closed()
        except (ConnectionResetError, BrokenPipeError):
            pass


def rd(fc: int, address: int, count: int) -> bytes:
    return struct.pack(">BHH", fc, address, count)


def wr16(address: int, words) -> bytes:
    return struct.pack(f">BHHB{len(words)}H", 16, address, len(words), 2 * len(words), *words)


def regs_of(resp: bytes) -> list[int]:
    assert not resp[0] & 0x80, f"exception {resp.hex()}"
    n = resp[1] // 2
    return list(struct.unpack_from(f">{n}H", resp, 2))


# --- frames ----------------------------------------------------------------------------------
def test_crc_matches_pymodbus_and_known_vector():
    # Modbus over serial line spec example: 01 03 00 00 00 0A -> CRC C5 CD
    assert F.rtu_frame(1, bytes.fromhex("030000000a"))[-2:] == bytes.fromhex("c5cd")
    rnd = random.Random(7)
    for n in range(1, 260, 3):
        body = bytes(rnd.randrange(256) for _ in range(n))
        c = F.crc16(body)
        assert bytes((c & 0xFF, c >> 8)) == pm.crc_bytes(body)
    fr = F.rtu_frame(5, rd(3, 10, 2))
    assert F.rtu_check(fr) and not F.rtu_check(fr[:-1] + bytes((fr[-1] ^ 1,)))


@pytest.mark.parametrize("pdu,code", [
    (b"", 1),
    (bytes([0x2B, 0x0E, 0x01, 0x00]), 1),          # read device identification: not offered
    (bytes([0x08, 0, 0, 0x12, 0x34]), 1),          # diagnostics
    (bytes([0x83, 0, 0, 0, 1]), 1),                # an exception code as a request
    (bytes([3, 0, 0]), 3),                         # truncated
    (rd(3, 0, 1) + b"\x00", 3),                    # trailing byte
    (struct.pack(">BHH", 5, 0, 0x1234), 3),        # coil value not 0xFF00/0
    (struct.pack(">BHHB", 16, 0, 2, 2) + b"\0\0", 3),        # byte count != 2*quantity
    (struct.pack(">BHHB", 16, 0, 124, 248) + bytes(248), 3),  # above the spec limit
    (struct.pack(">BHHB", 15, 0, 9, 1) + b"\xff", 3),        # 9 coils need 2 bytes
])
def test_parse_request_errors(pdu, code):
    with pytest.raises(F.PduError) as ei:
        F.parse_request(pdu)
    assert ei.value.code == code


def test_parse_and_build_roundtrip():
    r = F.parse_request(wr16(1210, f32_words(16.0)))
    assert (r.fc, r.table, r.address, r.count, r.values) == (16, "holding", 1210, 2,
                                                            tuple(f32_words(16.0)))
    r = F.parse_request(struct.pack(">BHHB", 15, 3, 10, 2) + bytes([0b10100101, 0b10]))
    assert r.values == (1, 0, 1, 0, 0, 1, 0, 1, 0, 1)
    assert F.read_response(1, [1, 0, 0, 0, 0, 0, 0, 0, 1]) == bytes([1, 2, 1, 1])
    assert F.write_response(F.parse_request(struct.pack(">BHH", 5, 7, 0xFF00))) == \
        struct.pack(">BHH", 5, 7, 0xFF00)


# --- interop: pymodbus in another process, mbpoll ---------------------------------------------
PROBE = textwrap.dedent("""
    import json, sys
    from dlbrig.rig.modbus import _pymodbus as pm
    port = int(sys.argv[1])
    out = {}
    for name, (addr, count) in {"v": (0, 6), "i": (6, 6), "f": (70, 2), "kwh": (72, 2)}.items():
        r = pm.sync_request("127.0.0.1", port, 1, 4, addr, count, timeout_s=3)
        out[name] = list(r.values)
    r = pm.sync_request("127.0.0.1", port, 1, 4, 0, 81, timeout_s=3)
    out["exc81"] = r.exception
    print(json.dumps(out))
""")


def test_pymodbus_client_in_another_process_reads_sdm630_floats():
    async def body():
        image, dev = sdm630()
        async with ModbusEmulator() as emu:
            srv = emu.serve_tcp({"grid": image})
            await srv.start()
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", PROBE, str(srv.port), stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE)
            out, err = await asyncio.wait_for(proc.communicate(), 30)
            assert proc.returncode == 0, err.decode()
            return json.loads(out), dev

    got, dev = run(body(), 40)
    p = dev.pts
    for key, names in (("v", ["voltage_l1_v", "voltage_l2_v", "voltage_l3_v"]),
                       ("i", ["current_l1_a", "current_l2_a", "current_l3_a"]),
                       ("f", ["frequency_hz"]), ("kwh", ["import_kwh"])):
        w = got[key]
        vals = [words_f32(w[k:k + 2]) for k in range(0, len(w), 2)]
        assert vals == [as_f32(p[n]) for n in names]
    assert got["exc81"] == 3


def _mbpoll_values(text: str) -> dict[int, float]:
    return {int(a): float(v) for a, v in re.findall(r"^\[(\d+)\]:\s+(\S+)\s*$", text, re.M)}


@pytest.mark.skipif(shutil.which("mbpoll") is None, reason="mbpoll not installed")
def test_mbpoll_reads_the_same_registers_over_tcp_and_rtu_pty():
    async def mbpoll(*args):
        proc = await asyncio.create_subprocess_exec(
            "mbpoll", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 15)
        return proc.returncode, out.decode(), err.decode()

    async def body():
        image, dev = sdm630()
        image2, _ = sdm630(unit=2)
        emu = ModbusEmulator()
        tcp = emu.serve_tcp({"grid": image})
        rtu = emu.serve_rtu({"sub": image2}, medium="pty")
        async with emu:
            common = ["-a", "1", "-t", "3:float", "-B", "-0", "-r", "6", "-c", "3", "-1",
                      "-o", "3"]
            rc, out, err = await mbpoll("-m", "tcp", "-p", str(tcp.port), *common, "127.0.0.1")
            assert rc == 0, out + err
            v_tcp = _mbpoll_values(out)
            common[1] = "2"
            rc, out, err = await mbpoll("-m", "rtu", "-b", "9600", "-P", "none", *common,
                                        rtu.serial_path)
            assert rc == 0, out + err
            v_rtu = _mbpoll_values(out)
            rc, out, err = await mbpoll("-m", "tcp", "-p", str(tcp.port), "-a", "1", "-t", "3",
                                        "-0", "-r", "0", "-c", "81", "-1", "127.0.0.1")
            assert rc != 0 and "Illegal data value" in out + err
            return v_tcp, v_rtu, dev

    v_tcp, v_rtu, dev = run(body(), 50)
    expect = {6: dev.pts["current_l1_a"], 8: dev.pts["current_l2_a"],
              10: dev.pts["current_l3_a"]}
    assert v_tcp == expect and v_rtu == expect


# --- RTU ---------------------------------------------------------------------------------------
def _two_meter_bus():
    a, da = sdm630(unit=1, current_l1_a=11.0)
    b = DeviceImage(get_profile("em24"), {2: Fake("meter", current_l1_a=22.0)})
    return {"m1": a, "m2": b}


def test_rtu_over_tcp_two_devices_one_bus_absent_unit_silent_crc_correct():
    async def body():
        rec = FrameRecorder()
        srv = ModbusRtuServer(_two_meter_bus(), medium="tcp", tap=rec, frame_gap_s=0.05)
        await srv.start()
        try:
            async with ModbusMaster("127.0.0.1", srv.port, transport="rtu-over-tcp",
                                    timeout_s=0.3, retries=0) as m:
                w1 = await m.read(1, "input", 6, 2)
                assert words_f32(w1) == 11.0
                em24 = get_profile("em24")
                r = em24.find("current_l1_a")
                w2 = await m.read(2, r.table, r.address, r.count)
                assert _dec(em24, r, w2) == 22.0
                with pytest.raises(ModbusTimeout):
                    await m.read(9, "input", 6, 2)
                assert [f.kind for f in m.failures] == ["timeout"]
                assert words_f32(await m.read(1, "input", 6, 2)) == 11.0   # bus still fine
            # raw: a request with a bad CRC is ignored, garbage is skipped, a good one answered
            r, w = await asyncio.open_connection("127.0.0.1", srv.port)
            good = F.rtu_frame(1, rd(4, 6, 2))
            w.write(good[:-1] + bytes((good[-1] ^ 0xFF,)))
            await w.drain()
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(r.read(1), 0.2)
            w.write(b"\x55\xaa\x13" + good)
            await w.drain()
            resp = await asyncio.wait_for(r.readexactly(9), 2)
            assert resp[:3] == bytes([1, 4, 4]) and resp[-2:] == pm.crc_bytes(resp[:-2])
            w.close()
        finally:
            await srv.stop()
        tx = rec.select("tx")
        assert tx and all(f.data[-2:] == pm.crc_bytes(f.data[:-2]) for f in tx)
        assert {f.device for f in tx} == {"m1", "m2"}
        assert any("discarded" in f.note for f in rec.frames)

    run(body())


def _dec(profile, reg, words):
    from dlbrig.firmware_sim.profiles.codec import decode
    return decode(words, reg.dtype, profile.word_order_of(reg), reg.scale)


def test_rtu_over_pty_two_devices_one_bus_absent_unit_silent_crc_correct():
    async def body():
        rec = FrameRecorder()
        emu = ModbusEmulator(tap=rec)
        srv = emu.serve_rtu(_two_meter_bus(), medium="pty")
        async with emu:
            path = srv.serial_path
            eps = emu.endpoints()
            assert {(e["unit"], e["serial"], e["transport"], e["host"]) for e in eps} == \
                {(1, path, "rtu", None), (2, path, "rtu", None)}
            async with ModbusMaster(srv.serial_path, transport="rtu-serial", timeout_s=0.3,
                                    retries=1) as m:
                assert words_f32(await m.read(1, "input", 6, 2)) == 11.0
                em24 = get_profile("em24")
                r = em24.find("current_l1_a")
                assert _dec(em24, r, await m.read(2, r.table, r.address, r.count)) == 22.0
                with pytest.raises(ModbusTimeout):
                    await m.read(3, "input", 6, 2)
                assert [(f.kind, f.attempt, f.unit) for f in m.failures] == \
                    [("timeout", 1, 3), ("timeout", 2, 3)]
                assert words_f32(await m.read(1, "input", 6, 2)) == 11.0
        rx = rec.select("rx")
        assert [f.unit for f in rx if f.unit == 3] == [3, 3]          # seen on the bus ...
        assert not [f for f in rec.select("tx") if f.unit == 3]       # ... never answered
        assert all(f.data[-2:] == pm.crc_bytes(f.data[:-2]) for f in rec.select("tx"))
        assert all(f.peer == path for f in rx)

    run(body())


def test_rtu_broadcast_write_applies_to_all_and_is_not_answered():
    async def body():
        a, da = sdm630(unit=1)
        b, db = sdm630(unit=2)
        srv = ModbusRtuServer({"a": a, "b": b})
        await srv.start()
        try:
            r, w = await asyncio.open_connection("127.0.0.1", srv.port)
            w.write(F.rtu_frame(0, wr16(0x0002, f32_words(15.0))))   # demand period 15 min
            await w.drain()
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(r.read(1), 0.2)
            w.close()
        finally:
            await srv.stop()
        return da, db

    da, db = run(body())
    assert da.written("demand_period_min") == [15.0] and db.written("demand_period_min") == [15.0]


def test_rtu_malformed_input_garbage_flood_unknown_function_truncated_frame():
    async def body():
        image, _ = sdm630(unit=1)
        faults = FaultRules()
        srv = ModbusRtuServer({"m": image}, medium="pty", frame_gap_s=0.05, fault_hook=faults)
        await srv.start()
        fd = os.open(srv.serial_path, os.O_RDWR | os.O_NOCTTY)
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue = asyncio.Queue()
        loop.add_reader(fd, lambda: inbox.put_nowait(os.read(fd, 4096)))

        async def exchange(data: bytes, n: int | None, timeout: float = 2.0) -> bytes | None:
            os.write(fd, data)
            if n is None:                        # expect silence
                try:
                    got = await asyncio.wait_for(inbox.get(), 0.2)
                except asyncio.TimeoutError:
                    return None
                raise AssertionError(f"unexpected answer {got.hex()}")
            buf = b""
            while len(buf) < n:
                buf += await asyncio.wait_for(inbox.get(), timeout)
            return buf

        try:
            good = F.rtu_frame(1, rd(4, 6, 2))
            expect = F.rtu_frame(1, bytes([4, 4]) + bytes.fromhex("41200000"))
            assert await exchange(good, 9) == expect
            flood = bytes(random.Random(11).randrange(256) for _ in range(3000))
            t0 = loop.time()
            for k in range(0, len(flood), 100):
                os.write(fd, flood[k:k + 100])
            assert await exchange(b"", None) is None            # garbage: no answer
            assert await exchange(good, 9, timeout=5) == expect
            assert loop.time() - t0 < 5
            # unknown function code addressed to us -> 01, CRC by pymodbus
            resp = await exchange(F.rtu_frame(1, bytes([0x11])), 5)
            assert resp[:3] == bytes([1, 0x91, 1]) and resp[3:] == pm.crc_bytes(resp[:3])
            # a truncated request (CRC never completes) is dropped after the t3.5 gap
            assert await exchange(good[:5], None) is None
            assert await exchange(good, 9) == expect
            # a "disconnect" fault cannot unplug a serial line: the next request is served
            faults.add(FaultAction(disconnect=True), times=1)
            assert await exchange(good, None) is None
            assert await exchange(good, 9) == expect
        finally:
            loop.remove_reader(fd)
            os.close(fd)
            await srv.stop()
        return srv.stats

    stats = run(body())
    assert stats["discarded"] >= 2


# --- quirks on the wire --------------------------------------------------------------------------
def test_sdm630_read_limit_80_registers():
    async def body():
        image, _ = sdm630()
        srv = await ModbusTcpServer({"grid": image}).start()
        try:
            c = await RawTcp.open(srv.port)
            assert len(regs_of(await c.pdu(1, rd(4, 0, 80)))) == 80
            assert await c.pdu(1, rd(4, 0, 81)) == bytes([0x84, 3])
            assert await c.pdu(1, rd(4, 0, 300)) == bytes([0x84, 3])     # beyond the spec too
            assert await c.pdu(1, rd(4, 0, 0)) == bytes([0x84, 3])
            assert await c.pdu(1, struct.pack(">BHH", 6, 2, 15)) == bytes([0x86, 1])  # no FC06
            assert await c.pdu(1, rd(4, 0x0200, 2)) == bytes([0x84, 2])  # beyond the map
            await c.close()
        finally:
            await srv.stop()

    run(body())


def _alfen():
    s1, s2 = Fake(), Fake(current_l1_a=8.0)
    return DeviceImage(get_profile("alfen_ng9xx"), {1: s1, 2: s2}), s1, s2


def test_alfen_units_200_1_2_on_one_port_third_client_refused_half_float_rejected():
    async def body():
        image, s1, s2 = _alfen()
        rec = FrameRecorder()
        srv = await ModbusTcpServer({"alfen": image}, tap=rec).start()
        assert srv.max_clients == 2 and srv.idle_timeout_s == 60.0
        assert sorted(e["unit"] for e in srv.endpoints()) == [1, 2, 200]
        try:
            a, b = await RawTcp.open(srv.port), await RawTcp.open(srv.port)
            assert words_f32(regs_of(await a.pdu(1, rd(3, 320, 2)))) == 16.0
            assert words_f32(regs_of(await b.pdu(2, rd(3, 320, 2)))) == 8.0
            assert regs_of(await a.pdu(200, rd(3, 1105, 1))) == [2]     # station: 2 sockets
            c = await RawTcp.open(srv.port)
            assert await c.closed_by_peer()
            assert any(f.direction == "event" and "refused" in f.note for f in rec.frames)
            await c.close()
            # half of the float32 at 1210: FC16 with one register, FC06 on its second word
            assert await a.pdu(1, wr16(1210, f32_words(10.0)[:1])) == bytes([0x90, 3])
            assert await a.pdu(1, struct.pack(">BHH", 6, 1211, 0)) == bytes([0x86, 3])
            assert s1.written("setpoint_a") == []
            assert await a.pdu(1, wr16(1210, f32_words(10.0))) == struct.pack(">BHH", 16, 1210, 2)
            assert s1.written("setpoint_a") == [10.0] and s2.written("setpoint_a") == []
            assert await a.pdu(1, rd(4, 320, 2)) == bytes([0x84, 1])    # no FC04 on Alfen
            assert regs_of(await a.pdu(1, rd(3, 301, 5))) == [0xFFFF] * 5  # reserved: 0xFFFF
            await b.close()
            # a slot is free again: a new client is served
            d = await RawTcp.open(srv.port)
            assert words_f32(regs_of(await d.pdu(1, rd(3, 1210, 2)))) == 10.0
            await a.close()
            await d.close()
        finally:
            await srv.stop()

    run(body())


def test_keba_unit_255_read_across_value_boundary_rejected():
    async def body():
        dev = Fake()
        image = DeviceImage(get_profile("keba_p30"), {255: dev})
        srv = await ModbusTcpServer({"keba": image}).start()
        try:
            c = await RawTcp.open(srv.port)
            assert regs_of(await c.pdu(255, rd(3, 1008, 2))) == [0, 16000]   # 16 A in mA
            assert await c.pdu(255, rd(3, 1008, 4)) == bytes([0x83, 2])      # two values
            assert await c.pdu(255, rd(3, 1009, 1)) == bytes([0x83, 2])      # inside one
            assert await c.pdu(255, rd(3, 5004, 1)) == bytes([0x83, 2])      # write-only
            assert await c.pdu(255, struct.pack(">BHH", 6, 5004, 12000)) == \
                struct.pack(">BHH", 6, 5004, 12000)
            assert dev.written("setpoint_a") == [12.0]
            assert await c.pdu(1, rd(3, 1008, 2)) == bytes([0x83, 0x0B])     # unknown unit
            await c.close()
        finally:
            await srv.stop()

    run(body())


def test_malformed_input_never_stops_the_server():
    async def body():
        image, _ = sdm630()
        rec = FrameRecorder()
        srv = await ModbusTcpServer({"grid": image}, tap=rec, frame_timeout_s=0.1).start()
        try:
            c = await RawTcp.open(srv.port)
            good = rd(4, 6, 2)
            expect = f32_words(10.0)
            # unknown function codes -> 01
            for pdu in (bytes([0x2B, 0x0E, 1, 0]), bytes([0x08, 0, 0, 0, 0]), bytes([0x11]),
                        bytes([0x41, 1, 2, 3])):
                assert await c.pdu(1, pdu) == bytes([pdu[0] | 0x80, 1])
            # truncated PDU and inconsistent byte count -> 03
            assert await c.pdu(1, bytes([4, 0, 6])) == bytes([0x84, 3])
            assert await c.pdu(1, struct.pack(">BHHB", 16, 2, 2, 3) + b"\0\0\0") == \
                bytes([0x90, 3])
            # wrong protocol id: dropped silently, connection and server keep working
            await c.send(F.mbap(77, 1, good, pid=0x1234))
            assert await c.silent(0.2)
            assert regs_of(await c.pdu(1, good)) == expect
            # garbage bytes (the MBAP length is nonsense): discarded, the next request works
            await c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert await c.silent(0.2)
            assert regs_of(await c.pdu(1, good)) == expect
            # a truncated frame (length says more than sent) is discarded after silence
            await c.send(F.mbap(5, 1, good)[:9])
            assert await c.silent(0.3)
            assert regs_of(await c.pdu(1, good)) == expect
            # random garbage from a second connection, then a third connection is served
            g = await RawTcp.open(srv.port)
            await g.send(bytes(random.Random(3).randrange(256) for _ in range(500)))
            await g.close()
            h = await RawTcp.open(srv.port)
            assert regs_of(await h.pdu(1, good)) == expect
            # two requests in one segment (pipelined) are answered in order
            await h.send(F.mbap(0x100, 1, rd(4, 6, 2)) + F.mbap(0x101, 1, rd(4, 8, 2)))
            r1, r2 = await h.recv(), await h.recv()
            assert (r1[:2], r2[:2]) == (b"\x01\x00", b"\x01\x01")
            assert words_f32(regs_of(r2[7:])) == 12.5
            await h.close()
            await c.close()
        finally:
            await srv.stop()
        notes = " | ".join(f.note for f in rec.frames)
        assert "protocol id 4660" in notes and "MBAP length" in notes and "incomplete" in notes

    run(body())


def test_model_exception_gives_04_and_unknown_unit_policy():
    async def body():
        image = DeviceImage(get_profile("sdm630"), {1: Broken("meter")})
        srv = await ModbusTcpServer({"broken": image}, unknown_unit="silence").start()
        try:
            c = await RawTcp.open(srv.port)
            assert await c.pdu(1, rd(4, 6, 2)) == bytes([0x84, 4])
            await c.send(F.mbap(9, 42, rd(4, 6, 2)))
            assert await c.silent(0.2)
            assert await c.pdu(1, rd(4, 6, 2)) == bytes([0x84, 4])
            await c.close()
        finally:
            await srv.stop()

    run(body())


# --- tap, clock, faults ----------------------------------------------------------------------
def test_tap_records_frames_with_injected_clock_and_peer():
    async def body():
        t = {"now": 1000}
        image, dev = sdm630()
        rec = FrameRecorder()
        srv = await ModbusTcpServer({"grid": image}, clock=lambda: t["now"], tap=rec).start()
        try:
            c = await RawTcp.open(srv.port)
            await c.pdu(1, rd(4, 6, 2))
            t["now"] = 2500
            await c.pdu(1, wr16(0x0002, f32_words(30.0)))
            local = c.w.get_extra_info("sockname")
            await c.close()
        finally:
            await srv.stop()
        return rec, dev, local, srv.port

    rec, dev, local, port = run(body())
    frames = [f for f in rec.frames if f.direction in ("rx", "tx")]
    assert [(f.direction, f.t_ms, f.function) for f in frames] == \
        [("rx", 1000, 4), ("tx", 1000, 4), ("rx", 2500, 16), ("tx", 2500, 16)]
    assert all(f.peer == f"{local[0]}:{local[1]}" and f.device == "grid" and f.unit == 1
               and f.transport == "tcp" and f.local == f"127.0.0.1:{port}" for f in frames)
    assert frames[0].data == F.mbap(1, 1, rd(4, 6, 2))
    assert frames[1].pdu[:2] == bytes([4, 4])
    assert dev.writes == [("demand_period_min", 30.0, 2500)]
    assert "fc=4 input addr=6 count=2" in frames[0].describe()


def test_fault_hook_drop_delay_exception_garbage_drop_response():
    async def body():
        image, dev = sdm630()
        faults = FaultRules()
        srv = await ModbusTcpServer({"grid": image}, fault_hook=faults).start()
        try:
            c = await RawTcp.open(srv.port)
            good = rd(4, 6, 2)
            faults.add(FaultAction(drop=True), function=4, times=1)
            await c.send(F.mbap(1, 1, good))
            assert await c.silent(0.2)
            assert regs_of(await c.pdu(1, good)) == f32_words(10.0)
            faults.add(FaultAction(exception=6), unit=1, times=1)               # busy
            assert await c.pdu(1, good) == bytes([0x84, 6])
            faults.add(FaultAction(garbage=b"\xde\xad"), times=1)
            await c.send(F.mbap(1, 1, good))
            assert await asyncio.wait_for(c.r.readexactly(2), 2) == b"\xde\xad"
            faults.add(FaultAction(drop_response=True), function=16, times=1)
            await c.send(F.mbap(2, 1, wr16(0x0002, f32_words(5.0))))
            assert await c.silent(0.2)
            assert dev.written("demand_period_min") == [5.0]                   # applied
            faults.add(FaultAction(delay_ms=150), times=1)
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            await c.send(F.mbap(10, 1, good) + F.mbap(11, 1, good))         # 2nd waits its turn
            r1 = await c.recv()
            t1 = loop.time()
            r2 = await c.recv()
            assert t1 - t0 >= 0.14 and (r1[:2], r2[:2]) == (b"\x00\x0a", b"\x00\x0b")
            assert [r.hits for r in faults.rules] == [1, 1, 1, 1, 1]
            faults.add(FaultAction(disconnect=True), times=1)
            await c.send(F.mbap(12, 1, good))
            assert await c.closed_by_peer()
        finally:
            await srv.stop()

    run(body())


def test_idle_connection_closed_after_keepalive():
    async def body():
        image, _, _ = _alfen()
        srv = await ModbusTcpServer({"alfen": image}, idle_timeout_s=0.2).start()
        try:
            c = await RawTcp.open(srv.port)
            await c.pdu(1, rd(3, 320, 2))
            assert await c.closed_by_peer(2.0)
            assert not srv.connections
        finally:
            await srv.stop()

    run(body())


# --- emulator, endpoints, loopback --------------------------------------------------------------
def test_emulator_endpoints_and_loopback_only(tmp_path):
    with pytest.raises(PermissionError):
        ModbusEmulator(host="0.0.0.0")
    with pytest.raises(PermissionError):
        ModbusTcpServer({"x": sdm630()[0]}, host="192.0.2.1")
    check_bind_host("0.0.0.0", allow_non_loopback=True)          # explicit opt-in accepted
    check_bind_host("::1", allow_non_loopback=False)

    async def body():
        emu = ModbusEmulator()
        emu.serve("grid", sdm630()[0])                      # RTU product -> RTU over TCP
        emu.serve("alfen", _alfen()[0])                     # TCP product
        emu.serve_rtu({"sub": sdm630(unit=7)[0]}, medium="pty")
        async with emu:
            path = tmp_path / "endpoints.json"
            emu.write_endpoints(path)
            return json.loads(path.read_text()), [s.port for s in emu.servers]

    eps, ports = run(body())
    keys = {"device", "profile", "kind", "transport", "host", "port", "unit", "serial"}
    assert all(set(e) == keys for e in eps)
    grid = [e for e in eps if e["device"] == "grid"]
    assert grid == [{"device": "grid", "profile": "sdm630", "kind": "meter", "transport": "rtu",
                     "host": "127.0.0.1", "port": ports[0], "unit": 1, "serial": None}]
    alfen = [e for e in eps if e["device"] == "alfen"]
    assert sorted(e["unit"] for e in alfen) == [1, 2, 200]
    assert {(e["kind"], e["transport"], e["port"]) for e in alfen} == {("charger", "tcp", ports[1])}
    sub = [e for e in eps if e["device"] == "sub"][0]
    assert sub["serial"].startswith("/dev/") and sub["port"] is None and sub["unit"] == 7


def test_background_emulator_for_sync_callers():
    image, dev = sdm630()
    emu = ModbusEmulator()
    srv = emu.serve_tcp({"grid": image})
    with emu.run_in_thread() as bg:
        r = pm.sync_request("127.0.0.1", srv.port, 1, 4, 6, 2, timeout_s=3)
        assert words_f32(r.values) == 10.0
        bg.call(dev.pts.__setitem__, "current_l1_a", 31.5)
        r = pm.sync_request("127.0.0.1", srv.port, 1, 4, 6, 2, timeout_s=3)
        assert words_f32(r.values) == 31.5
        assert bg.endpoints()[0]["port"] == srv.port
    assert not srv.running


def test_adapter_pin_is_exact():
    assert pm.PINNED_VERSION == pm.INSTALLED_VERSION == "3.12.1"
    assert issubclass(pm.PymodbusVersionError, ImportError)
    src = open(os.path.join(os.path.dirname(pm.__file__), "server.py")).read()
    assert "import pymodbus" not in src and "from pymodbus" not in src
