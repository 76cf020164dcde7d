"""Rig benchmarks (``make bench`` runs them after the core's): one table, every figure from this run.

* **fast mode speed**: the built-in ``office`` scenario from its 07:00 start for 2 h (arrivals from
  07:30, charging, sharing), simulated seconds per wall second (target >= 1,000x).
* **wire mode cycle time**: the full controller cycle (read 3 meters and 50 chargers, allocate,
  write) over Modbus on loopback: 50 ``dlbrig_generic`` chargers on Modbus TCP (one port each) and
  3 meters (SDM630, RTU framing over TCP, one port each), median and p99 (target median <= 200 ms).
* **emulator throughput**: Modbus transactions/s over 100 emulated ``dlbrig_generic`` chargers on
  100 ports served by ``dlbrig.rig.modbus`` (every answer goes through the product's register map
  and the charger model), and the same load against pymodbus's own plain ``ModbusTcpServer`` with
  a simple sequential datastore (100 instances) as the baseline. The servers run in a child
  process; the load generator (here) keeps one raw-socket client per device busy with the generic
  map's FC04 read of 29 registers (request, wait for the answer, repeat) for a fixed time
  (target >= 2,000/s; the ratio ours / pymodbus is printed).

Loopback only, bounded in time. Writes ``build/bench_rig.json`` and merges a ``"rig"`` section into
the core's ``build/bench.json`` when that file exists.

Usage: ``python -m dlbrig.rig.bench`` (``--quick`` for a short smoke run).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT_JSON = ROOT / "build" / "bench_rig.json"
CORE_JSON = ROOT / "build" / "bench.json"

FAST_TARGET_X = 1000.0
WIRE_TARGET_MEDIAN_MS = 200.0
EMU_TARGET_TPS = 2000.0
EMU_DEVICES = 100


# --------------------------------------------------------------------------------------------- fast
def bench_fast(duration: str = "2h") -> dict:
    from .runner import run_fast
    from .scenario import load_scenario

    sc = load_scenario("office", duration=duration)
    with tempfile.TemporaryDirectory(prefix="dlbrig-bench-") as tmp:
        t0 = time.perf_counter()
        s = run_fast(sc, tmp)
        wall = time.perf_counter() - t0
    sim = sc.duration_ms / 1000
    return {"scenario": "office", "start": str(sc.start), "duration": duration, "simulated_s": sim,
            "wall_s": round(wall, 3), "speed_x": round(sim / wall, 1), "sessions": len(s["sessions"]),
            "energy_delivered_kwh": s["energy_delivered_kwh"], "target_x": FAST_TARGET_X}


# --------------------------------------------------------------------------------------------- wire
def wire_scenario(n_chargers: int = 50, duration: str = "60s"):
    """50 dlbrig_generic TCP chargers under two metered bays, 3 meters, EVs plugged from the start."""
    from .scenario.loader import validate

    half = n_chargers // 2
    data = {
        "name": f"bench_wire_{n_chargers}", "seed": 1, "start": "Mon 09:00", "duration": duration,
        "mode": "wire",
        "site": {
            "voltage_v": 230, "policy": "fair",
            "circuits": [
                {"name": "main", "limit_a": 400, "margin_a": 5, "meter": True, "fallback_base_a": [200, 200, 200]},
                {"name": "bay_a", "parent": "main", "limit_a": 160, "meter": True, "fallback_base_a": [10, 10, 10]},
                {"name": "bay_b", "parent": "main", "limit_a": 160, "meter": True, "fallback_base_a": [10, 10, 10]},
            ],
            "chargers": [
                {"name": "a_{n:02d}", "count": half, "circuit": "bay_a", "min_a": 6, "max_a": 16},
                {"name": "b_{n:02d}", "count": n_chargers - half, "circuit": "bay_b", "min_a": 6, "max_a": 16},
            ],
        },
        "meters": [{"circuit": c, "profile": "sdm630", "transport": "tcp"} for c in ("main", "bay_a", "bay_b")],
        "chargers": [{"charger": "a_*", "profile": "dlbrig_generic", "transport": "tcp"},
                     {"charger": "b_*", "profile": "dlbrig_generic", "transport": "tcp"}],
        "loads": [{"circuit": "main", "kind": "office", "peak_a": 120}],
        "arrivals": [{"count": int(n_chargers * 0.8), "window": ["09:00", "09:00:20"], "dwell": ["4h", "6h"],
                      "energy_kwh": [10, 30], "presets": {"sedan_3p": 3, "compact_1p": 1}}],
    }
    return validate(data, file="<bench>")


def _pick(xs: list, q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def bench_wire(n_chargers: int = 50, duration: str = "80s", speed: float = 4.0) -> dict:
    """Wire-mode run; the cycle times of the steady state exclude the first cycle, which opens the
    53 connections (reported on its own: pymodbus's client takes ~100 ms per connect)."""
    from . import controller as ctl
    from .wire import run_wire

    sc = wire_scenario(n_chargers, duration)
    walls: list[float] = []
    orig = ctl.SiteController._account

    def account(self, now_ms, wall_ms):     # the controller's own wall-clock figure, per cycle
        walls.append(wall_ms)
        return orig(self, now_ms, wall_ms)

    ctl.SiteController._account = account
    try:
        with tempfile.TemporaryDirectory(prefix="dlbrig-bench-") as tmp:
            s = run_wire(sc, tmp, speed=speed)
    finally:
        ctl.SiteController._account = orig
    steady = walls[1:] or walls
    return {"chargers": n_chargers, "meters": 3, "cycles": len(walls), "speed": speed,
            "cycle_ms_median": round(statistics.median(steady), 3),
            "cycle_ms_p99": round(_pick(steady, 0.99), 3), "cycle_ms_max": round(max(steady), 3),
            "first_cycle_ms": round(walls[0], 3) if walls else None,
            "failed_transactions": s["failed_transactions"], "frames": s.get("frames"),
            "energy_delivered_kwh": s["energy_delivered_kwh"], "target_median_ms": WIRE_TARGET_MEDIAN_MS}


# ---------------------------------------------------------------------------------- emulator servers
def _free_ports(n: int) -> list[int]:
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def _request() -> tuple[int, int, int, int]:
    """(unit, fc, address, count) of the generic map's status read (what a controller polls)."""
    from ..firmware_sim.profiles.driver import driver_for

    drv = driver_for("dlbrig_generic")
    table, address, count = max(drv.read_plan(), key=lambda r: r[2])
    return drv.unit, {"holding": 3, "input": 4}[table], address, count


async def _serve_ours(n: int) -> None:
    from ..firmware_sim import ChargePoint, EvseConfig
    from ..firmware_sim.profiles import DeviceImage, get_profile
    from .modbus import ModbusEmulator

    profile = get_profile("dlbrig_generic")
    unit = _request()[0]
    emu = ModbusEmulator(host="127.0.0.1")
    for i in range(n):
        cp = ChargePoint(EvseConfig(serial=f"BENCH{i:04d}"))
        emu.serve(f"cp{i:03d}", DeviceImage(profile, {unit: cp}), port=0)
    await emu.start()
    try:
        ports = [ep["port"] for ep in emu.endpoints()]
        print(json.dumps({"ports": ports}), flush=True)
        await _until_stdin_closes()
    finally:
        await emu.stop()


async def _serve_pymodbus(n: int) -> None:
    from .modbus._pymodbus import quiet_logging
    from pymodbus.datastore import ModbusDeviceContext, ModbusSequentialDataBlock, ModbusServerContext
    from pymodbus.server import ModbusTcpServer

    quiet_logging()
    servers = []
    ports = _free_ports(n)
    for port in ports:
        dev = ModbusDeviceContext(hr=ModbusSequentialDataBlock(0, [0] * 200),
                                  ir=ModbusSequentialDataBlock(0, [0] * 200))
        srv = ModbusTcpServer(ModbusServerContext(devices=dev, single=True), address=("127.0.0.1", port))
        servers.append(srv)
        asyncio.ensure_future(srv.serve_forever())
    for port in ports:                      # wait until every port accepts connections
        for _ in range(200):
            try:
                _, w = await asyncio.open_connection("127.0.0.1", port)
                w.close()
                break
            except OSError:
                await asyncio.sleep(0.01)
    print(json.dumps({"ports": ports}), flush=True)
    try:
        await _until_stdin_closes()
    finally:
        for srv in servers:
            await srv.shutdown()


async def _until_stdin_closes() -> None:
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)


