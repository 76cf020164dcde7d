"""``dlbrig emulate`` seen from outside: an external Modbus master in another process.

The emulator runs as a subprocess (the installed ``dlbrig`` command) on loopback; masters are a
small pymodbus script (run with this venv's python, using pymodbus directly and the
controller-side drivers of ``firmware_sim.profiles.driver`` for read plans, decoding and
set-point writes) and Debian's ``mbpoll``.

The site (conftest ``SMALL_SITE``) is fully known: a constant base load of [16, 12, 14] A on the
metered main, cp1 (3-phase, sedan) and cp2 (1-phase on L2, compact), both dlbrig_generic on TCP
with a 3 s watchdog and a 10 A safe current, EVs plugged at +0 s with a 2 s reaction delay.

Times: the emulator's physics runs ``--speed`` times faster than the wall clock; the probe
reports wall times and the test converts them to scenario time (x speed).  Lower bounds on
delays are strict (a value the emulator changes at scenario time T cannot be read before T);
upper bounds are generous (scheduling jitter on a loaded CI machine).
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import tty

import pytest

from rig_cli_helpers import (BASE_A, DLBRIG, REACTION_S, SAFE_A, TRACEBACK, WATCHDOG_S, cli_env,
                       dlbrig, stop_process, wait_for_json_file)

SPEED = 4.0
EV_MAX_A = 16.0          # sedan_3p's on-board charger (cp1)
PWM_SPACING_S = 5.0      # EvseConfig.pwm_min_interval_ms: a PWM change waits up to this long
TOL_A = 0.05             # meter float32 + model rounding


@contextlib.contextmanager
def emulator(scenario, tmp_path, *extra, speed=SPEED, duration="300s"):
    """Run ``dlbrig emulate`` until the block ends; yield (proc, endpoints).  Always stopped
    (SIGINT, then kill) in ``finally``; the outcome of the stop is stored on ``proc.stopped``."""
    ep_file = tmp_path / "endpoints.json"
    proc = subprocess.Popen([*DLBRIG, "emulate", str(scenario), "--endpoints", str(ep_file),
                             "--speed", str(speed), "--duration", duration, *map(str, extra)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL, env=cli_env())
    proc.stopped = None
    try:
        endpoints = wait_for_json_file(ep_file, proc, deadline_s=30)
        yield proc, endpoints
    finally:
        proc.stopped = stop_process(proc, sig=signal.SIGINT, timeout=10)


def by_device(endpoints) -> dict:
    return {e["device"]: e for e in endpoints}


# -- the probe: another process, pymodbus + the profiles' drivers ----------------------------------
PROBE = textwrap.dedent(r'''
    import json, sys, time
    from pymodbus import FramerType
    from pymodbus.client import ModbusTcpClient
    from dlbrig.firmware_sim.profiles.driver import driver_for

    eps = {e["device"]: e for e in json.load(open(sys.argv[1]))}
    speed = float(sys.argv[2])
    mode = sys.argv[3]
    SETPOINT = 16.0
    T0 = time.monotonic()
    def now():
        return time.monotonic() - T0

    clients, drivers = {}, {}
    for name, e in eps.items():
        framer = FramerType.SOCKET if e["transport"] == "tcp" else FramerType.RTU
        c = ModbusTcpClient(e["host"], port=e["port"], framer=framer, timeout=2, retries=1)
        if not c.connect():
            raise SystemExit(f"cannot connect to {name} at {e['host']}:{e['port']}")
        clients[name] = c
        drivers[name] = driver_for(e["profile"], e["unit"])

    def read(name, table, address, count):
        c, unit = clients[name], eps[name]["unit"]
        fn = {"input": c.read_input_registers, "holding": c.read_holding_registers}[table]
        rr = fn(address, count=count, device_id=unit)
        if rr.isError():
            raise SystemExit(f"{name}: exception {rr} reading {table} {address}+{count}")
        return list(rr.registers)

    def reading(name):
        d = drivers[name]
        return d.decode([read(name, t, a, n) for t, a, n in d.read_plan()])

    def write_setpoint(name, amps):
        d, c, unit = drivers[name], clients[name], eps[name]["unit"]
        for table, address, words in d.setpoint_writes(amps):
            assert table == "holding"
            rr = c.write_registers(address, words, device_id=unit)
            if rr.isError():
                raise SystemExit(f"{name}: exception {rr} writing {address}={words}")

    samples, events = [], {}

    def sample():
        t = now()
        cps = {}
        for name in ("cp1", "cp2"):
            r = reading(name)
            cps[name] = {"state": r.state, "currents_a": r.currents_a, "applied_a": r.applied_a}
        meter = drivers["main"].decode([read("main", t_, a, n)
                                        for t_, a, n in drivers["main"].read_plan()])
        fs = read("cp1", "input", 38, 1)[0]      # dlbrig_generic IR 38: in failsafe (0/1)
        s = {"t": t, "t_end": now(), "cp": cps, "meter": meter, "cp1_failsafe": fs}
        samples.append(s)
        return s

    def poll_until(pred, limit_s, what):
        end = now() + limit_s / speed + 10      # scenario seconds -> wall, + CI slack
        while now() < end:
            s = sample()
            if pred(s):
                return s
            time.sleep(0.01)
        raise SystemExit(f"timeout waiting for {what}; last sample {samples[-1]}")

    def sleep_sim(seconds):
        end = now() + seconds / speed
        while now() < end:
            sample()
            time.sleep(0.01)

    charging = lambda s: all(s["cp"][n]["state"] == "charging"
                             and max(s["cp"][n]["currents_a"]) > 5 for n in ("cp1", "cp2"))
    poll_until(charging, 60, "both EVs charging")
    sleep_sim(3.0)                               # steady at the startup (safe) current
    if mode == "setpoint":
        events["write"] = now()
        write_setpoint("cp1", SETPOINT)
        events["write_done"] = now()
        up = poll_until(lambda s: min(s["cp"]["cp1"]["currents_a"]) >= SETPOINT - 0.5, 60,
                        "cp1 to follow the set-point")
        events["risen"] = up["t"]
        # keep feeding the watchdog (rewrite the set-point every 1 s scenario time) for 5 s
        hb_end = now() + 5.0 / speed
        while now() < hb_end:
            events["last_write"] = now()         # just before the request is sent
            write_setpoint("cp1", SETPOINT)
            sleep_sim(1.0)
        events["last_write_done"] = now()
        fs = poll_until(lambda s: s["cp1_failsafe"] == 1, 60, "cp1 watchdog fallback")
        events["failsafe"] = fs["t_end"]
        down = poll_until(lambda s: max(s["cp"]["cp1"]["currents_a"]) <= 10.5, 60,
                          "cp1 back at its safe current")
        events["fallen"] = down["t"]
        sleep_sim(2.0)
    print(json.dumps({"samples": samples, "events": events}))
''')


def run_probe(ep_file, mode, speed=SPEED, timeout=120) -> dict:
    r = subprocess.run([sys.executable, "-c", PROBE, str(ep_file), str(speed), mode],
                       capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, f"probe failed (rc {r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    return json.loads(r.stdout)


def expected_meter(cp1, cp2) -> list[float]:
    """Base load + EV currents under the main, per site phase: cp1 3-phase on L1..L3, cp2
    single-phase wired to L2 (its conductor 1 is site L2)."""
    exp = list(BASE_A)
    for p in range(3):
        exp[p] += cp1[p]
    exp[1] += cp2[0]
    return exp


def stable_samples(samples, speed, window_s=1.5):
    """Samples whose charger readings equal every charger reading from ``window_s`` scenario
    seconds before, up to the next sample (the meter refreshes every 1 s of scenario time)."""
    out = []
    key = lambda s: (tuple(s["cp"]["cp1"]["currents_a"]), tuple(s["cp"]["cp2"]["currents_a"]))
    for i in range(1, len(samples) - 1):
        s = samples[i]
        t0 = s["t"] - window_s / speed
        if samples[0]["t"] > t0:
            continue
        win = [x for x in samples[:i + 2] if x["t"] >= t0] + [samples[i + 1]]
        earlier = [x for x in samples[:i] if x["t"] < t0]
        if earlier:
            win.append(earlier[-1])
        if all(key(x) == key(s) for x in win):
            out.append(s)
    return out


def check_consistent(samples, speed):
    stable = stable_samples(samples, speed)
    assert len(stable) >= 5, f"only {len(stable)} stable samples of {len(samples)}"
    states = set()
    for s in stable:
        cp1, cp2 = s["cp"]["cp1"]["currents_a"], s["cp"]["cp2"]["currents_a"]
        assert cp2[1] == 0 and cp2[2] == 0, f"single-phase cp2 draws on conductors 2/3: {cp2}"
        exp = expected_meter(cp1, cp2)
        assert s["meter"] == pytest.approx(exp, abs=TOL_A), (
            f"t={s['t']:.2f}: meter {s['meter']} != base {list(BASE_A)} + cp1 {cp1} + cp2 {cp2}")
        states.add((round(cp1[0]), round(cp2[0])))
    return states, stable


# -- 1. physically consistent values ---------------------------------------------------------------
@pytest.mark.timeout(150)
def test_external_pymodbus_master_sees_meter_equal_base_plus_ev_currents(small_site, tmp_path):
    scn = small_site("rtu")                    # meter on RS-485 (RTU over TCP), chargers on TCP
    with emulator(scn, tmp_path) as (proc, endpoints):
        devs = by_device(endpoints)
        assert devs["main"]["transport"] == "rtu" and devs["main"]["profile"] == "sdm630"
        assert devs["cp1"]["transport"] == "tcp" and devs["cp1"]["profile"] == "dlbrig_generic"
        assert all(e["host"] == "127.0.0.1" for e in endpoints)
        got = run_probe(tmp_path / "endpoints.json", "physics")
    rc, _, err = proc.stopped
    assert rc == 0 and TRACEBACK not in err, err          # SIGINT: clean exit
    states, stable = check_consistent(got["samples"], SPEED)
    # before any set-point the chargers offer their startup (= safe) current and the EVs take it
    assert (round(SAFE_A), round(SAFE_A)) in states
    s = stable[-1]
    assert s["cp"]["cp1"]["currents_a"] == pytest.approx([SAFE_A] * 3, abs=TOL_A)
    assert s["meter"] == pytest.approx([16 + 10, 12 + 10 + 10, 14 + 10], abs=TOL_A)


@pytest.mark.timeout(150)
def test_setpoint_write_moves_ev_after_reaction_delay_and_watchdog_falls_back(small_site, tmp_path):
    scn = small_site("rtu")
    with emulator(scn, tmp_path) as (proc, endpoints):
        got = run_probe(tmp_path / "endpoints.json", "setpoint")
    ev, samples = got["events"], got["samples"]
    sim = lambda a, b: (ev[b] - ev[a]) * SPEED
    print({k: round((v - ev["write"]) * SPEED, 2) for k, v in ev.items()})   # scenario s

    # the EV follows the new set-point, but not before its reaction delay
    rise = (ev["risen"] - ev["write"]) * SPEED
    assert rise >= REACTION_S - 0.01, f"EV followed {rise:.2f} s after the write (< reaction delay)"
    assert rise <= REACTION_S + PWM_SPACING_S + 3, f"EV took {rise:.2f} s to follow"
    before = [s for s in samples if s["t_end"] <= ev["write"]]
    assert before and max(before[-1]["cp"]["cp1"]["currents_a"]) <= SAFE_A + TOL_A
    # while the set-point is rewritten every 1 s (< 3 s watchdog) there is no fallback
    fed = [s for s in samples if ev["risen"] <= s["t"] and s["t_end"] <= ev["last_write_done"]]
    assert len(fed) >= 5
    assert all(s["cp1_failsafe"] == 0 for s in fed)
    assert all(min(s["cp"]["cp1"]["currents_a"]) >= EV_MAX_A - 0.5 for s in fed)
    # writes stop: the watchdog fires after its timeout (not before), then the EV follows the
    # safe current after (PWM spacing +) its reaction delay
    fs = sim("last_write", "failsafe")
    assert fs >= WATCHDOG_S - 0.01, f"fallback {fs:.2f} s after the last write (< watchdog timeout)"
    assert fs <= WATCHDOG_S + 2.5, f"fallback {fs:.2f} s after the last write"
    fall = sim("last_write", "fallen")
    assert fall >= WATCHDOG_S + REACTION_S - 0.01
    assert fall <= WATCHDOG_S + PWM_SPACING_S + REACTION_S + 3
    after = [s for s in samples if s["t"] >= ev["fallen"]]
    assert all(s["cp"]["cp1"]["currents_a"] == pytest.approx([SAFE_A] * 3, abs=TOL_A) for s in after)
    # and the meter stayed consistent with the chargers throughout (10 A, 16 A, 10 A again)
    states, _ = check_consistent(samples, SPEED)
    assert {(10, 10), (16, 10)} <= states, states


# -- mbpoll (Debian) ---------------------------------------------------------------------------
def _mbpoll(*args, timeout=20):
    r = subprocess.run(["mbpoll", *map(str, args)], capture_output=True, text=True,
                       timeout=timeout, stdin=subprocess.DEVNULL)
    return r.returncode, r.stdout, r.stderr


def _mbpoll_values(text: str) -> dict[int, float]:
    return {int(a): float(v) for a, v in re.findall(r"^\[(\d+)\]:\s+(\S+)\s*$", text, re.M)}


class PtyBridge:
    """A serial device (pty) whose bytes go to / come from a TCP socket: lets mbpoll, which
    speaks RTU only on a serial device, reach the emulator's RTU-over-TCP bus unchanged."""

    def __init__(self, host: str, port: int):
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave)
        self.path = os.ttyname(self._slave)
        self.sock = socket.create_connection((host, port), timeout=5)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._pump, daemon=True)

    def _pump(self):
        while not self._stop.is_set():
            r, _, _ = select.select([self.master, self.sock], [], [], 0.05)
            try:
                if self.master in r:
                    data = os.read(self.master, 512)
                    if data:
                        self.sock.sendall(data)
                if self.sock in r:
                    data = self.sock.recv(512)
                    if not data:
                        return
                    os.write(self.master, data)
            except OSError:
                return

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)
        for close in (self.sock.close, lambda: os.close(self.master), lambda: os.close(self._slave)):
            with contextlib.suppress(OSError):
                close()


