"""The SCPI command sets of the emulated instruments (``reference/instruments.md``), one per family.

Each set maps headers to calls on a pure model of :mod:`dlbrig.firmware_sim.instruments`; the text
in and out (NR3 numbers, ON/OFF, CSV) is handled here, the physics there.  Where the reference
marks a command [NOT FOUND] or unverified, the emulator accepts the usual Keysight form and the
docstring of the builder says so.
"""
from __future__ import annotations

from ...firmware_sim.instruments import (DMM_AC_CURRENT_RANGES_A, WT_FUNCTIONS, AcSource, Dmm,
                                         ElectronicLoad, PowerAnalyzer, ScpiErr)
from .scpi import CommandSet, ScpiError, common_commands, need, no_args, nr3, parse_bool, parse_number

__all__ = ["command_set", "FAMILIES"]


def _num_q(fn):
    return lambda inst, args, sfx: nr3(fn(inst))


def _bool_q(fn):
    return lambda inst, args, sfx: "1" if fn(inst) else "0"


# ----------------------------------------------------------------------------------- loads
def _chroma_63800() -> CommandSet:
    cs = common_commands()
    modes = ElectronicLoad.MODES

    def mode_w(inst, args, _):
        t = need(args)[0].strip().upper()
        if t.isdigit() and int(t) < len(modes):
            t = modes[int(t)]
        alias = {"CURRENT": "CURR", "POWER": "POW", "VOLTAGE": "VOLT", "RESISTANCE": "RES"}
        t = alias.get(t, t)
        if t not in modes:
            raise ScpiError(ScpiErr.ILLEGAL_VALUE, f"mode {args[0]!r} (0..7 or {'|'.join(modes)})")
        inst.mode = t

    def load_w(inst, args, _):
        inst.set_input(parse_bool(need(args)[0]))

    cs.add("[LOAD:]MODE", write=mode_w, query=lambda i, a, s: i.mode)
    cs.add("LOAD[:STATe]", write=load_w, query=_bool_q(lambda i: i.input_on))
    cs.add("[LOAD:]CURRent[:LEVel]",
           write=lambda i, a, s: i.set_current(parse_number(need(a)[0], lo=0, hi=i.info.max_current_a, unit="A")),
           query=_num_q(lambda i: i.current_set_a))
    cs.add("[LOAD:]CURRent:PEAK:MAXimum",
           write=lambda i, a, s: setattr(i, "peak_max_a", parse_number(need(a)[0], lo=0, hi=i.info.max_current_a * 4, unit="A")),
           query=_num_q(lambda i: i.peak_max_a))
    cs.add("[LOAD:]POWer[:LEVel]",
           write=lambda i, a, s: setattr(i, "power_set_w", parse_number(need(a)[0], lo=0, hi=i.info.max_power_w, unit="W")),
           query=_num_q(lambda i: i.power_set_w))
    cs.add("[LOAD:]PFACtor",
           write=lambda i, a, s: setattr(i, "pf_set", parse_number(need(a)[0], lo=0, hi=1)),
           query=_num_q(lambda i: i.pf_set))
    cs.add("SYSTem:SETup:CFPF:MODE", write=lambda i, a, s: None, query=lambda i, a, s: "PF")
    cs.add("[LOAD:]SCIRcuit", write=lambda i, a, s: setattr(i, "short", parse_bool(need(a)[0])),
           query=_bool_q(lambda i: getattr(i, "short", False)))
    cs.add("[LOAD:]PROTection", query=lambda i, a, s: str(i.protection_status()))
    cs.add("[LOAD:]PROTection:CLEar", write=lambda i, a, s: i.clear_protection())
    m = lambda key: _num_q(lambda i: i.measure()[key])
    cs.add("MEASure:VOLTage", query=m("voltage_v"))
    cs.add("MEASure:CURRent", query=m("current_a"))
    cs.add("MEASure:POWer[:REAL]", query=m("power_w"))
    cs.add("MEASure:POWer:APParent", query=m("apparent_va"))
    cs.add("MEASure:POWer:REACtive", query=m("reactive_var"))
    cs.add("MEASure:POWer:PFACtor", query=m("pf"))
    cs.add("MEASure:FREQuency", query=m("freq_hz"))
    return cs


