"""Integer-level configuration and I/O records shared by both backends.

These mirror the structs of ``csrc/dlb.h`` field for field (mA, ms, W, Wh). The Python face
(:mod:`dlbrig.core.site`, :mod:`dlbrig.core.allocator`) converts amps and seconds to these once; the C
backend copies them into cffi arrays, the reference backend uses them directly.
"""
from __future__ import annotations

from dataclasses import dataclass, field

NONE = -1

PHASES = 3
LANES = 4
LANE_POWER = 3
MAX_CIRCUITS = 4096
MAX_CHARGERS = 65535
MAX_DEPTH = 16
MAX_CURRENT_MA = 2_000_000
MAX_POWER_W = 100_000_000
MAX_WEIGHT = 16
MAX_STARTS = 16
MAX_DURATION_MS = 86_400_000
Q = 720720  # lcm(1..16): fair-share levels are exact integers for every weight

# dlb_policy
POLICY_FAIR, POLICY_PRIORITY, POLICY_FIFO, POLICY_EDF, POLICY_LLF = range(5)
POLICIES = {"fair": POLICY_FAIR, "priority": POLICY_PRIORITY, "fifo": POLICY_FIFO,
            "edf": POLICY_EDF, "llf": POLICY_LLF}

# dlb_charger_state
(STATE_DISCONNECTED, STATE_CONNECTED_IDLE, STATE_CHARGING, STATE_EV_SUSPENDED,
 STATE_FAULT, STATE_UNAVAILABLE) = range(6)
STATES = {"disconnected": STATE_DISCONNECTED, "connected_idle": STATE_CONNECTED_IDLE,
          "charging": STATE_CHARGING, "ev_suspended": STATE_EV_SUSPENDED,
          "fault": STATE_FAULT, "unavailable": STATE_UNAVAILABLE}

# dlb_reason
(REASON_NONE, REASON_CHARGER_MAX, REASON_CIRCUIT, REASON_EV, REASON_RAMP, REASON_SCARCITY,
 REASON_ROTATION, REASON_MIN_OFF, REASON_START_CAP, REASON_TRANSITION, REASON_UNBALANCE,
 REASON_FAILSAFE, REASON_RECOVERING, REASON_NOT_CONNECTED, REASON_FAULT, REASON_UNAVAILABLE,
 REASON_OVERLOAD) = range(17)
REASON_NAMES = ["none", "charger max", "circuit", "ev", "ramp", "scarcity", "rotation", "min off",
                "start cap", "transition", "unbalance", "failsafe", "recovering", "not connected",
                "fault", "unavailable", "overload"]

# circuit status bits
CIRCUIT_OVERLOADED = 1
CIRCUIT_BASE_OVERLOAD = 2
CIRCUIT_METER_STALE = 4
CIRCUIT_METER_RECOVERING = 8
CIRCUIT_LIMITING = 16

# charger flags
CHARGER_ADMITTED = 1
CHARGER_LOST = 2
CHARGER_RECLAIMED = 4
CHARGER_PROBING = 8
CHARGER_SWITCHED = 16
CHARGER_NARROWED = 32


@dataclass
class Params:
    voltage_v: int = 230
    policy: int = POLICY_FAIR
    meter_timeout_ms: int = 10_000
    charger_timeout_ms: int = 10_000
    recovery_hold_ms: int = 10_000
    rotation_period_ms: int = 900_000
    min_on_ms: int = 120_000
    min_off_ms: int = 60_000
    max_starts_per_hour: int = 6
    ramp_up_ma_per_s: int = 0
    reclaim_hold_ms: int = 60_000
    reclaim_margin_ma: int = 1_000
    probe_interval_ms: int = 300_000
    phase_switch_hold_ms: int = 300_000
    max_phase_switches: int = 4
    active_threshold_ma: int = 1_000
    follow_time_ms: int = 10_000
    meter_latency_ms: int = 0


@dataclass
class Circuit:
    parent: int = NONE
    limit_ma: list = field(default_factory=lambda: [0, 0, 0])
    margin_ma: int = 0
    power_limit_w: int = 0
    fallback_base_ma: list = field(default_factory=lambda: [0, 0, 0])
    unbalance_limit_ma: int = 0
    has_meter: int = 0


@dataclass
class Charger:
    circuit: int = 0
    phases: int = 3
    phase_map: list = field(default_factory=lambda: [0, 1, 2])
    min_ma: int = 6_000
    max_ma: int = 16_000
    step_ma: int = 1_000
    priority: int = 0
    weight: int = 1
    failsafe_ma: int = 6_000
    can_switch_phases: int = 0


@dataclass
class MeterInput:
    fresh: int = 0
    current_ma: list = field(default_factory=lambda: [0, 0, 0])


@dataclass
class ChargerInput:
    fresh: int = 0
    state: int = STATE_DISCONNECTED
    current_ma: list = field(default_factory=lambda: [0, 0, 0])
    session_update: int = 0
    departure_in_ms: int = -1
    energy_need_wh: int = -1


@dataclass
class ChargerOutput:
    setpoint_ma: int = 0
    phases: int = 3
    reason: int = REASON_NONE
    limit_circuit: int = NONE
    limit_lane: int = NONE
    flags: int = 0