@pytest.mark.skipif(shutil.which("mbpoll") is None, reason="mbpoll not installed")
@pytest.mark.timeout(150)
def test_mbpoll_reads_consistent_meter_and_chargers_and_writes_a_setpoint(small_site, tmp_path):
    """mbpoll reads the chargers over Modbus TCP and the SDM630 over RTU (a pty bridged to the
    emulator's RTU-over-TCP bus: mbpoll speaks RTU only on a serial device)."""
    scn = small_site("rtu")
    speed = 2.0
    with emulator(scn, tmp_path, speed=speed) as (proc, endpoints):
        devs = by_device(endpoints)
        bus = devs["main"]
        assert bus["transport"] == "rtu"
        with PtyBridge(bus["host"], bus["port"]) as serial:

            def meter():    # SDM630 IR 0x0006..: I L1..L3, float32, big-endian word order
                rc, out, err = _mbpoll("-m", "rtu", "-b", "9600", "-P", "none", "-a", bus["unit"],
                                       "-t", "3:float", "-B", "-0", "-r", 6, "-c", 3, "-1",
                                       "-o", 3, serial.path)
                assert rc == 0, out + err
                v = _mbpoll_values(out)
                return [v[6], v[8], v[10]]

            def charger(name):  # dlbrig_generic IR 2 status, IR 6..11 I L1..L3 (u32 mA, BE)
                ep = devs[name]
                rc, out, err = _mbpoll("-m", "tcp", "-p", ep["port"], "-a", ep["unit"], "-t", "3",
                                       "-0", "-r", 0, "-c", 12, "-1", "-o", 3, "127.0.0.1")
                assert rc == 0, out + err
                v = _mbpoll_values(out)
                return v[2], [(int(v[6 + 2 * k]) << 16 | int(v[7 + 2 * k])) / 1000 for k in range(3)]

            # accept a meter reading once the chargers' values have not changed for 1.5 s of
            # scenario time before it and are unchanged right after it (meter refresh: 1 s)
            deadline = time.monotonic() + 60
            good, last, since = [], None, time.monotonic()
            while time.monotonic() < deadline and len(good) < 3:
                before = (charger("cp1"), charger("cp2"))
                if before != last:
                    last, since = before, time.monotonic()
                m = meter()
                after = (charger("cp1"), charger("cp2"))
                (st1, c1), (st2, c2) = before
                if (after == before and (time.monotonic() - since) * speed >= 1.5
                        and st1 == 2 and st2 == 2 and min(c1) > 5 and c2[0] > 5):  # 2 = charging
                    good.append((c1, c2, m))
            assert len(good) == 3, f"chargers never stable and charging: {good}"
            for c1, c2, m in good:
                assert m == pytest.approx(expected_meter(c1, c2), abs=TOL_A), (m, c1, c2)

        # a set-point written by mbpoll (FC16, one u32 in mA, big-endian) moves cp2's EV
        ep = devs["cp2"]
        t_write = time.monotonic()
        rc, out, err = _mbpoll("-m", "tcp", "-p", ep["port"], "-a", ep["unit"], "-t", "4:int",
                               "-B", "-0", "-r", 0, "-1", "-o", 3, "127.0.0.1", 20000)
        assert rc == 0, out + err
        deadline = time.monotonic() + (REACTION_S + PWM_SPACING_S + 5) / speed + 10
        while True:
            st, c = charger("cp2")
            if c[0] >= 19.5 or time.monotonic() > deadline:
                break
        assert c[0] >= 19.5, f"cp2 did not follow the 20 A set-point: {c}"
        assert (time.monotonic() - t_write) * speed >= REACTION_S - 0.01
        assert c == pytest.approx([20.0, 0.0, 0.0], abs=TOL_A)


