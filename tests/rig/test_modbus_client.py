"""rig.modbus master: timeouts, retries, reconnects, exception responses, failure records,
profile-aware point access, and a throughput smoke (printed, not asserted)."""
from __future__ import annotations

import asyncio
import socket
import time

import pytest

from dlbrig.firmware_sim.profiles import DeviceImage, get_profile
from dlbrig.firmware_sim.profiles import ModbusError as DeviceModbusError
from dlbrig.rig.modbus import (DeviceClient, FaultAction, FaultRules, FrameRecorder,
                               ModbusConnectionError, ModbusEmulator, ModbusExceptionResponse,
                               ModbusMaster, ModbusTcpServer, ModbusTimeout)
from dlbrig.rig.modbus import _pymodbus as pm

from test_modbus import Fake, as_f32, run, sdm630

pm.quiet_logging()


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_timeout_and_retry_recorded_in_failures():
    async def body():
        image, _ = sdm630()
        faults = FaultRules()
        faults.add(FaultAction(drop=True), times=2)
        srv = await ModbusTcpServer({"grid": image}, fault_hook=faults).start()
        try:
            async with ModbusMaster("127.0.0.1", srv.port, timeout_s=0.2, retries=2,
                                    clock=lambda: 777) as m:
                words = await m.read(1, "input", 6, 2)            # third attempt succeeds
                assert [(f.kind, f.attempt, f.unit, f.function, f.address, f.count, f.t_ms)
                        for f in m.failures] == [("timeout", 1, 1, 4, 6, 2, 777),
                                                 ("timeout", 2, 1, 4, 6, 2, 777)]
                faults.add(FaultAction(drop=True))                 # now always silent
                m.failures.clear()
                with pytest.raises(ModbusTimeout):
                    await m.read(1, "holding", 2, 2)
                assert [(f.kind, f.attempt, f.function) for f in m.failures] == \
                    [("timeout", 1, 3), ("timeout", 2, 3), ("timeout", 3, 3)]
                assert m.stats["ok"] == 1 and m.stats["failed"] == 1
                return words
        finally:
            await srv.stop()

    assert run(body()) == [0x4120, 0]                               # 10.0 A


def test_reconnect_after_server_drops_connection_and_after_restart():
    async def body():
        image, dev = sdm630()
        faults = FaultRules()
        port = free_port()
        srv = await ModbusTcpServer({"grid": image}, port=port, fault_hook=faults).start()
        m = ModbusMaster("127.0.0.1", port, timeout_s=0.3, retries=2)
        try:
            await m.connect()
            assert (await m.read(1, "input", 6, 2)) == [0x4120, 0]
            faults.add(FaultAction(disconnect=True), times=1)
            assert (await m.read(1, "input", 6, 2)) == [0x4120, 0]   # on a new connection
            assert [(f.kind, f.attempt) for f in m.failures] == [("connection", 1)]
            assert m.stats["reconnects"] == 1
            # the server goes away: connection errors are recorded per attempt
            await srv.stop()
            m.failures.clear()
            with pytest.raises((ModbusConnectionError, ModbusTimeout)):
                await m.read(1, "input", 6, 2)
            assert len(m.failures) == 3 and all(f.kind in ("connection", "timeout")
                                                for f in m.failures)
            assert m.failures[-1].kind == "connection"
            # ... and comes back on the same port: the master reconnects by itself
            srv = await ModbusTcpServer({"grid": image}, port=port).start()
            dev.pts["current_l1_a"] = 20.0
            assert (await m.read(1, "input", 6, 2)) == [0x41A0, 0]
            assert m.stats["reconnects"] == 2
        finally:
            await m.close()
            await srv.stop()

    run(body())


def test_connection_refused_is_a_recorded_connection_error():
    async def body():
        m = ModbusMaster("127.0.0.1", free_port(), timeout_s=0.2, retries=1)
        with pytest.raises(ModbusConnectionError):
            await m.read(1, "input", 0, 2)
        assert [(f.kind, f.attempt) for f in m.failures] == [("connection", 1), ("connection", 2)]

    run(body())


