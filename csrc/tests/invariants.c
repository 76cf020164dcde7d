/*
 * invariants.c - independent checker of the allocator contract; see invariants.h.
 * Written from dlb.h and DESIGN.md only: no dlb.c internals.
 */
#include "invariants.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HOUR_MS 3600000
#define TNONE ((int64_t)-1)
#define BIG ((int64_t)1 << 62)
#define INV_HOLDS 4 /* reference.py HOLDS: lowered set-points remembered per charger */

#define INV_EV_HIST 256 /* raw EV sums remembered per metered circuit (meter_latency_ms window) */

typedef struct {
    int64_t t_last, ok_since;
    int64_t ma[DLB_PHASES];
    int seen, stale, recover_at_once;
    int64_t hist_t[INV_EV_HIST], hist_ev[INV_EV_HIST][DLB_PHASES]; /* ring of (time, EV sum) */
    int n_hist, head;
} meter_model;

/* Smallest EV sum per phase over readings with now - t <= span (the current one included). */
static void ev_min(const meter_model *m, int64_t now, int64_t span, int64_t *out)
{
    for (int ph = 0; ph < DLB_PHASES; ph++) {
        out[ph] = INT64_MAX;
    }
    for (int i = 0; i < m->n_hist; i++) {
        int j = (m->head - 1 - i + INV_EV_HIST) % INV_EV_HIST;
        if (now - m->hist_t[j] > span) {
            break;
        }
        for (int ph = 0; ph < DLB_PHASES; ph++) {
            if (m->hist_ev[j][ph] < out[ph]) {
                out[ph] = m->hist_ev[j][ph];
            }
        }
    }
}

typedef struct {
    int64_t t_last, ok_since, on_since, off_since;
    int64_t starts[64];
    int n_starts;
    int64_t meas[DLB_PHASES];
    int32_t state;
    int seen, lost, recover_at_once, in_session;
    int64_t prev_sp;
    /* lowered set-points the EV may still apply (dlb.h stage 5; the staircase of reference.py _remember) */
    int64_t hold_sp[INV_HOLDS + 1], hold_until[INV_HOLDS + 1];
    int n_holds;
} charger_model;

/* per-step derived values of one charger */
typedef struct {
    int kind;               /* 0 demand, 1 no demand, 2 lost */
    uint32_t act;           /* counted conductors before the step (bit i = conductor i) */
    uint32_t spc;           /* conductors the set-point applies to after the step */
    int64_t drawn;          /* measured draw (max over act) */
    int64_t m;              /* counted draw: max(drawn, previous set-point, set-points held) */
    int64_t pre[DLB_PHASES];/* counted draw per conductor before the step */
    int n_act, n_spc;
} charger_step;

struct inv_checker {
    dlb_params p;
    size_t nc, nk;
    dlb_circuit *circ;
    dlb_charger *chg;
    meter_model *mm;
    charger_model *km;
    charger_step *kx;
    /* per circuit, per lane (0..2 phases, 3 power) */
    int64_t (*fixed)[DLB_LANES], (*pre)[DLB_LANES], (*cnt)[DLB_LANES], (*spsum)[DLB_LANES],
        (*admin)[DLB_LANES];
    int64_t (*base)[DLB_PHASES], (*alloc)[DLB_PHASES];
    int *limiting;
    int64_t last_now;
    long total;
    long workcons; /* "reason circuit" on a lane with headroom >= one step (counted apart, see .h) */
    int quiet_workcons, separate_workcons;
    long workcons_seen;
    /* message sink of the current step */
    char *msg;
    size_t msg_len, msg_used;
    int n_viol;
};

enum { KIND_DEMAND = 0, KIND_NODEMAND = 1, KIND_LOST = 2 };

static void viol(inv_checker *ck, const char *fmt, ...)
{
    if (ck->quiet_workcons) { /* a known, separately counted finding: count it, do not report it */
        ck->quiet_workcons = 0;
        ck->workcons++;
        return;
    }
    ck->n_viol++;
    ck->total++;
    if (ck->msg == NULL || ck->msg_len == 0 || ck->msg_used + 1 >= ck->msg_len) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(ck->msg + ck->msg_used, ck->msg_len - ck->msg_used, fmt, ap);
    va_end(ap);
    if (n > 0) {
        ck->msg_used += (size_t)n;
        if (ck->msg_used >= ck->msg_len) {
            ck->msg_used = ck->msg_len - 1;
        }
    }
    if (ck->msg_used + 1 < ck->msg_len) {
        ck->msg[ck->msg_used++] = '\n';
        ck->msg[ck->msg_used] = '\0';
    }
}

static int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }

static int64_t floordiv(int64_t a, int64_t b)
{
    int64_t q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0))) {
        q--;
    }
    return q;
}

static int64_t clamp32(int64_t v) { return v > INT32_MAX ? INT32_MAX : v < INT32_MIN ? INT32_MIN : v; }

static int demanding(int32_t st)
{
    return st == DLB_STATE_CONNECTED_IDLE || st == DLB_STATE_CHARGING || st == DLB_STATE_EV_SUSPENDED;
}

