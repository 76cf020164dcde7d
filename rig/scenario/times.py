"""Time and duration grammar of scenario files.  All results are integer milliseconds.

Durations: ``"90s"``, ``"5m"``, ``"1h30m"``, ``"300ms"``, ``"1.5h"``, ``"2d"`` (units d, h, m, s, ms;
components may repeat in any order and are summed); a bare number is seconds.

Start (the time of day at t = 0): ``"HH:MM[:SS]"`` optionally preceded by a day: a weekday name
(``"Sat 08:00"``, ``"saturday 08:00"``) or a day index (``"d2 08:00"``); day 0 = Monday.
``start_ms`` = ms since Monday 00:00 of week 0 (the clock of ``firmware_sim.loads``).

Times in a scenario (timeline, vehicles, arrival windows, step loads):

* ``"+5m"``, ``"+1h30m"``: relative to the scenario start;
* ``"HH:MM[:SS]"``: that time of day on the start's day;
* ``"Tue 07:30"``: the first Tuesday on or after the start's day (for overnight scenarios);
* ``"d1 07:30"``: day index 1 (absolute, like ``start``).

:func:`parse_time` returns ms since the scenario start (possibly negative: callers reject it as
"before start").  Absolute virtual time for the models = ``start_ms + t``.
"""
from __future__ import annotations

import math
import re

__all__ = ["parse_duration", "parse_start", "parse_time", "format_rel", "format_clock",
           "MS_PER_DAY", "DAY_NAMES", "is_time_token", "is_day_token"]

MS_PER_DAY = 86_400_000
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": MS_PER_DAY}
_DUR_FULL = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|d|h|m|s))+")
_DUR_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|d|h|m|s)")
_CLOCK = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?")
_DAY_IDX = re.compile(r"d(\d{1,3})")
DURATION_HINT = "a duration like '90s', '5m', '1h30m' or '300ms'"
TIME_HINT = "a time like '08:05', '+5m', 'Tue 07:30' or 'd1 07:30'"


def parse_duration(value, *, allow_zero: bool = True, allow_bare: bool = True) -> int:
    """Duration -> ms.  Raises ValueError with a readable message.  ``allow_bare``: a number
    without a unit (YAML ``duration: 3600``) is seconds; timeline text always needs a unit."""
    if isinstance(value, bool):
        raise ValueError(f"must be {DURATION_HINT}, got {value!r}")
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"must be a finite duration >= 0, got {value!r}")
        ms = int(round(value * 1000))
    elif isinstance(value, str):
        s = value.strip().lower().replace(" ", "")
        if allow_bare and re.fullmatch(r"\d+(?:\.\d+)?", s):
            ms = int(round(float(s) * 1000))
        elif _DUR_FULL.fullmatch(s):
            ms = int(round(sum(float(n) * _UNIT_MS[u] for n, u in _DUR_PART.findall(s))))
        else:
            raise ValueError(f"must be {DURATION_HINT}, got {value!r}")
    else:
        raise ValueError(f"must be {DURATION_HINT}, got {value!r}")
    if not allow_zero and ms <= 0:
        raise ValueError(f"must be longer than 0, got {value!r}")
    return ms


def _clock(s: str, original) -> int:
    m = _CLOCK.fullmatch(s)
    if not m:
        raise ValueError(f"must be {TIME_HINT}, got {original!r}")
    h, mi, se = int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)
    if mi > 59 or se > 59 or h > 24 or (h == 24 and (mi or se)):
        raise ValueError(f"not a valid time of day: {original!r}")
    return ((h * 60 + mi) * 60 + se) * 1000


def is_day_token(tok: str) -> bool:
    t = tok.lower()
    return t in DAY_NAMES or t in _FULL or bool(_DAY_IDX.fullmatch(t))


def is_time_token(tok: str) -> bool:
    """True if ``tok`` alone is a complete time (``+5m`` or ``08:05``)."""
    return tok.startswith("+") or bool(_CLOCK.fullmatch(tok))


def _split_day(s: str):
    parts = s.split()
    if len(parts) == 2 and is_day_token(parts[0]):
        return parts[0].lower(), parts[1]
    if len(parts) == 1:
        return None, parts[0]
    return "?", s


def parse_start(value) -> int:
    """Start of the scenario -> ms since Monday 00:00 (day index 0)."""
    if not isinstance(value, str):
        raise ValueError(f"must be a time of day like '07:00', 'Sat 08:00' or 'd2 08:00', got {value!r}")
    day, clock = _split_day(value.strip())
    if day == "?":
        raise ValueError(f"must be a time of day like '07:00', 'Sat 08:00' or 'd2 08:00', got {value!r}")
    tod = _clock(clock, value)
    if tod >= MS_PER_DAY:
        raise ValueError(f"start must be before 24:00, got {value!r}")
    return _day_index(day, None) * MS_PER_DAY + tod


def _day_index(day: str | None, start_day: int | None) -> int:
    if day is None:
        return start_day or 0
    m = _DAY_IDX.fullmatch(day)
    if m:
        return int(m.group(1))
    wd = DAY_NAMES.index(day[:3])
    if start_day is None:
        return wd
    return start_day + (wd - start_day) % 7      # first such weekday on or after the start's day


def parse_time(value, start_ms: int) -> int:
    """A scenario time -> ms since the scenario start (negative if before the start)."""
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError(f"must be {TIME_HINT}, got {value!r}")
    s = value.strip()
    if s.startswith("+"):
        try:
            return parse_duration(s[1:], allow_bare=False)
        except ValueError:
            raise ValueError(f"must be {TIME_HINT}, got {value!r}") from None
    day, clock = _split_day(s)
    if day == "?":
        raise ValueError(f"must be {TIME_HINT}, got {value!r}")
    tod = _clock(clock, value)
    start_day = start_ms // MS_PER_DAY
    return _day_index(day, start_day) * MS_PER_DAY + tod - start_ms


def format_rel(ms: int) -> str:
    """ms since start -> ``+1h02m03s`` (re-parses with :func:`parse_time`)."""
    ms = int(ms)
    h, rem = divmod(ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, rem = divmod(rem, 1000)
    out = "+"
    if h:
        out += f"{h}h"
    if m or (h and (s or rem)):
        out += f"{m:02d}m" if h else f"{m}m"
    if s or rem or out == "+":
        out += f"{s:02d}s" if out != "+" else f"{s}s"
    if rem:
        out += f"{rem}ms"
    return out


def format_clock(abs_ms: int) -> str:
    """Absolute ms since Monday 00:00 -> ``d1 07:30:00`` style (weekday name for days < 7)."""
    day, tod = divmod(int(abs_ms), MS_PER_DAY)
    h, rem = divmod(tod // 1000, 3600)
    m, s = divmod(rem, 60)
    d = DAY_NAMES[day].capitalize() if day < 7 else f"d{day}"
    return f"{d} {h:02d}:{m:02d}" + (f":{s:02d}" if s else "")
