"""Shared helpers for the CLI / emulate / run tests: the installed ``dlbrig`` command, bounded
subprocess runs, and small scenario files.

Everything here is loopback-only and bounded: every subprocess has a timeout and is killed in a
``finally`` block.

The suites have no ``__init__.py``; this module registers itself as ``rig_cli_helpers`` so the test
modules can import the helpers under a name no other folder's conftest can shadow.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.modules.setdefault("rig_cli_helpers", sys.modules[__name__])

VENV_BIN = Path(sys.executable).parent
_DLBRIG = VENV_BIN / "dlbrig"
#: The console script when installed next to this interpreter, else the module.
DLBRIG = [str(_DLBRIG)] if _DLBRIG.exists() else [sys.executable, "-m", "dlbrig.rig.cli"]

#: stderr of a clean CLI error never contains a Python traceback
TRACEBACK = "Traceback (most recent call last)"


def cli_env() -> dict:
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    env["COLUMNS"] = "200"          # click's help / progress bar: no wrapping surprises
    return env


def dlbrig(*args, timeout: float = 120, cwd=None) -> subprocess.CompletedProcess:
    """Run ``dlbrig ARGS`` to completion (bounded); return the CompletedProcess (text)."""
    return subprocess.run([*DLBRIG, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env=cli_env(), stdin=subprocess.DEVNULL)


def builtin_scenarios() -> list[str]:
    """Built-in scenario names, from the library (the same source ``dlbrig scenarios`` uses)."""
    from dlbrig.rig.scenario import list_scenarios

    return [name for name, _ in list_scenarios()]


def stop_process(proc: subprocess.Popen, *, sig=signal.SIGINT, timeout: float = 10.0):
    """Ask ``proc`` to stop with ``sig``; kill it if it is still there after ``timeout``.
    Returns (returncode, stdout, stderr) or raises nothing: always leaves no process behind."""
    out = err = ""
    try:
        if proc.poll() is None:
            proc.send_signal(sig)
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=10)
    return proc.returncode, out or "", err or ""


def wait_for_json_file(path: Path, proc: subprocess.Popen, deadline_s: float):
    """Poll ``path`` until it holds valid JSON (the emulator writes it once its servers listen).
    Fails if ``proc`` exits first or the deadline passes."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            out, err = proc.communicate(timeout=10)
            pytest.fail(f"emulator exited early (rc {proc.returncode}):\n{out}\n{err}")
        if path.exists():
            try:
                data = json.loads(path.read_text())
            except (json.JSONDecodeError, OSError):
                data = None
            if data:
                return data
        time.sleep(0.02)   # polling cadence of a readiness check with a deadline
    pytest.fail(f"no endpoints in {path} after {deadline_s} s")


# -- a small, fully known site for the emulator tests ---------------------------------------------
#: constant base load per phase on "main" (12 A constant + a step at +0s of [4, 0, 2])
BASE_A = (16.0, 12.0, 14.0)
SAFE_A = 10.0
WATCHDOG_S = 3
REACTION_S = 2

SMALL_SITE = """\
name: emu_probe
description: |
  Two dlbrig generic chargers behind one metered main; constant, known base load.
seed: 1
start: "Mon 10:00"
duration: 1h
site:
  voltage_v: 230
  policy: fair
  circuits:
    - {{name: main, limit_a: 100, meter: true, fallback_base_a: [40, 40, 40]}}
  chargers:
    - {{name: cp1, circuit: main, phases: 3, min_a: 6, max_a: 32}}
    - {{name: cp2, circuit: main, phases: 1, phase_map: [L2], min_a: 6, max_a: 32}}
meters:
  - {{circuit: main, profile: sdm630, transport: {meter_transport}, bus: rs485-1}}
chargers:
  - {{charger: "cp*", profile: dlbrig_generic, transport: tcp,
     firmware: {{watchdog_timeout_s: {wd}, safe_current_a: {safe}}}}}
loads:
  - {{circuit: main, kind: constant, peak_a: 12}}
  - {{circuit: main, kind: step, at: "+0s", delta_a: [4, 0, 2]}}
vehicles:
  - {{id: ev1, preset: sedan_3p, charger: cp1, arrive: "+0s",
     knobs: {{reaction_delay_s: {react}, start_delay_s: 0.5, draw_fraction: 1.0}}}}
  - {{id: ev2, preset: compact_1p, charger: cp2, arrive: "+0s",
     knobs: {{reaction_delay_s: {react}, start_delay_s: 0.5, draw_fraction: 1.0}}}}
"""


@pytest.fixture
def small_site(tmp_path):
    """Factory: write the small site with the meter on ``rtu`` (RTU over TCP) or ``tcp``."""
    def make(meter_transport: str = "rtu") -> Path:
        p = tmp_path / f"emu_probe_{meter_transport}.yaml"
        p.write_text(SMALL_SITE.format(meter_transport=meter_transport, wd=WATCHDOG_S,
                                       safe=SAFE_A, react=REACTION_S))
        return p
    return make