inv_checker *inv_new(const dlb_params *p, const dlb_circuit *circ, size_t nc, const dlb_charger *chg,
                     size_t nk)
{
    inv_checker *ck = calloc(1, sizeof(*ck));
    if (ck == NULL) {
        return NULL;
    }
    size_t nk1 = nk > 0 ? nk : 1;
    ck->p = *p;
    ck->nc = nc;
    ck->nk = nk;
    ck->circ = calloc(nc, sizeof(*ck->circ));
    ck->chg = calloc(nk1, sizeof(*ck->chg));
    ck->mm = calloc(nc, sizeof(*ck->mm));
    ck->km = calloc(nk1, sizeof(*ck->km));
    ck->kx = calloc(nk1, sizeof(*ck->kx));
    ck->fixed = calloc(nc, sizeof(*ck->fixed));
    ck->pre = calloc(nc, sizeof(*ck->pre));
    ck->cnt = calloc(nc, sizeof(*ck->cnt));
    ck->spsum = calloc(nc, sizeof(*ck->spsum));
    ck->admin = calloc(nc, sizeof(*ck->admin));
    ck->base = calloc(nc, sizeof(*ck->base));
    ck->alloc = calloc(nc, sizeof(*ck->alloc));
    ck->limiting = calloc(nc, sizeof(*ck->limiting));
    if (!ck->circ || !ck->chg || !ck->mm || !ck->km || !ck->kx || !ck->fixed || !ck->pre || !ck->cnt ||
        !ck->spsum || !ck->admin || !ck->base || !ck->alloc || !ck->limiting) {
        inv_free(ck);
        return NULL;
    }
    memcpy(ck->circ, circ, nc * sizeof(*circ));
    if (nk > 0) {
        memcpy(ck->chg, chg, nk * sizeof(*chg));
    }
    for (size_t c = 0; c < nc; c++) {
        ck->mm[c].stale = 1;
        ck->mm[c].recover_at_once = 1;
        ck->mm[c].ok_since = TNONE;
    }
    for (size_t k = 0; k < nk; k++) {
        charger_model *m = &ck->km[k];
        m->lost = 1;
        m->recover_at_once = 1;
        m->ok_since = m->on_since = m->off_since = TNONE;
        m->state = DLB_STATE_DISCONNECTED;
    }
    ck->last_now = TNONE;
    return ck;
}

void inv_free(inv_checker *ck)
{
    if (ck == NULL) {
        return;
    }
    free(ck->circ);
    free(ck->chg);
    free(ck->mm);
    free(ck->km);
    free(ck->kx);
    free(ck->fixed);
    free(ck->pre);
    free(ck->cnt);
    free(ck->spsum);
    free(ck->admin);
    free(ck->base);
    free(ck->alloc);
    free(ck->limiting);
    free(ck);
}

long inv_total_violations(const inv_checker *ck) { return ck->total; }

void inv_separate_workcons(inv_checker *ck, int on) { ck->separate_workcons = on; }

long inv_workcons_violations(const inv_checker *ck) { return ck->workcons; }

/* ---- the failsafe ladder, from dlb.h stage 1 ---- */

static void ladder(int *stale, int *recover_at_once, int64_t *ok_since, int fresh_ok, int64_t now, int64_t hold)
{
    if (!fresh_ok) {
        if (!*stale) {
            *recover_at_once = 0;
        }
        *stale = 1;
        *ok_since = TNONE;
    } else {
        if (*ok_since == TNONE) {
            *ok_since = now;
        }
        if (*stale && (*recover_at_once || now - *ok_since >= hold)) {
            *stale = 0;
        }
    }
}

static void ingest(inv_checker *ck, int64_t now, const dlb_meter_input *meters, const dlb_charger_input *chargers)
{
    const dlb_params *p = &ck->p;
    for (size_t c = 0; c < ck->nc; c++) {
        meter_model *m = &ck->mm[c];
        if (!ck->circ[c].has_meter) {
            continue;
        }
        const dlb_meter_input *mi = &meters[c];
        if (mi->fresh) {
            int ok = 1;
            for (int ph = 0; ph < DLB_PHASES; ph++) {
                ok &= mi->current_ma[ph] >= -DLB_MAX_CURRENT_MA && mi->current_ma[ph] <= DLB_MAX_CURRENT_MA;
            }
            if (ok) {
                for (int ph = 0; ph < DLB_PHASES; ph++) {
                    m->ma[ph] = mi->current_ma[ph];
                }
                m->t_last = now;
                m->seen = 1;
            }
        }
        ladder(&m->stale, &m->recover_at_once, &m->ok_since, m->seen && now - m->t_last <= p->meter_timeout_ms,
               now, p->recovery_hold_ms);
    }
    for (size_t k = 0; k < ck->nk; k++) {
        charger_model *m = &ck->km[k];
        const dlb_charger_input *ci = &chargers[k];
        if (ci->fresh && ci->state >= 0 && ci->state <= DLB_STATE_UNAVAILABLE) {
            int ok = 1;
            for (int i = 0; i < DLB_PHASES; i++) {
                ok &= ci->current_ma[i] >= 0 && ci->current_ma[i] <= DLB_MAX_CURRENT_MA;
            }
            if (ok) {
                if (demanding(ci->state) && !m->in_session) {
                    m->in_session = 1;
                    m->n_starts = 0; /* the start cap counts starts within the session */
                }
                if (ci->state == DLB_STATE_DISCONNECTED && m->in_session) {
                    m->in_session = 0;
                }
                m->state = ci->state;
                for (int i = 0; i < DLB_PHASES; i++) {
                    m->meas[i] = ci->current_ma[i];
                }
                m->t_last = now;
                m->seen = 1;
            }
        }
        ladder(&m->lost, &m->recover_at_once, &m->ok_since, m->seen && now - m->t_last <= p->charger_timeout_ms,
               now, p->recovery_hold_ms);
    }
}

