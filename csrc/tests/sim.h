/*
 * sim.h - test harness shared by the C tests: a site owned on the heap (the test's heap, not the core's),
 * a simple EV per charger that follows its set-point after a delay, meters that sum base loads and EV
 * currents up the tree, and a deterministic xorshift PRNG. Header-only (static functions).
 */
#ifndef DLB_TEST_SIM_H
#define DLB_TEST_SIM_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../dlb.h"
#include "invariants.h"

/* ---- xorshift64* ---- */
typedef struct {
    uint64_t s;
} rng_t;

static inline void rng_seed(rng_t *r, uint64_t seed) { r->s = seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull; if (!r->s) r->s = 1; }
static inline uint64_t rng_next(rng_t *r)
{
    uint64_t x = r->s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    r->s = x;
    return x * 0x2545F4914F6CDD1Dull;
}
/* uniform in [lo, hi] (hi >= lo) */
static inline int32_t rng_range(rng_t *r, int32_t lo, int32_t hi)
{
    uint64_t span = (uint64_t)((int64_t)hi - (int64_t)lo) + 1u;
    return (int32_t)((int64_t)lo + (int64_t)(rng_next(r) % span));
}
/* true with probability pct/100 */
static inline int rng_pct(rng_t *r, int pct) { return (int)(rng_next(r) % 100u) < pct; }

/* ---- the EV behind one charger ---- */
typedef struct {
    int plugged;       /* 1 = an EV is connected */
    int ev_phases;     /* 1 or 3: a 1-phase EV on a 3-phase charger draws on conductor 0 only */
    int32_t ev_max_ma; /* the EV's own limit (draws min(sp, ev_max)) */
    int64_t delay_ms;  /* follows a new set-point after this */
    int32_t target;    /* set-point it is moving to */
    int64_t target_at; /* when that set-point was given */
    int32_t draw;      /* present draw per active conductor */
    int32_t extra_ma;  /* misbehaving EV: draws this much above its set-point (0 normally) */
    int suspended;     /* EV declines current */
    int faulted, unavailable;
    int silent;        /* charger does not answer */
    int32_t last_phases;
} ev_t;

typedef struct {
    dlb_params p;
    dlb_circuit *circ;
    dlb_charger *chg;
    size_t nc, nk;
    void *mem;
    size_t mem_size;
    dlb_site *site;
    dlb_meter_input *mi;
    dlb_charger_input *ci;
    dlb_charger_output *out;
    dlb_circuit_output *cout;
    ev_t *ev;
    int32_t (*own_base)[DLB_PHASES]; /* non-EV load of each circuit itself (mA) */
    int *meter_silent;
    inv_checker *ck;
    char msg[4096];
    long violations;
    int quiet_after; /* print at most this many violation reports */
    int64_t now;
} sim_t;

static inline void sim_free(sim_t *s)
{
    inv_free(s->ck);
    free(s->circ);
    free(s->chg);
    free(s->mem);
    free(s->mi);
    free(s->ci);
    free(s->out);
    free(s->cout);
    free(s->ev);
    free(s->own_base);
    free(s->meter_silent);
    memset(s, 0, sizeof(*s));
}

/* allocates arrays for nc circuits / nk chargers with defaults; the caller fills circ/chg, then sim_init */
static inline void sim_alloc(sim_t *s, size_t nc, size_t nk)
{
    memset(s, 0, sizeof(*s));
    dlb_params_default(&s->p);
    s->nc = nc;
    s->nk = nk;
    size_t nk1 = nk ? nk : 1;
    s->circ = calloc(nc, sizeof(*s->circ));
    s->chg = calloc(nk1, sizeof(*s->chg));
    s->mi = calloc(nc, sizeof(*s->mi));
    s->ci = calloc(nk1, sizeof(*s->ci));
    s->out = calloc(nk1, sizeof(*s->out));
    s->cout = calloc(nc, sizeof(*s->cout));
    s->ev = calloc(nk1, sizeof(*s->ev));
    s->own_base = calloc(nc, sizeof(*s->own_base));
    s->meter_silent = calloc(nc, sizeof(*s->meter_silent));
    s->quiet_after = 5;
    for (size_t c = 0; c < nc; c++) {
        s->circ[c].parent = c == 0 ? DLB_NONE : 0;
        for (int ph = 0; ph < 3; ph++) {
            s->circ[c].limit_ma[ph] = 100000;
        }
        s->circ[c].has_meter = 1;
    }
    for (size_t k = 0; k < nk; k++) {
        dlb_charger *kc = &s->chg[k];
        kc->circuit = 0;
        kc->phases = 3;
        kc->phase_map[0] = 0;
        kc->phase_map[1] = 1;
        kc->phase_map[2] = 2;
        kc->min_ma = 6000;
        kc->max_ma = 32000;
        kc->step_ma = 1000;
        kc->priority = 0;
        kc->weight = 1;
        kc->failsafe_ma = 6000;
        s->ev[k].plugged = 1;
        s->ev[k].ev_phases = 3;
        s->ev[k].ev_max_ma = 1000000;
        s->ev[k].delay_ms = 2000;
    }
}

