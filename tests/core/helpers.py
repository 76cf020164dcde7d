"""Shared machinery for the allocator-core suites: world generation, a simple physical world, and an
independent oracle for the contract of DESIGN.md ("The allocator contract") and csrc/dlb.h.

The oracle never calls into ``dlbrig.core.reference``: it re-derives everything it checks from the
site, the inputs it handed to the core, and the outputs it got back. It keeps its own record of what
the core must have accepted (valid, fresh readings) and of the failsafe ladder (stale meters, lost
chargers), written from the prose of dlb.h.

Import it as ``core_helpers`` (conftest registers it under that name).
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass, field

from hypothesis import settings, strategies as st

from dlbrig.core import model
from dlbrig.core.model import (CHARGER_ADMITTED, CHARGER_LOST, CHARGER_SWITCHED, CIRCUIT_BASE_OVERLOAD,
                               CIRCUIT_LIMITING, CIRCUIT_METER_RECOVERING, CIRCUIT_METER_STALE,
                               CIRCUIT_OVERLOADED, MAX_CURRENT_MA, NONE, REASON_CHARGER_MAX,
                               REASON_CIRCUIT, REASON_FAILSAFE, REASON_FAULT, REASON_NOT_CONNECTED,
                               REASON_OVERLOAD, REASON_RECOVERING, REASON_TRANSITION, REASON_UNAVAILABLE,
                               REASON_UNBALANCE, STATE_CHARGING, STATE_CONNECTED_IDLE, STATE_DISCONNECTED,
                               STATE_EV_SUSPENDED, STATE_FAULT, STATE_UNAVAILABLE, ChargerInput,
                               MeterInput)
from dlbrig.core.site import Site

CHARGER_NARROWED = getattr(model, "CHARGER_NARROWED", 32)   # dlb.h: counted on measured conductors only

INT32_MAX = 2**31 - 1
DEMANDING = (STATE_CONNECTED_IDLE, STATE_CHARGING, STATE_EV_SUSPENDED)
PERMUTATIONS = ([0, 1, 2], [1, 2, 0], [2, 0, 1], [0, 2, 1], [2, 1, 0], [1, 0, 2])


def profile(**overrides):
    """The registered hypothesis profile (``core-ci`` unless DLBRIG_HYPOTHESIS says otherwise)."""
    name = os.environ.get("DLBRIG_HYPOTHESIS", "core-ci")
    base = settings.get_profile(name)
    if name == "core-dev" and "max_examples" in overrides:
        overrides["max_examples"] *= 5
    return settings(base, **overrides)


def example_spec() -> dict:
    """The README example: ``main`` 63 A, 1 A margin, metered, 40 kW cap, fallback 25 A per phase;
    ``garage`` 32 A below it; cp1 a 3-phase charger, cp2 a 1-phase charger on L2."""
    return {
        "voltage_v": 230,
        "policy": "fair",
        "cycle_s": 1,
        "meter_timeout_s": 10,
        "recovery_hold_s": 10,
        "circuits": [
            {"name": "main", "limit_a": 63, "margin_a": 1, "meter": True, "power_limit_kw": 40,
             "fallback_base_a": [25, 25, 25]},
            {"name": "garage", "parent": "main", "limit_a": [32, 32, 32]},
        ],
        "chargers": [
            {"name": "cp1", "circuit": "garage", "phases": 3, "min_a": 6, "max_a": 32},
            {"name": "cp2", "circuit": "garage", "phases": 1, "phase_map": ["L2"], "min_a": 6, "max_a": 32},
        ],
    }


def make_site(params, circuits, chargers, cycle_ms=1000) -> Site:
    """A Site from integer-level records (circuits parents-first), names c0.. and k0.."""
    model.validate(params, circuits, chargers)
    names = [f"c{i}" for i in range(len(circuits))]
    return Site(params=params, circuits=circuits, chargers=chargers, circuit_names=names,
                charger_names=[f"k{i}" for i in range(len(chargers))],
                metered=[n for n, c in zip(names, circuits) if c.has_meter], cycle_ms=cycle_ms)


def floor_grid(v, step):
    return v // step * step


# ----------------------------------------------------------------------------------- generation
@st.composite
def params_st(draw, policies=("fair", "priority", "fifo", "edf", "llf"), work_conserving=False):
    """Site parameters with timings on the scale of a few cycles, so that the failsafe ladder, rotation,
    min on/off and start caps all happen within a short run. ``work_conserving`` turns ramp and reclaim
    off (reclaim_hold 24 h), the setting in which every charger below its max must name a full lane."""
    p = model.Params()
    p.policy = model.POLICIES[draw(st.sampled_from(policies))]
    p.voltage_v = draw(st.sampled_from([230, 230, 240, 120, 400]))
    p.meter_timeout_ms = draw(st.integers(1, 8)) * 1000
    p.charger_timeout_ms = draw(st.integers(1, 8)) * 1000
    p.recovery_hold_ms = draw(st.integers(0, 8)) * 1000
    p.rotation_period_ms = draw(st.integers(1, 40)) * 1000
    p.min_on_ms = draw(st.integers(0, 15)) * 1000
    p.min_off_ms = draw(st.integers(0, 10)) * 1000
    p.max_starts_per_hour = draw(st.integers(0, model.MAX_STARTS))
    if work_conserving:
        p.ramp_up_ma_per_s = 0
        p.reclaim_hold_ms = model.MAX_DURATION_MS
        p.probe_interval_ms = model.MAX_DURATION_MS
    else:
        p.ramp_up_ma_per_s = draw(st.sampled_from([0, 0, 500, 2000, 10000]))
        p.reclaim_hold_ms = draw(st.integers(1, 20)) * 1000
        p.reclaim_margin_ma = draw(st.sampled_from([0, 500, 1000, 2000]))
        p.probe_interval_ms = draw(st.integers(1, 40)) * 1000
    p.phase_switch_hold_ms = draw(st.integers(0, 10)) * 1000
    p.max_phase_switches = draw(st.integers(0, 4))
    p.active_threshold_ma = draw(st.sampled_from([1000, 1000, 500, 2000]))
    return p


@st.composite
def circuits_st(draw, max_circuits=10, max_depth=5):
    n = draw(st.integers(1, max_circuits))
    circuits, depth = [], []
    for i in range(n):
        c = model.Circuit()
        if i == 0 or draw(st.integers(0, 9)) == 0:       # mostly one tree, sometimes a second root
            c.parent, d = NONE, 1
        else:
            choices = [j for j in range(i) if depth[j] < max_depth]
            c.parent = draw(st.sampled_from(choices)) if choices else NONE
            d = 1 if c.parent == NONE else depth[c.parent] + 1
        depth.append(d)
        lim = draw(st.sampled_from([63, 100, 160, 250, 40, 32, 25, 16, 0])) * 1000 + \
            draw(st.sampled_from([0, 0, 500]))
        if draw(st.booleans()):
            c.limit_ma = [lim, lim, lim]
        else:
            c.limit_ma = [max(0, lim + draw(st.integers(-30, 30)) * 1000) for _ in range(3)]
        c.margin_ma = draw(st.sampled_from([0, 0, 1000, 2500]))
        c.power_limit_w = draw(st.sampled_from([0, 0, 0, 5000, 11000, 22000, 40000, 100000]))
        c.has_meter = int(draw(st.booleans()))
        c.fallback_base_ma = [draw(st.integers(-5, 25)) * 1000 for _ in range(3)]
        c.unbalance_limit_ma = draw(st.sampled_from([0, 0, 0, 6000, 16000, 20000]))
        circuits.append(c)
    return circuits


@st.composite
def charger_st(draw, n_circuits, uniform=False):
    k = model.Charger()
    k.circuit = draw(st.integers(0, n_circuits - 1))
    k.phases = draw(st.sampled_from([3, 1]))
    if k.phases == 3:
        k.phase_map = list(draw(st.sampled_from(PERMUTATIONS)))
        k.can_switch_phases = int(draw(st.integers(0, 3)) == 0)
    else:
        k.phase_map = [draw(st.integers(0, 2)), 0, 0]
    if uniform:
        k.step_ma = 1000
    else:
        k.step_ma = draw(st.sampled_from([1000, 1000, 100, 500, 2000]))
    k.min_ma = draw(st.sampled_from([6000, 6000, 8000, 1000])) // k.step_ma * k.step_ma or k.step_ma
    k.max_ma = k.min_ma + draw(st.integers(0, 26)) * 1000 // k.step_ma * k.step_ma
    k.priority = draw(st.integers(0, 3))
    k.weight = draw(st.sampled_from([1, 1, 1, 2, 3, 16]))
    k.failsafe_ma = draw(st.sampled_from([0, 6000, 10000, 16000]))
    return k


@st.composite
def sites_st(draw, max_chargers=200, max_circuits=10, max_depth=5, policies=None, work_conserving=False):
    p = draw(params_st(work_conserving=work_conserving, **({"policies": policies} if policies else {})))
    circuits = draw(circuits_st(max_circuits=max_circuits, max_depth=max_depth))
    big = draw(st.integers(0, 7)) == 0
    n = draw(st.integers(0, max_chargers) if big else st.integers(0, min(12, max_chargers)))
    chargers = [draw(charger_st(len(circuits))) for _ in range(n)]
    return make_site(p, circuits, chargers)


# ---------------------------------------------------------------------------------- a small world
@dataclass
class EV:
    conductors: tuple          # charger conductors the EV draws on: (0,1,2) 3p, (0,) 1p, odd ones
    delay: int                 # steps before it follows a new set-point
    underdraw: bool            # draws 95 % of what it is offered
    max_ma: int
    suspended: bool = False


@dataclass
class World:
    """A deterministic little physical world driven by ``random.Random``: per-circuit building loads
    (random walk with steps), EVs that arrive, follow their set-point after a delay (sometimes a 1-phase
    EV on a 3-phase charger, sometimes under-drawing 95 %), suspend and leave; chargers that go silent
    (lost), report faults, or send garbage; meters that go silent (stale). It produces integer-level
    inputs and reads the core's outputs back."""

    site: Site
    rnd: random.Random
    p_arrive: float = 0.15
    p_leave: float = 0.01
    p_silent_charger: float = 0.01
    p_silent_meter: float = 0.01
    p_garbage: float = 0.02
    p_fault: float = 0.005
    noise: bool = True
    ev_kinds: tuple = ((0, 1, 2), (0, 1, 2), (0,), (1,), (1, 2))
    now: int = 0
    loads: list = field(default_factory=list)
    evs: list = field(default_factory=list)
    history: list = field(default_factory=list)     # per charger: list of (setpoint, phases) outputs
    silent_until: list = field(default_factory=list)
    meter_silent_until: list = field(default_factory=list)
    fault_until: list = field(default_factory=list)
    draws: list = field(default_factory=list)

    def __post_init__(self):
        nc, nk = len(self.site.circuits), len(self.site.chargers)
        r = self.rnd
        self.loads = [[r.randint(-2000, max(0, c.limit_ma[ph] // 6)) for ph in range(3)]
                      for c in self.site.circuits]
        self.evs = [None] * nk
        self.history = [[] for _ in range(nk)]
        self.silent_until = [-1] * nk
        self.fault_until = [-1] * nk
        self.meter_silent_until = [-1] * nc
        self.draws = [[0, 0, 0] for _ in range(nk)]
        self.sub = [[] for _ in range(nc)]          # circuits in the subtree of c (c included)
        for c in range(nc):
            d = c
            while d != NONE:
                self.sub[d].append(c)
                d = self.site.circuits[d].parent

    def _ev_draw(self, k):
        kc, ev = self.site.chargers[k], self.evs[k]
        if ev is None or ev.suspended:
            return [0, 0, 0]
        hist = self.history[k]
        if not hist:
            return [0, 0, 0]
        sp, phases = hist[max(0, len(hist) - 1 - ev.delay)]
        if self.now < self.silent_until[k]:          # the charger lost its controller: failsafe current
            sp = min(sp, kc.failsafe_ma) if sp else 0
        powered = (0, 1, 2) if (kc.phases == 3 and phases == 3) else (0,)
        target = min(sp, ev.max_ma)
        if ev.underdraw:
            target = target * 95 // 100
        out = [0, 0, 0]
        for i in ev.conductors:
            if i in powered and i < kc.phases:
                out[i] = max(0, target + (self.rnd.randint(-150, 150) if self.noise and target else 0))
        return out

    def inputs(self):
        """Integer-level inputs for ``now``: (meters, chargers)."""
        r, site = self.rnd, self.site
        nc, nk = len(site.circuits), len(site.chargers)
        for c in range(nc):                            # building loads: random walk, sometimes a step
            for ph in range(3):
                self.loads[c][ph] += r.randint(-300, 300)
                if r.random() < 0.005:                 # a base-load step (up or down)
                    self.loads[c][ph] = r.randint(-5000, max(0, site.circuits[c].limit_ma[ph] // 2))
        chargers = []
        for k in range(nk):
            kc = site.chargers[k]
            ev = self.evs[k]
            if ev is None and r.random() < self.p_arrive:
                conductors = r.choice(self.ev_kinds) if kc.phases == 3 else (0,)
                ev = self.evs[k] = EV(conductors, r.choice([0, 0, 1, 1, 2, 3]), r.random() < 0.2,
                                      r.choice([16000, 32000, 10000, 6000]))
                new_session = True
            else:
                new_session = False
            if ev is not None and r.random() < self.p_leave:
                ev = self.evs[k] = None
            if ev is not None and r.random() < 0.01:
                ev.suspended = not ev.suspended
            self.draws[k] = self._ev_draw(k)
            if r.random() < self.p_silent_charger:
                self.silent_until[k] = self.now + r.randint(1, 3 * max(1, site.params.charger_timeout_ms))
            if r.random() < self.p_fault:
                self.fault_until[k] = self.now + r.randint(1000, 20000)
            ci = ChargerInput()
            if self.now >= self.silent_until[k]:
                ci.fresh = 1
                if self.now < self.fault_until[k]:
                    ci.state = r.choice([STATE_FAULT, STATE_UNAVAILABLE])
                elif ev is None:
                    ci.state = STATE_DISCONNECTED
                elif ev.suspended:
                    ci.state = STATE_EV_SUSPENDED
                elif any(self.draws[k]) or r.random() < 0.2:
                    ci.state = STATE_CHARGING
                else:
                    ci.state = STATE_CONNECTED_IDLE
                ci.current_ma = list(self.draws[k])
                if new_session and ev is not None and r.random() < 0.6:
                    ci.session_update = 1
                    ci.departure_in_ms = r.choice([-1, r.randint(600_000, 36_000_000)])
                    ci.energy_need_wh = r.choice([-1, r.randint(1000, 60000)])
                if r.random() < self.p_garbage:         # a reading the core must not trust
                    if r.random() < 0.5:
                        ci.state = r.choice([6, 7, -1, 99])
                    else:
                        ci.current_ma[r.randrange(3)] = r.choice([-1, -5000, MAX_CURRENT_MA + 1, 10**9])
            chargers.append(ci)
        meters = []
        for c in range(nc):
            mi = MeterInput()
            if site.circuits[c].has_meter:
                if r.random() < self.p_silent_meter:
                    self.meter_silent_until[c] = self.now + r.randint(1, 3 * max(1, site.params.meter_timeout_ms))
                if self.now >= self.meter_silent_until[c]:
                    tot = [0, 0, 0]
                    for d in self.sub[c]:
                        for ph in range(3):
                            tot[ph] += self.loads[d][ph]
                    for k in range(nk):
                        kc = site.chargers[k]
                        if kc.circuit in self.sub[c]:
                            for i in range(kc.phases):
                                tot[kc.phase_map[i]] += self.draws[k][i]
                    mi.fresh, mi.current_ma = 1, tot
                    if r.random() < self.p_garbage:
                        mi.current_ma[r.randrange(3)] = r.choice([MAX_CURRENT_MA + 1, -MAX_CURRENT_MA - 1, 2**31 - 1])
            meters.append(mi)
        return meters, chargers

    def advance(self, outs, dt):
        for k, o in enumerate(outs):
            self.history[k].append((o.setpoint_ma, o.phases))
            if len(self.history[k]) > 8:
                del self.history[k][0]
        self.now += dt


# ------------------------------------------------------------------------------- the failsafe ladder
class Ladder:
    """Freshness of one device, as dlb.h states it: a device older than its timeout is stale/lost until
    fresh data has held for recovery_hold; one that never answered is stale from the start and its first
    reading is trusted at once (there was no failure to recover from)."""

    def __init__(self, timeout, hold):
        self.timeout, self.hold = timeout, hold
        self.seen, self.t_last = False, None
        self.down, self.ok_since, self.trust_first = True, None, True

    def update(self, now, accepted):
        if accepted:
            self.seen, self.t_last = True, now
        if self.fresh(now):
            if self.ok_since is None:
                self.ok_since = now
            if self.down and (self.trust_first or now - self.ok_since >= self.hold):
                self.down = False
        else:
            if not self.down:
                self.trust_first = False
            self.down, self.ok_since = True, None

    def fresh(self, now):
        return self.seen and now - self.t_last <= self.timeout


def meter_valid(mi):
    return bool(mi.fresh) and all(-MAX_CURRENT_MA <= v <= MAX_CURRENT_MA for v in mi.current_ma)


def charger_valid(ci):
    return bool(ci.fresh) and 0 <= ci.state <= STATE_UNAVAILABLE and \
        all(0 <= v <= MAX_CURRENT_MA for v in ci.current_ma)


class Tracker:
    """What the core must believe: the last accepted readings and the ladder of every device."""

    def __init__(self, site):
        p = site.params
        self.site = site
        self.meter = [[0, 0, 0] for _ in site.circuits]
        self.mladder = [Ladder(p.meter_timeout_ms, p.recovery_hold_ms) for _ in site.circuits]
        self.state = [STATE_DISCONNECTED] * len(site.chargers)
        self.meas = [[0, 0, 0] for _ in site.chargers]
        self.kladder = [Ladder(p.charger_timeout_ms, p.recovery_hold_ms) for _ in site.chargers]
        nk = len(site.chargers)
        self.prev_sp = [0] * nk                 # the set-point of the previous step
        self.holds = [[] for _ in range(nk)]    # (value, until): lowered set-points the EV may still apply
        self.stair = [[] for _ in range(nk)]    # the core's bounded staircase (only to know when it merges)
        self.inexact_until = [0] * nk           # a merged staircase over-counts (safely) until then
        self.on_since = [None] * nk             # when the current set-point > 0 began
        self.last_switch = [None] * nk          # last phase switch in this session
        self.in_session = [False] * nk
        self.session_start = [False] * nk       # a session started in this step
        self.prev_phases = [k.phases for k in site.chargers]
        self.prev_now = None

    def held(self, k, now):
        return max((v for v, u in self.holds[k] if now < u), default=0)

    def stair_held(self, k, now):
        """The held value as the core's bounded staircase counts it: >= held(), equal once exact."""
        return max((v for v, u in self.stair[k] if now < u), default=0)

    def remember(self, now, outs):
        """After a step: a lowered set-point stays counted for follow_time_ms (dlb.h, stage 5)."""
        follow = self.site.params.follow_time_ms
        for k, o in enumerate(outs):
            if o.flags & CHARGER_SWITCHED:
                self.last_switch[k] = now
            self.prev_phases[k] = o.phases     # (a switch-up was taken into account by switched_up())
            old, new = self.prev_sp[k], o.setpoint_ma
            if new > 0 and old == 0:
                self.on_since[k] = now
            elif new == 0:
                self.on_since[k] = None
            if new < old:
                self.holds[k] = [(v, u) for v, u in self.holds[k] if u > now] + [(old, now + follow)]
                stair = [(v, u) for v, u in self.stair[k] if u > now and v > old] + [(old, now + follow)]
                if len(stair) > 4:
                    self.inexact_until[k] = max(self.inexact_until[k], stair[1][1])
                    stair[0:2] = [(stair[0][0], stair[1][1])]
                self.stair[k] = stair
            self.prev_sp[k] = new
        self.prev_now = now

    def switched_up(self, outs):
        """Before the step's outputs are checked: a 1p -> 3p switch-up is decided at the end of a step
        (dlb.h: "takes effect next step"); the core's switch time is that step's. The oracle sees it only
        in THIS step's outputs, as phases 3 after phases 1 in the same session (no CHARGER_SWITCHED),
        or, with phase_switch_hold_ms = 0, as a 3p -> 1p switch-down in this very step (CHARGER_SWITCHED
        after phases 1: the charger began this step at 3 phases). "Counted phases" applies the switch
        already in this step: the charger is counted on all three conductors until follow_time_ms has
        passed since the switch-up (its measured draw is still the 1-phase one: narrowing it to that
        would count nothing on the conductors it was just given). Noting the switch-up only in
        remember(), after the check (or, before a switch-down, not at all), judged this step by the
        previous switch and wanted the core to narrow; both backends rightly did not. A session that
        starts in this step (the core resets the mode to the charger's phase count) is no switch."""
        for k, o in enumerate(outs):
            if self.prev_phases[k] == 1 and self.in_session[k] and not self.session_start[k] and \
                    (o.phases == 3 or o.flags & CHARGER_SWITCHED):
                self.last_switch[k] = self.prev_now

    def settled(self, k, now):
        """dlb.h "Counted phases": on for follow_time_ms, and follow_time_ms since a phase switch."""
        f = self.site.params.follow_time_ms
        return self.on_since[k] is not None and now - self.on_since[k] >= f and \
            (self.last_switch[k] is None or now - self.last_switch[k] >= f)

    def ingest(self, now, meters, chargers):
        for c, (cc, mi) in enumerate(zip(self.site.circuits, meters)):
            if not cc.has_meter:
                continue
            ok = meter_valid(mi)
            if ok:
                self.meter[c] = list(mi.current_ma)
            self.mladder[c].update(now, ok)
        for k, ci in enumerate(chargers):
            ok = charger_valid(ci)
            self.session_start[k] = False
            if ok:
                if ci.state in DEMANDING and not self.in_session[k]:
                    self.in_session[k], self.last_switch[k] = True, None     # a new session
                    self.session_start[k] = True
                if ci.state == STATE_DISCONNECTED:
                    self.in_session[k] = False
                self.state[k], self.meas[k] = ci.state, list(ci.current_ma)
            self.kladder[k].update(now, ok)


# ----------------------------------------------------------------------------------------- oracle
class Oracle:
    """Checks one step's outputs against the contract. ``check`` returns a list of violations."""

    def __init__(self, site):
        self.site = site
        self.tracker = Tracker(site)
        nc = len(site.circuits)
        self.path = []
        for k in site.chargers:
            path, c = [], k.circuit
            while c != NONE:
                path.append(c)
                c = site.circuits[c].parent
            self.path.append(path)
        self.power_cap = [c.power_limit_w * 1000 // site.params.voltage_v if c.power_limit_w else None
                          for c in site.circuits]
        self.children = [[] for _ in range(nc)]
        for i, c in enumerate(site.circuits):
            if c.parent != NONE:
                self.children[c.parent].append(i)

    # -- the documented counting rule
    def counting(self, k, out, now):
        """(kind, conductor terms) for charger k this step. kind: 'lost', 'idle' (not demanding) or
        'demand'. For a demanding charger: active_before = conductors counted at the start of the step
        (a charging charger with some conductors >= active_threshold loads only those, otherwise all
        conductors of its phase mode), drawn = its measured draw (max over those), m = its counted draw
        max(drawn, previous set-point, set-points lowered within follow_time_ms), active_after = conductors
        its set-point applies to (conductor 0 alone after a 3p->1p switch in this step)."""
        kc, tr = self.site.chargers[k], self.tracker
        if tr.kladder[k].down:
            return "lost", None
        if tr.state[k] not in DEMANDING:
            return "idle", None
        switched = bool(out.flags & CHARGER_SWITCHED) and out.phases == 1
        mode = 3 if switched else out.phases
        conductors = [0, 1, 2] if (kc.phases == 3 and mode == 3) else [0]
        meas = tr.meas[k]
        thr = self.site.params.active_threshold_ma
        active = conductors
        narrowed = tr.state[k] == STATE_CHARGING and tr.settled(k, now) and any(meas[i] >= thr for i in conductors)
        if narrowed:
            active = [i for i in conductors if meas[i] >= thr]
        drawn = max(meas[i] for i in active)
        m = max(drawn, tr.prev_sp[k], tr.held(k, now))
        after = [0] if switched else active
        return "demand", (active, m, after, drawn, narrowed)

    def check(self, now, meters, chargers, outs, couts, *, reasons=False, work_conserving=False):
        """Violations of the contract in this step (empty list = fine). Safety, grid, ladder, base,
        allocation, headroom and status are always checked; ``reasons`` adds "a charger limited by a
        circuit names a lane that cannot take its next step", ``work_conserving`` (only meaningful with
        ramp and reclaim off) extends that to every admitted charger below its max."""
        site, tr, p = self.site, self.tracker, self.site.params
        tr.ingest(now, meters, chargers)
        tr.switched_up(outs)
        nc, nk = len(site.circuits), len(site.chargers)
        bad = []
        circ = site.circuits

        def fail(msg):
            bad.append(f"t={now}: {msg}")

        # ---- per charger: validity of the set-point, reasons that follow from the state alone
        info = []
        for k in range(nk):
            kc, o = site.chargers[k], outs[k]
            kind, cnt = self.counting(k, o, now)
            info.append((kind, cnt))
            sp = o.setpoint_ma
            if sp != 0 and not (kc.min_ma <= sp <= kc.max_ma and sp % kc.step_ma == 0):
                fail(f"k{k}: set-point {sp} not 0 and not in [{kc.min_ma}, {kc.max_ma}] on grid {kc.step_ma}")
            if o.phases not in (1, kc.phases) or (not kc.can_switch_phases and o.phases != kc.phases):
                fail(f"k{k}: phases {o.phases} for a {kc.phases}-phase charger (switch={kc.can_switch_phases})")
            lost_flag = bool(o.flags & CHARGER_LOST)
            if lost_flag != (kind == "lost"):
                fail(f"k{k}: lost flag {lost_flag} but the ladder says lost={kind == 'lost'}")
            if kind == "lost":
                held = tr.prev_sp[k]
                if sp != held:
                    fail(f"k{k}: lost charger's set-point {sp} not held at {held}")
                want = REASON_RECOVERING if tr.kladder[k].fresh(now) else REASON_FAILSAFE
                if o.reason != want:
                    fail(f"k{k}: lost charger reason {o.reason}, expected {want}")
            elif kind == "idle":
                want = {STATE_FAULT: REASON_FAULT, STATE_UNAVAILABLE: REASON_UNAVAILABLE}.get(
                    tr.state[k], REASON_NOT_CONNECTED)
                if sp != 0 or o.reason != want:
                    fail(f"k{k}: not demanding (state {tr.state[k]}) but sp={sp} reason={o.reason}")
            if o.reason == REASON_CHARGER_MAX and sp != kc.max_ma:
                fail(f"k{k}: reason 'charger max' but sp {sp} != max {kc.max_ma}")
            if o.limit_circuit != NONE:
                if o.limit_circuit not in self.path[k]:
                    fail(f"k{k}: reason names circuit c{o.limit_circuit}, not on its path {self.path[k]}")
                elif o.limit_lane == 3 and self.power_cap[o.limit_circuit] is None:
                    fail(f"k{k}: reason names the power lane of c{o.limit_circuit}, which has no cap")
            if kind == "demand" and not (o.flags & CHARGER_SWITCHED) and \
                    bool(o.flags & CHARGER_NARROWED) != cnt[4]:
                fail(f"k{k}: narrowed flag {bool(o.flags & CHARGER_NARROWED)} but counted conductors {cnt[0]} "
                     f"(on since {tr.on_since[k]}, last switch {tr.last_switch[k]}, meas {tr.meas[k]})")
            if (o.flags & CHARGER_ADMITTED) and kind != "demand":
                fail(f"k{k}: admitted but not demanding")
            if kind == "demand" and sp > 0 and not (o.flags & CHARGER_ADMITTED):
                fail(f"k{k}: sp {sp} but not admitted")

        # ---- per circuit and lane: F (fixed: base + reserves + other draws), D (drawn), P (transition-
        # safe: max(set-point, draw) per conductor), S (once the EVs follow: set-points)
        F = [[0] * 3 for _ in range(nc)]
        D = [[0] * 3 for _ in range(nc)]
        DU = [[0] * 3 for _ in range(nc)]   # D with holds as the bounded (merged) staircase counts them
        P = [[0] * 3 for _ in range(nc)]
        S = [[0] * 3 for _ in range(nc)]
        alloc = [[0] * 3 for _ in range(nc)]
        evload = [[0] * 3 for _ in range(nc)]
        evsum = [[0] * 3 for _ in range(nc)]
        on_lane = [[[] for _ in range(3)] for _ in range(nc)]
        for k in range(nk):
            kc, o = site.chargers[k], outs[k]
            kind, cnt = info[k]
            meas = tr.meas[k]
            sp = o.setpoint_ma
            c = kc.circuit
            for i in range(kc.phases):
                ph = kc.phase_map[i]
                if kind == "lost":
                    r = max(sp, kc.failsafe_ma)
                    F[c][ph] += r
                    D[c][ph] += r
                    DU[c][ph] += r
                    P[c][ph] += r
                    S[c][ph] += r
                    alloc[c][ph] += sp
                    continue
                evsum[c][ph] += meas[i]
                if kind == "idle":
                    for a in (F, D, DU, P, S):
                        a[c][ph] += meas[i]
                    continue
                active, m, after = cnt[:3]
                spi = sp if i in after else 0
                draw = m if i in active else meas[i]
                if i not in active:
                    F[c][ph] += meas[i]
                    S[c][ph] += meas[i]
                D[c][ph] += draw
                DU[c][ph] += max(m, tr.stair_held(k, now)) if i in active else meas[i]
                P[c][ph] += max(spi, draw)
                S[c][ph] += spi
                evload[c][ph] += max(spi, draw) if i in active or i in after else 0
                if i in after:
                    alloc[c][ph] += sp
                    on_lane[c][ph].append(k)
        # expected base: meter minus the EVs below it (lost chargers' draws stay in), or fallback
        base = [[0] * 3 for _ in range(nc)]
        for c in range(nc - 1, -1, -1):
            cc = circ[c]
            for ph in range(3):
                if cc.has_meter and not tr.mladder[c].down:
                    base[c][ph] = tr.meter[c][ph] - evsum[c][ph]
                elif cc.has_meter:
                    base[c][ph] = cc.fallback_base_ma[ph]
                else:
                    base[c][ph] = cc.fallback_base_ma[ph] + sum(base[d][ph] for d in self.children[c])
            if cc.parent != NONE:
                for a in (F, D, DU, P, S, alloc, evsum, evload):
                    for ph in range(3):
                        a[cc.parent][ph] += a[c][ph]
                for ph in range(3):
                    on_lane[cc.parent][ph].extend(on_lane[c][ph])
        for c in range(nc):
            for a in (F, D, DU, P, S):
                for ph in range(3):
                    a[c][ph] += base[c][ph]

        subtree = [[] for _ in range(nc)]
        for k in range(nk):
            for c in self.path[k]:
                subtree[c].append(k)
        limiting = set(o.limit_circuit for o in outs if o.limit_circuit != NONE)
        for c in range(nc):
            cc, co = circ[c], couts[c]
            if list(co.base_ma) != [clamp32(v) for v in base[c]]:
                fail(f"c{c}: reported base {list(co.base_ma)} != {base[c]} (meter {tr.meter[c]}, stale="
                     f"{tr.mladder[c].down})")
            if list(co.allocated_ma) != [clamp32(v) for v in alloc[c]]:
                fail(f"c{c}: reported allocation {list(co.allocated_ma)} != {alloc[c]}")
            lanes = [(ph, cc.limit_ma[ph] - cc.margin_ma, F[c][ph], D[c][ph], P[c][ph], S[c][ph],
                      on_lane[c][ph]) for ph in range(3)]
            if self.power_cap[c] is not None:
                lanes.append((3, self.power_cap[c], sum(F[c]), sum(D[c]), sum(P[c]), sum(S[c]),
                              sorted(set(on_lane[c][0] + on_lane[c][1] + on_lane[c][2]))))
            base_over = over = upper_over = False
            for ln, cap, f, d, post, s, who in lanes:
                # the core counts lowered set-points on a bounded staircase: a merge keeps the larger
                # value until the later expiry, so its counted draws may exceed the exact ones (safe)
                du = DU[c][ln] if ln < 3 else sum(DU[c])
                if f <= cap < du:
                    upper_over = True
                lane = f"c{c} {'L1 L2 L3 power'.split()[ln]}"
                reported = co.headroom_ma[ln] if ln < 3 else co.power_headroom_ma
                # reported headroom also keeps back what waiting (transition) chargers still wait for
                exact = all(now >= tr.inexact_until[k] and outs[k].reason not in (REASON_TRANSITION,
                                                                                     REASON_UNBALANCE)
                            for k in subtree[c])
                if reported > clamp32(cap - post) or (exact and reported != clamp32(cap - post)):
                    fail(f"{lane}: reported headroom {reported} != limit - margin - loads = {cap - post}")
                if f > cap:                                   # base load alone breaks the lane
                    base_over = True
                    for k in who:
                        if outs[k].setpoint_ma != 0:
                            fail(f"{lane}: base load {f} > {cap} but k{k} has sp {outs[k].setpoint_ma}")
                elif d > cap:                                 # the measured draws already break it
                    over = True
                    for k in who:
                        was, drawn = tr.prev_sp[k], info[k][1][3]
                        if outs[k].setpoint_ma > max(was, drawn):
                            fail(f"{lane}: overloaded ({d} > {cap}) but k{k} raised from {was} to "
                                 f"{outs[k].setpoint_ma} above its draw {drawn}")
                    if s > cap:
                        fail(f"{lane}: overloaded and set-points do not fit once EVs follow: {s} > {cap}")
                elif post > cap:
                    fail(f"{lane}: capacity broken: loads + sum max(set-point, draw) = {post} > {cap}")
            if bool(co.status & CIRCUIT_BASE_OVERLOAD) != base_over:
                fail(f"c{c}: base_overload status {bool(co.status & CIRCUIT_BASE_OVERLOAD)} != {base_over}")
            # dlb.h: OVERLOADED = base + counted draws (m, stage 5) exceed a lane before this step's cut.
            # Exact when the staircase is; after a merge the core may count more (never less).
            flagged = bool(co.status & CIRCUIT_OVERLOADED)
            if flagged != (over or base_over) and not (flagged and upper_over):
                fail(f"c{c}: overloaded status {flagged} != {over or base_over}")
            if bool(co.status & CIRCUIT_LIMITING) != (c in limiting):
                fail(f"c{c}: limiting status {bool(co.status & CIRCUIT_LIMITING)} != {c in limiting}")
            if cc.has_meter:
                ml = tr.mladder[c]
                want = 0 if not ml.down else (CIRCUIT_METER_RECOVERING if ml.fresh(now) else CIRCUIT_METER_STALE)
                got = co.status & (CIRCUIT_METER_STALE | CIRCUIT_METER_RECOVERING)
                if got != want:
                    fail(f"c{c}: meter status bits {got} != {want}")
            elif co.status & (CIRCUIT_METER_STALE | CIRCUIT_METER_RECOVERING):
                fail(f"c{c}: unmetered circuit flagged meter stale")
            # unbalance: a charger on fewer than 3 phases is only raised above its draw while the EV load
            # on its phases stays within the limit of the least-loaded phase it does not use. "Its draw"
            # is the counted draw m, which the core takes from its staircase of held set-points: after a
            # merge that may exceed the exact m until the merged entry expires (dlb.h), and up to that
            # value nothing is raised (it is counted as EV load already, as in the status check above)
            u = cc.unbalance_limit_ma
            if u > 0:
                for k in range(nk):
                    kind, cnt = info[k]
                    if kind != "demand" or c not in self.path[k] or \
                            outs[k].setpoint_ma <= max(cnt[1], tr.stair_held(k, now)):
                        continue
                    used = {site.chargers[k].phase_map[i] for i in cnt[2]}
                    if len(used) == 3:
                        continue
                    low = min(evload[c][q] for q in range(3) if q not in used)
                    for ph in used:
                        if evload[c][ph] - low > u:
                            fail(f"c{c}: k{k} raised on L{ph + 1} to {outs[k].setpoint_ma} although EV load "
                                 f"{evload[c]} is unbalanced beyond {u}")

        # ---- work conservation: an admitted charger below its max names a lane without room
        if work_conserving:
            for k in range(nk):
                kind, cnt = info[k]
                kc, o = site.chargers[k], outs[k]
                if kind != "demand" or not (o.flags & CHARGER_ADMITTED) or o.setpoint_ma >= kc.max_ma:
                    continue
                msg = self._no_room(k, kc, o, cnt, couts, evload)
                if msg:
                    fail(f"k{k}: admitted at {o.setpoint_ma} < max {kc.max_ma}: {msg}")
        elif reasons:
            # reason 'circuit' for 0 < sp < max: the named lane cannot take another step
            for k in range(nk):
                kind, cnt = info[k]
                kc, o = site.chargers[k], outs[k]
                if kind == "demand" and o.reason == REASON_CIRCUIT and 0 < o.setpoint_ma < kc.max_ma:
                    msg = self._no_room(k, kc, o, cnt, couts, evload)
                    if msg:
                        fail(f"k{k}: reason circuit at {o.setpoint_ma}: {msg}")
        for k, o in enumerate(outs):          # 'overload' names a lane that is overloaded
            if o.reason == REASON_OVERLOAD:
                c, ln = o.limit_circuit, o.limit_lane
                if c == NONE:
                    fail(f"k{k}: reason overload names no circuit")
                    continue
                hr = couts[c].headroom_ma[ln] if ln < 3 else couts[c].power_headroom_ma
                if hr >= 0 or not (couts[c].status & CIRCUIT_OVERLOADED):
                    fail(f"k{k}: reason overload on c{c} lane {ln}, but headroom {hr}, status {couts[c].status}")
        tr.remember(now, outs)
        return bad

    def _no_room(self, k, kc, o, cnt, couts, evload):
        """'' if the lane the charger names cannot take its next grid value, else why it could.

        The next value is sp + step (or min_ma from 0). On a phase lane it needs (next - draw) more when
        the charger already counts at its draw m, on the power lane that times its phase count. A charger
        still drawing more than its set-point (m > sp) is being reduced: the capacity its EV will free
        belongs to the chargers it is reduced for, so only the naming is checked for it."""
        active, m, after = cnt[:3]
        sp = o.setpoint_ma
        if o.reason not in (REASON_CIRCUIT, REASON_TRANSITION, REASON_UNBALANCE, REASON_OVERLOAD) \
                or o.limit_circuit == NONE:
            return f"reason {model.REASON_NAMES[o.reason]} names no full lane"
        c, ln = o.limit_circuit, o.limit_lane
        if o.reason == REASON_OVERLOAD:
            hr = couts[c].headroom_ma[ln] if ln < 3 else couts[c].power_headroom_ma
            return "" if hr < 0 else f"overload named on c{c} lane {ln} with headroom {hr}"
        used = {kc.phase_map[i] for i in after}
        if ln < 3 and ln not in used:
            return f"names L{ln + 1} of c{c}, which it does not load ({sorted(used)})"
        if m > sp and sp > 0:
            return ""
        nxt = sp + kc.step_ma if sp > 0 else kc.min_ma
        need = nxt - max(sp, m)
        if need <= 0:
            return ""
        if o.reason == REASON_UNBALANCE:
            u = self.site.circuits[c].unbalance_limit_ma
            low = min(evload[c][q] for q in range(3) if q not in used) if len(used) < 3 else None
            if u <= 0 or low is None:
                return f"unbalance named on c{c} (limit {u}, phases {sorted(used)})"
            # The unbalance limit is not headroom: it is checked in admission order, and chargers raised
            # after this one on the other phases may loosen it by the end of the step. Only the naming is
            # checked here (the limit itself is checked for every raise in Oracle.check).
            return ""
        a = 1 if ln < 3 else len(used)
        hr = couts[c].headroom_ma[ln] if ln < 3 else couts[c].power_headroom_ma
        if hr >= need * a:
            return f"c{c} {'L1 L2 L3 power'.split()[ln]} still has headroom {hr} >= {need * a}"
        return ""


def clamp32(v):
    return max(-INT32_MAX - 1, min(INT32_MAX, v))


def copy_inputs(meters, chargers):
    return ([MeterInput(m.fresh, list(m.current_ma)) for m in meters],
            [ChargerInput(c.fresh, c.state, list(c.current_ma), c.session_update, c.departure_in_ms,
                          c.energy_need_wh) for c in chargers])


def run_world(site, seed, steps, backend="c", *, check=True, reasons=False, work_conserving=False,
              world_kw=None, dt_choices=(1000,)):
    """Drive a World for ``steps`` cycles against one backend; check every step with the oracle.
    Returns the list of (outs, couts) per step. Raises AssertionError on the first violation."""
    from dlbrig.core import Allocator
    rnd = random.Random(seed)
    world = World(site, rnd, **(world_kw or {}))
    alloc = Allocator(site, backend=backend)
    oracle = Oracle(site)
    trace = []
    for step in range(steps):
        meters, chargers = world.inputs()
        outs, couts = alloc.step_raw(world.now, meters, chargers)
        if check:
            bad = oracle.check(world.now, meters, chargers, outs, couts, reasons=reasons,
                               work_conserving=work_conserving)
            assert not bad, f"step {step} ({backend}):\n  " + "\n  ".join(bad[:12])
        trace.append((outs, couts))
        world.advance(outs, rnd.choice(dt_choices))
    return trace