def _itech_8600() -> CommandSet:
    """ITECH IT8600.  Status bits of ``STATus:QUEStionable`` (OV 1, OC 2, OP 8) are the emulator's
    choice: the reference has the protection commands, not the bit numbers."""
    cs = common_commands()
    funcs = {"CURR": "CURR", "CURRENT": "CURR", "RES": "RES", "RESISTANCE": "RES", "VOLT": "VOLT",
             "VOLTAGE": "VOLT", "POW": "POW", "POWER": "POW"}

    def func_w(inst, args, _):
        t = need(args)[0].strip().upper()
        if t not in funcs:
            raise ScpiError(ScpiErr.ILLEGAL_VALUE, f"function {args[0]!r} (CURR|RES|VOLT|POW)")
        inst.mode = funcs[t]

    def sysmode_w(inst, args, _):
        t = need(args)[0].strip().upper()
        if t not in ("AC", "DC"):
            raise ScpiError(ScpiErr.ILLEGAL_VALUE, f"{args[0]!r} (AC|DC)")
        inst.ac = t == "AC"

    def curr_q(inst, args, _):
        if args:
            return nr3(parse_number(args[0], lo=0.0, hi=inst.info.max_current_a))
        return nr3(inst.current_set_a)

    def ques(inst) -> int:
        p = inst.prot
        return ((1 if p & inst.PROT_OVP else 0) | (2 if p & inst.PROT_OCP else 0) |
                (8 if p & inst.PROT_OPP else 0))

    cs.add("SYSTem:REMote", write=lambda i, a, s: setattr(i, "remote", True))
    cs.add("SYSTem:LOCal", write=lambda i, a, s: setattr(i, "remote", False))
    cs.add("SYSTem:MODE", write=sysmode_w, query=lambda i, a, s: "AC" if i.ac else "DC")
    cs.add("[SOURce:]FUNCtion", write=func_w, query=lambda i, a, s: i.mode)
    cs.add("[SOURce:]CURRent[:LEVel][:IMMediate][:AMPLitude]",
           write=lambda i, a, s: i.set_current(parse_number(need(a)[0], lo=0, hi=i.info.max_current_a, unit="A")),
           query=curr_q)
    cs.add("[SOURce:]PFACtor", write=lambda i, a, s: setattr(i, "pf_set", parse_number(need(a)[0], lo=0, hi=1)),
           query=_num_q(lambda i: i.pf_set))
    cs.add("[SOURce:]CFACtor", write=lambda i, a, s: None, query=lambda i, a, s: nr3(1.414))
    cs.add("INPut[:STATe]", write=lambda i, a, s: i.set_input(parse_bool(need(a)[0])),
           query=_bool_q(lambda i: i.input_on))
    cs.add("[SOURce:]CURRent:PROTection:STATe", write=lambda i, a, s: setattr(i, "ocp_enabled", parse_bool(need(a)[0])),
           query=_bool_q(lambda i: i.ocp_enabled))
    cs.add("[SOURce:]CURRent:PROTection[:LEVel]", write=lambda i, a, s: i.set_ocp(parse_number(need(a)[0], unit="A")),
           query=_num_q(lambda i: i.ocp_level_a))
    cs.add("[SOURce:]CURRent:PROTection:DELay",
           write=lambda i, a, s: setattr(i, "ocp_delay_s", parse_number(need(a)[0], lo=0, hi=60, unit="S")),
           query=_num_q(lambda i: i.ocp_delay_s))
    cs.add("[SOURce:]POWer:PROTection[:LEVel]", write=lambda i, a, s: i.set_opp(parse_number(need(a)[0], unit="W")),
           query=_num_q(lambda i: i.opp_level_w))
    cs.add("[SOURce:]POWer:PROTection:DELay",
           write=lambda i, a, s: setattr(i, "opp_delay_s", parse_number(need(a)[0], lo=0, hi=60, unit="S")),
           query=_num_q(lambda i: i.opp_delay_s))
    cs.add("PROTection:CLEar", write=lambda i, a, s: i.clear_protection())
    cs.add("STATus:QUEStionable[:EVENt]", query=lambda i, a, s: str(ques(i)))
    cs.add("STATus:QUEStionable:CONDition", query=lambda i, a, s: str(ques(i)))
    m = lambda key: _num_q(lambda i: i.measure()[key])
    cs.add("MEASure:VOLTage[:RMS]", query=m("voltage_v"))
    cs.add("MEASure:CURRent[:RMS]", query=m("current_a"))
    cs.add("MEASure:POWer[:ACTive]", query=m("power_w"))
    cs.add("MEASure:POWer:APParent", query=m("apparent_va"))
    cs.add("MEASure:POWer:PFACtor", query=m("pf"))
    cs.add("MEASure:CURRent:CFACtor", query=m("crest"))
    cs.add("MEASure:FREQuency", query=m("freq_hz"))
    return cs


