"""Instrument drivers over pyvisa (pyvisa-py backend): the same code for emulated and real instruments.

Resources are VISA strings, ``TCPIP0::host::port::SOCKET`` for a raw SCPI socket, with ``\\n``
read and write termination.  One driver class per instrument kind, with the model-specific command
set chosen from ``*IDN?`` (:func:`identify`, :func:`open_driver`).  Every driver reads a response
before it sends the next command (pyvisa's ``query``), which is what the instruments require.

Bench safety lives here too: :meth:`InstrumentDriver.set_protection` programs the protection
limits (OCP / OPP / current limit) and :meth:`enable_output` refuses unless the driver was armed
and its protection was set first; :meth:`safe_off` turns the output off and never raises.
"""
from __future__ import annotations

import math
import re
import threading
from dataclasses import dataclass

__all__ = ["VisaError", "NotArmed", "Identity", "identify", "open_driver", "ElectronicLoadDriver",
           "PowerAnalyzerDriver", "DmmDriver", "AcSourceDriver", "EvSimulatorDriver", "parse_resource",
           "is_loopback_resource"]

DEFAULT_TIMEOUT_MS = 2000


class VisaError(RuntimeError):
    """An instrument did not answer, answered garbage, or reported an error."""


class NotArmed(RuntimeError):
    """An instrument output was to be enabled (or a non-loopback instrument written) without --arm."""


_RESOURCE = re.compile(r"^TCPIP\d*::([^:]+)::(\d+)::SOCKET$", re.IGNORECASE)


def parse_resource(resource: str) -> tuple:
    """``TCPIP0::host::port::SOCKET`` -> (host, port); ValueError naming the problem otherwise."""
    m = _RESOURCE.match(resource.strip())
    if not m:
        raise ValueError(f"{resource!r} is not a VISA socket resource (TCPIP0::host::port::SOCKET)")
    port = int(m.group(2))
    if not 0 < port < 65536:
        raise ValueError(f"{resource!r}: port {port} outside 1..65535")
    return m.group(1), port


def is_loopback_resource(resource: str) -> bool:
    import ipaddress
    try:
        host, _ = parse_resource(resource)
    except ValueError:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_rm_lock = threading.Lock()
_rm = None


def resource_manager():
    global _rm
    with _rm_lock:
        if _rm is None:
            import pyvisa
            _rm = pyvisa.ResourceManager("@py")
        return _rm


@dataclass
class Identity:
    resource: str
    vendor: str
    model: str
    serial: str
    firmware: str
    kind: str | None          # eload | power_analyzer | dmm | ac_source | ev_simulator | None (unknown)
    family: str | None

    @property
    def idn(self) -> str:
        return f"{self.vendor},{self.model},{self.serial},{self.firmware}"


def _classify(vendor: str, model: str) -> tuple:
    v, m = vendor.upper(), model.upper()
    if "CHROMA" in v and m.startswith("638"):
        return "eload", "chroma63800"
    if "ITECH" in v and m.startswith("IT86"):
        return "eload", "itech8600"
    if "YOKOGAWA" in v and m.startswith("WT"):
        return "power_analyzer", "yokogawa_wt"
    if ("KEYSIGHT" in v or "AGILENT" in v) and m.startswith(("3446", "3447")):
        return "dmm", "keysight34465a"
    if "CHROMA" in v and m.startswith(("615", "616")):
        return "ac_source", "chroma61500"
    if "KEYSIGHT" in v and m.startswith("AC68"):
        return "ac_source", "keysight_ac6800"
    if ("KEYSIGHT" in v and m.startswith(("SL104",))) or ("COMEMSO" in v and m.startswith("EPTS")):
        return "ev_simulator", "evsim"
    return None, None


def _open(resource: str, timeout_ms: int):
    parse_resource(resource)
    import pyvisa
    try:
        res = resource_manager().open_resource(resource, read_termination="\n", write_termination="\n",
                                               timeout=timeout_ms)
    except (pyvisa.errors.VisaIOError, OSError) as exc:
        raise VisaError(f"{resource}: cannot open: {exc}") from exc
    return res


