"""SCPI parsing and the instrument models through their command sets (no sockets).

Each test drives a model with the exact strings of reference/instruments.md and checks the
answer text, the error queue and the physics the bench feeds in with observe()."""
from __future__ import annotations

import math

import pytest

from dlbrig.firmware_sim.instruments import OVERLOAD, make_instrument
from dlbrig.rig.visa.commands import command_set
from dlbrig.rig.visa.scpi import compile_header


def scpi(key, **kw):
    inst = make_instrument(key, **kw)
    cs = command_set(inst.info.family)
    return inst, (lambda msg: cs.execute(inst, msg))


def errors(ask):
    out = []
    while True:
        code = ask("SYST:ERR?")
        if code.startswith("+0,"):
            return out
        out.append(int(code.split(",")[0]))


def test_header_matching_is_short_or_long_form_and_optional_nodes():
    rx = compile_header("[SOURce:]CURRent:PROTection[:LEVel]")
    for h in (":CURR:PROT", ":SOUR:CURR:PROT:LEV", ":source:current:protection", ":SOURCE:CURR:PROT:LEVEL"):
        assert rx.match(h), h
    for h in (":CURRE:PROT", ":SOU:CURR:PROT", ":CURR:PROT:LEVE", ":CURRPROT", ":CURR:PROT:LEV:X"):
        assert not rx.match(h), h


def test_common_commands_error_queue_and_esr():
    inst, ask = scpi("keysight_34465a")
    assert ask("*IDN?").startswith("Keysight Technologies,34465A,")
    assert ask("*OPC?") == "1"
    assert ask("SYST:ERR?") == '+0,"No error"'
    assert ask("FOO:BAR 1") is None
    assert ask("SYST:ERR?").startswith('-113,"Undefined header')
    assert ask("*ESR?") == "32"            # CME, then cleared by the read
    assert ask("*ESR?") == "0"
    ask("SAMP:COUN")                        # missing parameter
    ask("SAMP:COUN 5000")                   # out of range
    ask("SAMP:COUN 2,3")                    # extra parameter: ignored by the model, not an error
    ask("*RST 1")                           # parameter not allowed
    assert errors(ask) == [-109, -222, -108]
    for _ in range(25):                     # overflow: the 20th entry becomes -350
        ask("NOPE")
    errs = errors(ask)
    assert len(errs) == 20 and errs[-1] == -350 and set(errs[:-1]) == {-113}
    ask("NOPE")
    ask("*CLS")
    assert errors(ask) == []


def test_relative_paths_after_semicolon_and_joined_responses():
    inst, ask = scpi("yokogawa_wt1800")
    assert ask(":NUMERIC:FORMAT ASCII;:NUMERIC:NORMAL:NUMBER 3;:NUMERIC:NORMAL:ITEM1 URMS,1;"
               "ITEM2 IRMS,1;ITEM3 ITHD,1") is None
    assert errors(ask) == []
    assert ask(":NUM:NORM:ITEM2?;ITEM3?;:NUM:NORM:NUMB?") == "IRMS,1;ITHD,1;3"


def test_chroma_load_ocp_latches_until_cleared():
    load, ask = scpi("chroma_63804")          # OCP fixed at 45 A by the model
    ask(":LOAD:MODE CURR;:LOAD:CURR 16")
    assert ask(":LOAD:MODE?") == "CURR" and float(ask(":LOAD:CURR?")) == 16.0
    ask(":LOAD 1")
    load.observe(1000, [(230.0, 16.0, 1.0, 50.0)])
    assert float(ask(":MEAS:CURR?")) == 16.0
    assert float(ask(":MEAS:POW:REAL?")) == pytest.approx(3680.0)
    assert ask(":LOAD:PROT?") == "0"
    load.observe(2000, [(230.0, 46.0, 1.0, 50.0)])       # over OCP (and OPP: 10.6 kW > 4.5 kW)
    assert int(ask(":LOAD:PROT?")) & 32 and int(ask("PROT?")) & 64
    assert ask(":LOAD?") == "0" and float(ask(":MEAS:CURR?")) == 0.0
    load.observe(3000, [(230.0, 10.0, 1.0, 50.0)])       # back in range: still latched
    assert int(ask(":LOAD:PROT?")) & 32
    ask(":LOAD 1")
    assert ask(":LOAD?") == "0" and errors(ask) == [-200]
    ask(":LOAD:PROT:CLE;:LOAD 1")
    assert ask(":LOAD?") == "1" and ask(":LOAD:PROT?") == "0"
    ask(":LOAD:MODE 9")
    assert errors(ask) == [-224]
    ask("*RST")
    assert ask(":LOAD?") == "0"