async def _load(ports: list[int], req: tuple[int, int, int, int], seconds: float, warmup: float) -> dict:
    """One raw-socket client per port, request/answer in a loop; count answers in the window."""
    unit, fc, address, count = req
    pdu = struct.pack(">BHH", fc, address, count)
    expect = 2 + 2 * count                    # fc, byte count, data
    ok = [0]
    errors = [0]
    t_start = time.perf_counter() + warmup
    t_end = t_start + seconds

    async def client(port: int) -> None:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        tid = 0
        try:
            while True:
                now = time.perf_counter()
                if now >= t_end:
                    break
                tid = (tid + 1) & 0xFFFF
                w.write(struct.pack(">HHHB", tid, 0, len(pdu) + 1, unit) + pdu)
                head = await r.readexactly(7)
                rtid, _, length, _ = struct.unpack(">HHHB", head)
                body = await r.readexactly(length - 1)
                if now >= t_start:
                    if rtid == tid and body[0] == fc and len(body) == expect:
                        ok[0] += 1
                    else:
                        errors[0] += 1
        finally:
            w.close()

    await asyncio.gather(*(client(p) for p in ports))
    return {"transactions": ok[0], "errors": errors[0], "seconds": seconds,
            "tps": round(ok[0] / seconds, 1), "clients": len(ports)}