static int on_path(const inv_checker *ck, size_t k, int32_t c)
{
    for (int32_t x = ck->chg[k].circuit; x != DLB_NONE; x = ck->circ[x].parent) {
        if (x == c) {
            return 1;
        }
    }
    return 0;
}

static int64_t lane_cap(const inv_checker *ck, size_t c, int ln)
{
    const dlb_circuit *cc = &ck->circ[c];
    if (ln < DLB_PHASES) {
        return (int64_t)cc->limit_ma[ln] - cc->margin_ma;
    }
    return cc->power_limit_w > 0 ? (int64_t)cc->power_limit_w * 1000 / ck->p.voltage_v : BIG;
}

static int64_t lane_base(const inv_checker *ck, size_t c, int ln)
{
    if (ln < DLB_PHASES) {
        return ck->base[c][ln];
    }
    return ck->base[c][0] + ck->base[c][1] + ck->base[c][2];
}

/* factor of charger k on lane ln (phase lanes: conductors of set `set` wired to ln; power: count) */
static int64_t factor(const inv_checker *ck, size_t k, uint32_t set, int ln)
{
    const dlb_charger *kc = &ck->chg[k];
    int64_t a = 0;
    for (int i = 0; i < kc->phases; i++) {
        if ((set >> i) & 1u) {
            if (ln == DLB_LANE_POWER || kc->phase_map[i] == ln) {
                a++;
            }
        }
    }
    return a;
}

static const char *const REASON_NAMES[] = {"none",      "charger max", "circuit",    "ev",          "ramp",
                                           "scarcity",  "rotation",    "min off",    "start cap",   "transition",
                                           "unbalance", "failsafe",    "recovering", "not connected", "fault",
                                           "unavailable", "overload"};

static const char *rname(int32_t r)
{
    return r >= 0 && r <= DLB_REASON_OVERLOAD ? REASON_NAMES[r] : "?";
}