def identify(resource: str, timeout_ms: int = DEFAULT_TIMEOUT_MS) -> Identity:
    """Ask ``*IDN?`` at a resource and classify the answer."""
    res = _open(resource, timeout_ms)
    try:
        idn = _query(res, resource, "*IDN?")
    finally:
        res.close()
    parts = [p.strip() for p in idn.split(",")]
    if len(parts) < 2:
        raise VisaError(f"{resource}: *IDN? answered {idn!r}, not vendor,model,serial,firmware")
    parts += [""] * (4 - len(parts))
    kind, family = _classify(parts[0], parts[1])
    return Identity(resource, parts[0], parts[1], parts[2], parts[3], kind, family)


def _query(res, resource: str, cmd: str) -> str:
    import pyvisa
    try:
        return res.query(cmd).strip()
    except (pyvisa.errors.VisaIOError, OSError) as exc:
        raise VisaError(f"{resource}: {cmd!r}: {exc}") from exc


def _float(resource, cmd, text) -> float | None:
    t = text.strip()
    if t.upper() in ("NAN", "INF", "-INF"):
        return None
    try:
        v = float(t)
    except ValueError:
        raise VisaError(f"{resource}: {cmd!r} answered {text!r}, not a number") from None
    return None if abs(v) >= 9.9e37 else v


class InstrumentDriver:
    kind = ""

    def __init__(self, resource: str, family: str, *, armed: bool = False, timeout_ms: int = DEFAULT_TIMEOUT_MS,
                 res=None):
        self.resource, self.family, self.armed = resource, family, armed
        self.loopback = res is not None or is_loopback_resource(resource)
        self.res = res if res is not None else _open(resource, timeout_ms)
        self.protection_set = False
        self.lock = threading.Lock()

    # -- transport ------------------------------------------------------------------------------
    def write(self, cmd: str) -> None:
        if not self.loopback and not self.armed:
            raise NotArmed(f"refusing to write {cmd!r} to {self.resource} (a non-loopback instrument) "
                           f"without --arm")
        import pyvisa
        with self.lock:
            try:
                self.res.write(cmd)
            except (pyvisa.errors.VisaIOError, OSError) as exc:
                raise VisaError(f"{self.resource}: {cmd!r}: {exc}") from exc

    def query(self, cmd: str) -> str:
        with self.lock:
            return _query(self.res, self.resource, cmd)

    def query_float(self, cmd: str) -> float | None:
        return _float(self.resource, cmd, self.query(cmd))

    def idn(self) -> str:
        return self.query("*IDN?")

    def errors(self) -> list:
        """Drain ``SYST:ERR?`` (at most 32 entries): [(code, message)]."""
        out = []
        for _ in range(32):
            text = self.query("SYST:ERR?")
            code_s, _, msg = text.partition(",")
            try:
                code = int(code_s)
            except ValueError:
                raise VisaError(f"{self.resource}: SYST:ERR? answered {text!r}") from None
            if code == 0:
                break
            out.append((code, msg.strip('"')))
        return out

    def check(self, what: str) -> None:
        errs = self.errors()
        if errs:
            raise VisaError(f"{self.resource}: {what}: " + "; ".join(f"{c} {m}" for c, m in errs))

    def close(self) -> None:
        try:
            self.res.close()
        except Exception:
            pass

    # -- safety ---------------------------------------------------------------------------------
    def _require_output_allowed(self):
        if not self.armed:
            raise NotArmed(f"refusing to enable the output of {self.resource} without --arm")
        if not self.protection_set:
            raise NotArmed(f"refusing to enable the output of {self.resource} before its protection "
                           f"limits are set")

    def set_protection(self, **limits) -> None:
        self.protection_set = True

    def enable_output(self) -> None:
        self._require_output_allowed()

    def output_on(self) -> bool:
        return False

    def safe_off(self) -> bool:
        """Output off; True when the instrument confirmed.  Never raises (exit paths call it)."""
        return True


