"""Phoenix Contact CHARX SEC (Modbus TCP server, unit 1), devices.md appendix A.

Global (group) registers at 100..167; charging point n (1..12) at base n*1000: configuration
+100..+123, status +232..+299, control +300..+308. Big-endian, 32-bit values high word first,
64-bit energy counters high word first. FC03 and FC04 return the same values (evcc:
"holding and input return same values"). A client typically reads whole blocks, so every
address inside a block answers (reserved ones read 0); addresses outside the blocks, and the
blocks of charging points that are not installed, answer 02.

Bind one device per charging point: ``DeviceImage(CHARX_SEC, {1: [cp1, cp2, ...]})``; global
registers aggregate over all of them (counts, group power and currents).

Configuration block offsets +104..+123 are assigned in the order appendix A lists the items
(temperature thresholds 2 registers, derating start/stop, temperature monitoring, accept
state D, proximity, overcurrent, energy meter type at +112 as evcc reads it, CP UID 3, server
UID 3, bus position, release mode, RFID UID 3), which ends exactly at +123.

Watchdog: +306 fallback current (A), +307 timer (s, 65535 = disabled; the model receives 0 for
"disabled"). What restarts the timer is not documented: we take any write to that charging
point's registers (``kick="write"``).

Controller side (:data:`DRIVER`, see ``driver.py``; :func:`charx_status`), connector index
``slot`` 0..11 = charging point n = slot + 1: ONE request n*1000+238 .. +301 (64 registers:
currents, applied A +297, status +299, release +300, set-point +301). State:

=======================  ==================================================================
registers                decoded
=======================  ==================================================================
+299 "E?", "F?"          fault
+300 release = 0         unavailable (the point is not released for charging)
+299 "A?"                disconnected
+299 "B?", "C1", "D1"    connected_idle (no PWM offered, or offered and not requested)
+299 "C2", "D2"          any phase >= 1 A: charging, else ev_suspended
=======================  ==================================================================

Collapse: an EV stopped after charging (B2) reads "connected_idle". Writes: +301 max current
(A, integer, floored, 6..80); +301 is documented 6..80 only, so a pause clears the release
(+300 = 0, as evcc does) and a resume writes +301 then +300 = 1; in the charger model a cleared
release is "unavailable", so a paused point reads back "unavailable". Any write to the point
feeds its watchdog (the set-point rewrite is the heartbeat, every timeout/2); failsafe +306
(A) and +307 (s; 0 -> 65535 = disabled). No phase switching.
"""
from __future__ import annotations

from .base import Profile, Register, Watchdog
from .driver import ChargerSpec, charging_or_suspended
from .points import zero_or_range

SOURCE = ("devices.md appendix A: Phoenix Contact UM EN CHARX SEC rev. 08, appendix B3 [VENDOR]; "
          "evcc charger/phoenix-charx.go [IMPL]")

MAX_CP = 12
CHARX_STATE = {"A": "A1", "B1": "B1", "B2": "B2", "C1": "C1", "C2": "C2", "D1": "D1",
               "D2": "D2", "E": "E0", "F": "F0"}


def charx_status(raw) -> str:
    """The allocator state from +299 (``iec_state``), +300 (``enabled``) and currents."""
    st = str(raw["iec_state"]).strip()
    if not st or st[0] not in "ABCDEF":
        raise ValueError(f"unknown IEC 61851 status {st!r}")
    if st[0] in "EF":
        return "fault"
    if not raw["enabled"]:
        return "unavailable"
    if st[0] == "A":
        return "disconnected"
    if st[0] == "B" or st in ("C1", "D1"):
        return "connected_idle"
    return charging_or_suspended(raw)


DRIVER = ChargerSpec(status=charx_status, reads=(("holding", 1299), ("holding", 1300)),
                     min_current_a=6.0, max_current_a=80.0, pause="enable", slot_stride=1000)


def _g(addr: int, dtype: str, desc: str, **kw) -> Register:
    return Register(addr, dtype, table="holding", description=desc, **kw)


def _count(states):
    return lambda ps: sum(1 for p in ps if p["cp_state"][0] in states)


