"""Emulated instruments on real sockets, reached by pyvisa (pyvisa-py) and by raw sockets."""
from __future__ import annotations

import socket
import time

import pytest

from dlbrig.rig.visa.drivers import NotArmed, VisaError, identify, open_driver, parse_resource
from rig_cli_helpers import TRACEBACK, dlbrig


def _raw(resource):
    host, port = parse_resource(resource)
    s = socket.create_connection((host, port), timeout=5)
    return s


def _readline(sock, deadline_s=5.0) -> bytes:
    sock.settimeout(deadline_s)
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return buf


def test_identify_every_kind_over_pyvisa(instruments):
    b = instruments(load="chroma_63804", itech="itech_it8615", wt="yokogawa_wt1800",
                    dmm="keysight_34465a", src="chroma_61504", ac68="keysight_ac6804b")
    kinds = {n: identify(b.resource(n)) for n in b.models}
    assert {n: (i.kind, i.family) for n, i in kinds.items()} == {
        "load": ("eload", "chroma63800"), "itech": ("eload", "itech8600"),
        "wt": ("power_analyzer", "yokogawa_wt"), "dmm": ("dmm", "keysight34465a"),
        "src": ("ac_source", "chroma61500"), "ac68": ("ac_source", "keysight_ac6800")}
    assert kinds["wt"].idn == "YOKOGAWA,WT1806,SIM-wt,F3.01"


def test_query_interrupted_when_the_client_does_not_read(instruments):
    b = instruments(dmm="keysight_34465a")
    s = _raw(b.resource("dmm"))
    try:
        s.sendall(b"*IDN?\nSYST:ERR?\n")           # second message before reading the first answer
        answer = _readline(s)
        assert answer.startswith(b'-410,"Query INTERRUPTED'), answer
        s.sendall(b"*IDN?\n")                       # reading between messages: no error
        assert _readline(s).startswith(b"Keysight Technologies,34465A")
        s.sendall(b"SYST:ERR?\n")
        assert _readline(s) == b'+0,"No error"\n'
    finally:
        s.close()


def test_malformed_input_never_crashes_the_server(instruments):
    b = instruments(wt="yokogawa_wt500")
    s = _raw(b.resource("wt"))
    try:
        s.sendall(b"\xff\xfe\x00garbage\n")
        s.sendall(b"A" * 70_000)                    # over the line limit, no newline
        s.sendall(b"\n:NUM:NORM:ITEM1 URMS,9\n")
        s.sendall(b"SYST:ERR?\n")
        first = _readline(s)
        assert first.startswith(b"-102"), first     # the undecodable line
        errs = [first]
        for _ in range(3):
            s.sendall(b"SYST:ERR?\n")
            errs.append(_readline(s))
        codes = [int(e.split(b",")[0]) for e in errs]
        assert codes[:3] == [-102, -223, -224] and codes[3] == 0
        s.sendall(b"*IDN?\n")
        assert _readline(s).startswith(b"YOKOGAWA,WT500")
    finally:
        s.close()
    s2 = _raw(b.resource("wt"))                     # a half-sent line then a dropped socket
    s2.sendall(b":NUM:NORM:VAL")
    s2.close()
    assert identify(b.resource("wt")).model == "WT500"