def test_itech_load_ocp_delay_and_opp():
    load, ask = scpi("itech_it8617")
    ask("SYST:REM;:SYST:MODE AC;:SOUR:FUNC CURR;:CURR:PROT 20;:CURR:PROT:STAT ON;:CURR:PROT:DEL 2")
    ask("POW:PROT 3000;:INP:STAT ON")
    assert errors(ask) == [] and ask("INP?") == "1"
    assert float(ask("SOUR:CURR:LEV:IMM:AMPL? MAX")) == 50.0
    load.observe(0, [(230.0, 25.0, 1.0, 50.0)])           # over OCP, within the delay; over OPP (5.75 kW)
    assert int(ask("STAT:QUES?")) == 8 and ask("INP?") == "0"   # OPP trips at once (delay 0)
    ask("PROT:CLE;:POW:PROT 5000;:INP ON")
    load.observe(1000, [(230.0, 21.0, 1.0, 50.0)])
    load.observe(2500, [(230.0, 21.0, 1.0, 50.0)])
    assert ask("INP?") == "1"                             # 1.5 s over: not yet
    load.observe(3000, [(230.0, 21.0, 1.0, 50.0)])
    assert ask("INP?") == "0" and int(ask("STAT:QUES?")) == 2
    assert float(ask("MEAS:VOLT:RMS?")) == 230.0 and float(ask("MEAS:CURR:RMS?")) == 0.0


def test_power_analyzer_items_nan_and_integration():
    wt, ask = scpi("yokogawa_wt500")
    ask(":NUM:FORM ASC;:NUM:NORM:NUMB 6;:NUM:NORM:ITEM1 URMS,1;ITEM2 IRMS,1;ITEM3 P,SIGMA;"
        "ITEM4 IRMS,3;ITEM5 ITHD,1;ITEM6 WP,1")
    ask(":INTEG:MODE NORM;:INTEG:TIM 0;:INTEG:STAR")
    assert ask(":INTEG:STAT?") == "STARt"
    wt.observe(0, [(230.0, 10.0, 1.0, 50.0), (230.0, 5.0, 1.0, 50.0), None])
    wt.observe(3_600_000, [(230.0, 10.0, 1.0, 50.0), (230.0, 5.0, 1.0, 50.0), None])
    vals = ask(":NUM:NORM:VAL?").split(",")
    assert [float(v) if v != "NAN" else None for v in vals] == [230.0, 10.0, 3450.0, None, None, 2300.0]
    assert float(ask(":NUM:NORM:VAL? 6")) == 2300.0          # 230 V x 10 A x 1 h
    ask(":INTEG:STAR")                                       # already running: execution error
    assert errors(ask) == [-200]
    ask(":INTEG:STOP;:INTEG:RES")
    assert float(ask(":NUM:NORM:VAL? 6")) == 0.0
    ask(":INTEG:TIM 0,0,10;:INTEG:STAR")                      # 10 s timer
    wt.observe(3_620_000, [(230.0, 10.0, 1.0, 50.0), None, None])
    assert ask(":INTEG:STAT?") == "TIMEup"
    assert float(ask(":NUM:NORM:VAL? 6")) == pytest.approx(2300.0 * 10 / 3600, rel=1e-4)
    ask(":NUM:NORM:ITEM1 URMS,4")                             # the WT500 has 3 elements
    ask(":NUM:FORM FLOAT")
    assert errors(ask) == [-224, -221]
    assert int(ask(":STAT:EESR?")) & 1 and ask(":STAT:EESR?") == "0"