class ElectronicLoadDriver(InstrumentDriver):
    kind = "eload"

    def set_protection(self, *, current_a: float, power_w: float | None = None) -> None:
        if self.family == "chroma63800":
            # the 63800's OCP / OPP are fixed by the model; the programmable ceiling is the peak current
            self.write(f":LOAD:CURR:PEAK:MAX {current_a * math.sqrt(2):.3f}")
        else:
            self.write(f"CURR:PROT {current_a:.3f}")
            self.write("CURR:PROT:STAT ON")
            if power_w is not None:
                self.write(f"POW:PROT {power_w:.1f}")
        self.check("set protection")
        self.protection_set = True

    def configure_cc(self, ac: bool = True) -> None:
        if self.family == "chroma63800":
            self.write(":LOAD:MODE CURR")
        else:
            self.write("SYST:REM")
            self.write(f"SYST:MODE {'AC' if ac else 'DC'}")
            self.write("SOUR:FUNC CURR")
        self.check("configure CC")

    def set_current(self, amps: float) -> None:
        self.write(f":LOAD:CURR {amps:.3f}" if self.family == "chroma63800" else f"SOUR:CURR {amps:.3f}")

    def enable_output(self) -> None:
        self._require_output_allowed()
        self.write(":LOAD 1" if self.family == "chroma63800" else "INP:STAT ON")
        self.check("input on")

    def output_on(self) -> bool:
        return self.query(":LOAD?" if self.family == "chroma63800" else "INP:STAT?").strip() in ("1", "ON")

    def safe_off(self) -> bool:
        try:
            self.write(":LOAD 0" if self.family == "chroma63800" else "INP:STAT OFF")
            return not self.output_on()
        except Exception:
            return False

    def protection(self) -> int:
        return int(self.query(":LOAD:PROT?" if self.family == "chroma63800" else "STAT:QUES?"))

    def clear_protection(self) -> None:
        self.write(":LOAD:PROT:CLE" if self.family == "chroma63800" else "PROT:CLE")

    def measure(self) -> dict:
        if self.family == "chroma63800":
            cmds = {"voltage_v": ":MEAS:VOLT?", "current_a": ":MEAS:CURR?", "power_w": ":MEAS:POW?"}
        else:
            cmds = {"voltage_v": "MEAS:VOLT:RMS?", "current_a": "MEAS:CURR:RMS?", "power_w": "MEAS:POW?"}
        return {k: self.query_float(c) for k, c in cmds.items()}


class PowerAnalyzerDriver(InstrumentDriver):
    kind = "power_analyzer"
    FUNCTIONS = ("URMS", "IRMS", "P", "LAMBDA", "WP")

    def configure(self, elements: list) -> None:
        """Items: URMS, IRMS, P, LAMBDA, WP of each listed element, in that order."""
        self.elements = list(elements)
        items = [(f, e) for e in self.elements for f in self.FUNCTIONS]
        self.write(":NUMERIC:FORMAT ASCII")
        self.write(f":NUMERIC:NORMAL:NUMBER {len(items)}")
        self.write(":NUMERIC:NORMAL:" + ";".join(f"ITEM{k + 1} {f},{e}" for k, (f, e) in enumerate(items)))
        self.write(":INPUT:VOLTAGE:AUTO:ALL ON;:INPUT:CURRENT:AUTO:ALL ON")
        self.check("configure numeric items")

    def start_integration(self) -> None:
        self.write(":INTEGRATE:MODE NORMAL")
        self.write(":INTEGRATE:TIMER 0")
        state = self.query(":INTEGRATE:STATE?").upper()
        if state.startswith("STAR"):
            self.write(":INTEGRATE:STOP")
        self.write(":INTEGRATE:RESET")
        self.write(":INTEGRATE:START")
        self.check("start integration")

    def read(self) -> dict:
        """element -> {"urms", "irms", "p", "lambda", "wp"} (None where the analyzer says NAN)."""
        text = self.query(":NUMERIC:NORMAL:VALUE?")
        vals = [_float(self.resource, "VALUE?", x) for x in text.split(",")]
        n = len(self.FUNCTIONS)
        if len(vals) != n * len(self.elements):
            raise VisaError(f"{self.resource}: VALUE? gave {len(vals)} values, expected {n * len(self.elements)}")
        return {e: dict(zip(("urms", "irms", "p", "lambda", "wp"), vals[k * n:(k + 1) * n]))
                for k, e in enumerate(self.elements)}


class DmmDriver(InstrumentDriver):
    kind = "dmm"

    def __init__(self, *a, scale: float = 1.0, **kw):
        super().__init__(*a, **kw)
        self.scale = float(scale)

    def ac_current(self, range_a="AUTO") -> float | None:
        """Conductor current (A) from the clamp's secondary; None on overload."""
        v = self.query_float(f"MEAS:CURR:AC? {range_a}")
        return None if v is None else v / self.scale