@dataclass
class CircuitOutput:
    allocated_ma: list = field(default_factory=lambda: [0, 0, 0])
    headroom_ma: list = field(default_factory=lambda: [0, 0, 0])
    base_ma: list = field(default_factory=lambda: [0, 0, 0])
    power_headroom_ma: int = 2**31 - 1
    status: int = 0


class ConfigError(ValueError):
    """A configuration outside the core's limits: ``field`` names it, ``problem`` says why."""

    def __init__(self, field_name: str, problem: str):
        super().__init__(f"{field_name}: {problem}")
        self.field = field_name
        self.problem = problem


def validate(params: Params, circuits: list, chargers: list) -> None:
    """The checks dlb_init() performs, in the same order, with the same field names and problems."""
    def check(cond, fld, problem):
        if not cond:
            raise ConfigError(fld, problem)

    check(1 <= len(circuits) <= MAX_CIRCUITS, "circuits", "count out of range")
    check(len(chargers) <= MAX_CHARGERS, "chargers", "count out of range")
    p = params
    check(100 <= p.voltage_v <= 1000, "params.voltage_v", "out of range")
    check(0 <= p.policy <= POLICY_LLF, "params.policy", "unknown policy")
    for name in ("meter_timeout_ms", "charger_timeout_ms", "recovery_hold_ms", "rotation_period_ms",
                 "min_on_ms", "min_off_ms", "reclaim_hold_ms", "probe_interval_ms",
                 "phase_switch_hold_ms", "follow_time_ms", "meter_latency_ms"):
        check(0 <= getattr(p, name) <= MAX_DURATION_MS, f"params.{name}", "out of range")
    check(0 <= p.max_starts_per_hour <= MAX_STARTS, "params.max_starts_per_hour", "out of range")
    check(0 <= p.ramp_up_ma_per_s <= MAX_CURRENT_MA, "params.ramp_up_ma_per_s", "out of range")
    check(0 <= p.reclaim_margin_ma <= MAX_CURRENT_MA, "params.reclaim_margin_ma", "out of range")
    check(0 <= p.max_phase_switches <= 1000, "params.max_phase_switches", "out of range")
    check(0 <= p.active_threshold_ma <= MAX_CURRENT_MA, "params.active_threshold_ma", "out of range")
    for i, c in enumerate(circuits):
        f = f"circuits[{i}]"
        check(c.parent == NONE or 0 <= c.parent < i, f + ".parent", "must be an earlier circuit or none")
        for ph in range(PHASES):
            check(0 <= c.limit_ma[ph] <= MAX_CURRENT_MA, f + ".limit_ma", "out of range")
            check(-MAX_CURRENT_MA <= c.fallback_base_ma[ph] <= MAX_CURRENT_MA, f + ".fallback_base_ma",
                  "out of range")
        check(0 <= c.margin_ma <= MAX_CURRENT_MA, f + ".margin_ma", "out of range")
        check(0 <= c.power_limit_w <= MAX_POWER_W, f + ".power_limit_w", "out of range")
        check(0 <= c.unbalance_limit_ma <= MAX_CURRENT_MA, f + ".unbalance_limit_ma", "out of range")
        check(c.has_meter in (0, 1), f + ".has_meter", "must be 0 or 1")
    depth = [0] * len(circuits)
    for i, c in enumerate(circuits):
        depth[i] = 1 if c.parent == NONE else depth[c.parent] + 1
        check(depth[i] <= MAX_DEPTH, f"circuits[{i}].parent", "tree deeper than DLB_MAX_DEPTH")
    for i, k in enumerate(chargers):
        f = f"chargers[{i}]"
        check(0 <= k.circuit < len(circuits), f + ".circuit", "unknown circuit")
        check(k.phases in (1, 3), f + ".phases", "must be 1 or 3")
        for ph in range(k.phases):
            check(0 <= k.phase_map[ph] < PHASES, f + ".phase_map", "phase out of range")
        if k.phases == 3:
            check(sorted(k.phase_map) == [0, 1, 2], f + ".phase_map", "must be a permutation of L1, L2, L3")
        check(1 <= k.step_ma <= MAX_CURRENT_MA, f + ".step_ma", "out of range")
        check(1 <= k.min_ma <= MAX_CURRENT_MA, f + ".min_ma", "out of range")
        check(k.min_ma <= k.max_ma <= MAX_CURRENT_MA, f + ".max_ma", "must be >= min_ma")
        check(k.min_ma % k.step_ma == 0, f + ".min_ma", "not a multiple of step_ma")
        check(k.max_ma % k.step_ma == 0, f + ".max_ma", "not a multiple of step_ma")
        check(0 <= k.priority <= 255, f + ".priority", "out of range")
        check(1 <= k.weight <= MAX_WEIGHT, f + ".weight", "out of range")
        check(0 <= k.failsafe_ma <= MAX_CURRENT_MA, f + ".failsafe_ma", "out of range")
        check(k.can_switch_phases in (0, 1), f + ".can_switch_phases", "must be 0 or 1")
        check(not k.can_switch_phases or k.phases == 3, f + ".can_switch_phases",
              "only a 3-phase charger can switch phases")
