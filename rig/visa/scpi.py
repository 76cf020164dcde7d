"""SCPI program-message parsing and the command tree machinery the emulated instruments share.

A command is registered with its header as instrument manuals write it: long form with the short
form in capitals, optional nodes in brackets, a numeric suffix as ``<n>``:
``[SOURce:]CURRent:PROTection[:LEVel]``, ``:NUMeric:NORMal:ITEM<n>``.  Matching follows SCPI-99:
each node matches its short or its long form, case-insensitively, nothing in between.

A program message is one line: message units separated by ``;``; after a ``;`` a header without a
leading ``:`` is first tried relative to the previous unit's path (so
``:NUM:NORM:ITEM1 URMS,1;ITEM2 IRMS,1`` works, IEEE 488.2 section 7.6.1.5), then from the root.
Responses of the queries of one message are joined with ``;``.  Every problem becomes an entry in
the instrument's error queue (never an exception out of :meth:`CommandSet.execute`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Optional

from ...firmware_sim.instruments import Instrument, ScpiErr

__all__ = ["ScpiError", "CommandSet", "parse_number", "parse_bool", "nr3", "split_units", "common_commands"]


class ScpiError(Exception):
    """Raised by a handler: goes into the error queue as ``code,"message;detail"``."""

    def __init__(self, err: tuple, detail: str = ""):
        super().__init__(f"{err[0]} {err[1]}: {detail}")
        self.err, self.detail = err, detail


_NUMBER = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*([A-Za-z]*)$")


def _node_regex(word: str, suffix: bool) -> str:
    short = "".join(ch for ch in word if ch.isupper() or not ch.isalpha())
    long_ = word.upper()
    alts = {short, long_} if short else {long_}
    body = "(?:" + "|".join(re.escape(a) for a in sorted(alts, key=len, reverse=True)) + ")"
    return body + ("(\\d*)" if suffix else "")


def _spec_nodes(spec: str) -> list:
    """``[SOURce:]CURRent[:LEVel]`` -> [("SOURce", True), ("CURRent", False), ("LEVel", True)]."""
    nodes, pos = [], 0
    while pos < len(spec):
        ch = spec[pos]
        if ch == ":":
            pos += 1
            continue
        if ch == "[":
            end = spec.index("]", pos)
            inner = spec[pos + 1:end].strip(":")
            if ":" in inner:
                raise ValueError(f"one node per optional group in {spec!r}")
            nodes.append((inner, True))
            pos = end + 1
            continue
        end = pos
        while end < len(spec) and spec[end] not in ":[":
            end += 1
        nodes.append((spec[pos:end], False))
        pos = end
    return nodes


def compile_header(spec: str) -> re.Pattern:
    """``[SOURce:]CURRent:PROTection[:LEVel]`` -> a regex over a header written with a leading ':'."""
    parts = []
    for word, optional in _spec_nodes(spec):
        suffix = word.endswith("<n>")
        word = word[:-3] if suffix else word
        if not re.fullmatch(r"\*?[A-Za-z]+", word):
            raise ValueError(f"bad node {word!r} in header spec {spec!r}")
        node = ":" + _node_regex(word, suffix)
        parts.append(f"(?:{node})?" if optional else node)
    return re.compile("^" + "".join(parts) + "$", re.IGNORECASE)


@dataclass
class _Entry:
    spec: str
    regex: re.Pattern
    write: Optional[Callable] = None     # (inst, args, suffixes) -> None
    query: Optional[Callable] = None     # (inst, args, suffixes) -> str


def nr3(x) -> str:
    """An NR3 number as Keysight and Chroma print it; ``None`` -> NAN (SCPI's 9.91E37 is the
    binary NaN; the ASCII answer of a Yokogawa analyzer for an unavailable item is ``NAN``)."""
    if x is None:
        return "NAN"
    return f"{float(x):+.8E}"


def parse_number(text: str, *, lo: float | None = None, hi: float | None = None, default: float | None = None,
                 unit: str = "") -> float:
    t = text.strip().upper()
    if t in ("MIN", "MINIMUM") and lo is not None:
        return lo
    if t in ("MAX", "MAXIMUM") and hi is not None:
        return hi
    if t in ("DEF", "DEFAULT") and default is not None:
        return default
    m = _NUMBER.match(text.strip())
    if not m:
        raise ScpiError((-104, "Data type error"), f"expected a number, got {text!r}")
    suffix = m.group(2).upper()
    scale = 1.0
    if suffix:
        base = unit.upper()
        prefixes = {"": 1.0, "M": 1e-3, "U": 1e-6, "K": 1e3, "MA": 1e6}
        if base and suffix.endswith(base) and suffix[:-len(base)] in prefixes:
            scale = prefixes[suffix[:-len(base)]]
        else:
            raise ScpiError((-131, "Invalid suffix"), f"{m.group(2)!r}")
    v = float(m.group(1)) * scale
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise ScpiError(ScpiErr.OUT_OF_RANGE, f"{v:g} outside {lo:g}..{hi:g}")
    return v


def parse_bool(text: str) -> bool:
    t = text.strip().upper()
    if t in ("ON", "1"):
        return True
    if t in ("OFF", "0"):
        return False
    raise ScpiError(ScpiErr.ILLEGAL_VALUE, f"expected ON|OFF|1|0, got {text!r}")


def split_units(line: str) -> list:
    """Split a program message on ``;`` outside quoted strings."""
    out, cur, quote = [], [], None
    for ch in line:
        if quote:
            cur.append(ch)
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
            cur.append(ch)
        elif ch == ";":
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return out


def _split_params(text: str) -> list:
    if not text.strip():
        return []
    out, cur, quote = [], [], None
    for ch in text:
        if quote:
            if ch == quote:
                quote = None
            else:
                cur.append(ch)
        elif ch in "\"'":
            quote = ch
        elif ch == ",":
            out.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur).strip())
    return out


class CommandSet:
    """A command tree: headers -> handlers over one instrument model."""

    def __init__(self, name: str):
        self.name = name
        self.entries: list[_Entry] = []

    def add(self, spec: str, write: Callable | None = None, query: Callable | None = None) -> "CommandSet":
        self.entries.append(_Entry(spec, compile_header(spec), write, query))
        return self

    def extend(self, other: "CommandSet") -> "CommandSet":
        self.entries.extend(other.entries)
        return self

    def _find(self, header: str):
        for e in self.entries:
            m = e.regex.match(":" + header.lstrip(":"))
            if m:
                return e, [int(g) if g else 1 for g in m.groups()]
        return None, None

    def execute(self, inst: Instrument, message: str) -> Optional[str]:
        """Run one program message; returns the response message (without terminator) or None
        when the message had no query.  Errors go to the instrument's error queue."""
        responses = []
        prefix = ""
        for unit in split_units(message):
            unit = unit.strip()
            if not unit:
                continue
            head, _, rest = unit.partition(" ")
            if "\t" in head:
                head, _, more = head.partition("\t")
                rest = more + " " + rest
            is_query = head.endswith("?")
            bare = head[:-1] if is_query else head
            if not re.fullmatch(r":?\*?[A-Za-z][A-Za-z0-9]*(:[A-Za-z][A-Za-z0-9]*)*", bare or ""):
                inst.push_error(ScpiErr.SYNTAX, f"{head!r}")
                continue
            candidates = []
            if bare.startswith(":") or bare.startswith("*"):
                candidates.append(bare.lstrip(":"))
            else:
                if prefix:
                    candidates.append(prefix + bare)
                candidates.append(bare)
            entry = suffixes = None
            used = ""
            for cand in candidates:
                entry, suffixes = self._find(cand.upper())
                if entry is not None:
                    used = cand
                    break
            if entry is None:
                inst.push_error(ScpiErr.UNDEFINED_HEADER, f"{head!r}")
                continue
            if not bare.startswith("*"):
                nodes = used.split(":")
                prefix = ":".join(nodes[:-1]) + ":" if len(nodes) > 1 else ""
            args = _split_params(rest)
            try:
                if is_query:
                    if entry.query is None:
                        raise ScpiError(ScpiErr.UNDEFINED_HEADER, f"{head!r} is not a query")
                    responses.append(str(entry.query(inst, args, suffixes)))
                else:
                    if entry.write is None:
                        raise ScpiError(ScpiErr.UNDEFINED_HEADER, f"{head!r} is a query only")
                    entry.write(inst, args, suffixes)
            except ScpiError as exc:
                inst.push_error(exc.err, exc.detail)
            except ValueError as exc:      # the model refused the value (range, latched protection)
                inst.push_error(ScpiErr.EXECUTION if "latched" in str(exc) or "first" in str(exc)
                                else ScpiErr.OUT_OF_RANGE, str(exc))
            except IndexError:
                inst.push_error(ScpiErr.MISSING_PARAM, f"{head!r}")
        return ";".join(responses) if responses else None