# ----------------------------------------------------------------------------------- analyzer
def _wt_number(x) -> str:
    """Yokogawa ASCII numeric: 5 significant digits, NR3 (``198.36E+00`` style), NAN."""
    if x is None:
        return "NAN"
    return f"{float(x):.4E}"


def _yokogawa_wt() -> CommandSet:
    cs = common_commands()

    def fmt_w(inst, args, _):
        t = need(args)[0].strip().upper()
        if t in ("ASC", "ASCII"):
            inst.numeric_format = "ASCII"
        elif t in ("FLO", "FLOAT"):
            raise ScpiError(ScpiErr.SETTINGS_CONFLICT, "FLOAT output is not emulated; use ASCII")
        else:
            raise ScpiError(ScpiErr.ILLEGAL_VALUE, f"{args[0]!r} (ASCii|FLOat)")

    def number_w(inst, args, _):
        inst.number = int(parse_number(need(args)[0], lo=1, hi=255))

    def item_w(inst, args, sfx):
        k = sfx[0]
        if not 1 <= k <= 255:
            raise ScpiError(ScpiErr.OUT_OF_RANGE, f"ITEM{k}")
        func = need(args)[0].strip().upper()
        if func == "NONE":
            inst.items[k - 1] = (None, None)
            return
        if func not in WT_FUNCTIONS:
            raise ScpiError(ScpiErr.ILLEGAL_VALUE, f"function {args[0]!r} (one of {', '.join(WT_FUNCTIONS)})")
        el = args[1].strip().upper() if len(args) > 1 else "1"
        if el != "SIGMA" and not (el.isdigit() and 1 <= int(el) <= inst.info.elements):
            raise ScpiError(ScpiErr.ILLEGAL_VALUE, f"element {el!r} (1..{inst.info.elements} or SIGMA)")
        inst.items[k - 1] = (func, el)

    def item_q(inst, args, sfx):
        f, el = inst.items[sfx[0] - 1]
        return "NONE" if f is None else f"{f},{el}"

    def value_q(inst, args, _):
        if args:
            k = int(parse_number(args[0], lo=1, hi=inst.number))
            f, el = inst.items[k - 1]
            return _wt_number(inst.element_value(f, el) if f else None)
        return ",".join(_wt_number(v) for v in inst.values())

    def auto_w(which):
        def w(inst, args, sfx):
            on = parse_bool(need(args)[0])
            e = sfx[0] if sfx else None
            rng = inst.auto_range[which]
            for k in range(len(rng)):
                if e is None or k == e - 1:
                    rng[k] = on
        return w

    def timer_w(inst, args, _):
        need(args)
        if len(args) == 3:      # hours, minutes, seconds
            h, m_, s_ = (parse_number(x, lo=0) for x in args)
            inst.integ_timer_s = h * 3600 + m_ * 60 + s_
        else:
            inst.integ_timer_s = parse_number(args[0], lo=0, hi=10000 * 3600)

    def integ(action):
        def w(inst, args, _):
            no_args(args)
            inst.integrate(action)
        return w

    state_names = {"RESET": "RESet", "START": "STARt", "STOP": "STOP", "TIMEUP": "TIMEup"}
    cs.add("COMMunicate:HEADer", write=lambda i, a, s: None, query=lambda i, a, s: "0")
    cs.add("COMMunicate:VERBose", write=lambda i, a, s: None, query=lambda i, a, s: "0")
    cs.add("COMMunicate:REMote", write=lambda i, a, s: None, query=lambda i, a, s: "1")
    cs.add("NUMeric:FORMat", write=fmt_w, query=lambda i, a, s: i.numeric_format)
    cs.add("NUMeric[:NORMal]:NUMBer", write=number_w, query=lambda i, a, s: str(i.number))
    cs.add("NUMeric[:NORMal]:ITEM<n>", write=item_w, query=item_q)
    cs.add("NUMeric[:NORMal]:VALue", query=value_q)
    cs.add("INPut:VOLTage:AUTO[:ALL]", write=auto_w("VOLTAGE"))
    cs.add("INPut:VOLTage:AUTO:ELEMent<n>", write=auto_w("VOLTAGE"),
           query=lambda i, a, s: "1" if i.auto_range["VOLTAGE"][s[0] - 1] else "0")
    cs.add("INPut:CURRent:AUTO[:ALL]", write=auto_w("CURRENT"))
    cs.add("INPut:CURRent:AUTO:ELEMent<n>", write=auto_w("CURRENT"),
           query=lambda i, a, s: "1" if i.auto_range["CURRENT"][s[0] - 1] else "0")
    cs.add("STATus:FILTer<n>", write=lambda i, a, s: None, query=lambda i, a, s: "FALL")
    cs.add("STATus:EESR", query=lambda i, a, s: str(_read_clear(i, "eesr")))
    cs.add("INTEGrate:MODE", write=lambda i, a, s: setattr(i, "integ_mode", need(a)[0].strip().upper()),
           query=lambda i, a, s: i.integ_mode)
    cs.add("INTEGrate:TIMer", write=timer_w, query=_num_q(lambda i: i.integ_timer_s))
    cs.add("INTEGrate:STARt", write=integ("START"))
    cs.add("INTEGrate:STOP", write=integ("STOP"))
    cs.add("INTEGrate:RESet", write=integ("RESET"))
    cs.add("INTEGrate:STATe", query=lambda i, a, s: state_names[i.integ_state])
    return cs


