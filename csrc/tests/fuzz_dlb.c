/*
 * fuzz_dlb.c - libFuzzer harness for the allocator core.
 *
 * Bytes -> a site (params, circuits, chargers: clamped into the valid ranges, but now and then left
 * raw so that dlb_init's validation is exercised too) -> a sequence of steps with meter and charger
 * readings (sometimes out of range, stale, time not advancing). Every successful step is checked by the
 * independent invariant checker (invariants.c); any violation aborts (a crash for libFuzzer).
 *
 * The "reason circuit with headroom >= one step" finding (see test_transition_completes) is counted
 * apart and does not abort; every other violation does.
 *
 * Built with -DFUZZ_MAKE_SEEDS it is a small program that writes a seed corpus into a directory.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../dlb.h"
#include "invariants.h"

typedef struct {
    const uint8_t *p;
    size_t n, i;
} reader;

static uint32_t rd8(reader *r) { return r->i < r->n ? r->p[r->i++] : 0u; }
static uint32_t rd16(reader *r) { return rd8(r) | (rd8(r) << 8); }
static uint32_t rd32(reader *r) { return rd16(r) | (rd16(r) << 16); }
static int32_t rng(reader *r, int32_t lo, int32_t hi) /* in [lo, hi] */
{
    uint32_t span = (uint32_t)((int64_t)hi - lo + 1);
    return (int32_t)(lo + (int64_t)(rd32(r) % span));
}

#define MAX_NC 24
#define MAX_NK 64