class AcSourceDriver(InstrumentDriver):
    kind = "ac_source"

    def set_protection(self, *, current_a: float, delay_s: float = 0.0) -> None:
        if self.family == "chroma61500":
            self.write(f"CURR:LIM {current_a:.3f}")
            self.write(f"CURR:DEL {min(5.0, delay_s / 0.5):.1f}")
        else:
            self.write(f"CURR {current_a:.3f}")
            self.write("CURR:PROT:STAT ON")
        self.check("set current limit")
        self.protection_set = True

    def set_voltage(self, v: float, f: float = 50.0) -> None:
        self.write(f"VOLT {v:.2f}")
        self.write(f"FREQ {f:.2f}")
        self.check("set voltage / frequency")

    def enable_output(self) -> None:
        self._require_output_allowed()
        self.write("OUTP ON")
        self.check("output on")

    def output_on(self) -> bool:
        return self.query("OUTP?").strip() in ("1", "ON")

    def safe_off(self) -> bool:
        try:
            self.write("OUTP OFF")
            return not self.output_on()
        except Exception:
            return False

    def measure(self) -> dict:
        return {"voltage_v": self.query_float("MEAS:VOLT:AC?"), "current_a": self.query_float("MEAS:CURR:AC?")}


class EvSimulatorDriver(InstrumentDriver):
    """An EV-side simulator (README "EV simulator"): the EV of one charger, with its own
    time-stamped event log.  Its "outputs" are everything that acts on the charger: a pilot state
    other than A, a diode fault, residual current, the load; they need ``armed`` and the load's
    protection (:meth:`set_protection`) first, like any output.  :meth:`safe_off` returns it to
    CP state A, diode present, no injection, load off."""

    kind = "ev_simulator"

    def options(self) -> tuple:
        return tuple(x.strip().upper() for x in self.query("*OPT?").split(",") if x.strip())

    def set_protection(self, *, current_a: float) -> None:
        """The load's current limit (A per conductor), capped at the instrument's rating."""
        if "LOAD" in self.options():
            rating = self.query_float("LOAD:CURR:PROT:MAX?")
            self.write(f"LOAD:CURR:PROT {min(current_a, rating if rating is not None else current_a):.3f}")
        self.check("set load protection")
        self.protection_set = True

    def set_cp(self, state: str) -> None:
        state = state.upper()
        if state != "A":
            self._require_output_allowed()
        self.write(f"CP:STAT {state}")
        self.check(f"CP state {state}")

    def set_diode(self, present: bool) -> None:
        if not present:
            self._require_output_allowed()
        self.write(f"CP:DIOD {'ON' if present else 'OFF'}")
        self.check("diode")

    def set_residual(self, *, dc_ma: float | None = None, ac_ma: float | None = None) -> None:
        if (dc_ma or 0) > 0 or (ac_ma or 0) > 0:
            self._require_output_allowed()
        if dc_ma is not None:
            self.write(f"RCD:DC {dc_ma / 1000:.6f}")
        if ac_ma is not None:
            self.write(f"RCD:AC {ac_ma / 1000:.6f}")
        self.check("residual current")

    def set_load(self, amps: float, *, mode: str = "FOLL", on: bool = True, phases: int = 3) -> None:
        """The draw per conductor: ``FOLL`` min(amps, what the PWM allows), ``FIX`` amps whatever
        the PWM says (overcurrent tests)."""
        if on:
            self._require_output_allowed()
        self.write(f"LOAD:MODE {mode};:LOAD:PHAS {int(phases)};:LOAD:CURR {amps:.3f};:LOAD {'ON' if on else 'OFF'}")
        self.check("load")

    def clock_ms(self) -> int:
        """The instrument's time base (ms) of its event log."""
        return int(float(self.query("SYST:CLOC?")))

    def events(self) -> list:
        """Drain the event log: [(t_ms, kind, value)] oldest first (value: float, or a string)."""
        out = []
        for _ in range(1000):
            text = self.query("EVEN:DATA? 100")
            parts = [p.strip() for p in text.split(",")]
            try:
                n = int(parts[0])
            except (ValueError, IndexError):
                raise VisaError(f"{self.resource}: EVEN:DATA? answered {text!r}") from None
            if len(parts) != 1 + 3 * n:
                raise VisaError(f"{self.resource}: EVEN:DATA? gave {len(parts)} fields for {n} events")
            for k in range(n):
                t, kind, val = parts[1 + 3 * k:4 + 3 * k]
                try:
                    v = float(val)
                except ValueError:
                    v = val
                out.append((int(t), kind.upper(), v))
            if n < 100:
                break
        return out

    def measure(self) -> dict:
        return {"cp": self.query("MEAS:CP?"), "duty_pct": self.query_float("MEAS:PWM:DUTY?"),
                "contactor": self.query("MEAS:CONT?").strip() in ("1", "ON"),
                "current_a": self.query_float("MEAS:CURR?")}

    def output_on(self) -> bool:
        text = self.query("CP:STAT?;:CP:DIOD?;:RCD:DC?;:RCD:AC?;:LOAD?")
        cp, diode, dc, ac, load = [x.strip() for x in text.split(";")]
        return cp.upper() != "A" or diode not in ("1", "ON") or float(dc) > 0 or float(ac) > 0 or load in ("1", "ON")

    def safe_off(self) -> bool:
        """CP A, diode present, no residual current, load off; True when confirmed.  Never raises.
        Each step separately, so an instrument without an option still ends as safe as it can."""
        ok = True
        for cmd in ("LOAD OFF", "RCD:DC 0", "RCD:AC 0", "CP:STAT A", "CP:DIOD ON"):
            try:
                self.write(cmd)
            except Exception:
                ok = False
        try:
            self.errors()           # -241 for an option it does not have: nothing to switch off
            opts = self.options()
            q = []
            if "CP" in opts:
                q.append(self.query("CP:STAT?").strip().upper() == "A")
            if "LOAD" in opts:
                q.append(self.query("LOAD?").strip() in ("0", "OFF"))
            if "RCDDC" in opts:
                q.append(float(self.query("RCD:DC?")) == 0)
            if "RCDAC" in opts:
                q.append(float(self.query("RCD:AC?")) == 0)
            return ok and all(q)
        except Exception:
            return False