@pytest.mark.timeout(60)
def test_meter_configured_on_tcp_is_served_as_modbus_tcp(small_site, tmp_path):
    """A meter the scenario puts on ``transport: tcp`` (an RTU meter behind a TCP gateway) must be
    served as Modbus TCP, as the endpoint list and the scenario say."""
    scn = small_site("tcp")
    with emulator(scn, tmp_path) as (proc, endpoints):
        main = by_device(endpoints)["main"]
        assert main["transport"] == "tcp", main
        from dlbrig.rig.modbus import _pymodbus as pm
        r = pm.sync_request("127.0.0.1", main["port"], main["unit"], 4, 6, 6, framer="tcp",
                            timeout_s=3)
        assert r.exception is None and len(r.values) == 6


# -- CLI safety: bind, signals ---------------------------------------------------------------------
@pytest.mark.timeout(60)
def test_bind_non_loopback_refused_with_exit_2(small_site):
    r = dlbrig("emulate", small_site("rtu"), "--bind", "10.1.2.3", "--duration", "2s", timeout=30)
    assert r.returncode == 2, r.stdout + r.stderr
    assert TRACEBACK not in r.stderr
    assert "10.1.2.3" in r.stderr and "loopback" in r.stderr
    assert "endpoints serving" not in r.stderr + r.stdout