def _read_clear(inst, attr) -> int:
    v = getattr(inst, attr)
    setattr(inst, attr, 0)
    return v


# ----------------------------------------------------------------------------------- DMM
def _keysight_34465a() -> CommandSet:
    cs = common_commands()

    def rng_arg(inst, args, via_conf):
        if not args or args[0].strip().upper() in ("AUTO", "DEF", "DEFAULT"):
            inst.set_range(None)
            return
        t = args[0].strip().upper()
        if t in ("MIN", "MINIMUM"):
            inst.set_range(DMM_AC_CURRENT_RANGES_A[0], via_conf=via_conf)
        elif t in ("MAX", "MAXIMUM"):
            inst.set_range(10.0 if via_conf or inst.terminals == 10 else 3.0, via_conf=via_conf)
        else:
            inst.set_range(parse_number(args[0], lo=0, hi=10.0, unit="A"), via_conf=via_conf)

    def reading(inst) -> float:
        return inst.read_current() if inst.function == "CURR:AC" else inst.input_v

    def meas_curr(inst, args, _):
        inst.function = "CURR:AC"
        rng_arg(inst, args, True)
        return nr3(reading(inst))

    def meas_volt(inst, args, _):
        inst.function = "VOLT:AC"
        return nr3(reading(inst))

    def conf_curr(inst, args, _):
        inst.function = "CURR:AC"
        rng_arg(inst, args, True)

    def conf_q(inst, args, _):
        r = inst.range_a if inst.range_a is not None else (10.0 if inst.terminals == 10 else 3.0)
        return f'"{inst.function} {nr3(r)},{nr3(r * 3e-6)}"'

    def read_q(inst, args, _):
        return ",".join(nr3(reading(inst)) for _ in range(inst.sample_count))

    def init_w(inst, args, _):
        inst.trigger_buffer = [reading(inst) for _ in range(inst.sample_count)]

    def fetch_q(inst, args, _):
        if not inst.trigger_buffer:
            raise ScpiError((-230, "Data corrupt or stale"), "no data: send INIT first")
        return ",".join(nr3(x) for x in inst.trigger_buffer)

    def term_w(inst, args, _):
        t = int(parse_number(need(args)[0]))
        if t not in (3, 10):
            raise ScpiError(ScpiErr.ILLEGAL_VALUE, f"terminals {t} (3|10)")
        inst.terminals = t
        if t == 3 and inst.range_a == 10.0:
            inst.range_a = 3.0

    def range_w(inst, args, _):
        rng_arg(inst, need(args), False)

    cs.add("MEASure:CURRent:AC", query=meas_curr)
    cs.add("MEASure:VOLTage:AC", query=meas_volt)
    cs.add("CONFigure:CURRent:AC", write=conf_curr)
    cs.add("CONFigure", query=conf_q)
    cs.add("SAMPle:COUNt", write=lambda i, a, s: setattr(i, "sample_count", int(parse_number(need(a)[0], lo=1, hi=1000))),
           query=lambda i, a, s: f"{i.sample_count:+d}")
    cs.add("READ", query=read_q)
    cs.add("INITiate[:IMMediate]", write=init_w)
    cs.add("FETCh", query=fetch_q)
    cs.add("[SENSe:]CURRent:AC:RANGe", write=range_w,
           query=lambda i, a, s: nr3(i.range_a if i.range_a is not None else (10.0 if i.terminals == 10 else 3.0)))
    cs.add("[SENSe:]CURRent:AC:RANGe:AUTO",
           write=lambda i, a, s: i.set_range(None) if parse_bool(need(a)[0]) else None,
           query=_bool_q(lambda i: i.range_a is None))
    cs.add("[SENSe:]CURRent:AC:TERMinals", write=term_w, query=lambda i, a, s: f"{i.terminals:+d}")
    return cs