_DRIVERS = {"eload": ElectronicLoadDriver, "power_analyzer": PowerAnalyzerDriver, "dmm": DmmDriver,
            "ac_source": AcSourceDriver, "ev_simulator": EvSimulatorDriver}


class DirectResource:
    """A pyvisa-like resource that executes SCPI text on an instrument model in this process: the
    same drivers and command sets as over a socket, without the socket (fast mode)."""

    def __init__(self, model):
        from .commands import command_set
        self.model = model
        self.commands = command_set(model.info.family)

    def _execute(self, cmd: str):
        from ...firmware_sim.instruments import ScpiErr
        try:
            return self.commands.execute(self.model, cmd)
        except Exception as exc:      # as the server: a handler bug only queues an error
            self.model.push_error(ScpiErr.EXECUTION, f"{type(exc).__name__}: {exc}")
            return None

    def write(self, cmd: str) -> None:
        self._execute(cmd)

    def query(self, cmd: str) -> str:
        r = self._execute(cmd)
        return "" if r is None else r

    def close(self) -> None:
        pass


def direct_driver(model, *, armed: bool = False, **kw) -> "InstrumentDriver":
    """A driver on an instrument model in this process (``DIRECT::<serial>``; no VISA, no socket)."""
    return _DRIVERS[model.kind](f"DIRECT::{model.serial}", model.info.family, armed=armed,
                                res=DirectResource(model), **kw)


def open_driver(resource: str, *, armed: bool = False, expect_kind: str | None = None,
                timeout_ms: int = DEFAULT_TIMEOUT_MS, **kw) -> InstrumentDriver:
    """Identify the instrument at ``resource`` and open the matching driver."""
    ident = identify(resource, timeout_ms)
    if ident.kind is None:
        raise VisaError(f"{resource}: {ident.idn!r} is not an instrument dlbrig has a driver for")
    if expect_kind is not None and ident.kind != expect_kind:
        raise VisaError(f"{resource}: expected a {expect_kind}, found {ident.vendor} {ident.model} ({ident.kind})")
    drv = _DRIVERS[ident.kind](resource, ident.family, armed=armed, timeout_ms=timeout_ms, **kw)
    drv.identity = ident
    return drv