static uint64_t g_mem[1 << 16];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    reader r = {data, size, 0};
    uint32_t mode = rd8(&r);
    int raw = (mode & 0xE0u) == 0xE0u; /* 1 in 8: fields unclamped, validation gets exercised */
    size_t nc = (size_t)(rd8(&r) % MAX_NC) + 1;
    size_t nk = (size_t)(rd8(&r) % (MAX_NK + 1));
    dlb_params p;
    dlb_params_default(&p);
    dlb_circuit circ[MAX_NC];
    dlb_charger chg[MAX_NK];
    memset(circ, 0, sizeof(circ));
    memset(chg, 0, sizeof(chg));
    if (raw) {
        p.voltage_v = (int32_t)rd32(&r);
        p.policy = (int32_t)rd8(&r) - 2;
        p.meter_timeout_ms = (int32_t)rd32(&r);
        p.max_starts_per_hour = (int32_t)rd8(&r) - 1;
        p.follow_time_ms = (int32_t)rd32(&r);
    } else {
        p.voltage_v = rng(&r, 100, 1000);
        p.policy = rng(&r, 0, 4);
        p.meter_timeout_ms = rng(&r, 0, 20000);
        p.max_starts_per_hour = rng(&r, 0, DLB_MAX_STARTS);
        p.follow_time_ms = rng(&r, 0, 20000);
    }
    p.charger_timeout_ms = rng(&r, 0, 20000);
    p.recovery_hold_ms = rng(&r, 0, 20000);
    p.rotation_period_ms = rng(&r, 0, 600000);
    p.min_on_ms = rng(&r, 0, 120000);
    p.min_off_ms = rng(&r, 0, 60000);
    p.ramp_up_ma_per_s = (mode & 1u) ? rng(&r, 0, 20000) : 0;
    p.reclaim_hold_ms = rng(&r, 0, 60000);
    p.reclaim_margin_ma = rng(&r, 0, 5000);
    p.probe_interval_ms = rng(&r, 0, 300000);
    p.phase_switch_hold_ms = rng(&r, 0, 300000);
    p.max_phase_switches = rng(&r, 0, 6);
    p.active_threshold_ma = rng(&r, 0, 5000);
    p.meter_latency_ms = (mode & 2u) ? rng(&r, 0, 10000) : 0;
    for (size_t c = 0; c < nc; c++) {
        dlb_circuit *cc = &circ[c];
        uint32_t b = rd8(&r);
        cc->parent = (c == 0 || (b & 7u) == 0) ? DLB_NONE : (int32_t)(rd8(&r) % c);
        if (raw && (b & 0x80u)) {
            cc->parent = (int32_t)(rd8(&r)) - 2; /* maybe a forward reference */
        }
        int32_t big = (b & 0x40u) ? DLB_MAX_CURRENT_MA : 300000;
        for (int ph = 0; ph < 3; ph++) {
            cc->limit_ma[ph] = raw ? (int32_t)rd32(&r) : rng(&r, 0, big);
            cc->fallback_base_ma[ph] = rng(&r, -big, big) / ((b & 0x20u) ? 1 : 16);
        }
        cc->margin_ma = rng(&r, 0, 5000);
        cc->power_limit_w = (b & 0x08u) ? rng(&r, 0, (b & 0x40u) ? DLB_MAX_POWER_W : 300000) : 0;
        cc->unbalance_limit_ma = (b & 0x10u) ? rng(&r, 0, 40000) : 0;
        cc->has_meter = (int32_t)((b >> 1) & 1u);
    }
    static const int perms[6][3] = {{0, 1, 2}, {1, 2, 0}, {2, 0, 1}, {0, 2, 1}, {2, 1, 0}, {1, 0, 2}};
    for (size_t k = 0; k < nk; k++) {
        dlb_charger *kc = &chg[k];
        uint32_t b = rd8(&r);
        kc->circuit = raw ? (int32_t)rd8(&r) - 1 : (int32_t)(rd8(&r) % nc);
        kc->phases = (b & 1u) ? 1 : 3;
        const int *pm = perms[rd8(&r) % 6];
        for (int i = 0; i < 3; i++) {
            kc->phase_map[i] = kc->phases == 1 && i > 0 ? 0 : pm[i];
        }
        if (raw && (b & 0x80u)) {
            kc->phase_map[rd8(&r) % 3] = (int32_t)rd8(&r) % 5 - 1;
        }
        int32_t step = (b & 2u) ? 1000 : rng(&r, 1, 3000);
        kc->step_ma = step;
        kc->min_ma = step * rng(&r, 1, 8000 / step + 1);
        kc->max_ma = kc->min_ma + step * rng(&r, 0, ((b & 4u) ? 400000 : 40000) / step);
        if (raw && (b & 0x40u)) {
            kc->max_ma = (int32_t)rd32(&r);
            kc->min_ma = (int32_t)rd16(&r);
        }
        kc->priority = raw ? (int32_t)rd16(&r) - 10 : rng(&r, 0, 255);
        kc->weight = raw ? (int32_t)rd8(&r) % 20 : rng(&r, 1, DLB_MAX_WEIGHT);
        kc->failsafe_ma = rng(&r, 0, 40000);
        kc->can_switch_phases = kc->phases == 3 && (b & 8u) ? 1 : 0;
        if (raw && (b & 0x20u)) {
            kc->can_switch_phases = (int32_t)(rd8(&r) % 3);
        }
    }

    size_t need = dlb_memory_size(nc, nk);
    if (need == 0 || need > sizeof(g_mem)) {
        return 0;
    }
    dlb_site *site = NULL;
    int rc = dlb_init(g_mem, need, &p, circ, nc, chg, nk, &site);
    if (rc != DLB_OK) {
        const char *scope = NULL, *field = NULL, *problem = NULL;
        int32_t index = 0;
        dlb_config_error(g_mem, &scope, &index, &field, &problem);
        if (rc != DLB_ERR_CONFIG || site != NULL || scope == NULL || field == NULL || problem == NULL ||
            problem[0] == '\0' ||
            (strcmp(scope, "params") != 0 && strcmp(scope, "circuits") != 0 && strcmp(scope, "chargers") != 0)) {
            fprintf(stderr, "dlb_init: rc %d with a bad error description\n", rc);
            abort();
        }
        if (!raw) {
            fprintf(stderr, "dlb_init rejected a clamped configuration: %s[%d].%s: %s\n", scope, index, field,
                    problem);
            abort();
        }
        return 0;
    }
    inv_checker *ck = inv_new(&p, circ, nc, chg, nk);
    if (ck == NULL) {
        return 0;
    }
    inv_separate_workcons(ck, 1);
    dlb_meter_input mi[MAX_NC];
    dlb_charger_input ci[MAX_NK + 1];
    dlb_charger_output out[MAX_NK + 1];
    dlb_circuit_output cout[MAX_NC];
    memset(mi, 0, sizeof(mi));
    memset(ci, 0, sizeof(ci));
    memset(out, 0, sizeof(out));
    memset(cout, 0, sizeof(cout));
    int64_t now = rd16(&r);
    char msg[2048];
    int n_steps = (int)(rd8(&r) % 64) + 1, stepped = 0;
    for (int step = 0; step < n_steps && r.i < r.n; step++) {
        uint32_t sb = rd8(&r);
        for (size_t c = 0; c < nc; c++) {
            uint32_t b = rd8(&r);
            mi[c].fresh = (b & 3u) != 0;
            if (b & 4u) {
                for (int ph = 0; ph < 3; ph++) {
                    mi[c].current_ma[ph] = (b & 0x80u) ? (int32_t)rd32(&r) : rng(&r, -20000, 400000);
                }
            }
        }
        for (size_t k = 0; k < nk; k++) {
            uint32_t b = rd8(&r);
            dlb_charger_input *x = &ci[k];
            x->fresh = (b & 3u) != 0;
            if (b & 4u) {
                x->state = (b & 0x80u) ? (int32_t)rd8(&r) % 8 - 1 : (int32_t)(rd8(&r) % 6);
            }
            if (b & 8u) {
                int32_t hi = (b & 0x40u) ? 60000 : (out[k].setpoint_ma > 0 ? out[k].setpoint_ma + 2000 : 1000);
                for (int i = 0; i < 3; i++) {
                    x->current_ma[i] = (b & 0x80u) && (b & 0x20u) ? (int32_t)rd32(&r) : rng(&r, 0, hi);
                }
            } else if (step > 0 && (b & 0x10u)) { /* the EV follows its set-point */
                for (int i = 0; i < 3; i++) {
                    x->current_ma[i] = i < out[k].phases ? out[k].setpoint_ma : 0;
                }
            }
            x->session_update = (b & 0x20u) != 0 && !(b & 0x80u);
            if (x->session_update) {
                x->departure_in_ms = rng(&r, -1, 86400000);
                x->energy_need_wh = rng(&r, -1, 200000);
            }
        }
        int64_t dt = (sb & 0xC0u) == 0 ? 0 : (sb & 0xC0u) == 0x40u ? 1000 : (int64_t)rd16(&r) * ((sb & 1u) ? 50 : 1);
        if ((sb & 0x3Fu) == 0x3Fu) {
            dt = -1; /* time going backwards is an error, state untouched */
        }
        rc = dlb_step(site, now + dt, mi, ci, out, cout);
        if (dt < 0 && (stepped || now + dt < 0)) {
            if (rc != DLB_ERR_TIME) { /* an earlier or negative time must be refused */
                fprintf(stderr, "dlb_step accepted time %lld after %lld (rc %d)\n", (long long)(now + dt),
                        (long long)now, rc);
                abort();
            }
            continue;
        }
        if (rc != DLB_OK) {
            fprintf(stderr, "dlb_step failed: %d\n", rc);
            abort();
        }
        stepped = 1;
        now += dt;
        int nv = inv_check_step(ck, now, mi, ci, out, cout, msg, sizeof(msg));
        if (nv > 0) {
            fprintf(stderr, "INVARIANT VIOLATION at step %d, t=%lld:\n%s", step, (long long)now, msg);
            abort();
        }
        for (size_t k = 0; k < nk; k++) {
            (void)dlb_session_energy_wh(site, k);
        }
    }
    inv_free(ck);
    return 0;
}