# ----------------------------------------------------------------------------------- AC sources
def _ac_source_common(cs: CommandSet) -> CommandSet:
    m = lambda key: _num_q(lambda i: i.measure()[key])
    for verb in ("MEASure", "FETCh"):
        cs.add(f"{verb}:CURRent:AC", query=m("current_a"))
        cs.add(f"{verb}:CURRent:AMPLitude:MAXimum", query=m("peak_a"))
        cs.add(f"{verb}:CURRent:CREStfactor", query=m("crest"))
        cs.add(f"{verb}:FREQuency", query=m("freq_hz"))
        cs.add(f"{verb}:POWer:AC[:REAL]", query=m("power_w"))
        cs.add(f"{verb}:POWer:AC:APParent", query=m("apparent_va"))
        cs.add(f"{verb}:POWer:AC:REACtive", query=m("reactive_var"))
        cs.add(f"{verb}:POWer:AC:PFACtor", query=m("pf"))
        cs.add(f"{verb}:VOLTage:ACDC", query=m("voltage_v"))
        cs.add(f"{verb}:VOLTage:AC", query=m("voltage_v"))
    cs.add("[SOURce:]VOLTage[:LEVel][:IMMediate][:AMPLitude][:AC]",
           write=lambda i, a, s: i.set_voltage(parse_number(need(a)[0], unit="V")),
           query=_num_q(lambda i: i.voltage_set_v))
    cs.add("[SOURce:]FREQuency[:IMMediate]", write=lambda i, a, s: i.set_frequency(parse_number(need(a)[0], unit="HZ")),
           query=_num_q(lambda i: i.freq_set_hz))
    # OUTPut[:STATe]: [NOT FOUND] for the Chroma 61500 in the reference; the usual form is accepted
    cs.add("OUTPut[:STATe]", write=lambda i, a, s: i.set_output(parse_bool(need(a)[0])),
           query=_bool_q(lambda i: i.out))
    cs.add("STATus:QUEStionable[:EVENt]", query=lambda i, a, s: str(_read_clear(i, "ques")))
    cs.add("STATus:QUEStionable:CONDition",
           query=lambda i, a, s: str(AcSource.QUES_CL_RMS if i.out and i.load_a > i.current_limit_a else 0))
    return cs


