"""Fault injection: every fault the rig can apply, where it acts, and how a timeline names it.

One timeline (scenario ``timeline:`` lines, :mod:`dlbrig.rig.scenario.timeline`) drives fast and
wire mode alike. The faults act where they would on a real site:

- **meter** faults: frozen, NaN, garbage and zero act in the meter model
  (:mod:`dlbrig.firmware_sim.meter`); stale / offline (the meter stops answering) on the link;
- **communication** faults of a device (offline, Modbus exception, delay with jitter, dropped
  responses) act on the link: :class:`CommFaults` is consulted by the in-memory fast links and by
  the Modbus servers' fault hook in wire mode, so both modes see the same faults;
- **EV** faults (overdraw, slow response, ignores PWM, missing diode, CP short, residual current DC
  and AC) act in the EV model; a charger ``fault`` in the charger firmware;
- **site** faults (base-load step, PV cloud drop, phase loss) act in the plant's loads and
  voltages; ``controller restart`` restarts the controller under test (its process, for an external
  one);
- **malformed Modbus frames** (:mod:`.malformed`: wrong MBAP length, bad protocol id, unknown
  function code, truncated PDU, oversized quantity, wrong unit id) are crafted with scapy's Modbus
  layer and sent to the device under test's own Modbus server (certification case COM-012).

:data:`FAULTS` lists them all; a test checks that the certification catalog exercises each one.
"""
from __future__ import annotations

from ..links import CommFault, CommFaults

#: fault id -> (how a timeline line or case names it, where it acts)
FAULTS = {
    "meter_stale": ("meter CIRCUIT stale|offline [for D]", "link (the meter stops answering)"),
    "meter_frozen": ("meter CIRCUIT frozen [for D]", "meter model"),
    "meter_nan": ("meter CIRCUIT nan [for D]", "meter model"),
    "meter_garbage": ("meter CIRCUIT garbage [for D]", "meter model"),
    "charger_offline": ("charger CP offline [for D]", "link"),
    "charger_fault": ("charger CP fault [for D]", "charger firmware"),
    "modbus_exception": ("charger CP exception CODE [for D]", "link"),
    "delay_jitter": ("charger CP delay 300ms jitter 100ms [for D]", "link"),
    "dropped_responses": ("charger CP drop 30% [for D]", "link"),
    "ev_overdraw": ("ev CP overdraw 10% [for D]", "EV model"),
    "ev_slow": ("ev CP slow 6s", "EV model"),
    "ev_ignore_pwm": ("ev CP ignore_pwm", "EV model"),
    "ev_missing_diode": ("ev CP missing_diode", "EV model"),
    "ev_cp_short": ("ev CP cp_short", "EV model"),
    "residual_dc": ("ev CP leakage dc 6mA", "EV model"),
    "residual_ac": ("ev CP leakage ac 30mA", "EV model"),
    "base_load_step": ("base CIRCUIT step +20A [for D]", "plant loads"),
    "pv_cloud": ("pv CIRCUIT cloud 60% [for D]", "plant loads"),
    "phase_loss": ("phase CIRCUIT L2 loss [for D]", "plant voltages"),
    "controller_restart": ("controller restart", "controller under test"),
    "malformed_frames": ("case COM-012 (scapy)", "DUT's Modbus server"),
}


def faults_of_line(line: str) -> set:
    """The :data:`FAULTS` ids a timeline line applies (empty for plug/unplug/ok lines)."""
    words = line.lower().replace("=", " ").split()
    found = set()
    for i, w in enumerate(words):
        nxt = words[i + 1:]
        if w == "meter" and len(nxt) >= 2 and nxt[1] in ("stale", "offline"):
            found.add("meter_stale")
        elif w == "meter" and len(nxt) >= 2 and nxt[1] in ("frozen", "nan", "garbage"):
            found.add(f"meter_{nxt[1]}")
        elif w == "charger" and len(nxt) >= 2:
            found |= {"offline": {"charger_offline"}, "fault": {"charger_fault"},
                      "exception": {"modbus_exception"}, "delay": {"delay_jitter"},
                      "drop": {"dropped_responses"}}.get(nxt[1], set())
        elif w == "ev" and len(nxt) >= 2:
            if nxt[1] == "leakage" and len(nxt) >= 3:
                found.add("residual_dc" if nxt[2] == "dc" else "residual_ac")
            elif nxt[1] in ("overdraw", "slow", "ignore_pwm", "missing_diode", "cp_short"):
                found.add(f"ev_{nxt[1]}")
        elif w == "base" and len(nxt) >= 2 and nxt[1] in ("step", "set"):
            found.add("base_load_step")
        elif w == "pv" and len(nxt) >= 2 and nxt[1] == "cloud":
            found.add("pv_cloud")
        elif w == "phase" and len(nxt) >= 3 and nxt[2] == "loss":
            found.add("phase_loss")
        elif w == "controller" and nxt[:1] == ["restart"]:
            found.add("controller_restart")
    return found


__all__ = ["FAULTS", "CommFault", "CommFaults", "faults_of_line"]