def need(args: list, n: int = 1, head: str = "") -> list:
    if len(args) < n:
        raise ScpiError(ScpiErr.MISSING_PARAM, head)
    return args


def no_args(args: list):
    if args:
        raise ScpiError(ScpiErr.PARAM_NOT_ALLOWED, ",".join(args))


def common_commands() -> CommandSet:
    """IEEE 488.2 common commands and SYSTem:ERRor, shared by every instrument."""
    cs = CommandSet("ieee488.2")

    def rst(inst, args, _):
        no_args(args)
        inst.reset()

    def cls(inst, args, _):
        no_args(args)
        inst.clear_status()

    def ese_w(inst, args, _):
        inst.ese = int(parse_number(need(args)[0], lo=0, hi=255))

    def err_q(inst, args, _):
        code, text = inst.pop_error()
        return f'{code:+d},"{text}"'

    def err_all(inst, args, _):
        out = []
        while True:
            code, text = inst.pop_error()
            out.append(f'{code:+d},"{text}"')
            if code == 0:
                return ",".join(out)

    cs.add("*IDN", query=lambda i, a, s: i.idn())
    cs.add("*RST", write=rst)
    cs.add("*CLS", write=cls)
    cs.add("*OPC", write=lambda i, a, s: i.operation_complete(), query=lambda i, a, s: "1")
    cs.add("*ESR", query=lambda i, a, s: str(i.read_esr()))
    cs.add("*ESE", write=ese_w, query=lambda i, a, s: str(getattr(i, "ese", 0)))
    cs.add("*SRE", write=lambda i, a, s: None, query=lambda i, a, s: "0")
    cs.add("*STB", query=lambda i, a, s: str((4 if i.errors else 0) | (32 if i.esr & getattr(i, "ese", 0) else 0)))
    cs.add("*TST", query=lambda i, a, s: "0")
    cs.add("*WAI", write=lambda i, a, s: None)
    cs.add("SYSTem:ERRor[:NEXT]", query=err_q)
    cs.add("SYSTem:ERRor:ALL", query=err_all)
    cs.add("SYSTem:ERRor:COUNt", query=lambda i, a, s: str(len(i.errors)))
    cs.add("SYSTem:VERSion", query=lambda i, a, s: "1999.0")
    return cs