#ifdef FUZZ_MAKE_SEEDS
/* writes a few seed inputs (deterministic pseudo-random bytes) into argv[1] */
int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    uint64_t x = 0x243F6A8885A308D3ull;
    for (int n = 0; n < 24; n++) {
        uint8_t buf[4096];
        size_t len = (size_t)(256 + n * 150);
        for (size_t i = 0; i < len; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            buf[i] = (uint8_t)(x >> 24);
        }
        buf[0] = (uint8_t)(n % 8 == 7 ? 0xE0 : n); /* one raw (validation) seed in eight */
        buf[1] = (uint8_t)(n % 6);                  /* circuits */
        buf[2] = (uint8_t)(n * 3 + 2);              /* chargers */
        char path[1024];
        snprintf(path, sizeof(path), "%s/seed-%02d", argv[1], n);
        FILE *f = fopen(path, "wb");
        if (f == NULL) {
            perror(path);
            return 1;
        }
        fwrite(buf, 1, len, f);
        fclose(f);
        /* each seed must run clean */
        if (LLVMFuzzerTestOneInput(buf, len) != 0) {
            return 1;
        }
    }
    return 0;
}
#endif

#ifdef FUZZ_REPLAY
/* replays inputs without libFuzzer: fuzz_replay FILE... (gcc build, for debugging an artifact) */
int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        FILE *f = fopen(argv[i], "rb");
        if (f == NULL) {
            perror(argv[i]);
            return 1;
        }
        static uint8_t buf[1 << 20];
        size_t n = fread(buf, 1, sizeof(buf), f);
        fclose(f);
        printf("%s: %zu bytes\n", argv[i], n);
        LLVMFuzzerTestOneInput(buf, n);
    }
    return 0;
}
#endif