def test_exception_response_surfaced_not_retried():
    async def body():
        dev = Fake()
        rec = FrameRecorder()
        srv = await ModbusTcpServer({"keba": DeviceImage(get_profile("keba_p30"), {255: dev})},
                                    tap=rec).start()
        try:
            async with ModbusMaster("127.0.0.1", srv.port, timeout_s=0.5, retries=3) as m:
                with pytest.raises(ModbusExceptionResponse) as ei:
                    await m.read(255, "holding", 1008, 4)            # across two values
                assert (ei.value.code, ei.value.unit, ei.value.function) == (2, 255, 3)
                assert isinstance(ei.value, DeviceModbusError)     # same as fast mode
                with pytest.raises(ModbusExceptionResponse) as ei:
                    await m.read(7, "holding", 1008, 2)              # unknown unit: gateway
                assert ei.value.code == 0x0B
                assert [(f.kind, f.attempt, f.detail) for f in m.failures] == \
                    [("exception", 1, "exception 0x02"), ("exception", 1, "exception 0x0b")]
        finally:
            await srv.stop()
        assert len(rec.select("rx")) == 2                              # one attempt each

    run(body())


def test_rtu_over_tcp_late_answer_after_timeout_is_not_taken_for_the_next():
    """RTU has no transaction id: an answer arriving after the master gave up must be
    discarded, not returned for the next request."""
    async def body():
        a, _ = sdm630(unit=1)
        emu = ModbusEmulator()
        faults = FaultRules()
        faults.add(FaultAction(delay_ms=300), unit=1, times=1)
        srv = emu.serve_rtu({"a": a}, fault_hook=faults)
        seen: list = []
        async with emu:
            async with ModbusMaster("127.0.0.1", srv.port, transport="rtu-over-tcp",
                                    timeout_s=0.1, retries=0,
                                    tap=lambda d, b: seen.append((d, b))) as m:
                with pytest.raises(ModbusTimeout):
                    await m.read(1, "input", 6, 2)                     # I L1 = 10 A, late
                await asyncio.wait_for(_until(lambda: any(d == "rx" for d, _ in seen)), 3)
                got = await m.read(1, "input", 8, 2)                   # I L2 = 12.5 A
                assert [d for d, _ in seen][:2] == ["tx", "rx"] and seen[0][1][:2] == b"\x01\x04"
                return got

    assert run(body()) == [0x4148, 0]


async def _until(pred, step: float = 0.01) -> None:
    while not pred():
        await asyncio.sleep(step)


# --- DeviceClient --------------------------------------------------------------------------------
def test_device_client_groups_reads_by_profile_rules():
    sdm = get_profile("sdm630")
    dc = DeviceClient(None, sdm, 1)
    plans = dc.plan_reads(["current_l1_a", "current_l2_a", "current_l3_a", "voltage_l1_v",
                           "frequency_hz", "total_kwh"])
    # 0..72 in one request (zero-filled gaps, 72 <= 80), 0x156 alone (beyond 80 from 0)
    assert [(p.table, p.address, p.count) for p in plans] == [("input", 0, 72),
                                                              ("input", 0x156, 2)]
    keba = DeviceClient(None, get_profile("keba_p30"), 255)
    plans = keba.plan_reads(["current_l1_a", "current_l2_a", "current_l3_a"])
    assert [(p.address, p.count) for p in plans] == [(1008, 2), (1010, 2), (1012, 2)]
    alfen = DeviceClient(None, get_profile("alfen_ng9xx"), 1)
    plans = alfen.plan_reads(["current_l1_a", "current_l2_a", "current_l3_a", "power_total_w",
                              "setpoint_a", "safe_current_a"])
    # one request in the 300 block (NaN gaps bridged), one in the 1200 block (not bridged
    # across blocks)
    assert [(p.address, p.count) for p in plans] == [(320, 26), (1210, 4)]
    station = DeviceClient(None, get_profile("alfen_ng9xx"), 200)
    with pytest.raises(KeyError):
        station.register_for("current_l1_a")                         # socket register
    assert station.register_for("sockets").address == 1105


