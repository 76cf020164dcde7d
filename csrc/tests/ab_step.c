/*
 * ab_step.c - A/B timing of two builds of dlb.c in ONE process (`make -C csrc ab`, see the Makefile).
 *
 * Why: on a shared cloud host other tenants slow every timing by up to ~1.5x for seconds to minutes,
 * so two benchmark runs minutes apart cannot resolve a change of a few percent. Here both builds (their
 * public symbols renamed A_dlb_* and B_dlb_* by objcopy) step their own copy of the bench site, in
 * alternating blocks of BLOCK steps (A B, then B A, ...): the host's phases hit both alike. The figure
 * to read is the median over block pairs of (B's block median / A's block median).
 *
 * Measured lessons (kept here because they decide what a speed-up is): cachegrind's branch simulation
 * overstates this class of CPU's mispredictions (branch-free rewrites it favoured were slower), and an
 * extra pass over the chargers costs real time even when it saves instructions. The link order also
 * biases the result by up to ~1.5% against the second object, so the Makefile runs both orders.
 *
 * It reuses bench.c's site and input rules (static there) by including it, so A/B measures exactly the
 * workload of `make bench`. Usage: ab_step N STEPS BLOCK steady|noisy [A-label B-label].
 */
#define main bench_main_unused
#define dlb_init A_dlb_init
#define dlb_step A_dlb_step
#define dlb_memory_size A_dlb_memory_size
#define dlb_params_default A_dlb_params_default
#define dlb_config_error A_dlb_config_error
#define dlb_session_energy_wh A_dlb_session_energy_wh
#include "bench.c"
#undef main

int B_dlb_init(void *mem, size_t mem_size, const dlb_params *params, const dlb_circuit *circuits,
               size_t n_circuits, const dlb_charger *chargers, size_t n_chargers, dlb_site **site);
int B_dlb_step(dlb_site *s, int64_t now, const dlb_meter_input *meters, const dlb_charger_input *chargers,
               dlb_charger_output *out, dlb_circuit_output *cout);
size_t B_dlb_memory_size(size_t n_circuits, size_t n_chargers);

typedef int (*step_fn)(dlb_site *, int64_t, const dlb_meter_input *, const dlb_charger_input *,
                       dlb_charger_output *, dlb_circuit_output *);

typedef struct {
    dlb_site *site;
    dlb_meter_input *mi;
    dlb_charger_input *ci;
    dlb_charger_output *out;
    dlb_circuit_output *cout;
    uint64_t seed, checksum;
    int64_t now;
    int first;
    step_fn step;
} runner;

static void setup(runner *r, bench_site *b, int is_b)
{
    size_t need = is_b ? B_dlb_memory_size(b->nc, b->nk) : A_dlb_memory_size(b->nc, b->nk);
    void *mem = aligned_alloc(64, (need + 63) & ~(size_t)63);
    int rc = is_b ? B_dlb_init(mem, need, &b->p, b->circ, b->nc, b->chg, b->nk, &r->site)
                  : A_dlb_init(mem, need, &b->p, b->circ, b->nc, b->chg, b->nk, &r->site);
    if (mem == NULL || rc != DLB_OK) {
        fprintf(stderr, "dlb_init (%c) failed: %d\n", is_b ? 'B' : 'A', rc);
        exit(1);
    }
    r->mi = calloc(b->nc, sizeof(*r->mi));
    r->ci = calloc(b->nk, sizeof(*r->ci));
    r->out = calloc(b->nk, sizeof(*r->out));
    r->cout = calloc(b->nc, sizeof(*r->cout));
    r->seed = 0x9E3779B97F4A7C15ull;
    r->checksum = 1469598103934665603ull;
    r->now = 0;
    r->first = 1;
    r->step = is_b ? B_dlb_step : A_dlb_step;
}

static int64_t timed_step(runner *r, const bench_site *b, int noisy)
{
    make_inputs(b, r->out, r->mi, r->ci, &r->seed, r->first, noisy);
    r->first = 0;
    int64_t t0 = now_ns();
    int rc = r->step(r->site, r->now, r->mi, r->ci, r->out, r->cout);
    int64_t t1 = now_ns();
    if (rc != DLB_OK) {
        fprintf(stderr, "dlb_step failed: %d\n", rc);
        exit(1);
    }
    r->checksum = fnv(r->checksum, r->out, b->nk * sizeof(*r->out));
    r->now += 1000;
    return t1 - t0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median_i64(int64_t *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_i64);
    return (double)v[n / 2];
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: %s N STEPS BLOCK steady|noisy [A-label B-label]\n", argv[0]);
        return 2;
    }
    size_t nk = strtoul(argv[1], NULL, 10);
    int block = atoi(argv[3]), noisy = strcmp(argv[4], "noisy") == 0;
    int n_pairs = atoi(argv[2]) / (block > 0 ? block : 1);
    if (nk == 0 || block < 1 || n_pairs < 1) {
        fprintf(stderr, "N, STEPS and BLOCK must be positive, STEPS >= BLOCK\n");
        return 2;
    }
    bench_site b;
    make_site(&b, nk);
    runner r[2];
    setup(&r[0], &b, 0);
    setup(&r[1], &b, 1);
    for (int i = 0; i < 300; i++) { /* warm-up: the rotation's state evolves as in bench.c */
        timed_step(&r[0], &b, noisy);
        timed_step(&r[1], &b, noisy);
    }
    int64_t *all[2] = {calloc((size_t)n_pairs * (size_t)block, sizeof(int64_t)),
                       calloc((size_t)n_pairs * (size_t)block, sizeof(int64_t))};
    int64_t *blk = calloc((size_t)block, sizeof(int64_t));
    double *ratio = calloc((size_t)n_pairs, sizeof(double));
    for (int p = 0; p < n_pairs; p++) {
        double med[2];
        for (int h = 0; h < 2; h++) {
            const int w = (p + h) & 1; /* A B, B A, ... */
            for (int i = 0; i < block; i++) {
                blk[i] = all[w][(size_t)p * (size_t)block + (size_t)i] = timed_step(&r[w], &b, noisy);
            }
            med[w] = median_i64(blk, block);
        }
        ratio[p] = med[1] / med[0];
    }
    const int n = n_pairs * block;
    const double ma = median_i64(all[0], n) / 1000.0, mb = median_i64(all[1], n) / 1000.0;
    qsort(ratio, (size_t)n_pairs, sizeof(*ratio), cmp_double);
    const char *la = argc > 6 ? argv[5] : "A", *lb = argc > 6 ? argv[6] : "B";
    printf("N=%zu %-6s %s %.2f us, %s %.2f us; %s/%s, median of block pairs %.3f (p10 %.3f, p90 %.3f)%s\n", nk,
           noisy ? "noisy" : "steady", la, ma, lb, mb, lb, la, ratio[n_pairs / 2], ratio[n_pairs / 10],
           ratio[n_pairs * 9 / 10], r[0].checksum == r[1].checksum ? "" : "  (outputs differ)");
    free_site(&b);
    return 0;
}
