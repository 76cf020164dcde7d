"""The executable specification of the allocator core.

This is ``csrc/dlb.c`` in plain Python over the same integers (mA, ms, W, Wh), written to be read.
Stage for stage it computes the same values in the same order, so the two must agree bit for bit on
every input; ``tests/core/test_differential.py`` enforces it. Where C needs an indexed heap or a
merge sort with scratch memory, this file uses ``heapq`` with lazy invalidation and ``sorted``: the
results are identical because every ordering is total (ties broken by index). For speed, C also
presorts the fill's events once at init, re-keys its heap once per batch of same-level events and
caches per-path minima; each is shown in dlb.c to visit the events in exactly this file's order.

Read the module top to bottom: :meth:`ReferenceCore.step` calls the stages in order.
"""
from __future__ import annotations

import heapq

from .model import (
    CHARGER_ADMITTED, CHARGER_LOST, CHARGER_NARROWED, CHARGER_PROBING, CHARGER_RECLAIMED,
    CHARGER_SWITCHED,
    CIRCUIT_BASE_OVERLOAD, CIRCUIT_LIMITING, CIRCUIT_METER_RECOVERING, CIRCUIT_METER_STALE,
    CIRCUIT_OVERLOADED, LANE_POWER, MAX_CURRENT_MA, NONE, PHASES, POLICY_EDF, POLICY_FAIR,
    POLICY_FIFO, POLICY_LLF, POLICY_PRIORITY, Q, REASON_CHARGER_MAX, REASON_CIRCUIT, REASON_EV,
    REASON_FAILSAFE, REASON_FAULT, REASON_MIN_OFF, REASON_NOT_CONNECTED, REASON_OVERLOAD,
    REASON_RAMP, REASON_RECOVERING, REASON_ROTATION, REASON_SCARCITY, REASON_START_CAP,
    REASON_TRANSITION, REASON_UNAVAILABLE, REASON_UNBALANCE, STATE_CHARGING, STATE_CONNECTED_IDLE,
    STATE_DISCONNECTED, STATE_EV_SUSPENDED, STATE_FAULT, STATE_UNAVAILABLE, ChargerOutput,
    CircuitOutput, validate,
)

HOUR_MS = 3_600_000
INF = 1 << 62                 # "no constraint" for lanes without a cap
KEY_PKEY_BITS = 52
KEY_PKEY_MAX = (1 << KEY_PKEY_BITS) - 1
LAXITY_OFFSET = 1 << 51
INT32_MAX = 2**31 - 1
HOLDS = 4                     # dlb.c: DLB_HOLDS
EV_HISTORY = 12               # dlb.c: DLB_EV_HISTORY

# admission tiers below the must-stay group (see _admission_key)
TIER_STARVING, TIER_STICKY, TIER_OTHER, TIER_IDLE = 0, 1, 2, 3

KIND_DEMAND, KIND_NODEMAND, KIND_LOST = 0, 1, 2
DEMANDING = (STATE_CONNECTED_IDLE, STATE_CHARGING, STATE_EV_SUSPENDED)