def test_dmm_ranges_terminals_and_overload():
    dmm, ask = scpi("keysight_34465a", scale=0.01)           # 100:1 clamp
    dmm.observe(0, [(230.0, 32.0, 1.0, 50.0)])              # 0.32 A at the input
    assert float(ask("MEAS:CURR:AC?")) == pytest.approx(0.32)
    assert float(ask("MEAS:CURR:AC? 1")) == pytest.approx(0.32)
    assert float(ask("MEAS:CURR:AC? 0.1")) == OVERLOAD       # 100 mA range: over 120 %
    assert ask("MEAS:CURR:AC? 0.1") == "+9.90000000E+37"
    ask("CONF:CURR:AC 1;:SAMP:COUN 2")
    assert ask("READ?").count(",") == 1
    ask("INIT")
    assert float(ask("FETC?").split(",")[0]) == pytest.approx(0.32)
    ask("CURR:AC:RANG 10")                                   # 10 A needs the 10 A terminals
    assert errors(ask) == [-222]
    ask("CURR:AC:TERM 10;:CURR:AC:RANG 10")
    assert errors(ask) == [] and float(ask("CURR:AC:RANG?")) == 10.0
    dmm.observe(1000, [(230.0, 1300.0, 1.0, 50.0)])          # 13 A at the input: over 10 A x 1.2
    assert float(ask("MEAS:CURR:AC? AUTO")) == OVERLOAD
    ask("CURR:AC:TERM 3")
    dmm.observe(2000, [(230.0, 350.0, 1.0, 50.0)])           # 3.5 A: inside 3 A x 1.2, no overload
    assert float(ask("MEAS:CURR:AC?")) == pytest.approx(3.5)


def test_chroma_ac_source_limit_trips_after_delay_in_half_seconds():
    src, ask = scpi("chroma_61504")
    ask("VOLT:AC 230;:FREQ 50;:CURR:LIM 10;:CURR:DEL 4")     # 4 x 0.5 s = 2 s
    assert float(ask("CURR:DEL?")) == 4.0 and ask("OUTP?") == "0"
    src.observe(0, [(230.0, 8.0, 1.0, 50.0)])
    assert float(ask("MEAS:CURR:AC?")) == 0.0                 # output off: no current
    ask("OUTP ON")
    src.observe(1000, [(230.0, 8.0, 1.0, 50.0)])
    assert float(ask("MEAS:CURR:AC?")) == 8.0 and float(ask("MEAS:VOLT:ACDC?")) == 230.0
    src.observe(2000, [(230.0, 12.0, 1.0, 50.0)])
    src.observe(3900, [(230.0, 12.0, 1.0, 50.0)])
    assert ask("OUTP?") == "1"
    src.observe(4000, [(230.0, 12.0, 1.0, 50.0)])
    assert ask("OUTP?") == "0" and int(ask("STAT:QUES?")) & (1 << 12)
    ask("CURR:LIM 99")
    assert errors(ask) == [-222]


def test_keysight_ac_source_all_query_and_protection_state():
    src, ask = scpi("keysight_ac6804b")
    ask("VOLT 230;:CURR 20;:CURR:PROT:STAT ON;:OUTP ON")
    src.observe(0, [(230.0, 10.0, 0.8, 50.0)])
    v, i, p, s, q, pf, *_ = (float(x) for x in ask("MEAS:ALL?").split(","))
    assert (v, i, p, s) == (230.0, 10.0, pytest.approx(1840.0), pytest.approx(2300.0))
    assert q == pytest.approx(1380.0) and pf == pytest.approx(0.8)
    src.observe(100, [(230.0, 21.0, 1.0, 50.0)])             # protection on: off at once
    assert ask("OUTP?") == "0"


@pytest.mark.parametrize("garbage", ["", ";;;", ":", "*", "MEAS:CURR:AC?? 1", "MEAS::CURR?", "\x00\x01",
                                     "é", "A" * 5000, "SAMP:COUN \"unterminated", "SAMP:COUN 1e999",
                                     ":NUM:NORM:ITEM0 URMS,1", ":NUM:NORM:ITEM999 URMS,1"])
def test_malformed_messages_only_queue_errors(garbage):
    for key in ("keysight_34465a", "yokogawa_wt1800"):
        inst, ask = scpi(key)
        ask(garbage)                        # must not raise
        assert ask("*IDN?").startswith(inst.info.vendor)