/* dlb_init; returns the dlb error code */
static inline int sim_init(sim_t *s)
{
    s->mem_size = dlb_memory_size(s->nc, s->nk);
    s->mem = aligned_alloc(8, (s->mem_size + 7) & ~(size_t)7);
    int rc = dlb_init(s->mem, s->mem_size, &s->p, s->circ, s->nc, s->chg, s->nk, &s->site);
    if (rc == DLB_OK) {
        s->ck = inv_new(&s->p, s->circ, s->nc, s->chg, s->nk);
    }
    for (size_t k = 0; k < s->nk; k++) {
        s->ev[k].last_phases = s->chg[k].phases;
    }
    return rc;
}

static inline int sim_on_path(const sim_t *s, size_t k, int32_t c)
{
    for (int32_t x = s->chg[k].circuit; x != DLB_NONE; x = s->circ[x].parent) {
        if (x == c) {
            return 1;
        }
    }
    return 0;
}

/* EV draw on conductor i of charger k at time now */
static inline int32_t sim_ev_current(const sim_t *s, size_t k, int i)
{
    const ev_t *e = &s->ev[k];
    if (!e->plugged || e->suspended || e->faulted || e->unavailable) {
        return 0;
    }
    int phases = e->last_phases < e->ev_phases ? e->last_phases : e->ev_phases;
    if (s->chg[k].phases == 1) {
        phases = 1;
    }
    if (i >= phases) {
        return 0;
    }
    return e->draw;
}

/* fills the inputs of the next step from the EVs and the base loads */
static inline void sim_inputs(sim_t *s)
{
    int64_t (*tot)[DLB_PHASES] = calloc(s->nc, sizeof(*tot));
    for (size_t k = 0; k < s->nk; k++) {
        ev_t *e = &s->ev[k];
        if (s->now - e->target_at >= e->delay_ms) {
            int64_t d = e->target;
            if (d > e->ev_max_ma) {
                d = e->ev_max_ma;
            }
            if (d > 0) {
                d += e->extra_ma;
            }
            e->draw = (int32_t)d;
        }
        dlb_charger_input *ci = &s->ci[k];
        memset(ci, 0, sizeof(*ci));
        ci->departure_in_ms = -1;
        ci->energy_need_wh = -1;
        ci->fresh = !e->silent;
        for (int i = 0; i < s->chg[k].phases; i++) {
            int32_t a = sim_ev_current(s, k, i);
            ci->current_ma[i] = a;
            for (int32_t c = s->chg[k].circuit; c != DLB_NONE; c = s->circ[c].parent) {
                tot[c][s->chg[k].phase_map[i]] += a;
            }
        }
        if (!e->plugged) {
            ci->state = DLB_STATE_DISCONNECTED;
        } else if (e->faulted) {
            ci->state = DLB_STATE_FAULT;
        } else if (e->unavailable) {
            ci->state = DLB_STATE_UNAVAILABLE;
        } else if (e->suspended) {
            ci->state = DLB_STATE_EV_SUSPENDED;
        } else {
            ci->state = ci->current_ma[0] > 0 ? DLB_STATE_CHARGING : DLB_STATE_CONNECTED_IDLE;
        }
    }
    for (size_t c = s->nc; c-- > 0;) {
        for (int ph = 0; ph < 3; ph++) {
            tot[c][ph] += s->own_base[c][ph];
        }
    }
    /* own base of descendants: add children's own base into parents (children have larger indices) */
    {
        int64_t (*sub)[DLB_PHASES] = calloc(s->nc, sizeof(*sub));
        for (size_t c = s->nc; c-- > 0;) {
            for (int ph = 0; ph < 3; ph++) {
                tot[c][ph] += sub[c][ph];
                if (s->circ[c].parent != DLB_NONE) {
                    sub[s->circ[c].parent][ph] += sub[c][ph] + s->own_base[c][ph];
                }
            }
        }
        free(sub);
    }
    for (size_t c = 0; c < s->nc; c++) {
        s->mi[c].fresh = s->circ[c].has_meter && !s->meter_silent[c];
        for (int ph = 0; ph < 3; ph++) {
            int64_t v = tot[c][ph];
            s->mi[c].current_ma[ph] = (int32_t)(v > DLB_MAX_CURRENT_MA ? DLB_MAX_CURRENT_MA : v);
        }
    }
    free(tot);
}

/* one dlb_step + invariant check at s->now with the inputs already in place; then EVs see the outputs */
static inline int sim_step_raw(sim_t *s)
{
    int rc = dlb_step(s->site, s->now, s->mi, s->ci, s->out, s->cout);
    if (rc != DLB_OK) {
        printf("    dlb_step returned %d at t=%lld\n", rc, (long long)s->now);
        s->violations++;
        return rc;
    }
    int n = inv_check_step(s->ck, s->now, s->mi, s->ci, s->out, s->cout, s->msg, sizeof(s->msg));
    if (n > 0) {
        if (s->violations < s->quiet_after) {
            printf("    INVARIANT VIOLATION at t=%lld ms (%d):\n%s", (long long)s->now, n, s->msg);
        }
        s->violations += n;
    }
    for (size_t k = 0; k < s->nk; k++) {
        ev_t *e = &s->ev[k];
        if (s->out[k].setpoint_ma != e->target) {
            e->target = s->out[k].setpoint_ma;
            e->target_at = s->now;
        }
        e->last_phases = s->out[k].phases;
    }
    return rc;
}

static inline int sim_step(sim_t *s)
{
    sim_inputs(s);
    return sim_step_raw(s);
}

#endif