def floor_grid(v: int, step: int) -> int:
    return (v // step) * step


def ceil_grid(v: int, step: int) -> int:
    return -((-v) // step) * step


def clamp32(v: int) -> int:
    return max(-INT32_MAX - 1, min(INT32_MAX, v))


class _ChargerState:
    """What the core remembers about one charger between steps (dlb.c: struct charger_state)."""

    def __init__(self, installed_phases: int):
        self.seen = False            # ever had a reading
        self.t_last = 0              # time of the last accepted reading
        self.state = STATE_DISCONNECTED
        self.meas = [0, 0, 0]        # per conductor, mA
        self.lost = True             # never answered: counted at its reserve until the first reading
        self.ok_since = NONE
        self.recover_at_once = True  # no failure yet: the first reading is trusted immediately
        self.sp = 0                  # last set-point
        self.mode = installed_phases  # phases in use (1p/3p switching)
        self.on_since = NONE
        self.off_since = NONE
        self.wait_since = NONE
        self.starts = []             # start times of the last DLB_MAX_STARTS starts
        self.in_session = False
        self.arrival = 0
        self.departure = NONE        # absolute ms
        self.energy_need_wh = -1
        self.delivered_mams = 0      # sum over conductors of mA x ms
        self.switches = 0
        self.last_switch = NONE
        self.up_since = NONE
        self.below_since = NONE
        self.reclaim_cap = 0         # 0 = not reclaimed
        self.reclaimed_at = NONE
        self.probing = False
        self.probe_since = NONE
        self.holds = []              # (set-point, until): lowered set-points the EV may still apply
        # the value holds[0] is sure to keep until its expiry: its own, or after a merge the younger of
        # the two it merged (the older one's own expiry is gone, see _remember)
        self.hold_lo = 0


class _MeterState:
    def __init__(self):
        self.seen = False
        self.t_last = 0
        self.ma = [0, 0, 0]
        self.stale = True
        self.ok_since = NONE
        self.recover_at_once = True
        self.probe_owner = NONE      # the one charger of this circuit allowed to probe upward
        self.ev_hist = []            # [t_start, [3]]: smallest EV sums below the meter, per time bucket


class ReferenceCore:
    """Same contract as the C core: ``step(now_ms, meters, chargers) -> (charger_outputs, circuit_outputs)``.

    ``meters`` has one :class:`~dlbrig.core.model.MeterInput` per circuit, ``chargers`` one
    :class:`~dlbrig.core.model.ChargerInput` per charger.
    """

    def __init__(self, params, circuits, chargers):
        validate(params, circuits, chargers)
        self.p = params
        self.circuits = circuits
        self.chargers = chargers
        nc, nk = len(circuits), len(chargers)
        self.children = [[] for _ in range(nc)]
        for i, c in enumerate(circuits):
            if c.parent != NONE:
                self.children[c.parent].append(i)
        # path from the charger's own circuit up to its root
        self.path = []
        for k in chargers:
            path, c = [], k.circuit
            while c != NONE:
                path.append(c)
                c = circuits[c].parent
            self.path.append(path)
        # chargers in depth-first order of their circuits: every subtree is one contiguous range
        pre = []
        stack = [i for i in range(nc) if circuits[i].parent == NONE][::-1]
        while stack:
            c = stack.pop()
            pre.append(c)
            stack.extend(self.children[c][::-1])
        at = [[] for _ in range(nc)]
        for i, k in enumerate(chargers):
            at[k.circuit].append(i)
        self.dfs = []
        self.range_start = [0] * nc
        self.range_end = [0] * nc
        for c in pre:
            self.range_start[c] = len(self.dfs)
            self.dfs.extend(at[c])
        for c in reversed(pre):
            end = self.range_start[c] + len(at[c])
            for d in self.children[c]:
                end = max(end, self.range_end[d])
            self.range_end[c] = end
        self.power_cap = [c.power_limit_w * 1000 // params.voltage_v if c.power_limit_w else INF
                          for c in circuits]
        self.ks = [_ChargerState(k.phases) for k in chargers]
        self.ms = [_MeterState() for _ in circuits]
        self.last_now = NONE

    # ------------------------------------------------------------------ helpers
    def lanes_of(self, k, phases_used, n):
        """(lane id, circuit, lane, factor) for every constraint charger k loads: its path's phase lanes
        for the site phases it uses, then the power lane where the circuit has a power cap."""
        out = []
        for c in self.path[k]:
            for ph in phases_used:
                out.append((c * 4 + ph, c, ph, 1))
            if self.power_cap[c] != INF:
                out.append((c * 4 + LANE_POWER, c, LANE_POWER, n))
        return out

    def session_energy_wh(self, k):
        return self.ks[k].delivered_mams * self.p.voltage_v // 3_600_000_000

    # ------------------------------------------------------------------ the step
    def step(self, now, meters, chargers):
        if now < 0 or (self.last_now != NONE and now < self.last_now):
            raise ValueError("now_ms earlier than the previous step's, or negative")
        p, cfg, nc, nk = self.p, self.chargers, len(self.circuits), len(self.chargers)
        dt = 0 if self.last_now == NONE else now - self.last_now
        self.last_now = now

        # ---- 1. ingest: energy over the elapsed interval, then the new readings and their ages
        for k in range(nk):
            s = self.ks[k]
            if s.in_session and not s.lost:
                s.delivered_mams += sum(s.meas[:cfg[k].phases]) * dt
        for c in range(nc):
            self._ingest_meter(c, meters[c], now)
        for k in range(nk):
            self._ingest_charger(k, chargers[k], now)

        # ---- 2. classify chargers: demand, no demand, lost; their effective phases and draws
        kind = [0] * nk
        used = [None] * nk        # site phases the charger loads this step
        m = [0] * nk              # counted draw per used phase: max(measured, set-points in effect)
        drawn = [0] * nk          # measured draw alone (max over its active conductors)
        narrowed = [False] * nk   # counted on its measured conductors only
        for k in range(nk):
            kind[k], used[k], m[k], drawn[k], narrowed[k] = self._classify(k, now)
        # what m counts above the rule of dlb.h stage 5 at most (a merged staircase head): m - m_sure
        m_over = [m[k] - self._m_sure(k, drawn[k], now) if kind[k] == KIND_DEMAND else 0 for k in range(nk)]

        # ---- 3. base load, fixed loads and measured demand per circuit (children before parents)
        evsum = [[0, 0, 0] for _ in range(nc)]
        fixed = [[0, 0, 0, 0] for _ in range(nc)]
        meas_d = [[0, 0, 0, 0] for _ in range(nc)]
        # per phase: how much meas_d may count above the EV load of dlb.h's rule (merged staircases)
        over_d = [[0, 0, 0] for _ in range(nc)]
        childbase = [[0, 0, 0] for _ in range(nc)]
        for k in range(nk):
            s, kc, c = self.ks[k], cfg[k], cfg[k].circuit
            conductors = range(kc.phases)
            if kind[k] != KIND_LOST:
                for i in conductors:
                    evsum[c][kc.phase_map[i]] += s.meas[i]
            if kind[k] == KIND_LOST:
                r = max(s.sp, kc.failsafe_ma)
                for i in conductors:
                    fixed[c][kc.phase_map[i]] += r
                fixed[c][LANE_POWER] += r * kc.phases
            elif kind[k] == KIND_NODEMAND:
                for i in conductors:
                    fixed[c][kc.phase_map[i]] += s.meas[i]
                    fixed[c][LANE_POWER] += s.meas[i]
            else:
                for i in conductors:
                    if kc.phase_map[i] not in used[k]:   # a conductor outside its counted set
                        fixed[c][kc.phase_map[i]] += s.meas[i]
                        fixed[c][LANE_POWER] += s.meas[i]
                for ph in used[k]:
                    meas_d[c][ph] += m[k]
                    over_d[c][ph] += m_over[k]
                meas_d[c][LANE_POWER] += m[k] * len(used[k])
        base = [[0, 0, 0] for _ in range(nc)]
        for c in range(nc - 1, -1, -1):
            cc, ms = self.circuits[c], self.ms[c]
            if cc.has_meter:
                ev_seen = self._ev_window(ms, evsum[c], now)
            for ph in range(PHASES):
                if cc.has_meter and not ms.stale:
                    base[c][ph] = ms.ma[ph] - ev_seen[ph]
                elif cc.has_meter:
                    base[c][ph] = cc.fallback_base_ma[ph]
                else:
                    base[c][ph] = cc.fallback_base_ma[ph] + childbase[c][ph]
            par = cc.parent
            if par != NONE:
                for ph in range(PHASES):
                    evsum[par][ph] += evsum[c][ph]
                    childbase[par][ph] += base[c][ph]
                for ln in range(4):
                    fixed[par][ln] += fixed[c][ln]
                    meas_d[par][ln] += meas_d[c][ln]
                for ph in range(PHASES):
                    over_d[par][ph] += over_d[c][ph]
        budget = {}     # lane id -> limit - margin - base - fixed (set-point terms)
        headroom = {}   # lane id -> budget - measured draws of demanding chargers (real terms)
        status = [0] * nc
        for c in range(nc):
            cc = self.circuits[c]
            for ln in range(4):
                if ln < PHASES:
                    cap = cc.limit_ma[ln] - cc.margin_ma
                    load = base[c][ln] + fixed[c][ln]
                elif self.power_cap[c] != INF:
                    cap = self.power_cap[c]
                    load = sum(base[c]) + fixed[c][LANE_POWER]
                else:
                    continue
                budget[c * 4 + ln] = cap - load
                headroom[c * 4 + ln] = cap - load - meas_d[c][ln]
                if cap - load < 0:
                    status[c] |= CIRCUIT_BASE_OVERLOAD
                if cap - load - meas_d[c][ln] < 0:
                    status[c] |= CIRCUIT_OVERLOADED
            ms = self.ms[c]
            if cc.has_meter and ms.stale:
                fresh_ok = ms.seen and now - ms.t_last <= p.meter_timeout_ms
                status[c] |= CIRCUIT_METER_RECOVERING if fresh_ok else CIRCUIT_METER_STALE

        out = [ChargerOutput() for _ in range(nk)]
        hi = [0] * nk
        hi_reason = [0] * nk

        # ---- 4. per-charger ceilings (max, reclaim, ramp) and holds (min off, start cap)
        eligible = []
        for k in range(nk):
            o, s, kc = out[k], self.ks[k], cfg[k]
            o.phases = s.mode
            if kind[k] == KIND_LOST:
                o.setpoint_ma = s.sp
                o.reason = REASON_RECOVERING if (s.seen and now - s.t_last <= p.charger_timeout_ms) \
                    else REASON_FAILSAFE
                o.flags |= CHARGER_LOST
                continue
            if narrowed[k]:
                o.flags |= CHARGER_NARROWED
            if kind[k] == KIND_NODEMAND:
                o.reason = {STATE_FAULT: REASON_FAULT, STATE_UNAVAILABLE: REASON_UNAVAILABLE}.get(
                    s.state, REASON_NOT_CONNECTED)
                continue
            self._reclaim(k, drawn[k], now)
            hi[k], hi_reason[k] = kc.max_ma, REASON_CHARGER_MAX
            if 0 < s.reclaim_cap < hi[k]:
                hi[k], hi_reason[k] = s.reclaim_cap, REASON_EV
            if p.ramp_up_ma_per_s > 0:
                ramp_hi = max(kc.min_ma, s.sp + p.ramp_up_ma_per_s * dt // 1000) if s.sp > 0 else kc.min_ma
                if ramp_hi < hi[k]:
                    hi[k], hi_reason[k] = ramp_hi, REASON_RAMP
            hi[k] = floor_grid(hi[k], kc.step_ma)
            if s.sp == 0:
                if s.off_since != NONE and now - s.off_since < p.min_off_ms:
                    o.reason = REASON_MIN_OFF
                    continue
                if p.max_starts_per_hour and \
                        sum(1 for t in s.starts if now - t < HOUR_MS) >= p.max_starts_per_hour:
                    o.reason = REASON_START_CAP
                    continue
            eligible.append(k)

        # ---- 5. admission in policy order at the minimum current
        keyed = [(self._admission_key(k, drawn[k], now), k) for k in eligible]
        keyed.sort()
        order = [k for _, k in keyed]
        tier_of = {k: (key >> KEY_PKEY_BITS) & 3 for key, k in keyed}
        run = dict(budget)
        admitted = []
        lanes = [None] * nk
        for k in order:
            s, kc, o = self.ks[k], cfg[k], out[k]
            ln = self.lanes_of(k, used[k], len(used[k]))
            fail = self._first_short(run, ln, kc.min_ma)
            if fail is not None and kc.can_switch_phases and s.mode == 3 \
                    and s.switches < p.max_phase_switches \
                    and (s.last_switch == NONE or now - s.last_switch >= p.phase_switch_hold_ms):
                one = [kc.phase_map[0]]
                ln1 = self.lanes_of(k, one, 1)
                if self._first_short(run, ln1, kc.min_ma) is None:
                    s.mode, s.switches, s.last_switch, s.up_since = 1, s.switches + 1, now, NONE
                    # Its old draw stays counted on the old phases. On the new phase it was counted at
                    # m if that phase was one of them, else at its draw there (a fixed load): only
                    # what it gets above that is new.
                    if kc.phase_map[0] not in used[k]:
                        m[k] = s.meas[0]
                    used[k], ln, fail = one, ln1, None
                    o.phases = 1
                    o.flags |= CHARGER_SWITCHED
            if fail is not None:
                j = fail
                o.limit_circuit, o.limit_lane = j // 4, j % 4
                if budget[j] < 0:
                    o.reason = REASON_OVERLOAD
                elif s.sp > 0 and tier_of[k] == TIER_OTHER:
                    o.reason = REASON_ROTATION
                else:
                    o.reason = REASON_SCARCITY
                continue
            for j, _, _, a in ln:
                run[j] -= kc.min_ma * a
            lanes[k] = ln
            admitted.append(k)
            o.flags |= CHARGER_ADMITTED

        # ---- 6. ideal fill above the minimum
        ideal = [0] * nk
        for k in admitted:
            ideal[k] = cfg[k].min_ma
        if p.policy in (POLICY_FAIR, POLICY_PRIORITY):
            groups = [admitted]
            if p.policy == POLICY_PRIORITY:
                classes = sorted({cfg[k].priority for k in admitted}, reverse=True)
                groups = [[k for k in admitted if cfg[k].priority == cl] for cl in classes]
            for g in groups:
                self._progressive_fill(g, run, lanes, hi, ideal, m)
        else:
            for k in admitted:
                kc = cfg[k]
                room = self._run_room(run, lanes[k], hi[k] - kc.min_ma)
                x = floor_grid(kc.min_ma + max(room, 0), kc.step_ma)
                for j, _, _, a in lanes[k]:
                    run[j] -= (x - kc.min_ma) * a
                ideal[k] = x

        # ---- 7. transition safety, then 8. top-up, both in admission order over real headroom
        # EV load per phase of each circuit with an unbalance limit: max(set-point, counted draw). What a
        # charger cut in the transition still waits for is reserved in real headroom only: it is no EV
        # load (counted on an unused phase it would let another charger rise above the real load)
        evl = {c: [meas_d[c][0], meas_d[c][1], meas_d[c][2]] for c in range(nc)
               if self.circuits[c].unbalance_limit_ma > 0}
        # A merged staircase counts m above dlb.h's rule (safe for capacity: it only holds chargers back).
        # The unbalance room measured from the least-loaded unused phase must not rise by it: that phase's
        # EV load is taken as evl - evo, which never exceeds the EV load of the rule (evl never falls
        # below it), so the over-count still only holds chargers back
        evo = {c: over_d[c] for c in evl}
        hr = dict(headroom)
        sp = [0] * nk
        target = [0] * nk         # what the transition stage aimed at (reserved up to it when cut)
        for k in admitted:
            kc, t = cfg[k], ideal[k]
            over = next((j for j, _, _, _ in lanes[k] if headroom[j] < 0), None)
            cut = max(self.ks[k].sp, floor_grid(drawn[k], kc.step_ma))
            if over is not None and t > cut:
                # the lane is already overloaded: nobody on it is raised above its draw
                t = cut
                self._set_limit(out[k], (over, REASON_OVERLOAD), REASON_OVERLOAD)
                if t < kc.min_ma:
                    t = 0
            target[k] = t
            if t <= m[k]:
                sp[k] = t
                continue
            room, bind = self._room(k, t - m[k], lanes[k], used[k], hr, evl, evo)
            v = floor_grid(m[k] + max(room, 0), kc.step_ma)
            sp[k] = v if v >= kc.min_ma else 0
            self._pay(k, sp[k] - m[k], lanes[k], used[k], hr, evl)
            if sp[k] < t:
                self._set_limit(out[k], bind, REASON_TRANSITION)
                # keep what it still waits for: the top-up must not hand it to someone else
                self._pay(k, t - max(sp[k], m[k]), lanes[k], used[k], hr, evl, 0)
        for k in admitted:
            kc, o = cfg[k], out[k]
            if sp[k] == 0:
                continue
            if sp[k] < hi[k]:
                # up to m it is counted already; above, real headroom pays (none while a lane is
                # short, e.g. reserved for a charger that waits)
                # a charger cut in the transition has what it waits for reserved: counted up to target
                counted = max(sp[k], m[k], target[k])
                # its unbalance room is measured from its EV load, max(sp, m), not from counted
                room, bind = self._room(k, max(hi[k] - counted, 0), lanes[k], used[k], hr, evl, evo,
                                        counted - max(sp[k], m[k]))
                if room >= 0:
                    v = min(hi[k], floor_grid(counted + room, kc.step_ma))
                    if v > sp[k]:
                        self._pay(k, v - counted, lanes[k], used[k], hr, evl, v - max(sp[k], m[k]))
                        sp[k] = v
                keep = o.reason == REASON_OVERLOAD or \
                    (o.reason in (REASON_TRANSITION, REASON_UNBALANCE) and sp[k] < target[k])
                if sp[k] < hi[k] and not keep:
                    self._set_limit(o, bind, REASON_CIRCUIT)
            if sp[k] >= hi[k]:
                o.reason, o.limit_circuit, o.limit_lane = hi_reason[k], NONE, NONE
        for k in admitted:
            out[k].setpoint_ma = sp[k]

        # ---- 9. 1p -> 3p switch-up (takes effect next step), then remember the step
        for k in admitted:
            self._switch_up(k, sp[k], hr, now)
        for k in range(nk):
            self._remember(k, kind[k], out[k].setpoint_ma, now)
            s = self.ks[k]
            if s.reclaim_cap > 0:
                out[k].flags |= CHARGER_RECLAIMED
            if s.probing:
                out[k].flags |= CHARGER_PROBING

        # ---- circuit outputs
        alloc = [[0, 0, 0] for _ in range(nc)]
        for k in range(nk):
            c = cfg[k].circuit
            if kind[k] == KIND_DEMAND:
                for ph in used[k]:
                    alloc[c][ph] += out[k].setpoint_ma
            elif kind[k] == KIND_LOST:
                for i in range(cfg[k].phases):
                    alloc[c][cfg[k].phase_map[i]] += out[k].setpoint_ma
            if out[k].limit_circuit != NONE:
                status[out[k].limit_circuit] |= CIRCUIT_LIMITING
        for c in range(nc - 1, 0, -1):
            par = self.circuits[c].parent
            if par != NONE:
                for ph in range(PHASES):
                    alloc[par][ph] += alloc[c][ph]
        cout = []
        for c in range(nc):
            co = CircuitOutput()
            co.allocated_ma = [clamp32(v) for v in alloc[c]]
            co.headroom_ma = [clamp32(hr[c * 4 + ph]) for ph in range(PHASES)]
            co.base_ma = [clamp32(v) for v in base[c]]
            co.power_headroom_ma = clamp32(hr[c * 4 + LANE_POWER]) if self.power_cap[c] != INF \
                else INT32_MAX
            co.status = status[c]
            cout.append(co)
        return out, cout

    # ------------------------------------------------------------------ stage details
    def _ingest_meter(self, c, mi, now):
        cc, ms, p = self.circuits[c], self.ms[c], self.p
        if not cc.has_meter:
            return
        if mi.fresh and all(-MAX_CURRENT_MA <= v <= MAX_CURRENT_MA for v in mi.current_ma):
            ms.ma = list(mi.current_ma)
            ms.t_last = now
            ms.seen = True
        if not (ms.seen and now - ms.t_last <= p.meter_timeout_ms):
            if not ms.stale:
                ms.recover_at_once = False
            ms.stale, ms.ok_since = True, NONE
        else:
            if ms.ok_since == NONE:
                ms.ok_since = now
            if ms.stale and (ms.recover_at_once or now - ms.ok_since >= p.recovery_hold_ms):
                ms.stale = False

    def _ev_window(self, ms, ev, now):
        """Smallest EV sum per phase within meter_latency_ms: buckets of latency/8, at most EV_HISTORY."""
        lat = self.p.meter_latency_ms
        if lat == 0:                 # meter and charger readings taken as simultaneous
            ms.ev_hist = []
            return list(ev)
        width = max(1, lat // 8)
        h = ms.ev_hist
        if h and now - h[-1][0] < width:
            h[-1][1] = [min(a, b) for a, b in zip(h[-1][1], ev)]
        else:
            h.append([now, list(ev)])
        while h and now - h[0][0] > lat + width:
            h.pop(0)
        if len(h) > EV_HISTORY:
            h.pop(0)
        return [min(e[1][ph] for e in h) for ph in range(PHASES)]

    def _ingest_charger(self, k, ci, now):
        s, kc, p = self.ks[k], self.chargers[k], self.p
        if ci.fresh and 0 <= ci.state <= STATE_UNAVAILABLE and \
                all(0 <= v <= MAX_CURRENT_MA for v in ci.current_ma):
            if ci.state in DEMANDING and not s.in_session:
                self._start_session(k, now)
            if ci.state == STATE_DISCONNECTED and s.in_session:
                self._end_session(k)
            if ci.session_update and s.in_session:
                s.departure = now + ci.departure_in_ms if ci.departure_in_ms >= 0 else NONE
                s.energy_need_wh = ci.energy_need_wh if ci.energy_need_wh >= 0 else -1
            s.state = ci.state
            s.meas = list(ci.current_ma)
            s.t_last = now
            s.seen = True
        if not (s.seen and now - s.t_last <= p.charger_timeout_ms):
            if not s.lost:
                s.recover_at_once = False
            s.lost, s.ok_since = True, NONE
        else:
            if s.ok_since == NONE:
                s.ok_since = now
            if s.lost and (s.recover_at_once or now - s.ok_since >= p.recovery_hold_ms):
                s.lost = False

    def _start_session(self, k, now):
        s = self.ks[k]
        s.in_session, s.arrival, s.departure, s.energy_need_wh = True, now, NONE, -1
        s.delivered_mams, s.switches, s.last_switch, s.up_since = 0, 0, NONE, NONE
        s.starts = []
        s.mode = self.chargers[k].phases
        s.below_since, s.reclaim_cap, s.reclaimed_at = NONE, 0, NONE
        self._stop_probe(k)
        s.wait_since = now

    def _end_session(self, k):
        s = self.ks[k]
        s.in_session = False
        s.below_since, s.reclaim_cap, s.reclaimed_at = NONE, 0, NONE
        self._stop_probe(k)
        s.wait_since = NONE

    def _stop_probe(self, k):
        s = self.ks[k]
        if s.probing:
            owner = self.ms[self.chargers[k].circuit]
            if owner.probe_owner == k:
                owner.probe_owner = NONE
        s.probing, s.probe_since = False, NONE

    def _classify(self, k, now):
        s, kc, thr = self.ks[k], self.chargers[k], self.p.active_threshold_ma
        if s.lost:
            return KIND_LOST, [], 0, 0, False
        if s.state not in DEMANDING:
            return KIND_NODEMAND, [], 0, 0, False
        conductors = [0, 1, 2] if (kc.phases == 3 and s.mode == 3) else [0]
        active, narrowed = conductors, False
        settled = s.on_since != NONE and now - s.on_since >= self.p.follow_time_ms and \
            (s.last_switch == NONE or now - s.last_switch >= self.p.follow_time_ms)
        if s.state == STATE_CHARGING and settled and any(s.meas[i] >= thr for i in conductors):
            # e.g. a 1-phase EV on a 3-phase charger; only once the EV had time to use every conductor
            # (after a start or a phase switch), so a slow ramp is never mistaken for fewer phases
            active = [i for i in conductors if s.meas[i] >= thr]
            narrowed = True
        drawn = max(s.meas[i] for i in active)
        held = max((v for v, until in s.holds if now < until), default=0)
        return KIND_DEMAND, sorted(kc.phase_map[i] for i in active), max(drawn, s.sp, held), drawn, narrowed

    def _m_sure(self, k, drawn, now):
        """The part of a demanding charger's counted draw m that dlb.h's rule is sure to count: m itself
        unless a merged staircase head is in effect, which counts only the value it is sure to keep
        (hold_lo). Never above the rule's m, never above the counted m."""
        s = self.ks[k]
        held = max(((s.hold_lo if i == 0 else v) for i, (v, until) in enumerate(s.holds) if now < until),
                   default=0)
        return max(drawn, s.sp, held)

    def _reclaim(self, k, mk, now):
        """An EV drawing clearly less than its set-point for reclaim_hold_ms is capped at its draw plus
        a margin; after probe_interval_ms it may probe upward, one charger per circuit at a time."""
        s, kc, p = self.ks[k], self.chargers[k], self.p
        if s.sp > 0 and mk + p.reclaim_margin_ma < s.sp:
            if s.below_since == NONE:
                s.below_since = now
            elif now - s.below_since >= p.reclaim_hold_ms:
                cap = max(kc.min_ma, ceil_grid(mk + p.reclaim_margin_ma, kc.step_ma))
                s.reclaim_cap = min(cap, kc.max_ma)
                s.reclaimed_at, s.below_since = now, NONE
                self._stop_probe(k)
        else:
            s.below_since = NONE
            if s.probing and now - s.probe_since >= p.reclaim_hold_ms:
                self._stop_probe(k)          # the probe held: the EV draws what it gets
        if s.reclaim_cap > 0 and now - s.reclaimed_at >= p.probe_interval_ms:
            ms = self.ms[kc.circuit]
            if ms.probe_owner == NONE:
                ms.probe_owner = k
                s.reclaim_cap, s.probing, s.probe_since = 0, True, now

    def _admission_key(self, k, mk, now):
        s, kc, p = self.ks[k], self.chargers[k], self.p
        on = s.sp > 0
        must_stay = on and now - s.on_since < p.min_on_ms
        cls = 255 - kc.priority if p.policy == POLICY_PRIORITY else 0
        if must_stay:
            tier = 0
        elif s.reclaim_cap > 0 and mk < p.active_threshold_ma:
            tier = TIER_IDLE
        elif not on and s.wait_since != NONE and now - s.wait_since >= p.rotation_period_ms:
            tier = TIER_STARVING
        elif on and now - s.on_since < p.rotation_period_ms:
            tier = TIER_STICKY
        else:
            tier = TIER_OTHER
        if not must_stay and tier == TIER_STARVING:
            pkey = s.wait_since
        elif p.policy == POLICY_FIFO:
            pkey = s.arrival
        elif p.policy == POLICY_EDF:
            pkey = s.departure if s.departure != NONE else KEY_PKEY_MAX
        elif p.policy == POLICY_LLF:
            pkey = self._laxity_key(k, now)
        else:
            pkey = s.delivered_mams // kc.weight >> 20
        pkey = max(0, min(pkey, KEY_PKEY_MAX))
        return ((0 if must_stay else 1) << 62) | (cls << 54) | (tier << KEY_PKEY_BITS) | pkey

    def _laxity_key(self, k, now):
        s, kc, p = self.ks[k], self.chargers[k], self.p
        if s.departure == NONE or s.energy_need_wh < 0:
            return KEY_PKEY_MAX
        remaining_wh = max(0, s.energy_need_wh - self.session_energy_wh(k))
        rate_w = max(1, kc.max_ma * kc.phases * p.voltage_v // 1000)
        laxity = (s.departure - now) - remaining_wh * HOUR_MS // rate_w
        return laxity + LAXITY_OFFSET

    @staticmethod
    def _run_room(run, lanes, want):
        """How much more (per conductor) a charger can take from the set-point budget, at most want."""
        for j, _, _, a in lanes:
            want = min(want, run[j] // a)
        return want

    @staticmethod
    def _first_short(run, lanes, amount):
        for j, _, _, a in lanes:
            if run[j] < amount * a:
                return j
        return None

    def _progressive_fill(self, group, run, lanes, hi, ideal, m):
        """Weighted max-min fair filling from each charger's minimum up to its ceiling.

        A level L (integer, in mA*Q per unit of weight) rises from 0; charger k holds
        clamp(w*L, min*Q, hi*Q). A lane saturates at the largest L at which the sum over its chargers
        of factor*(value - min*Q) still fits its remaining budget*Q; then every charger on it freezes.
        Events in order of level: charger events (END before START, then by index) at a level not above
        the lowest lane level, else the lowest lane (by level, then lane id) saturates.
        """
        cfg = self.chargers
        in_group = set(group)
        D, W, ver = {}, {}, {}
        for j in run:
            D[j], W[j], ver[j] = run[j] * Q, 0, 0
        events = []
        for k in group:
            kc = cfg[k]
            if kc.min_ma < hi[k]:
                events.append((kc.min_ma * Q // kc.weight, 1, k))
                events.append((hi[k] * Q // kc.weight, 0, k))
        events.sort()
        started, frozen, value = set(), set(), {}
        heap = []

        def push(j):
            ver[j] += 1
            if W[j] > 0:
                heapq.heappush(heap, (D[j] // W[j], j, ver[j]))

        ei = 0
        while True:
            while heap and (W[heap[0][1]] == 0 or heap[0][2] != ver[heap[0][1]]):
                heapq.heappop(heap)
            lane_level = heap[0][0] if heap else INF
            ev_level = events[ei][0] if ei < len(events) else INF
            if lane_level == INF and ev_level == INF:
                break
            if ev_level <= lane_level:
                level, typ, k = events[ei]
                ei += 1
                if k in frozen:
                    continue
                w = cfg[k].weight
                if typ == 1:   # START: the charger begins to grow past its minimum
                    started.add(k)
                    for j, _, _, a in lanes[k]:
                        W[j] += a * w
                        D[j] += a * cfg[k].min_ma * Q
                        push(j)
                else:          # END: the charger reaches its ceiling
                    frozen.add(k)
                    value[k] = hi[k]
                    for j, _, _, a in lanes[k]:
                        W[j] -= a * w
                        D[j] -= a * hi[k] * Q
                        push(j)
            else:
                level, j = heap[0][0], heap[0][1]
                c, ln = divmod(j, 4)
                for pos in range(self.range_start[c], self.range_end[c]):
                    k = self.dfs[pos]
                    if k not in in_group or k in frozen:
                        continue
                    lk = lanes[k]
                    if not any(jj == j for jj, _, _, _ in lk):
                        continue
                    frozen.add(k)
                    w = cfg[k].weight
                    if k in started:
                        value[k] = w * level // Q
                        for jj, _, _, a in lk:
                            W[jj] -= a * w
                            D[jj] -= a * w * level
                            push(jj)
                    else:
                        value[k] = cfg[k].min_ma
                push(j)
        for k in group:
            kc = cfg[k]
            x = floor_grid(value.get(k, hi[k] if kc.min_ma >= hi[k] else kc.min_ma), kc.step_ma)
            x = max(x, kc.min_ma)
            for j, _, _, a in lanes[k]:
                run[j] -= (x - kc.min_ma) * a
            ideal[k] = x
        # What flooring to the step grid left stays in the group before any lower class: first to the
        # chargers already counted above their share (keeping costs nothing and nothing churns), then
        # to the others, each pass in admission order.
        for k in [k for k in group if m[k] > ideal[k]] + [k for k in group if m[k] <= ideal[k]]:
            kc = cfg[k]
            room = self._run_room(run, lanes[k], hi[k] - ideal[k])
            extra = floor_grid(ideal[k] + max(room, 0), kc.step_ma) - ideal[k]
            if extra > 0:
                for j, _, _, a in lanes[k]:
                    run[j] -= extra * a
                ideal[k] += extra

    def _room(self, k, want, lanes, used, hr, evl, evo, own=0):
        """How far charger k may rise over real headroom (and the unbalance limit), and which lane binds.
        The unbalance limit measures its phases' EV load as counted (evl, at least the rule's) against the
        least-loaded unused phase's at its sure part (evl - evo, at most the rule's)."""
        room, bind = want, None
        for j, c, ln, a in lanes:
            r = hr[j] // a
            if r < room:
                room, bind = r, (j, REASON_CIRCUIT)
        if len(used) < PHASES:
            for c in self.path[k]:
                if c not in evl:
                    continue
                u = self.circuits[c].unbalance_limit_ma
                low = min(evl[c][q] - evo[c][q] for q in range(PHASES) if q not in used)
                for ph in used:
                    r = u + low - evl[c][ph] - own
                    if r < room:
                        room, bind = r, (c * 4 + ph, REASON_UNBALANCE)
        return room, bind

    def _pay(self, k, cost, lanes, used, hr, evl, real=None):
        """Charger k takes cost more of real headroom; its EV load rises by real (default: cost; 0 for a
        reservation, more for a raise above a reservation)."""
        real = cost if real is None else real
        if cost > 0:
            for j, c, ln, a in lanes:
                hr[j] -= cost * a
        if real > 0:
            for c in self.path[k]:
                if c in evl:
                    for ph in used:
                        evl[c][ph] += real

    @staticmethod
    def _set_limit(o, bind, default_reason):
        if bind is None:
            o.reason, o.limit_circuit, o.limit_lane = default_reason, NONE, NONE
            return
        j, why = bind
        o.reason = REASON_UNBALANCE if why == REASON_UNBALANCE else default_reason
        o.limit_circuit, o.limit_lane = j // 4, j % 4

    def _switch_up(self, k, spk, hr, now):
        s, kc, p = self.ks[k], self.chargers[k], self.p
        if not (kc.can_switch_phases and s.mode == 1 and s.switches < p.max_phase_switches):
            return
        others = [kc.phase_map[1], kc.phase_map[2]]
        room = spk == kc.max_ma
        for c in self.path[k]:
            for ph in others:
                room = room and hr[c * 4 + ph] >= kc.min_ma
            if self.power_cap[c] != INF:
                room = room and hr[c * 4 + LANE_POWER] >= 2 * kc.min_ma
        if not room:
            s.up_since = NONE
            return
        if s.up_since == NONE:
            s.up_since = now
        elif now - s.up_since >= p.phase_switch_hold_ms and \
                (s.last_switch == NONE or now - s.last_switch >= p.phase_switch_hold_ms):
            s.mode, s.switches, s.last_switch, s.up_since = 3, s.switches + 1, now, NONE

    def _remember(self, k, kind, spk, now):
        s = self.ks[k]
        if spk < s.sp:
            # The EV may still apply the higher value for follow_time_ms. Holds form a staircase:
            # values fall as expiries rise; a new hold hides the lower ones before it; at most HOLDS
            # entries, the two oldest merged conservatively (larger value, later expiry).
            keep = [i for i, (v, u) in enumerate(s.holds) if u > now and v > s.sp]
            holds = [s.holds[i] for i in keep] + [(s.sp, now + self.p.follow_time_ms)]
            # hold_lo: what the head is sure to keep until its expiry (its own value unless merged)
            lo = s.hold_lo if keep and keep[0] == 0 else holds[0][0]
            if len(holds) > HOLDS:
                # the merged head keeps the older value to the younger one's expiry; until then the rule
                # is only sure of the younger one's value (the older one's expiry is gone)
                lo = holds[1][0]
                holds[0:2] = [(holds[0][0], holds[1][1])]
            s.holds, s.hold_lo = holds, lo
        if spk > 0 and s.sp == 0:
            s.on_since, s.off_since, s.wait_since = now, NONE, NONE
            s.starts = (s.starts + [now])[-16:]
        elif spk == 0 and s.sp > 0:
            s.off_since, s.on_since = now, NONE
        if kind == KIND_DEMAND and spk == 0 and s.wait_since == NONE:
            s.wait_since = now
        if kind == KIND_NODEMAND:
            s.wait_since = NONE
            if s.probing:
                self._stop_probe(k)
        s.sp = spk
