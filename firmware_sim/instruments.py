"""Lab instruments as pure, time-injected models: electronic load, power analyzer, DMM, AC source.

No sockets, no SCPI text, no clock: the rig's SCPI servers (:mod:`dlbrig.rig.visa`) turn commands
into calls on these objects, and the rig's bench coupling feeds them the physics with
:meth:`observe` (time, voltage, current, power factor per measured channel) from the plant.

What each model does (the command sets are in ``reference/instruments.md``):

* :class:`ElectronicLoad` (Chroma 63800, ITECH IT8600) stands in for an EV's draw on one charger
  conductor and decides it (:meth:`ElectronicLoad.draw_limit_a`, which the rig's bench coupling
  applies to the EV model): input off draws nothing; in CC mode it draws what the EV model would
  draw, capped at the current set-point (the rig programs the set-point to the EV's demand); OCP /
  OPP trip when the current / power exceeds the protection level for the protection delay, turn
  the input off and stay latched until cleared.
* :class:`PowerAnalyzer` (Yokogawa WT500 / WT1800): per element U, I, P, S, Q, lambda, f and
  integrated energy (``WP``) while integration runs; ``None`` (NAN on the wire) for items an
  element cannot give (unbound element, THD).
* :class:`Dmm` (Keysight 34465A): AC current through a current clamp (``scale`` A at the DMM per
  A in the conductor), with its ranges and the 9.9E37 overload value.
* :class:`AcSource` (Chroma 61500, Keysight AC6800): the grid of one phase: voltage, frequency,
  RMS current limit; above the limit for the trip delay the output turns off (latched).
  :meth:`AcSource.supply_v` is the voltage it gives the circuit phase (0 with the output off).
* :class:`EvSimulator` (EV-side simulator, in the role of a Keysight SL1040A Scienlab Charging
  Discovery System or a comemso EVSE analyzer): it *is* the EV on one charger.  It sets the pilot
  state the EV presents (A, B, C, D, E = CP-PE short), the CP diode (off = diode fault), residual
  current (DC / AC, mA) and the current it draws (following the PWM or fixed, for overcurrent);
  it measures the PWM duty and the outlet (contactor), and **time-stamps every change itself**
  into an event log (1 ms resolution, the instrument's own time base): its own stimuli (``CP``,
  ``DIODE``, ``RCDDC``, ``RCDAC``, ``LOAD``, ``LMODE``) and the charger's responses
  (``CONTACTOR`` 1/0, ``PWM`` duty %, ``STATEF`` 1/0 when the EVSE drives -12 V).  The bench
  coupling applies the stimuli (:meth:`EvSimulator.stimulus`, :meth:`EvSimulator.applied`) and
  feeds what the sensors see (:meth:`EvSimulator.sense`).

Every model's ``output_on`` is False after construction and after :meth:`reset` (``*RST``): an
instrument never starts energised.  Ratings marked ``approx`` are round numbers from the product
families' published classes, not datasheet-checked.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

__all__ = ["InstrumentModelInfo", "INSTRUMENT_MODELS", "INSTRUMENT_KINDS", "Instrument",
           "ElectronicLoad", "PowerAnalyzer", "Dmm", "AcSource", "make_instrument",
           "DMM_AC_CURRENT_RANGES_A", "OVERLOAD", "ScpiErr", "WT_FUNCTIONS", "EvSimulator", "EVSIM_OPTIONS",
           "EvSimStimulus"]

#: IEEE 488.2 / SCPI error numbers used by the emulators (SCPI-99 vol. 2, chapter 21).
class ScpiErr:
    COMMAND = (-100, "Command error")
    SYNTAX = (-102, "Syntax error")
    PARAM_NOT_ALLOWED = (-108, "Parameter not allowed")
    MISSING_PARAM = (-109, "Missing parameter")
    UNDEFINED_HEADER = (-113, "Undefined header")
    EXECUTION = (-200, "Execution error")
    SETTINGS_CONFLICT = (-221, "Settings conflict")
    OUT_OF_RANGE = (-222, "Data out of range")
    ILLEGAL_VALUE = (-224, "Illegal parameter value")
    QUEUE_OVERFLOW = (-350, "Queue overflow")
    QUERY_INTERRUPTED = (-410, "Query INTERRUPTED")
    HARDWARE_MISSING = (-241, "Hardware missing")


#: Overload value of Keysight DMMs (and the "not a number" of many SCPI instruments).
OVERLOAD = 9.9e37
#: 34465A AC current ranges (A); 10 A only with the 10 A terminals.
DMM_AC_CURRENT_RANGES_A = (100e-6, 1e-3, 10e-3, 100e-3, 1.0, 3.0, 10.0)
DMM_OVERRANGE = 1.2          # Truevolt DMMs read up to 120 % of range before overload

ERROR_QUEUE_DEPTH = 20
ESR_OPC, ESR_QYE, ESR_DDE, ESR_EXE, ESR_CME = 1, 4, 8, 16, 32


@dataclass(frozen=True)
class InstrumentModelInfo:
    key: str            # scenario name, e.g. "chroma_63804"
    kind: str           # "eload" | "power_analyzer" | "dmm" | "ac_source" | "ev_simulator"
    family: str         # command set: "chroma63800" | "itech8600" | "yokogawa_wt" | "keysight34465a" | "chroma61500" | "keysight_ac6800"
    vendor: str         # *IDN? field 1
    model: str          # *IDN? field 2
    firmware: str
    max_current_a: float = 0.0      # load OCP / source rating
    max_power_w: float = 0.0        # load OPP / source rating
    elements: int = 0               # power analyzer input elements


INSTRUMENT_MODELS: dict[str, InstrumentModelInfo] = {m.key: m for m in (
    # Chroma 63800: OCP / OPP fixed by the model (reference/instruments.md, PROT? bits)
    InstrumentModelInfo("chroma_63802", "eload", "chroma63800", "Chroma ATE", "63802", "1.20", 18.0, 1800.0),
    InstrumentModelInfo("chroma_63803", "eload", "chroma63800", "Chroma ATE", "63803", "1.20", 36.0, 3600.0),
    InstrumentModelInfo("chroma_63804", "eload", "chroma63800", "Chroma ATE", "63804", "1.20", 45.0, 4500.0),
    # ITECH IT8600 ratings: approx
    InstrumentModelInfo("itech_it8615", "eload", "itech8600", "ITECH Ltd.", "IT8615", "1.03", 20.0, 1800.0),
    InstrumentModelInfo("itech_it8617", "eload", "itech8600", "ITECH Ltd.", "IT8617", "1.03", 50.0, 5000.0),
    InstrumentModelInfo("yokogawa_wt500", "power_analyzer", "yokogawa_wt", "YOKOGAWA", "WT500", "F1.61", elements=3),
    InstrumentModelInfo("yokogawa_wt1800", "power_analyzer", "yokogawa_wt", "YOKOGAWA", "WT1806", "F3.01", elements=6),
    InstrumentModelInfo("keysight_34465a", "dmm", "keysight34465a", "Keysight Technologies", "34465A",
                        "A.03.01-02.40-03.01-00.52-03-02"),
    # AC sources: ratings approx
    InstrumentModelInfo("chroma_61504", "ac_source", "chroma61500", "Chroma ATE", "61504", "2.00", 16.0, 2000.0),
    InstrumentModelInfo("keysight_ac6804b", "ac_source", "keysight_ac6800", "Keysight Technologies", "AC6804B",
                        "A.01.02", 40.0, 4000.0),
    # EV-side simulators: max draw per conductor / power approx; the command set is dlbrig's own
    # SCPI tree ("evsim", README): the products are driven through their vendors' software APIs
    InstrumentModelInfo("keysight_sl1040a", "ev_simulator", "evsim", "Keysight Technologies", "SL1040A",
                        "EVSIM-1.0", 32.0, 22000.0),
    InstrumentModelInfo("comemso_epts", "ev_simulator", "evsim", "comemso GmbH", "EPTS", "EVSIM-1.0",
                        32.0, 22000.0),
)}
INSTRUMENT_KINDS = ("eload", "power_analyzer", "dmm", "ac_source", "ev_simulator")


class Instrument:
    """IEEE 488.2 core every instrument shares: identity, error queue, event status register."""

    kind = ""

    def __init__(self, info: InstrumentModelInfo, serial: str = "SIM0001"):
        self.info = info
        self.serial = serial
        self.errors: deque = deque()
        self.esr = 0
        self.now_ms = 0
        self.reset()

    # -- IEEE 488.2 ---------------------------------------------------------------------------
    def idn(self) -> str:
        i = self.info
        return f"{i.vendor},{i.model},{self.serial},{i.firmware}"

    def push_error(self, err: tuple, detail: str = "") -> None:
        code, msg = err
        if -199 <= code <= -100:
            self.esr |= ESR_CME
        elif -299 <= code <= -200:
            self.esr |= ESR_EXE
        elif -399 <= code <= -300:
            self.esr |= ESR_DDE
        elif -499 <= code <= -400:
            self.esr |= ESR_QYE
        text = f"{msg};{detail}" if detail else msg
        if len(self.errors) >= ERROR_QUEUE_DEPTH:
            # SCPI: the newest error is replaced by -350 and later ones are lost
            self.errors[-1] = ScpiErr.QUEUE_OVERFLOW
            return
        self.errors.append((code, text))

    def pop_error(self) -> tuple:
        return self.errors.popleft() if self.errors else (0, "No error")

    def clear_status(self) -> None:
        """``*CLS``: error queue and event registers."""
        self.errors.clear()
        self.esr = 0

    def read_esr(self) -> int:
        v, self.esr = self.esr, 0
        return v

    def operation_complete(self) -> None:
        self.esr |= ESR_OPC

    def reset(self) -> None:
        """``*RST``: settings to their defaults, output / input off (subclasses extend)."""

    # -- bench safety -------------------------------------------------------------------------
    @property
    def output_on(self) -> bool:
        return False

    def safe_off(self) -> None:
        """Output / input off (what the rig does on every exit path)."""

    # -- physics ------------------------------------------------------------------------------
    def observe(self, t_ms: int, channels: list) -> None:
        """Feed the measured quantities at ``t_ms``: one ``(voltage_v, current_a, pf, freq_hz)``
        per channel (element); ``None`` for a channel with nothing bound."""
        self.now_ms = max(self.now_ms, int(t_ms))

    def state(self) -> dict:
        return {"kind": self.kind, "model": self.info.key, "output_on": self.output_on}


def _power(v: float, i: float, pf: float) -> tuple:
    s = abs(v * i)
    p = s * pf
    q = math.sqrt(max(0.0, s * s - p * p))
    return p, s, q


class ElectronicLoad(Instrument):
    """An AC/DC electronic load on one charger conductor (stands in for the EV)."""

    kind = "eload"
    MODES = ("CURR", "POW", "VOLT", "RES", "RLC", "RLCP", "INRUSH", "RECT")
    # Chroma PROT? bits
    PROT_UV, PROT_OVP, PROT_OCP, PROT_OPP = 2, 8, 32, 64

    def reset(self) -> None:
        info = self.info
        self.mode = "CURR"
        self.ac = True
        self.remote = False
        self.current_set_a = 0.0
        self.power_set_w = 0.0
        self.pf_set = 1.0
        self.peak_max_a = info.max_current_a * math.sqrt(2)
        self.input_on = False
        self.ocp_enabled = True
        self.ocp_level_a = info.max_current_a
        self.ocp_delay_s = 0.0
        self.opp_level_w = info.max_power_w
        self.opp_delay_s = 0.0
        self.prot = getattr(self, "prot", 0) & 0   # latched bits are cleared by *RST too
        self.voltage_v = 0.0
        self.freq_hz = 50.0
        self.drawn_a = 0.0
        self._pf = 1.0
        self._oc_since = None
        self._op_since = None

    @property
    def output_on(self) -> bool:
        return self.input_on

    def safe_off(self) -> None:
        self.input_on = False
        self.drawn_a = 0.0

    def set_input(self, on: bool) -> None:
        if on and self.prot & (self.PROT_OCP | self.PROT_OPP | self.PROT_OVP):
            # a latched protection keeps the input off until PROT:CLE
            raise ValueError("protection latched; clear it first")
        self.input_on = bool(on)
        if not on:
            self.drawn_a = 0.0

    def set_current(self, amps: float) -> None:
        if not 0.0 <= amps <= self.info.max_current_a:
            raise ValueError(f"current {amps} A outside 0..{self.info.max_current_a} A")
        self.current_set_a = float(amps)

    def set_ocp(self, amps: float) -> None:
        if not 0.0 <= amps <= self.info.max_current_a * 1.1:
            raise ValueError(f"OCP level {amps} A outside 0..{self.info.max_current_a * 1.1:g} A")
        self.ocp_level_a = float(amps)

    def set_opp(self, watts: float) -> None:
        if not 0.0 <= watts <= self.info.max_power_w * 1.1:
            raise ValueError(f"OPP level {watts} W outside 0..{self.info.max_power_w * 1.1:g} W")
        self.opp_level_w = float(watts)

    def clear_protection(self) -> None:
        self.prot = 0
        self._oc_since = self._op_since = None

    def observe(self, t_ms: int, channels: list) -> None:
        super().observe(t_ms, channels)
        ch = channels[0] if channels else None
        v, i, pf, f = ch if ch is not None else (0.0, 0.0, 1.0, 50.0)
        self.voltage_v, self._pf, self.freq_hz = float(v), float(pf), float(f)
        if not self.input_on:
            self.drawn_a = 0.0
            return
        self.drawn_a = max(0.0, float(i))
        if self.voltage_v > 350.0:
            self.prot |= self.PROT_OVP
        # protections: over the level for the delay -> input off, latched until cleared
        over_i = self.ocp_enabled and self.drawn_a > self.ocp_level_a
        self._oc_since = (self._oc_since if self._oc_since is not None else t_ms) if over_i else None
        if over_i and t_ms - self._oc_since >= self.ocp_delay_s * 1000:
            self.prot |= self.PROT_OCP
        over_p = self.drawn_a * self.voltage_v * self._pf > self.opp_level_w
        self._op_since = (self._op_since if self._op_since is not None else t_ms) if over_p else None
        if over_p and t_ms - self._op_since >= self.opp_delay_s * 1000:
            self.prot |= self.PROT_OPP
        if self.prot & (self.PROT_OCP | self.PROT_OPP | self.PROT_OVP):
            self.safe_off()

    def draw_limit_a(self) -> float | None:
        """What this load lets flow in the conductor it stands in for (A): 0 with the input off
        (or a latched protection), the set-point in CC mode, set power / voltage in CP mode; None
        (no cap: the EV model's draw) in the other modes, which the emulation does not shape."""
        if not self.input_on:
            return 0.0
        if self.mode == "CURR":
            return self.current_set_a
        if self.mode == "POW":
            return self.power_set_w / self.voltage_v if self.voltage_v > 1.0 else 0.0
        return None

    def protection_status(self) -> int:
        live_uv = self.PROT_UV if self.input_on and self.voltage_v < (45.0 if self.ac else 7.5) else 0
        return self.prot | live_uv

    def measure(self) -> dict:
        v, i = self.voltage_v, self.drawn_a
        p, s, q = _power(v, i, self._pf)
        return {"voltage_v": v, "current_a": i, "power_w": p, "apparent_va": s, "reactive_var": q,
                "pf": self._pf if i > 0 else 0.0, "freq_hz": self.freq_hz,
                "crest": math.sqrt(2) if i > 0 else 0.0}

    def state(self) -> dict:
        return {**super().state(), "set_a": self.current_set_a, "prot": self.protection_status(),
                "ocp_a": self.ocp_level_a, "opp_w": self.opp_level_w, **self.measure()}


#: Power analyzer numeric functions the emulator knows (others answer NAN).
WT_FUNCTIONS = ("URMS", "IRMS", "P", "S", "Q", "LAMBDA", "FU", "FI", "WP", "TIME", "UTHD", "ITHD")


class PowerAnalyzer(Instrument):
    """A power analyzer: elements 1..n, each bound to one channel (charger conductor) or nothing."""

    kind = "power_analyzer"

    def reset(self) -> None:
        n = self.info.elements
        self.numeric_format = "ASCII"
        # default item list: U, I, P of element 1 (the rig programs its own list)
        self.items: list = [("URMS", "1"), ("IRMS", "1"), ("P", "1")] + [(None, None)] * 252
        self.number = 3
        self.readings: list = [None] * n        # (v, i, pf, f) per element
        self.wp_wh = [0.0] * n
        self.integ_state = "RESET"              # RESET | START | STOP | TIMEUP
        self.integ_timer_s = 0.0
        self.integ_mode = "NORMAL"
        self.integ_elapsed_ms = 0
        self.eesr = 0
        self.auto_range = {"VOLTAGE": [True] * n, "CURRENT": [True] * n}

    def observe(self, t_ms: int, channels: list) -> None:
        dt_ms = max(0, int(t_ms) - self.now_ms)
        super().observe(t_ms, channels)
        n = self.info.elements
        if self.integ_state == "START" and dt_ms:
            # energy over the interval at the previous readings (rectangle rule, as sampled)
            step = dt_ms
            if self.integ_timer_s > 0:
                step = min(dt_ms, max(0, int(self.integ_timer_s * 1000) - self.integ_elapsed_ms))
            for e, r in enumerate(self.readings):
                if r is not None:
                    p, _, _ = _power(r[0], r[1], r[2])
                    self.wp_wh[e] += p * step / 3.6e6
            self.integ_elapsed_ms += step
            if self.integ_timer_s > 0 and self.integ_elapsed_ms >= self.integ_timer_s * 1000:
                self.integ_state = "TIMEUP"
        self.readings = [channels[e] if e < len(channels) else None for e in range(n)]
        self.eesr |= 1                          # UPD: a fresh data set

    def integrate(self, action: str) -> None:
        if action == "START":
            if self.integ_state in ("START", "TIMEUP"):
                raise ValueError(f"integration is {self.integ_state.lower()}; reset it first")
            self.integ_state = "START"
        elif action == "STOP":
            if self.integ_state != "START":
                raise ValueError("integration is not running")
            self.integ_state = "STOP"
        elif action == "RESET":
            if self.integ_state == "START":
                raise ValueError("stop integration before reset")
            self.integ_state, self.integ_elapsed_ms = "RESET", 0
            self.wp_wh = [0.0] * self.info.elements

    def element_value(self, function: str, element: str):
        """One numeric item; None where it is unavailable (NAN)."""
        f = function.upper()
        n = self.info.elements
        if element.upper() == "SIGMA":
            idx = [e for e in range(n) if self.readings[e] is not None]
            if not idx:
                return None
            vals = [self.element_value(f, str(e + 1)) for e in idx]
            if any(v is None for v in vals):
                return None
            if f in ("P", "S", "Q", "WP"):
                return sum(vals)
            if f in ("URMS", "IRMS", "FU", "FI", "TIME"):
                return sum(vals) / len(vals)
            if f == "LAMBDA":
                s = self.element_value("S", "SIGMA")
                return (self.element_value("P", "SIGMA") / s) if s else None
            return None
        try:
            e = int(element) - 1
        except ValueError:
            return None
        if not 0 <= e < n or self.readings[e] is None:
            return None
        v, i, pf, freq = self.readings[e]
        p, s, q = _power(v, i, pf)
        return {"URMS": v, "IRMS": i, "P": p, "S": s, "Q": q, "LAMBDA": (pf if s > 0 else None),
                "FU": freq if v > 1.0 else None, "FI": freq if i > 0.05 else None,
                "WP": self.wp_wh[e], "TIME": self.integ_elapsed_ms / 1000}.get(f)

    def values(self) -> list:
        return [self.element_value(f, el) if f else None for f, el in self.items[:self.number]]

    def state(self) -> dict:
        return {**super().state(), "integration": self.integ_state, "wp_wh": list(self.wp_wh),
                "irms_a": [self.element_value("IRMS", str(e + 1)) for e in range(self.info.elements)]}


class Dmm(Instrument):
    """A DMM measuring AC current through a clamp: ``scale`` A at the input per A in the conductor."""

    kind = "dmm"

    def __init__(self, info: InstrumentModelInfo, serial: str = "SIM0001", scale: float = 1.0):
        self.scale = float(scale)
        super().__init__(info, serial)

    def reset(self) -> None:
        self.function = "CURR:AC"
        self.range_a = None           # None: autorange
        self.terminals = 3
        self.sample_count = 1
        self.input_a = 0.0
        self.input_v = 0.0
        self.trigger_buffer: list = []

    def observe(self, t_ms: int, channels: list) -> None:
        super().observe(t_ms, channels)
        ch = channels[0] if channels else None
        self.input_v = float(ch[0]) if ch else 0.0
        self.input_a = abs(float(ch[1])) * self.scale if ch else 0.0

    def set_range(self, value, *, via_conf: bool = False) -> None:
        """``CURR:AC:RANG`` (cannot select 10 A) or ``CONF:CURR:AC`` (10 A selects the 10 A terminals)."""
        if value is None:
            self.range_a = None
            return
        rng = next((r for r in DMM_AC_CURRENT_RANGES_A if r >= float(value) - 1e-12), None)
        if rng is None:
            raise ValueError(f"range {value} A above the largest range (10 A)")
        if rng == 10.0:
            if not via_conf and self.terminals != 10:
                raise ValueError("the 10 A range needs the 10 A terminals (CURR:AC:TERM 10)")
            self.terminals = 10
        self.range_a = rng

    def read_current(self) -> float:
        x = self.input_a
        if self.range_a is None:
            top = 10.0 if self.terminals == 10 else 3.0
            rng = next((r for r in DMM_AC_CURRENT_RANGES_A if r >= x and r <= top), None)
            if rng is None:
                return OVERLOAD if x > top * DMM_OVERRANGE else x
            return x
        return OVERLOAD if x > self.range_a * DMM_OVERRANGE else x

    def state(self) -> dict:
        return {**super().state(), "input_a": self.input_a, "range_a": self.range_a}


class AcSource(Instrument):
    """A single-phase AC source standing in for the grid of one site phase."""

    kind = "ac_source"
    QUES_CL_RMS = 1 << 12

    def reset(self) -> None:
        self.out = False
        self.voltage_set_v = 0.0
        self.freq_set_hz = 50.0
        self.current_limit_a = self.info.max_current_a
        # trip delay: Chroma CURR:DEL (0.5 s units, converted by the server), default 0; the
        # AC6800 reduces its voltage "for a set period" before turning off: 3 s here
        self.limit_delay_s = 3.0 if self.info.family == "keysight_ac6800" else 0.0
        self.load_a = 0.0
        self.pf = 1.0
        self.ques = 0
        self.tripped = False
        self._over_since = None

    @property
    def output_on(self) -> bool:
        return self.out

    def safe_off(self) -> None:
        self.out = False
        self.load_a = 0.0

    def set_output(self, on: bool) -> None:
        self.out = bool(on)
        if on:
            self.tripped = False
            self._over_since = None
        else:
            self.load_a = 0.0

    def set_voltage(self, v: float) -> None:
        if not 0.0 <= v <= 300.0:
            raise ValueError(f"voltage {v} V outside 0..300 V")
        self.voltage_set_v = float(v)

    def set_frequency(self, f: float) -> None:
        if not 40.0 <= f <= 1000.0:
            raise ValueError(f"frequency {f} Hz outside 40..1000 Hz")
        self.freq_set_hz = float(f)

    def set_current_limit(self, a: float) -> None:
        if not 0.0 <= a <= self.info.max_current_a:
            raise ValueError(f"current limit {a} A outside 0..{self.info.max_current_a} A")
        self.current_limit_a = float(a)

    def observe(self, t_ms: int, channels: list) -> None:
        super().observe(t_ms, channels)
        ch = channels[0] if channels else None
        if not self.out:
            self.load_a = 0.0
            return
        self.load_a = abs(float(ch[1])) if ch else 0.0
        self.pf = float(ch[2]) if ch else 1.0
        if self.load_a > self.current_limit_a:
            self.ques |= self.QUES_CL_RMS
            self._over_since = t_ms if self._over_since is None else self._over_since
            if t_ms - self._over_since >= self.limit_delay_s * 1000:
                self.tripped = True
                self.safe_off()
        else:
            self._over_since = None

    def supply_v(self) -> float:
        """The voltage this source gives its circuit phase: the set-point, 0 with the output off."""
        return self.voltage_set_v if self.out else 0.0

    def measure(self) -> dict:
        v = self.voltage_set_v if self.out else 0.0
        i = self.load_a if self.out else 0.0
        p, s, q = _power(v, i, self.pf)
        return {"voltage_v": v, "current_a": i, "power_w": p, "apparent_va": s, "reactive_var": q,
                "pf": self.pf if i > 0 else 0.0, "freq_hz": self.freq_set_hz,
                "peak_a": i * math.sqrt(2), "crest": math.sqrt(2) if i > 0 else 0.0}

    def state(self) -> dict:
        return {**super().state(), "voltage_set_v": self.voltage_set_v, "limit_a": self.current_limit_a,
                "tripped": self.tripped, **self.measure()}


#: What an EV simulator can do (``*OPT?``): pilot states, diode fault, DC / AC residual current
#: injection, a controllable load, the time-stamped event log.
EVSIM_OPTIONS = ("CP", "DIODE", "RCDDC", "RCDAC", "LOAD", "LOG")
EVSIM_CP_STATES = ("A", "B", "C", "D", "E")
EVSIM_LOG_DEPTH = 10_000


@dataclass(frozen=True)
class EvSimStimulus:
    """What the EV simulator presents to the charger (the settings the bench applies)."""

    cp: str = "A"              # A (unplugged) | B | C | D | E (CP-PE short)
    diode: bool = True         # False: diode fault (no -12 V half-wave)
    rcd_dc_ma: float = 0.0
    rcd_ac_ma: float = 0.0
    load_on: bool = False
    load_a: float = 0.0        # per conductor
    load_mode: str = "FOLL"    # FOLL: min(load_a, the PWM's current); FIX: load_a regardless of the PWM
    phases: int = 3


class EvSimulator(Instrument):
    """The EV side of one charger, with its own time-stamped event log (see the module docstring).

    The settings (:attr:`cp`, :attr:`diode`, ...) are what the remote interface last asked for;
    the bench applies them to the charger at its next physics tick and calls :meth:`applied`
    with that instant, which is when the stimulus is logged (the charger sees it then too).
    """

    kind = "ev_simulator"

    def __init__(self, info: InstrumentModelInfo, serial: str = "SIM0001", options=None):
        self.options = tuple(options) if options is not None else EVSIM_OPTIONS
        self.log: deque = deque()
        self.log_overflow = 0
        self._applied = EvSimStimulus()
        self._sensed = (False, 100.0, False)        # contactor closed, duty %, state F
        super().__init__(info, serial)

    def reset(self) -> None:
        self.cp = "A"
        self.diode = True
        self.rcd_dc_ma = 0.0
        self.rcd_ac_ma = 0.0
        self.load_on = False
        self.load_a = 0.0
        self.load_mode = "FOLL"
        self.load_limit_a = self.info.max_current_a
        self.phases = 3
        # live measurements (the sensors)
        self.outlet_v = 0.0
        self.drawn_a = 0.0

    def has(self, option: str) -> bool:
        return option in self.options

    # -- settings ---------------------------------------------------------------------------------
    def set_cp(self, state: str) -> None:
        s = state.strip().upper()
        if s not in EVSIM_CP_STATES:
            raise ValueError(f"CP state {state!r} outside {'|'.join(EVSIM_CP_STATES)}")
        self.cp = s

    def set_load_current(self, amps: float) -> None:
        if not 0.0 <= amps <= self.load_limit_a:
            raise ValueError(f"load current {amps} A outside 0..{self.load_limit_a:g} A (LOAD:CURR:PROT)")
        self.load_a = float(amps)

    def set_load_limit(self, amps: float) -> None:
        if not 0.0 <= amps <= self.info.max_current_a:
            raise ValueError(f"load protection {amps} A outside 0..{self.info.max_current_a:g} A")
        self.load_limit_a = float(amps)
        self.load_a = min(self.load_a, self.load_limit_a)

    def set_rcd(self, kind: str, ma: float) -> None:
        if not 0.0 <= ma <= 500.0:
            raise ValueError(f"residual current {ma} mA outside 0..500 mA")
        setattr(self, "rcd_dc_ma" if kind == "DC" else "rcd_ac_ma", float(ma))

    @property
    def output_on(self) -> bool:
        return self.cp != "A" or self.load_on or self.rcd_dc_ma > 0 or self.rcd_ac_ma > 0 or not self.diode

    def safe_off(self) -> None:
        """CP state A (unplugged), diode present, no residual current, load off."""
        self.cp, self.diode, self.rcd_dc_ma, self.rcd_ac_ma, self.load_on = "A", True, 0.0, 0.0, False

    def stimulus(self) -> EvSimStimulus:
        """The settings as the bench should apply them now."""
        return EvSimStimulus(self.cp, self.diode, self.rcd_dc_ma, self.rcd_ac_ma, self.load_on,
                             self.load_a, self.load_mode, self.phases)

    # -- the event log ----------------------------------------------------------------------------
    def _log(self, t_ms: int, kind: str, value) -> None:
        if len(self.log) >= EVSIM_LOG_DEPTH:
            self.log.popleft()
            self.log_overflow += 1
        self.log.append((int(t_ms), kind, value))

    def applied(self, t_ms: int, stim: EvSimStimulus) -> None:
        """The bench applied ``stim`` to the charger at ``t_ms``: log what changed."""
        old = self._applied
        self.now_ms = max(self.now_ms, int(t_ms))
        if stim.diode != old.diode:
            self._log(t_ms, "DIODE", int(stim.diode))
        if stim.rcd_dc_ma != old.rcd_dc_ma:
            self._log(t_ms, "RCDDC", stim.rcd_dc_ma)
        if stim.rcd_ac_ma != old.rcd_ac_ma:
            self._log(t_ms, "RCDAC", stim.rcd_ac_ma)
        if stim.load_mode != old.load_mode:
            self._log(t_ms, "LMODE", stim.load_mode)
        load, old_load = (stim.load_a if stim.load_on else 0.0), (old.load_a if old.load_on else 0.0)
        if load != old_load:
            self._log(t_ms, "LOAD", load)
        if stim.cp != old.cp:
            self._log(t_ms, "CP", stim.cp)
        self._applied = stim

    def sense(self, t_ms: int, contactor_closed: bool, duty_pct: float, state_f: bool) -> None:
        """What the outlet and pilot sensors see from ``t_ms`` on: log every change."""
        c0, d0, f0 = self._sensed
        if contactor_closed != c0:
            self._log(t_ms, "CONTACTOR", int(contactor_closed))
        if duty_pct != d0:
            self._log(t_ms, "PWM", round(float(duty_pct), 3))
        if state_f != f0:
            self._log(t_ms, "STATEF", int(state_f))
        self._sensed = (bool(contactor_closed), float(duty_pct), bool(state_f))

    def take_events(self, limit: int = 100) -> list:
        """The oldest ``limit`` events, removed from the log."""
        out = []
        while self.log and len(out) < limit:
            out.append(self.log.popleft())
        return out

    @property
    def duty_pct(self) -> float:
        return self._sensed[1]

    @property
    def contactor_closed(self) -> bool:
        return self._sensed[0]

    def charger_state(self) -> str:
        """The pilot as the EV side sees it: F, or the EV's letter with 1 (no PWM) / 2 (PWM)."""
        c, d, f = self._sensed
        a = self._applied.cp
        if f:
            return "F"
        if a in ("A", "E"):
            return a
        return a + ("2" if d < 100.0 else "1")

    def observe(self, t_ms: int, channels: list) -> None:
        super().observe(t_ms, channels)
        ch = channels[0] if channels else None
        self.outlet_v = float(ch[0]) if ch is not None and self.contactor_closed else 0.0
        self.drawn_a = abs(float(ch[1])) if ch is not None else 0.0

    def state(self) -> dict:
        return {**super().state(), "cp": self.cp, "charger_state": self.charger_state(),
                "duty_pct": self.duty_pct, "contactor": self.contactor_closed, "drawn_a": self.drawn_a,
                "events": len(self.log)}


_CLASSES = {"eload": ElectronicLoad, "power_analyzer": PowerAnalyzer, "dmm": Dmm, "ac_source": AcSource,
            "ev_simulator": EvSimulator}


def make_instrument(model_key: str, serial: str = "SIM0001", **kw) -> Instrument:
    """A model by its catalog key (:data:`INSTRUMENT_MODELS`)."""
    try:
        info = INSTRUMENT_MODELS[model_key]
    except KeyError:
        raise KeyError(f"unknown instrument model {model_key!r} (known: {', '.join(INSTRUMENT_MODELS)})") from None
    return _CLASSES[info.kind](info, serial, **kw)