def test_device_client_reads_and_writes_points_over_the_wire():
    async def body():
        meter = Fake("meter")
        s1 = Fake()
        keba_dev = Fake()
        emu = ModbusEmulator()
        g = emu.serve("grid", DeviceImage(get_profile("sdm630"), {1: meter}))
        a = emu.serve("alfen", DeviceImage(get_profile("alfen_ng9xx"), {1: s1}))
        k = emu.serve("keba", DeviceImage(get_profile("keba_p30"), {255: keba_dev}))
        async with emu:
            async with ModbusMaster("127.0.0.1", g.port, transport="rtu-over-tcp",
                                    timeout_s=0.5) as mg, \
                    ModbusMaster("127.0.0.1", a.port, timeout_s=0.5) as ma, \
                    ModbusMaster("127.0.0.1", k.port, timeout_s=0.5) as mk:
                grid = DeviceClient(mg, get_profile("sdm630"), 1)
                vals = await grid.read_points(["current_l1_a", "current_l2_a", "current_l3_a",
                                               "power_total_w", "import_kwh"])
                await grid.write_point("demand_period_min", 15)       # FC16, float32
                alfen = DeviceClient(ma, get_profile("alfen_ng9xx"), 1)
                await alfen.write_point("setpoint_a", 13.5)
                back = await alfen.read_points(["setpoint_a", "current_l1_a"])
                keba = DeviceClient(mk, get_profile("keba_p30"), 255)
                await keba.write_point("setpoint_a", 16)              # FC06, mA
                kv = await keba.read_points(["current_l1_a", "charging_state"])
                return vals, back, kv

    vals, back, kv = run(body())
    assert vals == {n: as_f32(v) for n, v in
                    [("current_l1_a", 10.0), ("current_l2_a", 12.5), ("current_l3_a", 8.25),
                     ("power_total_w", 7082.7), ("import_kwh", 12345.6)]}
    assert back == {"setpoint_a": 13.5, "current_l1_a": 16.0}
    assert kv == {"current_l1_a": 16.0, "charging_state": 3}


# --- throughput smoke -------------------------------------------------------------------------------
def test_throughput_smoke_one_client_and_100_devices():
    async def body():
        n = 500
        image, _ = sdm630()
        emu = ModbusEmulator()
        srv = emu.serve_tcp({"grid": image})
        for i in range(100):
            emu.serve_tcp({f"m{i}": sdm630()[0]})
        async with emu:
            async with ModbusMaster("127.0.0.1", srv.port, timeout_s=2) as m:
                t0 = time.perf_counter()
                for _ in range(n):
                    await m.read(1, "input", 0, 12)
                one = n / (time.perf_counter() - t0)
            masters = [ModbusMaster("127.0.0.1", s.port, timeout_s=5)
                       for s in emu.servers[1:]]
            await asyncio.gather(*(mm.connect() for mm in masters))
            per = 20

            async def poll(mm):
                for _ in range(per):
                    await mm.read(1, "input", 0, 12)

            t0 = time.perf_counter()
            await asyncio.gather(*(poll(mm) for mm in masters))
            many = len(masters) * per / (time.perf_counter() - t0)
            for mm in masters:
                await mm.close()
            assert all(mm.stats["ok"] == per and not mm.failures for mm in masters)
            return one, many

    one, many = run(body(), 60)
    print(f"\nmodbus throughput (server and pymodbus master in one loop): one client "
          f"{one:.0f} transactions/s; 100 devices x 1 client each {many:.0f} transactions/s")