@pytest.mark.timeout(60)
def test_bind_refusal_names_the_cli_flag(small_site):
    """The refusal should tell a CLI user the flag that allows it (--allow-non-loopback), not the
    Python keyword (allow_non_loopback=True)."""
    r = dlbrig("emulate", small_site("rtu"), "--bind", "10.1.2.3", "--duration", "2s", timeout=30)
    assert r.returncode == 2
    assert "--allow-non-loopback" in r.stderr, r.stderr


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.timeout(90)
def test_sigint_stops_cleanly_and_closes_ports(small_site, tmp_path):
    scn = small_site("rtu")
    with emulator(scn, tmp_path, speed=1.0) as (proc, endpoints):
        ports = sorted({e["port"] for e in endpoints})
        assert len(ports) == 3
        assert all(_port_open(p) for p in ports)
        # a client connected at the time of the signal must not keep the server alive
        held = socket.create_connection(("127.0.0.1", ports[0]), timeout=2)
        try:
            rc, out, err = stop_process(proc, sig=signal.SIGINT, timeout=15)
        finally:
            held.close()
    assert rc == 0, err
    assert TRACEBACK not in err
    assert "endpoints serving" in err        # the ready line
    assert all(not _port_open(p) for p in ports), "a port still accepts connections after exit"


