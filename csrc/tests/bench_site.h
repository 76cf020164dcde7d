/*
 * bench_site.h - the benchmark's site (tests/bench.c), also run by the C test heap_rebuild: one builder,
 * so that the test pins the outputs of the site the benchmark measures. Header-only (static functions).
 */
#ifndef DLB_TEST_BENCH_SITE_H
#define DLB_TEST_BENCH_SITE_H

#include <stdint.h>
#include <stdlib.h>

#include "../dlb.h"

/* ---- the benchmark site (mirrored by core/bench.py: keep the two in sync) ---- */
typedef struct {
    size_t nc, nk;
    dlb_params p;
    dlb_circuit *circ;
    dlb_charger *chg;
} bench_site;

/* depth 3: root, F feeders, 4 sub-circuits per feeder; chargers spread round-robin over the subs.
 * Limits sized so total demand (sum of max) is ~4x capacity at the root. */
static void make_site(bench_site *b, size_t nk)
{
    size_t feeders = nk < 64 ? 2 : nk / 64 + 1;
    if (feeders > 200) {
        feeders = 200;
    }
    size_t subs = feeders * 4;
    b->nc = 1 + feeders + subs;
    b->nk = nk;
    dlb_params_default(&b->p);
    b->p.rotation_period_ms = 300000;
    b->p.min_on_ms = 60000;
    b->p.min_off_ms = 30000;
    b->circ = calloc(b->nc, sizeof(*b->circ));
    b->chg = calloc(nk, sizeof(*b->chg));
    /* per charger ~ 16 A x phases demand on average; capacity ~ 1/4 of demand */
    int64_t per_phase_demand = (int64_t)nk * 16000 * 2 / 3 + 1; /* rough: 1p adds to one phase */
    int64_t root = per_phase_demand / 4;
    if (root > DLB_MAX_CURRENT_MA) {
        root = DLB_MAX_CURRENT_MA;
    }
    if (root < 20000) {
        root = 20000;
    }
    for (size_t c = 0; c < b->nc; c++) {
        dlb_circuit *cc = &b->circ[c];
        int64_t lim;
        if (c == 0) {
            cc->parent = DLB_NONE;
            lim = root;
            cc->has_meter = 1;
            cc->margin_ma = 2000;
        } else if (c <= feeders) {
            cc->parent = 0;
            lim = root * 2 / (int64_t)feeders + 10000;
            cc->has_meter = 1;
            cc->power_limit_w = c % 3 == 0 ? (int32_t)(lim * 3 * 230 / 1000 * 8 / 10) : 0;
        } else {
            cc->parent = (int32_t)(1 + (c - 1 - feeders) / 4);
            lim = root * 2 / (int64_t)subs + 16000;
            cc->has_meter = 0;
            cc->unbalance_limit_ma = c % 5 == 0 ? 20000 : 0;
        }
        if (lim > DLB_MAX_CURRENT_MA) {
            lim = DLB_MAX_CURRENT_MA;
        }
        for (int ph = 0; ph < 3; ph++) {
            cc->limit_ma[ph] = (int32_t)lim;
        }
    }
    for (size_t k = 0; k < nk; k++) {
        dlb_charger *kc = &b->chg[k];
        kc->circuit = (int32_t)(1 + feeders + k % subs);
        kc->phases = k % 3 == 2 ? 1 : 3;
        int rot = (int)(k % 3);
        for (int i = 0; i < 3; i++) {
            kc->phase_map[i] = kc->phases == 1 ? (i == 0 ? rot : 0) : (i + rot) % 3;
        }
        kc->min_ma = 6000;
        kc->max_ma = k % 4 == 0 ? 16000 : 32000;
        kc->step_ma = k % 5 == 0 ? 100 : 1000;
        kc->priority = (int32_t)(k % 7 == 0 ? 100 : 0);
        kc->weight = (int32_t)(1 + k % 3);
        kc->failsafe_ma = 6000;
        kc->can_switch_phases = kc->phases == 3 && k % 10 == 1;
    }
}

static void free_site(bench_site *b)
{
    free(b->circ);
    free(b->chg);
}

#endif