int inv_check_step(inv_checker *ck, int64_t now, const dlb_meter_input *meters,
                   const dlb_charger_input *chargers, const dlb_charger_output *out,
                   const dlb_circuit_output *cout, char *msg, size_t msg_len)
{
    const dlb_params *p = &ck->p;
    const size_t nc = ck->nc, nk = ck->nk;
    ck->msg = msg;
    ck->msg_len = msg_len;
    ck->msg_used = 0;
    ck->n_viol = 0;
    if (msg != NULL && msg_len > 0) {
        msg[0] = '\0';
    }
    const int64_t dt = ck->last_now == TNONE ? 0 : now - ck->last_now;
    ck->last_now = now;
    ingest(ck, now, meters, chargers);

    /* ---- classify: counted conductors before the step, set-point conductors after it ---- */
    for (size_t k = 0; k < nk; k++) {
        const charger_model *m = &ck->km[k];
        const dlb_charger *kc = &ck->chg[k];
        const dlb_charger_output *o = &out[k];
        charger_step *x = &ck->kx[k];
        memset(x, 0, sizeof(*x));
        if (m->lost) {
            x->kind = KIND_LOST;
            continue;
        }
        if (!demanding(m->state)) {
            x->kind = KIND_NODEMAND;
            continue;
        }
        x->kind = KIND_DEMAND;
        int switched_down = (o->flags & DLB_CHARGER_SWITCHED) && o->phases == 1;
        if (o->phases != 1 && o->phases != 3) {
            viol(ck, "charger %zu: phases %d not 1 or 3", k, o->phases);
        }
        if (kc->phases == 1 && o->phases != 1) {
            viol(ck, "charger %zu: 1-phase charger told to use %d phases", k, o->phases);
        }
        if (o->phases == 3 && !kc->can_switch_phases && kc->phases != 3) {
            viol(ck, "charger %zu: phases 3 on a charger that cannot", k);
        }
        int mode = switched_down ? 3 : o->phases;
        int n_cond = (kc->phases == 3 && mode == 3) ? 3 : 1;
        uint32_t all = n_cond == 3 ? 7u : 1u, act = all;
        uint32_t drawing = 0;
        for (int i = 0; i < n_cond; i++) {
            if (m->meas[i] >= p->active_threshold_ma) {
                drawing |= 1u << i;
            }
        }
        /* The core says (flag NARROWED) when it counts a charging charger on its measured conductors
         * only; check that the claim is allowed: charging, some conductor above the threshold, and on
         * for at least follow_time_ms (it must also be that long after a phase switch; the core resets
         * on_since for nothing else, so the on-time is the part this checker can verify). */
        if (o->flags & DLB_CHARGER_NARROWED) {
            if (m->state != DLB_STATE_CHARGING || drawing == 0 || m->on_since == TNONE ||
                now - m->on_since < p->follow_time_ms) {
                viol(ck, "charger %zu: counted on its measured conductors only (state %d, drawing %u, on "
                         "since %lld) without being settled",
                     k, m->state, drawing, (long long)m->on_since);
            }
            act = drawing ? drawing : all;
        }
        x->act = act;
        x->spc = switched_down ? 1u : act;
        for (int i = 0; i < n_cond; i++) {
            if ((act >> i) & 1u) {
                x->drawn = imax(x->drawn, m->meas[i]);
                x->n_act++;
            }
        }
        x->m = imax(x->drawn, m->prev_sp);
        for (int i = 0; i < m->n_holds; i++) {
            if (now < m->hold_until[i]) {
                x->m = imax(x->m, m->hold_sp[i]);
            }
        }
        for (int i = 0; i < kc->phases; i++) {
            x->pre[i] = ((act >> i) & 1u) ? x->m : m->meas[i];
            x->n_spc += (int)((x->spc >> i) & 1u);
        }
    }

    /* ---- per circuit and lane: fixed loads, counted draws before (pre) and after (cnt) the step ---- */
    for (size_t c = 0; c < nc; c++) {
        memset(ck->fixed[c], 0, sizeof(ck->fixed[c]));
        memset(ck->pre[c], 0, sizeof(ck->pre[c]));
        memset(ck->cnt[c], 0, sizeof(ck->cnt[c]));
        memset(ck->spsum[c], 0, sizeof(ck->spsum[c]));
        memset(ck->admin[c], 0, sizeof(ck->admin[c]));
        memset(ck->alloc[c], 0, sizeof(ck->alloc[c]));
        memset(ck->base[c], 0, sizeof(ck->base[c]));
        ck->limiting[c] = 0;
    }
    /* base: metered and fresh = meter - measured EV currents of non-lost chargers below; stale = fallback;
     * unmetered = own fallback + children's base. Children have larger indices than parents. */
    {
        int64_t (*evsum)[DLB_PHASES] = calloc(nc, sizeof(*evsum));
        int64_t (*childbase)[DLB_PHASES] = calloc(nc, sizeof(*childbase));
        if (evsum == NULL || childbase == NULL) {
            free(evsum);
            free(childbase);
            viol(ck, "checker: out of memory");
            return ck->n_viol;
        }
        for (size_t k = 0; k < nk; k++) {
            if (ck->kx[k].kind == KIND_LOST) {
                continue;
            }
            const dlb_charger *kc = &ck->chg[k];
            for (int32_t c = kc->circuit; c != DLB_NONE; c = ck->circ[c].parent) {
                for (int i = 0; i < kc->phases; i++) {
                    evsum[c][kc->phase_map[i]] += ck->km[k].meas[i];
                }
            }
        }
        for (size_t ci = nc; ci-- > 0;) {
            const dlb_circuit *cc = &ck->circ[ci];
            /* meter_latency_ms: the core subtracts the smallest EV sum of its window, which it keeps
             * in buckets of latency/8; the checker keeps every reading, so it knows the result lies
             * between the narrow window's minimum and the window widened by two buckets */
            int64_t lo_ev[DLB_PHASES], hi_ev[DLB_PHASES];
            int64_t lat = ck->p.meter_latency_ms, width = lat / 8 > 1 ? lat / 8 : 1;
            if (cc->has_meter) {
                meter_model *mm = &ck->mm[ci];
                if (lat == 0) {
                    mm->n_hist = 0;
                }
                mm->hist_t[mm->head] = now;
                for (int ph = 0; ph < DLB_PHASES; ph++) {
                    mm->hist_ev[mm->head][ph] = evsum[ci][ph];
                }
                mm->head = (mm->head + 1) % INV_EV_HIST;
                mm->n_hist = mm->n_hist < INV_EV_HIST ? mm->n_hist + 1 : INV_EV_HIST;
                ev_min(mm, now, lat, hi_ev);
                ev_min(mm, now, lat == 0 ? 0 : lat + 2 * width, lo_ev);
            }
            for (int ph = 0; ph < DLB_PHASES; ph++) {
                if (cc->has_meter && !ck->mm[ci].stale) {
                    int64_t hi_base = ck->mm[ci].ma[ph] - lo_ev[ph], lo_base = ck->mm[ci].ma[ph] - hi_ev[ph];
                    int64_t rep = cout[ci].base_ma[ph];
                    if (lat > 0 && rep >= lo_base && rep <= hi_base) {
                        ck->base[ci][ph] = rep; /* within the window's bounds: check the rest with it */
                    } else {
                        ck->base[ci][ph] = lo_base; /* exact for latency 0; else reported below */
                    }
                } else if (cc->has_meter) {
                    ck->base[ci][ph] = cc->fallback_base_ma[ph];
                } else {
                    ck->base[ci][ph] = cc->fallback_base_ma[ph] + childbase[ci][ph];
                }
                if (cc->parent != DLB_NONE) {
                    childbase[cc->parent][ph] += ck->base[ci][ph];
                }
            }
        }
        free(evsum);
        free(childbase);
    }
    for (size_t k = 0; k < nk; k++) {
        const dlb_charger *kc = &ck->chg[k];
        const charger_model *m = &ck->km[k];
        const charger_step *x = &ck->kx[k];
        const int64_t sp = out[k].setpoint_ma;
        for (int32_t c = kc->circuit; c != DLB_NONE; c = ck->circ[c].parent) {
            if (out[k].limit_circuit == c) {
                ck->limiting[c] = 1;
            }
            for (int i = 0; i < kc->phases; i++) {
                int ph = kc->phase_map[i];
                int64_t fx = 0, pr = 0, cn = 0, ss = 0;
                if (x->kind == KIND_LOST) {
                    fx = imax(sp, kc->failsafe_ma);
                    ck->alloc[c][ph] += sp;
                } else if (x->kind == KIND_NODEMAND) {
                    fx = m->meas[i];
                } else if (!((x->act >> i) & 1u)) {
                    fx = m->meas[i]; /* an installed conductor outside the counted set: a fixed load */
                    if ((x->spc >> i) & 1u) { /* switched down onto it: counted at max(sp, its draw) */
                        cn = imax(sp, fx) - fx;
                        ss = sp;
                        ck->alloc[c][ph] += ss;
                    }
                } else {
                    pr = x->pre[i];
                    cn = ((x->spc >> i) & 1u) ? imax(sp, pr) : pr;
                    ss = ((x->spc >> i) & 1u) ? sp : 0;
                    ck->alloc[c][ph] += ss;
                }
                ck->fixed[c][ph] += fx;
                ck->fixed[c][DLB_LANE_POWER] += fx;
                ck->pre[c][ph] += pr;
                ck->pre[c][DLB_LANE_POWER] += pr;
                ck->cnt[c][ph] += cn;
                ck->cnt[c][DLB_LANE_POWER] += cn;
                ck->spsum[c][ph] += ss;
                ck->spsum[c][DLB_LANE_POWER] += ss;
            }
            if (x->kind == KIND_DEMAND && (out[k].flags & DLB_CHARGER_ADMITTED)) {
                for (int ln = 0; ln < DLB_LANES; ln++) {
                    ck->admin[c][ln] += kc->min_ma * factor(ck, k, x->spc, ln);
                }
            }
        }
    }

    /* ---- capacity, per circuit and lane ---- */
    for (size_t c = 0; c < nc; c++) {
        const dlb_circuit_output *co = &cout[c];
        int base_over = 0, over = 0;
        for (int ln = 0; ln < DLB_LANES; ln++) {
            int64_t cap = lane_cap(ck, c, ln);
            if (cap == BIG) {
                continue;
            }
            int64_t budget = cap - lane_base(ck, c, ln) - ck->fixed[c][ln];
            int64_t hr_pre = budget - ck->pre[c][ln];
            int64_t hr_post = budget - ck->cnt[c][ln];
            int64_t rep = ln < DLB_PHASES ? co->headroom_ma[ln] : co->power_headroom_ma;
            /* chargers still waiting for capacity (reason TRANSITION/UNBALANCE) keep what they wait for
             * reserved, so the reported headroom may be lower than the counted one, never higher; with
             * nobody waiting on the lane it is exactly limit - margin - base - fixed - counted */
            int waiting = 0;
            for (size_t k = 0; k < nk; k++) {
                const charger_step *x = &ck->kx[k];
                if (x->kind == KIND_DEMAND && on_path(ck, k, (int32_t)c) &&
                    (out[k].reason == DLB_REASON_TRANSITION || out[k].reason == DLB_REASON_UNBALANCE)) {
                    waiting = 1;
                }
            }
            if (waiting ? rep > clamp32(hr_post) : rep != clamp32(hr_post)) {
                viol(ck, "circuit %zu lane %d: reported headroom %lld, expected %s limit-margin-base-fixed-sum "
                         "max(sp,measured) = %lld (budget %lld, counted %lld)",
                     c, ln, (long long)rep, waiting ? "at most" : "exactly", (long long)hr_post,
                     (long long)budget, (long long)ck->cnt[c][ln]);
                if (getenv("INV_DEBUG")) {
                    for (size_t k = 0; k < nk; k++) {
                        const charger_step *x = &ck->kx[k];
                        if (on_path(ck, k, (int32_t)c) && x->kind == KIND_DEMAND && factor(ck, k, x->spc, ln) > 0) {
                            fprintf(stderr, "   k%zu sp %d prev %lld m %lld drawn %lld reason %d flags %u spc %u act %u\n", k,
                                    out[k].setpoint_ma, (long long)ck->km[k].prev_sp, (long long)x->m,
                                    (long long)x->drawn, out[k].reason, out[k].flags, x->spc, x->act);
                        }
                    }
                }
            }
            if (budget < 0) {
                base_over = 1;
                /* base alone breaks the lane: every demanding charger using it is at 0 */
                for (size_t k = 0; k < nk; k++) {
                    const charger_step *x = &ck->kx[k];
                    if (x->kind == KIND_DEMAND && out[k].setpoint_ma != 0 && on_path(ck, k, (int32_t)c) &&
                        factor(ck, k, x->spc, ln) > 0) {
                        viol(ck, "circuit %zu lane %d: base+fixed %lld > cap %lld but charger %zu at %d", c, ln,
                             (long long)(cap - budget), (long long)cap, k, out[k].setpoint_ma);
                    }
                }
            } else if (hr_pre < 0) {
                over = 1;
                /* already overloaded (counted draws above the lane): nobody raised above its measured draw
                 * (keeping its previous set-point is not a raise), and the set-points fit once EVs follow */
                if (ck->spsum[c][ln] > budget) {
                    viol(ck, "circuit %zu lane %d: overloaded (headroom %lld before the step) and the set-points "
                             "sum %lld > budget %lld",
                         c, ln, (long long)hr_pre, (long long)ck->spsum[c][ln], (long long)budget);
                }
                for (size_t k = 0; k < nk; k++) {
                    const charger_step *x = &ck->kx[k];
                    if (x->kind == KIND_DEMAND && on_path(ck, k, (int32_t)c) && factor(ck, k, x->spc, ln) > 0 &&
                        out[k].setpoint_ma > imax(x->drawn, ck->km[k].prev_sp)) {
                        viol(ck, "circuit %zu lane %d: overloaded but charger %zu raised %lld -> %d above its draw %lld",
                             c, ln, k, (long long)ck->km[k].prev_sp, out[k].setpoint_ma, (long long)x->drawn);
                    }
                }
            } else if (hr_post < 0) {
                viol(ck, "circuit %zu lane %d: capacity: base %lld + fixed %lld + sum max(sp,measured) %lld > "
                         "limit-margin %lld",
                     c, ln, (long long)lane_base(ck, c, ln), (long long)ck->fixed[c][ln],
                     (long long)ck->cnt[c][ln], (long long)cap);
            }
        }
        for (int ph = 0; ph < DLB_PHASES; ph++) {
            if (co->base_ma[ph] != clamp32(ck->base[c][ph])) {
                viol(ck, "circuit %zu L%d: base %d, expected %lld", c, ph + 1, co->base_ma[ph],
                     (long long)ck->base[c][ph]);
            }
        }
        if (ck->circ[c].power_limit_w == 0 && co->power_headroom_ma != INT32_MAX) {
            viol(ck, "circuit %zu: no power cap but power headroom %d", c, co->power_headroom_ma);
        }
        uint32_t st = co->status;
        if (!!(st & DLB_CIRCUIT_BASE_OVERLOAD) != base_over) {
            viol(ck, "circuit %zu: BASE_OVERLOAD flag %d, expected %d", c, !!(st & DLB_CIRCUIT_BASE_OVERLOAD),
                 base_over);
        }
        if (!!(st & DLB_CIRCUIT_OVERLOADED) != (over || base_over)) {
            /* base overload implies measured overload only if draws are >= 0, which they are */
            viol(ck, "circuit %zu: OVERLOADED flag %d, expected %d", c, !!(st & DLB_CIRCUIT_OVERLOADED),
                 over || base_over);
        }
        const meter_model *mm = &ck->mm[c];
        int want_stale = 0, want_rec = 0;
        if (ck->circ[c].has_meter && mm->stale) {
            if (mm->seen && now - mm->t_last <= p->meter_timeout_ms) {
                want_rec = 1;
            } else {
                want_stale = 1;
            }
        }
        if (!!(st & DLB_CIRCUIT_METER_STALE) != want_stale || !!(st & DLB_CIRCUIT_METER_RECOVERING) != want_rec) {
            viol(ck, "circuit %zu: meter status bits 0x%x, expected stale=%d recovering=%d", c, st, want_stale,
                 want_rec);
        }
        if (!!(st & DLB_CIRCUIT_LIMITING) != ck->limiting[c]) {
            viol(ck, "circuit %zu: LIMITING flag %d, but %s charger names it", c, !!(st & DLB_CIRCUIT_LIMITING),
                 ck->limiting[c] ? "a" : "no");
        }
    }
    for (size_t c = 0; c < nc; c++) {
        for (int ph = 0; ph < DLB_PHASES; ph++) {
            if (cout[c].allocated_ma[ph] != clamp32(ck->alloc[c][ph])) {
                viol(ck, "circuit %zu L%d: allocated %d, expected sum of set-points below %lld", c, ph + 1,
                     cout[c].allocated_ma[ph], (long long)ck->alloc[c][ph]);
            }
        }
    }

    /* ---- per charger: minimum current, holds, reasons, flapping ---- */
    for (size_t k = 0; k < nk; k++) {
        const dlb_charger *kc = &ck->chg[k];
        charger_model *m = &ck->km[k];
        const charger_step *x = &ck->kx[k];
        const dlb_charger_output *o = &out[k];
        const int64_t sp = o->setpoint_ma, prev = m->prev_sp;
        const int32_t r = o->reason;
        if (!!(o->flags & DLB_CHARGER_LOST) != (x->kind == KIND_LOST)) {
            viol(ck, "charger %zu: LOST flag %d, expected %d", k, !!(o->flags & DLB_CHARGER_LOST), x->kind == KIND_LOST);
        }
        if (x->kind == KIND_LOST) {
            if (sp != prev) {
                viol(ck, "charger %zu: lost but set-point changed %lld -> %lld", k, (long long)prev, (long long)sp);
            }
            int32_t want = (m->seen && now - m->t_last <= p->charger_timeout_ms) ? DLB_REASON_RECOVERING
                                                                                 : DLB_REASON_FAILSAFE;
            if (r != want) {
                viol(ck, "charger %zu: lost, reason %s, expected %s", k, rname(r), rname(want));
            }
        } else if (x->kind == KIND_NODEMAND) {
            int32_t want = m->state == DLB_STATE_FAULT         ? DLB_REASON_FAULT
                           : m->state == DLB_STATE_UNAVAILABLE ? DLB_REASON_UNAVAILABLE
                                                               : DLB_REASON_NOT_CONNECTED;
            if (sp != 0 || r != want) {
                viol(ck, "charger %zu: not demanding (state %d) but sp %lld reason %s", k, m->state, (long long)sp,
                     rname(r));
            }
        } else {
            int adm = !!(o->flags & DLB_CHARGER_ADMITTED);
            if (sp != 0 && (sp < kc->min_ma || sp > kc->max_ma || sp % kc->step_ma != 0)) {
                viol(ck, "charger %zu: set-point %lld not 0 and not in [%d, %d] on grid %d", k, (long long)sp,
                     kc->min_ma, kc->max_ma, kc->step_ma);
            }
            if (sp > 0 && !adm) {
                viol(ck, "charger %zu: set-point %lld but not admitted", k, (long long)sp);
            }
            if (r == DLB_REASON_NONE || r > DLB_REASON_OVERLOAD || r < 0 || r == DLB_REASON_FAILSAFE ||
                r == DLB_REASON_RECOVERING || r == DLB_REASON_NOT_CONNECTED || r == DLB_REASON_FAULT ||
                r == DLB_REASON_UNAVAILABLE) {
                viol(ck, "charger %zu: demanding charger with reason %s (%d)", k, rname(r), r);
            }
            int has_lane = o->limit_circuit != DLB_NONE;
            if (has_lane) {
                if (o->limit_circuit < 0 || (size_t)o->limit_circuit >= nc || !on_path(ck, k, o->limit_circuit) ||
                    o->limit_lane < 0 || o->limit_lane >= DLB_LANES) {
                    viol(ck, "charger %zu: limit circuit %d lane %d not on its path", k, o->limit_circuit,
                         o->limit_lane);
                    has_lane = 0;
                } else if (o->limit_lane == DLB_LANE_POWER && ck->circ[o->limit_circuit].power_limit_w == 0) {
                    viol(ck, "charger %zu: limited by the power lane of circuit %d which has no cap", k,
                         o->limit_circuit);
                    has_lane = 0;
                }
            } else if (o->limit_lane != DLB_NONE) {
                viol(ck, "charger %zu: limit lane %d without a circuit", k, o->limit_lane);
            }
            if (p->ramp_up_ma_per_s > 0) {
                int64_t hi = prev > 0 ? imax(kc->min_ma, prev + floordiv((int64_t)p->ramp_up_ma_per_s * dt, 1000))
                                      : kc->min_ma;
                if (sp > hi) {
                    viol(ck, "charger %zu: ramp: %lld -> %lld in %lld ms exceeds %d mA/s", k, (long long)prev,
                         (long long)sp, (long long)dt, p->ramp_up_ma_per_s);
                }
            }
            switch (r) {
            case DLB_REASON_CHARGER_MAX:
                if (sp != kc->max_ma) {
                    viol(ck, "charger %zu: reason charger max but sp %lld != max %d", k, (long long)sp, kc->max_ma);
                }
                break;
            case DLB_REASON_EV:
                if (sp <= 0 || sp >= kc->max_ma || !(o->flags & DLB_CHARGER_RECLAIMED)) {
                    viol(ck, "charger %zu: reason ev with sp %lld, flags 0x%x", k, (long long)sp, o->flags);
                }
                break;
            case DLB_REASON_RAMP:
                if (p->ramp_up_ma_per_s == 0 || sp <= 0) {
                    viol(ck, "charger %zu: reason ramp with sp %lld and ramp %d", k, (long long)sp, p->ramp_up_ma_per_s);
                }
                break;
            case DLB_REASON_CIRCUIT:
                if (sp <= 0 || sp >= kc->max_ma || !has_lane) {
                    viol(ck, "charger %zu: reason circuit with sp %lld, lane %d/%d", k, (long long)sp,
                         o->limit_circuit, o->limit_lane);
                } else {
                    int ln = o->limit_lane;
                    int64_t a = factor(ck, k, x->spc, ln);
                    const dlb_circuit_output *co = &cout[o->limit_circuit];
                    int64_t rep = ln < DLB_PHASES ? co->headroom_ma[ln] : co->power_headroom_ma;
                    if (a == 0) {
                        viol(ck, "charger %zu: limited by circuit %d lane %d it does not use", k, o->limit_circuit, ln);
                    } else if (rep >= kc->step_ma * a) {
                        ck->workcons_seen++;
                        ck->quiet_workcons = ck->separate_workcons;
                        viol(ck, "charger %zu: reason circuit %d lane %d at sp %lld (draw %lld) but that lane "
                                 "reports headroom %lld >= one step %lld",
                             k, o->limit_circuit, ln, (long long)sp, (long long)x->m, (long long)rep,
                             (long long)(kc->step_ma * a));
                    }
                }
                break;
            case DLB_REASON_UNBALANCE:
                if (!has_lane || ck->circ[o->limit_circuit].unbalance_limit_ma == 0 || x->n_spc >= 3) {
                    viol(ck, "charger %zu: reason unbalance at circuit %d (limit %d) using %d phases", k,
                         o->limit_circuit, has_lane ? ck->circ[o->limit_circuit].unbalance_limit_ma : 0, x->n_spc);
                }
                break;
            case DLB_REASON_TRANSITION:
                break;
            case DLB_REASON_OVERLOAD:
                if (adm && has_lane) { /* admitted, cut on a lane that was overloaded before the step */
                    int ln = o->limit_lane;
                    size_t c = (size_t)o->limit_circuit;
                    int64_t budget = lane_cap(ck, c, ln) - lane_base(ck, c, ln) - ck->fixed[c][ln];
                    if (budget - ck->pre[c][ln] >= 0) {
                        viol(ck, "charger %zu: overload on circuit %zu lane %d which was not overloaded "
                                 "(headroom %lld before the step)",
                             k, c, ln, (long long)(budget - ck->pre[c][ln]));
                    }
                    if (sp > imax(x->drawn, prev)) {
                        viol(ck, "charger %zu: overload but raised %lld -> %lld above its draw %lld", k,
                             (long long)prev, (long long)sp, (long long)x->drawn);
                    }
                    break;
                }
                /* fall through - not admitted */
            case DLB_REASON_SCARCITY:
            case DLB_REASON_ROTATION:
                if (sp != 0 || adm || !has_lane) {
                    viol(ck, "charger %zu: reason %s with sp %lld admitted %d lane %d/%d", k, rname(r),
                         (long long)sp, adm, o->limit_circuit, o->limit_lane);
                } else {
                    int ln = o->limit_lane;
                    size_t c = (size_t)o->limit_circuit;
                    int64_t a = factor(ck, k, x->act, ln);
                    int64_t budget = lane_cap(ck, c, ln) - lane_base(ck, c, ln) - ck->fixed[c][ln];
                    if (a == 0) {
                        viol(ck, "charger %zu: %s on circuit %zu lane %d it does not use", k, rname(r), c, ln);
                    } else if (budget - ck->admin[c][ln] >= kc->min_ma * a) {
                        viol(ck, "charger %zu: %s on circuit %zu lane %d, but its minimum %lld fits: budget %lld - "
                                 "admitted minimums %lld",
                             k, rname(r), c, ln, (long long)(kc->min_ma * a), (long long)budget,
                             (long long)ck->admin[c][ln]);
                    }
                    if (r == DLB_REASON_OVERLOAD && budget >= 0) {
                        viol(ck, "charger %zu: overload on circuit %zu lane %d but base+fixed fits (budget %lld)", k,
                             c, ln, (long long)budget);
                    }
                    if (r == DLB_REASON_ROTATION && prev == 0) {
                        viol(ck, "charger %zu: rotation but it was not charging", k);
                    }
                }
                break;
            case DLB_REASON_MIN_OFF:
                if (sp != 0 || prev != 0 || m->off_since == TNONE || now - m->off_since >= p->min_off_ms) {
                    viol(ck, "charger %zu: min off with sp %lld prev %lld off since %lld", k, (long long)sp,
                         (long long)prev, (long long)m->off_since);
                }
                break;
            case DLB_REASON_START_CAP: {
                int recent = 0;
                for (int i = 0; i < m->n_starts; i++) {
                    recent += now - m->starts[i] < HOUR_MS;
                }
                if (sp != 0 || prev != 0 || p->max_starts_per_hour == 0 || recent < p->max_starts_per_hour) {
                    viol(ck, "charger %zu: start cap with sp %lld, %d starts in the last hour (cap %d)", k,
                         (long long)sp, recent, p->max_starts_per_hour);
                }
                break;
            }
            default:
                break;
            }
            /* no flapping */
            if (prev == 0 && sp > 0) {
                if (m->off_since != TNONE && now - m->off_since < p->min_off_ms) {
                    viol(ck, "charger %zu: restarted %lld ms after a pause (min_off_ms %d)", k,
                         (long long)(now - m->off_since), p->min_off_ms);
                }
                int recent = 0;
                for (int i = 0; i < m->n_starts; i++) {
                    recent += now - m->starts[i] < HOUR_MS;
                }
                if (p->max_starts_per_hour > 0 && recent >= p->max_starts_per_hour) {
                    viol(ck, "charger %zu: start number %d within an hour (cap %d)", k, recent + 1,
                         p->max_starts_per_hour);
                }
            }
            if (prev > 0 && sp == 0 && m->on_since != TNONE && now - m->on_since < p->min_on_ms &&
                r == DLB_REASON_ROTATION) {
                viol(ck, "charger %zu: rotated out %lld ms after its start (min_on_ms %d)", k,
                     (long long)(now - m->on_since), p->min_on_ms);
            }
        }
        if (x->kind != KIND_DEMAND && (o->flags & DLB_CHARGER_ADMITTED)) {
            viol(ck, "charger %zu: admitted but not demanding", k);
        }
        /* remember */
        if (sp > 0 && prev == 0) {
            m->on_since = now;
            m->off_since = TNONE;
            if (m->n_starts == (int)(sizeof(m->starts) / sizeof(m->starts[0]))) {
                memmove(m->starts, m->starts + 1, sizeof(m->starts) - sizeof(m->starts[0]));
                m->n_starts--;
            }
            m->starts[m->n_starts++] = now;
        } else if (sp == 0 && prev > 0) {
            m->off_since = now;
            m->on_since = TNONE;
        }
        if (sp < prev) { /* the EV may still apply prev for follow_time_ms */
            int n = 0;
            for (int i = 0; i < m->n_holds; i++) {
                if (m->hold_until[i] > now && m->hold_sp[i] > prev) {
                    m->hold_sp[n] = m->hold_sp[i];
                    m->hold_until[n] = m->hold_until[i];
                    n++;
                }
            }
            m->hold_sp[n] = prev;
            m->hold_until[n] = now + p->follow_time_ms;
            n++;
            if (n > INV_HOLDS) { /* merge the two oldest conservatively: larger value, later expiry */
                m->hold_until[0] = m->hold_until[1];
                for (int i = 1; i + 1 < n; i++) {
                    m->hold_sp[i] = m->hold_sp[i + 1];
                    m->hold_until[i] = m->hold_until[i + 1];
                }
                n--;
            }
            m->n_holds = n;
        }
        m->prev_sp = sp;
    }
    return ck->n_viol;
}