@pytest.mark.timeout(60)
def test_duration_ends_emulation_with_exit_0(small_site, tmp_path):
    ep = tmp_path / "ep.json"
    r = dlbrig("emulate", small_site("rtu"), "--duration", "2s", "--speed", "4",
               "--endpoints", ep, timeout=40)
    assert r.returncode == 0, r.stderr
    assert TRACEBACK not in r.stderr
    assert {e["device"] for e in json.loads(ep.read_text())} == {"main", "cp1", "cp2"}
    # one stdout line per endpoint
    assert len([l for l in r.stdout.splitlines() if "127.0.0.1:" in l]) == 3


@pytest.mark.timeout(60)
def test_port_in_use_is_a_clean_error(small_site):
    """A port that cannot be bound (in use) should end with a message, not a traceback."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = dlbrig("emulate", small_site("rtu"), "--base-port", port, "--duration", "2s", timeout=30)
    assert r.returncode != 0
    assert TRACEBACK not in r.stderr, r.stderr[-1500:]
    assert str(port) in r.stderr


@pytest.mark.timeout(60)
@pytest.mark.parametrize("speed", ["0", "-1"])
def test_emulate_bad_speed_is_a_usage_error(small_site, speed):
    r = dlbrig("emulate", small_site("rtu"), "--speed", speed, "--duration", "1s", timeout=30)
    assert r.returncode == 2, r.stderr[-1500:]
    assert TRACEBACK not in r.stderr