def test_drivers_refuse_outputs_without_arm_and_before_protection(instruments):
    b = instruments(load="itech_it8617", src="chroma_61504")
    load = open_driver(b.resource("load"), armed=False)
    with pytest.raises(NotArmed, match="without --arm"):
        load.enable_output()
    assert b.models["load"].input_on is False
    armed = open_driver(b.resource("load"), armed=True)
    with pytest.raises(NotArmed, match="protection limits"):
        armed.enable_output()
    armed.configure_cc()
    armed.set_protection(current_a=17.6, power_w=4000)
    assert b.models["load"].ocp_level_a == pytest.approx(17.6) and b.models["load"].opp_level_w == 4000
    armed.enable_output()
    assert armed.output_on() and b.models["load"].input_on
    assert armed.safe_off() is True and b.models["load"].input_on is False
    src = open_driver(b.resource("src"), armed=True)
    src.set_protection(current_a=12.0, delay_s=1.0)
    assert b.models["src"].current_limit_a == 12.0 and b.models["src"].limit_delay_s == 1.0
    src.set_voltage(230.0)
    src.enable_output()
    b.call(b.models["src"].observe, 1000, [(230.0, 9.5, 1.0, 50.0)])
    assert src.measure() == {"voltage_v": 230.0, "current_a": 9.5}
    with pytest.raises(VisaError, match="expected a dmm"):
        open_driver(b.resource("src"), expect_kind="dmm")
    for d in (load, armed, src):
        d.close()


def test_analyzer_driver_reads_the_physics(instruments):
    b = instruments(wt="yokogawa_wt1800")
    wt = open_driver(b.resource("wt"))
    wt.configure([1, 2, 4])
    wt.start_integration()
    chans = [(230.0, 16.0, 1.0, 50.0), (229.0, 15.5, 1.0, 50.0), None, None, None, None]
    b.call(b.models["wt"].observe, 0, chans)
    b.call(b.models["wt"].observe, 360_000, chans)           # 6 minutes
    r = wt.read()
    assert r[1]["irms"] == 16.0 and r[2]["urms"] == 229.0 and r[4]["irms"] is None
    assert r[1]["wp"] == pytest.approx(230 * 16 / 10, rel=1e-4)
    wt.close()


def test_cli_instruments_identifies_and_reports_dead_addresses(instruments):
    b = instruments(dmm="keysight_34465a", load="chroma_63803")
    host, port = parse_resource(b.resource("load"))
    r = dlbrig("instruments", b.resource("dmm"), f"{host}:{port}", timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert "Keysight Technologies 34465A serial SIM-dmm" in lines[0] and "[dmm]" in lines[0]
    assert "Chroma ATE 63803" in lines[1] and "[eload]" in lines[1]
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    dead = free.getsockname()[1]
    free.close()
    r = dlbrig("instruments", "--timeout", "1", f"TCPIP0::127.0.0.1::{dead}::SOCKET", timeout=60)
    assert r.returncode == 1 and "no answer" in r.stdout and TRACEBACK not in r.stderr
    r = dlbrig("instruments", "GPIB0::12::INSTR", timeout=60)
    assert r.returncode == 2 and "not a VISA socket resource" in r.stderr and TRACEBACK not in r.stderr


def test_real_instruments_off_loopback_need_arming_even_without_outputs():
    from dlbrig.rig.scenario.loader import validate
    from dlbrig.rig.visa.bench import BenchClient
    from dlbrig.rig.visa.drivers import is_loopback_resource

    assert is_loopback_resource("TCPIP0::127.0.0.1::5025::SOCKET") and is_loopback_resource("TCPIP::localhost::1::SOCKET")
    assert not is_loopback_resource("TCPIP0::10.0.0.7::5025::SOCKET")
    sc = validate({"name": "b", "duration": "1m",
                   "site": {"circuits": [{"name": "main", "limit_a": 32, "meter": True}],
                            "chargers": [{"name": "cp1", "circuit": "main", "max_a": 16}]},
                   "instruments": [{"name": "dmm", "model": "keysight_34465a", "charger": "cp1",
                                    "resource": "TCPIP0::10.0.0.7::5025::SOCKET"}]})
    res = {"dmm": "TCPIP0::10.0.0.7::5025::SOCKET"}
    with pytest.raises(NotArmed, match=r"instrument dmm at TCPIP0::10.0.0.7::5025::SOCKET \(not loopback\) without --arm"):
        BenchClient(sc, res, armed=False).check_armed()
    BenchClient(sc, res, armed=True).check_armed()       # armed: allowed (nothing is opened here)