def _global() -> list[Register]:
    r = [
        _g(100, "str", "Designation", count=10, group_fn=lambda ps: ps[0]["model_name"],
           name="designation"),
        _g(110, "str", "Software version", count=4, group_fn=lambda ps: ps[0]["firmware_version"],
           name="software_version"),
        _g(114, "u16", "Number of charging controllers", group_fn=len, name="controllers"),
    ]
    mac = (0x00A0, 0x4500, 0x0001)
    for base, nm in ((115, "eth0"), (118, "eth1")):
        for k in range(3):
            r.append(_g(base + k, "u16", f"MAC address {nm} word {k}", const=mac[k] + (base == 118),
                        name=f"mac_{nm}_{k}"))
    for base, nm, octets in ((121, "ip_eth0", (127, 0, 0, 1)), (125, "ip_eth1", (0, 0, 0, 0)),
                             (129, "subnet_eth0", (255, 0, 0, 0)), (133, "subnet_eth1", (0, 0, 0, 0)),
                             (137, "gateway_eth0", (0, 0, 0, 0)), (141, "gateway_eth1", (0, 0, 0, 0))):
        for k in range(4):
            r.append(_g(base + k, "u16", f"{nm} octet {k + 1}", const=octets[k], name=f"{nm}_{k}"))
    r += [
        _g(145, "u16", "Modem registration status (no modem)", const=0, name="modem_registration"),
        _g(146, "u16", "Modem signal strength (no modem)", const=0, name="modem_signal"),
        _g(147, "u16", "Number of non-critical errors", group_fn=lambda ps: sum(
            1 for p in ps if p["error_code"]), name="error_count"),
        _g(148, "u16", "Charging points in state E/F", group_fn=_count("EF"), name="count_ef"),
        _g(149, "u16", "Charging points in state A", group_fn=_count("A"), name="count_a"),
        _g(150, "u16", "Charging points in state B/C/D", group_fn=_count("BCD"), name="count_bcd"),
        _g(151, "u16", "Charging points charging (C2)", group_fn=lambda ps: sum(
            1 for p in ps if p["cp_state"] in ("C2", "D2")), name="count_charging"),
        _g(152, "i32", "Group active power (mW)", scale=0.001, unit="W",
           group_fn=lambda ps: sum(p["power_total_w"] for p in ps), name="group_power_w"),
        _g(154, "i32", "Group reactive power (mVAR, signed; 0: resistive model)", scale=0.001,
           unit="var", const=0, name="group_var"),
        _g(156, "i32", "Group apparent power (mVA)", scale=0.001, unit="VA", name="group_va",
           group_fn=lambda ps: sum(p[f"voltage_l{i}_v"] * p[f"current_l{i}_a"]
                                   for p in ps for i in (1, 2, 3))),
    ]
    for i in (1, 2, 3):
        r.append(_g(156 + 2 * i, "i32", f"Group current L{i} (mA; -1 if unknown)", scale=0.001,
                    unit="A", group_fn=lambda ps, i=i: sum(p[f"current_l{i}_a"] for p in ps),
                    name=f"group_current_l{i}_a"))
    r += [
        _g(164, "u16", "Group availability (R/W; kept locally)", access="rw", const=1,
           valid=(0, 1), name="group_availability"),
        _g(165, "u16", "Restart Modbus server (W; accepted, no effect)", access="w", const=0,
           name="restart_server"),
        _g(166, "u16", "Restart all (W; accepted, no effect)", access="w", const=0,
           name="restart_all"),
        _g(167, "u16", "Dynamic maximum current for load management (R/W, A; kept locally: "
           "no group-limit point in the vocabulary)", access="rw", const=0, unit="A",
           name="group_dynamic_max_current_a"),
    ]
    return r