def _chroma_61500() -> CommandSet:
    cs = _ac_source_common(common_commands())
    cs.add("[SOURce:]CURRent:LIMit", write=lambda i, a, s: i.set_current_limit(parse_number(need(a)[0], unit="A")),
           query=_num_q(lambda i: i.current_limit_a))
    # CURR:DEL is in units of 0.5 s (manual 8.6.2.3)
    cs.add("[SOURce:]CURRent:DELay",
           write=lambda i, a, s: setattr(i, "limit_delay_s", 0.5 * parse_number(need(a)[0], lo=0.0, hi=5.0)),
           query=_num_q(lambda i: i.limit_delay_s / 0.5))
    return cs


def _keysight_ac6800() -> CommandSet:
    """Keysight AC6800B.  ``CURRent`` / ``CURRent:PROTection:STATe`` follow the related 6811C guide
    (the reference could not retrieve the AC6800B's own pages): with protection on the output turns
    off as soon as the RMS limit is exceeded, with it off after ``CURR:PROT:DEL`` (default 3 s)."""
    cs = _ac_source_common(common_commands())

    def prot_w(inst, args, _):
        inst.prot_state = parse_bool(need(args)[0])
        inst.limit_delay_s = 0.0 if inst.prot_state else 3.0

    def all_q(inst, args, _):
        d = inst.measure()
        return ",".join(nr3(d[k]) for k in ("voltage_v", "current_a", "power_w", "apparent_va",
                                             "reactive_var", "pf", "peak_a", "crest"))

    cs.add("[SOURce:]CURRent[:LEVel][:IMMediate][:AMPLitude]",
           write=lambda i, a, s: i.set_current_limit(parse_number(need(a)[0], unit="A")),
           query=_num_q(lambda i: i.current_limit_a))
    cs.add("[SOURce:]CURRent:PROTection:STATe", write=prot_w, query=_bool_q(lambda i: getattr(i, "prot_state", False)))
    cs.add("[SOURce:]CURRent:PROTection:DELay",
           write=lambda i, a, s: setattr(i, "limit_delay_s", parse_number(need(a)[0], lo=0, hi=60, unit="S")),
           query=_num_q(lambda i: i.limit_delay_s))
    cs.add("MEASure:ALL", query=all_q)
    cs.add("FETCh:ALL", query=all_q)
    return cs