def bench_emulator(kind: str, n: int = EMU_DEVICES, seconds: float = 4.0, warmup: float = 0.5) -> dict:
    env = dict(os.environ)
    proc = subprocess.Popen([sys.executable, "-m", "dlbrig.rig.bench", "--serve", kind, "--devices", str(n)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{kind} server did not start (exit {proc.wait(timeout=10)})")
        ports = json.loads(line)["ports"]
        res = asyncio.run(_load(ports, _request(), seconds, warmup))
    finally:
        try:
            proc.stdin.close()
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    res["server"] = kind
    res["devices"] = n
    return res


# -------------------------------------------------------------------------------------------- table
def _row(name, value, target, ok, note=""):
    return {"benchmark": name, "value": value, "target": target, "pass": bool(ok), "note": note}


def run_all(quick: bool = False) -> dict:
    out: dict = {"python": sys.version.split()[0], "host_cpus": os.cpu_count()}
    rows = []
    fast = bench_fast("20m" if quick else "2h")
    out["fast"] = fast
    rows.append(_row(f"fast mode: office {fast['start']} + {fast['duration']} ({fast['sessions']} sessions)",
                     f"{fast['speed_x']:,.0f}x  ({fast['simulated_s']:.0f} sim s / {fast['wall_s']:.1f} wall s)",
                     f">= {FAST_TARGET_X:,.0f}x", fast["speed_x"] >= FAST_TARGET_X))
    wire = bench_wire(50, "20s" if quick else "80s")
    out["wire"] = wire
    rows.append(_row("wire mode: cycle time, 50 TCP chargers + 3 meters, median",
                     f"{wire['cycle_ms_median']:.1f} ms", f"<= {WIRE_TARGET_MEDIAN_MS:.0f} ms",
                     wire["cycle_ms_median"] <= WIRE_TARGET_MEDIAN_MS,
                     f"{wire['cycles']} cycles, {wire['failed_transactions']} failed transactions"))
    rows.append(_row("wire mode: cycle time, p99", f"{wire['cycle_ms_p99']:.1f} ms", "(reported)", True,
                     f"max {wire['cycle_ms_max']:.1f} ms; first cycle (opens 53 connections) "
                     f"{wire['first_cycle_ms']:.0f} ms, not counted"))
    secs = 2.0 if quick else 4.0
    ours = bench_emulator("ours", EMU_DEVICES, secs)
    base = bench_emulator("pymodbus", EMU_DEVICES, secs)
    ratio = ours["tps"] / base["tps"] if base["tps"] else float("nan")
    out["emulator"] = {"ours": ours, "pymodbus": base, "ratio_ours_over_pymodbus": round(ratio, 3)}
    rows.append(_row(f"emulator: transactions/s, {EMU_DEVICES} devices (dlbrig.rig.modbus)",
                     f"{ours['tps']:,.0f}/s", f">= {EMU_TARGET_TPS:,.0f}/s", ours["tps"] >= EMU_TARGET_TPS,
                     f"{ours['errors']} errors"))
    rows.append(_row(f"emulator: transactions/s, {EMU_DEVICES} devices (pymodbus ModbusTcpServer)",
                     f"{base['tps']:,.0f}/s", "(baseline)", True, f"{base['errors']} errors"))
    rows.append(_row("emulator: ratio ours / pymodbus", f"{ratio:.2f}", "(reported)", True,
                     "ours answers through register map + charger model; pymodbus from a plain datastore"))
    out["table"] = rows
    return out


def print_table(res: dict) -> None:
    rows = res["table"]
    w0 = max(len(r["benchmark"]) for r in rows)
    w1 = max(len(r["value"]) for r in rows)
    w2 = max(len(r["target"]) for r in rows)
    print()
    print("dlbrig rig benchmarks (loopback, this run)")
    print(f"{'benchmark':<{w0}}  {'value':>{w1}}  {'target':<{w2}}  result  note")
    for r in rows:
        mark = ("PASS" if r["pass"] else "MISS") if not r["target"].startswith("(") else "-"
        print(f"{r['benchmark']:<{w0}}  {r['value']:>{w1}}  {r['target']:<{w2}}  {mark:<6}  {r['note']}")


def save(res: dict) -> None:
    OUT_JSON.parent.mkdir(parents=True, exist_ok=True)
    OUT_JSON.write_text(json.dumps(res, indent=2) + "\n")
    if CORE_JSON.exists():
        try:
            core = json.loads(CORE_JSON.read_text())
            if isinstance(core, dict):
                core["rig"] = res
                CORE_JSON.write_text(json.dumps(core, indent=2) + "\n")
        except (OSError, ValueError):
            pass
    print(f"wrote {OUT_JSON.relative_to(ROOT)}" + (f" (and the 'rig' section of {CORE_JSON.relative_to(ROOT)})"
                                                  if CORE_JSON.exists() else ""))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dlbrig.rig.bench", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short runs (smoke test)")
    ap.add_argument("--serve", choices=["ours", "pymodbus"], help=argparse.SUPPRESS)
    ap.add_argument("--devices", type=int, default=EMU_DEVICES, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve:
        asyncio.run(_serve_ours(args.devices) if args.serve == "ours" else _serve_pymodbus(args.devices))
        return 0
    res = run_all(quick=args.quick)
    print_table(res)
    save(res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