def _cp_template() -> list[Register]:
    """Registers of one charging point at offsets 0.. (address = offset; placed at n*1000+)."""
    def c(off, dtype, point=None, desc="", **kw):
        return Register(off, dtype, point, table="holding", description=desc, **kw)

    r = [
        c(100, "u16", desc="Interface: 0 socket, 1 connector (fixed cable)", const=0,
          name="interface"),
        c(101, "u16", "hw_max_current_a", "Maximum current (A)", unit="A"),
        c(102, "u16", desc="Minimum current (A)", const=6, unit="A", name="min_current_a"),
        c(103, "u16", desc="RCM configured", const=1, name="rcm_configured"),
        c(104, "u16", desc="Temperature threshold warning (degC)", const=70, name="temp_warn_c"),
        c(105, "u16", desc="Temperature threshold shutdown (degC)", const=80, name="temp_stop_c"),
        c(106, "u16", desc="Derating start (degC)", const=60, name="derating_start_c"),
        c(107, "u16", desc="Derating stop (degC)", const=70, name="derating_stop_c"),
        c(108, "u16", desc="Temperature monitoring enabled", const=1, name="temp_monitoring"),
        c(109, "u16", desc="Accept state D", const=0, name="accept_state_d"),
        c(110, "u16", desc="Proximity configuration", const=0, name="proximity_config"),
        c(111, "u16", desc="Overcurrent monitoring", const=1, name="overcurrent_monitoring"),
        c(112, "u16", desc="Energy meter type (evcc: >0 and != 65535 means a meter is present)",
          const=1, name="energy_meter_type"),
        c(113, "str", desc="Charging point UID", count=3, fn=lambda p: str(p["serial"])[-6:],
          name="cp_uid"),
        c(116, "str", desc="Server UID", count=3, const="", name="server_uid"),
        c(119, "u16", desc="Bus position", const=0, name="bus_position"),
        c(120, "u16", desc="Release mode", const=0, name="release_mode"),
        c(121, "str", desc="RFID UID", count=3, const="", name="rfid_uid"),
    ]
    for i in (1, 2, 3):
        r.append(c(230 + 2 * i, "i32", f"voltage_l{i}_v", f"Voltage L{i} (mV)", scale=0.001,
                   unit="V"))
    for i in (1, 2, 3):
        r.append(c(236 + 2 * i, "i32", f"current_l{i}_a", f"Current L{i} (mA)", scale=0.001,
                   unit="A"))
    r += [
        c(244, "i32", "power_total_w", "Active power (mW)", scale=0.001, unit="W"),
        c(246, "i32", desc="Reactive power (mVAR; 0: resistive model)", const=0, scale=0.001,
          name="var_total"),
        c(248, "i32", desc="Apparent power (mVA)", scale=0.001, unit="VA", name="va_total",
          fn=lambda p: sum(p[f"voltage_l{i}_v"] * p[f"current_l{i}_a"] for i in (1, 2, 3))),
        c(250, "i64", "total_energy_wh", "Energy active (Wh)", unit="Wh"),
        c(254, "i64", desc="Energy reactive (varh; not modelled)", const=0, name="energy_var"),
        c(258, "i64", desc="Energy apparent (VAh; not modelled)", const=0, name="energy_va"),
        c(262, "u32", desc="SOC energy (kWh; no ISO 15118 data)", const=0, name="soc_kwh"),
        c(264, "u16", desc="SOC (%; no ISO 15118 data)", const=0, name="soc_pct"),
        c(265, "str", desc="EVCC id", count=10, const="", name="evcc_id"),
        c(275, "str", desc="Last RFID", count=10, const="", name="last_rfid"),
        c(285, "u32", desc="Connection time (s; approximated by the session duration)", unit="s",
          fn=lambda p: p["session_duration_s"] if p["vehicle_connected"] else 0,
          name="connection_time_s"),
        c(287, "u32", "session_duration_s", "Charging duration (s)", unit="s"),
        c(289, "i64", "session_energy_wh", "Session energy (Wh)", unit="Wh"),
        c(293, "u32", "error_code", "Error bitmask"),
        c(295, "u16", desc="Digital inputs", const=0, name="digital_inputs"),
        c(296, "u16", desc="Setpoint (% PWM duty)", fn=lambda p: p["pwm_duty_pct"],
          unit="%", name="setpoint_pct"),
        c(297, "u16", "applied_current_a", "Setpoint (A)", unit="A"),
        c(298, "u16", "cable_max_current_a", "Cable capacity (A)", unit="A"),
        c(299, "str", desc="IEC 61851-1 vehicle status, two ASCII characters (A1, B2, C2, ...)",
          count=1, fn=lambda p: CHARX_STATE[p["cp_state"]], name="iec_state"),
        c(300, "u16", "enabled", "Charging release (R/W)", access="rw", valid=(0, 1),
          write_fn=bool),
        c(301, "u16", "setpoint_a", "Maximum charging current (R/W, A, 6-80)", unit="A",
          access="rw", valid=zero_or_range(6, 80)),
        c(302, "u16", desc="Digital outputs (R/W; kept locally)", access="rw", const=0,
          name="digital_outputs"),
        c(303, "u16", "connector_locked", "Connector lock state"),
        c(304, "u16", desc="Status F / availability (R/W; kept locally)", access="rw", const=0,
          name="status_f"),
        c(305, "u16", desc="Force unlock (W)", access="w", write_point="unlock",
          write_fn=lambda v: True, name="force_unlock"),
        c(306, "u16", "safe_current_a", "Watchdog fallback current (R/W, A)", unit="A",
          access="rw", valid=zero_or_range(6, 80)),
        c(307, "u16", None, "Watchdog timer (R/W, s; 65535 = disabled)", unit="s", access="rw",
          write_point="watchdog_timeout_s", write_fn=lambda v: 0 if v == 65535 else v,
          fn=lambda p: p["watchdog_timeout_s"] or 65535, name="watchdog_timer_s"),
        c(308, "u16", desc="Clear last RFID (W; accepted, no effect)", access="w", const=0,
          name="clear_rfid"),
    ]
    return r


def _all() -> tuple[Register, ...]:
    regs = _global()
    tmpl = _cp_template()
    for n in range(1, MAX_CP + 1):
        regs += [t.at(n * 1000 + t.address, slot=n) for t in tmpl]
    return tuple(regs)


_BLOCKS = (("holding", 100, 168),) + tuple(
    blk for n in range(1, MAX_CP + 1)
    for blk in (("holding", n * 1000 + 100, n * 1000 + 124),
                ("holding", n * 1000 + 232, n * 1000 + 309)))

CHARX_SEC = Profile(
    name="charx_sec", vendor="Phoenix Contact", model="CHARX SEC-3xxx", kind="charger",
    transport="tcp", port=502, units=((1, "device"),), connectors=MAX_CP, word_order="be",
    function_codes=frozenset({3, 4, 6, 16}), mirror_input=True, reserved="zero",
    blocks=_BLOCKS, atomic_writes=True,
    watchdog=Watchdog(timeout_register=1307, timeout_write_register=1307,
                      safe_current_register=1306, kick="write", disabled_value=65535,
                      notes="per charging point n: timer n*1000+307 (s, 65535 disabled), fallback "
                            "current n*1000+306 (A); addresses given for n = 1"),
    registers=_all(), source=SOURCE, driver=DRIVER,
)

PROFILES = (CHARX_SEC,)