# ----------------------------------------------------------------------------------- EV simulator
def _evsim() -> CommandSet:
    """dlbrig's EV-side simulator command set (README "EV simulator"): the products in this role
    (Keysight SL1040A Scienlab, comemso EPTS / EVSE analyzer) are driven through their vendors'
    software APIs; this tree follows SCPI conventions (SOURce for stimuli, MEASure for readings,
    a FIFO of time-stamped events) so a real one can be adapted behind the same driver.  A command
    of an option the instrument does not have (``*OPT?``) queues -241 Hardware missing."""
    cs = common_commands()

    def opt(option, fn):
        def h(inst, args, sfx):
            if not inst.has(option):
                raise ScpiError(ScpiErr.HARDWARE_MISSING, f"option {option} not installed")
            return fn(inst, args, sfx)
        return h

    def cp_w(inst, args, _):
        inst.set_cp(need(args)[0])

    def events_q(inst, args, _):
        limit = int(parse_number(args[0], lo=1, hi=1000)) if args else 100
        evs = inst.take_events(limit)
        parts = [str(len(evs))]
        for t, kind, value in evs:
            parts += [str(int(t)), kind, value if isinstance(value, str) else f"{float(value):g}"]
        return ",".join(parts)

    def loadmode_w(inst, args, _):
        t = need(args)[0].strip().upper()
        t = {"FOLLOW": "FOLL", "FIXED": "FIX"}.get(t, t)
        if t not in ("FOLL", "FIX"):
            raise ScpiError(ScpiErr.ILLEGAL_VALUE, f"load mode {args[0]!r} (FOLLow|FIXed)")
        inst.load_mode = t

    def phases_w(inst, args, _):
        n = int(parse_number(need(args)[0], lo=1, hi=3))
        inst.phases = n

    cs.add("*OPT", query=lambda i, a, s: ",".join(i.options))
    cs.add("[SOURce:]CP[:STATe]", write=opt("CP", cp_w), query=opt("CP", lambda i, a, s: i.cp))
    cs.add("[SOURce:]CP:DIODe", write=opt("DIODE", lambda i, a, s: setattr(i, "diode", parse_bool(need(a)[0]))),
           query=opt("DIODE", _bool_q(lambda i: i.diode)))
    cs.add("[SOURce:]RCD:DC", write=opt("RCDDC", lambda i, a, s: i.set_rcd("DC", 1000 * parse_number(
        need(a)[0], lo=0, hi=0.5, unit="A"))), query=opt("RCDDC", _num_q(lambda i: i.rcd_dc_ma / 1000)))
    cs.add("[SOURce:]RCD:AC", write=opt("RCDAC", lambda i, a, s: i.set_rcd("AC", 1000 * parse_number(
        need(a)[0], lo=0, hi=0.5, unit="A"))), query=opt("RCDAC", _num_q(lambda i: i.rcd_ac_ma / 1000)))
    cs.add("LOAD[:STATe]", write=opt("LOAD", lambda i, a, s: setattr(i, "load_on", parse_bool(need(a)[0]))),
           query=opt("LOAD", _bool_q(lambda i: i.load_on)))
    cs.add("LOAD:CURRent[:LEVel]", write=opt("LOAD", lambda i, a, s: i.set_load_current(
        parse_number(need(a)[0], lo=0, hi=i.info.max_current_a, unit="A"))),
           query=opt("LOAD", _num_q(lambda i: i.load_a)))
    cs.add("LOAD:CURRent:PROTection", write=opt("LOAD", lambda i, a, s: i.set_load_limit(
        parse_number(need(a)[0], unit="A"))), query=opt("LOAD", _num_q(lambda i: i.load_limit_a)))
    cs.add("LOAD:CURRent:PROTection:MAXimum", query=opt("LOAD", _num_q(lambda i: i.info.max_current_a)))
    cs.add("LOAD:MODE", write=opt("LOAD", loadmode_w), query=opt("LOAD", lambda i, a, s: i.load_mode))
    cs.add("LOAD:PHASes", write=opt("LOAD", phases_w), query=opt("LOAD", lambda i, a, s: str(i.phases)))
    cs.add("MEASure:CP[:STATe]", query=lambda i, a, s: i.charger_state())
    cs.add("MEASure:PWM:DUTY", query=_num_q(lambda i: i.duty_pct))
    cs.add("MEASure:PWM:CURRent", query=_num_q(lambda i: _pwm_current(i.duty_pct)))
    cs.add("MEASure:CONTactor", query=_bool_q(lambda i: i.contactor_closed))
    cs.add("MEASure:VOLTage", query=_num_q(lambda i: i.outlet_v))
    cs.add("MEASure:CURRent", query=_num_q(lambda i: i.drawn_a))
    cs.add("EVENt:DATA", query=opt("LOG", events_q))
    cs.add("EVENt:COUNt", query=opt("LOG", lambda i, a, s: str(len(i.log))))
    cs.add("EVENt:CLEar", write=opt("LOG", lambda i, a, s: i.log.clear()))
    cs.add("EVENt:OVERflow", query=opt("LOG", lambda i, a, s: str(i.log_overflow)))
    cs.add("SYSTem:CLOCk", query=lambda i, a, s: str(int(i.now_ms)))
    return cs


def _pwm_current(duty_pct: float) -> float:
    from ...firmware_sim.ev import current_from_duty
    a = current_from_duty(duty_pct) if duty_pct < 100.0 else None
    return 0.0 if a is None else a


FAMILIES = {"evsim": _evsim, "chroma63800": _chroma_63800, "itech8600": _itech_8600, "yokogawa_wt": _yokogawa_wt,
            "keysight34465a": _keysight_34465a, "chroma61500": _chroma_61500,
            "keysight_ac6800": _keysight_ac6800}
_CACHE: dict = {}


def command_set(family: str) -> CommandSet:
    """The (shared, stateless) command set of a family."""
    if family not in _CACHE:
        _CACHE[family] = FAMILIES[family]()
    return _CACHE[family]
